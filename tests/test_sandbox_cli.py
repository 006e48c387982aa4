"""The sandbox as users start it: the ``omni-sandbox`` command, ``python -m``, and a cheap import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.timeout(120)

BIN = Path(sys.executable).parent


@pytest.fixture
def cli_sandbox() -> Iterator[str]:
    """Run ``omni-sandbox`` on a free port with a fault; yield its URL; terminate it."""
    command = [
        str(BIN / "omni-sandbox"),
        "--port",
        "0",
        "--api-key",
        "cli-key",
        "--time-scale",
        "600",
        "--seed",
        "3",
        "--no-rate-limits",
        "--report-style",
        "per_step",
        "--fault",
        "endpoint=logs,status=503,times=1,retry_after=2",
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert "listening on" in banner, process.stderr.read() if process.stderr else banner
        yield banner.split("listening on ")[1].split()[0]
    finally:
        process.terminate()
        assert process.wait(timeout=20) == 0  # SIGTERM stops it cleanly


def test_the_command_starts_and_answers(cli_sandbox: str) -> None:
    headers = {"Authorization": "App cli-key"}
    assert requests.get(f"{cli_sandbox}/_sandbox/health", timeout=10).json()["status"] == "ok"
    first = requests.get(f"{cli_sandbox}/omni/1/logs", headers=headers, timeout=10)
    assert (first.status_code, first.headers.get("Retry-After")) == (503, "2")
    assert requests.get(f"{cli_sandbox}/omni/1/logs", headers=headers, timeout=10).json() == {"results": []}
    assert (
        requests.get(f"{cli_sandbox}/omni/1/logs", headers={"Authorization": "App x"}, timeout=10).status_code
        == 401
    )
    config = requests.get(f"{cli_sandbox}/_sandbox/config", timeout=10).json()
    assert (config["time_scale"], config["seed"], config["rate_limits_enabled"], config["report_style"]) == (
        600.0,
        3,
        False,
        ["per_step"],
    )


def test_python_dash_m_shows_its_options() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "airflow_provider_omni.sandbox", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for option in ("--time-scale", "--fault", "--config", "--no-rate-limits", "--api-key", "--seed"):
        assert option in result.stdout


def test_a_bad_fault_spec_is_refused_with_a_message() -> None:
    result = subprocess.run(
        [str(BIN / "omni-sandbox"), "--port", "0", "--fault", "endpoint=advanced,colour=red"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "colour" in result.stderr


def test_importing_the_package_does_not_import_fastapi_or_uvicorn() -> None:
    code = (
        "import sys, airflow_provider_omni.sandbox, airflow_provider_omni.sandbox.pytest_plugin;"
        "print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
