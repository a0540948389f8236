"""Customer profiles: one row per data subject, folded from the sealed buyers.

The profile mode of the platform decides the subject before the event is made
(``domain/personal.py``): merged buyers share a subject across platforms, the
others have one per platform account. This projection only gathers: the sealed
fields (newest wins), the accounts the subject bought through, the order count
and the CRM reference. It never sees plain text, so it needs no key, and a
rebuild after an erasure writes the same unreadable rows again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

import msgspec
import psycopg
from psycopg.rows import class_row

from domain.events import Event
from domain.order import OrderPlaced
from projections.base import Projection

_UPSERT = (
    "INSERT INTO customer_profiles (subject_id, mode, accounts, key_version, "
    "sealed, crm_ref, orders, first_order_at, last_order_at) "
    "VALUES (%s, %s, %s, %s, %s::jsonb, %s, 1, %s, %s) "
    "ON CONFLICT (subject_id) DO UPDATE SET "
    "mode = EXCLUDED.mode, "
    "accounts = ARRAY(SELECT DISTINCT unnest(customer_profiles.accounts "
    "|| EXCLUDED.accounts) ORDER BY 1), "
    "sealed = CASE WHEN EXCLUDED.key_version = customer_profiles.key_version "
    "THEN customer_profiles.sealed || EXCLUDED.sealed ELSE EXCLUDED.sealed END, "
    "key_version = EXCLUDED.key_version, "
    "crm_ref = CASE WHEN EXCLUDED.crm_ref = '' THEN customer_profiles.crm_ref "
    "ELSE EXCLUDED.crm_ref END, "
    "orders = customer_profiles.orders + 1, "
    "first_order_at = LEAST(customer_profiles.first_order_at, "
    "EXCLUDED.first_order_at), "
    "last_order_at = GREATEST(customer_profiles.last_order_at, "
    "EXCLUDED.last_order_at)"
)


class CustomerProfilesProjection(Projection):
    """Table ``customer_profiles``: each data subject's sealed profile."""

    name: ClassVar[str] = "customer_profiles"
    topics: ClassVar[tuple[str, ...]] = (OrderPlaced.TOPIC,)

    async def apply(
        self, cur: psycopg.AsyncCursor[object], event: Event, position: int
    ) -> None:
        """Fold one placement's sealed buyer into its subject's row."""
        if not isinstance(event, OrderPlaced) or event.buyer is None:
            return
        buyer = event.buyer
        at = event.placed_at or event.occurred_at
        await cur.execute(
            _UPSERT,
            (
                buyer.subject_id,
                buyer.mode,
                [f"{event.platform}/{event.shop_id}"],
                buyer.key_version,
                msgspec.json.encode(buyer.fields).decode(),
                buyer.crm_ref,
                at,
                at,
            ),
        )


@dataclass(frozen=True)
class ProfileRow:
    """One row of ``customer_profiles`` (fields still sealed)."""

    subject_id: str
    mode: str
    accounts: list[str]
    key_version: int
    sealed: dict[str, str]
    crm_ref: str
    orders: int
    first_order_at: datetime | None
    last_order_at: datetime | None


class ProfilesView:
    """Reads of ``customer_profiles``.

    Args:
        database_url: PostgreSQL holding the table.
    """

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    async def profile(self, subject_id: str) -> ProfileRow | None:
        """The subject's row, if the subject ever bought."""
        rows = await self._select("WHERE subject_id = %s", (subject_id,))
        return rows[0] if rows else None

    async def subjects(self, limit: int = 100) -> list[ProfileRow]:
        """The most recent profiles, newest first."""
        return await self._select(
            "ORDER BY last_order_at DESC NULLS LAST LIMIT %s", (limit,)
        )

    async def _select(self, tail: str, params: tuple[object, ...]) -> list[ProfileRow]:
        async with (
            await psycopg.AsyncConnection.connect(self.database_url) as conn,
            conn.cursor(row_factory=class_row(ProfileRow)) as cur,
        ):
            await cur.execute(
                "SELECT subject_id, mode, accounts, key_version, sealed, crm_ref, "
                "orders, first_order_at, last_order_at FROM customer_profiles " + tail,
                params,
            )
            return await cur.fetchall()
