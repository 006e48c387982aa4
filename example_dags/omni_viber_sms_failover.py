"""Viber first, SMS fallback: send, wait for the delivery reports, branch on what happened.

This is Infobip's three-step OMNI recipe as one DAG:

1. ``get_or_create_scenario``: the VIBER-then-SMS scenario, created once and reused by name.
2. ``send_viber_with_sms_fallback``: one rich Viber message (text, image, button) with an SMS
   text that Infobip sends instead when Viber is rejected or its validity runs out.
3. ``wait_for_delivery``: a deferrable sensor that collects the delivery reports of this send
   (in the triggerer, without holding a worker slot) and returns a summary.

Then ``branch_on_outcome`` picks ``all_on_viber``, ``some_by_sms_fallback`` or ``some_failed``,
and ``log_summary`` prints the summary as a table whichever branch ran.

Trigger it with ``{"backend": "messages_api"}`` to send the same message through Infobip's Messages API
instead of OMNI: no scenario is created (each request carries the flow, Viber then the SMS step in
``failover``), and the wait and the branch are the same.

Trigger it with ``{"dry_run": true}`` to see what would be sent (the first request, the bulks) with
nothing sent; every branch is then skipped.

Trigger it with a config to choose the recipients, e.g. ``{"recipients": ["41793026727"]}``. The
defaults cover every persona of the OMNI sandbox (by the number's last digit: 0-5 Viber user,
6-7 no Viber so SMS, 8 unreachable, 9 never confirms so the message expires). The validity
periods are short so that unconfirmed messages expire quickly; on a real account use hours.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, Param, task

from airflow_provider_omni.operators.branch import OmniDeliveryBranchOperator
from airflow_provider_omni.operators.scenario import OmniCreateScenarioOperator
from airflow_provider_omni.operators.send import OmniSendAdvancedMessageOperator
from airflow_provider_omni.sensors.delivery_report import OmniDeliveryReportSensor

#: One number per sandbox persona (the last digit decides what happens to the message).
DEFAULT_RECIPIENTS = [
    "41793026720",  # 0-5: Viber user, delivered on Viber
    "41793026721",
    "41793026722",
    "41793026723",
    "41793026724",
    "41793026725",
    "41793026726",  # 6-7: no Viber, delivered by the SMS fallback
    "41793026727",
    "41793026728",  # 8: no Viber and the SMS is undeliverable: failed
    "41793026729",  # 9: never confirmed: Viber, then SMS, expire
]

SCENARIO_NAME = "Airflow example: Viber then SMS"
VIBER_SENDER = "DemoCompany"
SMS_SENDER = "DemoCo"
SCENARIO_FLOW = [
    {"channel": "VIBER", "from": VIBER_SENDER},
    {"channel": "SMS", "from": SMS_SENDER},
]

VIBER_MESSAGE = {
    "text": "Your order #4711 has shipped and arrives tomorrow between 9:00 and 12:00.",
    "imageURL": "https://example.com/images/parcel.png",
    "buttonText": "Track parcel",
    "buttonURL": "https://example.com/track/4711",
    "isPromotional": False,
}
SMS_MESSAGE = {"text": "Your order #4711 has shipped. Track it: https://example.com/track/4711"}

with DAG(
    dag_id="omni_viber_sms_failover",
    description="Send on Viber with SMS fallback through Infobip OMNI and branch on the delivery outcome",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["omni", "infobip", "example"],
    params={
        "recipients": Param(
            DEFAULT_RECIPIENTS,
            type="array",
            items={"type": "string", "pattern": r"^\+?[1-9][0-9]{6,14}$"},
            minItems=1,
            description="Phone numbers in international format (the defaults cover every sandbox persona).",
        ),
        "dry_run": Param(
            False,
            type="boolean",
            description="Validate and show what would be sent (first request, bulks), send nothing.",
        ),
        "backend": Param(
            "omni",
            type="string",
            enum=["omni", "messages_api"],
            description="omni: a stored scenario (/omni/1); messages_api: the flow in each request "
            "(/messages-api/1). The same wait and branches either way.",
        ),
    },
) as dag:
    scenario = OmniCreateScenarioOperator(
        task_id="get_or_create_scenario",
        name=SCENARIO_NAME,
        flow=SCENARIO_FLOW,
        backend="{{ params.backend }}",  # on the Messages API: nothing to create, says so
    )

    send = OmniSendAdvancedMessageOperator(
        task_id="send_viber_with_sms_fallback",
        scenario_key=scenario.output,
        destinations="{{ params.recipients }}",
        viber=VIBER_MESSAGE,
        sms=SMS_MESSAGE,
        viber_validity=timedelta(minutes=2),
        sms_validity=timedelta(minutes=5),
        callback_data="order-4711",
        dry_run="{{ params.dry_run }}",
        backend="{{ params.backend }}",
        viber_sender=VIBER_SENDER,  # the Messages API's senders (OMNI's are in the scenario)
        sms_sender=SMS_SENDER,
    )

    wait = OmniDeliveryReportSensor(
        task_id="wait_for_delivery",
        send_result=send.output,
        deferrable=True,
        poke_interval=5,
        timeout=30 * 60,
    )

    branch = OmniDeliveryBranchOperator(
        task_id="branch_on_outcome",
        summary=wait.output,
        viber_task_ids=["all_on_viber"],
        sms_fallback_task_ids=["some_by_sms_fallback"],
        failed_task_ids=["some_failed"],
        backend="{{ params.backend }}",
    )

    @task
    def all_on_viber(summary: dict[str, Any]) -> None:
        """Every message was delivered on Viber: the cheapest outcome."""
        print(f"All {summary['total']} messages were delivered on Viber.")

    @task
    def some_by_sms_fallback(summary: dict[str, Any]) -> None:
        """Some recipients only got the SMS: worth knowing, SMS costs more than Viber."""
        outcomes = summary["outcomes"]
        print(
            f"{outcomes.get('SMS_DELIVERED', 0)} of {summary['total']} recipients got the SMS fallback "
            f"(not on Viber); {outcomes.get('VIBER_DELIVERED', 0)} were reached on Viber."
        )

    @task
    def some_failed(summary: dict[str, Any]) -> None:
        """Some messages reached nobody: hand them to a follow-up (e-mail, a call, a ticket...)."""
        print(f"{summary['outcomes'].get('FAILED', 0)} of {summary['total']} messages were not delivered:")
        for item in summary.get("failed", []):
            error = item.get("error") or "no error code"
            print(f"  {item['to']}: {item['status']} on {item['channel']} ({error})")

    @task(trigger_rule="none_failed_min_one_success")
    def log_summary(summary: dict[str, Any]) -> None:
        """Print the delivery summary as a table, whichever branch ran."""
        rows = [(outcome, str(count)) for outcome, count in summary["outcomes"].items()]
        rows.append(("total", str(summary["total"])))
        rows += [(f"price {currency}", f"{amount:.4f}") for currency, amount in summary["price"].items()]
        rows += [(f"error {name}", str(count)) for name, count in summary.get("errors", {}).items()]
        width = max(len(name) for name, _ in rows)
        lines = [f"{'outcome'.ljust(width)} | count", f"{'-' * width}-+------"]
        lines += [f"{name.ljust(width)} | {value}" for name, value in rows]
        print("Delivery summary\n" + "\n".join(lines))

    branch_targets = [all_on_viber(wait.output), some_by_sms_fallback(wait.output), some_failed(wait.output)]
    branch >> branch_targets
    branch_targets >> log_summary(wait.output)
