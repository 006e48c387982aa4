"""Provider metadata: what Airflow's providers manager, the connection form and the CLI see."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
import types
from importlib.metadata import distribution, entry_points
from pathlib import Path
from typing import Any

import airflow
import pytest
from jsonschema import Draft7Validator

from airflow_provider_omni import __version__
from airflow_provider_omni.get_provider_info import (
    CONN_FIELDS,
    CONNECTION_TYPE,
    UI_FIELD_BEHAVIOUR,
    get_provider_info,
)
from airflow_provider_omni.hooks.omni import OmniHook
from tests.airflow_compat import AIRFLOW_V_3_0_PLUS, AIRFLOW_V_3_1_PLUS, AIRFLOW_V_3_2_PLUS

AIRFLOW_DIR = Path(airflow.__file__).parent


def test_package_name_is_the_distribution_name() -> None:
    dist = distribution("airflow-provider-omni")
    info = get_provider_info()
    assert info["package-name"] == dist.metadata["Name"]
    assert info["versions"][0] == dist.version == __version__


def test_entry_point_points_at_get_provider_info() -> None:
    (entry,) = [
        e
        for e in entry_points(group="apache_airflow_provider")
        if e.dist and e.dist.name == "airflow-provider-omni"
    ]
    assert entry.load() is get_provider_info


def test_provider_info_matches_airflows_runtime_schema() -> None:
    schema = json.loads((AIRFLOW_DIR / "provider_info.schema.json").read_text())
    Draft7Validator(schema).validate(get_provider_info())


def test_provider_info_matches_provider_yaml_schema() -> None:
    schema = json.loads((AIRFLOW_DIR / "provider.yaml.schema.json").read_text())
    # ``state`` and ``source-date-epoch`` (and, in Airflow 2's schema, ``dependencies``) are build-time
    # fields of Apache's own provider.yaml files; a third-party provider's runtime info has none of them.
    build_time = {"state", "source-date-epoch", "dependencies"}
    relaxed = copy.deepcopy(schema)
    relaxed["required"] = [r for r in schema["required"] if r not in build_time]
    Draft7Validator(relaxed).validate(get_provider_info())
    assert {"state", "source-date-epoch"} <= set(schema["required"]) - set(relaxed["required"]) <= build_time


def test_declared_modules_and_hook_class_match() -> None:
    info = get_provider_info()
    (connection,) = info["connection-types"]
    assert connection["connection-type"] == OmniHook.conn_type == CONNECTION_TYPE
    assert connection["hook-class-name"] == f"{OmniHook.__module__}.{OmniHook.__qualname__}"
    assert connection["hook-name"] == OmniHook.hook_name
    assert info["hooks"][0]["python-modules"] == [OmniHook.__module__]
    assert OmniHook.conn_name_attr == "omni_conn_id"
    assert OmniHook.default_conn_name == "omni_default"


def _fake_form_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand-ins for wtforms / flask-appbuilder / flask-babel (only on Airflow <= 3.1 webservers)."""

    class Field:
        def __init__(self, label: Any = None, **kwargs: Any) -> None:
            self.args = (label,)
            self.kwargs = kwargs

    def make(name: str) -> type:
        return type(name, (Field,), {})

    class AnyOf:
        def __init__(self, values: list[str]) -> None:
            self.values = values

    class NumberRange:
        def __init__(self, min: Any = None, max: Any = None) -> None:
            self.min, self.max = min, max

    modules = {
        "wtforms": {
            "BooleanField": make("BooleanField"),
            "IntegerField": make("IntegerField"),
            "StringField": make("StringField"),
            "PasswordField": make("PasswordField"),
        },
        "wtforms.validators": {
            "AnyOf": AnyOf,
            "any_of": AnyOf,
            "NumberRange": NumberRange,
            "Optional": type("Optional", (), {}),
            "Regexp": lambda pattern: ("Regexp", pattern),
        },
        "flask_appbuilder": {},
        "flask_appbuilder.fieldwidgets": {
            "BS3TextFieldWidget": type("BS3TextFieldWidget", (), {}),
            "BS3PasswordFieldWidget": type("BS3PasswordFieldWidget", (), {}),
        },
        "flask_babel": {"lazy_gettext": lambda text: text},
    }
    for name, attrs in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, module)


def test_legacy_form_widgets_agree_with_conn_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_form_modules(monkeypatch)
    widgets = OmniHook.get_connection_form_widgets()
    assert list(widgets) == list(CONN_FIELDS)
    kinds = {name: type(field).__name__ for name, field in widgets.items()}
    assert kinds == {
        "auth_type": "StringField",
        "connect_timeout": "StringField",
        "read_timeout": "StringField",
        "max_retries": "IntegerField",
        "verify_ssl": "BooleanField",
        "proxy_url": "StringField",
        "proxy_password": "PasswordField",
        "ca_bundle": "StringField",
        "namespace": "StringField",
        "show_full_numbers": "BooleanField",
        "default_scenario_key": "StringField",
        "default_scenario_name": "StringField",
        "default_viber_validity_minutes": "IntegerField",
        "default_sms_validity_minutes": "IntegerField",
        "backend": "StringField",
        "viber_sender": "StringField",
        "sms_sender": "StringField",
        "text_footer": "StringField",
    }
    for name, field in widgets.items():
        assert field.args[0] == CONN_FIELDS[name]["label"]
        assert field.kwargs["description"] == CONN_FIELDS[name]["description"]
        assert field.kwargs["default"] == CONN_FIELDS[name]["schema"].get("default")
    enum = [v for v in widgets["auth_type"].kwargs["validators"] if type(v).__name__ == "AnyOf"]
    assert enum[0].values == ["api_key", "basic", "oauth2"]
    backends = [v for v in widgets["backend"].kwargs["validators"] if type(v).__name__ == "AnyOf"]
    assert backends[0].values == ["omni", "messages_api"]


def test_legacy_ui_field_behaviour_agrees() -> None:
    legacy = OmniHook.get_ui_field_behaviour()
    assert legacy == {
        "hidden_fields": UI_FIELD_BEHAVIOUR["hidden-fields"],
        "relabeling": UI_FIELD_BEHAVIOUR["relabeling"],
        "placeholders": UI_FIELD_BEHAVIOUR["placeholders"],
    }


def test_providers_manager_registers_a_testable_hook() -> None:
    from airflow.providers_manager import ProvidersManager

    if AIRFLOW_V_3_2_PLUS:  # hooks are resolved by the task SDK's runtime manager
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime as HookManager
    else:
        HookManager = ProvidersManager  # type: ignore[assignment,misc]

    assert "airflow-provider-omni" in ProvidersManager().providers
    hook = HookManager().hooks[CONNECTION_TYPE]
    assert hook is not None
    assert hook.hook_class_name == "airflow_provider_omni.hooks.omni.OmniHook"
    assert hook.connection_id_attribute_name == "omni_conn_id"
    assert hook.connection_testable is True


@pytest.mark.skipif(
    not AIRFLOW_V_3_0_PLUS, reason="Airflow 2 has no React form: its Flask form is tested in Chromium"
)
def test_hook_meta_serves_our_extra_fields() -> None:
    """What GET /ui/connections/hook_meta returns (the service behind it, in a fresh interpreter as
    in a starting api-server: the providers manager must not have loaded the hooks before).

    3.0 and 3.1 build it from the hook's widgets with wtforms mocked, 3.2+ from ``conn-fields``.
    """
    code = (
        "import json\n"
        "from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService\n"
        f"(m,) = [m for m in HookMetaService.hook_meta_data() if m.connection_type == {CONNECTION_TYPE!r}]\n"
        "print('META=' + json.dumps(m.model_dump(mode='json'), default=str))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=240, env={**os.environ}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    meta = json.loads(next(line[5:] for line in done.stdout.splitlines() if line.startswith("META=")))
    assert meta["hook_name"] == "Infobip OMNI"
    if not AIRFLOW_V_3_1_PLUS and importlib.util.find_spec("flask_appbuilder") is None:
        # Airflow 3.0 renders a hook's widgets only with Flask AppBuilder installed (the FAB provider);
        # without it the form has the standard fields and the Extra JSON (documented in the README)
        assert meta["extra_fields"] is None
        return
    extra = meta["extra_fields"]
    assert extra is not None
    assert set(extra) == set(CONN_FIELDS)
    assert extra["auth_type"]["schema"]["enum"] == ["api_key", "basic", "oauth2"]
    assert extra["max_retries"]["value"] == 3
    standard = meta["standard_fields"]
    assert standard is not None
    assert standard["host"]["title"] == "Base URL"
    assert standard["password"]["title"] == "API key / password / client secret"
    assert standard["port"]["hidden"] is True


def test_airflow_providers_list_shows_the_provider() -> None:
    cli = Path(sys.executable).parent / "airflow"
    result = subprocess.run(
        [str(cli), "providers", "list", "--output", "json"],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "airflow-provider-omni" in result.stdout


def test_every_module_and_class_the_metadata_names_imports() -> None:
    import importlib

    info = get_provider_info()
    modules = [
        m
        for kind in ("hooks", "operators", "sensors", "triggers")
        for e in info[kind]
        for m in e["python-modules"]
    ]
    for module in modules:
        importlib.import_module(module)
    for path in info["notifications"] + [info["connection-types"][0]["hook-class-name"]]:
        module, name = path.rsplit(".", 1)
        assert hasattr(importlib.import_module(module), name), path
