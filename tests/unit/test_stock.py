"""Stock item: given events, when command, then events or error."""

from __future__ import annotations

import uuid

import msgspec
import pytest

from domain.stock import (
    AdjustStock,
    CommitStock,
    CountStock,
    InsufficientStockError,
    InvalidQuantityError,
    ReceiveStock,
    StockAdjusted,
    StockCounted,
    StockReceived,
    UnknownSkuError,
    stock_item_id,
)
from tests.stock_steps import NOW, given, when


def test_receive_creates_the_item_with_a_derived_id() -> None:
    events = when(None, ReceiveStock(sku="A-1", quantity=5))
    assert events == [
        StockReceived(
            originator_id=stock_item_id("A-1"),
            originator_version=1,
            event_id=uuid.UUID(int=1),
            occurred_at=NOW,
            sku="A-1",
            quantity=5,
            on_hand=5,
        )
    ]
    assert stock_item_id("A-1") == stock_item_id("A-1") != stock_item_id("A-2")


def test_adjust_changes_on_hand_by_delta() -> None:
    state = given(ReceiveStock(sku="A", quantity=5))
    (event,) = when(state, AdjustStock(sku="A", delta=-3, reason="damaged"))
    assert isinstance(event, StockAdjusted)
    assert (event.originator_version, event.delta, event.on_hand) == (2, -3, 2)


def test_adjust_below_zero_is_refused_naming_values_and_rule() -> None:
    state = given(ReceiveStock(sku="A", quantity=2))
    with pytest.raises(InsufficientStockError, match=r"on hand 2 \+ delta -3 < 0"):
        when(state, AdjustStock(sku="A", delta=-3, reason="x"))


def test_zero_delta_is_refused() -> None:
    state = given(ReceiveStock(sku="A", quantity=2))
    with pytest.raises(InvalidQuantityError, match="delta 0"):
        when(state, AdjustStock(sku="A", delta=0, reason="x"))


def test_adjusting_an_unknown_sku_is_refused() -> None:
    with pytest.raises(UnknownSkuError, match="'Z'"):
        when(None, AdjustStock(sku="Z", delta=1, reason="x"))


def test_count_records_the_difference_found() -> None:
    state = given(ReceiveStock(sku="A", quantity=7))
    (event,) = when(state, CountStock(sku="A", counted=4))
    assert isinstance(event, StockCounted)
    assert (event.counted, event.delta, event.on_hand) == (4, -3, 4)


def test_a_repeated_request_id_decides_nothing() -> None:
    state = given(ReceiveStock(sku="A", quantity=7, request_id="r-1"))
    assert when(state, ReceiveStock(sku="A", quantity=7, request_id="r-1")) == []
    assert when(state, ReceiveStock(sku="A", quantity=7, request_id="r-2")) != []


@pytest.mark.parametrize(
    ("command", "payload", "field"),
    [
        (ReceiveStock, b'{"sku":"A","quantity":0}', "$.quantity"),
        (ReceiveStock, b'{"sku":"","quantity":1}', "$.sku"),
        (ReceiveStock, b'{"sku":"A b","quantity":1}', "$.sku"),
        (ReceiveStock, b'{"sku":"A","quantity":1,"request_id":""}', "$.request_id"),
        (CommitStock, b'{"sku":"A","order_ref":"o","quantity":0}', "$.quantity"),
        (CommitStock, b'{"sku":"A","order_ref":"","quantity":1}', "$.order_ref"),
        (
            CommitStock,
            b'{"sku":"A","order_ref":"o","quantity":1,"platform":"X"}',
            "$.platform",
        ),
    ],
)
def test_bad_commands_name_the_field(
    command: type[msgspec.Struct], payload: bytes, field: str
) -> None:
    with pytest.raises(msgspec.ValidationError, match=field.replace("$", r"\$")):
        msgspec.json.decode(payload, type=command)
