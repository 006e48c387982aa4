"""A missed deadline alert notifies once through ``OmniNotifier``, with Airflow's real processes.

The DAG (``tests/dags/omni_deadline_alert.py``) has a ``DeadlineAlert`` three seconds after the run
is queued, with ``AsyncCallback(OmniNotifier, kwargs={...})``, and a task that takes five. Who does
what (Airflow 3.1+), each as its own process in a private AIRFLOW_HOME (SQLite):

* the **dag-processor** parses the DAG and stores the alert with the serialized DAG;
* the **api-server** takes the trigger (REST API) and serves the execution API to the task runner;
  creating the run creates its ``Deadline`` row (queued_at + interval);
* the **scheduler** runs the task (LocalExecutor), and in every loop finds the deadlines whose time
  has passed and that are not missed yet: it marks them missed and queues their ``AsyncCallback``
  as a trigger, with the context (the run as JSON, and the deadline) in its kwargs;
* the **triggerer** runs that trigger: it imports ``OmniNotifier`` and awaits
  ``OmniNotifier(**kwargs, context=context)``; ``BaseNotifier`` renders the templated fields with
  that context, then awaits ``async_notify``.

``dag.test()`` is no substitute: it never looks at deadlines, and on Airflow 3.3.2 it fails when a
run with a deadline alert succeeds (``DagRun.update_state`` takes the serialized alerts of its
in-memory DAG for alert ids).
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from test_notifier import sends
from test_sensor import scenario_key

from airflow_provider_omni.hooks.omni import OmniHook
from airflow_provider_omni.notifications.omni import notification_bulk_id
from tests import airflow_processes
from tests.airflow_compat import AIRFLOW_SERIES, AIRFLOW_V_3_1_PLUS, AIRFLOW_V_3_2_PLUS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import requests

pytestmark = [
    pytest.mark.dag,
    pytest.mark.timeout(420),  # migrate (120 s at most) + health (HEALTHY_WITHIN) + the test
    pytest.mark.skipif(
        not AIRFLOW_V_3_1_PLUS, reason=f"Airflow {AIRFLOW_SERIES} has no deadline alerts (they came with 3.1)"
    ),
]

DAGS = Path(__file__).resolve().parent / "dags"
DAG_ID = "omni_deadline_alert"
ON_CALL = "41793026726"
PROCESSES = ("api-server", "scheduler", "dag-processor", "triggerer")


@dataclass(frozen=True)
class Airflow:
    """The running Airflow: its REST API and its home (logs, metadata DB)."""

    url: str
    home: Path
    session: requests.Session

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the public REST API; return the JSON body."""
        response = self.session.request(method, f"{self.url}/api/v2{path}", timeout=15, **kwargs)
        assert response.status_code < 400, f"{method} {path}: {response.status_code} {response.text[:500]}"
        return response.json()

    def logs(self, name: str) -> str:
        return (self.home / f"{name}.log").read_text(errors="replace")[-3000:]


def stack_env(home: Path, api_port: int, health_port: int) -> dict[str, str]:
    """The processes' settings: this test's home and DAGs, the sandbox connection (inherited), short
    loops, and the provider copy under test."""
    url = f"http://127.0.0.1:{api_port}"
    return airflow_processes.airflow_env(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(DAGS),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__PARALLELISM="2",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{url}/execution/",
        AIRFLOW__API__BASE_URL=url,
        **airflow_processes.ONE_API_WORKER,
        AIRFLOW__API_AUTH__JWT_SECRET="test-only-jwt-secret-0123456789abcdef",
        AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK="True",
        AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT=str(health_port),
        AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="1",
        AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC="1",
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
        AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
    )


@pytest.fixture
def airflow(omni_connection: str, tmp_path: Path) -> Iterator[Airflow]:
    """Start the api-server, scheduler, dag-processor and triggerer on a fresh metadata DB."""
    home = tmp_path / "airflow-home"
    home.mkdir()
    api_port, health_port = airflow_processes.free_port(), airflow_processes.free_port()
    env = stack_env(home, api_port, health_port)
    migrate = [airflow_processes.AIRFLOW, "db", "migrate"]
    subprocess.run(migrate, env=env, check=True, capture_output=True, timeout=120)
    args = {
        "api-server": ["api-server", "--host", "127.0.0.1", "--port", str(api_port)],
        "scheduler": ["scheduler", "--skip-serve-logs"],
        "dag-processor": ["dag-processor"],
        "triggerer": ["triggerer", "--skip-serve-logs"],
    }
    processes = {name: airflow_processes.start(args[name], env, home / f"{name}.log") for name in PROCESSES}
    url = f"http://127.0.0.1:{api_port}"
    try:
        health = {"api-server": f"{url}/api/v2/monitor/health"}
        health["scheduler"] = f"http://127.0.0.1:{health_port}/health"
        for name, health_url in health.items():
            airflow_processes.wait_healthy(
                processes[name], health_url, home / f"{name}.log", timeout=airflow_processes.HEALTHY_WITHIN
            )
        yield Airflow(url, home, airflow_processes.api_session(url))
    finally:
        for process in processes.values():
            airflow_processes.stop(process, timeout=30)


def wait_for(what: str, check: Callable[[], Any], timeout: float, logs: Callable[[], str]) -> Any:
    """Call ``check`` until it returns something truthy; fail with ``logs()`` after ``timeout`` s."""
    finish = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > finish:
            pytest.fail(f"{what} not within {timeout:.0f} s:\n{logs()}")
        time.sleep(0.5)
    return result


def deadline_row(home: Path) -> tuple[str, str | None] | None:
    """The run's deadline in the metadata DB: its id and the state of its callback (None: not run)."""
    state = "(SELECT state FROM callback WHERE callback.id = deadline.callback_id)"
    column = state if AIRFLOW_V_3_2_PLUS else "callback_state"
    with sqlite3.connect(home / "airflow.db", timeout=10) as db:
        row = db.execute(f"SELECT id, {column} FROM deadline").fetchone()
    return None if row is None else (str(uuid.UUID(str(row[0]))), row[1])


def run_dag(airflow: Airflow, conf: dict[str, str]) -> str:
    """Wait for the DAG to be parsed, unpause it, trigger a run; return its run id."""

    def parsed() -> bool:
        errors = airflow.api("GET", "/importErrors")["import_errors"]
        assert not errors, errors[0]["stack_trace"]
        return airflow.session.get(f"{airflow.url}/api/v2/dags/{DAG_ID}", timeout=15).status_code == 200

    wait_for(f"DAG {DAG_ID} parsed", parsed, 60, lambda: airflow.logs("dag-processor"))
    airflow.api("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
    run = airflow.api("POST", f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf})
    return str(run["dag_run_id"])


def test_a_missed_deadline_notifies_once_through_the_scheduler_and_the_triggerer(
    omni_sandbox: Any, airflow: Airflow
) -> None:
    key = scenario_key(OmniHook())
    started = time.monotonic()

    run_id = run_dag(airflow, {"scenario_key": key, "on_call": ON_CALL})

    def finished() -> str | None:
        state = airflow.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}")["state"]
        return state if state in ("success", "failed") else None

    assert wait_for("the run", finished, 90, lambda: airflow.logs("scheduler")) == "success"

    def callback_done() -> tuple[str, str | None] | None:
        row = deadline_row(airflow.home)
        return row if row and row[1] in ("success", "failed") else None

    deadline_id, state = wait_for(
        "the deadline's callback", callback_done, 60, lambda: airflow.logs("triggerer")
    )
    assert state == "success", airflow.logs("triggerer")
    context = {"dag_run": {"dag_id": DAG_ID, "dag_run_id": run_id}, "deadline": {"id": deadline_id}}
    [body] = sends(omni_sandbox)
    assert body["bulkId"] == notification_bulk_id(context, namespace=OmniHook().namespace)
    assert body["viber"]["text"] == f"{DAG_ID} missed its deadline (run {run_id})"
    assert body["sms"]["text"] == f"{DAG_ID} is late"
    assert [d["to"]["phoneNumber"] for d in body["destinations"]] == [ON_CALL]
    print(f"deadline alert through the real scheduler and triggerer: {time.monotonic() - started:.1f} s")
