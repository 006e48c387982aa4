"""Airflow components as real processes for the tests: started in their own process group with a
log file, waited for until healthy, and stopped with their children."""

from __future__ import annotations

import os
import signal
import site
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests

import airflow_provider_omni

if TYPE_CHECKING:
    from collections.abc import Iterator

#: The ``airflow`` command of the venv running the tests.
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def free_port() -> int:
    """A TCP port on the loopback that is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def provider_python_path() -> str:
    """PYTHONPATH that makes Airflow processes import the provider copy this process imported.

    A source tree (development, or a matrix venv run from the repository, whose installed wheel may
    be older) must come first; an installed copy (the staged matrix run) is found by the venv itself.
    """
    root = Path(airflow_provider_omni.__file__).resolve().parent.parent
    installed = {Path(path).resolve() for path in site.getsitepackages()}
    paths = [] if root in installed else [str(root)]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    return os.pathsep.join(paths)


def airflow_env(**settings: str) -> dict[str, str]:
    """This process's environment with ``settings`` on top, the venv's ``bin`` first on PATH and the
    provider copy under test on PYTHONPATH (:func:`provider_python_path`), after a given PYTHONPATH."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    given = settings.pop("PYTHONPATH", "")
    env = {**os.environ, **settings, "PATH": path}
    env.pop("PYTHONPATH", None)
    if python_path := os.pathsep.join(p for p in (given, provider_python_path()) if p):
        env["PYTHONPATH"] = python_path
    return env


def start(
    args: list[str], env: dict[str, str], log_path: Path, append: bool = False
) -> subprocess.Popen[bytes]:
    """Start ``airflow *args`` in its own process group, its output going to ``log_path``."""
    with log_path.open("ab" if append else "wb") as log:
        return subprocess.Popen(
            [AIRFLOW, *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def wait_healthy(process: subprocess.Popen[bytes], health_url: str, log_path: Path, timeout: float) -> None:
    """Wait until ``health_url`` answers 200; fail the test (with the log's end) when the process
    exits or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            pytest.fail(f"airflow {process.args[1]} exited: {log_path.read_text()[-3000:]}")
        try:
            if requests.get(health_url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            pytest.fail(
                f"airflow {process.args[1]} did not become healthy within {timeout:.0f} s: "
                f"{log_path.read_text()[-3000:]}"
            )
        time.sleep(0.5)


def stop(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """Stop the process's whole group (workers, supervised children): SIGTERM, then SIGKILL."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


class Supervised:
    """``airflow *args`` started again when it exits, as systemd or Kubernetes would, a few times at most.

    Airflow 3.0's trigger runner can die of its own comms race ("Response read out of order"); a
    deployment's supervisor restarts it, and so does this.  Each restart is noted in the log.
    """

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path, max_restarts: int = 3) -> None:
        self._args, self._env, self._log_path, self._max = args, env, log_path, max_restarts
        self.restarts = 0
        self.gave_up = False
        self._stopping = threading.Event()
        self.process = start(args, env, log_path)
        self._watcher = threading.Thread(target=self._watch, name=f"supervise-{args[0]}", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            code = self.process.poll()
            if code is None:
                continue
            if self.restarts >= self._max:
                self.gave_up = True
                return
            self.restarts += 1
            note = f"\n--- supervisor: airflow {self._args[0]} exited ({code}); restart {self.restarts}\n"
            with self._log_path.open("a") as log:
                log.write(note)
            self.process = start(self._args, self._env, self._log_path, append=True)

    def stop(self, timeout: float = 20) -> None:
        """Stop watching, then stop the process group."""
        self._stopping.set()
        self._watcher.join(timeout=5)
        stop(self.process, timeout=timeout)


#: One api-server worker. Airflow 3.0-3.2 default to 4 uvicorn workers, and uvicorn (0.54 in every
#: constraints file) kills a worker that does not answer its supervisor's ping within 5 s, then starts
#: another: on two loaded cores, a worker still importing Airflow misses it every time and the server
#: never answers (reproduced with Airflow 3.0.6 beside 6 busy loops: 16 workers killed in 90 s, never
#: healthy; one worker: healthy in 30 s). A single worker is not supervised, and a test needs no more.
ONE_API_WORKER = {"AIRFLOW__API__WORKERS": "1"}

#: Seconds an Airflow server may take to answer its health check: CI starts three Airflow versions
#: side by side on two cores (within the tests' own pytest timeouts). Airflow 3.0's api-server missed
#: 120 s and then 200 s there, both times with 4 workers (see ONE_API_WORKER).
HEALTHY_WITHIN = 200


@contextmanager
def serving(args: list[str], env: dict[str, str], home: Path, health_path: str, port: int) -> Iterator[str]:
    """Migrate the metadata DB of ``env``, run ``airflow *args`` listening on ``port`` until
    ``health_path`` answers, yield its base URL, and stop it (with its workers) afterwards."""
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=120)
    log = home / f"{args[0]}.log"
    process = start(args, env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(process, f"{url}{health_path}", log, timeout=HEALTHY_WITHIN)
        yield url
    finally:
        stop(process)


@contextmanager
def api_server(home: Path, **settings: str) -> Iterator[str]:
    """Run ``airflow api-server`` (Airflow 3) in its own AIRFLOW_HOME, every user an admin and Test
    Connection enabled; yield its base URL. ``settings`` are more environment variables."""
    port = free_port()
    env = airflow_env(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
        AIRFLOW__CORE__TEST_CONNECTION="Enabled",
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__API__PORT=str(port),
        **ONE_API_WORKER,
        # Airflow 3.0 leaves the JWT issuer unset, which the PyJWT of its constraints refuses
        # ("Issuer (iss) must be a string") at every request
        AIRFLOW__API_AUTH__JWT_ISSUER="airflow",
        **settings,
    )
    env.pop("AIRFLOW_CONN_OMNI_DEFAULT", None)
    args = ["api-server", "--host", "127.0.0.1", "--port", str(port)]
    with serving(args, env, home, "/api/v2/monitor/health", port) as url:
        yield url


def api_session(url: str) -> requests.Session:
    """A session of the REST API at ``url`` with a token of the simple auth manager (every user an
    admin, no credentials): Airflow 3.1+ wants one even then."""
    session = requests.Session()
    token = session.get(f"{url}/auth/token", timeout=15).json()["access_token"]
    session.headers["Authorization"] = f"Bearer {token}"
    return session
