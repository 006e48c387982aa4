"""The example DAGs: they parse cleanly, and they really run against the OMNI sandbox.

Each run goes through ``dag.test()`` (the ``run_dag`` fixture serializes the DAG first): the
operators call the sandbox over HTTP and the deferrable sensor's trigger runs in-process.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from airflow.models.dagrun import DagRun

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "example_dags"
FAILOVER = EXAMPLES / "omni_viber_sms_failover.py"
SCHEDULED = EXAMPLES / "omni_scheduled_notifications.py"
BRANCHES = {"all_on_viber", "some_by_sms_fallback", "some_failed"}
ON_CALL = "41793026700"


def _xcom(dag_run: DagRun, task_id: str, map_index: int = -1) -> Any:
    """Return the ``return_value`` XCom of one task instance of ``dag_run``."""
    from tests.airflow_compat import xcom_value

    value = xcom_value(dag_run, task_id, map_index)
    assert value is not None, f"no XCom from {task_id}[{map_index}]"
    return value


def _mapped_states(dag_run: DagRun, task_id: str) -> list[str | None]:
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = dag_run.get_task_instances(session=session)
        return [str(ti.state) for ti in sorted(tis, key=lambda t: t.map_index) if ti.task_id == task_id]


# -- parsing --------------------------------------------------------------------------------------


def test_example_dags_import_without_errors(airflow_db: None) -> None:
    from tests.airflow_compat import DagBag

    started = time.monotonic()
    bag = DagBag(dag_folder=str(EXAMPLES))
    elapsed = time.monotonic() - started

    assert bag.import_errors == {}
    assert {"omni_viber_sms_failover", "omni_scheduled_notifications"} <= set(bag.dag_ids)
    print(f"parsed {len(bag.dag_ids)} example DAGs in {elapsed:.2f}s")


def test_failover_dag_shape(load_dag_file: Any) -> None:
    dag = load_dag_file(FAILOVER, "omni_viber_sms_failover")

    branch = dag.get_task("branch_on_outcome")
    assert branch.downstream_task_ids == BRANCHES
    assert dag.get_task("log_summary").trigger_rule == "none_failed_min_one_success"
    assert dag.get_task("wait_for_delivery").deferrable is True
    # The default recipients cover every sandbox persona (last digit 0..9).
    assert {number[-1] for number in dag.params["recipients"]} == set("0123456789")


def test_scheduled_dag_shape(load_dag_file: Any) -> None:
    dag = load_dag_file(SCHEDULED, "omni_scheduled_notifications")

    assert dag.catchup is False
    # the cron of the timetable: ``expression`` from 3.0 (``_expression`` on 2.11), "@daily" kept on 3.2+
    expression = getattr(dag.timetable, "expression", None) or dag.timetable._expression
    assert expression in {"@daily", "0 0 * * *"}
    assert type(dag.get_task("send_batch")).__name__ == "MappedOperator"
    assert type(dag.get_task("wait_for_batch")).__name__ == "MappedOperator"
    assert dag.get_task("check_delivery").on_failure_callback


# -- the failover DAG end to end ----------------------------------------------------------------


@pytest.mark.dag
@pytest.mark.parametrize(
    ("recipients", "branch", "outcomes"),
    [
        pytest.param(
            ["41793026720", "41793026721", "41793026725"],
            "all_on_viber",
            {"VIBER_DELIVERED": 3, "SMS_DELIVERED": 0, "FAILED": 0},
            id="all-viber",
        ),
        pytest.param(
            ["41793026720", "41793026726", "41793026727"],
            "some_by_sms_fallback",
            {"VIBER_DELIVERED": 1, "SMS_DELIVERED": 2, "FAILED": 0},
            id="viber-and-sms-fallback",
        ),
        pytest.param(
            ["41793026721", "41793026726", "41793026728"],
            "some_failed",
            {"VIBER_DELIVERED": 1, "SMS_DELIVERED": 1, "FAILED": 1},
            id="one-undeliverable",
        ),
    ],
)
def test_failover_dag_takes_the_branch_of_the_outcome(
    recipients: list[str],
    branch: str,
    outcomes: dict[str, int],
    omni_sandbox: Any,
    omni_connection: str,
    load_dag_file: Any,
    run_dag: Any,
    task_states: Any,
) -> None:
    dag = load_dag_file(FAILOVER, "omni_viber_sms_failover")

    dag_run = run_dag(dag, run_conf={"recipients": recipients})

    states = task_states(dag_run)
    assert dag_run.state == "success", states
    assert states[branch] == "success"
    assert {states[other] for other in BRANCHES - {branch}} == {"skipped"}
    assert states["log_summary"] == "success"
    summary = _xcom(dag_run, "wait_for_delivery")
    assert {key: summary["outcomes"].get(key, 0) for key in outcomes} == outcomes
    assert summary["total"] == len(recipients)
    assert summary["all_final"] is True
    send = _xcom(dag_run, "send_viber_with_sms_fallback")
    assert send["accepted"] == len(recipients)


@pytest.mark.dag
def test_failover_dag_dry_run_sends_nothing_and_follows_no_branch(
    omni_sandbox: Any, omni_connection: str, load_dag_file: Any, run_dag: Any, task_states: Any, logs: Any
) -> None:
    dag = load_dag_file(FAILOVER, "omni_viber_sms_failover")
    recipients = ["41793026720", "41793026726", "41793026728"]

    dag_run = run_dag(dag, run_conf={"recipients": recipients, "dry_run": True})

    states = task_states(dag_run)
    assert dag_run.state == "success", states
    assert omni_sandbox.admin.stats()["requests"].get("advanced", 0) == 0  # nothing sent
    send = _xcom(dag_run, "send_viber_with_sms_fallback")
    assert send["dry_run"] is True and send["flow"] == ["VIBER", "SMS"]
    assert (send["total"], send["accepted"], len(send["bulks"])) == (3, 0, 1)
    summary = _xcom(dag_run, "wait_for_delivery")
    assert summary["dry_run"] is True and summary["total"] == 3
    assert summary["bulks"] == [send["bulks"][0]["bulk_id"]]
    assert {states[name] for name in BRANCHES} == {"skipped"}
    assert states["log_summary"] == "success"
    ours = [line for line in logs().splitlines() if "Dry run" in line]  # Airflow DEBUG-logs the conf
    assert any("the first request would be POST /omni/1/advanced" in line for line in ours)
    assert not any("41793026720" in line for line in ours)  # the body's numbers are shortened


@pytest.mark.dag
def test_failover_dag_with_every_persona_reports_the_expired_message_as_failed(
    omni_sandbox: Any, omni_connection: str, load_dag_file: Any, run_dag: Any, task_states: Any
) -> None:
    dag = load_dag_file(FAILOVER, "omni_viber_sms_failover")

    dag_run = run_dag(dag)  # the default params: one number per persona, 0..9

    states = task_states(dag_run)
    assert dag_run.state == "success", states
    assert states["some_failed"] == "success"
    summary = _xcom(dag_run, "wait_for_delivery")
    assert summary["outcomes"]["VIBER_DELIVERED"] == 6
    assert summary["outcomes"]["SMS_DELIVERED"] == 2
    assert summary["outcomes"]["FAILED"] == 2  # 8: undeliverable, 9: expired on both channels
    assert summary["outcomes"].get("PENDING", 0) == 0


# -- the scheduled DAG end to end ---------------------------------------------------------------


@pytest.mark.dag
def test_scheduled_dag_sends_the_file_in_mapped_batches(
    omni_sandbox: Any, omni_connection: str, load_dag_file: Any, run_dag: Any, task_states: Any
) -> None:
    dag = load_dag_file(SCHEDULED, "omni_scheduled_notifications")

    dag_run = run_dag(dag, run_conf={"batch_size": 5})

    assert dag_run.state == "success", task_states(dag_run)
    # 12 numbers in example_dags/data/recipients.csv, 5 per batch: 3 mapped sends and 3 mapped waits.
    assert _mapped_states(dag_run, "send_batch") == ["success"] * 3
    assert _mapped_states(dag_run, "wait_for_batch") == ["success"] * 3
    sizes = [_xcom(dag_run, "send_batch", index)["accepted"] for index in range(3)]
    assert sizes == [5, 5, 2]
    result = _xcom(dag_run, "check_delivery")
    assert result["total"] == 12
    assert result["outcomes"].get("FAILED", 0) == 0


@pytest.mark.dag
def test_scheduled_dag_alerts_on_call_when_messages_fail(
    tmp_path: Path,
    omni_sandbox: Any,
    omni_connection: str,
    load_dag_file: Any,
    run_dag: Any,
    task_states: Any,
) -> None:
    from airflow_provider_omni.hooks.omni import OmniHook

    recipients = tmp_path / "recipients.csv"
    recipients.write_text("phone_number,name\n41793026711,Ok\n41793026718,Unreachable\nnot-a-number,Typo\n")
    dag = load_dag_file(SCHEDULED, "omni_scheduled_notifications")

    dag_run = run_dag(dag, run_conf={"recipients_file": str(recipients)})

    states = task_states(dag_run)
    assert dag_run.state == "failed"
    assert states["check_delivery"] == "failed"
    # The notifier sent the alert through OMNI to the on-call phone.
    alerts = OmniHook(omni_conn_id=omni_connection).get_logs(to=ON_CALL)
    assert len(alerts) == 1
    assert "omni_scheduled_notifications" in (alerts[0].text or "")
