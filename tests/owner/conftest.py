"""The shared session world (tests/federated/session_world.py) for the owner tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One orchestrator, provider, three owners and a TLS SuperLink (started once)."""
    from enclave.sandbox import bubblewrap_problem
    from tests.federated.session_world import SessionWorld

    problem = bubblewrap_problem()
    if problem is not None:
        pytest.skip(f"the owner session tests run real sandboxes and need bubblewrap: {problem}")
    world = SessionWorld(tmp_path_factory.mktemp("owner-sessions"))
    try:
        yield world
    finally:
        world.stop()
