"""The hub side of orders and inventory, without servers: the public messages,
the command table, replies, and the order-stock process on the in-memory store.
"""

from __future__ import annotations

import importlib
import itertools
import pkgutil
import types
import typing
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import msgspec
import pytest

import domain
from domain import order, stock
from domain.events import Context, Event, registered_events
from hub.messages import PAYLOADS, CommandReply, payload_of, subject_for, to_message
from hub.service.commands import (
    COMMANDS,
    ORDER_RULES,
    STOCK_RULES,
    CommandDecodeError,
    decode_command,
)
from hub.service.hub import Hub, _public_state
from hub.service.processes import OrderStockProcess
from tests.memory_hub import committing, in_memory_hub

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
LINE = order.OrderLine(
    platform_sku_id="p-1", hub_sku="A1", quantity=2, unit_price_fen=1999
)


def _import_every_domain_module() -> None:
    for module in pkgutil.iter_modules(domain.__path__):
        importlib.import_module(f"domain.{module.name}")


def _sample(tp: Any) -> Any:  # noqa: PLR0911
    """A value of type ``tp`` (enough to build any event)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _sample(typing.get_args(tp)[0])
    if origin is typing.Literal:
        return typing.get_args(tp)[0]
    if origin in (typing.Union, types.UnionType):
        return _sample(next(a for a in typing.get_args(tp) if a is not type(None)))
    if origin is tuple:
        return (_sample(typing.get_args(tp)[0]),)
    if origin is dict:
        return {}
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        hints = typing.get_type_hints(tp, include_extras=True)
        values = {f.name: _sample(hints[f.name]) for f in msgspec.structs.fields(tp)}
        if tp is order.OrderLine:
            values["discount_fen"] = 0
        return tp(**values)
    samples: dict[type, Any] = {
        str: "x",
        int: 1,
        bool: True,
        uuid.UUID: uuid.UUID(int=1),
        datetime: NOW,
        date: NOW.date(),
    }
    if isinstance(tp, type) and tp in samples:
        return samples[tp]
    if isinstance(tp, type) and issubclass(tp, str):  # str enums
        return next(iter(tp))  # type: ignore[call-overload]
    raise TypeError(f"no sample for {tp!r}")


def test_every_registered_event_has_a_public_payload() -> None:
    _import_every_domain_module()
    # Other tests register events of their own; every domain event is published.
    events = [
        cls for cls in registered_events().values() if cls.__module__[:7] == "domain."
    ]
    assert len(events) > 30
    assert [cls.__name__ for cls in events if cls not in PAYLOADS] == []
    for cls in events:
        event = _sample(cls)
        payload = payload_of(event)
        assert type(payload) is PAYLOADS[cls]
        message = msgspec.json.decode(msgspec.json.encode(to_message(event, 1)))
        assert message["event_type"] == cls.__name__
        assert subject_for(event).startswith(f"hub.events.{cls.AGGREGATE}.")


def _decide(decide: Any, mutate: Any, commands: list[Any]) -> list[Event]:
    counter = itertools.count(1)
    ctx = Context(now=NOW, new_id=lambda: uuid.UUID(int=next(counter)))
    state: Any = None
    events: list[Event] = []
    for command in commands:
        new = decide(state, command, ctx)
        for event in new:
            state = mutate(event, state)
        events += new
    return events


def test_stock_payloads_carry_every_level_and_available() -> None:
    events = _decide(
        stock.decide,
        stock.mutate,
        [
            stock.ReceiveStock(sku="A1", quantity=10),
            stock.SetSafetyStock(sku="A1", quantity=2),
            stock.SetLowStockThreshold(sku="A1", threshold=3),
            stock.CommitStock(sku="A1", order_ref="wechat_shop:1", quantity=6),
        ],
    )
    assert [type(e).__name__ for e in events] == [
        "StockReceived",
        "SafetyStockSet",
        "LowStockThresholdSet",
        "StockCommitted",
        "StockLowAlertRaised",
    ]
    alert = msgspec.to_builtins(payload_of(events[-1]))
    assert alert == {
        "sku": "A1",
        "threshold": 3,
        "on_hand": 10,
        "committed": 6,
        "reserved": 0,
        "safety": 2,
        "available": 2,
    }
    assert subject_for(events[-1]) == "hub.events.stock.StockLowAlertRaised._"
    assert subject_for(events[3]) == "hub.events.stock.StockCommitted._"
    received = msgspec.to_builtins(payload_of(events[0]))
    assert received["available"] == 10


def test_order_payloads_carry_no_buyer_data() -> None:
    placement = order.PlaceOrder(
        platform="wechat_shop",
        platform_order_id="o-1",
        shop_id="s-1",
        lines=(LINE,),
        buyer_ref="buyer-secret-key",
    )
    events = _decide(
        order.decide,
        order.mutate,
        [
            placement,
            order.PayOrder(platform="wechat_shop", platform_order_id="o-1"),
            order.ShipOrder(
                platform="wechat_shop",
                platform_order_id="o-1",
                tracking_ref="SF-TRACK-1",
            ),
        ],
    )
    for event in events:
        text = msgspec.json.encode(to_message(event, 1)).decode()
        assert "buyer-secret-key" not in text
        assert "SF-TRACK-1" not in text
        assert subject_for(event).endswith(".wechat_shop")
    placed = msgspec.to_builtins(payload_of(events[0]))
    assert placed["lines"][0]["total_fen"] == 3998
    assert placed["total_fen"] == 3998


# -- commands -------------------------------------------------------------------


def test_every_stock_and_order_command_is_in_the_table() -> None:
    expected = {
        "stock.set_on_hand": stock.SetOnHand,
        "stock.commit": stock.CommitStock,
        "stock.release": stock.ReleaseStock,
        "stock.consume": stock.ConsumeStock,
        "stock.reserve": stock.ReserveStock,
        "stock.unreserve": stock.UnreserveStock,
        "stock.set_safety": stock.SetSafetyStock,
        "stock.set_low_threshold": stock.SetLowStockThreshold,
        "stock.report_platform": stock.ReportPlatformStock,
        "order.place": order.PlaceOrder,
        "order.pay": order.PayOrder,
        "order.ship": order.ShipOrder,
        "order.complete": order.CompleteOrder,
        "order.cancel": order.CancelOrder,
        "order.refund": order.RefundOrder,
    }
    for name, command_type in expected.items():
        spec = COMMANDS[name]
        assert spec.type is command_type
        rules = STOCK_RULES if name.startswith("stock.") else ORDER_RULES
        assert spec.rules is rules


def test_order_rules_key_orders_by_platform_and_order_id() -> None:
    pay = order.PayOrder(platform="douyin_shop", platform_order_id="9")
    assert ORDER_RULES.aggregate_id(pay) == order.order_id("douyin_shop", "9")
    assert ORDER_RULES.aggregate_id(pay) != order.order_id("wechat_shop", "9")


def test_order_place_decodes_from_json_and_names_a_bad_field() -> None:
    payload = {
        "platform": "youzan",
        "platform_order_id": "Y1",
        "shop_id": "shop",
        "lines": [
            {
                "platform_sku_id": "p",
                "hub_sku": "A1",
                "quantity": 1,
                "unit_price_fen": 100,
            }
        ],
    }
    command = decode_command("order.place", msgspec.json.encode(payload))
    assert isinstance(command, order.PlaceOrder)
    payload["lines"][0]["quantity"] = 0  # type: ignore[index]
    with pytest.raises(CommandDecodeError, match=r"\$\.lines\[0\]\.quantity"):
        decode_command("order.place", msgspec.json.encode(payload))


def test_reply_state_leaves_out_the_per_order_maps() -> None:
    item = stock.StockItem(
        id=uuid.UUID(int=1),
        version=5001,
        sku="A1",
        on_hand=10_000,
        committed=5000,
        commitments={f"wechat_shop:{i}": 1 for i in range(5000)},
        reservations={f"live:{i}": 1 for i in range(100)},
        closed_orders=tuple(f"wechat_shop:x{i}" for i in range(1024)),
        recent_requests=tuple(f"r{i}" for i in range(256)),
    )
    state = _public_state(item)
    assert state is not None
    assert state["available"] == 5000
    assert not {"commitments", "reservations", "closed_orders"} & state.keys()
    reply = msgspec.json.encode(CommandReply(ok=True, state=state))
    assert len(reply) < 600, reply


# -- the order-stock process on the in-memory store ---------------------------------


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    async with committing(in_memory_hub(NOW)) as running:
        yield running


def _place(number: str, quantity: int) -> order.PlaceOrder:
    return order.PlaceOrder(
        platform="wechat_shop",
        platform_order_id=number,
        shop_id="s-1",
        lines=(msgspec.structs.replace(LINE, quantity=quantity),),
    )


async def test_process_commits_and_records_an_oversold_order_once(hub: Hub) -> None:
    await hub.execute("stock.receive", stock.ReceiveStock(sku="A1", quantity=3))
    placed = [(await hub.execute("order.place", _place(n, 2))).events[0] for n in "12"]
    process = OrderStockProcess(hub.committer)
    batch = [(event, i) for i, event in enumerate(placed, start=2)]
    for _ in range(2):  # the second time is a replay after a crash
        await process.apply_batch(None, batch)  # type: ignore[arg-type]
    item = await hub.committer.load(STOCK_RULES, stock.stock_item_id("A1"))
    assert (item.committed, item.available) == (2, 1)
    assert item.commitments == {"wechat_shop:1": 2}
    second = await hub.committer.load(ORDER_RULES, order.order_id("wechat_shop", "2"))
    assert second.stock_refusals == ("commit:A1",)
    assert second.version == 2, "the refusal was recorded once"
    assert (process.commands, process.refused) == (4, 2)


def test_refusals_are_written_as_an_array_literal_postgresql_reads_back() -> None:
    """Quotes, backslashes, commas, braces and the word NULL stay text."""
    from projections.orders import text_array

    assert text_array(()) == "{}"
    assert text_array(("commit:A1",)) == '{"commit:A1"}'
    assert (
        text_array(('x"y', "a\\b", "c,d{}", "NULL", ""))
        == '{"x\\"y","a\\\\b","c,d{}","NULL",""}'
    )
