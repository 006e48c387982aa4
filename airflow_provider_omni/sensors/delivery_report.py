"""Wait for the delivery reports of an OMNI send: Viber delivered, SMS fallback delivered, or failed."""

from __future__ import annotations

import ast
import json
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_omni import metrics
from airflow_provider_omni.version_compat import (
    AirflowException,
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
    sensor_context,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_omni.hooks.omni import OmniHook
    from airflow_provider_omni.messages_api import Backend
    from airflow_provider_omni.models import OmniChannel, OmniLog
    from airflow_provider_omni.outcome import DeliveryTracker

# A DAG file imports this module: the hook (requests, the models), the outcome logic and the trigger
# are imported where they are used, at run time.

#: Key of the tracker in the task state store (Airflow 3.3+); per-bulk sets use ``<key>.final.<n>``
#: and ``<key>.operator.<n>``.
STATE_KEY = "omni_delivery_tracker"
#: Key of what is kept about the wait itself: the send's fingerprint, the first try's start, the flow
#: read from the scenario, failures in a row.
WAIT_KEY = "omni_delivery_wait"
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
        metrics.count_poll("logs")
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
    reads no logs (nothing can have been consumed yet).  Stored state is used only for the send it
    was made for (a fingerprint of the send: bulk ids and counts, refusals, scenario, ``sent_at``):
    a cleared send and sensor start over.

    The flow (which step is the last one) is the scenario's: read once (``GET`` the send's scenario,
    or the account's default scenario when the send used none) and kept with the stored state and in
    the trigger, unless ``flow`` is given.

    Failures that can heal (5xx, 429, connection errors and timeouts, an empty answer) do not end the
    wait: a poke that fails logs a warning and is "not done", and the next one comes after a backoff
    (growing, jittered, capped at 5 minutes, at least the ``Retry-After``), until the deadline.  What
    cannot heal (401/403, a 400, a 404, a redirecting base URL) fails the task at once.  The deadline
    is ``timeout`` after the start of the first try: a retry goes on with it (kept in the task state
    store; a clear starts a new wait).  Without a task state store (Airflow before 3.3), a retry in
    poke or deferrable mode starts the timeout again; in reschedule mode it counts from the first
    reschedule, as Airflow does.

    :param send_result: the send operator's XCom (templated; typically its ``XComArg`` or
        ``"{{ ti.xcom_pull('send') }}"``), or a list of them for a mapped send.
    :param bulk_ids: instead of ``send_result``: bulk ids, as a list (sizes read from the logs) or a
        dict ``{bulk_id: number of destinations}``.
    :param message_ids: instead of either: message ids to wait for (one destination each).  A
        fallback report carrying a new message id cannot be seen this way; prefer bulk ids.
    :param omni_conn_id: the Infobip OMNI connection.
    :param flow: the scenario's channels in order.  Default: the flow of the send's scenario (read
        once); with ``bulk_ids`` or ``message_ids``, ``["VIBER", "SMS"]``.  A failure (undeliverable,
        expired) on a step that is not the last one does not end the wait; a REJECTED status does,
        on any step.
    :param succeed_on_timeout: at the timeout, succeed with the destinations still pending counted
        as ``PENDING`` (``timed_out`` true) instead of failing.
    :param detail_path: where to write one JSON line per destination (from the logs) when done: a
        local path or an object storage URL (``s3://...``, via ``ObjectStoragePath``).  Templated.
    :param failed_cap: how many failed destinations the summary lists in full (default 100).
    :param logs_reconcile_interval: seconds between two reads of the logs of the unfinished bulks
        while waiting (default 600; ``None`` never): a safety net for reports lost on the way (a report
        answer that failed after the server handed the reports out).  Logs allow 120 requests/minute.
    :param accept_delivered_to_operator_after: count a destination whose last-step report is
        ``DELIVERED_TO_OPERATOR`` as delivered once this long (``timedelta`` or seconds) has passed
        since it was first seen (wall time of the worker or triggerer; kept across reschedules,
        retries and the deferral).  For networks that never send a handset report.  Default ``None``:
        such a destination stays ``PENDING`` until a final report or the timeout.
    :param deferrable: wait in the triggerer instead of a worker slot.
    :param backend: ``omni`` or ``messages_api`` (``GET /messages-api/1/reports``).  Default: the send's
        (its XCom says ``messages_api``), else the connection's ``backend`` extra, else ``omni``
        (templated).  The Messages API has no logs: nothing can be rebuilt, so every report consumed
        is kept in the task state store right after its request, before the poke goes on; a deferrable
        wait leaves every report to the trigger, which keeps them in memory until its one event.
        Before Airflow 3.3 (no task state store), a poke-mode wait whose worker dies, and a
        reschedule-mode wait between its pokes, lose the reports they consumed: those destinations
        stay ``PENDING`` until the timeout; reschedule mode is therefore refused there.  A triggerer
        that dies mid-wait loses the reports its trigger consumed the same way; a trigger that ends
        with an error or a timeout hands them back, and they are kept for the retry.  ``detail_path``
        and bare ``bulk_ids`` (sizes from the logs) are refused on this backend.
    """

    template_fields: Sequence[str] = ("send_result", "bulk_ids", "message_ids", "detail_path", "backend")
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
        accept_delivered_to_operator_after: timedelta | float | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        backend: str | None = None,
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
        self.flow = None if flow is None else list(normalize_flow(flow))
        self.succeed_on_timeout = succeed_on_timeout
        self.detail_path = detail_path
        self.failed_cap = failed_cap
        self.logs_reconcile_interval = logs_reconcile_interval
        self.accept_delivered_to_operator_after = _seconds(accept_delivered_to_operator_after)
        self.deferrable = deferrable
        self.backend = backend
        self._tracker: DeliveryTracker | None = None
        self._resolved_flow: tuple[str, ...] | None = None
        self._fingerprint: str | None = None
        self._wait: dict[str, Any] | None = None
        self._wait_timeout: float | None = None
        self._deadline: float | None = None
        self._failures = 0
        self._retry_after: float | None = None
        self._problem = ""
        self._logs_read_at = 0.0
        self._logs_due = False

    @cached_property
    def hook(self) -> OmniHook:
        """The hook of ``omni_conn_id``."""
        from airflow_provider_omni.hooks.omni import OmniHook

        return OmniHook(omni_conn_id=self.omni_conn_id)

    @cached_property
    def resolved_backend(self) -> Backend:
        """``backend``, else the send's (its XCom), else the connection's ``backend`` extra, else OMNI."""
        from airflow_provider_omni.messages_api import resolve_backend

        if self.backend:
            return resolve_backend(self.backend)
        results = _send_results(self.send_result) if self.send_result is not None else []
        sent = {str(r.get("backend") or "omni") for r in results}
        if len(sent) > 1:
            raise AirflowException("The sends used different backends; wait for each with its own sensor")
        if sent:
            return resolve_backend(sent.pop())
        return resolve_backend(None, self.hook.settings.backend)

    @property
    def _on_messages_api(self) -> bool:
        from airflow_provider_omni.messages_api import Backend

        return self.resolved_backend is Backend.MESSAGES_API

    # -- what to wait for ------------------------------------------------------------------------------

    def _target_fingerprint(self) -> str:
        """Return the fingerprint of what this sensor waits for (the send, and ``flow`` when given)."""
        from airflow_provider_omni.outcome import fingerprint, send_fingerprint

        if self._fingerprint is None:
            targets: dict[str, Any]
            if self.send_result is not None:
                targets = {"send": send_fingerprint(_send_results(self.send_result))}
            elif self.message_ids is not None:
                targets = {"message_ids": sorted(self._message_ids())}
            else:
                bulks = parse_xcom_value(self.bulk_ids)
                bulks = [bulks] if isinstance(bulks, str) else bulks
                targets = {"bulk_ids": dict(bulks) if isinstance(bulks, Mapping) else sorted(map(str, bulks))}
            self._fingerprint = fingerprint({**targets, "flow": self.flow})
        return self._fingerprint

    def _message_ids(self) -> list[str]:
        ids = parse_xcom_value(self.message_ids)
        return [ids] if isinstance(ids, str) else [str(i) for i in ids]

    def _flow(self, context: Context) -> tuple[str, ...]:
        """Return the flow: ``flow``, else the scenario's (read once, then kept in the task state store)."""
        if self.flow is not None:
            return tuple(self.flow)
        if self._resolved_flow is None:
            cached = self._wait_record(context).get("flow")
            if cached:
                self._resolved_flow = tuple(cached)
            else:
                self._resolved_flow = self._scenario_flow()
                self._save_wait(context, flow=list(self._resolved_flow))
        return self._resolved_flow

    def _scenario_flow(self) -> tuple[str, ...]:
        """Read the flow of the send's scenario (its ``scenario_key``, or the account's default); on the
        Messages API, the flow the send wrote into its requests (its XCom's ``flow``)."""
        from airflow_provider_omni.outcome import DEFAULT_FLOW, normalize_flow

        results = _send_results(self.send_result) if self.send_result is not None else []
        if self._on_messages_api:
            written = {tuple(normalize_flow(r.get("flow") or DEFAULT_FLOW)) for r in results} or {
                DEFAULT_FLOW
            }
            if len(written) > 1:
                raise AirflowException(
                    f"The sends have different flows ({written}); wait for each separately"
                )
            return written.pop()
        if not results or any("scenario_key" not in r for r in results):
            return DEFAULT_FLOW
        flows = {
            key: self._flow_of_scenario(key) for key in dict.fromkeys(r.get("scenario_key") for r in results)
        }
        if len(set(flows.values())) > 1:
            raise AirflowException(
                f"The sends use scenarios with different flows ({flows}); wait for each scenario's sends "
                "with its own sensor"
            )
        flow = next(iter(flows.values()))
        self.log.info("Scenario flow: %s", " -> ".join(flow))
        return flow

    def _flow_of_scenario(self, key: str | None) -> tuple[str, ...]:
        from airflow_provider_omni.exceptions import OmniConfigurationError, OmniNotFoundError
        from airflow_provider_omni.outcome import normalize_flow

        advice = "give the sensor the scenario's flow, e.g. flow=['VIBER', 'SMS']"
        try:
            scenario = self.hook.get_scenario_or_default(str(key) if key else None)
        except OmniNotFoundError as err:
            raise OmniNotFoundError(
                f"The scenario {key} of the send is not on this account (deleted?): {advice}"
            ) from err
        if scenario is None:
            raise OmniConfigurationError(
                f"The send used the account's default scenario, but the account has none now: {advice}"
            )
        try:
            return normalize_flow(scenario.flow)
        except ValueError:
            raise OmniConfigurationError(f"The scenario {scenario.key} has no flow: {advice}") from None

    def _new_tracker(self, context: Context) -> DeliveryTracker:
        """Build an empty tracker for the targets (sizes of bare bulk ids are read from the logs)."""
        from airflow_provider_omni.outcome import DeliveryTracker, latest_per_destination

        flow = self._flow(context)
        options: dict[str, Any] = {
            "flow": flow,
            "failed_cap": self.failed_cap,
            "show_full_numbers": self.hook.show_full_numbers,
            "accept_delivered_to_operator_after": self.accept_delivered_to_operator_after,
        }
        if self.send_result is not None:
            return DeliveryTracker.from_send_results(_send_results(self.send_result), **options)
        if self.message_ids is not None:
            return DeliveryTracker(dict.fromkeys(self._message_ids(), 1), key_by="message", **options)
        bulks = parse_xcom_value(self.bulk_ids)
        if isinstance(bulks, str):
            bulks = [bulks]
        if isinstance(bulks, Mapping):
            return DeliveryTracker({str(k): int(v) for k, v in bulks.items()}, **options)
        if self._on_messages_api:
            from airflow_provider_omni.exceptions import OmniValidationError

            raise OmniValidationError(
                "bulk_ids: on the Messages API give {bulk_id: number of destinations} (or send_result): "
                "there are no logs to count them in",
                validation_errors={"bulk_ids": ["a dict of sizes on the Messages API backend"]},
            )
        sizes = {}
        for bulk_id in map(str, bulks):
            rows = list(fetch_logs_sync(self.hook, [bulk_id], "bulk", flow))
            sizes[bulk_id] = len(latest_per_destination(rows, flow))
        self.log.info("Destinations per bulk, from the logs: %s", sizes)
        return DeliveryTracker(sizes, **options)

    # -- keeping what was consumed ----------------------------------------------------------------------

    @staticmethod
    def _store(context: Context) -> Any:
        return context.get("task_state_store")  # type: ignore[misc]

    def _wait_record(self, context: Context) -> dict[str, Any]:
        """Return what is kept about this wait (start, flow, failures), for this send only."""
        if self._wait is None:
            store = self._store(context)
            stored = store.get(WAIT_KEY) if store is not None else None
            fingerprint = self._target_fingerprint()
            mine = _of_this_send(stored, fingerprint)
            self._wait = dict(mine) if mine is not None else {"fingerprint": fingerprint}
            self._failures = int(self._wait.get("failures") or 0)
            self._retry_after = self._wait.get("retry_after")
        return self._wait

    def _save_wait(self, context: Context, **changes: Any) -> None:
        record = self._wait_record(context)
        record.update(changes)
        store = self._store(context)
        if store is not None:
            store.set(WAIT_KEY, record)

    def _load_tracker(self, context: Context) -> DeliveryTracker:
        """Return the tracker: in memory, else from the task state store, else rebuilt from the logs."""
        if self._tracker is not None:
            return self._tracker
        store = self._store(context)
        stored = store.get(STATE_KEY) if store is not None else None
        mine = _of_this_send(stored, self._target_fingerprint())
        if mine is not None and mine.get("state") and mine.get("dirty", True) and self._on_messages_api:
            # no logs to rebuild from: what was kept is the best there is (it trails a crash by at most
            # the reports of one request)
            self.log.warning(
                "The last poke may have ended between taking reports and keeping them; the Messages API "
                "has no logs to read them again, so the destinations of those reports may stay PENDING"
            )
            mine = {**mine, "dirty": False}
        if mine is not None and not mine.get("dirty", True):
            try:
                tracker = self._restore(store, mine["state"])
            except (KeyError, ValueError, TypeError) as err:
                self.log.warning("Stored delivery state unusable (%s); rebuilding it from the logs", err)
            else:
                self._logs_read_at = float(mine.get("logs_read_at") or 0.0)
                self.log.info("Restored delivery state: %s", tracker.counts())
                self._tracker = tracker
                return tracker
        elif mine is None and isinstance(stored, dict) and stored.get("state"):
            self.log.info("The stored delivery state is about another send (a cleared task?): not used")
        tracker = self._new_tracker(context)
        if mine is not None:
            self._salvage_sightings(store, mine, tracker)
        if self._nothing_consumed_yet(context, stored):
            self.log.info("First poke of the first try: no report consumed yet, no need to read the logs")
            self._logs_read_at = time.time()  # as complete as a fresh read: the next one is due later
        else:
            self._rebuild_from_logs(tracker)
        self._tracker = tracker
        return tracker

    def _salvage_sightings(self, store: Any, stored: dict[str, Any], tracker: DeliveryTracker) -> None:
        """Keep when destinations were first seen DELIVERED_TO_OPERATOR from a state that may have
        fallen behind (a crash, a deferral): those sightings stay true, and the logs may not tell them."""
        if self.accept_delivered_to_operator_after is None or not stored.get("state"):
            return
        try:
            tracker.seed_delivered_to_operator(
                self._restore(store, stored["state"]).delivered_to_operator_state()
            )
        except (KeyError, ValueError, TypeError) as err:
            self.log.info("Could not read the earlier DELIVERED_TO_OPERATOR sightings (%s)", err)

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
        """Tell whether to read the logs again: after a failed poll, or every ``logs_reconcile_interval``."""
        if self._on_messages_api:
            return False  # no logs to reconcile with
        interval = self.logs_reconcile_interval
        return self._logs_due or (interval is not None and time.time() - self._logs_read_at >= interval)

    def _restore(self, store: Any, state: dict[str, Any]) -> DeliveryTracker:
        from airflow_provider_omni.outcome import DeliveryTracker

        state = json.loads(json.dumps(state))
        for index, (bucket_id, data) in enumerate(state["buckets"].items()):
            for part in ("final", "operator"):
                if data.get(part) is not None:
                    continue
                data[part] = store.get(f"{STATE_KEY}.{part}.{index}") if data.get(f"has_{part}") else None
                if data[part] is None and data.get(f"has_{part}"):
                    raise ValueError(f"missing the {part} set of {bucket_id}")
            data["final"] = data["final"] or ""
            data["operator"] = data["operator"] or []
        tracker = DeliveryTracker.from_state(state)
        tracker.accept_delivered_to_operator_after = self.accept_delivered_to_operator_after
        return tracker

    def _rebuild_from_logs(self, tracker: DeliveryTracker) -> None:
        unfinished = tracker.unfinished()
        if not unfinished:
            return
        if self._on_messages_api:
            self._logs_read_at, self._logs_due = time.time(), False
            self.log.warning(
                "No kept delivery state for this wait, and the Messages API has no logs: reports an "
                "earlier run consumed are lost (their destinations stay PENDING until the timeout)"
            )
            return
        made_final = tracker.ingest_many(
            fetch_logs_sync(self.hook, unfinished, tracker.key_by, tracker.flow, tracker.expected())
        )
        self._logs_read_at, self._logs_due = time.time(), False
        self.log.info(
            "Read the logs of %d bulk(s): %d destination(s) already final", len(unfinished), made_final
        )

    def _save_tracker(self, context: Context, tracker: DeliveryTracker, *, dirty: bool = False) -> None:
        """Store the tracker: a small header plus one key per unfinished bulk whose sets changed."""
        store = self._store(context)
        if store is None:
            return
        state = tracker.to_state()
        changed = tracker.pop_changed()
        for index, (bucket_id, data) in enumerate(state["buckets"].items()):
            for part in ("final", "operator"):
                value = data.pop(part)
                if value and bucket_id in changed:
                    store.set(f"{STATE_KEY}.{part}.{index}", value)
                data[part], data[f"has_{part}"] = None, bool(value)
        store.set(
            STATE_KEY,
            {
                "dirty": dirty,
                "fingerprint": self._target_fingerprint(),
                "state": state,
                "logs_read_at": self._logs_read_at,
            },
        )

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

    def poke(self, context: Context) -> PokeReturnValue:
        """Fetch the reports of every unfinished bulk once and tell whether all destinations are final.

        A failure that can heal logs a warning and answers "not done" (until the deadline).
        """
        from airflow_provider_omni.outcome import is_transient_error

        try:
            result = self._poke(context)
        except Exception as err:
            if not is_transient_error(err):
                raise
            return self._after_failure(context, err)
        if self._failures:
            self.log.info("Polling OMNI works again after %d failure(s)", self._failures)
            self._failures, self._retry_after, self._problem = 0, None, ""
            self._save_wait(context, failures=0, retry_after=None)
        return result

    def _poke(self, context: Context) -> PokeReturnValue:
        tracker = self._load_tracker(context)
        unfinished = tracker.unfinished()
        if unfinished and self._reconcile_due():
            self._rebuild_from_logs(tracker)
            unfinished = tracker.unfinished()
        if unfinished and self._hold_reports(context):
            to_poll: list[str] = []
        else:
            # buckets the logs declared failed without an error: ask their reports once for the error
            to_poll = unfinished + sorted(tracker.pop_failed_without_error() - set(unfinished))
        if to_poll:
            self._mark_dirty(context)
            keep = (
                (lambda: self._save_tracker(context, tracker, dirty=True)) if self._on_messages_api else None
            )
            self._poll(tracker, to_poll, unfinished, keep)
            self._save_tracker(context, tracker)
        counts = tracker.counts()
        self.log.info("Delivery outcomes so far: %s", counts)
        if tracker.all_final:
            return PokeReturnValue(True, self._finish(tracker.summary(), context))
        if self._deadline is not None and time.time() >= self._deadline:
            return self._timed_out(context, f"{counts['PENDING']} destination(s) still pending")
        return PokeReturnValue(False)

    def _hold_reports(self, context: Context) -> bool:
        """Whether to leave the reports to the trigger: a deferrable wait without a task state store
        (Airflow before 3.3) would lose what it consumes before deferring (reports are handed out once),
        so it reads only the logs here and defers when anything is unfinished."""
        if self.deferrable and self._on_messages_api:
            self.log.info("Messages API: the trigger reads every report (and keeps them until its event)")
            return True
        if not self.deferrable or self._store(context) is not None:
            return False
        self.log.info("No task state store (Airflow before 3.3): the trigger reads the reports")
        return True

    def _poll(
        self,
        tracker: DeliveryTracker,
        to_poll: list[str],
        unfinished: list[str],
        keep: Callable[[], None] | None = None,
    ) -> None:
        """Read the reports of each bucket once; ``keep`` stores the tracker after each request that
        brought any (reports are handed out once)."""
        get = self.hook.get_messages_api_reports if self._on_messages_api else self.hook.get_reports
        for index, bucket_id in enumerate(to_poll):
            metrics.count_poll("reports")
            try:
                if tracker.key_by == "message":
                    reports = get(message_id=bucket_id, limit=_REPORTS_LIMIT)
                else:
                    reports = get(bulk_id=bucket_id, limit=_REPORTS_LIMIT)
            except Exception:
                tracker.note_failed_without_error(b for b in to_poll[index:] if b not in unfinished)
                raise
            tracker.ingest_many(reports)
            if reports and keep is not None:
                keep()

    def _after_failure(self, context: Context, error: Exception) -> PokeReturnValue:
        """A poke failed with something that can heal: log it, and wait (with backoff) for the next."""
        from airflow_provider_omni.outcome import backoff_delay, safe_error_text

        self._wait_record(context)
        self._failures += 1
        self._retry_after = getattr(error, "retry_after", None)
        self._problem = safe_error_text(error)
        # the failed answer may have taken reports with it: the next poke reads the logs first
        self._logs_due = True
        self._save_wait(context, failures=self._failures, retry_after=self._retry_after)
        if self._deadline is not None and time.time() >= self._deadline:
            return self._timed_out(context, f"the last poll failed: {self._problem}")
        delay = backoff_delay(self._failures, interval=self._poke_seconds(), retry_after=self._retry_after)
        self.log.warning(
            "Polling OMNI delivery reports failed (%s); trying again in about %.1f s (failure %d in a row)",
            self._problem,
            delay,
            self._failures,
        )
        return PokeReturnValue(False)

    def _timed_out(self, context: Context, why: str) -> PokeReturnValue:
        """The deadline has passed: succeed with the pending counted (``succeed_on_timeout``) or fail."""
        tracker = self._tracker
        if self.succeed_on_timeout and tracker is not None:
            self.log.warning("Timed out: %s", why)
            return PokeReturnValue(True, self._finish(tracker.summary(timed_out=True), context))
        outcomes = f"; outcomes so far: {tracker.counts()}" if tracker is not None else ""
        if tracker is not None:
            self._count_outcomes(tracker.counts())
        message = f"Timed out waiting for OMNI delivery reports: {why}{outcomes}"
        if self.soft_fail or getattr(self, "never_fail", False):
            raise AirflowSkipException(message)
        raise AirflowSensorTimeout(message)

    def _get_next_poke_interval(
        self, started_at: Any, run_duration: Callable[[], float], poke_count: int
    ) -> float:
        """The base interval, or a backoff after failed pokes; never beyond the deadline."""
        interval = float(super()._get_next_poke_interval(started_at, run_duration, poke_count))
        if self._failures:
            from airflow_provider_omni.outcome import backoff_delay

            interval = backoff_delay(self._failures, interval=interval, retry_after=self._retry_after)
        if self._deadline is not None:
            interval = max(min(interval, self._deadline - time.time()), 0.0)
        return interval

    def _finish(self, summary: dict[str, Any], context: Context) -> dict[str, Any]:
        """Write the detail file (when asked) and return the summary to push as XCom.

        A failure to read the logs for the file fails the poke like any other (ridden out when it can
        heal: the next poke finishes again)."""
        if self.detail_path:
            self._write_detail(summary, context)
            summary = {**summary, "detail_path": str(self.detail_path)}
        self.log.info(
            "Delivery summary: %s of %d, price %s%s",
            summary["outcomes"],
            summary["total"],
            summary["price"],
            " (timed out)" if summary["timed_out"] else "",
        )
        self._count_outcomes(summary["outcomes"])
        return summary

    def _count_outcomes(self, outcomes: Mapping[str, int]) -> None:
        """Count the destinations of the finished wait by outcome: once per wait, when it ends."""
        metrics.count_outcomes(outcomes, metrics.task_tags(self))

    def _write_detail(self, summary: dict[str, Any], context: Context) -> None:
        """Write one JSON line per destination, read from the logs, errors filled from the summary."""
        from airflow_provider_omni.outcome import delivered_outcome, detail_line, latest_per_destination

        errors = {
            f["message_id"]: (f["error"], f["permanent"]) for f in summary["failed"] if f.get("message_id")
        }
        key_by = "message" if self.message_ids is not None else "bulk"
        full = self.hook.show_full_numbers
        flow = self._tracker.flow if self._tracker is not None else self._flow(context)
        sizes = self._tracker.expected() if self._tracker is not None else None
        # every destination DELIVERED_TO_OPERATOR was accepted as delivered, unless the wait timed out
        accepted = self.accept_delivered_to_operator_after is not None and not summary["timed_out"]
        operator = delivered_outcome(flow) if accepted else None
        path = _open_path(str(self.detail_path))
        count = 0
        with path.open("w") as handle:
            for bucket_id in summary["bulks"]:
                rows = latest_per_destination(
                    fetch_logs_sync(self.hook, [bucket_id], key_by, flow, sizes), flow
                )
                for row in rows:
                    line = detail_line(row, flow, show_full_numbers=full, delivered_to_operator=operator)
                    if line["error"] is None and line["message_id"] in errors:
                        line["error"], line["permanent"] = errors[line["message_id"]]
                    handle.write(json.dumps(line) + "\n")
                    count += 1
        self.log.info("Wrote the detail of %d destination(s) to %s", count, self.detail_path)

    # -- running ----------------------------------------------------------------------------------------

    def _timeout_seconds(self) -> float:
        if self._wait_timeout is None:
            timeout = self.timeout
            self._wait_timeout = float(timeout.total_seconds() if isinstance(timeout, timedelta) else timeout)
        return self._wait_timeout

    def _generation(self, context: Context) -> int | None:
        """Return the first try number since the last clear (``max_tries - retries + 1``), as Airflow
        counts a reschedule-mode sensor's timeout; ``None`` when the task instance does not say."""
        max_tries = getattr(context.get("ti"), "max_tries", None)
        if not isinstance(max_tries, int) or isinstance(max_tries, bool):
            return None
        return max_tries - int(self.retries or 0) + 1

    def _start_deadline(self, context: Context) -> float:
        """Return the deadline: ``timeout`` after the start of the first try of this wait.

        The start is kept in the task state store, with the send's fingerprint and the first try
        number since the last clear: a retry goes on with it; a clear, or another send, starts anew.
        """
        timeout = self._timeout_seconds()
        if self._store(context) is None:
            return self._start_without_store(context) + timeout
        record = self._wait_record(context)
        generation = self._generation(context)
        started = record.get("started_at")
        if record.get("generation") != generation or not isinstance(started, int | float):
            started = time.time()
            self._save_wait(context, generation=generation, started_at=started)
        elif time.time() - float(started) > 1:
            self.log.info(
                "The timeout counts from the start of the first try, %.0f s ago", time.time() - float(started)
            )
        return float(started) + timeout

    def _start_without_store(self, context: Context) -> float:
        if self.reschedule:
            get_first = getattr(context.get("ti"), "get_first_reschedule_date", None)
            first = get_first(context) if get_first is not None else None
            if first is not None:
                return float(first.timestamp())
        return time.time()

    def execute(self, context: Context) -> Any:
        """Poke (or reschedule) until done, or poke once and defer to the trigger."""
        dry_run = self._dry_run_summary()
        if dry_run is not None:
            return dry_run
        if self.reschedule:  # Airflow 3.0's reschedule date as a datetime, for us and the base class
            context = sensor_context(context)
        if self._on_messages_api and self.reschedule and self._store(context) is None:
            from airflow_provider_omni.exceptions import OmniConfigurationError

            raise OmniConfigurationError(
                "mode='reschedule' on the Messages API needs a task state store (Airflow 3.3+): each "
                "reschedule would lose the reports the earlier pokes consumed, which that API never hands "
                "out again. Use deferrable=True (or mode='poke')."
            )
        if self.detail_path and self._on_messages_api:
            from airflow_provider_omni.exceptions import OmniValidationError

            raise OmniValidationError(
                "detail_path: the detail file is read from the logs, which the Messages API does not have",
                validation_errors={"detail_path": ["not available on the Messages API backend"]},
            )
        timeout = self._timeout_seconds()
        if self._deadline is None:
            self._deadline = self._start_deadline(context)
        if not self.deferrable:
            # poke() ends the wait at the deadline (counted from the first try); keep the base loop
            # from ending it first
            self.timeout = timeout + max(self._poke_seconds(), 1.0) * 3 + 60
            return super().execute(context)
        first = self.poke(context)
        while not first.is_done and self._tracker is None:
            # what to wait for is not known yet (the scenario or the logs could not be read): the
            # trigger needs it; poke again after the backoff (poke() ends the wait at the deadline)
            time.sleep(self._get_next_poke_interval(None, lambda: 0.0, 1))
            first = self.poke(context)
        if first.is_done:
            return first.xcom_value
        self._defer(context, self._tracker)

    def _dry_run_summary(self) -> dict[str, Any] | None:
        """The summary of a dry run of the send (nothing was sent, nothing to wait for), else None."""
        if self.send_result is None:
            return None
        results = _send_results(self.send_result)
        if not results or not all(result.get("dry_run") for result in results):
            return None
        from airflow_provider_omni.outcome import DeliveryTracker

        total = sum(int(result.get("total") or 0) for result in results)
        self.log.info("The send was a dry run (%d destination(s), nothing sent): nothing to wait for", total)
        return {
            **DeliveryTracker({}).summary(),  # nothing sent: every count zero, nothing pending
            "total": total,
            "bulks": [b["bulk_id"] for result in results for b in result.get("bulks") or []],
            "dry_run": True,
        }

    def _defer(self, context: Context, tracker: DeliveryTracker | None) -> None:
        from airflow_provider_omni.triggers.delivery_report import OmniDeliveryReportTrigger

        if tracker is None or self._deadline is None:  # pragma: no cover - execute() sees to both
            raise AirflowException("nothing to wait for")
        self._mark_dirty(context)
        self.defer(
            trigger=OmniDeliveryReportTrigger(
                buckets=tracker.expected(),
                key_by=tracker.key_by,
                flow=list(tracker.flow),
                omni_conn_id=self.omni_conn_id,
                poll_interval=self._poke_seconds(),
                end_time=self._deadline,
                failed_cap=self.failed_cap,
                show_full_numbers=tracker.show_full_numbers,
                logs_reconcile_interval=self.logs_reconcile_interval,
                refused=_refusals_of(tracker),
                delivered_to_operator=tracker.delivered_to_operator_state() or None,
                accept_delivered_to_operator_after=self.accept_delivered_to_operator_after,
                backend=self.resolved_backend.value,
                state=tracker.progress_state() if self._on_messages_api else None,
            ),
            method_name="execute_complete",
            # the trigger ends itself at end_time with a "timeout" event; this is only a backstop
            timeout=timedelta(
                seconds=max(self._deadline - time.time(), 0.0) + 3 * self._poke_seconds() + 300
            ),
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
        if isinstance(event.get("state"), dict):
            self._keep_trigger_progress(context, event["state"])
        if event["status"] == "error":
            raise AirflowException(f"Waiting for delivery reports failed: {event.get('message')}")
        summary = self._merge_pre_defer(context, event["summary"])
        if event["status"] == "timeout":
            if not self.succeed_on_timeout:
                self._count_outcomes(summary["outcomes"])
                raise AirflowSensorTimeout(f"{event.get('message')}; outcomes so far: {summary['outcomes']}")
            self.log.warning("%s", event.get("message"))
        return self._finish(summary, context)

    def _keep_trigger_progress(self, context: Context, state: dict[str, Any]) -> None:
        """Keep in the task state store what the trigger learnt from reports (Messages API: they cannot
        be read again), so that a retry goes on from there."""
        from airflow_provider_omni.outcome import DeliveryTracker

        tracker = self._new_tracker(context)
        tracker.take_progress(DeliveryTracker.from_state(state))
        self._save_tracker(context, tracker)
        if self._store(context) is None:
            self.log.warning("No task state store: the reports the trigger consumed are lost for a retry")

    def _merge_pre_defer(self, context: Context, trigger_summary: dict[str, Any]) -> dict[str, Any]:
        """Complete the trigger's summary with what only this task knows: the destinations rejected at
        send time, and the errors of the reports consumed before deferring (logs carry no error).

        The stored state is used only when it was made for this send (its fingerprint)."""
        store = self._store(context)
        stored = store.get(STATE_KEY) if store is not None else None
        known: DeliveryTracker | None = None
        if isinstance(stored, dict) and stored.get("state"):
            if stored.get("fingerprint") != self._target_fingerprint():
                self.log.info("The stored delivery state is about another send (a cleared task?): not used")
            else:
                try:
                    known = self._restore(store, stored["state"])
                except (KeyError, ValueError, TypeError) as err:
                    self.log.warning("Could not read the state from before deferring (%s)", err)
        if known is None:
            from airflow_provider_omni.outcome import DeliveryTracker

            known = DeliveryTracker.from_send_results(
                _send_results(self.send_result) if self.send_result is not None else [],
                failed_cap=self.failed_cap,
            )
        return known.complete_summary(trigger_summary)


def _of_this_send(stored: Any, fingerprint: str) -> dict[str, Any] | None:
    """Return ``stored`` when it is a record made for the send of ``fingerprint``, else ``None``."""
    if isinstance(stored, dict) and stored.get("fingerprint") == fingerprint:
        return stored
    return None


def _refusals_of(tracker: DeliveryTracker) -> dict[str, Any] | None:
    """The refused-at-send destinations for the trigger, or ``None`` when there are none."""
    refusals = tracker.refusals()
    return refusals if tracker.key_by == "bulk" and any(refusals.values()) else None


def _seconds(value: timedelta | float | None) -> float | None:
    if value is None:
        return None
    return float(value.total_seconds() if isinstance(value, timedelta) else value)


def _open_path(path: str) -> Any:
    """Return an object with ``open()`` for ``path``: ``ObjectStoragePath`` for URLs when available."""
    if "://" in path:
        from airflow_provider_omni.version_compat import ObjectStoragePath

        return ObjectStoragePath(path)
    from pathlib import Path

    local = Path(path)
    local.parent.mkdir(parents=True, exist_ok=True)
    return local
