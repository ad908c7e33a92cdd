"""Every client operation against the real chain: gateway and direct, sync and async."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from opencode_notebook import (
    AsyncOpenCodeClient,
    BadRequestError,
    OpenCodeClient,
    OpenCodeError,
    PromptAbortedError,
    SessionNotFoundError,
    UpstreamError,
)
from opencode_notebook.stack import LocalChain

pytestmark = pytest.mark.chain


@pytest.fixture(scope="module", params=["gateway", "direct"])
def client(
    request: pytest.FixtureRequest, chain: LocalChain
) -> Iterator[OpenCodeClient]:
    if request.param == "gateway":
        client = OpenCodeClient(chain.gateway_url, port=chain.opencode_ports[0])
    else:
        client = OpenCodeClient.direct(chain.opencode_urls[0])
    with client:
        yield client


@pytest.fixture(params=["gateway", "direct"])
def async_client(
    request: pytest.FixtureRequest, chain: LocalChain
) -> AsyncOpenCodeClient:
    if request.param == "gateway":
        return AsyncOpenCodeClient(chain.gateway_url, port=chain.opencode_ports[0])
    return AsyncOpenCodeClient.direct(chain.opencode_urls[0])


def test_session_lifecycle(client: OpenCodeClient) -> None:
    session = client.create_session("lifecycle")

    fetched = client.get_session(session.id)
    listed = [s.id for s in client.list_sessions()]
    client.delete_session(session.id)

    assert fetched == session
    assert fetched.created_at.tzinfo is not None
    assert session.id in listed
    with pytest.raises(SessionNotFoundError, match="Session not found"):
        client.get_session(session.id)


def test_prompt_and_messages(client: OpenCodeClient) -> None:
    session = client.create_session("prompt")

    reply = client.prompt(session.id, "hello there", model="local/echo", agent="build")
    messages = client.list_messages(session.id)

    assert reply.response.startswith("Echo: hello there")
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[0].content == "hello there"
    assert messages[1].id == reply.message_id
    assert messages[1].model == "local/echo"
    assert messages[1].agent == "build"
    assert messages[1].completed_at is not None
    assert messages[1].completed_at >= messages[1].timestamp


def test_fork_keeps_history(client: OpenCodeClient) -> None:
    parent = client.create_session("parent")
    client.prompt(parent.id, "remember")

    fork = client.fork_session(parent.id, title="fork")

    assert fork.parent_id == parent.id
    assert fork.title == "fork"
    contents = [m.content for m in client.list_messages(fork.id)]
    assert contents == [m.content for m in client.list_messages(parent.id)]


def test_unknown_model(client: OpenCodeClient) -> None:
    session = client.create_session("unknown model")

    with pytest.raises(BadRequestError, match="local/nope"):
        client.prompt(session.id, "hi", model="local/nope")

    assert client.list_messages(session.id) == []


def test_unknown_session(client: OpenCodeClient) -> None:
    with pytest.raises(SessionNotFoundError):
        client.list_messages("ses_doesnotexist")
    with pytest.raises(SessionNotFoundError):
        client.prompt("ses_doesnotexist", "hi")


def test_direct_and_gateway_return_same_objects(chain: LocalChain) -> None:
    with (
        OpenCodeClient(chain.gateway_url, port=chain.opencode_ports[0]) as gateway,
        OpenCodeClient.direct(chain.opencode_urls[0]) as direct,
    ):
        session = gateway.create_session("same objects")
        gateway.prompt(session.id, "compare")

        assert direct.get_session(session.id) == gateway.get_session(session.id)
        assert direct.list_messages(session.id) == gateway.list_messages(session.id)


async def test_async_operations(async_client: AsyncOpenCodeClient) -> None:
    async with async_client as client:
        session = await client.create_session("async")
        reply = await client.prompt(session.id, "async hello")
        messages = await client.list_messages(session.id)
        fork = await client.create_session(parent_id=session.id)
        listed = {s.id for s in await client.list_sessions()}
        await client.delete_session(fork.id)

        assert reply.response.startswith("Echo: async hello")
        assert messages[-1].id == reply.message_id
        assert fork.parent_id == session.id
        assert {session.id, fork.id} <= listed
        with pytest.raises(SessionNotFoundError):
            await client.get_session(fork.id)


async def test_async_concurrent_prompts_to_one_session(
    async_client: AsyncOpenCodeClient,
) -> None:
    async with async_client as client:
        session = await client.create_session("concurrent")

        replies = await asyncio.gather(
            client.prompt(session.id, "first [[delay 0.05]]"),
            client.prompt(session.id, "second [[delay 0.05]]"),
        )

        assert "first" in replies[0].response
        assert "second" in replies[1].response


def test_sync_client_inside_running_loop(chain: LocalChain) -> None:
    async def from_a_coroutine() -> int:
        with OpenCodeClient(chain.gateway_url, port=chain.opencode_ports[0]) as client:
            return len(client.list_sessions())

    assert asyncio.run(from_a_coroutine()) >= 0


def test_abort_stops_a_waiting_prompt(client: OpenCodeClient) -> None:
    session = client.create_session("abort a waiting prompt")
    outcome: dict[str, BaseException] = {}

    def send() -> None:
        try:
            client.prompt(session.id, "one two three four five six [[delay 0.5]]")
        except OpenCodeError as exc:
            outcome["error"] = exc

    sender = threading.Thread(target=send)
    sender.start()
    time.sleep(1.5)
    client.abort(session.id)
    sender.join(timeout=30)

    error = outcome["error"]
    if client.direct_mode:
        assert isinstance(error, PromptAbortedError)
        assert error.session_id == session.id
        assert error.partial_text.startswith("Echo: one")
    else:
        assert isinstance(error, UpstreamError)
        assert "Prompt aborted" in str(error)
    assert client.prompt(session.id, "after the stop").response.startswith("Echo:")
