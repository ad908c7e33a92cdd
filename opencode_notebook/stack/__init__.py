"""Start and stop the local chain: offline model, OpenCode servers, gateway.

The names are imported on first use, so that `python -m
opencode_notebook.stack.offline_model` runs its module only once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .offline_model import OfflineModel

__all__ = ["OfflineModel"]

_MODULES = {"OfflineModel": "offline_model"}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
