"""Bindings end to end: the hub runs each platform's route against the sandbox.

The four shops are in the connectors registry with their app credentials and
no token. Each binding is taken to "requirements met" over NATS, then the hub
runs the route itself through its HTTP port (``POST /bindings/.../connect``):
WeChat's appid/secret and Douyin's self-use grant at once, Kuaishou's and
Youzan's OAuth 2.0 code flow through the platform's consent page and back to
``GET /oauth/{platform}/callback``. Tokens land sealed in the token store, the
log shows the grant the hub obtained before the authorisation that names it,
and a forged or replayed callback is refused.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import msgspec
import psycopg
import pytest

from connectors.sandbox.control_client import SandboxControl
from connectors.sandbox.server import SandboxServer
from domain.binding import (
    BindingActivated,
    BindingAuthorised,
    GrantObtained,
    binding_id,
)
from hub.bootstrap import connect_platforms
from hub.entry.cli import main
from hub.entry.http import HttpServer
from hub.entry.platforms import Platforms
from hub.infra.access_tokens import issue
from hub.infra.shops import ConnectorsConfig, ShopConfig
from hub.infra.tokens import PostgresTokenStore
from hub.service.authorisation import follow_redirect, grant_ref
from hub.service.bindings import binding_history
from hub.service.hub import Hub
from tests.binding_payloads import ACCOUNT, NOW, encode, keys, to_requirements_met
from tests.hub_steps import serving_hub

pytestmark = pytest.mark.e2e

PLATFORMS = ["wechat_shop", "douyin_shop", "kuaishou_shop", "youzan"]
#: Who consents on the sandbox's consent page (a sandbox extension).
CONSENT_SHOP_PARAM = {"kuaishou_shop": "shop_id", "youzan": "kdt_id"}
JWT_KEY = "k" * 40
SHOPS = ["shop-42", "shop-43"]


@dataclass
class Running:
    hub: Hub
    platforms: Platforms
    url: str
    token: str
    tokens: PostgresTokenStore


@pytest.fixture
async def running(
    database_url: str,
    nats_url: str,
    sandbox: SandboxServer,
    sandbox_control: SandboxControl,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Running]:
    monkeypatch.setenv("HUB_JWT_KEY", JWT_KEY)
    shops = []
    for platform in PLATFORMS:
        for shop in SHOPS:
            created = await sandbox_control.create_shop(platform, shop)
            shops.append(
                ShopConfig(
                    platform=platform,
                    shop_id=shop,
                    channel_account=ACCOUNT,
                    credentials=dict(created),
                )
            )
    config = ConnectorsConfig(
        base_urls=dict.fromkeys(PLATFORMS, sandbox.url), shops=tuple(shops)
    )
    async with serving_hub(database_url, nats_url, lambda: NOW) as hub:
        tokens = PostgresTokenStore(database_url, key=secrets.token_bytes(32))
        platforms = connect_platforms(
            hub, config, token_store=tokens, clock=lambda: datetime.now(UTC)
        )
        server = await HttpServer(platforms.app()).start()
        assert platforms.routes is not None
        platforms.routes.callback_url = lambda platform: (
            f"{server.url}/oauth/{platform}/callback"
        )
        token = issue(
            JWT_KEY.encode(),
            scopes=["bindings:write"],
            ttl=timedelta(hours=1),
            now=datetime.now(UTC),
        )
        try:
            yield Running(hub, platforms, server.url, token, tokens)
        finally:
            await server.stop()
            await platforms.connectors.aclose()
            tokens.close()


async def walk_to_requirements_met(hub: Hub, platform: str, shop: str) -> None:
    for name, data in to_requirements_met(platform, shop):
        reply = await hub.handle(name, encode(data))
        assert reply.ok, reply


async def connect(
    http: httpx.AsyncClient, running: Running, platform: str, shop: str
) -> dict[str, Any]:
    mapped = {"mapped_data": ["products", "orders"]} if platform == "youzan" else {}
    answer = await http.post(
        f"{running.url}/bindings/{platform}/{shop}/connect",
        json=mapped,
        headers={"authorization": f"Bearer {running.token}"},
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def consent(http: httpx.AsyncClient, platform: str, url: str, shop: str) -> str:
    """The merchant approves on the platform's page: where it sends them back."""
    param = CONSENT_SHOP_PARAM[platform]
    return await follow_redirect(f"{url}&{urlencode({param: shop})}", http=http)


async def test_all_four_shops_bind_through_their_routes_with_no_seeded_token(
    running: Running,
) -> None:
    shop = SHOPS[0]
    async with httpx.AsyncClient(timeout=10) as http:
        for platform in PLATFORMS:
            await walk_to_requirements_met(running.hub, platform, shop)
            started = await connect(http, running, platform, shop)
            if platform in CONSENT_SHOP_PARAM:
                assert started["status"] == "consent_needed"
                back = await consent(http, platform, started["consent_url"], shop)
                assert back.startswith(f"{running.url}/oauth/{platform}/callback?")
                answer = await http.get(back)
                assert answer.status_code == 200, answer.text
                started = answer.json()
            assert started["status"] == "active", started
            held = running.tokens.get(platform, shop)
            assert held is not None, f"{platform}: no token in the store"
            assert started["grant_ref"] == grant_ref(held)
    # Every token is sealed at rest: no row holds its access token in the clear.
    async with await psycopg.AsyncConnection.connect(running.hub.database_url) as conn:
        rows = await (
            await conn.execute(
                "SELECT platform, shop_id, sealed, state FROM connector_tokens"
            )
        ).fetchall()
    assert {(r[0], r[1]) for r in rows} == {(p, shop) for p in PLATFORMS}
    for platform, shop_id, sealed, state in rows:
        held = running.tokens.get(platform, shop_id)
        assert held is not None
        assert sealed and held.access_token.encode() not in bytes(state)
    # The log: the hub obtained the grant, then the authorisation named it.
    for platform in PLATFORMS:
        history = [
            event
            for _, event in await binding_history(
                running.hub.database_url, binding_id(ACCOUNT, platform, shop)
            )
        ]
        obtained, authorised, activated = history[-3:]
        assert isinstance(obtained, GrantObtained), (platform, history)
        assert isinstance(authorised, BindingAuthorised)
        assert isinstance(activated, BindingActivated)
        held = running.tokens.get(platform, shop)
        assert held is not None
        assert obtained.grant_ref == authorised.grant_ref == grant_ref(held)
        assert held.access_token not in msgspec.json.encode(history).decode()


@pytest.mark.parametrize("platform", ["kuaishou_shop", "youzan"])
async def test_a_forged_or_replayed_oauth_callback_is_refused(
    running: Running, platform: str
) -> None:
    first, second = SHOPS
    callback = f"{running.url}/oauth/{platform}/callback"
    async with httpx.AsyncClient(timeout=10) as http:
        for shop in SHOPS:
            await walk_to_requirements_met(running.hub, platform, shop)
        started = await connect(http, running, platform, first)
        back = await consent(http, platform, started["consent_url"], first)
        code = httpx.URL(back).params["code"]
        # A state this hub never issued: refused, the code is not spent.
        forged = await http.get(
            callback, params={"state": secrets.token_urlsafe(24), "code": code}
        )
        assert forged.status_code == 400
        assert forged.json()["error"] == "state_unknown"
        # The real callback binds the shop.
        answer = await http.get(back)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "active"
        # The same callback again: its state is used.
        replayed = await http.get(back)
        assert replayed.status_code == 400
        assert replayed.json()["error"] == "state_used"
        # A fresh state of another shop with the code already exchanged: the
        # platform refuses the code, and that binding is not authorised.
        other = await connect(http, running, platform, second)
        other_back = await consent(http, platform, other["consent_url"], second)
        state = httpx.URL(other_back).params["state"]
        reused = await http.get(callback, params={"state": state, "code": code})
        assert reused.status_code == 400, reused.text
        assert reused.json()["error"] == "code_refused"
        # A state of one platform does not open another's callback.
        elsewhere = "youzan" if platform == "kuaishou_shop" else "kuaishou_shop"
        crossed = await http.get(
            f"{running.url}/oauth/{elsewhere}/callback",
            params={"state": httpx.URL(other_back).params["state"], "code": "x"},
        )
        assert crossed.status_code == 400
    reply = await running.hub.handle("binding.activate", encode(keys(platform, second)))
    assert reply.error is not None and reply.error.code == "illegal_transition"
    assert running.tokens.get(platform, second) is None


async def test_connect_needs_an_operator_token_and_a_ready_binding(
    running: Running,
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        url = f"{running.url}/bindings/douyin_shop/{SHOPS[0]}/connect"
        anonymous = await http.post(url)
        assert anonymous.status_code == 401
        early = await http.post(
            url, headers={"authorization": f"Bearer {running.token}"}
        )
        assert early.status_code == 409
        assert "not requested" in early.json()["message"]
    assert running.tokens.get("douyin_shop", SHOPS[0]) is None


async def test_hub_bindings_connect_binds_at_once_or_prints_the_consent_url(
    running: Running,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shop = SHOPS[0]
    config = running.platforms.connectors.config
    connectors_file = tmp_path / "connectors.json"
    connectors_file.write_bytes(msgspec.json.encode(config))
    monkeypatch.setenv("HUB_DATABASE_URL", running.hub.database_url)
    monkeypatch.setenv("HUB_CONNECTORS_FILE", str(connectors_file))
    monkeypatch.setenv("HUB_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    monkeypatch.setenv("HUB_PUBLIC_URL", running.url)
    for platform in ("douyin_shop", "youzan"):
        await walk_to_requirements_met(running.hub, platform, shop)
    argv = ["bindings", "connect", "douyin_shop", shop, "--json"]
    assert await asyncio.to_thread(main, argv) == 0
    bound = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert bound["status"] == "active" and bound["grant_ref"].startswith("sha256:")
    argv = ["bindings", "connect", "youzan", shop, "--map", "products,orders"]
    assert await asyncio.to_thread(main, argv) == 0
    printed = capsys.readouterr().out
    url = next(line.strip() for line in printed.splitlines() if "://" in line)
    async with httpx.AsyncClient(timeout=10) as http:
        # The consent comes back to hub serve's callback (here: the test's).
        back = await consent(http, "youzan", url, shop)
        assert back.startswith(f"{running.url}/oauth/youzan/callback?")
        answer = await http.get(back)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "active"
    history = await binding_history(
        running.hub.database_url, binding_id(ACCOUNT, "youzan", shop)
    )
    authorised = history[-2][1]
    assert isinstance(authorised, BindingAuthorised)
    assert authorised.mapped_data == ("products", "orders")
