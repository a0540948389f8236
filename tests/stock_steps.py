"""Given/when/then steps for stock item tests on the pure domain (no servers)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from domain.events import Context, Event, project
from domain.stock import StockCommand, StockItem, decide, mutate

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def ctx() -> Context:
    """A decision context at :data:`NOW` with ids counted from 1."""
    counter = iter(range(1, 1_000_000))
    return Context(now=NOW, new_id=lambda: uuid.UUID(int=next(counter)))


def given(*commands: StockCommand) -> StockItem:
    """The item after each command was decided and applied in turn."""
    state: StockItem | None = None
    for command in commands:
        state = project(mutate, state, decide(state, command, ctx()))
    assert state is not None
    return state


def when(state: StockItem | None, command: StockCommand) -> list[Event]:
    """The events ``command`` decides on ``state``."""
    return decide(state, command, ctx())


def then(state: StockItem, command: StockCommand) -> StockItem:
    """The item after ``command`` was decided and applied on ``state``."""
    after: StockItem = project(mutate, state, when(state, command))
    return after
