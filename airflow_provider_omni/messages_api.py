"""Infobip's Messages API (``/messages-api/1/...``) as a second backend of the same send and wait.

The operators plan, validate and identify a send the same way on both backends: an OMNI request
(``viber``, ``sms``, ``sendAt``, ``notifyUrl``, ``callbackData``) checked by the OMNI models, cut
into bulks with their message ids.  This module writes such a request the Messages API's way, one
bulk at a time, and reads the Messages API's answers back into the shapes the rest of the provider
uses:

* the flow is inline: ``VIBER_BM`` first (text, image, button, validity), the SMS step in
  ``failover``; each destination names its number per channel (``byChannel``), as failover requires;
* validities must be 10 seconds to 48 hours on every channel: a longer one is refused here, not
  capped by Infobip (:func:`validity_period`);
* ``bulkId`` and ``sendAt`` go to ``options.schedule``, ``notifyUrl``/``callbackData`` to the message's
  ``webhooks``;
* a delivery report's ``destination`` is its ``to``, and ``VIBER_BM`` its ``VIBER``
  (:func:`reports_from_json`), so one tracker classifies both backends' reports.

Facts from Infobip's Messages API document (v3.210.0, 2026-07-23) and its "Send a message" page; a
reduced copy of the document is in ``tests/data/infobip-messages-api-openapi.reduced.json``.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_omni.exceptions import OmniValidationError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from airflow_provider_omni.models import AdvancedBulk, BulkAcceptance, DeliveryReport

MESSAGES_PATH = "/messages-api/1/messages"
VALIDATE_PATH = "/messages-api/1/messages/validate"
REPORTS_PATH = "/messages-api/1/reports"

VIBER_CHANNEL = "VIBER_BM"
SMS_CHANNEL = "SMS"
#: Validity on every channel: at least 10 seconds; Infobip caps anything above 48 hours, which
#: the provider refuses instead (a silently shorter Viber window would change who gets an SMS).
MIN_VALIDITY = timedelta(seconds=10)
MAX_VALIDITY = timedelta(hours=48)

#: OMNI request fields the Messages API request has a place for (anything else is refused by name).
_VIBER_FIELDS = frozenset(
    {
        "text",
        "imageURL",
        "buttonText",
        "buttonURL",
        "validityPeriod",
        "validityPeriodTimeUnit",
        "isPromotional",
    }
)
_SMS_FIELDS = frozenset({"text", "validityPeriod", "validityPeriodTimeUnit", "transliteration"})
_REQUEST_FIELDS = frozenset(
    {
        "scenarioKey",
        "viber",
        "sms",
        "sendAt",
        "notify",
        "notifyUrl",
        "notifyContentType",
        "intermediateReport",
        "callbackData",
    }
)
_UNITS = (("HOURS", 3600), ("MINUTES", 60), ("SECONDS", 1))


class Backend(enum.StrEnum):
    """Which Infobip API carries the messages: OMNI (``/omni/1``, the default) or the Messages API."""

    OMNI = "omni"
    MESSAGES_API = "messages_api"


def resolve_backend(argument: str | Backend | None, connection_value: Any = None) -> Backend:
    """Return the backend: the task's ``argument`` when given, else the connection's ``backend`` extra,
    else OMNI.

    :raises OmniValidationError: for a name that is neither ``omni`` nor ``messages_api``.
    """
    for name, value in (("backend", argument), ("connection extra 'backend'", connection_value)):
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        text = str(getattr(value, "value", value)).strip().lower().replace("-", "_")
        try:
            return Backend(text)
        except ValueError:
            raise OmniValidationError(
                f"{name} is {value!r}; it must be 'omni' or 'messages_api'",
                validation_errors={"backend": ["must be 'omni' or 'messages_api'"]},
            ) from None
    return Backend.OMNI


@dataclass(frozen=True)
class Senders:
    """The sender of each step: the Messages API has no stored scenario to hold them.

    :param viber: the Viber Business Messages sender (``VIBER_BM``).
    :param sms: the SMS sender (alphanumeric or a number).
    """

    viber: str | None = None
    sms: str | None = None


def _refuse(field: str, rule: str) -> OmniValidationError:
    return OmniValidationError(
        f"Not sendable on the Messages API backend: {field} {rule}; nothing was sent",
        validation_errors={field: [rule]},
    )


def validity_period(amount: int, unit: str | None, field: str) -> dict[str, Any]:
    """Return ``{amount, timeUnit}`` for an OMNI validity (``unit`` None: minutes, as Infobip's default).

    :raises OmniValidationError: outside 10 seconds .. 48 hours, or not whole seconds.
    """
    from airflow_provider_omni.models import TimeUnit

    delta = TimeUnit(unit or "MINUTES").to_timedelta(int(amount))
    if not MIN_VALIDITY <= delta <= MAX_VALIDITY:
        raise _refuse(
            field,
            f"is {delta.total_seconds():g} seconds; the Messages API takes 10 seconds to 48 hours on every "
            "channel (it would cap a longer one to 48 hours)",
        )
    seconds = delta.total_seconds()
    if seconds != int(seconds):
        raise _refuse(field, f"is {seconds:g} seconds; the Messages API takes whole seconds")
    for name, size in _UNITS:
        if int(seconds) % size == 0:
            return {"amount": int(seconds) // size, "timeUnit": name}
    raise AssertionError("unreachable")  # pragma: no cover


def _unsupported(block: Mapping[str, Any], allowed: frozenset[str], prefix: str) -> None:
    for name in block:
        if name not in allowed:
            raise _refuse(f"{prefix}{name}", "has no place in a Messages API request")


def _viber_content(viber: Mapping[str, Any]) -> dict[str, Any]:
    text, image = viber.get("text"), viber.get("imageURL")
    body: dict[str, Any] = {"type": "IMAGE", "url": image} if image else {"type": "TEXT", "text": text}
    if image and text:
        body["text"] = text
    content: dict[str, Any] = {"body": body}
    if viber.get("buttonText"):
        content["buttons"] = [{"type": "OPEN_URL", "text": viber["buttonText"], "url": viber["buttonURL"]}]
    return content


def _sms_content(sms: Mapping[str, Any]) -> dict[str, Any]:
    return {"body": {"type": "TEXT", "text": sms["text"]}}


def _validity_of(block: Mapping[str, Any], prefix: str) -> dict[str, Any] | None:
    if block.get("validityPeriod") is None:
        return None
    return validity_period(
        block["validityPeriod"], block.get("validityPeriodTimeUnit"), f"{prefix}validityPeriod"
    )


def _webhooks(fields: Mapping[str, Any]) -> dict[str, Any] | None:
    webhooks: dict[str, Any] = {}
    if fields.get("notifyUrl") and fields.get("notify") is not False:
        delivery: dict[str, Any] = {"url": fields["notifyUrl"]}
        if fields.get("intermediateReport") is not None:
            delivery["intermediateReport"] = bool(fields["intermediateReport"])
        webhooks["delivery"] = delivery
        if fields.get("notifyContentType"):
            webhooks["contentType"] = fields["notifyContentType"]
    if fields.get("callbackData") is not None:
        webhooks["callbackData"] = fields["callbackData"]
    return webhooks or None


@dataclass(frozen=True)
class MessageTemplate:
    """A send's Messages API request without its bulk id and destinations: built once per send.

    :param message: the ``messages[]`` item, ``destinations`` left out.
    :param channels: the channels of the flow, in order (``VIBER_BM``, ``SMS``).
    :param send_at: ``options.schedule.sendAt``, or None.
    """

    message: dict[str, Any]
    channels: tuple[str, ...]
    send_at: str | None = None

    @property
    def flow(self) -> tuple[str, ...]:
        """The flow in the provider's (OMNI's) channel names, for the outcome of reports."""
        return tuple("VIBER" if c == VIBER_CHANNEL else c for c in self.channels)

    def body(self, bulk_id: str, destinations: Sequence[tuple[str, str]]) -> dict[str, Any]:
        """Return the request for ``destinations`` (``(phone number, message id)`` pairs)."""
        schedule: dict[str, Any] = {"bulkId": bulk_id}
        if self.send_at:
            schedule["sendAt"] = self.send_at
        message = dict(self.message)
        message["destinations"] = [
            {"messageId": message_id, "byChannel": [{"channel": c, "to": number} for c in self.channels]}
            for number, message_id in destinations
        ]
        return {"messages": [message], "options": {"schedule": schedule}}


def message_template(fields: Mapping[str, Any], senders: Senders) -> MessageTemplate:
    """Translate an OMNI request's request-wide fields (camelCase, as validated by the OMNI models)
    into a :class:`MessageTemplate`.

    :raises OmniValidationError: naming the field, for a missing sender, a validity outside 10 s ..
        48 h, or content the Messages API request has no place for (other channels, Viber files).
    """
    _unsupported(fields, _REQUEST_FIELDS, "")
    viber, sms = fields.get("viber"), fields.get("sms")
    steps: list[tuple[str, dict[str, Any], str | None, dict[str, Any] | None]] = []
    if viber:
        _unsupported(viber, _VIBER_FIELDS, "viber.")
        steps.append((VIBER_CHANNEL, _viber_content(viber), senders.viber, _validity_of(viber, "viber.")))
    if sms:
        _unsupported(sms, _SMS_FIELDS, "sms.")
        steps.append((SMS_CHANNEL, _sms_content(sms), senders.sms, _validity_of(sms, "sms.")))
    if not steps:
        raise _refuse("viber", "or sms content is needed")
    for channel, _, sender, _ in steps:
        if not sender:
            name = "viber_sender" if channel == VIBER_CHANNEL else "sms_sender"
            raise _refuse(
                name,
                "is not set: the Messages API needs each step's sender (the task's argument or the "
                f"connection's extra {name!r})",
            )
    (channel, content, sender, validity), *failover = steps
    message: dict[str, Any] = {"channel": channel, "sender": sender, "content": content}
    options: dict[str, Any] = {}
    if validity:
        options["validityPeriod"] = validity
    if viber and viber.get("isPromotional") is not None:
        options["trafficType"] = "PROMOTIONAL" if viber["isPromotional"] else "TRANSACTIONAL"
    if sms and sms.get("transliteration"):
        options["transliteration"] = sms["transliteration"]
    if options:
        message["options"] = options
    webhooks = _webhooks(fields)
    if webhooks:
        message["webhooks"] = webhooks
    if failover:
        message["failover"] = [
            {"channel": c, "sender": s, "content": body, **({"validityPeriod": v} if v else {})}
            for c, body, s, v in failover
        ]
    return MessageTemplate(message, tuple(step[0] for step in steps), fields.get("sendAt"))


def destinations_of(bulk: AdvancedBulk) -> list[tuple[str, str]]:
    """Return the ``(phone number, message id)`` of each destination of an OMNI bulk.

    :raises OmniValidationError: for a destination without a phone number (the Messages API's Viber
        and SMS steps need one).
    """
    pairs = []
    for index, destination in enumerate(bulk.destinations()):
        number = (destination.get("to") or {}).get("phoneNumber")
        if not number:
            raise _refuse(f"destinations[{index}].to.phoneNumber", "is needed (Viber and SMS go to a number)")
        pairs.append((str(number), str(destination.get("messageId") or "")))
    return pairs


def bulk_body(template: MessageTemplate, bulk: AdvancedBulk) -> bytes:
    """Return the Messages API request of one OMNI bulk, as JSON bytes."""
    return json.dumps(template.body(bulk.bulk_id, destinations_of(bulk)), separators=(",", ":")).encode()


def acceptance_from_json(content: bytes) -> BulkAcceptance:
    """Parse the answer to ``POST /messages-api/1/messages`` like an OMNI send answer: refused entries
    get OMNI's ``to.phoneNumber`` from the answer's ``destination``."""
    from airflow_provider_omni.models import BulkAcceptance

    acceptance = BulkAcceptance.from_json(content)
    for entry in acceptance.refused:
        destination = entry.pop("destination", None)  # type: ignore[misc]
        if destination and not entry.get("to"):
            entry["to"] = {"phoneNumber": str(destination)}
    return acceptance


def report_record(item: Mapping[str, Any]) -> dict[str, Any]:
    """Return one Messages API delivery result in OMNI's report fields (``to``, ``VIBER``)."""
    record = {k: v for k, v in item.items() if k not in ("destination", "channel", "mccMnc")}
    record["to"] = item.get("destination")
    channel = item.get("channel")
    record["channel"] = "VIBER" if channel == VIBER_CHANNEL else channel
    if item.get("mccMnc") is not None:
        record["mccMnc"] = str(item["mccMnc"])
    return record


def reports_from_json(data: Mapping[str, Any], bulk_id: str | None = None) -> list[DeliveryReport]:
    """Read a reports answer (``{"results": [...]}``) as :class:`DeliveryReport` models.

    :param bulk_id: the ``bulkId`` the request filtered by: given to a report without one (Infobip
        may leave it out for a message sent to one destination).
    """
    from airflow_provider_omni.models import DeliveryReport

    reports = [DeliveryReport.model_validate(report_record(item)) for item in data.get("results") or []]
    for report in reports:
        if report.bulk_id is None and bulk_id is not None:
            report.bulk_id = bulk_id
    return reports
