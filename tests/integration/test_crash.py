"""Crash safety: the relay and a projection killed with SIGKILL, again and again.

Each worker runs as its own process (``python -m hub relay`` / ``hub project``),
as it would in production, and is killed with SIGKILL while a load is being
written and after it has made some progress. At the end the stream holds every
event exactly once and in order, and the projection equals a fresh rebuild.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable

import msgspec
import nats
import psycopg
import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from domain.stock import ReceiveStock
from hub.bootstrap import bootstrap
from hub.infra.relay import stream_position
from hub.messages import H_MSG_ID, H_POSITION, STREAM, EventMessage
from hub.service.hub import Hub
from projections.base import rebuild
from projections.stock import StockOnHandProjection
from tests.conftest import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOTAL = 10_000
KILLS = 10


def _spawn(
    args: list[str], database_url: str, nats_url: str
) -> subprocess.Popen[bytes]:
    env = dict(os.environ, HUB_DATABASE_URL=database_url, HUB_NATS_URL=nats_url)
    return subprocess.Popen(
        [sys.executable, "-m", "hub", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _load(hub: Hub, start: int, count: int) -> None:
    await asyncio.gather(
        *(
            hub.execute(
                "stock.receive", ReceiveStock(sku=f"K-{i % 97}", quantity=1 + i % 5)
            )
            for i in range(start, start + count)
        )
    )


async def _kill_during_load(
    hub: Hub,
    args: list[str],
    progress: Callable[[], Awaitable[int]],
    nats_url: str,
) -> None:
    """Write TOTAL events in KILLS waves; SIGKILL the worker in each wave."""
    wave = TOTAL // KILLS
    for kill in range(KILLS):
        before = await progress()
        proc = _spawn(args, hub.database_url, nats_url)
        load = asyncio.create_task(_load(hub, kill * wave, wave))
        try:
            # Kill once the worker has made progress but (usually) not finished.
            await wait_until(
                lambda before=before: _gt(progress, before), timeout=60, interval=0.005
            )
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        await load
    final = _spawn(args, hub.database_url, nats_url)
    try:
        await wait_until(lambda: _ge(progress, TOTAL), timeout=120, interval=0.05)
    finally:
        final.send_signal(signal.SIGTERM)
        final.wait(30)


async def _gt(progress: Callable[[], Awaitable[int]], value: int) -> bool:
    return await progress() > value


async def _ge(progress: Callable[[], Awaitable[int]], value: int) -> bool:
    return await progress() >= value


@pytest.fixture
async def writer(database_url: str):  # type: ignore[no-untyped-def]
    hub = bootstrap(
        database_url=database_url, nats_url=None, run_relay=False, projections=[]
    )
    await hub.start()
    yield hub
    await hub.stop()


async def test_relay_killed_ten_times_publishes_each_event_once_in_order(
    writer: Hub, nats_url: str
) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()

    async def published() -> int:
        try:
            return (await stream_position(js)).position
        except nats.js.errors.NotFoundError:
            return 0

    try:
        await _kill_during_load(writer, ["relay"], published, nats_url)
        info = await js.stream_info(STREAM)
        assert info.state.messages == TOTAL
        sub = await js.pull_subscribe(
            "hub.events.>",
            stream=STREAM,
            config=ConsumerConfig(ack_policy=AckPolicy.NONE),
        )
        positions: list[int] = []
        ids: set[str] = set()
        while len(positions) < TOTAL:
            for msg in await sub.fetch(1000, timeout=10):
                headers = msg.headers or {}
                body = msgspec.json.decode(msg.data, type=EventMessage)
                assert headers[H_POSITION] == str(body.position)
                positions.append(body.position)
                ids.add(headers[H_MSG_ID])
    finally:
        await nc.close()
    assert positions == list(range(1, TOTAL + 1)), "every event once, in log order"
    assert len(ids) == TOTAL


async def test_projection_killed_ten_times_equals_fresh_rebuild(
    writer: Hub, nats_url: str
) -> None:
    async def projected() -> int:
        async with await psycopg.AsyncConnection.connect(writer.database_url) as conn:
            cur = await conn.execute(
                "SELECT coalesce(max(position), 0) FROM projection_tracking "
                "WHERE name = 'stock_on_hand'"
            )
            row = await cur.fetchone()
            return int(row[0]) if row else 0

    await _kill_during_load(writer, ["project", "stock_on_hand"], projected, nats_url)
    query = "SELECT sku, on_hand, version, position, events_applied FROM stock_on_hand"
    with psycopg.connect(writer.database_url) as conn:
        live = sorted(conn.execute(query).fetchall())
    await rebuild(writer.database_url, StockOnHandProjection())
    with psycopg.connect(writer.database_url) as conn:
        rebuilt = sorted(conn.execute(query).fetchall())
    assert live == rebuilt
    assert sum(row[4] for row in live) == TOTAL, "no event applied twice or skipped"
