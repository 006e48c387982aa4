"""OmniNotifier on the event loop (``async_notify``: what the triggerer runs for a deadline alert on
Airflow 3.1+): sent once per deadline like ``notify``, and never sent again after an ambiguous failure
(the send's rules are those of ``send_advanced``, on httpx)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from test_notifier import sends
from test_sensor import scenario_key

from airflow_provider_omni.exceptions import OmniError, OmniSendUncertainError
from airflow_provider_omni.hooks.omni import OmniHook
from airflow_provider_omni.notifications.omni import OmniNotifier, notification_bulk_id
from airflow_provider_omni.version_compat import HAS_ASYNC_NOTIFIER
from tests.airflow_compat import AIRFLOW_SERIES

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.timeout(120)

ON_CALL = "41793026726"
README = Path(__file__).resolve().parent.parent / "README.md"


def deadline_context(deadline_id: str = "01990000-dead-line-0000-000000000001") -> dict[str, Any]:
    """The context the scheduler gives a deadline alert's callback: the run (as JSON) and the deadline."""
    return {
        "dag_run": {
            "dag_id": "etl",
            "dag_run_id": "manual__1",
            "state": "running",
            "conf": {"on_call": ON_CALL},
        },
        "deadline": {"id": deadline_id, "deadline_time": "2026-01-01T10:00:00+00:00"},
    }


def notifier(key: str) -> OmniNotifier:
    return OmniNotifier(scenario_key=key, destinations=[ON_CALL], viber_text="etl missed its deadline")


def posts(sandbox: Any) -> int:
    """How many sends reached the sandbox, accepted or not."""
    return int(sandbox.admin.stats()["requests"].get("advanced", 0))


async def test_async_notify_sends_once_per_deadline(omni_sandbox: Any, omni_connection: str) -> None:
    key = scenario_key(OmniHook())
    for _ in range(2):  # the same deadline's callback, repeated
        await notifier(key).async_notify(deadline_context())
    [body] = sends(omni_sandbox)
    assert body["bulkId"] == notification_bulk_id(deadline_context(), namespace=OmniHook().namespace)
    assert body["viber"]["text"] == body["sms"]["text"] == "etl missed its deadline"
    assert [d["to"]["phoneNumber"] for d in body["destinations"]] == [ON_CALL]
    assert posts(omni_sandbox) == 1  # the repeat only read the logs
    # another deadline (of the same run) is another notification
    await notifier(key).async_notify(deadline_context("01990000-dead-line-0000-000000000002"))
    assert len(sends(omni_sandbox)) == 2


AMBIGUOUS = {
    "5xx after processing": ({"status": 500}, {}),
    "connection dropped": ({"drop": True}, {}),
    "empty 2xx": ({"answer": "empty"}, {}),
    "read timeout": ({"latency": 2.5}, {"read_timeout": 1}),
}


@pytest.mark.parametrize(("fault", "extra"), AMBIGUOUS.values(), ids=AMBIGUOUS.keys())
async def test_an_ambiguous_failure_raises_and_a_repeat_finds_the_bulk_in_the_logs(
    omni_sandbox: Any,
    omni_connection: str,
    monkeypatch: pytest.MonkeyPatch,
    fault: dict[str, Any],
    extra: dict[str, Any],
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_DEFAULT", omni_sandbox.airflow_connection_json(**extra))
    key = scenario_key(OmniHook())
    omni_sandbox.admin.add_fault(endpoint="advanced", process=True, times=1, **fault)

    with pytest.raises(OmniSendUncertainError) as raised:
        await notifier(key).async_notify(deadline_context())
    bulk_id = notification_bulk_id(deadline_context(), namespace=OmniHook().namespace)
    assert raised.value.bulk_id == bulk_id
    assert posts(omni_sandbox) == 1  # not retried: the message did go out
    assert [body["bulkId"] for body in sends(omni_sandbox)] == [bulk_id]

    await notifier(key).async_notify(deadline_context())  # the callback again: found in the logs
    assert posts(omni_sandbox) == 1


async def test_a_send_refused_before_processing_is_retried_and_sent_once(
    omni_sandbox: Any, omni_connection: str, no_sleep: list[float]
) -> None:
    key = scenario_key(OmniHook())
    omni_sandbox.admin.add_fault(endpoint="advanced", status=429, times=1)
    await notifier(key).async_notify(deadline_context())
    assert posts(omni_sandbox) == 2
    assert len(sends(omni_sandbox)) == 1
    assert no_sleep  # it waited before the retry


SEND_FAULTS = {
    "503": {"status": 503},
    "429 once": {"status": 429, "times": 1},
    "wrong bulk id": {"answer": "wrong_bulk_id", "process": True},
    "message dropped from the answer": {"answer": "missing_messages", "process": True},
    "dropped connection": {"drop": True},
}


def _send_request(key: str, bulk_id: str) -> dict[str, Any]:
    return {
        "scenarioKey": key,
        "bulkId": bulk_id,
        "destinations": [
            {"messageId": f"{bulk_id}.{i}", "to": {"phoneNumber": n}}
            for i, n in enumerate([ON_CALL, "41793026720"])
        ],
        "viber": {"text": "hello"},
    }


def _outcome(sandbox: Any, send: Callable[[], Any]) -> tuple[str, str, int]:
    """What a send did: the error raised (or ``accepted``), its message, and the POSTs it made."""
    before = posts(sandbox)
    try:
        send()
    except OmniError as err:
        return type(err).__name__, str(err), posts(sandbox) - before
    return "accepted", "", posts(sandbox) - before


@pytest.mark.parametrize("fault", SEND_FAULTS.values(), ids=SEND_FAULTS.keys())
def test_asend_advanced_follows_the_rules_of_send_advanced(
    omni_sandbox: Any, omni_connection: str, no_sleep: list[float], fault: dict[str, Any]
) -> None:
    key = scenario_key(OmniHook())
    request = _send_request(key, "same.bulk")
    omni_sandbox.admin.add_fault(endpoint="advanced", **fault)
    sync = _outcome(omni_sandbox, lambda: OmniHook().send_advanced(request))
    omni_sandbox.admin.reset()
    scenario_key(OmniHook())  # the same key again (the sandbox's keys are seeded)
    omni_sandbox.admin.add_fault(endpoint="advanced", **fault)
    on_loop = _outcome(omni_sandbox, lambda: asyncio.run(OmniHook().asend_advanced(request)))
    assert (on_loop[0], on_loop[2]) == (sync[0], sync[2])
    # the same message, up to the library's own text of a transport error
    assert on_loop[1].split(" (")[0] == sync[1].split(" (")[0]


@pytest.mark.skipif(
    not HAS_ASYNC_NOTIFIER, reason=f"Airflow {AIRFLOW_SERIES} has no async notifier (it came with 3.1)"
)
async def test_awaiting_the_notifier_renders_its_templates_as_airflow_does(
    omni_sandbox: Any, omni_connection: str
) -> None:
    """The triggerer runs ``await OmniNotifier(**kwargs, context=context)``: BaseNotifier renders the
    templated fields with that context, then awaits ``async_notify``."""
    key = scenario_key(OmniHook())
    await OmniNotifier(
        scenario_key=key,
        destinations=["{{ dag_run.conf.on_call }}"],
        viber_text="{{ dag_run.dag_id }} missed its deadline of {{ deadline.deadline_time }}",
        sms_text="{{ dag_run.dag_id }} is late",
        context=deadline_context(),
    )
    [body] = sends(omni_sandbox)
    assert body["viber"]["text"] == "etl missed its deadline of 2026-01-01T10:00:00+00:00"
    assert body["sms"]["text"] == "etl is late"
    assert [d["to"]["phoneNumber"] for d in body["destinations"]] == [ON_CALL]
    assert body["bulkId"] == notification_bulk_id(deadline_context(), namespace=OmniHook().namespace)


@pytest.mark.skipif(
    not HAS_ASYNC_NOTIFIER, reason=f"Airflow {AIRFLOW_SERIES} has no deadline alerts (they came with 3.1)"
)
def test_the_readme_deadline_alert_example_runs_as_written() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### `OmniNotifier`") : text.index("## Exactly once")]
    [block] = [b for b in re.findall(r"```python\n(.*?)```", section, flags=re.S) if "DeadlineAlert" in b]
    namespace: dict[str, Any] = {}
    exec(compile(block, "README.md", "exec"), namespace)

    [alert] = namespace["dag"].deadline
    assert alert.callback.path == "airflow_provider_omni.notifications.omni.OmniNotifier"
    notifier = OmniNotifier(**alert.callback.kwargs)  # a TypeError for an argument it does not take
    assert notifier.destinations == ["41793026700"]
