"""Shared test set-up: an isolated Airflow home, the metadata DB, and running DAGs for real.

The OMNI sandbox fixtures (``omni_sandbox``, ``omni_connection``) come from the provider's own
pytest plugin, ``airflow_provider_omni.sandbox.pytest_plugin``, which users get too.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

REPO = Path(__file__).resolve().parent.parent

# Before anything imports airflow: a private AIRFLOW_HOME per pytest process (parallel runs do not
# share a SQLite file), no examples, and the repository's example DAGs as the DAGs folder.
_HOME = Path(tempfile.mkdtemp(prefix="airflow-test-", dir=os.environ.get("OMNI_TEST_TMP")))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "example_dags")
os.environ.setdefault("AIRFLOW__CORE__TEST_CONNECTION", "Enabled")
os.environ.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from airflow.models.dagrun import DagRun

    from tests.airflow_compat import DAG


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Create the metadata DB (SQLite in the private AIRFLOW_HOME) once per session."""
    from airflow.utils import db

    db.resetdb()


@pytest.fixture
def run_dag(airflow_db: None) -> Any:
    """Return a function that runs a DAG object with ``dag.test()`` and returns the DagRun.

    Deferred tasks run their trigger in-process, as ``airflow dags test`` does.
    """

    def _run(dag: DAG, **kwargs: Any) -> DagRun:
        from tests.airflow_compat import serialize_dag

        serialize_dag(dag)
        return dag.test(**kwargs)

    return _run


@pytest.fixture
def load_dag_file(airflow_db: None) -> Any:
    """Return a function that loads one DAG from a file (e.g. ``example_dags/x.py``) by id."""

    def _load(path: str | Path, dag_id: str) -> DAG:
        from tests.airflow_compat import DagBag

        bag = DagBag(dag_folder=str(path))
        assert not bag.import_errors, bag.import_errors
        return bag.dags[dag_id]

    return _load


@pytest.fixture
def task_states() -> Any:
    """Return a function giving ``{task_id: state}`` of a DagRun (map index -1 tasks only)."""

    def _states(dag_run: DagRun) -> dict[str, str | None]:
        from airflow.utils.session import create_session

        with create_session() as session:
            tis = dag_run.get_task_instances(session=session)
            return {ti.task_id: (str(ti.state) if ti.state else None) for ti in tis if ti.map_index == -1}

    return _states


@pytest.fixture
def artifacts_dir() -> Iterator[Path]:
    """A folder for test artifacts (screenshots, reports) that CI keeps: ``artifacts/``."""
    path = REPO / "artifacts"
    path.mkdir(exist_ok=True)
    yield path


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> Callable[[], str]:
    """Return a function giving everything logged so far: stdlib records and the task SDK's
    structlog output (which goes to stdout)."""
    caplog.set_level(logging.DEBUG)

    def read() -> str:
        captured = capsys.readouterr()
        return caplog.text + captured.out + captured.err

    return read


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Skip the hook's waits between retries (sync and async); return the seconds it would wait."""
    from airflow_provider_omni.hooks import omni as omni_module

    waited: list[float] = []

    async def fake_asleep(seconds: float) -> None:
        waited.append(seconds)

    monkeypatch.setattr(omni_module, "_sleep", waited.append)
    monkeypatch.setattr(omni_module, "_asleep", fake_asleep)
    return waited


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium (Debian's binary) driven by Playwright."""
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip("chromium is not installed: run scripts/install_browser.sh")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
