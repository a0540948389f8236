"""Snapshots: a long history loads from a snapshot plus the events after it;
snapshots are derived data (a stale or broken one is ignored)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psycopg
import pytest

from domain import stock
from domain.events import project
from hub.service.commands import STOCK_RULES
from hub.service.hub import Hub
from hub.service.snapshots import EVERY, Snapshots
from tests.hub_steps import started_hub

pytestmark = pytest.mark.integration

LONG = 2 * EVERY + 251  # events of the long-lived SKU


@pytest.fixture
async def hub(database_url: str) -> AsyncIterator[Hub]:
    async with started_hub(
        database_url, None, run_processes=False, projections=[]
    ) as running:
        yield running


async def _history(hub: Hub, sku: str, events: int) -> None:
    futures = [hub.submit("stock.receive", stock.ReceiveStock(sku=sku, quantity=9))]
    futures += [
        hub.submit(
            "stock.adjust", stock.AdjustStock(sku=sku, delta=(-1) ** n, reason="n")
        )
        for n in range(events - 1)
    ]
    await asyncio.gather(*futures)


async def test_a_long_history_loads_from_its_snapshot_and_the_events_after(
    hub: Hub,
) -> None:
    await _history(hub, "LONG", LONG)
    await _history(hub, "SHORT", 10)
    snapshots = hub.committer.snapshots
    assert snapshots is not None
    await snapshots.drain()
    item = stock.stock_item_id("LONG")
    async with await psycopg.AsyncConnection.connect(hub.database_url) as conn:
        cur = await conn.execute(
            "SELECT aggregate_id, version FROM aggregate_snapshots"
        )
        [(snapped, version)] = await cur.fetchall()
    # Taken once the version reached 2 * EVERY, of the state then current.
    assert snapped == item and 2 * EVERY <= version <= LONG
    truth = project(stock.mutate, None, hub.app.load_events(item))
    assert truth.version == LONG

    fresh = Snapshots(hub.app)  # nothing cached: every load reads the store
    assert fresh.load(stock.mutate, item) == truth
    assert fresh.events_loaded == LONG - version
    assert fresh.load(None, stock.stock_item_id("SHORT")).version == 10
    assert fresh.events_loaded == LONG - version + 10
    assert await hub.committer.load(STOCK_RULES, item) == truth


async def test_a_snapshot_of_another_shape_or_none_at_all_changes_nothing(
    hub: Hub,
) -> None:
    await _history(hub, "LONG", EVERY + 3)
    assert hub.committer.snapshots is not None
    await hub.committer.snapshots.drain()
    item = stock.stock_item_id("LONG")
    truth = project(stock.mutate, None, hub.app.load_events(item))
    async with await psycopg.AsyncConnection.connect(hub.database_url) as conn:
        await conn.execute("UPDATE aggregate_snapshots SET kind = 'StockItem:old'")
        await conn.commit()
        stale = Snapshots(hub.app)
        assert stale.load(stock.mutate, item) == truth
        assert stale.events_loaded == EVERY + 3, "the stale snapshot was ignored"
        await conn.execute("DELETE FROM aggregate_snapshots")
        await conn.commit()
    assert Snapshots(hub.app).load(stock.mutate, item) == truth
    # The committer decides on the loaded state as before.
    outcome = await hub.execute(
        "stock.adjust", stock.AdjustStock(sku="LONG", delta=1, reason="x")
    )
    assert outcome.version == EVERY + 4


async def test_a_history_without_a_snapshot_is_folded_in_chunks(hub: Hub) -> None:
    # Read and folded a chunk at a time (memory stays flat however long the
    # history), whether or not the chunks divide it exactly.
    await _history(hub, "MID", 25)
    item = stock.stock_item_id("MID")
    truth = project(stock.mutate, None, hub.app.load_events(item))
    for chunk in (5, 7, 100):
        snapshots = Snapshots(hub.app, chunk=chunk)
        assert snapshots.load(None, item) == truth
        assert snapshots.events_loaded == 25


async def test_many_aggregates_load_together_as_each_alone(hub: Hub) -> None:
    # The committer loads a batch's aggregates in one transaction: each comes
    # out as load() makes it alone — from its snapshot or not, longer than a
    # chunk or not, absent (None) — and a stale snapshot is still ignored.
    await _history(hub, "LONG", EVERY + 40)
    await _history(hub, "MID", 25)
    await _history(hub, "SHORT", 3)
    assert hub.committer.snapshots is not None
    await hub.committer.snapshots.drain()
    skus = ("LONG", "MID", "SHORT", "NEVER")
    ids = [stock.stock_item_id(sku) for sku in skus]
    async with await psycopg.AsyncConnection.connect(hub.database_url) as conn:
        cur = await conn.execute(
            "SELECT aggregate_id, version FROM aggregate_snapshots"
        )
        [(snapped, version)] = await cur.fetchall()
    assert snapped == ids[0] and EVERY <= version <= EVERY + 40
    for chunk in (7, 2000):
        snapshots = Snapshots(hub.app, chunk=chunk)
        many = snapshots.load_many(dict.fromkeys(ids, stock.mutate))
        assert many == {aid: Snapshots(hub.app).load(None, aid) for aid in ids}
        assert many[ids[0]].version == EVERY + 40
        assert many[ids[1]].version == 25 and many[ids[3]] is None
        # LONG from its snapshot: only the events after it.
        assert snapshots.events_loaded == EVERY + 40 - version + 25 + 3
    async with await psycopg.AsyncConnection.connect(hub.database_url) as conn:
        await conn.execute("UPDATE aggregate_snapshots SET kind = 'StockItem:old'")
        await conn.commit()
    snapshots = Snapshots(hub.app)
    many = snapshots.load_many(dict.fromkeys(ids, None))
    assert many[ids[0]].version == EVERY + 40
    assert snapshots.events_loaded == EVERY + 40 + 25 + 3


async def test_the_committers_one_statement_load_gives_what_load_many_gives(
    hub: Hub,
) -> None:
    # load_many_async (one statement from the event loop, what the committer
    # uses) against load_many (two in a thread): every case of the test above,
    # and a snapshot of today's shape whose state cannot be decoded.
    await _history(hub, "LONG", EVERY + 40)
    await _history(hub, "MID", 25)
    await _history(hub, "SHORT", 3)
    assert hub.committer.snapshots is not None
    await hub.committer.snapshots.drain()
    ids = [stock.stock_item_id(sku) for sku in ("LONG", "MID", "SHORT", "NEVER")]
    for chunk in (7, 2000):
        reference, ours = (
            Snapshots(hub.app, chunk=chunk),
            Snapshots(hub.app, chunk=chunk),
        )
        try:
            expected = reference.load_many(dict.fromkeys(ids, stock.mutate))
            assert await ours.load_many_async(dict.fromkeys(ids, None)) == expected
            assert ours.events_loaded == reference.events_loaded
        finally:
            await ours.aclose()
    async with await psycopg.AsyncConnection.connect(hub.database_url) as conn:
        await conn.execute("UPDATE aggregate_snapshots SET state = 'not json'")
        await conn.commit()
    ours = Snapshots(hub.app)
    try:
        many = await ours.load_many_async(dict.fromkeys(ids, stock.mutate))
    finally:
        await ours.aclose()
    assert many[ids[0]] == project(stock.mutate, None, hub.app.load_events(ids[0]))
    assert many[ids[0]].version == EVERY + 40 and many[ids[3]] is None
    assert ours.events_loaded == EVERY + 40 + 25 + 3
