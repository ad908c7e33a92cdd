"""
The chat panel's HTML: session picker options, rendered messages and styles.

Every part of a message is escaped, or rendered by `render_markdown`, before it
becomes HTML. `LiveMessage` is the widget of a reply while it streams.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from datetime import datetime

import ipywidgets as widgets

from opencode_notebook.models import Message, Session
from opencode_notebook.render import escape_html, render_markdown
from opencode_notebook.streaming import StreamEvent, TextDelta, ToolUpdate

__all__ = ["LiveMessage", "render_message", "session_options"]

# Forks are indented with em spaces, which a dropdown option shows at full width.
_FORK_INDENT = "\u2003"

_BUBBLE_STYLE = (
    "margin: 2px 0; padding: 4px 10px; border-radius: 6px; line-height: 1.4; "
    "color: var(--jp-ui-font-color1, #222);"
)
_ROLE_BACKGROUNDS = {
    "user": "var(--jp-brand-color3, #d7e8fa)",
    "assistant": "var(--jp-layout-color2, #eeeeee)",
}
_HEADER_STYLE = "font-size: 0.85em; color: var(--jp-ui-font-color2, #666);"
_ERROR_STYLE = "color: var(--jp-error-color1, #c62828);"
_NOTE_STYLE = "font-style: italic; color: var(--jp-ui-font-color2, #666);"
# OpenCode's error name for a turn stopped by an abort request.
_ABORTED_ERROR = "MessageAbortedError"
# Seconds between two updates of a streaming reply's widget.
_LIVE_INTERVAL = 0.1
# Markdown paragraphs keep their margins inside a message, except at its edges,
# and code blocks stand out from the text around them.
_PANEL_CSS = (
    "<style>.opencode-chat-message p:first-of-type { margin-top: 0; } "
    ".opencode-chat-message p:last-child { margin-bottom: 0; } "
    ".opencode-chat-message pre { padding: 6px 8px; border-radius: 4px; "
    "overflow-x: auto; background: var(--jp-layout-color0, #fff); }</style>"
)
_STATUS_STYLES = {
    "info": "color: var(--jp-ui-font-color2, #666);",
    "hint": "color: var(--jp-warn-color1, #b26a00);",
    "sending": "color: var(--jp-brand-color1, #1976d2);",
    "error": _ERROR_STYLE,
}


def session_options(sessions: Iterable[Session]) -> list[tuple[str, str]]:
    """
    Return `(label, session id)` picker options with each fork under its parent.

    Siblings keep the order given (`list_sessions` gives newest update first), and a
    fork's label is indented one step per level. A session whose parent is not in
    the list is shown at the top level, and so is the first session of a parent
    loop.
    """
    sessions = list(sessions)
    known = {session.id for session in sessions}
    children: dict[str | None, list[Session]] = {}
    for session in sessions:
        parent = session.parent_id if session.parent_id in known else None
        children.setdefault(parent, []).append(session)

    options: list[tuple[str, str]] = []
    placed: set[str] = set()
    roots = children.get(None, []) + sessions
    for root in roots:
        stack = [(root, 0)]
        while stack:
            session, depth = stack.pop()
            if session.id in placed:
                continue
            placed.add(session.id)
            title = session.title or session.id
            label = f"{_FORK_INDENT * depth}↳ {title}" if depth else title
            options.append((label, session.id))
            forks = children.get(session.id, [])
            stack.extend((fork, depth + 1) for fork in reversed(forks))
    return options


def _format_time(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _tool_lines(parts: object) -> list[str]:
    if not isinstance(parts, list):
        return []
    lines = []
    for part in parts:
        if isinstance(part, Mapping) and part.get("type") == "tool":
            state = part.get("state")
            status = state.get("status") if isinstance(state, Mapping) else None
            line = f"Tool {part.get('tool') or 'call'}"
            lines.append(f"{line} ({status})" if status else line)
    return lines


def _bubble(
    role: str,
    header: str,
    body: str,
    *,
    pending: bool = False,
    kind: str | None = None,
) -> str:
    """Wrap a message body in a bubble whose CSS class names `kind`, or the role."""
    background = _ROLE_BACKGROUNDS.get(role, _ROLE_BACKGROUNDS["assistant"])
    style = f"{_BUBBLE_STYLE} background: {background};"
    if pending:
        style += " opacity: 0.6;"
    css_class = f"opencode-chat-{escape_html(kind or role)}"
    return (
        f'<div class="opencode-chat-message {css_class}" '
        f'style="{style}"><div style="{_HEADER_STYLE}">{header}</div>{body}</div>'
    )


def _note(text: str) -> str:
    return f'<div class="opencode-chat-note" style="{_NOTE_STYLE}">{text}</div>'


def _user_body(text: str) -> str:
    return f'<div style="white-space: pre-wrap;">{escape_html(text)}</div>'


def render_message(message: Message) -> str:
    """
    Render a message as safe HTML, under a header with its role, agent, model and time.

    User text is escaped and keeps its line breaks. Assistant text is Markdown
    rendered by `render_markdown`, and the tools it called and its error, if any,
    are shown as escaped text. A reply stopped by an abort is marked "(stopped)".
    """
    if message.role == "user":
        header = f"You · {_format_time(message.timestamp)}"
        return _bubble("user", escape_html(header), _user_body(message.content))

    details = [message.role.capitalize() or "Message"]
    details += [value for value in (message.agent, message.model) if value]
    details.append(_format_time(message.timestamp))
    body = render_markdown(message.content) if message.content else ""
    for line in _tool_lines(message.extra.get("parts")):
        body += f"<div><code>{escape_html(line)}</code></div>"
    error = message.extra.get("error")
    if error and str(error).startswith(_ABORTED_ERROR):
        body += _note("(stopped)")
    elif error:
        body += f'<div style="{_ERROR_STYLE}">{escape_html(str(error))}</div>'
    return _bubble(message.role, escape_html(" · ".join(details)), body)


def _pending_html(text: str) -> str:
    return _bubble("user", "You · sending…", _user_body(text), pending=True)


def _live_html(text: str, tools: Iterable[str], state: str) -> str:
    body = "".join(f"<div><code>{escape_html(line)}</code></div>" for line in tools)
    body += render_markdown(text) if text else ""
    if state == "stopped":
        body += _note("(stopped)")
    header = escape_html(f"Assistant · {state}")
    return _bubble("assistant", header, body, kind="streaming")


class LiveMessage:
    """
    The widget of a reply while it streams, updated at most ten times a second.

    Its CSS class is `opencode-chat-streaming` until the panel replaces its value
    with the finished message. Tool calls show at once. Text that arrives within
    the interval shows at the next update, which a timer on `loop` schedules.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.widget = widgets.HTML(_live_html("", [], "writing…"))
        self._loop = loop
        self._text = ""
        self._tools: dict[str, str] = {}
        self._updated_at = -float("inf")
        self._timer: asyncio.TimerHandle | None = None
        self._finished = False

    def add(self, event: StreamEvent, text: str) -> None:
        """Show the reply text so far, `text`, after `event`."""
        if self._finished:
            return
        self._text = text
        if isinstance(event, ToolUpdate):
            line = f"Tool {event.tool or 'call'} ({event.status})"
            self._tools[event.call_id or event.part_id] = line
            self._render()
        elif isinstance(event, TextDelta):
            wait = self._updated_at + _LIVE_INTERVAL - self._loop.time()
            if wait <= 0:
                self._render()
            elif self._timer is None:
                self._timer = self._loop.call_later(wait, self._render)

    def stop(self, text: str) -> None:
        """Show the partial reply `text` marked "(stopped)", and update no more."""
        self.finish()
        self.widget.value = _live_html(text, self._tools.values(), "stopped")

    def finish(self) -> None:
        """Stop updating the widget; the panel sets its final value."""
        self._finished = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _render(self) -> None:
        self._timer = None
        if self._finished:
            return
        self._updated_at = self._loop.time()
        self.widget.value = _live_html(self._text, self._tools.values(), "writing…")
