"""The sandbox's simulation without HTTP: timelines, styles, settings, memory."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_omni.sandbox.state import (
    SandboxConfig,
    SandboxError,
    SandboxState,
    format_time,
    parse_fault_spec,
    sms_segments,
)

FLOW = [{"from": "ViberSender", "channel": "VIBER"}, {"from": "InfoSMS", "channel": "SMS"}]


@pytest.fixture
def state() -> SandboxState:
    sandbox = SandboxState(SandboxConfig(time_scale=0))
    sandbox.create_scenario({"name": "default", "flow": FLOW})
    return sandbox


def send(state: SandboxState, numbers: list[str], **body: Any) -> dict[str, Any]:
    payload = {
        "destinations": [{"to": {"phoneNumber": n}} for n in numbers],
        "viber": {"text": "v"},
        "sms": {"text": "s"},
        **body,
    }
    return state.send_advanced(payload)


def test_the_same_seed_gives_the_same_ids_and_times() -> None:
    def run() -> tuple[list[str], list[float]]:
        state = SandboxState(SandboxConfig(time_scale=0, seed=42))
        key = state.create_scenario({"flow": FLOW})["key"]
        sent = send(state, ["41793026720", "41793026726"], scenarioKey=key)
        state.advance(3600)
        reports = state.take_reports()["results"]
        durations = [_epoch(r["doneAt"]) - _epoch(r["sentAt"]) for r in reports]
        return [m["messageId"] for m in sent["messages"]], durations

    (ids_1, durations_1), (ids_2, durations_2) = run(), run()
    assert ids_1 == ids_2
    assert durations_1 == pytest.approx(durations_2, abs=0.002)  # dates are written to the millisecond


def _epoch(text: str) -> float:
    from airflow_provider_omni.models import parse_infobip_datetime

    parsed = parse_infobip_datetime(text)
    assert parsed is not None
    return round(parsed.timestamp(), 3)


def test_drained_reports_are_freed_and_logs_stay(state: SandboxState) -> None:
    for _ in range(5):
        send(state, [f"4179302672{d}" for d in "012345678"])
        state.advance(600)
        assert len(state.take_reports(limit=1000)["results"]) == 9
    stats = state.stats()
    assert (stats["messages_with_pending_reports"], stats["messages_logged"]) == (0, 45)


def test_logs_are_capped_by_max_logs(state: SandboxState) -> None:
    state.configure({"max_logs": 10})
    for _ in range(3):
        send(state, [f"4179302672{d}" for d in "01234567"])
    assert state.stats()["messages_logged"] == 10
    assert len(state.logs(limit=1000)["results"]) == 10


def test_a_scheduled_message_starts_at_send_at(state: SandboxState) -> None:
    later = format_time(state.clock.now() + 7200)
    send(state, ["41793026720"], sendAt=later)
    state.advance(3600)
    assert state.take_reports()["results"] == []
    assert state.logs()["results"][0]["status"]["groupName"] == "PENDING"
    state.advance(3700)
    (report,) = state.take_reports()["results"]
    assert report["sentAt"][:16] == later[:16]


def test_a_long_sms_counts_its_parts(state: SandboxState) -> None:
    send(state, ["41793026726"], sms={"text": "x" * 200})
    state.advance(600)
    assert state.take_reports()["results"][0]["messageCount"] == 2
    assert (sms_segments("x" * 160), sms_segments("x" * 161), sms_segments("ж" * 71)) == (1, 2, 2)


def test_an_email_only_destination_on_a_viber_sms_flow_is_rejected(state: SandboxState) -> None:
    answer = state.send_advanced(
        {
            "destinations": [{"to": {"emailAddress": "a@example.com"}}],
            "viber": {"text": "v"},
            "sms": {"text": "s"},
        }
    )
    assert answer["messages"][0]["status"]["groupName"] == "REJECTED"


@pytest.mark.parametrize(
    "settings",
    [
        {"time_scale": -1},
        {"report_style": "loud"},
        {"personas": {"1": "ghost"}},
        {"personas": {"definitions": {"odd": {"VIBER": "explode"}}}},
        {"rate_limits": "sometimes"},
        {"colour": "red"},
        {"delivery_delay": [5, 1]},
    ],
)
def test_bad_settings_are_refused_and_leave_the_config_alone(state: SandboxState, settings: dict) -> None:
    before = state.config.public()
    with pytest.raises((ValueError, TypeError)):
        state.configure(settings)
    assert state.config.public() == before


def test_custom_persona_definitions(state: SandboxState) -> None:
    state.configure(
        {
            "personas": {
                "definitions": {"sms_absent": {"VIBER": "silent", "SMS": "absent"}},
                "by_number": {"41790000001": "sms_absent"},
            }
        }
    )
    send(state, ["41790000001"], viber={"text": "v", "validityPeriod": 1})
    state.advance(600)
    (report,) = state.take_reports()["results"]
    assert (report["channel"], report["error"]["name"]) == ("SMS", "EC_ABSENT_SUBSCRIBER")


def test_fault_specs_of_the_command_line() -> None:
    assert parse_fault_spec("endpoint=advanced,status=503,times=2,process") == {
        "endpoint": "advanced",
        "status": 503,
        "times": 2,
        "process": True,
    }
    assert parse_fault_spec("endpoint=reports,latency=1.5,drop=false") == {
        "endpoint": "reports",
        "latency": 1.5,
        "drop": False,
    }
    with pytest.raises(ValueError):
        parse_fault_spec("endpoint=logs,colour=red")


def test_errors_carry_infobips_envelope(state: SandboxState) -> None:
    with pytest.raises(SandboxError) as err:
        state.get_scenario("0" * 32)
    assert err.value.status == 404
    assert err.value.body()["requestError"]["serviceException"]["messageId"] == "NOT_FOUND"
