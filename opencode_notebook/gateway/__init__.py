"""The Sessions API server: a gateway in front of `opencode serve` instances."""

from __future__ import annotations

from opencode_notebook.gateway.app import (
    GatewayConfig,
    GatewayError,
    create_app,
    parse_port_ranges,
)

__all__ = ["GatewayConfig", "GatewayError", "create_app", "parse_port_ranges"]
