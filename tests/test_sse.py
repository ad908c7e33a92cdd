"""Reading server-sent events from hand-made byte chunks."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from httpx_sse import EventSource

from opencode_notebook.streaming import aiter_payloads, iter_payloads


def event_stream(
    chunks: list[bytes], content_type: str = "text/event-stream"
) -> httpx.Response:
    return httpx.Response(
        200, headers={"content-type": content_type}, content=iter(chunks)
    )


def async_event_stream(chunks: list[bytes]) -> httpx.Response:
    async def produce() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    return httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=produce()
    )


def payloads(chunks: list[bytes]) -> list[dict[str, object]]:
    return list(iter_payloads(event_stream(chunks)))


def test_multiline_data_joined_into_one_event() -> None:
    raw = (
        b'event: message\ndata: {"type":"message.part.updated",\n'
        b'data: "properties":{"delta":"hi"}}\n\n'
    )

    events = list(EventSource(event_stream([raw])).iter_sse())

    assert len(events) == 1
    assert events[0].data == (
        '{"type":"message.part.updated",\n"properties":{"delta":"hi"}}'
    )
    assert json.loads(events[0].data) == {
        "type": "message.part.updated",
        "properties": {"delta": "hi"},
    }
    assert payloads([raw]) == [
        {"type": "message.part.updated", "properties": {"delta": "hi"}}
    ]


def test_event_split_across_chunks() -> None:
    raw = b'data: {"type":"a","n":1}\n\ndata: {"type":"b","n":2}\n\n'
    chunks = [raw[i : i + 3] for i in range(0, len(raw), 3)]

    assert payloads(chunks) == [{"type": "a", "n": 1}, {"type": "b", "n": 2}]


@pytest.mark.parametrize("cut", range(1, 4), ids=lambda cut: f"cut-after-{cut}")
def test_multibyte_character_split_across_chunks(cut: int) -> None:
    text = "Grüße €𝄞"
    raw = f'data: {{"text":"{text}"}}\n\n'.encode()
    character_start = raw.index("𝄞".encode())
    chunks = [raw[: character_start + cut], raw[character_start + cut :]]

    assert payloads(chunks) == [{"text": text}]


@pytest.mark.parametrize("newline", [b"\r\n", b"\r", b"\n"], ids=["crlf", "cr", "lf"])
def test_line_endings(newline: bytes) -> None:
    raw = (
        b'data: {"type":"a"}' + newline + newline + b'data: {"type":"b"}' + newline * 2
    )

    assert payloads([raw]) == [{"type": "a"}, {"type": "b"}]


def test_crlf_split_between_chunks() -> None:
    chunks = [b'data: {"type":"a"}\r', b"\n\r", b'\ndata: {"type":"b"}\r\n\r\n']

    assert payloads(chunks) == [{"type": "a"}, {"type": "b"}]


def test_comments_and_unknown_fields_are_ignored() -> None:
    raw = (
        b": keep-alive\n\n"
        b"id: 7\nretry: 100\n: note\nevent: update\n"
        b'data: {"type":"a"}\n\n'
        b"bogus field\n\n"
    )

    assert payloads([raw]) == [{"type": "a"}]


def test_non_object_data_skipped() -> None:
    raw = b"data: not json\n\ndata: [1, 2]\n\ndata:\n\n" + b'data: {"type":"a"}\n\n'

    assert payloads([raw]) == [{"type": "a"}]


def test_unfinished_last_event_is_dropped() -> None:
    raw = b'data: {"type":"a"}\n\ndata: {"type":"b"}\n'

    assert payloads([raw]) == [{"type": "a"}]


def test_heartbeats_are_payloads_like_any_other() -> None:
    raw = b'data: {"type":"server.heartbeat","properties":{}}\n\n' * 2

    assert payloads([raw]) == [{"type": "server.heartbeat", "properties": {}}] * 2


def test_charset_in_content_type_does_not_change_decoding() -> None:
    raw = 'data: {"text":"é"}\n\n'.encode()
    response = event_stream([raw], content_type="text/event-stream; charset=latin-1")

    assert list(iter_payloads(response)) == [{"text": "é"}]


async def test_async_reader_joins_split_chunks() -> None:
    raw = 'data: {"text":"€",\ndata: "n":1}\n\n: ping\n\n'.encode()
    chunks = [raw[i : i + 2] for i in range(0, len(raw), 2)]

    result = [payload async for payload in aiter_payloads(async_event_stream(chunks))]

    assert result == [{"text": "€", "n": 1}]
