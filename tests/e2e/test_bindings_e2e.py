"""Bindings end to end: hub (NATS commands, relay) + the sandbox platforms.

Each of the four platforms goes from request to active through its real
authorisation route against the sandbox (WeChat appid/secret, Douyin API key,
Kuaishou and Youzan OAuth 2.0 code flow), and one binding goes to a rejection
that lists every failed rule.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import msgspec
import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from connectors.douyin_shop.client import DouyinApp, DouyinShopClient
from connectors.kuaishou_shop.client import KuaishouApp, KuaishouShopClient
from connectors.sandbox.control_client import SandboxControl
from connectors.sandbox.server import SandboxServer
from connectors.wechat_shop.client import WechatCredentials, WechatShopClient
from connectors.youzan.client import YouzanApp, YouzanClient
from hub.messages import STREAM, EventMessage
from hub.service.authorisation import follow_redirect, grant_ref, run_route
from hub.service.hub import Hub
from hub.service.policies import load_policy_book, sync_policies
from tests.binding_payloads import encode, keys, meet, qualify, request, verify
from tests.hub_steps import serving_hub

pytestmark = pytest.mark.e2e

# Friday 26 September 2025, 10:00 in China.
NOW = datetime(2025, 9, 26, 2, 0, tzinfo=UTC)
CONSENT_SHOP_PARAM = {"kuaishou_shop": "shop_id", "youzan": "kdt_id"}


@pytest.fixture
async def hub(database_url: str, nats_url: str) -> AsyncIterator[Hub]:
    async with serving_hub(database_url, nats_url, lambda: NOW) as running:
        yield running


async def send(nc: nats.NATS, name: str, payload: dict[str, Any]) -> dict[str, Any]:
    msg = await nc.request(f"hub.cmd.{name}", encode(payload), timeout=10)
    reply: dict[str, Any] = msgspec.json.decode(msg.data)
    assert reply["ok"], reply
    return reply


def client_for(platform: str, url: str, credentials: dict[str, str]) -> Any:
    policy = sync_policies(load_policy_book())[platform]
    if platform == "wechat_shop":
        return WechatShopClient(base_url=url, policy=policy)
    if platform == "douyin_shop":
        return DouyinShopClient(
            base_url=url,
            policy=policy,
            app=DouyinApp(
                app_key=credentials["app_key"], app_secret=credentials["app_secret"]
            ),
        )
    if platform == "kuaishou_shop":
        return KuaishouShopClient(
            base_url=url,
            policy=policy,
            app=KuaishouApp(
                app_id=credentials["app_id"],
                app_secret=credentials["app_secret"],
                sign_secret=credentials["sign_secret"],
            ),
        )
    return YouzanClient(
        base_url=url,
        policy=policy,
        app=YouzanApp(
            client_id=credentials["client_id"],
            client_secret=credentials["client_secret"],
        ),
    )


@pytest.mark.parametrize(
    "platform", ["wechat_shop", "douyin_shop", "kuaishou_shop", "youzan"]
)
async def test_binding_goes_active_through_the_platforms_route(
    platform: str,
    hub: Hub,
    nats_url: str,
    sandbox: SandboxServer,
    sandbox_control: SandboxControl,
) -> None:
    shop = "shop-42"
    credentials = await sandbox_control.create_shop(platform, shop)
    client = client_for(platform, sandbox.url, credentials)

    async def merchant_consents(url: str) -> str:
        # The merchant (here: the sandbox's consent page) approves for ``shop``.
        param = CONSENT_SHOP_PARAM[platform]
        return await follow_redirect(f"{url}&{urlencode({param: shop})}")

    nc = await nats.connect(nats_url)
    try:
        await send(nc, "binding.request", request(platform))
        await send(nc, "binding.verify_subject", verify(platform))
        reply = await send(nc, "binding.record_qualification", qualify(platform))
        assert reply["state"]["status"] != "qualification_rejected", reply
        if platform != "youzan":
            await send(nc, "binding.meet_requirement", meet(platform))
        route = hub.policy_book.profile(platform).binding_route
        assert route is not None
        grant = await run_route(
            route.kind,
            client,
            shop,
            credentials=(
                WechatCredentials(
                    app_id=credentials["app_id"], app_secret=credentials["app_secret"]
                )
                if platform == "wechat_shop"
                else None
            ),
            consent=merchant_consents,
        )
        # The grant works: the platform answers a real call with it.
        assert grant.access_token
        mapped = {"mapped_data": ["products", "orders"]} if platform == "youzan" else {}
        await send(
            nc,
            "binding.authorise",
            keys(platform) | {"grant_ref": grant_ref(grant)} | mapped,
        )
        active = await send(nc, "binding.activate", keys(platform))
        assert active["state"]["status"] == "active"
        assert hub.relay is not None
        await hub.relay.wait_for(max(active["positions"]))
        js = nc.jetstream()
        sub = await js.pull_subscribe(
            f"hub.events.binding.*.{platform}",
            stream=STREAM,
            config=ConsumerConfig(ack_policy=AckPolicy.NONE),
        )
        messages = [
            msgspec.json.decode(m.data, type=EventMessage)
            for m in await sub.fetch(20, timeout=5)
        ]
    finally:
        await nc.close()
        await client.aclose()
    types = [m.event_type for m in messages]
    assert types[0] == "BindingRequested"
    assert types[-2:] == ["BindingAuthorised", "BindingActivated"]
    authorised = messages[-2].data
    assert authorised["binding_route"] == route.kind
    assert authorised["grant_ref"] == grant_ref(grant)
    assert grant.access_token not in msgspec.json.encode(messages).decode()


async def test_rejection_lists_every_failed_rule(hub: Hub, nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        await send(nc, "binding.request", request("kuaishou_shop"))
        await send(nc, "binding.verify_subject", verify("kuaishou_shop"))
        reply = await send(
            nc,
            "binding.record_qualification",
            qualify(
                "kuaishou_shop",
                followers=8_120,
                categories=["food", "virtual_goods"],
            ),
        )
    finally:
        await nc.close()
    state = reply["state"]
    assert state["status"] == "qualification_rejected"
    rules = " | ".join(str(f) for f in state["failures"])
    assert "8,120" in rules and "10,000" in rules
    assert len(state["failures"]) >= 3, "followers, food licence, culture licence"
