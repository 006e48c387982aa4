"""A DAG file that uses the provider imports nothing heavy: no HTTP client, no models, no sandbox.

The DAG processor parses every DAG file again and again; what the provider imports at module level is
paid each time.  A fresh interpreter imports ``DAG`` as the example DAGs do (every DAG file pays it), notes
``sys.modules``, then does what a DAG file does with the provider: imports the operators, the sensor,
the branch operator and the notifier, and builds a DAG with them.  The modules that added must not
include the hook (``requests``, ``urllib3``), the pydantic models, the trigger or the sandbox.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

#: Modules that only running a task may need; never imported by parsing a DAG file.
RUN_TIME_ONLY = (
    "requests",
    "urllib3",
    "charset_normalizer",
    "fastapi",
    "starlette",
    "uvicorn",
    "airflow.triggers.base",
    "airflow_provider_omni.hooks.omni",
    "airflow_provider_omni.hooks._http",
    "airflow_provider_omni.models",
    "airflow_provider_omni.triggers.delivery_report",
    "airflow_provider_omni.sandbox",
)

DAG_FILE = textwrap.dedent(
    """
    import json
    import sys

    from airflow.providers.common.compat.sdk import DAG
    # Airflow's own base classes and what using them imports are paid by any provider: not counted
    # (on 3.0 a sensor in a DAG imports airflow.triggers.base)
    from airflow.providers.common.compat.sdk import BaseBranchOperator, BaseNotifier, BaseSensorOperator

    class PlainSensor(BaseSensorOperator):
        def poke(self, context):
            return True

    with DAG("baseline", schedule=None):
        PlainSensor(task_id="plain")

    before = set(sys.modules)

    from airflow_provider_omni.notifications.omni import OmniNotifier
    from airflow_provider_omni.operators.branch import OmniDeliveryBranchOperator
    from airflow_provider_omni.operators.scenario import OmniCreateScenarioOperator
    from airflow_provider_omni.operators.send import OmniSendAdvancedMessageOperator
    from airflow_provider_omni.sensors.delivery_report import OmniDeliveryReportSensor

    notify = OmniNotifier(scenario_key="k", destinations="41793026727", viber_text="{{ ti.task_id }} failed")
    with DAG("parse_cost", schedule=None, on_failure_callback=notify) as dag:
        scenario = OmniCreateScenarioOperator(
            task_id="scenario",
            name="viber-then-sms",
            flow=[{"channel": "VIBER", "from": "Shop"}, {"channel": "SMS", "from": "Shop"}],
        )
        send = OmniSendAdvancedMessageOperator(
            task_id="send",
            scenario_key=scenario.output,
            destinations=["41793026727", "41793026728"],
            viber={"text": "Hello"},
            sms={"text": "Hello"},
        )
        wait = OmniDeliveryReportSensor(task_id="wait", send_result=send.output, deferrable=True)
        branch = OmniDeliveryBranchOperator(
            task_id="branch",
            summary=wait.output,
            viber_task_ids="scenario",
            sms_fallback_task_ids="scenario",
            failed_task_ids="scenario",
        )
        wait >> branch

    added = set(sys.modules) - before
    conn_ids = sorted({t.omni_conn_id for t in (scenario, send, wait)} | {notify.omni_conn_id})
    failed_cap = wait.failed_cap
    # a positive control: the same check sees the hook's imports once the hook is imported
    import airflow_provider_omni.hooks.omni  # noqa: F401

    print(
        json.dumps(
            {
                "before": sorted(before),
                "added": sorted(added),
                "after_hook": sorted(set(sys.modules) - before),
                "conn_ids": conn_ids,
                "failed_cap": failed_cap,
                "tasks": sorted(dag.task_dict),
            }
        )
    )
    """
)


def _under(name: str, modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m == name or m.startswith(name + "."))


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str] | list[str] | int]:
    """Run the DAG file in a fresh interpreter and return what it imported."""
    path = tmp_path_factory.mktemp("dags") / "omni_parse_cost_dag.py"
    path.write_text(DAG_FILE)
    result = subprocess.run(
        [sys.executable, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout.strip().splitlines()[-1])
    return {
        **data,
        "before": set(data["before"]),
        "added": set(data["added"]),
        "after_hook": set(data["after_hook"]),
    }


def test_the_dag_file_builds_its_tasks(parsed):
    assert parsed["tasks"] == ["branch", "scenario", "send", "wait"]


@pytest.mark.parametrize("module", RUN_TIME_ONLY)
def test_parsing_a_dag_file_does_not_import(parsed, module):
    if _under(module, parsed["before"]):
        pytest.skip(f"Airflow's DAG import itself imports {module}")
    assert _under(module, parsed["added"]) == []


def test_the_check_sees_the_hook_imports_once_the_hook_is_imported(parsed):
    # without this, a check that looked at the wrong module set would always pass
    assert "airflow_provider_omni.hooks.omni" in parsed["after_hook"]
    assert "requests" in parsed["after_hook"] or "requests" in parsed["before"]
    assert "airflow_provider_omni.models" in parsed["after_hook"]


def test_light_defaults_match_the_hook_and_the_outcome_logic(parsed):
    from airflow_provider_omni.hooks.omni import OmniHook
    from airflow_provider_omni.outcome import DEFAULT_FAILED_CAP

    assert parsed["conn_ids"] == [OmniHook.default_conn_name]
    assert parsed["failed_cap"] == DEFAULT_FAILED_CAP
