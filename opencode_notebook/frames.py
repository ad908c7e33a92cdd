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
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from numbers import Real
from types import MappingProxyType
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from opencode_notebook import native
from opencode_notebook.errors import SessionNotFoundError
from opencode_notebook.models import Message, Session

if TYPE_CHECKING:
    from opencode_notebook.client import AsyncOpenCodeClient, OpenCodeClient

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

logger = logging.getLogger("opencode_notebook")

UTC_NS = "datetime64[ns, UTC]"

# The contract's two roles come first. Any other role a server sends is added after
# them in sorted order, so that no message loses its role.
ROLES = ("user", "assistant")

SESSION_DTYPES: Mapping[str, str] = MappingProxyType(
    {
        "id": "string",
        "title": "string",
        "parentID": "string",
        "createdAt": UTC_NS,
        "updatedAt": UTC_NS,
        "slug": "string",
        "directory": "string",
        "projectID": "string",
        "agent": "string",
        "model": "string",
        "input_tokens": "Int64",
        "output_tokens": "Int64",
        "reasoning_tokens": "Int64",
        "cache_read_tokens": "Int64",
        "cache_write_tokens": "Int64",
        "cost": "Float64",
        "additions": "Int64",
        "deletions": "Int64",
        "changed_files": "Int64",
        "archivedAt": UTC_NS,
    }
)

MESSAGE_DTYPES: Mapping[str, str] = MappingProxyType(
    {
        "session_id": "string",
        "id": "string",
        "role": "category",
        "content": "string",
        "timestamp": UTC_NS,
        "model": "string",
        "agent": "string",
        "input_tokens": "Int64",
        "output_tokens": "Int64",
        "reasoning_tokens": "Int64",
        "cache_read_tokens": "Int64",
        "cache_write_tokens": "Int64",
        "cost": "Float64",
        "completed_at": UTC_NS,
        "duration": "timedelta64[ns]",
        "parent_id": "string",
        "finish": "string",
        "error": "string",
    }
)

# Columns that are never missing: an empty value read back from CSV is "".
_SESSION_TEXT = ("id", "title")
_MESSAGE_TEXT = ("id", "content")

_TOKEN_COLUMNS = (
    "input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
)
_NO_TOKENS: tuple[Any, ...] = (None,) * len(_TOKEN_COLUMNS)

# Epoch numbers at or above this are milliseconds, as OpenCode sends them; smaller
# ones are seconds. This is the rule `models.parse_timestamp` follows.
_MILLISECONDS_THRESHOLD = 1e11

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


# Building columns
#
# Each column is first an object array, where None and NaN both mean missing, and
# is then converted in one vectorised step. Only malformed values fall back to
# element-wise work.


def _objects(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype == object:
        return values
    # fromiter keeps each value whole: a nested list stays one element.
    return np.fromiter(values, dtype=object, count=len(values))


def _iso_to_utc(strings: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(strings, format="ISO8601", utc=True))


def _datetimes_to_utc(moments: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(moments, utc=True))


def _epoch_to_utc(numbers: np.ndarray) -> pd.DatetimeIndex:
    values = numbers.astype("float64")
    if not np.isfinite(values).all():
        raise ValueError("an epoch timestamp is not a finite number")
    milliseconds = np.where(
        np.abs(values) >= _MILLISECONDS_THRESHOLD, values, values * 1000
    )
    microseconds = np.round(milliseconds * 1000).astype("int64")
    return pd.DatetimeIndex(pd.to_datetime(microseconds, unit="us", utc=True))


def _parse_times(values: np.ndarray) -> pd.DatetimeIndex:
    """Parse present values, of one kind or several, into UTC."""
    kinds = set(map(type, values.tolist()))
    if kinds <= {str}:
        return _iso_to_utc(values)
    if all(issubclass(kind, datetime) for kind in kinds):
        return _datetimes_to_utc(values)
    if any(issubclass(kind, bool) for kind in kinds):
        raise TypeError("True and False are not timestamps")
    is_text = np.fromiter((isinstance(v, str) for v in values), bool, len(values))
    is_epoch = np.fromiter((isinstance(v, Real) for v in values), bool, len(values))
    parsed = np.empty(len(values), dtype="datetime64[ns]")
    for mask, parse in (
        (is_text, _iso_to_utc),
        (is_epoch, _epoch_to_utc),
        (~is_text & ~is_epoch, _datetimes_to_utc),
    ):
        if mask.any():
            times = parse(values[mask])
            parsed[mask] = times.tz_localize(None).as_unit("ns").to_numpy()
    return pd.DatetimeIndex(parsed).tz_localize("UTC")


def _to_utc(values: Sequence[Any] | np.ndarray, column: str) -> pd.DatetimeIndex:
    """
    Parse timestamps into `datetime64[ns, UTC]`.

    ISO 8601 strings with or without fractions, with `Z` or an offset, datetimes
    (naive ones are taken as UTC) and epoch numbers (milliseconds, or seconds below
    1e11) may be mixed. Missing values become `NaT`.
    """
    array = _objects(values)
    missing = pd.isna(array)
    try:
        # pandas parses an array that mixes strings and None many times slower
        # than strings alone, so only the present values are parsed.
        present = _parse_times(array[~missing]).tz_localize(None).as_unit("ns")
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError(
            f"Invalid timestamp in column {column!r}: {exc}. Give ISO 8601 such as "
            "'2026-03-03T10:00:00.000Z' or epoch milliseconds."
        ) from exc
    parsed = np.full(len(array), np.datetime64("NaT", "ns"))
    parsed[~missing] = present.to_numpy()
    return pd.DatetimeIndex(parsed).tz_localize("UTC")


def _strings(values: Sequence[Any] | np.ndarray) -> Any:
    array = _objects(values)
    dtype = pd.StringDtype()
    if dtype.storage == "pyarrow":
        # Building the Arrow array directly took a third to a half of the time of
        # pd.array on 100,000 strings. Values that are not strings go to pd.array.
        import pyarrow as pa  # type: ignore[import-untyped]

        try:
            arrow = pa.array(array, type=pa.large_string(), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
        else:
            return pd.arrays.ArrowStringArray(arrow)
    return pd.array(array, dtype=dtype)


def _numbers(values: Sequence[Any] | np.ndarray, dtype: str, column: str) -> Any:
    array = _objects(values)
    try:
        floats = array.astype("float64")
    except (ValueError, TypeError):
        floats = None
    if floats is not None:
        missing = np.isnan(floats)
        if dtype == "Float64":
            return pd.arrays.FloatingArray(np.where(missing, 0.0, floats), missing)
        present = floats[~missing]
        # Floats hold integers exactly only up to 2**53.
        exact = np.abs(present) < 2**53
        if exact.all() and (present == np.floor(present)).all():
            integers = np.where(missing, 0, floats).astype("int64")
            return pd.arrays.IntegerArray(integers, missing)
    number_dtype = pd.Int64Dtype() if dtype == "Int64" else pd.Float64Dtype()
    try:
        return pd.array(array, dtype=number_dtype)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"Invalid value in column {column!r}: {exc}. Expected numbers or None."
        ) from exc


def _roles(values: Sequence[Any] | np.ndarray) -> pd.Categorical[str]:
    codes, uniques = pd.factorize(_objects(values))
    seen = [str(role) for role in uniques.tolist()]
    categories = [*ROLES, *sorted(set(seen) - set(ROLES))]
    lookup = {role: code for code, role in enumerate(categories)}
    # Map the codes of first appearance onto the fixed order of the categories;
    # -1 (missing) stays -1 through the extra last entry.
    remap = np.array([lookup[role] for role in seen] + [-1], dtype="int64")
    return pd.Categorical.from_codes(remap[codes], categories=pd.Index(categories))


def _convert(values: Sequence[Any] | np.ndarray, dtype: str, column: str) -> Any:
    """Turn a column's values into an array of the column's dtype."""
    if dtype == UTC_NS:
        return _to_utc(values, column)
    if dtype == "string":
        return _strings(values)
    if dtype == "category":
        return _roles(values)
    if dtype == "timedelta64[ns]":
        return pd.to_timedelta(_objects(values)).as_unit("ns")
    return _numbers(values, dtype, column)


def _build(columns: Mapping[str, Sequence[Any]], dtypes: Mapping[str, str]) -> Any:
    return {
        name: _convert(columns[name], dtype, name) for name, dtype in dtypes.items()
    }


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
          the fork's totals, so summing these over forks counts them twice;
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


# Fetching


def _session_ids(session_ids: str | Iterable[str]) -> list[str]:
    ids = [session_ids] if isinstance(session_ids, str) else list(session_ids)
    for session_id in ids:
        if not isinstance(session_id, str) or not session_id.strip():
            raise ValueError(
                f"Invalid session id {session_id!r}: give ids such as 'ses_1'."
            )
    return list(dict.fromkeys(ids))


async def aall_messages_frame(
    client: OpenCodeClient | AsyncOpenCodeClient,
    session_ids: str | Iterable[str] | None = None,
    *,
    progress: bool = True,
    concurrency: int = 8,
) -> pd.DataFrame:
    """
    Fetch the messages of many sessions concurrently and build one DataFrame.

    The coroutine form of `all_messages_frame`; see there.
    """
    from opencode_notebook.client import AsyncOpenCodeClient, OpenCodeClient

    valid = isinstance(concurrency, int) and not isinstance(concurrency, bool)
    if not valid or concurrency < 1:
        raise ValueError(
            f"Invalid concurrency {concurrency!r}: give a positive whole number."
        )
    if isinstance(client, OpenCodeClient):
        async_client = client.to_async()
        try:
            return await _fetch_frame(async_client, session_ids, progress, concurrency)
        finally:
            await async_client.aclose()
    if isinstance(client, AsyncOpenCodeClient):
        return await _fetch_frame(client, session_ids, progress, concurrency)
    raise TypeError(
        f"Invalid client {client!r}: give an OpenCodeClient or AsyncOpenCodeClient."
    )


async def _fetch_frame(
    client: AsyncOpenCodeClient,
    session_ids: str | Iterable[str] | None,
    progress: bool,
    concurrency: int,
) -> pd.DataFrame:
    listed = session_ids is None
    if session_ids is None:
        ids = [session.id for session in await client.list_sessions()]
    else:
        ids = _session_ids(session_ids)
    results: dict[str, list[Message] | None] = dict.fromkeys(ids)
    semaphore = asyncio.Semaphore(concurrency)
    bar = _progress_bar(len(ids)) if progress and ids else None

    async def fetch(session_id: str) -> None:
        async with semaphore:
            try:
                results[session_id] = await client.list_messages(session_id)
            except SessionNotFoundError:
                if not listed:
                    raise
                # Deleted between the listing and this request: nothing to keep.
                logger.warning("Session %s was deleted while fetching", session_id)
        if bar is not None:
            bar.update(1)

    try:
        async with asyncio.TaskGroup() as group:
            for session_id in ids:
                group.create_task(fetch(session_id))
    except BaseExceptionGroup as group_error:
        # Re-raise the first failure itself, so callers can catch the client's
        # exception types as they would for a single request.
        raise group_error.exceptions[0] from None
    finally:
        if bar is not None:
            bar.close()
    found = {key: value for key, value in results.items() if value is not None}
    return messages_frame(found)


def _progress_bar(total: int) -> Any:
    from tqdm.auto import tqdm

    # `delay` keeps short fetches quiet: the bar appears only after a second.
    return tqdm(total=total, desc="Fetching messages", unit="session", delay=1.0)


def all_messages_frame(
    client: OpenCodeClient | AsyncOpenCodeClient,
    session_ids: str | Iterable[str] | None = None,
    *,
    progress: bool = True,
    concurrency: int = 8,
) -> pd.DataFrame:
    """
    Fetch the messages of many sessions concurrently and build one DataFrame.

    Parameters
    ----------
    client : OpenCodeClient
        The client to fetch with. A synchronous client lends its settings to an
        `AsyncOpenCodeClient` that is closed afterwards. With an
        `AsyncOpenCodeClient`, ``await aall_messages_frame(client)`` instead.
    session_ids : list of str, optional
        The sessions to fetch, in the order wanted; by default every session of
        the instance, newest update first. A session deleted between the listing
        and its fetch is left out, with a warning in the log. A named session
        that does not exist raises `SessionNotFoundError`.
    progress : bool, default True
        Show a `tqdm` progress bar when the fetch takes more than a second.
    concurrency : int, default 8
        How many requests run at once.

    Returns
    -------
    pandas.DataFrame
        As `messages_frame` builds it, sessions in the order of `session_ids`.

    Notes
    -----
    This function runs its own event loop. Inside a running loop, as in a Jupyter
    kernel, it runs that loop in a worker thread and blocks until it finishes.
    """
    from opencode_notebook.client import AsyncOpenCodeClient

    if isinstance(client, AsyncOpenCodeClient):
        raise TypeError(
            "all_messages_frame needs an OpenCodeClient; with an "
            "AsyncOpenCodeClient, use `await aall_messages_frame(client)`."
        )
    coroutine = aall_messages_frame(
        client, session_ids, progress=progress, concurrency=concurrency
    )
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


# Reading CSV back


def _restore(
    frame: pd.DataFrame, dtypes: Mapping[str, str], text: Sequence[str]
) -> pd.DataFrame:
    for name, dtype in dtypes.items():
        if name not in frame.columns:
            continue
        column = frame[name]
        if name == "role" and isinstance(column.dtype, pd.CategoricalDtype):
            # Parquet drops the categories of an empty categorical column.
            values = column.astype(object).tolist()
        elif str(column.dtype) == dtype:
            continue
        elif dtype in ("Int64", "Float64"):
            values = pd.to_numeric(column).tolist()
        else:
            values = column.tolist()
        values = [None if pd.isna(value) else value for value in values]
        if name in text:
            values = ["" if value is None else value for value in values]
        frame[name] = _convert(values, dtype, name)
    return frame


def _read_csv(
    source: str | os.PathLike[str] | IO[str],
    dtypes: Mapping[str, str],
    text: Sequence[str],
) -> pd.DataFrame:
    # Read every known column as text, and only an empty field as missing, so that
    # a title or message reading "NA" or "null" stays text.
    frame = pd.read_csv(
        source,
        dtype={name: object for name in dtypes},
        keep_default_na=False,
        na_values=[""],
    )
    return _restore(frame, dtypes, text)


def read_sessions_csv(source: str | os.PathLike[str] | IO[str]) -> pd.DataFrame:
    """
    Read a CSV file written from `sessions_frame` and restore its dtypes.

    Known columns get the dtypes of `SESSION_DTYPES`; other columns are kept as
    pandas reads them. An empty ``title`` is read as ``""``.
    """
    return _read_csv(source, SESSION_DTYPES, _SESSION_TEXT)


def read_messages_csv(source: str | os.PathLike[str] | IO[str]) -> pd.DataFrame:
    """
    Read a CSV file written from `messages_frame` and restore its dtypes.

    Known columns get the dtypes of `MESSAGE_DTYPES`; other columns are kept as
    pandas reads them. An empty ``content`` is read as ``""``, the way
    `messages_frame` writes a message with no text.
    """
    return _read_csv(source, MESSAGE_DTYPES, _MESSAGE_TEXT)


def read_sessions_parquet(source: str | os.PathLike[str] | IO[bytes]) -> pd.DataFrame:
    """
    Read a Parquet file written from `sessions_frame`, with its documented dtypes.

    `pandas.read_parquet` gives the same frame; this also checks each known
    column's dtype and converts the ones that differ.
    """
    return _restore(pd.read_parquet(source), SESSION_DTYPES, _SESSION_TEXT)


def read_messages_parquet(source: str | os.PathLike[str] | IO[bytes]) -> pd.DataFrame:
    """
    Read a Parquet file written from `messages_frame`, with its documented dtypes.

    `pandas.read_parquet` gives the same frame, except that an empty frame's
    ``role`` column comes back without its categories; this restores them.
    """
    return _restore(pd.read_parquet(source), MESSAGE_DTYPES, _MESSAGE_TEXT)
