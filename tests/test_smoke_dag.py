from __future__ import annotations

import pendulum
import pytest


@pytest.mark.dag
def test_inline_dag_runs(run_dag, task_states):
    from tests.airflow_compat import DAG, task

    with DAG("smoke_inline", schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as dag:

        @task
        def hello() -> int:
            return 1

        hello()

    dr = run_dag(dag)
    assert dr.state == "success"
    assert task_states(dr) == {"hello": "success"}
