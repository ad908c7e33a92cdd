"""
The OpenAPI 3.1 document of the Sessions API, as one gateway serves it.

The gateway serves it at `GET /api/openapi.json`. It lists every route with every
response the gateway can send, error rows included: each error is the contract's
`{"statusCode", "message"}` object, and the 500 rows name the exact messages the
contract fixes. A gateway started with a token documents the bearer scheme and the
401 response on every operation.
"""

from __future__ import annotations

import copy
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opencode_notebook.gateway.app import GatewayConfig

__all__ = ["build_document"]

_JSON = "application/json"

_INVALID_PORT = "Invalid port"
_SESSION_ID_REQUIRED = "Session ID required"
_MESSAGE_TEXT_REQUIRED = "Message text required"

# A string with at least one character that is not whitespace. The gateway tests
# blankness with Python's `str.strip()`, whose whitespace differs from `\s` in
# JSON Schema's ECMA-262 regexes (U+001C-U+001F and U+0085 in, U+FEFF out), so
# the characters are listed.
_NOT_BLANK = (
    "[^\\u0009-\\u000d\\u001c-\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a"
    "\\u2028\\u2029\\u202f\\u205f\\u3000]"
)

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "description": "Every error response: `statusCode` equals the HTTP status.",
        "required": ["statusCode", "message"],
        "properties": {
            "statusCode": {"type": "integer"},
            "message": {"type": "string"},
        },
        "additionalProperties": False,
    },
    "Session": {
        "type": "object",
        "required": ["id", "title", "createdAt", "updatedAt"],
        "properties": {
            "id": {"type": "string", "examples": ["ses_abc123"]},
            "title": {"type": "string"},
            "parentID": {
                "type": "string",
                "description": "The session this one was forked from; absent on "
                "a session that is not a fork.",
            },
            "createdAt": {"$ref": "#/components/schemas/Timestamp"},
            "updatedAt": {"$ref": "#/components/schemas/Timestamp"},
        },
    },
    "Message": {
        "type": "object",
        "description": "A message; the gateway may add fields such as the model, "
        "agent, token counts, cost and raw parts.",
        "required": ["id", "role", "content", "timestamp"],
        "properties": {
            "id": {"type": "string"},
            "role": {"type": "string", "enum": ["user", "assistant"]},
            "content": {
                "type": "string",
                "description": "The message's text parts joined in order.",
            },
            "timestamp": {"$ref": "#/components/schemas/Timestamp"},
        },
    },
    "Timestamp": {
        "type": "string",
        "format": "date-time",
        "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$",
        "examples": ["2026-03-03T10:00:00.000Z"],
    },
    "MessageList": {
        "type": "object",
        "required": ["messages"],
        "properties": {
            "messages": {
                "type": "array",
                "description": "Oldest first.",
                "items": {"$ref": "#/components/schemas/Message"},
            }
        },
    },
    "PromptReply": {
        "type": "object",
        "required": ["messageId", "response"],
        "properties": {
            "messageId": {
                "type": "string",
                "description": "The assistant message the prompt created.",
            },
            "response": {"type": "string", "description": "Its text."},
        },
    },
    "Success": {
        "type": "object",
        "required": ["success"],
        "properties": {"success": {"const": True}},
    },
    "CreateSession": {
        "type": "object",
        "description": "Unknown fields are ignored, and null is the same as absent.",
        "properties": {
            "title": {"type": ["string", "null"]},
            "parentID": {
                "type": ["string", "null"],
                "description": "Fork this session: the new one starts with a copy "
                "of its conversation.",
            },
        },
    },
    "Model": {
        "type": ["object", "null"],
        "required": ["providerID", "modelID"],
        "properties": {
            "providerID": {"type": "string", "pattern": _NOT_BLANK},
            "modelID": {"type": "string", "pattern": _NOT_BLANK},
        },
    },
    "Prompt": {
        "type": "object",
        "description": "Unknown fields are ignored, and a null model or agent is "
        "the same as an absent one.",
        "required": ["text"],
        "properties": {
            "text": {"type": "string", "minLength": 1, "pattern": _NOT_BLANK},
            "model": {"$ref": "#/components/schemas/Model"},
            "agent": {
                "type": ["string", "null"],
                "pattern": _NOT_BLANK,
                "examples": ["build", "plan"],
            },
        },
    },
    "StreamEvent": {
        "type": "object",
        "description": "One server-sent event; its `data` is a JSON object.",
        "required": ["data"],
        "properties": {
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {
                    "type": "object",
                    "required": ["type"],
                    "properties": {
                        "type": {
                            "enum": [
                                "start",
                                "delta",
                                "tool",
                                "step",
                                "retry",
                                "reply",
                                "aborted",
                                "error",
                            ]
                        }
                    },
                },
            },
            "event": {"type": "string"},
            "id": {"type": "string"},
        },
    },
    "Health": {
        "type": "object",
        "required": ["healthy", "ports"],
        "properties": {
            "healthy": {"const": True},
            "ports": {
                "type": "array",
                "description": "The first 100 OpenCode ports this gateway serves.",
                "items": {"type": "integer"},
            },
        },
    },
}


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {_JSON: {"schema": schema}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(
    description: str,
    schema: str | dict[str, Any],
    links: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body = _ref(schema) if isinstance(schema, str) else schema
    response = {"description": description, "content": _json_content(body)}
    if links:
        response["links"] = links
    return response


# Links from a created session to the operations on it.
_SESSION_LINKS = {
    name: {
        "operationId": operation_id,
        "parameters": {"port": "$request.path.port", "id": "$response.body#/id"},
    }
    for name, operation_id in [
        ("GetSession", "getSession"),
        ("ListMessages", "listMessages"),
        ("SendPrompt", "sendPrompt"),
        ("StreamPrompt", "streamPrompt"),
        ("AbortTurn", "abortTurn"),
        ("DeleteSession", "deleteSession"),
    ]
}


def _error(
    status: int, description: str, messages: list[str] | None = None
) -> dict[str, Any]:
    """Describe an error row: the error object with this status and messages."""
    properties: dict[str, Any] = {"statusCode": {"const": status}}
    if messages:
        properties["message"] = {"enum": messages}
    schema = {"allOf": [_ref("Error"), {"properties": properties}]}
    return {"description": description, "content": _json_content(schema)}


def _port_parameter(config: GatewayConfig) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": 65535}
    served = sorted(config.allowed_ports)[:10]
    if served:
        schema["examples"] = served
    return {
        "name": "port",
        "in": "path",
        "required": True,
        "description": "The port of the OpenCode instance behind the gateway.",
        "schema": schema,
    }


_SESSION_ID_PARAMETER = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "The session id, such as `ses_...`.",
    "schema": {"type": "string", "minLength": 1, "pattern": _NOT_BLANK},
}


def _operation(
    config: GatewayConfig,
    operation_id: str,
    summary: str,
    ok: dict[str, Any],
    *,
    session: bool = False,
    body: str | None = None,
) -> dict[str, Any]:
    """Describe one operation under `/api/opencode/{port}` with all its responses."""
    server_errors = [_INVALID_PORT]
    parameters = [_port_parameter(config)]
    if session:
        server_errors.append(_SESSION_ID_REQUIRED)
        parameters.append(_SESSION_ID_PARAMETER)
    if body == "Prompt":
        server_errors.append(_MESSAGE_TEXT_REQUIRED)

    responses: dict[str, Any] = {"200": ok}
    if body is not None:
        responses["400"] = _error(
            400,
            "The body is not valid JSON, a field has the wrong type, or the model "
            "or agent is unknown; the message names it.",
        )
    if config.token:
        responses["401"] = _unauthorized()
    responses["403"] = _error(
        403,
        "The port is valid but this gateway does not serve it.",
        ["Port not allowed"],
    )
    if session or body == "CreateSession":
        responses["404"] = _error(
            404, "No session with that id (or no such parent).", ["Session not found"]
        )
    if body is not None:
        responses["413"] = _error(
            413, f"The body is larger than {config.body_limit} bytes."
        )
    responses["500"] = _error(
        500, "The port, session id or prompt text is invalid.", server_errors
    )
    responses["502"] = _error(
        502,
        "No OpenCode instance answers on that port, or it failed; the message "
        "names the port and carries OpenCode's own message.",
    )
    responses["504"] = _error(504, "The OpenCode instance did not answer in time.")

    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "parameters": parameters,
        "responses": responses,
    }
    if body is not None:
        operation["requestBody"] = {
            "required": body == "Prompt",
            "content": _json_content(_ref(body)),
        }
    return operation


def _unauthorized() -> dict[str, Any]:
    response = _error(401, "The bearer token is missing or wrong.")
    response["headers"] = {
        "WWW-Authenticate": {"schema": {"type": "string", "const": "Bearer"}}
    }
    return response


def _package_version() -> str:
    try:
        return version("opencode-notebook")
    except PackageNotFoundError:
        return "unknown"


def build_document(config: GatewayConfig) -> dict[str, Any]:
    """Build the OpenAPI 3.1 document of a gateway with these settings."""
    session_list = {"type": "array", "items": _ref("Session")}
    prefix = "/api/opencode/{port}"
    paths: dict[str, Any] = {
        f"{prefix}/sessions": {
            "get": _operation(
                config,
                "listSessions",
                "List every session, newest update first",
                _ok("Every session of the instance.", session_list),
            )
        },
        f"{prefix}/session/create": {
            "post": _operation(
                config,
                "createSession",
                "Create a session, or fork one with parentID",
                _ok("The new session.", "Session", links=_SESSION_LINKS),
                body="CreateSession",
            )
        },
        f"{prefix}/session/{{id}}": {
            "get": _operation(
                config,
                "getSession",
                "Get one session",
                _ok("The session.", "Session"),
                session=True,
            ),
            "delete": _operation(
                config,
                "deleteSession",
                "Delete a session",
                _ok("The session is gone.", "Success"),
                session=True,
            ),
        },
        f"{prefix}/session/{{id}}/messages": {
            "get": _operation(
                config,
                "listMessages",
                "List a session's messages, oldest first",
                _ok("The messages.", "MessageList"),
                session=True,
            )
        },
        f"{prefix}/session/{{id}}/prompt": {
            "post": _operation(
                config,
                "sendPrompt",
                "Send a prompt and wait until the agent has finished",
                _ok("The reply.", "PromptReply"),
                session=True,
                body="Prompt",
            )
        },
        f"{prefix}/session/{{id}}/prompt/stream": {
            "post": _operation(
                config,
                "streamPrompt",
                "Send a prompt and stream the agent's progress",
                {
                    "description": "Server-sent events, one JSON object per "
                    "`data:` line, from `start` to `reply`, `aborted` or `error` "
                    "(see docs/streaming.md).",
                    # In OpenAPI 3.1 the schema of an event stream describes
                    # each event.
                    "content": {"text/event-stream": {"schema": _ref("StreamEvent")}},
                },
                session=True,
                body="Prompt",
            )
        },
        f"{prefix}/session/{{id}}/abort": {
            "post": _operation(
                config,
                "abortTurn",
                "Stop the turn running in a session",
                _ok("The turn is stopped, or none was running.", "Success"),
                session=True,
            )
        },
    }
    endpoints: list[tuple[str, str, str | dict[str, Any]]] = [
        ("/api/health", "Check that the gateway runs", "Health"),
        ("/api/openapi.json", "This document", {"type": "object"}),
    ]
    for path, summary, schema in endpoints:
        responses: dict[str, Any] = {"200": _ok(summary, schema)}
        if config.token:
            responses["401"] = _unauthorized()
        paths[path] = {"get": {"summary": summary, "responses": responses}}

    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "opencode-notebook Sessions API",
            "version": _package_version(),
            "description": "The Sessions API in front of `opencode serve` "
            'instances. Every error is `{"statusCode": N, "message": ...}` '
            "with HTTP status N.",
        },
        "paths": paths,
        "components": {"schemas": copy.deepcopy(_SCHEMAS)},
    }
    if config.token:
        document["components"]["securitySchemes"] = {
            "bearerAuth": {"type": "http", "scheme": "bearer"}
        }
        document["security"] = [{"bearerAuth": []}]
    return document
