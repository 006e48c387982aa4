"""The connection form in Airflow 2's Flask UI: our fields, labels, Test and saving.

Starts ``airflow webserver`` (Flask AppBuilder, one gunicorn worker) in a private AIRFLOW_HOME whose
``webserver_config.py`` gives anonymous users the Admin role, and drives the "Add Connection" page
(``/connection/add``) with headless Chromium (Playwright, Debian's chromium binary). The page is
built from :meth:`OmniHook.get_connection_form_widgets` and :meth:`OmniHook.get_ui_field_behaviour`;
the sandbox answers the Test button's request. Screenshots go to ``artifacts/``. Airflow 3's React
UI is tested in ``tests/test_ui_connection_form.py``.
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
        AIRFLOW_V_3_0_PLUS, reason="Airflow 3 has the React UI: tests/test_ui_connection_form.py"
    ),
]

PROXY_USER, PROXY_PASSWORD = "egress", "fab-Proxy-Secret-42"


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    """A forwarding proxy that wants the credentials typed into the form."""
    with ForwardProxy(credentials=(PROXY_USER, PROXY_PASSWORD)) as running:
        yield running


CONN_ID = "omni_from_fab_ui"
WRONG_KEY = "wrong-key-7c1d9e"
WEBSERVER_CONFIG = '''"""Test webserver: no login, every visitor is an Admin."""

AUTH_ROLE_PUBLIC = "Admin"
'''


@pytest.fixture(scope="module")
def webserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start ``airflow webserver`` in its own AIRFLOW_HOME; yield its base URL."""
    home = tmp_path_factory.mktemp("airflow-fab-ui-home")
    (home / "webserver_config.py").write_text(WEBSERVER_CONFIG)
    port = airflow_processes.free_port()
    env = airflow_processes.airflow_env(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__CORE__TEST_CONNECTION="Enabled",
        AIRFLOW__WEBSERVER__WORKERS="1",
        AIRFLOW__WEBSERVER__SECRET_KEY="test-only-secret",
        AIRFLOW__WEBSERVER__WEB_SERVER_HOST="127.0.0.1",
        AIRFLOW__WEBSERVER__WEB_SERVER_PORT=str(port),
    )
    env.pop("AIRFLOW_CONN_OMNI_DEFAULT", None)
    args = ["webserver", "--hostname", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with airflow_processes.serving(args, env, home, "/health", port) as url:
        yield url


def _field(name: str) -> str:
    """The CSS selector of one of our extra fields (Airflow 2 prefixes its id with the type)."""
    return f"#extra__{CONNECTION_TYPE}__{name}"


def _open_add_form(page: Any, webserver: str, conn_id: str) -> None:
    """Open "Add Connection", enter ``conn_id`` and choose our type in the select2 drop-down."""
    page.goto(f"{webserver}/connection/add")
    page.locator("#conn_id").fill(conn_id)
    page.locator("#select2-conn_type-container").click()
    page.locator(".select2-search__field").fill("Infobip")
    page.locator(".select2-results__option", has_text=HOOK_NAME).click()
    assert page.locator("#select2-conn_type-container").get_attribute("title") == HOOK_NAME
    assert page.locator("#conn_type").input_value() == CONNECTION_TYPE
    page.locator(_field("auth_type")).wait_for(state="visible")


def _press_test(page: Any) -> tuple[dict[str, Any], Any]:
    """Press Test; return the API's answer and the alert the page shows for it."""
    with page.expect_response("**/api/v1/connections/test") as answer:
        page.locator("#test-connection").click()
    result = answer.value.json()
    alert = page.locator(".container .row .alert", has_text=result["message"])
    alert.wait_for(state="visible")
    return result, alert


def test_add_connection_form_shows_our_fields_then_test_and_save(
    webserver: str, browser: Any, omni_sandbox: Any, artifacts_dir: Path, proxy: ForwardProxy
) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.set_default_timeout(30_000)
    try:
        _open_add_form(page, webserver, CONN_ID)

        # Our extra fields: label, help text and default, in a visible row each.
        for name, field in CONN_FIELDS.items():
            row = page.locator("tr", has=page.locator(_field(name)))
            assert row.is_visible(), name
            assert row.locator("label").inner_text().strip() == field["label"]
            assert row.locator(".help-block").inner_text().strip() == field["description"]
        assert page.locator(_field("auth_type")).input_value() == "api_key"
        assert page.locator(_field("connect_timeout")).input_value() == "10"
        assert page.locator(_field("read_timeout")).input_value() == "30"
        assert page.locator(_field("max_retries")).input_value() == "3"
        assert page.locator(_field("namespace")).input_value() == "airflow"
        assert page.locator(_field("verify_ssl")).is_checked()
        assert not page.locator(_field("show_full_numbers")).is_checked()
        # A ticked box is sent as its value by Test: "true" (wtforms' default "y" is no boolean).
        assert page.locator(_field("verify_ssl")).get_attribute("value") == "true"

        # Standard fields: relabelled, with placeholders; schema, port and Extra are hidden.
        for name, label in UI_FIELD_BEHAVIOUR["relabeling"].items():
            # the page's script relabels the fields once loaded: wait for it, then check
            page.locator(f"label[for={name}]", has_text=label).wait_for(state="visible")
            assert page.locator(f"label[for={name}]").inner_text().strip() == label, name
            assert page.locator(f"#{name}").is_visible(), name
        for name, placeholder in UI_FIELD_BEHAVIOUR["placeholders"].items():
            assert page.locator(f"#{name}").get_attribute("placeholder") == placeholder, name
        for name in UI_FIELD_BEHAVIOUR["hidden-fields"]:
            assert page.locator(f"label[for={name}]").is_hidden(), name

        page.locator("#host").fill(omni_sandbox.url)
        page.locator("#password").fill(omni_sandbox.api_key)
        page.locator(_field("connect_timeout")).fill("5")
        page.locator(_field("read_timeout")).fill("12")
        page.locator(_field("namespace")).fill("fab-ui")
        # The proxy password is typed into a masked input; Test below goes through the proxy.
        assert page.locator(_field("proxy_password")).get_attribute("type") == "password"
        page.locator(_field("proxy_url")).fill(proxy.url.replace("//", f"//{PROXY_USER}@"))
        page.locator(_field("proxy_password")).fill(PROXY_PASSWORD)
        page.screenshot(path=str(artifacts_dir / "connection-form-airflow-2.11.png"), full_page=True)

        # Test: the webserver runs OmniHook.test_connection() on the form's values against the sandbox.
        result, alert = _press_test(page)
        page.screenshot(path=str(artifacts_dir / "connection-test-airflow-2.11.png"), full_page=True)
        assert result["status"] is True, result
        assert (
            alert.inner_text()
            .strip()
            .startswith(f"Connected to {omni_sandbox.url} through the proxy {proxy.url}: ")
        )
        assert proxy.log.paths() == ["GET /omni/1/scenarios"]

        # Save: Airflow confirms it, the list shows the connection, its extras have their plain names.
        page.locator("form#model_form button[type=submit]").click()
        page.locator(".alert-success", has_text="Added Row").wait_for(state="visible")
        page.goto(f"{webserver}/connection/list/")
        row = page.locator("tr", has=page.get_by_text(CONN_ID, exact=True))
        assert row.get_by_text(CONNECTION_TYPE, exact=True).is_visible()

        # Edit: the form reads the saved extras back into our fields.
        row.locator("a[href*='/connection/edit/']").click()
        assert page.locator(_field("namespace")).input_value() == "fab-ui"
        assert page.locator(_field("connect_timeout")).input_value() == "5"
        assert page.locator(_field("read_timeout")).input_value() == "12"
        assert page.locator(_field("verify_ssl")).is_checked()
        # relabelled by the page's script once loaded (CI once read "Host" before it ran)
        page.locator("label[for=host]", has_text="Base URL").wait_for(state="visible")
        assert page.locator("label[for=host]").inner_text().strip() == "Base URL"
    except Exception:
        page.screenshot(path=str(artifacts_dir / "connection-form-airflow-2.11-failure.png"), full_page=True)
        raise
    finally:
        page.close()

    saved = requests.get(f"{webserver}/api/v1/connections/{CONN_ID}", timeout=30).json()
    assert saved["conn_type"] == CONNECTION_TYPE
    assert saved["host"] == omni_sandbox.url
    assert saved["port"] is None
    extra = json.loads(saved["extra"])
    # Airflow 2 saves no empty text field (integer fields are saved as null)
    assert set(extra) == set(CONN_FIELDS) - {
        "ca_bundle",
        "default_scenario_key",
        "default_scenario_name",
        "text_footer",
        "viber_sender",
        "sms_sender",
    }
    assert extra["proxy_password"] == "***"  # the REST API redacts it
    assert extra["auth_type"] == "api_key"
    assert extra["namespace"] == "fab-ui"
    assert float(extra["connect_timeout"]) == 5
    assert float(extra["read_timeout"]) == 12
    assert int(extra["max_retries"]) == 3
    assert extra["verify_ssl"] is True
    assert extra["show_full_numbers"] is False
    assert extra["backend"] == "omni"


def test_test_button_reports_a_wrong_api_key(
    webserver: str, browser: Any, omni_sandbox: Any, artifacts_dir: Path
) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.set_default_timeout(30_000)
    try:
        _open_add_form(page, webserver, "omni_wrong_key")
        page.locator("#host").fill(omni_sandbox.url)
        page.locator("#password").fill(WRONG_KEY)
        page.locator(_field("max_retries")).fill("0")

        result, alert = _press_test(page)
        page.screenshot(
            path=str(artifacts_dir / "connection-test-wrong-key-airflow-2.11.png"), full_page=True
        )
        assert result["status"] is False, result
        shown = alert.inner_text()
        assert "Connected to" not in shown
        assert re.search(r"\b401\b|unauthori[sz]ed|api key", shown, re.IGNORECASE), shown
        assert WRONG_KEY not in page.locator("body").inner_text()
        assert WRONG_KEY not in json.dumps(result)
    except Exception:
        page.screenshot(path=str(artifacts_dir / "connection-form-airflow-2.11-failure.png"), full_page=True)
        raise
    finally:
        page.close()
