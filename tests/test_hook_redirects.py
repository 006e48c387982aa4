"""OmniHook: one rule for every status code on the sync (requests) and async (httpx) paths.

Redirects are never followed: a 3xx raises OmniConfigurationError naming the target (without its
query string) and telling the user which Host to set. A 2xx whose body is not what the endpoint
returns is a server error, never "no results". A tiny loopback HTTP server answers what the sandbox
cannot (redirects, empty 200s) with real requests and httpx clients; the table over every status
code uses requests-mock and httpx.MockTransport.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from airflow_provider_omni.exceptions import (
    OmniAuthError,
    OmniConfigurationError,
    OmniError,
    OmniNotFoundError,
    OmniRateLimitError,
    OmniSendUncertainError,
    OmniServerError,
    OmniValidationError,
)
from airflow_provider_omni.hooks.omni import OmniHook
from airflow_provider_omni.models import AdvancedBulk, OmniAdvancedRequest, validate_destinations

if TYPE_CHECKING:
    from collections.abc import Iterator

API_KEY = "Loopback-Key-5f6e7d8c"
NUMBER = "41793026727"
MAX_RETRIES = 2


class Loopback:
    """A local HTTP server answering every request with ``answer`` (status, headers, body)."""

    def __init__(self) -> None:
        self.answer: tuple[int, dict[str, str], bytes] = (200, {}, b"{}")
        self.requests: list[tuple[str, str]] = []
        loopback = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                loopback.requests.append((self.command, self.path))
                status, headers, body = loopback.answer
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def loopback_server() -> Iterator[Loopback]:
    server = Loopback()
    yield server
    server.close()


@pytest.fixture
def loopback(loopback_server: Loopback) -> Loopback:
    loopback_server.requests.clear()
    return loopback_server


def _hook(monkeypatch: pytest.MonkeyPatch, host: str) -> OmniHook:
    conn = {
        "conn_type": "infobip_omni",
        "host": host,
        "password": API_KEY,
        "extra": {"max_retries": MAX_RETRIES},
    }
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_LOOPBACK", json.dumps(conn))
    return OmniHook("omni_loopback")


def _bulk() -> AdvancedBulk:
    body = {
        "bulkId": "bulk-r",
        "destinations": [{"messageId": "bulk-r.0", "to": {"phoneNumber": NUMBER}}],
        "viber": {"text": "hi"},
        "sms": {"text": "hi"},
    }
    fields = AdvancedBulk.fields_of(OmniAdvancedRequest.model_validate(body))
    return AdvancedBulk.build(fields, "bulk-r", validate_destinations(body["destinations"]))


def _run(call: Any) -> Any:
    """Run a sync call, or an async one to completion; return its result or the exception raised."""
    import asyncio

    try:
        result = call()
        return asyncio.run(result) if asyncio.iscoroutine(result) else result
    except Exception as err:
        return err


#: The calls compared: a GET on both paths, and a send (POST) on the sync path.
CALLS = {
    "sync reports": lambda hook: hook.get_reports(bulk_id="b1"),
    "async reports": lambda hook: hook.aget_reports(bulk_id="b1"),
    "sync send": lambda hook: hook.send_advanced_bulk(_bulk()),
}


# -- redirects ------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("call", list(CALLS))
def test_redirect_is_a_configuration_error_and_is_not_followed(
    monkeypatch: pytest.MonkeyPatch, loopback: Loopback, no_sleep: list[float], status: int, call: str
) -> None:
    # The target is on the same server: had the client followed it, the server would see 2 requests.
    path = "/omni/1/advanced" if call.endswith("send") else "/omni/1/reports"
    location = f"{loopback.url}/v2{path}?bulkId=b1&to={NUMBER}"
    loopback.answer = (status, {"Location": location}, b"")
    hook = _hook(monkeypatch, loopback.url)

    error = _run(lambda: CALLS[call](hook))

    assert type(error) is OmniConfigurationError, error
    assert len(loopback.requests) == 1  # not followed, not retried
    assert no_sleep == []
    message = str(error)
    assert str(status) in message
    assert f"to {loopback.url}/v2{path}." in message
    assert f"Set the Host of connection 'omni_loopback' to {loopback.url}/v2" in message
    assert "?" not in message and NUMBER not in message and "bulkId=" not in message
    assert "MAY have been sent" not in message
    assert error.status_code == status


def test_relative_redirect_names_the_absolute_target(
    monkeypatch: pytest.MonkeyPatch, loopback: Loopback, no_sleep: list[float]
) -> None:
    loopback.answer = (301, {"Location": "/api/omni/1/reports"}, b"")
    error = _run(lambda: _hook(monkeypatch, loopback.url).get_reports(bulk_id="b1"))
    assert type(error) is OmniConfigurationError
    assert f"to {loopback.url}/api/omni/1/reports" in str(error)
    assert f"Set the Host of connection 'omni_loopback' to {loopback.url}/api" in str(error)


@pytest.mark.parametrize("call", list(CALLS))
def test_redirect_of_the_oauth2_token_endpoint(
    monkeypatch: pytest.MonkeyPatch, loopback: Loopback, no_sleep: list[float], call: str
) -> None:
    loopback.answer = (308, {"Location": "https://eu.example.com/auth/1/oauth2/token"}, b"")
    conn = {
        "conn_type": "infobip_omni",
        "host": loopback.url,
        "login": "client-1",
        "password": API_KEY,
        "extra": {"auth_type": "oauth2", "max_retries": MAX_RETRIES},
    }
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_LOOPBACK", json.dumps(conn))
    error = _run(lambda: CALLS[call](OmniHook("omni_loopback")))
    assert type(error) is OmniConfigurationError
    assert loopback.requests == [("POST", "/auth/1/oauth2/token")]
    assert "Set the Host of connection 'omni_loopback' to https://eu.example.com." in str(error)


# -- 2xx answers that are not what the endpoint returns -----------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"<html>maintenance</html>", id="html"),
        pytest.param(b"[]", id="array"),
        pytest.param(b"null", id="null"),
        pytest.param(b"{}", id="no-results"),
        pytest.param(b'{"results": {}}', id="results-not-a-list"),
        pytest.param(b'{"requestError": {"serviceException": {"text": "x"}}}', id="request-error"),
    ],
)
@pytest.mark.parametrize("call", ["sync reports", "async reports", "sync logs", "async logs"])
def test_unusable_2xx_for_reports_and_logs_is_a_retried_server_error(
    monkeypatch: pytest.MonkeyPatch, loopback: Loopback, no_sleep: list[float], body: bytes, call: str
) -> None:
    loopback.answer = (200, {"Content-Type": "application/json"}, body)
    hook = _hook(monkeypatch, loopback.url)
    calls = {
        "sync reports": lambda: hook.get_reports(bulk_id="b1"),
        "async reports": lambda: hook.aget_reports(bulk_id="b1"),
        "sync logs": lambda: hook.get_logs(bulk_id="b1"),
        "async logs": lambda: hook.aget_logs(bulk_id="b1"),
    }

    error = _run(calls[call])

    assert type(error) is OmniServerError, error  # never "no reports"
    assert len(loopback.requests) == 1 + MAX_RETRIES  # retried like a 5xx
    assert f"gave up after {1 + MAX_RETRIES} attempts" in str(error)
    assert error.status_code == 200


@pytest.mark.parametrize("body", [b"", b"[]", b"not json"])
def test_unusable_2xx_for_scenarios_is_a_server_error(
    monkeypatch: pytest.MonkeyPatch, loopback: Loopback, no_sleep: list[float], body: bytes
) -> None:
    loopback.answer = (200, {}, body)
    hook = _hook(monkeypatch, loopback.url)
    assert type(_run(hook.list_scenarios)) is OmniServerError
    assert len(loopback.requests) == 1 + MAX_RETRIES
    ok, message = hook.test_connection()
    assert ok is False
    assert "Infobip answered 200 with" in message


def test_2xx_with_results_is_read_on_both_paths(
    monkeypatch: pytest.MonkeyPatch, loopback: Loopback, no_sleep: list[float]
) -> None:
    loopback.answer = (200, {}, json.dumps({"results": [{"messageId": "m1"}]}).encode())
    hook = _hook(monkeypatch, loopback.url)
    assert [r.message_id for r in _run(lambda: hook.get_reports(bulk_id="b1"))] == ["m1"]
    assert [r.message_id for r in _run(lambda: hook.aget_reports(bulk_id="b1"))] == ["m1"]


# -- one table: every status, both paths ------------------------------------------------------------

BASE = "https://abc123.api.infobip.com"


def _expected(status: int, body: bytes) -> type[Exception] | None:
    if 200 <= status < 300:
        return None if body else OmniServerError
    if 300 <= status < 400:
        return OmniConfigurationError
    specific: dict[int, type[Exception]] = {
        400: OmniValidationError,
        401: OmniAuthError,
        403: OmniAuthError,
        404: OmniNotFoundError,
        429: OmniRateLimitError,
        407: OmniConfigurationError,  # the proxy refused its credentials: nothing reached Infobip
    }
    return specific.get(status, OmniServerError if status >= 500 else OmniError)


def _outcome(result: Any, attempts: int) -> tuple[str, int]:
    return (type(result).__name__ if isinstance(result, Exception) else "ok", attempts)


@pytest.mark.parametrize("body", [b'{"results": []}', b""], ids=["results", "empty"])
def test_sync_and_async_treat_every_status_the_same(
    monkeypatch: pytest.MonkeyPatch, requests_mock: Any, no_sleep: list[float], body: bytes
) -> None:
    headers = {"Location": f"{BASE}/elsewhere/omni/1/reports?to={NUMBER}", "Retry-After": "0"}
    hook = _hook(monkeypatch, BASE)
    async_calls: list[httpx.Request] = []
    status = 0

    def transport(request: httpx.Request) -> httpx.Response:
        async_calls.append(request)
        return httpx.Response(status, headers=headers, content=body)

    hook._async_transport = httpx.MockTransport(transport)
    different, unexpected = [], []
    for status in range(200, 600):
        requests_mock.reset_mock()
        async_calls.clear()
        requests_mock.get(f"{BASE}/omni/1/reports", status_code=status, headers=headers, content=body)
        sync = _outcome(_run(lambda: hook.get_reports(bulk_id="b1")), requests_mock.call_count)
        asynchronous = _outcome(_run(lambda: hook.aget_reports(bulk_id="b1")), len(async_calls))
        if sync != asynchronous:
            different.append((status, sync, asynchronous))
        expected = _expected(status, body)
        if sync[0] != (expected.__name__ if expected else "ok"):
            unexpected.append((status, sync[0]))
    assert different == []
    assert unexpected == []


def test_a_redirected_send_is_not_uncertain(requests_mock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    requests_mock.post(f"{BASE}/omni/1/advanced", status_code=307, headers={"Location": f"{BASE}/x"})
    requests_mock.get(f"{BASE}/x", json={})
    error = _run(lambda: _hook(monkeypatch, BASE).send_advanced_bulk(_bulk()))
    assert type(error) is OmniConfigurationError
    assert not isinstance(error, OmniSendUncertainError)
    assert requests_mock.call_count == 1
