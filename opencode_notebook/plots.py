"""
Plots of conversations, as `matplotlib.figure.Figure` objects made without pyplot,
so they work headless and leave no global state behind. `analysis` re-exports them.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_activity", "plot_latency", "plot_messages_per_session"]

_LABEL_LENGTH = 40


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    class _Figure(Figure):
        """A Figure that shows itself as a PNG in Jupyter, with no pyplot needed."""

        def _repr_png_(self) -> bytes:
            buffer = io.BytesIO()
            self.savefig(buffer, format="png", bbox_inches="tight")
            return buffer.getvalue()

    return _Figure(figsize=(width, height), layout="constrained")


def _label(title: object, session_id: str) -> str:
    text = str(title) if isinstance(title, str) and title.strip() else session_id
    if len(text) > _LABEL_LENGTH:
        text = text[: _LABEL_LENGTH - 1] + "…"
    # Matplotlib reads text between dollar signs as math; titles are plain text.
    return text.replace("$", r"\$")


def _empty(axes: Axes, text: str) -> None:
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes)
    axes.set_axis_off()


def plot_messages_per_session(summary: pd.DataFrame, *, top: int = 20) -> Figure:
    """
    Plot the user and assistant messages of the sessions with the most messages.

    `summary` comes from `session_summary`; sessions are labelled by title, or
    by id when they have none. Returns a `matplotlib.figure.Figure`.
    """
    _check_top(top)
    for name in ("turns", "assistant_messages"):
        if name not in summary:
            raise ValueError(
                f"The summary has no column {name!r}: build it with session_summary()."
            )
    counts = summary.assign(
        total=summary["turns"].fillna(0) + summary["assistant_messages"].fillna(0)
    )
    shown = counts.sort_values("total", ascending=False, kind="stable").head(top)
    figure = _figure(8, 1.5 + 0.35 * max(len(shown), 1))
    axes = figure.subplots()
    if shown.empty:
        _empty(axes, "No sessions")
        return figure
    titles = shown["title"] if "title" in shown else pd.Series(pd.NA, shown.index)
    labels = [_label(t, str(i)) for i, t in zip(shown.index, titles, strict=True)]
    positions = np.arange(len(shown))[::-1]
    user = shown["turns"].fillna(0).to_numpy(dtype="float64")
    assistant = shown["assistant_messages"].fillna(0).to_numpy(dtype="float64")
    axes.barh(positions, user, label="user")
    axes.barh(positions, assistant, left=user, label="assistant")
    axes.set_yticks(positions, labels)
    axes.set_xlabel("messages")
    axes.set_title("Messages per session")
    axes.legend(loc="lower right")
    return figure


def plot_latency(
    messages_df: pd.DataFrame,
    sessions_df: pd.DataFrame | None = None,
    *,
    top: int = 20,
) -> Figure:
    """
    Plot the response latency of each turn, for the sessions that waited longest.

    One box per session, in seconds, for the `top` sessions with the longest
    total latency (see `turn_latencies`). With `sessions_df`, sessions are
    labelled by title and a fork's inherited turns are left out. Returns a
    `matplotlib.figure.Figure`.
    """
    # Imported on use because `analysis` imports this module to re-export the plots.
    from opencode_notebook.analysis import turn_latencies

    _check_top(top)
    turns = turn_latencies(messages_df, sessions_df)
    seconds = turns["latency"].dt.total_seconds()
    by_session = seconds.groupby(turns["session_id"], sort=False)
    ranked = by_session.sum().sort_values(ascending=False, kind="stable").head(top)
    figure = _figure(8, 1.5 + 0.35 * max(len(ranked), 1))
    axes = figure.subplots()
    if ranked.empty:
        _empty(axes, "No answered turns")
        return figure
    titles: dict[str, object] = {}
    if sessions_df is not None and "title" in sessions_df:
        titles = dict(
            zip(sessions_df["id"].astype(str), sessions_df["title"], strict=True)
        )
    groups = dict(list(by_session))
    data = [groups[session].to_numpy() for session in ranked.index]
    labels = [_label(titles.get(str(s)), str(s)) for s in ranked.index]
    positions = np.arange(len(ranked))[::-1] + 1
    axes.boxplot(data, positions=positions, orientation="horizontal")
    axes.set_yticks(positions, labels)
    axes.set_xlabel("latency per turn (s)")
    axes.set_title("Response latency")
    return figure


def plot_activity(messages_df: pd.DataFrame, freq: str = "1h") -> Figure:
    """
    Plot the messages per period, stacked by role (see `activity`).

    Returns a `matplotlib.figure.Figure`.
    """
    # Imported on use because `analysis` imports this module to re-export the plots.
    from opencode_notebook.analysis import activity

    counts = activity(messages_df, freq)
    figure = _figure(9, 4)
    axes = figure.subplots()
    if counts.empty:
        _empty(axes, "No messages")
        return figure
    # Matplotlib draws naive datetime64 values; these are UTC.
    starts = pd.DatetimeIndex(counts.index).tz_localize(None)
    next_start = starts[-1] + pd.tseries.frequencies.to_offset(freq)
    ends = pd.DatetimeIndex(starts[1:].append(pd.DatetimeIndex([next_start])))
    widths = (ends - starts).to_numpy() * 0.9
    bottom = np.zeros(len(counts))
    for role in counts.columns:
        values = counts[role].to_numpy(dtype="float64")
        axes.bar(
            starts.to_numpy(),
            values,
            width=widths,
            bottom=bottom,
            align="edge",
            label=str(role),
        )
        bottom += values
    axes.set_ylabel("messages")
    axes.set_title(f"Messages per {freq} (UTC)")
    axes.legend()
    return figure


def _check_top(top: object) -> None:
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"Invalid top {top!r}: give a positive number of sessions.")
