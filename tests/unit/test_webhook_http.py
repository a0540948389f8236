"""The webhook HTTP entry point against hostile pushes (ASGI in process, no servers).

The order intake is a stand-in that records which orders the hub would read,
so each test sees what a push made the hub do, not only what it answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from connectors.common import PlatformCallError
from hub.entry.http import ShopQueue, create_app
from hub.infra.shops import ShopConfig
from hub.service.inbound import Ingested
from tests.conftest import wait_until
from tests.webhook_pushes import (
    KUAISHOU_CREDS,
    WECHAT_CREDS,
    wechat_order_message,
    wechat_push,
    youzan_push,
)

WECHAT = WECHAT_CREDS
KUAISHOU = KUAISHOU_CREDS
YOUZAN_A = {"client_id": "yz-a", "client_secret": "yz-secret-aaaaaaaaaa"}
YOUZAN_B = {"client_id": "yz-b", "client_secret": "yz-secret-bbbbbbbbbb"}
SHOPS = (
    ShopConfig(
        platform="wechat_shop", shop_id="wx-1", channel_account="c", credentials=WECHAT
    ),
    ShopConfig(
        platform="kuaishou_shop",
        shop_id="900001",
        channel_account="c",
        credentials=KUAISHOU,
    ),
    ShopConfig(
        platform="youzan", shop_id="42001", channel_account="c", credentials=YOUZAN_A
    ),
    ShopConfig(
        platform="youzan", shop_id="42002", channel_account="c", credentials=YOUZAN_B
    ),
)


class Registry:
    """Stands in for the hub's connectors registry: the shops of SHOPS."""

    def shops(self, platform: str | None = None) -> list[ShopConfig]:
        return [shop for shop in SHOPS if platform in (None, shop.platform)]


def _taking_pushes(taken: bool) -> Any:
    return SimpleNamespace(orders=SimpleNamespace(push_enabled=taken))


#: Which platforms' order pushes are taken in (as the bundled policy book).
POLICIES = {
    "wechat_shop": _taking_pushes(True),
    "douyin_shop": _taking_pushes(False),
    "kuaishou_shop": _taking_pushes(False),
    "youzan": _taking_pushes(True),
}


@dataclass
class Intake:
    """Stands in for OrderIntake: records reads, may hold them or fail them."""

    connectors: Registry = field(default_factory=Registry)
    hub: Any = field(default_factory=lambda: SimpleNamespace(database_url="unused"))
    reads: list[tuple[str, str]] = field(default_factory=list)
    hold: asyncio.Event | None = None
    error: Exception | None = None

    def news(
        self, changes: Iterable[tuple[ShopConfig, str, str]]
    ) -> Iterator[tuple[ShopConfig, str]]:
        """Every change: this stand-in holds no orders."""
        for shop, order_id, _ in changes:
            yield shop, order_id

    async def pull_order(self, shop: ShopConfig, order_id: str) -> Ingested:
        self.reads.append((shop.key, order_id))
        if self.error is not None:
            raise self.error
        if self.hold is not None:
            await self.hold.wait()
        return Ingested(shop.platform, order_id, "paid")


@dataclass
class Letters:
    """Stands in for WebhookDeadLetters."""

    recorded: list[tuple[str, ...]] = field(default_factory=list)

    async def record(self, *row: str) -> None:
        self.recorded.append(row)


@pytest.fixture
def intake() -> Intake:
    return Intake()


@pytest.fixture
async def post(
    intake: Intake,
) -> AsyncIterator[Callable[..., Any]]:
    clients: list[httpx.AsyncClient] = []

    def make(**options: Any) -> httpx.AsyncClient:
        app = create_app(
            intake,  # type: ignore[arg-type]
            policies=POLICIES,
            **options,
        )
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://hub"
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


def paid(creds: dict[str, str], shop_id: str, order_id: str) -> bytes:
    """A Youzan "paid" push of ``order_id`` as the platform signs it."""
    msg = {"tid": order_id, "status": "TRADE_PAID", "kdt_id": shop_id}
    return youzan_push(
        creds, msg, id=order_id, kdt_id=int(shop_id), status="TRADE_PAID"
    )


def wechat_paid(order_id: int, timestamp: str) -> tuple[dict[str, str], bytes]:
    """A WeChat "paid" push of ``order_id`` signed with ``timestamp``."""
    plain = wechat_order_message(WECHAT["username"], order_id)
    return wechat_push(WECHAT, plain, timestamp)


# --------------------------------------------------------------------------- 7: depth


async def test_kuaishou_clear_json_nested_a_thousand_levels_is_answered_400(
    post: Callable[..., httpx.AsyncClient],
) -> None:
    body = b'{"test":' + b"[" * 1000 + b"]" * 1000 + b"}"
    response = await post().post("/webhooks/kuaishou_shop", content=body)
    assert response.status_code == 400
    assert "deeper than" in response.json()["error"]["message"]


# --------------------------------------------------------------------------- 8: body


async def test_a_chunked_body_over_one_mebibyte_is_refused_413_unread(
    post: Callable[..., httpx.AsyncClient],
) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(64):  # 4 MiB, 64 KiB at a time, no Content-Length
            sent += 1
            yield b"x" * (1 << 16)

    response = await post().post("/webhooks/youzan", content=chunks())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert sent <= 17 + 1  # stopped just past 1 MiB; the rest was never read


async def test_a_body_announced_over_one_mebibyte_is_refused_413(
    post: Callable[..., httpx.AsyncClient],
) -> None:
    response = await post().post(
        "/webhooks/youzan",
        content=b"x" * 16,
        headers={"content-length": str(2 << 20)},
    )
    assert response.status_code == 413


# ---------------------------------------------------------------- 10: freshness


async def test_a_replayed_wechat_push_signed_at_timestamp_zero_reads_nothing(
    post: Callable[..., httpx.AsyncClient], intake: Intake
) -> None:
    query, body = wechat_paid(3705115058471208928, "0")
    response = await post().post("/webhooks/wechat_shop", params=query, content=body)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "stale_push"
    assert "300 s" in response.json()["error"]["message"]
    assert intake.reads == []


async def test_a_fresh_wechat_push_by_the_injected_clock_is_taken_in(
    post: Callable[..., httpx.AsyncClient], intake: Intake
) -> None:
    query, body = wechat_paid(7, "1400000000")
    client = post(clock=lambda: 1_400_000_100.0)
    response = await client.post("/webhooks/wechat_shop", params=query, content=body)
    assert (response.status_code, response.text) == (200, "success")
    assert intake.reads == [("wechat_shop/wx-1", "7")]


# ---------------------------------------------------------- 11: no such order


async def test_a_push_for_an_order_the_platform_says_does_not_exist_is_acknowledged(
    post: Callable[..., httpx.AsyncClient], intake: Intake
) -> None:
    intake.error = PlatformCallError("youzan", "rejected", "141500404", "订单不存在")
    letters = Letters()
    client = post(dead_letters=letters)
    body = paid(YOUZAN_A, "42001", "E404")
    response = await client.post("/webhooks/youzan", content=body)
    assert response.status_code == 200
    assert response.json() == {"code": 0, "msg": "success"}
    assert letters.recorded == [("youzan", "42001", "E404", "141500404", "订单不存在")]

    intake.error = PlatformCallError("youzan", "failed", "http_503", "unavailable")
    response = await client.post("/webhooks/youzan", content=body)
    assert response.status_code == 503  # not definitive: the platform re-sends
    assert len(letters.recorded) == 1


# ------------------------------------------------------------- per-shop limit


async def test_one_shops_flood_is_refused_429_while_another_shop_is_served(
    post: Callable[..., httpx.AsyncClient], intake: Intake
) -> None:
    intake.hold = asyncio.Event()
    queue = ShopQueue(in_flight=1, waiting=1)
    client = post(queue=queue)

    def send(creds: dict[str, str], shop: str, order: str) -> Any:
        return asyncio.create_task(
            client.post("/webhooks/youzan", content=paid(creds, shop, order))
        )

    running = send(YOUZAN_A, "42001", "A1")
    await wait_until(lambda: len(intake.reads) == 1)
    waiting = send(YOUZAN_A, "42001", "A2")
    await wait_until(lambda: queue.held("youzan/42001") == 2)
    flood = [
        await client.post("/webhooks/youzan", content=paid(YOUZAN_A, "42001", f"A{n}"))
        for n in range(3, 6)
    ]
    assert {r.status_code for r in flood} == {429}
    assert {r.headers["retry-after"] for r in flood} == {"1"}
    assert flood[0].json()["error"]["code"] == "too_many_pushes"

    other = send(YOUZAN_B, "42002", "B1")
    await wait_until(lambda: ("youzan/42002", "B1") in intake.reads)
    assert ("youzan/42001", "A2") not in intake.reads  # waits its shop's turn
    intake.hold.set()
    answers = await asyncio.gather(running, waiting, other)
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert [read for read in intake.reads if read[0] == "youzan/42001"] == [
        ("youzan/42001", "A1"),
        ("youzan/42001", "A2"),
    ]
