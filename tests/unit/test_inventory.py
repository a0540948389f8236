"""Stock states: given events, when command, then events or error; and properties."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import given as hypothesis_given
from hypothesis import settings
from hypothesis import strategies as st

from domain.events import DomainError, Event, event_class, project
from domain.stock import (
    AdjustStock,
    CommitStock,
    ConsumeStock,
    CountStock,
    InsufficientStockError,
    LowStockThresholdSet,
    ReceiveStock,
    ReleaseStock,
    ReportPlatformStock,
    ReserveStock,
    SafetyStockSet,
    SetLowStockThreshold,
    SetOnHand,
    SetSafetyStock,
    StockCommand,
    StockCommitted,
    StockConflictError,
    StockConsumed,
    StockDriftDetected,
    StockItem,
    StockLowAlertCleared,
    StockLowAlertRaised,
    StockOnHandSet,
    StockReceived,
    StockReleased,
    StockReserved,
    StockUnreserved,
    UnknownSkuError,
    UnreserveStock,
    decide,
    mutate,
    stock_item_id,
)
from tests.stock_steps import ctx, given, then, when


def lv(item: Any) -> tuple[int, int, int, int, int]:
    """(on hand, committed, reserved, safety, available) of a state or event."""
    return (item.on_hand, item.committed, item.reserved, item.safety, item.available)


TEN = ReceiveStock(sku="A", quantity=10)


# -- commit, release, consume ---------------------------------------------------


def test_commit_moves_units_from_available_to_committed() -> None:
    state = given(TEN)
    (event,) = when(state, CommitStock(sku="A", order_ref="wechat_shop:1", quantity=3))
    assert isinstance(event, StockCommitted)
    assert (event.order_ref, event.quantity, event.originator_version) == (
        "wechat_shop:1",
        3,
        2,
    )
    assert lv(event) == (10, 3, 0, 0, 7)
    assert then(state, CommitStock(sku="A", order_ref="o", quantity=3)).commitments == {
        "o": 3
    }


def test_commit_beyond_available_is_refused_naming_the_numbers() -> None:
    state = given(
        TEN,
        ReserveStock(sku="A", reference="live", quantity=2),
        SetSafetyStock(sku="A", quantity=1),
        CommitStock(sku="A", order_ref="o-1", quantity=4),
    )
    with pytest.raises(
        InsufficientStockError,
        match=r"cannot commit 4 to order o-2: 4 > available 3 = on hand 10 - "
        r"committed 4 - reserved 2 - safety 1",
    ):
        when(state, CommitStock(sku="A", order_ref="o-2", quantity=4))


def test_committing_for_the_same_order_twice_decides_nothing() -> None:
    state = given(TEN, CommitStock(sku="A", order_ref="o", quantity=3))
    assert when(state, CommitStock(sku="A", order_ref="o", quantity=3)) == []
    assert when(state, CommitStock(sku="A", order_ref="o", quantity=5)) == []


def test_a_replayed_commit_for_a_closed_order_decides_nothing() -> None:
    state = given(
        TEN,
        CommitStock(sku="A", order_ref="o", quantity=3),
        ReleaseStock(sku="A", order_ref="o"),
    )
    assert "o" in state.closed_orders
    assert when(state, CommitStock(sku="A", order_ref="o", quantity=3)) == []


def test_release_returns_the_order_units_to_available() -> None:
    state = given(TEN, CommitStock(sku="A", order_ref="o", quantity=3))
    (event,) = when(state, ReleaseStock(sku="A", order_ref="o", reason="cancelled"))
    assert isinstance(event, StockReleased)
    assert (event.quantity, event.remaining, event.reason) == (3, 0, "cancelled")
    assert lv(event) == (10, 0, 0, 0, 10)
    assert then(state, ReleaseStock(sku="A", order_ref="o")).commitments == {}


def test_release_down_to_keep_is_partial_and_idempotent() -> None:
    state = given(TEN, CommitStock(sku="A", order_ref="o", quantity=3))
    (event,) = when(state, ReleaseStock(sku="A", order_ref="o", keep=1))
    assert (event.quantity, event.remaining) == (2, 1)  # type: ignore[attr-defined]
    after = then(state, ReleaseStock(sku="A", order_ref="o", keep=1))
    assert after.commitments == {"o": 1}
    assert when(after, ReleaseStock(sku="A", order_ref="o", keep=1)) == []
    assert when(after, ReleaseStock(sku="A", order_ref="o", keep=2)) == []


def test_releasing_an_order_never_committed_decides_nothing() -> None:
    assert when(given(TEN), ReleaseStock(sku="A", order_ref="nope")) == []


def test_consume_takes_shipped_units_from_committed_and_on_hand() -> None:
    state = given(TEN, CommitStock(sku="A", order_ref="o", quantity=3))
    (event,) = when(state, ConsumeStock(sku="A", order_ref="o"))
    assert isinstance(event, StockConsumed)
    assert (event.quantity, event.shortfall) == (3, 0)
    assert lv(event) == (7, 0, 0, 0, 7)
    after = then(state, ConsumeStock(sku="A", order_ref="o"))
    assert when(after, ConsumeStock(sku="A", order_ref="o")) == []
    assert when(after, ReleaseStock(sku="A", order_ref="o")) == []


def test_consume_after_a_loss_stops_on_hand_at_zero_and_records_the_shortfall() -> None:
    state = given(
        TEN,
        CommitStock(sku="A", order_ref="o", quantity=6),
        CountStock(sku="A", counted=4),
    )
    assert lv(state) == (4, 6, 0, 0, -2)
    (event,) = when(state, ConsumeStock(sku="A", order_ref="o"))
    assert isinstance(event, StockConsumed)
    assert (event.quantity, event.shortfall) == (6, 2)
    assert lv(event) == (0, 0, 0, 0, 0)


def test_after_a_loss_available_is_negative_and_commits_are_refused() -> None:
    state = given(TEN, CommitStock(sku="A", order_ref="o", quantity=6))
    state = then(state, AdjustStock(sku="A", delta=-8, reason="flooded"))
    assert lv(state) == (2, 6, 0, 0, -4)
    with pytest.raises(InsufficientStockError, match="available -4"):
        when(state, CommitStock(sku="A", order_ref="p", quantity=1))


# -- reservations and safety stock ----------------------------------------------


def test_reserve_and_unreserve_by_reference() -> None:
    state = given(TEN)
    (event,) = when(state, ReserveStock(sku="A", reference="live", quantity=4))
    assert isinstance(event, StockReserved)
    assert lv(event) == (10, 0, 4, 0, 6)
    state = then(state, ReserveStock(sku="A", reference="live", quantity=4))
    assert when(state, ReserveStock(sku="A", reference="live", quantity=4)) == []
    (event,) = when(state, UnreserveStock(sku="A", reference="live", keep=1))
    assert isinstance(event, StockUnreserved)
    assert (event.quantity, event.remaining, event.available) == (3, 1, 9)
    with pytest.raises(InsufficientStockError, match="cannot reserve 7 for deal"):
        when(state, ReserveStock(sku="A", reference="deal", quantity=7))


def test_safety_stock_is_held_back_from_available() -> None:
    state = given(TEN)
    (event,) = when(state, SetSafetyStock(sku="A", quantity=3))
    assert isinstance(event, SafetyStockSet)
    assert (event.safety_stock, *lv(event)) == (3, 10, 0, 0, 3, 7)
    same = SetSafetyStock(sku="A", quantity=3)
    assert when(then(state, same), same) == []


def test_safety_stock_fills_only_from_units_not_promised() -> None:
    state = given(
        TEN,
        CommitStock(sku="A", order_ref="o", quantity=8),
        SetSafetyStock(sku="A", quantity=5),
    )
    assert (state.safety_stock, *lv(state)) == (5, 10, 8, 0, 2, 0)
    state = then(state, ReceiveStock(sku="A", quantity=4))
    assert lv(state) == (14, 8, 0, 5, 1)
    state = then(state, ReleaseStock(sku="A", order_ref="o"))
    assert lv(state) == (14, 0, 0, 5, 9)


# -- compare-and-set, drift -----------------------------------------------------


def test_set_on_hand_is_a_compare_and_set() -> None:
    state = given(TEN)
    with pytest.raises(
        StockConflictError, match=r"expected on hand 9 but it is 10 \(compare-and-set"
    ):
        when(state, SetOnHand(sku="A", expected_on_hand=9, on_hand=4))
    (event,) = when(state, SetOnHand(sku="A", expected_on_hand=10, on_hand=4))
    assert isinstance(event, StockOnHandSet)
    assert (event.delta, event.on_hand) == (-6, 4)
    after = then(state, SetOnHand(sku="A", expected_on_hand=10, on_hand=4))
    # The retried set finds it done.
    assert when(after, SetOnHand(sku="A", expected_on_hand=10, on_hand=4)) == []


def test_a_report_within_tolerance_decides_nothing() -> None:
    state = given(TEN)
    report = ReportPlatformStock(
        sku="A", platform="kuaishou_shop", reported=12, expected=10, tolerance=2
    )
    assert when(state, report) == []


def test_drift_beyond_tolerance_is_recorded_for_calibration() -> None:
    state = given(TEN)
    (event,) = when(
        state,
        ReportPlatformStock(
            sku="A", platform="kuaishou_shop", reported=7, expected=10, tolerance=2
        ),
    )
    assert isinstance(event, StockDriftDetected)
    assert (event.drift, event.tolerance, event.event_platform) == (
        -3,
        2,
        "kuaishou_shop",
    )
    assert project(mutate, state, [event]).version == 2


# -- low-stock alerts -----------------------------------------------------------


def test_crossing_the_threshold_raises_the_alert_in_the_same_decision() -> None:
    state = given(TEN, SetLowStockThreshold(sku="A", threshold=3))
    events = when(state, CommitStock(sku="A", order_ref="o", quantity=7))
    assert [type(e) for e in events] == [StockCommitted, StockLowAlertRaised]
    assert [e.originator_version for e in events] == [3, 4]
    alert = events[1]
    assert isinstance(alert, StockLowAlertRaised)
    assert (alert.threshold, alert.available) == (3, 3)
    state = project(mutate, state, events)
    assert state.low_stock_alert
    # Lower still: no second alert.
    assert len(when(state, CommitStock(sku="A", order_ref="p", quantity=1))) == 1


def test_rising_above_the_threshold_clears_the_alert() -> None:
    state = given(
        TEN,
        SetLowStockThreshold(sku="A", threshold=3),
        CommitStock(sku="A", order_ref="o", quantity=7),
    )
    events = when(state, ReleaseStock(sku="A", order_ref="o"))
    assert [type(e) for e in events] == [StockReleased, StockLowAlertCleared]
    assert not project(mutate, state, events).low_stock_alert


def test_setting_a_threshold_above_available_alerts_at_once() -> None:
    events = when(given(TEN), SetLowStockThreshold(sku="A", threshold=10))
    assert [type(e) for e in events] == [LowStockThresholdSet, StockLowAlertRaised]


def test_removing_the_threshold_clears_a_raised_alert() -> None:
    state = given(TEN, SetLowStockThreshold(sku="A", threshold=10))
    assert state.low_stock_alert
    events = when(state, SetLowStockThreshold(sku="A", threshold=None))
    assert [type(e) for e in events] == [LowStockThresholdSet, StockLowAlertCleared]


# -- unknown SKUs, schema -------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        CommitStock(sku="Z", order_ref="o", quantity=1),
        ReleaseStock(sku="Z", order_ref="o"),
        ConsumeStock(sku="Z", order_ref="o"),
        ReserveStock(sku="Z", reference="r", quantity=1),
        UnreserveStock(sku="Z", reference="r"),
        SetSafetyStock(sku="Z", quantity=1),
        SetLowStockThreshold(sku="Z", threshold=1),
        SetOnHand(sku="Z", expected_on_hand=0, on_hand=1),
        ReportPlatformStock(sku="Z", platform="youzan", reported=1, expected=0),
    ],
)
def test_commands_on_a_sku_never_received_are_refused(command: StockCommand) -> None:
    with pytest.raises(UnknownSkuError, match="'Z'"):
        when(None, command)


def test_events_stored_before_the_states_existed_still_decode() -> None:
    raw = (
        b'{"originator_id":"00000000-0000-0000-0000-000000000001",'
        b'"originator_version":1,"event_id":"00000000-0000-0000-0000-000000000002",'
        b'"occurred_at":"2026-11-26T08:00:00Z","sku":"A","quantity":5,"on_hand":5}'
    )
    event = msgspec.json.decode(raw, type=StockReceived)
    assert lv(event) == (5, 0, 0, 0, 5)


def test_events_expose_available_to_public_payloads() -> None:
    class Payload(msgspec.Struct):
        on_hand: int
        available: int

    (event,) = when(
        given(TEN), CommitStock(sku="A", order_ref="o", quantity=4, platform="youzan")
    )
    payload = msgspec.convert(event, Payload, from_attributes=True)
    assert (payload.on_hand, payload.available) == (10, 6)
    assert event.event_platform == "youzan"


def test_new_topics_are_stable_and_registered() -> None:
    for cls in (
        StockCommitted,
        StockReleased,
        StockConsumed,
        StockReserved,
        StockUnreserved,
        SafetyStockSet,
        LowStockThresholdSet,
        StockOnHandSet,
        StockDriftDetected,
        StockLowAlertRaised,
        StockLowAlertCleared,
    ):
        assert f"stock.{cls.__name__}" == cls.TOPIC
        assert cls.AGGREGATE == "stock"
        assert event_class(cls.TOPIC) is cls


# -- properties -----------------------------------------------------------------

ORDERS = ("o1", "o2", "o3")
HOLDS = ("r1", "r2")
#: Commands that report a loss from outside (they may leave available negative).
LOSSES = (AdjustStock, CountStock, SetOnHand)

units = st.integers(min_value=0, max_value=30)
positive = st.integers(min_value=1, max_value=12)
loss_steps = (
    st.tuples(st.just("adjust"), st.integers(-15, 15).filter(bool)),
    st.tuples(st.just("count"), units),
    st.tuples(st.just("set"), units, st.booleans()),
)
other_steps = (
    st.tuples(st.just("receive"), positive),
    st.tuples(st.just("commit"), st.sampled_from(ORDERS), positive),
    st.tuples(st.just("release"), st.sampled_from(ORDERS), st.integers(0, 3)),
    st.tuples(st.just("consume"), st.sampled_from(ORDERS), st.integers(0, 3)),
    st.tuples(st.just("reserve"), st.sampled_from(HOLDS), positive),
    st.tuples(st.just("unreserve"), st.sampled_from(HOLDS), st.integers(0, 3)),
    st.tuples(st.just("safety"), st.integers(0, 12)),
    st.tuples(st.just("threshold"), st.none() | st.integers(0, 12)),
    st.tuples(st.just("report"), units, units, st.integers(0, 3)),
)
steps = st.one_of(*other_steps, *loss_steps)
steps_without_losses = st.one_of(*other_steps)


def build(step: tuple[Any, ...], state: StockItem) -> StockCommand:  # noqa: PLR0911
    """The command of a generated step (some read the current state)."""
    kind, *args = step
    if kind == "receive":
        return ReceiveStock(sku="P", quantity=args[0])
    if kind == "adjust":
        return AdjustStock(sku="P", delta=args[0], reason="property")
    if kind == "count":
        return CountStock(sku="P", counted=args[0])
    if kind == "set":
        expected = state.on_hand if args[1] else state.on_hand + 1
        return SetOnHand(sku="P", expected_on_hand=expected, on_hand=args[0])
    if kind == "commit":
        return CommitStock(sku="P", order_ref=args[0], quantity=args[1])
    if kind == "release":
        return ReleaseStock(sku="P", order_ref=args[0], keep=args[1])
    if kind == "consume":
        return ConsumeStock(sku="P", order_ref=args[0], keep=args[1])
    if kind == "reserve":
        return ReserveStock(sku="P", reference=args[0], quantity=args[1])
    if kind == "unreserve":
        return UnreserveStock(sku="P", reference=args[0], keep=args[1])
    if kind == "safety":
        return SetSafetyStock(sku="P", quantity=args[0])
    if kind == "threshold":
        return SetLowStockThreshold(sku="P", threshold=args[0])
    return ReportPlatformStock(
        sku="P",
        platform="wechat_shop",
        reported=args[0],
        expected=args[1],
        tolerance=args[2],
    )


def check_invariants(state: StockItem) -> None:
    """What must hold of every stock item, whatever happened to it."""
    assert min(state.on_hand, state.committed, state.reserved, state.safety) >= 0
    assert state.committed == sum(state.commitments.values())
    assert state.reserved == sum(state.reservations.values())
    assert all(units > 0 for units in state.commitments.values())
    assert all(units > 0 for units in state.reservations.values())
    unpromised = state.on_hand - state.committed - state.reserved
    assert state.safety == min(state.safety_stock, max(0, unpromised))
    assert state.available == (
        state.on_hand - state.committed - state.reserved - state.safety
    )
    assert state.low_stock_alert == state.is_low


def run(
    steps_: list[tuple[Any, ...]], initial: int
) -> tuple[StockItem, list[Event], list[tuple[StockCommand, int, int]]]:
    """Apply the steps, skipping refused ones; return state, log and history."""
    log = decide(None, ReceiveStock(sku="P", quantity=initial), ctx())
    state: StockItem = project(mutate, None, log)
    history: list[tuple[StockCommand, int, int]] = []
    for step in steps_:
        command = build(step, state)
        try:
            events = decide(state, command, ctx())
        except DomainError:
            continue
        before = state.available
        for event in events:
            assert event.originator_version == state.version + 1
            folded = mutate(event, state)
            assert folded is not None
            state = folded
            assert lv(event) == lv(state)
        log.extend(events)
        history.append((command, before, state.available))
        check_invariants(state)
    return state, log, history


def over_runs(
    step: st.SearchStrategy[tuple[Any, ...]],
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A property over 200 runs: 20 to 60 ``step``s from 1 to 30 units."""

    def decorate(test: Callable[..., None]) -> Callable[..., None]:
        runs = st.lists(step, min_size=20, max_size=60)
        return settings(max_examples=200, deadline=None)(
            hypothesis_given(runs, st.integers(1, 30))(test)
        )

    return decorate


@over_runs(steps)
def test_any_interleaving_keeps_states_consistent(
    steps_: list[tuple[Any, ...]], initial: int
) -> None:
    state, log, history = run(steps_, initial)
    check_invariants(state)
    assert project(mutate, None, log) == state
    for command, before, after in history:
        if before >= 0 and not isinstance(command, LOSSES):
            assert after >= 0, f"{command} took available from {before} to {after}"


@over_runs(steps_without_losses)
def test_without_losses_available_never_goes_negative(
    steps_: list[tuple[Any, ...]], initial: int
) -> None:
    state, log, _ = run(steps_, initial)
    for event in log:
        assert event.available >= 0  # type: ignore[attr-defined]
        assert event.committed <= event.on_hand  # type: ignore[attr-defined]
    assert state.committed + state.reserved + state.safety <= state.on_hand


@over_runs(steps)
def test_order_and_reservation_commands_are_idempotent(
    steps_: list[tuple[Any, ...]], initial: int
) -> None:
    state, _, history = run(steps_, initial)
    del state
    replayable = (
        CommitStock,
        ReleaseStock,
        ConsumeStock,
        ReserveStock,
        UnreserveStock,
        SetSafetyStock,
        SetLowStockThreshold,
        SetOnHand,
    )
    # Re-run and repeat each applied command at once: the repeat decides nothing.
    state, _, _ = run([], initial)
    for command, _before, _after in history:
        state = project(mutate, state, decide(state, command, ctx()))
        if isinstance(command, replayable):
            assert decide(state, command, ctx()) == []


def test_stock_item_id_is_derived_from_the_sku() -> None:
    assert given(TEN).id == stock_item_id("A")
