"""The reference case as the sandbox plays it: a beauty brand's shops, products
and buyers, for ``hub demo``.

The brand sells through one WeChat Channels account on all four platforms,
Youzan first. A session is shaped like the reference case: nine warm-up videos
with 380,000 plays in all, then one live session whose buyers pay with the
live room's coupon stacked on the shop's spend-threshold reduction. The full
session sells above 2,000,000 CNY; the quick one is a small session of the
same shape.

This module is the outside world only: who sells what where, and what the
merchant does on a platform's consent page. The hub learns all of it through
the platforms' APIs and pushes.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx

from domain.allocation import AllocationRule

#: The channel account the brand sells through.
CHANNEL_ACCOUNT = "sph_beauty_demo"
#: The streamer of the live session.
STREAMER = "streamer_lin"
#: The sandbox's consent pages approve at once for the shop named in this
#: (sandbox-only) query parameter.
CONSENT_SHOP_PARAM = {"kuaishou_shop": "shop_id", "youzan": "kdt_id"}


@dataclass(frozen=True)
class DemoShop:
    """One shop of the brand: where it is, how much of the stock it lists,
    and what share of the buyers it gets."""

    platform: str
    shop_id: str
    rule: AllocationRule
    demand: float
    #: What the binding maps where the platform's scope is a custom mapping.
    mapped_data: tuple[str, ...] = ()


#: Youzan carries the session (its order list hands the hub whole orders, many
#: a call, so it keeps up within its budget of 10 calls a second); WeChat Shop's
#: budget of 5 calls a second allows it a share of the buyers it can read one
#: by one. Douyin's orders reach the hub 30 minutes late and Kuaishou's on a
#: manual pull, so those two list a small part of the stock and stop at the
#: last units.
SHOPS = (
    DemoShop(
        platform="youzan",
        shop_id="91234567",
        rule=AllocationRule(share_percent=50),
        demand=0.80,
        mapped_data=("orders", "users", "products", "stock"),
    ),
    DemoShop(
        platform="wechat_shop",
        shop_id="wx-beauty-01",
        rule=AllocationRule(share_percent=30),
        demand=0.10,
    ),
    DemoShop(
        platform="douyin_shop",
        shop_id="dy-beauty-01",
        rule=AllocationRule(share_percent=10, zero_out_at_or_below=20),
        demand=0.05,
    ),
    DemoShop(
        platform="kuaishou_shop",
        shop_id="ks-beauty-01",
        rule=AllocationRule(share_percent=10, zero_out_at_or_below=20),
        demand=0.05,
    ),
)


@dataclass(frozen=True)
class DemoProduct:
    """A product of the brand: its hub SKU, title, price and stock."""

    sku: str
    title: str
    price_fen: int
    stock: int
    low_stock: int
    #: How often buyers pick it, relative to the others.
    weight: float
    #: Its picture, by URL (the hub never fetches it).
    image: str = ""


#: The brand's line-up. The gift set is the session's limited item: it sells
#: out and raises the low-stock alert.
PRODUCTS = (
    DemoProduct(
        sku="BEAUTY-LIP-01",
        image="https://img.beauty-demo.example/beauty-lip-01.jpg",
        title="丝绒哑光口红 Velvet lipstick",
        price_fen=19_900,
        stock=3_000,
        low_stock=150,
        weight=0.30,
    ),
    DemoProduct(
        sku="BEAUTY-SERUM-01",
        image="https://img.beauty-demo.example/beauty-serum-01.jpg",
        title="修护精华 Repair serum 50 ml",
        price_fen=69_900,
        stock=1_800,
        low_stock=100,
        weight=0.30,
    ),
    DemoProduct(
        sku="BEAUTY-CREAM-01",
        image="https://img.beauty-demo.example/beauty-cream-01.jpg",
        title="紧致面霜 Firming cream 50 g",
        price_fen=129_900,
        stock=1_200,
        low_stock=80,
        weight=0.25,
    ),
    DemoProduct(
        sku="BEAUTY-SET-01",
        image="https://img.beauty-demo.example/beauty-set-01.jpg",
        title="限定礼盒 Limited gift set",
        price_fen=199_900,
        stock=400,
        low_stock=150,
        weight=0.15,
    ),
)

#: The nine warm-up videos and their plays: 380,000 in all.
WARM_UP_PLAYS = (82_000, 61_000, 54_000, 47_000, 39_000, 33_000, 28_000, 21_000, 15_000)


def platform_ids(platform_index: int, product_index: int) -> tuple[str, str]:
    """The (product id, SKU id) a platform gives one of the brand's products:
    digits only, as every platform accepts."""
    base = 10_000_000_000 * (platform_index + 1) + 1_000 * (product_index + 1)
    return str(base), str(base + 1)


@dataclass(frozen=True)
class Purchase:
    """One buyer's order: where, what, and whether they hold the live-room coupon."""

    shop: DemoShop
    lines: tuple[tuple[DemoProduct, int], ...]
    with_coupon: bool
    shares: int


def buyers(seed: int, coupon_share: float = 0.6) -> Iterator[Purchase]:
    """An endless stream of the session's buyers, reproducible from ``seed``.

    A buyer picks a shop by its demand, one or two products by their weights
    (one to three units of each), holds the live room's coupon with
    ``coupon_share`` probability, and shares the live room with 0-3 friends.
    """
    draw = random.Random(seed)
    demand = [shop.demand for shop in SHOPS]
    weights = [product.weight for product in PRODUCTS]
    while True:
        shop = draw.choices(SHOPS, demand)[0]
        kinds = 1 if draw.random() < 0.7 else 2
        picked: dict[str, tuple[DemoProduct, int]] = {}
        for product in draw.choices(PRODUCTS, weights, k=kinds):
            picked[product.sku] = (product, draw.choice((1, 1, 1, 2, 2, 3)))
        yield Purchase(
            shop=shop,
            lines=tuple(picked.values()),
            with_coupon=draw.random() < coupon_share,
            shares=draw.choice((0, 0, 0, 1, 2, 3)),
        )


async def consent(
    http: httpx.AsyncClient, platform: str, consent_url: str, shop_id: str
) -> str:
    """The merchant approves on the platform's consent page; where the page
    sends their browser back (the hub's callback, with ``state`` and ``code``).
    """
    url = f"{consent_url}&{urlencode({CONSENT_SHOP_PARAM[platform]: shop_id})}"
    answer = await http.get(url, follow_redirects=False)
    location = answer.headers.get("location")
    if answer.status_code not in {301, 302, 303, 307} or not location:
        raise RuntimeError(
            f"{platform}'s consent page answered {answer.status_code}, not a "
            "redirect back to the hub"
        )
    return str(location)
