"""Section 6: a million destinations from a file: memory, CPU, and exactly once under faults."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench.common import BenchError, SandboxProcess, has_module, median, requests_to, run_worker, workdir
from bench.large import LATENCY, NO_LATENCY
from bench.report import Section, Table, Target, ascii_chart, fmt_bytes, fmt_ratio, fmt_s, save_figure
from bench.worker_tasks import write_numbers_csv

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

MIB = 1024 * 1024
TARGET_CPU = 2.0
PLOT = "bench/million.png"
#: Faults on bulk POSTs, as in tests/test_send_exactly_once_property.py: refused before processing,
#: and three answers that fail after the sandbox took the bulk (a 500, a dropped connection, an empty 200).
FAULTS: dict[str, dict[str, Any]] = {
    "503, not processed": {"status": 503},
    "500 after processing": {"status": 500, "process": True},
    "dropped after processing": {"drop": True, "process": True},
    "empty 200 after processing": {"answer": "empty", "process": True},
}
#: Each fault fires with the probability FAULT_SPREAD * times / bulks on a bulk POST, until it has fired
#: ``times`` times: its firings fall at random (seeded) places over the send and its retries.
FAULT_SPREAD = 1.5
UNCERTAIN_HORIZON = 2.0
CONFIRM_DELAYS = (0.2, 0.5)
WAYS = {
    "lower": "lower bound: bare requests.Session, prebuilt batched bodies",
    "operator": "OmniSendAdvancedMessageOperator.execute(), destinations_path= (CSV)",
    "per_recipient": "per recipient: one requests POST each (Session, keep-alive)",
    "floor": "floor, no I/O: the least work besides posting (read the CSV, ids, bodies, answers)",
}
TASK_OF = {
    "lower": "send_lower_bound",
    "operator": "send_from_file",
    "per_recipient": "send_per_recipient",
    "floor": "send_floor",
}


@dataclass
class Plan:
    """The sizes of one run (full or quick)."""

    sizes: tuple[int, ...]
    #: paired repetitions (lower bound, operator, lower bound, ...) per N, latency off and on
    reps_off: dict[int, int]
    reps_on: dict[int, int]
    #: peak RSS growth limits: ``{N: bytes}``
    memory_limits: dict[int, int]
    cpu_sizes: tuple[int, ...]
    per_recipient_n: int
    per_recipient_cap: float
    fault_n: int
    fault_times: int
    fault_limit: int
    max_tries: int = 6


FULL = Plan(
    sizes=(10_000, 100_000, 1_000_000),
    reps_off={10_000: 3, 100_000: 2, 1_000_000: 1},
    reps_on={10_000: 3, 100_000: 1, 1_000_000: 1},
    memory_limits={100_000: 8 * MIB, 1_000_000: 16 * MIB},
    cpu_sizes=(10_000, 100_000),
    per_recipient_n=1_000,
    per_recipient_cap=10.0,
    fault_n=1_000_000,
    fault_times=2,
    fault_limit=16 * MIB,
)
QUICK = Plan(
    sizes=(2_000, 20_000),
    reps_off={2_000: 1, 20_000: 1},
    reps_on={2_000: 1, 20_000: 1},
    memory_limits={2_000: 8 * MIB, 20_000: 16 * MIB},
    cpu_sizes=(2_000, 20_000),
    per_recipient_n=200,
    per_recipient_cap=2.0,
    fault_n=20_000,
    fault_times=1,
    fault_limit=16 * MIB,
)
#: What the quick sizes stand for in the targets' names.
FULL_SIZE_OF = {2_000: 100_000, 20_000: 1_000_000}


@dataclass
class Run:
    """One send measured: the client's figures and what the sandbox saw."""

    wall: float
    cpu: float
    rss_peak_delta: float
    requests: int
    destinations: int
    duplicates: int
    sent: int
    error: str | None = None


@dataclass
class Row:
    """One way at one N and latency: medians of its runs, or a linear extrapolation."""

    way: str
    n: int
    latency: bool
    runs: list[Run]
    wall: float
    cpu: float
    rss_peak_delta: float | None
    requests: int
    destinations: int
    wall_ratio: float
    cpu_ratio: float
    note: str = ""


@dataclass
class Try:
    """One try of the faults run (a fresh worker process)."""

    number: int
    result: dict[str, Any]
    requests: int
    faults_fired: int
    destinations: int


@dataclass
class FaultRun:
    """The faults run: its tries and what the sandbox holds at the end."""

    n: int
    rate: float
    tries: list[Try] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    fired: dict[str, int] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        """Whether the last try returned without an error."""
        return bool(self.tries) and not self.tries[-1].result.get("error_type")

    @property
    def duplicates(self) -> int:
        """Message ids the sandbox received more than once."""
        return len(self.stats.get("duplicate_message_ids") or {})

    @property
    def once(self) -> bool:
        """Whether every destination was taken exactly once (and the send ended well)."""
        destinations = int(self.stats.get("destinations") or 0)
        distinct = int(self.stats.get("distinct_message_ids") or 0)
        last = self.tries[-1].result if self.tries else {}
        counted = (last.get("accepted") or 0) + (last.get("rejected") or 0)
        return self.succeeded and self.duplicates == 0 and destinations == distinct == self.n == counted


# -- measuring --------------------------------------------------------------------------------------


def csv_path(n: int) -> str:
    """Return the CSV of ``n`` numbers in this run's folder (written once, before any clock)."""
    path = workdir() / f"million-{n}.csv"
    if not path.exists():
        write_numbers_csv(str(path), n)
    return str(path)


def measure(sb: SandboxProcess, way: str, n: int, run_id: str, cap: float | None = None) -> Run:
    """Reset the sandbox and send ``n`` destinations one way in a fresh worker; return the figures.

    A worker that fails (or an operator that raised) is reported in :attr:`Run.error`, not raised.
    """
    sb.reset()
    args: dict[str, Any] = {
        "url": sb.url,
        "api_key": sb.api_key,
        "scenario_key": sb.create_scenario(),
        "n": n,
        "run_id": run_id,
    }
    if way in ("operator", "floor"):
        args["path"] = csv_path(n)
    if cap is not None:
        args["cap_s"] = cap
    error = None
    try:
        result = run_worker(TASK_OF[way], args, env=sb.connection_env(), timeout=1800)
    except BenchError as exc:
        result, error = {"wall": math.nan, "cpu": math.nan, "rss_peak_delta": math.nan}, str(exc)
    if result.get("error_type"):
        error = f"{result['error_type']}: {result.get('error')}"
    stats = sb.stats()
    return Run(
        wall=float(result["wall"]),
        cpu=float(result["cpu"]),
        rss_peak_delta=float(result["rss_peak_delta"]),
        requests=requests_to(stats, "advanced"),
        destinations=int(stats.get("destinations") or 0),
        duplicates=len(stats.get("duplicate_message_ids") or {}),
        sent=int(result.get("sent") or n),
        error=error,
    )


def measure_pairs(
    sb: SandboxProcess, n: int, latency: bool, reps: int, *, floor: bool = False
) -> tuple[list[Run], list[Run], list[Run]]:
    """Measure the lower bound and the operator alternately (L, O, L, O ...) at one N and latency;
    with ``floor``, the floor after each lower bound too (L, F, O, ...)."""
    sb.configure(**(LATENCY if latency else NO_LATENCY))
    lower, operator, floors = [], [], []
    for rep in range(reps):
        tag = f"million_{n}_{'on' if latency else 'off'}_{rep}"
        lower.append(measure(sb, "lower", n, tag + "_lower"))
        if floor:
            floors.append(measure(sb, "floor", n, tag + "_floor"))
        operator.append(measure(sb, "operator", n, tag))
    return lower, operator, floors


def paired_ratio(lower: Sequence[Run], other: Sequence[Run], attr: str) -> float:
    """Return the median over the pairs of ``other.attr / lower.attr`` (NaN when none is usable)."""
    ratios = [
        getattr(o, attr) / getattr(lo, attr)
        for lo, o in zip(lower, other, strict=True)
        if getattr(lo, attr) and not math.isnan(getattr(o, attr))
    ]
    return median(ratios) if ratios else math.nan


def row_of(way: str, n: int, latency: bool, runs: list[Run], lower: list[Run]) -> Row:
    """Return the medians of ``runs`` (ratios: the medians of the pairs with ``lower``)."""
    return Row(
        way=way,
        n=n,
        latency=latency,
        runs=runs,
        wall=median([r.wall for r in runs]),
        cpu=median([r.cpu for r in runs]),
        rss_peak_delta=median([r.rss_peak_delta for r in runs]),
        requests=int(median([r.requests for r in runs])),
        destinations=int(median([r.destinations for r in runs])),
        wall_ratio=paired_ratio(lower, runs, "wall"),
        cpu_ratio=paired_ratio(lower, runs, "cpu"),
    )


def extrapolated(base: Run, n: int, latency: bool, lower: Row) -> Row:
    """Scale a per-recipient run (``base.sent`` recipients) linearly to ``n``: one request each."""
    k = n / base.sent
    wall, cpu = base.wall * k, base.cpu * k
    return Row(
        way="per_recipient",
        n=n,
        latency=latency,
        runs=[base],
        wall=wall,
        cpu=cpu,
        rss_peak_delta=None,
        requests=n,
        destinations=n,
        wall_ratio=wall / lower.wall if lower.wall else math.nan,
        cpu_ratio=cpu / lower.cpu if lower.cpu else math.nan,
        note=f"linear from {base.sent:,} measured in {fmt_s(base.wall)}",
    )


def fault_run(sb: SandboxProcess, plan: Plan) -> FaultRun:
    """Send ``plan.fault_n`` destinations from the CSV with faults on bulk POSTs, try after try.

    Each try is a fresh worker process with the same run id (the same send key) and the same
    file-backed task state store; a try that raised is followed by the next one, up to ``max_tries``.
    """
    n = plan.fault_n
    bulks = math.ceil(n / 1000)
    run = FaultRun(n=n, rate=min(1.0, FAULT_SPREAD * plan.fault_times / bulks))
    sb.reset()
    sb.configure(**LATENCY)
    key = sb.create_scenario()
    ids = install_faults(sb, plan.fault_times, run.rate)
    store = workdir() / "million-store.jsonl"
    store.unlink(missing_ok=True)
    args: dict[str, Any] = {
        "url": sb.url,
        "api_key": sb.api_key,
        "scenario_key": key,
        "n": n,
        "path": csv_path(n),
        "run_id": "million_faults",
        "store_path": str(store),
        "uncertain_horizon": UNCERTAIN_HORIZON,
        "confirm_delays": list(CONFIRM_DELAYS),
    }
    for number in range(1, plan.max_tries + 1):
        before = sb.stats()
        try:
            result = run_worker("send_from_file", {**args, "try_number": number}, env=sb.connection_env())
        except BenchError as exc:  # the worker itself died: the next try sees what it recorded
            result = {"wall": math.nan, "cpu": math.nan, "rss_peak_delta": math.nan}
            result.update(error_type="worker failed", error=str(exc)[-2000:])
        after = sb.stats()
        run.tries.append(_try_of(number, result, before, after))
        if not result.get("error_type"):
            break
    run.stats = sb.stats()
    run.fired = _fired(sb, ids, plan.fault_times)
    sb.admin("DELETE", "faults")
    return run


def install_faults(sb: SandboxProcess, times: int, rate: float) -> dict[str, int]:
    """Install :data:`FAULTS` on ``advanced``, each ``times`` times at ``rate``; return their ids."""
    ids = {}
    for name, spec in FAULTS.items():
        fault = {"endpoint": "advanced", "times": times, "rate": rate, **spec}
        ids[name] = int(sb.admin("POST", "faults", fault)["id"])
    return ids


def _try_of(number: int, result: dict[str, Any], before: dict[str, Any], after: dict[str, Any]) -> Try:
    fired = sum((after.get("faults_fired") or {}).values()) - sum((before.get("faults_fired") or {}).values())
    return Try(
        number=number,
        result=result,
        requests=requests_to(after, "advanced") - requests_to(before, "advanced"),
        faults_fired=fired,
        destinations=int(after.get("destinations") or 0) - int(before.get("destinations") or 0),
    )


def _fired(sb: SandboxProcess, ids: dict[str, int], times: int) -> dict[str, int]:
    """Return how often each fault fired (a fault that fired ``times`` times is gone from the list)."""
    left = {int(f["id"]): int(f["fired"]) for f in sb.admin("GET", "faults")["faults"]}
    return {name: left.get(fault_id, times) for name, fault_id in ids.items()}


def sandbox_memory(sb: SandboxProcess) -> dict[str, int]:
    """Return the sandbox process's current and peak RSS (``VmRSS``, ``VmHWM``) in bytes."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{sb.pid}/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return out


# -- the section ------------------------------------------------------------------------------------


def run(quick: bool, out_dir: Path | None = None) -> Section:
    """Run section 6; ``quick`` uses tiny sizes; the plot (if matplotlib) goes to ``out_dir/bench/``."""
    plan = QUICK if quick else FULL
    section = Section("million", "6. A million from a file: memory, CPU, faults", method=_method(plan, quick))
    rows: dict[tuple[str, int, bool], Row] = {}
    with SandboxProcess(time_scale=60.0) as sb:
        # hold every message of the largest send: past max_logs the sandbox forgets the oldest ones,
        # and their ids with them (duplicates would go unseen), and slows down doing so
        sb.configure(max_logs=max(*plan.sizes, plan.fault_n) * 2)
        per_recipient = {latency: _per_recipient(sb, plan, latency) for latency in (False, True)}
        for n in plan.sizes:
            for latency, reps in ((False, plan.reps_off[n]), (True, plan.reps_on[n])):
                floor = not latency and n in plan.cpu_sizes
                lower, operator, floors = measure_pairs(sb, n, latency, reps, floor=floor)
                rows["lower", n, latency] = row_of("lower", n, latency, lower, lower)
                if floor:
                    rows["floor", n, latency] = row_of("floor", n, latency, floors, lower)
                rows["operator", n, latency] = row_of("operator", n, latency, operator, lower)
                rows["per_recipient", n, latency] = extrapolated(
                    per_recipient[latency], n, latency, rows["lower", n, latency]
                )
        faults = fault_run(sb, plan)
        memory = sandbox_memory(sb)
    _send_table(section, plan, rows)
    _faults_table(section, faults)
    _plot(section, plan, rows, out_dir)
    _notes(section, plan, rows, faults, memory)
    _targets(section, plan, rows, faults, quick)
    return section


def _per_recipient(sb: SandboxProcess, plan: Plan, latency: bool) -> Run:
    sb.configure(**(LATENCY if latency else NO_LATENCY))
    tag = f"million_per_recipient_{'on' if latency else 'off'}"
    return measure(sb, "per_recipient", plan.per_recipient_n, tag, plan.per_recipient_cap)


def _method(plan: Plan, quick: bool) -> list[str]:
    reps = "; ".join(
        f"{n:,}: {plan.reps_off[n]} pair(s) latency off, {plan.reps_on[n]} latency on" for n in plan.sizes
    )
    return [
        "Server: the OMNI sandbox in its own process, reset before every measurement, `max_logs` raised "
        f"to {max(*plan.sizes, plan.fault_n) * 2:,} so that it holds every message of the largest send "
        "(by default it keeps 100,000 and forgets older ones, their ids too). Latency on: "
        f"`request_latency={LATENCY['request_latency']:g}` s + `latency_per_destination="
        f"{LATENCY['latency_per_destination']:.5f}` s per destination (a bulk of 1000 waits 0.2 s), as in "
        "section 5; latency off: none. Its admin stats give the requests, the destinations and the "
        "message ids received more than once.",
        "Client: `OmniSendAdvancedMessageOperator.execute()` with `destinations_path=` a CSV (header "
        "`phoneNumber`) of N distinct numbers, at every N (not only 1,000,000), written before the clock; "
        "a fresh interpreter per measurement, minimal context, the provider imported before the clock, "
        "default `batch_size` (1000) and `max_in_flight` (4), no task state store. Wall, CPU (user+sys) "
        "and peak RSS growth of the client process (VmHWM reset through `/proc/self/clear_refs` when the "
        "clock starts, minus the RSS then).",
        "Baselines, same run, same sandbox, same numbers and content: the lower bound (the batched bodies "
        "the operator would send, serialized before the clock and posted one after the other by a bare "
        "`requests.Session`: sequential, so with the latency on it waits every round trip) and "
        "per-recipient posting (one POST per number, `requests.Session`), measured once per latency on "
        f"{plan.per_recipient_n:,} numbers (stopped after {plan.per_recipient_cap:g} s) and extrapolated "
        "linearly to N (marked).",
        f"Repetitions, lower bound and operator alternately (L, O, L, O ...): {reps}. Figures are "
        "medians; 'vs lower bound' is the median of the ratios of each pair, so drift hits both alike.",
        "The floor (latency off, at "
        + " and ".join(f"{n:,}" for n in plan.cpu_sizes)
        + ", after each lower bound: L, F, O ...): the CPU a from-file send that keeps exactly once "
        "spends besides posting, measured in a fresh interpreter with no I/O but reading the file: "
        "`csv.reader` over the CSV, one sha256 message id per number, duplicates dropped by an in-memory "
        "set (cheaper than any way in constant memory), `json.dumps` of each bulk of 1000 and "
        "`json.loads` of an answer per bulk as the sandbox writes it (made before the clock). No client "
        "can spend less than the lower bound plus the floor; the lower bound alone has none of that work, "
        "its bodies are serialized before its clock and its answers are not read.",
        f"Faults: {plan.fault_n:,} destinations from the CSV, latency on, a file-backed task state store "
        "(JSON lines; it outlives the worker process). On `POST /omni/1/advanced` the sandbox injects "
        f"{', '.join(FAULTS)}, each {plan.fault_times} time(s), with a seeded probability per POST so that "
        "they fall over the whole send. Try 1 runs in a fresh worker; while a try raises, the next one "
        f"(try_number + 1) runs in a new worker with the same run id and store, up to {plan.max_tries} "
        f"tries; `uncertain_horizon={UNCERTAIN_HORIZON:g}` s and `confirm_delays={CONFIRM_DELAYS}` keep "
        "the waits short. Exactly once: at the end the sandbox has received N destinations, N distinct "
        "message ids and none twice, and the last try succeeded and counts N."
        + (" Quick run: tiny N; the ratios and memory say little at that size." if quick else ""),
    ]


def _send_table(section: Section, plan: Plan, rows: dict[tuple[str, int, bool], Row]) -> None:
    table = Table(
        "Sending N destinations from a file (baselines: the lower bound and per-recipient posting, "
        "same run, same sandbox)",
        [
            "N",
            "Latency",
            "Way",
            "HTTP requests",
            "Destinations received",
            "Wall",
            "Client CPU",
            "Peak RSS growth",
            "Wall vs lower bound",
            "CPU vs lower bound",
        ],
    )
    for n in plan.sizes:
        for latency in (False, True):
            for way in ("lower", "floor", "operator", "per_recipient"):
                if (way, n, latency) in rows:
                    table.add(*_cells(rows[way, n, latency]))
    section.tables.append(table)


def _cells(row: Row) -> list[str]:
    runs = len(row.runs)
    failed = [r.error for r in row.runs if r.error]
    extra = f" ({row.note})" if row.note else (f" (median of {runs})" if runs > 1 else "")
    return [
        f"{row.n:,}",
        "on" if row.latency else "off",
        WAYS[row.way] + (" **extrapolated**" if row.note else ""),
        f"{row.requests:,}",
        f"{row.destinations:,}",
        (f"failed ({len(failed)} of {runs}) " if failed else "") + fmt_s(row.wall) + extra,
        fmt_s(row.cpu),
        "-" if row.rss_peak_delta is None else fmt_bytes(row.rss_peak_delta),
        _ratio(row.wall_ratio),
        _ratio(row.cpu_ratio),
    ]


def _ratio(x: float) -> str:
    return "n/a" if math.isnan(x) else fmt_ratio(x)


def _faults_table(section: Section, faults: FaultRun) -> None:
    table = Table(
        f"Faults: {faults.n:,} destinations from a file, try after try (fresh worker each, same store)",
        [
            "Try",
            "Wall",
            "Client CPU",
            "Peak RSS growth",
            "HTTP requests",
            "Faults fired",
            "Destinations taken",
            "Outcome",
        ],
    )
    for t in faults.tries:
        error = t.result.get("error_type")
        outcome = (
            f"{error}: {_short(t.result.get('error'))}"
            if error
            else (
                f"done: {t.result.get('accepted') or 0:,} accepted, {t.result.get('rejected') or 0:,} refused"
            )
        )
        table.add(
            t.number,
            fmt_s(t.result.get("wall")),
            fmt_s(t.result.get("cpu")),
            fmt_bytes(t.result.get("rss_peak_delta")),
            f"{t.requests:,}",
            t.faults_fired,
            f"{t.destinations:,}",
            outcome,
        )
    section.tables.append(table)
    stats = faults.stats
    summary = Table(
        "Faults: what the sandbox holds at the end",
        [
            "N",
            "Destinations received",
            "Distinct message ids",
            "Duplicate message ids",
            "Faults fired",
            "Exactly once",
        ],
    )
    summary.add(
        f"{faults.n:,}",
        f"{int(stats.get('destinations') or 0):,}",
        f"{int(stats.get('distinct_message_ids') or 0):,}",
        faults.duplicates,
        ", ".join(f"{name} x{count}" for name, count in faults.fired.items()),
        "PASS" if faults.once else "FAIL",
    )
    section.tables.append(summary)


def _short(text: Any, limit: int = 160) -> str:
    line = " ".join(str(text or "").split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


# -- plot, notes and targets ------------------------------------------------------------------------

SERIES = (("operator", False), ("operator", True), ("lower", False), ("lower", True))


def _series(
    plan: Plan, rows: dict[tuple[str, int, bool], Row], attr: str
) -> dict[str, Sequence[tuple[float, float | None]]]:
    """Return ``{"operator, latency off": [(N, value), ...], ...}`` of ``attr`` (wall or peak RSS)."""
    return {
        f"{way.replace('lower', 'lower bound')}, latency {'on' if latency else 'off'}": [
            (n, getattr(rows[way, n, latency], attr)) for n in plan.sizes
        ]
        for way, latency in SERIES
    }


def _plot(section: Section, plan: Plan, rows: dict[tuple[str, int, bool], Row], out_dir: Path | None) -> None:
    """Plot wall and peak RSS growth vs N (a PNG with matplotlib, else ASCII charts)."""
    walls, memory = _series(plan, rows, "wall"), _series(plan, rows, "rss_peak_delta")
    title = "Wall and peak RSS growth vs N, operator (from a file) vs lower bound"
    if out_dir is None or not has_module("matplotlib"):
        section.charts.append(ascii_chart("Wall vs N", walls, x_label="N", y_label="wall seconds"))
        section.charts.append(ascii_chart("Peak RSS growth vs N", memory, x_label="N", y_label="bytes"))
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=110)
    for (way, latency), (name, points) in zip(SERIES, walls.items(), strict=True):
        style = {
            "color": "C0" if way == "operator" else "C1",
            "linestyle": "-" if latency else "--",
            "marker": "o" if way == "operator" else "s",
            "label": name,
        }
        left.plot([x for x, _ in points], [y for _, y in points], **style)
        mem = [(x, max((y or 0) / MIB, 0.01)) for x, y in memory[name]]
        right.plot([x for x, _ in mem], [y for _, y in mem], **style)
    right.plot(
        list(plan.memory_limits),
        [v / MIB for v in plan.memory_limits.values()],
        color="C3",
        marker="_",
        markersize=22,
        linestyle="",
        label="target",
    )
    for ax, ylabel in ((left, "wall seconds (log)"), (right, "peak RSS growth, MiB (log)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(list(plan.sizes), [f"{n:,}" for n in plan.sizes])
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda y, _: f"{y:g}"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlabel("N destinations (log)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, handlelength=3)
    fig.suptitle(title)
    save_figure(section, fig, out_dir, PLOT, title)


def _notes(
    section: Section,
    plan: Plan,
    rows: dict[tuple[str, int, bool], Row],
    faults: FaultRun,
    memory: dict[str, int],
) -> None:
    top = max(plan.sizes)
    lower = rows["lower", top, False]
    section.notes.append(
        f"The sandbox at N={top:,}: {lower.wall / max(lower.requests, 1) * 1000:.0f} ms of server time per "
        f"bulk of 1000 (the lower bound, latency off), peak RSS {fmt_bytes(memory.get('VmHWM'))} "
        f"(now {fmt_bytes(memory.get('VmRSS'))}) on {len(os.sched_getaffinity(0))} shared cores: the "
        "server's CPU bounds every way's wall time with the latency off."
    )
    for n in plan.cpu_sizes:
        floor, lower_n, operator = (rows[way, n, False] for way in ("floor", "lower", "operator"))
        least = lower_n.cpu + floor.cpu
        section.notes.append(
            f"Client CPU at N={n:,}, latency off: the lower bound {fmt_s(lower_n.cpu)}, the floor "
            f"{fmt_s(floor.cpu)}, so no client goes under {fmt_s(least)} "
            f"({_ratio(least / lower_n.cpu if lower_n.cpu else math.nan)} the lower bound's); the operator "
            f"{fmt_s(operator.cpu)}, {_ratio(operator.cpu / least if least else math.nan)} that least. "
            "Beyond the floor it validates every row, sorts them on disk in constant memory (the floor's "
            "set grows with N), keeps a ledger for the retries and checks every answer against its bulk."
        )
    failed = [
        (row.n, row.latency, r.error)
        for (way, _, _), row in rows.items()
        if way == "operator"
        for r in row.runs
        if r.error
    ]
    for n, latency, error in failed:
        section.notes.append(
            f"The operator failed at N={n:,}, latency {'on' if latency else 'off'}: {_short(error, 400)}"
        )
    section.notes.append(
        f"Faults run: each fault fired with probability {faults.rate:.4f} per bulk POST until it had fired "
        f"{plan.fault_times} time(s); fired: "
        + ", ".join(f"{name} x{count}" for name, count in faults.fired.items())
        + f"; {len(faults.tries)} tr{'y' if len(faults.tries) == 1 else 'ies'}, "
        + ("the last one succeeded." if faults.succeeded else "none succeeded.")
    )


def _quick_note(n: int, quick: bool) -> str:
    return f" (quick: N={n:,}, not {FULL_SIZE_OF.get(n, n):,})" if quick else ""


def _targets(
    section: Section, plan: Plan, rows: dict[tuple[str, int, bool], Row], faults: FaultRun, quick: bool
) -> None:
    for n, limit in plan.memory_limits.items():
        runs = [r for latency in (False, True) for r in rows["operator", n, latency].runs]
        peak = max((r.rss_peak_delta for r in runs if not math.isnan(r.rss_peak_delta)), default=math.nan)
        section.targets.append(
            Target(
                f"Peak RSS growth of the send at {n:,} destinations from a file <= {limit / MIB:.0f} MiB "
                "(the largest of its runs, latency on and off)" + _quick_note(n, quick),
                "n/a" if math.isnan(peak) else f"{fmt_bytes(peak)} ({peak:,.0f} B, limit {limit:,} B)",
                None if math.isnan(peak) else peak <= limit,
            )
        )
    ratios = {n: rows["operator", n, False].cpu_ratio for n in plan.cpu_sizes}
    section.targets.append(
        Target(
            f"Client CPU <= {TARGET_CPU:.0f}x the lower bound's, latency off (median of paired runs), at "
            + " and ".join(f"{n:,}" for n in plan.cpu_sizes)
            + (" (quick: tiny N)" if quick else ""),
            ", ".join(
                f"{_ratio(r)} at {n:,} ({fmt_s(rows['operator', n, False].cpu)} vs "
                f"{fmt_s(rows['lower', n, False].cpu)})"
                for n, r in ratios.items()
            )
            + "; the least any client can spend (lower bound + floor): "
            + ", ".join(f"{_ratio(1 + rows['floor', n, False].cpu_ratio)} at {n:,}" for n in plan.cpu_sizes),
            None
            if any(math.isnan(r) for r in ratios.values())
            else all(r <= TARGET_CPU for r in ratios.values()),
        )
    )
    sends = [(n, r) for (way, n, _), row in rows.items() if way == "operator" for r in row.runs]
    wrong = [(n, r) for n, r in sends if r.error or r.duplicates or r.destinations != n]
    section.targets.append(
        Target(
            "Every destination received exactly once (every operator send of the table: destinations = N, "
            "no message id twice)",
            f"{len(sends) - len(wrong)} of {len(sends)} sends"
            + "".join(
                f"; N={n:,}: {r.destinations:,} received, {r.duplicates} duplicate ids"
                + (", failed" if r.error else "")
                for n, r in wrong[:3]
            ),
            not wrong,
        )
    )
    peaks = [t.result.get("rss_peak_delta") for t in faults.tries]
    worst = max((p for p in peaks if p is not None and not math.isnan(p)), default=math.nan)
    section.targets.append(
        Target(
            f"Peak RSS growth of each try <= {plan.fault_limit / MIB:.0f} MiB, faults run at {faults.n:,} "
            "from a file" + (" (quick: not 1,000,000)" if quick else ""),
            ", ".join(f"try {t.number}: {fmt_bytes(p)}" for t, p in zip(faults.tries, peaks, strict=True)),
            None if math.isnan(worst) else worst <= plan.fault_limit,
        )
    )
    received, distinct = (int(faults.stats.get(k) or 0) for k in ("destinations", "distinct_message_ids"))
    section.targets.append(
        Target(
            f"Exactly once under faults: every one of the {faults.n:,} destinations accepted once",
            f"{received:,} received, {distinct:,} distinct ids, {faults.duplicates} duplicate ids, "
            + (f"{len(faults.tries)} try" if len(faults.tries) == 1 else f"{len(faults.tries)} tries")
            + ("" if faults.succeeded else ", no try succeeded"),
            faults.once,
        )
    )
