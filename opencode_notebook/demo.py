"""
The demo: run the example notebooks against a fresh local chain.

`opencode-notebook demo` starts the offline model, a real OpenCode server and the
gateway. It executes the notebooks headlessly, in a kernel of the Python that runs
the demo, and writes each executed notebook and an HTML rendering of it under the
output folder. It reports progress and a summary to a text stream, which is the
command's output. With `--interactive` it leaves the chain running and starts
JupyterLab on the notebooks instead.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx

__all__ = [
    "DEMO_NOTEBOOKS",
    "DemoResult",
    "NotebookRun",
    "execute_notebook",
    "find_notebooks",
    "format_summary",
    "run_demo",
]

logger = logging.getLogger("opencode_notebook")

DEMO_NOTEBOOKS = ("quickstart.ipynb", "conversation_analysis.ipynb")

# The offline model replies in milliseconds, and the slowest demo cell takes about
# 15 s, so a cell still running after this is stuck.
_CELL_TIMEOUT = 300
# Seconds to wait for OpenCode's event stream to open before the notebooks run.
_EVENTS_TIMEOUT = 10.0
_DEMO_EXTRA_HINT = "pip install 'opencode-notebook[demo]'"


@dataclass(frozen=True)
class NotebookRun:
    """The outcome of executing one notebook."""

    name: str
    executed: Path
    html: Path
    cells: int
    seconds: float
    error: str | None


@dataclass(frozen=True)
class DemoResult:
    """The outcome of a demo run.

    `sessions_created` and `messages_created` count what OpenCode reported
    creating during the run, including sessions the notebooks deleted again.
    They are `None` when its event stream could not be read.
    """

    runs: list[NotebookRun]
    sessions_created: int | None
    messages_created: int | None
    sessions_left: int
    messages_left: int
    seconds: float

    @property
    def failed(self) -> bool:
        """Whether a cell of any notebook failed."""
        return any(run.error is not None for run in self.runs)


def find_notebooks(
    folder: Path | None = None, names: Sequence[str] = DEMO_NOTEBOOKS
) -> Path:
    """
    Return the folder holding the notebooks `names`.

    Without `folder`, look in `notebooks/` of the current folder, then of the
    source checkout this package runs from.
    """
    if folder is not None:
        candidates = [folder]
    else:
        candidates = [
            Path.cwd() / "notebooks",
            Path(__file__).parent.parent / "notebooks",
        ]
    for candidate in candidates:
        if all((candidate / name).is_file() for name in names):
            return candidate
    where = " or ".join(str(candidate) for candidate in candidates)
    raise FileNotFoundError(
        f"Cannot find the notebooks {', '.join(names)} in {where}: run the demo "
        "from the project folder or pass --notebooks PATH."
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


# Executing notebooks ----------------------------------------------------------


def _kernel_manager_class() -> type[Any]:
    """Return a kernel manager class that starts IPython in this very Python."""
    import ipykernel.kernelspec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class CurrentPythonSpecs(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> Any:
            return self.kernel_spec_class(
                resource_dir=ipykernel.kernelspec.RESOURCES,
                **ipykernel.kernelspec.get_kernel_dict(),
            )

    class CurrentPythonKernelManager(AsyncKernelManager):
        # A `python3` kernelspec elsewhere on the Jupyter path could start another
        # Python, one without this package, so every kernel name means this one.
        @default("kernel_spec_manager")
        def _current_python_specs(self) -> KernelSpecManager:
            return CurrentPythonSpecs(data_dir=self.data_dir)

    return CurrentPythonKernelManager


def _first_error(notebook: Any) -> str | None:
    """Describe the first error output: its cell number, name and value."""
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for number, cell in enumerate(code_cells, start=1):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return f"cell {number}: {output.get('ename')}: {output.get('evalue')}"
    return None


def execute_notebook(source: Path, output_dir: Path) -> NotebookRun:
    """
    Execute the notebook `source` and write it and its HTML to `output_dir`.

    A failing cell stops the run. The notebook is still written, with the
    outputs up to the failure, and `NotebookRun.error` names the cell.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellControlSignal, CellExecutionError
    from nbconvert import HTMLExporter

    notebook = nbformat.read(source, as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        kernel_manager_class=_kernel_manager_class(),
        timeout=_CELL_TIMEOUT,
        resources={"metadata": {"path": str(source.parent)}},
    )
    started = time.monotonic()
    error = None
    try:
        client.execute()
    except CellExecutionError:
        error = _first_error(notebook) or "a cell failed"
    except (CellControlSignal, RuntimeError, TimeoutError) as exc:
        # A cell timeout is a CellControlSignal. nbclient raises RuntimeError
        # when the kernel does not start and DeadKernelError, one too, when it
        # dies.
        error = f"{type(exc).__name__}: {exc}"
    seconds = time.monotonic() - started
    if error is not None:
        logger.error("Notebook %s failed after %.1f s: %s", source.name, seconds, error)
    executed = output_dir / source.name
    nbformat.write(notebook, executed)
    html = executed.with_suffix(".html")
    # The notebooks use no math and no widgets, so the page needs neither MathJax
    # nor require.js. Without their CDN URLs it opens offline, with no requests.
    exporter = HTMLExporter(mathjax_url="", require_js_url="")
    body, _ = exporter.from_notebook_node(notebook)
    html.write_text(body, encoding="utf-8")
    cells = sum(1 for cell in notebook.cells if cell.cell_type == "code")
    return NotebookRun(source.name, executed, html, cells, seconds, error)


# Counting what the notebooks create -------------------------------------------


class _EventCounter:
    """
    Count the sessions and messages an OpenCode server reports creating.

    It reads `GET /event` in a daemon thread until the server closes the stream,
    as it does when it stops.
    """

    def __init__(self, opencode_url: str) -> None:
        self._url = f"{opencode_url}/event"
        self._sessions: set[str] = set()
        self._messages: set[str] = set()
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._thread = threading.Thread(
            target=self._read, name="opencode-demo-events", daemon=True
        )

    def start(self) -> bool:
        """Start reading; return whether the stream opened in time."""
        self._thread.start()
        if self._connected.wait(_EVENTS_TIMEOUT):
            return True
        logger.warning(
            "OpenCode's event stream at %s did not open within %.0f s; the demo "
            "summary will not count the sessions created.",
            self._url,
            _EVENTS_TIMEOUT,
        )
        return False

    def counts(self) -> tuple[int, int]:
        """Return the sessions and messages created so far."""
        with self._lock:
            return len(self._sessions), len(self._messages)

    def _read(self) -> None:
        from opencode_notebook.streaming import iter_payloads

        # OpenCode sends a heartbeat every 10 s, so the read never times out.
        timeout = httpx.Timeout(5.0, read=None)
        try:
            with (
                httpx.Client(timeout=timeout) as client,
                client.stream("GET", self._url) as response,
            ):
                response.raise_for_status()
                for payload in iter_payloads(response):
                    self._connected.set()
                    self._count(payload)
        except httpx.HTTPError as exc:
            # The stream ends with an error when the server stops under it.
            logger.debug("OpenCode's event stream at %s ended: %s", self._url, exc)

    def _count(self, payload: dict[str, Any]) -> None:
        kind = payload.get("type")
        properties = payload.get("properties")
        info = properties.get("info") if isinstance(properties, dict) else None
        if not isinstance(info, dict) or not isinstance(info.get("id"), str):
            return
        with self._lock:
            if kind == "session.created":
                self._sessions.add(info["id"])
            elif kind == "message.updated":
                self._messages.add(info["id"])


def _count_left(gateway_url: str, port: int) -> tuple[int, int]:
    from opencode_notebook.client import OpenCodeClient

    with OpenCodeClient(gateway_url, port=port) as client:
        sessions = client.list_sessions()
        messages = sum(len(client.list_messages(s.id)) for s in sessions)
    return len(sessions), messages


# The demo ---------------------------------------------------------------------


def _check_demo_packages() -> None:
    try:
        import ipykernel  # noqa: F401
        import nbclient  # noqa: F401
        import nbconvert  # noqa: F401
        import nbformat  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"The demo needs {exc.name}, which is not installed: {_DEMO_EXTRA_HINT}"
        ) from exc


def run_demo(
    output_dir: Path,
    notebooks: Sequence[str] = DEMO_NOTEBOOKS,
    notebook_dir: Path | None = None,
    interactive: bool = False,
    *,
    out: TextIO | None = None,
) -> int:
    """
    Run the demo, write its progress and summary to `out`, and return the exit
    status: 0 when every cell ran, 1 when one failed.

    `out` defaults to standard output. With `interactive`, start JupyterLab on
    the notebook folder instead and return its exit status.
    """
    from opencode_notebook.stack import LocalChain

    stream = out if out is not None else sys.stdout
    _check_demo_packages()
    folder = find_notebooks(notebook_dir, notebooks)
    started = time.monotonic()
    with LocalChain() as chain:
        assert chain.gateway_url is not None, "the chain starts with a gateway"
        port = chain.opencode_ports[0]
        settings = {
            "OPENCODE_NOTEBOOK_URL": chain.gateway_url,
            "OPENCODE_PORT": str(port),
            "OPENCODE_URL": chain.opencode_urls[0],
        }
        _write(stream, f"Local chain up: Sessions API at {chain.api_url()}")
        if interactive:
            return _run_jupyterlab(folder, settings, stream)
        output_dir.mkdir(parents=True, exist_ok=True)
        counter = _EventCounter(chain.opencode_urls[0])
        counting = counter.start()
        runs = []
        with _environment(settings):
            for name in notebooks:
                _write(stream, f"Running {name} ...")
                runs.append(execute_notebook(folder / name, output_dir))
        created = counter.counts() if counting else (None, None)
        sessions_left, messages_left = _count_left(chain.gateway_url, port)
    result = DemoResult(
        runs=runs,
        sessions_created=created[0],
        messages_created=created[1],
        sessions_left=sessions_left,
        messages_left=messages_left,
        seconds=time.monotonic() - started,
    )
    _write(stream, "\n" + format_summary(result))
    return 1 if result.failed else 0


def format_summary(result: DemoResult) -> str:
    """Describe a demo run: each notebook's outcome and files, then the totals."""
    lines = []
    for run in result.runs:
        status = f"FAILED at {run.error}" if run.error else "ok"
        lines.append(f"{run.name}: {status} ({run.cells} cells, {run.seconds:.1f} s)")
        lines.append(f"  executed notebook: {run.executed}")
        lines.append(f"  HTML:              {run.html}")
    if result.sessions_created is None:
        created = "Sessions created: unknown (OpenCode's event stream was not read)."
    else:
        created = (
            f"Sessions created: {result.sessions_created}, with "
            f"{result.messages_created} messages, on a real OpenCode server."
        )
    lines.append(created)
    lines.append(
        f"Sessions left on the server: {result.sessions_left}, with "
        f"{result.messages_left} messages."
    )
    failed = sum(1 for run in result.runs if run.error)
    outcome = f"{failed} of {len(result.runs)} notebooks failed" if failed else "ok"
    lines.append(f"Demo {outcome}, {result.seconds:.1f} s in all.")
    return "\n".join(lines)


def _write(stream: TextIO, text: str) -> None:
    stream.write(text + "\n")
    stream.flush()


def _run_jupyterlab(folder: Path, settings: dict[str, str], stream: TextIO) -> int:
    environment = {**os.environ, **settings}
    _write(stream, "Starting JupyterLab; press Ctrl-C to stop it and the chain.")
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser"]
    command += ["--ServerApp.ip=127.0.0.1", f"--ServerApp.root_dir={folder}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # JupyterLab refuses to start as root, as in a container, without this.
        command.append("--allow-root")
    process = subprocess.Popen(command, env=environment)
    try:
        return process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        # Ctrl-C, or SIGTERM turned into SystemExit, must not leave JupyterLab
        # running after the chain it talks to has stopped.
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
