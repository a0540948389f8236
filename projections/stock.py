"""Stock on hand per hub SKU, folded from the stock item events."""

from __future__ import annotations

from typing import ClassVar

import psycopg

from domain.events import Event
from domain.stock import StockAdjusted, StockCounted, StockReceived
from projections.base import Projection


class StockOnHandProjection(Projection):
    """Table ``stock_on_hand``: one row per SKU with its on-hand quantity."""

    name: ClassVar[str] = "stock_on_hand"
    tables: ClassVar[tuple[str, ...]] = ("stock_on_hand",)
    topics: ClassVar[tuple[str, ...]] = (
        StockReceived.TOPIC,
        StockAdjusted.TOPIC,
        StockCounted.TOPIC,
    )

    async def apply(
        self, cur: psycopg.AsyncCursor[object], event: Event, position: int
    ) -> None:
        """Upsert the SKU's row with the on-hand quantity the event records."""
        assert isinstance(event, StockReceived | StockAdjusted | StockCounted)
        await cur.execute(
            "INSERT INTO stock_on_hand "
            "(sku, item_id, on_hand, version, position, updated_at) "
            "VALUES (%s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (sku) DO UPDATE SET on_hand = EXCLUDED.on_hand, "
            "version = EXCLUDED.version, position = EXCLUDED.position, "
            "updated_at = EXCLUDED.updated_at",
            (
                event.sku,
                event.originator_id,
                event.on_hand,
                event.originator_version,
                position,
                event.occurred_at,
            ),
        )
