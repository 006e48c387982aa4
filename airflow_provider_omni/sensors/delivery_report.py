"""Wait for the delivery reports of an OMNI send: Viber delivered, SMS fallback delivered, or failed."""

from __future__ import annotations

import ast
import json
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.configuration import conf
from airflow.exceptions import AirflowException
from airflow.sdk import BaseSensorOperator, PokeReturnValue

try:  # Airflow 3.3 names it AirflowSensorTimeout in airflow.sdk.exceptions; older in airflow.exceptions
    from airflow.sdk.exceptions import AirflowSensorTimeout
except ImportError:  # pragma: no cover
    from airflow.exceptions import AirflowSensorTimeout  # type: ignore[no-redef,attr-defined]

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow.sdk import Context

    from airflow_provider_omni.hooks.omni import OmniHook
    from airflow_provider_omni.models import OmniChannel, OmniLog
    from airflow_provider_omni.outcome import DeliveryTracker

# A DAG file imports this module: the hook (requests, the models), the outcome logic and the trigger
# are imported where they are used, at run time.

#: Key of the tracker in the task state store (Airflow 3.3+); per-bulk sets use ``<key>.final.<n>``.
STATE_KEY = "omni_delivery_tracker"
_DEFAULT_CONN_ID = "omni_default"
_DEFAULT_FAILED_CAP = 100
_REPORTS_LIMIT = 1000
_EVENT_STATUSES = ("success", "timeout", "error")


def parse_xcom_value(value: Any) -> Any:
    """Return ``value`` as Python data: rendered templates come as JSON or ``repr`` text."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return value


def _send_results(value: Any) -> list[Mapping[str, Any]]:
    """Return the send XCom(s): one dict, or a list of them (a mapped send task)."""
    value = parse_xcom_value(value)
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [value]
    if isinstance(value, Iterable):
        results = [parse_xcom_value(v) for v in value]
        if all(isinstance(r, Mapping) for r in results):
            return results
    raise ValueError(
        f"send_result must be the send operator's XCom dict (or a list of them), got {value!r:.200}"
    )


def fetch_logs_sync(
    hook: OmniHook,
    bucket_ids: Sequence[str],
    key_by: str,
    flow: Sequence[str],
    expected: Mapping[str, int] | None = None,
) -> Iterator[OmniLog]:
    """Yield the log rows of the bulks (or message ids): one request per bulk, more only when needed.

    The requests are planned by :func:`~airflow_provider_omni.outcome.plan_logs_requests` and
    :func:`~airflow_provider_omni.outcome.more_logs_requests` (a full page that misses destinations is
    read again per channel); the trigger follows the same plan asynchronously.

    :param expected: destinations per bulk, when known (a full page covering them all is complete).
    """
    from airflow_provider_omni.outcome import more_logs_requests, plan_logs_requests

    queue = deque(plan_logs_requests(bucket_ids, key_by))
    while queue:
        request = queue.popleft()
        rows = hook.get_logs(**request)
        queue.extend(more_logs_requests(request, rows, flow=flow, expected=expected))
        yield from rows


class OmniDeliveryReportSensor(BaseSensorOperator):
    """Wait until every destination of an OMNI send has a final outcome.

    Each destination ends as ``VIBER_DELIVERED``, ``SMS_DELIVERED`` (the SMS fallback worked) or
    ``FAILED``; the sensor returns (as XCom) the summary described in
    :mod:`airflow_provider_omni.outcome`, which
    :class:`~airflow_provider_omni.operators.branch.OmniDeliveryBranchOperator` branches on.

    It reads ``GET /omni/1/reports`` filtered by ``bulkId`` (or ``messageId``), never unfiltered, so
    the reports of other consumers of the account stay where they are; at most one request per
    unfinished bulk per poke.  Reports are handed out once, so what was consumed is kept in the task
    state store (Airflow 3.3+) between reschedules and tries, and rebuilt from the re-readable
    ``GET /omni/1/logs`` when it may be lost (a new process without stored state, a deferral, a crash
    in the middle of a poke): one logs request per unfinished bulk.  The first poke of the first try
    reads no logs (nothing can have been consumed yet).

    :param send_result: the send operator's XCom (templated; typically its ``XComArg`` or
        ``"{{ ti.xcom_pull('send') }}"``), or a list of them for a mapped send.
    :param bulk_ids: instead of ``send_result``: bulk ids, as a list (sizes read from the logs) or a
        dict ``{bulk_id: number of destinations}``.
    :param message_ids: instead of either: message ids to wait for (one destination each).  A
        fallback report carrying a new message id cannot be seen this way; prefer bulk ids.
    :param omni_conn_id: the Infobip OMNI connection.
    :param flow: the scenario's channels in order, default ``["VIBER", "SMS"]``.  A failure on a step
        that is not the last one does not end the wait.
    :param succeed_on_timeout: at the timeout, succeed with the destinations still pending counted
        as ``PENDING`` (``timed_out`` true) instead of failing.
    :param detail_path: where to write one JSON line per destination (from the logs) when done: a
        local path or an object storage URL (``s3://...``, via ``ObjectStoragePath``).  Templated.
    :param failed_cap: how many failed destinations the summary lists in full (default 100).
    :param logs_reconcile_interval: seconds between two reads of the logs of the unfinished bulks
        while waiting (default 600; ``None`` never): a safety net for reports lost on the way (a report
        answer that failed after the server handed the reports out).  Logs allow 120 requests/minute.
    :param deferrable: wait in the triggerer instead of a worker slot.
    """

    template_fields: Sequence[str] = ("send_result", "bulk_ids", "message_ids", "detail_path")
    ui_color = "#7360f2"

    def __init__(
        self,
        *,
        send_result: Any = None,
        bulk_ids: Sequence[str] | Mapping[str, int] | str | None = None,
        message_ids: Sequence[str] | str | None = None,
        omni_conn_id: str = _DEFAULT_CONN_ID,
        flow: Sequence[str | OmniChannel] | None = None,
        succeed_on_timeout: bool = False,
        detail_path: str | None = None,
        failed_cap: int = _DEFAULT_FAILED_CAP,
        logs_reconcile_interval: float | None = 600.0,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        if deferrable:
            kwargs.setdefault("poke_interval", 30)
            kwargs.setdefault("timeout", timedelta(days=2).total_seconds())
        super().__init__(**kwargs)
        from airflow_provider_omni.outcome import normalize_flow

        if sum(x is not None for x in (send_result, bulk_ids, message_ids)) != 1:
            raise ValueError("give exactly one of send_result, bulk_ids or message_ids")
        self.send_result = send_result
        self.bulk_ids = bulk_ids
        self.message_ids = message_ids
        self.omni_conn_id = omni_conn_id
        self.flow = list(normalize_flow(flow))
        self.succeed_on_timeout = succeed_on_timeout
        self.detail_path = detail_path
        self.failed_cap = failed_cap
        self.logs_reconcile_interval = logs_reconcile_interval
        self.deferrable = deferrable
        self._tracker: DeliveryTracker | None = None
        self._wait_timeout: float | None = None
        self._poke_started: float | None = None
        self._logs_read_at = 0.0

    @cached_property
    def hook(self) -> OmniHook:
        """The hook of ``omni_conn_id``."""
        from airflow_provider_omni.hooks.omni import OmniHook

        return OmniHook(omni_conn_id=self.omni_conn_id)

    # -- what to wait for ------------------------------------------------------------------------------

    def _new_tracker(self) -> DeliveryTracker:
        """Build an empty tracker for the targets (sizes of bare bulk ids are read from the logs)."""
        from airflow_provider_omni.outcome import DeliveryTracker, latest_per_destination

        options: dict[str, Any] = {
            "flow": self.flow,
            "failed_cap": self.failed_cap,
            "show_full_numbers": self.hook.show_full_numbers,
        }
        if self.send_result is not None:
            results = _send_results(self.send_result)
            expected = {
                str(b["bulk_id"]): int(b.get("accepted") or 0) for r in results for b in r.get("bulks") or []
            }
            tracker = DeliveryTracker(expected, **options)
            tracker.add_rejected_at_send(_rejected_of(results))
            return tracker
        if self.message_ids is not None:
            ids = parse_xcom_value(self.message_ids)
            ids = [ids] if isinstance(ids, str) else list(ids)
            return DeliveryTracker(dict.fromkeys(map(str, ids), 1), key_by="message", **options)
        bulks = parse_xcom_value(self.bulk_ids)
        if isinstance(bulks, str):
            bulks = [bulks]
        if isinstance(bulks, Mapping):
            return DeliveryTracker({str(k): int(v) for k, v in bulks.items()}, **options)
        sizes = {}
        for bulk_id in map(str, bulks):
            rows = list(fetch_logs_sync(self.hook, [bulk_id], "bulk", self.flow))
            sizes[bulk_id] = len(latest_per_destination(rows, self.flow))
        self.log.info("Destinations per bulk, from the logs: %s", sizes)
        return DeliveryTracker(sizes, **options)

    # -- keeping what was consumed ----------------------------------------------------------------------

    @staticmethod
    def _store(context: Context) -> Any:
        return context.get("task_state_store")  # type: ignore[misc]

    def _load_tracker(self, context: Context) -> DeliveryTracker:
        """Return the tracker: in memory, else from the task state store, else rebuilt from the logs."""
        if self._tracker is not None:
            return self._tracker
        store = self._store(context)
        stored = store.get(STATE_KEY) if store is not None else None
        if isinstance(stored, dict) and not stored.get("dirty", True):
            try:
                tracker = self._restore(store, stored["state"])
            except (KeyError, ValueError, TypeError) as err:
                self.log.warning("Stored delivery state unusable (%s); rebuilding it from the logs", err)
            else:
                self._logs_read_at = float(stored.get("logs_read_at") or 0.0)
                self.log.info("Restored delivery state: %s", tracker.counts())
                self._tracker = tracker
                return tracker
        tracker = self._new_tracker()
        if self._nothing_consumed_yet(context, stored):
            self.log.info("First poke of the first try: no report consumed yet, no need to read the logs")
            self._logs_read_at = time.time()  # as complete as a fresh read: the next one is due later
        else:
            self._rebuild_from_logs(tracker)
        self._tracker = tracker
        return tracker

    def _nothing_consumed_yet(self, context: Context, stored: Any) -> bool:
        """Tell whether no earlier run of this task instance can have consumed any of its reports.

        Only on the first try (Airflow gives every new try, a cleared task included, a higher
        ``try_number``; a reschedule keeps it): with a task state store, when it holds nothing for this
        sensor (every poke writes there before it consumes a report); without one, when this is the
        only ``execute()`` of the try (not reschedule mode).  Anywhere else, state may have been lost,
        and the logs are read.
        """
        ti = context.get("ti")
        if getattr(ti, "try_number", None) != 1:
            return False
        if self._store(context) is not None:
            return stored is None
        return not self.reschedule

    def _reconcile_due(self) -> bool:
        interval = self.logs_reconcile_interval
        return interval is not None and time.time() - self._logs_read_at >= interval

    def _restore(self, store: Any, state: dict[str, Any]) -> DeliveryTracker:
        from airflow_provider_omni.outcome import DeliveryTracker

        state = json.loads(json.dumps(state))
        for index, (bucket_id, data) in enumerate(state["buckets"].items()):
            if data.get("final") is None:
                done = sum(data["counts"].values())
                data["final"] = (
                    "" if done == 0 or done >= data["expected"] else store.get(f"{STATE_KEY}.final.{index}")
                )
                if data["final"] is None:
                    raise ValueError(f"missing the final set of {bucket_id}")
        return DeliveryTracker.from_state(state)

    def _rebuild_from_logs(self, tracker: DeliveryTracker) -> None:
        unfinished = tracker.unfinished()
        if not unfinished:
            return
        self._logs_read_at = time.time()
        made_final = tracker.ingest_many(
            fetch_logs_sync(self.hook, unfinished, tracker.key_by, tracker.flow, tracker.expected())
        )
        self.log.info(
            "Read the logs of %d bulk(s): %d destination(s) already final", len(unfinished), made_final
        )

    def _save_tracker(self, context: Context, tracker: DeliveryTracker, *, dirty: bool = False) -> None:
        """Store the tracker: a small header plus one key per unfinished bulk whose set changed."""
        store = self._store(context)
        if store is None:
            return
        state = tracker.to_state()
        changed = tracker.pop_changed()
        for index, (bucket_id, data) in enumerate(state["buckets"].items()):
            final = data.pop("final")
            if final and bucket_id in changed:
                store.set(f"{STATE_KEY}.final.{index}", final)
            data["final"] = None
        store.set(STATE_KEY, {"dirty": dirty, "state": state, "logs_read_at": self._logs_read_at})

    def _mark_dirty(self, context: Context) -> None:
        """Say, before consuming reports elsewhere or at all, that the stored state may fall behind.

        With nothing stored yet, a bare dirty mark is written: a store holding nothing then proves
        that no report was consumed (:meth:`_nothing_consumed_yet`).
        """
        store = self._store(context)
        if store is None:
            return
        stored = store.get(STATE_KEY)
        if stored is None:
            store.set(STATE_KEY, {"dirty": True})
        elif isinstance(stored, dict) and not stored.get("dirty"):
            store.set(STATE_KEY, {**stored, "dirty": True})

    # -- poking -----------------------------------------------------------------------------------------

    def _elapsed(self, context: Context) -> float:
        if self.reschedule:
            first = context["ti"].get_first_reschedule_date(context)  # type: ignore[attr-defined]
            return 0.0 if first is None else time.time() - first.timestamp()
        if self._poke_started is None:
            self._poke_started = time.monotonic()
        return time.monotonic() - self._poke_started

    def poke(self, context: Context) -> PokeReturnValue:
        """Fetch the reports of every unfinished bulk once and tell whether all destinations are final."""
        tracker = self._load_tracker(context)
        unfinished = tracker.unfinished()
        if unfinished and self._reconcile_due():
            self._rebuild_from_logs(tracker)
            unfinished = tracker.unfinished()
        # buckets the logs declared failed without an error: ask their reports once for the error
        to_poll = unfinished + sorted(tracker.pop_failed_without_error() - set(unfinished))
        if to_poll:
            self._mark_dirty(context)
            for bucket_id in to_poll:
                if tracker.key_by == "message":
                    reports = self.hook.get_reports(message_id=bucket_id, limit=_REPORTS_LIMIT)
                else:
                    reports = self.hook.get_reports(bulk_id=bucket_id, limit=_REPORTS_LIMIT)
                tracker.ingest_many(reports)
            self._save_tracker(context, tracker)
        counts = tracker.counts()
        self.log.info("Delivery outcomes so far: %s", counts)
        if tracker.all_final:
            return PokeReturnValue(True, self._finish(tracker.summary()))
        if (
            self.succeed_on_timeout
            and self._wait_timeout is not None
            and self._elapsed(context) >= self._wait_timeout
        ):
            self.log.warning("Timed out with %d destination(s) still pending", counts["PENDING"])
            return PokeReturnValue(True, self._finish(tracker.summary(timed_out=True)))
        return PokeReturnValue(False)

    def _finish(self, summary: dict[str, Any]) -> dict[str, Any]:
        """Write the detail file (when asked) and return the summary to push as XCom."""
        if self.detail_path:
            self._write_detail(summary)
            summary = {**summary, "detail_path": str(self.detail_path)}
        self.log.info(
            "Delivery summary: %s of %d, price %s%s",
            summary["outcomes"],
            summary["total"],
            summary["price"],
            " (timed out)" if summary["timed_out"] else "",
        )
        return summary

    def _write_detail(self, summary: dict[str, Any]) -> None:
        """Write one JSON line per destination, read from the logs, errors filled from the summary."""
        from airflow_provider_omni.outcome import detail_line, latest_per_destination

        errors = {
            f["message_id"]: (f["error"], f["permanent"]) for f in summary["failed"] if f.get("message_id")
        }
        key_by = "message" if self.message_ids is not None else "bulk"
        full = self.hook.show_full_numbers
        sizes = self._tracker.expected() if self._tracker is not None else None
        path = _open_path(str(self.detail_path))
        count = 0
        with path.open("w") as handle:
            for bucket_id in summary["bulks"]:
                rows = latest_per_destination(
                    fetch_logs_sync(self.hook, [bucket_id], key_by, self.flow, sizes), self.flow
                )
                for row in rows:
                    line = detail_line(row, self.flow, show_full_numbers=full)
                    if line["error"] is None and line["message_id"] in errors:
                        line["error"], line["permanent"] = errors[line["message_id"]]
                    handle.write(json.dumps(line) + "\n")
                    count += 1
        self.log.info("Wrote the detail of %d destination(s) to %s", count, self.detail_path)

    # -- running ----------------------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        """Poke (or reschedule) until done, or poke once and defer to the trigger."""
        timeout = float(self.timeout.total_seconds() if isinstance(self.timeout, timedelta) else self.timeout)
        self._wait_timeout = timeout
        if not self.deferrable:
            if self.succeed_on_timeout:
                # poke() checks the timeout so that it can succeed; keep the base loop from failing first
                self.timeout = timeout + max(float(self._poke_seconds()), 1.0) * 3 + 60
            return super().execute(context)
        end_time = time.time() + timeout
        first = self.poke(context)
        if first.is_done:
            return first.xcom_value
        from airflow_provider_omni.triggers.delivery_report import OmniDeliveryReportTrigger

        tracker = self._load_tracker(context)
        self._mark_dirty(context)
        self.defer(
            trigger=OmniDeliveryReportTrigger(
                buckets=tracker.expected(),
                key_by=tracker.key_by,
                flow=list(tracker.flow),
                omni_conn_id=self.omni_conn_id,
                poll_interval=self._poke_seconds(),
                end_time=end_time,
                failed_cap=self.failed_cap,
                show_full_numbers=tracker.show_full_numbers,
                logs_reconcile_interval=self.logs_reconcile_interval,
            ),
            method_name="execute_complete",
            # the trigger ends itself at end_time with a "timeout" event; this is only a backstop
            timeout=timedelta(seconds=timeout + 3 * self._poke_seconds() + 300),
        )

    def _poke_seconds(self) -> float:
        interval = self.poke_interval
        return float(interval.total_seconds() if isinstance(interval, timedelta) else interval)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger: check its event, and return the summary (or fail on timeout/error)."""
        if not isinstance(event, dict) or event.get("status") not in _EVENT_STATUSES:
            raise AirflowException(
                f"OmniDeliveryReportSensor got an unexpected trigger event: {event!r:.500}"
            )
        if event["status"] == "error":
            raise AirflowException(f"Waiting for OMNI delivery reports failed: {event.get('message')}")
        summary = self._merge_pre_defer(context, event["summary"])
        if event["status"] == "timeout":
            if not self.succeed_on_timeout:
                raise AirflowSensorTimeout(f"{event.get('message')}; outcomes so far: {summary['outcomes']}")
            self.log.warning("%s", event.get("message"))
        return self._finish(summary)

    def _merge_pre_defer(self, context: Context, trigger_summary: dict[str, Any]) -> dict[str, Any]:
        """Complete the trigger's summary with what only this task knows: the destinations rejected at
        send time, and the errors of the reports consumed before deferring (logs carry no error)."""
        store = self._store(context)
        stored = store.get(STATE_KEY) if store is not None else None
        known: DeliveryTracker | None = None
        if isinstance(stored, dict) and "state" in stored:
            try:
                known = self._restore(store, stored["state"])
            except (KeyError, ValueError, TypeError) as err:
                self.log.warning("Could not read the state from before deferring (%s)", err)
        if known is None:
            from airflow_provider_omni.outcome import DeliveryTracker

            known = DeliveryTracker({}, flow=self.flow, failed_cap=self.failed_cap)
            if self.send_result is not None:
                results = _send_results(self.send_result)
                known.add_rejected_at_send(_rejected_of(results))
        return known.complete_summary(trigger_summary)


def _rejected_of(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "rejected": sum(int(r.get("rejected") or 0) for r in results),
        "rejected_destinations": [d for r in results for d in r.get("rejected_destinations") or []],
    }


def _open_path(path: str) -> Any:
    """Return an object with ``open()`` for ``path``: ``ObjectStoragePath`` for URLs when available."""
    if "://" in path:
        from airflow.sdk import ObjectStoragePath

        return ObjectStoragePath(path)
    from pathlib import Path

    local = Path(path)
    local.parent.mkdir(parents=True, exist_ok=True)
    return local
