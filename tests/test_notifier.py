"""OmniNotifier: templated Viber-with-SMS-fallback notification from callbacks, sent once per callback."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pendulum
import pytest
from test_sensor import scenario_key

from airflow_provider_omni.hooks.omni import OmniHook
from airflow_provider_omni.notifications.omni import OmniNotifier, notification_bulk_id
from tests.airflow_compat import AIRFLOW_V_3_1_PLUS


def fake_context(try_number: int = 1, task_id: str = "load") -> dict[str, Any]:
    from tests.airflow_compat import DAG

    ti = SimpleNamespace(
        dag_id="etl", task_id=task_id, run_id="manual__1", map_index=-1, try_number=try_number
    )
    return {"ti": ti, "run_id": "manual__1", "dag": DAG("etl", schedule=None)}


def sends(sandbox: Any) -> list[dict[str, Any]]:
    return [r["body"] for r in sandbox.admin.requests()]


def test_bulk_id_is_deterministic_per_task_try_and_short():
    first = notification_bulk_id(fake_context())
    assert first == notification_bulk_id(fake_context())
    assert first != notification_bulk_id(fake_context(try_number=2))
    assert first != notification_bulk_id(fake_context(task_id="other"))
    # another deployment sharing the account (another namespace) never finds this one in the logs
    assert notification_bulk_id(fake_context(), namespace="prod") != notification_bulk_id(
        fake_context(), namespace="staging"
    )
    dag_level = notification_bulk_id(
        {"run_id": "manual__1", "dag": SimpleNamespace(dag_id="etl"), "reason": "x"}
    )
    assert dag_level not in (first, notification_bulk_id(fake_context(try_number=0)))
    assert len(first) <= 100


def test_each_missed_deadline_has_its_own_bulk_id():
    """A deadline alert's context has no task: the run (as JSON) and the deadline name the bulk."""

    def deadline(run_id: str, deadline_id: str) -> dict[str, Any]:
        return {"dag_run": {"dag_id": "etl", "dag_run_id": run_id}, "deadline": {"id": deadline_id}}

    first = notification_bulk_id(deadline("manual__1", "d-1"))
    assert first == notification_bulk_id(deadline("manual__1", "d-1"))
    assert first != notification_bulk_id(deadline("manual__1", "d-2"))
    assert first != notification_bulk_id(deadline("manual__2", "d-1"))
    assert first != notification_bulk_id({**deadline("manual__1", "d-1"), "dag_run": {"dag_id": "other"}})


def test_a_repeated_callback_sends_once(omni_sandbox, omni_connection):
    key = scenario_key(OmniHook())
    for _ in range(2):
        OmniNotifier(scenario_key=key, destinations=["41793026727"], viber_text="Load failed")(fake_context())
    assert len(sends(omni_sandbox)) == 1
    # the next try is another notification
    OmniNotifier(scenario_key=key, destinations=["41793026727"], viber_text="Load failed")(fake_context(2))
    assert len(sends(omni_sandbox)) == 2


def test_numbers_can_be_one_templated_text(omni_sandbox, omni_connection):
    key = scenario_key(OmniHook())
    notifier = OmniNotifier(scenario_key=key, destinations="41793026720, 41793026726", viber_text="x")
    notifier(fake_context())
    [body] = sends(omni_sandbox)
    assert [d["to"]["phoneNumber"] for d in body["destinations"]] == ["41793026720", "41793026726"]


def test_an_invalid_number_fails_before_sending(omni_sandbox, omni_connection, caplog):
    notifier = OmniNotifier(scenario_key="K", destinations=["0123"], viber_text="x")
    if AIRFLOW_V_3_1_PLUS:
        with pytest.raises(Exception, match="phone number"):
            notifier(fake_context())
    else:  # Airflow 2.11 and 3.0: BaseNotifier.__call__ logs a notifier's error and returns
        caplog.set_level("ERROR")
        notifier(fake_context())
        assert "Failed to send notification" in caplog.text
        assert "phone number" in caplog.text
    assert sends(omni_sandbox) == []


@pytest.mark.dag
def test_failure_callback_renders_the_context_and_sends_once(
    omni_sandbox, omni_connection, run_dag, task_states
):
    from tests.airflow_compat import DAG, task

    key = scenario_key(OmniHook())
    notifier = OmniNotifier(
        scenario_key=key,
        destinations=["{{ params.on_call }}"],
        viber_text="{{ ti.task_id }} failed in {{ dag.dag_id }} (try {{ ti.try_number }})",
        sms_text="{{ ti.task_id }} failed",
    )
    with DAG(
        "wait_notifier",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1),
        params={"on_call": "41793026726"},
    ) as dag:

        @task(on_failure_callback=notifier, retries=0)
        def load() -> None:
            raise RuntimeError("boom")

        load()

    dag_run = run_dag(dag)
    assert task_states(dag_run)["load"] == "failed"
    [body] = sends(omni_sandbox)
    assert body["viber"]["text"] == "load failed in wait_notifier (try 1)"
    assert body["sms"]["text"] == "load failed"
    assert [d["to"]["phoneNumber"] for d in body["destinations"]] == ["41793026726"]
    assert body["scenarioKey"] == key
