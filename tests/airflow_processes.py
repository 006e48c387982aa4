"""Airflow components as real processes for the tests: started in their own process group with a
log file, waited for until healthy, and stopped with their children."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

#: The ``airflow`` command of the venv running the tests.
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def free_port() -> int:
    """A TCP port on the loopback that is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def airflow_env(**settings: str) -> dict[str, str]:
    """This process's environment with ``settings`` on top and the venv's ``bin`` first on PATH."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, **settings, "PATH": path}


def start(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``airflow *args`` in its own process group, its output going to ``log_path``."""
    with log_path.open("wb") as log:
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
            pytest.fail(f"airflow {process.args[1]} did not become healthy within {timeout:.0f} s")
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
