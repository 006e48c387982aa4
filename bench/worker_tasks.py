"""Subprocess measurements of sending, waiting and sizes (run through :mod:`bench.worker`)."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import tempfile
import threading
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


def task_send_floor(args: dict[str, Any]) -> dict[str, Any]:
    """The least CPU a from-file send that keeps exactly once spends besides posting, with no I/O but
    reading the file: read the CSV (``csv.reader``), derive each message id from its number (one
    sha256, as the identity model does), drop duplicates (an in-memory set, cheaper than any way in
    constant memory), serialize the bulks (``json.dumps``) and read one answer per bulk as the sandbox
    writes it (``json.loads``; the answers are made before the clock).  The lower bound plus this is
    what no client can go under; the operator's CPU over the lower bound's is set against it.
    """
    import csv
    import hashlib

    from airflow_provider_omni.sandbox.catalog import PENDING_ENROUTE

    path, key = args["path"], "0123456789abcdef"
    answers = [
        json.dumps(
            {
                "bulkId": f"bench_dag.send.{key}.b{b}",
                "messages": [
                    {"to": {"phoneNumber": n}, "status": PENDING_ENROUTE, "messageId": f"{key}-{n}"}
                    for n in numbers
                ],
            }
        ).encode()
        for b, numbers in enumerate(_batched(phone_numbers(args["n"]), BATCH))
    ]
    with Meter() as meter:
        seen: set[str] = set()
        batch: list[dict[str, Any]] = []
        sent = 0
        with open(path, newline="", encoding="utf-8") as fh:
            rows = csv.reader(fh)
            next(rows)  # the header
            for (number,) in rows:
                message_id = f"{key}-{hashlib.sha256((key + number).encode()).hexdigest()[:24]}"
                if message_id in seen:
                    continue
                seen.add(message_id)
                batch.append({"to": {"phoneNumber": number}, "messageId": message_id})
                if len(batch) == BATCH:
                    sent += _floor_bulk(batch, args["scenario_key"], answers[sent // BATCH])
                    batch = []
        if batch:
            sent += _floor_bulk(batch, args["scenario_key"], answers[sent // BATCH])
    return {**meter.as_dict(), "sent": sent}


def _batched(items: list[str], size: int) -> list[list[str]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _floor_bulk(destinations: list[dict[str, Any]], scenario_key: str, answer: bytes) -> int:
    """Serialize one bulk and read its answer's message ids; return how many the answer lists."""
    json.dumps({"scenarioKey": scenario_key, "destinations": destinations, "viber": VIBER, "sms": SMS})
    return len({m["messageId"] for m in json.loads(answer)["messages"]})


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


def write_numbers_csv(path: str, n: int, chunk: int = 10_000) -> int:
    """Write the ``n`` numbers of :func:`phone_numbers` as a CSV (header ``phoneNumber``) to ``path``.

    Written chunk by chunk, so that the list of a million numbers never sits in this process's memory.

    :return: the size of the file in bytes.
    """
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write("phoneNumber\n")
        for start in range(0, n, chunk):
            fh.write("\n".join(phone_numbers(min(chunk, n - start), start)) + "\n")
    return os.path.getsize(path)


class FileStateStore:
    """A task state store (``get``/``set`` of JSON values) kept in a file, so that it outlives the process.

    Every ``set`` appends one JSON line ``{"key": ..., "value": ...}`` to the file and flushes it; the
    file is read once when the store is made, into an index of the latest line of each key, and
    ``get`` reads that line back (a JSON round trip, like Airflow's store). The values are not held in
    this process's memory, as they are not with Airflow's store (it lives in the API server), so the
    store does not count in the operator's peak RSS. A retry in a new worker process sees every
    record of the earlier tries.

    :param path: the file (created when missing).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._index: dict[str, tuple[int, int]] = {}
        self._fh = open(path, "a+b")  # noqa: SIM115 - kept open for the life of the worker
        self._fh.seek(0)
        offset = 0
        for line in self._fh:
            if not line.endswith(b"\n"):  # cut short by a killed writer: dropped
                self._fh.truncate(offset)
                break
            self._index[json.loads(line)["key"]] = (offset, len(line))
            offset += len(line)
        self.sets = 0

    def get(self, key: str, default: Any = None) -> Any:
        """Return the value last set for ``key``, else ``default``."""
        with self._lock:
            place = self._index.get(key)
            if place is None:
                return default
            self._fh.seek(place[0])
            return json.loads(self._fh.read(place[1]))["value"]

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        """Append ``value`` as the value of ``key`` and flush it to the file."""
        line = json.dumps({"key": key, "value": value}).encode() + b"\n"
        with self._lock:
            self._fh.seek(0, os.SEEK_END)
            offset = self._fh.tell()
            self._fh.write(line)
            self._fh.flush()
            self._index[key] = (offset, len(line))
            self.sets += 1


#: Optional operator arguments ``task_send_from_file`` passes on besides :data:`OPERATOR_OPTIONS`.
FILE_OPTIONS = (*OPERATOR_OPTIONS, "uncertain_horizon")


def _file_operator(args: dict[str, Any], path: str) -> Any:
    """Return the send operator reading ``path`` (``confirm_delays`` patched on the class if asked)."""
    from airflow_provider_omni.operators.send import OmniSendAdvancedMessageOperator

    if args.get("confirm_delays") is not None:
        OmniSendAdvancedMessageOperator.confirm_delays = tuple(float(d) for d in args["confirm_delays"])
    return OmniSendAdvancedMessageOperator(
        task_id="send",
        scenario_key=args["scenario_key"],
        destinations_path=path,
        viber=VIBER,
        sms=SMS,
        **{key: args[key] for key in FILE_OPTIONS if args.get(key) is not None},
    )


def _execute_measured(op: Any, context: dict[str, Any]) -> tuple[Meter, dict[str, Any], Exception | None]:
    """Run ``op.execute(context)`` under a :class:`Meter`; return the meter, the XCom and the error."""
    result: dict[str, Any] = {}
    error: Exception | None = None
    with Meter() as meter:
        try:
            result = op.execute(context)
        except Exception as exc:  # reported, not raised: the bench runs the next try
            error = exc
    return meter, result or {}, error


def task_send_from_file(args: dict[str, Any]) -> dict[str, Any]:
    """OmniSendAdvancedMessageOperator.execute() with ``destinations_path``: a CSV of ``n`` numbers.

    The CSV (header ``phoneNumber``, the numbers of :func:`phone_numbers`) is ``path`` when given, else
    written to a temporary file before the clock. As :func:`task_send_operator`: a minimal context,
    the provider imported before the clock, wall, CPU and peak RSS growth of ``execute()``.

    Optional keys: the operator arguments of :data:`FILE_OPTIONS` (``uncertain_horizon`` in seconds),
    ``confirm_delays`` (a list of seconds, patched on the class), ``try_number`` (default 1),
    ``run_id`` and ``store_path`` (a :class:`FileStateStore` as the context's ``task_state_store``).
    An exception of the operator is returned (``error_type``, ``error``), not raised, so that the
    caller can run the next try.
    """
    # imported before the clock, as in task_send_operator
    import airflow.sdk.execution_time.supervisor  # noqa: F401

    import airflow_provider_omni.hooks.omni  # noqa: F401
    from airflow_provider_omni.operators.send import OmniSendAdvancedMessageOperator  # noqa: F401

    n = int(args["n"])
    path, made = args.get("path"), not args.get("path")
    if made:
        fd, path = tempfile.mkstemp(prefix="omni-bench-", suffix=".csv")
        os.close(fd)
        write_numbers_csv(path, n)
    try:
        op = _file_operator(args, str(path))
        context = minimal_context(op, dag_id="bench_dag", run_id=args.get("run_id", "bench_run"))
        context["ti"].try_number = int(args.get("try_number") or 1)
        store = FileStateStore(args["store_path"]) if args.get("store_path") else None
        if store is not None:
            context["task_state_store"] = store
        meter, result, error = _execute_measured(op, context)
    finally:
        if made:
            os.unlink(str(path))
    return {
        **meter.as_dict(),
        "n": n,
        "try_number": context["ti"].try_number,
        "total": result.get("total"),
        "accepted": result.get("accepted"),
        "rejected": result.get("rejected"),
        "bulks": len(result.get("bulks") or ()),
        "store_sets": store.sets if store is not None else None,
        "error_type": type(error).__name__ if error is not None else None,
        "error": str(error)[:2000] if error is not None else None,
    }


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
    "send_floor": task_send_floor,
    "send_operator": task_send_operator,
    "send_from_file": task_send_from_file,
    "wait_poke": task_wait_poke,
    "wait_defer_worker": task_wait_defer_worker,
    "wait_trigger": task_wait_trigger,
    "wait_complete": task_wait_complete,
    "tracker_memory": task_tracker_memory,
}
