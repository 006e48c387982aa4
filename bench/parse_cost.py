"""Section 3: what importing the provider's operators and sensor adds to the parsing of a DAG file."""

from __future__ import annotations

import re
import subprocess
from typing import Any

from bench.common import PYTHON, REPO, BenchError, has_module, median, run_worker, subprocess_env
from bench.report import Section, Table, Target, fmt_s

TARGET_ADDED_S = 0.050

_OMNI_IMPORT = (
    "from airflow_provider_omni.operators.scenario import OmniCreateScenarioOperator\n"
    "from airflow_provider_omni.operators.send import OmniSendAdvancedMessageOperator\n"
    "from airflow_provider_omni.sensors.delivery_report import OmniDeliveryReportSensor\n"
)
_IMPORTTIME_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")


def importtime_breakdown(top: int = 8) -> list[tuple[str, float, float]]:
    """Return the biggest imports (name, self s, cumulative s) that our imports add after airflow.sdk.

    Uses ``python -X importtime`` with a marker written between the two imports.
    """
    code = (
        "import sys\nfrom airflow.sdk import DAG\nsys.stderr.write('BENCH-MARK\\n')\nsys.stderr.flush()\n"
        + _OMNI_IMPORT
    )
    proc = subprocess.run(
        [PYTHON, "-X", "importtime", "-c", code],
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise BenchError(proc.stderr[-2000:])
    after = proc.stderr.split("BENCH-MARK\n", 1)[-1]
    rows: list[tuple[str, float, float, int]] = []
    for line in after.splitlines():
        match = _IMPORTTIME_LINE.match(line)
        if match:
            depth = len(match.group(3)) // 2
            rows.append((match.group(4), int(match.group(1)) / 1e6, int(match.group(2)) / 1e6, depth))
    # top-level and second-level entries: what the DAG file's imports pulled in directly
    shallow = [r for r in rows if r[3] <= 2]
    shallow.sort(key=lambda r: -r[2])
    return [(name, self_s, cum_s) for name, self_s, cum_s, _ in shallow[:top]]


def _runs(variant: str, k: int) -> list[dict[str, Any]]:
    return [run_worker("parse", {"variant": variant}, timeout=300) for _ in range(k)]


def run(quick: bool) -> Section:
    """Measure the parse-time cost; ``quick`` runs 1 interpreter per variant instead of 9."""
    k = 1 if quick else 9
    section = Section(
        "parse",
        "3. DAG parse cost",
        method=[
            f"Each variant runs in {k} fresh interpreter(s)"
            + (" (no warm-up in a quick run)" if quick else " (after one warm-up run per variant)")
            + ", with bytecode caching on (`PYTHONDONTWRITEBYTECODE`, set in this environment, is unset "
            "for these subprocesses and `PYTHONPYCACHEPREFIX` points at a private cache, so the venv is "
            "not touched): a DAG processor imports from `.pyc` files. The table gives medians.",
            "Inside each interpreter: time `from airflow.sdk import DAG` (every DAG file pays it), then the "
            "variant's imports, then building a 3-task DAG with them. The added cost is measured in the "
            "same process after airflow.sdk is loaded, as in the DAG processor, whose start-up noise "
            "(seconds) would otherwise hide a few milliseconds.",
            "Comparator: the HTTP provider (apache-airflow-providers-http) is "
            + (
                "installed"
                if has_module("airflow.providers.http")
                else "not installed in the venv, so the comparator is airflow.providers.standard's "
                "PythonOperator (3 PythonOperators for the 3-task DAG)"
            )
            + ".",
        ],
    )
    variants = ["sdk", "standard", "omni"]
    if not quick:
        for variant in variants:  # warm-up: compile bytecode once
            run_worker("parse", {"variant": variant}, timeout=300)
    samples: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for _ in range(k):  # interleaved so that a burst of load hits every variant alike
        for variant in variants:
            samples[variant] += _runs(variant, 1)

    def med(variant: str, key: str) -> float:
        return median([s[key] for s in samples[variant]])

    sdk_s = median([s["sdk_s"] for v in variants for s in samples[v]])
    table = Table(
        "DAG parse cost (median of fresh interpreters; baseline: `from airflow.sdk import DAG` alone)",
        [
            "Variant",
            "Import added",
            "Building the 3-task DAG",
            "Total added",
            "vs airflow.sdk import",
            "vs PythonOperator",
            "Modules added",
        ],
    )
    std_total = med("standard", "import_s") + med("standard", "build_s")
    for variant, label in (
        ("sdk", "airflow.sdk alone (baseline)"),
        ("standard", "+ PythonOperator (airflow.providers.standard)"),
        ("omni", "+ Omni scenario/send operators + sensor"),
    ):
        imp, build = med(variant, "import_s"), med(variant, "build_s")
        total = imp + build
        errors = {s["build_error"] for s in samples[variant] if s["build_error"]}
        table.add(
            label,
            fmt_s(imp) if variant != "sdk" else f"{fmt_s(sdk_s)} (the import itself)",
            ("failed: " + "; ".join(sorted(errors))[:120]) if errors else fmt_s(build),
            fmt_s(total),
            f"{total / sdk_s:.1%}" if sdk_s else "n/a",
            f"{total / std_total:.1f}x" if std_total and variant != "sdk" else "-",
            int(median([s["modules_added"] for s in samples[variant]])),
        )
    section.tables.append(table)

    heavy = Table(
        "Heavy modules in a DAG file that imports the Omni operators and sensor",
        ["Module", "Already imported by airflow.sdk", "Added by the Omni imports"],
    )
    last = samples["omni"][-1]["heavy"]
    added_heavy = []
    for name, info in last.items():
        heavy.add(f"`{name}`", "yes" if info["by_sdk"] else "no", "**yes**" if info["added"] else "no")
        if info["added"]:
            added_heavy.append(name)
    section.tables.append(heavy)

    try:
        breakdown = importtime_breakdown()
        bt = Table(
            "Biggest imports added by the Omni imports (`python -X "
            "importtime`, one run, includes its overhead)",
            ["Module", "Self", "Cumulative"],
        )
        for name, self_s, cum_s in breakdown:
            bt.add(f"`{name}`", fmt_s(self_s), fmt_s(cum_s))
        section.tables.append(bt)
    except BenchError as exc:
        section.notes.append(f"`-X importtime` breakdown failed: {exc}")

    omni_imp = med("omni", "import_s")
    section.targets.append(
        Target(
            "Importing the operators and sensor adds < 50 ms to a DAG file",
            fmt_s(omni_imp),
            omni_imp < TARGET_ADDED_S,
        )
    )
    sandbox_like = [
        m for m in added_heavy if m in ("airflow_provider_omni.sandbox", "fastapi", "starlette", "uvicorn")
    ]
    section.targets.append(
        Target(
            "No sandbox module (sandbox, fastapi, starlette, uvicorn) imported by a DAG file",
            ", ".join(sandbox_like) or "none",
            not sandbox_like,
        )
    )
    if added_heavy:
        section.notes.append(
            "Heavy modules the Omni imports add: " + ", ".join(f"`{m}`" for m in added_heavy) + "."
        )
    return section
