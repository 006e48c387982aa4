"""The sandbox's HTTP layer: a FastAPI app for the OMNI and admin routes, wrapped in a small ASGI
middleware that counts requests, injects faults (status, latency, dropped connections, "process
then fail") and checks authentication the way Infobip does."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from airflow_provider_omni.sandbox.state import (
    ENDPOINTS,
    Fault,
    SandboxError,
    SandboxState,
    bad_request,
    error_body,
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
    }
    return simple.get((method, path))


# -- the middleware --------------------------------------------------------------------------------


class SandboxMiddleware:
    """Counting, faults and auth around the FastAPI app.

    :param app: the FastAPI app.
    :param state: the sandbox state.
    """

    def __init__(self, app: ASGIApp, state: SandboxState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = endpoint_of(scope["method"], scope["path"])
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        self.state.count_request(endpoint)
        fault = self.state.pick_fault(endpoint)
        if fault is not None and not fault.process and await self._apply_fault(fault, endpoint, send):
            return
        if endpoint != "token" and not self.state.authenticate(_header(scope, b"authorization")):
            await self._send_json(send, endpoint, 401, UNAUTHORIZED_BODY)
            return
        if fault is not None and fault.process:
            await self._process_then_fail(fault, endpoint, scope, receive, send)
            return
        await self.app(scope, receive, self._counting(send, endpoint))

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
            await self._send_json(send, endpoint, fault.status, error_body(message_id, text), headers)
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

    async def _send_json(
        self, send: Send, endpoint: str, status: int, body: Any, headers: dict[str, str] | None = None
    ) -> None:
        payload = json.dumps(body).encode()
        raw_headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ]
        raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        self.state.count_response(endpoint, status)
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": payload})


class _DroppedConnectionError(Exception):
    """Raised after a response start to make the server abort a connection it cannot close."""


async def drop_connection(send: Send) -> None:
    """Close the client's connection without any answer.

    uvicorn's ``send`` is a bound method of its request cycle, which holds the transport: closing
    it makes the client see the connection end with no response (``ConnectionError`` in requests).
    Elsewhere, start a response and raise, which makes the server abort the connection.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is not None and hasattr(transport, "close"):
        transport.close()
        for _ in range(3):
            await asyncio.sleep(0)
        return
    await send({"type": "http.response.start", "status": 500, "headers": [(b"content-length", b"1000")]})
    raise _DroppedConnectionError("sandbox fault: connection dropped")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


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


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        raise bad_request("request", "the request has no body; a JSON object is expected")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        if "xml" in request.headers.get("content-type", ""):
            # Infobip also takes XML bodies; the sandbox (like the provider's hook) speaks JSON only
            raise bad_request("request", "the sandbox accepts JSON bodies only, not XML") from None
        raise bad_request("request", f"malformed JSON: {exc}") from None


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


def create_app(state: SandboxState) -> ASGIApp:
    """Return the sandbox's ASGI app serving OMNI, OAuth2 token and ``/_sandbox/`` admin routes."""
    api = FastAPI(
        title="Infobip OMNI sandbox",
        docs_url="/_sandbox/docs",
        openapi_url="/_sandbox/openapi.json",
        redoc_url=None,
    )
    _add_omni_routes(api, state)
    _add_admin_routes(api, state)

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message_id = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "BAD_REQUEST")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_allowed_methods(api, request))
        return _answer(exc.status_code, error_body(message_id, str(exc.detail)), headers)

    return SandboxMiddleware(api, state)


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
            return state.send_advanced(await _json_body(request))

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


def _add_admin_routes(api: FastAPI, state: SandboxState) -> None:
    async def admin(handler: Callable[[], Any], status: int = 200) -> Response:
        try:
            result = handler()
            if inspect.isawaitable(result):
                result = await result
            return _answer(status, result)
        except SandboxError as exc:
            return _answer(exc.status, exc.body(), exc.headers)
        except (ValueError, TypeError) as exc:
            return _answer(400, error_body("BAD_REQUEST", str(exc)))

    async def body_of(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
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
            state.reset(keep_config=bool(body.get("keep_config", False)))
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
            seconds = float(body.get("seconds", 0)) + 60 * float(body.get("minutes", 0))
            state.advance(seconds + 3600 * float(body.get("hours", 0)))
            return _clock_body(state)

        return await admin(handle)

    @api.get("/_sandbox/requests")
    async def recent_requests() -> Response:
        return await admin(lambda: {"requests": state.recent_requests()})


def _clock_body(state: SandboxState) -> dict[str, Any]:
    from airflow_provider_omni.sandbox.state import format_time

    now = state.clock.now()
    return {"now": format_time(now), "epoch": now, "time_scale": state.clock.scale}
