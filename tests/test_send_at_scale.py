"""Large sends: destinations from a file, several bulks in flight, a messages-per-second limit, one
shared pause after a 429, and progress lines, against the sandbox (its own records are the truth)."""

from __future__ import annotations

import csv
import gzip
import itertools
import json
import re
import statistics
from typing import TYPE_CHECKING, Any

import pendulum
import pytest
from test_send_exactly_once import (
    FakeStore,
    assert_each_received_once,
    context,
    make_operator,
    numbers,
)

from airflow_provider_omni.exceptions import OmniValidationError
from airflow_provider_omni.hooks.omni import OmniHook
from airflow_provider_omni.operators.send import OmniSendAdvancedMessageOperator
from airflow_provider_omni.pacing import SendPace

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


@pytest.fixture
def scenario_key(omni_sandbox: Any, omni_connection: str) -> str:
    flow = [{"channel": "VIBER", "from": "Brand"}, {"channel": "SMS", "from": "Brand"}]
    return OmniHook(omni_connection).create_scenario("scale", flow).key


def from_file(scenario_key: str, path: Path, **kwargs: Any) -> OmniSendAdvancedMessageOperator:
    return OmniSendAdvancedMessageOperator(
        task_id="send", scenario_key=scenario_key, destinations_path=str(path), sms="Hi", **kwargs
    )


def write_csv(path: Path, rows: list[dict[str, str]], header: list[str]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


# -- destinations from a file ------------------------------------------------------------------------


def test_a_csv_file_is_sent_once_to_every_row(omni_sandbox: Any, scenario_key: str, tmp_path: Path) -> None:
    people = numbers(120)
    path = write_csv(
        tmp_path / "campaign.csv", [{"name": "x", "msisdn": p} for p in people], ["name", "msisdn"]
    )

    result = from_file(scenario_key, path, batch_size=25).execute(context(1, FakeStore()))

    assert_each_received_once(omni_sandbox, people)
    assert (result["total"], result["accepted"], len(result["bulks"])) == (120, 120, 5)


@pytest.mark.dag
def test_a_gzipped_json_lines_file_through_a_dag_run(
    omni_sandbox: Any, scenario_key: str, tmp_path: Path, run_dag: Any, task_states: Any
) -> None:
    people = numbers(30)
    path = tmp_path / "campaign.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        for i, person in enumerate(people):
            line = person if i % 2 else {"to": {"phoneNumber": person}}
            handle.write(json.dumps(line) + "\n")
    from tests.airflow_compat import DAG

    with DAG(
        "send_from_file", schedule=None, start_date=pendulum.datetime(2026, 1, 1), params={"path": str(path)}
    ) as dag:
        OmniSendAdvancedMessageOperator(
            task_id="send", scenario_key=scenario_key, destinations_path="{{ params.path }}", sms="Hi"
        )

    dag_run = run_dag(dag)

    assert task_states(dag_run)["send"] == "success"
    assert_each_received_once(omni_sandbox, people)


def test_a_bad_row_deep_in_the_file_names_its_line_and_field_and_nothing_is_sent(
    omni_sandbox: Any, scenario_key: str, tmp_path: Path
) -> None:
    people = numbers(3000)
    people[2233] = "41-not-a-number"
    path = write_csv(tmp_path / "campaign.csv", [{"phone": p} for p in people], ["phone"])

    with pytest.raises(OmniValidationError) as err:
        from_file(scenario_key, path).execute(context(1, FakeStore()))

    assert "destinations_path line 2235.to.phoneNumber" in str(err.value)  # header is line 1
    assert "(1 of 3000 destinations)" in str(err.value)
    assert omni_sandbox.admin.stats()["requests"].get("advanced", 0) == 0


def test_a_duplicate_anywhere_in_the_file_is_refused_with_both_lines(
    omni_sandbox: Any, scenario_key: str, tmp_path: Path
) -> None:
    people = numbers(2500)
    people.append(people[7])
    path = write_csv(tmp_path / "campaign.csv", [{"phoneNumber": p} for p in people], ["phoneNumber"])

    with pytest.raises(OmniValidationError) as err:
        from_file(scenario_key, path).execute(context(1, FakeStore()))

    assert "destinations_path line 2502.to" in str(err.value)
    assert "is already destinations_path line 9" in str(err.value)
    assert omni_sandbox.admin.stats()["requests"].get("advanced", 0) == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"destinations": ["41793026727"], "destinations_path": "x.csv"}, "destinations_path"),
        ({"destinations": ["41793026727"], "max_in_flight": 0}, "max_in_flight"),
        ({"destinations": ["41793026727"], "max_in_flight": 17}, "max_in_flight"),
        ({"destinations": ["41793026727"], "max_in_flight": True}, "max_in_flight"),
        ({"destinations": ["41793026727"], "max_messages_per_second": 0}, "max_messages_per_second"),
        ({"destinations": ["41793026727"], "max_messages_per_second": "fast"}, "max_messages_per_second"),
    ],
)
def test_bad_send_options_are_refused_before_anything_is_sent(
    omni_sandbox: Any, scenario_key: str, kwargs: dict[str, Any], field: str
) -> None:
    destinations = kwargs.pop("destinations")
    with pytest.raises(OmniValidationError) as err:
        make_operator(scenario_key, destinations, **kwargs).execute(context(1, FakeStore()))
    assert field in err.value.validation_errors, err.value
    assert str(err.value).startswith(field) or field in str(err.value)
    assert omni_sandbox.admin.stats()["requests"].get("advanced", 0) == 0


# -- several bulks in flight -------------------------------------------------------------------------


@pytest.mark.parametrize("in_flight", [1, 4])
def test_max_in_flight_is_how_many_bulks_infobip_serves_at_once(
    omni_sandbox: Any, scenario_key: str, in_flight: int
) -> None:
    omni_sandbox.admin.configure(request_latency=0.2)

    make_operator(scenario_key, numbers(160), batch_size=10, max_in_flight=in_flight).execute(
        context(1, FakeStore())
    )

    assert omni_sandbox.admin.stats()["max_in_flight"]["advanced"] == in_flight
    assert_each_received_once(omni_sandbox, numbers(160))


def test_the_record_of_every_bulk_is_kept_when_bulks_go_out_at_once(
    omni_sandbox: Any, scenario_key: str
) -> None:
    store = FakeStore()
    omni_sandbox.admin.configure(request_latency=0.05)

    first = make_operator(scenario_key, numbers(200), batch_size=10, max_in_flight=8).execute(
        context(1, store)
    )
    again = make_operator(scenario_key, numbers(200), batch_size=10, max_in_flight=8).execute(
        context(2, store)
    )

    assert len(first["bulks"]) == 20
    assert again["bulks"] == first["bulks"]  # the second try found every bulk recorded, sent nothing
    assert omni_sandbox.admin.stats()["requests"]["advanced"] == 20


# -- the account's pace ------------------------------------------------------------------------------


def test_max_messages_per_second_is_the_rate_infobip_sees(omni_sandbox: Any, scenario_key: str) -> None:
    """The pace, not the machine, sets the rate here: at 500/s the in-process sandbox's own work is
    small even on a loaded CI machine (at 2,000/s with three Airflow suites on 2 cores the sandbox's
    CPU held the send at ~1,750/s).  The 2,000/s over 30 s figure is the benchmark's (section 5)."""
    rate, batch = 500.0, 50
    make_operator(
        scenario_key, numbers(1500), batch_size=batch, max_in_flight=4, max_messages_per_second=rate
    ).execute(context(1, FakeStore()))

    sends = sorted(omni_sandbox.admin.sends(), key=lambda s: s["received"])
    assert len(sends) == 30
    # the rate: the slope of destinations sent so far against the time each bulk arrived (a fit, so
    # that one late arrival, such as the first one's connection, does not set it)
    sent_before = list(itertools.accumulate((s["destinations"] for s in sends), initial=0))[:-1]
    measured = statistics.linear_regression([s["received"] for s in sends], sent_before).slope
    assert measured == pytest.approx(rate, rel=0.1), f"{measured:.0f}/s for a limit of {rate:.0f}/s"
    # and no second of it carries more than the limit (two bulks of slack for where the second starts
    # and for arrivals a loaded machine bunches up)
    for first in sends:
        in_second = [s for s in sends if first["received"] <= s["received"] < first["received"] + 1.0]
        assert sum(s["destinations"] for s in in_second) <= rate + 2 * batch


def test_a_429_pauses_the_whole_send_not_one_request(
    omni_sandbox: Any, scenario_key: str, logs: Callable[[], str]
) -> None:
    """Infobip allows 6 sends a second here; four bulks in flight run into it.  After each 429 no
    request of the send goes out until the pause (Retry-After: 1 s) ends."""
    omni_sandbox.admin.configure(rate_limits={"advanced": [6, 1.0]})

    result = make_operator(scenario_key, numbers(150), batch_size=5, max_in_flight=4).execute(
        context(1, FakeStore())
    )

    assert result["accepted"] == 150
    assert_each_received_once(omni_sandbox, numbers(150))
    sends = omni_sandbox.admin.sends()
    throttled = [s for s in sends if s["status"] == 429]
    assert throttled, "the limit was never reached: the test proves nothing"
    assert "Infobip answered 429: the whole send pauses" in logs()
    for refused in throttled:
        during_pause = [
            s for s in sends if refused["answered"] + 0.3 < s["received"] < refused["answered"] + 0.9
        ]
        assert not during_pause, f"{len(during_pause)} request(s) went out during the pause"


def test_the_shared_pause_grows_while_429s_follow_one_another() -> None:
    now = [0.0]
    pace = SendPace(None, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    pauses = [pace.throttle(None) for _ in range(4)]
    assert all(later > earlier / 2 for earlier, later in itertools.pairwise(pauses))
    assert pauses[-1] > pauses[0] * 2  # 1, 2, 4, 8 s ceilings (a random half of each is jitter)
    pace.went_through()
    assert pace.throttle(None) <= 1.0
    assert pace.throttle(3.0) == 3.0  # Retry-After wins
    assert pace.throttled == 6


def test_the_pace_spaces_requests_by_their_size() -> None:
    now = [100.0]
    starts: list[float] = []
    pace = SendPace(500, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    for size in (1000, 1000, 250, 1000):
        pace.wait_turn(size)
        starts.append(now[0])
    assert [round(b - a, 3) for a, b in itertools.pairwise(starts)] == [2.0, 2.0, 0.5]


# -- progress ----------------------------------------------------------------------------------------


def test_a_long_send_logs_its_progress(omni_sandbox: Any, scenario_key: str, logs: Callable[[], str]) -> None:
    omni_sandbox.admin.configure(request_latency=0.1)

    make_operator(scenario_key, numbers(1000), batch_size=50, max_in_flight=2, progress_interval=0.3).execute(
        context(1, FakeStore())
    )

    lines = re.findall(r"Progress: [^\n\[]*", logs())
    assert len(lines) >= 2, lines
    assert " of 1,000 destinations sent (" in lines[0]
    assert "/s, about " in lines[0] and " left" in lines[0]
    assert lines[-1].startswith("Progress: 1,000 of 1,000 destinations sent (100.0%)")
