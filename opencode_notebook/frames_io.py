"""
Read sessions and messages frames saved as CSV or Parquet, with their dtypes.

Save them with pandas' `to_csv(index=False)` and `to_parquet`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import IO

import pandas as pd

from opencode_notebook._columns import MESSAGE_DTYPES, SESSION_DTYPES, _convert

__all__ = [
    "read_messages_csv",
    "read_messages_parquet",
    "read_sessions_csv",
    "read_sessions_parquet",
]

# Columns that are never missing: an empty value read back from CSV is "".
_SESSION_TEXT = ("id", "title")
_MESSAGE_TEXT = ("id", "content")


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
