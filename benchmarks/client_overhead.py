"""
The client's overhead over a bare `httpx.Client`, side by side in one run.

Starts the local chain, creates sessions, then times list-sessions and get-session
through `OpenCodeClient` and through a bare `httpx.Client` that sends the same
request and decodes the JSON, alternating the two so that machine load hits both
alike. Prints the medians and their ratio (target: at most 1.10).

    .venv/bin/python benchmarks/client_overhead.py [--sessions 100] [--rounds 15]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import httpx

from opencode_notebook import OpenCodeClient
from opencode_notebook.stack import LocalChain

TARGET = 1.10


def _time_calls(call: Callable[[], object], repeat: int) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        call()
    return (time.perf_counter() - started) / repeat


def _compare(
    name: str,
    through_client: Callable[[], object],
    bare: Callable[[], object],
    rounds: int,
    repeat: int,
) -> float:
    client_times, bare_times, ratios = [], [], []
    for _ in range(rounds):
        client_time = _time_calls(through_client, repeat)
        bare_time = _time_calls(bare, repeat)
        client_times.append(client_time)
        bare_times.append(bare_time)
        ratios.append(client_time / bare_time)
    client_median = statistics.median(client_times)
    bare_median = statistics.median(bare_times)
    ratio = client_median / bare_median
    print(
        f"{name:<13} client {client_median * 1000:7.2f} ms   "
        f"bare httpx {bare_median * 1000:7.2f} ms   "
        f"ratio of medians {ratio:.3f}   median of paired ratios "
        f"{statistics.median(ratios):.3f}"
    )
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    with LocalChain() as chain:
        assert chain.gateway_url is not None
        port = chain.opencode_ports[0]
        with (
            OpenCodeClient(chain.gateway_url, port=port) as client,
            httpx.Client(base_url=chain.api_url(port), timeout=30) as bare,
        ):
            session_ids = [
                client.create_session(f"benchmark {n}").id for n in range(args.sessions)
            ]
            one = session_ids[len(session_ids) // 2]

            def bare_list() -> object:
                return bare.get("/sessions").json()

            def bare_get() -> object:
                return bare.get(f"/session/{one}").json()

            # Warm both connection pools and the gateway's upstream connection.
            for _ in range(5):
                client.list_sessions()
                bare_list()

            print(
                f"{args.sessions} sessions, {args.rounds} rounds of {args.repeat} "
                "calls each, through the gateway on loopback"
            )
            ratios = [
                _compare(
                    "list-sessions",
                    client.list_sessions,
                    bare_list,
                    args.rounds,
                    args.repeat,
                ),
                _compare(
                    "get-session",
                    lambda: client.get_session(one),
                    bare_get,
                    args.rounds,
                    args.repeat,
                ),
            ]
    verdict = "met" if max(ratios) <= TARGET else "not met"
    print(f"target: ratio at most {TARGET:.2f}: {verdict}")


if __name__ == "__main__":
    main()
