"""Helpers to start and stop the local chain's server processes."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Container
from pathlib import Path

import httpx

__all__ = [
    "StackError",
    "StartError",
    "free_port",
    "output_tail",
    "stop_process_group",
    "wait_until_ready",
]

PROBE_TIMEOUT = 0.5
PROBE_INTERVAL = 0.05

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class StackError(RuntimeError):
    """A server of the local chain could not be found, started or stopped."""


class StartError(StackError):
    """A server process exited or did not become ready in time."""


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now.

    Another process may take the port before the caller binds it, and a
    server that then fails to start reports this in its output.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def output_tail(path: Path, lines: int = 20) -> str:
    """Return the last `lines` lines of a process's output file, without colours."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(_ANSI_ESCAPE.sub("", text).splitlines()[-lines:])


def wait_until_ready(
    url: str,
    process: subprocess.Popen[bytes],
    timeout: float,
    *,
    accept: Container[int] = (200,),
    auth: tuple[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    """Poll `url` until it responds with a status in `accept`.

    Each probe has a short timeout because a server can accept connections
    before it responds to them. Raises `StartError` when the process exits or
    `timeout` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    last_problem = "no answer yet"
    with httpx.Client(timeout=PROBE_TIMEOUT, auth=auth, headers=headers) as client:
        while True:
            code = process.poll()
            if code is not None:
                raise StartError(f"the process exited with code {code}")
            try:
                status = client.get(url).status_code
            except httpx.HTTPError as exc:
                last_problem = f"{type(exc).__name__}: {exc}" if str(exc) else repr(exc)
            else:
                if status in accept:
                    return
                last_problem = f"HTTP {status}"
            if time.monotonic() > deadline:
                raise StartError(
                    f"{url} was not ready within {timeout:g} s ({last_problem})"
                )
            time.sleep(PROBE_INTERVAL)


def stop_process_group(process: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Stop `process`, its process group and every process it started.

    The process must have been started with `start_new_session=True`. Its
    descendants are looked up before it is signalled, because OpenCode starts
    tool commands in process groups of their own, and they would otherwise
    outlive it. Processes started after that lookup are not found.
    """
    pgid = process.pid
    descendants = _descendants(process.pid)
    _signal_group(pgid, signal.SIGTERM)
    _signal_pids(descendants, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _signal_group(pgid, signal.SIGKILL)
        process.wait(timeout=timeout)
    _wait_gone(descendants, timeout=1.0)
    _signal_group(pgid, signal.SIGKILL)
    _signal_pids(descendants, signal.SIGKILL)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _signal_pids(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _alive(pid: int) -> bool:
    """Return whether `pid` is running. A zombie waiting to be reaped is not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(PROBE_INTERVAL)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for child, parent in _parent_pids():
        children.setdefault(parent, []).append(child)
    found: list[int] = []
    pending = [pid]
    while pending:
        below = children.get(pending.pop(), [])
        found += below
        pending += below
    return found


def _parent_pids() -> list[tuple[int, int]]:
    """Return (pid, parent pid) for every process, from /proc or `ps`."""
    proc = Path("/proc")
    if not proc.is_dir():
        ps = ["ps", "-A", "-o", "pid=,ppid="]
        output = subprocess.run(ps, capture_output=True, text=True, check=False)
        rows = (line.split() for line in output.stdout.splitlines())
        return [(int(row[0]), int(row[1])) for row in rows if len(row) == 2]
    pairs = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name in parentheses may contain spaces. The state and the
        # parent pid follow the closing parenthesis.
        fields = stat.rsplit(")", 1)[1].split()
        pairs.append((int(entry.name), int(fields[1])))
    return pairs
