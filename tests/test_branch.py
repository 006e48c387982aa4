"""OmniDeliveryBranchOperator: the rule for mixed results, and a DAG that branches three ways for real."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
import pytest

from airflow_provider_omni.operators.branch import OmniDeliveryBranchOperator, choose_branches

BRANCHES = {"viber": ["on_viber"], "sms_fallback": ["on_sms"], "failed": ["on_failed"]}


def summary(**outcomes: int) -> dict[str, Any]:
    return {"outcomes": {"VIBER_DELIVERED": 0, "SMS_DELIVERED": 0, "FAILED": 0, "PENDING": 0, **outcomes}}


@pytest.mark.parametrize(
    ("outcomes", "chosen"),
    [
        ({"VIBER_DELIVERED": 5}, ["on_viber"]),
        ({"VIBER_DELIVERED": 5, "SMS_DELIVERED": 1}, ["on_sms"]),
        ({"SMS_DELIVERED": 3}, ["on_sms"]),
        ({"VIBER_DELIVERED": 5, "SMS_DELIVERED": 1, "FAILED": 1}, ["on_failed"]),
        ({"VIBER_DELIVERED": 5, "PENDING": 1}, ["on_failed"]),  # pending without a pending branch
        ({}, ["on_failed"]),  # nothing delivered at all
    ],
)
def test_mixed_results_rule(outcomes, chosen):
    assert choose_branches(summary(**outcomes), **BRANCHES) == chosen


def test_pending_branch_when_given():
    got = choose_branches(summary(VIBER_DELIVERED=1, PENDING=2), **BRANCHES, pending=["on_pending"])
    assert got == ["on_pending"]
    # a failure still wins over pending
    got = choose_branches(summary(FAILED=1, PENDING=2), **BRANCHES, pending=["on_pending"])
    assert got == ["on_failed"]


def test_follow_all_matching():
    got = choose_branches(summary(VIBER_DELIVERED=3, SMS_DELIVERED=1), **BRANCHES, follow_all_matching=True)
    assert got == ["on_sms", "on_viber"]
    got = choose_branches(summary(VIBER_DELIVERED=3, FAILED=1), **BRANCHES, follow_all_matching=True)
    assert got == ["on_failed", "on_viber"]


def test_a_non_summary_is_refused():
    with pytest.raises(ValueError, match="outcomes"):
        choose_branches({"bulks": []}, **BRANCHES)


def test_summary_rendered_as_text_is_parsed():
    op = OmniDeliveryBranchOperator(
        task_id="route",
        viber_task_ids="on_viber",
        sms_fallback_task_ids="on_sms",
        failed_task_ids="on_failed",
        summary=repr(summary(SMS_DELIVERED=1)),
    )
    assert op.choose_branch({}) == ["on_sms"]


# -- a real DAG: send, wait, branch ------------------------------------------------------------------------


def failover_dag(dag_id: str, numbers: list[str], *, deferrable: bool = False, mode: str = "poke") -> Any:
    from airflow_provider_omni.operators.scenario import OmniCreateScenarioOperator
    from airflow_provider_omni.operators.send import OmniSendAdvancedMessageOperator
    from airflow_provider_omni.sensors.delivery_report import OmniDeliveryReportSensor
    from tests.airflow_compat import DAG, EmptyOperator

    with DAG(dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False) as dag:
        scenario = OmniCreateScenarioOperator(
            task_id="scenario",
            name="wait-dag-tests",
            flow=[{"channel": "VIBER", "from": "InfoSMS"}, {"channel": "SMS", "from": "InfoSMS"}],
        )
        send = OmniSendAdvancedMessageOperator(
            task_id="send",
            scenario_key=scenario.output,
            destinations=numbers,
            viber={"text": "Your parcel is on its way"},
            sms={"text": "Your parcel is on its way"},
            viber_validity=timedelta(seconds=35),
            sms_validity=timedelta(seconds=30),
        )
        wait = OmniDeliveryReportSensor(
            task_id="wait",
            send_result=send.output,
            poke_interval=0.2,
            timeout=120,
            mode=mode,
            deferrable=deferrable,
        )
        route = OmniDeliveryBranchOperator(
            task_id="route",
            summary=wait.output,
            viber_task_ids="on_viber",
            sms_fallback_task_ids="on_sms",
            failed_task_ids="on_failed",
        )
        ends = [EmptyOperator(task_id=t) for t in ("on_viber", "on_sms", "on_failed")]
        scenario >> send >> wait >> route >> ends
    return dag


@pytest.mark.dag
@pytest.mark.parametrize(
    ("numbers", "winner"),
    [
        (["41793026720", "41793026721"], "on_viber"),
        (["41793026720", "41793026726"], "on_sms"),
        (["41793026720", "41793026726", "41793026728"], "on_failed"),
    ],
)
def test_dag_branches_three_ways(omni_sandbox, omni_connection, run_dag, task_states, numbers, winner):
    dag = failover_dag(f"wait_branch_{winner}", numbers)
    dr = run_dag(dag)
    states = task_states(dr)
    assert states["wait"] == "success" and states["route"] == "success"
    for end in ("on_viber", "on_sms", "on_failed"):
        assert states[end] == ("success" if end == winner else "skipped"), states
