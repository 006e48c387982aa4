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
