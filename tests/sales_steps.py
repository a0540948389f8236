"""A live session's orders, views and refunds, sent through a hub: shared by
the sales projection's tests and the dashboard's browser test."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from domain import audience, order, payout
from hub.service.hub import Hub
from tests.payout_steps import agree_terms

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)  # 20:00 in China
WECHAT = {"channel_account": "ch-1", "platform": "wechat_shop", "shop_id": "shop-1"}
DOUYIN = {"channel_account": "ch-1", "platform": "douyin_shop", "shop_id": "dy-1"}
YOUZAN = {"channel_account": "ch-1", "platform": "youzan", "shop_id": "yz-1"}


async def place(
    hub: Hub, binding: dict[str, str], number: str, fen: int, at: datetime
) -> dict[str, str]:
    keys = {"platform": binding["platform"], "platform_order_id": number}
    await hub.execute(
        "order.place",
        order.PlaceOrder(
            **keys,
            shop_id=binding["shop_id"],
            channel_account=binding["channel_account"],
            placed_at=at,
            lines=(
                order.OrderLine(
                    platform_sku_id="p-1", hub_sku="A1", quantity=1, unit_price_fen=fen
                ),
            ),
        ),
    )
    return keys


async def sell(
    hub: Hub, binding: dict[str, str], number: str, fen: int, at: datetime
) -> dict[str, str]:
    keys = await place(hub, binding, number, fen, at)
    await hub.execute("order.pay", order.PayOrder(**keys, paid_at=at))
    return keys


async def views(hub: Hub, source: str, source_id: str, n: int, at: datetime) -> None:
    await hub.execute(
        "audience.record_views",
        audience.RecordViews(
            channel_account="ch-1", source=source, source_id=source_id, views=n, at=at
        ),
    )


async def live_session(hub: Hub, binding: dict[str, str], streamer: str) -> None:
    """Live session live-1 on ``binding`` from T0 for two hours: ``streamer``, 25 %."""
    await hub.execute(
        "payout.schedule_live_session",
        payout.ScheduleLiveSession(
            **binding,
            session_id="live-1",
            starts_at=T0,
            ends_at=T0 + timedelta(hours=2),
            streamer=streamer,
            rate="0.25",
        ),
    )


async def a_session(hub: Hub) -> None:
    """Live session live-1 (bo) on WeChat and Douyin, 20:00-22:00 China time;
    anna is the WeChat binding's streamer outside it."""
    await agree_terms(hub, WECHAT, T0, T0 + timedelta(hours=2))
    await live_session(hub, DOUYIN, "bo")
    await views(hub, "live", "live-1", 200, T0 + timedelta(minutes=10))
    await views(hub, "live", "live-1", 300, T0 + timedelta(minutes=70))
    await views(hub, "video", "warm-up-1", 1_000, T0 - timedelta(days=1))
    await sell(hub, WECHAT, "W-1", 10_000, T0 + timedelta(minutes=30))
    await sell(hub, DOUYIN, "D-1", 5_000, T0 + timedelta(minutes=75))
    w3 = await place(hub, WECHAT, "W-3", 700, T0 + timedelta(minutes=50))
    await hub.execute("order.cancel", order.CancelOrder(**w3))
    w2 = await sell(hub, WECHAT, "W-2", 3_333, T0 + timedelta(hours=3))
    await hub.execute(
        "order.refund",
        order.RefundOrder(**w2, refund_id="R-1", amount_fen=1_000),
    )
    await hub.execute(
        "order.refund",
        order.RefundOrder(
            platform="douyin_shop", platform_order_id="D-1", refund_id="R-2"
        ),
    )


async def a_busy_session(hub: Hub, minutes: int = 90, seed: int = 7) -> None:
    """Session live-1 on WeChat, Douyin and Youzan from T0 for two hours, with
    orders of a few prices every minute up to ``minutes``, views, a few
    cancellations and refunds, three warm-up videos, and four orders before
    the session."""
    await agree_terms(hub, WECHAT, T0, T0 + timedelta(hours=2))
    await live_session(hub, DOUYIN, "bo")
    await live_session(hub, YOUZAN, "chen")
    for n, plays in enumerate((120_000, 160_000, 100_000), 1):
        await views(hub, "video", f"warm-up-{n}", plays, T0 - timedelta(days=n))
    chance = random.Random(seed)
    for n in range(4):  # before the session: the binding's streamer, no session
        await sell(hub, WECHAT, f"PRE-{n}", 9_900, T0 - timedelta(minutes=40 - 9 * n))
    bindings = (WECHAT, WECHAT, DOUYIN, YOUZAN, YOUZAN, YOUZAN)
    prices = (9_900, 12_900, 19_900, 29_900, 49_900)
    for minute in range(minutes):
        at = T0 + timedelta(minutes=minute, seconds=5)
        await views(hub, "live", "live-1", chance.randint(80, 400), at)
        for k in range(chance.randint(0, 3)):
            binding = chance.choice(bindings)
            number = f"{binding['platform'][:2].upper()}-{minute}-{k}"
            fen = chance.choice(prices)
            if chance.random() < 0.08:
                keys = await place(hub, binding, number, fen, at)
                await hub.execute("order.cancel", order.CancelOrder(**keys))
                continue
            keys = await sell(hub, binding, number, fen, at)
            if chance.random() < 0.06:
                await hub.execute(
                    "order.refund",
                    order.RefundOrder(**keys, refund_id=f"R-{number}"),
                )
