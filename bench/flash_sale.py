"""Flash-sale benchmark: one SKU sold out on all four platforms at once.

A real hub (PostgreSQL log, group commit, relay to NATS, projections, the
order-stock process, webhooks on a loopback uvicorn port, the outbound stock
dispatcher) runs against the sandbox platforms (``connectors.sandbox``) with
call faults at 10 % on every platform (3 % 5xx, 2 % rate limit, 3 % timeout,
2 % token expiry; seeded). The hub receives ``units`` of one SKU; the four
shops list it with no share limit of their own, so :func:`domain.allocation.allocate`
shares ``available`` among them (their listings add up to at most what is
available). A crowd of buyers inside the sandbox (``connectors.sandbox.crowd``,
started through the control API) places orders of 1-3 units on every platform
(created, pushed, then paid and pushed, as the control API's ``create_order``
and ``pay`` do) at a paced aggregate rate, a quarter on each platform. The
sandbox refuses an order beyond what its shop lists (a refused buyer then
takes what is listed). The sale ends when the hub's ``inventory`` says
available 0 and every platform lists 0 (or at a deadline); then the crowd is
stopped.

Process layout: the hub runs in this process on uvloop, as ``hub serve`` does
(its event loop, its webhooks' uvicorn server, the group committer, the
order-stock process and the outbound dispatcher, with their worker threads);
the relay and every read model run as worker processes (``hub relay``,
``hub project``), as a scaled-out hub does (``--single-process`` keeps them
here); the sandbox, with the crowd, runs as a
child process (``python -m hub.entry.cli sandbox --port 0 --seed N``, its URL read
from its first line of output, terminated at the end of each run), so the
platform side, its buyers included, does not share this process's CPU and GIL.
Everything this process learns of the platforms comes through the sandbox's
control API over loopback HTTP: the listed stock (polled every 20 ms for the
sell-out), the crowd's counts, the order records and the call and push logs
(read page by page from their positions before the sale). With
``--sandbox-in-process`` (``SaleConfig.sandbox_in_process``) the sandbox runs
in a thread of this process instead, as before the split; the control API is
used all the same. PostgreSQL and NATS are separate processes either way.

Two runs, one after the other, on the same PostgreSQL and NATS servers (a
fresh database and a fresh sandbox for each):

* **event-driven** (the hub): every stock event pushes the new allocation to
  every listing at once (``OutboundDispatcher``);
* **baseline**: the anchors' way, a 15-second polling sync: the dispatcher
  pushes nothing on events, and a timer re-sends every listing
  (``OutboundDispatcher.calibrate``) every 15 s of real time. Orders still
  reach the hub by push, so the hub's own guard still refuses commits beyond
  available.

What is reported (definitions):

* ``sold``: units the hub committed to orders (the stock item's ``committed``
  after the sale; nothing ships or cancels during it).
* ``oversold``: ``max(0, P - units)`` where ``P`` is the number of units in
  the orders the platforms themselves accepted (the sandbox's order records,
  cancelled ones excluded), not what the hub claims. A unit a buyer bought on
  a platform beyond the stock that exists is oversold whether or not the hub
  refused its commit (``refused_units`` counts those the hub refused). The
  sandbox never lets a SKU's listed stock go below zero, so "sold beyond what
  a platform listed" is impossible by construction; ``negative_listings``
  checks it anyway. A hub that listed carelessly, or whose pushes were lost,
  shows here: it is computed from the platforms' side only.
* ``orders_missing_in_hub``: platform orders the hub never stored (a lost
  push); ``dead_letters``: stock pushes given up.
* propagation latency, per (order, other platform) pair: from the moment the
  sandbox sent the order's *created* push to the hub, to the moment the first
  stock write carrying a quantity computed from a stock item version at or
  after the order's commit arrived at that other platform, taking it to that
  version's allocation (the version is the write's request id suffix
  ``@v<version>``; a raise the headroom guard holds back in part is marked
  ``@h`` and does not count; the sandbox logs each API call on arrival). When
  the listing already showed that version's quantity and nothing was on its
  way, the dispatcher writes nothing and notes the moment it found so
  (:attr:`hub.service.outbound.OutboundDispatcher.syncs`); that moment counts instead.
  All times are wall-clock (``time.time()``): the sandbox's (push sent, call
  arrived) and the hub's (its sync notes), two processes on one machine
  reading one clock
  (the sandbox's clock offset is never moved here). Pairs never brought up to
  date are counted (``unmeasured_pairs``), not guessed.

The run uses a *flash-sale policy profile*, printed at the start, derived
from the shipped sync policies: every platform's order pushes are consumed and
its stock pushed in real time (shipped: Douyin polls orders 30 min late and
Kuaishou calibrates stock twice a day, with which no sale across four platforms
can avoid overselling). Each shop's API budget is enforced by the sandbox
(``connectors.sandbox.ApiBudget``: a refused call is answered the platform's
rate-limit way and counted in ``budget_refusals``): 1,000 calls/s, burst
1,000 by default and with ``--quick``; with ``--shipped-budgets`` the shipped
policies' rate limits (WeChat 5/s burst 10, the others 10/s burst 20). The
connector clients' own per-shop token buckets spend :data:`CLIENT_SHARE` (90 %)
of the budget. Retry backoff is shortened to a 10 ms
base (shipped: 1 s, and WeChat waits 60 s after a rate-limit answer), and a
call unanswered after 25 ms (and after four times the client's recent median
answer) is abandoned and sent again at once
(``RetryPolicy.resend_slow_after_s``: reads always; writes too, because the
sandbox applies a request id once on every platform; the shipped policies
resend nothing early, since of the real platforms only Douyin documents an
idempotency key; with ``--shipped-budgets`` nothing is resent early either, as
a resend spends the budget again). ``--shipped-retry`` keeps the shipped retry
policy.

Cost figures (over the sale and its settling, per order the hub stored):
``hub_cpu_ms_per_order`` is the CPU (user + system, from ``/proc``) of every
hub-side process: this process (the hub; it also runs the bench's own polling
of the sell-out every :data:`WATCH_EVERY_S`, about 1 %), the worker
processes, and PostgreSQL (the postmaster, its backends, the children it
reaped) and nats-server when this bench started them (``servers_in_cpu``);
never the sandbox or its buyers.
The sale starts only once the worker processes are at work (every read model
at the log's head, the relay holding its lock), so their start is not in it.
``api_calls_per_order`` counts every platform call in the sandbox's request
log (faults and refusals included); ``budget_refusals`` those refused for the
budget; ``converged_s`` runs from the sale's last push to the moment the hub
had every order and every platform listed 0.

Usage: ``python bench/flash_sale.py [--quick] [--shipped-budgets] [--units N]
[--rate ORDERS_PER_S] [--no-baseline] [--sandbox-in-process]``.
Servers come from ``HUB_DATABASE_URL`` / ``HUB_NATS_URL`` when set, else
embedded ones are started in a temporary folder. The last line printed is one
JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import random
import re
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.servers import fresh_database
from connectors.sandbox import (
    ApiBudget,
    CrowdShop,
    FaultConfig,
    SandboxConfig,
    SandboxControl,
    SandboxServer,
)
from connectors.sandbox.control_client import SandboxControlError
from domain import order as order_domain
from domain import push as stock_push
from domain.allocation import LIST_ALL, AllocationRule
from domain.policy import SyncPolicy
from domain.stock import ReceiveStock, StockCommitted, stock_item_id
from eventlog.log import log_head
from hub.bootstrap import bootstrap, default_projections
from hub.entry.http import HttpServer, create_app
from hub.entry.platforms import Platforms
from hub.entry.sandbox_cli import SandboxProcess
from hub.infra.embedded import EmbeddedPostgres, parent_death_signal, start_servers
from hub.infra.ledgers import LedgerStore
from hub.infra.oauth_states import OAuthStates
from hub.infra.relay import relay_lock_key
from hub.infra.runtime import freeze_heap
from hub.infra.runtime import run as run_loop
from hub.infra.shops import Connectors, ConnectorsConfig, Listing, ShopConfig
from hub.service.authorisation import BindingRoutes
from hub.service.commands import STOCK_RULES
from hub.service.commit import utc_now
from hub.service.hub import Hub
from hub.service.inbound import OrderIntake
from hub.service.outbound import OutboundDispatcher
from hub.service.policies import load_policy_book, sync_policies
from hub.service.sync import SyncScheduler
from tests.binding_payloads import (
    ACCOUNT,
    MAPPED_DATA,
    book_with_douyin_orders,
    connect_through_route,
)

PLATFORMS = ("wechat_shop", "douyin_shop", "kuaishou_shop", "youzan")
SHOPS = {
    "wechat_shop": "wx-flash-1",
    "douyin_shop": "77001",
    "kuaishou_shop": "900001",
    "youzan": "42001",
}
SKU = "FLASH-1"
#: The SKU's (product id, platform SKU id) on each platform.
LISTED = {
    "wechat_shop": ("10000000000001", "9007199254740993"),
    "douyin_shop": ("3500000000000000001", "1780000000000000001"),
    "kuaishou_shop": ("20046611202546", "300001"),
    "youzan": ("123", "456"),
}
#: A second SKU, sold a little before the sale (no faults, not measured) so
#: the hub is warm when the sale starts, as a long-running hub is: connections
#: open, tokens fetched, every path of an order taken once.
WARM_SKU = "WARM-1"
WARM_LISTED = {
    "wechat_shop": ("10000000000002", "9007199254740995"),
    "douyin_shop": ("3500000000000000002", "1780000000000000002"),
    "kuaishou_shop": ("20046611202547", "300002"),
    "youzan": ("124", "457"),
}
WARM_UNITS = 40
#: The request id prefix of the sale SKU's stock writes, per platform.
LISTING_PREFIX = {
    p: stock_push.push_request_id(p, SHOPS[p], SKU, 0).rpartition("-v")[0] + "-v"
    for p in PLATFORMS
}
WARM_ORDERS_PER_PLATFORM = 3
#: No channel limits itself: allocate() shares available among the four.
RULES: dict[str, AllocationRule] = dict.fromkeys(PLATFORMS, LIST_ALL)
#: Share of the buyers' orders placed on each platform. Even, like the
#: allocation: with uneven demand the sale's pace is set by the slowest
#: platform selling its quarter, not by the hub.
DEMAND = dict.fromkeys(PLATFORMS, 0.25)
#: 10 % of API calls fail, on every platform.
FAULTS = FaultConfig(
    error_5xx_rate=0.03,
    rate_limit_rate=0.02,
    timeout_rate=0.03,
    token_expiry_rate=0.02,
    timeout_delay_s=0.3,
)
#: The generous per-shop API budget of ``--quick`` (and the default run): the
#: sandbox enforces it, so it is a real limit, far above what a sale needs.
BENCH_BUDGET = ApiBudget(rate_per_s=1000.0, burst=1000)
#: The share of a shop's budget its client's token bucket spends: the sandbox
#: counts calls as they arrive, a little unevenly after the client's evenly
#: paced sends, so a client spending the whole budget would now and then be
#: refused (as a real platform's gateway would refuse it).
CLIENT_SHARE = 0.9
#: The request log's result of a call the sandbox refused for the budget.
OVER_BUDGET = "over_budget"
#: The clients' read timeout: an injected timeout (held 0.3 s) is retried.
CLIENT_TIMEOUT_S = 0.2
BASELINE_SYNC_S = 15.0
#: The profile's retry backoff base (and least wait after a rate limit).
RETRY_BASE_S = 0.01
#: The profile's resend of slow calls: unanswered after this, sent again.
RESEND_SLOW_AFTER_S = 0.025
#: The event each platform pushes when an order is created (sandbox names).
CREATED_PUSH = {
    "wechat_shop": "channels_ec_order_new",
    "douyin_shop": "100",
    "kuaishou_shop": "kwaishop_order_addOrder",
    "youzan": "trade_TradeCreate",
}
REDIRECT = "http://127.0.0.1:9/callback"
VERSION_IN_REQUEST_ID = re.compile(r"@v(\d+)$")
#: Units per order, drawn uniformly by the sandbox's crowd.
QUANTITIES = (1, 2, 3)
ROOT = Path(__file__).resolve().parents[1]
#: What ``hub sandbox`` prints once it listens.

log = logging.getLogger("flash_sale")


# --------------------------------------------------------------------------- setup


def sale_budgets(*, shipped: bool) -> dict[str, ApiBudget]:
    """Each platform's API budget per shop, as the sandbox enforces it: the
    shipped policies' rate limits, or :data:`BENCH_BUDGET`."""
    if not shipped:
        return dict.fromkeys(PLATFORMS, BENCH_BUDGET)
    return {
        platform: ApiBudget(
            rate_per_s=policy.rate_limit.rate_per_s, burst=policy.rate_limit.burst
        )
        for platform, policy in sync_policies(load_policy_book()).items()
    }


def sale_policies(
    *, event_driven: bool, shipped_retry: bool = False, shipped_budgets: bool = False
) -> dict[str, SyncPolicy]:
    """The flash-sale policy profile (see the module docstring): the bundled
    book's sync policies, changed."""
    profile = {}
    budgets = sale_budgets(shipped=shipped_budgets)
    for platform, policy in sync_policies(load_policy_book()).items():
        orders = msgspec.structs.replace(policy.orders, mode="push", poll_delay_s=0)
        stock = msgspec.structs.replace(
            policy.stock,
            mode="two_way" if event_driven else "scheduled_calibration",
            calibration_times=(),
        )
        budget = budgets[platform]
        rate_limit = msgspec.structs.replace(
            policy.rate_limit,
            rate_per_s=budget.rate_per_s * CLIENT_SHARE,
            burst=max(1, int(budget.burst * CLIENT_SHARE)),
        )
        retry = policy.retry
        if not shipped_retry:
            retry = msgspec.structs.replace(
                retry,
                base_delay_s=RETRY_BASE_S,
                max_delay_s=1.0,
                rate_limited_min_delay_s=RETRY_BASE_S,
                # A resend spends the budget again: only where it is generous.
                resend_slow_after_s=None if shipped_budgets else RESEND_SLOW_AFTER_S,
                # The sandbox applies a request id once on every platform.
                resend_slow_writes=not shipped_budgets,
            )
        profile[platform] = msgspec.structs.replace(
            policy, orders=orders, stock=stock, rate_limit=rate_limit, retry=retry
        )
    return profile


def describe_profile(profile: Mapping[str, SyncPolicy]) -> list[str]:
    """One line per platform: how the run syncs it."""
    return [
        f"  {p}: orders {pol.orders.mode} (pushes consumed: "
        f"{pol.orders.push_enabled}), stock {pol.stock.mode}, client bucket "
        f"{pol.rate_limit.rate_per_s:g}/s burst {pol.rate_limit.burst}, retry "
        f"base {pol.retry.base_delay_s}s "
        f"max {pol.retry.max_delay_s}s, after rate limit "
        f"{pol.retry.rate_limited_min_delay_s}s"
        for p, pol in profile.items()
    ]


async def activate(
    hub: Hub, connectors: Connectors, control: SandboxControl, platform: str
) -> None:
    """Take the shop's binding to active through its route (the e2e rig's steps):
    the hub obtains the grant (a code flow's code from the sandbox)."""
    routes = BindingRoutes(
        hub,
        connectors,
        OAuthStates(hub.database_url, clock=utc_now),
        callback_url=lambda _: REDIRECT,
    )
    await connect_through_route(
        hub,
        routes,
        control,
        platform,
        SHOPS[platform],
        mapped_data=MAPPED_DATA.get(platform, ()),
    )


@dataclass
class SaleConfig:
    """One sale: its size, pace and sync mode."""

    units: int
    orders_per_s: float
    event_driven: bool
    seed: int = 7
    buyers_per_platform: int = 32
    sync_period_s: float = BASELINE_SYNC_S
    sale_timeout_s: float = 120.0
    shipped_retry: bool = False
    #: The shipped policies' API budgets (enforced by the sandbox), not
    #: :data:`BENCH_BUDGET`.
    shipped_budgets: bool = False
    #: Run the sandbox (and its crowd) in a thread of this process instead of
    #: a ``hub sandbox`` child process.
    sandbox_in_process: bool = False
    #: PostgreSQL's postmaster and nats-server, when this bench started them:
    #: their CPU (with their children's) counts as the hub's.
    server_pids: dict[str, int] = field(default_factory=dict)
    #: Run the relay and the read models as worker processes (``hub relay``,
    #: ``hub project``), as a scaled-out hub does; the hub's process keeps the
    #: webhooks, the committer, the order-stock process and the outbound
    #: dispatcher. False: everything in the hub's process (plain ``hub serve``).
    workers: bool = True


@dataclass
class SaleResult:
    """What one sale measured (see the module docstring for definitions)."""

    event_driven: bool
    units: int
    sold: int
    platform_units: int
    oversold: int
    refused_units: int
    negative_listings: int
    orders: int
    orders_missing_in_hub: int
    refused_by_platform: int
    buyer_errors: int
    dead_letters: int
    unsold: int
    sale_s: float
    changes_per_s: float
    orders_per_s: float
    latencies_ms: list[float] = field(default_factory=list)
    unmeasured_pairs: int = 0
    by_platform: dict[str, int] = field(default_factory=dict)
    #: Per committed order, ms: its created push sent → the hub's order placed
    #: (``push_to_order``) → its stock committed (``order_to_stock``).
    stages_ms: dict[str, list[float]] = field(default_factory=dict)
    #: The slowest pairs, each with its stages (:func:`slowest_pairs`).
    slowest: list[str] = field(default_factory=list)
    #: CPU seconds of every hub-side process over the sale (see
    #: :func:`hub_side_cpu_s`), and the orders the hub stored in it.
    hub_cpu_s: float = 0.0
    cpu_by_part: dict[str, float] = field(default_factory=dict)
    orders_stored: int = 0
    #: Events the hub stored over the sale and its settling.
    events: int = 0
    #: Platform calls the hub made during the sale (and its settling), and how
    #: many of them the sandbox refused for the shop's budget.
    api_calls: int = 0
    budget_refusals: int = 0
    #: The calls by platform and API, and by result.
    calls_by_api: dict[str, int] = field(default_factory=dict)
    calls_by_result: dict[str, int] = field(default_factory=dict)
    #: From the last push of the sale's orders to the moment the hub had
    #: taken every order in and every platform listed 0 (None: never).
    converged_s: float | None = None

    @property
    def hub_cpu_ms_per_order(self) -> float | None:
        """Hub-side CPU per order stored, in ms."""
        if not self.orders_stored:
            return None
        return self.hub_cpu_s * 1000 / self.orders_stored

    @property
    def api_calls_per_order(self) -> float | None:
        """Platform calls per order stored."""
        if not self.orders_stored:
            return None
        return self.api_calls / self.orders_stored

    def percentile(self, q: float) -> float | None:
        """Nearest-rank percentile of the latencies, in ms."""
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
        return ordered[rank - 1]


# --------------------------------------------------------------------------- the sale


#: /proc's CPU times are in clock ticks.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (None: gone).
    Index 1 is the parent's pid, 11-14 utime, stime, cutime, cstime."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def hub_side_cpu_s(alone: tuple[int, ...], trees: tuple[int, ...]) -> float:
    """CPU seconds (user + system) the hub's side has used so far (Linux).

    ``alone``: processes counted by themselves (this one: the hub; its
    children include the sandbox, which is not the hub's). ``trees``:
    processes counted with every descendant alive now and every child they
    have reaped (the workers, PostgreSQL's postmaster with its backends,
    nats-server). A process that is gone counts 0.
    """
    parents: dict[int, int] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            stats[int(entry.name)] = fields
            parents[int(entry.name)] = int(fields[1])
    ticks = 0
    for pid in alone:
        if pid in stats:
            ticks += int(stats[pid][11]) + int(stats[pid][12])
    counted: set[int] = set()
    for root in trees:
        if root not in stats:
            continue
        ticks += int(stats[root][13]) + int(stats[root][14])  # reaped children
        family = [root]
        while family:
            pid = family.pop()
            if pid in counted:
                continue
            counted.add(pid)
            ticks += int(stats[pid][11]) + int(stats[pid][12])
            family += [child for child, parent in parents.items() if parent == pid]
    return ticks / CLOCK_TICKS


class SandboxThread:
    """The sandbox in a thread of this process (``sandbox_in_process``)."""

    def __init__(self, seed: int) -> None:
        self.server = SandboxServer(SandboxConfig(seed=seed))
        self.url = ""

    async def start(self) -> None:
        await asyncio.to_thread(self.server.start)
        self.url = self.server.url

    async def stop(self) -> None:
        await asyncio.to_thread(self.server.stop)


class Rig:
    """A running hub with its platform side, and the sandbox."""

    def __init__(self, config: SaleConfig, database_url: str, nats_url: str | None):
        self.config = config
        self.database_url = database_url
        self.nats_url = nats_url
        self.profile = sale_policies(
            event_driven=config.event_driven,
            shipped_retry=config.shipped_retry,
            shipped_budgets=config.shipped_budgets,
        )
        self.sandbox: SandboxProcess | SandboxThread = (
            SandboxThread(config.seed)
            if config.sandbox_in_process
            else SandboxProcess(config.seed)
        )
        self.control: SandboxControl | None = None
        self.hub: Hub | None = None
        self.platforms: Platforms | None = None
        self.calibrations = 0
        self._tasks: list[asyncio.Task[None]] = []
        self.workers: list[asyncio.subprocess.Process] = []

    async def start(self) -> None:
        """Sandbox, shops, hub, bindings, webhooks; the SKU received and listed."""
        await self.sandbox.start()
        self.control = control = SandboxControl(self.sandbox.url)
        for platform, budget in sale_budgets(
            shipped=self.config.shipped_budgets
        ).items():
            await control.set_budget(platform, budget)
        shops = []
        for platform in PLATFORMS:
            shop_id = SHOPS[platform]
            creds = await control.create_shop(platform, shop_id)
            listings = []
            for hub_sku, listed in ((SKU, LISTED), (WARM_SKU, WARM_LISTED)):
                product_id, sku_id = listed[platform]
                await control.set_sku(
                    platform,
                    shop_id,
                    sku_id,
                    product_id=product_id,
                    stock=0,
                    price_fen=990,
                )
                listings.append(
                    Listing(
                        hub_sku=hub_sku,
                        platform_sku_id=sku_id,
                        product_id=product_id,
                        rule=RULES[platform],
                    )
                )
            shops.append(
                ShopConfig(
                    platform=platform,
                    shop_id=shop_id,
                    channel_account=ACCOUNT,
                    credentials=creds,
                    listings=tuple(listings),
                )
            )
        registry = ConnectorsConfig(
            base_urls=dict.fromkeys(PLATFORMS, self.sandbox.url), shops=tuple(shops)
        )
        workers = self.config.workers
        self.hub = hub = bootstrap(
            database_url=self.database_url,
            nats_url=self.nats_url,
            policy_book=book_with_douyin_orders(),
            run_relay=not workers,
            projections=[] if workers else None,
        )
        await hub.start()
        if workers:
            await self._start_workers()
        rng = random.Random(self.config.seed)
        connectors = Connectors(
            registry,
            policies=self.profile,
            client_options={"timeout_s": CLIENT_TIMEOUT_S, "jitter": rng.random},
        )
        intake = OrderIntake(hub, connectors)
        outbound = OutboundDispatcher(
            hub,
            connectors,
            policies=self.profile,
            jitter=rng.random,
            ledger_store=LedgerStore(self.database_url),
        )
        scheduler = SyncScheduler(
            intake, outbound, clock=utc_now, policies=self.profile
        )
        self.platforms = platforms = Platforms(
            connectors=connectors,
            intake=intake,
            outbound=outbound,
            scheduler=scheduler,
            policies=self.profile,
        )
        for platform in PLATFORMS:
            await activate(hub, connectors, control, platform)
        await outbound.start()
        platforms.http = await HttpServer(
            create_app(intake, policies=self.profile, stats=platforms.stats)
        ).start()
        await control.set_webhooks(
            {p: f"{platforms.http.url}/webhooks/{p}" for p in PLATFORMS}
        )
        # The fallback order polls, as `hub serve` ticks them (real clock).
        self._tasks.append(asyncio.create_task(scheduler.run(), name="sync"))
        await hub.execute(
            "stock.receive", ReceiveStock(sku=SKU, quantity=self.config.units)
        )
        await hub.execute(
            "stock.receive", ReceiveStock(sku=WARM_SKU, quantity=WARM_UNITS)
        )
        if not self.config.event_driven:
            await outbound.calibrate()
        await self.settle()
        await self.warm_up()
        await self.workers_at_work()
        freeze_heap()  # as `hub serve` does once started

    async def warm_up(self) -> None:
        """A few orders of the warm-up SKU on every platform, settled."""
        assert self.control is not None
        for platform in PLATFORMS:
            for _ in range(WARM_ORDERS_PER_PLATFORM):
                try:
                    placed = await self.control.create_order(
                        platform,
                        SHOPS[platform],
                        [{"sku_id": WARM_LISTED[platform][1], "quantity": 1}],
                    )
                    await self.control.order_action(
                        platform, SHOPS[platform], str(placed["order_id"]), "pay"
                    )
                except SandboxControlError:
                    break  # not listed there (yet): the others warm it
        await self.settle()

    async def _start_workers(self) -> None:
        """``hub relay`` and ``hub project`` (every read model) as children."""
        env = dict(os.environ, HUB_DATABASE_URL=self.database_url)
        if self.nats_url:
            env["HUB_NATS_URL"] = self.nats_url
        verbs = [["project"]] + ([["relay"]] if self.nats_url else [])
        for verb in verbs:
            self.workers.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "hub",
                    *verb,
                    env=env,
                    cwd=ROOT,
                    preexec_fn=parent_death_signal(signal.SIGTERM),
                )
            )

    async def workers_at_work(self, timeout: float = 120.0) -> None:
        """Wait until the worker processes are at work: every read model of
        ``hub project`` has applied the log to its head, and ``hub relay``
        holds its lock (it publishes). Their start (an interpreter and the
        hub's imports: seconds of CPU on a small machine) is then over before
        the sale, so it stays out of the sale's CPU figures."""
        if not self.config.workers:
            return
        names = [projection.name for projection in default_projections()]
        await self._until_row(
            "SELECT 1 FROM projection_tracking WHERE name = ANY(%s)"
            " AND position >= %s HAVING count(*) = %s",
            (names, await self.head(), len(names)),
            timeout,
        )
        if not self.nats_url:
            return
        key = relay_lock_key() & 0xFFFF_FFFF_FFFF_FFFF
        await self._until_row(
            "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database"
            " WHERE datname = current_database())"
            " AND classid::bigint = %s AND objid::bigint = %s",
            (key >> 32, key & 0xFFFF_FFFF),
            timeout,
        )

    async def projected(self, name: str, position: int, timeout: float = 60) -> None:
        """Wait until read model ``name`` has applied the log to ``position``."""
        if not self.config.workers:
            assert self.hub is not None
            await self.hub.projection(name).wait_for(position, timeout)
            return
        await self._until_row(
            "SELECT 1 FROM projection_tracking WHERE name = %s AND position >= %s",
            (name, position),
            timeout,
        )

    async def _until_row(
        self, query: str, params: tuple[object, ...], timeout: float
    ) -> None:
        """Poll ``query`` until it returns a row (within ``timeout`` s)."""
        async with (
            await psycopg.AsyncConnection.connect(
                self.database_url, autocommit=True
            ) as conn,
            asyncio.timeout(timeout),
        ):
            while await (await conn.execute(query, params)).fetchone() is None:
                await asyncio.sleep(0.01)  # polling under the deadline above

    async def stop(self) -> None:
        """Stop everything started here."""
        for worker in self.workers:
            if worker.returncode is None:
                worker.send_signal(signal.SIGTERM)
                try:
                    async with asyncio.timeout(15):
                        await worker.wait()
                except TimeoutError:
                    worker.kill()
                    await worker.wait()
        self.workers.clear()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.platforms is not None:
            await self.platforms.stop()
        if self.hub is not None:
            await self.hub.stop()
        if self.control is not None:
            await self.control.aclose()
        await self.sandbox.stop()

    def hub_cpu_s(self) -> dict[str, float]:
        """CPU seconds of the hub's side so far, by part: this process
        (``hub``), the workers, and each server this bench started
        (:func:`hub_side_cpu_s`)."""
        parts = {
            "hub": hub_side_cpu_s((os.getpid(),), ()),
            "workers": hub_side_cpu_s(
                (), tuple(w.pid for w in self.workers if w.returncode is None)
            ),
        }
        for name, pid in self.config.server_pids.items():
            parts[name] = hub_side_cpu_s((), (pid,))
        return parts

    async def head(self) -> int:
        """The log's head position."""
        async with await psycopg.AsyncConnection.connect(self.database_url) as conn:
            return await log_head(conn)

    async def settle(self, timeout: float = 120.0) -> None:
        """Every order event moved stock, every stock event requested its
        pushes, and every push has an outcome."""
        assert self.hub is not None and self.platforms is not None
        outbound = self.platforms.outbound
        async with asyncio.timeout(timeout):
            for _ in range(3):
                head = await self.head()
                await self.hub.process("order_stock").wait_for(head, timeout)
                await outbound.runner.wait_for(head, timeout)
                await outbound.drain(timeout)

    def start_polling_sync(self) -> None:
        """The baseline's timer: re-send every listing every sync period."""
        assert self.platforms is not None
        outbound = self.platforms.outbound

        async def tick() -> None:
            while True:
                await asyncio.sleep(self.config.sync_period_s)  # the period itself
                await outbound.calibrate()
                self.calibrations += 1

        self._tasks.append(asyncio.create_task(tick(), name="polling sync"))

    async def start_crowd(self) -> None:
        """Buyers on every platform, inside the sandbox, paced to the
        aggregate order rate (``connectors.sandbox.crowd``)."""
        assert self.control is not None
        await self.control.start_crowd(
            [
                CrowdShop(
                    platform=p,
                    shop_id=SHOPS[p],
                    sku_id=LISTED[p][1],
                    share=DEMAND[p],
                )
                for p in PLATFORMS
            ],
            self.config.orders_per_s,
            quantities=QUANTITIES,
            seed=self.config.seed,
            buyers_per_platform=self.config.buyers_per_platform,
        )

    async def listed(self) -> dict[str, int]:
        """What each platform lists now (the crowd's answer: one call)."""
        assert self.control is not None
        crowd = await self.control.crowd()
        return {p: int(crowd["by_platform"][p]["listed"]) for p in PLATFORMS}


async def _available(conn: psycopg.AsyncConnection[Any]) -> int | None:
    cur = await conn.execute("SELECT available FROM inventory WHERE sku = %s", (SKU,))
    row = await cur.fetchone()
    return None if row is None else int(row[0])


#: How often the bench looks for the sell-out: its query runs in the hub's
#: process and PostgreSQL, so it is in ``hub_cpu_ms_per_order`` (at 20 ms it
#: was 6-8 % of the hub process's samples); ``converged_s`` and the sale's
#: length are known to this much.
WATCH_EVERY_S = 0.1


async def watch_sell_out(rig: Rig, deadline_s: float) -> float:
    """Return once the hub has nothing left and no platform lists anything (or
    at the deadline): when the sale ended (monotonic)."""
    async with await psycopg.AsyncConnection.connect(
        rig.database_url, autocommit=True
    ) as conn:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(deadline_s):
                while True:
                    if await _available(conn) == 0 and not any(
                        (await rig.listed()).values()
                    ):
                        break
                    await asyncio.sleep(WATCH_EVERY_S)  # polling under the deadline
    return time.monotonic()


async def run_sale(
    config: SaleConfig, database_url: str, nats_url: str | None
) -> SaleResult:
    """Run one sale on a fresh hub and sandbox; measure it."""
    rig = Rig(config, database_url, nats_url)
    try:
        await rig.start()
        assert rig.hub is not None and rig.platforms is not None
        assert rig.control is not None
        for platform in PLATFORMS:
            await rig.control.set_faults(platform, FAULTS)
        logged = await rig.control.health()
        if not config.event_driven:
            rig.start_polling_sync()
        cpu_before = rig.hub_cpu_s()
        head_before = await rig.head()
        sale_started = time.monotonic()
        await rig.start_crowd()
        ended = await watch_sell_out(rig, config.sale_timeout_s)
        sold_out_at = time.time() - (time.monotonic() - ended)
        crowd = await rig.control.stop_crowd()
        if not config.event_driven:
            # Every order's quantity reaches the others at the next sync.
            seen = rig.calibrations
            async with asyncio.timeout(config.sync_period_s * 2 + 60):
                while rig.calibrations <= seen:
                    await asyncio.sleep(0.05)
        await rig.settle()
        cpu_after = rig.hub_cpu_s()
        cpu_s = {part: cpu_after[part] - cpu_before[part] for part in cpu_before}
        pushes = await rig.control.log("pushes", since=logged["pushes"])
        result = await measure(
            rig,
            crowd,
            pushes=pushes,
            requests=await rig.control.log("requests", since=logged["requests"]),
            sale_s=ended - sale_started,
        )
        result.events = await rig.head() - head_before
        result.hub_cpu_s = sum(cpu_s.values())
        result.cpu_by_part = cpu_s
        if pushes and ended - sale_started < config.sale_timeout_s:
            result.converged_s = sold_out_at - max(p["at"] for p in pushes)
        return result
    finally:
        await rig.stop()


# --------------------------------------------------------------------------- measuring


async def platform_orders(rig: Rig) -> tuple[dict[tuple[str, str], int], int]:
    """Units of every order the platforms accepted (cancelled ones excluded), by
    (platform, order id), and how many listings went below zero."""
    assert rig.control is not None
    accepted: dict[tuple[str, str], int] = {}
    negative = 0
    for platform in PLATFORMS:
        shop = await rig.control.shop(platform, SHOPS[platform])
        for order_id, order in shop["orders"].items():
            units = sum(
                line["quantity"]
                for line in order["lines"]
                if line["sku_id"] == LISTED[platform][1]
            )
            if order["status"] != "cancelled" and units:
                accepted[(platform, str(order_id))] = units
        negative += sum(1 for s in shop["skus"].values() if s["stock"] < 0)
    return accepted, negative


async def sync_times(
    rig: Rig, requests: list[dict[str, Any]]
) -> dict[str, list[tuple[int, float]]]:
    """Per platform: (stock version, time) of every moment the platform was
    brought up to a version: a stock write that takes the listing to the
    allocation of that version, applied (sandbox log, on arrival; the version is
    the request id's ``@v<version>``), or the hub finding the listing already
    there with nothing on its way
    (:attr:`hub.service.outbound.OutboundDispatcher.syncs`,
    hub-side ``time.time()``)."""
    assert rig.platforms is not None
    syncs: dict[str, list[tuple[int, float]]] = {p: [] for p in PLATFORMS}
    for record in requests:
        request_id = record.get("request_id") or ""
        version = VERSION_IN_REQUEST_ID.search(request_id)
        ours = request_id.startswith(LISTING_PREFIX.get(record["platform"], "?"))
        if ours and record.get("result") == "ok" and version:
            syncs[record["platform"]].append((int(version[1]), record["at"]))
    for sync in rig.platforms.outbound.syncs:
        if sync.sku == SKU and sync.platform in syncs:
            syncs[sync.platform].append((sync.version, sync.at))
    return syncs


def first_pushes(pushes: list[dict[str, Any]]) -> dict[str, float]:
    """When the sandbox sent each order's *created* push, by order reference
    (``platform:order_id``)."""
    sent: dict[str, float] = {}
    for record in pushes:
        if record.get("event") == CREATED_PUSH.get(record["platform"]):
            sent.setdefault(f"{record['platform']}:{record['order_id']}", record["at"])
    return sent


def pair_latencies(
    pushes: list[dict[str, Any]],
    commits: Mapping[str, StockCommitted],
    syncs: Mapping[str, list[tuple[int, float]]],
) -> tuple[list[tuple[float, str, str]], int]:
    """Latency (ms) of every (committed order, other platform) pair, with the
    order's reference and the other platform, and the number of pairs never
    brought up to date."""
    pairs: list[tuple[float, str, str]] = []
    unmeasured = 0
    for order_ref, sent in first_pushes(pushes).items():
        commit = commits.get(order_ref)
        if commit is None:
            continue  # refused by the hub: it changed no stock
        platform = order_ref.split(":", 1)[0]
        for other in PLATFORMS:
            if other == platform:
                continue
            reached = [
                at
                for version, at in syncs[other]
                if version >= commit.originator_version and at >= sent
            ]
            if reached:
                pairs.append(((min(reached) - sent) * 1000, order_ref, other))
            else:
                unmeasured += 1
    return pairs, unmeasured


async def stage_times(
    rig: Rig, pushes: list[dict[str, Any]], commits: Mapping[str, StockCommitted]
) -> dict[str, tuple[float, float]]:
    """Where the time of each committed order went before the stock pushes, by
    order reference: ms from its created push sent to the hub's order placed
    (``push_to_order``), and from there to its stock committed
    (``order_to_stock``); event times are the hub's decisions,
    ``occurred_at``."""
    assert rig.hub is not None
    app = rig.hub.app
    sent = first_pushes(pushes)
    stages: dict[str, tuple[float, float]] = {}
    for order_ref, commit in commits.items():
        platform, platform_order_id = order_ref.split(":", 1)
        history = await asyncio.to_thread(
            app.load_events, order_domain.order_id(platform, platform_order_id)
        )
        placed = next(
            (e for e in history if isinstance(e, order_domain.OrderPlaced)), None
        )
        if placed is None or order_ref not in sent:
            continue
        at = placed.occurred_at.timestamp()
        stages[order_ref] = (
            (at - sent[order_ref]) * 1000,
            (commit.occurred_at.timestamp() - at) * 1000,
        )
    return stages


#: How many of the slowest pairs the report explains.
SLOWEST_PAIRS = 5


def slowest_pairs(
    pairs: list[tuple[float, str, str]], stages: Mapping[str, tuple[float, float]]
) -> list[str]:
    """The :data:`SLOWEST_PAIRS` slowest pairs, each with its stages: push to
    order placed, order to stock committed, and the rest (the stock write,
    from the commit to its arrival at the other platform)."""
    described = []
    for latency, order_ref, other in sorted(pairs, reverse=True)[:SLOWEST_PAIRS]:
        to_order, to_stock = stages.get(order_ref, (float("nan"), float("nan")))
        described.append(
            f"{order_ref} → {other} {latency:.0f} ms (push → order {to_order:.0f},"
            f" → stock {to_stock:.0f}, → write {latency - to_order - to_stock:.0f})"
        )
    return described


async def measure(
    rig: Rig,
    crowd: Mapping[str, Any],
    *,
    pushes: list[dict[str, Any]],
    requests: list[dict[str, Any]],
    sale_s: float,
) -> SaleResult:
    """Compare the platforms' order records with the hub; time propagation."""
    assert rig.hub is not None
    hub, config = rig.hub, rig.config
    accepted, negative = await platform_orders(rig)
    by_platform: dict[str, int] = {}
    for (platform, _), units in accepted.items():
        by_platform[platform] = by_platform.get(platform, 0) + units
    platform_units = sum(accepted.values())

    # The hub's side: the stock item's history and the orders it stored.
    events = await asyncio.to_thread(hub.app.load_events, stock_item_id(SKU))
    commits = {e.order_ref: e for e in events if isinstance(e, StockCommitted)}
    item = await hub.committer.load(STOCK_RULES, stock_item_id(SKU))
    head = await rig.head()
    await rig.projected("orders", head)
    await rig.projected("stock_pushes", head)
    async with await psycopg.AsyncConnection.connect(rig.database_url) as conn:
        cur = await conn.execute("SELECT platform, platform_order_id FROM orders")
        in_hub = {(str(p), str(o)) for p, o in await cur.fetchall()}
        cur = await conn.execute(
            "SELECT count(*) FROM stock_pushes WHERE status = 'dead_lettered'"
        )
        row = await cur.fetchone()
    refused_units = sum(
        units
        for (platform, order_id), units in accepted.items()
        if f"{platform}:{order_id}" not in commits and (platform, order_id) in in_hub
    )
    pairs, unmeasured = pair_latencies(pushes, commits, await sync_times(rig, requests))
    by_order = await stage_times(rig, pushes, commits)
    stored = sum(1 for key in accepted if key in in_hub)
    commit_times = sorted(c.occurred_at.timestamp() for c in commits.values())
    span = commit_times[-1] - commit_times[0] if len(commit_times) > 1 else 0.0
    return SaleResult(
        event_driven=config.event_driven,
        units=config.units,
        sold=item.committed,
        platform_units=platform_units,
        oversold=max(0, platform_units - config.units),
        refused_units=refused_units,
        negative_listings=negative,
        orders=len(accepted),
        orders_missing_in_hub=sum(1 for key in accepted if key not in in_hub),
        refused_by_platform=int(crowd["refused"]),
        buyer_errors=int(crowd["errors"]),
        dead_letters=int(row[0]) if row else 0,
        unsold=max(item.available, 0),
        sale_s=sale_s,
        changes_per_s=(len(commit_times) - 1) / span if span > 0 else 0.0,
        orders_per_s=len(accepted) / sale_s if sale_s > 0 else 0.0,
        latencies_ms=[latency for latency, _, _ in pairs],
        unmeasured_pairs=unmeasured,
        by_platform=by_platform,
        stages_ms={
            "push_to_order": [stage[0] for stage in by_order.values()],
            "order_to_stock": [stage[1] for stage in by_order.values()],
        },
        slowest=slowest_pairs(pairs, by_order),
        orders_stored=stored,
        api_calls=len(requests),
        budget_refusals=sum(1 for r in requests if r.get("result") == OVER_BUDGET),
        calls_by_api=dict(
            Counter(f"{r['platform']} {r['api']}" for r in requests).most_common()
        ),
        calls_by_result=dict(Counter(str(r.get("result")) for r in requests)),
    )


def report(result: SaleResult, label: str) -> None:
    """Print one sale's figures."""
    p50, p99 = result.percentile(50), result.percentile(99)
    print(
        f"[{label}] sold {result.sold} of {result.units} units; platforms sold "
        f"{result.platform_units} in {result.orders} orders "
        f"({', '.join(f'{p} {n}' for p, n in result.by_platform.items())}); "
        f"oversold {result.oversold} (hub refused {result.refused_units} units; "
        f"negative listings {result.negative_listings}); unsold {result.unsold}"
    )
    print(
        f"[{label}] sale {result.sale_s:.1f} s, {result.changes_per_s:.0f} stock "
        f"changes/s, {result.orders_per_s:.0f} orders/s; refused by platforms "
        f"{result.refused_by_platform}; buyer errors {result.buyer_errors}; "
        f"orders missing in hub {result.orders_missing_in_hub}; dead letters "
        f"{result.dead_letters}"
    )
    for stage, values in result.stages_ms.items():
        if values:
            ordered = sorted(values)
            print(
                f"[{label}] stage {stage}: p50 "
                f"{ordered[len(ordered) // 2]:.1f} ms, p99 "
                f"{ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]:.1f} ms"
            )
    print(
        f"[{label}] hub-side CPU {result.hub_cpu_s:.2f} s for "
        f"{result.orders_stored} orders stored "
        f"({_rounded(result.hub_cpu_ms_per_order, 2)} ms/order); "
        f"{result.api_calls} platform calls "
        f"({_rounded(result.api_calls_per_order, 2)}/order), "
        f"{result.budget_refusals} refused for the budget; {result.events} "
        "events stored; converged "
        f"{_rounded(result.converged_s, 2)} s after the last push"
    )
    print(
        f"[{label}] calls by API: "
        + ", ".join(f"{api} {n}" for api, n in result.calls_by_api.items())
        + "; by result: "
        + ", ".join(f"{r} {n}" for r, n in result.calls_by_result.items())
    )
    if result.orders_stored:
        print(
            f"[{label}] CPU ms/order by process: "
            + ", ".join(
                f"{part} {seconds * 1000 / result.orders_stored:.2f}"
                for part, seconds in result.cpu_by_part.items()
            )
        )
    if p50 is not None and p99 is not None:
        print(
            f"[{label}] propagation order push → stock push at every other "
            f"platform: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max "
            f"{max(result.latencies_ms):.1f} ms over {len(result.latencies_ms)} "
            f"pairs ({result.unmeasured_pairs} unmeasured)"
        )
        print(f"[{label}] slowest pairs: " + "; ".join(result.slowest))


# --------------------------------------------------------------------------- main


def _rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sale, < 2 min")
    parser.add_argument("--units", type=int, default=None, help="units on hand")
    parser.add_argument(
        "--rate", type=float, default=None, help="target orders (stock changes)/s"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--shipped-retry", action="store_true", help="keep the shipped backoff"
    )
    parser.add_argument(
        "--shipped-budgets",
        action="store_true",
        help="the shipped policies' API budgets (default: 1,000 calls/s a shop)",
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the 15 s polling run"
    )
    parser.add_argument(
        "--single-process",
        action="store_true",
        help="run the relay and read models in the hub's process (plain hub serve)",
    )
    parser.add_argument(
        "--sandbox-in-process",
        action="store_true",
        help="run the sandbox in a thread here, not as a child process",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    units = args.units or (200 if args.quick else 1000)
    default_rate = 100.0 if args.shipped_budgets else 500.0
    rate = args.rate or (40.0 if args.quick else default_rate)

    # The servers' data (each run's databases and streams) goes with them.
    top = tempfile.TemporaryDirectory(prefix="hub-flash-", ignore_cleanup_errors=True)
    home = Path(top.name) / "home"
    servers = start_servers(
        home,
        database_url=os.environ.get("HUB_DATABASE_URL") or None,
        nats_url=os.environ.get("HUB_NATS_URL") or None,
        pg_port=0,
        nats_port=0,
    )
    try:
        print(
            f"flash sale: {units} units of {SKU} on {', '.join(PLATFORMS)}; target "
            f"{rate:.0f} orders/s (1-3 units each), demand "
            + ", ".join(f"{p} {w:.0%}" for p, w in DEMAND.items())
        )
        print(
            "allocation rules: none per channel (list all); allocate() shares "
            "available among the four, so their listings add up to at most it"
        )
        print(
            f"faults on every platform: {FAULTS.error_5xx_rate:.0%} 5xx, "
            f"{FAULTS.rate_limit_rate:.0%} rate limit, {FAULTS.timeout_rate:.0%} "
            f"timeout (held {FAULTS.timeout_delay_s}s, client timeout "
            f"{CLIENT_TIMEOUT_S}s), {FAULTS.token_expiry_rate:.0%} token expiry"
        )
        print("policy profile (event-driven run):")
        budgets = sale_budgets(shipped=args.shipped_budgets)
        print(
            "API budgets the sandbox enforces per shop: "
            + ", ".join(
                f"{p} {b.rate_per_s:g}/s burst {b.burst}" for p, b in budgets.items()
            )
        )
        for line in describe_profile(
            sale_policies(
                event_driven=True,
                shipped_retry=args.shipped_retry,
                shipped_budgets=args.shipped_budgets,
            )
        ):
            print(line)
        config = SaleConfig(
            units=units,
            orders_per_s=rate,
            event_driven=True,
            seed=args.seed,
            shipped_retry=args.shipped_retry,
            shipped_budgets=args.shipped_budgets,
            sandbox_in_process=args.sandbox_in_process,
            workers=not args.single_process,
            server_pids={
                "postgres" if isinstance(server, EmbeddedPostgres) else "nats": (
                    server.process.pid
                )
                for server in servers.started
                if server.process is not None
            },
        )
        hub_run = run_loop(
            run_sale(
                config, fresh_database(servers.database_url, "flash"), servers.nats_url
            )
        )
        report(hub_run, "hub, event-driven")
        baseline: SaleResult | None = None
        if not args.no_baseline:
            baseline = run_loop(
                run_sale(
                    dataclasses.replace(config, event_driven=False),
                    fresh_database(servers.database_url, "flash"),
                    servers.nats_url,
                )
            )
            report(baseline, f"baseline, {BASELINE_SYNC_S:.0f} s polling sync")
        p99 = hub_run.percentile(99)
        base_p99 = baseline.percentile(99) if baseline else None
        result = {
            "sold": hub_run.sold,
            "oversold": hub_run.oversold,
            "propagation_p50_ms": _rounded(hub_run.percentile(50)),
            "propagation_p99_ms": _rounded(p99),
            "baseline_p99_ms": _rounded(base_p99),
            "baseline_p50_ms": _rounded(baseline.percentile(50) if baseline else None),
            "baseline_oversold": baseline.oversold if baseline else None,
            "baseline_sold": baseline.sold if baseline else None,
            "ratio_p99_vs_baseline": (
                round(p99 / base_p99, 4) if p99 and base_p99 else None
            ),
            "changes_per_s": round(hub_run.changes_per_s, 1),
            "target_orders_per_s": rate,
            "orders": hub_run.orders,
            "platform_units": hub_run.platform_units,
            "refused_units": hub_run.refused_units,
            "orders_missing_in_hub": hub_run.orders_missing_in_hub,
            "dead_letters": hub_run.dead_letters,
            "pairs": len(hub_run.latencies_ms),
            "unmeasured_pairs": hub_run.unmeasured_pairs,
            "units": units,
            "quick": args.quick,
            "shipped_budgets": args.shipped_budgets,
            "hub_cpu_ms_per_order": _rounded(hub_run.hub_cpu_ms_per_order, 3),
            "api_calls_per_order": _rounded(hub_run.api_calls_per_order, 3),
            "budget_refusals": hub_run.budget_refusals,
            "orders_stored": hub_run.orders_stored,
            "events_per_order": (
                round(hub_run.events / hub_run.orders_stored, 2)
                if hub_run.orders_stored
                else None
            ),
            "converged_s": _rounded(hub_run.converged_s, 2),
            "servers_in_cpu": bool(config.server_pids),
            "loadavg_1m": os.getloadavg()[0],
        }
        print(json.dumps(result))
    finally:
        servers.stop()
        top.cleanup()


if __name__ == "__main__":
    main()
