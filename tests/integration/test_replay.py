"""Replay for engineers: history, state at a point and the causal trace,
against real PostgreSQL (and the CLI and NATS reads on top)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import nats
import psycopg
import pytest

from domain import order, push, stock
from eventlog.log import log_head
from hub.bootstrap import bootstrap
from hub.entry.cli import main
from hub.messages import H_CAUSATION_ID, H_CORRELATION_ID, STREAM
from hub.service.commands import STOCK_RULES
from hub.service.hub import Hub
from hub.service.outbound import STOCK_PUSH_RULES
from hub.service.replay import ReplayError, history, resolve, state_at, trace
from tests.binding_payloads import ACCOUNT, SHOP, encode, request, verify
from tests.conftest import wait_until
from tests.hub_steps import serving_hub, started_hub
from tests.unit.test_upcasting import v1_receipt

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


class Clock:
    """A clock that moves a minute each time it is read."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


@pytest.fixture
async def hub(database_url: str) -> AsyncIterator[Hub]:
    async with started_hub(
        database_url, None, clock=Clock(), projections=[]
    ) as running:
        yield running


def _place(number: str, quantity: int) -> order.PlaceOrder:
    return order.PlaceOrder(
        platform="wechat_shop",
        platform_order_id=number,
        shop_id="shop-1",
        lines=(
            order.OrderLine(
                platform_sku_id="p-A1",
                hub_sku="A1",
                quantity=quantity,
                unit_price_fen=1000,
            ),
        ),
    )


async def _ok(hub: Hub, name: str, payload: dict[str, Any]) -> None:
    reply = await hub.handle(name, encode(payload))
    assert reply.ok, reply.error


async def test_history_and_state_at_of_a_stock_item(hub: Hub) -> None:
    first = await hub.execute("stock.receive", stock.ReceiveStock(sku="A1", quantity=5))
    await hub.execute("stock.adjust", stock.AdjustStock(sku="A1", delta=-2, reason="x"))
    events = await history(hub.database_url, "sku:A1")
    assert [(e.type, e.version) for e in events] == [
        ("StockReceived", 1),
        ("StockAdjusted", 2),
    ]
    assert events[0].position == first.positions[0]
    assert events[1].payload["on_hand"] == 3
    at_first = await state_at(hub.database_url, "sku:A1", str(first.positions[0]))
    assert (at_first.version, at_first.state["on_hand"]) == (1, 5)  # type: ignore[index]
    by_time = await state_at(
        hub.database_url, "sku:A1", events[0].recorded_at.isoformat()
    )
    assert by_time.state == at_first.state
    before = await state_at(hub.database_url, "sku:A1", "0")
    assert (before.version, before.state) == (0, None)
    now = await state_at(hub.database_url, str(stock.stock_item_id("A1")), "999")
    assert now.state["on_hand"] == 3  # type: ignore[index]


async def test_history_and_state_at_of_an_order(hub: Hub) -> None:
    await hub.execute("stock.receive", stock.ReceiveStock(sku="A1", quantity=5))
    placed = await hub.execute("order.place", _place("42", 2))
    await _ok(
        hub,
        "order.cancel",
        {"platform": "wechat_shop", "platform_order_id": "42", "reason": "buyer"},
    )
    ref = "wechat_shop:order:42"
    assert resolve(ref) == order.order_id("wechat_shop", "42")
    events = await history(hub.database_url, ref)
    assert [e.type for e in events] == ["OrderPlaced", "OrderCancelled"]
    placed_state = await state_at(hub.database_url, ref, str(placed.positions[-1]))
    assert placed_state.state["status"] == "placed"  # type: ignore[index]
    assert (await state_at(hub.database_url, ref, "99")).state["status"] == "cancelled"  # type: ignore[index]


async def test_history_and_state_at_of_a_binding(hub: Hub) -> None:
    await _ok(hub, "binding.request", request("wechat_shop"))
    await _ok(hub, "binding.verify_subject", verify("wechat_shop"))
    ref = f"binding:{ACCOUNT}:wechat_shop:{SHOP}"
    events = await history(hub.database_url, ref)
    assert [e.type for e in events] == ["BindingRequested", "SubjectVerified"]
    then = await state_at(hub.database_url, ref, str(events[0].position))
    assert then.state["status"] == "requested"  # type: ignore[index]
    assert (await state_at(hub.database_url, ref, "99")).version == 2


async def test_history_and_state_at_of_a_stock_push(hub: Hub) -> None:
    command = push.RequestStockPush(
        platform="douyin_shop",
        shop_id="d-1",
        sku="A1",
        platform_sku_id="p-1",
        quantity=4,
        target_version=1,
    )
    requested = await hub.committer.execute(STOCK_PUSH_RULES, command)
    request_id = requested.events[0].request_id  # type: ignore[attr-defined]
    await hub.committer.execute(
        STOCK_PUSH_RULES,
        push.RecordStockPushSent(
            platform="douyin_shop", shop_id="d-1", sku="A1", request_id=request_id
        ),
    )
    ref = "stock_push:douyin_shop:d-1:A1"
    events = await history(hub.database_url, ref)
    assert [e.type for e in events] == ["StockPushRequested", "StockPushSent"]
    then = await state_at(hub.database_url, ref, str(events[0].position))
    assert then.state["pending"] is not None  # type: ignore[index]
    assert (await state_at(hub.database_url, ref, "99")).state["pending"] is None  # type: ignore[index]


async def test_unknown_reference_and_point_name_the_rule(hub: Hub) -> None:
    with pytest.raises(ReplayError, match="none of"):
        await history(hub.database_url, "nothing-like-a-key")
    with pytest.raises(ReplayError, match="no event of 'sku:NOPE'"):
        await history(hub.database_url, "sku:NOPE")
    await hub.execute("stock.receive", stock.ReceiveStock(sku="A1", quantity=5))
    with pytest.raises(ReplayError, match="neither a log position"):
        await state_at(hub.database_url, "sku:A1", "yesterday")


async def test_an_orders_stock_commands_carry_its_correlation_and_cause(
    hub: Hub,
) -> None:
    await hub.execute("stock.receive", stock.ReceiveStock(sku="A1", quantity=5))
    placed = await hub.execute("order.place", _place("7", 2))
    [order_placed] = placed.events
    assert order_placed.correlation_id is not None
    assert order_placed.causation_id is None
    item = stock.stock_item_id("A1")
    events = await trace(hub.database_url, "wechat_shop:order:7")
    assert [e.type for e in events] == ["OrderPlaced", "StockCommitted"]
    assert {e.correlation_id for e in events} == {order_placed.correlation_id}
    assert events[1].causation_id == order_placed.event_id
    assert events[1].aggregate_id == item
    # The receipt is another input: not in the order's trace.
    receipt = await history(hub.database_url, "sku:A1")
    assert receipt[0].correlation_id != order_placed.correlation_id
    # A correlation id is a reference too.
    assert await trace(hub.database_url, order_placed.correlation_id) == events


async def test_a_request_id_is_the_correlation_id(hub: Hub) -> None:
    outcome = await hub.execute(
        "stock.receive", stock.ReceiveStock(sku="A1", quantity=5, request_id="r-1")
    )
    assert outcome.events[0].correlation_id == "r-1"
    assert [e.type for e in await trace(hub.database_url, "r-1")] == ["StockReceived"]


def test_cli_history_state_trace(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    monkeypatch.setenv("HUB_NATS_URL", "nats://127.0.0.1:1")

    async def given() -> None:
        running = bootstrap(database_url=database_url, nats_url=None, projections=[])
        await running.start()
        try:
            await running.execute(
                "stock.receive", stock.ReceiveStock(sku="A1", quantity=5)
            )
            await running.execute("order.place", _place("9", 1))
        finally:
            await running.stop()

    asyncio.run(given())
    assert main(["history", "sku:A1", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["type"] for e in entries] == ["StockReceived", "StockCommitted"]
    assert main(["history", "wechat_shop:order:9"]) == 0
    assert "OrderPlaced" in capsys.readouterr().out
    assert main(["state", "sku:A1", "--at", str(entries[0]["position"])]) == 0
    assert "on_hand: 5" in capsys.readouterr().out
    assert main(["state", "sku:A1", "--at", "99", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"]["committed"] == 1
    assert main(["trace", "wechat_shop:order:9", "--json"]) == 0
    traced = json.loads(capsys.readouterr().out)
    assert [e["type"] for e in traced] == ["OrderPlaced", "StockCommitted"]
    assert main(["history", "sku:NOPE"]) == 1
    assert "no event of 'sku:NOPE'" in capsys.readouterr().err


async def test_reads_over_nats(database_url: str, nats_url: str) -> None:
    async with serving_hub(database_url, nats_url, Clock()) as running:
        await running.execute("stock.receive", stock.ReceiveStock(sku="A1", quantity=5))
        nc = await nats.connect(nats_url)
        try:

            async def ask(name: str, payload: dict[str, Any]) -> dict[str, Any]:
                msg = await nc.request(
                    f"hub.query.{name}", msgspec.json.encode(payload), timeout=10
                )
                reply: dict[str, Any] = json.loads(msg.data)
                return reply

            reply = await ask("history", {"ref": "sku:A1"})
            assert reply["ok"], reply
            assert [e["type"] for e in reply["result"]] == ["StockReceived"]
            reply = await ask("state", {"ref": "sku:A1", "at": "1"})
            assert reply["result"]["state"]["on_hand"] == 5
            reply = await ask("trace", {"ref": "sku:A1"})
            assert [e["type"] for e in reply["result"]] == ["StockReceived"]
            reply = await ask("state", {"ref": "sku:A1"})
            assert reply["error"]["code"] == "not_found"
            reply = await ask("history", {"nope": 1})
            assert reply["error"]["code"] == "invalid"
        finally:
            await nc.close()


async def test_subscribers_see_the_causal_ids_in_the_headers(
    database_url: str, nats_url: str
) -> None:
    running = bootstrap(database_url=database_url, nats_url=nats_url, projections=[])
    await running.start()
    nc = await nats.connect(nats_url)
    try:
        await running.execute("stock.receive", stock.ReceiveStock(sku="A1", quantity=5))
        placed = await running.execute("order.place", _place("5", 1))
        [order_placed] = placed.events
        item = stock.stock_item_id("A1")

        async def committed() -> bool:
            state = await running.committer.load(STOCK_RULES, item)
            return bool(state.committed)

        await wait_until(committed)
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            head = await log_head(conn)
        assert running.relay is not None
        await running.relay.wait_for(head)
        msg = await nc.jetstream().get_last_msg(
            STREAM, "hub.events.stock.StockCommitted.wechat_shop"
        )
        assert msg.headers is not None
        assert msg.headers[H_CORRELATION_ID] == order_placed.correlation_id
        assert msg.headers[H_CAUSATION_ID] == str(order_placed.event_id)
    finally:
        await nc.close()
        await running.stop()


async def test_stored_version_one_rows_read_back_as_version_two(hub: Hub) -> None:
    # Rows as version 1 wrote them, inserted raw: the hub never rewrites them.
    rows = [(1, v1_receipt(5, 5, version=1)), (2, v1_receipt(3, 8, version=2))]
    item = stock.stock_item_id("A1")
    async with await psycopg.AsyncConnection.connect(hub.database_url) as conn:
        for version, state in rows:
            await conn.execute(
                "INSERT INTO hub_events (originator_id, originator_version, topic, "
                "state) VALUES (%s, %s, 'stock.StockReceived:v1', %s)",
                (item, version, state),
            )
        await conn.commit()
    events = await history(hub.database_url, "sku:A1")
    assert [e.payload["previous_on_hand"] for e in events] == [0, 5]
    # A new receipt is decided on the upcast state and stored at version 2.
    outcome = await hub.execute(
        "stock.receive", stock.ReceiveStock(sku="A1", quantity=2)
    )
    [received] = outcome.events
    assert (received.on_hand, received.previous_on_hand) == (10, 8)  # type: ignore[attr-defined]
    async with await psycopg.AsyncConnection.connect(hub.database_url) as conn:
        cur = await conn.execute(
            "SELECT topic, state FROM hub_events WHERE originator_id = %s "
            "ORDER BY originator_version",
            (item,),
            binary=True,
        )
        stored = await cur.fetchall()
    assert [(t, bytes(s)) for t, s in stored[:2]] == [
        ("stock.StockReceived:v1", state) for _, state in rows
    ], "the stored v1 rows are unchanged"
    assert stored[2][0] == "stock.StockReceived:v2"


def test_every_outside_key_form_resolves() -> None:
    from domain import binding, catalog, marketing, payout

    assert resolve("order:wechat_shop:4:2") == order.order_id("wechat_shop", "4:2")
    assert resolve("wechat_shop:payout:42") == payout.payout_id("wechat_shop", "42")
    assert resolve("commission_terms:a:youzan:s") == payout.terms_id("a", "youzan", "s")
    assert resolve("binding:a:youzan:s") == binding.binding_id("a", "youzan", "s")
    assert resolve("stock_push:youzan:s:A1") == push.stock_push_id("youzan", "s", "A1")
    with pytest.raises(ReplayError, match="none of"):
        resolve("binding:a:youzan")
    assert resolve("product:KIT:2") == catalog.product_id("KIT:2")
    assert resolve("campaign:a:youzan:s:c") == marketing.campaign_id(
        "a", "youzan", "s", "c"
    )
    with pytest.raises(ReplayError, match="campaign:CHANNEL_ACCOUNT"):
        resolve("campaign:a:youzan:s")
