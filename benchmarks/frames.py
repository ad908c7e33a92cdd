"""
Time `messages_frame` against `pd.DataFrame.from_records` on flattened records.

The input is 100,000 synthetic messages over 1,000 sessions, shaped as the client
returns them through the gateway: `Message` objects whose extras carry the session,
parent, agent, model, tokens, cost, finish reason, completion time and raw parts.
The floor is `from_records` on the same messages already flattened into one dict
per row, with times already parsed, so it does no flattening, parsing or dtype work.
Both run in turn in one process, several times; the figures are medians.

Run: .venv/bin/python benchmarks/frames.py [--messages N] [--sessions N] [--repeat N]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]

from opencode_notebook.frames import messages_frame
from opencode_notebook.models import Message, format_timestamp

START = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
WORDS = (
    "the", "agent", "read", "the", "file", "and", "then", "ran", "the", "tests",
    "to", "check", "the", "change",
)  # fmt: skip


def synthetic_messages(count: int, sessions: int) -> list[Message]:
    """Build `count` messages over `sessions` sessions, alternating user/assistant."""
    per_session = count // sessions
    messages: list[Message] = []
    for session in range(sessions):
        session_id = f"ses_{session:026d}"
        base = START + timedelta(minutes=session)
        user_id = ""
        for index in range(per_session):
            number = session * per_session + index
            message_id = f"msg_{number:026d}"
            moment = base + timedelta(seconds=index * 3, microseconds=number % 997)
            text = " ".join(WORDS[: 4 + number % 9])
            extra: dict[str, Any] = {
                "sessionID": session_id,
                "agent": "build",
                "providerID": "local",
                "modelID": "echo",
            }
            if index % 2 == 0:
                role, user_id = "user", message_id
            else:
                role = "assistant"
                extra |= {
                    "parentID": user_id,
                    "tokens": {
                        "total": 40 + number % 50,
                        "input": 30 + number % 40,
                        "output": 10 + number % 10,
                        "reasoning": 0,
                        "cache": {"read": number % 3, "write": 0},
                    },
                    "cost": (number % 7) / 1000,
                    "finish": "stop" if index % 4 == 3 else "tool-calls",
                    "completedAt": format_timestamp(
                        moment + timedelta(milliseconds=800 + number % 400)
                    ),
                }
            extra["parts"] = [{"type": "text", "text": text}]
            messages.append(Message(message_id, role, text, moment, extra))
    return messages


def flattened_records(messages: list[Message]) -> list[dict[str, Any]]:
    """Flatten the messages by hand into the frame's columns, times parsed."""
    records = []
    for message in messages:
        extra = message.extra
        tokens = message.tokens or {}
        cache = tokens.get("cache") or {}
        completed = message.completed_at
        records.append(
            {
                "session_id": extra.get("sessionID"),
                "id": message.id,
                "role": message.role,
                "content": message.content,
                "timestamp": message.timestamp,
                "model": message.model,
                "agent": message.agent,
                "input_tokens": tokens.get("input"),
                "output_tokens": tokens.get("output"),
                "reasoning_tokens": tokens.get("reasoning"),
                "cache_read_tokens": cache.get("read"),
                "cache_write_tokens": cache.get("write"),
                "cost": message.cost,
                "completed_at": completed,
                "duration": completed - message.timestamp if completed else None,
                "parent_id": extra.get("parentID"),
                "finish": extra.get("finish"),
                "error": None,
            }
        )
    return records


def timed(function: Callable[[], object]) -> tuple[float, float]:
    """Run `function` once; return the wall-clock and the process CPU seconds."""
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - wall, time.process_time() - cpu


def peak_memory(function: Callable[[], object]) -> tuple[int, int]:
    """Return the tracemalloc peak and the Arrow bytes still held afterwards."""
    gc.collect()
    arrow_before = pa.total_allocated_bytes()
    tracemalloc.start()
    result = function()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    arrow_held = pa.total_allocated_bytes() - arrow_before
    del result
    return peak, arrow_held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--sessions", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    messages = synthetic_messages(args.messages, args.sessions)
    records = flattened_records(messages)

    def build_floor() -> pd.DataFrame:
        return pd.DataFrame.from_records(records)

    def build_frame() -> pd.DataFrame:
        return messages_frame(messages)

    # One untimed run each, so imports and caches do not count.
    build_floor()
    build_frame()
    floor_runs, frame_runs = [], []
    for _ in range(args.repeat):
        floor_runs.append(timed(build_floor))
        frame_runs.append(timed(build_frame))
    floor_peak, floor_arrow = peak_memory(build_floor)
    frame_peak, frame_arrow = peak_memory(build_frame)

    print(
        f"{len(messages):,} messages over {args.sessions:,} sessions, "
        f"{args.repeat} runs each, medians"
    )
    print(f"{'':40} {'wall':>9} {'CPU':>9}")
    for label, runs in (
        ("from_records on flattened records", floor_runs),
        ("messages_frame on Message objects", frame_runs),
    ):
        wall, cpu = (statistics.median(run[i] for run in runs) for i in (0, 1))
        print(f"{label:40} {wall * 1000:7.1f}ms {cpu * 1000:7.1f}ms")
    for label, measure in (("wall", 0), ("CPU", 1)):
        floor = statistics.median(run[measure] for run in floor_runs)
        frame = statistics.median(run[measure] for run in frame_runs)
        # Each pair ran back to back, so its ratio suffers less from load that
        # drifts over the run than the ratio of the two medians does.
        paired = statistics.median(
            mine[measure] / base[measure]
            for mine, base in zip(frame_runs, floor_runs, strict=True)
        )
        print(
            f"ratio messages_frame / from_records, {label}: {frame / floor:.2f} "
            f"of the medians, {paired:.2f} median of pairs (target <= 1.5)"
        )
    print(
        f"peak traced memory: from_records {floor_peak / 2**20:.1f} MiB, "
        f"messages_frame {frame_peak / 2**20:.1f} MiB "
        f"(ratio {frame_peak / floor_peak:.2f})"
    )
    print(
        f"Arrow memory held by the result: from_records {floor_arrow / 2**20:.1f} "
        f"MiB, messages_frame {frame_arrow / 2**20:.1f} MiB"
    )


if __name__ == "__main__":
    main()
