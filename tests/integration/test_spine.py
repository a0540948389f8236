"""The spine against real PostgreSQL and nats-server: commit, relay, projections."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid

import msgspec
import nats
import psycopg
import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from domain.stock import AdjustStock, InsufficientStockError, ReceiveStock
from hub.entry.nats_api import build_broker
from hub.entry.status import read_status
from hub.infra import relay as relay_module
from hub.infra.migrate import Migration, MigrationError, bundled_migrations, migrate
from hub.messages import (
    H_AGGREGATE_ID,
    H_EVENT_TYPE,
    H_MSG_ID,
    H_POSITION,
    H_SCHEMA_VERSION,
    H_VERSION,
    STREAM,
    EventMessage,
)
from hub.service.hub import Hub
from projections.base import rebuild
from tests.hub_steps import started_hub

pytestmark = pytest.mark.integration


@pytest.fixture
async def hub(database_url: str, nats_url: str):  # type: ignore[no-untyped-def]
    async with started_hub(database_url, nats_url) as running:
        yield running


async def read_stream(nats_url: str, count: int) -> list[nats.aio.msg.Msg]:
    """Every message of HUB_EVENTS from the first, in stream order."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(
            "hub.events.>",
            stream=STREAM,
            config=ConsumerConfig(ack_policy=AckPolicy.NONE),
        )
        out: list[nats.aio.msg.Msg] = []
        while len(out) < count:
            out += await sub.fetch(min(500, count - len(out)), timeout=10)
        info = await js.stream_info(STREAM)
        assert info.state.messages == count
        return out
    finally:
        await nc.close()


async def test_concurrent_commands_are_committed_in_groups(hub: Hub) -> None:
    await hub.execute("stock.receive", ReceiveStock(sku="G-1", quantity=1))
    before = hub.committer.transactions
    outcomes = await asyncio.gather(
        *(
            hub.execute("stock.receive", ReceiveStock(sku=f"G-{i % 20}", quantity=1))
            for i in range(400)
        )
    )
    transactions = hub.committer.transactions - before
    assert transactions < 400 / 4, f"{transactions} transactions for 400 commands"
    positions = sorted(p for o in outcomes for p in o.positions)
    assert positions == list(range(2, 402)), "each caller got its durable position"
    # Durable: a fresh connection sees every event.
    with psycopg.connect(hub.database_url) as conn:
        (count,) = conn.execute("SELECT count(*) FROM hub_events").fetchone()  # type: ignore[misc]
    assert count == 401
    await hub.projection("stock_on_hand").wait_for(401)
    with psycopg.connect(hub.database_url) as conn:
        total = conn.execute("SELECT sum(on_hand) FROM stock_on_hand").fetchone()
    assert total == (401,)


async def test_submitted_commands_are_decided_in_order_and_answered_when_durable(
    hub: Hub,
) -> None:
    await hub.execute("stock.receive", ReceiveStock(sku="F-1", quantity=2))
    futures = [
        hub.submit("stock.adjust", AdjustStock(sku="F-1", delta=-1, reason=str(n)))
        for n in range(3)
    ]
    results = await asyncio.gather(*futures, return_exceptions=True)
    # In submission order: two units for the first two, the third refused.
    assert [r.state.on_hand for r in results[:2]] == [1, 0]  # type: ignore[union-attr]
    assert isinstance(results[2], InsufficientStockError)
    positions = [p for r in results[:2] for p in r.positions]  # type: ignore[union-attr]
    with psycopg.connect(hub.database_url) as conn:
        (head,) = conn.execute("SELECT max(notification_id) FROM hub_events").fetchone()  # type: ignore[misc]
    assert positions == [2, 3] and head == 3


async def test_group_with_a_refused_command_stores_the_others(hub: Hub) -> None:
    await hub.execute("stock.receive", ReceiveStock(sku="R-1", quantity=3))
    results = await asyncio.gather(
        hub.execute("stock.adjust", AdjustStock(sku="R-1", delta=-2, reason="a")),
        hub.execute("stock.adjust", AdjustStock(sku="R-1", delta=-2, reason="b")),
        hub.execute("stock.adjust", AdjustStock(sku="R-1", delta=1, reason="c")),
        return_exceptions=True,
    )
    assert isinstance(results[1], InsufficientStockError)
    assert not isinstance(results[0], BaseException)
    assert not isinstance(results[2], BaseException)
    assert results[2].state.on_hand == 2


async def test_repeated_request_id_is_applied_once(hub: Hub) -> None:
    cmd = ReceiveStock(sku="I-1", quantity=5, request_id="req-1")
    first = await hub.execute("stock.receive", cmd)
    again = await hub.execute("stock.receive", cmd)
    assert first.positions == (1,)
    # Answered with what the first attempt stored, not with "nothing".
    assert again.positions == (1,) and again.events == first.events
    assert again.state.on_hand == 5


async def test_relay_publishes_in_order_with_headers(hub: Hub, nats_url: str) -> None:
    for i in range(30):
        await hub.execute(
            "stock.receive", ReceiveStock(sku=f"H-{i % 3}", quantity=i + 1)
        )
    assert hub.relay is not None
    await hub.relay.wait_for(30)
    messages = await read_stream(nats_url, 30)
    ids = set()
    for position, msg in enumerate(messages, start=1):
        headers = msg.headers or {}
        body = msgspec.json.decode(msg.data, type=EventMessage)
        assert msg.subject == "hub.events.stock.StockReceived._"
        assert headers[H_POSITION] == str(position) == str(body.position)
        assert headers[H_MSG_ID] == str(body.event_id)
        assert headers[H_AGGREGATE_ID] == str(body.aggregate_id)
        assert headers[H_VERSION] == str(body.aggregate_version)
        assert headers[H_EVENT_TYPE] == "StockReceived"
        assert headers[H_SCHEMA_VERSION] == "1"
        assert body.data["quantity"] == position
        ids.add(body.event_id)
    assert len(ids) == 30


async def test_a_relay_stops_though_a_publish_swallows_its_cancellation(
    database_url: str, nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # nats-py's flush ends in ``except CancelledError: pass``; this publish
    # does the same, and holds the relay there until it is cancelled.
    publishing = asyncio.Event()
    publisher = relay_module._publisher

    def held_publisher(nc: nats.aio.client.Client) -> relay_module.Publish:
        publish = publisher(nc)

        async def held(messages: list[relay_module.Message]) -> None:
            await publish(messages)
            publishing.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()

        return held

    monkeypatch.setattr(relay_module, "_publisher", held_publisher)
    # No ack comes while it is held; it must not end the attempt either.
    monkeypatch.setattr(relay_module, "ACK_TIMEOUT_S", 3600.0)
    async with started_hub(database_url, nats_url) as hub:
        assert hub.relay is not None
        await hub.execute("stock.receive", ReceiveStock(sku="F-1", quantity=1))
        async with asyncio.timeout(30):
            await publishing.wait()
            await hub.relay.stop()  # returns: the lost cancellation is raised again


async def test_commands_over_nats_request_reply(hub: Hub, nats_url: str) -> None:
    broker = build_broker(nats_url, hub)
    await broker.start()
    nc = await nats.connect(nats_url)
    try:
        ok = await nc.request(
            "hub.cmd.stock.receive", b'{"sku":"N-1","quantity":4}', timeout=10
        )
        bad = await nc.request(
            "hub.cmd.stock.receive", b'{"sku":"N-1","quantity":-4}', timeout=10
        )
        refused = await nc.request(
            "hub.cmd.stock.adjust",
            b'{"sku":"N-1","delta":-5,"reason":"x"}',
            timeout=10,
        )
    finally:
        await nc.close()
        await broker.stop()
    assert msgspec.json.decode(ok.data)["ok"] is True
    bad_reply = msgspec.json.decode(bad.data)
    assert bad_reply["ok"] is False
    assert "$.quantity" in bad_reply["error"]["message"]
    refused_reply = msgspec.json.decode(refused.data)
    assert refused_reply["error"]["code"] == "insufficient_stock"
    with psycopg.connect(hub.database_url) as conn:
        (count,) = conn.execute("SELECT count(*) FROM hub_events").fetchone()  # type: ignore[misc]
    assert count == 1, "refused and malformed commands changed nothing"


async def test_status_reports_positions_and_lag(hub: Hub, nats_url: str) -> None:
    await hub.execute("stock.receive", ReceiveStock(sku="S-1", quantity=1))
    assert hub.relay is not None
    await hub.relay.wait_for(1)
    await hub.projection("stock_on_hand").wait_for(1)
    status = await read_status(hub.database_url, nats_url)
    assert status.head == 1
    behind = {c.name: c.events_behind for c in status.consumers}
    assert behind["projection stock_on_hand"] == 0
    assert behind[f"relay -> {STREAM}"] == 0


async def test_projection_rebuild_equals_live(hub: Hub) -> None:
    for i in range(50):
        await hub.execute("stock.receive", ReceiveStock(sku=f"P-{i % 7}", quantity=2))
    await hub.projection("stock_on_hand").wait_for(50)
    query = "SELECT sku, on_hand, version, position, events_applied FROM stock_on_hand"
    with psycopg.connect(hub.database_url) as conn:
        live = sorted(conn.execute(query).fetchall())
    assert await rebuild(hub.database_url, hub.projection("stock_on_hand").projection)
    with psycopg.connect(hub.database_url) as conn:
        rebuilt = sorted(conn.execute(query).fetchall())
    assert live == rebuilt
    assert sum(r[4] for r in live) == 50


def test_migrations_applied_concurrently_run_once(database_url: str) -> None:
    results: list[list[str]] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        results.append(migrate(database_url))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    names = [m.name for m in bundled_migrations()]
    assert sorted(results[0] + results[1]) == sorted(names)
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT name FROM hub_schema_migrations").fetchall()
    assert sorted(r[0] for r in rows) == sorted(names)


def test_edited_applied_migration_is_refused(database_url: str) -> None:
    table = f"m_{uuid.uuid4().hex[:8]}"
    original = [Migration("0001_t.sql", f"CREATE TABLE {table} (a int);")]
    assert migrate(database_url, original) == ["0001_t.sql"]
    assert migrate(database_url, original) == []
    edited = [Migration("0001_t.sql", f"CREATE TABLE {table} (a int, b int);")]
    with pytest.raises(MigrationError, match=r"0001_t\.sql was edited"):
        migrate(database_url, edited)
