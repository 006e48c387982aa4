"""``make e2e-distributed``: the provider's promises on Airflow's distributed engine, with processes killed.

Starts, as separate processes on loopback (all under one temporary folder, removed at the end):
PostgreSQL (a private cluster, own port) as the metadata database, Redis as the Celery broker, the
OMNI sandbox with a per-request latency, and Airflow with the CeleryExecutor: api-server, scheduler,
dag-processor, two Celery workers and two triggerers. Then:

1. triggers ``omni_e2e_notifications`` (20,000 recipients in mapped batches, each batch sent in
   several requests and waited for by a deferrable sensor) and ``omni_viber_sms_failover``;
2. SIGKILLs one Celery worker (its whole process group, as an OOM kill or an eviction does) while
   one of its send tasks is between two requests: Airflow's heartbeat timeout must fail it and
   retry it on the other worker;
3. SIGKILLs the triggerer that holds deferred sensors: the other triggerer must take them over;
   restarts the killed worker and triggerer;
4. restarts PostgreSQL while sensors are deferred; an Airflow component that exits because of it
   is restarted, as systemd or Kubernetes would (the timeline names them);
5. checks the invariants from the sandbox's own records and Airflow's REST API, prints the
   recovery figures, stops everything and exits 1 when an invariant fails (2: the set-up failed).

The kill moments come from ``E2E_SEED`` (default 1): which worker and after how many accepted
requests of its send, which triggerer and how far into the wait, when PostgreSQL restarts.
Run by ``scripts/e2e_distributed.sh``; only the standard library, ``requests`` and the provider.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
from demo_run import ti_name, xcom_value  # scripts/, beside this file

from airflow_provider_omni.operators import _ids
from airflow_provider_omni.outcome import classify
from airflow_provider_omni.sandbox.server import SandboxAdminClient

if TYPE_CHECKING:
    from collections.abc import Callable

REPO = Path(__file__).resolve().parent.parent
E2E_DAG = "omni_e2e_notifications"
FAILOVER_DAG = "omni_viber_sms_failover"
SANDBOX_KEY = "e2e-sandbox-key"
NAMESPACE = "airflow"  # the connection's default send namespace
_T0 = time.monotonic()


def now() -> float:
    return time.monotonic() - _T0


def say(message: str) -> None:
    """Print one timeline line."""
    print(f"[e2e {now():6.1f}s] {message}", flush=True)


class SetupError(RuntimeError):
    """The environment did not come up (exit code 2)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- processes -----------------------------------------------------------------------------------


@dataclass
class Component:
    """One process (group) started here, with what a supervisor needs to restart it."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    supervised: bool = True
    popen: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    down_on_purpose: bool = False
    pgids: list[int] = field(default_factory=list)

    def start(self) -> None:
        handle = open(self.log, "ab")  # noqa: SIM115 (closed when the child exits; the child keeps it)
        self.popen = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        handle.close()
        self.pgids.append(self.popen.pid)
        self.down_on_purpose = False

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)


class Processes:
    """Every component, with a supervisor that restarts a supervised one that exited by itself."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.components: dict[str, Component] = {}
        self.pid_file = home / "pgids"
        self.supervisor_restarts: list[str] = []

    def add(self, component: Component, start: bool = True) -> Component:
        self.components[component.name] = component
        if start:
            component.start()
            self._note()
        return component

    def _note(self) -> None:
        pgids = sorted({p for c in self.components.values() for p in c.pgids})
        self.pid_file.write_text("".join(f"{p}\n" for p in pgids))

    def restart(self, name: str, why: str) -> None:
        component = self.components[name]
        component.restarts += 1
        component.start()
        self._note()
        say(f"{name} started again ({why}), pid {component.popen.pid if component.popen else '?'}")

    def supervise(self) -> None:
        """Restart every supervised component that exited without being stopped on purpose."""
        for component in self.components.values():
            if not component.supervised or component.down_on_purpose or component.popen is None:
                continue
            code = component.popen.poll()
            if code is None:
                continue
            component.kill()  # what is left of its group
            say(f"SUPERVISOR: {component.name} exited with code {code}; restarting it as systemd would")
            self.supervisor_restarts.append(component.name)
            self.restart(component.name, "supervisor")

    def stop_all(self) -> list[int]:
        """Stop Airflow first, then the sandbox and Redis, then PostgreSQL (fast shutdown): SIGTERM,
        up to 20 s, then SIGKILL (named); return the process groups still alive."""
        for component in self.components.values():
            component.down_on_purpose = True
        order = [
            [c for c in self.components.values() if c.name not in ("postgres", "redis", "sandbox")],
            [c for c in self.components.values() if c.name in ("redis", "sandbox")],
            [c for c in self.components.values() if c.name == "postgres"],
        ]
        for wave in order:
            groups = {c.name: c.popen.pid for c in wave if c.popen is not None}
            for component in wave:
                if component.name == "postgres" and component.alive():
                    self._fast_shutdown_postgres()
                elif component.popen is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(component.popen.pid, signal.SIGTERM)  # the leader first, as systemd
            started = time.monotonic()
            signalled_groups = False
            while time.monotonic() - started < 20 and any(_group_alive(p) for p in groups.values()):
                if not signalled_groups and time.monotonic() - started > 3:
                    for name, pgid in groups.items():  # then whatever is left of each group
                        if name != "postgres":
                            with contextlib.suppress(ProcessLookupError):
                                os.killpg(pgid, signal.SIGTERM)
                    signalled_groups = True
                time.sleep(0.2)
            for name, pgid in groups.items():
                if _group_alive(pgid):
                    say(f"{name} did not stop within 20 s of SIGTERM: SIGKILL")
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pgid, signal.SIGKILL)
        time.sleep(0.3)
        for component in self.components.values():
            if component.popen is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    component.popen.wait(timeout=5)
        groups_ever = sorted({p for c in self.components.values() for p in c.pgids})
        return [p for p in groups_ever if _group_alive(p)]

    def _fast_shutdown_postgres(self) -> None:
        pid_file = self.home / "pg" / "data" / "postmaster.pid"
        try:
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)
        except (OSError, ValueError, IndexError):
            self.components["postgres"].kill(signal.SIGTERM)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie leader of our own counts as gone
    try:
        with open(f"/proc/{pgid}/stat") as handle:  # "pid (comm, may hold spaces) state ..."
            state = handle.read().rsplit(")", 1)[1].split()[0]
        return state != "Z" or _other_members(pgid)
    except (OSError, IndexError):
        return _other_members(pgid)


def _other_members(pgid: int) -> bool:
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == pgid:
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


# -- PostgreSQL ----------------------------------------------------------------------------------


def pg_bin(name: str) -> str:
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]))
    if candidates:
        return str(candidates[-1])
    found = shutil.which(name)
    if not found:
        raise SetupError(f"PostgreSQL's {name} is not installed (apt-get install postgresql)")
    return found


class Postgres:
    """A private cluster in ``root`` on ``port`` (run as the ``postgres`` user when we are root)."""

    def __init__(self, root: Path, port: int, processes: Processes) -> None:
        self.root, self.port, self.processes = root, port, processes
        self.data = root / "data"
        self.sock = root / "sock"
        self.as_root = os.geteuid() == 0

    def _argv(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv] if self.as_root else argv

    def init(self) -> None:
        self.root.mkdir()
        self.sock.mkdir()
        if self.as_root:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.sock, "postgres")
        subprocess.run(
            self._argv(
                [pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8"]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        argv = self._argv(
            [
                pg_bin("postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-k",
                str(self.sock),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=300",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        )
        self.component = self.processes.add(
            Component("postgres", argv, dict(os.environ), self.root.parent / "logs" / "postgres.log", False)
        )
        self.wait_ready(30)
        self.psql("CREATE ROLE airflow LOGIN")
        self.psql("CREATE DATABASE airflow OWNER airflow")

    def psql(self, sql: str) -> None:
        argv = [shutil.which("psql") or "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        subprocess.run([*argv, "-q", "-c", sql], check=True, stdout=subprocess.DEVNULL)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
                probe = subprocess.run(
                    [pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                if probe.returncode == 0:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise SetupError("PostgreSQL did not accept connections")

    def restart(self, down_for: float, tick: Callable[[], None]) -> float:
        """Fast shutdown of the postmaster, ``down_for`` s down, start again; return the down time."""
        component = self.component
        component.down_on_purpose = True
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        started = time.monotonic()
        os.kill(postmaster, signal.SIGINT)
        assert component.popen is not None
        while component.popen.poll() is None:
            tick()
            time.sleep(0.1)
            if time.monotonic() - started > 30:
                component.kill()
        say("PostgreSQL is down (fast shutdown: every connection was closed)")
        while time.monotonic() - started < down_for:
            tick()
            time.sleep(0.2)
        self.processes.restart("postgres", "planned restart")
        self.wait_ready(30)
        down = time.monotonic() - started
        say(f"PostgreSQL accepts connections again, after {down:.1f}s down")
        return down


# -- Airflow REST ----------------------------------------------------------------------------------


class Api:
    """A tiny client of Airflow's REST API; calls return None on connection errors and 5xx."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.session = requests.Session()

    def get(self, path: str, **params: Any) -> Any:
        try:
            response = self.session.get(f"{self.base}{path}", params=params, timeout=10)
        except requests.RequestException:
            return None
        if response.status_code >= 400:
            return None
        return response.json()

    def send(self, method: str, path: str, body: Any) -> requests.Response:
        return self.session.request(method, f"{self.base}{path}", json=body, timeout=30)

    def tis(self, dag_id: str, run_id: str) -> list[dict[str, Any]] | None:
        body = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=100)
        return None if body is None else list(body.get("task_instances", []))

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        body = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        return None if body is None else body.get("state")

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
        body = self.get(path, map_index=map_index, deserialize=True)
        return None if body is None else xcom_value(body)


# -- the scenario -----------------------------------------------------------------------------------


@dataclass
class Figures:
    """Recovery figures for the final report."""

    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


class Scenario:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.logs = work / "logs"
        self.logs.mkdir(parents=True)
        self.rng = random.Random(args.seed)
        self.processes = Processes(work)
        self.figures = Figures()
        self.api_port = free_port()
        self.sandbox_port = free_port()
        self.redis_port = free_port()
        self.pg_port = free_port()
        self.api = Api(f"http://127.0.0.1:{self.api_port}")
        self.sandbox = f"http://127.0.0.1:{self.sandbox_port}"
        self.record_file = self.logs / "sandbox-report-reads.log"
        self.run_ids: dict[str, str] = {}
        self.ti_states: dict[str, str] = {}
        self.batches: list[list[str]] = []
        self.keys: dict[str, int] = {}  # send key -> map index

    # -- set-up

    def env(self, hostname: str) -> dict[str, str]:
        env = dict(self.base_env)
        env["E2E_HOSTNAME"] = hostname
        return env

    def prepare(self) -> None:
        args = self.args
        bindir = Path(sys.executable).parent
        py = self.work / "py"
        py.mkdir()
        (py / "e2e_hostname.py").write_text(
            "import os\n\n\ndef hostname():\n    return os.environ.get('E2E_HOSTNAME', 'e2e')\n"
        )
        dags = self.work / "dags"
        dags.mkdir()
        shutil.copy(REPO / "scripts" / "e2e_dags" / "omni_e2e_notifications.py", dags)
        shutil.copy(REPO / "example_dags" / "omni_viber_sms_failover.py", dags)
        db = f"postgresql+psycopg2://airflow@127.0.0.1:{self.pg_port}/airflow"
        self.base_env = {
            **os.environ,
            "PATH": f"{bindir}:{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(py),
            "AIRFLOW_HOME": str(self.work / "airflow"),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_PRE_PING": "True",
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://airflow@127.0.0.1:{self.pg_port}/airflow",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(args.worker_concurrency),
            "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__PARALLELISM": "16",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "e2e_hostname.hostname",
            "AIRFLOW__CORE__FERNET_KEY": "",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.api_port}",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            # Crash recovery, short for this run (production: see README "Running at scale").
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(args.heartbeat_timeout),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
            # A Celery task whose message was lost (e.g. the worker took it while PostgreSQL, the Celery
            # result backend, was down) stays queued until this timeout requeues it (default 600 s).
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": str(args.queued_timeout),
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "5",
            # ... but only the tasks its own scheduler queued: those queued by a scheduler that died
            # (PostgreSQL restart) wait for the orphan check (default every 300 s, once the dead
            # scheduler's heartbeat is older than scheduler_health_check_threshold, default 30 s).
            "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "15",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": str(args.triggerer_threshold),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
            "E2E_BULK_SIZE": str(args.bulk_size),
            "E2E_MAX_IN_FLIGHT": "1",
            "E2E_VALIDITY_MINUTES": str(args.validity_minutes),
        }
        self.base_env.pop("AIRFLOW_CONN_OMNI_DEFAULT", None)
        # recipients: every persona of the sandbox (last digit) in every batch
        numbers = [f"4179{3000000 + i:07d}" for i in range(args.recipients)]
        self.rng.shuffle(numbers)
        self.recipients_file = self.work / "recipients.csv"
        with self.recipients_file.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["phone_number"])
            writer.writerows([n] for n in numbers)
        self.batches = [numbers[i : i + args.batch_size] for i in range(0, len(numbers), args.batch_size)]

    def airflow(self, name: str, *argv: str) -> Component:
        bindir = Path(sys.executable).parent
        return self.processes.add(
            Component(name, [str(bindir / "airflow"), *argv], self.env(name), self.logs / f"{name}.log")
        )

    def start(self) -> None:
        args = self.args
        bindir = Path(sys.executable).parent
        say(
            f"seed {args.seed}; work folder {self.work}; PostgreSQL :{self.pg_port},"
            f" Redis :{self.redis_port}, sandbox :{self.sandbox_port}, Airflow :{self.api_port}"
        )
        self.processes.add(
            Component(
                "sandbox",
                [
                    sys.executable,
                    str(REPO / "scripts" / "e2e_sandbox.py"),
                    "--record",
                    str(self.record_file),
                    "--port",
                    str(self.sandbox_port),
                    "--api-key",
                    SANDBOX_KEY,
                    "--time-scale",
                    str(args.time_scale),
                    "--latency",
                    str(args.latency),
                    "--latency-per-destination",
                    str(args.latency_per_destination),
                    "--log-level",
                    "warning",
                ],
                dict(os.environ),
                self.logs / "sandbox.log",
                supervised=False,
            )
        )
        say(
            f"OMNI sandbox: latency {args.latency}s + {args.latency_per_destination}s per destination"
            f" (a request of {args.bulk_size}:"
            f" {args.latency + args.bulk_size * args.latency_per_destination:.2f}s),"
            f" time x{args.time_scale}"
        )
        redis = shutil.which("redis-server") or "/usr/bin/redis-server"
        (self.work / "redis").mkdir()
        self.processes.add(
            Component(
                "redis",
                [
                    redis,
                    "--port",
                    str(self.redis_port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.work / "redis"),
                ],
                dict(os.environ),
                self.logs / "redis.log",
                supervised=False,
            )
        )
        self.pg = Postgres(self.work / "pg", self.pg_port, self.processes)
        started = time.monotonic()
        self.pg.init()
        say(f"PostgreSQL cluster created and started ({time.monotonic() - started:.1f}s); Redis started")
        started = time.monotonic()
        migrate = subprocess.run(
            [str(bindir / "airflow"), "db", "migrate"],
            env=self.env("migrate"),
            stdout=(self.logs / "db-migrate.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        if migrate.returncode != 0:
            raise SetupError(f"airflow db migrate failed (see {self.logs / 'db-migrate.log'})")
        say(f"airflow db migrate on PostgreSQL: {time.monotonic() - started:.1f}s")
        self.airflow("api-server", "api-server", "--host", "127.0.0.1", "--port", str(self.api_port))
        self.airflow("scheduler", "scheduler")
        self.airflow("dag-processor", "dag-processor")
        for n in (1, 2):
            self.airflow(
                f"worker-{n}",
                "celery",
                "worker",
                "--concurrency",
                str(args.worker_concurrency),
                "--celery-hostname",
                f"worker-{n}@e2e",
                "--skip-serve-logs",
            )
        for n in (1, 2):
            self.airflow(f"triggerer-{n}", "triggerer", "--skip-serve-logs")
        say("started api-server, scheduler, dag-processor, worker-1, worker-2, triggerer-1, triggerer-2")
        self.wait_for("Airflow healthy, both triggerers and both workers up", self.healthy, 180)

    def tick(self) -> None:
        self.processes.supervise()

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.tick()
            result = check()
            if result:
                return result
            time.sleep(interval)
        raise SetupError(f"timed out waiting for: {what}")

    def healthy(self) -> bool:
        body = self.api.get("/api/v2/monitor/health")
        if not body:
            return False
        if not all((body.get(c) or {}).get("status") == "healthy" for c in ("metadatabase", "scheduler")):
            return False
        jobs = self.api.get("/api/v2/jobs", job_type="TriggererJob", is_alive=True, limit=50) or {}
        triggerers = {j.get("hostname") for j in jobs.get("jobs", [])}
        workers = all("ready." in (self.logs / f"worker-{n}.log").read_text(errors="replace") for n in (1, 2))
        ok = {"triggerer-1", "triggerer-2"} <= triggerers and workers
        if ok:
            say("Airflow healthy: api-server, scheduler, dag-processor; triggerer-1 and -2; worker-1 and -2")
        return ok

    def create_connection(self) -> None:
        body = {
            "connection_id": "omni_default",
            "conn_type": "infobip_omni",
            "host": self.sandbox,
            "password": SANDBOX_KEY,
            "extra": json.dumps({"auth_type": "api_key", "connect_timeout": 5, "read_timeout": 30}),
        }
        response = self.api.send("POST", "/api/v2/connections", body)
        if response.status_code >= 400:
            raise SetupError(f"creating the connection failed: {response.status_code} {response.text[:300]}")

    def trigger(self) -> None:
        for dag_id in (E2E_DAG, FAILOVER_DAG):
            self.wait_for(
                f"DAG {dag_id} parsed", functools.partial(self.api.get, f"/api/v2/dags/{dag_id}"), 120
            )
        for dag_id, conf in (
            (E2E_DAG, {"recipients_file": str(self.recipients_file), "batch_size": self.args.batch_size}),
            (FAILOVER_DAG, {}),
        ):
            self.api.send("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
            response = self.api.send(
                "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf}
            )
            if response.status_code >= 400:
                raise SetupError(f"triggering {dag_id}: {response.status_code} {response.text[:300]}")
            self.run_ids[dag_id] = response.json()["dag_run_id"]
        say(
            f"triggered {E2E_DAG} ({self.args.recipients:,} recipients, {len(self.batches)} batches of"
            f" {self.args.batch_size:,}, requests of {self.args.bulk_size}) and {FAILOVER_DAG}"
        )
        run_id = self.run_ids[E2E_DAG]
        for index in range(len(self.batches)):
            key = _ids.send_key(
                namespace=NAMESPACE, dag_id=E2E_DAG, task_id="send_batch", run_id=run_id, map_index=index
            )
            self.keys[key] = index

    # -- observation

    def poll_tis(self) -> list[dict[str, Any]]:
        """Read both runs' task instances and print every state change."""
        result: list[dict[str, Any]] = []
        for dag_id, run_id in self.run_ids.items():
            tis = self.api.tis(dag_id, run_id)
            if tis is None:
                continue
            for ti in tis:
                ti["dag_id"] = dag_id
                name = f"{'' if dag_id == E2E_DAG else 'failover.'}{ti_name(ti)}"
                state = ti.get("state") or "none"
                where = ti.get("hostname") or ""
                if self.ti_states.get(name) != f"{state}@{where}" and state not in ("none", "scheduled"):
                    if not (name.startswith("wait_for_batch") and state in ("queued", "running")):
                        say(f"  {name:<34} {state}{f' on {where}' if where and state == 'running' else ''}")
                    self.ti_states[name] = f"{state}@{where}"
                result.append(ti)
        return result

    def sandbox_sends(self) -> list[dict[str, Any]]:
        try:
            return SandboxAdminClient(self.sandbox).sends()
        except (requests.RequestException, ValueError, KeyError):
            return []

    def accepted_bulks(self) -> dict[int, list[dict[str, Any]]]:
        """Accepted requests per batch (map index), from the sandbox's records."""
        per: dict[int, list[dict[str, Any]]] = {}
        for send in self.sandbox_sends():
            # a bulk sent again after its first request was found "not sent" carries ".r2": it is
            # one of the batch's requests all the same (a seed-7 run once missed 250 truths without it)
            key = _ids.send_key_of(str(send.get("bulk_id") or ""))
            if send.get("status") == 200 and key in self.keys:
                per.setdefault(self.keys[key], []).append(send)
        return per

    def bulks_per_batch(self, index: int) -> int:
        return -(-len(self.batches[index]) // self.args.bulk_size)

    # -- phase 1: a worker killed between two requests of its send

    def kill_worker(self) -> None:
        prefer = f"worker-{self.rng.choice((1, 2))}"
        wanted_min = self.rng.randint(1, max(1, self.bulks_per_batch(0) - 2))
        say(f"PLAN: SIGKILL {prefer} once one of its sends has >= {wanted_min} request(s) accepted, not all")
        deadline = time.monotonic() + self.args.phase_timeout
        target: tuple[dict[str, Any], int] | None = None
        last_tis: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            self.tick()
            tis = self.poll_tis()
            last_tis = tis
            accepted = self.accepted_bulks()
            running = [
                ti
                for ti in tis
                if ti["task_id"] == "send_batch"
                and ti.get("state") == "running"
                and ti.get("dag_id") == E2E_DAG
            ]
            candidates = []  # (task instance, accepted requests, as planned)
            for ti in running:
                index = int(ti["map_index"])
                done = len(accepted.get(index, []))
                if 1 <= done < self.bulks_per_batch(index):
                    candidates.append((ti, done, done >= wanted_min))
            chosen = [(t, d) for t, d, planned in candidates if planned and t.get("hostname") == prefer]
            sends_left = any(
                ti["task_id"] == "send_batch" and ti.get("state") in (None, "scheduled", "queued")
                for ti in tis
                if ti.get("dag_id") == E2E_DAG
            )
            if not chosen and candidates and not sends_left:
                # the last sends are under way: take any of them between two requests
                chosen = [(t, d) for t, d, _ in candidates]
            if chosen:
                target = chosen[0]
                break
            time.sleep(0.05)
        if target is None:
            raise SetupError("no send task was ever between two requests: nothing to interrupt")
        ti, done = target
        worker = str(ti["hostname"])
        index = int(ti["map_index"])
        component = self.processes.components[worker]
        component.down_on_purpose = True
        component.kill(signal.SIGKILL)
        killed_at = time.monotonic()
        total = self.bulks_per_batch(index)
        say(
            f"KILL: SIGKILL {worker} (its whole process group: Celery, the task supervisor, the task)"
            f" while send_batch[{index}] had {done} of {total} requests accepted"
        )
        time.sleep(1.0)
        after = len(self.accepted_bulks().get(index, []))
        say(f"  sandbox: send_batch[{index}] has {after} of {total} requests accepted after the kill")
        if after > done:
            say(
                f"  ({after - done} request(s) in flight at the kill were accepted, their answers lost:"
                " the retry must find them in the task state store and the logs, not send them again)"
            )
        if after >= total:
            self.figures.failures.append(
                f"the kill of {worker} came too late: send_batch[{index}] was complete"
            )
        # every task instance that was running on the killed worker: detection, retry, success
        other = "worker-2" if worker == "worker-1" else "worker-1"
        victims = {
            (t["dag_id"], t["task_id"], t.get("map_index")): int(t.get("try_number") or 1)
            for t in last_tis
            if t.get("state") == "running" and t.get("hostname") == worker
        }
        say(f"  task instances running on {worker} at the kill: {', '.join(_name(v) for v in victims)}")
        marks: dict[tuple[Any, ...], dict[str, float]] = {v: {} for v in victims}
        while time.monotonic() - killed_at < self.args.phase_timeout:
            self.tick()
            for current in self.poll_tis():
                ident = (current["dag_id"], current["task_id"], current.get("map_index"))
                if ident not in victims:
                    continue
                mark, first_try = marks[ident], victims[ident]
                state, number = current.get("state"), int(current.get("try_number") or 1)
                elapsed = time.monotonic() - killed_at
                if "detected" not in mark and (state in ("failed", "up_for_retry") or number > first_try):
                    mark["detected"] = elapsed
                    say(
                        f"  Airflow marked {_name(ident)} {state} (heartbeat timeout)"
                        f" {elapsed:.1f}s after the kill"
                    )
                if (
                    "retried" not in mark
                    and number > first_try
                    and state in ("running", "deferred", "success")
                ):
                    mark["retried"] = elapsed
                    host = current.get("hostname")
                    say(f"  {_name(ident)} try {number} runs on {host} {elapsed:.1f}s after the kill")
                    if host != other:
                        self.figures.failures.append(f"{_name(ident)} was retried on {host}, not on {other}")
                if "done" not in mark and number > first_try and state in ("success", "deferred"):
                    mark["done"] = elapsed
                if state == "failed" and "failed" not in mark:
                    mark["failed"] = elapsed
                    self.figures.failures.append(f"{_name(ident)} failed for good after the worker kill")
            if all("done" in m or "failed" in m for m in marks.values()):
                break
            time.sleep(0.3)
        sends = self.accepted_bulks().get(index, [])
        final = len(sends)
        again = [send for send in sends if re.search(r"\.r\d+$", str(send["bulk_id"]))]
        say(
            f"  sandbox: send_batch[{index}] now has {final} requests of {total}; the retry sent"
            f" {final - after} (what the killed try had not)"
            + (f", {len(again)} of them a bulk in doubt sent again under a new id" if again else "")
        )
        if final != total:
            self.figures.failures.append(f"send_batch[{index}] has {final} accepted requests of {total}")
        for ident, mark in marks.items():
            self.figures.lines.append(
                f"worker kill ({worker}): {_name(ident)}"
                + (f" (killed at {done}/{total} requests)" if ident == (E2E_DAG, "send_batch", index) else "")
                + f": failure detected {_s(mark.get('detected'))}, retry running on {other}"
                f" {_s(mark.get('retried'))}, done {_s(mark.get('done'))} after the kill"
            )
            if "done" not in mark:
                self.figures.failures.append(
                    f"{_name(ident)} was not retried to success after the worker kill"
                )
        self.killed_worker = worker

    # -- phase 2: a triggerer killed mid-wait

    def deferred_sensors(self, tis: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            ti
            for ti in tis
            if ti.get("state") == "deferred" and (ti.get("trigger") or {}).get("triggerer_id") is not None
        ]

    def triggerer_ids(self) -> dict[int, str]:
        body = self.api.get("/api/v2/jobs", job_type="TriggererJob", limit=100) or {}
        return {int(j["id"]): str(j.get("hostname")) for j in body.get("jobs", [])}

    def kill_triggerer(self) -> None:
        delay = self.rng.uniform(1.0, 8.0)
        say(f"PLAN: SIGKILL a triggerer holding deferred sensors (seeded pick), {delay:.1f}s into the wait")
        first = self.wait_for(
            "deferred sensors", lambda: self.deferred_sensors(self.poll_tis()), self.args.phase_timeout, 0.3
        )
        say(f"  {len(first)} sensor(s) deferred")
        end = time.monotonic() + delay
        while time.monotonic() < end:
            self.tick()
            self.poll_tis()
            time.sleep(0.3)

        def holding() -> tuple[list[dict[str, Any]], dict[int, str], Counter[str]] | None:
            deferred = self.deferred_sensors(self.poll_tis())
            jobs = self.triggerer_ids()
            holders = Counter(jobs.get(int(ti["trigger"]["triggerer_id"]), "?") for ti in deferred)
            holders.pop("?", None)
            return (deferred, jobs, holders) if holders else None

        deferred, jobs, holders = self.wait_for("a triggerer holding sensors", holding, 60, 0.3)
        say(f"  deferred sensors per triggerer: {dict(holders)}")
        victim = self.rng.choice(sorted(holders))
        held = {
            (ti["dag_id"], ti["task_id"], ti.get("map_index"))
            for ti in deferred
            if jobs.get(int(ti["trigger"]["triggerer_id"])) == victim
        }
        component = self.processes.components[victim]
        component.down_on_purpose = True
        component.kill(signal.SIGKILL)
        killed_at = time.monotonic()
        say(f"KILL: SIGKILL {victim} (process group) while it held {len(held)} deferred sensor(s)")
        victim_ids = {i for i, h in jobs.items() if h == victim}
        taken: float | None = None
        while time.monotonic() - killed_at < self.args.phase_timeout:
            self.tick()
            tis = self.poll_tis()
            jobs = self.triggerer_ids()
            waiting = []
            for ti in tis:
                if (ti["dag_id"], ti["task_id"], ti.get("map_index")) not in held:
                    continue
                if ti.get("state") != "deferred":
                    continue  # finished (an event of the new triggerer, or before the kill)
                owner = (ti.get("trigger") or {}).get("triggerer_id")
                if owner is None or int(owner) in victim_ids or jobs.get(int(owner)) == victim:
                    waiting.append(ti)
            if not waiting:
                taken = time.monotonic() - killed_at
                break
            time.sleep(0.3)
        if taken is None:
            self.figures.failures.append(f"the sensors of {victim} were not taken over")
        else:
            survivor = "triggerer-2" if victim == "triggerer-1" else "triggerer-1"
            say(f"  {survivor} took over the {len(held)} sensor(s) of {victim} {taken:.1f}s after the kill")
        self.figures.lines.append(
            f"triggerer kill ({victim}, {len(held)} deferred sensors): taken over {_s(taken)} after the kill"
            f" (threshold {self.args.triggerer_threshold}s)"
        )
        self.killed_triggerer = victim

    # -- phase 3: restarts and PostgreSQL

    def restart_killed(self) -> None:
        self.processes.restart(self.killed_worker, "after the kill")
        self.processes.restart(self.killed_triggerer, "after the kill")

    def restart_postgres(self) -> None:
        delay = self.rng.uniform(0.5, 4.0)
        end = time.monotonic() + delay
        while time.monotonic() < end:
            self.tick()
            self.poll_tis()
            time.sleep(0.3)
        deferred = self.deferred_sensors(self.poll_tis())
        if not deferred:
            self.figures.failures.append("no sensor was deferred when PostgreSQL was to restart")
        say(f"RESTART: PostgreSQL (fast shutdown, {len(deferred)} sensor(s) deferred)")
        restarts_before = len(self.processes.supervisor_restarts)
        down = self.pg.restart(self.rng.uniform(2.0, 5.0), self.tick)
        self.pg_restart_at = time.monotonic()
        self.figures.lines.append(f"PostgreSQL restart: {down:.1f}s down")
        self._restarts_before = restarts_before

    def wait_for_runs(self) -> dict[str, str]:
        states: dict[str, str] = {}
        deadline = time.monotonic() + self.args.run_timeout
        while time.monotonic() < deadline and len(states) < len(self.run_ids):
            self.tick()
            self.poll_tis()
            for dag_id, run_id in self.run_ids.items():
                state = self.api.run_state(dag_id, run_id)
                if state in ("success", "failed") and dag_id not in states:
                    states[dag_id] = state
                    say(f"run of {dag_id}: {state}")
            time.sleep(1)
        if len(states) < len(self.run_ids):
            for ti in self.poll_tis():
                if ti.get("state") not in ("success", "skipped"):
                    say(
                        f"  unfinished: {ti['dag_id']} {ti_name(ti)} {ti.get('state')}"
                        f" try {ti.get('try_number')} on {ti.get('hostname') or '-'}"
                    )
        for line in self.scheduler_events():
            self.figures.lines.append(f"scheduler: {line}")
        after = self.processes.supervisor_restarts[getattr(self, "_restarts_before", 0) :]
        self.figures.lines.append(
            "components restarted by the supervisor after the PostgreSQL restart: "
            + (", ".join(after) if after else "none (every component reconnected by itself)")
        )
        return states

    def scheduler_events(self) -> list[str]:
        """What the scheduler logged about tasks it adopted or requeued (after a restart, an outage)."""
        events = []
        lines = (self.logs / "scheduler.log").read_text(errors="replace").splitlines()
        for number, line in enumerate(lines):
            if "Task stuck in queued; will try to requeue" in line:
                events.append(f"requeued (stuck in queued): {', '.join(_tis_in(line))}")
            elif "stuck in queued tries exceeded" in line:
                events.append(f"failed (stuck in queued too often): {', '.join(_tis_in(line))}")
            elif "Adopted the following" in line or "orphaned TaskInstances" in line:
                adopted = []
                for follow in lines[number + 1 :]:
                    if not follow.startswith(("\t", " ")):
                        break
                    adopted += _tis_in(follow)
                what = "adopted" if "Adopted" in line else "reset (to be queued again)"
                events.append(f"{what} from a dead scheduler: {', '.join(adopted)}")
        return events

    # -- invariants

    def omni_logs(self, bulk_id: str) -> list[dict[str, Any]]:
        headers = {"Authorization": f"App {SANDBOX_KEY}"}
        rows: list[dict[str, Any]] = []
        for _ in range(20):
            response = requests.get(
                f"{self.sandbox}/omni/1/logs",
                params={"bulkId": bulk_id, "limit": "1000"},
                headers=headers,
                timeout=30,
            )
            if response.status_code == 429:
                time.sleep(float(response.headers.get("Retry-After") or 2))
                continue
            response.raise_for_status()
            rows = list(response.json().get("results", []))
            break
        return rows

    def check(self, states: dict[str, str]) -> list[str]:
        failures = list(self.figures.failures)
        ok: list[str] = []

        def expect(condition: bool, text: str) -> None:
            (ok if condition else failures).append(text)

        stats = SandboxAdminClient(self.sandbox).stats()
        expected_total = self.args.recipients + len(_failover_recipients())
        duplicates = stats.get("duplicate_message_ids") or {}
        expect(
            not duplicates, f"no destination sent twice (sandbox duplicate_message_ids: {len(duplicates)})"
        )
        expect(
            stats.get("distinct_message_ids") == expected_total == stats.get("destinations"),
            f"destinations accepted {stats.get('destinations')},"
            f" distinct {stats.get('distinct_message_ids')}, expected {expected_total}",
        )
        # every batch: the message ids the sandbox logged are exactly those of its numbers
        accepted = self.accepted_bulks()
        run_id = self.run_ids[E2E_DAG]
        lost = extra = wrong = 0
        truth_total: Counter[str] = Counter()
        bulk_ids = [str(send["bulk_id"]) for sends in accepted.values() for send in sends]
        with ThreadPoolExecutor(8) as pool:
            logs = dict(zip(bulk_ids, pool.map(self.omni_logs, bulk_ids), strict=True))
        lost_outcomes = 0
        for key, index in sorted(self.keys.items(), key=lambda kv: kv[1]):
            numbers = self.batches[index]
            expected_ids = set(_ids.phone_message_ids(key, numbers))
            rows: list[dict[str, Any]] = []
            for send in accepted.get(index, []):
                rows += logs[str(send["bulk_id"])]
            seen = Counter(str(r.get("messageId")) for r in rows)
            lost += len(expected_ids - set(seen))
            extra += len(set(seen) - expected_ids) + sum(c - 1 for c in seen.values() if c > 1)
            truth = Counter(str(classify(r.get("channel"), r.get("status"))) for r in rows)
            truth_total.update(truth)
            summary = self.api.xcom(E2E_DAG, run_id, "wait_for_batch", index) or {}
            got = {k: v for k, v in (summary.get("outcomes") or {}).items() if v}
            lost_outcomes += sum(max(count - got.get(name, 0), 0) for name, count in truth.items())
            if got != dict(truth):
                wrong += 1
                failures.append(f"wait_for_batch[{index}] summary {got} != sandbox truth {dict(truth)}")
        expect(lost == 0, f"lost destinations (never accepted): {lost}")
        expect(extra == 0, f"unexpected or repeated message ids in the sandbox logs: {extra}")
        expect(
            wrong == 0,
            f"sensor summaries equal to the sandbox's truth: {len(self.keys) - wrong}/{len(self.keys)}",
        )
        self.truth_total = truth_total
        # the failover DAG: its summary and its branch
        fo_run = self.run_ids[FAILOVER_DAG]
        summary = self.api.xcom(FAILOVER_DAG, fo_run, "wait_for_delivery") or {}
        fo_send = self.api.xcom(FAILOVER_DAG, fo_run, "send_viber_with_sms_fallback") or {}
        rows = []
        for bulk in _bulk_ids_of(fo_send):
            rows += self.omni_logs(bulk)
        truth = Counter(str(classify(r.get("channel"), r.get("status"))) for r in rows)
        got = {k: v for k, v in (summary.get("outcomes") or {}).items() if v}
        expect(
            got == dict(truth) and bool(rows),
            f"{FAILOVER_DAG} summary {got} equals the sandbox's truth {dict(truth)}",
        )
        expected_branch = (
            "some_failed"
            if truth.get("FAILED")
            else "some_by_sms_fallback"
            if truth.get("SMS_DELIVERED")
            else "all_on_viber"
        )
        tis = self.api.tis(FAILOVER_DAG, fo_run) or []
        taken = sorted(
            t["task_id"]
            for t in tis
            if t["task_id"] in ("all_on_viber", "some_by_sms_fallback", "some_failed")
            and t.get("state") == "success"
        )
        expect(
            taken == [expected_branch], f"{FAILOVER_DAG} branch taken {taken}, expected [{expected_branch}]"
        )
        for dag_id in self.run_ids:
            expect(states.get(dag_id) == "success", f"run of {dag_id}: {states.get(dag_id, 'not finished')}")
        check = self.api.xcom(E2E_DAG, run_id, "check_delivery") or {}
        expect(check.get("total") == self.args.recipients, f"check_delivery total {check.get('total')}")
        # report reads: always filtered by bulk or message
        unfiltered = reads = 0
        for line in self.record_file.read_text().splitlines():
            _, target, _status = line.split(" ")
            if not target.startswith("/omni/1/reports"):
                continue
            reads += 1
            if "bulkId=" not in target and "messageId=" not in target:
                unfiltered += 1
        expect(unfiltered == 0, f"report requests without a bulkId/messageId filter: {unfiltered} of {reads}")
        self.report_reads = reads
        self.ok = ok
        self.lost, self.duplicates, self.lost_outcomes = lost, len(duplicates) + extra, lost_outcomes
        return failures


_TI_REPR = re.compile(r"<TaskInstance: (\S+?)\.(\S+) \S+(?: map_index=(\d+))? \[(\w+)\]")


def _tis_in(line: str) -> list[str]:
    """Short names of the ``<TaskInstance: ...>`` in a log line."""
    return [
        _name((dag, task, int(index) if index else -1)) + f" [{state}]"
        for dag, task, index, state in _TI_REPR.findall(line)
    ]


def _name(ident: tuple[Any, ...]) -> str:
    dag_id, task_id, index = ident
    where = "" if dag_id == E2E_DAG else "failover."
    return f"{where}{task_id}" if index in (-1, None) else f"{where}{task_id}[{index}]"


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f}s"


def _failover_recipients() -> list[str]:
    sys.path.insert(0, str(REPO / "example_dags"))
    try:
        from omni_viber_sms_failover import DEFAULT_RECIPIENTS  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    return list(DEFAULT_RECIPIENTS)


def _bulk_ids_of(send_result: Any) -> list[str]:
    bulks = send_result.get("bulks") if isinstance(send_result, dict) else None
    if isinstance(bulks, list):
        return [str(b.get("bulk_id") or b.get("bulkId")) for b in bulks if isinstance(b, dict)]
    if isinstance(bulks, dict):
        return [str(b) for b in bulks]
    bulk = send_result.get("bulk_id") if isinstance(send_result, dict) else None
    return [str(bulk)] if bulk else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--work", type=Path, required=True, help="empty temporary folder (removed by the caller)"
    )
    parser.add_argument("--seed", type=int, default=int(os.environ.get("E2E_SEED", "1")))
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=2_500)
    parser.add_argument("--bulk-size", type=int, default=250)
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument("--latency", type=float, default=0.2, help="sandbox seconds per request")
    parser.add_argument("--latency-per-destination", type=float, default=0.0004)
    parser.add_argument("--time-scale", type=float, default=6.0)
    parser.add_argument("--validity-minutes", type=int, default=5)
    parser.add_argument("--heartbeat-timeout", type=int, default=20)
    parser.add_argument("--triggerer-threshold", type=int, default=10)
    parser.add_argument("--queued-timeout", type=int, default=60)
    parser.add_argument("--phase-timeout", type=float, default=150)
    parser.add_argument("--run-timeout", type=float, default=300)
    args = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the clean-up below runs
    scenario = Scenario(args, args.work)
    code = 0
    stopped_cleanly = True
    try:
        scenario.prepare()
        scenario.start()
        scenario.create_connection()
        scenario.trigger()
        scenario.kill_worker()
        scenario.kill_triggerer()
        scenario.restart_killed()
        scenario.restart_postgres()
        states = scenario.wait_for_runs()
        failures = scenario.check(states)
        print("\nRecovery")
        for line in scenario.figures.lines:
            print(f"  {line}")
        print(
            f"  duplicates: {scenario.duplicates}   lost destinations: {scenario.lost}"
            f"   lost outcomes: {scenario.lost_outcomes}"
        )
        print(f"  outcomes (sandbox truth, {E2E_DAG}): {dict(scenario.truth_total)}")
        print(f"  report reads: {scenario.report_reads}, all filtered by bulkId or messageId")
        print("\nInvariants")
        for line in scenario.ok:
            print(f"  OK    {line}")
        for line in failures:
            print(f"  FAIL  {line}")
        code = 1 if failures else 0
    except SetupError as exc:
        say(f"SET-UP FAILED: {exc} (logs: {scenario.logs})")
        code = 2
    except Exception as exc:  # the tail of the logs helps more than a bare traceback
        say(f"ERROR: {type(exc).__name__}: {exc}")
        code = 2
        raise
    finally:
        say("stopping every process")
        left = scenario.processes.stop_all()
        stopped_cleanly = not left
        if left:
            say(f"FAIL: process groups still alive after stop: {left}")
        else:
            say("every process stopped")
        if code and os.environ.get("E2E_SHOW_LOGS", "1") == "1":
            for log in sorted(scenario.logs.glob("*.log")):
                tail = log.read_text(errors="replace").splitlines()[-15:]
                print(f"\n--- {log.name} (last lines)\n" + "\n".join(tail))
    return code if stopped_cleanly else 1


if __name__ == "__main__":
    sys.exit(main())
