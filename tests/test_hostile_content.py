"""
Hostile model output and session titles on every path that makes HTML.

Each payload of `data/xss_payloads.txt` goes through `render_markdown`,
`sanitize_markdown`, `MarkdownReply`, `Session._repr_html_`, the DataFrames' HTML
and the chat panel's HTML widgets. The output is parsed with `html.parser`, and
it must contain no script, no event handler attribute, no `javascript:`,
`vbscript:` or `data:` URL and no embedding or styling element. Normal Markdown
must still render, and the text itself must still be there.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, cast

import httpx
import ipywidgets as widgets
import pytest
from markdown_it import MarkdownIt

from opencode_notebook import AsyncOpenCodeClient, Message, OpenCodeClient, Session
from opencode_notebook._chat_view import _PANEL_CSS
from opencode_notebook.chat import ChatPanel
from opencode_notebook.frames import messages_frame, sessions_frame
from opencode_notebook.models import format_timestamp
from opencode_notebook.render import (
    MarkdownReply,
    escape_html,
    render_markdown,
    sanitize_markdown,
)
from opencode_notebook.stack import LocalChain

CORPUS = Path(__file__).parent / "data" / "xss_payloads.txt"

# Elements that run code, load other documents or restyle the page.
FORBIDDEN_TAGS = frozenset(
    {
        "applet", "base", "body", "button", "details", "embed", "form", "frame",
        "frameset", "iframe", "input", "link", "math", "meta", "noscript",
        "object", "script", "style", "svg", "template",
    }
)  # fmt: skip
URL_ATTRIBUTES = frozenset(
    {"action", "data", "formaction", "href", "src", "xlink:href", "poster"}
)
UNSAFE_SCHEMES = ("javascript:", "vbscript:", "data:")


def load_payloads() -> list[str]:
    lines = CORPUS.read_text(encoding="utf-8").splitlines()
    return [
        line.replace("\\n", "\n")
        for line in lines
        if line.strip() and not line.startswith("#")
    ]


PAYLOADS = load_payloads()


class ExecutableMarkupFinder(HTMLParser):
    """Collect every element, attribute or URL in HTML that could run code."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in FORBIDDEN_TAGS:
            self.problems.append(f"<{tag}> element")
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"{name} attribute on <{tag}>")
            # Browsers skip control characters and spaces inside a URL's scheme.
            url = re.sub(r"[\x00-\x20]", "", value or "").lower()
            if name in URL_ATTRIBUTES and url.startswith(UNSAFE_SCHEMES):
                self.problems.append(f"{name}={value!r} on <{tag}>")
            if name == "style" and re.search(r"url\(|expression|@import", url):
                self.problems.append(f"style={value!r} on <{tag}>")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)


def executable_markup(markup: str) -> list[str]:
    """Return what in `markup` could run code; empty when it is inert."""
    finder = ExecutableMarkupFinder()
    finder.feed(markup)
    finder.close()
    problems = finder.problems
    if "<script" in markup.lower():
        problems.append("'<script' in the raw text")
    return problems


class PermissiveMarkdown(MarkdownIt):
    """A renderer that passes raw HTML and every link through, as some front ends do."""

    def validateLink(self, url: str) -> bool:
        return True


def permissive_markdown() -> MarkdownIt:
    return PermissiveMarkdown("commonmark", {"html": True}).enable("table")


PAYLOAD_PARAMS = [
    pytest.param(payload, id=f"{number:02d}")
    for number, payload in enumerate(PAYLOADS, start=1)
]


def test_corpus_is_broad() -> None:
    text = "\n".join(PAYLOADS).lower()

    assert len(PAYLOADS) >= 30
    for needle in ["<script", "onerror=", "javascript:", "data:", "<svg", "&#"]:
        assert needle in text
    for needle in ["vbscript:", "](", "![", "<iframe", "<<script"]:
        assert needle in text


def test_finder_flags_live_markup() -> None:
    live = (
        '<a href=" jav&#x09;ascript:alert(1)">x</a><img src=x onerror=alert(1)>'
        '<svg></svg><div style="background:url(x)"></div>'
    )

    problems = executable_markup(live)

    assert problems == [
        "href=' jav\\tascript:alert(1)' on <a>",
        "onerror attribute on <img>",
        "<svg> element",
        "style='background:url(x)' on <div>",
    ]
    assert executable_markup("<p>&lt;script&gt; is text</p>") == []


# Rendering functions


@pytest.mark.parametrize("payload", PAYLOAD_PARAMS)
def test_render_markdown_is_inert(payload: str) -> None:
    assert executable_markup(render_markdown(payload)) == []


@pytest.mark.parametrize("payload", PAYLOAD_PARAMS)
def test_sanitize_markdown_is_inert(payload: str) -> None:
    sanitized = sanitize_markdown(payload)

    assert executable_markup(permissive_markdown().render(sanitized)) == []


@pytest.mark.parametrize("payload", PAYLOAD_PARAMS)
def test_markdown_reply_bundle_is_inert(payload: str) -> None:
    bundle = MarkdownReply(payload)._repr_mimebundle_()

    assert bundle["text/plain"] == payload
    assert executable_markup(bundle["text/html"]) == []
    assert (
        executable_markup(permissive_markdown().render(bundle["text/markdown"])) == []
    )


def test_plain_text_of_payload_survives() -> None:
    payload = "<script>alert(1)</script> and [x](javascript:alert(1))"

    rendered = render_markdown(payload)

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered
    assert "alert(1)" in html.unescape(rendered)


# Normal Markdown still renders


def test_normal_markdown_still_renders() -> None:
    text = (
        "**bold** and *italic* with `code`\n\n"
        "```python\nprint('<b>hi</b>')\n```\n\n"
        "[docs](https://example.com/docs) and ![logo](https://example.com/a.png)\n\n"
        "| a | b |\n| --- | :-: |\n| 1 | 2 |\n\n"
        "- one\n- two\n"
    )

    rendered = render_markdown(text)

    assert "<strong>bold</strong>" in rendered
    assert "<em>italic</em>" in rendered
    assert "<code>code</code>" in rendered
    assert '<code class="language-python">' in rendered
    assert "&lt;b&gt;hi&lt;/b&gt;" in rendered
    assert 'href="https://example.com/docs"' in rendered
    assert 'src="https://example.com/a.png"' in rendered
    assert "<table>" in rendered
    assert "<li>two</li>" in rendered
    assert executable_markup(rendered) == []


def test_sanitize_markdown_keeps_normal_markdown() -> None:
    text = (
        "**bold** [docs](https://example.com/docs)\n\n"
        "```html\n<script>kept as code</script>\n```\n\n"
        "[ref][r]\n\n[r]: https://example.com/ref\n"
    )

    sanitized = sanitize_markdown(text)

    assert "**bold** [docs](https://example.com/docs)" in sanitized
    assert "```html\n<script>kept as code</script>\n```" in sanitized
    assert "[r]: https://example.com/ref" in sanitized


# Objects and frames


def session_with_title(title: str, number: int = 1) -> Session:
    moment = datetime(2026, 3, 3, 10, number % 60, tzinfo=UTC)
    return Session(
        id=f"ses_{number:03d}",
        title=title,
        created_at=moment,
        updated_at=moment,
        parent_id="ses_000",
    )


def message_with_content(role: str, content: str, number: int = 1) -> Message:
    return Message(
        id=f"msg_{number:03d}",
        role=role,
        content=content,
        timestamp=datetime(2026, 3, 3, 10, number % 60, tzinfo=UTC),
        extra={"sessionID": "ses_001", "error": {"message": content}},
    )


@pytest.mark.parametrize("payload", PAYLOAD_PARAMS)
def test_session_repr_html_is_inert(payload: str) -> None:
    rendered = session_with_title(payload)._repr_html_()

    assert executable_markup(rendered) == []
    assert escape_html(payload) in rendered


def frames_html(titles: list[str]) -> dict[str, str]:
    sessions = [session_with_title(t, n) for n, t in enumerate(titles)]
    messages = [
        message_with_content(role, text, n)
        for n, text in enumerate(titles)
        for role in ("user", "assistant")
    ]
    session_rows = sessions_frame(sessions)
    message_rows = messages_frame(messages)
    # pandas-stubs read `_repr_html_` as a column, so the method is cast back.
    return {
        "sessions to_html": session_rows.to_html(),
        "sessions _repr_html_": cast(Callable[[], str], session_rows._repr_html_)(),
        "messages to_html": message_rows.to_html(),
        "messages _repr_html_": cast(Callable[[], str], message_rows._repr_html_)(),
    }


def test_frames_html_is_inert() -> None:
    # pandas' `_repr_html_` adds a <style scoped> block of its own, so the
    # hostile frames must show exactly what frames of plain titles show.
    plain = frames_html([f"title {n}" for n in range(len(PAYLOADS))])
    hostile = frames_html(PAYLOADS)

    for name, rendered in hostile.items():
        assert rendered, name
        assert executable_markup(rendered) == executable_markup(plain[name]), name
    assert executable_markup(plain["sessions to_html"]) == []


# Chat panel


class HostileGateway:
    """A mock Sessions API whose every title and message is a payload."""

    def __init__(self, payloads: list[str]) -> None:
        self.sessions: list[dict[str, Any]] = []
        self.messages: dict[str, list[dict[str, Any]]] = {}
        for number, payload in enumerate(payloads):
            moment = format_timestamp(datetime(2026, 3, 3, 10, number % 60, tzinfo=UTC))
            session_id = f"ses_{number:03d}"
            self.sessions.append(
                {
                    "id": session_id,
                    "title": payload,
                    "createdAt": moment,
                    "updatedAt": moment,
                }
            )
            self.messages[session_id] = [
                {
                    "id": f"msg_{number:03d}_{role}",
                    "role": role,
                    "content": payload,
                    "timestamp": moment,
                    "agent": payload,
                    "modelID": payload,
                    "providerID": "local",
                    "error": {"name": "APIError", "data": {"message": payload}},
                    "parts": [{"type": "tool", "tool": payload, "state": {}}],
                }
                for role in ("user", "assistant")
            ]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.split("/", 4)[-1]
        if path == "sessions":
            return httpx.Response(200, json=self.sessions)
        match = re.fullmatch(r"session/([^/]+)(/messages)?", path)
        if match and match.group(1) in self.messages:
            if match.group(2):
                return httpx.Response(200, json={"messages": self.messages[match[1]]})
            session = next(s for s in self.sessions if s["id"] == match.group(1))
            return httpx.Response(200, json=session)
        return httpx.Response(
            404, json={"statusCode": 404, "message": f"Not found: {PAYLOADS[0]}"}
        )


def html_values(widget: widgets.Widget) -> list[str]:
    """Return every value or description of `widget` and its children that is HTML."""
    values: list[str] = []
    if isinstance(widget, widgets.HTML | widgets.HTMLMath):
        values.append(widget.value)
    if getattr(widget, "description_allow_html", False):
        values.append(widget.description)
    for child in getattr(widget, "children", ()):
        values.extend(html_values(child))
    return values


async def test_chat_panel_html_is_inert() -> None:
    gateway = HostileGateway(PAYLOADS)
    client = AsyncOpenCodeClient(
        "http://gateway.test", port=3100, transport=httpx.MockTransport(gateway)
    )
    panel = ChatPanel(client)
    await panel.wait()
    html_shown: list[str] = []

    for _, session_id in panel.session_picker.options:
        panel.session_picker.value = session_id
        await panel.wait()
        html_shown.extend(html_values(panel.widget))
    refresh = panel.refresh("ses_missing")
    assert refresh is not None
    await refresh
    html_shown.extend(html_values(panel.widget))
    panel.close()

    labels = [label for label, _ in panel.session_picker.options]
    assert len(labels) == len(PAYLOADS)
    assert set(labels) == set(PAYLOADS)
    assert len(html_shown) > len(PAYLOADS) * 2
    # The panel's own stylesheet is a constant of the package, not shown content.
    shown_content = [value for value in html_shown if value != _PANEL_CSS]
    for value in shown_content:
        assert executable_markup(value) == [], value
    await client.aclose()


# Through the real gateway and OpenCode


@pytest.fixture(scope="module")
def chain_client(chain: LocalChain) -> Iterator[OpenCodeClient]:
    assert chain.gateway_url is not None
    with OpenCodeClient(
        chain.gateway_url, port=chain.opencode_ports[0], prompt_timeout=60
    ) as client:
        yield client


@pytest.mark.chain
def test_chain_hostile_titles_round_trip(chain_client: OpenCodeClient) -> None:
    created = [chain_client.create_session(title=p) for p in PAYLOADS]

    listed = {s.id: s for s in chain_client.list_sessions()}
    frame_html = sessions_frame([listed[s.id] for s in created]).to_html()

    for session, payload in zip(created, PAYLOADS, strict=True):
        fetched = chain_client.get_session(session.id)
        assert fetched.title == payload
        assert listed[session.id].title == payload
        assert executable_markup(fetched._repr_html_()) == []
    assert executable_markup(frame_html) == []
    for session in created:
        chain_client.delete_session(session.id)


# A sample of the corpus (scripts, handlers, SVG, unsafe links, images and
# multi-line Markdown), so the chain row takes a few seconds.
REPLY_PAYLOADS = [
    p
    for p in PAYLOADS
    if p.startswith(("<script", "<img", "<svg", "[click](javascript", "![image]("))
    or "\n" in p
]


@pytest.mark.chain
def test_chain_hostile_reply_renders_inert(chain_client: OpenCodeClient) -> None:
    session = chain_client.create_session(title="hostile replies")

    replies = [chain_client.prompt(session.id, p) for p in REPLY_PAYLOADS]
    messages = chain_client.list_messages(session.id)

    assert len(REPLY_PAYLOADS) >= 8
    for reply, payload in zip(replies, REPLY_PAYLOADS, strict=True):
        assert reply.response.strip() == f"Echo: {payload.strip()}"
        bundle = MarkdownReply(reply.response)._repr_mimebundle_()
        assert executable_markup(bundle["text/html"]) == []
        markdown = permissive_markdown().render(bundle["text/markdown"])
        assert executable_markup(markdown) == []
    frame_html = messages_frame(messages).to_html()
    assert executable_markup(frame_html) == []
    user_texts = [m.content for m in messages if m.role == "user"]
    assert user_texts == REPLY_PAYLOADS
    chain_client.delete_session(session.id)
