"""
OpenCode's own JSON turned into the Sessions API's JSON.

`opencode serve` writes timestamps as epoch milliseconds, keeps a message's text in
typed parts, and records a fork's parent nowhere. These functions build the
contract's objects from it, keeping the extra fields that analysis needs. Both the
gateway and the client's direct mode use them, so the two return the same objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from opencode_notebook.models import format_timestamp, parse_timestamp

__all__ = [
    "PARENT_METADATA_KEY",
    "REPLY_FIELDS",
    "assistant_error",
    "message_to_contract",
    "reply_to_contract",
    "session_to_contract",
    "text_of_parts",
]

# OpenCode's fork copies the history but does not record the parent, so the parent's
# id is kept in the session's metadata under this key.
PARENT_METADATA_KEY = "parentID"

# The fields of an assistant message that a prompt reply keeps besides its id and text.
REPLY_FIELDS = (
    "sessionID",
    "agent",
    "providerID",
    "modelID",
    "tokens",
    "cost",
    "finish",
    "completedAt",
)

# Text parts are joined with a blank line, the way they read in OpenCode's own views.
_PART_SEPARATOR = "\n\n"

_SESSION_EXTRAS = (
    "slug",
    "directory",
    "projectID",
    "version",
    "agent",
    "model",
    "cost",
    "tokens",
    "summary",
)


def _iso(milliseconds: object) -> str | None:
    if milliseconds is None:
        return None
    return format_timestamp(parse_timestamp(milliseconds))


def _time(data: Mapping[str, Any]) -> Mapping[str, Any]:
    time = data.get("time")
    return time if isinstance(time, Mapping) else {}


def session_to_contract(session: Mapping[str, Any]) -> dict[str, Any]:
    """
    Build a contract Session from an OpenCode session.

    `parentID` is the fork's parent recorded in the metadata, or else OpenCode's own
    `parentID` (set on sessions that a subtask created).
    """
    time = _time(session)
    metadata = session.get("metadata")
    parent = (
        metadata.get(PARENT_METADATA_KEY) if isinstance(metadata, Mapping) else None
    )
    parent = parent or session.get("parentID")
    created = _iso(time.get("created"))
    result: dict[str, Any] = {"id": session["id"], "title": session.get("title", "")}
    if parent:
        result["parentID"] = parent
    result["createdAt"] = created
    result["updatedAt"] = _iso(time.get("updated")) or created
    for key in _SESSION_EXTRAS:
        if key in session:
            result[key] = session[key]
    if time.get("archived") is not None:
        result["archivedAt"] = _iso(time["archived"])
    return result


def text_of_parts(parts: Iterable[Mapping[str, Any]]) -> str:
    """
    Join the text parts of a message in order.

    Parts the server injects (`synthetic`) or marks as `ignored` are left
    out, so a user message reads as the user wrote it.
    """
    texts = [
        str(part.get("text", ""))
        for part in parts
        if part.get("type") == "text"
        and not part.get("synthetic")
        and not part.get("ignored")
    ]
    return _PART_SEPARATOR.join(text for text in texts if text)


def assistant_error(info: Mapping[str, Any]) -> str | None:
    """Return `Name: message` for an assistant message that failed, else `None`."""
    error = info.get("error")
    if not isinstance(error, Mapping):
        return None
    name = error.get("name") or "Error"
    data = error.get("data")
    message = data.get("message") if isinstance(data, Mapping) else None
    return f"{name}: {message}" if message else str(name)


def _model_fields(info: Mapping[str, Any]) -> dict[str, Any]:
    # Assistant messages carry providerID/modelID; user messages a `model` object.
    model = info.get("model")
    if isinstance(model, Mapping):
        return {"providerID": model.get("providerID"), "modelID": model.get("modelID")}
    if info.get("modelID"):
        return {"providerID": info.get("providerID"), "modelID": info.get("modelID")}
    return {}


def message_to_contract(entry: Mapping[str, Any]) -> dict[str, Any]:
    """
    Build a contract Message from an OpenCode `{info, parts}` entry.

    Besides `id`, `role`, `content` and `timestamp`, the result keeps `sessionID`,
    `parentID` (the user message that an assistant message replies to), `agent`,
    `providerID`, `modelID`, `tokens`, `cost`, `finish`, `completedAt`, `error` and
    the raw `parts`, where OpenCode gives them.
    """
    info = entry.get("info", {})
    parts = entry.get("parts") or []
    time = _time(info)
    result: dict[str, Any] = {
        "id": info["id"],
        "role": info.get("role", ""),
        "content": text_of_parts(parts),
        "timestamp": _iso(time.get("created")),
    }
    for key in ("sessionID", "parentID", "agent"):
        if info.get(key):
            result[key] = info[key]
    result.update(_model_fields(info))
    for key in ("tokens", "cost", "finish"):
        if key in info:
            result[key] = info[key]
    if time.get("completed") is not None:
        result["completedAt"] = _iso(time["completed"])
    error = assistant_error(info)
    if error:
        result["error"] = error
    result["parts"] = list(parts)
    return result


def reply_to_contract(entry: Mapping[str, Any]) -> dict[str, Any]:
    """
    Build the contract's prompt reply from the assistant message OpenCode returned.

    Model, agent, tokens, cost, finish reason and completion time are kept as extra
    fields.
    """
    message = message_to_contract(entry)
    reply: dict[str, Any] = {"messageId": message["id"], "response": message["content"]}
    for key in REPLY_FIELDS:
        if key in message:
            reply[key] = message[key]
    return reply
