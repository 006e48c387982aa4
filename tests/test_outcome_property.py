"""Property-based test of the outcome logic against a small model of destinations and their timelines.

Hypothesis draws a send (flow, destinations, some refused at send, listed or not), a report style (final
only, per step, the fallback under a new message id, intermediate statuses), and a random run: polls that
hand reports out (split across polls, some answers lost on the way), duplicates, log reads, reports of
other bulks, restarts from the stored state, rebuilds from the logs, and a hand-over to a trigger.  The
ground truth comes from the model.  Invariants: no outcome is ever counted above the truth (nobody is
counted twice), "all final" is only said when the summary equals the truth, and once everything is
final and read, the summary equals the truth.

The same run on the Messages API backend: its reports (``destination``, ``VIBER_BM``, no price) read
through the provider's mapping, no logs to read or rebuild from, and a deferrable wait that consumes
nothing before the hand-over.  A lost answer is then lost for good: the summary never guesses (nobody
counted above the truth, "all final" never said early), and with no answer lost it equals the truth.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_omni.messages_api import report_record
from airflow_provider_omni.models import DeliveryReport, OmniLog
from airflow_provider_omni.outcome import DeliveryTracker

STATUS = {
    "pending": {"groupId": 1, "groupName": "PENDING", "id": 7, "name": "PENDING_ENROUTE"},
    "operator": {"groupId": 3, "groupName": "DELIVERED", "id": 2, "name": "DELIVERED_TO_OPERATOR"},
    "deliver": {"groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_HANDSET"},
    "undeliverable": {
        "groupId": 2,
        "groupName": "UNDELIVERABLE",
        "id": 9,
        "name": "UNDELIVERABLE_NOT_DELIVERED",
    },
    "expire": {"groupId": 4, "groupName": "EXPIRED", "id": 15, "name": "EXPIRED_EXPIRED"},
    "reject": {"groupId": 5, "groupName": "REJECTED", "id": 6, "name": "REJECTED_NETWORK"},
    "refused": {"groupId": 5, "groupName": "REJECTED", "id": 23, "name": "REJECTED_DUPLICATE_MESSAGE_ID"},
}
ERROR = {
    "groupId": 1,
    "groupName": "HANDSET_ERRORS",
    "id": 27,
    "name": "EC_ABSENT_SUBSCRIBER",
    "permanent": False,
}
FLOWS = [("VIBER", "SMS"), ("SMS",), ("VIBER",)]
CATEGORIES = ("VIBER_DELIVERED", "SMS_DELIVERED", "FAILED")
BULK = "b1"


@dataclass
class Step:
    channel: str
    kind: str
    start: int
    end: int
    message_id: str


@dataclass
class Destination:
    number: str
    message_id: str
    refused: bool = False
    listed: bool = False
    steps: list[Step] = field(default_factory=list)

    @property
    def final_at(self) -> int:
        return self.steps[-1].end if self.steps else 0

    @property
    def truth(self) -> str:
        if self.refused or self.steps[-1].kind != "deliver":
            return "FAILED"
        return "VIBER_DELIVERED" if self.steps[-1].channel == "VIBER" else "SMS_DELIVERED"


def record(
    model: Any, dest: Destination, channel: str, status: str, message_id: str, bulk: str = BULK
) -> Any:
    body: dict[str, Any] = {
        "bulkId": bulk,
        "messageId": message_id,
        "to": dest.number,
        "channel": channel,
        "status": STATUS[status],
        "price": {"pricePerMessage": 0.01, "currency": "EUR"},
    }
    if model is DeliveryReport and status in ("undeliverable", "expire", "reject"):
        body["error"] = ERROR
    return model.model_validate(body)


def messages_api_report(dest: Destination, channel: str, status: str, message_id: str) -> DeliveryReport:
    """The Messages API's delivery result for one step, read the way the hook reads it."""
    body: dict[str, Any] = {
        "event": "DELIVERY",
        "bulkId": BULK,
        "messageId": message_id,
        "destination": dest.number,
        "sender": "Brand",
        "channel": "VIBER_BM" if channel == "VIBER" else channel,
        "status": {**STATUS[status], "description": ""},
        "error": ERROR if status in ("undeliverable", "expire", "reject") else {"id": 0, "name": "NO_ERROR"},
        "messageCount": 1,
        "sentAt": "2026-11-29T10:00:00.000+0000",
        "doneAt": "2026-11-29T10:00:05.000+0000",
    }
    return DeliveryReport.model_validate(report_record(body))


@st.composite
def sends(draw: st.DrawFn) -> tuple[tuple[str, ...], list[Destination], set[str]]:
    flow = draw(st.sampled_from(FLOWS))
    count = draw(st.integers(1, 8))
    new_ids = draw(st.booleans())
    destinations = []
    for index in range(count):
        dest = Destination(number=f"4179000{index:04d}", message_id=f"{BULK}.{index}")
        if draw(st.integers(0, 6)) == 0:
            dest.refused, dest.listed = True, draw(st.booleans())
            dest.steps = [Step(flow[0], "refused", 0, 0, dest.message_id)]
        else:
            moment = 0
            for position, channel in enumerate(flow):
                kind = draw(st.sampled_from(["deliver", "undeliverable", "expire", "reject"]))
                end = moment + draw(st.integers(1, 20))
                step_id = f"{dest.message_id}.s{position}" if new_ids and position else dest.message_id
                dest.steps.append(Step(channel, kind, moment, end, step_id))
                if kind in ("deliver", "reject"):
                    break
                moment = end
        destinations.append(dest)
    styles = set(draw(st.sets(st.sampled_from(["per_step", "intermediate", "per_step_logs"]))))
    return flow, destinations, styles


def reports_of(dest: Destination, styles: set[str], backend: str = "omni") -> list[tuple[int, Any]]:
    """Every report of a destination with the time it becomes available, in order."""
    if backend == "messages_api":
        return [
            (t, messages_api_report(dest, r.channel, _kind(r), r.message_id))
            for t, r in reports_of(dest, styles)
        ]
    if dest.refused:
        return [(0, record(DeliveryReport, dest, dest.steps[0].channel, "refused", dest.message_id))]
    found: list[tuple[int, Any]] = []
    for index, step in enumerate(dest.steps):
        if "intermediate" in styles:
            found.append((step.start, record(DeliveryReport, dest, step.channel, "pending", step.message_id)))
            if step.channel == "SMS" and step.kind in ("deliver", "undeliverable"):
                middle = (step.start + step.end) // 2
                found.append(
                    (middle, record(DeliveryReport, dest, step.channel, "operator", step.message_id))
                )
        if index == len(dest.steps) - 1 or "per_step" in styles:
            found.append((step.end, record(DeliveryReport, dest, step.channel, step.kind, step.message_id)))
    return found


def _kind(report: DeliveryReport) -> str:
    """The model's status kind of an OMNI-shaped report."""
    assert report.status is not None
    return next(k for k, v in STATUS.items() if v["id"] == report.status.id)


def log_rows(destinations: list[Destination], now: int, styles: set[str]) -> list[Any]:
    """What ``GET /omni/1/logs`` says at ``now``: one row per message (the current step), and with
    ``per_step_logs`` one more row per failed earlier step."""
    rows = []
    for dest in destinations:
        if dest.refused:
            rows.append(record(OmniLog, dest, dest.steps[0].channel, "refused", dest.message_id))
            continue
        started = [s for s in dest.steps if s.start <= now]
        current = started[-1]
        if "per_step_logs" in styles:
            rows.extend(record(OmniLog, dest, s.channel, s.kind, dest.message_id) for s in started[:-1])
        status = current.kind if now >= dest.final_at else "pending"
        rows.append(record(OmniLog, dest, current.channel, status, dest.message_id))
    return rows


def send_result(destinations: list[Destination], with_bulk_ids: bool) -> dict[str, Any]:
    refused = [d for d in destinations if d.refused]
    listed = [
        {
            "to": "+4179****" + d.number[-3:],
            "message_id": d.message_id,
            "status": "REJECTED_DUPLICATE_MESSAGE_ID",
        }
        | ({"bulk_id": BULK} if with_bulk_ids else {})
        for d in refused
        if d.listed
    ]
    return {
        "scenario_key": None,
        "bulks": [{"bulk_id": BULK, "accepted": len(destinations) - len(refused), "rejected": len(refused)}],
        "rejected": len(refused),
        "rejected_destinations": listed,
    }


class Run:
    """The sensor (or, after a hand-over, the trigger) consuming reports and logs of one send."""

    def __init__(
        self,
        flow: tuple[str, ...],
        destinations: list[Destination],
        styles: set[str],
        xcom: dict,
        backend: str = "omni",
    ) -> None:
        self.flow, self.destinations, self.styles, self.xcom = flow, destinations, styles, xcom
        self.backend = backend
        self.now = 0
        self.lost = 0
        self.queue = sorted(
            ((t, n, r) for n, d in enumerate(destinations) for t, r in reports_of(d, styles, backend)),
            key=lambda item: (item[0], item[1]),
        )
        self.handed_out: list[Any] = []
        self.tracker = DeliveryTracker.from_send_result(xcom, flow=flow)
        self.trigger: DeliveryTracker | None = None
        self.truth = {c: sum(d.truth == c for d in destinations) for c in CATEGORIES}

    @property
    def current(self) -> DeliveryTracker:
        return self.trigger or self.tracker

    def poll(self, limit: int, lost: bool) -> None:
        """Hand out (once) up to ``limit`` reports available now; a lost answer is never ingested."""
        ready = [item for item in self.queue if item[0] <= self.now][:limit]
        for item in ready:
            self.queue.remove(item)
        reports = [r for _, _, r in ready]
        self.lost += bool(lost and reports)
        if not lost:
            self.handed_out.extend(reports)
            self.current.ingest_many(reports)

    def read_logs(self) -> None:
        self.current.ingest_many(log_rows(self.destinations, self.now, self.styles))

    def restart_from_state(self) -> None:
        state = json.loads(json.dumps(self.current.to_state()))
        restored = DeliveryTracker.from_state(state)
        if self.trigger is None:
            self.tracker = restored
        else:
            self.trigger = restored

    def rebuild_from_logs(self) -> None:
        """A new process without usable state (or a restarted trigger): start again from the logs."""
        if self.trigger is None:
            self.tracker = DeliveryTracker.from_send_result(self.xcom, flow=self.flow)
        else:
            self.hand_over()
        self.read_logs()

    def hand_over(self) -> None:
        """Defer: the trigger starts with the sizes and refusals only."""
        trigger = DeliveryTracker(self.tracker.expected(), flow=self.flow)
        trigger.set_refusals(self.tracker.refusals())
        self.trigger = trigger

    def summary(self) -> dict[str, Any]:
        if self.trigger is None:
            return self.tracker.summary()
        return self.tracker.complete_summary(self.trigger.summary())

    def act(self, action: str, data: Any) -> None:
        """Play one drawn action (on the Messages API there are no logs, and a deferrable wait
        consumes nothing before the hand-over)."""
        if action == "advance":
            self.now += data.draw(st.integers(1, 15))
        elif action in ("poll", "lost_poll"):
            self.poll(data.draw(st.integers(1, 5)), lost=action == "lost_poll")
        elif action == "duplicate" and self.handed_out:
            self.current.ingest(data.draw(st.sampled_from(self.handed_out)))
        elif action == "logs":
            self.read_logs()
        elif action == "other_bulk":
            stranger = Destination(number=self.destinations[0].number, message_id="other.0")
            self.current.ingest(
                record(DeliveryReport, stranger, self.flow[-1], "undeliverable", "other.0", "other")
            )
        elif action == "state":
            self.restart_from_state()
        elif action == "rebuild":
            self.rebuild_from_logs()
        elif action == "defer" and self.trigger is None:
            if self.backend == "omni":
                self.hand_over()
                self.read_logs()  # a trigger starts from the logs
            elif not self.handed_out and not self.lost:
                self.hand_over()

    def check(self) -> None:
        summary = self.summary()
        outcomes = summary["outcomes"]
        assert summary["total"] == len(self.destinations)
        for category in CATEGORIES:
            assert outcomes[category] <= self.truth[category], (category, outcomes, self.truth)
        if summary["all_final"]:
            assert {c: outcomes[c] for c in CATEGORIES} == self.truth, (outcomes, self.truth)
        ids = [f["message_id"] for f in summary["failed"]]
        assert len(ids) == len(set(ids)), ids


ACTIONS = st.sampled_from(
    ["advance", "poll", "poll", "lost_poll", "duplicate", "logs", "other_bulk", "state", "rebuild", "defer"]
)
#: No logs on the Messages API: nothing to read or rebuild from.
MESSAGES_API_ACTIONS = st.sampled_from(
    ["advance", "poll", "poll", "lost_poll", "duplicate", "other_bulk", "state", "defer"]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(send=sends(), with_bulk_ids=st.booleans(), data=st.data())
def test_the_summary_equals_the_truth_and_nobody_is_counted_twice(send, with_bulk_ids, data):
    flow, destinations, styles = send
    run = Run(flow, destinations, styles, send_result(destinations, with_bulk_ids))
    for action in data.draw(st.lists(ACTIONS, max_size=25), label="actions"):
        run.act(action, data)
        run.check()
    # the end: everything is final; the logs are read (a reconcile) and the reports polled
    run.now = max(d.final_at for d in destinations) + 1
    run.read_logs()
    run.poll(10_000, lost=False)
    run.check()
    summary = run.summary()
    assert summary["all_final"]
    assert {c: summary["outcomes"][c] for c in CATEGORIES} == run.truth
    assert summary["rejected_at_send"] == sum(d.refused for d in destinations)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(send=sends(), with_bulk_ids=st.booleans(), data=st.data())
def test_on_the_messages_api_the_summary_never_guesses_and_equals_the_truth_when_nothing_is_lost(
    send, with_bulk_ids, data
):
    flow, destinations, styles = send
    styles.discard("per_step_logs")
    run = Run(flow, destinations, styles, send_result(destinations, with_bulk_ids), backend="messages_api")
    for action in data.draw(st.lists(MESSAGES_API_ACTIONS, max_size=25), label="actions"):
        run.act(action, data)
        run.check()
    run.now = max(d.final_at for d in destinations) + 1
    run.poll(10_000, lost=False)
    run.check()
    summary = run.summary()
    if not run.lost:
        assert summary["all_final"]
        assert {c: summary["outcomes"][c] for c in CATEGORIES} == run.truth
