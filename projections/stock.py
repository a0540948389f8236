"""Stock on hand per hub SKU, folded from the stock item events."""

from __future__ import annotations

from typing import ClassVar

import psycopg

from projections.base import Latest, LatestProjection, rows_json, select_rows
from projections.inventory import STOCK_TOPICS

_UPSERT = (
    "INSERT INTO stock_on_hand "
    "(sku, item_id, on_hand, version, position, updated_at, events_applied) "
    + select_rows(
        "sku text, item_id uuid, on_hand bigint, version bigint, position bigint, "
        "updated_at timestamptz, events_applied bigint"
    )
    + " ON CONFLICT (sku) DO UPDATE SET on_hand = EXCLUDED.on_hand, "
    "version = EXCLUDED.version, position = EXCLUDED.position, "
    "updated_at = EXCLUDED.updated_at, "
    "events_applied = stock_on_hand.events_applied + EXCLUDED.events_applied"
)


class StockOnHandProjection(LatestProjection):
    """Table ``stock_on_hand``: one row per SKU with its on-hand quantity.

    It folds every stock item event (each records on hand after it); the
    ``inventory`` view has the other states. ``events_applied`` counts the
    events folded into each row, so an event applied twice (or skipped) would
    show against a rebuild.
    """

    name: ClassVar[str] = "stock_on_hand"
    topics: ClassVar[tuple[str, ...]] = STOCK_TOPICS
    key: ClassVar[str] = "sku"

    async def apply_latest(
        self, cur: psycopg.AsyncCursor[object], latest: Latest
    ) -> None:
        """Upsert each SKU once, from its last event."""
        rows = [
            (
                sku,
                event.originator_id,
                event.on_hand,  # type: ignore[attr-defined]
                event.originator_version,
                position,
                event.occurred_at,
                latest.counts[sku],
            )
            for sku, (event, position) in latest.last.items()
        ]
        await cur.execute(_UPSERT, (rows_json(rows),))
