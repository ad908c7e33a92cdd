"""The frames' column dtypes and the conversion of raw values into them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from numbers import Real
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["MESSAGE_DTYPES", "ROLES", "SESSION_DTYPES", "UTC_NS"]

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

# Epoch numbers at or above this are milliseconds, as OpenCode sends them; smaller
# ones are seconds. This is the rule `models.parse_timestamp` follows.
_MILLISECONDS_THRESHOLD = 1e11


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
