"""The sandbox's request latency (``request_latency``, ``latency_per_destination``) and the records
that measure the concurrency and pace of sends (``sends()``, ``max_in_flight``)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest
import requests

from airflow_provider_omni.sandbox.__main__ import _sandbox, build_parser, main
from airflow_provider_omni.sandbox.server import OmniSandbox

pytestmark = pytest.mark.timeout(120)

#: Tolerance of the lower bounds: ``time.time()`` is not monotonic.
SLACK = 0.01


class Client:
    """A plain OMNI client with the sandbox's API key and an SMS-only scenario."""

    def __init__(self, sandbox: Any) -> None:
        self.url = sandbox.url
        self.headers = {"Authorization": f"App {sandbox.api_key}"}
        flow = [{"from": "InfoSMS", "channel": "SMS"}]
        created = requests.post(
            f"{self.url}/omni/1/scenarios", json={"flow": flow}, headers=self.headers, timeout=10
        )
        assert created.status_code == 201, created.text
        self.key = str(created.json()["key"])

    def send(self, bulk_id: str, size: int = 1, timeout: float = 30) -> requests.Response:
        """Send a bulk of ``size`` destinations (a new connection each time)."""
        body = {
            "scenarioKey": self.key,
            "bulkId": bulk_id,
            "destinations": [{"to": {"phoneNumber": f"4179{i:07d}"}} for i in range(size)],
            "sms": {"text": "Hello by SMS"},
        }
        return requests.post(f"{self.url}/omni/1/advanced", json=body, headers=self.headers, timeout=timeout)


@pytest.fixture
def client(omni_sandbox: Any) -> Client:
    return Client(omni_sandbox)


def took(send: dict[str, Any]) -> float:
    """Return how long the sandbox held a send, from its record."""
    return float(send["answered"] - send["received"])


def test_the_latency_delays_every_send(omni_sandbox: Any, client: Client) -> None:
    omni_sandbox.admin.configure(request_latency=0.3)
    assert client.send("slow").status_code == 200
    (send,) = omni_sandbox.admin.sends()
    assert (send["bulk_id"], send["destinations"], send["status"]) == ("slow", 1, 200)
    assert took(send) >= 0.3 - SLACK


def test_the_latency_per_destination_scales_with_the_bulk(omni_sandbox: Any, client: Client) -> None:
    omni_sandbox.admin.configure(request_latency=0.05, latency_per_destination=0.0005)
    assert client.send("small", size=10).status_code == 200
    assert client.send("big", size=1000).status_code == 200
    small, big = omni_sandbox.admin.sends()
    assert (small["bulk_id"], small["destinations"], big["bulk_id"], big["destinations"]) == (
        "small",
        10,
        "big",
        1000,
    )
    assert took(small) >= 0.05 + 10 * 0.0005 - SLACK
    assert took(big) >= 0.05 + 1000 * 0.0005 - SLACK
    assert took(big) > took(small)


def test_concurrent_sends_wait_side_by_side(omni_sandbox: Any, client: Client) -> None:
    omni_sandbox.admin.configure(request_latency=2)  # long enough for all four to arrive on a slow machine
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def send(index: int) -> None:
        barrier.wait(timeout=10)
        statuses.append(client.send(f"concurrent-{index}", size=2).status_code)

    threads = [threading.Thread(target=send, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert statuses == [200] * 4
    assert omni_sandbox.admin.stats()["max_in_flight"]["advanced"] == 4
    sends = omni_sandbox.admin.sends()
    assert sorted(send["bulk_id"] for send in sends) == [f"concurrent-{i}" for i in range(4)]
    assert max(send["received"] for send in sends) < min(send["answered"] for send in sends)  # overlap


def test_the_token_and_admin_routes_are_not_delayed(omni_sandbox: Any) -> None:
    omni_sandbox.admin.configure(request_latency=30)
    form = {"grant_type": "client_credentials", "client_id": "sandbox", "client_secret": "sandbox-key"}
    token = requests.post(f"{omni_sandbox.url}/auth/1/oauth2/token", data=form, timeout=10)
    assert token.status_code == 200, token.text
    assert requests.get(f"{omni_sandbox.url}/_sandbox/stats", timeout=10).status_code == 200


def test_a_reset_forgets_a_send_still_waiting(omni_sandbox: Any, client: Client) -> None:
    omni_sandbox.admin.configure(request_latency=6)  # the time to see it arrive and reset
    errors: list[Exception] = []

    def send() -> None:
        try:
            client.send("forgotten")
        except requests.exceptions.ConnectionError as exc:
            errors.append(exc)

    thread = threading.Thread(target=send)
    thread.start()
    deadline = time.monotonic() + 10
    while omni_sandbox.admin.stats()["max_in_flight"].get("advanced") != 1:
        assert time.monotonic() < deadline, "the send never arrived"
        time.sleep(0.02)
    omni_sandbox.admin.reset()
    thread.join(timeout=30)
    assert len(errors) == 1  # the connection was dropped, not answered
    stats = omni_sandbox.admin.stats()
    assert (stats["destinations"], stats["max_in_flight"], omni_sandbox.admin.sends()) == (0, {}, [])


# -- records ---------------------------------------------------------------------------------------


def test_sends_lists_bulks_and_sizes_and_a_reset_empties_it(omni_sandbox: Any, client: Client) -> None:
    before = time.time()
    assert client.send("first", size=3).status_code == 200
    assert client.send("second", size=5).status_code == 200
    refused = requests.post(
        f"{client.url}/omni/1/advanced", json={"destinations": []}, headers=client.headers, timeout=10
    )
    assert refused.status_code == 400
    sends = omni_sandbox.admin.sends()
    assert [(s["bulk_id"], s["destinations"], s["status"]) for s in sends] == [
        ("first", 3, 200),
        ("second", 5, 200),
        (None, 0, 400),
    ]
    assert all(before - SLACK <= s["received"] <= s["answered"] <= time.time() + SLACK for s in sends)
    assert omni_sandbox.admin.stats()["max_in_flight"]["advanced"] == 1
    omni_sandbox.admin.reset()
    assert omni_sandbox.admin.sends() == []
    assert omni_sandbox.admin.stats()["max_in_flight"] == {}


# -- settings --------------------------------------------------------------------------------------


def test_the_settings_are_shown_and_reset(omni_sandbox: Any) -> None:
    config = omni_sandbox.admin.config()
    assert (config["request_latency"], config["latency_per_destination"]) == (0, 0)
    changed = omni_sandbox.admin.configure(request_latency="0.15", latency_per_destination=0.00005)
    assert (changed["request_latency"], changed["latency_per_destination"]) == (0.15, 0.00005)
    omni_sandbox.admin.reset()
    assert omni_sandbox.admin.config()["request_latency"] == 0


@pytest.mark.parametrize("name", ["request_latency", "latency_per_destination"])
@pytest.mark.parametrize("value", [-0.1, "slow", None, True, [1], "nan", "inf", 61])
def test_bad_values_are_refused_naming_the_setting(omni_sandbox: Any, name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=name):
        omni_sandbox.admin.configure(**{name: value})
    assert omni_sandbox.admin.config()[name] == 0


@pytest.mark.parametrize("name", ["request_latency", "latency_per_destination"])
def test_a_bad_value_is_refused_before_the_sandbox_starts(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        OmniSandbox(config={name: -1})


# -- the command line ------------------------------------------------------------------------------


def test_the_command_takes_the_latency_flags() -> None:
    args = build_parser().parse_args(["--latency", "0.15", "--latency-per-destination", "0.00005"])
    config = _sandbox(args)._settings.public()
    assert (config["request_latency"], config["latency_per_destination"]) == (0.15, 0.00005)
    text = " ".join(build_parser().format_help().split())
    for needle in ("--latency SECONDS", "--latency-per-destination SECONDS", "round trip over a WAN"):
        assert needle in text


@pytest.mark.parametrize(
    ("flag", "setting"),
    [("--latency", "request_latency"), ("--latency-per-destination", "latency_per_destination")],
)
def test_the_command_refuses_bad_latencies(
    capsys: pytest.CaptureFixture[str], flag: str, setting: str
) -> None:
    assert main(["--port", "0", flag, "-1"]) == 2  # refused before it starts
    assert setting in capsys.readouterr().err
    for value in ("nan", "soon"):
        with pytest.raises(SystemExit) as exited:
            main(["--port", "0", flag, value])
        assert exited.value.code == 2
        assert flag in capsys.readouterr().err


def test_the_listening_socket_says_tcp_so_that_asyncio_turns_nagle_off() -> None:
    # asyncio's own loop (uvicorn without uvloop, as on Airflow 2.11) sets TCP_NODELAY only on sockets
    # whose proto is IPPROTO_TCP; with proto 0 every answer waited for a delayed ACK (~40 ms), which made
    # the Schemathesis runs 9x slower there
    with OmniSandbox() as sandbox:
        assert sandbox._socket is not None
        assert sandbox._socket.proto == socket.IPPROTO_TCP
