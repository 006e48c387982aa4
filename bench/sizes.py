"""Section 4: size at scale (XCom, sensor summary, trigger kwargs) and the sensor's memory."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from bench.common import BenchError, SandboxProcess, requests_to, run_worker, workdir
from bench.report import Section, Table, Target, fmt_bytes, fmt_s

#: A frozen clock while sending and deferring: nothing is delivered until the clock is moved on.
FROZEN_SCALE = 0.0001


def _measure(n: int) -> dict[str, Any]:
    """Send N, defer once (trigger kwargs), then let the sensor ingest every report (memory, summary)."""
    bulks = math.ceil(n / 1000)
    files = {
        "trigger_file": str(workdir() / f"size-trigger-{n}.json"),
        "event_file": str(workdir() / "unused"),
    }
    with SandboxProcess(time_scale=FROZEN_SCALE) as sb:
        key = sb.create_scenario()
        xcom = str(workdir() / f"size-send-{n}.json")
        send = run_worker(
            "send_operator",
            {"n": n, "scenario_key": key, "run_id": f"size_{n}", "save_xcom": xcom},
            env=sb.connection_env(),
            timeout=900,
        )
        args = {"send_result": xcom, "poke_interval": 1.0, "timeout": 1800, **files}
        deferred = run_worker("wait_defer_worker", args, env=sb.connection_env(), timeout=900)
        reports_before = requests_to(sb.stats(), "reports")
        box: dict[str, Any] = {}

        def tracker() -> None:
            try:
                box["result"] = run_worker("tracker_memory", args, env=sb.connection_env(), timeout=1800)
            except BaseException as exc:
                box["error"] = exc

        thread = threading.Thread(target=tracker)
        thread.start()
        # once the sensor made its first poke (all bulks pending), deliver everything: the next poke
        # then ingests one final report per destination
        deadline = time.monotonic() + 900
        while thread.is_alive() and requests_to(sb.stats(), "reports") < reports_before + bulks:
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        sb.configure(time_scale=60.0)
        sb.admin("POST", "clock/advance", {"hours": 6})
        thread.join()
        stats = sb.stats()
    if "error" in box:
        raise box["error"]
    mem = box["result"]
    return {
        "n": n,
        "xcom_bytes": send["xcom_bytes"],
        "trigger_kwargs_bytes": deferred.get("trigger_kwargs_bytes"),
        "summary_bytes": mem["summary_bytes"],
        "tracemalloc_peak": mem["tracemalloc_peak"],
        "rss_peak_delta": mem["rss_peak_delta"],
        "ingest_wall": mem["wall"],
        "reports_handed_out": int(stats.get("reports_handed_out") or 0),
        "summary": mem.get("summary"),
    }


def run(quick: bool) -> Section:
    """Run section 4; ``quick``: N=50."""
    sizes = [50] if quick else [1_000, 10_000, 100_000]
    section = Section(
        "sizes",
        "4. Size at scale",
        method=[
            "For each N: the operator sends N destinations to a sandbox process whose clock is frozen "
            f"(time scale {FROZEN_SCALE:g}), so nothing is final yet; "
            "the deferrable sensor's first `execute()` "
            "defers, and the trigger's serialized kwargs are measured (JSON bytes); then the sensor runs in "
            "poke mode under tracemalloc: after its first poke the sandbox clock is moved on 6 hours, so its "
            "next poke ingests one final report per destination (N reports, 1000 per request).",
            "Sizes are the bytes of `json.dumps` of the value (what Airflow stores). Memory: the tracemalloc "
            "peak of the whole sensor run (Python allocations, reports "
            "included while they are processed) and "
            "the peak RSS growth.",
            "Baseline: the N = 1,000 row (sizes should stay flat or grow with the number of bulks, N/1000, "
            "not with N).",
        ],
    )
    rows = [_measure(n) for n in sizes]
    table = Table(
        "Bytes of what Airflow stores, and sensor memory, versus N (baseline: the smallest N)",
        [
            "N",
            "Bulks",
            "Send XCom (JSON)",
            "Trigger kwargs (JSON)",
            "Sensor summary (JSON)",
            "Reports ingested",
            "Sensor tracemalloc peak",
            "Sensor peak RSS growth",
            "Sensor wall",
            "XCom vs smallest N",
        ],
    )
    base = rows[0]
    for r in rows:
        table.add(
            f"{r['n']:,}",
            math.ceil(r["n"] / 1000),
            fmt_bytes(r["xcom_bytes"]),
            fmt_bytes(r["trigger_kwargs_bytes"]),
            fmt_bytes(r["summary_bytes"]),
            f"{r['reports_handed_out']:,}",
            fmt_bytes(r["tracemalloc_peak"]),
            fmt_bytes(r["rss_peak_delta"]),
            fmt_s(r["ingest_wall"]),
            f"{r['xcom_bytes'] / base['xcom_bytes']:.2f}x",
        )
    section.tables.append(table)
    if any(r["trigger_kwargs_bytes"] is None for r in rows):
        raise BenchError("the sensor did not defer; no trigger kwargs to measure")
    big = rows[-1]
    per_bulk = {r["n"]: r["trigger_kwargs_bytes"] / math.ceil(r["n"] / 1000) for r in rows}
    section.targets.append(
        Target(
            f"Send XCom bounded (grows with bulks, not recipients): bytes per bulk at N={big['n']:,}",
            f"{big['xcom_bytes'] / math.ceil(big['n'] / 1000):,.0f} "
            f"B/bulk; {fmt_bytes(big['xcom_bytes'])} in all",
            big["xcom_bytes"] / math.ceil(big["n"] / 1000) < 1000 or big["n"] <= 1000,
        )
    )
    section.targets.append(
        Target(
            "Trigger kwargs grow with bulks, not recipients",
            ", ".join(f"{v:,.0f} B/bulk at {n:,}" for n, v in per_bulk.items()),
            all(v < 1000 for v in per_bulk.values()) or len(rows) == 1,
        )
    )
    section.targets.append(
        Target(
            f"Sensor summary bounded at N={big['n']:,}",
            fmt_bytes(big["summary_bytes"]),
            big["summary_bytes"] < 256 * 1024,
        )
    )
    section.notes.append(
        "Up to 1,000 destinations the send XCom carries the message id -> number map (contract 3), so "
        "the N = 1,000 row is the largest; above that the map is dropped and the XCom grows by one entry "
        "per bulk."
    )
    section.notes.append(
        f"Sensor memory at N={big['n']:,}: tracemalloc peak {fmt_bytes(big['tracemalloc_peak'])} "
        f"({big['tracemalloc_peak'] / big['n']:,.0f} B per destination)."
    )
    return section
