"""A deferrable wait finished by Airflow's real triggerer: ``airflow triggerer`` as its own process.

``dag.test()`` runs the DAG, but a deferred task stays DEFERRED in the metadata DB (SQLite, shared
with the triggerer process) instead of running its trigger in line: the triggerer must load
``OmniDeliveryReportTrigger`` from its serialized row, run it in its own event loop (on Airflow 3,
in the triggerer's supervised subprocess, with the connection from the environment), and write the
event back, after which ``dag.test()`` resumes the sensor with ``execute_complete``.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

import pytest
from test_branch import failover_dag
from test_sensor import ALL_PERSONAS, EXPECTED_ALL, xcom_of

from tests import airflow_processes
from tests.airflow_compat import leave_triggers_to_a_triggerer

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def triggerer(airflow_db: None, omni_connection: str, tmp_path: Path) -> Iterator[Path]:
    """Start ``airflow triggerer`` on the tests' metadata DB, restarted like a supervisor would when it
    dies; yield its log file."""
    log_path = tmp_path / "triggerer.log"
    # this process's AIRFLOW_HOME (the tests' DB) and AIRFLOW_CONN_OMNI_DEFAULT (the sandbox)
    env = airflow_processes.airflow_env(
        AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC="1",
        AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
        # its log server on a free port (the default 8794 is taken when matrix runs overlap)
        AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(airflow_processes.free_port()),
    )
    _forget_other_tests_triggers()
    supervisor = airflow_processes.Supervised(["triggerer"], env, log_path)
    try:
        _wait_started(supervisor, log_path)
        yield log_path
    finally:
        supervisor.stop(timeout=30)


def _forget_other_tests_triggers() -> None:
    """Delete the trigger rows earlier tests left in the shared DB: this triggerer runs this test's only."""
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    with create_session() as session:
        session.execute(delete(Trigger))


def _wait_started(supervisor: airflow_processes.Supervised, log_path: Path, timeout: float = 90) -> None:
    """Wait until the triggerer says it started; fail with its log when it keeps dying or is slow."""
    deadline = time.monotonic() + timeout
    while "Starting the triggerer" not in log_path.read_text(errors="replace"):
        if supervisor.gave_up or time.monotonic() > deadline:
            pytest.fail(f"the triggerer did not start ({supervisor.restarts} restarts):\n{_tail(log_path)}")
        time.sleep(0.2)


def _tail(log_path: Path) -> str:
    return log_path.read_text(errors="replace")[-4000:]


@pytest.mark.dag
@pytest.mark.timeout(240)
def test_a_deferred_wait_is_finished_by_a_real_triggerer_process(
    omni_sandbox: Any,
    triggerer: Path,
    run_dag: Any,
    task_states: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    omni_sandbox.admin.configure(time_scale=10)  # the silent persona needs ~6.5 s: the wait really defers
    leave_triggers_to_a_triggerer(monkeypatch)
    caplog.set_level("INFO")
    started = time.monotonic()

    try:
        dag_run = run_dag(failover_dag("wait_real_triggerer", ALL_PERSONAS, deferrable=True))
    except BaseException:  # a timeout included: show what the triggerer did
        print(f"triggerer log:\n{_tail(triggerer)}")
        raise

    log = triggerer.read_text(errors="replace")
    assert task_states(dag_run)["wait"] == "success", log[-3000:]
    assert "Starting the triggerer" in log, log[-3000:]
    # the wait was DEFERRED in the DB, and nobody in this process ran its trigger: the triggerer did
    assert re.search(r"wait_real_triggerer\.wait [^>]*\[deferred\]", caplog.text)
    assert "[DAG TEST] running trigger in line" not in caplog.text
    summary = xcom_of(dag_run, "wait")
    assert summary["outcomes"] == EXPECTED_ALL
    assert summary["errors"] == {"EC_ABSENT_SUBSCRIBER": 1, "EC_VALIDITY_EXPIRED": 1}
    assert task_states(dag_run)["on_failed"] == "success"  # the branch of the outcome
    print(f"deferred wait through a real triggerer: {time.monotonic() - started:.1f} s")
