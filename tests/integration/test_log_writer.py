"""The group commit's write (``HubApplication.append_async``, one call of
``hub_append``): all of a batch or none of it, the log's channel notified, and
a connection PostgreSQL dropped replaced."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import psycopg
import pytest
from eventsourcing.persistence import IntegrityError

from domain.events import Event
from domain.stock import ReceiveStock
from hub.infra.store import HubApplication, RequestKey
from hub.service.hub import Hub
from tests.hub_steps import started_hub

pytestmark = pytest.mark.integration


@pytest.fixture
async def hub(database_url: str) -> AsyncIterator[Hub]:
    async with started_hub(database_url, None, projections=[]) as running:
        yield running


async def _received(hub: Hub, sku: str) -> Event:
    outcome = await hub.execute("stock.receive", ReceiveStock(sku=sku, quantity=1))
    return outcome.events[-1]


def _next(event: Event, versions: int) -> list[Event]:
    return [
        msgspec.structs.replace(
            event, originator_version=event.originator_version + step
        )
        for step in range(1, versions + 1)
    ]


async def _stored_count(database_url: str) -> tuple[int, int]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT (SELECT count(*) FROM hub_events),"
            " (SELECT count(*) FROM command_requests)"
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def test_a_batch_is_stored_with_its_request_ids_in_log_order(
    hub: Hub, database_url: str
) -> None:
    first, second = await _received(hub, "W-1"), await _received(hub, "W-2")
    before = await _stored_count(database_url)
    events = _next(first, 2) + _next(second, 1)
    keys = [
        RequestKey(first.originator_id, "w-1", 2, 3),
        RequestKey(second.originator_id, "w-2", 2, 2),
    ]

    positions = await hub.app.append_async(events, keys)

    assert positions == sorted(positions) and len(positions) == 3
    assert positions[0] > 2  # after the two receipts
    assert await _stored_count(database_url) == (before[0] + 3, before[1] + 2)
    found = hub.app.recorded_requests([(first.originator_id, "w-1")])
    assert found[(first.originator_id, "w-1")][0] == positions[:2]
    assert [e.originator_version for e in hub.app.load_events(first.originator_id)] == [
        1,
        2,
        3,
    ]


async def test_a_version_stored_before_fails_the_whole_batch(
    hub: Hub, database_url: str
) -> None:
    event = await _received(hub, "W-3")
    fresh = await _received(hub, "W-4")
    before = await _stored_count(database_url)
    taken = [event]  # version 1, stored by the receipt
    with pytest.raises(IntegrityError):
        await hub.app.append_async(
            _next(fresh, 1) + taken, [RequestKey(fresh.originator_id, "w-4", 2, 2)]
        )
    assert await _stored_count(database_url) == before


async def test_a_request_id_recorded_before_fails_the_whole_batch(
    hub: Hub, database_url: str
) -> None:
    event = await _received(hub, "W-5")
    key = RequestKey(event.originator_id, "w-5", 2, 2)
    await hub.app.append_async(_next(event, 1), [key])
    before = await _stored_count(database_url)
    with pytest.raises(IntegrityError):
        await hub.app.append_async(
            [msgspec.structs.replace(event, originator_version=3)],
            [RequestKey(event.originator_id, "w-5", 3, 3)],
        )
    assert await _stored_count(database_url) == before


async def test_the_logs_channel_is_notified_at_commit(
    hub: Hub, database_url: str
) -> None:
    event = await _received(hub, "W-6")
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True
    ) as listener:
        await listener.execute("LISTEN hub_events")
        await hub.app.append_async(_next(event, 1))
        heard = [n.channel async for n in listener.notifies(timeout=10, stop_after=1)]
    assert heard == ["hub_events"]


async def test_a_connection_postgres_dropped_is_replaced(
    hub: Hub, database_url: str
) -> None:
    event = await _received(hub, "W-7")
    app: HubApplication = hub.app
    await app.append_async(_next(event, 1))
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True
    ) as admin:
        cur = await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE %s",
            ("%hub_append%",),
        )
        assert [row[0] for row in await cur.fetchall()] == [True]

    positions = await app.append_async(
        [msgspec.structs.replace(event, originator_version=3)]
    )

    assert len(positions) == 1
    assert [e.originator_version for e in app.load_events(event.originator_id)] == [
        1,
        2,
        3,
    ]


async def test_an_empty_batch_stores_nothing(hub: Hub, database_url: str) -> None:
    before = await _stored_count(database_url)
    assert await hub.app.append_async([]) == []
    assert await _stored_count(database_url) == before
