"""Mapping of OpenCode's own JSON onto the contract, on recorded shapes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from opencode_notebook.models import Message, Session, format_timestamp, parse_timestamp
from opencode_notebook.native import (
    message_to_contract,
    reply_to_contract,
    session_to_contract,
    text_of_parts,
)

NATIVE_SESSION = {
    "id": "ses_dbe5dfa4bffe6teAR0fsLIvSzA",
    "slug": "misty-eagle",
    "projectID": "global",
    "directory": "/tmp/project",
    "cost": 0,
    "tokens": {
        "input": 5,
        "output": 5,
        "reasoning": 0,
        "cache": {"read": 0, "write": 0},
    },
    "title": "child of one",
    "version": "1.18.33",
    "time": {"created": 1772532000000, "updated": 1772532060000},
    "permission": [{"permission": "bash", "pattern": "*", "action": "ask"}],
}

USER_ENTRY = {
    "info": {
        "id": "msg_241a3be09",
        "sessionID": "ses_1",
        "role": "user",
        "time": {"created": 1772532000000},
        "agent": "build",
        "model": {"providerID": "local", "modelID": "echo"},
    },
    "parts": [
        {"id": "prt_1", "type": "text", "text": "hello world"},
        {
            "id": "prt_2",
            "type": "text",
            "text": "Called the Read tool",
            "synthetic": True,
        },
    ],
}

TOOL_STEP_ENTRY = {
    "info": {
        "id": "msg_241a3be27",
        "sessionID": "ses_1",
        "role": "assistant",
        "parentID": "msg_241a3be09",
        "time": {"created": 1772532000031, "completed": 1772532000885},
        "modelID": "echo",
        "providerID": "local",
        "mode": "build",
        "agent": "build",
        "cost": 0,
        "tokens": {"total": 10, "input": 5, "output": 5, "reasoning": 0},
        "finish": "tool-calls",
    },
    "parts": [
        {"id": "prt_3", "type": "step-start", "snapshot": "abc"},
        {
            "id": "prt_4",
            "type": "tool",
            "tool": "bash",
            "callID": "call_1",
            "state": {"status": "completed", "input": {"command": "echo hi"}},
        },
        {"id": "prt_5", "type": "step-finish", "reason": "tool-calls"},
    ],
}


def test_session_timestamps_from_milliseconds() -> None:
    session = session_to_contract(NATIVE_SESSION)

    assert session["createdAt"] == "2026-03-03T10:00:00.000Z"
    assert session["updatedAt"] == "2026-03-03T10:01:00.000Z"


def test_session_keeps_useful_extras_only() -> None:
    session = session_to_contract(NATIVE_SESSION)

    assert session["slug"] == "misty-eagle"
    assert session["tokens"]["input"] == 5
    assert "permission" not in session
    assert "time" not in session
    assert "parentID" not in session


def test_session_parent_from_metadata() -> None:
    forked = {**NATIVE_SESSION, "metadata": {"parentID": "ses_parent"}}

    assert session_to_contract(forked)["parentID"] == "ses_parent"


def test_session_parent_from_subtask_child() -> None:
    child = {**NATIVE_SESSION, "parentID": "ses_native_parent"}

    assert session_to_contract(child)["parentID"] == "ses_native_parent"


def test_session_without_updated_time() -> None:
    native = {**NATIVE_SESSION, "time": {"created": 1772532000000}}

    session = session_to_contract(native)

    assert session["updatedAt"] == session["createdAt"]


def test_session_round_trips_through_model() -> None:
    contract = session_to_contract(NATIVE_SESSION)

    assert Session.from_json(contract).to_json() == contract


def test_user_message_skips_synthetic_parts() -> None:
    message = message_to_contract(USER_ENTRY)

    assert message["content"] == "hello world"
    assert message["role"] == "user"
    assert message["timestamp"] == "2026-03-03T10:00:00.000Z"
    assert message["providerID"] == "local"
    assert message["modelID"] == "echo"
    assert message["agent"] == "build"


def test_tool_step_message_has_empty_content() -> None:
    message = message_to_contract(TOOL_STEP_ENTRY)

    assert message["content"] == ""
    assert message["finish"] == "tool-calls"
    assert message["completedAt"] == "2026-03-03T10:00:00.885Z"
    assert message["parentID"] == "msg_241a3be09"
    assert [part["type"] for part in message["parts"]] == [
        "step-start",
        "tool",
        "step-finish",
    ]


def test_message_with_missing_fields() -> None:
    entry = {"info": {"id": "msg_x", "role": "assistant", "time": {"created": 0}}}

    message = message_to_contract(entry)

    assert message["content"] == ""
    assert message["parts"] == []
    assert "completedAt" not in message
    assert Message.from_json(message).timestamp == datetime(1970, 1, 1, tzinfo=UTC)


def test_text_parts_joined_in_order() -> None:
    parts = [
        {"type": "text", "text": "first"},
        {"type": "reasoning", "text": "thinking"},
        {"type": "text", "text": "second"},
        {"type": "text", "text": "skipped", "ignored": True},
    ]

    assert text_of_parts(parts) == "first\n\nsecond"


def test_failed_assistant_message_reports_error() -> None:
    entry: dict[str, Any] = {
        "info": {
            **TOOL_STEP_ENTRY["info"],
            "error": {"name": "APIError", "data": {"message": "bad request from llm"}},
        },
        "parts": [],
    }

    assert message_to_contract(entry)["error"] == "APIError: bad request from llm"


def test_reply_from_assistant_message() -> None:
    entry = {
        "info": {**TOOL_STEP_ENTRY["info"], "finish": "stop"},
        "parts": [{"type": "text", "text": "Echo: hello"}],
    }

    reply = reply_to_contract(entry)

    assert reply["messageId"] == "msg_241a3be27"
    assert reply["response"] == "Echo: hello"
    assert reply["finish"] == "stop"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("2026-03-03T10:00:00Z", id="no-fraction"),
        pytest.param("2026-03-03T10:00:00.000Z", id="milliseconds"),
        pytest.param("2026-03-03T11:00:00+01:00", id="offset"),
        pytest.param("2026-03-03T10:00:00", id="naive"),
        pytest.param(1772532000000, id="epoch-ms"),
        pytest.param(1772532000, id="epoch-seconds"),
        pytest.param(1772532000000.0, id="epoch-ms-float"),
    ],
)
def test_timestamps_parse_to_same_instant(value: object) -> None:
    assert parse_timestamp(value) == datetime(2026, 3, 3, 10, tzinfo=UTC)


def test_timestamp_keeps_microseconds() -> None:
    parsed = parse_timestamp("2026-03-03T10:00:00.123456Z")

    assert parsed.microsecond == 123456
    assert format_timestamp(parsed) == "2026-03-03T10:00:00.123Z"


@pytest.mark.parametrize("value", ["yesterday", "", None, True, float("nan")])
def test_invalid_timestamp(value: object) -> None:
    with pytest.raises(ValueError, match="Invalid timestamp"):
        parse_timestamp(value)
