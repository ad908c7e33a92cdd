"""
IPython magics for OpenCode: `%load_ext opencode_notebook`.

::

    %opencode_connect http://localhost:3000 --port 3100
    %opencode_session new Data cleaning
    %%opencode_prompt --with df
    Which columns of df have missing values?

* `%opencode_connect [URL] [--port N] [--direct]` switches server and checks it.
* `%opencode_sessions [--limit N] [--search TEXT] [--title TITLE] [--out NAME]`
  returns the sessions as a DataFrame, newest update first.
* `%opencode_messages [SESSION] [--out NAME]` returns a session's messages.
* `%opencode_session new [TITLE] [--parent ID]`, `fork [ID] [TITLE]`, `use ID`,
  `show [ID]`, `delete ID` manage sessions and the current session. `fork`
  copies the session ID (default: the current one) and makes the copy current.
* `%%opencode_prompt [SESSION] [--new [TITLE]] [--model M] [--agent A]
  [--with NAME ...] [--out NAME]` sends the cell body and shows the reply as it
  arrives. `%opencode_prompt` sends the rest of the line after the session id
  and options.
* `%opencode_chat [SESSION]` shows the chat panel.

The settings are traits of `OpenCodeMagics`: `%config OpenCodeMagics` lists them.

Prompt text is sent exactly as written: IPython's `{var}` and `$var` expansion is
off for every magic here. Words on a magic's line are split the same way on every
platform: a word that starts with `"` or `'` (or a value after `--option=`) runs
to the matching quote, so `"my session"` is one word. Other quotes and
backslashes are kept as typed.

A user mistake or a server error raises `OpenCodeUsageError`, an IPython
`UsageError`: the notebook shows one line without a traceback, and the cell fails.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import pandas as pd
from IPython.core.error import UsageError
from IPython.core.magic import Magics, magics_class, no_var_expand
from traitlets import TraitError, observe

from opencode_notebook._live_reply import LiveReply, supports_live_display
from opencode_notebook._magic_args import (
    _SESSION_ID,
    OpenCodeUsageError,
    _check_variable_name,
    _context_block,
    _split_prompt_line,
    _split_words,
)
from opencode_notebook._magic_errors import describe_server, usage_error
from opencode_notebook._magic_settings import MagicSettings
from opencode_notebook.client import OpenCodeClient
from opencode_notebook.errors import OpenCodeError, PromptAbortedError
from opencode_notebook.models import PromptReply, Session
from opencode_notebook.operations import parse_model
from opencode_notebook.render import MarkdownReply

_F = TypeVar("_F", bound=Callable[..., Any])

if TYPE_CHECKING:
    import argparse

    from IPython.core.interactiveshell import InteractiveShell

    from opencode_notebook.prompt_stream import PromptStream

    class _Decorator(Protocol):
        def __call__(self, func: _F, /) -> _F: ...

    # IPython's decorators for magics are untyped or typed as a union. These
    # signatures let mypy check the methods they decorate.
    def argument(*args: Any, **kwargs: Any) -> _Decorator: ...
    def magic_arguments(name: str | None = None) -> _Decorator: ...
    def line_magic(func: _F, /) -> _F: ...
    def line_cell_magic(func: _F, /) -> _F: ...

else:
    from IPython.core.magic import line_cell_magic, line_magic
    from IPython.core.magic_arguments import argument, magic_arguments

__all__ = [
    "OpenCodeMagics",
    "OpenCodeUsageError",
    "StatusLine",
    "load_ipython_extension",
    "unload_ipython_extension",
]

logger = logging.getLogger("opencode_notebook")

_SESSION_ACTIONS = ("new", "fork", "use", "show", "delete")


class StatusLine:
    """One line of status text, displayed without quotes."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def __str__(self) -> str:
        return self.text


# The magics ---------------------------------------------------------------------


@magics_class
class OpenCodeMagics(Magics, MagicSettings):
    """
    The OpenCode magics and their settings.

    The settings are read when the client is created, on first use. Changing
    `url`, `port`, `direct` or a timeout replaces the client, and changing the
    server also clears `current_session`, the id that prompts go to by default.
    """

    # Set before the traits are configured, because the observers read them.
    _client: OpenCodeClient | None = None
    _owns_client = False
    current_session: str | None = None

    # Settings -------------------------------------------------------------------

    @observe("url", "port", "direct")
    def _server_changed(self, change: dict[str, Any]) -> None:
        self._drop_client()
        if self.current_session is not None:
            logger.info(
                "Cleared the current session %s because it is on the previous server.",
                self.current_session,
            )
            self.current_session = None

    @observe("timeout", "prompt_timeout")
    def _timeouts_changed(self, change: dict[str, Any]) -> None:
        self._drop_client()

    # The client -----------------------------------------------------------------

    @property
    def client(self) -> OpenCodeClient:
        """The client of the magics, created from the settings on first use."""
        if self._client is None:
            self._client = self._create_client()
            self._owns_client = True
        return self._client

    @client.setter
    def client(self, client: OpenCodeClient) -> None:
        # A client set from outside (for example one with a custom transport) is
        # used until a server setting changes, and the magics never close it.
        self._drop_client()
        self._client = client
        self._owns_client = False

    def _create_client(self) -> OpenCodeClient:
        try:
            if self.direct:
                return OpenCodeClient.direct(
                    self.url or None,
                    timeout=self.timeout,
                    prompt_timeout=self.prompt_timeout,
                )
            return OpenCodeClient(
                self.url or None,
                port=self.port,
                timeout=self.timeout,
                prompt_timeout=self.prompt_timeout,
            )
        except ValueError as exc:
            raise OpenCodeUsageError(str(exc)) from exc

    def _drop_client(self) -> None:
        if self._client is not None and self._owns_client:
            self._client.close()
        self._client = None
        self._owns_client = False

    def close(self) -> None:
        """Close the client the magics created."""
        self._drop_client()

    def _where(self) -> str:
        return describe_server(self.client)

    @contextmanager
    def _server_errors(self, session_id: str | None = None) -> Iterator[None]:
        """Turn the client's errors into one-line usage errors."""
        try:
            yield
        except (OpenCodeError, ValueError) as exc:
            raise self._usage_error(exc, session_id) from exc

    def _usage_error(
        self, exc: Exception, session_id: str | None
    ) -> OpenCodeUsageError:
        return usage_error(self.client, exc, session_id)

    # Shared steps ---------------------------------------------------------------

    def _parse(
        self, magic: Callable[..., Any], argv: list[str], hint: str = ""
    ) -> argparse.Namespace:
        """Parse `argv` with the magic's parser, raising a mistake as one line."""
        parser: argparse.ArgumentParser = magic.parser  # type: ignore[attr-defined]
        parser.allow_abbrev = False
        try:
            return parser.parse_intermixed_args(argv)
        except UsageError as exc:
            name = magic.__name__
            raise OpenCodeUsageError(
                f"%{name}: {exc}. Run %{name}? to see its options.{hint}"
            ) from None

    def _session_or_current(self, session_id: str | None) -> str:
        if session_id:
            return session_id
        if self.current_session is None:
            raise OpenCodeUsageError(
                "No current session: run %opencode_session new or pass a session id."
            )
        return self.current_session

    @property
    def _user_ns(self) -> dict[str, Any]:
        assert self.shell is not None, "the magics are registered with a shell"
        return self.shell.user_ns  # type: ignore[no-any-return]

    def _deliver(self, value: Any, out: str | None) -> Any:
        """Store `value` in the variable `out` and return None, or return it."""
        if out is None:
            return value
        self._user_ns[out] = value
        return None

    # %opencode_connect ----------------------------------------------------------

    @no_var_expand
    @line_magic
    @magic_arguments()
    @argument(
        "url",
        nargs="?",
        help="URL of the gateway, or of opencode serve with --direct. Without "
        "arguments, check the current connection.",
    )
    @argument(
        "--port",
        type=int,
        metavar="N",
        help="port (1-65535) of the OpenCode instance behind the gateway "
        "(default: $OPENCODE_PORT, else 3100)",
    )
    @argument(
        "--direct",
        action="store_true",
        help="talk to opencode serve at URL without a gateway",
    )
    def opencode_connect(self, line: str) -> StatusLine:
        """Connect the magics to an OpenCode server and list its sessions."""
        args = self._parse(self.opencode_connect, _split_words(line))
        return self._connect(args)

    def _connect(self, args: argparse.Namespace) -> StatusLine:
        if args.direct and args.port is not None:
            raise OpenCodeUsageError(
                "--port selects an instance behind a gateway: with --direct, give "
                "the URL of opencode serve itself, as in http://127.0.0.1:4096."
            )
        switching = args.url is not None or args.port is not None or args.direct
        previous = (self.url, self.port, self.direct, self.current_session)
        if switching:
            try:
                with self.hold_trait_notifications():
                    self.url = args.url or ""
                    self.port = args.port
                    self.direct = args.direct
            except TraitError as exc:
                raise OpenCodeUsageError(str(exc)) from None
        try:
            with self._server_errors():
                count = len(self.client.list_sessions())
        except OpenCodeUsageError as exc:
            if not switching:
                raise
            # Keep the connection that worked, so one mistyped URL loses nothing.
            with self.hold_trait_notifications():
                self.url, self.port, self.direct = previous[:3]
            self.current_session = previous[3]
            raise OpenCodeUsageError(
                f"{exc} Still connected to {self._where()}."
            ) from None
        noun = "session" if count == 1 else "sessions"
        return StatusLine(f"Connected to {self._where()}: {count} {noun}.")

    # %opencode_sessions ---------------------------------------------------------

    @no_var_expand
    @line_magic
    @magic_arguments()
    @argument(
        "--limit",
        type=int,
        metavar="N",
        help="keep the N most recently updated sessions",
    )
    @argument(
        "--search",
        metavar="TEXT",
        help="keep sessions whose title contains TEXT, ignoring case",
    )
    @argument("--title", metavar="TITLE", help="keep sessions titled exactly TITLE")
    @argument(
        "--out",
        metavar="NAME",
        help="store the DataFrame in the variable NAME and display nothing",
    )
    def opencode_sessions(self, line: str) -> pd.DataFrame | None:
        """Return the sessions as a DataFrame, newest update first."""
        args = self._parse(self.opencode_sessions, _split_words(line))
        return self._deliver(self._sessions(args), args.out)  # type: ignore[no-any-return]

    def _sessions(self, args: argparse.Namespace) -> pd.DataFrame:
        from opencode_notebook.frames import sessions_frame

        _check_variable_name(args.out, "--out")
        if args.limit is not None and args.limit < 0:
            raise OpenCodeUsageError(
                f"Invalid --limit {args.limit}: give 0 or a positive number of "
                "sessions."
            )
        with self._server_errors():
            sessions = self.client.list_sessions()
        if args.search is not None:
            needle = args.search.casefold()
            sessions = [s for s in sessions if needle in s.title.casefold()]
        if args.title is not None:
            sessions = [s for s in sessions if s.title == args.title]
        # The server's order is not relied on: sort, then cut to the limit.
        sessions.sort(key=lambda session: session.updated_at, reverse=True)
        if args.limit is not None:
            sessions = sessions[: args.limit]
        return sessions_frame(sessions)

    # %opencode_messages ---------------------------------------------------------

    @no_var_expand
    @line_magic
    @magic_arguments()
    @argument("session", nargs="?", help="session id (default: the current session)")
    @argument(
        "--out",
        metavar="NAME",
        help="store the DataFrame in the variable NAME and display nothing",
    )
    def opencode_messages(self, line: str) -> pd.DataFrame | None:
        """Return a session's messages as a DataFrame, oldest first."""
        args = self._parse(self.opencode_messages, _split_words(line))
        return self._deliver(self._messages(args), args.out)  # type: ignore[no-any-return]

    def _messages(self, args: argparse.Namespace) -> pd.DataFrame:
        from opencode_notebook.frames import messages_frame

        _check_variable_name(args.out, "--out")
        session_id = self._session_or_current(args.session)
        with self._server_errors(session_id):
            messages = self.client.list_messages(session_id)
        return messages_frame(messages, session_id=session_id)

    # %opencode_session ----------------------------------------------------------

    @no_var_expand
    @line_magic
    @magic_arguments()
    @argument(
        "action",
        nargs="?",
        default="show",
        help="new, fork, use, show or delete (default: show)",
    )
    @argument(
        "words",
        nargs="*",
        metavar="ARG",
        help="for new, the title (default: generated by OpenCode); for fork, a "
        "session id (default: the current session), then the title; for use and "
        "delete, the session id; for show, a session id (default: the current "
        "session)",
    )
    @argument(
        "--parent",
        metavar="ID",
        help="with new, fork the session ID, copying its conversation",
    )
    def opencode_session(self, line: str) -> Session | StatusLine:
        """Create, fork, select, show or delete a session."""
        args = self._parse(self.opencode_session, _split_words(line))
        return self._session_action(args)

    def _session_action(self, args: argparse.Namespace) -> Session | StatusLine:
        action, words = args.action, args.words
        if action not in _SESSION_ACTIONS:
            raise OpenCodeUsageError(
                f"Unknown action {action!r}: use %opencode_session new [TITLE], "
                "fork [ID] [TITLE], use ID, show [ID] or delete ID."
            )
        if args.parent is not None and action != "new":
            raise OpenCodeUsageError(
                f"--parent applies to new, not {action}: run "
                "%opencode_session new --parent ID."
            )
        if action == "new":
            return self._new_session(" ".join(words) or None, args.parent)
        if action == "fork":
            return self._fork_session(words)
        if action == "show" and len(words) <= 1:
            session_id = self._session_or_current(words[0] if words else None)
            with self._server_errors(session_id):
                return self.client.get_session(session_id)
        if len(words) != 1:
            raise OpenCodeUsageError(
                f"%opencode_session {action} takes one session id, as in "
                f"%opencode_session {action} ses_..."
            )
        if action == "use":
            return self._use_session(words[0])
        return self._delete_session(words[0])

    def _new_session(self, title: str | None, parent_id: str | None) -> Session:
        with self._server_errors(parent_id):
            session = self.client.create_session(title, parent_id=parent_id)
        self.current_session = session.id
        return session

    def _fork_session(self, words: list[str]) -> Session:
        # A first word that looks like a session id names the session to fork.
        # Without one, every word is the title and the current session is forked.
        if words and _SESSION_ID.fullmatch(words[0]):
            parent_id, title_words = words[0], words[1:]
        else:
            parent_id, title_words = self._session_or_current(None), words
        return self._new_session(" ".join(title_words) or None, parent_id)

    def _use_session(self, session_id: str) -> Session:
        with self._server_errors(session_id):
            session = self.client.get_session(session_id)
        self.current_session = session.id
        return session

    def _delete_session(self, session_id: str) -> StatusLine:
        with self._server_errors(session_id):
            self.client.delete_session(session_id)
        if session_id != self.current_session:
            return StatusLine(f"Deleted session {session_id}.")
        self.current_session = None
        return StatusLine(
            f"Deleted session {session_id}, which was the current session: "
            "there is no current session now."
        )

    # %opencode_prompt -----------------------------------------------------------

    @no_var_expand
    @line_cell_magic
    @magic_arguments()
    @argument("session", nargs="?", help="session id (default: the current session)")
    @argument(
        "--new",
        nargs="?",
        const="",
        metavar="TITLE",
        help="send to a new session titled TITLE and make it the current "
        "session (in the line form, TITLE must be quoted)",
    )
    @argument(
        "--model",
        metavar="PROVIDER/MODEL",
        help="model for this prompt (default: OpenCodeMagics.model)",
    )
    @argument(
        "--agent",
        metavar="NAME",
        help="agent for this prompt (default: OpenCodeMagics.agent)",
    )
    @argument(
        "--with",
        dest="context",
        action="extend",
        nargs="+",
        metavar="NAME",
        help="add the variable NAME before the prompt: a DataFrame's shape, dtypes "
        "and first rows, a str's text, or another value's repr (in the line form, "
        "one NAME per --with)",
    )
    @argument(
        "--out",
        metavar="NAME",
        help="also store the PromptReply in the variable NAME",
    )
    def opencode_prompt(self, line: str, cell: str | None = None) -> MarkdownReply:
        """
        Send a prompt, show the reply as it arrives, and return it.

        `%%opencode_prompt [options]` sends the cell body. `%opencode_prompt
        [SESSION] [options] TEXT` sends TEXT, which starts at the first word that
        is not a session id (`ses_...`) or an option, or after `--`. The text is
        sent exactly as written.

        In Jupyter the reply grows in one output of the cell while the agent
        writes it, and ends as Markdown. The returned `MarkdownReply` then shows
        nothing more in that cell, so the reply appears once, and
        `x = %opencode_prompt ...` both shows it and stores it in `x`. Where
        outputs cannot change (IPython in a terminal), or with
        `%config OpenCodeMagics.stream = False`, the reply is shown once it is
        complete, as the cell's value. Interrupting the cell stops the agent's
        turn and shows the partial reply marked "(stopped)".
        """
        if cell is None:
            argv, text = _split_prompt_line(line)
            args = self._parse(
                self.opencode_prompt,
                argv,
                " Put `--` before prompt text that starts with a dash.",
            )
            empty_hint = (
                "write the prompt after the options, as in %opencode_prompt "
                "Explain this error, or use %%opencode_prompt with the prompt in "
                "the cell body."
            )
        else:
            words = _split_words(line)
            hint = ""
            if "--new" in words:
                hint = ' A title of several words needs quotes: --new "my title".'
            args = self._parse(self.opencode_prompt, words, hint)
            text = cell
            empty_hint = "write the prompt in the cell body under %%opencode_prompt."
        if not text.strip():
            raise OpenCodeUsageError(f"Message text required: {empty_hint}")
        reply, shown = self._prompt(args, text)
        # --out keeps the whole PromptReply too. The reply is still shown, because
        # a prompt's answer is what the cell is for.
        if args.out is not None:
            self._user_ns[args.out] = reply
        return shown

    def _prompt(
        self, args: argparse.Namespace, text: str
    ) -> tuple[PromptReply, MarkdownReply]:
        # Every check runs before the first request, so a mistake sends nothing.
        _check_variable_name(args.out, "--out")
        model = self._prompt_model(args.model)
        agent = (args.agent if args.agent is not None else self.agent).strip() or None
        context = self._context(args.context or [])
        if args.new is not None and args.session:
            raise OpenCodeUsageError(
                f"Give either a session id ({args.session}) or --new, not both. A "
                'title of several words needs quotes: --new "my title".'
            )
        if args.new is not None:
            session_id = self._new_session(args.new or None, None).id
        else:
            session_id = self._session_or_current(args.session)
        if self.stream:
            return self._stream_reply(session_id, context + text, model, agent)
        reply = self._wait_reply(session_id, context + text, model, agent)
        return reply, MarkdownReply(reply.response)

    def _wait_reply(
        self, session_id: str, text: str, model: str | None, agent: str | None
    ) -> PromptReply:
        try:
            with self._server_errors(session_id):
                return self.client.prompt(session_id, text, model=model, agent=agent)
        except KeyboardInterrupt:
            # OpenCode keeps running a turn whose client went away, so an
            # interrupted cell stops the turn explicitly.
            self._abort(session_id)
            raise

    def _stream_reply(
        self, session_id: str, text: str, model: str | None, agent: str | None
    ) -> tuple[PromptReply, MarkdownReply]:
        assert self.shell is not None, "the magics are registered with a shell"
        output = LiveReply(self.shell, live=supports_live_display(self.shell))
        with self._server_errors(session_id):
            stream = self.client.stream_prompt(
                session_id, text, model=model, agent=agent
            )
        # Leaving this block before the reply, by an interrupt or an error,
        # aborts the turn on the server.
        with stream:
            # Input and server errors (unknown session, model or agent) raise
            # here, before anything is shown.
            try:
                with self._server_errors(session_id):
                    stream.start()
            except KeyboardInterrupt:
                # The server may have accepted the prompt before the interrupt.
                self._abort(session_id)
                raise
            reply = self._follow(stream, output, session_id)
        return reply, output.finish(reply.response)

    def _follow(
        self, stream: PromptStream, output: LiveReply, session_id: str
    ) -> PromptReply:
        """Show the stream's events in `output` until the reply arrives."""
        try:
            for event in stream:
                output.add(event, stream.text)
        except KeyboardInterrupt:
            output.stop(stream.text, "(stopped)")
            raise
        except PromptAbortedError as exc:
            output.stop(exc.partial_text or stream.text, "(stopped)")
            raise self._usage_error(exc, session_id) from exc
        except (OpenCodeError, ValueError) as exc:
            output.stop(stream.text, "(incomplete)")
            raise self._usage_error(exc, session_id) from exc
        if stream.reply is None:
            # The stream always ends with the reply, unless it was closed early.
            raise OpenCodeUsageError(
                f"The reply stream of session {session_id} ended without a reply: "
                f"read the reply with %opencode_messages {session_id}."
            )
        return stream.reply

    def _abort(self, session_id: str) -> None:
        try:
            self.client.abort(session_id)
        except OpenCodeError as exc:
            logger.warning(
                "Failed to stop the agent's turn in session %s after the interrupt: %s",
                session_id,
                exc,
            )
        else:
            logger.info(
                "Stopped the agent's turn in session %s after the interrupt.",
                session_id,
            )

    def _prompt_model(self, requested: str | None) -> str | None:
        model = requested if requested is not None else self.model
        if not model.strip():
            return None
        try:
            parse_model(model)
        except ValueError as exc:
            raise OpenCodeUsageError(str(exc)) from None
        return model.strip()

    def _context(self, names: list[str]) -> str:
        """Describe the `--with` variables, each in a block ending in a blank line."""
        blocks = []
        for name in dict.fromkeys(names):
            _check_variable_name(name, "--with")
            if name not in self._user_ns:
                raise OpenCodeUsageError(
                    f"Unknown variable {name!r} in --with: define it first, or check "
                    "the name."
                )
            value = self._user_ns[name]
            blocks.append(_context_block(name, value, self.context_limit) + "\n\n")
        return "".join(blocks)

    # %opencode_chat -------------------------------------------------------------

    @no_var_expand
    @line_magic
    @magic_arguments()
    @argument("session", nargs="?", help="session id (default: the current session)")
    def opencode_chat(self, line: str) -> Any:
        """Show the chat panel for a session."""
        from opencode_notebook.chat import ChatPanel

        args = self._parse(self.opencode_chat, _split_words(line))
        session_id = args.session or self.current_session
        return ChatPanel(client=self.client, session_id=session_id)


def load_ipython_extension(shell: InteractiveShell) -> None:
    """Register the magics and their settings with `shell`."""
    configurables: list[Any] = shell.configurables
    if any(isinstance(item, OpenCodeMagics) for item in configurables):
        return
    magics = OpenCodeMagics(shell=shell)
    shell.register_magics(magics)
    # `Magics.__init__` appends the instance to `configurables` already.
    if magics not in configurables:
        configurables.append(magics)


def unload_ipython_extension(shell: InteractiveShell) -> None:
    """Remove the magics and their settings from `shell`, and close the client."""
    configurables: list[Any] = shell.configurables
    manager = shell.magics_manager
    for magics in [c for c in configurables if isinstance(c, OpenCodeMagics)]:
        configurables.remove(magics)
        for kind, names in magics.magics.items():
            table = manager.magics[kind]
            for name in names:
                if getattr(table.get(name), "__self__", None) is magics:
                    del table[name]
        if manager.registry.get(type(magics).__name__) is magics:
            del manager.registry[type(magics).__name__]
        magics.close()
