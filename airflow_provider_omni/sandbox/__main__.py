"""Command line: ``omni-sandbox`` / ``python -m airflow_provider_omni.sandbox``."""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow_provider_omni.sandbox.server import OmniSandbox

_EPILOG = """\
faults: a repeatable --fault SPEC of comma-separated options: endpoint (advanced, reports, logs,
scenarios.list, scenarios.create, scenarios.get, scenarios.update, token or *), status (400-599),
times, rate (0..1), latency (real seconds), drop, retry_after, process, answer.
  'endpoint=advanced,status=503,times=2'       refused before processing: nothing accepted
  'endpoint=advanced,status=500,process=true'  the send IS accepted, then a 500
  'endpoint=advanced,drop=true,process=true'   accepted, then the connection is dropped
  'endpoint=advanced,latency=2,process=true'   accepted, the answer comes 2 s later
  'endpoint=advanced,answer=empty,process=true'  accepted, then a 200 with an empty body
answer (endpoint advanced only) answers HTTP 200 with a wrong body: empty (no body), empty_object
({}), request_error (a 200 carrying Infobip's requestError), no_messages ({"bulkId", "messages":
[]}), wrong_bulk_id (the real answer with another bulkId), missing_messages (the real answer
without its last message), html (a text/html page). With process=true the send is accepted first
(logs and reports show it); without it (the default) nothing is accepted.

logs lag: --logs-lag SECONDS makes a message appear in GET /omni/1/logs only SECONDS real seconds
after the request that accepted it (whatever the time scale), as Infobip's logs are not
guaranteed to be immediate. Reports are not delayed.

latency: --latency SECONDS adds real seconds to every OMNI request before it is answered (not the
admin and token routes), and --latency-per-destination SECONDS adds that much more per destination
of a POST /omni/1/advanced. Concurrent requests wait side by side. '--latency 0.15
--latency-per-destination 0.00005': about a real Infobip round trip over a WAN (a bulk of 1000
waits 0.2 s). GET /_sandbox/sends lists each send's received and answered times, bulkId,
destinations and status; /_sandbox/stats shows max_in_flight per endpoint.

admin API (/_sandbox/: stats, config, personas, faults, clock/advance, reset, requests, sends):
it shows phone numbers and the API key. With an admin token (--admin-token, 'admin_token' in
--config, or $OMNI_SANDBOX_ADMIN_TOKEN) every admin route but /_sandbox/health needs the header
'Authorization: Bearer <token>' (or 'X-Sandbox-Token: <token>'), else 401. A --host other than
loopback (127.0.0.0/8, ::1, localhost) REQUIRES a token: without one the command refuses to start
(exit code 2). Prefer the environment variable: a command-line argument is visible to other users.

Every number (flags, config file, admin API) must be finite: nan and inf are refused.
"""


def finite_float(text: str) -> float:
    """Parse a finite number (an ``argparse`` type): ``nan`` and ``inf`` are refused."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``omni-sandbox``."""
    parser = argparse.ArgumentParser(
        prog="omni-sandbox",
        description="A local server that behaves like Infobip's OMNI failover API (Viber first, SMS "
        "fallback). Personas by the phone number's last digit: 0-5 Viber user, 6-7 no Viber (SMS "
        "delivered), 8 unreachable (SMS undeliverable), 9 silent (expires).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to listen on (default 127.0.0.1); anything but loopback needs an admin token",
    )
    parser.add_argument("--port", type=int, default=8089, help="port (default 8089; 0 for a free one)")
    parser.add_argument(
        "--api-key", default=None, help="API key accepted as 'App <key>' (default sandbox-key)"
    )
    parser.add_argument(
        "--admin-token",
        default=None,
        metavar="TOKEN",
        help="token the /_sandbox/ admin API requires (default $OMNI_SANDBOX_ADMIN_TOKEN); "
        "required when --host is not loopback",
    )
    parser.add_argument(
        "--time-scale",
        type=finite_float,
        default=None,
        help="simulated seconds per real second (default 60: one simulated minute per second)",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="seed of ids, delays and random faults (default 0)"
    )
    parser.add_argument(
        "--logs-lag",
        type=finite_float,
        default=None,
        metavar="SECONDS",
        help="real seconds before an accepted message shows in GET /omni/1/logs (default 0)",
    )
    parser.add_argument(
        "--latency",
        type=finite_float,
        default=None,
        metavar="SECONDS",
        help="real seconds added to every OMNI request before its answer (default 0, at most 60); "
        "'--latency 0.15 --latency-per-destination 0.00005': about a real Infobip round trip over a WAN",
    )
    parser.add_argument(
        "--latency-per-destination",
        type=finite_float,
        default=None,
        metavar="SECONDS",
        help="real seconds more per destination of a POST /omni/1/advanced (default 0)",
    )
    parser.add_argument(
        "--config",
        default=None,
        help="JSON or YAML file of settings, personas, faults and admin_token",
    )
    parser.add_argument("--no-rate-limits", action="store_true", help="do not enforce Infobip's rate limits")
    parser.add_argument(
        "--report-style",
        default=None,
        help="comma-separated: final, per_step, fallback_new_message_id, intermediate (default final)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="inject a fault, e.g. 'endpoint=advanced,status=503,times=2', "
        "'endpoint=reports,latency=2', 'endpoint=advanced,drop=true,process=true', "
        "'endpoint=advanced,answer=empty,process=true', 'endpoint=*,status=500,rate=0.1' "
        "(repeatable; see below)",
    )
    parser.add_argument(
        "--ssl-certfile",
        default=None,
        metavar="PEM",
        help="serve https:// with this certificate (chain); needs --ssl-keyfile",
    )
    parser.add_argument("--ssl-keyfile", default=None, metavar="PEM", help="the certificate's private key")
    parser.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    return parser


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _sandbox(args: argparse.Namespace) -> OmniSandbox:
    """Build (not start) the sandbox from the command line; raise ``ValueError`` on a bad value."""
    from airflow_provider_omni.sandbox.server import OmniSandbox, load_config_file
    from airflow_provider_omni.sandbox.state import parse_fault_spec

    values: dict[str, Any] = load_config_file(args.config) if args.config else {}
    if args.report_style:
        values["report_style"] = args.report_style
    if args.logs_lag is not None:
        values["logs_lag"] = args.logs_lag
    if args.latency is not None:
        values["request_latency"] = args.latency
    if args.latency_per_destination is not None:
        values["latency_per_destination"] = args.latency_per_destination
    faults = [parse_fault_spec(spec) for spec in args.fault]
    return OmniSandbox(
        api_key=args.api_key or values.pop("api_key", "sandbox-key"),
        time_scale=args.time_scale if args.time_scale is not None else values.pop("time_scale", 60.0),
        seed=args.seed if args.seed is not None else values.pop("seed", 0),
        host=args.host,
        port=args.port,
        config=values,
        rate_limits=not args.no_rate_limits,
        faults=faults,
        log_level=args.log_level,
        admin_token=args.admin_token,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
    )


def banner(sandbox: OmniSandbox) -> str:
    """Return the start-up line: where the sandbox listens and whether its admin API is protected
    (never the token itself)."""
    if sandbox.admin_token:
        admin = "protected: send the admin token as 'Authorization: Bearer <token>'"
    else:
        admin = "not protected (no admin token)"
    return f"OMNI sandbox listening on {sandbox.url}  (admin API {sandbox.url}/_sandbox/ {admin})"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sandbox in the foreground until interrupted."""
    args = build_parser().parse_args(argv)
    try:
        sandbox = _sandbox(args)
        sandbox.start()
    except (ValueError, TypeError, OSError) as exc:
        print(f"omni-sandbox: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    print(banner(sandbox), flush=True)
    print(f"AIRFLOW_CONN_OMNI_DEFAULT='{json.dumps(sandbox.airflow_connection())}'", flush=True)
    try:
        thread = sandbox._thread
        while thread is not None and thread.is_alive():
            thread.join(timeout=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
