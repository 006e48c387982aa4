"""Shared pieces of the benchmarks: fresh subprocesses, the sandbox server process, machine facts."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
RESULT_MARK = "BENCH-RESULT "
API_KEY = "bench-key"

_WORKDIR: Path | None = None


class BenchError(RuntimeError):
    """A benchmark step failed (the message carries the end of the subprocess's stderr)."""


def workdir() -> Path:
    """Return a private temporary folder for this run (AIRFLOW_HOME, bytecode cache), made once."""
    global _WORKDIR
    if _WORKDIR is None:
        _WORKDIR = Path(tempfile.mkdtemp(prefix="omni-bench-"))
    return _WORKDIR


def cleanup_workdir() -> None:
    """Remove the private temporary folder of this run."""
    global _WORKDIR
    if _WORKDIR is not None:
        shutil.rmtree(_WORKDIR, ignore_errors=True)
        _WORKDIR = None


def bytecode_cache() -> Path:
    """Return the bytecode cache shared by the runs (kept between runs, outside the venv)."""
    path = Path(tempfile.gettempdir()) / "omni-bench-pycache"
    path.mkdir(exist_ok=True)
    return path


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Return the environment of a benchmark subprocess.

    A private ``AIRFLOW_HOME``, no example DAGs, and bytecode caching switched on (into a cache
    folder of our own, so the venv is not touched): a real DAG processor or worker imports from
    ``.pyc`` files, so measuring with ``PYTHONDONTWRITEBYTECODE`` would time the compiler instead.
    """
    env = dict(os.environ)
    home = workdir() / "airflow-home"
    home.mkdir(exist_ok=True)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "PYTHONPYCACHEPREFIX": str(bytecode_cache()),
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
        }
    )
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
    if extra:
        env.update(extra)
    return env


def run_worker(
    task: str, args: dict[str, Any], *, timeout: float = 900, env: dict[str, str] | None = None
) -> Any:
    """Run ``python -m bench.worker TASK ARGS`` in a fresh interpreter and return its JSON result."""
    cmd = [PYTHON, "-m", "bench.worker", task, json.dumps(args)]
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd,
        cwd=REPO,
        env=subprocess_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if os.environ.get("BENCH_VERBOSE"):
        print(f"[bench]   worker {task} took {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :])
    tail = "\n".join((proc.stderr or proc.stdout).splitlines()[-25:])
    raise BenchError(f"bench.worker {task} failed (rc={proc.returncode}):\n{tail}")


def free_port() -> int:
    """Return a TCP port that is free right now on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def median(values: Sequence[float]) -> float:
    """Return the median of ``values`` (0.0 for none)."""
    return float(statistics.median(values)) if values else 0.0


@dataclass
class Machine:
    """Facts about the machine and the software a run was measured on."""

    date: str
    nproc: int
    cpu: str
    memory_gib: float
    python: str
    airflow: str
    provider: str
    platform: str
    load_at_start: str
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        """Return one Markdown line naming the machine."""
        return (
            f"{self.date}, {self.nproc} CPU ({self.cpu}), {self.memory_gib:.0f} GiB RAM, "
            f"Python {self.python}, Airflow {self.airflow}, airflow-provider-omni {self.provider}, "
            f"{self.platform}, load average at start {self.load_at_start}"
        )


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _memory_gib() -> float:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    return 0.0


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> Machine:
    """Describe this machine (nproc, CPU, Python, Airflow version, date)."""
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count() or 1
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return Machine(
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        nproc=nproc,
        cpu=_cpu_model(),
        memory_gib=_memory_gib(),
        python=platform.python_version(),
        airflow=_version("apache-airflow"),
        provider=_version("airflow-provider-omni"),
        platform=f"{platform.system()} {platform.release()}",
        load_at_start=load,
    )


def has_module(name: str) -> bool:
    """Return whether ``name`` can be imported in the benchmark's interpreter (without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@contextlib.contextmanager
def timer() -> Iterator[dict[str, float]]:
    """Measure wall and CPU seconds of a block into the yielded dict (``wall``, ``cpu``)."""
    out: dict[str, float] = {}
    wall0, cpu0 = time.perf_counter(), time.process_time()
    try:
        yield out
    finally:
        out["wall"] = time.perf_counter() - wall0
        out["cpu"] = time.process_time() - cpu0


class SandboxProcess:
    """The OMNI sandbox as a separate server process (``python -m airflow_provider_omni.sandbox``).

    A separate process keeps the server's CPU out of the measurements of the client process.

    :param time_scale: simulated seconds per real second.
    """

    def __init__(self, time_scale: float = 60.0, *, seed: int = 0) -> None:
        self.time_scale = time_scale
        self.seed = seed
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_key = API_KEY
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = workdir() / f"sandbox-{self.port}.log"

    def command(self) -> list[str]:
        """Return the command line that starts the server."""
        return [
            PYTHON,
            "-m",
            "airflow_provider_omni.sandbox",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--time-scale",
            str(self.time_scale),
            "--api-key",
            self.api_key,
            "--seed",
            str(self.seed),
            "--no-rate-limits",
            "--log-level",
            "warning",
        ]

    def __enter__(self) -> SandboxProcess:
        with open(self._log, "wb") as log:
            self._proc = subprocess.Popen(
                self.command(), cwd=REPO, env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BenchError(
                    f"the sandbox exited with {self._proc.returncode}:\n{self._log.read_text()[-3000:]}"
                )
            try:
                self.admin("GET", "health")
                break
            except OSError:
                time.sleep(0.2)
        else:
            self.stop()
            raise BenchError("the sandbox did not answer within 60 s")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the server process (the one this object started), waiting for it to exit."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=15)
        self._proc = None

    @property
    def pid(self) -> int | None:
        """The server's process id."""
        return self._proc.pid if self._proc else None

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Call the admin API ``/_sandbox/<path>`` and return its JSON."""
        import urllib.request

        data = json.dumps(body).encode() if body is not None else (b"{}" if method == "POST" else None)
        request = urllib.request.Request(
            f"{self.url}/_sandbox/{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def stats(self) -> dict[str, Any]:
        """Return the server's counters (requests per endpoint, destinations, bulks...)."""
        return dict(self.admin("GET", "stats"))

    def reset(self) -> None:
        """Forget messages, reports, scenarios and counters; keep the configuration."""
        self.admin("POST", "reset", {"keep_config": True})

    def configure(self, **values: Any) -> dict[str, Any]:
        """Change the server's configuration (time_scale, personas, report_style, ...)."""
        return dict(self.admin("POST", "config", values))

    def create_scenario(self) -> str:
        """Create a Viber-then-SMS scenario and return its key."""
        import urllib.request

        body = {
            "name": "bench",
            "flow": [{"from": "InfoSMS", "channel": "VIBER"}, {"from": "InfoSMS", "channel": "SMS"}],
        }
        request = urllib.request.Request(
            f"{self.url}/omni/1/scenarios",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"App {self.api_key}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return str(json.loads(response.read())["key"])

    def connection_env(self) -> dict[str, str]:
        """Return the environment variable that points ``omni_default`` at this server."""
        conn = {
            "conn_type": "infobip_omni",
            "host": self.url,
            "password": self.api_key,
            "extra": {"auth_type": "api_key"},
        }
        return {"AIRFLOW_CONN_OMNI_DEFAULT": json.dumps(conn)}


def requests_to(stats: dict[str, Any], endpoint: str) -> int:
    """Return how many requests the sandbox counted on ``endpoint`` (``advanced``, ``reports``, ``logs``)."""
    return int((stats.get("requests") or {}).get(endpoint, 0))
