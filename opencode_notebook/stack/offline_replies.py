"""Replies of the offline model: directives, reply planning and chunking.

Nothing here does I/O. `offline_model` serves these replies over HTTP, and its
module docstring describes the directives.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MODEL_ID",
    "TITLE_MARKER",
    "DirectiveError",
    "Directives",
    "Reply",
    "ToolCall",
    "chunks",
    "content_text",
    "parse_directives",
    "plan_reply",
    "strip_directives",
]


MODEL_ID = "echo"
TITLE_MARKER = "You are a title generator"
TITLE_WORDS = 6

_DIRECTIVE = re.compile(r"\[\[\s*(delay|tool|fail|reason)\b(.*?)\]\]", re.DOTALL)
_CHUNK = re.compile(r"\S+\s*|\s+")


class DirectiveError(ValueError):
    """A directive in the user text that cannot be parsed."""


@dataclass
class ToolCall:
    """A tool call that a `[[tool ...]]` directive requests."""

    name: str
    arguments: dict[str, Any]


@dataclass
class Directives:
    """The directives found in one user message, and the text without them."""

    text: str
    delay: float | None = None
    tool: ToolCall | None = None
    fail: bool = False
    reason: bool = False


@dataclass
class Reply:
    """The offline model's reply to one chat completion request."""

    content: str = ""
    reasoning: str = ""
    tool: ToolCall | None = None
    delay: float = 0.0
    prompt_tokens: int = 0
    fail: bool = False

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool else "stop"

    @property
    def completion_tokens(self) -> int:
        words = f"{self.reasoning} {self.content}".split()
        if self.tool:
            words.append(self.tool.name)
        return len(words)


def content_text(content: object) -> str:
    """Return the text of message content given as a string or a list of parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = [
        part["text"]
        for part in content
        if isinstance(part, dict)
        and part.get("type") == "text"
        and isinstance(part.get("text"), str)
    ]
    return "\n".join(texts)


def strip_directives(text: str) -> str:
    """Return `text` without directives and surrounding whitespace."""
    return _DIRECTIVE.sub("", text).strip()


def parse_directives(text: str) -> Directives:
    """Find the directives in `text`, raising `DirectiveError` on a malformed one."""
    found = Directives(text=strip_directives(text))
    for match in _DIRECTIVE.finditer(text):
        name, argument = match.group(1), match.group(2).strip()
        if name == "delay":
            try:
                found.delay = float(argument)
            except ValueError:
                raise DirectiveError(
                    f"Invalid directive {match.group(0)!r}: "
                    "the delay must be a number of seconds."
                ) from None
        elif name == "tool":
            found.tool = _parse_tool(match.group(0), argument)
        elif name == "fail":
            found.fail = True
        else:
            found.reason = True
    return found


def _parse_tool(directive: str, argument: str) -> ToolCall:
    name, colon, raw = argument.partition(":")
    name, raw = name.strip(), raw.strip()
    if not name or not colon:
        raise DirectiveError(
            f"Invalid directive {directive!r}: write it as [[tool NAME: ARGS]]."
        )
    if raw.startswith("{"):
        try:
            arguments = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DirectiveError(
                f"Invalid directive {directive!r}: the arguments are not valid "
                f"JSON ({exc.msg})."
            ) from None
        if isinstance(arguments, dict):
            return ToolCall(name, arguments)
    if name == "bash":
        return ToolCall(name, {"command": raw, "description": f"Run {raw}"[:80]})
    raise DirectiveError(
        f"Invalid directive {directive!r}: give the arguments of tool {name!r} "
        "as a JSON object."
    )


def plan_reply(body: dict[str, Any], default_delay: float) -> Reply:
    """Decide the reply to a chat completion request body.

    Raises `DirectiveError` for a malformed directive and `ValueError` when the
    request has no messages.
    """
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("The request has no `messages` list.")
    messages = [m for m in messages if isinstance(m, dict)]
    prompt_tokens = sum(len(content_text(m.get("content")).split()) for m in messages)
    system = "\n".join(
        content_text(m.get("content")) for m in messages if m.get("role") == "system"
    )
    last_user = max(
        (i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1
    )
    user_text = (
        content_text(messages[last_user].get("content")) if last_user >= 0 else ""
    )

    if TITLE_MARKER in system:
        words = strip_directives(user_text).split()[:TITLE_WORDS]
        title = " ".join(words) or "Empty prompt"
        return Reply(content=title, delay=default_delay, prompt_tokens=prompt_tokens)

    directives = parse_directives(user_text)
    reply = Reply(
        delay=default_delay if directives.delay is None else directives.delay,
        prompt_tokens=prompt_tokens,
        fail=directives.fail,
    )
    if directives.reason:
        reply.reasoning = f"Thinking about: {directives.text}"
    tool_results = [m for m in messages[last_user + 1 :] if m.get("role") == "tool"]
    if tool_results:
        output = content_text(tool_results[-1].get("content")).strip()
        reply.content = f"Done: {output}"
    elif directives.tool:
        offered = {
            tool.get("function", {}).get("name")
            for tool in body.get("tools") or []
            if isinstance(tool, dict)
        }
        if directives.tool.name in offered:
            reply.tool = directives.tool
        else:
            reply.content = f"Tool {directives.tool.name!r} is not offered."
    else:
        reply.content = f"Echo: {directives.text}"
    return reply


def chunks(text: str) -> list[str]:
    """Split `text` into word-sized chunks that join back to `text`."""
    return _CHUNK.findall(text)
