"""
Progress of an agent turn as typed events, and the interpretation of OpenCode's.

`stream_prompt()` on both clients yields these events while the agent works, then
the turn's `PromptReply`:

* `TextDelta` - text appended to a `text` or `reasoning` part of a reply.
* `ToolUpdate` - a tool call changed status (`pending`, `running`, `completed`,
  `error`).
* `StepFinish` - one model step ended, with its reason, tokens and cost.
* `SessionRetry` - OpenCode is retrying a failed model call.

`TurnTracker` reads OpenCode's own events (from `GET /event`) and turns those of
one prompt into the events above, with no I/O. `event_to_json` and
`event_from_json` are the gateway's wire format for them. `iter_payloads` and
`aiter_payloads` read the JSON payloads of a server-sent event stream.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeAlias

import httpx
from httpx_sse import EventSource, ServerSentEvent

from opencode_notebook.models import PromptReply, format_timestamp, parse_timestamp

__all__ = [
    "ReplyText",
    "SessionRetry",
    "StepFinish",
    "StreamEvent",
    "TextDelta",
    "ToolUpdate",
    "TurnTracker",
    "aiter_payloads",
    "decode_payload",
    "event_from_json",
    "event_to_json",
    "iter_payloads",
]

logger = logging.getLogger("opencode_notebook")

PartKind = Literal["text", "reasoning"]

# Text parts are joined the way `native.text_of_parts` joins them.
_PART_SEPARATOR = "\n\n"


@dataclass(frozen=True, slots=True)
class TextDelta:
    """Text appended to part `part_id` of reply `message_id`."""

    message_id: str
    part_id: str
    kind: PartKind
    text: str


@dataclass(frozen=True, slots=True)
class ToolUpdate:
    """
    A tool call that changed status.

    `status` goes `pending`, `running`, then `completed` (with `output`) or `error`
    (with `error`); `input` contains the call's arguments once they are known.
    """

    message_id: str
    part_id: str
    call_id: str
    tool: str
    status: str
    input: dict[str, Any] = field(default_factory=dict)
    output: str | None = None
    error: str | None = None
    title: str | None = None


@dataclass(frozen=True, slots=True)
class StepFinish:
    """The end of one model step: `reason` is `stop`, `tool-calls`, ..."""

    message_id: str
    reason: str
    tokens: dict[str, Any] = field(default_factory=dict)
    cost: float = 0.0


@dataclass(frozen=True, slots=True)
class SessionRetry:
    """OpenCode is retrying a failed model call: attempt number, reason, next try."""

    attempt: int
    message: str
    next_at: datetime | None = None


StreamEvent: TypeAlias = (
    TextDelta | ToolUpdate | StepFinish | SessionRetry | PromptReply
)


def event_to_json(event: StreamEvent) -> dict[str, Any]:
    """Return the gateway's JSON for an event; `type` names the kind."""
    if isinstance(event, TextDelta):
        return {
            "type": "delta",
            "messageId": event.message_id,
            "partId": event.part_id,
            "kind": event.kind,
            "text": event.text,
        }
    if isinstance(event, ToolUpdate):
        return {
            "type": "tool",
            "messageId": event.message_id,
            "partId": event.part_id,
            "callId": event.call_id,
            "tool": event.tool,
            "status": event.status,
            "input": event.input,
            "output": event.output,
            "error": event.error,
            "title": event.title,
        }
    if isinstance(event, StepFinish):
        return {
            "type": "step",
            "messageId": event.message_id,
            "reason": event.reason,
            "tokens": event.tokens,
            "cost": event.cost,
        }
    if isinstance(event, SessionRetry):
        next_at = format_timestamp(event.next_at) if event.next_at else None
        return {
            "type": "retry",
            "attempt": event.attempt,
            "message": event.message,
            "next": next_at,
        }
    return {"type": "reply", **event.to_json()}


def _string(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _number(value: Any) -> float:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if is_number else 0.0


def _optional_string(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def event_from_json(data: Mapping[str, Any]) -> StreamEvent | None:
    """Build an event from the gateway's JSON; `None` for a type it does not know."""
    kind = data.get("type")
    if kind == "delta":
        part_kind: PartKind = "reasoning" if data.get("kind") == "reasoning" else "text"
        return TextDelta(
            _string(data, "messageId"),
            _string(data, "partId"),
            part_kind,
            _string(data, "text"),
        )
    if kind == "tool":
        return ToolUpdate(
            message_id=_string(data, "messageId"),
            part_id=_string(data, "partId"),
            call_id=_string(data, "callId"),
            tool=_string(data, "tool"),
            status=_string(data, "status"),
            input=_mapping(data.get("input")),
            output=_optional_string(data.get("output")),
            error=_optional_string(data.get("error")),
            title=_optional_string(data.get("title")),
        )
    if kind == "step":
        return StepFinish(
            _string(data, "messageId"),
            _string(data, "reason"),
            _mapping(data.get("tokens")),
            _number(data.get("cost")),
        )
    if kind == "retry":
        next_at = data.get("next")
        return SessionRetry(
            int(_number(data.get("attempt"))),
            _string(data, "message"),
            parse_timestamp(next_at) if next_at is not None else None,
        )
    if kind == "reply":
        reply = {key: value for key, value in data.items() if key != "type"}
        return PromptReply.from_json(reply)
    return None


class ReplyText:
    """
    The reply text streamed so far, rebuilt from `TextDelta`s.

    Like a prompt's `response`, it is the text parts of the latest reply message
    that has any, joined by a blank line. Reasoning is left out.
    """

    def __init__(self) -> None:
        self._parts: dict[str, dict[str, str]] = {}

    def add(self, delta: TextDelta) -> None:
        """Append a delta of a `text` part; reasoning deltas are ignored."""
        if delta.kind != "text":
            return
        parts = self._parts.setdefault(delta.message_id, {})
        parts[delta.part_id] = parts.get(delta.part_id, "") + delta.text

    @property
    def text(self) -> str:
        """The text of the latest message with text parts."""
        for message_id in reversed(self._parts):
            text = self.text_of(message_id)
            if text:
                return text
        return ""

    def text_of(self, message_id: str) -> str:
        """Return the text streamed so far for one message."""
        parts = self._parts.get(message_id, {})
        return _PART_SEPARATOR.join(text for text in parts.values() if text)

    def catch_up(
        self, message_id: str, final_text: str, part_id: str = ""
    ) -> TextDelta | None:
        """
        Return the delta that completes a message's streamed text, if one does.

        The missing text is added to the message's last streamed part, so the
        parts still join to `final_text`. `part_id` names the part when none was
        streamed. Returns `None` when nothing is missing or the texts disagree.
        """
        streamed = self.text_of(message_id)
        if len(final_text) <= len(streamed) or not final_text.startswith(streamed):
            return None
        parts = self._parts.get(message_id)
        last_part = next(reversed(parts)) if parts else part_id
        return TextDelta(message_id, last_part, "text", final_text[len(streamed) :])


@dataclass(slots=True)
class _Part:
    message_id: str
    kind: str
    text: str = ""
    status: str | None = None
    stale: bool = False


class TurnTracker:
    """
    Follow one prompt's turn through OpenCode's events, with no I/O.

    `user_message_id` is the id of the prompt's user message. The replies to it
    are the assistant messages whose `parentID` is that id, one per model step.
    Feed each event payload to `feed()`, which returns the events to pass on.
    After each call:

    * `relevant` - the payload concerned this session.
    * `idle` - the session went idle (`session.idle` or a `session.status` of
      `idle`); the caller confirms the turn's end with the messages endpoint and
      clears the flag.
    * `error` - `Name: message` of the last `session.error` for this session.
    * `aborted` - that error was OpenCode's `MessageAbortedError`.
    """

    def __init__(self, session_id: str, user_message_id: str) -> None:
        self.session_id = session_id
        self.user_message_id = user_message_id
        self.relevant = False
        self.idle = False
        self.user_message_seen = False
        self.error: str | None = None
        self.aborted = False
        self.text = ReplyText()
        self._roles: dict[str, str] = {}
        self._replies: set[str] = set()
        self._parts: dict[str, _Part] = {}

    def resync(self) -> None:
        """
        Distrust the text of unfinished parts after the event stream reconnects.

        Deltas sent while the stream was down are lost, so later ones would
        leave a gap: a part's deltas are skipped until its next update, which
        carries its whole text.
        """
        for part in self._parts.values():
            part.stale = True

    def feed(self, payload: Mapping[str, Any]) -> list[StreamEvent]:
        """Interpret one event payload from `GET /event` or `GET /global/event`."""
        inner = payload.get("payload")
        if isinstance(inner, Mapping):
            payload = inner
        kind = payload.get("type")
        properties = _mapping(payload.get("properties"))
        self.relevant = self._session_of(properties) == self.session_id
        if not self.relevant:
            return []
        if kind == "message.updated":
            self._message_updated(_mapping(properties.get("info")))
        elif kind == "message.part.updated":
            return self._part_updated(_mapping(properties.get("part")))
        elif kind == "message.part.delta":
            return self._part_delta(properties)
        elif kind == "session.status":
            return self._status(_mapping(properties.get("status")))
        elif kind == "session.idle":
            self.idle = True
        elif kind == "session.error":
            self._session_error(_mapping(properties.get("error")))
        return []

    @staticmethod
    def _session_of(properties: Mapping[str, Any]) -> str | None:
        for source in (properties, properties.get("part"), properties.get("info")):
            if isinstance(source, Mapping) and isinstance(source.get("sessionID"), str):
                return str(source["sessionID"])
        return None

    def _message_updated(self, info: Mapping[str, Any]) -> None:
        message_id, role = _string(info, "id"), _string(info, "role")
        if not message_id:
            return
        self._roles[message_id] = role
        if message_id == self.user_message_id:
            self.user_message_seen = True
        if role == "assistant" and info.get("parentID") == self.user_message_id:
            self._replies.add(message_id)

    def _is_reply(self, message_id: str) -> bool:
        if message_id in self._replies:
            return True
        # After a reconnection the reply's `message.updated` may have been missed.
        # OpenCode's message ids grow with time, so an unknown message newer than
        # the prompt is taken as a reply to it.
        return message_id not in self._roles and message_id > self.user_message_id

    def _part_updated(self, part: Mapping[str, Any]) -> list[StreamEvent]:
        part_id, message_id = _string(part, "id"), _string(part, "messageID")
        kind = _string(part, "type")
        if not part_id or not self._is_reply(message_id):
            return []
        if kind in ("text", "reasoning"):
            return self._text_part(part_id, message_id, kind, _string(part, "text"))
        if kind == "tool":
            return self._tool_part(part_id, message_id, part)
        if kind == "step-finish":
            return [
                StepFinish(
                    message_id,
                    _string(part, "reason"),
                    _mapping(part.get("tokens")),
                    _number(part.get("cost")),
                )
            ]
        return []

    def _text_part(
        self, part_id: str, message_id: str, kind: str, text: str
    ) -> list[StreamEvent]:
        known = self._parts.setdefault(part_id, _Part(message_id, kind))
        known.stale = False
        # A part update carries the part's whole text so far. Text beyond what the
        # deltas gave (a provider that does not stream, or deltas missed while
        # reconnecting) is passed on as one more delta.
        if len(text) > len(known.text) and text.startswith(known.text):
            return [self._delta(part_id, known, text[len(known.text) :])]
        return []

    def _part_delta(self, properties: Mapping[str, Any]) -> list[StreamEvent]:
        part = self._parts.get(_string(properties, "partID"))
        delta = _string(properties, "delta")
        # `field` is "text" for text and reasoning parts alike, so only the part's
        # type, known from its announcement, distinguishes them. Deltas of a part
        # that was never announced, or is stale, are skipped, because its next
        # update brings their text.
        if part is None or part.stale or properties.get("field") != "text":
            return []
        if not delta:
            return []
        return [self._delta(_string(properties, "partID"), part, delta)]

    def _delta(self, part_id: str, part: _Part, text: str) -> TextDelta:
        part.text += text
        kind: PartKind = "reasoning" if part.kind == "reasoning" else "text"
        event = TextDelta(part.message_id, part_id, kind, text)
        self.text.add(event)
        return event

    def _tool_part(
        self, part_id: str, message_id: str, part: Mapping[str, Any]
    ) -> list[StreamEvent]:
        state = _mapping(part.get("state"))
        status = _string(state, "status")
        known = self._parts.setdefault(part_id, _Part(message_id, "tool"))
        if not status or status == known.status:
            return []
        known.status = status
        return [
            ToolUpdate(
                message_id=message_id,
                part_id=part_id,
                call_id=_string(part, "callID"),
                tool=_string(part, "tool"),
                status=status,
                input=_mapping(state.get("input")),
                output=_optional_string(state.get("output")),
                error=_optional_string(state.get("error")),
                title=_optional_string(state.get("title")),
            )
        ]

    def _status(self, status: Mapping[str, Any]) -> list[StreamEvent]:
        kind = status.get("type")
        if kind == "idle":
            self.idle = True
        elif kind == "retry":
            next_at = status.get("next")
            return [
                SessionRetry(
                    int(_number(status.get("attempt"))),
                    _string(status, "message"),
                    parse_timestamp(next_at) if next_at is not None else None,
                )
            ]
        return []

    def _session_error(self, error: Mapping[str, Any]) -> None:
        name = _string(error, "name") or "Error"
        message = _string(_mapping(error.get("data")), "message")
        self.error = f"{name}: {message}" if message else name
        self.aborted = name == "MessageAbortedError"


def decode_payload(event: ServerSentEvent) -> dict[str, Any] | None:
    """Return an event's data as a JSON object; `None` for anything else."""
    if not event.data:
        return None
    try:
        data = json.loads(event.data)
    except ValueError:
        logger.debug("Skipped an event whose data is not JSON: %.80r", event.data)
        return None
    return data if isinstance(data, dict) else None


def _event_source(response: httpx.Response) -> EventSource:
    # The event-stream format is always UTF-8, whatever charset the headers name.
    response.encoding = "utf-8"
    return EventSource(response)


def iter_payloads(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """
    Yield the JSON object of each event of an open `text/event-stream` response.

    `httpx_sse` does the parsing the format defines: lines split across network
    chunks, CR, LF or CRLF line ends, comment lines, and the `data:` lines of one
    event joined by a newline. Events whose data is not a JSON object are skipped.
    """
    for event in _event_source(response).iter_sse():
        payload = decode_payload(event)
        if payload is not None:
            yield payload


async def aiter_payloads(
    response: httpx.Response,
) -> AsyncGenerator[dict[str, Any]]:
    """Yield the JSON object of each event, as `iter_payloads` does."""
    events = _event_source(response).aiter_sse()
    try:
        async for event in events:
            payload = decode_payload(event)
            if payload is not None:
                yield payload
    finally:
        await events.aclose()
