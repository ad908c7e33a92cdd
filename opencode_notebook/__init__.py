"""
OpenCode in Jupyter: a client for the Sessions API, IPython magics, a chat panel,
conversation analysis, and a gateway that serves the API in front of `opencode serve`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opencode_notebook.client import AsyncOpenCodeClient, OpenCodeClient
from opencode_notebook.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConnectError,
    InvalidPortError,
    MessageTextRequiredError,
    OpenCodeError,
    OpenCodeServerError,
    PortNotAllowedError,
    PromptAbortedError,
    PromptTimeoutError,
    ProtocolError,
    RequestTimeoutError,
    SessionIDRequiredError,
    SessionNotFoundError,
    TransportError,
    UpstreamError,
    UpstreamTimeoutError,
)
from opencode_notebook.models import Message, PromptReply, Session

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

__all__ = [
    "APIError",
    "AsyncOpenCodeClient",
    "AuthenticationError",
    "BadRequestError",
    "ConnectError",
    "InvalidPortError",
    "Message",
    "MessageTextRequiredError",
    "OpenCodeClient",
    "OpenCodeError",
    "OpenCodeServerError",
    "PortNotAllowedError",
    "PromptAbortedError",
    "PromptReply",
    "PromptTimeoutError",
    "ProtocolError",
    "RequestTimeoutError",
    "Session",
    "SessionIDRequiredError",
    "SessionNotFoundError",
    "TransportError",
    "UpstreamError",
    "UpstreamTimeoutError",
    "load_ipython_extension",
    "unload_ipython_extension",
]

__version__ = "0.1.0"


def load_ipython_extension(shell: InteractiveShell) -> None:
    """Register the magics: `%load_ext opencode_notebook`."""
    from opencode_notebook.magics import load_ipython_extension as load

    load(shell)


def unload_ipython_extension(shell: InteractiveShell) -> None:
    """Remove the magics: `%unload_ext opencode_notebook`."""
    from opencode_notebook.magics import unload_ipython_extension as unload

    unload(shell)


def __getattr__(name: str) -> Any:
    # The chat panel pulls in ipywidgets, so it is imported on first use.
    if name == "ChatPanel":
        from opencode_notebook.chat import ChatPanel

        return ChatPanel
    raise AttributeError(f"module 'opencode_notebook' has no attribute {name!r}")
