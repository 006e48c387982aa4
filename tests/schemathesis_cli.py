"""``schemathesis run`` against a running sandbox, as both conformance tests start it: every check, a
fixed seed, one worker, no example database, the test module as its hooks module (it seeds the
sandbox inside the run's process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def run_schemathesis(
    url: str,
    api_key: str,
    doc: dict[str, Any],
    workdir: Path,
    *,
    config: str,
    seed: int,
    max_examples: int,
    hooks: tuple[str, str, dict[str, Any]],
    timeout: float,
) -> tuple[int, str]:
    """Run ``schemathesis run`` of ``doc`` with every check against ``url``; return its exit code and
    output.

    :param config: the run's ``schemathesis.toml``.
    :param hooks: the hooks module, the environment variable it reads its settings from, and those
        settings (JSON).
    """
    doc_path = workdir / "openapi.json"
    doc_path.write_text(json.dumps(doc), encoding="utf-8")
    config_path = workdir / "schemathesis.toml"
    config_path.write_text(config, encoding="utf-8")
    module, variable, settings = hooks
    env = {**os.environ, variable: json.dumps(settings), "SCHEMATHESIS_HOOKS": module}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config_path),
        "run",
        str(doc_path),
        "--url",
        url,
        "--header",
        f"Authorization: App {api_key}",
        "--checks",
        "all",
        "--max-examples",
        str(max_examples),
        "--seed",
        str(seed),
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--no-color",
        "--output-truncate",
        "false",
    ]
    done = subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    return done.returncode, done.stdout + done.stderr
