"""OmniHook (sync): connection, auth, request bodies against the OpenAPI document, retries, errors,
secrets, scenarios, reports and logs. HTTP is mocked with requests-mock: these are the answers the
sandbox cannot produce on demand (exact failure kinds at exact moments)."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pendulum
import pytest
import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from airflow_provider_omni.exceptions import (
    OmniAuthError,
    OmniNotFoundError,
    OmniRateLimitError,
    OmniSendUncertainError,
    OmniServerError,
    OmniValidationError,
)
from airflow_provider_omni.hooks import _auth
from airflow_provider_omni.hooks import omni as omni_module
from airflow_provider_omni.hooks.omni import OmniHook
from airflow_provider_omni.models import (
    Destination,
    GeneralStatus,
    OmniAdvancedRequest,
    OmniChannel,
    SmsData,
    Step,
    ViberData,
)
from tests.openapi import validate_request

BASE = "https://abc123.api.infobip.com"
API_KEY = "Sup3r-Secret-Api-Key-0f9e8d7c"
PASSWORD = "Pa55w0rd-Very-Secret"
CLIENT_SECRET = "Client-Secret-9a8b7c6d5e"
TOKEN = "Access-Token-XYZ-123456789"
SCENARIO = {"key": "CC9F01A5DC7BEE2C2B829D203482A654", "name": "My VIBER-SMS scenario"}
FLOW = [{"from": "ViberSender", "channel": "VIBER"}, {"from": "InfoSMS", "channel": "SMS"}]
SEND_OK = {
    "bulkId": "bulk-1",
    "messages": [
        {
            "to": {"phoneNumber": "41793026727"},
            "status": {"groupId": 1, "groupName": "PENDING", "id": 7, "name": "PENDING_ENROUTE"},
            "messageId": "bulk-1.0",
        }
    ],
}


def accept_all(request: Any, context: Any) -> dict[str, Any]:
    """Answer a send as Infobip does: the bulk id and one PENDING message per destination sent."""
    body = request.json()
    messages = [
        {
            "to": destination["to"],
            "status": {"groupId": 1, "groupName": "PENDING", "id": 7, "name": "PENDING_ENROUTE"},
            "messageId": destination.get("messageId") or f"generated-{index}",
        }
        for index, destination in enumerate(body["destinations"])
    ]
    return {"bulkId": body.get("bulkId") or "generated-bulk", "messages": messages}


def _set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str = "omni_test", **fields: Any) -> str:
    conn: dict[str, Any] = {
        "conn_type": "infobip_omni",
        "host": "abc123.api.infobip.com",
        "password": API_KEY,
    }
    extra = fields.pop("extra", {})
    conn.update(fields)
    conn["extra"] = {"max_retries": 3, **extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return conn_id


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the waits between retries instead of sleeping."""
    waited: list[float] = []
    monkeypatch.setattr(omni_module, "_sleep", waited.append)
    return waited


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch, sleeps: list[float]) -> OmniHook:
    return OmniHook(_set_conn(monkeypatch))


def _message(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "scenarioKey": SCENARIO["key"],
        "bulkId": "bulk-1",
        "destinations": [{"messageId": "bulk-1.0", "to": {"phoneNumber": "41793026727"}}],
        "viber": {"text": "Hello on Viber"},
        "sms": {"text": "Hello by SMS"},
    }
    body.update(overrides)
    return body


def _send_bulk(hook: OmniHook, **overrides: Any) -> Any:
    """Send ``_message(**overrides)`` through the bulk path (what the send operator uses)."""
    from airflow_provider_omni.models import AdvancedBulk, validate_destinations

    message = _message(**overrides)
    fields = AdvancedBulk.fields_of(OmniAdvancedRequest.model_validate(message))
    return hook.send_advanced_bulk(
        AdvancedBulk.build(fields, message["bulkId"], validate_destinations(message["destinations"]))
    )


#: The two ways to send: a request model or dict, and a prebuilt bulk; the same retry rule holds.
SENDS = [
    pytest.param(lambda hook: hook.send_advanced(_message()), id="send_advanced"),
    pytest.param(_send_bulk, id="send_advanced_bulk"),
]


# -- connection --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("abc123.api.infobip.com", "https://abc123.api.infobip.com"),
        ("https://abc123.api.infobip.com/", "https://abc123.api.infobip.com"),
        ("http://127.0.0.1:8765", "http://127.0.0.1:8765"),
        ("  xyz.api.infobip.com  ", "https://xyz.api.infobip.com"),
    ],
)
def test_base_url_gets_a_scheme_only_when_missing(
    monkeypatch: pytest.MonkeyPatch, host: str, expected: str
) -> None:
    assert OmniHook(_set_conn(monkeypatch, host=host)).base_url == expected


def test_extras_bare_prefixed_cast_and_overridden(monkeypatch: pytest.MonkeyPatch) -> None:
    conn_id = _set_conn(
        monkeypatch,
        extra={
            "connect_timeout": "2.5",
            "extra__infobip_omni__read_timeout": "12",
            "max_retries": "5",
            "verify_ssl": "false",
            "show_full_numbers": "true",
        },
    )
    settings = OmniHook(conn_id).settings
    assert (settings.connect_timeout, settings.read_timeout, settings.max_retries) == (2.5, 12.0, 5)
    assert settings.verify_ssl is False
    assert settings.show_full_numbers is True
    overridden = OmniHook(conn_id, connect_timeout=1, read_timeout=3, max_retries=0).settings
    assert (overridden.connect_timeout, overridden.read_timeout, overridden.max_retries) == (1.0, 3.0, 0)


def test_defaults_come_from_conn_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_OMNI_BARE",
        json.dumps({"conn_type": "infobip_omni", "host": "h.example", "password": "k" * 20}),
    )
    settings = OmniHook("omni_bare").settings
    assert settings.auth_type == "api_key"
    assert (settings.connect_timeout, settings.read_timeout, settings.max_retries) == (10.0, 30.0, 3)
    assert settings.verify_ssl is True
    assert settings.show_full_numbers is False


def test_bad_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = OmniHook(_set_conn(monkeypatch, extra={"max_retries": "lots"}))
    with pytest.raises(OmniValidationError, match="max_retries"):
        hook.settings  # noqa: B018


def test_no_io_in_init(requests_mock: Any) -> None:
    hook = OmniHook("does_not_exist")
    assert requests_mock.call_count == 0
    assert hook.omni_conn_id == "does_not_exist"
    assert repr(hook) == "OmniHook(omni_conn_id='does_not_exist')"


def test_session_is_pooled_with_user_agent_and_timeouts(hook: OmniHook, requests_mock: Any) -> None:
    requests_mock.get(f"{BASE}/omni/1/scenarios", json={"scenarios": []})
    hook.list_scenarios()
    hook.list_scenarios()
    assert hook.get_conn() is hook.session
    assert requests_mock.call_count == 2
    request = requests_mock.last_request
    assert request.headers["User-Agent"].startswith("airflow-provider-omni/")
    assert request.headers["Accept"] == "application/json"
    assert request.timeout == (10.0, 30.0)


# -- auth --------------------------------------------------------------------------------------------


def test_api_key_auth_header(hook: OmniHook, requests_mock: Any) -> None:
    requests_mock.get(f"{BASE}/omni/1/scenarios", json={"scenarios": []})
    hook.list_scenarios()
    assert requests_mock.last_request.headers["Authorization"] == f"App {API_KEY}"


def test_basic_auth_header(monkeypatch: pytest.MonkeyPatch, requests_mock: Any) -> None:
    hook = OmniHook(_set_conn(monkeypatch, login="alice", password=PASSWORD, extra={"auth_type": "basic"}))
    requests_mock.get(f"{BASE}/omni/1/scenarios", json={"scenarios": []})
    hook.list_scenarios()
    expected = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    assert requests_mock.last_request.headers["Authorization"] == f"Basic {expected}"


@pytest.fixture
def oauth_hook(monkeypatch: pytest.MonkeyPatch, sleeps: list[float]) -> OmniHook:
    return OmniHook(
        _set_conn(monkeypatch, login="client-id-1", password=CLIENT_SECRET, extra={"auth_type": "oauth2"})
    )


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(_auth, "_clock", lambda: now[0])
    return now


def _token_answers(*tokens: str, expires_in: int = 3600) -> list[dict[str, Any]]:
    return [{"json": {"access_token": t, "expires_in": expires_in, "token_type": "Bearer"}} for t in tokens]


def test_oauth2_token_fetched_once_for_two_calls(
    oauth_hook: OmniHook, requests_mock: Any, clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    masked: list[Any] = []
    monkeypatch.setattr(omni_module, "mask_secret", masked.append)
    token = requests_mock.post(f"{BASE}/auth/1/oauth2/token", _token_answers(TOKEN))
    api = requests_mock.get(f"{BASE}/omni/1/scenarios", json={"scenarios": []})
    oauth_hook.list_scenarios()
    oauth_hook.list_scenarios()
    assert token.call_count == 1
    form = parse_qs(token.last_request.text)
    assert form == {
        "client_id": ["client-id-1"],
        "client_secret": [CLIENT_SECRET],
        "grant_type": ["client_credentials"],
    }
    assert token.last_request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert "Authorization" not in token.last_request.headers
    assert [r.headers["Authorization"] for r in api.request_history] == [f"Bearer {TOKEN}"] * 2
    assert masked == [CLIENT_SECRET, TOKEN]  # the client secret when the connection is read


def test_oauth2_token_refreshed_before_expiry(
    oauth_hook: OmniHook, requests_mock: Any, clock: list[float]
) -> None:
    token = requests_mock.post(f"{BASE}/auth/1/oauth2/token", _token_answers("tok-one-aaaa", "tok-two-bbbb"))
    api = requests_mock.get(f"{BASE}/omni/1/scenarios", json={"scenarios": []})
    oauth_hook.list_scenarios()
    clock[0] += 3600 - 61  # still more than the 60 s margin left
    oauth_hook.list_scenarios()
    assert token.call_count == 1
    clock[0] += 2  # now within 60 s of expiry
    oauth_hook.list_scenarios()
    assert token.call_count == 2
    assert api.last_request.headers["Authorization"] == "Bearer tok-two-bbbb"


def test_oauth2_refreshes_once_on_401(oauth_hook: OmniHook, requests_mock: Any, clock: list[float]) -> None:
    token = requests_mock.post(f"{BASE}/auth/1/oauth2/token", _token_answers("tok-old-aaaa", "tok-new-bbbb"))
    api = requests_mock.get(
        f"{BASE}/omni/1/scenarios", [{"status_code": 401, "json": {}}, {"json": {"scenarios": []}}]
    )
    assert oauth_hook.list_scenarios() == []
    assert token.call_count == 2
    assert [r.headers["Authorization"] for r in api.request_history] == [
        "Bearer tok-old-aaaa",
        "Bearer tok-new-bbbb",
    ]


def test_oauth2_second_401_is_an_auth_error(
    oauth_hook: OmniHook, requests_mock: Any, clock: list[float]
) -> None:
    token = requests_mock.post(
        f"{BASE}/auth/1/oauth2/token", _token_answers("tok-a-1111", "tok-b-2222", "tok-c")
    )
    api = requests_mock.get(f"{BASE}/omni/1/scenarios", status_code=401, json={})
    with pytest.raises(OmniAuthError, match="client id"):
        oauth_hook.list_scenarios()
    assert (token.call_count, api.call_count) == (2, 2)


def test_oauth2_refused_credentials(oauth_hook: OmniHook, requests_mock: Any) -> None:
    requests_mock.post(f"{BASE}/auth/1/oauth2/token", status_code=401, text="bad client " + CLIENT_SECRET)
    api = requests_mock.get(f"{BASE}/omni/1/scenarios", json={"scenarios": []})
    with pytest.raises(OmniAuthError) as caught:
        oauth_hook.list_scenarios()
    assert "client secret (Password)" in str(caught.value)
    assert CLIENT_SECRET not in str(caught.value)
    assert api.call_count == 0


def test_missing_api_key_is_reported_before_any_request(
    monkeypatch: pytest.MonkeyPatch, requests_mock: Any
) -> None:
    hook = OmniHook(_set_conn(monkeypatch, password=None))
    with pytest.raises(OmniAuthError, match="API key"):
        hook.list_scenarios()
    assert requests_mock.call_count == 0


# -- request bodies against the OpenAPI document ------------------------------------------------


def test_create_scenario_body_matches_openapi(hook: OmniHook, requests_mock: Any) -> None:
    requests_mock.post(
        f"{BASE}/omni/1/scenarios", status_code=201, json={**SCENARIO, "flow": FLOW, "default": True}
    )
    scenario = hook.create_scenario(
        "My VIBER-SMS scenario",
        [Step(channel=OmniChannel.VIBER, sender="ViberSender"), FLOW[1]],
        default=True,
    )
    body = requests_mock.last_request.json()
    validate_request("/omni/1/scenarios", "post", body)
    assert body == {"name": "My VIBER-SMS scenario", "flow": FLOW, "default": True}
    assert requests_mock.last_request.headers["Content-Type"] == "application/json"
    assert scenario.key == SCENARIO["key"]


def test_update_scenario_body_matches_openapi(hook: OmniHook, requests_mock: Any) -> None:
    url = f"{BASE}/omni/1/scenarios/{SCENARIO['key']}"
    requests_mock.put(url, json={**SCENARIO, "flow": FLOW[:1]})
    hook.update_scenario(SCENARIO["key"], "renamed", [{"channel": "VIBER", "from": "ViberSender"}])
    body = requests_mock.last_request.json()
    validate_request("/omni/1/scenarios/{scenarioKey}", "put", body)
    assert body == {"name": "renamed", "flow": [{"channel": "VIBER", "from": "ViberSender"}]}


IN_TEN_DAYS = pendulum.now("UTC").add(days=10).replace(microsecond=0)


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(_message(), id="plain"),
        pytest.param(
            _message(
                viber={
                    "text": "Rich text",
                    "imageURL": "https://example.com/i.png",
                    "buttonText": "More information",
                    "buttonURL": "https://example.com/",
                    "isPromotional": True,
                    "validityPeriod": 1,
                },
                sms={"text": "fallback", "validityPeriod": 1},
            ),
            id="rich-viber",
        ),
        pytest.param(
            _message(
                viber={"text": "v", "validityPeriod": 2, "validityPeriodTimeUnit": "HOURS"},
                sms={"text": "s", "validityPeriod": 45, "validityPeriodTimeUnit": "SECONDS"},
            ),
            id="validity-units",
        ),
        pytest.param(_message(sendAt=IN_TEN_DAYS), id="send-at"),
        pytest.param(
            _message(
                callbackData="c" * 4000,
                notifyUrl="https://hooks.example.com/omni",
                notifyContentType="application/json",
                intermediateReport=True,
            ),
            id="callback-notify",
        ),
        pytest.param(
            OmniAdvancedRequest(
                scenario_key="K",
                bulk_id="bulk-1",
                destinations=[
                    Destination.model_validate("+41793026727"),
                    Destination.model_validate("41793026728"),
                ],
                viber=ViberData(text="hi", validity_period=40, validity_period_time_unit="SECONDS"),
                sms=SmsData(text="hi"),
            ),
            id="model",
        ),
    ],
)
def test_send_advanced_body_matches_openapi(hook: OmniHook, requests_mock: Any, message: Any) -> None:
    requests_mock.post(f"{BASE}/omni/1/advanced", json=accept_all)
    response = hook.send_advanced(message)
    assert requests_mock.call_count == 1
    body = requests_mock.last_request.json()
    validate_request("/omni/1/advanced", "post", body)
    assert all(d["to"]["phoneNumber"].isdigit() for d in body["destinations"])
    assert response.bulk_id == "bulk-1"
    assert [m.message_id for m in response.messages] == [
        d.get("messageId", f"generated-{i}") for i, d in enumerate(body["destinations"])
    ]


def test_send_at_is_written_the_infobip_way(hook: OmniHook, requests_mock: Any) -> None:
    requests_mock.post(f"{BASE}/omni/1/advanced", json=SEND_OK)
    when = pendulum.now("Europe/Zurich").add(days=1).replace(microsecond=123000)
    hook.send_advanced(_message(sendAt=when))
    sent = requests_mock.last_request.json()["sendAt"]
    assert sent == when.format("YYYY-MM-DDTHH:mm:ss.SSSZZ")
    assert sent[-5] in "+-" and ":" not in sent[-5:]


# -- client-side validation ---------------------------------------------------------------------


def test_invalid_dict_fails_before_any_request_naming_camelcase_fields(
    hook: OmniHook, requests_mock: Any
) -> None:
    bad = _message(
        destinations=[{"to": {"phoneNumber": "41793026727"}}, {"to": {"phone_number": "0123"}}],
        viber={"text": "x" * 1001, "buttonText": "b" * 31, "image_url": "https://e.com/i.png"},
        callbackData="c" * 4001,
    )
    with pytest.raises(OmniValidationError) as caught:
        hook.send_advanced(bad)
    assert requests_mock.call_count == 0
    error = caught.value
    assert set(error.validation_errors) >= {
        "destinations[1].to.phoneNumber",
        "viber.text",
        "viber.buttonText",
        "callbackData",
    }
    assert "destinations[1].to.phoneNumber: '0123' is not a phone number" in str(error)
    assert "nothing was sent" in str(error)
    assert error.status_code is None


def test_model_level_rule_is_named_by_its_field(hook: OmniHook, requests_mock: Any) -> None:
    bad = _message(sms={"text": "s", "validityPeriod": 29, "validityPeriodTimeUnit": "SECONDS"})
    with pytest.raises(OmniValidationError) as caught:
        hook.send_advanced(bad)
    assert "sms.validityPeriod" in caught.value.validation_errors
    assert requests_mock.call_count == 0


def test_invalid_scenario_flow_fails_before_any_request(hook: OmniHook, requests_mock: Any) -> None:
    with pytest.raises(OmniValidationError) as caught:
        hook.create_scenario("x", [{"channel": "CARRIER_PIGEON"}])
    assert "flow[0].channel" in caught.value.validation_errors
    with pytest.raises(OmniValidationError, match="flow"):
        hook.create_scenario("x", [])
    assert requests_mock.call_count == 0


# -- retries ------------------------------------------------------------------------------------


def test_429_with_retry_after_then_200(hook: OmniHook, requests_mock: Any, sleeps: list[float]) -> None:
    requests_mock.get(
        f"{BASE}/omni/1/reports",
        [
            {"status_code": 429, "headers": {"Retry-After": "7"}, "json": {"errorCode": "E429"}},
            {"json": {"results": [{"messageId": "m1", "channel": "SMS"}]}},
        ],
    )
    reports = hook.get_reports(bulk_id="b1")
    assert [r.message_id for r in reports] == ["m1"]
    assert requests_mock.call_count == 2
    assert sleeps == [7.0]


def test_retry_after_is_capped(hook: OmniHook, requests_mock: Any, sleeps: list[float]) -> None:
    requests_mock.get(
        f"{BASE}/omni/1/logs",
        [{"status_code": 429, "headers": {"Retry-After": "3600"}}, {"json": {"results": []}}],
    )
    hook.get_logs(bulk_id="b1")
    assert sleeps == [60.0]


def test_503_then_200_on_get_backs_off_exponentially(
    hook: OmniHook, requests_mock: Any, sleeps: list[float]
) -> None:
    requests_mock.get(
        f"{BASE}/omni/1/scenarios",
        [{"status_code": 503, "text": "busy"}, {"status_code": 502}, {"json": {"scenarios": []}}],
    )
    hook.list_scenarios()
    assert requests_mock.call_count == 3
    assert len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5
    assert 0.5 <= sleeps[1] <= 1.0


def test_connection_error_then_200(hook: OmniHook, requests_mock: Any, sleeps: list[float]) -> None:
    requests_mock.get(
        f"{BASE}/omni/1/scenarios",
        [{"exc": requests.ConnectionError("connection reset")}, {"json": {"scenarios": [SCENARIO]}}],
    )
    assert [s.key for s in hook.list_scenarios()] == [SCENARIO["key"]]
    assert requests_mock.call_count == 2
    assert len(sleeps) == 1


def test_put_is_retried_on_5xx(hook: OmniHook, requests_mock: Any, sleeps: list[float]) -> None:
    url = f"{BASE}/omni/1/scenarios/{SCENARIO['key']}"
    requests_mock.put(url, [{"status_code": 500}, {"json": {**SCENARIO, "flow": FLOW}}])
    hook.update_scenario(SCENARIO["key"], SCENARIO["name"], FLOW)
    assert requests_mock.call_count == 2


def test_retries_exhausted_on_5xx(hook: OmniHook, requests_mock: Any, sleeps: list[float]) -> None:
    requests_mock.get(f"{BASE}/omni/1/scenarios", status_code=503, text="<html>Service Unavailable</html>")
    with pytest.raises(OmniServerError) as caught:
        hook.list_scenarios()
    assert not isinstance(caught.value, OmniSendUncertainError)
    assert requests_mock.call_count == 4  # 1 + max_retries (3)
    assert caught.value.status_code == 503
    assert "gave up after 4 attempts" in str(caught.value)
    assert "Service Unavailable" in str(caught.value)


def test_retries_exhausted_on_429(hook: OmniHook, requests_mock: Any, sleeps: list[float]) -> None:
    requests_mock.get(f"{BASE}/omni/1/logs", status_code=429, headers={"Retry-After": "2"})
    with pytest.raises(OmniRateLimitError) as caught:
        hook.get_logs(message_id="m")
    assert caught.value.retry_after == 2.0
    assert requests_mock.call_count == 4
    assert sleeps == [2.0, 2.0, 2.0]


def test_connection_refused_exhausted(hook: OmniHook, requests_mock: Any, sleeps: list[float]) -> None:
    requests_mock.get(f"{BASE}/omni/1/scenarios", exc=requests.ConnectTimeout("connect timed out"))
    with pytest.raises(OmniServerError, match="Could not connect"):
        hook.list_scenarios()
    assert requests_mock.call_count == 4


def test_max_retries_zero_means_one_request(monkeypatch: pytest.MonkeyPatch, requests_mock: Any) -> None:
    hook = OmniHook(_set_conn(monkeypatch), max_retries=0)
    requests_mock.get(f"{BASE}/omni/1/scenarios", status_code=503)
    with pytest.raises(OmniServerError):
        hook.list_scenarios()
    assert requests_mock.call_count == 1


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param({"status_code": 500, "json": {}}, id="500"),
        pytest.param({"status_code": 503}, id="503"),
        pytest.param({"exc": requests.ReadTimeout("read timed out")}, id="read-timeout"),
        pytest.param(
            {"exc": requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError()))},
            id="dropped-after-send",
        ),
        pytest.param({"exc": requests.exceptions.ChunkedEncodingError("broken body")}, id="broken-body"),
    ],
)
@pytest.mark.parametrize("send", SENDS)
def test_ambiguous_send_failure_is_never_retried(
    hook: OmniHook, requests_mock: Any, sleeps: list[float], failure: dict[str, Any], send: Any
) -> None:
    requests_mock.post(f"{BASE}/omni/1/advanced", [failure, {"json": SEND_OK}])
    with pytest.raises(OmniSendUncertainError) as caught:
        send(hook)
    assert requests_mock.call_count == 1
    assert sleeps == []
    assert caught.value.bulk_id == "bulk-1"
    assert "MAY have been sent" in str(caught.value)
    assert "/omni/1/logs" in str(caught.value)
    assert "'bulk-1'" in str(caught.value)


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param({"exc": requests.ConnectTimeout("connect timed out")}, id="connect-timeout"),
        pytest.param(
            {
                "exc": requests.ConnectionError(
                    MaxRetryError(None, "/omni/1/advanced", NewConnectionError(None, "Connection refused"))  # type: ignore[arg-type]
                )
            },
            id="connection-refused",
        ),
        pytest.param({"status_code": 429, "headers": {"Retry-After": "1"}}, id="429"),
    ],
)
@pytest.mark.parametrize("send", SENDS)
def test_send_is_retried_when_nothing_was_processed(
    hook: OmniHook, requests_mock: Any, sleeps: list[float], failure: dict[str, Any], send: Any
) -> None:
    requests_mock.post(f"{BASE}/omni/1/advanced", [failure, {"json": SEND_OK}])
    assert send(hook).bulk_id == "bulk-1"
    assert requests_mock.call_count == 2
    assert len(sleeps) == 1


def test_send_400_and_401_are_not_retried(hook: OmniHook, requests_mock: Any, sleeps: list[float]) -> None:
    requests_mock.post(f"{BASE}/omni/1/advanced", status_code=401, json={})
    with pytest.raises(OmniAuthError):
        hook.send_advanced(_message())
    assert requests_mock.call_count == 1
    assert sleeps == []


def test_scenario_post_not_retried_after_5xx(hook: OmniHook, requests_mock: Any, sleeps: list[float]) -> None:
    requests_mock.post(f"{BASE}/omni/1/scenarios", status_code=500)
    with pytest.raises(OmniServerError) as caught:
        hook.create_scenario("n", FLOW)
    assert not isinstance(caught.value, OmniSendUncertainError)
    assert "List the scenarios" in str(caught.value)
    assert requests_mock.call_count == 1


@pytest.mark.parametrize("answer", ["<html>ok</html>", '{"messages": "not a list"}'])
@pytest.mark.parametrize("send", SENDS)
def test_unreadable_200_on_send_is_uncertain(
    hook: OmniHook, requests_mock: Any, send: Any, answer: str
) -> None:
    requests_mock.post(f"{BASE}/omni/1/advanced", text=answer)
    with pytest.raises(OmniSendUncertainError) as caught:
        send(hook)
    assert requests_mock.call_count == 1
    assert caught.value.bulk_id == "bulk-1"


def test_bulk_send_posts_the_prebuilt_body_and_reports_refusals(hook: OmniHook, requests_mock: Any) -> None:
    refused = {
        "to": {"phoneNumber": "41793026728"},
        "status": {"groupId": 5, "groupName": "REJECTED", "id": 6, "name": "REJECTED_NETWORK"},
        "messageId": "bulk-1.1",
    }
    requests_mock.post(
        f"{BASE}/omni/1/advanced", json={**SEND_OK, "messages": [*SEND_OK["messages"], refused]}
    )
    destinations = [
        {"messageId": "bulk-1.0", "to": {"phoneNumber": "41793026727"}},
        {"messageId": "bulk-1.1", "to": {"phoneNumber": "41793026728"}},
    ]

    acceptance = _send_bulk(hook, destinations=destinations)

    body = requests_mock.last_request.json()
    validate_request("/omni/1/advanced", "post", body)
    assert body == {**_message(destinations=destinations), "scenarioKey": SCENARIO["key"]}
    assert requests_mock.last_request.headers["Content-Type"] == "application/json"
    assert requests_mock.last_request.headers["Authorization"] == f"App {API_KEY}"
    assert (acceptance.bulk_id, acceptance.messages, acceptance.refused) == ("bulk-1", 2, [refused])


# -- error mapping ------------------------------------------------------------------------------


def test_401_is_auth_error_with_one_request_and_a_fix(
    hook: OmniHook, requests_mock: Any, sleeps: list[float]
) -> None:
    body = {
        "requestError": {"serviceException": {"messageId": "UNAUTHORIZED", "text": "Invalid login details"}}
    }
    requests_mock.get(f"{BASE}/omni/1/scenarios", status_code=401, json=body)
    with pytest.raises(OmniAuthError) as caught:
        hook.list_scenarios()
    message = str(caught.value)
    assert requests_mock.call_count == 1
    assert caught.value.status_code == 401
    assert caught.value.error_code == "UNAUTHORIZED"
    for hint in ("API key", "Password field", "expired", BASE, "the scope omni-failover:manage"):
        assert hint in message


def test_403_names_the_missing_scope(hook: OmniHook, requests_mock: Any) -> None:
    requests_mock.get(f"{BASE}/omni/1/logs", status_code=403, json={})
    with pytest.raises(OmniAuthError, match="omni-failover:logs:read") as caught:
        hook.get_logs(bulk_id="b")
    assert caught.value.status_code == 403
    assert requests_mock.call_count == 1


def test_404_is_not_found(hook: OmniHook, requests_mock: Any) -> None:
    requests_mock.get(f"{BASE}/omni/1/scenarios/NOPE", status_code=404, json={})
    with pytest.raises(OmniNotFoundError):
        hook.get_scenario("NOPE")
    assert requests_mock.call_count == 1


def test_400_classic_envelope_carries_validation_errors(hook: OmniHook, requests_mock: Any) -> None:
    body = {
        "requestError": {
            "serviceException": {
                "messageId": "BAD_REQUEST",
                "text": "Bad request",
                "validationErrors": {
                    "destinations[0].to.phoneNumber": ["invalid number"],
                    "sms.text": ["empty"],
                },
            }
        }
    }
    requests_mock.post(f"{BASE}/omni/1/advanced", status_code=400, json=body)
    with pytest.raises(OmniValidationError) as caught:
        hook.send_advanced(_message())
    error = caught.value
    assert error.validation_errors == {
        "destinations[0].to.phoneNumber": ["invalid number"],
        "sms.text": ["empty"],
    }
    assert (error.status_code, error.error_code) == (400, "BAD_REQUEST")
    assert "destinations[0].to.phoneNumber: invalid number" in str(error)
    assert requests_mock.call_count == 1


def test_400_newer_envelope_carries_violations(hook: OmniHook, requests_mock: Any) -> None:
    body = {
        "errorCode": "E400",
        "description": "Request cannot be processed.",
        "action": "Check the syntax",
        "violations": [{"property": "flow[0].channel", "violation": "must not be null"}],
        "resources": [],
    }
    requests_mock.post(f"{BASE}/omni/1/scenarios", status_code=400, json=body)
    with pytest.raises(OmniValidationError) as caught:
        hook.create_scenario("n", FLOW)
    assert caught.value.validation_errors == {"flow[0].channel": ["must not be null"]}
    assert caught.value.error_code == "E400"
    assert "Request cannot be processed" in str(caught.value)


def test_non_json_error_body(hook: OmniHook, requests_mock: Any, sleeps: list[float]) -> None:
    requests_mock.get(f"{BASE}/omni/1/reports", status_code=418, text="I'm a teapot")
    with pytest.raises(Exception) as caught:
        hook.get_reports(bulk_id="b")
    assert "418" in str(caught.value)
    assert "teapot" in str(caught.value)


# -- secrets and personal data ------------------------------------------------------------------

FAILURES = [
    {"status_code": 401, "text": f"Invalid key {API_KEY}"},
    {
        "status_code": 403,
        "json": {"requestError": {"serviceException": {"text": f"key {API_KEY} lacks scope"}}},
    },
    {
        "status_code": 400,
        "json": {"requestError": {"serviceException": {"validationErrors": {"x": [API_KEY]}}}},
    },
    {"status_code": 500, "text": API_KEY},
    {"status_code": 429, "text": API_KEY},
    {"exc": requests.ReadTimeout(f"read timeout Authorization: App {API_KEY}")},
    {"exc": requests.ConnectTimeout("connect timeout")},
]


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("auth", ["api_key", "basic", "oauth2"])
def test_secrets_never_printed(
    monkeypatch: pytest.MonkeyPatch,
    requests_mock: Any,
    sleeps: list[float],
    logs: Any,
    failure: dict[str, Any],
    auth: str,
) -> None:
    secret = {"api_key": API_KEY, "basic": PASSWORD, "oauth2": CLIENT_SECRET}[auth]
    hook = OmniHook(_set_conn(monkeypatch, login="client-1", password=secret, extra={"auth_type": auth}))
    requests_mock.post(f"{BASE}/auth/1/oauth2/token", json={"access_token": TOKEN, "expires_in": 3600})
    # The failing answers echo every secret the hook knows (the access token only exists with oauth2).
    known = f"{secret} {TOKEN}" if auth == "oauth2" else secret
    echo = {k: (v.replace(API_KEY, known) if isinstance(v, str) else v) for k, v in failure.items()}
    if "exc" in echo:
        echo["exc"] = type(failure["exc"])(str(failure["exc"]).replace(API_KEY, known))
    if "json" in echo:
        echo["json"] = json.loads(json.dumps(echo["json"]).replace(API_KEY, known))
    requests_mock.post(f"{BASE}/omni/1/advanced", [echo])
    requests_mock.get(f"{BASE}/omni/1/scenarios", [echo])
    basic = base64.b64encode(f"client-1:{secret}".encode()).decode()
    texts = [repr(hook)]
    for call in (lambda: hook.send_advanced(_message()), hook.list_scenarios):
        with pytest.raises(Exception) as caught:
            call()
        texts += [str(caught.value), repr(caught.value)]
    ok, message = hook.test_connection()
    assert ok is False
    texts += [message, repr(hook), repr(hook.settings), logs()]
    assert "Sending OMNI message" in texts[-1]  # the log capture works
    for text in texts:
        for forbidden in (secret, TOKEN, basic):
            assert forbidden not in text


def test_phone_numbers_shortened_in_logs(hook: OmniHook, requests_mock: Any, logs: Any) -> None:
    rejected = {
        "bulkId": "bulk-1",
        "messages": [
            {
                "to": {"phoneNumber": "41793026727"},
                "status": {"groupId": 5, "groupName": "REJECTED", "name": "X"},
                "messageId": "bulk-1.0",
            }
        ],
    }
    requests_mock.post(f"{BASE}/omni/1/advanced", json=rejected)
    hook.send_advanced(_message())
    text = logs()
    assert "+4179****727" in text
    assert "41793026727" not in text
    assert "accepted 0 of 1" in text


def test_show_full_numbers(monkeypatch: pytest.MonkeyPatch, requests_mock: Any, logs: Any) -> None:
    hook = OmniHook(_set_conn(monkeypatch, extra={"show_full_numbers": True}))
    requests_mock.post(f"{BASE}/omni/1/advanced", json=SEND_OK)
    hook.send_advanced(_message())
    assert "41793026727" in logs()


# -- reports and logs ---------------------------------------------------------------------------


def _query(request: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(request.url).query)


def test_get_reports_is_one_filtered_get(hook: OmniHook, requests_mock: Any) -> None:
    requests_mock.get(f"{BASE}/omni/1/reports", json={"results": []})
    hook.get_reports(bulk_id="bulk-1", message_id="m-1", limit=500, channel="viber")
    assert requests_mock.call_count == 1
    assert _query(requests_mock.last_request) == {
        "bulkId": ["bulk-1"],
        "messageId": ["m-1"],
        "limit": ["500"],
        "channel": ["VIBER"],
    }


def test_get_logs_repeats_ids_and_formats_dates(hook: OmniHook, requests_mock: Any) -> None:
    requests_mock.get(f"{BASE}/omni/1/logs", json={"results": [{"messageId": "a", "from": "InfoSMS"}]})
    since = datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=timezone(timedelta(hours=2)))
    logs = hook.get_logs(
        bulk_id=["b1", "b2"],
        message_id="m1",
        sender="InfoSMS",
        to="41793026727",
        general_status=GeneralStatus.DELIVERED,
        channel=OmniChannel.SMS,
        sent_since=since,
        sent_until="2024-05-02T00:00:00.000+0000",
        limit=10,
        mcc="228",
        mnc="01",
    )
    assert logs[0].sender == "InfoSMS"
    assert "bulkId=b1&bulkId=b2" in requests_mock.last_request.url
    assert _query(requests_mock.last_request) == {
        "bulkId": ["b1", "b2"],
        "messageId": ["m1"],
        "from": ["InfoSMS"],
        "to": ["41793026727"],
        "generalStatus": ["DELIVERED"],
        "channel": ["SMS"],
        "sentSince": ["2024-05-01T12:00:00.250+0200"],
        "sentUntil": ["2024-05-02T00:00:00.000+0000"],
        "limit": ["10"],
        "mcc": ["228"],
        "mnc": ["01"],
    }


def test_get_logs_accepts_status_strings_and_refuses_unknown(hook: OmniHook, requests_mock: Any) -> None:
    requests_mock.get(f"{BASE}/omni/1/logs", json={"results": []})
    hook.get_logs(general_status="expired", channel="sms")
    assert _query(requests_mock.last_request)["generalStatus"] == ["EXPIRED"]
    with pytest.raises(OmniValidationError, match="generalStatus"):
        hook.get_logs(general_status="LOST")
    with pytest.raises(OmniValidationError, match="limit"):
        hook.get_logs(limit=1001)
    with pytest.raises(OmniValidationError, match="sentSince"):
        hook.get_logs(sent_since=datetime(2024, 1, 1))
    assert requests_mock.call_count == 1


# -- scenarios ----------------------------------------------------------------------------------


def _scenario(key: str, name: str, flow: list[dict[str, str]] = FLOW) -> dict[str, Any]:
    return {"key": key, "name": name, "flow": flow}


def test_get_or_create_reuses_a_match_across_pages(hook: OmniHook, requests_mock: Any) -> None:
    page0 = [_scenario(f"K{i}", f"other {i}") for i in range(100)]
    page1 = [_scenario("MATCH", "My VIBER-SMS scenario")]
    listing = requests_mock.get(
        f"{BASE}/omni/1/scenarios", [{"json": {"scenarios": page0}}, {"json": {"scenarios": page1}}]
    )
    create = requests_mock.post(f"{BASE}/omni/1/scenarios", status_code=201, json=_scenario("NEW", "x"))
    scenario = hook.get_or_create_scenario("My VIBER-SMS scenario", FLOW)
    assert scenario.key == "MATCH"
    assert [_query(r)["page"] for r in listing.request_history] == [["0"], ["1"]]
    assert create.call_count == 0


def test_get_or_create_creates_when_missing(hook: OmniHook, requests_mock: Any, logs: Any) -> None:
    requests_mock.get(f"{BASE}/omni/1/scenarios", json={"scenarios": [_scenario("K1", "other")]})
    create = requests_mock.post(f"{BASE}/omni/1/scenarios", status_code=201, json=_scenario("NEW", "mine"))
    assert hook.get_or_create_scenario("mine", FLOW, default=True).key == "NEW"
    assert create.call_count == 1
    assert create.last_request.json() == {"name": "mine", "flow": FLOW, "default": True}
    assert "Created OMNI scenario NEW" in logs()


def test_same_name_other_flow_is_updated_when_asked(hook: OmniHook, requests_mock: Any) -> None:
    sms_only = [{"channel": "SMS", "from": "InfoSMS"}]
    requests_mock.get(f"{BASE}/omni/1/scenarios", json={"scenarios": [_scenario("OLD", "mine", sms_only)]})
    create = requests_mock.post(f"{BASE}/omni/1/scenarios", status_code=201, json=_scenario("NEW", "mine"))
    update = requests_mock.put(f"{BASE}/omni/1/scenarios/OLD", json=_scenario("OLD", "mine"))
    assert hook.get_or_create_scenario("mine", FLOW, update_if_different=True).key == "OLD"
    assert (update.call_count, create.call_count) == (1, 0)
    assert update.last_request.json()["flow"] == FLOW
    assert hook.get_or_create_scenario("mine", FLOW).key == "NEW"
    assert create.call_count == 1


def test_flow_order_matters(hook: OmniHook, requests_mock: Any) -> None:
    requests_mock.get(f"{BASE}/omni/1/scenarios", json={"scenarios": [_scenario("REV", "mine", FLOW[::-1])]})
    create = requests_mock.post(f"{BASE}/omni/1/scenarios", status_code=201, json=_scenario("NEW", "mine"))
    assert hook.get_or_create_scenario("mine", FLOW).key == "NEW"
    assert create.call_count == 1


def test_list_scenarios_params(hook: OmniHook, requests_mock: Any) -> None:
    requests_mock.get(f"{BASE}/omni/1/scenarios", json={"scenarios": [{"key": 1234, "name": "int key"}]})
    scenarios = hook.list_scenarios(is_default=True, limit=5, page=2)
    assert scenarios[0].key == "1234"
    assert _query(requests_mock.last_request) == {"isDefault": ["true"], "limit": ["5"], "page": ["2"]}


# -- test_connection ----------------------------------------------------------------------------


def test_test_connection_ok(hook: OmniHook, requests_mock: Any) -> None:
    requests_mock.get(f"{BASE}/omni/1/scenarios", json={"scenarios": [SCENARIO]})
    assert hook.test_connection() == (True, f"Connected to {BASE}: 1 scenario(s) visible")
    assert _query(requests_mock.last_request)["limit"] == ["1"]
    assert requests_mock.call_count == 1


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({"status_code": 401, "json": {}}, "API key"),
        ({"status_code": 403, "json": {}}, "omni-failover:manage"),
        ({"exc": requests.ConnectTimeout("no route")}, "Could not connect"),
        ({"status_code": 200, "text": "not json"}, "not JSON"),
    ],
)
def test_test_connection_reports_a_reason(
    hook: OmniHook, requests_mock: Any, sleeps: list[float], answer: dict[str, Any], reason: str
) -> None:
    requests_mock.get(f"{BASE}/omni/1/scenarios", [answer])
    ok, message = hook.test_connection()
    assert ok is False
    assert reason in message


def test_test_connection_missing_connection_never_raises() -> None:
    ok, message = OmniHook("no_such_connection_anywhere").test_connection()
    assert ok is False
    assert message
