"""Test DAG of ``tests/test_notifier_deadline.py`` (Airflow 3.1+): its task outlives the run's
deadline, whose alert sends an OMNI notification from the triggerer.

The scenario key and the on-call number come from the run's conf, through the notifier's templates.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, task
from airflow.sdk.definitions.deadline import AsyncCallback, DeadlineAlert, DeadlineReference

from airflow_provider_omni.notifications.omni import OmniNotifier

DEADLINE = timedelta(seconds=3)  # after the run was queued
TASK_SECONDS = 5  # the task alone takes longer

late = AsyncCallback(
    OmniNotifier,
    kwargs={
        "scenario_key": "{{ dag_run.conf.scenario_key }}",
        "destinations": ["{{ dag_run.conf.on_call }}"],
        "viber_text": "{{ dag_run.dag_id }} missed its deadline (run {{ dag_run.dag_run_id }})",
        "sms_text": "{{ dag_run.dag_id }} is late",
    },
)

with DAG(
    "omni_deadline_alert",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1),
    deadline=DeadlineAlert(reference=DeadlineReference.DAGRUN_QUEUED_AT, interval=DEADLINE, callback=late),
):

    @task
    def outlive_the_deadline() -> None:
        time.sleep(TASK_SECONDS)

    outlive_the_deadline()
