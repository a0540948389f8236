"""A hub serving NATS for a test: started, yielded, stopped."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from hub.bootstrap import bootstrap
from hub.entry.nats_api import build_broker
from hub.service.hub import Hub


@contextlib.asynccontextmanager
async def serving_hub(
    database_url: str, nats_url: str, clock: Callable[[], datetime]
) -> AsyncIterator[Hub]:
    """A started hub with its NATS broker answering ``hub.cmd.*``."""
    running = bootstrap(database_url=database_url, nats_url=nats_url, clock=clock)
    await running.start()
    broker = build_broker(nats_url, running)
    await broker.start()
    try:
        yield running
    finally:
        await broker.stop()
        await running.stop()
