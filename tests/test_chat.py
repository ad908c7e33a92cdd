"""The chat panel's widget state, against a mock gateway and the real chain."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from live_output import echo_events, sse

from opencode_notebook import AsyncOpenCodeClient, Message, OpenCodeClient, Session
from opencode_notebook._chat_view import LiveMessage
from opencode_notebook.chat import ChatPanel, render_message, session_options
from opencode_notebook.models import format_timestamp
from opencode_notebook.stack import LocalChain
from opencode_notebook.streaming import TextDelta, ToolUpdate

PORT = 3100
PREFIX = f"/api/opencode/{PORT}"
HOSTILE = (
    "**ok** [x](javascript:alert(1)) <img src=x onerror=alert(1)> "
    "<svg/onload=alert(1)>\n\n```python\nprint('<b>code</b>')\n```"
)


class FakeGateway:
    """
    A mock transport handler that serves the Sessions API from memory.

    It records every request, answers a prompt with the `reply` template
    (`Echo: <text>` by default), and waits `prompt_delay` seconds before answering.
    When `prompt_status` is set, every prompt fails with that status and
    `prompt_body`; when `messages_status` is set, so does every message list.

    A streamed prompt sends the reply word by word, `chunk_delay` seconds apart,
    and ends early with an `aborted` event when its session is aborted. With
    `cut_stream` set, its stream ends right after the start, and the reply is
    left for the client to read from the messages. With `fail_after` set, it
    ends with an `error` event after that many words.
    """

    def __init__(self) -> None:
        self.sessions: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[httpx.Request] = []
        self.prompt_delay = 0.0
        self.prompt_status: int | None = None
        self.prompt_body: dict[str, Any] = {
            "statusCode": 500,
            "message": "Unexpected server error",
        }
        self.messages_status: int | None = None
        self.reply = "Echo: {text}"
        self.chunk_delay = 0.0
        self.cut_stream = False
        self.fail_after: int | None = None
        self.aborts: list[str] = []
        self._streaming: set[str] = set()
        self._aborted: set[str] = set()
        self._ids = itertools.count(1)
        self._clock = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)

    def _now(self) -> str:
        self._clock += timedelta(seconds=1)
        return format_timestamp(self._clock)

    def add_session(self, title: str, parent_id: str | None = None) -> str:
        session_id = f"ses_{next(self._ids):03d}"
        now = self._now()
        session = {"id": session_id, "title": title, "createdAt": now, "updatedAt": now}
        if parent_id is not None:
            session["parentID"] = parent_id
        self.sessions[session_id] = session
        self.messages[session_id] = [
            dict(message) for message in self.messages.get(parent_id or "", [])
        ]
        return session_id

    def new_message_id(self) -> str:
        return f"msg_{next(self._ids):03d}"

    def add_message(
        self,
        session_id: str,
        role: str,
        content: str,
        message_id: str | None = None,
        **extra: str,
    ) -> str:
        message_id = message_id or self.new_message_id()
        message = {
            "id": message_id,
            "role": role,
            "content": content,
            "timestamp": self._now(),
        }
        if role == "assistant":
            message.update(providerID="local", modelID="echo", agent="build")
        message.update(extra)
        self.messages[session_id].append(message)
        self.sessions[session_id]["updatedAt"] = message["timestamp"]
        return message_id

    def posts(self, suffix: str) -> list[httpx.Request]:
        """The POST requests to paths ending in `suffix`, with streams for `/prompt`."""
        suffixes = (suffix, f"{suffix}/stream") if suffix == "/prompt" else (suffix,)
        return [
            request
            for request in self.requests
            if request.method == "POST" and request.url.path.endswith(suffixes)
        ]

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix(PREFIX)
        if request.method == "GET" and path == "/sessions":
            sessions = sorted(
                self.sessions.values(), key=lambda s: s["updatedAt"], reverse=True
            )
            return httpx.Response(200, json=sessions)

        if request.method == "POST" and path == "/session/create":
            body = json.loads(request.content or b"{}")
            parent_id = body.get("parentID")
            if parent_id is not None and parent_id not in self.sessions:
                return self._error(404, "Session not found")
            session_id = self.add_session(body.get("title") or "New session", parent_id)
            return httpx.Response(200, json=self.sessions[session_id])

        match = re.fullmatch(
            r"/session/([^/]+)(/messages|/prompt|/prompt/stream|/abort)?", path
        )
        if match is None:
            return self._error(404, "Not found")
        session_id, suffix = match.group(1), match.group(2)
        if session_id not in self.sessions:
            return self._error(404, "Session not found")

        if request.method == "DELETE" and suffix is None:
            del self.sessions[session_id]
            return httpx.Response(200, json={"success": True})
        if request.method == "GET" and suffix is None:
            return httpx.Response(200, json=self.sessions[session_id])
        if request.method == "GET" and suffix == "/messages":
            if self.messages_status is not None:
                return self._error(self.messages_status, "Upstream failed")
            return httpx.Response(200, json={"messages": self.messages[session_id]})
        if request.method == "POST" and suffix == "/prompt":
            return await self._prompt(session_id, json.loads(request.content))
        if request.method == "POST" and suffix == "/prompt/stream":
            return await self._prompt_stream(session_id, json.loads(request.content))
        if request.method == "POST" and suffix == "/abort":
            self.aborts.append(session_id)
            if session_id in self._streaming:
                self._aborted.add(session_id)
            return httpx.Response(200, json={"success": True})
        return self._error(404, "Not found")

    async def _prompt(self, session_id: str, body: dict[str, Any]) -> httpx.Response:
        await asyncio.sleep(self.prompt_delay)
        if self.prompt_status is not None:
            return httpx.Response(self.prompt_status, json=self.prompt_body)
        if session_id not in self.sessions:
            return self._error(404, "Session not found")
        self.add_message(session_id, "user", body["text"])
        response = self.reply.format(text=body["text"])
        message_id = self.add_message(session_id, "assistant", response)
        return httpx.Response(200, json={"messageId": message_id, "response": response})

    async def _prompt_stream(
        self, session_id: str, body: dict[str, Any]
    ) -> httpx.Response:
        await asyncio.sleep(self.prompt_delay)
        if self.prompt_status is not None:
            return httpx.Response(self.prompt_status, json=self.prompt_body)
        if session_id not in self.sessions:
            return self._error(404, "Session not found")
        user_id = self.add_message(session_id, "user", body["text"])
        response = self.reply.format(text=body["text"])
        events = self._play(session_id, user_id, response)
        headers = {"content-type": "text/event-stream"}
        return httpx.Response(200, headers=headers, content=events)

    async def _play(
        self, session_id: str, user_id: str, response: str
    ) -> AsyncIterator[bytes]:
        reply_id = self.new_message_id()
        start, *deltas, step, reply = echo_events(
            session_id, user_id, reply_id, response
        )
        finished = {"parentID": user_id, "completedAt": self._now(), "finish": "stop"}
        yield sse(start)
        if self.cut_stream:
            self.add_message(session_id, "assistant", response, reply_id, **finished)
            return
        self._streaming.add(session_id)
        written = ""
        try:
            for count, delta in enumerate(deltas):
                await asyncio.sleep(self.chunk_delay)
                if count == self.fail_after:
                    failure = {"statusCode": 502, "message": "Upstream model failed"}
                    yield sse({"type": "error", **failure})
                    return
                if session_id in self._aborted:
                    self._aborted.discard(session_id)
                    self.add_message(
                        session_id,
                        "assistant",
                        written,
                        reply_id,
                        parentID=user_id,
                        error="MessageAbortedError: Aborted",
                    )
                    aborted = {"messageId": reply_id, "response": written}
                    yield sse({"type": "aborted", **aborted})
                    return
                written += delta["text"]
                yield sse(delta)
        finally:
            self._streaming.discard(session_id)
        self.add_message(session_id, "assistant", response, reply_id, **finished)
        yield sse(step)
        yield sse(reply)

    @staticmethod
    def _error(status: int, message: str) -> httpx.Response:
        return httpx.Response(status, json={"statusCode": status, "message": message})


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway()


def client_for(gateway: FakeGateway) -> AsyncOpenCodeClient:
    return AsyncOpenCodeClient(
        "http://gateway.test", port=PORT, transport=httpx.MockTransport(gateway)
    )


async def open_panel(gateway: FakeGateway, session_id: str | None = None) -> ChatPanel:
    panel = ChatPanel(client_for(gateway), session_id)
    await panel.wait()
    return panel


def history_html(panel: ChatPanel) -> list[str]:
    return [widget.value for widget in panel.message_widgets]


def status_kind(panel: ChatPanel) -> str:
    match = re.search(r"opencode-chat-status-(\w+)", panel.status.value)
    assert match is not None, panel.status.value
    return match.group(1)


# Sending.


async def test_send_shows_reply_and_clears_box(gateway: FakeGateway) -> None:
    session_id = gateway.add_session("Greeting")
    panel = await open_panel(gateway)
    panel.input.value = "hello there"

    task = panel.send()
    assert task is not None
    reply = await task
    await panel.wait()

    assert reply is not None
    assert reply.response == "Echo: hello there"
    assert panel.session_id == session_id
    assert panel.input.value == ""
    html = history_html(panel)
    assert len(html) == 2
    assert "opencode-chat-user" in html[0]
    assert "hello there" in html[0]
    assert "sending" not in html[0]
    assert "opencode-chat-assistant" in html[1]
    assert "Echo: hello there" in html[1]
    assert "local/echo" in html[1]
    assert status_kind(panel) == "info"
    assert "Reply received" in panel.status.value


async def test_send_reads_value_set_in_code(gateway: FakeGateway) -> None:
    gateway.add_session("Pasted")
    panel = await open_panel(gateway)

    panel.input.value = "pasted prompt"
    panel.send_button.click()
    await panel.wait()

    (post,) = gateway.posts("/prompt")
    assert json.loads(post.content) == {"text": "pasted prompt"}
    assert panel.input.value == ""


async def test_send_error_keeps_text(gateway: FakeGateway) -> None:
    gateway.add_session("Failing")
    gateway.prompt_status = 500
    panel = await open_panel(gateway)

    panel.input.value = "pasted prompt"
    panel.send_button.click()
    await panel.wait()

    assert len(gateway.posts("/prompt")) == 1
    assert panel.input.value == "pasted prompt"
    assert status_kind(panel) == "error"
    assert "Unexpected server error" in panel.status.value
    assert "still in the box" in panel.status.value
    assert history_html(panel) == []
    assert not panel.busy
    assert not panel.send_button.disabled


async def test_server_error_shows_ref_once(gateway: FakeGateway) -> None:
    gateway.add_session("Unknown model")
    gateway.prompt_status = 500
    gateway.prompt_body = {
        "name": "UnknownError",
        "data": {
            "message": "Unexpected server error. Check server logs for details.",
            "ref": "err_00111007",
        },
    }
    panel = await open_panel(gateway)

    panel.model_picker.value = "openrouter/does-not-exist-xyz"
    panel.input.value = "hello"
    panel.send_button.click()
    await panel.wait()

    assert len(gateway.posts("/prompt")) == 1
    assert status_kind(panel) == "error"
    assert "Unexpected server error. Check server logs" in panel.status.value
    assert "err_00111007" in panel.status.value
    assert "not found" not in panel.status.value.lower()
    assert panel.input.value == "hello"


async def test_reply_shows_when_read_back_fails(gateway: FakeGateway) -> None:
    gateway.add_session("Flaky reads")
    panel = await open_panel(gateway)
    gateway.messages_status = 502

    panel.input.value = "still there?"
    panel.send_button.click()
    await panel.wait()

    html = history_html(panel)
    assert len(html) == 2
    assert "still there?" in html[0]
    assert "sending" not in html[0]
    assert "Echo: still there?" in html[1]
    assert panel.input.value == ""
    assert "Reply received" in panel.status.value


async def test_session_deleted_elsewhere_keeps_text(gateway: FakeGateway) -> None:
    session_id = gateway.add_session("Gone soon")
    panel = await open_panel(gateway)
    del gateway.sessions[session_id]

    panel.input.value = "are you there?"
    panel.send_button.click()
    await panel.wait()

    assert panel.input.value == "are you there?"
    assert status_kind(panel) == "error"
    assert "Session not found" in panel.status.value


async def test_double_click_sends_once(gateway: FakeGateway) -> None:
    gateway.add_session("Slow")
    gateway.prompt_delay = 1.0
    panel = await open_panel(gateway)
    panel.input.value = "only once"

    panel.send_button.click()
    first = panel._sending
    panel.send_button.click()
    again = panel.send()
    assert panel.busy
    assert panel.send_button.disabled
    await asyncio.sleep(0.7)
    sending_status = panel.status.value
    await panel.wait()

    assert again is first
    assert len(gateway.posts("/prompt")) == 1
    assert "Waiting for the agent" in sending_status
    assert len(history_html(panel)) == 2
    assert not panel.busy


@pytest.mark.parametrize(
    "text",
    [pytest.param("", id="empty"), pytest.param("  \t\n", id="whitespace")],
)
async def test_blank_send_sends_nothing(gateway: FakeGateway, text: str) -> None:
    gateway.add_session("Quiet")
    panel = await open_panel(gateway)
    before = len(gateway.requests)

    panel.input.value = text
    result = panel.send()
    panel.send_button.click()
    await panel.wait()

    assert result is None
    assert len(gateway.requests) == before
    assert status_kind(panel) == "hint"
    assert panel.input.value == text
    assert not panel.busy


async def test_text_typed_during_send_is_kept(gateway: FakeGateway) -> None:
    gateway.add_session("Typing ahead")
    gateway.prompt_delay = 0.2
    panel = await open_panel(gateway)
    panel.input.value = "first question"

    task = panel.send()
    assert task is not None
    panel.input.value = "second question, half typed"
    await task

    assert panel.input.value == "second question, half typed"


async def test_send_shows_pending_message(gateway: FakeGateway) -> None:
    gateway.add_session("Pending")
    gateway.prompt_delay = 0.3
    panel = await open_panel(gateway)
    panel.input.value = "wait for it"

    panel.send()
    await asyncio.sleep(0.1)
    during = history_html(panel)
    await panel.wait()

    assert len(during) == 1
    assert "sending" in during[0]
    assert "wait for it" in during[0]
    assert "sending" not in history_html(panel)[0]


async def test_send_passes_model_and_agent(gateway: FakeGateway) -> None:
    gateway.add_session("Choices")
    panel = await open_panel(gateway)

    panel.model_picker.value = " local/echo "
    panel.agent_picker.value = "plan"
    panel.input.value = "pick these"
    panel.send_button.click()
    await panel.wait()

    (post,) = gateway.posts("/prompt")
    assert json.loads(post.content) == {
        "text": "pick these",
        "model": {"providerID": "local", "modelID": "echo"},
        "agent": "plan",
    }


async def test_invalid_model_keeps_text(gateway: FakeGateway) -> None:
    gateway.add_session("Bad model")
    panel = await open_panel(gateway)

    panel.model_picker.value = "echo"
    panel.input.value = "hello"
    panel.send_button.click()
    await panel.wait()

    assert gateway.posts("/prompt") == []
    assert panel.input.value == "hello"
    assert status_kind(panel) == "error"
    assert "Invalid model" in panel.status.value


async def test_send_without_session_creates_one(gateway: FakeGateway) -> None:
    panel = await open_panel(gateway)
    assert panel.session_id is None

    panel.input.value = "start here"
    panel.send_button.click()
    await panel.wait()

    assert len(gateway.sessions) == 1
    assert panel.session_id in gateway.sessions
    assert len(history_html(panel)) == 2


async def test_reply_after_switch_stays_out(gateway: FakeGateway) -> None:
    first = gateway.add_session("First")
    second = gateway.add_session("Second")
    gateway.prompt_delay = 0.3
    panel = await open_panel(gateway, first)
    panel.input.value = "to the first"

    task = panel.send()
    assert task is not None
    await asyncio.sleep(0.1)
    panel.session_picker.value = second
    await task
    await panel.wait()

    assert panel.session_id == second
    assert history_html(panel) == []
    assert len(gateway.messages[first]) == 2


async def test_messages_appear_without_reloading(gateway: FakeGateway) -> None:
    session_id = gateway.add_session("Long")
    gateway.add_message(session_id, "user", "one")
    gateway.add_message(session_id, "assistant", "two")
    panel = await open_panel(gateway)
    before = panel.message_widgets

    panel.input.value = "three"
    panel.send_button.click()
    await panel.wait()

    after = panel.message_widgets
    assert len(after) == 4
    assert after[:2] == before


async def test_long_history_is_paged(gateway: FakeGateway) -> None:
    session_id = gateway.add_session("Long")
    for number in range(30):
        gateway.add_message(session_id, "user", f"question {number}")
    panel = await open_panel(gateway)
    before = panel.message_widgets
    first_page = panel.history.children[0]

    panel.input.value = "one more"
    panel.send_button.click()
    await panel.wait()

    pages = panel.history.children
    assert [len(page.children) for page in pages] == [25, 7]
    assert pages[0] is first_page
    assert panel.message_widgets[:30] == before
    assert "question 0" in history_html(panel)[0]
    assert "Echo: one more" in history_html(panel)[-1]


async def test_kernel_loop_stays_free_during_send(gateway: FakeGateway) -> None:
    gateway.add_session("Concurrent")
    gateway.prompt_delay = 0.5
    panel = await open_panel(gateway)
    panel.input.value = "slow one"
    finished: list[str] = []

    async def other_cell() -> None:
        await asyncio.sleep(0.05)
        finished.append("other cell")

    task = panel.send()
    assert task is not None
    task.add_done_callback(lambda _: finished.append("reply"))
    await asyncio.gather(task, other_cell())

    assert finished == ["other cell", "reply"]


async def test_click_from_another_thread(gateway: FakeGateway) -> None:
    # JupyterLab can deliver widget messages on a kernel subshell's thread,
    # which runs an event loop of its own.
    gateway.add_session("Subshell")
    gateway.prompt_delay = 0.2
    panel = await open_panel(gateway)
    panel.input.value = "from another thread"

    async def click_twice() -> None:
        panel.send_button.click()
        panel.send_button.click()

    await asyncio.to_thread(asyncio.run, click_twice())
    await panel.wait()

    assert len(gateway.posts("/prompt")) == 1
    assert len(history_html(panel)) == 2
    assert panel.input.value == ""
    assert not panel.busy


# Untrusted text.


async def test_hostile_reply_renders_inert(gateway: FakeGateway) -> None:
    gateway.add_session("Hostile")
    gateway.reply = HOSTILE
    panel = await open_panel(gateway)

    panel.input.value = "be nasty"
    panel.send_button.click()
    await panel.wait()

    html = history_html(panel)[1]
    assert "<strong>ok</strong>" in html
    assert "<pre><code" in html
    assert "&lt;b&gt;code&lt;/b&gt;" in html
    assert "<script" not in html.lower()
    assert "<img" not in html.lower()
    assert "<svg" not in html.lower()
    assert not re.search(r"href\s*=\s*[\"']?\s*javascript:", html, re.IGNORECASE)
    assert not re.search(r"<[^>]*\son\w+\s*=", html)


async def test_hostile_title_and_error_are_text(gateway: FakeGateway) -> None:
    title = "<img src=x onerror=alert(1)>"
    session_id = gateway.add_session(title)
    gateway.prompt_status = 502
    gateway.prompt_body = {"statusCode": 502, "message": "<script>alert(2)</script>"}
    panel = await open_panel(gateway)

    labels = [label for label, _ in panel.session_picker.options]
    panel.delete_button.click()
    confirm_status = panel.status.value
    panel.cancel_delete_button.click()
    panel.input.value = "hi"
    panel.send_button.click()
    await panel.wait()

    assert labels == [title]
    assert panel.session_id == session_id
    assert "<img" not in confirm_status
    assert "&lt;img src=x onerror=alert(1)&gt;" in confirm_status
    assert "<script" not in panel.status.value
    assert "&lt;script&gt;" in panel.status.value


def test_render_message_escapes_user_text() -> None:
    message = Message(
        "msg_1", "user", "<b>bold?</b>\nsecond line", datetime(2026, 3, 3, tzinfo=UTC)
    )

    html = render_message(message)

    assert "&lt;b&gt;bold?&lt;/b&gt;\nsecond line" in html
    assert "white-space: pre-wrap" in html
    assert "<b>" not in html


def test_render_message_shows_tools_and_error() -> None:
    message = Message(
        "msg_2",
        "assistant",
        "",
        datetime(2026, 3, 3, tzinfo=UTC),
        {
            "agent": "build",
            "providerID": "local",
            "modelID": "echo",
            "error": "APIError: <bad>",
            "parts": [
                {"type": "step-start"},
                {"type": "tool", "tool": "bash", "state": {"status": "completed"}},
            ],
        },
    )

    html = render_message(message)

    assert "Assistant · build · local/echo" in html
    assert "Tool bash (completed)" in html
    assert "APIError: &lt;bad&gt;" in html


# Sessions.


def make_session(session_id: str, parent_id: str | None = None) -> Session:
    moment = datetime(2026, 3, 3, tzinfo=UTC)
    return Session(session_id, f"title {session_id}", moment, moment, parent_id)


def test_session_options_nest_forks() -> None:
    sessions = [
        make_session("ses_c", parent_id="ses_a"),
        make_session("ses_b"),
        make_session("ses_d", parent_id="ses_c"),
        make_session("ses_a"),
        make_session("ses_e", parent_id="ses_missing"),
    ]

    options = session_options(sessions)

    assert options == [
        ("title ses_b", "ses_b"),
        ("title ses_a", "ses_a"),
        ("\u2003↳ title ses_c", "ses_c"),
        ("\u2003\u2003↳ title ses_d", "ses_d"),
        ("title ses_e", "ses_e"),
    ]


def test_session_options_survive_parent_loop() -> None:
    sessions = [
        make_session("ses_a", parent_id="ses_b"),
        make_session("ses_b", parent_id="ses_a"),
    ]

    options = session_options(sessions)

    assert sorted(value for _, value in options) == ["ses_a", "ses_b"]


async def test_switching_sessions_loads_history(gateway: FakeGateway) -> None:
    first = gateway.add_session("First")
    gateway.add_message(first, "user", "question one")
    second = gateway.add_session("Second")
    gateway.add_message(second, "user", "question two")
    gateway.add_message(second, "assistant", "answer two")
    panel = await open_panel(gateway)
    shown_first = history_html(panel)

    panel.session_picker.value = first
    await panel.wait()

    assert len(shown_first) == 2
    assert "answer two" in shown_first[1]
    assert len(history_html(panel)) == 1
    assert "question one" in history_html(panel)[0]


async def test_open_given_session(gateway: FakeGateway) -> None:
    first = gateway.add_session("First")
    gateway.add_session("Second")

    panel = await open_panel(gateway, first)

    assert panel.session_id == first


async def test_open_unknown_session_shows_error(gateway: FakeGateway) -> None:
    gateway.add_session("Only")

    panel = await open_panel(gateway, "ses_nope")

    assert panel.session_id is None
    assert status_kind(panel) == "error"
    assert "ses_nope" in panel.status.value


async def test_new_session_is_selected(gateway: FakeGateway) -> None:
    old = gateway.add_session("Old")
    gateway.add_message(old, "user", "old question")
    panel = await open_panel(gateway)

    panel.new_button.click()
    await panel.wait()

    (post,) = gateway.posts("/session/create")
    (new,) = set(gateway.sessions) - {old}
    assert json.loads(post.content) == {}
    assert len(panel.session_picker.options) == 2
    assert panel.session_id == new
    assert history_html(panel) == []


async def test_fork_is_nested_and_selected(gateway: FakeGateway) -> None:
    parent = gateway.add_session("Parent")
    gateway.add_message(parent, "user", "shared question")
    panel = await open_panel(gateway)

    panel.fork_button.click()
    await panel.wait()

    (post,) = gateway.posts("/session/create")
    assert json.loads(post.content) == {"parentID": parent}
    fork = panel.session_id
    assert fork is not None
    assert fork != parent
    assert gateway.sessions[fork]["parentID"] == parent
    assert list(panel.session_picker.options) == [
        ("Parent", parent),
        ("\u2003↳ New session", fork),
    ]
    assert "shared question" in history_html(panel)[0]


async def test_delete_asks_first(gateway: FakeGateway) -> None:
    keep = gateway.add_session("Keep")
    doomed = gateway.add_session("Doomed")
    panel = await open_panel(gateway)
    assert panel.session_id == doomed

    panel.delete_button.click()
    await panel.wait()
    asked = panel._confirm_row.layout.display
    deletes_before_confirm = [r for r in gateway.requests if r.method == "DELETE"]
    panel.confirm_delete_button.click()
    await panel.wait()

    assert asked == "flex"
    assert deletes_before_confirm == []
    assert doomed not in gateway.sessions
    assert [value for _, value in panel.session_picker.options] == [keep]
    assert panel.session_id == keep
    assert panel._confirm_row.layout.display == "none"
    assert "Deleted" in panel.status.value


async def test_delete_cancel_keeps_session(gateway: FakeGateway) -> None:
    session_id = gateway.add_session("Keep me")
    panel = await open_panel(gateway)

    panel.delete_button.click()
    panel.cancel_delete_button.click()
    panel.confirm_delete_button.click()
    await panel.wait()

    assert session_id in gateway.sessions
    assert [r for r in gateway.requests if r.method == "DELETE"] == []


async def test_delete_error_keeps_text(gateway: FakeGateway) -> None:
    session_id = gateway.add_session("Vanishing")
    panel = await open_panel(gateway)
    panel.input.value = "draft I care about"
    del gateway.sessions[session_id]

    panel.delete_button.click()
    panel.confirm_delete_button.click()
    await panel.wait()

    assert status_kind(panel) == "error"
    assert "Session not found" in panel.status.value
    assert panel.input.value == "draft I care about"


async def test_model_options_come_from_history(gateway: FakeGateway) -> None:
    session_id = gateway.add_session("Models")
    gateway.add_message(session_id, "user", "hi")
    gateway.add_message(session_id, "assistant", "hello")

    panel = await open_panel(gateway)

    assert panel.model_picker.options == ("local/echo",)
    assert panel.agent_picker.options == ("build",)
    assert panel.model_picker.placeholder == "default (local/echo)"


async def test_unreachable_server_shows_error(unused_tcp_port: int) -> None:
    client = OpenCodeClient(f"http://127.0.0.1:{unused_tcp_port}", port=PORT)

    panel = ChatPanel(client)
    await panel.wait()
    await panel.aclose()

    assert isinstance(panel.client, AsyncOpenCodeClient)
    assert panel.client.port == PORT
    assert status_kind(panel) == "error"
    assert "Cannot connect" in panel.status.value


def test_invalid_client_is_rejected() -> None:
    with pytest.raises(TypeError, match="Invalid client"):
        ChatPanel("http://localhost:3000")  # type: ignore[arg-type]


# The real chain: offline model, OpenCode and the gateway.


@contextlib.asynccontextmanager
async def open_chain_panel(chain: LocalChain) -> AsyncIterator[ChatPanel]:
    """Open a panel through the chain's gateway, on a new session."""
    client = AsyncOpenCodeClient(chain.gateway_url, port=chain.opencode_ports[0])
    try:
        session = await client.create_session("panel on the chain")
        panel = ChatPanel(client, session.id)
        await panel.wait()
        yield panel
        panel.close()
    finally:
        await client.aclose()


@pytest.mark.chain
async def test_chain_send_shows_reply(chain: LocalChain) -> None:
    async with open_chain_panel(chain) as panel:
        panel.model_picker.value = "local/echo"
        panel.input.value = "hello from the panel"

        panel.send_button.click()
        await panel.wait()

        html = history_html(panel)
        assert panel.input.value == ""
        assert len(html) == 2
        assert "hello from the panel" in html[0]
        assert "Echo: hello from the panel" in html[1]
        assert "local/echo" in html[1]
        assert status_kind(panel) == "info"


@pytest.mark.chain
async def test_chain_tool_steps_are_shown(chain: LocalChain) -> None:
    async with open_chain_panel(chain) as panel:
        panel.model_picker.value = "local/echo"
        panel.input.value = "[[tool bash: echo hi]] run it"

        panel.send_button.click()
        await panel.wait()

        html = history_html(panel)
        assert len(html) == 3
        assert "Tool bash (completed)" in html[1]
        assert "Done: hi" in html[2]


@pytest.mark.chain
async def test_chain_switch_fork_and_delete(chain: LocalChain) -> None:
    async with open_chain_panel(chain) as panel:
        parent = panel.session_id
        panel.model_picker.value = "local/echo"
        panel.input.value = "remember this"
        panel.send_button.click()
        await panel.wait()

        panel.fork_button.click()
        await panel.wait()
        fork = panel.session_id
        fork_history = history_html(panel)
        labels = {value: label for label, value in panel.session_picker.options}
        panel.session_picker.value = parent
        await panel.wait()
        parent_history = history_html(panel)
        panel.session_picker.value = fork
        await panel.wait()
        panel.delete_button.click()
        panel.confirm_delete_button.click()
        await panel.wait()

        assert fork not in (None, parent)
        assert labels[fork].startswith("\u2003↳ ")
        assert len(fork_history) == 2
        assert "Echo: remember this" in fork_history[1]
        assert len(parent_history) == 2
        assert fork not in [value for _, value in panel.session_picker.options]
        assert panel.session_id == parent
        assert "Deleted" in panel.status.value


@pytest.mark.chain
async def test_chain_deleted_session_keeps_text(chain: LocalChain) -> None:
    async with open_chain_panel(chain) as panel:
        session_id = panel.session_id
        assert session_id is not None
        await panel.client.delete_session(session_id)

        panel.input.value = "anyone home?"
        panel.send_button.click()
        await panel.wait()

        assert panel.input.value == "anyone home?"
        assert status_kind(panel) == "error"
        assert "Session not found" in panel.status.value


@pytest.mark.chain
async def test_chain_direct_lists_models(chain: LocalChain) -> None:
    async with AsyncOpenCodeClient.direct(chain.opencode_urls[0]) as client:
        panel = ChatPanel(client)
        await panel.wait()
        panel.close()

    assert "local/echo" in panel.model_picker.options
    assert "build" in panel.agent_picker.options
    assert "title" not in panel.agent_picker.options


# Streaming and Stop.


def streaming_values(panel: ChatPanel) -> list[str]:
    return [
        widget.value
        for widget in panel.message_widgets
        if "opencode-chat-streaming" in widget.value
    ]


async def watch_streaming(panel: ChatPanel, task: asyncio.Task[Any]) -> list[str]:
    """Record each new value of the streaming reply's widget until `task` ends."""
    seen: list[str] = []
    while not task.done():
        for value in streaming_values(panel):
            if not seen or seen[-1] != value:
                seen.append(value)
        await asyncio.sleep(0.02)
    return seen


async def wait_for(condition: Any, seconds: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never met"
        await asyncio.sleep(0.02)


def showing(panel: ChatPanel, text: str) -> bool:
    return any(text in value for value in streaming_values(panel))


async def test_reply_grows_while_streaming(gateway: FakeGateway) -> None:
    gateway.add_session("Growing")
    gateway.chunk_delay = 0.1
    panel = await open_panel(gateway)
    panel.input.value = "one two three four five"

    task = panel.send()
    assert task is not None
    seen = await watch_streaming(panel, task)
    await panel.wait()

    partial = [value for value in seen if "five" not in value]
    assert len(partial) >= 3
    assert "one" in partial[-1]
    html = history_html(panel)
    assert len(html) == 2
    assert "opencode-chat-assistant" in html[1]
    assert "Echo: one two three four five" in html[1]
    assert streaming_values(panel) == []
    assert "Reply received" in panel.status.value


async def test_stop_aborts_and_keeps_partial_reply(gateway: FakeGateway) -> None:
    session_id = gateway.add_session("Stopped")
    gateway.chunk_delay = 0.1
    panel = await open_panel(gateway)
    panel.input.value = "one two three four five six seven finally"

    task = panel.send()
    assert task is not None
    await wait_for(lambda: showing(panel, "two"))
    visible_while_sending = panel.stop_button.layout.display
    enabled_while_sending = not panel.stop_button.disabled
    panel.stop_button.click()
    reply = await task
    await panel.wait()

    assert reply is None
    assert visible_while_sending is None
    assert enabled_while_sending
    assert gateway.aborts == [session_id]
    html = history_html(panel)
    assert len(html) == 2
    assert "Echo: one two" in html[1]
    assert "finally" not in html[1]
    assert "(stopped)" in html[1]
    assert status_kind(panel) == "hint"
    assert "Stopped the agent" in panel.status.value
    assert panel.input.value == ""
    assert not panel.busy
    assert panel.stop_button.layout.display == "none"
    assert panel.stop_button.disabled


async def test_send_after_stop_works(gateway: FakeGateway) -> None:
    gateway.add_session("Again")
    gateway.chunk_delay = 0.05
    panel = await open_panel(gateway)
    panel.input.value = "one two three four five six"
    task = panel.send()
    assert task is not None
    await wait_for(lambda: showing(panel, "one"))
    panel.stop()
    await task

    panel.input.value = "next question"
    send_task = panel.send()
    assert send_task is not None
    reply = await send_task
    await panel.wait()

    assert reply is not None
    assert reply.response == "Echo: next question"
    html = history_html(panel)
    assert len(html) == 4
    assert "(stopped)" in html[1]
    assert "Echo: next question" in html[3]
    assert "Reply received" in panel.status.value


async def test_stop_button_hidden_when_idle(gateway: FakeGateway) -> None:
    gateway.add_session("Idle")
    panel = await open_panel(gateway)

    stop_task = panel.stop()
    assert stop_task is not None
    stopped = await stop_task

    assert stopped is False
    assert gateway.aborts == []
    assert panel.stop_button.layout.display == "none"
    assert panel.stop_button.disabled


async def test_stop_from_another_thread(gateway: FakeGateway) -> None:
    session_id = gateway.add_session("Subshell stop")
    gateway.chunk_delay = 0.1
    panel = await open_panel(gateway)
    panel.input.value = "one two three four five six seven eight"
    task = panel.send()
    assert task is not None
    await wait_for(lambda: showing(panel, "one"))

    async def click_stop() -> None:
        panel.stop_button.click()

    await asyncio.to_thread(asyncio.run, click_stop())
    await task
    await panel.wait()

    assert gateway.aborts == [session_id]
    assert "(stopped)" in history_html(panel)[1]


async def test_reply_shown_when_stream_ends_early(gateway: FakeGateway) -> None:
    gateway.add_session("Cut stream")
    gateway.cut_stream = True
    panel = await open_panel(gateway)
    panel.input.value = "are events lost?"

    send_task = panel.send()
    assert send_task is not None
    reply = await send_task
    await panel.wait()

    assert reply is not None
    assert reply.response == "Echo: are events lost?"
    html = history_html(panel)
    assert len(html) == 2
    assert "Echo: are events lost?" in html[1]
    assert "Reply received" in panel.status.value


async def test_error_mid_stream_keeps_text(gateway: FakeGateway) -> None:
    gateway.add_session("Failing midway")
    gateway.fail_after = 2
    panel = await open_panel(gateway)
    panel.input.value = "one two three"

    panel.send_button.click()
    await panel.wait()

    assert panel.input.value == "one two three"
    assert status_kind(panel) == "error"
    assert "Upstream model failed" in panel.status.value
    assert history_html(panel) == []
    assert not panel.busy
    assert panel.stop_button.layout.display == "none"


async def test_hostile_partial_reply_renders_inert(gateway: FakeGateway) -> None:
    gateway.add_session("Hostile stream")
    gateway.reply = HOSTILE
    gateway.chunk_delay = 0.05
    panel = await open_panel(gateway)
    panel.input.value = "be nasty slowly"

    task = panel.send()
    assert task is not None
    seen = await watch_streaming(panel, task)

    assert any("<strong>ok</strong>" in value for value in seen)
    for value in seen:
        assert "<script" not in value.lower()
        assert "<img" not in value.lower()
        assert "<svg" not in value.lower()
        assert not re.search(r"href\s*=\s*[\"']?\s*javascript:", value, re.I)
        assert not re.search(r"<[^>]*\son\w+\s*=", value)


async def test_live_message_throttles_updates() -> None:
    loop = asyncio.get_running_loop()
    live = LiveMessage(loop)
    values: list[str] = []
    live.widget.observe(lambda change: values.append(change["new"]), names="value")
    text = ""

    for number in range(50):
        text += f"w{number} "
        live.add(TextDelta("msg_1", "prt_1", "text", f"w{number} "), text)
    updates_at_once = len(values)
    await asyncio.sleep(0.2)

    assert updates_at_once == 1
    assert len(values) == 2
    assert "w49" in values[-1]
    assert "opencode-chat-streaming" in values[-1]


async def test_live_message_shows_tools_at_once() -> None:
    live = LiveMessage(asyncio.get_running_loop())
    live.add(TextDelta("msg_1", "prt_1", "text", "Let me look."), "Let me look.")
    live.add(ToolUpdate("msg_1", "prt_2", "call_1", "bash", "running"), "Let me look.")

    assert "Tool bash (running)" in live.widget.value
    live.stop("Let me look.")
    assert "(stopped)" in live.widget.value
    live.add(TextDelta("msg_1", "prt_1", "text", " more"), "Let me look. more")
    assert "more" not in live.widget.value


def test_render_message_marks_aborted_reply() -> None:
    message = Message(
        "msg_3",
        "assistant",
        "Half an",
        datetime(2026, 3, 3, tzinfo=UTC),
        {"error": "MessageAbortedError: Aborted"},
    )

    html = render_message(message)

    assert "Half an" in html
    assert "(stopped)" in html
    assert "MessageAbortedError" not in html


# Streaming on the real chain.

SLOW_TEXT = "[[delay 0.2]] " + " ".join(f"word{number}" for number in range(12))


@pytest.mark.chain
async def test_chain_reply_grows_before_done(chain: LocalChain) -> None:
    async with open_chain_panel(chain) as panel:
        panel.model_picker.value = "local/echo"
        panel.input.value = SLOW_TEXT

        task = panel.send()
        assert task is not None
        seen = await watch_streaming(panel, task)
        await panel.wait()

        partial = [value for value in seen if "word11" not in value]
        assert len(partial) >= 3
        assert "word2" in partial[-1]
        html = history_html(panel)
        assert len(html) == 2
        assert "opencode-chat-assistant" in html[1]
        assert "word11" in html[1]
        assert streaming_values(panel) == []


@pytest.mark.chain
@pytest.mark.parametrize("direct", [False, True], ids=["gateway", "direct"])
async def test_chain_stop_then_send_again(chain: LocalChain, direct: bool) -> None:
    if direct:
        client = AsyncOpenCodeClient.direct(chain.opencode_urls[0])
    else:
        client = AsyncOpenCodeClient(chain.gateway_url, port=chain.opencode_ports[0])
    async with client:
        session = await client.create_session("stop on the chain")
        panel = ChatPanel(client, session.id)
        await panel.wait()
        panel.model_picker.value = "local/echo"
        panel.input.value = SLOW_TEXT

        task = panel.send()
        assert task is not None
        await wait_for(lambda: showing(panel, "word1"), seconds=30)
        panel.stop_button.click()
        stopped = await task
        await panel.wait()
        stopped_html = history_html(panel)
        stopped_status = panel.status.value

        panel.input.value = "after the stop"
        send_task = panel.send()
        assert send_task is not None
        reply = await send_task
        await panel.wait()
        messages = await client.list_messages(session.id)
        panel.close()

    assert stopped is None
    assert len(stopped_html) == 2
    assert "(stopped)" in stopped_html[1]
    assert "word11" not in stopped_html[1]
    assert "Stopped the agent" in stopped_status
    assert reply is not None
    assert reply.response == "Echo: after the stop"
    assert [m.role for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[1].extra["error"] == "MessageAbortedError: Aborted"
    assert "Echo: after the stop" in history_html(panel)[3]


@pytest.mark.chain
async def test_chain_double_click_sends_once(chain: LocalChain) -> None:
    async with open_chain_panel(chain) as panel:
        panel.model_picker.value = "local/echo"
        panel.input.value = "[[delay 0.1]] only once"

        panel.send_button.click()
        panel.send_button.click()
        await panel.wait()

        session_id = panel.session_id
        assert session_id is not None
        messages = await panel.client.list_messages(session_id)
        assert [m.content for m in messages if m.role == "user"] == [
            "[[delay 0.1]] only once"
        ]
        assert len(history_html(panel)) == 2
