"""Orders: one row per platform order with its status and money.

An event is applied with the domain's own :func:`domain.order.mutate` (the
status rules live in one place) and the columns are read off the new state.
The row keeps no folded state: an order with events before a batch is folded
again from its events in the log (a handful per order), which costs less than
writing, parsing and reading back a ``jsonb`` state with every row (in a
rebuild, half the projection's database time).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import ClassVar

import psycopg

from domain import order
from domain.events import Event, project
from eventlog.log import events_before
from projections.base import (
    BatchProjection,
    rows_json,
    select_rows,
    stored_before,
    topics_of,
)

#: Every order event, by stable topic.
ORDER_TOPICS: tuple[str, ...] = topics_of(order.OrderEvent)

_INSERT = (
    "INSERT INTO orders (id, platform, platform_order_id, shop_id, channel_account, "
    "status, total_fen, paid_fen, refunded_fen, stock_refusals, placed_at, "
    "version, position, updated_at) "
    + select_rows(
        "id uuid, platform text, platform_order_id text, shop_id text, "
        "channel_account text, status text, total_fen bigint, paid_fen bigint, "
        "refunded_fen bigint, stock_refusals text[], placed_at timestamptz, "
        "version bigint, position bigint, updated_at timestamptz"
    )
)
#: The rows of orders that had events before the batch.
_UPSERT = (
    _INSERT + " ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, "
    "paid_fen = EXCLUDED.paid_fen, refunded_fen = EXCLUDED.refunded_fen, "
    "stock_refusals = EXCLUDED.stock_refusals, "
    "version = EXCLUDED.version, position = EXCLUDED.position, "
    "updated_at = EXCLUDED.updated_at"
)


def text_array(values: tuple[str, ...]) -> str:
    """``values`` as a PostgreSQL array literal (``{"a","b"}``), for a
    ``text[]`` column of :func:`select_rows` (cheaper to parse than a JSON
    array turned into one, row by row)."""
    if not values:
        return "{}"
    quoted = (
        '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        for value in values
    )
    return "{" + ",".join(quoted) + "}"


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
        """Fold the earlier events of the batch's orders placed before it from
        the log, then the batch's events in memory; write each order once."""
        states: dict[uuid.UUID, order.Order] = {}
        placed_at: dict[uuid.UUID, datetime] = {}
        earlier = await events_before(cur, stored_before(events))
        for oid, before in earlier.items():
            state = project(order.mutate, None, before)
            if state is None or not isinstance(before[0], order.OrderPlaced):
                raise LookupError(f"orders: order {oid} has no OrderPlaced in the log")
            states[oid] = state
            placed_at[oid] = before[0].placed_at or before[0].occurred_at
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
        # New orders are inserted (in a rebuild, nearly all of them; one there
        # already would fail loudly, an event applied twice), the others
        # upserted: one statement each for the batch.
        new: list[tuple[object, ...]] = []
        known: list[tuple[object, ...]] = []
        for oid, (position, at) in touched.items():
            row = _row(states[oid], placed_at[oid], position, at)
            (known if oid in earlier else new).append(row)
        if new:
            await cur.execute(_INSERT, (rows_json(new),))
        if known:
            await cur.execute(_UPSERT, (rows_json(known),))


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
        text_array(state.stock_refusals),
        placed_at,
        state.version,
        position,
        at,
    )
