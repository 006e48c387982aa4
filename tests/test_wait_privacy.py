"""Personal data: a real deferrable wait (dag.test()) with ``show_full_numbers`` off shows no full phone
number in the sensor's XCom, the detail file, the trigger's serialized kwargs, its event or the task log."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
import pytest
from test_sensor import ALL_PERSONAS, EXPECTED_ALL, xcom_of

from airflow_provider_omni.sensors.delivery_report import OmniDeliveryReportSensor
from airflow_provider_omni.triggers.delivery_report import OmniDeliveryReportTrigger


def wait_dag(dag_id: str, numbers: list[str], detail_path: str) -> Any:
    from airflow_provider_omni.operators.scenario import OmniCreateScenarioOperator
    from airflow_provider_omni.operators.send import OmniSendAdvancedMessageOperator
    from tests.airflow_compat import DAG

    with DAG(dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False) as dag:
        scenario = OmniCreateScenarioOperator(
            task_id="scenario",
            name="privacy-tests",
            flow=[{"channel": "VIBER", "from": "InfoSMS"}, {"channel": "SMS", "from": "InfoSMS"}],
        )
        send = OmniSendAdvancedMessageOperator(
            task_id="send",
            scenario_key=scenario.output,
            destinations=numbers,
            viber={"text": "Your parcel is on its way"},
            sms={"text": "Your parcel is on its way"},
            viber_validity=timedelta(seconds=35),
            sms_validity=timedelta(seconds=30),
        )
        OmniDeliveryReportSensor(
            task_id="wait",
            send_result=send.output,
            deferrable=True,
            poke_interval=0.2,
            timeout=120,
            detail_path=detail_path,
        )
        scenario >> send
    return dag


def full_numbers_in(text: str) -> list[str]:
    return [number for number in ALL_PERSONAS if number in text]


@pytest.mark.dag
def test_a_deferrable_wait_shows_no_full_number(
    omni_sandbox, omni_connection, run_dag, task_states, caplog, capsys, tmp_path, monkeypatch
):
    omni_sandbox.admin.configure(time_scale=10)  # the silent persona needs ~6.5 s: the wait really defers
    seen_kwargs: list[dict[str, Any]] = []
    seen_events: list[Any] = []
    serialize = OmniDeliveryReportTrigger.serialize
    execute_complete = OmniDeliveryReportSensor.execute_complete

    def recording_serialize(self: OmniDeliveryReportTrigger) -> tuple[str, dict[str, Any]]:
        path, kwargs = serialize(self)
        seen_kwargs.append(kwargs)
        return path, kwargs

    def recording_execute_complete(self: Any, context: Any, event: Any = None) -> Any:
        seen_events.append(event)
        return execute_complete(self, context, event)

    run = OmniDeliveryReportTrigger.run

    def recording_run(self: OmniDeliveryReportTrigger) -> Any:
        # Airflow 2.11's dag.test() runs the deferred trigger object without serializing it; what a
        # triggerer would store is its serialize() all the same
        seen_kwargs.append(serialize(self)[1])
        return run(self)

    monkeypatch.setattr(OmniDeliveryReportTrigger, "serialize", recording_serialize)
    monkeypatch.setattr(OmniDeliveryReportTrigger, "run", recording_run)
    monkeypatch.setattr(OmniDeliveryReportSensor, "execute_complete", recording_execute_complete)
    caplog.set_level("DEBUG")
    detail = tmp_path / "detail.jsonl"

    dag_run = run_dag(wait_dag("wait_privacy", ALL_PERSONAS, str(detail)))

    assert task_states(dag_run)["wait"] == "success"
    assert "[DAG TEST] running trigger in line" in caplog.text  # it did defer
    summary = xcom_of(dag_run, "wait")
    assert summary["outcomes"] == EXPECTED_ALL
    assert seen_kwargs and seen_events
    assert full_numbers_in(json.dumps(summary)) == []
    assert any("*" in f["to"] for f in summary["failed"])
    assert full_numbers_in(detail.read_text()) == []
    assert full_numbers_in(json.dumps(seen_kwargs)) == []
    assert full_numbers_in(json.dumps(seen_events)) == []
    captured = capsys.readouterr()
    output = "\n".join((captured.out, captured.err, caplog.text))
    assert "Delivery summary" in output and "OmniDeliveryReportSensor" in output
    # Airflow 3.0's supervisor DEBUG-logs every message from the task, SetRenderedFields included:
    # the send task's templated destinations (also shown in the UI's Rendered Template)
    leaks = [
        line for line in output.splitlines() if full_numbers_in(line) and "SetRenderedFields" not in line
    ]
    assert leaks == []
    # and the task log files written for the wait task, if the run wrote any
    logs = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    for path in logs.rglob("*") if logs.exists() else []:
        if path.is_file() and "task_id=wait" in str(path) and "dag_id=wait_privacy" in str(path):
            assert full_numbers_in(path.read_text(errors="replace")) == [], path
