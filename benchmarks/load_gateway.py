"""
Load the gateway, OpenCode directly and nginx in front of OpenCode, side by side.

The script starts the offline model and one real `opencode serve`, fills it with
`--sessions` sessions, then starts the gateway (`opencode-notebook serve`, as a
user would) and nginx as a plain reverse proxy, both in front of that one
OpenCode instance. `wrk` drives each front end in turn from a separate process:
`--clients` connections for `--duration` seconds, half of the requests listing
every session and half getting one session. Rounds rotate the order of the
front ends, and the figures printed are the medians over the rounds.

A second pass sends one request at a time to each front end, listing only and
then getting only, so that the latency the gateway adds to each operation is
measured without queueing. The CPU time that the front end
and OpenCode spend per request is read from their processes around each run,
because on a shared machine it varies far less than throughput does. The
gateway's resident memory is read before the first round and after the last.

The load generator is `wrk` (Debian package `wrk`). It is written in C, keeps
every connection open and spends far less CPU per request than the servers it
drives. That matters on a machine where the generator, OpenCode and the front end
share two cores.

    python benchmarks/load_gateway.py --clients 32 --duration 20 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from opencode_notebook import OpenCodeClient
from opencode_notebook.stack import LocalChain, free_port
from opencode_notebook.stack.process import stop_process_group, wait_until_ready

NGINX = "/usr/sbin/nginx"
# The operations timed one request at a time, each on its own.
OPERATIONS = ("list", "get")

NGINX_CONFIG = """\
worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    upstream opencode {{
        server 127.0.0.1:{upstream};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://opencode;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffers 32 16k;
            proxy_max_temp_file_size 0;
        }}
    }}
}}
"""

# Runs in each wrk thread: alternate between the listing and one session, and
# print the summary as one JSON line for this script to read.
WRK_SCRIPT = """\
local paths = {{{paths}}}
local next_path = 0
request = function()
    next_path = next_path % #paths + 1
    return wrk.format("GET", paths[next_path])
end
done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        'WRK_JSON {{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, '
        .. '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d}}\\n',
        summary.requests, summary.duration, e.connect, e.read, e.write, e.status,
        e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class Target:
    """A front end: its base URL, the two paths it serves and its processes."""

    name: str
    base_url: str
    list_path: str
    session_path: str
    process: psutil.Process | None = None

    def paths(self, session_ids: Sequence[str], operation: str) -> list[str]:
        """Return the request paths of `operation`: "mixed", "list" or "get"."""
        paths = []
        for session_id in session_ids:
            if operation in ("mixed", "list"):
                paths.append(self.list_path)
            if operation in ("mixed", "get"):
                paths.append(self.session_path.format(id=session_id))
        return paths


@dataclass(frozen=True)
class LoadResult:
    """The figures of one wrk run."""

    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    front_cpu_ms: float
    opencode_cpu_ms: float


def cpu_seconds(process: psutil.Process | None) -> float:
    """Return the CPU time of a process and all its children, in seconds."""
    if process is None:
        return 0.0
    total = 0.0
    for member in [process, *process.children(recursive=True)]:
        try:
            times = member.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def run_wrk(
    target: Target,
    session_ids: Sequence[str],
    opencode: psutil.Process,
    *,
    operation: str,
    clients: int,
    threads: int,
    duration: float,
    folder: Path,
) -> LoadResult:
    """Drive one front end with wrk and return its figures."""
    paths = target.paths(session_ids, operation)
    quoted = ", ".join(json.dumps(path) for path in paths)
    script = folder / f"{target.name}.lua"
    script.write_text(WRK_SCRIPT.format(paths=quoted))
    command = ["wrk", f"-t{threads}", f"-c{clients}", f"-d{duration:g}s"]
    command += ["--timeout", "10s", "-s", str(script), target.base_url]

    front_before, opencode_before = cpu_seconds(target.process), cpu_seconds(opencode)
    finished = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=duration + 60
    )
    front_used = cpu_seconds(target.process) - front_before
    opencode_used = cpu_seconds(opencode) - opencode_before

    line = next(
        line for line in finished.stdout.splitlines() if line.startswith("WRK_JSON ")
    )
    data = json.loads(line.removeprefix("WRK_JSON "))
    errors = sum(data[key] for key in ("connect", "read", "write", "status", "timeout"))
    requests = max(data["requests"], 1)
    return LoadResult(
        requests_per_second=data["requests"] / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        errors=errors,
        front_cpu_ms=1000 * front_used / requests,
        opencode_cpu_ms=1000 * opencode_used / requests,
    )


@contextmanager
def gateway_process(
    opencode_port: int, extra: Sequence[str], folder: Path
) -> Iterator[tuple[str, psutil.Process]]:
    """Run `opencode-notebook serve` for one OpenCode port; yield URL and process."""
    port = free_port()
    command = [sys.executable, "-m", "opencode_notebook.cli", "serve"]
    command += ["--port", str(port), "--allow-port", str(opencode_port), *extra]
    with (folder / "gateway-output.txt").open("wb") as output:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{url}/api/health", process, 30)
        yield url, psutil.Process(process.pid)
    finally:
        stop_process_group(process)


@contextmanager
def nginx_process(
    opencode_port: int, folder: Path
) -> Iterator[tuple[str, psutil.Process]]:
    """Run nginx as a reverse proxy to one OpenCode port; yield URL and process."""
    port = free_port()
    nginx_folder = folder / "nginx"
    nginx_folder.mkdir()
    config = nginx_folder / "nginx.conf"
    config.write_text(
        NGINX_CONFIG.format(folder=nginx_folder, upstream=opencode_port, port=port)
    )
    command = [NGINX, "-p", str(nginx_folder), "-c", str(config)]
    command += ["-e", str(nginx_folder / "error.log")]
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{url}/global/health", process, 30)
        yield url, psutil.Process(process.pid)
    finally:
        stop_process_group(process)


def seed_sessions(opencode_url: str, count: int) -> list[str]:
    """Create sessions until the instance has `count`; return their ids."""
    with OpenCodeClient.direct(opencode_url) as client:
        existing = client.list_sessions()
        for number in range(len(existing), count):
            client.create_session(title=f"Load test session {number:03d}")
        return [session.id for session in client.list_sessions()]


def check_targets(targets: Sequence[Target], session_ids: Sequence[str]) -> None:
    """Check that every front end lists the same sessions before loading it."""
    for target in targets:
        listed = httpx.get(target.base_url + target.list_path, timeout=30)
        single = httpx.get(
            target.base_url + target.session_path.format(id=session_ids[0]), timeout=30
        )
        if listed.status_code != 200 or len(listed.json()) != len(session_ids):
            raise RuntimeError(f"{target.name} lists {listed.text[:200]!r}")
        if single.status_code != 200:
            raise RuntimeError(f"{target.name} gets {single.text[:200]!r}")


def median_result(results: Sequence[LoadResult]) -> LoadResult:
    return LoadResult(
        requests_per_second=statistics.median(r.requests_per_second for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        errors=sum(r.errors for r in results),
        front_cpu_ms=statistics.median(r.front_cpu_ms for r in results),
        opencode_cpu_ms=statistics.median(r.opencode_cpu_ms for r in results),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32, help="open connections")
    parser.add_argument(
        "--duration", type=float, default=20, help="seconds per front end per round"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the load")
    parser.add_argument(
        "--sessions", type=int, default=100, help="sessions on the instance"
    )
    parser.add_argument(
        "--latency-duration",
        type=float,
        default=5,
        help="seconds of one-at-a-time requests per front end per round",
    )
    parser.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        help="extra argument for `opencode-notebook serve`, such as "
        "--serve-arg=--log-level=warning (repeatable)",
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2

    folder = Path(tempfile.mkdtemp(prefix="load-gateway-"))
    try:
        return run(args, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run(args: argparse.Namespace, folder: Path) -> int:
    with LocalChain(gateway=False) as chain:
        opencode_port = chain.opencode_ports[0]
        opencode = psutil.Process(chain.opencode_servers[0].pid)
        session_ids = seed_sessions(chain.opencode_urls[0], args.sessions)
        with (
            gateway_process(opencode_port, args.serve_arg, folder) as (gateway, gw),
            nginx_process(opencode_port, folder) as (nginx, nginx_master),
        ):
            prefix = f"/api/opencode/{opencode_port}"
            direct_url = chain.opencode_urls[0]
            targets = [
                Target("direct", direct_url, "/session?limit=1000", "/session/{id}"),
                Target(
                    "nginx", nginx, "/session?limit=1000", "/session/{id}", nginx_master
                ),
                Target(
                    "gateway",
                    gateway,
                    f"{prefix}/sessions",
                    prefix + "/session/{id}",
                    gw,
                ),
            ]
            check_targets(targets, session_ids)

            def load(
                target: Target, operation: str, clients: int, duration: float
            ) -> LoadResult:
                return run_wrk(
                    target,
                    session_ids,
                    opencode,
                    operation=operation,
                    clients=clients,
                    threads=min(clients, 2),
                    duration=duration,
                    folder=folder,
                )

            for target in targets:
                load(target, "mixed", args.clients, 2)
            rss_before = gw.memory_info().rss
            loaded: dict[str, list[LoadResult]] = {t.name: [] for t in targets}
            single: dict[str, list[LoadResult]] = {
                f"{t.name} {operation}": [] for operation in OPERATIONS for t in targets
            }
            for number in range(args.rounds):
                order = targets[number % 3 :] + targets[: number % 3]
                for target in order:
                    result = load(target, "mixed", args.clients, args.duration)
                    loaded[target.name].append(result)
                for operation in OPERATIONS:
                    for target in order:
                        result = load(target, operation, 1, args.latency_duration)
                        single[f"{target.name} {operation}"].append(result)
            rss_after = gw.memory_info().rss
    report(args, len(session_ids), loaded, single, rss_before, rss_after)
    return 0


def print_table(title: str, results: dict[str, list[LoadResult]]) -> None:
    print(f"\n{title}")
    print(
        f"{'front end':<14} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} "
        f"{'front CPU ms/req':>16} {'OpenCode CPU ms/req':>19}"
    )
    for name, runs in results.items():
        result = median_result(runs)
        front = "-" if name.startswith("direct") else f"{result.front_cpu_ms:.2f}"
        print(
            f"{name:<14} {result.requests_per_second:>7.0f} {result.p50_ms:>8.2f} "
            f"{result.p99_ms:>8.2f} {result.errors:>6} {front:>16} "
            f"{result.opencode_cpu_ms:>19.2f}"
        )


def added_p50(single: dict[str, list[LoadResult]], front: str, operation: str) -> float:
    """Return the median over rounds of a front end's p50 minus the direct p50."""
    pairs = zip(
        single[f"{front} {operation}"], single[f"direct {operation}"], strict=True
    )
    return statistics.median(
        proxied.p50_ms - direct.p50_ms for proxied, direct in pairs
    )


def report(
    args: argparse.Namespace,
    session_count: int,
    loaded: dict[str, list[LoadResult]],
    single: dict[str, list[LoadResult]],
    rss_before: int,
    rss_after: int,
) -> None:
    print(
        f"{session_count} sessions on one OpenCode instance. Medians of "
        f"{args.rounds} rounds."
    )
    print_table(
        f"{args.clients} clients, {args.duration:g} s per front end per round, half "
        "the requests listing every session and half getting one:",
        loaded,
    )
    print_table(
        f"1 client, {args.latency_duration:g} s per front end and operation per round:",
        single,
    )

    ratios = [
        gateway.requests_per_second / nginx.requests_per_second
        for gateway, nginx in zip(loaded["gateway"], loaded["nginx"], strict=True)
    ]
    print()
    print(
        f"gateway / nginx throughput: median {statistics.median(ratios):.2f} "
        f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)})"
    )
    for operation in OPERATIONS:
        print(
            f"p50 added over direct at 1 client, {operation}: gateway "
            f"{added_p50(single, 'gateway', operation):+.2f} ms, nginx "
            f"{added_p50(single, 'nginx', operation):+.2f} ms"
        )
    growth = (rss_after - rss_before) / 2**20
    print(
        f"gateway RSS: {rss_before / 2**20:.1f} MiB before the rounds, "
        f"{rss_after / 2**20:.1f} MiB after ({growth:+.1f} MiB)"
    )
    runs = [r for results in (loaded, single) for rs in results.values() for r in rs]
    print(f"errors: {sum(r.errors for r in runs)} in {len(runs)} runs")


if __name__ == "__main__":
    sys.exit(main())
