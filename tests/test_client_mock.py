"""Client behaviour on error shapes and edge cases, with `httpx.MockTransport`."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from magics_shell import Recorder

from opencode_notebook import (
    APIError,
    AsyncOpenCodeClient,
    ConnectError,
    MessageTextRequiredError,
    OpenCodeClient,
    OpenCodeServerError,
    PromptTimeoutError,
    ProtocolError,
    RequestTimeoutError,
    SessionIDRequiredError,
    SessionNotFoundError,
    TransportError,
)
from opencode_notebook.errors import InvalidPortError, PortNotAllowedError

SESSION = {
    "id": "ses_1",
    "title": "Debug API endpoints",
    "createdAt": "2026-03-03T10:00:00.000Z",
    "updatedAt": "2026-03-03T10:30:00.000Z",
}

Handler = Callable[[httpx.Request], httpx.Response]


def make_client(handler: Handler, **kwargs: Any) -> tuple[OpenCodeClient, Recorder]:
    recorder = Recorder(handler)
    client = OpenCodeClient(
        "http://gateway.test",
        port=3100,
        transport=httpx.MockTransport(recorder),
        **kwargs,
    )
    return client, recorder


def test_list_sessions_sorted_newest_first() -> None:
    older = {**SESSION, "id": "ses_b", "updatedAt": "2026-03-01T00:00:00Z"}
    newest = {**SESSION, "id": "ses_c", "updatedAt": "2026-03-03T00:00:00Z"}
    middle = {**SESSION, "id": "ses_a", "updatedAt": "2026-03-02T00:00:00Z"}
    client, recorder = make_client(
        lambda request: httpx.Response(200, json=[older, newest, middle])
    )

    sessions = client.list_sessions()

    assert [s.id for s in sessions] == ["ses_c", "ses_a", "ses_b"]
    assert recorder.requests[0].url.path == "/api/opencode/3100/sessions"


def test_create_session_sends_parent_id_key() -> None:
    forked = {**SESSION, "id": "ses_B", "parentID": "ses_A"}
    client, recorder = make_client(lambda request: httpx.Response(200, json=forked))

    session = client.create_session(parent_id="ses_A")

    assert json.loads(recorder.requests[0].content) == {"parentID": "ses_A"}
    assert recorder.requests[0].url.path == "/api/opencode/3100/session/create"
    assert session.parent_id == "ses_A"


def test_root_session_has_no_parent() -> None:
    client, _ = make_client(lambda request: httpx.Response(200, json=SESSION))

    session = client.get_session("ses_1")

    assert session.parent_id is None
    assert "parentID" not in session.to_json()


def test_unknown_fields_are_kept() -> None:
    body = {**SESSION, "slug": "misty-eagle", "cost": 0.5}
    client, _ = make_client(lambda request: httpx.Response(200, json=body))

    session = client.get_session("ses_1")

    assert session.extra == {"slug": "misty-eagle", "cost": 0.5}
    assert session.to_json() == body


def test_prompt_body_and_reply() -> None:
    reply = {"messageId": "msg_3", "response": "I'll create it"}
    client, recorder = make_client(lambda request: httpx.Response(200, json=reply))

    result = client.prompt("ses_1", "Write it", model="anthropic/claude", agent="plan")

    assert json.loads(recorder.requests[0].content) == {
        "text": "Write it",
        "model": {"providerID": "anthropic", "modelID": "claude"},
        "agent": "plan",
    }
    assert result.message_id == "msg_3"
    assert result.response == "I'll create it"


def test_prompt_accepts_model_mapping() -> None:
    reply = {"messageId": "msg_3", "response": "ok"}
    client, recorder = make_client(lambda request: httpx.Response(200, json=reply))

    client.prompt("ses_1", "hi", model={"providerID": "openai", "modelID": "gpt-4"})

    sent = json.loads(recorder.requests[0].content)
    assert sent["model"] == {"providerID": "openai", "modelID": "gpt-4"}


@pytest.mark.parametrize(
    "model",
    [
        pytest.param("gpt4", id="no-slash"),
        pytest.param("/gpt4", id="no-provider"),
        pytest.param({"providerID": "openai"}, id="no-model-id"),
        pytest.param(42, id="number"),
    ],
)
def test_prompt_invalid_model_sends_nothing(model: Any) -> None:
    client, recorder = make_client(lambda request: httpx.Response(500))

    with pytest.raises(ValueError, match="Invalid model"):
        client.prompt("ses_1", "hi", model=model)

    assert recorder.requests == []


@pytest.mark.parametrize("text", ["", "  \t\n", None, 5])
def test_prompt_blank_text_sends_nothing(text: Any) -> None:
    client, recorder = make_client(lambda request: httpx.Response(500))

    with pytest.raises(MessageTextRequiredError, match="Message text required"):
        client.prompt("ses_1", text, model="local/echo", agent="build")

    assert recorder.requests == []


def test_blank_text_error_is_value_error() -> None:
    client, _ = make_client(lambda request: httpx.Response(500))

    with pytest.raises(ValueError):
        client.prompt("ses_1", "  ")


@pytest.mark.parametrize("session_id", ["", "   "])
def test_blank_session_id_sends_nothing(session_id: str) -> None:
    client, recorder = make_client(lambda request: httpx.Response(500))

    with pytest.raises(SessionIDRequiredError):
        client.get_session(session_id)
    with pytest.raises(SessionIDRequiredError):
        client.prompt(session_id, "hi")

    assert recorder.requests == []


def test_session_id_is_quoted_in_path() -> None:
    client, recorder = make_client(lambda request: httpx.Response(200, json=SESSION))

    client.get_session("ses/../x")

    assert (
        recorder.requests[0].url.raw_path == b"/api/opencode/3100/session/ses%2F..%2Fx"
    )


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            {"statusCode": 404, "message": "Session not found"}, id="contract"
        ),
        pytest.param(
            {"name": "NotFoundError", "data": {"message": "Session not found: ses_x"}},
            id="opencode",
        ),
    ],
)
def test_not_found_shapes(body: dict[str, Any]) -> None:
    client, _ = make_client(lambda request: httpx.Response(404, json=body))

    with pytest.raises(SessionNotFoundError, match="Session not found") as excinfo:
        client.get_session("ses_missing")

    assert excinfo.value.status == 404
    assert excinfo.value.request is not None


def test_html_error_page_gives_api_error() -> None:
    page = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    client, _ = make_client(
        lambda request: httpx.Response(
            502, text=page, headers={"content-type": "text/html"}
        )
    )

    with pytest.raises(APIError) as excinfo:
        client.get_session("ses_missing")

    assert excinfo.value.status == 502
    assert "502 Bad Gateway" in str(excinfo.value)
    assert not isinstance(excinfo.value, SessionNotFoundError)


def test_server_error_keeps_message_and_ref() -> None:
    body = {
        "name": "UnknownError",
        "data": {
            "message": "Unexpected server error. Check server logs for details.",
            "ref": "err_00111007",
        },
    }
    client, recorder = make_client(lambda request: httpx.Response(500, json=body))

    with pytest.raises(OpenCodeServerError) as excinfo:
        client.prompt(
            "ses_1", "hi", model={"providerID": "openrouter", "modelID": "nope-xyz"}
        )

    assert excinfo.value.status == 500
    assert excinfo.value.ref == "err_00111007"
    assert "Unexpected server error" in str(excinfo.value)
    assert "err_00111007" in str(excinfo.value)
    assert not isinstance(excinfo.value, SessionNotFoundError)
    assert len(recorder.requests) == 1


@pytest.mark.parametrize(
    ("status", "message", "error_class"),
    [
        (500, "Invalid port", InvalidPortError),
        (500, "Session ID required", SessionIDRequiredError),
        (500, "Message text required", MessageTextRequiredError),
        (403, "Port not allowed", PortNotAllowedError),
    ],
)
def test_contract_error_rows(status: int, message: str, error_class: type) -> None:
    body = {"statusCode": status, "message": message}
    client, _ = make_client(lambda request: httpx.Response(status, json=body))

    with pytest.raises(error_class) as excinfo:
        client.list_sessions()

    assert excinfo.value.message == message
    assert excinfo.value.status == status


def test_html_success_is_protocol_error() -> None:
    client, _ = make_client(
        lambda request: httpx.Response(
            200,
            text="<!doctype html><html></html>",
            headers={"content-type": "text/html"},
        )
    )

    with pytest.raises(ProtocolError, match="Expected JSON"):
        client.list_sessions()


def test_token_is_sent_and_never_shown() -> None:
    client, recorder = make_client(
        lambda request: httpx.Response(401, json={"statusCode": 401, "message": "no"}),
        token="s3cret-token",
    )

    with pytest.raises(APIError) as excinfo:
        client.list_sessions()

    assert recorder.requests[0].headers["authorization"] == "Bearer s3cret-token"
    assert "s3cret" not in repr(client)
    assert "s3cret" not in str(excinfo.value)


def test_token_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENCODE_NOTEBOOK_TOKEN", "env-token")
    client, recorder = make_client(lambda request: httpx.Response(200, json=[]))

    client.list_sessions()

    assert recorder.requests[0].headers["authorization"] == "Bearer env-token"


def test_url_and_port_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENCODE_NOTEBOOK_URL", "http://example.test:3999/")
    monkeypatch.setenv("OPENCODE_PORT", "3105")

    client = OpenCodeClient()

    assert client.base_url == "http://example.test:3999"
    assert client.port == 3105
    assert repr(client) == "OpenCodeClient('http://example.test:3999', port=3105)"


@pytest.mark.parametrize("port", [0, 70000, "3100", True])
def test_invalid_port_argument(port: Any) -> None:
    with pytest.raises(ValueError, match="Invalid port"):
        OpenCodeClient("http://localhost:3000", port=port)


def test_invalid_port_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENCODE_PORT", "abc")

    with pytest.raises(ValueError, match="OPENCODE_PORT"):
        OpenCodeClient()


@pytest.mark.parametrize(
    "url",
    ["localhost:3000", "http://127.0.0.1:abc", "ftp://example.test", "http://"],
)
def test_invalid_url_argument(url: str) -> None:
    with pytest.raises(ValueError, match="Invalid server URL"):
        OpenCodeClient(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:70000", "http://127.0.0.1:0"])
def test_url_port_out_of_range(url: str) -> None:
    with pytest.raises(ValueError, match="Invalid port"):
        OpenCodeClient(url)
    with pytest.raises(ValueError, match="Invalid port"):
        OpenCodeClient.direct(url)


def test_direct_password_is_sent_and_never_shown() -> None:
    recorder = Recorder(lambda request: httpx.Response(200, json=[]))
    client = OpenCodeClient.direct(
        "http://opencode.test:4096",
        password="pw-secret",
        transport=httpx.MockTransport(recorder),
    )

    client.list_sessions()

    assert recorder.requests[0].headers["authorization"].startswith("Basic ")
    assert recorder.requests[0].url.path == "/session"
    assert "pw-secret" not in repr(client)


def test_prompt_uses_long_timeout() -> None:
    reply = {"messageId": "msg_1", "response": "ok"}
    client, recorder = make_client(lambda request: httpx.Response(200, json=reply))

    client.prompt("ses_1", "hi")
    client.prompt("ses_1", "hi", timeout=42)

    assert recorder.requests[0].extensions["timeout"]["read"] == 600
    assert recorder.requests[0].extensions["timeout"]["connect"] == 5
    assert recorder.requests[1].extensions["timeout"]["read"] == 42


def test_prompt_is_not_retried() -> None:
    def drop(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("connection dropped", request=request)

    client, recorder = make_client(drop)

    with pytest.raises(TransportError, match="connection dropped"):
        client.prompt("ses_1", "hi")

    assert len(recorder.requests) == 1


def test_read_is_retried_after_dropped_connection() -> None:
    attempts = []

    def flaky(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        if len(attempts) == 1:
            raise httpx.RemoteProtocolError("connection dropped", request=request)
        return httpx.Response(200, json=SESSION)

    client, _ = make_client(flaky)

    assert client.get_session("ses_1").id == "ses_1"
    assert len(attempts) == 2


def test_prompt_timeout_names_session() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    client, _ = make_client(slow)

    with pytest.raises(PromptTimeoutError) as excinfo:
        client.prompt("ses_1", "hi")

    assert excinfo.value.session_id == "ses_1"
    assert "ses_1" in str(excinfo.value)
    assert "list_messages" in str(excinfo.value)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_closed_port_fails_fast() -> None:
    port = free_port()
    client = OpenCodeClient(f"http://127.0.0.1:{port}", port=3100)

    started = time.monotonic()
    with pytest.raises(ConnectError, match="Cannot connect to OpenCode at"):
        client.list_sessions()

    assert time.monotonic() - started < 5


@pytest.fixture
def slow_server() -> Iterator[str]:
    """A loopback server that responds to every request after a pause."""

    class SlowHandler(BaseHTTPRequestHandler):
        delay = 8.0

        def do_POST(self) -> None:
            time.sleep(self.delay)
            body = json.dumps({"messageId": "msg_9", "response": "late"}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_slow_prompt_succeeds_with_default_timeout(slow_server: str) -> None:
    client = OpenCodeClient(slow_server, port=3100)

    reply = client.prompt("ses_1", "take your time")

    assert reply.response == "late"


def test_slow_read_times_out_with_short_timeout(slow_server: str) -> None:
    client = OpenCodeClient(slow_server, port=3100, timeout=0.5)

    with pytest.raises(RequestTimeoutError, match="timed out"):
        client.get_session("ses_1")


def test_sync_client_inside_running_loop() -> None:
    client, _ = make_client(lambda request: httpx.Response(200, json=[SESSION]))

    async def call_from_loop() -> list[str]:
        return [session.id for session in client.list_sessions()]

    assert asyncio.run(call_from_loop()) == ["ses_1"]


async def test_async_client_same_objects() -> None:
    recorder = Recorder(lambda request: httpx.Response(200, json=SESSION))
    async with AsyncOpenCodeClient(
        "http://gateway.test", port=3100, transport=httpx.MockTransport(recorder)
    ) as client:
        session = await client.get_session("ses_1")

    assert session.id == "ses_1"
    assert session.created_at.isoformat() == "2026-03-03T10:00:00+00:00"


async def test_async_blank_text_sends_nothing() -> None:
    recorder = Recorder(lambda request: httpx.Response(500))
    async with AsyncOpenCodeClient(
        "http://gateway.test", port=3100, transport=httpx.MockTransport(recorder)
    ) as client:
        with pytest.raises(MessageTextRequiredError):
            await client.prompt("ses_1", " ")

    assert recorder.requests == []


def test_sessions_with_epoch_time_fields() -> None:
    native_shape = {
        "id": "ses_C",
        "title": "epoch",
        "time": {"created": 1772532000000, "updated": 1772532060000},
    }
    client, _ = make_client(
        lambda request: httpx.Response(200, json=[native_shape, SESSION])
    )

    sessions = client.list_sessions()

    assert [s.id for s in sessions] == ["ses_1", "ses_C"]
    assert sessions[1].created_at.isoformat() == "2026-03-03T10:00:00+00:00"
    assert sessions[1].updated_at.isoformat() == "2026-03-03T10:01:00+00:00"
