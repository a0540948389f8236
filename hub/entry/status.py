"""``hub status``: the log head, how far each consumer of the log is behind, and
the state of every supervised task of the running hub (from its ``/health``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import msgspec
import nats
import psycopg
from nats.js.errors import NotFoundError
from psycopg import sql

from eventlog.codec import EVENTS_TABLE, decode_event
from eventlog.log import log_head
from hub.entry.health import TaskReport, decode_health
from hub.infra.relay import stream_position
from hub.infra.settings import nats_servers
from hub.messages import STREAM


@dataclass(frozen=True)
class Lag:
    """One consumer of the log: its position and how far behind it is."""

    name: str
    position: int
    events_behind: int
    seconds_behind: float


@dataclass(frozen=True)
class DeadLetter:
    """A stock push given up after its last retry (``stock_pushes`` table)."""

    platform: str
    shop_id: str
    sku: str
    quantity: int
    request_id: str
    code: str | None
    message: str
    at: datetime


@dataclass(frozen=True)
class Status:
    """The log head, every consumer's lag, and the stock push dead letters."""

    head: int
    consumers: list[Lag]
    dead_letters: int = 0
    recent_dead_letters: list[DeadLetter] = field(default_factory=list)
    #: The running hub's supervised tasks (empty when none answered).
    tasks: list[TaskReport] = field(default_factory=list)
    #: Where the tasks were read, or why they could not be.
    health: str = ""


#: How many of the newest dead letters ``hub status`` lists.
RECENT_DEAD_LETTERS = 5


async def _dead_letters(
    conn: psycopg.AsyncConnection[object],
) -> tuple[int, list[DeadLetter]]:
    """The number of dead-lettered stock pushes and the newest few."""
    cur = await conn.execute("SELECT to_regclass('stock_pushes') IS NOT NULL")
    row = await cur.fetchone()
    if not row or not row[0]:  # type: ignore[index]
        return 0, []
    cur = await conn.execute(
        "SELECT count(*) FROM stock_pushes WHERE status = 'dead_lettered'"
    )
    row = await cur.fetchone()
    count = int(row[0]) if row else 0  # type: ignore[index]
    cur = await conn.execute(
        "SELECT platform, shop_id, sku, quantity, request_id, code, message, "
        "updated_at FROM stock_pushes WHERE status = 'dead_lettered' "
        "ORDER BY updated_at DESC, position DESC LIMIT %s",
        (RECENT_DEAD_LETTERS,),
    )
    recent = [
        DeadLetter(
            platform=str(r[0]),  # type: ignore[index]
            shop_id=str(r[1]),  # type: ignore[index]
            sku=str(r[2]),  # type: ignore[index]
            quantity=int(r[3]),  # type: ignore[index]
            request_id=str(r[4]),  # type: ignore[index]
            code=None if r[5] is None else str(r[5]),  # type: ignore[index]
            message=str(r[6]),  # type: ignore[index]
            at=r[7],  # type: ignore[index]
        )
        for r in await cur.fetchall()
    ]
    return count, recent


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


async def read_health(url: str) -> tuple[list[TaskReport], str]:
    """The tasks a running hub reports at ``url`` (its ``/health``), and
    where they came from or why none did."""
    try:
        async with httpx.AsyncClient(timeout=HEALTH_TIMEOUT_S) as client:
            response = await client.get(url)
        report = decode_health(response.content)
    except httpx.HTTPError as exc:
        return [], f"no hub answered at {url} ({type(exc).__name__})"
    except msgspec.DecodeError as exc:
        return [], f"{url} answered no health report ({exc})"
    return report.tasks, url


#: How long ``hub status`` waits for the running hub's ``/health``.
HEALTH_TIMEOUT_S = 3.0


async def read_status(
    database_url: str, nats_url: str | None, *, health_url: str | None = None
) -> Status:
    """Read positions from PostgreSQL (projections) and JetStream (relay),
    and the running hub's tasks from ``health_url``."""
    tasks, health = await read_health(health_url) if health_url else ([], "")
    consumers: list[tuple[str, int]] = []
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        head = await log_head(conn)
        cur = await conn.execute(
            "SELECT name, position FROM projection_tracking ORDER BY name"
        )
        consumers += [(f"projection {r[0]}", int(r[1])) for r in await cur.fetchall()]
        if nats_url:
            nc = await nats.connect(nats_servers(nats_url), connect_timeout=5)
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
        dead, recent = await _dead_letters(conn)
    return Status(
        head=head,
        consumers=lags,
        dead_letters=dead,
        recent_dead_letters=recent,
        tasks=tasks,
        health=health,
    )


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
    if status.health:
        lines += ["", f"tasks ({status.health}):"]
        for t in status.tasks:
            lines.append(f"  {t.name:<{width}}  {t.state:<8}  since {t.since}")
            if t.last_error:
                lines.append(f"    failures {t.failures}, last: {t.last_error}")
    lines += ["", f"stock push dead letters: {status.dead_letters}"]
    for d in status.recent_dead_letters:
        lines.append(
            f"  {d.at:%Y-%m-%d %H:%M:%S} {d.platform}/{d.shop_id} sku {d.sku} -> "
            f"{d.quantity} [{d.code or '-'}] {d.message} ({d.request_id})"
        )
    return "\n".join(lines)
