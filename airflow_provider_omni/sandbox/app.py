"""The sandbox's HTTP layer: a FastAPI app for the OMNI, Messages API and admin routes, wrapped in
a small ASGI middleware that checks the admin token, counts requests, injects faults (status,
latency, dropped connections, "process then fail", wrong 2xx answers), checks authentication (and,
for the Messages API, the key's scopes) the way Infobip does, delays answers by the configured
request latency and records the sends."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import inspect
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from airflow_provider_omni.sandbox import messages_api
from airflow_provider_omni.sandbox.messages_api import ApiError, api_error_body
from airflow_provider_omni.sandbox.state import (
    ENDPOINTS,
    Fault,
    SandboxError,
    SandboxState,
    SettingError,
    bad_request,
    error_body,
    flag,
    parse_time,
)

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_CHANNELS = (
    "SMS",
    "EMAIL",
    "VOICE",
    "PUSH",
    "VIBER",
    "LINE",
    "VKONTAKTE",
    "KAKAO_CHINGU",
    "KAKAO_ALIM",
    "WHATSAPP",
)
_GENERAL_STATUSES = ("ACCEPTED", "PENDING", "UNDELIVERABLE", "DELIVERED", "EXPIRED", "REJECTED")
_FAULT_TEXTS: dict[int, tuple[str, str]] = {
    429: ("TOO_MANY_REQUESTS", "Too many requests"),
    500: ("GENERAL_ERROR", "Something went wrong. Please contact support."),
    502: ("BAD_GATEWAY", "Bad gateway"),
    503: ("SERVICE_UNAVAILABLE", "Service temporarily unavailable"),
    504: ("GATEWAY_TIMEOUT", "Gateway timeout"),
}
UNAUTHORIZED_BODY = error_body("UNAUTHORIZED", "Invalid login details")
ADMIN_UNAUTHORIZED_BODY = error_body(
    "UNAUTHORIZED",
    "The sandbox admin API needs its admin token: 'Authorization: Bearer <token>' or "
    "'X-Sandbox-Token: <token>'",
)
#: Deepest nesting of arrays and objects accepted in a request body (Infobip's bodies need 5).
MAX_JSON_DEPTH = 64
#: Scope key that makes the send route compute its answer without accepting anything.
DRY_RUN = "omni_sandbox.dry_run"
#: Scope key of the request's :class:`Exchange`, which the send route fills in.
EXCHANGE = "omni_sandbox.exchange"
_JSON = b"application/json"
_HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Service maintenance</title></head>\n"
    b"<body><h1>We'll be back soon</h1><p>The service is under maintenance.</p></body></html>\n"
)


def endpoint_of(method: str, path: str) -> str | None:
    """Return the endpoint name (``advanced``, ``scenarios.get``, ...) of a request, or None."""
    path = path.rstrip("/") or "/"
    if path == "/omni/1/scenarios":
        return {"GET": "scenarios.list", "POST": "scenarios.create"}.get(method)
    if path.startswith("/omni/1/scenarios/") and path.count("/") == 4:
        return {"GET": "scenarios.get", "PUT": "scenarios.update"}.get(method)
    simple = {
        ("POST", "/omni/1/advanced"): "advanced",
        ("GET", "/omni/1/reports"): "reports",
        ("GET", "/omni/1/logs"): "logs",
        ("POST", "/auth/1/oauth2/token"): "token",
        **messages_api.ENDPOINT_PATHS,
    }
    return simple.get((method, path))


def error_for(endpoint: str | None, status: int, message_id: str, text: str) -> dict[str, Any]:
    """Return the error body of ``endpoint``'s API: the Messages API's ``ApiError``, or OMNI's
    ``requestError`` envelope."""
    if endpoint in messages_api.ENDPOINTS:
        return api_error_body(status)
    return error_body(message_id, text)


# -- the middleware --------------------------------------------------------------------------------


@dataclass
class Exchange:
    """One OMNI request being served: when and in which generation it arrived, and what the send
    route learnt of it (for the request latency and :meth:`~.state.SandboxState.sends`)."""

    endpoint: str
    received: float
    generation: int
    destinations: int = 0
    bulk_id: str | None = None
    dropped: bool = False


class SandboxMiddleware:
    """Admin token, counting, faults, auth, request latency and send records around the FastAPI app.

    :param app: the FastAPI app.
    :param state: the sandbox state.
    :param admin_token: when set, every ``/_sandbox/`` route but ``/_sandbox/health`` needs it.
    """

    def __init__(self, app: ASGIApp, state: SandboxState, admin_token: str | None = None) -> None:
        self.app = app
        self.state = state
        self._admin_token = admin_token.encode() if admin_token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._admin_refused(scope):
            headers = {"WWW-Authenticate": 'Bearer realm="omni-sandbox admin"'}
            await self._send_json(send, None, 401, ADMIN_UNAUTHORIZED_BODY, headers)
            return
        endpoint = endpoint_of(scope["method"], scope["path"])
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        self.state.count_request(endpoint)
        with self.state.serving(endpoint) as generation:
            exchange = Exchange(endpoint, time.time(), generation)
            if endpoint != "token":
                send = self._answering(send, exchange)
            await self._serve(endpoint, {**scope, EXCHANGE: exchange}, receive, send)

    async def _serve(self, endpoint: str, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve an OMNI or token request: faults, then authentication, then the app."""
        fault = self.state.pick_fault(endpoint)
        if fault is None:
            if await self._refused(scope, endpoint, send):
                return
            await self.app(scope, receive, self._counting(send, endpoint))
            return
        await self._faulty(fault, endpoint, scope, receive, send)

    def _admin_refused(self, scope: Scope) -> bool:
        """Tell whether the request is for a protected admin route without the admin token."""
        if self._admin_token is None or not is_protected_admin_path(scope["path"]):
            return False
        return not admin_token_matches(scope, self._admin_token)

    async def _refused(self, scope: Scope, endpoint: str, send: Send) -> bool:
        """Answer 401 (bad credentials) or 403 (a Messages API call by a key without its scope);
        return True when it did."""
        if not self._authenticated(scope, endpoint):
            body = error_for(endpoint, 401, "UNAUTHORIZED", "Invalid login details")
            await self._send_json(send, endpoint, 401, body)
            return True
        refusal = messages_api.scope_refusal(self.state.config.api_key_scopes)
        if endpoint in messages_api.ENDPOINTS and refusal is not None:
            await self._send_json(send, endpoint, 403, refusal.body())
            return True
        return False

    def _authenticated(self, scope: Scope, endpoint: str) -> bool:
        return endpoint == "token" or self.state.authenticate(_header(scope, b"authorization"))

    async def _faulty(self, fault: Fault, endpoint: str, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a request on which ``fault`` fires."""
        if fault.answer is None and not fault.process and await self._apply_fault(fault, endpoint, send):
            return
        if await self._refused(scope, endpoint, send):
            return
        if fault.answer is not None:
            await self._wrong_answer(fault, endpoint, scope, receive, send)
        elif fault.process:
            await self._process_then_fail(fault, endpoint, scope, receive, send)
        else:
            await self.app(scope, receive, self._counting(send, endpoint))

    def _answering(self, send: Send, exchange: Exchange) -> Send:
        """Wrap ``send``: hold the answer for the request latency (a reset meanwhile drops the
        connection), then record it when it is a send's."""

        @functools.wraps(send)
        async def answering_send(message: Message) -> None:
            if exchange.dropped:
                return
            if message["type"] == "http.response.start":
                delay = self._latency(exchange)
                if delay > 0:
                    await asyncio.sleep(delay)
                    if exchange.generation != self.state.generation:  # reset while waiting: forget it
                        exchange.dropped = True
                        await drop_connection(send)
                        return
                if exchange.endpoint in ("advanced", "messages"):
                    self._record_send(exchange, int(message["status"]))
            await send(message)

        return answering_send

    def _latency(self, exchange: Exchange) -> float:
        """Return the real seconds to hold the answer to ``exchange``."""
        config = self.state.config
        return config.request_latency + config.latency_per_destination * exchange.destinations

    def _record_send(self, exchange: Exchange, status: int) -> None:
        self.state.record_send(
            exchange.generation,
            received=exchange.received,
            answered=time.time(),
            bulk_id=exchange.bulk_id,
            destinations=exchange.destinations,
            status=status,
        )

    def _counting(self, send: Send, endpoint: str) -> Send:
        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.state.count_response(endpoint, int(message["status"]))
            await send(message)

        return counting_send

    async def _apply_fault(self, fault: Fault, endpoint: str, send: Send) -> bool:
        """Apply ``fault``; return True when it answered (or dropped) the request."""
        if fault.latency:
            generation = self.state.generation
            await asyncio.sleep(fault.latency)
            if generation != self.state.generation:  # reset while waiting: forget this request
                await drop_connection(send)
                return True
        if fault.drop:
            await drop_connection(send)
            return True
        if fault.status is not None:
            message_id, text = _FAULT_TEXTS.get(fault.status, ("ERROR", "Injected sandbox error"))
            headers: dict[str, str] = {}
            retry_after = (
                fault.retry_after if fault.retry_after is not None else (1 if fault.status == 429 else None)
            )
            if retry_after is not None:
                headers["Retry-After"] = str(
                    int(retry_after) if float(retry_after).is_integer() else retry_after
                )
            body = error_for(endpoint, fault.status, message_id, text)
            await self._send_json(send, endpoint, fault.status, body, headers)
            return True
        return False

    async def _process_then_fail(
        self, fault: Fault, endpoint: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        captured: list[Message] = []

        async def capture(message: Message) -> None:
            captured.append(message)

        await self.app(scope, receive, capture)
        if await self._apply_fault(fault, endpoint, send):
            return
        counting = self._counting(send, endpoint)
        for message in captured:
            await counting(message)

    async def _wrong_answer(
        self, fault: Fault, endpoint: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Handle the send (``process``) or compute its answer only, wait the fault's latency, then
        answer 200 with the wrong body ``fault.answer``.  A send that fails on its own (400) gets
        its real answer."""
        if not fault.process:
            scope = {**scope, DRY_RUN: True}
        status, headers, body = await self._capture(scope, receive)
        if await self._apply_fault(fault, endpoint, send):  # reset while waiting: dropped
            return
        if not 200 <= status < 300:
            await self._send_raw(send, endpoint, status, body, headers)
            return
        content_type, payload = wrong_answer(str(fault.answer), json.loads(body), endpoint)
        await self._send_raw(send, endpoint, 200, payload, [(b"content-type", content_type)])

    async def _capture(self, scope: Scope, receive: Receive) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Run the app; return the status, headers and body it answered."""
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))

        await self.app(scope, receive, capture)
        headers = [
            (bytes(k), bytes(v)) for k, v in start.get("headers", ()) if bytes(k).lower() != b"content-length"
        ]
        return int(start.get("status", 500)), headers, b"".join(chunks)

    async def _send_json(
        self,
        send: Send,
        endpoint: str | None,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
    ) -> None:
        raw_headers = [(b"content-type", _JSON)]
        raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        await self._send_raw(send, endpoint, status, json.dumps(body).encode(), raw_headers)

    async def _send_raw(
        self,
        send: Send,
        endpoint: str | None,
        status: int,
        payload: bytes,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        """Send a whole answer (``content-length`` added); count it under ``endpoint`` if any."""
        raw_headers = [*headers, (b"content-length", str(len(payload)).encode())]
        if endpoint is not None:
            self.state.count_response(endpoint, status)
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": payload})


def wrong_answer(kind: str, real: dict[str, Any], endpoint: str = "advanced") -> tuple[bytes, bytes]:
    """Return the content type and body of the wrong 200 answer ``kind`` (see
    :data:`~.state.ANSWER_KINDS`) to a send (of ``endpoint``) whose real answer is ``real``."""
    if kind == "empty":
        return _JSON, b""
    if kind == "html":
        return b"text/html; charset=utf-8", _HTML_PAGE
    bulk = {"bulkId": real["bulkId"]} if "bulkId" in real else {}
    bodies: dict[str, Callable[[], Any]] = {
        "empty_object": dict,
        "request_error": lambda: (
            api_error_body(500)
            if endpoint == "messages"
            else error_body("GENERAL_ERROR", "Something went wrong. Please contact support.")
        ),
        "no_messages": lambda: {**bulk, "messages": []},
        "wrong_bulk_id": lambda: {
            "bulkId": _other_bulk_id(real),
            **{k: v for k, v in real.items() if k != "bulkId"},
        },
        "missing_messages": lambda: {**real, "messages": list(real.get("messages", []))[:-1]},
    }
    return _JSON, json.dumps(bodies[kind]()).encode()


def _other_bulk_id(real: dict[str, Any]) -> str:
    """Return a bulkId (a UUID) other than the real answer's, the same for the same answer."""
    ids = ",".join(str(m.get("messageId")) for m in real.get("messages", []))
    digest = hashlib.blake2b(f"wrong|{real.get('bulkId')}|{ids}".encode(), digest_size=16).digest()
    return str(uuid.UUID(bytes=digest, version=4))


def is_protected_admin_path(path: str) -> bool:
    """Tell whether ``path`` is an admin route that needs the admin token (all but health)."""
    admin = path == "/_sandbox" or path.startswith("/_sandbox/")
    return admin and path.rstrip("/") != "/_sandbox/health"


def admin_token_matches(scope: Scope, token: bytes) -> bool:
    """Tell whether the request carries ``token`` as ``Authorization: Bearer`` or ``X-Sandbox-Token``
    (compared in constant time)."""
    bearer = b""
    scheme, _, credentials = (_raw_header(scope, b"authorization") or b"").strip().partition(b" ")
    if scheme.lower() == b"bearer":
        bearer = credentials.strip()
    header = (_raw_header(scope, b"x-sandbox-token") or b"").strip()
    by_bearer = hmac.compare_digest(bearer, token)
    by_header = hmac.compare_digest(header, token)
    return by_bearer or by_header


class _DroppedConnectionError(Exception):
    """Raised after a response start to make the server abort a connection it cannot close."""


async def drop_connection(send: Send) -> None:
    """Close the client's connection without any answer.

    uvicorn's ``send`` is a bound method of its request cycle, which holds the transport: closing
    it makes the client see the connection end with no response (``ConnectionError`` in requests).
    Elsewhere, start a response and raise, which makes the server abort the connection.  A wrapped
    ``send`` (``__wrapped__``) is unwrapped first.
    """
    send = inspect.unwrap(send)
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is not None and hasattr(transport, "close"):
        transport.close()
        for _ in range(3):
            await asyncio.sleep(0)
        return
    await send({"type": "http.response.start", "status": 500, "headers": [(b"content-length", b"1000")]})
    raise _DroppedConnectionError("sandbox fault: connection dropped")


def _raw_header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


def _header(scope: Scope, name: bytes) -> str | None:
    value = _raw_header(scope, name)
    return None if value is None else value.decode("latin-1")


# -- query parameters ------------------------------------------------------------------------------


#: The largest ``int32``, the format of every integer parameter in the document.
INT32_MAX = 2**31 - 1


def _int_param(request: Request, name: str, default: int, minimum: int = 0, maximum: int = INT32_MAX) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(name, f"{name} must be an integer, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise bad_request(name, f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def _enum_param(request: Request, name: str, allowed: tuple[str, ...]) -> str | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if raw not in allowed:
        raise bad_request(name, f"{raw!r} is not one of {', '.join(allowed)}")
    return raw


def _list_param(request: Request, name: str) -> list[str]:
    values = [part.strip() for raw in request.query_params.getlist(name) for part in raw.split(",")]
    return [value for value in values if value]


def _bool_param(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if raw.lower() in {"true", "false"}:
        return raw.lower() == "true"
    raise bad_request(name, f"{name} must be true or false, got {raw!r}")


def _time_param(request: Request, name: str) -> float | None:
    raw = request.query_params.get(name)
    return None if raw is None else parse_time(raw, name)


def parse_json(raw: bytes) -> Any:
    """Parse a JSON request body.

    :raises SandboxError: 400 when it nests arrays and objects deeper than :data:`MAX_JSON_DEPTH`
        (never a ``RecursionError``).
    :raises ValueError: when it is malformed.
    """
    try:
        body = json.loads(raw)
    except RecursionError:
        body = None
        too_deep = True
    else:
        too_deep = _deeper_than(body, MAX_JSON_DEPTH)
    if too_deep:
        raise bad_request(
            "request", f"the JSON body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep"
        )
    return body


def _deeper_than(node: Any, limit: int) -> bool:
    """Tell whether ``node`` nests lists and dicts more than ``limit`` levels (without recursion)."""
    stack = [(node, 1)] if isinstance(node, dict | list) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        raise bad_request("request", "the request has no body; a JSON object is expected")
    try:
        return parse_json(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        if "xml" in request.headers.get("content-type", ""):
            # Infobip also takes XML bodies; the sandbox (like the provider's hook) speaks JSON only
            raise bad_request("request", "the sandbox accepts JSON bodies only, not XML") from None
        raise bad_request("request", f"malformed JSON: {exc}") from None


def _destination_count(body: Any) -> int:
    """Return how many destinations a (parsed, not yet validated) send body lists."""
    destinations = body.get("destinations") if isinstance(body, dict) else None
    return len(destinations) if isinstance(destinations, list) else 0


def _answer(status: int, body: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


async def _guarded(handler: Callable[[], Awaitable[Any]], status: int = 200) -> Response:
    """Run ``handler``; a :class:`SandboxError` or any bug becomes Infobip's error envelope."""
    try:
        body = await handler()
    except SandboxError as exc:
        return _answer(exc.status, exc.body(), exc.headers)
    except Exception:
        log.exception("sandbox bug")
        return _answer(500, error_body("GENERAL_ERROR", "Something went wrong. Please contact support."))
    return _answer(status, body)


# -- the app ---------------------------------------------------------------------------------------


def create_app(state: SandboxState, admin_token: str | None = None) -> ASGIApp:
    """Return the sandbox's ASGI app serving OMNI, OAuth2 token and ``/_sandbox/`` admin routes.

    :param admin_token: when set, the admin routes (but ``/_sandbox/health``) need it.
    """
    api = FastAPI(
        title="Infobip OMNI sandbox",
        docs_url="/_sandbox/docs",
        openapi_url="/_sandbox/openapi.json",
        redoc_url=None,
    )
    _add_omni_routes(api, state)
    _add_messages_api_routes(api, state)
    _add_admin_routes(api, state)

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message_id = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "BAD_REQUEST")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_allowed_methods(api, request))
        if request.url.path.startswith("/messages-api/"):
            return _answer(exc.status_code, api_error_body(exc.status_code), headers)
        return _answer(exc.status_code, error_body(message_id, str(exc.detail)), headers)

    return SandboxMiddleware(api, state, admin_token)


def _allowed_methods(api: FastAPI, request: Request) -> list[str]:
    """Return the methods of every route of the request's path (Starlette names only its first)."""
    methods: set[str] = set()
    for route in api.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


def _add_omni_routes(api: FastAPI, state: SandboxState) -> None:
    @api.get("/omni/1/scenarios")
    async def list_scenarios(request: Request) -> Response:
        async def handle() -> Any:
            return state.list_scenarios(
                _bool_param(request, "isDefault"),
                _int_param(request, "limit", 100),
                _int_param(request, "page", 0),
            )

        return await _guarded(handle)

    @api.post("/omni/1/scenarios")
    async def create_scenario(request: Request) -> Response:
        async def handle() -> Any:
            body = await _json_body(request)
            state.check_rate_limit("scenarios.create")
            return state.create_scenario(body)

        return await _guarded(handle, 201)

    @api.get("/omni/1/scenarios/{scenario_key}")
    async def get_scenario(scenario_key: str) -> Response:
        async def handle() -> Any:
            return state.get_scenario(scenario_key)

        return await _guarded(handle)

    @api.put("/omni/1/scenarios/{scenario_key}")
    async def update_scenario(scenario_key: str, request: Request) -> Response:
        async def handle() -> Any:
            body = await _json_body(request)
            state.get_scenario(scenario_key)
            state.check_rate_limit("scenarios.update")
            return state.update_scenario(scenario_key, body)

        return await _guarded(handle)

    @api.post("/omni/1/advanced")
    async def send_advanced(request: Request) -> Response:
        async def handle() -> Any:
            # no limit by default (Infobip publishes none for sends); rate_limits.advanced sets one
            state.check_rate_limit("advanced")
            body = await _json_body(request)
            exchange = request.scope.get(EXCHANGE)
            if isinstance(exchange, Exchange):
                exchange.destinations = _destination_count(body)
            answer = state.send_advanced(body, accept=not request.scope.get(DRY_RUN, False))
            if isinstance(exchange, Exchange):
                exchange.bulk_id = answer.get("bulkId")
            return answer

        return await _guarded(handle)

    @api.get("/omni/1/reports")
    async def reports(request: Request) -> Response:
        async def handle() -> Any:
            return state.take_reports(
                bulk_id=request.query_params.get("bulkId") or None,
                message_id=request.query_params.get("messageId") or None,
                channel=_enum_param(request, "channel", _CHANNELS),
                limit=_int_param(request, "limit", 50, 0, 1000),
            )

        return await _guarded(handle)

    @api.get("/omni/1/logs")
    async def logs(request: Request) -> Response:
        async def handle() -> Any:
            state.check_rate_limit("logs")
            return state.logs(
                sender=request.query_params.get("from") or None,
                to=request.query_params.get("to") or None,
                bulk_ids=_list_param(request, "bulkId"),
                message_ids=_list_param(request, "messageId"),
                general_status=_enum_param(request, "generalStatus", _GENERAL_STATUSES),
                channel=_enum_param(request, "channel", _CHANNELS),
                sent_since=_time_param(request, "sentSince"),
                sent_until=_time_param(request, "sentUntil"),
                limit=_int_param(request, "limit", 50, 0, 1000),
                mcc=request.query_params.get("mcc") or None,
                mnc=request.query_params.get("mnc") or None,
            )

        return await _guarded(handle)

    @api.post("/auth/1/oauth2/token")
    async def token(request: Request) -> Response:
        async def handle() -> Any:
            from urllib.parse import parse_qsl

            raw = (await request.body()).decode("utf-8", "replace")
            return state.issue_token(dict(parse_qsl(raw)))

        return await _guarded(handle)


async def _guarded_api(handler: Callable[[], Awaitable[Any]]) -> Response:
    """Run a Messages API ``handler``; every refusal or bug becomes the API's ``ApiError`` body."""
    try:
        body = await handler()
    except ApiError as exc:
        return _answer(exc.status, exc.body(), exc.headers)
    except SandboxError as exc:
        error = ApiError.of(exc)
        return _answer(error.status, error.body(), error.headers)
    except Exception:
        log.exception("sandbox bug")
        return _answer(500, api_error_body(500))
    return _answer(200, body)


def _add_messages_api_routes(api: FastAPI, state: SandboxState) -> None:
    """``/messages-api/1/messages``, ``.../messages/validate`` and ``.../reports``."""

    @api.post("/messages-api/1/messages")
    async def send_messages(request: Request) -> Response:
        async def handle() -> Any:
            state.check_rate_limit("messages")
            body = await _json_body(request)
            exchange = request.scope.get(EXCHANGE)
            answer = state.messages_api.send(body, accept=not request.scope.get(DRY_RUN, False))
            if isinstance(exchange, Exchange):
                exchange.destinations = len(answer["messages"])
                exchange.bulk_id = answer["bulkId"]
            return answer

        return await _guarded_api(handle)

    @api.post("/messages-api/1/messages/validate")
    async def validate_messages(request: Request) -> Response:
        async def handle() -> Any:
            state.check_rate_limit("messages.validate")
            return state.messages_api.validate(await _json_body(request))

        return await _guarded_api(handle)

    @api.get("/messages-api/1/reports")
    async def messages_reports(request: Request) -> Response:
        async def handle() -> Any:
            names = ("bulkId", "messageId", "entityId", "applicationId", "campaignReferenceId")
            filters = {name: request.query_params.get(name) or None for name in names}
            filters["channel"] = _enum_param(request, "channel", messages_api.CHANNELS)
            limit = _int_param(request, "limit", 50, 0, 1000)
            return state.messages_api.take_reports(filters, limit)

        return await _guarded_api(handle)


def _add_admin_routes(api: FastAPI, state: SandboxState) -> None:
    async def admin(handler: Callable[[], Any], status: int = 200) -> Response:
        try:
            result = handler()
            if inspect.isawaitable(result):
                result = await result
            return _answer(status, result)
        except SandboxError as exc:
            return _answer(exc.status, exc.body(), exc.headers)
        except SettingError as exc:
            return _answer(400, error_body("BAD_REQUEST", str(exc), {exc.field: [str(exc)]}))
        except (ValueError, TypeError) as exc:
            return _answer(400, error_body("BAD_REQUEST", str(exc)))
        except Exception:
            log.exception("sandbox bug")
            return _answer(500, error_body("GENERAL_ERROR", "Something went wrong. Please contact support."))

    async def body_of(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw.strip():
            return {}
        try:
            body = parse_json(raw)
        except (ValueError, UnicodeDecodeError):
            raise bad_request("request", "malformed JSON") from None
        if not isinstance(body, dict):
            raise bad_request("request", "a JSON object is expected")
        return body

    @api.get("/_sandbox/health")
    async def health() -> Response:
        return await admin(lambda: {"status": "ok", "endpoints": list(ENDPOINTS)})

    @api.get("/_sandbox/stats")
    async def stats() -> Response:
        return await admin(state.stats)

    @api.post("/_sandbox/reset")
    async def reset(request: Request) -> Response:
        async def handle() -> dict[str, Any]:
            body = await body_of(request)
            state.reset(keep_config=flag(body.get("keep_config", False), "keep_config"))
            return {"reset": True}

        return await admin(handle)

    @api.get("/_sandbox/faults")
    async def faults() -> Response:
        return await admin(lambda: {"faults": state.faults()})

    @api.post("/_sandbox/faults")
    async def add_fault(request: Request) -> Response:
        async def handle() -> dict[str, Any]:
            return state.add_fault(**(await body_of(request)))

        return await admin(handle, 201)

    @api.delete("/_sandbox/faults")
    async def clear_faults() -> Response:
        def handle() -> dict[str, Any]:
            state.clear_faults()
            return {"faults": []}

        return await admin(handle)

    @api.get("/_sandbox/config")
    async def get_config() -> Response:
        return await admin(state.config.public)

    @api.post("/_sandbox/config")
    async def configure(request: Request) -> Response:
        async def handle() -> dict[str, Any]:
            return state.configure(await body_of(request))

        return await admin(handle)

    @api.get("/_sandbox/personas")
    async def personas() -> Response:
        return await admin(state.config.personas_public)

    @api.post("/_sandbox/personas")
    async def set_personas(request: Request) -> Response:
        async def handle() -> dict[str, Any]:
            state.configure({"personas": await body_of(request)})
            return state.config.personas_public()

        return await admin(handle)

    @api.get("/_sandbox/clock")
    async def clock() -> Response:
        return await admin(lambda: _clock_body(state))

    @api.post("/_sandbox/clock/advance")
    async def advance(request: Request) -> Response:
        async def handle() -> dict[str, Any]:
            body = await body_of(request)
            unknown = sorted(set(body) - {"seconds", "minutes", "hours"})
            if unknown:
                raise SettingError(unknown[0], f"unknown field {unknown[0]!r}; give seconds, minutes, hours")
            parts = {name: body.get(name, 0) for name in ("seconds", "minutes", "hours")}
            state.advance(parts["seconds"], minutes=parts["minutes"], hours=parts["hours"])
            return _clock_body(state)

        return await admin(handle)

    @api.get("/_sandbox/requests")
    async def recent_requests() -> Response:
        return await admin(lambda: {"requests": state.recent_requests()})

    @api.get("/_sandbox/sends")
    async def sends() -> Response:
        return await admin(lambda: {"sends": state.sends()})

    @api.get("/_sandbox/messages-api/accepted")
    async def messages_api_accepted() -> Response:
        return await admin(lambda: {"accepted": state.messages_api.accepted()})


def _clock_body(state: SandboxState) -> dict[str, Any]:
    from airflow_provider_omni.sandbox.state import format_time

    now = state.clock.now()
    return {"now": format_time(now), "epoch": now, "time_scale": state.clock.scale}
