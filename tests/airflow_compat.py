"""What the tests need that differs between Airflow 2.11 and 3.3 (the package's own differences are in
:mod:`airflow_provider_omni.version_compat`)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    DAG,
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    Param,
    TaskDeferred,
    task,
)

from airflow_provider_omni.version_compat import (
    AIRFLOW_V_3_0_PLUS,
    AIRFLOW_V_3_1_PLUS,
    AIRFLOW_V_3_2_PLUS,
    AIRFLOW_V_3_3_PLUS,
    AIRFLOW_VERSION,
    HAS_TASK_STATE_STORE,
)

if AIRFLOW_V_3_0_PLUS:
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.providers.standard.operators.python import PythonOperator
else:
    from airflow.operators.empty import EmptyOperator  # type: ignore[no-redef]
    from airflow.operators.python import PythonOperator  # type: ignore[no-redef]

if AIRFLOW_V_3_2_PLUS:
    from airflow.dag_processing.dagbag import DagBag
else:
    from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

if TYPE_CHECKING:
    from airflow.models.dagrun import DagRun

__all__ = [
    "AIRFLOW_VERSION",
    "AIRFLOW_V_3_0_PLUS",
    "AIRFLOW_V_3_1_PLUS",
    "AIRFLOW_V_3_2_PLUS",
    "AIRFLOW_V_3_3_PLUS",
    "DAG",
    "HAS_TASK_STATE_STORE",
    "AirflowException",
    "AirflowFailException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "DagBag",
    "EmptyOperator",
    "Param",
    "PythonOperator",
    "TaskDeferred",
    "serialize_dag",
    "task",
    "xcom_value",
]

AIRFLOW_SERIES = f"{AIRFLOW_VERSION[0]}.{AIRFLOW_VERSION[1]}"


def serialize_dag(dag: DAG) -> None:
    """Write ``dag`` to the metadata DB, which ``dag.test()`` needs from Airflow 3.1 (not before)."""
    if not AIRFLOW_V_3_1_PLUS:
        return
    from airflow.dag_processing.bundles.manager import DagBundlesManager

    if AIRFLOW_V_3_2_PLUS:
        from airflow.dag_processing.dagbag import sync_bag_to_db
    else:
        from airflow.models.dagbag import sync_bag_to_db  # type: ignore[no-redef,attr-defined]

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(dag_folder=os.devnull, collect_dags=False)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)


def xcom_value(dag_run: DagRun, task_id: str, map_index: int = -1, key: str = "return_value") -> Any:
    """The XCom ``key`` of one task instance of ``dag_run`` read from the metadata DB (``None``: none)."""
    if not AIRFLOW_V_3_0_PLUS:
        from airflow.models.xcom import XCom

        return XCom.get_one(
            run_id=dag_run.run_id, dag_id=dag_run.dag_id, task_id=task_id, map_index=map_index, key=key
        )
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.scalars(
            select(XComModel).where(
                XComModel.dag_run_id == dag_run.id,
                XComModel.task_id == task_id,
                XComModel.map_index == map_index,
                XComModel.key == key,
            )
        ).first()
        return None if row is None else XComModel.deserialize_value(row)


def leave_triggers_to_a_triggerer(monkeypatch: Any) -> None:
    """Make ``dag.test()`` leave a deferred task DEFERRED (with its trigger row in the metadata DB)
    instead of running the trigger in line, so that a real ``airflow triggerer`` process must pick it
    up; ``dag.test()`` then waits, re-reading the task instances, until the triggerer schedules it."""
    if AIRFLOW_V_3_0_PLUS:
        import airflow.sdk.definitions.dag as dag_module

        def run_task(*args: Any, **kwargs: Any) -> Any:
            return original(*args, **{**kwargs, "run_triggerer": False})
    else:
        import airflow.models.dag as dag_module  # type: ignore[no-redef]

        def run_task(*args: Any, **kwargs: Any) -> Any:
            return original(*args, **{**kwargs, "inline_trigger": False})

    original = dag_module._run_task
    monkeypatch.setattr(dag_module, "_run_task", run_task)
