"""Send an OMNI advanced message (Viber first, SMS fallback) to any number of destinations, once.

Cheap to import in a DAG file: the hook (requests) and the pydantic models are imported when the
task runs, not when the DAG is parsed.
"""

from __future__ import annotations

import ast
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk import BaseOperator
from pydantic import BaseModel, ValidationError

from airflow_provider_omni.exceptions import OmniError, OmniSendUncertainError, OmniValidationError
from airflow_provider_omni.operators import _ids
from airflow_provider_omni.privacy import shorten_phone_number

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context

    from airflow_provider_omni.hooks.omni import OmniHook
    from airflow_provider_omni.models import (
        AdvancedBulk,
        BulkAcceptance,
        DestinationShape,
        SmsData,
        TimeUnit,
        ViberData,
        _ChannelData,
    )

#: Validation errors about destinations listed in full before "... and N more".
MAX_LISTED_ERRORS = 10
#: Rejected destinations kept in the XCom and in the log.
MAX_LISTED_REJECTIONS = 100
#: While the task has at most this many destinations, the XCom maps each message id to its number.
MAX_MESSAGE_ID_MAP = 1000
#: Destinations per request, at most (Infobip's limit, ``models.MAX_DESTINATIONS_PER_REQUEST``).
MAX_BATCH_SIZE = 1000
#: Key prefix of the bulks recorded in the task state store (Airflow 3.3+).
STATE_KEY_PREFIX = "omni_bulk:"

_TO_KEYS = frozenset(
    {
        "phoneNumber",
        "phone_number",
        "emailAddress",
        "email_address",
        "pushRegistrationId",
        "push_registration_id",
        "whatsAppUserId",
        "whats_app_user_id",
    }
)
_ChannelT = TypeVar("_ChannelT", bound="_ChannelData")
_JINJA_MARKERS = re.compile(r"\{[{%#]")


# -- the plan: every bulk built and validated before the first request ------------------------------


@dataclass(frozen=True)
class Bulk:
    """One request of the send: its 1-based number and its validated body (with the bulk id)."""

    number: int
    request: AdvancedBulk

    @property
    def bulk_id(self) -> str:
        return self.request.bulk_id

    @property
    def size(self) -> int:
        return self.request.size


@dataclass
class BulkResult:
    """What became of one bulk: how many destinations were accepted / rejected, and where we learnt it."""

    bulk_id: str
    accepted: int
    rejected: int
    rejected_destinations: list[dict[str, str]] = field(default_factory=list)
    source: str = "sent"

    def as_state(self) -> dict[str, Any]:
        """The JSON stored in the task state store for this bulk."""
        return {
            "accepted": self.accepted,
            "rejected": self.rejected,
            "rejected_destinations": self.rejected_destinations,
        }


def parse_validity(value: timedelta | int | str | None, name: str) -> tuple[int, TimeUnit] | None:
    """Turn a validity given as a timedelta or whole minutes into ``(validityPeriod, unit)``.

    :param value: a :class:`~datetime.timedelta`, or an int (or digit text) of minutes.
    :param name: the operator argument, for the error message.
    """
    from airflow_provider_omni.models import TimeUnit

    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, timedelta)):
        raise OmniValidationError(f"{name}: give a timedelta or whole minutes, got {value!r}")
    if isinstance(value, int):
        return (value, TimeUnit.MINUTES) if value > 0 else _bad_validity(name, value)
    seconds = value.total_seconds()
    if seconds <= 0:
        return _bad_validity(name, value)
    if seconds % 60 == 0:
        return int(seconds // 60), TimeUnit.MINUTES
    if seconds == int(seconds):
        return int(seconds), TimeUnit.SECONDS
    return int(value / timedelta(milliseconds=1)), TimeUnit.MILLISECONDS


def _bad_validity(name: str, value: object) -> tuple[int, TimeUnit]:
    raise OmniValidationError(f"{name}: must be positive, got {value!r}", validation_errors={name: ["<= 0"]})


def parse_channel(
    value: Any, model: type[_ChannelT], name: str, validity: tuple[int, TimeUnit] | None
) -> _ChannelT | None:
    """Validate a channel block (a dict, a model, or text as shorthand for ``{"text": ...}``).

    :param value: the block as the user gave it (after templating).
    :param model: :class:`ViberData` or :class:`SmsData`.
    :param name: ``viber`` or ``sms``, for the error paths.
    :param validity: the operator's ``<name>_validity``, already parsed.
    """
    if value is None:
        if validity is not None:
            raise OmniValidationError(f"{name}_validity is set but there is no {name} content")
        return None
    if isinstance(value, str):
        value = _json_object(value, name) if value.lstrip().startswith("{") else {"text": value}
    if isinstance(value, model):
        value = value.model_dump(exclude_none=True)
    if not isinstance(value, Mapping):
        raise OmniValidationError(
            f"{name}: give a dict, a {model.__name__} or the text, got {type(value).__name__}"
        )
    data = dict(value)
    if validity is not None:
        if {"validityPeriod", "validity_period"} & data.keys():
            raise OmniValidationError(
                f"{name}: validityPeriod is given both in {name} and as {name}_validity; keep one"
            )
        data["validity_period"], data["validity_period_time_unit"] = validity
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise _validation_error(f"Invalid {name} content", _ids.error_lines(err, prefix=name)) from err


def _json_object(text: str, name: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as err:
        raise OmniValidationError(f"{name}: looks like JSON but is not valid JSON ({err})") from err


def coerce_destinations(value: Any) -> list[Any]:
    """Turn what the user gave as ``destinations`` into a list of items, one per destination.

    Accepts a list (or any iterable, e.g. an XCom pulled list), one destination, or text: a JSON /
    Python list (what a Jinja template renders to) or numbers separated by commas, semicolons,
    spaces or new lines.
    """
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError:
                try:
                    parsed = ast.literal_eval(text)
                except (ValueError, SyntaxError) as err:
                    raise OmniValidationError(
                        f"destinations: the text looks like a list but cannot be read ({err})"
                    ) from err
            return coerce_destinations(parsed)
        if text.startswith("{"):
            return [_json_object(text, "destinations")]
        return [part for part in re.split(r"[\s,;]+", text) if part]
    if isinstance(value, (Mapping, BaseModel, int)):
        return [value]
    if isinstance(value, Iterable):
        return list(value)
    raise OmniValidationError(f"destinations: cannot send to a {type(value).__name__}")


def wire_destination(item: Any) -> Any:
    """Put one destination as the user gave it in a form :func:`validate_destinations` reads.

    An int becomes the phone number's text; a dict may give ``to`` as a plain number or the address
    fields at its top level; a :class:`~airflow_provider_omni.models.Destination` is dumped to a dict.
    Anything else (a phone number as text, a dict in Infobip's form) is returned as is: validation
    reads it, or names what is wrong with it.  The user's dicts are copied, never changed.
    """
    if isinstance(item, int) and not isinstance(item, bool):
        return str(item)
    if isinstance(item, BaseModel):
        return item.model_dump(by_alias=True, exclude_none=True)
    if not isinstance(item, Mapping):
        return item
    to = item.get("to")
    if isinstance(to, (str, int)) and not isinstance(to, bool):
        return {**item, "to": {"phoneNumber": str(to)}}
    if "to" not in item and _TO_KEYS & item.keys():
        data = {key: value for key, value in item.items() if key not in _TO_KEYS}
        data["to"] = {key: value for key, value in item.items() if key in _TO_KEYS}
        return data
    return item


def destination_address(destination: DestinationShape) -> str:
    """The address a destination's reports will carry in ``to``."""
    to = destination["to"]
    return (
        to.get("phoneNumber")
        or to.get("emailAddress")
        or to.get("pushRegistrationId")
        or to.get("whatsAppUserId")
        or ""
    )


def _validation_error(title: str, lines: list[str], total: int | None = None) -> OmniValidationError:
    total = len(lines) if total is None else total
    shown = lines[:MAX_LISTED_ERRORS]
    more = f"\n  ... and {total - len(shown)} more" if total > len(shown) else ""
    errors: dict[str, list[str]] = {}
    for line in shown:
        path, _, message = line.partition(": ")
        errors.setdefault(path, []).append(message)
    count = f" ({total} errors)" if total > 1 else ""
    return OmniValidationError(
        f"{title}{count}; nothing was sent:\n  " + "\n  ".join(shown) + more, validation_errors=errors
    )


class _DestinationChecks:
    """What is wrong with the destinations, found bulk by bulk and raised once all were checked."""

    def __init__(self, show: Callable[[str], str]) -> None:
        self._show = show
        self.invalid_lines: dict[int, list[str]] = {}
        self.invalid_count = 0
        self.duplicates: list[str] = []
        self._first_by_address: dict[str, int] = {}
        self._first_by_id: dict[str | None, int] = {}

    @property
    def ok(self) -> bool:
        return not (self.invalid_count or self.duplicates)

    def add_invalid(self, err: ValidationError, offset: int) -> None:
        """Note the errors of one bulk's validation; ``offset`` is the bulk's first position."""
        positions: set[int] = set()
        for error in err.errors(include_url=False):
            index, *loc = error["loc"]
            position = offset + int(index)
            positions.add(position)
            if position in self.invalid_lines or len(self.invalid_lines) < MAX_LISTED_ERRORS:
                message = str(error["msg"]).removeprefix("Value error, ")
                path = _ids.error_path(loc, prefix=f"destinations[{position}]")
                self.invalid_lines.setdefault(position, []).append(f"{path}: {message}")
        self.invalid_count += len(positions)

    def add_unique(self, destinations: Sequence[DestinationShape], offset: int) -> None:
        """Note every address or message id already seen: someone would get the message twice."""
        first_by_address, first_by_id = self._first_by_address, self._first_by_id
        for position, destination in enumerate(destinations, start=offset):
            address = destination["to"].get("phoneNumber") or destination_address(destination)
            first = first_by_address.setdefault(address, position)
            if first != position:
                self.duplicates.append(
                    f"destinations[{position}].to: {self._show(address)} is already "
                    f"destinations[{first}]; it would get the message twice"
                )
            message_id = destination.get("messageId")
            first = first_by_id.setdefault(message_id, position)
            if first != position:
                self.duplicates.append(
                    f"destinations[{position}].messageId: {message_id!r} is already used by "
                    f"destinations[{first}]"
                )

    def raise_if_any(self, items: Sequence[Any], mask: Callable[[str, Any], str]) -> None:
        """Raise the invalid destinations (numbers masked), else the duplicates, if there are any."""
        if self.invalid_count:
            lines = [mask(line, items[p]) for p, lines in self.invalid_lines.items() for line in lines]
            raise _validation_error(
                f"Invalid destinations ({self.invalid_count} of {len(items)} destinations)",
                lines,
                total=self.invalid_count,
            )
        if self.duplicates:
            raise _validation_error("Invalid destinations", self.duplicates)


# -- the XCom ---------------------------------------------------------------------------------------


def build_send_result(
    scenario_key: str | None,
    results: Sequence[BulkResult],
    total: int,
    message_ids: Mapping[str, str] | None,
) -> dict[str, Any]:
    """Return the operator's XCom: one small entry per bulk, so its size grows with bulks, not people.

    :param scenario_key: the scenario used (None: the account's default scenario).
    :param results: one result per bulk, in order.
    :param total: the number of destinations.
    :param message_ids: message id -> address of every destination; dropped above 1000 destinations.
    """
    rejected_destinations: list[dict[str, str]] = []
    for result in results:
        room = MAX_LISTED_REJECTIONS - len(rejected_destinations)
        rejected_destinations.extend(result.rejected_destinations[: max(room, 0)])
    keep_map = message_ids is not None and total <= MAX_MESSAGE_ID_MAP
    return {
        "scenario_key": scenario_key,
        "bulks": [{"bulk_id": r.bulk_id, "accepted": r.accepted, "rejected": r.rejected} for r in results],
        "total": total,
        "accepted": sum(r.accepted for r in results),
        "rejected": sum(r.rejected for r in results),
        "rejected_destinations": rejected_destinations,
        "message_ids": dict(message_ids) if keep_map and message_ids is not None else None,
        "to_by_message_id_truncated": not keep_map,
    }


# -- the operator -----------------------------------------------------------------------------------


class OmniSendAdvancedMessageOperator(BaseOperator):
    """Send one OMNI advanced message (e.g. Viber, then SMS when Viber fails) to many destinations.

    The whole send is validated before the first request: every destination and every bulk request
    is built first, and a bad phone number at position 7,342 fails the task with
    ``destinations[7342].to.phoneNumber: ...`` while nothing is sent.

    Destinations go out in bulks of at most ``batch_size``.  Each bulk has a deterministic ``bulkId``
    (``{dag_id}.{task_id}.{hash of run_id}.{map_index}.b{n}``, at most 100 characters) and each
    destination a deterministic ``messageId`` (``{bulkId}.{position}``) unless you gave one.  That is
    what makes the send happen once:

    * after each bulk is accepted it is recorded in the task state store (Airflow 3.3+); a retry of
      the task skips the bulks recorded there;
    * on a retry, bulks not recorded (older Airflow, or a crash right after the POST) are looked up
      in ``/omni/1/logs?bulkId=...``; a bulk found there went out and is not sent again;
    * when the POST fails ambiguously (timeout, 5xx, dropped connection), the bulk is looked up in
      the logs (after short waits) before deciding: found means sent; not found means it is sent
      again, once.  Still uncertain after that, the task fails and tells you so.

    So a retry after bulk 4 of 10 failed sends bulks 4 (if it did not go out) to 10 only.  A cleared
    and re-run task instance has the same ids and sends nothing again (while Infobip keeps the logs,
    48 h); give ``bulk_id_prefix`` (e.g. with ``{{ ti.try_number }}``) to really send again.

    Destinations refused at send (status group REJECTED, or UNDELIVERABLE at once) are reported: the
    count and the first 100 (numbers shortened) in the log and in the XCom.  With
    ``fail_on_rejected`` the task then fails, but only after every bulk went out: one refused number
    must not leave thousands of other people without their message, and a retry would not send the
    bulks again anyway.

    The return value (XCom) is a small dict: ``scenario_key``, ``bulks`` (``bulk_id``, ``accepted``,
    ``rejected`` per bulk), ``total``, ``accepted``, ``rejected``, ``rejected_destinations`` (at most
    100), ``message_ids`` (message id -> number, only up to 1000 destinations, else None) and
    ``to_by_message_id_truncated``.  Its size grows with the number of bulks, not of destinations.

    :param scenario_key: the scenario key (e.g. from :class:`OmniCreateScenarioOperator`'s XCom);
        None uses the account's default scenario (templated).
    :param destinations: phone numbers (``"41793026727"``, ``"+41793026727"``), dicts
        (``{"to": {"phoneNumber": ...}, "messageId": ...}`` or ``{"to": "4179..."}``),
        :class:`~airflow_provider_omni.models.Destination` models, a Jinja template rendering to
        a list or to numbers separated by commas / new lines, or an XCom (templated; mappable).
    :param viber: the Viber block: a dict, a :class:`~airflow_provider_omni.models.ViberData`,
        or text as shorthand for ``{"text": ...}`` (templated).
    :param sms: the SMS block, the same way (:class:`~airflow_provider_omni.models.SmsData`).
    :param omni_conn_id: the Airflow connection to Infobip.
    :param batch_size: destinations per request, 1 to 1000.
    :param notify: False to get no delivery reports at all.
    :param notify_url: a webhook for delivery reports (templated).
    :param notify_content_type: ``application/json`` or ``application/xml``.
    :param callback_data: text (up to 4000 characters) echoed in the reports (templated).
    :param intermediate_report: push intermediate reports to ``notify_url``.
    :param send_at: when to send the first step, a datetime or text, < 180 days ahead (templated).
    :param viber_validity: how long Viber may try before the next step: a timedelta or minutes
        (35 seconds to 14 days).
    :param sms_validity: the same for SMS (30 seconds to 48 hours).
    :param fail_on_rejected: fail the task (after every bulk went out) when destinations were
        refused at send.
    :param show_full_numbers: print full phone numbers in logs; default from the connection.
    :param bulk_id_prefix: replaces the task-instance part of the bulk ids (templated); the
        map index and the bulk number are still appended.
    """

    template_fields: Sequence[str] = (
        "scenario_key",
        "destinations",
        "viber",
        "sms",
        "callback_data",
        "send_at",
        "notify_url",
        "bulk_id_prefix",
        "omni_conn_id",
    )
    template_fields_renderers = {"viber": "json", "sms": "json", "destinations": "py"}
    ui_color = "#e6f0ff"

    #: Seconds to wait before each look-up in the logs after an ambiguous POST failure.
    confirm_delays: Sequence[float] = (1.0, 3.0, 6.0)

    def __init__(
        self,
        *,
        destinations: Any,
        scenario_key: str | None = None,
        viber: ViberData | Mapping[str, Any] | str | None = None,
        sms: SmsData | Mapping[str, Any] | str | None = None,
        omni_conn_id: str = "omni_default",
        batch_size: int = MAX_BATCH_SIZE,
        notify: bool | None = None,
        notify_url: str | None = None,
        notify_content_type: str | None = None,
        callback_data: str | None = None,
        intermediate_report: bool | None = None,
        send_at: datetime | str | None = None,
        viber_validity: timedelta | int | None = None,
        sms_validity: timedelta | int | None = None,
        fail_on_rejected: bool = False,
        show_full_numbers: bool | None = None,
        bulk_id_prefix: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.scenario_key = scenario_key
        self.destinations = destinations
        self.viber = viber
        self.sms = sms
        self.omni_conn_id = omni_conn_id
        self.batch_size = batch_size
        self.notify = notify
        self.notify_url = notify_url
        self.notify_content_type = notify_content_type
        self.callback_data = callback_data
        self.intermediate_report = intermediate_report
        self.send_at = send_at
        self.viber_validity = viber_validity
        self.sms_validity = sms_validity
        self.fail_on_rejected = fail_on_rejected
        self.show_full_numbers = show_full_numbers
        self.bulk_id_prefix = bulk_id_prefix

    @cached_property
    def hook(self) -> OmniHook:
        """The hook talking to Infobip through ``omni_conn_id``."""
        from airflow_provider_omni.hooks.omni import OmniHook

        return OmniHook(omni_conn_id=self.omni_conn_id)

    def render_template(
        self,
        content: Any,
        context: Context,
        jinja_env: jinja2.Environment | None = None,
        seen_oids: set[int] | None = None,
    ) -> Any:
        """Render like any operator, but hand plain text (no ``{{``, ``{%`` or ``{#``) back as is.

        Airflow compiles every string of a templated list as a Jinja template; a literal list of
        100,000 numbers would take about a minute.  Plain text renders to itself anyway.
        """
        plain = isinstance(content, str) and not _JINJA_MARKERS.search(content)
        if plain and not content.endswith(tuple(self.template_ext)):
            return content
        return super().render_template(content, context, jinja_env, seen_oids)

    @cached_property
    def _full_numbers(self) -> bool:
        if self.show_full_numbers is not None:
            return bool(self.show_full_numbers)
        try:
            return bool(self.hook.show_full_numbers)
        except Exception:  # no connection yet: validation messages still come out, shortened
            return False

    def _show(self, address: str | None) -> str:
        """An address for logs and XCom: phone numbers shortened, other addresses masked."""
        if address and not self._full_numbers and not address.lstrip("+").isdigit():
            return f"{address[:2]}***"
        return shorten_phone_number(address, full=self._full_numbers)

    # -- planning (no I/O) --------------------------------------------------------------------------

    def build_bulks(self, context: Context) -> list[Bulk]:
        """Validate everything and build every bulk request; raise OmniValidationError, send nothing.

        Destinations are validated bulk by bulk, each bulk serialized as soon as it is valid, so that
        a send holds its bulks' JSON rather than an object per destination.
        """
        from airflow_provider_omni.models import AdvancedBulk, validate_destinations

        batch_size = self._batch_size()
        items = coerce_destinations(self.destinations)
        prefix = self._prefix(context)
        ranges = _ids.split(len(items), batch_size)
        fields = self._request_fields(_ids.bulk_id(prefix, max(len(ranges), 1)))
        if not items:
            raise OmniValidationError(
                "destinations: the list is empty; nothing to send",
                validation_errors={"destinations": ["empty"]},
            )
        checks = _DestinationChecks(self._show)
        bulks: list[Bulk] = []
        for number, positions in enumerate(ranges, start=1):
            bulk_id = _ids.bulk_id(prefix, number)
            try:
                chunk = items[positions.start : positions.stop]
                destinations = validate_destinations(
                    [item if type(item) is str else wire_destination(item) for item in chunk]
                )
            except ValidationError as err:
                checks.add_invalid(err, positions.start)
                continue
            for position, destination in enumerate(destinations, start=positions.start):
                if destination.get("messageId") is None:
                    destination["messageId"] = _ids.message_id(bulk_id, position)
            checks.add_unique(destinations, positions.start)
            if checks.ok:
                bulks.append(Bulk(number, AdvancedBulk.build(fields, bulk_id, destinations)))
        checks.raise_if_any(items, self._mask)
        return bulks

    def _batch_size(self) -> int:
        size = self.batch_size
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_BATCH_SIZE:
            raise OmniValidationError(
                f"batch_size: must be an integer from 1 to {MAX_BATCH_SIZE}, got {size!r}",
                validation_errors={"batch_size": [f"1..{MAX_BATCH_SIZE}"]},
            )
        return size

    def _request_fields(self, longest_bulk_id: str) -> dict[str, Any]:
        """Validate the request-wide fields once, as an OmniAdvancedRequest to a stand-in destination."""
        from airflow_provider_omni.models import AdvancedBulk, OmniAdvancedRequest, SmsData, ViberData

        viber = parse_channel(
            self.viber, ViberData, "viber", parse_validity(self.viber_validity, "viber_validity")
        )
        sms = parse_channel(self.sms, SmsData, "sms", parse_validity(self.sms_validity, "sms_validity"))
        fields = {
            "scenarioKey": self.scenario_key or None,
            "viber": viber,
            "sms": sms,
            "notify": self.notify,
            "notifyUrl": self.notify_url or None,
            "notifyContentType": self.notify_content_type or None,
            "callbackData": self.callback_data,
            "intermediateReport": self.intermediate_report,
            "sendAt": self.send_at or None,
            "bulkId": longest_bulk_id,
            "destinations": ["41793026727"],
        }
        try:
            request = OmniAdvancedRequest.model_validate(fields)
        except ValidationError as err:
            raise _validation_error("Invalid message", _ids.error_lines(err)) from err
        return AdvancedBulk.fields_of(request)

    def _mask(self, line: str, item: Any) -> str:
        """Shorten the raw number quoted in a validation message, unless full numbers are wanted."""
        raw = item if isinstance(item, str) else None
        if isinstance(item, Mapping):
            to = item.get("to")
            raw = (
                to
                if isinstance(to, str)
                else (to or {}).get("phoneNumber")
                if isinstance(to, Mapping)
                else None
            )
            raw = raw or item.get("phoneNumber") or item.get("phone_number")
        if not raw or self._full_numbers or len(str(raw)) < 8:
            return line
        return line.replace(str(raw), shorten_phone_number(str(raw)))

    def _prefix(self, context: Context) -> str:
        ti = context.get("ti")
        map_index = getattr(ti, "map_index", None)
        map_index = -1 if map_index is None else map_index
        if self.bulk_id_prefix:
            return f"{_ids.custom_prefix(str(self.bulk_id_prefix))}.{map_index}"
        dag_id = getattr(ti, "dag_id", None) or self.dag_id
        task_id = getattr(ti, "task_id", None) or self.task_id
        run_id = getattr(ti, "run_id", None) or str(context.get("run_id") or "")
        return _ids.bulk_id_prefix(dag_id, task_id, run_id, map_index)

    # -- execution ----------------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        bulks = self.build_bulks(context)
        total = sum(bulk.size for bulk in bulks)
        store = context.get("task_state_store")
        try_number = getattr(context.get("ti"), "try_number", None)
        # On a first try nothing can have gone out before; afterwards, bulks the store does not know
        # may still have been sent (older Airflow, or a crash between the POST and the record).
        look_in_logs = try_number is None or try_number > 1
        self.log.info(
            "Sending to %d destinations in %d bulk(s) of at most %d (scenario %s, try %s)",
            total,
            len(bulks),
            self.batch_size,
            self.scenario_key or "<account default>",
            try_number,
        )
        results: list[BulkResult] = []
        try:
            for bulk in bulks:
                result = self._recorded(store, bulk)
                if result is None and look_in_logs:
                    result = self._find_in_logs(bulk, source="logs (earlier try)")
                    # Bulks go out in order: the first one never sent means none after it was sent.
                    look_in_logs = result is not None
                    if result is not None:
                        self._record(store, bulk, result)
                if result is None:
                    result = self._send(bulk, len(bulks))
                    self._record(store, bulk, result)
                self._log_progress(bulk, len(bulks), result)
                results.append(result)
        except OmniError:
            self.log.error(
                "Stopped at bulk %d of %d: bulks 1 to %d are sent and recorded; a retry of this task "
                "sends only the rest",
                len(results) + 1,
                len(bulks),
                len(results),
            )
            raise
        message_ids = None
        if total <= MAX_MESSAGE_ID_MAP:
            message_ids = {
                str(d.get("messageId")): destination_address(d)
                for bulk in bulks
                for d in bulk.request.destinations()
            }
        xcom = build_send_result(self.scenario_key or None, results, total, message_ids)
        self._report_rejections(xcom)
        return xcom

    def _recorded(self, store: Any, bulk: Bulk) -> BulkResult | None:
        if store is None:
            return None
        state = store.get(STATE_KEY_PREFIX + bulk.bulk_id)
        if not isinstance(state, dict):
            return None
        return BulkResult(
            bulk_id=bulk.bulk_id,
            accepted=int(state.get("accepted", 0)),
            rejected=int(state.get("rejected", 0)),
            rejected_destinations=list(state.get("rejected_destinations") or []),
            source="task state store (earlier try)",
        )

    def _record(self, store: Any, bulk: Bulk, result: BulkResult) -> None:
        if store is not None:
            store.set(STATE_KEY_PREFIX + bulk.bulk_id, result.as_state())

    def _send(self, bulk: Bulk, count: int) -> BulkResult:
        """POST one bulk; after an ambiguous failure, look it up in the logs, and send again at most once."""
        for attempt in (1, 2):
            try:
                acceptance = self.hook.send_advanced_bulk(bulk.request)
            except OmniSendUncertainError as err:
                self.log.warning(
                    "bulk %d/%d (%s): the send failed ambiguously (%s); looking it up in the logs",
                    bulk.number,
                    count,
                    bulk.bulk_id,
                    err,
                )
                found = self._confirm_in_logs(bulk)
                if found is not None:
                    return found
                if attempt == 2:
                    raise OmniSendUncertainError(
                        f"bulk {bulk.number}/{count} ({bulk.bulk_id}): the send failed ambiguously twice and "
                        "the bulk is not in /omni/1/logs; it may still go out. A retry of this task looks it "
                        "up again before sending.",
                        bulk_id=bulk.bulk_id,
                    ) from err
                self.log.warning(
                    "bulk %d/%d (%s): not in the logs, sending it again once",
                    bulk.number,
                    count,
                    bulk.bulk_id,
                )
            else:
                return self._from_acceptance(bulk, acceptance)
        raise AssertionError("unreachable")  # pragma: no cover

    def _confirm_in_logs(self, bulk: Bulk) -> BulkResult | None:
        for delay in self.confirm_delays:
            if delay > 0:
                time.sleep(delay)
            found = self._find_in_logs(bulk, source="logs (after an ambiguous failure)")
            if found is not None:
                return found
        return None

    def _find_in_logs(self, bulk: Bulk, source: str) -> BulkResult | None:
        """Look the bulk up in ``/omni/1/logs``; any row proves the request was accepted as a whole."""
        rows = self.hook.get_logs(bulk_id=bulk.bulk_id, limit=MAX_BATCH_SIZE)
        if not rows:
            return None
        ours = {d.get("messageId"): d for d in bulk.request.destinations()}
        rejected = {
            row.message_id: row
            for row in rows
            if row.message_id in ours and row.status is not None and row.status.group_name == "REJECTED"
        }
        return BulkResult(
            bulk_id=bulk.bulk_id,
            accepted=bulk.size - len(rejected),
            rejected=len(rejected),
            rejected_destinations=[
                self._rejection(
                    row.to or destination_address(ours[mid]),
                    mid,
                    (row.status.name or row.status.group_name) if row.status else None,
                )
                for mid, row in list(rejected.items())[:MAX_LISTED_REJECTIONS]
            ],
            source=source,
        )

    def _from_acceptance(self, bulk: Bulk, acceptance: BulkAcceptance) -> BulkResult:
        refused = acceptance.refused
        addresses = (
            {d.get("messageId"): destination_address(d) for d in bulk.request.destinations()}
            if refused
            else {}
        )
        rejected = []
        for message in refused[:MAX_LISTED_REJECTIONS]:
            status = message.get("status") or {}
            to = (message.get("to") or {}).get("phoneNumber") or addresses.get(message.get("messageId"))
            rejected.append(
                self._rejection(to, message.get("messageId"), status.get("name") or status.get("groupName"))
            )
        return BulkResult(
            bulk_id=bulk.bulk_id,
            accepted=bulk.size - len(refused),
            rejected=len(refused),
            rejected_destinations=rejected,
        )

    def _rejection(self, to: str | None, message_id: str | None, status: str | None) -> dict[str, str]:
        return {"to": self._show(to), "message_id": str(message_id), "status": status or "REJECTED"}

    def _log_progress(self, bulk: Bulk, count: int, result: BulkResult) -> None:
        how = "" if result.source == "sent" else f" (already sent; found in the {result.source})"
        self.log.info(
            "bulk %d/%d (%s): %d accepted, %d rejected%s",
            bulk.number,
            count,
            bulk.bulk_id,
            result.accepted,
            result.rejected,
            how,
        )

    def _report_rejections(self, xcom: dict[str, Any]) -> None:
        if not xcom["rejected"]:
            self.log.info("All %d destinations accepted in %d bulk(s)", xcom["total"], len(xcom["bulks"]))
            return
        listed = xcom["rejected_destinations"]
        lines = "\n".join(f"  {r['to']} ({r['message_id']}): {r['status']}" for r in listed)
        self.log.warning(
            "%d of %d destinations were refused at send (first %d):\n%s",
            xcom["rejected"],
            xcom["total"],
            len(listed),
            lines,
        )
        if self.fail_on_rejected:
            raise OmniError(
                f"{xcom['rejected']} of {xcom['total']} destinations were refused at send "
                f"(e.g. {', '.join(r['to'] + ' ' + r['status'] for r in listed[:5])}); every bulk went out, "
                "so a retry sends nothing again"
            )
