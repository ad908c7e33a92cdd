"""Start and stop the local chain: offline model, OpenCode servers, gateway.

The names are imported on first use, so that `python -m
opencode_notebook.stack.offline_model` runs its module only once and using
`OpenCodeServer` does not import Starlette.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .chain import LocalChain
    from .offline_model import OfflineModel
    from .opencode import (
        OPENCODE_VERSION,
        OpenCodeNotFoundError,
        OpenCodeServer,
        find_opencode_binary,
        isolated_config,
    )
    from .process import StackError, StartError, free_port

__all__ = [
    "OPENCODE_VERSION",
    "LocalChain",
    "OfflineModel",
    "OpenCodeNotFoundError",
    "OpenCodeServer",
    "StackError",
    "StartError",
    "find_opencode_binary",
    "free_port",
    "isolated_config",
]

_MODULES = {
    "LocalChain": "chain",
    "OfflineModel": "offline_model",
    "OPENCODE_VERSION": "opencode",
    "OpenCodeNotFoundError": "opencode",
    "OpenCodeServer": "opencode",
    "find_opencode_binary": "opencode",
    "isolated_config": "opencode",
    "StackError": "process",
    "StartError": "process",
    "free_port": "process",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
