"""The sandbox's crowd of buyers (``connectors.sandbox.crowd``) and the paged
logs, through the control API over loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from connectors.sandbox import CrowdShop, SandboxControl, SandboxControlError

pytestmark = pytest.mark.integration

#: (shop, product id, SKU id, units listed) on the two platforms that sell.
LISTED = {
    "wechat_shop": ("wx-crowd-1", "10000000000001", "9007199254740993", 31),
    "youzan": ("42001", "123", "456", 26),
}


async def _until(
    check: Callable[[], Awaitable[dict[str, Any]]],
    condition: Callable[[dict[str, Any]], bool],
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Read until the condition holds, under a deadline; return the last read."""
    async with asyncio.timeout(timeout):
        while True:
            seen = await check()
            if condition(seen):
                return seen
            await asyncio.sleep(0.01)  # polling under the deadline above


async def _shops(control: SandboxControl) -> list[CrowdShop]:
    shops = []
    for platform, (shop_id, product_id, sku_id, units) in LISTED.items():
        await control.create_shop(platform, shop_id)
        await control.set_sku(
            platform, shop_id, sku_id, product_id=product_id, stock=units
        )
        shops.append(
            CrowdShop(platform=platform, shop_id=shop_id, sku_id=sku_id, share=0.5)
        )
    return shops


async def test_a_crowd_sells_out_two_platforms_and_stops(
    sandbox_control: SandboxControl,
) -> None:
    control = sandbox_control
    shops = await _shops(control)
    started = await control.start_crowd(
        shops, 400.0, quantities=[1, 2, 3], seed=5, buyers_per_platform=4
    )
    assert started["running"] is True
    with pytest.raises(SandboxControlError, match="running"):
        await control.start_crowd(shops, 1.0)

    # Sold out on both, and buyers keep coming (refused: nothing listed).
    await _until(
        control.crowd,
        lambda c: all(
            p["listed"] == 0 and p["refused"] >= 3 for p in c["by_platform"].values()
        ),
    )
    stopped = await control.stop_crowd()
    assert stopped["running"] is False
    assert stopped["stopped_at"] >= stopped["started_at"]

    for platform, (shop_id, _, sku_id, units) in LISTED.items():
        counts = stopped["by_platform"][platform]
        shop = await control.shop(platform, shop_id)
        # Never below zero, at any step.
        assert all(change["after"] >= 0 for change in shop["stock_changes"])
        assert shop["skus"][sku_id]["stock"] == 0
        # Every unit listed was sold once, in orders the crowd counted, paid.
        orders = shop["orders"].values()
        assert sum(line["quantity"] for o in orders for line in o["lines"]) == units
        assert counts["units"] == units and counts["listed"] == 0
        assert counts["placed"] == len(shop["orders"])
        assert {o["status"] for o in orders} == {"paid"}
        assert all(1 <= line["quantity"] <= 3 for o in orders for line in o["lines"])
        assert counts["errors"] == 0
        # Each order pushed created then paid (no webhook here: logged unsent).
        pushed = await control.pushes(platform=platform)
        assert sorted(p["event"] for p in pushed) == sorted(
            ["created", "paid"] * counts["placed"]
        )
    assert stopped["placed"] == sum(
        p["placed"] for p in stopped["by_platform"].values()
    )
    assert stopped["units"] == sum(units for *_, units in LISTED.values())

    # Stopped means no buyer is left: restocked units stay listed, the counts
    # stay final, and a new crowd may start.
    shop_id, product_id, sku_id, _ = LISTED["youzan"]
    await control.set_sku("youzan", shop_id, sku_id, product_id=product_id, stock=5)
    again = await control.crowd()
    assert again["running"] is False
    assert {k: again[k] for k in ("placed", "refused", "errors", "units")} == {
        k: stopped[k] for k in ("placed", "refused", "errors", "units")
    }
    assert await control.stock("youzan", shop_id, sku_id) == 5
    assert (await control.start_crowd(shops[1:], 1.0))["running"] is True
    await control.stop_crowd()


async def test_a_refused_buyer_takes_what_is_listed_once(
    sandbox_control: SandboxControl,
) -> None:
    control = sandbox_control
    shop_id, product_id, sku_id, _ = LISTED["youzan"]
    await control.create_shop("youzan", shop_id)
    await control.set_sku("youzan", shop_id, sku_id, product_id=product_id, stock=2)
    shop = CrowdShop(platform="youzan", shop_id=shop_id, sku_id=sku_id, share=1.0)
    await control.start_crowd([shop], 200.0, quantities=[3], buyers_per_platform=1)
    crowd = await _until(control.crowd, lambda c: c["refused"] >= 2)
    await control.stop_crowd()
    orders = list((await control.shop("youzan", shop_id))["orders"].values())
    # Asked 3 of 2: refused, then bought the 2; every later buyer is refused.
    assert [line["quantity"] for line in orders[0]["lines"]] == [2]
    assert len(orders) == 1 and crowd["placed"] == 1 and crowd["units"] == 2


async def test_reset_stops_the_crowd_and_bad_crowds_are_refused(
    sandbox_control: SandboxControl,
) -> None:
    control = sandbox_control
    with pytest.raises(SandboxControlError, match="no crowd"):
        await control.crowd()
    shops = await _shops(control)
    with pytest.raises(SandboxControlError, match="no SKU"):
        await control.start_crowd(
            [CrowdShop(platform="youzan", shop_id="42001", sku_id="nope", share=1.0)],
            10.0,
        )
    with pytest.raises(SandboxControlError, match="twice"):
        await control.start_crowd([shops[0], shops[0]], 10.0)
    await control.start_crowd(shops, 50.0)
    await control.reset()
    with pytest.raises(SandboxControlError, match="no crowd"):
        await control.crowd()


async def test_logs_page_from_a_position(sandbox_control: SandboxControl) -> None:
    control = sandbox_control
    shop_id, product_id, sku_id, _ = LISTED["youzan"]
    await control.create_shop("youzan", shop_id)
    await control.set_sku("youzan", shop_id, sku_id, product_id=product_id, stock=9)
    assert (await control.health())["pushes"] == 0
    for _ in range(5):
        order = await control.create_order(
            "youzan", shop_id, [{"sku_id": sku_id, "quantity": 1}]
        )
    await control.order_action("youzan", shop_id, order["order_id"], "pay")
    assert (await control.health())["pushes"] == 6

    everything = await control.pushes()
    assert [p["seq"] for p in everything] == list(range(6))
    page = await control.pushes(since=2, limit=3)
    assert [p["seq"] for p in page] == [2, 3, 4]
    assert await control.pushes(order_id=order["order_id"], since=5) == everything[5:]
    assert await control.log("pushes", page=4) == everything
    assert await control.log("pushes", since=6) == []
    with pytest.raises(SandboxControlError):
        await control.pushes(limit=0)
