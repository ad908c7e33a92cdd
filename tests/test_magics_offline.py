"""
The magics without a server: loading, settings, argument parsing, the errors that
must stop before any request, and how a streamed reply shows in its cell. Server
responses that the real chain cannot produce come from `httpx.MockTransport`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.display import display
from live_output import echo_events, recording_display, sse
from magics_shell import Recorder, loaded_shell, magics_of, mock_client
from traitlets import TraitError

from opencode_notebook import _live_reply
from opencode_notebook._live_reply import LiveReply
from opencode_notebook.magics import OpenCodeMagics
from opencode_notebook.render import MarkdownReply
from opencode_notebook.streaming import TextDelta, ToolUpdate

MAGIC_NAMES = {
    "line": {
        "opencode_connect",
        "opencode_sessions",
        "opencode_messages",
        "opencode_session",
        "opencode_prompt",
        "opencode_chat",
    },
    "cell": {"opencode_prompt"},
}


def session_json(session_id: str, updated: str, title: str = "") -> dict[str, str]:
    return {
        "id": session_id,
        "title": title or f"Session {session_id}",
        "createdAt": "2026-03-01T09:00:00.000Z",
        "updatedAt": updated,
    }


def prompt_handler(request: httpx.Request) -> httpx.Response:
    """Answer prompts like the gateway does, echoing the text."""
    if request.method == "POST" and request.url.path.endswith("/prompt"):
        text = json.loads(request.content)["text"]
        return httpx.Response(200, json={"messageId": "msg_1", "response": text})
    return httpx.Response(404, json={"statusCode": 404, "message": "Not found"})


def sent_text(recorder: Recorder) -> str:
    (request,) = recorder.requests
    return str(json.loads(request.content)["text"])


@pytest.fixture
def shell() -> Iterator[InteractiveShell]:
    with loaded_shell() as loaded:
        yield loaded


@pytest.fixture
def magics(shell: InteractiveShell) -> OpenCodeMagics:
    return magics_of(shell)


@pytest.fixture
def silent(magics: OpenCodeMagics) -> Recorder:
    """A client that fails the test on any request, so errors must come first."""
    recorder = Recorder()
    magics.client = mock_client(recorder)
    return recorder


@pytest.fixture
def echo(magics: OpenCodeMagics) -> Recorder:
    """
    A client whose prompts come back with their own text, from the prompt
    endpoint: streaming is off, and the streamed tests below use their own mock.
    """
    magics.stream = False
    recorder = Recorder(prompt_handler)
    magics.client = mock_client(recorder)
    return recorder


# Loading and settings


def test_load_registers_magics_and_settings(shell: InteractiveShell) -> None:
    magics = magics_of(shell)
    for kind, names in MAGIC_NAMES.items():
        assert names <= set(shell.magics_manager.magics[kind])
    assert magics in shell.configurables
    shell.run_line_magic("config", "OpenCodeMagics.model = 'local/echo'")
    assert magics.model == "local/echo"


def test_load_twice_registers_once(shell: InteractiveShell) -> None:
    from opencode_notebook import load_ipython_extension

    load_ipython_extension(shell)
    found = [c for c in shell.configurables if isinstance(c, OpenCodeMagics)]
    assert len(found) == 1


def test_unload_removes_magics_and_settings() -> None:
    with loaded_shell() as shell:
        magics = magics_of(shell)
        shell.run_line_magic("unload_ext", "opencode_notebook")
        for kind, names in MAGIC_NAMES.items():
            assert not names & set(shell.magics_manager.magics[kind])
        assert magics not in shell.configurables
        assert "OpenCodeMagics" not in shell.magics_manager.registry
        shell.run_line_magic("load_ext", "opencode_notebook")


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        pytest.param("port", 0, "integer from 1 to 65535", id="port-zero"),
        pytest.param("port", 70000, "integer from 1 to 65535", id="port-high"),
        pytest.param("url", "ftp://host", "http(s) URL", id="url-scheme"),
        pytest.param("url", "localhost:3000", "http(s) URL", id="url-no-scheme"),
        pytest.param("timeout", 0, "positive number of seconds", id="timeout-zero"),
        pytest.param(
            "prompt_timeout", -5.0, "positive number of seconds", id="prompt-negative"
        ),
        pytest.param("model", "echo", "provider/model", id="model-no-provider"),
        pytest.param("agent", "two words", "agent name", id="agent-space"),
        pytest.param("context_limit", 0, "positive number", id="context-zero"),
    ],
)
def test_settings_reject_invalid_values(
    magics: OpenCodeMagics, setting: str, value: Any, message: str
) -> None:
    before = getattr(magics, setting)
    with pytest.raises(TraitError, match=re.escape(message)):
        setattr(magics, setting, value)
    assert getattr(magics, setting) == before


def test_settings_are_cleaned(magics: OpenCodeMagics) -> None:
    magics.url = " http://127.0.0.1:3000/ "
    magics.model = " local/echo "
    magics.agent = " build "
    assert magics.url == "http://127.0.0.1:3000"
    assert magics.model == "local/echo"
    assert magics.agent == "build"


def test_settings_have_help(magics: OpenCodeMagics) -> None:
    for name, trait in magics.traits(config=True).items():
        assert trait.help, f"OpenCodeMagics.{name} has no help text"


def test_client_follows_settings(magics: OpenCodeMagics) -> None:
    magics.url = "http://127.0.0.1:3000"
    magics.port = 3101
    magics.timeout = 12.0
    magics.prompt_timeout = 99.0
    client = magics.client
    assert client.base_url == "http://127.0.0.1:3000"
    assert client.port == 3101
    assert client.timeout == 12.0
    assert client.prompt_timeout == 99.0
    assert magics.client is client
    magics.model = "local/echo"
    assert magics.client is client
    magics.port = 3102
    assert magics.client is not client
    assert magics.client.port == 3102


def test_client_defaults_from_environment(
    magics: OpenCodeMagics, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENCODE_NOTEBOOK_URL", "http://127.0.0.1:3999")
    monkeypatch.setenv("OPENCODE_PORT", "3105")
    monkeypatch.setenv("OPENCODE_URL", "http://127.0.0.1:4999")
    assert magics.client.base_url == "http://127.0.0.1:3999"
    assert magics.client.port == 3105
    magics.direct = True
    assert magics.client.direct_mode
    assert magics.client.base_url == "http://127.0.0.1:4999"


def test_invalid_port_in_environment(
    magics: OpenCodeMagics, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENCODE_PORT", "many")
    with pytest.raises(UsageError, match="Invalid OPENCODE_PORT 'many'"):
        magics.client  # noqa: B018


def test_server_change_clears_current_session(magics: OpenCodeMagics) -> None:
    magics.current_session = "ses_1"
    magics.prompt_timeout = 30.0
    assert magics.current_session == "ses_1"
    magics.url = "http://127.0.0.1:3001"
    assert magics.current_session is None


# Errors shown as one line


def test_usage_error_is_one_line_without_traceback(
    shell: InteractiveShell, silent: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    result = shell.run_cell("%opencode_sessions --bogus")
    captured = capsys.readouterr()
    assert isinstance(result.error_in_exec, UsageError)
    assert captured.err == ""
    assert captured.out == (
        "UsageError: %opencode_sessions: unrecognized arguments: --bogus. "
        "Run %opencode_sessions? to see its options.\n"
    )
    assert silent.requests == []


def test_usage_error_stops_a_cell(
    shell: InteractiveShell, silent: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    result = shell.run_cell("%opencode_messages\nreached = True")
    assert isinstance(result.error_in_exec, UsageError)
    assert "reached" not in shell.user_ns
    assert capsys.readouterr().out == (
        "UsageError: No current session: run %opencode_session new or pass a "
        "session id.\n"
    )


@pytest.mark.parametrize(
    ("magic", "line", "message"),
    [
        pytest.param(
            "opencode_sessions",
            "--bogus",
            "unrecognized arguments: --bogus",
            id="bogus",
        ),
        pytest.param(
            "opencode_sessions", "--limit many", "invalid int value", id="limit-text"
        ),
        pytest.param(
            "opencode_sessions", "--limit -1", "Invalid --limit -1", id="limit-negative"
        ),
        pytest.param(
            "opencode_sessions", "--out 1df", "Invalid variable name '1df'", id="out"
        ),
        pytest.param(
            "opencode_sessions", "--search 'open", "Unclosed ' quote", id="unclosed"
        ),
        pytest.param(
            "opencode_sessions", "--lim 2", "unrecognized arguments: --lim", id="abbrev"
        ),
        pytest.param("opencode_messages", "", "No current session", id="messages"),
        pytest.param(
            "opencode_messages", "ses_1 --out my-df", "Invalid variable name", id="out"
        ),
        pytest.param("opencode_session", "rename ses_1", "Unknown action", id="action"),
        pytest.param("opencode_session", "use", "takes one session id", id="use"),
        pytest.param(
            "opencode_session", "delete a b", "takes one session id", id="delete"
        ),
        pytest.param(
            "opencode_session", "use ses_1 --parent ses_2", "--parent applies", id="p"
        ),
        pytest.param("opencode_session", "show", "No current session", id="show"),
        pytest.param("opencode_session", "fork", "No current session", id="fork"),
        pytest.param(
            "opencode_session", "fork Try B", "No current session", id="fork-title"
        ),
        pytest.param(
            "opencode_session", "fork ses_1 --parent ses_2", "--parent applies", id="fp"
        ),
        pytest.param(
            "opencode_connect",
            "http://127.0.0.1:1 --direct --port 3100",
            "--port",
            id="c",
        ),
        pytest.param(
            "opencode_connect",
            "ftp://127.0.0.1",
            "Invalid OpenCodeMagics.url",
            id="url",
        ),
        pytest.param("opencode_connect", "--port 0", "integer from 1", id="port"),
    ],
)
def test_line_mistakes_send_nothing(
    shell: InteractiveShell, silent: Recorder, magic: str, line: str, message: str
) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        shell.run_line_magic(magic, line)
    assert silent.requests == []


@pytest.mark.parametrize(
    ("line", "body", "message"),
    [
        pytest.param("", "hi", "No current session", id="no-session"),
        # IPython itself rejects an empty cell body, before calling the magic.
        pytest.param("ses_1", "", "the cell body is empty", id="empty"),
        pytest.param("ses_1", "   \n\n", "Message text required", id="blank"),
        pytest.param("ses_1 --bogus", "hi", "unrecognized arguments: --bogus", id="o"),
        pytest.param("ses_1 extra words", "hi", "unrecognized arguments", id="words"),
        pytest.param("ses_1 --model echo", "hi", "Invalid model 'echo'", id="model"),
        pytest.param(
            "ses_1 --with missing", "hi", "Unknown variable 'missing'", id="w"
        ),
        pytest.param("ses_1 --with 'a b'", "hi", "Invalid variable name 'a b'", id="n"),
        pytest.param(
            "ses_1 --out 'a.b'", "hi", "Invalid variable name 'a.b'", id="out"
        ),
        pytest.param("ses_1 --new", "hi", "either a session id", id="new-and-id"),
    ],
)
def test_cell_prompt_mistakes_send_nothing(
    shell: InteractiveShell, silent: Recorder, line: str, body: str, message: str
) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        shell.run_cell_magic("opencode_prompt", line, body)
    assert silent.requests == []


@pytest.mark.parametrize(
    ("line", "message"),
    [
        pytest.param("ses_1", "Message text required", id="no-text"),
        pytest.param("ses_1   ", "Message text required", id="blank-text"),
        pytest.param("ses_1 --agent build", "Message text required", id="options"),
        pytest.param("hello there", "No current session", id="no-session"),
        pytest.param("ses_1 --bogus hi", "Put `--` before prompt text", id="dash"),
        pytest.param("ses_1 --model", "expected one argument", id="no-value"),
    ],
)
def test_line_prompt_mistakes_send_nothing(
    shell: InteractiveShell, silent: Recorder, line: str, message: str
) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        shell.run_line_magic("opencode_prompt", line)
    assert silent.requests == []


# Prompt text and argument splitting


CELL_BODY = 'Explain {v:k for k,v in d.items()} and {not_a_var} in {"a": 1}'


def test_cell_body_is_sent_byte_for_byte(
    shell: InteractiveShell, echo: Recorder
) -> None:
    shell.user_ns["d"] = {"a": 1}
    reply = shell.run_cell_magic("opencode_prompt", "ses_1", CELL_BODY)
    assert sent_text(echo) == CELL_BODY
    assert isinstance(reply, MarkdownReply)
    assert reply.text == CELL_BODY


def test_cell_body_through_run_cell(shell: InteractiveShell, echo: Recorder) -> None:
    result = shell.run_cell(f"%%opencode_prompt ses_1\n{CELL_BODY}\n  indented $x\n")
    assert result.error_in_exec is None
    assert sent_text(echo) == f"{CELL_BODY}\n  indented $x\n"


@pytest.mark.parametrize("define_x", [True, False], ids=["x-defined", "x-undefined"])
def test_line_prompt_is_not_expanded(
    shell: InteractiveShell, echo: Recorder, define_x: bool
) -> None:
    if define_x:
        shell.user_ns["x"] = 5
    result = shell.run_cell(
        "%opencode_prompt ses_1 keep {x} and {100} and $x literally"
    )
    assert result.error_in_exec is None
    assert sent_text(echo) == "keep {x} and {100} and $x literally"


def test_line_prompt_keeps_quotes_after_options(
    shell: InteractiveShell, echo: Recorder
) -> None:
    shell.run_cell(
        """%opencode_prompt ses_1 --agent build Say "hi there", don't stop"""
    )
    (request,) = echo.requests
    body = json.loads(request.content)
    assert body["text"] == """Say "hi there", don't stop"""
    assert body["agent"] == "build"
    assert request.url.path == "/api/opencode/3100/session/ses_1/prompt"


@pytest.mark.parametrize(
    ("line", "path", "body"),
    [
        pytest.param(
            "sess_abc123 hello",
            "/api/opencode/3100/session/sess_abc123/prompt",
            {"text": "hello"},
            id="session",
        ),
        pytest.param(
            "--model local/echo ses_2 -- --verbose is a flag",
            "/api/opencode/3100/session/ses_2/prompt",
            {
                "text": "--verbose is a flag",
                "model": {"providerID": "local", "modelID": "echo"},
            },
            id="separator",
        ),
        pytest.param(
            "ses_2 --agent='plan' ses_3 and  more   spaces ",
            "/api/opencode/3100/session/ses_2/prompt",
            {"text": "ses_3 and  more   spaces ", "agent": "plan"},
            id="verbatim",
        ),
        pytest.param(
            "ses_2 - a dash starts the text",
            "/api/opencode/3100/session/ses_2/prompt",
            {"text": "- a dash starts the text"},
            id="dash",
        ),
        pytest.param(
            "session is the first word",
            "/api/opencode/3100/session/ses_current/prompt",
            {"text": "session is the first word"},
            id="not-an-id",
        ),
        pytest.param(
            "'quoted' first word",
            "/api/opencode/3100/session/ses_current/prompt",
            {"text": "'quoted' first word"},
            id="quoted-text",
        ),
    ],
)
def test_line_prompt_splits_leading_arguments(
    shell: InteractiveShell,
    magics: OpenCodeMagics,
    echo: Recorder,
    line: str,
    path: str,
    body: dict[str, Any],
) -> None:
    magics.current_session = "ses_current"
    shell.run_line_magic("opencode_prompt", line)
    (request,) = echo.requests
    assert request.url.path == path
    assert json.loads(request.content) == body


def test_prompt_defaults_from_settings(
    shell: InteractiveShell, magics: OpenCodeMagics, echo: Recorder
) -> None:
    shell.run_line_magic("config", "OpenCodeMagics.model = 'local/echo'")
    shell.run_line_magic("config", "OpenCodeMagics.agent = 'plan'")
    shell.run_line_magic("opencode_prompt", "ses_1 --agent build hi")
    shell.run_line_magic("opencode_prompt", "ses_1 hi")
    first, second = (json.loads(r.content) for r in echo.requests)
    assert first["agent"] == "build"
    assert first["model"] == {"providerID": "local", "modelID": "echo"}
    assert second["agent"] == "plan"


def test_prompt_out_stores_reply_and_shows_it_once(
    shell: InteractiveShell, echo: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    result = shell.run_cell("%%opencode_prompt ses_1 --out answer\nhello")
    assert result.error_in_exec is None
    # IPython ends a cell body with a newline, and the magic sends it as given.
    assert shell.user_ns["answer"].response == "hello\n"
    assert shell.user_ns["answer"].message_id == "msg_1"
    assert isinstance(result.result, MarkdownReply)
    assert capsys.readouterr().out.count("hello") == 1


# --with


def test_with_adds_dataframe_before_prompt(
    shell: InteractiveShell, echo: Recorder
) -> None:
    shell.user_ns["df"] = pd.DataFrame(
        {"city": ["Oslo", "Lima"] * 10, "temp": [3.5, 19.0] * 10}
    )
    shell.run_cell_magic("opencode_prompt", "ses_1 --with df", "Which is warmer?")
    text = sent_text(echo)
    assert text.startswith("Variable `df` (DataFrame):\n```\n")
    assert "shape: 20 rows x 2 columns" in text
    assert "  city: " in text
    assert "  temp: float64" in text
    assert "first 10 rows as CSV:\ncity,temp\nOslo,3.5\nLima,19.0\n" in text
    assert text.count("Oslo") == 5
    assert text.endswith("\n```\n\nWhich is warmer?")


def test_with_adds_several_variables_in_order(
    shell: InteractiveShell, echo: Recorder
) -> None:
    shell.user_ns["notes"] = "line one\nline two"
    shell.user_ns["limits"] = {"max": 3}
    shell.run_cell_magic(
        "opencode_prompt", "ses_1 --with notes limits --with notes", "Check."
    )
    assert sent_text(echo) == (
        "Variable `notes` (str):\n```\nline one\nline two\n```\n\n"
        "Variable `limits` (dict):\n```\n{'max': 3}\n```\n\n"
        "Check."
    )


def test_with_in_line_form_takes_one_name(
    shell: InteractiveShell, echo: Recorder
) -> None:
    shell.user_ns["n"] = 42
    shell.run_line_magic("opencode_prompt", "ses_1 --with n Is n even?")
    assert sent_text(echo) == "Variable `n` (int):\n```\n42\n```\n\nIs n even?"


def test_with_fence_outlasts_backticks_in_value(
    shell: InteractiveShell, echo: Recorder
) -> None:
    shell.user_ns["snippet"] = "```python\nprint(1)\n```"
    shell.run_cell_magic("opencode_prompt", "ses_1 --with snippet", "Explain.")
    assert sent_text(echo).startswith(
        "Variable `snippet` (str):\n````\n```python\nprint(1)\n```\n````\n\n"
    )


def test_with_truncates_to_context_limit(
    shell: InteractiveShell,
    magics: OpenCodeMagics,
    echo: Recorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    magics.context_limit = 10
    shell.user_ns["big"] = "abcdefghij" * 3
    shell.run_cell_magic("opencode_prompt", "ses_1 --with big", "Summarise.")
    assert sent_text(echo) == (
        "Variable `big` (str), truncated to the first 10 of 30 characters:\n"
        "```\nabcdefghij\n```\n\nSummarise."
    )
    assert "truncated to 10 of 30 characters" in caplog.text


def test_with_failing_repr_is_usage_error(
    shell: InteractiveShell, silent: Recorder
) -> None:
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    shell.user_ns["broken"] = Broken()
    with pytest.raises(UsageError, match=r"'broken'.*RuntimeError: no repr"):
        shell.run_cell_magic("opencode_prompt", "ses_1 --with broken", "hi")
    assert silent.requests == []


# Forking


def fork_handler(request: httpx.Request) -> httpx.Response:
    """Return the fork the gateway would create, with the id `ses_fork`."""
    body = json.loads(request.content)
    session = session_json("ses_fork", "2026-03-02T00:00:00.000Z", "fork")
    session["title"] = body.get("title") or "parent (fork #1)"
    session["parentID"] = body["parentID"]
    return httpx.Response(200, json=session)


@pytest.mark.parametrize(
    ("line", "expected_body"),
    [
        pytest.param("fork", {"parentID": "ses_current"}, id="current"),
        pytest.param(
            "fork Try B",
            {"title": "Try B", "parentID": "ses_current"},
            id="current-titled",
        ),
        pytest.param(
            "fork 'ses_like title'",
            {"title": "ses_like title", "parentID": "ses_current"},
            id="quoted-title",
        ),
        pytest.param("fork ses_other", {"parentID": "ses_other"}, id="by-id"),
        pytest.param(
            'fork ses_other "Try C"',
            {"title": "Try C", "parentID": "ses_other"},
            id="by-id-titled",
        ),
    ],
)
def test_session_fork_request(
    shell: InteractiveShell,
    magics: OpenCodeMagics,
    line: str,
    expected_body: dict[str, str],
) -> None:
    recorder = Recorder(fork_handler)
    magics.client = mock_client(recorder)
    magics.current_session = "ses_current"
    fork = shell.run_line_magic("opencode_session", line)
    (request,) = recorder.requests
    assert request.method == "POST"
    assert request.url.path == "/api/opencode/3100/session/create"
    assert json.loads(request.content) == expected_body
    assert fork.id == "ses_fork"
    assert fork.parent_id == expected_body["parentID"]
    assert magics.current_session == "ses_fork"


def test_session_fork_unknown_keeps_current(
    shell: InteractiveShell, magics: OpenCodeMagics
) -> None:
    magics.client = mock_client(
        failing(404, {"statusCode": 404, "message": "Session not found"})
    )
    magics.current_session = "ses_current"
    with pytest.raises(UsageError) as excinfo:
        shell.run_line_magic("opencode_session", "fork ses_gone")
    assert str(excinfo.value).startswith("Session not found: 'ses_gone' on ")
    assert magics.current_session == "ses_current"


# Sessions list


def test_sessions_sorted_before_limit(
    shell: InteractiveShell, magics: OpenCodeMagics
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json=[
                session_json("ses_b", "2026-03-01T00:00:00.000Z"),
                session_json("ses_c", "2026-03-03T00:00:00.000Z"),
                session_json("ses_a", "2026-03-02T00:00:00.000Z"),
            ],
        )

    magics.client = mock_client(Recorder(handler))
    frame = shell.run_line_magic("opencode_sessions", "")
    assert list(frame["id"]) == ["ses_c", "ses_a", "ses_b"]
    limited = shell.run_line_magic("opencode_sessions", "--limit 2")
    assert list(limited["id"]) == ["ses_c", "ses_a"]
    assert list(limited.index) == [0, 1]


def test_sessions_search_and_title_filters(
    shell: InteractiveShell, magics: OpenCodeMagics
) -> None:
    titles = ["my session", "My Session notes", "other", "my  session"]
    sessions = [
        session_json(f"ses_{i}", f"2026-03-0{i + 1}T00:00:00.000Z", title)
        for i, title in enumerate(titles)
    ]
    magics.client = mock_client(Recorder(lambda _: httpx.Response(200, json=sessions)))
    found = shell.run_line_magic("opencode_sessions", '--search "MY SESSION"')
    assert list(found["title"]) == ["My Session notes", "my session"]
    exact = shell.run_line_magic("opencode_sessions", '--title "my session"')
    assert list(exact["title"]) == ["my session"]
    spaced = shell.run_line_magic("opencode_sessions", "--title='my  session'")
    assert list(spaced["title"]) == ["my  session"]


def test_sessions_empty_frame_keeps_columns(
    shell: InteractiveShell, magics: OpenCodeMagics
) -> None:
    magics.client = mock_client(Recorder(lambda _: httpx.Response(200, json=[])))
    frame = shell.run_line_magic("opencode_sessions", "--limit 5")
    assert len(frame) == 0
    assert {"id", "title", "parentID", "createdAt", "updatedAt"} <= set(frame.columns)
    assert str(frame["updatedAt"].dtype) == "datetime64[ns, UTC]"


# Server errors the chain cannot produce on demand


def failing(status: int, body: Any) -> Recorder:
    return Recorder(lambda _: httpx.Response(status, json=body))


def test_server_error_shows_message_and_ref(
    shell: InteractiveShell, magics: OpenCodeMagics
) -> None:
    recorder = failing(
        500,
        {
            "name": "UnknownError",
            "data": {
                "message": "Unexpected server error. Check server logs for details.",
                "ref": "err_00111007",
            },
        },
    )
    magics.client = mock_client(recorder)
    with pytest.raises(UsageError) as excinfo:
        shell.run_cell_magic(
            "opencode_prompt",
            "ses_1 --model openrouter/does-not-exist-xyz",
            "hi",
        )
    message = str(excinfo.value)
    assert message.startswith(
        "Unexpected server error. Check server logs for details. (ref err_00111007)"
    )
    assert "HTTP 500" in message
    assert "not found" not in message.lower()
    assert "\n" not in message
    assert len(recorder.requests) == 1


def test_invalid_port_error_is_faithful(
    shell: InteractiveShell, magics: OpenCodeMagics
) -> None:
    recorder = failing(500, {"statusCode": 500, "message": "Invalid port"})
    magics.client = mock_client(recorder)
    with pytest.raises(UsageError, match=r"^Invalid port \[HTTP 500 from GET "):
        shell.run_line_magic("opencode_sessions", "")
    assert len(recorder.requests) == 1


def test_port_not_allowed_says_how_to_switch(
    shell: InteractiveShell, magics: OpenCodeMagics
) -> None:
    magics.client = mock_client(
        failing(403, {"statusCode": 403, "message": "Port not allowed"})
    )
    with pytest.raises(
        UsageError, match=r"^Port not allowed: .* OpenCode port 3100\. .*--port N\.$"
    ):
        shell.run_line_magic("opencode_sessions", "")


def test_missing_token_says_which_variable(
    shell: InteractiveShell, magics: OpenCodeMagics
) -> None:
    magics.client = mock_client(
        failing(401, {"statusCode": 401, "message": "Missing or invalid token"})
    )
    with pytest.raises(UsageError, match="Set OPENCODE_NOTEBOOK_TOKEN"):
        shell.run_line_magic("opencode_sessions", "")


def test_non_api_answer_suggests_direct_mode(
    shell: InteractiveShell, magics: OpenCodeMagics
) -> None:
    html = Recorder(lambda _: httpx.Response(200, text="<html>web app</html>"))
    magics.client = mock_client(html)
    with pytest.raises(UsageError, match=r"Expected JSON.*--direct"):
        shell.run_line_magic("opencode_sessions", "")


# Streamed replies


class StreamingGateway:
    """
    A mock gateway whose prompts stream `Echo: <text>` word by word.

    `pause` is the wait before each event. `cut_after` ends the events after that
    many, and `last` replaces the end (the step and the reply) with one event of
    its own. `interrupt_after` raises KeyboardInterrupt while the client reads,
    after that many events. The messages endpoint lists `messages`.
    """

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.pause = 0.0
        self.cut_after: int | None = None
        self.last: dict[str, Any] | None = None
        self.interrupt_after: int | None = None
        self.messages: list[dict[str, Any]] = []

    def paths(self, method: str) -> list[str]:
        return [r.url.path for r in self.requests if r.method == method]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if request.method == "POST" and path.endswith("/prompt/stream"):
            if "/session/ses_gone/" in path:
                body = {"statusCode": 404, "message": "Session not found"}
                return httpx.Response(404, json=body)
            text = json.loads(request.content)["text"]
            events = echo_events("ses_1", "msg_user", "msg_reply", f"Echo: {text}")
            if self.last is not None:
                events = [*events[:-2], self.last]
            if self.cut_after is not None:
                events = events[: self.cut_after]
            headers = {"content-type": "text/event-stream"}
            return httpx.Response(200, headers=headers, content=self._play(events))
        if request.method == "POST" and path.endswith("/abort"):
            return httpx.Response(200, json={"success": True})
        if request.method == "GET" and path.endswith("/messages"):
            return httpx.Response(200, json={"messages": self.messages})
        return httpx.Response(404, json={"statusCode": 404, "message": "Not found"})

    def _play(self, events: list[dict[str, Any]]) -> Iterator[bytes]:
        for count, event in enumerate(events):
            if count == self.interrupt_after:
                raise KeyboardInterrupt
            time.sleep(self.pause)
            yield sse(event)


@pytest.fixture
def streaming(magics: OpenCodeMagics) -> StreamingGateway:
    gateway = StreamingGateway()
    magics.client = mock_client(Recorder(gateway))
    return gateway


@pytest.fixture
def every_event(monkeypatch: pytest.MonkeyPatch) -> None:
    """Show the growing reply from the first event on, at every event."""
    monkeypatch.setattr(_live_reply, "LIVE_DELAY", 0.0)
    monkeypatch.setattr(_live_reply, "UPDATE_INTERVAL", 0.0)


def bundle(text: str) -> dict[str, str]:
    return MarkdownReply(text)._repr_mimebundle_()


def test_streamed_cell_body_is_sent_byte_for_byte(
    shell: InteractiveShell, streaming: StreamingGateway
) -> None:
    shell.user_ns["d"] = {"a": 1}
    reply = shell.run_cell_magic("opencode_prompt", "ses_1", CELL_BODY)
    (request,) = streaming.requests
    assert request.url.path == "/api/opencode/3100/session/ses_1/prompt/stream"
    assert json.loads(request.content) == {"text": CELL_BODY}
    assert isinstance(reply, MarkdownReply)
    assert reply.text == f"Echo: {CELL_BODY}"


@pytest.mark.parametrize("define_x", [True, False], ids=["x-defined", "x-undefined"])
def test_streamed_line_prompt_is_not_expanded(
    shell: InteractiveShell, streaming: StreamingGateway, define_x: bool
) -> None:
    if define_x:
        shell.user_ns["x"] = 5
    result = shell.run_cell("%opencode_prompt ses_1 keep {x} and {100} and $x")
    assert result.error_in_exec is None
    (request,) = streaming.requests
    assert json.loads(request.content)["text"] == "keep {x} and {100} and $x"


def test_live_display_grows_then_becomes_markdown(
    shell: InteractiveShell, streaming: StreamingGateway, every_event: None
) -> None:
    with recording_display(shell) as publisher:
        result = shell.run_cell("%%opencode_prompt ses_1\none two three")
    assert result.error_in_exec is None
    first, *updates = publisher.calls
    assert not first.update
    assert first.display_id is not None
    assert all(call.update for call in updates)
    assert {call.display_id for call in updates} == {first.display_id}
    texts = [call.data["text/plain"] for call in publisher.calls[:-1]]
    assert texts[0].startswith("Echo:")
    assert texts[-1].startswith("Echo: one two three")
    assert len(set(texts)) >= 3
    assert publisher.outputs() == [bundle("Echo: one two three\n")]


def test_live_reply_is_returned_but_shown_once(
    shell: InteractiveShell, streaming: StreamingGateway, every_event: None
) -> None:
    with recording_display(shell) as publisher:
        result = shell.run_cell("x = %opencode_prompt ses_1 hi\nx")
        shown_in_cell = publisher.outputs()
        display(shell.user_ns["x"])
    assert result.error_in_exec is None
    assert isinstance(result.result, MarkdownReply)
    assert shell.user_ns["x"].text == "Echo: hi"
    assert shown_in_cell == [bundle("Echo: hi")]
    # Once its cell has finished, the reply displays like any other.
    assert publisher.outputs() == [bundle("Echo: hi"), bundle("Echo: hi")]


def test_live_reply_with_out_is_shown_once(
    shell: InteractiveShell, streaming: StreamingGateway, every_event: None
) -> None:
    with recording_display(shell) as publisher:
        result = shell.run_cell("%%opencode_prompt ses_1 --out answer\nhello")
    assert result.error_in_exec is None
    assert shell.user_ns["answer"].response == "Echo: hello\n"
    assert shell.user_ns["answer"].message_id == "msg_reply"
    assert publisher.outputs() == [bundle("Echo: hello\n")]


def test_quick_reply_is_shown_once_without_updates(
    shell: InteractiveShell, streaming: StreamingGateway
) -> None:
    with recording_display(shell) as publisher:
        result = shell.run_cell("%%opencode_prompt ses_1\nhello")
    assert result.error_in_exec is None
    (call,) = publisher.calls
    assert not call.update
    assert call.data == bundle("Echo: hello\n")


def test_slow_reply_appears_after_delay(
    shell: InteractiveShell,
    streaming: StreamingGateway,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_live_reply, "LIVE_DELAY", 0.15)
    monkeypatch.setattr(_live_reply, "UPDATE_INTERVAL", 0.0)
    streaming.pause = 0.1
    with recording_display(shell) as publisher:
        shell.run_cell_magic("opencode_prompt", "ses_1", "one two three four")
    first = publisher.calls[0]
    # Events come 0.1 s apart, so the first event is not shown by itself.
    assert first.data["text/plain"].startswith("Echo: one ")
    assert not first.update
    assert len(publisher.updates) >= 2
    assert publisher.outputs() == [bundle("Echo: one two three four")]


def test_terminal_gets_reply_as_cell_value(
    shell: InteractiveShell,
    streaming: StreamingGateway,
    every_event: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # IPython's own display publisher prints each output: no growing reply there.
    result = shell.run_cell("%%opencode_prompt ses_1\nhello")
    assert result.error_in_exec is None
    assert type(result.result) is MarkdownReply
    assert capsys.readouterr().out.count("Echo: hello") == 1


def test_stream_setting_off_waits_for_reply(
    shell: InteractiveShell, magics: OpenCodeMagics, every_event: None
) -> None:
    recorder = Recorder(prompt_handler)
    magics.client = mock_client(recorder)
    shell.run_line_magic("config", "OpenCodeMagics.stream = False")
    with recording_display(shell) as publisher:
        result = shell.run_cell("%%opencode_prompt ses_1\nhello")
    (request,) = recorder.requests
    assert request.url.path == "/api/opencode/3100/session/ses_1/prompt"
    assert type(result.result) is MarkdownReply
    assert result.result.text == "hello\n"
    assert publisher.calls == []


def test_server_error_before_start_shows_nothing(
    shell: InteractiveShell, streaming: StreamingGateway, every_event: None
) -> None:
    with recording_display(shell) as publisher, pytest.raises(UsageError) as excinfo:
        shell.run_cell_magic("opencode_prompt", "ses_gone", "hello?")
    assert str(excinfo.value).startswith("Session not found: 'ses_gone' on ")
    assert publisher.calls == []
    assert streaming.paths("POST") == [
        "/api/opencode/3100/session/ses_gone/prompt/stream"
    ]


def test_interrupt_aborts_and_marks_partial_reply(
    shell: InteractiveShell, streaming: StreamingGateway, every_event: None
) -> None:
    streaming.interrupt_after = 3  # start, "Echo: ", "one "
    with recording_display(shell) as publisher, pytest.raises(KeyboardInterrupt):
        shell.run_cell_magic("opencode_prompt", "ses_1", "one two three")
    (output,) = publisher.outputs()
    assert output["text/plain"] == "Echo: one \n\n(stopped)"
    assert streaming.paths("POST") == [
        "/api/opencode/3100/session/ses_1/prompt/stream",
        "/api/opencode/3100/session/ses_1/abort",
    ]


def test_interrupt_without_display_shows_partial_once(
    shell: InteractiveShell,
    streaming: StreamingGateway,
    every_event: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    streaming.interrupt_after = 3
    with pytest.raises(KeyboardInterrupt):
        shell.run_cell_magic("opencode_prompt", "ses_1", "one two three")
    assert capsys.readouterr().out == "Echo: one \n\n(stopped)\n"
    assert streaming.paths("POST")[-1].endswith("/session/ses_1/abort")


def test_abort_elsewhere_fails_cell_in_one_line(
    shell: InteractiveShell, streaming: StreamingGateway, every_event: None
) -> None:
    streaming.last = {
        "type": "aborted",
        "messageId": "msg_reply",
        "response": "Echo: one two",
    }
    with recording_display(shell) as publisher, pytest.raises(UsageError) as excinfo:
        shell.run_cell_magic("opencode_prompt", "ses_1", "one two three")
    message = str(excinfo.value)
    assert message.startswith("Stopped: the agent's turn in session ses_1 was aborted")
    assert message.endswith("read it with %opencode_messages ses_1.")
    assert "\n" not in message
    (output,) = publisher.outputs()
    assert output["text/plain"] == "Echo: one two\n\n(stopped)"
    assert not any(path.endswith("/abort") for path in streaming.paths("POST"))


def test_error_mid_stream_marks_reply_incomplete(
    shell: InteractiveShell, streaming: StreamingGateway, every_event: None
) -> None:
    streaming.last = {
        "type": "error",
        "statusCode": 502,
        "message": "OpenCode failed the prompt: model overloaded",
    }
    with recording_display(shell) as publisher, pytest.raises(UsageError) as excinfo:
        shell.run_cell_magic("opencode_prompt", "ses_1", "one two")
    assert "model overloaded" in str(excinfo.value)
    assert "\n" not in str(excinfo.value)
    (output,) = publisher.outputs()
    assert output["text/plain"] == "Echo: one two\n\n(incomplete)"


def test_reply_shown_when_stream_ends_early(
    shell: InteractiveShell, streaming: StreamingGateway, every_event: None
) -> None:
    # The stream brings only its start; the reply is read from the messages.
    streaming.cut_after = 1
    streaming.messages = [
        {
            "id": "msg_user",
            "role": "user",
            "content": "hello",
            "timestamp": "2026-03-03T10:00:00.000Z",
        },
        {
            "id": "msg_reply",
            "role": "assistant",
            "content": "Echo: hello",
            "timestamp": "2026-03-03T10:00:01.000Z",
            "parentID": "msg_user",
            "completedAt": "2026-03-03T10:00:02.000Z",
            "finish": "stop",
        },
    ]
    with recording_display(shell) as publisher:
        reply = shell.run_cell_magic("opencode_prompt", "ses_1", "hello")
    assert reply.text == "Echo: hello"
    assert publisher.outputs() == [bundle("Echo: hello")]
    assert len(streaming.requests) == 2


# The growing output itself


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def delta(text: str) -> TextDelta:
    return TextDelta("msg_reply", "prt_1", "text", text)


def test_live_reply_throttles_text_updates(shell: InteractiveShell) -> None:
    clock = FakeClock()
    output = LiveReply(shell, live=True, clock=clock)
    text = ""
    with recording_display(shell) as publisher:
        # 40 deltas 0.02 s apart: 0.8 s of text.
        for number in range(40):
            text += f"{number} "
            output.add(delta(f"{number} "), text)
            clock.now += 0.02
    # Nothing for the first 0.5 s, then one update per 0.1 s at most.
    first = publisher.calls[0].data["text/plain"]
    assert first.startswith("0 1 2 ")
    assert "25 " in first
    assert "26 " not in first
    assert 3 <= len(publisher.calls) <= 4


def test_live_reply_shows_tool_call_at_once(shell: InteractiveShell) -> None:
    output = LiveReply(shell, live=True, clock=FakeClock())
    tool = ToolUpdate(
        "msg_reply",
        "prt_2",
        "call_1",
        "bash",
        "running",
        title="<img src=x onerror=alert(1)> *list*",
    )
    with recording_display(shell) as publisher:
        output.add(tool, "")
    (call,) = publisher.calls
    assert call.data["text/plain"] == (
        "Tool bash (running): <img src=x onerror=alert(1)> *list*"
    )
    assert "<img" not in call.data["text/html"]
    assert "&lt;img src=x onerror=alert(1)&gt;" in call.data["text/html"]
    assert "<img" not in call.data["text/markdown"]
    assert r"\*list\*" in call.data["text/markdown"]


def test_live_reply_sanitises_partial_text(shell: InteractiveShell) -> None:
    output = LiveReply(shell, live=True, clock=FakeClock())
    hostile = "**ok** [x](javascript:alert(1)) <img src=x onerror=alert(1)>"
    with recording_display(shell) as publisher:
        output.add(ToolUpdate("msg_reply", "prt_2", "call_1", "read", "done"), "")
        output.stop(hostile, "(stopped)")
    html = publisher.outputs()[0]["text/html"]
    markdown = publisher.outputs()[0]["text/markdown"]
    assert "<strong>ok</strong>" in html
    assert "<img" not in html
    assert not re.search(r"href\s*=\s*[\"']?\s*javascript:", html, re.IGNORECASE)
    assert "<img" not in markdown
    assert "](javascript:" not in markdown
    assert html.endswith("<p><em>(stopped)</em></p>")


def test_live_reply_stop_before_text_shows_nothing(shell: InteractiveShell) -> None:
    output = LiveReply(shell, live=True, clock=FakeClock())
    with recording_display(shell) as publisher:
        output.add(delta(""), "")
        output.stop("", "(stopped)")
    assert publisher.calls == []


@pytest.mark.parametrize("name", ["print", "len", "list"])
def test_out_rejects_builtin_names(
    shell: InteractiveShell, silent: Recorder, name: str
) -> None:
    with pytest.raises(UsageError, match=f"would hide Python's built-in '{name}'"):
        shell.run_line_magic("opencode_sessions", f"--out {name}")

    assert silent.requests == []
    assert name not in shell.user_ns


def test_unquoted_new_title_suggests_quotes(
    shell: InteractiveShell, silent: Recorder
) -> None:
    with pytest.raises(UsageError) as excinfo:
        shell.run_cell_magic("opencode_prompt", "--new Data cleaning", "hi")

    message = str(excinfo.value)
    assert "Give either a session id (cleaning) or --new, not both." in message
    assert 'needs quotes: --new "my title"' in message
    assert "\n" not in message
    assert silent.requests == []


def test_unquoted_long_new_title_suggests_quotes(
    shell: InteractiveShell, silent: Recorder
) -> None:
    with pytest.raises(UsageError) as excinfo:
        shell.run_cell_magic("opencode_prompt", "--new Data cleaning today", "hi")

    message = str(excinfo.value)
    assert "unrecognized arguments: today" in message
    assert 'needs quotes: --new "my title"' in message
    assert silent.requests == []
