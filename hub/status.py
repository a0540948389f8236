"""``hub status``: the log head, and how far each consumer of the log is behind."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import nats
import psycopg
from nats.js.errors import NotFoundError
from psycopg import sql

from hub.messages import STREAM
from hub.relay import stream_position
from hub.store import EVENTS_TABLE, decode_event


@dataclass(frozen=True)
class Lag:
    """One consumer of the log: its position and how far behind it is."""

    name: str
    position: int
    events_behind: int
    seconds_behind: float


@dataclass(frozen=True)
class Status:
    """The log head and every consumer's lag."""

    head: int
    consumers: list[Lag]


async def _age_of(conn: psycopg.AsyncConnection[object], position: int) -> float:
    """Seconds since the oldest event after ``position`` was recorded (0 if none)."""
    cur = await conn.execute(
        sql.SQL(
            "SELECT topic, state FROM {} WHERE notification_id > %s "
            "ORDER BY notification_id LIMIT 1"
        ).format(sql.Identifier(EVENTS_TABLE)),
        (position,),
    )
    row = await cur.fetchone()
    if row is None:
        return 0.0
    event = decode_event(str(row[0]), bytes(row[1]))  # type: ignore[index]
    return max(0.0, (datetime.now(UTC) - event.occurred_at).total_seconds())


async def read_status(database_url: str, nats_url: str | None) -> Status:
    """Read positions from PostgreSQL (projections) and JetStream (relay)."""
    consumers: list[tuple[str, int]] = []
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            sql.SQL("SELECT coalesce(max(notification_id), 0) FROM {}").format(
                sql.Identifier(EVENTS_TABLE)
            )
        )
        row = await cur.fetchone()
        head = int(row[0]) if row else 0
        cur = await conn.execute(
            "SELECT name, position FROM projection_tracking ORDER BY name"
        )
        consumers += [(f"projection {r[0]}", int(r[1])) for r in await cur.fetchall()]
        if nats_url:
            nc = await nats.connect(nats_url, connect_timeout=5)
            try:
                end = await stream_position(nc.jetstream(), STREAM)
                consumers.append((f"relay -> {STREAM}", end.position))
            except NotFoundError:
                consumers.append((f"relay -> {STREAM} (no stream yet)", 0))
            finally:
                await nc.close()
        lags = [
            Lag(name, pos, max(0, head - pos), await _age_of(conn, pos))
            for name, pos in consumers
        ]
    return Status(head=head, consumers=lags)


def format_status(status: Status) -> str:
    """A plain table for the terminal."""
    lines = [f"log head: {status.head}", ""]
    width = max([len(c.name) for c in status.consumers] + [8])
    lines.append(f"{'consumer':<{width}}  {'position':>10}  {'behind':>8}  seconds")
    for c in status.consumers:
        lines.append(
            f"{c.name:<{width}}  {c.position:>10}  {c.events_behind:>8}  "
            f"{c.seconds_behind:.3f}"
        )
    return "\n".join(lines)
