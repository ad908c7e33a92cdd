"""
The steps of one streamed prompt, written once for the sync and async clients.

A turn is a generator that yields actions (an HTTP `Call`, `OpenEvents`,
`ReadEvent`, `Sleep`, `Started`, `Emit`) and receives each action's result, like
the operations in `operations.py`. `prompt_stream.py` performs the actions.

* `DirectTurn` talks to `opencode serve`: it opens `GET /event` for the session's
  directory, sends the prompt with `POST /session/{id}/prompt_async`, passes on
  the turn's events, and reads the reply from the messages endpoint once the
  session is idle. When the event stream fails, ends or goes quiet, it polls
  `GET /session/status` and reconnects with a bounded backoff.
* `GatewayTurn` reads the gateway's `POST .../prompt/stream`, and falls back to
  polling the messages endpoint if that stream ends early.
"""

from __future__ import annotations

import logging
import secrets
import string
import threading
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import httpx

from opencode_notebook import native
from opencode_notebook.errors import (
    APIError,
    OpenCodeError,
    PromptAbortedError,
    PromptTimeoutError,
    TransportError,
    UpstreamError,
    error_from_response,
)
from opencode_notebook.models import Message, PromptReply
from opencode_notebook.operations import (
    Call,
    GatewayAPI,
    ModelLike,
    NativeAPI,
    check_agent,
    check_session_id,
    check_text,
    parse_model,
)
from opencode_notebook.streaming import (
    ReplyText,
    StreamEvent,
    TextDelta,
    TurnTracker,
    event_from_json,
)

__all__ = [
    "TIMING",
    "Action",
    "DirectTurn",
    "Emit",
    "GatewayTurn",
    "OpenEvents",
    "ReadEvent",
    "Sleep",
    "Started",
    "StreamBroken",
    "StreamTiming",
    "new_message_id",
]

logger = logging.getLogger("opencode_notebook")


@dataclass(frozen=True, slots=True)
class StreamTiming:
    """
    Waiting limits of a streamed turn, in seconds.

    * **quiet** - without news of the session for this long, its status is polled.
    * **read_timeout** - an event stream that sends nothing for this long is
      treated as broken. OpenCode sends a heartbeat every 10 s.
    * **reconnects** - how many times a broken event stream is reopened in one
      turn, after `first_backoff`, doubling up to `max_backoff`. After that the
      turn is followed by polling every `poll_interval`.
    * **no_reply_grace** - how long an idle session whose prompt has no reply is
      watched before the turn counts as ended without one.
    """

    quiet: float = 5.0
    read_timeout: float = 15.0
    reconnects: int = 5
    first_backoff: float = 0.5
    max_backoff: float = 8.0
    poll_interval: float = 1.0
    no_reply_grace: float = 3.0


TIMING = StreamTiming()


@dataclass(frozen=True, slots=True)
class OpenEvents:
    """Open (or reopen) an event stream; the result is `None`."""

    method: str
    path: str
    read_timeout: float
    params: Mapping[str, str] | None = None
    json: Any = None


@dataclass(frozen=True, slots=True)
class ReadEvent:
    """Read the next event's JSON payload; `StreamBroken` is thrown at its end."""


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait, without reading anything."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Started:
    """The prompt was accepted; `user_message_id` is its user message, if known."""

    user_message_id: str | None


@dataclass(frozen=True, slots=True)
class Emit:
    """Pass an event on to the consumer."""

    event: StreamEvent


Action: TypeAlias = Call | OpenEvents | ReadEvent | Sleep | Started | Emit
Driver: TypeAlias = Generator[Action, Any, None]


class StreamBroken(Exception):
    """The event stream failed, ended, or was never opened."""


_BASE62 = string.digits + string.ascii_letters
_id_lock = threading.Lock()
_id_clock = [0, 0]


def new_message_id() -> str:
    """
    Return a new message id in OpenCode's format.

    OpenCode (1.18) writes `msg_`, 12 hex digits of `milliseconds * 0x1000 +
    counter`, then 14 random base-62 characters, and orders messages by id. The
    client names the prompt's user message itself, so that it can find the
    replies even when it missed every event.
    """
    with _id_lock:
        now = int(time.time() * 1000)
        if now != _id_clock[0]:
            _id_clock[:] = [now, 0]
        _id_clock[1] += 1
        value = (now * 0x1000 + _id_clock[1]) % (1 << 48)
    suffix = "".join(secrets.choice(_BASE62) for _ in range(14))
    return f"msg_{value:012x}{suffix}"


def _reply_from_message(message: Message) -> PromptReply:
    data = message.to_json()
    reply = {"messageId": message.id, "response": message.content}
    reply.update({key: data[key] for key in native.REPLY_FIELDS if key in data})
    return PromptReply.from_json(reply)


def _replies_to(messages: list[Message], user_message_id: str) -> list[Message]:
    return [
        message
        for message in messages
        if message.role == "assistant"
        and message.extra.get("parentID") == user_message_id
    ]


def _is_final(message: Message) -> bool:
    if message.extra.get("error"):
        return True
    finished = message.completed_at is not None
    return finished and message.extra.get("finish") != "tool-calls"


def _catch_up(text: ReplyText, message: Message) -> Generator[Action, Any, None]:
    """Emit the reply text that the events did not bring, if any."""
    parts = message.extra.get("parts")
    text_parts = [
        part
        for part in parts or []
        if isinstance(part, Mapping) and part.get("type") == "text"
    ]
    part_id = str(text_parts[-1].get("id", "")) if text_parts else ""
    delta = text.catch_up(message.id, message.content, part_id)
    if delta is not None:
        text.add(delta)
        yield Emit(delta)


def _outcome(session_id: str, message: Message) -> PromptReply:
    """Return the reply, or raise for a reply that failed or was aborted."""
    error = message.extra.get("error")
    if isinstance(error, str) and error.startswith("MessageAbortedError"):
        raise PromptAbortedError(
            f"The prompt to session {session_id} was aborted.",
            session_id=session_id,
            message_id=message.id,
            partial_text=message.content,
        )
    if error:
        raise UpstreamError(f"OpenCode failed the prompt: {error}", status=502)
    return _reply_from_message(message)


class _Turn:
    """Settings and deadline shared by both kinds of turn."""

    def __init__(
        self,
        session_id: str,
        text: str,
        model: ModelLike | None,
        agent: str | None,
        timeout: float,
        timing: StreamTiming,
    ) -> None:
        # The checks that need no server run now, so bad input fails at once.
        check_session_id(session_id)
        check_text(text)
        parse_model(model)
        check_agent(agent)
        self.session_id = session_id
        self.text = text
        self.model = model
        self.agent = agent
        self.timeout = timeout
        self.timing = timing
        self.user_message_id: str | None = None
        self.abort_sent = False
        self._deadline = time.monotonic() + timeout

    def _remaining(self) -> float:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise PromptTimeoutError(
                f"The prompt to session {self.session_id} did not finish within "
                f"{self.timeout:g} s. The reply may still arrive: read it later "
                "with list_messages(), or raise the timeout.",
                session_id=self.session_id,
            )
        return remaining

    def _read_timeout(self) -> float:
        return max(0.1, min(self.timing.read_timeout, self._remaining()))

    def _sleep(self, seconds: float) -> Sleep:
        return Sleep(max(0.0, min(seconds, self._remaining())))

    def run(self) -> Driver:
        raise NotImplementedError


class DirectTurn(_Turn):
    """One streamed prompt to `opencode serve` (see the module docstring)."""

    def __init__(
        self,
        api: NativeAPI,
        session_id: str,
        text: str,
        model: ModelLike | None,
        agent: str | None,
        timeout: float,
        timing: StreamTiming,
    ) -> None:
        super().__init__(session_id, text, model, agent, timeout, timing)
        self._api = api
        # Raises for an id that OpenCode cannot take, before any request.
        self._path = api.session_path(session_id)
        self._params: dict[str, str] = {}
        self._stream_open = False
        self._reconnects = 0
        self._next_check = 0.0
        self._no_reply_since: float | None = None

    def run(self) -> Driver:
        session, body = yield from self._api.prepare_prompt(
            self.session_id, self.text, self.model, self.agent
        )
        user_message_id = new_message_id()
        self.user_message_id = user_message_id
        body["messageID"] = user_message_id
        tracker = TurnTracker(self.session_id, user_message_id)
        # `GET /event` and `GET /session/status` only cover one directory.
        directory = session.get("directory")
        if isinstance(directory, str) and directory:
            self._params = {"directory": directory}

        # The stream opens before the prompt is sent, so no event is missed.
        yield from self._open()
        yield Call("POST", f"{self._path}/prompt_async", json=body)
        self._next_check = time.monotonic() + self.timing.quiet
        yield Started(user_message_id)

        while True:
            self._remaining()
            if self._stream_open:
                reply = yield from self._read(tracker)
            else:
                reply = yield from self._recover(tracker)
            if reply is not None:
                yield Emit(reply)
                return

    def _open(self) -> Generator[Action, Any, None]:
        try:
            yield OpenEvents("GET", "/event", self._read_timeout(), params=self._params)
        except OpenCodeError as exc:
            logger.warning(
                "Failed to open the event stream for session %s, polling its "
                "status instead: %s",
                self.session_id,
                exc,
            )
            self._stream_open = False
        else:
            self._stream_open = True

    def _read(self, tracker: TurnTracker) -> Generator[Action, Any, PromptReply | None]:
        try:
            payload = yield ReadEvent()
        except StreamBroken as exc:
            logger.info(
                "The event stream of session %s ended: %s", self.session_id, exc
            )
            self._stream_open = False
            return (yield from self._check(tracker))
        for event in tracker.feed(payload):
            yield Emit(event)
        now = time.monotonic()
        if tracker.relevant:
            self._next_check = max(self._next_check, now + self.timing.quiet)
        if tracker.idle or now >= self._next_check:
            return (yield from self._check(tracker))
        return None

    def _recover(
        self, tracker: TurnTracker
    ) -> Generator[Action, Any, PromptReply | None]:
        """Reopen the event stream after a backoff, or poll once reconnects run out."""
        if self._reconnects >= self.timing.reconnects:
            yield self._sleep(self.timing.poll_interval)
            return (yield from self._check(tracker))
        backoff = self.timing.first_backoff * 2**self._reconnects
        self._reconnects += 1
        yield self._sleep(min(backoff, self.timing.max_backoff))
        logger.info(
            "Reopening the event stream for session %s (attempt %d of %d)",
            self.session_id,
            self._reconnects,
            self.timing.reconnects,
        )
        yield from self._open()
        if not self._stream_open:
            return (yield from self._check(tracker))
        tracker.resync()
        # The turn may have ended while the stream was down: check at the first
        # event, which OpenCode sends as soon as the stream opens.
        self._next_check = time.monotonic()
        return None

    def _check(
        self, tracker: TurnTracker
    ) -> Generator[Action, Any, PromptReply | None]:
        """Poll the session; return the reply once the turn is over."""
        self._next_check = time.monotonic() + self.timing.quiet
        tracker.idle = False
        response = yield Call("GET", "/session/status", params=self._params)
        try:
            statuses = response.json()
        except ValueError:
            statuses = None
        # Only sessions that are not idle are listed.
        if isinstance(statuses, Mapping) and self.session_id in statuses:
            self._no_reply_since = None
            return None
        messages = yield from self._api.list_messages(self.session_id)
        replies = _replies_to(messages, tracker.user_message_id)
        if replies:
            self._no_reply_since = None
            last = replies[-1]
            # The session is idle, so a completed reply is the last one, even
            # one that ended asking for tools (OpenCode's step limit).
            if last.completed_at is None and not last.extra.get("error"):
                return None
            if not last.extra.get("error"):
                yield from _catch_up(tracker.text, last)
            return _outcome(self.session_id, last)
        stored = any(message.id == tracker.user_message_id for message in messages)
        self._no_reply(tracker, stored)
        return None

    def _no_reply(self, tracker: TurnTracker, stored: bool) -> None:
        """Decide about an idle session whose prompt has no reply."""
        if self.abort_sent or tracker.aborted:
            raise PromptAbortedError(
                f"The prompt to session {self.session_id} was aborted before a "
                "reply was written.",
                session_id=self.session_id,
            )
        if tracker.error:
            raise UpstreamError(
                f"OpenCode failed the prompt: {tracker.error}", status=502
            )
        if not stored:
            return
        # Right after `prompt_async` the session can look idle for a moment
        # (most of a second for an instance's first prompt), so an idle session
        # without a reply is watched for a while before the turn counts as over.
        now = time.monotonic()
        if self._no_reply_since is None:
            self._no_reply_since = now
        elif now - self._no_reply_since >= self.timing.no_reply_grace:
            raise UpstreamError(
                f"OpenCode ended the turn of session {self.session_id} without a "
                "reply. Check the OpenCode server's log for the cause.",
                status=502,
            )
        self._next_check = now + min(self.timing.quiet, 0.5)


class GatewayTurn(_Turn):
    """One streamed prompt through the gateway's streaming endpoint."""

    def __init__(
        self,
        api: GatewayAPI,
        session_id: str,
        text: str,
        model: ModelLike | None,
        agent: str | None,
        timeout: float,
        timing: StreamTiming,
    ) -> None:
        super().__init__(session_id, text, model, agent, timeout, timing)
        self._api = api
        self._text = ReplyText()
        self._request = api.prompt_request(
            session_id, text, model, agent, suffix="/prompt/stream"
        )

    def run(self) -> Driver:
        path, body = self._request
        try:
            yield OpenEvents("POST", path, self._read_timeout(), json=body)
        except APIError as exc:
            if not _streaming_unsupported(exc):
                raise
            # A server that speaks only the Sessions API contract has no streaming
            # route: send the plain prompt and yield its reply as the one event.
            logger.info(
                "%s has no streaming route (%s); sending a plain prompt", path, exc
            )
            plain = path.removesuffix("/stream")
            response = yield Call("POST", plain, json=body, prompt=True)
            yield Emit(PromptReply.from_json(response.json()))
            return
        while True:
            self._remaining()
            try:
                payload = yield ReadEvent()
            except StreamBroken as exc:
                logger.info(
                    "The gateway's stream for session %s ended: %s",
                    self.session_id,
                    exc,
                )
                break
            kind = payload.get("type")
            if kind == "start":
                self.user_message_id = _text_field(payload, "userMessageId")
                yield Started(self.user_message_id)
            elif kind == "aborted":
                raise PromptAbortedError(
                    f"The prompt to session {self.session_id} was aborted.",
                    session_id=self.session_id,
                    message_id=_text_field(payload, "messageId"),
                    partial_text=_text_field(payload, "response") or "",
                )
            elif kind == "error":
                raise _error_event(payload)
            else:
                event = event_from_json(payload)
                if isinstance(event, TextDelta):
                    self._text.add(event)
                if event is not None:
                    yield Emit(event)
                if isinstance(event, PromptReply):
                    return
        reply = yield from self._poll()
        yield Emit(reply)

    def _poll(self) -> Generator[Action, Any, PromptReply]:
        """Wait for the reply on the messages endpoint after the stream ended."""
        user_message_id = self.user_message_id
        if user_message_id is None:
            raise TransportError(
                f"The gateway's stream for session {self.session_id} ended before "
                "the prompt started. The prompt may still run: read its reply "
                "later with list_messages()."
            )
        while True:
            messages = yield from self._api.list_messages(self.session_id)
            replies = _replies_to(messages, user_message_id)
            if replies and _is_final(replies[-1]):
                if not replies[-1].extra.get("error"):
                    yield from _catch_up(self._text, replies[-1])
                return _outcome(self.session_id, replies[-1])
            yield self._sleep(self.timing.poll_interval)


def _text_field(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def _error_event(payload: Mapping[str, Any]) -> OpenCodeError:
    status = payload.get("statusCode")
    if isinstance(status, bool) or not isinstance(status, int):
        status = 502
    # The error event carries the contract's error body, so the usual mapping
    # from status and message to exception class applies.
    body = {"statusCode": status, "message": _text_field(payload, "message") or ""}
    return error_from_response(httpx.Response(status, json=body))


def _streaming_unsupported(exc: APIError) -> bool:
    """Tell whether an error to the streaming route means the route does not exist."""
    if exc.status == 405:
        return True
    return exc.status == 404 and not exc.message.startswith("Session not found")
