"""The local chain: offline model, OpenCode servers and the gateway, on loopback."""

from __future__ import annotations

import atexit
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .offline_model import OfflineModel
from .opencode import OpenCodeServer
from .process import (
    StartError,
    free_port,
    output_tail,
    stop_process_group,
    wait_until_ready,
)

__all__ = ["LocalChain"]

logger = logging.getLogger("opencode_notebook.stack.chain")


class LocalChain:
    """Start the offline model, OpenCode servers and the gateway, and stop them.

    Use it as a context manager, or call `start()` and `stop()`. A failure
    during `start()` stops whatever had started.

    - `opencode_ports`: how many OpenCode servers to start on free ports, or
      the ports to start them on (`None` in the list picks a free one).
    - `gateway`: start the gateway (`opencode-notebook serve`) in front of
      the servers, allowing exactly their ports.
    - `gateway_port`: the gateway's port, or `None` for a free one.
    - `token`: the token the gateway requires, if any.
    - `chunk_delay`: the offline model's delay in seconds before each chunk.
    """

    def __init__(
        self,
        *,
        opencode_ports: int | Sequence[int | None] = 1,
        gateway: bool = True,
        gateway_port: int | None = None,
        token: str | None = None,
        chunk_delay: float = 0.0,
        start_timeout: float = 60.0,
    ) -> None:
        if isinstance(opencode_ports, int):
            if opencode_ports < 1:
                raise ValueError("A local chain needs at least one OpenCode server.")
            self._requested_ports: list[int | None] = [None] * opencode_ports
        else:
            self._requested_ports = list(opencode_ports)
        self.with_gateway = gateway
        self.gateway_port = (gateway_port or free_port()) if gateway else None
        self.token = token
        self.start_timeout = start_timeout
        self.offline_model = OfflineModel(chunk_delay=chunk_delay)
        self.opencode_servers: list[OpenCodeServer] = []
        self._gateway: subprocess.Popen[bytes] | None = None
        self._gateway_dir: Path | None = None

    @property
    def offline_model_url(self) -> str:
        """The offline model's OpenAI-compatible base URL, ending in `/v1`."""
        return self.offline_model.base_url

    @property
    def opencode_ports(self) -> list[int]:
        """The ports of the OpenCode servers, in the order given."""
        return [server.port for server in self.opencode_servers]

    @property
    def opencode_urls(self) -> list[str]:
        """The base URLs of the OpenCode servers, in the order given."""
        return [server.url for server in self.opencode_servers]

    @property
    def gateway_url(self) -> str | None:
        """The gateway's base URL, or `None` when the chain has no gateway."""
        if self.gateway_port is None:
            return None
        return f"http://127.0.0.1:{self.gateway_port}"

    def api_url(self, port: int | None = None) -> str:
        """Return the gateway's Sessions API base URL for one OpenCode port.

        `port` defaults to the first server's port.
        """
        if self.gateway_url is None:
            raise RuntimeError("This local chain was started without a gateway.")
        return f"{self.gateway_url}/api/opencode/{port or self.opencode_ports[0]}"

    def start(self) -> LocalChain:
        """Start every part of the chain and wait until each one responds."""
        started = time.monotonic()
        try:
            self.offline_model.start()
            self._start_opencode_servers()
            if self.with_gateway:
                self._start_gateway()
        except BaseException:
            self.stop()
            raise
        logger.info(
            "local chain started in %.2f s: offline model %s, OpenCode ports %s, "
            "gateway %s",
            time.monotonic() - started,
            self.offline_model_url,
            self.opencode_ports,
            self.gateway_url or "not started",
        )
        return self

    def _start_opencode_servers(self) -> None:
        self.opencode_servers = [
            OpenCodeServer(
                port,
                model_url=self.offline_model_url,
                start_timeout=self.start_timeout,
            )
            for port in self._requested_ports
        ]
        # Each server takes more than a second to start, so start them together.
        with ThreadPoolExecutor(max_workers=len(self.opencode_servers)) as pool:
            futures = [pool.submit(server.start) for server in self.opencode_servers]
            errors = [future.exception() for future in futures]
        for error in errors:
            if error is not None:
                raise error

    def gateway_command(self) -> list[str]:
        """Return the command line that starts the gateway."""
        assert self.gateway_port is not None
        command = [sys.executable, "-m", "opencode_notebook.cli", "serve"]
        command += ["--host", "127.0.0.1", "--port", str(self.gateway_port)]
        for port in self.opencode_ports:
            command += ["--allow-port", str(port)]
        if self.token:
            command += ["--token", self.token]
        return command

    def _start_gateway(self) -> None:
        self._gateway_dir = Path(tempfile.mkdtemp(prefix="opencode-notebook-gateway-"))
        output = self._gateway_dir / "gateway-output.txt"
        with output.open("wb") as sink:
            self._gateway = subprocess.Popen(
                self.gateway_command(),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        atexit.register(self.stop)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        try:
            wait_until_ready(
                f"{self.gateway_url}/api/health",
                self._gateway,
                self.start_timeout,
                headers=headers,
            )
        except StartError as exc:
            raise StartError(
                f"The gateway on port {self.gateway_port} did not start: {exc}. "
                f"Its last output:\n{output_tail(output)}"
            ) from None
        logger.info(
            "gateway started on %s (pid %s)", self.gateway_url, self._gateway.pid
        )

    def stop(self) -> None:
        """Stop the gateway, the OpenCode servers and the offline model."""
        atexit.unregister(self.stop)
        gateway, self._gateway = self._gateway, None
        if gateway is not None:
            stop_process_group(gateway)
            logger.info(
                "gateway stopped on %s (pid %s, exit code %s)",
                self.gateway_url,
                gateway.pid,
                gateway.returncode,
            )
        if self._gateway_dir is not None:
            shutil.rmtree(self._gateway_dir, ignore_errors=True)
            self._gateway_dir = None
        for server in reversed(self.opencode_servers):
            server.stop()
        self.offline_model.stop()

    def __enter__(self) -> LocalChain:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
