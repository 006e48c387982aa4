"""Egress proxy and custom CA bundle, through a real forwarding proxy on loopback.

Both paths of the hook (requests for operators and Test Connection, httpx for triggers) must take
the connection's proxy (``proxy_url``, ``proxy_password``) or, when it names none, the standard
``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``NO_PROXY`` variables; and trust the connection's ``ca_bundle``
for an https:// Infobip behind a TLS-inspecting proxy (here: the sandbox serving https:// with a
certificate from a throwaway authority).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

import pytest
from test_sensor import send

from airflow_provider_omni.exceptions import (
    OmniConfigurationError,
    OmniSendUncertainError,
    OmniServerError,
    OmniValidationError,
)
from airflow_provider_omni.hooks.omni import OmniHook
from airflow_provider_omni.sandbox.server import OmniSandbox, connection_dict
from airflow_provider_omni.triggers.delivery_report import OmniDeliveryReportTrigger
from tests import airflow_processes
from tests.airflow_compat import AIRFLOW_V_3_0_PLUS
from tests.forward_proxy import ForwardProxy
from tests.tls_certs import TlsFiles, make_tls_files

if TYPE_CHECKING:
    from collections.abc import Iterator

PROXY_USER = "egress"
PROXY_PASSWORD = "Pr0xy-S3cret/with:odd@chars"
_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test without proxy variables (in either case)."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy() as running:
        yield running


@pytest.fixture
def auth_proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy(credentials=(PROXY_USER, PROXY_PASSWORD)) as running:
        yield running


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def https_sandbox(tls_files: TlsFiles) -> Iterator[OmniSandbox]:
    """A second sandbox serving https:// with a certificate of the throwaway authority."""
    with OmniSandbox(
        api_key="tls-key", time_scale=600.0, ssl_certfile=tls_files.chain, ssl_keyfile=tls_files.key
    ) as sandbox:
        yield sandbox


def _use(
    monkeypatch: pytest.MonkeyPatch, sandbox: OmniSandbox, conn_id: str = "omni_default", **extra: Any
) -> str:
    """Point connection ``conn_id`` at ``sandbox`` with ``extra``; return the conn id."""
    conn = connection_dict(sandbox.url, sandbox.api_key, **{"max_retries": 0, **extra})
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return conn_id


async def _reports_through_trigger(bulk_id: str, count: int) -> dict[str, Any]:
    trigger = OmniDeliveryReportTrigger(
        buckets={bulk_id: count}, omni_conn_id="omni_default", poll_interval=0.05, end_time=time.time() + 60
    )
    events = [event async for event in trigger.run()]
    assert len(events) == 1
    return events[0].payload


# -- the connection's proxy -------------------------------------------------------------------------


def test_sync_requests_go_through_the_connections_proxy(omni_sandbox, proxy, monkeypatch):
    _use(monkeypatch, omni_sandbox, proxy_url=proxy.url)
    send(OmniHook(), ["41793026721", "41793026726"])

    stats = omni_sandbox.admin.stats()
    assert proxy.log.paths()[-1] == "POST /omni/1/advanced"
    assert len(proxy.log.passed) == sum(stats["requests"].values())  # every request went through it
    assert stats["destinations"] == 2


async def test_the_trigger_polls_through_the_connections_proxy(omni_sandbox, proxy, monkeypatch):
    _use(monkeypatch, omni_sandbox, proxy_url=proxy.url)
    send(OmniHook(), ["41793026721", "41793026726"], bulk_id="wait.b1")
    omni_sandbox.admin.advance(hours=3)
    before = len(proxy.log.passed)

    payload = await _reports_through_trigger("wait.b1", 2)

    assert payload["status"] == "success"
    assert payload["summary"]["outcomes"]["VIBER_DELIVERED"] == 1
    assert payload["summary"]["outcomes"]["SMS_DELIVERED"] == 1
    polled = proxy.log.paths()[before:]
    assert polled and set(polled) <= {"GET /omni/1/reports", "GET /omni/1/logs"}, polled


def test_test_connection_goes_through_the_proxy_and_says_so(omni_sandbox, proxy, monkeypatch):
    conn_id = _use(monkeypatch, omni_sandbox, "omni_proxied", proxy_url=proxy.url)

    ok, message = OmniHook(conn_id).test_connection()

    assert ok, message
    assert f"through the proxy {proxy.url}" in message
    assert proxy.log.paths() == ["GET /omni/1/scenarios"]


def test_proxy_credentials_from_the_password_field_are_sent_and_masked(omni_sandbox, auth_proxy, monkeypatch):
    user_url = auth_proxy.url.replace("http://", f"http://{PROXY_USER}@")
    _use(monkeypatch, omni_sandbox, proxy_url=user_url, proxy_password=PROXY_PASSWORD)
    hook = OmniHook()

    hook.list_scenarios()
    assert auth_proxy.log.paths() == ["GET /omni/1/scenarios"]
    assert auth_proxy.log.refused == []
    assert PROXY_PASSWORD not in repr(hook.settings)
    assert PROXY_PASSWORD in hook.settings.secrets()  # registered with Airflow's secret masker
    assert hook._redact(f"connecting via {hook.settings.proxy_url}") == "connecting via ***"


def test_a_wrong_proxy_password_is_a_configuration_error_that_names_the_extras(
    omni_sandbox, auth_proxy, monkeypatch
):
    user_url = auth_proxy.url.replace("http://", f"http://{PROXY_USER}@")
    _use(monkeypatch, omni_sandbox, proxy_url=user_url, proxy_password="wrong-Secret-123")

    with pytest.raises(OmniConfigurationError) as caught:
        OmniHook().list_scenarios()

    message = str(caught.value)
    assert "407" in message and "proxy_password" in message
    assert "wrong-Secret-123" not in message
    assert omni_sandbox.admin.stats()["requests"] == {}  # nothing reached Infobip


async def test_the_async_path_sends_the_proxy_credentials_too(omni_sandbox, auth_proxy, monkeypatch):
    user_url = auth_proxy.url.replace("http://", f"http://{PROXY_USER}@")
    _use(monkeypatch, omni_sandbox, proxy_url=user_url, proxy_password=PROXY_PASSWORD)

    assert await OmniHook().aget_reports(bulk_id="nothing-sent") == []
    assert auth_proxy.log.paths() == ["GET /omni/1/reports"]
    assert auth_proxy.log.refused == []


def test_an_unreachable_proxy_sends_nothing_and_a_send_may_be_retried(omni_sandbox, monkeypatch, no_sleep):
    dead = f"http://127.0.0.1:{airflow_processes.free_port()}"
    _use(monkeypatch, omni_sandbox, proxy_url=dead, max_retries=2)
    message = {
        "scenarioKey": "ANY",
        "bulkId": "proxy.b1",
        "destinations": [{"to": {"phoneNumber": "41793026721"}}],
        "sms": {"text": "x"},
    }

    with pytest.raises(OmniServerError) as caught:
        OmniHook().send_advanced(message)

    # nothing left this machine, so the send was retried, and it is not "may have been sent"
    assert not isinstance(caught.value, OmniSendUncertainError)
    assert "Could not connect" in str(caught.value) and "proxy" in str(caught.value)
    assert "gave up after 3 attempts" in str(caught.value) and len(no_sleep) == 2


def test_a_proxy_refusing_the_https_tunnel_is_a_configuration_error_on_both_paths(
    https_sandbox, auth_proxy, monkeypatch
):
    https_sandbox.admin.reset()
    user_url = auth_proxy.url.replace("http://", f"http://{PROXY_USER}@")
    _use(monkeypatch, https_sandbox, proxy_url=user_url, proxy_password="wrong-Secret-123", max_retries=2)
    hook = OmniHook()

    with pytest.raises(OmniConfigurationError, match=r"407.*proxy_password"):
        hook.list_scenarios()
    with pytest.raises(OmniConfigurationError, match=r"407.*proxy_password"):
        asyncio.run(hook.aget_reports(bulk_id="x"))

    assert (
        auth_proxy.log.refused == ["CONNECT 127.0.0.1:" + https_sandbox.url.rsplit(":", 1)[1]] * 2
    )  # no retry
    assert https_sandbox.admin.stats()["requests"] == {}


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"proxy_url": "socks5://127.0.0.1:1080"}, "proxy_url"),
        ({"proxy_url": "http://proxy.example.com"}, "port"),
        ({"proxy_password": "x"}, "proxy_url"),
        ({"proxy_url": "http://proxy.example.com:3128", "proxy_password": "x"}, "proxy user"),
        ({"ca_bundle": "/nonexistent/ca.pem"}, "ca_bundle"),
    ],
)
def test_bad_proxy_or_bundle_extras_are_refused_before_anything_is_sent(
    omni_sandbox, monkeypatch, extra, named
):
    _use(monkeypatch, omni_sandbox, **extra)

    with pytest.raises(OmniValidationError, match=named):
        OmniHook().list_scenarios()

    assert omni_sandbox.admin.stats()["requests"] == {}


# -- the environment's proxy ------------------------------------------------------------------------


def test_http_proxy_variable_is_honoured_on_both_paths(omni_sandbox, proxy, monkeypatch):
    _use(monkeypatch, omni_sandbox)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    hook = OmniHook()

    hook.list_scenarios()

    asyncio.run(hook.aget_reports(bulk_id="nothing-sent"))

    assert proxy.log.paths() == ["GET /omni/1/scenarios", "GET /omni/1/reports"]


def test_no_proxy_variable_bypasses_the_environments_proxy_on_both_paths(omni_sandbox, proxy, monkeypatch):
    _use(monkeypatch, omni_sandbox)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    hook = OmniHook()

    hook.list_scenarios()

    asyncio.run(hook.aget_reports(bulk_id="nothing-sent"))

    assert proxy.log.passed == []
    assert omni_sandbox.admin.stats()["requests"] == {"scenarios.list": 1, "reports": 1}


def test_the_connections_proxy_wins_over_the_environment(omni_sandbox, proxy, monkeypatch):
    with ForwardProxy() as other:
        _use(monkeypatch, omni_sandbox, proxy_url=proxy.url)
        monkeypatch.setenv("HTTP_PROXY", other.url)

        OmniHook().list_scenarios()

        assert proxy.log.paths() == ["GET /omni/1/scenarios"]
        assert other.log.passed == []


# -- https:// through a CONNECT tunnel, with the connection's CA bundle -----------------------------


def test_https_through_the_proxy_trusts_the_connections_ca_bundle(
    https_sandbox, tls_files, proxy, monkeypatch
):
    https_sandbox.admin.reset()
    _use(monkeypatch, https_sandbox, proxy_url=proxy.url, ca_bundle=str(tls_files.ca))

    send(OmniHook(), ["41793026721"], bulk_id="tls.b1")

    # one tunnel, kept open for the scenario look-up and the send
    assert proxy.log.paths() == ["CONNECT"]
    assert https_sandbox.admin.stats()["destinations"] == 1


async def test_https_trigger_through_the_proxy_trusts_the_ca_bundle(
    https_sandbox, tls_files, proxy, monkeypatch
):
    https_sandbox.admin.reset()
    _use(monkeypatch, https_sandbox, proxy_url=proxy.url, ca_bundle=str(tls_files.ca))
    send(OmniHook(), ["41793026726"], bulk_id="tls.b2")
    https_sandbox.admin.advance(hours=3)

    payload = await _reports_through_trigger("tls.b2", 1)

    assert payload["summary"]["outcomes"]["SMS_DELIVERED"] == 1
    assert "CONNECT" in proxy.log.paths()


def test_without_the_ca_bundle_the_certificate_is_refused_on_both_paths(https_sandbox, proxy, monkeypatch):
    https_sandbox.admin.reset()
    _use(monkeypatch, https_sandbox, proxy_url=proxy.url)
    hook = OmniHook()

    with pytest.raises(OmniServerError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        hook.list_scenarios()

    with pytest.raises(OmniServerError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        asyncio.run(hook.aget_reports(bulk_id="x"))
    assert https_sandbox.admin.stats()["requests"] == {}


def test_https_proxy_variable_tunnels_https(https_sandbox, tls_files, proxy, monkeypatch):
    https_sandbox.admin.reset()
    _use(monkeypatch, https_sandbox, ca_bundle=str(tls_files.ca))
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    hook = OmniHook()

    hook.list_scenarios()

    asyncio.run(hook.aget_reports(bulk_id="nothing-sent"))

    assert proxy.log.paths().count("CONNECT") == 2


# -- Test Connection in the real api-server ---------------------------------------------------------


@pytest.mark.skipif(
    not AIRFLOW_V_3_0_PLUS,
    reason="Airflow 2.11 has no api-server: its webserver's Test goes through the proxy in "
    "test_ui_connection_form_fab.py",
)
@pytest.mark.timeout(420)  # migrate (120 s at most) + health (HEALTHY_WITHIN) + the test
def test_test_connection_of_the_api_server_goes_through_the_proxy(
    tmp_path_factory: pytest.TempPathFactory, omni_sandbox: OmniSandbox, auth_proxy: ForwardProxy
) -> None:
    body = {
        "connection_id": "omni_behind_proxy",
        "conn_type": "infobip_omni",
        "host": omni_sandbox.url,
        "password": omni_sandbox.api_key,
        "extra": json.dumps(
            {
                "max_retries": 0,
                "proxy_url": auth_proxy.url.replace("http://", f"http://{PROXY_USER}@"),
                "proxy_password": PROXY_PASSWORD,
            }
        ),
    }
    with airflow_processes.api_server(tmp_path_factory.mktemp("airflow-proxy-home")) as url:
        session = airflow_processes.api_session(url)
        result = session.post(f"{url}/api/v2/connections/test", json=body, timeout=60).json()

    assert result.get("status") is True, result
    assert f"through the proxy {auth_proxy.url}" in result["message"]
    assert auth_proxy.log.paths() == ["GET /omni/1/scenarios"]
