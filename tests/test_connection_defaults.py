"""Defaults on the connection: scenario (key or name), Viber / SMS validity and a text footer.

A team keeps them in one place; the send operator and the notifier use them where the task gives
none, and the task's own arguments win. Checked on what the sandbox received.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pendulum
import pytest
from test_operator_send import FLOW, make_context, make_operator, numbers

from airflow_provider_omni.exceptions import OmniValidationError
from airflow_provider_omni.hooks.omni import OmniHook
from airflow_provider_omni.notifications.omni import OmniNotifier
from airflow_provider_omni.sandbox.server import OmniSandbox, connection_dict
from airflow_provider_omni.sensors.delivery_report import OmniDeliveryReportSensor

FOOTER = "Reply STOP to opt out"
#: the team's validities and footer on the connection
TEAM_DEFAULTS = {
    "default_viber_validity_minutes": 90,
    "default_sms_validity_minutes": 45,
    "text_footer": FOOTER,
}
COLLECTED: list[dict[str, Any]] = []


def _connection(monkeypatch: pytest.MonkeyPatch, sandbox: OmniSandbox, **extra: Any) -> None:
    conn = connection_dict(sandbox.url, sandbox.api_key, **extra)
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_DEFAULT", json.dumps(conn))


def _sent_bodies(sandbox: OmniSandbox) -> list[dict[str, Any]]:
    return [r["body"] for r in sandbox.admin.requests() if r.get("endpoint") == "advanced"]


@pytest.fixture
def scenarios(omni_sandbox: OmniSandbox, omni_connection: str) -> dict[str, str]:
    """Two scenarios (neither the account's default): name -> key."""
    hook = OmniHook(omni_connection)
    return {name: hook.create_scenario(name, FLOW).key for name in ("team-alerts", "campaigns")}


def test_the_connections_scenario_key_validities_and_footer_are_used(omni_sandbox, scenarios, monkeypatch):
    _connection(monkeypatch, omni_sandbox, default_scenario_key=scenarios["team-alerts"], **TEAM_DEFAULTS)
    result = make_operator(destinations=numbers(2)).execute(make_context())

    (body,) = _sent_bodies(omni_sandbox)
    assert body["scenarioKey"] == scenarios["team-alerts"]
    assert result["scenario_key"] == scenarios["team-alerts"]  # the sensor reads the flow of this one
    assert (body["viber"]["validityPeriod"], body["viber"]["validityPeriodTimeUnit"]) == (90, "MINUTES")
    assert (body["sms"]["validityPeriod"], body["sms"]["validityPeriodTimeUnit"]) == (45, "MINUTES")
    assert body["viber"]["text"] == f"Your parcel arrives today\n{FOOTER}"
    assert body["sms"]["text"] == f"Your parcel arrives today\n{FOOTER}"


def test_the_tasks_arguments_win(omni_sandbox, scenarios, monkeypatch):
    _connection(monkeypatch, omni_sandbox, default_scenario_key=scenarios["team-alerts"], **TEAM_DEFAULTS)
    make_operator(
        destinations=numbers(1),
        scenario_key=scenarios["campaigns"],
        viber={"text": "Sale", "validityPeriod": 2, "validityPeriodTimeUnit": "HOURS"},
        sms="Sale",
        sms_validity=10,
        footer="",
    ).execute(make_context())

    (body,) = _sent_bodies(omni_sandbox)
    assert body["scenarioKey"] == scenarios["campaigns"]
    assert (body["viber"]["validityPeriod"], body["viber"]["validityPeriodTimeUnit"]) == (2, "HOURS")
    assert (body["sms"]["validityPeriod"], body["sms"]["validityPeriodTimeUnit"]) == (10, "MINUTES")
    assert (body["viber"]["text"], body["sms"]["text"]) == ("Sale", "Sale")


def test_a_default_scenario_name_is_looked_up(omni_sandbox, scenarios, monkeypatch):
    _connection(monkeypatch, omni_sandbox, default_scenario_name="campaigns")
    result = make_operator(destinations=numbers(1)).execute(make_context())

    (body,) = _sent_bodies(omni_sandbox)
    assert body["scenarioKey"] == scenarios["campaigns"] == result["scenario_key"]


def test_an_unknown_default_scenario_name_is_refused_before_sending(omni_sandbox, scenarios, monkeypatch):
    _connection(monkeypatch, omni_sandbox, default_scenario_name="no-such-scenario")

    with pytest.raises(OmniValidationError, match=r"default_scenario_name.*no scenario has that name"):
        make_operator(destinations=numbers(1)).execute(make_context())
    assert _sent_bodies(omni_sandbox) == []


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"default_scenario_key": "A", "default_scenario_name": "b"}, "both set"),
        ({"default_viber_validity_minutes": 0}, "default_viber_validity_minutes"),
        ({"default_sms_validity_minutes": 2881}, "default_sms_validity_minutes"),
        ({"default_sms_validity_minutes": "soon"}, "default_sms_validity_minutes"),
    ],
)
def test_bad_defaults_are_refused_naming_the_extra(omni_sandbox, monkeypatch, extra, named):
    _connection(monkeypatch, omni_sandbox, **extra)

    with pytest.raises(OmniValidationError, match=named):
        make_operator(destinations=numbers(1)).execute(make_context())
    assert _sent_bodies(omni_sandbox) == []


def test_a_footer_that_makes_the_text_too_long_names_the_field(omni_sandbox, scenarios, monkeypatch):
    _connection(monkeypatch, omni_sandbox, text_footer="x" * 1000)

    with pytest.raises(OmniValidationError, match=r"viber\.text"):
        make_operator(destinations=numbers(1), viber={"text": "y" * 500}).execute(make_context())
    assert _sent_bodies(omni_sandbox) == []


@pytest.mark.parametrize("path", ["notify", "async_notify"])
def test_the_notifier_uses_the_connections_scenario_validities_and_footer(
    omni_sandbox, scenarios, monkeypatch, path
):
    _connection(
        monkeypatch,
        omni_sandbox,
        default_scenario_name="team-alerts",
        default_viber_validity_minutes=5,
        default_sms_validity_minutes=15,
        text_footer=FOOTER,
    )
    notifier = OmniNotifier(destinations="41793026727", viber_text="DAG failed")
    context = {"dag_run": None, "run_id": "r1", "reason": "failed", "dag": None}
    if path == "notify":
        notifier.notify(context)
    else:
        asyncio.run(notifier.async_notify(context))

    (body,) = _sent_bodies(omni_sandbox)
    assert body["scenarioKey"] == scenarios["team-alerts"]
    assert body["viber"]["validityPeriod"] == 5 and body["sms"]["validityPeriod"] == 15
    assert body["viber"]["text"] == body["sms"]["text"] == f"DAG failed\n{FOOTER}"


@pytest.mark.dag
def test_a_dag_without_scenario_or_validities_uses_the_connection(
    run_dag: Any, task_states: Any, omni_sandbox: OmniSandbox, scenarios: dict[str, str], monkeypatch
) -> None:
    from tests.airflow_compat import DAG, task

    _connection(
        monkeypatch,
        omni_sandbox,
        default_scenario_name="team-alerts",
        default_viber_validity_minutes=2,
        default_sms_validity_minutes=3,
        text_footer=FOOTER,
    )
    COLLECTED.clear()
    with DAG("send_with_connection_defaults", schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as dag:
        from airflow_provider_omni.operators.send import OmniSendAdvancedMessageOperator

        send = OmniSendAdvancedMessageOperator(
            task_id="send", destinations=["41793026720", "41793026726"], viber="Hello", sms="Hello"
        )
        wait = OmniDeliveryReportSensor(
            task_id="wait", send_result=send.output, poke_interval=0.2, timeout=120, mode="poke"
        )

        @task
        def collect(summary: dict[str, Any]) -> None:
            COLLECTED.append(summary)

        collect(wait.output)

    dr = run_dag(dag)

    assert dr.state == "success", task_states(dr)
    (body,) = _sent_bodies(omni_sandbox)
    assert body["scenarioKey"] == scenarios["team-alerts"]
    assert body["viber"]["text"] == body["sms"]["text"] == f"Hello\n{FOOTER}"
    assert body["viber"]["validityPeriod"] == 2 and body["sms"]["validityPeriod"] == 3
    assert COLLECTED[0]["outcomes"]["VIBER_DELIVERED"] == 1
    assert COLLECTED[0]["outcomes"]["SMS_DELIVERED"] == 1
