"""The outbound dispatcher's listing ledgers in PostgreSQL (``stock_ledgers``).

A restarted hub goes on from what it wrote instead of reading each platform
again (a read counts the sales the hub has not heard of yet, which would later
be subtracted twice and over-list by them). Each write's intent is saved before
it is sent (the ledger's ``pending`` write), so a write cut off by a crash is
sent again under its own request id first: applied once.
"""

from __future__ import annotations

from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from domain.listing_ledger import ListingLedger, PendingWrite

#: A listing: platform, shop id, hub SKU.
ListingKey = tuple[str, str, str]


def _ledger(row: TupleRow) -> tuple[ListingKey, ListingLedger]:
    platform, shop_id, sku, baseline, sold, written, request, delta = row
    uncertain = None
    if request is not None and delta is not None:
        uncertain = PendingWrite(request_id=str(request), delta=int(delta))
    ledger = ListingLedger(
        baseline=int(baseline),
        sold_at_baseline=int(sold),
        written=int(written),
        uncertain=uncertain,
    )
    return (str(platform), str(shop_id), str(sku)), ledger


class LedgerStore:
    """Keeps each listing's :class:`~domain.listing_ledger.ListingLedger`.

    Args:
        database_url: PostgreSQL holding ``stock_ledgers`` (migrated).
    """

    def __init__(self, database_url: str) -> None:
        self._pool = AsyncConnectionPool(
            database_url,
            min_size=1,
            max_size=4,
            open=False,
            kwargs={"autocommit": True},
        )

    async def open(self) -> None:
        """Open the connections."""
        await self._pool.open()

    async def close(self) -> None:
        """Close the connections."""
        await self._pool.close()

    async def load(self) -> dict[ListingKey, ListingLedger]:
        """Every saved ledger; a pending write comes back as one of unknown
        outcome (it may have landed before the hub stopped)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT platform, shop_id, sku, baseline, sold_at_baseline, written, "
                "pending_request, pending_delta FROM stock_ledgers"
            )
            rows = await cur.fetchall()
        return dict(_ledger(row) for row in rows)

    async def save(self, key: ListingKey, ledger: ListingLedger) -> None:
        """Save one listing's ledger, with its write on its way or of unknown
        outcome (:attr:`~domain.listing_ledger.ListingLedger.pending`)."""
        pending = ledger.pending
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO stock_ledgers (platform, shop_id, sku, baseline, "
                "sold_at_baseline, written, pending_request, pending_delta) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (platform, shop_id, sku) DO UPDATE SET "
                "baseline = EXCLUDED.baseline, "
                "sold_at_baseline = EXCLUDED.sold_at_baseline, "
                "written = EXCLUDED.written, "
                "pending_request = EXCLUDED.pending_request, "
                "pending_delta = EXCLUDED.pending_delta, updated_at = now()",
                (
                    *key,
                    ledger.baseline,
                    ledger.sold_at_baseline,
                    ledger.written,
                    None if pending is None else pending.request_id,
                    None if pending is None else pending.delta,
                ),
            )
