"""Streamed prompts: OpenCode's events interpreted, mocked servers, the real chain."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from opencode_notebook import (
    AsyncOpenCodeClient,
    BadRequestError,
    ConnectError,
    MessageTextRequiredError,
    OpenCodeClient,
    OpenCodeServerError,
    PromptAbortedError,
    PromptReply,
    PromptTimeoutError,
    SessionIDRequiredError,
    SessionNotFoundError,
    TransportError,
    UpstreamError,
    turns,
)
from opencode_notebook.models import Message
from opencode_notebook.stack import LocalChain
from opencode_notebook.streaming import (
    ReplyText,
    SessionRetry,
    StepFinish,
    StreamEvent,
    TextDelta,
    ToolUpdate,
    TurnTracker,
    event_from_json,
    event_to_json,
)

SESSION_ID = "ses_1"
USER_ID = "msg_100user"
REPLY_ID = "msg_200reply"

# ---------------------------------------------------------------------------
# OpenCode's events, as `GET /event` sends them (shapes seen on OpenCode 1.18.33).


def message_updated(
    message_id: str, role: str, parent: str | None = None, session: str = SESSION_ID
) -> dict[str, Any]:
    info: dict[str, Any] = {"id": message_id, "role": role, "sessionID": session}
    if parent:
        info["parentID"] = parent
    return {
        "type": "message.updated",
        "properties": {"sessionID": session, "info": info},
    }


def part_updated(
    part_id: str, message_id: str, kind: str, session: str = SESSION_ID, **fields: Any
) -> dict[str, Any]:
    part = {
        "id": part_id,
        "messageID": message_id,
        "sessionID": session,
        "type": kind,
        **fields,
    }
    return {
        "type": "message.part.updated",
        "properties": {"sessionID": session, "part": part, "time": 1},
    }


def part_delta(
    part_id: str, message_id: str, delta: str, session: str = SESSION_ID
) -> dict[str, Any]:
    return {
        "type": "message.part.delta",
        "properties": {
            "sessionID": session,
            "messageID": message_id,
            "partID": part_id,
            "field": "text",
            "delta": delta,
        },
    }


def status(kind: str, session: str = SESSION_ID, **fields: Any) -> dict[str, Any]:
    return {
        "type": "session.status",
        "properties": {"sessionID": session, "status": {"type": kind, **fields}},
    }


def idle(session: str = SESSION_ID) -> dict[str, Any]:
    return {"type": "session.idle", "properties": {"sessionID": session}}


CONNECTED = {"type": "server.connected", "properties": {}}
HEARTBEAT = {"type": "server.heartbeat", "properties": {}}


def echo_turn(user_id: str, reply_id: str, words: list[str]) -> list[dict[str, Any]]:
    """The events of one plain turn that streams `words` as deltas."""
    text = "".join(words)
    return [
        message_updated(user_id, "user"),
        part_updated("prt_u", user_id, "text", text="the prompt"),
        status("busy"),
        message_updated(reply_id, "assistant", parent=user_id),
        part_updated("prt_s", reply_id, "step-start"),
        part_updated("prt_t", reply_id, "text", text=""),
        *(part_delta("prt_t", reply_id, word) for word in words),
        part_updated("prt_t", reply_id, "text", text=text),
        part_updated(
            "prt_f",
            reply_id,
            "step-finish",
            reason="stop",
            tokens={"input": 5, "output": 3},
            cost=0.25,
        ),
        status("idle"),
        idle(),
    ]


def feed_all(tracker: TurnTracker, payloads: list[dict[str, Any]]) -> list[StreamEvent]:
    events: list[StreamEvent] = []
    for payload in payloads:
        events.extend(tracker.feed(payload))
    return events


# ---------------------------------------------------------------------------
# The interpreter


def test_tracker_passes_text_deltas_of_the_reply() -> None:
    tracker = TurnTracker(SESSION_ID, USER_ID)

    events = feed_all(tracker, echo_turn(USER_ID, REPLY_ID, ["Echo: ", "hi ", "you"]))

    deltas = [event for event in events if isinstance(event, TextDelta)]
    assert [delta.text for delta in deltas] == ["Echo: ", "hi ", "you"]
    assert {delta.part_id for delta in deltas} == {"prt_t"}
    assert {delta.message_id for delta in deltas} == {REPLY_ID}
    assert {delta.kind for delta in deltas} == {"text"}
    assert tracker.text.text == "Echo: hi you"
    assert tracker.idle
    assert tracker.user_message_seen


def test_tracker_reports_the_step_finish() -> None:
    tracker = TurnTracker(SESSION_ID, USER_ID)

    events = feed_all(tracker, echo_turn(USER_ID, REPLY_ID, ["a"]))

    steps = [event for event in events if isinstance(event, StepFinish)]
    assert steps == [StepFinish(REPLY_ID, "stop", {"input": 5, "output": 3}, 0.25)]


def test_tracker_tells_reasoning_from_text_by_part_type() -> None:
    tracker = TurnTracker(SESSION_ID, USER_ID)
    payloads = [
        message_updated(REPLY_ID, "assistant", parent=USER_ID),
        part_updated("prt_r", REPLY_ID, "reasoning", text=""),
        part_delta("prt_r", REPLY_ID, "Thinking"),
        part_updated("prt_t", REPLY_ID, "text", text=""),
        part_delta("prt_t", REPLY_ID, "Answer"),
    ]

    events = feed_all(tracker, payloads)

    assert [(e.kind, e.text) for e in events if isinstance(e, TextDelta)] == [
        ("reasoning", "Thinking"),
        ("text", "Answer"),
    ]
    assert tracker.text.text == "Answer"


def test_tracker_ignores_other_sessions_and_the_prompt_itself() -> None:
    tracker = TurnTracker(SESSION_ID, USER_ID)
    other = "ses_other"
    payloads = [
        CONNECTED,
        HEARTBEAT,
        message_updated(USER_ID, "user"),
        part_updated("prt_u", USER_ID, "text", text="the prompt"),
        message_updated("msg_300", "assistant", parent="msg_250", session=other),
        part_updated("prt_o", "msg_300", "text", session=other, text=""),
        part_delta("prt_o", "msg_300", "not ours", session=other),
        idle(other),
        status("idle", session=other),
    ]

    events = feed_all(tracker, payloads)

    assert events == []
    assert not tracker.idle


def test_tracker_ignores_replies_to_an_earlier_prompt() -> None:
    tracker = TurnTracker(SESSION_ID, USER_ID)
    payloads = [
        message_updated("msg_050", "assistant", parent="msg_040"),
        part_updated("prt_old", "msg_050", "text", text=""),
        part_delta("prt_old", "msg_050", "old reply"),
    ]

    assert feed_all(tracker, payloads) == []


def test_tracker_fills_missed_deltas_from_update() -> None:
    tracker = TurnTracker(SESSION_ID, USER_ID)
    payloads = [
        message_updated(REPLY_ID, "assistant", parent=USER_ID),
        # The announcement of the part was missed: its first delta is skipped.
        part_delta("prt_t", REPLY_ID, "Echo: "),
        part_updated("prt_t", REPLY_ID, "text", text="Echo: hi"),
        part_delta("prt_t", REPLY_ID, " there"),
        part_updated("prt_t", REPLY_ID, "text", text="Echo: hi there"),
    ]

    events = feed_all(tracker, payloads)

    assert [e.text for e in events if isinstance(e, TextDelta)] == [
        "Echo: hi",
        " there",
    ]
    assert tracker.text.text == "Echo: hi there"


def test_tracker_takes_newer_unknown_message_as_reply() -> None:
    # After a reconnection the reply's `message.updated` may never arrive.
    tracker = TurnTracker(SESSION_ID, USER_ID)

    events = feed_all(tracker, [part_updated("prt_t", REPLY_ID, "text", text="Hi")])

    assert events == [TextDelta(REPLY_ID, "prt_t", "text", "Hi")]


def test_tracker_reports_each_tool_status_once() -> None:
    tracker = TurnTracker(SESSION_ID, USER_ID)
    running = {"status": "running", "input": {"command": "echo hi"}}
    payloads = [
        message_updated(REPLY_ID, "assistant", parent=USER_ID),
        part_updated(
            "prt_x",
            REPLY_ID,
            "tool",
            tool="bash",
            callID="c1",
            state={"status": "pending", "input": {}},
        ),
        part_updated(
            "prt_x", REPLY_ID, "tool", tool="bash", callID="c1", state=running
        ),
        part_updated(
            "prt_x",
            REPLY_ID,
            "tool",
            tool="bash",
            callID="c1",
            state={**running, "metadata": {"output": "h"}},
        ),
        part_updated(
            "prt_x",
            REPLY_ID,
            "tool",
            tool="bash",
            callID="c1",
            state={**running, "status": "completed", "output": "hi\n", "title": "echo"},
        ),
    ]

    events = feed_all(tracker, payloads)

    assert [e.status for e in events if isinstance(e, ToolUpdate)] == [
        "pending",
        "running",
        "completed",
    ]
    done = events[-1]
    assert isinstance(done, ToolUpdate)
    assert done.tool == "bash"
    assert done.call_id == "c1"
    assert done.input == {"command": "echo hi"}
    assert done.output == "hi\n"
    assert done.title == "echo"


def test_tracker_reports_a_failed_tool() -> None:
    tracker = TurnTracker(SESSION_ID, USER_ID)
    state = {"status": "error", "input": {}, "error": "no such tool"}

    events = feed_all(
        tracker,
        [part_updated("prt_x", REPLY_ID, "tool", tool="nope", callID="c", state=state)],
    )

    assert len(events) == 1
    assert isinstance(events[0], ToolUpdate)
    assert events[0].error == "no such tool"


def test_tracker_records_abort_and_errors() -> None:
    tracker = TurnTracker(SESSION_ID, USER_ID)
    aborted = {
        "type": "session.error",
        "properties": {
            "sessionID": SESSION_ID,
            "error": {"name": "MessageAbortedError", "data": {"message": "Aborted"}},
        },
    }

    feed_all(tracker, [aborted])

    assert tracker.aborted
    assert tracker.error == "MessageAbortedError: Aborted"


def test_tracker_passes_retries_on() -> None:
    tracker = TurnTracker(SESSION_ID, USER_ID)
    retry = status("retry", attempt=2, message="Cannot connect", next=1772532000000)

    events = feed_all(tracker, [retry])

    assert events == [
        SessionRetry(2, "Cannot connect", datetime(2026, 3, 3, 10, 0, tzinfo=UTC))
    ]


def test_tracker_unwraps_global_events() -> None:
    tracker = TurnTracker(SESSION_ID, USER_ID)
    wrapped = [
        {"directory": "/p", "project": "x", "payload": payload}
        for payload in echo_turn(USER_ID, REPLY_ID, ["Hi"])
    ]

    events = feed_all(tracker, wrapped)

    assert TextDelta(REPLY_ID, "prt_t", "text", "Hi") in events
    assert tracker.idle


def test_reply_text_keeps_the_latest_message() -> None:
    text = ReplyText()
    text.add(TextDelta("msg_1", "p1", "text", "Let me look."))
    text.add(TextDelta("msg_2", "p2", "reasoning", "hmm"))
    text.add(TextDelta("msg_2", "p3", "text", "Done: "))
    text.add(TextDelta("msg_2", "p3", "text", "hi"))
    text.add(TextDelta("msg_2", "p4", "text", "More."))

    assert text.text == "Done: hi\n\nMore."


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(TextDelta("msg_1", "prt_1", "reasoning", "é\n"), id="delta"),
        pytest.param(
            ToolUpdate(
                "msg_1", "prt_2", "c1", "bash", "completed", {"command": "ls"}, "x\n"
            ),
            id="tool",
        ),
        pytest.param(StepFinish("msg_1", "stop", {"input": 1}, 0.5), id="step"),
        pytest.param(
            SessionRetry(1, "busy", datetime(2026, 3, 3, 10, 0, tzinfo=UTC)),
            id="retry",
        ),
        pytest.param(
            PromptReply("msg_1", "Echo: hi", {"finish": "stop", "cost": 0}),
            id="reply",
        ),
    ],
)
def test_wire_format_round_trip(event: StreamEvent) -> None:
    data = event_to_json(event)

    assert json.loads(json.dumps(data)) == data
    assert event_from_json(data) == event
    if isinstance(event, PromptReply):
        rebuilt = event_from_json(data)
        assert isinstance(rebuilt, PromptReply)
        assert rebuilt.extra == event.extra


def test_wire_format_skips_unknown_types() -> None:
    assert event_from_json({"type": "something-new"}) is None


def test_message_ids_follow_opencode_format(monkeypatch: pytest.MonkeyPatch) -> None:
    # OpenCode 1.18.33 named a user message created at 1796399375899 ms
    # `msg_241bf261b001lWTiMA8fFvG0xn`.
    monkeypatch.setattr(time, "time", lambda: 1796399375.899)

    first = turns.new_message_id()
    second = turns.new_message_id()

    assert first[:16] == "msg_241bf261b001"
    assert second[:16] == "msg_241bf261b002"
    assert len(first) == len("msg_241bf261b001lWTiMA8fFvG0xn")
    assert first[16:].isalnum()


# ---------------------------------------------------------------------------
# A scripted OpenCode server behind `httpx.MockTransport`

BROKEN = object()
Script = Callable[["FakeOpenCode"], Iterator[Any]]


def sse(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


def turn_script(words: list[str], *, pause: float = 0.0) -> Script:
    """A stream with a whole turn; it closes after the idle event."""

    def script(fake: FakeOpenCode) -> Iterator[Any]:
        yield sse(CONNECTED)
        yield pause
        for payload in echo_turn(fake.user_message_id, REPLY_ID, words):
            yield sse(payload)
            yield pause

    return script


def connected_then_closed(fake: FakeOpenCode) -> Iterator[Any]:
    yield sse(CONNECTED)


def heartbeats_only(fake: FakeOpenCode) -> Iterator[Any]:
    yield sse(CONNECTED)
    while True:
        yield 0.02
        yield sse(HEARTBEAT)


def broken_after_connect(fake: FakeOpenCode) -> Iterator[Any]:
    yield sse(CONNECTED)
    yield BROKEN


class FakeOpenCode:
    """
    A scripted `opencode serve` with one session, as a mock transport handler.

    Each connection to `GET /event` plays the next script (the last repeats).
    `busy_polls` is how many `GET /session/status` calls report the session busy.
    The reply to each prompt is `Echo: <text>` unless `reply_text` is set.
    """

    def __init__(
        self,
        scripts: list[Script],
        *,
        async_events: bool = False,
        busy_polls: int = 0,
        reply_text: str | None = None,
        reply_error: dict[str, Any] | None = None,
        event_status: int = 200,
    ) -> None:
        self.scripts = scripts
        self.async_events = async_events
        self.busy_polls = busy_polls
        self.reply_text = reply_text
        self.reply_error = reply_error
        self.event_status = event_status
        self.requests: list[httpx.Request] = []
        self.prompts: list[dict[str, Any]] = []
        self.connections = 0
        self.aborts = 0
        self.with_reply = True

    @property
    def user_message_id(self) -> str:
        return str(self.prompts[-1]["messageID"])

    def paths(self, method: str | None = None) -> list[str]:
        return [
            r.url.path for r in self.requests if method is None or r.method == method
        ]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path, method = request.url.path, request.method

        if path == "/event":
            return self._events()
        if path == f"/session/{SESSION_ID}" and method == "GET":
            return httpx.Response(200, json=self._session())
        if path == "/session/ses_missing":
            error = {"name": "NotFoundError", "data": {"message": "Session not found"}}
            return httpx.Response(404, json=error)
        if path == "/config/providers":
            return httpx.Response(
                200, json={"providers": [{"id": "local", "models": {"echo": {}}}]}
            )
        if path == "/config":
            return httpx.Response(200, json={"model": "local/echo"})
        if path == "/agent":
            return httpx.Response(200, json=[{"name": "build"}, {"name": "plan"}])

        if path == f"/session/{SESSION_ID}/prompt_async":
            self.prompts.append(json.loads(request.content))
            return httpx.Response(204)
        if path == "/session/status":
            busy = self.busy_polls > 0
            self.busy_polls -= 1
            return httpx.Response(
                200, json={SESSION_ID: {"type": "busy"}} if busy else {}
            )
        if path == f"/session/{SESSION_ID}/message":
            return httpx.Response(200, json=self._messages())
        if path == f"/session/{SESSION_ID}/abort":
            self.aborts += 1
            return httpx.Response(200, json=True)
        return httpx.Response(200, text="<html>web UI</html>")

    def _session(self) -> dict[str, Any]:
        return {
            "id": SESSION_ID,
            "title": "t",
            "directory": "/project",
            "time": {"created": 1772532000000, "updated": 1772532000000},
        }

    def _messages(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        for number, prompt in enumerate(self.prompts):
            user_id = prompt["messageID"]
            text = prompt["parts"][0]["text"]
            entries.append(
                {
                    "info": {
                        "id": user_id,
                        "sessionID": SESSION_ID,
                        "role": "user",
                        "time": {"created": 1772532000000},
                    },
                    "parts": [{"id": "prt_u", "type": "text", "text": text}],
                }
            )
            if not self.with_reply:
                continue
            info: dict[str, Any] = {
                "id": REPLY_ID if number == len(self.prompts) - 1 else f"msg_1{number}",
                "sessionID": SESSION_ID,
                "role": "assistant",
                "parentID": user_id,
                "time": {"created": 1772532000100, "completed": 1772532000900},
                "providerID": "local",
                "modelID": "echo",
                "agent": "build",
                "tokens": {"input": 5, "output": 3},
                "cost": 0,
                "finish": "stop",
            }
            if self.reply_error:
                info["error"] = self.reply_error
            reply = self.reply_text if self.reply_text is not None else f"Echo: {text}"
            entries.append(
                {
                    "info": info,
                    "parts": [{"id": "prt_t", "type": "text", "text": reply}],
                }
            )
        return entries

    def _events(self) -> httpx.Response:
        if self.event_status != 200:
            return httpx.Response(self.event_status, json={"name": "UnknownError"})
        script = self.scripts[min(self.connections, len(self.scripts) - 1)]
        self.connections += 1
        headers = {"content-type": "text/event-stream"}
        if self.async_events:
            return httpx.Response(200, headers=headers, content=self._aplay(script))
        return httpx.Response(200, headers=headers, content=self._play(script))

    def _play(self, script: Script) -> Iterator[bytes]:
        for item in script(self):
            if item is BROKEN:
                raise httpx.ReadError("connection reset")
            if isinstance(item, float):
                time.sleep(item)
            else:
                yield item

    async def _aplay(self, script: Script) -> AsyncIterator[bytes]:
        for item in script(self):
            if item is BROKEN:
                raise httpx.ReadError("connection reset")
            if isinstance(item, float):
                await asyncio.sleep(item)
            else:
                yield item


@pytest.fixture
def fast_timing(monkeypatch: pytest.MonkeyPatch) -> turns.StreamTiming:
    timing = turns.StreamTiming(
        quiet=0.1,
        read_timeout=2.0,
        reconnects=3,
        first_backoff=0.01,
        max_backoff=0.05,
        poll_interval=0.05,
        no_reply_grace=0.3,
    )
    monkeypatch.setattr(turns, "TIMING", timing)
    return timing


def direct_client(fake: FakeOpenCode) -> OpenCodeClient:
    return OpenCodeClient.direct(
        "http://opencode.test", transport=httpx.MockTransport(fake)
    )


def async_direct_client(fake: FakeOpenCode) -> AsyncOpenCodeClient:
    return AsyncOpenCodeClient.direct(
        "http://opencode.test", transport=httpx.MockTransport(fake)
    )


def collect(
    client: OpenCodeClient, text: str = "hi there", **kwargs: Any
) -> list[StreamEvent]:
    with client.stream_prompt(SESSION_ID, text, **kwargs) as stream:
        return list(stream)


def test_direct_stream_yields_deltas_then_the_reply(
    fast_timing: turns.StreamTiming,
) -> None:
    fake = FakeOpenCode([turn_script(["Echo: ", "hi ", "there"])])
    client = direct_client(fake)

    events = collect(client, model="local/echo")

    deltas = [e for e in events if isinstance(e, TextDelta)]
    reply = events[-1]
    assert isinstance(reply, PromptReply)
    assert "".join(d.text for d in deltas) == reply.response == "Echo: hi there"
    assert reply.message_id == REPLY_ID
    assert reply.extra["finish"] == "stop"
    assert isinstance(events[-2], StepFinish)
    assert fake.prompts[0]["parts"] == [{"type": "text", "text": "hi there"}]
    assert fake.prompts[0]["model"] == {"providerID": "local", "modelID": "echo"}


def test_direct_stream_opens_events_before_sending(
    fast_timing: turns.StreamTiming,
) -> None:
    fake = FakeOpenCode([turn_script(["Echo: hi"])])

    collect(direct_client(fake))

    paths = fake.paths()
    assert paths.index("/event") < paths.index(f"/session/{SESSION_ID}/prompt_async")
    event_request = fake.requests[paths.index("/event")]
    assert event_request.url.params["directory"] == "/project"
    assert event_request.headers["accept"] == "text/event-stream"


def test_direct_stream_names_the_user_message(fast_timing: turns.StreamTiming) -> None:
    fake = FakeOpenCode([turn_script(["Echo: hi"])])
    client = direct_client(fake)

    with client.stream_prompt(SESSION_ID, "hi there") as stream:
        list(stream)

    assert stream.user_message_id == fake.prompts[0]["messageID"]
    assert stream.user_message_id is not None
    assert stream.user_message_id.startswith("msg_")


def test_stream_reply_matches_prompt_reply(fast_timing: turns.StreamTiming) -> None:
    fake = FakeOpenCode([turn_script(["Echo: ", "same"])], reply_text="Echo: same")
    client = direct_client(fake)

    streamed = collect(client)[-1]
    fake.requests.clear()
    entry = fake._messages()[-1]

    def sync_prompt(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/message") and request.method == "POST":
            return httpx.Response(200, json=entry)
        return fake(request)

    prompted = OpenCodeClient.direct(
        "http://opencode.test", transport=httpx.MockTransport(sync_prompt)
    ).prompt(SESSION_ID, "same")
    assert isinstance(streamed, PromptReply)
    assert streamed == prompted
    assert streamed.extra == prompted.extra


@pytest.mark.parametrize(
    ("session_id", "text", "kwargs", "error"),
    [
        pytest.param("", "hi", {}, SessionIDRequiredError, id="blank-session"),
        pytest.param(
            SESSION_ID, "  \t\n", {}, MessageTextRequiredError, id="blank-text"
        ),
        pytest.param(SESSION_ID, "hi", {"model": "echo"}, ValueError, id="bad-model"),
        pytest.param(SESSION_ID, "hi", {"agent": " "}, ValueError, id="bad-agent"),
    ],
)
def test_stream_checks_input_before_any_request(
    session_id: str, text: str, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    fake = FakeOpenCode([turn_script(["x"])])
    client = direct_client(fake)

    with pytest.raises(error):
        client.stream_prompt(session_id, text, **kwargs)

    assert fake.requests == []


def test_stream_rejects_unknown_agent_before_sending(
    fast_timing: turns.StreamTiming,
) -> None:
    fake = FakeOpenCode([turn_script(["x"])])
    stream = direct_client(fake).stream_prompt(SESSION_ID, "hi", agent="nosuch")

    with pytest.raises(BadRequestError, match="Unknown agent 'nosuch'"):
        stream.start()

    assert fake.prompts == []
    assert stream.finished


def test_stream_to_unknown_session_raises_not_found() -> None:
    fake = FakeOpenCode([turn_script(["x"])])
    stream = direct_client(fake).stream_prompt("ses_missing", "hi")

    with pytest.raises(SessionNotFoundError):
        next(stream)

    assert fake.prompts == []


@pytest.mark.parametrize(
    "script",
    [
        pytest.param(connected_then_closed, id="closed-after-connect"),
        pytest.param(heartbeats_only, id="heartbeats-only"),
        pytest.param(broken_after_connect, id="connection-reset"),
    ],
)
def test_reply_arrives_without_events(
    script: Script, fast_timing: turns.StreamTiming
) -> None:
    fake = FakeOpenCode([script], busy_polls=2)
    started = time.monotonic()

    events = collect(direct_client(fake))

    reply = events[-1]
    assert isinstance(reply, PromptReply)
    assert reply.response == "Echo: hi there"
    assert time.monotonic() - started < 5
    assert fake.connections <= 1 + fast_timing.reconnects


def test_reconnects_are_bounded(fast_timing: turns.StreamTiming) -> None:
    fake = FakeOpenCode([connected_then_closed], busy_polls=40)

    events = collect(direct_client(fake))

    assert isinstance(events[-1], PromptReply)
    assert fake.connections == 1 + fast_timing.reconnects
    assert fake.paths().count("/session/status") >= 40


def test_reply_arrives_when_event_stream_is_refused(
    fast_timing: turns.StreamTiming,
) -> None:
    fake = FakeOpenCode([turn_script(["x"])], event_status=500)

    events = collect(direct_client(fake))

    assert isinstance(events[-1], PromptReply)
    assert events[-1].response == "Echo: hi there"


def test_reply_arrives_when_events_return_html(
    fast_timing: turns.StreamTiming,
) -> None:
    fake = FakeOpenCode([turn_script(["x"])])
    fake.scripts = []

    def web_page(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/event":
            fake.requests.append(request)
            return httpx.Response(200, html="<html>web UI</html>")
        return fake(request)

    client = OpenCodeClient.direct(
        "http://opencode.test", transport=httpx.MockTransport(web_page)
    )
    with client.stream_prompt(SESSION_ID, "hi") as stream:
        events = list(stream)

    assert isinstance(events[-1], PromptReply)


@pytest.mark.parametrize(
    "busy_polls",
    [
        pytest.param(1, id="turn-ended-while-down"),
        pytest.param(2, id="turn-goes-on-after-reconnect"),
    ],
)
def test_reply_survives_a_stream_cut_mid_turn(
    busy_polls: int, fast_timing: turns.StreamTiming
) -> None:
    words = ["Echo: ", "hi ", "there"]

    def cut(fake: FakeOpenCode) -> Iterator[Any]:
        # Everything up to the first delta, then a reset connection.
        yield sse(CONNECTED)
        for payload in echo_turn(fake.user_message_id, REPLY_ID, words)[:7]:
            yield sse(payload)
        yield BROKEN

    def rest(fake: FakeOpenCode) -> Iterator[Any]:
        # The delta "hi " was sent while the stream was down.
        yield sse(CONNECTED)
        for payload in echo_turn(fake.user_message_id, REPLY_ID, words)[8:]:
            yield sse(payload)

    fake = FakeOpenCode([cut, rest], busy_polls=busy_polls, reply_text="Echo: hi there")
    client = direct_client(fake)

    with client.stream_prompt(SESSION_ID, "hi there") as stream:
        events = list(stream)

    reply = events[-1]
    deltas = [event.text for event in events if isinstance(event, TextDelta)]
    assert isinstance(reply, PromptReply)
    assert reply.response == "Echo: hi there"
    assert "".join(deltas) == "Echo: hi there"
    assert stream.text == "Echo: hi there"
    assert fake.connections == 2


def test_stream_times_out_when_the_turn_never_ends(
    fast_timing: turns.StreamTiming,
) -> None:
    fake = FakeOpenCode([heartbeats_only], busy_polls=10**6)
    started = time.monotonic()

    with pytest.raises(PromptTimeoutError, match=r"did not finish within 0\.5 s"):
        collect(direct_client(fake), timeout=0.5)

    assert time.monotonic() - started < 3
    assert fake.aborts == 0


def test_aborted_reply_raises_with_partial_text(
    fast_timing: turns.StreamTiming,
) -> None:
    error = {"name": "MessageAbortedError", "data": {"message": "Aborted"}}
    fake = FakeOpenCode(
        [connected_then_closed], reply_text="Echo: ha", reply_error=error
    )

    with pytest.raises(PromptAbortedError) as raised:
        collect(direct_client(fake))

    assert raised.value.partial_text == "Echo: ha"
    assert raised.value.message_id == REPLY_ID
    assert raised.value.session_id == SESSION_ID


def test_failed_reply_raises_upstream_error(fast_timing: turns.StreamTiming) -> None:
    error = {"name": "APIError", "data": {"message": "bad request from model"}}
    fake = FakeOpenCode([connected_then_closed], reply_text="", reply_error=error)

    with pytest.raises(UpstreamError, match="APIError: bad request from model"):
        collect(direct_client(fake))


def test_turn_without_reply_ends_after_grace(fast_timing: turns.StreamTiming) -> None:
    fake = FakeOpenCode([connected_then_closed])
    fake.with_reply = False
    started = time.monotonic()

    with pytest.raises(UpstreamError, match="without a reply"):
        collect(direct_client(fake))

    assert fast_timing.no_reply_grace <= time.monotonic() - started < 5


def test_breaking_out_aborts_the_turn(fast_timing: turns.StreamTiming) -> None:
    fake = FakeOpenCode([turn_script(["Echo: ", "a ", "b"])])
    client = direct_client(fake)

    with client.stream_prompt(SESSION_ID, "a b") as stream:
        for event in stream:
            if isinstance(event, TextDelta):
                break

    assert fake.aborts == 1
    assert stream.finished
    assert stream.reply is None


def test_dropped_stream_aborts_the_turn(fast_timing: turns.StreamTiming) -> None:
    fake = FakeOpenCode([turn_script(["Echo: ", "a ", "b"])])
    client = direct_client(fake)

    for event in client.stream_prompt(SESSION_ID, "a b"):
        if isinstance(event, TextDelta):
            break

    assert fake.aborts == 1


def test_finished_stream_does_not_abort(fast_timing: turns.StreamTiming) -> None:
    fake = FakeOpenCode([turn_script(["Echo: hi"])])

    collect(direct_client(fake))

    assert fake.aborts == 0


def test_closing_before_start_sends_nothing() -> None:
    fake = FakeOpenCode([turn_script(["x"])])
    stream = direct_client(fake).stream_prompt(SESSION_ID, "hi")

    stream.close()

    assert fake.requests == []
    assert list(stream) == []


def test_abort_on_close_can_be_turned_off(fast_timing: turns.StreamTiming) -> None:
    fake = FakeOpenCode([turn_script(["Echo: ", "a"])])
    client = direct_client(fake)

    with client.stream_prompt(SESSION_ID, "a") as stream:
        stream.abort_on_close = False
        next(stream)

    assert fake.aborts == 0


def test_keyboard_interrupt_aborts_the_turn(fast_timing: turns.StreamTiming) -> None:
    def interrupted(fake: FakeOpenCode) -> Iterator[Any]:
        yield sse(CONNECTED)
        raise KeyboardInterrupt

    fake = FakeOpenCode([interrupted])

    with pytest.raises(KeyboardInterrupt):
        collect(direct_client(fake))

    assert fake.aborts == 1


def test_stream_releases_the_session_lock(fast_timing: turns.StreamTiming) -> None:
    fake = FakeOpenCode([turn_script(["Echo: hi"])])
    client = direct_client(fake)

    for _ in range(3):
        stream = client.stream_prompt(SESSION_ID, "hi")
        next(stream)
        stream.close()
    collect(client)

    assert not client._prompt_lock(SESSION_ID).locked()


def test_stream_sends_text_byte_for_byte(fast_timing: turns.StreamTiming) -> None:
    text = 'Explain {v:k for k,v in d.items()} and {not_a_var} in {"a": 1} $x %s'
    fake = FakeOpenCode([turn_script(["Echo: ", "x"])])

    collect(direct_client(fake), text)

    assert fake.prompts[0]["parts"] == [{"type": "text", "text": text}]


def test_stream_to_closed_port_fails_fast() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()

    with (
        OpenCodeClient.direct(f"http://127.0.0.1:{port}") as client,
        pytest.raises(ConnectError, match=f"Cannot connect to OpenCode at .*:{port}"),
    ):
        client.stream_prompt(SESSION_ID, "hi").start()

    assert time.monotonic() - started < 5


def test_sync_stream_inside_running_event_loop(
    fast_timing: turns.StreamTiming,
) -> None:
    fake = FakeOpenCode([turn_script(["Echo: ", "hi"])])
    client = direct_client(fake)

    async def notebook_cell() -> list[StreamEvent]:
        return collect(client)

    events = asyncio.run(notebook_cell())

    assert isinstance(events[-1], PromptReply)


def test_server_error_on_send_is_surfaced_once(fast_timing: turns.StreamTiming) -> None:
    fake = FakeOpenCode([turn_script(["x"])])
    body = {
        "name": "UnknownError",
        "data": {
            "message": "Unexpected server error. Check server logs for details.",
            "ref": "err_00111007",
        },
    }

    def failing(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/prompt_async"):
            fake.requests.append(request)
            return httpx.Response(500, json=body)
        return fake(request)

    client = OpenCodeClient.direct(
        "http://opencode.test", transport=httpx.MockTransport(failing)
    )

    with pytest.raises(OpenCodeServerError) as raised:
        collect(client)

    assert raised.value.status == 500
    assert "Unexpected server error" in str(raised.value)
    assert "err_00111007" in str(raised.value)
    assert fake.paths().count(f"/session/{SESSION_ID}/prompt_async") == 1
    assert fake.aborts == 0


def test_abort_of_unknown_session_raises_not_found() -> None:
    fake = FakeOpenCode([])

    with pytest.raises(SessionNotFoundError):
        direct_client(fake).abort("ses_missing")

    assert "/session/ses_missing/abort" not in fake.paths()


async def test_async_stream_yields_deltas_then_the_reply(
    fast_timing: turns.StreamTiming,
) -> None:
    fake = FakeOpenCode([turn_script(["Echo: ", "hi"])], async_events=True)
    client = async_direct_client(fake)

    async with client.stream_prompt(SESSION_ID, "hi") as stream:
        events = [event async for event in stream]

    reply = events[-1]
    assert isinstance(reply, PromptReply)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Echo: hi"
    assert stream.text == "Echo: hi"
    await client.aclose()


async def test_async_reply_arrives_after_stream_closes(
    fast_timing: turns.StreamTiming,
) -> None:
    fake = FakeOpenCode([connected_then_closed], async_events=True, busy_polls=3)
    client = async_direct_client(fake)

    async with client.stream_prompt(SESSION_ID, "hi") as stream:
        events = [event async for event in stream]

    assert isinstance(events[-1], PromptReply)
    assert events[-1].response == "Echo: hi"
    await client.aclose()


async def test_cancelled_task_aborts_the_turn(fast_timing: turns.StreamTiming) -> None:
    fake = FakeOpenCode(
        [turn_script(["Echo: ", "a ", "b"], pause=0.2)], async_events=True
    )
    client = async_direct_client(fake)
    first_delta = asyncio.Event()

    async def consume() -> None:
        async for event in client.stream_prompt(SESSION_ID, "a b"):
            if isinstance(event, TextDelta):
                first_delta.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_delta.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert fake.aborts == 1
    await client.aclose()


async def test_async_prompts_to_one_session_take_turns(
    fast_timing: turns.StreamTiming,
) -> None:
    fake = FakeOpenCode([turn_script(["Echo: ", "x"], pause=0.02)], async_events=True)
    client = async_direct_client(fake)
    prompts_seen_at_reply: list[int] = []

    async def run(text: str) -> None:
        async with client.stream_prompt(SESSION_ID, text) as stream:
            async for event in stream:
                if isinstance(event, PromptReply):
                    prompts_seen_at_reply.append(len(fake.prompts))

    await asyncio.gather(run("first"), run("second"))

    assert prompts_seen_at_reply == [1, 2]
    await client.aclose()


# ---------------------------------------------------------------------------
# The gateway's streaming endpoint, mocked


def gateway_stream(
    events: list[dict[str, Any]], *, messages: list[dict[str, Any]] | None = None
) -> tuple[OpenCodeClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/prompt/stream"):
            body = b"".join(sse(event) for event in events)
            return httpx.Response(
                200, headers={"content-type": "text/event-stream"}, content=body
            )
        if request.url.path.endswith("/messages"):
            return httpx.Response(200, json={"messages": messages or []})
        if request.url.path.endswith("/abort"):
            return httpx.Response(200, json={"success": True})
        return httpx.Response(404, json={"statusCode": 404, "message": "Not found"})

    client = OpenCodeClient(
        "http://gateway.test", port=3100, transport=httpx.MockTransport(handler)
    )
    return client, seen


START = {"type": "start", "sessionId": SESSION_ID, "userMessageId": USER_ID}


def test_gateway_stream_yields_events_then_the_reply() -> None:
    reply = {"type": "reply", "messageId": REPLY_ID, "response": "Echo: hi", "cost": 0}
    delta = {"type": "delta", "messageId": REPLY_ID, "partId": "p", "kind": "text"}
    client, seen = gateway_stream(
        [START, {**delta, "text": "Echo: "}, {**delta, "text": "hi"}, reply]
    )

    with client.stream_prompt(SESSION_ID, "hi", model="local/echo") as stream:
        events = list(stream)

    assert events[-1] == PromptReply(REPLY_ID, "Echo: hi", {"cost": 0})
    assert stream.text == "Echo: hi"
    assert stream.user_message_id == USER_ID
    assert seen[0].url.path == f"/api/opencode/3100/session/{SESSION_ID}/prompt/stream"
    assert json.loads(seen[0].content) == {
        "text": "hi",
        "model": {"providerID": "local", "modelID": "echo"},
    }


@pytest.mark.parametrize(
    ("status", "message", "error"),
    [
        pytest.param(502, "OpenCode on port 3100 failed", UpstreamError, id="502"),
        pytest.param(404, "Session not found", SessionNotFoundError, id="404"),
        pytest.param(504, "did not answer", UpstreamError, id="504"),
    ],
)
def test_gateway_error_event_raises_typed_error(
    status: int, message: str, error: type[Exception]
) -> None:
    client, _ = gateway_stream(
        [START, {"type": "error", "statusCode": status, "message": message}]
    )

    with pytest.raises(error, match=message):
        collect(client)


def test_gateway_aborted_event_raises_with_partial_text() -> None:
    aborted = {"type": "aborted", "messageId": REPLY_ID, "response": "Echo: a "}
    client, _ = gateway_stream([START, aborted])

    with pytest.raises(PromptAbortedError) as raised:
        collect(client)

    assert raised.value.partial_text == "Echo: a "
    assert raised.value.message_id == REPLY_ID


def test_gateway_error_before_streaming_raises_at_start() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"statusCode": 400, "message": "Unknown model 'local/nope'."}
        return httpx.Response(400, json=body)

    client = OpenCodeClient(
        "http://gateway.test", port=3100, transport=httpx.MockTransport(handler)
    )
    stream = client.stream_prompt(SESSION_ID, "hi", model="local/nope")

    with pytest.raises(BadRequestError, match="Unknown model"):
        stream.start()


def test_gateway_stream_cut_falls_back_to_messages(
    fast_timing: turns.StreamTiming,
) -> None:
    messages = [
        {
            "id": USER_ID,
            "role": "user",
            "content": "hi",
            "timestamp": "2026-03-03T10:00:00Z",
        },
        {
            "id": REPLY_ID,
            "role": "assistant",
            "content": "Echo: hi",
            "timestamp": "2026-03-03T10:00:01Z",
            "parentID": USER_ID,
            "completedAt": "2026-03-03T10:00:02Z",
            "finish": "stop",
        },
    ]
    client, seen = gateway_stream([START], messages=messages)

    events = collect(client)

    assert events[-1] == PromptReply(
        REPLY_ID, "Echo: hi", {"finish": "stop", "completedAt": "2026-03-03T10:00:02Z"}
    )
    assert seen[-1].url.path.endswith("/messages")


def test_gateway_stream_cut_before_start_raises() -> None:
    client, _ = gateway_stream([])

    with pytest.raises(TransportError, match="before the prompt started"):
        collect(client)


def test_gateway_abort_posts_to_abort_route() -> None:
    client, seen = gateway_stream([])

    client.abort(SESSION_ID)

    assert seen[0].method == "POST"
    assert seen[0].url.path == f"/api/opencode/3100/session/{SESSION_ID}/abort"


# ---------------------------------------------------------------------------
# The real chain: offline model, `opencode serve`, gateway

MODEL = "local/echo"
MODES = ["direct", "gateway"]


def chain_client(
    chain: LocalChain, mode: str, transport: httpx.BaseTransport | None = None
) -> OpenCodeClient:
    if mode == "direct":
        return OpenCodeClient.direct(chain.opencode_urls[0], transport=transport)
    return OpenCodeClient(
        chain.gateway_url, port=chain.opencode_ports[0], transport=transport
    )


def async_chain_client(chain: LocalChain, mode: str) -> AsyncOpenCodeClient:
    if mode == "direct":
        return AsyncOpenCodeClient.direct(chain.opencode_urls[0])
    return AsyncOpenCodeClient(chain.gateway_url, port=chain.opencode_ports[0])


@pytest.fixture
def make_client(chain: LocalChain) -> Iterator[Callable[..., OpenCodeClient]]:
    """Build sync clients of the chain, closed at teardown even when a test fails."""
    clients: list[OpenCodeClient] = []

    def make(mode: str, transport: httpx.BaseTransport | None = None) -> OpenCodeClient:
        client = chain_client(chain, mode, transport)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def chain_session(chain: LocalChain) -> Iterator[str]:
    # A title avoids OpenCode's extra model call that writes one.
    with OpenCodeClient.direct(chain.opencode_urls[0]) as client:
        session = client.create_session("streaming test")
        yield session.id
        client.delete_session(session.id)


def wait_for_aborted_reply(client: OpenCodeClient, session_id: str) -> Message:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        last = client.list_messages(session_id)[-1]
        if last.role == "assistant" and last.extra.get("error"):
            return last
        time.sleep(0.1)
    raise AssertionError(f"No aborted reply in session {session_id}")


@pytest.mark.parametrize("mode", MODES)
def test_chain_deltas_arrive_before_the_turn_ends(
    make_client: Callable[..., OpenCodeClient], chain_session: str, mode: str
) -> None:
    client = make_client(mode)
    timeline: list[tuple[float, StreamEvent]] = []

    with client.stream_prompt(
        chain_session, "[[delay 0.2]] one two three four five six", model=MODEL
    ) as stream:
        for event in stream:
            timeline.append((time.monotonic(), event))

    reply_time, reply = timeline[-1]
    deltas = [(t, e) for t, e in timeline if isinstance(e, TextDelta)]
    assert isinstance(reply, PromptReply)
    assert reply.response == "Echo: one two three four five six"
    assert "".join(event.text for _, event in deltas) == reply.response
    assert stream.text == reply.response
    assert len(deltas) >= 6
    # Seven chunks come 0.2 s apart: the first long before the reply.
    assert reply_time - deltas[0][0] >= 0.8
    assert deltas[-1][0] - deltas[0][0] >= 0.5
    last = client.list_messages(chain_session)[-1]
    assert reply.message_id == last.id
    assert reply.response == last.content
    assert reply.extra["finish"] == "stop"


@pytest.mark.parametrize("mode", MODES)
def test_chain_stream_reply_has_prompt_fields(
    make_client: Callable[..., OpenCodeClient], chain_session: str, mode: str
) -> None:
    client = make_client(mode)

    prompted = client.prompt(chain_session, "plain", model=MODEL)
    with client.stream_prompt(chain_session, "streamed", model=MODEL) as stream:
        streamed = list(stream)[-1]

    assert isinstance(streamed, PromptReply)
    assert streamed.response == "Echo: streamed"
    assert set(streamed.extra) == set(prompted.extra)
    assert streamed.extra["modelID"] == prompted.extra["modelID"] == "echo"


@pytest.mark.parametrize("mode", MODES)
async def test_chain_async_deltas_arrive_before_the_turn_ends(
    chain: LocalChain, chain_session: str, mode: str
) -> None:
    timeline: list[tuple[float, StreamEvent]] = []

    async with (
        async_chain_client(chain, mode) as client,
        client.stream_prompt(
            chain_session, "[[delay 0.2]] alpha beta gamma delta", model=MODEL
        ) as stream,
    ):
        async for event in stream:
            timeline.append((time.monotonic(), event))

    reply_time, reply = timeline[-1]
    deltas = [(t, e) for t, e in timeline if isinstance(e, TextDelta)]
    assert isinstance(reply, PromptReply)
    assert reply.response == "Echo: alpha beta gamma delta"
    assert "".join(event.text for _, event in deltas) == reply.response
    assert reply_time - deltas[0][0] >= 0.5


@pytest.mark.parametrize("mode", MODES)
def test_chain_tool_call_streams_tool_events(
    make_client: Callable[..., OpenCodeClient], chain_session: str, mode: str
) -> None:
    client = make_client(mode)

    with client.stream_prompt(
        chain_session, "[[tool bash: echo streamed-tool]] go", model=MODEL
    ) as stream:
        events = list(stream)

    tools = [event for event in events if isinstance(event, ToolUpdate)]
    steps = [event.reason for event in events if isinstance(event, StepFinish)]
    reply = events[-1]
    assert [tool.status for tool in tools][-2:] == ["running", "completed"]
    assert {tool.tool for tool in tools} == {"bash"}
    assert tools[-1].input["command"] == "echo streamed-tool"
    assert tools[-1].output == "streamed-tool\n"
    assert steps == ["tool-calls", "stop"]
    assert isinstance(reply, PromptReply)
    assert reply.response == "Done: streamed-tool"
    assert stream.text == "Done: streamed-tool"
    assert tools[-1].message_id != reply.message_id


@pytest.mark.parametrize("mode", MODES)
def test_chain_abort_mid_turn_keeps_session_usable(
    make_client: Callable[..., OpenCodeClient], chain_session: str, mode: str
) -> None:
    client = make_client(mode)
    full = "Echo: a b c d e f g h i j k l"
    deltas = 0

    with (
        pytest.raises(PromptAbortedError) as raised,
        client.stream_prompt(
            chain_session, "[[delay 0.3]] a b c d e f g h i j k l", model=MODEL
        ) as stream,
    ):
        for event in stream:
            if isinstance(event, TextDelta):
                deltas += 1
            if deltas == 2:
                stream.abort()
                started = time.monotonic()
                deltas += 1

    assert time.monotonic() - started < 5
    assert raised.value.partial_text.startswith("Echo: a")
    assert full.startswith(raised.value.partial_text)
    assert raised.value.partial_text != full
    assert raised.value.message_id is not None
    after = client.prompt(chain_session, "after abort", model=MODEL)
    assert after.response == "Echo: after abort"


@pytest.mark.parametrize("mode", MODES)
def test_chain_breaking_out_aborts_the_turn(
    make_client: Callable[..., OpenCodeClient], chain_session: str, mode: str
) -> None:
    client = make_client(mode)

    for event in client.stream_prompt(
        chain_session, "[[delay 0.3]] u v w x y z", model=MODEL
    ):
        if isinstance(event, TextDelta):
            break

    aborted = wait_for_aborted_reply(client, chain_session)
    assert str(aborted.extra["error"]).startswith("MessageAbortedError")
    with client.stream_prompt(chain_session, "next", model=MODEL) as stream:
        assert list(stream)[-1] == stream.reply
    assert stream.text == "Echo: next"


@pytest.mark.parametrize("mode", MODES)
async def test_chain_cancelled_task_aborts_the_turn(
    chain: LocalChain,
    make_client: Callable[..., OpenCodeClient],
    chain_session: str,
    mode: str,
) -> None:
    first_delta = asyncio.Event()
    sync_client = make_client(mode)

    async with async_chain_client(chain, mode) as client:

        async def consume() -> None:
            async for event in client.stream_prompt(
                chain_session, "[[delay 0.3]] p q r s t", model=MODEL
            ):
                if isinstance(event, TextDelta):
                    first_delta.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first_delta.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        aborted = await asyncio.to_thread(
            wait_for_aborted_reply, sync_client, chain_session
        )
        reply = await client.prompt(chain_session, "after cancel", model=MODEL)

    assert aborted.role == "assistant"
    assert reply.response == "Echo: after cancel"


class _CutStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, marker: bytes) -> None:
        self._inner = inner
        self._marker = marker

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            yield chunk
            if self._marker in chunk:
                raise httpx.ReadError("event stream cut by the test")

    def close(self) -> None:
        self._inner.close()


class CuttingTransport(httpx.BaseTransport):
    """Send requests to the network, and cut the first event stream it returns."""

    def __init__(self, marker: bytes) -> None:
        self._inner = httpx.HTTPTransport()
        self._marker = marker
        self.cuts = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        content_type = response.headers.get("content-type", "")
        if self.cuts or not content_type.startswith("text/event-stream"):
            return response
        self.cuts += 1
        assert isinstance(response.stream, httpx.SyncByteStream)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_CutStream(response.stream, self._marker),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._inner.close()


@pytest.mark.parametrize(
    ("mode", "marker"),
    [("direct", b"message.part.delta"), ("gateway", b'"type":"delta"')],
)
def test_chain_reply_survives_a_dropped_event_stream(
    make_client: Callable[..., OpenCodeClient],
    chain_session: str,
    mode: str,
    marker: bytes,
) -> None:
    transport = CuttingTransport(marker)
    client = make_client(mode, transport)

    with client.stream_prompt(
        chain_session, "[[delay 0.2]] still here at the end", model=MODEL
    ) as stream:
        events = list(stream)

    reply = events[-1]
    deltas = [event.text for event in events if isinstance(event, TextDelta)]
    assert transport.cuts == 1
    assert isinstance(reply, PromptReply)
    assert reply.response == "Echo: still here at the end"
    assert "".join(deltas) == reply.response
    assert client.list_messages(chain_session)[-1].id == reply.message_id


def test_chain_gateway_stream_route_sends_start_then_reply(
    chain: LocalChain, chain_session: str
) -> None:
    url = f"{chain.api_url()}/session/{chain_session}/prompt/stream"
    body = {"text": "route", "model": {"providerID": "local", "modelID": "echo"}}

    with httpx.stream("POST", url, json=body, timeout=60) as response:
        payloads = [
            json.loads(line[len("data: ") :])
            for line in response.iter_lines()
            if line.startswith("data: ")
        ]

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert payloads[0]["type"] == "start"
    assert payloads[0]["sessionId"] == chain_session
    assert payloads[0]["userMessageId"].startswith("msg_")
    assert payloads[-1]["type"] == "reply"
    assert payloads[-1]["response"] == "Echo: route"
    assert {"delta", "step"} <= {payload["type"] for payload in payloads}


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        pytest.param(
            "session/ses_missing/prompt/stream",
            {"text": "hi"},
            404,
            "Session not found",
            id="unknown-session",
        ),
        pytest.param(
            "session/{id}/prompt/stream",
            {"text": "  "},
            500,
            "Message text required",
            id="blank-text",
        ),
        pytest.param(
            "session/{id}/prompt/stream",
            {"text": "hi", "model": {"providerID": "local", "modelID": "nope"}},
            400,
            "Unknown model 'local/nope'",
            id="unknown-model",
        ),
        pytest.param(
            "session/ses_missing/abort", None, 404, "Session not found", id="abort-404"
        ),
    ],
)
def test_chain_gateway_stream_errors_before_streaming(
    chain: LocalChain,
    chain_session: str,
    path: str,
    body: dict[str, Any] | None,
    status: int,
    message: str,
) -> None:
    url = f"{chain.api_url()}/{path.format(id=chain_session)}"

    response = httpx.post(url, json=body, timeout=30)

    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["statusCode"] == status
    assert response.json()["message"].startswith(message)


def test_chain_gateway_abort_route(chain: LocalChain, chain_session: str) -> None:
    url = f"{chain.api_url()}/session/{chain_session}/abort"

    response = httpx.post(url, timeout=30)

    assert response.status_code == 200
    assert response.json() == {"success": True}
