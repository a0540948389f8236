"""The runners of a process share one LISTEN on the log: one connection however
many runners, and it heals when PostgreSQL drops it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest

from domain.stock import ReceiveStock
from eventlog.listen import listener_for
from hub.service.hub import Hub
from projections.inventory import InventoryProjection
from projections.stock import StockOnHandProjection
from tests.conftest import wait_until
from tests.hub_steps import started_hub

pytestmark = pytest.mark.integration

_LISTENING = (
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
    "AND query LIKE 'LISTEN %%'"
)


@pytest.fixture
async def hub(database_url: str) -> AsyncIterator[Hub]:
    async with started_hub(
        database_url,
        None,
        projections=[StockOnHandProjection(), InventoryProjection()],
    ) as running:
        yield running


async def _listening(database_url: str) -> list[int]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(_LISTENING)
        return [int(row[0]) for row in await cur.fetchall()]  # type: ignore[index]


async def _on_hand(database_url: str, sku: str) -> int | None:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT on_hand FROM stock_on_hand WHERE sku = %s", (sku,)
        )
        row = await cur.fetchone()
        return None if row is None else int(row[0])  # type: ignore[index]


async def test_the_runners_of_a_process_share_one_listen_connection(hub: Hub) -> None:
    # Two read models and the hub's processes follow the log, one LISTEN.
    await wait_until(listener_for(hub.database_url).listening.is_set)
    assert len(await _listening(hub.database_url)) == 1
    await hub.execute("stock.receive", ReceiveStock(sku="L-1", quantity=3))

    async def applied() -> bool:
        return await _on_hand(hub.database_url, "L-1") == 3

    await wait_until(applied, timeout=30)


async def test_a_dropped_listen_connection_is_made_again(hub: Hub) -> None:
    listener = listener_for(hub.database_url)
    await wait_until(listener.listening.is_set)
    [pid] = await _listening(hub.database_url)
    async with await psycopg.AsyncConnection.connect(
        hub.database_url, autocommit=True
    ) as conn:
        await conn.execute("SELECT pg_terminate_backend(%s)", (pid,))

    async def listening_again() -> bool:
        pids = await _listening(hub.database_url)
        return len(pids) == 1 and pids != [pid]

    await wait_until(listening_again, timeout=30)
    await hub.execute("stock.receive", ReceiveStock(sku="L-2", quantity=5))

    async def applied() -> bool:
        return await _on_hand(hub.database_url, "L-2") == 5

    await wait_until(applied, timeout=30)
