"""The dashboard's sales projection: per live session, platform, streamer and
hour; GMV equal to the orders' payments and to the ledger's sales; rebuildable."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from eventlog.log import log_head
from hub.service.hub import Hub
from projections import sales
from projections.base import rebuild
from projections.rebuild import rebuild_blue_green
from tests.conftest import wait_until
from tests.hub_steps import started_hub
from tests.sales_steps import T0, a_session

pytestmark = pytest.mark.integration

LIVE = sales.Selection(channel_account="ch-1", session_id="live-1")


@pytest.fixture
async def hub(database_url: str) -> AsyncIterator[Hub]:
    async with started_hub(database_url, None, clock=lambda: T0) as running:
        yield running


async def caught_up(hub: Hub, *names: str) -> None:
    async with await psycopg.AsyncConnection.connect(hub.database_url) as conn:
        head = await log_head(conn)
    for name in names:
        await hub.projection(name).wait_for(head)


async def read(hub: Hub, fn: Any, *args: Any, **kwargs: Any) -> Any:
    async with await psycopg.AsyncConnection.connect(hub.database_url) as conn:
        return await fn(conn, *args, **kwargs)


async def ledger_amounts(hub: Hub) -> tuple[int, int]:
    """The ledger's sales and refunds: the amounts of its sale and refund payouts
    (a refund's is negative), -1 for refunds until all five are there."""
    async with await psycopg.AsyncConnection.connect(hub.database_url) as conn:
        cur = await conn.execute(
            "SELECT coalesce(sum(amount_fen) FILTER (WHERE payout = 'sale'), 0), "
            "coalesce(-sum(amount_fen) FILTER (WHERE payout <> 'sale'), 0), count(*) "
            "FROM ledger_payouts"
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1]) if row[2] == 5 else -1


async def test_a_session_s_figures_count_its_orders_views_and_refunds(hub: Hub) -> None:
    await a_session(hub)
    await caught_up(hub, "sales")

    live = await read(hub, sales.summary, LIVE)
    assert (live.orders, live.paid_orders, live.cancelled_orders) == (3, 2, 1)
    assert (live.gmv_fen, live.refunded_fen, live.net_gmv_fen) == (
        15_000,
        5_000,
        10_000,
    )
    assert live.views == 500
    assert live.conversion_rate == 0.006  # 3 orders / 500 views
    assert live.average_order_value_fen == 7_500

    outside = await read(
        hub, sales.summary, sales.Selection(session_id=sales.NO_SESSION)
    )
    assert (outside.orders, outside.gmv_fen, outside.refunded_fen) == (1, 3_333, 1_000)
    assert outside.views == 0 and outside.conversion_rate is None

    by_platform = await read(hub, sales.breakdown, LIVE, "platform")
    assert [(f.extra["key"], f.gmv_fen, f.orders) for f in by_platform] == [
        ("douyin_shop", 5_000, 1),
        ("wechat_shop", 10_000, 2),
    ]
    by_streamer = await read(hub, sales.breakdown, sales.Selection(), "streamer")
    assert [(f.extra["key"], f.gmv_fen) for f in by_streamer] == [
        ("anna", 3_333),
        ("bo", 15_000),
    ]
    hours = await read(hub, sales.series, LIVE, "hour")
    assert [(f.extra["at"], f.orders, f.gmv_fen, f.views) for f in hours] == [
        (T0.isoformat(), 2, 10_000, 200),
        ((T0 + timedelta(hours=1)).isoformat(), 1, 5_000, 300),
    ]
    [found] = await read(hub, sales.sessions)
    assert (found.session_id, found.platforms, found.streamers) == (
        "live-1",
        ("douyin_shop", "wechat_shop"),
        ("bo",),
    )


async def test_gmv_is_the_orders_payments_and_the_ledger_s_sales(hub: Hub) -> None:
    await a_session(hub)
    await wait_until(lambda: _ledger_ready(hub), timeout=60)
    await caught_up(hub, "sales", "orders")

    every = await read(hub, sales.summary)
    async with await psycopg.AsyncConnection.connect(hub.database_url) as conn:
        cur = await conn.execute(
            "SELECT sum(paid_fen), sum(refunded_fen) FROM orders "
            "WHERE paid_fen IS NOT NULL"
        )
        paid, refunded = await cur.fetchone()  # type: ignore[misc]
    ledger_sales, ledger_refunds = await ledger_amounts(hub)
    assert every.gmv_fen == paid == ledger_sales == 18_333
    assert every.refunded_fen == refunded == ledger_refunds == 6_000


async def _ledger_ready(hub: Hub) -> bool:
    return (await ledger_amounts(hub))[1] != -1


async def test_a_rebuild_writes_the_same_figures(hub: Hub) -> None:
    await a_session(hub)
    await caught_up(hub, "sales")
    before = [
        await read(hub, sales.summary, LIVE),
        await read(hub, sales.series, sales.Selection(), "minute"),
    ]
    await hub.projection("sales").stop()
    await rebuild(hub.database_url, sales.SalesProjection())
    assert [
        await read(hub, sales.summary, LIVE),
        await read(hub, sales.series, sales.Selection(), "minute"),
    ] == before
    await rebuild_blue_green(hub.database_url, sales.SalesProjection())
    assert await read(hub, sales.summary, LIVE) == before[0]
