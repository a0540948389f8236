"""A hub for a test: started, yielded, stopped (and serving NATS)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import psycopg

from eventlog.log import log_head
from hub.bootstrap import bootstrap
from hub.entry.nats_api import build_broker
from hub.service.hub import Hub


@contextlib.asynccontextmanager
async def started_hub(
    database_url: str, nats_url: str | None, **options: Any
) -> AsyncIterator[Hub]:
    """A started hub built by ``bootstrap`` with ``options``; stopped after."""
    running = bootstrap(database_url=database_url, nats_url=nats_url, **options)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@contextlib.asynccontextmanager
async def serving_hub(
    database_url: str, nats_url: str, clock: Callable[[], datetime]
) -> AsyncIterator[Hub]:
    """A started hub with its NATS broker answering ``hub.cmd.*``."""
    async with started_hub(database_url, nats_url, clock=clock) as running:
        broker = build_broker(nats_url, running)
        await broker.start()
        try:
            yield running
        finally:
            await broker.stop()


async def head(hub: Hub) -> int:
    """The position of the newest event in the hub's log."""
    async with await psycopg.AsyncConnection.connect(hub.database_url) as conn:
        return await log_head(conn)


async def settle(hub: Hub) -> int:
    """Wait until the process and every view have handled the whole log.

    The process writes new events as it goes, so wait until the head stays.
    """
    while True:
        position = await head(hub)
        for runner in [*hub.processes, *hub.projections]:
            await runner.wait_for(position)
        if await head(hub) == position:
            return position
