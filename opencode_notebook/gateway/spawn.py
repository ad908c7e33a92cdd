"""
Start `opencode serve` on demand for the gateway's allowed ports.

Spawned servers run with the user's own OpenCode configuration and HOME, in the
gateway's working directory, and stop when the gateway stops.
"""

from __future__ import annotations

import asyncio
import logging

from opencode_notebook.stack import OpenCodeServer, StackError

__all__ = ["Spawner"]

logger = logging.getLogger("opencode_notebook.gateway")


class Spawner:
    """Starts one OpenCode server per port, at most once, and stops them all."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        if host not in ("127.0.0.1", "localhost"):
            raise ValueError(
                f"Cannot start OpenCode for upstream host {host!r}: --spawn starts "
                "servers on this machine, so use --upstream-host 127.0.0.1."
            )
        self._servers: dict[int, OpenCodeServer] = {}
        self._lock = asyncio.Lock()

    async def start(self, port: int) -> None:
        """Start OpenCode on `port` unless this spawner already did."""
        async with self._lock:
            if port in self._servers:
                return
            server = OpenCodeServer(port, isolated=False)
            try:
                await asyncio.to_thread(server.start)
            except StackError as exc:
                logger.error("Starting OpenCode on port %d failed: %s", port, exc)
                raise
            self._servers[port] = server
            logger.info("Started OpenCode on port %d (pid %s)", port, server.pid)

    async def stop(self) -> None:
        """Stop every server this spawner started."""
        for port, server in self._servers.items():
            await asyncio.to_thread(server.stop)
            logger.info("Stopped OpenCode on port %d", port)
        self._servers.clear()
