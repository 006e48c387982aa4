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

from bench.report import Section, Table, Target, ascii_chart  # noqa: E402


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
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> str:
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
    return out.read_text()


@pytest.mark.bench
def test_quick_run_writes_every_section(quick_report: str) -> None:
    for title in (
        "1. Sending N destinations",
        "2. Waiting for delivery",
        "3. DAG parse cost",
        "4. Size at scale",
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
