"""
Splitting the magics' lines into words, and describing `--with` variables.

The magics in `opencode_notebook.magics` parse their lines with these helpers.
A mistake in a line raises `OpenCodeUsageError`, which the magics raise too.
"""

from __future__ import annotations

import builtins
import keyword
import logging
import re
from dataclasses import dataclass

import pandas as pd
from IPython.core.error import UsageError

__all__ = [
    "_SESSION_ID",
    "OpenCodeUsageError",
    "_check_variable_name",
    "_context_block",
    "_split_prompt_line",
    "_split_words",
]

logger = logging.getLogger("opencode_notebook")

# In the line form of %opencode_prompt, a leading word is a session id only when it
# looks like one: `ses_...` on OpenCode, `sess_...` in the API's examples.
_SESSION_ID = re.compile(r"sess?_[0-9A-Za-z]+")
_OPTION = re.compile(r"--?[A-Za-z]")
_QUOTES = "\"'"
# How many values each option of %opencode_prompt takes in the line form, where the
# prompt text follows the options. `--new` takes a title only when it is quoted.
_PROMPT_OPTION_VALUES = {"--model": 1, "--agent": 1, "--with": 1, "--out": 1}
# Rows of a DataFrame shown to the model by `--with`.
_CONTEXT_ROWS = 10


class OpenCodeUsageError(UsageError):
    """A magic was used wrongly or its request failed, shown as one line."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows only the message for `UsageError` itself, but a full
        # traceback for subclasses unless they render their own.
        return [f"UsageError: {self}"]


# Splitting magic lines ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Word:
    """A word of a magic's line: its text without quotes, and where it sits."""

    text: str
    start: int
    end: int


def _read_word(line: str, position: int) -> _Word | None:
    """Read the word at or after `position`, or return `None` at the end."""
    length = len(line)
    while position < length and line[position].isspace():
        position += 1
    if position == length:
        return None
    start = position
    pieces: list[str] = []
    while position < length and not line[position].isspace():
        char = line[position]
        opens_quote = position == start or line[position - 1] == "="
        if char in _QUOTES and opens_quote:
            close = line.find(char, position + 1)
            if close == -1:
                raise OpenCodeUsageError(
                    f"Unclosed {char} quote in {line[start:]!r}: add the closing "
                    "quote, or quote the text with the other kind of quote."
                )
            pieces.append(line[position + 1 : close])
            position = close + 1
        else:
            pieces.append(char)
            position += 1
    return _Word("".join(pieces), start, position)


def _split_words(line: str) -> list[str]:
    """Split a magic's line into words, with the quoting rules of this module."""
    words: list[str] = []
    position = 0
    while (word := _read_word(line, position)) is not None:
        words.append(word.text)
        position = word.end
    return words


def _split_prompt_line(line: str) -> tuple[list[str], str]:
    """
    Split `%opencode_prompt`'s line into the leading arguments and the prompt text.

    The arguments are a session id (a word such as `ses_...`) and options with
    their values. The text starts at the first other word, or after `--`. It is
    returned exactly as typed.
    """
    argv: list[str] = []
    position = 0
    session_seen = False
    while True:
        start = position
        while start < len(line) and line[start].isspace():
            start += 1
        raw = line[start:].split(maxsplit=1)[0] if start < len(line) else ""
        if not raw:
            return argv, ""
        if raw == "--":
            text_start = start + 2
            while text_start < len(line) and line[text_start].isspace():
                text_start += 1
            return argv, line[text_start:]
        if _OPTION.match(raw):
            position = _read_option(line, start, argv)
        elif not session_seen and _SESSION_ID.fullmatch(raw):
            argv.append(raw)
            session_seen = True
            position = start + len(raw)
        else:
            return argv, line[start:]


def _read_option(line: str, start: int, argv: list[str]) -> int:
    """Append the option at `start` and its values to `argv`, and return the end."""
    option = _read_word(line, start)
    assert option is not None, "called at the start of a word"
    argv.append(option.text)
    name, has_value, _ = option.text.partition("=")
    values = 0 if has_value else _PROMPT_OPTION_VALUES.get(name, 0)
    position = option.end
    if name == "--new" and not has_value:
        following = _read_word(line, position)
        if following is not None and line[following.start] in _QUOTES:
            values = 1
    for _ in range(values):
        value = _read_word(line, position)
        if value is None:
            break
        argv.append(value.text)
        position = value.end
    return position


def _check_variable_name(name: str | None, option: str) -> str | None:
    if name is not None and (not name.isidentifier() or keyword.iskeyword(name)):
        raise OpenCodeUsageError(
            f"Invalid variable name {name!r} for {option}: give a Python identifier "
            "such as sessions_df."
        )
    if name is not None and name in vars(builtins):
        raise OpenCodeUsageError(
            f"{option} {name} would hide Python's built-in {name!r}: choose another "
            "name, such as sessions_df."
        )
    return name


# Context for --with -------------------------------------------------------------


def _describe_frame(frame: pd.DataFrame) -> str:
    rows, columns = frame.shape
    lines = [f"shape: {rows} rows x {columns} columns", "dtypes:"]
    lines += [f"  {column}: {dtype}" for column, dtype in frame.dtypes.items()]
    shown = frame.head(_CONTEXT_ROWS)
    with_index = not isinstance(frame.index, pd.RangeIndex)
    lines.append(f"first {len(shown)} rows as CSV:")
    lines.append(shown.to_csv(index=with_index).rstrip("\n"))
    return "\n".join(lines)


def _describe(name: str, value: object) -> str:
    """Describe a variable for the model: a DataFrame in detail, a str as is."""
    if isinstance(value, pd.DataFrame):
        return _describe_frame(value)
    if isinstance(value, str):
        return value
    try:
        return repr(value)
    except Exception as exc:
        # A user's class can fail in its own __repr__. That is a fault of the
        # variable, so it becomes a usage error that names the variable.
        raise OpenCodeUsageError(
            f"Cannot describe the variable {name!r} for --with: its repr() failed "
            f"with {type(exc).__name__}: {exc}."
        ) from exc


def _longest_backtick_run(text: str) -> int:
    return max((len(run) for run in re.findall(r"`+", text)), default=0)


def _context_block(name: str, value: object, limit: int) -> str:
    """
    Return a fenced Markdown block describing the variable `name`.

    A description longer than `limit` characters is cut, and the heading states
    the cut.
    """
    body = _describe(name, value)
    heading = f"Variable `{name}` ({type(value).__name__})"
    if len(body) > limit:
        logger.warning(
            "The --with description of %r was truncated to %d of %d characters. "
            "Raise %%config OpenCodeMagics.context_limit to send more.",
            name,
            limit,
            len(body),
        )
        heading += f", truncated to the first {limit} of {len(body)} characters"
        body = body[:limit]
    fence = "`" * max(3, _longest_backtick_run(body) + 1)
    return f"{heading}:\n{fence}\n{body}\n{fence}"
