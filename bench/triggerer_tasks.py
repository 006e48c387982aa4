"""Worker tasks of section 8 (``bench.triggerer``): N deferred waits in one process, one poke sensor.

Run by ``python -m bench.worker TASK ARGS`` in a fresh interpreter, like the other worker tasks.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from bench.worker_tasks import _cpu, minimal_context, rss_bytes


def _requests(url: str) -> dict[str, int]:
    """The requests the sandbox counted, per endpoint."""
    from airflow_provider_omni.sandbox.server import SandboxAdminClient

    return dict(SandboxAdminClient(url, timeout=30).stats()["requests"])


def task_triggerer_capacity(args: dict[str, Any]) -> dict[str, Any]:
    """Run one :class:`OmniDeliveryReportTrigger` per bulk in one event loop, as a triggerer does.

    Args: ``buckets_file`` (JSON ``{bulk_id: destinations}``), ``poll_interval``, ``window`` (seconds
    measured once every trigger has read its logs and polled once), ``url`` (the sandbox).
    """
    import airflow.sdk.execution_time.supervisor  # noqa: F401  (loaded in a real triggerer too)
    import httpx

    import airflow_provider_omni.hooks.omni  # noqa: F401
    from airflow_provider_omni.triggers.delivery_report import OmniDeliveryReportTrigger

    with open(args["buckets_file"]) as fh:
        buckets: dict[str, int] = json.load(fh)
    poll, window, url = float(args["poll_interval"]), float(args["window"]), args["url"]
    n = len(buckets)
    rss0 = rss_bytes()
    triggers = [
        OmniDeliveryReportTrigger(
            buckets={bulk: size},
            omni_conn_id="omni_default",
            poll_interval=poll,
            end_time=time.time() + 3600,
        )
        for bulk, size in buckets.items()
    ]
    events: list[Any] = []

    async def drain(trigger: Any) -> None:
        async for event in trigger.run():
            events.append(event)
            return

    async def main() -> dict[str, Any]:
        before = await asyncio.to_thread(_requests, url)
        started = time.monotonic()
        cpu_start = _cpu()
        tasks = [asyncio.create_task(drain(t)) for t in triggers]
        # warm-up: every trigger has read the logs of its bulk (on start) and polled its reports once
        while time.monotonic() - started < 900:
            now = await asyncio.to_thread(_requests, url)
            if (
                now.get("logs", 0) - before.get("logs", 0) >= n
                and now.get("reports", 0) - before.get("reports", 0) >= n
            ):
                break
            await asyncio.sleep(0.5)
        warm_up, warm_cpu = time.monotonic() - started, _cpu() - cpu_start
        await asyncio.sleep(poll)
        s1, cpu1, rss1, t1 = await asyncio.to_thread(_requests, url), _cpu(), rss_bytes(), time.monotonic()
        await asyncio.sleep(window)
        s2, cpu2, rss2, t2 = await asyncio.to_thread(_requests, url), _cpu(), rss_bytes(), time.monotonic()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # the size of one TLS context (the CA store), which the hooks of a process share

        before_ctx, count = rss_bytes(), 50
        contexts = [httpx.create_ssl_context(verify=True, trust_env=True) for _ in range(count)]
        ssl_context_bytes = (rss_bytes() - before_ctx) / len(contexts)
        return {
            "n": n,
            "warm_up_s": warm_up,
            "warm_up_cpu": warm_cpu,
            "warm_up_logs": now.get("logs", 0) - before.get("logs", 0),
            "window_s": t2 - t1,
            "cpu": cpu2 - cpu1,
            "reports": s2.get("reports", 0) - s1.get("reports", 0),
            "logs": s2.get("logs", 0) - s1.get("logs", 0),
            "rss_growth": max(rss1, rss2) - rss0,
            "rss": max(rss1, rss2),
            "events_early": len(events),
            "ssl_context_bytes": ssl_context_bytes,
        }

    return asyncio.run(main())


def task_poke_capacity(args: dict[str, Any]) -> dict[str, Any]:
    """One wait as a poke-mode sensor: the worker process pokes every ``poll_interval`` for ``window``.

    Args: ``buckets`` (``{bulk_id: destinations}``, one bulk), ``poll_interval``, ``window``, ``url``.
    """
    import airflow.sdk.execution_time.supervisor  # noqa: F401

    from airflow_provider_omni.sensors.delivery_report import OmniDeliveryReportSensor

    sensor = OmniDeliveryReportSensor(
        task_id="wait",
        bulk_ids=dict(args["buckets"]),
        poke_interval=float(args["poll_interval"]),
        timeout=3600,
        mode="poke",
    )
    context = minimal_context(sensor, dag_id="bench_dag", run_id="bench_poke")
    poll, window, url = float(args["poll_interval"]), float(args["window"]), args["url"]
    sensor.poke(context)  # type: ignore[arg-type]  # the first poke reads the scenario and starts the tracker
    s1, cpu1, t1 = _requests(url), _cpu(), time.monotonic()
    pokes = 0
    while time.monotonic() - t1 < window:
        time.sleep(poll)
        sensor.poke(context)  # type: ignore[arg-type]
        pokes += 1
    s2, cpu2, t2 = _requests(url), _cpu(), time.monotonic()
    return {
        "window_s": t2 - t1,
        "cpu": cpu2 - cpu1,
        "pokes": pokes,
        "reports": s2.get("reports", 0) - s1.get("reports", 0),
        "rss": rss_bytes(),
    }


TASKS: dict[str, Any] = {
    "triggerer_capacity": task_triggerer_capacity,
    "poke_capacity": task_poke_capacity,
}
