"""
Time one prompt, then ten prompts to ten sessions at once, through the gateway.

The script starts a local chain whose offline model waits `--chunk-delay` seconds
before each chunk of its reply. A prompt of `--words` words therefore takes about
`(words + 1) * chunk_delay` seconds of model time, 2.1 s by default, which is a
short reply for a real model. Each round times one prompt alone, then `--prompts`
prompts sent together with `AsyncOpenCodeClient` and `asyncio.gather`, each to a
session of its own, and prints the ratio of the two. The target is a ratio of at
most 1.5: prompts to different sessions run side by side. The CPU time OpenCode
spends per prompt is printed too, because on two cores it bounds the ratio.

    python benchmarks/concurrency.py --prompts 10 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from dataclasses import dataclass

import psutil

from opencode_notebook import AsyncOpenCodeClient
from opencode_notebook.stack import LocalChain

TARGET_RATIO = 1.5


@dataclass(frozen=True)
class Burst:
    """Prompts sent at once: wall time, and OpenCode's CPU time per prompt."""

    seconds: float
    opencode_cpu_per_prompt: float


def cpu_seconds(process: psutil.Process) -> float:
    """Return the CPU time of a process and all its children, in seconds."""
    total = 0.0
    for member in [process, *process.children(recursive=True)]:
        try:
            times = member.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


async def timed_prompts(
    client: AsyncOpenCodeClient,
    opencode: psutil.Process,
    count: int,
    text: str,
    label: str,
) -> Burst:
    """Send `count` prompts at once, each to a new session, and time them."""
    sessions = [
        await client.create_session(title=f"{label} {number}")
        for number in range(count)
    ]
    cpu_before = cpu_seconds(opencode)
    started = time.perf_counter()
    replies = await asyncio.gather(*(client.prompt(s.id, text) for s in sessions))
    elapsed = time.perf_counter() - started
    cpu_used = cpu_seconds(opencode) - cpu_before
    for reply in replies:
        if not reply.response.startswith("Echo: "):
            raise RuntimeError(f"Unexpected reply {reply.response[:80]!r}")
    return Burst(elapsed, cpu_used / count)


async def measure(
    chain: LocalChain, args: argparse.Namespace
) -> list[tuple[Burst, Burst]]:
    assert chain.gateway_url is not None
    text = " ".join(f"word{number}" for number in range(args.words))
    opencode = psutil.Process(chain.opencode_servers[0].pid)
    port = chain.opencode_ports[0]
    async with AsyncOpenCodeClient(chain.gateway_url, port=port) as client:
        # The first prompt of a fresh instance boots its project: keep it out.
        await timed_prompts(client, opencode, 1, text, "warm-up")
        rounds = []
        for number in range(args.rounds):
            alone = await timed_prompts(client, opencode, 1, text, f"{number} alone")
            together = await timed_prompts(
                client, opencode, args.prompts, text, f"{number} together"
            )
            rounds.append((alone, together))
    return rounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--prompts", type=int, default=10, help="prompts sent at once (default 10)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument(
        "--words", type=int, default=20, help="words in each prompt (default 20)"
    )
    parser.add_argument(
        "--chunk-delay",
        type=float,
        default=0.1,
        help="seconds the offline model waits before each chunk (default 0.1)",
    )
    args = parser.parse_args(argv)

    with LocalChain(chunk_delay=args.chunk_delay) as chain:
        rounds = asyncio.run(measure(chain, args))

    model_time = (args.words + 1) * args.chunk_delay
    print(
        f"offline model: {args.chunk_delay:g} s before each chunk; each reply has "
        f"{args.words + 1} chunks, so about {model_time:.2f} s of model time"
    )
    heading = f"{args.prompts} prompts s"
    print(
        f"{'round':>5} {'1 prompt s':>11} {heading:>12} {'ratio':>6} "
        f"{'OpenCode CPU s/prompt (1, n)':>29}"
    )
    for number, (alone, together) in enumerate(rounds):
        print(
            f"{number:>5} {alone.seconds:>11.2f} {together.seconds:>12.2f} "
            f"{together.seconds / alone.seconds:>6.2f} "
            f"{alone.opencode_cpu_per_prompt:>20.2f}, "
            f"{together.opencode_cpu_per_prompt:.2f}"
        )
    ratio = statistics.median(t.seconds / a.seconds for a, t in rounds)
    verdict = "met" if ratio <= TARGET_RATIO else "not met"
    print(
        f"median ratio: {ratio:.2f} (target at most {TARGET_RATIO}: {verdict}); "
        f"median of 1 prompt {statistics.median(o.seconds for o, _ in rounds):.2f} "
        f"s, of {args.prompts} prompts "
        f"{statistics.median(m.seconds for _, m in rounds):.2f} s"
    )
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
