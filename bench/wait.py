"""Section 2: the worker time held while waiting for delivery, deferrable versus poke mode."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from bench.common import SandboxProcess, requests_to, run_worker, workdir
from bench.report import Section, Table, Target, fmt_s

#: Validity of each step in the messages sent (simulated seconds): recipients ending in 9 (no Viber,
#: no SMS confirms) expire after both, so the last message is final VIBER + SMS validity after the send.
STEP_VALIDITY_S = 3600.0
TARGET_DEFER_WORKER_S = 2.0


def time_scale_for(wait_s: float) -> float:
    """Return the sandbox time scale that makes the unconfirmed recipients final ``wait_s`` after the send."""
    return 2 * STEP_VALIDITY_S / wait_s


def _delta(after: dict[str, Any], before: dict[str, Any], endpoint: str) -> int:
    return requests_to(after, endpoint) - requests_to(before, endpoint)


def _prepare(sb: SandboxProcess, n: int, tag: str) -> str:
    """Send ``n`` destinations with the operator and return the path of the saved XCom."""
    key = sb.create_scenario()
    path = str(workdir() / f"send-{tag}-{n}.json")
    run_worker(
        "send_operator",
        {"n": n, "scenario_key": key, "run_id": f"wait_{tag}_{n}", "save_xcom": path},
        env=sb.connection_env(),
        timeout=900,
    )
    return path


#: The sandbox clock while sending and starting the sensor: frozen (nothing happens until released).
FROZEN_SCALE = 0.0001


def run_released(sb: SandboxProcess, task: str, args: dict[str, Any], wait_s: float) -> dict[str, Any]:
    """Run a sensor worker; when its first report request arrives, start the sandbox clock.

    The messages were sent with the clock frozen, so the wait starts at the sensor's first poke and
    lasts ``wait_s`` whatever the start-up time of the worker process.
    """
    before = requests_to(sb.stats(), "reports")
    box: dict[str, Any] = {}

    def go() -> None:
        try:
            box["result"] = run_worker(task, args, env=sb.connection_env(), timeout=wait_s * 6 + 600)
        except BaseException as exc:  # re-raised below
            box["error"] = exc

    thread = threading.Thread(target=go)
    thread.start()
    while thread.is_alive() and requests_to(sb.stats(), "reports") <= before:
        time.sleep(0.05)
    sb.configure(time_scale=time_scale_for(wait_s))
    thread.join()
    if "error" in box:
        raise box["error"]
    return dict(box["result"])


def run_poke(n: int, wait_s: float, poke_interval: float) -> dict[str, Any]:
    """Send, then run the sensor in poke mode in a worker process until every message is final."""
    with SandboxProcess(time_scale=FROZEN_SCALE) as sb:
        send_result = _prepare(sb, n, "poke")
        before = sb.stats()
        args = {"send_result": send_result, "poke_interval": poke_interval, "timeout": wait_s * 5 + 120}
        result = run_released(sb, "wait_poke", args, wait_s)
        after = sb.stats()
    result["reports_requests"] = _delta(after, before, "reports")
    result["logs_requests"] = _delta(after, before, "logs")
    return result


def run_deferrable(n: int, wait_s: float, poke_interval: float) -> dict[str, Any]:
    """Send, then the deferrable sensor: worker part 1, the trigger (as in the triggerer), worker part 2."""
    files = {
        "trigger_file": str(workdir() / f"trigger-{n}.json"),
        "event_file": str(workdir() / f"event-{n}.json"),
    }
    with SandboxProcess(time_scale=FROZEN_SCALE) as sb:
        send_result = _prepare(sb, n, "defer")
        args = {
            "send_result": send_result,
            "poke_interval": poke_interval,
            "timeout": wait_s * 5 + 120,
            **files,
        }
        env = sb.connection_env()
        s0 = sb.stats()
        first = run_worker("wait_defer_worker", args, env=env, timeout=600)
        s1 = sb.stats()
        if not first.get("deferred"):
            return {"first": first, "deferred": False}
        trigger = run_released(sb, "wait_trigger", args, wait_s)
        s2 = sb.stats()
        complete = run_worker("wait_complete", args, env=env, timeout=600)
        s3 = sb.stats()
    return {
        "deferred": True,
        "first": {
            **first,
            "reports_requests": _delta(s1, s0, "reports"),
            "logs_requests": _delta(s1, s0, "logs"),
        },
        "trigger": {
            **trigger,
            "reports_requests": _delta(s2, s1, "reports"),
            "logs_requests": _delta(s2, s1, "logs"),
        },
        "complete": {
            **complete,
            "reports_requests": _delta(s3, s2, "reports"),
            "logs_requests": _delta(s3, s2, "logs"),
        },
    }


def _both(n: int, wait_s: float, poke_interval: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run poke and deferrable mode at the same time, each against its own sandbox process."""
    out: dict[str, Any] = {}
    errors: list[BaseException] = []

    def go(name: str, fn: Any) -> None:
        try:
            out[name] = fn(n, wait_s, poke_interval)
        except BaseException as exc:  # re-raised in the calling thread
            errors.append(exc)

    threads = [
        threading.Thread(target=go, args=("poke", run_poke)),
        threading.Thread(target=go, args=("defer", run_deferrable)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return out["poke"], out["defer"]


def run(quick: bool, wait_seconds: float | None = None) -> Section:
    """Run section 2; ``quick``: N=50, a 3 s wait."""
    sizes = [50] if quick else [1_000, 10_000]
    wait_s = wait_seconds or (3.0 if quick else 60.0)
    poke_interval = max(0.5, wait_s / 12)
    section = Section(
        "wait",
        "2. Waiting for delivery: deferrable versus poke mode",
        method=[
            "The wait is fixed by the sandbox (its own process): the operator sends with the sandbox clock "
            "frozen; the moment the first report request of the waiting part arrives (poke mode: the first "
            "poke; deferrable: the trigger's first poll, so the worker's first poke sees nothing final yet, "
            "as right after a real send), the clock starts at a time scale of "
            f"{time_scale_for(wait_s):g}. Every step has a validity of "
            f"{STEP_VALIDITY_S:.0f} s (simulated), so the "
            "recipients ending in 9 (no Viber, SMS never confirmed: 10% of every bulk) expire "
            f"{wait_s:g} s (real) after that; the others are final within a fraction of a second.",
            "Poke mode: `OmniDeliveryReportSensor(deferrable=False, "
            f"mode='poke', poke_interval={poke_interval:g})` "
            "runs `execute()` in a worker process until done; the worker slot is held for all of it.",
            "Deferrable mode, as Airflow splits it: worker part 1 (`execute()`: the first poke, then "
            "`TaskDeferred`), the trigger in a separate process (as in "
            "the triggerer: `trigger.run()` until its "
            "event, rebuilt from its serialized kwargs), worker part 2 "
            "(`execute_complete(event)`). Only parts "
            "1 and 2 hold a worker; the trigger's figures are given apart.",
            "Worker time: wall and CPU (user+sys, `getrusage`) of the "
            "code, after the interpreter and imports "
            "are up (the same for both modes). Requests: counted by the sandbox per endpoint.",
            "Why not always wait 5 minutes: the deferrable worker "
            "parts are straight-line code (one poke, one "
            "event), their time does not grow with the wait; only poke mode and the trigger do, linearly "
            "(their wall is the wait). Run `python -m bench.run --only wait --wait-seconds 300` for a real "
            "5-minute wait (about 6 minutes at N=1,000 and 10,000 run in parallel per N).",
        ],
        notes=[
            f"Poke and deferrable mode ran at the same time (each against its own sandbox process) to keep "
            f"the run short; wait {wait_s:g} s, poll interval {poke_interval:g} s."
        ],
    )
    held = Table(
        f"Worker time held while waiting {wait_s:g} s for N messages (baseline: poke mode, same N, same run)",
        [
            "N",
            "Mode",
            "Worker wall",
            "Worker CPU",
            "Worker wall vs poke mode",
            "Triggerer wall",
            "Triggerer CPU",
            "Polls",
        ],
    )
    reqs = Table(
        "Requests per poll versus N (from sandbox stats; bulks = N/1000)",
        [
            "N",
            "Bulks",
            "Mode",
            "Polls",
            "Report requests",
            "Report requests per poll",
            "Log requests (one-off rebuild)",
        ],
    )
    defer_worker: dict[int, float] = {}
    per_poll_ok = True
    per_poll_text = []
    logs_per_bulk: list[str] = []
    logs_rate = 0.0
    for n in sizes:
        poke, defer = _both(n, wait_s, poke_interval)
        bulks = math.ceil(n / 1000)
        held.add(
            f"{n:,}",
            "poke",
            fmt_s(poke["wall"]),
            fmt_s(poke["cpu"]),
            "1.00x (baseline)",
            "-",
            "-",
            poke["pokes"],
        )
        pp = poke["reports_requests"] / max(poke["pokes"], 1)
        reqs.add(
            f"{n:,}",
            bulks,
            "poke",
            poke["pokes"],
            poke["reports_requests"],
            f"{pp:.2f}",
            poke["logs_requests"],
        )
        expected = poke["unfinished_at_polls"] / max(poke["pokes"], 1)
        per_poll_ok &= math.isclose(pp, expected)
        per_poll_text.append(f"poke {pp:.2f} (unfinished {expected:.2f}) at {n:,}")
        if not defer.get("deferred"):
            held.add(
                f"{n:,}", "deferrable", "did not defer (done at the first poke)", "-", "-", "-", "-", "-"
            )
            continue
        first, trig, comp = defer["first"], defer["trigger"], defer["complete"]
        wall, cpu = first["wall"] + comp["wall"], first["cpu"] + comp["cpu"]
        defer_worker[n] = wall
        held.add(
            f"{n:,}",
            "deferrable (worker: first poke + defer, execute_complete)",
            f"{fmt_s(wall)} ({fmt_s(first['wall'])} + {fmt_s(comp['wall'])})",
            fmt_s(cpu),
            f"{wall / poke['wall']:.3f}x" if poke["wall"] else "n/a",
            fmt_s(trig["wall"]),
            fmt_s(trig["cpu"]),
            f"1 + {trig['polls']}",
        )
        tp = trig["reports_requests"] / max(trig["polls"] or 1, 1)
        reqs.add(
            f"{n:,}",
            bulks,
            "deferrable: first poke (worker)",
            1,
            first["reports_requests"],
            f"{first['reports_requests']:.2f}",
            first["logs_requests"],
        )
        reqs.add(
            f"{n:,}",
            bulks,
            "deferrable: trigger",
            trig["polls"],
            trig["reports_requests"],
            f"{tp:.2f}",
            trig["logs_requests"],
        )
        trig_expected = trig["unfinished_at_polls"] / max(trig["polls"] or 1, 1)
        # the worker has no task state store here: its first poke leaves every report to the trigger
        # (a report consumed in the worker would be lost with it), so it reads none
        per_poll_ok &= math.isclose(tp, trig_expected) and first["reports_requests"] == 0
        per_poll_text.append(f"trigger {tp:.2f} (unfinished {trig_expected:.2f}) at {n:,}")
        logs_rate = max(logs_rate, (first["logs_requests"] + trig["logs_requests"]) / bulks)
        logs_per_bulk.append(
            f"N={n:,}: {first['logs_requests']} by the worker's first poke, {trig['logs_requests']} by the "
            f"trigger ({first['logs_requests'] / bulks:.0f} and {trig['logs_requests'] / bulks:.0f} per bulk)"
        )
    section.tables += [held, reqs]
    if logs_per_bulk and logs_rate:
        section.notes.append(
            "One-off log reads (the rebuild from `GET /omni/1/logs` when no stored state exists): "
            + "; ".join(logs_per_bulk)
            + f". Infobip limits /logs to 120 requests per minute; at {logs_rate:.0f} log requests per bulk "
            "in all, a send of more than about "
            f"{120 / logs_rate:.0f} bulks ({120 / logs_rate * 1000:,.0f} destinations) goes over it "
            "in one go."
        )
    section.targets.append(
        Target(
            "Deferrable sensor holds a worker < 2 s (for a 5-minute wait; measured at a "
            f"{wait_s:g} s wait, independent of it)",
            ", ".join(f"{fmt_s(w)} at {n:,}" for n, w in defer_worker.items()) or "did not defer",
            bool(defer_worker) and all(w < TARGET_DEFER_WORKER_S for w in defer_worker.values()),
        )
    )
    section.targets.append(
        Target(
            "Report requests per poll = bulks still unfinished at that poll (counted at each poll)",
            "; ".join(per_poll_text),
            per_poll_ok,
        )
    )
    return section
