"""The connection form in the real Airflow UI: our fields, labels, saving and Test Connection.

Starts ``airflow api-server`` in a private AIRFLOW_HOME (auth off, Test Connection enabled) and
drives the "Add Connection" dialog with headless Chromium (Playwright, Debian's chromium binary).
The sandbox answers the Test Connection request. A screenshot of the filled form is saved as
``artifacts/connection-form.png``.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import pytest
import requests

from airflow_provider_omni.get_provider_info import (
    CONN_FIELDS,
    CONNECTION_TYPE,
    HOOK_NAME,
    UI_FIELD_BEHAVIOUR,
)
from tests import airflow_processes
from tests.airflow_compat import AIRFLOW_V_3_0_PLUS
from tests.forward_proxy import ForwardProxy

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(420),  # migrate (120 s at most) + health (HEALTHY_WITHIN) + the test
    pytest.mark.skipif(
        not AIRFLOW_V_3_0_PLUS, reason="Airflow 2 has the Flask UI: tests/test_ui_connection_form_fab.py"
    ),
]

CONN_ID = "omni_from_ui"
PROXY_USER, PROXY_PASSWORD = "egress", "ui-Proxy-Secret-42"


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    """A forwarding proxy that wants the credentials typed into the form."""
    with ForwardProxy(credentials=(PROXY_USER, PROXY_PASSWORD)) as running:
        yield running


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start ``airflow api-server`` in its own AIRFLOW_HOME; yield its base URL."""
    with airflow_processes.api_server(tmp_path_factory.mktemp("airflow-ui-home")) as url:
        yield url


def _port_zero_bug() -> bool:
    """Whether this Airflow rejects the UI's Test Connection of a connection without a port.

    The 3.3.2 UI sends ``port: Number(null)``, i.e. 0, which the API does not treat as "no port",
    so it answers 400 "The host or port to test differs from the stored connection" for every
    connection without a port (fixed upstream in apache/airflow#73298).
    """
    try:
        from airflow.api_fastapi.core_api.routes.public.connections import _same_endpoint
    except ImportError:
        return False
    return not _same_endpoint(0, None)


def _drop_port_zero(route: Any) -> None:
    """Send the UI's Test Connection request without ``port: 0``, as the fixed Airflow reads it."""
    body = route.request.post_data_json or {}
    if body.get("port") == 0:
        body.pop("port")
    route.continue_(post_data=json.dumps(body))


def _omni_meta(api_server: str) -> dict[str, Any]:
    metas = requests.get(f"{api_server}/ui/connections/hook_meta", timeout=30).json()
    matches = [meta for meta in metas if meta["connection_type"] == CONNECTION_TYPE]
    assert len(matches) == 1, [meta["connection_type"] for meta in metas]
    return matches[0]


def test_hook_meta_serves_our_fields(api_server: str) -> None:
    meta = _omni_meta(api_server)

    assert meta["hook_name"] == HOOK_NAME
    assert meta["hook_class_name"] == "airflow_provider_omni.hooks.omni.OmniHook"
    assert set(meta["extra_fields"]) == set(CONN_FIELDS)
    for name, field in CONN_FIELDS.items():
        assert meta["extra_fields"][name]["schema"]["title"] == field["label"]
        assert meta["extra_fields"][name]["description"] == field["description"]
    assert meta["extra_fields"]["auth_type"]["schema"]["enum"] == ["api_key", "basic", "oauth2"]
    standard = meta["standard_fields"]
    for name, label in UI_FIELD_BEHAVIOUR["relabeling"].items():
        assert standard[name]["title"] == label
        assert standard[name]["hidden"] is False
    for name in ("port",):
        assert standard[name]["hidden"] is True


def test_add_connection_in_the_ui_then_test_it(
    api_server: str, browser: Any, omni_sandbox: Any, artifacts_dir: Path, proxy: ForwardProxy
) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1750})
    page.set_default_timeout(30_000)
    try:
        page.goto(f"{api_server}/connections")
        page.get_by_role("button", name="Add Connection").click()
        dialog = page.get_by_role("dialog")
        dialog.locator("input[name=connection_id]").fill(CONN_ID)
        type_box = dialog.get_by_role("combobox")
        type_box.fill("Infobip")
        type_box.press("Enter")

        # Standard fields: relabelled, with placeholders; port and schema are hidden.
        for label in UI_FIELD_BEHAVIOUR["relabeling"].values():
            assert dialog.get_by_text(label, exact=True).is_visible(), label
        assert (
            dialog.locator("input[name=host]").get_attribute("placeholder")
            == (UI_FIELD_BEHAVIOUR["placeholders"]["host"])
        )
        assert dialog.locator("input[name=port]").count() == 0
        assert dialog.locator("input[name=schema]").count() == 0
        dialog.locator("input[name=host]").fill(omni_sandbox.url)
        dialog.locator("input[name=password]").fill(omni_sandbox.api_key)
        page.screenshot(path=str(artifacts_dir / "connection-form-standard.png"))

        # Extra fields: one input per CONN_FIELDS entry, with its label and help text.
        dialog.get_by_text("Extra Fields", exact=True).click()
        for name, field in CONN_FIELDS.items():
            assert dialog.locator(f"[name=element_{name}]").count() == 1, name
            assert dialog.get_by_text(field["label"], exact=True).is_visible(), field["label"]
            assert dialog.get_by_text(field["description"], exact=True).is_visible(), field["description"]
        assert dialog.locator("input[name=element_connect_timeout]").input_value() == "10"
        dialog.locator("input[name=element_connect_timeout]").fill("5")
        dialog.locator("input[name=element_read_timeout]").fill("12")
        # The proxy password is typed into a masked input; Test Connection below goes through the proxy.
        assert dialog.locator("input[name=element_proxy_password]").get_attribute("type") == "password"
        dialog.locator("input[name=element_proxy_url]").fill(proxy.url.replace("//", f"//{PROXY_USER}@"))
        dialog.locator("input[name=element_proxy_password]").fill(PROXY_PASSWORD)
        page.screenshot(path=str(artifacts_dir / "connection-form.png"))

        dialog.get_by_role("button", name="Save").click()
        dialog.wait_for(state="hidden")

        saved = requests.get(f"{api_server}/api/v2/connections/{CONN_ID}", timeout=30).json()
        assert saved["conn_type"] == CONNECTION_TYPE
        assert saved["host"] == omni_sandbox.url
        extra = json.loads(saved["extra"])
        assert extra["auth_type"] == "api_key"
        assert float(extra["connect_timeout"]) == 5
        assert float(extra["read_timeout"]) == 12
        assert extra["proxy_password"] == "***"  # the REST API redacts it

        # Test Connection from the list: the api-server runs OmniHook.test_connection() against the sandbox.
        if _port_zero_bug():
            page.route("**/api/v2/connections/test", _drop_port_zero)
        row = page.get_by_role("row").filter(has_text=CONN_ID)
        row.get_by_role("button", name="Test Connection").click()
        toast = page.get_by_text(re.compile(r"^Test Connection (Successful|Failed)$"))
        toast.wait_for(state="visible")
        page.screenshot(path=str(artifacts_dir / "connection-test.png"))
        assert toast.inner_text() == "Test Connection Successful"
        assert page.get_by_text(f"Connected to {omni_sandbox.url} through the proxy {proxy.url}").is_visible()
        assert proxy.log.paths() == ["GET /omni/1/scenarios"]
    except Exception:
        page.screenshot(path=str(artifacts_dir / "connection-form-failure.png"))
        raise
    finally:
        page.close()


def test_test_connection_reports_a_wrong_api_key(api_server: str, omni_sandbox: Any) -> None:
    body = {
        "connection_id": "omni_wrong_key",
        "conn_type": CONNECTION_TYPE,
        "host": omni_sandbox.url,
        "password": "not-the-key",
        "extra": json.dumps({"auth_type": "api_key", "max_retries": 0}),
    }
    result = requests.post(f"{api_server}/api/v2/connections/test", json=body, timeout=60).json()

    assert result["status"] is False
    assert "401" in result["message"] or "auth" in result["message"].lower(), result["message"]
