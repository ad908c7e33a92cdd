"""
Conversation statistics and plots built on the frames of `frames.py`.

`session_summary` gives one row per session: turns, messages, characters, activity,
response latency, tokens and cost. `fork_lineage` places each session in its tree
of forks, and `rollup` totals a session with all of its forks. `turn_latencies`
lists the latency of each prompt and `activity` counts messages per period. The
plots live in `plots.py` and are re-exported here.

A fork starts with a copy of its parent's messages, with their original times.
Given the sessions, `session_summary` counts a fork's messages from before its
creation as inherited and leaves them out of the fork's own figures, so that a
`rollup` counts each message once.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from types import MappingProxyType

import numpy as np
import pandas as pd
from pandas.api.types import pandas_dtype

from opencode_notebook.frames import MESSAGE_DTYPES, UTC_NS
from opencode_notebook.plots import (
    plot_activity,
    plot_latency,
    plot_messages_per_session,
)

__all__ = [
    "SUMMARY_DTYPES",
    "activity",
    "fork_lineage",
    "plot_activity",
    "plot_latency",
    "plot_messages_per_session",
    "rollup",
    "session_summary",
    "turn_latencies",
]

_REQUIRED_MESSAGE_COLUMNS = ("session_id", "id", "role", "content", "timestamp")
_TOKEN_COLUMNS = (
    "input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
)
# Summary columns that add up over a tree of forks.
_ADDITIVE_COLUMNS = (
    "messages",
    "turns",
    "assistant_messages",
    "errors",
    "user_chars",
    "assistant_chars",
    "latency_total",
    *_TOKEN_COLUMNS,
    "cost",
)

# The columns of `session_summary`, in order, and their dtypes.
SUMMARY_DTYPES: Mapping[str, str] = MappingProxyType(
    {
        "title": "string",
        "parentID": "string",
        "messages": "Int64",
        "turns": "Int64",
        "assistant_messages": "Int64",
        "errors": "Int64",
        "inherited_messages": "Int64",
        "user_chars": "Int64",
        "assistant_chars": "Int64",
        "first_activity": UTC_NS,
        "last_activity": UTC_NS,
        "latency_median": "timedelta64[ns]",
        "latency_mean": "timedelta64[ns]",
        "latency_max": "timedelta64[ns]",
        "latency_total": "timedelta64[ns]",
        **dict.fromkeys(_TOKEN_COLUMNS, "Int64"),
        "cost": "Float64",
    }
)


# Checking input


def _messages(messages_df: pd.DataFrame) -> pd.DataFrame:
    """Return the messages with every frame column, in chronological order."""
    if not isinstance(messages_df, pd.DataFrame):
        raise TypeError(
            f"Invalid messages {type(messages_df).__name__}: give the DataFrame "
            "that messages_frame() builds."
        )
    missing = [name for name in _REQUIRED_MESSAGE_COLUMNS if name not in messages_df]
    if missing:
        raise ValueError(
            f"The messages DataFrame has no column {', '.join(missing)}: build it "
            "with messages_frame() or all_messages_frame()."
        )
    frame = messages_df.reset_index(drop=True)
    for name, dtype in MESSAGE_DTYPES.items():
        if name not in frame:
            missing_values = pd.Series(pd.NA, index=frame.index)
            frame[name] = missing_values.astype(pandas_dtype(dtype))
    frame["timestamp"] = _utc(frame["timestamp"], "timestamp")
    frame["completed_at"] = _utc(frame["completed_at"], "completed_at")
    codes, _ = pd.factorize(frame["session_id"], use_na_sentinel=False)
    order = np.lexsort((frame["timestamp"].to_numpy(dtype="int64"), codes))
    return frame.take(order).reset_index(drop=True)


def _utc(column: pd.Series, name: str) -> pd.Series:
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        converted: pd.Series = column.dt.tz_convert("UTC")
        return converted.astype(pandas_dtype(UTC_NS))
    try:
        parsed = pd.to_datetime(column, format="ISO8601", utc=True)
        return parsed.astype(pandas_dtype(UTC_NS))
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"Invalid times in column {name!r}: {exc}. Build the frame with "
            "messages_frame()."
        ) from exc


def _sessions(sessions_df: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(sessions_df, pd.DataFrame):
        raise TypeError(
            f"Invalid sessions {type(sessions_df).__name__}: give the DataFrame "
            "that sessions_frame() builds."
        )
    missing = [name for name in ("id", "parentID") if name not in sessions_df]
    if missing:
        raise ValueError(
            f"The sessions DataFrame has no column {', '.join(missing)}: build it "
            "with sessions_frame()."
        )
    duplicated = sessions_df["id"][sessions_df["id"].duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"Duplicate session ids {duplicated}: give each session once.")
    return sessions_df


# Turns and latency


def _turn_numbers(messages: pd.DataFrame) -> pd.Series:
    """Number the turns of each session: 1 from its first user message on."""
    is_user = (messages["role"] == "user").fillna(False).astype("int64")
    return is_user.groupby(messages["session_id"], dropna=False, sort=False).cumsum()


def _inherited(messages: pd.DataFrame, sessions_df: pd.DataFrame | None) -> pd.Series:
    """Mark a fork's messages from before its creation: copies of its parent's."""
    if sessions_df is None or "createdAt" not in sessions_df:
        return pd.Series(False, index=messages.index)
    forks = sessions_df[sessions_df["parentID"].notna()]
    created = pd.Series(
        _utc(forks["createdAt"], "createdAt").to_numpy(), index=forks["id"].to_numpy()
    )
    fork_created = messages["session_id"].map(created)
    inherited = messages["timestamp"] < fork_created
    return inherited.fillna(False).astype(bool)


def turn_latencies(
    messages_df: pd.DataFrame, sessions_df: pd.DataFrame | None = None
) -> pd.DataFrame:
    """
    List the response latency of each prompt.

    A turn is a user message and the assistant messages after it, up to the next
    user message. A prompt that runs tools has several. Its latency runs from the
    user message's ``timestamp`` to the end of the last of those assistant
    messages: their ``completed_at``, or their ``timestamp`` where the server sent
    no completion time. Prompts with no reply are left out.

    Parameters
    ----------
    messages_df : pandas.DataFrame
        Messages as `messages_frame` builds them.
    sessions_df : pandas.DataFrame, optional
        Sessions as `sessions_frame` builds them. With them, the turns a fork
        copied from its parent are left out.

    Returns
    -------
    pandas.DataFrame
        One row per answered prompt, in chronological order per session, with
        ``session_id``, ``message_id`` (the user message), ``prompted_at``,
        ``answered_at``, ``latency`` (timedelta64[ns]) and ``steps`` (the number
        of assistant messages).

    Examples
    --------
    >>> from opencode_notebook.frames import messages_frame
    >>> messages = messages_frame([
    ...     {"id": "m1", "role": "user", "content": "hi",
    ...      "timestamp": "2026-03-03T10:00:00Z"},
    ...     {"id": "m2", "role": "assistant", "content": "Echo: hi",
    ...      "timestamp": "2026-03-03T10:00:00.100Z",
    ...      "completedAt": "2026-03-03T10:00:01.500Z"},
    ... ], session_id="ses_1")
    >>> turn_latencies(messages)[["session_id", "message_id", "latency", "steps"]]
      session_id message_id                latency  steps
    0      ses_1         m1 0 days 00:00:01.500000      1
    """
    messages = _messages(messages_df)
    if sessions_df is not None:
        messages = messages[~_inherited(messages, _sessions(sessions_df))]
    messages = messages.assign(turn=_turn_numbers(messages))
    keys = ["session_id", "turn"]
    users = messages[messages["role"] == "user"].set_index(keys)
    replies = messages[(messages["role"] == "assistant") & (messages["turn"] > 0)]
    ends = replies["completed_at"].fillna(replies["timestamp"])
    grouped = ends.groupby([replies["session_id"], replies["turn"]], dropna=False)
    answers = pd.DataFrame({"answered_at": grouped.max(), "steps": grouped.size()})
    joined = users[["id", "timestamp"]].join(answers, how="inner")
    result = pd.DataFrame(
        {
            "session_id": joined.index.get_level_values("session_id"),
            "message_id": joined["id"].to_numpy(),
            "prompted_at": joined["timestamp"].to_numpy(),
            "answered_at": joined["answered_at"].to_numpy(),
        }
    )
    result = result.astype(
        {
            "session_id": "string",
            "message_id": "string",
            "prompted_at": UTC_NS,
            "answered_at": UTC_NS,
        }
    )
    result["latency"] = result["answered_at"] - result["prompted_at"]
    result["steps"] = pd.array(joined["steps"].to_numpy(), dtype="Int64")
    return result


# Per session


def session_summary(
    messages_df: pd.DataFrame, sessions_df: pd.DataFrame | None = None
) -> pd.DataFrame:
    """
    Summarise each session's conversation.

    Parameters
    ----------
    messages_df : pandas.DataFrame
        Messages as `messages_frame` or `all_messages_frame` builds them.
    sessions_df : pandas.DataFrame, optional
        Sessions as `sessions_frame` builds them. They add ``title`` and
        ``parentID``, add rows for sessions without messages, and order the rows
        as the sessions are (newest update first). They also let the summary tell
        a fork's inherited messages apart: those from before the fork was created,
        which are copies of its parent's. Inherited messages are counted in
        ``inherited_messages`` and left out of every other figure.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``session_id``; without `sessions_df`, in order of first
        appearance in `messages_df`. Columns:

        * ``title``, ``parentID`` (string): ``<NA>`` without `sessions_df`.
        * ``messages``, ``turns`` (user messages, one per prompt),
          ``assistant_messages`` (one per model step) and ``errors`` (failed
          assistant messages) (Int64).
        * ``inherited_messages`` (Int64): ``<NA>`` without `sessions_df`.
        * ``user_chars``, ``assistant_chars`` (Int64): characters of text.
        * ``first_activity``, ``last_activity`` (datetime64[ns, UTC]): the first
          message's creation and the last message's completion.
        * ``latency_median``, ``latency_mean``, ``latency_max``,
          ``latency_total`` (timedelta64[ns]): over the session's turns, as
          `turn_latencies` measures them.
        * ``input_tokens``, ``output_tokens``, ``reasoning_tokens``,
          ``cache_read_tokens``, ``cache_write_tokens`` (Int64) and ``cost``
          (Float64, US dollars): sums, ``<NA>`` where the server reported none.

    Examples
    --------
    >>> from opencode_notebook.frames import messages_frame
    >>> messages = messages_frame([
    ...     {"id": "m1", "role": "user", "content": "hi",
    ...      "timestamp": "2026-03-03T10:00:00Z"},
    ...     {"id": "m2", "role": "assistant", "content": "Echo: hi",
    ...      "timestamp": "2026-03-03T10:00:00.100Z",
    ...      "completedAt": "2026-03-03T10:00:01.500Z",
    ...      "tokens": {"input": 5, "output": 3}, "cost": 0.002},
    ... ], session_id="ses_1")
    >>> session_summary(messages)[["turns", "latency_max", "output_tokens", "cost"]]
                turns            latency_max  output_tokens   cost
    session_id
    ses_1           1 0 days 00:00:01.500000              3  0.002
    """
    messages = _messages(messages_df)
    unassigned = int(messages["session_id"].isna().sum())
    if unassigned:
        raise ValueError(
            f"{unassigned} messages have no session_id: build the frame with "
            "messages_frame(messages, session_id=...)."
        )
    sessions = None if sessions_df is None else _sessions(sessions_df)
    inherited = _inherited(messages, sessions)
    own = messages[~inherited]
    is_user = own["role"] == "user"
    is_assistant = own["role"] == "assistant"
    chars = own["content"].fillna("").str.len().astype("int64")
    prepared = pd.DataFrame(
        {
            "session_id": own["session_id"],
            "id": own["id"],
            "turns": is_user.astype("int64"),
            "assistant_messages": is_assistant.astype("int64"),
            "errors": (is_assistant & own["error"].notna()).astype("int64"),
            "user_chars": chars.where(is_user, 0),
            "assistant_chars": chars.where(is_assistant, 0),
            "first_activity": own["timestamp"],
            "last_activity": own["completed_at"].fillna(own["timestamp"]),
        }
    )
    grouped = prepared.groupby("session_id", sort=False, dropna=False)
    counted = grouped.agg(
        messages=("id", "count"),
        turns=("turns", "sum"),
        assistant_messages=("assistant_messages", "sum"),
        errors=("errors", "sum"),
        user_chars=("user_chars", "sum"),
        assistant_chars=("assistant_chars", "sum"),
        first_activity=("first_activity", "min"),
        last_activity=("last_activity", "max"),
    )
    usage = (
        own[["session_id", *_TOKEN_COLUMNS, "cost"]]
        .groupby("session_id", sort=False, dropna=False)
        .sum(min_count=1)
    )
    turns = turn_latencies(messages, sessions)
    latency = turns.groupby("session_id", sort=False, dropna=False)["latency"].agg(
        ["median", "mean", "max", "sum"]
    )
    latency.columns = pd.Index(
        ["latency_median", "latency_mean", "latency_max", "latency_total"]
    )
    inherited_count = inherited.groupby(messages["session_id"], sort=False).sum()
    summary = pd.concat([counted, latency, usage], axis=1)
    summary["inherited_messages"] = inherited_count if sessions is not None else pd.NA
    return _finish_summary(summary, messages, sessions)


# Counts that are zero, not missing, for a session without messages.
_COUNT_COLUMNS = (
    "messages",
    "turns",
    "assistant_messages",
    "errors",
    "user_chars",
    "assistant_chars",
)


def _finish_summary(
    summary: pd.DataFrame, messages: pd.DataFrame, sessions: pd.DataFrame | None
) -> pd.DataFrame:
    """Order the rows, add the sessions' titles and parents, and set the dtypes."""
    seen = [str(i) for i in pd.unique(messages["session_id"].dropna())]
    if sessions is None:
        order = seen
    else:
        listed = [str(i) for i in sessions["id"]]
        known = set(listed)
        order = [*listed, *(i for i in seen if i not in known)]
        details = sessions.set_index(sessions["id"].astype(str))
        summary = summary.reindex(order)
        summary["title"] = details.get("title", pd.NA)
        summary["parentID"] = details["parentID"]
    summary = summary.reindex(pd.Index(order, dtype="string", name="session_id"))
    for name in _COUNT_COLUMNS:
        summary[name] = summary[name].fillna(0)
    if sessions is not None:
        summary["inherited_messages"] = summary["inherited_messages"].fillna(0)
    for name in SUMMARY_DTYPES:
        if name not in summary:
            summary[name] = pd.NA
    return summary[list(SUMMARY_DTYPES)].astype(dict(SUMMARY_DTYPES))


# Forks


def fork_lineage(sessions_df: pd.DataFrame) -> pd.DataFrame:
    """
    Place each session in its tree of forks.

    Parameters
    ----------
    sessions_df : pandas.DataFrame
        Sessions as `sessions_frame` builds them, or any frame with ``id`` and
        ``parentID`` columns.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``session_id``, in the order of `sessions_df`, with
        ``parentID`` (string) as given, ``root`` (string: the first session of
        the tree), ``depth`` (Int64: 0 for a root), ``children`` (Int64: direct
        forks) and ``descendants`` (Int64: forks at any depth). A session whose
        parent is not in the frame, such as a fork of a deleted session, is a
        root: depth 0, its own root, and its ``parentID`` kept.

    Raises
    ------
    ValueError
        If the parents form a cycle, such as a session that is its own parent;
        the message names the sessions in the cycle.

    Examples
    --------
    >>> sessions = pd.DataFrame({
    ...     "id": ["ses_a", "ses_b", "ses_c", "ses_d"],
    ...     "parentID": [None, "ses_a", "ses_b", "ses_gone"],
    ... })
    >>> fork_lineage(sessions)
               parentID   root  depth  children  descendants
    session_id
    ses_a          <NA>  ses_a      0         1            2
    ses_b         ses_a  ses_a      1         1            1
    ses_c         ses_b  ses_a      2         0            0
    ses_d      ses_gone  ses_d      0         0            0
    """
    sessions = _sessions(sessions_df)
    ids = [str(i) for i in sessions["id"]]
    parents = [None if pd.isna(p) else str(p) for p in sessions["parentID"]]
    known = set(ids)
    parent_of = {
        session: parent
        for session, parent in zip(ids, parents, strict=True)
        if parent is not None and parent in known
    }
    ancestors = _ancestors(ids, parent_of)
    children = dict.fromkeys(ids, 0)
    descendants = dict.fromkeys(ids, 0)
    for session, chain in ancestors.items():
        if session in parent_of:
            children[parent_of[session]] += 1
        for ancestor in chain[1:]:
            descendants[ancestor] += 1
    index = pd.Index(ids, dtype="string", name="session_id")
    return pd.DataFrame(
        {
            "parentID": pd.array(parents, dtype="string"),
            "root": pd.array([ancestors[i][-1] for i in ids], dtype="string"),
            "depth": pd.array([len(ancestors[i]) - 1 for i in ids], dtype="Int64"),
            "children": pd.array([children[i] for i in ids], dtype="Int64"),
            "descendants": pd.array([descendants[i] for i in ids], dtype="Int64"),
        },
        index=index,
    )


def _ancestors(ids: Sequence[str], parent_of: dict[str, str]) -> dict[str, list[str]]:
    """Return each session's chain up to its root: itself first, the root last."""
    chains: dict[str, list[str]] = {}
    for start in ids:
        path: list[str] = []
        on_path: set[str] = set()
        session: str | None = start
        while session is not None and session not in chains:
            if session in on_path:
                cycle = path[path.index(session) :]
                raise ValueError(
                    f"Sessions {', '.join(cycle)} are forks of each other in a "
                    "cycle: fix their parentID values."
                )
            path.append(session)
            on_path.add(session)
            session = parent_of.get(session)
        tail = chains[session] if session is not None else []
        # Fill in the chain of every session walked, from the top down.
        for position in range(len(path) - 1, -1, -1):
            tail = [path[position], *tail]
            chains[path[position]] = tail
    return chains


def rollup(summary: pd.DataFrame, lineage: pd.DataFrame) -> pd.DataFrame:
    """
    Total each session's figures with those of all of its forks.

    Parameters
    ----------
    summary : pandas.DataFrame
        From `session_summary`, built with the sessions so that each fork's
        inherited messages are left out. Otherwise a fork's copies of its
        parent's messages are counted twice, and `rollup` warns about it.
    lineage : pandas.DataFrame
        From `fork_lineage`.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``session_id``, in the order of `lineage`, then any session
        only in `summary`. ``sessions`` (Int64) counts the session and its forks;
        ``messages``, ``turns``, ``assistant_messages``, ``errors``,
        ``user_chars``, ``assistant_chars``, ``latency_total``, the token
        columns and ``cost`` are sums over them, ``first_activity`` the earliest,
        ``last_activity`` and ``latency_max`` the latest and longest.

    Examples
    --------
    >>> summary = pd.DataFrame(
    ...     {"turns": [2, 1], "cost": [0.25, 0.5], "inherited_messages": [0, 4]},
    ...     index=pd.Index(["ses_a", "ses_b"], name="session_id"),
    ... )
    >>> lineage = fork_lineage(
    ...     pd.DataFrame({"id": ["ses_a", "ses_b"], "parentID": [None, "ses_a"]})
    ... )
    >>> rollup(summary, lineage)[["sessions", "turns", "cost"]]
                sessions  turns  cost
    session_id
    ses_a              2      3  0.75
    ses_b              1      1  0.50
    """
    for frame, name in ((summary, "summary"), (lineage, "lineage")):
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"Invalid {name} {type(frame).__name__}: give a DataFrame.")
    if "descendants" not in lineage or "root" not in lineage:
        raise ValueError("Invalid lineage: build it with fork_lineage(sessions_df).")
    has_forks = bool((lineage["depth"] > 0).any()) if "depth" in lineage else False
    inherited_known = (
        "inherited_messages" in summary and summary["inherited_messages"].notna().any()
    )
    if has_forks and not inherited_known:
        warnings.warn(
            "The summary counts each fork's copies of its parent's messages; build "
            "it with session_summary(messages_df, sessions_df) to count them once.",
            UserWarning,
            stacklevel=2,
        )
    summary_ids = [str(i) for i in summary.index]
    lineage_ids = [str(i) for i in lineage.index]
    known = set(lineage_ids)
    order = [*lineage_ids, *(i for i in summary_ids if i not in known)]
    # A session of depth 0 is a root even when its parent is named but unknown.
    parent_of = {
        str(session): str(parent)
        for session, parent, depth in zip(
            lineage.index, lineage["parentID"], lineage["depth"], strict=True
        )
        if depth > 0
    }
    ancestors = _ancestors(order, parent_of)
    # One row per (session, ancestor) pair: summing by ancestor totals each tree.
    pairs = pd.DataFrame(
        [(session, ancestor) for session in order for ancestor in ancestors[session]],
        columns=["session_id", "ancestor"],
    )
    figures = summary.copy()
    figures.index = pd.Index(summary_ids, name="session_id")
    figures = figures.reindex(order)
    joined = pairs.join(figures, on="session_id")
    grouped = joined.groupby("ancestor", sort=False)
    result = pd.DataFrame(index=pd.Index(order, name="session_id"))
    result["sessions"] = grouped.size().reindex(order).astype("Int64")
    for name in _ADDITIVE_COLUMNS:
        if name in figures:
            totals = grouped[name].sum(min_count=1).reindex(order)
            result[name] = totals.astype(figures[name].dtype)
    for name, how in (
        ("first_activity", "min"),
        ("last_activity", "max"),
        ("latency_max", "max"),
    ):
        if name in figures:
            values = grouped[name].agg(how).reindex(order)
            result[name] = values.astype(figures[name].dtype)
    result.index = result.index.astype("string")
    return result


# Activity over time


def activity(messages_df: pd.DataFrame, freq: str = "1h") -> pd.DataFrame:
    """
    Count messages per period and role.

    Parameters
    ----------
    messages_df : pandas.DataFrame
        Messages as `messages_frame` builds them.
    freq : str, default "1h"
        The period, as a pandas frequency such as ``"15min"``, ``"1h"`` or
        ``"1D"``.

    Returns
    -------
    pandas.DataFrame
        Indexed by the start of each period (``period``, datetime64[ns, UTC]),
        every period from the first message to the last, with one int64 column
        per role (``user``, ``assistant``, and any other role present).

    Examples
    --------
    >>> from opencode_notebook.frames import messages_frame
    >>> messages = messages_frame([
    ...     {"id": "m1", "role": "user", "content": "hi",
    ...      "timestamp": "2026-03-03T10:05:00Z"},
    ...     {"id": "m2", "role": "assistant", "content": "Echo: hi",
    ...      "timestamp": "2026-03-03T10:05:01Z"},
    ...     {"id": "m3", "role": "user", "content": "again",
    ...      "timestamp": "2026-03-03T12:00:00Z"},
    ... ], session_id="ses_1")
    >>> activity(messages, "1h")
                               user  assistant
    period
    2026-03-03 10:00:00+00:00     1          1
    2026-03-03 11:00:00+00:00     0          0
    2026-03-03 12:00:00+00:00     1          0
    """
    messages = _messages(messages_df)
    roles = messages["role"]
    if not isinstance(roles.dtype, pd.CategoricalDtype):
        roles = roles.astype("category")
    categories = [str(role) for role in roles.cat.categories]
    counts = pd.DataFrame(
        {
            role: (roles == role).to_numpy(dtype=bool).astype("int64")
            for role in categories
        },
        index=pd.DatetimeIndex(messages["timestamp"], name="period"),
    )
    try:
        result = counts.resample(freq).sum()
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"Invalid freq {freq!r}: give a pandas frequency such as '15min', "
            "'1h' or '1D'."
        ) from exc
    result.columns = pd.Index(categories)
    return result.astype("int64")
