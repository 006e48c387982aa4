"""A daily notification pipeline: recipients from a file, sent in mapped batches, checked, alerted.

Every day this DAG

1. reads the recipients from a CSV file (``data/recipients.csv`` next to this file, column
   ``phone_number``), drops duplicates and invalid numbers, and cuts them into batches;
2. sends each batch as one mapped task instance (``.partial().expand()``), Viber first and SMS
   as the fallback, so one batch can be retried without resending the others;
3. waits for each batch's delivery reports with a mapped deferrable sensor;
4. checks the combined outcome and fails when too many messages were not delivered; the failure
   sends an alert to the on-call phone through
   :class:`~airflow_provider_omni.notifications.omni.OmniNotifier`.

Batches are at most 1000 recipients (the OMNI limit per request), which keeps the number of
report requests proportional to the batches, not to the recipients.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, Param, task

from airflow_provider_omni.notifications.omni import OmniNotifier
from airflow_provider_omni.operators.scenario import OmniCreateScenarioOperator
from airflow_provider_omni.operators.send import OmniSendAdvancedMessageOperator
from airflow_provider_omni.sensors.delivery_report import OmniDeliveryReportSensor

DATA_DIR = Path(__file__).parent / "data"
ON_CALL_PHONES = ["41793026700"]

#: Sends a short Viber (SMS fallback) alert to the on-call phone when a task fails.
alert_on_call = OmniNotifier(
    scenario_key="{{ ti.xcom_pull(task_ids='get_or_create_scenario') }}",
    destinations=ON_CALL_PHONES,
    viber_text="Airflow: {{ dag.dag_id }} failed in {{ ti.task_id }} (run {{ run_id }}).",
    sms_text="Airflow: {{ dag.dag_id }} failed in {{ ti.task_id }}.",
)

with DAG(
    dag_id="omni_scheduled_notifications",
    description="Daily Viber/SMS notifications from a recipients file, in mapped batches, with alerting",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["omni", "infobip", "example"],
    params={
        "recipients_file": Param(
            "recipients.csv",
            type="string",
            description="CSV file with a phone_number column (relative: in example_dags/data/).",
        ),
        "batch_size": Param(1000, type="integer", minimum=1, maximum=1000),
        "max_failed": Param(0, type="integer", minimum=0, description="Undelivered messages tolerated."),
    },
) as dag:
    scenario = OmniCreateScenarioOperator(
        task_id="get_or_create_scenario",
        name="Airflow example: daily notifications",
        flow=[{"channel": "VIBER", "from": "DemoCompany"}, {"channel": "SMS", "from": "DemoCo"}],
    )

    @task
    def load_recipient_batches(params: dict[str, Any] | None = None) -> list[list[str]]:
        """Read the recipients file and return the unique valid numbers in batches."""
        from airflow_provider_omni.models import normalize_phone_number
        from airflow_provider_omni.privacy import shorten_phone_number

        assert params is not None
        path = Path(params["recipients_file"])
        if not path.is_absolute():
            path = DATA_DIR / path
        numbers: dict[str, None] = {}
        with path.open(newline="", encoding="utf-8") as handle:
            for line, row in enumerate(csv.DictReader(handle), start=2):
                raw = (row.get("phone_number") or "").strip()
                try:
                    numbers[normalize_phone_number(raw)] = None
                except ValueError:
                    print(f"{path.name}:{line}: skipping {shorten_phone_number(raw)!r}: not a phone number")
        size = int(params["batch_size"])
        unique = list(numbers)
        batches = [unique[i : i + size] for i in range(0, len(unique), size)]
        print(f"{len(unique)} recipients from {path.name} in {len(batches)} batch(es) of at most {size}")
        return batches

    send = OmniSendAdvancedMessageOperator.partial(
        task_id="send_batch",
        scenario_key=scenario.output,
        viber={
            "text": "Good morning! Your daily summary is ready in the app.",
            "buttonText": "Open",
            "buttonURL": "https://example.com/app/summary",
            "isPromotional": False,
            "validityPeriod": 2,
            "validityPeriodTimeUnit": "HOURS",
        },
        sms={
            "text": "Good morning! Your daily summary is ready: https://example.com/app/summary",
            "validityPeriod": 4,
            "validityPeriodTimeUnit": "HOURS",
        },
    ).expand(destinations=load_recipient_batches())

    wait = OmniDeliveryReportSensor.partial(
        task_id="wait_for_batch",
        deferrable=True,
        poke_interval=30,
        timeout=8 * 60 * 60,
    ).expand(send_result=send.output)

    @task(on_failure_callback=alert_on_call)
    def check_delivery(
        summaries: list[dict[str, Any]], params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Add up the batches' outcomes; fail (and alert on-call) when too many were not delivered."""
        from airflow.providers.common.compat.sdk import AirflowFailException

        assert params is not None
        totals: dict[str, int] = {}
        for summary in summaries:
            for outcome, count in summary["outcomes"].items():
                totals[outcome] = totals.get(outcome, 0) + count
        total = sum(summary["total"] for summary in summaries)
        print(f"{len(summaries)} batch(es), {total} messages: {totals}")
        failed = totals.get("FAILED", 0)
        if failed > int(params["max_failed"]):
            raise AirflowFailException(f"{failed} of {total} messages were not delivered")
        return {"batches": len(summaries), "total": total, "outcomes": totals}

    check_delivery(wait.output)
