"""Shared fixtures: the offline model, a real OpenCode server and the local chain.

Each fixture is session-scoped and starts only when a test requests it. Tests
that request `opencode_server` or `chain` get the `chain` marker, so
`pytest -m "not chain"` runs without real servers.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from opencode_notebook.stack import LocalChain, OfflineModel, OpenCodeServer

CHAIN_FIXTURES = frozenset({"opencode_server", "chain"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if CHAIN_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.chain)


@pytest.fixture(scope="session")
def offline_model() -> Iterator[OfflineModel]:
    """The offline model on a free loopback port, with no chunk delay."""
    with OfflineModel() as model:
        yield model


@pytest.fixture(scope="session")
def opencode_server(offline_model: OfflineModel) -> Iterator[OpenCodeServer]:
    """A real, isolated `opencode serve` that uses the offline model."""
    with OpenCodeServer(model_url=offline_model.base_url) as server:
        yield server


@pytest.fixture(scope="session")
def chain() -> Iterator[LocalChain]:
    """The whole local chain: offline model, one OpenCode server, gateway."""
    with LocalChain(gateway=True) as local_chain:
        yield local_chain
