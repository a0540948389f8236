"""Stock views: every state per hub SKU, and each platform's last drift.

Every stock event records the SKU's resulting levels (on hand, committed,
reserved, safety), so the views copy them and never recompute; the settings
(safety stock, low-stock threshold) and the alert flag come from their own
events and are carried over from the stored row.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, cast

import msgspec
import psycopg

from domain import stock
from domain.events import Event
from projections.base import (
    BatchProjection,
    Latest,
    LatestProjection,
    rows_json,
    select_rows,
    topics_of,
)

#: The stock events that change a setting the inventory row carries over.
_SETTING_CLASSES: frozenset[type[Event]] = frozenset(
    (
        stock.SafetyStockSet,
        stock.LowStockThresholdSet,
        stock.StockLowAlertRaised,
        stock.StockLowAlertCleared,
    )
)
#: Every stock item event, by stable topic.
STOCK_TOPICS: tuple[str, ...] = topics_of(stock.StockEvent)


_INVENTORY_COLUMNS = (
    "sku, item_id, on_hand, committed, reserved, safety, available, safety_stock, "
    "low_stock_threshold, low_stock_alert, version, position, events_applied, "
    "updated_at"
)
_UPSERT_INVENTORY = (
    f"INSERT INTO inventory ({_INVENTORY_COLUMNS}) "
    + select_rows(
        "sku text, item_id uuid, on_hand bigint, committed bigint, reserved bigint, "
        "safety bigint, available bigint, safety_stock bigint, "
        "low_stock_threshold bigint, low_stock_alert boolean, version bigint, "
        "position bigint, events_applied bigint, updated_at timestamptz"
    )
    + " ON CONFLICT (sku) DO UPDATE SET "
    + ", ".join(
        f"{column} = EXCLUDED.{column}" for column in _INVENTORY_COLUMNS.split(", ")[1:]
    )
)


class InventoryProjection(LatestProjection):
    """Table ``inventory``: one row per hub SKU with every stock state.

    Columns: ``on_hand``, ``committed``, ``reserved``, ``safety``,
    ``available``, the settings ``safety_stock`` and ``low_stock_threshold``,
    ``low_stock_alert`` (raised and not cleared), the item's ``version``, the
    log ``position`` of its last event, and ``events_applied`` (so an event
    applied twice or skipped would show against a rebuild).
    """

    name: ClassVar[str] = "inventory"
    topics: ClassVar[tuple[str, ...]] = STOCK_TOPICS
    key: ClassVar[str] = "sku"
    every_topics: ClassVar[frozenset[str]] = frozenset(
        cls.TOPIC for cls in _SETTING_CLASSES
    )

    async def apply_latest(
        self, cur: psycopg.AsyncCursor[object], latest: Latest
    ) -> None:
        """Read the SKUs' rows once, carry their settings' changes and write
        each SKU once, from its last event."""
        await cur.execute(
            "SELECT sku, safety_stock, low_stock_threshold, low_stock_alert, "
            "events_applied FROM inventory WHERE sku = ANY(%b::text[])",
            (sorted(latest.last),),
        )
        settings: dict[str, list[object]] = {
            str(r[0]): list(r[1:])  # type: ignore[index]
            for r in await cur.fetchall()
        }
        for event, _ in latest.every:
            if type(event) in _SETTING_CLASSES:
                change = cast("stock.StockEvent", event)
                _change_setting(
                    settings.setdefault(change.sku, [0, None, False, 0]), change
                )
        rows = [
            _row(
                cast("stock.StockEvent", event),
                position,
                settings.get(sku),
                latest.counts[sku],
            )
            for sku, (event, position) in latest.last.items()
        ]
        await cur.execute(_UPSERT_INVENTORY, (rows_json(rows),))


def _change_setting(setting: list[object], event: stock.StockEvent) -> None:
    """Carry a setting event into ``[safety_stock, threshold, alert, applied]``."""
    if isinstance(event, stock.SafetyStockSet):
        setting[0] = event.safety_stock
    elif isinstance(event, stock.LowStockThresholdSet):
        setting[1] = event.threshold
    elif isinstance(event, stock.StockLowAlertRaised):
        setting[2] = True
    elif isinstance(event, stock.StockLowAlertCleared):
        setting[2] = False


def _row(
    event: stock.StockEvent, position: int, setting: list[object] | None, count: int
) -> tuple[object, ...]:
    """The inventory row after ``event``, the SKU's last in its batch of
    ``count`` events."""
    safety_stock, threshold, alert, applied = setting or (0, None, False, 0)
    return (
        event.sku,
        event.originator_id,
        event.on_hand,
        event.committed,
        event.reserved,
        event.safety,
        event.available,
        safety_stock,
        threshold,
        alert,
        event.originator_version,
        position,
        int(applied) + count,  # type: ignore[call-overload]
        event.occurred_at,
    )


_UPSERT_DRIFT = (
    "INSERT INTO stock_drift (sku, platform, shop_id, reported, expected, drift, "
    "tolerance, detected_at, position) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (sku, platform, shop_id) DO UPDATE SET "
    "reported = EXCLUDED.reported, expected = EXCLUDED.expected, "
    "drift = EXCLUDED.drift, tolerance = EXCLUDED.tolerance, "
    "detected_at = EXCLUDED.detected_at, position = EXCLUDED.position"
)


class StockDriftProjection(BatchProjection):
    """Table ``stock_drift``: per hub SKU, platform and shop, the last drift found.

    Only drifts beyond the report's tolerance are events
    (:class:`domain.stock.StockDriftDetected`); a report within tolerance
    decides nothing and so leaves the row as it was.
    """

    name: ClassVar[str] = "stock_drift"
    topics: ClassVar[tuple[str, ...]] = (stock.StockDriftDetected.TOPIC,)

    async def apply_batch(
        self, cur: psycopg.AsyncCursor[object], events: list[tuple[Event, int]]
    ) -> None:
        """Write the last drift of each (SKU, platform, shop) in the batch."""
        last: dict[tuple[str, str, str], tuple[object, ...]] = {}
        for event, position in events:
            assert isinstance(event, stock.StockDriftDetected)
            last[(event.sku, event.platform, event.shop_id)] = (
                event.sku,
                event.platform,
                event.shop_id,
                event.reported,
                event.expected,
                event.drift,
                event.tolerance,
                event.occurred_at,
                position,
            )
        await cur.executemany(_UPSERT_DRIFT, list(last.values()))


class DriftRow(msgspec.Struct, frozen=True, kw_only=True):
    """One row of ``stock_drift``: a platform shop's last drift beyond tolerance."""

    platform: str
    shop_id: str
    reported: int
    expected: int
    drift: int
    tolerance: int
    detected_at: datetime
    position: int


class StockDriftView:
    """Reads of the ``stock_drift`` table.

    Args:
        database_url: PostgreSQL holding the table.
    """

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    async def of_sku(self, sku: str) -> list[DriftRow]:
        """Every platform shop's row for ``sku``, by platform and shop."""
        async with await psycopg.AsyncConnection.connect(self.database_url) as conn:
            cur = await conn.execute(
                "SELECT platform, shop_id, reported, expected, drift, tolerance, "
                "detected_at, position FROM stock_drift WHERE sku = %s "
                "ORDER BY platform, shop_id",
                (sku,),
            )
            rows = await cur.fetchall()
        return [
            DriftRow(
                platform=r[0],
                shop_id=r[1],
                reported=int(r[2]),
                expected=int(r[3]),
                drift=int(r[4]),
                tolerance=int(r[5]),
                detected_at=r[6],
                position=int(r[7]),
            )
            for r in rows
        ]
