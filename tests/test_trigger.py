"""OmniDeliveryReportTrigger: one event, serialization, bounded arguments, restart without losing reports."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from test_sensor import ALL_PERSONAS, EXPECTED_ALL, send

from airflow_provider_omni.hooks.omni import OmniHook
from airflow_provider_omni.triggers.delivery_report import OmniDeliveryReportTrigger


def make_trigger(buckets: dict[str, int], **kwargs: Any) -> OmniDeliveryReportTrigger:
    kwargs.setdefault("omni_conn_id", "omni_default")
    kwargs.setdefault("poll_interval", 0.05)
    kwargs.setdefault("end_time", time.time() + 60)
    return OmniDeliveryReportTrigger(buckets=buckets, **kwargs)


async def events_of(trigger: OmniDeliveryReportTrigger) -> list[Any]:
    return [event async for event in trigger.run()]


def test_serialize_round_trips_exactly():
    trigger = make_trigger(
        {"a.b1": 1000, "a.b2": 7}, flow=["VIBER", "SMS"], failed_cap=5, show_full_numbers=True
    )
    path, kwargs = trigger.serialize()
    assert path == "airflow_provider_omni.triggers.delivery_report.OmniDeliveryReportTrigger"
    assert OmniDeliveryReportTrigger(**kwargs).serialize() == (path, kwargs)
    assert json.loads(json.dumps(kwargs)) == kwargs


def test_kwargs_do_not_grow_with_the_number_of_destinations():
    small = make_trigger({f"dag.send.0123456789.-1.b{n}": 1 for n in range(100)}, end_time=1.0)
    large = make_trigger({f"dag.send.0123456789.-1.b{n}": 1000 for n in range(100)}, end_time=1.0)
    small_size = len(json.dumps(small.serialize()[1]))
    large_size = len(json.dumps(large.serialize()[1]))
    # 100 destinations or 100,000: the same few kilobytes (only the digits of the counts differ)
    assert large_size - small_size == 300
    assert large_size < 5000


async def test_one_success_event_with_every_outcome(omni_sandbox, omni_connection):
    result = send(OmniHook(), ALL_PERSONAS)
    events = await events_of(make_trigger({"wait.b1": 10}))
    assert len(events) == 1
    payload = events[0].payload
    assert payload["status"] == "success"
    assert payload["summary"]["outcomes"] == EXPECTED_ALL
    assert payload["summary"]["bulks"] == [b["bulk_id"] for b in result["bulks"]]


async def test_a_past_deadline_gives_one_timeout_event(omni_sandbox, omni_connection):
    send(OmniHook(), ["41793026729"], viber_validity=3600, sms_validity=3600)
    events = await events_of(make_trigger({"wait.b1": 1}, end_time=time.time() - 1))
    assert len(events) == 1
    assert events[0].payload["status"] == "timeout"
    assert events[0].payload["summary"]["timed_out"] is True
    assert events[0].payload["summary"]["outcomes"]["PENDING"] == 1


async def test_a_persistent_error_gives_one_error_event(omni_sandbox, omni_connection):
    omni_sandbox.admin.add_fault(endpoint="logs", status=401, times=50)
    events = await events_of(make_trigger({"wait.b1": 1}))
    assert len(events) == 1
    assert events[0].payload["status"] == "error"
    assert events[0].payload["message"]


async def test_a_restarted_trigger_loses_no_report(omni_sandbox, omni_connection):
    send(OmniHook(), ALL_PERSONAS, viber_validity=3600, sms_validity=3600)
    omni_sandbox.admin.configure(time_scale=0)  # the silent one stays pending, however slow this runs
    omni_sandbox.admin.advance(seconds=30)
    kwargs = make_trigger({"wait.b1": 10}).serialize()[1]

    # the first trigger consumes the nine early reports, then its triggerer dies
    first = asyncio.ensure_future(events_of(OmniDeliveryReportTrigger(**kwargs)))
    deadline = time.monotonic() + 30
    while omni_sandbox.admin.stats()["reports_handed_out"] < 9 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert omni_sandbox.admin.stats()["reports_handed_out"] >= 9

    # a new triggerer starts the same trigger: the consumed outcomes come back from the logs
    omni_sandbox.admin.advance(hours=3)
    events = await events_of(OmniDeliveryReportTrigger(**kwargs))
    assert len(events) == 1
    summary = events[0].payload["summary"]
    assert events[0].payload["status"] == "success"
    assert summary["outcomes"] == EXPECTED_ALL
    assert summary["price"] == {"EUR": pytest.approx(0.06)}


async def test_only_get_requests_and_only_for_its_bulks(omni_sandbox, omni_connection):
    hook = OmniHook()
    send(hook, ALL_PERSONAS[:3], "wait.b1")
    send(hook, ALL_PERSONAS[:3], "other.b1")
    omni_sandbox.admin.advance(seconds=30)
    events = await events_of(make_trigger({"wait.b1": 3}))
    assert events[0].payload["status"] == "success"
    assert len(hook.get_reports(bulk_id="other.b1")) == 3
    stats = omni_sandbox.admin.stats()["requests"]
    assert stats.get("advanced") == 2  # the two sends of this test, none from the trigger


async def test_the_hook_is_made_off_the_event_loop(omni_sandbox, omni_connection, monkeypatch):
    """Importing the hook's module (requests, httpx, the models) takes a few hundred milliseconds the
    first time: in the triggerer's event loop that would hold up every other trigger."""
    import threading

    loop_thread = threading.current_thread()
    made_in: list[threading.Thread] = []
    original = OmniDeliveryReportTrigger._hook

    def recording_hook(self: OmniDeliveryReportTrigger) -> Any:
        made_in.append(threading.current_thread())
        return original(self)

    monkeypatch.setattr(OmniDeliveryReportTrigger, "_hook", recording_hook)
    events = await events_of(make_trigger({"nothing.sent": 1}, end_time=time.time() + 0.2))
    assert events and made_in
    assert made_in[0] is not loop_thread
