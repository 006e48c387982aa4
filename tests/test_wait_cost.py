"""What waiting costs in requests, counted by the sandbox: logs read once per bulk, and not at all when
nothing can have been consumed yet; rate limits waited out, not spun on."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
from test_sensor import (
    ALL_PERSONAS,
    EXPECTED_ALL,
    STATE_KEY,
    CrashingStore,
    FakeStateStore,
    logs_requests,
    make_sensor,
    merge,
    report_requests,
    send,
)
from test_trigger import events_of

from airflow_provider_omni.hooks.omni import OmniHook
from airflow_provider_omni.triggers.delivery_report import OmniDeliveryReportTrigger
from tests.airflow_compat import TaskDeferred

#: A full bulk: 1000 destinations, every persona digit 100 times (8: undeliverable, 9: silent).
FULL_BULK = [f"4179{i:07d}" for i in range(1000)]
FULL_BULK_OUTCOMES = {"VIBER_DELIVERED": 600, "SMS_DELIVERED": 200, "FAILED": 200, "PENDING": 0}


def first_try(store: FakeStateStore | None = None, try_number: int = 1) -> dict[str, Any]:
    """The parts of a task's context the sensor reads: its try number and, on 3.3, the state store."""
    context: dict[str, Any] = {"ti": SimpleNamespace(try_number=try_number)}
    if store is not None:
        context["task_state_store"] = store
    return context


def send_slow(hook: OmniHook, numbers: list[str], bulk_id: str = "wait.b1") -> dict[str, Any]:
    """Send with validities of an hour: nothing is final until the sandbox clock is advanced."""
    return send(hook, numbers, bulk_id, viber_validity=3600, sms_validity=3600)


# -- reading the logs: one request per bulk ---------------------------------------------------------------


def test_a_full_bulk_is_rebuilt_from_one_logs_request(omni_sandbox, omni_connection):
    result = send_slow(OmniHook(), FULL_BULK)
    omni_sandbox.admin.advance(hours=3)
    logs_before = logs_requests(omni_sandbox)
    # no ti, a store without state: the state may have been lost, so the logs are read
    sensor = make_sensor(send_result=result, logs_reconcile_interval=None)
    done = sensor.poke({"task_state_store": FakeStateStore()})
    assert done.is_done
    assert done.xcom_value["outcomes"] == FULL_BULK_OUTCOMES
    # one page of 1000 rows, one per destination, is the whole bulk (it used to be read 3 times)
    assert logs_requests(omni_sandbox) - logs_before == 1


async def test_the_trigger_reads_the_logs_once_per_bulk_at_start(omni_sandbox, omni_connection):
    hook = OmniHook()
    result = merge(send_slow(hook, FULL_BULK, "wait.b1"), send_slow(hook, FULL_BULK, "wait.b2"))
    sensor = make_sensor(send_result=result, deferrable=True, poke_interval=0.05, timeout=60)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(first_try(FakeStateStore()))
    assert logs_requests(omni_sandbox) == 0  # the worker's first poke of the first try read no logs
    assert report_requests(omni_sandbox) == 2  # one per bulk

    omni_sandbox.admin.advance(hours=3)
    events = await events_of(deferred.value.trigger)
    assert events[0].payload["status"] == "success"
    assert events[0].payload["summary"]["outcomes"] == {k: 2 * v for k, v in FULL_BULK_OUTCOMES.items()}
    assert logs_requests(omni_sandbox) == 2


# -- the first poke of the first try: nothing consumed yet, nothing to read ---------------------------------


def test_the_first_try_with_an_empty_state_store_reads_no_logs(omni_sandbox, omni_connection):
    result = send(OmniHook(), ALL_PERSONAS)
    store = FakeStateStore()
    summary = make_sensor(send_result=result).execute(first_try(store))
    assert summary["outcomes"] == EXPECTED_ALL
    assert summary["errors"] == {"EC_ABSENT_SUBSCRIBER": 1, "EC_VALIDITY_EXPIRED": 1}
    assert logs_requests(omni_sandbox) == 0
    assert store.get(STATE_KEY)["dirty"] is False


def test_the_first_try_without_a_state_store_reads_no_logs_unless_rescheduled(omni_sandbox, omni_connection):
    result = send_slow(OmniHook(), ALL_PERSONAS)
    poke_mode = make_sensor(send_result=result, logs_reconcile_interval=None)
    assert not poke_mode.poke(first_try()).is_done
    assert logs_requests(omni_sandbox) == 0
    # reschedule mode runs every poke in a new process of the same try: an earlier one may have consumed
    rescheduled = make_sensor(send_result=result, mode="reschedule", logs_reconcile_interval=None)
    assert not rescheduled.poke(first_try()).is_done
    assert logs_requests(omni_sandbox) == 1


def test_a_later_try_with_an_empty_state_store_rebuilds_from_the_logs(omni_sandbox, omni_connection):
    result = send_slow(OmniHook(), ALL_PERSONAS)
    omni_sandbox.admin.advance(seconds=30)
    first = make_sensor(send_result=result, logs_reconcile_interval=None)
    assert not first.poke(first_try(FakeStateStore())).is_done  # consumes the early reports
    omni_sandbox.admin.advance(hours=3)
    # try 2 finds an empty store (its state expired, or was cleared): the logs tell what try 1 consumed
    summary = make_sensor(send_result=result).execute(first_try(FakeStateStore(), try_number=2))
    assert summary["outcomes"] == EXPECTED_ALL
    assert logs_requests(omni_sandbox) == 1


def test_a_first_poke_killed_after_consuming_is_recovered_by_the_next_poke(omni_sandbox, omni_connection):
    result = send_slow(OmniHook(), ALL_PERSONAS)
    omni_sandbox.admin.advance(seconds=30)
    store = CrashingStore()  # keeps the mark written before consuming, then loses every write
    first = make_sensor(send_result=result, mode="reschedule", logs_reconcile_interval=None)
    assert not first.poke(first_try(store)).is_done
    assert store.get(STATE_KEY) == {"dirty": True}
    assert omni_sandbox.admin.stats()["reports_handed_out"] >= 9
    assert logs_requests(omni_sandbox) == 0

    omni_sandbox.admin.advance(hours=3)
    # the next poke of the same try (a reschedule) must not trust the empty-looking store
    second = make_sensor(send_result=result, mode="reschedule", logs_reconcile_interval=None)
    done = second.poke(first_try(store))
    assert done.is_done
    assert done.xcom_value["outcomes"] == EXPECTED_ALL
    assert logs_requests(omni_sandbox) == 1


# -- rate limits: waited out, never spun on ------------------------------------------------------------------


async def test_the_logs_rate_limit_is_waited_out_at_the_triggers_start(omni_sandbox, omni_connection):
    hook = OmniHook()
    buckets = {}
    for n in range(5):
        send(hook, ALL_PERSONAS[:2], f"wait.b{n}")
        buckets[f"wait.b{n}"] = 2
    omni_sandbox.admin.advance(hours=1)
    # two logs requests per second (Infobip: 120 a minute), five bulks to read at start
    omni_sandbox.admin.configure(rate_limits={"logs": [2, 1.0]})
    events = await events_of(
        OmniDeliveryReportTrigger(
            buckets=buckets, omni_conn_id="omni_default", poll_interval=0.05, end_time=time.time() + 60
        )
    )
    assert events[0].payload["status"] == "success"
    assert events[0].payload["summary"]["outcomes"]["VIBER_DELIVERED"] == 10
    stats = omni_sandbox.admin.stats()
    refused = stats["rate_limited"].get("logs", 0)
    assert refused >= 1  # the limit was hit ...
    assert stats["requests"]["logs"] - refused == 5  # ... and each bulk's logs were read once
    assert refused <= 5  # each refused request waited for its Retry-After, no retry storm
