"""Stock pushes and their outcomes, one row per request, from the log."""

from __future__ import annotations

from typing import ClassVar

import psycopg

from domain.events import Event
from domain.push import (
    StockPushDeadLettered,
    StockPushFailed,
    StockPushRequested,
    StockPushSent,
    StockPushSuperseded,
)
from projections.base import Projection

_INSERT = (
    "INSERT INTO stock_pushes (request_id, push_id, platform, shop_id, sku, "
    "platform_sku_id, quantity, target_version, reason, status, requested_at, "
    "updated_at, position) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'requested', %s, %s, %s) "
    "ON CONFLICT (request_id) DO NOTHING"
)
#: An outcome never moves a settled row back; a superseded push that was
#: already in flight still records whether it was sent or given up.
_UPDATE = (
    "UPDATE stock_pushes SET status = %s, attempts = %s, rounds = %s, "
    "previous = coalesce(%s, previous), code = %s, message = %s, "
    "updated_at = %s, position = %s "
    "WHERE request_id = %s AND status IN ('requested', 'failed', 'superseded')"
)
#: A failed round leaves a superseded row superseded.
_FAILED = _UPDATE.replace(", 'superseded')", ")")


class StockPushesProjection(Projection):
    """Table ``stock_pushes``: every requested push and its latest outcome.

    ``status`` is ``requested``, ``failed`` (a round failed, another follows),
    ``sent``, ``superseded`` or ``dead_lettered``.
    """

    name: ClassVar[str] = "stock_pushes"
    topics: ClassVar[tuple[str, ...]] = (
        StockPushRequested.TOPIC,
        StockPushSuperseded.TOPIC,
        StockPushSent.TOPIC,
        StockPushFailed.TOPIC,
        StockPushDeadLettered.TOPIC,
    )

    async def apply(
        self, cur: psycopg.AsyncCursor[object], event: Event, position: int
    ) -> None:
        """Insert a request's row, or write an outcome into it."""
        at = event.occurred_at
        if isinstance(event, StockPushRequested):
            await cur.execute(
                _INSERT,
                (
                    event.request_id,
                    event.originator_id,
                    event.platform,
                    event.shop_id,
                    event.sku,
                    event.platform_sku_id,
                    event.quantity,
                    event.target_version,
                    event.reason,
                    at,
                    at,
                    position,
                ),
            )
            return
        if isinstance(event, StockPushSuperseded):
            await cur.execute(
                "UPDATE stock_pushes SET status = 'superseded', updated_at = %s, "
                "position = %s WHERE request_id = %s "
                "AND status IN ('requested', 'failed')",
                (at, position, event.request_id),
            )
            return
        # status, attempts, rounds, previous, code: the rest is every outcome's.
        outcome: tuple[object, ...]
        if isinstance(event, StockPushSent):
            statement = _UPDATE
            outcome = ("sent", event.attempts, 0, event.previous, None)
        elif isinstance(event, StockPushFailed):
            statement = _FAILED
            outcome = ("failed", event.attempts, event.round, None, event.code)
        elif isinstance(event, StockPushDeadLettered):
            statement = _UPDATE
            outcome = ("dead_lettered", 0, event.rounds, None, event.code)
        else:
            return
        await cur.execute(
            statement, (*outcome, event.message, at, position, event.request_id)
        )
