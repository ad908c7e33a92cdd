"""
The example notebooks: their stored outputs, the shipped sanitising rules, and an
nbval run of every notebook against a fresh local chain.

nbval runs in a subprocess, so that its kernels and its pytest configuration stay
apart from this run, with the chain's URLs in the environment as `opencode-notebook
demo` sets them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nbval.plugin import get_sanitize_patterns

from opencode_notebook.stack import LocalChain

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
SANITIZE_CONFIG = NOTEBOOK_DIR / "nbval_sanitize.cfg"
NOTEBOOKS = ("quickstart.ipynb", "conversation_analysis.ipynb", "chat_panel.ipynb")
NBVAL_TIMEOUT = 280


def sanitize(text: str) -> str:
    """Apply the shipped sanitising rules in order, as nbval does."""
    for pattern, replacement in get_sanitize_patterns(SANITIZE_CONFIG.read_text()):
        text = re.sub(pattern, replacement, text)
    return text


def code_cells(name: str) -> list[dict[str, Any]]:
    notebook = json.loads((NOTEBOOK_DIR / name).read_text(encoding="utf-8"))
    return [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]


def cell_source(cell: dict[str, Any]) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


# The sanitising rules


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            "ses_dbe2a65b5ffe1CELIeTf9SxBAG", "SESSION-ID", id="opencode-session"
        ),
        pytest.param("'sess_abc123'", "'SESSION-ID'", id="contract-session"),
        pytest.param("msg_241a3be09ffeZ1", "MESSAGE-ID", id="message"),
        pytest.param("2026-03-03T10:00:00Z", "TIMESTAMP", id="iso-z"),
        pytest.param("2026-03-03T10:00:00.000Z", "TIMESTAMP", id="iso-millis"),
        pytest.param("2026-03-03T10:00:00.123456+02:00", "TIMESTAMP", id="offset"),
        pytest.param("2026-03-03T10:00:00", "TIMESTAMP", id="naive"),
        pytest.param("2026-12-04 15:51:25.963000+00:00", "TIMESTAMP", id="pandas"),
        pytest.param("2026-12-04 16:14:07.434+00:00", "TIMESTAMP", id="pandas-ms"),
        pytest.param("Timestamp('2026-12-04 16:14:07+0000')", "Timestamp('TIMESTAMP')"),
        pytest.param(
            "created_at=datetime.datetime(2026, 12, 4, 16, 14, 7, 434000, "
            "tzinfo=datetime.timezone.utc),",
            "created_at=TIMESTAMP,",
            id="datetime-repr",
        ),
        pytest.param("0 days 00:00:01.075000", "DURATION", id="timedelta"),
        pytest.param("-1 days +23:59:59.500000", "DURATION", id="negative-timedelta"),
        pytest.param("took 1.25 s", "took DURATION", id="seconds"),
        pytest.param("took 120 ms.", "took DURATION.", id="milliseconds"),
        pytest.param("in 0.5 seconds", "in DURATION", id="seconds-word"),
        pytest.param(
            "the gateway at http://127.0.0.1:37677 (OpenCode port 53427)",
            "the gateway at http://127.0.0.1:PORT (OpenCode port PORT)",
            id="gateway-url",
        ),
        pytest.param("http://localhost:3000/x", "http://127.0.0.1:PORT/x", id="local"),
        pytest.param("/api/opencode/53427/sessions", "/api/opencode/PORT/sessions"),
        pytest.param(
            "Connected to OpenCode at http://127.0.0.1:4096: 12 sessions.",
            "Connected to OpenCode at http://127.0.0.1:PORT: N sessions.",
            id="connect-count",
        ),
        pytest.param("<Axes at 0x7f3a2c1d0e50>", "<Axes at 0xADDRESS>", id="address"),
        pytest.param("0   user    hi", "0 user hi", id="padding"),
    ],
)
def test_sanitize_replaces_unstable_text(raw: str, expected: str) -> None:
    assert sanitize(raw) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Echo: Which file should I read first?",
        "Listed 3 sessions.",
        "('Quickstart', 'Quickstart, second try', 2)",
        "output_tokens 17",
        "cost 0.0",
        "2026-03-03",
        "3 steps",
    ],
)
def test_sanitize_keeps_stable_text(text: str) -> None:
    assert sanitize(text) == text


def test_sanitize_makes_two_runs_equal() -> None:
    first = (
        "Session(id='ses_dbe2a65b5ffe1CELIeTf9SxBAG', title='Quickstart', "
        "created_at=datetime.datetime(2026, 12, 4, 16, 14, 7, 434000, "
        "tzinfo=datetime.timezone.utc), parent_id=None)\n"
        "1  assistant  Echo: hi  0 days 00:00:01.075000"
    )
    second = (
        "Session(id='ses_dbe29f0c3ffeQz8YkG2l1VnM0B', title='Quickstart', "
        "created_at=datetime.datetime(2026, 12, 5, 9, 2, 11, tzinfo=datetime.timezone"
        ".utc), parent_id=None)\n"
        "1  assistant  Echo: hi        0 days 00:00:00.950000"
    )
    assert sanitize(first) == sanitize(second)
    assert "Quickstart" in sanitize(first)


# The stored outputs


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_stored_outputs_one_per_cell(name: str) -> None:
    for index, cell in enumerate(code_cells(name)):
        source = cell_source(cell)
        outputs = cell["outputs"]
        kinds = [output["output_type"] for output in outputs]
        streams = [output.get("name") for output in outputs]
        assert "error" not in kinds, f"cell {index} of {name} stored an error"
        assert "stderr" not in streams, f"cell {index} of {name} wrote to stderr"
        assert len(kinds) <= 1, f"cell {index} of {name} has {len(kinds)} outputs"
        if source.startswith(("%opencode", "%%opencode")):
            assert len(kinds) == 1, f"magic cell {index} of {name} shows nothing"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_stored_outputs_come_from_a_run(name: str) -> None:
    cells = code_cells(name)
    counts = [cell["execution_count"] for cell in cells]
    assert counts == list(range(1, len(cells) + 1))


# nbval against a fresh local chain


@pytest.fixture(scope="module")
def notebook_chain() -> Iterator[LocalChain]:
    """A chain of the notebooks' own, so no other test's sessions show in them."""
    with LocalChain() as chain:
        yield chain


def run_nbval(chain: LocalChain, *names: str) -> subprocess.CompletedProcess[str]:
    """Run `pytest --nbval` on the notebooks `names`, pointed at `chain`."""
    assert chain.gateway_url is not None
    environment = dict(os.environ)
    for variable in ("OPENCODE_NOTEBOOK_TOKEN", "OPENCODE_SERVER_PASSWORD"):
        environment.pop(variable, None)
    environment.update(
        OPENCODE_NOTEBOOK_URL=chain.gateway_url,
        OPENCODE_PORT=str(chain.opencode_ports[0]),
        OPENCODE_URL=chain.opencode_urls[0],
    )
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
    command += ["--nbval", "--nbval-current-env"]
    command += ["--nbval-sanitize-with", str(SANITIZE_CONFIG)]
    command += [str(NOTEBOOK_DIR / name) for name in names]
    return subprocess.run(
        command,
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=NBVAL_TIMEOUT,
        check=False,
    )


def nbval_report(result: subprocess.CompletedProcess[str]) -> str:
    return f"nbval exited with {result.returncode}:\n{result.stdout[-6000:]}"


@pytest.mark.chain
def test_notebooks_match_stored_outputs(notebook_chain: LocalChain) -> None:
    result = run_nbval(notebook_chain, *NOTEBOOKS)
    assert result.returncode == 0, nbval_report(result)
    assert " passed" in result.stdout


@pytest.mark.chain
def test_quickstart_passes_again(notebook_chain: LocalChain) -> None:
    # A second run meets new ids and times, and the server that the first run
    # left behind.
    result = run_nbval(notebook_chain, NOTEBOOKS[0])
    assert result.returncode == 0, nbval_report(result)
