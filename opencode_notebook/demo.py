"""
The demo: run the example notebooks against a fresh local chain.

`opencode-notebook demo` starts the offline model, a real OpenCode server and the
gateway, executes the notebooks headlessly with a Jupyter kernel, and writes each
executed notebook and an HTML rendering of it under the output folder. With
`--interactive` it leaves the chain running and starts JupyterLab instead.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEMO_NOTEBOOKS", "NotebookRun", "find_notebooks", "run_demo"]

logger = logging.getLogger("opencode_notebook.demo")

DEMO_NOTEBOOKS = ("quickstart.ipynb", "conversation_analysis.ipynb")

# A notebook cell may prompt the agent; the offline model answers in milliseconds,
# so a cell that takes longer than this is stuck.
_CELL_TIMEOUT = 300


@dataclass(frozen=True)
class NotebookRun:
    """The outcome of executing one notebook."""

    name: str
    executed: Path
    html: Path | None
    seconds: float
    error: str | None


def find_notebooks(folder: Path | None = None) -> Path:
    """Return the folder holding the example notebooks."""
    candidates = [folder] if folder else []
    candidates += [Path.cwd() / "notebooks", Path(__file__).parent.parent / "notebooks"]
    for candidate in candidates:
        if candidate and (candidate / DEMO_NOTEBOOKS[0]).is_file():
            return candidate
    raise FileNotFoundError(
        "Cannot find the example notebooks: run the demo from the project folder "
        "or pass --notebooks PATH."
    )


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _execute(source: Path, output_dir: Path) -> NotebookRun:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from nbconvert import HTMLExporter

    notebook = nbformat.read(source, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=_CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(source.parent)}},
    )
    started = time.monotonic()
    error = None
    try:
        client.execute()
    except CellExecutionError as exc:
        error = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
    seconds = time.monotonic() - started
    executed = output_dir / source.name
    nbformat.write(notebook, executed)
    html_path = executed.with_suffix(".html")
    body, _ = HTMLExporter().from_notebook_node(notebook)
    html_path.write_text(body, encoding="utf-8")
    return NotebookRun(source.name, executed, html_path, seconds, error)


def _count(chain_url: str, port: int) -> tuple[int, int]:
    from opencode_notebook.client import OpenCodeClient

    with OpenCodeClient(chain_url, port=port) as client:
        sessions = client.list_sessions()
        messages = sum(len(client.list_messages(s.id)) for s in sessions)
    return len(sessions), messages


def run_demo(
    output_dir: Path,
    notebooks: Sequence[str] = DEMO_NOTEBOOKS,
    notebook_dir: Path | None = None,
    interactive: bool = False,
) -> int:
    """Run the demo; return the exit status (non-zero when a cell failed)."""
    from opencode_notebook.stack import LocalChain

    folder = find_notebooks(notebook_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with LocalChain() as chain:
        assert chain.gateway_url is not None
        settings = {
            "OPENCODE_NOTEBOOK_URL": chain.gateway_url,
            "OPENCODE_PORT": str(chain.opencode_ports[0]),
            "OPENCODE_URL": chain.opencode_urls[0],
        }
        print(f"Local chain up: gateway {chain.api_url()}", flush=True)
        if interactive:
            return _run_jupyterlab(folder, settings)
        runs = []
        with _environment(settings):
            for name in notebooks:
                print(f"Running {name} ...", flush=True)
                runs.append(_execute(folder / name, output_dir))
        sessions, messages = _count(chain.gateway_url, chain.opencode_ports[0])
    _print_summary(runs, sessions, messages, time.monotonic() - started)
    return 1 if any(run.error for run in runs) else 0


def _print_summary(
    runs: list[NotebookRun], sessions: int, messages: int, seconds: float
) -> None:
    print()
    for run in runs:
        status = f"FAILED: {run.error}" if run.error else "ok"
        print(f"{run.name}: {status} ({run.seconds:.1f} s)")
        print(f"  executed notebook: {run.executed}")
        print(f"  HTML:              {run.html}")
    print(
        f"{sessions} sessions and {messages} messages on the real OpenCode server, "
        f"{seconds:.1f} s in all."
    )


def _run_jupyterlab(folder: Path, settings: dict[str, str]) -> int:
    environment = {**os.environ, **settings}
    print("Starting JupyterLab; press Ctrl-C to stop it and the chain.", flush=True)
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser"]
    command += ["--ServerApp.ip=127.0.0.1", f"--ServerApp.root_dir={folder}"]
    process = subprocess.Popen(command, env=environment)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        process.wait(timeout=30)
        return 0
