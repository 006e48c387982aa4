"""Section 8: the capacity of one triggerer: N deferred waits against the sandbox, and the same waits
as poke sensors (the baseline, in the same run).

Each wait is one bulk of :data:`DESTINATIONS_PER_BULK` destinations that never becomes final (the
sandbox's clock is frozen), so every trigger polls for the whole window: the steady state of a long
wait. The N triggers run in one event loop of one fresh process, as in a triggerer's runner.
"""

from __future__ import annotations

import json
import math
from typing import Any

from bench.common import SandboxProcess, run_worker, workdir
from bench.report import Section, Table, Target, fmt_bytes
from bench.wait import FROZEN_SCALE

SIZES = (100, 1_000, 5_000)
SIZES_QUICK = (10,)
DESTINATIONS_PER_BULK = 10
POLL_INTERVAL = 15.0
WINDOW = 60.0
#: Infobip's documented throttle of ``GET /omni/1/logs`` (per account); reports have no published limit.
LOGS_PER_MINUTE = 120
#: The sensor's default ``logs_reconcile_interval`` (seconds).
RECONCILE_S = 600.0


def _send_bulks(sb: SandboxProcess, n: int) -> dict[str, int]:
    """Send ``n`` bulks of :data:`DESTINATIONS_PER_BULK` and return ``{bulk_id: size}``."""
    import requests

    key = sb.create_scenario()
    session = requests.Session()
    session.headers["Authorization"] = f"App {sb.api_key}"
    buckets: dict[str, int] = {}
    for b in range(n):
        bulk = f"capacity-{n}-{b}"
        destinations = [
            {"messageId": f"{bulk}-{i}", "to": {"phoneNumber": f"4179{(b * DESTINATIONS_PER_BULK + i):07d}"}}
            for i in range(DESTINATIONS_PER_BULK)
        ]
        body = {"scenarioKey": key, "bulkId": bulk, "destinations": destinations, "sms": {"text": "Hi"}}
        response = session.post(f"{sb.url}/omni/1/advanced", json=body, timeout=60)
        response.raise_for_status()
        buckets[bulk] = DESTINATIONS_PER_BULK
    return buckets


def measure_deferred(n: int, poll: float, window: float) -> dict[str, Any]:
    """N triggers in one process against their own sandbox process."""
    with SandboxProcess(time_scale=FROZEN_SCALE) as sb:
        buckets = _send_bulks(sb, n)
        path = workdir() / f"capacity-{n}.json"
        path.write_text(json.dumps(buckets))
        args = {"buckets_file": str(path), "poll_interval": poll, "window": window, "url": sb.url}
        return dict(run_worker("triggerer_capacity", args, env=sb.connection_env(), timeout=1800))


def measure_poke(poll: float, window: float) -> dict[str, Any]:
    """One wait as a poke sensor in its own worker process."""
    with SandboxProcess(time_scale=FROZEN_SCALE) as sb:
        buckets = _send_bulks(sb, 1)
        args = {"buckets": buckets, "poll_interval": poll, "window": window, "url": sb.url}
        return dict(run_worker("poke_capacity", args, env=sb.connection_env(), timeout=1800))


def run(quick: bool) -> Section:
    """Measure, then build the section."""
    sizes = SIZES_QUICK if quick else SIZES
    poll, window = (1.0, 3.0) if quick else (POLL_INTERVAL, WINDOW)
    section = Section("triggerer", "8. Capacity of a triggerer: deferred waits versus poke sensors")
    section.method = [
        f"N waits (N = {', '.join(f'{n:,}' for n in sizes)}), each one bulk of {DESTINATIONS_PER_BULK}"
        " destinations that stays pending (the sandbox clock is frozen), so each wait polls for the"
        f" whole window: `OmniDeliveryReportTrigger` with `poll_interval` {poll:g} s, every trigger in"
        " one asyncio loop of one fresh process, as a triggerer's runner holds them; the sandbox runs"
        " in its own process, without rate limits (its requests are counted).",
        f"Measured over {window:g} s once every trigger has read its bulk's logs (its start) and polled"
        " once: CPU of the process (getrusage), RSS growth from before the triggers were made, report"
        " and logs requests the sandbox counted. Not measured: Airflow's triggerer job itself"
        " (its heartbeat and database queries, independent of the provider).",
        "Baseline in the same run: the same wait as a poke-mode sensor in a worker process, poking"
        f" every {poll:g} s: a poke sensor holds one worker slot for the whole wait, so N waits need N"
        " slots; its memory is the whole process's RSS (a real Celery slot is that plus the task"
        " supervisor's process, so the baseline is a lower bound).",
    ]
    poke = measure_poke(poll, window)
    poke_cpu_min = poke["cpu"] / poke["window_s"] * 60
    table = Table(
        f"One triggerer, N deferred waits (poll every {poll:g} s) versus N poke sensors",
        [
            "N waits",
            "triggerer CPU per wait per minute",
            "triggerer memory per wait",
            "triggerer total (CPU s/min, RSS)",
            "report requests/min",
            "start: logs requests",
            "poke baseline: slots, memory, CPU s/min",
        ],
    )
    results = []
    for n in sizes:
        r = measure_deferred(n, poll, window)
        results.append(r)
        cpu_min = r["cpu"] / r["window_s"] * 60
        table.add(
            f"{n:,}",
            f"{cpu_min / n * 1000:.2f} ms",
            fmt_bytes(r["rss_growth"] / n),
            f"{cpu_min:.2f} s, {fmt_bytes(r['rss'])}",
            f"{r['reports'] / r['window_s'] * 60:,.0f}",
            f"{r['warm_up_logs']:,} in {r['warm_up_s']:.0f} s",
            f"{n:,} slots, {fmt_bytes(poke['rss'] * n)}, {poke_cpu_min * n:.1f} s",
        )
    section.tables.append(table)
    biggest = results[-1]
    per_wait_ms = biggest["cpu"] / biggest["window_s"] * 60 / biggest["n"] * 1000
    core_bound = 60_000 / per_wait_ms if per_wait_ms > 0 else math.inf
    steady_bound = int(LOGS_PER_MINUTE * RECONCILE_S / 60)
    section.notes += [
        f"A poke sensor, for comparison: {fmt_bytes(poke['rss'])} RSS and"
        f" {poke_cpu_min * 1000:.1f} ms CPU per minute for one wait, in one worker slot for the whole"
        f" wait ({poke['reports']} report requests in {poke['window_s']:.0f} s).",
        f"At {biggest['n']:,} waits one triggerer spent {per_wait_ms:.2f} ms CPU per wait per minute:"
        f" one core would carry about {core_bound:,.0f} such waits at this poll interval (CPU grows with"
        " the polls: halve the interval, double the CPU). Airflow's default `[triggerer] capacity`"
        " is 1,000 triggers per triggerer; raise it, or run more triggerers, above that.",
        "Report requests: one per unfinished bulk per poll, i.e. N x 60 / poll_interval a minute;"
        " Infobip publishes no limit for `GET /omni/1/reports`."
        + "".join(
            f" At {r['n']:,} waits the polls fell behind: {r['reports'] / r['window_s'] * 60:,.0f} report"
            f" requests a minute of {r['n'] * 60 / poll:,.0f} due (the triggerer and the sandbox share"
            " the machine's cores)."
            for r in results
            if r["reports"] / r["window_s"] * 60 < 0.9 * r["n"] * 60 / poll
        ),
        f"Where a wait's memory goes: the hooks of a process share one TLS context per trust (the CA"
        f" store, {fmt_bytes(biggest.get('ssl_context_bytes'))} a context, measured in the same process);"
        " a wait holds its tracker, its coroutine and its hook. Before the contexts were shared (run of"
        " 2026-11-29 01:06 UTC) each hook built its own, and a wait took about 870 KiB.",
        f"**Where Infobip's documented limits bind**: `GET /omni/1/logs` is throttled to"
        f" {LOGS_PER_MINUTE} a minute per account. Each trigger reads its bulks' logs when it starts"
        f" and every `logs_reconcile_interval` ({RECONCILE_S:.0f} s by default): the steady reads stay"
        f" under the limit up to **{steady_bound:,} unfinished bulks** waited for at once (all"
        f" triggerers of the account together); above, raise `logs_reconcile_interval`. After a"
        f" triggerer dies, its N bulks are read again at the takeover: N / {LOGS_PER_MINUTE} minutes"
        f" of logs reads (the trigger backs off on 429 and goes on), e.g. {1000 / LOGS_PER_MINUTE:.0f}"
        f" min for 1,000 bulks, {5000 / LOGS_PER_MINUTE:.0f} min for 5,000.",
    ]
    section.targets.append(
        Target(
            "deferred waits hold no worker slot (baseline: N slots)",
            f"{biggest['n']:,} waits in one process of {fmt_bytes(biggest['rss'])}",
            True,
        )
    )
    return section
