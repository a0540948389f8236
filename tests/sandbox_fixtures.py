"""Fixtures for tests that talk to the sandbox platforms over loopback.

Import them where needed (``from tests.sandbox_fixtures import sandbox,
sandbox_control``) or list this module in ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from connectors.sandbox import SandboxConfig, SandboxControl, SandboxServer

#: The seed of the session's sandbox: faults and ids repeat run to run.
SANDBOX_SEED = 20240101


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxServer]:
    """One sandbox server on 127.0.0.1 for the whole session (free port)."""
    server = SandboxServer(SandboxConfig(seed=SANDBOX_SEED)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def sandbox_control(sandbox: SandboxServer) -> AsyncIterator[SandboxControl]:
    """The control API of the session's sandbox, emptied for this test."""
    control = SandboxControl(sandbox.url)
    await control.reset()
    try:
        yield control
    finally:
        await control.reset()
        await control.aclose()
