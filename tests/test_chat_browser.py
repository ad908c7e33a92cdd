"""The chat panel in JupyterLab, driven through Debian's Chromium by Playwright."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from opencode_notebook.stack import LocalChain

if TYPE_CHECKING:
    from playwright.sync_api import Locator

pytestmark = [pytest.mark.browser, pytest.mark.chain]

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "chat_panel.ipynb"
SCREENSHOT = ROOT / "docs" / "chat_panel.png"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# JupyterLab builds its page and starts a kernel on first load, which takes a
# while on a loaded machine. These waits are upper bounds, not sleeps.
START_SECONDS = 90
WAIT_MS = 60_000

if not CHROMIUM.exists():
    pytest.skip(
        f"Chromium is not installed at {CHROMIUM}: install Debian's `chromium` "
        "package to run the browser tests.",
        allow_module_level=True,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class JupyterLab:
    """A JupyterLab server on a free loopback port, serving one folder."""

    def __init__(self, root: Path, environment: dict[str, str]) -> None:
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root.parent / "jupyterlab.log"
        command = [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            f"--port={self.port}",
            "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={root}",
            # Nothing in the page may reach beyond loopback: no news feed, no
            # update check, no extension search on PyPI.
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
        ]
        if os.geteuid() == 0:
            command.append("--allow-root")
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"JupyterLab exited with status {self.process.returncode}: "
                    f"{self.log.read_text(errors='replace')[-2000:]}"
                )
            try:
                response = httpx.get(
                    f"{self.url}/api/status", params={"token": self.token}, timeout=2
                )
                if response.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"JupyterLab did not answer within {START_SECONDS} s.")

    def stop(self) -> None:
        # The server and its kernel share the session started for them.
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


@pytest.fixture
def jupyterlab(chain: LocalChain, tmp_path: Path) -> Iterator[JupyterLab]:
    root = tmp_path / "notebooks"
    root.mkdir()
    settings = tmp_path / "lab-settings"
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    assert chain.gateway_url is not None
    environment = {
        **os.environ,
        "OPENCODE_NOTEBOOK_URL": chain.gateway_url,
        "OPENCODE_PORT": str(chain.opencode_ports[0]),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_DATA_DIR": str(tmp_path / "jupyter-data"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
    }
    # Never fetch news or check for updates, and show no toast over the panel.
    notification = settings / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    lab = JupyterLab(root, environment)
    try:
        lab.wait_ready()
        yield lab
    finally:
        lab.stop()


def test_panel_in_jupyterlab(jupyterlab: JupyterLab, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    dialogs: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(WAIT_MS)
            page.on("dialog", lambda dialog: dialogs.append(dialog.message))
            page.goto(
                f"{jupyterlab.url}/lab/tree/{NOTEBOOK.name}?token={jupyterlab.token}"
            )
            cells = page.locator(".jp-NotebookPanel .jp-CodeCell")
            expect(cells).to_have_count(3)
            # A cell run before the kernel is ready may be dropped.
            expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible()

            run_cell(cells.nth(0))
            panel = page.locator(".opencode-chat")
            expect(panel).to_be_visible()
            panel.get_by_role("button", name="New", exact=True).click()
            expect(panel.locator(".opencode-chat-status-info")).to_have_text(
                "0 messages."
            )

            # The offline model streams the echo slowly, so the next cell runs
            # while the prompt is in flight.
            prompt = (
                "[[delay 0.3]] How do I read a **CSV** file?\n\n"
                "```python\nimport pandas as pd\ndf = pd.read_csv('data.csv')\n```"
            )
            panel.locator("textarea").fill(prompt)
            panel.get_by_role("button", name="Send").click()
            expect(panel.locator(".opencode-chat-status-sending")).to_be_visible()
            run_cell(cells.nth(1))
            busy_output = cells.nth(1).locator(".jp-OutputArea-output")
            expect(busy_output).to_contain_text("True")
            reply_count_while_busy = panel.locator(".opencode-chat-assistant").count()
            # The reply grows in its own bubble until it is complete.
            growing = panel.locator(".opencode-chat-streaming")
            expect(growing).to_contain_text("Echo: How")
            growing_text = growing.inner_text()
            stop_visible_while_busy = panel.get_by_role("button", name="Stop").count()

            reply = panel.locator(".opencode-chat-assistant")
            expect(reply).to_contain_text("Echo: How do I read a CSV file?")
            expect(reply.locator("strong")).to_have_text("CSV")
            expect(reply.locator("pre code")).to_contain_text("pd.read_csv")
            expect(panel.locator("textarea")).to_have_value("")
            expect(panel.locator(".opencode-chat-user")).to_contain_text(
                "How do I read a **CSV** file?"
            )
            expect(panel.locator(".opencode-chat-status-info")).to_contain_text(
                "Reply received"
            )
            shot = tmp_path / "chat_panel.png"
            panel.screenshot(path=str(shot))
            # The README's screenshot is refreshed on request only, so a test run
            # leaves the checkout as it found it.
            if os.environ.get("OPENCODE_NOTEBOOK_UPDATE_SCREENSHOT") == "1":
                SCREENSHOT.parent.mkdir(exist_ok=True)
                shutil.copy(shot, SCREENSHOT)

            hostile = "<img src=x onerror=alert(1)> [x](javascript:alert(2))"
            panel.locator("textarea").fill(hostile)
            panel.get_by_role("button", name="Send").click()
            expect(panel.locator(".opencode-chat-assistant")).to_have_count(2)
            last_reply = panel.locator(".opencode-chat-assistant").nth(1)
            expect(last_reply).to_contain_text("Echo: <img src=x onerror=alert(1)>")
            hostile_images = last_reply.locator("img").count()
            hostile_links = last_reply.locator("a[href^='javascript']").count()

            # Stop ends a long reply early and keeps what was written.
            words = " ".join(f"word{number}" for number in range(40))
            panel.locator("textarea").fill(f"[[delay 0.3]] {words}")
            panel.get_by_role("button", name="Send").click()
            long_reply = panel.locator(".opencode-chat-streaming")
            expect(long_reply).to_contain_text("word2")
            # The conversation stays scrolled to its newest message.
            expect(long_reply).to_be_in_viewport()
            stop_button = panel.get_by_role("button", name="Stop")
            stop_button.click()
            expect(panel.locator(".opencode-chat-status-hint")).to_contain_text(
                "Stopped the agent"
            )
            stopped_reply = panel.locator(".opencode-chat-assistant").nth(2)
            expect(stopped_reply).to_contain_text("(stopped)")
            stopped_text = stopped_reply.inner_text()
            expect(stop_button).to_be_hidden()
        finally:
            browser.close()

    assert reply_count_while_busy == 0
    assert "Echo: How" in growing_text
    assert "pd.read_csv" not in growing_text
    assert stop_visible_while_busy == 1
    assert "Echo: word0 word1 word2" in stopped_text
    assert "word39" not in stopped_text
    assert hostile_images == 0
    assert hostile_links == 0
    assert dialogs == []
    assert shot.stat().st_size > 10_000


def run_cell(cell: Locator) -> None:
    """Select a notebook cell and run it with Shift+Enter."""
    cell.locator(".jp-InputArea-editor").click()
    cell.page.keyboard.press("Shift+Enter")
