"""Provider metadata read by Airflow's providers manager (entry point ``apache_airflow_provider``).

Airflow 3.2+ builds the connection form only from ``conn-fields`` and ``ui-field-behaviour`` here;
Airflow up to 3.1 uses :meth:`OmniHook.get_connection_form_widgets` and
:meth:`OmniHook.get_ui_field_behaviour`, which are built from the same two constants below.
This module must stay cheap to import: it imports nothing from Airflow.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_omni import __version__

CONNECTION_TYPE = "infobip_omni"
HOOK_NAME = "Infobip OMNI"

#: Extra fields of the connection form, in the JSON-schema form of ``provider.yaml``.
CONN_FIELDS: dict[str, dict[str, Any]] = {
    "auth_type": {
        "label": "Auth type",
        "description": "api_key: 'App <key>' (recommended); basic: login + password; "
        "oauth2: client credentials (login = client id, password = client secret).",
        "schema": {"type": ["string", "null"], "enum": ["api_key", "basic", "oauth2"], "default": "api_key"},
    },
    "connect_timeout": {
        "label": "Connect timeout (s)",
        "description": "Seconds to wait for the TCP/TLS connection to the Infobip host.",
        "schema": {"type": ["number", "null"], "minimum": 0.1, "default": 10},
    },
    "read_timeout": {
        "label": "Read timeout (s)",
        "description": "Seconds to wait for Infobip's answer to one request.",
        "schema": {"type": ["number", "null"], "minimum": 0.1, "default": 30},
    },
    "max_retries": {
        "label": "Max retries",
        "description": "Retries of GET/PUT requests on connection errors, 429 and 5xx "
        "(exponential backoff with jitter). A send (POST) is never retried blindly.",
        "schema": {"type": ["integer", "null"], "minimum": 0, "maximum": 10, "default": 3},
    },
    "verify_ssl": {
        "label": "Verify TLS certificate",
        "description": "Uncheck only for a local sandbox behind a self-signed certificate.",
        "schema": {"type": ["boolean", "null"], "default": True},
    },
    "namespace": {
        "label": "Send namespace",
        "description": "Part of every bulk and message id this connection sends (letters, digits, '-' "
        "and '_', up to 24). Give each Airflow deployment sharing one Infobip account its own "
        "(e.g. prod, staging), so their ids never collide. Changing it makes every later send a "
        "new one.",
        "schema": {"type": ["string", "null"], "default": "airflow", "pattern": "^[A-Za-z0-9_-]{1,24}$"},
    },
    "show_full_numbers": {
        "label": "Log full phone numbers",
        "description": "Phone numbers are shortened in logs (+4179****727) unless this is checked.",
        "schema": {"type": ["boolean", "null"], "default": False},
    },
}

#: How the standard fields of the form are shown for this connection type.
UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port", "extra"],
    "relabeling": {
        "host": "Base URL",
        "login": "Username / OAuth2 client id",
        "password": "API key / password / client secret",
    },
    "placeholders": {
        "host": "xxxxx.api.infobip.com (your personal base URL; https:// is added when missing)",
        "login": "only for basic or oauth2 auth",
        "password": "API key from the Infobip portal",
    },
}


def get_provider_info() -> dict[str, Any]:
    """Return the provider metadata that Airflow's providers manager reads."""
    return {
        "package-name": "airflow-provider-omni",
        "name": "Infobip OMNI",
        "description": "Infobip OMNI failover messaging: Viber first, SMS fallback, delivery reports.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Infobip OMNI",
                "external-doc-url": "https://www.infobip.com/docs/api/channels/omni-failover",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {"integration-name": "Infobip OMNI", "python-modules": ["airflow_provider_omni.hooks.omni"]}
        ],
        "operators": [
            {
                "integration-name": "Infobip OMNI",
                "python-modules": [
                    "airflow_provider_omni.operators.scenario",
                    "airflow_provider_omni.operators.send",
                    "airflow_provider_omni.operators.branch",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": "Infobip OMNI",
                "python-modules": ["airflow_provider_omni.sensors.delivery_report"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Infobip OMNI",
                "python-modules": ["airflow_provider_omni.triggers.delivery_report"],
            }
        ],
        "notifications": ["airflow_provider_omni.notifications.omni.OmniNotifier"],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_omni.hooks.omni.OmniHook",
                "hook-name": HOOK_NAME,
                "connection-type": CONNECTION_TYPE,
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
                "conn-fields": CONN_FIELDS,
            }
        ],
    }
