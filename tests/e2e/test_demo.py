"""``hub demo --quick`` on a fresh ``HUB_HOME``: the reference case end to end,
then its dashboard in headless Chromium.

The demo starts its own embedded servers, the sandbox platforms in a child
process and the hub; binds the four shops through their routes; plays a small
live session; prints one JSON object; and (``--stay-open``) keeps its
dashboard up. Its figures must hold together: nothing oversold, the ledger
balanced, the dashboard's GMV equal to the orders' payments and the ledger's
sales. The dashboard it leaves open refuses a visitor without a login and, once
signed in, shows that GMV with charts drawn from the data.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.entry.dashboard import add_user
from hub.infra.embedded import port_free
from tests.browser import ARGS, CHROMIUM, SCREENSHOTS, needs_chromium

pytestmark = pytest.mark.e2e

#: Long enough for a slow, busy machine; each wait ends as soon as it can.
DEADLINE_S = 900
USER, PASSWORD = "reviewer", "after the session"


@dataclass
class Demo:
    """A ``hub demo --quick --stay-open`` that printed its summary."""

    summary: dict[str, Any]
    url: str
    database_url: str
    stderr: Path


def yuan(fen: int) -> str:
    return f"¥{fen / 100:,.2f}"


def _fixed_ports(count: int) -> list[int]:
    """Free ports below the kernel's ephemeral range: the demo binds its
    sandbox to port 0, and the kernel once handed it the very port an
    ephemeral pick had chosen for the hub's HTTP (address already in use)."""
    low = 32768
    ranges = Path("/proc/sys/net/ipv4/ip_local_port_range")
    if ranges.exists():
        low = int(ranges.read_text().split()[0])
    picked: list[int] = []
    rng = random.Random()
    while len(picked) < count:
        port = rng.randrange(max(1024, low - 10_000), low)
        if port not in picked and port_free("127.0.0.1", port):
            picked.append(port)
    return picked


@pytest.fixture(scope="module")
async def demo(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Demo]:
    tmp_path = tmp_path_factory.mktemp("demo")
    ports = dict(zip(("pg", "nats", "http"), _fixed_ports(3), strict=True))
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"HUB_DATABASE_URL", "HUB_NATS_URL", "HUB_CONNECTORS_FILE"}
    } | {
        "HUB_HOME": str(tmp_path / "home"),
        "HUB_PG_PORT": str(ports["pg"]),
        "HUB_NATS_PORT": str(ports["nats"]),
        "HUB_HTTP_PORT": str(ports["http"]),
    }
    stderr = tmp_path / "demo.err"
    with open(stderr, "wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hub",
            "demo",
            "--quick",
            "--stay-open",
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
        )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(DEADLINE_S):
            line = await proc.stdout.readline()
        assert line, f"hub demo ended:\n{stderr.read_text()[-4000:]}"
        yield Demo(
            summary=json.loads(line),
            url=f"http://127.0.0.1:{ports['http']}",
            database_url=f"postgresql://postgres@127.0.0.1:{ports['pg']}/hub",
            stderr=stderr,
        )
        # Ctrl-C ends the demo cleanly: everything it started stops.
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(120):
            assert await proc.wait() == 0, stderr.read_text()[-4000:]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_quick_demo_binds_sells_and_balances(
    demo: Demo,
) -> None:
    summary = demo.summary
    err = demo.stderr.read_text()
    assert summary["oversold"] == 0
    assert summary["ledger_unbalanced"] == 0
    assert summary["orders"] > 0
    assert summary["gmv_fen"] > 0
    # The dashboard's GMV is the orders' payments and the ledger's sales.
    assert summary["gmv_fen"] == summary["ledger_sales_fen"]
    assert summary["gmv_fen"] == summary["orders_paid_fen"]
    assert summary["gmv_fen"] == summary["dashboard_total_gmv_fen"]
    assert 0 < summary["conversion_rate"] < 1
    # Coupons stacked on the spend-threshold reduction took money off.
    assert summary["coupons_redeemed"] > 0
    assert summary["discount_fen"] > 0
    # The limited item crossed its threshold: an alert was heard on NATS.
    assert summary["stock_alerts"] >= 1
    assert summary["stock_alert_max_s"] is not None
    # Every shop was bound through its route, none from a seeded token.
    assert err.count("consent → callback → active") == 2
    assert "douyin_api_key → active" in err
    assert "wechat_internal_authorisation → active" in err


@needs_chromium
async def test_the_demo_s_dashboard_shows_its_gmv_behind_a_login(demo: Demo) -> None:
    summary = demo.summary
    await add_user(demo.database_url, USER, PASSWORD)
    async with httpx.AsyncClient(base_url=demo.url) as client:
        assert (await client.get("/dashboard/api/overview")).status_code == 401
        assert (await client.get("/dashboard")).status_code == 303

    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = await browser.new_context(
                viewport={"width": 1360, "height": 900}, locale="zh-CN"
            )
            page = await context.new_page()
            await page.goto(demo.url + "/dashboard")
            assert page.url == demo.url + "/dashboard/login?next=/dashboard"
            await page.fill('input[name="username"]', USER)
            await page.fill('input[name="password"]', PASSWORD)
            await page.click('button[type="submit"]')
            await page.wait_for_url(demo.url + "/dashboard")
            card = '.card[data-figure="gmv_fen"]'
            await page.wait_for_selector(card)
            assert await page.get_attribute(card, "data-value") == str(
                summary["gmv_fen"]
            )
            assert await page.text_content(f"{card} .value") == yuan(summary["gmv_fen"])
            bars = page.locator('svg[data-chart="gmv"] rect[data-value]')
            assert await bars.count() > 0
            drawn = await bars.evaluate_all(
                "els => els.reduce((s, e) => s + Number(e.dataset.value), 0)"
            )
            assert drawn == summary["gmv_fen"]
            platforms = page.locator('svg[data-chart="platforms"] rect[data-value]')
            assert await platforms.count() == 4
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(
                path=str(SCREENSHOTS / "demo-dashboard.png"), full_page=True
            )
        finally:
            await browser.close()
