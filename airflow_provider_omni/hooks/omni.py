"""The OMNI hook: Airflow connection -> auth -> HTTP session, retries and typed errors."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import ssl
import threading
import time
import unicodedata
from dataclasses import replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import requests
from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_camel
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from airflow_provider_omni import __version__, messages_api
from airflow_provider_omni.exceptions import (
    OmniAuthError,
    OmniError,
    OmniSendUncertainError,
    OmniServerError,
    OmniValidationError,
)
from airflow_provider_omni.get_provider_info import (
    CONN_FIELDS,
    CONNECTION_TYPE,
    HOOK_NAME,
    UI_FIELD_BEHAVIOUR,
)
from airflow_provider_omni.hooks._auth import (
    AUTH_OAUTH2,
    TOKEN_PATH,
    ConnectionSettings,
    TokenCache,
    secret_forms,
)
from airflow_provider_omni.hooks._http import (
    SEND_PATH,
    Attempts,
    BadAnswer,
    RequestInfo,
    Retry,
    RetryPolicy,
    json_object,
    parse_retry_after,
    raw_body,
    redact,
    results_object,
)
from airflow_provider_omni.messages_api import (
    MESSAGES_PATH,
    VALIDATE_PATH,
    Backend,
    MessageTemplate,
    Senders,
    resolve_backend,
)
from airflow_provider_omni.messages_api import REPORTS_PATH as MESSAGES_REPORTS_PATH
from airflow_provider_omni.models import (
    AdvancedBulk,
    BulkAcceptance,
    CreateOrUpdateScenarioRequest,
    DeliveryReport,
    DeliveryReports,
    GeneralStatus,
    LoggedMessage,
    OAuthToken,
    OmniAdvancedRequest,
    OmniChannel,
    OmniLog,
    OmniLogsResponse,
    OmniResponse,
    Scenario,
    ScenariosResponse,
    Step,
    format_infobip_datetime,
    is_refused_at_send,
    send_answer_mismatch,
    to_payload,
)
from airflow_provider_omni.pacing import THROTTLED_RETRIES, SendPace
from airflow_provider_omni.privacy import shorten_numbers, shorten_phone_number
from airflow_provider_omni.version_compat import BaseHook, mask_secret

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from datetime import datetime

    from airflow.providers.common.compat.sdk import Connection

SCENARIOS_PATH = "/omni/1/scenarios"
REPORTS_PATH = "/omni/1/reports"
LOGS_PATH = "/omni/1/logs"
MAX_RESULTS = 1000
_MAX_ERRORS_IN_MESSAGE = 20
#: The message id Test Connection filters the Messages API's reports by: no send uses it, so the
#: call takes no one's report.
_CONNECTION_TEST_MESSAGE_ID = "airflow-provider-omni-connection-test"
_LOGGED_NUMBERS = 3

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

#: requests errors raised while the request is built, before anything is sent (bad URL or header;
#: http.client refuses a header it cannot encode with UnicodeEncodeError).
_LOCAL_ERRORS = (
    requests.exceptions.InvalidHeader,
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.URLRequired,
    UnicodeError,
)
#: The same for httpx (it refuses a non-ASCII header value with UnicodeEncodeError, a ValueError).
_ALOCAL_ERRORS = (httpx.LocalProtocolError, httpx.UnsupportedProtocol, httpx.InvalidURL, UnicodeError)
#: Local errors about the URL, whose message may be quoted (a header error's message quotes the value).
_URL_ERRORS = (
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.URLRequired,
    httpx.UnsupportedProtocol,
    httpx.InvalidURL,
)


def _sleep(seconds: float) -> None:
    """Wait between retries (a module function so that tests can skip the wait)."""
    time.sleep(seconds)


async def _asleep(seconds: float) -> None:
    """Wait between retries on the event loop (patched in tests)."""
    await asyncio.sleep(seconds)


def _user_agent() -> str:
    try:
        from airflow import __version__ as airflow_version
    except ImportError:  # pragma: no cover
        airflow_version = "unknown"
    return f"airflow-provider-omni/{__version__} apache-airflow/{airflow_version}"


# -- client-side validation ---------------------------------------------------------------------

_WIRE_NAMES = {
    "image_url": "imageURL",
    "imageUrl": "imageURL",
    "button_url": "buttonURL",
    "buttonUrl": "buttonURL",
}
_WIRE_NAMES.update({"sender": "from"})


def _wire_path(loc: Sequence[int | str]) -> str:
    """Return a pydantic error location as Infobip's camelCase path: ``destinations[3].to.phoneNumber``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            name = _WIRE_NAMES.get(part) or (to_camel(part) if "_" in part else part)
            path += f".{name}" if path else name
    return path


def _hide_number(message: str, item: Any, path: str) -> str:
    """Shorten the phone number a message about a ``phoneNumber`` field quotes, and any other."""
    value = item.get("input")
    if path.endswith("phoneNumber") and isinstance(value, str) and sum(c.isdigit() for c in value) >= 7:
        message = message.replace(repr(value), repr(shorten_phone_number(value)))
    return shorten_numbers(message)


def validation_error_from_pydantic(
    error: ValidationError, what: str, *, full_numbers: bool = False
) -> OmniValidationError:
    """Turn a pydantic error into :class:`OmniValidationError` naming each field the Infobip way.

    :param error: the pydantic error.
    :param what: what was being validated, e.g. ``"The OMNI message"``.
    :param full_numbers: quote phone numbers in full (the connection's ``show_full_numbers``);
        by default they are shortened.
    """
    errors: dict[str, list[str]] = {}
    for item in error.errors(include_url=False):
        path = _wire_path(item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        if not full_numbers:
            message = _hide_number(message, item, path)
        field = path or "request"
        first_word = message.split(" ", 1)[0].rstrip(":;,.")
        if (path and first_word.startswith(f"{path}.")) or (not path and "." in first_word):
            field = first_word
        if "input" in item and item["type"] in ("string_too_long", "too_long"):
            message = f"{message} (got {len(item['input'])})"
        errors.setdefault(field, []).append(message)
    lines = [
        msg if msg.startswith(field) else f"{field}: {msg}" for field, msgs in errors.items() for msg in msgs
    ]
    shown = lines[:_MAX_ERRORS_IN_MESSAGE]
    more = f"\n  ... and {len(lines) - len(shown)} more" if len(lines) > len(shown) else ""
    text = "\n  ".join(shown)
    return OmniValidationError(
        f"{what} is invalid ({len(lines)} error(s)); nothing was sent:\n  {text}{more}",
        validation_errors=errors,
    )


def _validated(
    model: type[M],
    value: M | Mapping[str, Any],
    what: str,
    full_numbers: Callable[[], bool] | None = None,
) -> M:
    """Validate ``value``; on failure raise OmniValidationError, phone numbers shortened unless
    ``full_numbers()`` (asked only then: it may read the connection)."""
    if isinstance(value, model):
        return value
    if isinstance(value, BaseModel):
        value = value.model_dump(by_alias=True, exclude_none=True)
    try:
        return model.model_validate(value)
    except ValidationError as err:
        full = full_numbers() if full_numbers else False
        raise validation_error_from_pydantic(err, what, full_numbers=full) from None


def _parse(model: type[M], data: Any, info: RequestInfo) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        message = (
            f"Unexpected answer to {info.label} on {info.base_url}: {err.error_count()} field(s) unreadable"
        )
        if info.is_send:
            raise OmniSendUncertainError(
                f"{message}. Infobip accepted the request (HTTP 2xx) but its answer could not be read; "
                "check GET /omni/1/logs by bulkId before sending again.",
                bulk_id=info.bulk_id,
            ) from None
        raise OmniError(message) from None


# -- query parameters ---------------------------------------------------------------------------


def _as_list(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _enum_value(value: Any, enum: type[GeneralStatus] | type[OmniChannel], name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, enum):
        return value.value
    try:
        return enum(str(value).strip().upper()).value
    except ValueError:
        allowed = ", ".join(e.value for e in enum)
        raise OmniValidationError(
            f"{name}: {value!r} is not one of {allowed}", validation_errors={name: [f"not one of {allowed}"]}
        ) from None


def _datetime_value(value: datetime | str | None, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise OmniValidationError(
            f"{name}: the datetime must be timezone-aware", validation_errors={name: ["naive datetime"]}
        )
    return format_infobip_datetime(value)


def _check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_RESULTS:
        raise OmniValidationError(
            f"limit: {limit} is out of range 1 .. {MAX_RESULTS}", validation_errors={"limit": ["1 .. 1000"]}
        )
    return limit


def reports_params(
    bulk_id: str | None = None,
    message_id: str | None = None,
    limit: int = MAX_RESULTS,
    channel: OmniChannel | str | None = None,
) -> dict[str, Any]:
    """Return the query of ``GET /omni/1/reports`` (unset filters left out)."""
    params = {
        "bulkId": bulk_id,
        "messageId": message_id,
        "limit": _check_limit(limit),
        "channel": _enum_value(channel, OmniChannel, "channel"),
    }
    return {k: v for k, v in params.items() if v is not None}


def _logged_messages(content: bytes) -> list[LoggedMessage]:
    """Read a logs answer compactly; :class:`BadAnswer` (saying what it is) when it is none."""
    try:
        return LoggedMessage.all_from_json(content)
    except ValidationError:
        results_object(content)  # names what the answer is when it is no logs answer at all
        raise BadAnswer("a logs answer with unreadable rows") from None


def logs_params(
    *,
    bulk_id: str | Sequence[str] | None = None,
    message_id: str | Sequence[str] | None = None,
    sender: str | None = None,
    to: str | None = None,
    general_status: GeneralStatus | str | None = None,
    channel: OmniChannel | str | None = None,
    sent_since: datetime | str | None = None,
    sent_until: datetime | str | None = None,
    limit: int = MAX_RESULTS,
    mcc: str | None = None,
    mnc: str | None = None,
) -> dict[str, Any]:
    """Return the query of ``GET /omni/1/logs``; list values are sent as repeated parameters."""
    params = {
        "from": sender,
        "to": to,
        "bulkId": _as_list(bulk_id),
        "messageId": _as_list(message_id),
        "generalStatus": _enum_value(general_status, GeneralStatus, "generalStatus"),
        "channel": _enum_value(channel, OmniChannel, "channel"),
        "sentSince": _datetime_value(sent_since, "sentSince"),
        "sentUntil": _datetime_value(sent_until, "sentUntil"),
        "limit": _check_limit(limit),
        "mcc": mcc,
        "mnc": mnc,
    }
    return {k: v for k, v in params.items() if v is not None}


def _reached_server(error: BaseException) -> bool:
    """Tell whether a requests error may have happened after the request was written.

    A connect timeout or a refused / unresolvable connection happen before anything is sent.
    """
    if isinstance(error, (requests.ConnectTimeout, requests.exceptions.ProxyError)):
        # urllib3 raises ProxyError only before the proxy connection (or CONNECT tunnel) was made
        return False
    seen: set[int] = set()
    stack: list[BaseException] = [error]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, (NewConnectionError, ConnectTimeoutError)):
            return False
        nested = [getattr(current, "reason", None), current.__cause__, current.__context__, *current.args]
        stack.extend(e for e in nested if isinstance(e, BaseException))
    return True


def _areached_server(error: httpx.HTTPError) -> bool:
    """Tell whether an httpx error may have happened after the request was written."""
    return not isinstance(
        error, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)
    )


# -- the hook -----------------------------------------------------------------------------------


class OmniHook(BaseHook):
    """Talk to Infobip's OMNI failover API (``/omni/1/...``): scenarios, sends, reports, logs.

    The connection (type ``infobip_omni``) holds the personal base URL in Host (``https://`` is
    added when missing; ``http://`` is kept for a local sandbox), the API key (or password, or
    OAuth2 client secret) in Password, the username or OAuth2 client id in Login, and the extras
    ``auth_type``, ``connect_timeout``, ``read_timeout``, ``max_retries``, ``verify_ssl`` and
    ``show_full_numbers``.

    Retries (exponential backoff with jitter, up to ``max_retries``):

    * GET and PUT are retried on connection errors, timeouts, 429 (``Retry-After`` honoured, capped
      at 60 s) and 5xx;
    * every request, POST included, is retried when it certainly had no effect: the connection
      could not be opened (refused, DNS, connect timeout), or Infobip answered 429;
    * ``POST /omni/1/advanced`` (a send) is **never** retried after an ambiguous failure (read
      timeout, 5xx, connection dropped after the request was written): it raises
      :class:`~airflow_provider_omni.exceptions.OmniSendUncertainError`, because the message may
      have gone out. Look its bulk id up in :meth:`get_logs` before sending again.
      ``POST /omni/1/scenarios`` is not retried after an ambiguous failure either;
    * 400, 401, 403 and 404 are never retried. With OAuth2, a 401 refreshes the token once.
    * Redirects are never followed, on either path: a 3xx raises
      :class:`~airflow_provider_omni.exceptions.OmniConfigurationError` naming the Host to set. A
      2xx whose body is not what the endpoint returns (empty, not JSON, not an object, no
      ``results`` list) is an :class:`~airflow_provider_omni.exceptions.OmniServerError`, retried
      like a 5xx for GET; for a send it is an ``OmniSendUncertainError``, as is any 2xx that does
      not list the bulk id and message ids sent.

    Login and Password are stripped of surrounding whitespace when the connection is read; a line
    break or control character inside raises ``OmniConfigurationError`` naming the field. Secrets
    (API key, password, client secret, access token) never appear in messages, logs or ``repr``,
    in any form (raw, escaped, JSON, URL-encoded, base64), and every form is registered with
    Airflow's secret masker. Phone numbers in log lines and error messages are shortened unless
    ``show_full_numbers`` is set.

    :param omni_conn_id: the Airflow connection id.
    :param connect_timeout: seconds to open a connection; overrides the connection extra.
    :param read_timeout: seconds to wait for an answer; overrides the connection extra.
    :param max_retries: retries of a request; overrides the connection extra.
    """

    conn_name_attr = "omni_conn_id"
    default_conn_name = "omni_default"
    conn_type = CONNECTION_TYPE
    hook_name = HOOK_NAME

    def __init__(
        self,
        omni_conn_id: str = default_conn_name,
        *,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        max_retries: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.omni_conn_id = omni_conn_id
        self._overrides: dict[str, Any] = {
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
            "max_retries": max_retries,
        }
        self._settings: ConnectionSettings | None = None
        self._tokens = TokenCache()
        #: An httpx transport for the async client (tests inject ``httpx.MockTransport``).
        self._async_transport: httpx.AsyncBaseTransport | None = None
        #: The async client's TLS verification (an SSL context, or False), built once per hook.
        self._async_verify: ssl.SSLContext | bool | None = None
        #: The pace of a large send (messages per second, one pause for all after a 429): set by the
        #: send operator for the POSTs of one send, None for the hook's other callers.
        self.pace: SendPace | None = None
        self._token_lock = threading.Lock()

    def __repr__(self) -> str:
        base_url = f", base_url={self._settings.base_url!r}" if self._settings else ""
        return f"{type(self).__name__}(omni_conn_id={self.omni_conn_id!r}{base_url})"

    # -- connection ---------------------------------------------------------------------------

    def _settings_from(self, conn: Connection, extras: dict[str, Any]) -> ConnectionSettings:
        """Build the settings and register every form of the secret with Airflow's secret masker."""
        raw_forms = secret_forms(conn.password)  # masked even when the value is refused below
        for form in raw_forms:
            mask_secret(form)
        settings = self._build_settings(conn, extras)
        for form in settings.secrets():
            if form not in raw_forms:
                mask_secret(form)
        return settings

    def _build_settings(self, conn: Connection, extras: dict[str, Any]) -> ConnectionSettings:
        try:
            return ConnectionSettings.build(
                conn_id=self.omni_conn_id,
                host=conn.host,
                login=conn.login,
                password=conn.password,
                extras=extras,
                schema=conn.schema,
                port=conn.port,
                overrides=self._overrides,
            )
        except ValueError as err:
            raise OmniValidationError(f"Connection {self.omni_conn_id!r}: {err}") from None

    @property
    def settings(self) -> ConnectionSettings:
        """The connection's typed settings (read once per hook)."""
        if self._settings is None:
            conn = self.get_connection(self.omni_conn_id)
            self._settings = self._settings_from(conn, conn.extra_dejson)
        return self._settings

    async def _asettings(self) -> ConnectionSettings:
        if self._settings is None:
            from asgiref.sync import sync_to_async

            conn = await _get_async_connection(self.omni_conn_id)
            extras = await _get_async_extra(conn)
            # off the event loop: registering the secret with the masker is a synchronous call to the
            # supervisor in Airflow 3.0's triggerer, which refuses to run in the loop's own thread
            self._settings = await sync_to_async(self._settings_from)(conn, extras)
        if self._async_verify is None:
            # reading the CA store is file I/O: once per hook, off the event loop
            self._async_verify = await asyncio.to_thread(_tls_verification, self._settings)
        return self._settings

    @property
    def base_url(self) -> str:
        """The personal base URL, with scheme, without trailing slash."""
        return self.settings.base_url

    @property
    def show_full_numbers(self) -> bool:
        """Whether log lines may show full phone numbers (connection extra ``show_full_numbers``)."""
        return self.settings.show_full_numbers

    def _full_numbers_or_not(self) -> bool:
        """``show_full_numbers`` when the connection can be read; False (shortened) otherwise."""
        try:
            return self.show_full_numbers
        except Exception:
            return False

    @property
    def namespace(self) -> str:
        """The send namespace (connection extra ``namespace``): part of every bulk and message id."""
        return self.settings.namespace

    async def aget_namespace(self) -> str:
        """Async :attr:`namespace`: the connection is read without blocking the event loop."""
        return (await self._asettings()).namespace

    @property
    def _policy(self) -> RetryPolicy:
        return RetryPolicy(max_retries=self.settings.max_retries)

    def _secrets(self) -> list[str]:
        secrets = self._settings.secrets() if self._settings else []
        return [*secrets, *secret_forms(self._tokens.raw)]

    def _info(
        self, method: str, path: str, *, idempotent: bool | None = None, bulk_id: str | None = None
    ) -> RequestInfo:
        settings = self.settings
        return RequestInfo(
            method=method,
            path=path,
            base_url=settings.base_url,
            conn_id=settings.conn_id,
            auth_type=settings.auth_type,
            idempotent=method in ("GET", "PUT") if idempotent is None else idempotent,
            bulk_id=bulk_id,
            show_full_numbers=settings.show_full_numbers,
        )

    def _attempts(self, info: RequestInfo) -> Attempts:
        return Attempts(info, self._policy, self.log, self._redact)

    def _number(self, number: str | None) -> str:
        return shorten_phone_number(number, full=self.show_full_numbers)

    # -- sync HTTP ----------------------------------------------------------------------------

    @cached_property
    def session(self) -> requests.Session:
        """One pooled session per hook, with the provider's User-Agent and JSON headers."""
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.headers.update({"User-Agent": _user_agent(), "Accept": "application/json"})
        # for callers of get_conn(); the hook's own requests also pass them per request
        session.verify = self.settings.verify
        session.proxies.update(self.settings.proxies)
        return session

    def prepare_for_threads(self) -> None:
        """Read the connection, open the session and fetch an OAuth2 token in the calling thread,
        before several threads send through this hook (they then share all three)."""
        self._authorization()
        _ = self.session

    def get_conn(self) -> requests.Session:
        """Return the pooled :class:`requests.Session` (auth is added per request)."""
        return self.session

    @property
    def _transport_settings(self) -> dict[str, Any]:
        """TLS verification and the connection's proxy, given per request: session-wide values lose
        to ``$REQUESTS_CA_BUNDLE`` and ``$HTTPS_PROXY`` (psf/requests#3829)."""
        return {"verify": self.settings.verify, "proxies": self.settings.proxies or None}

    @property
    def _timeout(self) -> tuple[float, float]:
        return (self.settings.connect_timeout, self.settings.read_timeout)

    def _check_credentials(self) -> None:
        problem = self.settings.missing_credentials()
        if problem:
            raise OmniAuthError(f"Cannot call Infobip: {problem}.")

    def _authorization(self) -> str:
        self._check_credentials()
        static = self.settings.static_authorization()
        if static is not None:
            return static
        token = self._tokens.current
        if token is None:
            with self._token_lock:  # the threads of a send fetch one token, not one each
                token = self._tokens.current or self._fetch_token()
        return f"Bearer {token}"

    def _fetch_token(self) -> str:
        info = self._info("POST", TOKEN_PATH, idempotent=True)
        attempts = self._attempts(info)
        while True:
            try:
                response = self.session.post(
                    self.base_url + TOKEN_PATH,
                    data=self.settings.token_form(),
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                    timeout=self._timeout,
                    allow_redirects=False,
                    **self._transport_settings,
                )
            except _LOCAL_ERRORS as err:
                attempts.after_local_error(err, show_message=isinstance(err, _URL_ERRORS))
            except requests.RequestException as err:
                _sleep(attempts.after_transport_error(err, sent=_reached_server(err)))
                continue
            self._raise_if_token_refused(response.status_code, info)
            result = attempts.after_answer(
                response.status_code, response.content, response.headers, _read_token
            )
            if isinstance(result, Retry):
                _sleep(result.delay)
                continue
            return self._store_token(result)

    def _raise_if_token_refused(self, status: int, info: RequestInfo) -> None:
        """Raise :class:`OmniAuthError` for a 400, 401 or 403 of the token endpoint (its body, which
        may echo the form with the client secret, is not quoted)."""
        if status in (400, 401, 403):
            raise OmniAuthError(
                self._redact(
                    f"Infobip refused the OAuth2 client credentials of connection {self.omni_conn_id!r} "
                    f"({status} on {info.label}, {info.base_url}): check the client id (Login) and client "
                    "secret (Password), and that the Base URL is your personal base URL."
                ),
                status_code=status,
            )

    def _store_token(self, token: OAuthToken) -> str:
        for form in secret_forms(token.access_token):
            mask_secret(form)
        self.log.debug("Fetched an OAuth2 access token valid for %d s", token.expires_in)
        return self._tokens.store(token)

    def _redact(self, text: str) -> str:
        """Remove every form of every secret from ``text``."""
        return redact(text, self._secrets())

    def _scrub(self, text: str) -> str:
        """Remove secrets, and shorten phone numbers unless the connection shows them in full."""
        text = self._redact(text)
        full = self._settings.show_full_numbers if self._settings else False
        return text if full else shorten_numbers(text)

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        idempotent: bool | None = None,
        read: Callable[[bytes], dict[str, Any]] = json_object,
    ) -> dict[str, Any]:
        """Send one API request with the retry rule of the class docstring; return the JSON object.

        :param read: reads a 2xx body; raises :class:`BadAnswer` for one the endpoint never returns
            (retried like a 5xx when the request is idempotent).
        """
        info = self._info(method, path, idempotent=idempotent)
        data = None if body is None else json.dumps(body, allow_nan=False).encode()
        return self._request_content(info, params=params, data=data, read=read)

    def _request_content(
        self,
        info: RequestInfo,
        *,
        params: dict[str, Any] | None = None,
        data: bytes | None = None,
        read: Callable[[bytes], T],
        messages: int = 0,
    ) -> T:
        """Send one request (``data``: a JSON body) with the retry rule; return ``read`` of the answer.

        Redirects are not followed: a 3xx raises :class:`OmniConfigurationError`.

        :param messages: destinations in a send's body: with a :attr:`pace`, the send waits its turn
            for them, and a 429 pauses every request of the pace (not this one alone).
        """
        pace = self.pace if info.is_send else None
        attempts = self._attempts(info) if pace is None else self._paced_attempts(info)
        refreshed = False
        while True:
            if pace is not None:
                pace.wait_turn(messages)
            headers = {"Authorization": self._authorization()}
            if data is not None:
                headers["Content-Type"] = "application/json"
            self.log.debug("%s %s (attempt %d)", info.method, info.path, attempts.retries + 1)
            try:
                response = self.session.request(
                    info.method,
                    self.base_url + info.path,
                    params=params,
                    data=data,
                    headers=headers,
                    timeout=self._timeout,
                    allow_redirects=False,
                    **self._transport_settings,
                )
            except _LOCAL_ERRORS as err:
                attempts.after_local_error(err, show_message=isinstance(err, _URL_ERRORS))
            except requests.RequestException as err:
                _sleep(attempts.after_transport_error(err, sent=_reached_server(err)))
                continue
            status = response.status_code
            if status == 401 and self.settings.auth_type == AUTH_OAUTH2 and not refreshed:
                self.log.info("Infobip answered 401 to %s; refreshing the OAuth2 token once", info.label)
                self._tokens.invalidate()
                refreshed = True
                continue
            result = attempts.after_answer(status, response.content, response.headers, read)
            if pace is not None and status != 429:
                pace.went_through()
            if isinstance(result, Retry):
                if pace is not None and status == 429:  # every request of the send pauses
                    pause = pace.throttle(parse_retry_after(response.headers.get("Retry-After")))
                    self.log.warning("Infobip answered 429: the whole send pauses %.1f s", pause)
                    continue
                _sleep(result.delay)
                continue
            return result

    def _paced_attempts(self, info: RequestInfo) -> Attempts:
        """Attempts of a paced send: a 429 (nothing processed) may be retried more often, as the shared
        pause, not each request, finds the pace Infobip takes."""
        policy = self._policy
        more = replace(policy, max_retries=max(policy.max_retries, THROTTLED_RETRIES))
        return Attempts(info, more, self.log, self._redact)

    # -- async HTTP (for triggers and the notifier's async path) ------------------------------

    def _async_client(self, settings: ConnectionSettings) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
            verify=self._async_verify if self._async_verify is not None else settings.verify_ssl,
            proxy=settings.proxy_url,
            headers={"User-Agent": _user_agent(), "Accept": "application/json"},
            transport=self._async_transport,
            follow_redirects=False,
        )

    async def _aauthorization(self, client: httpx.AsyncClient) -> str:
        self._check_credentials()
        static = self.settings.static_authorization()
        if static is not None:
            return static
        return f"Bearer {self._tokens.current or await self._afetch_token(client)}"

    async def _afetch_token(self, client: httpx.AsyncClient) -> str:
        info = self._info("POST", TOKEN_PATH, idempotent=True)
        attempts = self._attempts(info)
        while True:
            try:
                response = await client.post(self.base_url + TOKEN_PATH, data=self.settings.token_form())
            except _ALOCAL_ERRORS as err:
                attempts.after_local_error(err, show_message=isinstance(err, _URL_ERRORS))
            except httpx.HTTPError as err:
                await _asleep(attempts.after_transport_error(err, sent=_areached_server(err)))
                continue
            self._raise_if_token_refused(response.status_code, info)
            result = attempts.after_answer(
                response.status_code, response.content, response.headers, _read_token
            )
            if isinstance(result, Retry):
                await _asleep(result.delay)
                continue
            return self._store_token(result)

    async def _arequest(
        self,
        path: str,
        params: dict[str, Any],
        read: Callable[[bytes], dict[str, Any]] = json_object,
    ) -> dict[str, Any]:
        """Async GET with the same auth, retry rule, redirect rule and error mapping as
        :meth:`_request_content`."""
        await self._asettings()
        return await self._arequest_content(self._info("GET", path), params=params, read=read)

    async def _arequest_content(
        self,
        info: RequestInfo,
        *,
        params: dict[str, Any] | None = None,
        data: bytes | None = None,
        read: Callable[[bytes], T],
    ) -> T:
        """Async :meth:`_request_content`: one request (``data``: a JSON body) with the same auth,
        retry rule, redirect rule and error mapping; the settings must be loaded (:meth:`_asettings`)."""
        attempts = self._attempts(info)
        refreshed = False
        async with self._async_client(self.settings) as client:
            while True:
                headers = {"Authorization": await self._aauthorization(client)}
                if data is not None:
                    headers["Content-Type"] = "application/json"
                try:
                    response = await client.request(
                        info.method, self.base_url + info.path, params=params, content=data, headers=headers
                    )
                except _ALOCAL_ERRORS as err:
                    attempts.after_local_error(err, show_message=isinstance(err, _URL_ERRORS))
                except httpx.HTTPError as err:
                    await _asleep(attempts.after_transport_error(err, sent=_areached_server(err)))
                    continue
                status = response.status_code
                if status == 401 and self.settings.auth_type == AUTH_OAUTH2 and not refreshed:
                    self._tokens.invalidate()
                    refreshed = True
                    continue
                result = attempts.after_answer(status, response.content, response.headers, read)
                if isinstance(result, Retry):
                    await _asleep(result.delay)
                    continue
                return result

    # -- scenarios ----------------------------------------------------------------------------

    def list_scenarios(
        self, is_default: bool | None = None, limit: int = 100, page: int = 0
    ) -> list[Scenario]:
        """Return one page of the account's scenarios.

        :param is_default: only the default scenario (True) or only the others (False).
        :param limit: page size (Infobip's default is 100).
        :param page: zero-based page number.
        """
        params: dict[str, Any] = {"limit": limit, "page": page}
        if is_default is not None:
            params["isDefault"] = "true" if is_default else "false"
        data = self._request("GET", SCENARIOS_PATH, params=params)
        return _parse(ScenariosResponse, data, self._info("GET", SCENARIOS_PATH)).scenarios

    def get_scenario(self, key: str) -> Scenario:
        """Return the scenario ``key``; raise :class:`OmniNotFoundError` when there is none."""
        path = f"{SCENARIOS_PATH}/{key}"
        return _parse(Scenario, self._request("GET", path), self._info("GET", path))

    def get_scenario_or_default(self, key: str | None) -> Scenario | None:
        """Return the scenario ``key`` (:class:`OmniNotFoundError` when there is none) or, without a
        key, the account's default scenario: the one a send without ``scenarioKey`` uses (None: none)."""
        if key:
            return self.get_scenario(key)
        defaults = self.list_scenarios(is_default=True, limit=1)
        return defaults[0] if defaults else None

    def resolve_scenario_key(self, key: str | None) -> str | None:
        """Return the scenario a send uses: ``key`` (the task's) when given, else the connection's
        ``default_scenario_key``, else the key of its ``default_scenario_name``; None: the account's
        default scenario.

        :raises OmniValidationError: no scenario, or more than one, has the default name.
        """
        if key:
            return key
        settings = self.settings
        if settings.default_scenario_key:
            return settings.default_scenario_key
        if settings.default_scenario_name:
            return self._scenario_key_named(settings.default_scenario_name)
        return None

    def _scenario_key_named(self, name: str) -> str:
        keys = [scenario.key for scenario in self.iter_all_scenarios() if scenario.name == name]
        if len(keys) != 1:
            found = "no scenario has" if not keys else f"{len(keys)} scenarios have"
            raise OmniValidationError(
                f"Connection {self.omni_conn_id!r}: extra 'default_scenario_name' is {name!r}, but {found} "
                "that name; create it (OmniCreateScenarioOperator) or set 'default_scenario_key'",
                validation_errors={"default_scenario_name": [f"{len(keys)} scenarios named {name!r}"]},
            )
        return keys[0]

    def create_scenario(
        self, name: str | None, flow: Sequence[Step | Mapping[str, Any]], default: bool = False
    ) -> Scenario:
        """Create a scenario (Infobip allows 20 per 10 minutes: prefer :meth:`get_or_create_scenario`).

        :param name: the scenario name.
        :param flow: the ordered steps, e.g. ``[{"channel": "VIBER", "from": "Brand"}, {"channel": "SMS"}]``.
        :param default: make it the account's default scenario.
        """
        request = self._scenario_request(name, flow, default or None)
        data = self._request("POST", SCENARIOS_PATH, body=to_payload(request))
        scenario = _parse(Scenario, data, self._info("POST", SCENARIOS_PATH))
        self.log.info(
            "Created OMNI scenario %s (%r): %s", scenario.key, scenario.name, _flow_text(request.flow)
        )
        return scenario

    def update_scenario(
        self,
        key: str,
        name: str | None,
        flow: Sequence[Step | Mapping[str, Any]],
        default: bool | None = None,
    ) -> Scenario:
        """Replace the name and flow of scenario ``key`` (Infobip allows 40 updates per 10 minutes)."""
        request = self._scenario_request(name, flow, default)
        path = f"{SCENARIOS_PATH}/{key}"
        scenario = _parse(
            Scenario, self._request("PUT", path, body=to_payload(request)), self._info("PUT", path)
        )
        self.log.info(
            "Updated OMNI scenario %s (%r): %s", scenario.key, scenario.name, _flow_text(request.flow)
        )
        return scenario

    @staticmethod
    def _scenario_request(
        name: str | None, flow: Sequence[Step | Mapping[str, Any]], default: bool | None
    ) -> CreateOrUpdateScenarioRequest:
        steps = [
            step.model_dump(by_alias=True, exclude_none=True) if isinstance(step, Step) else step
            for step in flow
        ]
        return _validated(
            CreateOrUpdateScenarioRequest,
            {"name": name, "flow": steps, "default": default},
            "The OMNI scenario",
        )

    def iter_all_scenarios(self, page_size: int = 100) -> list[Scenario]:
        """Return every scenario of the account, paging while a page comes back full."""
        scenarios: list[Scenario] = []
        page = 0
        while True:
            batch = self.list_scenarios(limit=page_size, page=page)
            scenarios.extend(batch)
            if len(batch) < page_size:
                return scenarios
            page += 1

    def get_or_create_scenario(
        self,
        name: str,
        flow: Sequence[Step | Mapping[str, Any]],
        default: bool = False,
        update_if_different: bool = False,
    ) -> Scenario:
        """Return the scenario with this name and flow, creating it only when there is none.

        :param name: the scenario name to look for.
        :param flow: the ordered steps it must have (channels and senders).
        :param default: create it (or update it) as the account's default scenario.
        :param update_if_different: when a scenario has this name but another flow, update it
            instead of creating a second scenario with the same name.
        """
        request = self._scenario_request(name, flow, default or None)
        scenarios = self.iter_all_scenarios()
        same_name = [s for s in scenarios if s.name == name]
        for scenario in same_name:
            if scenario.has_flow(request.flow):
                self.log.info("Reusing OMNI scenario %s (%r): same name and flow", scenario.key, name)
                return scenario
        if same_name and update_if_different:
            target = same_name[0]
            self.log.info("OMNI scenario %s (%r) has another flow; updating it", target.key, name)
            return self.update_scenario(target.key, name, request.flow, default or None)
        if same_name:
            self.log.warning(
                "OMNI scenario(s) %s named %r have another flow; creating a new one "
                "(pass update_if_different=True to update instead)",
                ", ".join(s.key for s in same_name),
                name,
            )
        return self.create_scenario(name, request.flow, default)

    # -- sending ------------------------------------------------------------------------------

    def send_advanced(self, request: OmniAdvancedRequest | Mapping[str, Any]) -> OmniResponse:
        """Send one advanced (failover) message, validated before anything goes out.

        Never retried after an ambiguous failure: a timeout, a 5xx or a connection dropped after
        the request was written raise :class:`OmniSendUncertainError` (with ``bulk_id``); check
        :meth:`get_logs` by that bulk id before sending again. A connection that could not be
        opened, or a 429, are retried: nothing was processed.

        A 2xx answer is an acceptance only when it lists one message per destination, with the bulk
        id and the message ids sent (when the request has them); any other answer (empty, not JSON,
        an error body, other ids) raises :class:`OmniSendUncertainError` too.

        :param request: the message, as a model or as a dict in Infobip's (or Python) field names.
        :return: Infobip's acceptance (not the delivery outcome).
        """
        message, info, body = self._prepare_send(request)
        content = self._request_content(info, data=body, read=raw_body)
        return self._accepted_send(message, info, content)

    async def asend_advanced(self, request: OmniAdvancedRequest | Mapping[str, Any]) -> OmniResponse:
        """Async :meth:`send_advanced` (httpx), for notifiers run by the triggerer.

        The same validation, the same rule (never retried after an ambiguous failure:
        :class:`OmniSendUncertainError` with ``bulk_id``) and the same check of the answer against
        the bulk id and message ids sent.

        :param request: the message, as a model or as a dict in Infobip's (or Python) field names.
        :return: Infobip's acceptance (not the delivery outcome).
        """
        await self._asettings()
        message, info, body = self._prepare_send(request)
        content = await self._arequest_content(info, data=body, read=raw_body)
        return self._accepted_send(message, info, content)

    def _prepare_send(
        self, request: OmniAdvancedRequest | Mapping[str, Any]
    ) -> tuple[OmniAdvancedRequest, RequestInfo, bytes]:
        """Validate and log a send; return the message, its request and its JSON body."""
        message = _validated(OmniAdvancedRequest, request, "The OMNI message", self._full_numbers_or_not)
        numbers = [d.to.phone_number for d in message.destinations if d.to.phone_number]
        self.log.info(
            "Sending OMNI message: scenario %s, bulkId %s, %d destination(s): %s%s",
            message.scenario_key or "<account default>",
            message.bulk_id or "<none>",
            len(message.destinations),
            ", ".join(self._number(n) for n in numbers[:_LOGGED_NUMBERS]),
            ", ..." if len(numbers) > _LOGGED_NUMBERS else "",
        )
        info = self._info("POST", SEND_PATH, idempotent=False, bulk_id=message.bulk_id)
        return message, info, json.dumps(to_payload(message), allow_nan=False).encode()

    def _accepted_send(self, message: OmniAdvancedRequest, info: RequestInfo, content: bytes) -> OmniResponse:
        """Return the 2xx answer to ``message`` when it accepts what was sent (log it); raise
        OmniSendUncertainError when it does not."""
        response = self._read_send_answer(content, info)
        problem = send_answer_mismatch(
            sent_bulk_id=message.bulk_id,
            sent_size=len(message.destinations),
            sent_message_ids=[d.message_id or "" for d in message.destinations],
            bulk_id=response.bulk_id,
            count=len(response.messages),
            message_ids=[m.message_id for m in response.messages if m.message_id],
        )
        if problem:
            raise self._unmatched_answer(info, problem)
        rejected = [m for m in response.messages if is_refused_at_send(m.status)]
        self.log.info(
            "Infobip accepted %d of %d destination(s) (bulkId %s)%s",
            len(response.messages) - len(rejected),
            len(message.destinations),
            response.bulk_id or message.bulk_id or "<none>",
            "; rejected: "
            + ", ".join(
                f"{self._number(m.to.phone_number if m.to else None)} {m.status.name if m.status else ''}"
                for m in rejected[:_LOGGED_NUMBERS]
            )
            if rejected
            else "",
        )
        return response

    def _read_send_answer(self, content: bytes, info: RequestInfo) -> OmniResponse:
        """Read the 2xx answer to :meth:`send_advanced`; raise OmniSendUncertainError when it cannot."""
        try:
            data = json_object(content)
        except BadAnswer as bad:
            raise self._unmatched_answer(info, f"it is {bad}") from None
        return _parse(OmniResponse, data, info)

    def _unmatched_answer(self, info: RequestInfo, problem: str) -> OmniSendUncertainError:
        """The error for a 2xx send answer that is not an acceptance of what was sent."""
        return OmniSendUncertainError(
            self._scrub(
                f"Infobip answered {info.label} on {info.base_url} with HTTP 2xx, but the answer does not "
                f"match the request: {problem}. The message MAY have been sent; it was not retried, to "
                f"avoid a duplicate. {_look_up_advice(info)}"
            ),
            bulk_id=info.bulk_id,
        )

    def send_advanced_bulk(self, bulk: AdvancedBulk) -> BulkAcceptance:
        """Send one bulk of a large send, with no model object per destination either way.

        The same request and the same rule as :meth:`send_advanced` (never retried after an
        ambiguous failure: :class:`OmniSendUncertainError` with ``bulk_id``), for callers that
        validated the whole send beforehand: ``bulk`` is built from validated parts by
        :meth:`AdvancedBulk.build <airflow_provider_omni.models.AdvancedBulk.build>`. The answer
        is parsed in one pass into a compact :class:`~airflow_provider_omni.models.BulkAcceptance`,
        and must match the bulk: its bulk id, one message per destination and the bulk's message
        ids; anything else raises :class:`OmniSendUncertainError` saying what did not match.

        :param bulk: the bulk to send.
        :return: how many messages the answer lists, and the destinations refused at send.
        """
        info = self._info("POST", SEND_PATH, idempotent=False, bulk_id=bulk.bulk_id)
        content = self._request_content(info, data=bulk.body, read=raw_body, messages=bulk.size)
        acceptance = self._read_acceptance(content, info)
        problem = acceptance.mismatch(bulk)
        if problem:
            raise self._unmatched_answer(info, problem)
        self.log.debug(
            "Bulk %s: %d destination(s) sent, %d refused",
            bulk.bulk_id,
            bulk.size,
            len(acceptance.refused),
        )
        return acceptance

    def _read_acceptance(self, content: bytes, info: RequestInfo) -> BulkAcceptance:
        """Parse a bulk's 2xx answer; raise OmniSendUncertainError (saying why) when it cannot."""
        try:
            return BulkAcceptance.from_json(content)
        except ValidationError as err:
            try:
                json_object(content)
            except BadAnswer as bad:
                reason = f"it is {bad}"
            else:
                reason = f"{err.error_count()} field(s) of it are unreadable"
        raise self._unmatched_answer(info, reason)

    # -- the Messages API backend --------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        """The connection's ``backend`` extra (OMNI when unset); a task's own argument wins over it."""
        return resolve_backend(None, self.settings.backend)

    def senders(self, viber: str | None = None, sms: str | None = None) -> Senders:
        """The Messages API senders: the task's, else the connection's ``viber_sender``/``sms_sender``."""
        settings = self.settings
        return Senders(viber=viber or settings.viber_sender, sms=sms or settings.sms_sender)

    def send_messages_api_bulk(self, bulk: AdvancedBulk, template: MessageTemplate) -> BulkAcceptance:
        """Send one bulk through ``POST /messages-api/1/messages``, with the rule of
        :meth:`send_advanced_bulk`: never retried after an ambiguous failure
        (:class:`OmniSendUncertainError` with ``bulk_id``), and the answer must list the bulk id and
        exactly the bulk's message ids.

        :param bulk: the bulk, planned and validated as for OMNI.
        :param template: the send's request without destinations (:func:`~airflow_provider_omni.
            messages_api.message_template`).
        """
        info = self._info("POST", MESSAGES_PATH, idempotent=False, bulk_id=bulk.bulk_id)
        content = self._request_content(
            info, data=messages_api.bulk_body(template, bulk), read=raw_body, messages=bulk.size
        )
        return self._messages_api_acceptance(content, info, bulk)

    def send_messages_api(
        self, request: OmniAdvancedRequest | Mapping[str, Any], senders: Senders
    ) -> BulkAcceptance:
        """Send one message (an OMNI request: ``viber``, ``sms``, destinations, a ``bulk_id``) through the
        Messages API, validated first, with the rule of :meth:`send_messages_api_bulk`.

        :param request: the message, as for :meth:`send_advanced` (it must have a ``bulk_id``).
        :param senders: the sender of each step (:meth:`senders`).
        """
        bulk, template = self._messages_api_request(request, senders)
        return self.send_messages_api_bulk(bulk, template)

    async def asend_messages_api(
        self, request: OmniAdvancedRequest | Mapping[str, Any], senders: Senders
    ) -> BulkAcceptance:
        """Async :meth:`send_messages_api` (httpx), for notifiers run by the triggerer."""
        await self._asettings()
        bulk, template = self._messages_api_request(request, senders)
        info = self._info("POST", MESSAGES_PATH, idempotent=False, bulk_id=bulk.bulk_id)
        content = await self._arequest_content(
            info, data=messages_api.bulk_body(template, bulk), read=raw_body
        )
        return self._messages_api_acceptance(content, info, bulk)

    def _messages_api_request(
        self, request: OmniAdvancedRequest | Mapping[str, Any], senders: Senders
    ) -> tuple[AdvancedBulk, MessageTemplate]:
        message, _, _ = self._prepare_send(request)
        if not message.bulk_id:
            raise OmniValidationError(
                "bulk_id: needed for a Messages API send (it names the request if the answer is lost)",
                validation_errors={"bulk_id": ["required"]},
            )
        fields = AdvancedBulk.fields_of(message)
        fields.pop("scenarioKey", None)
        template = messages_api.message_template(fields, senders)
        destinations = [to_payload(d) for d in message.destinations]
        return AdvancedBulk.build(fields, message.bulk_id, destinations), template  # type: ignore[arg-type]

    def _messages_api_acceptance(
        self, content: bytes, info: RequestInfo, bulk: AdvancedBulk
    ) -> BulkAcceptance:
        """Check the answer like OMNI's, but an answer without ``bulkId`` (optional in this API's
        document) is matched by its message ids alone."""
        try:
            acceptance = messages_api.acceptance_from_json(content)
        except ValidationError:
            return self._read_acceptance(content, info)  # raises, saying why
        if acceptance.bulk_id is None and acceptance.messages:
            acceptance = replace(acceptance, bulk_id=bulk.bulk_id)
        problem = acceptance.mismatch(bulk)
        if problem:
            raise self._unmatched_answer(info, problem)
        return acceptance

    def validate_messages_api(self, template: MessageTemplate, bulk: AdvancedBulk) -> dict[str, Any]:
        """Check one bulk with ``POST /messages-api/1/messages/validate`` (Infobip's deep check of every
        failover step; nothing is sent). Limited to 10 requests a second: validate once per send shape.

        :return: the answer (``description``, ``action``, ``skippableViolations``).
        :raises OmniValidationError: with Infobip's violations by field, when it would be refused.
        """
        info = self._info("POST", VALIDATE_PATH, idempotent=True)
        data: dict[str, Any] = self._request_content(
            info, data=messages_api.bulk_body(template, bulk), read=json_object
        )
        return data

    def get_messages_api_reports(
        self, bulk_id: str | None = None, message_id: str | None = None, limit: int = MAX_RESULTS
    ) -> list[DeliveryReport]:
        """Pull Messages API delivery reports (one GET), read as OMNI reports (``to``, ``VIBER``).

        Handed out once and never again (this API has no logs): keep what you get.

        :param bulk_id: only this bulk's reports (always filter).
        :param message_id: only this message's reports.
        :param limit: at most this many (1 .. 1000).
        """
        params = reports_params(bulk_id, message_id, limit, None)
        data = self._request("GET", MESSAGES_REPORTS_PATH, params=params, read=results_object)
        return self._messages_api_reports(data, bulk_id, message_id)

    async def aget_messages_api_reports(
        self, bulk_id: str | None = None, message_id: str | None = None, limit: int = MAX_RESULTS
    ) -> list[DeliveryReport]:
        """Async :meth:`get_messages_api_reports` (httpx), for triggers."""
        params = reports_params(bulk_id, message_id, limit, None)
        data = await self._arequest(MESSAGES_REPORTS_PATH, params, results_object)
        return self._messages_api_reports(data, bulk_id, message_id)

    def _messages_api_reports(
        self, data: dict[str, Any], bulk_id: str | None, message_id: str | None
    ) -> list[DeliveryReport]:
        try:
            reports = messages_api.reports_from_json(data, bulk_id)
        except ValidationError as err:
            raise OmniServerError(
                f"Infobip's answer to GET {MESSAGES_REPORTS_PATH} has {err.error_count()} unreadable "
                "field(s); the reports it held are consumed and cannot be read again"
            ) from None
        self.log.debug(
            "Pulled %d Messages API report(s) (bulkId %s, messageId %s)", len(reports), bulk_id, message_id
        )
        return reports

    # -- reports and logs ---------------------------------------------------------------------

    def get_reports(
        self,
        bulk_id: str | None = None,
        message_id: str | None = None,
        limit: int = MAX_RESULTS,
        channel: OmniChannel | str | None = None,
    ) -> list[DeliveryReport]:
        """Pull delivery reports (one GET). Infobip hands each report out only once: keep them.

        :param bulk_id: only the reports of this bulk (always filter: reports are consumed).
        :param message_id: only the report of this message.
        :param limit: at most this many (1 .. 1000).
        :param channel: only reports of this channel.
        """
        params = reports_params(bulk_id, message_id, limit, channel)
        data = self._request("GET", REPORTS_PATH, params=params, read=results_object)
        reports = _parse(DeliveryReports, data, self._info("GET", REPORTS_PATH)).results
        self.log.debug(
            "Pulled %d delivery report(s) (bulkId %s, messageId %s)", len(reports), bulk_id, message_id
        )
        return reports

    def get_logs(
        self,
        *,
        bulk_id: str | Sequence[str] | None = None,
        message_id: str | Sequence[str] | None = None,
        sender: str | None = None,
        to: str | None = None,
        general_status: GeneralStatus | str | None = None,
        channel: OmniChannel | str | None = None,
        sent_since: datetime | str | None = None,
        sent_until: datetime | str | None = None,
        limit: int = MAX_RESULTS,
        mcc: str | None = None,
        mnc: str | None = None,
    ) -> list[OmniLog]:
        """Read message logs (re-readable for 48 h, 120 requests per minute, no paging).

        :param bulk_id: one or several bulk ids (sent as repeated ``bulkId`` parameters).
        :param message_id: one or several message ids (repeated ``messageId``).
        :param sender: the ``from`` filter.
        :param to: the destination filter.
        :param general_status: ``ACCEPTED``, ``PENDING``, ``UNDELIVERABLE``, ``DELIVERED``, ``EXPIRED``
            or ``REJECTED`` (enum or text).
        :param channel: the channel filter (enum or text).
        :param sent_since: lower bound of the send time (aware datetime, or Infobip-formatted text).
        :param sent_until: upper bound of the send time.
        :param limit: at most this many rows (1 .. 1000).
        :param mcc: mobile country code.
        :param mnc: mobile network code.
        """
        params = logs_params(
            bulk_id=bulk_id,
            message_id=message_id,
            sender=sender,
            to=to,
            general_status=general_status,
            channel=channel,
            sent_since=sent_since,
            sent_until=sent_until,
            limit=limit,
            mcc=mcc,
            mnc=mnc,
        )
        data = self._request("GET", LOGS_PATH, params=params, read=results_object)
        return _parse(OmniLogsResponse, data, self._info("GET", LOGS_PATH)).results

    def get_logged_messages(
        self,
        *,
        bulk_id: str | Sequence[str] | None = None,
        message_id: str | Sequence[str] | None = None,
        limit: int = MAX_RESULTS,
    ) -> list[LoggedMessage]:
        """Which messages of these bulks (or message ids) Infobip logged, compactly: message id, bulk
        id, destination and status of each :meth:`get_logs` row, with no model per row (what a send
        looks up after an ambiguous failure, and on a retry without records).

        :param bulk_id: one or several bulk ids.
        :param message_id: one or several message ids.
        :param limit: at most this many rows (1 .. 1000).
        """
        params = logs_params(bulk_id=bulk_id, message_id=message_id, limit=limit)
        return self._request_content(self._info("GET", LOGS_PATH), params=params, read=_logged_messages)

    async def aget_reports(
        self,
        bulk_id: str | None = None,
        message_id: str | None = None,
        limit: int = MAX_RESULTS,
        channel: OmniChannel | str | None = None,
    ) -> list[DeliveryReport]:
        """Async :meth:`get_reports` (httpx), for triggers."""
        params = reports_params(bulk_id, message_id, limit, channel)
        data = await self._arequest(REPORTS_PATH, params, results_object)
        return _parse(DeliveryReports, data, self._info("GET", REPORTS_PATH)).results

    async def aget_logs(
        self,
        *,
        bulk_id: str | Sequence[str] | None = None,
        message_id: str | Sequence[str] | None = None,
        sender: str | None = None,
        to: str | None = None,
        general_status: GeneralStatus | str | None = None,
        channel: OmniChannel | str | None = None,
        sent_since: datetime | str | None = None,
        sent_until: datetime | str | None = None,
        limit: int = MAX_RESULTS,
        mcc: str | None = None,
        mnc: str | None = None,
    ) -> list[OmniLog]:
        """Async :meth:`get_logs` (httpx), for triggers."""
        params = logs_params(
            bulk_id=bulk_id,
            message_id=message_id,
            sender=sender,
            to=to,
            general_status=general_status,
            channel=channel,
            sent_since=sent_since,
            sent_until=sent_until,
            limit=limit,
            mcc=mcc,
            mnc=mnc,
        )
        data = await self._arequest(LOGS_PATH, params, results_object)
        return _parse(OmniLogsResponse, data, self._info("GET", LOGS_PATH)).results

    # -- connection test and UI form ----------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """Make one cheap authenticated call and never raise: ``GET /omni/1/scenarios?limit=1``, or on
        the Messages API backend ``GET /messages-api/1/reports`` filtered by a message id no send uses
        (so that it consumes no report)."""
        try:
            self._settings = None
            self.__dict__.pop("session", None)
            if self.backend is Backend.MESSAGES_API:
                self.get_messages_api_reports(message_id=_CONNECTION_TEST_MESSAGE_ID, limit=1)
                found = "the Messages API answers"
            else:
                found = f"{len(self.list_scenarios(limit=1))} scenario(s) visible"
        except OmniError as err:
            return False, self._scrub(str(err))
        except Exception as err:
            return False, self._scrub(f"{type(err).__name__}: {err}")
        proxy = self.settings.proxy_display
        through = f" through the proxy {proxy}" if proxy else ""
        return True, f"Connected to {self.base_url}{through}: {found}"

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra fields of the connection form for Airflow <= 3.1 (3.2+ reads ``conn-fields``)."""
        from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import BooleanField, IntegerField, PasswordField, StringField

        # any_of (not AnyOf): Airflow 3.0/3.1 turn these widgets into the React form with wtforms mocked,
        # and read the choices from a patched ``wtforms.validators.any_of``.
        from wtforms.validators import NumberRange, Optional, Regexp, any_of

        # Airflow 2's Test button sends a ticked checkbox's value attribute as the extra, and wtforms'
        # default is "y", which the hook refuses; "true" is read by both the hook and wtforms. Only the
        # real field takes render_kw (the 3.0/3.1 stand-ins accept no such argument).
        checkbox: dict[str, Any] = {}
        if getattr(BooleanField, "__module__", "").startswith("wtforms"):
            checkbox = {"render_kw": {"value": "true"}}

        widgets: dict[str, Any] = {}
        for name, spec in CONN_FIELDS.items():
            schema = spec["schema"]
            kind = next(t for t in schema["type"] if t != "null")
            common = {"description": spec.get("description", ""), "default": schema.get("default")}
            label = lazy_gettext(spec["label"])
            if kind == "boolean":
                widgets[name] = BooleanField(label, **common, **checkbox)
            elif schema.get("format") == "password":
                widgets[name] = PasswordField(
                    label, widget=BS3PasswordFieldWidget(), validators=[Optional()], **common
                )
            elif kind == "integer":
                limits = NumberRange(min=schema.get("minimum"), max=schema.get("maximum"))
                widgets[name] = IntegerField(
                    label, widget=BS3TextFieldWidget(), validators=[Optional(), limits], **common
                )
            else:
                validators: list[Any] = [Optional()]
                if "enum" in schema:
                    validators.append(any_of(schema["enum"]))
                if "pattern" in schema:
                    validators.append(Regexp(schema["pattern"]))
                widgets[name] = StringField(
                    label, widget=BS3TextFieldWidget(), validators=validators, **common
                )
        return widgets

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Standard form fields: hidden, relabelled, placeholders (legacy key names)."""
        return {
            "hidden_fields": list(UI_FIELD_BEHAVIOUR["hidden-fields"]),
            "relabeling": dict(UI_FIELD_BEHAVIOUR["relabeling"]),
            "placeholders": dict(UI_FIELD_BEHAVIOUR["placeholders"]),
        }


def _look_up_advice(info: RequestInfo) -> str:
    if info.path == MESSAGES_PATH:
        return (
            f"The Messages API has no logs: check its reports or the Infobip portal by bulkId "
            f"{info.bulk_id!r} before sending again."
        )
    return f"Check GET /omni/1/logs by bulkId {info.bulk_id!r} before sending again."


def _tls_verification(settings: ConnectionSettings) -> ssl.SSLContext | bool:
    """Return httpx's ``verify`` for the connection: False, or an SSL context trusting the CA bundle
    (or the default store, ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` honoured as httpx does).

    The context is shared by every hook of the process with the same trust (a triggerer runs a hook
    per wait, and a context holding the system's CA store takes about half a MiB); a CA bundle that
    changes on disk gets a new one."""
    if not settings.verify_ssl:
        return False
    if settings.ca_bundle:
        try:
            stat = os.stat(settings.ca_bundle)
            version: tuple[float, int] = (stat.st_mtime, stat.st_size)
        except OSError:
            version = (0.0, -1)  # let ssl raise its own error, naming the file
        return _shared_tls_context(settings.ca_bundle, version, None, None)
    return _shared_tls_context(None, None, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=8)
def _shared_tls_context(
    ca_bundle: str | None, version: tuple[float, int] | None, cert_file: str | None, cert_dir: str | None
) -> ssl.SSLContext:
    """One SSL context per trust (a CA bundle and its version, or the environment's store)."""
    if ca_bundle:
        return ssl.create_default_context(cafile=ca_bundle)
    return httpx.create_ssl_context(verify=True, trust_env=True)


def _flow_text(flow: Sequence[Step]) -> str:
    return " -> ".join(f"{s.channel.value}({s.sender or '-'})" for s in flow)


def _read_token(content: bytes) -> OAuthToken:
    """Read the token endpoint's 2xx answer; :class:`BadAnswer` when it holds no usable token.

    The reasons never quote the body: a gateway may echo the form, client secret included.
    """
    data = json_object(content)
    try:
        token = OAuthToken.model_validate(data)
    except ValidationError:
        raise BadAnswer("an object without a usable access_token") from None
    if not token.access_token or any(unicodedata.category(c)[0] in "CZ" for c in token.access_token):
        raise BadAnswer("an access token that cannot be sent in a header (empty, space or control character)")
    return token


async def _get_async_connection(conn_id: str) -> Connection:
    """Fetch the connection without blocking the event loop (compat helper when available)."""
    try:
        from airflow.providers.common.compat.connection import get_async_connection
    except ImportError:  # pragma: no cover - compat provider without the helper
        return await BaseHook.aget_connection(conn_id)
    return await get_async_connection(conn_id)


async def _get_async_extra(conn: Connection) -> dict[str, Any]:
    try:
        from airflow.providers.common.compat.connection import get_async_extra_dejson
    except ImportError:  # pragma: no cover
        return conn.extra_dejson
    return await get_async_extra_dejson(conn)
