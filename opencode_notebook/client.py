"""
`OpenCodeClient` and `AsyncOpenCodeClient`: the Sessions API from Python.

Both clients have the same methods and return the same objects, through a gateway
(`OpenCodeClient("http://localhost:3000", port=3100)`) or straight to an
`opencode serve` instance (`OpenCodeClient.direct("http://127.0.0.1:4096")`). The
operations themselves live in `operations.py`; a client only sends their calls.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Self, TypeVar

import httpx

from opencode_notebook import turns
from opencode_notebook.errors import (
    ConnectError,
    OpenCodeError,
    PromptTimeoutError,
    RequestTimeoutError,
    TransportError,
    error_from_response,
)
from opencode_notebook.models import Message, PromptReply, Session
from opencode_notebook.operations import (
    Call,
    GatewayAPI,
    ModelLike,
    NativeAPI,
    Operation,
    SessionsAPI,
    check_session_id,
)
from opencode_notebook.prompt_stream import AsyncPromptStream, PromptStream

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEFAULT_GATEWAY_URL",
    "DEFAULT_OPENCODE_URL",
    "DEFAULT_PORT",
    "AsyncOpenCodeClient",
    "OpenCodeClient",
]

logger = logging.getLogger("opencode_notebook")

T = TypeVar("T")

DEFAULT_GATEWAY_URL = "http://localhost:3000"
DEFAULT_PORT = 3100
DEFAULT_OPENCODE_URL = "http://127.0.0.1:4096"

# Connecting to a local server takes milliseconds, so a closed port fails fast. Reads
# of lists and sessions take milliseconds too; a prompt runs an agent turn, which
# can take many minutes.
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_PROMPT_TIMEOUT = 600.0

# Reads are retried this many times when the connection drops before a response.
_READ_RETRIES = 2


def _env_port() -> int:
    raw = os.environ.get("OPENCODE_PORT")
    if raw is None or not raw.strip():
        return DEFAULT_PORT
    try:
        return int(raw)
    except ValueError:
        raise ValueError(
            f"Invalid OPENCODE_PORT {raw!r}: set it to a port number such as 3100."
        ) from None


def _check_port(port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"Invalid port {port!r}: give an integer from 1 to 65535.")
    return port


def _check_url(url: str) -> str:
    example = "give one such as 'http://localhost:3000'"
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"Invalid server URL {url!r} ({exc}): {example}.") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"Invalid server URL {url!r}: {example}.")
    # The socket layer would wrap a port above 65535 onto another port.
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise ValueError(
            f"Invalid port {parsed.port} in server URL {url!r}: use a port from 1 "
            "to 65535."
        )
    return url.rstrip("/")


class _ClientBase:
    """Configuration and request handling shared by both clients."""

    def __init__(
        self,
        api: SessionsAPI,
        base_url: str,
        *,
        port: int | None,
        auth: httpx.Auth | None,
        headers: dict[str, str],
        timeout: float,
        connect_timeout: float,
        prompt_timeout: float,
    ) -> None:
        self._api = api
        self.base_url = base_url
        self.port = port
        self.direct_mode = isinstance(api, NativeAPI)
        self.timeout = timeout
        self.prompt_timeout = prompt_timeout
        self._timeouts = httpx.Timeout(timeout, connect=connect_timeout)
        self._auth = auth
        self._headers = {"Accept": "application/json", **headers}

    @staticmethod
    def _gateway_settings(
        url: str | None, port: int | None, token: str | None
    ) -> tuple[SessionsAPI, str, int, dict[str, str]]:
        base_url = _check_url(
            url or os.environ.get("OPENCODE_NOTEBOOK_URL") or DEFAULT_GATEWAY_URL
        )
        port = _check_port(_env_port() if port is None else port)
        token = (
            token if token is not None else os.environ.get("OPENCODE_NOTEBOOK_TOKEN")
        )
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return GatewayAPI(port), base_url, port, headers

    @staticmethod
    def _direct_settings(
        url: str | None, username: str | None, password: str | None
    ) -> tuple[SessionsAPI, str, httpx.Auth | None]:
        base_url = _check_url(
            url or os.environ.get("OPENCODE_URL") or DEFAULT_OPENCODE_URL
        )
        if password is None:
            password = os.environ.get("OPENCODE_SERVER_PASSWORD")
        if username is None:
            username = os.environ.get("OPENCODE_SERVER_USERNAME") or "opencode"
        auth = httpx.BasicAuth(username, password) if password else None
        return NativeAPI(), base_url, auth

    def __repr__(self) -> str:
        if self.direct_mode:
            return f"{type(self).__name__}.direct({self.base_url!r})"
        return f"{type(self).__name__}({self.base_url!r}, port={self.port})"

    def _request_timeout(self, call: Call, timeout: float | None) -> httpx.Timeout:
        if timeout is not None:
            return httpx.Timeout(timeout, connect=self._timeouts.connect)
        if call.prompt:
            return httpx.Timeout(self.prompt_timeout, connect=self._timeouts.connect)
        return self._timeouts

    def _transport_error(
        self, call: Call, exc: httpx.TransportError, session_id: str | None
    ) -> TransportError:
        try:
            request: httpx.Request | None = exc.request
        except RuntimeError:
            request = None
        where = f"{self.base_url}{call.path}"
        if isinstance(exc, httpx.ConnectTimeout | httpx.ConnectError):
            return ConnectError(
                f"Cannot connect to OpenCode at {self.base_url}: {exc}. Check that "
                "the server is running and the URL and port are right.",
                request=request,
            )
        if isinstance(exc, httpx.TimeoutException) and call.prompt and session_id:
            return PromptTimeoutError(
                f"The prompt to session {session_id} did not finish in time. The "
                "reply may still arrive: read it later with list_messages(), or "
                "raise the prompt timeout.",
                session_id=session_id,
                request=request,
            )
        if isinstance(exc, httpx.TimeoutException):
            return RequestTimeoutError(
                f"{call.method} {where} timed out: {type(exc).__name__}.",
                request=request,
            )
        return TransportError(f"{call.method} {where} failed: {exc}.", request=request)

    def _check_response(
        self, response: httpx.Response, started: float
    ) -> httpx.Response:
        elapsed_ms = (time.perf_counter() - started) * 1000
        request = response.request
        logger.info(
            "%s %s %d %.0f ms",
            request.method,
            request.url,
            response.status_code,
            elapsed_ms,
        )
        if response.status_code >= 400:
            raise error_from_response(response)
        return response

    def _native_api(self) -> NativeAPI:
        if not isinstance(self._api, NativeAPI):
            raise OpenCodeError(
                "The Sessions API has no list of models or agents: connect with "
                "OpenCodeClient.direct() to list them, or name one yourself."
            )
        return self._api

    def _turn(
        self,
        session_id: str,
        text: str,
        model: ModelLike | None,
        agent: str | None,
        timeout: float | None,
    ) -> turns.DirectTurn | turns.GatewayTurn:
        seconds = self.prompt_timeout if timeout is None else timeout
        if isinstance(self._api, NativeAPI):
            return turns.DirectTurn(
                self._api, session_id, text, model, agent, seconds, turns.TIMING
            )
        assert isinstance(self._api, GatewayAPI)
        return turns.GatewayTurn(
            self._api, session_id, text, model, agent, seconds, turns.TIMING
        )

    @staticmethod
    def _is_retryable(call: Call, exc: httpx.TransportError, attempt: int) -> bool:
        dropped = isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError)
        return call.method == "GET" and dropped and attempt < _READ_RETRIES


class OpenCodeClient(_ClientBase):
    """
    Synchronous client of the Sessions API, on `httpx.Client`.

    Parameters:

    * **url** - the gateway's URL; default `$OPENCODE_NOTEBOOK_URL`, else
      `http://localhost:3000`.
    * **port** - the OpenCode instance behind the gateway; default `$OPENCODE_PORT`,
      else 3100.
    * **token** - the gateway's bearer token; default `$OPENCODE_NOTEBOOK_TOKEN`.
    * **timeout** - seconds to wait for an ordinary response (default 30).
    * **connect_timeout** - seconds to wait for a connection (default 5).
    * **prompt_timeout** - seconds to wait for an agent turn (default 600); a
      prompt is never retried.
    * **transport** - an `httpx` transport, for tests.

    Use `OpenCodeClient.direct(url)` to talk to `opencode serve` without a gateway.
    The sync client never starts an event loop, so it works inside Jupyter's.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        port: int | None = None,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        prompt_timeout: float = DEFAULT_PROMPT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        _direct: tuple[SessionsAPI, str, httpx.Auth | None] | None = None,
    ) -> None:
        if _direct is None:
            api, base_url, port, headers = self._gateway_settings(url, port, token)
            auth = None
        else:
            (api, base_url, auth), headers = _direct, {}
        super().__init__(
            api,
            base_url,
            port=port,
            auth=auth,
            headers=headers,
            timeout=timeout,
            connect_timeout=connect_timeout,
            prompt_timeout=prompt_timeout,
        )
        self._http = httpx.Client(
            base_url=base_url,
            auth=auth,
            headers=self._headers,
            timeout=self._timeouts,
            transport=transport,
        )
        self._transport = transport
        self._prompt_locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    @classmethod
    def direct(
        cls,
        url: str | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        prompt_timeout: float = DEFAULT_PROMPT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> Self:
        """
        Connect straight to an `opencode serve` instance.

        `url` defaults to `$OPENCODE_URL`, else `http://127.0.0.1:4096`. For a
        password-protected server, `password` defaults to
        `$OPENCODE_SERVER_PASSWORD` and `username` to `$OPENCODE_SERVER_USERNAME`,
        else `opencode`.
        """
        return cls(
            timeout=timeout,
            connect_timeout=connect_timeout,
            prompt_timeout=prompt_timeout,
            transport=transport,
            _direct=cls._direct_settings(url, username, password),
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _send(
        self, call: Call, timeout: float | None, session_id: str | None
    ) -> httpx.Response:
        request = self._http.build_request(
            call.method,
            call.path,
            json=call.json,
            params=call.params,
            timeout=self._request_timeout(call, timeout),
        )
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                response = self._http.send(request)
            except httpx.TransportError as exc:
                if self._is_retryable(call, exc, attempt):
                    attempt += 1
                    continue
                raise self._transport_error(call, exc, session_id) from exc
            return self._check_response(response, started)

    def _run(
        self,
        operation: Operation[T],
        timeout: float | None = None,
        session_id: str | None = None,
    ) -> T:
        try:
            call = next(operation)
            while True:
                try:
                    response = self._send(call, timeout, session_id)
                except OpenCodeError as exc:
                    call = operation.throw(exc)
                else:
                    call = operation.send(response)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def list_sessions(self) -> list[Session]:
        """Return every session of the instance, newest update first."""
        return self._run(self._api.list_sessions())

    def create_session(
        self, title: str | None = None, parent_id: str | None = None
    ) -> Session:
        """
        Create a session; with `parent_id`, fork that session.

        A fork starts with a copy of the parent's conversation and reports the
        parent as `parent_id`.
        """
        return self._run(self._api.create_session(title, parent_id))

    def fork_session(self, session_id: str, title: str | None = None) -> Session:
        """Fork a session: the same as `create_session(title, parent_id=session_id)`."""
        return self.create_session(title, parent_id=check_session_id(session_id))

    def get_session(self, session_id: str) -> Session:
        """Return one session."""
        return self._run(self._api.get_session(session_id))

    def delete_session(self, session_id: str) -> None:
        """Delete a session permanently."""
        self._run(self._api.delete_session(session_id))

    def list_messages(self, session_id: str) -> list[Message]:
        """Return a session's messages, oldest first."""
        return self._run(self._api.list_messages(session_id))

    def prompt(
        self,
        session_id: str,
        text: str,
        *,
        model: ModelLike | None = None,
        agent: str | None = None,
        timeout: float | None = None,
    ) -> PromptReply:
        """
        Send a prompt and wait for the agent's reply.

        `model` is `"provider/model"` or `{"providerID", "modelID"}`; `agent` names
        an agent such as `build` or `plan`. `timeout` overrides the prompt timeout
        for this call. Prompts from this client to one session run one at a time.
        """
        operation = self._api.prompt(session_id, text, model, agent)
        with self._prompt_lock(session_id):
            return self._run(operation, timeout=timeout, session_id=session_id)

    def stream_prompt(
        self,
        session_id: str,
        text: str,
        *,
        model: ModelLike | None = None,
        agent: str | None = None,
        timeout: float | None = None,
    ) -> PromptStream:
        """
        Send a prompt and yield the agent's progress as it works.

        Takes the arguments of `prompt()`; `timeout` bounds the whole turn. The
        stream yields `TextDelta`, `ToolUpdate`, `StepFinish` and `SessionRetry`
        events (`opencode_notebook.streaming`), then the same `PromptReply` as
        `prompt()`. Use it in a `with` block: leaving early aborts the turn. A
        turn stopped by `abort()` ends it with `PromptAbortedError`.
        """
        turn = self._turn(session_id, text, model, agent, timeout)
        return PromptStream(self, turn, self._prompt_lock(session_id))

    def abort(self, session_id: str) -> None:
        """Stop the agent's turn in a session; the session stays usable."""
        self._run(self._api.abort(session_id))

    def list_models(self) -> list[str]:
        """
        Return the models the instance offers, as sorted `provider/model` names.

        Only a direct connection can list them; through a gateway this raises
        `OpenCodeError`.
        """
        return sorted(self._run(self._native_api().catalog()).models)

    def list_agents(self) -> list[str]:
        """Return the names of the instance's visible agents; direct mode only."""
        return list(self._run(self._native_api().catalog()).agents)

    def to_async(
        self, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> AsyncOpenCodeClient:
        """
        Return an `AsyncOpenCodeClient` for the same server, credentials and timeouts.

        The new client has its own connection pool: close it with `aclose()`.
        `transport` replaces the network, for tests. Without it, this client's own
        transport is reused when it also works asynchronously, as
        `httpx.MockTransport` does, so a mocked client stays mocked.
        """
        if transport is None and isinstance(self._transport, httpx.AsyncBaseTransport):
            transport = self._transport
        clone = AsyncOpenCodeClient(
            timeout=self.timeout,
            connect_timeout=self._timeouts.connect or DEFAULT_CONNECT_TIMEOUT,
            prompt_timeout=self.prompt_timeout,
            transport=transport,
            _direct=(self._api, self.base_url, self._auth),
        )
        # `_direct` carries the dialect (`self._api`), so a gateway client stays a
        # gateway client; its port and token header are copied here.
        clone.port = self.port
        clone._headers = dict(self._headers)
        clone._http.headers.update(self._headers)
        return clone

    def _prompt_lock(self, session_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._prompt_locks.setdefault(session_id, threading.Lock())

    def sessions_frame(self) -> pd.DataFrame:
        """Return every session as a DataFrame (see `frames.sessions_frame`)."""
        from opencode_notebook.frames import sessions_frame

        return sessions_frame(self.list_sessions())

    def messages_frame(self, session_id: str) -> pd.DataFrame:
        """Return a session's messages as a DataFrame (see `frames.messages_frame`)."""
        from opencode_notebook.frames import messages_frame

        return messages_frame(self.list_messages(session_id), session_id=session_id)


class AsyncOpenCodeClient(_ClientBase):
    """
    Asynchronous client of the Sessions API, on `httpx.AsyncClient`.

    Takes the same parameters and has the same methods as `OpenCodeClient`, as
    coroutines.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        port: int | None = None,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        prompt_timeout: float = DEFAULT_PROMPT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        _direct: tuple[SessionsAPI, str, httpx.Auth | None] | None = None,
    ) -> None:
        if _direct is None:
            api, base_url, port, headers = self._gateway_settings(url, port, token)
            auth = None
        else:
            (api, base_url, auth), headers = _direct, {}
        super().__init__(
            api,
            base_url,
            port=port,
            auth=auth,
            headers=headers,
            timeout=timeout,
            connect_timeout=connect_timeout,
            prompt_timeout=prompt_timeout,
        )
        self._http = httpx.AsyncClient(
            base_url=base_url,
            auth=auth,
            headers=self._headers,
            timeout=self._timeouts,
            transport=transport,
        )
        self._prompt_locks: dict[str, asyncio.Lock] = {}

    @classmethod
    def direct(
        cls,
        url: str | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        prompt_timeout: float = DEFAULT_PROMPT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> Self:
        """Connect straight to an `opencode serve` instance (see `OpenCodeClient`)."""
        return cls(
            timeout=timeout,
            connect_timeout=connect_timeout,
            prompt_timeout=prompt_timeout,
            transport=transport,
            _direct=cls._direct_settings(url, username, password),
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _send(
        self, call: Call, timeout: float | None, session_id: str | None
    ) -> httpx.Response:
        request = self._http.build_request(
            call.method,
            call.path,
            json=call.json,
            params=call.params,
            timeout=self._request_timeout(call, timeout),
        )
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                response = await self._http.send(request)
            except httpx.TransportError as exc:
                if self._is_retryable(call, exc, attempt):
                    attempt += 1
                    continue
                raise self._transport_error(call, exc, session_id) from exc
            return self._check_response(response, started)

    async def _run(
        self,
        operation: Generator[Call, httpx.Response, T],
        timeout: float | None = None,
        session_id: str | None = None,
    ) -> T:
        try:
            call = next(operation)
            while True:
                try:
                    response = await self._send(call, timeout, session_id)
                except OpenCodeError as exc:
                    call = operation.throw(exc)
                else:
                    call = operation.send(response)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def list_sessions(self) -> list[Session]:
        """Return every session of the instance, newest update first."""
        return await self._run(self._api.list_sessions())

    async def create_session(
        self, title: str | None = None, parent_id: str | None = None
    ) -> Session:
        """Create a session; with `parent_id`, fork that session."""
        return await self._run(self._api.create_session(title, parent_id))

    async def fork_session(self, session_id: str, title: str | None = None) -> Session:
        """Fork a session: the same as `create_session(title, parent_id=session_id)`."""
        return await self.create_session(title, parent_id=check_session_id(session_id))

    async def get_session(self, session_id: str) -> Session:
        """Return one session."""
        return await self._run(self._api.get_session(session_id))

    async def delete_session(self, session_id: str) -> None:
        """Delete a session permanently."""
        await self._run(self._api.delete_session(session_id))

    async def list_messages(self, session_id: str) -> list[Message]:
        """Return a session's messages, oldest first."""
        return await self._run(self._api.list_messages(session_id))

    async def prompt(
        self,
        session_id: str,
        text: str,
        *,
        model: ModelLike | None = None,
        agent: str | None = None,
        timeout: float | None = None,
    ) -> PromptReply:
        """Send a prompt and wait for the reply (see `OpenCodeClient.prompt`)."""
        operation = self._api.prompt(session_id, text, model, agent)
        lock = self._prompt_locks.setdefault(session_id, asyncio.Lock())
        async with lock:
            return await self._run(operation, timeout=timeout, session_id=session_id)

    def stream_prompt(
        self,
        session_id: str,
        text: str,
        *,
        model: ModelLike | None = None,
        agent: str | None = None,
        timeout: float | None = None,
    ) -> AsyncPromptStream:
        """
        Send a prompt and yield the agent's progress (see `OpenCodeClient`).

        Iterate with `async for`, in an `async with` block.
        """
        turn = self._turn(session_id, text, model, agent, timeout)
        lock = self._prompt_locks.setdefault(session_id, asyncio.Lock())
        return AsyncPromptStream(self, turn, lock)

    async def abort(self, session_id: str) -> None:
        """Stop the agent's turn in a session; the session stays usable."""
        await self._run(self._api.abort(session_id))

    async def list_models(self) -> list[str]:
        """Return the instance's models as sorted `provider/model`; direct mode only."""
        return sorted((await self._run(self._native_api().catalog())).models)

    async def list_agents(self) -> list[str]:
        """Return the names of the instance's visible agents; direct mode only."""
        return list((await self._run(self._native_api().catalog())).agents)

    async def sessions_frame(self) -> pd.DataFrame:
        """Return every session as a DataFrame (see `frames.sessions_frame`)."""
        from opencode_notebook.frames import sessions_frame

        return sessions_frame(await self.list_sessions())

    async def messages_frame(self, session_id: str) -> pd.DataFrame:
        """Return a session's messages as a DataFrame (see `frames.messages_frame`)."""
        from opencode_notebook.frames import messages_frame

        return messages_frame(
            await self.list_messages(session_id), session_id=session_id
        )

    async def gather_messages(self, session_ids: list[str]) -> dict[str, list[Message]]:
        """Fetch the messages of many sessions concurrently."""
        results = await asyncio.gather(*(self.list_messages(i) for i in session_ids))
        return dict(zip(session_ids, results, strict=True))
