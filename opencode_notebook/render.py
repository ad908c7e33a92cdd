"""
Model output and session titles as safe Markdown and HTML.

Everything a model writes is untrusted: it may hold `<script>` tags, event handler
attributes or `javascript:` links. `render_markdown` turns Markdown into HTML with raw
HTML escaped and links limited to safe schemes, then passes the result through an
allow-list sanitiser. `sanitize_markdown` keeps Markdown as Markdown for front ends
that render it themselves, with raw HTML escaped outside code. `MarkdownReply` is the
display object that carries both, plus the plain text.
"""

from __future__ import annotations

import html
import re
from functools import cache
from typing import TYPE_CHECKING, Any

import nh3

if TYPE_CHECKING:
    from markdown_it import MarkdownIt

__all__ = ["MarkdownReply", "escape_html", "render_markdown", "sanitize_markdown"]

_ALLOWED_TAGS = {
    "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6",
    "hr", "img", "li", "ol", "p", "pre", "s", "strong", "table", "tbody", "td", "th",
    "thead", "tr", "ul", "span", "div",
}  # fmt: skip
_ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "code": {"class"},
    "th": {"style"},
    "td": {"style"},
}
_ALLOWED_SCHEMES = {"http", "https", "mailto"}

# A Markdown link or image destination: `](...)`, up to the closing bracket, with
# one level of balanced brackets inside as CommonMark allows.
_LINK_TARGET = re.compile(r"\]\(\s*<?((?:[^()\s>]|\([^()\s>]*\))*)")
# A link reference definition, `[label]: destination`, whose destination may start
# on the next line.
_REFERENCE_TARGET = re.compile(
    r"^( {0,3}\[(?:[^\]\\]|\\.)+\]:\s*(?:&lt;)?)(\S*)", re.MULTILINE
)
_SAFE_TARGET = re.compile(r"(?i)^(https?:|mailto:|#|/|\./|\.\./|[^:/?#]+(?:[/?#]|$))")
_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)


@cache
def _parser() -> MarkdownIt:
    from markdown_it import MarkdownIt

    # "html": False makes raw HTML in the source come out as escaped text.
    return (
        MarkdownIt("commonmark", {"html": False})
        .enable("table")
        .enable("strikethrough")
    )


def escape_html(text: str) -> str:
    """Escape text for use inside HTML, quotes included."""
    return html.escape(text, quote=True)


def render_markdown(text: str) -> str:
    """
    Render untrusted Markdown as HTML that is safe to display.

    Raw HTML in the source is shown as text, and the output keeps only an
    allow-list of tags and attributes with `http`, `https` and `mailto` links.
    """
    rendered = _parser().render(text)
    return nh3.clean(
        rendered,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes=_ALLOWED_SCHEMES,
        link_rel="noopener noreferrer nofollow",
    )


def _sanitize_prose(text: str) -> str:
    """Escape raw HTML and drop unsafe link targets in Markdown outside code."""
    pieces = []
    last = 0
    for span in _CODE_SPAN.finditer(text):
        pieces.append(_sanitize_plain(text[last : span.start()]))
        pieces.append(span.group(0))
        last = span.end()
    pieces.append(_sanitize_plain(text[last:]))
    return "".join(pieces)


def _sanitize_plain(text: str) -> str:
    escaped = text.replace("<", "&lt;").replace(">", "&gt;")

    def safe_target(match: re.Match[str]) -> str:
        target = match.group(1)
        if not target or _SAFE_TARGET.match(html.unescape(target)):
            return match.group(0)
        return "](#"

    def safe_reference(match: re.Match[str]) -> str:
        target = match.group(2)
        if not target or _SAFE_TARGET.match(html.unescape(target)):
            return match.group(0)
        return f"{match.group(1)}#"

    escaped = _LINK_TARGET.sub(safe_target, escaped)
    return _REFERENCE_TARGET.sub(safe_reference, escaped)


def sanitize_markdown(text: str) -> str:
    """
    Return Markdown that renders without live HTML or unsafe links.

    Fenced code blocks and code spans are kept as they are, because front ends show
    them as text. Elsewhere `<` and `>` are escaped, and link targets with a scheme
    other than `http`, `https` or `mailto` become `#`.
    """
    lines = text.splitlines(keepends=True)
    result: list[str] = []
    prose: list[str] = []
    fence: str | None = None
    for line in lines:
        marker = _FENCE.match(line)
        if fence is None and marker:
            result.append(_sanitize_prose("".join(prose)))
            prose = []
            fence = marker.group(1)[0] * len(marker.group(1))
            result.append(line)
        elif fence is not None:
            result.append(line)
            if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                fence = None
        else:
            prose.append(line)
    result.append(_sanitize_prose("".join(prose)))
    return "".join(result)


class MarkdownReply:
    """
    A model's reply for display: plain text, sanitised Markdown and safe HTML.

    Terminals and notebook validators read the plain text; JupyterLab shows the HTML.
    """

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, str]:
        return {
            "text/plain": self.text,
            "text/markdown": sanitize_markdown(self.text),
            "text/html": render_markdown(self.text),
        }
