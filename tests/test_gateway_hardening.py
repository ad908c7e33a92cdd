"""
The gateway's defences: token, body limit, upstream failures, port allow-list,
CORS and logs.

Most rows run the gateway in-process over `httpx.ASGITransport`, in front of
loopback sockets that stand in for OpenCode: one that records every connection
and closes it at once, and one that reads the request and never responds. The
rows marked `chain` run `opencode-notebook serve` as a process in front of the
real OpenCode server of the `chain` fixture.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from opencode_notebook.cli import _build_parser
from opencode_notebook.gateway import GatewayConfig, create_app
from opencode_notebook.gateway.app import Gateway
from opencode_notebook.stack import LocalChain, free_port
from opencode_notebook.stack.process import stop_process_group, wait_until_ready

TOKEN = "tok-9f3a7c2e-hardening"
ORIGIN = "http://localhost:8888"


class Listener:
    """A loopback port that counts the connections made to it.

    `mode` is `"close"` (close each connection at once) or `"silent"` (keep it
    open and never send a response).
    """

    def __init__(self, mode: str = "close") -> None:
        self.mode = mode
        self.accepted = 0
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen()
        self._server.settimeout(0.1)
        self._open: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        port: int = self._server.getsockname()[1]
        return port

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._server.accept()
            except OSError:
                continue
            self.accepted += 1
            if self.mode == "silent":
                self._open.append(connection)
            else:
                connection.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for connection in self._open:
            connection.close()
        self._server.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    recorder = Listener("close")
    yield recorder
    recorder.close()


@pytest.fixture
def silent() -> Iterator[Listener]:
    recorder = Listener("silent")
    yield recorder
    recorder.close()


@contextmanager
def closed_port() -> Iterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        yield probe.getsockname()[1]


@asynccontextmanager
async def gateway_client(
    config: GatewayConfig, headers: dict[str, str] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(config), raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://gateway", headers=headers
    ) as client:
        yield client


def assert_error(response: httpx.Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"statusCode": status, "message": message}


def every_request(port: int) -> list[tuple[str, str, dict[str, Any]]]:
    """One request per documented operation and a few that match no route."""
    prefix = f"/api/opencode/{port}"
    return [
        ("GET", f"{prefix}/sessions", {}),
        ("POST", f"{prefix}/session/create", {"json": {"title": "t"}}),
        ("GET", f"{prefix}/session/ses_1", {}),
        ("DELETE", f"{prefix}/session/ses_1", {}),
        ("GET", f"{prefix}/session/ses_1/messages", {}),
        ("POST", f"{prefix}/session/ses_1/prompt", {"json": {"text": "hi"}}),
        ("PUT", f"{prefix}/sessions", {}),
        ("GET", f"{prefix}/nowhere", {}),
        ("GET", "/api/health", {}),
        ("GET", "/api/openapi.json", {}),
        ("GET", "/somewhere/else", {}),
        ("OPTIONS", f"{prefix}/sessions", {}),
    ]


# Token


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="missing"),
        pytest.param("Bearer wrong-token", id="wrong-token"),
        pytest.param(f"Basic {TOKEN}", id="wrong-scheme"),
        pytest.param(f"Bearer {TOKEN}x", id="token-prefix"),
        pytest.param("Bearer", id="scheme-only"),
    ],
)
async def test_token_required_on_every_route(
    listener: Listener, authorization: str | None
) -> None:
    config = GatewayConfig(allowed_ports=frozenset({listener.port}), token=TOKEN)
    headers = {"Authorization": authorization} if authorization else {}

    async with gateway_client(config, headers) as client:
        for method, path, extra in every_request(listener.port):
            response = await client.request(method, path, **extra)

            assert response.status_code == 401, (method, path)
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["statusCode"] == 401
            assert "Authorization: Bearer" in response.json()["message"]
    assert listener.accepted == 0


async def test_token_in_query_is_not_accepted(listener: Listener) -> None:
    config = GatewayConfig(allowed_ports=frozenset({listener.port}), token=TOKEN)

    async with gateway_client(config) as client:
        response = await client.get("/api/health", params={"token": TOKEN})

    assert response.status_code == 401


async def test_right_token_passes() -> None:
    with closed_port() as port:
        config = GatewayConfig(allowed_ports=frozenset({port}), token=TOKEN)
        headers = {"Authorization": f"bearer {TOKEN}"}

        async with gateway_client(config, headers) as client:
            health = await client.get("/api/health")
            sessions = await client.get(f"/api/opencode/{port}/sessions")

    assert health.status_code == 200
    assert health.json() == {"healthy": True, "ports": [port]}
    assert sessions.status_code == 502


async def test_no_token_configured_needs_none() -> None:
    config = GatewayConfig(allowed_ports=frozenset({3100}))

    async with gateway_client(config) as client:
        response = await client.get("/api/health")

    assert response.status_code == 200


async def test_token_never_logged(
    caplog: pytest.LogCaptureFixture, listener: Listener, silent: Listener
) -> None:
    config = GatewayConfig(
        allowed_ports=frozenset({listener.port, silent.port}),
        token=TOKEN,
        timeout=0.3,
    )
    caplog.set_level(logging.DEBUG)

    for headers in ({"Authorization": f"Bearer {TOKEN}"}, {"Authorization": "x"}):
        async with gateway_client(config, headers) as client:
            for method, path, extra in every_request(listener.port):
                await client.request(method, path, **extra)
            await client.get(f"/api/opencode/{silent.port}/sessions")

    assert caplog.records, "the requests above log at least their failures"
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(config)


# Body limit and JSON


async def test_body_over_limit_is_413(listener: Listener) -> None:
    config = GatewayConfig(allowed_ports=frozenset({listener.port}), body_limit=1024)
    prefix = f"/api/opencode/{listener.port}"
    big = b'{"text": "' + b"x" * 2000 + b'"}'
    expected = "Request body too large: the limit is 1024 bytes. Send less text."

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 100):
            yield big[start : start + 100]

    async with gateway_client(config) as client:
        declared = await client.post(f"{prefix}/session/ses_1/prompt", content=big)
        streamed = await client.post(f"{prefix}/session/create", content=chunked())

    assert_error(declared, 413, expected)
    assert_error(streamed, 413, expected)
    assert "content-length" not in streamed.request.headers
    assert listener.accepted == 0


async def test_body_at_limit_is_read(listener: Listener) -> None:
    body = b'{"title": "' + b"x" * 100 + b'"}'
    config = GatewayConfig(
        allowed_ports=frozenset({listener.port}), body_limit=len(body)
    )

    async with gateway_client(config) as client:
        response = await client.post(
            f"/api/opencode/{listener.port}/session/create", content=body
        )

    assert response.status_code == 502
    assert listener.accepted >= 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b"{", "Invalid JSON body: Expecting", id="truncated"),
        pytest.param(b"[1, 2]", "Invalid JSON body: expected an object", id="array"),
        pytest.param(b'"text"', "Invalid JSON body: expected an object", id="string"),
        pytest.param(b"\xff\xfe\x00", "Invalid JSON body:", id="not-utf8"),
        pytest.param(b"[" * 100_000, "Invalid JSON body: nested too deeply", id="deep"),
        pytest.param(b'{"title": 5}', "Invalid field 'title'", id="title-int"),
        pytest.param(b'{"parentID": []}', "Invalid field 'parentID'", id="parent-list"),
    ],
)
async def test_invalid_create_body_is_400(
    listener: Listener, body: bytes, message: str
) -> None:
    config = GatewayConfig(allowed_ports=frozenset({listener.port}))

    async with gateway_client(config) as client:
        response = await client.post(
            f"/api/opencode/{listener.port}/session/create", content=body
        )

    assert response.status_code == 400, response.text
    assert response.json()["statusCode"] == 400
    assert response.json()["message"].startswith(message)
    assert listener.accepted == 0


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        pytest.param(b"{", 400, "Invalid JSON body:", id="truncated"),
        pytest.param(b"{}", 500, "Message text required", id="no-text"),
        pytest.param(b'{"text": NaN}', 500, "Message text required", id="nan-text"),
        pytest.param(b'{"text": " \\t\\n"}', 500, "Message text required", id="blank"),
        pytest.param(
            b'{"text": "hi", "model": "local"}',
            400,
            "Invalid field 'model'",
            id="model",
        ),
        pytest.param(
            b'{"text": "hi", "agent": 3}', 400, "Invalid field 'agent'", id="agent"
        ),
    ],
)
async def test_invalid_prompt_body(
    listener: Listener, body: bytes, status: int, message: str
) -> None:
    config = GatewayConfig(allowed_ports=frozenset({listener.port}))

    async with gateway_client(config) as client:
        response = await client.post(
            f"/api/opencode/{listener.port}/session/ses_1/prompt", content=body
        )

    assert response.status_code == status, response.text
    assert response.json()["statusCode"] == status
    assert response.json()["message"].startswith(message)
    assert listener.accepted == 0


# Upstream failures


async def test_unreachable_instance_names_port() -> None:
    with closed_port() as port:
        config = GatewayConfig(allowed_ports=frozenset({port}))

        async with gateway_client(config) as client:
            started = time.monotonic()
            response = await client.get(f"/api/opencode/{port}/sessions")
            elapsed = time.monotonic() - started

    assert_error(response, 502, f"No OpenCode instance answers on port {port}")
    assert elapsed < 5


async def test_dropped_connection_is_502(listener: Listener) -> None:
    config = GatewayConfig(allowed_ports=frozenset({listener.port}))

    async with gateway_client(config) as client:
        response = await client.get(f"/api/opencode/{listener.port}/session/ses_1")

    assert response.status_code == 502
    message = response.json()["message"]
    assert message.startswith(f"OpenCode on port {listener.port} closed the connection")


async def test_slow_instance_is_504(silent: Listener) -> None:
    config = GatewayConfig(allowed_ports=frozenset({silent.port}), timeout=0.3)

    async with gateway_client(config) as client:
        started = time.monotonic()
        response = await client.get(f"/api/opencode/{silent.port}/sessions")
        elapsed = time.monotonic() - started

    assert_error(
        response, 504, f"OpenCode on port {silent.port} did not answer within 0.3 s"
    )
    assert elapsed < 3


# Port allow-list


@pytest.mark.parametrize("token", [None, TOKEN], ids=["open", "with-token"])
async def test_port_not_allowed_never_contacted(
    listener: Listener, token: str | None
) -> None:
    with closed_port() as served:
        config = GatewayConfig(allowed_ports=frozenset({served}), token=token)
        headers = {"Authorization": f"Bearer {token}"} if token else None

        async with gateway_client(config, headers) as client:
            responses = [
                await client.request(method, path, **extra)
                for method, path, extra in every_request(listener.port)[:6]
            ]
            oversized = await client.post(
                f"/api/opencode/{listener.port}/session/create",
                content=b"{" * 2_000_000,
            )

    for response in responses:
        assert_error(response, 403, "Port not allowed")
    assert oversized.status_code == 403
    assert listener.accepted == 0


# Error shape of the gateway's own responses


async def test_wrong_method_has_allow_header() -> None:
    config = GatewayConfig(allowed_ports=frozenset({3100}))

    async with gateway_client(config) as client:
        put = await client.put("/api/opencode/3100/sessions")
        get = await client.get("/api/opencode/3100/session/create")
        post = await client.post("/api/health")

    assert_error(put, 405, "Method PUT not allowed here: use GET")
    assert put.headers["allow"] == "GET"
    assert get.headers["allow"] == "POST"
    assert post.status_code == 405
    assert set(post.headers["allow"].split(", ")) == {"GET", "HEAD"}


async def test_unknown_path_is_json_404() -> None:
    config = GatewayConfig(allowed_ports=frozenset({3100}))

    async with gateway_client(config) as client:
        response = await client.request("BREW", "/coffee")

    assert_error(response, 404, "Not found: BREW /coffee")


async def test_unexpected_exception_is_json_500(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(*args: object) -> None:
        raise RuntimeError("bug in a handler")

    monkeypatch.setattr(Gateway, "_dispatch", broken)
    config = GatewayConfig(allowed_ports=frozenset({3100}))

    async with gateway_client(config) as client:
        response = await client.get("/api/opencode/3100/sessions")

    assert_error(response, 500, "Internal gateway error: see the gateway's log")


# CORS


async def test_cors_off_by_default() -> None:
    config = GatewayConfig(allowed_ports=frozenset({3100}))
    preflight_headers = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }

    async with gateway_client(config) as client:
        preflight = await client.options(
            "/api/opencode/3100/session/create", headers=preflight_headers
        )
        simple = await client.get("/api/health", headers={"Origin": ORIGIN})

    assert preflight.status_code == 405
    assert "access-control-allow-origin" not in preflight.headers
    assert simple.status_code == 200
    assert "access-control-allow-origin" not in simple.headers


async def test_cors_origin_opt_in() -> None:
    config = GatewayConfig(
        allowed_ports=frozenset({3100}), token=TOKEN, cors_origins=(ORIGIN,)
    )

    def preflight(origin: str) -> dict[str, str]:
        return {
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        }

    async with gateway_client(config) as client:
        allowed = await client.options(
            "/api/opencode/3100/session/create", headers=preflight(ORIGIN)
        )
        other = await client.options(
            "/api/opencode/3100/session/create",
            headers=preflight("http://evil.example"),
        )
        simple = await client.get(
            "/api/health",
            headers={"Origin": ORIGIN, "Authorization": f"Bearer {TOKEN}"},
        )

    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers
    assert simple.status_code == 200
    assert simple.headers["access-control-allow-origin"] == ORIGIN


def test_cli_cors_origin_flag() -> None:
    parser = _build_parser()

    default = parser.parse_args(["serve"])
    given = parser.parse_args(
        ["serve", "--cors-origin", ORIGIN, "--cors-origin", "http://127.0.0.1:8888"]
    )

    assert default.cors_origin is None
    assert given.cors_origin == [ORIGIN, "http://127.0.0.1:8888"]


# The real gateway process in front of the real OpenCode server


@contextmanager
def gateway_process(
    *args: str, token: str | None = None
) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    """Run `opencode-notebook serve` with `args`; yield its URL and output file."""
    port = free_port()
    command = [sys.executable, "-m", "opencode_notebook.cli", "serve"]
    command += ["--port", str(port), *args]
    if token:
        command += ["--token", token]
    folder = Path(tempfile.mkdtemp(prefix="gateway-hardening-"))
    output = folder / "gateway-output.txt"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        wait_until_ready(f"{url}/api/health", process, 30, headers=headers)
        yield url, output, process
    finally:
        stop_process_group(process)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.chain
def test_real_gateway_with_token(chain: LocalChain) -> None:
    opencode_port = chain.opencode_ports[0]
    prefix = f"/api/opencode/{opencode_port}"
    serve_args = ["--allow-port", str(opencode_port), "--log-level", "debug"]

    with gateway_process(*serve_args, token=TOKEN) as (url, output, _):
        with httpx.Client(base_url=url, timeout=60) as anonymous:
            refused = [anonymous.get(f"{prefix}/sessions"), anonymous.get("/x")]
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            created = client.post(f"{prefix}/session/create", json={"title": "tok"})
            listed = client.get(f"{prefix}/sessions")
            missing = client.get(f"{prefix}/session/ses_missing")
        log = output.read_text()

    for response in refused:
        assert response.status_code == 401
    assert created.status_code == 200
    assert created.json()["id"] in {s["id"] for s in listed.json()}
    assert_error(missing, 404, "Session not found")
    assert f"{prefix}/sessions" in log, "the access log is in the output"
    assert TOKEN not in log


@pytest.mark.chain
def test_real_gateway_upstream_rows(chain: LocalChain, listener: Listener) -> None:
    opencode_port = chain.opencode_ports[0]
    with closed_port() as dead_port:
        serve_args = ["--allow-port", f"{opencode_port},{dead_port}"]

        with gateway_process(*serve_args) as (url, _, process):
            with httpx.Client(base_url=url, timeout=60) as client:
                dead = client.get(f"/api/opencode/{dead_port}/sessions")
                foreign = client.get(f"/api/opencode/{listener.port}/sessions")
                big = client.post(
                    f"/api/opencode/{opencode_port}/session/create",
                    content=b" " * (1024 * 1024 + 1),
                )
                alive = client.get(f"/api/opencode/{opencode_port}/sessions")
            running = process.poll() is None

    assert_error(dead, 502, f"No OpenCode instance answers on port {dead_port}")
    assert_error(foreign, 403, "Port not allowed")
    assert_error(
        big, 413, "Request body too large: the limit is 1048576 bytes. Send less text."
    )
    assert alive.status_code == 200
    assert running
    assert listener.accepted == 0


@pytest.mark.chain
def test_real_gateway_cors_flag(chain: LocalChain) -> None:
    opencode_port = chain.opencode_ports[0]
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}
    path = f"/api/opencode/{opencode_port}/sessions"

    with gateway_process("--allow-port", str(opencode_port)) as (url, _, _):
        closed = httpx.options(url + path, headers=preflight, timeout=30)
    serve_args = ["--allow-port", str(opencode_port), "--cors-origin", ORIGIN]
    with gateway_process(*serve_args) as (url, _, _):
        opened = httpx.options(url + path, headers=preflight, timeout=30)
        listed = httpx.get(url + path, headers={"Origin": ORIGIN}, timeout=30)

    assert "access-control-allow-origin" not in closed.headers
    assert opened.status_code == 200
    assert opened.headers["access-control-allow-origin"] == ORIGIN
    assert listed.status_code == 200
    assert listed.headers["access-control-allow-origin"] == ORIGIN
