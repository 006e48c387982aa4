"""Send an OMNI advanced message (Viber first, SMS fallback) to any number of destinations, once.

Cheap to import in a DAG file: the hook (requests) and the pydantic models are imported when the
task runs, not when the DAG is parsed.
"""

from __future__ import annotations

import ast
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from itertools import islice, repeat
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from pydantic import BaseModel, ValidationError

from airflow_provider_omni import metrics
from airflow_provider_omni.exceptions import OmniError, OmniSendUncertainError, OmniValidationError
from airflow_provider_omni.memory import give_back_free_memory
from airflow_provider_omni.operators import _ids
from airflow_provider_omni.operators._member_index import MemberIndex
from airflow_provider_omni.operators._send_ledger import (
    ACCEPTED,
    NOT_SENT,
    SENDING,
    UNCERTAIN,
    BulkRecord,
    SendLedger,
)
from airflow_provider_omni.operators._sorted_spill import SortedSpill, chunks
from airflow_provider_omni.privacy import shorten_phone_number
from airflow_provider_omni.version_compat import BaseOperator

if TYPE_CHECKING:
    import jinja2
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_omni.hooks.omni import OmniHook
    from airflow_provider_omni.messages_api import Backend, MessageTemplate
    from airflow_provider_omni.models import (
        AdvancedBulk,
        BulkAcceptance,
        DestinationShape,
        LoggedMessage,
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
#: One destination of a plan: its message id, its member key, and the destination (or its bare phone
#: number).
Entry = tuple[str, bytes, "DestinationShape | str"]
#: How long a request that failed ambiguously stays "in doubt" when the logs do not show it.
DEFAULT_UNCERTAIN_HORIZON = timedelta(minutes=15)
#: With ``resend_unconfirmed``, how many times an unconfirmed request is sent again at most.
MAX_UNCONFIRMED_RESENDS = 2
#: Bulk POSTs in flight at once, by default and at most (see BENCHMARKS.md for the measurements).
DEFAULT_MAX_IN_FLIGHT = 4
MAX_IN_FLIGHT = 16
#: Seconds between two progress lines in the task log.
DEFAULT_PROGRESS_INTERVAL = 5.0

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
    """One request of the send: its 1-based number in this try and its validated body (with the bulk id)."""

    number: int
    request: AdvancedBulk
    #: The member keys (:func:`_ids.member_key`) of its destinations, in body order.
    members: Sequence[bytes] = ()

    @property
    def bulk_id(self) -> str:
        return self.request.bulk_id

    @property
    def size(self) -> int:
        return self.request.size


@dataclass
class SendPlan:
    """Every destination of the send, validated, with its message id, sorted by message id.

    :param key: the send key (:func:`_ids.send_key`).
    :param label: the readable start of the bulk ids.
    :param fields: the request-wide fields, validated (:meth:`AdvancedBulk.fields_of`).
    :param entries: ``(message id, member key, destination)`` in message-id order, read again on each
        iteration (from a file past a few thousand: a send holds a few bulks in memory, not its
        destinations); a bulk's members depend only on the set of destinations, never on the order
        they were given in.  A destination that is only a phone number is kept as that number (a
        dict is made again for its bulk).
    :param total: the number of destinations.
    :param spill: the temporary files behind ``entries``, removed by :meth:`close`.
    """

    key: str
    label: str
    fields: dict[str, Any]
    entries: Iterable[Entry]
    total: int
    spill: SortedSpill | None = None

    def close(self) -> None:
        """Remove the plan's temporary files."""
        if self.spill is not None:
            self.spill.close()


@dataclass
class EarlierTries:
    """What earlier tries of the send already did, as far as can be known before sending anything.

    :param taken: member keys of the destinations Infobip took (or refused at send): never sent again.
    :param refused: of those, the ones refused at send.
    :param uncertain: the bulk records still uncertain (within the horizon): their members are not
        sent either.
    """

    taken: MemberIndex = field(default_factory=MemberIndex)
    refused: MemberIndex = field(default_factory=MemberIndex)
    uncertain: list[BulkRecord] = field(default_factory=list)
    uncertain_keys: set[bytes] = field(default_factory=set)

    def add(self, record: BulkRecord) -> None:
        """Count in an accepted or uncertain record (before its member keys are released)."""
        if record.state == ACCEPTED:
            self.taken.add_packed(record.members)
            self.refused.add_packed(record.refused_members)
        elif record.state == UNCERTAIN:
            self.uncertain.append(record)
            self.uncertain_keys |= record.member_keys()

    @property
    def anything(self) -> bool:
        """Whether an earlier try took a destination or left one in doubt."""
        return bool(self.uncertain or len(self.taken))

    def pending(self, entries: Iterable[Entry]) -> Iterable[Entry]:
        """The entries this try sends: neither taken nor in doubt."""
        if not self.anything:
            return entries
        taken, doubtful = self.taken, self.uncertain_keys
        return (entry for entry in entries if entry[1] not in taken and entry[1] not in doubtful)

    def count(self, plan: SendPlan) -> tuple[Tally, int]:
        """Count the plan's destinations by what earlier tries did; and how many are still to send."""
        if not self.anything:
            return Tally(plan.total, 0, 0, 0), plan.total
        taken = refused = doubtful = 0
        for _, key, _ in plan.entries:
            if key in self.taken:
                taken += 1
                refused += key in self.refused
            elif key in self.uncertain_keys:
                doubtful += 1
        tally = Tally(plan.total, taken - refused, refused, len(self.taken) - taken)
        return tally, plan.total - taken - doubtful


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


class ChannelDefaults(NamedTuple):
    """What the connection adds to a channel block the task left open."""

    #: validity in minutes when neither the block nor the task's ``<name>_validity`` gives one
    validity_minutes: int | None = None
    #: a line added to the block's text
    footer: str | None = None


def parse_channel(
    value: Any,
    model: type[_ChannelT],
    name: str,
    validity: tuple[int, TimeUnit] | None,
    defaults: ChannelDefaults | None = None,
) -> _ChannelT | None:
    """Validate a channel block (a dict, a model, or text as shorthand for ``{"text": ...}``).

    :param value: the block as the user gave it (after templating).
    :param model: :class:`ViberData` or :class:`SmsData`.
    :param name: ``viber`` or ``sms``, for the error paths.
    :param validity: the operator's ``<name>_validity``, already parsed.
    :param defaults: the connection's validity and footer, used where the task gives none.
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
    if defaults is not None:
        _apply_defaults(data, defaults)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise _validation_error(f"Invalid {name} content", _ids.error_lines(err, prefix=name)) from err


def _apply_defaults(data: dict[str, Any], defaults: ChannelDefaults) -> None:
    """Give ``data`` the connection's validity when it has none, and add the footer to its text."""
    from airflow_provider_omni.hooks._auth import with_footer
    from airflow_provider_omni.models import TimeUnit

    if defaults.validity_minutes and not {"validityPeriod", "validity_period"} & data.keys():
        data["validity_period"], data["validity_period_time_unit"] = (
            defaults.validity_minutes,
            TimeUnit.MINUTES,
        )
    if isinstance(data.get("text"), str):
        data["text"] = with_footer(data["text"], defaults.footer)


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
    """What is wrong with the destinations, found bulk by bulk and raised once all were checked.

    :param show: how an address is shown in a message.
    :param mask: shortens the raw number an error line quotes (given the item it is about).
    :param where: names a destination by its position (``destinations[7]``, ``destinations_path line 9``).
    """

    def __init__(
        self, show: Callable[[str], str], mask: Callable[[str, Any], str], where: Callable[[int], str]
    ) -> None:
        self._show, self._mask, self._where = show, mask, where
        self.seen = 0
        self.invalid_lines: dict[int, list[str]] = {}
        self.invalid_count = 0
        #: ``(position, line)`` of the duplicates first in the input (at most MAX_LISTED_ERRORS)
        self.duplicates: list[tuple[int, str]] = []
        self.duplicate_count = 0

    @property
    def where(self) -> Callable[[int], str]:
        """How a destination is named by its position."""
        return self._where

    def add_invalid(self, err: ValidationError, positions: Sequence[int], items: Sequence[Any]) -> None:
        """Note the errors of one bulk's validation (``positions`` and ``items`` in body order)."""
        bad: set[int] = set()
        for error in err.errors(include_url=False):
            index, *loc = error["loc"]
            position = positions[int(index)]
            bad.add(position)
            if position in self.invalid_lines or len(self.invalid_lines) < MAX_LISTED_ERRORS:
                message = str(error["msg"]).removeprefix("Value error, ")
                path = _ids.error_path(loc, prefix=self._where(position))
                line = self._mask(f"{path}: {message}", items[int(index)])
                self.invalid_lines.setdefault(position, []).append(line)
        self.invalid_count += len(bad)

    def add_duplicate(self, first: _Spilled, again: _Spilled) -> None:
        """Note that ``again`` has the message id (or the address) of ``first``, earlier in the input."""
        self.duplicate_count += 1
        position = again[1]
        if len(self.duplicates) >= MAX_LISTED_ERRORS and position > self.duplicates[-1][0]:
            return
        here, there = self._where(position), self._where(first[1])
        if _GIVEN in (first[2], again[2]):
            line = f"{here}.messageId: {again[0]!r} is already used by {there}"
        else:
            address = self._show(_spilled_address(again))
            line = f"{here}.to: {address} is already {there}; it would get the message twice"
        self.duplicates.append((position, line))
        self.duplicates.sort()
        del self.duplicates[MAX_LISTED_ERRORS:]

    def raise_if_any(self) -> None:
        """Raise the invalid destinations (numbers masked), else the duplicates, if there are any."""
        if self.invalid_count:
            lines = [line for lines in self.invalid_lines.values() for line in lines]
            raise _validation_error(
                f"Invalid destinations ({self.invalid_count} of {self.seen} destinations)",
                lines,
                total=self.invalid_count,
            )
        if self.duplicate_count:
            lines = [line for _, line in self.duplicates]
            raise _validation_error("Invalid destinations", lines, total=self.duplicate_count)


# -- the XCom ---------------------------------------------------------------------------------------


@dataclass
class Tally:
    """The send's counts over the current list of destinations, from the accepted bulk records.

    :param total: destinations in the current list.
    :param accepted: of those, taken by Infobip (in this try or an earlier one).
    :param rejected: of those, refused at send.
    :param removed: destinations taken by an earlier try that are no longer in the list.
    """

    total: int
    accepted: int
    rejected: int
    removed: int


def _truthy(value: bool | str | None, name: str) -> bool:
    """A flag given as a bool or as rendered template text ("true", "False", "1", "", "None")."""
    from airflow_provider_omni.hooks._auth import parse_flag

    if value is None or str(value).strip().lower() in ("", "none"):
        return False
    flag = parse_flag(value)
    if flag is not None:
        return flag
    raise OmniValidationError(
        f"{name}: {value!r} is not true or false", validation_errors={name: ["not a boolean"]}
    )


def build_send_result(
    *,
    scenario_key: str | None,
    records: Sequence[BulkRecord],
    counts: Tally,
    message_ids: Mapping[str, str] | None,
    namespace: str = "",
    send_key: str = "",
    sent_at: float | None = None,
) -> dict[str, Any]:
    """Return the operator's XCom: one small entry per bulk, so its size grows with bulks, not people.

    :param scenario_key: the scenario used (None: the account's default scenario).
    :param records: the bulk records of the send (only the accepted ones are listed).
    :param counts: the counts over the current list (:func:`tally`).
    :param message_ids: message id -> address (shortened unless full numbers are wanted) of every
        destination; dropped above 1000 destinations.
    :param namespace: the connection's namespace.
    :param send_key: the send key.
    :param sent_at: when the first request of the send went out (epoch seconds).
    """
    accepted = [record for record in records if record.state == ACCEPTED]
    rejected_destinations: list[dict[str, str]] = []
    for record in accepted:
        room = MAX_LISTED_REJECTIONS - len(rejected_destinations)
        rejected_destinations.extend(record.refused[: max(room, 0)])
    keep_map = message_ids is not None and counts.total <= MAX_MESSAGE_ID_MAP
    return {
        "scenario_key": scenario_key,
        "namespace": namespace,
        "send_key": send_key,
        "bulks": [{"bulk_id": r.bulk_id, "accepted": r.accepted, "rejected": r.rejected} for r in accepted],
        "total": counts.total,
        "accepted": counts.accepted,
        "rejected": counts.rejected,
        "removed": counts.removed,
        "rejected_destinations": rejected_destinations,
        "message_ids": dict(message_ids) if keep_map and message_ids is not None else None,
        "to_by_message_id_truncated": not keep_map,
        "sent_at": sent_at,
    }


# -- the operator -----------------------------------------------------------------------------------


class OmniSendAdvancedMessageOperator(BaseOperator):
    """Send one OMNI advanced message (e.g. Viber, then SMS when Viber fails) to many destinations.

    The whole send is validated before the first request: every destination is checked (and
    written, with its message id, to a temporary file sorted by message id, where duplicates meet)
    first, and a bad phone number at position 7,342 fails the task with
    ``destinations[7342].to.phoneNumber: ...`` while nothing is sent.  The bulks are then built from
    that file as they go out, so a send of a million holds a few bulks in memory, not a million.

    **Exactly once, per destination.**  Each destination gets a message id derived from the *send
    key* (the connection's ``namespace``, the DAG, task, run and map index, and ``resend_key``) and
    its address: never from its position, so a retry recognises every destination whatever the order
    of the list.  Destinations go out sorted by message id, in bulks of at most ``batch_size``, each
    with a bulk id that is a hash of its members (``{dag_id}.{task_id}.{send key}.{hash}``).

    * Before each POST the bulk and its members are recorded in the task state store (Airflow 3.3+),
      and again after the answer; a retry sends exactly the destinations no earlier try got taken:
      added ones are sent once, removed ones are reported (``removed``), nothing is sent twice.
    * A POST that fails ambiguously (timeout, 5xx, dropped connection, an answer that does not match
      what was sent) is looked up in ``/omni/1/logs`` a few times (``confirm_delays``).  Absence from
      the logs is not proof: the bulk stays *uncertain*, nothing more is sent in this try, and the
      task fails with :class:`~airflow_provider_omni.exceptions.OmniSendUncertainError` naming it.
      The next try looks it up again first; it is sent only when it is still absent once
      ``uncertain_horizon`` has passed since the failed POST.  ``resend_unconfirmed=True`` trades
      this delay for a possible duplicate.
    * Without a task state store (older Airflow, or a store that was cleared) a retry finds earlier
      bulks in the logs by their ids (and by message ids when the list changed).
    * A cleared and re-run task instance has the same send key: it sends nothing again.  To really
      send again, set ``resend_key`` to a new value (it must not change between tries).

    Destinations refused at send (status group REJECTED, the one rule also used on the retry path)
    are reported: the count and the first 100 (numbers shortened) in the log and in the XCom.  With
    ``fail_on_rejected`` the task then fails, but only after every bulk went out: one refused number
    must not leave thousands of other people without their message.

    The return value (XCom) is a small dict: ``scenario_key``, ``namespace``, ``send_key``, ``bulks``
    (``bulk_id``, ``accepted``, ``rejected`` per bulk, every try included), ``total``, ``accepted``,
    ``rejected`` (over the current list), ``removed``, ``rejected_destinations`` (at most 100),
    ``message_ids`` (message id -> number, shortened unless the connection shows full numbers; only
    up to 1000 destinations, else None), ``to_by_message_id_truncated`` and ``sent_at``.  Its size
    grows with the number of bulks, not of destinations.

    :param scenario_key: the scenario key (e.g. from :class:`OmniCreateScenarioOperator`'s XCom);
        None uses the connection's default scenario (extra ``default_scenario_key`` or
        ``default_scenario_name``), else the account's default scenario (templated).
    :param destinations: phone numbers (``"41793026727"``, ``"+41793026727"``), dicts
        (``{"to": {"phoneNumber": ...}, "messageId": ...}`` or ``{"to": "4179..."}``),
        :class:`~airflow_provider_omni.models.Destination` models, a Jinja template rendering to
        a list or to numbers separated by commas / new lines, or an XCom (templated; mappable).
    :param destinations_path: instead of ``destinations``, a file of them, read row by row: a local
        path or an object storage URL (``s3://...``, through Airflow's ``ObjectStoragePath``), CSV
        with a header (the phone number column, and ``messageId`` if any) or JSON lines (a number or
        a destination object per line), optionally ``.gz`` (templated).  Errors name the line.
    :param destinations_column: the CSV column with the phone number; default the first of
        ``phoneNumber``, ``phone_number``, ``phone``, ``to``, ``msisdn`` (templated).
    :param destinations_format: ``csv`` or ``jsonl``; default from the file name.
    :param destinations_conn_id: the Airflow connection of the object storage, if it needs one.
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
        (35 seconds to 14 days); default the connection's ``default_viber_validity_minutes``.
    :param sms_validity: the same for SMS (30 seconds to 48 hours; ``default_sms_validity_minutes``).
    :param footer: a line added to the Viber and SMS texts; default the connection's ``text_footer``,
        ``""`` for none (templated).
    :param fail_on_rejected: fail the task (after every bulk went out) when destinations were
        refused at send.
    :param show_full_numbers: print full phone numbers in logs and XCom; default from the connection.
    :param bulk_id_prefix: a readable label at the start of the bulk ids instead of
        ``{dag_id}.{task_id}`` (templated).  Not part of the identity: changing it sends nothing again.
    :param resend_key: set to a new value to send this task instance's message again to everyone
        (templated).  Part of the identity, so it must be the same on every try: never template it with
        the try number.  A change while an earlier send of the task instance is incomplete is refused.
    :param uncertain_horizon: how long a request that failed ambiguously and is absent from the logs
        stays in doubt (not sent again) after its POST; a timedelta or seconds (default 15 minutes).
    :param resend_unconfirmed: send a request again when an ambiguous failure is not confirmed in
        the logs within ``confirm_delays`` (risks a duplicate instead of a delay).
    :param dry_run: validate every destination and field, resolve the scenario and its flow, log the
        first request body (numbers shortened), the number of destinations and bulks and the bulk ids,
        and return the XCom marked ``dry_run`` (``bulks`` with the ids a real send would use, nothing
        accepted) without sending anything or recording anything (templated: ``"true"`` / ``"false"``).
    :param max_in_flight: bulk POSTs in flight at once, 1 to 16 (default 4).  Exactly once holds
        whatever the value; without a task state store, keep it the same between tries (a retry
        looks that many bulks past the first one missing from the logs).
    :param max_messages_per_second: the account's contracted throughput: destinations per second
        the send does not exceed (None: no limit).  A 429 from Infobip pauses the whole send, not
        one request, and the pause grows while 429s follow one another.
    :param progress_interval: seconds between the progress lines in the task log (sent / total,
        rate, time left); 0 for none.
    :param backend: ``omni`` (``/omni/1/advanced`` with a scenario) or ``messages_api``
        (``/messages-api/1/messages``: ``VIBER_BM`` first, the SMS step in ``failover``, no scenario;
        validities 10 seconds to 48 hours, longer ones refused).  Default the connection's
        ``backend`` extra, else ``omni`` (templated).  On the Messages API an ambiguous POST cannot be
        looked up (no logs): it fails the task with ``OmniSendUncertainError`` and is never sent again
        unless ``resend_unconfirmed``; a dry run asks Infobip's ``/messages/validate``.
    :param viber_sender: the Viber sender on the Messages API backend; default the connection's
        ``viber_sender`` (templated).
    :param sms_sender: the SMS sender on the Messages API backend; default the connection's
        ``sms_sender`` (templated).
    """

    template_fields: Sequence[str] = (
        "scenario_key",
        "destinations",
        "destinations_path",
        "destinations_column",
        "viber",
        "sms",
        "callback_data",
        "send_at",
        "notify_url",
        "bulk_id_prefix",
        "resend_key",
        "omni_conn_id",
        "send_dry_run",
        "footer",
        "backend",
        "viber_sender",
        "sms_sender",
    )
    template_fields_renderers = {"viber": "json", "sms": "json", "destinations": "py"}
    ui_color = "#e6f0ff"

    #: Seconds to wait before each look-up in the logs after an ambiguous POST failure (about 30 s).
    confirm_delays: Sequence[float] = (1.0, 2.0, 4.0, 8.0, 15.0)

    def __init__(
        self,
        *,
        destinations: Any = None,
        destinations_path: str | None = None,
        destinations_column: str | None = None,
        destinations_format: str | None = None,
        destinations_conn_id: str | None = None,
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
        resend_key: str | None = None,
        uncertain_horizon: timedelta | float = DEFAULT_UNCERTAIN_HORIZON,
        resend_unconfirmed: bool = False,
        dry_run: bool | str = False,
        footer: str | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_messages_per_second: float | None = None,
        progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
        backend: str | None = None,
        viber_sender: str | None = None,
        sms_sender: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.backend = backend
        self.viber_sender = viber_sender
        self.sms_sender = sms_sender
        self._messages_template: MessageTemplate | None = None
        self.scenario_key = scenario_key
        self.destinations = destinations
        self.destinations_path = destinations_path
        self.destinations_column = destinations_column
        self.destinations_format = destinations_format
        self.destinations_conn_id = destinations_conn_id
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
        self.resend_key = resend_key
        self.uncertain_horizon = uncertain_horizon
        self.resend_unconfirmed = resend_unconfirmed
        # not ``self.dry_run``: BaseOperator.dry_run() is Airflow's own (``airflow tasks test --dry-run``)
        self.send_dry_run = dry_run
        self.footer = footer
        self.max_in_flight = max_in_flight
        self.max_messages_per_second = max_messages_per_second
        self.progress_interval = progress_interval

    @cached_property
    def hook(self) -> OmniHook:
        """The hook talking to Infobip through ``omni_conn_id``."""
        from airflow_provider_omni.hooks.omni import OmniHook

        return OmniHook(omni_conn_id=self.omni_conn_id)

    @cached_property
    def resolved_backend(self) -> Backend:
        """``backend``, else the connection's ``backend`` extra, else OMNI."""
        from airflow_provider_omni.messages_api import resolve_backend

        return resolve_backend(self.backend, self.hook.settings.backend)

    @property
    def _on_messages_api(self) -> bool:
        from airflow_provider_omni.messages_api import Backend

        return self.resolved_backend is Backend.MESSAGES_API

    @cached_property
    def resolved_scenario_key(self) -> str | None:
        """``scenario_key``, else the connection's default scenario; None: the account's default (and
        always None on the Messages API, whose flow is written into each request)."""
        if self._on_messages_api:
            if self.scenario_key:
                self.log.warning(
                    "scenario_key %s is not used: on the Messages API backend the flow (Viber, then SMS) "
                    "is written into each request",
                    self.scenario_key,
                )
            return None
        return self.hook.resolve_scenario_key(str(self.scenario_key) if self.scenario_key else None)

    @property
    def _template(self) -> MessageTemplate:
        """The Messages API request of this send without bulk id and destinations (made by :meth:`plan`)."""
        if self._messages_template is None:
            raise AssertionError("plan() makes the Messages API template first")  # pragma: no cover
        return self._messages_template

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

    # -- planning (no I/O but reading the connection) -------------------------------------------------

    def plan(self, context: Context) -> SendPlan:
        """Validate everything and give every destination its message id; raise OmniValidationError.

        Destinations are validated bulk by bulk and spilled to a temporary file as they come, then
        sorted by message id, which puts duplicates side by side; nothing is sent, whatever is wrong.
        Memory stays a few thousand destinations whatever their number.  Close the plan when done.
        """
        batch_size = self._batch_size()
        self._max_in_flight()
        self._messages_per_second()
        rows, where = self._destination_rows()
        bulk_label = self._label(context)
        stand_in = _ids.bulk_id(bulk_label, "0" * _ids.SEND_KEY_LENGTH, ()) + ".r99"
        fields = self._request_fields(stand_in)
        if self._on_messages_api:
            self._messages_template = self._template_of(fields)
        key, key_error = self._send_key_or_error(context)
        checks = _DestinationChecks(self._show, self._mask, where)
        spill = SortedSpill()
        try:
            self._spill_valid(rows, batch_size, key or _STAND_IN_KEY, checks, spill)
            entries = spill.new_file(keep_in_memory=spill.run_size)
            if not checks.invalid_count:
                entries.extend(_unique_entries(spill.sorted(), checks))
            checks.raise_if_any()
            if key_error is not None:
                raise key_error
        except BaseException:
            spill.close()
            raise
        spill.drop_runs()
        give_back_free_memory()  # what validating and sorting used, before the bulks go
        return SendPlan(key, bulk_label, fields, entries.finish(), total=len(entries), spill=spill)

    def _template_of(self, fields: dict[str, Any]) -> MessageTemplate:
        """Translate the validated request-wide fields for the Messages API (raises
        OmniValidationError naming the field: a missing sender, a validity over 48 hours)."""
        from airflow_provider_omni.messages_api import message_template

        senders = self.hook.senders(self.viber_sender or None, self.sms_sender or None)
        return message_template(fields, senders)

    def _spill_valid(
        self,
        rows: Iterator[tuple[int, Any]],
        batch_size: int,
        key: str,
        checks: _DestinationChecks,
        spill: SortedSpill,
    ) -> None:
        """Validate the rows bulk by bulk; spill each valid destination under its message id (while
        none is invalid); raise when there is no row at all."""
        from airflow_provider_omni.models import bare_phone_numbers, validate_destinations

        while chunk := list(islice(rows, batch_size)):
            positions = [position for position, _ in chunk]
            items = [item for _, item in chunk]
            checks.seen += len(chunk)
            phones = bare_phone_numbers(items)  # the usual campaign: numbers only, read in one quick pass
            if phones is not None:
                if not checks.invalid_count:
                    _spill_phones(spill, key, positions, phones)
                continue
            try:
                destinations = validate_destinations(
                    [item if type(item) is str else wire_destination(item) for item in items]
                )
            except ValidationError as err:
                checks.add_invalid(err, positions, items)
                continue
            if self._on_messages_api:
                _require_phone_numbers(positions, destinations, checks.where)
            if not checks.invalid_count:
                for position, destination in zip(positions, destinations, strict=True):
                    _spill_destination(spill, key, position, destination)
        if not checks.seen:
            where_empty = "the file has no destinations" if self.destinations_path else "the list is empty"
            raise OmniValidationError(
                f"{self._source_name}: {where_empty}; nothing to send",
                validation_errors={self._source_name: ["empty"]},
            )

    @property
    def _source_name(self) -> str:
        return "destinations_path" if self.destinations_path else "destinations"

    def _destination_rows(self) -> tuple[Iterator[tuple[int, Any]], Callable[[int], str]]:
        """The destinations as ``(position, item)``, streamed from the file or the list, and how a
        position is named in messages."""
        from airflow_provider_omni.operators._sources import DestinationFile, iter_rows

        if self.destinations_path and self.destinations is not None:
            raise OmniValidationError(
                "destinations and destinations_path: give one of them, not both",
                validation_errors={"destinations_path": ["given with destinations"]},
            )
        if self.destinations_path:
            source = DestinationFile(
                str(self.destinations_path),
                column=self.destinations_column or None,
                format=self.destinations_format or None,
                conn_id=self.destinations_conn_id,
            )
            return iter_rows(source), _line_of_file
        return enumerate(coerce_destinations(self.destinations)), _index_in_list

    def build_bulks(self, context: Context) -> list[Bulk]:
        """Return the requests a first try would make: every destination, in bulks (no I/O)."""
        plan = self.plan(context)
        try:
            return list(self._bulks(plan, plan.entries, set()))
        finally:
            plan.close()

    def _bulks(self, plan: SendPlan, entries: Iterable[Entry], used: set[str]) -> Iterator[Bulk]:
        """Cut ``entries`` into bulks of at most ``batch_size``, each serialized when it is reached."""
        for number, chunk in enumerate(chunks(entries, self._batch_size()), start=1):
            yield self._bulk(plan, number, chunk, used)
            del chunk  # a waiting generator holds no bulk's destinations

    def _bulk(self, plan: SendPlan, number: int, chunk: Sequence[Entry], used: set[str]) -> Bulk:
        """Serialize one bulk, with an id no request of this send used yet."""
        from airflow_provider_omni.models import AdvancedBulk

        ids = [entry[0] for entry in chunk]
        bulk_id = _ids.bulk_id(plan.label, plan.key, ids)
        repeat = 1
        while bulk_id in used:  # the same members go out again (after a certain "not sent")
            repeat += 1
            bulk_id = _ids.bulk_id(plan.label, plan.key, ids, suffix=f"r{repeat}")
        used.add(bulk_id)
        payloads = [entry[2] for entry in chunk]
        if all(type(payload) is str for payload in payloads):  # bare phone numbers: no dict each
            request = AdvancedBulk.build_for_phones(plan.fields, bulk_id, payloads, ids)  # type: ignore[arg-type]
        else:
            request = AdvancedBulk.build(plan.fields, bulk_id, [_destination(entry) for entry in chunk])
        return Bulk(number, request, [entry[1] for entry in chunk])

    def _task_instance_identity(self, context: Context) -> tuple[str, str, str, int | None]:
        """Return the dag id, task id, run id and map index of the running task instance."""
        ti = context.get("ti")
        dag_id = getattr(ti, "dag_id", None) or self.dag_id
        task_id = getattr(ti, "task_id", None) or self.task_id
        run_id = getattr(ti, "run_id", None) or str(context.get("run_id") or "")
        return dag_id, task_id, run_id, getattr(ti, "map_index", None)

    def _label(self, context: Context) -> str:
        dag_id, task_id, _, _ = self._task_instance_identity(context)
        return _ids.label(dag_id, task_id, self.bulk_id_prefix)

    def _send_key_or_error(self, context: Context) -> tuple[str, Exception | None]:
        """Return the send key, or the error reading the connection (raised after validation, so
        that a bad input is reported even before the connection exists)."""
        try:
            return self._send_key(context), None
        except Exception as err:
            return "", err

    def _send_key(self, context: Context) -> str:
        """Return the send key of this task instance (reads the connection's namespace)."""
        dag_id, task_id, run_id, map_index = self._task_instance_identity(context)
        return _ids.send_key(
            namespace=self.hook.namespace,
            dag_id=dag_id,
            task_id=task_id,
            run_id=run_id,
            map_index=map_index,
            resend_key=str(self.resend_key) if self.resend_key else None,
        )

    def _max_in_flight(self) -> int:
        return _whole_number_in("max_in_flight", self.max_in_flight, MAX_IN_FLIGHT)

    def _messages_per_second(self) -> float | None:
        value = self.max_messages_per_second
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise OmniValidationError(
                f"max_messages_per_second: must be a number above 0 (or None for no limit), got {value!r}",
                validation_errors={"max_messages_per_second": ["> 0"]},
            )
        return float(value)

    def _batch_size(self) -> int:
        return _whole_number_in("batch_size", self.batch_size, MAX_BATCH_SIZE)

    def _request_fields(self, longest_bulk_id: str) -> dict[str, Any]:
        """Validate the request-wide fields once, as an OmniAdvancedRequest to a stand-in destination."""
        from airflow_provider_omni.models import AdvancedBulk, OmniAdvancedRequest, SmsData, ViberData

        viber_validity = parse_validity(self.viber_validity, "viber_validity")
        sms_validity = parse_validity(self.sms_validity, "sms_validity")
        # the task's own mistakes first, named as the task gave them, before the connection is read
        parse_channel(self.viber, ViberData, "viber", viber_validity)
        parse_channel(self.sms, SmsData, "sms", sms_validity)
        settings = self.hook.settings
        footer = settings.footer_for(self.footer)
        viber = parse_channel(
            self.viber,
            ViberData,
            "viber",
            viber_validity,
            ChannelDefaults(settings.default_viber_validity_minutes, footer),
        )
        sms = parse_channel(
            self.sms,
            SmsData,
            "sms",
            sms_validity,
            ChannelDefaults(settings.default_sms_validity_minutes, footer),
        )
        fields = {
            "scenarioKey": self.resolved_scenario_key,
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

    # -- execution ----------------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        plan = self.plan(context)
        try:
            if _truthy(self.send_dry_run, "dry_run"):
                return self._dry_run(plan)
            with metrics.timed(metrics.SEND_DURATION, metrics.task_tags(self)):
                return self._send(plan, context)
        finally:
            plan.close()

    def _send(self, plan: SendPlan, context: Context) -> dict[str, Any]:
        """Settle what earlier tries did, send the rest bulk by bulk, and return the XCom."""
        try_number = getattr(context.get("ti"), "try_number", None)
        ledger = SendLedger(context.get("task_state_store"), plan.key)
        self._check_same_send(ledger)
        earlier = self._earlier_tries(plan, ledger, try_number)
        ledger.claim()
        before, to_send = earlier.count(plan)
        pending = earlier.pending(plan.entries)
        self.log.info(
            "Sending to %d of %d destinations in bulks of at most %d (%s, send %s, try %s)%s",
            to_send,
            plan.total,
            self.batch_size,
            self._flow_source,
            plan.key,
            try_number,
            f"; {plan.total - to_send} already taken or in doubt" if to_send < plan.total else "",
        )
        accepted, rejected = self._send_pending(plan, pending, to_send, ledger)
        if earlier.uncertain:
            raise self._still_uncertain(earlier.uncertain, rest_sent=True)
        ledger.mark_complete()
        counts = Tally(plan.total, before.accepted + accepted, before.rejected + rejected, before.removed)
        return self._result(plan, ledger, counts)

    def _dry_run(self, plan: SendPlan) -> dict[str, Any]:
        """What a send would do, with nothing sent and nothing recorded: the XCom marked ``dry_run``."""
        import json

        from airflow_provider_omni.privacy import shorten_numbers

        flow = self._template.flow if self._on_messages_api else self._scenario_flow()
        bulks: list[dict[str, Any]] = []
        for bulk in self._bulks(plan, plan.entries, set()):
            if not bulks:
                body = json.dumps(json.loads(self._wire_body(bulk)), ensure_ascii=False)
                self.log.info(
                    "Dry run: the first request would be POST %s with %s",
                    self._send_path,
                    body if self._full_numbers else shorten_numbers(body),
                )
                self._validate_on_infobip(bulk)
            bulks.append(
                {"bulk_id": bulk.bulk_id, "accepted": 0, "rejected": 0, "destinations": len(bulk.members)}
            )
        self.log.info(
            "Dry run: %d destination(s) in %d bulk(s), %s (%s); bulk ids: %s%s. Nothing was sent.",
            plan.total,
            len(bulks),
            self._flow_source,
            " -> ".join(flow),
            ", ".join(b["bulk_id"] for b in bulks[:5]),
            f" and {len(bulks) - 5} more" if len(bulks) > 5 else "",
        )
        xcom = build_send_result(
            scenario_key=self.resolved_scenario_key,
            records=[],
            counts=Tally(plan.total, 0, 0, 0),
            message_ids=self._message_ids(plan),
            namespace=self.hook.namespace,
            send_key=plan.key,
        )
        return {**xcom, "bulks": bulks, "dry_run": True, "flow": list(flow)}

    @property
    def _send_path(self) -> str:
        from airflow_provider_omni.hooks._http import MESSAGES_SEND_PATH, SEND_PATH

        return MESSAGES_SEND_PATH if self._on_messages_api else SEND_PATH

    @property
    def _flow_source(self) -> str:
        """Where the flow comes from, for log lines."""
        if self._on_messages_api:
            return "Messages API, " + " -> ".join(self._template.channels)
        return f"scenario {self.resolved_scenario_key or '<account default>'}"

    def _wire_body(self, bulk: Bulk) -> bytes:
        """The body the bulk's POST would carry on this backend."""
        from airflow_provider_omni.messages_api import bulk_body

        return bulk_body(self._template, bulk.request) if self._on_messages_api else bulk.request.body

    def _validate_on_infobip(self, bulk: Bulk) -> None:
        """On the Messages API, have Infobip check the first bulk (``/messages/validate``: every failover
        step, unknown fields); its skippable violations are logged, a refusal raises OmniValidationError.
        The other bulks differ only in their destinations, checked here already."""
        if not self._on_messages_api:
            return
        answer = self.hook.validate_messages_api(self._template, bulk.request)
        skippable = answer.get("skippableViolations") or []
        self.log.info(
            "Dry run: Infobip's /messages-api/1/messages/validate accepted the first request%s",
            "; skippable: " + "; ".join(f"{v.get('property')}: {v.get('violation')}" for v in skippable)
            if skippable
            else "",
        )

    def _message_ids(self, plan: SendPlan) -> dict[str, str] | None:
        """Message id -> number (shortened unless full numbers are wanted), for small sends only."""
        if plan.total > MAX_MESSAGE_ID_MAP:
            return None
        return {entry[0]: self._show(_address_of(entry)) for entry in plan.entries}

    def _scenario_flow(self) -> tuple[str, ...]:
        """The channels of the scenario the send would use (its own, or the account's default)."""
        from airflow_provider_omni.exceptions import OmniConfigurationError
        from airflow_provider_omni.outcome import normalize_flow

        scenario = self.hook.get_scenario_or_default(self.resolved_scenario_key)
        if scenario is None:
            raise OmniConfigurationError(
                "scenario_key: none given and the account has no default scenario; a send would fail"
            )
        return normalize_flow(scenario.flow)

    # -- what earlier tries did -----------------------------------------------------------------------

    def _check_same_send(self, ledger: SendLedger) -> None:
        """Refuse to start a different send while this task instance's earlier one is incomplete."""
        previous = ledger.previous_send()
        if previous is None or previous.get("send_key") == ledger.send_key or previous.get("complete"):
            return
        raise OmniValidationError(
            "The identity of this send changed between tries of the task instance (the connection's "
            "namespace or resend_key differ from the earlier try), while the earlier send is not "
            f"complete (send {previous.get('send_key')}). Sending now could give some people the message "
            "twice. Restore the earlier namespace / resend_key, let the task finish, then change them.",
            validation_errors={"resend_key": ["changed between tries"]},
        )

    def _earlier_tries(self, plan: SendPlan, ledger: SendLedger, try_number: int | None) -> EarlierTries:
        """Find what earlier tries sent: the task state store first, else (on a retry) the logs."""
        earlier = self._resolve_records(ledger)
        if ledger.records:
            return earlier
        if try_number is not None and try_number <= 1:
            return earlier  # a first try: nothing can have gone out before
        if self._on_messages_api:
            return self._earlier_tries_unknown()
        self.log.info("No record of earlier tries in the task state store; looking them up in the logs")
        return self._find_earlier_in_logs(plan, ledger)

    def _earlier_tries_unknown(self) -> EarlierTries:
        """A retry on the Messages API with no record of the earlier tries (no task state store): they
        cannot be looked up (no logs), so nothing is sent unless ``resend_unconfirmed``."""
        if self.resend_unconfirmed:
            self.log.warning(
                "No record of earlier tries and no logs on the Messages API: sending to everyone "
                "(resend_unconfirmed=True), so destinations an earlier try reached get the message again"
            )
            return EarlierTries()
        raise OmniSendUncertainError(
            "This retry cannot tell what the earlier try sent: there is no task state store (Airflow "
            "before 3.3, or it was cleared) and the Messages API has no logs to look the bulks up in. "
            "Nothing was sent. Check the earlier try's log and Infobip's reports, then either leave "
            "it, or set resend_unconfirmed=True to send to everyone again (duplicates possible), or "
            "a new resend_key.",
            bulk_id=None,
        )

    def _resolve_records(self, ledger: SendLedger) -> EarlierTries:
        """Settle the records of earlier tries, one by one: in-doubt requests are looked up in the logs."""
        earlier = EarlierTries()
        now = time.time()
        for record in ledger.load():
            if record.state in (SENDING, UNCERTAIN):
                self._settle(record, now)
                ledger.save(record)
                self._count_taken(record)  # sent by an earlier try that never learnt the answer
            earlier.add(record)
            self._log_record(record)
            ledger.release(record, MAX_LISTED_REJECTIONS)
        return earlier

    def _settle(self, record: BulkRecord, now: float) -> None:
        """Decide an in-doubt request: in the logs -> accepted; absent past the horizon -> not sent."""
        if self._read_logs_of(record):
            return
        waited = now - record.at
        if self._on_messages_api:  # nothing to look it up in: only the user may choose to send it again
            if self.resend_unconfirmed:
                record.state, record.source = NOT_SENT, _UNCONFIRMED
            else:
                record.state = UNCERTAIN
            return
        if waited >= self._horizon_seconds():
            record.state, record.source = NOT_SENT, f"absent from the logs {waited:.0f} s after its POST"
        else:
            record.state = UNCERTAIN

    def _read_logs_of(self, record: BulkRecord) -> bool:
        """Look one request up in ``/omni/1/logs`` by its bulk id; fill ``record`` when it is there
        (never on the Messages API: it has no logs)."""
        if self._on_messages_api:
            return False
        rows = self.hook.get_logged_messages(bulk_id=record.bulk_id, limit=MAX_BATCH_SIZE)
        if not rows:
            return False
        self._accept_from_rows(record, rows, source="logs")
        return True

    def _accept_from_rows(self, record: BulkRecord, rows: Sequence[LoggedMessage], source: str) -> None:
        """Mark ``record`` accepted from its log rows (any row proves the request was taken whole)."""
        from airflow_provider_omni.models import is_refused_at_send, status_name

        refused = {row.message_id: row for row in rows if row.message_id and is_refused_at_send(row.status)}
        record.state, record.source = ACCEPTED, source
        record.rejected = len(refused)
        record.accepted = record.size - record.rejected
        record.refused_members = _ids.pack_members(refused)
        record.refused = [
            self._rejection(row.to, mid, status_name(row.status), record.bulk_id)
            for mid, row in list(refused.items())[:MAX_LISTED_REJECTIONS]
        ]

    def _find_earlier_in_logs(self, plan: SendPlan, ledger: SendLedger) -> EarlierTries:
        """Without records, find in the logs which destinations earlier tries sent.

        Earlier tries sent their bulks in message-id order, at most ``max_in_flight`` at once, so
        what went out is a prefix of that order plus some of the ``max_in_flight - 1`` bulks after
        it: each planned bulk is looked up by its bulk id, and when that misses (the list changed
        between tries), by its message ids; ``max_in_flight`` bulks in a row with nothing found end
        the search.
        """
        earlier = EarlierTries()
        whole: dict[str, list[LoggedMessage]] = {}  # bulks read by their own bulk id: every row of them
        partial: set[str] = set()  # bulks seen only through some of their message ids
        misses = 0
        for bulk in self._bulks(plan, plan.entries, set()):
            rows = self.hook.get_logged_messages(bulk_id=bulk.bulk_id, limit=MAX_BATCH_SIZE)
            if rows:
                whole[bulk.bulk_id], misses = rows, 0
                continue
            rows = self._logs_by_message_ids(bulk.request.message_ids)
            if not rows:
                misses += 1
                if misses >= self._max_in_flight():  # past every bulk that can have been in flight
                    break
                continue
            misses = 0
            partial |= {row.bulk_id for row in rows if row.bulk_id and row.message_id} - whole.keys()
        for bulk_id in sorted(partial):
            whole[bulk_id] = self.hook.get_logged_messages(bulk_id=bulk_id, limit=MAX_BATCH_SIZE)
        for bulk_id, rows in whole.items():
            ids = sorted({row.message_id for row in rows if row.message_id})
            if not ids:
                continue
            record = ledger.begin(bulk_id, [_ids.member_key(mid) for mid in ids])
            record.at = 0.0
            self._accept_from_rows(record, rows, source="logs (earlier try)")
            ledger.save(record)
            earlier.add(record)
            self._log_record(record)
            ledger.release(record, MAX_LISTED_REJECTIONS)
        return earlier

    def _logs_by_message_ids(self, ids: Sequence[str]) -> list[LoggedMessage]:
        """Read the log rows of ``ids``, in as many requests as the outcome module's plan needs."""
        from airflow_provider_omni.outcome import plan_logs_requests

        requests = plan_logs_requests(ids, "message")
        return [row for request in requests for row in self.hook.get_logged_messages(**request)]

    # -- sending --------------------------------------------------------------------------------------

    def _send_pending(
        self, plan: SendPlan, pending: Iterable[Entry], count: int, ledger: SendLedger
    ) -> tuple[int, int]:
        """Send the pending destinations, up to ``max_in_flight`` bulks at once, at the pace asked for.

        Every bulk is recorded before its POST and after its answer, in this thread; the POSTs (and
        the look-ups of an ambiguous one in the logs) run in worker threads.  After the first bulk
        left in doubt or refused, nothing new is sent: the bulks in flight are awaited and recorded,
        then the task fails.  Returns the destinations this try got accepted and refused at send.
        """
        from airflow_provider_omni.pacing import SendPace

        in_flight = self._max_in_flight()
        self.hook.pace = SendPace(self._messages_per_second())
        self.hook.prepare_for_threads()
        run = _SendRun(
            bulks=iter(self._bulks(plan, pending, ledger.used_bulk_ids())),
            count=-(-count // self._batch_size()),
            progress=_Progress(count, self.log, float(self.progress_interval)),
        )
        with ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="omni-send") as pool:
            while True:
                while run.may_send and len(run.running) < in_flight:
                    bulk = next(run.bulks, None)
                    if bulk is None:
                        break
                    self._submit(pool, run, bulk, ledger, 0)
                if not run.running:
                    break
                done, _ = wait(run.running, return_when=FIRST_COMPLETED)
                for future in done:
                    self._settle_post(pool, run, future, plan, ledger)
        run.progress.finish()
        if run.error is not None:
            raise run.error
        if run.uncertain:
            raise self._still_uncertain(run.uncertain, rest_sent=False)
        return run.accepted, run.rejected

    def _submit(
        self, pool: ThreadPoolExecutor, run: _SendRun, bulk: Bulk, ledger: SendLedger, resends: int
    ) -> None:
        """Record ``bulk`` as being sent, then POST it in a worker thread."""
        record = ledger.begin(bulk.bulk_id, bulk.members)
        metrics.count_bulk_sent(bulk.size, metrics.task_tags(self))
        run.running[pool.submit(self._post, bulk, record, run.count)] = (bulk, record, resends)

    def _settle_post(
        self,
        pool: ThreadPoolExecutor,
        run: _SendRun,
        future: Future[None],
        plan: SendPlan,
        ledger: SendLedger,
    ) -> None:
        """Record what one POST did; send it again when unconfirmed (``resend_unconfirmed``)."""
        bulk, record, resends = run.running.pop(future)
        error = future.exception()
        if isinstance(error, _LookUpFailed):  # sent ambiguously, then the logs could not be read
            run.error = run.error or error.error  # the record stays "sending": the next try looks it up
        elif isinstance(error, OmniError):  # refused before processing: nothing of it went out
            record.state, record.source = NOT_SENT, "refused before processing"
            ledger.save(record)
            run.error = run.error or error
        elif error is not None:  # unknown: the record stays "sending", the next try looks it up
            run.error = run.error or error
        elif record.source == _UNCONFIRMED and resends < MAX_UNCONFIRMED_RESENDS and run.may_send:
            ledger.save(record)
            self.log.warning("bulk %s: not confirmed; sending it again", record.bulk_id)
            again = self._bulk(plan, bulk.number, _entries_of(bulk), ledger.used_bulk_ids())
            self._submit(pool, run, again, ledger, resends + 1)
        else:
            self._record_answer(run, bulk, record, ledger)
        ledger.release(record, MAX_LISTED_REJECTIONS)
        give_back_free_memory()  # what the POST's thread freed (its answer) leaves the worker's RSS

    def _record_answer(self, run: _SendRun, bulk: Bulk, record: BulkRecord, ledger: SendLedger) -> None:
        """Write down a bulk Infobip answered (or that stays in doubt after the resends), and count it."""
        if record.source == _UNCONFIRMED:  # still unconfirmed after the resends: leave it in doubt
            record.state, record.source = UNCERTAIN, "not confirmed after resending"
        ledger.save(record)
        self._log_record(record, bulk.number, run.count)
        self._count_taken(record)
        if record.state == UNCERTAIN:
            run.uncertain.append(record)
        elif record.state == ACCEPTED:
            run.progress.add(record.size)
            run.accepted += record.accepted
            run.rejected += record.rejected

    def _post(self, bulk: Bulk, record: BulkRecord, count: int) -> None:
        """POST one bulk (in a worker thread) and fill ``record`` from the answer; an ambiguous
        failure is looked up in the logs.  Raises the OmniError of a request refused before processing."""
        try:
            if self._on_messages_api:
                acceptance = self.hook.send_messages_api_bulk(bulk.request, self._template)
            else:
                acceptance = self.hook.send_advanced_bulk(bulk.request)
        except OmniSendUncertainError as err:
            metrics.incr(metrics.SEND_AMBIGUOUS, 1, metrics.task_tags(self))
            self.log.warning(
                "bulk %d/%d (%s): the send failed ambiguously (%s)%s",
                bulk.number,
                count,
                bulk.bulk_id,
                err,
                "" if self._on_messages_api else "; looking it up in the logs",
            )
            try:
                self._confirm(record)
            except Exception as lookup_error:  # not a refusal of the POST: it may have gone out
                raise _LookUpFailed(lookup_error) from lookup_error
        else:
            self._accept_from_answer(record, bulk, acceptance)

    def _count_taken(self, record: BulkRecord) -> None:
        """Count the accepted and refused destinations of a bulk once Infobip is known to have taken it."""
        if record.state == ACCEPTED:
            metrics.count_bulk_taken(record.accepted, record.rejected, metrics.task_tags(self))

    def _confirm(self, record: BulkRecord) -> None:
        """Look an ambiguous request up in the logs a few times; leave it uncertain when not found
        (on the Messages API, which has no logs, at once)."""
        for delay in () if self._on_messages_api else self.confirm_delays:
            if delay > 0:
                time.sleep(delay)
            if self._read_logs_of(record):
                record.source = "logs (after an ambiguous failure)"
                return
        if self.resend_unconfirmed:
            record.state, record.source = NOT_SENT, _UNCONFIRMED
        else:
            record.state = UNCERTAIN

    def _accept_from_answer(self, record: BulkRecord, bulk: Bulk, acceptance: BulkAcceptance) -> None:
        from airflow_provider_omni.models import status_name

        refused = acceptance.refused
        addresses = (
            {d.get("messageId"): destination_address(d) for d in bulk.request.destinations()}
            if refused
            else {}
        )
        record.state = ACCEPTED
        record.rejected = len(refused)
        record.accepted = bulk.size - record.rejected
        record.refused_members = _ids.pack_members(str(m.get("messageId")) for m in refused)
        record.refused = []
        for message in refused[:MAX_LISTED_REJECTIONS]:
            to = (message.get("to") or {}).get("phoneNumber") or addresses.get(message.get("messageId"))
            name = status_name(message.get("status"))
            record.refused.append(self._rejection(to, message.get("messageId"), name, bulk.bulk_id))

    def _still_uncertain(self, records: Sequence[BulkRecord], *, rest_sent: bool) -> OmniSendUncertainError:
        """The error of a try that leaves ``records`` in doubt; ``rest_sent``: every other bulk went out
        (an earlier try's doubt), else this try stopped sending at the first one."""
        rest = (
            "Everything else is sent and recorded."
            if rest_sent
            else "Nothing new was sent after it in this try (the bulks already in flight were recorded); "
            "the next try sends the rest."
        )
        horizon = self._horizon_seconds()
        ids = ", ".join(record.bulk_id for record in records)
        until = max(record.at for record in records) + horizon
        when = datetime.fromtimestamp(until).astimezone().isoformat(timespec="seconds")
        if self._on_messages_api:
            return OmniSendUncertainError(
                f"{len(records)} bulk(s) may or may not have gone out: {ids}. The Messages API has no logs "
                "to look them up in, so they are never sent again by this task: check Infobip's reports "
                "or portal by these bulk ids, and set resend_unconfirmed=True only to send them again "
                f"(duplicates possible). {rest}",
                bulk_id=records[0].bulk_id,
            )
        return OmniSendUncertainError(
            f"{len(records)} bulk(s) may or may not have gone out: {ids}. They are not sent again: the "
            f"next try of this task looks them up in /omni/1/logs first, and sends them only when they are "
            f"still absent after the horizon ({horizon:.0f} s after the failed POST, i.e. {when}). {rest}",
            bulk_id=records[0].bulk_id,
        )

    def _horizon_seconds(self) -> float:
        horizon = self.uncertain_horizon
        return float(horizon.total_seconds() if isinstance(horizon, timedelta) else horizon)

    # -- reporting ------------------------------------------------------------------------------------

    def _rejection(
        self, to: str | None, message_id: str | None, status: str | None, bulk_id: str
    ) -> dict[str, str]:
        return {
            "to": self._show(to),
            "message_id": str(message_id),
            "status": status or "REJECTED",
            "bulk_id": bulk_id,
        }

    def _log_record(self, record: BulkRecord, number: int | None = None, count: int | None = None) -> None:
        where = f"bulk {number}/{count}" if number is not None else "earlier bulk"
        if record.state == ACCEPTED:
            how = "" if record.source == "sent" else f" (found in the {record.source})"
            self.log.info(
                "%s (%s): %d accepted, %d rejected%s",
                where,
                record.bulk_id,
                record.accepted,
                record.rejected,
                how,
            )
        else:
            self.log.warning("%s (%s): %s (%s)", where, record.bulk_id, record.state, record.source)

    def _result(self, plan: SendPlan, ledger: SendLedger, counts: Tally) -> dict[str, Any]:
        xcom = build_send_result(
            scenario_key=self.resolved_scenario_key,
            records=ledger.records,
            counts=counts,
            message_ids=self._message_ids(plan),
            namespace=self.hook.namespace,
            send_key=plan.key,
            sent_at=ledger.started_at,
        )
        if self._on_messages_api:
            xcom.update(backend=self.resolved_backend.value, flow=list(self._template.flow))
        if counts.removed:
            self.log.warning(
                "%d destination(s) taken by an earlier try are no longer in the list: they got the "
                "message (their bulks are in the XCom, so the delivery sensor waits for them too)",
                counts.removed,
            )
        self._report_rejections(xcom)
        return xcom

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


_UNCONFIRMED = "not confirmed in the logs (resend_unconfirmed)"


class _LookUpFailed(Exception):
    """The logs could not be read after a POST failed ambiguously: the bulk may have gone out."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class _SendRun:
    """The state of one try's sending loop (kept by the task's own thread only)."""

    bulks: Iterator[Bulk]
    count: int
    progress: _Progress
    #: future -> (bulk, its record, times it was sent again)
    running: dict[Future[None], tuple[Bulk, BulkRecord, int]] = field(default_factory=dict)
    #: the first error of a POST: nothing new is sent after it
    error: BaseException | None = None
    uncertain: list[BulkRecord] = field(default_factory=list)
    #: destinations accepted and refused at send in this try
    accepted: int = 0
    rejected: int = 0

    @property
    def may_send(self) -> bool:
        return self.error is None and not self.uncertain


class _Progress:
    """Log how far a send got every ``interval`` seconds: sent / total, rate, and the time left."""

    def __init__(self, total: int, log: Any, interval: float, clock: Callable[[], float] = time.monotonic):
        self.total, self.log, self.interval, self._clock = total, log, interval, clock
        self.sent = 0
        self._started = self._last = clock()

    def add(self, destinations: int) -> None:
        """Count ``destinations`` as taken; log a line when ``interval`` passed since the last one."""
        self.sent += destinations
        now = self._clock()
        if self.interval > 0 and now - self._last >= self.interval and self.sent < self.total:
            self._last = now
            self.log.info("Progress: %s", self.line(now))

    def line(self, now: float) -> str:
        """``12,000 of 100,000 destinations sent (12.0%), 2,400/s, about 37 s left``."""
        elapsed = max(now - self._started, 1e-9)
        rate = self.sent / elapsed
        left = (self.total - self.sent) / rate if rate > 0 else float("inf")
        share = 100.0 * self.sent / self.total if self.total else 100.0
        eta = f"about {_duration(left)} left" if self.sent < self.total else f"in {_duration(elapsed)}"
        return f"{self.sent:,} of {self.total:,} destinations sent ({share:.1f}%), {rate:,.0f}/s, {eta}"

    def finish(self) -> None:
        """Log the last line of a send that took longer than one interval."""
        now = self._clock()
        if self.interval > 0 and now - self._started >= self.interval:
            self.log.info("Progress: %s", self.line(now))


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "an unknown time"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _whole_number_in(name: str, value: Any, highest: int) -> int:
    """``value`` if it is an int from 1 to ``highest``; else an OmniValidationError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= highest:
        raise OmniValidationError(
            f"{name}: must be an integer from 1 to {highest}, got {value!r}",
            validation_errors={name: [f"1..{highest}"]},
        )
    return value


def _line_of_file(line: int) -> str:
    return f"destinations_path line {line}"


def _index_in_list(position: int) -> str:
    return f"destinations[{position}]"


#: A destination in the plan's spill: ``(message id, position, kind, destination or address)``.
_Spilled = tuple[str, int, int, Any]
#: Kinds of spilled records: a message id derived from the address, one given by the user, and the
#: derived id of a destination with a given one (a probe: it finds the same address given twice).
_DERIVED, _GIVEN, _PROBE = 0, 1, 2
#: Derives message ids to find duplicates while the connection (and so the send key) is unreadable.
_STAND_IN_KEY = "0" * _ids.SEND_KEY_LENGTH


def _require_phone_numbers(
    positions: Sequence[int], destinations: Sequence[DestinationShape], where: Callable[[int], str]
) -> None:
    """Refuse, before anything is sent, a destination without a phone number on the Messages API."""
    for position, destination in zip(positions, destinations, strict=True):
        if not (destination.get("to") or {}).get("phoneNumber"):
            name = f"{where(position)}.to.phoneNumber"
            raise OmniValidationError(
                f"{name}: needed on the Messages API backend (its Viber and SMS steps go to a phone "
                "number); nothing was sent",
                validation_errors={name: ["required on the Messages API backend"]},
            )


def _spill_destination(spill: SortedSpill, key: str, position: int, destination: DestinationShape) -> None:
    """Spill one valid destination under its message id (given, or derived from the send key and its
    address); a destination that is only a phone number is kept as that number."""
    to = destination["to"]
    derived = _ids.message_id(key, _ids.address_key(to))
    given = destination.get("messageId")
    if given is not None:
        spill.add((given, position, _GIVEN, destination))
        spill.add((derived, position, _PROBE, destination_address(destination)))
        return
    phone = to.get("phoneNumber")
    if phone is not None and len(destination) == 1 and len(to) == 1:
        spill.add((derived, position, _DERIVED, phone))
        return
    destination["messageId"] = derived
    spill.add((derived, position, _DERIVED, destination))


def _spill_phones(spill: SortedSpill, key: str, positions: Sequence[int], phones: Sequence[str]) -> None:
    """Spill valid bare phone numbers under the message ids derived from them."""
    ids = _ids.phone_message_ids(key, phones)
    spill.add_many(zip(ids, positions, repeat(_DERIVED, len(phones)), phones, strict=True))


def _unique_entries(records: Iterable[_Spilled], checks: _DestinationChecks) -> Iterator[Entry]:
    """The plan's entries from the spill sorted by ``(message id, position)``; a record with the message
    id of the one before it (the same address, or a message id given twice) is a duplicate."""
    member_key = _ids.member_key
    first: _Spilled | None = None
    for record in records:
        if first is not None and first[0] == record[0]:
            if first[1] != record[1]:  # not a destination's own id given as it would be derived
                checks.add_duplicate(first, record)
            continue
        first = record
        if record[2] != _PROBE:
            yield record[0], member_key(record[0]), record[3]


def _entries_of(bulk: Bulk) -> list[Entry]:
    """The plan entries of a bulk, read back from its body (to send it again)."""
    return [
        (str(d["messageId"]), _ids.member_key(str(d["messageId"])), d) for d in bulk.request.destinations()
    ]


def _spilled_address(record: _Spilled) -> str:
    payload = record[3]
    return payload if isinstance(payload, str) else destination_address(payload)


def _destination(entry: Entry) -> DestinationShape:
    """The destination of an entry in Infobip's form (made again from a bare phone number)."""
    message_id, _, destination = entry
    if isinstance(destination, str):
        return {"to": {"phoneNumber": destination}, "messageId": message_id}
    return destination


def _address_of(entry: Entry) -> str:
    destination = entry[2]
    return destination if isinstance(destination, str) else destination_address(destination)
