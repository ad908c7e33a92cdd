"""
Fuzz the gateway with schemathesis against its own OpenAPI document.

The script starts a local chain (offline model, a real `opencode serve`, the
gateway) and reads `GET /api/openapi.json`. It pins the `port` parameter to the
one OpenCode port the gateway serves, because other ports only get a 403. Then
it runs `schemathesis run` on loopback with every check, bounded by
`--max-examples` per operation and `--max-time` for the whole run, and prints
the requests sent, the count of each status and every failure found.

Exit status 0 means that every response was documented, matched its schema,
and that no 5xx other than the contract's was sent: 500 with "Invalid port",
"Session ID required" or "Message text required", and 502 or 504.

The same file is the schemathesis hooks module of the run: importing it
registers the `contract_errors` check, which replaces `not_a_server_error`.

    python benchmarks/fuzz_gateway.py --max-examples 200 --max-time 300
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import schemathesis

CONTRACT_500_MESSAGES = frozenset(
    {"Invalid port", "Session ID required", "Message text required"}
)
# A schema-valid prompt may still name a model or agent the instance does not have.
POSITIVE_400_PREFIXES = ("Unknown model", "Unknown agent")

CONFIG = """\
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "400", "403", "404"]

[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "413", "500"]
"""


@schemathesis.check
def contract_errors(
    ctx: schemathesis.CheckContext,
    response: schemathesis.Response,
    case: schemathesis.Case[Any],
) -> bool | None:
    """Allow only the contract's error bodies, and only its server errors."""
    status = response.status_code
    if status < 400:
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        snippet = response.text[:200]
        raise AssertionError(f"Error {status} is not JSON: {snippet!r}") from None
    if not isinstance(body, dict) or set(body) != {"statusCode", "message"}:
        raise AssertionError(f"Error {status} is not the contract's shape: {body!r}")
    if body["statusCode"] != status:
        raise AssertionError(f"Error {status} has statusCode {body['statusCode']!r}")
    message = body["message"]
    if status == 500 and message not in CONTRACT_500_MESSAGES:
        raise AssertionError(f"500 outside the contract: {message!r}")
    if status > 500 and status not in (502, 504):
        raise AssertionError(f"{status} outside the contract: {message!r}")
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    if positive and status == 400 and not message.startswith(POSITIVE_400_PREFIXES):
        raise AssertionError(f"Schema-valid request rejected with 400: {message!r}")
    return None


def _pinned_document(gateway_url: str, port: int) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(
        f"{gateway_url}/api/openapi.json", timeout=30
    ).json()
    for operations in document["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "port":
                    parameter["schema"] = {"type": "integer", "enum": [port]}
    return document


def _status_counts(har_path: Path) -> collections.Counter[int]:
    counts: collections.Counter[int] = collections.Counter()
    if not har_path.exists():
        return counts
    entries = json.loads(har_path.read_text())["log"]["entries"]
    for entry in entries:
        counts[entry["response"]["status"]] += 1
    return counts


def _opencode_errors(chain: Any, limit: int = 20) -> list[str]:
    """Return the last ERROR lines of the chain's OpenCode log, to explain a 502."""
    log_dir = chain.opencode_servers[0].log_dir
    lines: list[str] = []
    for path in sorted(log_dir.glob("*.log")) if log_dir else []:
        lines += [
            line[:500] for line in path.read_text().splitlines() if "ERROR" in line
        ]
    return lines[-limit:]


def run_fuzz(
    gateway_url: str,
    port: int,
    *,
    max_examples: int,
    max_time: int,
    seed: int | None,
    workdir: Path,
) -> tuple[int, dict[str, Any], collections.Counter[int], str]:
    """Run schemathesis once; return its exit code, JSON report, statuses and output."""
    document = workdir / "openapi.json"
    document.write_text(json.dumps(_pinned_document(gateway_url, port)))
    config = workdir / "schemathesis.toml"
    config.write_text(CONFIG)
    report = workdir / "report.json"
    har = workdir / "report.har"

    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "run",
        str(document),
        "--url",
        gateway_url,
        "--checks",
        "all",
        "--exclude-checks",
        "not_a_server_error",
        "--max-examples",
        str(max_examples),
        "--max-time",
        str(max_time),
        # One worker: with two, CPython 3.11's `ast.parse` (which hypothesis calls
        # to describe lambdas) failed with "AST constructor recursion depth
        # mismatch" in schemathesis 4.32.5.
        "--workers",
        "1",
        "--request-timeout",
        "60",
        "--report",
        "json,har",
        "--report-json-path",
        str(report),
        "--report-har-path",
        str(har),
    ]
    if seed is not None:
        command += ["--seed", str(seed)]

    env = dict(os.environ, SCHEMATHESIS_HOOKS=str(Path(__file__).resolve()))
    env["NO_COLOR"] = "1"
    # schemathesis keeps a cache folder in its working directory.
    finished = subprocess.run(
        command,
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=max_time + 300,
    )

    summary = json.loads(report.read_text()) if report.exists() else {}
    output = finished.stdout + finished.stderr
    return finished.returncode, summary, _status_counts(har), output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--max-examples",
        type=int,
        default=200,
        help="test cases per operation and phase (default 200)",
    )
    parser.add_argument(
        "--max-time",
        type=int,
        default=300,
        help="seconds for the whole schemathesis run (default 300)",
    )
    parser.add_argument("--seed", type=int, help="seed, to repeat a run")
    args = parser.parse_args(argv)

    from opencode_notebook.stack import LocalChain

    workdir = Path(tempfile.mkdtemp(prefix="fuzz-gateway-"))
    started = time.monotonic()
    try:
        with LocalChain() as chain:
            assert chain.gateway_url is not None
            code, summary, statuses, output = run_fuzz(
                chain.gateway_url,
                chain.opencode_ports[0],
                max_examples=args.max_examples,
                max_time=args.max_time,
                seed=args.seed,
                workdir=workdir,
            )
            opencode_errors = _opencode_errors(chain)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started

    print(output)
    print(f"schemathesis exit code: {code}")
    print(f"seed: {summary.get('seed')}")
    print(
        f"requests: {sum(statuses.values())} in {elapsed:.0f} s (chain start included)"
    )
    for status, count in sorted(statuses.items()):
        print(f"  HTTP {status}: {count}")
    if opencode_errors:
        print("errors in OpenCode's log:")
        print("\n".join(opencode_errors))
    return code


if __name__ == "__main__":
    sys.exit(main())
