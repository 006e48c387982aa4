"""The sandbox's admin API (``/_sandbox/``) and its token: required off loopback, checked on every
admin route but health, sent by the admin client."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import requests

from airflow_provider_omni.sandbox import OmniSandbox, SandboxAdminClient

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.timeout(120)

TOKEN = "s3cret-admin-token"
ENV = "OMNI_SANDBOX_ADMIN_TOKEN"

#: Every admin route but health, with a body that would change something.
ADMIN_ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "stats", None),
    ("GET", "config", None),
    ("POST", "config", {"time_scale": 1}),
    ("GET", "personas", None),
    ("POST", "personas", {"41793026720": "silent"}),
    ("GET", "faults", None),
    ("POST", "faults", {"endpoint": "logs", "status": 500}),
    ("DELETE", "faults", None),
    ("GET", "clock", None),
    ("POST", "clock/advance", {"hours": 1}),
    ("POST", "reset", {}),
    ("GET", "requests", None),
    ("GET", "sends", None),
    ("GET", "docs", None),
    ("GET", "openapi.json", None),
    ("GET", "no-such-route", None),
]


@pytest.fixture(autouse=True)
def _no_token_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)


@pytest.fixture
def protected() -> Iterator[OmniSandbox]:
    with OmniSandbox(admin_token=TOKEN, time_scale=0) as sandbox:
        yield sandbox


def call(
    sandbox: OmniSandbox, method: str, path: str, body: Any, headers: dict[str, str]
) -> requests.Response:
    return requests.request(method, f"{sandbox.url}/_sandbox/{path}", json=body, headers=headers, timeout=10)


def snapshot(sandbox: OmniSandbox) -> tuple[Any, ...]:
    admin = sandbox.admin
    return admin.stats(), admin.config(), admin.faults(), admin.clock(), admin.personas(), admin.requests()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "sandbox.example.com", ""])
def test_a_non_loopback_bind_without_a_token_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match="admin token"):
        OmniSandbox(host=host)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost", "LOCALHOST"])
def test_a_loopback_bind_needs_no_token(host: str) -> None:
    assert OmniSandbox(host=host).admin_token is None


def test_a_non_loopback_bind_takes_the_token_from_an_argument_the_config_or_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert OmniSandbox(host="0.0.0.0", admin_token=TOKEN).admin_token == TOKEN
    assert OmniSandbox(host="0.0.0.0", config={"admin_token": "from-config"}).admin_token == "from-config"
    path = tmp_path / "sandbox.yaml"
    path.write_text("admin_token: from-file\ntime_scale: 1\n")
    assert OmniSandbox(host="0.0.0.0", config=path).admin_token == "from-file"
    monkeypatch.setenv(ENV, "from-env")
    assert OmniSandbox(host="0.0.0.0").admin_token == "from-env"
    assert OmniSandbox(host="0.0.0.0", admin_token=TOKEN).admin_token == TOKEN  # the argument wins


@pytest.mark.parametrize("token", ["", "has space", "naïve"], ids=["empty", "space", "non-ascii"])
def test_an_unusable_token_is_refused_without_showing_it(token: str) -> None:
    with pytest.raises(ValueError, match="admin token") as err:
        OmniSandbox(admin_token=token)
    if token:
        assert token not in str(err.value)


@pytest.mark.parametrize(
    ("method", "path", "body"), ADMIN_ROUTES, ids=[f"{m} {p}" for m, p, _ in ADMIN_ROUTES]
)
def test_with_a_token_every_admin_route_but_health_needs_it(
    protected: OmniSandbox, method: str, path: str, body: Any
) -> None:
    refused = [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"App {protected.api_key}"},
        {"Authorization": TOKEN},
        {"X-Sandbox-Token": "wrong"},
    ]
    before = snapshot(protected)
    for headers in refused:
        response = call(protected, method, path, body, headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.json()["requestError"]["serviceException"]["messageId"] == "UNAUTHORIZED"
        assert TOKEN not in response.text
    assert snapshot(protected) == before  # nothing refused changed anything
    for headers in ({"Authorization": f"Bearer {TOKEN}"}, {"X-Sandbox-Token": TOKEN}):
        assert call(protected, method, path, body, headers).status_code != 401
    health = requests.get(f"{protected.url}/_sandbox/health", timeout=10)
    assert (health.status_code, health.json()["status"]) == (200, "ok")


def test_the_omni_routes_are_not_opened_by_the_admin_token(protected: OmniSandbox) -> None:
    response = requests.get(
        f"{protected.url}/omni/1/scenarios", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    assert response.status_code == 401
    app = requests.get(
        f"{protected.url}/omni/1/scenarios", headers={"Authorization": f"App {protected.api_key}"}, timeout=10
    )
    assert app.status_code == 200


def test_the_admin_clients_send_the_token(protected: OmniSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    assert protected.admin.stats()["destinations"] == 0
    protected.admin.advance(hours=1)
    anonymous = SandboxAdminClient(protected.url)
    with pytest.raises(ValueError, match="401") as err:
        anonymous.stats()
    assert TOKEN not in str(err.value)
    assert SandboxAdminClient(protected.url, admin_token=TOKEN).stats()["destinations"] == 0
    monkeypatch.setenv(ENV, TOKEN)
    assert SandboxAdminClient(protected.url).stats()["destinations"] == 0


def test_the_token_from_the_environment_protects_a_loopback_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, TOKEN)
    with OmniSandbox() as sandbox:
        assert requests.get(f"{sandbox.url}/_sandbox/stats", timeout=10).status_code == 401
        assert sandbox.admin.stats()["destinations"] == 0


def test_without_a_token_the_loopback_admin_api_stays_open() -> None:
    with OmniSandbox() as sandbox:
        assert requests.get(f"{sandbox.url}/_sandbox/stats", timeout=10).status_code == 200
