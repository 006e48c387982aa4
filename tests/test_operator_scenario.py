"""OmniCreateScenarioOperator: get-or-create by name and flow, update_if_different, validation."""

from __future__ import annotations

from typing import Any

import pendulum
import pytest

from airflow_provider_omni.exceptions import OmniValidationError
from airflow_provider_omni.hooks.omni import OmniHook
from airflow_provider_omni.models import OmniChannel, Step
from airflow_provider_omni.operators.scenario import OmniCreateScenarioOperator, parse_flow

VIBER_SMS = [{"channel": "VIBER", "from": "InfoSMS"}, {"channel": "SMS", "from": "InfoSMS"}]
SMS_ONLY = [{"channel": "SMS", "from": "InfoSMS"}]


def run(**kwargs: Any) -> str:
    kwargs.setdefault("task_id", "scenario")
    return OmniCreateScenarioOperator(**kwargs).execute({})


def scenario_stats(sandbox: Any) -> tuple[int, int]:
    stats = sandbox.admin.stats()
    return stats["scenarios"], stats["requests"].get("scenarios.create", 0)


def test_second_run_reuses_the_scenario(omni_sandbox: Any, omni_connection: str) -> None:
    first = run(name="parcels", flow=VIBER_SMS)
    second = run(name="parcels", flow=[Step(channel=OmniChannel.VIBER, sender="InfoSMS"), VIBER_SMS[1]])

    assert first == second
    assert scenario_stats(omni_sandbox) == (1, 1)


def test_same_name_other_flow_creates_another_by_default(omni_sandbox: Any, omni_connection: str) -> None:
    first = run(name="parcels", flow=VIBER_SMS)
    second = run(name="parcels", flow=SMS_ONLY)

    assert first != second
    assert scenario_stats(omni_sandbox) == (2, 2)


def test_update_if_different_updates_in_place(omni_sandbox: Any, omni_connection: str) -> None:
    first = run(name="parcels", flow=VIBER_SMS)
    second = run(name="parcels", flow=SMS_ONLY, update_if_different=True)

    assert first == second
    assert scenario_stats(omni_sandbox) == (1, 1)
    flow = OmniHook(omni_connection).get_scenario(first).flow
    assert [(str(getattr(s.channel, "value", s.channel)), s.sender) for s in flow] == [("SMS", "InfoSMS")]


def test_default_flag_makes_it_the_account_default(omni_sandbox: Any, omni_connection: str) -> None:
    key = run(name="main", flow=VIBER_SMS, default=True)

    defaults = OmniHook(omni_connection).list_scenarios(is_default=True)
    assert [s.key for s in defaults] == [key]


@pytest.mark.parametrize(
    ("flow", "expected"),
    [
        ([{"channel": "VIBER", "from": "x"}, {"channel": "SMSS", "from": "x"}], "flow[1].channel"),
        ([{"channel": "VIBER", "from": "x", "colour": "red"}], "flow[0].colour"),
        ([], "at least one step"),
        ('[{"channel": "VIBER"', "not a list of steps nor JSON"),
    ],
)
def test_invalid_flow_is_refused_before_any_request(
    omni_sandbox: Any, omni_connection: str, flow: Any, expected: str
) -> None:
    with pytest.raises(OmniValidationError) as err:
        run(name="bad", flow=flow)

    assert expected in str(err.value)
    assert not any(omni_sandbox.admin.stats()["requests"].values())


def test_flow_as_json_text_is_read() -> None:
    steps = parse_flow('[{"channel": "VIBER", "from": "a"}, {"channel": "SMS", "from": "b"}]')
    assert [(s.channel, s.sender) for s in steps] == [(OmniChannel.VIBER, "a"), (OmniChannel.SMS, "b")]


@pytest.mark.dag
def test_templated_name_and_flow_in_a_dag_run(
    run_dag: Any, task_states: Any, omni_sandbox: Any, omni_connection: str
) -> None:
    from tests.airflow_compat import DAG

    with DAG(
        "send_scenario_templated",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1),
        params={"sender": "Shop", "team": "parcels"},
    ) as dag:
        OmniCreateScenarioOperator(
            task_id="scenario",
            name="{{ params.team }}-failover",
            flow=[
                {"channel": "VIBER", "from": "{{ params.sender }}"},
                {"channel": "SMS", "from": "{{ params.sender }}"},
            ],
        )

    dr = run_dag(dag)

    assert task_states(dr) == {"scenario": "success"}
    (scenario,) = OmniHook(omni_connection).list_scenarios()
    assert scenario.name == "parcels-failover"
    assert [s.sender for s in scenario.flow] == ["Shop", "Shop"]


def test_the_scenario_a_send_uses_is_its_own_or_the_accounts_default(
    omni_sandbox: Any, omni_connection: str
) -> None:
    from airflow_provider_omni.exceptions import OmniConfigurationError, OmniNotFoundError
    from airflow_provider_omni.sensors.delivery_report import OmniDeliveryReportSensor

    hook = OmniHook(omni_connection)
    assert hook.get_scenario_or_default(None) is None
    sensor = OmniDeliveryReportSensor(task_id="wait", bulk_ids=["b"])
    with pytest.raises(OmniConfigurationError, match="the account has none now"):
        sensor._flow_of_scenario(None)
    flow = [{"channel": "VIBER", "from": "Shop"}, {"channel": "SMS", "from": "Shop"}]
    default = hook.create_scenario("default", flow, default=True)
    other = hook.create_scenario("other", flow[1:])
    assert hook.get_scenario_or_default(None).key == default.key
    assert hook.get_scenario_or_default(other.key).key == other.key
    assert sensor._flow_of_scenario(other.key) == ("SMS",)
    with pytest.raises(OmniNotFoundError, match="not on this account"):
        sensor._flow_of_scenario("0" * 32)
