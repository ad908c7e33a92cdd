"""
The magics' one-line messages for the client's errors.

`usage_error` turns an error of `OpenCodeClient` into an `OpenCodeUsageError` with
the next step: start the server, list the sessions, raise a timeout, set a token.
`opencode_notebook.magics` raises it, so the notebook shows one line.
"""

from __future__ import annotations

from opencode_notebook._magic_args import OpenCodeUsageError
from opencode_notebook.client import OpenCodeClient
from opencode_notebook.errors import (
    AuthenticationError,
    ConnectError,
    PortNotAllowedError,
    PromptAbortedError,
    PromptTimeoutError,
    ProtocolError,
    RequestTimeoutError,
    SessionNotFoundError,
)

__all__ = ["describe_server", "usage_error"]


def describe_server(client: OpenCodeClient) -> str:
    """Name the server `client` talks to, for messages."""
    if client.direct_mode:
        return f"OpenCode at {client.base_url}"
    return f"the gateway at {client.base_url} (OpenCode port {client.port})"


def usage_error(
    client: OpenCodeClient, exc: Exception, session_id: str | None
) -> OpenCodeUsageError:
    """Return the one-line usage error for `exc`, raised by a request of `client`."""
    if isinstance(exc, ConnectError):
        start = (
            "`opencode serve`"
            if client.direct_mode
            else ("`opencode-notebook up` (or `opencode-notebook serve`)")
        )
        return OpenCodeUsageError(
            f"Cannot connect to OpenCode at {client.base_url}: start it with "
            f"{start}, or connect elsewhere with %opencode_connect URL."
        )
    if isinstance(exc, SessionNotFoundError) and session_id is not None:
        return OpenCodeUsageError(
            f"Session not found: {session_id!r} on {describe_server(client)}. "
            "List the sessions with %opencode_sessions."
        )
    if isinstance(exc, PromptAbortedError):
        return OpenCodeUsageError(
            f"Stopped: the agent's turn in session {exc.session_id} was aborted "
            "before it finished. Its partial reply stays in the session: read "
            f"it with %opencode_messages {exc.session_id}."
        )
    if isinstance(exc, PromptTimeoutError):
        return OpenCodeUsageError(
            f"The prompt to session {exc.session_id} did not finish within "
            f"{client.prompt_timeout:g} s. The reply may still arrive: read it "
            f"later with %opencode_messages {exc.session_id}, or raise the limit "
            "with %config OpenCodeMagics.prompt_timeout = SECONDS."
        )
    if isinstance(exc, RequestTimeoutError):
        return OpenCodeUsageError(
            f"{exc.message} Raise the limit with "
            "%config OpenCodeMagics.timeout = SECONDS."
        )
    if isinstance(exc, AuthenticationError):
        variable = (
            "OPENCODE_SERVER_PASSWORD"
            if client.direct_mode
            else "OPENCODE_NOTEBOOK_TOKEN"
        )
        return OpenCodeUsageError(
            f"{exc} Set {variable} and run %opencode_connect again."
        )
    if isinstance(exc, PortNotAllowedError):
        return OpenCodeUsageError(
            f"Port not allowed: the gateway at {client.base_url} does not serve "
            f"OpenCode port {client.port}. Connect to an allowed port with "
            "%opencode_connect URL --port N."
        )
    if isinstance(exc, ProtocolError):
        return OpenCodeUsageError(
            f"{exc.message} Check that {client.base_url} is an opencode-notebook "
            "gateway, or use %opencode_connect URL --direct for opencode serve."
        )
    return OpenCodeUsageError(str(exc))
