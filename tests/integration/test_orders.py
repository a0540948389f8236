"""Orders move stock, against real PostgreSQL and nats-server.

The order-stock process manager turns order events into stock commands; the
inventory, orders and stock_drift views follow; a low-stock alert reaches
HUB_EVENTS through the relay.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import nats
import psycopg
import pytest

from domain import order, stock
from domain.events import Context, DomainError, Event, project
from eventlog.log import read_log
from hub.bootstrap import bootstrap
from hub.infra.store import decode_event
from hub.messages import H_EVENT_TYPE, EventMessage
from hub.service.commands import STOCK_RULES
from hub.service.hub import Hub
from hub.service.inventory import (
    format_order,
    format_stock,
    order_history,
    read_drift,
    stock_history,
)
from projections.base import rebuild
from tests.conftest import wait_until
from tests.hub_steps import head, settle, started_hub

pytestmark = pytest.mark.integration

WECHAT = "wechat_shop"


@pytest.fixture
async def hub(database_url: str, nats_url: str) -> AsyncIterator[Hub]:
    async with started_hub(database_url, nats_url) as running:
        yield running


def place(number: str, *lines: tuple[str, int], platform: str = WECHAT) -> Any:
    return order.PlaceOrder(
        platform=platform,
        platform_order_id=number,
        shop_id="shop-1",
        lines=tuple(
            order.OrderLine(
                platform_sku_id=f"p-{sku}",
                hub_sku=sku,
                quantity=quantity,
                unit_price_fen=1000,
            )
            for sku, quantity in lines
        ),
    )


def keys(number: str, platform: str = WECHAT) -> dict[str, str]:
    return {"platform": platform, "platform_order_id": number}


def query(hub: Hub, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(hub.database_url) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def levels(hub: Hub, sku: str) -> tuple[int, ...] | None:
    rows = query(
        hub,
        "SELECT on_hand, committed, reserved, safety, available FROM inventory "
        "WHERE sku = %s",
        sku,
    )
    return tuple(rows[0]) if rows else None


async def test_placing_an_order_commits_its_stock(hub: Hub) -> None:
    await hub.execute("stock.receive", stock.ReceiveStock(sku="A1", quantity=10))
    await hub.execute("stock.receive", stock.ReceiveStock(sku="B1", quantity=5))
    await hub.execute("order.place", place("1", ("A1", 3), ("B1", 1), ("A1", 1)))
    await wait_until(lambda: levels(hub, "A1") == (10, 4, 0, 0, 6))
    await settle(hub)
    assert levels(hub, "B1") == (5, 1, 0, 0, 4)
    item = await hub.committer.load(STOCK_RULES, stock.stock_item_id("A1"))
    assert item.commitments == {"wechat_shop:1": 4}
    assert query(hub, "SELECT status, total_fen FROM orders") == [("placed", 5000)]


async def test_cancel_releases_and_ship_consumes(hub: Hub) -> None:
    await hub.execute("stock.receive", stock.ReceiveStock(sku="A1", quantity=10))
    await hub.execute("order.place", place("1", ("A1", 3)))
    await hub.execute("order.place", place("2", ("A1", 2)))
    await wait_until(lambda: levels(hub, "A1") == (10, 5, 0, 0, 5))
    await hub.execute("order.cancel", order.CancelOrder(**keys("1"), reason="buyer"))
    await wait_until(lambda: levels(hub, "A1") == (10, 2, 0, 0, 8))
    await hub.execute("order.pay", order.PayOrder(**keys("2")))
    await hub.execute("order.ship", order.ShipOrder(**keys("2"), carrier="SF"))
    await wait_until(lambda: levels(hub, "A1") == (8, 0, 0, 0, 8))
    await settle(hub)
    statuses = query(hub, "SELECT platform_order_id, status FROM orders ORDER BY 1")
    assert statuses == [("1", "cancelled"), ("2", "shipped")]
    assert query(hub, "SELECT on_hand FROM stock_on_hand WHERE sku = 'A1'") == [(8,)]


async def test_oversold_order_is_refused_at_commit_and_recorded(hub: Hub) -> None:
    await hub.execute("stock.receive", stock.ReceiveStock(sku="A1", quantity=2))
    await hub.execute("order.place", place("1", ("A1", 3)))
    await hub.execute("order.place", place("2", ("A1", 2)))
    await wait_until(lambda: levels(hub, "A1") == (2, 2, 0, 0, 0))
    await settle(hub)
    refusals = query(
        hub, "SELECT platform_order_id, stock_refusals FROM orders ORDER BY 1"
    )
    assert refusals == [("1", ["commit:A1"]), ("2", [])]
    process = hub.process("order_stock").projection
    assert process.refused == 1  # type: ignore[attr-defined]
    history = await order_history(hub.database_url, WECHAT, "1")
    refused = history[-1][1]
    assert isinstance(refused, order.OrderStockRefused)
    assert (refused.code, refused.hub_sku, refused.quantity) == (
        "insufficient_stock",
        "A1",
        3,
    )
    assert "cannot commit 3 to order wechat_shop:1" in refused.reason
    # The order stays placed; cancelling it releases nothing and refuses nothing.
    await hub.execute("order.cancel", order.CancelOrder(**keys("1")))
    await settle(hub)
    assert levels(hub, "A1") == (2, 2, 0, 0, 0)
    assert process.refused == 1  # type: ignore[attr-defined]
    text = format_order(await order_history(hub.database_url, WECHAT, "1"))
    assert "stock refused: commit:A1" in text
    assert "OrderStockRefused" in text


async def test_duplicate_order_commands_change_nothing(hub: Hub) -> None:
    await hub.execute("stock.receive", stock.ReceiveStock(sku="A1", quantity=10))
    steps: list[tuple[str, Any]] = [
        ("order.place", place("1", ("A1", 4))),
        ("order.pay", order.PayOrder(**keys("1"))),
        ("order.ship", order.ShipOrder(**keys("1"))),
        ("order.complete", order.CompleteOrder(**keys("1"))),
    ]
    for name, command in steps:
        first = await hub.execute(name, command)
        assert len(first.positions) == 1
        await settle(hub)
        for _ in range(2):
            again = await hub.execute(name, command)
            assert again.positions == ()
    # A duplicate placement reaching the process again commits nothing more.
    await hub.execute(
        "stock.commit",
        stock.CommitStock(sku="A1", order_ref="wechat_shop:1", quantity=4),
    )
    position = await settle(hub)
    assert levels(hub, "A1") == (6, 0, 0, 0, 6)
    types = [
        decode_event(topic, state).__class__.__name__
        for _, topic, state in await _log(hub)
    ]
    assert types == [
        "StockReceived",
        "OrderPlaced",
        "StockCommitted",
        "OrderPaid",
        "PayoutScheduled",  # the payout process splits the paid order
        "OrderShipped",
        "StockConsumed",
        "OrderCompleted",
    ]
    assert position == 8


async def _log(hub: Hub) -> list[tuple[int, str, bytes]]:
    async with await psycopg.AsyncConnection.connect(hub.database_url) as conn:
        return await read_log(conn, 0, 1_000_000)


async def _mixed_workload(hub: Hub) -> None:
    skus = [f"M-{i}" for i in range(6)]
    for i, sku in enumerate(skus):
        await hub.execute("stock.receive", stock.ReceiveStock(sku=sku, quantity=20 + i))
    await hub.execute("stock.set_safety", stock.SetSafetyStock(sku="M-0", quantity=3))
    await hub.execute(
        "stock.set_low_threshold", stock.SetLowStockThreshold(sku="M-1", threshold=8)
    )
    await hub.execute(
        "stock.reserve",
        stock.ReserveStock(sku="M-2", reference="live:1", quantity=5),
    )
    await hub.execute(
        "stock.report_platform",
        stock.ReportPlatformStock(
            sku="M-3", platform="douyin_shop", shop_id="d-1", reported=30, expected=23
        ),
    )
    commands: list[tuple[str, Any]] = []
    for n in range(60):
        number = str(n)
        lines = [(skus[n % 6], 1 + n % 3), (skus[(n + 1) % 6], 1)]
        commands.append(("order.place", place(number, *lines)))
    await asyncio.gather(*(hub.execute(name, c) for name, c in commands))
    follow_ups: list[tuple[str, Any]] = []
    for n in range(60):
        k = keys(str(n))
        if n % 4 == 0:
            follow_ups.append(("order.cancel", order.CancelOrder(**k)))
        elif n % 4 in (1, 2):
            follow_ups.append(("order.pay", order.PayOrder(**k)))
    await asyncio.gather(*(hub.execute(name, c) for name, c in follow_ups))
    later: list[tuple[str, Any]] = []
    for n in range(60):
        k = keys(str(n))
        if n % 4 == 1:
            later.append(("order.ship", order.ShipOrder(**k)))
        elif n % 4 == 2:
            later.append(("order.refund", order.RefundOrder(**k, refund_id=f"r{n}")))
    await asyncio.gather(*(hub.execute(name, c) for name, c in later))
    # The shipments have consumed their units (the process may run them at
    # once, on the committer's shortcut, or later from the log).
    await settle(hub)
    await hub.execute(
        "stock.adjust", stock.AdjustStock(sku="M-5", delta=-10, reason="damaged")
    )
    await hub.execute("order.place", place("big", ("M-5", 50)))


VIEWS = {
    "inventory": "SELECT * FROM inventory ORDER BY sku",
    "orders": "SELECT id, platform, platform_order_id, shop_id, status, total_fen, "
    "paid_fen, refunded_fen, stock_refusals, placed_at, version, "
    "position, updated_at FROM orders ORDER BY id",
    "stock_drift": "SELECT * FROM stock_drift ORDER BY sku, platform, shop_id",
    "stock_on_hand": "SELECT * FROM stock_on_hand ORDER BY sku",
}


async def _position_of(hub: Hub, event_id: uuid.UUID) -> int:
    async with await psycopg.AsyncConnection.connect(hub.database_url) as conn:
        for position, topic, state in await read_log(conn, 0, 100_000):
            if decode_event(topic, state).event_id == event_id:
                return int(position)
    raise LookupError(event_id)


async def test_an_order_moves_stock_on_the_committers_shortcut_once(hub: Hub) -> None:
    """With the log-driven process stopped, a stored order still commits its
    units, in the same transaction (the process reacts on the committer); the
    process, started again, replays the order from the log and changes nothing.
    """
    await hub.execute("stock.receive", stock.ReceiveStock(sku="Q-1", quantity=10))
    runner = hub.process("order_stock")
    await settle(hub)
    await runner.stop()
    committed = asyncio.Event()
    seen: list[Event] = []

    def listener(events: Any) -> None:
        for event in events:
            if isinstance(event, stock.StockCommitted):
                seen.append(event)
                committed.set()

    hub.committer.listen(listener)
    try:
        placed = await hub.execute("order.place", place("quick", ("Q-1", 3)))
        # Durable together: told to listeners before the order's caller hears.
        assert committed.is_set()
        assert seen[0].originator_version == 2
        position = await _position_of(hub, seen[0].event_id)
        assert position == max(placed.positions) + 1
        item = await hub.committer.latest(STOCK_RULES, stock.stock_item_id("Q-1"))
        assert (item.committed, item.available) == (3, 7)

        await runner.start()
        await settle(hub)
    finally:
        hub.committer.unlisten(listener)
    again = await hub.committer.load(STOCK_RULES, stock.stock_item_id("Q-1"))
    assert (again.committed, again.version) == (3, item.version)
    assert [type(e).__name__ for e in seen] == ["StockCommitted"]


async def test_views_rebuilt_from_scratch_equal_the_live_ones(hub: Hub) -> None:
    await _mixed_workload(hub)
    await settle(hub)
    live = {name: query(hub, sql) for name, sql in VIEWS.items()}
    assert len(live["inventory"]) == 6
    assert len(live["orders"]) == 61
    assert [r[:3] for r in live["stock_drift"]] == [("M-3", "douyin_shop", "d-1")]
    assert query(
        hub, "SELECT stock_refusals FROM orders WHERE platform_order_id = 'big'"
    ) == [(["commit:M-5"],)]
    for name, sql in VIEWS.items():
        await rebuild(hub.database_url, hub.projection(name).projection)
        assert query(hub, sql) == live[name], name
    # The views agree with the stock items themselves.
    for sku, *row in query(
        hub, "SELECT sku, on_hand, committed, reserved, safety, version FROM inventory"
    ):
        item = await hub.committer.load(STOCK_RULES, stock.stock_item_id(sku))
        assert row == [
            item.on_hand,
            item.committed,
            item.reserved,
            item.safety,
            item.version,
        ]


async def test_stock_show_prints_every_state_and_each_platforms_drift(hub: Hub) -> None:
    await _mixed_workload(hub)
    await settle(hub)
    text = format_stock(
        await stock_history(hub.database_url, "M-3"),
        await read_drift(hub.database_url, "M-3"),
    )
    print(text)
    assert "douyin_shop/d-1  reported 30  expected 23  drift +7" in text
    for state in ("on hand", "committed", "reserved", "safety", "available"):
        assert f"  {state} " in text


# -- the alert on HUB_EVENTS ---------------------------------------------------


async def test_low_stock_alert_reaches_hub_events(hub: Hub, nats_url: str) -> None:
    await hub.execute("stock.receive", stock.ReceiveStock(sku="L1", quantity=10))
    await hub.execute(
        "stock.set_low_threshold", stock.SetLowStockThreshold(sku="L1", threshold=3)
    )
    await settle(hub)
    nc = await nats.connect(nats_url)
    try:
        alerts = await nc.subscribe("hub.events.stock.StockLowAlertRaised._")
        await nc.flush()
        started = time.perf_counter()
        placed = await hub.execute("order.place", place("hot", ("L1", 8)))
        stored = time.perf_counter()
        msg = await alerts.next_msg(timeout=30)
        arrived = time.perf_counter()
    finally:
        await nc.close()
    body = msgspec.json.decode(msg.data, type=EventMessage)
    assert (msg.headers or {})[H_EVENT_TYPE] == "StockLowAlertRaised"
    assert body.data == {
        "sku": "L1",
        "threshold": 3,
        "on_hand": 10,
        "committed": 8,
        "reserved": 0,
        "safety": 0,
        "available": 2,
    }
    assert body.position > placed.positions[0]
    print(
        f"\nlow-stock alert latency: order.place -> alert on HUB_EVENTS "
        f"{(arrived - started) * 1000:.1f} ms (order durable after "
        f"{(stored - started) * 1000:.1f} ms)"
    )


# -- the process killed mid-stream ---------------------------------------------


def _spawn_process(database_url: str) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ, HUB_DATABASE_URL=database_url, HUB_NATS_URL="nats://127.0.0.1:1"
    )
    return subprocess.Popen(
        [sys.executable, "-m", "hub", "process", "order_stock"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _tracked(database_url: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT position FROM projection_tracking WHERE name = 'order_stock'"
        )
        row = await cur.fetchone()
    return int(row[0]) if row else 0


def _expected_stock(log: list[tuple[int, str, bytes]]) -> dict[str, stock.StockItem]:
    """Stock items computed afresh: receipts, then every order's effects in order."""
    counter = itertools.count(1)
    ctx = Context(now=datetime.now(UTC), new_id=lambda: uuid.UUID(int=next(counter)))
    items: dict[str, stock.StockItem] = {}
    events = [decode_event(topic, state) for _, topic, state in log]
    for event in events:
        if isinstance(event, stock.StockReceived):
            items[event.sku] = project(stock.mutate, items.get(event.sku), [event])
    for event in events:
        for command in order.stock_effect(event):
            state = items.get(command.sku)
            try:
                new: list[Event] = stock.decide(state, command, ctx)
            except DomainError:
                continue
            items[command.sku] = project(stock.mutate, state, new)
    return items


@pytest.mark.slow
async def test_process_killed_mid_stream_applies_every_effect_once(
    database_url: str,
) -> None:
    async with started_hub(
        database_url, None, run_relay=False, run_processes=False, projections=[]
    ) as writer:
        skus = [f"K-{i}" for i in range(7)]
        for sku in skus:
            await writer.execute(
                "stock.receive", stock.ReceiveStock(sku=sku, quantity=10_000)
            )
        waves, per_wave = 5, 300
        for wave in range(waves):
            before = await _tracked(database_url)
            proc = _spawn_process(database_url)
            load = asyncio.create_task(_orders_wave(writer, wave, per_wave, skus))
            try:
                await wait_until(
                    lambda before=before: _moved(database_url, before),
                    timeout=60,
                    interval=0.005,
                )
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            await load
        final = _spawn_process(database_url)
        try:
            while True:
                position = await head(writer)
                await wait_until(
                    lambda p=position: _at_least(database_url, p), timeout=120
                )
                if await head(writer) == position:
                    break
        finally:
            final.send_signal(signal.SIGTERM)
            final.wait(30)
        log = await _log(writer)
        expected = _expected_stock(log)
        for sku in skus:
            item = await writer.committer.load(STOCK_RULES, stock.stock_item_id(sku))
            want = expected[sku]
            assert (item.on_hand, item.committed, item.commitments) == (
                want.on_hand,
                want.committed,
                want.commitments,
            ), sku
        consumed = sum(
            1
            for _, topic, _ in log
            if topic.startswith(stock.StockConsumed.TOPIC + ":")
        )
        shipped = sum(
            1 for _, topic, _ in log if topic.startswith("order.OrderShipped:")
        )
        assert consumed == 2 * shipped, "every shipment consumed each SKU once"


async def _moved(database_url: str, before: int) -> bool:
    return await _tracked(database_url) > before


async def _at_least(database_url: str, position: int) -> bool:
    return await _tracked(database_url) >= position


async def _orders_wave(hub: Hub, wave: int, count: int, skus: list[str]) -> None:
    numbers = [f"w{wave}-{n}" for n in range(count)]
    await asyncio.gather(
        *(
            hub.execute(
                "order.place",
                place(number, (skus[n % 7], 1 + n % 4), (skus[(n + 3) % 7], 2)),
            )
            for n, number in enumerate(numbers)
        )
    )
    await asyncio.gather(
        *(
            hub.execute("order.cancel", order.CancelOrder(**keys(number)))
            if n % 3 == 0
            else hub.execute("order.pay", order.PayOrder(**keys(number)))
            for n, number in enumerate(numbers)
        )
    )
    await asyncio.gather(
        *(
            hub.execute("order.ship", order.ShipOrder(**keys(number)))
            for n, number in enumerate(numbers)
            if n % 3 == 1
        )
    )


# -- the command line ------------------------------------------------------------


async def _orders_for_the_cli(database_url: str) -> None:
    running = bootstrap(database_url=database_url, nats_url=None)
    await running.start()
    try:
        await running.execute("stock.receive", stock.ReceiveStock(sku="C1", quantity=5))
        await running.execute(
            "stock.report_platform",
            stock.ReportPlatformStock(
                sku="C1", platform="youzan", shop_id="y-1", reported=9, expected=5
            ),
        )
        await running.execute("order.place", place("1", ("C1", 2)))
        await running.execute("order.pay", order.PayOrder(**keys("1")))
        await settle(running)
    finally:
        await running.stop()


def test_cli_shows_a_sku_and_an_order(
    database_url: str,
    nats_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from hub.entry.cli import main

    asyncio.run(_orders_for_the_cli(database_url))
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    monkeypatch.setenv("HUB_NATS_URL", nats_url)
    assert main(["stock", "show", "C1"]) == 0
    assert main(["orders", "show", WECHAT, "1"]) == 0
    assert main(["orders", "show", WECHAT, "nope"]) == 1
    out = capsys.readouterr().out
    print(out)
    assert "committed  2  (1 open orders)" in out
    assert "youzan/y-1  reported 9  expected 5  drift +4" in out
    assert "status paid (placed -> paid)" in out
    assert "OrderPlaced  shop_id=shop-1" in out
