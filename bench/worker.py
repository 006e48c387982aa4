"""Measurements that run in a fresh interpreter: ``python -m bench.worker TASK 'JSON ARGS'``.

Each task prints one line ``BENCH-RESULT {json}``.  Only the standard library is imported at module
level, so that the parse-cost task times nothing but the imports it is asked to time.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

RESULT_MARK = "BENCH-RESULT "

HEAVY_MODULES = (
    "airflow_provider_omni.sandbox",
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "requests",
    "tenacity",
    "aiohttp",
    "pandas",
    "numpy",
    "sqlalchemy",
    "kubernetes",
)


def _omni_imports() -> None:
    from airflow_provider_omni.operators.scenario import OmniCreateScenarioOperator  # noqa: F401
    from airflow_provider_omni.operators.send import OmniSendAdvancedMessageOperator  # noqa: F401
    from airflow_provider_omni.sensors.delivery_report import OmniDeliveryReportSensor  # noqa: F401


def _standard_imports() -> None:
    from airflow.providers.standard.operators.python import PythonOperator  # noqa: F401


def _build_omni_dag() -> None:
    from airflow.sdk import DAG

    from airflow_provider_omni.operators.scenario import OmniCreateScenarioOperator
    from airflow_provider_omni.operators.send import OmniSendAdvancedMessageOperator
    from airflow_provider_omni.sensors.delivery_report import OmniDeliveryReportSensor

    with DAG("bench_parse_omni", schedule=None):
        scenario = OmniCreateScenarioOperator(
            task_id="scenario",
            name="bench",
            flow=[{"channel": "VIBER", "from": "InfoSMS"}, {"channel": "SMS", "from": "InfoSMS"}],
        )
        send = OmniSendAdvancedMessageOperator(
            task_id="send",
            scenario_key=scenario.output,  # type: ignore[arg-type]  # templated: an XComArg is fine
            destinations=["41793026727", "41793026728"],
            viber={"text": "Hello"},
            sms={"text": "Hello"},
        )
        OmniDeliveryReportSensor(task_id="wait", send_result=send.output, deferrable=True)


def _build_standard_dag() -> None:
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG

    with DAG("bench_parse_standard", schedule=None):
        a = PythonOperator(task_id="scenario", python_callable=print)
        b = PythonOperator(task_id="send", python_callable=print, op_args=[a.output])
        PythonOperator(task_id="wait", python_callable=print, op_args=[b.output])


def task_parse(args: dict[str, Any]) -> dict[str, Any]:
    """Time ``from airflow.sdk import DAG``, then the variant's imports, then building its DAG."""
    variant = args["variant"]
    t0 = time.perf_counter()
    from airflow.sdk import DAG  # noqa: F401

    t1 = time.perf_counter()
    before = set(sys.modules)
    if variant == "omni":
        _omni_imports()
    elif variant == "standard":
        _standard_imports()
    t2 = time.perf_counter()
    build_error = None
    try:
        if variant == "omni":
            _build_omni_dag()
        elif variant == "standard":
            _build_standard_dag()
    except Exception as exc:  # report, do not hide: the table says the DAG could not be built
        build_error = f"{type(exc).__name__}: {exc}"
    t3 = time.perf_counter()
    added = set(sys.modules) - before
    heavy = {
        name: {
            "by_sdk": any(m == name or m.startswith(name + ".") for m in before),
            "added": any(m == name or m.startswith(name + ".") for m in added),
        }
        for name in HEAVY_MODULES
    }
    return {
        "sdk_s": t1 - t0,
        "import_s": t2 - t1,
        "build_s": t3 - t2,
        "build_error": build_error,
        "modules_added": len(added),
        "heavy": heavy,
    }


TASKS: dict[str, Any] = {"parse": task_parse}


def _register_more() -> None:
    # The send/wait/size tasks import the provider; kept in their own module so that the parse task
    # above never pays for them.
    from bench import triggerer_tasks, worker_tasks

    TASKS.update(worker_tasks.TASKS)
    TASKS.update(triggerer_tasks.TASKS)


def main(argv: list[str]) -> int:
    """Run one task and print its result line."""
    task, raw = argv[0], (argv[1] if len(argv) > 1 else "{}")
    if task not in TASKS:
        _register_more()
    result = TASKS[task](json.loads(raw))
    sys.stdout.write(RESULT_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
