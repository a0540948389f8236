"""Order: given events, when command, then events or error; with stock, properties."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import given as hypothesis_given
from hypothesis import settings
from hypothesis import strategies as st

from domain import stock
from domain.events import Context, DomainError, Event, event_class, project
from domain.order import (
    CancelOrder,
    CompleteOrder,
    IllegalOrderTransitionError,
    Order,
    OrderCancelled,
    OrderCommand,
    OrderCompleted,
    OrderLine,
    OrderPaid,
    OrderPlaced,
    OrderRefunded,
    OrderShipped,
    PayOrder,
    PlacementMismatchError,
    PlaceOrder,
    PlatformLine,
    RecordShipmentNotice,
    RefundExceedsPaidError,
    RefundLine,
    RefundOrder,
    RefundQuantityError,
    ShipmentNoticeRecorded,
    ShipOrder,
    StockMove,
    UnknownOrderError,
    UnmappedSkuError,
    decide,
    map_lines,
    mutate,
    order_id,
    order_ref,
    order_total,
    stock_effect,
    stock_effects,
)

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
P, N = "douyin_shop", "DY-1001"
REF = order_ref(P, N)


def ctx() -> Context:
    counter = iter(range(1, 1_000_000))
    return Context(now=NOW, new_id=lambda: uuid.UUID(int=next(counter)))


def line(sku: str, hub: str, quantity: int, unit: int, discount: int = 0) -> OrderLine:
    return OrderLine(
        platform_sku_id=sku,
        hub_sku=hub,
        quantity=quantity,
        unit_price_fen=unit,
        discount_fen=discount,
    )


LINES = (
    line("dy-lip", "LIP-01", 2, 9_900, 1_000),  # 18,800
    line("dy-pen", "PEN-01", 1, 5_000),  # 5,000
    line("dy-lip-gift", "LIP-01", 1, 0),  # a free one of the same hub SKU
)
PLACE = PlaceOrder(
    platform=P, platform_order_id=N, shop_id="shop-9", lines=LINES, buyer_ref="b-77"
)
PAY = PayOrder(platform=P, platform_order_id=N)
SHIP = ShipOrder(platform=P, platform_order_id=N, tracking_ref="SF123")
COMPLETE = CompleteOrder(platform=P, platform_order_id=N)
CANCEL = CancelOrder(platform=P, platform_order_id=N, reason="buyer")


def refund(refund_id: str, amount: int | None = None, **lines: int) -> RefundOrder:
    return RefundOrder(
        platform=P,
        platform_order_id=N,
        refund_id=refund_id,
        amount_fen=amount,
        lines=tuple(
            RefundLine(platform_sku_id=sku.replace("_", "-"), quantity=q)
            for sku, q in lines.items()
        ),
    )


def given(*commands: OrderCommand) -> Order:
    state: Order | None = None
    for command in commands:
        state = project(mutate, state, decide(state, command, ctx()))
    assert state is not None
    return state


def when(state: Order | None, command: OrderCommand) -> list[Event]:
    return decide(state, command, ctx())


# -- lines and money ------------------------------------------------------------


def test_map_lines_maps_platform_skus_to_hub_skus() -> None:
    raw = [PlatformLine(platform_sku_id="p1", quantity=2, unit_price_fen=300)]
    (mapped,) = map_lines(raw, {"p1": "HUB-1"})
    assert (mapped.hub_sku, mapped.quantity, mapped.total_fen) == ("HUB-1", 2, 600)


def test_map_lines_names_every_unmapped_sku() -> None:
    raw = [
        PlatformLine(platform_sku_id=sku, quantity=1, unit_price_fen=1)
        for sku in ("p3", "p1", "p2", "p3")
    ]
    with pytest.raises(UnmappedSkuError, match="platform skus p2, p3 are not in"):
        map_lines(raw, {"p1": "HUB-1"})


def test_line_and_order_totals_are_in_fen_after_per_line_discounts() -> None:
    assert [ln.total_fen for ln in LINES] == [18_800, 5_000, 0]
    assert order_total(LINES) == 23_800


@pytest.mark.parametrize(
    ("line_json", "message"),
    [
        (b'{"quantity":0,"unit_price_fen":1}', r"Expected `int` >= 1 - at `\$.lines"),
        (b'{"quantity":1,"unit_price_fen":-1}', r">= 0 - at `\$.lines\[0\].unit_pr"),
        (
            b'{"quantity":2,"unit_price_fen":100,"discount_fen":201}',
            r"line x: 2 x 100 fen - discount 201 fen = -1 fen < 0 .* at `\$.lines",
        ),
    ],
)
def test_bad_lines_are_refused_at_the_boundary(line_json: bytes, message: str) -> None:
    payload = (
        b'{"platform":"youzan","platform_order_id":"1","shop_id":"s","lines":'
        b'[{"platform_sku_id":"x","hub_sku":"H",' + line_json[1:] + b"]}"
    )
    with pytest.raises(msgspec.ValidationError, match=message):
        msgspec.json.decode(payload, type=PlaceOrder)


def test_an_order_needs_a_line() -> None:
    payload = b'{"platform":"youzan","platform_order_id":"1","shop_id":"s","lines":[]}'
    with pytest.raises(msgspec.ValidationError, match=r"\$.lines"):
        msgspec.json.decode(payload, type=PlaceOrder)


# -- the happy path -------------------------------------------------------------


def test_place_records_the_order_under_a_derived_id() -> None:
    (event,) = when(None, PLACE)
    assert isinstance(event, OrderPlaced)
    assert event.originator_id == order_id(P, N)
    assert (event.total_fen, event.lines, event.buyer_ref) == (23_800, LINES, "b-77")
    assert event.event_platform == P
    assert order_id(P, N) != order_id("wechat_shop", N)


def test_placed_paid_shipped_completed() -> None:
    state = given(PLACE, PAY, SHIP, COMPLETE)
    assert state.status == "completed"
    assert state.steps == ("placed", "paid", "shipped", "completed")
    assert (state.version, state.paid_fen) == (4, 23_800)


def _notice(outcome: str) -> RecordShipmentNotice:
    return RecordShipmentNotice(
        platform=P, platform_order_id=N, request_id=f"ship-{P}-{N}", outcome=outcome
    )


def test_a_hub_shipment_is_told_to_the_platform_and_a_reported_one_not() -> None:
    (hub_side,) = when(given(PLACE, PAY), SHIP)
    assert isinstance(hub_side, OrderShipped) and hub_side.notify_platform
    reported = msgspec.structs.replace(SHIP, notify_platform=False)
    (platform_side,) = when(given(PLACE, PAY), reported)
    assert isinstance(platform_side, OrderShipped)
    assert not platform_side.notify_platform


def test_a_shipment_notice_is_recorded_until_one_is_sent() -> None:
    shipped = given(PLACE, PAY, SHIP)
    (failed,) = when(shipped, _notice("rate_limited"))
    assert isinstance(failed, ShipmentNoticeRecorded)
    assert failed.outcome == "rate_limited"
    sent = given(PLACE, PAY, SHIP, _notice("rate_limited"), _notice("sent"))
    assert sent.shipment_notice == "sent" and sent.status == "shipped"
    assert when(sent, _notice("sent")) == []


def test_a_shipment_notice_of_an_unshipped_order_is_refused() -> None:
    with pytest.raises(IllegalOrderTransitionError, match="is paid"):
        when(given(PLACE, PAY), _notice("sent"))


def test_payment_defaults_to_the_order_total_and_keeps_a_given_amount() -> None:
    (paid,) = when(given(PLACE), PAY)
    assert isinstance(paid, OrderPaid)
    assert paid.paid_fen == 23_800
    (paid,) = when(
        given(PLACE), PayOrder(platform=P, platform_order_id=N, amount_fen=1)
    )
    assert paid.paid_fen == 1  # type: ignore[attr-defined]


# -- duplicates and out-of-order pushes -----------------------------------------


@pytest.mark.parametrize(
    ("history", "duplicate"),
    [
        ((PLACE,), PLACE),
        (
            (PLACE,),
            PlaceOrder(platform=P, platform_order_id=N, shop_id="x", lines=LINES),
        ),
        ((PLACE, PAY), PAY),
        ((PLACE, PAY, SHIP), PAY),
        ((PLACE, PAY, SHIP), SHIP),
        ((PLACE, PAY, SHIP, COMPLETE), COMPLETE),
        ((PLACE, PAY, SHIP, COMPLETE), SHIP),
        ((PLACE, CANCEL), CANCEL),
        ((PLACE, PAY, refund("r1", 100)), refund("r1", 100)),
        ((PLACE, PAY, refund("r1")), PAY),
    ],
)
def test_a_step_already_taken_is_a_no_op(
    history: tuple[OrderCommand, ...], duplicate: OrderCommand
) -> None:
    assert when(given(*history), duplicate) == []


def test_a_payment_before_its_placement_without_the_order_is_refused() -> None:
    with pytest.raises(UnknownOrderError, match="order douyin_shop/DY-1001 is unknown"):
        when(None, PAY)


@pytest.mark.parametrize("command", [SHIP, COMPLETE, refund("r1")])
def test_later_steps_of_an_unknown_order_are_refused(command: OrderCommand) -> None:
    with pytest.raises(UnknownOrderError, match=type(command).__name__):
        when(None, command)


def test_a_payment_carrying_its_placement_places_and_pays_at_once() -> None:
    events = when(None, PayOrder(platform=P, platform_order_id=N, placement=PLACE))
    assert [type(e) for e in events] == [OrderPlaced, OrderPaid]
    assert [e.originator_version for e in events] == [1, 2]
    state = project(mutate, None, events)
    assert (state.status, state.paid_fen) == ("paid", 23_800)
    # The placement pushed later is a duplicate.
    assert when(state, PLACE) == []


def test_a_cancellation_carrying_its_placement_places_and_cancels() -> None:
    command = CancelOrder(platform=P, platform_order_id=N, placement=PLACE)
    assert [type(e) for e in when(None, command)] == [OrderPlaced, OrderCancelled]


def test_a_placement_of_another_order_is_refused() -> None:
    other = msgspec.structs.replace(PLACE, platform_order_id="DY-2")
    with pytest.raises(PlacementMismatchError, match="carries the placement of"):
        when(None, PayOrder(platform=P, platform_order_id=N, placement=other))


@pytest.mark.parametrize(
    ("history", "command", "message"),
    [
        ((PLACE,), SHIP, r"cannot ShipOrder .*: it is placed; allowed when placed: "),
        ((PLACE,), refund("r1"), "it is placed; allowed when placed: PayOrder, Cancel"),
        ((PLACE, PAY), CANCEL, "it is paid; allowed when paid: ShipOrder, RefundOrder"),
        ((PLACE, CANCEL), PAY, "it is cancelled; allowed when cancelled: nothing"),
        ((PLACE, PAY, refund("r1")), SHIP, "it is refunded"),
        ((PLACE, PAY), COMPLETE, "it is paid"),
    ],
)
def test_steps_out_of_order_are_refused_naming_the_allowed_ones(
    history: tuple[OrderCommand, ...], command: OrderCommand, message: str
) -> None:
    with pytest.raises(IllegalOrderTransitionError, match=message):
        when(given(*history), command)


# -- refunds --------------------------------------------------------------------


def test_a_partial_refund_keeps_the_status() -> None:
    state = given(PLACE, PAY, SHIP)
    (event,) = when(state, refund("r1", 5_000, dy_pen=1))
    assert isinstance(event, OrderRefunded)
    assert (event.amount_fen, event.refunded_fen, event.full) == (5_000, 5_000, False)
    assert event.stock == ()  # shipped goods come back by receiving them
    after = project(mutate, state, [event])
    assert (after.status, after.refunded_fen, after.refunded_units) == (
        "shipped",
        5_000,
        {"dy-pen": 1},
    )
    assert project(mutate, after, when(after, COMPLETE)).status == "completed"


def test_refunds_adding_up_to_the_payment_refund_the_order() -> None:
    state = given(PLACE, PAY, SHIP, COMPLETE, refund("r1", 800))
    (event,) = when(state, refund("r2"))
    assert isinstance(event, OrderRefunded)
    assert (event.amount_fen, event.refunded_fen, event.full) == (23_000, 23_800, True)
    assert project(mutate, state, [event]).status == "refunded"


def test_a_refund_never_exceeds_what_was_paid() -> None:
    state = given(PLACE, PAY, refund("r1", 20_000))
    with pytest.raises(
        RefundExceedsPaidError,
        match=r"refund 3801 fen \+ refunded 20000 fen > paid 23800 fen",
    ):
        when(state, refund("r2", 3_801))


def test_a_refund_of_a_free_order_has_nothing_to_refund() -> None:
    state = given(PLACE, PayOrder(platform=P, platform_order_id=N, amount_fen=0))
    with pytest.raises(RefundExceedsPaidError, match="nothing left to refund"):
        when(state, refund("r1"))


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (refund("r1", 100, dy_pen=2), "refunded units to 2 > 1 ordered"),
        (refund("r1", 100, dy_nope=1), "has no line of platform sku dy-nope"),
    ],
)
def test_a_refund_of_units_not_ordered_is_refused(
    command: RefundOrder, message: str
) -> None:
    with pytest.raises(RefundQuantityError, match=message):
        when(given(PLACE, PAY), command)


def test_a_refund_before_shipment_releases_the_refunded_units() -> None:
    (event,) = when(given(PLACE, PAY), refund("r1", 9_400, dy_lip=1))
    assert isinstance(event, OrderRefunded)
    assert event.stock == (StockMove(hub_sku="LIP-01", quantity=1, remaining=2),)


def test_a_full_refund_before_shipment_releases_everything() -> None:
    (event,) = when(given(PLACE, PAY, refund("r1", 100, dy_pen=1)), refund("r2"))
    assert isinstance(event, OrderRefunded)
    assert event.stock == (StockMove(hub_sku="LIP-01", quantity=3),)


# -- stock effects --------------------------------------------------------------


def test_placing_commits_each_hub_sku_once() -> None:
    assert stock_effect(when(None, PLACE)[0]) == [
        stock.CommitStock(sku="LIP-01", order_ref=REF, quantity=3, platform=P),
        stock.CommitStock(sku="PEN-01", order_ref=REF, quantity=1, platform=P),
    ]


def test_cancelling_releases_and_shipping_consumes() -> None:
    (cancelled,) = when(given(PLACE), CANCEL)
    assert stock_effect(cancelled) == [
        stock.ReleaseStock(sku=s, order_ref=REF, reason="cancelled", platform=P)
        for s in ("LIP-01", "PEN-01")
    ]
    (shipped,) = when(given(PLACE, PAY), SHIP)
    assert stock_effect(shipped) == [
        stock.ConsumeStock(sku=s, order_ref=REF, platform=P)
        for s in ("LIP-01", "PEN-01")
    ]


def test_a_refund_before_shipment_releases_down_to_what_stays() -> None:
    (refunded,) = when(given(PLACE, PAY), refund("r1", 9_400, dy_lip=1))
    assert stock_effect(refunded) == [
        stock.ReleaseStock(
            sku="LIP-01", order_ref=REF, keep=2, reason="refunded", platform=P
        )
    ]


def test_payments_and_completions_touch_no_stock() -> None:
    events = when(None, PayOrder(platform=P, platform_order_id=N, placement=PLACE))
    assert [type(c) for c in stock_effects(events)] == [stock.CommitStock] * 2
    assert stock_effects(when(given(PLACE, PAY, SHIP), COMPLETE)) == []


def test_order_topics_are_stable_and_registered() -> None:
    for cls in (
        OrderPlaced,
        OrderPaid,
        OrderShipped,
        OrderCompleted,
        OrderCancelled,
        OrderRefunded,
    ):
        assert f"order.{cls.__name__}" == cls.TOPIC
        assert event_class(cls.TOPIC) is cls


# -- properties: orders and stock together --------------------------------------

SKUS = ("A", "B")
ORDER_LINES = {
    "1": (line("a", "A", 2, 100), line("b", "B", 1, 250, 50)),
    "2": (line("a", "A", 3, 100),),
    "3": (line("b", "B", 2, 80), line("a2", "A", 1, 120)),
    "4": (line("a", "A", 1, 100), line("a", "A", 1, 90)),
}
PLATFORMS = ("wechat_shop", "kuaishou_shop")


def order_command(kind: str, platform: str, number: str, arg: int) -> OrderCommand:
    """An order step of a generated run."""
    lines = ORDER_LINES[number]
    placement = PlaceOrder(
        platform=platform, platform_order_id=number, shop_id="s", lines=lines
    )
    if kind == "place":
        return placement
    if kind == "pay":
        return PayOrder(
            platform=platform,
            platform_order_id=number,
            placement=placement if arg % 2 else None,
        )
    if kind == "ship":
        return ShipOrder(platform=platform, platform_order_id=number)
    if kind == "complete":
        return CompleteOrder(platform=platform, platform_order_id=number)
    if kind == "cancel":
        return CancelOrder(platform=platform, platform_order_id=number)
    chosen = lines[arg % len(lines)]
    return RefundOrder(
        platform=platform,
        platform_order_id=number,
        refund_id=f"r{arg % 3}",
        amount_fen=None if arg % 4 == 0 else 1 + arg % 200,
        lines=(RefundLine(platform_sku_id=chosen.platform_sku_id, quantity=1),)
        if arg % 2
        else (),
    )


def stock_command(kind: str, sku: str, arg: int) -> stock.StockCommand:
    """A stock step of a generated run."""
    if kind == "receive":
        return stock.ReceiveStock(sku=sku, quantity=1 + arg % 6)
    if kind == "adjust":
        return stock.AdjustStock(sku=sku, delta=arg % 7 - 3 or 1, reason="p")
    if kind == "count":
        return stock.CountStock(sku=sku, counted=arg % 12)
    return stock.ReportPlatformStock(
        sku=sku, platform="kuaishou_shop", reported=arg % 9, expected=4, tolerance=1
    )


order_steps = st.tuples(
    # "next" takes the order's natural next step, so runs reach the later ones.
    st.sampled_from(
        ("next", "next", "next", "place", "pay", "ship", "complete", "cancel", "refund")
    ),
    st.sampled_from(PLATFORMS),
    st.sampled_from(sorted(ORDER_LINES)),
    st.integers(0, 1000),
)
stock_steps = st.tuples(
    st.sampled_from(("receive", "adjust", "count", "report")),
    st.sampled_from(SKUS),
    st.integers(0, 1000),
)


def expected_open_units(order: Order) -> dict[str, int]:
    """Units per hub SKU still committed to an order, computed the plain way.

    (In these runs each platform SKU maps to one hub SKU.)
    """
    if order.status not in ("placed", "paid"):
        return {}
    units: dict[str, int] = {}
    hub_of: dict[str, str] = {}
    for ln in order.lines:
        units[ln.hub_sku] = units.get(ln.hub_sku, 0) + ln.quantity
        hub_of[ln.platform_sku_id] = ln.hub_sku
    for platform_sku, refunded in order.refunded_units.items():
        units[hub_of[platform_sku]] -= refunded
    return units


class World:
    """Orders and stock items, with a process manager applying stock effects."""

    def __init__(self) -> None:
        self.orders: dict[uuid.UUID, Order] = {}
        self.order_logs: dict[uuid.UUID, list[Event]] = {}
        self.items: dict[str, stock.StockItem] = {}
        self.item_logs: dict[str, list[Event]] = {sku: [] for sku in SKUS}
        #: (sku, order ref) commits the stock refused: oversell prevented.
        self.refused: set[tuple[str, str]] = set()
        for sku in SKUS:
            self.apply_stock(stock.ReceiveStock(sku=sku, quantity=4))

    def apply_stock(self, command: stock.StockCommand) -> None:
        state = self.items.get(command.sku)
        try:
            events = stock.decide(state, command, ctx())
        except stock.InsufficientStockError:
            if isinstance(command, stock.CommitStock):
                self.refused.add((command.sku, command.order_ref))
            return
        except DomainError:
            return
        self.items[command.sku] = project(stock.mutate, state, events)
        self.item_logs[command.sku].extend(events)

    def resolve(self, kind: str, platform: str, number: str, arg: int) -> OrderCommand:
        """The command of an order step; "next" reads the order's status."""
        if kind == "next":
            order = self.orders.get(order_id(platform, number))
            status = "none" if order is None else order.status
            kind = {
                "none": "pay" if arg % 3 == 0 else "place",
                "placed": "cancel" if arg % 5 == 0 else "pay",
                "paid": "refund" if arg % 5 == 0 else "ship",
                "shipped": "refund" if arg % 5 == 0 else "complete",
            }.get(status, "refund")
        return order_command(kind, platform, number, arg)

    def apply_order(self, command: OrderCommand) -> None:
        oid = order_id(command.platform, command.platform_order_id)
        try:
            events = decide(self.orders.get(oid), command, ctx())
        except DomainError:
            return
        self.orders[oid] = project(mutate, self.orders.get(oid), events)
        self.order_logs.setdefault(oid, []).extend(events)
        for effect in stock_effects(events):
            self.apply_stock(effect)


@settings(max_examples=200, deadline=None)
@hypothesis_given(
    st.lists(st.one_of(order_steps, stock_steps), min_size=30, max_size=90)
)
def test_any_interleaving_of_orders_and_stock_stays_consistent(
    run: list[tuple[Any, ...]],
) -> None:
    world = World()
    for step in run:
        if len(step) == 4:
            world.apply_order(world.resolve(*step))
        else:
            world.apply_stock(stock_command(*step))
    # Stock: never negative, available consistent, rebuilt equals live.
    for sku, item in world.items.items():
        assert min(item.on_hand, item.committed, item.reserved, item.safety) >= 0
        assert item.available == item.on_hand - item.committed - item.reserved
        assert item.committed == sum(item.commitments.values())
        assert project(stock.mutate, None, world.item_logs[sku]) == item
    # Orders: money adds up, rebuilt equals live, stock commitments match.
    for oid, order in world.orders.items():
        assert project(mutate, None, world.order_logs[oid]) == order
        assert order.total_fen == order_total(order.lines)
        assert 0 <= order.refunded_fen <= (order.paid_fen or 0)
        assert (order.status == "refunded") == (
            order.paid_fen is not None
            and order.refunded_fen == order.paid_fen
            and order.refunded_fen > 0
        )
        ref = order_ref(order.platform, order.platform_order_id)
        open_units = expected_open_units(order)
        assert order.open_units() == open_units
        for sku in SKUS:
            committed = world.items[sku].commitments.get(ref, 0)
            if (sku, ref) in world.refused:
                assert committed == 0
            else:
                assert committed == open_units.get(sku, 0), (sku, ref, order.status)
    # The process manager replaying every order's effects changes nothing.
    for log in world.order_logs.values():
        for effect in stock_effects(log):
            ref = effect.order_ref  # type: ignore[union-attr]
            if (effect.sku, ref) in world.refused:
                continue
            state = world.items[effect.sku]
            assert stock.decide(state, effect, ctx()) == [], effect
