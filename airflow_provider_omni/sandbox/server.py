"""Run the sandbox: in-process (:class:`OmniSandbox`, uvicorn in a thread) and its admin client."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from types import TracebackType

    from airflow_provider_omni.sandbox.state import SandboxConfig, SandboxState

#: Environment variable holding the admin token (used when none is given explicitly).
ADMIN_TOKEN_ENV = "OMNI_SANDBOX_ADMIN_TOKEN"


def is_loopback(host: str) -> bool:
    """Tell whether ``host`` is a loopback address (127.0.0.0/8, ``::1``) or ``localhost``."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_admin_token(token: Any, source: str) -> str:
    """Return ``token`` if it is usable in an HTTP header (visible ASCII, no spaces), else raise
    ``ValueError`` naming ``source`` (never the token)."""
    if not isinstance(token, str) or not token or not all("!" <= char <= "~" for char in token):
        raise ValueError(f"the admin token ({source}) must be non-empty visible ASCII without spaces")
    return token


def resolve_admin_token(given: Any, host: str, source: str = "admin_token") -> str | None:
    """Return the admin token: ``given``, else ``$OMNI_SANDBOX_ADMIN_TOKEN``, else None.

    :raises ValueError: when ``host`` is not loopback and there is no token (the admin API exposes
        phone numbers and the API key), or when the token is unusable.
    """
    if given is not None:
        token: str | None = check_admin_token(given, source)
    else:
        from_env = os.environ.get(ADMIN_TOKEN_ENV) or None
        token = check_admin_token(from_env, ADMIN_TOKEN_ENV) if from_env else None
    if token is None and not is_loopback(host):
        raise ValueError(
            f"refusing to serve the admin API (/_sandbox/) on the non-loopback address {host!r} "
            f"without an admin token: give --admin-token, admin_token= or ${ADMIN_TOKEN_ENV}"
        )
    return token


class SandboxAdminClient:
    """Client of the ``/_sandbox/`` admin API (works for an in-process or a CLI-started sandbox).

    :param url: base URL of the sandbox, e.g. ``http://127.0.0.1:8089``.
    :param timeout: seconds to wait for each admin call.
    :param admin_token: the sandbox's admin token, sent as ``Authorization: Bearer``; default
        ``$OMNI_SANDBOX_ADMIN_TOKEN`` (none if unset).
    :param verify: TLS verification of an https:// sandbox (requests' ``verify``: a CA file path).
    """

    def __init__(
        self,
        url: str,
        timeout: float = 10.0,
        *,
        admin_token: str | None = None,
        verify: bool | str = True,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        self._verify = verify
        token = admin_token if admin_token is not None else os.environ.get(ADMIN_TOKEN_ENV)
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        response = self._session.request(
            method, f"{self.url}/_sandbox/{path}", json=body, timeout=self.timeout, verify=self._verify
        )
        if response.status_code >= 400:
            raise ValueError(f"sandbox admin {method} {path}: {response.status_code} {response.text}")
        return response.json()

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()

    def health(self) -> dict[str, Any]:
        """Return ``{"status": "ok", ...}`` when the sandbox is up."""
        return self._call("GET", "health")

    def stats(self) -> dict[str, Any]:
        """Return what the sandbox received: ``requests`` per endpoint, ``destinations``,
        ``distinct_message_ids``, ``duplicate_message_ids`` ({id: count}), ``bulks`` ({bulkId: size}),
        ``responses`` ({"endpoint status": n}), ``faults_fired``, ``rate_limited``, ``max_in_flight``
        ({endpoint: most requests served at the same time}), ..."""
        return self._call("GET", "stats")

    def reset(self, keep_config: bool = False) -> None:
        """Forget scenarios, messages, reports, logs, stats, tokens and faults; restore the start-up
        configuration unless ``keep_config``."""
        self._call("POST", "reset", {"keep_config": keep_config})

    def add_fault(
        self,
        endpoint: str = "*",
        status: int | None = None,
        *,
        times: int | None = None,
        rate: float | None = None,
        latency: float | None = None,
        drop: bool = False,
        retry_after: float | None = None,
        process: bool = False,
        answer: str | None = None,
    ) -> dict[str, Any]:
        """Inject a fault on ``endpoint`` (``advanced``, ``reports``, ``logs``, ``scenarios.list``,
        ``scenarios.create``, ``scenarios.get``, ``scenarios.update``, ``token`` or ``"*"``).

        :param status: answer with this HTTP status and Infobip's error body (429, 500, 503, ...).
        :param times: only for the next N matching calls.
        :param rate: only with this probability (seeded, reproducible).
        :param latency: wait this many real seconds first (or, with ``process``, before answering).
        :param drop: close the connection without an answer.
        :param retry_after: ``Retry-After`` header in seconds (429 gets 1 by default).
        :param process: handle the request first (a send IS accepted), then fail the answer.
        :param answer: endpoint ``advanced`` only: answer HTTP 200 with a wrong body, one of
            ``empty``, ``empty_object``, ``request_error``, ``no_messages``, ``wrong_bulk_id``,
            ``missing_messages``, ``html``; with ``process=True`` the send is accepted first,
            without it nothing is accepted.
        :raises ValueError: when the sandbox refuses the fault (the message names the option).
        """
        body = {
            "endpoint": endpoint,
            "status": status,
            "times": times,
            "rate": rate,
            "latency": latency,
            "drop": drop,
            "retry_after": retry_after,
            "process": process,
            "answer": answer,
        }
        return self._call("POST", "faults", {k: v for k, v in body.items() if v is not None})

    def faults(self) -> list[dict[str, Any]]:
        """Return the active faults."""
        return self._call("GET", "faults")["faults"]

    def clear_faults(self) -> None:
        """Remove every fault."""
        self._call("DELETE", "faults")

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change settings: ``time_scale``, ``report_style`` (str or list of ``final``, ``per_step``,
        ``fallback_new_message_id``, ``intermediate``), ``personas`` ({number or last digit:
        persona}), ``rate_limits`` (bool or {endpoint: [count, window_s]}), ``rate_limit_window_scale``,
        ``log_retention_hours``, ``logs_lag`` (real seconds before a message shows in the logs),
        ``request_latency`` (real seconds added to every OMNI request), ``latency_per_destination``
        (real seconds more per destination of a send), ``default_validity``, ``prices``,
        ``delivery_delay``, ``reject_duplicate_message_ids``, ``token_ttl``, ``api_key``, ... Every
        number must be finite. Return the configuration."""
        return self._call("POST", "config", settings)

    def config(self) -> dict[str, Any]:
        """Return the current configuration (without secrets)."""
        return self._call("GET", "config")

    def personas(self) -> dict[str, Any]:
        """Return the persona definitions and which last digits and numbers use which."""
        return self._call("GET", "personas")

    def set_personas(self, personas: Mapping[str, Any]) -> dict[str, Any]:
        """Assign personas: ``{"41793026727": "silent", "3": "no_viber"}`` (numbers or last digits)."""
        return self._call("POST", "personas", dict(personas))

    def advance(self, seconds: float = 0.0, *, minutes: float = 0.0, hours: float = 0.0) -> dict[str, Any]:
        """Move the simulated clock forward; return ``{"now", "epoch", "time_scale"}``."""
        return self._call("POST", "clock/advance", {"seconds": seconds, "minutes": minutes, "hours": hours})

    def clock(self) -> dict[str, Any]:
        """Return the simulated time."""
        return self._call("GET", "clock")

    def requests(self) -> list[dict[str, Any]]:
        """Return the last (at most 100) accepted ``POST /omni/1/advanced`` bodies."""
        return self._call("GET", "requests")["requests"]

    def sends(self) -> list[dict[str, Any]]:
        """Return every answered ``POST /omni/1/advanced`` since the last reset (at most the last
        20,000), oldest first: ``{"received", "answered"`` (epoch seconds), ``"bulk_id",
        "destinations", "status"}``, to measure the concurrency and pace of sends."""
        return self._call("GET", "sends")["sends"]

    def messages_api_accepted(self) -> list[dict[str, Any]]:
        """Return every message id the Messages API accepted since the last reset: ``messageId``,
        ``destination``, ``bulkId`` and ``times`` (above 1: the same message id sent twice)."""
        return self._call("GET", "messages-api/accepted")["accepted"]


class OmniSandbox:
    """A local Infobip OMNI server (uvicorn in a background thread), as a context manager.

    ::

        with OmniSandbox(api_key="sandbox-key", time_scale=600.0, seed=0) as sb:
            sb.url, sb.api_key, sb.admin.stats()

    :param api_key: the key accepted as ``App <key>`` (and as Basic password / OAuth2 secret).
    :param time_scale: simulated seconds per real second (600: ten simulated minutes a second).
    :param seed: seed of generated ids, delays and random faults.
    :param host: interface to listen on; anything but loopback (127.0.0.0/8, ``::1``,
        ``localhost``) needs an admin token.
    :param port: port, 0 for a free one.
    :param config: more settings (a mapping, or a JSON/YAML file path), as ``configure()`` takes,
        plus ``faults`` and ``admin_token``.
    :param rate_limits: enforce Infobip's documented rate limits.
    :param faults: faults to install at start (mappings of :meth:`SandboxAdminClient.add_fault` args).
    :param log_level: uvicorn log level.
    :param logs_lag: real seconds after its acceptance before a message shows in the logs.
    :param admin_token: token the ``/_sandbox/`` admin API requires (but ``/_sandbox/health``);
        default the config's ``admin_token``, else ``$OMNI_SANDBOX_ADMIN_TOKEN``. :attr:`admin`
        sends it.
    :param ssl_certfile: serve https:// with this PEM certificate (chain); :attr:`admin` trusts it.
    :param ssl_keyfile: the certificate's private key (PEM).
    :raises ValueError: on a bad setting, or a non-loopback ``host`` without an admin token.
    """

    def __init__(
        self,
        api_key: str = "sandbox-key",
        time_scale: float = 60.0,
        seed: int = 0,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        config: Mapping[str, Any] | str | Path | None = None,
        rate_limits: bool = True,
        faults: Iterable[Mapping[str, Any]] = (),
        log_level: str = "warning",
        logs_lag: float | None = None,
        admin_token: str | None = None,
        ssl_certfile: str | Path | None = None,
        ssl_keyfile: str | Path | None = None,
    ) -> None:
        from airflow_provider_omni.sandbox.state import make_fault

        if (ssl_certfile is None) != (ssl_keyfile is None):
            raise ValueError("give both ssl_certfile and ssl_keyfile (or neither) to serve https://")
        self.ssl_certfile = str(ssl_certfile) if ssl_certfile is not None else None
        self.ssl_keyfile = str(ssl_keyfile) if ssl_keyfile is not None else None
        self.api_key = api_key
        self.host = host
        self.port = port
        self.log_level = log_level
        values = load_config_file(config) if isinstance(config, str | Path) else dict(config or {})
        file_token = values.pop("admin_token", None)
        self.admin_token = resolve_admin_token(admin_token if admin_token is not None else file_token, host)
        if logs_lag is not None:
            values["logs_lag"] = logs_lag
        self._faults = [dict(f) for f in values.pop("faults", None) or ()] + [dict(f) for f in faults]
        for fault in self._faults:
            make_fault(fault)  # a bad fault is refused here, before anything starts
        self._settings = build_config(
            api_key=api_key, time_scale=time_scale, seed=seed, config=values, rate_limits=rate_limits
        )
        self.state: SandboxState | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._admin: SandboxAdminClient | None = None

    @property
    def url(self) -> str:
        """Base URL, ``http://127.0.0.1:PORT`` (``https://`` with a certificate)."""
        host = self.host if self.host not in {"0.0.0.0", "::", ""} else "127.0.0.1"
        scheme = "https" if self.ssl_certfile else "http"
        return f"{scheme}://{host}:{self.port}"

    @property
    def admin(self) -> SandboxAdminClient:
        """Client of the admin API."""
        if self._admin is None:
            self._admin = SandboxAdminClient(
                self.url, admin_token=self.admin_token, verify=self.ssl_certfile or True
            )
        return self._admin

    def start(self) -> OmniSandbox:
        """Start serving; return self once the server answers."""
        import uvicorn

        from airflow_provider_omni.sandbox.app import create_app
        from airflow_provider_omni.sandbox.state import SandboxState

        self.state = SandboxState(self._settings)
        for fault in self._faults:
            self.state.add_fault(**fault)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # proto IPPROTO_TCP, not 0: asyncio's own loop turns Nagle off only on sockets that say TCP, and
        # with Nagle on each answer waited ~40 ms for a delayed ACK (uvloop does it for any stream socket)
        self._socket = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((self.host, self.port))
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(
            create_app(self.state, self.admin_token),
            log_level=self.log_level,
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=2,
            ssl_certfile=self.ssl_certfile,
            ssl_keyfile=self.ssl_keyfile,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="omni-sandbox", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the OMNI sandbox did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        if self._admin is not None:
            self._admin.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> OmniSandbox:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def airflow_connection(self, **extra: Any) -> dict[str, Any]:
        """Return an Airflow connection (dict) to this sandbox, API-key auth and short timeouts."""
        return connection_dict(self.url, self.api_key, **extra)

    def airflow_connection_json(self, **extra: Any) -> str:
        """Return a JSON string usable as ``AIRFLOW_CONN_OMNI_DEFAULT``."""
        return json.dumps(self.airflow_connection(**extra))


def connection_dict(url: str, api_key: str, **extra: Any) -> dict[str, Any]:
    """Return an ``infobip_omni`` Airflow connection to a sandbox at ``url``."""
    return {
        "conn_type": "infobip_omni",
        "host": url,
        "password": api_key,
        "extra": {
            "auth_type": "api_key",
            "connect_timeout": 2,
            "read_timeout": 10,
            "max_retries": 2,
            **extra,
        },
    }


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or YAML (``.yaml``/``.yml``) config file into a mapping.

    :raises ValueError: when the file is not valid JSON/YAML or not a mapping.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in {".yaml", ".yml"}:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML: {exc}") from None
    else:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the config must be a mapping")
    return data


def build_config(
    *,
    api_key: str,
    time_scale: float,
    seed: int,
    config: Mapping[str, Any] | str | Path | None = None,
    rate_limits: bool = True,
) -> SandboxConfig:
    """Return the start-up :class:`~.state.SandboxConfig` from arguments and a config mapping/file.

    The ``faults`` and ``admin_token`` of a config file are not part of the configuration.

    :raises ValueError: naming a bad or non-finite setting.
    """
    from airflow_provider_omni.sandbox.state import SandboxConfig

    settings = SandboxConfig()
    settings.update({"api_key": api_key, "time_scale": time_scale, "seed": seed})
    values = load_config_file(config) if isinstance(config, str | Path) else dict(config or {})
    values.pop("faults", None)
    values.pop("admin_token", None)
    settings.update(values)
    if not rate_limits:
        settings.rate_limits_enabled = False
    return settings
