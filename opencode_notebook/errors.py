"""
Exceptions raised by the client.

The tree:

* OpenCodeError
  + TransportError - no response arrived.
    - ConnectError - nothing listens at the server's address.
    - RequestTimeoutError - the server did not respond in time.
      · PromptTimeoutError - a prompt did not finish in time; the reply may still come.
  + PromptAbortedError - the agent's turn was stopped before it finished.
  + APIError - the server returned an error response (`status`, `message`, `ref`).
    - BadRequestError - 400: invalid JSON, a field of the wrong type, unknown model.
    - AuthenticationError - 401: missing or wrong token or password.
    - PortNotAllowedError - 403: the gateway does not serve that port.
    - SessionNotFoundError - 404: no session with that id.
    - OpenCodeServerError - a 5xx error response.
      · InvalidPortError - the port is not an integer from 1 to 65535.
      · SessionIDRequiredError - the session id is empty or blank.
      · MessageTextRequiredError - the prompt text is missing or blank.
      · UpstreamError - 502: the OpenCode instance failed or cannot be reached.
      · UpstreamTimeoutError - 504: the OpenCode instance did not respond in time.
  + ProtocolError - a response arrived but is not what the API returns.

`SessionIDRequiredError` and `MessageTextRequiredError` are also `ValueError`s: the
client raises them itself, before sending anything, with `status` set to `None`.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "ConnectError",
    "InvalidPortError",
    "MessageTextRequiredError",
    "OpenCodeError",
    "OpenCodeServerError",
    "PortNotAllowedError",
    "PromptAbortedError",
    "PromptTimeoutError",
    "ProtocolError",
    "RequestTimeoutError",
    "SessionIDRequiredError",
    "SessionNotFoundError",
    "TransportError",
    "UpstreamError",
    "UpstreamTimeoutError",
    "error_from_response",
]

_SNIPPET_LENGTH = 200


class OpenCodeError(Exception):
    """Base class of every error raised by this package's client."""

    def __init__(self, message: str, *, request: httpx.Request | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request = request


class TransportError(OpenCodeError):
    """No response arrived from the server."""


class ConnectError(TransportError):
    """Nothing listens at the server's address."""


class RequestTimeoutError(TransportError):
    """The server did not respond in time."""


class PromptTimeoutError(RequestTimeoutError):
    """
    A prompt did not finish within the read timeout.

    The agent may still be working: its reply can be read later with
    `list_messages(session_id)`. Prompts are never retried automatically.
    """

    def __init__(
        self, message: str, *, session_id: str, request: httpx.Request | None = None
    ) -> None:
        super().__init__(message, request=request)
        self.session_id = session_id


class PromptAbortedError(OpenCodeError):
    """
    The agent's turn was stopped (`abort()`) before it finished.

    `partial_text` is the reply text written before the stop, and `message_id` the
    assistant message holding it (`None` when the turn stopped before one existed).
    The session stays usable.
    """

    def __init__(
        self,
        message: str,
        *,
        session_id: str,
        message_id: str | None = None,
        partial_text: str = "",
        request: httpx.Request | None = None,
    ) -> None:
        super().__init__(message, request=request)
        self.session_id = session_id
        self.message_id = message_id
        self.partial_text = partial_text


class ProtocolError(OpenCodeError):
    """A response arrived but does not have the shape the API defines."""

    def __init__(
        self,
        message: str,
        *,
        request: httpx.Request | None = None,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(message, request=request)
        self.response = response


class APIError(OpenCodeError):
    """
    The server returned an error response.

    `status` is the HTTP status (`None` when the client raised the error itself),
    `message` the server's message, and `ref` the error reference OpenCode adds to
    its unexplained failures (search the server log for it).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        ref: str | None = None,
        request: httpx.Request | None = None,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(message, request=request)
        self.status = status
        self.ref = ref
        self.response = response

    def __str__(self) -> str:
        text = self.message
        if self.ref:
            text += f" (ref {self.ref})"
        if self.status is not None and self.request is not None:
            text += (
                f" [HTTP {self.status} from {self.request.method} {self.request.url}]"
            )
        elif self.status is not None:
            text += f" [HTTP {self.status}]"
        return text


class BadRequestError(APIError):
    """The request was invalid: bad JSON, a wrong field type, an unknown model."""


class AuthenticationError(APIError):
    """The server requires credentials that were missing or wrong."""


class PortNotAllowedError(APIError):
    """The gateway does not serve the requested OpenCode port."""


class SessionNotFoundError(APIError):
    """No session has that id."""


class OpenCodeServerError(APIError):
    """The server failed with a 5xx status."""


class InvalidPortError(OpenCodeServerError):
    """The port is not an integer from 1 to 65535."""


class SessionIDRequiredError(OpenCodeServerError, ValueError):
    """The session id is empty or blank."""


class MessageTextRequiredError(OpenCodeServerError, ValueError):
    """The prompt text is missing, not a string, or blank."""


class UpstreamError(OpenCodeServerError):
    """The OpenCode instance behind the gateway failed or cannot be reached."""


class UpstreamTimeoutError(UpstreamError):
    """The OpenCode instance behind the gateway did not respond in time."""


# Messages the contract fixes, matched exactly, to the class raised for them.
_CONTRACT_MESSAGES: dict[str, type[APIError]] = {
    "Session not found": SessionNotFoundError,
    "Invalid port": InvalidPortError,
    "Session ID required": SessionIDRequiredError,
    "Message text required": MessageTextRequiredError,
    "Port not allowed": PortNotAllowedError,
}

_STATUS_CLASSES: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PortNotAllowedError,
    404: SessionNotFoundError,
    502: UpstreamError,
    504: UpstreamTimeoutError,
}


def _parse_error_body(response: httpx.Response) -> tuple[str, str | None]:
    """Return the message and error ref of an error body, whatever its shape."""
    try:
        body: Any = json.loads(response.content)
    except ValueError:
        body = None
    if isinstance(body, dict):
        data = body.get("data")
        if isinstance(body.get("message"), str):
            message = body["message"]
        elif isinstance(data, dict) and isinstance(data.get("message"), str):
            message = data["message"]
        elif isinstance(body.get("_tag"), str):
            message = body["_tag"]
        elif isinstance(body.get("name"), str):
            message = body["name"]
        else:
            message = json.dumps(body)[:_SNIPPET_LENGTH]
        ref = data.get("ref") if isinstance(data, dict) else body.get("ref")
        return message, ref if isinstance(ref, str) else None
    if body is not None:
        return json.dumps(body)[:_SNIPPET_LENGTH], None
    snippet = " ".join(response.text.split())[:_SNIPPET_LENGTH]
    reason = response.reason_phrase or "error"
    return (f"{reason}: {snippet}" if snippet else reason), None


def _error_class(status: int, message: str) -> type[APIError]:
    if message in _CONTRACT_MESSAGES:
        return _CONTRACT_MESSAGES[message]
    if status == 404 and message.startswith("Session not found"):
        return SessionNotFoundError
    if status == 404:
        return APIError
    if status in _STATUS_CLASSES:
        return _STATUS_CLASSES[status]
    if status >= 500:
        return OpenCodeServerError
    return APIError


def error_from_response(response: httpx.Response) -> APIError:
    """
    Build the exception for an error response.

    Reads the contract's `{"statusCode", "message"}`, OpenCode's `{"name", "data":
    {"message", "ref"}}` and `{"_tag"}` bodies, and falls back to a snippet of any
    other body, such as an HTML error page.
    """
    message, ref = _parse_error_body(response)
    error_class = _error_class(response.status_code, message)
    try:
        request: httpx.Request | None = response.request
    except RuntimeError:
        request = None
    return error_class(
        message,
        status=response.status_code,
        ref=ref,
        request=request,
        response=response,
    )
