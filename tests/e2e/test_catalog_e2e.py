"""The product library against the four sandbox platforms, both ways.

A product defined in the hub appears on every bound shop in the platform's
shape; an edit on a ``two_way`` platform is taken in and written to the other
shops; an edit on a ``hub_to_platform`` platform (Kuaishou in the bundled
book) is refused, recorded, and written over with the hub's revision.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from connectors.products import ProductWrite
from connectors.sandbox import SandboxControl, SandboxServer
from domain import catalog
from eventlog.log import log_head
from hub.bootstrap import bootstrap, connect_platforms
from hub.entry.platforms import Platforms
from hub.infra.shops import ConnectorsConfig, ShopConfig
from hub.service.catalog import read_product
from hub.service.catalog_sync import CatalogSync, product_request_id
from hub.service.hub import Hub
from hub.service.inventory import aggregate_history
from hub.service.policies import load_policy_book
from tests.binding_payloads import ACCOUNT, connect_through_route, encode
from tests.conftest import wait_until

pytestmark = pytest.mark.e2e

PLATFORMS = ("wechat_shop", "douyin_shop", "kuaishou_shop", "youzan")
SHOPS = {
    "wechat_shop": "wx-cat-1",
    "douyin_shop": "77101",
    "kuaishou_shop": "900101",
    "youzan": "42101",
}
PRODUCT: dict[str, Any] = {
    "product": "LIP-1",
    "title": "丝绒口红",
    "price_fen": 12_900,
    "skus": [
        {"sku": "LIP-1-RED", "attributes": {"色号": "正红"}, "price_fen": 12_900},
        {"sku": "LIP-1-NUDE", "attributes": {"色号": "裸色"}, "price_fen": 13_900},
    ],
    "images": ["https://img.example.com/lip-1.jpg", "http://img.example.com/2.png"],
}
#: Platforms that hold a product-level price (the others carry it per SKU).
PRICED = {"douyin_shop", "youzan"}


@dataclass
class Rig:
    hub: Hub
    platforms: Platforms
    control: SandboxControl

    @property
    def catalog(self) -> CatalogSync:
        assert self.platforms.catalog is not None
        return self.platforms.catalog

    async def held(self, platform: str) -> list[dict[str, Any]]:
        return await self.control.products(platform, SHOPS[platform])

    async def titles(self) -> dict[str, list[str]]:
        return {p: [x["title"] for x in await self.held(p)] for p in PLATFORMS}


@pytest.fixture
async def rig(
    database_url: str, sandbox: SandboxServer, sandbox_control: SandboxControl
) -> AsyncIterator[Rig]:
    shops = []
    for platform in PLATFORMS:
        creds = await sandbox_control.create_shop(platform, SHOPS[platform])
        shops.append(
            ShopConfig(
                platform=platform,
                shop_id=SHOPS[platform],
                channel_account=ACCOUNT,
                credentials=creds,
            )
        )
    config = ConnectorsConfig(
        base_urls=dict.fromkeys(PLATFORMS, sandbox.url), shops=tuple(shops)
    )
    hub = bootstrap(
        database_url=database_url, nats_url=None, policy_book=load_policy_book()
    )
    await hub.start()
    platforms = connect_platforms(hub, config, catalog_poll_s=None)
    assert platforms.routes is not None
    for platform in PLATFORMS:
        # Youzan maps its data: the product library is one of the kinds.
        mapped = ["products", "orders"] if platform == "youzan" else []
        await connect_through_route(
            hub,
            platforms.routes,
            sandbox_control,
            platform,
            SHOPS[platform],
            mapped_data=mapped,
        )
    await platforms.start(schedule=False)
    try:
        yield Rig(hub, platforms, sandbox_control)
    finally:
        await platforms.stop()
        await hub.stop()


async def _everywhere(rig: Rig) -> None:
    """Wait until every shop holds the product and the hub recorded each write.

    The shop holds the product as soon as the platform answers; the hub
    records the write (ProductSynced) a moment later.
    """

    async def written_and_recorded() -> bool:
        if not all(len(titles) == 1 for titles in (await rig.titles()).values()):
            return False
        product = await read_product(rig.hub.database_url, "LIP-1")
        return len(product.synced) == len(PLATFORMS)

    await wait_until(written_and_recorded, timeout=60)


async def _define(rig: Rig) -> None:
    reply = await rig.hub.handle("product.define", encode(PRODUCT))
    assert reply.ok, reply.error
    assert reply.events == ["ProductDefined"]

    await _everywhere(rig)


async def test_a_defined_product_appears_on_every_bound_shop_in_its_shape(
    rig: Rig,
) -> None:
    await _define(rig)
    skus = [(s["sku"], s["attributes"], s["price_fen"]) for s in PRODUCT["skus"]]
    for platform in PLATFORMS:
        (held,) = await rig.held(platform)
        assert held["outer_id"] == "LIP-1", platform
        assert held["title"] == "丝绒口红", platform
        assert held["images"] == PRODUCT["images"], platform
        assert [
            (s["sku"], s["attributes"], s["price_fen"]) for s in held["skus"]
        ] == skus, platform
        expected_price = 12_900 if platform in PRICED else None
        assert held["price_fen"] == expected_price, platform
    product = await read_product(rig.hub.database_url, "LIP-1")
    assert {key: sync.revision for key, sync in product.synced.items()} == {
        f"{p}:{SHOPS[p]}": 1 for p in PLATFORMS
    }
    # A second pass writes nothing: every shop holds revision 1.
    assert await rig.catalog.sync_product("LIP-1") == 0
    assert await rig.catalog.poll() == 0


async def test_an_edit_on_a_two_way_platform_is_taken_in_and_propagated(
    rig: Rig,
) -> None:
    await _define(rig)
    (held,) = await rig.held("youzan")
    # The merchant edits on Youzan a little later than the hub's definition.
    await rig.control.advance_clock(2)
    await rig.control.edit_product(
        "youzan", SHOPS["youzan"], held["platform_product_id"], title="丝绒口红 礼盒"
    )
    assert await rig.catalog.poll() == 1
    product = await read_product(rig.hub.database_url, "LIP-1")
    assert (product.title, product.revision) == ("丝绒口红 礼盒", 2)

    async def propagated() -> bool:
        titles = await rig.titles()
        return all(t == ["丝绒口红 礼盒"] for t in titles.values())

    await wait_until(propagated, timeout=60)
    history = await aggregate_history(rig.hub.database_url, catalog.product_id("LIP-1"))
    received = [e for _, e in history if isinstance(e, catalog.ProductChangeReceived)]
    assert [(e.platform, e.fields) for e in received] == [("youzan", ("title",))]


async def test_an_edit_on_a_hub_to_platform_platform_is_refused_and_written_over(
    rig: Rig,
) -> None:
    await _define(rig)
    (held,) = await rig.held("kuaishou_shop")
    await rig.control.advance_clock(2)
    await rig.control.edit_product(
        "kuaishou_shop",
        SHOPS["kuaishou_shop"],
        held["platform_product_id"],
        title="改过的标题",
    )
    assert await rig.catalog.poll() == 1
    product = await read_product(rig.hub.database_url, "LIP-1")
    assert (product.title, product.revision) == ("丝绒口红", 1)
    history = await aggregate_history(rig.hub.database_url, catalog.product_id("LIP-1"))
    refused = [e for _, e in history if isinstance(e, catalog.ProductChangeRefused)]
    assert len(refused) == 1
    assert refused[0].platform == "kuaishou_shop"
    assert refused[0].direction == "hub_to_platform"
    assert "the hub's library is the truth" in refused[0].reason

    async def written_back() -> bool:
        return [x["title"] for x in await rig.held("kuaishou_shop")] == ["丝绒口红"]

    await wait_until(written_back, timeout=60)
    titles = await rig.titles()
    assert all(t == ["丝绒口红"] for t in titles.values()), titles


async def test_a_write_left_unrecorded_by_a_stop_is_repeated_once_on_restart(
    rig: Rig,
) -> None:
    # The worker is down when the product is defined: its position stays
    # behind the definition in the log.
    await rig.catalog.stop()
    reply = await rig.hub.handle("product.define", encode(PRODUCT))
    assert reply.ok, reply.error
    # As if it had written to Youzan and stopped before recording the write.
    state = await read_product(rig.hub.database_url, "LIP-1")
    shop = rig.platforms.connectors.shop("youzan", SHOPS["youzan"])
    client: Any = rig.platforms.connectors.client(shop)
    first_id = await client.upsert_product(
        shop.shop_id,
        ProductWrite(
            product="LIP-1",
            content=state.content(),
            platform_product_id=None,
            request_id=product_request_id(state, "youzan", shop.shop_id),
        ),
    )
    # Started again, it resumes from the log and writes every shop, Youzan
    # again under the same request id: applied once.
    await rig.catalog.start()

    await _everywhere(rig)
    await rig.catalog.runner.wait_for(await _head(rig))
    product = await read_product(rig.hub.database_url, "LIP-1")
    assert product.platform_product_id("youzan", SHOPS["youzan"]) == first_id
    assert len(await rig.held("youzan")) == 1


async def _head(rig: Rig) -> int:
    async with await psycopg.AsyncConnection.connect(rig.hub.database_url) as conn:
        return await log_head(conn)
