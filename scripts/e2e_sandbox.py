"""The OMNI sandbox of ``make e2e-distributed``: ``omni-sandbox`` plus a record of every report read.

Same command line as ``omni-sandbox``, plus ``--record FILE``: one line per ``GET /omni/1/reports``
(and ``GET /omni/1/logs``) with its path, query string and answer status, so that the end-to-end run
can check that no report was taken by a request without a ``bulkId`` or ``messageId`` filter (such a
request would take other sends' reports, which are handed out once).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from airflow_provider_omni.sandbox import __main__ as sandbox_main
from airflow_provider_omni.sandbox import app as sandbox_app

RECORDED = ("/omni/1/reports", "/omni/1/logs")


class RecordReads:
    """ASGI middleware: append ``time path?query status`` for each recorded path to a file."""

    def __init__(self, app: Any, path: str) -> None:
        self.app = app
        self.handle = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 (lives with the app)
        self.lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("path") not in RECORDED:
            await self.app(scope, receive, send)
            return
        status = {"code": 0}

        async def send_and_note(message: Any) -> None:
            if message.get("type") == "http.response.start":
                status["code"] = int(message.get("status", 0))
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            query = scope.get("query_string", b"").decode("latin-1")
            with self.lock:
                self.handle.write(f"{time.time():.3f} {scope['path']}?{query} {status['code']}\n")


def main(argv: list[str]) -> int:
    """Run the sandbox with the recording middleware (``--record FILE`` is required)."""
    if "--record" not in argv:
        print("e2e_sandbox: --record FILE is required", file=sys.stderr)
        return 2
    at = argv.index("--record")
    path = argv[at + 1]
    rest = argv[:at] + argv[at + 2 :]
    create_app = sandbox_app.create_app

    def recording_app(*args: Any, **kwargs: Any) -> Any:
        return RecordReads(create_app(*args, **kwargs), path)

    sandbox_app.create_app = recording_app  # type: ignore[assignment]  # read by OmniSandbox.start()
    return sandbox_main.main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
