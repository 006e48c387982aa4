"""The sandbox's Messages API (``/messages-api/1/...``) over HTTP: sends with a ``VIBER_BM`` then
``SMS`` failover, the ``ApiError`` violations of bad bodies, validate, one-time reports following
the personas, the per-step reports switch, auth and scopes, faults. Every answer is checked against
Infobip's document (``tests/openapi_messages_api.py``)."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.openapi_messages_api import REPORTS, SEND, VALIDATE, request_examples, response_errors

pytestmark = pytest.mark.timeout(120)

#: Final report of each persona (last digit of the number): channel and status name.
PERSONA_FINALS = {
    **{digit: ("VIBER_BM", "DELIVERED_TO_HANDSET") for digit in "012345"},
    "6": ("SMS", "DELIVERED_TO_HANDSET"),
    "7": ("SMS", "DELIVERED_TO_HANDSET"),
    "8": ("SMS", "UNDELIVERABLE_NOT_DELIVERED"),
    "9": ("SMS", "EXPIRED_EXPIRED"),
}
HOUR = {"amount": 1, "timeUnit": "HOURS"}


def viber_then_sms(number: str, message_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """One ``messages[]`` item: VIBER_BM, then an SMS failover step, an hour each."""
    destination: dict[str, Any] = {
        "byChannel": [{"channel": "VIBER_BM", "to": number}, {"channel": "SMS", "to": number}]
    }
    if message_id is not None:
        destination["messageId"] = message_id
    return {
        "channel": "VIBER_BM",
        "sender": "ViberSender",
        "destinations": [destination],
        "content": {"body": {"type": "TEXT", "text": "Hello on Viber"}},
        "options": {"validityPeriod": HOUR},
        "failover": [
            {
                "channel": "SMS",
                "sender": "InfoSMS",
                "content": {"body": {"type": "TEXT", "text": "Hello by SMS"}},
                "validityPeriod": HOUR,
            }
        ],
        **extra,
    }


class Client:
    """A plain Messages API client with the sandbox's API key; checks answers against the document."""

    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox
        self.headers = {"Authorization": f"App {sandbox.api_key}"}

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
        answer = requests.post(
            f"{self.sandbox.url}{path}",
            json=body,
            headers=self.headers if headers is None else headers,
            timeout=10,
        )
        check_document(path, "post", answer)
        return answer

    def send(self, messages: list[dict[str, Any]], bulk_id: str | None = "bulk-1") -> dict[str, Any]:
        body: dict[str, Any] = {"messages": messages}
        if bulk_id is not None:
            body["options"] = {"schedule": {"bulkId": bulk_id}}
        answer = self.post(SEND, body)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def reports(self, **params: Any) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.sandbox.url}{REPORTS}", params=params, headers=self.headers, timeout=10)
        check_document(REPORTS, "get", answer)
        assert answer.status_code == 200, answer.text
        return list(answer.json()["results"])


def check_document(path: str, method: str, answer: requests.Response) -> None:
    """Assert that a documented answer's body follows the document."""
    if answer.status_code in (200, 400, 401, 403, 429, 500) and not (
        path == REPORTS and answer.status_code == 400
    ):
        assert response_errors(path, method, answer.status_code, answer.json()) == [], answer.text


@pytest.fixture
def client(omni_sandbox: Any) -> Client:
    omni_sandbox.admin.configure(time_scale=0)
    return Client(omni_sandbox)


def violations(answer: requests.Response) -> dict[str, str]:
    assert answer.status_code == 400, answer.text
    body = answer.json()
    return {v["property"]: v["violation"] for v in body["violations"]}


# -- sending ---------------------------------------------------------------------------------------


def test_a_send_answers_each_destination_accepted_with_its_message_id(client: Client) -> None:
    answer = client.send([viber_then_sms("41793026720", "m-0"), viber_then_sms("41793026726")])

    assert answer["bulkId"] == "bulk-1"
    first, second = answer["messages"]
    assert first["messageId"] == "m-0"
    assert first["destination"] == "41793026720"
    assert first["status"]["name"] == "MESSAGE_ACCEPTED" and first["status"]["id"] == 26
    assert second["messageId"] and second["messageId"] != "m-0"  # generated
    stats = client.sandbox.admin.stats()
    assert stats["messages_api"]["destinations"] == 2
    assert stats["requests"]["messages"] == 1
    assert client.sandbox.admin.sends()[-1]["bulk_id"] == "bulk-1"


def test_a_send_without_bulk_id_gets_a_generated_one(client: Client) -> None:
    answer = client.send([viber_then_sms("41793026720")], bulk_id=None)
    assert answer["bulkId"]
    assert client.reports(bulkId=answer["bulkId"]) == []  # not final yet: nothing


def test_a_message_without_failover_may_use_a_plain_to_destination(client: Client) -> None:
    message = {
        "channel": "SMS",
        "sender": "InfoSMS",
        "destinations": [{"to": "41793026727", "messageId": "sms-only"}],
        "content": {"body": {"type": "TEXT", "text": "Hello"}},
    }
    client.send([message])
    client.sandbox.admin.advance(minutes=5)

    (report,) = client.reports(messageId="sms-only")
    assert (report["channel"], report["status"]["name"]) == ("SMS", "DELIVERED_TO_HANDSET")


def test_the_documents_own_viber_bm_examples_are_accepted(client: Client) -> None:
    examples = {
        name: body
        for name, body in request_examples(SEND).items()
        if name.endswith("VIBER_BM") and "emplate" not in name
    }
    assert len(examples) >= 5
    for name, body in examples.items():
        answer = client.post(SEND, body)
        assert answer.status_code == 200, (name, answer.text)


# -- bad requests ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field", "text"),
    [
        (lambda m: m.pop("channel"), "messages[0].channel", "must not be null"),
        (lambda m: m.update(channel="VIBER"), "messages[0].channel", "must be one of"),
        (lambda m: m.pop("content"), "messages[0].content", "must not be null"),
        (lambda m: m["content"]["body"].pop("text"), "messages[0].content.body.text", "must not be null"),
        (lambda m: m.update(destinations=[]), "messages[0].destinations", "must not be empty"),
        (
            lambda m: m.update(destinations=[{"to": "41793026720"}]),
            "messages[0].destinations[0].byChannel",
            "failover",
        ),
        (
            lambda m: m["destinations"][0].update(byChannel=[{"channel": "SMS", "to": "41793026720"}]),
            "messages[0].destinations[0].byChannel",
            "main channel VIBER_BM",
        ),
        (
            lambda m: m["destinations"][0].update(messageId="x" * 201),
            "messages[0].destinations[0].messageId",
            "size must be between 0 and 200",
        ),
        (lambda m: m["failover"][0].update(channel="VIBER_BM"), "messages[0].failover[0].channel", "primary"),
        (
            lambda m: m["options"].update(validityPeriod={"amount": 9, "timeUnit": "SECONDS"}),
            "messages[0].options.validityPeriod",
            "at least 10 seconds",
        ),
        (
            lambda m: m["failover"][0].update(validityPeriod={"amount": 1, "timeUnit": "DAYS"}),
            "messages[0].failover[0].validityPeriod.timeUnit",
            "must be one of",
        ),
        (
            lambda m: m["failover"][0].update(validityPeriod={"amount": 1, "timeUnit": {}}),
            "messages[0].failover[0].validityPeriod.timeUnit",
            "must be one of",
        ),
        (
            lambda m: m.update(webhooks={"callbackData": "x" * 4001}),
            "messages[0].webhooks.callbackData",
            "size must be between 0 and 4000",
        ),
        (lambda m: m.update(sender=None), "messages[0].sender", "must not be null"),
    ],
)
def test_a_bad_message_is_refused_naming_the_field(
    client: Client, change: Any, field: str, text: str
) -> None:
    message = viber_then_sms("41793026720")
    change(message)

    answer = client.post(SEND, {"messages": [message]})

    body = answer.json()
    assert body["errorCode"] == "E400"
    assert text in violations(answer)[field], body
    assert client.sandbox.admin.stats()["messages_api"]["destinations"] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "messages"),
        ({"messages": []}, "messages"),
        ([], "request"),
        ({"messages": [], "options": {"schedule": {"bulkId": "b" * 101}}}, "options.schedule.bulkId"),
        ({"messages": [], "options": {"schedule": {"sendAt": "tomorrow"}}}, "options.schedule.sendAt"),
        (
            {"messages": [], "options": {"schedule": {"sendAt": "2999-01-01T00:00:00.000+0000"}}},
            "options.schedule.sendAt",
        ),
    ],
)
def test_a_bad_envelope_is_refused_naming_the_field(client: Client, body: Any, field: str) -> None:
    assert field in violations(client.post(SEND, body))


def test_malformed_json_gets_the_api_error_body(client: Client) -> None:
    answer = requests.post(
        f"{client.sandbox.url}{SEND}",
        data=b"{not json",
        headers={**client.headers, "Content-Type": "application/json"},
        timeout=10,
    )
    assert answer.status_code == 400
    assert answer.json()["errorCode"] == "E400"


# -- validate --------------------------------------------------------------------------------------


def test_validate_accepts_a_good_body_lists_unknown_properties_and_sends_nothing(client: Client) -> None:
    message = {**viber_then_sms("41793026720", "v-1"), "metadata": {"x": 1}}

    answer = client.post(VALIDATE, {"messages": [message]})

    assert answer.status_code == 200, answer.text
    assert answer.json()["skippableViolations"] == [
        {"property": "messages[0].metadata", "violation": "Unknown property"}
    ]
    client.sandbox.admin.advance(hours=3)
    assert client.reports() == []
    assert client.sandbox.admin.stats()["messages_api"]["destinations"] == 0


def test_validate_refuses_a_bad_body_with_its_violations(client: Client) -> None:
    message = viber_then_sms("41793026720")
    message["failover"][0]["channel"] = "FAX"

    answer = client.post(VALIDATE, {"messages": [message]})

    assert "must be one of" in violations(answer)["messages[0].failover[0].channel"]


def test_validate_is_rate_limited_to_ten_a_second(omni_sandbox: Any, client: Client) -> None:
    # ten a minute here, so that a slow machine's twelve requests still fall in one window
    omni_sandbox.admin.configure(rate_limit_window_scale=60)
    body = {"messages": [viber_then_sms("41793026720")]}
    statuses = [client.post(VALIDATE, body).status_code for _ in range(12)]
    assert statuses.count(429) >= 1
    assert statuses[:10] == [200] * 10


# -- reports ---------------------------------------------------------------------------------------


def test_each_persona_ends_on_its_channel_and_its_report_is_handed_out_once(client: Client) -> None:
    numbers = {digit: f"4179302672{digit}" for digit in PERSONA_FINALS}
    client.send([viber_then_sms(number, f"m-{digit}") for digit, number in numbers.items()])
    client.sandbox.admin.advance(hours=3)  # past both validities: every message is final

    reports = client.reports(bulkId="bulk-1")

    outcome = {r["messageId"][-1]: (r["channel"], r["status"]["name"]) for r in reports}
    assert outcome == PERSONA_FINALS  # one final report per message
    assert {r["destination"] for r in reports} == set(numbers.values())
    by_digit = {r["messageId"][-1]: r for r in reports}
    assert by_digit["6"]["error"]["name"] == "NO_ERROR" and by_digit["6"]["sender"] == "InfoSMS"
    assert by_digit["0"]["sender"] == "ViberSender"
    assert by_digit["8"]["error"]["name"] == "EC_ABSENT_SUBSCRIBER"
    assert by_digit["9"]["error"]["name"] == "EC_VALIDITY_EXPIRED"
    assert all(r["event"] == "DELIVERY" and isinstance(r.get("mccMnc", 0), int) for r in reports)
    assert client.reports(bulkId="bulk-1") == []  # and never again
    assert client.sandbox.admin.stats()["messages_api"]["reports_handed_out"] == 10


def test_a_report_is_due_only_when_its_step_ends_on_the_simulated_clock(client: Client) -> None:
    client.send([viber_then_sms("41793026729", "silent")])  # nothing confirms: 1 h Viber, 1 h SMS
    client.sandbox.admin.advance(minutes=90)
    assert client.reports() == []
    client.sandbox.admin.advance(minutes=40)
    (report,) = client.reports()
    assert (report["channel"], report["status"]["groupName"]) == ("SMS", "EXPIRED")


def test_per_step_reports_when_the_request_asks_for_failover_reports(client: Client) -> None:
    webhooks = {"delivery": {"receiveTriggeredFailoverReports": True}, "callbackData": "dag=x"}
    client.send([viber_then_sms("41793026726", "fo-6", webhooks=webhooks)])
    client.sandbox.admin.advance(hours=3)

    reports = client.reports(messageId="fo-6")

    steps = [(r["channel"], r["status"]["groupName"], r["error"]["name"]) for r in reports]
    assert steps == [("VIBER_BM", "UNDELIVERABLE", "EC_UNKNOWN_USER"), ("SMS", "DELIVERED", "NO_ERROR")]
    assert {r["messageId"] for r in reports} == {"fo-6"}  # the same id on every step
    assert {r["callbackData"] for r in reports} == {"dag=x"}


def test_reports_filter_by_channel_limit_and_platform(client: Client) -> None:
    options = {"validityPeriod": HOUR, "platform": {"entityId": "e1"}, "campaignReferenceId": "spring"}
    client.send(
        [
            viber_then_sms("41793026720", "a-0", options=options),
            viber_then_sms("41793026721", "a-1"),
            viber_then_sms("41793026726", "a-6"),
        ]
    )
    client.sandbox.admin.advance(hours=3)

    (sms,) = client.reports(channel="SMS")
    assert sms["messageId"] == "a-6"
    (tagged,) = client.reports(entityId="e1")
    assert tagged["platform"] == {"entityId": "e1"} and tagged["campaignReferenceId"] == "spring"
    assert len(client.reports(limit=0)) == 0
    assert [r["messageId"] for r in client.reports(limit=5)] == ["a-1"]


def test_reports_are_kept_48_hours(client: Client) -> None:
    client.send([viber_then_sms("41793026720", "old")])
    client.sandbox.admin.advance(hours=49)
    assert client.reports() == []


@pytest.mark.parametrize("params", [{"limit": 1001}, {"limit": "x"}, {"channel": "VIBER"}])
def test_bad_report_parameters_are_refused(client: Client, params: dict[str, Any]) -> None:
    answer = requests.get(f"{client.sandbox.url}{REPORTS}", params=params, headers=client.headers, timeout=10)
    assert answer.status_code == 400
    assert answer.json()["errorCode"] == "E400"


def test_omni_and_messages_api_reports_are_apart(client: Client) -> None:
    client.send([viber_then_sms("41793026720", "ma")])
    client.sandbox.admin.advance(hours=3)
    omni = requests.get(f"{client.sandbox.url}/omni/1/reports", headers=client.headers, timeout=10)
    assert omni.json()["results"] == []
    assert [r["messageId"] for r in client.reports()] == ["ma"]


# -- auth and scopes -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [SEND, VALIDATE])
def test_a_bad_key_gets_401_with_the_api_error_body(client: Client, path: str) -> None:
    answer = client.post(path, {"messages": []}, headers={"Authorization": "App wrong"})
    assert answer.status_code == 401
    assert answer.json()["errorCode"] == "E401"


def test_an_omni_only_key_gets_403_naming_the_scopes(client: Client) -> None:
    client.sandbox.admin.configure(api_key_scopes=["omni-failover:message:send", "omni-failover:manage"])

    answer = client.post(SEND, {"messages": [viber_then_sms("41793026720")]})

    assert answer.status_code == 403
    assert "messages-api:message:send" in answer.json()["description"]
    omni = requests.get(f"{client.sandbox.url}/omni/1/reports", headers=client.headers, timeout=10)
    assert omni.status_code == 200  # the OMNI routes do not check scopes
    client.sandbox.admin.configure(api_key_scopes=["messages-api:message:send"])
    assert client.post(SEND, {"messages": [viber_then_sms("41793026720")]}).status_code == 200


# -- faults ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["messages", "messages.validate", "messages.reports"])
def test_a_status_fault_answers_with_the_api_error_body(client: Client, endpoint: str) -> None:
    client.sandbox.admin.add_fault(endpoint=endpoint, status=503, times=1)
    path, method = {
        "messages": (SEND, "post"),
        "messages.validate": (VALIDATE, "post"),
        "messages.reports": (REPORTS, "get"),
    }[endpoint]
    body = {"messages": [viber_then_sms("41793026720")]}

    answer = requests.request(
        method, f"{client.sandbox.url}{path}", json=body, headers=client.headers, timeout=10
    )
    again = requests.request(
        method, f"{client.sandbox.url}{path}", json=body, headers=client.headers, timeout=10
    )

    assert answer.status_code == 503
    assert answer.json()["errorCode"] == "E503"
    assert again.status_code == 200
    assert client.sandbox.admin.stats()["faults_fired"] == {endpoint: 1}


def test_a_send_processed_then_failed_is_accepted_all_the_same(client: Client) -> None:
    client.sandbox.admin.add_fault(endpoint="messages", status=500, process=True, times=1)

    answer = client.post(SEND, {"messages": [viber_then_sms("41793026720", "lost-answer")]})

    assert answer.status_code == 500 and answer.json()["errorCode"] == "E500"
    client.sandbox.admin.advance(hours=1)
    assert [r["messageId"] for r in client.reports()] == ["lost-answer"]


def test_a_dropped_connection_on_the_reports(client: Client) -> None:
    client.sandbox.admin.add_fault(endpoint="messages.reports", drop=True, times=1)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{client.sandbox.url}{REPORTS}", headers=client.headers, timeout=10)
    assert client.reports() == []


# -- reports are handed out once, whatever the interleaving ----------------------------------------

send_action = st.tuples(
    st.just("send"), st.lists(st.sampled_from("0123456789"), min_size=1, max_size=4), st.booleans()
)
advance_action = st.tuples(st.just("advance"), st.integers(min_value=0, max_value=150))  # minutes
read_action = st.tuples(
    st.just("read"),
    st.sampled_from(["all", "bulkId", "messageId", "VIBER_BM", "SMS"]),
    st.integers(min_value=1, max_value=6),  # limit
    st.integers(min_value=0, max_value=1000),  # which earlier message the filter names
)


class Player:
    """Plays sends, clock moves and reads; keeps every report handed out."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.sent: list[tuple[str, str, str]] = []  # (bulkId, messageId, number)
        self.handed_out: list[dict[str, Any]] = []

    def play(self, action: tuple[Any, ...]) -> None:
        if action[0] == "send":
            self.send(action[1], action[2])
        elif action[0] == "advance":
            self.client.sandbox.admin.advance(minutes=action[1])
        else:
            self.read(*action[1:])

    def send(self, digits: list[str], per_step: bool) -> None:
        bulk_id = f"bulk-{len(self.sent)}"
        webhooks = {"delivery": {"receiveTriggeredFailoverReports": per_step}}
        messages = [
            viber_then_sms(f"41793{len(self.sent) + i:05d}{d}", f"{bulk_id}-{i}", webhooks=webhooks)
            for i, d in enumerate(digits)
        ]
        answer = self.client.send(messages, bulk_id)
        self.sent += [(bulk_id, m["messageId"], m["destination"]) for m in answer["messages"]]

    def read(self, kind: str, limit: int, pick: int) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if kind in ("VIBER_BM", "SMS"):
            params["channel"] = kind
        elif kind != "all" and self.sent:
            bulk_id, message_id, _ = self.sent[pick % len(self.sent)]
            params[kind] = bulk_id if kind == "bulkId" else message_id
        results = self.client.reports(**params)
        assert len(results) <= limit
        self.handed_out += results
        return results


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(actions=st.lists(st.one_of(send_action, advance_action, read_action), max_size=20))
def test_no_report_is_handed_out_twice_and_every_final_report_once(
    omni_sandbox: Any, actions: list[tuple[Any, ...]]
) -> None:
    omni_sandbox.admin.reset()
    omni_sandbox.admin.configure(time_scale=0)
    player = Player(Client(omni_sandbox))

    for action in actions:
        player.play(action)
    omni_sandbox.admin.advance(hours=3)  # every message final (1 h + 1 h at most), within 48 h
    for _ in range(10):  # bounded: a server that never consumes its reports must not hang the test
        if not player.read("all", 1000, 0):
            break

    keys = [(r["messageId"], r["channel"], r["status"]["name"]) for r in player.handed_out]
    assert len(keys) == len(set(keys)), "a report was handed out twice"
    for _bulk_id, message_id, number in player.sent:
        channel, name = PERSONA_FINALS[number[-1]]
        finals = [
            r
            for r in player.handed_out
            if (r["messageId"], r["channel"], r["status"]["name"]) == (message_id, channel, name)
        ]
        assert len(finals) == 1, (message_id, finals)


def test_api_key_scopes_setting() -> None:
    from airflow_provider_omni.sandbox.state import SandboxConfig, SettingError

    config = SandboxConfig()
    assert config.public()["api_key_scopes"] is None  # every scope
    config.update({"api_key_scopes": "omni-failover:manage, message:send"})
    assert config.api_key_scopes == ("omni-failover:manage", "message:send")
    with pytest.raises(SettingError, match="api_key_scopes"):
        config.update({"api_key_scopes": {"a": 1}})
    config.update({"api_key_scopes": None})
    assert config.api_key_scopes is None
