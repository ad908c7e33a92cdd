"""
The chat panel: a conversation with OpenCode sessions, built from ipywidgets.

`ChatPanel` has a session picker with New, Fork and Delete, the conversation, model
and agent pickers, a text box with Send and Stop, and a status line. Every request
runs as an asyncio task on the event loop the panel was made on (the kernel's, in
Jupyter), so other cells run while the agent works. Every result reaches the page by
setting widget values, never through an `Output` context. A reply grows in the
conversation while the agent writes it.

Model output, session titles and error messages are untrusted text: the panel
escapes them, or renders them with `render_markdown`, before they become HTML.
`_chat_view.py` builds the messages' HTML and the session picker's options.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import ipywidgets as widgets
import traitlets

from opencode_notebook._chat_view import (
    _PANEL_CSS,
    _STATUS_STYLES,
    LiveMessage,
    _pending_html,
    render_message,
    session_options,
)
from opencode_notebook.client import AsyncOpenCodeClient, OpenCodeClient
from opencode_notebook.errors import OpenCodeError, PromptAbortedError, ProtocolError
from opencode_notebook.models import Message, PromptReply, Session
from opencode_notebook.render import escape_html

if TYPE_CHECKING:
    from opencode_notebook.prompt_stream import AsyncPromptStream

__all__ = ["ChatPanel", "render_message", "session_options"]

logger = logging.getLogger("opencode_notebook")

T = TypeVar("T")

# Seconds between updates of the elapsed time in the status line during a send.
_TICK_SECONDS = 0.5

# Messages per page of the conversation. Setting a box's children validates and
# sends the whole list, so messages go into pages of this size: an append touches
# one page, and the number of pages grows 25 times slower than the conversation.
_PAGE_SIZE = 25


def _event_loop() -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        # Cells in a Jupyter kernel run inside its loop. Elsewhere the panel's
        # tasks start once the caller runs this thread's loop.
        return asyncio.get_event_loop()


def _async_client(
    client: OpenCodeClient | AsyncOpenCodeClient | None,
) -> tuple[AsyncOpenCodeClient, bool]:
    """Return the client the panel sends with, and whether the panel made it."""
    if client is None:
        return AsyncOpenCodeClient(), True
    if isinstance(client, OpenCodeClient):
        return client.to_async(), True
    if isinstance(client, AsyncOpenCodeClient):
        return client, False
    raise TypeError(
        f"Invalid client {client!r}: give an OpenCodeClient, an AsyncOpenCodeClient "
        "or None for one from the environment."
    )


def _close_tree(widget: widgets.Widget) -> None:
    for child in getattr(widget, "children", ()):
        _close_tree(child)
    widget.close()


def _button(description: str, tooltip: str, **kwargs: Any) -> widgets.Button:
    layout = widgets.Layout(width="auto")
    return widgets.Button(
        description=description, tooltip=tooltip, layout=layout, **kwargs
    )


class ChatPanel(traitlets.HasTraits):
    """
    A chat with the sessions of one OpenCode instance, as a notebook widget.

    Parameters:

    * **client** - an `OpenCodeClient` or `AsyncOpenCodeClient`; default: a client
      configured from the environment. Requests go through an `AsyncOpenCodeClient`
      with the same settings, available as `panel.client`.
    * **session_id** - the session to open; default: the most recently updated one.
    * other keyword arguments go to the panel's `VBox`, `panel.widget` (for
      example `layout`).

    A panel displays as its widget, so `ChatPanel()` as the last line of a cell
    shows it.

    Send runs the prompt as an asyncio task on the event loop the panel was made
    on (the kernel's, in Jupyter), so other cells run while the agent works.
    `send()` returns that task. The reply grows in the conversation as the agent
    writes it, and Stop (`stop()`) aborts the agent's turn, leaving the partial
    reply marked "(stopped)". While a prompt is in flight, further sends are
    ignored. The text stays in the box until the server has accepted it, and every
    error shows in the status line. With no session selected, Send creates one.

    ipywidgets' `Textarea` reports no key events, so Send has no keyboard shortcut:
    click the button.

    In a notebook cell:

        from opencode_notebook import ChatPanel
        ChatPanel()
    """

    busy = traitlets.Bool(
        False, read_only=True, help="True while a prompt is in flight."
    )

    def __init__(
        self,
        client: OpenCodeClient | AsyncOpenCodeClient | None = None,
        session_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.client, self._owns_client = _async_client(client)
        self._loop = _event_loop()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._send_lock = threading.Lock()
        self._sending: asyncio.Task[PromptReply | None] | None = None
        self._stream: AsyncPromptStream | None = None
        self._live: LiveMessage | None = None
        self._progress = "Waiting for the agent…"
        self._history_session: str | None = None
        self._history_ids: set[str] = set()
        self._load_generation = 0
        self._list_generation = 0
        self._updating_picker = False
        self._delete_candidate: str | None = None
        self._titles: dict[str, str] = {}
        self._status_kind = "info"
        self.widget = self._build_widgets(**kwargs)
        self._connect_callbacks()

        self._set_status("Loading sessions…")
        self.refresh(session_id)
        if self.client.direct_mode:
            self._start(self._load_catalog())

    def _build_widgets(self, **kwargs: Any) -> widgets.VBox:
        self.session_picker = widgets.Dropdown(
            options=[], value=None, layout=widgets.Layout(width="22em")
        )
        self.refresh_button = _button("", "Reload the list of sessions", icon="refresh")
        self.new_button = _button("New", "Start a new session")
        self.fork_button = _button("Fork", "Copy this conversation into a new session")
        self.delete_button = _button("Delete", "Delete this session (asks first)")
        self.confirm_delete_button = _button(
            "Confirm delete", "Delete the session for good", button_style="danger"
        )
        self.cancel_delete_button = _button("Cancel", "Keep the session")
        self._confirm_row = widgets.HBox(
            [self.confirm_delete_button, self.cancel_delete_button],
            layout=widgets.Layout(display="none"),
        )
        # The frame below scrolls, not this box: a box that shrank to fit the frame
        # would scroll itself from the top, away from the newest message.
        self.history = widgets.VBox(
            layout=widgets.Layout(width="100%", flex="0 0 auto", overflow="visible")
        )
        # A reversed column keeps the scroll position at the newest message.
        history_frame = widgets.Box(
            [self.history],
            layout=widgets.Layout(
                flex_flow="column-reverse",
                max_height="30em",
                overflow="auto",
                border="1px solid var(--jp-border-color2, #ddd)",
                padding="4px",
            ),
        )
        self.model_picker = widgets.Combobox(
            placeholder="default",
            description="Model",
            layout=widgets.Layout(width="20em"),
        )
        self.agent_picker = widgets.Combobox(
            placeholder="default",
            description="Agent",
            layout=widgets.Layout(width="16em"),
        )
        # `continuous_update` (the default) syncs every keystroke, so the value read
        # when Send is clicked is what the user sees in the box.
        self.input = widgets.Textarea(
            placeholder="Message the agent",
            layout=widgets.Layout(flex="1 1 auto", width="auto", height="6em"),
        )
        self.send_button = _button(
            "Send", "Send the message", button_style="primary", icon="paper-plane"
        )
        self.send_button.layout.flex = "0 0 auto"
        # Shown only while a reply is in flight, and enabled once the server has
        # accepted the prompt.
        self.stop_button = _button(
            "Stop",
            "Stop the agent's reply",
            button_style="warning",
            icon="stop",
            disabled=True,
        )
        self.stop_button.layout.flex = "0 0 auto"
        self.stop_button.layout.display = "none"
        self.status = widgets.HTML()

        panel = widgets.VBox(
            children=[
                widgets.HBox(
                    [
                        self.session_picker,
                        self.refresh_button,
                        self.new_button,
                        self.fork_button,
                        self.delete_button,
                        self._confirm_row,
                    ]
                ),
                history_frame,
                widgets.HBox([self.model_picker, self.agent_picker]),
                widgets.HBox([self.input, self.send_button, self.stop_button]),
                self.status,
                widgets.HTML(_PANEL_CSS),
            ],
            **kwargs,
        )
        panel.add_class("opencode-chat")
        return panel

    def _connect_callbacks(self) -> None:
        self.session_picker.observe(self._on_session_picked, names="value")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.new_button.on_click(lambda _: self.new_session())
        self.fork_button.on_click(lambda _: self.fork_session())
        self.delete_button.on_click(self._on_delete_click)
        self.confirm_delete_button.on_click(self._on_confirm_delete)
        self.cancel_delete_button.on_click(self._on_cancel_delete)
        self.send_button.on_click(lambda _: self.send())
        self.stop_button.on_click(lambda _: self.stop())

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        bundle: dict[str, Any] | None = self.widget._repr_mimebundle_(**kwargs)
        return bundle

    @property
    def session_id(self) -> str | None:
        """The id of the selected session, or `None`."""
        value = self.session_picker.value
        return str(value) if value is not None else None

    @property
    def stream(self) -> AsyncPromptStream | None:
        """The stream of the reply in flight, or `None` (see `stream_prompt`)."""
        return self._stream

    @property
    def message_widgets(self) -> tuple[widgets.HTML, ...]:
        """The `HTML` widgets of the conversation shown, oldest first."""
        return tuple(
            widget for page in self.history.children for widget in page.children
        )

    # Public actions: each starts a task on the panel's event loop and returns it,
    # or returns None when called from another thread (see `_start`).

    def refresh(self, select: str | None = None) -> asyncio.Task[None] | None:
        """Reload the session list and open `select` (default: the current one)."""
        return self._start(self._refresh(select))

    def send(self) -> asyncio.Task[PromptReply | None] | None:
        """
        Send the text in the box to the selected session, as a task.

        The task returns the reply, or `None` when sending failed. The error is then
        in the status line and the text stays in the box. While a send is in flight
        this starts nothing and returns that send's task. With a blank box it shows
        a hint, sends nothing and returns `None`.
        """
        # The check and the flag are one step, because clicks may arrive on
        # another thread than the one the panel's loop runs on.
        with self._send_lock:
            if self.busy:
                return self._sending
            text = self.input.value
            if not text.strip():
                self._set_status("Type a message first.", "hint")
                return None
            self.set_trait("busy", True)
        model = self.model_picker.value.strip() or None
        agent = self.agent_picker.value.strip() or None
        self.send_button.disabled = True
        self.stop_button.layout.display = None
        self._set_status("Sending…", "sending")
        task = self._start(
            self._send_prompt(text, model, agent), on_done=self._send_done
        )
        self._sending = task
        return task

    def stop(self) -> asyncio.Task[bool] | None:
        """
        Stop the agent's turn in flight, as a task: what the Stop button does.

        The send task then ends with the partial reply marked "(stopped)", and the
        session stays usable. The stop task returns whether it sent the abort:
        `False` when no reply is in flight.
        """
        return self._start(self._stop())

    def new_session(
        self, title: str | None = None
    ) -> asyncio.Task[Session | None] | None:
        """Create a session and open it."""
        return self._start(self._create(title, parent_id=None))

    def fork_session(self) -> asyncio.Task[Session | None] | None:
        """Fork the selected session and open the fork (`None` with no session)."""
        if self.session_id is None:
            self._set_status("Pick a session to fork first.", "hint")
            return None
        return self._start(self._create(None, parent_id=self.session_id))

    def delete_session(
        self, session_id: str | None = None
    ) -> asyncio.Task[bool] | None:
        """
        Delete a session (default: the selected one) without asking.

        The Delete button asks for confirmation first. The task returns whether the
        session was deleted.
        """
        return self._start(self._delete(session_id or self.session_id))

    async def wait(self) -> None:
        """Wait until every request the panel has started has finished."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    def close(self) -> None:
        """Cancel the panel's requests, close its widgets and the client it made."""
        _close_tree(self.widget)
        if self._on_own_loop():
            self._cancel_tasks()
        else:
            self._loop.call_soon_threadsafe(self._cancel_tasks)
        if self._owns_client:
            self._owns_client = False
            self._start(self.client.aclose())

    async def aclose(self) -> None:
        """Close the panel, and wait for the client it made to close."""
        owns_client, self._owns_client = self._owns_client, False
        self.close()
        if owns_client:
            await self.client.aclose()

    # Button and picker callbacks.

    def _on_session_picked(self, change: Mapping[str, Any]) -> None:
        if self._updating_picker:
            return
        self._hide_delete_confirmation()
        if change["new"] is None:
            self._load_generation += 1
            self._show_history(None, [])
        else:
            self._start(self._load_history(str(change["new"])))

    def _on_delete_click(self, _: object) -> None:
        session_id = self.session_id
        if session_id is None:
            self._set_status("Pick a session to delete first.", "hint")
            return
        self._delete_candidate = session_id
        self._confirm_row.layout.display = "flex"
        title = self._titles.get(session_id) or session_id
        self._set_status(
            f"Delete the session {title!r} and its conversation? This cannot be "
            "undone.",
            "hint",
        )

    def _on_confirm_delete(self, _: object) -> None:
        session_id = self._delete_candidate
        self._hide_delete_confirmation()
        if session_id is not None:
            self.delete_session(session_id)

    def _on_cancel_delete(self, _: object) -> None:
        self._hide_delete_confirmation()
        self._set_status("Kept the session.")

    def _hide_delete_confirmation(self) -> None:
        self._delete_candidate = None
        self._confirm_row.layout.display = "none"

    # Tasks.

    def _start(
        self,
        coroutine: Coroutine[Any, Any, T],
        on_done: Callable[[asyncio.Task[T]], object] | None = None,
    ) -> asyncio.Task[T] | None:
        """
        Run a coroutine as a task on the panel's event loop.

        Returns the task, or `None` when called from another thread. JupyterLab
        4.6 with ipykernel 7 delivers widget messages on a kernel subshell's
        thread, which runs an event loop of its own, while the client's
        connections belong to the loop the panel was made on.
        """
        if self._on_own_loop():
            return self._create_task(coroutine, on_done)
        self._loop.call_soon_threadsafe(self._create_task, coroutine, on_done)
        return None

    def _on_own_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return not self._loop.is_running()

    def _create_task(
        self,
        coroutine: Coroutine[Any, Any, T],
        on_done: Callable[[asyncio.Task[T]], object] | None,
    ) -> asyncio.Task[T]:
        task = self._loop.create_task(coroutine)
        # The loop keeps only weak references to tasks.
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        if on_done is not None:
            task.add_done_callback(on_done)
        return task

    def _cancel_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        logger.warning("Chat panel request failed: %s", error, exc_info=error)
        self._set_status(f"Unexpected error: {error!r}", "error")

    def _send_done(self, task: asyncio.Task[PromptReply | None]) -> None:
        self._sending = None
        self._stream = None
        self.send_button.disabled = False
        self.stop_button.disabled = True
        self.stop_button.layout.display = "none"
        self.set_trait("busy", False)

    def _show_error(self, action: str, error: Exception) -> None:
        logger.info("%s: %s", action, error)
        self._set_status(f"{action}: {error}", "error")

    def _set_status(self, text: str, kind: str = "info") -> None:
        self._status_kind = kind
        self.status.value = (
            f'<span class="opencode-chat-status-{kind}" '
            f'style="{_STATUS_STYLES[kind]}">{escape_html(text)}</span>'
        )

    async def _refresh(self, select: str | None, *, report: bool = True) -> None:
        self._list_generation += 1
        generation = self._list_generation
        try:
            sessions = await self.client.list_sessions()
        except OpenCodeError as error:
            if report:
                self._show_error("Loading the sessions failed", error)
            else:
                logger.info("Reloading the sessions failed: %s", error)
            return
        if generation != self._list_generation:
            return  # a newer refresh has started

        self._titles = {session.id: session.title for session in sessions}
        options = session_options(sessions)
        known = {session_id for _, session_id in options}
        target = select or self.session_id
        if select is not None and select not in known:
            self._set_status(
                f"Session not found: {select}. Pick another session or press New.",
                "error",
            )
            target = None
        elif target not in known:
            target = sessions[0].id if sessions else None

        self._updating_picker = True
        try:
            self.session_picker.options = options
            self.session_picker.value = target
        finally:
            self._updating_picker = False

        if target is None:
            self._show_history(None, [])
            if report and not options:
                self._set_status("No sessions yet: type a message to start one.")
        elif target != self._history_session:
            await self._load_history(target)
        elif report and not self.busy:
            self._set_status(f"{len(options)} sessions.")

    async def _load_history(self, session_id: str) -> None:
        self._load_generation += 1
        generation = self._load_generation
        self._show_history(session_id, [])
        if not self.busy:
            self._set_status("Loading the conversation…")
        try:
            messages = await self.client.list_messages(session_id)
        except OpenCodeError as error:
            if generation == self._load_generation:
                self._show_error("Loading the conversation failed", error)
            return
        if generation != self._load_generation:
            return
        self._show_history(session_id, messages)
        if not self.busy:
            self._set_status(f"{len(messages)} messages.")

    def _show_history(self, session_id: str | None, messages: list[Message]) -> None:
        old_pages = self.history.children
        if self._live is not None:
            # The streaming reply's widget goes with the old pages.
            self._live.finish()
            self._live = None
        self._history_session = session_id
        self._history_ids = {message.id for message in messages}
        rendered = [widgets.HTML(render_message(message)) for message in messages]
        self.history.children = tuple(
            widgets.VBox(rendered[start : start + _PAGE_SIZE])
            for start in range(0, len(rendered), _PAGE_SIZE)
        )
        for page in old_pages:
            _close_tree(page)
        self._note_choices(messages)

    def _append_message(self, message: Message) -> widgets.HTML:
        widget = widgets.HTML(render_message(message))
        self._history_ids.add(message.id)
        self._append_widget(widget)
        return widget

    def _append_widget(self, widget: widgets.HTML) -> None:
        # Only the last page changes, so the cost does not grow with the history.
        pages = self.history.children
        if pages and len(pages[-1].children) < _PAGE_SIZE:
            pages[-1].children = (*pages[-1].children, widget)
        else:
            self.history.children = (*pages, widgets.VBox([widget]))

    def _insert_before(self, anchor: widgets.HTML, widget: widgets.HTML) -> None:
        for page in self.history.children:
            children = page.children
            for index, child in enumerate(children):
                if child is anchor:
                    page.children = (*children[:index], widget, *children[index:])
                    return
        self._append_widget(widget)

    def _remove_widget(self, widget: widgets.HTML) -> None:
        for page in self.history.children:
            if any(child is widget for child in page.children):
                page.children = tuple(c for c in page.children if c is not widget)
        widget.close()

    def _note_choices(self, messages: list[Message]) -> None:
        """Offer the models and agents that a conversation used."""
        if self.client.direct_mode:
            return
        models = {m.model for m in messages if m.model}
        agents = {m.agent for m in messages if m.agent}
        self.model_picker.options = sorted(models | set(self.model_picker.options))
        self.agent_picker.options = sorted(agents | set(self.agent_picker.options))
        last = next((m for m in reversed(messages) if m.model), None)
        self.model_picker.placeholder = f"default ({last.model})" if last else "default"

    async def _load_catalog(self) -> None:
        try:
            models = await self.client.list_models()
            agents = await self.client.list_agents()
        except OpenCodeError as error:
            logger.info("Listing the models and agents failed: %s", error)
            return
        self.model_picker.options = models
        self.agent_picker.options = agents

    async def _tick(self, started: float) -> None:
        while True:
            await asyncio.sleep(_TICK_SECONDS)
            if self._status_kind == "sending":
                elapsed = time.monotonic() - started
                self._set_status(f"{self._progress} {elapsed:.0f} s", "sending")

    async def _send_prompt(
        self, text: str, model: str | None, agent: str | None
    ) -> PromptReply | None:
        started = time.monotonic()
        self._progress = "Waiting for the agent…"
        ticker = self._create_task(self._tick(started), None)
        session_id = self.session_id
        pending: widgets.HTML | None = None
        live: LiveMessage | None = None
        try:
            if session_id is None:
                session = await self.client.create_session()
                await self._refresh(session.id)
                session_id = session.id
            if session_id == self._history_session:
                pending = widgets.HTML(_pending_html(text))
                self._append_widget(pending)
            reply, live = await self._stream_reply(session_id, text, model, agent)
        except PromptAbortedError as aborted:
            await self._show_stopped(text, aborted, pending, started)
            return None
        except (OpenCodeError, ValueError) as error:
            live, self._live = self._live, None
            if live is not None:
                live.finish()
                self._remove_widget(live.widget)
            if pending is not None:
                self._remove_widget(pending)
            self._show_error("Sending failed (your message is still in the box)", error)
            return None
        finally:
            ticker.cancel()
            self.stop_button.disabled = True

        # Clear the box only if it still contains what was sent, because the user
        # may have typed the next message meanwhile.
        if self.input.value == text:
            self.input.value = ""
        await self._show_reply(session_id, text, reply, pending, live)
        await self._refresh(None, report=False)
        elapsed = time.monotonic() - started
        self._set_status(f"Reply received in {elapsed:.1f} s.")
        return reply

    async def _stream_reply(
        self, session_id: str, text: str, model: str | None, agent: str | None
    ) -> tuple[PromptReply, LiveMessage | None]:
        """Stream the reply into a live message, and return it with that message."""
        live: LiveMessage | None = None
        async with self.client.stream_prompt(
            session_id, text, model=model, agent=agent
        ) as stream:
            await stream.start()
            # Stop has a turn to stop only once the server accepted the prompt.
            self._stream = stream
            self.stop_button.disabled = False
            if session_id == self._history_session:
                live = self._live = LiveMessage(self._loop)
                self._append_widget(live.widget)
            async for event in stream:
                if live is not None:
                    live.add(event, stream.text)
        if live is not None:
            live.finish()
            self._live = None
        if stream.reply is None:
            # The stream always ends with the reply, unless it was closed early.
            raise ProtocolError(
                f"The reply stream of session {session_id} ended without a reply."
            )
        return stream.reply, live

    async def _stop(self) -> bool:
        stream = self._stream
        if stream is None or stream.finished:
            return False
        self.stop_button.disabled = True
        self._progress = "Stopping the agent…"
        self._set_status(self._progress, "sending")
        try:
            await stream.abort()
        except OpenCodeError as error:
            self._show_error("Stopping failed", error)
            self.stop_button.disabled = stream.finished
            return False
        return True

    async def _show_stopped(
        self,
        text: str,
        aborted: PromptAbortedError,
        pending: widgets.HTML | None,
        started: float,
    ) -> None:
        """Keep the partial reply, marked "(stopped)", after an abort."""
        live, self._live = self._live, None
        if live is not None:
            live.stop(aborted.partial_text)
        # The server stored the prompt, so it leaves the box as after a reply.
        if self.input.value == text:
            self.input.value = ""
        await self._show_reply(aborted.session_id, text, None, pending, live)
        await self._refresh(None, report=False)
        elapsed = time.monotonic() - started
        self._set_status(
            f"Stopped the agent after {elapsed:.1f} s: the reply is incomplete.",
            "hint",
        )

    async def _show_reply(
        self,
        session_id: str,
        text: str,
        reply: PromptReply | None,
        pending: widgets.HTML | None,
        live: LiveMessage | None,
    ) -> None:
        """
        Show the messages the prompt added, read back from the server.

        The user's message replaces `pending`, and the last assistant message
        replaces the streamed `live` one, with any earlier steps put before it.
        `reply` is `None` after an abort.
        """
        if session_id != self._history_session:
            return
        try:
            messages = await self.client.list_messages(session_id)
        except OpenCodeError as error:
            # The reply itself arrived: show it with the local time.
            logger.info("Reading back the conversation failed: %s", error)
            now = datetime.now(UTC)
            messages = [Message("", "user", text, now)]
            if reply is not None:
                messages.append(
                    Message(
                        reply.message_id, "assistant", reply.response, now, reply.extra
                    )
                )
        if session_id != self._history_session:
            return
        visible = self.message_widgets
        if not any(child is pending for child in visible):
            pending = None  # the conversation was reloaded meanwhile
        live_widget = live.widget if live is not None else None
        if not any(child is live_widget for child in visible):
            live_widget = None
        new = [m for m in messages if m.id not in self._history_ids]
        last_reply = next((m for m in reversed(new) if m.role == "assistant"), None)
        for message in new:
            if pending is not None and message.role == "user":
                pending.value = render_message(message)
                self._history_ids.add(message.id)
                pending = None
            elif live_widget is not None and message is last_reply:
                live_widget.value = render_message(message)
                self._history_ids.add(message.id)
                live_widget = None
            elif live_widget is not None:
                widget = widgets.HTML(render_message(message))
                self._history_ids.add(message.id)
                self._insert_before(live_widget, widget)
            else:
                self._append_message(message)
        if live_widget is not None and reply is not None:
            # The server listed no new reply: show the one the stream ended with.
            now = datetime.now(UTC)
            live_widget.value = render_message(
                Message(reply.message_id, "assistant", reply.response, now, reply.extra)
            )

    async def _create(self, title: str | None, parent_id: str | None) -> Session | None:
        action = "Forking the session" if parent_id else "Creating a session"
        try:
            if parent_id is None:
                session = await self.client.create_session(title)
            else:
                session = await self.client.fork_session(parent_id, title)
        except (OpenCodeError, ValueError) as error:
            self._show_error(f"{action} failed", error)
            return None
        await self._refresh(session.id)
        return session

    async def _delete(self, session_id: str | None) -> bool:
        if session_id is None:
            self._set_status("Pick a session to delete first.", "hint")
            return False
        try:
            await self.client.delete_session(session_id)
        except (OpenCodeError, ValueError) as error:
            self._show_error("Deleting the session failed", error)
            return False
        await self._refresh(None)
        self._set_status("Deleted the session.")
        return True
