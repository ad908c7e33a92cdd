"""The gateway against the real OpenCode server: every endpoint and error row."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from opencode_notebook.gateway import GatewayConfig, create_app
from opencode_notebook.stack import LocalChain

pytestmark = pytest.mark.chain

ISO_MILLISECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(scope="module")
def api(chain: LocalChain) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=chain.api_url(), timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def gateway(chain: LocalChain) -> Iterator[httpx.Client]:
    assert chain.gateway_url is not None
    with httpx.Client(base_url=chain.gateway_url, timeout=60) as client:
        yield client


def create(api: httpx.Client, **body: Any) -> dict[str, Any]:
    response = api.post("/session/create", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def prompt(
    api: httpx.Client, session_id: str, text: str, **extra: Any
) -> httpx.Response:
    return api.post(f"/session/{session_id}/prompt", json={"text": text, **extra})


def assert_error(response: httpx.Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"statusCode": status, "message": message}


def assert_session_shape(session: dict[str, Any]) -> None:
    assert session["id"].startswith("ses_")
    assert isinstance(session["title"], str)
    assert ISO_MILLISECONDS.match(session["createdAt"])
    assert ISO_MILLISECONDS.match(session["updatedAt"])


def test_create_with_title(api: httpx.Client) -> None:
    session = create(api, title="New feature development")

    assert_session_shape(session)
    assert session["title"] == "New feature development"
    assert "parentID" not in session


def test_create_with_empty_body(api: httpx.Client) -> None:
    response = api.post("/session/create")

    assert response.status_code == 200
    assert_session_shape(response.json())
    assert response.json()["title"]


def test_list_sessions_newest_first(api: httpx.Client) -> None:
    first = create(api, title="older")
    second = create(api, title="newer")

    sessions = api.get("/sessions").json()
    ids = [session["id"] for session in sessions]
    updated = [session["updatedAt"] for session in sessions]

    assert ids.index(second["id"]) < ids.index(first["id"])
    assert updated == sorted(updated, reverse=True)
    for session in sessions:
        assert_session_shape(session)


def test_get_session(api: httpx.Client) -> None:
    created = create(api, title="Debug API endpoints")

    response = api.get(f"/session/{created['id']}")

    assert response.status_code == 200
    assert response.json()["id"] == created["id"]
    assert response.json()["title"] == "Debug API endpoints"


def test_delete_session(api: httpx.Client) -> None:
    created = create(api, title="to delete")

    response = api.delete(f"/session/{created['id']}")

    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert_error(api.get(f"/session/{created['id']}"), 404, "Session not found")
    assert_error(api.delete(f"/session/{created['id']}"), 404, "Session not found")


def test_prompt_and_messages(api: httpx.Client) -> None:
    session = create(api, title="prompting")

    response = prompt(api, session["id"], "Write a function to validate emails")
    messages = api.get(f"/session/{session['id']}/messages").json()["messages"]

    assert response.status_code == 200
    reply = response.json()
    assert reply["response"].startswith("Echo: Write a function to validate emails")
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[0]["content"] == "Write a function to validate emails"
    assert messages[1]["id"] == reply["messageId"]
    assert messages[1]["content"] == reply["response"]
    assert ISO_MILLISECONDS.match(messages[0]["timestamp"])
    assert messages[0]["timestamp"] <= messages[1]["timestamp"]


def test_messages_carry_analysis_fields(api: httpx.Client) -> None:
    session = create(api, title="fields")
    prompt(api, session["id"], "hello")

    assistant = api.get(f"/session/{session['id']}/messages").json()["messages"][-1]

    assert assistant["providerID"] == "local"
    assert assistant["modelID"] == "echo"
    assert assistant["agent"] == "build"
    assert assistant["tokens"]["output"] > 0
    assert ISO_MILLISECONDS.match(assistant["completedAt"])
    assert any(part["type"] == "text" for part in assistant["parts"])


def test_prompt_with_model_and_agent(api: httpx.Client) -> None:
    session = create(api, title="model and agent")

    response = prompt(
        api,
        session["id"],
        "plan this",
        model={"providerID": "local", "modelID": "echo"},
        agent="plan",
    )
    assistant = api.get(f"/session/{session['id']}/messages").json()["messages"][-1]

    assert response.status_code == 200
    assert "plan this" in response.json()["response"]
    assert assistant["agent"] == "plan"
    assert assistant["modelID"] == "echo"


def test_tool_call_reply_is_final_answer(api: httpx.Client) -> None:
    session = create(api, title="tools")

    response = prompt(api, session["id"], "[[tool bash: echo hi-from-tool]]")
    messages = api.get(f"/session/{session['id']}/messages").json()["messages"]

    assert response.status_code == 200
    assert "hi-from-tool" in response.json()["response"]
    assert [m["role"] for m in messages] == ["user", "assistant", "assistant"]
    assert messages[1]["content"] == ""
    assert any(part["type"] == "tool" for part in messages[1]["parts"])
    assert messages[2]["id"] == response.json()["messageId"]


def test_fork_copies_history_and_reports_parent(api: httpx.Client) -> None:
    parent = create(api, title="parent")
    prompt(api, parent["id"], "remember this")

    fork = create(api, parentID=parent["id"], title="child")
    parent_messages = api.get(f"/session/{parent['id']}/messages").json()["messages"]
    fork_messages = api.get(f"/session/{fork['id']}/messages").json()["messages"]

    assert fork["parentID"] == parent["id"]
    assert fork["title"] == "child"
    assert api.get(f"/session/{fork['id']}").json()["parentID"] == parent["id"]
    assert [m["content"] for m in fork_messages] == [
        m["content"] for m in parent_messages
    ]
    assert {m["id"] for m in fork_messages}.isdisjoint(m["id"] for m in parent_messages)


def test_fork_goes_its_own_way(api: httpx.Client) -> None:
    parent = create(api, title="parent")
    prompt(api, parent["id"], "one")
    fork = create(api, parentID=parent["id"])

    prompt(api, fork["id"], "two")

    parent_messages = api.get(f"/session/{parent['id']}/messages").json()["messages"]
    fork_messages = api.get(f"/session/{fork['id']}/messages").json()["messages"]
    assert len(parent_messages) == 2
    assert len(fork_messages) == 4


def test_deleting_parent_keeps_fork(api: httpx.Client) -> None:
    parent = create(api, title="parent")
    fork = create(api, parentID=parent["id"])

    api.delete(f"/session/{parent['id']}")

    assert api.get(f"/session/{fork['id']}").status_code == 200


def test_fork_of_unknown_parent(api: httpx.Client) -> None:
    response = api.post("/session/create", json={"parentID": "ses_doesnotexist"})

    assert_error(response, 404, "Session not found")


@pytest.mark.parametrize("session_id", ["ses_doesnotexist", "sess_abc123", "foo"])
def test_unknown_session_rows(api: httpx.Client, session_id: str) -> None:
    assert_error(api.get(f"/session/{session_id}"), 404, "Session not found")
    assert_error(api.delete(f"/session/{session_id}"), 404, "Session not found")
    assert_error(api.get(f"/session/{session_id}/messages"), 404, "Session not found")
    assert_error(prompt(api, session_id, "hi"), 404, "Session not found")


@pytest.mark.parametrize("port", ["abc", "0", "65536", "-1", "3100.5", "99999999"])
def test_invalid_port(gateway: httpx.Client, port: str) -> None:
    assert_error(gateway.get(f"/api/opencode/{port}/sessions"), 500, "Invalid port")


@pytest.mark.parametrize("path", ["/session/%20", "/session/%20/messages"])
def test_blank_session_id(api: httpx.Client, path: str) -> None:
    assert_error(api.get(path), 500, "Session ID required")


def test_blank_session_id_on_prompt(api: httpx.Client) -> None:
    assert_error(prompt(api, "%20", "hi"), 500, "Session ID required")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="missing"),
        pytest.param({"text": ""}, id="empty"),
        pytest.param({"text": "  \n\t"}, id="blank"),
        pytest.param({"text": 42}, id="number"),
        pytest.param({"text": None}, id="null"),
    ],
)
def test_message_text_required(api: httpx.Client, body: dict[str, Any]) -> None:
    session = create(api, title="text required")

    response = api.post(f"/session/{session['id']}/prompt", json=body)

    assert_error(response, 500, "Message text required")
    assert api.get(f"/session/{session['id']}/messages").json() == {"messages": []}


def test_invalid_json_body(api: httpx.Client) -> None:
    response = api.post(
        "/session/create",
        content=b"{bad",
        headers={"content-type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["statusCode"] == 400
    assert response.json()["message"].startswith("Invalid JSON body")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": 5}, "title"),
        ({"parentID": ["ses_x"]}, "parentID"),
    ],
)
def test_wrong_field_type_on_create(
    api: httpx.Client, body: dict[str, Any], field: str
) -> None:
    response = api.post("/session/create", json=body)

    assert response.status_code == 400
    assert f"'{field}'" in response.json()["message"]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"model": "local/echo"}, "model"),
        ({"model": {"providerID": "local"}}, "model"),
        ({"agent": 7}, "agent"),
    ],
)
def test_wrong_field_type_on_prompt(
    api: httpx.Client, extra: dict[str, Any], field: str
) -> None:
    session = create(api, title="wrong types")

    response = prompt(api, session["id"], "hi", **extra)

    assert response.status_code == 400
    assert f"'{field}'" in response.json()["message"]


def test_unknown_model_is_rejected_and_nothing_stored(api: httpx.Client) -> None:
    session = create(api, title="unknown model")

    response = prompt(
        api, session["id"], "hi", model={"providerID": "local", "modelID": "nope"}
    )

    assert response.status_code == 400
    assert "local/nope" in response.json()["message"]
    assert "local/echo" in response.json()["message"]
    assert api.get(f"/session/{session['id']}/messages").json() == {"messages": []}
    assert prompt(api, session["id"], "still works").status_code == 200


def test_unknown_agent_is_rejected_and_nothing_stored(api: httpx.Client) -> None:
    session = create(api, title="unknown agent")

    response = prompt(api, session["id"], "hi", agent="nosuch")

    assert response.status_code == 400
    assert "nosuch" in response.json()["message"]
    assert "build" in response.json()["message"]
    assert api.get(f"/session/{session['id']}/messages").json() == {"messages": []}


def test_unknown_route_is_json_404(gateway: httpx.Client, chain: LocalChain) -> None:
    port = chain.opencode_ports[0]

    response = gateway.get(f"/api/opencode/{port}/sessionz")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert gateway.get("/elsewhere").status_code == 404


def test_wrong_method_is_json_405(api: httpx.Client) -> None:
    response = api.put("/sessions")

    assert response.status_code == 405
    assert response.json()["statusCode"] == 405


def test_two_sessions_prompt_at_once(api: httpx.Client) -> None:
    sessions = [create(api, title=f"parallel {n}")["id"] for n in range(2)]

    with ThreadPoolExecutor(2) as pool:
        replies = list(
            pool.map(
                lambda pair: prompt(api, pair[0], pair[1]).json(),
                zip(
                    sessions,
                    ["alpha [[delay 0.05]]", "beta [[delay 0.05]]"],
                    strict=True,
                ),
            )
        )

    assert "alpha" in replies[0]["response"]
    assert "beta" in replies[1]["response"]


def test_two_prompts_to_one_session_get_own_replies(api: httpx.Client) -> None:
    session = create(api, title="one session, two prompts")["id"]

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(prompt, api, session, "first prompt [[delay 0.05]]")
        second = pool.submit(prompt, api, session, "second prompt [[delay 0.05]]")
        replies = [first.result().json(), second.result().json()]

    assert "first prompt" in replies[0]["response"]
    assert "second prompt" in replies[1]["response"]
    assert replies[0]["messageId"] != replies[1]["messageId"]
    messages = api.get(f"/session/{session}/messages").json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"] * 2


def test_more_than_a_hundred_sessions(api: httpx.Client) -> None:
    before = len(api.get("/sessions").json())
    created = [
        create(api, title=f"bulk {n}")["id"] for n in range(max(0, 105 - before))
    ]

    sessions = api.get("/sessions").json()

    assert len(sessions) >= 105
    assert set(created) <= {session["id"] for session in sessions}


@pytest.fixture
def listener() -> Iterator[tuple[int, list[object]]]:
    """A loopback port that records every connection made to it."""
    accepted: list[object] = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                continue
            accepted.append(connection)
            connection.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join()
    server.close()


def test_port_not_allowed_is_never_contacted(
    gateway: httpx.Client, listener: tuple[int, list[object]]
) -> None:
    port, accepted = listener

    responses = [
        gateway.get(f"/api/opencode/{port}/sessions"),
        gateway.post(f"/api/opencode/{port}/session/create", json={}),
        gateway.post(f"/api/opencode/{port}/session/ses_x/prompt", json={"text": "hi"}),
    ]

    for response in responses:
        assert_error(response, 403, "Port not allowed")
    assert accepted == []


async def test_unreachable_instance_is_502() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        unused_tcp_port = probe.getsockname()[1]
    app = create_app(GatewayConfig(allowed_ports=frozenset({unused_tcp_port})))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        response = await client.get(f"/api/opencode/{unused_tcp_port}/sessions")

    assert response.status_code == 502
    assert response.json()["statusCode"] == 502
    assert str(unused_tcp_port) in response.json()["message"]
