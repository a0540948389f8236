"""Webhook dead letters: pushes naming an order the platform says does not exist.

Such a push is signed and well formed, but reading its order gets a definitive
"no such order" from the platform, so answering 503 would only make the
platform re-send it forever. The webhook acknowledges it and records it here
(``webhook_dead_letters``, one row per platform, shop and order, counting the
pushes), where ``hub status`` and an operator can find it.
"""

from __future__ import annotations

from datetime import datetime

import msgspec
import psycopg
from psycopg.rows import class_row


class WebhookDeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """One recorded order the platform says does not exist."""

    platform: str
    shop_id: str
    order_id: str
    code: str
    message: str
    pushes: int
    first_at: datetime
    last_at: datetime


class WebhookDeadLetters:
    """The ``webhook_dead_letters`` table (migration 0010).

    Each call opens its own connection: dead letters are rare, and the
    webhook should not hold a connection for them.

    Args:
        database_url: PostgreSQL holding the table (migrated).
    """

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    async def record(
        self, platform: str, shop_id: str, order_id: str, code: str, message: str
    ) -> None:
        """Record one push of a missing order (again: count it)."""
        async with await psycopg.AsyncConnection.connect(
            self.database_url, autocommit=True
        ) as conn:
            await conn.execute(
                "INSERT INTO webhook_dead_letters "
                "(platform, shop_id, order_id, code, message) "
                "VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (platform, shop_id, order_id) DO UPDATE SET "
                "pushes = webhook_dead_letters.pushes + 1, code = EXCLUDED.code, "
                "message = EXCLUDED.message, last_at = now()",
                (platform, shop_id, order_id, code, message),
            )

    async def recent(self, limit: int = 5) -> tuple[int, list[WebhookDeadLetter]]:
        """How many orders are recorded, and the ``limit`` newest."""
        async with await psycopg.AsyncConnection.connect(self.database_url) as conn:
            counted = await conn.execute("SELECT count(*) FROM webhook_dead_letters")
            row = await counted.fetchone()
            cur = conn.cursor(row_factory=class_row(WebhookDeadLetter))
            await cur.execute(
                "SELECT platform, shop_id, order_id, code, message, pushes, "
                "first_at, last_at FROM webhook_dead_letters "
                "ORDER BY last_at DESC LIMIT %s",
                (limit,),
            )
            return (0 if row is None else int(row[0])), await cur.fetchall()
