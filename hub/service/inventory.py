"""Reading stock and orders: one SKU or one order explained from the log.

``hub stock show`` folds the SKU's stock item from its events (so every state,
open order and reservation is exact, not a view that may lag) and adds what
each platform last reported from the ``stock_drift`` view; ``hub orders show``
prints an order's state and its whole history from the log.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import psycopg
from psycopg import sql

from domain import order, stock
from domain.events import Event, project
from eventlog.codec import EVENTS_TABLE, decode_event
from hub.messages import event_type, payload_of
from projections.inventory import DriftRow, StockDriftView

#: Open orders and reservations ``hub stock show`` lists before summing up.
LISTED = 20


class NotFoundError(LookupError):
    """The log has no stock item or order with the key asked for."""


async def aggregate_history(
    database_url: str, aggregate_id: uuid.UUID
) -> list[tuple[int, Event]]:
    """Every event of one aggregate from the log, with its log position."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            sql.SQL(
                "SELECT notification_id, topic, state FROM {} "
                "WHERE originator_id = %s ORDER BY originator_version"
            ).format(sql.Identifier(EVENTS_TABLE)),
            (aggregate_id,),
            binary=True,
        )
        rows = await cur.fetchall()
    return [(int(r[0]), decode_event(str(r[1]), bytes(r[2]))) for r in rows]


async def stock_history(database_url: str, sku: str) -> list[tuple[int, Event]]:
    """Every event of hub SKU ``sku``'s stock item.

    Raises:
        NotFoundError: the SKU was never received.
    """
    history = await aggregate_history(database_url, stock.stock_item_id(sku))
    if not history:
        raise NotFoundError(f"sku {sku!r} has no stock item (never received)")
    return history


async def order_history(
    database_url: str, platform: str, platform_order_id: str
) -> list[tuple[int, Event]]:
    """Every event of one platform order.

    Raises:
        NotFoundError: the hub has no such order.
    """
    oid = order.order_id(platform, platform_order_id)
    history = await aggregate_history(database_url, oid)
    if not history:
        raise NotFoundError(f"no order {platform}/{platform_order_id} (id {oid})")
    return history


async def read_drift(database_url: str, sku: str) -> list[DriftRow]:
    """Every platform shop's row of ``stock_drift`` for ``sku``."""
    return await StockDriftView(database_url).of_sku(sku)


def _listed(refs: dict[str, int]) -> list[str]:
    shown = [f"    {ref}  {units}" for ref, units in sorted(refs.items())[:LISTED]]
    if len(refs) > LISTED:
        shown.append(f"    ... and {len(refs) - LISTED} more")
    return shown


def format_stock(history: list[tuple[int, Event]], drift: list[DriftRow]) -> str:
    """Every state of a SKU, its open orders, reservations and platforms' drift."""
    item: stock.StockItem = project(stock.mutate, None, (e for _, e in history))
    threshold = item.low_stock_threshold
    if threshold is None:
        alert = "none set"
    elif item.low_stock_alert:
        alert = f"{threshold}: ALERT raised (available {item.available} <= {threshold})"
    else:
        alert = f"{threshold}: ok"
    lines = [
        f"stock {item.sku} (item {item.id}, version {item.version}, "
        f"log position {history[-1][0]})",
        f"  on hand    {item.on_hand}",
        f"  committed  {item.committed}  ({len(item.commitments)} open orders)",
        f"  reserved   {item.reserved}  ({len(item.reservations)} reservations)",
        f"  safety     {item.safety}  (safety stock {item.safety_stock})",
        f"  available  {item.available}",
        f"  low-stock threshold {alert}",
    ]
    if item.commitments:
        lines += ["  open orders (order ref, units):", *_listed(item.commitments)]
    if item.reservations:
        lines += ["  reservations (reference, units):", *_listed(item.reservations)]
    if not drift:
        lines.append("platforms: no drift beyond tolerance reported")
    else:
        lines.append("platforms (last drift beyond tolerance, from stock_drift):")
        lines += [
            f"  {d.platform}/{d.shop_id or '-'}  reported {d.reported}  expected "
            f"{d.expected}  drift {d.drift:+d}  (tolerance {d.tolerance})  at "
            f"{d.detected_at.isoformat()}  #{d.position}"
            for d in drift
        ]
    return "\n".join(lines)


def _fen(amount: int | None) -> str:
    return "-" if amount is None else f"{amount} fen"


def explain(event: Event) -> str:
    """One line of what ``event`` recorded: its public payload, keys left out."""
    data: dict[str, Any] = msgspec.to_builtins(payload_of(event))
    for key in ("platform", "platform_order_id"):
        data.pop(key, None)
    if "lines" in data and isinstance(event, order.OrderPlaced):
        data["lines"] = len(event.lines)
    parts = [f"{k}={v}" for k, v in data.items() if v not in ("", None, [], ())]
    return f"{event_type(event)}  " + ", ".join(parts)


def format_order(history: list[tuple[int, Event]]) -> str:
    """An order's state, lines and every event of its history."""
    state: order.Order = project(order.mutate, None, (e for _, e in history))
    lines = [
        f"order {state.platform}/{state.platform_order_id} (id {state.id}, "
        f"version {state.version})",
        f"  shop {state.shop_id}, channel account {state.channel_account or '-'}",
        f"  status {state.status} ({' -> '.join(state.steps)})",
        f"  total {_fen(state.total_fen)}, paid {_fen(state.paid_fen)}, "
        f"refunded {_fen(state.refunded_fen)}",
        "  lines:",
    ]
    lines += [
        f"    {ln.platform_sku_id} -> {ln.hub_sku}  {ln.quantity} x "
        f"{ln.unit_price_fen} fen - {ln.discount_fen} = {ln.total_fen} fen"
        for ln in state.lines
    ]
    if state.stock_refusals:
        lines.append(f"  stock refused: {', '.join(state.stock_refusals)}")
    lines.append("history (from the log):")
    lines += [
        f"  #{position}  v{event.originator_version}  "
        f"{event.occurred_at.isoformat()}  {explain(event)}"
        for position, event in history
    ]
    return "\n".join(lines)
