"""The scheduled-notifications pipeline of ``make e2e-distributed``: 20,000 recipients in mapped batches.

The shape of ``example_dags/omni_scheduled_notifications.py`` (recipients file -> mapped sends ->
mapped deferrable sensors -> one check), sized so that a send of one batch takes several requests
(``E2E_BULK_SIZE`` destinations each, ``E2E_MAX_IN_FLIGHT`` at once) and can be interrupted between
two of them, and with retries so that Airflow's own failure detection can retry a batch whose worker
was killed. ``scripts/e2e_distributed.py`` copies this file into the DAGs folder of the run.
"""

from __future__ import annotations

import csv
import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, Param, task

from airflow_provider_omni.operators.scenario import OmniCreateScenarioOperator
from airflow_provider_omni.operators.send import OmniSendAdvancedMessageOperator
from airflow_provider_omni.sensors.delivery_report import OmniDeliveryReportSensor

BULK_SIZE = int(os.environ.get("E2E_BULK_SIZE", "250"))
MAX_IN_FLIGHT = int(os.environ.get("E2E_MAX_IN_FLIGHT", "1"))
VALIDITY_MINUTES = int(os.environ.get("E2E_VALIDITY_MINUTES", "5"))

with DAG(
    dag_id="omni_e2e_notifications",
    description="make e2e-distributed: 20,000 recipients in mapped batches on Celery workers",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["omni", "e2e"],
    default_args={"retries": 3, "retry_delay": timedelta(seconds=2)},
    params={
        "recipients_file": Param("", type="string", description="Absolute path of the recipients CSV."),
        "batch_size": Param(2500, type="integer", minimum=1),
    },
) as dag:
    scenario = OmniCreateScenarioOperator(
        task_id="get_or_create_scenario",
        name="Airflow e2e: daily notifications",
        flow=[{"channel": "VIBER", "from": "DemoCompany"}, {"channel": "SMS", "from": "DemoCo"}],
    )

    @task
    def load_recipient_batches(params: dict[str, Any] | None = None) -> list[list[str]]:
        """Read the recipients file and return its numbers in batches."""
        assert params is not None
        with open(params["recipients_file"], newline="", encoding="utf-8") as handle:
            numbers = list(dict.fromkeys(row["phone_number"].strip() for row in csv.DictReader(handle)))
        size = int(params["batch_size"])
        batches = [numbers[i : i + size] for i in range(0, len(numbers), size)]
        print(f"{len(numbers)} recipients in {len(batches)} batch(es) of at most {size}")
        return batches

    send = OmniSendAdvancedMessageOperator.partial(
        task_id="send_batch",
        scenario_key=scenario.output,
        batch_size=BULK_SIZE,
        max_in_flight=MAX_IN_FLIGHT,
        progress_interval=1.0,
        # A worker killed mid-POST leaves that bulk in doubt: a retry sends it only once the logs
        # still lack it this long after the POST.  The sandbox's logs have no lag, so 10 s (under the
        # ~20 s Airflow takes to notice the kill); in production keep the 15 min default and give
        # the task retries that outlast it (README: "A send failed with OmniSendUncertainError").
        uncertain_horizon=timedelta(seconds=10),
        viber={"text": "Good morning! Your daily summary is ready in the app.", "isPromotional": False},
        sms={"text": "Good morning! Your daily summary is ready: https://example.com/app/summary"},
        viber_validity=timedelta(minutes=VALIDITY_MINUTES),
        sms_validity=timedelta(minutes=VALIDITY_MINUTES),
    ).expand(destinations=load_recipient_batches())

    wait = OmniDeliveryReportSensor.partial(
        task_id="wait_for_batch",
        deferrable=True,
        poke_interval=3,
        timeout=30 * 60,
    ).expand(send_result=send.output)

    @task
    def check_delivery(summaries: list[dict[str, Any]]) -> dict[str, Any]:
        """Add up the batches' outcomes."""
        totals: dict[str, int] = {}
        for summary in summaries:
            for outcome, count in summary["outcomes"].items():
                totals[outcome] = totals.get(outcome, 0) + count
        total = sum(summary["total"] for summary in summaries)
        print(f"{len(summaries)} batch(es), {total} messages: {totals}")
        return {"batches": len(summaries), "total": total, "outcomes": totals}

    check_delivery(wait.output)
