"""Branch a DAG on the outcome of an OMNI send: delivered on Viber, delivered by SMS fallback, failed.

The rule for a mixed result (several destinations, different outcomes), first match wins:

1. any ``FAILED`` destination -> ``failed_task_ids``;
2. else any ``SMS_DELIVERED`` (the fallback was needed at least once) -> ``sms_fallback_task_ids``;
3. else any ``PENDING`` (only after a sensor with ``succeed_on_timeout=True``) -> ``pending_task_ids``,
   or ``failed_task_ids`` when no pending branch is given;
4. else (every destination ``VIBER_DELIVERED``) -> ``viber_task_ids``.

The summary of a dry run of the send (``dry_run``) follows no branch: every one is skipped.

With ``follow_all_matching=True`` every branch with at least one destination is followed instead
(e.g. both the Viber and the SMS branch when some destinations got each).

The same decision with ``@task.branch`` on the sensor's summary::

    from airflow.sdk import task


    @task.branch
    def route(summary: dict) -> str:
        outcomes = summary["outcomes"]
        if outcomes["FAILED"] or outcomes["PENDING"]:
            return "alert_ops"
        if outcomes["SMS_DELIVERED"]:
            return "log_fallback_cost"
        return "all_on_viber"


    route(wait.output)  # wait = OmniDeliveryReportSensor(...)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_omni.sensors.delivery_report import parse_xcom_value
from airflow_provider_omni.version_compat import BaseBranchOperator

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


def _ids(value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def choose_branches(
    summary: Mapping[str, Any],
    *,
    viber: Sequence[str],
    sms_fallback: Sequence[str],
    failed: Sequence[str],
    pending: Sequence[str] | None = None,
    follow_all_matching: bool = False,
) -> list[str]:
    """Return the task ids to follow for a delivery summary (the rule of the module docstring).

    :param summary: the delivery report sensor's summary (``outcomes`` is what is read).
    :param pending: task ids for destinations still pending; ``None`` sends them to ``failed``.
    """
    from airflow_provider_omni.outcome import Outcome

    outcomes = summary.get("outcomes")
    if not isinstance(outcomes, Mapping):
        raise ValueError(f"not a delivery summary (no 'outcomes'): {summary!r:.300}")
    count = {o: int(outcomes.get(o.value) or 0) for o in Outcome}
    pending_ids = list(failed) if pending is None else list(pending)
    if follow_all_matching:
        chosen: list[str] = []
        for outcome, ids in (
            (Outcome.FAILED, failed),
            (Outcome.SMS_DELIVERED, sms_fallback),
            (Outcome.PENDING, pending_ids),
            (Outcome.VIBER_DELIVERED, viber),
        ):
            if count[outcome]:
                chosen.extend(i for i in ids if i not in chosen)
        return chosen
    if count[Outcome.FAILED]:
        return list(failed)
    if count[Outcome.SMS_DELIVERED]:
        return list(sms_fallback)
    if count[Outcome.PENDING]:
        return pending_ids
    if count[Outcome.VIBER_DELIVERED]:
        return list(viber)
    # nothing was sent (every list empty): nothing was delivered either
    return list(failed)


class OmniDeliveryBranchOperator(BaseBranchOperator):
    """Follow the Viber, SMS fallback or failed branch depending on a delivery summary.

    The rule for mixed results is in :mod:`airflow_provider_omni.operators.branch`: any failure wins,
    then any SMS fallback, then pending, and the Viber branch only when every destination got Viber.

    :param viber_task_ids: task id(s) to follow when every destination was delivered on Viber.
    :param sms_fallback_task_ids: task id(s) when at least one needed the SMS fallback (none failed).
    :param failed_task_ids: task id(s) when at least one destination failed.
    :param summary: the :class:`~airflow_provider_omni.sensors.delivery_report.OmniDeliveryReportSensor`
        summary (templated; typically the sensor's ``.output``).
    :param pending_task_ids: task id(s) when destinations were still pending at the sensor's timeout
        (``succeed_on_timeout=True``); by default those go to ``failed_task_ids``.
    :param follow_all_matching: follow every branch that has at least one destination.
    :param backend: the backend of the send (``omni`` or ``messages_api``), as the other parts take it;
        the sensor's summary and this rule are the same on both, so it only names the backend in the
        log (another name is refused).  Templated.
    """

    template_fields: Sequence[str] = ("summary", "backend")
    ui_color = "#7360f2"

    def __init__(
        self,
        *,
        viber_task_ids: str | Iterable[str],
        sms_fallback_task_ids: str | Iterable[str],
        failed_task_ids: str | Iterable[str],
        summary: Any,
        pending_task_ids: str | Iterable[str] | None = None,
        follow_all_matching: bool = False,
        backend: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.backend = backend
        self.viber_task_ids = _ids(viber_task_ids)
        self.sms_fallback_task_ids = _ids(sms_fallback_task_ids)
        self.failed_task_ids = _ids(failed_task_ids)
        self.pending_task_ids = None if pending_task_ids is None else _ids(pending_task_ids)
        self.summary = summary
        self.follow_all_matching = follow_all_matching

    def choose_branch(self, context: Context) -> list[str]:
        """Return the task ids to follow for the rendered summary."""
        if self.backend:
            from airflow_provider_omni.messages_api import resolve_backend

            self.log.info(
                "Branching on the outcome of a send through %s", resolve_backend(self.backend).value
            )
        summary = parse_xcom_value(self.summary)
        if not isinstance(summary, Mapping):
            raise ValueError(f"summary must be the delivery sensor's summary dict, got {summary!r:.300}")
        if summary.get("dry_run"):
            self.log.info("The send was a dry run: no outcome, no branch followed (all are skipped)")
            return []
        chosen = choose_branches(
            summary,
            viber=self.viber_task_ids,
            sms_fallback=self.sms_fallback_task_ids,
            failed=self.failed_task_ids,
            pending=self.pending_task_ids,
            follow_all_matching=self.follow_all_matching,
        )
        self.log.info("Delivery outcomes %s: following %s", summary["outcomes"], chosen)
        return chosen
