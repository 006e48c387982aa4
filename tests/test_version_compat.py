"""What ``version_compat`` mends of one Airflow version, tested on every version it runs on."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow_provider_omni.version_compat import AIRFLOW_V_3_0_PLUS, AIRFLOW_V_3_1_PLUS, sensor_context

ON_AIRFLOW_3_0 = AIRFLOW_V_3_0_PLUS and not AIRFLOW_V_3_1_PLUS


class TextRescheduleDateTI:
    """What Airflow 3.0's task runner gives under ``dag.test()``: the first reschedule date as text."""

    max_tries = 3

    def get_first_reschedule_date(self, context: Any) -> str:
        return "2026-11-29T06:57:35.822394Z"


def test_the_first_reschedule_date_reaches_the_base_sensor_as_a_datetime_on_airflow_3_0() -> None:
    ti = TextRescheduleDateTI()
    context = {"ti": ti, "task_instance": ti, "run_id": "r"}

    fixed = sensor_context(context)

    if not ON_AIRFLOW_3_0:  # nothing to mend: the context is passed on as it is
        assert fixed is context
        return
    first = fixed["ti"].get_first_reschedule_date(fixed)
    assert isinstance(first, datetime) and first.isoformat() == "2026-11-29T06:57:35.822394+00:00"
    assert fixed["task_instance"] is fixed["ti"] and fixed["ti"].max_tries == 3  # the rest is the ti's
    assert fixed["run_id"] == "r"
