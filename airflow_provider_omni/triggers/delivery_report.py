"""Trigger of the deferrable delivery report sensor: polls OMNI reports in the triggerer, GETs only."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_omni.outcome import (
    DEFAULT_FAILED_CAP,
    DEFAULT_FLOW,
    DeliveryTracker,
    more_logs_requests,
    plan_logs_requests,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

_REPORTS_LIMIT = 1000


class OmniDeliveryReportTrigger(BaseTrigger):
    """Poll ``GET /omni/1/reports`` per unfinished bulk until every destination is final, then yield once.

    On start it rebuilds what is already known from ``GET /omni/1/logs`` (re-readable), so a
    triggerer restart loses nothing: reports consumed by a previous run of the trigger are in the
    logs.  It never writes anything.  Its arguments do not grow with the number of destinations.

    The single event is ``{"status": "success" | "timeout" | "error", "summary": {...} | None,
    "message": str}``; the summary is :meth:`~airflow_provider_omni.outcome.DeliveryTracker.summary`.

    :param buckets: bulk id (or message id, with ``key_by="message"``) to the number of destinations.
    :param omni_conn_id: the Infobip OMNI connection.
    :param poll_interval: seconds between two polls.
    :param end_time: wall-clock deadline (``time.time()``), after which a ``timeout`` event is sent.
    :param flow: the scenario's channels in order.
    :param key_by: ``"bulk"`` or ``"message"``.
    :param failed_cap: how many failed destinations the summary lists in full.
    :param show_full_numbers: keep phone numbers unshortened in the summary.
    :param logs_reconcile_interval: seconds between two reads of the logs of the unfinished bulks
        (a safety net for reports lost on the way); ``None``: only at start.
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
    ) -> None:
        super().__init__()
        self.buckets = {str(k): int(v) for k, v in buckets.items()}
        self.omni_conn_id = omni_conn_id
        self.poll_interval = float(poll_interval)
        self.end_time = float(end_time)
        self.flow = [str(c) for c in flow]
        self.key_by = key_by
        self.failed_cap = int(failed_cap)
        self.show_full_numbers = bool(show_full_numbers)
        self.logs_reconcile_interval = (
            None if logs_reconcile_interval is None else float(logs_reconcile_interval)
        )

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
            },
        )

    def _hook(self) -> Any:
        from airflow_provider_omni.hooks.omni import OmniHook

        return OmniHook(omni_conn_id=self.omni_conn_id)

    def _tracker(self) -> DeliveryTracker:
        return DeliveryTracker(
            self.buckets,
            flow=self.flow,
            failed_cap=self.failed_cap,
            show_full_numbers=self.show_full_numbers,
            key_by=self.key_by,
        )

    async def _rebuild_from_logs(self, hook: Any, tracker: DeliveryTracker) -> None:
        """Read the logs of the unfinished bulks into ``tracker``: the sensor's plan, awaited."""
        expected = tracker.expected()
        queue = deque(plan_logs_requests(tracker.unfinished(), self.key_by))
        while queue:
            request = queue.popleft()
            rows = await hook.aget_logs(**request)
            queue.extend(more_logs_requests(request, rows, flow=tracker.flow, expected=expected))
            tracker.ingest_many(rows)

    async def _poll_once(self, hook: Any, tracker: DeliveryTracker) -> None:
        unfinished = tracker.unfinished()
        # buckets the logs declared failed without an error: ask their reports once for the error
        for bucket_id in unfinished + sorted(tracker.pop_failed_without_error() - set(unfinished)):
            if self.key_by == "message":
                reports = await hook.aget_reports(message_id=bucket_id, limit=_REPORTS_LIMIT)
            else:
                reports = await hook.aget_reports(bulk_id=bucket_id, limit=_REPORTS_LIMIT)
            tracker.ingest_many(reports)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Rebuild from the logs, then poll the reports until all are final or the deadline passes."""
        tracker = self._tracker()
        try:
            hook = self._hook()
            await self._rebuild_from_logs(hook, tracker)
            logs_read_at = time.time()
            if tracker.all_final:
                await self._poll_once(hook, tracker)
            while True:
                if tracker.all_final:
                    yield TriggerEvent(
                        {
                            "status": "success",
                            "summary": tracker.summary(),
                            "message": "all destinations final",
                        }
                    )
                    return
                if time.time() >= self.end_time:
                    pending = tracker.counts()["PENDING"]
                    yield TriggerEvent(
                        {
                            "status": "timeout",
                            "summary": tracker.summary(timed_out=True),
                            "message": f"timed out with {pending} destination(s) still pending",
                        }
                    )
                    return
                interval = self.logs_reconcile_interval
                if interval is not None and time.time() - logs_read_at >= interval:
                    await self._rebuild_from_logs(hook, tracker)
                    logs_read_at = time.time()
                await self._poll_once(hook, tracker)
                if not tracker.all_final:
                    await asyncio.sleep(max(0.0, min(self.poll_interval, self.end_time - time.time())))
        except Exception as err:
            self.log.exception("Polling OMNI delivery reports failed")
            yield TriggerEvent(
                {"status": "error", "summary": tracker.summary(), "message": f"{type(err).__name__}: {err}"}
            )
