"""An IPython shell with the OpenCode magics loaded, for the magics' tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from opencode_notebook import OpenCodeClient
from opencode_notebook.magics import OpenCodeMagics

Handler = Callable[[httpx.Request], httpx.Response]


@contextmanager
def loaded_shell() -> Iterator[InteractiveShell]:
    """Yield the shared shell with history off and the extension freshly loaded."""
    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=config)
    names = set(shell.user_ns)
    shell.run_line_magic("load_ext", "opencode_notebook")
    try:
        yield shell
    finally:
        shell.run_line_magic("unload_ext", "opencode_notebook")
        # `%config` writes to the shared shell's config, which the next load reads.
        shell.config.pop("OpenCodeMagics", None)
        for name in set(shell.user_ns) - names:
            del shell.user_ns[name]


def magics_of(shell: InteractiveShell) -> OpenCodeMagics:
    magics = shell.magics_manager.registry["OpenCodeMagics"]
    assert isinstance(magics, OpenCodeMagics)
    return magics


class Recorder:
    """A mock transport handler that records every request it receives."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.handler is None:
            raise AssertionError(f"Unexpected request: {request.method} {request.url}")
        return self.handler(request)


def mock_client(recorder: Recorder) -> OpenCodeClient:
    """A gateway client whose requests all go to `recorder`, never to a socket."""
    return OpenCodeClient(
        "http://gateway.test", port=3100, transport=httpx.MockTransport(recorder)
    )
