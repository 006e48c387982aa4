"""A notifier for task and DAG callbacks and deadline alerts: a Viber message with SMS fallback through
an OMNI scenario."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_omni.exceptions import OmniSendUncertainError
from airflow_provider_omni.operators._ids import short_hash
from airflow_provider_omni.privacy import shorten_phone_number
from airflow_provider_omni.version_compat import HAS_ASYNC_NOTIFIER, BaseNotifier

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_omni.hooks.omni import OmniHook
    from airflow_provider_omni.models import OmniAdvancedRequest, OmniResponse

# A DAG file imports this module: the hook (requests) and the models (pydantic classes) are imported
# where they are used, when a callback sends.
_DEFAULT_CONN_ID = "omni_default"
_BULK_PREFIX = "omni-notify"


def _value(obj: Any, name: str) -> Any:
    """``obj.name``, or ``obj[name]`` of a mapping (a deadline alert's context holds the run as JSON)."""
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def _callback_parts(context: Mapping[str, Any]) -> list[str]:
    """What identifies the callback: its DAG and run, then the task try, the DAG callback's reason or
    the deadline."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    dag_id = _value(ti, "dag_id") or _value(dag_run, "dag_id") or _value(context.get("dag"), "dag_id") or ""
    run_id = (
        context.get("run_id")
        or _value(ti, "run_id")
        or _value(dag_run, "run_id")
        or _value(dag_run, "dag_run_id")
    )
    run = [str(dag_id), str(run_id or "")]
    if ti is None and context.get("deadline") is not None:  # a deadline alert (Airflow 3.1+)
        return [*run, "__deadline__", str(_value(context["deadline"], "id") or "")]
    if "reason" in context or ti is None:  # a DAG callback (its context may carry the last task)
        return [*run, "__dag__", str(context.get("reason") or "")]
    return [*run, str(ti.task_id), str(getattr(ti, "map_index", -1)), str(getattr(ti, "try_number", 0))]


def notification_bulk_id(context: Mapping[str, Any], prefix: str = _BULK_PREFIX, namespace: str = "") -> str:
    """Return the bulk id of the notification for this callback: the same for a repeated callback.

    It depends on the connection's namespace, the DAG, the run, the task, its map index and try
    number (for a DAG callback: the DAG, the run and the reason; for a deadline alert: the DAG, the
    run and the deadline), so each try's failure and each missed deadline notify once, a repeated
    callback for it finds the first, and another deployment sharing the Infobip account (another
    namespace) never takes it for its own.
    """
    digest = short_hash("\x1f".join([namespace, *_callback_parts(context)]), 24)
    return f"{prefix}.{digest}"


def _first_set(value: int | None, default: int | None) -> int | None:
    return value if value is not None else default


class OmniNotifier(BaseNotifier):
    """Send a Viber message with SMS fallback from ``on_failure_callback`` / ``on_success_callback``,
    or from a deadline alert (``AsyncCallback(OmniNotifier, kwargs={...})``, Airflow 3.1+).

    The texts and destinations are Jinja templates rendered with the callback's context
    (``{{ ti.task_id }}``, ``{{ dag_run.run_id }}``, ``{{ exception }}`` ...; a deadline alert's
    context has ``dag_run`` and ``deadline``).  The bulk id is deterministic per (DAG, run, task, map
    index, try), or per missed deadline; before sending, the notifier looks that bulk up in
    ``/omni/1/logs`` and does not send again when it is there, so a repeated callback notifies once.
    A task or DAG callback sends with :meth:`notify` (requests); a deadline alert, run by the
    triggerer, with :meth:`async_notify` (httpx, on the triggerer's event loop).

    :param scenario_key: the OMNI scenario to send through (e.g. VIBER then SMS); default the
        connection's ``default_scenario_key`` / ``default_scenario_name``, else the account's default.
    :param destinations: phone numbers in international format (templated).
    :param viber_text: text of the Viber step (templated).
    :param sms_text: text of the SMS fallback (templated); defaults to ``viber_text``.
    :param omni_conn_id: the Infobip OMNI connection.
    :param viber_validity_minutes: how long Viber may try before the SMS fallback; default the
        connection's ``default_viber_validity_minutes``, else Infobip's.
    :param sms_validity_minutes: how long the SMS may try (``default_sms_validity_minutes``).
    :param footer: a line added to both texts; default the connection's ``text_footer``, ``""`` for none.
    :param bulk_id_prefix: prefix of the deterministic bulk id.
    :param context: the callback's context, which Airflow 3.1+ passes to an awaited notifier (a
        deadline alert's ``AsyncCallback``); ignored before 3.1.
    :param backend: ``omni`` or ``messages_api`` (Viber first, the SMS step in ``failover``, no
        scenario); default the connection's ``backend`` extra.  The Messages API has no logs, so a
        repeated callback cannot be recognised there: it notifies again.
    :param viber_sender: the Viber sender on the Messages API (default the connection's ``viber_sender``).
    :param sms_sender: the SMS sender on the Messages API (default the connection's ``sms_sender``).
    """

    template_fields: Sequence[str] = ("scenario_key", "destinations", "viber_text", "sms_text", "backend")

    def __init__(
        self,
        *,
        destinations: str | Sequence[str],
        scenario_key: str | None = None,
        viber_text: str,
        sms_text: str | None = None,
        omni_conn_id: str = _DEFAULT_CONN_ID,
        viber_validity_minutes: int | None = None,
        sms_validity_minutes: int | None = None,
        bulk_id_prefix: str = _BULK_PREFIX,
        footer: str | None = None,
        context: Context | None = None,
        backend: str | None = None,
        viber_sender: str | None = None,
        sms_sender: str | None = None,
    ) -> None:
        if HAS_ASYNC_NOTIFIER:
            super().__init__(context=context)
        else:
            super().__init__()
        self.scenario_key = scenario_key
        self.destinations = destinations
        self.viber_text = viber_text
        self.sms_text = sms_text
        self.omni_conn_id = omni_conn_id
        self.viber_validity_minutes = viber_validity_minutes
        self.sms_validity_minutes = sms_validity_minutes
        self.bulk_id_prefix = bulk_id_prefix
        self.footer = footer
        self.backend = backend
        self.viber_sender = viber_sender
        self.sms_sender = sms_sender

    @property
    def _on_messages_api(self) -> bool:
        from airflow_provider_omni.messages_api import Backend, resolve_backend

        return resolve_backend(self.backend, self.hook.settings.backend) is Backend.MESSAGES_API

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

    def build_request(self, bulk_id: str, scenario_key: str | None = None) -> OmniAdvancedRequest:
        """Return the (validated) request for the rendered texts and destinations, with the
        connection's validities and footer where the notifier gives none.

        :param bulk_id: the notification's bulk id.
        :param scenario_key: the resolved scenario (default ``scenario_key``).
        """
        from airflow_provider_omni.hooks._auth import with_footer
        from airflow_provider_omni.models import OmniAdvancedRequest, SmsData, TimeUnit, ViberData

        settings = self.hook.settings
        viber_minutes = _first_set(self.viber_validity_minutes, settings.default_viber_validity_minutes)
        sms_minutes = _first_set(self.sms_validity_minutes, settings.default_sms_validity_minutes)
        footer = settings.footer_for(self.footer)
        numbers = self._numbers()
        return OmniAdvancedRequest(
            scenario_key=scenario_key or self.scenario_key,
            bulk_id=bulk_id,
            destinations=[
                {"message_id": f"{bulk_id}.{i}", "to": {"phone_number": n}} for i, n in enumerate(numbers)
            ],
            viber=ViberData(
                text=with_footer(self.viber_text, footer),
                validity_period=viber_minutes,
                validity_period_time_unit=TimeUnit.MINUTES if viber_minutes else None,
            ),
            sms=SmsData(
                text=with_footer(self.sms_text or self.viber_text, footer),
                validity_period=sms_minutes,
                validity_period_time_unit=TimeUnit.MINUTES if sms_minutes else None,
            ),
        )

    def notify(self, context: Context) -> None:
        """Send the notification once for this callback (skip when its bulk is already in the logs)."""
        bulk_id = notification_bulk_id(context, self.bulk_id_prefix, self.hook.namespace)
        if self._on_messages_api:
            request = self.build_request(bulk_id)
            with self._warn_when_uncertain(bulk_id):
                self.hook.send_messages_api(request, self.hook.senders(self.viber_sender, self.sms_sender))
            self._log_sent(request, None)
            return
        request = self.build_request(bulk_id, self.hook.resolve_scenario_key(self.scenario_key))
        if self.hook.get_logs(bulk_id=bulk_id, limit=1):
            self.log.info("Notification %s was already sent; not sending it again", bulk_id)
            return
        with self._warn_when_uncertain(bulk_id):
            response = self.hook.send_advanced(request)
        self._log_sent(request, response)

    async def async_notify(self, context: Context) -> None:
        """:meth:`notify` on the event loop (httpx): what Airflow 3.1+ runs for a deadline alert."""
        # the hook's module (requests, httpx, the pydantic models) is imported on first use: in a worker
        # thread, so that it does not block the triggerer's event loop and every trigger on it
        hook = await asyncio.to_thread(lambda: self.hook)
        bulk_id = notification_bulk_id(context, self.bulk_id_prefix, await hook.aget_namespace())
        if await asyncio.to_thread(lambda: self._on_messages_api):
            request = self.build_request(bulk_id)
            with self._warn_when_uncertain(bulk_id):
                await hook.asend_messages_api(request, hook.senders(self.viber_sender, self.sms_sender))
            self._log_sent(request, None)
            return
        # a default scenario name is looked up with the sync client: in a worker thread
        scenario_key = await asyncio.to_thread(hook.resolve_scenario_key, self.scenario_key)
        request = self.build_request(bulk_id, scenario_key)
        if await hook.aget_logs(bulk_id=bulk_id, limit=1):
            self.log.info("Notification %s was already sent; not sending it again", bulk_id)
            return
        with self._warn_when_uncertain(bulk_id):
            response = await hook.asend_advanced(request)
        self._log_sent(request, response)

    @contextmanager
    def _warn_when_uncertain(self, bulk_id: str) -> Iterator[None]:
        """Log, then re-raise, an ambiguous failure of the send of ``bulk_id``."""
        try:
            yield
        except OmniSendUncertainError:
            self.log.warning(
                "Notification %s may or may not have gone out (ambiguous failure); on OMNI a repeated "
                "callback finds it in the logs, on the Messages API (no logs) it would send it again",
                bulk_id,
            )
            raise

    def _log_sent(self, request: OmniAdvancedRequest, response: OmniResponse | None) -> None:
        """Log the notification that Infobip accepted (numbers shortened unless the connection says)."""
        full = self.hook.show_full_numbers
        numbers = ", ".join(shorten_phone_number(d.to.phone_number, full=full) for d in request.destinations)
        self.log.info("Sent notification %s to %s", request.bulk_id, numbers)
        if response is not None and response.bulk_id and response.bulk_id != request.bulk_id:
            self.log.debug("Infobip answered with bulk id %s", response.bulk_id)


send_omni_notification = OmniNotifier
