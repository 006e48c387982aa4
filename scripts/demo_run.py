"""Drive the demo through Airflow's REST API: connection, unpause, trigger, wait, report.

Called by ``scripts/demo.sh`` once the sandbox and the Airflow components are started. Exits 0
when the DAG run succeeded, 1 when it failed or timed out, 2 when the set-up did not come up.
Only the standard library and ``requests`` (a dependency of the provider) are used.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import requests

BRANCH_TASKS = ("all_on_viber", "some_by_sms_fallback", "some_failed")
SUMMARY_TASKS = ("wait_for_delivery", "log_summary")
FINAL_RUN_STATES = {"success", "failed"}
_T0 = time.monotonic()


def say(message: str) -> None:
    """Print one progress line with the seconds since this script started."""
    print(f"[demo_run {time.monotonic() - _T0:5.1f}s] {message}", flush=True)


class Api:
    """A tiny client of Airflow's public REST API (auth is off: SIMPLE_AUTH_MANAGER_ALL_ADMINS)."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.session = requests.Session()

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send one request; connection errors propagate to the caller."""
        kwargs.setdefault("timeout", 15)
        return self.session.request(method, f"{self.base}{path}", **kwargs)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one request and return its JSON body, raising on an HTTP error."""
        response = self.call(method, path, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text[:500]}")
        return response.json()


def wait_until(what: str, check: Any, timeout: float, interval: float = 0.5) -> Any:
    """Call ``check()`` until it returns something truthy; raise TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (requests.ConnectionError, requests.Timeout) as exc:
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s (last error: {last_error})")


def wait_for_sandbox(url: str, timeout: float) -> None:
    """Wait until the sandbox answers HTTP."""

    def up() -> bool:
        return requests.get(f"{url}/_sandbox/stats", timeout=2).status_code < 500

    wait_until("sandbox", up, timeout)
    say(f"sandbox is up at {url}")


def wait_for_airflow(api: Api, timeout: float) -> None:
    """Wait until the API server and the scheduler, dag-processor and triggerer report healthy."""
    components = ("metadatabase", "scheduler", "triggerer", "dag_processor")

    def healthy() -> bool:
        response = api.call("GET", "/api/v2/monitor/health", timeout=3)
        if response.status_code != 200:
            return False
        body = response.json()
        return all((body.get(c) or {}).get("status") == "healthy" for c in components)

    wait_until("Airflow components", healthy, timeout)
    say("Airflow api-server, scheduler, dag-processor and triggerer are healthy")


def create_connection(api: Api, sandbox_url: str, api_key: str) -> None:
    """Create (or replace) the connection ``omni_default`` pointing at the sandbox, then test it."""
    body = {
        "connection_id": "omni_default",
        "conn_type": "infobip_omni",
        "description": "Local OMNI sandbox started by make demo",
        "host": sandbox_url,
        "password": api_key,
        "extra": json.dumps(
            {
                "auth_type": "api_key",
                "connect_timeout": 5,
                "read_timeout": 15,
                "max_retries": 3,
                "verify_ssl": True,
                "show_full_numbers": False,
            }
        ),
    }
    response = api.call("POST", "/api/v2/connections", json=body)
    if response.status_code == 409:
        response = api.call("PATCH", "/api/v2/connections/omni_default", json=body)
    if response.status_code >= 400:
        raise RuntimeError(f"creating the connection failed: {response.status_code} {response.text[:300]}")
    say(f"connection omni_default (type infobip_omni) -> {sandbox_url}, created through the REST API")
    test = api.call("POST", "/api/v2/connections/test", json=body)
    if test.status_code == 200:
        result = test.json()
        say(f"Test Connection: status={result.get('status')} message={result.get('message')!r}")
    else:
        say(f"Test Connection not available ({test.status_code}): {test.text[:200]}")


def wait_for_dag(api: Api, dag_id: str, timeout: float) -> None:
    """Wait until the dag-processor has parsed ``dag_id``; fail fast on an import error."""

    def parsed() -> bool:
        if api.call("GET", f"/api/v2/dags/{dag_id}").status_code == 200:
            return True
        errors = api.json("GET", "/api/v2/importErrors").get("import_errors", [])
        if errors:
            for error in errors:
                print(
                    f"IMPORT ERROR in {error.get('filename')}:\n{error.get('stack_trace')}", file=sys.stderr
                )
            raise RuntimeError("the example DAGs have import errors")
        return False

    wait_until(f"DAG {dag_id}", parsed, timeout)
    say(f"DAG {dag_id} is parsed")


def trigger(api: Api, dag_id: str, conf: dict[str, Any]) -> str:
    """Unpause the DAG and trigger one run; return its run id."""
    api.json("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
    run = api.json("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
    say(f"unpaused {dag_id} and triggered run {run['dag_run_id']}")
    return str(run["dag_run_id"])


def task_instances(api: Api, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """Return the run's task instances (mapped ones included), in a stable order."""
    body = api.json("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
    tis = body.get("task_instances", [])
    return sorted(tis, key=lambda ti: (ti.get("start_date") or "~", ti["task_id"], ti.get("map_index", -1)))


def ti_name(ti: dict[str, Any]) -> str:
    """A task instance's name: its task id, with ``[map_index]`` when mapped."""
    index = ti.get("map_index", -1)
    return ti["task_id"] if index in (-1, None) else f"{ti['task_id']}[{index}]"


def wait_for_run(api: Api, dag_id: str, run_id: str, timeout: float) -> str:
    """Poll the run until it is final, printing each task state change; return the run state."""
    seen: dict[str, str | None] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for ti in task_instances(api, dag_id, run_id):
            name, state = ti_name(ti), ti.get("state")
            if state and seen.get(name) != state:
                seen[name] = state
                say(f"  {name:<24} {state}")
        state = api.json("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]
        if state in FINAL_RUN_STATES:
            say(f"run {run_id} finished: {state}")
            return str(state)
        time.sleep(1)
    say(f"run {run_id} did not finish within {timeout:.0f}s")
    return "timeout"


def xcom(api: Api, dag_id: str, run_id: str, task_id: str) -> Any:
    """Return the ``return_value`` XCom of a task, or None when there is none."""
    path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
    response = api.call("GET", path)
    return xcom_value(response.json()) if response.status_code == 200 else None


def xcom_value(entry: dict[str, Any]) -> Any:
    """The value of an XCom entry of the REST API (JSON text decoded, as Airflow 3 returns it)."""
    value = entry.get("value")
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def print_task_table(tis: list[dict[str, Any]]) -> None:
    """Print every task instance with its state and duration."""
    print("\nTask instances")
    print(f"  {'task':<26} {'state':<16} {'duration':>9}")
    for ti in tis:
        duration = ti.get("duration")
        shown = f"{duration:.1f}s" if isinstance(duration, int | float) else "-"
        print(f"  {ti_name(ti):<26} {ti.get('state') or '-':<16} {shown:>9}")


def print_summary(summary: dict[str, Any]) -> None:
    """Print the delivery summary returned by the sensor."""
    print("\nDelivery summary (XCom of the sensor)")
    outcomes = summary.get("outcomes") or {}
    for outcome, count in outcomes.items():
        print(f"  {outcome:<18} {count:>5}")
    print(f"  {'total':<18} {summary.get('total', '-'):>5}   all final: {summary.get('all_final')}")
    price = summary.get("price") or {}
    if price:
        print("  price              " + ", ".join(f"{amount} {cur}" for cur, amount in price.items()))
    failed = summary.get("failed") or []
    for item in failed[:20]:
        if isinstance(item, dict):
            detail = ", ".join(
                f"{k}={v}" for k, v in item.items() if k in ("to", "status", "error", "channel")
            )
        else:
            detail = str(item)
        print(f"  failed: {detail}")


def print_sandbox_stats(url: str) -> None:
    """Print what the sandbox received (requests per endpoint, destinations)."""
    try:
        stats = requests.get(f"{url}/_sandbox/stats", timeout=5).json()
    except (requests.RequestException, ValueError):
        return
    print("\nSandbox statistics")
    for key, value in stats.items():
        if isinstance(value, dict | list) and len(json.dumps(value)) > 200:
            value = f"{type(value).__name__} of {len(value)} items"
        print(f"  {key}: {value}")


def report(api: Api, dag_id: str, run_id: str, sandbox_url: str) -> None:
    """Print the task states, the branch taken and the delivery summary."""
    tis = task_instances(api, dag_id, run_id)
    print_task_table(tis)
    taken = [ti["task_id"] for ti in tis if ti["task_id"] in BRANCH_TASKS and ti.get("state") == "success"]
    print(f"\nBranch taken: {', '.join(taken) if taken else '(none)'}")
    summary = None
    for task_id in SUMMARY_TASKS:
        summary = xcom(api, dag_id, run_id, task_id)
        if isinstance(summary, dict) and "outcomes" in summary:
            break
    if isinstance(summary, dict):
        print_summary(summary)
    else:
        print("\n(no delivery summary in XCom)")
    print_sandbox_stats(sandbox_url)


def main(argv: list[str] | None = None) -> int:
    """Entry point; see the module docstring for the exit codes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--api", required=True, help="Airflow API base URL")
    parser.add_argument("--sandbox", required=True, help="sandbox base URL")
    parser.add_argument("--sandbox-key", required=True)
    parser.add_argument("--dag-id", default="omni_viber_sms_failover")
    parser.add_argument("--conf", default="{}", help="JSON conf of the DAG run (default: the DAG's params)")
    parser.add_argument("--timeout", type=float, default=150, help="seconds to wait for the run")
    parser.add_argument("--logs", type=Path, help="where the component logs are (printed on failure)")
    args = parser.parse_args(argv)

    api = Api(args.api)
    try:
        wait_for_sandbox(args.sandbox, 30)
        wait_for_airflow(api, 90)
        create_connection(api, args.sandbox, args.sandbox_key)
        wait_for_dag(api, args.dag_id, 60)
        run_id = trigger(api, args.dag_id, json.loads(args.conf))
    except (RuntimeError, TimeoutError, requests.RequestException) as exc:
        say(f"set-up failed: {exc}")
        if args.logs:
            say(f"component logs: {args.logs}")
        return 2
    state = wait_for_run(api, args.dag_id, run_id, args.timeout)
    report(api, args.dag_id, run_id, args.sandbox)
    if state != "success":
        print(f"\nThe run ended as {state!r}. Task logs: {args.api}/dags/{args.dag_id}/runs/{run_id}")
        return 1
    print(f"\nOpen the run in the UI: {args.api}/dags/{args.dag_id}/runs/{run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
