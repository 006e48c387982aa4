"""OmniHook async path (httpx, used by triggers): same auth, retry rule and error mapping as sync."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import httpx
import pytest

from airflow_provider_omni.exceptions import (
    OmniAuthError,
    OmniNotFoundError,
    OmniRateLimitError,
    OmniServerError,
    OmniValidationError,
)
from airflow_provider_omni.hooks import _auth
from airflow_provider_omni.hooks import omni as omni_module
from airflow_provider_omni.hooks.omni import OmniHook

if TYPE_CHECKING:
    from pathlib import Path

BASE = "https://abc123.api.infobip.com"
API_KEY = "Async-Secret-Key-11223344"
TOKEN = "Async-Access-Token-556677"
REPORT = {
    "bulkId": "b1",
    "messageId": "m1",
    "to": "41793026727",
    "sentAt": "2016-02-23T17:41:11.833+0100",
    "status": {"groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_HANDSET"},
    "channel": "VIBER",
}


class Server:
    """Answers requests from a list (the last answer repeats) and records them."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.token_requests: list[httpx.Request] = []
        self.tokens = [TOKEN]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/1/oauth2/token":
            self.token_requests.append(request)
            token = self.tokens[min(len(self.token_requests), len(self.tokens)) - 1]
            return httpx.Response(200, json={"access_token": token, "expires_in": 3600})
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waited: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waited.append(seconds)

    monkeypatch.setattr(omni_module, "_asleep", fake_sleep)
    return waited


def _hook(monkeypatch: pytest.MonkeyPatch, server: Server, **extra: Any) -> OmniHook:
    auth = extra.pop("auth_type", "api_key")
    conn = {
        "conn_type": "infobip_omni",
        "host": "abc123.api.infobip.com",
        "login": "client-1",
        "password": API_KEY,
        "extra": {"max_retries": 2, "auth_type": auth, **extra},
    }
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_ASYNC", json.dumps(conn))
    hook = OmniHook("omni_async")
    hook._async_transport = httpx.MockTransport(server)
    return hook


async def test_aget_reports_filters_and_parses(monkeypatch: pytest.MonkeyPatch, sleeps: list[float]) -> None:
    server = Server(httpx.Response(200, json={"results": [REPORT]}))
    hook = _hook(monkeypatch, server)
    reports = await hook.aget_reports(bulk_id="b1", limit=100, channel="sms")
    assert [(r.message_id, r.sent_at.utcoffset().total_seconds()) for r in reports] == [("m1", 3600)]  # type: ignore[union-attr]
    (request,) = server.requests
    assert request.url.path == "/omni/1/reports"
    assert parse_qs(request.url.query.decode()) == {"bulkId": ["b1"], "limit": ["100"], "channel": ["SMS"]}
    assert request.headers["Authorization"] == f"App {API_KEY}"
    assert request.headers["User-Agent"].startswith("airflow-provider-omni/")


async def test_aget_logs_repeats_ids(monkeypatch: pytest.MonkeyPatch, sleeps: list[float]) -> None:
    server = Server(httpx.Response(200, json={"results": [{"messageId": "m1", "from": "InfoSMS"}]}))
    hook = _hook(monkeypatch, server)
    logs = await hook.aget_logs(bulk_id=["b1", "b2"], general_status="delivered")
    assert logs[0].sender == "InfoSMS"
    query = server.requests[0].url.query.decode()
    assert "bulkId=b1&bulkId=b2" in query
    assert parse_qs(query)["generalStatus"] == ["DELIVERED"]


async def test_429_retry_after_then_200(monkeypatch: pytest.MonkeyPatch, sleeps: list[float]) -> None:
    server = Server(
        httpx.Response(429, headers={"Retry-After": "4"}, json={"errorCode": "E429"}),
        httpx.Response(200, json={"results": [REPORT]}),
    )
    hook = _hook(monkeypatch, server)
    assert len(await hook.aget_reports(bulk_id="b1")) == 1
    assert len(server.requests) == 2
    assert sleeps == [4.0]


async def test_connect_error_then_503_then_200(monkeypatch: pytest.MonkeyPatch, sleeps: list[float]) -> None:
    server = Server(
        httpx.ConnectError("refused"),
        httpx.Response(503, text="busy"),
        httpx.Response(200, json={"results": []}),
    )
    hook = _hook(monkeypatch, server)
    assert await hook.aget_logs(message_id="m1") == []
    assert len(server.requests) == 3
    assert len(sleeps) == 2


async def test_retries_exhausted(monkeypatch: pytest.MonkeyPatch, sleeps: list[float]) -> None:
    server = Server(httpx.ReadTimeout("slow"))
    hook = _hook(monkeypatch, server)
    with pytest.raises(OmniServerError, match="gave up after 3 attempts"):
        await hook.aget_reports(bulk_id="b1")
    assert len(server.requests) == 3


async def test_429_exhausted_is_rate_limit_error(
    monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
) -> None:
    server = Server(httpx.Response(429, headers={"Retry-After": "1"}))
    hook = _hook(monkeypatch, server)
    with pytest.raises(OmniRateLimitError) as caught:
        await hook.aget_logs(bulk_id="b")
    assert caught.value.retry_after == 1.0
    assert len(server.requests) == 3


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, {"requestError": {"serviceException": {"messageId": "UNAUTHORIZED"}}}, OmniAuthError),
        (403, {}, OmniAuthError),
        (404, {}, OmniNotFoundError),
        (
            400,
            {"requestError": {"serviceException": {"validationErrors": {"limit": ["too big"]}}}},
            OmniValidationError,
        ),
    ],
)
async def test_errors_are_mapped_without_retry(
    monkeypatch: pytest.MonkeyPatch,
    sleeps: list[float],
    status: int,
    body: dict[str, Any],
    error: type[Exception],
) -> None:
    server = Server(httpx.Response(status, json={**body, "echo": API_KEY}))
    hook = _hook(monkeypatch, server)
    with pytest.raises(error) as caught:
        await hook.aget_reports(bulk_id="b1")
    assert len(server.requests) == 1
    assert sleeps == []
    assert API_KEY not in str(caught.value)
    if status == 400:
        assert caught.value.validation_errors == {"limit": ["too big"]}  # type: ignore[attr-defined]


async def test_oauth2_token_fetched_once_and_refreshed_on_401(
    monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
) -> None:
    monkeypatch.setattr(_auth, "_clock", lambda: 500.0)
    server = Server(
        httpx.Response(200, json={"results": []}),
        httpx.Response(401, json={}),
        httpx.Response(200, json={"results": []}),
    )
    server.tokens = ["tok-first-1111", "tok-second-2222"]
    hook = _hook(monkeypatch, server, auth_type="oauth2")
    await hook.aget_reports(bulk_id="b1")
    assert len(server.token_requests) == 1
    form = parse_qs(server.token_requests[0].content.decode())
    assert form == {
        "client_id": ["client-1"],
        "client_secret": [API_KEY],
        "grant_type": ["client_credentials"],
    }
    await hook.aget_reports(bulk_id="b1")  # 401 with the cached token -> refresh once -> 200
    assert len(server.token_requests) == 2
    assert [r.headers["Authorization"] for r in server.requests] == [
        "Bearer tok-first-1111",
        "Bearer tok-first-1111",
        "Bearer tok-second-2222",
    ]


async def test_connection_is_fetched_asynchronously(
    monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
) -> None:
    calls: list[str] = []
    original = omni_module._get_async_connection

    async def spy(conn_id: str) -> Any:
        calls.append(conn_id)
        return await original(conn_id)

    monkeypatch.setattr(omni_module, "_get_async_connection", spy)
    server = Server(httpx.Response(200, json={"results": []}))
    hook = _hook(monkeypatch, server)
    await hook.aget_reports(bulk_id="b1")
    await hook.aget_reports(bulk_id="b1")
    assert calls == ["omni_async"]
    assert hook.base_url == BASE


def test_hooks_with_the_same_trust_share_one_tls_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A triggerer runs a hook per wait: one SSL context (the CA store, ~0.5 MiB) per trust, not per hook;
    a CA bundle rewritten on disk gets a new one."""
    from airflow_provider_omni.hooks.omni import _tls_verification
    from tests.tls_certs import make_tls_files

    def settings(conn_id: str, **extra: Any) -> Any:
        connection = {"conn_type": "infobip_omni", "host": "https://x.api.infobip.com", "password": "k" * 20}
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({**connection, "extra": extra}))
        return OmniHook(conn_id).settings

    first, second = _tls_verification(settings("tls_a")), _tls_verification(settings("tls_b"))
    assert first is second
    assert _tls_verification(settings("tls_off", verify_ssl=False)) is False
    bundle = make_tls_files(tmp_path).ca
    with_bundle = _tls_verification(settings("tls_ca", ca_bundle=str(bundle)))
    assert with_bundle is not first
    assert _tls_verification(settings("tls_ca2", ca_bundle=str(bundle))) is with_bundle
    bundle.write_bytes(bundle.read_bytes() + b"\n")  # renewed: read again
    assert _tls_verification(settings("tls_ca3", ca_bundle=str(bundle))) is not with_bundle
