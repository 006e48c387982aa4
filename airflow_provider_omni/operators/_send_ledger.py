"""The record of one send: which bulks went out, with which destinations, and what became of them.

On Airflow 3.3+ the record lives in the task state store (``context["task_state_store"]``), written
*before* each POST (state ``sending``) and again after the answer (``accepted``, ``uncertain`` or
``not_sent``), so a retry knows exactly which destinations Infobip took, and which requests are in
doubt.  Without a store (older Airflow, or a store that was cleared) the record is kept in memory for
the current try only, and a retry rebuilds what it can from ``/omni/1/logs``.

Keys, all scoped to the task instance by Airflow:

``omni_send:current``
    ``{"send_key": ..., "complete": bool}``: the send this task instance is doing, to notice an
    identity that changes between tries (that could send some destinations twice).
``omni_send:{send_key}``
    ``{"v": 2, "count": n, "started_at": epoch}``: how many bulk records there are.
``omni_send:{send_key}:{n}``
    one :class:`BulkRecord` (n from 1): its member keys are 8 bytes per destination, base64.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_omni.operators import _ids

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

#: Version of the records; another version is ignored (a retry then relies on the logs).
LEDGER_VERSION = 2
CURRENT_KEY = "omni_send:current"

SENDING = "sending"
ACCEPTED = "accepted"
UNCERTAIN = "uncertain"
NOT_SENT = "not_sent"
_STATES = frozenset({SENDING, ACCEPTED, UNCERTAIN, NOT_SENT})


@dataclass
class BulkRecord:
    """One request of the send and what became of it.

    :param number: its place among the send's requests (1-based, across tries).
    :param bulk_id: the bulk id it was sent with.
    :param state: ``sending`` (posted, no answer recorded: in doubt), ``accepted``, ``uncertain``
        (the answer was ambiguous and the logs did not show it yet) or ``not_sent`` (certainly not
        taken: refused before processing, or absent from the logs past the horizon).
    :param at: when the POST started (epoch seconds).
    :param members: packed member keys of its destinations (:func:`_ids.pack_members`).
    :param size: the number of destinations.
    :param accepted: destinations taken (``accepted`` only).
    :param rejected: destinations refused at send.
    :param refused: up to 100 refused destinations ``{to, message_id, status, bulk_id}`` (shortened).
    :param refused_members: packed member keys of the refused destinations.
    :param source: where the outcome was learnt (for the task log).

    Once a record is written for the last time in a try, :meth:`release` drops its member keys from
    memory (a send of a million destinations would otherwise hold 10 MB of them); a released record
    cannot be written again.
    """

    number: int
    bulk_id: str
    state: str
    at: float
    members: str
    size: int
    accepted: int = 0
    rejected: int = 0
    refused: list[dict[str, str]] = field(default_factory=list)
    refused_members: str = ""
    source: str = "sent"
    released: bool = False

    def as_state(self) -> dict[str, Any]:
        """The JSON kept in the task state store."""
        if self.released:
            raise RuntimeError(f"bulk record {self.bulk_id} was released; it cannot be written again")
        return {
            "bulk_id": self.bulk_id,
            "state": self.state,
            "at": self.at,
            "members": self.members,
            "size": self.size,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "refused": self.refused,
            "refused_members": self.refused_members,
        }

    @classmethod
    def from_state(cls, number: int, data: Any) -> BulkRecord | None:
        """Read a stored record; ``None`` when it is not one (a foreign or damaged value)."""
        if not isinstance(data, dict) or data.get("state") not in _STATES:
            return None
        try:
            return cls(
                number=number,
                bulk_id=str(data["bulk_id"]),
                state=str(data["state"]),
                at=float(data["at"]),
                members=str(data["members"]),
                size=int(data["size"]),
                accepted=int(data.get("accepted") or 0),
                rejected=int(data.get("rejected") or 0),
                refused=list(data.get("refused") or []),
                refused_members=str(data.get("refused_members") or ""),
                source="task state store (earlier try)",
            )
        except (KeyError, TypeError, ValueError):
            return None

    def release(self, keep_refused: int = 0) -> None:
        """Drop the member keys (and all but ``keep_refused`` refused entries) from memory."""
        self.members = self.refused_members = ""
        del self.refused[keep_refused:]
        self.released = True

    def member_keys(self) -> set[bytes]:
        """The member keys of its destinations."""
        return _ids.unpack_members(self.members)


class SendLedger:
    """The bulk records of one send, in the task state store when there is one, else in memory.

    :param store: Airflow's task state store accessor (``get``/``set``), or None.
    :param send_key: the send's key (:func:`_ids.send_key`).
    """

    def __init__(self, store: Any, send_key: str) -> None:
        self.store = store
        self.send_key = send_key
        self.records: list[BulkRecord] = []
        self.started_at: float | None = None
        self._kept_refusals = 0

    def _header_key(self) -> str:
        return f"omni_send:{self.send_key}"

    def _record_key(self, number: int) -> str:
        return f"omni_send:{self.send_key}:{number}"

    def load(self) -> Iterator[BulkRecord]:
        """Read the records of this send kept by earlier tries, one by one (none without a store).

        Each is added to :attr:`records` as it is read, so that the caller can settle it, use its
        member keys and :meth:`~BulkRecord.release` them before the next one is read.
        """
        if self.store is None:
            return
        header = self.store.get(self._header_key())
        if not isinstance(header, dict) or header.get("v") != LEDGER_VERSION:
            return
        self.started_at = _float_or_none(header.get("started_at"))
        for number in range(1, int(header.get("count") or 0) + 1):
            record = BulkRecord.from_state(number, self.store.get(self._record_key(number)))
            if record is not None:
                self.records.append(record)
                yield record

    def previous_send(self) -> dict[str, Any] | None:
        """Return the ``omni_send:current`` marker left by an earlier try, if any."""
        if self.store is None:
            return None
        marker = self.store.get(CURRENT_KEY)
        return marker if isinstance(marker, dict) else None

    def claim(self) -> None:
        """Mark this send as the task instance's current one, not complete."""
        if self.store is not None:
            self.store.set(CURRENT_KEY, {"send_key": self.send_key, "complete": False})

    def mark_complete(self) -> None:
        """Mark this send complete: every destination was taken or refused."""
        if self.store is not None:
            self.store.set(CURRENT_KEY, {"send_key": self.send_key, "complete": True})

    def begin(self, bulk_id: str, members: Sequence[bytes]) -> BulkRecord:
        """Record, before its POST, that a bulk is about to go out (state ``sending``).

        :param bulk_id: the bulk id.
        :param members: the member keys of its destinations (:func:`_ids.member_key`).
        """
        now = time.time()
        if self.started_at is None:
            self.started_at = now
        number = (self.records[-1].number if self.records else 0) + 1
        record = BulkRecord(
            number=number,
            bulk_id=bulk_id,
            state=SENDING,
            at=now,
            members=_ids.pack_keys(members),
            size=len(members),
        )
        self.records.append(record)
        self.save(record)
        if self.store is not None:
            header = {"v": LEDGER_VERSION, "count": number, "started_at": self.started_at}
            self.store.set(self._header_key(), header)
        return record

    def save(self, record: BulkRecord) -> None:
        """Write ``record`` (after its state changed)."""
        if self.store is not None:
            self.store.set(self._record_key(record.number), record.as_state())

    def release(self, record: BulkRecord, listed_refusals: int = 100) -> None:
        """Drop from memory the member keys of a record written for the last time in this try, and
        its refused entries once the send's first ``listed_refusals`` are kept (for the XCom)."""
        keep = max(listed_refusals - self._kept_refusals, 0)
        self._kept_refusals += min(len(record.refused), keep)
        record.release(keep)

    def used_bulk_ids(self) -> set[str]:
        """The bulk ids of every request of this send so far."""
        return {record.bulk_id for record in self.records}


def _float_or_none(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
