"""
The Sessions API as an ASGI application, in front of `opencode serve` instances.

Every route is under `/api/opencode/{port}`. The gateway checks the port and the
request itself, then runs the operation against the OpenCode instance on that port
with the same code the client uses in direct mode. Every error goes out as
`{"statusCode": N, "message": "..."}` with status N.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from opencode_notebook.client import AsyncOpenCodeClient
from opencode_notebook.errors import (
    APIError,
    BadRequestError,
    ConnectError,
    MessageTextRequiredError,
    OpenCodeError,
    ProtocolError,
    SessionIDRequiredError,
    SessionNotFoundError,
    TransportError,
)

__all__ = ["GatewayConfig", "GatewayError", "create_app", "parse_port_ranges"]

logger = logging.getLogger("opencode_notebook.gateway")

_DEFAULT_BODY_LIMIT = 1024 * 1024


class GatewayError(Exception):
    """An error response: `status` and the contract's `message`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


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
    * **spawner** - starts an OpenCode instance on a port where nothing answers;
      `None` to never start one.
    """

    allowed_ports: frozenset[int]
    upstream_host: str = "127.0.0.1"
    token: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    prompt_timeout: float = 600.0
    body_limit: int = _DEFAULT_BODY_LIMIT
    spawner: Spawner | None = None


class Spawner(Protocol):
    """Starts OpenCode instances on demand and stops them with the gateway."""

    async def start(self, port: int) -> None: ...

    async def stop(self) -> None: ...


def _json_response(data: Any, status: int = 200) -> Response:
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return Response(body, status_code=status, media_type="application/json")


def _error_response(status: int, message: str) -> Response:
    return _json_response({"statusCode": status, "message": message}, status)


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
        raise GatewayError(413, f"Request body too large: the limit is {limit} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise GatewayError(
                413, f"Request body too large: the limit is {limit} bytes"
            )
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise GatewayError(400, f"Invalid JSON body: {exc}") from None
    if not isinstance(data, dict):
        raise GatewayError(400, "Invalid JSON body: expected an object")
    return data


def _optional_string(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise GatewayError(400, f"Invalid field '{name}': expected a string")
    return value


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
            )
        return self._upstreams[port]

    async def close(self) -> None:
        """Close every upstream connection pool."""
        for client in self._upstreams.values():
            await client.aclose()
        self._upstreams.clear()
        if self.config.spawner is not None:
            await self.config.spawner.stop()

    def _check_token(self, request: Request) -> None:
        expected = self.config.token
        if not expected:
            return
        supplied = request.headers.get("authorization", "")
        scheme, _, token = supplied.partition(" ")
        valid = scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), expected.encode()
        )
        if not valid:
            raise GatewayError(401, "Missing or invalid token")

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
        await self.config.spawner.start(port)
        return await action(client)

    async def handle(self, request: Request) -> Response:
        """Answer one request, turning every failure into the contract's shape."""
        try:
            self._check_token(request)
            return await self._dispatch(request)
        except GatewayError as exc:
            return _error_response(exc.status, exc.message)
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
        if isinstance(exc, ConnectError):
            message = f"No OpenCode instance answers on port {port}"
            status = 502
        elif isinstance(exc, TransportError):
            status, message = 504, f"OpenCode on port {port} did not answer in time"
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
        rest = request.path_params.get("rest", "")
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
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            raise GatewayError(500, "Message text required")
        model = _prompt_model(body)
        agent = _optional_string(body, "agent")
        reply = await self._call(
            port,
            lambda client: client.prompt(session_id, text, model=model, agent=agent),
        )
        return _json_response(reply.to_json())


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
]


def _match_route(rest: str, method: str) -> tuple[_Handler, str] | None:
    for pattern, handlers in _ROUTES:
        match = pattern.fullmatch(rest)
        if match is None:
            continue
        handler = handlers.get(method)
        if handler is None:
            allowed = ", ".join(handlers)
            raise GatewayError(405, f"Method {method} not allowed here: use {allowed}")
        session_id = match.groupdict().get("id")
        return handler, "" if session_id is None else _session_id(session_id)
    return None


def create_app(config: GatewayConfig) -> Starlette:
    """Build the gateway's ASGI application."""
    gateway = Gateway(config)

    async def health(request: Request) -> Response:
        try:
            gateway._check_token(request)
        except GatewayError as exc:
            return _error_response(exc.status, exc.message)
        ports = sorted(config.allowed_ports)
        return _json_response({"healthy": True, "ports": ports[:100]})

    async def not_found(request: Request) -> Response:
        return _error_response(404, f"Not found: {request.method} {request.url.path}")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        yield
        await gateway.close()

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    routes = [
        Route("/api/health", health, methods=["GET"]),
        Route("/api/opencode/{port}", gateway.handle, methods=methods),
        Route("/api/opencode/{port}/{rest:path}", gateway.handle, methods=methods),
        Route("/{rest:path}", not_found, methods=methods),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.gateway = gateway
    return app
