"""Streaming against a server that speaks only the Sessions API contract."""

from __future__ import annotations

import json

import httpx
import pytest

from opencode_notebook import AsyncOpenCodeClient, OpenCodeClient, SessionNotFoundError
from opencode_notebook.models import PromptReply


def contract_only(request: httpx.Request) -> httpx.Response:
    """A Sessions API server without the streaming extension."""
    path = request.url.path
    if path.endswith("/prompt/stream"):
        return httpx.Response(404, json={"statusCode": 404, "message": "Not Found"})
    if path == "/api/opencode/3100/session/ses_1/prompt":
        text = json.loads(request.content)["text"]
        return httpx.Response(
            200, json={"messageId": "msg_2", "response": f"Re: {text}"}
        )
    return httpx.Response(404, json={"statusCode": 404, "message": "Session not found"})


def test_stream_falls_back_to_plain_prompt() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return contract_only(request)

    client = OpenCodeClient(
        "http://gateway.test", port=3100, transport=httpx.MockTransport(handler)
    )

    events = list(client.stream_prompt("ses_1", "hello {x} $y"))

    assert events == [PromptReply("msg_2", "Re: hello {x} $y")]
    assert seen == [
        "/api/opencode/3100/session/ses_1/prompt/stream",
        "/api/opencode/3100/session/ses_1/prompt",
    ]


def test_stream_unknown_session_does_not_fall_back() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        body = {"statusCode": 404, "message": "Session not found"}
        return httpx.Response(404, json=body)

    client = OpenCodeClient(
        "http://gateway.test", port=3100, transport=httpx.MockTransport(handler)
    )

    with pytest.raises(SessionNotFoundError):
        list(client.stream_prompt("ses_missing", "hello"))

    assert seen == ["/api/opencode/3100/session/ses_missing/prompt/stream"]


async def test_async_stream_falls_back_to_plain_prompt() -> None:
    client = AsyncOpenCodeClient(
        "http://gateway.test", port=3100, transport=httpx.MockTransport(contract_only)
    )

    async with client, client.stream_prompt("ses_1", "hi") as stream:
        events = [event async for event in stream]

    assert events == [PromptReply("msg_2", "Re: hi")]
