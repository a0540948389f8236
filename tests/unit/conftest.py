"""Fixtures of the unit tests."""

from __future__ import annotations

import pytest

from hub.infra.store import HubApplication
from tests.memory_hub import in_memory_app


@pytest.fixture
def app() -> HubApplication:
    """An empty hub store held in memory."""
    return in_memory_app()
