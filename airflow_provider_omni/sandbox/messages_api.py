"""Infobip's Messages API (``/messages-api/1/...``) in the sandbox, without any HTTP: checking a
send body (with the violations of Infobip's ``ApiError``), accepting its messages on the sandbox's
simulated timeline, and handing out their delivery reports once.

The outcome of a message follows the same personas (last digit of the number) and clock as OMNI's:
``VIBER_BM`` behaves as OMNI's ``VIBER`` (:data:`~.catalog.PERSONA_CHANNEL`), each step of
``failover`` is tried in order after a failed one, and the step that delivers ends the flow.
Messages API messages are kept apart from OMNI's: ``/omni/1/reports`` and ``/omni/1/logs`` do not
show them, and ``/messages-api/1/reports`` shows nothing of OMNI's.
"""

from __future__ import annotations

import random
import threading
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_omni.sandbox import catalog
from airflow_provider_omni.sandbox.state import (
    Attempt,
    Event,
    Message,
    SandboxError,
    Submission,
    format_time,
    parse_time,
    sms_segments,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from airflow_provider_omni.sandbox.state import SandboxState

#: Endpoint names (faults, stats) of the three Messages API operations.
ENDPOINT_PATHS: dict[tuple[str, str], str] = {
    ("POST", "/messages-api/1/messages"): "messages",
    ("POST", "/messages-api/1/messages/validate"): "messages.validate",
    ("GET", "/messages-api/1/reports"): "messages.reports",
}
ENDPOINTS = frozenset(ENDPOINT_PATHS.values())
#: The ``x-scopes`` of the three operations: any one of them lets a key in.
SCOPES = ("message:send", "messages-api:message:send", "messages-api:manage")
#: ``OutboundMessageChannel`` (also the ``Channel`` of the reports' filter).
CHANNELS = (
    "APPLE_MB",
    "INSTAGRAM_DM",
    "LINE_ON",
    "MESSENGER",
    "MMS",
    "RCS",
    "SMS",
    "VIBER_BM",
    "VIBER_BOT",
    "WHATSAPP",
)
#: ``OutboundTemplateChannel``: the channels of template messages.
TEMPLATE_CHANNELS = ("APPLE_MB", "RCS", "VIBER_BM", "WHATSAPP")
BODY_TYPES = (
    "TEXT",
    "IMAGE",
    "VIDEO",
    "DOCUMENT",
    "RICH_LINK",
    "AUTHENTICATION_REQUEST",
    "LIST",
    "CAROUSEL",
    "LOCATION",
    "CONTACT",
    "STICKER",
    "PRODUCT",
    "MIXED",
    "FLOW",
    "TIME_PICKER",
    "ORDER_REQUEST",
    "ORDER_STATUS",
    "FORM",
)
#: Body types and the field each one requires besides ``type`` (the others are not checked deep).
BODY_REQUIRED = {"TEXT": "text", "IMAGE": "url", "VIDEO": "url", "DOCUMENT": "url"}
TIME_UNITS = {"SECONDS": 1.0, "MINUTES": 60.0, "HOURS": 3600.0}
TRAFFIC_TYPES = ("PROMOTIONAL", "TRANSACTIONAL")
#: Validity bounds (the spec's prose): at least 10 s; more than 48 h is set to 48 h.
MIN_VALIDITY = 10.0
MAX_VALIDITY = 48 * 3600.0
#: ``sendAt`` is at most 180 days ahead; reports are kept 48 h.
MAX_SEND_AHEAD = 180 * 86400.0
REPORT_RETENTION = 48 * 3600.0

_PROPERTIES = {
    "request": ("messages", "options"),
    "message": (
        "channel",
        "sender",
        "destinations",
        "content",
        "template",
        "options",
        "webhooks",
        "failover",
    ),
    "destination": ("to", "messageId", "byChannel"),
    "byChannel": ("channel", "to", "messageId"),
    "failover": ("channel", "sender", "content", "template", "validityPeriod"),
    "validityPeriod": ("amount", "timeUnit"),
    "webhooks": ("delivery", "contentType", "callbackData", "seen"),
    "delivery": ("url", "intermediateReport", "receiveTriggeredFailoverReports"),
    "requestOptions": ("schedule", "tracking", "messageOrdering"),
    "schedule": ("bulkId", "sendAt", "sendingSpeedLimit"),
}
_ERROR_TEXTS: dict[int, tuple[str, str]] = {
    400: ("Request cannot be processed.", "Check the syntax, violations and adjust the request."),
    401: (
        "The request lacks valid authentication credentials for the requested resource.",
        "Check the resources and adjust authentication credentials.",
    ),
    403: (
        "Insufficient permissions to access the requested resource.",
        "Repeat the request with new or different credentials.",
    ),
    404: ("The requested resource was not found.", "Check the request URL."),
    405: ("The request method is not supported by the resource.", "Use a supported method."),
    429: ("Too many requests.", "Slow down and retry later."),
    500: ("Something went wrong.", "Try again later; contact support if the problem persists."),
}
_RESOURCES: dict[int, list[dict[str, str]]] = {
    401: [
        {"name": "API Authentication", "url": "https://www.infobip.com/docs/essentials/api-authentication"}
    ],
    403: [
        {
            "name": "API Scopes",
            "url": "https://www.infobip.com/docs/essentials/api-essentials/api-authorization#api-scopes",
        }
    ],
}
_VALIDATION_OK = (
    "Request can be sent through '/messages' endpoint and should be accepted by our platform.",
    "No action is required, but it is recommended to check and address any violations.",
)


# -- errors ----------------------------------------------------------------------------------------


def api_error_body(
    status: int,
    violations: Sequence[Mapping[str, str]] = (),
    description: str | None = None,
    skippable: Sequence[Mapping[str, str]] | None = None,
) -> dict[str, Any]:
    """Return the Messages API's error body ``{errorCode: "E<status>", description, action,
    violations, resources}`` (plus ``skippableViolations`` when given, for the validate route)."""
    default, action = _ERROR_TEXTS.get(status, ("Request failed.", "Try again later."))
    body: dict[str, Any] = {
        "errorCode": f"E{status}",
        "description": description or default,
        "action": action,
        "violations": [dict(v) for v in violations],
        "resources": list(_RESOURCES.get(status, [])),
    }
    if skippable is not None:
        body["skippableViolations"] = [dict(v) for v in skippable]
    return body


class ApiError(Exception):
    """A Messages API request refused with an ``ApiError`` body.

    :param status: HTTP status.
    :param violations: ``{property, violation}`` of each problem.
    :param skippable: problems that do not stop a send (unknown properties).
    """

    def __init__(
        self,
        status: int,
        violations: Sequence[Mapping[str, str]] = (),
        description: str | None = None,
        skippable: Sequence[Mapping[str, str]] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(description or f"E{status}")
        self.status = status
        self.violations = list(violations)
        self.description = description
        self.skippable = list(skippable)
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """Return the error body (``ApiError``, which also reads as a ``ValidationBadResponse``)."""
        return api_error_body(self.status, self.violations, self.description, self.skippable or None)

    @classmethod
    def of(cls, error: SandboxError) -> ApiError:
        """Translate an OMNI-style :class:`~.state.SandboxError` (bad JSON, a 429)."""
        violations = [
            {"property": name, "violation": text}
            for name, texts in error.validation_errors.items()
            for text in texts
        ]
        return cls(error.status, violations, headers=error.headers)


def scope_refusal(scopes: Sequence[str] | None) -> ApiError | None:
    """Return the 403 for a key with ``scopes`` (None: every scope), or None when it may call."""
    if scopes is None or set(scopes) & set(SCOPES):
        return None
    text = f"The API key lacks the scope of this operation; it needs one of: {', '.join(SCOPES)}."
    return ApiError(403, [{"property": "scope", "violation": text}], text)


# -- checking a request ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One channel of a message's flow: the primary channel or a failover step."""

    channel: str
    sender: str | None
    validity: float | None
    text: str | None


@dataclass(frozen=True, slots=True)
class Destination:
    """One destination: its messageId (if given) and its address per channel."""

    message_id: str | None
    addresses: dict[str, str]


@dataclass(slots=True)
class MessageRequest:
    """One checked ``messages[]`` item."""

    steps: list[Step]
    destinations: list[Destination]
    callback_data: str | None = None
    per_step_reports: bool = False
    platform: dict[str, str] | None = None
    campaign_reference_id: str | None = None


@dataclass(slots=True)
class SendRequest:
    """A checked send body."""

    messages: list[MessageRequest]
    bulk_id: str | None
    send_at: float | None
    skippable: list[dict[str, str]] = field(default_factory=list)


class _Checker:
    """Collects violations (fatal) and skippable violations (unknown properties) by path."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.violations: list[dict[str, str]] = []
        self.skippable: list[dict[str, str]] = []

    def add(self, path: str, text: str) -> None:
        self.violations.append({"property": path, "violation": text})

    def obj(self, value: Any, path: str, kind: str | None = None) -> dict[str, Any] | None:
        if value is None:
            self.add(path, "must not be null")
        elif not isinstance(value, dict):
            self.add(path, "must be an object")
        else:
            for name in value if kind else ():
                if name not in _PROPERTIES[str(kind)]:
                    self.skippable.append({"property": f"{path}.{name}", "violation": "Unknown property"})
            return value
        return None

    def array(self, value: Any, path: str, *, required: bool = False) -> list[Any]:
        if not isinstance(value, list):
            self.add(path, "must be an array")
            return []
        if required and not value:
            self.add(path, "must not be empty")
        return value

    def text(self, holder: Mapping[str, Any], name: str, path: str, **rules: Any) -> str | None:
        """Check the optional text ``holder[name]`` (``required``, ``min_length``, ``max_length``)."""
        where = f"{path}.{name}"
        if name not in holder:
            if rules.get("required"):
                self.add(where, "must not be null")
            return None
        value = holder[name]
        if not isinstance(value, str):
            self.add(where, "must be a string" if value is not None else "must not be null")
            return None
        low, high = rules.get("min_length", 0), rules.get("max_length")
        if len(value) < low or (high is not None and len(value) > high):
            self.add(where, f"size must be between {low} and {high if high is not None else 'any'}")
        elif rules.get("required") and not value.strip():
            self.add(where, "must not be blank")
        return value

    def choice(self, holder: Mapping[str, Any], name: str, path: str, allowed: Sequence[str]) -> str | None:
        value = self.text(holder, name, path, required=True)
        if value is not None and value not in allowed:
            self.add(f"{path}.{name}", f"must be one of {', '.join(allowed)}")
            return None
        return value

    def flag(self, holder: Mapping[str, Any], name: str, path: str) -> bool | None:
        value = holder.get(name)
        if name in holder and not isinstance(value, bool):
            self.add(f"{path}.{name}", "must be a boolean")
            return None
        return value

    def validity(self, value: Any, path: str) -> float | None:
        """Return a ``ValidityPeriod`` in seconds, capped at 48 h; at least 10 s."""
        period = self.obj(value, path, "validityPeriod")
        if period is None:
            return None
        amount = period.get("amount")
        unit = period.get("timeUnit", "MINUTES")
        if not isinstance(unit, str) or unit not in TIME_UNITS:
            self.add(f"{path}.timeUnit", f"must be one of {', '.join(TIME_UNITS)}")
            return None
        if isinstance(amount, bool) or not isinstance(amount, int) or not -(2**31) <= amount < 2**31:
            self.add(f"{path}.amount", "must be an int32 integer")
            return None
        seconds = amount * TIME_UNITS[unit]
        if seconds < MIN_VALIDITY:
            self.add(path, "validity period must be at least 10 seconds")
            return None
        return min(seconds, MAX_VALIDITY)

    def content(self, value: Any, path: str) -> str | None:
        """Check a ``MessagesApiMessageContent``; return its text (or media URL) if any."""
        content = self.obj(value, path)
        if content is None:
            return None
        body = self.obj(content.get("body"), f"{path}.body") if "body" in content else None
        if "body" not in content:
            self.add(f"{path}.body", "must not be null")
        if "buttons" in content:
            self.array(content["buttons"], f"{path}.buttons")
        if body is None:
            return None
        kind = self.choice(body, "type", f"{path}.body", BODY_TYPES)
        needed = BODY_REQUIRED.get(kind or "")
        if needed is None:
            return None
        return self.text(body, needed, f"{path}.body", required=True)


def _known(value: Any, name: str) -> Any:
    return value.get(name) if isinstance(value, dict) else None


def check_request(payload: Any, now: float) -> SendRequest:
    """Check a send (or validate) body; return it parsed.

    :raises ApiError: 400 with every violation found (and the skippable ones).
    """
    checker = _Checker(now)
    body = checker.obj(payload, "request", "request")
    parsed = SendRequest([], None, None)
    if body is not None:
        if "messages" not in body:
            checker.add("messages", "must not be null")
        items = checker.array(body.get("messages"), "messages", required=True) if "messages" in body else []
        parsed.messages = [
            m for i, item in enumerate(items) if (m := _check_message(checker, item, f"messages[{i}]"))
        ]
        if "options" in body:
            _check_request_options(checker, body["options"], parsed)
    parsed.skippable = checker.skippable
    if checker.violations:
        raise ApiError(400, checker.violations, skippable=checker.skippable)
    return parsed


def _check_request_options(checker: _Checker, value: Any, parsed: SendRequest) -> None:
    options = checker.obj(value, "options", "requestOptions")
    if options is not None:
        _check_flags_and_texts(checker, options, "tracking", "options", _TRACKING)
        _check_flags_and_texts(checker, options, "messageOrdering", "options", _ORDERING)
    schedule = (
        checker.obj(options["schedule"], "options.schedule", "schedule")
        if options and "schedule" in options
        else None
    )
    if schedule is None:
        return
    parsed.bulk_id = checker.text(schedule, "bulkId", "options.schedule", max_length=100)
    if "sendingSpeedLimit" in schedule:
        _check_speed_limit(checker, schedule["sendingSpeedLimit"], "options.schedule.sendingSpeedLimit")
    send_at = checker.text(schedule, "sendAt", "options.schedule")
    if send_at is None:
        return
    try:
        moment = parse_time(send_at, "options.schedule.sendAt")
    except SandboxError:
        checker.add("options.schedule.sendAt", "must be a date-time like 2026-09-01T08:00:00.000+0000")
        return
    if moment > checker.now + MAX_SEND_AHEAD:
        checker.add("options.schedule.sendAt", "must be at most 180 days ahead")
    parsed.send_at = moment


#: ``UrlOptions`` and ``MessageOrderingOptions``: field to its type (``bool`` or ``str``).
_TRACKING = {
    "shortenUrl": bool,
    "trackClicks": bool,
    "trackingUrl": str,
    "removeProtocol": bool,
    "customDomain": str,
}
_ORDERING = {"respectOrder": bool, "stopOnFailure": bool}
SPEED_UNITS = ("MINUTE", "HOUR", "DAY")


def _check_flags_and_texts(
    checker: _Checker, parent: Mapping[str, Any], name: str, path: str, fields: Mapping[str, type]
) -> None:
    """Check the optional object ``parent[name]`` of booleans and texts."""
    where = f"{path}.{name}"
    holder = checker.obj(parent[name], where) if name in parent else None
    if holder is None:
        return
    for field_name, kind in fields.items():
        if field_name in holder and kind is bool:
            checker.flag(holder, field_name, where)
        elif field_name in holder:
            checker.text(holder, field_name, where)


def _check_speed_limit(checker: _Checker, value: Any, path: str) -> None:
    limit = checker.obj(value, path)
    if limit is None:
        return
    amount = limit.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int) or not -(2**31) <= amount < 2**31:
        checker.add(f"{path}.amount", "must be an int32 integer")
    if "timeUnit" in limit:
        checker.choice(limit, "timeUnit", path, SPEED_UNITS)


def _check_message(checker: _Checker, value: Any, path: str) -> MessageRequest | None:
    message = checker.obj(value, path, "message")
    if message is None:
        return None
    template = "template" in message
    if template:
        checker.obj(message["template"], f"{path}.template")
    channel = checker.choice(message, "channel", path, TEMPLATE_CHANNELS if template else CHANNELS)
    sender = checker.text(message, "sender", path)
    # a template message's content (parameters of the template) is not checked deep
    text = (
        checker.content(message["content"], f"{path}.content")
        if "content" in message and not template
        else None
    )
    if "content" not in message and not template:
        checker.add(f"{path}.content", "must not be null")
    options = checker.obj(message["options"], f"{path}.options") if "options" in message else None
    validity = _check_message_options(checker, options, f"{path}.options") if options else None
    steps = [Step(channel or "", sender, validity, text)]
    steps += _check_failover(checker, message, path, channel)
    if "destinations" not in message:
        checker.add(f"{path}.destinations", "must not be null")
    where = f"{path}.destinations"
    items = checker.array(message["destinations"], where, required=True) if "destinations" in message else []
    destinations = [
        d
        for j, item in enumerate(items)
        if (d := _check_destination(checker, item, f"{path}.destinations[{j}]", channel, len(steps) > 1))
    ]
    request = MessageRequest(steps, destinations)
    if options:
        request.platform = _known(options, "platform")
        request.campaign_reference_id = _known(options, "campaignReferenceId")
    if "webhooks" in message:
        _check_webhooks(checker, message["webhooks"], f"{path}.webhooks", request)
    return request if channel else None


def _check_message_options(checker: _Checker, options: dict[str, Any], path: str) -> float | None:
    platform = checker.obj(options["platform"], f"{path}.platform") if "platform" in options else None
    for name in ("entityId", "applicationId") if platform else ():
        checker.text(platform or {}, name, f"{path}.platform", max_length=255)
    checker.text(options, "campaignReferenceId", path)
    checker.text(options, "correlationData", path, min_length=1, max_length=100)
    checker.flag(options, "adaptationMode", path)
    if "trafficType" in options:
        checker.choice(options, "trafficType", path, TRAFFIC_TYPES)
    if "validityPeriod" not in options:
        return None
    return checker.validity(options["validityPeriod"], f"{path}.validityPeriod")


def _check_failover(checker: _Checker, message: dict[str, Any], path: str, primary: str | None) -> list[Step]:
    if "failover" not in message:
        return []
    steps: list[Step] = []
    seen = {primary}
    for k, item in enumerate(checker.array(message["failover"], f"{path}.failover")):
        where = f"{path}.failover[{k}]"
        entry = checker.obj(item, where, "failover")
        if entry is None:
            continue
        template = "template" in entry
        channel = checker.choice(entry, "channel", where, TEMPLATE_CHANNELS if template else CHANNELS)
        if channel is not None and channel in seen:
            what = "the primary channel" if channel == primary else "a channel of an earlier step"
            checker.add(f"{where}.channel", f"must not repeat {what} ({channel})")
        seen.add(channel)
        sender = checker.text(entry, "sender", where)
        text = (
            checker.content(entry["content"], f"{where}.content")
            if "content" in entry and not template
            else None
        )
        validity = (
            checker.validity(entry["validityPeriod"], f"{where}.validityPeriod")
            if "validityPeriod" in entry
            else None
        )
        steps.append(Step(channel or "", sender, validity, text))
    return steps


def _check_destination(
    checker: _Checker, value: Any, path: str, primary: str | None, failover: bool
) -> Destination | None:
    destination = checker.obj(value, path, "destination")
    if destination is None:
        return None
    message_id = checker.text(destination, "messageId", path, max_length=200)
    if "byChannel" not in destination:
        if failover:
            checker.add(f"{path}.byChannel", "must not be null when failover is used")
        to = checker.text(destination, "to", path, required=True)
        return Destination(message_id, {primary: to}) if to and primary else None
    addresses: dict[str, str] = {}
    for k, item in enumerate(checker.array(destination["byChannel"], f"{path}.byChannel", required=True)):
        where = f"{path}.byChannel[{k}]"
        entry = checker.obj(item, where, "byChannel")
        if entry is None:
            continue
        channel = checker.choice(entry, "channel", where, CHANNELS)
        to = checker.text(entry, "to", where, required=True)
        message_id = message_id or checker.text(entry, "messageId", where, max_length=200)
        if channel is not None and channel in addresses:
            checker.add(f"{where}.channel", f"only one destination per channel ({channel})")
        if channel and to:
            addresses[channel] = to
    if primary and primary not in addresses:
        checker.add(f"{path}.byChannel", f"must contain a destination for the main channel {primary}")
        return None
    return Destination(message_id, addresses)


def _check_webhooks(checker: _Checker, value: Any, path: str, request: MessageRequest) -> None:
    webhooks = checker.obj(value, path, "webhooks")
    if webhooks is None:
        return
    request.callback_data = checker.text(webhooks, "callbackData", path, max_length=4000)
    checker.text(webhooks, "contentType", path)
    delivery = (
        checker.obj(webhooks["delivery"], f"{path}.delivery", "delivery") if "delivery" in webhooks else None
    )
    if delivery is not None:
        checker.text(delivery, "url", f"{path}.delivery")
        checker.flag(delivery, "intermediateReport", f"{path}.delivery")
        request.per_step_reports = bool(
            checker.flag(delivery, "receiveTriggeredFailoverReports", f"{path}.delivery")
        )


# -- the store -------------------------------------------------------------------------------------


@dataclass(slots=True)
class ApiMessage:
    """One accepted destination: the sandbox's :class:`~.state.Message` (timeline, reports handed
    out) plus what the Messages API adds."""

    message: Message
    addresses: dict[str, str]
    platform: dict[str, str] | None
    campaign_reference_id: str | None


class MessagesApiStore:
    """The Messages API's accepted messages and their one-time reports (thread-safe).

    :param state: the sandbox state, for its configuration (personas, delays, default validity,
        seed), clock and timeline.
    """

    def __init__(self, state: SandboxState) -> None:
        self._state = state
        self._lock = threading.Lock()
        self._rng = random.Random(state.config.seed + 2)
        self._messages: dict[int, ApiMessage] = {}
        self._seq = 0
        self._accepted_requests = 0
        self._destinations = 0
        self._reports_handed_out = 0
        #: message id -> [destination, bulk id, times accepted]: the truth a test checks exactly once
        #: against (kept past the reports' 48 h, until a reset).
        self._accepted: dict[str, list[Any]] = {}

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def validate(self, payload: Any) -> dict[str, Any]:
        """Answer ``POST /messages-api/1/messages/validate``: check, send nothing.

        :raises ApiError: 400 with the violations.
        """
        request = check_request(payload, self._state.clock.now())
        description, action = _VALIDATION_OK
        return {"description": description, "action": action, "skippableViolations": request.skippable}

    def send(self, payload: Any, *, accept: bool = True) -> dict[str, Any]:
        """Answer ``POST /messages-api/1/messages``: accept every destination of every message.

        :param accept: False to compute the answer only, accepting nothing (a fault's wrong answer to
            a request that was not processed).
        :raises ApiError: 400 with the violations.
        """
        now = self._state.clock.now()
        request = check_request(payload, now)
        start = max(now, request.send_at) if request.send_at is not None else now
        with self._lock:
            bulk_id = request.bulk_id or self._uuid()
            if not accept:
                return {
                    "bulkId": bulk_id,
                    "messages": [
                        {
                            "messageId": destination.message_id or self._uuid(),
                            "status": dict(catalog.MESSAGE_ACCEPTED),
                            "destination": destination.addresses[item.steps[0].channel],
                        }
                        for item in request.messages
                        for destination in item.destinations
                    ],
                }
            answers = [
                self._accept(item, destination, bulk_id, start)
                for item in request.messages
                for destination in item.destinations
            ]
            self._accepted_requests += 1
            self._forget_oldest()
        return {"bulkId": bulk_id, "messages": answers}

    def _accept(
        self, item: MessageRequest, destination: Destination, bulk_id: str, start: float
    ) -> dict[str, Any]:
        primary = item.steps[0]
        address = destination.addresses[primary.channel]
        message_id = destination.message_id or self._uuid()
        texts = {step.channel: step.text or primary.text for step in item.steps}
        sms_text = texts.get("SMS")
        submission = Submission(
            bulk_id=bulk_id,
            texts=texts,
            styles=frozenset({"per_step" if item.per_step_reports else "final"}),
            callback_data=item.callback_data,
            notify=True,
            sms_segments=sms_segments(sms_text) if sms_text else 1,
        )
        self._seq += 1
        self._destinations += 1
        seen = self._accepted.setdefault(message_id, [address, bulk_id, 0])
        seen[2] += 1
        message = Message(self._seq, message_id, address, start, submission, [], catalog.mcc_mnc_for(address))
        message.attempts = self._state.timeline(
            message,
            [(step.channel, step.sender) for step in item.steps],
            {step.channel: self._validity(step) for step in item.steps},
            start,
        )
        addresses = {step.channel: destination.addresses.get(step.channel, address) for step in item.steps}
        self._messages[message.seq] = ApiMessage(
            message, addresses, item.platform, item.campaign_reference_id
        )
        return {"messageId": message_id, "status": dict(catalog.MESSAGE_ACCEPTED), "destination": address}

    def _validity(self, step: Step) -> float:
        """Return the step's validity: the request's, else the sandbox's default, at most 48 h."""
        if step.validity is not None:
            return step.validity
        defaults = self._state.config.default_validity
        channel = catalog.PERSONA_CHANNEL.get(step.channel, step.channel)
        return min(
            defaults.get(step.channel, defaults.get(channel, defaults.get("*", MAX_VALIDITY))), MAX_VALIDITY
        )

    def _forget_oldest(self) -> None:
        now = self._state.clock.now()
        for seq in [s for s, m in self._messages.items() if m.message.done_at + REPORT_RETENTION < now]:
            del self._messages[seq]
        while len(self._messages) > self._state.config.max_logs:
            del self._messages[next(iter(self._messages))]

    def take_reports(self, filters: Mapping[str, str | None], limit: int = 50) -> dict[str, Any]:
        """Answer ``GET /messages-api/1/reports``: the reports due now, each handed out once.

        :param filters: ``bulkId``, ``messageId``, ``channel``, ``entityId``, ``applicationId``,
            ``campaignReferenceId`` (None: any).
        """
        now = self._state.clock.now()
        results: list[dict[str, Any]] = []
        with self._lock:
            self._forget_oldest()
            for seq, item in list(self._messages.items()):
                if len(results) >= limit:
                    break
                if not _message_matches(item, filters):
                    continue
                results += self._take(item, filters.get("channel"), now, limit - len(results))
                events = item.message.events()
                if item.message.consumed == (1 << len(events)) - 1:
                    del self._messages[seq]
            self._reports_handed_out += len(results)
        return {"results": results}

    def _take(self, item: ApiMessage, channel: str | None, now: float, room: int) -> list[dict[str, Any]]:
        taken: list[dict[str, Any]] = []
        message = item.message
        for index, event in enumerate(message.events()):
            if event.time > now or len(taken) >= room:
                break
            if message.consumed >> index & 1 or (channel is not None and event.attempt.channel != channel):
                continue
            message.consumed |= 1 << index
            taken.append(self._report(item, event))
        return taken

    def _report(self, item: ApiMessage, event: Event) -> dict[str, Any]:
        message, attempt = item.message, event.attempt
        report: dict[str, Any] = {
            "event": "DELIVERY",
            "channel": attempt.channel,
            "sender": attempt.sender or "",
            "destination": item.addresses.get(attempt.channel, message.to),
            "sentAt": format_time(attempt.start),
            "doneAt": format_time(event.time),
            "bulkId": message.submission.bulk_id,
            "messageId": message.message_id,
            "messageCount": message.submission.sms_segments if attempt.channel == "SMS" else 1,
            "status": {k: v for k, v in event.status.items() if k != "action"},
            "error": dict(event.error),
        }
        if message.submission.callback_data is not None:
            report["callbackData"] = message.submission.callback_data
        if item.platform:
            report["platform"] = dict(item.platform)
        network = _network(attempt, item)
        if network is not None:
            report["mccMnc"] = network
        if item.campaign_reference_id is not None:
            report["campaignReferenceId"] = item.campaign_reference_id
        return report

    def stats(self) -> dict[str, Any]:
        """Return what the Messages API received and handed out."""
        with self._lock:
            return {
                "accepted_requests": self._accepted_requests,
                "destinations": self._destinations,
                "messages_with_pending_reports": len(self._messages),
                "reports_handed_out": self._reports_handed_out,
                "distinct_message_ids": len(self._accepted),
                "duplicate_message_ids": {m: a[2] for m, a in self._accepted.items() if a[2] > 1},
            }

    def accepted(self) -> list[dict[str, Any]]:
        """Return every message id accepted since the last reset: ``messageId``, ``destination``,
        ``bulkId`` (of its first acceptance) and ``times`` (more than 1: sent twice)."""
        with self._lock:
            return [
                {"messageId": m, "destination": a[0], "bulkId": a[1], "times": a[2]}
                for m, a in self._accepted.items()
            ]


def _message_matches(item: ApiMessage, filters: Mapping[str, str | None]) -> bool:
    platform = item.platform or {}
    wanted = {
        "bulkId": item.message.submission.bulk_id,
        "messageId": item.message.message_id,
        "entityId": platform.get("entityId"),
        "applicationId": platform.get("applicationId"),
        "campaignReferenceId": item.campaign_reference_id,
    }
    return all(filters.get(name) is None or filters.get(name) == value for name, value in wanted.items())


def _network(attempt: Attempt, item: ApiMessage) -> int | None:
    """Return the illustrative ``mccMnc`` (an int32 here) of the step's number, if it is one."""
    address = item.addresses.get(attempt.channel, item.message.to).lstrip("+")
    code = catalog.mcc_mnc_for(address) if address.isdigit() else ""
    return int(code) if code.isdigit() else None
