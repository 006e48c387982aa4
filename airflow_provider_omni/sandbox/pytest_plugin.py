"""Pytest fixtures for testing DAGs against the local OMNI sandbox (entry point ``pytest11``).

* ``omni_sandbox_server``: one :class:`~airflow_provider_omni.sandbox.OmniSandbox` per test session
  (options from the ``omni_sandbox_options`` fixture, which a conftest may override);
* ``omni_sandbox``: the same server, reset (state, faults, configuration) before each test;
* ``omni_connection``: sets ``AIRFLOW_CONN_OMNI_DEFAULT`` to the sandbox and yields ``"omni_default"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_omni.sandbox.server import OmniSandbox


@pytest.fixture(scope="session")
def omni_sandbox_options() -> dict[str, Any]:
    """Keyword arguments of the session's ``OmniSandbox``; override this fixture to change them."""
    return {"api_key": "sandbox-key", "time_scale": 600.0, "seed": 0}


@pytest.fixture(scope="session")
def omni_sandbox_server(omni_sandbox_options: dict[str, Any]) -> Iterator[OmniSandbox]:
    """A sandbox server running for the whole test session."""
    from airflow_provider_omni.sandbox.server import OmniSandbox

    with OmniSandbox(**omni_sandbox_options) as sandbox:
        yield sandbox


@pytest.fixture
def omni_sandbox(omni_sandbox_server: OmniSandbox) -> Iterator[OmniSandbox]:
    """The session's sandbox, reset to its start-up state before the test."""
    omni_sandbox_server.admin.reset()
    yield omni_sandbox_server


@pytest.fixture
def omni_connection(omni_sandbox: OmniSandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point the Airflow connection ``omni_default`` at the (reset) sandbox; yield its conn id."""
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_DEFAULT", omni_sandbox.airflow_connection_json())
    yield "omni_default"
