"""Two relays on one log: one publishes, the other waits as a standby.

The active relay holds an advisory lock of the log's database; the standby
waits for it and takes over the moment the active one's connection ends.
The stream stays the log: every event once, in order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest

from domain.stock import ReceiveStock
from hub.infra.relay import Relay
from hub.service.hub import Hub
from tests.conftest import wait_until
from tests.faults.harness import check_stream_equals_log, whole_log
from tests.hub_steps import started_hub

pytestmark = [pytest.mark.faults, pytest.mark.integration]


@pytest.fixture
async def writer(database_url: str) -> AsyncIterator[Hub]:
    async with started_hub(database_url, None, run_relay=False, projections=[]) as hub:
        yield hub


async def _receive(hub: Hub, start: int, count: int) -> int:
    """Store ``count`` receipts; the log position of the last."""
    last = 0
    for i in range(start, start + count):
        outcome = await hub.execute(
            "stock.receive", ReceiveStock(sku=f"R-{i % 7}", quantity=1)
        )
        last = max(last, *outcome.positions)
    return last


async def _advisory_locks(database_url: str) -> list[bool]:
    """``granted`` of each advisory lock held or awaited on the database."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT granted FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE l.locktype = 'advisory' AND d.datname = current_database() "
            "ORDER BY granted DESC"
        )
        return [bool(row[0]) for row in await cur.fetchall()]


async def test_second_relay_waits_as_standby_and_takes_over(
    writer: Hub, database_url: str, nats_url: str
) -> None:
    first = Relay(database_url, nats_url)
    second = Relay(database_url, nats_url)
    await first.start()
    await wait_until(lambda: _advisory_locks(database_url), 30, 0.05)
    await second.start()
    try:
        # One relay holds the lock, the other waits for it.
        await wait_until(lambda: _held_and_awaited(database_url), 30, 0.05)
        head = await _receive(writer, 0, 50)
        await first.wait_for(head)
        assert second.published == 0, "the standby published nothing"
        await first.stop()
        head = await _receive(writer, 50, 50)
        await second.wait_for(head)
    finally:
        await first.stop()
        await second.stop()
    await check_stream_equals_log(nats_url, await whole_log(database_url))


async def _held_and_awaited(database_url: str) -> bool:
    return await _advisory_locks(database_url) == [True, False]
