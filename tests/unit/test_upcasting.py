"""A domain event at version 2 reads its stored version 1 through the upcaster."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec

from domain.stock import ReceiveStock, StockReceived, stock_item_id
from eventlog.codec import decode_event, stored_topic
from tests.stock_steps import given, when

NOW = datetime(2026, 11, 30, tzinfo=UTC)


def v1_receipt(quantity: int, on_hand: int, version: int = 1) -> bytes:
    """A ``StockReceived`` as version 1 stored it (no ``previous_on_hand``)."""
    return msgspec.json.encode(
        {
            "originator_id": str(stock_item_id("A1")),
            "originator_version": version,
            "event_id": str(uuid.UUID(int=version)),
            "occurred_at": NOW.isoformat(),
            "sku": "A1",
            "quantity": quantity,
            "on_hand": on_hand,
            "reference": "",
            "request_id": None,
            "committed": 0,
            "reserved": 0,
            "safety": 0,
        }
    )


def test_stock_received_is_stored_at_version_two() -> None:
    assert stored_topic(StockReceived) == "stock.StockReceived:v2"


def test_a_version_one_receipt_reads_back_as_version_two() -> None:
    event = decode_event("stock.StockReceived:v1", v1_receipt(3, 8, version=2))
    assert isinstance(event, StockReceived)
    assert (event.quantity, event.on_hand, event.previous_on_hand) == (3, 8, 5)
    assert event.correlation_id is None  # v1 rows predate the causal ids


def test_a_new_receipt_records_what_was_on_hand() -> None:
    (first,) = when(None, ReceiveStock(sku="A1", quantity=4))
    (second,) = when(
        given(ReceiveStock(sku="A1", quantity=4)), ReceiveStock(sku="A1", quantity=2)
    )
    assert isinstance(first, StockReceived) and isinstance(second, StockReceived)
    assert (first.previous_on_hand, second.previous_on_hand) == (0, 4)
