"""``hub demo``: the reference case replayed on the embedded runtime.

One process runs everything a new user needs to see the hub at work: the
embedded PostgreSQL and nats-server (under ``HUB_HOME``), the sandbox
platforms, and the hub with its HTTP port (webhooks, OAuth callbacks, the
dashboard). Then, as a merchant would:

1. **Bind** the brand's four shops through their real routes: each binding is
   requested, its subject verified, its qualification recorded and its special
   requirements met; then the hub runs the platform's route (WeChat's and
   Douyin's grants at once, Kuaishou's and Youzan's OAuth consent through the
   hub's callback). No token is seeded.
2. **Prepare**: stock received with low-stock thresholds, the streamer's
   commission and the live session's window, the live room's coupons.
3. **Warm up**: nine videos with 380,000 plays in all.
4. **Sell**: buyers order on the platforms at a steady pace, coupons stacked
   on the shop's spend-threshold reduction; the live room's views are counted.
   Douyin's orders reach the hub 30 minutes late (its rule: the demo's clock
   jumps those 30 minutes after the session) and Kuaishou's on a manual pull.
5. **Report**: the dashboard's figures, the ledger's totals, the longest time
   from a sale to its low-stock alert, and whether any unit was sold twice.

``hub demo --quick`` runs a small session and exits, printing one JSON object
last; ``hub demo`` runs the full session (above 2,000,000 CNY) and leaves the
dashboard open until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, LiteralString

import httpx
import msgspec
import nats
import psycopg

from connectors.sandbox import scenario
from connectors.sandbox.control_client import SandboxControl
from domain.binding import binding_id
from domain.calendar import CHINA_TIME
from domain.marketing import CouponTerms, ReductionTier, ThresholdReduction
from domain.policy import PolicyBook
from hub.entry.sandbox_cli import SandboxProcess
from hub.infra.runtime import cancel_and_wait
from hub.infra.settings import Settings, SettingsError

log = logging.getLogger(__name__)

#: Who logs in to the dashboard the demo leaves open (a new password each run).
DEMO_USER = "demo"
#: The live session's id.
SESSION_ID = "live-demo-1"
#: The streamer's commission in the live session, and outside it.
SESSION_RATE = "0.20"
BASE_RATE = "0.15"
#: How long any one wait of the demo may take before it gives up.
WAIT_S = 120.0
#: The live room's campaign on every shop.
CAMPAIGN = "live-demo-offers"
#: The shop's spend-threshold reduction: every ¥300 takes ¥30 off, at most ¥300.
REDUCTION = ThresholdReduction(
    tiers=(ReductionTier(threshold_fen=30_000, reduction_fen=3_000),),
    repeating=True,
    cap_fen=30_000,
)
#: The live room's coupon: ¥50 off from ¥500 (after the reduction).
COUPON = CouponTerms(kind="amount", amount_fen=5_000, min_spend_fen=50_000)
#: What three friends opening a buyer's share earn them: ¥20 off from ¥100.
FISSION_COUPON = CouponTerms(kind="amount", amount_fen=2_000, min_spend_fen=10_000)
#: The hub's subjects the demo listens on (``HUB_EVENTS``).
EVENTS = "hub.events.>"
CORRELATION = "Hub-Correlation-Id"
CAUSATION = "Hub-Causation-Id"


@dataclass(frozen=True)
class SessionPlan:
    """How big a session is."""

    orders: int
    orders_per_s: float
    #: Views of the live room over the session.
    live_views: int
    #: Stock and low-stock thresholds are the line-up's, times this.
    stock_scale: float
    #: New followers of the warm-up videos, who join the shops' members.
    followers: int


#: The full session's pace is one a single hub process keeps up with (about
#: 70 ms of CPU an order, docs/performance.md); at 20 a second its backlog grew
#: and a low-stock alert came 20 s after its sale.
FULL = SessionPlan(
    orders=1_600,
    orders_per_s=10.0,
    live_views=160_000,
    stock_scale=1.0,
    followers=50,
)
QUICK = SessionPlan(
    orders=160, orders_per_s=20.0, live_views=12_000, stock_scale=0.1, followers=10
)


class DemoError(RuntimeError):
    """The demo could not go on; the message says at which step."""


# ------------------------------------------------------------------- the clock


@dataclass
class DemoClock:
    """Wall time, plus what the demo skips (Douyin's 30-minute delay)."""

    skipped: timedelta = timedelta(0)

    def now(self) -> datetime:
        """The demo's time."""
        return datetime.now(UTC) + self.skipped


# ------------------------------------------------------------------ the output


@dataclass
class Report:
    """What the demo measured."""

    orders_placed: int = 0
    sold_out: int = 0
    orders_stored: int = 0
    gmv_fen: int = 0
    paid_orders: int = 0
    refunds_fen: int = 0
    views: int = 0
    conversion_rate: float = 0.0
    average_order_value_fen: int = 0
    discount_fen: int = 0
    coupons_redeemed: int = 0
    ledger_sales_fen: int = 0
    orders_paid_fen: int = 0
    dashboard_total_gmv_fen: int = 0
    ledger_unbalanced: int = 0
    ledger_balances: dict[str, int] = field(default_factory=dict)
    stock_alerts: int = 0
    stock_alerts_late_by_rule: int = 0
    stock_alert_max_s: float | None = None
    oversold: int = 0
    stock_refused_orders: int = 0
    by_platform: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The last line of ``--quick``: one JSON object."""
        return {
            "gmv_fen": self.gmv_fen,
            "orders": self.orders_stored,
            "conversion_rate": round(self.conversion_rate, 6),
            "average_order_value_fen": self.average_order_value_fen,
            "ledger_unbalanced": self.ledger_unbalanced,
            "stock_alert_max_s": (
                None
                if self.stock_alert_max_s is None
                else round(self.stock_alert_max_s, 3)
            ),
            "oversold": self.oversold,
            "ledger_sales_fen": self.ledger_sales_fen,
            "orders_paid_fen": self.orders_paid_fen,
            "dashboard_total_gmv_fen": self.dashboard_total_gmv_fen,
            "coupons_redeemed": self.coupons_redeemed,
            "discount_fen": self.discount_fen,
            "stock_alerts": self.stock_alerts,
            "sold_out": self.sold_out,
            "stock_refused_orders": self.stock_refused_orders,
        }


class Console:
    """The demo's display: steps and a progress bar on stderr (``rich``)."""

    def __init__(self) -> None:
        from rich.console import Console as RichConsole

        self.rich = RichConsole(stderr=True, highlight=False)

    def step(self, text: str) -> None:
        """Announce a step."""
        self.rich.print(f"[bold cyan]▸[/] {text}")

    def note(self, text: str) -> None:
        """A detail under the current step."""
        self.rich.print(f"  [dim]{text}[/]")

    @contextlib.contextmanager
    def progress(self, total: int) -> Any:
        """A bar counting orders, with GMV so far."""
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        if not self.rich.is_terminal:
            # No terminal to redraw a bar on (a log, a pipe): a line every 10 %.
            shown = [0]

            def report(done: int, gmv_fen: int) -> None:
                tenth = done * 10 // max(total, 1)
                if tenth > shown[0]:
                    shown[0] = tenth
                    self.note(f"{done:,}/{total:,} orders, GMV {yuan(gmv_fen)}")

            yield report
            return
        bar = Progress(
            TextColumn("  orders"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[gmv]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.rich,
            transient=False,
        )
        with bar:
            task = bar.add_task("orders", total=total, gmv="")

            def advance(done: int, gmv_fen: int) -> None:
                bar.update(task, completed=done, gmv=f"¥{gmv_fen / 100:,.2f}")

            yield advance


def yuan(fen: int) -> str:
    """Fen as ``¥1,234.56``."""
    return f"¥{fen / 100:,.2f}"


# ------------------------------------------------------------------- waiting


async def until(
    check: Callable[[], Awaitable[bool]], what: str, deadline_s: float = WAIT_S
) -> None:
    """Wait for ``check`` to hold, polling; :class:`DemoError` past the deadline."""
    end = time.monotonic() + deadline_s
    delay = 0.02
    while not await check():
        if time.monotonic() > end:
            raise DemoError(f"gave up after {deadline_s:.0f} s waiting for {what}")
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.5)


# --------------------------------------------------------------------- the run


@dataclass
class Rig:
    """What a running demo holds."""

    hub: Any
    platforms: Any
    control: SandboxControl
    book: PolicyBook
    url: str
    listener: Any
    stack: contextlib.AsyncExitStack


@dataclass
class Demo:
    """One run of the demo on running servers."""

    database_url: str
    nats_url: str
    settings: Settings
    plan: SessionPlan
    console: Console
    seed: int = 7
    #: Print the report as one JSON line (``--quick``).
    quick: bool = False
    clock: DemoClock = field(default_factory=DemoClock)
    report: Report = field(default_factory=Report)
    #: platform order id → when the demo placed it (monotonic seconds).
    placed_at: dict[str, float] = field(default_factory=dict)
    #: event id or correlation id → (platform, order id), from the order
    #: events heard on NATS.
    causes: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: Low-stock alerts heard: (when, causation id, correlation id).
    alerts: list[tuple[float, str, str]] = field(default_factory=list)
    #: Platforms whose orders reach the hub late by their rule (not pushed).
    late_platforms: set[str] = field(default_factory=set)
    alert_delays: list[float] = field(default_factory=list)
    #: Per platform: how long placing and paying each order took (seconds),
    #: each waiting for the platform's push to be acknowledged by the hub.
    waits: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    #: Units each hub SKU received.
    received: dict[str, int] = field(default_factory=dict)
    #: Units of each hub SKU the platforms accepted orders for.
    sold: dict[str, int] = field(default_factory=dict)

    async def run(self, *, keep_open: bool) -> Report:
        """Set everything up, play the session, report; stay up if asked."""
        async with contextlib.AsyncExitStack() as stack:
            rig = await self._start(stack)
            await self._bind(rig)
            rig.stack.push_async_callback(
                cancel_and_wait,
                asyncio.create_task(rig.platforms.scheduler.run(), name="sync"),
            )
            self.late_platforms = {
                platform
                for platform, policy in rig.platforms.policies.items()
                if policy.orders.mode != "push"
            }
            await self._prepare(rig)
            await self._publish_campaigns(rig.hub)
            await self._listen(rig.listener)
            await self._warm_up(rig.hub)
            await self._sell(rig.hub, rig.control)
            await self._late_orders(rig.platforms)
            await self._settle_figures(rig.hub)
            self._print()
            if self.quick:
                print(json.dumps(self.report.summary(), ensure_ascii=False), flush=True)
            if keep_open:
                await self._stay_open(rig.url)
        return self.report

    async def _start(self, stack: contextlib.AsyncExitStack) -> Rig:
        """The sandbox, the hub and its HTTP port, each stopped by ``stack``."""
        from hub.bootstrap import (
            bootstrap,
            connect_platforms,
            master_key_of,
            personal_data_of,
            policy_book_of,
            token_store_of,
        )
        from hub.entry.dashboard import with_dashboard
        from hub.entry.health import health_app
        from hub.entry.http import HttpServer
        from hub.entry.nats_api import build_broker

        book = policy_book_of(self.settings)
        sandbox = SandboxProcess(seed=self.seed)
        # Connections are let go well before the sandbox's idle timeout, so a
        # request never goes out on one the server is closing.
        control = SandboxControl(
            await sandbox.start(),
            http=httpx.AsyncClient(
                timeout=30, limits=httpx.Limits(keepalive_expiry=1.0)
            ),
        )
        stack.push_async_callback(control.http.aclose)
        stack.push_async_callback(sandbox.stop)
        stack.push_async_callback(control.aclose)
        self.console.step(f"sandbox platforms at {sandbox.url}")
        config = await self._shops(control, book)
        hub = bootstrap(
            database_url=self.database_url, nats_url=self.nats_url, policy_book=book
        )
        await hub.start()
        stack.push_async_callback(hub.stop)
        broker = build_broker(self.nats_url, hub)
        await broker.start()
        stack.push_async_callback(broker.stop)
        master = master_key_of(self.settings)
        platforms = connect_platforms(
            hub,
            config,
            clock=self.clock.now,
            token_store=token_store_of(self.database_url, config, master),
            personal=personal_data_of(self.database_url, master),
            callback_base=self.settings.callback_base,
        )
        await platforms.start(http_port=None, schedule=False, nats_url=self.nats_url)
        stack.push_async_callback(platforms.stop)
        try:
            server = await HttpServer(
                health_app(
                    hub.supervisor,
                    with_dashboard(self.database_url, hub.supervisor, platforms.app()),
                ),
                "127.0.0.1",
                self.settings.http_port,
            ).start()
        except OSError as exc:
            raise SettingsError(
                f"HUB_HTTP_PORT={self.settings.http_port}: cannot listen there "
                f"({exc.strerror or exc}); set HUB_HTTP_PORT to a free port"
            ) from None
        stack.push_async_callback(server.stop)
        listener = await nats.connect(self.nats_url)
        stack.push_async_callback(listener.close)
        self.console.step(f"hub at {server.url} (dashboard: {server.url}/dashboard)")
        await control.set_webhooks(
            {
                shop.platform: f"{server.url}/webhooks/{shop.platform}"
                for shop in scenario.SHOPS
            }
        )
        return Rig(
            hub=hub,
            platforms=platforms,
            control=control,
            book=book,
            url=server.url,
            listener=listener,
            stack=stack,
        )

    # ---------------------------------------------------------------- shops

    async def _shops(self, control: SandboxControl, book: PolicyBook) -> Any:
        """Open the brand's shops on the platforms; the hub's connectors registry."""
        from hub.infra.shops import ConnectorsConfig, Listing, ShopConfig

        shops = []
        for p_index, shop in enumerate(scenario.SHOPS):
            credentials = await control.create_shop(shop.platform, shop.shop_id)
            listings = []
            for s_index, product in enumerate(scenario.PRODUCTS):
                product_id, sku_id = scenario.platform_ids(p_index, s_index)
                await control.set_sku(
                    shop.platform,
                    shop.shop_id,
                    sku_id,
                    product_id=product_id,
                    stock=0,
                    price_fen=product.price_fen,
                    title=product.title,
                )
                listings.append(
                    Listing(
                        hub_sku=product.sku,
                        platform_sku_id=sku_id,
                        product_id=product_id,
                        rule=shop.rule,
                    )
                )
            shops.append(
                ShopConfig(
                    platform=shop.platform,
                    shop_id=shop.shop_id,
                    channel_account=scenario.CHANNEL_ACCOUNT,
                    credentials=dict(credentials),
                    listings=tuple(listings),
                )
            )
            name = book.profiles[shop.platform].display_name
            self.console.note(f"{name}: shop {shop.shop_id} opened")
        return ConnectorsConfig(
            base_urls={shop.platform: control.base_url for shop in scenario.SHOPS},
            shops=tuple(shops),
        )

    # -------------------------------------------------------------- binding

    async def _bind(self, rig: Rig) -> None:
        """Each shop through its platform's binding route, as its merchant would."""
        hub, platforms, book = rig.hub, rig.platforms, rig.book
        first = scenario.SHOPS[0]
        if await hub.committer.latest(
            hub.rules["binding.request"],
            binding_id(scenario.CHANNEL_ACCOUNT, first.platform, first.shop_id),
        ):
            raise DemoError(
                f"HUB_HOME={self.settings.home} holds an earlier demo (its shops are "
                "bound already): run the demo on a fresh data folder, e.g. "
                "HUB_HOME=.hub-demo-2 hub demo"
            )
        self.console.step("binding the four shops through their routes")
        today = self.clock.now().astimezone(CHINA_TIME).date()
        subject = {"kind": "enterprise", "name": "美妆示范有限公司", "code": USCC}
        async with httpx.AsyncClient(timeout=15) as http:
            for shop in scenario.SHOPS:
                profile = book.profiles[shop.platform]
                keys = {
                    "channel_account": scenario.CHANNEL_ACCOUNT,
                    "platform": shop.platform,
                    "shop_id": shop.shop_id,
                }
                steps: list[tuple[str, dict[str, Any]]] = [
                    ("binding.request", keys | {"materials": list(profile.materials)}),
                    (
                        "binding.verify_subject",
                        keys | {"account_subject": subject, "licence_subject": subject},
                    ),
                    (
                        "binding.record_qualification",
                        keys
                        | {
                            "facts": {
                                "as_of": today.isoformat(),
                                "compliance_score": 95,
                                "followers": 380_000,
                                "last_completed_sale_on": (
                                    today - timedelta(days=1)
                                ).isoformat(),
                            }
                        },
                    ),
                    *(
                        ("binding.meet_requirement", keys | {"requirement": need})
                        for need in profile.special_requirements
                    ),
                ]
                for name, payload in steps:
                    reply = await hub.handle(name, msgspec.json.encode(payload))
                    if not reply.ok:
                        raise DemoError(
                            f"{name} of {shop.platform}/{shop.shop_id}: "
                            f"{reply.error.message}"
                        )
                started = await platforms.routes.connect(
                    shop.platform, shop.shop_id, mapped_data=shop.mapped_data
                )
                route = profile.binding_route.kind if profile.binding_route else "route"
                if started.status == "consent_needed":
                    back = await scenario.consent(
                        http, shop.platform, started.consent_url, shop.shop_id
                    )
                    answer = await http.get(back)
                    if answer.status_code != 200:
                        raise DemoError(
                            f"the OAuth callback of {shop.platform} answered "
                            f"{answer.status_code}: {answer.text}"
                        )
                    status = answer.json()["status"]
                    self.console.note(
                        f"{profile.display_name}: {route}, consent → callback → "
                        f"{status}"
                    )
                else:
                    status = started.status
                    self.console.note(f"{profile.display_name}: {route} → {status}")
                if status != "active":
                    raise DemoError(f"{shop.platform} binding ended {status}")

    # -------------------------------------------------------------- prepare

    async def _prepare(self, rig: Rig) -> None:
        """Stock and alerts, the streamer's terms, the live session."""
        hub, platforms, control = rig.hub, rig.platforms, rig.control
        from domain import payout
        from domain.stock import ReceiveStock, SetLowStockThreshold

        self.console.step("stock received, commission agreed, live session scheduled")
        for product in scenario.PRODUCTS:
            units = max(1, round(product.stock * self.plan.stock_scale))
            low = max(1, round(product.low_stock * self.plan.stock_scale))
            await hub.execute(
                "stock.receive",
                ReceiveStock(sku=product.sku, quantity=units, reference="demo-inbound"),
            )
            await hub.execute(
                "stock.set_low_threshold",
                SetLowStockThreshold(sku=product.sku, threshold=low),
            )
            self.received[product.sku] = units
            self.console.note(f"{product.sku}: {units} units, alert at ≤ {low}")
        # The session starts on a whole second: Douyin stamps an order's
        # creation to the second, so an order of the session's first second
        # would otherwise read as placed before it (and count outside it).
        now = self.clock.now().replace(microsecond=0)
        for shop in scenario.SHOPS:
            binding = {
                "channel_account": scenario.CHANNEL_ACCOUNT,
                "platform": shop.platform,
                "shop_id": shop.shop_id,
            }
            await hub.execute(
                "payout.agree_commission",
                payout.AgreeCommission(
                    **binding, streamer=scenario.STREAMER, rate=BASE_RATE
                ),
            )
            await hub.execute(
                "payout.schedule_live_session",
                payout.ScheduleLiveSession(
                    **binding,
                    session_id=SESSION_ID,
                    starts_at=now,
                    ends_at=now + timedelta(hours=3),
                    streamer=scenario.STREAMER,
                    rate=SESSION_RATE,
                ),
            )

        await self._library(hub)
        # A platform whose stock is written only at its calibration times
        # gets the new stock from one calibration now (as an operator would).
        for platform, policy in platforms.policies.items():
            if policy.stock.mode == "scheduled_calibration":
                await platforms.outbound.calibrate(platform)
                self.console.note(f"{platform}: stock written by a calibration run")

        async def listed() -> bool:
            for p_index, shop in enumerate(scenario.SHOPS):
                _, sku_id = scenario.platform_ids(p_index, 0)
                if await control.stock(shop.platform, shop.shop_id, sku_id) <= 0:
                    return False
            return True

        await until(listed, "the stock to be listed on every platform")
        self.console.note("every platform lists its share of the stock")

    async def _library(self, hub: Any) -> None:
        """The brand's products defined in the hub's library, which writes them
        to every bound shop (the product library synchronised in real time)."""
        from domain.catalog import CatalogSku, DefineProduct

        for product in scenario.PRODUCTS:
            await hub.execute(
                "product.define",
                DefineProduct(
                    product=product.sku,
                    title=product.title,
                    price_fen=product.price_fen,
                    skus=(CatalogSku(sku=product.sku, price_fen=product.price_fen),),
                    images=(product.image,),
                ),
            )
        wanted = len(scenario.PRODUCTS) * len(scenario.SHOPS)

        async def synced() -> bool:
            held = await self._scalar(
                "SELECT count(*) FROM catalog_shops s JOIN catalog_products p "
                "ON p.product = s.product AND s.revision = p.revision"
            )
            return held >= wanted

        await until(synced, "the product library to reach every shop")
        self.console.note(
            f"product library: {len(scenario.PRODUCTS)} products written to all "
            f"{len(scenario.SHOPS)} shops"
        )

    # ------------------------------------------------------------ listening

    async def _listen(self, listener: Any) -> None:
        """Hear orders and low-stock alerts as a downstream subscriber would.

        One subscription, so messages are handled in log order: an order's
        events before the alert its stock commitment raised.
        """

        async def on_event(msg: Any) -> None:
            envelope = json.loads(msg.data)
            data = envelope["data"]
            headers = msg.headers or {}
            if envelope["aggregate_type"] == "order" and "platform_order_id" in data:
                order = (str(data["platform"]), str(data["platform_order_id"]))
                self.causes[str(envelope["event_id"])] = order
                self.causes.setdefault(headers.get(CORRELATION, ""), order)
            elif envelope["event_type"] == "StockLowAlertRaised":
                self.alerts.append(
                    (
                        time.monotonic(),
                        headers.get(CAUSATION, ""),
                        headers.get(CORRELATION, ""),
                    )
                )

        await listener.subscribe(EVENTS, cb=on_event)

    def _alert_delays(self) -> None:
        """Each alert's delay from the sale that raised it (its cause, else an
        order of its input)."""
        report = self.report
        report.stock_alerts = len(self.alerts)
        for heard, causation, correlation in self.alerts:
            platform, order = self.causes.get(
                causation, self.causes.get(correlation, ("", ""))
            )
            placed = self.placed_at.get(order)
            if platform in self.late_platforms:
                # Its sale reached the hub when the platform's rule let it.
                report.stock_alerts_late_by_rule += 1
            elif placed is not None:
                self.alert_delays.append(heard - placed)
        report.stock_alert_max_s = max(self.alert_delays, default=None)

    # -------------------------------------------------------------- warm-up

    async def _warm_up(self, hub: Any) -> None:
        """Nine warm-up videos and their plays."""
        self.console.step(
            f"{len(scenario.WARM_UP_PLAYS)} warm-up videos: "
            f"{sum(scenario.WARM_UP_PLAYS):,} plays"
        )
        for index, plays in enumerate(scenario.WARM_UP_PLAYS, start=1):
            await self._views(hub, "video", f"warmup-{index}", plays)
        await self._followers(hub)

    async def _followers(self, hub: Any) -> None:
        """The videos' new followers join every shop's members (membership sync)."""
        from domain.marketing import EnrollMember

        joined = self.clock.now()
        followers = self.plan.followers
        # Submitted together: the committer stores them in a few batches.
        await asyncio.gather(
            *(
                hub.submit(
                    "marketing.enroll_member",
                    EnrollMember(
                        channel_account=scenario.CHANNEL_ACCOUNT,
                        platform=shop.platform,
                        shop_id=shop.shop_id,
                        subject_id=subject(2_000_000 + n),
                        followed_at=joined,
                    ),
                )
                for shop in scenario.SHOPS
                for n in range(followers)
            )
        )
        self.console.note(
            f"{followers} new followers joined the members of each of the "
            f"{len(scenario.SHOPS)} shops"
        )

    async def _views(self, hub: Any, source: str, source_id: str, views: int) -> None:
        from domain.audience import RecordViews

        await hub.execute(
            "audience.record_views",
            RecordViews(
                channel_account=scenario.CHANNEL_ACCOUNT,
                source=source,  # type: ignore[arg-type]
                source_id=source_id,
                views=views,
                at=self.clock.now(),
            ),
        )

    # ----------------------------------------------------------------- sell

    async def _sell(self, hub: Any, control: SandboxControl) -> None:
        """The live session: paced buyers on the four platforms."""
        plan = self.plan
        self.console.step(
            f"live session {SESSION_ID}: {plan.orders:,} buyers at "
            f"{plan.orders_per_s:.0f}/s with {scenario.STREAMER}"
        )
        buyers = scenario.buyers(self.seed)
        ids = {
            (shop.platform, product.sku): scenario.platform_ids(p, s)[1]
            for p, shop in enumerate(scenario.SHOPS)
            for s, product in enumerate(scenario.PRODUCTS)
        }
        semaphore = asyncio.Semaphore(256)
        done = 0
        gmv = 0
        views_per_order = plan.live_views / plan.orders
        views_owed = 0.0
        start = time.monotonic()
        tasks: list[asyncio.Task[None]] = []
        with self.console.progress(plan.orders) as advance:

            async def buy(n: int, purchase: scenario.Purchase) -> None:
                nonlocal done, gmv
                async with semaphore:
                    priced = await self._offer(hub, n, purchase)
                    discounts = [line.discount_fen for line in priced.lines]
                    payload = [
                        {
                            "sku_id": ids[(purchase.shop.platform, product.sku)],
                            "quantity": quantity,
                            "discount_fen": discount,
                        }
                        for (product, quantity), discount in zip(
                            purchase.lines, discounts, strict=True
                        )
                    ]
                    order = await self._place(control, purchase, payload)
                    done += 1
                    if order is not None:
                        gmv += priced.payable_fen
                        self.report.discount_fen += priced.discount_fen
                        if purchase.with_coupon and priced.coupon_applied:
                            await self._redeem(hub, n, purchase, order)
                        await self._shares(hub, n, purchase)
                    advance(done, gmv)

            # The buyers keep their pace whatever the hub is doing: views are
            # recorded beside them, once a second's worth has come.
            per_second = max(1, round(plan.orders_per_s))
            for n in range(plan.orders):
                due = start + n / plan.orders_per_s
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                views_owed += views_per_order
                if (n + 1) % per_second == 0 or n == plan.orders - 1:
                    tasks.append(
                        asyncio.create_task(
                            self._views(hub, "live", SESSION_ID, round(views_owed))
                        )
                    )
                    views_owed = 0.0
                tasks.append(asyncio.create_task(buy(n, next(buyers))))
            await asyncio.gather(*tasks)

    # ------------------------------------------------------------ marketing

    def _campaign(self, shop: scenario.DemoShop) -> dict[str, Any]:
        return {
            "channel_account": scenario.CHANNEL_ACCOUNT,
            "platform": shop.platform,
            "shop_id": shop.shop_id,
            "campaign": CAMPAIGN,
        }

    async def _publish_campaigns(self, hub: Any) -> None:
        """Each shop's reduction, the live room's coupon and the fission reward."""
        from domain.marketing import FissionTerms, PublishCampaign

        now = self.clock.now()
        for shop in scenario.SHOPS:
            await hub.execute(
                "marketing.publish",
                PublishCampaign(
                    **self._campaign(shop),
                    title="直播间专享 Live-room offers",
                    starts_at=now,
                    ends_at=now + timedelta(hours=3),
                    reduction=REDUCTION,
                    coupon=COUPON,
                    per_buyer_limit=1,
                    total_quantity=self.plan.orders,
                    fission=FissionTerms(
                        friends_needed=3,
                        reward=FISSION_COUPON,
                        rewards_per_buyer_per_day=1,
                        max_rewards=self.plan.orders,
                    ),
                ),
            )
        self.console.note(
            f"offers: every {yuan(REDUCTION.tiers[0].threshold_fen)} "
            f"{yuan(REDUCTION.tiers[0].reduction_fen)} off (at most "
            f"{yuan(REDUCTION.cap_fen or 0)}), then the live room's "
            f"{yuan(COUPON.amount_fen)} coupon from {yuan(COUPON.min_spend_fen)}"
        )

    async def _offer(self, hub: Any, n: int, purchase: scenario.Purchase) -> Any:
        """The buyer claims the coupon if they hold one; the order priced."""
        from domain.marketing import ClaimCoupon, Offers, price_order

        if purchase.with_coupon:
            await hub.execute(
                "marketing.claim",
                ClaimCoupon(**self._campaign(purchase.shop), buyer=subject(n)),
            )
        offers = Offers(
            reduction=REDUCTION, coupon=COUPON if purchase.with_coupon else None
        )
        return price_order(cart(purchase), offers)

    async def _redeem(
        self, hub: Any, n: int, purchase: scenario.Purchase, order_id: str
    ) -> None:
        from domain.marketing import RedeemCoupon

        await hub.execute(
            "marketing.redeem",
            RedeemCoupon(
                **self._campaign(purchase.shop),
                buyer=subject(n),
                order_platform=purchase.shop.platform,
                platform_order_id=order_id,
                lines=cart(purchase),
            ),
        )
        self.report.coupons_redeemed += 1

    async def _shares(self, hub: Any, n: int, purchase: scenario.Purchase) -> None:
        """Friends open the buyer's share of the live room (fission)."""
        from domain.marketing import RecordShare

        for friend in range(purchase.shares):
            await hub.execute(
                "marketing.share",
                RecordShare(
                    **self._campaign(purchase.shop),
                    sharer=subject(n),
                    friend=subject(1_000_000 + 3 * n + friend),
                ),
            )

    async def _place(
        self,
        control: SandboxControl,
        purchase: scenario.Purchase,
        lines: list[dict[str, Any]],
    ) -> str | None:
        shop = purchase.shop
        placed = time.monotonic()
        try:
            order = await control.create_order(
                shop.platform, shop.shop_id, lines, buyer=buyer_of(len(self.placed_at))
            )
        except Exception as exc:  # the platform refuses beyond its listed stock
            if "holds" in str(exc):
                self.report.sold_out += 1
                return None
            raise
        order_id = str(order["order_id"])
        self.placed_at[order_id] = placed
        created = time.monotonic()
        await control.order_action(shop.platform, shop.shop_id, order_id, "pay")
        self.waits.setdefault(shop.platform, []).append(
            (created - placed, time.monotonic() - created)
        )
        self.report.orders_placed += 1
        for product, quantity in purchase.lines:
            self.sold[product.sku] = self.sold.get(product.sku, 0) + quantity
        self.report.by_platform[shop.platform] = (
            self.report.by_platform.get(shop.platform, 0) + 1
        )
        return order_id

    # --------------------------------------------------------- late orders

    async def _late_orders(self, platforms: Any) -> None:
        """Pull what the platforms' rules deliver late, then wait for every order."""
        self.console.step("orders that arrive late by their platform's rules")
        late = [shop for shop in scenario.SHOPS if shop.platform in self.late_platforms]
        skip = max(
            (platforms.policies[s.platform].orders.poll_delay_s for s in late),
            default=0,
        )
        if skip:
            self.clock.skipped += timedelta(seconds=skip + 60)
            self.console.note(
                f"the demo's clock skips {skip // 60} minutes (the longest "
                "platform delay)"
            )
        async with await nats.connect(self.nats_url) as client:
            for shop in late:
                answer = await client.request(
                    "hub.cmd.sync.orders",
                    msgspec.json.encode(
                        {"platform": shop.platform, "shop_id": shop.shop_id}
                    ),
                    timeout=60,
                )
                pulled = json.loads(answer.data)
                self.console.note(
                    f"{shop.platform}/{shop.shop_id}: pulled "
                    f"{pulled.get('orders', pulled)} orders "
                    "(hub.cmd.sync.orders)"
                )
        expected = self.report.orders_placed

        async def stored() -> bool:
            self.report.orders_stored = await self._scalar(
                "SELECT count(*) FROM orders WHERE paid_fen IS NOT NULL"
            )
            return self.report.orders_stored >= expected

        await until(stored, f"all {expected} orders paid in the hub")

    # -------------------------------------------------------------- figures

    async def _settle_figures(self, hub: Any) -> None:
        """Wait for every read model to reach the log's head; read the figures."""
        from eventlog.log import log_head
        from projections import sales
        from projections.ledger import trial_balance

        # Twice: the process managers add events (payouts) the read models fold.
        for _ in range(2):
            async with await psycopg.AsyncConnection.connect(self.database_url) as c:
                head = await log_head(c)
            for runner in (*hub.processes, *hub.projections):
                await runner.wait_for(head)
        report = self.report
        async with await psycopg.AsyncConnection.connect(self.database_url) as conn:
            figures = await sales.summary(
                conn,
                sales.Selection(
                    channel_account=scenario.CHANNEL_ACCOUNT, session_id=SESSION_ID
                ),
            )
            everything = await sales.summary(conn)
            report.orders_paid_fen = await scalar(
                conn,
                "SELECT coalesce(sum(paid_fen), 0) - coalesce(sum(refunded_fen), 0) "
                "FROM orders WHERE paid_fen IS NOT NULL",
            )
            report.ledger_sales_fen = await scalar(
                conn,
                "SELECT coalesce(sum(p.amount_fen), 0) FROM ledger_postings p "
                "JOIN ledger_transactions t ON t.id = p.transaction_id "
                "WHERE t.kind IN ('sale', 'refund') AND t.status <> 'voided' "
                "AND p.account LIKE 'receivable:%'",
            )
            report.ledger_unbalanced = len((await trial_balance(conn)).unbalanced)
            report.stock_refused_orders = await scalar(
                conn,
                "SELECT count(*) FROM orders WHERE cardinality(stock_refusals) > 0",
            )
        report.orders_stored = figures.orders
        report.paid_orders = figures.paid_orders
        report.gmv_fen = figures.net_gmv_fen
        report.dashboard_total_gmv_fen = everything.net_gmv_fen
        report.refunds_fen = figures.refunded_fen
        report.views = figures.views
        report.conversion_rate = figures.conversion_rate or 0.0
        report.average_order_value_fen = figures.average_order_value_fen or 0
        # What the platforms accepted beyond what the brand had: a unit sold twice.
        report.oversold = sum(
            max(0, self.sold.get(sku, 0) - units)
            for sku, units in self.received.items()
        )
        self._alert_delays()

    async def _scalar(self, query: LiteralString) -> int:
        async with await psycopg.AsyncConnection.connect(self.database_url) as conn:
            return await scalar(conn, query)

    def _print(self) -> None:
        r = self.report
        say = self.console
        for platform, waits in sorted(self.waits.items()):
            place = sorted(w[0] for w in waits)
            pay = sorted(w[1] for w in waits)
            log.info(
                "%s: %d orders; place p50 %.3f s p90 %.3f s, pay p50 %.3f s p90 %.3f s",
                platform,
                len(waits),
                place[len(place) // 2],
                place[len(place) * 9 // 10],
                pay[len(pay) // 2],
                pay[len(pay) * 9 // 10],
            )
        say.step("the session, as the dashboard and the ledger show it")
        say.note(
            f"GMV {yuan(r.gmv_fen)} over {r.paid_orders:,} paid orders "
            f"({r.orders_stored:,} placed in the session)"
        )
        say.note(
            f"conversion {r.conversion_rate:.2%} of {r.views:,} views; "
            f"average order value {yuan(r.average_order_value_fen)}"
        )
        say.note(
            f"reductions and coupons: {yuan(r.discount_fen)} off, "
            f"{r.coupons_redeemed} live-room coupons redeemed"
        )
        say.note(
            f"ledger: sales {yuan(r.ledger_sales_fen)}, "
            f"{r.ledger_unbalanced} unbalanced transactions"
        )
        alert = f"{r.stock_alerts} raised"
        if r.stock_alert_max_s is not None:
            alert += f", the slowest {r.stock_alert_max_s:.2f} s after its sale"
        if r.stock_alerts_late_by_rule:
            alert += (
                f" ({r.stock_alerts_late_by_rule} on sales their platform delivers "
                "late by its rule)"
            )
        say.note(f"low-stock alerts: {alert}")
        say.note(f"oversold units: {r.oversold}; buyers turned away: {r.sold_out}")

    async def _stay_open(self, url: str) -> None:
        from hub.entry.dashboard import add_user

        password = secrets.token_urlsafe(12)
        await add_user(self.database_url, DEMO_USER, password)
        self.console.step(f"the dashboard stays open at {url}/dashboard; Ctrl-C ends")
        self.console.note(f"log in as {DEMO_USER} with password {password}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


#: A valid unified social credit code for the demo's brand.
USCC = "914403001922038216"


async def scalar(conn: psycopg.AsyncConnection[Any], query: LiteralString) -> int:
    """The one integer a query answers (0 for no row)."""
    cur = await conn.execute(query)
    row = await cur.fetchone()
    return int(row[0]) if row else 0


def buyer_of(n: int) -> dict[str, str]:
    """A made-up buyer (the sandbox's order carries one)."""
    return {
        "name": f"买家{n:05d}",
        "phone": f"139{n:08d}",
        "province": "浙江省",
        "city": "杭州市",
        "district": "西湖区",
        "detail": f"文三路 {n % 500 + 1} 号",
    }


def subject(n: int) -> str:
    """Buyer ``n``'s pseudonymous subject id (a hash, as the hub keeps buyers)."""
    return "sub_" + hashlib.blake2b(f"demo-{n}".encode(), digest_size=16).hexdigest()


def cart(purchase: scenario.Purchase) -> tuple[Any, ...]:
    """A purchase's lines as marketing prices them."""
    from domain.marketing import CartLine

    return tuple(
        CartLine(sku=product.sku, quantity=quantity, unit_price_fen=product.price_fen)
        for product, quantity in purchase.lines
    )


# ----------------------------------------------------------------------- verb


def add_demo_parser(verbs: Any) -> None:
    """Add ``hub demo`` to the CLI."""
    parser = verbs.add_parser(
        "demo",
        help="replay the reference case on the embedded runtime and the sandbox",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small session; exit and print one JSON object last",
    )
    parser.add_argument(
        "--stay-open",
        action="store_true",
        help="with --quick: keep the dashboard open after the JSON line (Ctrl-C ends)",
    )
    parser.add_argument("--seed", type=int, default=7, help="the buyers' seed")
    parser.set_defaults(func=cmd_demo)


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    """Run the demo; 0 when no unit was oversold and the ledger balances."""
    from hub.bootstrap import servers
    from hub.infra.runtime import run

    plan = QUICK if args.quick else FULL
    console = Console()
    with servers(settings, start_embedded=True) as (database_url, nats_url):
        demo = Demo(
            database_url=database_url,
            nats_url=nats_url,
            settings=settings,
            plan=plan,
            console=console,
            seed=args.seed,
            quick=args.quick,
        )
        try:
            report = run(demo.run(keep_open=args.stay_open or not args.quick))
        except DemoError as exc:
            print(f"hub demo: {exc}", file=sys.stderr)
            return 1
    return 0 if report.oversold == 0 and report.ledger_unbalanced == 0 else 1
