"""
The settings of the magics: traits of `OpenCodeMagics`, checked when set.

`%config OpenCodeMagics` lists them. An invalid value raises a `TraitError` naming
the values accepted.
"""

from __future__ import annotations

import math
from typing import Any

import httpx
from traitlets import Bool, Float, Integer, TraitError, Unicode, validate
from traitlets.config import Configurable

from opencode_notebook.operations import parse_model

__all__ = ["MagicSettings"]


class MagicSettings(Configurable):
    """The settings of `OpenCodeMagics`, each with its check."""

    url = Unicode(
        "",
        help="URL of the gateway, or of `opencode serve` when `direct` is set. "
        "Empty: $OPENCODE_NOTEBOOK_URL (direct: $OPENCODE_URL), else "
        "http://localhost:3000 (direct: http://127.0.0.1:4096).",
    ).tag(config=True)
    port = Integer(
        None,
        allow_none=True,
        help="Port (1-65535) of the OpenCode instance behind the gateway. "
        "None: $OPENCODE_PORT, else 3100. Not used when `direct` is set.",
    ).tag(config=True)
    direct = Bool(
        False,
        help="Talk to `opencode serve` at `url` itself, without a gateway.",
    ).tag(config=True)
    model = Unicode(
        "",
        help="Model for prompts that name none, as provider/model (for example "
        "local/echo). Empty: the session's or the server's default.",
    ).tag(config=True)
    agent = Unicode(
        "",
        help="Agent for prompts that name none, such as build or plan. "
        "Empty: the server's default.",
    ).tag(config=True)
    timeout = Float(
        30.0,
        help="Seconds to wait for the answer to a request other than a prompt.",
    ).tag(config=True)
    prompt_timeout = Float(
        600.0,
        help="Seconds to wait for the agent to finish a prompt. A prompt that "
        "times out is not sent again.",
    ).tag(config=True)
    context_limit = Integer(
        10_000,
        help="Maximum characters of each variable that --with adds to a prompt. "
        "A longer description is truncated.",
    ).tag(config=True)
    stream = Bool(
        True,
        help="Show a prompt's reply in its cell while the agent writes it. False: "
        "wait for the whole reply with one request, for servers whose events do "
        "not reach this kernel.",
    ).tag(config=True)

    @validate("url")
    def _validate_url(self, proposal: dict[str, Any]) -> str:
        url = str(proposal["value"]).strip()
        if not url:
            return ""
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            parsed = None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
            raise TraitError(
                f"Invalid OpenCodeMagics.url {url!r}: give an http(s) URL such as "
                "'http://localhost:3000', or '' for the default."
            )
        return url.rstrip("/")

    @validate("port")
    def _validate_port(self, proposal: dict[str, Any]) -> int | None:
        port = proposal["value"]
        if port is not None and not 1 <= port <= 65535:
            raise TraitError(
                f"Invalid OpenCodeMagics.port {port!r}: give an integer from 1 to "
                "65535, or None for $OPENCODE_PORT."
            )
        return port  # type: ignore[no-any-return]

    @validate("timeout", "prompt_timeout")
    def _validate_timeout(self, proposal: dict[str, Any]) -> float:
        seconds = float(proposal["value"])
        if not math.isfinite(seconds) or seconds <= 0:
            name = proposal["trait"].name
            raise TraitError(
                f"Invalid OpenCodeMagics.{name} {seconds!r}: give a positive number "
                "of seconds."
            )
        return seconds

    @validate("model")
    def _validate_model(self, proposal: dict[str, Any]) -> str:
        model = str(proposal["value"]).strip()
        if not model:
            return ""
        try:
            parsed = parse_model(model)
        except ValueError:
            parsed = None
        if parsed is None:
            raise TraitError(
                f"Invalid OpenCodeMagics.model {model!r}: give provider/model, such "
                "as local/echo, or '' for the default."
            )
        return f"{parsed['providerID']}/{parsed['modelID']}"

    @validate("agent")
    def _validate_agent(self, proposal: dict[str, Any]) -> str:
        agent = str(proposal["value"]).strip()
        if any(char.isspace() for char in agent):
            raise TraitError(
                f"Invalid OpenCodeMagics.agent {agent!r}: give an agent name such "
                "as build, or '' for the default."
            )
        return agent

    @validate("context_limit")
    def _validate_context_limit(self, proposal: dict[str, Any]) -> int:
        limit = int(proposal["value"])
        if limit < 1:
            raise TraitError(
                f"Invalid OpenCodeMagics.context_limit {limit!r}: give a positive "
                "number of characters."
            )
        return limit
