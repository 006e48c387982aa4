"""The README's examples run as written (against the sandbox)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks(section: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {section}")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start : end if end > 0 else None], flags=re.S)


def test_the_hook_example_runs_against_the_sandbox(omni_sandbox: Any, omni_connection: str) -> None:
    (block,) = _python_blocks("Using the hook directly")
    namespace: dict[str, Any] = {}
    exec(compile(block, "README.md", "exec"), namespace)

    assert namespace["response"].messages[0].status.name == "PENDING_ENROUTE"
    stats = omni_sandbox.admin.stats()
    assert stats["destinations"] == 1
    assert stats["bulks"] == {"parcels-2026-11-26": 1}


def test_the_readme_names_the_two_commands_that_ci_runs() -> None:
    text = README.read_text(encoding="utf-8")
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "make demo" in text
    assert "make test" in text
    assert "make test" in ci


def test_the_install_lines_match_the_constraints_and_the_matrix() -> None:
    """Each README install line names the Airflow pinned by its constraints file and the Python of
    its matrix entry in scripts/test_matrix.sh."""
    root = README.parent
    text = README.read_text(encoding="utf-8")
    lines = re.findall(
        r'pip install "apache-airflow==([\d.]+)"\s+\. '
        r"-c constraints/airflow-([\d.]+)\.txt\s+# Python ([\d.]+)",
        text,
    )
    matrix = dict(
        re.findall(
            r'^\s+"([\d.]+) ([\d.]+)(?: browser)?"$', (root / "scripts" / "test_matrix.sh").read_text(), re.M
        )
    )
    assert {series for _, series, _ in lines} == set(matrix) == {"2.11", "3.0", "3.1", "3.2", "3.3"}
    for version, series, python in lines:
        pinned = re.search(
            r"^apache-airflow==([\d.]+)$", (root / "constraints" / f"airflow-{series}.txt").read_text(), re.M
        )
        assert pinned is not None and pinned.group(1) == version, series
        assert matrix[series] == python, series
