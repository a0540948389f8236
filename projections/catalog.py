"""The product library as tables: each product, and what each shop holds of it.

Table ``catalog_products`` has one row per hub product: its current content
(title, price, SKUs and image URLs), revision, status (``active`` or
``retired``) and the platform edits taken in and refused (with the last
refusal's reason). Table ``catalog_shops`` has one row per product and shop: the
revision the shop's platform holds and the platform's id of the product (a shop
whose edit was refused holds revision 0 until the hub writes it back).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

import msgspec
import psycopg
from psycopg.rows import class_row

from domain import catalog
from domain.events import Event
from projections.base import Projection, topics_of


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


class CatalogProjection(Projection):
    """Tables ``catalog_products`` and ``catalog_shops``."""

    name: ClassVar[str] = "catalog"
    tables: ClassVar[tuple[str, ...]] = ("catalog_products", "catalog_shops")
    topics: ClassVar[tuple[str, ...]] = topics_of(catalog.ProductEvent)

    async def apply(
        self, cur: psycopg.AsyncCursor[object], event: Event, position: int
    ) -> None:
        """Write ``event``'s effect on its product's and shop's rows."""
        at = event.occurred_at
        if isinstance(event, catalog.ProductDefined):
            await cur.execute(
                "INSERT INTO catalog_products (product_id, product, title, "
                "price_fen, skus, images, revision, changed_at, position, "
                "updated_at) VALUES (%s, %s, %s, %s, %s::jsonb, %s::jsonb, %s, %s, "
                "%s, %s)",
                (
                    event.originator_id,
                    event.product,
                    event.title,
                    event.price_fen,
                    _json(event.skus),
                    _json(event.images),
                    event.revision,
                    at,
                    position,
                    at,
                ),
            )
        elif isinstance(event, catalog.ContentChanged):
            await self._content(cur, event, position)
        elif isinstance(event, catalog.ProductChangeRefused):
            await cur.execute(
                "UPDATE catalog_products SET edits_refused = edits_refused + 1, "
                "last_refusal = %s, position = %s, updated_at = %s "
                "WHERE product_id = %s",
                (event.reason, position, at, event.originator_id),
            )
            await self._shop(cur, event, 0, None, position)
        elif isinstance(event, catalog.ProductRetired):
            await cur.execute(
                "UPDATE catalog_products SET status = 'retired', revision = %s, "
                "changed_at = %s, position = %s, updated_at = %s "
                "WHERE product_id = %s",
                (event.revision, at, position, at, event.originator_id),
            )
        elif isinstance(event, catalog.ProductSynced):
            await self._shop(
                cur, event, event.revision, event.platform_product_id, position
            )

    async def _content(
        self,
        cur: psycopg.AsyncCursor[object],
        event: catalog.ContentChanged,
        position: int,
    ) -> None:
        given = {name: getattr(event, name) for name in event.fields}
        sets = [
            f"{name} = %s::jsonb" if name in {"skus", "images"} else f"{name} = %s"
            for name in given
        ]
        values: list[Any] = [
            _json(value) if name in {"skus", "images"} else value
            for name, value in given.items()
        ]
        received = isinstance(event, catalog.ProductChangeReceived)
        changed_at = (
            event.edited_at
            if isinstance(event, catalog.ProductChangeReceived)
            else event.occurred_at
        )
        await cur.execute(
            # The column names come from the event's fields (catalog.FIELDS).
            f"UPDATE catalog_products SET {', '.join(sets)}, revision = %s, "
            f"changed_at = %s, edits_taken = edits_taken + {int(received)}, "
            "position = %s, updated_at = %s WHERE product_id = %s",
            (
                *values,
                event.revision,
                changed_at,
                position,
                event.occurred_at,
                event.originator_id,
            ),
        )
        if isinstance(event, catalog.ProductChangeReceived):
            await self._shop(cur, event, event.revision, None, position)

    async def _shop(
        self,
        cur: psycopg.AsyncCursor[object],
        event: catalog.ProductSynced
        | catalog.ProductChangeReceived
        | catalog.ProductChangeRefused,
        revision: int,
        platform_product_id: str | None,
        position: int,
    ) -> None:
        """Set the shop's revision (and the platform's id, when given)."""
        if platform_product_id is None:
            await cur.execute(
                "UPDATE catalog_shops SET revision = %s, position = %s, "
                "updated_at = %s WHERE product = %s AND platform = %s "
                "AND shop_id = %s",
                (
                    revision,
                    position,
                    event.occurred_at,
                    event.product,
                    event.platform,
                    event.shop_id,
                ),
            )
            return
        await cur.execute(
            "INSERT INTO catalog_shops (product, platform, shop_id, revision, "
            "platform_product_id, position, updated_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (product, platform, shop_id) DO UPDATE SET "
            "revision = EXCLUDED.revision, "
            "platform_product_id = EXCLUDED.platform_product_id, "
            "position = EXCLUDED.position, updated_at = EXCLUDED.updated_at",
            (
                event.product,
                event.platform,
                event.shop_id,
                revision,
                platform_product_id,
                position,
                event.occurred_at,
            ),
        )


class ProductRow(msgspec.Struct, frozen=True, kw_only=True):
    """One row of ``catalog_products``."""

    product: str
    title: str
    price_fen: int
    revision: int
    status: str
    changed_at: datetime
    edits_taken: int
    edits_refused: int
    last_refusal: str


class ShopRow(msgspec.Struct, frozen=True, kw_only=True):
    """One row of ``catalog_shops``."""

    product: str
    platform: str
    shop_id: str
    revision: int
    platform_product_id: str


class CatalogView:
    """Reads the ``catalog`` projection's tables."""

    def __init__(self, database_url: str) -> None:
        """Read from ``database_url``."""
        self.database_url = database_url

    async def products(self) -> list[ProductRow]:
        """Every product, by code."""
        async with await psycopg.AsyncConnection.connect(self.database_url) as conn:
            cur = conn.cursor(row_factory=class_row(ProductRow))
            await cur.execute(
                "SELECT product, title, price_fen, revision, status, changed_at, "
                "edits_taken, edits_refused, last_refusal FROM catalog_products "
                "ORDER BY product"
            )
            return await cur.fetchall()

    async def shops(self, product: str | None = None) -> list[ShopRow]:
        """What each shop holds (of ``product`` only, if given)."""
        async with await psycopg.AsyncConnection.connect(self.database_url) as conn:
            cur = conn.cursor(row_factory=class_row(ShopRow))
            await cur.execute(
                "SELECT product, platform, shop_id, revision, platform_product_id "
                "FROM catalog_shops WHERE %(product)s::text IS NULL "
                "OR product = %(product)s ORDER BY product, platform, shop_id",
                {"product": product},
            )
            return await cur.fetchall()
