"""The msgspec mapper and the group committer on the in-memory store."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, ClassVar

import msgspec
import pytest
from eventsourcing.persistence import MapperDeserialisationError, StoredEvent

from domain.events import Event, register
from domain.stock import (
    AdjustStock,
    InsufficientStockError,
    ReceiveStock,
    stock_item_id,
)
from hub.infra.store import HubApplication, MsgspecMapper, decode_event, encode_event
from hub.service.commands import STOCK_RULES
from hub.service.commit import GroupCommitter
from tests.memory_hub import held_appends

NOW = datetime(2026, 11, 26, tzinfo=UTC)


@register
class _Renamed(Event, frozen=True, kw_only=True):
    """A test event at version 2: ``amount`` was called ``qty`` in version 1."""

    TOPIC: ClassVar[str] = "test.Renamed"
    VERSION: ClassVar[int] = 2
    AGGREGATE: ClassVar[str] = "test"
    amount: int
    note: str = ""

    @classmethod
    def upcast_v1(cls, raw: dict[str, Any]) -> dict[str, Any]:
        raw["amount"] = raw.pop("qty")
        return raw


def _event(**fields: Any) -> _Renamed:
    return _Renamed(
        originator_id=uuid.UUID(int=7),
        originator_version=1,
        event_id=uuid.UUID(int=8),
        occurred_at=NOW,
        **fields,
    )


def test_mapper_round_trips_typed_values() -> None:
    mapper = MsgspecMapper()
    event = _event(amount=3, note="x")
    stored = mapper.to_stored_event(event)
    assert stored.topic == "test.Renamed:v2"
    assert mapper.to_domain_event(stored) == event


def test_old_version_is_upcast_on_read() -> None:
    old = msgspec.json.encode(
        {
            "originator_id": str(uuid.UUID(int=7)),
            "originator_version": 1,
            "event_id": str(uuid.UUID(int=8)),
            "occurred_at": NOW.isoformat(),
            "qty": 3,
        }
    )
    assert decode_event("test.Renamed:v1", old) == _event(amount=3)


def test_unknown_topic_is_a_clear_error() -> None:
    stored = StoredEvent(uuid.uuid4(), 1, "nope.Missing:v1", b"{}")
    with pytest.raises(MapperDeserialisationError, match=r"nope\.Missing"):
        MsgspecMapper().to_domain_event(stored)


def test_stored_state_is_json_not_pickle() -> None:
    assert msgspec.json.decode(encode_event(_event(amount=1)))["amount"] == 1


@contextlib.asynccontextmanager
async def _running(app: HubApplication) -> AsyncIterator[GroupCommitter]:
    """A committer on ``app`` at :data:`NOW`, started, stopped after."""
    committer = GroupCommitter(app, clock=lambda: NOW)
    await committer.start()
    try:
        yield committer
    finally:
        await committer.stop()


async def test_committer_answers_each_caller_after_one_batch(
    app: HubApplication,
) -> None:
    async with _running(app) as committer:
        await committer.execute(STOCK_RULES, ReceiveStock(sku="A", quantity=1))
        outcomes = await asyncio.gather(
            *(
                committer.execute(STOCK_RULES, ReceiveStock(sku="A", quantity=1))
                for _ in range(50)
            )
        )
        with pytest.raises(InsufficientStockError):
            await committer.execute(
                STOCK_RULES, AdjustStock(sku="A", delta=-52, reason="x")
            )
    assert committer.transactions <= 3
    assert [o.version for o in outcomes] == list(range(2, 52))
    assert outcomes[-1].state.on_hand == 51
    assert len(app.load_events(outcomes[0].aggregate_id)) == 51


async def test_a_caller_giving_up_mid_commit_does_not_fail_the_others(
    app: HubApplication,
) -> None:
    release = held_appends(app)
    async with _running(app) as committer:
        try:
            tasks = [
                asyncio.create_task(
                    committer.execute(
                        STOCK_RULES, ReceiveStock(sku=f"C-{i}", quantity=1)
                    )
                )
                for i in range(3)
            ]
            await asyncio.sleep(0)  # let the three reach the committer's queue
            while committer._queue.qsize():  # the batch is taken and being written
                await asyncio.sleep(0.001)
            tasks[1].cancel()
            release.set()
            first, third = await tasks[0], await tasks[2]
        finally:
            release.set()
    # The caller who gave up hears nothing; whether its command was still in
    # the batch depends on when the cancel landed (while the batch was being
    # decided it is dropped, once written it is stored): the others' are stored
    # once each, in order, either way.
    assert tasks[1].cancelled()
    assert first.positions[0] < third.positions[0]
    assert len(app.load_events(first.aggregate_id)) == 1
    assert len(app.load_events(third.aggregate_id)) == 1


async def test_a_state_counts_as_held_only_once_its_batch_is_written(
    app: HubApplication,
) -> None:
    release = held_appends(app)
    item = stock_item_id("D-1")
    async with _running(app) as committer:
        try:
            task = asyncio.create_task(
                committer.execute(STOCK_RULES, ReceiveStock(sku="D-1", quantity=2))
            )
            async with asyncio.timeout(10):
                while item not in committer._cache:  # decided, being written
                    await asyncio.sleep(0.001)
            # The next batch may decide on it; a push may not be answered by it.
            assert committer.cached(item) is None
            release.set()
            await task
            assert committer.cached(item).on_hand == 2
        finally:
            release.set()


async def test_a_batch_that_loses_a_race_is_decided_again_on_fresh_state(
    app: HubApplication,
) -> None:
    async with _running(app) as committer:
        first = await committer.execute(STOCK_RULES, ReceiveStock(sku="Q", quantity=5))
        # Another hub process writes version 2 behind this committer's back.
        async with _running(app) as other:
            await other.execute(STOCK_RULES, AdjustStock(sku="Q", delta=-5, reason="x"))
        # Decided on the stale cache (on hand 5), refused on fresh state (0).
        with pytest.raises(InsufficientStockError):
            await committer.execute(
                STOCK_RULES, AdjustStock(sku="Q", delta=-3, reason="y")
            )
        after = await committer.execute(STOCK_RULES, ReceiveStock(sku="Q", quantity=2))
    assert after.version == 3 and after.state.on_hand == 2
    assert len(app.load_events(first.aggregate_id)) == 3
