"""Retry policy and error mapping shared by the sync (requests) and async (httpx) paths of the hook.

The retry rule, in one place:

* A request is retried (exponential backoff with jitter, up to ``max_retries`` times) when it
  certainly had no effect, or when repeating it is harmless:

  - the connection could not be opened (refused, DNS, connect timeout): nothing was sent;
  - Infobip answered 429: the request was refused before processing, whatever the method
    (``Retry-After`` is honoured, capped);
  - GET and PUT (idempotent) also on 5xx, read timeouts and connections dropped mid-request.

* A non-idempotent POST is never retried after an *ambiguous* failure (5xx, read timeout,
  connection dropped after the request was written): Infobip may have processed it. For
  ``POST /omni/1/advanced`` this raises :class:`OmniSendUncertainError`; the caller must look the
  bulk id up in ``/omni/1/logs`` before sending again.

* 400, 401, 403 and 404 are never retried: repeating them cannot help.

* Redirects are never followed (on either path): a 3xx means the request was not processed, and
  raises :class:`OmniConfigurationError` naming the redirect target. A 2xx whose body is not what
  the endpoint returns (empty, not JSON, not an object, no ``results`` list) is a server error,
  retried like a 5xx when the request is idempotent. A request that cannot even be built (a bad
  URL or header value) raises :class:`OmniConfigurationError`: nothing was sent.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar
from urllib.parse import urljoin, urlsplit

from pydantic import ValidationError

from airflow_provider_omni.backoff import jittered_backoff
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
from airflow_provider_omni.models import ApiError
from airflow_provider_omni.privacy import shorten_numbers

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

T = TypeVar("T")

SEND_PATH = "/omni/1/advanced"
#: The Messages API's send: the same never-retried-after-ambiguity rule as OMNI's.
MESSAGES_SEND_PATH = "/messages-api/1/messages"
RETRY_AFTER_CAP = 60.0
BACKOFF_BASE = 0.5
BACKOFF_MAX = 30.0


def parse_retry_after(value: str | None) -> float | None:
    """Return the seconds of a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, and how long a ``Retry-After`` may make us wait."""

    max_retries: int
    backoff_base: float = BACKOFF_BASE
    backoff_max: float = BACKOFF_MAX
    retry_after_cap: float = RETRY_AFTER_CAP

    def delay(self, retry_number: int, retry_after: float | None = None) -> float:
        """Return the seconds to wait before retry ``retry_number`` (0-based).

        ``Retry-After`` wins when given (capped at ``retry_after_cap``); otherwise
        ``base * 2**n`` capped at ``backoff_max``, of which a random half is jitter.
        """
        if retry_after is not None:
            return min(retry_after, self.retry_after_cap)
        return jittered_backoff(retry_number, base=self.backoff_base, cap=self.backoff_max)


_QUERY_RE = re.compile(r"\?[^\s)'\"]*")


def describe_exception(error: BaseException) -> str:
    """Return ``Type: message`` of a transport error with URL query strings removed (they may hold
    phone numbers)."""
    return f"{type(error).__name__}: {_QUERY_RE.sub('?...', str(error))}"


def redact(text: str, secrets: list[str]) -> str:
    """Replace every secret in ``text`` with ``***`` (longest first, so that no part of one is left)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return text


class BadAnswer(Exception):
    """A 2xx answer whose body is not what the endpoint returns; the message says how."""


def json_object(content: bytes) -> dict[str, Any]:
    """Return the JSON object of a 2xx answer; raise :class:`BadAnswer` for anything else."""
    if not content.strip():
        raise BadAnswer("an empty body")
    try:
        data = json.loads(content)
    except ValueError:
        raise BadAnswer("a body that is not JSON") from None
    if not isinstance(data, dict):
        raise BadAnswer(f"a JSON {type(data).__name__} instead of an object")
    if "requestError" in data:
        raise BadAnswer("an error body (requestError)")
    return data


def results_object(content: bytes) -> dict[str, Any]:
    """Return the JSON object of a reports or logs answer, which must carry a ``results`` list."""
    data = json_object(content)
    if not isinstance(data.get("results"), list):
        raise BadAnswer("an object without a 'results' list")
    return data


def raw_body(content: bytes) -> bytes:
    """Return the answer as it is (a send checks its answer itself)."""
    return content


@dataclass(frozen=True)
class Retry:
    """Wait this many seconds, then repeat the request."""

    delay: float


def parse_error_body(body: bytes | str) -> ApiError | None:
    """Parse an Infobip error body (either envelope); None when it is not JSON or not an object."""
    try:
        data = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    try:
        return ApiError.model_validate(data)
    except ValidationError:
        return None


_SCOPES = {
    "/omni/1/scenarios": "omni-failover:manage",
    "/omni/1/advanced": "message:send or omni-failover:message:send",
    "/omni/1/reports": "message:send or omni-failover:message:send",
    "/omni/1/logs": "omni-failover:logs:read or omni-failover:manage",
    "/messages-api/1/": "message:send, messages-api:message:send or messages-api:manage",
}


def _scope_for(path: str) -> str:
    for prefix, scope in _SCOPES.items():
        if path.startswith(prefix):
            return scope
    return "omni-failover:*"


@dataclass(frozen=True)
class RequestInfo:
    """What is being requested, for messages and for the retry decision."""

    method: str
    path: str
    base_url: str
    conn_id: str
    auth_type: str
    idempotent: bool
    bulk_id: str | None = None
    show_full_numbers: bool = False

    @property
    def is_send(self) -> bool:
        return self.method == "POST" and self.path in (SEND_PATH, MESSAGES_SEND_PATH)

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"


def _body_summary(api_error: ApiError | None, body: bytes | str) -> tuple[str | None, str]:
    if api_error is not None and (api_error.code or api_error.text):
        return api_error.code, ": ".join(p for p in (api_error.code, api_error.text) if p)
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join(text.split())
    return None, (text[:200] + "...") if len(text) > 200 else (text or "no body")


def _numbers_hidden(info: RequestInfo, text: str) -> str:
    return text if info.show_full_numbers else shorten_numbers(text)


def redirect_error(info: RequestInfo, status: int, location: str | None) -> OmniConfigurationError:
    """Return the error for a 3xx: the request was not processed; name where the base URL points.

    The target is shown as scheme, host and path: its query string may hold phone numbers.
    """
    where = f"{info.label} on {info.base_url}"
    if not location or not location.strip():
        return OmniConfigurationError(
            f"Infobip did not process {where}: it answered {status} (a redirect) without a Location. "
            f"Check that the Host of connection {info.conn_id!r} is your personal base URL "
            "(xxxxx.api.infobip.com, shown in the Infobip portal).",
            status_code=status,
        )
    target = urlsplit(urljoin(info.base_url + info.path, location.strip()))
    origin = f"{target.scheme}://{target.netloc.rpartition('@')[2]}"
    path = target.path
    base_url = origin + (path[: -len(info.path)] if path.endswith(info.path) else "")
    return OmniConfigurationError(
        f"Infobip did not process {where}: it answered {status} (a redirect) to {origin}{path}. "
        "Redirects are not followed (a redirected POST would be lost or sent again as a GET). "
        f"Set the Host of connection {info.conn_id!r} to {base_url.rstrip('/') or origin}.",
        status_code=status,
    )


def error_for_status(
    info: RequestInfo,
    status: int,
    body: bytes | str,
    retry_after: float | None,
    location: str | None = None,
) -> OmniError:
    """Map an HTTP error answer to the provider's exception, with a message that says what to fix.

    Phone numbers in Infobip's text are shortened unless the connection shows full numbers.
    """
    if 300 <= status < 400:
        return redirect_error(info, status, location)
    api_error = parse_error_body(body)
    code, summary = _body_summary(api_error, body)
    summary = _numbers_hidden(info, summary)
    where = f"{info.label} on {info.base_url}"
    if status == 400:
        errors = {
            field: [_numbers_hidden(info, msg) for msg in msgs]
            for field, msgs in (api_error.validation_errors if api_error else {}).items()
        }
        details = "; ".join(f"{field}: {', '.join(msgs)}" for field, msgs in errors.items())
        message = f"Infobip rejected {where} as invalid (400 {summary})"
        return OmniValidationError(
            f"{message}: {details}" if details else message,
            validation_errors=errors,
            status_code=status,
            error_code=code,
        )
    if status == 401:
        return OmniAuthError(_unauthorized_message(info, summary), status_code=status, error_code=code)
    if status == 403:
        return OmniAuthError(
            f"Infobip refused {where} (403 {summary}): the credentials of connection {info.conn_id!r} "
            f"are valid but lack the scope {_scope_for(info.path)}. Give the API key that scope in "
            "the Infobip portal (API keys > scopes), or use another key.",
            status_code=status,
            error_code=code,
        )
    if status == 407:
        return OmniConfigurationError(
            f"The proxy refused {where} (407 Proxy Authentication Required); nothing reached Infobip. "
            f"Check the proxy user and password of connection {info.conn_id!r} (extras proxy_url and "
            "proxy_password) or of the HTTP_PROXY / HTTPS_PROXY environment variable.",
            status_code=status,
        )
    if status == 404:
        return OmniNotFoundError(f"Not found: {where} (404 {summary})", status_code=status, error_code=code)
    if status == 429:
        wait = f"; Infobip asked to wait {retry_after:g} s" if retry_after is not None else ""
        return OmniRateLimitError(
            f"Rate limited by Infobip on {where} (429 {summary}){wait}. Scenario creation is limited to "
            "20 and updates to 40 per 10 minutes, logs to 120 per minute.",
            retry_after=retry_after,
            status_code=status,
            error_code=code,
        )
    if status >= 500:
        return server_error(info, f"Infobip answered {status} ({summary})", status_code=status, code=code)
    return OmniError(f"Unexpected answer to {where}: {status} {summary}", status_code=status, error_code=code)


def _unauthorized_message(info: RequestInfo, summary: str) -> str:
    if info.auth_type == "api_key":
        fix = (
            "check the API key in the Password field: it may be mistyped, revoked or expired (Infobip "
            "API keys carry an expiry date)"
        )
    elif info.auth_type == "basic":
        fix = "check the username (Login) and password (Password)"
    else:
        fix = "check the OAuth2 client id (Login) and client secret (Password)"
    return (
        f"Infobip refused the credentials of connection {info.conn_id!r} for {info.label} (401 {summary}): "
        f"{fix}. Also check that the Base URL {info.base_url} is your account's personal base URL "
        f"(xxxxx.api.infobip.com, shown in the Infobip portal) and that the key has the scope "
        f"{_scope_for(info.path)}."
    )


def server_error(
    info: RequestInfo, what: str, *, status_code: int | None = None, code: str | None = None
) -> OmniError:
    """Return the error for a 5xx or a transport failure, uncertain for a send."""
    if info.is_send:
        bulk = f"bulkId {info.bulk_id!r}" if info.bulk_id else "its message ids"
        check = (
            f"The Messages API has no logs to look it up in: check its delivery reports or the Infobip "
            f"portal by {bulk} before sending again."
            if info.path == MESSAGES_SEND_PATH
            else f"Check GET /omni/1/logs by {bulk} before sending again."
        )
        return OmniSendUncertainError(
            f"{what} while sending {info.label} on {info.base_url}: the message MAY have been sent. "
            f"It was not retried, to avoid a duplicate. {check}",
            bulk_id=info.bulk_id,
            status_code=status_code,
            error_code=code,
        )
    if info.method == "POST" and not info.idempotent:
        return OmniServerError(
            f"{what} on {info.label} ({info.base_url}); it was not retried because it may have been "
            "processed. List the scenarios before creating it again.",
            status_code=status_code,
            error_code=code,
        )
    return OmniServerError(
        f"{what} on {info.label} ({info.base_url})", status_code=status_code, error_code=code
    )


def _refused_by_proxy(error: BaseException) -> bool:
    """Tell whether the proxy refused its credentials to open an https:// tunnel (requests' and httpx's
    ``ProxyError`` carry the proxy's ``407 Proxy Authentication Required``)."""
    return type(error).__name__ == "ProxyError" and "407 Proxy Authentication Required" in str(error)


def is_retryable_status(info: RequestInfo, status: int) -> bool:
    """429 always (nothing was processed); 5xx only for idempotent requests."""
    return status == 429 or (status >= 500 and info.idempotent)


class Attempts:
    """Counts the attempts of one request and decides, after each failure, whether to wait and retry.

    :param info: the request.
    :param policy: the retry policy.
    :param logger: where retries are logged.
    :param redactor: removes secrets from an exception message before it is raised.
    """

    def __init__(
        self,
        info: RequestInfo,
        policy: RetryPolicy,
        logger: logging.Logger | Any,
        redactor: Callable[[str], str] | None = None,
    ) -> None:
        self.info = info
        self.redactor = redactor or (lambda text: text)
        self.policy = policy
        self.logger = logger
        self.retries = 0

    def _retry_or_raise(
        self, error: OmniError, retryable: bool, retry_after: float | None, reason: str
    ) -> float:
        if not retryable or self.retries >= self.policy.max_retries:
            message = str(error.args[0]) if error.args else type(error).__name__
            if retryable and self.retries:
                message = f"{message} (gave up after {self.retries + 1} attempts)"
            error.args = (_numbers_hidden(self.info, self.redactor(message)),)
            # No chained context: the library's exception may quote a secret in a form we missed.
            raise error from None
        delay = self.policy.delay(self.retries, retry_after)
        self.retries += 1
        self.logger.warning(
            "%s failed (%s); retry %d of %d in %.1f s",
            self.info.label,
            reason,
            self.retries,
            self.policy.max_retries,
            delay,
        )
        return delay

    def after_answer(
        self, status: int, content: bytes, headers: Mapping[str, str], read: Callable[[bytes], T]
    ) -> T | Retry:
        """Return what ``read`` makes of a 2xx answer, or how long to wait before retrying; or raise.

        The one rule for every status, on the sync and the async path alike: 2xx is read (a body
        ``read`` refuses is a server error), anything else goes to :meth:`after_status`.
        """
        if 200 <= status < 300:
            try:
                return read(content)
            except BadAnswer as bad:
                return Retry(self.after_bad_answer(status, str(bad)))
        return Retry(self.after_status(status, content, headers.get("Retry-After"), headers.get("Location")))

    def after_status(
        self,
        status: int,
        body: bytes | str,
        retry_after_header: str | None,
        location: str | None = None,
    ) -> float:
        """Return the seconds to wait before retrying an error answer, or raise its exception."""
        retry_after = parse_retry_after(retry_after_header)
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        # Secrets out before the body is summarized (cut at 200 characters, whitespace collapsed).
        error = error_for_status(self.info, status, self.redactor(text), retry_after, location)
        return self._retry_or_raise(
            error, is_retryable_status(self.info, status), retry_after, f"HTTP {status}"
        )

    def after_bad_answer(self, status: int, reason: str) -> float:
        """Return the seconds to wait before retrying a 2xx with an unusable body, or raise.

        Retried like a 5xx: only when the request is idempotent.
        """
        error = server_error(self.info, f"Infobip answered {status} with {reason}", status_code=status)
        return self._retry_or_raise(error, self.info.idempotent, None, f"HTTP {status} with {reason}")

    def after_local_error(self, error: BaseException, *, show_message: bool) -> NoReturn:
        """Raise :class:`OmniConfigurationError` for a request that could not be built: nothing was
        sent, and repeating it cannot help.

        :param show_message: quote the library's message (a URL error); False for a header error,
            whose message quotes the header value.
        """
        name = type(error).__name__
        detail = describe_exception(error) if show_message else f"{name}: an invalid header value"
        failure = OmniConfigurationError(
            f"Could not build the request {self.info.label} to {self.info.base_url} ({detail}); nothing "
            f"was sent. Check connection {self.info.conn_id!r}: its Host must be an http:// or https:// "
            "URL, and its Login and Password must not contain line breaks or control characters."
        )
        self._retry_or_raise(failure, False, None, name)
        raise AssertionError("unreachable")  # pragma: no cover

    def after_transport_error(self, error: BaseException, *, sent: bool) -> float:
        """Return the seconds to wait before retrying a transport failure, or raise.

        :param sent: False when the connection was never opened (nothing left this machine);
            True when the request may have reached Infobip (read timeout, dropped connection).
        """
        if not sent and _refused_by_proxy(error):
            return self.after_status(407, b"", None)  # raises: retrying cannot help
        description = describe_exception(error)
        if not sent:
            failure = OmniServerError(
                f"Could not connect to {self.info.base_url} for {self.info.label} ({description}). "
                "Check the Base URL of the connection, its proxy (extra proxy_url, or HTTPS_PROXY / "
                "NO_PROXY) and the network."
            )
            return self._retry_or_raise(failure, True, None, type(error).__name__)
        uncertain = server_error(self.info, f"The request failed without an answer ({description})")
        return self._retry_or_raise(uncertain, self.info.idempotent, None, type(error).__name__)
