"""
A streamed reply in a notebook cell: one output that grows while the agent works.

`LiveReply` shows the reply text so far in one display (a `display_id`), updated at
most ten times a second, with a status line for tool calls. At the end the display
becomes the reply as Markdown, so the cell keeps exactly one output. A reply that
ends within half a second of its first event skips the growing view and is shown
once, at the end. Quick replies then do not flicker, and a notebook validator that
compares only the first version of an output (nbval 0.11) compares the whole reply.

Front ends that cannot update an output in place, such as IPython in a terminal,
get no growing view: the magic returns the reply, and IPython shows it once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from IPython.core.displaypub import CapturingDisplayPublisher, DisplayPublisher
from IPython.display import DisplayHandle, display

from opencode_notebook.models import PromptReply
from opencode_notebook.render import (
    MarkdownReply,
    escape_html,
    render_markdown,
    sanitize_markdown,
)
from opencode_notebook.streaming import SessionRetry, StreamEvent, ToolUpdate

if TYPE_CHECKING:
    from IPython.core.interactiveshell import ExecutionResult, InteractiveShell

__all__ = ["LiveReply", "ShownReply", "supports_live_display"]

# Seconds between two updates of the growing output.
UPDATE_INTERVAL = 0.1
# Seconds a reply must have been arriving before the growing output appears.
LIVE_DELAY = 0.5

_WAITING = "Waiting for the agent…"
_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_\[\]{}()#+\-.!|~&])")


def supports_live_display(shell: InteractiveShell) -> bool:
    """Return whether the shell's front end can update an output in place."""
    # IPython's own publisher prints every output to the terminal, and the one of
    # %%capture would keep every update as an output of its own.
    return type(shell.display_pub) not in (DisplayPublisher, CapturingDisplayPublisher)


def _escape_markdown(text: str) -> str:
    """Return `text` as Markdown that renders as the same plain text."""
    # Angle brackets become entities, as `sanitize_markdown` does, so that no
    # front end can read them as HTML.
    escaped = _MARKDOWN_PUNCTUATION.sub(r"\\\1", text)
    return escaped.replace("<", "&lt;").replace(">", "&gt;")


class _ReplyView:
    """The reply text so far, with a status line under it, for display."""

    def __init__(self, text: str, status: str) -> None:
        self.text = text
        self.status = status

    def __repr__(self) -> str:
        return self._plain()

    def _plain(self) -> str:
        return f"{self.text}\n\n{self.status}" if self.text else self.status

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, str]:
        # The status line contains tool names and titles, which are untrusted too.
        status_markdown = f"*{_escape_markdown(self.status)}*"
        status_html = f"<p><em>{escape_html(self.status)}</em></p>"
        if not self.text:
            return {
                "text/plain": self._plain(),
                "text/markdown": status_markdown,
                "text/html": status_html,
            }
        return {
            "text/plain": self._plain(),
            "text/markdown": f"{sanitize_markdown(self.text)}\n\n{status_markdown}",
            "text/html": render_markdown(self.text) + status_html,
        }


def _tool_status(event: ToolUpdate) -> str:
    line = f"Tool {event.tool or 'call'} ({event.status})"
    return f"{line}: {event.title}" if event.title else line


class LiveReply:
    """
    The output of one streamed prompt in a cell.

    Pass each event of the stream to `add()`, then end with `finish()` or, when
    the turn was stopped or failed, `stop()`. With `live` false, nothing is shown
    before `finish()` or `stop()`.
    """

    def __init__(
        self,
        shell: InteractiveShell,
        *,
        live: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.live = live
        self._shell = shell
        self._clock = clock
        self._handle: DisplayHandle | None = None
        self._first_event_at: float | None = None
        self._updated_at = -float("inf")
        self._text = ""
        self._status = _WAITING

    def add(self, event: StreamEvent, text: str) -> None:
        """Show the reply text so far, `text`, after `event`, if it is time to."""
        now = self._clock()
        if self._first_event_at is None:
            self._first_event_at = now
        self._text = text
        # A tool call or a retry means the turn takes a while, so its status shows
        # at once. Text waits for the delay and the interval.
        urgent = False
        if isinstance(event, ToolUpdate):
            self._status, urgent = _tool_status(event), True
        elif isinstance(event, SessionRetry):
            self._status = f"Retrying (attempt {event.attempt}): {event.message}"
            urgent = True
        elif isinstance(event, PromptReply):
            return
        elif text and self._status == _WAITING:
            self._status = "Writing…"
        if self.live and (urgent or self._text_due(now, self._first_event_at)):
            self._updated_at = now
            self._show(_ReplyView(self._text, self._status))

    def _text_due(self, now: float, first_event_at: float) -> bool:
        if self._handle is None and now - first_event_at < LIVE_DELAY:
            return False
        return now - self._updated_at >= UPDATE_INTERVAL

    def finish(self, text: str) -> MarkdownReply:
        """
        Show the final reply `text` as Markdown, and return it for the cell.

        In a live output the reply is shown here, and the object returned shows
        nothing more in this cell. Otherwise the object returned is the only
        display of the reply.
        """
        reply = MarkdownReply(text)
        if not self.live:
            return reply
        self._show(reply)
        return ShownReply(text, self._shell)

    def stop(self, text: str, note: str) -> None:
        """
        Show the partial reply `text` marked with `note`, such as "(stopped)".

        With no text and nothing shown yet, this shows nothing.
        """
        if text or self._handle is not None:
            self._show(_ReplyView(text, note))

    def _show(self, view: object) -> None:
        if self._handle is None:
            handle = display(view, display_id=True)  # type: ignore[no-untyped-call]
            # Outside IPython `display` returns no handle, so each update shows anew.
            self._handle = handle if isinstance(handle, DisplayHandle) else None
        else:
            self._handle.update(view)  # type: ignore[no-untyped-call]


class ShownReply(MarkdownReply):
    """
    A reply that its cell already shows, returned by the prompt magic.

    Displaying it in the cell that showed it, as the cell's value for example,
    shows nothing, so the reply appears once. In later cells it displays like any
    `MarkdownReply`.
    """

    def __init__(self, text: str, shell: InteractiveShell) -> None:
        super().__init__(text)
        self._shell = shell
        self._in_its_cell = True
        shell.events.register("post_run_cell", self._cell_finished)

    def _cell_finished(self, result: ExecutionResult) -> None:
        self._in_its_cell = False
        self._shell.events.unregister("post_run_cell", self._cell_finished)

    def _ipython_display_(self) -> None:
        if not self._in_its_cell:
            display(MarkdownReply(self.text))  # type: ignore[no-untyped-call]
