"""
Faults behind the gateway: OpenCode killed mid-prompt, a model that fails,
a model that hangs and a model that cannot be reached.

Each test starts its own offline model, OpenCode server and gateway, so that
killing or starving them leaves the shared `chain` fixture alone.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest

from opencode_notebook import OpenCodeClient
from opencode_notebook.errors import UpstreamError, UpstreamTimeoutError
from opencode_notebook.stack import LocalChain, OpenCodeServer, free_port
from opencode_notebook.stack.process import stop_process_group, wait_until_ready

pytestmark = pytest.mark.chain

# Each chunk of the reply waits this long, so a prompt of a few words runs for
# a few seconds: long enough to kill OpenCode in the middle of it.
SLOW = "[[delay 0.3]]"


@pytest.fixture
def local_chain() -> Iterator[LocalChain]:
    with LocalChain() as chain:
        yield chain


@pytest.fixture
def client(local_chain: LocalChain) -> Iterator[OpenCodeClient]:
    assert local_chain.gateway_url is not None
    port = local_chain.opencode_ports[0]
    with OpenCodeClient(
        local_chain.gateway_url, port=port, prompt_timeout=120
    ) as gateway_client:
        yield gateway_client


def kill_hard(server: OpenCodeServer) -> None:
    """Kill OpenCode and its children at once, as a crash would."""
    assert server.pid is not None
    os.killpg(server.pid, signal.SIGKILL)


def test_opencode_killed_mid_prompt(
    local_chain: LocalChain, client: OpenCodeClient
) -> None:
    server = local_chain.opencode_servers[0]
    session = client.create_session(title="killed mid-prompt")
    words = " ".join(f"word{n}" for n in range(30))

    with ThreadPoolExecutor(1) as pool:
        pending: Future[object] = pool.submit(
            client.prompt, session.id, f"{SLOW} {words}"
        )
        time.sleep(2.0)
        assert not pending.done(), "the slow prompt is still running"
        killed_at = time.monotonic()
        kill_hard(server)
        with pytest.raises(UpstreamError) as failure:
            pending.result(timeout=30)
        reported_after = time.monotonic() - killed_at

    # httpx reports the dropped connection or, when it tries the port again,
    # the refused connection.
    assert failure.value.status == 502
    assert re.fullmatch(
        f"No OpenCode instance answers on port {server.port}|"
        f"OpenCode on port {server.port} closed the connection without answering: .+",
        failure.value.message,
    ), failure.value.message
    assert reported_after < 5
    assert local_chain.gateway_url is not None
    health = httpx.get(f"{local_chain.gateway_url}/api/health", timeout=10)
    assert health.status_code == 200
    with pytest.raises(UpstreamError, match="No OpenCode instance answers on port"):
        client.list_sessions()

    server.stop()
    server.start()
    fresh = client.create_session(title="after the restart")
    reply = client.prompt(fresh.id, "back again")

    assert reply.response == "Echo: back again"


def test_model_failure_reaches_user(
    local_chain: LocalChain, client: OpenCodeClient
) -> None:
    session = client.create_session(title="failing model")

    with pytest.raises(UpstreamError) as failure:
        client.prompt(session.id, "please [[fail]]")
    after = client.prompt(session.id, "and now answer")

    assert failure.value.status == 502
    message = failure.value.message
    assert "The offline model failed as the [[fail]] directive asked." in message
    assert message.startswith(f"OpenCode on port {local_chain.opencode_ports[0]}")
    assert "\n" not in message
    assert after.response == "Echo: and now answer"


class SilentModel:
    """A model provider port that accepts connections and never responds."""

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen()
        self.server.settimeout(0.1)
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.getsockname()[1]}/v1"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.server.accept()
            except OSError:
                continue
            self.accepted.append(connection)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for connection in self.accepted:
            connection.close()
        self.server.close()


@contextmanager
def gateway_in_front(
    opencode_port: int, prompt_timeout: float
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run `opencode-notebook serve` for one OpenCode port with a prompt timeout."""
    port = free_port()
    command = [sys.executable, "-m", "opencode_notebook.cli", "serve"]
    command += ["--port", str(port), "--allow-port", str(opencode_port)]
    command += ["--prompt-timeout", str(prompt_timeout), "--log-level", "warning"]
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{url}/api/health", process, 30)
        yield url, process
    finally:
        stop_process_group(process)


@pytest.mark.parametrize("provider", ["hanging", "unreachable"])
def test_stuck_model_is_504(provider: str) -> None:
    silent = SilentModel()
    if provider == "hanging":
        model_url = silent.base_url
    else:
        model_url = f"http://127.0.0.1:{free_port()}/v1"
    server = OpenCodeServer(model_url=model_url)
    try:
        server.start()
        with gateway_in_front(server.port, prompt_timeout=3) as (url, process):
            with OpenCodeClient(url, port=server.port, prompt_timeout=60) as client:
                session = client.create_session(title=f"{provider} model")

                started = time.monotonic()
                with pytest.raises(UpstreamTimeoutError) as failure:
                    client.prompt(session.id, "anyone there?")
                elapsed = time.monotonic() - started
                listed = client.list_sessions()
            alive = process.poll() is None
    finally:
        server.stop()
        silent.close()

    assert failure.value.status == 504
    assert failure.value.message == (
        f"OpenCode on port {server.port} did not answer within 3 s"
    )
    assert 3 <= elapsed < 10
    assert session.id in {s.id for s in listed}
    assert alive
    if provider == "hanging":
        assert silent.accepted, "OpenCode reached the hanging model"
