"""The sandbox's state and simulation, without any HTTP: scenarios, messages, reports, logs, stats.

Everything is computed lazily from timestamps on a simulated clock: accepting a message computes its
whole failover timeline at once (which step ends when, and how), and reports and logs are derived
from that timeline when they are asked for.  No background loop runs.

All public methods are thread-safe (one lock); the HTTP layer (:mod:`.app`) only translates.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import random
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from airflow_provider_omni.sandbox import catalog

# -- errors ----------------------------------------------------------------------------------------


class SandboxError(Exception):
    """A request the sandbox refuses; becomes Infobip's ``requestError`` envelope.

    :param status: HTTP status code.
    :param message_id: Infobip's error identifier (``BAD_REQUEST``, ``NOT_FOUND``, ...).
    :param text: human-readable text.
    :param validation_errors: field to messages.
    :param headers: extra response headers (``Retry-After``).
    """

    def __init__(
        self,
        status: int,
        message_id: str,
        text: str,
        validation_errors: Mapping[str, list[str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(text)
        self.status = status
        self.message_id = message_id
        self.text = text
        self.validation_errors = dict(validation_errors or {})
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """Return Infobip's error body for this error."""
        return error_body(self.message_id, self.text, self.validation_errors)


def error_body(message_id: str, text: str, validation_errors: Mapping[str, list[str]] | None = None) -> dict:
    """Return ``{"requestError": {"serviceException": {...}}}``."""
    details: dict[str, Any] = {"messageId": message_id, "text": text}
    if validation_errors:
        details["validationErrors"] = dict(validation_errors)
    return {"requestError": {"serviceException": details}}


def bad_request(field_name: str, message: str) -> SandboxError:
    """Return a 400 ``BAD_REQUEST`` about one field."""
    return SandboxError(400, "BAD_REQUEST", "Bad request", {field_name: [message]})


# -- numbers and flags -----------------------------------------------------------------------------


class SettingError(ValueError):
    """A bad value of one named setting, fault option, clock field or flag (a 400 naming it).

    :param field_name: the name of the value (``time_scale``, ``prices.SMS``, ``latency``, ...).
    :param message: what is wrong; it names the field too.
    """

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


def _show(number: float) -> str:
    return str(int(number)) if float(number).is_integer() and abs(number) < 1e15 else repr(float(number))


def finite_number(
    value: Any,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
) -> float:
    """Return ``value`` (a number or its text) as a finite float within bounds.

    NaN and infinities are refused, as JSON numbers (``NaN``, ``1e999``) or as text (``"nan"``).

    :param minimum: smallest allowed value.
    :param maximum: largest allowed value.
    :param above: the value must be strictly greater than this.
    :raises SettingError: naming ``name``.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SettingError(name, f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise SettingError(name, f"{name} must be a finite number, got {value!r}") from None
    if not math.isfinite(number):
        raise SettingError(name, f"{name} must be a finite number, got {value!r}")
    if minimum is not None and number < minimum:
        raise SettingError(name, f"{name} must be >= {_show(minimum)}, got {_show(number)}")
    if above is not None and number <= above:
        raise SettingError(name, f"{name} must be > {_show(above)}, got {_show(number)}")
    if maximum is not None and number > maximum:
        raise SettingError(name, f"{name} must be <= {_show(maximum)}, got {_show(number)}")
    return number


def whole_number(value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` (an integer, an integral float or its text) as an ``int`` within bounds.

    :raises SettingError: naming ``name``.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().lstrip("+-").isdecimal():
        number = int(value.strip())
    else:
        real = finite_number(value, name)
        if not real.is_integer():
            raise SettingError(name, f"{name} must be a whole number, got {value!r}")
        number = int(real)
    if minimum is not None and number < minimum:
        raise SettingError(name, f"{name} must be >= {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise SettingError(name, f"{name} must be <= {maximum}, got {number}")
    return number


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def flag(value: Any, name: str) -> bool:
    """Return ``value`` (a boolean, 0/1, or ``true``/``false``/``yes``/``no``/``on``/``off``) as a bool.

    :raises SettingError: naming ``name``.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise SettingError(name, f"{name} must be true or false, got {value!r}")


def _validation_errors(exc: ValidationError) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for err in exc.errors():
        path = ""
        for part in err.get("loc", ()):
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        errors.setdefault(path or "request", []).append(message)
    return errors


def _null_fields(node: Any, path: str = "") -> list[str]:
    """Return the paths (``flow[0].from``) of the ``null`` values in a JSON body."""
    if node is None:
        return [path or "request"]
    if isinstance(node, dict):
        return [
            field
            for key, value in node.items()
            for field in _null_fields(value, f"{path}.{key}" if path else str(key))
        ]
    if isinstance(node, list):
        return [
            field for index, value in enumerate(node) for field in _null_fields(value, f"{path}[{index}]")
        ]
    return []


def validate_model(model: type[BaseModel], payload: Any) -> Any:
    """Validate ``payload`` with ``model``; a failure becomes a 400 with ``validationErrors``.

    JSON types are checked strictly (``"default": 0`` is not a boolean), and ``null`` is refused
    anywhere: the document declares no nullable field (leave a field out instead).
    """
    if not isinstance(payload, dict):
        raise bad_request("request", "the body must be a JSON object")
    nulls = _null_fields(payload)
    if nulls:
        message = "must not be null; leave the field out instead"
        raise SandboxError(400, "BAD_REQUEST", "Bad request", {field: [message] for field in nulls})
    try:
        return model.model_validate_json(json.dumps(payload), strict=True)
    except ValidationError as exc:
        raise SandboxError(400, "BAD_REQUEST", "Bad request", _validation_errors(exc)) from None


# -- time ------------------------------------------------------------------------------------------


def format_time(timestamp: float) -> str:
    """Format epoch seconds the way Infobip does: ``2016-02-23T17:41:11.833+0000``."""
    seconds = math.floor(timestamp)
    millis = min(999, int((timestamp - seconds) * 1000))
    return f"{_second_text(seconds)}.{millis:03d}+0000"


@functools.lru_cache(maxsize=8192)
def _second_text(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def parse_time(value: str, field_name: str) -> float:
    """Parse an Infobip date-time (a ``+`` decoded as a space is tolerated) to epoch seconds."""
    from airflow_provider_omni.models import parse_infobip_datetime

    try:
        parsed = parse_infobip_datetime(value.strip().replace(" ", "+"))
    except Exception:
        raise bad_request(
            field_name, f"{value!r} is not a date-time like 2016-02-23T17:41:11.833+0100"
        ) from None
    if parsed is None:
        raise bad_request(field_name, "missing date-time")
    return parsed.timestamp()


#: The last second that can be written as a date (9999-12-31T23:59:59): the clock stays below.
MAX_EPOCH = 253402300799.0


class SimClock:
    """Simulated wall clock: ``scale`` simulated seconds pass per real second.

    :param scale: time compression (60: one simulated minute per real second).
    """

    def __init__(self, scale: float) -> None:
        self._scale = float(scale)
        self._real0 = time.monotonic()
        self._sim0 = time.time()

    def restart(self, scale: float) -> None:
        """Start again from the real wall-clock time, with ``scale``."""
        self._scale = float(scale)
        self._real0 = time.monotonic()
        self._sim0 = time.time()

    def is_sound(self) -> bool:
        """Tell whether the clock shows a finite time that can be written as a date."""
        now = self.now()
        return math.isfinite(self._scale) and math.isfinite(now) and 0 <= now <= MAX_EPOCH

    @property
    def scale(self) -> float:
        """Simulated seconds per real second."""
        return self._scale

    def now(self) -> float:
        """Return the simulated time in epoch seconds."""
        return self._sim0 + (time.monotonic() - self._real0) * self._scale

    def set_scale(self, scale: float) -> None:
        """Change the compression from now on, without a jump of the simulated time."""
        self._sim0 = self.now()
        self._real0 = time.monotonic()
        self._scale = float(scale)

    def advance(self, seconds: float) -> None:
        """Jump the simulated clock forward by ``seconds``."""
        self._sim0 += seconds


# -- configuration ---------------------------------------------------------------------------------

DEFAULT_RATE_LIMITS: dict[str, tuple[int, float]] = {
    "scenarios.create": (20, 600.0),
    "scenarios.update": (40, 600.0),
    "logs": (120, 60.0),
    # Infobip's x-throttling-info of POST /messages-api/1/messages/validate: 10 requests a second
    "messages.validate": (10, 1.0),
}

#: Largest ``time_scale``: a million simulated seconds (11.6 days) per real second.
MAX_TIME_SCALE = 1_000_000.0
#: Longest default validity or delivery delay: ten years of simulated time.
MAX_SIMULATED_SPAN = 10 * 365 * 86400.0
#: Longest ``logs_lag`` and fault ``latency``: a day of real time.
MAX_REAL_WAIT = 86400.0
#: Longest ``request_latency``, in real seconds; ``latency_per_destination`` is at most this over
#: the largest bulk (1000 destinations): a full bulk waits at most a minute more.
MAX_REQUEST_LATENCY = 60.0
MAX_LATENCY_PER_DESTINATION = MAX_REQUEST_LATENCY / 1000
#: How many answered sends :meth:`SandboxState.sends` keeps (the last ones).
MAX_SEND_RECORDS = 20_000


@dataclass
class SandboxConfig:
    """Everything that can be configured (CLI flags, config file, ``POST /_sandbox/config``).

    Every number must be finite; a bad value raises :class:`SettingError` naming the setting.
    """

    api_key: str = "sandbox-key"
    username: str = "sandbox"
    password: str | None = None
    client_id: str = "sandbox"
    client_secret: str | None = None
    token_ttl: float = 3600.0
    time_scale: float = 60.0
    seed: int = 0
    report_style: tuple[str, ...] = ("final",)
    personas_by_number: dict[str, str] = field(default_factory=dict)
    personas_by_last_digit: dict[str, str] = field(
        default_factory=lambda: dict(catalog.DEFAULT_BY_LAST_DIGIT)
    )
    persona_definitions: dict[str, dict[str, str]] = field(
        default_factory=lambda: {k: dict(v) for k, v in catalog.PERSONAS.items()}
    )
    rate_limits_enabled: bool = True
    rate_limits: dict[str, tuple[int, float]] = field(default_factory=lambda: dict(DEFAULT_RATE_LIMITS))
    log_retention_hours: float = 48.0
    max_logs: int = 100_000
    default_validity: dict[str, float] = field(default_factory=lambda: dict(catalog.DEFAULT_VALIDITY_SECONDS))
    prices: dict[str, float] = field(default_factory=lambda: dict(catalog.DEFAULT_PRICES))
    delivery_delay: tuple[float, float] = (1.0, 5.0)
    reject_duplicate_message_ids: bool = False
    #: Real seconds after its acceptance before a message shows in ``GET /omni/1/logs``.
    logs_lag: float = 0.0
    #: Real seconds added to every OMNI request (not the admin and token routes) before its answer.
    request_latency: float = 0.0
    #: Real seconds added per destination of a ``POST /omni/1/advanced``, on top of ``request_latency``.
    latency_per_destination: float = 0.0
    #: The API key's scopes (``omni-failover:manage``, ``messages-api:message:send``, ...); None: all.
    #: Only the Messages API routes check them (a 403 naming the scopes they accept).
    api_key_scopes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        self.update({name: getattr(self, name) for name in _CHECKED_ON_INIT})

    @property
    def basic_password(self) -> str:
        """Password of Basic auth (the API key unless set)."""
        return self.password if self.password is not None else self.api_key

    @property
    def oauth_client_secret(self) -> str:
        """OAuth2 client secret (the API key unless set)."""
        return self.client_secret if self.client_secret is not None else self.api_key

    def copy(self) -> SandboxConfig:
        """Return a deep-enough copy (the dicts are copied)."""
        values: dict[str, Any] = {
            name: (dict(value) if isinstance(value, dict) else value) for name, value in self.__dict__.items()
        }
        return SandboxConfig(**values)

    def update(self, values: Mapping[str, Any]) -> None:
        """Apply ``values`` (names as in :meth:`public`, plus ``personas``, ``rate_limit_window_scale``
        and the credentials); raise :class:`SettingError` on an unknown name or a bad value.

        Not atomic: apply to a :meth:`copy` and keep it only when this succeeds.
        """
        for name, value in values.items():
            setter = getattr(self, f"_set_{name}", None)
            if setter is not None:
                setter(value)
            elif name in _SCALARS:
                setattr(self, name, _SCALARS[name](value, name))
            else:
                raise SettingError(str(name), f"unknown sandbox setting {name!r}")

    def _set_report_style(self, value: Any) -> None:
        styles = [value] if isinstance(value, str) else list(value)
        styles = [s.strip() for item in styles for s in str(item).replace("+", ",").split(",") if s.strip()]
        unknown = [s for s in styles if s not in catalog.REPORT_STYLES]
        if unknown:
            raise SettingError(
                "report_style", f"unknown report style(s) {unknown}; known: {list(catalog.REPORT_STYLES)}"
            )
        self.report_style = tuple(dict.fromkeys(styles or ["final"]))

    def _set_api_key_scopes(self, value: Any) -> None:
        if value is None:
            self.api_key_scopes = None
            return
        items = value.replace(",", " ").split() if isinstance(value, str) else value
        if isinstance(items, Mapping) or not isinstance(items, Sequence):
            raise SettingError("api_key_scopes", f"api_key_scopes must be a list of scopes, got {value!r}")
        self.api_key_scopes = tuple(_text(item, "api_key_scopes") for item in items)

    def _set_personas(self, value: Any) -> None:
        if not isinstance(value, Mapping):
            raise SettingError("personas", "personas must be a mapping")
        structured = {"by_number", "by_last_digit", "definitions"} & set(value)
        if structured:
            definitions = value.get("definitions") or {}
            self._set_persona_definitions(definitions)
            self._assign_personas(value.get("by_last_digit") or {}, value.get("by_number") or {})
        else:
            digits = {k: v for k, v in value.items() if len(str(k)) == 1}
            numbers = {k: v for k, v in value.items() if len(str(k)) != 1}
            self._assign_personas(digits, numbers)

    def _set_persona_definitions(self, value: Mapping[str, Any]) -> None:
        for name, behaviours in value.items():
            if not isinstance(behaviours, Mapping):
                raise SettingError("personas", f"persona {name!r} must map channels to behaviours")
            bad = {k: v for k, v in behaviours.items() if v not in catalog.BEHAVIOURS}
            if bad:
                raise SettingError(
                    "personas", f"persona {name!r}: unknown behaviour(s) {bad}; known {catalog.BEHAVIOURS}"
                )
            self.persona_definitions[str(name)] = {
                "*": catalog.DELIVER,
                **{str(k): v for k, v in behaviours.items()},
            }

    def _assign_personas(self, digits: Mapping[Any, Any], numbers: Mapping[Any, Any]) -> None:
        for _key, persona in {**digits, **numbers}.items():
            if persona not in self.persona_definitions:
                raise SettingError(
                    "personas", f"unknown persona {persona!r}; known: {sorted(self.persona_definitions)}"
                )
        for digit, persona in digits.items():
            if str(digit) not in "0123456789" or len(str(digit)) != 1:
                raise SettingError("personas", f"{digit!r} is not a digit")
            self.personas_by_last_digit[str(digit)] = str(persona)
        for number, persona in numbers.items():
            self.personas_by_number[str(number).lstrip("+")] = str(persona)

    def _set_rate_limits(self, value: Any) -> None:
        if isinstance(value, bool):
            self.rate_limits_enabled = value
            return
        if not isinstance(value, Mapping):
            raise SettingError(
                "rate_limits", "rate_limits must be true, false or {endpoint: [count, window_seconds]}"
            )
        enabled, limits = self.rate_limits_enabled, dict(self.rate_limits)
        for name, limit in value.items():
            if name == "enabled":
                enabled = flag(limit, "rate_limits.enabled")
                continue
            path = f"rate_limits.{name}"
            if isinstance(limit, str) or not isinstance(limit, Sequence) or len(limit) != 2:
                raise SettingError(path, f"{path} must be [count, window_seconds], got {limit!r}")
            count = whole_number(limit[0], f"{path}[0]", minimum=0)
            window = finite_number(limit[1], f"{path}[1]", above=0, maximum=MAX_SIMULATED_SPAN)
            limits[str(name)] = (count, window)
        self.rate_limits_enabled, self.rate_limits = enabled, limits

    def _set_rate_limit_window_scale(self, value: Any) -> None:
        """Shrink (or stretch) every rate-limit window by a factor, e.g. 0.01 in tests."""
        factor = finite_number(value, "rate_limit_window_scale", above=0, maximum=1000)
        self.rate_limits = {
            k: (n, DEFAULT_RATE_LIMITS.get(k, (n, w))[1] * factor) for k, (n, w) in self.rate_limits.items()
        }

    def _set_default_validity(self, value: Any) -> None:
        self.default_validity = {
            **self.default_validity,
            **_numbers_by_name(value, "default_validity", above=0, maximum=MAX_SIMULATED_SPAN),
        }

    def _set_prices(self, value: Any) -> None:
        self.prices = {**self.prices, **_numbers_by_name(value, "prices", minimum=0)}

    def _set_delivery_delay(self, value: Any) -> None:
        bounds = {"minimum": 0.0, "maximum": MAX_SIMULATED_SPAN}
        if isinstance(value, Sequence) and not isinstance(value, str):
            if len(value) != 2:
                raise SettingError("delivery_delay", "delivery_delay must be [min, max] simulated seconds")
            low = finite_number(value[0], "delivery_delay[0]", **bounds)
            high = finite_number(value[1], "delivery_delay[1]", **bounds)
        else:
            low = high = finite_number(value, "delivery_delay", **bounds)
        if high < low:
            raise SettingError(
                "delivery_delay", "delivery_delay must be [min, max] simulated seconds with 0 <= min <= max"
            )
        self.delivery_delay = (low, high)

    def public(self) -> dict[str, Any]:
        """Return the configuration without secrets, JSON-ready."""
        return {
            "time_scale": self.time_scale,
            "seed": self.seed,
            "report_style": list(self.report_style),
            "personas": self.personas_public(),
            "rate_limits_enabled": self.rate_limits_enabled,
            "rate_limits": {k: list(v) for k, v in self.rate_limits.items()},
            "log_retention_hours": self.log_retention_hours,
            "max_logs": self.max_logs,
            "default_validity": dict(self.default_validity),
            "prices": dict(self.prices),
            "delivery_delay": list(self.delivery_delay),
            "reject_duplicate_message_ids": self.reject_duplicate_message_ids,
            "logs_lag": self.logs_lag,
            "request_latency": self.request_latency,
            "latency_per_destination": self.latency_per_destination,
            "api_key_scopes": None if self.api_key_scopes is None else list(self.api_key_scopes),
            "token_ttl": self.token_ttl,
            "username": self.username,
            "client_id": self.client_id,
        }

    def personas_public(self) -> dict[str, Any]:
        """Return the personas: definitions, and which numbers and last digits use which."""
        return {
            "definitions": self.persona_definitions,
            "descriptions": {
                name: catalog.PERSONA_DESCRIPTIONS.get(name, "custom persona")
                for name in self.persona_definitions
            },
            "by_last_digit": dict(sorted(self.personas_by_last_digit.items())),
            "by_number": dict(self.personas_by_number),
        }

    def persona_of(self, address: str) -> dict[str, str]:
        """Return the channel-to-behaviour map of the persona of ``address``."""
        name = self.personas_by_number.get(address)
        if name is None:
            digit = next((c for c in reversed(address) if c.isdigit()), "0")
            name = self.personas_by_last_digit.get(digit, "viber_user")
        return self.persona_definitions.get(name, catalog.PERSONAS["viber_user"])


def _numbers_by_name(value: Any, setting: str, **bounds: float) -> dict[str, float]:
    """Check a ``{name: number}`` setting (``prices``, ``default_validity``) entry by entry."""
    if not isinstance(value, Mapping):
        raise SettingError(setting, f"{setting} must be a mapping of channel to number, got {value!r}")
    return {str(k): finite_number(v, f"{setting}.{k}", **bounds) for k, v in value.items()}


def _text(value: Any, name: str) -> str:
    if isinstance(value, Mapping | list | tuple) or value is None:
        raise SettingError(name, f"{name} must be text, got {value!r}")
    return str(value)


_SCALARS: dict[str, Callable[[Any, str], Any]] = {
    "api_key": _text,
    "username": _text,
    "password": _text,
    "client_id": _text,
    "client_secret": _text,
    "token_ttl": functools.partial(finite_number, minimum=0, maximum=MAX_SIMULATED_SPAN),
    "time_scale": functools.partial(finite_number, minimum=0, maximum=MAX_TIME_SCALE),
    "seed": whole_number,
    "log_retention_hours": functools.partial(finite_number, minimum=0, maximum=MAX_SIMULATED_SPAN / 3600),
    "max_logs": functools.partial(whole_number, minimum=1),
    "logs_lag": functools.partial(finite_number, minimum=0, maximum=MAX_REAL_WAIT),
    "request_latency": functools.partial(finite_number, minimum=0, maximum=MAX_REQUEST_LATENCY),
    "latency_per_destination": functools.partial(
        finite_number, minimum=0, maximum=MAX_LATENCY_PER_DESTINATION
    ),
    "reject_duplicate_message_ids": flag,
    "rate_limits_enabled": flag,
}

#: Settings checked again when a :class:`SandboxConfig` is built directly.
_CHECKED_ON_INIT = (
    "token_ttl",
    "time_scale",
    "seed",
    "log_retention_hours",
    "max_logs",
    "logs_lag",
    "request_latency",
    "latency_per_destination",
    "rate_limits",
    "default_validity",
    "prices",
    "delivery_delay",
)


# -- faults ----------------------------------------------------------------------------------------

ENDPOINTS = (
    "scenarios.list",
    "scenarios.create",
    "scenarios.get",
    "scenarios.update",
    "advanced",
    "reports",
    "logs",
    "token",
    "messages",
    "messages.validate",
    "messages.reports",
)

#: Wrong 2xx answers to a send (fault option ``answer``, endpoint ``advanced`` or ``messages``): an
#: empty body, ``{}``, a 200 carrying Infobip's error envelope (``requestError``; the Messages API's
#: ``ApiError``), ``{"bulkId", "messages": []}``, the real
#: answer with another bulkId, the real answer without its last message, an HTML page.
ANSWER_KINDS = (
    "empty",
    "empty_object",
    "request_error",
    "no_messages",
    "wrong_bulk_id",
    "missing_messages",
    "html",
)

FAULT_OPTIONS = ("endpoint", "status", "times", "rate", "latency", "drop", "retry_after", "process", "answer")


@dataclass
class Fault:
    """A fault to inject on requests to an endpoint.

    :param endpoint: endpoint name (see :data:`ENDPOINTS`), or ``"*"`` for all of them.
    :param status: HTTP status to answer with (429, 500, 503, ...), with Infobip's error body.
    :param times: fire for the next N matching calls only (None: no limit).
    :param rate: probability (0..1) to fire on a matching call, from the seeded random generator.
    :param latency: real seconds to wait before answering.
    :param drop: close the connection without any answer.
    :param retry_after: value of the ``Retry-After`` header (seconds), for 429 and 503.
    :param process: handle the request first (e.g. the message IS accepted), then fail the answer.
    :param answer: answer HTTP 200 with a wrong body instead (one of :data:`ANSWER_KINDS`; endpoint
        ``advanced`` or ``messages``); with ``process`` the send is accepted first, without it nothing is.
    """

    endpoint: str = "*"
    status: int | None = None
    times: int | None = None
    rate: float | None = None
    latency: float = 0.0
    drop: bool = False
    retry_after: float | None = None
    process: bool = False
    answer: str | None = None
    id: int = 0
    fired: int = 0

    def validate(self) -> None:
        """Check and normalise every option; raise :class:`SettingError` naming a bad one."""
        self.endpoint = _text(self.endpoint, "endpoint")
        if self.endpoint != "*" and self.endpoint not in ENDPOINTS:
            raise SettingError("endpoint", f"unknown endpoint {self.endpoint!r}; known: {['*', *ENDPOINTS]}")
        if self.status is not None:
            self.status = whole_number(self.status, "status", minimum=400, maximum=599)
        if self.times is not None:
            self.times = whole_number(self.times, "times", minimum=1)
        if self.rate is not None:
            self.rate = finite_number(self.rate, "rate", minimum=0, maximum=1)
        self.latency = finite_number(self.latency, "latency", minimum=0, maximum=MAX_REAL_WAIT)
        if self.retry_after is not None:
            self.retry_after = finite_number(
                self.retry_after, "retry_after", minimum=0, maximum=MAX_SIMULATED_SPAN
            )
        self.drop = flag(self.drop, "drop")
        self.process = flag(self.process, "process")
        if self.answer is not None:
            self._validate_answer()
        elif self.status is None and not self.drop and not self.latency:
            raise SettingError("status", "a fault needs status, drop, latency or answer")

    def _validate_answer(self) -> None:
        if self.answer not in ANSWER_KINDS:
            raise SettingError(
                "answer", f"unknown answer kind {self.answer!r}; allowed: {', '.join(ANSWER_KINDS)}"
            )
        if self.endpoint not in ("advanced", "messages"):
            raise SettingError(
                "answer", "answer faults are for the sends only (endpoint 'advanced' or 'messages')"
            )
        if self.status is not None or self.drop:
            raise SettingError("answer", "answer cannot be combined with status or drop")

    def public(self) -> dict[str, Any]:
        """Return the fault as JSON."""
        return dict(self.__dict__)


def make_fault(options: Any) -> Fault:
    """Return a checked :class:`Fault` from its options (``None`` values are left out).

    :raises SettingError: naming an unknown or bad option.
    """
    if not isinstance(options, Mapping):
        raise SettingError("faults", f"a fault must be a mapping of options, got {options!r}")
    unknown = [str(k) for k in options if k not in FAULT_OPTIONS and k not in ("id", "fired")]
    if unknown:
        raise SettingError(
            unknown[0], f"unknown fault option {unknown[0]!r}; known: {', '.join(FAULT_OPTIONS)}"
        )
    fault = Fault(**{k: v for k, v in options.items() if v is not None and k in FAULT_OPTIONS})
    fault.validate()
    return fault


def parse_fault_spec(spec: str) -> dict[str, Any]:
    """Parse a CLI fault spec ``endpoint=advanced,status=503,times=2`` into keyword arguments."""
    values: dict[str, Any] = {}
    for part in spec.split(","):
        if not part.strip():
            continue
        name, _, raw = part.partition("=")
        name, raw = name.strip().replace("-", "_"), raw.strip()
        if name in {"status", "times"}:
            values[name] = whole_number(raw, name)
        elif name in {"rate", "latency", "retry_after"}:
            values[name] = finite_number(raw, name)
        elif name in {"drop", "process"}:
            values[name] = flag(raw or "true", name)
        elif name in {"endpoint", "answer"}:
            values[name] = raw
        else:
            raise SettingError(name, f"unknown fault option {name!r} in {spec!r}")
    return values


# -- messages --------------------------------------------------------------------------------------


@dataclass(slots=True)
class Submission:
    """What one accepted ``POST /omni/1/advanced`` request shares between its messages."""

    bulk_id: str
    texts: dict[str, str | None]
    styles: frozenset[str]
    callback_data: str | None
    notify: bool
    sms_segments: int


@dataclass(slots=True)
class Attempt:
    """One step of the failover flow as it happens for one destination."""

    channel: str
    sender: str | None
    start: float
    end: float
    behaviour: str
    message_id: str


@dataclass(slots=True)
class Event:
    """One delivery report of a message (final or not), available from ``time`` on."""

    time: float
    attempt: Attempt
    status: dict[str, Any]
    error: dict[str, Any]
    final: bool


@dataclass(slots=True)
class Message:
    """One destination of an accepted request, with its whole simulated timeline."""

    seq: int
    message_id: str
    to: str
    sent_at: float
    submission: Submission
    attempts: list[Attempt]
    mcc_mnc: str
    rejected: dict[str, Any] | None = None
    consumed: int = 0
    #: Real (monotonic) time of acceptance, for ``logs_lag``.
    accepted_real: float = 0.0

    @property
    def done_at(self) -> float:
        """Simulated time at which the message reaches its final status."""
        return self.attempts[-1].end

    def events(self) -> list[Event]:
        """Return the reports of this message in time order, as its submission's styles say."""
        if self.rejected is not None:
            attempt = self.attempts[0]
            duplicate = self.rejected is catalog.REJECTED_DUPLICATE_MESSAGE_ID
            error = catalog.EC_DUPLICATE_MESSAGE if duplicate else catalog.NO_ERROR
            return [Event(attempt.end, attempt, self.rejected, error, True)]
        styles = self.submission.styles
        events: list[Event] = []
        last = len(self.attempts) - 1
        for index, attempt in enumerate(self.attempts):
            if "intermediate" in styles:
                events.append(Event(attempt.start, attempt, catalog.PENDING_ENROUTE, catalog.NO_ERROR, False))
                if attempt.channel == "SMS" and attempt.behaviour in (catalog.DELIVER, catalog.ABSENT):
                    middle = attempt.start + (attempt.end - attempt.start) / 2
                    events.append(
                        Event(middle, attempt, catalog.DELIVERED_TO_OPERATOR, catalog.NO_ERROR, False)
                    )
            status, error = catalog.OUTCOMES[attempt.behaviour]
            if index == last:
                events.append(Event(attempt.end, attempt, status, error, True))
            elif "per_step" in styles:
                events.append(Event(attempt.end, attempt, status, error, False))
        events.sort(key=lambda event: event.time)
        return events


# -- the state -------------------------------------------------------------------------------------


class SandboxState:
    """The whole sandbox: configuration, clock, scenarios, messages, reports, logs, faults, stats.

    :param config: the configuration; ``reset()`` returns to a copy of it.
    """

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self._initial = (config or SandboxConfig()).copy()
        self._lock = threading.RLock()
        self.config = self._initial.copy()
        self.clock = SimClock(self.config.time_scale)
        #: Incremented by every reset: a request still waiting on an injected latency from before a
        #: reset is dropped instead of touching the new state.
        self.generation = 0
        self._init_state()

    # -- lifecycle

    def _init_state(self) -> None:
        self._rng = random.Random(self.config.seed)
        self._fault_rng = random.Random(self.config.seed + 1)
        self._scenarios: dict[str, dict[str, Any]] = {}
        self._messages: dict[int, Message] = {}
        self._pending: dict[int, Message] = {}
        self._by_bulk: dict[str, dict[int, Message]] = {}
        self._by_id: dict[str, dict[int, Message]] = {}
        self._seq = 0
        self._faults: list[Fault] = []
        self._fault_seq = 0
        self._rate_windows: dict[str, deque[float]] = {}
        self._tokens: dict[str, float] = {}
        self._last_sweep = self.clock.now()
        self._requests: Counter[str] = Counter()
        self._responses: Counter[str] = Counter()
        self._faults_fired: Counter[str] = Counter()
        self._rate_limited: Counter[str] = Counter()
        self._id_counts: dict[str, int] = {}
        self._duplicates: dict[str, int] = {}
        self._distinct_ids = 0
        self._destinations = 0
        self._advanced_requests = 0
        self._bulk_sizes: dict[str, int] = {}
        self._reports_handed_out = 0
        self._recent_requests: deque[dict[str, Any]] = deque(maxlen=100)
        self._in_flight: Counter[str] = Counter()
        self._max_in_flight: Counter[str] = Counter()
        self._sends: deque[dict[str, Any]] = deque(maxlen=MAX_SEND_RECORDS)
        from airflow_provider_omni.sandbox.messages_api import MessagesApiStore

        #: The Messages API's messages and reports (``/messages-api/1/...``), apart from OMNI's.
        self.messages_api = MessagesApiStore(self)

    def reset(self, keep_config: bool = False) -> None:
        """Forget everything (scenarios, messages, stats, faults, tokens); restore the initial
        configuration unless ``keep_config``.  A clock that shows no valid date starts again from
        the real time."""
        with self._lock:
            self.generation += 1
            if not keep_config:
                self.config = self._initial.copy()
                self.clock.set_scale(self.config.time_scale)
            if not self.clock.is_sound():
                self.clock.restart(self.config.time_scale)
            self._init_state()

    def configure(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Change settings (see :class:`SandboxConfig`) and add ``faults``; return the public
        configuration.  Everything is checked first: a bad value changes nothing."""
        faults = values.get("faults") or ()
        if isinstance(faults, str | Mapping) or not isinstance(faults, Sequence):
            raise SettingError("faults", "faults must be a list of fault options")
        checked = [make_fault(fault) for fault in faults]
        with self._lock:
            candidate = self.config.copy()
            candidate.update({k: v for k, v in values.items() if k != "faults"})
            self.config = candidate
            if self.clock.scale != candidate.time_scale:
                self.clock.set_scale(candidate.time_scale)
            for fault in checked:
                self._install_fault(fault)
            return self.config.public()

    def advance(self, seconds: Any = 0.0, *, minutes: Any = 0.0, hours: Any = 0.0) -> float:
        """Move the simulated clock forward by the sum; return the new simulated time.

        :raises SettingError: on a non-finite part, a negative sum, or a jump past the year 9999;
            the clock is then left alone.
        """
        parts = {
            name: finite_number(value, name, minimum=-MAX_EPOCH, maximum=MAX_EPOCH) * unit
            for name, value, unit in (
                ("seconds", seconds, 1),
                ("minutes", minutes, 60),
                ("hours", hours, 3600),
            )
        }
        total = sum(parts.values())
        largest = max(parts, key=lambda name: abs(parts[name]))
        if total < 0:
            raise SettingError(largest, f"cannot move the clock backwards ({_show(total)} seconds)")
        with self._lock:
            if self.clock.now() + total > MAX_EPOCH:
                raise SettingError(largest, f"{largest}: cannot move the clock past the year 9999")
            self.clock.advance(total)
            return self.clock.now()

    # -- ids

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _scenario_key(self) -> str:
        while True:
            key = f"{self._rng.getrandbits(128):032X}"
            if key not in self._scenarios:
                return key

    def _derived_id(self, message_id: str, index: int) -> str:
        digest = hashlib.blake2b(f"{self.config.seed}|{message_id}|{index}".encode(), digest_size=16).digest()
        return str(uuid.UUID(bytes=digest, version=4))

    def _fraction(self, *parts: object) -> float:
        digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    # -- request accounting, faults, rate limits, auth

    def count_request(self, endpoint: str) -> None:
        """Count one received request on ``endpoint``."""
        with self._lock:
            self._requests[endpoint] += 1

    def count_response(self, endpoint: str, status: int) -> None:
        """Count one answer (``endpoint status``)."""
        with self._lock:
            self._responses[f"{endpoint} {status}"] += 1

    @contextlib.contextmanager
    def serving(self, endpoint: str) -> Iterator[int]:
        """Count a request of ``endpoint`` as in flight while the block runs (``max_in_flight``);
        yield the generation it arrived in.  One that ends after a reset is not counted down."""
        with self._lock:
            generation = self.generation
            self._in_flight[endpoint] += 1
            self._max_in_flight[endpoint] = max(self._max_in_flight[endpoint], self._in_flight[endpoint])
        try:
            yield generation
        finally:
            with self._lock:
                if generation == self.generation:
                    self._in_flight[endpoint] -= 1

    def record_send(
        self,
        generation: int,
        *,
        received: float,
        answered: float,
        bulk_id: str | None,
        destinations: int,
        status: int,
    ) -> None:
        """Keep the record of an answered ``POST /omni/1/advanced`` (see :meth:`sends`), unless the
        sandbox was reset since it arrived in ``generation``."""
        record = {
            "received": received,
            "answered": answered,
            "bulk_id": bulk_id,
            "destinations": destinations,
            "status": status,
        }
        with self._lock:
            if generation == self.generation:
                self._sends.append(record)

    def add_fault(self, **kwargs: Any) -> dict[str, Any]:
        """Add a :class:`Fault` (keyword arguments as its fields); return it as JSON.

        :raises SettingError: naming a bad option.
        """
        fault = make_fault(kwargs)
        with self._lock:
            return self._install_fault(fault)

    def _install_fault(self, fault: Fault) -> dict[str, Any]:
        self._fault_seq += 1
        fault.id = self._fault_seq
        self._faults.append(fault)
        return fault.public()

    def clear_faults(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._faults.clear()

    def faults(self) -> list[dict[str, Any]]:
        """Return the active faults."""
        with self._lock:
            return [fault.public() for fault in self._faults]

    def pick_fault(self, endpoint: str) -> Fault | None:
        """Return the fault that fires on this call of ``endpoint``, if any (consumes ``times``)."""
        with self._lock:
            for fault in list(self._faults):
                if fault.endpoint not in ("*", endpoint):
                    continue
                if fault.rate is not None and self._fault_rng.random() >= fault.rate:
                    continue
                fault.fired += 1
                self._faults_fired[endpoint] += 1
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                return fault
            return None

    def check_rate_limit(self, endpoint: str) -> None:
        """Raise a 429 :class:`SandboxError` (with ``Retry-After``) when ``endpoint`` is over its limit."""
        with self._lock:
            limit = self.config.rate_limits.get(endpoint)
            if not self.config.rate_limits_enabled or limit is None:
                return
            count, window = limit
            now = time.monotonic()
            calls = self._rate_windows.setdefault(endpoint, deque())
            while calls and calls[0] <= now - window:
                calls.popleft()
            if len(calls) >= count:
                self._rate_limited[endpoint] += 1
                retry_after = max(1, math.ceil(calls[0] + window - now)) if calls else math.ceil(window)
                raise SandboxError(
                    429, "TOO_MANY_REQUESTS", "Too many requests", headers={"Retry-After": str(retry_after)}
                )
            calls.append(now)

    def authenticate(self, header: str | None) -> bool:
        """Tell whether an ``Authorization`` header is valid (App key, Basic, or a live Bearer token)."""
        if not header:
            return False
        scheme, _, credentials = header.strip().partition(" ")
        credentials = credentials.strip()
        scheme = scheme.lower()
        config = self.config
        if scheme == "app":
            return credentials == config.api_key
        if scheme == "basic":
            import base64
            import binascii

            try:
                decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return False
            user, _, password = decoded.partition(":")
            return user == config.username and password == config.basic_password
        if scheme == "bearer":
            with self._lock:
                expiry = self._tokens.get(credentials)
                return expiry is not None and expiry > time.monotonic()
        return False

    def issue_token(self, form: Mapping[str, str]) -> dict[str, Any]:
        """Answer ``POST /auth/1/oauth2/token`` (client credentials grant)."""
        if form.get("grant_type") != "client_credentials":
            raise bad_request("grant_type", "grant_type must be client_credentials")
        config = self.config
        if (
            form.get("client_id") != config.client_id
            or form.get("client_secret") != config.oauth_client_secret
        ):
            raise SandboxError(401, "UNAUTHORIZED", "Invalid login details")
        with self._lock:
            now = time.monotonic()
            self._tokens = {t: e for t, e in self._tokens.items() if e > now}
            token = f"sbx-{self._uuid()}"
            self._tokens[token] = now + config.token_ttl
        return {"access_token": token, "expires_in": int(config.token_ttl), "token_type": "Bearer"}

    # -- scenarios

    def _scenario_body(self, scenario: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {"key": scenario["key"]}
        if scenario["name"] is not None:  # a scenario created without a name has none, not null
            body["name"] = scenario["name"]
        body["flow"] = [dict(step) for step in scenario["flow"]]
        body["default"] = scenario["default"]
        return body

    def _parse_scenario(self, payload: Any) -> dict[str, Any]:
        from airflow_provider_omni.models import CreateOrUpdateScenarioRequest, to_payload

        request = validate_model(CreateOrUpdateScenarioRequest, payload)
        body = to_payload(request)
        channels = [step["channel"] for step in body["flow"]]
        repeated = sorted({c for c in channels if channels.count(c) > 1})
        if repeated:
            raise bad_request("flow", f"a channel may appear once in a flow; repeated: {', '.join(repeated)}")
        return body

    def _make_default(self, key: str) -> None:
        for scenario in self._scenarios.values():
            scenario["default"] = scenario["key"] == key

    def list_scenarios(self, is_default: bool | None, limit: int, page: int) -> dict[str, Any]:
        """Answer ``GET /omni/1/scenarios``."""
        with self._lock:
            chosen = [s for s in self._scenarios.values() if is_default is None or s["default"] == is_default]
            window = chosen[page * limit : (page + 1) * limit]
            return {"scenarios": [self._scenario_body(s) for s in window]}

    def create_scenario(self, payload: Any) -> dict[str, Any]:
        """Answer ``POST /omni/1/scenarios`` (the first scenario becomes the default)."""
        body = self._parse_scenario(payload)
        with self._lock:
            key = self._scenario_key()
            scenario = {"key": key, "name": body.get("name"), "flow": body["flow"], "default": False}
            self._scenarios[key] = scenario
            if body.get("default") or not any(s["default"] for s in self._scenarios.values()):
                self._make_default(key)
            return self._scenario_body(scenario)

    def get_scenario(self, key: str) -> dict[str, Any]:
        """Answer ``GET /omni/1/scenarios/{key}``."""
        with self._lock:
            return self._scenario_body(self._find_scenario(key))

    def update_scenario(self, key: str, payload: Any) -> dict[str, Any]:
        """Answer ``PUT /omni/1/scenarios/{key}``."""
        with self._lock:
            scenario = self._find_scenario(key)
        body = self._parse_scenario(payload)
        with self._lock:
            scenario["flow"] = body["flow"]
            if "name" in body:
                scenario["name"] = body["name"]
            if body.get("default") is True:
                self._make_default(key)
            elif body.get("default") is False:
                scenario["default"] = False
            return self._scenario_body(scenario)

    def _find_scenario(self, key: str) -> dict[str, Any]:
        scenario = self._scenarios.get(key) or self._scenarios.get(key.upper())
        if scenario is None:
            raise SandboxError(404, "NOT_FOUND", f"Scenario {key} not found")
        return scenario

    # -- sending

    def send_advanced(self, payload: Any, *, accept: bool = True) -> dict[str, Any]:
        """Answer ``POST /omni/1/advanced``: accept every destination and simulate its failover.

        :param accept: False computes the same answer (new ids included) but records nothing: no
            message, log, report or count (for answer faults without ``process``).
        """
        from airflow_provider_omni.models import OmniAdvancedRequest

        request = validate_model(OmniAdvancedRequest, payload)
        with self._lock:
            self._maybe_sweep()
            flow = self._flow_for(request.scenario_key)
            texts, validities = self._content(payload, request, flow)
            now = self.clock.now()
            start = max(now, request.send_at.timestamp()) if request.send_at else now
            bulk_id = request.bulk_id or self._uuid()
            styles = frozenset(self.config.report_style)
            sms_text = texts.get("SMS")
            submission = Submission(
                bulk_id=bulk_id,
                texts=texts,
                styles=styles,
                callback_data=request.callback_data,
                notify=request.notify is not False,
                sms_segments=sms_segments(sms_text) if sms_text else 1,
            )
            seen: set[str] = set()
            messages = [
                self._accept(destination, flow, validities, submission, start, seen if not accept else None)
                for destination in request.destinations
            ]
            if accept:
                self._advanced_requests += 1
                self._recent_requests.append(
                    {"endpoint": "advanced", "body": payload, "receivedAt": format_time(now)}
                )
                self._bulk_sizes[bulk_id] = self._bulk_sizes.get(bulk_id, 0) + len(messages)
            response: dict[str, Any] = {}
            if request.bulk_id is not None or len(messages) > 1:
                response["bulkId"] = bulk_id
            response["messages"] = [
                {
                    "to": address,
                    "status": message.rejected or catalog.PENDING_ENROUTE,
                    "messageId": message.message_id,
                }
                for message, address in messages
            ]
            return response

    def _flow_for(self, scenario_key: str | None) -> list[tuple[str, str | None]]:
        if scenario_key is None:
            scenario = next((s for s in self._scenarios.values() if s["default"]), None)
            if scenario is None:
                raise bad_request(
                    "scenarioKey", "no scenarioKey given and the account has no default scenario"
                )
        else:
            scenario = self._scenarios.get(scenario_key) or self._scenarios.get(scenario_key.upper())
            if scenario is None:
                raise bad_request("scenarioKey", f"unknown scenario key {scenario_key}")
        return [(step["channel"], step.get("from")) for step in scenario["flow"]]

    def _content(
        self, payload: Mapping[str, Any], request: Any, flow: list[tuple[str, str | None]]
    ) -> tuple[dict[str, str | None], dict[str, float]]:
        texts: dict[str, str | None] = {}
        validities: dict[str, float] = {}
        for channel, _sender in flow:
            block = payload.get(catalog.CONTENT_FIELD.get(channel, ""))
            if not isinstance(block, Mapping):
                continue
            texts[channel] = block.get("text") or block.get("imageURL") or block.get("fileUrl") or ""
            model_block = getattr(request, {"VIBER": "viber", "SMS": "sms"}.get(channel, "_"), None)
            validity = model_block.validity() if model_block is not None else None
            default = self.config.default_validity.get(
                channel, self.config.default_validity.get("*", 172800.0)
            )
            validities[channel] = validity.total_seconds() if validity is not None else default
        if not texts:
            channels = ", ".join(channel for channel, _ in flow)
            raise bad_request(
                "request", f"no content for any channel of the scenario ({channels}): give e.g. viber and sms"
            )
        return texts, validities

    def _accept(
        self,
        destination: Any,
        flow: list[tuple[str, str | None]],
        validities: dict[str, float],
        submission: Submission,
        start: float,
        dry_run_ids: set[str] | None = None,
    ) -> tuple[Message, dict[str, Any]]:
        """Build one destination's message and store it, or (``dry_run_ids`` given: the ids seen so
        far in this request) build it only."""
        to_fields = {k: v for k, v in destination.to.model_dump(by_alias=True).items() if v is not None}
        message_id = destination.message_id or self._uuid()
        address = to_fields.get("phoneNumber") or next(iter(to_fields.values()))
        if dry_run_ids is None:
            seen = self._record_message_id(message_id)
            self._seq += 1
        else:
            seen = message_id in self._id_counts or message_id in dry_run_ids
            dry_run_ids.add(message_id)
        message = Message(
            seq=self._seq,
            message_id=message_id,
            to=address,
            sent_at=start,
            submission=submission,
            attempts=[],
            mcc_mnc=catalog.mcc_mnc_for(address) if "phoneNumber" in to_fields else "",
            accepted_real=time.monotonic(),
        )
        steps = [
            (channel, sender)
            for channel, sender in flow
            if channel in validities
            and any(to_fields.get(f) for f in catalog.ADDRESS_FIELDS.get(channel, catalog.PHONE_ONLY))
        ]
        if seen and self.config.reject_duplicate_message_ids:
            message.rejected = catalog.REJECTED_DUPLICATE_MESSAGE_ID
        if message.rejected is not None or not steps:
            channel, sender = steps[0] if steps else flow[0]
            message.attempts = [Attempt(channel, sender, start, start, catalog.ABSENT, message_id)]
            if not steps:
                message.rejected = _REJECTED_DESTINATION
        else:
            message.attempts = self.timeline(message, steps, validities, start)
        if dry_run_ids is None:
            self._store(message)
        return message, to_fields

    def timeline(
        self,
        message: Message,
        steps: list[tuple[str, str | None]],
        validities: dict[str, float],
        start: float,
    ) -> list[Attempt]:
        """Return the simulated failover of ``message`` over ``steps`` (channel, sender) from
        ``start``: the persona of ``message.to`` decides each step; it stops at the first delivery."""
        persona = self.config.persona_of(message.to)
        low, high = self.config.delivery_delay
        fallback_ids = "fallback_new_message_id" in message.submission.styles
        attempts: list[Attempt] = []
        moment = start
        for index, (channel, sender) in enumerate(steps):
            behaviour = catalog.behaviour_of(persona, channel)
            delay = low + (high - low) * self._fraction(
                self.config.seed, message.message_id, message.to, index
            )
            validity = validities[channel]
            if behaviour == catalog.SILENT or (behaviour == catalog.DELIVER and delay > validity):
                behaviour, end = catalog.SILENT, moment + validity
            else:
                end = moment + delay
            step_id = (
                self._derived_id(message.message_id, index) if fallback_ids and index else message.message_id
            )
            attempts.append(Attempt(channel, sender, moment, end, behaviour, step_id))
            if behaviour == catalog.DELIVER:
                break
            moment = end
        return attempts

    def _record_message_id(self, message_id: str) -> bool:
        self._destinations += 1
        count = self._id_counts.get(message_id, 0) + 1
        self._id_counts[message_id] = count
        if count == 1:
            self._distinct_ids += 1
            return False
        self._duplicates[message_id] = count
        return True

    def _store(self, message: Message) -> None:
        self._messages[message.seq] = message
        self._by_bulk.setdefault(message.submission.bulk_id, {})[message.seq] = message
        for attempt_id in {a.message_id for a in message.attempts}:
            self._by_id.setdefault(attempt_id, {})[message.seq] = message
        if message.submission.notify:
            self._pending[message.seq] = message
        if len(self._messages) > self.config.max_logs:
            self._forget(next(iter(self._messages.values())))

    def _forget(self, message: Message) -> None:
        self._messages.pop(message.seq, None)
        self._pending.pop(message.seq, None)
        bulk = self._by_bulk.get(message.submission.bulk_id)
        if bulk is not None:
            bulk.pop(message.seq, None)
            if not bulk:
                del self._by_bulk[message.submission.bulk_id]
        for attempt_id in {a.message_id for a in message.attempts}:
            same = self._by_id.get(attempt_id)
            if same is not None:
                same.pop(message.seq, None)
                if not same:
                    del self._by_id[attempt_id]
        if self._id_counts.get(message.message_id) == 1:
            del self._id_counts[message.message_id]

    def _maybe_sweep(self) -> None:
        now = self.clock.now()
        retention = self.config.log_retention_hours * 3600.0
        if now - self._last_sweep < retention / 48.0:
            return
        self._last_sweep = now
        for message in [m for m in self._messages.values() if m.done_at + retention < now]:
            self._forget(message)

    # -- reports

    def take_reports(
        self,
        bulk_id: str | None = None,
        message_id: str | None = None,
        channel: str | None = None,
        limit: int = 50,
    ) -> dict[str, Any]:
        """Answer ``GET /omni/1/reports``: hand out available reports once, filtered, at most ``limit``."""
        with self._lock:
            self._maybe_sweep()
            now = self.clock.now()
            results: list[dict[str, Any]] = []
            for message in list(self._candidates(bulk_id, message_id)):
                if len(results) >= limit:
                    break
                events = message.events()
                for index, event in enumerate(events):
                    if event.time > now or len(results) >= limit:
                        break
                    if message.consumed >> index & 1:
                        continue
                    if not self._report_matches(message, event, bulk_id, message_id, channel):
                        continue
                    message.consumed |= 1 << index
                    results.append(self._report(message, event))
                if message.consumed == (1 << len(events)) - 1:
                    self._pending.pop(message.seq, None)
            self._reports_handed_out += len(results)
            return {"results": results}

    def _candidates(self, bulk_id: str | None, message_id: str | None) -> Iterable[Message]:
        if message_id is not None:
            chosen = self._by_id.get(message_id, {})
        elif bulk_id is not None:
            chosen = self._by_bulk.get(bulk_id, {})
        else:
            return self._pending.values()
        return [m for m in chosen.values() if m.seq in self._pending]

    @staticmethod
    def _report_matches(
        message: Message, event: Event, bulk_id: str | None, message_id: str | None, channel: str | None
    ) -> bool:
        return (
            (bulk_id is None or message.submission.bulk_id == bulk_id)
            and (message_id is None or event.attempt.message_id == message_id)
            and (channel is None or event.attempt.channel == channel)
        )

    def _price(self, channel: str, behaviour: str, final: bool) -> float:
        if behaviour in (catalog.UNKNOWN_USER, catalog.SILENT) and final:
            return 0.0
        return self.config.prices.get(channel, self.config.prices.get("*", 0.0))

    def _report(self, message: Message, event: Event) -> dict[str, Any]:
        attempt = event.attempt
        report: dict[str, Any] = {
            "bulkId": message.submission.bulk_id,
            "messageId": attempt.message_id,
            "to": message.to,
            "sentAt": format_time(
                message.sent_at if attempt.message_id == message.message_id else attempt.start
            ),
            "doneAt": format_time(event.time),
            "messageCount": message.submission.sms_segments if attempt.channel == "SMS" else 1,
            "mccMnc": message.mcc_mnc,
            "price": {
                "pricePerMessage": 0.0
                if message.rejected
                else self._price(attempt.channel, attempt.behaviour, True),
                "currency": catalog.CURRENCY,
            },
            "status": event.status,
            "error": event.error,
            "channel": attempt.channel,
        }
        if message.submission.callback_data is not None:
            report["callbackData"] = message.submission.callback_data
        return report

    # -- logs

    def logs(
        self,
        *,
        sender: str | None = None,
        to: str | None = None,
        bulk_ids: Sequence[str] = (),
        message_ids: Sequence[str] = (),
        general_status: str | None = None,
        channel: str | None = None,
        sent_since: float | None = None,
        sent_until: float | None = None,
        limit: int = 50,
        mcc: str | None = None,
        mnc: str | None = None,
    ) -> dict[str, Any]:
        """Answer ``GET /omni/1/logs``: re-readable rows, newest accepted first, with the document's
        filters; stops at ``limit`` rows.  A message shows only ``logs_lag`` real seconds after its
        acceptance."""
        with self._lock:
            self._maybe_sweep()
            now = self.clock.now()
            visible_until = time.monotonic() - self.config.logs_lag
            wanted_to = to.lstrip("+") if to else None
            rows: list[dict[str, Any]] = []
            for message in self._log_candidates(bulk_ids, message_ids):
                if len(rows) >= limit:
                    break
                if message.accepted_real > visible_until:  # logs_lag: not in the logs yet
                    continue
                if wanted_to is not None and message.to != wanted_to:
                    continue
                if (sent_since is not None and message.sent_at < sent_since) or (
                    sent_until is not None and message.sent_at > sent_until
                ):
                    continue
                if mcc is not None and message.mcc_mnc[:3] != mcc:
                    continue
                if mnc is not None and message.mcc_mnc[3:] != mnc:
                    continue
                row = self._log_row(message, now)
                if sender is not None and row.get("from") != sender:
                    continue
                if general_status is not None and row["status"]["groupName"] != general_status:
                    continue
                if channel is not None and row["channel"] != channel:
                    continue
                rows.append(row)
            return {"results": rows}

    def _log_candidates(self, bulk_ids: Sequence[str], message_ids: Sequence[str]) -> Iterator[Message]:
        if not bulk_ids and not message_ids:
            yield from reversed(self._messages.values())
            return
        chosen: dict[int, Message] = {}
        for bulk_id in bulk_ids:
            chosen.update(self._by_bulk.get(bulk_id, {}))
        if message_ids:
            by_id: dict[int, Message] = {}
            for message_id in message_ids:
                by_id.update(
                    {s: m for s, m in self._by_id.get(message_id, {}).items() if m.message_id == message_id}
                )
            chosen = {s: m for s, m in by_id.items() if not bulk_ids or s in chosen}
        yield from (chosen[seq] for seq in sorted(chosen, reverse=True))

    def _log_row(self, message: Message, now: float) -> dict[str, Any]:
        current = message.attempts[0]
        for attempt in message.attempts:
            if attempt.start <= now:
                current = attempt
        row: dict[str, Any] = {
            "bulkId": message.submission.bulk_id,
            "messageId": message.message_id,
            "to": message.to,
        }
        if current.sender is not None:
            row["from"] = current.sender
        text = message.submission.texts.get(current.channel)
        if text:
            row["text"] = text
        row["sentAt"] = format_time(message.sent_at)
        final = now >= message.done_at
        if final:
            row["doneAt"] = format_time(message.done_at)
        row["messageCount"] = message.submission.sms_segments if current.channel == "SMS" else 1
        row["mccMnc"] = message.mcc_mnc
        if final:
            price = 0.0 if message.rejected else self._price(current.channel, current.behaviour, True)
            row["price"] = {"pricePerMessage": price, "currency": catalog.CURRENCY}
            row["status"] = message.rejected or catalog.OUTCOMES[current.behaviour][0]
        else:
            row["status"] = catalog.PENDING_ENROUTE
        row["channel"] = current.channel
        return row

    # -- inspection

    def stats(self) -> dict[str, Any]:
        """Return what was received: requests per endpoint, destinations, message ids, bulks, ..."""
        with self._lock:
            return {
                "requests": dict(self._requests),
                "responses": dict(self._responses),
                "faults_fired": dict(self._faults_fired),
                "rate_limited": dict(self._rate_limited),
                "advanced_requests": self._advanced_requests,
                "destinations": self._destinations,
                "distinct_message_ids": self._distinct_ids,
                "duplicate_message_ids": dict(self._duplicates),
                "bulks": dict(self._bulk_sizes),
                "reports_handed_out": self._reports_handed_out,
                "max_in_flight": dict(self._max_in_flight),
                "messages_with_pending_reports": len(self._pending),
                "messages_logged": len(self._messages),
                "scenarios": len(self._scenarios),
                "messages_api": self.messages_api.stats(),
                "simulated_now": format_time(self.clock.now()),
                "time_scale": self.clock.scale,
            }

    def recent_requests(self) -> list[dict[str, Any]]:
        """Return the bodies of the last (at most 100) accepted ``POST /omni/1/advanced`` requests."""
        with self._lock:
            return list(self._recent_requests)

    def sends(self) -> list[dict[str, Any]]:
        """Return the answered ``POST /omni/1/advanced`` since the last reset (at most the last
        :data:`MAX_SEND_RECORDS`), oldest first: ``received`` and ``answered`` (epoch seconds, real
        time), ``bulk_id``, ``destinations`` and ``status``."""
        with self._lock:
            return list(self._sends)


_REJECTED_DESTINATION: dict[str, Any] = {
    "groupId": 5,
    "groupName": "REJECTED",
    "id": 52,
    "name": "REJECTED_DESTINATION",
    "description": "No step of the scenario can reach this destination",
    "action": "Give an address (phoneNumber, emailAddress, ...) and content for a channel of the flow",
}

_GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€"
)


def sms_segments(text: str) -> int:
    """Return how many SMS parts ``text`` needs (GSM-7: 160/153, otherwise UCS-2: 70/67)."""
    single, multi = (160, 153) if set(text) <= _GSM7 else (70, 67)
    length = len(text)
    return 1 if length <= single else math.ceil(length / multi)
