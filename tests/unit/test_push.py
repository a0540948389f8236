"""Stock push (one listing): given events, when command, then events or error."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from domain.events import Context, Event, project
from domain.push import (
    DeadLetterStockPush,
    RecordStockPushFailed,
    RecordStockPushSent,
    RequestStockPush,
    StockPush,
    StockPushDeadLettered,
    StockPushRequested,
    StockPushSent,
    StockPushSuperseded,
    UnknownPushRequestError,
    decide,
    mutate,
    push_request_id,
    stock_push_id,
)

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
KEYS: dict[str, Any] = {"platform": "douyin_shop", "shop_id": "77001", "sku": "A-1"}


def ctx() -> Context:
    counter = iter(range(1, 1_000_000))
    return Context(now=NOW, new_id=lambda: uuid.UUID(int=next(counter)))


def ask(quantity: int, version: int, **extra: Any) -> RequestStockPush:
    return RequestStockPush(
        **KEYS,
        platform_sku_id="178",
        quantity=quantity,
        target_version=version,
        **extra,
    )


def given(*commands: Any) -> StockPush | None:
    state = None
    for command in commands:
        state = project(mutate, state, decide(state, command, ctx()))
    return state


def when(state: StockPush | None, command: Any) -> list[Event]:
    return decide(state, command, ctx())


def sent(version: int, **extra: Any) -> RecordStockPushSent:
    return RecordStockPushSent(
        **KEYS, request_id=push_request_id(*KEYS.values(), version), **extra
    )


def test_a_request_carries_a_stable_id_from_listing_and_version() -> None:
    (event,) = when(None, ask(7, 3))
    assert isinstance(event, StockPushRequested)
    assert event.originator_id == stock_push_id("douyin_shop", "77001", "A-1")
    assert event.request_id == push_request_id("douyin_shop", "77001", "A-1", 3)
    assert (event.quantity, event.target_version) == (7, 3)


def test_replayed_or_older_requests_decide_nothing() -> None:
    state = given(ask(7, 3))
    assert when(state, ask(7, 3)) == []
    assert when(state, ask(9, 2)) == []


def test_a_newer_target_supersedes_the_pending_one() -> None:
    state = given(ask(7, 3))
    superseded, requested = when(state, ask(5, 4))
    assert isinstance(superseded, StockPushSuperseded)
    assert superseded.request_id == push_request_id(*KEYS.values(), 3)
    assert superseded.superseded_by == push_request_id(*KEYS.values(), 4)
    assert isinstance(requested, StockPushRequested)
    assert (requested.originator_version, requested.quantity) == (3, 5)


def test_an_unchanged_quantity_is_not_requested_again_unless_forced() -> None:
    state = given(ask(7, 3), sent(3))
    assert when(state, ask(7, 4)) == []
    (forced,) = when(state, ask(7, 3, force=True, reason="calibration"))
    assert isinstance(forced, StockPushRequested)
    assert forced.request_id == push_request_id(*KEYS.values(), 3) + "-f3"


def test_an_outcome_is_recorded_once() -> None:
    state = given(ask(7, 3))
    (event,) = when(state, sent(3, attempts=2, previous=4))
    assert isinstance(event, StockPushSent)
    assert (event.quantity, event.attempts, event.previous) == (7, 2, 4)
    after = given(ask(7, 3), sent(3))
    assert after is not None and after.pending is None and after.sent_quantity == 7
    assert when(after, sent(3)) == []


def test_a_superseded_push_in_flight_still_records_that_it_was_sent() -> None:
    state = given(ask(7, 3), ask(5, 4))
    (event,) = when(state, sent(3))
    assert isinstance(event, StockPushSent) and event.quantity == 7
    after = given(ask(7, 3), ask(5, 4), sent(3))
    assert after is not None and after.pending is not None
    assert after.pending.quantity == 5


def test_failures_count_and_a_dead_letter_settles_the_push() -> None:
    request_id = push_request_id(*KEYS.values(), 3)
    failed = RecordStockPushFailed(
        **KEYS, request_id=request_id, outcome="failed", attempts=5, code="http_503"
    )
    state = given(ask(7, 3), failed)
    assert state is not None and state.pending is not None
    assert state.pending.failures == 1
    dead = DeadLetterStockPush(
        **KEYS, request_id=request_id, outcome="failed", rounds=3, code="http_503"
    )
    (event,) = when(state, dead)
    assert isinstance(event, StockPushDeadLettered)
    assert (event.quantity, event.rounds) == (7, 3)
    after = given(ask(7, 3), failed, dead)
    assert after is not None and after.pending is None and after.dead_letters == 1


def test_an_outcome_of_a_push_never_requested_is_refused() -> None:
    with pytest.raises(UnknownPushRequestError, match="never requested"):
        when(given(ask(7, 3)), sent(9))
    with pytest.raises(UnknownPushRequestError):
        when(None, sent(3))
