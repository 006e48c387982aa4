"""Faults of a send (``POST /omni/1/advanced``) over HTTP: wrong 2xx answers (fault option ``answer``)
and the combinations of ``status``, ``drop``, ``latency`` and ``process`` that tests of the operator
rely on.  What matters is what the client gets and what the sandbox recorded."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.timeout(120)

BULK = "bulk-under-test"
NUMBERS = ["41793026720", "41793026726"]
ANSWER_KINDS = [
    "empty",
    "empty_object",
    "request_error",
    "no_messages",
    "wrong_bulk_id",
    "missing_messages",
    "html",
]


class Client:
    """A plain OMNI client with the sandbox's API key."""

    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox
        self.headers = {"Authorization": f"App {sandbox.api_key}"}

    def scenario(self) -> str:
        flow = [{"from": "ViberSender", "channel": "VIBER"}, {"from": "InfoSMS", "channel": "SMS"}]
        response = requests.post(
            f"{self.sandbox.url}/omni/1/scenarios", json={"flow": flow}, headers=self.headers, timeout=10
        )
        assert response.status_code == 201, response.text
        return str(response.json()["key"])

    def send(self, key: str, bulk_id: str = BULK, timeout: float = 10) -> requests.Response:
        body = {
            "scenarioKey": key,
            "bulkId": bulk_id,
            "destinations": [
                {"messageId": f"m-{index}", "to": {"phoneNumber": number}}
                for index, number in enumerate(NUMBERS, 1)
            ],
            "viber": {"text": "Hello on Viber"},
            "sms": {"text": "Hello by SMS"},
        }
        # a new connection each time: a dropped one must not spoil the next call
        return requests.post(
            f"{self.sandbox.url}/omni/1/advanced", json=body, headers=self.headers, timeout=timeout
        )

    def reported_ids(self, bulk_id: str = BULK) -> list[str]:
        """Let the messages become final, then take their reports."""
        self.sandbox.admin.advance(hours=3)
        response = requests.get(
            f"{self.sandbox.url}/omni/1/reports", params={"bulkId": bulk_id}, headers=self.headers, timeout=10
        )
        assert response.status_code == 200, response.text
        return sorted(report["messageId"] for report in response.json()["results"])

    def logged_ids(self, bulk_id: str = BULK) -> list[str]:
        response = requests.get(
            f"{self.sandbox.url}/omni/1/logs", params={"bulkId": bulk_id}, headers=self.headers, timeout=10
        )
        assert response.status_code == 200, response.text
        return sorted(row["messageId"] for row in response.json()["results"])


@pytest.fixture
def client(omni_sandbox: Any) -> Client:
    return Client(omni_sandbox)


@pytest.fixture
def key(client: Client) -> str:
    return client.scenario()


def real_answer(client: Client) -> dict[str, Any]:
    """What the sandbox answers to the same send without a fault (then forgets it)."""
    client.sandbox.admin.reset()
    response = client.send(client.scenario())
    assert response.status_code == 200
    client.sandbox.admin.reset()
    return dict(response.json())


# -- wrong 2xx answers -----------------------------------------------------------------------------


def check_wrong_answer(kind: str, response: requests.Response) -> None:
    """Assert that ``response`` is the wrong answer ``kind`` to the send of :meth:`Client.send`."""
    assert response.status_code == 200
    if kind == "empty":
        assert response.content == b""
        return
    if kind == "html":
        assert response.headers["Content-Type"].startswith("text/html")
        assert "<html" in response.text
        return
    body = response.json()
    ids = [m["messageId"] for m in body.get("messages", [])]
    if kind == "empty_object":
        assert body == {}
    elif kind == "request_error":
        assert body["requestError"]["serviceException"]["messageId"] == "GENERAL_ERROR"
        assert "messages" not in body
    elif kind == "no_messages":
        assert body == {"bulkId": BULK, "messages": []}
    elif kind == "wrong_bulk_id":
        assert body["bulkId"] != BULK and body["bulkId"]
        assert ids == ["m-1", "m-2"]
        assert {m["status"]["name"] for m in body["messages"]} == {"PENDING_ENROUTE"}
    elif kind == "missing_messages":
        assert body["bulkId"] == BULK
        assert ids == ["m-1"]
        assert body["messages"][0]["to"] == {"phoneNumber": NUMBERS[0]}


@pytest.mark.parametrize("process", [True, False], ids=["processed", "not-processed"])
@pytest.mark.parametrize("kind", ANSWER_KINDS)
def test_a_wrong_2xx_answer_to_a_send(
    omni_sandbox: Any, client: Client, key: str, kind: str, process: bool
) -> None:
    fault = omni_sandbox.admin.add_fault(endpoint="advanced", answer=kind, process=process, times=1)
    assert (fault["answer"], fault["process"]) == (kind, process)

    check_wrong_answer(kind, client.send(key))

    stats = omni_sandbox.admin.stats()
    assert stats["faults_fired"] == {"advanced": 1}
    assert stats["responses"]["advanced 200"] == 1
    if process:  # accepted and simulated: logs and reports show the messages
        assert (stats["destinations"], stats["bulks"]) == (2, {BULK: 2})
        assert client.logged_ids() == client.reported_ids() == ["m-1", "m-2"]
        assert [r["body"]["bulkId"] for r in omni_sandbox.admin.requests()] == [BULK]
    else:  # nothing accepted
        assert (stats["destinations"], stats["bulks"], stats["messages_logged"]) == (0, {}, 0)
        assert client.logged_ids() == client.reported_ids() == []
        assert omni_sandbox.admin.requests() == []
    after = client.send(key, bulk_id="after")  # the fault fired once: the real answer again
    assert [m["messageId"] for m in after.json()["messages"]] == ["m-1", "m-2"]


def test_an_answer_fault_keeps_the_real_answer_apart_from_what_it_changes(
    omni_sandbox: Any, client: Client, key: str
) -> None:
    omni_sandbox.admin.add_fault(endpoint="advanced", answer="wrong_bulk_id", process=True, times=1)
    wrong = client.send(key).json()
    expected = real_answer(client)
    assert wrong["messages"] == expected["messages"]
    assert expected["bulkId"] == BULK != wrong["bulkId"]


def test_an_answer_fault_is_installed_over_http_and_listed(
    omni_sandbox: Any, client: Client, key: str
) -> None:
    response = requests.post(
        f"{omni_sandbox.url}/_sandbox/faults",
        json={"endpoint": "advanced", "answer": "missing_messages", "process": True},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    (listed,) = omni_sandbox.admin.faults()
    assert (listed["answer"], listed["process"], listed["times"]) == ("missing_messages", True, None)
    for _ in range(2):  # no ``times``: every send
        check_wrong_answer("missing_messages", client.send(key))
    assert omni_sandbox.admin.stats()["destinations"] == 4


def test_an_answer_fault_after_a_latency(omni_sandbox: Any, client: Client, key: str) -> None:
    omni_sandbox.admin.add_fault(endpoint="advanced", answer="empty_object", latency=0.5, times=1)
    started = time.monotonic()
    response = client.send(key)
    assert time.monotonic() - started >= 0.5
    assert response.json() == {}
    assert omni_sandbox.admin.stats()["destinations"] == 0


def test_a_send_that_fails_on_its_own_keeps_its_real_error(omni_sandbox: Any, client: Client) -> None:
    omni_sandbox.admin.add_fault(endpoint="advanced", answer="empty", process=True, times=1)
    response = client.send("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF")  # an unknown scenario
    assert response.status_code == 400
    assert "scenarioKey" in response.json()["requestError"]["serviceException"]["validationErrors"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"endpoint": "advanced", "answer": "garbage"}, "empty, empty_object, request_error"),
        ({"endpoint": "reports", "answer": "empty"}, "advanced"),
        ({"answer": "empty"}, "advanced"),
        ({"endpoint": "advanced", "answer": "empty", "status": 500}, "status"),
        ({"endpoint": "advanced", "answer": "empty", "drop": True}, "drop"),
    ],
    ids=["unknown-kind", "other-endpoint", "every-endpoint", "with-status", "with-drop"],
)
def test_bad_answer_faults_are_refused(omni_sandbox: Any, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        omni_sandbox.admin.add_fault(**options)
    response = requests.post(f"{omni_sandbox.url}/_sandbox/faults", json=options, timeout=10)
    assert response.status_code == 400
    details = response.json()["requestError"]["serviceException"]
    assert "answer" in details["validationErrors"] and message in details["text"]
    assert omni_sandbox.admin.faults() == []


# -- the combinations other tests rely on ----------------------------------------------------------


def test_status_503_without_process_refuses_the_send_before_processing(
    omni_sandbox: Any, client: Client, key: str
) -> None:
    omni_sandbox.admin.add_fault(endpoint="advanced", status=503, times=1)
    response = client.send(key)
    assert response.status_code == 503
    assert response.json()["requestError"]["serviceException"]["messageId"] == "SERVICE_UNAVAILABLE"
    stats = omni_sandbox.admin.stats()
    assert (stats["destinations"], stats["bulks"], stats["requests"]["advanced"]) == (0, {}, 1)
    assert client.logged_ids() == []


def test_process_then_500_accepts_the_send_then_fails(omni_sandbox: Any, client: Client, key: str) -> None:
    omni_sandbox.admin.add_fault(endpoint="advanced", status=500, process=True, times=1)
    response = client.send(key)
    assert response.status_code == 500
    assert response.json()["requestError"]["serviceException"]["messageId"] == "GENERAL_ERROR"
    assert omni_sandbox.admin.stats()["bulks"] == {BULK: 2}
    assert client.logged_ids() == ["m-1", "m-2"]


def test_process_then_drop_accepts_the_send_then_drops_the_connection(
    omni_sandbox: Any, client: Client, key: str
) -> None:
    omni_sandbox.admin.add_fault(endpoint="advanced", drop=True, process=True, times=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        client.send(key)
    assert omni_sandbox.admin.stats()["bulks"] == {BULK: 2}
    assert client.logged_ids() == ["m-1", "m-2"]


def test_process_then_latency_times_a_client_out_after_the_send_was_processed(
    omni_sandbox: Any, client: Client, key: str
) -> None:
    omni_sandbox.admin.add_fault(endpoint="advanced", latency=4, process=True, times=1)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        client.send(key, timeout=0.5)
    # well before the 4 s are over, the send is already accepted and logged
    assert omni_sandbox.admin.stats()["bulks"] == {BULK: 2}
    assert client.logged_ids() == ["m-1", "m-2"]
    assert time.monotonic() - started < 3.5


def test_drop_alone_accepts_nothing(omni_sandbox: Any, client: Client, key: str) -> None:
    omni_sandbox.admin.add_fault(endpoint="advanced", drop=True, times=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        client.send(key)
    stats = omni_sandbox.admin.stats()
    assert (stats["destinations"], stats["bulks"], stats["requests"]["advanced"]) == (0, {}, 1)
    assert client.logged_ids() == []
    assert json.loads(client.send(key).text)["bulkId"] == BULK  # the next send goes through


@pytest.mark.parametrize("process", [True, False], ids=["processed", "not-processed"])
@pytest.mark.parametrize("kind", ["empty", "request_error", "missing_messages", "wrong_bulk_id"])
def test_a_wrong_2xx_answer_to_a_messages_api_send(omni_sandbox: Any, kind: str, process: bool) -> None:
    omni_sandbox.admin.add_fault(endpoint="messages", answer=kind, process=process, times=1)
    body = {
        "messages": [
            {
                "channel": "SMS",
                "sender": "InfoSMS",
                "destinations": [{"to": n, "messageId": f"m-{i}"} for i, n in enumerate(NUMBERS, start=1)],
                "content": {"body": {"type": "TEXT", "text": "Hi"}},
            }
        ],
        "options": {"schedule": {"bulkId": BULK}},
    }
    headers = {"Authorization": f"App {omni_sandbox.api_key}"}
    url = f"{omni_sandbox.url}/messages-api/1/messages"
    response = requests.post(url, json=body, headers=headers, timeout=10)

    assert response.status_code == 200
    if kind == "empty":
        assert response.content == b""
    elif kind == "request_error":
        assert response.json()["errorCode"] == "E500"  # the Messages API's own error envelope
    elif kind == "missing_messages":
        assert [m["messageId"] for m in response.json()["messages"]] == ["m-1"]
    else:
        assert response.json()["bulkId"] != BULK
    accepted = sorted(a["messageId"] for a in omni_sandbox.admin.messages_api_accepted())
    assert accepted == (["m-1", "m-2"] if process else [])
    again = requests.post(url, json=body, headers=headers, timeout=10).json()  # fired once
    assert [m["messageId"] for m in again["messages"]] == ["m-1", "m-2"]
