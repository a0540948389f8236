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
        '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"' for value in values
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
        drafts: dict[uuid.UUID, _Draft] = {}
        earlier = await events_before(cur, stored_before(events))
        for oid, before in earlier.items():
            state = project(order.mutate, None, before)
            if state is None or not isinstance(before[0], order.OrderPlaced):
                raise LookupError(f"orders: order {oid} has no OrderPlaced in the log")
            placed = before[0].placed_at or before[0].occurred_at
            drafts[oid] = _Draft(state, placed, known=True)
        for event, position in events:
            oid = event.originator_id
            draft = drafts.get(oid)
            state = order.mutate(event, None if draft is None else draft.state)
            if state is None:
                raise LookupError(
                    f"orders: {type(event).__name__} at position {position} for "
                    f"unknown order {oid}"
                )
            if draft is None:  # placed in this batch (mutate() saw to it)
                draft = drafts[oid] = _Draft(state, None, known=False)
            if type(event) is order.OrderPlaced:
                draft.placed_at = event.placed_at or event.occurred_at
            draft.state = state
            draft.position = position
            draft.at = event.occurred_at
        # New orders are inserted (in a rebuild, nearly all of them; one there
        # already would fail loudly, an event applied twice), the others
        # upserted: one statement each for the batch.
        new: list[tuple[object, ...]] = []
        known: list[tuple[object, ...]] = []
        for draft in drafts.values():
            (known if draft.known else new).append(draft.row())
        if new:
            await cur.execute(_INSERT, (rows_json(new),))
        if known:
            await cur.execute(_UPSERT, (rows_json(known),))


class _Draft:
    """One order's row as a batch folds it (slots: set once per event)."""

    __slots__ = ("at", "known", "placed_at", "position", "state")

    def __init__(
        self, state: order.Order, placed_at: datetime | None, *, known: bool
    ) -> None:
        self.state = state
        #: The platform's time of placement, else when the hub recorded it.
        self.placed_at = placed_at
        #: Whether the order had events before the batch (its row exists).
        self.known = known
        self.position = 0
        self.at: datetime | None = None

    def row(self) -> tuple[object, ...]:
        """The order's row after the batch's last event of it."""
        state = self.state
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
            self.placed_at,
            state.version,
            self.position,
            self.at,
        )
