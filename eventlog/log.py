"""The log's reader: positions and batches of stored events, in log order.

The projections and the relay follow the same log; both read it here.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

import psycopg
from psycopg import sql

from domain.events import Event, event_class
from eventlog.codec import EVENTS_TABLE, topic_decoder

#: Upper bound on waiting for a notification before looking anyway (a safety
#: net for a lost NOTIFY, not the way new events are found).
NOTIFY_SAFETY_S = 2.0


async def read_log(
    conn: psycopg.AsyncConnection[object],
    after: int,
    limit: int,
    *,
    topics: Sequence[str] = (),
) -> list[tuple[int, str, bytes]]:
    """Up to ``limit`` stored events after log position ``after``, in order.

    Args:
        conn: connection to the log's database.
        after: position to read after.
        limit: most rows returned.
        topics: stored topics (``NAME:vN``) to keep; empty keeps every event.
    """
    where: sql.Composable = sql.SQL("notification_id > %s")
    params: list[object] = [after]
    if topics:
        where += sql.SQL(" AND topic = ANY(%s)")
        params.append(list(topics))
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


#: The position of the newest event in the log (0 if empty), as one row.
HEAD_QUERY = sql.SQL("SELECT coalesce(max(notification_id), 0) FROM {}").format(
    sql.Identifier(EVENTS_TABLE)
)


async def log_head(conn: psycopg.AsyncConnection[object]) -> int:
    """Position of the newest event in the log (0 if empty)."""
    cur = await conn.execute(HEAD_QUERY)
    row = await cur.fetchone()
    return int(row[0]) if row else 0  # type: ignore[index]


def stored_topics(names: Sequence[str]) -> list[str]:
    """Every stored topic (``NAME:vN``, all versions) of the given event names."""
    return [
        f"{name}:v{version}"
        for name in names
        for version in range(1, event_class(name).VERSION + 1)
    ]


async def events_before(
    cur: psycopg.AsyncCursor[object], versions: Mapping[uuid.UUID, int]
) -> dict[uuid.UUID, list[Event]]:
    """Each aggregate's stored events before its version ``versions[id]``,
    oldest first, in one statement (a read model that keeps no folded state
    folds them again).

    Raises:
        MapperDeserialisationError: a stored topic names no known event class.
    """
    found: dict[uuid.UUID, list[Event]] = {key: [] for key in versions}
    if not versions:
        return found
    await cur.execute(
        sql.SQL(
            "SELECT e.originator_id, e.topic, e.state "
            "FROM unnest(%b::uuid[], %b::bigint[]) AS a(id, upto) "
            "JOIN {} AS e ON e.originator_id = a.id AND e.originator_version < a.upto "
            "ORDER BY e.originator_id, e.originator_version"
        ).format(sql.Identifier(EVENTS_TABLE)),
        (list(versions), list(versions.values())),
        binary=True,
    )
    for row in await cur.fetchall():
        aggregate_id: uuid.UUID = row[0]  # type: ignore[index]
        decode = topic_decoder(str(row[1]))  # type: ignore[index]
        found[aggregate_id].append(decode(bytes(row[2])))  # type: ignore[index]
    return found
