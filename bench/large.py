"""Section 5: large sends: bulks in flight against a realistic latency, the account's pace, shared 429s."""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.common import BenchError, SandboxProcess, has_module, median, requests_to, run_worker
from bench.report import Section, Table, Target, ascii_chart, fmt_bytes, fmt_ratio, fmt_s, save_figure

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

#: About a real Infobip round trip over a WAN: a bulk of 1000 waits 0.2 s for its answer.
LATENCY = {"request_latency": 0.15, "latency_per_destination": 0.00005}
NO_LATENCY = {"request_latency": 0.0, "latency_per_destination": 0.0}
IN_FLIGHT = (1, 2, 4, 8)
IN_FLIGHT_NO_LATENCY = (1, 4)
DEFAULT_IN_FLIGHT = 4
TARGET_OVERLAP = 3.0
TARGET_PACE = 0.05
#: The account's limit of section 5.3: 10 sends a second (Infobip publishes none; an account may have one).
RATE_LIMIT = (10, 1.0)
PLOT = "bench/large_sends.png"


@dataclass
class Plan:
    """The sizes of one run (full or quick)."""

    sizes: tuple[int, ...]
    batch: int
    reps: dict[int, int]
    pace_rate: float
    pace_n: int
    pace_batch: int
    throttle_bulks: int
    throttle_batch: int = 10
    throttle_in_flight: int = 8


FULL = Plan(
    sizes=(10_000, 100_000),
    batch=1000,
    reps={10_000: 3, 100_000: 1},
    pace_rate=2000.0,
    pace_n=60_000,
    pace_batch=500,
    throttle_bulks=300,
)
QUICK = Plan(
    sizes=(2_000,),
    batch=200,
    reps={2_000: 1},
    pace_rate=2000.0,
    pace_n=6_000,
    pace_batch=200,
    throttle_bulks=30,
)


@dataclass
class Run:
    """One send measured: the client's figures and what the sandbox saw."""

    wall: float
    cpu: float
    rss_peak_delta: float
    requests: int
    destinations: int
    max_in_flight_seen: int
    duplicates: int
    sends: list[dict[str, Any]]
    error: str | None = None


def send(
    sb: SandboxProcess,
    *,
    n: int,
    batch: int,
    in_flight: int,
    run_id: str,
    rate: float | None = None,
    keep_sends: bool = False,
) -> Run:
    """Reset the sandbox, send ``n`` destinations with the operator in a fresh worker; return the figures.

    A worker that fails (the operator raised) is reported in :attr:`Run.error` with the sandbox's
    counts, not raised.
    """
    sb.reset()
    key = sb.create_scenario()
    args: dict[str, Any] = {
        "url": sb.url,
        "api_key": sb.api_key,
        "scenario_key": key,
        "n": n,
        "run_id": run_id,
        "batch_size": batch,
        "max_in_flight": in_flight,
        "max_messages_per_second": rate,
        "build": False,
    }
    error = None
    try:
        result = run_worker("send_operator", args, env=sb.connection_env(), timeout=900)
    except BenchError as exc:
        result, error = {"wall": math.nan, "cpu": math.nan, "rss_peak_delta": math.nan}, str(exc)
    stats = sb.stats()
    return Run(
        wall=float(result["wall"]),
        cpu=float(result["cpu"]),
        rss_peak_delta=float(result["rss_peak_delta"]),
        requests=requests_to(stats, "advanced"),
        destinations=int(stats.get("destinations") or 0),
        max_in_flight_seen=int((stats.get("max_in_flight") or {}).get("advanced", 0)),
        duplicates=len(stats.get("duplicate_message_ids") or {}),
        sends=list(sb.admin("GET", "sends")["sends"]) if keep_sends else [],
        error=error,
    )


def pace_of(sends: list[dict[str, Any]]) -> dict[str, float]:
    """Return the rate the sandbox received destinations at, and the per-second counts.

    The rate is the destinations of every bulk but the last over the time from the first bulk's
    arrival to the last one's (each bulk's share of the timeline is before the next one); the
    per-second counts are the destinations received in each whole second from the first arrival.
    """
    accepted = sorted((s for s in sends if int(s["status"]) < 300), key=lambda s: float(s["received"]))
    if len(accepted) < 2:
        return dict.fromkeys(("rate", "sec_min", "sec_max"), math.nan) | {
            "span": 0.0,
            "bulks": float(len(accepted)),
            "seconds": 0.0,
        }
    first, last = float(accepted[0]["received"]), float(accepted[-1]["received"])
    span = last - first
    rate = sum(int(s["destinations"]) for s in accepted[:-1]) / span if span > 0 else math.inf
    whole = int(span)  # seconds [0, whole) are complete
    per_second: Counter[int] = Counter({k: 0 for k in range(whole)})
    for s in accepted:
        k = int(float(s["received"]) - first)
        if k < whole:
            per_second[k] += int(s["destinations"])
    counts = list(per_second.values())
    return {
        "rate": rate,
        "span": span,
        "bulks": len(accepted),
        "sec_min": min(counts) if counts else math.nan,
        "sec_max": max(counts) if counts else math.nan,
        "seconds": whole,
    }


def _method(plan: Plan, quick: bool) -> list[str]:
    reps = ", ".join(f"{plan.reps[n]} at {n:,}" for n in plan.sizes)
    return [
        "Server: the OMNI sandbox in its own process, reset before every measurement, with a realistic "
        f"latency on: `request_latency={LATENCY['request_latency']:g}` real seconds per request plus "
        f"`latency_per_destination={LATENCY['latency_per_destination']:.5f}` per destination of a send "
        "(a bulk of 1000 waits 0.2 s before its answer; requests wait side by side). Its admin stats "
        "give the requests, the destinations, duplicates and the most sends served at the same time; "
        "`GET /_sandbox/sends` gives each send's arrival time, size and status.",
        "Client: `OmniSendAdvancedMessageOperator.execute()` in a fresh interpreter per measurement "
        "(minimal context, as in section 1), scenario key given; wall, CPU (user+sys) and peak RSS "
        f"growth of the client process. Bulks of {plan.batch:,}"
        + (" (quick: smaller bulks, so that the tiny N still makes several)" if quick else " (the default)")
        + ".",
        "Bulks in flight: the baseline is `max_in_flight=1`, measured in the same run: the sequential "
        "lower bound of this latency, where every bulk waits its round trip before the next goes. "
        f"`max_in_flight` = {', '.join(map(str, IN_FLIGHT))} run in rounds (1, 2, 4, 8, 1, 2, ...) so "
        f"drift hits all alike; repetitions: {reps}, walls are medians. The same sends with the "
        "latency off (`max_in_flight` 1 vs 4) show that the gain comes from overlapping round trips, "
        "not from more CPU.",
        f"The account's pace: `max_messages_per_second={plan.pace_rate:,.0f}`, {plan.pace_n:,} "
        f"destinations in bulks of {plan.pace_batch}, `max_in_flight=4`, latency on "
        f"(a {plan.pace_n / plan.pace_rate:.0f}-second send). The rate is measured on the sandbox's "
        "side: the destinations of every bulk but the last over the time from the first bulk's arrival "
        "to the last one's; per-second counts are the destinations that arrived in each whole second.",
        f"Shared 429 backoff: the sandbox limits sends to {RATE_LIMIT[0]} a second "
        f"(`rate_limits={{'advanced': [{RATE_LIMIT[0]}, {RATE_LIMIT[1]}]}}`: 429 with `Retry-After`), "
        f"{plan.throttle_bulks} bulks of {plan.throttle_batch} with "
        f"`max_in_flight={plan.throttle_in_flight}`, latency on. A 429 pauses every request of the send; "
        "every destination must arrive exactly once (no duplicate message id, the destination count "
        "equal to N).",
    ]


def run(quick: bool, out_dir: Path | None = None) -> Section:
    """Run section 5; ``quick`` uses tiny sizes; the plot (if matplotlib) goes to ``out_dir/bench/``."""
    plan = QUICK if quick else FULL
    section = Section(
        "large", "5. Large sends: bulks in flight and the account's pace", method=_method(plan, quick)
    )
    runs: dict[tuple[int, bool, int], list[Run]] = {}
    with SandboxProcess(time_scale=60.0) as sb:
        for n in plan.sizes:
            for rep in range(plan.reps[n]):
                for latency, levels in ((True, IN_FLIGHT), (False, IN_FLIGHT_NO_LATENCY)):
                    sb.configure(**(LATENCY if latency else NO_LATENCY))
                    for k in levels:
                        run_id = f"large_{n}_{'on' if latency else 'off'}_{k}_{rep}"
                        measured = send(sb, n=n, batch=plan.batch, in_flight=k, run_id=run_id)
                        runs.setdefault((n, latency, k), []).append(measured)
        sb.configure(**LATENCY)
        paced = send(
            sb,
            n=plan.pace_n,
            batch=plan.pace_batch,
            in_flight=DEFAULT_IN_FLIGHT,
            rate=plan.pace_rate,
            run_id="large_pace",
            keep_sends=True,
        )
        sb.configure(rate_limits={"enabled": True, "advanced": list(RATE_LIMIT)})
        throttle_n = plan.throttle_bulks * plan.throttle_batch
        throttled = send(
            sb,
            n=throttle_n,
            batch=plan.throttle_batch,
            in_flight=plan.throttle_in_flight,
            run_id="large_429",
            keep_sends=True,
        )
        sb.configure(rate_limits={"enabled": False})

    walls = {key: median([r.wall for r in rs]) for key, rs in runs.items()}
    _in_flight_tables(section, plan, runs, walls)
    pace = pace_of(paced.sends)
    _pace_table(section, plan, paced, pace)
    _throttle_table(section, plan, throttled, throttle_n)
    _plot(section, plan, walls, out_dir)
    _targets(section, plan, walls, paced, pace, throttled, throttle_n, quick)
    return section


def _in_flight_tables(
    section: Section, plan: Plan, runs: dict[tuple[int, bool, int], list[Run]], walls: dict[Any, float]
) -> None:
    columns = [
        "N",
        "max_in_flight",
        "Wall",
        "Speed-up vs max_in_flight=1",
        "Client CPU",
        "Peak RSS growth",
        "HTTP requests",
        "Sandbox max in flight",
    ]
    for latency, levels, caption in (
        (
            True,
            IN_FLIGHT,
            "Bulks in flight against a realistic latency (0.15 s + 0.05 ms per destination a request; "
            "baseline: max_in_flight=1, the sequential lower bound, same run)",
        ),
        (False, IN_FLIGHT_NO_LATENCY, "The same sends with the latency off (max_in_flight 1 vs 4)"),
    ):
        table = Table(caption, columns)
        for n in plan.sizes:
            base = walls[n, latency, 1]
            for k in levels:
                rs = runs[n, latency, k]
                wall = walls[n, latency, k]
                table.add(
                    f"{n:,}",
                    k,
                    fmt_s(wall) + (f" (median of {len(rs)})" if len(rs) > 1 else ""),
                    fmt_ratio(base / wall) if wall > 0 else "n/a",
                    fmt_s(median([r.cpu for r in rs])),
                    fmt_bytes(median([r.rss_peak_delta for r in rs])),
                    f"{int(median([r.requests for r in rs])):,}",
                    max(r.max_in_flight_seen for r in rs),
                )
        section.tables.append(table)
    seen = [r.max_in_flight_seen for (_, latency, k), rs in runs.items() if not latency and k > 1 for r in rs]
    top = max(IN_FLIGHT_NO_LATENCY)
    gains = ", ".join(f"{walls[n, False, 1] / walls[n, False, top]:.2f}x at {n:,}" for n in plan.sizes)
    section.notes.append(
        f"With the latency off, max_in_flight {top} vs 1: {gains}. The sandbox (one process, one event "
        f"loop) had at most {max(seen, default=0)} send(s) in flight: it is busy for the whole of each "
        "request, so all that can overlap is the client's CPU with the sandbox's, on "
        f"{len(os.sched_getaffinity(0))} shared cores. With the latency on, the gain is the round trips "
        "waited side by side: close to max_in_flight, bounded by it and by the CPU of both sides."
    )


def _pace_table(section: Section, plan: Plan, paced: Run, pace: dict[str, float]) -> None:
    table = Table(
        "The account's pace: max_messages_per_second over one send (measured on the sandbox's side)",
        [
            "max_messages_per_second",
            "N",
            "Bulk size",
            "max_in_flight",
            "Bulks received",
            "Wall",
            "Measured rate",
            "Off by",
            "Destinations per whole second (min / max)",
        ],
    )
    rate = pace["rate"]
    table.add(
        f"{plan.pace_rate:,.0f}",
        f"{plan.pace_n:,}",
        plan.pace_batch,
        DEFAULT_IN_FLIGHT,
        f"{int(pace['bulks']):,}",
        fmt_s(paced.wall),
        f"{rate:,.1f} /s over {pace['span']:.2f} s",
        f"{(rate / plan.pace_rate - 1) * 100:+.2f}%",
        f"{pace['sec_min']:,.0f} / {pace['sec_max']:,.0f} ({pace.get('seconds', 0):.0f} s)",
    )
    section.tables.append(table)


def _throttle_table(section: Section, plan: Plan, throttled: Run, n: int) -> None:
    table = Table(
        f"Shared 429 backoff: the sandbox takes {RATE_LIMIT[0]} sends a second",
        [
            "N",
            "Bulks",
            "max_in_flight",
            "HTTP requests",
            "429 answers",
            "Wall",
            "Destinations received",
            "Duplicate message ids",
            "Every destination once",
        ],
    )
    status_429 = sum(1 for s in throttled.sends if int(s["status"]) == 429)
    table.add(
        f"{n:,}",
        plan.throttle_bulks,
        plan.throttle_in_flight,
        f"{throttled.requests:,}",
        f"{status_429:,}",
        "failed" if throttled.error else fmt_s(throttled.wall),
        f"{throttled.destinations:,}",
        throttled.duplicates,
        "yes" if _once(throttled, n) else "no",
    )
    section.tables.append(table)
    if throttled.error:
        section.notes.append("The throttled send failed: " + throttled.error.splitlines()[-1][:300])


def _once(run: Run, n: int) -> bool:
    return run.error is None and run.duplicates == 0 and run.destinations == n


def _series_keys(plan: Plan) -> list[tuple[int, bool]]:
    return [(n, latency) for n in plan.sizes for latency in (True, False)]


def _series(plan: Plan, walls: dict[Any, float]) -> dict[str, Sequence[tuple[float, float | None]]]:
    """Return ``{"N=..., latency on|off": [(max_in_flight, median wall), ...]}``."""
    series: dict[str, Sequence[tuple[float, float | None]]] = {}
    for n, latency in _series_keys(plan):
        levels = IN_FLIGHT if latency else IN_FLIGHT_NO_LATENCY
        series[f"N={n:,}, latency {'on' if latency else 'off'}"] = [(k, walls[n, latency, k]) for k in levels]
    return series


def _plot(section: Section, plan: Plan, walls: dict[Any, float], out_dir: Path | None) -> None:
    """Plot wall vs max_in_flight (a PNG with matplotlib, else an ASCII chart)."""
    series = _series(plan, walls)
    title = "Wall time vs max_in_flight, with and without the latency"
    if out_dir is None or not has_module("matplotlib"):
        section.charts.append(ascii_chart(title, series, x_label="max_in_flight", y_label="wall seconds"))
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    colors = {n: f"C{i}" for i, n in enumerate(plan.sizes)}
    for (n, latency), (name, points) in zip(_series_keys(plan), series.items(), strict=True):
        xs = [x for x, y in points if y is not None]
        ys = [y for _, y in points if y is not None]
        style = "-" if latency else "--"
        ax.plot(xs, ys, marker="o" if latency else "s", linestyle=style, color=colors[n], label=name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(IN_FLIGHT), [str(k) for k in IN_FLIGHT])
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda y, _: f"{y:g}"))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel("max_in_flight")
    ax.set_ylabel("wall seconds (log)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(section, fig, out_dir, PLOT, title)


def _targets(
    section: Section,
    plan: Plan,
    walls: dict[Any, float],
    paced: Run,
    pace: dict[str, float],
    throttled: Run,
    throttle_n: int,
    quick: bool,
) -> None:
    n = max(plan.sizes)
    seq, default = walls[n, True, 1], walls[n, True, DEFAULT_IN_FLIGHT]
    speedup = seq / default if default > 0 else math.nan
    section.targets.append(
        Target(
            f"At {n:,} destinations with the latency on, the default max_in_flight ({DEFAULT_IN_FLIGHT}) "
            f"is at least {TARGET_OVERLAP:.0f}x faster than sequential"
            + (f" (quick: N={n:,} in bulks of {plan.batch}, not 100,000)" if quick else ""),
            f"{speedup:.2f}x ({fmt_s(seq)} -> {fmt_s(default)})",
            speedup >= TARGET_OVERLAP,
        )
    )
    rate = pace["rate"]
    off = abs(rate / plan.pace_rate - 1)
    seconds = plan.pace_n / plan.pace_rate
    section.targets.append(
        Target(
            f"Within {TARGET_PACE:.0%} of max_messages_per_second over a {seconds:.0f}-second send"
            + (" (quick: not 30 seconds)" if quick else ""),
            f"{rate:,.1f} /s for {plan.pace_rate:,.0f} /s ({off:.2%} off) over {pace['span']:.1f} s",
            off <= TARGET_PACE,
        )
    )
    status_429 = sum(1 for s in throttled.sends if int(s["status"]) == 429)
    section.targets.append(
        Target(
            "Every destination accepted once under 429s",
            f"{throttled.destinations:,} of {throttle_n:,} received, {throttled.duplicates} duplicate ids, "
            f"{status_429} 429s in {throttled.requests:,} requests"
            + (" (the send failed)" if throttled.error else ""),
            _once(throttled, throttle_n) if status_429 else None,  # no 429: nothing was checked
        )
    )
