"""Command line: ``omni-sandbox`` / ``python -m airflow_provider_omni.sandbox``."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``omni-sandbox``."""
    parser = argparse.ArgumentParser(
        prog="omni-sandbox",
        description="A local server that behaves like Infobip's OMNI failover API (Viber first, SMS "
        "fallback). Personas by the phone number's last digit: 0-5 Viber user, 6-7 no Viber (SMS "
        "delivered), 8 unreachable (SMS undeliverable), 9 silent (expires).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8089, help="port (default 8089; 0 for a free one)")
    parser.add_argument(
        "--api-key", default=None, help="API key accepted as 'App <key>' (default sandbox-key)"
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=None,
        help="simulated seconds per real second (default 60: one simulated minute per second)",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="seed of ids, delays and random faults (default 0)"
    )
    parser.add_argument("--config", default=None, help="JSON or YAML file of settings, personas and faults")
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
        "'endpoint=*,status=500,rate=0.1' (repeatable)",
    )
    parser.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    return parser


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sandbox in the foreground until interrupted."""
    args = build_parser().parse_args(argv)

    from airflow_provider_omni.sandbox.server import OmniSandbox, load_config_file
    from airflow_provider_omni.sandbox.state import parse_fault_spec

    values: dict[str, Any] = load_config_file(args.config) if args.config else {}
    if args.report_style:
        values["report_style"] = args.report_style
    try:
        faults = [parse_fault_spec(spec) for spec in args.fault]
        sandbox = OmniSandbox(
            api_key=args.api_key or values.pop("api_key", "sandbox-key"),
            time_scale=args.time_scale
            if args.time_scale is not None
            else float(values.pop("time_scale", 60.0)),
            seed=args.seed if args.seed is not None else int(values.pop("seed", 0)),
            host=args.host,
            port=args.port,
            config=values,
            rate_limits=not args.no_rate_limits,
            faults=faults,
            log_level=args.log_level,
        )
        sandbox.start()
    except (ValueError, TypeError, OSError) as exc:
        print(f"omni-sandbox: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    print(f"OMNI sandbox listening on {sandbox.url}  (admin: {sandbox.url}/_sandbox/stats)", flush=True)
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
