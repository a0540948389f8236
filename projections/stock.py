"""Stock on hand per hub SKU, folded from the stock item events."""

from __future__ import annotations

from typing import ClassVar

import psycopg

from domain.events import Event
from projections.base import BatchProjection
from projections.inventory import STOCK_TOPICS, stock_event

_UPSERT = (
    "INSERT INTO stock_on_hand "
    "(sku, item_id, on_hand, version, position, updated_at, events_applied) "
    "SELECT * FROM unnest(%s::text[], %s::uuid[], %s::bigint[], %s::bigint[], "
    "%s::bigint[], %s::timestamptz[], %s::bigint[]) "
    "ON CONFLICT (sku) DO UPDATE SET on_hand = EXCLUDED.on_hand, "
    "version = EXCLUDED.version, position = EXCLUDED.position, "
    "updated_at = EXCLUDED.updated_at, "
    "events_applied = stock_on_hand.events_applied + EXCLUDED.events_applied"
)


class StockOnHandProjection(BatchProjection):
    """Table ``stock_on_hand``: one row per SKU with its on-hand quantity.

    It folds every stock item event (each records on hand after it); the
    ``inventory`` view has the other states. ``events_applied`` counts the
    events folded into each row, so an event applied twice (or skipped) would
    show against a rebuild.
    """

    name: ClassVar[str] = "stock_on_hand"
    topics: ClassVar[tuple[str, ...]] = STOCK_TOPICS

    async def apply_batch(
        self, cur: psycopg.AsyncCursor[object], events: list[tuple[Event, int]]
    ) -> None:
        """Fold the batch per SKU in memory, then upsert each SKU once."""
        rows: dict[str, list[object]] = {}
        for any_event, position in events:
            event = stock_event(any_event)
            row = rows.get(event.sku)
            applied = 1 if row is None else int(row[6]) + 1  # type: ignore[call-overload]
            rows[event.sku] = [
                event.sku,
                event.originator_id,
                event.on_hand,
                event.originator_version,
                position,
                event.occurred_at,
                applied,
            ]
        columns = list(zip(*rows.values(), strict=True))
        await cur.execute(_UPSERT, [list(c) for c in columns])
