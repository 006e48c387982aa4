"""The tracker's rules for refused-at-send destinations, DELIVERED_TO_OPERATOR, the send fingerprint and
which failures a wait rides out (pure logic, no server)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import requests

from airflow_provider_omni import exceptions as exc
from airflow_provider_omni.models import DeliveryReport, OmniLog
from airflow_provider_omni.outcome import DeliveryTracker, Outcome

DELIVERED = {"groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_HANDSET"}
TO_OPERATOR = {"groupId": 3, "groupName": "DELIVERED", "id": 2, "name": "DELIVERED_TO_OPERATOR"}
PENDING = {"groupId": 1, "groupName": "PENDING", "id": 7, "name": "PENDING_ENROUTE"}
EXPIRED = {"groupId": 4, "groupName": "EXPIRED", "id": 15, "name": "EXPIRED_EXPIRED"}
DUPLICATE = {"groupId": 5, "groupName": "REJECTED", "id": 23, "name": "REJECTED_DUPLICATE_MESSAGE_ID"}
UNDELIVERABLE = {"groupId": 2, "groupName": "UNDELIVERABLE", "id": 9, "name": "UNDELIVERABLE_NOT_DELIVERED"}
PRICE = {"pricePerMessage": 0.01, "currency": "EUR"}


def report(to: str, channel: str, status: dict, mid: str, bulk: str = "b1", model: Any = DeliveryReport):
    body = {"bulkId": bulk, "messageId": mid, "to": to, "channel": channel, "status": status, "price": PRICE}
    return model.model_validate(body)


def send_result(accepted: int, refused: list[tuple[str, str]], *, listed: int | None = None) -> dict:
    """A send XCom (new contract) for bulk b1: ``refused`` (message id, number), the first ``listed``."""
    shown = refused if listed is None else refused[:listed]
    return {
        "scenario_key": "K",
        "namespace": "ns",
        "send_key": "sk",
        "bulks": [{"bulk_id": "b1", "accepted": accepted, "rejected": len(refused)}],
        "total": accepted + len(refused),
        "accepted": accepted,
        "rejected": len(refused),
        "rejected_destinations": [
            {
                "to": "+4179****" + to[-3:],
                "message_id": mid,
                "status": "REJECTED_DUPLICATE_MESSAGE_ID",
                "bulk_id": "b1",
            }
            for mid, to in shown
        ],
        "removed": 0,
        "message_ids": None,
        "to_by_message_id_truncated": True,
        "sent_at": 1_700_000_000.0,
    }


# -- refused at send (item 7) --------------------------------------------------------------------------


@pytest.mark.parametrize("listed", [1, 0], ids=["listed", "counted-only"])
def test_the_report_of_a_refused_destination_is_not_counted_again_in_its_bulk(listed):
    tracker = DeliveryTracker.from_send_result(
        send_result(1, [("b1.0", "41790000001")], listed=listed), flow=["SMS"]
    )
    # the refused destination's own report (REJECTED), then its log row: neither is counted again
    assert tracker.ingest(report("41790000001", "SMS", DUPLICATE, "b1.0")) is None
    assert tracker.ingest(report("41790000001", "SMS", DUPLICATE, "b1.0", model=OmniLog)) is None
    assert tracker.unfinished() == ["b1"]  # the accepted destination is still waited for
    summary = tracker.summary()
    assert summary["outcomes"] == {"VIBER_DELIVERED": 0, "SMS_DELIVERED": 0, "FAILED": 1, "PENDING": 1}
    assert summary["total"] == 2
    assert tracker.ingest(report("41790000009", "SMS", EXPIRED, "b1.1")) is Outcome.FAILED
    summary = tracker.summary()
    assert summary["all_final"] and summary["outcomes"]["FAILED"] == 2 and summary["total"] == 2
    assert [f["message_id"] for f in summary["failed"]].count("b1.0") == listed
    assert len(summary["failed"]) == 1 + listed


def test_refusals_survive_the_state_round_trip():
    tracker = DeliveryTracker.from_send_result(send_result(1, [("b1.0", "41790000001")], listed=0))
    tracker.ingest(report("41790000001", "VIBER", DUPLICATE, "b1.0"))
    again = DeliveryTracker.from_state(json.loads(json.dumps(tracker.to_state())))
    # the same refusal seen again (from the logs, after a restart) does not use up a second slot
    assert again.ingest(report("41790000001", "VIBER", DUPLICATE, "b1.0", model=OmniLog)) is None
    assert again.ingest(report("41790000002", "VIBER", DUPLICATE, "b1.1")) is Outcome.FAILED
    assert again.summary()["outcomes"]["FAILED"] == 2 and again.all_final


# -- DELIVERED_TO_OPERATOR (item 8a) -----------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_delivered_to_operator_on_the_last_step_counts_as_delivered_after_the_given_time():
    clock = Clock()
    tracker = DeliveryTracker({"b1": 2}, accept_delivered_to_operator_after=60.0, clock=clock)
    tracker.ingest(report("41790000006", "SMS", TO_OPERATOR, "m6"))
    tracker.ingest(report("41790000001", "VIBER", TO_OPERATOR, "m1"))  # not the last step: never accepted
    clock.now += 59
    assert tracker.counts()["PENDING"] == 2
    clock.now += 1
    counts = tracker.counts()
    assert counts["SMS_DELIVERED"] == 1 and counts["PENDING"] == 1
    assert tracker.summary()["price"] == {"EUR": 0.01}
    # a late handset report of the accepted one changes nothing
    assert tracker.ingest(report("41790000006", "SMS", DELIVERED, "m6")) is None
    assert tracker.counts()["SMS_DELIVERED"] == 1


def test_without_the_option_delivered_to_operator_never_ends_the_wait():
    clock = Clock()
    tracker = DeliveryTracker({"b1": 1}, clock=clock)
    tracker.ingest(report("41790000006", "SMS", TO_OPERATOR, "m6"))
    clock.now += 10 * 86400
    assert not tracker.all_final


def test_a_final_report_before_the_time_wins_and_is_priced_once():
    clock = Clock()
    tracker = DeliveryTracker({"b1": 1}, accept_delivered_to_operator_after=60.0, clock=clock)
    tracker.ingest(report("41790000006", "SMS", TO_OPERATOR, "m6"))
    assert tracker.ingest(report("41790000006", "SMS", UNDELIVERABLE, "m6")) is Outcome.FAILED
    clock.now += 3600
    assert tracker.counts()["FAILED"] == 1 and tracker.summary()["price"] == {"EUR": 0.01}


def test_the_first_sighting_survives_the_state_and_the_hand_over_to_a_trigger():
    clock = Clock()
    tracker = DeliveryTracker({"b1": 1}, accept_delivered_to_operator_after=60.0, clock=clock)
    tracker.ingest(report("41790000006", "SMS", TO_OPERATOR, "m6"))
    clock.now += 30
    restored = DeliveryTracker.from_state(json.loads(json.dumps(tracker.to_state())), clock=clock)
    handed = DeliveryTracker({"b1": 1}, accept_delivered_to_operator_after=60.0, clock=clock)
    handed.seed_delivered_to_operator(json.loads(json.dumps(tracker.delivered_to_operator_state())))
    # seen again later (a log row): the first sighting counts
    for again in (restored, handed):
        again.ingest(report("41790000006", "SMS", TO_OPERATOR, "m6", model=OmniLog))
    clock.now += 30
    for again in (restored, handed):
        assert again.all_final and again.counts()["SMS_DELIVERED"] == 1


# -- which failures a wait rides out (item 9) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (exc.OmniServerError("503"), True),
        (exc.OmniRateLimitError("429", retry_after=3), True),
        (exc.OmniError("unexpected answer"), True),
        (requests.ConnectionError("refused"), True),
        (requests.ReadTimeout("slow"), True),
        (httpx.ConnectError("refused"), True),
        (httpx.ReadTimeout("slow"), True),
        (TimeoutError(), True),
        (exc.OmniAuthError("401"), False),
        (exc.OmniValidationError("400"), False),
        (exc.OmniConfigurationError("redirect"), False),
        (exc.OmniNotFoundError("404"), False),
        (requests.exceptions.InvalidURL("bad"), False),
        (KeyError("a bug"), False),
    ],
)
def test_which_failures_a_wait_rides_out(error, transient):
    from airflow_provider_omni.outcome import is_transient_error

    assert is_transient_error(error) is transient


def test_backoff_grows_is_capped_jittered_and_honours_retry_after():
    from airflow_provider_omni.outcome import backoff_delay

    delays = [backoff_delay(n, interval=0.0, first=1.0, cap=60.0, rng=lambda: 1.0) for n in range(1, 10)]
    assert delays[:4] == [1.0, 2.0, 4.0, 8.0] and max(delays) == 60.0
    assert backoff_delay(3, interval=0.0, first=1.0, cap=60.0, rng=lambda: 0.0) == 2.0  # half is jitter
    assert backoff_delay(1, interval=30.0, first=1.0, cap=60.0) == 30.0  # never sooner than the interval
    assert backoff_delay(1, interval=1.0, retry_after=20.0, first=1.0, cap=60.0) == 20.0


def test_error_text_hides_phone_numbers_but_not_ids():
    from airflow_provider_omni.outcome import safe_error_text

    text = safe_error_text(
        exc.OmniServerError("to=41793026727 and +41793026728 in dag.send.0123456789.-1.b1")
    )
    assert "41793026727" not in text and "41793026728" not in text
    assert "+4179****727" in text and "dag.send.0123456789.-1.b1" in text
    assert text.startswith("OmniServerError: ")


# -- the fingerprint of a send (item 6) ---------------------------------------------------------------


def test_the_fingerprint_tells_sends_apart():
    from airflow_provider_omni.outcome import send_fingerprint

    one = send_result(2, [("b1.0", "41790000001")])
    assert send_fingerprint([one]) == send_fingerprint([json.loads(json.dumps(one))])
    for change in (
        {"sent_at": 1_700_000_001.0},
        {"bulks": [{"bulk_id": "b2", "accepted": 2, "rejected": 1}]},
        {"bulks": [{"bulk_id": "b1", "accepted": 3, "rejected": 1}]},
        {"rejected": 0, "rejected_destinations": []},
        {"scenario_key": "other"},
    ):
        assert send_fingerprint([{**one, **change}]) != send_fingerprint([one]), change
    # an old XCom (without the new keys) has a fingerprint too
    old = {
        k: v for k, v in one.items() if k in ("scenario_key", "bulks", "rejected", "rejected_destinations")
    }
    assert send_fingerprint([old])


def test_the_detail_file_shows_an_accepted_delivered_to_operator_row_as_delivered():
    from airflow_provider_omni.outcome import detail_line

    row = report("41790000006", "SMS", TO_OPERATOR, "m6", model=OmniLog)
    assert detail_line(row, ("VIBER", "SMS"))["outcome"] == "PENDING"
    assert detail_line(row, ("VIBER", "SMS"), delivered_to_operator=Outcome.SMS_DELIVERED)["outcome"] == (
        "SMS_DELIVERED"
    )
    viber_row = report("41790000006", "VIBER", TO_OPERATOR, "m6", model=OmniLog)  # not the last step
    assert detail_line(viber_row, ("VIBER", "SMS"), delivered_to_operator=Outcome.SMS_DELIVERED)[
        "outcome"
    ] == ("PENDING")


def test_the_final_keys_of_a_bulk_behave_as_a_set_of_hex_keys_in_8_bytes_each() -> None:
    from array import array

    from airflow_provider_omni.outcome import _KeySet, _pack_keys, destination_key

    keys = [destination_key(f"4179302{i:04d}") for i in range(300)]
    held = _KeySet(keys[:100])
    for key in keys[50:200]:
        held.add(key)

    assert len(held) == 200 and list(held) == sorted(keys[:200])
    assert all(key in held for key in keys[:200]) and not any(key in held for key in keys[200:])
    assert 42 not in held
    again = _KeySet.from_packed(_pack_keys(held))
    assert list(again) == list(held)
    assert held._keys.itemsize == 8 and isinstance(held._keys, array)
    held.clear()
    assert len(held) == 0 and keys[0] not in held
