"""The real OpenCode server and the local chain, started against the offline model."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from opencode_notebook.stack import (
    LocalChain,
    OfflineModel,
    OpenCodeNotFoundError,
    OpenCodeServer,
    StartError,
    find_opencode_binary,
    isolated_config,
)
from opencode_notebook.stack import opencode as opencode_module

MODEL = {"providerID": "local", "modelID": "echo"}
SLEEP_TOOL = "[[tool bash: sleep 47]]"


def prompt(base_url: str, session_id: str, text: str) -> dict[str, Any]:
    body = {"parts": [{"type": "text", "text": text}], "model": MODEL}
    url = f"{base_url}/session/{session_id}/message"
    response = httpx.post(url, json=body, timeout=60)
    assert response.status_code == 200
    reply: dict[str, Any] = response.json()
    return reply


def create_session(base_url: str, title: str = "stack test") -> str:
    response = httpx.post(f"{base_url}/session", json={"title": title})
    assert response.status_code == 200
    session_id: str = response.json()["id"]
    return session_id


def reply_text(reply: dict[str, Any]) -> str:
    return "".join(part["text"] for part in reply["parts"] if part["type"] == "text")


def wait_for_sleeper(timeout: float = 30.0) -> int:
    """Return the pid of the `sleep 47` that a tool call starts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            cmdline = entry / "cmdline"
            if entry.name.isdigit() and cmdline.exists():
                with contextlib.suppress(OSError):
                    if cmdline.read_bytes().split(b"\0")[:2] == [b"sleep", b"47"]:
                        return int(entry.name)
        time.sleep(0.1)
    raise AssertionError("the tool call did not start `sleep 47`")


def is_running(pid: int) -> bool:
    """Return whether `pid` exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def group_is_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


class RegistryTrap:
    """A loopback HTTP server that records every request, in place of npm."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        trap = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                trap.paths.append(self.path)
                self.send_error(404)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> RegistryTrap:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def no_opencode_anywhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Path]:
    """Hide every opencode binary and plugin package from the search."""
    monkeypatch.delenv("OPENCODE_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setattr(opencode_module, "_REPO_ROOT", tmp_path / "repo")
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def test_missing_binary_says_npm_ci(no_opencode_anywhere: Path) -> None:
    with pytest.raises(OpenCodeNotFoundError) as excinfo:
        find_opencode_binary()

    message = str(excinfo.value)
    assert "npm ci" in message
    assert "opencode-ai@1.18.33" in message
    assert "\n" not in message


def test_missing_binary_stops_server_start(no_opencode_anywhere: Path) -> None:
    server = OpenCodeServer(model_url="http://127.0.0.1:9/v1")

    with pytest.raises(OpenCodeNotFoundError, match="npm ci"):
        server.start()
    assert server.pid is None


def test_opencode_bin_must_be_executable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OPENCODE_BIN", str(tmp_path / "nope"))

    with pytest.raises(OpenCodeNotFoundError, match="OPENCODE_BIN"):
        find_opencode_binary()


def test_opencode_bin_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    binary = tmp_path / "opencode"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setenv("OPENCODE_BIN", str(binary))

    assert find_opencode_binary() == binary


def test_binary_found_in_node_modules(no_opencode_anywhere: Path) -> None:
    binary = no_opencode_anywhere / "node_modules" / ".bin" / "opencode"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    os.chdir(no_opencode_anywhere / "node_modules")

    assert find_opencode_binary() == binary


def test_isolated_server_needs_model_url() -> None:
    with pytest.raises(ValueError, match="model_url"):
        OpenCodeServer()


def test_isolated_config_names_local_echo() -> None:
    config = isolated_config("http://127.0.0.1:4000/v1")

    provider = config["provider"]["local"]
    assert provider["npm"] == "@ai-sdk/openai-compatible"
    assert provider["options"]["baseURL"] == "http://127.0.0.1:4000/v1"
    assert list(provider["models"]) == ["echo"]
    assert config["model"] == "local/echo"


@pytest.mark.chain
def test_prompt_gets_echo(opencode_server: OpenCodeServer) -> None:
    session_id = create_session(opencode_server.url)

    reply = prompt(opencode_server.url, session_id, "hello")

    assert reply["info"]["role"] == "assistant"
    assert reply["info"]["providerID"] == "local"
    assert reply_text(reply) == "Echo: hello"


@pytest.mark.chain
def test_tool_directive_makes_two_replies(opencode_server: OpenCodeServer) -> None:
    session_id = create_session(opencode_server.url)

    reply = prompt(opencode_server.url, session_id, "[[tool bash: echo hi]] go")
    messages = httpx.get(f"{opencode_server.url}/session/{session_id}/message").json()

    assert reply_text(reply) == "Done: hi"
    assistants = [m for m in messages if m["info"]["role"] == "assistant"]
    assert [m["info"]["finish"] for m in assistants] == ["tool-calls", "stop"]
    tool_parts = [p for p in assistants[0]["parts"] if p["type"] == "tool"]
    assert tool_parts[0]["tool"] == "bash"
    assert tool_parts[0]["state"]["status"] == "completed"
    assert tool_parts[0]["state"]["output"].strip() == "hi"


@pytest.mark.chain
def test_untitled_session_gets_title(opencode_server: OpenCodeServer) -> None:
    response = httpx.post(f"{opencode_server.url}/session", json={})
    session_id = response.json()["id"]

    prompt(opencode_server.url, session_id, "plot monthly sales for the north region")

    # OpenCode may write the generated title after the reply has been returned.
    deadline = time.monotonic() + 10
    while True:
        session = httpx.get(f"{opencode_server.url}/session/{session_id}").json()
        if (
            not session["title"].startswith("New session")
            or time.monotonic() > deadline
        ):
            break
        time.sleep(0.1)
    assert session["title"] == "plot monthly sales for the north"


@pytest.mark.chain
def test_first_prompt_installs_nothing(offline_model: OfflineModel) -> None:
    with RegistryTrap() as registry:
        server = OpenCodeServer(
            model_url=offline_model.base_url,
            env={"npm_config_registry": registry.url},
        )
        with server:
            assert server.home is not None and server.log_dir is not None
            config_dir = server.home / ".config" / "opencode"
            package_json = (config_dir / "package.json").read_text()
            session_id = create_session(server.url)
            assert reply_text(prompt(server.url, session_id, "hi")) == "Echo: hi"
            log = "".join(p.read_text() for p in server.log_dir.glob("*.log"))
            package_json_after = (config_dir / "package.json").read_text()

    assert registry.paths == []
    assert "dependency install" not in log
    assert package_json_after == package_json


@pytest.mark.chain
def test_stop_leaves_no_process(offline_model: OfflineModel) -> None:
    server = OpenCodeServer(model_url=offline_model.base_url).start()
    pid, home = server.pid, server.home
    assert pid is not None and home is not None
    session_id = create_session(server.url)
    body = {"parts": [{"type": "text", "text": SLEEP_TOOL}], "model": MODEL}
    httpx.post(f"{server.url}/session/{session_id}/prompt_async", json=body)
    sleeper = wait_for_sleeper()

    server.stop()

    assert server.pid is None
    assert group_is_gone(pid)
    assert not is_running(sleeper)
    assert not home.exists()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/global/health")


@pytest.mark.chain
def test_failed_start_reports_output(offline_model: OfflineModel) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = OpenCodeServer(
            busy.getsockname()[1], model_url=offline_model.base_url, start_timeout=30
        )
        with pytest.raises(StartError) as excinfo:
            server.start()

    message = str(excinfo.value)
    assert f"port {server.port} did not start" in message
    assert "exited with code" in message
    assert "Error" in message
    assert server.pid is None


@pytest.mark.chain
def test_password_server_needs_auth(offline_model: OfflineModel) -> None:
    with OpenCodeServer(model_url=offline_model.base_url, password="s3cret") as server:
        anonymous = httpx.get(f"{server.url}/global/health")
        signed_in = httpx.get(f"{server.url}/global/health", auth=server.auth)

    assert server.auth == ("opencode", "s3cret")
    assert anonymous.status_code == 401
    assert signed_in.status_code == 200


@pytest.mark.chain
def test_chain_without_gateway() -> None:
    with LocalChain(gateway=False) as chain:
        model_url = chain.offline_model_url
        assert chain.gateway_url is None
        assert model_url.endswith("/v1")
        [url] = chain.opencode_urls
        assert url == f"http://127.0.0.1:{chain.opencode_ports[0]}"
        reply = prompt(url, create_session(url), "hello")
        [server] = chain.opencode_servers
        pid = server.pid
        assert pid is not None

    assert reply_text(reply) == "Echo: hello"
    assert group_is_gone(pid)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{model_url}/models")


@pytest.mark.chain
def test_chain_stops_all_when_start_fails() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        busy_port = busy.getsockname()[1]
        chain = LocalChain(opencode_ports=[0, busy_port], gateway=False)
        with pytest.raises(StartError, match=f"port {busy_port}"):
            chain.start()

    pids = [server.pid for server in chain.opencode_servers]
    assert pids == [None, None]
    with pytest.raises(RuntimeError, match="not running"):
        _ = chain.offline_model.port


@pytest.mark.chain
def test_chain_gateway_answers(chain: LocalChain) -> None:
    assert chain.gateway_url is not None
    health = httpx.get(f"{chain.gateway_url}/api/health")
    created = httpx.post(f"{chain.api_url()}/session/create", json={"title": "t"})
    session_id = created.json()["id"]
    url = f"{chain.api_url()}/session/{session_id}/prompt"
    reply = httpx.post(url, json={"text": "hello"}, timeout=60)

    assert health.status_code == 200
    assert created.status_code == 200
    assert reply.status_code == 200
    assert reply.json()["response"] == "Echo: hello"
