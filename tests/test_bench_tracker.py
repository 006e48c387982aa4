"""The tracker benchmark feeds what it claims to feed, and measures the tracker, not its input."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # bench/ is a top-level package of the repository, not installed
    sys.path.insert(0, str(REPO))

from bench import tracker  # noqa: E402


def test_the_reports_make_every_destination_final_with_the_planned_mix() -> None:
    from airflow_provider_omni.outcome import DeliveryTracker

    xcom = tracker.send_result(2_500)
    assert [b["accepted"] for b in xcom["bulks"]] == [1000, 1000, 500]
    assert xcom["message_ids"] is None and xcom["to_by_message_id_truncated"]
    tracked = DeliveryTracker.from_send_result(xcom, flow=("VIBER", "SMS"))
    for stage in (1, 2):
        for batch in tracker._batches(xcom, stage):
            tracked.ingest_many(batch.results)
        assert len(tracked.unfinished()) == 3  # every bulk is still unfinished: the worst case
    for batch in tracker._batches(xcom, 3):
        tracked.ingest_many(batch.results)
    failed = sum(1 for i in range(2_500) if i % 50 == 0)
    sms = sum(1 for i in range(2_500) if i % 5 == 1 and i % 50 != 0)
    assert tracked.counts() == {
        "VIBER_DELIVERED": 2_500 - failed - sms,
        "SMS_DELIVERED": sms,
        "FAILED": failed,
        "PENDING": 0,
    }
    assert all(not bucket.final for bucket in tracked._buckets.values())


@pytest.mark.bench
def test_measure_runs_in_fresh_processes_and_the_table_has_a_row_per_stage() -> None:
    rows = tracker.measure([2_000])

    assert [r["stage"] for r in rows] == list(tracker.STAGES)
    by_stage = {r["stage"]: r for r in rows}
    assert by_stage[tracker.WORST]["final_keys"] == 2 * 999
    assert by_stage["all final"]["final_keys"] == 0
    assert by_stage["all final"]["stored_keys"] == 1  # no per-bulk key once every bulk finished
    assert by_stage["all final"]["tracker_bytes"] < by_stage[tracker.WORST]["tracker_bytes"]
    assert by_stage["all final"]["naive_entries"] == 2_000
    table = tracker.table(rows)
    assert len(table.rows) == len(tracker.STAGES)
    assert "2,000" in table.markdown()
    assert all(t.passed is not None for t in tracker.targets(rows))
