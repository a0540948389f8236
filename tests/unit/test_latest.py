"""Latest-state views: a batch folded to each key's last event, in memory and
in the rebuild's pass over stored rows (where only the key of most rows is
read)."""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec
import pytest

from domain import order
from domain.events import Event, project
from domain.stock import (
    AdjustStock,
    ReceiveStock,
    SetSafetyStock,
    StockItem,
    StockReceived,
    decide,
    mutate,
)
from eventlog.codec import encode_event, key_decoder, stored_topic
from projections.base import BatchProjection, Latest
from projections.inventory import STOCK_TOPICS, InventoryProjection
from projections.rebuild import _Build, _keyed_groups, _page, _Route
from projections.stock import StockOnHandProjection
from tests.stock_steps import ctx


def _history() -> list[Event]:
    """Two SKUs' stock events, interleaved, with a safety stock change."""
    events: list[Event] = []
    items: dict[str, StockItem | None] = {"A": None, "B": None}
    for sku, command in [
        ("A", ReceiveStock(sku="A", quantity=10)),
        ("B", ReceiveStock(sku="B", quantity=1)),
        ("A", AdjustStock(sku="A", delta=2, reason="count")),
        ("A", SetSafetyStock(sku="A", quantity=3)),
        ("B", AdjustStock(sku="B", delta=-1, reason="count")),
        ("A", ReceiveStock(sku="A", quantity=5)),
    ]:
        new = decide(items[sku], command, ctx())
        items[sku] = project(mutate, items[sku], new)
        events += new
    return events


def test_a_batch_keeps_each_keys_last_event_counts_them_and_its_every_topics() -> None:
    events = [(event, n) for n, event in enumerate(_history(), start=1)]
    latest = Latest.of(InventoryProjection(), events)
    assert {
        sku: (type(e).__name__, p, e.on_hand) for sku, (e, p) in latest.last.items()
    } == {"A": ("StockReceived", 6, 17), "B": ("StockAdjusted", 5, 0)}
    assert latest.counts == {"A": 4, "B": 2}
    assert [type(e).__name__ for e, _ in latest.every] == ["SafetyStockSet"]
    assert Latest.of(StockOnHandProjection(), events).every == []
    assert not Latest.of(StockOnHandProjection(), [])


def test_an_event_the_view_does_not_read_is_refused() -> None:
    placed = order.decide(
        None,
        order.PlaceOrder(
            platform="wechat_shop", platform_order_id="1", shop_id="s", lines=()
        ),
        ctx(),
    )
    events = [(_history()[0], 1), (placed[0], 2)]
    with pytest.raises(TypeError, match="OrderPlaced is not an event 'inventory'"):
        Latest.of(InventoryProjection(), events)


def test_a_key_is_read_alone_at_the_class_version_only() -> None:
    received = _history()[0]
    topic = stored_topic(StockReceived)
    decode = key_decoder(topic, "sku")
    assert decode is not None and decode(encode_event(received)) == "A"
    # An older version goes through its upcasters: the event is decoded.
    assert key_decoder("stock.StockReceived:v1", "sku") is None
    with pytest.raises(ValueError, match="StockReceived has no field 'shop'"):
        key_decoder(topic, "shop")


class _EveryStockEvent(BatchProjection):
    """Takes the stock events as they are (a version beside the groups)."""

    name: ClassVar[str] = "every_stock_event"
    topics: ClassVar[tuple[str, ...]] = STOCK_TOPICS

    async def apply_batch(self, cur: Any, events: list[tuple[Event, int]]) -> None:
        raise AssertionError("not written here")


def _v1(event: Event) -> tuple[str, bytes]:
    """``event`` as a version 1 receipt was stored (no ``previous_on_hand``)."""
    raw = msgspec.json.decode(encode_event(event))
    del raw["previous_on_hand"]
    return "stock.StockReceived:v1", msgspec.json.encode(raw)


@pytest.mark.parametrize("resumed_at", [0, 3])
def test_the_pass_folds_a_page_of_stored_rows_as_the_views_fold_its_events(
    resumed_at: int,
) -> None:
    events = _history()
    rows: list[tuple[int, str, bytes]] = []
    for position, event in enumerate(events, start=1):
        topic, state = stored_topic(type(event)), encode_event(event)
        if position == 6:  # the last receipt of A: stored at version 1
            topic, state = _v1(event)
        rows.append((position, topic, state))
    builds = [
        _Build(StockOnHandProjection()),
        _Build(_EveryStockEvent()),
        _Build(InventoryProjection()),
    ]
    for build in builds:
        build.position = resumed_at
    groups = _keyed_groups(builds)
    assert [len(group.builds) for group in groups] == [2]  # one fold for both views
    routes: dict[str, _Route] = {}
    on_hand, every, inventory = _page(rows, builds, groups, routes)
    after = [(event, n) for n, event in enumerate(events, start=1) if n > resumed_at]
    assert every == after
    for page, projection in [
        (on_hand, StockOnHandProjection()),
        (inventory, InventoryProjection()),
    ]:
        assert isinstance(page, Latest)
        expected = Latest.of(projection, after)
        assert (page.last, page.counts) == (expected.last, expected.counts)
        assert page.every == Latest.of(InventoryProjection(), after).every
    assert on_hand is inventory
    # The group starts the next page empty.
    (empty, _, _) = _page([], builds, groups, routes)
    assert isinstance(empty, Latest) and not empty
