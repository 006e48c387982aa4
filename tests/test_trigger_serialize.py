"""Guards on the trigger's serialization: nothing the constructor takes may be dropped, and a trigger rebuilt
from ``serialize()`` while waiting on message ids finishes right."""

from __future__ import annotations

import inspect
import json
import time
from typing import Any

from test_sensor import send
from test_trigger import events_of

from airflow_provider_omni.hooks.omni import OmniHook
from airflow_provider_omni.triggers.delivery_report import OmniDeliveryReportTrigger

#: A value away from its default for every argument of the constructor (a new one must be added here).
AWAY_FROM_DEFAULT: dict[str, Any] = {
    "buckets": {"a.b1": 3, "a.b2": 1000},
    "omni_conn_id": "omni_other",
    "poll_interval": 7.5,
    "end_time": 1_900_000_000.25,
    "flow": ["SMS"],
    "key_by": "message",
    "failed_cap": 3,
    "show_full_numbers": True,
    "logs_reconcile_interval": None,
    "refused": {"counts": {"a.b1": 2}, "message_ids": {"a.b1": ["a.b1.7"]}, "unattributed": ["x.1"]},
    "delivered_to_operator": {"a.b1": [[1_800_000_000.5, "EUR", 0.01, "AAAAAAAAAAE="]]},
    "accept_delivered_to_operator_after": 3600.0,
    "backend": "messages_api",
    "state": {"version": 2, "buckets": {}},
}


def test_serialize_keeps_every_constructor_argument():
    parameters = inspect.signature(OmniDeliveryReportTrigger.__init__).parameters
    names = [n for n, p in parameters.items() if n != "self" and p.kind is not p.VAR_KEYWORD]
    assert sorted(names) == sorted(AWAY_FROM_DEFAULT), "give each new argument a non-default value here"
    for name in names:
        default = parameters[name].default
        assert default is inspect.Parameter.empty or AWAY_FROM_DEFAULT[name] != default, name
    path, kwargs = OmniDeliveryReportTrigger(**AWAY_FROM_DEFAULT).serialize()
    assert path == f"{OmniDeliveryReportTrigger.__module__}.{OmniDeliveryReportTrigger.__qualname__}"
    assert kwargs == AWAY_FROM_DEFAULT
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert OmniDeliveryReportTrigger(**kwargs).serialize() == (path, kwargs)


async def test_a_trigger_rebuilt_from_serialize_on_message_ids_finishes_right(omni_sandbox, omni_connection):
    # 0: Viber, 6: SMS fallback, 8: undeliverable, 9: silent (expires)
    send(OmniHook(), ["41793026720", "41793026726", "41793026728", "41793026729"])
    original = OmniDeliveryReportTrigger(
        buckets={"wait.b1.0": 1, "wait.b1.1": 1, "wait.b1.2": 1, "wait.b1.3": 1},
        omni_conn_id="omni_default",
        poll_interval=0.05,
        end_time=time.time() + 60,
        key_by="message",
    )
    path, kwargs = original.serialize()
    assert path.endswith("OmniDeliveryReportTrigger")
    rebuilt = OmniDeliveryReportTrigger(**json.loads(json.dumps(kwargs)))
    events = await events_of(rebuilt)
    assert len(events) == 1 and events[0].payload["status"] == "success"
    summary = events[0].payload["summary"]
    assert summary["outcomes"] == {"VIBER_DELIVERED": 1, "SMS_DELIVERED": 1, "FAILED": 2, "PENDING": 0}
    assert sorted(summary["bulks"]) == ["wait.b1.0", "wait.b1.1", "wait.b1.2", "wait.b1.3"]
    assert {f["message_id"] for f in summary["failed"]} == {"wait.b1.2", "wait.b1.3"}
