"""Orders: one row per platform order with its status and money.

Each row also holds the order's folded state, so an event is applied with the
domain's own :func:`domain.order.mutate` (the status rules live in one place)
and the columns are read off the new state.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import ClassVar

import msgspec
import psycopg

from domain import order
from domain.events import Event
from projections.base import (
    BatchProjection,
    rows_json,
    select_rows,
    stored_before,
    topics_of,
)

_decode_state = msgspec.json.Decoder(order.Order).decode

#: Every order event, by stable topic.
ORDER_TOPICS: tuple[str, ...] = topics_of(order.OrderEvent)

_UPSERT = (
    "INSERT INTO orders (id, platform, platform_order_id, shop_id, channel_account, "
    "status, total_fen, paid_fen, refunded_fen, stock_refusals, placed_at, state, "
    "version, position, updated_at) "
    "SELECT id, platform, platform_order_id, shop_id, channel_account, status, "
    "total_fen, paid_fen, refunded_fen, "
    "ARRAY(SELECT jsonb_array_elements_text(state -> 'stock_refusals')), "
    "placed_at, state, version, position, updated_at FROM ("
    + select_rows(
        "id uuid, platform text, platform_order_id text, shop_id text, "
        "channel_account text, status text, total_fen bigint, paid_fen bigint, "
        "refunded_fen bigint, placed_at timestamptz, state jsonb, version bigint, "
        "position bigint, updated_at timestamptz"
    )
    + ") AS page "
    "ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, "
    "paid_fen = EXCLUDED.paid_fen, refunded_fen = EXCLUDED.refunded_fen, "
    "stock_refusals = EXCLUDED.stock_refusals, state = EXCLUDED.state, "
    "version = EXCLUDED.version, position = EXCLUDED.position, "
    "updated_at = EXCLUDED.updated_at"
)


class OrdersProjection(BatchProjection):
    """Table ``orders``: one row per order, for ``hub orders show`` and reports.

    Columns: the order's keys (``platform``, ``platform_order_id``,
    ``shop_id``, ``channel_account``), ``status``, ``total_fen``,
    ``paid_fen``, ``refunded_fen``, ``stock_refusals`` (``action:hub_sku`` of
    each stock command refused, e.g. an oversold ``commit:A1``), ``placed_at``
    (the platform's time, else when the hub recorded it), and the log
    ``position`` of its last event.
    """

    name: ClassVar[str] = "orders"
    topics: ClassVar[tuple[str, ...]] = ORDER_TOPICS

    async def apply_batch(
        self, cur: psycopg.AsyncCursor[object], events: list[tuple[Event, int]]
    ) -> None:
        """Read the batch's orders placed before it, fold the events in memory,
        write each once."""
        states: dict[uuid.UUID, order.Order] = {}
        placed_at: dict[uuid.UUID, datetime] = {}
        if ids := stored_before(events):
            await cur.execute(
                "SELECT id, state::text, placed_at FROM orders "
                "WHERE id = ANY(%b::uuid[])",
                (ids,),
            )
            for row in await cur.fetchall():
                oid: uuid.UUID = row[0]  # type: ignore[index]
                states[oid] = _decode_state(str(row[1]))  # type: ignore[index]
                placed_at[oid] = row[2]  # type: ignore[index]
        touched: dict[uuid.UUID, tuple[int, datetime]] = {}
        for event, position in events:
            oid = event.originator_id
            state = order.mutate(event, states.get(oid))
            if state is None:
                raise LookupError(
                    f"orders: {type(event).__name__} at position {position} for "
                    f"unknown order {oid}"
                )
            states[oid] = state
            if isinstance(event, order.OrderPlaced):
                placed_at[oid] = event.placed_at or event.occurred_at
            touched[oid] = (position, event.occurred_at)
        rows = [
            _row(states[oid], placed_at[oid], position, at)
            for oid, (position, at) in touched.items()
        ]
        # One statement for the batch; stock_refusals is read off the state.
        await cur.execute(_UPSERT, (rows_json(rows),))


def _row(
    state: order.Order, placed_at: datetime, position: int, at: datetime
) -> tuple[object, ...]:
    return (
        state.id,
        state.platform,
        state.platform_order_id,
        state.shop_id,
        state.channel_account,
        state.status,
        state.total_fen,
        state.paid_fen,
        state.refunded_fen,
        placed_at,
        state,
        state.version,
        position,
        at,
    )
