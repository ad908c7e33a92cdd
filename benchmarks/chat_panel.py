"""
Time how appending a message to the chat panel grows with the conversation.

A panel on a mock server that has no sessions receives 1,000 messages, one at a
time, through the same step that shows a reply. The script times the append of
message 10 and of message 1,000. It repeats the whole fill several times in one
process, and the figures are medians over the repetitions. The ratio of the two
medians should stay at or below 2, because an append adds one widget and does not
rebuild the history.

Every widget message is serialised to JSON, as a kernel would, but sent nowhere, so
the figures leave out the kernel's sockets and the browser's rendering.

Run: .venv/bin/python benchmarks/chat_panel.py [--messages N] [--repeat N]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import comm
import httpx
from comm.base_comm import BaseComm

from opencode_notebook import AsyncOpenCodeClient, Message
from opencode_notebook.chat import ChatPanel

START = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
REPLY = (
    "Here is how to read it:\n\n```python\nimport pandas as pd\n"
    "df = pd.read_csv('data.csv')\n```\n\nThen **check** the dtypes."
)


class SerializingComm(BaseComm):
    """A comm that encodes each message to JSON, as a kernel would, and drops it."""

    def publish_msg(
        self,
        msg_type: str,
        data: Any = None,
        metadata: Any = None,
        buffers: Any = None,
        **keys: Any,
    ) -> None:
        json.dumps({"msg_type": msg_type, "data": data, "metadata": metadata})


def make_message(number: int) -> Message:
    role = "user" if number % 2 else "assistant"
    content = f"Question {number}: how do I read a CSV file?" if number % 2 else REPLY
    extra = {} if number % 2 else {"agent": "build", "providerID": "local"}
    return Message(
        f"msg_{number:026d}", role, content, START + timedelta(seconds=number), extra
    )


def empty_server(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=[])


async def fill_once(count: int, marks: tuple[int, ...]) -> dict[int, float]:
    """Append `count` messages to a new panel and time the appends in `marks`."""
    client = AsyncOpenCodeClient(
        "http://gateway.test", port=3100, transport=httpx.MockTransport(empty_server)
    )
    panel = ChatPanel(client)
    await panel.wait()
    messages = [make_message(number) for number in range(1, count + 1)]
    times: dict[int, float] = {}
    for number, message in enumerate(messages, start=1):
        if number in marks:
            gc.collect()
            started = time.perf_counter()
            panel._append_message(message)
            times[number] = time.perf_counter() - started
        else:
            panel._append_message(message)
    await panel.aclose()
    await client.aclose()
    return times


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument(
        "--messages", type=int, default=1000, help="messages appended per fill"
    )
    parser.add_argument("--repeat", type=int, default=15, help="number of timed fills")
    args = parser.parse_args()
    if args.messages < 10:
        parser.error("--messages must be at least 10.")

    comm.create_comm = SerializingComm
    marks = (10, 100, args.messages)
    samples: dict[int, list[float]] = {mark: [] for mark in marks}
    await fill_once(min(args.messages, 100), marks)  # warm-up: imports and caches
    for _ in range(args.repeat):
        for mark, seconds in (await fill_once(args.messages, marks)).items():
            samples[mark].append(seconds)

    medians = {mark: statistics.median(values) for mark, values in samples.items()}
    print(f"{args.repeat} fills of {args.messages} messages; median append time:")
    for mark in marks:
        print(f"  message {mark:>5}: {medians[mark] * 1000:.3f} ms")
    ratio = medians[args.messages] / medians[10]
    verdict = "meets" if ratio <= 2 else "misses"
    print(f"ratio message {args.messages} / message 10: {ratio:.2f} ({verdict} <= 2)")


if __name__ == "__main__":
    asyncio.run(main())
