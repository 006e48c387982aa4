"""One argument moves a DAG from OMNI to the Messages API: the same send, wait and branches, for real
(``dag.test()`` against the sandbox), on both backends."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
import pytest

from airflow_provider_omni.operators.branch import OmniDeliveryBranchOperator
from tests.airflow_compat import HAS_TASK_STATE_STORE

BACKENDS = ("omni", "messages_api")
SENDERS = {"viber_sender": "ViberCo", "sms_sender": "InfoSMS"}


def failover_dag(dag_id: str, numbers: list[str], backend: str, **sensor: Any) -> Any:
    """Send (Viber text, image and button; SMS text), wait, branch; the scenario only on OMNI."""
    from airflow_provider_omni.operators.scenario import OmniCreateScenarioOperator
    from airflow_provider_omni.operators.send import OmniSendAdvancedMessageOperator
    from airflow_provider_omni.sensors.delivery_report import OmniDeliveryReportSensor
    from tests.airflow_compat import DAG, EmptyOperator

    with DAG(dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False) as dag:
        extra: dict[str, Any] = {}
        first: list[Any] = []
        if backend == "omni":
            scenario = OmniCreateScenarioOperator(
                task_id="scenario",
                name="backend-switch-tests",
                flow=[{"channel": "VIBER", "from": "ViberCo"}, {"channel": "SMS", "from": "InfoSMS"}],
            )
            extra["scenario_key"], first = scenario.output, [scenario]
        else:
            extra.update(SENDERS)
        send = OmniSendAdvancedMessageOperator(
            task_id="send",
            destinations=numbers,
            viber={
                "text": "Your parcel is on its way",
                "imageURL": "https://example.com/parcel.png",
                "buttonText": "Track it",
                "buttonURL": "https://example.com/track",
            },
            sms={"text": "Your parcel is on its way: https://example.com/track"},
            viber_validity=timedelta(seconds=35),
            sms_validity=timedelta(seconds=30),
            backend=backend,
            **extra,
        )
        wait = OmniDeliveryReportSensor(
            task_id="wait", send_result=send.output, poke_interval=0.2, timeout=120, **sensor
        )
        route = OmniDeliveryBranchOperator(
            task_id="route",
            summary=wait.output,
            viber_task_ids="on_viber",
            sms_fallback_task_ids="on_sms",
            failed_task_ids="on_failed",
            backend=backend,
        )
        ends = [EmptyOperator(task_id=t) for t in ("on_viber", "on_sms", "on_failed")]
        if first:
            first[0] >> send
        send >> wait >> route >> ends
    return dag


def _xcom(dr: Any, task_id: str) -> Any:
    ti = dr.get_task_instance(task_id)
    return ti.xcom_pull(task_ids=task_id)


@pytest.mark.dag
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("numbers", "winner", "outcomes"),
    [
        (["41793026720", "41793026721"], "on_viber", {"VIBER_DELIVERED": 2}),
        (["41793026720", "41793026726"], "on_sms", {"VIBER_DELIVERED": 1, "SMS_DELIVERED": 1}),
        (
            ["41793026720", "41793026726", "41793026728"],
            "on_failed",
            {"VIBER_DELIVERED": 1, "SMS_DELIVERED": 1, "FAILED": 1},
        ),
    ],
)
def test_the_same_dag_takes_the_same_branch_on_both_backends(
    omni_sandbox, omni_connection, run_dag, task_states, backend, numbers, winner, outcomes
):
    dag = failover_dag(f"switch_{backend}_{winner}", numbers, backend)
    dr = run_dag(dag)
    states = task_states(dr)
    for end in ("on_viber", "on_sms", "on_failed"):
        assert states[end] == ("success" if end == winner else "skipped"), states
    summary = _xcom(dr, "wait")
    assert {k: v for k, v in summary["outcomes"].items() if v} == outcomes
    # the sandbox saw the send on the backend asked for, and only there
    stats = omni_sandbox.admin.stats()
    on_messages_api = stats["messages_api"]["destinations"]
    assert (on_messages_api, stats["destinations"]) == (
        (len(numbers), 0) if backend == "messages_api" else (0, len(numbers))
    ), stats


@pytest.mark.dag
@pytest.mark.parametrize(
    "sensor",
    [{"mode": "reschedule"}, {"deferrable": True}],
    ids=["reschedule", "deferrable"],
)
def test_messages_api_wait_in_reschedule_and_deferrable_modes(
    omni_sandbox, omni_connection, run_dag, task_states, sensor
):
    dag = failover_dag(
        f"switch_ma_{next(iter(sensor))}",
        ["41793026720", "41793026726", "41793026728"],
        "messages_api",
        **sensor,
    )
    dr = run_dag(dag)
    if sensor.get("mode") == "reschedule" and not HAS_TASK_STATE_STORE:
        # before Airflow 3.3 each reschedule would lose what the earlier pokes consumed: refused
        assert task_states(dr)["wait"] == "failed"
        return
    assert task_states(dr)["on_failed"] == "success"
    summary = _xcom(dr, "wait")
    assert summary["outcomes"]["VIBER_DELIVERED"] == 1
    assert summary["outcomes"]["SMS_DELIVERED"] == 1
    assert summary["outcomes"]["FAILED"] == 1
    assert summary["failed"][0]["channel"] == "SMS"


def test_test_connection_on_the_messages_api_takes_no_report_and_names_a_missing_scope(
    omni_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_omni.hooks.omni import OmniHook

    connection = omni_sandbox.airflow_connection_json(backend="messages_api", **SENDERS)
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_DEFAULT", connection)
    hook = OmniHook()
    request = {
        "bulk_id": "conn-test-bulk",
        "destinations": [{"to": {"phoneNumber": "41793026720"}, "messageId": "conn-test-0"}],
        "viber": {"text": "Hi"},
        "sms": {"text": "Hi"},
    }
    hook.send_messages_api(request, hook.senders())
    omni_sandbox.admin.advance(minutes=5)

    ok, message = OmniHook().test_connection()

    assert ok, message
    assert "Messages API" in message
    # the report of the send is still there for its sensor: Test Connection consumed nothing
    assert [r.message_id for r in hook.get_messages_api_reports(bulk_id="conn-test-bulk")] == ["conn-test-0"]
    omni_sandbox.admin.configure(api_key_scopes=["omni-failover:message:send", "omni-failover:manage"])
    ok, message = OmniHook().test_connection()
    assert not ok
    assert "403" in message and "messages-api:message:send" in message, message


@pytest.mark.parametrize("awaited", [False, True], ids=["notify", "async_notify"])
def test_the_notifier_sends_through_the_messages_api_with_a_failover_step(
    omni_sandbox: Any, omni_connection: str, awaited: bool
) -> None:
    import asyncio

    from airflow_provider_omni.notifications.omni import OmniNotifier
    from tests.test_notifier import fake_context

    notifier = OmniNotifier(
        destinations="+41793026726",
        viber_text="Load failed",
        sms_text="Load failed (SMS)",
        backend="messages_api",
        viber_validity_minutes=5,
        **SENDERS,
    )
    context = fake_context()
    if awaited:
        asyncio.run(notifier.async_notify(context))
    else:
        notifier.notify(context)

    accepted = omni_sandbox.admin.messages_api_accepted()
    assert [(a["destination"], a["times"]) for a in accepted] == [("41793026726", 1)]
    assert omni_sandbox.admin.stats()["destinations"] == 0  # nothing through OMNI
    omni_sandbox.admin.advance(minutes=10)
    from airflow_provider_omni.hooks.omni import OmniHook

    reports = OmniHook().get_messages_api_reports(bulk_id=accepted[0]["bulkId"])
    assert [(r.channel, r.status.group_name if r.status else None) for r in reports] == [("SMS", "DELIVERED")]


def test_reschedule_mode_on_the_messages_api_without_a_task_state_store_is_refused_before_polling(
    omni_sandbox: Any, omni_connection: str
) -> None:
    from airflow_provider_omni.exceptions import OmniConfigurationError
    from airflow_provider_omni.sensors.delivery_report import OmniDeliveryReportSensor

    sensor = OmniDeliveryReportSensor(
        task_id="wait", bulk_ids={"b.1": 1}, backend="messages_api", mode="reschedule", poke_interval=1
    )
    with pytest.raises(OmniConfigurationError, match=r"deferrable=True"):
        sensor.execute({})
    assert omni_sandbox.admin.stats()["requests"] == {}  # nothing polled, nothing consumed


def test_the_branch_operator_takes_the_backend_and_refuses_an_unknown_one() -> None:
    from airflow_provider_omni.exceptions import OmniValidationError

    summary = {"outcomes": {"VIBER_DELIVERED": 1, "SMS_DELIVERED": 0, "FAILED": 0, "PENDING": 0}}
    common = {"viber_task_ids": "v", "sms_fallback_task_ids": "s", "failed_task_ids": "f", "summary": summary}
    assert OmniDeliveryBranchOperator(task_id="r1", backend="messages_api", **common).choose_branch({}) == [
        "v"
    ]
    with pytest.raises(OmniValidationError, match="'omni' or 'messages_api'"):
        OmniDeliveryBranchOperator(task_id="r2", backend="messages-apii", **common).choose_branch({})
