"""The four connector clients against the sandbox platforms over loopback.

Each behaviour runs for every platform: tokens expire and are refreshed
without losing the call; a stock change is applied once however often it is
retried under injected faults; rate limits back off; a bad signature or token
is refused the platform's way; orders page by update time; pushes arrive
signed and verify with the connectors' own ``protocol.py``.

Time is a fake clock and sleeps only advance it, so backoffs of a minute
(WeChat's 45011) cost nothing; only injected timeouts wait for real, briefly.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from connectors.common import PlatformCallError, PushEvent, PushResult
from connectors.douyin_shop import protocol as douyin_protocol
from connectors.douyin_shop.client import DouyinApp, DouyinShopClient
from connectors.http import HttpClient
from connectors.kuaishou_shop import protocol as kuaishou_protocol
from connectors.kuaishou_shop.client import KuaishouApp, KuaishouShopClient
from connectors.registry import connector
from connectors.sandbox import (
    ApiBudget,
    FaultConfig,
    SandboxControl,
    SandboxServer,
    ServerThread,
)
from connectors.transport import ClientBase
from connectors.webhooks import PushRequest
from connectors.wechat_shop.client import WechatCredentials, WechatShopClient
from connectors.youzan import protocol as youzan_protocol
from connectors.youzan.client import YouzanApp, YouzanClient
from hub.service.policies import load_policy_book, sync_policies
from tests.fake_clock import FakeClock

pytestmark = pytest.mark.integration


PLATFORMS = ["wechat_shop", "douyin_shop", "kuaishou_shop", "youzan"]
SHOPS = {
    "wechat_shop": "wx-shop-1",
    "douyin_shop": "77001",
    "kuaishou_shop": "900001",
    "youzan": "42001",
}
SKUS = {
    "wechat_shop": ("10000000000001", "9007199254740993"),
    "douyin_shop": ("3500000000000000001", "1780000000000000001"),
    "kuaishou_shop": ("20046611202546", "300001"),
    "youzan": ("123", "456"),
}
REDIRECT = "http://127.0.0.1:9/callback"


@dataclass
class Harness:
    """One platform's client, its shop and SKU, and what it slept."""

    platform: str
    client: ClientBase
    shop_id: str
    product_id: str
    sku_id: str
    clock: FakeClock
    sleeps: list[float] = field(default_factory=list)


async def _make_client(
    platform: str,
    control: SandboxControl,
    base_url: str,
    *,
    timeout_s: float = 5.0,
    stock: int = 100,
    wrong_secret: bool = False,
) -> Harness:
    shop_id = SHOPS[platform]
    product_id, sku_id = SKUS[platform]
    creds = await control.create_shop(platform, shop_id)
    await control.set_sku(
        platform, shop_id, sku_id, product_id=product_id, stock=stock, price_fen=1990
    )
    clock = FakeClock()
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await clock.sleep(seconds)

    options: dict[str, Any] = {
        "base_url": base_url,
        "policy": sync_policies(load_policy_book())[platform],
        "clock": clock,
        "sleep": sleep,
        "jitter": random.Random(7).random,
        "http": HttpClient(timeout=timeout_s),
    }
    bad = "0" * 32
    client: ClientBase
    if platform == "wechat_shop":
        client = WechatShopClient(**options)
        await client.authorise(
            shop_id,
            WechatCredentials(app_id=creds["app_id"], app_secret=creds["app_secret"]),
        )
    elif platform == "douyin_shop":
        app = DouyinApp(app_key=creds["app_key"], app_secret=creds["app_secret"])
        client = DouyinShopClient(app=app, **options)
        await client.authorise(shop_id)
        if wrong_secret:
            client.app = DouyinApp(app_key=creds["app_key"], app_secret=bad)
    elif platform == "kuaishou_shop":
        app_ks = KuaishouApp(
            app_id=creds["app_id"],
            app_secret=creds["app_secret"],
            sign_secret=bad if wrong_secret else creds["sign_secret"],
        )
        client = KuaishouShopClient(app=app_ks, **options)
        code = await control.authorization_code(platform, shop_id)
        await client.exchange_code(shop_id, code)
    else:
        app_yz = YouzanApp(
            client_id=creds["client_id"], client_secret=creds["client_secret"]
        )
        client = YouzanClient(app=app_yz, **options)
        code = await control.authorization_code(platform, shop_id)
        await client.exchange_code(shop_id, code, REDIRECT)
    return Harness(platform, client, shop_id, product_id, sku_id, clock, sleeps)


@pytest.fixture
async def make(
    sandbox: SandboxServer, sandbox_control: SandboxControl
) -> AsyncIterator[Callable[..., Any]]:
    """Build a harness per platform; closes every client afterwards."""
    made: list[Harness] = []

    async def build(platform: str, **options: Any) -> Harness:
        harness = await _make_client(platform, sandbox_control, sandbox.url, **options)
        made.append(harness)
        return harness

    yield build
    for harness in made:
        await harness.client.http.aclose()


async def _push(h: Harness, delta: int, request_id: str) -> Any:
    return await h.client.push_stock(
        h.shop_id, h.sku_id, product_id=h.product_id, delta=delta, request_id=request_id
    )


# --------------------------------------------------------------------------- tokens


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_expired_token_is_refreshed_without_losing_the_call(
    platform: str, make: Any, sandbox_control: SandboxControl
) -> None:
    h = await make(platform)
    first = h.client.tokens.get(platform, h.shop_id)
    assert (await _push(h, -1, "r-1")).ok
    assert await sandbox_control.expire_tokens(platform, h.shop_id) >= 1

    result = await _push(h, -2, "r-2")

    assert result.ok, result
    assert await sandbox_control.stock(platform, h.shop_id, h.sku_id) == 97
    second = h.client.tokens.get(platform, h.shop_id)
    assert second is not None and first is not None
    assert second.access_token != first.access_token
    log = await sandbox_control.requests(platform=platform, request_id="r-2")
    assert [entry["result"] for entry in log] == ["refused", "ok"]


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_token_is_refreshed_before_it_expires(
    platform: str, make: Any, sandbox_control: SandboxControl
) -> None:
    h = await make(platform)
    before = h.client.tokens.get(platform, h.shop_id)
    assert before is not None
    # Move the client's clock into the refresh margin (the sandbox's token is
    # still valid): the client must renew first, and the call is never refused.
    h.clock.offset = (before.access_expires_at - h.clock.now()).total_seconds() - 60

    assert (await _push(h, 1, "early")).ok

    after = h.client.tokens.get(platform, h.shop_id)
    assert after is not None and after.access_token != before.access_token
    if before.refresh_token is not None:
        # Douyin and Kuaishou rotate the refresh token; Youzan issues a new one.
        assert after.refresh_token != before.refresh_token
    log = await sandbox_control.requests(platform=platform, request_id="early")
    assert [entry["result"] for entry in log] == ["ok"]


# --------------------------------------------------------------------------- stock


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_stock_push_applies_once_under_twenty_percent_faults(
    platform: str, make: Any, sandbox_control: SandboxControl
) -> None:
    h = await make(platform, timeout_s=0.2)
    await sandbox_control.set_faults(
        platform,
        FaultConfig(
            error_5xx_rate=0.05,
            rate_limit_rate=0.05,
            timeout_rate=0.05,
            token_expiry_rate=0.05,
            timeout_delay_s=0.5,
        ),
    )
    # One of each fault for certain, then 20 % of calls at random.
    await sandbox_control.script_faults(
        platform, ["timeout", "token_expired", "5xx", "rate_limit"]
    )
    deltas = [(-1 if i % 3 else 2) for i in range(30)]
    for index, delta in enumerate(deltas):
        request_id = f"{platform}-change-{index}"
        for _ in range(4):  # what an outbox does: re-send with the same id
            result = await _push(h, delta, request_id)
            if result.ok:
                break
        assert result.ok, result
    # A late duplicate of an applied change is acknowledged and not applied.
    assert (await _push(h, deltas[0], f"{platform}-change-0")).ok

    await sandbox_control.set_faults(platform, FaultConfig())
    shop = await sandbox_control.shop(platform, h.shop_id)
    assert shop["skus"][h.sku_id]["stock"] == 100 + sum(deltas)
    assert len(shop["stock_changes"]) == len(deltas)
    log = await sandbox_control.requests(platform=platform)
    injected = {entry["fault"] for entry in log} - {None}
    assert injected == {"5xx", "rate_limit", "timeout", "token_expired"}
    replayed = [entry for entry in log if entry["result"] == "replayed"]
    assert replayed  # timeouts applied the change; the retry was not re-applied


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_absolute_stock_is_compare_and_set_through_a_delta(
    platform: str, make: Any, sandbox_control: SandboxControl
) -> None:
    h = await make(platform, stock=30)

    async def set_to_50(expected: int, request_id: str) -> PushResult:
        return await h.client.push_stock(
            h.shop_id,
            h.sku_id,
            product_id=h.product_id,
            absolute=50,
            expected=expected,
            request_id=request_id,
        )

    refused = await set_to_50(expected=29, request_id="set-1")
    assert (refused.outcome, refused.code) == ("rejected", "stock_changed")
    done = await set_to_50(expected=30, request_id="set-2")
    assert done.ok
    assert await sandbox_control.stock(platform, h.shop_id, h.sku_id) == 50
    assert (
        await h.client.fetch_stock(h.shop_id, h.sku_id, product_id=h.product_id) == 50
    )


RATE_LIMIT_CODES = {
    "wechat_shop": "10020112",
    "douyin_shop": "60000",
    "kuaishou_shop": "802",
    "youzan": "http_429",
}


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_rate_limit_answers_back_off_then_give_up(
    platform: str, make: Any, sandbox_control: SandboxControl
) -> None:
    h = await make(platform)
    floor = h.client.policy.retry.rate_limited_min_delay_s
    await sandbox_control.script_faults(platform, ["rate_limit", "rate_limit"])

    result = await _push(h, 1, "slow-1")

    assert (result.outcome, result.attempts) == ("sent", 3)
    assert sum(1 for s in h.sleeps if s >= floor - 1e-9) >= 2

    attempts = h.client.policy.retry.max_attempts
    await sandbox_control.script_faults(platform, ["rate_limit"] * attempts)
    gave_up = await _push(h, 1, "slow-2")
    assert gave_up.outcome == "rate_limited"
    assert gave_up.code == RATE_LIMIT_CODES[platform]
    assert gave_up.attempts == attempts
    if platform == "kuaishou_shop":
        assert kuaishou_protocol.RATE_LIMIT_MESSAGE in gave_up.message
    assert await sandbox_control.stock(platform, h.shop_id, h.sku_id) == 101


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_calls_beyond_the_shops_budget_are_refused_and_counted_apart(
    platform: str, make: Any, sandbox_control: SandboxControl
) -> None:
    h = await make(platform)
    before = (await sandbox_control.health())["requests"]
    # One call a shop, never refilled within the test.
    await sandbox_control.set_budget(platform, ApiBudget(rate_per_s=1e-6, burst=1))

    first = await _push(h, 1, "budget-1")
    second = await _push(h, 1, "budget-2")

    assert first.outcome == "sent"
    assert (second.outcome, second.code) == ("rate_limited", RATE_LIMIT_CODES[platform])
    assert await sandbox_control.stock(platform, h.shop_id, h.sku_id) == 101
    results = [r["result"] for r in await sandbox_control.log("requests", since=before)]
    assert results.count("over_budget") == h.client.policy.retry.max_attempts
    assert "rate_limited" not in results  # no injected fault among them
    await sandbox_control.set_budget(platform, None)
    assert (await _push(h, 1, "budget-3")).outcome == "sent"


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_a_slow_call_is_sent_again_at_once_and_applied_once(
    platform: str, make: Any, sandbox_control: SandboxControl
) -> None:
    h = await make(platform, timeout_s=60.0)
    h.client.policy = msgspec.structs.replace(
        h.client.policy,
        retry=msgspec.structs.replace(
            h.client.policy.retry, resend_slow_after_s=0.05, resend_slow_writes=True
        ),
    )
    # The platform applies the write, then holds its answer for a minute.
    await sandbox_control.set_faults(platform, FaultConfig(timeout_delay_s=60.0))
    await sandbox_control.script_faults(platform, ["timeout"])
    async with asyncio.timeout(20):  # far below the held minute
        result = await _push(h, 1, "slow-write")
        await sandbox_control.script_faults(platform, ["timeout"])
        read = await h.client.fetch_stock(h.shop_id, h.sku_id, product_id=h.product_id)

    assert result.outcome == "sent"
    assert read == 101  # the write was applied once, not twice
    writes = [
        e
        for e in await sandbox_control.requests(platform=platform)
        if e.get("request_id") == "slow-write"
    ]
    assert [e["fault"] for e in writes] == ["timeout", None]


@pytest.mark.parametrize("platform", ["douyin_shop", "kuaishou_shop"])
async def test_client_with_a_wrong_secret_is_refused_not_retried(
    platform: str, make: Any
) -> None:
    h = await make(platform, wrong_secret=True)
    with pytest.raises(PlatformCallError) as caught:
        await h.client.fetch_stock(h.shop_id, h.sku_id, product_id=h.product_id)
    expected = {"douyin_shop": "isv.signature-invalid", "kuaishou_shop": "22"}
    assert (caught.value.outcome, caught.value.code) == ("rejected", expected[platform])
    assert caught.value.attempts == 1


async def test_bad_signatures_and_tokens_are_answered_the_platforms_way(
    sandbox: SandboxServer, make: Any
) -> None:
    for platform in PLATFORMS:
        await make(platform)
    url = sandbox.url
    async with httpx.AsyncClient() as http:
        wechat = await http.post(
            f"{url}/channels/ec/product/stock/get",
            params={"access_token": "forged"},
            json={"product_id": "1", "sku_id": "2"},
        )
        assert wechat.status_code == 200
        assert wechat.json()["errcode"] == 40001

        douyin = await http.post(
            f"{url}/sku/stockNum",
            params={
                "app_key": (await _creds(url, "douyin_shop"))["app_key"],
                "method": "sku.stockNum",
                "v": "2",
                "timestamp": "2024-01-01 00:00:00",
                "sign_method": "hmac-sha256",
                "sign": "0" * 64,
                "access_token": "x",
            },
            content=b'{"sku_id":1}',
        )
        assert douyin.status_code == 200
        assert (douyin.json()["code"], douyin.json()["sub_code"]) == (
            douyin_protocol.INVALID_PARAMETER_CODE,
            douyin_protocol.SIGNATURE_INVALID_SUB_CODE,
        )

        ks = await _creds(url, "kuaishou_shop")
        form = {
            "appkey": ks["app_id"],
            "method": "open.item.get",
            "version": "1",
            "access_token": "x",
            "timestamp": "1",
            "signMethod": "HMAC_SHA256",
            "param": "{}",
        }
        form["sign"] = kuaishou_protocol.sign(form, "not-the-secret")
        kuaishou = await http.post(f"{url}/open/item/get", data=form)
        assert kuaishou.json()["result"] == kuaishou_protocol.RESULT_SIGN_INVALID

        youzan = await http.post(
            f"{url}/api/youzan.item.get/3.0.0",
            params={"access_token": "forged"},
            json={"item_id": 123},
        )
        assert youzan.status_code == 200
        assert youzan_protocol.gateway_error(youzan.json()) == (
            youzan_protocol.GATEWAY_TOKEN_INVALID,
            "token 不合法",
        )


async def _creds(url: str, platform: str) -> dict[str, str]:
    async with httpx.AsyncClient() as http:
        shop = (
            await http.get(f"{url}/_sandbox/{platform}/shops/{SHOPS[platform]}")
        ).json()
    creds: dict[str, str] = shop["credentials"]
    return creds


# --------------------------------------------------------------------------- orders


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_orders_page_by_update_time(
    platform: str, make: Any, sandbox_control: SandboxControl
) -> None:
    h = await make(platform)
    base = int(time.time()) - 3600
    ids = []
    for minute in range(7):
        order = await sandbox_control.create_order(
            platform,
            h.shop_id,
            [{"sku_id": h.sku_id, "quantity": 1, "discount_fen": 90}],
            buyer={"name": "张三", "phone": "13800000000", "province": "广东省"},
            at=base + minute * 60,
        )
        ids.append(order["order_id"])
    # Paying the first order late moves it to the end of the update order.
    await sandbox_control.order_action(
        platform, h.shop_id, ids[0], "pay", at=base + 7 * 60
    )
    start = datetime.fromtimestamp(base + 60, UTC)
    end = datetime.fromtimestamp(base + 7 * 60, UTC)

    seen = []
    cursor = None
    pages = 0
    while True:
        page = await h.client.pull_orders(h.shop_id, start, end, cursor, page_size=2)
        pages += 1
        seen.extend(page.orders)
        if not page.has_more:
            break
        cursor = page.next_cursor
    assert [order.order_id for order in seen] == [*ids[1:], ids[0]]
    assert pages == 4
    assert all(start <= order.updated_at <= end for order in seen)
    last = seen[-1]
    assert (last.status, last.total_fen, last.lines[0].discount_fen) == (
        "paid",
        1900,
        90,
    )
    assert last.buyer.name == "张三"
    if platform == "wechat_shop":
        assert int(last.order_id) > 2**53
    assert await h.client.fetch_order(h.shop_id, ids[0]) == last


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_shipment_once_and_settlement(
    platform: str, make: Any, sandbox_control: SandboxControl
) -> None:
    h = await make(platform)
    order = await sandbox_control.create_order(
        platform, h.shop_id, [{"sku_id": h.sku_id, "quantity": 2}]
    )
    order_id = order["order_id"]
    await sandbox_control.order_action(platform, h.shop_id, order_id, "pay")
    for _ in range(2):
        result = await h.client.notify_shipment(
            h.shop_id,
            order_id,
            carrier_code="SF",
            tracking_no="SF123",
            request_id="ship-1",
        )
        assert result.ok, result
    shipped = await h.client.fetch_order(h.shop_id, order_id)
    assert shipped.status == "shipped"
    state = await sandbox_control.shop(platform, h.shop_id)
    assert state["orders"][order_id]["tracking_no"] == "SF123"

    await sandbox_control.order_action(platform, h.shop_id, order_id, "settle")
    now = datetime.now(UTC)
    statement = await h.client.fetch_settlement(
        h.shop_id, now - timedelta(hours=1), now + timedelta(hours=1)
    )
    (entry,) = statement.entries
    assert (entry.order_id, entry.gross_fen) == (order_id, 3980)
    assert entry.fee_fen + entry.net_fen == entry.gross_fen
    assert entry.fee_fen == {"wechat_shop": 24, "youzan": 24}.get(platform, 199)


# --------------------------------------------------------------------------- pushes


class Receiver:
    """A tiny hub stand-in that records pushes and answers each platform's ack."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], dict[str, str], bytes]] = []
        self._lock = threading.Lock()
        acks: dict[str, Response] = {
            "wechat_shop": PlainTextResponse("success"),
            "douyin_shop": JSONResponse({"code": 0, "msg": "success"}),
            "kuaishou_shop": Response(kuaishou_protocol.PUSH_ACK_BODY),
            "youzan": JSONResponse({"code": 0, "msg": "success"}),
        }

        async def hook(request: Request) -> Response:
            platform = request.path_params["platform"]
            body = await request.body()
            with self._lock:
                self.received.append(
                    (platform, dict(request.query_params), dict(request.headers), body)
                )
            return acks[platform]

        self.server = ServerThread(
            Starlette(routes=[Route("/hook/{platform}", hook, methods=["POST"])])
        )

    def of(
        self, platform: str
    ) -> list[tuple[str, dict[str, str], dict[str, str], bytes]]:
        with self._lock:
            return [item for item in self.received if item[0] == platform]


@pytest.fixture(scope="module")
def receiver() -> Any:
    """The push receiver, on its own loopback port."""
    hub = Receiver()
    hub.server.start()
    yield hub
    hub.server.stop()


@dataclass(frozen=True)
class _Shop:
    platform: str
    shop_id: str
    credentials: dict[str, str]


def _verified_events(
    shop: _Shop, query: dict[str, str], headers: dict[str, str], body: bytes
) -> list[PushEvent]:
    """The events of a push, verified by the platform's webhook as the hub does."""
    request = PushRequest(query=query, headers=headers, body=body, now=time.time())
    pushed = connector(shop.platform).webhook.verify([shop], request)
    return [item.event for item in pushed.events]


async def _wait_for(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_pushes_arrive_signed_and_verify_with_protocol(
    platform: str, make: Any, sandbox_control: SandboxControl, receiver: Receiver
) -> None:
    h = await make(platform)
    creds = await _creds(sandbox_control.base_url, platform)
    await sandbox_control.set_webhooks(
        {platform: f"{receiver.server.url}/hook/{platform}"}
    )
    before = len(receiver.of(platform))
    order = await sandbox_control.create_order(
        platform, h.shop_id, [{"sku_id": h.sku_id, "quantity": 1}]
    )
    await sandbox_control.order_action(platform, h.shop_id, order["order_id"], "pay")
    await sandbox_control.order_action(platform, h.shop_id, order["order_id"], "cancel")
    await _wait_for(lambda: len(receiver.of(platform)) >= before + 3)

    events = [
        event
        for _, query, headers, body in receiver.of(platform)[before:]
        for event in _verified_events(
            _Shop(platform, h.shop_id, creds), query, headers, body
        )
    ]
    assert [event.kind for event in events] == [
        "order_created",
        "order_paid",
        "order_cancelled",
    ]
    assert {event.order_id for event in events} == {order["order_id"]}
    assert len({event.msg_id for event in events}) == 3
    deliveries = await sandbox_control.pushes(platform=platform)
    assert all(delivery["status"] == 200 for delivery in deliveries)


async def test_duplicate_and_out_of_order_pushes(
    make: Any, sandbox_control: SandboxControl, receiver: Receiver
) -> None:
    platform = "douyin_shop"
    h = await make(platform)
    creds = await _creds(sandbox_control.base_url, platform)
    await sandbox_control.set_webhooks(
        {platform: f"{receiver.server.url}/hook/{platform}"}
    )
    await sandbox_control.set_faults(platform, FaultConfig(duplicate_push_rate=1.0))
    before = len(receiver.of(platform))
    order = await sandbox_control.create_order(
        platform, h.shop_id, [{"sku_id": h.sku_id, "quantity": 1}]
    )
    received = receiver.of(platform)[before:]
    events = [
        e
        for _, q, hd, b in received
        for e in _verified_events(_Shop(platform, h.shop_id, creds), q, hd, b)
    ]
    assert [e.kind for e in events] == ["order_created", "order_created"]
    assert events[0].msg_id == events[1].msg_id

    await sandbox_control.set_faults(platform, FaultConfig(out_of_order_push_rate=1.0))
    await sandbox_control.order_action(platform, h.shop_id, order["order_id"], "pay")
    assert len(receiver.of(platform)) == before + 2  # held back
    await sandbox_control.set_faults(platform, FaultConfig())
    await sandbox_control.order_action(platform, h.shop_id, order["order_id"], "cancel")
    late = receiver.of(platform)[before + 2 :]
    kinds = [
        e.kind
        for _, q, hd, b in late
        for e in _verified_events(_Shop(platform, h.shop_id, creds), q, hd, b)
    ]
    assert kinds == ["order_cancelled", "order_paid"]


async def test_oauth_authorize_redirects_with_a_code(
    sandbox: SandboxServer, make: Any
) -> None:
    h = await make("kuaishou_shop")
    assert isinstance(h.client, KuaishouShopClient)
    url = h.client.authorize_url(REDIRECT, state="s1") + f"&shop_id={h.shop_id}"
    async with httpx.AsyncClient() as http:
        answer = await http.get(url)
    assert answer.status_code == 302
    location = httpx.URL(answer.headers["location"])
    assert location.params["state"] == "s1"
    state = await h.client.exchange_code(h.shop_id, location.params["code"])
    assert state.refresh_token is not None


def test_sandbox_server_starts_and_stops_without_stray_threads() -> None:
    before = set(threading.enumerate())
    with SandboxServer() as server:
        assert httpx.get(f"{server.url}/_sandbox/health").json()["ok"] is True
    assert set(threading.enumerate()) <= before
    assert json.dumps(server.config.webhooks) == "{}"
