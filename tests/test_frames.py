"""Sessions and messages frames: columns, dtypes, order, parsing and round trips."""

from __future__ import annotations

import asyncio
import io
import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from opencode_notebook import (
    AsyncOpenCodeClient,
    Message,
    OpenCodeClient,
    Session,
    SessionNotFoundError,
    fetch,
)
from opencode_notebook.frames import (
    MESSAGE_DTYPES,
    SESSION_DTYPES,
    aall_messages_frame,
    all_messages_frame,
    messages_frame,
    read_messages_csv,
    read_messages_parquet,
    read_sessions_csv,
    read_sessions_parquet,
    sessions_frame,
)

UTC_NS = "datetime64[ns, UTC]"
ROLE_DTYPE = pd.CategoricalDtype(["user", "assistant"])
PLUS_ONE = timezone(timedelta(hours=1))


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text).tz_convert("UTC")


def expected_frame(
    columns: dict[str, list[Any]], dtypes: dict[str, Any] | Any
) -> pd.DataFrame:
    """Build a frame with every documented column; unnamed ones are all missing."""
    rows = len(next(iter(columns.values())))
    data = {}
    for name, dtype in dict(dtypes).items():
        values = columns.get(name, [None] * rows)
        if dtype == "category":
            dtype = ROLE_DTYPE
        data[name] = pd.Series(values, dtype=dtype)
    return pd.DataFrame(data)


def expected_sessions(columns: dict[str, list[Any]]) -> pd.DataFrame:
    return expected_frame(columns, SESSION_DTYPES)


def expected_messages(columns: dict[str, list[Any]]) -> pd.DataFrame:
    return expected_frame(columns, MESSAGE_DTYPES)


# Recorded shapes: the contract's JSON, the gateway's extras, OpenCode's own JSON.

CONTRACT_SESSIONS = [
    {
        "id": "ses_b",
        "title": "Refactor the parser",
        "createdAt": "2026-03-01T09:00:00.000Z",
        "updatedAt": "2026-03-01T09:30:00.000Z",
    },
    {
        "id": "ses_c",
        "title": "Refactor the parser (fork #1)",
        "parentID": "ses_b",
        "createdAt": "2026-03-03T08:00:00.000Z",
        "updatedAt": "2026-03-03T08:10:00.000Z",
    },
    {
        "id": "ses_a",
        "title": "Debug API endpoints",
        "createdAt": "2026-03-02T10:00:00.000Z",
        "updatedAt": "2026-03-02T10:45:00.000Z",
    },
]

NATIVE_SESSION = {
    "id": "ses_dbe5dfa4bffe6teAR0fsLIvSzA",
    "slug": "misty-eagle",
    "projectID": "1643d9f6ea0e",
    "directory": "/home/user/project",
    "path": "",
    "summary": {"additions": 4, "deletions": 1, "files": 2},
    "cost": 0.0125,
    "tokens": {
        "input": 5,
        "output": 7,
        "reasoning": 0,
        "cache": {"read": 3, "write": 0},
    },
    "title": "child of one",
    "agent": "build",
    "model": {"id": "echo", "providerID": "local", "variant": "default"},
    "version": "1.18.33",
    "metadata": {"parentID": "ses_dbe5e0e8affeParent"},
    "time": {"created": 1772532000000, "updated": 1772532060000},
}


def gateway_messages() -> list[Message]:
    """Two turns as the client returns them through the gateway, extras and all."""
    tokens = {"total": 10, "input": 5, "output": 5, "reasoning": 0}
    tokens["cache"] = {"read": 0, "write": 0}  # type: ignore[assignment]
    payload = [
        {
            "id": "msg_01",
            "role": "user",
            "content": "List the files",
            "timestamp": "2026-03-03T10:00:00.000Z",
            "sessionID": "ses_1",
            "agent": "build",
            "providerID": "local",
            "modelID": "echo",
            "parts": [{"type": "text", "text": "List the files"}],
        },
        {
            "id": "msg_02",
            "role": "assistant",
            "content": "",
            "timestamp": "2026-03-03T10:00:00.031Z",
            "sessionID": "ses_1",
            "parentID": "msg_01",
            "agent": "build",
            "providerID": "local",
            "modelID": "echo",
            "tokens": tokens,
            "cost": 0,
            "finish": "tool-calls",
            "completedAt": "2026-03-03T10:00:00.654Z",
            "parts": [{"type": "tool", "tool": "bash", "callID": "c1"}],
        },
        {
            "id": "msg_03",
            "role": "assistant",
            "content": "Done: README.md",
            "timestamp": "2026-03-03T10:00:00.660Z",
            "sessionID": "ses_1",
            "parentID": "msg_01",
            "agent": "build",
            "providerID": "local",
            "modelID": "echo",
            "tokens": tokens,
            "cost": 0.002,
            "finish": "stop",
            "completedAt": "2026-03-03T10:00:01.500Z",
            "parts": [{"type": "text", "text": "Done: README.md"}],
        },
        {
            "id": "msg_04",
            "role": "user",
            "content": "Again",
            "timestamp": "2026-03-03T10:05:00.000Z",
            "sessionID": "ses_1",
            "agent": "build",
            "providerID": "local",
            "modelID": "echo",
        },
        {
            "id": "msg_05",
            "role": "assistant",
            "content": "",
            "timestamp": "2026-03-03T10:05:00.020Z",
            "sessionID": "ses_1",
            "parentID": "msg_04",
            "providerID": "local",
            "modelID": "echo",
            "finish": "error",
            "completedAt": "2026-03-03T10:05:02.000Z",
            "error": "APIError: bad request from fake llm",
            "parts": [],
        },
    ]
    return [Message.from_json(item) for item in payload]


# Sessions


def test_sessions_frame_sorted_before_truncating() -> None:
    result = sessions_frame([Session.from_json(item) for item in CONTRACT_SESSIONS])

    expected = expected_sessions(
        {
            "id": ["ses_c", "ses_a", "ses_b"],
            "title": [
                "Refactor the parser (fork #1)",
                "Debug API endpoints",
                "Refactor the parser",
            ],
            "parentID": ["ses_b", None, None],
            "createdAt": [
                ts("2026-03-03T08:00:00Z"),
                ts("2026-03-02T10:00:00Z"),
                ts("2026-03-01T09:00:00Z"),
            ],
            "updatedAt": [
                ts("2026-03-03T08:10:00Z"),
                ts("2026-03-02T10:45:00Z"),
                ts("2026-03-01T09:30:00Z"),
            ],
        }
    )
    assert_frame_equal(result, expected)
    assert result.head(2)["id"].tolist() == ["ses_c", "ses_a"]


def test_sessions_frame_ties_keep_input_order() -> None:
    same = "2026-03-03T10:00:00Z"
    items = [
        {"id": f"ses_{name}", "title": name, "createdAt": same, "updatedAt": same}
        for name in ("x", "a", "m")
    ]

    result = sessions_frame(items)

    assert result["id"].tolist() == ["ses_x", "ses_a", "ses_m"]


def test_sessions_frame_parent_column_always_present() -> None:
    root = {k: v for k, v in CONTRACT_SESSIONS[0].items() if k != "parentID"}
    fork = {**CONTRACT_SESSIONS[1], "id": "ses_B", "parentID": "ses_A"}

    roots_only = sessions_frame([root])
    mixed = sessions_frame([root, fork])

    assert "parentID" in roots_only.columns
    assert roots_only["parentID"].isna().all()
    parents = mixed.set_index("id")["parentID"]
    assert parents.loc["ses_B"] == "ses_A"
    assert pd.isna(parents.loc["ses_b"])


def test_sessions_frame_mixed_iso_fractions() -> None:
    created = [
        "2026-03-03T10:00:00Z",
        "2026-03-03T10:00:00.123456Z",
        "2026-03-03T10:00:00.5Z",
        "2026-03-03T11:00:00.25+01:00",
    ]
    items = [
        {"id": f"ses_{i}", "title": "", "createdAt": value, "updatedAt": value}
        for i, value in enumerate(created)
    ]

    result = sessions_frame(items).set_index("id")

    assert result["createdAt"].dtype == UTC_NS
    assert result.loc["ses_0", "createdAt"] == ts("2026-03-03T10:00:00Z")
    assert result.loc["ses_1", "createdAt"] == ts("2026-03-03T10:00:00.123456Z")
    assert result.loc["ses_1", "createdAt"].microsecond == 123456
    assert result.loc["ses_2", "createdAt"] == ts("2026-03-03T10:00:00.500Z")
    assert result.loc["ses_3", "createdAt"] == ts("2026-03-03T10:00:00.250Z")


def test_sessions_frame_epoch_milliseconds() -> None:
    native = {
        "id": "ses_native",
        "title": "t",
        "time": {"created": 1772532000000, "updated": 1772532060000},
    }
    contract_ms = {
        "id": "ses_numbers",
        "title": "t",
        "createdAt": 1772532000000,
        "updatedAt": 1772532000123,
    }
    iso = {**CONTRACT_SESSIONS[0], "id": "ses_iso"}
    iso["createdAt"] = iso["updatedAt"] = "2026-03-03T10:00:00.000Z"

    result = sessions_frame([native, contract_ms, iso]).set_index("id")

    assert (result["createdAt"] == ts("2026-03-03T10:00:00Z")).all()
    assert result.loc["ses_native", "updatedAt"] == ts("2026-03-03T10:01:00Z")
    assert result.loc["ses_numbers", "updatedAt"] == ts("2026-03-03T10:00:00.123Z")
    assert (result["createdAt"].dt.year == 2026).all()


def test_sessions_frame_opencode_session_extras() -> None:
    result = sessions_frame(NATIVE_SESSION)

    expected = expected_sessions(
        {
            "id": ["ses_dbe5dfa4bffe6teAR0fsLIvSzA"],
            "title": ["child of one"],
            "parentID": ["ses_dbe5e0e8affeParent"],
            "createdAt": [ts("2026-03-03T10:00:00Z")],
            "updatedAt": [ts("2026-03-03T10:01:00Z")],
            "slug": ["misty-eagle"],
            "directory": ["/home/user/project"],
            "projectID": ["1643d9f6ea0e"],
            "agent": ["build"],
            "model": ["local/echo"],
            "input_tokens": [5],
            "output_tokens": [7],
            "reasoning_tokens": [0],
            "cache_read_tokens": [3],
            "cache_write_tokens": [0],
            "cost": [0.0125],
            "additions": [4],
            "deletions": [1],
            "changed_files": [2],
        }
    )
    assert_frame_equal(result, expected)


def test_sessions_frame_archived_time_parsed() -> None:
    session = {**NATIVE_SESSION}
    session["time"] = {**session["time"], "archived": 1772535600000}  # type: ignore[dict-item]

    result = sessions_frame([session])

    assert result.loc[0, "archivedAt"] == ts("2026-03-03T11:00:00Z")


def test_frames_empty_input_keeps_schema() -> None:
    sessions = sessions_frame([])
    messages = messages_frame([])

    assert list(sessions.columns) == list(SESSION_DTYPES)
    assert sessions.dtypes.astype(str).to_dict() == dict(SESSION_DTYPES)
    assert sessions["createdAt"].dt.date.tolist() == []
    assert list(messages.columns) == list(MESSAGE_DTYPES)
    assert messages.dtypes.astype(str).to_dict() == dict(MESSAGE_DTYPES)
    assert messages["timestamp"].dt.date.tolist() == []
    assert list(messages["role"].cat.categories) == ["user", "assistant"]


def test_frames_empty_equal_schema_of_full() -> None:
    full = messages_frame(gateway_messages())
    empty = messages_frame([])

    assert_frame_equal(empty, full.iloc[0:0].reset_index(drop=True))
    assert_frame_equal(
        sessions_frame([]),
        sessions_frame(CONTRACT_SESSIONS).iloc[0:0].reset_index(drop=True),
    )


@pytest.mark.parametrize(
    ("item", "error", "match"),
    [
        pytest.param("ses_1", TypeError, "Invalid sessions", id="string"),
        pytest.param([42], TypeError, "Invalid session 42", id="number"),
        pytest.param(
            [{"title": "x", "createdAt": "2026-03-03T10:00:00Z"}],
            ValueError,
            "'id' is missing",
            id="no-id",
        ),
        pytest.param(
            [{"id": "ses_1", "time": {"created": 1}, "title": "x"}],
            ValueError,
            None,
            id="native-ok",
        ),
        pytest.param(
            [{"id": "ses_1", "createdAt": "yesterday"}],
            ValueError,
            "Invalid timestamp 'yesterday'",
            id="bad-time",
        ),
    ],
)
def test_sessions_frame_rejects_bad_input(
    item: Any, error: type[Exception], match: str | None
) -> None:
    if match is None:
        assert len(sessions_frame(item)) == 1
        return
    with pytest.raises(error, match=match):
        sessions_frame(item)


# Messages


def test_messages_frame_from_client_messages() -> None:
    result = messages_frame(gateway_messages())

    assistant = [None, 5, 5, None, None]
    zero = [None, 0, 0, None, None]
    expected = expected_messages(
        {
            "session_id": ["ses_1"] * 5,
            "id": ["msg_01", "msg_02", "msg_03", "msg_04", "msg_05"],
            "role": ["user", "assistant", "assistant", "user", "assistant"],
            "content": ["List the files", "", "Done: README.md", "Again", ""],
            "timestamp": [
                ts("2026-03-03T10:00:00Z"),
                ts("2026-03-03T10:00:00.031Z"),
                ts("2026-03-03T10:00:00.660Z"),
                ts("2026-03-03T10:05:00Z"),
                ts("2026-03-03T10:05:00.020Z"),
            ],
            "model": ["local/echo"] * 5,
            "agent": ["build", "build", "build", "build", None],
            "input_tokens": assistant,
            "output_tokens": assistant,
            "reasoning_tokens": zero,
            "cache_read_tokens": zero,
            "cache_write_tokens": zero,
            "cost": [None, 0.0, 0.002, None, None],
            "completed_at": [
                None,
                ts("2026-03-03T10:00:00.654Z"),
                ts("2026-03-03T10:00:01.500Z"),
                None,
                ts("2026-03-03T10:05:02Z"),
            ],
            "duration": [
                None,
                pd.Timedelta(milliseconds=623),
                pd.Timedelta(milliseconds=840),
                None,
                pd.Timedelta(milliseconds=1980),
            ],
            "parent_id": [None, "msg_01", "msg_01", None, "msg_04"],
            "finish": [None, "tool-calls", "stop", None, "error"],
            "error": [None, None, None, None, "APIError: bad request from fake llm"],
        }
    )
    assert_frame_equal(result, expected)


def test_messages_frame_from_contract_json_only() -> None:
    payload = [
        {
            "id": "msg_1",
            "role": "user",
            "content": "hi",
            "timestamp": "2026-03-03T10:00:00.000Z",
        },
        {
            "id": "msg_2",
            "role": "assistant",
            "content": "Echo: hi",
            "timestamp": "2026-03-03T10:00:01.000Z",
        },
    ]

    result = messages_frame(payload, session_id="ses_1")

    expected = expected_messages(
        {
            "session_id": ["ses_1", "ses_1"],
            "id": ["msg_1", "msg_2"],
            "role": ["user", "assistant"],
            "content": ["hi", "Echo: hi"],
            "timestamp": [ts("2026-03-03T10:00:00Z"), ts("2026-03-03T10:00:01Z")],
        }
    )
    assert_frame_equal(result, expected)


def test_messages_frame_message_without_text() -> None:
    # OpenCode's own `{info, parts}`: a user text, a reply with no parts at all,
    # and a step that only called a tool.
    entries = [
        {
            "info": {
                "id": "m1",
                "sessionID": "ses_1",
                "role": "user",
                "time": {"created": 1772532000000},
            },
            "parts": [{"id": "prt_1", "type": "text", "text": "hi"}],
        },
        {
            "info": {
                "id": "m2",
                "sessionID": "ses_1",
                "role": "assistant",
                "parentID": "m1",
                "time": {"created": 1772532000100},
            },
            "parts": [],
        },
        {
            "info": {
                "id": "m3",
                "sessionID": "ses_1",
                "role": "assistant",
                "parentID": "m1",
                "time": {"created": 1772532000100, "completed": 1772532000900},
            },
            "parts": [{"id": "prt_2", "type": "tool", "tool": "bash", "state": {}}],
        },
    ]

    result = messages_frame(entries)

    assert result["id"].tolist() == ["m1", "m2", "m3"]
    assert result["role"].tolist() == ["user", "assistant", "assistant"]
    assert result["content"].tolist() == ["hi", "", ""]
    assert result["content"].notna().all()
    assert result.loc[2, "duration"] == pd.Timedelta(milliseconds=800)


def test_messages_frame_contract_null_content() -> None:
    item = {
        "id": "m1",
        "role": "assistant",
        "content": None,
        "timestamp": "2026-03-03T10:00:00Z",
    }

    result = messages_frame(item)

    assert result["content"].tolist() == [""]


def test_messages_frame_native_info_extras() -> None:
    entry = {
        "info": {
            "id": "msg_241a3be27",
            "sessionID": "ses_1",
            "role": "assistant",
            "parentID": "msg_241a3be09",
            "time": {"created": 1796397579816, "completed": 1796397580670},
            "modelID": "echo",
            "providerID": "local",
            "mode": "build",
            "agent": "build",
            "cost": 0,
            "tokens": {
                "total": 10,
                "input": 5,
                "output": 5,
                "reasoning": 0,
                "cache": {"read": 0, "write": 0},
            },
            "finish": "stop",
            "error": {
                "name": "APIError",
                "data": {"message": "bad request from fake llm", "statusCode": 400},
            },
        },
        "parts": [
            {"type": "step-start"},
            {"type": "text", "text": "Echo: hello world "},
            {"type": "step-finish", "reason": "stop"},
        ],
    }

    row = messages_frame([entry]).iloc[0]

    assert row["content"] == "Echo: hello world "
    assert row["timestamp"] == ts("2026-12-04T15:19:39.816Z")
    assert row["completed_at"] == ts("2026-12-04T15:19:40.670Z")
    assert row["duration"] == pd.Timedelta(milliseconds=854)
    assert row["model"] == "local/echo"
    assert row["agent"] == "build"
    assert row["input_tokens"] == 5
    assert row["parent_id"] == "msg_241a3be09"
    assert row["error"] == "APIError: bad request from fake llm"


def test_messages_frame_oldest_first_ties_kept() -> None:
    def message(message_id: str, when: str) -> Message:
        moment = datetime.fromisoformat(when).replace(tzinfo=UTC)
        return Message(message_id, "assistant", message_id, moment)

    items = [
        message("late", "2026-03-03T10:00:05"),
        message("tie_1", "2026-03-03T10:00:01"),
        message("early", "2026-03-03T10:00:00"),
        message("tie_2", "2026-03-03T10:00:01"),
    ]

    result = messages_frame(items, session_id="ses_1")

    assert result["id"].tolist() == ["early", "tie_1", "tie_2", "late"]
    assert result.index.tolist() == [0, 1, 2, 3]


def test_messages_frame_session_mapping() -> None:
    first = gateway_messages()[:2]
    second = gateway_messages()[3:]

    result = messages_frame({"ses_new": second, "ses_old": first, "ses_none": []})

    assert result["session_id"].tolist() == ["ses_new"] * 2 + ["ses_old"] * 2
    assert result["id"].tolist() == ["msg_04", "msg_05", "msg_01", "msg_02"]


def test_messages_frame_session_id_argument_wins() -> None:
    result = messages_frame(gateway_messages()[:1], session_id="ses_other")

    assert result["session_id"].tolist() == ["ses_other"]


def test_messages_frame_unknown_role_kept() -> None:
    item = {
        "id": "m1",
        "role": "system",
        "content": "be brief",
        "timestamp": "2026-03-03T10:00:00Z",
    }

    result = messages_frame([item])

    assert result["role"].tolist() == ["system"]
    assert list(result["role"].cat.categories) == ["user", "assistant", "system"]


@pytest.mark.parametrize(
    ("messages", "kwargs", "error", "match"),
    [
        pytest.param("hello", {}, TypeError, "Invalid messages", id="string"),
        pytest.param(None, {}, TypeError, "Invalid messages", id="none"),
        pytest.param([1], {}, TypeError, "Invalid message 1", id="number"),
        pytest.param(
            [{"role": "user", "timestamp": "2026-03-03T10:00:00Z"}],
            {},
            ValueError,
            "'id' is missing",
            id="no-id",
        ),
        pytest.param(
            [{"info": {"role": "user", "time": {"created": 1}}, "parts": []}],
            {},
            ValueError,
            "'id' is missing",
            id="native-no-id",
        ),
        pytest.param(
            [{"id": "m", "role": "user", "timestamp": "soon"}],
            {},
            ValueError,
            "Invalid timestamp 'soon'",
            id="bad-time",
        ),
        pytest.param([], {"session_id": " "}, ValueError, "session_id", id="blank"),
        pytest.param(
            {"ses_1": []},
            {"session_id": "ses_1"},
            ValueError,
            "not both",
            id="both",
        ),
    ],
)
def test_messages_frame_rejects_bad_input(
    messages: Any, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        messages_frame(messages, **kwargs)


def test_messages_frame_rejects_bad_completion_time() -> None:
    message = Message.from_json(
        {
            "id": "m1",
            "role": "assistant",
            "content": "",
            "timestamp": "2026-03-03T10:00:00Z",
            "completedAt": "later",
        }
    )

    with pytest.raises(ValueError, match="column 'completed_at'"):
        messages_frame([message])


def test_messages_frame_rejects_bad_token_count() -> None:
    message = Message.from_json(
        {
            "id": "m1",
            "role": "assistant",
            "content": "",
            "timestamp": "2026-03-03T10:00:00Z",
            "tokens": {"input": "many"},
        }
    )

    with pytest.raises(ValueError, match="column 'input_tokens'"):
        messages_frame([message])


def test_messages_frame_mixed_completion_times() -> None:
    def message(message_id: str, completed: Any) -> Message:
        return Message.from_json(
            {
                "id": message_id,
                "role": "assistant",
                "content": "",
                "timestamp": "2026-03-03T10:00:00Z",
                "completedAt": completed,
            }
        )

    items = [
        message("iso", "2026-03-03T10:00:01.5Z"),
        message("epoch_ms", 1772532001500),
        message("epoch_s", 1772532001.5),
        message("aware", datetime(2026, 3, 3, 11, 0, 1, 500000, tzinfo=PLUS_ONE)),
        message("missing", None),
    ]

    result = messages_frame(items).set_index("id")["completed_at"]

    moment = ts("2026-03-03T10:00:01.5Z")
    assert result.dtype == UTC_NS
    assert result.loc["iso"] == moment
    assert result.loc["epoch_ms"] == moment
    assert result.loc["epoch_s"] == moment
    assert result.loc["aware"] == moment
    assert pd.isna(result.loc["missing"])


# Saving and loading


TRICKY_TEXT = [
    'He said "hi", then left',
    "NA",
    "null",
    "",
    "  leading and trailing  ",
    "line one\nline two\r\nthree",
    "ünïcödé ✓",
    "None",
]


def tricky_messages() -> pd.DataFrame:
    items = gateway_messages()
    for index, text in enumerate(TRICKY_TEXT):
        moment = datetime(2026, 3, 4, 9, 0, index, 123456, tzinfo=UTC)
        role = "user" if index % 2 == 0 else "system"
        items.append(Message(f"msg_t{index}", role, text, moment))
    return messages_frame(items, session_id="ses_1")


def test_messages_parquet_round_trip(tmp_path: Path) -> None:
    original = tricky_messages()
    path = tmp_path / "messages.parquet"

    original.to_parquet(path)
    result = pd.read_parquet(path)

    assert_frame_equal(result, original)
    assert_frame_equal(read_messages_parquet(path), original)


def test_messages_csv_round_trip(tmp_path: Path) -> None:
    original = tricky_messages()
    path = tmp_path / "messages.csv"

    original.to_csv(path, index=False)
    result = read_messages_csv(path)

    assert_frame_equal(result, original)
    assert result["content"].tolist()[-len(TRICKY_TEXT) :] == TRICKY_TEXT


def test_sessions_csv_round_trip(tmp_path: Path) -> None:
    titled = {**CONTRACT_SESSIONS[2], "id": "ses_na", "title": "NA"}
    untitled = {**CONTRACT_SESSIONS[2], "id": "ses_blank", "title": ""}
    original = sessions_frame([*CONTRACT_SESSIONS, NATIVE_SESSION, titled, untitled])
    path = tmp_path / "sessions.csv"

    original.to_csv(path, index=False)
    result = read_sessions_csv(path)

    assert_frame_equal(result, original)


def test_sessions_parquet_round_trip(tmp_path: Path) -> None:
    original = sessions_frame([*CONTRACT_SESSIONS, NATIVE_SESSION])
    path = tmp_path / "sessions.parquet"

    original.to_parquet(path)

    assert_frame_equal(pd.read_parquet(path), original)


def test_empty_frames_round_trip(tmp_path: Path) -> None:
    messages = messages_frame([])
    sessions = sessions_frame([])
    buffer = io.StringIO(messages.to_csv(index=False))

    assert_frame_equal(read_messages_csv(buffer), messages)
    assert_frame_equal(
        read_sessions_csv(io.StringIO(sessions.to_csv(index=False))), sessions
    )
    messages.to_parquet(tmp_path / "messages.parquet")
    sessions.to_parquet(tmp_path / "sessions.parquet")
    assert_frame_equal(read_messages_parquet(tmp_path / "messages.parquet"), messages)
    assert_frame_equal(read_sessions_parquet(tmp_path / "sessions.parquet"), sessions)


def test_read_messages_csv_keeps_extra_columns() -> None:
    frame = messages_frame(gateway_messages()[:2])
    frame["note"] = ["first", "NA"]
    frame["score"] = [1.5, 2.0]

    result = read_messages_csv(io.StringIO(frame.to_csv(index=False)))

    assert result["note"].tolist() == ["first", "NA"]
    assert result["score"].tolist() == [1.5, 2.0]
    assert result["timestamp"].dtype == UTC_NS


# Fetching many sessions


def contract_message(session_id: str, index: int) -> dict[str, Any]:
    role = "user" if index % 2 == 0 else "assistant"
    return {
        "id": f"msg_{session_id}_{index}",
        "role": role,
        "content": f"{role} {index}",
        "timestamp": f"2026-03-03T10:00:0{index}.000Z",
    }


class FakeGateway:
    """A mock Sessions API with a few sessions, recording concurrent requests."""

    def __init__(self, session_ids: list[str], delay: float = 0.0) -> None:
        self.session_ids = list(session_ids)
        self.deleted: set[str] = set()
        self.delay = delay
        self.in_flight = 0
        self.max_in_flight = 0
        self.paths: list[str] = []

    def response(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/opencode/3100")
        self.paths.append(path)
        if path == "/sessions":
            sessions = [
                {
                    "id": session_id,
                    "title": session_id,
                    "createdAt": "2026-03-03T10:00:00.000Z",
                    "updatedAt": f"2026-03-03T10:{59 - index:02d}:00.000Z",
                }
                for index, session_id in enumerate(self.session_ids)
            ]
            return httpx.Response(200, json=sessions)
        session_id = path.split("/")[2]
        if session_id not in self.session_ids or session_id in self.deleted:
            return httpx.Response(
                404, json={"statusCode": 404, "message": "Session not found"}
            )
        messages = [contract_message(session_id, index) for index in range(2)]
        return httpx.Response(200, json={"messages": messages})

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            return self.response(request)
        finally:
            self.in_flight -= 1


def sync_client(handler: Callable[[httpx.Request], httpx.Response]) -> OpenCodeClient:
    return OpenCodeClient(
        "http://gateway.test", port=3100, transport=httpx.MockTransport(handler)
    )


def async_client(gateway: FakeGateway) -> AsyncOpenCodeClient:
    return AsyncOpenCodeClient(
        "http://gateway.test", port=3100, transport=httpx.MockTransport(gateway)
    )


def test_all_messages_frame_every_session() -> None:
    gateway = FakeGateway(["ses_a", "ses_b", "ses_c"])
    client = sync_client(gateway.response)

    result = all_messages_frame(client, progress=False)

    assert result["session_id"].tolist() == [
        "ses_a",
        "ses_a",
        "ses_b",
        "ses_b",
        "ses_c",
        "ses_c",
    ]
    assert result["role"].tolist() == ["user", "assistant"] * 3
    assert gateway.paths[0] == "/sessions"


def test_all_messages_frame_named_sessions_in_order() -> None:
    gateway = FakeGateway(["ses_a", "ses_b", "ses_c"])
    client = sync_client(gateway.response)

    result = all_messages_frame(client, ["ses_c", "ses_a", "ses_c"], progress=False)

    assert result["session_id"].unique().tolist() == ["ses_c", "ses_a"]
    assert "/sessions" not in gateway.paths
    assert len(gateway.paths) == 2


def test_all_messages_frame_single_session_id() -> None:
    gateway = FakeGateway(["ses_a", "ses_b"])

    result = all_messages_frame(sync_client(gateway.response), "ses_b", progress=False)

    assert result["session_id"].unique().tolist() == ["ses_b"]


def test_all_messages_frame_inside_running_loop() -> None:
    gateway = FakeGateway(["ses_a", "ses_b"])
    client = sync_client(gateway.response)

    async def notebook_cell() -> pd.DataFrame:
        return all_messages_frame(client, progress=False)

    result = asyncio.run(notebook_cell())

    assert len(result) == 4


async def test_aall_messages_frame_bounded_concurrency() -> None:
    ids = [f"ses_{index:02d}" for index in range(12)]
    gateway = FakeGateway(ids, delay=0.02)
    client = async_client(gateway)

    result = await aall_messages_frame(client, ids, progress=False, concurrency=3)
    await client.aclose()

    assert gateway.max_in_flight == 3
    assert result["session_id"].unique().tolist() == ids
    assert len(result) == 24


async def test_aall_messages_frame_sync_client() -> None:
    gateway = FakeGateway(["ses_a"])

    result = await aall_messages_frame(sync_client(gateway.response), progress=False)

    assert result["id"].tolist() == ["msg_ses_a_0", "msg_ses_a_1"]


async def test_aall_messages_frame_empty_instance() -> None:
    client = async_client(FakeGateway([]))

    result = await aall_messages_frame(client)
    await client.aclose()

    assert_frame_equal(result, messages_frame([]))


def test_all_messages_frame_skips_session_deleted_meanwhile(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gateway = FakeGateway(["ses_a", "ses_gone"])
    gateway.deleted.add("ses_gone")

    with caplog.at_level(logging.WARNING, logger="opencode_notebook"):
        result = all_messages_frame(sync_client(gateway.response), progress=False)

    assert result["session_id"].unique().tolist() == ["ses_a"]
    assert "Session ses_gone was deleted while fetching" in caplog.text


def test_all_messages_frame_named_missing_session_raises() -> None:
    gateway = FakeGateway(["ses_a"])

    with pytest.raises(SessionNotFoundError, match="Session not found"):
        all_messages_frame(
            sync_client(gateway.response), ["ses_a", "ses_gone"], progress=False
        )


def test_all_messages_frame_with_real_progress_bar() -> None:
    gateway = FakeGateway(["ses_a", "ses_b"])

    result = all_messages_frame(sync_client(gateway.response), progress=True)

    assert len(result) == 4


def test_all_messages_frame_progress_bar_counts_sessions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    updates: list[int] = []
    totals: list[int] = []

    class Bar:
        def update(self, count: int) -> None:
            updates.append(count)

        def close(self) -> None:
            totals.append(sum(updates))

    def make_bar(total: int) -> Bar:
        totals.append(total)
        return Bar()

    monkeypatch.setattr(fetch, "_progress_bar", make_bar)
    gateway = FakeGateway(["ses_a", "ses_b", "ses_c"])

    all_messages_frame(sync_client(gateway.response))

    assert totals == [3, 3]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"concurrency": 0}, "Invalid concurrency 0", id="zero"),
        pytest.param({"concurrency": 2.5}, "Invalid concurrency 2.5", id="float"),
        pytest.param({"session_ids": [""]}, "Invalid session id ''", id="blank"),
    ],
)
def test_all_messages_frame_rejects_bad_arguments(
    kwargs: dict[str, Any], match: str
) -> None:
    gateway = FakeGateway(["ses_a"])

    with pytest.raises(ValueError, match=match):
        all_messages_frame(sync_client(gateway.response), progress=False, **kwargs)
    assert gateway.paths == []


def test_all_messages_frame_async_client_rejected() -> None:
    client = async_client(FakeGateway(["ses_a"]))

    with pytest.raises(TypeError, match="await aall_messages_frame"):
        all_messages_frame(client)


def test_client_frames_use_frames_module() -> None:
    gateway = FakeGateway(["ses_a", "ses_b"])
    client = sync_client(gateway.response)

    sessions = client.sessions_frame()
    messages = client.messages_frame("ses_b")

    assert sessions["id"].tolist() == ["ses_a", "ses_b"]
    assert messages["session_id"].tolist() == ["ses_b", "ses_b"]
    assert messages.dtypes.astype(str).to_dict() == dict(MESSAGE_DTYPES)


def test_import_frames_without_display_libraries() -> None:
    code = (
        "import sys, opencode_notebook.frames; "
        "print(sorted(m for m in ('IPython', 'ipywidgets', 'matplotlib.pyplot') "
        "if m in sys.modules))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert output.stdout.strip() == "[]"


# The real chain: offline model, OpenCode and the gateway.


@pytest.fixture(scope="module")
def chain_sessions(chain: Any) -> Iterator[tuple[OpenCodeClient, str, str]]:
    """A session with two prompts and a fork of it with a tool call."""
    client = OpenCodeClient(chain.gateway_url, port=chain.opencode_ports[0])
    root = client.create_session("frames on the chain")
    client.prompt(root.id, "first question", model="local/echo")
    client.prompt(root.id, "second question", model="local/echo")
    fork = client.fork_session(root.id, title="frames fork")
    client.prompt(fork.id, "[[tool bash: echo hi]]", model="local/echo")
    yield client, root.id, fork.id
    client.delete_session(fork.id)
    client.delete_session(root.id)
    client.close()


def test_chain_messages_frame(chain_sessions: tuple[OpenCodeClient, str, str]) -> None:
    client, root, fork = chain_sessions

    result = all_messages_frame(client, [root, fork], progress=False)

    assert list(result.columns) == list(MESSAGE_DTYPES)
    assert result.dtypes.astype(str).to_dict() == dict(MESSAGE_DTYPES)
    assert result["session_id"].value_counts().to_dict() == {root: 4, fork: 7}
    roles = result[result["session_id"] == fork]["role"].tolist()
    assert roles == ["user", "assistant"] * 2 + ["user", "assistant", "assistant"]
    assistant = result[result["role"] == "assistant"]
    assert assistant["input_tokens"].notna().all()
    assert assistant["output_tokens"].notna().all()
    assert (assistant["model"] == "local/echo").all()
    assert (assistant["duration"] >= pd.Timedelta(0)).all()
    assert assistant["parent_id"].notna().all()
    assert result["session_id"].unique().tolist() == [root, fork]
    for _, group in result.groupby("session_id"):
        assert group["timestamp"].is_monotonic_increasing
    assert result[result["finish"] == "tool-calls"]["content"].tolist() == [""]


def test_chain_sessions_frame(chain_sessions: tuple[OpenCodeClient, str, str]) -> None:
    client, root, fork = chain_sessions

    result = client.sessions_frame().set_index("id")

    assert result.loc[fork, "parentID"] == root
    assert pd.isna(result.loc[root, "parentID"])
    assert result.loc[fork, "createdAt"] > result.loc[root, "createdAt"]
    assert result.loc[root, "model"] == "local/echo"
    assert result.loc[root, "input_tokens"] > 0
    assert result.loc[root, "createdAt"].year == datetime.now(UTC).year


def test_chain_direct_mode_same_frame(
    chain: Any, chain_sessions: tuple[OpenCodeClient, str, str]
) -> None:
    client, root, fork = chain_sessions
    direct = OpenCodeClient.direct(chain.opencode_urls[0])

    through_gateway = all_messages_frame(client, [root, fork], progress=False)
    straight = all_messages_frame(direct, [root, fork], progress=False)
    direct.close()

    assert_frame_equal(straight, through_gateway)
