"""The hub and the sandbox platforms end to end: webhooks, order sync, stock out.

A real hub (PostgreSQL, NATS relay, projections) serves its webhooks with
uvicorn on a loopback port; the sandbox pushes signed orders to it and answers
its API calls, with faults injected. Connector clients and the push retry
rounds run on a fake clock whose sleeps only move it, so minute-long backoffs
cost nothing; only injected timeouts wait for real, briefly.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.douyin_shop import protocol as douyin_protocol
from connectors.kuaishou_shop import protocol as kuaishou_protocol
from connectors.sandbox import FaultConfig, SandboxControl, SandboxServer
from connectors.wechat_shop import protocol as wechat_protocol
from domain import order as order_domain
from domain.allocation import AllocationRule, allocate
from domain.policy import PolicyBook
from domain.stock import (
    AdjustStock,
    ReceiveStock,
    ReportPlatformStock,
    StockItem,
    stock_item_id,
)
from eventlog.log import log_head
from hub.bootstrap import bootstrap, connect_platforms
from hub.entry.platforms import Platforms
from hub.entry.status import read_status
from hub.infra.shops import ConnectorsConfig, Listing, ShopConfig
from hub.infra.webhook_letters import WebhookDeadLetters
from hub.service.commands import ORDER_RULES, STOCK_RULES
from hub.service.hub import Hub
from hub.service.inventory import read_drift
from hub.service.policies import load_policy_book
from hub.service.sync import OVERLAP, PollCursors, SyncScheduler
from tests.binding_payloads import (
    ACCOUNT,
    MAPPED_DATA,
    book_with_douyin_orders,
    connect_through_route,
)
from tests.fake_clock import FakeClock
from tests.webhook_pushes import (
    DOUYIN_CREDS,
    KUAISHOU_CREDS,
    WECHAT_CREDS,
    YOUZAN_CREDS,
    wechat_order_message,
    wechat_push,
    youzan_push,
)

pytestmark = pytest.mark.e2e

PLATFORMS = ("wechat_shop", "douyin_shop", "kuaishou_shop", "youzan")
SHOPS = {
    "wechat_shop": "wx-shop-1",
    "douyin_shop": "77001",
    "kuaishou_shop": "900001",
    "youzan": "42001",
}
#: hub SKU → (product id, platform SKU id) on each platform.
LISTED = {
    "SKU-A": {
        "wechat_shop": ("10000000000001", "9007199254740993"),
        "douyin_shop": ("3500000000000000001", "1780000000000000001"),
        "kuaishou_shop": ("20046611202546", "300001"),
        "youzan": ("123", "456"),
    },
    "SKU-B": {
        "wechat_shop": ("10000000000002", "9007199254740995"),
        "douyin_shop": ("3500000000000000002", "1780000000000000002"),
        "kuaishou_shop": ("20046611202547", "300002"),
        "youzan": ("124", "457"),
    },
}
#: Each channel's share of a SKU (domain.allocation rules).
RULES = {
    "wechat_shop": AllocationRule(share_percent=50),
    "douyin_shop": AllocationRule(fixed_quantity=12, buffer=2),
    "kuaishou_shop": AllocationRule(buffer=3),
    "youzan": AllocationRule(max_listed=30),
}
TWENTY_PERCENT = FaultConfig(
    error_5xx_rate=0.05,
    rate_limit_rate=0.05,
    timeout_rate=0.05,
    token_expiry_rate=0.05,
    timeout_delay_s=0.6,
)


@dataclass
class Rig:
    """A running hub, its platforms side, and the sandbox."""

    hub: Hub
    platforms: Platforms
    control: SandboxControl
    config: ConnectorsConfig
    clock: FakeClock
    schedule_now: list[datetime] = field(default_factory=list)

    def shop(self, platform: str) -> ShopConfig:
        return self.platforms.connectors.shop(platform, SHOPS[platform])


@pytest.fixture
async def rig(
    database_url: str,
    nats_url: str,
    sandbox: SandboxServer,
    sandbox_control: SandboxControl,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Rig]:
    """A rig on the bundled policy book with Douyin bindings reading orders, or
    on the book a test gives (``parametrize("rig", [book], indirect=True)``)."""
    book: PolicyBook = (
        request.param if hasattr(request, "param") else book_with_douyin_orders()
    )
    async for running in _rig(database_url, nats_url, sandbox, sandbox_control, book):
        yield running


async def _rig(
    database_url: str,
    nats_url: str,
    sandbox: SandboxServer,
    sandbox_control: SandboxControl,
    book: PolicyBook,
) -> AsyncIterator[Rig]:
    control = sandbox_control
    shops = []
    for platform in PLATFORMS:
        shop_id = SHOPS[platform]
        creds = await control.create_shop(platform, shop_id)
        listings = []
        for sku, by_platform in LISTED.items():
            product_id, sku_id = by_platform[platform]
            await control.set_sku(
                platform, shop_id, sku_id, product_id=product_id, stock=5, price_fen=990
            )
            listings.append(
                Listing(
                    hub_sku=sku,
                    platform_sku_id=sku_id,
                    product_id=product_id,
                    rule=RULES[platform],
                )
            )
        shops.append(
            ShopConfig(
                platform=platform,
                shop_id=shop_id,
                channel_account=ACCOUNT,
                credentials=creds,
                listings=tuple(listings),
            )
        )
    config = ConnectorsConfig(
        base_urls=dict.fromkeys(PLATFORMS, sandbox.url), shops=tuple(shops)
    )
    hub = bootstrap(database_url=database_url, nats_url=nats_url, policy_book=book)
    await hub.start()
    clock = FakeClock()
    schedule_now = [datetime.now(UTC)]
    platforms = connect_platforms(
        hub,
        config,
        clock=lambda: schedule_now[-1],
        client_options={
            "clock": clock,
            "sleep": clock.sleep,
            "jitter": random.Random(7).random,
            "timeout_s": 0.4,
        },
        sleep=clock.sleep,
        jitter=random.Random(11).random,
    )
    assert platforms.routes is not None
    for platform in PLATFORMS:
        await connect_through_route(
            hub,
            platforms.routes,
            control,
            platform,
            SHOPS[platform],
            mapped_data=MAPPED_DATA.get(platform, ()),
        )
    await platforms.start(http_port=0, schedule=False)
    assert platforms.http is not None
    await control.set_webhooks(
        {p: f"{platforms.http.url}/webhooks/{p}" for p in PLATFORMS}
    )
    yield Rig(hub, platforms, control, config, clock, schedule_now)
    await platforms.stop()
    await hub.stop()


async def _settled(rig: Rig) -> None:
    """Every stock event requested its pushes, and every push has an outcome."""
    outbound = rig.platforms.outbound
    for _ in range(3):
        async with await psycopg.AsyncConnection.connect(rig.hub.database_url) as c:
            head = await log_head(c)
        await outbound.runner.wait_for(head)
        await outbound.drain()


async def _listed(rig: Rig, platform: str, sku: str) -> int:
    _, sku_id = LISTED[sku][platform]
    return await rig.control.stock(platform, SHOPS[platform], sku_id)


async def _expected(rig: Rig, sku: str) -> dict[str, int]:
    item: StockItem = await rig.hub.committer.load(STOCK_RULES, stock_item_id(sku))
    by_key = allocate(
        item.available,
        {f"{p}/{SHOPS[p]}": RULES[p] for p in PLATFORMS},
    )
    return {p: by_key[f"{p}/{SHOPS[p]}"] for p in PLATFORMS}


async def _events_named(database_url: str, *names: str) -> dict[str, int]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT split_part(split_part(topic, ':', 1), '.', 2), count(*) "
            "FROM hub_events GROUP BY 1"
        )
        counts = {str(r[0]): int(r[1]) for r in await cur.fetchall()}
    return {name: counts.get(name, 0) for name in names}


async def _calibrate_kuaishou(rig: Rig) -> None:
    """Move the schedule across 15:00 Beijing time: Kuaishou calibrates."""
    beijing = timedelta(hours=8)
    day = (datetime.now(UTC) + beijing).date()
    before = datetime(day.year, day.month, day.day, 6, 59, tzinfo=UTC)  # 14:59
    rig.schedule_now.append(before)
    await rig.platforms.scheduler.tick()
    rig.schedule_now.append(before + timedelta(minutes=2))
    report = await rig.platforms.scheduler.tick()
    assert report.calibrated == ["kuaishou_shop"]


# --------------------------------------------------------------------------- stock


async def test_stock_converges_on_all_four_platforms_under_twenty_percent_faults(
    rig: Rig,
) -> None:
    for platform in PLATFORMS:
        await rig.control.set_faults(platform, TWENTY_PERCENT)
    execute = rig.hub.execute
    await execute("stock.receive", ReceiveStock(sku="SKU-A", quantity=80))
    await execute("stock.receive", ReceiveStock(sku="SKU-B", quantity=9))
    changes = [("SKU-A", -5), ("SKU-B", 4), ("SKU-A", 11), ("SKU-A", -30)]
    for index, (sku, delta) in enumerate(changes):
        await execute(
            "stock.adjust",
            AdjustStock(sku=sku, delta=delta, reason=f"count {index}"),
        )
        await asyncio.sleep(0.05)  # let some pushes start: later ones supersede
    await _settled(rig)
    await _calibrate_kuaishou(rig)
    await _settled(rig)

    for platform in PLATFORMS:
        await rig.control.set_faults(platform, FaultConfig())
    for sku in LISTED:
        expected = await _expected(rig, sku)
        listed = {p: await _listed(rig, p, sku) for p in PLATFORMS}
        assert listed == expected, sku
    log = [e for p in PLATFORMS for e in await rig.control.requests(platform=p)]
    assert {entry["fault"] for entry in log} - {None} == {
        "5xx",
        "rate_limit",
        "timeout",
        "token_expired",
    }
    counts = await _events_named(
        rig.hub.database_url,
        "StockPushRequested",
        "StockPushSent",
        "StockPushSuperseded",
        "StockPushDeadLettered",
    )
    assert counts["StockPushDeadLettered"] == 0
    assert counts["StockPushRequested"] >= 2 * len(PLATFORMS)
    status = await read_status(rig.hub.database_url, None)
    assert status.dead_letters == 0


async def test_a_push_never_puts_back_units_a_platform_sold_unseen(rig: Rig) -> None:
    await rig.hub.execute("stock.receive", ReceiveStock(sku="SKU-A", quantity=40))
    await _settled(rig)
    before = await _listed(rig, "wechat_shop", "SKU-A")
    assert before == (await _expected(rig, "SKU-A"))["wechat_shop"] > 2
    # A buyer takes 2 on WeChat, but the push never reaches the hub (yet).
    await rig.control.set_webhooks({"wechat_shop": "http://127.0.0.1:9/unreachable"})
    _, sku_id = LISTED["SKU-A"]["wechat_shop"]
    await rig.control.create_order(
        "wechat_shop", SHOPS["wechat_shop"], [{"sku_id": sku_id, "quantity": 2}]
    )
    assert await _listed(rig, "wechat_shop", "SKU-A") == before - 2
    # Another stock change makes the hub push WeChat a new target.
    await rig.hub.execute(
        "stock.adjust", AdjustStock(sku="SKU-A", delta=-6, reason="damaged")
    )
    await _settled(rig)
    target = (await _expected(rig, "SKU-A"))["wechat_shop"]
    assert target != before
    # The 2 units sold unseen stay off sale: WeChat shows the target less 2.
    assert await _listed(rig, "wechat_shop", "SKU-A") == target - 2


async def test_a_raise_waits_until_the_other_listings_have_come_down(
    rig: Rig,
) -> None:
    """A sale on WeChat shifts units to WeChat from Douyin and Youzan (their
    shares of a smaller pool shrink; WeChat's own number fell by the sale). While
    their reductions fail, WeChat is not raised into units they still list."""
    await rig.hub.execute("stock.receive", ReceiveStock(sku="SKU-A", quantity=40))
    await _settled(rig)
    assert await _expected(rig, "SKU-A") == {
        p: await _listed(rig, p, "SKU-A") for p in PLATFORMS if p != "kuaishou_shop"
    } | {"kuaishou_shop": (await _expected(rig, "SKU-A"))["kuaishou_shop"]}
    for platform in ("douyin_shop", "youzan"):
        await rig.control.set_faults(platform, FaultConfig(error_5xx_rate=1.0))
    _, sku_id = LISTED["SKU-A"]["wechat_shop"]
    await rig.control.create_order(
        "wechat_shop", SHOPS["wechat_shop"], [{"sku_id": sku_id, "quantity": 4}]
    )
    head = await _head(rig)
    await rig.hub.process("order_stock").wait_for(head)
    await _settled(rig)

    item: StockItem = await rig.hub.committer.load(STOCK_RULES, stock_item_id("SKU-A"))
    assert item.available == 36
    expected = await _expected(rig, "SKU-A")
    listed = {p: await _listed(rig, p, "SKU-A") for p in PLATFORMS}
    # Kuaishou is calibrated on its schedule: the hub counts it at its target.
    others = listed["douyin_shop"] + listed["youzan"] + expected["kuaishou_shop"]
    # Douyin and Youzan still list their old shares: WeChat's raise is held back
    # to what is left, short of its target (without the guard it would be there).
    assert listed["youzan"] > expected["youzan"]
    assert (
        listed["wechat_shop"] + others
        <= item.available
        < expected["wechat_shop"] + others
    )
    assert rig.platforms.outbound.held_back() == [
        ("wechat_shop", SHOPS["wechat_shop"], "SKU-A")
    ]

    # Once their reductions land, WeChat gets the rest.
    for platform in ("douyin_shop", "youzan"):
        await rig.control.set_faults(platform, FaultConfig())
    await rig.hub.execute(
        "stock.adjust", AdjustStock(sku="SKU-A", delta=-1, reason="damaged")
    )
    await _settled(rig)
    expected = await _expected(rig, "SKU-A")
    for platform in ("wechat_shop", "douyin_shop", "youzan"):
        assert await _listed(rig, platform, "SKU-A") == expected[platform], platform
    assert rig.platforms.outbound.held_back() == []
    # Every write names the stock version it was computed from: @v when it
    # brought the listing to its target, @h when part was held back.
    writes = [
        str(entry["request_id"])
        for p in PLATFORMS
        for entry in await rig.control.requests(platform=p)
        if str(entry.get("request_id") or "").startswith("sp-")
    ]
    marks = {w.rpartition("@")[2][0] for w in writes}
    assert marks == {"v", "h"}
    assert all(w.rpartition("@")[2][1:].isdigit() for w in writes), writes
    synced = {(s.platform, s.version) for s in rig.platforms.outbound.syncs}
    assert ("wechat_shop", item.version) not in synced  # it was held back then
    assert any(p == "wechat_shop" and v > item.version for p, v in synced)


async def test_drift_is_recorded_by_calibration_and_a_reported_drift_calibrates(
    rig: Rig,
) -> None:
    await rig.hub.execute("stock.receive", ReceiveStock(sku="SKU-A", quantity=40))
    await _settled(rig)
    target = (await _expected(rig, "SKU-A"))["youzan"]
    product_id, sku_id = LISTED["SKU-A"]["youzan"]
    shop_id = SHOPS["youzan"]

    # Someone changed Youzan's number behind the hub's back; a calibration
    # finds it, records the drift and puts the listing right.
    await rig.control.set_sku(
        "youzan", shop_id, sku_id, product_id=product_id, stock=99, price_fen=990
    )
    assert await rig.platforms.outbound.calibrate("youzan") >= 1
    await _settled(rig)
    await rig.hub.projection("stock_drift").wait_for(await _head(rig))
    (row,) = await read_drift(rig.hub.database_url, "SKU-A")
    assert (row.platform, row.reported, row.expected) == ("youzan", 99, target)
    assert await _listed(rig, "youzan", "SKU-A") == target

    # A drift reported from outside (here: by command) makes the hub calibrate
    # that listing: read it again and send the difference.
    await rig.control.set_sku(
        "youzan", shop_id, sku_id, product_id=product_id, stock=3, price_fen=990
    )
    await rig.hub.execute(
        "stock.report_platform",
        ReportPlatformStock(
            sku="SKU-A",
            platform="youzan",
            shop_id=shop_id,
            reported=3,
            expected=target,
        ),
    )
    await _settled(rig)
    assert await _listed(rig, "youzan", "SKU-A") == target


async def test_a_restarted_dispatcher_goes_on_from_its_ledger(rig: Rig) -> None:
    """After a restart the dispatcher does not read the platform again (the
    read would count a sale the hub has not heard of, which is subtracted once
    more when it arrives): it goes on from the ledger it saved."""
    await rig.hub.execute("stock.receive", ReceiveStock(sku="SKU-A", quantity=40))
    await _settled(rig)
    before = await _listed(rig, "wechat_shop", "SKU-A")
    await rig.control.set_webhooks({"wechat_shop": "http://127.0.0.1:9/unreachable"})
    _, sku_id = LISTED["SKU-A"]["wechat_shop"]
    await rig.control.create_order(
        "wechat_shop", SHOPS["wechat_shop"], [{"sku_id": sku_id, "quantity": 2}]
    )
    assert await _listed(rig, "wechat_shop", "SKU-A") == before - 2

    # The hub's platform side restarts (same hub, same database).
    await rig.platforms.stop()
    rig.platforms = connect_platforms(
        rig.hub,
        rig.config,
        client_options={"clock": rig.clock, "sleep": rig.clock.sleep},
        token_store=rig.platforms.connectors.tokens,
        sleep=rig.clock.sleep,
    )
    await rig.platforms.outbound.start()
    try:
        await rig.hub.execute(
            "stock.adjust", AdjustStock(sku="SKU-A", delta=-6, reason="damaged")
        )
        await _settled(rig)
        target = (await _expected(rig, "SKU-A"))["wechat_shop"]
        # The 2 units sold unseen stay off sale across the restart.
        assert await _listed(rig, "wechat_shop", "SKU-A") == target - 2
    finally:
        await rig.platforms.stop()


async def test_a_push_that_keeps_failing_is_dead_lettered_and_shown_in_status(
    rig: Rig,
) -> None:
    await rig.control.set_faults("youzan", FaultConfig(error_5xx_rate=1.0))
    await rig.hub.execute("stock.receive", ReceiveStock(sku="SKU-B", quantity=7))
    await _settled(rig)

    counts = await _events_named(
        rig.hub.database_url, "StockPushFailed", "StockPushDeadLettered"
    )
    # Three rounds per SKU listing: two failed rounds, then the dead letter.
    assert counts == {"StockPushFailed": 2, "StockPushDeadLettered": 1}
    await rig.hub.projection("stock_pushes").wait_for(await _head(rig))
    status = await read_status(rig.hub.database_url, None)
    assert status.dead_letters == 1
    (dead,) = status.recent_dead_letters
    assert (dead.platform, dead.sku, dead.code) == ("youzan", "SKU-B", "http_503")
    expected = await _expected(rig, "SKU-B")
    assert await _listed(rig, "wechat_shop", "SKU-B") == expected["wechat_shop"]
    assert await _listed(rig, "youzan", "SKU-B") == 5  # never changed


async def test_a_push_whose_token_cannot_be_renewed_is_dead_lettered_not_lost(
    rig: Rig,
) -> None:
    await rig.hub.execute("stock.receive", ReceiveStock(sku="SKU-B", quantity=7))
    await _settled(rig)
    # Past Youzan's refresh-token lifetime: the access token is refused and so
    # is its renewal, so the write cannot even be made.
    await rig.control.advance_clock(29 * 24 * 3600)
    await rig.hub.execute(
        "stock.adjust", AdjustStock(sku="SKU-B", delta=-3, reason="damaged")
    )
    await _settled(rig)

    await rig.hub.projection("stock_pushes").wait_for(await _head(rig))
    status = await read_status(rig.hub.database_url, None)
    dead = {(d.platform, d.sku) for d in status.recent_dead_letters}
    assert ("youzan", "SKU-B") in dead


async def _head(rig: Rig) -> int:
    async with await psycopg.AsyncConnection.connect(rig.hub.database_url) as conn:
        return await log_head(conn)


async def test_expired_tokens_are_refreshed_without_losing_a_call(rig: Rig) -> None:
    await rig.hub.execute("stock.receive", ReceiveStock(sku="SKU-A", quantity=20))
    await _settled(rig)
    await _calibrate_kuaishou(rig)
    await _settled(rig)
    tokens = rig.platforms.connectors.tokens
    before = {p: tokens.get(p, SHOPS[p]) for p in PLATFORMS}
    for platform in PLATFORMS:
        assert await rig.control.expire_tokens(platform, SHOPS[platform]) >= 1

    await rig.hub.execute(
        "stock.adjust", AdjustStock(sku="SKU-A", delta=-4, reason="damaged")
    )
    await _settled(rig)
    # A calibration re-sends every listing, so every shop makes a call.
    assert await rig.platforms.outbound.calibrate() == len(PLATFORMS)  # SKU-A
    await _settled(rig)

    expected = await _expected(rig, "SKU-A")
    assert {p: await _listed(rig, p, "SKU-A") for p in PLATFORMS} == expected
    counts = await _events_named(
        rig.hub.database_url, "StockPushFailed", "StockPushDeadLettered"
    )
    assert counts == {"StockPushFailed": 0, "StockPushDeadLettered": 0}
    for platform in PLATFORMS:
        after = tokens.get(platform, SHOPS[platform])
        assert after is not None and before[platform] is not None
        assert after.access_token != before[platform].access_token, platform  # type: ignore[union-attr]
        results = [e["result"] for e in await rig.control.requests(platform=platform)]
        assert "refused" in results, platform


# --------------------------------------------------------------------------- orders


SANDBOX_STATUS = {
    "created": "placed",
    "paid": "paid",
    "shipped": "shipped",
    "completed": "completed",
    "cancelled": "cancelled",
}


async def _order_story(rig: Rig, platform: str, story: list[str]) -> str:
    """Place an order on the sandbox and take it through ``story``'s actions."""
    _, sku_id = LISTED["SKU-A"][platform]
    placed = await rig.control.create_order(
        platform, SHOPS[platform], [{"sku_id": sku_id, "quantity": 1}]
    )
    order_id = str(placed["order_id"])
    for action in story:
        details = (
            {"carrier_code": "SF", "tracking_no": "SF1"} if action == "ship" else {}
        )
        await rig.control.order_action(
            platform, SHOPS[platform], order_id, action, **details
        )
    return order_id


STORIES = [[], ["pay"], ["pay", "ship"], ["pay", "ship", "complete"], ["cancel"]]


async def test_orders_pushed_twice_and_out_of_order_are_stored_once(
    rig: Rig,
) -> None:
    faults = FaultConfig(
        duplicate_push_rate=0.5,
        out_of_order_push_rate=0.3,
        error_5xx_rate=0.1,
        rate_limit_rate=0.1,
    )
    for platform in ("wechat_shop", "youzan"):
        await rig.control.set_sku(
            platform,
            SHOPS[platform],
            LISTED["SKU-A"][platform][1],
            product_id=LISTED["SKU-A"][platform][0],
            stock=100,
            price_fen=990,
        )
        await rig.control.set_faults(platform, faults)
    placed: dict[str, list[str]] = {"wechat_shop": [], "youzan": []}
    for story in STORIES * 2:
        for platform, orders in placed.items():
            orders.append(await _order_story(rig, platform, story))
    await rig.control.flush_pushes()

    for platform, orders in placed.items():
        deliveries = await rig.control.pushes(platform=platform)
        assert any(d["duplicate"] for d in deliveries), platform
        assert any(d["late"] for d in deliveries), platform
        assert {d["status"] for d in deliveries} == {200}, platform
        shop = (await rig.control.shop(platform, SHOPS[platform]))["orders"]
        for order_id in orders:
            state = await rig.hub.committer.load(
                ORDER_RULES, order_domain.order_id(platform, order_id)
            )
            assert state is not None, (platform, order_id)
            assert state.status == SANDBOX_STATUS[shop[order_id]["status"]]
            assert len(state.steps) == len(set(state.steps))
    counts = await _events_named(rig.hub.database_url, "OrderPlaced")
    assert counts["OrderPlaced"] == sum(len(o) for o in placed.values())


async def test_a_push_of_news_the_hub_holds_is_acknowledged_without_a_read(
    rig: Rig,
) -> None:
    platform, read = "wechat_shop", "/channels/ec/order/get"
    await rig.control.set_faults(platform, FaultConfig(duplicate_push_rate=1.0))
    reads_before = len(await rig.control.requests(platform=platform, api=read))
    order_id = await _order_story(rig, platform, ["pay"])
    await rig.control.flush_pushes()

    # Every push is sent twice, the second once the first is answered (after
    # the hub stored its news): new, new, paid, paid, all acknowledged.
    deliveries = await rig.control.pushes(platform=platform, order_id=order_id)
    assert [(d["event"], d["duplicate"], d["status"]) for d in deliveries] == [
        ("channels_ec_order_new", False, 200),
        ("channels_ec_order_new", True, 200),
        ("channels_ec_order_pay", False, 200),
        ("channels_ec_order_pay", True, 200),
    ]
    state = await rig.hub.committer.load(
        ORDER_RULES, order_domain.order_id(platform, order_id)
    )
    assert state is not None and state.status == "paid"
    # One read for each push with news; none for the copies.
    reads = await rig.control.requests(platform=platform, api=read)
    assert len(reads) - reads_before == 2


async def test_douyin_is_polled_thirty_minutes_late_and_kuaishou_on_demand(
    rig: Rig,
) -> None:
    douyin = rig.shop("douyin_shop")
    now = int(time.time())
    _, sku_id = LISTED["SKU-A"]["douyin_shop"]
    recent = await rig.control.create_order(
        "douyin_shop", douyin.shop_id, [{"sku_id": sku_id, "quantity": 1}], at=now - 600
    )
    deliveries = await rig.control.pushes(platform="douyin_shop")
    assert [d["status"] for d in deliveries] == [200]  # verified, acknowledged
    recent_id = order_domain.order_id("douyin_shop", str(recent["order_id"]))
    assert await rig.hub.committer.load(ORDER_RULES, recent_id) is None

    scheduler = rig.platforms.scheduler
    rig.schedule_now.append(datetime.fromtimestamp(now, UTC))
    first = await scheduler.tick()
    (poll,) = [p for p in first.polls if p.shop == douyin.key]
    assert poll.ok and poll.until == datetime.fromtimestamp(now - 1800, UTC)
    assert await rig.hub.committer.load(ORDER_RULES, recent_id) is None
    rig.schedule_now.append(datetime.fromtimestamp(now + 25 * 60, UTC))
    second = await scheduler.tick()
    (poll,) = [p for p in second.polls if p.shop == douyin.key]
    assert (poll.ok, poll.orders) == (True, 1)
    assert await rig.hub.committer.load(ORDER_RULES, recent_id) is not None
    assert all(p.shop != rig.shop("kuaishou_shop").key for p in second.polls)

    kuaishou = rig.shop("kuaishou_shop")
    _, ks_sku = LISTED["SKU-A"]["kuaishou_shop"]
    ks_order = await rig.control.create_order(
        "kuaishou_shop", kuaishou.shop_id, [{"sku_id": ks_sku, "quantity": 2}]
    )
    ks_id = order_domain.order_id("kuaishou_shop", str(ks_order["order_id"]))
    assert await rig.hub.committer.load(ORDER_RULES, ks_id) is None
    report = await scheduler.sync_orders(
        kuaishou,
        since=datetime.now(UTC) - timedelta(hours=1),
        until=datetime.now(UTC) + timedelta(minutes=1),
    )
    assert (report.ok, report.orders) == (True, 1)
    assert await rig.hub.committer.load(ORDER_RULES, ks_id) is not None


async def test_polls_resume_where_they_ended_after_a_restart(rig: Rig) -> None:
    douyin = rig.shop("douyin_shop")
    start = datetime.now(UTC).replace(microsecond=0)
    rig.schedule_now.append(start)
    first = await rig.platforms.scheduler.tick()
    (poll,) = [p for p in first.polls if p.shop == douyin.key]
    assert poll.ok

    # A new process three hours later (the hub was down): its first poll of the
    # shop starts where the last one ended, not an hour back.
    restarted = SyncScheduler(
        rig.platforms.intake,
        None,
        clock=lambda: rig.schedule_now[-1],
        policies=rig.platforms.policies,
        cursors=PollCursors(rig.hub.database_url),
    )
    rig.schedule_now.append(start + timedelta(hours=3))
    try:
        report = await restarted.sync_orders(douyin)
    finally:
        await restarted.aclose()
    assert report.ok
    assert report.since == poll.until - OVERLAP
    assert report.until == start + timedelta(hours=3) - timedelta(minutes=30)


# On the bundled policy book: Douyin bindings see products only.
@pytest.mark.parametrize("rig", [load_policy_book()], indirect=True, ids=["bundled"])
async def test_a_products_only_binding_takes_its_sales_in_without_buyers(
    rig: Rig,
) -> None:
    # Every sale on a bound shop reaches the hub's stock: a Douyin binding sees
    # "product information only", so its orders are pulled (30 minutes late)
    # for their stock, and their buyers are not kept.
    douyin = rig.shop("douyin_shop")
    _, sku_id = LISTED["SKU-A"]["douyin_shop"]
    await rig.hub.execute("stock.receive", ReceiveStock(sku="SKU-A", quantity=40))
    await _settled(rig)
    pushed = await rig.control.create_order(
        "douyin_shop",
        douyin.shop_id,
        [{"sku_id": sku_id, "quantity": 3}],
        buyer={
            "name": "张三",
            "phone": "13800138000",
            "province": "广东省",
            "city": "深圳市",
            "district": "南山区",
            "detail": "科技园 1 号",
        },
    )
    deliveries = await rig.control.pushes(platform="douyin_shop")
    # Douyin orders are polled, not taken from pushes: acknowledged, no pull.
    assert [d["status"] for d in deliveries] == [200]
    report = await rig.platforms.scheduler.sync_orders(
        douyin,
        since=datetime.now(UTC) - timedelta(hours=1),
        until=datetime.now(UTC) + timedelta(minutes=1),
    )
    assert report.ok and not report.refused and report.orders == 1, report
    oid = order_domain.order_id("douyin_shop", str(pushed["order_id"]))
    assert await rig.hub.committer.load(ORDER_RULES, oid) is not None
    (placed,) = [
        e
        for e in rig.hub.app.load_events(oid)
        if isinstance(e, order_domain.OrderPlaced)
    ]
    assert placed.buyer is None, "a products-only binding keeps no buyer"
    item: StockItem = await rig.hub.committer.load(STOCK_RULES, stock_item_id("SKU-A"))
    assert item.platform_sold.get("douyin_shop") == 3
    # The binding still pushes stock: products are in its scope.
    await _settled(rig)
    assert (
        await _listed(rig, "douyin_shop", "SKU-A")
        == (await _expected(rig, "SKU-A"))["douyin_shop"]
    )


# ---------------------------------------------------------------- hostile pushes


async def _order_reads(rig: Rig, platform: str, api: str) -> int:
    calls = await rig.control.requests(platform=platform, shop_id=SHOPS[platform])
    return sum(api in c["api"] for c in calls)


async def _post(rig: Rig, platform: str, **request: Any) -> httpx.Response:
    assert rig.platforms.http is not None
    async with httpx.AsyncClient(base_url=rig.platforms.http.url) as http:
        if request.pop("method", "POST") == "GET":
            return await http.get(f"/webhooks/{platform}", **request)
        return await http.post(f"/webhooks/{platform}", **request)


async def test_a_youzan_push_with_its_unsigned_outer_id_changed_reads_no_other_order(
    rig: Rig,
) -> None:
    shop = rig.shop("youzan")
    await rig.control.set_webhooks({"youzan": "http://127.0.0.1:9/nowhere"})
    _, sku_id = LISTED["SKU-A"]["youzan"]
    other = await rig.control.create_order(
        "youzan", shop.shop_id, [{"sku_id": sku_id, "quantity": 1}]
    )
    other_id = str(other["order_id"])
    reads = await _order_reads(rig, "youzan", "trade.get")
    # A captured push of order E-CAPTURED: msg (signed) names it; the outer id,
    # outside the signature, was changed to the other order.
    body = youzan_push(
        dict(shop.credentials),
        {"tid": "E-CAPTURED", "status": "TRADE_PAID", "kdt_id": shop.shop_id},
        id=other_id,
        kdt_id=int(shop.shop_id),
    )
    response = await _post(rig, "youzan", content=body)
    assert response.status_code == 400, response.text
    assert "only msg is signed" in response.json()["error"]["message"]
    assert await _order_reads(rig, "youzan", "trade.get") == reads
    stored = await rig.hub.committer.load(
        ORDER_RULES, order_domain.order_id("youzan", other_id)
    )
    assert stored is None


async def test_a_wechat_push_or_url_check_signed_long_ago_is_refused_unread(
    rig: Rig,
) -> None:
    shop = rig.shop("wechat_shop")
    creds = dict(shop.credentials)
    _, sku_id = LISTED["SKU-A"]["wechat_shop"]
    await rig.control.set_webhooks({"wechat_shop": "http://127.0.0.1:9/nowhere"})
    placed = await rig.control.create_order(
        "wechat_shop", shop.shop_id, [{"sku_id": sku_id, "quantity": 1}]
    )
    order_id = int(placed["order_id"])
    reads = await _order_reads(rig, "wechat_shop", "order/get")
    for timestamp in ("0", "1400000000"):  # 1970 and 2014
        query, body = wechat_push(
            creds, wechat_order_message(creds["username"], order_id), timestamp
        )
        response = await _post(rig, "wechat_shop", params=query, content=body)
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "stale_push"
        check = {
            "signature": wechat_protocol.signature(creds["push_token"], timestamp, "n"),
            "timestamp": timestamp,
            "nonce": "n",
            "echostr": "echo",
        }
        answer = await _post(rig, "wechat_shop", method="GET", params=check)
        assert answer.status_code == 401, answer.text
    assert await _order_reads(rig, "wechat_shop", "order/get") == reads
    stored = await rig.hub.committer.load(
        ORDER_RULES, order_domain.order_id("wechat_shop", str(order_id))
    )
    assert stored is None
    # The same push signed now is taken in.
    query, body = wechat_push(
        creds,
        wechat_order_message(creds["username"], order_id),
        str(int(time.time())),
    )
    response = await _post(rig, "wechat_shop", params=query, content=body)
    assert (response.status_code, response.text) == (200, "success")


async def test_a_signed_push_of_an_order_the_platform_does_not_have_is_dead_lettered(
    rig: Rig,
) -> None:
    wechat = dict(rig.shop("wechat_shop").credentials)
    youzan = rig.shop("youzan")
    for _ in range(2):  # the platform re-sends: counted, still acknowledged
        query, body = wechat_push(
            wechat,
            wechat_order_message(wechat["username"], 1234567890123),
            str(int(time.time())),
        )
        answer = await _post(rig, "wechat_shop", params=query, content=body)
        assert (answer.status_code, answer.text) == (200, "success")
        body = youzan_push(
            dict(youzan.credentials),
            {"tid": "E404", "status": "TRADE_PAID", "kdt_id": youzan.shop_id},
        )
        answer = await _post(rig, "youzan", content=body)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"code": 0, "msg": "success"}
    count, letters = await WebhookDeadLetters(rig.hub.database_url).recent()
    assert count == 2
    assert sorted(
        (r.platform, r.shop_id, r.order_id, r.code, r.pushes) for r in letters
    ) == [
        ("wechat_shop", SHOPS["wechat_shop"], "1234567890123", "10020701", 2),
        ("youzan", SHOPS["youzan"], "E404", "141500404", 2),
    ]


# --------------------------------------------------------------------------- bad input


def _bad_input_config() -> ConnectorsConfig:
    creds = {
        "wechat_shop": WECHAT_CREDS,
        "douyin_shop": DOUYIN_CREDS,
        "kuaishou_shop": KUAISHOU_CREDS,
        "youzan": YOUZAN_CREDS,
    }
    return ConnectorsConfig(
        base_urls=dict.fromkeys(PLATFORMS, "http://127.0.0.1:9"),
        shops=tuple(
            ShopConfig(
                platform=p,
                shop_id=SHOPS[p],
                channel_account=ACCOUNT,
                credentials=creds[p],
            )
            for p in PLATFORMS
        ),
    )


@dataclass(frozen=True)
class Push:
    platform: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


junk_text = st.text(max_size=16)
_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | junk_text
)
#: Any JSON value, nested two levels (deeper nesting finds nothing new here).
junk_json = st.one_of(
    _scalars,
    st.lists(_scalars, max_size=3),
    st.dictionaries(junk_text, _scalars | st.lists(_scalars, max_size=2), max_size=3),
)
#: Bodies that are not what any platform sends: bytes, text, any JSON.
junk_bodies = st.one_of(
    st.binary(max_size=96),
    junk_text.map(str.encode),
    junk_json.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b"", b"{}", b"[]", b"<xml></xml>", b'{"test":false}']),
)


@st.composite
def wechat_pushes(draw: st.DrawFn) -> Push:
    token = WECHAT_CREDS["push_token"]
    timestamp = str(draw(st.integers(0, 2**33)))
    nonce = draw(st.text(alphabet="abcdef0123456789", max_size=10))
    kind = draw(st.sampled_from(["junk", "forged", "signed_junk"]))
    if kind == "junk":
        body = draw(junk_bodies)
        query = draw(st.dictionaries(junk_text, junk_text, max_size=4))
        return Push("wechat_shop", query, {}, body)
    if kind == "forged":
        plain = draw(junk_json.map(lambda v: json.dumps(v).encode()))
        encrypted = wechat_protocol.encrypt(
            WECHAT_CREDS["encoding_aes_key"], plain, WECHAT_CREDS["app_id"]
        )
        signature = draw(st.text(alphabet="0123456789abcdef", min_size=40, max_size=40))
    else:
        # Signed with the right token, but the Encrypt text is not a message
        # encrypted for this app (random Base64, or junk under a wrong appid).
        if draw(st.booleans()):
            encrypted = base64.b64encode(draw(st.binary(max_size=96))).decode()
        else:
            encrypted = wechat_protocol.encrypt(
                WECHAT_CREDS["encoding_aes_key"],
                draw(junk_bodies),
                draw(st.sampled_from(["", "wx-other", WECHAT_CREDS["app_id"]])),
            )
        signature = wechat_protocol.msg_signature(token, timestamp, nonce, encrypted)
    query = {"timestamp": timestamp, "nonce": nonce, "msg_signature": signature}
    body = json.dumps({"ToUserName": "gh_shop", "Encrypt": encrypted}).encode()
    return Push("wechat_shop", query, {}, body)


@st.composite
def douyin_pushes(draw: st.DrawFn) -> Push:
    body = draw(
        st.one_of(
            junk_bodies,
            st.lists(
                st.fixed_dictionaries(
                    {"tag": junk_json, "msg_id": junk_json, "data": junk_json}
                ),
                max_size=3,
            ).map(lambda v: json.dumps(v).encode()),
        )
    )
    if draw(st.booleans()):
        sign = douyin_protocol.event_sign(
            DOUYIN_CREDS["app_key"], body, DOUYIN_CREDS["app_secret"]
        )
    else:
        sign = draw(st.text(alphabet="0123456789abcdef", max_size=32))
    headers = {"event-sign": sign, "app-id": DOUYIN_CREDS["app_key"]}
    return Push("douyin_shop", {}, headers, body)


@st.composite
def kuaishou_pushes(draw: st.DrawFn) -> Push:
    plain = draw(
        st.one_of(
            junk_bodies,
            st.fixed_dictionaries(
                {"event": junk_json, "msgId": junk_json, "info": junk_json}
            ).map(lambda v: json.dumps(v).encode()),
        )
    )
    kind = draw(st.sampled_from(["junk", "wrong_key", "right_key"]))
    if kind == "junk":
        return Push("kuaishou_shop", {}, {}, draw(junk_bodies))
    key = (
        KUAISHOU_CREDS["message_key"]
        if kind == "right_key"
        else base64.b64encode(secrets.token_bytes(16)).decode()
    )
    body = kuaishou_protocol.encrypt_push(key, plain).encode()
    return Push("kuaishou_shop", {}, {}, body)


def _not_an_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return True
    return False


@st.composite
def youzan_pushes(draw: st.DrawFn) -> Push:
    msg = quote(json.dumps(draw(junk_json)), safe="")
    push: dict[str, Any] = {
        "client_id": YOUZAN_CREDS["client_id"],
        "id": draw(junk_json),
        "kdt_id": draw(st.one_of(st.just(int(SHOPS["youzan"])), junk_json)),
        "type": draw(st.one_of(st.just("trade_TradePaid"), junk_json)),
        "version": draw(junk_json),
        "msg": msg,
    }
    if draw(st.booleans()):
        payload = f"{YOUZAN_CREDS['client_id']}{msg}{YOUZAN_CREDS['client_secret']}"
        # A right sign: then some other field must be wrong for the push to be
        # malformed, so "version" is never a valid Unix time here.
        push["sign"] = hashlib.md5(payload.encode()).hexdigest()
        push["version"] = draw(
            st.one_of(junk_text.filter(_not_an_int), st.none(), st.just(2**70))
        )
    else:
        push["sign"] = draw(st.text(max_size=32))
    body = draw(st.one_of(st.just(json.dumps(push).encode()), junk_bodies))
    return Push("youzan", {}, {}, body)


any_push = st.one_of(
    wechat_pushes(), douyin_pushes(), kuaishou_pushes(), youzan_pushes()
)


async def test_ten_thousand_malformed_or_mis_signed_pushes_get_400_or_401_and_store_nothing(  # noqa: E501
    database_url: str,
) -> None:
    hub = bootstrap(database_url=database_url, nats_url=None)
    await hub.start()
    platforms = connect_platforms(hub, _bad_input_config())
    transport = httpx.ASGITransport(app=platforms.app())
    loop = asyncio.get_running_loop()
    answered: dict[int, int] = {}
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as http:

        async def post(push: Push) -> int:
            response = await http.post(
                f"/webhooks/{push.platform}",
                params=push.query,
                headers=push.headers,
                content=push.body,
            )
            return response.status_code

        @settings(
            max_examples=10_000,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(any_push)
        def check(push: Push) -> None:
            status = asyncio.run_coroutine_threadsafe(post(push), loop).result()
            answered[status] = answered.get(status, 0) + 1
            assert status in (400, 401), push

        await asyncio.to_thread(check)
    try:
        assert sum(answered.values()) == 10_000
        assert set(answered) == {400, 401}
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            assert await log_head(conn) == 0
    finally:
        await platforms.stop()
        await hub.stop()
