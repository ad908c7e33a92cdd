"""
Measure how long a streamed chunk takes from the model to `stream_prompt()`.

The script starts the offline model, wrapped in an ASGI middleware that records
when each content chunk of a streamed completion is sent, a real `opencode serve`
that uses it, and the gateway (`opencode-notebook serve`) in front of OpenCode.
For each mode (direct and through the gateway, sync and async clients) it sends
`--prompts` prompts whose replies stream `--words` unique words, one chunk each,
`--delay` seconds apart. The latency of a chunk is the time from the model
sending it to the client yielding its `TextDelta`. The model runs in a thread of
this process, so both times come from one clock, `time.perf_counter()`.

Run: .venv/bin/python benchmarks/stream_latency.py [--prompts N] [--words N]
     [--delay S]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opencode_notebook import AsyncOpenCodeClient, OpenCodeClient
from opencode_notebook.stack import OpenCodeServer, free_port
from opencode_notebook.stack.offline_model import create_app
from opencode_notebook.stack.process import stop_process_group, wait_until_ready
from opencode_notebook.streaming import TextDelta

TARGET_MS = 100.0


class EmitRecorder:
    """ASGI middleware: record when each streamed content chunk is sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.sent: dict[str, float] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/chat/completions":
            await self.app(scope, receive, send)
            return

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.body":
                self._record(message.get("body", b""), time.perf_counter())
            await send(message)

        await self.app(scope, receive, timed_send)

    def _record(self, body: bytes, moment: float) -> None:
        for line in body.decode().splitlines():
            if not line.startswith("data: {"):
                continue
            for choice in json.loads(line[len("data: ") :]).get("choices", []):
                content = (choice.get("delta") or {}).get("content")
                # Replies run one after another, so the latest send of a chunk
                # (such as "Echo: ", which starts every reply) is the one the
                # client is about to receive.
                if content:
                    self.sent[content] = moment


@contextmanager
def serve_offline_model(recorder: EmitRecorder) -> Iterator[str]:
    """Serve the wrapped offline model in a thread; yield its `/v1` base URL."""
    port = free_port()
    config = uvicorn.Config(
        recorder, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"The offline model did not start on port {port}.")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def serve_gateway(opencode_port: int) -> Iterator[str]:
    """Run `opencode-notebook serve` for one OpenCode port; yield its URL."""
    port = free_port()
    command = [sys.executable, "-m", "opencode_notebook.cli", "serve"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    command += ["--allow-port", str(opencode_port)]
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
        yield url
    finally:
        stop_process_group(process)


def prompt_text(run: int, words: int, delay: float) -> str:
    return f"[[delay {delay}]] " + " ".join(f"r{run}w{i:03d}" for i in range(words))


def latencies(recorder: EmitRecorder, arrivals: list[tuple[float, str]]) -> list[float]:
    """Milliseconds from sending each chunk to the client yielding it."""
    return [
        (moment - recorder.sent[text]) * 1000
        for moment, text in arrivals
        if text in recorder.sent
    ]


def run_sync(
    client: OpenCodeClient, session_id: str, text: str
) -> list[tuple[float, str]]:
    arrivals: list[tuple[float, str]] = []
    with client.stream_prompt(session_id, text, model="local/echo") as stream:
        for event in stream:
            if isinstance(event, TextDelta):
                arrivals.append((time.perf_counter(), event.text))
    return arrivals


async def run_async(
    client: AsyncOpenCodeClient, session_id: str, text: str
) -> list[tuple[float, str]]:
    arrivals: list[tuple[float, str]] = []
    async with client.stream_prompt(session_id, text, model="local/echo") as stream:
        async for event in stream:
            if isinstance(event, TextDelta):
                arrivals.append((time.perf_counter(), event.text))
    return arrivals


async def run_all_async(
    client: AsyncOpenCodeClient, session_id: str, texts: list[str]
) -> list[list[tuple[float, str]]]:
    try:
        return [await run_async(client, session_id, text) for text in texts]
    finally:
        await client.aclose()


def summarise(name: str, samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    return {
        "mode": name,
        "samples": len(ordered),
        "median": statistics.median(ordered),
        "p90": ordered[int(0.9 * (len(ordered) - 1))],
        "max": ordered[-1],
    }


def measure(
    name: str,
    recorder: EmitRecorder,
    client: OpenCodeClient | AsyncOpenCodeClient,
    args: argparse.Namespace,
    first_run: int,
) -> dict[str, Any]:
    """Stream one warm-up and `args.prompts` measured replies in a new session."""
    with OpenCodeClient.direct(args.opencode_url) as setup:
        session_id = setup.create_session(f"latency {name}").id
        runs = range(first_run, first_run + args.prompts + 1)
        texts = [prompt_text(run, args.words, args.delay) for run in runs]
        if isinstance(client, OpenCodeClient):
            arrivals = [run_sync(client, session_id, text) for text in texts]
        else:
            arrivals = asyncio.run(run_all_async(client, session_id, texts))
        setup.delete_session(session_id)
    samples = [value for run in arrivals[1:] for value in latencies(recorder, run)]
    return summarise(name, samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--prompts", type=int, default=5, help="measured prompts per mode"
    )
    parser.add_argument(
        "--words", type=int, default=40, help="streamed words per reply"
    )
    parser.add_argument(
        "--delay", type=float, default=0.05, help="seconds between chunks"
    )
    args = parser.parse_args()

    recorder = EmitRecorder(create_app())
    results = []
    with ExitStack() as stack:
        model_url = stack.enter_context(serve_offline_model(recorder))
        server = stack.enter_context(OpenCodeServer(model_url=model_url))
        gateway_url = stack.enter_context(serve_gateway(server.port))
        args.opencode_url = server.url
        direct = stack.enter_context(OpenCodeClient.direct(server.url))
        gateway = stack.enter_context(OpenCodeClient(gateway_url, port=server.port))
        modes: list[tuple[str, OpenCodeClient | AsyncOpenCodeClient]] = [
            ("direct, sync", direct),
            ("direct, async", direct.to_async()),
            ("gateway, sync", gateway),
            ("gateway, async", gateway.to_async()),
        ]
        for number, (name, client) in enumerate(modes):
            first_run = number * (args.prompts + 1)
            results.append(measure(name, recorder, client, args, first_run))

    print(
        f"Chunk latency, offline model to stream_prompt(): {args.prompts} replies "
        f"of {args.words} chunks {args.delay:g} s apart per mode"
    )
    print(f"{'mode':<16}{'samples':>8}{'median ms':>11}{'p90 ms':>9}{'max ms':>9}")
    for row in results:
        print(
            f"{row['mode']:<16}{row['samples']:>8}{row['median']:>11.1f}"
            f"{row['p90']:>9.1f}{row['max']:>9.1f}"
        )
    met = all(row["median"] <= TARGET_MS for row in results)
    verdict = "met" if met else "NOT met"
    print(f"Target: median <= {TARGET_MS:g} ms in every mode: {verdict}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
