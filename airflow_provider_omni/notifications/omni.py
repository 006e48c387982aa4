"""A notifier for task and DAG callbacks: a Viber message with SMS fallback through an OMNI scenario."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_omni.exceptions import OmniSendUncertainError
from airflow_provider_omni.operators._ids import short_hash
from airflow_provider_omni.privacy import shorten_phone_number
from airflow_provider_omni.version_compat import BaseNotifier

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_omni.hooks.omni import OmniHook
    from airflow_provider_omni.models import OmniAdvancedRequest

# A DAG file imports this module: the hook (requests) and the models (pydantic classes) are imported
# where they are used, when a callback sends.
_DEFAULT_CONN_ID = "omni_default"
_BULK_PREFIX = "omni-notify"


def notification_bulk_id(context: Mapping[str, Any], prefix: str = _BULK_PREFIX, namespace: str = "") -> str:
    """Return the bulk id of the notification for this callback: the same for a repeated callback.

    It depends on the connection's namespace, the DAG, the run, the task, its map index and try
    number (for a DAG callback: the DAG, the run and the reason), so each try's failure notifies once,
    a repeated callback for it finds the first, and another deployment sharing the Infobip account
    (another namespace) never takes it for its own.
    """
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    dag = context.get("dag")
    dag_id = getattr(ti, "dag_id", None) or getattr(dag_run, "dag_id", None) or getattr(dag, "dag_id", "")
    run_id = context.get("run_id") or getattr(ti, "run_id", None) or getattr(dag_run, "run_id", "")
    if "reason" in context or ti is None:  # a DAG callback (its context may carry the last task)
        parts = [namespace, str(dag_id), str(run_id), "__dag__", str(context.get("reason") or "")]
    else:
        parts = [
            namespace,
            str(dag_id),
            str(run_id),
            str(ti.task_id),
            str(getattr(ti, "map_index", -1)),
            str(getattr(ti, "try_number", 0)),
        ]
    digest = short_hash("\x1f".join(parts), 24)
    return f"{prefix}.{digest}"


class OmniNotifier(BaseNotifier):
    """Send a Viber message with SMS fallback from ``on_failure_callback`` / ``on_success_callback``.

    The texts and destinations are Jinja templates rendered with the callback's context
    (``{{ ti.task_id }}``, ``{{ dag_run.run_id }}``, ``{{ exception }}`` ...).  The bulk id is
    deterministic per (DAG, run, task, map index, try); before sending, the notifier looks that bulk up
    in ``/omni/1/logs`` and does not send again when it is there, so a repeated callback notifies once.

    :param scenario_key: the OMNI scenario to send through (e.g. VIBER then SMS).
    :param destinations: phone numbers in international format (templated).
    :param viber_text: text of the Viber step (templated).
    :param sms_text: text of the SMS fallback (templated); defaults to ``viber_text``.
    :param omni_conn_id: the Infobip OMNI connection.
    :param viber_validity_minutes: how long Viber may try before the SMS fallback (optional).
    :param sms_validity_minutes: how long the SMS may try (optional).
    :param bulk_id_prefix: prefix of the deterministic bulk id.
    """

    template_fields: Sequence[str] = ("scenario_key", "destinations", "viber_text", "sms_text")

    def __init__(
        self,
        *,
        scenario_key: str,
        destinations: str | Sequence[str],
        viber_text: str,
        sms_text: str | None = None,
        omni_conn_id: str = _DEFAULT_CONN_ID,
        viber_validity_minutes: int | None = None,
        sms_validity_minutes: int | None = None,
        bulk_id_prefix: str = _BULK_PREFIX,
    ) -> None:
        super().__init__()
        self.scenario_key = scenario_key
        self.destinations = destinations
        self.viber_text = viber_text
        self.sms_text = sms_text
        self.omni_conn_id = omni_conn_id
        self.viber_validity_minutes = viber_validity_minutes
        self.sms_validity_minutes = sms_validity_minutes
        self.bulk_id_prefix = bulk_id_prefix

    @cached_property
    def hook(self) -> OmniHook:
        """The hook of ``omni_conn_id``."""
        from airflow_provider_omni.hooks.omni import OmniHook

        return OmniHook(omni_conn_id=self.omni_conn_id)

    def _numbers(self) -> list[str]:
        value = self.destinations
        if isinstance(value, str):
            value = [part.strip() for part in value.replace(";", ",").split(",")]
        return [number for number in value if number]

    def build_request(self, bulk_id: str) -> OmniAdvancedRequest:
        """Return the (validated) request for the rendered texts and destinations."""
        from airflow_provider_omni.models import OmniAdvancedRequest, SmsData, TimeUnit, ViberData

        numbers = self._numbers()
        return OmniAdvancedRequest(
            scenario_key=self.scenario_key,
            bulk_id=bulk_id,
            destinations=[
                {"message_id": f"{bulk_id}.{i}", "to": {"phone_number": n}} for i, n in enumerate(numbers)
            ],
            viber=ViberData(
                text=self.viber_text,
                validity_period=self.viber_validity_minutes,
                validity_period_time_unit=TimeUnit.MINUTES if self.viber_validity_minutes else None,
            ),
            sms=SmsData(
                text=self.sms_text or self.viber_text,
                validity_period=self.sms_validity_minutes,
                validity_period_time_unit=TimeUnit.MINUTES if self.sms_validity_minutes else None,
            ),
        )

    def notify(self, context: Context) -> None:
        """Send the notification once for this callback (skip when its bulk is already in the logs)."""
        bulk_id = notification_bulk_id(context, self.bulk_id_prefix, self.hook.namespace)
        request = self.build_request(bulk_id)
        if self.hook.get_logs(bulk_id=bulk_id, limit=1):
            self.log.info("Notification %s was already sent; not sending it again", bulk_id)
            return
        try:
            response = self.hook.send_advanced(request)
        except OmniSendUncertainError:
            self.log.warning(
                "Notification %s may or may not have gone out (ambiguous failure); a repeated callback "
                "will find it in the logs",
                bulk_id,
            )
            raise
        self.log.info(
            "Sent notification %s to %s",
            bulk_id,
            ", ".join(
                shorten_phone_number(d.to.phone_number, full=self.hook.show_full_numbers)
                for d in request.destinations
            ),
        )
        if response.bulk_id and response.bulk_id != bulk_id:
            self.log.debug("Infobip answered with bulk id %s", response.bulk_id)


send_omni_notification = OmniNotifier
