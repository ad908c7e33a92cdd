"""Every magic, option and error against the real chain: gateway and direct."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from live_output import RecordingPublisher, recording_display
from magics_shell import loaded_shell, magics_of

from opencode_notebook import OpenCodeClient, Session
from opencode_notebook.magics import OpenCodeMagics, StatusLine
from opencode_notebook.render import MarkdownReply
from opencode_notebook.stack import LocalChain

pytestmark = pytest.mark.chain

MODEL = "local/echo"


@pytest.fixture
def shell(chain: LocalChain) -> Iterator[InteractiveShell]:
    """A shell whose magics talk to the chain's gateway with the offline model."""
    with loaded_shell() as loaded:
        magics = magics_of(loaded)
        magics.url = chain.gateway_url or ""
        magics.port = chain.opencode_ports[0]
        magics.model = MODEL
        yield loaded


@pytest.fixture
def magics(shell: InteractiveShell) -> OpenCodeMagics:
    return magics_of(shell)


@pytest.fixture(scope="module")
def client(chain: LocalChain) -> Iterator[OpenCodeClient]:
    """A client of its own, to check what the magics did on the server."""
    with OpenCodeClient(chain.gateway_url, port=chain.opencode_ports[0]) as client:
        yield client


def unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def user_texts(client: OpenCodeClient, session_id: str) -> list[str]:
    return [m.content for m in client.list_messages(session_id) if m.role == "user"]


# %opencode_connect


def test_connect_through_gateway(shell: InteractiveShell, chain: LocalChain) -> None:
    magics = magics_of(shell)
    magics.url = "http://127.0.0.1:1"
    port = chain.opencode_ports[0]
    status = shell.run_line_magic(
        "opencode_connect", f"{chain.gateway_url} --port {port}"
    )
    assert isinstance(status, StatusLine)
    assert str(status).startswith(
        f"Connected to the gateway at {chain.gateway_url} (OpenCode port {port}): "
    )
    assert str(status).endswith(" sessions.") or str(status).endswith(" session.")
    assert magics.url == chain.gateway_url
    assert magics.port == port
    assert not magics.direct


def test_connect_without_arguments_checks_current(
    shell: InteractiveShell, chain: LocalChain
) -> None:
    status = shell.run_line_magic("opencode_connect", "")
    assert f"the gateway at {chain.gateway_url}" in str(status)
    assert magics_of(shell).url == chain.gateway_url


def test_connect_clears_current_session(
    shell: InteractiveShell, chain: LocalChain
) -> None:
    magics = magics_of(shell)
    shell.run_line_magic("opencode_session", "new")
    assert magics.current_session is not None
    shell.run_line_magic("opencode_connect", f"{chain.opencode_urls[0]} --direct")
    assert magics.current_session is None


def test_connect_to_closed_port_fails_fast(shell: InteractiveShell) -> None:
    magics = magics_of(shell)
    shell.run_line_magic("opencode_session", "new")
    working = (magics.url, magics.port, magics.direct, magics.current_session)
    # A bound socket that does not listen refuses connections, and no other
    # process can take its port while the test runs.
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(UsageError) as excinfo:
            shell.run_line_magic("opencode_connect", f"{url} --port 3100")
        elapsed = time.monotonic() - started
    assert str(excinfo.value).startswith(
        f"Cannot connect to OpenCode at {url}: start it with `opencode-notebook up` "
        "(or `opencode-notebook serve`), or connect elsewhere with "
        "%opencode_connect URL. Still connected to the gateway at "
    )
    assert elapsed < 5
    assert (magics.url, magics.port, magics.direct, magics.current_session) == working
    assert shell.run_line_magic("opencode_sessions", "--limit 1") is not None


def test_gateway_rejects_unserved_port(shell: InteractiveShell) -> None:
    magics = magics_of(shell)
    magics.port = 1
    with pytest.raises(UsageError, match=re.escape("does not serve OpenCode port 1. ")):
        shell.run_line_magic("opencode_sessions", "")


# %opencode_session


@pytest.mark.parametrize(
    ("line", "title"),
    [
        pytest.param('new "my session"', "my session", id="double-quotes"),
        pytest.param("new 'my  session'", "my  session", id="single-quotes"),
        pytest.param("new my session", "my session", id="words"),
        pytest.param("""new 'Say "hi"'""", 'Say "hi"', id="inner-quotes"),
        pytest.param("new don't panic", "don't panic", id="apostrophe"),
        pytest.param("new C:\\temp\\notes", "C:\\temp\\notes", id="backslashes"),
    ],
)
def test_session_new_titles(
    shell: InteractiveShell, client: OpenCodeClient, line: str, title: str
) -> None:
    session = shell.run_line_magic("opencode_session", line)
    assert isinstance(session, Session)
    assert session.title == title
    assert client.get_session(session.id).title == title
    assert magics_of(shell).current_session == session.id


def test_session_new_without_title(shell: InteractiveShell) -> None:
    session = shell.run_line_magic("opencode_session", "new")
    assert session.title
    assert magics_of(shell).current_session == session.id


def test_session_new_with_parent_forks(
    shell: InteractiveShell, client: OpenCodeClient
) -> None:
    parent = client.create_session("fork parent")
    client.prompt(parent.id, "remember this", model=MODEL)
    fork = shell.run_line_magic("opencode_session", f"new Fork --parent {parent.id}")
    assert fork.parent_id == parent.id
    assert fork.title == "Fork"
    assert user_texts(client, fork.id) == ["remember this"]
    assert magics_of(shell).current_session == fork.id


def test_session_fork_current(shell: InteractiveShell, client: OpenCodeClient) -> None:
    parent = shell.run_line_magic("opencode_session", "new fork me")
    shell.run_cell_magic("opencode_prompt", "", "first turn")
    fork = shell.run_line_magic("opencode_session", "fork Try B")
    assert isinstance(fork, Session)
    assert fork.parent_id == parent.id
    assert fork.title == "Try B"
    assert magics_of(shell).current_session == fork.id
    assert user_texts(client, fork.id) == ["first turn"]
    reply = shell.run_cell_magic("opencode_prompt", "", "second turn")
    assert reply.text == "Echo: second turn"
    assert user_texts(client, fork.id) == ["first turn", "second turn"]
    assert user_texts(client, parent.id) == ["first turn"]


def test_session_fork_by_id(shell: InteractiveShell, client: OpenCodeClient) -> None:
    parent = client.create_session("fork by id")
    current = shell.run_line_magic("opencode_session", "new stays aside")
    fork = shell.run_line_magic("opencode_session", f"fork {parent.id}")
    assert fork.parent_id == parent.id
    assert fork.id not in (parent.id, current.id)
    assert fork.title
    assert magics_of(shell).current_session == fork.id


def test_session_fork_unknown(shell: InteractiveShell) -> None:
    current = shell.run_line_magic("opencode_session", "new fork source")
    with pytest.raises(UsageError) as excinfo:
        shell.run_line_magic("opencode_session", "fork ses_doesnotexist")
    assert str(excinfo.value).startswith(
        "Session not found: 'ses_doesnotexist' on the gateway at "
    )
    assert magics_of(shell).current_session == current.id


def test_session_use_and_show(shell: InteractiveShell, client: OpenCodeClient) -> None:
    created = client.create_session("use me")
    used = shell.run_line_magic("opencode_session", f"use {created.id}")
    shown = shell.run_line_magic("opencode_session", "show")
    shown_by_id = shell.run_line_magic("opencode_session", f"show {created.id}")
    bare = shell.run_line_magic("opencode_session", "")
    assert used == created
    assert shown == created
    assert shown_by_id == created
    assert bare == created
    assert magics_of(shell).current_session == created.id
    assert "use me" in shown._repr_html_()


def test_session_use_unknown(shell: InteractiveShell) -> None:
    with pytest.raises(UsageError) as excinfo:
        shell.run_line_magic("opencode_session", "use ses_doesnotexist")
    assert str(excinfo.value).startswith(
        "Session not found: 'ses_doesnotexist' on the gateway at "
    )
    assert str(excinfo.value).endswith("List the sessions with %opencode_sessions.")
    assert magics_of(shell).current_session is None


def test_session_delete_current_clears_it(
    shell: InteractiveShell, client: OpenCodeClient
) -> None:
    magics = magics_of(shell)
    session = shell.run_line_magic("opencode_session", "new doomed")
    status = shell.run_line_magic("opencode_session", f"delete {session.id}")
    assert str(status) == (
        f"Deleted session {session.id}, which was the current session: "
        "there is no current session now."
    )
    assert magics.current_session is None
    assert session.id not in {s.id for s in client.list_sessions()}


def test_session_delete_other_keeps_current(
    shell: InteractiveShell, client: OpenCodeClient
) -> None:
    other = client.create_session("other")
    current = shell.run_line_magic("opencode_session", "new keeper")
    status = shell.run_line_magic("opencode_session", f"delete {other.id}")
    assert str(status) == f"Deleted session {other.id}."
    assert magics_of(shell).current_session == current.id


# %opencode_sessions


def test_sessions_display_once(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    shell.run_line_magic("opencode_session", "new shown once")
    capsys.readouterr()
    result = shell.run_cell("%opencode_sessions --search 'shown once'")
    out = capsys.readouterr().out
    assert result.error_in_exec is None
    assert isinstance(result.result, pd.DataFrame)
    assert out.count("shown once") == 1
    assert out.count("Out[") == 1


def test_sessions_assignment_displays_nothing(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    result = shell.run_cell("df = %opencode_sessions")
    assert result.error_in_exec is None
    assert isinstance(shell.user_ns["df"], pd.DataFrame)
    assert capsys.readouterr().out == ""


def test_sessions_out_stores_and_displays_nothing(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    result = shell.run_cell("%opencode_sessions --out sessions_df")
    assert result.error_in_exec is None
    assert result.result is None
    assert isinstance(shell.user_ns["sessions_df"], pd.DataFrame)
    assert capsys.readouterr().out == ""


def test_sessions_search_title_and_limit(
    shell: InteractiveShell, client: OpenCodeClient
) -> None:
    tag = unique("filter")
    first = client.create_session(f"{tag} alpha")
    second = client.create_session(f"{tag} beta")
    third = client.create_session(f"{tag} gamma")
    client.prompt(first.id, "bump", model=MODEL)
    found = shell.run_line_magic("opencode_sessions", f'--search "{tag.upper()}"')
    assert list(found["id"]) == [first.id, third.id, second.id]
    assert found["updatedAt"].is_monotonic_decreasing
    limited = shell.run_line_magic("opencode_sessions", f"--search '{tag}' --limit 2")
    assert list(limited["id"]) == [first.id, third.id]
    exact = shell.run_line_magic("opencode_sessions", f'--title "{tag} beta"')
    assert list(exact["id"]) == [second.id]
    none = shell.run_line_magic("opencode_sessions", f'--title "{tag}"')
    assert none.empty


async def test_sessions_inside_running_loop(shell: InteractiveShell) -> None:
    asyncio.get_running_loop()
    frame = shell.run_line_magic("opencode_sessions", "--limit 1")
    assert isinstance(frame, pd.DataFrame)
    assert len(frame) <= 1


# %opencode_messages


def test_messages_of_current_session(shell: InteractiveShell) -> None:
    shell.run_cell_magic("opencode_prompt", "--new", "first question")
    frame = shell.run_line_magic("opencode_messages", "")
    assert list(frame["role"]) == ["user", "assistant"]
    assert frame["content"].iloc[0] == "first question"
    assert "first question" in frame["content"].iloc[1]


def test_messages_by_id_with_out(
    shell: InteractiveShell, client: OpenCodeClient
) -> None:
    session = client.create_session("messages by id")
    client.prompt(session.id, "stored", model=MODEL)
    result = shell.run_line_magic("opencode_messages", f"{session.id} --out msgs")
    assert result is None
    assert list(shell.user_ns["msgs"]["role"]) == ["user", "assistant"]


def test_messages_of_unknown_session(shell: InteractiveShell) -> None:
    with pytest.raises(UsageError, match=r"^Session not found: 'ses_missing' on "):
        shell.run_line_magic("opencode_messages", "ses_missing")


# %%opencode_prompt and %opencode_prompt


def test_cell_prompt_new_session_reply(shell: InteractiveShell) -> None:
    reply = shell.run_cell_magic("opencode_prompt", '--new "Greeting"', "hello")
    magics = magics_of(shell)
    assert isinstance(reply, MarkdownReply)
    assert reply.text.startswith("Echo: hello")
    bundle = reply._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/markdown", "text/html"}
    assert magics.current_session is not None
    session = shell.run_line_magic("opencode_session", "show")
    assert session.title == "Greeting"


def test_cell_prompt_body_reaches_server_verbatim(
    shell: InteractiveShell, client: OpenCodeClient
) -> None:
    session = client.create_session("verbatim")
    body = 'Explain {v:k for k,v in d.items()} and {not_a_var} in {"a": 1}'
    shell.run_cell_magic("opencode_prompt", session.id, body)
    assert user_texts(client, session.id) == [body]


def test_line_prompt_reaches_server_verbatim(
    shell: InteractiveShell, client: OpenCodeClient
) -> None:
    session = client.create_session("line verbatim")
    shell.user_ns["x"] = 5
    shell.run_cell(f"%opencode_prompt {session.id} keep {{x}} and {{100}} and $x")
    shell.run_cell(
        f"""%opencode_prompt {session.id} --agent build Say "hi there", don't stop"""
    )
    assert user_texts(client, session.id) == [
        "keep {x} and {100} and $x",
        'Say "hi there", don\'t stop',
    ]


def test_prompt_goes_to_current_session(
    shell: InteractiveShell, client: OpenCodeClient
) -> None:
    session = shell.run_line_magic("opencode_session", "new current target")
    reply = shell.run_line_magic("opencode_prompt", "to the current one")
    assert reply.text.startswith("Echo: to the current one")
    assert user_texts(client, session.id) == ["to the current one"]


def test_prompt_out_keeps_prompt_reply(
    shell: InteractiveShell, client: OpenCodeClient
) -> None:
    session = shell.run_line_magic("opencode_session", "new out target")
    shown = shell.run_cell_magic("opencode_prompt", "--out answer", "keep it")
    answer = shell.user_ns["answer"]
    assert shown.text == answer.response
    messages = client.list_messages(session.id)
    assert answer.message_id == messages[-1].id


def test_prompt_with_dataframe(shell: InteractiveShell, client: OpenCodeClient) -> None:
    session = shell.run_line_magic("opencode_session", "new with data")
    shell.user_ns["df"] = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    shell.run_cell_magic("opencode_prompt", "--with df", "Describe df.")
    (text,) = user_texts(client, session.id)
    assert text.startswith("Variable `df` (DataFrame):\n```\nshape: 2 rows x 2 columns")
    assert "a,b\n1,x\n2,y\n```" in text
    assert text.endswith("\n\nDescribe df.")


def test_prompt_unknown_model_lists_models(shell: InteractiveShell) -> None:
    shell.run_line_magic("opencode_session", "new bad model")
    with pytest.raises(UsageError) as excinfo:
        shell.run_cell_magic("opencode_prompt", "--model local/nope", "hi")
    assert "local/nope" in str(excinfo.value)
    assert "local/echo" in str(excinfo.value)
    assert "\n" not in str(excinfo.value)


def test_prompt_unknown_agent(shell: InteractiveShell) -> None:
    shell.run_line_magic("opencode_session", "new bad agent")
    with pytest.raises(UsageError, match="nobody"):
        shell.run_line_magic("opencode_prompt", "--agent nobody hi")


def test_prompt_unknown_session(shell: InteractiveShell) -> None:
    with pytest.raises(UsageError, match=r"^Session not found: 'ses_gone' on "):
        shell.run_cell_magic("opencode_prompt", "ses_gone", "hello?")


def test_prompt_timeout_names_setting(shell: InteractiveShell) -> None:
    magics = magics_of(shell)
    shell.run_line_magic("opencode_session", "new slow")
    magics.prompt_timeout = 0.5
    with pytest.raises(UsageError) as excinfo:
        shell.run_cell_magic("opencode_prompt", "", "[[delay 0.4]] one two three")
    session_id = magics.current_session
    assert str(excinfo.value) == (
        f"The prompt to session {session_id} did not finish within 0.5 s. The reply "
        f"may still arrive: read it later with %opencode_messages {session_id}, or "
        "raise the limit with %config OpenCodeMagics.prompt_timeout = SECONDS."
    )


# Direct mode


def test_direct_mode_runs_every_magic(
    shell: InteractiveShell, chain: LocalChain
) -> None:
    url = chain.opencode_urls[0]
    status = shell.run_line_magic("opencode_connect", f"{url} --direct")
    assert str(status).startswith(f"Connected to OpenCode at {url}: ")
    assert magics_of(shell).client.direct_mode
    session = shell.run_line_magic("opencode_session", "new 'direct session'")
    reply = shell.run_line_magic("opencode_prompt", "--agent build via direct")
    frame = shell.run_line_magic("opencode_messages", "")
    sessions = shell.run_line_magic("opencode_sessions", "--search 'direct session'")
    assert session.title == "direct session"
    assert reply.text.startswith("Echo: via direct")
    assert frame["content"].iloc[0] == "via direct"
    assert session.id in set(sessions["id"])
    with pytest.raises(UsageError, match=r"^Session not found: 'ses_nothere' on "):
        shell.run_line_magic("opencode_messages", "ses_nothere")


def test_interrupted_prompt_stops_the_turn(
    shell: InteractiveShell, chain: LocalChain
) -> None:
    url = chain.opencode_urls[0]
    shell.run_line_magic("opencode_connect", f"{url} --direct")
    session = shell.run_line_magic("opencode_session", "new interrupted")

    def interrupt_once_the_turn_runs() -> None:
        with OpenCodeClient.direct(url) as watcher:
            while not any(
                message.role == "assistant"
                for message in watcher.list_messages(session.id)
            ):
                time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    interrupter = threading.Thread(target=interrupt_once_the_turn_runs)
    interrupter.start()
    with pytest.raises(KeyboardInterrupt):
        shell.run_cell_magic("opencode_prompt", "", "[[delay 0.3]] " + "word " * 20)
    interrupter.join()
    with OpenCodeClient.direct(url) as client:
        user, assistant = client.list_messages(session.id)
    assert user.role == "user"
    assert assistant.extra["error"] == "MessageAbortedError: Aborted"


# %opencode_chat


async def test_chat_opens_current_session(shell: InteractiveShell) -> None:
    session = shell.run_line_magic("opencode_session", "new chat target")
    panel = shell.run_line_magic("opencode_chat", "")
    try:
        await panel.wait()
        assert panel.session_id == session.id
    finally:
        await panel.aclose()


# Streamed replies in a notebook front end

# The offline model writes one word every 0.2 s, so the reply takes seconds.
SLOW_TEXT = "[[delay 0.2]] " + " ".join(f"word{number}" for number in range(12))
SLOW_REPLY = "Echo: " + " ".join(f"word{number}" for number in range(12))


def partial_texts(publisher: RecordingPublisher) -> list[str]:
    """The reply texts shown before the final one, without their status line."""
    texts = [call.data["text/plain"].split("\n\n")[0] for call in publisher.calls]
    return [text for text in texts[:-1] if text != SLOW_REPLY]


def wait_for_text(publisher: RecordingPublisher, text: str) -> None:
    deadline = time.monotonic() + 30
    while not any(text in call.data["text/plain"] for call in publisher.calls):
        assert time.monotonic() < deadline, f"{text!r} was never shown"
        time.sleep(0.05)


def test_live_reply_grows_then_becomes_markdown(shell: InteractiveShell) -> None:
    shell.run_line_magic("opencode_session", "new growing")
    with recording_display(shell) as publisher:
        result = shell.run_cell(f"%%opencode_prompt\n{SLOW_TEXT}")
    assert result.error_in_exec is None
    assert isinstance(result.result, MarkdownReply)
    assert result.result.text.strip() == SLOW_REPLY
    partial = partial_texts(publisher)
    assert len(set(partial)) >= 3
    assert all(SLOW_REPLY.startswith(text) for text in partial)
    assert partial == sorted(partial, key=len)
    assert publisher.outputs() == [result.result._repr_mimebundle_()]


def test_live_reply_in_direct_mode(shell: InteractiveShell, chain: LocalChain) -> None:
    shell.run_line_magic("opencode_connect", f"{chain.opencode_urls[0]} --direct")
    shell.run_line_magic("opencode_session", "new growing directly")
    with recording_display(shell) as publisher:
        reply = shell.run_cell_magic("opencode_prompt", "", SLOW_TEXT)
    assert reply.text == SLOW_REPLY
    assert len(set(partial_texts(publisher))) >= 3
    assert publisher.outputs() == [reply._repr_mimebundle_()]


def test_abort_mid_stream_keeps_session_usable(
    shell: InteractiveShell, client: OpenCodeClient
) -> None:
    session = shell.run_line_magic("opencode_session", "new aborted mid-stream")
    with recording_display(shell) as publisher:

        def abort_once_text_shows() -> None:
            wait_for_text(publisher, "word1")
            client.abort(session.id)

        aborter = threading.Thread(target=abort_once_text_shows)
        aborter.start()
        with pytest.raises(UsageError, match=r"^Stopped: the agent's turn in session"):
            shell.run_cell_magic("opencode_prompt", "", SLOW_TEXT)
        aborter.join()
    (output,) = publisher.outputs()
    assert output["text/plain"].startswith("Echo: word0 word1")
    assert output["text/plain"].endswith("\n\n(stopped)")
    assert SLOW_REPLY not in output["text/plain"]
    reply = shell.run_cell_magic("opencode_prompt", "", "still here?")
    assert reply.text == "Echo: still here?"
    assert user_texts(client, session.id)[-1] == "still here?"


def test_interrupt_marks_partial_reply_stopped(
    shell: InteractiveShell, client: OpenCodeClient
) -> None:
    session = shell.run_line_magic("opencode_session", "new interrupted live")
    with recording_display(shell) as publisher:

        def interrupt_once_text_shows() -> None:
            wait_for_text(publisher, "word1")
            os.kill(os.getpid(), signal.SIGINT)

        interrupter = threading.Thread(target=interrupt_once_text_shows)
        interrupter.start()
        with pytest.raises(KeyboardInterrupt):
            shell.run_cell_magic("opencode_prompt", "", SLOW_TEXT)
        interrupter.join()
    (output,) = publisher.outputs()
    assert output["text/plain"].endswith("\n\n(stopped)")
    assert output["text/plain"].startswith("Echo: word0 word1")
    user, assistant = client.list_messages(session.id)
    assert user.role == "user"
    assert assistant.extra["error"] == "MessageAbortedError: Aborted"
    assert assistant.content.startswith("Echo: word0 word1")
    reply = shell.run_cell_magic("opencode_prompt", "", "after the interrupt")
    assert reply.text == "Echo: after the interrupt"


def test_stream_off_waits_for_reply(shell: InteractiveShell) -> None:
    shell.run_line_magic("opencode_session", "new not streamed")
    shell.run_line_magic("config", "OpenCodeMagics.stream = False")
    with recording_display(shell) as publisher:
        reply = shell.run_cell_magic("opencode_prompt", "", "[[delay 0.1]] at once")
    assert type(reply) is MarkdownReply
    assert reply.text == "Echo: at once"
    assert publisher.calls == []


def test_live_reply_shows_tool_status(shell: InteractiveShell) -> None:
    shell.run_line_magic("opencode_session", "new tool status")
    with recording_display(shell) as publisher:
        reply = shell.run_cell_magic(
            "opencode_prompt", "", "[[tool bash: echo hi]] run it"
        )
    statuses = [call.data["text/plain"] for call in publisher.calls[:-1]]
    assert any("Tool bash (" in status for status in statuses)
    assert reply.text == "Done: hi"
    assert publisher.outputs() == [reply._repr_mimebundle_()]


def test_direct_prompt_errors_show_nothing(
    shell: InteractiveShell, chain: LocalChain
) -> None:
    shell.run_line_magic("opencode_connect", f"{chain.opencode_urls[0]} --direct")
    shell.run_line_magic("opencode_session", "new direct errors")
    with recording_display(shell) as publisher:
        with pytest.raises(UsageError, match=r"^Session not found: 'ses_gone' on "):
            shell.run_cell_magic("opencode_prompt", "ses_gone", "hello?")
        with pytest.raises(UsageError, match="local/nope"):
            shell.run_cell_magic("opencode_prompt", "--model local/nope", "hi")
    assert publisher.calls == []


def test_unstreamed_abort_says_stopped(
    shell: InteractiveShell, chain: LocalChain
) -> None:
    url = chain.opencode_urls[0]
    shell.run_line_magic("opencode_connect", f"{url} --direct")
    shell.run_line_magic("config", "OpenCodeMagics.stream = False")
    session = shell.run_line_magic("opencode_session", "new unstreamed abort")

    def abort_once_the_turn_runs() -> None:
        with OpenCodeClient.direct(url) as watcher:
            while not any(
                message.role == "assistant"
                for message in watcher.list_messages(session.id)
            ):
                time.sleep(0.05)
            watcher.abort(session.id)

    aborter = threading.Thread(target=abort_once_the_turn_runs)
    aborter.start()
    with pytest.raises(UsageError) as excinfo:
        shell.run_cell_magic("opencode_prompt", "", SLOW_TEXT)
    aborter.join()
    assert str(excinfo.value).startswith(
        f"Stopped: the agent's turn in session {session.id} was aborted"
    )
    reply = shell.run_cell_magic("opencode_prompt", "", "usable again")
    assert reply.text == "Echo: usable again"
