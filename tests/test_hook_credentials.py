"""OmniHook: credentials with line breaks, secrets in escaped forms, requests that cannot be built,
and OAuth2 token endpoints that echo the client secret.

A key pasted with its newline is stripped and works; a credential with a line break or control
character inside is refused when the connection is read, naming the field and never the value. No
form of a secret (raw, repr/unicode-escaped, JSON-escaped, URL-encoded, base64 pair) reaches an
exception message, a traceback, a log record or the Test Connection answer. The local sandbox is
the server where it can be; requests-mock and httpx.MockTransport echo secrets back where it cannot.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
import traceback
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus

import httpx
import pytest

from airflow_provider_omni.exceptions import (
    OmniAuthError,
    OmniConfigurationError,
    OmniSendUncertainError,
    OmniServerError,
    OmniValidationError,
)
from airflow_provider_omni.hooks import omni as omni_module
from airflow_provider_omni.hooks.omni import OmniHook
from airflow_provider_omni.models import AdvancedBulk, OmniAdvancedRequest, validate_destinations

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_omni.sandbox.server import OmniSandbox

KEY = "Sbx-Cred-Key-7f3a9c21"
BASE = "https://abc123.api.infobip.com"
CONN_ID = "omni_cred"


def forms(secret: str) -> set[str]:
    """Every form in which ``secret`` could be printed (computed here, not by the hook)."""
    return {
        secret,
        repr(secret)[1:-1],
        secret.encode("unicode_escape").decode("ascii"),
        repr(secret.encode())[2:-1],
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        quote(secret, safe=""),
        quote_plus(secret),
    }


def assert_nowhere(secrets: set[str], texts: list[str]) -> None:
    """Assert that no text contains any of ``secrets`` (naming the form, never printing the text)."""
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"a form of the secret ({len(secret)} chars) leaked"


def error_texts(error: BaseException) -> list[str]:
    """What a user sees of an exception: its message, its repr, and its traceback (with context)."""
    return [str(error), repr(error), "".join(traceback.format_exception(error))]


def run(call: Callable[[], Any]) -> Any:
    """Run a sync or async call; return its result or the exception it raised."""
    try:
        result = call()
        return asyncio.run(result) if asyncio.iscoroutine(result) else result
    except Exception as err:
        return err


@pytest.fixture
def hook_logs(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> Callable[[], str]:
    """What the provider itself logged (its loggers, and the task SDK's structlog output)."""
    caplog.set_level(logging.DEBUG)

    def read() -> str:
        captured = capsys.readouterr()
        own = [r.getMessage() for r in caplog.records if r.name.startswith("airflow")]
        # Airflow 3.0 also prints other libraries' records to the console: httpcore's DEBUG trace
        # ({_trace.py:N}) quotes the request headers, which the provider does not control
        console = [line for line in (captured.out + captured.err).splitlines() if "{_trace.py:" not in line]
        return "\n".join(own + console)

    return read


def _set_conn(monkeypatch: pytest.MonkeyPatch, **fields: Any) -> OmniHook:
    extra = {"max_retries": 2, **fields.pop("extra", {})}
    conn = {"conn_type": "infobip_omni", "host": BASE, "password": KEY, **fields, "extra": extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    return OmniHook(CONN_ID)


def _message(bulk_id: str = "cred-1") -> dict[str, Any]:
    return {
        "bulkId": bulk_id,
        "destinations": [{"messageId": f"{bulk_id}.0", "to": {"phoneNumber": "41793026727"}}],
        "viber": {"text": "Hello"},
        "sms": {"text": "Hello"},
    }


def _bulk(bulk_id: str = "cred-b") -> AdvancedBulk:
    body = _message(bulk_id)
    fields = AdvancedBulk.fields_of(OmniAdvancedRequest.model_validate(body))
    return AdvancedBulk.build(fields, bulk_id, validate_destinations(body["destinations"]))


# -- against the sandbox ------------------------------------------------------------------------


@pytest.fixture
def sandbox(omni_sandbox: OmniSandbox, monkeypatch: pytest.MonkeyPatch) -> OmniSandbox:
    """The sandbox with API key KEY (also the basic password and client secret) and a default
    scenario."""
    omni_sandbox.admin.configure(api_key=KEY)
    setup = _sandbox_hook(omni_sandbox, monkeypatch, KEY)
    setup.create_scenario("Viber then SMS", [{"channel": "VIBER", "from": "V"}, {"channel": "SMS"}], True)
    return omni_sandbox


def _sandbox_hook(
    sandbox: OmniSandbox, monkeypatch: pytest.MonkeyPatch, password: str, **fields: Any
) -> OmniHook:
    conn = sandbox.airflow_connection(**fields.pop("extra", {}))
    conn.update(password=password, **fields)
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    return OmniHook(CONN_ID)


def _api_requests(sandbox: OmniSandbox) -> dict[str, int]:
    return sandbox.admin.stats()["requests"]


@pytest.mark.parametrize("suffix", ["\r\n", "\n", " ", "\t \r\n"], ids=["crlf", "lf", "space", "mixed"])
@pytest.mark.parametrize("auth", ["api_key", "basic", "oauth2"])
def test_credentials_with_surrounding_whitespace_are_stripped_and_work(
    sandbox: OmniSandbox, monkeypatch: pytest.MonkeyPatch, logs: Callable[[], str], suffix: str, auth: str
) -> None:
    login = {"api_key": None, "basic": "sandbox", "oauth2": "sandbox"}[auth]
    hook = _sandbox_hook(
        sandbox,
        monkeypatch,
        KEY + suffix,
        login=f" {login}{suffix}" if login else None,
        extra={"auth_type": auth},
    )

    ok, message = hook.test_connection()
    response = run(lambda: hook.send_advanced(_message()))
    reports = run(lambda: hook.aget_reports(bulk_id="cred-1"))
    logs_ = run(lambda: hook.get_logs(bulk_id="cred-1"))

    assert ok is True
    assert message.startswith(f"Connected to {sandbox.url}: ")
    assert response.bulk_id == "cred-1", response
    assert isinstance(reports, list), reports
    assert [row.message_id for row in logs_] == ["cred-1.0"]
    assert_nowhere(forms(KEY) | forms(KEY + suffix), [message, logs(), repr(hook)])


CONTROL_CHARACTERS = [
    pytest.param("api_key", "password", f"{KEY[:6]}\r{KEY[6:]}", "Password field (API key)", id="key-cr"),
    pytest.param("api_key", "password", f"{KEY[:6]}\n{KEY[6:]}", "Password field (API key)", id="key-lf"),
    pytest.param("api_key", "password", f"{KEY[:6]}\x00{KEY[6:]}", "Password field (API key)", id="key-nul"),
    pytest.param(
        "api_key", "password", f"{KEY[:6]}\u2028{KEY[6:]}", "Password field (API key)", id="key-u2028"
    ),
    pytest.param("basic", "password", f"{KEY[:6]}\r\n{KEY[6:]}", "Password field (password)", id="basic-pw"),
    pytest.param("basic", "login", "sand\rbox", "Login field (username)", id="basic-login"),
    pytest.param(
        "oauth2", "password", f"{KEY[:6]}\r{KEY[6:]}", "Password field (client secret)", id="oauth2-secret"
    ),
    pytest.param("oauth2", "login", "sand\nbox", "Login field (OAuth2 client id)", id="oauth2-client-id"),
]


@pytest.mark.parametrize(("auth", "field", "value", "named"), CONTROL_CHARACTERS)
def test_credential_with_a_control_character_inside_is_refused_naming_the_field(
    sandbox: OmniSandbox,
    monkeypatch: pytest.MonkeyPatch,
    logs: Callable[[], str],
    no_sleep: list[float],
    auth: str,
    field: str,
    value: str,
    named: str,
) -> None:
    fields = {"login": "sandbox", "password": KEY, field: value}

    def fresh_hook() -> OmniHook:
        return _sandbox_hook(
            sandbox, monkeypatch, fields["password"], login=fields["login"], extra={"auth_type": auth}
        )

    hook = fresh_hook()
    before = _api_requests(sandbox)

    errors = [
        run(lambda: fresh_hook().send_advanced(_message())),
        run(lambda: fresh_hook().aget_reports(bulk_id="b")),
    ]
    ok, message = hook.test_connection()

    expected = f"the {named} of connection {CONN_ID!r} contains a line break or control character"
    for error in errors:
        assert type(error) is OmniConfigurationError, error
        assert expected in str(error)
    assert ok is False
    assert expected in message
    assert _api_requests(sandbox) == before  # nothing was sent
    assert no_sleep == []
    texts = [message, logs(), repr(hook)] + [t for e in errors for t in error_texts(e)]
    # A login is not a secret, but the value as stored must not be quoted in any form either.
    cleaned = {"".join(c for c in value if c.isprintable())} if field == "password" else set()
    assert_nowhere(forms(value) | cleaned, texts)


def test_api_key_that_a_header_cannot_carry_is_refused(
    sandbox: OmniSandbox, monkeypatch: pytest.MonkeyPatch, logs: Callable[[], str]
) -> None:
    value = KEY + "é"
    hook = _sandbox_hook(sandbox, monkeypatch, value)
    error = run(lambda: hook.aget_reports(bulk_id="b"))
    assert type(error) is OmniConfigurationError
    assert "Password field (API key)" in str(error) and "printable ASCII" in str(error)
    ok, message = hook.test_connection()
    assert ok is False
    assert_nowhere(forms(value), [message, logs(), *error_texts(error)])


@pytest.mark.parametrize(
    ("secret", "call"),
    [
        pytest.param(KEY + "\r\n", "sync send", id="crlf-sync-send"),
        pytest.param(KEY + "\r\n", "async reports", id="crlf-async-reports"),
        pytest.param(KEY + " ", "async reports", id="space-async-reports"),
        pytest.param(KEY + "\u2028", "sync send", id="u2028-sync-send"),
        pytest.param(KEY + "é", "async reports", id="non-ascii-async-reports"),
    ],
)
def test_a_request_with_a_bad_header_is_a_configuration_error_not_an_uncertain_send(
    sandbox: OmniSandbox,
    monkeypatch: pytest.MonkeyPatch,
    hook_logs: Callable[[], str],
    no_sleep: list[float],
    secret: str,
    call: str,
) -> None:
    hook = _sandbox_hook(sandbox, monkeypatch, KEY)
    # A credential that got past the connection checks (e.g. a subclass building its own settings).
    hook._settings = dataclasses.replace(hook.settings, secret=secret)
    before = _api_requests(sandbox)

    error = run(
        (lambda: hook.send_advanced_bulk(_bulk()))
        if call == "sync send"
        else (lambda: hook.aget_reports(bulk_id="b"))
    )

    assert type(error) is OmniConfigurationError, error
    assert not isinstance(error, OmniSendUncertainError)
    assert "MAY have been sent" not in str(error)
    assert "nothing was sent" in str(error)
    assert _api_requests(sandbox) == before
    assert no_sleep == []  # not retried
    # httpcore's own DEBUG trace quotes the refused header; Airflow's masker hides the registered
    # forms there. The hook's messages and log lines quote no form of it.
    assert_nowhere(forms(secret), [hook_logs(), *error_texts(error)])


# -- a URL that cannot be requested -------------------------------------------------------------------


@pytest.mark.parametrize("host", ["htps://abc123.api.infobip.com", "https:///omni"])
def test_a_request_to_a_bad_url_is_a_configuration_error_on_both_paths(
    monkeypatch: pytest.MonkeyPatch, no_sleep: list[float], host: str
) -> None:
    hook = _set_conn(monkeypatch, host=host)  # real requests and httpx: both fail before connecting
    errors = [
        run(lambda: hook.send_advanced_bulk(_bulk())),
        run(lambda: hook.get_reports(bulk_id="b")),
        run(lambda: hook.aget_reports(bulk_id="b")),
    ]
    for error in errors:
        assert type(error) is OmniConfigurationError, error
        assert "Could not build the request" in str(error)
        assert "MAY have been sent" not in str(error)
    assert no_sleep == []


# -- every escaped form of a secret -----------------------------------------------------------------

#: A secret that every escaping changes: quotes, backslash, URL-reserved characters, non-ASCII.
ODD = "K3y\\\"q'/+= &%-Zz9é"
ODD_ASCII = ODD.replace("é", "x")


def _all_forms_echo(secret: str, login: str | None) -> str:
    echoed = " ".join(sorted(forms(secret)))
    if login:
        echoed += " " + base64.b64encode(f"{login}:{secret}".encode()).decode()
    return echoed


@pytest.mark.parametrize("auth", ["api_key", "basic", "oauth2"])
def test_every_form_of_the_secret_is_redacted_and_masked(
    monkeypatch: pytest.MonkeyPatch,
    requests_mock: Any,
    no_sleep: list[float],
    logs: Callable[[], str],
    auth: str,
) -> None:
    secret = ODD_ASCII if auth == "api_key" else ODD
    masked: list[str] = []
    monkeypatch.setattr(omni_module, "mask_secret", masked.append)
    hook = _set_conn(monkeypatch, login="client-1", password=secret, extra={"auth_type": auth})
    echo = _all_forms_echo(secret, "client-1" if auth == "basic" else None)
    requests_mock.post(f"{BASE}/auth/1/oauth2/token", json={"access_token": "Tok-12345678", "expires_in": 60})
    requests_mock.get(f"{BASE}/omni/1/scenarios", status_code=500, text=echo)
    requests_mock.post(
        f"{BASE}/omni/1/advanced",
        status_code=400,
        json={"requestError": {"serviceException": {"text": echo, "validationErrors": {"x": [echo]}}}},
    )
    requests_mock.get(f"{BASE}/omni/1/reports", status_code=401, text=echo)

    def async_server(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "Tok-12345678", "expires_in": 60})
        return httpx.Response(503, text=echo)

    hook._async_transport = httpx.MockTransport(async_server)
    errors = [
        run(hook.list_scenarios),
        run(lambda: hook.send_advanced(_message())),
        run(lambda: hook.get_reports(bulk_id="b")),
        run(lambda: hook.aget_logs(bulk_id="b")),
    ]
    ok, message = hook.test_connection()

    assert [type(e) for e in errors] == [OmniServerError, OmniValidationError, OmniAuthError, OmniServerError]
    assert ok is False
    expected_forms = forms(secret)
    if auth == "basic":
        expected_forms.add(base64.b64encode(f"client-1:{secret}".encode()).decode())
    assert expected_forms <= set(masked)  # every form registered with Airflow's secret masker
    texts = [message, logs(), repr(hook)] + [t for e in errors for t in error_texts(e)]
    assert_nowhere(expected_forms, texts)
    assert "***" in str(errors[0])  # the echo was there, redacted


# -- OAuth2 token endpoint failures that echo the client secret ----------------------------------------

SECRET = "Cl!ent/Secret+9a8b=7c6d&5e%"


def _echo_body() -> str:
    form = f"client_id=client-1&client_secret={quote_plus(SECRET)}&grant_type=client_credentials"
    return f"invalid request: {form} (raw {SECRET}; {quote(SECRET, safe='')}; {json.dumps(SECRET)})"


TOKEN_FAILURES = [
    pytest.param(400, "text/plain", _echo_body(), OmniAuthError, id="400"),
    pytest.param(401, "application/json", json.dumps({"error": _echo_body()}), OmniAuthError, id="401"),
    pytest.param(500, "text/plain", _echo_body(), OmniServerError, id="500"),
    pytest.param(200, "text/html", f"<html>{_echo_body()}</html>", OmniServerError, id="200-not-json"),
    pytest.param(
        200, "application/json", json.dumps({"echo": _echo_body()}), OmniServerError, id="200-no-token"
    ),
]


@pytest.mark.parametrize(("status", "content_type", "body", "error_class"), TOKEN_FAILURES)
@pytest.mark.parametrize("path", ["sync", "async"])
def test_token_endpoint_echoing_the_client_secret_never_leaks(
    monkeypatch: pytest.MonkeyPatch,
    requests_mock: Any,
    no_sleep: list[float],
    logs: Callable[[], str],
    status: int,
    content_type: str,
    body: str,
    error_class: type[Exception],
    path: str,
) -> None:
    hook = _set_conn(monkeypatch, login="client-1", password=SECRET, extra={"auth_type": "oauth2"})
    headers = {"Content-Type": content_type}
    token = requests_mock.post(f"{BASE}/auth/1/oauth2/token", status_code=status, text=body, headers=headers)
    api = requests_mock.get(f"{BASE}/omni/1/reports", json={"results": []})
    hook._async_transport = httpx.MockTransport(
        lambda request: httpx.Response(status, text=body, headers=headers)
    )

    error = run(lambda: hook.get_reports(bulk_id="b") if path == "sync" else hook.aget_reports(bulk_id="b"))
    ok, message = hook.test_connection()

    assert type(error) is error_class, error
    assert api.call_count == 0
    assert ok is False
    if path == "sync":
        assert token.call_count >= 1
    assert_nowhere(forms(SECRET), [message, logs(), *error_texts(error)])


def test_token_that_cannot_be_sent_in_a_header_is_a_server_error(
    monkeypatch: pytest.MonkeyPatch, requests_mock: Any, no_sleep: list[float], logs: Callable[[], str]
) -> None:
    hook = _set_conn(monkeypatch, login="client-1", password=SECRET, extra={"auth_type": "oauth2"})
    requests_mock.post(f"{BASE}/auth/1/oauth2/token", json={"access_token": "Tok-abc\r\nX-Injected: 1"})
    api = requests_mock.post(f"{BASE}/omni/1/advanced", json={})
    error = run(lambda: hook.send_advanced_bulk(_bulk()))
    assert type(error) is OmniServerError
    assert "access token that cannot be sent in a header" in str(error)
    assert api.call_count == 0
    assert_nowhere(forms("Tok-abc\r\nX-Injected: 1"), [logs(), *error_texts(error)])
