"""
Each Sessions API operation, written once, with no I/O.

An operation is a generator: it yields `Call`s, receives each call's successful
`httpx.Response` (or has the call's exception thrown into it), and returns the
parsed result. The sync client, the async client and the gateway only send calls,
so every operation behaves the same in all three.

There are two dialects. `GatewayAPI` speaks the contract under
`/api/opencode/{port}`. `NativeAPI` speaks to `opencode serve` itself and does what
the contract promises on top of it: forks that keep their parent, every session
listed, and unknown models or agents rejected before they reach OpenCode.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

import httpx

from opencode_notebook import native
from opencode_notebook.errors import (
    BadRequestError,
    MessageTextRequiredError,
    PromptAbortedError,
    ProtocolError,
    SessionIDRequiredError,
    SessionNotFoundError,
    UpstreamError,
)
from opencode_notebook.models import Message, PromptReply, Session

__all__ = [
    "Call",
    "GatewayAPI",
    "ModelLike",
    "NativeAPI",
    "Operation",
    "SessionsAPI",
    "check_agent",
    "check_session_id",
    "check_text",
    "parse_model",
]

T = TypeVar("T")
Operation = Generator["Call", httpx.Response, T]
ModelLike = str | Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Call:
    """
    One HTTP request an operation needs.

    `prompt` marks a call that runs an agent turn: it gets the long prompt timeout
    and is never retried, because sending it twice would run the turn twice.
    """

    method: str
    path: str
    json: Any = None
    params: Mapping[str, str | int] | None = None
    prompt: bool = False


def check_session_id(session_id: object) -> str:
    """Return the session id, or raise `SessionIDRequiredError` if it is blank."""
    if not isinstance(session_id, str) or not session_id.strip():
        raise SessionIDRequiredError("Session ID required")
    return session_id


def check_text(text: object) -> str:
    """Return the prompt text, or raise `MessageTextRequiredError` if it is blank."""
    if not isinstance(text, str) or not text.strip():
        raise MessageTextRequiredError("Message text required")
    return text


def parse_model(model: ModelLike | None) -> dict[str, str] | None:
    """
    Turn `"provider/model"` or `{"providerID", "modelID"}` into the API's object.

    The model id may itself contain slashes: only the first one splits.
    """
    if model is None:
        return None
    if isinstance(model, str):
        provider, _, name = model.strip().partition("/")
        if provider and name:
            return {"providerID": provider, "modelID": name}
    elif isinstance(model, Mapping):
        provider_id, model_id = model.get("providerID"), model.get("modelID")
        if isinstance(provider_id, str) and isinstance(model_id, str):
            return parse_model(f"{provider_id}/{model_id}")
    raise ValueError(
        f"Invalid model {model!r}: give 'provider/model' (for example 'local/echo') "
        "or {'providerID': ..., 'modelID': ...}."
    )


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ProtocolError(
            f"Expected JSON from {response.request.url}, got "
            f"{response.headers.get('content-type', 'no content type')}.",
            request=response.request,
            response=response,
        ) from None


def _expect(value: Any, kind: type, what: str, response: httpx.Response) -> Any:
    if not isinstance(value, kind):
        raise ProtocolError(
            f"Expected {what} from {response.request.url}, got {type(value).__name__}.",
            request=response.request,
            response=response,
        )
    return value


def _newest_first(sessions: list[Session]) -> list[Session]:
    return sorted(sessions, key=lambda session: session.updated_at, reverse=True)


class SessionsAPI(Protocol):
    """The operations both dialects provide."""

    def list_sessions(self) -> Operation[list[Session]]: ...

    def create_session(
        self, title: str | None = None, parent_id: str | None = None
    ) -> Operation[Session]: ...

    def get_session(self, session_id: str) -> Operation[Session]: ...

    def delete_session(self, session_id: str) -> Operation[None]: ...

    def list_messages(self, session_id: str) -> Operation[list[Message]]: ...

    def prompt(
        self,
        session_id: str,
        text: str,
        model: ModelLike | None = None,
        agent: str | None = None,
    ) -> Operation[PromptReply]: ...

    def abort(self, session_id: str) -> Operation[None]: ...


def _check_title(title: object) -> None:
    if title is not None and not isinstance(title, str):
        raise ValueError(f"Invalid title {title!r}: give a string or None.")


def check_agent(agent: object) -> None:
    """Raise `ValueError` unless `agent` is `None` or a non-blank agent name."""
    if agent is not None and (not isinstance(agent, str) or not agent.strip()):
        raise ValueError(
            f"Invalid agent {agent!r}: give an agent name such as 'build'."
        )


class GatewayAPI:
    """The contract's operations for the OpenCode instance on `port`."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.prefix = f"/api/opencode/{port}"

    def _session_path(self, session_id: str, suffix: str = "") -> str:
        quoted = quote(check_session_id(session_id), safe="")
        return f"{self.prefix}/session/{quoted}{suffix}"

    def list_sessions(self) -> Operation[list[Session]]:
        response = yield Call("GET", f"{self.prefix}/sessions")
        items = _expect(_json(response), list, "a list of sessions", response)
        return _newest_first([Session.from_json(item) for item in items])

    def create_session(
        self, title: str | None = None, parent_id: str | None = None
    ) -> Operation[Session]:
        _check_title(title)
        body: dict[str, str] = {}
        if title is not None:
            body["title"] = title
        if parent_id is not None:
            body["parentID"] = check_session_id(parent_id)
        response = yield Call("POST", f"{self.prefix}/session/create", json=body)
        return Session.from_json(_expect(_json(response), dict, "a session", response))

    def get_session(self, session_id: str) -> Operation[Session]:
        response = yield Call("GET", self._session_path(session_id))
        return Session.from_json(_expect(_json(response), dict, "a session", response))

    def delete_session(self, session_id: str) -> Operation[None]:
        yield Call("DELETE", self._session_path(session_id))

    def list_messages(self, session_id: str) -> Operation[list[Message]]:
        response = yield Call("GET", self._session_path(session_id, "/messages"))
        body = _json(response)
        items = body.get("messages") if isinstance(body, dict) else body
        items = _expect(items, list, "a list of messages", response)
        return [Message.from_json(item) for item in items]

    def prompt(
        self,
        session_id: str,
        text: str,
        model: ModelLike | None = None,
        agent: str | None = None,
    ) -> Operation[PromptReply]:
        path, body = self.prompt_request(session_id, text, model, agent)
        response = yield Call("POST", path, json=body, prompt=True)
        return PromptReply.from_json(
            _expect(_json(response), dict, "a reply", response)
        )

    def prompt_request(
        self,
        session_id: str,
        text: str,
        model: ModelLike | None = None,
        agent: str | None = None,
        suffix: str = "/prompt",
    ) -> tuple[str, dict[str, Any]]:
        """Check a prompt and return the path and body of its request."""
        path = self._session_path(session_id, suffix)
        body: dict[str, Any] = {"text": check_text(text)}
        parsed_model = parse_model(model)
        if parsed_model is not None:
            body["model"] = parsed_model
        check_agent(agent)
        if agent is not None:
            body["agent"] = agent
        return path, body

    def abort(self, session_id: str) -> Operation[None]:
        yield Call("POST", self._session_path(session_id, "/abort"))


@dataclass(slots=True)
class _Catalog:
    models: set[str]
    default_model: str | None
    agents: list[str]
    fetched_at: float


# How long the list of models and agents is trusted before it is fetched again.
_CATALOG_SECONDS = 30.0
# OpenCode lists at most 100 sessions unless asked for more, and has no cursor.
_FIRST_LIST_LIMIT = 1000


class NativeAPI:
    """The contract's operations against `opencode serve` itself."""

    def __init__(self) -> None:
        self._catalog: _Catalog | None = None

    def session_path(self, session_id: str, suffix: str = "") -> str:
        """Return the path of a session's route; reject ids OpenCode cannot take."""
        check_session_id(session_id)
        # OpenCode returns a bare 500 for an id without its `ses` prefix.
        if not session_id.startswith("ses"):
            raise SessionNotFoundError(f"Session not found: {session_id}")
        return f"/session/{quote(session_id, safe='')}{suffix}"

    def list_sessions(self) -> Operation[list[Session]]:
        limit = _FIRST_LIST_LIMIT
        while True:
            response = yield Call("GET", "/session", params={"limit": limit})
            items = _expect(_json(response), list, "a list of sessions", response)
            if len(items) < limit:
                break
            limit *= 4
        sessions = [Session.from_json(native.session_to_contract(i)) for i in items]
        return _newest_first(sessions)

    def create_session(
        self, title: str | None = None, parent_id: str | None = None
    ) -> Operation[Session]:
        _check_title(title)
        if parent_id is None:
            body = {} if title is None else {"title": title}
            response = yield Call("POST", "/session", json=body)
        else:
            parent_path = self.session_path(parent_id)
            yield Call("GET", parent_path)
            fork = yield Call("POST", f"{parent_path}/fork", json={})
            forked = _expect(_json(fork), dict, "a session", fork)
            metadata = dict(forked.get("metadata") or {})
            metadata[native.PARENT_METADATA_KEY] = parent_id
            patch: dict[str, Any] = {"metadata": metadata}
            if title is not None:
                patch["title"] = title
            path = self.session_path(str(forked.get("id", "")))
            response = yield Call("PATCH", path, json=patch)
        data = _expect(_json(response), dict, "a session", response)
        return Session.from_json(native.session_to_contract(data))

    def get_session(self, session_id: str) -> Operation[Session]:
        response = yield Call("GET", self.session_path(session_id))
        data = _expect(_json(response), dict, "a session", response)
        return Session.from_json(native.session_to_contract(data))

    def delete_session(self, session_id: str) -> Operation[None]:
        yield Call("DELETE", self.session_path(session_id))

    def list_messages(self, session_id: str) -> Operation[list[Message]]:
        response = yield Call("GET", self.session_path(session_id, "/message"))
        items = _expect(_json(response), list, "a list of messages", response)
        return [Message.from_json(native.message_to_contract(item)) for item in items]

    def catalog(self) -> Operation[_Catalog]:
        """Fetch the models and agents the instance offers, cached for a while."""
        cached = self._catalog
        if cached and time.monotonic() - cached.fetched_at < _CATALOG_SECONDS:
            return cached
        providers_response = yield Call("GET", "/config/providers")
        providers = _json(providers_response).get("providers") or []
        models = {
            f"{provider['id']}/{model_id}"
            for provider in providers
            for model_id in provider.get("models") or {}
        }
        config_response = yield Call("GET", "/config")
        default_model = _json(config_response).get("model")
        agents_response = yield Call("GET", "/agent")
        agents = [
            agent["name"]
            for agent in _json(agents_response)
            if isinstance(agent, dict) and not agent.get("hidden")
        ]
        self._catalog = _Catalog(models, default_model, agents, time.monotonic())
        return self._catalog

    def prepare_prompt(
        self,
        session_id: str,
        text: str,
        model: ModelLike | None = None,
        agent: str | None = None,
    ) -> Operation[tuple[dict[str, Any], dict[str, Any]]]:
        """
        Check a prompt against the instance and build OpenCode's request body.

        Returns the session's JSON and the body for `POST /session/{id}/message`
        or `/prompt_async`. Raises `BadRequestError` for an unknown model or agent
        before anything is stored.
        """
        path = self.session_path(session_id)
        check_text(text)
        requested = parse_model(model)
        check_agent(agent)
        session_response = yield Call("GET", path)
        session = _expect(_json(session_response), dict, "a session", session_response)
        catalog = yield from self.catalog()
        if agent is not None and agent not in catalog.agents:
            available = ", ".join(catalog.agents) or "none"
            raise BadRequestError(
                f"Unknown agent {agent!r}. Available agents: {available}.", status=400
            )
        body: dict[str, Any] = {"parts": [{"type": "text", "text": text}]}
        resolved = self._resolve_model(catalog, requested, session.get("model"))
        if resolved is not None:
            body["model"] = resolved
        if agent is not None:
            body["agent"] = agent
        return session, body

    def abort(self, session_id: str) -> Operation[None]:
        # OpenCode returns `true` even for an unknown session, so look it up first.
        path = self.session_path(session_id)
        yield Call("GET", path)
        yield Call("POST", f"{path}/abort")

    def _resolve_model(
        self, catalog: _Catalog, requested: dict[str, str] | None, stored: Any
    ) -> dict[str, str] | None:
        if requested is not None:
            name = f"{requested['providerID']}/{requested['modelID']}"
            if name not in catalog.models:
                available = ", ".join(sorted(catalog.models)) or "none"
                raise BadRequestError(
                    f"Unknown model {name!r}. Available models: {available}.",
                    status=400,
                )
            return requested
        # Resend the session's own model, or the configured default, explicitly:
        # OpenCode would otherwise reuse a model stored on the session even when it
        # no longer exists, and fail.
        if isinstance(stored, Mapping):
            name = f"{stored.get('providerID')}/{stored.get('id')}"
            if name in catalog.models:
                return {"providerID": stored["providerID"], "modelID": stored["id"]}
        if catalog.default_model in catalog.models:
            return parse_model(catalog.default_model)
        return None

    def prompt(
        self,
        session_id: str,
        text: str,
        model: ModelLike | None = None,
        agent: str | None = None,
    ) -> Operation[PromptReply]:
        _, body = yield from self.prepare_prompt(session_id, text, model, agent)
        path = self.session_path(session_id, "/message")
        response = yield Call("POST", path, json=body, prompt=True)
        entry = _expect(_json(response), dict, "a message", response)
        info = entry.get("info") or {}
        if (info.get("error") or {}).get("name") == "MessageAbortedError":
            raise PromptAbortedError(
                f"The prompt to session {session_id} was aborted before it finished.",
                session_id=session_id,
                message_id=info.get("id"),
                partial_text=native.text_of_parts(entry.get("parts") or []),
            )
        failure = native.assistant_error(info)
        if failure:
            raise UpstreamError(f"OpenCode failed the prompt: {failure}", status=502)
        return PromptReply.from_json(native.reply_to_contract(entry))
