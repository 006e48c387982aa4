"""The sandbox as users start it: the ``omni-sandbox`` command, ``python -m``, and a cheap import."""

from __future__ import annotations

import os
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
TOKEN = "cli-s3cret-token"
ENV = "OMNI_SANDBOX_ADMIN_TOKEN"


def environment(**extra: str) -> dict[str, str]:
    """The environment of a child ``omni-sandbox``: without an admin token unless given."""
    env = {k: v for k, v in os.environ.items() if k != ENV}
    return {**env, **extra}


class Running:
    """An ``omni-sandbox`` process started on a free port, with its start-up line."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        command = [str(BIN / "omni-sandbox"), "--port", "0", "--log-level", "warning", *args]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or environment()
        )
        assert self.process.stdout is not None
        self.banner = self.process.stdout.readline()
        if "listening on" not in self.banner:
            self.process.kill()
            _, err = self.process.communicate(timeout=20)
            pytest.fail(f"omni-sandbox did not start: {self.banner} {err}")
        self.url = self.banner.split("listening on ")[1].split()[0]

    def stop(self) -> str:
        """Terminate it (SIGTERM must stop it cleanly); return everything else it printed."""
        self.process.terminate()
        out, err = self.process.communicate(timeout=20)
        assert self.process.returncode == 0
        return out + err


def refused(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``omni-sandbox`` expecting it to refuse to start."""
    return subprocess.run(
        [str(BIN / "omni-sandbox"), "--port", "0", "--log-level", "warning", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env or environment(),
    )


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
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment()
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert "listening on" in banner, process.stderr.read() if process.stderr else banner
        assert "admin API" in banner and "not protected" in banner
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


# -- the admin token -------------------------------------------------------------------------------


def test_the_admin_token_protects_the_admin_api_and_is_never_printed() -> None:
    sandbox = Running("--admin-token", TOKEN)
    try:
        assert "protected" in sandbox.banner and "not protected" not in sandbox.banner
        assert TOKEN not in sandbox.banner
        assert requests.get(f"{sandbox.url}/_sandbox/health", timeout=10).status_code == 200
        anonymous = requests.get(f"{sandbox.url}/_sandbox/stats", timeout=10)
        assert anonymous.status_code == 401
        assert anonymous.json()["requestError"]["serviceException"]["messageId"] == "UNAUTHORIZED"
        for headers in ({"Authorization": f"Bearer {TOKEN}"}, {"X-Sandbox-Token": TOKEN}):
            assert (
                requests.get(f"{sandbox.url}/_sandbox/stats", headers=headers, timeout=10).status_code == 200
            )
    finally:
        rest = sandbox.stop()
    assert TOKEN not in rest


def test_a_non_loopback_host_without_an_admin_token_refuses_to_start() -> None:
    result = refused("--host", "0.0.0.0")
    assert result.returncode == 2
    assert "admin token" in result.stderr and "0.0.0.0" in result.stderr
    assert "listening" not in result.stdout


def test_the_admin_token_can_come_from_the_environment() -> None:
    sandbox = Running(env=environment(**{ENV: TOKEN}))
    try:
        assert "protected" in sandbox.banner and "not protected" not in sandbox.banner
        assert requests.get(f"{sandbox.url}/_sandbox/config", timeout=10).status_code == 401
        headers = {"X-Sandbox-Token": TOKEN}
        assert requests.get(f"{sandbox.url}/_sandbox/config", headers=headers, timeout=10).status_code == 200
    finally:
        rest = sandbox.stop()
    assert TOKEN not in sandbox.banner + rest


# -- logs lag and wrong answers --------------------------------------------------------------------


def test_logs_lag_and_an_answer_fault_from_the_command_line(tmp_path: Path) -> None:
    sandbox = Running("--logs-lag", "12", "--fault", "endpoint=advanced,answer=empty,process=true")
    try:
        assert requests.get(f"{sandbox.url}/_sandbox/config", timeout=10).json()["logs_lag"] == 12.0
        (fault,) = requests.get(f"{sandbox.url}/_sandbox/faults", timeout=10).json()["faults"]
        assert (fault["endpoint"], fault["answer"], fault["process"]) == ("advanced", "empty", True)
        headers = {"Authorization": "App sandbox-key"}
        flow = [{"channel": "SMS"}]
        key = requests.post(
            f"{sandbox.url}/omni/1/scenarios", json={"flow": flow}, headers=headers, timeout=10
        ).json()["key"]
        body = {
            "scenarioKey": key,
            "destinations": [{"to": {"phoneNumber": "41793026720"}}],
            "sms": {"text": "x"},
        }
        sent = requests.post(f"{sandbox.url}/omni/1/advanced", json=body, headers=headers, timeout=10)
        assert (sent.status_code, sent.content) == (200, b"")
        assert requests.get(f"{sandbox.url}/_sandbox/stats", timeout=10).json()["destinations"] == 1
        logs = requests.get(f"{sandbox.url}/omni/1/logs", headers=headers, timeout=10).json()
        assert logs == {"results": []}  # accepted, but not in the logs for 12 s
    finally:
        sandbox.stop()


# -- non-finite numbers ----------------------------------------------------------------------------


def _config_file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--time-scale", "nan"], "--time-scale"),
        (["--time-scale", "inf"], "--time-scale"),
        (["--logs-lag=-inf"], "--logs-lag"),
        (["--fault", "endpoint=reports,latency=nan"], "latency"),
        (["--fault", "endpoint=reports,status=500,rate=inf"], "rate"),
        (["--config", 'sandbox.json:{"time_scale": NaN}'], "time_scale"),
        (["--config", 'sandbox.json:{"seed": 1e999}'], "seed"),
        (["--config", "sandbox.yaml:prices: {SMS: .inf}"], "prices.SMS"),
        (["--config", "sandbox.yaml:logs_lag: .nan"], "logs_lag"),
        (["--config", "sandbox.yaml:faults: [{endpoint: logs, latency: .inf}]"], "latency"),
    ],
)
def test_non_finite_flags_and_config_values_are_refused(tmp_path: Path, args: list[str], field: str) -> None:
    if args[0] == "--config":
        name, _, text = args[1].partition(":")
        args = ["--config", _config_file(tmp_path, name, text)]
    result = refused(*args)
    assert result.returncode == 2, result.stdout
    assert field in result.stderr and ("finite" in result.stderr), result.stderr


def test_the_help_documents_the_admin_token_the_logs_lag_and_the_answer_faults() -> None:
    result = subprocess.run(
        [str(BIN / "omni-sandbox"), "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    text = " ".join(result.stdout.split())
    for needle in (
        "--admin-token",
        ENV,
        "X-Sandbox-Token",
        "exit code 2",
        "loopback",
        "--logs-lag",
        "real seconds",
        "answer=empty,process=true",
        *(
            "empty",
            "empty_object",
            "request_error",
            "no_messages",
            "wrong_bulk_id",
            "missing_messages",
            "html",
        ),
    ):
        assert needle in text, needle
