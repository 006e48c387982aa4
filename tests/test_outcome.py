"""The pure outcome logic: final statuses, Viber vs SMS fallback vs failed, the tracker and its state."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from airflow_provider_omni.models import DeliveryReport, OmniLog
from airflow_provider_omni.outcome import (
    DeliveryTracker,
    Outcome,
    classify,
    detail_line,
    is_delivered,
    is_final_status,
    latest_per_destination,
    more_logs_requests,
    normalize_flow,
    plan_logs_requests,
)

DELIVERED = {"groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_HANDSET"}
TO_OPERATOR = {"groupId": 3, "groupName": "DELIVERED", "id": 2, "name": "DELIVERED_TO_OPERATOR"}
PENDING = {"groupId": 1, "groupName": "PENDING", "id": 7, "name": "PENDING_ENROUTE"}
ACCEPTED = {"groupId": 0, "groupName": "ACCEPTED", "id": 0, "name": "MESSAGE_ACCEPTED"}
UNDELIVERABLE = {"groupId": 2, "groupName": "UNDELIVERABLE", "id": 9, "name": "UNDELIVERABLE_NOT_DELIVERED"}
EXPIRED = {"groupId": 4, "groupName": "EXPIRED", "id": 15, "name": "EXPIRED_EXPIRED"}
REJECTED = {"groupId": 5, "groupName": "REJECTED", "id": 6, "name": "REJECTED_NETWORK"}
NO_VIBER = {
    "groupId": 1,
    "groupName": "USER_ERRORS",
    "id": 7002,
    "name": "EC_UNKNOWN_USER",
    "permanent": True,
}
ABSENT = {
    "groupId": 1,
    "groupName": "HANDSET_ERRORS",
    "id": 27,
    "name": "EC_ABSENT_SUBSCRIBER",
    "permanent": False,
}


def _row(model: Any, to: str, channel: str, status: dict, bulk: str, mid: str | None, extra: dict) -> Any:
    body = {"bulkId": bulk, "messageId": mid or f"{bulk}.{to}", "to": to, "channel": channel}
    return model.model_validate({**body, "status": status, **extra})


def report(to: str, channel: str, status: dict, *, bulk: str = "b1", mid: str | None = None, **kw: Any):
    return _row(DeliveryReport, to, channel, status, bulk, mid, kw)


def log(to: str, channel: str, status: dict, *, bulk: str = "b1", mid: str | None = None, **kw: Any):
    return _row(OmniLog, to, channel, status, bulk, mid, kw)


@pytest.mark.parametrize(
    ("status", "final"),
    [
        (DELIVERED, True),
        (UNDELIVERABLE, True),
        (EXPIRED, True),
        (REJECTED, True),
        (TO_OPERATOR, False),
        (PENDING, False),
        (ACCEPTED, False),
        (None, False),
        ({"groupName": "EXPIRED", "name": "EXPIRED_EXPIRED"}, True),
        ({"groupName": "DELIVERED", "name": "DELIVERED_TO_HANDSET"}, True),
        ({"groupName": "DELIVERED", "name": "DELIVERED_TO_OPERATOR"}, False),
    ],
)
def test_final_statuses(status, final):
    assert is_final_status(status) is final


def test_only_handset_delivery_counts_as_delivered():
    assert is_delivered(DELIVERED)
    assert not is_delivered(TO_OPERATOR)
    assert not is_delivered(UNDELIVERABLE)


@pytest.mark.parametrize(
    ("channel", "status", "flow", "outcome"),
    [
        ("VIBER", DELIVERED, None, Outcome.VIBER_DELIVERED),
        ("SMS", DELIVERED, None, Outcome.SMS_DELIVERED),
        ("SMS", UNDELIVERABLE, None, Outcome.FAILED),
        ("SMS", EXPIRED, None, Outcome.FAILED),
        # a Viber failure is not the end while SMS can still deliver ...
        ("VIBER", UNDELIVERABLE, None, Outcome.PENDING),
        ("VIBER", EXPIRED, None, Outcome.PENDING),
        # ... but it is when Viber is the last (only) step
        ("VIBER", UNDELIVERABLE, ["VIBER"], Outcome.FAILED),
        ("VIBER", TO_OPERATOR, None, Outcome.PENDING),
        ("SMS", PENDING, None, Outcome.PENDING),
        ("SMS", TO_OPERATOR, None, Outcome.PENDING),
    ],
)
def test_classify(channel, status, flow, outcome):
    assert classify(channel, status, normalize_flow(flow)) is outcome


def test_normalize_flow_accepts_steps_dicts_and_names():
    assert normalize_flow([{"channel": "VIBER", "from": "x"}, "sms"]) == ("VIBER", "SMS")
    with pytest.raises(ValueError, match="at least one channel"):
        normalize_flow([])


def test_per_step_reports_end_with_the_sms_delivery():
    tracker = DeliveryTracker({"b1": 1})
    assert tracker.ingest(report("41790000006", "VIBER", UNDELIVERABLE, error=NO_VIBER)) is None
    assert tracker.unfinished() == ["b1"]
    assert tracker.ingest(report("41790000006", "SMS", DELIVERED, mid="new-id")) is Outcome.SMS_DELIVERED
    assert tracker.all_final
    assert tracker.summary()["outcomes"]["SMS_DELIVERED"] == 1


def test_fallback_report_with_a_new_message_id_is_matched_by_bulk_and_number():
    tracker = DeliveryTracker({"b1": 2})
    tracker.ingest(report("41790000000", "VIBER", DELIVERED, mid="b1.0"))
    tracker.ingest(report("+41790000007", "SMS", DELIVERED, mid="something-else"))
    summary = tracker.summary()
    assert summary["outcomes"] == {"VIBER_DELIVERED": 1, "SMS_DELIVERED": 1, "FAILED": 0, "PENDING": 0}
    assert summary["all_final"] is True


def test_intermediate_reports_do_not_end_the_wait():
    tracker = DeliveryTracker({"b1": 1})
    tracker.ingest_many(
        [report("41790000001", "VIBER", PENDING), report("41790000001", "VIBER", TO_OPERATOR)]
    )
    assert not tracker.all_final
    assert tracker.summary()["outcomes"]["PENDING"] == 1


def test_failed_detail_has_status_error_and_permanence_and_a_short_number():
    tracker = DeliveryTracker({"b1": 1})
    tracker.ingest(report("41790000008", "SMS", UNDELIVERABLE, error=ABSENT, mid="m8"))
    [failed] = tracker.summary()["failed"]
    assert failed == {
        "to": "+4179****008",
        "bulk_id": "b1",
        "message_id": "m8",
        "channel": "SMS",
        "status": "UNDELIVERABLE_NOT_DELIVERED",
        "error": "EC_ABSENT_SUBSCRIBER",
        "permanent": False,
    }
    assert tracker.summary()["errors"] == {"EC_ABSENT_SUBSCRIBER": 1}


def test_a_report_already_known_from_the_logs_is_not_counted_twice_but_completes_the_error():
    tracker = DeliveryTracker({"b1": 2})
    tracker.ingest(log("41790000008", "SMS", UNDELIVERABLE))
    summary = tracker.summary()
    assert summary["failed"][0]["error"] is None and summary["errors"] == {"UNKNOWN": 1}
    # the report for the same destination arrives later (it was never consumed)
    assert tracker.ingest(report("41790000008", "SMS", UNDELIVERABLE, error=ABSENT)) is None
    summary = tracker.summary()
    assert summary["outcomes"]["FAILED"] == 1 and summary["outcomes"]["PENDING"] == 1
    assert summary["failed"][0]["error"] == "EC_ABSENT_SUBSCRIBER"
    assert summary["errors"] == {"EC_ABSENT_SUBSCRIBER": 1}


def test_reports_of_other_bulks_are_ignored():
    tracker = DeliveryTracker({"b1": 1})
    assert tracker.ingest(report("41790000000", "VIBER", DELIVERED, bulk="other")) is None
    assert tracker.unfinished() == ["b1"]


def test_price_is_summed_per_currency_over_final_reports():
    tracker = DeliveryTracker({"b1": 3})
    eur = {"pricePerMessage": 0.01, "currency": "EUR"}
    tracker.ingest(report("41790000000", "VIBER", DELIVERED, price=eur))
    tracker.ingest(report("41790000006", "SMS", DELIVERED, price=eur, messageCount=2))
    tracker.ingest(
        report("41790000001", "VIBER", DELIVERED, price={"pricePerMessage": 0.5, "currency": "USD"})
    )
    assert tracker.summary()["price"] == {"EUR": 0.03, "USD": 0.5}


def test_send_result_gives_the_expected_counts_and_rejected_destinations():
    send = {
        "scenario_key": "K",
        "bulks": [
            {"bulk_id": "b1", "accepted": 2, "rejected": 1},
            {"bulk_id": "b2", "accepted": 0, "rejected": 0},
        ],
        "total": 3,
        "accepted": 2,
        "rejected": 1,
        "rejected_destinations": [
            {"to": "+4179****999", "message_id": "b1.2", "status": "REJECTED_DESTINATION"}
        ],
        "message_ids": None,
        "to_by_message_id_truncated": False,
    }
    tracker = DeliveryTracker.from_send_result(send)
    assert tracker.unfinished() == ["b1"]
    summary = tracker.summary()
    assert summary["total"] == 3
    assert summary["outcomes"] == {"VIBER_DELIVERED": 0, "SMS_DELIVERED": 0, "FAILED": 1, "PENDING": 2}
    assert summary["rejected_at_send"] == 1
    assert summary["failed"][0]["status"] == "REJECTED_DESTINATION"


def test_failed_detail_is_capped_but_counts_are_complete():
    tracker = DeliveryTracker({"b1": 500}, failed_cap=100)
    tracker.ingest_many(report(f"4179{i:07d}", "SMS", EXPIRED) for i in range(500))
    summary = tracker.summary()
    assert summary["outcomes"]["FAILED"] == 500 and len(summary["failed"]) == 100
    assert summary["all_final"]


def test_state_round_trip_keeps_dedup_and_counts():
    tracker = DeliveryTracker({"b1": 3, "b2": 1}, flow=["VIBER", "SMS"])
    tracker.ingest(report("41790000000", "VIBER", DELIVERED))
    tracker.ingest(log("41790000008", "SMS", EXPIRED))
    state = json.loads(json.dumps(tracker.to_state()))
    again = DeliveryTracker.from_state(state)
    assert again.summary() == tracker.summary()
    # the restored tracker still knows who is final
    assert again.ingest(report("41790000000", "VIBER", DELIVERED)) is None
    assert again.ingest(report("41790000008", "SMS", EXPIRED, error=ABSENT)) is None
    assert again.summary()["failed"][0]["error"] == "EC_ABSENT_SUBSCRIBER"
    assert again.ingest(report("41790000006", "SMS", DELIVERED)) is Outcome.SMS_DELIVERED


def test_state_of_an_unknown_version_is_refused():
    with pytest.raises(ValueError, match="version"):
        DeliveryTracker.from_state({"version": 99})


def test_state_stays_small_for_100_000_destinations():
    bulks = {f"dag.send.abcdef012345.-1.b{n}": 1000 for n in range(100)}
    tracker = DeliveryTracker(bulks)
    # finished bulks keep only counts
    for n in range(99):
        bulk = f"dag.send.abcdef012345.-1.b{n}"
        tracker.ingest_many(report(f"4179{i:07d}", "SMS", EXPIRED, bulk=bulk) for i in range(1000))
    # the last one is half done
    tracker.ingest_many(
        report(f"4179{i:07d}", "VIBER", DELIVERED, bulk="dag.send.abcdef012345.-1.b99") for i in range(500)
    )
    state = json.dumps(tracker.to_state())
    assert len(state) < 64 * 1024
    summary = tracker.summary()
    assert len(json.dumps(summary)) < 64 * 1024
    assert summary["outcomes"] == {
        "VIBER_DELIVERED": 500,
        "SMS_DELIVERED": 0,
        "FAILED": 99_000,
        "PENDING": 500,
    }


def test_message_mode_correlates_by_message_id():
    tracker = DeliveryTracker({"m1": 1, "m2": 1}, key_by="message")
    tracker.ingest(report("41790000000", "VIBER", DELIVERED, mid="m1", bulk="whatever"))
    assert tracker.unfinished() == ["m2"]


def test_latest_per_destination_prefers_the_final_row_of_the_last_step():
    rows = [
        log("41790000006", "VIBER", UNDELIVERABLE, mid="a"),
        log("41790000006", "SMS", DELIVERED, mid="b"),
        log("41790000009", "SMS", PENDING),
        log("41790000009", "VIBER", EXPIRED),
    ]
    picked = {r.to: r for r in latest_per_destination(rows)}
    assert picked["41790000006"].message_id == "b"
    assert picked["41790000009"].channel == "SMS"


def test_detail_line_shortens_numbers_and_names_the_outcome():
    line = detail_line(report("41790000006", "SMS", DELIVERED), ("VIBER", "SMS"))
    assert line["to"] == "+4179****006" and line["outcome"] == "SMS_DELIVERED"
    assert (
        detail_line(report("41790000006", "SMS", DELIVERED), ("VIBER", "SMS"), show_full_numbers=True)["to"]
        == "41790000006"
    )


# -- the plan of the logs reads (shared by the sensor and the trigger) -------------------------------------


def test_logs_are_read_with_one_request_per_bulk_or_per_100_message_ids():
    assert plan_logs_requests(["b1", "b2"]) == [
        {"bulk_id": "b1", "limit": 1000},
        {"bulk_id": "b2", "limit": 1000},
    ]
    ids = [f"m{i}" for i in range(250)]
    plan = plan_logs_requests(ids, key_by="message")
    assert [len(r["message_id"]) for r in plan] == [100, 100, 50]
    assert [m for r in plan for m in r["message_id"]] == ids


def full_page(n: int = 1000, *, bulk: str = "b1") -> list[OmniLog]:
    return [log(f"4179{i:07d}", "VIBER", PENDING, bulk=bulk) for i in range(n)]


def test_a_full_page_with_a_row_for_every_destination_needs_no_more_requests():
    request = plan_logs_requests(["b1"])[0]
    assert more_logs_requests(request, full_page(), expected={"b1": 1000}) == []


def test_a_page_that_is_not_full_needs_no_more_requests():
    request = plan_logs_requests(["b1"])[0]
    assert more_logs_requests(request, full_page(10), expected={"b1": 1000}) == []
    assert more_logs_requests(request, full_page(10)) == []


def test_a_full_page_is_read_again_per_channel_when_it_may_miss_rows():
    request = plan_logs_requests(["b1"])[0]
    per_channel = [
        {"bulk_id": "b1", "limit": 1000, "channel": "VIBER"},
        {"bulk_id": "b1", "limit": 1000, "channel": "SMS"},
    ]
    # the size of the bulk is unknown
    assert more_logs_requests(request, full_page()) == per_channel
    # fewer distinct destinations than the bulk holds (one row per step, say)
    rows = full_page(500) + full_page(500)
    assert more_logs_requests(request, rows, expected={"b1": 1000}) == per_channel
    # every destination is there, but one row is a failed Viber step: its SMS row may be beyond the page
    rows = [*full_page(999), log("41799999999", "VIBER", EXPIRED)]
    assert more_logs_requests(request, rows, expected={"b1": 1000}) == per_channel
    # the per-channel pages themselves are never split further
    assert more_logs_requests(per_channel[0], full_page(), expected={"b1": 2000}) == []


def test_message_id_pages_need_no_more_requests():
    request = plan_logs_requests([f"m{i}" for i in range(100)], key_by="message")[0]
    assert more_logs_requests({**request, "limit": 1}, full_page(1)) == []


def test_outcome_imports_no_model_at_module_level():
    code = "import sys, airflow_provider_omni.outcome; print('airflow_provider_omni.models' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
