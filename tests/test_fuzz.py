"""
The gateway's OpenAPI document, and a schemathesis run against it.

`test_fuzz_run_finds_nothing` runs `benchmarks/fuzz_gateway.py` at a size CI can
afford (about 45 s, including its own local chain); the script runs longer with
larger limits. The other tests pin what earlier fuzz runs found.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis

from opencode_notebook.gateway import GatewayConfig, create_app
from opencode_notebook.gateway.openapi import _NOT_BLANK, build_document

FUZZ_SCRIPT = Path(__file__).parents[1] / "benchmarks" / "fuzz_gateway.py"
CONTRACT_500 = {"Invalid port", "Session ID required", "Message text required"}


def app_client(config: GatewayConfig) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(config))
    return httpx.AsyncClient(transport=transport, base_url="http://gateway")


async def fetch_document(config: GatewayConfig) -> dict[str, Any]:
    async with app_client(config) as client:
        response = await client.get(
            "/api/openapi.json", headers={"Authorization": f"Bearer {config.token}"}
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document: dict[str, Any] = response.json()
    return document


def operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        f"{method.upper()} {path}": operation
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    }


def error_messages(operation: dict[str, Any], status: str) -> list[str] | None:
    schema = operation["responses"][status]["content"]["application/json"]["schema"]
    assert schema["allOf"][0] == {"$ref": "#/components/schemas/Error"}
    properties = schema["allOf"][1]["properties"]
    assert properties["statusCode"] == {"const": int(status)}
    message = properties.get("message")
    return None if message is None else list(message["enum"])


# The document


async def test_document_lists_every_operation() -> None:
    document = await fetch_document(GatewayConfig(allowed_ports=frozenset({3100})))

    assert document["openapi"] == "3.1.0"
    assert set(operations(document)) == {
        "GET /api/opencode/{port}/sessions",
        "POST /api/opencode/{port}/session/create",
        "GET /api/opencode/{port}/session/{id}",
        "DELETE /api/opencode/{port}/session/{id}",
        "GET /api/opencode/{port}/session/{id}/messages",
        "POST /api/opencode/{port}/session/{id}/prompt",
        "POST /api/opencode/{port}/session/{id}/prompt/stream",
        "POST /api/opencode/{port}/session/{id}/abort",
        "GET /api/health",
        "GET /api/openapi.json",
    }
    assert "securitySchemes" not in document["components"]


async def test_document_has_every_error_row() -> None:
    document = await fetch_document(GatewayConfig(allowed_ports=frozenset({3100})))
    found = operations(document)

    for name, operation in found.items():
        if "{port}" not in name:
            continue
        responses = operation["responses"]
        assert {"200", "403", "500", "502", "504"} <= set(responses), name
        assert "401" not in responses, name
        assert error_messages(operation, "403") == ["Port not allowed"]
        assert set(error_messages(operation, "500") or []) <= CONTRACT_500
    prompt = found["POST /api/opencode/{port}/session/{id}/prompt"]
    assert set(error_messages(prompt, "500") or []) == CONTRACT_500
    assert {"400", "404", "413"} <= set(prompt["responses"])
    listing = found["GET /api/opencode/{port}/sessions"]
    assert error_messages(listing, "500") == ["Invalid port"]
    assert "404" not in listing["responses"]
    create = found["POST /api/opencode/{port}/session/create"]
    assert error_messages(create, "404") == ["Session not found"]


async def test_document_with_token_requires_bearer() -> None:
    config = GatewayConfig(allowed_ports=frozenset({3100}), token="t0k")

    document = await fetch_document(config)

    assert document["components"]["securitySchemes"] == {
        "bearerAuth": {"type": "http", "scheme": "bearer"}
    }
    assert document["security"] == [{"bearerAuth": []}]
    for name, operation in operations(document).items():
        assert "401" in operation["responses"], name


def test_document_loads_in_schemathesis() -> None:
    document = build_document(GatewayConfig(allowed_ports=frozenset({3100, 3101})))

    schema = schemathesis.openapi.from_dict(document)
    port = document["paths"]["/api/opencode/{port}/sessions"]["get"]["parameters"][0]

    assert len(list(schema.get_all_operations())) == 10
    assert port["schema"]["examples"] == [3100, 3101]


def test_not_blank_pattern_matches_gateway_rule() -> None:
    pattern = re.compile(_NOT_BLANK)

    for code in range(0x3100):
        character = chr(code)
        assert (pattern.search(character) is None) == (not character.strip()), code
    assert pattern.search("\ufeff")
    assert not pattern.search("\x1c\x85\u3000")


# What fuzzing found


async def test_session_id_with_line_break() -> None:
    config = GatewayConfig(allowed_ports=frozenset({3100}))

    async with app_client(config) as client:
        blank = await client.get("/api/opencode/3100/session/%0A/messages")
        inner = await client.get("/api/opencode/3100/session/x%0Ay")

    assert blank.json() == {"statusCode": 500, "message": "Session ID required"}
    assert inner.json() == {"statusCode": 404, "message": "Session not found"}


async def test_session_id_with_slash_is_one_id() -> None:
    config = GatewayConfig(allowed_ports=frozenset({3100}))

    async with app_client(config) as client:
        response = await client.post(
            "/api/opencode/3100/session/a%2Fb/prompt", json={"text": "hi"}
        )

    assert response.json() == {"statusCode": 404, "message": "Session not found"}


async def test_lone_surrogate_is_400() -> None:
    config = GatewayConfig(allowed_ports=frozenset({3100}))

    async with app_client(config) as client:
        response = await client.post(
            "/api/opencode/3100/session/create",
            content=b'{"title": "t\\udb67"}',
        )

    assert response.status_code == 400
    assert response.json() == {
        "statusCode": 400,
        "message": "Invalid JSON body: '\\udb67' is a lone surrogate, not valid "
        "Unicode",
    }


@pytest.mark.chain
def test_fuzz_run_finds_nothing() -> None:
    command = [sys.executable, str(FUZZ_SCRIPT), "--max-examples", "8"]
    command += ["--max-time", "30", "--seed", "20261204"]

    finished = subprocess.run(command, capture_output=True, text=True, timeout=240)
    output = finished.stdout + finished.stderr
    statuses = {
        int(code): int(count)
        for code, count in re.findall(r"HTTP (\d{3}): (\d+)", output)
    }

    assert finished.returncode == 0, output[-6000:]
    assert sum(statuses.values()) >= 200, output[-3000:]
    assert {200, 404, 500} <= set(statuses), statuses
