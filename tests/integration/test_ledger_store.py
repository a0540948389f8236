"""The listing ledgers survive a restart in PostgreSQL (hub/infra/ledgers.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from domain.listing_ledger import ListingLedger, PendingWrite
from hub.infra.ledgers import LedgerStore
from hub.infra.migrate import migrate

WECHAT = ("wechat_shop", "wx-1", "SKU-A")
YOUZAN = ("youzan", "42001", "SKU-A")


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[LedgerStore]:
    migrate(database_url)
    opened = LedgerStore(database_url)
    await opened.open()
    yield opened
    await opened.close()


async def test_a_saved_ledger_loads_as_it_was_saved(store: LedgerStore) -> None:
    ledger = ListingLedger(baseline=7, sold_at_baseline=2, written=-3)
    await store.save(WECHAT, ledger)
    assert await store.load() == {WECHAT: ledger}


async def test_a_write_on_its_way_loads_as_one_of_unknown_outcome(
    store: LedgerStore, database_url: str
) -> None:
    # Given a raise's intent saved before it was sent, and then the hub stopped.
    write = PendingWrite(request_id="sp-1-v4:0:+5@v4", delta=5)
    await store.save(YOUZAN, ListingLedger(baseline=1, sold_at_baseline=0))
    await store.save(
        YOUZAN, ListingLedger(baseline=1, sold_at_baseline=0).claimed(write)
    )
    # When a new hub loads the ledgers, the write may have landed: uncertain.
    restarted = LedgerStore(database_url)
    await restarted.open()
    try:
        loaded = await restarted.load()
    finally:
        await restarted.close()
    assert loaded == {
        YOUZAN: ListingLedger(baseline=1, sold_at_baseline=0, uncertain=write)
    }
    assert loaded[YOUZAN].at_most(0) == 6


async def test_a_settled_write_clears_the_pending_columns(store: LedgerStore) -> None:
    write = PendingWrite(request_id="sp-2-v9:4:-2@v9", delta=-2)
    claimed = ListingLedger(baseline=4, sold_at_baseline=1).claimed(write)
    await store.save(WECHAT, claimed.unsettled())
    await store.save(YOUZAN, ListingLedger(baseline=0, sold_at_baseline=0))
    await store.save(WECHAT, claimed.unsettled().settled(applied=True))
    assert await store.load() == {
        WECHAT: ListingLedger(baseline=4, sold_at_baseline=1, written=-2),
        YOUZAN: ListingLedger(baseline=0, sold_at_baseline=0),
    }
