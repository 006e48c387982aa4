"""A local server that behaves like Infobip's OMNI failover API, for offline DAG development and tests.

Run it with ``omni-sandbox --port 8089`` (or ``python -m airflow_provider_omni.sandbox``), or
in-process::

    from airflow_provider_omni.sandbox import OmniSandbox

    with OmniSandbox(api_key="sandbox-key", time_scale=600.0, seed=0) as sb:
        sb.url                      # http://127.0.0.1:PORT
        sb.admin.stats()            # what it received
        sb.airflow_connection_json()  # value for AIRFLOW_CONN_OMNI_DEFAULT

It serves the seven OMNI operations (``/omni/1/scenarios``, ``/omni/1/scenarios/{key}``,
``/omni/1/advanced``, ``/omni/1/reports``, ``/omni/1/logs``) and ``/auth/1/oauth2/token``, answers
errors with Infobip's ``requestError`` envelope, and checks ``App <key>``, ``Basic`` and
``Bearer`` authorization.

Personas: what happens to a destination is decided by the LAST DIGIT of its phone number:

====== ============== ==================================================================
digit  persona        outcome (scenario VIBER then SMS)
====== ============== ==================================================================
0-5    viber_user     delivered on VIBER (DELIVERED_TO_HANDSET, status group 3, id 5)
6-7    no_viber       Viber fails at once (EC_UNKNOWN_USER, 7002), the SMS step is sent and
                      delivered: final report on SMS, DELIVERED_TO_HANDSET
8      unreachable    no Viber, and the SMS is undeliverable: UNDELIVERABLE_NOT_DELIVERED
                      with EC_ABSENT_SUBSCRIBER on SMS
9      silent         nothing ever confirms: Viber expires after its validity (24 h by
                      default), then SMS after its own (48 h): EXPIRED_EXPIRED,
                      EC_VALIDITY_EXPIRED on SMS
====== ============== ==================================================================

One more persona, ``viber_silent`` (Viber expires, then SMS delivered), can be assigned. Personas
can be overridden per exact number or per last digit (config file ``personas``, ``--config``,
``POST /_sandbox/personas``, ``sb.admin.set_personas({"41793026729": "no_viber"})``); see them
with ``GET /_sandbox/personas``.

Time is simulated: ``time_scale`` simulated seconds pass per real second (60: a simulated minute
per second) and ``POST /_sandbox/clock/advance`` jumps ahead.  Delivery takes a few simulated
seconds (seeded jitter), validity periods run in simulated time, and every state is computed
lazily from timestamps.

Reports (``GET /omni/1/reports``) are handed out once; logs (``GET /omni/1/logs``) are
re-readable for ``log_retention_hours`` (48 simulated hours).  Report styles, combinable:
``final`` (one final report per message), ``per_step`` (a report for each failed step first),
``fallback_new_message_id`` (reports of fallback steps carry a new messageId, same bulkId and
``to``), ``intermediate`` (PENDING_ENROUTE / DELIVERED_TO_OPERATOR reports first).

Logs lag: Infobip's logs are not guaranteed to be immediate.  With ``logs_lag`` (REAL seconds,
default 0; ``OmniSandbox(logs_lag=12)``, ``--logs-lag 12``, config file, ``POST /_sandbox/config
{"logs_lag": 12}``) a message shows in the logs only that long after the request that accepted it,
whatever the time scale and clock jumps.  Reports are not delayed.

Request latency, for benchmarks: ``request_latency`` (REAL seconds, default 0, at most 60) is
added to every OMNI request before its answer (not the admin and token routes), and
``latency_per_destination`` (real seconds) more per destination of a ``POST /omni/1/advanced``
(``--latency 0.15 --latency-per-destination 0.00005``: about a real round trip over a WAN).
Concurrent requests wait side by side; a reset drops those still waiting.  ``sb.admin.sends()``
(``GET /_sandbox/sends``) lists each answered send since the last reset: ``received`` and
``answered`` (epoch seconds), ``bulk_id``, ``destinations``, ``status``; ``stats()["max_in_flight"]``
gives the most requests of each endpoint served at the same time.

Faults (``sb.admin.add_fault`` / ``POST /_sandbox/faults`` / ``--fault``): 4xx/5xx answers (429
with ``Retry-After``), latency, dropped connections, by endpoint, for the next N calls or at a
seeded rate, and "process then fail" (the send IS accepted, the answer fails), the ambiguous
failure of a send::

    sb.admin.add_fault(endpoint="advanced", status=503, times=1)      # refused, nothing accepted
    sb.admin.add_fault(endpoint="advanced", status=500, process=True)  # accepted, then a 500
    sb.admin.add_fault(endpoint="advanced", drop=True, process=True)   # accepted, then dropped
    sb.admin.add_fault(endpoint="advanced", latency=2, process=True)   # accepted, answer 2 s late

Wrong 2xx answers to a send: ``answer`` (endpoint ``advanced`` only) answers HTTP 200 with a wrong
body: ``empty`` (no body), ``empty_object`` (``{}``), ``request_error`` (a 200 carrying Infobip's
``requestError`` envelope), ``no_messages`` (``{"bulkId": <bulkId>, "messages": []}``),
``wrong_bulk_id`` (the real answer with another bulkId), ``missing_messages`` (the real answer
without its last message), ``html`` (a ``text/html`` page).  With ``process=True`` the send is
accepted and simulated first (logs and reports show it); with ``process=False`` (the default)
nothing is accepted.  A send that fails on its own (400, 401) keeps its real error::

    sb.admin.add_fault(endpoint="advanced", answer="empty", process=True, times=1)
    # omni-sandbox --fault 'endpoint=advanced,answer=empty,process=true'

Messages API (Infobip's newer API, a second backend): ``POST /messages-api/1/messages`` (send;
a message's ``failover[]`` lists the steps after its primary channel, e.g. ``VIBER_BM`` then
``SMS``, with per-channel destinations in ``byChannel``), ``POST /messages-api/1/messages/validate``
(checks without sending; 10 requests a second) and ``GET /messages-api/1/reports`` (handed out
once, kept 48 simulated hours).  Same personas, clock and faults (endpoints ``messages``,
``messages.validate``, ``messages.reports``); ``VIBER_BM`` behaves as a persona's ``VIBER``.  Errors
use that API's ``ApiError`` body (``errorCode``, ``description``, ``action``, ``violations`` naming
each field, ``resources``).  Validity is 10 s to 48 h (more is set to 48 h).  With
``receiveTriggeredFailoverReports`` a failed step gets its own report before the final one.  The
setting ``api_key_scopes`` (e.g. ``["omni-failover:manage"]``; default: every scope) makes these
routes answer 403 unless the key has ``message:send``, ``messages-api:message:send`` or
``messages-api:manage``.  Messages API messages stay apart from OMNI's reports and logs.

Admin API (``/_sandbox/``: stats, config, personas, faults, clock, reset, requests, sends): it exposes
phone numbers and the API key.  With an admin token (``OmniSandbox(admin_token=...)``,
``--admin-token``, ``admin_token`` in the config file, or ``$OMNI_SANDBOX_ADMIN_TOKEN``) every
admin route but ``/_sandbox/health`` needs ``Authorization: Bearer <token>`` (or
``X-Sandbox-Token: <token>``), else a 401 in Infobip's error envelope.  Binding anything but
loopback (127.0.0.0/8, ``::1``, ``localhost``) requires a token: without one the sandbox refuses
to start (``ValueError``; exit code 2 from the command).  ``sb.admin`` and
``SandboxAdminClient(url, admin_token=...)`` (default: the environment variable) send it.

Every number (settings, clock advance, fault options, flags, config files) must be finite: NaN
and infinities are refused with a 400 (or ``ValueError``) naming the field, and nothing changes.
A body nesting arrays and objects more than 64 levels deep gets a 400.

Importing this package is cheap: FastAPI and uvicorn are imported only when a server starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_omni.sandbox.server import OmniSandbox, SandboxAdminClient

__all__ = ["OmniSandbox", "SandboxAdminClient"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from airflow_provider_omni.sandbox import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
