"""`opencode-notebook demo`: the summary, failing cells, and a whole run end to end."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from opencode_notebook.cli import main
from opencode_notebook.demo import (
    DEMO_NOTEBOOKS,
    DemoResult,
    NotebookRun,
    find_notebooks,
    format_summary,
    run_demo,
)

ROOT = Path(__file__).resolve().parent.parent
CHAIN_VARIABLES = ("OPENCODE_NOTEBOOK_URL", "OPENCODE_PORT", "OPENCODE_URL")


def write_notebook(path: Path, *sources: str) -> None:
    notebook = new_notebook(cells=[new_code_cell(source) for source in sources])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(notebook, path)


# Finding the notebooks and the summary


def test_find_notebooks_in_project() -> None:
    assert find_notebooks() == ROOT / "notebooks"


def test_find_notebooks_missing_names_folder(tmp_path: Path) -> None:
    write_notebook(tmp_path / "quickstart.ipynb", "1")
    with pytest.raises(FileNotFoundError) as excinfo:
        find_notebooks(tmp_path)
    message = str(excinfo.value)
    assert "quickstart.ipynb, conversation_analysis.ipynb" in message
    assert str(tmp_path) in message
    assert message.endswith("pass --notebooks PATH.")


def test_cli_demo_without_notebooks_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["demo", "--notebooks", str(tmp_path), "--output", str(tmp_path)])
    captured = capsys.readouterr()
    assert status == 1
    assert captured.err.startswith("opencode-notebook demo: Cannot find the notebooks")
    assert captured.out == ""


def test_format_summary_lists_runs_and_totals(tmp_path: Path) -> None:
    runs = [
        NotebookRun(
            "a.ipynb", tmp_path / "a.ipynb", tmp_path / "a.html", 4, 1.25, None
        ),
        NotebookRun(
            "b.ipynb",
            tmp_path / "b.ipynb",
            tmp_path / "b.html",
            3,
            0.5,
            "cell 2: ValueError: boom",
        ),
    ]
    result = DemoResult(runs, 3, 12, 1, 4, 9.87)
    lines = format_summary(result).splitlines()
    assert result.failed
    assert lines[0] == "a.ipynb: ok (4 cells, 1.2 s)"
    assert lines[1] == f"  executed notebook: {tmp_path / 'a.ipynb'}"
    assert lines[2] == f"  HTML:              {tmp_path / 'a.html'}"
    assert lines[3] == "b.ipynb: FAILED at cell 2: ValueError: boom (3 cells, 0.5 s)"
    assert (
        lines[6] == "Sessions created: 3, with 12 messages, on a real OpenCode server."
    )
    assert lines[7] == "Sessions left on the server: 1, with 4 messages."
    assert lines[8] == "Demo 1 of 2 notebooks failed, 9.9 s in all."


def test_format_summary_without_event_counts(tmp_path: Path) -> None:
    run = NotebookRun("a.ipynb", tmp_path / "a.ipynb", tmp_path / "a.html", 1, 1, None)
    result = DemoResult([run], None, None, 0, 0, 2.0)
    summary = format_summary(result)
    assert not result.failed
    assert (
        "Sessions created: unknown (OpenCode's event stream was not read)." in summary
    )
    assert summary.endswith("Demo ok, 2.0 s in all.")


# Runs on the local chain


@pytest.mark.chain
def test_demo_failing_notebooks_exit_nonzero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in CHAIN_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(
        folder / "broken.ipynb",
        "import os, sys\n"
        f"assert sys.executable == {sys.executable!r}\n"
        'os.environ["OPENCODE_NOTEBOOK_URL"]',
        'raise ValueError("boom")',
        "never = True",
    )
    write_notebook(folder / "dies.ipynb", "import os\nos._exit(3)", "never = True")
    out = io.StringIO()
    status = run_demo(
        tmp_path / "build", ("broken.ipynb", "dies.ipynb"), folder, out=out
    )

    output = out.getvalue()
    assert status == 1
    assert "broken.ipynb: FAILED at cell 2: ValueError: boom (3 cells, " in output
    assert "dies.ipynb: FAILED at DeadKernelError: " in output
    assert "Demo 2 of 2 notebooks failed, " in output
    assert "Sessions created: 0, with 0 messages" in output
    executed = nbformat.read(tmp_path / "build" / "broken.ipynb", as_version=4)
    first, second, third = executed.cells
    url = first.outputs[0]["data"]["text/plain"]
    assert re.fullmatch(r"'http://127\.0\.0\.1:\d+'", url)
    assert second.outputs[0]["output_type"] == "error"
    assert third.outputs == []
    assert "boom" in (tmp_path / "build" / "broken.html").read_text(encoding="utf-8")
    assert (tmp_path / "build" / "dies.html").is_file()
    for variable in CHAIN_VARIABLES:
        assert variable not in os.environ


@pytest.mark.chain
def test_demo_end_to_end(tmp_path: Path) -> None:
    output_dir = tmp_path / "demo"
    environment = {
        key: value for key, value in os.environ.items() if key not in CHAIN_VARIABLES
    }
    command = [sys.executable, "-m", "opencode_notebook.cli", "demo"]
    result = subprocess.run(
        [*command, "--output", str(output_dir)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "quickstart.ipynb: ok (11 cells, " in result.stdout
    assert "conversation_analysis.ipynb: ok (15 cells, " in result.stdout
    # The quickstart makes a session and a fork (6 messages with the fork's
    # copies) and deletes both; the analysis makes 5 sessions with 39 messages.
    assert "Sessions created: 7, with 45 messages" in result.stdout
    assert "Sessions left on the server: 5, with 39 messages." in result.stdout
    assert re.search(r"^Demo ok, \d+\.\d s in all\.$", result.stdout, re.MULTILINE)

    for name in DEMO_NOTEBOOKS:
        executed = json.loads((output_dir / name).read_text(encoding="utf-8"))
        outputs = [o for c in executed["cells"] for o in c.get("outputs", [])]
        assert not [o for o in outputs if o["output_type"] == "error"]
        html = (output_dir / name).with_suffix(".html").read_text(encoding="utf-8")
        assert re.search(r"<script[^>]*src=\"https?:", html) is None

    quickstart = (output_dir / "quickstart.html").read_text(encoding="utf-8")
    assert "Echo: Which file should I read first in a new project?" in quickstart
    assert "Quickstart, second try" in quickstart
    analysis = (output_dir / "conversation_analysis.html").read_text(encoding="utf-8")
    assert "Pipeline design: Spark streaming" in analysis
    assert "Done: hi" in analysis
    assert analysis.count('src="data:image/png;base64,') == 3
