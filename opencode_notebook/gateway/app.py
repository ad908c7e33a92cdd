"""
The Sessions API as an ASGI application, in front of `opencode serve` instances.

Every route is under `/api/opencode/{port}`. The gateway checks the port and the
request itself, then runs the operation against the OpenCode instance on that port
with the same code the client uses in direct mode. Every error goes out as
`{"statusCode": N, "message": "..."}` with status N.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route, request_response
from starlette.types import ASGIApp, Receive, Scope, Send

from opencode_notebook.client import AsyncOpenCodeClient
from opencode_notebook.errors import (
    APIError,
    BadRequestError,
    ConnectError,
    MessageTextRequiredError,
    OpenCodeError,
    PromptAbortedError,
    PromptTimeoutError,
    ProtocolError,
    RequestTimeoutError,
    SessionIDRequiredError,
    SessionNotFoundError,
    TransportError,
)
from opencode_notebook.gateway.openapi import build_document
from opencode_notebook.models import PromptReply
from opencode_notebook.prompt_stream import AsyncPromptStream
from opencode_notebook.streaming import StreamEvent, event_to_json

__all__ = ["GatewayConfig", "GatewayError", "create_app", "parse_port_ranges"]

logger = logging.getLogger("opencode_notebook.gateway")

_DEFAULT_BODY_LIMIT = 1024 * 1024

# A streamed prompt sends a comment line when it has had nothing to send for this
# many seconds, so that clients and proxies keep the connection open.
_KEEPALIVE_SECONDS = 10.0


# Every connection the gateway opens to OpenCode stays open for the next request:
# with httpx's default of 20 kept, more concurrent clients meant a new TCP
# connection, and its setup, for most requests.
_UPSTREAM_LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=256)


class _UpstreamTransport(httpx.AsyncHTTPTransport):
    """The transport to OpenCode, which requests uncompressed responses."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        # OpenCode gzips its responses on request. On loopback that only costs CPU
        # on both sides, and the list of sessions is tens of kilobytes.
        request.headers["Accept-Encoding"] = "identity"
        return await super().handle_async_request(request)


class GatewayError(Exception):
    """An error response: `status`, the contract's `message` and extra headers."""

    def __init__(
        self, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def parse_port_ranges(specs: list[str]) -> frozenset[int]:
    """
    Parse allow-list entries such as `3100`, `3100-3109` or `3100,3102`.

    Raises `ValueError` naming the entry that is not a port or a range of ports.
    """
    ports: set[int] = set()
    for spec in specs:
        for item in spec.split(","):
            text = item.strip()
            match = re.fullmatch(r"(\d{1,5})(?:-(\d{1,5}))?", text)
            low = int(match.group(1)) if match else 0
            high = int(match.group(2) or low) if match else 0
            if not match or not 1 <= low <= high <= 65535:
                raise ValueError(
                    f"Invalid port or range {text!r}: give a port such as 3100 or a "
                    "range such as 3100-3109."
                )
            ports.update(range(low, high + 1))
    return frozenset(ports)


@dataclass(frozen=True)
class GatewayConfig:
    """
    Settings of a gateway.

    * **allowed_ports** - the OpenCode ports it serves; any other is refused with
      403 before a connection is opened.
    * **upstream_host** - where the OpenCode instances listen.
    * **token** - when set, every request needs `Authorization: Bearer <token>`.
    * **timeout**, **prompt_timeout** - seconds to wait for OpenCode on ordinary
      calls and on prompts.
    * **body_limit** - the largest request body accepted, in bytes.
    * **spawner** - starts an OpenCode instance on a port where nothing listens;
      `None` to never start one.
    * **cors_origins** - browser origins allowed to call the gateway from
      another site, such as `http://localhost:8888`; empty turns CORS off.
    """

    allowed_ports: frozenset[int]
    upstream_host: str = "127.0.0.1"
    token: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    prompt_timeout: float = 600.0
    body_limit: int = _DEFAULT_BODY_LIMIT
    spawner: Spawner | None = None
    cors_origins: tuple[str, ...] = ()


class Spawner(Protocol):
    """Starts OpenCode instances on demand and stops them with the gateway."""

    async def start(self, port: int) -> None: ...

    async def stop(self) -> None: ...


def _json_response(data: Any, status: int = 200) -> Response:
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return Response(body, status_code=status, media_type="application/json")


def _error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    response = _json_response({"statusCode": status, "message": message}, status)
    response.headers.update(headers or {})
    return response


def _token_matches(scope: Scope, expected: str) -> bool:
    supplied = b""
    for name, value in scope["headers"]:
        if name == b"authorization":
            supplied = value
    scheme, _, token = supplied.partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(
        token.strip(), expected.encode()
    )


class _RequireToken:
    """Reject with 401 every HTTP request without `Authorization: Bearer <token>`."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _token_matches(scope, self.token):
            await self.app(scope, receive, send)
            return
        response = _error_response(
            401,
            "Missing or invalid token: send the gateway's token as "
            "'Authorization: Bearer <token>'",
            {"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)


def _parse_port(raw: str) -> int:
    if not re.fullmatch(r"[0-9]{1,5}", raw) or not 1 <= int(raw) <= 65535:
        raise GatewayError(500, "Invalid port")
    return int(raw)


def _session_id(raw: str) -> str:
    if not raw.strip():
        raise GatewayError(500, "Session ID required")
    return raw


async def _read_json(request: Request, limit: int) -> dict[str, Any]:
    """Read a JSON object body; an empty body is an empty object."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise GatewayError(
            413, f"Request body too large: the limit is {limit} bytes. Send less text."
        )
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise GatewayError(
                413,
                f"Request body too large: the limit is {limit} bytes. Send less text.",
            )
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise GatewayError(400, f"Invalid JSON body: {exc}") from None
    except RecursionError:
        raise GatewayError(400, "Invalid JSON body: nested too deeply") from None
    try:
        # JSON escapes can spell lone surrogates, which no UTF-8 text can carry.
        json.dumps(data, ensure_ascii=False).encode()
    except UnicodeEncodeError as exc:
        lone = exc.object[exc.start : exc.end]
        raise GatewayError(
            400, f"Invalid JSON body: {lone!r} is a lone surrogate, not valid Unicode"
        ) from None
    if not isinstance(data, dict):
        raise GatewayError(400, "Invalid JSON body: expected an object")
    return data


def _optional_string(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise GatewayError(400, f"Invalid field '{name}': expected a string")
    return value


def _sse(data: Mapping[str, Any]) -> str:
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return f"data: {text}\n\n"


def _prompt_args(
    body: Mapping[str, Any],
) -> tuple[str, dict[str, str] | None, str | None]:
    """Return the text, model and agent of a prompt request's body."""
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise GatewayError(500, "Message text required")
    return text, _prompt_model(body), _optional_string(body, "agent")


async def _start_stream(
    client: AsyncOpenCodeClient,
    session_id: str,
    text: str,
    model: dict[str, str] | None,
    agent: str | None,
) -> AsyncPromptStream:
    stream = client.stream_prompt(session_id, text, model=model, agent=agent)
    # As with a plain prompt, a client that disconnects leaves the turn running;
    # the abort route stops it.
    stream.abort_on_close = False
    await stream.start()
    return stream


def _prompt_model(body: Mapping[str, Any]) -> dict[str, str] | None:
    model = body.get("model")
    if model is None:
        return None
    valid = isinstance(model, dict) and all(
        isinstance(model.get(key), str) and model[key].strip()
        for key in ("providerID", "modelID")
    )
    if not valid:
        raise GatewayError(
            400,
            "Invalid field 'model': expected an object with string "
            "'providerID' and 'modelID'",
        )
    return {"providerID": model["providerID"], "modelID": model["modelID"]}


class Gateway:
    """The routes, and one direct client per OpenCode port."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self._upstreams: dict[int, AsyncOpenCodeClient] = {}

    def upstream(self, port: int) -> AsyncOpenCodeClient:
        """Return the client of the OpenCode instance on an allowed port."""
        if port not in self.config.allowed_ports:
            raise GatewayError(403, "Port not allowed")
        if port not in self._upstreams:
            self._upstreams[port] = AsyncOpenCodeClient.direct(
                f"http://{self.config.upstream_host}:{port}",
                timeout=self.config.timeout,
                prompt_timeout=self.config.prompt_timeout,
                transport=_UpstreamTransport(limits=_UPSTREAM_LIMITS),
            )
        return self._upstreams[port]

    async def close(self) -> None:
        """Close every upstream connection pool."""
        for client in self._upstreams.values():
            await client.aclose()
        self._upstreams.clear()
        if self.config.spawner is not None:
            await self.config.spawner.stop()

    async def _call(
        self, port: int, action: Callable[[AsyncOpenCodeClient], Awaitable[Any]]
    ) -> Any:
        client = self.upstream(port)
        try:
            return await action(client)
        except ConnectError:
            if self.config.spawner is None:
                raise
        logger.info("Nothing answers on port %d; starting OpenCode there", port)
        try:
            await self.config.spawner.start(port)
        except RuntimeError as exc:
            raise GatewayError(
                502, f"Cannot start OpenCode on port {port}: {exc}"
            ) from exc
        return await action(client)

    async def handle(self, request: Request) -> Response:
        """Answer one request, turning every failure into the contract's shape."""
        try:
            return await self._dispatch(request)
        except GatewayError as exc:
            return _error_response(exc.status, exc.message, exc.headers)
        except OpenCodeError as exc:
            status, message = self._upstream_failure(request, exc)
            return _error_response(status, message)
        except ValueError as exc:
            return _error_response(400, str(exc))

    def _upstream_failure(
        self, request: Request, exc: OpenCodeError
    ) -> tuple[int, str]:
        port = request.path_params.get("port", "?")
        if isinstance(exc, SessionNotFoundError):
            return 404, "Session not found"
        if isinstance(exc, SessionIDRequiredError | MessageTextRequiredError):
            return 500, exc.message
        if isinstance(exc, BadRequestError) and exc.response is None:
            return 400, exc.message
        if isinstance(exc, PromptAbortedError):
            status, message = 502, f"Prompt aborted on port {port}: {exc.message}"
        elif isinstance(exc, ConnectError):
            message = f"No OpenCode instance answers on port {port}"
            status = 502
        elif isinstance(exc, RequestTimeoutError):
            limit = self.config.timeout
            if isinstance(exc, PromptTimeoutError):
                limit = self.config.prompt_timeout
            status = 504
            message = f"OpenCode on port {port} did not answer within {limit:g} s"
        elif isinstance(exc, TransportError):
            status = 502
            message = (
                f"OpenCode on port {port} closed the connection without answering: "
                f"{exc.__cause__ or exc}"
            )
        elif isinstance(exc, ProtocolError):
            status = 502
            message = f"OpenCode on port {port} returned an unexpected answer: {exc}"
        elif isinstance(exc, APIError):
            status = 502
            message = f"OpenCode on port {port} failed: {exc.message}"
            if exc.ref:
                message += f" (ref {exc.ref})"
        else:
            status, message = 502, f"OpenCode on port {port} failed: {exc}"
        logger.warning(
            "%s %s failed with %d: %s",
            request.method,
            request.url.path,
            status,
            message,
        )
        return status, message

    async def _dispatch(self, request: Request) -> Response:
        port = _parse_port(request.path_params["port"])
        rest = _encoded_rest(request)
        method = request.method
        route = _match_route(rest, method)
        if route is None:
            raise GatewayError(404, f"Not found: {method} {request.url.path}")
        handler, session_id = route
        self.upstream(port)
        return await handler(self, request, port, session_id)

    async def list_sessions(self, request: Request, port: int, _: str) -> Response:
        sessions = await self._call(port, lambda client: client.list_sessions())
        return _json_response([session.to_json() for session in sessions])

    async def create_session(self, request: Request, port: int, _: str) -> Response:
        body = await _read_json(request, self.config.body_limit)
        title = _optional_string(body, "title")
        parent_id = _optional_string(body, "parentID")
        if parent_id is not None and not parent_id.strip():
            raise GatewayError(404, "Session not found")
        session = await self._call(
            port, lambda client: client.create_session(title, parent_id)
        )
        return _json_response(session.to_json())

    async def get_session(
        self, request: Request, port: int, session_id: str
    ) -> Response:
        session = await self._call(port, lambda client: client.get_session(session_id))
        return _json_response(session.to_json())

    async def delete_session(
        self, request: Request, port: int, session_id: str
    ) -> Response:
        await self._call(port, lambda client: client.delete_session(session_id))
        return _json_response({"success": True})

    async def list_messages(
        self, request: Request, port: int, session_id: str
    ) -> Response:
        messages = await self._call(
            port, lambda client: client.list_messages(session_id)
        )
        return _json_response({"messages": [m.to_json() for m in messages]})

    async def prompt(self, request: Request, port: int, session_id: str) -> Response:
        body = await _read_json(request, self.config.body_limit)
        text, model, agent = _prompt_args(body)
        reply = await self._call(
            port,
            lambda client: client.prompt(session_id, text, model=model, agent=agent),
        )
        return _json_response(reply.to_json())

    async def prompt_stream(
        self, request: Request, port: int, session_id: str
    ) -> Response:
        """Stream a prompt's progress as server-sent events (see docs/streaming.md)."""
        body = await _read_json(request, self.config.body_limit)
        text, model, agent = _prompt_args(body)
        # Failures up to here, and while the prompt is sent, answer with the
        # contract's JSON error; later ones become an `error` event.
        stream = await self._call(
            port,
            lambda client: _start_stream(client, session_id, text, model, agent),
        )
        return StreamingResponse(
            self._stream_events(request, stream),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _stream_events(
        self, request: Request, stream: AsyncPromptStream
    ) -> AsyncIterator[str]:
        yield _sse(
            {
                "type": "start",
                "sessionId": stream.session_id,
                "userMessageId": stream.user_message_id,
            }
        )
        # The stream is read by a task, so that a quiet turn can be waited for
        # with a timeout (and a keep-alive line) without cancelling the read.
        queue: asyncio.Queue[StreamEvent | Exception] = asyncio.Queue()

        async def pump() -> None:
            try:
                async for event in stream:
                    await queue.put(event)
            except Exception as exc:
                await queue.put(exc)

        task = asyncio.create_task(pump())
        try:
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), _KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if isinstance(item, Exception):
                    yield _sse(self._stream_failure(request, item))
                    return
                yield _sse(event_to_json(item))
                if isinstance(item, PromptReply):
                    return
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await stream.aclose()

    def _stream_failure(self, request: Request, exc: Exception) -> dict[str, Any]:
        if isinstance(exc, PromptAbortedError):
            return {
                "type": "aborted",
                "messageId": exc.message_id,
                "response": exc.partial_text,
            }
        if isinstance(exc, OpenCodeError):
            status, message = self._upstream_failure(request, exc)
        else:
            logger.error(
                "%s %s failed while streaming",
                request.method,
                request.url.path,
                exc_info=exc,
            )
            status, message = 500, "Internal gateway error: see the gateway's log"
        return {"type": "error", "statusCode": status, "message": message}

    async def abort(self, request: Request, port: int, session_id: str) -> Response:
        """Stop the turn running in a session."""
        await self._call(port, lambda client: client.abort(session_id))
        return _json_response({"success": True})


_Handler = Callable[[Gateway, Request, int, str], Awaitable[Response]]

# Each route: a pattern over the path after `/api/opencode/{port}/`, and a handler
# per method. The session id may be empty or blank so that it can be reported as
# "Session ID required" rather than as an unknown route.
_ROUTES: list[tuple[re.Pattern[str], dict[str, _Handler]]] = [
    (re.compile(r"sessions/?"), {"GET": Gateway.list_sessions}),
    (re.compile(r"session/create/?"), {"POST": Gateway.create_session}),
    (
        re.compile(r"session/(?P<id>[^/]*)/?"),
        {"GET": Gateway.get_session, "DELETE": Gateway.delete_session},
    ),
    (re.compile(r"session/(?P<id>[^/]*)/messages/?"), {"GET": Gateway.list_messages}),
    (re.compile(r"session/(?P<id>[^/]*)/prompt/?"), {"POST": Gateway.prompt}),
    (
        re.compile(r"session/(?P<id>[^/]*)/prompt/stream/?"),
        {"POST": Gateway.prompt_stream},
    ),
    (re.compile(r"session/(?P<id>[^/]*)/abort/?"), {"POST": Gateway.abort}),
]


def _encoded_rest(request: Request) -> str:
    """
    Return the path after `/api/opencode/{port}/`, still percent-encoded.

    Routes are matched before decoding, so that a session id may contain `/`.
    """
    raw = request.scope.get("raw_path")
    path = raw.decode("latin-1") if raw else request.url.path
    parts = path.split("/", 4)
    return parts[4] if len(parts) == 5 else ""


def _match_route(rest: str, method: str) -> tuple[_Handler, str] | None:
    for pattern, handlers in _ROUTES:
        match = pattern.fullmatch(rest)
        if match is None:
            continue
        handler = handlers.get(method)
        if handler is None:
            allowed = ", ".join(handlers)
            raise GatewayError(
                405,
                f"Method {method} not allowed here: use {allowed}",
                {"Allow": allowed},
            )
        session_id = match.groupdict().get("id")
        if session_id is None:
            return handler, ""
        return handler, _session_id(unquote(session_id))
    return None


def create_app(config: GatewayConfig) -> Starlette:
    """Build the gateway's ASGI application."""
    gateway = Gateway(config)

    async def health(request: Request) -> Response:
        ports = sorted(config.allowed_ports)
        return _json_response({"healthy": True, "ports": ports[:100]})

    document = _json_response(build_document(config))

    async def openapi(request: Request) -> Response:
        return document

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        yield
        await gateway.close()

    routes = [
        Route("/api/health", health, methods=["GET"]),
        Route("/api/openapi.json", openapi, methods=["GET"]),
        Route("/api/opencode/{port}", _AnyMethod(gateway.handle)),
        _route_any_path("/api/opencode/{port}/{rest:path}", gateway.handle),
    ]
    middleware = []
    if config.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(config.cors_origins),
                allow_methods=["GET", "POST", "DELETE"],
                allow_headers=["Authorization", "Content-Type"],
            )
        )
    if config.token:
        middleware.append(Middleware(_RequireToken, token=config.token))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: _http_exception, Exception: _server_error},
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    return app


def _route_any_path(
    path: str, handler: Callable[[Request], Awaitable[Response]]
) -> Route:
    """Build a route whose `path` parameter also matches line breaks."""
    route = Route(path, _AnyMethod(handler))
    # Starlette's `path` convertor is `.*`, which stops at a decoded `%0A`.
    route.path_regex = re.compile(route.path_regex.pattern, re.DOTALL)
    return route


class _AnyMethod:
    """An endpoint that takes every HTTP method, so the handler answers 405 itself."""

    def __init__(self, handler: Callable[[Request], Awaitable[Response]]) -> None:
        self.app = request_response(handler)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = exc.headers or {}
    message = exc.detail
    if exc.status_code == 404:
        message = f"Not found: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"Method {request.method} not allowed here: use {headers['Allow']}"
    return _error_response(exc.status_code, message, headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    # Starlette re-raises the exception after this response, so the server logs it.
    return _error_response(500, "Internal gateway error: see the gateway's log")
