"""The log's reader: positions and batches of stored events, in log order.

The projections and the relay follow the same log; both read it here.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql

from domain.events import event_class
from eventlog.codec import EVENTS_TABLE

#: Upper bound on waiting for a notification before looking anyway (a safety
#: net for a lost NOTIFY, not the way new events are found).
NOTIFY_SAFETY_S = 2.0


async def read_log(
    conn: psycopg.AsyncConnection[object],
    after: int,
    limit: int,
    *,
    topics: Sequence[str] = (),
    upto: int | None = None,
) -> list[tuple[int, str, bytes]]:
    """Up to ``limit`` stored events after log position ``after``, in order.

    Args:
        conn: connection to the log's database.
        after: position to read after.
        limit: most rows returned.
        topics: stored topics (``NAME:vN``) to keep; empty keeps every event.
        upto: last position to read (inclusive).
    """
    where: sql.Composable = sql.SQL("notification_id > %s")
    params: list[object] = [after]
    if topics:
        where += sql.SQL(" AND topic = ANY(%s)")
        params.append(list(topics))
    if upto is not None:
        where += sql.SQL(" AND notification_id <= %s")
        params.append(upto)
    params.append(limit)
    cur = await conn.execute(
        sql.SQL(
            "SELECT notification_id, topic, state FROM {} WHERE {} "
            "ORDER BY notification_id LIMIT %s"
        ).format(sql.Identifier(EVENTS_TABLE), where),
        params,
        binary=True,  # the state arrives as raw bytes, not hex text
    )
    rows = await cur.fetchall()
    return [(int(r[0]), str(r[1]), bytes(r[2])) for r in rows]  # type: ignore[index]


async def log_head(conn: psycopg.AsyncConnection[object]) -> int:
    """Position of the newest event in the log (0 if empty)."""
    cur = await conn.execute(
        sql.SQL("SELECT coalesce(max(notification_id), 0) FROM {}").format(
            sql.Identifier(EVENTS_TABLE)
        )
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0  # type: ignore[index]


def stored_topics(names: Sequence[str]) -> list[str]:
    """Every stored topic (``NAME:vN``, all versions) of the given event names."""
    return [
        f"{name}:v{version}"
        for name in names
        for version in range(1, event_class(name).VERSION + 1)
    ]
