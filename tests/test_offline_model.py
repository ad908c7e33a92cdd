"""The offline model: OpenAI-compatible responses, streaming and directives."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from opencode_notebook.stack import OfflineModel
from opencode_notebook.stack.offline_replies import (
    DirectiveError,
    chunks,
    parse_directives,
)

BASH_TOOL = {
    "type": "function",
    "function": {
        "name": "bash",
        "description": "Run a shell command.",
        "parameters": {"type": "object", "properties": {"command": {}}},
    },
}
TITLE_SYSTEM = "You are a title generator. You output ONLY a thread title."


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def complete(model: OfflineModel, **body: Any) -> httpx.Response:
    body.setdefault("model", "echo")
    return httpx.post(f"{model.base_url}/chat/completions", json=body, timeout=10)


def stream_events(model: OfflineModel, **body: Any) -> list[Any]:
    """Send a streaming request and return the decoded `data:` payloads."""
    response = complete(model, stream=True, **body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events: list[Any] = []
    for line in response.text.splitlines():
        if not line:
            continue
        assert line.startswith("data: ")
        data = line.removeprefix("data: ")
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


def streamed_field(events: list[Any], name: str) -> list[str]:
    return [
        event["choices"][0]["delta"][name]
        for event in events
        if isinstance(event, dict)
        and event["choices"]
        and name in event["choices"][0]["delta"]
        and event["choices"][0]["delta"][name]
    ]


def test_models_lists_echo(offline_model: OfflineModel) -> None:
    response = httpx.get(f"{offline_model.base_url}/models")

    assert response.status_code == 200
    assert [model["id"] for model in response.json()["data"]] == ["echo"]


def test_completion_echoes_last_user_message(offline_model: OfflineModel) -> None:
    messages = [
        {"role": "system", "content": "You are opencode. " * 500},
        user("first"),
        {"role": "assistant", "content": "Echo: first"},
        user("hello world"),
    ]
    response = complete(offline_model, messages=messages, max_tokens=32000)

    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Echo: hello world",
    }
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == 3


def test_completion_reads_content_parts(offline_model: OfflineModel) -> None:
    parts = [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]
    response = complete(offline_model, messages=[user(parts)])

    assert response.json()["choices"][0]["message"]["content"] == "Echo: one\ntwo"


def test_stream_sends_word_chunks(offline_model: OfflineModel) -> None:
    events = stream_events(
        offline_model,
        messages=[user("hello there world")],
        stream_options={"include_usage": True},
        tools=[BASH_TOOL],
        tool_choice="auto",
    )

    assert events[-1] == "[DONE]"
    assert streamed_field(events, "content") == ["Echo: ", "hello ", "there ", "world"]
    finish = [e["choices"][0]["finish_reason"] for e in events[:-1] if e["choices"]]
    assert finish[-1] == "stop"
    usage_event = events[-2]
    assert usage_event["choices"] == []
    assert usage_event["usage"]["completion_tokens"] == 4


def test_stream_without_usage_option(offline_model: OfflineModel) -> None:
    events = stream_events(offline_model, messages=[user("hi")])

    assert all("usage" not in event for event in events[:-1])
    assert events[-1] == "[DONE]"


def test_title_request_gets_title(offline_model: OfflineModel) -> None:
    messages = [
        {"role": "system", "content": TITLE_SYSTEM},
        user("Generate a title for this conversation:\n"),
        user("[[tool bash: ls]] [[fail]] plot the sales data by month please now"),
    ]
    response = complete(offline_model, messages=messages)

    assert response.status_code == 200
    message = response.json()["choices"][0]["message"]
    assert message["content"] == "plot the sales data by month"


def test_title_of_empty_prompt(offline_model: OfflineModel) -> None:
    messages = [{"role": "system", "content": TITLE_SYSTEM}, user("")]
    response = complete(offline_model, messages=messages, stream=False)

    assert response.json()["choices"][0]["message"]["content"] == "Empty prompt"


def test_directives_are_removed_from_echo(offline_model: OfflineModel) -> None:
    response = complete(offline_model, messages=[user("[[delay 0]] hello")])

    assert response.json()["choices"][0]["message"]["content"] == "Echo: hello"


def test_delay_directive_slows_chunks(offline_model: OfflineModel) -> None:
    started = time.monotonic()
    events = stream_events(offline_model, messages=[user("[[delay 0.1]] a b c")])
    elapsed = time.monotonic() - started

    assert streamed_field(events, "content") == ["Echo: ", "a ", "b ", "c"]
    assert elapsed >= 0.4


def test_chunk_delay_argument() -> None:
    with OfflineModel(chunk_delay=0.1) as model:
        started = time.monotonic()
        stream_events(model, messages=[user("a b")])
        slow = time.monotonic() - started
        model.chunk_delay = 0.0
        started = time.monotonic()
        stream_events(model, messages=[user("a b")])
        fast = time.monotonic() - started

    assert slow >= 0.3
    assert fast < 0.3


def test_tool_directive_calls_tool(offline_model: OfflineModel) -> None:
    response = complete(
        offline_model,
        messages=[user("[[tool bash: echo hi]] run it")],
        tools=[BASH_TOOL],
    )

    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["type"] == "function"
    assert call["function"]["name"] == "bash"
    assert json.loads(call["function"]["arguments"])["command"] == "echo hi"


def test_tool_directive_streams_tool_call(offline_model: OfflineModel) -> None:
    events = stream_events(
        offline_model,
        messages=[user("[[tool bash: echo hi]]")],
        tools=[BASH_TOOL],
    )

    calls = [
        call
        for event in events[:-1]
        for call in event["choices"][0]["delta"].get("tool_calls", [])
    ]
    assert calls[0]["function"]["name"] == "bash"
    assert calls[0]["id"].startswith("call_")
    arguments = "".join(call["function"]["arguments"] for call in calls)
    assert json.loads(arguments)["command"] == "echo hi"
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_tool_result_gets_done_reply(offline_model: OfflineModel) -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "bash", "arguments": "{}"},
    }
    messages = [
        user("[[tool bash: echo hi]] run it"),
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "hi\n"},
    ]
    response = complete(offline_model, messages=messages, tools=[BASH_TOOL])

    choice = response.json()["choices"][0]
    assert choice["message"]["content"] == "Done: hi"
    assert choice["finish_reason"] == "stop"


def test_tool_directive_with_json_arguments(offline_model: OfflineModel) -> None:
    read_tool = {"type": "function", "function": {"name": "read"}}
    text = '[[tool read: {"filePath": "/tmp/x"}]]'
    response = complete(offline_model, messages=[user(text)], tools=[read_tool])

    call = response.json()["choices"][0]["message"]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"filePath": "/tmp/x"}


def test_tool_not_offered(offline_model: OfflineModel) -> None:
    response = complete(offline_model, messages=[user("[[tool bash: ls]]")])

    message = response.json()["choices"][0]["message"]
    assert message["content"] == "Tool 'bash' is not offered."
    assert "tool_calls" not in message


def test_fail_directive_answers_400(offline_model: OfflineModel) -> None:
    response = complete(offline_model, messages=[user("[[fail]] hi")], stream=True)

    assert response.status_code == 400
    error = response.json()["error"]
    assert "[[fail]]" in error["message"]
    assert error["type"] == "invalid_request_error"


def test_reason_directive_streams_reasoning(offline_model: OfflineModel) -> None:
    events = stream_events(offline_model, messages=[user("[[reason]] why")])

    reasoning = streamed_field(events, "reasoning_content")
    assert "".join(reasoning) == "Thinking about: why"
    deltas = [e["choices"][0]["delta"] for e in events[:-1] if e["choices"]]
    first_reasoning = next(i for i, d in enumerate(deltas) if "reasoning_content" in d)
    first_content = next(i for i, d in enumerate(deltas) if d.get("content"))
    assert first_reasoning < first_content


def test_reason_directive_without_stream(offline_model: OfflineModel) -> None:
    response = complete(offline_model, messages=[user("[[reason]] why")])

    message = response.json()["choices"][0]["message"]
    assert message["reasoning_content"] == "Thinking about: why"
    assert message["content"] == "Echo: why"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("[[delay soon]] hi", id="delay-not-a-number"),
        pytest.param("[[tool bash]]", id="tool-without-colon"),
        pytest.param("[[tool read: some file]]", id="tool-without-json"),
        pytest.param('[[tool read: {"a": }]]', id="tool-bad-json"),
    ],
)
def test_invalid_directive_answers_400(offline_model: OfflineModel, text: str) -> None:
    response = complete(offline_model, messages=[user(text)])

    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("Invalid directive")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(b"{not json", "not valid JSON", id="bad-json"),
        pytest.param(b"[]", "JSON object", id="not-an-object"),
        pytest.param(b'{"model": "echo"}', "messages", id="no-messages"),
    ],
)
def test_invalid_request_answers_400(
    offline_model: OfflineModel, content: bytes, expected: str
) -> None:
    response = httpx.post(
        f"{offline_model.base_url}/chat/completions",
        content=content,
        headers={"content-type": "application/json"},
    )

    assert response.status_code == 400
    assert expected in response.json()["error"]["message"]


def test_request_log_is_bounded() -> None:
    with OfflineModel(max_logged_requests=2) as model:
        for text in ("one", "two", "three"):
            complete(model, messages=[user(text)])
        logged = httpx.get(f"{model.base_url}/requests").json()["requests"]
        in_process = model.requests()
        httpx.delete(f"{model.base_url}/requests")
        cleared = model.requests()

    assert [entry["body"]["messages"][0]["content"] for entry in logged] == [
        "two",
        "three",
    ]
    assert [body["messages"][0]["content"] for body in in_process] == ["two", "three"]
    assert cleared == []


def test_stop_releases_port() -> None:
    model = OfflineModel().start()
    port = model.port
    model.stop()

    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/v1/models")
    with pytest.raises(RuntimeError, match="not running"):
        _ = model.port


def test_command_line_prints_ready_line() -> None:
    command = [sys.executable, "-m", "opencode_notebook.stack.offline_model"]
    with subprocess.Popen(
        [*command, "--port", "0", "--chunk-delay", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline().strip()
            base_url = line.rsplit(" ", 1)[-1]
            response = complete_at(base_url, "hi")
        finally:
            process.terminate()
            process.wait(timeout=10)

    assert line.startswith("offline model listening on http://127.0.0.1:")
    assert base_url.endswith("/v1")
    assert response.json()["choices"][0]["message"]["content"] == "Echo: hi"


def complete_at(base_url: str, text: str) -> httpx.Response:
    body = {"model": "echo", "messages": [user(text)]}
    return httpx.post(f"{base_url}/chat/completions", json=body, timeout=10)


def test_parse_directives_collects_all() -> None:
    found = parse_directives("[[delay 0.5]] [[reason]] [[tool bash: echo a]] text")

    assert found.text == "text"
    assert found.delay == 0.5
    assert found.reason is True
    assert found.tool is not None
    assert found.tool.arguments["command"] == "echo a"
    assert found.fail is False


def test_parse_directives_keeps_unknown_brackets() -> None:
    found = parse_directives("see [[wiki link]] here")

    assert found.text == "see [[wiki link]] here"
    assert found.tool is None


def test_parse_directives_rejects_bad_delay() -> None:
    with pytest.raises(DirectiveError, match="number of seconds"):
        parse_directives("[[delay x]]")


def test_chunks_join_back() -> None:
    text = "Echo:  two  spaces\nand a newline "

    assert "".join(chunks(text)) == text
    assert chunks("Echo: hi") == ["Echo: ", "hi"]
    assert chunks("") == []
