"""Trigger of the deferrable delivery report sensor: polls OMNI reports in the triggerer, GETs only."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_omni import metrics
from airflow_provider_omni.exceptions import OmniError
from airflow_provider_omni.outcome import (
    DEFAULT_FAILED_CAP,
    DEFAULT_FLOW,
    DeliveryTracker,
    backoff_delay,
    is_transient_error,
    more_logs_requests,
    plan_logs_requests,
    safe_error_text,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

_REPORTS_LIMIT = 1000


async def _sleep(seconds: float) -> None:
    """Wait on the event loop (a module function so that tests can skip the wait)."""
    await asyncio.sleep(seconds)


class OmniDeliveryReportTrigger(BaseTrigger):
    """Poll ``GET /omni/1/reports`` per unfinished bulk until every destination is final, then yield once.

    On start it rebuilds what is already known from ``GET /omni/1/logs`` (re-readable), so a
    triggerer restart loses nothing: reports consumed by a previous run of the trigger are in the
    logs.  It never writes anything.  Its arguments do not grow with the number of destinations
    (only with those refused at send that the send listed, at most 100, and with those seen
    ``DELIVERED_TO_OPERATOR`` before deferring when that option is on, 11 bytes each).

    A failure that can heal (5xx, 429, a connection error or timeout, an empty answer) is ridden out:
    it is logged, and the poll is tried again after a backoff (growing, jittered, capped, at least the
    ``Retry-After``) until ``end_time``; after a failed poll the logs are read again (a failed answer
    may have taken reports with it).  What cannot heal (401/403, a 400, a 404, a redirecting base URL)
    ends the wait at once with an ``error`` event.

    The single event is ``{"status": "success" | "timeout" | "error", "summary": {...} | None,
    "message": str}``; the summary is :meth:`~airflow_provider_omni.outcome.DeliveryTracker.summary`.
    Messages and summaries show phone numbers shortened unless ``show_full_numbers``.

    :param buckets: bulk id (or message id, with ``key_by="message"``) to the number of destinations.
    :param omni_conn_id: the Infobip OMNI connection.
    :param poll_interval: seconds between two polls.
    :param end_time: wall-clock deadline (``time.time()``), after which a ``timeout`` event is sent.
    :param flow: the scenario's channels in order.
    :param key_by: ``"bulk"`` or ``"message"``.
    :param failed_cap: how many failed destinations the summary lists in full.
    :param show_full_numbers: keep phone numbers unshortened in the summary.
    :param logs_reconcile_interval: seconds between two reads of the logs of the unfinished bulks
        (a safety net for reports lost on the way); ``None``: only at start and after a failure.
    :param refused: the destinations refused at send
        (:meth:`~airflow_provider_omni.outcome.DeliveryTracker.refusals`): their own reports are not
        counted (the sensor counts them).
    :param delivered_to_operator: destinations seen ``DELIVERED_TO_OPERATOR`` before deferring, with
        when (:meth:`~airflow_provider_omni.outcome.DeliveryTracker.delivered_to_operator_state`).
    :param accept_delivered_to_operator_after: seconds after which a destination whose last-step
        report is ``DELIVERED_TO_OPERATOR`` counts as delivered; ``None``: never.
    :param backend: ``omni``, or ``messages_api``: ``GET /messages-api/1/reports``, and no logs to
        rebuild from (the sensor leaves every report to the trigger, which keeps them in memory until
        its event; a triggerer restart loses those consumed before it).
    :param state: on the Messages API, what the reports already told
        (:meth:`~airflow_provider_omni.outcome.DeliveryTracker.progress_state`): a retry's trigger goes
        on from it, and an ``error`` or ``timeout`` event hands the trigger's own back (``"state"``),
        since nothing can be read again.
    """

    def __init__(
        self,
        buckets: Mapping[str, int],
        omni_conn_id: str,
        poll_interval: float,
        end_time: float,
        flow: Sequence[str] = DEFAULT_FLOW,
        key_by: str = "bulk",
        failed_cap: int = DEFAULT_FAILED_CAP,
        show_full_numbers: bool = False,
        logs_reconcile_interval: float | None = 600.0,
        refused: Mapping[str, Any] | None = None,
        delivered_to_operator: Mapping[str, Any] | None = None,
        accept_delivered_to_operator_after: float | None = None,
        backend: str = "omni",
        state: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.backend = str(backend)
        self.state = dict(state) if state else None
        self.buckets = {str(k): int(v) for k, v in buckets.items()}
        self.omni_conn_id = omni_conn_id
        self.poll_interval = float(poll_interval)
        self.end_time = float(end_time)
        self.flow = [str(c) for c in flow]
        self.key_by = key_by
        self.failed_cap = int(failed_cap)
        self.show_full_numbers = bool(show_full_numbers)
        self.logs_reconcile_interval = _seconds(logs_reconcile_interval)
        self.refused = dict(refused) if refused else None
        self.delivered_to_operator = dict(delivered_to_operator) if delivered_to_operator else None
        self.accept_delivered_to_operator_after = _seconds(accept_delivered_to_operator_after)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the class path and the (JSON-safe) arguments to rebuild this trigger."""
        return (
            f"{self.__class__.__module__}.{self.__class__.__qualname__}",
            {
                "buckets": dict(self.buckets),
                "omni_conn_id": self.omni_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "flow": list(self.flow),
                "key_by": self.key_by,
                "failed_cap": self.failed_cap,
                "show_full_numbers": self.show_full_numbers,
                "logs_reconcile_interval": self.logs_reconcile_interval,
                "refused": self.refused,
                "delivered_to_operator": self.delivered_to_operator,
                "accept_delivered_to_operator_after": self.accept_delivered_to_operator_after,
                "backend": self.backend,
                "state": self.state,
            },
        )

    def _hook(self) -> Any:
        """Make the hook, and the metrics client, in a worker thread: both import modules (and the
        StatsD client may resolve its host), which must not block the triggerer's event loop."""
        from airflow_provider_omni.hooks.omni import OmniHook

        metrics.prepare()
        return OmniHook(omni_conn_id=self.omni_conn_id)

    def _tracker(self) -> DeliveryTracker:
        if self.state is not None:
            tracker = DeliveryTracker.from_state(self.state)
            tracker.set_refusals(self.refused)
            return tracker
        tracker = DeliveryTracker(
            self.buckets,
            flow=self.flow,
            failed_cap=self.failed_cap,
            show_full_numbers=self.show_full_numbers,
            key_by=self.key_by,
            accept_delivered_to_operator_after=self.accept_delivered_to_operator_after,
        )
        tracker.set_refusals(self.refused)
        tracker.seed_delivered_to_operator(self.delivered_to_operator)
        return tracker

    async def _rebuild_from_logs(self, hook: Any, tracker: DeliveryTracker) -> None:
        """Read the logs of the unfinished bulks into ``tracker``: the sensor's plan, awaited."""
        expected = tracker.expected()
        queue = deque(plan_logs_requests(tracker.unfinished(), self.key_by))
        while queue:
            request = queue.popleft()
            metrics.count_poll("logs")
            rows = await hook.aget_logs(**request)
            queue.extend(more_logs_requests(request, rows, flow=tracker.flow, expected=expected))
            tracker.ingest_many(rows)

    @property
    def _on_messages_api(self) -> bool:
        return self.backend == "messages_api"

    async def _poll_once(self, hook: Any, tracker: DeliveryTracker) -> None:
        unfinished = tracker.unfinished()
        # buckets the logs declared failed without an error: ask their reports once for the error
        to_poll = unfinished + sorted(tracker.pop_failed_without_error() - set(unfinished))
        get = hook.aget_messages_api_reports if self._on_messages_api else hook.aget_reports
        for index, bucket_id in enumerate(to_poll):
            metrics.count_poll("reports")
            try:
                if self.key_by == "message":
                    reports = await get(message_id=bucket_id, limit=_REPORTS_LIMIT)
                else:
                    reports = await get(bulk_id=bucket_id, limit=_REPORTS_LIMIT)
            except Exception:
                tracker.note_failed_without_error(b for b in to_poll[index:] if b not in unfinished)
                raise
            tracker.ingest_many(reports)

    def _event(self, status: str, tracker: DeliveryTracker, message: str) -> TriggerEvent:
        payload = {
            "status": status,
            "summary": tracker.summary(timed_out=status == "timeout"),
            "message": message,
        }
        if self._on_messages_api and status != "success":
            payload["state"] = tracker.progress_state()  # the reports it consumed exist nowhere else
        return TriggerEvent(payload)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Rebuild from the logs, then poll the reports until all are final or the deadline passes."""
        tracker = self._tracker()
        # the hook's module (requests, httpx, the pydantic models) is imported on first use: in a worker
        # thread, so that it does not block the triggerer's event loop and every trigger on it
        hook = await asyncio.to_thread(self._hook)
        failures, problem, retry_after = 0, "", None
        logs_read_at: float | None = None  # None: read the logs first (or again, after a failure)
        while True:
            try:
                if not self._on_messages_api and (logs_read_at is None or self._reconcile_due(logs_read_at)):
                    await self._rebuild_from_logs(hook, tracker)
                    logs_read_at = time.time()
                await self._poll_once(hook, tracker)
                failures, problem, retry_after = 0, "", None
            except Exception as err:
                problem = safe_error_text(err, show_full_numbers=self.show_full_numbers)
                if not is_transient_error(err):
                    # a traceback only for what is not an OMNI error (a bug): those carry no number
                    log = self.log.error if isinstance(err, OmniError) else self.log.exception
                    log("Waiting for OMNI delivery reports failed: %s", problem)
                    yield self._event("error", tracker, problem)
                    return
                failures, retry_after, logs_read_at = failures + 1, getattr(err, "retry_after", None), None
                if tracker.all_final:  # every outcome is known; only some error names are missing
                    self.log.warning("Could not fetch the last error details (%s)", problem)
            if tracker.all_final:
                yield self._event("success", tracker, "all destinations final")
                return
            remaining = self.end_time - time.time()
            if remaining <= 0:
                pending = tracker.counts()["PENDING"]
                message = f"timed out with {pending} destination(s) still pending"
                yield self._event(
                    "timeout", tracker, f"{message}; the last poll failed: {problem}" if problem else message
                )
                return
            delay = self.poll_interval
            if failures:
                delay = backoff_delay(failures, interval=self.poll_interval, retry_after=retry_after)
                self.log.warning(
                    "Polling OMNI delivery reports failed (%s); trying again in %.1f s (failure %d in a row)",
                    problem,
                    min(delay, remaining),
                    failures,
                )
            await _sleep(min(delay, remaining))

    def _reconcile_due(self, logs_read_at: float) -> bool:
        interval = self.logs_reconcile_interval
        return interval is not None and time.time() - logs_read_at >= interval


def _seconds(value: float | None) -> float | None:
    return None if value is None else float(value)
