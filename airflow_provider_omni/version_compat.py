"""What differs between the Airflow versions the provider supports (2.11 to 3.3), in one place.

The version flags follow the official providers' ``version_compat.py``; the classes and exceptions
whose import path moved between Airflow 2 and 3 come from ``apache-airflow-providers-common-compat``
(``airflow.providers.common.compat.sdk``), which already picks the right path for the running Airflow.
Nothing else in the package looks at the Airflow version.

What degrades, by version (tested by ``make test-matrix``, see the README's compatibility table):

* the task state store (``context["task_state_store"]``) exists from Airflow 3.3: the send keeps its
  write-ahead record of bulks there and the sensor its progress; before 3.3 the send settles an earlier
  try from Infobip's logs and the sensor starts again from the logs after a restart;
* the connection form: Flask AppBuilder widgets on 2.11, the hook's widget methods on 3.0 and 3.1,
  ``conn-fields`` in ``provider.yaml`` from 3.2;
* deadline alerts and async notifiers exist from Airflow 3.1: ``BaseNotifier`` takes the callback's
  context and is awaitable (the triggerer runs ``async_notify``); on 2.11 and 3.0 a notifier is only
  called (``notify``);
* on Airflow 3.0, ``dag.test()`` hands the base sensor its first reschedule date as text, which it
  cannot subtract: :func:`sensor_context` mends it for a reschedule-mode wait.
"""

from __future__ import annotations

from typing import Any

from airflow import __version__ as _airflow_version
from packaging.version import Version


def _airflow_version_tuple() -> tuple[int, int, int]:
    version = Version(_airflow_version)
    return version.major, version.minor, version.micro


AIRFLOW_VERSION: tuple[int, int, int] = _airflow_version_tuple()
AIRFLOW_V_3_0_PLUS: bool = AIRFLOW_VERSION >= (3, 0, 0)
AIRFLOW_V_3_1_PLUS: bool = AIRFLOW_VERSION >= (3, 1, 0)
AIRFLOW_V_3_2_PLUS: bool = AIRFLOW_VERSION >= (3, 2, 0)
AIRFLOW_V_3_3_PLUS: bool = AIRFLOW_VERSION >= (3, 3, 0)

#: the task state store (``context["task_state_store"]``) that keeps the send's record of bulks
HAS_TASK_STATE_STORE: bool = AIRFLOW_V_3_3_PLUS
#: ``BaseNotifier(context=...)`` and ``await notifier`` (``async_notify``), which deadline alerts'
#: ``AsyncCallback`` runs in the triggerer
HAS_ASYNC_NOTIFIER: bool = AIRFLOW_V_3_1_PLUS

from airflow.providers.common.compat.sdk import (  # noqa: E402  (after the flags, like the official providers)
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseHook,
    BaseNotifier,
    BaseOperator,
    BaseSensorOperator,
    ObjectStoragePath,
    PokeReturnValue,
    conf,
    mask_secret,
)

# common-compat tries airflow.operators.branch (a deprecated alias on 3.0 and 3.1, which warns at every
# DAG parse) before the standard provider: choose the right module here
if AIRFLOW_V_3_2_PLUS:
    from airflow.sdk import BaseBranchOperator
elif AIRFLOW_V_3_0_PLUS:
    from airflow.providers.standard.operators.branch import BaseBranchOperator  # type: ignore[no-redef,assignment]
else:
    from airflow.operators.branch import BaseBranchOperator  # type: ignore[no-redef,attr-defined]


def load_stats() -> Any:
    """Return Airflow's ``Stats`` for the running process; imported on first use, not at DAG parse.

    ``airflow.providers.common.compat.sdk`` picks the module: from 3.2 the task SDK's
    ``airflow.sdk.observability.stats`` (the one the task runner configures in a task's supervised
    subprocess), else ``airflow.stats`` (2.11 to 3.1, configured from ``[metrics]`` at first use).
    """
    from airflow.providers.common.compat.sdk import Stats

    return Stats


class _RescheduleDateAsDatetime:
    """A task instance whose ``get_first_reschedule_date`` gives a datetime, never ISO text."""

    def __init__(self, ti: Any) -> None:
        self._ti = ti

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ti, name)

    def get_first_reschedule_date(self, context: Any) -> Any:
        value = self._ti.get_first_reschedule_date(context)
        if isinstance(value, str):
            import pendulum

            return pendulum.parse(value)
        return value


def sensor_context(context: Any) -> Any:
    """Return ``context`` for a sensor's ``execute``, with Airflow 3.0's reschedule date fixed.

    On Airflow 3.0 the task SDK's API client builds the first reschedule date without validating it,
    so under ``dag.test()`` (where nothing serializes it on the way) ``ti.get_first_reschedule_date``
    returns ISO text; the base sensor subtracts it from a datetime, and a reschedule-mode wait fails
    with a ``TypeError`` at its second reschedule.  Airflow 3.1 validates it.  Elsewhere ``context``
    is returned as it is.
    """
    if not AIRFLOW_V_3_0_PLUS or AIRFLOW_V_3_1_PLUS or context.get("ti") is None:
        return context
    ti = _RescheduleDateAsDatetime(context["ti"])
    return {**context, "ti": ti, "task_instance": ti}


def object_storage_path(url: str, conn_id: str | None) -> Any:
    """Return ``ObjectStoragePath(url, conn_id=conn_id)``, imported on first use, not at DAG parse.

    From Airflow 3 the class is the task SDK's ``airflow.sdk.ObjectStoragePath``; on 2.11 it is
    ``airflow.io.path.ObjectStoragePath`` (2.11 has no ``airflow.sdk``).

    :param url: an object storage URL (``s3://``, ``gs://``, ``file://``, ...).
    :param conn_id: the Airflow connection for the store, or ``None`` for its default credentials.
    """
    if AIRFLOW_V_3_0_PLUS:
        from airflow.sdk import ObjectStoragePath as path_class
    else:
        from airflow.io.path import ObjectStoragePath as path_class  # type: ignore[no-redef,attr-defined]
    return path_class(url, conn_id=conn_id)


__all__ = [
    "AIRFLOW_VERSION",
    "AIRFLOW_V_3_0_PLUS",
    "AIRFLOW_V_3_1_PLUS",
    "AIRFLOW_V_3_2_PLUS",
    "AIRFLOW_V_3_3_PLUS",
    "HAS_ASYNC_NOTIFIER",
    "HAS_TASK_STATE_STORE",
    "AirflowException",
    "AirflowFailException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "BaseBranchOperator",
    "BaseHook",
    "BaseNotifier",
    "BaseOperator",
    "BaseSensorOperator",
    "ObjectStoragePath",
    "PokeReturnValue",
    "conf",
    "load_stats",
    "mask_secret",
    "object_storage_path",
    "sensor_context",
]
