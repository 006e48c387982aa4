"""A small forwarding HTTP proxy on loopback for the tests: it counts what passes through it.

It forwards absolute-form requests (``GET http://host/path``, how clients send plain http:// through
a proxy) and tunnels ``CONNECT host:port`` (how they send https://). With ``credentials`` set it
answers 407 to a request without the matching ``Proxy-Authorization: Basic``.
"""

from __future__ import annotations

import base64
import http.client
import select
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from types import TracebackType

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "transfer-encoding"}


@dataclass
class ProxyLog:
    """What passed through the proxy: ``"GET http://127.0.0.1:1234/omni/1/scenarios"`` or
    ``"CONNECT 127.0.0.1:1234"`` per request, and the requests refused with 407."""

    passed: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def paths(self) -> list[str]:
        """The forwarded requests as ``METHOD /path`` (query left out), tunnels as ``CONNECT``."""
        out = []
        for line in self.passed:
            method, target = line.split(" ", 1)
            out.append("CONNECT" if method == "CONNECT" else f"{method} {urlsplit(target).path}")
        return out


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def _authorized(self) -> bool:
        expected = self.server.expected_authorization
        if expected is None or self.headers.get("Proxy-Authorization") == expected:
            return True
        self.server.log.refused.append(f"{self.command} {self.path}")
        self.send_response(407)
        self.send_header("Proxy-Authenticate", 'Basic realm="test proxy"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False

    def do_CONNECT(self) -> None:
        if not self._authorized():
            return
        host, _, port = self.path.rpartition(":")
        try:
            upstream = socket.create_connection((host, int(port)), timeout=10)
        except OSError:
            self.send_error(502)
            return
        self.server.log.passed.append(f"CONNECT {self.path}")
        self.send_response(200, "Connection established")
        self.end_headers()
        self._relay(self.connection, upstream)
        self.close_connection = True

    @staticmethod
    def _relay(client: socket.socket, upstream: socket.socket) -> None:
        with upstream:
            sockets = [client, upstream]
            while True:
                readable, _, broken = select.select(sockets, [], sockets, 10)
                if broken or not readable:
                    return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is client else client).sendall(data)

    def _forward(self) -> None:
        if not self._authorized():
            return
        target = urlsplit(self.path)
        if target.scheme != "http" or not target.hostname:
            self.send_error(400, "absolute http:// URL expected")
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        upstream = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=30)
        try:
            path = target.path + (f"?{target.query}" if target.query else "")
            upstream.request(self.command, path or "/", body=body, headers=headers)
            answer = upstream.getresponse()
            content = answer.read()
        except OSError:
            self.send_error(502)
            return
        finally:
            upstream.close()
        self.server.log.passed.append(f"{self.command} {self.path}")
        self.send_response(answer.status, answer.reason)
        for name, value in answer.getheaders():
            if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    do_GET = do_POST = do_PUT = do_DELETE = _forward


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    expected_authorization: str | None
    log: ProxyLog


class ForwardProxy:
    """Run the proxy in a thread (a context manager); :attr:`url` is ``http://127.0.0.1:PORT``.

    :param credentials: ``(user, password)`` the proxy requires, or None for an open proxy.
    """

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self._server = _ProxyServer(("127.0.0.1", 0), _Handler)
        self._server.log = ProxyLog()
        self._server.expected_authorization = None
        if credentials is not None:
            pair = base64.b64encode(":".join(credentials).encode()).decode()
            self._server.expected_authorization = f"Basic {pair}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="test-proxy", daemon=True)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def log(self) -> ProxyLog:
        """What passed through so far."""
        return self._server.log

    def __enter__(self) -> ForwardProxy:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
