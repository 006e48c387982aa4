"""The provider's metrics, sent through Airflow's ``Stats`` (StatsD, Datadog or OpenTelemetry).

Every name starts with ``omni.``; Airflow adds its own prefix (``[metrics] statsd_prefix``, ``airflow``
by default), so StatsD receives e.g. ``airflow.omni.send.bulks``.  Nothing is sent unless metrics are
turned on in Airflow's configuration (``[metrics] statsd_on``).

This is the only module that touches Airflow's ``Stats``, and it imports it on first use: importing
this module from a DAG file costs nothing.  A metric never fails a task: whatever goes wrong in the
metrics backend is logged at debug level and ignored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

log = logging.getLogger(__name__)

#: Destinations in the bulks POSTed to ``/omni/1/advanced`` (a bulk sent again counts again).
SEND_DESTINATIONS_SENT = "omni.send.destinations.sent"
#: Destinations Infobip took: from its answer, or found in the logs after an ambiguous failure.
SEND_DESTINATIONS_ACCEPTED = "omni.send.destinations.accepted"
#: Destinations Infobip refused at send (status group REJECTED) in a bulk it took.
SEND_DESTINATIONS_REJECTED = "omni.send.destinations.rejected"
#: Bulks POSTed (requests to ``/omni/1/advanced``).
SEND_BULKS = "omni.send.bulks"
#: POSTs that failed ambiguously (timeout, 5xx, dropped connection, an answer that does not match).
SEND_AMBIGUOUS = "omni.send.ambiguous"
#: Time of the send operator's whole send, validation excluded (a timer, in milliseconds).
SEND_DURATION = "omni.send.duration"
#: Requests for delivery reports or logs (``GET /omni/1/reports`` or ``/omni/1/logs``) while waiting.
REPORTS_POLLS = "omni.reports.polls"
#: Destinations of a finished wait, by outcome (counted once per wait, from its summary).
OUTCOME_VIBER_DELIVERED = "omni.outcome.viber_delivered"
OUTCOME_SMS_DELIVERED = "omni.outcome.sms_delivered"
OUTCOME_FAILED = "omni.outcome.failed"
OUTCOME_PENDING_AT_TIMEOUT = "omni.outcome.pending_at_timeout"

#: The summary's outcomes (``summary["outcomes"]``) and their counters.
OUTCOMES: Mapping[str, str] = {
    "VIBER_DELIVERED": OUTCOME_VIBER_DELIVERED,
    "SMS_DELIVERED": OUTCOME_SMS_DELIVERED,
    "FAILED": OUTCOME_FAILED,
    "PENDING": OUTCOME_PENDING_AT_TIMEOUT,
}

Tags = Mapping[str, str]


def _stats() -> Any:
    """Return Airflow's ``Stats`` of the running process (imported here, at first use)."""
    from airflow_provider_omni.version_compat import load_stats

    return load_stats()


def prepare() -> None:
    """Import Airflow's ``Stats`` and make its client now, so that a caller on an event loop can do
    it in a worker thread first. Airflow makes the client at the first metric, whatever the version:
    this sends ``omni.reports.polls`` + 0 (a no-op for a counter)."""
    incr(REPORTS_POLLS, 0)


def task_tags(task: Any) -> dict[str, str]:
    """Return the ``dag_id`` and ``task_id`` tags of a task or task instance (those it has).

    :param task: an operator, or a task instance.
    """
    tags = {}
    for key in ("dag_id", "task_id"):
        value = getattr(task, key, None)
        if value:
            tags[key] = str(value)
    return tags


def incr(name: str, count: int = 1, tags: Tags | None = None) -> None:
    """Add ``count`` to the counter ``name``; a failing metrics backend is logged and ignored.

    :param name: the metric, one of this module's names.
    :param count: how much to add (0 is sent too: the series exists from the first event).
    :param tags: tags for the backends that keep them (Datadog, OpenTelemetry, InfluxDB-style StatsD).
    """
    try:
        _stats().incr(name, count, tags=dict(tags or {}))
    except Exception:
        log.debug("Could not send the metric %s", name, exc_info=True)


def timing(name: str, seconds: float, tags: Tags | None = None) -> None:
    """Send ``seconds`` to the timer ``name``; a failing metrics backend is logged and ignored."""
    try:
        _stats().timing(name, timedelta(seconds=seconds), tags=dict(tags or {}))
    except Exception:
        log.debug("Could not send the metric %s", name, exc_info=True)


@contextmanager
def timed(name: str, tags: Tags | None = None) -> Iterator[None]:
    """Time the block and send it to the timer ``name``, whether the block succeeds or raises."""
    started = time.monotonic()
    try:
        yield
    finally:
        timing(name, time.monotonic() - started, tags)


def count_bulk_sent(size: int, tags: Tags | None = None) -> None:
    """Count one bulk POSTed with ``size`` destinations."""
    incr(SEND_BULKS, 1, tags)
    incr(SEND_DESTINATIONS_SENT, size, tags)


def count_bulk_taken(accepted: int, rejected: int, tags: Tags | None = None) -> None:
    """Count the destinations of a bulk Infobip took: ``accepted`` and ``rejected`` (refused at send)."""
    incr(SEND_DESTINATIONS_ACCEPTED, accepted, tags)
    incr(SEND_DESTINATIONS_REJECTED, rejected, tags)


def count_poll(endpoint: str) -> None:
    """Count one request for delivery reports or logs while waiting.

    :param endpoint: ``reports`` or ``logs`` (sent as the ``endpoint`` tag).
    """
    incr(REPORTS_POLLS, 1, {"endpoint": endpoint})


def count_outcomes(outcomes: Mapping[str, int], tags: Tags | None = None) -> None:
    """Count the destinations of one finished wait by outcome, zeros included.

    :param outcomes: ``{"VIBER_DELIVERED": n, "SMS_DELIVERED": n, "FAILED": n, "PENDING": n}``, the
        summary's ``outcomes`` (``PENDING`` is what the timeout left pending).
    """
    for outcome, name in OUTCOMES.items():
        incr(name, int(outcomes.get(outcome) or 0), tags)
