"""Shipments out: an order the hub ships is shipped on the platform it came from.

A sandbox order reaches the hub paid (WeChat and Youzan by push, Douyin and
Kuaishou by their order pulls); ``order.ship`` in the hub then tells the
platform (carrier, tracking number) and records its answer on the order. A
shipment the platform itself reported is never sent back to it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from domain import order as order_domain
from domain.order import ShipmentNoticeRecorded, ShipOrder
from hub.service.commands import ORDER_RULES
from tests.e2e import test_connectors_e2e as connectors_e2e
from tests.e2e.test_connectors_e2e import LISTED, Rig

pytestmark = pytest.mark.e2e

#: The connectors' rig: a running hub, its platforms side and the sandbox.
rig = connectors_e2e.rig

PULLED = {"douyin_shop", "kuaishou_shop"}


async def _paid_in_hub(rig: Rig, platform: str) -> str:
    """Place and pay an order on ``platform``; return its id once the hub has it."""
    shop = rig.shop(platform)
    _, sku_id = LISTED["SKU-A"][platform]
    placed = await rig.control.create_order(
        platform, shop.shop_id, [{"sku_id": sku_id, "quantity": 1}]
    )
    order_id = str(placed["order_id"])
    await rig.control.order_action(platform, shop.shop_id, order_id, "pay")
    if platform in PULLED:
        report = await rig.platforms.scheduler.sync_orders(
            shop,
            since=datetime.now(UTC) - timedelta(hours=1),
            until=datetime.now(UTC) + timedelta(minutes=1),
        )
        assert report.ok, report
    oid = order_domain.order_id(platform, order_id)
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        state = await rig.hub.committer.load(ORDER_RULES, oid)
        if state is not None and state.status == "paid":
            return order_id
        assert asyncio.get_running_loop().time() < deadline, (platform, state)
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    "platform", ["wechat_shop", "douyin_shop", "kuaishou_shop", "youzan"]
)
async def test_an_order_shipped_in_the_hub_is_shipped_on_its_platform(
    rig: Rig, platform: str
) -> None:
    order_id = await _paid_in_hub(rig, platform)
    await rig.hub.execute(
        "order.ship",
        ShipOrder(
            platform=platform,
            platform_order_id=order_id,
            carrier="SF",
            tracking_ref="SF1234567890",
        ),
    )
    assert rig.platforms.shipments is not None
    await rig.platforms.shipments.drain()
    shop = await rig.control.shop(platform, rig.shop(platform).shop_id)
    assert shop["orders"][order_id]["status"] == "shipped"
    assert shop["orders"][order_id]["tracking_no"] == "SF1234567890"
    oid = order_domain.order_id(platform, order_id)
    state = await rig.hub.committer.load(ORDER_RULES, oid)
    assert state.shipment_notice == "sent"
    (notice,) = [
        e for e in rig.hub.app.load_events(oid) if isinstance(e, ShipmentNoticeRecorded)
    ]
    assert notice.request_id == f"ship-{platform}-{order_id}"


async def test_a_shipment_the_platform_reported_is_not_sent_back(rig: Rig) -> None:
    platform = "wechat_shop"
    order_id = await _paid_in_hub(rig, platform)
    shop_id = rig.shop(platform).shop_id
    await rig.control.order_action(
        platform, shop_id, order_id, "ship", carrier_code="SF", tracking_no="SF9"
    )
    oid = order_domain.order_id(platform, order_id)
    deadline = asyncio.get_running_loop().time() + 60
    while (await rig.hub.committer.load(ORDER_RULES, oid)).status != "shipped":
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    assert rig.platforms.shipments is not None
    await rig.platforms.shipments.drain()
    calls = await rig.control.requests(platform=platform, shop_id=shop_id)
    assert [c for c in calls if "delivery" in c["api"]] == []
    events = rig.hub.app.load_events(oid)
    assert not any(isinstance(e, ShipmentNoticeRecorded) for e in events)
