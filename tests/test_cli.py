"""The `opencode-notebook` command's checks before it starts anything."""

from __future__ import annotations

import pytest

from opencode_notebook.cli import main


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::"])
def test_serve_public_address_needs_token(
    host: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENCODE_NOTEBOOK_TOKEN", raising=False)

    status = main(["serve", "--host", host, "--port", "3999"])

    assert status == 2
    error = capsys.readouterr().err
    assert f"Binding {host} exposes the gateway" in error
    assert "--token" in error
    assert error.count("\n") == 1


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_serve_invalid_port(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["serve", "--port", port])

    assert status == 2
    assert f"Invalid --port {port}" in capsys.readouterr().err


def test_serve_invalid_allowed_port(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["serve", "--allow-port", "3100-abc"])

    assert status == 2
    assert "Invalid port or range '3100-abc'" in capsys.readouterr().err
