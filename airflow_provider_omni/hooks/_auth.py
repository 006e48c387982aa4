"""Connection settings and authentication of the OMNI hook (no I/O here).

Three schemes are supported, chosen by the connection extra ``auth_type``:

* ``api_key`` (default): ``Authorization: App <key>``, the key in the Password field;
* ``basic``: ``Authorization: Basic base64(login:password)``;
* ``oauth2``: client credentials; the hook fetches a token from ``/auth/1/oauth2/token`` on the
  same base URL and sends ``Authorization: Bearer <token>``. :class:`TokenCache` keeps it until
  shortly before it expires.
"""

from __future__ import annotations

import base64
import json
import re
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus, unquote, urlsplit

from airflow_provider_omni.exceptions import OmniConfigurationError
from airflow_provider_omni.get_provider_info import CONN_FIELDS, CONNECTION_TYPE

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_omni.models import OAuthToken

AUTH_API_KEY = "api_key"
AUTH_BASIC = "basic"
AUTH_OAUTH2 = "oauth2"
AUTH_TYPES = (AUTH_API_KEY, AUTH_BASIC, AUTH_OAUTH2)

DEFAULT_BASE_URL = "https://api.infobip.com"
TOKEN_PATH = "/auth/1/oauth2/token"
#: Refresh an OAuth2 token this many seconds before Infobip says it expires.
TOKEN_REFRESH_MARGIN = 60.0

_EXTRA_PREFIX = f"extra__{CONNECTION_TYPE}__"


def _clock() -> float:
    """Monotonic seconds; a module function so that tests can move time forward."""
    return time.monotonic()


def normalize_base_url(host: str | None, *, scheme: str | None = None, port: int | None = None) -> str:
    """Return the base URL with a scheme and without a trailing slash.

    ``xxxxx.api.infobip.com`` becomes ``https://xxxxx.api.infobip.com``; ``http://127.0.0.1:8080``
    (a local sandbox) is kept as it is.

    :param host: the connection's host, with or without scheme.
    :param scheme: ``http`` or ``https`` when the host has none (the connection's schema field).
    :param port: the connection's port, used when the host names none.
    """
    host = (host or "").strip().rstrip("/")
    if not host:
        return DEFAULT_BASE_URL
    if "://" not in host:
        host = f"{scheme if scheme in ('http', 'https') else 'https'}://{host}"
    parts = urlsplit(host)
    if port and parts.port is None:
        host = f"{parts.scheme}://{parts.netloc}:{port}{parts.path}"
    return host.rstrip("/")


def _extra(extras: dict[str, Any], name: str) -> Any:
    value = extras.get(name)
    if value is None or value == "":
        value = extras.get(f"{_EXTRA_PREFIX}{name}")
    return None if value == "" else value


def _optional(value: Any, convert: Callable[[Any], str]) -> str | None:
    """Return ``convert(value)``, or None for an unset (None or blank) extra."""
    if value is None or not str(value).strip():
        return None
    return convert(value)


def _default(name: str) -> Any:
    return CONN_FIELDS[name]["schema"].get("default")


def parse_flag(value: Any) -> bool | None:
    """Read a flag given as a bool or as text (``true``/``1``/``yes``/``on`` or ``false``/``0``/``no``/
    ``off``, any case); None when it is neither."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    return None


def with_footer(text: str, footer: str | None) -> str:
    """Return ``text`` with ``footer`` on a new line (``text`` itself without a footer)."""
    return f"{text}\n{footer}" if footer else text


def _as_bool(value: Any, name: str) -> bool:
    flag = parse_flag(value)
    if flag is None:
        raise ValueError(f"connection extra {name!r} must be true or false, got {value!r}")
    return flag


def _as_number(value: Any, name: str, kind: type[float] | type[int]) -> float | int:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"connection extra {name!r} must be a number, got {value!r}") from None
    minimum = CONN_FIELDS[name]["schema"].get("minimum")
    maximum = CONN_FIELDS[name]["schema"].get("maximum")
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise ValueError(f"connection extra {name!r} is {number}; allowed: {minimum} .. {maximum}")
    return number


_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9_-]{1,24}$")


def _as_namespace(value: Any) -> str:
    text = str(value).strip()
    if not _NAMESPACE_RE.match(text):
        raise ValueError(
            "connection extra 'namespace' must be 1 to 24 letters, digits, '-' or '_' "
            f"(it becomes part of every bulk and message id), got {value!r}"
        )
    return text


PROXY_SCHEMES = ("http", "https")


def _as_proxy_url(value: Any) -> str:
    """Return the proxy URL (``http://user:password@proxy:3128``), checked; the message never quotes it
    (it may hold the proxy password)."""
    text = str(value).strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError("connection extra 'proxy_url' is not a URL (its port is not a number)") from None
    if parts.scheme not in PROXY_SCHEMES or not parts.hostname:
        raise ValueError(
            "connection extra 'proxy_url' must be an http:// or https:// URL with a host, e.g. "
            f"http://user:password@proxy.example.com:3128 (got a value with scheme {parts.scheme!r})"
        )
    if port is None:
        raise ValueError("connection extra 'proxy_url' must name the proxy's port, e.g. :3128")
    return text


def _proxy_url(url_value: Any, password: Any) -> str | None:
    """Return the proxy URL with the ``proxy_password`` extra put in, or None when there is no proxy."""
    url = _optional(url_value, _as_proxy_url)
    if password is None or password == "":
        return url
    if url is None:
        raise ValueError("connection extra 'proxy_password' is set but 'proxy_url' is empty")
    parts = urlsplit(url)
    if not parts.username:
        raise ValueError(
            "connection extra 'proxy_password' needs the proxy user in 'proxy_url' (http://user@proxy:3128)"
        )
    if parts.password is not None:
        raise ValueError(
            "connection extra 'proxy_url' already holds a password: leave 'proxy_password' empty or "
            "remove the password from the URL"
        )
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{parts.username}:{quote(str(password), safe='')}@{host}"
    return parts._replace(netloc=netloc).geturl()


_SENDERS = ("viber_sender", "sms_sender")


def _message_defaults(pick: Callable[[str], Any]) -> dict[str, Any]:
    """Read the extras that stand in for task arguments: default scenario, validities and footer."""
    key = _optional(pick("default_scenario_key"), lambda value: str(value).strip())
    name = _optional(pick("default_scenario_name"), lambda value: str(value).strip())
    if key and name:
        raise ValueError(
            "connection extras 'default_scenario_key' and 'default_scenario_name' are both set; keep one"
        )
    validities = {
        extra: _optional_int(pick(extra), extra)
        for extra in ("default_viber_validity_minutes", "default_sms_validity_minutes")
    }
    footer = pick("text_footer")
    backend = str(pick("backend") or "omni").strip().lower().replace("-", "_")
    if backend not in ("omni", "messages_api"):
        raise ValueError(f"connection extra 'backend' is {backend!r}; it must be 'omni' or 'messages_api'")
    senders = {name: _optional(pick(name), lambda value: str(value).strip()) for name in _SENDERS}
    return {
        "backend": backend,
        **senders,
        "default_scenario_key": key,
        "default_scenario_name": name,
        **validities,
        "text_footer": str(footer) if footer not in (None, "") else None,
    }


def _optional_int(value: Any, name: str) -> int | None:
    if value is None or not str(value).strip():
        return None
    return int(_as_number(value, name, int))


def _as_ca_bundle(value: Any) -> str:
    """Return the path of a readable CA bundle file (PEM)."""
    path = Path(str(value).strip()).expanduser()
    name = f"connection extra 'ca_bundle' ({str(path)!r})"
    if not path.is_file():
        raise ValueError(f"{name} is not a file on this machine")
    try:
        with path.open("rb") as bundle:
            text = bundle.read()
    except OSError as err:
        raise ValueError(f"{name} cannot be read: {err.strerror}") from None
    if b"-----BEGIN CERTIFICATE-----" not in text:
        raise ValueError(f"{name} holds no PEM certificate ('-----BEGIN CERTIFICATE-----')")
    return str(path)


def proxy_secrets(proxy_url: str | None) -> list[str]:
    """Return the proxy password (as written and decoded, every escaped form) and the whole URL."""
    if not proxy_url:
        return []
    password = urlsplit(proxy_url).password
    if not password:
        return []
    return list(dict.fromkeys([*secret_forms(password), *secret_forms(unquote(password)), proxy_url]))


#: Unicode categories of characters that cannot be part of a credential: control characters (CR, LF,
#: TAB, NUL, DEL, ...) and the line and paragraph separators.
_CONTROL_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})
_PRINTABLE_ASCII_RE = re.compile(r"^[\x20-\x7e]*$")


def _field_name(field_name: str, auth_type: str) -> str:
    """Name a connection field the way the connection form shows it."""
    if field_name == "login":
        return "the Login field (" + ("username" if auth_type == AUTH_BASIC else "OAuth2 client id") + ")"
    what = {AUTH_API_KEY: "API key", AUTH_BASIC: "password", AUTH_OAUTH2: "client secret"}[auth_type]
    return f"the Password field ({what})"


def clean_credential(
    value: str | None, *, field_name: str, auth_type: str, conn_id: str, header_value: bool = False
) -> str | None:
    """Return a credential without surrounding whitespace (a key pasted with its newline), or None.

    :param value: the Login or Password field.
    :param field_name: ``login`` or ``password``, to name the field in the error.
    :param auth_type: the connection's auth type, to name what the field holds.
    :param conn_id: the connection id, to name it in the error.
    :param header_value: the credential is sent as it is in an HTTP header (an API key), so it must
        be printable ASCII.
    :raises OmniConfigurationError: a line break or control character remains inside, or (for a
        header value) a character an HTTP header cannot carry. The message never shows the value.
    """
    if value is None:
        return None
    cleaned = value.strip()
    if any(unicodedata.category(char) in _CONTROL_CATEGORIES for char in cleaned):
        raise OmniConfigurationError(
            f"{_field_name(field_name, auth_type)} of connection {conn_id!r} contains a line break or "
            "control character. Re-enter the value without it (a secret copied from a file or secret "
            "backend often carries one)."
        )
    if header_value and not _PRINTABLE_ASCII_RE.match(cleaned):
        raise OmniConfigurationError(
            f"{_field_name(field_name, auth_type)} of connection {conn_id!r} contains a character that "
            "an HTTP header cannot carry (only printable ASCII is allowed). Re-enter the value."
        )
    return cleaned or None


def _lowercase_percent_escapes(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda match: match.group().lower(), text)


def secret_forms(secret: str | None) -> list[str]:
    """Return ``secret`` and every escaped form in which a library or a server may print it.

    The raw value, its ``repr`` and ``unicode_escape`` forms (how requests and httpx quote a bad
    header value), its bytes ``repr`` (``b'...'``), its JSON-escaped forms, and its URL-encoded
    forms (an OAuth2 token endpoint echoing the form body), each once.
    """
    if not secret:
        return []
    forms = [
        secret,
        repr(secret)[1:-1],
        secret.encode("unicode_escape").decode("ascii"),
        repr(secret.encode("utf-8"))[2:-1],
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        quote(secret, safe=""),
        quote_plus(secret),
    ]
    forms += [_lowercase_percent_escapes(form) for form in forms[-2:]]
    return list(dict.fromkeys(form for form in forms if form))


@dataclass(frozen=True)
class ConnectionSettings:
    """Everything the hook needs from the Airflow connection, typed and with defaults.

    The secret (API key, password or client secret) is kept out of ``repr``.
    """

    conn_id: str
    base_url: str
    auth_type: str
    login: str | None
    secret: str | None = field(repr=False)
    connect_timeout: float
    read_timeout: float
    max_retries: int
    verify_ssl: bool
    show_full_numbers: bool
    namespace: str = "airflow"
    proxy_url: str | None = field(default=None, repr=False)
    ca_bundle: str | None = None
    default_scenario_key: str | None = None
    default_scenario_name: str | None = None
    default_viber_validity_minutes: int | None = None
    default_sms_validity_minutes: int | None = None
    text_footer: str | None = None
    backend: str = "omni"
    viber_sender: str | None = None
    sms_sender: str | None = None

    @classmethod
    def build(
        cls,
        *,
        conn_id: str,
        host: str | None,
        login: str | None,
        password: str | None,
        extras: dict[str, Any],
        schema: str | None = None,
        port: int | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> ConnectionSettings:
        """Read the connection fields and extras; constructor arguments in ``overrides`` win.

        Extras are read by their bare name, falling back to ``extra__infobip_omni__<name>``. The
        Login and Password fields are stripped of surrounding whitespace and checked by
        :func:`clean_credential` (which raises :class:`OmniConfigurationError`).
        """
        overrides = {k: v for k, v in (overrides or {}).items() if v is not None}

        def pick(name: str) -> Any:
            if name in overrides:
                return overrides[name]
            value = _extra(extras, name)
            return _default(name) if value is None else value

        auth_type = str(pick("auth_type")).strip().lower()
        if auth_type not in AUTH_TYPES:
            raise ValueError(f"connection extra 'auth_type' must be one of {', '.join(AUTH_TYPES)}")
        secret = clean_credential(
            password,
            field_name="password",
            auth_type=auth_type,
            conn_id=conn_id,
            header_value=auth_type == AUTH_API_KEY,
        )
        if auth_type != AUTH_API_KEY:
            login = clean_credential(login, field_name="login", auth_type=auth_type, conn_id=conn_id)
        return cls(
            conn_id=conn_id,
            base_url=normalize_base_url(host, scheme=schema, port=port),
            auth_type=auth_type,
            login=login or None,
            secret=secret,
            connect_timeout=float(_as_number(pick("connect_timeout"), "connect_timeout", float)),
            read_timeout=float(_as_number(pick("read_timeout"), "read_timeout", float)),
            max_retries=int(_as_number(pick("max_retries"), "max_retries", int)),
            verify_ssl=_as_bool(pick("verify_ssl"), "verify_ssl"),
            show_full_numbers=_as_bool(pick("show_full_numbers"), "show_full_numbers"),
            namespace=_as_namespace(pick("namespace")),
            proxy_url=_proxy_url(pick("proxy_url"), pick("proxy_password")),
            ca_bundle=_optional(pick("ca_bundle"), _as_ca_bundle),
            **_message_defaults(pick),
        )

    @property
    def verify(self) -> bool | str:
        """What requests' ``verify`` takes: False, the CA bundle's path, or True (the default store)."""
        if not self.verify_ssl:
            return False
        return self.ca_bundle or True

    @property
    def proxies(self) -> dict[str, str]:
        """requests' ``proxies`` of the connection's proxy (empty: the environment's apply)."""
        return {"http": self.proxy_url, "https": self.proxy_url} if self.proxy_url else {}

    def footer_for(self, given: str | None) -> str | None:
        """The footer of a message: ``given`` by the task when not None (``""``: none), else the
        connection's ``text_footer``."""
        return (self.text_footer if given is None else given) or None

    @property
    def proxy_display(self) -> str | None:
        """The proxy as ``scheme://host:port``, without credentials (for messages)."""
        if not self.proxy_url:
            return None
        parts = urlsplit(self.proxy_url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"

    def missing_credentials(self) -> str | None:
        """Return what is missing from the connection for its auth type, or None."""
        if not self.secret:
            names = {AUTH_API_KEY: "API key", AUTH_BASIC: "password", AUTH_OAUTH2: "client secret"}
            return f"the {names[self.auth_type]} (Password field of connection {self.conn_id!r}) is empty"
        if self.auth_type in (AUTH_BASIC, AUTH_OAUTH2) and not self.login:
            what = "username" if self.auth_type == AUTH_BASIC else "OAuth2 client id"
            return f"the {what} (Login field of connection {self.conn_id!r}) is empty"
        return None

    def static_authorization(self) -> str | None:
        """Return the ``Authorization`` header for ``api_key`` and ``basic``; None for ``oauth2``."""
        if self.auth_type == AUTH_API_KEY:
            return f"App {self.secret}"
        if self.auth_type == AUTH_BASIC:
            return f"Basic {self._basic_pair()}"
        return None

    def _basic_pair(self) -> str:
        return base64.b64encode(f"{self.login}:{self.secret}".encode()).decode("ascii")

    def token_form(self) -> dict[str, str]:
        """Return the form body of the OAuth2 client-credentials token request."""
        return {
            "client_id": self.login or "",
            "client_secret": self.secret or "",
            "grant_type": "client_credentials",
        }

    def secrets(self) -> list[str]:
        """Return the secret strings that must never be printed: every form of the secret (see
        :func:`secret_forms`) and, for basic auth, the base64 pair."""
        values = secret_forms(self.secret)
        if self.secret and self.auth_type == AUTH_BASIC:
            values.append(self._basic_pair())
        return values + proxy_secrets(self.proxy_url)


class TokenCache:
    """One OAuth2 access token and the monotonic time until which it may be used."""

    def __init__(self) -> None:
        self._token: str | None = None
        self._use_until = 0.0

    def __repr__(self) -> str:
        return f"TokenCache(cached={self._token is not None})"

    @property
    def current(self) -> str | None:
        """The token, when there is one that does not expire within the refresh margin."""
        if self._token is not None and _clock() < self._use_until:
            return self._token
        return None

    @property
    def raw(self) -> str | None:
        """The last token, expired or not (only to redact it from messages)."""
        return self._token

    def store(self, token: OAuthToken) -> str:
        """Keep ``token`` until ``TOKEN_REFRESH_MARGIN`` seconds before its ``expires_in``."""
        margin = min(TOKEN_REFRESH_MARGIN, token.expires_in / 2)
        self._token = token.access_token
        self._use_until = _clock() + token.expires_in - margin
        return token.access_token

    def invalidate(self) -> None:
        """Forget the token (after a 401), so that the next request fetches a new one."""
        self._use_until = 0.0
