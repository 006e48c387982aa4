"""OmniDeliveryReportSensor against the OMNI sandbox: personas, report styles, state, timeouts."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from airflow_provider_omni.hooks.omni import OmniHook
from airflow_provider_omni.sensors.delivery_report import STATE_KEY, WAIT_KEY, OmniDeliveryReportSensor
from airflow_provider_omni.triggers.delivery_report import OmniDeliveryReportTrigger
from tests.airflow_compat import HAS_TASK_STATE_STORE, AirflowSensorTimeout, TaskDeferred

FLOW = [{"channel": "VIBER", "from": "InfoSMS"}, {"channel": "SMS", "from": "InfoSMS"}]
#: One number per persona digit 0..9 (0-5 Viber user, 6-7 no Viber, 8 unreachable, 9 silent).
ALL_PERSONAS = [f"4179302672{d}" for d in range(10)]
EXPECTED_ALL = {"VIBER_DELIVERED": 6, "SMS_DELIVERED": 2, "FAILED": 2, "PENDING": 0}


# -- helpers shared with the other test modules of the sensor, trigger and branch ------------------------


class FakeStateStore:
    """What the sensor uses of Airflow 3.3's ``task_state_store``, JSON round-tripped like the real one."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.writes = 0

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(self.data[key]) if key in self.data else default

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        self.writes += 1
        self.data[key] = json.dumps(value)

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


def scenario_key(hook: OmniHook) -> str:
    return hook.get_or_create_scenario("wait-tests", FLOW).key


def send(
    hook: OmniHook,
    numbers: list[str],
    bulk_id: str = "wait.b1",
    *,
    viber_validity: int = 35,
    sms_validity: int = 30,
    key: str | None = None,
) -> dict[str, Any]:
    """Send to ``numbers`` with the hook and return the send operator's XCom (contract 3) for it."""
    response = hook.send_advanced(
        {
            "scenarioKey": key or scenario_key(hook),
            "bulkId": bulk_id,
            "destinations": [
                {"messageId": f"{bulk_id}.{i}", "to": {"phoneNumber": n}} for i, n in enumerate(numbers)
            ],
            "viber": {"text": "Hello", "validityPeriod": viber_validity, "validityPeriodTimeUnit": "SECONDS"},
            "sms": {"text": "Hello", "validityPeriod": sms_validity, "validityPeriodTimeUnit": "SECONDS"},
        }
    )
    accepted = sum(1 for m in response.messages if m.status and m.status.group_id in (0, 1))
    return {
        "scenario_key": key,
        "bulks": [{"bulk_id": bulk_id, "accepted": accepted, "rejected": len(numbers) - accepted}],
        "total": len(numbers),
        "accepted": accepted,
        "rejected": len(numbers) - accepted,
        "rejected_destinations": [],
        "message_ids": {m.message_id: m.to.phone_number for m in response.messages if m.to},
        "to_by_message_id_truncated": False,
    }


def merge(*results: dict[str, Any]) -> dict[str, Any]:
    """One send XCom for several bulks."""
    return {
        "scenario_key": results[0]["scenario_key"],
        "bulks": [b for r in results for b in r["bulks"]],
        "total": sum(r["total"] for r in results),
        "accepted": sum(r["accepted"] for r in results),
        "rejected": sum(r["rejected"] for r in results),
        "rejected_destinations": [],
        "message_ids": None,
        "to_by_message_id_truncated": False,
    }


def make_sensor(**kwargs: Any) -> OmniDeliveryReportSensor:
    kwargs.setdefault("task_id", "wait")
    kwargs.setdefault("poke_interval", 0.05)
    kwargs.setdefault("timeout", 60)
    kwargs.setdefault("mode", "poke")
    kwargs.setdefault("deferrable", False)
    return OmniDeliveryReportSensor(**kwargs)


def report_requests(sandbox: Any) -> int:
    return sandbox.admin.stats()["requests"].get("reports", 0)


def logs_requests(sandbox: Any) -> int:
    return sandbox.admin.stats()["requests"].get("logs", 0)


# -- outcomes -----------------------------------------------------------------------------------------------


def test_each_persona_ends_with_its_outcome(omni_sandbox, omni_connection):
    result = send(OmniHook(), ALL_PERSONAS)
    summary = make_sensor(send_result=result).execute({"task_state_store": FakeStateStore()})

    assert summary["outcomes"] == EXPECTED_ALL
    assert summary["total"] == 10 and summary["all_final"] and not summary["timed_out"]
    assert summary["bulks"] == ["wait.b1"]
    # 6 Viber messages at 0.005 EUR, 3 SMS at 0.01 (the expired one is free)
    assert summary["price"] == {"EUR": pytest.approx(0.06)}
    failed = {f["to"]: f for f in summary["failed"]}
    assert failed["+4179****728"] == {
        "to": "+4179****728",
        "bulk_id": "wait.b1",
        "message_id": "wait.b1.8",
        "channel": "SMS",
        "status": "UNDELIVERABLE_NOT_DELIVERED",
        "error": "EC_ABSENT_SUBSCRIBER",
        "permanent": False,
    }
    assert failed["+4179****729"]["status"] == "EXPIRED_EXPIRED"
    assert failed["+4179****729"]["error"] == "EC_VALIDITY_EXPIRED"
    assert summary["errors"] == {"EC_ABSENT_SUBSCRIBER": 1, "EC_VALIDITY_EXPIRED": 1}


@pytest.mark.parametrize(
    "style",
    [
        "final",
        "per_step",
        "fallback_new_message_id",
        "intermediate",
        ["per_step", "fallback_new_message_id", "intermediate"],
    ],
)
def test_every_report_style_gives_the_same_outcomes(omni_sandbox, omni_connection, style):
    omni_sandbox.admin.configure(report_style=style)
    result = send(OmniHook(), ALL_PERSONAS)
    summary = make_sensor(send_result=result).execute({"task_state_store": FakeStateStore()})
    assert summary["outcomes"] == EXPECTED_ALL
    assert summary["price"] == {"EUR": pytest.approx(0.06)}


def test_intermediate_and_viber_failure_reports_do_not_end_the_wait(omni_sandbox, omni_connection):
    omni_sandbox.admin.configure(report_style=["per_step", "intermediate"], time_scale=0)
    # Viber (no Viber: fails at once) and SMS validity of an hour: the SMS of the silent one stays pending
    hook = OmniHook()
    result = send(hook, ["41793026726", "41793026729"], viber_validity=3600, sms_validity=3600)
    sensor = make_sensor(send_result=result, logs_reconcile_interval=None)
    context = {"task_state_store": FakeStateStore()}
    omni_sandbox.admin.advance(seconds=30)
    first = sensor.poke(context)
    assert not first.is_done
    assert report_requests(omni_sandbox) == 1
    # the PENDING / DELIVERED_TO_OPERATOR / failed-Viber reports were consumed without ending anything
    assert sensor._tracker is not None and sensor._tracker.counts()["SMS_DELIVERED"] == 1
    assert sensor._tracker.counts()["PENDING"] == 1
    omni_sandbox.admin.advance(hours=3)
    done = sensor.poke(context)
    assert done.is_done
    assert done.xcom_value["outcomes"] == {
        "VIBER_DELIVERED": 0,
        "SMS_DELIVERED": 1,
        "FAILED": 1,
        "PENDING": 0,
    }


# -- consuming reports carefully ---------------------------------------------------------------------------


def test_only_the_awaited_bulk_is_consumed(omni_sandbox, omni_connection):
    omni_sandbox.admin.configure(time_scale=0)  # only advance() moves time: pending stays pending
    hook = OmniHook()
    key = scenario_key(hook)
    mine = send(hook, ["41793026720", "41793026729"], "wait.mine", viber_validity=3600, key=key)
    send(hook, ALL_PERSONAS[:4], "other.consumer", key=key)
    omni_sandbox.admin.advance(seconds=30)
    sensor = make_sensor(send_result=mine, logs_reconcile_interval=None)
    store = {"task_state_store": FakeStateStore()}
    assert not sensor.poke(store).is_done
    omni_sandbox.admin.advance(hours=3)
    assert sensor.execute(store)["outcomes"]["FAILED"] == 1
    assert report_requests(omni_sandbox) >= 2
    theirs = hook.get_reports(bulk_id="other.consumer")
    assert len(theirs) == 4
    assert {r.bulk_id for r in theirs} == {"other.consumer"}


def test_at_most_one_report_request_per_unfinished_bulk_per_poke(omni_sandbox, omni_connection):
    omni_sandbox.admin.configure(time_scale=0)  # only advance() moves time: pending stays pending
    hook = OmniHook()
    key = scenario_key(hook)
    done_bulk = send(hook, ALL_PERSONAS[:3], "wait.quick", key=key)
    slow_bulks = [
        send(hook, ["41793026729"], f"wait.slow{n}", viber_validity=3600, sms_validity=3600, key=key)
        for n in range(2)
    ]
    omni_sandbox.admin.advance(seconds=30)
    sensor = make_sensor(send_result=merge(done_bulk, *slow_bulks), logs_reconcile_interval=None)
    context = {"task_state_store": FakeStateStore()}
    before = report_requests(omni_sandbox)
    assert not sensor.poke(context).is_done
    # the quick bulk was found final in the logs at start: only the two slow bulks were asked for
    assert report_requests(omni_sandbox) - before == 2
    assert not sensor.poke(context).is_done
    assert report_requests(omni_sandbox) - before == 4


def test_a_new_process_restores_what_was_consumed_without_reading_logs(omni_sandbox, omni_connection):
    omni_sandbox.admin.configure(time_scale=0)  # only advance() moves time: pending stays pending
    hook = OmniHook()
    result = send(hook, ["41793026720", "41793026729"], viber_validity=3600, sms_validity=3600)
    omni_sandbox.admin.advance(seconds=30)
    store = FakeStateStore()
    first = make_sensor(send_result=result, logs_reconcile_interval=None)
    assert not first.poke({"task_state_store": store}).is_done  # consumes the Viber delivery
    assert store.get(STATE_KEY)["dirty"] is False
    logs_before = logs_requests(omni_sandbox)

    omni_sandbox.admin.advance(hours=3)
    second = make_sensor(send_result=result, logs_reconcile_interval=None)  # a reschedule: a new process
    done = second.poke({"task_state_store": store})
    assert done.is_done
    assert done.xcom_value["outcomes"] == {
        "VIBER_DELIVERED": 1,
        "SMS_DELIVERED": 0,
        "FAILED": 1,
        "PENDING": 0,
    }
    assert logs_requests(omni_sandbox) == logs_before


def _consume_some(omni_sandbox: Any, store: FakeStateStore) -> dict[str, Any]:
    """Send to every persona with long validities and let a first sensor consume the early reports."""
    omni_sandbox.admin.configure(time_scale=0)  # only advance() moves time: pending stays pending
    hook = OmniHook()
    result = send(hook, ALL_PERSONAS, viber_validity=3600, sms_validity=3600)
    omni_sandbox.admin.advance(seconds=30)
    first = make_sensor(send_result=result, logs_reconcile_interval=None)
    assert not first.poke({"task_state_store": store}).is_done  # consumed 9 reports, the silent one pends
    omni_sandbox.admin.advance(hours=3)
    return result


def test_without_stored_state_the_consumed_reports_are_rebuilt_from_the_logs(omni_sandbox, omni_connection):
    result = _consume_some(omni_sandbox, FakeStateStore())
    # a retry whose state is gone still finds every outcome: the consumed ones in the logs
    summary = make_sensor(send_result=result).execute({"task_state_store": FakeStateStore()})
    assert summary["outcomes"] == EXPECTED_ALL
    # logs have no error object: the failure consumed by the first sensor has an unknown error
    assert summary["errors"] == {"UNKNOWN": 1, "EC_VALIDITY_EXPIRED": 1}


class CrashingStore(FakeStateStore):
    """A store whose writes stop after the poke said it is about to consume (a worker killed mid-poke)."""

    crashed = False

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        if self.crashed:
            return
        super().set(key, value, retention=retention)
        if key == STATE_KEY and value.get("dirty"):
            self.crashed = True


def test_a_crash_in_the_middle_of_a_poke_is_recovered_from_the_logs(omni_sandbox, omni_connection):
    store = CrashingStore()
    store.set(STATE_KEY, {"dirty": False, "state": None})  # pretend an earlier poke saved a state
    store.crashed = False
    result = _consume_some(omni_sandbox, store)
    assert store.get(STATE_KEY)["dirty"] is True
    logs_before = logs_requests(omni_sandbox)
    summary = make_sensor(send_result=result).execute({"task_state_store": store})
    assert summary["outcomes"] == EXPECTED_ALL
    assert logs_requests(omni_sandbox) > logs_before


def test_reports_lost_by_a_failed_answer_are_found_in_the_logs(omni_sandbox, omni_connection):
    hook = OmniHook()
    result = send(hook, ALL_PERSONAS)
    omni_sandbox.admin.advance(hours=1)
    # the server hands the reports out, then the answer fails: they are gone for everyone
    omni_sandbox.admin.add_fault(endpoint="reports", status=500, times=1, process=True)
    sensor = make_sensor(send_result=result, logs_reconcile_interval=0)
    summary = sensor.execute({"task_state_store": FakeStateStore()})
    assert summary["outcomes"] == EXPECTED_ALL


def test_rejected_destinations_of_the_send_count_as_failed(omni_sandbox, omni_connection):
    result = send(OmniHook(), ALL_PERSONAS[:2])
    result["rejected"] = 1
    result["total"] = 3
    result["rejected_destinations"] = [
        {"to": "+4179****999", "message_id": "x", "status": "REJECTED_DESTINATION"}
    ]
    summary = make_sensor(send_result=result).execute({"task_state_store": FakeStateStore()})
    assert summary["outcomes"] == {"VIBER_DELIVERED": 2, "SMS_DELIVERED": 0, "FAILED": 1, "PENDING": 0}
    assert summary["rejected_at_send"] == 1


def test_bulk_ids_without_sizes_take_them_from_the_logs(omni_sandbox, omni_connection):
    send(OmniHook(), ALL_PERSONAS)
    summary = make_sensor(bulk_ids=["wait.b1"]).execute({})
    assert summary["outcomes"] == EXPECTED_ALL


def test_message_ids(omni_sandbox, omni_connection):
    send(OmniHook(), ALL_PERSONAS[:3])
    summary = make_sensor(message_ids=["wait.b1.0", "wait.b1.2"]).execute({})
    assert summary["outcomes"]["VIBER_DELIVERED"] == 2 and summary["total"] == 2


def test_send_result_rendered_as_text_is_accepted(omni_sandbox, omni_connection):
    result = send(OmniHook(), ALL_PERSONAS[:2])
    summary = make_sensor(send_result=repr(result)).execute({})
    assert summary["outcomes"]["VIBER_DELIVERED"] == 2


def test_exactly_one_target_is_required():
    with pytest.raises(ValueError, match="exactly one"):
        OmniDeliveryReportSensor(task_id="w", bulk_ids=["a"], message_ids=["b"])
    with pytest.raises(ValueError, match="exactly one"):
        OmniDeliveryReportSensor(task_id="w")


# -- detail file --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("as_url", [False, True], ids=["local-path", "object-storage-url"])
def test_detail_path_gets_one_json_line_per_destination(omni_sandbox, omni_connection, tmp_path, as_url):
    result = send(OmniHook(), ALL_PERSONAS)
    path = tmp_path / "out" / "detail.jsonl"
    if as_url:
        path.parent.mkdir()
    target = f"file://{path}" if as_url else str(path)
    summary = make_sensor(send_result=result, detail_path=target, failed_cap=1).execute(
        {"task_state_store": FakeStateStore()}
    )
    assert summary["detail_path"] == target
    assert len(summary["failed"]) == 1  # capped in the XCom ...
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 10  # ... complete in the file
    outcomes = {line["to"]: line["outcome"] for line in lines}
    assert outcomes["+4179****726"] == "SMS_DELIVERED" and outcomes["+4179****728"] == "FAILED"
    assert all("*" in line["to"] for line in lines)


# -- timeouts ------------------------------------------------------------------------------------------------


def test_timeout_fails_by_default(omni_sandbox, omni_connection):
    result = send(OmniHook(), ["41793026729"], viber_validity=3600, sms_validity=3600)
    with pytest.raises(AirflowSensorTimeout):
        make_sensor(send_result=result, timeout=0.2).execute({"task_state_store": FakeStateStore()})


def test_succeed_on_timeout_counts_the_pending(omni_sandbox, omni_connection):
    result = send(OmniHook(), ["41793026720", "41793026729"], viber_validity=3600, sms_validity=3600)
    summary = make_sensor(send_result=result, timeout=0.3, succeed_on_timeout=True).execute(
        {"task_state_store": FakeStateStore()}
    )
    assert summary["timed_out"] is True and summary["all_final"] is False
    assert summary["outcomes"] == {"VIBER_DELIVERED": 1, "SMS_DELIVERED": 0, "FAILED": 0, "PENDING": 1}


# -- deferrable ---------------------------------------------------------------------------------------------


def test_deferrable_returns_at_once_when_already_done(omni_sandbox, omni_connection):
    result = send(OmniHook(), ALL_PERSONAS)
    omni_sandbox.admin.advance(hours=1)
    summary = make_sensor(send_result=result, deferrable=True).execute({"task_state_store": FakeStateStore()})
    assert summary["outcomes"] == EXPECTED_ALL


def test_deferrable_defers_with_a_small_trigger(omni_sandbox, omni_connection):
    result = send(OmniHook(), ["41793026729"], viber_validity=3600, sms_validity=3600)
    store = FakeStateStore()
    with pytest.raises(TaskDeferred) as deferred:
        make_sensor(send_result=result, deferrable=True, timeout=100).execute({"task_state_store": store})
    trigger = deferred.value.trigger
    assert isinstance(trigger, OmniDeliveryReportTrigger)
    assert trigger.buckets == {"wait.b1": 1}
    assert deferred.value.method_name == "execute_complete"
    # the trigger will consume reports: the stored state must not be trusted alone any more
    assert store.get(STATE_KEY)["dirty"] is True


def test_without_a_state_store_a_deferrable_wait_leaves_every_report_to_the_trigger(
    omni_sandbox, omni_connection
):
    """Airflow before 3.3 has no task state store: a report consumed before deferring would be lost
    (reports are handed out once), so the task reads only the logs and defers."""
    result = send(OmniHook(), ["41793026720", "41793026729"], viber_validity=3600, sms_validity=3600)
    omni_sandbox.admin.advance(seconds=30)  # the Viber user's report is ready
    with pytest.raises(TaskDeferred) as deferred:
        make_sensor(send_result=result, deferrable=True, timeout=100).execute({})
    assert report_requests(omni_sandbox) == 0
    assert logs_requests(omni_sandbox) >= 1
    # the trigger gets the whole wait, the Viber user's delivery included
    event = asyncio.run(_first_event(deferred.value.trigger))
    assert event.payload["summary"]["outcomes"]["VIBER_DELIVERED"] == 1
    # with a store, the same first poke consumes the ready report before deferring
    second = send(
        OmniHook(), ["41793026720", "41793026729"], viber_validity=3600, sms_validity=3600, bulk_id="wait.b2"
    )
    omni_sandbox.admin.advance(seconds=30)
    before = report_requests(omni_sandbox)
    with pytest.raises(TaskDeferred):
        make_sensor(send_result=second, deferrable=True, timeout=100).execute(
            {"task_state_store": FakeStateStore()}
        )
    assert report_requests(omni_sandbox) == before + 1


async def _first_event(trigger: OmniDeliveryReportTrigger) -> Any:
    async for event in trigger.run():
        return event
    raise AssertionError("the trigger ended without an event")


def _event(status: str, summary: dict[str, Any] | None) -> dict[str, Any]:
    return {"status": status, "summary": summary, "message": "m"}


def _summary(**outcomes: int) -> dict[str, Any]:
    counts = {"VIBER_DELIVERED": 0, "SMS_DELIVERED": 0, "FAILED": 0, "PENDING": 0, **outcomes}
    return {
        "outcomes": counts,
        "total": sum(counts.values()),
        "all_final": counts["PENDING"] == 0,
        "price": {},
        "bulks": ["b"],
        "failed": [],
        "errors": {},
        "rejected_at_send": 0,
        "detail_path": None,
        "timed_out": bool(counts["PENDING"]),
    }


def test_execute_complete_returns_the_summary_of_a_success_event():
    sensor = make_sensor(bulk_ids={"b": 1})
    summary = sensor.execute_complete({}, _event("success", _summary(VIBER_DELIVERED=1)))
    assert summary["outcomes"]["VIBER_DELIVERED"] == 1


@pytest.mark.parametrize("event", [None, {}, {"status": "weird"}, "success"])
def test_execute_complete_refuses_unknown_events(event):
    with pytest.raises(Exception, match="unexpected trigger event"):
        make_sensor(bulk_ids={"b": 1}).execute_complete({}, event)


def test_execute_complete_raises_on_error_events():
    with pytest.raises(Exception, match="failed: m"):
        make_sensor(bulk_ids={"b": 1}).execute_complete({}, _event("error", None))


def test_execute_complete_timeout_fails_or_succeeds():
    with pytest.raises(AirflowSensorTimeout):
        make_sensor(bulk_ids={"b": 1}).execute_complete({}, _event("timeout", _summary(PENDING=1)))
    summary = make_sensor(bulk_ids={"b": 1}, succeed_on_timeout=True).execute_complete(
        {}, _event("timeout", _summary(PENDING=1))
    )
    assert summary["timed_out"] and summary["outcomes"]["PENDING"] == 1


# -- real DAG runs: poke, reschedule and deferrable give the same summary ------------------------------------


def xcom_of(dag_run: Any, task_id: str) -> Any:
    from tests.airflow_compat import xcom_value

    return xcom_value(dag_run, task_id)


def stored_value(dag_run: Any, task_id: str, key: str) -> Any:
    """A value of the real task state store (Airflow 3.3) of a task of a DAG run."""
    from airflow.models.task_state_store import TaskStateStoreModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        value = session.scalar(
            select(TaskStateStoreModel.value).where(
                TaskStateStoreModel.dag_run_id == dag_run.id,
                TaskStateStoreModel.task_id == task_id,
                TaskStateStoreModel.key == key,
            )
        )
    return None if value is None else json.loads(value)


def _comparable(summary: dict[str, Any]) -> dict[str, Any]:
    failed = sorted((f["to"], f["status"], f["channel"]) for f in summary["failed"])
    return {**summary, "bulks": len(summary["bulks"]), "failed": failed, "price": summary["price"]}


@pytest.mark.dag
def test_poke_reschedule_and_deferrable_give_the_same_summary(
    omni_sandbox, omni_connection, run_dag, task_states, caplog
):
    from test_branch import failover_dag

    # slower simulated time: the silent persona needs ~6.5 s, so the sensors really have to wait
    omni_sandbox.admin.configure(time_scale=10)
    caplog.set_level("INFO")
    summaries = {}
    for name, options in {
        "poke": {"mode": "poke"},
        "reschedule": {"mode": "reschedule"},
        "deferrable": {"deferrable": True},
    }.items():
        dag_run = run_dag(failover_dag(f"wait_modes_{name}", ALL_PERSONAS, **options))
        assert task_states(dag_run)["wait"] == "success", name
        summaries[name] = xcom_of(dag_run, "wait")
        if HAS_TASK_STATE_STORE:  # Airflow 3.3
            # the real store keeps the wait's start for the first try (since the last clear) and the
            # flow read from the scenario
            wait = stored_value(dag_run, "wait", WAIT_KEY)
            assert wait["generation"] == 1 and wait["started_at"] > 0, name
            assert wait["flow"] == ["VIBER", "SMS"], name
    assert "[DAG TEST] running trigger in line" in caplog.text  # the deferrable one did defer
    assert summaries["poke"]["outcomes"] == EXPECTED_ALL
    assert summaries["poke"]["errors"] == {"EC_ABSENT_SUBSCRIBER": 1, "EC_VALIDITY_EXPIRED": 1}
    assert _comparable(summaries["deferrable"]) == _comparable(summaries["poke"])
    if HAS_TASK_STATE_STORE:
        assert _comparable(summaries["reschedule"]) == _comparable(summaries["poke"])
    else:
        # Before Airflow 3.3 nothing is kept between the pokes of reschedule mode (each one a new
        # process): every outcome comes back from the logs, but the error name of a failure whose
        # report an earlier poke consumed may read UNKNOWN (documented in the README)
        reschedule, poke = _comparable(summaries["reschedule"]), _comparable(summaries["poke"])
        assert set(reschedule["errors"]) <= {*poke["errors"], "UNKNOWN"}
        assert sum(reschedule["errors"].values()) == sum(poke["errors"].values())
        assert {**reschedule, "errors": None} == {**poke, "errors": None}
