"""What a delivery report means: final or not, delivered on Viber, delivered by SMS fallback, failed.

Pure logic, no I/O.  The sensor and the trigger feed :class:`DeliveryTracker` with the reports
(``GET /omni/1/reports``) and log rows (``GET /omni/1/logs``) they fetch; the tracker tells which bulks
are unfinished and produces the summary that the sensor returns as its XCom.

**Statuses** (Infobip's response status documentation,
https://www.infobip.com/docs/essentials/response-status-and-error-codes), by status group:

=====================  ===================================================================  ===========
group                  statuses (id name)                                                   final
=====================  ===================================================================  ===========
0 ACCEPTED             0 ACCEPTED                                                           no
1 PENDING              3 PENDING_WAITING_DELIVERY, 7 PENDING_ENROUTE, 26 PENDING_ACCEPTED   no
2 UNDELIVERABLE        4 UNDELIVERABLE_REJECTED_OPERATOR, 9 UNDELIVERABLE_NOT_DELIVERED,    on the last
                       31 UNDELIVERABLE_NOT_SENT, 96 NO_ANSWER, 97 BUSY, 98 CANCELLED       step
3 DELIVERED            2 DELIVERED_TO_OPERATOR (intermediate), 5 DELIVERED_TO_HANDSET       5 only
4 EXPIRED              15 EXPIRED_EXPIRED, 29 EXPIRED_DLR_UNKNOWN                           on the last
                                                                                            step
5 REJECTED             6 REJECTED_NETWORK, 8 REJECTED_PREFIX_MISSING, 10 REJECTED_DND,      on any step
                       11 REJECTED_SOURCE, 12 REJECTED_NOT_ENOUGH_CREDITS, 13 REJECTED_SENDER,
                       14 REJECTED_DESTINATION_BLOCKLISTED, 18 REJECTED_DESTINATION_NOT_REGISTERED,
                       19 REJECTED_ROUTE_NOT_AVAILABLE, 20 REJECTED_FLOODING_FILTER,
                       21 REJECTED_SYSTEM_ERROR, 23 REJECTED_DUPLICATE_MESSAGE_ID,
                       25 REJECTED_MESSAGE_TOO_LONG, 51 MISSING_TO, 52 REJECTED_DESTINATION
=====================  ===================================================================  ===========

Failover to the next step of the scenario happens when a step is undeliverable or expires.  A
REJECTED status means the platform refused the message (routing, credits, sender, blocklist,
duplicate id): no failover follows, so it is final on any step
(:func:`~airflow_provider_omni.models.is_refused_at_send` is the one rule for "rejected").

**Outcome of a destination** (:class:`Outcome`), from its final report:

* delivered on ``VIBER`` -> ``VIBER_DELIVERED``;
* delivered on any other channel (SMS, the fallback step) -> ``SMS_DELIVERED``;
* rejected on any step, or final and not delivered on the *last* step of the flow -> ``FAILED``;
* undeliverable or expired on a step that is not the last one (Viber, when SMS follows) is **not**
  final: the next step can still deliver, so the destination stays ``PENDING`` until that step reports;
* nothing final yet -> ``PENDING``.  With ``accept_delivered_to_operator_after``, a destination whose
  last-step report is ``DELIVERED_TO_OPERATOR`` counts as delivered once that long has passed since it
  was first seen (wall time of the process that saw it; some networks never send a handset report).

Reports are correlated by ``bulkId`` and destination ``to``, never by ``messageId`` alone: the SMS
fallback report may carry a different ``messageId`` than the send response.  The destinations refused
at send (the send XCom's ``bulks[].rejected``, listed in ``rejected_destinations``) are counted once, as
``rejected_at_send``: their own reports and log rows in the bulk are not counted again.

**Summary** (:meth:`DeliveryTracker.summary`, the sensor's XCom), a JSON dict:

``outcomes``
    ``{"VIBER_DELIVERED": n, "SMS_DELIVERED": n, "FAILED": n, "PENDING": n}``, destinations by outcome.
``total``
    number of destinations waited on (accepted by the send, plus those rejected at send time).
``all_final``
    ``True`` when no destination is ``PENDING``.
``price``
    ``{"EUR": 0.0123, ...}``: price of the final report of every destination (``pricePerMessage`` times
    ``messageCount``), summed per currency.
``bulks``
    the bulk ids waited on (message ids when waiting on message ids).
``failed``
    at most ``failed_cap`` (100) failed destinations: ``{"to": "+4179****727", "bulk_id",
    "message_id", "channel", "status", "error", "permanent"}``.  ``status`` and ``error`` are Infobip's
    names (``EXPIRED_EXPIRED``, ``EC_ABSENT_SUBSCRIBER``); ``error``/``permanent`` are ``None`` when only
    the logs told the outcome (logs carry no error object).
``errors``
    ``{error name: count}`` over all failed destinations (``"UNKNOWN"`` when only the logs told).
``rejected_at_send``
    destinations Infobip rejected in the send response; they are counted as ``FAILED``.
``detail_path``
    where the per-destination detail (JSON lines) was written, or ``None``.
``timed_out``
    ``True`` when the wait ended at the timeout with destinations still ``PENDING``.
"""

from __future__ import annotations

import base64
import enum
import functools
import hashlib
import json
import random
import sys
import time
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_omni.backoff import jittered_backoff
from airflow_provider_omni.privacy import shorten_numbers, shorten_phone_number

if TYPE_CHECKING:
    from typing import TypeAlias

    from airflow_provider_omni.models import DeliveryReport, OmniChannel, OmniLog, Status

    Record: TypeAlias = DeliveryReport | OmniLog

# This module is imported by DAG files (through the sensor and the branch operator): it imports no
# model at module level (pydantic class creation is the costly part), only where a dict is parsed.

_VIBER = "VIBER"
#: The scenario flow assumed when none is given: Viber first, then SMS.
DEFAULT_FLOW: tuple[str, ...] = (_VIBER, "SMS")
#: How many failed destinations the summary lists in full.
DEFAULT_FAILED_CAP = 100
#: Version of :meth:`DeliveryTracker.to_state`; a state of another version is ignored (rebuilt).
STATE_VERSION = 2

_FINAL_GROUPS = frozenset({2, 4, 5})
_FINAL_GROUP_NAMES = frozenset({"UNDELIVERABLE", "EXPIRED", "REJECTED"})
_DELIVERED_GROUP = 3
_DELIVERED_TO_OPERATOR = 2
_DELIVERED_TO_HANDSET = 5
_HASH_SIZE = 8


class Outcome(enum.StrEnum):
    """How one destination ended (or that it has not ended yet)."""

    VIBER_DELIVERED = "VIBER_DELIVERED"
    SMS_DELIVERED = "SMS_DELIVERED"
    FAILED = "FAILED"
    PENDING = "PENDING"


def _status_fields(
    status: Status | Mapping[str, Any] | None,
) -> tuple[int | None, str | None, int | None, str]:
    if status is None:
        return None, None, None, ""
    if isinstance(status, Mapping):
        from airflow_provider_omni.models import Status

        status = Status.model_validate(status)
    return status.group_id, (status.group_name or "").upper() or None, status.id, (status.name or "").upper()


def _delivered_with(status: Status | Mapping[str, Any] | None, status_id: int, name: str) -> bool:
    group_id, group_name, found_id, found_name = _status_fields(status)
    if group_id == _DELIVERED_GROUP or group_name == "DELIVERED":
        return found_id == status_id or (found_id is None and found_name == name)
    return False


def is_delivered(status: Status | Mapping[str, Any] | None) -> bool:
    """Tell whether ``status`` is ``DELIVERED_TO_HANDSET`` (group 3, id 5), the final delivered status."""
    return _delivered_with(status, _DELIVERED_TO_HANDSET, "DELIVERED_TO_HANDSET")


def is_delivered_to_operator(status: Status | Mapping[str, Any] | None) -> bool:
    """Tell whether ``status`` is ``DELIVERED_TO_OPERATOR`` (group 3, id 2): a handset report may follow."""
    return _delivered_with(status, _DELIVERED_TO_OPERATOR, "DELIVERED_TO_OPERATOR")


def is_rejected(status: Status | Mapping[str, Any] | None) -> bool:
    """Tell whether ``status`` is in the REJECTED group: refused by the platform, final on any step.

    The rule is :func:`~airflow_provider_omni.models.is_refused_at_send`, the one the send uses.
    """
    return status is not None and _refused_at_send_rule()(status)


@functools.cache
def _refused_at_send_rule() -> Callable[[Any], bool]:
    from airflow_provider_omni.models import is_refused_at_send

    return is_refused_at_send


def is_final_status(status: Status | Mapping[str, Any] | None) -> bool:
    """Tell whether ``status`` is final: delivered to the handset, undeliverable, expired or rejected.

    ``ACCEPTED``, ``PENDING_*`` and ``DELIVERED_TO_OPERATOR`` are intermediate; an unknown or missing
    status is treated as not final.
    """
    if is_delivered(status):
        return True
    group_id, group_name, _, _ = _status_fields(status)
    if group_id is not None:
        return group_id in _FINAL_GROUPS
    return group_name in _FINAL_GROUP_NAMES


def _channel_name(channel: OmniChannel | str | None) -> str | None:
    if channel is None:
        return None
    return str(getattr(channel, "value", channel)).upper()


def normalize_flow(flow: Iterable[Any] | None) -> tuple[str, ...]:
    """Return the channel names of a scenario flow (steps with ``channel``, dicts with ``channel``,
    channels or names)."""
    if flow is None:
        return DEFAULT_FLOW
    names: list[str] = []
    for step in flow:
        if isinstance(step, Mapping):
            step = step["channel"]
        channel = getattr(step, "channel", step)
        name = _channel_name(channel)
        if name:
            names.append(name)
    if not names:
        raise ValueError("the scenario flow needs at least one channel")
    return tuple(names)


def _is_last_step(name: str | None, flow: Sequence[str]) -> bool:
    """A channel that is not in the flow counts as the last step (nothing known to follow it)."""
    return not (name in flow and flow.index(name) < len(flow) - 1)


def classify(
    channel: OmniChannel | str | None,
    status: Status | Mapping[str, Any] | None,
    flow: Sequence[str] = DEFAULT_FLOW,
) -> Outcome:
    """Return the outcome one report (or log row) means for its destination.

    :param channel: the report's ``channel``, the step it is about.
    :param status: the report's ``status``.
    :param flow: the scenario's channels in order (:func:`normalize_flow`).
    :return: ``PENDING`` when the report is not the end: an intermediate status, or an undeliverable
        or expired step that a later step of the flow can still make good.  REJECTED is final on any
        step (no failover follows a refusal).
    """
    if not is_final_status(status):
        return Outcome.PENDING
    name = _channel_name(channel)
    if is_delivered(status):
        return Outcome.VIBER_DELIVERED if name == _VIBER else Outcome.SMS_DELIVERED
    if is_rejected(status) or _is_last_step(name, flow):
        return Outcome.FAILED
    return Outcome.PENDING


def delivered_outcome(flow: Sequence[str]) -> Outcome:
    """Return the outcome of a delivery on the last step of ``flow``."""
    return Outcome.VIBER_DELIVERED if flow[-1] == _VIBER else Outcome.SMS_DELIVERED


def destination_key(to: str | None) -> str:
    """Return the short, non-reversible key of a destination number within a bulk (hex)."""
    digits = (to or "").strip().lstrip("+")
    return hashlib.blake2b(digits.encode(), digest_size=_HASH_SIZE).hexdigest()


def _pack_keys(keys: Iterable[str]) -> str:
    return base64.b64encode(b"".join(bytes.fromhex(k) for k in sorted(keys))).decode()


def _unpack_keys(packed: str) -> set[str]:
    raw = base64.b64decode(packed)
    return {raw[i : i + _HASH_SIZE].hex() for i in range(0, len(raw), _HASH_SIZE)}


class _KeySet:
    """Destination keys (:func:`destination_key`, hex outside) held as one sorted array of 64-bit
    numbers: 8 bytes a key where a set of strings takes about 100 (a million destinations in
    unfinished bulks: about 8 MB, not 94 MB).  A bulk holds at most 1000, so inserting stays cheap."""

    __slots__ = ("_keys",)

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._keys = array("Q", sorted({int(key, 16) for key in keys}))

    @classmethod
    def from_packed(cls, packed: str) -> _KeySet:
        """The keys packed by :func:`_pack_keys`."""
        keys = cls()
        raw = base64.b64decode(packed)
        values = array("Q")
        values.frombytes(raw[: len(raw) - len(raw) % _HASH_SIZE])
        if sys.byteorder == "little":  # packed big-endian, as the hex reads
            values.byteswap()
        keys._keys = array("Q", sorted(set(values)))
        return keys

    def add(self, key: str) -> None:
        value = int(key, 16)
        keys = self._keys
        at = bisect_left(keys, value)
        if at == len(keys) or keys[at] != value:
            keys.insert(at, value)

    def clear(self) -> None:
        self._keys = array("Q")

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        value, keys = int(key, 16), self._keys
        at = bisect_left(keys, value)
        return at < len(keys) and keys[at] == value

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[str]:
        width = 2 * _HASH_SIZE
        return (f"{value:0{width}x}" for value in self._keys)


#: One destination seen DELIVERED_TO_OPERATOR on the last step: first seen (epoch), price currency
#: and amount of that report (counted when it is accepted as delivered).
_Sighting = tuple[float, str | None, float]


@dataclass
class _Bucket:
    """What the tracker knows about one bulk: expected size, counts, and who is final already.

    ``expected`` counts the destinations accepted by the send; ``refused`` those refused at send
    (counted once, by the tracker, as rejected at send), of which ``refused_ids`` were listed by the
    send and ``unlisted_found`` unlisted ones were recognised from their REJECTED record.
    """

    expected: int
    counts: dict[str, int] = field(default_factory=dict)
    final: _KeySet = field(default_factory=_KeySet)
    refused: int = 0
    refused_ids: frozenset[str] = frozenset()
    unlisted_found: int = 0
    operator: dict[str, _Sighting] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    @property
    def finished(self) -> bool:
        return self.done >= self.expected

    @property
    def unlisted_left(self) -> int:
        return max(self.refused - len(self.refused_ids) - self.unlisted_found, 0)


def _bulk_of_refusal(message_id: Any, refused_per_bulk: Mapping[str, int]) -> str | None:
    """Return the bulk of a refused destination listed without one (an XCom of an older send operator):
    the only bulk with refusals, or the bulk whose id its message id starts with."""
    candidates = [b for b, n in refused_per_bulk.items() if n]
    if len(candidates) == 1:
        return candidates[0]
    text = str(message_id or "")
    return next((b for b in candidates if text.startswith(f"{b}.")), None)


def _group_sightings(sightings: Mapping[str, _Sighting]) -> list[list[Any]]:
    """Pack sightings as ``[[first seen, currency, amount, packed keys], ...]``: one entry per poll."""
    groups: dict[_Sighting, list[str]] = {}
    for key, sighting in sightings.items():
        groups.setdefault(sighting, []).append(key)
    return [
        [t, currency, amount, _pack_keys(keys)]
        for (t, currency, amount), keys in sorted(groups.items(), key=str)
    ]


def _ungroup_sightings(groups: Iterable[Sequence[Any]]) -> dict[str, _Sighting]:
    found: dict[str, _Sighting] = {}
    for t, currency, amount, packed in groups:
        for key in _unpack_keys(packed):
            found[key] = (float(t), currency, float(amount))
    return found


class DeliveryTracker:
    """Follow the destinations of one or more bulks from their reports to an outcome each.

    The state is compact: counts per bulk, the price per currency, error counts, full detail of at
    most ``failed_cap`` failed destinations, and for each *unfinished* bulk one 8-byte hash per final
    destination (to ignore a second report about it, e.g. the report of a destination already known
    from the logs).  A finished bulk keeps only its counts.  An unfinished bulk of 1000 holds about
    8 kB in memory (a sorted array) and 11 kB in its stored state.

    :param expected: bulk id (or message id, with ``key_by="message"``) to the number of destinations
        expected in it (the send XCom's ``bulks[].accepted``).
    :param flow: the scenario's channels in order (default VIBER then SMS).
    :param failed_cap: how many failed destinations to keep in full.
    :param show_full_numbers: keep phone numbers unshortened in the failed detail.
    :param key_by: ``"bulk"`` (correlate by ``bulkId`` and ``to``) or ``"message"`` (by ``messageId``).
    :param accept_delivered_to_operator_after: seconds after which a destination whose last-step
        report is ``DELIVERED_TO_OPERATOR`` counts as delivered (``None``: never).
    :param clock: the wall clock of those seconds (``time.time``).
    """

    def __init__(
        self,
        expected: Mapping[str, int],
        *,
        flow: Iterable[OmniChannel | str | Mapping[str, Any]] | None = None,
        failed_cap: int = DEFAULT_FAILED_CAP,
        show_full_numbers: bool = False,
        key_by: str = "bulk",
        accept_delivered_to_operator_after: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if key_by not in ("bulk", "message"):
            raise ValueError("key_by must be 'bulk' or 'message'")
        self.flow = normalize_flow(flow)
        self.failed_cap = failed_cap
        self.show_full_numbers = show_full_numbers
        self.key_by = key_by
        self.accept_delivered_to_operator_after = accept_delivered_to_operator_after
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {b: _Bucket(int(n)) for b, n in expected.items() if int(n) > 0}
        self._price: dict[str, float] = {}
        self._errors: dict[str, int] = {}
        self._failed: list[dict[str, Any]] = []
        self._rejected_at_send = 0
        self._refused_anywhere: frozenset[str] = frozenset()
        self._changed: set[str] = set()
        self._failed_without_error: set[str] = set()

    # -- construction ---------------------------------------------------------------------------------

    @classmethod
    def from_send_result(cls, send_result: Mapping[str, Any], **kwargs: Any) -> DeliveryTracker:
        """Build a tracker for the bulks of a send operator's XCom, counting its rejected destinations."""
        return cls.from_send_results([send_result], **kwargs)

    @classmethod
    def from_send_results(cls, send_results: Sequence[Mapping[str, Any]], **kwargs: Any) -> DeliveryTracker:
        """Build a tracker for the bulks of one or more send XComs (a mapped send)."""
        bulks = [b for r in send_results for b in r.get("bulks") or []]
        tracker = cls({str(b["bulk_id"]): int(b.get("accepted") or 0) for b in bulks}, **kwargs)
        tracker.add_rejected_at_send(
            {
                "bulks": bulks,
                "rejected": sum(int(r.get("rejected") or 0) for r in send_results),
                "rejected_destinations": [
                    d for r in send_results for d in r.get("rejected_destinations") or []
                ],
            }
        )
        return tracker

    def add_rejected_at_send(self, send_result: Mapping[str, Any]) -> None:
        """Count the destinations the send response rejected as ``FAILED`` (listed up to the cap).

        Their own reports and log rows in their bulk are then recognised and not counted again: by the
        message ids listed in ``rejected_destinations`` and, for those not listed, by the number of
        refused destinations of each bulk (``bulks[].rejected``).
        """
        self._rejected_at_send = int(send_result.get("rejected") or 0)
        if self._rejected_at_send:
            self._errors["REJECTED_AT_SEND"] = self._rejected_at_send
        counts = {str(b["bulk_id"]): int(b.get("rejected") or 0) for b in send_result.get("bulks") or []}
        listed: dict[str, list[str]] = {}
        unattributed: list[str] = []
        for item in send_result.get("rejected_destinations") or []:
            message_id = item.get("message_id")
            bulk_id = item.get("bulk_id") or _bulk_of_refusal(message_id, counts)
            if message_id:
                (listed.setdefault(str(bulk_id), []) if bulk_id else unattributed).append(str(message_id))
            self._add_failed_detail(
                {
                    "to": item.get("to"),
                    "bulk_id": bulk_id,
                    "message_id": message_id,
                    "channel": None,
                    "status": item.get("status"),
                    "error": None,
                    "permanent": None,
                    "_k": None,
                }
            )
        self.set_refusals({"counts": counts, "message_ids": listed, "unattributed": unattributed})

    def set_refusals(self, refusals: Mapping[str, Any] | None) -> None:
        """Tell which destinations of the bulks were refused at send (:meth:`refusals` of a tracker).

        They are not counted by this tracker (the one holding the send's result counts them).
        """
        refusals = refusals or {}
        counts = refusals.get("counts") or {}
        listed = refusals.get("message_ids") or {}
        self._refused_anywhere = frozenset(map(str, refusals.get("unattributed") or []))
        for bucket_id, bucket in self._buckets.items():
            bucket.refused = int(counts.get(bucket_id) or 0)
            bucket.refused_ids = frozenset(map(str, listed.get(bucket_id) or []))

    def refusals(self) -> dict[str, Any]:
        """Return the refused-at-send destinations as given (JSON-safe; bounded by the send's list)."""
        return {
            "counts": {b: s.refused for b, s in self._buckets.items() if s.refused},
            "message_ids": {b: sorted(s.refused_ids) for b, s in self._buckets.items() if s.refused_ids},
            "unattributed": sorted(self._refused_anywhere),
        }

    # -- ingestion ------------------------------------------------------------------------------------

    def _bucket_id(self, record: Record) -> str | None:
        return record.message_id if self.key_by == "message" else record.bulk_id

    def ingest(self, record: Record) -> Outcome | None:
        """Take one report or log row into account.

        :return: the destination's new outcome when this record made it final, else ``None`` (not
            final yet, a destination already final or refused at send, or a bulk not followed).
        """
        bucket_id = self._bucket_id(record)
        bucket = self._buckets.get(bucket_id) if bucket_id else None
        if bucket is None or bucket_id is None:
            return None
        key = destination_key(record.to)
        if key in bucket.final or bucket.finished:
            self._complete_error(bucket_id, key, record)
            return None
        if self._is_refusal(bucket, record):
            bucket.final.add(key)
            self._changed.add(bucket_id)
            return None
        outcome = classify(record.channel, record.status, self.flow)
        if outcome is Outcome.PENDING:
            self._note_delivered_to_operator(bucket_id, bucket, key, record)
            return None
        bucket.operator.pop(key, None)
        self._make_final(bucket_id, bucket, key, outcome)
        self._add_price(record)
        if outcome is Outcome.FAILED:
            self._add_failure(bucket_id, key, record)
            if getattr(record, "error", None) is None:
                self._failed_without_error.add(bucket_id)
        return outcome

    def _make_final(self, bucket_id: str, bucket: _Bucket, key: str, outcome: Outcome) -> None:
        bucket.final.add(key)
        bucket.counts[outcome.value] = bucket.counts.get(outcome.value, 0) + 1
        self._changed.add(bucket_id)
        if bucket.finished:
            bucket.final.clear()
            bucket.operator.clear()

    def _is_refusal(self, bucket: _Bucket, record: Record) -> bool:
        """Tell whether ``record`` is about a destination refused at send (counted elsewhere, once)."""
        if self.key_by != "bulk" or not (bucket.refused or self._refused_anywhere):
            return False
        if not is_rejected(record.status):
            return False
        if record.message_id in bucket.refused_ids or record.message_id in self._refused_anywhere:
            return True
        if bucket.unlisted_left:  # one of the refused destinations the send did not list
            bucket.unlisted_found += 1
            return True
        return False

    def _note_delivered_to_operator(self, bucket_id: str, bucket: _Bucket, key: str, record: Record) -> None:
        """Remember when a destination was first seen DELIVERED_TO_OPERATOR on the last step."""
        if self.accept_delivered_to_operator_after is None or key in bucket.operator:
            return
        if not is_delivered_to_operator(record.status) or not _is_last_step(
            _channel_name(record.channel), self.flow
        ):
            return
        price = record.price
        amount = 0.0
        if price is not None and price.price_per_message is not None and price.currency:
            amount = price.price_per_message * (record.message_count or 1)
        bucket.operator[key] = (self._clock(), price.currency if price is not None else None, amount)
        self._changed.add(bucket_id)

    def _accept_delivered_to_operator(self) -> None:
        """Count as delivered the destinations DELIVERED_TO_OPERATOR for long enough."""
        after = self.accept_delivered_to_operator_after
        if after is None:
            return
        now = self._clock()
        outcome = delivered_outcome(self.flow)
        for bucket_id, bucket in self._buckets.items():
            for key, (seen, currency, amount) in sorted(bucket.operator.items()):
                if bucket.finished or now - seen < after:
                    continue
                del bucket.operator[key]
                self._make_final(bucket_id, bucket, key, outcome)
                if currency:
                    self._price[currency] = round(self._price.get(currency, 0.0) + amount, 6)

    def delivered_to_operator_state(self) -> dict[str, list[list[Any]]]:
        """Return the DELIVERED_TO_OPERATOR sightings per bulk (JSON-safe), for a trigger to go on with."""
        return {b: _group_sightings(s.operator) for b, s in self._buckets.items() if s.operator}

    def seed_delivered_to_operator(self, state: Mapping[str, Iterable[Sequence[Any]]] | None) -> None:
        """Take the sightings of :meth:`delivered_to_operator_state` (the earliest sighting wins)."""
        for bucket_id, groups in (state or {}).items():
            bucket = self._buckets.get(bucket_id)
            if bucket is None or bucket.finished:
                continue
            for key, sighting in _ungroup_sightings(groups).items():
                known = bucket.operator.get(key)
                if key not in bucket.final and (known is None or sighting[0] < known[0]):
                    bucket.operator[key] = sighting
                    self._changed.add(bucket_id)

    def ingest_many(self, records: Iterable[Record]) -> int:
        """Take several records into account; return how many destinations became final."""
        return sum(1 for record in records if self.ingest(record) is not None)

    def _add_price(self, record: Record) -> None:
        price = record.price
        if price is None or price.price_per_message is None or not price.currency:
            return
        amount = price.price_per_message * (record.message_count or 1)
        self._price[price.currency] = round(self._price.get(price.currency, 0.0) + amount, 6)

    def _add_failure(self, bucket_id: str, key: str, record: Record) -> None:
        error = getattr(record, "error", None)
        error_name = error.name if error is not None and error.name else None
        self._errors[error_name or "UNKNOWN"] = self._errors.get(error_name or "UNKNOWN", 0) + 1
        self._add_failed_detail(
            {
                "to": shorten_phone_number(record.to, full=self.show_full_numbers),
                "bulk_id": record.bulk_id,
                "message_id": record.message_id,
                "channel": _channel_name(record.channel),
                "status": record.status.name if record.status else None,
                "error": error_name,
                "permanent": error.permanent if error is not None else None,
                "_k": f"{bucket_id}:{key}",
            }
        )

    def _add_failed_detail(self, item: dict[str, Any]) -> None:
        if len(self._failed) < self.failed_cap:
            self._failed.append(item)

    def _complete_error(self, bucket_id: str, key: str, record: Record) -> None:
        """A report about a destination the logs already declared failed: fill in its error."""
        error = getattr(record, "error", None)
        if error is None or not error.name:
            return
        for item in self._failed:
            if item.get("_k") == f"{bucket_id}:{key}" and item["error"] is None:
                item["error"], item["permanent"] = error.name, error.permanent
                self._errors["UNKNOWN"] = self._errors.get("UNKNOWN", 1) - 1
                if not self._errors["UNKNOWN"]:
                    del self._errors["UNKNOWN"]
                self._errors[error.name] = self._errors.get(error.name, 0) + 1
                return

    # -- questions ------------------------------------------------------------------------------------

    def expected(self) -> dict[str, int]:
        """Return the number of destinations expected per bulk (or message id)."""
        return {b: bucket.expected for b, bucket in self._buckets.items()}

    def pop_failed_without_error(self) -> set[str]:
        """Return (and forget) the bulks where a failure was learnt without its error (from the logs):
        one more report request for them can tell the error."""
        found, self._failed_without_error = self._failed_without_error, set()
        return found

    def note_failed_without_error(self, bucket_ids: Iterable[str]) -> None:
        """Ask again for the errors of these bulks (their report request failed)."""
        self._failed_without_error.update(bucket_ids)

    def pop_changed(self) -> set[str]:
        """Return the bulks whose set of final destinations changed since the last call."""
        changed, self._changed = self._changed, set()
        return changed

    def complete_summary(self, summary: Mapping[str, Any]) -> dict[str, Any]:
        """Return ``summary`` (made by another tracker over the same bulks, e.g. the trigger's, which
        rebuilt from the logs) completed with what this tracker knows and it cannot: the destinations
        rejected at send time, and the errors of reports this tracker consumed (logs have no error)."""
        known = {
            item["message_id"]: item
            for item in self._failed
            if item.get("_k") and item.get("error") is not None
        }
        errors = dict(summary.get("errors") or {})
        failed = []
        for item in summary.get("failed") or []:
            item = dict(item)
            match = known.get(item.get("message_id"))
            if item.get("error") is None and match is not None and errors.get("UNKNOWN", 0) > 0:
                item["error"], item["permanent"] = match["error"], match["permanent"]
                errors["UNKNOWN"] -= 1
                errors[match["error"]] = errors.get(match["error"], 0) + 1
            failed.append(item)
        if not errors.get("UNKNOWN", 1):
            del errors["UNKNOWN"]
        rejected = [
            {k: v for k, v in item.items() if k != "_k"} for item in self._failed if not item.get("_k")
        ]
        if self._rejected_at_send:
            errors["REJECTED_AT_SEND"] = self._rejected_at_send
        outcomes = dict(summary["outcomes"])
        outcomes[Outcome.FAILED.value] += self._rejected_at_send
        return {
            **summary,
            "outcomes": outcomes,
            "total": summary["total"] + self._rejected_at_send,
            "failed": (rejected + failed)[: self.failed_cap],
            "errors": errors,
            "rejected_at_send": self._rejected_at_send,
        }

    def unfinished(self) -> list[str]:
        """Return the bulk ids (or message ids) that still have destinations without a final outcome.

        Destinations DELIVERED_TO_OPERATOR for long enough are accepted as delivered first.
        """
        self._accept_delivered_to_operator()
        return [b for b, bucket in self._buckets.items() if not bucket.finished]

    @property
    def all_final(self) -> bool:
        """``True`` when every expected destination has a final outcome."""
        return not self.unfinished()

    def counts(self) -> dict[str, int]:
        """Return the number of destinations by outcome, ``PENDING`` included."""
        self._accept_delivered_to_operator()
        result = {o.value: 0 for o in Outcome}
        for bucket in self._buckets.values():
            for name, n in bucket.counts.items():
                result[name] += n
            result[Outcome.PENDING.value] += max(bucket.expected - bucket.done, 0)
        result[Outcome.FAILED.value] += self._rejected_at_send
        return result

    def summary(self, *, timed_out: bool = False, detail_path: str | None = None) -> dict[str, Any]:
        """Return the JSON summary described in the module docstring (bounded in size)."""
        counts = self.counts()
        return {
            "outcomes": counts,
            "total": sum(counts.values()),
            "all_final": counts[Outcome.PENDING.value] == 0,
            "price": dict(self._price),
            "bulks": list(self._buckets),
            "failed": [{k: v for k, v in item.items() if k != "_k"} for item in self._failed],
            "errors": dict(self._errors),
            "rejected_at_send": self._rejected_at_send,
            "detail_path": detail_path,
            "timed_out": timed_out,
        }

    # -- state ----------------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Return the tracker as a JSON-safe dict (see :meth:`from_state`)."""
        self._accept_delivered_to_operator()
        return {
            "version": STATE_VERSION,
            "flow": list(self.flow),
            "failed_cap": self.failed_cap,
            "show_full_numbers": self.show_full_numbers,
            "key_by": self.key_by,
            "accept_delivered_to_operator_after": self.accept_delivered_to_operator_after,
            "buckets": {
                b: {
                    "expected": s.expected,
                    "counts": dict(s.counts),
                    "final": _pack_keys(s.final),
                    "operator": _group_sightings(s.operator),
                    "unlisted_found": s.unlisted_found,
                }
                for b, s in self._buckets.items()
            },
            "refusals": self.refusals(),
            "price": dict(self._price),
            "errors": dict(self._errors),
            "failed": list(self._failed),
            "rejected_at_send": self._rejected_at_send,
        }

    def progress_state(self) -> dict[str, Any]:
        """Return :meth:`to_state` without the destinations rejected at send: what the reports told,
        for a tracker that counts those itself (the sensor's, around a trigger's wait)."""
        state = self.to_state()
        state["failed"] = [item for item in state["failed"] if item.get("_k")]
        state["rejected_at_send"] = 0
        return state

    def take_progress(self, other: DeliveryTracker) -> None:
        """Take what ``other`` learnt from reports over the same bulks (its counts, final destinations,
        price, errors and failed detail), keeping this tracker's destinations rejected at send."""
        self._buckets = {b: other._buckets.get(b, bucket) for b, bucket in self._buckets.items()}
        self._price, self._errors = dict(other._price), dict(other._errors)
        rejected = [item for item in self._failed if not item.get("_k")]
        learnt = [item for item in other._failed if item.get("_k")]
        self._failed = (rejected + learnt)[: self.failed_cap]
        self._changed |= set(self._buckets)

    @classmethod
    def from_state(
        cls, state: Mapping[str, Any], *, clock: Callable[[], float] = time.time
    ) -> DeliveryTracker:
        """Rebuild a tracker from :meth:`to_state`; raise ``ValueError`` on a state of another version."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unknown tracker state version {state.get('version')!r}")
        tracker = cls(
            {},
            flow=state["flow"],
            failed_cap=state["failed_cap"],
            show_full_numbers=state["show_full_numbers"],
            key_by=state["key_by"],
            accept_delivered_to_operator_after=state["accept_delivered_to_operator_after"],
            clock=clock,
        )
        for bucket_id, data in state["buckets"].items():
            tracker._buckets[bucket_id] = _Bucket(
                int(data["expected"]),
                dict(data["counts"]),
                _KeySet.from_packed(data["final"]),
                unlisted_found=int(data["unlisted_found"]),
                operator=_ungroup_sightings(data["operator"]),
            )
        tracker.set_refusals(state["refusals"])
        tracker._price = dict(state["price"])
        tracker._errors = dict(state["errors"])
        tracker._failed = [dict(item) for item in state["failed"]]
        tracker._rejected_at_send = int(state["rejected_at_send"])
        return tracker


def latest_per_destination(records: Iterable[Record], flow: Sequence[str] = DEFAULT_FLOW) -> list[Record]:
    """Return one record per destination (``bulkId`` + ``to``): its final one when it has one.

    Logs may hold a row per step (a failed Viber row and the SMS row); the row of the latest step of
    the flow wins, a final row over a pending one.
    """
    best: dict[tuple[str | None, str], tuple[tuple[int, int], Record]] = {}
    for record in records:
        name = _channel_name(record.channel)
        rank = (
            int(classify(record.channel, record.status, flow) is not Outcome.PENDING),
            flow.index(name) if name in flow else len(flow),
        )
        key = (record.bulk_id, destination_key(record.to))
        if key not in best or rank >= best[key][0]:
            best[key] = (rank, record)
    return [record for _, record in best.values()]


def detail_line(
    record: Record,
    flow: Sequence[str],
    *,
    show_full_numbers: bool = False,
    delivered_to_operator: Outcome | None = None,
) -> dict[str, Any]:
    """Return the per-destination detail of one log row or report (one JSON line of ``detail_path``).

    :param delivered_to_operator: the outcome of a row DELIVERED_TO_OPERATOR on the last step, when
        the wait accepted those as delivered (else it is ``PENDING``).
    """
    error = getattr(record, "error", None)
    price = record.price
    outcome = classify(record.channel, record.status, flow)
    if (
        delivered_to_operator is not None
        and is_delivered_to_operator(record.status)
        and _is_last_step(_channel_name(record.channel), flow)
    ):
        outcome = delivered_to_operator
    return {
        "to": shorten_phone_number(record.to, full=show_full_numbers),
        "bulk_id": record.bulk_id,
        "message_id": record.message_id,
        "channel": _channel_name(record.channel),
        "status": record.status.name if record.status else None,
        "outcome": outcome.value,
        "error": error.name if error is not None else None,
        "permanent": error.permanent if error is not None else None,
        "price": price.price_per_message if price is not None else None,
        "currency": price.currency if price is not None else None,
        "done_at": record.done_at.isoformat() if record.done_at else None,
    }


# -- reading the logs (the plan is shared by the sensor, sync, and the trigger, async) -----------------

#: Rows per ``GET /omni/1/logs`` request (Infobip's maximum, and the size of a bulk).
LOGS_LIMIT = 1000
#: Message ids per logs request when waiting on message ids (keeps the query string short).
MESSAGE_IDS_PER_LOGS_REQUEST = 100


def plan_logs_requests(bucket_ids: Sequence[str], key_by: str = "bulk") -> list[dict[str, Any]]:
    """Return the first ``get_logs`` / ``aget_logs`` keyword arguments that read the logs of ``bucket_ids``.

    One request per bulk, or one per 100 message ids (``key_by="message"``).  After each answer,
    :func:`more_logs_requests` tells whether that bulk needs more.
    """
    if key_by == "message":
        return [
            {
                "message_id": list(bucket_ids[start : start + MESSAGE_IDS_PER_LOGS_REQUEST]),
                "limit": LOGS_LIMIT,
            }
            for start in range(0, len(bucket_ids), MESSAGE_IDS_PER_LOGS_REQUEST)
        ]
    return [{"bulk_id": bulk_id, "limit": LOGS_LIMIT} for bulk_id in bucket_ids]


def logs_page_is_complete(
    rows: Sequence[Record], expected: int | None, flow: Sequence[str] = DEFAULT_FLOW
) -> bool:
    """Tell whether one full page of a bulk's logs already tells everything the logs know about it.

    It does when it has a row for each of the ``expected`` destinations and no row is a failed step
    that a later step may have followed in another row (logs with one row per message, as Infobip's
    and the sandbox's, always pass; logs with one row per step would not).  ``expected`` ``None``
    (size unknown) is never complete.
    """
    if expected is None:
        return False
    seen: set[str] = set()
    for row in rows:
        if is_final_status(row.status) and classify(row.channel, row.status, flow) is Outcome.PENDING:
            return False
        seen.add(destination_key(row.to))
    return len(seen) >= expected


def more_logs_requests(
    request: Mapping[str, Any],
    rows: Sequence[Record],
    *,
    flow: Sequence[str] = DEFAULT_FLOW,
    expected: Mapping[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Return the requests still needed after ``rows`` answered ``request`` (usually none).

    A bulk whose page came back full and incomplete (:func:`logs_page_is_complete`) is read again once
    per channel of the flow: a bulk holds at most 1000 destinations, so each channel fits in a page.

    :param expected: the number of destinations per bulk, where known.
    """
    bulk_id = request.get("bulk_id")
    if not isinstance(bulk_id, str) or "channel" in request or len(rows) < int(request["limit"]):
        return []
    if logs_page_is_complete(rows, (expected or {}).get(bulk_id), flow):
        return []
    return [{**request, "channel": channel} for channel in flow]


# -- the identity of a send (stored state is used only for the send it was made for) -----------------


def fingerprint(value: Any) -> str:
    """Return a short, stable hash of a JSON-able value (keys sorted)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def send_fingerprint(send_results: Sequence[Mapping[str, Any]]) -> str:
    """Return the fingerprint of one or more send XComs: what was sent where, and when.

    It covers the scenario key, the bulk ids with their accepted and rejected counts, the rejected
    total and the message ids of the listed rejections, and ``sent_at`` (the epoch of the first
    request) when the XCom has it: a send cleared and run again has a new ``sent_at``, so its
    fingerprint differs even when its bulk ids are the same.
    """
    return fingerprint(
        [
            {
                "scenario_key": result.get("scenario_key"),
                "sent_at": result.get("sent_at"),
                "bulks": sorted(
                    (str(b.get("bulk_id")), int(b.get("accepted") or 0), int(b.get("rejected") or 0))
                    for b in result.get("bulks") or []
                ),
                "rejected": int(result.get("rejected") or 0),
                "rejected_ids": sorted(
                    str(item.get("message_id")) for item in result.get("rejected_destinations") or []
                ),
            }
            for result in send_results
        ]
    )


# -- failures while waiting: ride out what can heal, with backoff --------------------------------------

#: First wait after a failed poll (seconds), and the longest; jittered, never sooner than the poll
#: interval nor than a ``Retry-After``.  Read at call time (tests shrink them).
BACKOFF_FIRST = 1.0
BACKOFF_CAP = 300.0


def is_transient_error(error: BaseException) -> bool:
    """Tell whether a wait should ride ``error`` out (and poll again later) rather than end.

    Transient: :class:`~airflow_provider_omni.exceptions.OmniServerError` (5xx, connection errors,
    timeouts, an empty or broken answer), :class:`~airflow_provider_omni.exceptions.OmniRateLimitError`
    (429), any other :class:`~airflow_provider_omni.exceptions.OmniError` (an unexpected answer), and
    transport errors of the HTTP clients.  Not transient (they cannot heal): ``OmniAuthError``
    (401/403), ``OmniValidationError`` (a 400: the request is wrong), ``OmniConfigurationError`` (a
    redirecting base URL, a credential with a line break), ``OmniNotFoundError``, a bad URL, and any
    other exception (a bug).
    """
    from airflow_provider_omni.exceptions import (
        OmniAuthError,
        OmniConfigurationError,
        OmniError,
        OmniNotFoundError,
        OmniValidationError,
    )

    if isinstance(error, OmniAuthError | OmniValidationError | OmniConfigurationError | OmniNotFoundError):
        return False
    if isinstance(error, OmniError):
        return True
    return _is_transport_error(error)


def _is_transport_error(error: BaseException) -> bool:
    import httpx
    import requests

    if isinstance(
        error,
        requests.exceptions.InvalidURL
        | requests.exceptions.MissingSchema
        | requests.exceptions.InvalidSchema
        | requests.exceptions.InvalidHeader
        | requests.exceptions.URLRequired
        | httpx.UnsupportedProtocol
        | httpx.LocalProtocolError
        | httpx.InvalidURL,
    ):
        return False
    return isinstance(
        error, requests.RequestException | httpx.TransportError | TimeoutError | ConnectionError
    )


def backoff_delay(
    failures: int,
    *,
    interval: float,
    retry_after: float | None = None,
    first: float | None = None,
    cap: float | None = None,
    rng: Callable[[], float] = random.random,
) -> float:
    """Return the seconds to wait after ``failures`` failed polls in a row (1 for the first).

    ``first * 2**(failures - 1)`` capped at ``cap``, of which a random half is jitter; never less than
    the poll ``interval`` nor than ``retry_after`` (itself capped at ``cap``).
    """
    first = BACKOFF_FIRST if first is None else first
    cap = BACKOFF_CAP if cap is None else cap
    delay = jittered_backoff(failures - 1, base=first, cap=cap, rng=rng)
    return max(interval, delay, min(retry_after or 0.0, cap))


def safe_error_text(error: BaseException, *, show_full_numbers: bool = False) -> str:
    """Return ``Type: message`` of an error for a log line or an event: no phone number in full.

    (The hook's errors carry no secret: it removes them from its messages.)
    """
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if show_full_numbers else shorten_numbers(text)
