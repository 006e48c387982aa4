"""Section 1: sending N destinations with the operator, versus per-recipient posting and the lower bound."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bench.common import SandboxProcess, median, requests_to, run_worker
from bench.report import Section, Table, Target, ascii_chart, fmt_bytes, fmt_ratio, fmt_s

TARGET_SPEEDUP = 10.0
TARGET_LOWER_BOUND = 1.3
PER_RECIPIENT_CAP_S = 90.0

TASK_OF = {"lower": "send_lower_bound", "operator": "send_operator", "per_recipient": "send_per_recipient"}
WAYS = {
    "lower": "lower bound: bare requests.Session, prebuilt batched bodies",
    "operator": "OmniSendAdvancedMessageOperator.execute()",
    "per_recipient": "per recipient: one requests POST each (Session, keep-alive)",
}


@dataclass
class Measure:
    """One way of sending at one N (medians over the repetitions)."""

    way: str
    n: int
    wall: float
    cpu: float
    rss_peak_delta: float
    requests: int
    destinations: int
    extrapolated: bool = False
    note: str = ""
    build_cpu: float | None = None


def _one(sb: SandboxProcess, way: str, n: int, rep: int, scenario_cap: float | None) -> dict[str, Any]:
    sb.reset()
    key = sb.create_scenario()
    args: dict[str, Any] = {
        "url": sb.url,
        "api_key": sb.api_key,
        "scenario_key": key,
        "n": n,
        "run_id": f"bench_{way}_{n}_{rep}",
    }
    if way == "per_recipient":
        args["cap_s"] = scenario_cap
    result = run_worker(TASK_OF[way], args, env=sb.connection_env(), timeout=1800)
    stats = sb.stats()
    result["requests"] = requests_to(stats, "advanced")
    result["destinations"] = int(stats.get("destinations") or 0)
    return dict(result)


def measure(sb: SandboxProcess, way: str, n: int, reps: int, cap: float | None = None) -> Measure:
    """Measure one way at one N ``reps`` times against the sandbox; return the medians."""
    return summarize(way, n, [_one(sb, way, n, rep, cap) for rep in range(reps)])


def measure_paired(sb: SandboxProcess, n: int, reps: int) -> tuple[Measure, Measure, float]:
    """Measure the lower bound and the operator alternately (L, O, L, O ...) at one N.

    Drift on a shared machine (the sandbox's speed, other load) then hits both alike; the ratio
    reported is the median of the ratios of each pair.
    """
    lower, operator = [], []
    for rep in range(reps):
        lower.append(_one(sb, "lower", n, rep, None))
        operator.append(_one(sb, "operator", n, rep, None))
    ratio = median([o["wall"] / lo["wall"] for lo, o in zip(lower, operator, strict=True) if lo["wall"]])
    return summarize("lower", n, lower), summarize("operator", n, operator), ratio


def summarize(way: str, n: int, runs: list[dict[str, Any]]) -> Measure:
    """Return the medians of ``runs`` of one way at one N (extrapolated when capped by time)."""
    sent = min(r["sent"] for r in runs)
    m = Measure(
        way=way,
        n=n,
        wall=median([r["wall"] for r in runs]),
        cpu=median([r["cpu"] for r in runs]),
        rss_peak_delta=median([r["rss_peak_delta"] for r in runs]),
        requests=int(median([r["requests"] for r in runs])),
        destinations=int(median([r["destinations"] for r in runs])),
        build_cpu=median([r["build_cpu"] for r in runs]) if "build_cpu" in runs[0] else None,
    )
    if sent < n:  # capped by time: extrapolate linearly from the rate measured
        scale = n / sent
        m = Measure(
            way,
            n,
            m.wall * scale,
            m.cpu * scale,
            m.rss_peak_delta,
            round(m.requests * scale),
            round(m.destinations * scale),
            True,
            f"capped after {sent:,} in {PER_RECIPIENT_CAP_S:.0f} s",
        )
    return m


def extrapolate(base: Measure, n: int) -> Measure:
    """Scale a per-recipient measure linearly to ``n`` (one request per recipient)."""
    k = n / base.n
    return Measure(
        base.way,
        n,
        base.wall * k,
        base.cpu * k,
        base.rss_peak_delta,
        round(base.requests * k),
        round(base.destinations * k),
        True,
        f"linear from N={base.n:,}",
    )


def run(quick: bool) -> Section:
    """Run section 1; ``quick`` uses N=50, one repetition."""
    sizes = [50] if quick else [1_000, 10_000, 100_000]
    per_recipient_sizes = [50] if quick else [1_000, 10_000]
    reps = {n: 1 if quick else 5 for n in sizes}
    section = Section(
        "send",
        "1. Sending N destinations",
        method=[
            "Server: the OMNI sandbox in its own process (`python -m airflow_provider_omni.sandbox`), so "
            "its CPU is not counted in the client's; it is reset before every measurement, and its admin "
            "stats give the HTTP requests and destinations it received.",
            "Client: each measurement runs in a fresh interpreter. The operator runs through "
            "`execute()` with a minimal context (ti with dag_id, task_id, run_id, map_index, try_number=1; "
            "no task state store), not `dag.test()`, which would add seconds of DB and scheduler work "
            "unrelated to sending. The time covers the connection lookup, validation, building the bulks and "
            "posting them; the provider's modules are imported before the clock, as the lower bound imports "
            "`requests` before its clock.",
            "Baselines, same destinations, same content: (a) one POST per recipient with a "
            "`requests.Session` (keep-alive, kinder than bare `requests.post`)"
            + ("" if quick else "; measured at 1,000 and 10,000, extrapolated linearly for 100,000 (marked)")
            + "; (b) the lower bound: the batched bodies the operator would send (1000 destinations each, "
            "bulkId, messageIds), serialized before the clock starts, posted by a bare `requests.Session`.",
            "Memory: growth of the peak RSS of the client process during the send (the kernel's peak mark "
            "VmHWM, reset through `/proc/self/clear_refs` when the clock starts, minus the RSS then; the "
            "destination list is built before), no tracemalloc (it would slow the timed code). "
            "Wall and CPU: medians of "
            + ("1 run" if quick else "5 runs")
            + "; CPU is user+sys of the client process. The lower bound and the operator run "
            "alternately, and the operator's 'wall vs lower bound' is the median of the ratios of "
            "those pairs, so drift on the shared machine hits both alike.",
        ],
    )
    results: dict[tuple[str, int], Measure] = {}
    paired: dict[int, float] = {}
    with SandboxProcess(time_scale=60.0) as sb:
        for n in sizes:
            results["lower", n], results["operator", n], paired[n] = measure_paired(sb, n, reps[n])
        for n in per_recipient_sizes:
            results["per_recipient", n] = measure(sb, "per_recipient", n, 1, PER_RECIPIENT_CAP_S)
    for n in sizes:
        if ("per_recipient", n) not in results:
            base = results["per_recipient", max(per_recipient_sizes)]
            results["per_recipient", n] = extrapolate(base, n)

    table = Table(
        "Sending N destinations (baselines: the lower bound and "
        "per-recipient posting, same run, same sandbox)",
        [
            "N",
            "Way",
            "HTTP requests",
            "Destinations received",
            "Wall",
            "Client CPU",
            "Peak RSS growth",
            "Wall vs lower bound",
            "Per-recipient wall / this",
        ],
    )
    for n in sizes:
        lower, per = results["lower", n], results["per_recipient", n]
        for way in ("lower", "operator", "per_recipient"):
            m = results[way, n]
            mark = f" ({m.note})" if m.extrapolated else ""
            table.add(
                f"{n:,}",
                WAYS[way] + (" **extrapolated**" if m.extrapolated else ""),
                f"{m.requests:,}",
                f"{m.destinations:,}",
                fmt_s(m.wall) + mark,
                fmt_s(m.cpu),
                "-" if m.extrapolated else fmt_bytes(m.rss_peak_delta),
                fmt_ratio(paired[n] if way == "operator" else m.wall / lower.wall) if lower.wall else "n/a",
                fmt_ratio(per.wall / m.wall) if m.wall else "n/a",
            )
    section.tables.append(table)
    split = Table(
        "Where the operator's client CPU goes (the lower bound's client CPU is the baseline)",
        [
            "N",
            "Operator client CPU",
            "of which validating + building the bulks (no I/O)",
            "Lower bound client CPU",
            "Operator CPU / lower bound CPU",
        ],
    )
    for n in sizes:
        op, lower = results["operator", n], results["lower", n]
        split.add(
            f"{n:,}",
            fmt_s(op.cpu),
            fmt_s(op.build_cpu),
            fmt_s(lower.cpu),
            fmt_ratio(op.cpu / lower.cpu) if lower.cpu else "n/a",
        )
    section.tables.append(split)
    section.notes.append(
        "The build share is measured by calling `build_bulks()` once more after `execute()` (same N, same "
        "process; it includes validating and serializing every bulk); the rest of the operator's CPU is "
        "the connection lookup, posting and reading Infobip's answers (only refused entries become "
        "objects). On 2 shared cores the client's CPU also slows the "
        "sandbox, so CPU above the lower bound shows in wall time about one for one."
    )
    section.charts.append(
        ascii_chart(
            "Wall time vs N for the three ways of sending (per-recipient at 100,000: extrapolated)",
            {
                WAYS[w].split(":")[0]: [(n, results[w, n].wall) for n in sizes]
                for w in ("lower", "operator", "per_recipient")
            },
            x_label="N",
            y_label="wall seconds",
        )
    )
    _targets(section, results, paired, sizes, quick)
    return section


def _targets(
    section: Section,
    results: dict[tuple[str, int], Measure],
    paired: dict[int, float],
    sizes: list[int],
    quick: bool,
) -> None:
    check_n = 10_000 if 10_000 in sizes else sizes[-1]
    op = results["operator", check_n]
    expected = math.ceil(check_n / 1000)
    section.targets.append(
        Target(
            f"{expected} request(s) for {check_n:,} destinations",
            f"{op.requests} requests, {op.destinations:,} destinations received",
            op.requests == expected and op.destinations == check_n,
        )
    )
    speedups = {n: results["per_recipient", n].wall / results["operator", n].wall for n in sizes}
    measured = {n: s for n, s in speedups.items() if not results["per_recipient", n].extrapolated}
    section.targets.append(
        Target(
            "At least 10x faster than per-recipient posting",
            ", ".join(
                f"{s:,.1f}x at {n:,}" + ("" if n in measured else " (extrapolated)")
                for n, s in speedups.items()
            ),
            all(s >= TARGET_SPEEDUP for s in measured.values()),
        )
    )
    ratios = paired
    judged = {n: r for n, r in ratios.items() if quick or n >= 10_000}
    section.targets.append(
        Target(
            "Within 1.3x of the lower bound (wall; median of paired runs)"
            + ("" if quick else ", at N >= 10,000"),
            ", ".join(f"{r:.2f}x at {n:,}" for n, r in ratios.items()),
            all(r <= TARGET_LOWER_BOUND for r in judged.values()),
        )
    )
    if quick:
        section.notes.append("Quick run: N=50 is one bulk; the ratios say little at that size.")
