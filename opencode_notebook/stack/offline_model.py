"""The offline model: a deterministic stand-in for a model provider.

It serves the part of the OpenAI chat completions API that OpenCode's
`@ai-sdk/openai-compatible` provider uses, on a loopback port:

- `GET /v1/models` lists one model, `echo`.
- `POST /v1/chat/completions` returns `Echo: <text of the last user message>`,
  streamed (SSE `data:` chunks ending with `data: [DONE]`) or in one JSON body.
  A streamed reply is sent in word-sized chunks with a settable delay before
  each chunk, and ends with a usage chunk when `stream_options.include_usage`
  is set. A reply in one JSON body comes after the same total delay. Token
  counts are word counts, not a real tokenizer's.
- `GET /v1/requests` returns the most recent chat completion requests as
  `{"requests": [{"time": <epoch s>, "body": <request JSON>}, ...]}`, oldest
  first (a bounded log, for tests). `DELETE /v1/requests` clears it.

A request whose system prompt contains "You are a title generator" gets a
title: the first six words of the last user message, without directives.

Directives in the last user message drive the reply. They are removed from the
echoed text and are ignored in title requests:

- `[[delay S]]` sets the delay before each chunk of this reply to S seconds.
- `[[tool NAME: ARGS]]` makes the reply a call of tool NAME. ARGS is a JSON
  object of arguments, or for `bash` the command itself, as in
  `[[tool bash: echo hi]]`. Once the request carries the tool's result (a
  `tool` message after the last user message), the reply is
  `Done: <tool output>`, so one prompt creates two assistant messages.
- `[[fail]]` makes the request fail with HTTP 400 and an OpenAI-style error
  body.
- `[[reason]]` streams `reasoning_content` (`Thinking about: <text>`) before
  the reply.

Run it alone with `python -m opencode_notebook.stack.offline_model --port P`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

try:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "The offline model needs Starlette and uvicorn: install them with "
        "`pip install 'opencode-notebook[gateway]'`."
    ) from exc

from .offline_replies import MODEL_ID, Reply, chunks, plan_reply

__all__ = ["MODEL_ID", "OfflineModel", "create_app"]

logger = logging.getLogger("opencode_notebook.stack.offline_model")


@dataclass
class _State:
    chunk_delay: float
    log: collections.deque[dict[str, Any]]
    lock: threading.Lock = field(default_factory=threading.Lock)
    counter: Iterator[int] = field(default_factory=lambda: itertools.count(1))


def _error(status: int, message: str, code: str) -> JSONResponse:
    error = {
        "message": message,
        "type": "invalid_request_error",
        "param": None,
        "code": code,
    }
    return JSONResponse({"error": error}, status_code=status)


def create_app(chunk_delay: float = 0.0, max_logged_requests: int = 200) -> Starlette:
    """Build the offline model's ASGI app.

    `app.state.offline_model` contains the settings, and its `chunk_delay`
    may be changed while the app runs.
    """
    state = _State(
        chunk_delay=chunk_delay,
        log=collections.deque(maxlen=max_logged_requests),
    )

    async def models(request: Request) -> Response:
        model = {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "local"}
        return JSONResponse({"object": "list", "data": [model]})

    async def requests(request: Request) -> Response:
        with state.lock:
            if request.method == "DELETE":
                state.log.clear()
            logged = list(state.log)
        return JSONResponse({"requests": logged})

    async def completions(request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            logger.info("offline model rejected a request body that is not JSON")
            return _error(400, "The request body is not valid JSON.", "invalid_json")
        with state.lock:
            state.log.append({"time": time.time(), "body": body})
        if not isinstance(body, dict):
            logger.info("offline model rejected a request body that is not an object")
            return _error(400, "The request body must be a JSON object.", "invalid")
        try:
            reply = plan_reply(body, state.chunk_delay)
        except ValueError as exc:
            logger.info("offline model rejected a request: %s", exc)
            return _error(400, str(exc), "invalid_request")
        if reply.fail:
            logger.info("offline model returned HTTP 400 for a [[fail]] directive")
            return _error(
                400, "The offline model failed as the [[fail]] directive asked.", "fail"
            )
        number = next(state.counter)
        if body.get("stream"):
            include_usage = bool(
                (body.get("stream_options") or {}).get("include_usage")
            )
            return StreamingResponse(
                _stream(reply, number, include_usage),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        await asyncio.sleep(reply.delay * len(chunks(reply.content)))
        return JSONResponse(_completion(reply, number))

    app = Starlette(
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/requests", requests, methods=["GET", "DELETE"]),
            Route("/v1/chat/completions", completions, methods=["POST"]),
        ]
    )
    app.state.offline_model = state
    return app


def _tool_call_json(reply: Reply, number: int) -> dict[str, Any]:
    assert reply.tool is not None
    return {
        "id": f"call_offline_{number}",
        "type": "function",
        "function": {
            "name": reply.tool.name,
            "arguments": json.dumps(reply.tool.arguments),
        },
    }


def _usage(reply: Reply) -> dict[str, int]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }


def _completion(reply: Reply, number: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content or None}
    if reply.reasoning:
        message["reasoning_content"] = reply.reasoning
    if reply.tool:
        message["tool_calls"] = [_tool_call_json(reply, number)]
    return {
        "id": f"chatcmpl-offline-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": MODEL_ID,
        "choices": [
            {"index": 0, "message": message, "finish_reason": reply.finish_reason}
        ],
        "usage": _usage(reply),
    }


async def _stream(reply: Reply, number: int, include_usage: bool) -> AsyncIterator[str]:
    created = int(time.time())

    def event(choices: list[dict[str, Any]], **extra: Any) -> str:
        chunk = {
            "id": f"chatcmpl-offline-{number}",
            "object": "chat.completion.chunk",
            "created": created,
            "model": MODEL_ID,
            "choices": choices,
            **extra,
        }
        return f"data: {json.dumps(chunk)}\n\n"

    def delta(content: dict[str, Any], finish: str | None = None) -> str:
        return event([{"index": 0, "delta": content, "finish_reason": finish}])

    yield delta({"role": "assistant", "content": ""})
    for piece in chunks(reply.reasoning):
        await asyncio.sleep(reply.delay)
        yield delta({"reasoning_content": piece})
    for piece in chunks(reply.content):
        await asyncio.sleep(reply.delay)
        yield delta({"content": piece})
    if reply.tool:
        await asyncio.sleep(reply.delay)
        call = _tool_call_json(reply, number)
        arguments = call["function"]["arguments"]
        call["function"]["arguments"] = ""
        yield delta({"tool_calls": [{"index": 0, **call}]})
        yield delta(
            {"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]}
        )
    yield delta({}, reply.finish_reason)
    if include_usage:
        yield event([], usage=_usage(reply))
    yield "data: [DONE]\n\n"


def _listening_socket(host: str, port: int) -> socket.socket:
    """Bind and listen on `host:port`, or raise `OSError` naming the address."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        message = f"The offline model cannot listen on {host}:{port} ({exc.strerror})."
        raise OSError(exc.errno, message) from None
    return sock


class OfflineModel:
    """The offline model, served by uvicorn in a background thread.

    Use it as a context manager, or call `start()` and `stop()`. Without a
    `port` it listens on a free loopback port. `chunk_delay` is the delay in
    seconds before each streamed chunk, and it can be changed while the
    server runs.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        chunk_delay: float = 0.0,
        max_logged_requests: int = 200,
    ) -> None:
        self.host = "127.0.0.1"
        self._requested_port = port or 0
        self._app = create_app(chunk_delay, max_logged_requests)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The port the server listens on, available after `start()`."""
        if self._port is None:
            raise RuntimeError("The offline model is not running; call start().")
        return self._port

    @property
    def url(self) -> str:
        """The server's root URL, e.g. `http://127.0.0.1:4000`."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (ending in `/v1`) to give a provider."""
        return f"{self.url}/v1"

    @property
    def chunk_delay(self) -> float:
        """Delay in seconds before each streamed chunk."""
        delay: float = self._app.state.offline_model.chunk_delay
        return delay

    @chunk_delay.setter
    def chunk_delay(self, value: float) -> None:
        self._app.state.offline_model.chunk_delay = value

    def requests(self) -> list[dict[str, Any]]:
        """Return the logged request bodies, oldest first."""
        state: _State = self._app.state.offline_model
        with state.lock:
            return [entry["body"] for entry in state.log]

    def start(self, timeout: float = 10.0) -> OfflineModel:
        """Bind the port and serve in a background thread until ready."""
        if self._thread is not None:
            raise RuntimeError("The offline model is already running.")
        sock = _listening_socket(self.host, self._requested_port)
        self._socket = sock
        self._port = sock.getsockname()[1]

        config = uvicorn.Config(
            self._app,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name=f"offline-model-{self.port}",
            daemon=True,
        )
        self._thread.start()

        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                port = self._port
                self.stop()
                raise RuntimeError(
                    f"The offline model did not start on port {port} within "
                    f"{timeout:g} s."
                )
            time.sleep(0.01)
        logger.info("offline model started on %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving and release the port, if the server is running."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
            logger.info("offline model stopped on port %s", self._port)
        self._server = self._thread = self._socket = None
        self._port = None

    def __enter__(self) -> OfflineModel:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """Run the offline model in the foreground until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m opencode_notebook.stack.offline_model",
        description="Serve the offline model, a deterministic stand-in for a "
        "model provider, on 127.0.0.1.",
    )
    parser.add_argument(
        "--port", type=int, default=0, help="port to listen on (default: a free one)"
    )
    parser.add_argument(
        "--chunk-delay",
        type=float,
        default=0.0,
        help="delay in seconds before each streamed chunk (default: 0)",
    )
    args = parser.parse_args(argv)
    try:
        sock = _listening_socket("127.0.0.1", args.port)
    except OSError as exc:
        parser.error(exc.strerror or str(exc))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(args.chunk_delay), log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    print(f"offline model listening on http://127.0.0.1:{port}/v1", flush=True)
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
