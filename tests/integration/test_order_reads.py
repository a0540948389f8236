"""Order reads within a shop's API budget (hub/service/inbound.py).

A real hub (PostgreSQL) takes in orders pushed by the sandbox's Douyin shop,
which enforces the shop's API budget. When pushes come faster than the budget
allows reads, the orders are read in batches through the list API by update
time: every pushed order is stored, with fewer calls than pushes and none
beyond the budget.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest

from connectors.sandbox import ApiBudget, SandboxControl, SandboxServer
from domain import order
from domain.policy import SyncPolicy
from hub.bootstrap import bootstrap
from hub.infra.shops import Connectors, ConnectorsConfig, Listing, ShopConfig
from hub.service.hub import Hub
from hub.service.inbound import OrderIntake
from hub.service.policies import load_policy_book, sync_policies
from tests.binding_payloads import (
    ACCOUNT,
    MAPPED_DATA,
    activate,
    book_with_douyin_orders,
)

pytestmark = pytest.mark.integration

PLATFORM = "douyin_shop"
SHOP = "77001"
PRODUCT, SKU_ID = "3500000000000000001", "1780000000000000001"
#: Two calls a second, two at once: the sandbox's budget and the client's.
BUDGET = ApiBudget(rate_per_s=2.0, burst=2)
PUSHES = 30


@pytest.fixture
async def hub(database_url: str) -> AsyncIterator[Hub]:
    running = bootstrap(
        database_url=database_url,
        nats_url=None,
        projections=[],
        policy_book=book_with_douyin_orders(),
    )
    await running.start()
    yield running
    await running.stop()


def _policy() -> SyncPolicy:
    policy = sync_policies(load_policy_book())[PLATFORM]
    return msgspec.structs.replace(
        policy,
        rate_limit=msgspec.structs.replace(
            policy.rate_limit, rate_per_s=BUDGET.rate_per_s, burst=BUDGET.burst
        ),
    )


async def test_pushes_beyond_the_read_budget_store_every_order_in_fewer_calls(
    hub: Hub, sandbox: SandboxServer, sandbox_control: SandboxControl
) -> None:
    # Given a Douyin shop whose platform allows two calls a second.
    creds = await sandbox_control.create_shop(PLATFORM, SHOP)
    await sandbox_control.set_sku(
        PLATFORM, SHOP, SKU_ID, product_id=PRODUCT, stock=1000, price_fen=990
    )
    await activate(hub, PLATFORM, SHOP, MAPPED_DATA.get(PLATFORM, ()))
    shop = ShopConfig(
        platform=PLATFORM,
        shop_id=SHOP,
        channel_account=ACCOUNT,
        credentials=creds,
        listings=(
            Listing(hub_sku="SKU-1", platform_sku_id=SKU_ID, product_id=PRODUCT),
        ),
    )
    policies = {PLATFORM: _policy()}
    connectors = Connectors(
        ConnectorsConfig(base_urls={PLATFORM: sandbox.url}, shops=(shop,)),
        policies=policies,
    )
    intake = OrderIntake(hub, connectors)
    await connectors.ready_client(shop)  # its token, outside the budget
    order_ids = []
    for _ in range(PUSHES):
        placed = await sandbox_control.create_order(
            PLATFORM, SHOP, [{"sku_id": SKU_ID, "quantity": 1}]
        )
        order_ids.append(str(placed["order_id"]))
    await sandbox_control.set_budget(PLATFORM, BUDGET)
    before = (await sandbox_control.health())["requests"]

    # When a push for each comes at once,
    try:
        taken = await asyncio.gather(
            *(intake.pull_order(shop, order_id) for order_id in order_ids)
        )
    finally:
        await connectors.aclose()

    # then every order is stored before its push is answered, with fewer
    # calls than pushes, none refused for the budget.
    assert [t.platform_order_id for t in taken] == order_ids
    for order_id in order_ids:
        stored = await hub.committer.load(
            intake.rules, order.order_id(PLATFORM, order_id)
        )
        assert stored is not None, order_id
    calls = await sandbox_control.log("requests", since=before)
    results = [c["result"] for c in calls]
    assert "over_budget" not in results
    assert len(calls) < PUSHES / 3, [c["api"] for c in calls]
