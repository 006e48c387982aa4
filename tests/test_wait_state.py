"""The wait against the sandbox: stored state of another send, refused-at-send destinations, statuses
that used to never end the wait, and the flow read from the scenario."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
from test_sensor import ALL_PERSONAS, STATE_KEY, FakeStateStore, make_sensor, send
from test_trigger import events_of

from airflow_provider_omni.hooks.omni import OmniHook
from airflow_provider_omni.models import is_refused_at_send
from airflow_provider_omni.triggers.delivery_report import OmniDeliveryReportTrigger
from tests.airflow_compat import TaskDeferred

VIBER_ONLY = [{"channel": "VIBER", "from": "InfoSMS"}]
SMS_ONLY = [{"channel": "SMS", "from": "InfoSMS"}]
NO_PENDING = {"VIBER_DELIVERED": 0, "SMS_DELIVERED": 0, "FAILED": 0, "PENDING": 0}


def context(store: FakeStateStore | None, try_number: int = 1, max_tries: int = 0) -> dict[str, Any]:
    ctx: dict[str, Any] = {"ti": SimpleNamespace(try_number=try_number, max_tries=max_tries)}
    if store is not None:
        ctx["task_state_store"] = store
    return ctx


def outcomes(**counts: int) -> dict[str, int]:
    return {**NO_PENDING, **counts}


def send_xcom(
    hook: OmniHook,
    destinations: list[tuple[str, str]],
    bulk_id: str,
    *,
    key: str | None,
    validity: int = 3600,
) -> dict[str, Any]:
    """Send ``(message id, number)`` pairs and return the send operator's XCom (the new contract)."""
    sent_at = time.time()
    response = hook.send_advanced(
        {
            **({"scenarioKey": key} if key else {}),
            "bulkId": bulk_id,
            "destinations": [{"messageId": m, "to": {"phoneNumber": n}} for m, n in destinations],
            "viber": {"text": "Hello", "validityPeriod": validity, "validityPeriodTimeUnit": "SECONDS"},
            "sms": {"text": "Hello", "validityPeriod": validity, "validityPeriodTimeUnit": "SECONDS"},
        }
    )
    refused = [m for m in response.messages if is_refused_at_send(m.status)]
    numbers = dict(destinations)
    return {
        "scenario_key": key,
        "namespace": "tests",
        "send_key": bulk_id,
        "bulks": [
            {"bulk_id": bulk_id, "accepted": len(destinations) - len(refused), "rejected": len(refused)}
        ],
        "total": len(destinations),
        "accepted": len(destinations) - len(refused),
        "rejected": len(refused),
        "rejected_destinations": [
            {
                "to": "+" + numbers[m.message_id][:4] + "****" + numbers[m.message_id][-3:],
                "message_id": m.message_id,
                "status": m.status.name if m.status else "REJECTED",
                "bulk_id": bulk_id,
            }
            for m in refused
        ],
        "removed": 0,
        "message_ids": None,
        "to_by_message_id_truncated": True,
        "sent_at": sent_at,
    }


# -- item 6: the stored state of another send ---------------------------------------------------------


def test_a_cleared_sensor_does_not_answer_with_the_previous_sends_summary(omni_sandbox, omni_connection):
    hook = OmniHook()
    store = FakeStateStore()
    run1 = send(hook, ["41793026728", "41793026729"], "wait.run1")
    omni_sandbox.admin.advance(hours=3)
    assert make_sensor(send_result=run1).execute(context(store))["outcomes"] == outcomes(FAILED=2)

    # the send and the sensor are cleared; the send now goes to Viber users; the store outlived the clear
    run2 = send(hook, ["41793026720", "41793026721"], "wait.run2")
    omni_sandbox.admin.advance(minutes=5)
    summary = make_sensor(send_result=run2).execute(context(store, try_number=2, max_tries=1))
    assert summary["outcomes"] == outcomes(VIBER_DELIVERED=2)
    assert summary["bulks"] == ["wait.run2"]
    assert summary["failed"] == []


def test_execute_complete_ignores_the_stored_state_of_another_send(omni_sandbox, omni_connection):
    hook = OmniHook()
    store = FakeStateStore()
    hook.get_or_create_scenario("wait-tests", [*VIBER_ONLY, *SMS_ONLY])  # the default scenario
    run1 = send_xcom(hook, [("r1.0", "41793026728")], "wait.run1", key=None, validity=40)
    run1["rejected"] = 1  # pretend one more destination was refused in run 1
    run1["bulks"][0]["rejected"] = 1
    run1["rejected_destinations"] = [
        {"to": "+4179****999", "message_id": "r1.x", "status": "REJECTED_DESTINATION", "bulk_id": "wait.run1"}
    ]
    omni_sandbox.admin.advance(hours=3)
    assert make_sensor(send_result=run1).execute(context(store))["rejected_at_send"] == 1

    run2 = send_xcom(hook, [("r2.0", "41793026720")], "wait.run2", key=None)
    event = {
        "status": "success",
        "message": "all destinations final",
        "summary": {
            "outcomes": outcomes(VIBER_DELIVERED=1),
            "total": 1,
            "all_final": True,
            "price": {"EUR": 0.005},
            "bulks": ["wait.run2"],
            "failed": [],
            "errors": {},
            "rejected_at_send": 0,
            "detail_path": None,
            "timed_out": False,
        },
    }
    summary = make_sensor(send_result=run2).execute_complete(context(store, 2, 1), event)
    assert summary["outcomes"] == outcomes(VIBER_DELIVERED=1)
    assert summary["rejected_at_send"] == 0 and summary["failed"] == [] and summary["errors"] == {}


# -- item 7: refused at send --------------------------------------------------------------------------


def _refused_and_silent(omni_sandbox: Any, hook: OmniHook) -> tuple[str, dict[str, Any]]:
    """An SMS-only send: wait.b1.0 refused at send (a message id used before), wait.b1.1 silent."""
    omni_sandbox.admin.configure(reject_duplicate_message_ids=True)
    key = hook.get_or_create_scenario("sms-only", SMS_ONLY).key
    send_xcom(hook, [("wait.b1.0", "41793026720")], "earlier", key=key)
    result = send_xcom(
        hook, [("wait.b1.0", "41793026721"), ("wait.b1.1", "41793026729")], "wait.b1", key=key, validity=86400
    )
    assert result["rejected"] == 1 and result["bulks"][0]["accepted"] == 1
    return key, result


def test_a_refused_destination_is_not_counted_twice_and_the_pending_one_is_waited_for(
    omni_sandbox, omni_connection
):
    hook = OmniHook()
    _, result = _refused_and_silent(omni_sandbox, hook)
    omni_sandbox.admin.advance(seconds=30)
    store = FakeStateStore()
    sensor = make_sensor(send_result=result, flow=["SMS"], logs_reconcile_interval=None)
    first = sensor.poke(context(store))
    assert not first.is_done  # the silent destination is still pending
    assert sensor._tracker is not None and sensor._tracker.counts() == outcomes(FAILED=1, PENDING=1)

    omni_sandbox.admin.advance(hours=30)
    summary = make_sensor(send_result=result, flow=["SMS"]).execute(context(store))
    assert summary["outcomes"] == outcomes(FAILED=2)
    assert summary["total"] == 2 and summary["rejected_at_send"] == 1
    assert sorted(f["message_id"] for f in summary["failed"]) == ["wait.b1.0", "wait.b1.1"]
    assert summary["errors"] == {"REJECTED_AT_SEND": 1, "EC_VALIDITY_EXPIRED": 1}


async def test_the_trigger_does_not_count_a_refused_destination_either(omni_sandbox, omni_connection):
    hook = OmniHook()
    _, result = _refused_and_silent(omni_sandbox, hook)
    omni_sandbox.admin.advance(seconds=30)
    store = FakeStateStore()
    sensor = make_sensor(send_result=result, flow=["SMS"], deferrable=True, timeout=60)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context(store))
    # the trigger is rebuilt from its serialized form (as the triggerer does), long before the end
    kwargs = deferred.value.trigger.serialize()[1]
    early = await events_of(OmniDeliveryReportTrigger(**{**kwargs, "end_time": time.time() + 0.5}))
    assert early[0].payload["status"] == "timeout"
    assert early[0].payload["summary"]["outcomes"]["PENDING"] == 1

    omni_sandbox.admin.advance(hours=30)
    events = await events_of(OmniDeliveryReportTrigger(**kwargs))
    assert events[0].payload["status"] == "success"
    summary = make_sensor(send_result=result, flow=["SMS"]).execute_complete(
        context(store), events[0].payload
    )
    assert summary["outcomes"] == outcomes(FAILED=2)
    assert sorted(f["message_id"] for f in summary["failed"]) == ["wait.b1.0", "wait.b1.1"]


# -- item 8: statuses that never ended the wait ------------------------------------------------------


def test_a_viber_rejection_ends_the_wait(omni_sandbox, omni_connection):
    hook = OmniHook()
    omni_sandbox.admin.configure(reject_duplicate_message_ids=True)
    key = hook.get_or_create_scenario("wait-tests", [*VIBER_ONLY, *SMS_ONLY]).key
    send_xcom(hook, [("wait.b1.0", "41793026720")], "earlier", key=key)
    # bulk ids alone: nothing says that wait.b1.0 was refused; its Viber report says REJECTED
    send_xcom(hook, [("wait.b1.0", "41793026721"), ("wait.b1.1", "41793026722")], "wait.b1", key=key)
    summary = make_sensor(bulk_ids={"wait.b1": 2}, timeout=20).execute(context(FakeStateStore()))
    assert summary["outcomes"] == outcomes(VIBER_DELIVERED=1, FAILED=1)
    assert summary["failed"][0]["status"] == "REJECTED_DUPLICATE_MESSAGE_ID"
    assert summary["failed"][0]["channel"] == "VIBER"


def _operator_only(omni_sandbox: Any, hook: OmniHook) -> dict[str, Any]:
    """An SMS-only send whose handset report never comes in time: DELIVERED_TO_OPERATOR only."""
    omni_sandbox.admin.configure(report_style="intermediate", delivery_delay=[4000, 4000], time_scale=0)
    key = hook.get_or_create_scenario("sms-only", SMS_ONLY).key
    result = send_xcom(hook, [("wait.b1.0", "41793026720")], "wait.b1", key=key, validity=86400)
    omni_sandbox.admin.advance(seconds=2100)  # DELIVERED_TO_OPERATOR at 2000 s, the handset at 4000 s
    return result


def test_delivered_to_operator_is_accepted_after_the_given_time(omni_sandbox, omni_connection):
    result = _operator_only(omni_sandbox, OmniHook())
    started = time.monotonic()
    summary = make_sensor(send_result=result, accept_delivered_to_operator_after=0.5, timeout=20).execute(
        context(FakeStateStore())
    )
    assert summary["outcomes"] == outcomes(SMS_DELIVERED=1)
    assert 0.5 <= time.monotonic() - started < 10


def test_delivered_to_operator_first_seen_survives_a_new_process(omni_sandbox, omni_connection):
    result = _operator_only(omni_sandbox, OmniHook())
    store = FakeStateStore()
    first = make_sensor(send_result=result, accept_delivered_to_operator_after=3.0, mode="reschedule")
    assert not first.poke(context(store)).is_done  # consumed the DELIVERED_TO_OPERATOR report
    time.sleep(3.1)
    # a reschedule: a new process; the report is gone, the logs say PENDING; the store remembers
    second = make_sensor(send_result=result, accept_delivered_to_operator_after=3.0, mode="reschedule")
    done = second.poke(context(store))
    assert done.is_done and done.xcom_value["outcomes"] == outcomes(SMS_DELIVERED=1)


async def test_delivered_to_operator_first_seen_survives_the_deferral(omni_sandbox, omni_connection):
    result = _operator_only(omni_sandbox, OmniHook())
    sensor = make_sensor(
        send_result=result, accept_delivered_to_operator_after=3.0, deferrable=True, timeout=30
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context(FakeStateStore()))
    time.sleep(3.1)
    started = time.monotonic()
    kwargs = deferred.value.trigger.serialize()[1]
    events = await events_of(OmniDeliveryReportTrigger(**kwargs))  # also what a triggerer restart runs
    assert events[0].payload["status"] == "success"
    assert events[0].payload["summary"]["outcomes"] == outcomes(SMS_DELIVERED=1)
    assert time.monotonic() - started < 2.5  # the trigger did not start the 3 s again


@pytest.mark.parametrize("default_scenario", [False, True], ids=["scenario-key", "default-scenario"])
def test_the_flow_comes_from_the_scenario_of_the_send(omni_sandbox, omni_connection, default_scenario):
    hook = OmniHook()
    key = hook.get_or_create_scenario("viber-only", VIBER_ONLY).key  # the first one is the default
    hook.get_or_create_scenario("viber-then-sms", [*VIBER_ONLY, *SMS_ONLY])
    # no Viber: the Viber step fails, and in this scenario nothing follows it
    result = send_xcom(hook, [("wait.b1.0", "41793026726")], "wait.b1", key=None if default_scenario else key)
    store = FakeStateStore()
    before = omni_sandbox.admin.stats()["requests"]
    summary = make_sensor(send_result=result, timeout=20).execute(context(store))
    assert summary["outcomes"] == outcomes(FAILED=1)
    assert summary["failed"][0]["channel"] == "VIBER"
    # read once, then kept in the store: a new process that must rebuild (its state is dirty) asks no more
    header = store.get(STATE_KEY)
    store.set(STATE_KEY, {**header, "dirty": True})
    again = make_sensor(send_result=result, timeout=20).execute(context(store, try_number=2))
    assert again["outcomes"] == outcomes(FAILED=1)
    after = omni_sandbox.admin.stats()["requests"]
    lookups = {k: after.get(k, 0) - before.get(k, 0) for k in ("scenarios.get", "scenarios.list")}
    if default_scenario:
        assert lookups == {"scenarios.get": 0, "scenarios.list": 1}
    else:
        assert lookups == {"scenarios.get": 1, "scenarios.list": 0}


def test_an_explicit_flow_is_not_looked_up(omni_sandbox, omni_connection):
    hook = OmniHook()
    key = hook.get_or_create_scenario("viber-only", VIBER_ONLY).key
    result = send_xcom(hook, [("wait.b1.0", "41793026720")], "wait.b1", key=key)
    summary = make_sensor(send_result=result, flow=["VIBER"]).execute(context(FakeStateStore()))
    assert summary["outcomes"] == outcomes(VIBER_DELIVERED=1)
    assert omni_sandbox.admin.stats()["requests"].get("scenarios.get", 0) == 0


def test_the_flow_reaches_the_trigger(omni_sandbox, omni_connection):
    hook = OmniHook()
    key = hook.get_or_create_scenario("viber-only", VIBER_ONLY).key
    result = send_xcom(hook, [("wait.b1.0", "41793026729")], "wait.b1", key=key)
    with pytest.raises(TaskDeferred) as deferred:
        make_sensor(send_result=result, deferrable=True).execute(context(FakeStateStore()))
    assert deferred.value.trigger.flow == ["VIBER"]


def test_every_persona_with_the_scenario_flow(omni_sandbox, omni_connection):
    result = send(OmniHook(), ALL_PERSONAS)  # scenario_key None: the default scenario, Viber then SMS
    summary = make_sensor(send_result=result).execute(context(FakeStateStore()))
    assert summary["outcomes"] == outcomes(VIBER_DELIVERED=6, SMS_DELIVERED=2, FAILED=2)
