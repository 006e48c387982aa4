"""Get or create an OMNI scenario (the ordered failover flow, e.g. Viber then SMS)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_omni.exceptions import OmniValidationError
from airflow_provider_omni.version_compat import BaseOperator

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_omni.hooks.omni import OmniHook
    from airflow_provider_omni.models import Step

# A DAG file imports this module: the hook (requests) and the models (pydantic classes) are imported
# where they are used, at run time.
_DEFAULT_CONN_ID = "omni_default"


def parse_flow(flow: Any) -> list[Step]:
    """Validate a scenario flow given as Step models, dicts or a JSON text, naming the bad field.

    :param flow: ``[{"channel": "VIBER", "from": "..."}, {"channel": "SMS", "from": "..."}]``.
    :raises OmniValidationError: e.g. ``flow[1].channel: Input should be 'SMS', ...``.
    """
    from pydantic import ValidationError

    from airflow_provider_omni.models import Step
    from airflow_provider_omni.operators._ids import error_lines

    if isinstance(flow, str):
        try:
            flow = json.loads(flow)
        except ValueError as err:
            raise OmniValidationError(f"flow: not a list of steps nor JSON text ({err})") from err
    if isinstance(flow, (Step, dict)):
        flow = [flow]
    if not isinstance(flow, Sequence) or isinstance(flow, str) or not flow:
        raise OmniValidationError(
            'flow: give at least one step, e.g. [{"channel": "VIBER", "from": "..."}, '
            '{"channel": "SMS", "from": "..."}]',
            validation_errors={"flow": ["at least one step is needed"]},
        )
    steps: list[Step] = []
    errors: dict[str, list[str]] = {}
    for index, item in enumerate(flow):
        if isinstance(item, Step):
            steps.append(item)
            continue
        try:
            steps.append(Step.model_validate(item))
        except ValidationError as err:
            for line in error_lines(err, prefix=f"flow[{index}]"):
                path, _, message = line.partition(": ")
                errors.setdefault(path, []).append(message)
    if errors:
        summary = "; ".join(f"{path}: {', '.join(messages)}" for path, messages in errors.items())
        raise OmniValidationError(f"Invalid scenario flow: {summary}", validation_errors=errors)
    return steps


class OmniCreateScenarioOperator(BaseOperator):
    """Return the key of the OMNI scenario with this name and flow, creating it only if needed.

    Creating scenarios is rate limited by Infobip (20 per 10 minutes) and meant as setup, so this
    operator first looks for a scenario with the same name *and* the same flow (channels and senders
    in order) and reuses it.  With ``update_if_different``, a scenario with the same name but another
    flow is updated in place instead of creating a second scenario of that name.

    The key is returned (and so pushed to XCom) for :class:`OmniSendAdvancedMessageOperator`.

    :param name: the scenario name (templated).
    :param flow: the ordered steps, as dicts ``{"channel": "VIBER", "from": "<sender>"}`` or
        :class:`~airflow_provider_omni.models.Step` models (templated).
    :param default: make the scenario the account's default one (used by sends without a key).
    :param update_if_different: update a same-name scenario whose flow differs, instead of creating
        another one.
    :param omni_conn_id: the Airflow connection to Infobip.
    :param backend: ``omni``, or ``messages_api``, which has no scenarios (each request carries its
        flow): then nothing is created, the task says so and returns None (which the send ignores on
        that backend), so one DAG runs on either.  Default the connection's ``backend`` extra (templated).
    """

    template_fields: Sequence[str] = ("name", "flow", "omni_conn_id", "backend")
    template_fields_renderers = {"flow": "json"}
    ui_color = "#f2e6ff"

    def __init__(
        self,
        *,
        name: str,
        flow: Sequence[Step | dict[str, Any]] | str,
        default: bool = False,
        update_if_different: bool = False,
        omni_conn_id: str = _DEFAULT_CONN_ID,
        backend: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.backend = backend
        self.name = name
        self.flow = flow
        self.default = default
        self.update_if_different = update_if_different
        self.omni_conn_id = omni_conn_id

    @cached_property
    def hook(self) -> OmniHook:
        """The hook talking to Infobip through ``omni_conn_id``."""
        from airflow_provider_omni.hooks.omni import OmniHook

        return OmniHook(omni_conn_id=self.omni_conn_id)

    def execute(self, context: Context) -> str | None:
        from airflow_provider_omni.messages_api import Backend, resolve_backend

        steps = parse_flow(self.flow)
        if resolve_backend(self.backend, self.hook.settings.backend) is Backend.MESSAGES_API:
            self.log.warning(
                "Not needed on the Messages API backend: each request carries its flow (Viber, then the "
                "SMS step in failover), so no scenario was created; the senders come from the send's "
                "viber_sender / sms_sender (or the connection's)"
            )
            return None
        if not self.name or not str(self.name).strip():
            raise OmniValidationError("name: a scenario needs a name to be found again by the next run")
        scenario = self.hook.get_or_create_scenario(
            self.name, steps, default=self.default, update_if_different=self.update_if_different
        )
        self.log.info(
            "Scenario %r: key %s, flow %s",
            scenario.name,
            scenario.key,
            " -> ".join(str(getattr(s.channel, "value", s.channel)) for s in scenario.flow),
        )
        return scenario.key
