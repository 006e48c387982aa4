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
        "description": "Uncheck only for a local sandbox behind a self-signed certificate (for a private "
        "authority, set CA bundle path instead).",
        "schema": {"type": ["boolean", "null"], "default": True},
    },
    "proxy_url": {
        "label": "Proxy URL",
        "description": "Egress proxy for every request of this connection, e.g. "
        "http://user@proxy.example.com:3128 (http:// or https://). Empty: the HTTPS_PROXY / "
        "HTTP_PROXY / NO_PROXY environment variables apply.",
        "schema": {"type": ["string", "null"], "pattern": "^(https?://\\S+)?$"},
    },
    "proxy_password": {
        "label": "Proxy password",
        "description": "Password of the proxy user named in the Proxy URL; masked like the API key.",
        "schema": {"type": ["string", "null"], "format": "password"},
    },
    "ca_bundle": {
        "label": "CA bundle path",
        "description": "PEM file of the certificate authorities to trust for Infobip (and an https:// "
        "proxy), e.g. a corporate TLS-inspection CA. Empty: the system's and certifi's store.",
        "schema": {"type": ["string", "null"]},
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
    "default_scenario_key": {
        "label": "Default scenario key",
        "description": "Scenario the send operator and the notifier use when the task names none "
        "(task arguments win). Empty: the Default scenario name, else the account's default scenario.",
        "schema": {"type": ["string", "null"]},
    },
    "default_scenario_name": {
        "label": "Default scenario name",
        "description": "Used when neither the task nor Default scenario key names a scenario: the "
        "account's one scenario with this name (looked up once per task).",
        "schema": {"type": ["string", "null"]},
    },
    "default_viber_validity_minutes": {
        "label": "Default Viber validity (min)",
        "description": "How long Viber may try before the SMS fallback, when the task gives no "
        "viber_validity (1 to 20160). Empty: Infobip's default.",
        "schema": {"type": ["integer", "null"], "minimum": 1, "maximum": 20160},
    },
    "default_sms_validity_minutes": {
        "label": "Default SMS validity (min)",
        "description": "How long the SMS may try, when the task gives no sms_validity (1 to 2880). "
        "Empty: Infobip's default.",
        "schema": {"type": ["integer", "null"], "minimum": 1, "maximum": 2880},
    },
    "backend": {
        "label": "Backend",
        "description": "Which Infobip API the operators, sensor and notifier use: omni (/omni/1, "
        "scenarios) or messages_api (/messages-api/1, the flow inline in each request). A task's "
        "backend argument wins.",
        "schema": {"type": ["string", "null"], "enum": ["omni", "messages_api"], "default": "omni"},
    },
    "viber_sender": {
        "label": "Viber sender (Messages API)",
        "description": "The Viber Business Messages sender of the Messages API backend (OMNI keeps "
        "senders in the scenario). A task's viber_sender argument wins.",
        "schema": {"type": ["string", "null"]},
    },
    "sms_sender": {
        "label": "SMS sender (Messages API)",
        "description": "The SMS sender of the Messages API backend, e.g. InfoSMS. A task's sms_sender "
        "argument wins.",
        "schema": {"type": ["string", "null"]},
    },
    "text_footer": {
        "label": "Message footer",
        "description": "Added on a new line to every Viber and SMS text the send operator and the "
        "notifier send, e.g. 'Reply STOP to opt out'. A task's footer argument wins ('' for none).",
        "schema": {"type": ["string", "null"]},
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
