"""The dashboard in headless Chromium: refused without a login, then the same
GMV as the sales projection and the ledger, charts drawn from the data, the
operator pages; screenshots saved (to docs/screenshots/ with HUB_SCREENSHOTS=docs)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from playwright.async_api import Page, async_playwright

from domain import stock
from eventlog.log import log_head
from hub.entry.dashboard import COOKIE, add_user, with_dashboard
from hub.entry.http import HttpServer
from hub.infra.access_tokens import issue
from hub.service.commands import decode_command
from hub.service.hub import Hub
from projections import sales
from tests.binding_payloads import encode, to_requirements_met
from tests.browser import ARGS, CHROMIUM, SCREENSHOTS, needs_chromium
from tests.conftest import wait_until
from tests.hub_steps import started_hub
from tests.sales_steps import T0, YOUZAN, a_busy_session, sell

pytestmark = [pytest.mark.e2e, needs_chromium]

KEY = b"k" * 32
NOW = T0 + timedelta(minutes=90)  # the session is live
USER, PASSWORD = "merchant", "correct horse battery"


def yuan(fen: int) -> str:
    return f"¥{fen / 100:,.2f}"


async def scalar(database_url: str, query: str) -> Any:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(query)  # type: ignore[arg-type]
        row = await cur.fetchone()
    return None if row is None else row[0]


async def a_shop_floor(hub: Hub) -> None:
    """Bindings on three platforms (one failing its qualification), stock with
    a low item and a platform's drift, then the live session's orders."""
    for platform in ("wechat_shop", "douyin_shop", "youzan"):
        for name, payload in to_requirements_met(platform):
            await hub.execute(name, decode_command(name, encode(payload)))
    for name, payload in to_requirements_met("kuaishou_shop")[:2]:
        await hub.execute(name, decode_command(name, encode(payload)))
    payload = to_requirements_met("kuaishou_shop")[2][1]
    payload["facts"]["followers"] = 8_120
    await hub.execute(
        "binding.record_qualification",
        decode_command("binding.record_qualification", encode(payload)),
    )
    await hub.execute("stock.receive", stock.ReceiveStock(sku="A1", quantity=5_000))
    await hub.execute("stock.receive", stock.ReceiveStock(sku="LIP-02", quantity=3))
    await hub.execute(
        "stock.set_low_threshold", stock.SetLowStockThreshold(sku="LIP-02", threshold=5)
    )
    await hub.execute(
        "stock.report_platform",
        stock.ReportPlatformStock(
            sku="LIP-02", platform="douyin_shop", shop_id="dy-1", reported=7, expected=3
        ),
    )
    await a_busy_session(hub)


@pytest.fixture
async def hub(database_url: str) -> AsyncIterator[Hub]:
    async with started_hub(database_url, None, clock=lambda: NOW) as running:
        await a_shop_floor(running)
        # Count the paid orders once the orders read model holds every order.
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            placed = await log_head(conn)
        await running.projection("orders").wait_for(placed, timeout=120)
        paid = await scalar(
            database_url, "SELECT count(*) FROM orders WHERE paid_fen IS NOT NULL"
        )

        async def ledger_has_every_sale() -> bool:
            return bool(
                await scalar(
                    database_url,
                    "SELECT count(*) FROM ledger_payouts WHERE payout = 'sale'",
                )
                == paid
            )

        await wait_until(ledger_has_every_sale, timeout=120)
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            head = await log_head(conn)
        for name in ("sales", "bindings", "inventory", "stock_drift", "ledger"):
            await running.projection(name).wait_for(head, timeout=120)
        yield running


@pytest.fixture
async def site(hub: Hub) -> AsyncIterator[str]:
    await add_user(hub.database_url, USER, PASSWORD)
    app = with_dashboard(
        hub.database_url, hub.supervisor, clock=lambda: NOW, jwt_key=KEY
    )
    server = await HttpServer(app, "127.0.0.1", 0).start()
    try:
        yield server.url
    finally:
        await server.stop()


async def ledger_total(hub: Hub) -> int:
    """The ledger's sales: the amounts of its sale payouts."""
    return int(
        await scalar(
            hub.database_url,
            "SELECT coalesce(sum(amount_fen), 0) FROM ledger_payouts "
            "WHERE payout = 'sale'",
        )
    )


async def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


async def card_value(page: Page, figure: str) -> str | None:
    return await page.get_attribute(f'.card[data-figure="{figure}"]', "data-value")


async def test_the_dashboard_shows_the_ledger_s_gmv_behind_a_login(
    hub: Hub, site: str
) -> None:
    async with await psycopg.AsyncConnection.connect(hub.database_url) as conn:
        live = await sales.summary(conn, sales.Selection("ch-1", "live-1"))
        every = await sales.summary(conn)
    ledger_sales = await ledger_total(hub)
    paid = await scalar(hub.database_url, "SELECT sum(paid_fen) FROM orders")
    assert every.gmv_fen == paid == ledger_sales > live.gmv_fen > 0

    # Without a login or a token: the JSON is refused, the page sends to the login.
    async with httpx.AsyncClient(base_url=site) as client:
        assert (await client.get("/dashboard/api/overview")).status_code == 401
        page_answer = await client.get("/dashboard/stock")
        assert page_answer.status_code == 303
        assert (
            page_answer.headers["location"] == "/dashboard/login?next=/dashboard/stock"
        )
        wrong_scope = issue(
            KEY, scopes=["ledger:read"], ttl=timedelta(hours=1), now=NOW
        )
        refused = await client.get(
            "/dashboard/api/overview",
            headers={"Authorization": f"Bearer {wrong_scope}"},
        )
        assert refused.status_code == 403
        token = issue(KEY, scopes=["dashboard:read"], ttl=timedelta(hours=1), now=NOW)
        program = await client.get(
            "/dashboard/api/overview?session=all",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert program.status_code == 200
        assert program.json()["figures"]["gmv_fen"] == ledger_sales

    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = await browser.new_context(
                viewport={"width": 1360, "height": 900}, locale="zh-CN"
            )
            page = await context.new_page()
            await page.goto(site + "/dashboard")
            assert page.url == site + "/dashboard/login?next=/dashboard"
            await page.fill('input[name="password"]', "wrong password")
            await page.fill('input[name="username"]', USER)
            await page.click('button[type="submit"]')
            assert await page.locator("p.error").is_visible()
            await page.fill('input[name="username"]', USER)
            await page.fill('input[name="password"]', PASSWORD)
            await page.click('button[type="submit"]')
            await page.wait_for_url(site + "/dashboard")
            [cookie] = [c for c in await context.cookies() if c["name"] == COOKIE]
            assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Strict")

            # The live session: its GMV, drawn from the same numbers as the JSON.
            await page.wait_for_selector('.card[data-figure="gmv_fen"]')
            assert await card_value(page, "gmv_fen") == str(live.gmv_fen)
            gmv_text = await page.text_content('.card[data-figure="gmv_fen"] .value')
            assert gmv_text == yuan(live.gmv_fen)
            bars = page.locator('svg[data-chart="gmv"] rect[data-value]')
            assert await bars.count() > 30
            drawn = await bars.evaluate_all(
                "els => els.reduce((s, e) => s + Number(e.dataset.value), 0)"
            )
            assert drawn == live.gmv_fen
            points = page.locator('svg[data-chart="orders"] circle[data-value]')
            drawn_orders = await points.evaluate_all(
                "els => els.reduce((s, e) => s + Number(e.dataset.value), 0)"
            )
            assert drawn_orders == live.orders
            platforms = page.locator('svg[data-chart="platforms"] rect[data-value]')
            assert await platforms.count() == 3
            assert await page.locator(".badge.live").is_visible()
            await shot(page, "dashboard")

            # A sale during the session shows without a reload.
            await sell(hub, YOUZAN, "LATE-1", 50_000, NOW - timedelta(seconds=30))
            await page.wait_for_function(
                f"""() => document.querySelector('.card[data-figure="gmv_fen"]')
                    ?.dataset.value === "{live.gmv_fen + 50_000}" """,
                timeout=30_000,
            )
            ledger_sales += 50_000

            async def ledger_has_it() -> bool:
                return await ledger_total(hub) == ledger_sales

            await wait_until(ledger_has_it, timeout=60)

            # Every order: the ledger's sales.
            await page.select_option("#session", "all")
            await page.wait_for_function(
                f"""() => document.querySelector('.card[data-figure="gmv_fen"]')
                    ?.dataset.value === "{ledger_sales}" """
            )
            assert await page.text_content(
                '.card[data-figure="gmv_fen"] .value'
            ) == yuan(ledger_sales)

            for name, expected in (
                ("bindings", ["followers 8,120 < 10,000", "2026-12-03"]),
                ("stock", ["LIP-02", "LOW"]),
                ("health", ["projection sales", "Kuaishou Shop", "0 / 1"]),
            ):
                await page.goto(f"{site}/dashboard/{name}")
                await page.wait_for_selector("table")
                body = await page.text_content("main") or ""
                for text in expected:
                    assert text in body, (name, text, body[:500])
                await shot(page, name)

            await page.click("text=Sign out")
            # A refresh in flight when the session ends sends to the login too,
            # with the page to come back to.
            await page.wait_for_url(re.compile(r".*/dashboard/login(\?next=.*)?$"))
        finally:
            await browser.close()

    # Signed out, the old cookie no longer opens anything.
    async with httpx.AsyncClient(base_url=site, cookies={COOKIE: cookie["value"]}) as c:
        assert (await c.get("/dashboard/api/overview")).status_code == 401


def test_a_password_is_kept_only_as_its_scrypt_hash() -> None:
    from hub.entry.dashboard import hash_password, password_matches

    stored = hash_password(PASSWORD)
    assert PASSWORD not in stored and stored.startswith("scrypt$16384$8$1$")
    assert password_matches(PASSWORD, stored)
    assert not password_matches("correct horse battery!", stored)
    assert datetime.now(UTC) > T0  # the fixed clock is in the past of the run
