"""
Sessions and messages as pandas DataFrames with documented columns and dtypes.

`sessions_frame` and `messages_frame` take what the client returns (`Session` and
`Message` objects), the contract's JSON or OpenCode's own JSON, and always give the
same columns with the same dtypes, even for no rows. `all_messages_frame` fetches
the messages of many sessions concurrently and builds one frame.

To save a frame and load it back with the same dtypes::

    messages.to_parquet("messages.parquet")
    messages = read_messages_parquet("messages.parquet")

    messages.to_csv("messages.csv", index=False)
    messages = read_messages_csv("messages.csv")

and likewise `read_sessions_parquet` and `read_sessions_csv`. CSV stores no dtypes,
so its readers rebuild them from `MESSAGE_DTYPES` and `SESSION_DTYPES`.

The column dtypes and conversions live in `_columns.py`, the concurrent fetching in
`fetch.py`, and the readers in `frames_io.py`. This module re-exports their public
names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from opencode_notebook import native
from opencode_notebook._columns import (
    MESSAGE_DTYPES,
    ROLES,
    SESSION_DTYPES,
    _build,
    _objects,
)
from opencode_notebook._columns import UTC_NS as UTC_NS
from opencode_notebook.fetch import aall_messages_frame, all_messages_frame
from opencode_notebook.frames_io import (
    read_messages_csv,
    read_messages_parquet,
    read_sessions_csv,
    read_sessions_parquet,
)
from opencode_notebook.models import Message, Session

__all__ = [
    "MESSAGE_DTYPES",
    "ROLES",
    "SESSION_DTYPES",
    "aall_messages_frame",
    "all_messages_frame",
    "messages_frame",
    "read_messages_csv",
    "read_messages_parquet",
    "read_sessions_csv",
    "read_sessions_parquet",
    "sessions_frame",
]

_TOKEN_COLUMNS = (
    "input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
)
_NO_TOKENS: tuple[Any, ...] = (None,) * len(_TOKEN_COLUMNS)

SessionsInput = Session | Mapping[str, Any] | Iterable[Session | Mapping[str, Any]]
MessagesInput = Message | Mapping[str, Any] | Iterable[Message | Mapping[str, Any]]


# Reading the input


def _items(data: object, kind: str) -> list[Any]:
    if isinstance(data, Mapping | Session | Message):
        return [data]
    if isinstance(data, str | bytes) or not isinstance(data, Iterable):
        raise TypeError(
            f"Invalid {kind}s {data!r}: give a list of {kind.capitalize()} objects "
            "or JSON objects."
        )
    return list(data)


def _as_session(item: object) -> Session:
    if isinstance(item, Session):
        return item
    if not isinstance(item, Mapping):
        raise TypeError(
            f"Invalid session {item!r}: expected a Session or a JSON object."
        )
    if "createdAt" not in item and isinstance(item.get("time"), Mapping):
        if "id" not in item:
            raise ValueError(f"Invalid session {item!r}: the field 'id' is missing.")
        item = native.session_to_contract(item)
    return Session.from_json(item)


def _as_message(item: object) -> Message:
    if isinstance(item, Message):
        return item
    if not isinstance(item, Mapping):
        raise TypeError(
            f"Invalid message {item!r}: expected a Message or a JSON object."
        )
    if "info" in item:
        entry = item
    elif "timestamp" not in item and isinstance(item.get("time"), Mapping):
        # A bare OpenCode message `info`, perhaps with its parts beside it.
        entry = {"info": item, "parts": item.get("parts") or []}
    else:
        return Message.from_json(item)
    info = entry.get("info")
    if not isinstance(info, Mapping) or "id" not in info:
        raise ValueError(f"Invalid message {item!r}: the field 'id' is missing.")
    return Message.from_json(native.message_to_contract(entry))


def _is_session_mapping(data: Mapping[str, Any]) -> bool:
    # `{session_id: [messages]}`, as `AsyncOpenCodeClient.gather_messages` returns.
    # A message's own JSON always has a string `id`, so it never matches.
    return all(isinstance(value, list | tuple) for value in data.values())


def _token_counts(tokens: object) -> tuple[Any, ...]:
    if not isinstance(tokens, Mapping):
        return _NO_TOKENS
    cache = tokens.get("cache")
    if not isinstance(cache, Mapping):
        cache = {}
    return (
        tokens.get("input"),
        tokens.get("output"),
        tokens.get("reasoning"),
        cache.get("read"),
        cache.get("write"),
    )


def _session_model(model: object) -> str | None:
    # OpenCode records the last model as `{"id", "providerID", "variant"}`.
    if isinstance(model, Mapping):
        provider, name = (
            model.get("providerID"),
            model.get("id") or model.get("modelID"),
        )
        return f"{provider}/{name}" if provider and name else None
    return str(model) if model else None


def _error_text(error: object) -> str | None:
    if error is None or error == "":
        return None
    if isinstance(error, Mapping):
        return native.assistant_error({"error": error})
    return str(error)


# Sessions


def sessions_frame(sessions: SessionsInput) -> pd.DataFrame:
    """
    Build a DataFrame with one row per session, newest update first.

    Parameters
    ----------
    sessions : list of Session or dict, or one of them
        `Session` objects as the client returns them, the contract's JSON, or
        OpenCode's own session JSON (times in `time.created` / `time.updated` as
        epoch milliseconds). A single session is wrapped in a list.

    Returns
    -------
    pandas.DataFrame
        Sorted by `updatedAt`, newest first; sessions updated at the same instant
        keep their input order. The columns are always present, even with no rows,
        with the dtypes in `SESSION_DTYPES`:

        * ``id``, ``title`` (string).
        * ``parentID`` (string): the session a fork was made from; ``<NA>`` for a
          session that is not a fork.
        * ``createdAt``, ``updatedAt`` (datetime64[ns, UTC]).
        * ``slug``, ``directory``, ``projectID`` (string): OpenCode's short name,
          working directory and project of the session.
        * ``agent``, ``model`` (string): the agent and the ``provider/model`` used
          last.
        * ``input_tokens``, ``output_tokens``, ``reasoning_tokens``,
          ``cache_read_tokens``, ``cache_write_tokens`` (Int64): token totals.
        * ``cost`` (Float64): the total cost in US dollars.

          OpenCode 1.18.33 counts a fork's copies of its parent's messages in
          the fork's totals, so summing these over forks counts them twice.
          `analysis.session_summary` with the sessions counts each message once.
        * ``additions``, ``deletions``, ``changed_files`` (Int64): the session's
          changes to files.
        * ``archivedAt`` (datetime64[ns, UTC]).

        Fields the server does not send are ``<NA>`` or ``NaT``.

    Examples
    --------
    >>> df = sessions_frame([
    ...     {"id": "ses_b", "title": "Plan", "createdAt": "2026-03-01T10:00:00Z",
    ...      "updatedAt": "2026-03-01T10:05:00.5Z"},
    ...     {"id": "ses_a", "title": "Plan (fork #1)", "parentID": "ses_b",
    ...      "time": {"created": 1772532000000, "updated": 1772532060000}},
    ... ])
    >>> df[["id", "title", "parentID", "updatedAt"]]
          id           title parentID                     updatedAt
    0  ses_a  Plan (fork #1)    ses_b 2026-03-03 10:01:00.000+00:00
    1  ses_b            Plan     <NA> 2026-03-01 10:05:00.500+00:00
    """
    items = [_as_session(item) for item in _items(sessions, "session")]
    columns: dict[str, list[Any]] = {name: [] for name in SESSION_DTYPES}
    for session in items:
        extra = session.extra
        summary = extra.get("summary")
        if not isinstance(summary, Mapping):
            summary = {}
        columns["id"].append(session.id)
        columns["title"].append(session.title)
        columns["parentID"].append(session.parent_id)
        columns["createdAt"].append(session.created_at)
        columns["updatedAt"].append(session.updated_at)
        for name in ("slug", "directory", "projectID", "agent"):
            value = extra.get(name)
            columns[name].append(str(value) if value else None)
        columns["model"].append(_session_model(extra.get("model")))
        for name, count in zip(
            _TOKEN_COLUMNS, _token_counts(extra.get("tokens")), strict=True
        ):
            columns[name].append(count)
        columns["cost"].append(extra.get("cost"))
        columns["additions"].append(summary.get("additions"))
        columns["deletions"].append(summary.get("deletions"))
        columns["changed_files"].append(summary.get("files"))
        columns["archivedAt"].append(extra.get("archivedAt"))
    frame = pd.DataFrame(_build(columns, SESSION_DTYPES))
    updated = frame["updatedAt"].to_numpy(dtype="int64")
    order = np.argsort(-updated, kind="stable")
    return frame.take(order).reset_index(drop=True)


# Messages


def messages_frame(
    messages: MessagesInput | Mapping[str, Sequence[Message | Mapping[str, Any]]],
    session_id: str | None = None,
) -> pd.DataFrame:
    """
    Build a DataFrame with one row per message, oldest first in each session.

    Parameters
    ----------
    messages : list of Message or dict, one of them, or dict of lists
        `Message` objects as the client returns them, the contract's JSON, or
        OpenCode's own message JSON (`{"info": ..., "parts": [...]}`, times as epoch
        milliseconds). A single message is wrapped in a list. A dict mapping
        session ids to lists of messages, as `gather_messages` returns, gives the
        messages of many sessions.
    session_id : str, optional
        The session the messages belong to; it fills the ``session_id`` column.
        Without it, each message's own ``sessionID`` field is used where present.

    Returns
    -------
    pandas.DataFrame
        Sessions in order of first appearance; in each, messages sorted by
        ``timestamp``, oldest first, keeping their input order for equal times.
        The columns are always present, even with no rows, with the dtypes in
        `MESSAGE_DTYPES`:

        * ``session_id``, ``id`` (string).
        * ``role`` (category): ``user`` and ``assistant``, then any other role
          the server sent.
        * ``content`` (string): the text; ``""`` for a message with no text, such
          as a step that only called a tool.
        * ``timestamp`` (datetime64[ns, UTC]): when the message was created.
        * ``model`` (string): ``provider/model``.
        * ``agent`` (string).
        * ``input_tokens``, ``output_tokens``, ``reasoning_tokens``,
          ``cache_read_tokens``, ``cache_write_tokens`` (Int64).
        * ``cost`` (Float64): in US dollars.
        * ``completed_at`` (datetime64[ns, UTC]): when an assistant message was
          finished.
        * ``duration`` (timedelta64[ns]): ``completed_at - timestamp``.
        * ``parent_id`` (string): for an assistant message, the id of the user
          message it replies to.
        * ``finish`` (string): why the model stopped, such as ``stop`` or
          ``tool-calls``.
        * ``error`` (string): ``Name: message`` of a failed assistant message.

        Fields the server does not send are ``<NA>`` or ``NaT``; the contract
        alone gives only ``id``, ``role``, ``content`` and ``timestamp``.

    Examples
    --------
    >>> df = messages_frame([
    ...     {"id": "msg_1", "role": "user", "content": "hi",
    ...      "timestamp": "2026-03-03T10:00:00Z"},
    ...     {"id": "msg_2", "role": "assistant", "content": "Echo: hi",
    ...      "timestamp": "2026-03-03T10:00:00.250Z", "parentID": "msg_1",
    ...      "completedAt": "2026-03-03T10:00:01.100Z", "providerID": "local",
    ...      "modelID": "echo", "tokens": {"input": 5, "output": 5}},
    ... ], session_id="ses_1")
    >>> df[["session_id", "id", "role", "content", "model", "duration"]]
      session_id     id       role   content       model               duration
    0      ses_1  msg_1       user        hi        <NA>                    NaT
    1      ses_1  msg_2  assistant  Echo: hi  local/echo 0 days 00:00:00.850000
    """
    if session_id is not None and (
        not isinstance(session_id, str) or not session_id.strip()
    ):
        raise ValueError(
            f"Invalid session_id {session_id!r}: give a session id such as 'ses_1'."
        )
    items: list[Message] = []
    sessions: list[str | None] | None = None
    if isinstance(messages, Mapping) and _is_session_mapping(messages):
        if session_id is not None:
            raise ValueError(
                "Give either session_id or a dict of session ids to messages, not both."
            )
        keys: list[str | None] = []
        for key, group in messages.items():
            converted = [_as_message(item) for item in group]
            items.extend(converted)
            keys.extend([str(key)] * len(converted))
        sessions = keys
    else:
        given = _items(messages, "message")
        # Messages from the client need no conversion, and one check of the set of
        # types is faster than a call per message.
        if set(map(type, given)) <= {Message}:
            items = given
        else:
            items = [_as_message(item) for item in given]
        sessions = None if session_id is None else [session_id] * len(items)
    frame = pd.DataFrame(_build(_message_columns(items, sessions), MESSAGE_DTYPES))
    frame["duration"] = frame["completed_at"] - frame["timestamp"]
    return _chronological(frame)


# The fields of a message's `extra` that become columns.
_EXTRA_FIELDS = (
    "sessionID",
    "parentID",
    "agent",
    "providerID",
    "modelID",
    "tokens",
    "cost",
    "finish",
    "completedAt",
    "error",
)


def _fields(
    mappings: Sequence[Any] | np.ndarray, keys: Sequence[str]
) -> dict[str, np.ndarray]:
    """
    Look up `keys` in each mapping, giving one read-only object array per key.

    The DataFrame constructor does the lookups in compiled code, about twice as
    fast as a comprehension per key. A missing key, or an entry that is not a
    mapping, gives NaN.
    """
    rows = mappings.tolist() if isinstance(mappings, np.ndarray) else list(mappings)
    # A set of the types is much faster to check than an isinstance call per
    # entry, so entries are checked one by one only when other types turn up.
    if set(map(type, rows)) <= {dict}:
        table = pd.DataFrame(rows, columns=list(keys), dtype=object)
        return {key: table[key].to_numpy() for key in keys}
    array = _objects(rows)
    present = pd.notna(array)
    if not set(map(type, array[present].tolist())) <= {dict}:
        present = np.fromiter(
            (isinstance(row, Mapping) for row in rows), bool, len(rows)
        )
    table = pd.DataFrame(array[present].tolist(), columns=list(keys), dtype=object)
    fields = {}
    for key in keys:
        column = np.full(len(array), np.nan, dtype=object)
        column[present] = table[key].to_numpy()
        fields[key] = column
    return fields


def _blank_to_missing(values: np.ndarray) -> np.ndarray:
    array = values.copy()
    array[array == ""] = None
    return array


def _model_names(providers: np.ndarray, models: np.ndarray) -> np.ndarray:
    """Join provider and model ids as `provider/model`, None where either is empty."""
    # Most messages share a few models, so each distinct pair is joined once. Codes
    # are shifted by one so that 0, not -1, marks a missing id.
    try:
        provider_codes, provider_ids = pd.factorize(providers)
        model_codes, model_ids = pd.factorize(models)
    except TypeError:
        # An unhashable id, such as a JSON object, is joined as its text.
        return _model_names(providers.astype(str), models.astype(str))
    base = len(model_ids) + 1
    pair_codes, pairs = pd.factorize((provider_codes + 1) * base + model_codes + 1)
    names = []
    for pair in pairs.tolist():
        provider_code, model_code = divmod(pair, base)
        provider = provider_ids[provider_code - 1] if provider_code else None
        model = model_ids[model_code - 1] if model_code else None
        names.append(f"{provider}/{model}" if provider and model else None)
    return np.array(names, dtype=object)[pair_codes]


def _error_texts(values: np.ndarray) -> np.ndarray:
    errors = values.copy()
    present = pd.notna(errors)
    errors[present] = [_error_text(error) for error in errors[present].tolist()]
    return errors


def _message_columns(
    items: Sequence[Message], sessions: list[str | None] | None
) -> dict[str, Any]:
    """Pull the messages' fields into one array or list per column."""
    extra = _fields([message.extra for message in items], _EXTRA_FIELDS)
    tokens = _fields(extra["tokens"], ("input", "output", "reasoning", "cache"))
    cache = _fields(tokens["cache"], ("read", "write"))
    return {
        "session_id": extra["sessionID"] if sessions is None else sessions,
        "id": [message.id for message in items],
        "role": [message.role for message in items],
        "content": [message.content for message in items],
        "timestamp": [message.timestamp for message in items],
        "model": _model_names(extra["providerID"], extra["modelID"]),
        "agent": _blank_to_missing(extra["agent"]),
        "input_tokens": tokens["input"],
        "output_tokens": tokens["output"],
        "reasoning_tokens": tokens["reasoning"],
        "cache_read_tokens": cache["read"],
        "cache_write_tokens": cache["write"],
        "cost": extra["cost"],
        "completed_at": extra["completedAt"],
        "duration": [None] * len(items),
        "parent_id": _blank_to_missing(extra["parentID"]),
        "finish": _blank_to_missing(extra["finish"]),
        "error": _error_texts(extra["error"]),
    }


def _chronological(frame: pd.DataFrame) -> pd.DataFrame:
    # Sessions stay in order of first appearance. lexsort is stable, so messages
    # with equal timestamps keep their input order.
    codes, _ = pd.factorize(frame["session_id"], use_na_sentinel=False)
    times = frame["timestamp"].to_numpy(dtype="int64")
    order = np.lexsort((times, codes))
    if bool((order == np.arange(len(order))).all()):
        return frame
    return frame.take(order).reset_index(drop=True)
