"""Pydantic models of the OMNI payloads, following Infobip's OpenAPI document "OMNI Failover".

Outgoing models (requests) are strict: unknown fields are refused and the client-side rules of
the document and of Infobip's Viber guide are checked before anything is sent.  Incoming models
(responses, reports, logs) are tolerant: unknown fields are kept, never fatal.

Field names are Python style; ``model_dump(by_alias=True)`` (what :func:`to_payload` does) gives
Infobip's camelCase.  Both spellings are accepted on input.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, NamedTuple, Required

import pendulum
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    field_validator,
    model_validator,
    with_config,
)
from pydantic.alias_generators import to_camel, to_snake
from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

# -- limits from the OpenAPI document and the guide ------------------------------------------------

VIBER_TEXT_MAX = 1000
VIBER_BUTTON_TEXT_MAX = 30
VIBER_URL_MAX = 1000
VIBER_VALIDITY_MIN = timedelta(seconds=35)
VIBER_VALIDITY_MAX = timedelta(days=14)
SMS_VALIDITY_MIN = timedelta(seconds=30)
SMS_VALIDITY_MAX = timedelta(hours=48)
CALLBACK_DATA_MAX = 4000
SEND_AT_MAX_AHEAD = timedelta(days=180)
MAX_DESTINATIONS_PER_REQUEST = 1000
PHONE_NUMBER_RE = re.compile(r"[1-9]\d{6,14}")  # the whole text (fullmatch): no trailing new line
INFOBIP_DATETIME_FORMAT = "YYYY-MM-DDTHH:mm:ss.SSSZZ"


class OmniChannel(enum.StrEnum):
    """Channels an OMNI scenario step can use (``OmniChannel`` in the document)."""

    SMS = "SMS"
    EMAIL = "EMAIL"
    VOICE = "VOICE"
    PUSH = "PUSH"
    VIBER = "VIBER"
    LINE = "LINE"
    VKONTAKTE = "VKONTAKTE"
    KAKAO_CHINGU = "KAKAO_CHINGU"
    KAKAO_ALIM = "KAKAO_ALIM"
    WHATSAPP = "WHATSAPP"


class TimeUnit(enum.StrEnum):
    """Unit of ``validityPeriod``; Infobip's default is minutes."""

    NANOSECONDS = "NANOSECONDS"
    MICROSECONDS = "MICROSECONDS"
    MILLISECONDS = "MILLISECONDS"
    SECONDS = "SECONDS"
    MINUTES = "MINUTES"
    HOURS = "HOURS"
    DAYS = "DAYS"

    def to_timedelta(self, amount: int) -> timedelta:
        """Return ``amount`` of this unit as a :class:`~datetime.timedelta`."""
        return timedelta(microseconds=amount * _MICROSECONDS_PER_UNIT[self])


_MICROSECONDS_PER_UNIT: dict[TimeUnit, float] = {
    TimeUnit.NANOSECONDS: 1e-3,
    TimeUnit.MICROSECONDS: 1,
    TimeUnit.MILLISECONDS: 1e3,
    TimeUnit.SECONDS: 1e6,
    TimeUnit.MINUTES: 60e6,
    TimeUnit.HOURS: 3600e6,
    TimeUnit.DAYS: 86400e6,
}


class GeneralStatus(enum.StrEnum):
    """Status groups (``status.groupName``) and the ``generalStatus`` filter of the logs."""

    ACCEPTED = "ACCEPTED"
    PENDING = "PENDING"
    UNDELIVERABLE = "UNDELIVERABLE"
    DELIVERED = "DELIVERED"
    EXPIRED = "EXPIRED"
    REJECTED = "REJECTED"


# -- dates ------------------------------------------------------------------------------------------


def parse_infobip_datetime(value: Any) -> datetime | None:
    """Parse Infobip's ``2016-02-23T17:41:11.833+0100`` (offset without colon) to an aware datetime."""
    if value is None or isinstance(value, datetime):
        if isinstance(value, datetime) and value.tzinfo is None:
            raise ValueError("datetime must be timezone-aware")
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a date-time string, got {type(value).__name__}")
    parsed = pendulum.parse(value)
    if not isinstance(parsed, datetime):
        raise ValueError(f"{value!r} is not a date-time")
    return parsed


def format_infobip_datetime(value: datetime) -> str:
    """Format an aware datetime the way Infobip writes them: ``yyyy-MM-dd'T'HH:mm:ss.SSSZ``."""
    return pendulum.instance(value).format(INFOBIP_DATETIME_FORMAT)


InfobipDateTime = Annotated[
    datetime,
    BeforeValidator(parse_infobip_datetime),
    PlainSerializer(format_infobip_datetime, return_type=str, when_used="json-unless-none"),
]


#: A channel as Infobip reports it: an :class:`OmniChannel` when known, the raw text otherwise.
ChannelValue = Annotated[OmniChannel | str, Field(union_mode="left_to_right")]


# -- base classes -----------------------------------------------------------------------------------


class _Outgoing(BaseModel):
    """A payload we send: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        str_strip_whitespace=False,
        use_enum_values=False,
    )


class _Incoming(BaseModel):
    """A payload Infobip sends: camelCase on the wire, unknown fields kept."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


def to_payload(model: BaseModel) -> dict[str, Any]:
    """Return the JSON-ready camelCase body of ``model``, without unset (None) fields."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


# -- scenarios --------------------------------------------------------------------------------------


class Step(_Outgoing):
    """One step of a scenario flow: the channel and the sender used on it."""

    channel: OmniChannel
    sender: str | None = Field(default=None, alias="from", validation_alias=AliasChoices("from", "sender"))


class ScenarioStep(_Incoming):
    """A flow step as Infobip returns it (channel kept as text when it is one we do not know)."""

    channel: ChannelValue
    sender: str | None = Field(default=None, alias="from", validation_alias=AliasChoices("from", "sender"))


class CreateOrUpdateScenarioRequest(_Outgoing):
    """Body of ``POST /omni/1/scenarios`` and ``PUT /omni/1/scenarios/{key}``."""

    name: str | None = None
    flow: list[Step] = Field(min_length=1)
    default: bool | None = None


def _key_as_text(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class Scenario(_Incoming):
    """A scenario as returned by Infobip; the document types ``key`` as int64, examples are hex text."""

    key: Annotated[str, BeforeValidator(_key_as_text)]
    name: str | None = None
    flow: list[ScenarioStep] = Field(default_factory=list)
    default: bool | None = None

    def has_flow(self, flow: list[Step]) -> bool:
        """Tell whether this scenario's flow is the same ordered channels and senders as ``flow``."""
        mine = [(str(_channel_value(s.channel)), s.sender or None) for s in self.flow]
        theirs = [(s.channel.value, s.sender or None) for s in flow]
        return mine == theirs


def _channel_value(channel: OmniChannel | str) -> str:
    return channel.value if isinstance(channel, OmniChannel) else channel


class ScenariosResponse(_Incoming):
    """Body of ``GET /omni/1/scenarios``."""

    scenarios: list[Scenario] = Field(default_factory=list)


# -- the advanced message ---------------------------------------------------------------------------


def normalize_phone_number(value: str) -> str:
    """Return ``value`` as international digits (a leading ``+`` is dropped) or raise ``ValueError``."""
    if not isinstance(value, str):
        raise ValueError(f"phone number must be text, got {type(value).__name__}")
    digits = value[1:] if value.startswith("+") else value
    if not PHONE_NUMBER_RE.fullmatch(digits):
        raise ValueError(
            f"{value!r} is not a phone number in international format: 7 to 15 digits with the "
            "country code, no leading 0, no spaces (e.g. 41793026727)"
        )
    return digits


class To(_Outgoing):
    """The address of one destination."""

    phone_number: str | None = None
    email_address: str | None = None
    push_registration_id: str | None = None
    whats_app_user_id: str | None = Field(default=None, max_length=150)

    @field_validator("phone_number")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return None if value is None else normalize_phone_number(value)

    @model_validator(mode="after")
    def _one_address(self) -> To:
        _require_address(
            (self.phone_number, self.email_address, self.push_registration_id, self.whats_app_user_id)
        )
        return self


def _require_address(addresses: Iterable[str | None]) -> None:
    if not any(addresses):
        raise ValueError("a destination needs an address: phoneNumber (or emailAddress, ...)")


def _phone_number_as_destination(value: Any) -> Any:
    """Read a bare phone number as the destination ``{"to": {"phoneNumber": value}}``."""
    return {"to": {"phoneNumber": value}} if isinstance(value, str) else value


class Destination(_Outgoing):
    """One recipient of an advanced message, with an optional caller-chosen ``messageId``."""

    message_id: str | None = Field(default=None, min_length=1, max_length=200)
    to: To

    @model_validator(mode="before")
    @classmethod
    def _from_phone_number(cls, value: Any) -> Any:
        return _phone_number_as_destination(value)


class _ChannelData(_Outgoing):
    """Fields common to every channel block."""

    validity_period: int | None = Field(default=None, ge=1)
    validity_period_time_unit: TimeUnit | None = None

    _validity_min: ClassVar[timedelta] = timedelta(0)
    _validity_max: ClassVar[timedelta] = timedelta.max
    _channel_name: ClassVar[str] = ""

    def validity(self) -> timedelta | None:
        """Return the validity period as a timedelta, or None when Infobip's default applies."""
        if self.validity_period is None:
            return None
        return (self.validity_period_time_unit or TimeUnit.MINUTES).to_timedelta(self.validity_period)

    @model_validator(mode="after")
    def _validity_in_range(self) -> _ChannelData:
        validity = self.validity()
        if validity is not None and not self._validity_min <= validity <= self._validity_max:
            raise ValueError(
                f"{self._channel_name}.validityPeriod is {_human(validity)}; it must be between "
                f"{_human(self._validity_min)} and {_human(self._validity_max)}"
            )
        if self.validity_period_time_unit is not None and self.validity_period is None:
            raise ValueError(f"{self._channel_name}.validityPeriodTimeUnit is set without validityPeriod")
        return self


def _human(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} seconds"


class ViberData(_ChannelData):
    """The Viber step: text, optional image and button, promotional flag, validity (35 s .. 14 days)."""

    text: str | None = Field(default=None, min_length=1, max_length=VIBER_TEXT_MAX)
    image_url: str | None = Field(
        default=None,
        max_length=VIBER_URL_MAX,
        alias="imageURL",
        validation_alias=AliasChoices("imageURL", "imageUrl", "image_url"),
    )
    button_text: str | None = Field(default=None, min_length=1, max_length=VIBER_BUTTON_TEXT_MAX)
    button_url: str | None = Field(
        default=None,
        max_length=VIBER_URL_MAX,
        alias="buttonURL",
        validation_alias=AliasChoices("buttonURL", "buttonUrl", "button_url"),
    )
    file_url: str | None = Field(default=None, pattern=r"^(https?)://.*$")
    file_name: str | None = Field(default=None, max_length=25)
    file_type: str | None = None
    tracking_data: str | None = Field(default=None, max_length=100)
    is_promotional: bool | None = None
    force_primary_device: bool | None = None

    _validity_min = VIBER_VALIDITY_MIN
    _validity_max = VIBER_VALIDITY_MAX
    _channel_name = "viber"

    @model_validator(mode="after")
    def _content_shape(self) -> ViberData:
        if (self.button_text is None) != (self.button_url is None):
            raise ValueError("viber.buttonText and viber.buttonURL must be given together")
        if self.image_url and self.button_text and not self.text:
            raise ValueError("viber: an image with a button needs viber.text too")
        if self.button_text and not self.text:
            raise ValueError("viber: a button needs viber.text")
        if not (self.text or self.image_url or self.file_url):
            raise ValueError("viber needs content: text, imageURL or fileUrl")
        return self


class SmsData(_ChannelData):
    """The SMS step: text and validity (30 s .. 48 h)."""

    text: str = Field(min_length=1)
    transliteration: str | None = None
    language: dict[str, Any] | None = None
    regional: dict[str, Any] | None = None

    _validity_min = SMS_VALIDITY_MIN
    _validity_max = SMS_VALIDITY_MAX
    _channel_name = "sms"


class OmniAdvancedRequest(_Outgoing):
    """Body of ``POST /omni/1/advanced``."""

    scenario_key: str | None = Field(default=None, min_length=1)
    bulk_id: str | None = Field(default=None, min_length=1, max_length=100)
    destinations: list[Destination] = Field(min_length=1, max_length=MAX_DESTINATIONS_PER_REQUEST)
    viber: ViberData | None = None
    sms: SmsData | None = None
    whats_app: dict[str, Any] | None = None
    voice: dict[str, Any] | None = None
    email: dict[str, Any] | None = None
    push: dict[str, Any] | None = None
    line: dict[str, Any] | None = None
    kakao_chingu: dict[str, Any] | None = None
    kakao_alim: dict[str, Any] | None = None
    v_kontakte: dict[str, Any] | None = None
    notify: bool | None = None
    notify_url: str | None = Field(default=None, pattern=r"^https?://")
    notify_content_type: Literal["application/json", "application/xml"] | None = None
    intermediate_report: bool | None = None
    callback_data: str | None = Field(default=None, max_length=CALLBACK_DATA_MAX)
    send_at: InfobipDateTime | None = None

    @field_validator("send_at")
    @classmethod
    def _send_at_ahead(cls, value: datetime | None) -> datetime | None:
        if value is not None and value - pendulum.now("UTC") >= SEND_AT_MAX_AHEAD:
            raise ValueError("sendAt must be less than 180 days ahead")
        return value

    @model_validator(mode="after")
    def _has_content(self) -> OmniAdvancedRequest:
        blocks = (self.viber, self.sms, self.whats_app, self.voice, self.email, self.push, self.line)
        if all(block is None for block in (*blocks, self.kakao_chingu, self.kakao_alim, self.v_kontakte)):
            raise ValueError("the request has no channel content: give at least viber or sms")
        ids = [d.message_id for d in self.destinations if d.message_id]
        if len(ids) != len(set(ids)):
            raise ValueError("destinations[].messageId must be unique within a request")
        return self


# -- wire shapes: the same destinations and send answers without a model per item ----------------
#
# A send to 100,000 people validated as 100,000 Destination models (and answered by 100,000
# OmniResponseDetails) spends most of its time creating, and collecting, Python objects.  The
# TypedDict shapes below state the same rules over the same wire format; a TypeAdapter validates a
# whole list of them in one call and hands back plain dicts in Infobip's field names, ready to be
# serialized.  tests/test_models.py proves that DestinationShape and Destination accept and refuse
# the same inputs.  Anything sent is still validated by pydantic before the request is made.

_WIRE_SHAPE = ConfigDict(alias_generator=to_snake, populate_by_name=True, extra="forbid")


def _address_given(to: ToShape) -> ToShape:
    """Require an address (as :class:`To` does) and drop the addresses given as None."""
    values = to.values()
    if None in values:
        to = {key: value for key, value in to.items() if value is not None}  # type: ignore[assignment]
        values = to.values()
    _require_address(values)  # type: ignore[arg-type]
    return to


@with_config(_WIRE_SHAPE)
class ToShape(TypedDict, total=False):
    """:class:`To` as a dict in Infobip's field names (Python spellings accepted on input)."""

    phoneNumber: Annotated[str, AfterValidator(normalize_phone_number)] | None
    emailAddress: str | None
    pushRegistrationId: str | None
    whatsAppUserId: Annotated[str | None, Field(max_length=150)]


@with_config(_WIRE_SHAPE)
class DestinationShape(TypedDict, total=False):
    """:class:`Destination` as a dict in Infobip's field names: what goes on the wire."""

    messageId: Annotated[str | None, Field(min_length=1, max_length=200)]
    to: Required[Annotated[ToShape, AfterValidator(_address_given)]]


_DESTINATIONS: TypeAdapter[list[DestinationShape]] = TypeAdapter(
    list[Annotated[DestinationShape, BeforeValidator(_phone_number_as_destination)]]
)


def bare_phone_numbers(items: Sequence[Any]) -> list[str] | None:
    """Read ``items`` as bare phone numbers (text, or ``{"to": {"phoneNumber": text}}`` and nothing
    else) by :func:`normalize_phone_number`'s rule, in one quick pass; None when any of them is
    something else (then :func:`validate_destinations` reads them, and says what is wrong)."""
    fullmatch = PHONE_NUMBER_RE.fullmatch
    numbers = []
    for item in items:
        if type(item) is dict and len(item) == 1:  # a CSV row: {"to": {"phoneNumber": "..."}}
            to = item.get("to")
            item = to.get("phoneNumber") if type(to) is dict and len(to) == 1 else None
        if type(item) is not str:
            return None
        digits = item[1:] if item[:1] == "+" else item
        if fullmatch(digits) is None:
            return None
        numbers.append(digits)
    return numbers


def validate_destinations(items: Sequence[Any]) -> list[DestinationShape]:
    """Validate a whole list of destinations in one pass, by :class:`Destination`'s rules.

    :param items: destinations as dicts (either spelling) or bare phone numbers.
    :return: the destinations as :class:`DestinationShape` dicts (phone numbers normalized, unset
        addresses dropped).
    :raises pydantic.ValidationError: error locations start with the index in ``items``.
    """
    return _DESTINATIONS.validate_python(items)


@with_config(ConfigDict(extra="allow"))
class _AdvancedBulkBody(TypedDict):
    """Serializer of a bulk body: the request-wide fields (already JSON) pass through as extras."""

    bulkId: str
    destinations: list[DestinationShape]


_ADVANCED_BULK_BODY: TypeAdapter[_AdvancedBulkBody] = TypeAdapter(_AdvancedBulkBody)
#: Message ids that go into JSON as they are (no escaping needed).
_PLAIN_ID = re.compile(r"[A-Za-z0-9._-]+")


def _plain(message_ids: Sequence[str]) -> bool:
    return all(map(_PLAIN_ID.fullmatch, message_ids))


@dataclass(frozen=True)
class AdvancedBulk:
    """One ``POST /omni/1/advanced`` body to many destinations: validated, serialized, ready to send.

    Made by :meth:`build` from validated parts only, and kept as JSON bytes: a send of 100,000
    destinations holds 100 of these, not 100,000 Python objects.

    :param bulk_id: the bulk id.
    :param size: the number of destinations.
    :param body: the JSON body, as :func:`to_payload` would write the equivalent request.
    """

    bulk_id: str
    size: int
    body: bytes
    #: The message ids of the destinations, in body order (the answer must list exactly these).
    message_ids: tuple[str, ...] = ()

    @staticmethod
    def fields_of(request: OmniAdvancedRequest) -> dict[str, Any]:
        """Return the request-wide fields of a validated request (its bulk id and destinations left out)."""
        return request.model_dump(
            mode="json", by_alias=True, exclude_none=True, exclude={"bulk_id", "destinations"}
        )

    @classmethod
    def build(
        cls, fields: Mapping[str, Any], bulk_id: str, destinations: Sequence[DestinationShape]
    ) -> AdvancedBulk:
        """Serialize one bulk.

        :param fields: the request-wide fields, from :meth:`fields_of` (an :class:`OmniAdvancedRequest`
            checked as a whole, with this bulk id or a longer one).
        :param bulk_id: the bulk id.
        :param destinations: at most 1000 destinations, from :func:`validate_destinations`.
        """
        body = {**fields, "bulkId": bulk_id, "destinations": destinations}
        serialized = _ADVANCED_BULK_BODY.dump_json(body, exclude_none=True)  # type: ignore[arg-type]
        ids = tuple(str(d.get("messageId") or "") for d in destinations)
        return cls(bulk_id=bulk_id, size=len(destinations), body=serialized, message_ids=ids)

    @classmethod
    def build_for_phones(
        cls, fields: Mapping[str, Any], bulk_id: str, numbers: Sequence[str], message_ids: Sequence[str]
    ) -> AdvancedBulk:
        """Serialize one bulk of bare phone numbers (from :func:`bare_phone_numbers`) with their message
        ids: the body :meth:`build` would make, without a dict per destination."""
        items = ",".join(
            f'{{"to":{{"phoneNumber":"{n}"}},"messageId":"{m}"}}'
            for n, m in zip(numbers, message_ids, strict=True)
        )
        empty = cls.build(fields, bulk_id, []).body
        if not (items.isascii() and empty.endswith(b'"destinations":[]}') and _plain(message_ids)):
            destinations: list[DestinationShape] = [
                {"to": {"phoneNumber": n}, "messageId": m} for n, m in zip(numbers, message_ids, strict=True)
            ]
            return cls.build(fields, bulk_id, destinations)
        body = empty[:-2] + items.encode("ascii") + b"]}"
        return cls(bulk_id=bulk_id, size=len(numbers), body=body, message_ids=tuple(message_ids))

    def destinations(self) -> list[DestinationShape]:
        """Read the destinations back from the body (for the rare paths that need them)."""
        destinations: list[DestinationShape] = json.loads(self.body)["destinations"]
        return destinations


class StatusShape(TypedDict, total=False):
    """The parts of a send answer's ``status`` that say whether a destination was taken."""

    groupId: int | None
    groupName: str | None
    id: int | None
    name: str | None


class SendMessageShape(TypedDict, total=False):
    """One entry of a send answer (:class:`OmniResponseDetails`), unknown fields ignored."""

    messageId: str | None
    to: dict[str, Any] | None
    status: StatusShape | None
    #: The Messages API's address of the entry (OMNI's is ``to``).
    destination: str | None


class _LoggedMessageShape(TypedDict, total=False):
    """A row of ``GET /omni/1/logs`` cut down to what a send needs (unknown fields ignored)."""

    messageId: str | None
    bulkId: str | None
    to: str | None
    status: StatusShape | None


class _LogsAnswerShape(TypedDict):
    results: list[_LoggedMessageShape]


_LOGS_ANSWER: TypeAdapter[_LogsAnswerShape] = TypeAdapter(_LogsAnswerShape)


class LoggedMessage(NamedTuple):
    """One message of ``GET /omni/1/logs``, as a send looks it up: who, in which bulk, refused or not.

    A thousand of these are a few hundred kB; a thousand :class:`OmniLog` models, several MB.
    """

    message_id: str | None
    bulk_id: str | None
    to: str | None
    status: StatusShape | None

    @classmethod
    def all_from_json(cls, content: bytes) -> list[LoggedMessage]:
        """Read a logs answer in one pass (raises pydantic's ValidationError when it is not one)."""
        rows = _LOGS_ANSWER.validate_json(content)["results"]
        return [cls(r.get("messageId"), r.get("bulkId"), r.get("to"), r.get("status")) for r in rows]


#: Status group meaning a destination was refused at send and will get nothing: the one rule used by
#: the send answer, the logs look-up of a retry and the sensor alike.  (UNDELIVERABLE is a delivery
#: outcome, reported later; it is not a refusal.)
REFUSED_AT_SEND = frozenset({GeneralStatus.REJECTED.value})
_REFUSED_GROUP_ID = 5


def status_name(status: Mapping[str, Any] | Status | None) -> str | None:
    """The status's name, else its group's name (a dict in Infobip's names, or a :class:`Status`)."""
    if status is None:
        return None
    if isinstance(status, Mapping):
        return status.get("name") or status.get("groupName")
    return status.name or status.group_name


def is_refused_at_send(status: Mapping[str, Any] | Status | None) -> bool:
    """Tell whether ``status`` (a dict in Infobip's names, or a :class:`Status`) is a refusal at send."""
    if status is None:
        return False
    if isinstance(status, Mapping):
        group_name, group_id = status.get("groupName"), status.get("groupId")
    else:
        group_name, group_id = status.group_name, status.group_id
    if group_name is not None:
        return str(group_name).upper() in REFUSED_AT_SEND
    return group_id == _REFUSED_GROUP_ID


def _id_or_refused(message: SendMessageShape | None) -> SendMessageShape | str | None:
    """Keep a refused entry whole; of the others only the message id (they are counted, not kept)."""
    if not message:
        return None
    if is_refused_at_send(message.get("status")):
        return message
    message_id = message.get("messageId")
    return str(message_id) if message_id else None


class _SendAnswerShape(TypedDict, total=False):
    """The answer to a send: each entry validated, then cut down to its message id unless refused."""

    bulkId: str | None
    messages: list[Annotated[SendMessageShape | None, AfterValidator(_id_or_refused)]]
    requestError: Any


_SEND_ANSWER: TypeAdapter[_SendAnswerShape] = TypeAdapter(_SendAnswerShape)


def _shown(value: str | None) -> str:
    if value is None:
        return "none"
    return repr(value if len(value) <= 100 else value[:100] + "...")


def send_answer_mismatch(
    *,
    sent_bulk_id: str | None,
    sent_size: int,
    sent_message_ids: Iterable[str],
    bulk_id: str | None,
    count: int,
    message_ids: Iterable[str],
    request_error: bool = False,
) -> str | None:
    """Say how the answer to a send does not match what was sent, or None when it does.

    An answer is an acceptance only when it carries the bulk id sent (when one was sent), lists
    exactly one message per destination, and lists exactly the message ids sent (those given; the
    others Infobip chose). The text gives counts and bulk ids, never an address.

    :param sent_bulk_id: the bulk id of the request, or None.
    :param sent_size: the number of destinations sent.
    :param sent_message_ids: the message ids sent, in any order (empty strings: no id given).
    :param bulk_id: the bulk id of the answer.
    :param count: the number of messages the answer lists.
    :param message_ids: the message ids the answer lists.
    :param request_error: the answer is an error envelope (``requestError``).
    """
    if request_error:
        return "it is an error body (requestError), not an acceptance"
    problems = []
    if sent_bulk_id is not None and bulk_id != sent_bulk_id:
        problems.append(f"its bulkId is {_shown(bulk_id)}, not {sent_bulk_id!r}")
    if count != sent_size:
        problems.append(f"it lists {count} message(s) for {sent_size} destination(s) sent")
    given = [message_id for message_id in sent_message_ids if message_id]
    expected = set(given)
    if expected:
        answered = set(message_ids)
        missing = len(expected - answered)
        # Only when every destination had an id can an unknown one be told apart from Infobip's.
        others = len(answered - expected) if len(given) == sent_size else 0
        if missing:
            problems.append(f"{missing} of the {len(expected)} message id(s) sent are not in it")
        if others:
            problems.append(f"it lists {others} message id(s) that were not sent")
    return "; ".join(problems) or None


@dataclass(frozen=True)
class BulkAcceptance:
    """The answer to one bulk send, compact: how many messages it lists, their ids, the refused ones.

    :param bulk_id: the bulk id Infobip answered with.
    :param messages: the number of messages in the answer.
    :param refused: the entries refused at send (:func:`is_refused_at_send`), whole.
    :param message_ids: the message ids the answer lists.
    :param request_error: the answer is an error envelope (``requestError``), not an acceptance.
    """

    bulk_id: str | None
    messages: int
    refused: list[SendMessageShape]
    message_ids: frozenset[str] = frozenset()
    request_error: bool = False

    def __repr__(self) -> str:
        return (
            f"BulkAcceptance(bulk_id={self.bulk_id!r}, messages={self.messages}, "
            f"refused={len(self.refused)}, request_error={self.request_error})"
        )

    @classmethod
    def from_json(cls, content: bytes) -> BulkAcceptance:
        """Parse the answer to ``POST /omni/1/advanced`` in one pass (raises pydantic's
        ValidationError when it is empty, not JSON, not an object, or has unreadable fields)."""
        answer = _SEND_ANSWER.validate_json(content)
        messages: list[Any] = answer.get("messages") or []  # message ids, refused entries, None
        refused: list[SendMessageShape] = [m for m in messages if not isinstance(m, str) and m is not None]
        ids = [message for message in messages if isinstance(message, str)]
        ids += [str(m["messageId"]) for m in refused if m.get("messageId")]
        return cls(
            bulk_id=answer.get("bulkId"),
            messages=len(messages),
            refused=refused,
            message_ids=frozenset(ids),
            request_error=answer.get("requestError") is not None,
        )

    def mismatch(self, bulk: AdvancedBulk) -> str | None:
        """Say how this answer does not match ``bulk`` (see :func:`send_answer_mismatch`), or None."""
        return send_answer_mismatch(
            sent_bulk_id=bulk.bulk_id,
            sent_size=bulk.size,
            sent_message_ids=bulk.message_ids,
            bulk_id=self.bulk_id,
            count=self.messages,
            message_ids=self.message_ids,
            request_error=self.request_error,
        )


# -- responses, reports, logs -----------------------------------------------------------------------


class _Code(_Incoming):
    """A group and an id, each with a name: what statuses and errors have in common."""

    group_id: int | None = None
    group_name: str | None = None
    id: int | None = None
    name: str | None = None
    description: str | None = None


class Status(_Code):
    """A message status (``groupId``/``groupName`` + ``id``/``name``)."""

    action: str | None = None


class Error(_Code):
    """The error of a report; ``permanent`` says whether a retry could ever succeed."""

    permanent: bool | None = None


class Price(_Incoming):
    """Price of one message."""

    price_per_message: float | None = None
    currency: str | None = None


class ResponseTo(_Incoming):
    """The address echoed in a send response."""

    phone_number: str | None = None
    email_address: str | None = None
    push_registration_id: str | None = None
    whats_app_user_id: str | None = None


class OmniResponseDetails(_Incoming):
    """One accepted (or rejected) destination of a send."""

    to: ResponseTo | None = None
    status: Status | None = None
    message_id: str | None = None


class OmniResponse(_Incoming):
    """Body of the ``POST /omni/1/advanced`` answer: an acceptance, not an outcome."""

    bulk_id: str | None = None
    messages: list[OmniResponseDetails] = Field(default_factory=list)


class _MessageRecord(_Incoming):
    """What delivery reports and log rows have in common: one message on one channel."""

    bulk_id: str | None = None
    message_id: str | None = None
    to: str | None = None
    sent_at: InfobipDateTime | None = None
    done_at: InfobipDateTime | None = None
    message_count: int | None = None
    mcc_mnc: str | None = None
    price: Price | None = None
    status: Status | None = None
    channel: ChannelValue | None = None


class DeliveryReport(_MessageRecord):
    """One delivery report from ``GET /omni/1/reports``; ``channel`` is the step that delivered."""

    error: Error | None = None
    callback_data: str | None = None


class DeliveryReports(_Incoming):
    """Body of ``GET /omni/1/reports``."""

    results: list[DeliveryReport] = Field(default_factory=list)


class OmniLog(_MessageRecord):
    """One row of ``GET /omni/1/logs``: like a report, without ``error``, re-readable for 48 h."""

    sender: str | None = Field(default=None, alias="from", validation_alias=AliasChoices("from", "sender"))
    text: str | None = None


class OmniLogsResponse(_Incoming):
    """Body of ``GET /omni/1/logs``."""

    results: list[OmniLog] = Field(default_factory=list)


class OAuthToken(_Incoming):
    """Answer of ``POST /auth/1/oauth2/token``."""

    access_token: str = Field(alias="access_token")
    expires_in: int = Field(default=3600, alias="expires_in")
    token_type: str | None = Field(default=None, alias="token_type")


# -- errors -----------------------------------------------------------------------------------------


class ApiErrorDetails(_Incoming):
    """``requestError.serviceException`` of the classic error envelope."""

    message_id: str | None = None
    text: str | None = None
    validation_errors: dict[str, list[str]] | None = None


class ApiRequestError(_Incoming):
    """``requestError`` of the classic error envelope."""

    service_exception: ApiErrorDetails | None = None


class ApiError(_Incoming):
    """Infobip's error body, in the classic form (``requestError.serviceException``) or the newer one
    (``errorCode``, ``description``, ``action``, ``violations``, ``resources``)."""

    request_error: ApiRequestError | None = None
    error_code: str | None = None
    description: str | None = None
    action: str | None = None
    violations: list[dict[str, Any]] | None = None
    resources: list[Any] | None = None

    @property
    def code(self) -> str | None:
        """The error identifier (``messageId`` of the classic form, ``errorCode`` of the newer)."""
        details = self.request_error.service_exception if self.request_error else None
        return (details.message_id if details else None) or self.error_code

    @property
    def text(self) -> str | None:
        """The human-readable error text."""
        details = self.request_error.service_exception if self.request_error else None
        return (details.text if details else None) or self.description

    @property
    def validation_errors(self) -> dict[str, list[str]]:
        """Field name to messages, from either envelope."""
        details = self.request_error.service_exception if self.request_error else None
        if details and details.validation_errors:
            return dict(details.validation_errors)
        errors: dict[str, list[str]] = {}
        for violation in self.violations or []:
            field = str(violation.get("property") or violation.get("field") or "request")
            errors.setdefault(field, []).append(str(violation.get("violation") or violation.get("message")))
        return errors
