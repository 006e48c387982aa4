"""Subprocess measurements of sending, waiting and sizes (run through :mod:`bench.worker`)."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import time
import tracemalloc
from types import SimpleNamespace
from typing import Any

TEXT = "Your parcel arrives today between 10:00 and 12:00."
VIBER = {"text": TEXT, "validityPeriod": 1, "validityPeriodTimeUnit": "HOURS"}
SMS = {"text": TEXT, "validityPeriod": 1, "validityPeriodTimeUnit": "HOURS"}
BATCH = 1000


def _read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def phone_numbers(n: int, start: int = 0) -> list[str]:
    """Return ``n`` distinct valid numbers; the last digit (the sandbox persona) cycles 0..9."""
    return [f"3859{i:08d}" for i in range(start, start + n)]


def rss_bytes() -> int:
    """Return the current resident set size of this process."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process to its current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Return the peak resident set size of this process (since the last reset)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Meter:
    """Wall, CPU (user+sys of this process) and peak RSS growth of a block."""

    def __enter__(self) -> Meter:
        reset_peak_rss()
        self.rss0 = rss_bytes()
        self.cpu0 = _cpu()
        self.wall0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = _cpu() - self.cpu0
        self.rss_peak_delta = max(0, peak_rss_bytes() - self.rss0)

    def as_dict(self) -> dict[str, float]:
        """Return the measures."""
        return {"wall": self.wall, "cpu": self.cpu, "rss_peak_delta": self.rss_peak_delta}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _session(api_key: str) -> Any:
    import requests

    session = requests.Session()
    session.headers.update(
        {"Authorization": f"App {api_key}", "Content-Type": "application/json", "Accept": "application/json"}
    )
    return session


# -- sending ---------------------------------------------------------------------------------------


def task_send_per_recipient(args: dict[str, Any]) -> dict[str, Any]:
    """One POST per recipient with a requests.Session (keep-alive): what a user would write by hand.

    Stops after ``cap_s`` seconds; the result says how many were sent.
    """
    numbers = phone_numbers(args["n"])
    session = _session(args["api_key"])
    url = args["url"] + "/omni/1/advanced"
    cap = float(args.get("cap_s") or 1e9)
    sent = 0
    with Meter() as meter:
        for number in numbers:
            body = {
                "scenarioKey": args["scenario_key"],
                "destinations": [{"to": {"phoneNumber": number}}],
                "viber": VIBER,
                "sms": SMS,
            }
            response = session.post(url, json=body, timeout=30)
            response.raise_for_status()
            sent += 1
            if time.perf_counter() - meter.wall0 > cap:
                break
    return {**meter.as_dict(), "sent": sent}


def batched_bodies(args: dict[str, Any]) -> list[bytes]:
    """Return the batched request bodies (1000 destinations each) as the operator would send them."""
    numbers = phone_numbers(args["n"])
    bodies = []
    for b, start in enumerate(range(0, len(numbers), BATCH)):
        bulk = f"bench_dag.send.0123456789.-1.b{b}"
        destinations = [
            {"messageId": f"{bulk}.{i}", "to": {"phoneNumber": number}}
            for i, number in enumerate(numbers[start : start + BATCH])
        ]
        body = {
            "scenarioKey": args["scenario_key"],
            "bulkId": bulk,
            "destinations": destinations,
            "viber": VIBER,
            "sms": SMS,
        }
        bodies.append(json.dumps(body).encode())
    return bodies


def task_send_lower_bound(args: dict[str, Any]) -> dict[str, Any]:
    """A bare requests.Session posting prebuilt batched bodies: the least any client can do."""
    bodies = batched_bodies(args)
    session = _session(args["api_key"])
    url = args["url"] + "/omni/1/advanced"
    with Meter() as meter:
        for body in bodies:
            response = session.post(url, data=body, timeout=60)
            response.raise_for_status()
    return {**meter.as_dict(), "sent": args["n"], "bodies_bytes": sum(len(b) for b in bodies)}


def minimal_context(task: Any, *, dag_id: str, run_id: str) -> dict[str, Any]:
    """Return the smallest execution context the provider's operators and sensor use."""
    pushed: dict[str, Any] = {}
    ti = SimpleNamespace(
        dag_id=dag_id,
        task_id=task.task_id,
        run_id=run_id,
        map_index=-1,
        try_number=1,
        xcom_push=lambda key, value, **_: pushed.__setitem__(key, value),
        xcom_pull=lambda *a, **k: None,
    )
    return {
        "ti": ti,
        "task_instance": ti,
        "task": task,
        "run_id": run_id,
        "dag_run": SimpleNamespace(run_id=run_id, dag_id=dag_id, conf={}),
        "dag": SimpleNamespace(dag_id=dag_id),
        "params": {},
        "logical_date": None,
        "map_index": -1,
    }


#: Optional operator arguments ``task_send_operator`` passes on when its args name them.
OPERATOR_OPTIONS = ("batch_size", "max_in_flight", "max_messages_per_second", "progress_interval")


def task_send_operator(args: dict[str, Any]) -> dict[str, Any]:
    """OmniSendAdvancedMessageOperator.execute() with a minimal context, against the sandbox.

    Optional keys: the operator arguments of :data:`OPERATOR_OPTIONS` (else the operator's defaults),
    ``build`` (default True: time ``build_bulks()`` once more after the send) and ``save_xcom``.
    """
    # Import what the operator loads lazily in execute() before the clock starts, as the lower bound
    # imports requests before its clock: the measurement is the cost of sending, not of importing.
    # A worker process already has the task SDK's supervisor loaded; outside one, the first connection
    # lookup imports it (about 20 ms), which is not a cost of sending.
    import airflow.sdk.execution_time.supervisor  # noqa: F401

    import airflow_provider_omni.hooks.omni  # noqa: F401
    from airflow_provider_omni.operators.send import OmniSendAdvancedMessageOperator

    numbers = phone_numbers(args["n"])
    op = OmniSendAdvancedMessageOperator(
        task_id="send",
        scenario_key=args["scenario_key"],
        destinations=numbers,
        viber=VIBER,
        sms=SMS,
        **{key: args[key] for key in OPERATOR_OPTIONS if args.get(key) is not None},
    )
    context = minimal_context(op, dag_id="bench_dag", run_id=args.get("run_id", "bench_run"))
    with Meter() as meter:
        result = op.execute(context)  # type: ignore[arg-type]
    xcom = json.dumps(result)
    out = {
        **meter.as_dict(),
        "sent": args["n"],
        "xcom_bytes": len(xcom.encode()),
        "accepted": result.get("accepted"),
        "rejected": result.get("rejected"),
    }
    if args.get("build", True):
        # the share of the operator's own work that involves no I/O: validating and building every bulk
        with Meter() as build:
            op.build_bulks(context)  # type: ignore[arg-type]
        out["build_wall"], out["build_cpu"] = build.wall, build.cpu
    if args.get("save_xcom"):
        with open(args["save_xcom"], "w") as fh:
            fh.write(xcom)
    return out


# -- waiting ----------------------------------------------------------------------------------------


def _sensor(args: dict[str, Any], send_result: Any, *, deferrable: bool) -> Any:
    """The delivery sensor the wait benchmarks measure (poke mode unless deferrable)."""
    from airflow_provider_omni.sensors.delivery_report import OmniDeliveryReportSensor

    return OmniDeliveryReportSensor(
        task_id="wait",
        send_result=send_result,
        deferrable=deferrable,
        poke_interval=args["poke_interval"],
        timeout=args["timeout"],
        mode="poke",
    )


def task_wait_poke(args: dict[str, Any]) -> dict[str, Any]:
    """The sensor in poke mode, in this (worker) process, until the messages are final."""
    send_result = _read_json(args["send_result"])
    sensor = _sensor(args, send_result, deferrable=False)
    pokes = {"n": 0, "unfinished": 0}
    original = sensor.poke
    bulks = len(send_result.get("bulks") or []) if isinstance(send_result, dict) else 0

    def counting_poke(context: Any) -> Any:
        pokes["n"] += 1
        tracker = getattr(sensor, "_tracker", None)
        pokes["unfinished"] += len(tracker.unfinished()) if tracker is not None else bulks
        return original(context)

    sensor.poke = counting_poke  # type: ignore[method-assign]
    context = minimal_context(sensor, dag_id="bench_dag", run_id="bench_run")
    with Meter() as meter:
        summary = sensor.execute(context)  # type: ignore[arg-type]
    return {
        **meter.as_dict(),
        "pokes": pokes["n"],
        "unfinished_at_polls": pokes["unfinished"],
        "summary_bytes": len(json.dumps(summary).encode()),
        "summary": _small(summary),
    }


def _small(summary: Any) -> Any:
    """Return the counts of a sensor summary (drop anything long)."""
    if not isinstance(summary, dict):
        return str(summary)[:200]
    return {k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool)) or v is None}


def task_wait_defer_worker(args: dict[str, Any]) -> dict[str, Any]:
    """Deferrable mode, worker part 1: execute() until it raises TaskDeferred; saves the trigger."""
    from airflow.exceptions import TaskDeferred

    send_result = _read_json(args["send_result"])
    sensor = _sensor(args, send_result, deferrable=True)
    context = minimal_context(sensor, dag_id="bench_dag", run_id="bench_run")
    deferred = None
    with Meter() as meter:
        try:
            result = sensor.execute(context)  # type: ignore[arg-type]
        except TaskDeferred as exc:
            deferred = exc
    out: dict[str, Any] = meter.as_dict()
    if deferred is None:
        out["deferred"] = False
        out["summary_bytes"] = len(json.dumps(result).encode())
        return out
    classpath, kwargs = deferred.trigger.serialize()
    raw = json.dumps(kwargs, default=str)
    with open(args["trigger_file"], "w") as fh:
        json.dump({"classpath": classpath, "kwargs": kwargs, "method": deferred.method_name}, fh, default=str)
    out.update(
        deferred=True,
        trigger_kwargs_bytes=len(raw.encode()),
        classpath=classpath,
        method=deferred.method_name,
    )
    return out


def _load_trigger(path: str) -> Any:
    import importlib

    saved = _read_json(path)
    module, _, name = saved["classpath"].rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    return cls(**saved["kwargs"]), saved


def task_wait_trigger(args: dict[str, Any]) -> dict[str, Any]:
    """Deferrable mode, triggerer part: run the trigger until its one event (saved for part 2)."""
    trigger, _ = _load_trigger(args["trigger_file"])
    polls = {"n": 0, "unfinished": 0}
    poll_once = getattr(trigger, "_poll_once", None)
    if poll_once is not None:

        async def counting_poll(hook: Any, tracker: Any) -> Any:
            polls["n"] += 1
            polls["unfinished"] += len(tracker.unfinished())
            return await poll_once(hook, tracker)

        trigger._poll_once = counting_poll

    async def first_event() -> Any:
        async for event in trigger.run():
            return event
        return None

    with Meter() as meter:
        event = asyncio.run(first_event())
    payload = getattr(event, "payload", event)
    with open(args["event_file"], "w") as fh:
        json.dump(payload, fh, default=str)
    return {
        **meter.as_dict(),
        "polls": polls["n"] if poll_once is not None else None,
        "unfinished_at_polls": polls["unfinished"],
        "event_bytes": len(json.dumps(payload, default=str).encode()),
        "status": payload.get("status") if isinstance(payload, dict) else None,
    }


def task_wait_complete(args: dict[str, Any]) -> dict[str, Any]:
    """Deferrable mode, worker part 2: the resumed task's execute_complete(event)."""
    send_result = _read_json(args["send_result"])
    saved = _read_json(args["trigger_file"])
    event = _read_json(args["event_file"])
    sensor = _sensor(args, send_result, deferrable=True)
    context = minimal_context(sensor, dag_id="bench_dag", run_id="bench_run")
    with Meter() as meter:
        summary = getattr(sensor, saved.get("method") or "execute_complete")(context, event)
    return {**meter.as_dict(), "summary_bytes": len(json.dumps(summary).encode()), "summary": _small(summary)}


# -- memory of the tracker ---------------------------------------------------------------------------


def task_tracker_memory(args: dict[str, Any]) -> dict[str, Any]:
    """Peak Python memory (tracemalloc) of the sensor while it ingests all reports of N messages."""
    send_result = _read_json(args["send_result"])
    sensor = _sensor(args, send_result, deferrable=False)
    context = minimal_context(sensor, dag_id="bench_dag", run_id="bench_run")
    tracemalloc.start()
    with Meter() as meter:
        summary = sensor.execute(context)  # type: ignore[arg-type]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        **meter.as_dict(),
        "tracemalloc_peak": peak,
        "summary_bytes": len(json.dumps(summary).encode()),
        "summary": _small(summary),
    }


TASKS: dict[str, Any] = {
    "send_per_recipient": task_send_per_recipient,
    "send_lower_bound": task_send_lower_bound,
    "send_operator": task_send_operator,
    "wait_poke": task_wait_poke,
    "wait_defer_worker": task_wait_defer_worker,
    "wait_trigger": task_wait_trigger,
    "wait_complete": task_wait_complete,
    "tracker_memory": task_tracker_memory,
}
