"""The sandbox's simulation without HTTP: timelines, styles, settings, memory."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from airflow_provider_omni.sandbox.state import (
    SandboxConfig,
    SandboxError,
    SandboxState,
    SettingError,
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
        {"time_scale": math.nan},
        {"time_scale": math.inf},
        {"logs_lag": -1},
        {"seed": math.inf},
        {"prices": {"SMS": math.nan}},
        {"rate_limits": {"logs": [math.inf, 60]}},
        {"reject_duplicate_message_ids": "maybe"},
        {"time_scale": 1, "faults": [{"endpoint": "logs", "status": 500}, {"endpoint": "logs", "rate": 2}]},
    ],
)
def test_bad_settings_are_refused_and_leave_the_config_alone(state: SandboxState, settings: dict) -> None:
    before = state.config.public()
    with pytest.raises((ValueError, TypeError)):
        state.configure(settings)
    assert state.config.public() == before
    assert state.faults() == []
    assert state.clock.scale == 0


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


# -- non-finite numbers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"time_scale": math.nan}, "time_scale"),
        ({"token_ttl": math.inf}, "token_ttl"),
        ({"logs_lag": -math.inf}, "logs_lag"),
        ({"prices": {"VIBER": math.nan}}, "prices.VIBER"),
        ({"delivery_delay": (0.0, math.inf)}, "delivery_delay[1]"),
    ],
)
def test_a_config_built_directly_refuses_non_finite_numbers(values: dict[str, Any], field: str) -> None:
    with pytest.raises(SettingError, match=re.escape(field)) as err:
        SandboxConfig(**values)
    assert err.value.field == field


@pytest.mark.parametrize("seconds", [math.nan, math.inf, -math.inf, "nan", "inf", -1, 1e300])
def test_advancing_the_clock_by_a_bad_amount_changes_nothing(state: SandboxState, seconds: Any) -> None:
    before = state.clock.now()
    with pytest.raises(SettingError, match="seconds"):
        state.advance(seconds)
    assert state.clock.now() == before
    send(state, ["41793026720"])
    state.advance(3600)
    assert len(state.take_reports()["results"]) == 1


def test_a_reset_restarts_a_clock_that_shows_no_date(state: SandboxState) -> None:
    state.clock.advance(math.nan)
    state.reset()
    assert math.isfinite(state.clock.now())
    state.create_scenario({"flow": FLOW})
    send(state, ["41793026720"])
    state.advance(3600)
    assert len(state.take_reports()["results"]) == 1


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ("endpoint=reports,latency=nan", "latency"),
        ("endpoint=reports,status=500,rate=inf", "rate"),
        ("endpoint=reports,status=429,retry_after=-inf", "retry_after"),
        ("endpoint=reports,status=5e2x", "status"),
    ],
)
def test_fault_specs_with_non_finite_numbers_are_refused(spec: str, field: str) -> None:
    with pytest.raises(SettingError, match=field) as err:
        parse_fault_spec(spec)
    assert err.value.field == field


def test_an_answer_fault_spec() -> None:
    assert parse_fault_spec("endpoint=advanced,answer=no_messages,process=true,times=1") == {
        "endpoint": "advanced",
        "answer": "no_messages",
        "process": True,
        "times": 1,
    }


# -- answers computed without accepting ------------------------------------------------------------


def test_a_send_that_is_not_accepted_records_nothing(state: SandboxState) -> None:
    before = state.stats()
    answer = send(state, ["41793026720", "41793026726"], bulkId="dry")
    dry = SandboxState(SandboxConfig(time_scale=0))
    dry.create_scenario({"name": "default", "flow": FLOW})
    dry_answer = dry.send_advanced(
        {
            "bulkId": "dry",
            "destinations": [{"to": {"phoneNumber": n}} for n in ["41793026720", "41793026726"]],
            "viber": {"text": "v"},
            "sms": {"text": "s"},
        },
        accept=False,
    )
    assert dry_answer == answer  # the same answer, ids included (same seed)
    stats = dry.stats()
    assert (stats["destinations"], stats["bulks"], stats["messages_logged"], stats["advanced_requests"]) == (
        0,
        {},
        0,
        0,
    )
    dry.advance(3600)
    assert dry.take_reports()["results"] == [] and dry.logs()["results"] == []
    assert before["destinations"] == 0
