"""
The `opencode-notebook` command.

* `serve` runs the gateway.
* `up` runs the whole local chain (offline model, OpenCode, gateway) until Ctrl-C.
* `demo` runs the example notebooks against a fresh local chain.

The command prints what runs where: printing is its job, unlike the library's.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence

__all__ = ["main"]

logger = logging.getLogger("opencode_notebook")


def _serve_address_problem(
    host: str, port: int, token: str | None, no_token_ok: bool
) -> str | None:
    """Return why the gateway must not bind this address, or `None`."""
    if not 0 <= port <= 65535:
        return f"Invalid --port {port}: use a port from 0 to 65535."
    loopback = host == "localhost" or host.startswith("127.") or host == "::1"
    if loopback or token or no_token_ok:
        return None
    # The gateway drives agents that run shell commands, so it is not put on a
    # network without a token unless the user says so.
    return (
        f"Binding {host} exposes the gateway beyond this machine: set --token "
        "(or $OPENCODE_NOTEBOOK_TOKEN), or pass --no-token-ok to serve without one."
    )


def _serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from opencode_notebook.gateway import GatewayConfig, create_app
        from opencode_notebook.gateway.app import parse_port_ranges
    except ImportError as exc:
        if exc.name not in ("uvicorn", "starlette"):
            raise
        print(
            f"The gateway needs extra packages ({exc.name} is missing): "
            "pip install 'opencode-notebook[gateway]'",
            file=sys.stderr,
        )
        return 2
    try:
        ports = parse_port_ranges(args.allow_port or ["3100"])
    except ValueError as exc:
        print(f"opencode-notebook serve: {exc}", file=sys.stderr)
        return 2
    token = args.token or os.environ.get("OPENCODE_NOTEBOOK_TOKEN") or None
    problem = _serve_address_problem(args.host, args.port, token, args.no_token_ok)
    if problem:
        print(f"opencode-notebook serve: {problem}", file=sys.stderr)
        return 2
    spawner = None
    if args.spawn:
        from opencode_notebook.gateway.spawn import Spawner

        spawner = Spawner(args.upstream_host)
    config = GatewayConfig(
        allowed_ports=ports,
        upstream_host=args.upstream_host,
        token=token,
        prompt_timeout=args.prompt_timeout,
        spawner=spawner,
        cors_origins=tuple(args.cors_origin or ()),
    )
    app = create_app(config)
    logger.info(
        "Gateway on http://%s:%d serving OpenCode ports %s",
        args.host,
        args.port,
        ", ".join(args.allow_port or ["3100"]),
    )
    # The package follows --log-level too, so that `warning` also drops the line
    # the client logs for every request the gateway sends to OpenCode.
    level = args.log_level.upper()
    logging.getLogger("opencode_notebook").setLevel(
        logging.DEBUG if level == "TRACE" else level
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _up(args: argparse.Namespace) -> int:
    from opencode_notebook.stack import LocalChain, StackError

    chain = LocalChain(
        opencode_ports=[args.opencode_port],
        gateway_port=args.port,
        token=args.token or os.environ.get("OPENCODE_NOTEBOOK_TOKEN") or None,
        chunk_delay=args.chunk_delay,
    )
    # Stop the chain on SIGTERM as on Ctrl-C, so no server is left behind.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        chain.start()
    except StackError as exc:
        print(f"opencode-notebook up: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"offline model (stand-in provider): {chain.offline_model_url}")
        print(f"OpenCode server:                   {chain.opencode_urls[0]}")
        print(f"gateway:                           {chain.gateway_url}")
        print(f"Sessions API:                      {chain.api_url()}")
        print("Press Ctrl-C to stop.", flush=True)
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        chain.stop()
    return 0


def _demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from opencode_notebook.demo import run_demo
    from opencode_notebook.stack import StackError

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(1))
    # The demo prints its own progress, which a log line per request would bury.
    logging.getLogger().setLevel(logging.WARNING)
    try:
        return run_demo(
            Path(args.output),
            notebook_dir=Path(args.notebooks) if args.notebooks else None,
            interactive=args.interactive,
        )
    except (StackError, FileNotFoundError, ImportError) as exc:
        print(f"opencode-notebook demo: {exc}", file=sys.stderr)
        return 1


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="opencode-notebook",
        description="OpenCode in Jupyter: run the Sessions API gateway or the "
        "local chain.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the Sessions API gateway")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind")
    serve.add_argument("--port", type=int, default=3000, help="port to bind")
    serve.add_argument(
        "--allow-port",
        action="append",
        metavar="PORTS",
        help="OpenCode port or range to serve, such as 3100 or 3100-3109 "
        "(repeatable; default 3100)",
    )
    serve.add_argument(
        "--upstream-host",
        default="127.0.0.1",
        help="host where the OpenCode instances listen",
    )
    serve.add_argument(
        "--token",
        help="require 'Authorization: Bearer TOKEN' on every request "
        "(default: $OPENCODE_NOTEBOOK_TOKEN)",
    )
    serve.add_argument(
        "--no-token-ok",
        action="store_true",
        help="allow binding a non-loopback address without a token",
    )
    serve.add_argument(
        "--spawn",
        action="store_true",
        help="start 'opencode serve' on an allowed port when nothing listens there",
    )
    serve.add_argument(
        "--prompt-timeout",
        type=float,
        default=600.0,
        help="seconds to wait for OpenCode to finish a prompt",
    )
    serve.add_argument(
        "--cors-origin",
        action="append",
        metavar="ORIGIN",
        help="let web pages from ORIGIN, such as http://localhost:8888, call the "
        "gateway (repeatable; default: no cross-origin calls)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug", "trace"],
        help="log level of uvicorn and of the gateway (default info: one line "
        "per request, and one per request sent to OpenCode)",
    )
    serve.set_defaults(handler=_serve)

    up = commands.add_parser(
        "up",
        help="run the local chain (offline model, OpenCode, gateway) until Ctrl-C",
    )
    up.add_argument("--port", type=int, default=3000, help="gateway port")
    up.add_argument(
        "--opencode-port", type=int, default=3100, help="OpenCode server port"
    )
    up.add_argument(
        "--token",
        help="token the gateway requires (default: $OPENCODE_NOTEBOOK_TOKEN)",
    )
    up.add_argument(
        "--chunk-delay",
        type=float,
        default=0.0,
        help="seconds the offline model waits before each streamed chunk",
    )
    up.set_defaults(handler=_up)

    demo = commands.add_parser(
        "demo",
        help="run the example notebooks against a fresh local chain",
    )
    demo.add_argument(
        "--output", default="build/demo", help="folder for the executed notebooks"
    )
    demo.add_argument("--notebooks", help="folder holding the example notebooks")
    demo.add_argument(
        "--interactive",
        action="store_true",
        help="leave the chain running and start JupyterLab instead",
    )
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
