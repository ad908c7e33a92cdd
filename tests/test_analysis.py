"""Conversation statistics, fork lineage, roll-ups, activity and plots."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pandas as pd
import pytest
from matplotlib.figure import Figure
from pandas.testing import assert_frame_equal, assert_series_equal

from opencode_notebook import OpenCodeClient
from opencode_notebook.analysis import (
    SUMMARY_DTYPES,
    activity,
    fork_lineage,
    plot_activity,
    plot_latency,
    plot_messages_per_session,
    rollup,
    session_summary,
    turn_latencies,
)
from opencode_notebook.frames import messages_frame, sessions_frame

UTC_NS = "datetime64[ns, UTC]"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text).tz_convert("UTC")


def ms(milliseconds: int) -> pd.Timedelta:
    return pd.Timedelta(milliseconds=milliseconds)


# A root session with two turns, a fork of it with two turns of its own (one
# failed), a fork of the fork with an unanswered prompt, and an empty session.
# Forks hold copies of their parent's messages with the original times.

SESSIONS = [
    {
        "id": "ses_root",
        "title": "Refactor the parser",
        "createdAt": "2026-03-03T08:59:00.000Z",
        "updatedAt": "2026-03-03T09:10:03.100Z",
    },
    {
        "id": "ses_fork",
        "title": "Refactor the parser (fork #1)",
        "parentID": "ses_root",
        "createdAt": "2026-03-03T09:20:00.000Z",
        "updatedAt": "2026-03-03T09:30:00.100Z",
    },
    {
        "id": "ses_grand",
        "title": "Costs $5 or $6?",
        "parentID": "ses_fork",
        "createdAt": "2026-03-03T09:45:00.000Z",
        "updatedAt": "2026-03-03T09:50:00.000Z",
    },
    {
        "id": "ses_empty",
        "title": "",
        "createdAt": "2026-03-03T08:00:00.000Z",
        "updatedAt": "2026-03-03T08:00:00.000Z",
    },
]


def message(
    message_id: str,
    role: str,
    content: str,
    timestamp: str,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": message_id,
        "role": role,
        "content": content,
        "timestamp": timestamp,
        **extra,
    }


def reply(
    message_id: str,
    content: str,
    timestamp: str,
    completed: str | None,
    tokens: tuple[int, int],
    cost: float,
    **extra: Any,
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "tokens": {
            "input": tokens[0],
            "output": tokens[1],
            "reasoning": 0,
            "cache": {"read": 0, "write": 0},
        },
        "cost": cost,
        "providerID": "local",
        "modelID": "echo",
        **extra,
    }
    if completed is not None:
        fields["completedAt"] = completed
    return message(message_id, "assistant", content, timestamp, **fields)


ROOT_MESSAGES = [
    message("u1", "user", "List files", "2026-03-03T09:00:00.000Z"),
    reply(
        "a1",
        "",
        "2026-03-03T09:00:00.050Z",
        "2026-03-03T09:00:00.650Z",
        (10, 2),
        0.01,
        finish="tool-calls",
    ),
    reply(
        "a2",
        "Done: README.md",
        "2026-03-03T09:00:00.700Z",
        "2026-03-03T09:00:02.000Z",
        (12, 4),
        0.02,
    ),
    message("u2", "user", "Explain", "2026-03-03T09:10:00.000Z"),
    reply(
        "a3",
        "It parses.",
        "2026-03-03T09:10:00.100Z",
        "2026-03-03T09:10:03.100Z",
        (20, 6),
        0.03,
    ),
]

FORK_OWN_MESSAGES = [
    message("u3", "user", "Try again", "2026-03-03T09:25:00.000Z"),
    reply(
        "a4",
        "",
        "2026-03-03T09:25:00.020Z",
        "2026-03-03T09:25:00.520Z",
        (5, 0),
        0.0,
        error="APIError: bad request",
    ),
    message("u4", "user", "Once more", "2026-03-03T09:30:00.000Z"),
    # Sent without a completion time: the latency ends at its creation.
    reply("a5", "OK", "2026-03-03T09:30:00.100Z", None, (7, 1), 0.005),
]


def copies(messages: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """Copy messages the way a fork does: new ids, original times."""
    return [{**item, "id": f"{prefix}_{item['id']}"} for item in messages]


def conversation() -> dict[str, list[dict[str, Any]]]:
    fork = [*copies(ROOT_MESSAGES, "fork"), *FORK_OWN_MESSAGES]
    grand = [
        *copies(fork, "grand"),
        message("u5", "user", "hello?", "2026-03-03T09:50:00.000Z"),
    ]
    return {"ses_root": ROOT_MESSAGES, "ses_fork": fork, "ses_grand": grand}


@pytest.fixture
def messages_df() -> pd.DataFrame:
    return messages_frame(conversation())


@pytest.fixture
def sessions_df() -> pd.DataFrame:
    return sessions_frame(SESSIONS)


def session_index(ids: list[str]) -> pd.Index:
    return pd.Index(ids, dtype="string", name="session_id")


# Turns and latency


def test_turn_latencies_hand_computed(
    messages_df: pd.DataFrame, sessions_df: pd.DataFrame
) -> None:
    result = turn_latencies(messages_df, sessions_df)

    expected = pd.DataFrame(
        {
            "session_id": ["ses_root", "ses_root", "ses_fork", "ses_fork"],
            "message_id": ["u1", "u2", "u3", "u4"],
            "prompted_at": [
                ts("2026-03-03T09:00:00Z"),
                ts("2026-03-03T09:10:00Z"),
                ts("2026-03-03T09:25:00Z"),
                ts("2026-03-03T09:30:00Z"),
            ],
            "answered_at": [
                ts("2026-03-03T09:00:02Z"),
                ts("2026-03-03T09:10:03.100Z"),
                ts("2026-03-03T09:25:00.520Z"),
                ts("2026-03-03T09:30:00.100Z"),
            ],
            "latency": [ms(2000), ms(3100), ms(520), ms(100)],
            "steps": [2, 1, 1, 1],
        }
    ).astype(
        {
            "session_id": "string",
            "message_id": "string",
            "prompted_at": UTC_NS,
            "answered_at": UTC_NS,
            "latency": "timedelta64[ns]",
            "steps": "Int64",
        }
    )
    assert_frame_equal(result, expected)


def test_turn_latencies_without_sessions_include_copies(
    messages_df: pd.DataFrame,
) -> None:
    result = turn_latencies(messages_df)

    assert result["session_id"].tolist().count("ses_fork") == 4
    assert result["session_id"].tolist().count("ses_grand") == 4
    assert "u5" not in result["message_id"].tolist()


def test_turn_latencies_messages_before_first_prompt() -> None:
    messages = messages_frame(
        [
            message("a0", "assistant", "Welcome", "2026-03-03T09:00:00Z"),
            message("u1", "user", "hi", "2026-03-03T09:00:01Z"),
            message("a1", "assistant", "Echo: hi", "2026-03-03T09:00:02Z"),
        ],
        session_id="ses_1",
    )

    result = turn_latencies(messages)

    assert result["message_id"].tolist() == ["u1"]
    assert result["latency"].tolist() == [ms(1000)]


# Per session


def test_session_summary_hand_computed(
    messages_df: pd.DataFrame, sessions_df: pd.DataFrame
) -> None:
    result = session_summary(messages_df, sessions_df)

    nat = pd.NaT
    expected = pd.DataFrame(
        {
            "title": [
                "Costs $5 or $6?",
                "Refactor the parser (fork #1)",
                "Refactor the parser",
                "",
            ],
            "parentID": ["ses_fork", "ses_root", None, None],
            "messages": [1, 4, 5, 0],
            "turns": [1, 2, 2, 0],
            "assistant_messages": [0, 2, 3, 0],
            "errors": [0, 1, 0, 0],
            "inherited_messages": [9, 5, 0, 0],
            "user_chars": [6, 18, 17, 0],
            "assistant_chars": [0, 2, 25, 0],
            "first_activity": [
                ts("2026-03-03T09:50:00Z"),
                ts("2026-03-03T09:25:00Z"),
                ts("2026-03-03T09:00:00Z"),
                nat,
            ],
            "last_activity": [
                ts("2026-03-03T09:50:00Z"),
                ts("2026-03-03T09:30:00.100Z"),
                ts("2026-03-03T09:10:03.100Z"),
                nat,
            ],
            "latency_median": [nat, ms(310), ms(2550), nat],
            "latency_mean": [nat, ms(310), ms(2550), nat],
            "latency_max": [nat, ms(520), ms(3100), nat],
            "latency_total": [nat, ms(620), ms(5100), nat],
            "input_tokens": [None, 12, 42, None],
            "output_tokens": [None, 1, 12, None],
            "reasoning_tokens": [None, 0, 0, None],
            "cache_read_tokens": [None, 0, 0, None],
            "cache_write_tokens": [None, 0, 0, None],
            "cost": [None, 0.005, 0.06, None],
        },
        index=session_index(["ses_grand", "ses_fork", "ses_root", "ses_empty"]),
    )
    expected = expected.astype(dict(result.dtypes))
    assert_frame_equal(result, expected)
    assert result.dtypes["latency_max"] == "timedelta64[ns]"
    assert result.dtypes["turns"] == "Int64"
    assert result.dtypes["first_activity"] == UTC_NS


def test_session_summary_without_sessions(messages_df: pd.DataFrame) -> None:
    result = session_summary(messages_df)

    assert result.index.tolist() == ["ses_root", "ses_fork", "ses_grand"]
    assert result["messages"].tolist() == [5, 9, 10]
    assert result["turns"].tolist() == [2, 4, 5]
    assert result["title"].isna().all()
    assert result["inherited_messages"].isna().all()
    assert result.loc["ses_fork", "cost"] == pytest.approx(0.065)


def test_session_summary_answers_questions(
    messages_df: pd.DataFrame, sessions_df: pd.DataFrame
) -> None:
    summary = session_summary(messages_df, sessions_df)

    longest = summary["latency_total"].idxmax()
    costliest = summary["cost"].idxmax()
    forks = summary[summary["parentID"].notna()]["parentID"].to_dict()

    assert longest == "ses_root"
    assert costliest == "ses_root"
    assert forks == {"ses_grand": "ses_fork", "ses_fork": "ses_root"}


def test_session_summary_empty_messages(sessions_df: pd.DataFrame) -> None:
    empty = messages_frame([])

    alone = session_summary(empty)
    with_sessions = session_summary(empty, sessions_df)

    assert alone.empty
    assert list(alone.columns) == list(with_sessions.columns)
    assert alone.dtypes.equals(with_sessions.dtypes)
    assert with_sessions["messages"].tolist() == [0, 0, 0, 0]
    assert with_sessions["first_activity"].isna().all()


def test_session_summary_contract_only_messages() -> None:
    messages = messages_frame(
        [
            message("u1", "user", "hi", "2026-03-03T10:00:00Z"),
            message("a1", "assistant", "Echo: hi", "2026-03-03T10:00:01.250Z"),
        ],
        session_id="ses_1",
    )

    result = session_summary(messages)

    assert result.loc["ses_1", "latency_max"] == ms(1250)
    assert pd.isna(result.loc["ses_1", "input_tokens"])
    assert pd.isna(result.loc["ses_1", "cost"])


@pytest.mark.parametrize(
    ("frame", "error", "match"),
    [
        pytest.param([], TypeError, "Invalid messages list", id="not-frame"),
        pytest.param(
            pd.DataFrame({"id": ["m1"]}),
            ValueError,
            "no column session_id, role, content, timestamp",
            id="columns",
        ),
    ],
)
def test_session_summary_rejects_bad_input(
    frame: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        session_summary(frame)


def test_session_summary_rejects_messages_without_session() -> None:
    messages = messages_frame([message("u1", "user", "hi", "2026-03-03T10:00:00Z")])

    with pytest.raises(ValueError, match="1 messages have no session_id"):
        session_summary(messages)


def test_session_summary_dtypes_documented(messages_df: pd.DataFrame) -> None:
    result = session_summary(messages_df)

    assert result.dtypes.astype(str).to_dict() == dict(SUMMARY_DTYPES)


def test_session_summary_rejects_duplicate_sessions(
    messages_df: pd.DataFrame, sessions_df: pd.DataFrame
) -> None:
    doubled = pd.concat([sessions_df, sessions_df.head(1)])

    with pytest.raises(ValueError, match="Duplicate session ids"):
        session_summary(messages_df, doubled)


# Forks


def test_fork_lineage_tree(sessions_df: pd.DataFrame) -> None:
    result = fork_lineage(sessions_df)

    expected = pd.DataFrame(
        {
            "parentID": ["ses_fork", "ses_root", None, None],
            "root": ["ses_root", "ses_root", "ses_root", "ses_empty"],
            "depth": [2, 1, 0, 0],
            "children": [0, 1, 1, 0],
            "descendants": [0, 1, 2, 0],
        },
        index=session_index(["ses_grand", "ses_fork", "ses_root", "ses_empty"]),
    ).astype(
        {
            "parentID": "string",
            "root": "string",
            "depth": "Int64",
            "children": "Int64",
            "descendants": "Int64",
        }
    )
    assert_frame_equal(result, expected)


def test_fork_lineage_missing_parent_is_root() -> None:
    sessions = pd.DataFrame(
        {"id": ["ses_orphan", "ses_child"], "parentID": ["ses_deleted", "ses_orphan"]}
    )

    result = fork_lineage(sessions)

    assert result.loc["ses_orphan", "parentID"] == "ses_deleted"
    assert result.loc["ses_orphan", "depth"] == 0
    assert result.loc["ses_orphan", "root"] == "ses_orphan"
    assert result.loc["ses_child", "root"] == "ses_orphan"
    assert result.loc["ses_child", "depth"] == 1


@pytest.mark.parametrize(
    ("ids", "parents", "match"),
    [
        pytest.param(["ses_a"], ["ses_a"], "Sessions ses_a are forks", id="self"),
        pytest.param(
            ["ses_x", "ses_a", "ses_b", "ses_c"],
            [None, "ses_c", "ses_a", "ses_b"],
            "ses_a, ses_c, ses_b",
            id="three",
        ),
    ],
)
def test_fork_lineage_cycle_raises(
    ids: list[str], parents: list[str | None], match: str
) -> None:
    sessions = pd.DataFrame({"id": ids, "parentID": parents})

    with pytest.raises(ValueError, match=match):
        fork_lineage(sessions)


def test_fork_lineage_deep_chain() -> None:
    count = 5000
    ids = [f"ses_{index:05d}" for index in range(count)]
    parents = [None, *ids[:-1]]

    result = fork_lineage(pd.DataFrame({"id": ids, "parentID": parents}))

    assert result["depth"].iloc[-1] == count - 1
    assert result["descendants"].iloc[0] == count - 1
    assert (result["root"] == "ses_00000").all()


def test_rollup_hand_computed(
    messages_df: pd.DataFrame, sessions_df: pd.DataFrame
) -> None:
    summary = session_summary(messages_df, sessions_df)
    lineage = fork_lineage(sessions_df)

    result = rollup(summary, lineage)

    assert result.index.tolist() == ["ses_grand", "ses_fork", "ses_root", "ses_empty"]
    assert result["sessions"].tolist() == [1, 2, 3, 1]
    assert result["messages"].tolist() == [1, 5, 10, 0]
    assert result["turns"].tolist() == [1, 3, 5, 0]
    assert result["errors"].tolist() == [0, 1, 1, 0]
    assert result["user_chars"].tolist() == [6, 24, 41, 0]
    assert result.loc["ses_root", "input_tokens"] == 54
    assert result.loc["ses_root", "output_tokens"] == 13
    assert result.loc["ses_root", "cost"] == pytest.approx(0.065)
    assert result.loc["ses_fork", "cost"] == pytest.approx(0.005)
    assert result.loc["ses_root", "latency_total"] == ms(5720)
    assert result.loc["ses_root", "latency_max"] == ms(3100)
    assert result.loc["ses_root", "first_activity"] == ts("2026-03-03T09:00:00Z")
    assert result.loc["ses_root", "last_activity"] == ts("2026-03-03T09:50:00Z")
    assert pd.isna(result.loc["ses_grand", "cost"])
    assert pd.isna(result.loc["ses_empty", "latency_total"])


def test_rollup_keeps_summary_dtypes(
    messages_df: pd.DataFrame, sessions_df: pd.DataFrame
) -> None:
    summary = session_summary(messages_df, sessions_df)

    result = rollup(summary, fork_lineage(sessions_df))

    for name in ("messages", "cost", "latency_total", "first_activity"):
        assert result[name].dtype == summary[name].dtype


def test_rollup_warns_when_copies_counted(
    messages_df: pd.DataFrame, sessions_df: pd.DataFrame
) -> None:
    summary = session_summary(messages_df)

    with pytest.warns(UserWarning, match="session_summary\\(messages_df, sessions_df"):
        result = rollup(summary, fork_lineage(sessions_df))

    assert result.loc["ses_root", "messages"] == 24


def test_rollup_session_only_in_summary(sessions_df: pd.DataFrame) -> None:
    messages = messages_frame(
        [message("u1", "user", "hi", "2026-03-03T10:00:00Z")], session_id="ses_new"
    )
    summary = session_summary(messages, sessions_df)

    result = rollup(summary, fork_lineage(sessions_df))

    assert result.index[-1] == "ses_new"
    assert result.loc["ses_new", "sessions"] == 1
    assert result.loc["ses_new", "turns"] == 1


# Activity


def test_activity_counts_per_period(messages_df: pd.DataFrame) -> None:
    own = messages_df[messages_df["session_id"] == "ses_root"]

    result = activity(own, "5min")

    expected = pd.DataFrame(
        {"user": [1, 0, 1], "assistant": [2, 0, 1]},
        index=pd.DatetimeIndex(
            [
                ts("2026-03-03T09:00:00Z"),
                ts("2026-03-03T09:05:00Z"),
                ts("2026-03-03T09:10:00Z"),
            ],
            name="period",
        ).as_unit("ns"),
    )
    expected.index.freq = "5min"
    assert_frame_equal(result, expected)


def test_activity_all_sessions_hourly(messages_df: pd.DataFrame) -> None:
    result = activity(messages_df)

    assert result.index.tolist() == [ts("2026-03-03T09:00:00Z")]
    assert result.loc[ts("2026-03-03T09:00:00Z"), "user"] == 2 + 4 + 5
    assert result.loc[ts("2026-03-03T09:00:00Z"), "assistant"] == 3 + 5 + 5


def test_activity_empty_keeps_roles() -> None:
    result = activity(messages_frame([]))

    assert result.empty
    assert list(result.columns) == ["user", "assistant"]
    assert str(result.index.dtype) == UTC_NS


def test_activity_rejects_bad_frequency(messages_df: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="Invalid freq 'often'"):
        activity(messages_df, "often")


# Plots


def test_plot_messages_per_session(
    messages_df: pd.DataFrame, sessions_df: pd.DataFrame
) -> None:
    summary = session_summary(messages_df, sessions_df)

    figure = plot_messages_per_session(summary, top=2)

    assert isinstance(figure, Figure)
    axes = figure.axes[0]
    labels = [label.get_text() for label in axes.get_yticklabels()]
    assert labels == ["Refactor the parser", "Refactor the parser (fork #1)"]
    assert figure._repr_png_().startswith(PNG_SIGNATURE)  # type: ignore[attr-defined]


def test_plot_titles_with_dollar_signs(
    messages_df: pd.DataFrame, sessions_df: pd.DataFrame
) -> None:
    summary = session_summary(messages_df, sessions_df)

    figure = plot_messages_per_session(summary)

    labels = [label.get_text() for label in figure.axes[0].get_yticklabels()]
    assert r"Costs \$5 or \$6?" in labels
    assert figure._repr_png_().startswith(PNG_SIGNATURE)  # type: ignore[attr-defined]


def test_plot_latency(messages_df: pd.DataFrame, sessions_df: pd.DataFrame) -> None:
    figure = plot_latency(messages_df, sessions_df)

    labels = [label.get_text() for label in figure.axes[0].get_yticklabels()]
    assert labels == ["Refactor the parser", "Refactor the parser (fork #1)"]
    assert figure.axes[0].get_xlabel() == "latency per turn (s)"
    assert figure._repr_png_().startswith(PNG_SIGNATURE)  # type: ignore[attr-defined]


def test_plot_activity(messages_df: pd.DataFrame) -> None:
    figure = plot_activity(messages_df, "5min")

    axes = figure.axes[0]
    assert [text.get_text() for text in axes.get_legend().get_texts()] == [
        "user",
        "assistant",
    ]
    assert len(axes.patches) == 2 * 11
    assert figure._repr_png_().startswith(PNG_SIGNATURE)  # type: ignore[attr-defined]


def test_plots_of_empty_frames() -> None:
    empty = messages_frame([])

    figures = [
        plot_messages_per_session(session_summary(empty)),
        plot_latency(empty),
        plot_activity(empty),
    ]

    for figure in figures:
        assert isinstance(figure, Figure)
        assert figure._repr_png_().startswith(PNG_SIGNATURE)  # type: ignore[attr-defined]


def test_plots_reject_bad_top(messages_df: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="Invalid top 0"):
        plot_latency(messages_df, top=0)


def test_import_analysis_without_display_libraries() -> None:
    code = (
        "import sys, opencode_notebook.frames, opencode_notebook.analysis; "
        "print(sorted(m for m in ('IPython', 'ipywidgets', 'matplotlib.pyplot') "
        "if m in sys.modules))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert output.stdout.strip() == "[]"


def test_plot_leaves_no_pyplot_state() -> None:
    code = (
        "import sys; from opencode_notebook.analysis import plot_activity; "
        "from opencode_notebook.frames import messages_frame; "
        "plot_activity(messages_frame([{'id': 'm', 'role': 'user', 'content': '', "
        "'timestamp': '2026-03-03T10:00:00Z'}]))._repr_png_(); "
        "print('matplotlib.pyplot' in sys.modules)"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert output.stdout.strip() == "False"


# The real chain: offline model, OpenCode and the gateway.


@pytest.fixture(scope="module")
def recorded(chain: Any) -> Iterator[tuple[pd.DataFrame, pd.DataFrame, str, str]]:
    """Two prompts, a fork and a prompt to the fork, through the gateway."""
    client = OpenCodeClient(chain.gateway_url, port=chain.opencode_ports[0])
    root = client.create_session("analysis on the chain")
    client.prompt(root.id, "first question", model="local/echo")
    client.prompt(root.id, "second question", model="local/echo")
    fork = client.fork_session(root.id, title="analysis fork")
    client.prompt(fork.id, "[[tool bash: echo hi]]", model="local/echo")
    sessions = sessions_frame(
        [client.get_session(root.id), client.get_session(fork.id)]
    )
    messages = messages_frame({i: client.list_messages(i) for i in (root.id, fork.id)})
    yield messages, sessions, root.id, fork.id
    client.delete_session(fork.id)
    client.delete_session(root.id)
    client.close()


def test_chain_summary_and_lineage(
    recorded: tuple[pd.DataFrame, pd.DataFrame, str, str],
) -> None:
    messages, sessions, root, fork = recorded

    summary = session_summary(messages, sessions)
    lineage = fork_lineage(sessions)
    totals = rollup(summary, lineage)
    latencies = turn_latencies(messages, sessions)

    assert summary.loc[root, "turns"] == 2
    assert summary.loc[fork, "turns"] == 1
    assert summary.loc[fork, "inherited_messages"] == 4
    assert summary.loc[fork, "assistant_messages"] == 2
    assert summary.loc[fork, "parentID"] == root
    assert lineage.loc[fork, "depth"] == 1
    assert lineage.loc[root, "descendants"] == 1
    assert totals.loc[root, "turns"] == 3
    assert (latencies["latency"] >= pd.Timedelta(0)).all()
    assert latencies["steps"].tolist() == [1, 1, 2]
    assert summary["input_tokens"].notna().all()
    assert_series_equal(
        totals["sessions"],
        pd.Series([1, 2], index=totals.index, dtype="Int64", name="sessions"),
        check_index=False,
    )


def test_chain_first_activity_after_creation(
    recorded: tuple[pd.DataFrame, pd.DataFrame, str, str],
) -> None:
    messages, sessions, _, fork = recorded

    summary = session_summary(messages, sessions)
    created = sessions.set_index("id")["createdAt"]

    assert summary.loc[fork, "first_activity"] >= created[fork]
    assert isinstance(summary.loc[fork, "first_activity"], datetime)
