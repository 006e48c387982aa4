"""The benchmarks run end to end at tiny size and write the tables they promise (no timing asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # bench/ is a top-level package of the repository, not installed
    sys.path.insert(0, str(REPO))

from bench.large import PLOT, pace_of  # noqa: E402
from bench.report import Section, Table, Target, ascii_chart  # noqa: E402

LARGE = "5. Large sends: bulks in flight and the account's pace"


def _table(text: str, caption_start: str) -> tuple[list[str], list[list[str]]]:
    """Return the columns and rows of the Markdown table whose bold caption starts with ``caption_start``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"**{caption_start}"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    return rows[0], rows[2:]


@pytest.fixture(scope="module")
def quick_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "BENCHMARKS.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def quick_report(quick_out: Path) -> str:
    return quick_out.read_text()


@pytest.mark.bench
def test_quick_run_writes_every_section(quick_report: str) -> None:
    for title in (
        "1. Sending N destinations",
        "2. Waiting for delivery",
        "3. DAG parse cost",
        "4. Size at scale",
        LARGE,
        "6. A million from a file",
        "7. The delivery sensor's tracker at a million",
        "8. Capacity of a triggerer: deferred waits versus poke sensors",
    ):
        assert f"## {title}" in quick_report
    assert "This section failed" not in quick_report
    assert "Airflow 3." in quick_report and "CPU" in quick_report


@pytest.mark.bench
def test_send_table_has_the_three_ways_and_counts_requests(quick_report: str) -> None:
    columns, rows = _table(quick_report, "Sending N destinations")
    assert columns[:4] == ["N", "Way", "HTTP requests", "Destinations received"]
    assert "Wall vs lower bound" in columns
    ways = [row[1] for row in rows]
    assert any(w.startswith("lower bound") for w in ways)
    assert any(w.startswith("OmniSendAdvancedMessageOperator") for w in ways)
    assert any(w.startswith("per recipient") for w in ways)
    by_way = {row[1].split(":")[0].split(".")[0]: row for row in rows}
    # 50 destinations: one batched request, 50 per-recipient requests, as the sandbox counted them
    assert by_way["OmniSendAdvancedMessageOperator"][2] == "1"
    assert by_way["per recipient"][2] == "50"
    assert all(row[3] == "50" for row in rows)


@pytest.mark.bench
def test_wait_tables_compare_the_modes(quick_report: str) -> None:
    columns, rows = _table(quick_report, "Worker time held")
    assert columns[:4] == ["N", "Mode", "Worker wall", "Worker CPU"]
    modes = [row[1] for row in rows]
    assert "poke" in modes and any(m.startswith("deferrable") for m in modes)
    columns, rows = _table(quick_report, "Requests per poll")
    assert "Report requests per poll" in columns
    assert {row[2] for row in rows} >= {"poke", "deferrable: trigger"}


@pytest.mark.bench
def test_parse_and_size_tables(quick_report: str) -> None:
    _, rows = _table(quick_report, "DAG parse cost")
    assert rows[0][0].startswith("airflow.sdk alone")
    assert len(rows) == 3
    _, heavy = _table(quick_report, "Heavy modules")
    assert "`fastapi`" in [row[0] for row in heavy]
    columns, rows = _table(quick_report, "Bytes of what Airflow stores")
    assert columns[:5] == ["N", "Bulks", "Send XCom (JSON)", "Trigger kwargs (JSON)", "Sensor summary (JSON)"]
    assert rows and rows[0][0] == "50" and rows[0][5] == "50"  # 50 reports ingested


IN_FLIGHT_COLUMNS = [
    "N",
    "max_in_flight",
    "Wall",
    "Speed-up vs max_in_flight=1",
    "Client CPU",
    "Peak RSS growth",
    "HTTP requests",
    "Sandbox max in flight",
]


@pytest.mark.bench
def test_large_in_flight_tables_compare_with_sequential(quick_report: str) -> None:
    columns, rows = _table(quick_report, "Bulks in flight against a realistic latency")
    assert columns == IN_FLIGHT_COLUMNS
    assert [row[1] for row in rows] == ["1", "2", "4", "8"]
    assert all(row[0] == "2,000" for row in rows)
    assert rows[0][3] == "1.00x"  # the baseline, max_in_flight=1
    assert all(row[6] == "10" for row in rows)  # quick: 2,000 destinations in bulks of 200
    # the sandbox never saw more sends at once than the operator allowed, and max_in_flight=1 sent one by one
    assert all(1 <= int(row[7]) <= int(row[1]) for row in rows)
    assert rows[0][7] == "1"
    columns, rows = _table(quick_report, "The same sends with the latency off")
    assert columns == IN_FLIGHT_COLUMNS
    assert [row[1] for row in rows] == ["1", "4"]
    assert all(row[6] == "10" for row in rows)


@pytest.mark.bench
def test_large_pace_and_429_tables(quick_report: str) -> None:
    columns, rows = _table(quick_report, "The account's pace")
    assert columns[:5] == ["max_messages_per_second", "N", "Bulk size", "max_in_flight", "Bulks received"]
    assert {"Measured rate", "Off by", "Destinations per whole second (min / max)"} <= set(columns)
    assert rows == [rows[0]] and rows[0][:5] == ["2,000", "6,000", "200", "4", "30"]
    assert re.fullmatch(r"[\d,.]+ /s over [\d.]+ s", rows[0][columns.index("Measured rate")])
    columns, rows = _table(quick_report, "Shared 429 backoff")
    assert columns == [
        "N",
        "Bulks",
        "max_in_flight",
        "HTTP requests",
        "429 answers",
        "Wall",
        "Destinations received",
        "Duplicate message ids",
        "Every destination once",
    ]
    row = rows[0]
    assert row[:3] == ["300", "30", "8"]
    # 30 sends in a few seconds against 10 a second: some 429s, each retried; exactly once all the same
    assert int(row[4]) > 0 and int(row[3]) == 30 + int(row[4])
    assert row[6:] == ["300", "0", "yes"]


@pytest.mark.bench
def test_large_targets_and_plot(quick_report: str, quick_out: Path) -> None:
    _, rows = _table(quick_report, "Summary of the targets")
    large = {row[1]: row[3] for row in rows if row[0] == LARGE}
    assert len(large) == 3
    assert all(verdict in ("**PASS**", "**FAIL**") for verdict in large.values())
    names = list(large)
    assert names[0].startswith("At 2,000 destinations with the latency on, the default max_in_flight (4)")
    assert "(quick:" in names[0] and "(quick:" in names[1]
    assert names[1].startswith("Within 5% of max_messages_per_second")
    assert names[2] == "Every destination accepted once under 429s"
    section = quick_report.split(f"## {LARGE}", 1)[1]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "Wall time vs max_in_flight" in section and "```" in section  # the ASCII fallback
    else:
        assert f"]({PLOT})" in section
        assert (quick_out.parent / PLOT).read_bytes().startswith(b"\x89PNG")


def test_pace_of_measures_the_rate_between_arrivals() -> None:
    # 13 bulks of 500, one every 0.25 s (2,000 a second), plus a 429 that carried nothing
    sends = [{"received": 100 + i * 0.25, "destinations": 500, "status": 200} for i in range(13)]
    sends.append({"received": 100.1, "destinations": 0, "status": 429})
    pace = pace_of(sends)
    assert pace["rate"] == pytest.approx(2000.0)
    assert pace["span"] == pytest.approx(3.0) and pace["bulks"] == 13
    assert pace["seconds"] == 3 and pace["sec_min"] == pace["sec_max"] == 2000
    assert pace_of(sends[:1])["bulks"] == 1


@pytest.mark.bench
def test_targets_are_judged(quick_report: str) -> None:
    columns, rows = _table(quick_report, "Summary of the targets")
    assert columns == ["Section", "Target", "Measured", "Result"]
    assert len(rows) >= 8
    assert all(row[3] in ("**PASS**", "**FAIL**", "**n/a**") for row in rows)


def test_table_rejects_a_row_of_the_wrong_width() -> None:
    table = Table("t", ["a", "b"])
    table.add(1, "x|y")
    assert table.markdown().splitlines()[-1] == "| 1 | x\\|y |"
    with pytest.raises(ValueError):
        table.add(1)


def test_section_shows_targets_with_verdicts() -> None:
    section = Section("k", "Title", targets=[Target("fast", "1 s", True), Target("small", "2 B", False)])
    text = section.markdown("machine")
    assert "| fast | 1 s | **PASS** |" in text
    assert "| small | 2 B | **FAIL** |" in text


def test_ascii_chart_orders_bars_by_value() -> None:
    chart = ascii_chart(
        "c", {"slow": [(10, 100.0)], "fast": [(10, 1.0)], "none": [(10, None)]}, x_label="N", y_label="s"
    )
    bars = {line.split("|")[0].strip(): line.split("|")[1] for line in chart.splitlines() if "|" in line}
    assert bars["slow"].count("#") > bars["fast"].count("#") >= 1
    assert bars["none"].strip() == "n/a"
