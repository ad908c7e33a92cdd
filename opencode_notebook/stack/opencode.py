"""Find and start the real OpenCode server (`opencode serve`).

By default the server is isolated: a temporary folder contains its HOME, its XDG
folders, its project folder and its config, which names the offline model as
provider `local` with model `echo`. Nothing it does reaches the network: the
models.dev fetch and sharing are switched off, and the `@opencode-ai/plugin`
package that OpenCode would install from the npm registry on the first prompt
is linked from this project's `node_modules` beforehand.

With `isolated=False` it runs as the user's own OpenCode would, with their
HOME and configuration. Stopping relies on process groups, so this module
works on POSIX systems only.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .process import (
    StackError,
    StartError,
    free_port,
    output_tail,
    stop_process_group,
    wait_until_ready,
)

__all__ = [
    "OPENCODE_VERSION",
    "OpenCodeNotFoundError",
    "OpenCodeServer",
    "find_opencode_binary",
    "isolated_config",
]

logger = logging.getLogger("opencode_notebook.stack.opencode")

OPENCODE_VERSION = "1.18.33"
PLUGIN_PACKAGE = "@opencode-ai/plugin"
PROVIDER_ID = "local"
MODEL_ID = "echo"

_REPO_ROOT = Path(__file__).resolve().parents[2]
_XDG = {
    "XDG_CONFIG_HOME": ".config",
    "XDG_DATA_HOME": ".local/share",
    "XDG_STATE_HOME": ".local/state",
    "XDG_CACHE_HOME": ".cache",
}


class OpenCodeNotFoundError(StackError, FileNotFoundError):
    """The `opencode` binary or a package it needs is not installed."""


def _project_folder() -> Path:
    if (_REPO_ROOT / "package.json").is_file():
        return _REPO_ROOT
    return Path.cwd()


def _search_roots() -> list[Path]:
    cwd = Path.cwd().resolve()
    roots = [cwd, *cwd.parents]
    roots += [p for p in (_REPO_ROOT, *_REPO_ROOT.parents) if p not in roots]
    return roots


def find_opencode_binary() -> Path:
    """Return the path of the `opencode` binary.

    Looks at `$OPENCODE_BIN`, then `node_modules/.bin/opencode` in the current
    folder, its parents and this package's repository, then `PATH`.
    """
    configured = os.environ.get("OPENCODE_BIN")
    if configured:
        path = Path(configured).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise OpenCodeNotFoundError(
            f"OPENCODE_BIN={configured!r} is not an executable file: point it at "
            "the opencode binary or unset it."
        )
    for root in _search_roots():
        candidate = root / "node_modules" / ".bin" / "opencode"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    on_path = shutil.which("opencode")
    if on_path:
        return Path(on_path)
    raise OpenCodeNotFoundError(
        f"The opencode binary was not found: run `npm ci` in {_project_folder()} "
        f"(or `npm install -g opencode-ai@{OPENCODE_VERSION}`), or set OPENCODE_BIN."
    )


def find_plugin_package(binary: Path | None = None) -> Path:
    """Return the installed `@opencode-ai/plugin` folder that isolated runs link.

    Looks next to `binary` when it sits in a `node_modules/.bin` folder, then
    in the `node_modules` of the current folder, its parents and this
    package's repository.
    """
    roots = []
    if binary is not None and binary.parent.name == ".bin":
        roots.append(binary.parent.parent.parent)
    roots += _search_roots()
    for root in roots:
        candidate = root / "node_modules" / PLUGIN_PACKAGE
        if (candidate / "package.json").is_file():
            return candidate
    raise OpenCodeNotFoundError(
        f"{PLUGIN_PACKAGE} is not installed, and without it an isolated OpenCode "
        f"server installs it from the npm registry: run `npm ci` in "
        f"{_project_folder()}."
    )


def isolated_config(model_url: str) -> dict[str, Any]:
    """Build the OpenCode config naming the model provider at `model_url`.

    `model_url` is an OpenAI-compatible base URL ending in `/v1`, such as the
    offline model's. Only this provider is enabled, and it is the default for
    both prompts and title generation.
    """
    model = f"{PROVIDER_ID}/{MODEL_ID}"
    return {
        "provider": {
            PROVIDER_ID: {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Offline model",
                "options": {"baseURL": model_url},
                "models": {MODEL_ID: {"name": "Echo (offline model)"}},
            }
        },
        "model": model,
        "small_model": model,
        "enabled_providers": [PROVIDER_ID],
        "autoupdate": False,
        "share": "disabled",
    }


def _link_plugin(config_dir: Path, plugin: Path) -> None:
    # On the first prompt, OpenCode 1.18.33 installs @opencode-ai/plugin into
    # each config folder with npm, unless the folder has node_modules and a
    # package-lock.json whose root lists every dependency of its package.json.
    # Versions are not compared.
    version = json.loads((plugin / "package.json").read_text())["version"]
    dependencies = {PLUGIN_PACKAGE: version}
    package = {"dependencies": dependencies}
    lock = {
        "lockfileVersion": 3,
        "requires": True,
        "packages": {
            "": package,
            f"node_modules/{PLUGIN_PACKAGE}": {"version": version},
        },
    }
    (config_dir / "package.json").write_text(json.dumps(package, indent=2))
    (config_dir / "package-lock.json").write_text(json.dumps(lock, indent=2))
    target = config_dir / "node_modules" / PLUGIN_PACKAGE
    target.parent.mkdir(parents=True)
    try:
        target.symlink_to(plugin.resolve(), target_is_directory=True)
    except OSError:
        shutil.copytree(plugin, target)


class OpenCodeServer:
    """One `opencode serve` process on a loopback port.

    Use it as a context manager, or call `start()` and `stop()`.

    - `port`: the port to serve, or `None` for a free one.
    - `model_url`: the model provider's OpenAI-compatible base URL (ending in
      `/v1`), required when isolated.
    - `isolated`: run in a temporary HOME with the offline config and
      without the caller's `OPENCODE_*` and `XDG_*` variables (default).
      `False` runs with the user's own HOME, environment and configuration.
    - `directory`: the project folder the server runs in. By default it is
      a folder next to the temporary HOME, or the current folder when not
      isolated.
    - `password`: sets `OPENCODE_SERVER_PASSWORD`, so every request needs
      HTTP Basic auth. When not isolated, a password already in the
      environment is kept.
    - `binary`: the `opencode` binary, by default `find_opencode_binary()`.
    - `start_timeout`: seconds to wait for the server to become ready.
    - `env`: extra environment variables for the server.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        model_url: str | None = None,
        isolated: bool = True,
        directory: str | os.PathLike[str] | None = None,
        password: str | None = None,
        binary: str | os.PathLike[str] | None = None,
        start_timeout: float = 60.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if isolated and not model_url:
            raise ValueError("An isolated OpenCode server needs a model_url.")
        self.port = port or free_port()
        self.model_url = model_url
        self.isolated = isolated
        self.password = password
        self.start_timeout = start_timeout
        self._directory = Path(directory) if directory else None
        self._binary = Path(binary) if binary else None
        self._extra_env = dict(env or {})
        self._process: subprocess.Popen[bytes] | None = None
        self._tempdir: Path | None = None
        self._output: Path | None = None

    @property
    def url(self) -> str:
        """The server's base URL, e.g. `http://127.0.0.1:4096`."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._process.pid if self._process else None

    @property
    def home(self) -> Path | None:
        """The temporary HOME of an isolated server while it runs."""
        return self._tempdir / "home" if self._tempdir and self.isolated else None

    @property
    def directory(self) -> Path:
        """The project folder the server runs in."""
        if self._directory is not None:
            return self._directory
        if self._tempdir is not None and self.isolated:
            return self._tempdir / "project"
        return Path.cwd()

    @property
    def log_dir(self) -> Path | None:
        """OpenCode's own log folder of an isolated server."""
        home = self.home
        return home / ".local" / "share" / "opencode" / "log" if home else None

    @property
    def auth(self) -> tuple[str, str] | None:
        """HTTP Basic credentials for the server, when it has a password."""
        password = self.password
        if password is None and not self.isolated:
            password = os.environ.get("OPENCODE_SERVER_PASSWORD")
        if not password:
            return None
        username = self._extra_env.get("OPENCODE_SERVER_USERNAME")
        if username is None and not self.isolated:
            username = os.environ.get("OPENCODE_SERVER_USERNAME")
        return (username or "opencode", password)

    def output(self, lines: int = 20) -> str:
        """Return the last `lines` lines the server printed."""
        return output_tail(self._output, lines) if self._output else ""

    def start(self) -> OpenCodeServer:
        """Start the server and wait until `GET /global/health` responds."""
        if self._process is not None:
            raise RuntimeError(f"The OpenCode server on port {self.port} is running.")
        binary = self._binary or find_opencode_binary()
        plugin = find_plugin_package(binary) if self.isolated else None
        self._tempdir = Path(tempfile.mkdtemp(prefix="opencode-notebook-"))
        try:
            env = self._prepare(plugin)
            self._output = self._tempdir / "server-output.txt"
            command = [str(binary), "serve", "--port", str(self.port)]
            command += ["--hostname", "127.0.0.1"]
            started = time.monotonic()
            with self._output.open("wb") as output:
                self._process = subprocess.Popen(
                    command,
                    cwd=self.directory,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            atexit.register(self.stop)
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        logger.info(
            "OpenCode server started on port %s (pid %s) in %.2f s",
            self.port,
            self.pid,
            time.monotonic() - started,
        )
        return self

    def _prepare(self, plugin: Path | None) -> dict[str, str]:
        assert self._tempdir is not None
        if not self.isolated:
            env = dict(os.environ)
        else:
            # Drop the user's OpenCode and XDG settings so none of them leaks in.
            env = {
                key: value
                for key, value in os.environ.items()
                if not key.startswith(("OPENCODE_", "XDG_"))
            }
            home = self._tempdir / "home"
            env["HOME"] = str(home)
            for variable, relative in _XDG.items():
                (home / relative).mkdir(parents=True, exist_ok=True)
                env[variable] = str(home / relative)
            config_dir = home / ".config" / "opencode"
            config_dir.mkdir(parents=True, exist_ok=True)
            assert self.model_url is not None and plugin is not None
            config = json.dumps(isolated_config(self.model_url), indent=2)
            (config_dir / "opencode.json").write_text(config)
            _link_plugin(config_dir, plugin)
            env["OPENCODE_DISABLE_MODELS_FETCH"] = "1"
            env["OPENCODE_DISABLE_SHARE"] = "1"
        if self.password is not None:
            env["OPENCODE_SERVER_PASSWORD"] = self.password
        env.update(self._extra_env)
        self.directory.mkdir(parents=True, exist_ok=True)
        return env

    def _wait_ready(self) -> None:
        assert self._process is not None
        accept = (200, 401) if self.auth else (200,)
        try:
            wait_until_ready(
                f"{self.url}/global/health",
                self._process,
                self.start_timeout,
                accept=accept,
                auth=self.auth,
            )
        except StartError as exc:
            raise StartError(
                f"The OpenCode server on port {self.port} did not start: {exc}. "
                f"Its last output:\n{self.output()}"
            ) from None

    def stop(self) -> None:
        """Stop the server and its children and remove its temporary folder."""
        atexit.unregister(self.stop)
        process, self._process = self._process, None
        if process is not None:
            stop_process_group(process)
            logger.info(
                "OpenCode server stopped on port %s (pid %s, exit code %s)",
                self.port,
                process.pid,
                process.returncode,
            )
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = self._output = None

    def __enter__(self) -> OpenCodeServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self._process else "stopped"
        return f"<OpenCodeServer {self.url} ({state})>"
