"""
`PromptStream` and `AsyncPromptStream`: what `stream_prompt()` returns.

Each runs the steps of one turn (`turns.py`) with its client's connection pool,
hands the turn's events to the consumer, and ends with the `PromptReply`. Leaving
early (closing the stream, breaking out of a `with` block, Ctrl-C, a cancelled
task) aborts the turn on the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncGenerator, Iterator
from typing import TYPE_CHECKING, Any, Self

import httpx

from opencode_notebook.errors import OpenCodeError, ProtocolError
from opencode_notebook.models import PromptReply
from opencode_notebook.operations import Call
from opencode_notebook.streaming import (
    ReplyText,
    StreamEvent,
    TextDelta,
    aiter_payloads,
    iter_payloads,
)
from opencode_notebook.turns import (
    Action,
    DirectTurn,
    Emit,
    GatewayTurn,
    OpenEvents,
    ReadEvent,
    Sleep,
    Started,
    StreamBroken,
)

if TYPE_CHECKING:
    from opencode_notebook.client import AsyncOpenCodeClient, OpenCodeClient

__all__ = ["AsyncPromptStream", "PromptStream"]

logger = logging.getLogger("opencode_notebook")

_EVENT_STREAM = "text/event-stream"


class _StreamState:
    """State shared by the sync and async streams: the turn and its progress."""

    def __init__(self, session_id: str, turn: DirectTurn | GatewayTurn) -> None:
        self.session_id = session_id
        self.abort_on_close = True
        self.reply: PromptReply | None = None
        self._turn = turn
        self._driver = turn.run()
        self._text = ReplyText()
        self._pending: list[StreamEvent] = []
        self._send_value: Any = None
        self._throw: BaseException | None = None
        self._locked = False
        self._started = False
        self._finished = False

    @property
    def user_message_id(self) -> str | None:
        """The id of the prompt's user message, once the prompt was accepted."""
        return self._turn.user_message_id

    @property
    def text(self) -> str:
        """The reply text streamed so far (see `streaming.ReplyText`)."""
        return self._text.text

    @property
    def finished(self) -> bool:
        """Whether the stream ended: replied, failed, or closed."""
        return self._finished

    def _next_action(self) -> Action:
        if self._throw is not None:
            error, self._throw = self._throw, None
            return self._driver.throw(error)
        value, self._send_value = self._send_value, None
        return self._driver.send(value)

    def _take(self, action: Emit) -> StreamEvent:
        event = action.event
        if isinstance(event, TextDelta):
            self._text.add(event)
        elif isinstance(event, PromptReply):
            self.reply = event
        return event

    def _open_request(
        self, http: httpx.Client | httpx.AsyncClient, action: OpenEvents
    ) -> httpx.Request:
        connect = http.timeout.connect
        return http.build_request(
            action.method,
            action.path,
            params=action.params,
            json=action.json,
            headers={"Accept": _EVENT_STREAM},
            timeout=httpx.Timeout(action.read_timeout, connect=connect),
        )

    @staticmethod
    def _check_event_stream(response: httpx.Response) -> None:
        # OpenCode returns its web page, with status 200, for unknown routes.
        content_type = response.headers.get("content-type", "")
        if not content_type.startswith(_EVENT_STREAM):
            raise ProtocolError(
                f"Expected an event stream from {response.request.url}, got "
                f"{content_type or 'no content type'}.",
                request=response.request,
                response=response,
            )


class PromptStream(_StreamState):
    """
    The events of one streamed prompt, ending with its `PromptReply`.

    Iterate it, ideally inside `with`, so that leaving the block early stops the
    agent's turn::

        with client.stream_prompt(session_id, "Explain this") as stream:
            for event in stream:
                ...

    `text` is the reply text so far, `reply` the final reply once it arrived.
    `abort()` stops the turn; the iteration then ends with `PromptAbortedError`.
    Set `abort_on_close` to `False` to let the turn run on when the stream is
    closed early. Prompts from one client to one session run one at a time: the
    stream holds the session's lock from its start until it ends.
    """

    def __init__(
        self,
        client: OpenCodeClient,
        turn: DirectTurn | GatewayTurn,
        lock: threading.Lock,
    ) -> None:
        super().__init__(turn.session_id, turn)
        self._client = client
        self._lock = lock
        self._response: httpx.Response | None = None
        self._payloads: Iterator[dict[str, Any]] | None = None

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> StreamEvent:
        if self._pending:
            return self._pending.pop(0)
        if self._finished:
            raise StopIteration
        event = self._guarded(stop_at_start=False)
        if event is None:
            raise StopIteration
        return event

    def start(self) -> None:
        """
        Send the prompt and return once the server accepted it.

        Input errors, an unknown session, model or agent raise here. Iterating
        starts the stream too.
        """
        if not self._started and not self._finished:
            self._guarded(stop_at_start=True)

    def _guarded(self, stop_at_start: bool) -> StreamEvent | None:
        try:
            return self._advance(stop_at_start)
        except Exception:
            self._shutdown(abort=False)
            raise
        except BaseException:
            # A KeyboardInterrupt or SystemExit while the turn runs aborts it.
            self._shutdown(abort=True)
            raise

    def _advance(self, stop_at_start: bool) -> StreamEvent | None:
        if not self._locked:
            self._lock.acquire()
            self._locked = True
        while True:
            try:
                action = self._next_action()
            except StopIteration:
                self._shutdown(abort=False)
                return None
            if isinstance(action, Emit):
                event = self._take(action)
                if not stop_at_start:
                    return event
                self._pending.append(event)
            elif isinstance(action, Started):
                self._started = True
                if stop_at_start:
                    return None
            else:
                self._perform(action)

    def _perform(self, action: Call | OpenEvents | ReadEvent | Sleep) -> None:
        if isinstance(action, Call):
            try:
                self._send_value = self._client._send(action, None, self.session_id)
            except OpenCodeError as exc:
                self._throw = exc
        elif isinstance(action, OpenEvents):
            try:
                self._open(action)
            except OpenCodeError as exc:
                self._throw = exc
        elif isinstance(action, ReadEvent):
            self._read()
        else:
            time.sleep(action.seconds)

    def _open(self, action: OpenEvents) -> None:
        self._close_events()
        http = self._client._http
        request = self._open_request(http, action)
        started = time.perf_counter()
        try:
            response = http.send(request, stream=True)
        except httpx.TransportError as exc:
            call = Call(action.method, action.path)
            raise self._client._transport_error(call, exc, self.session_id) from exc
        try:
            if response.status_code >= 400:
                response.read()
            self._client._check_response(response, started)
            self._check_event_stream(response)
        except BaseException:
            response.close()
            raise
        self._response = response
        self._payloads = iter_payloads(response)

    def _read(self) -> None:
        if self._payloads is None:
            self._throw = StreamBroken("the event stream is not open")
            return
        try:
            self._send_value = next(self._payloads)
        except StopIteration:
            self._close_events()
            self._throw = StreamBroken("the server closed it")
        except httpx.HTTPError as exc:
            self._close_events()
            self._throw = StreamBroken(f"{type(exc).__name__}: {exc}")

    def _close_events(self) -> None:
        response, self._response, self._payloads = self._response, None, None
        if response is not None:
            response.close()

    def abort(self) -> None:
        """Stop the agent's turn; the iteration ends with `PromptAbortedError`."""
        self._turn.abort_sent = True
        self._client.abort(self.session_id)

    def close(self) -> None:
        """End the stream; a turn still running is aborted (see `abort_on_close`)."""
        self._shutdown(abort=True)

    def _shutdown(self, abort: bool) -> None:
        if self._finished:
            return
        self._finished = True
        try:
            self._driver.close()
            self._close_events()
            if abort and self._started and self.abort_on_close:
                self._abort_quietly()
        finally:
            if self._locked:
                self._locked = False
                self._lock.release()

    def _abort_quietly(self) -> None:
        try:
            self._client.abort(self.session_id)
        except OpenCodeError as exc:
            logger.warning(
                "Failed to abort the turn of session %s: %s", self.session_id, exc
            )
        else:
            logger.info("Aborted the turn of session %s", self.session_id)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A stream dropped without `close()` still frees the session's lock.
        if not getattr(self, "_finished", True):
            with contextlib.suppress(Exception):
                self._shutdown(abort=True)


class AsyncPromptStream(_StreamState):
    """
    The events of one streamed prompt, as an async iterator (see `PromptStream`)::

        async with client.stream_prompt(session_id, "Explain this") as stream:
            async for event in stream:
                ...

    Cancelling the task that iterates it aborts the turn.
    """

    def __init__(
        self,
        client: AsyncOpenCodeClient,
        turn: DirectTurn | GatewayTurn,
        lock: asyncio.Lock,
    ) -> None:
        super().__init__(turn.session_id, turn)
        self._client = client
        self._lock = lock
        self._response: httpx.Response | None = None
        self._payloads: AsyncGenerator[dict[str, Any]] | None = None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> StreamEvent:
        if self._pending:
            return self._pending.pop(0)
        if self._finished:
            raise StopAsyncIteration
        event = await self._guarded(stop_at_start=False)
        if event is None:
            raise StopAsyncIteration
        return event

    async def start(self) -> None:
        """Send the prompt and return once the server accepted it."""
        if not self._started and not self._finished:
            await self._guarded(stop_at_start=True)

    async def _guarded(self, stop_at_start: bool) -> StreamEvent | None:
        try:
            return await self._advance(stop_at_start)
        except Exception:
            await self._shutdown(abort=False)
            raise
        except BaseException:
            # A cancelled task or a KeyboardInterrupt aborts the turn.
            await self._shutdown(abort=True)
            raise

    async def _advance(self, stop_at_start: bool) -> StreamEvent | None:
        if not self._locked:
            await self._lock.acquire()
            self._locked = True
        while True:
            try:
                action = self._next_action()
            except StopIteration:
                await self._shutdown(abort=False)
                return None
            if isinstance(action, Emit):
                event = self._take(action)
                if not stop_at_start:
                    return event
                self._pending.append(event)
            elif isinstance(action, Started):
                self._started = True
                if stop_at_start:
                    return None
            else:
                await self._perform(action)

    async def _perform(self, action: Call | OpenEvents | ReadEvent | Sleep) -> None:
        if isinstance(action, Call):
            try:
                self._send_value = await self._client._send(
                    action, None, self.session_id
                )
            except OpenCodeError as exc:
                self._throw = exc
        elif isinstance(action, OpenEvents):
            try:
                await self._open(action)
            except OpenCodeError as exc:
                self._throw = exc
        elif isinstance(action, ReadEvent):
            await self._read()
        else:
            await asyncio.sleep(action.seconds)

    async def _open(self, action: OpenEvents) -> None:
        await self._close_events()
        http = self._client._http
        request = self._open_request(http, action)
        started = time.perf_counter()
        try:
            response = await http.send(request, stream=True)
        except httpx.TransportError as exc:
            call = Call(action.method, action.path)
            raise self._client._transport_error(call, exc, self.session_id) from exc
        try:
            if response.status_code >= 400:
                await response.aread()
            self._client._check_response(response, started)
            self._check_event_stream(response)
        except BaseException:
            await response.aclose()
            raise
        self._response = response
        self._payloads = aiter_payloads(response)

    async def _read(self) -> None:
        if self._payloads is None:
            self._throw = StreamBroken("the event stream is not open")
            return
        try:
            self._send_value = await anext(self._payloads)
        except StopAsyncIteration:
            await self._close_events()
            self._throw = StreamBroken("the server closed it")
        except httpx.HTTPError as exc:
            await self._close_events()
            self._throw = StreamBroken(f"{type(exc).__name__}: {exc}")

    async def _close_events(self) -> None:
        response, payloads = self._response, self._payloads
        self._response = self._payloads = None
        if payloads is not None:
            with contextlib.suppress(httpx.HTTPError):
                await payloads.aclose()
        if response is not None:
            await response.aclose()

    async def abort(self) -> None:
        """Stop the agent's turn; the iteration ends with `PromptAbortedError`."""
        self._turn.abort_sent = True
        await self._client.abort(self.session_id)

    async def aclose(self) -> None:
        """End the stream; a turn still running is aborted (see `abort_on_close`)."""
        await self._shutdown(abort=True)

    async def _shutdown(self, abort: bool) -> None:
        if self._finished:
            return
        self._finished = True
        try:
            self._driver.close()
            await self._close_events()
            if abort and self._started and self.abort_on_close:
                await self._abort_quietly()
        finally:
            if self._locked:
                self._locked = False
                self._lock.release()

    async def _abort_quietly(self) -> None:
        try:
            await self._client.abort(self.session_id)
        except OpenCodeError as exc:
            logger.warning(
                "Failed to abort the turn of session %s: %s", self.session_id, exc
            )
        else:
            logger.info("Aborted the turn of session %s", self.session_id)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # A stream dropped without `aclose()`, as after `break` in `async for`,
        # frees the session's lock at once and leaves the rest to a task.
        if getattr(self, "_finished", True):
            return
        self._finished = True
        if self._locked:
            self._locked = False
            self._lock.release()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            logger.warning(
                "A stream of session %s was dropped outside its event loop; its "
                "turn was not aborted.",
                self.session_id,
            )
            return
        task = loop.create_task(self._finalize())
        _FINALIZERS.add(task)
        task.add_done_callback(_FINALIZERS.discard)

    async def _finalize(self) -> None:
        self._driver.close()
        await self._close_events()
        if self._started and self.abort_on_close:
            await self._abort_quietly()


# Tasks that finish dropped async streams; kept here so that they are not
# garbage-collected before they run.
_FINALIZERS: set[asyncio.Task[None]] = set()
