"""The runners of a process share one LISTEN on the log: one connection however
many runners, and it heals when PostgreSQL drops it. A commit wakes only the
runners that read one of its topics."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest

import projections.base
from domain.stock import ReceiveStock
from eventlog.listen import listener_for
from eventlog.log import log_head, stored_topics
from hub.service.hub import Hub
from projections.inventory import InventoryProjection
from projections.ledger import LedgerProjection
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


async def test_a_commit_wakes_only_the_runners_that_read_its_topics(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No safety looks: only a notification (or a waiting caller) wakes a runner.
    monkeypatch.setattr(projections.base, "NOTIFY_SAFETY_S", 3600.0)
    async with started_hub(
        database_url, None, projections=[StockOnHandProjection(), LedgerProjection()]
    ) as hub:
        listener = listener_for(hub.database_url)
        await wait_until(listener.listening.is_set)
        stock = listener.subscribe(stored_topics(StockOnHandProjection.topics))
        ledger = listener.subscribe(stored_topics(LedgerProjection.topics))
        everything = listener.subscribe()
        try:
            await hub.execute("stock.receive", ReceiveStock(sku="L-3", quantity=2))
            await wait_until(stock.is_set)
            # The same notification set or skipped each subscriber's event.
            assert everything.is_set()
            assert not ledger.is_set()
        finally:
            for wake in (stock, ledger, everything):
                listener.unsubscribe(wake)

        # The ledger's runner was not woken, so it is behind the head; a caller
        # waiting for the head wakes it, and it steps to there.
        runner = hub.projection("ledger")
        async with await psycopg.AsyncConnection.connect(hub.database_url) as conn:
            head = await log_head(conn)
        assert runner.position < head
        await runner.wait_for(head, timeout=30)
        assert runner.position >= head
