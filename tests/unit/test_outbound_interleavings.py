"""The outbound dispatcher never lets a SKU's listings show more than is
available, whatever order its workers run in (hub/service/outbound.py).

No servers: the dispatcher runs on a committer that decides commands with the
real domain rules in memory, fake platforms that apply writes by request id,
and a ledger store whose saves yield to the event loop several times, as a
PostgreSQL round trip does. Where two workers interleave is decided by those
scheduling points alone, so each story runs the same way every time.

The SKU is listed on four platforms. Douyin and WeChat list all of it; Youzan
and Kuaishou list nothing once 10 or fewer units are left; Kuaishou is
calibrated on its schedule, not pushed on every change. With 12 units each
shows 3. One unit sold on Douyin and one on WeChat leave 10: Youzan and
Kuaishou should go to 0, Douyin and WeChat up to 5 each. While Youzan and
Kuaishou still show 3, only 2 units are free for the two raises together.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest

from connectors.common import PushResult
from domain import push as stock_push
from domain.allocation import LIST_ALL, AllocationRule
from domain.events import Context, Event
from domain.listing_ledger import ListingLedger
from domain.stock import (
    AdjustStock,
    CommitStock,
    ReceiveStock,
    StockItem,
    stock_item_id,
)
from hub.infra.shops import Listing, ShopConfig
from hub.service.commands import BINDING_RULES, STOCK_RULES
from hub.service.commit import Outcome
from hub.service.outbound import WRITE_SHARE, OutboundDispatcher
from tests.conftest import wait_until

SKU = "SKU-1"
SHOPS = {
    "douyin_shop": "d1",
    "wechat_shop": "w1",
    "youzan": "y1",
    "kuaishou_shop": "k1",
}
RULES = {
    "douyin_shop": LIST_ALL,
    "wechat_shop": LIST_ALL,
    "youzan": AllocationRule(zero_out_at_or_below=10),
    "kuaishou_shop": AllocationRule(zero_out_at_or_below=10),
}
#: Scheduling points in one ledger save (a PostgreSQL round trip has several).
SAVE_YIELDS = 5


def _policy(pushed_on_change: bool) -> Any:
    """The parts of a platform's sync policy the dispatcher reads: whether
    every stock change is pushed, and the backoff between rounds (none)."""
    return SimpleNamespace(
        stock=SimpleNamespace(
            mode="realtime" if pushed_on_change else "scheduled_calibration",
            pushed_on_change=pushed_on_change,
        ),
        retry=SimpleNamespace(
            base_delay_s=0.0,
            max_delay_s=0.0,
            multiplier=2.0,
            rate_limited_min_delay_s=0.0,
        ),
    )


#: Kuaishou is calibrated on its schedule; the others are pushed every change.
POLICIES = {platform: _policy(platform != "kuaishou_shop") for platform in SHOPS}


class FakeCommitter:
    """Decides commands with the real rules, in memory, at once."""

    def __init__(self) -> None:
        self.states: dict[uuid.UUID, Any] = {}
        self._versions = itertools.count(1)

    def decide(self, rules: Any, command: Any) -> Outcome:
        aggregate_id = rules.aggregate_id(command)
        state = self.states.get(aggregate_id)
        events: list[Event] = rules.decide(
            state, command, Context(now=datetime.now(UTC))
        )
        for event in events:
            state = rules.mutate(event, state)
        self.states[aggregate_id] = state
        return Outcome(
            aggregate_id=aggregate_id,
            version=0 if state is None else state.version,
            events=tuple(events),
            positions=tuple(next(self._versions) for _ in events),
        )

    async def execute(self, rules: Any, command: Any, **_: Any) -> Outcome:
        return self.decide(rules, command)

    def submit(self, rules: Any, command: Any, **_: Any) -> asyncio.Future[Outcome]:
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        future.set_result(self.decide(rules, command))
        return future

    async def latest(self, rules: Any, aggregate_id: uuid.UUID) -> Any:
        if rules is BINDING_RULES:
            return SimpleNamespace(status="active")
        return self.states.get(aggregate_id)

    load = latest

    def listen(self, listener: Any) -> None:
        pass

    def unlisten(self, listener: Any) -> None:
        pass

    @property
    def stock(self) -> StockItem:
        item: StockItem = self.states[stock_item_id(SKU)]
        return item


@dataclass
class FakePlatform:
    """One shop's number for the SKU; applies each request id once.

    ``hold_reads`` / ``hold_writes``: while set, a read or write waits for the
    test to let it go (a slow platform)."""

    name: str
    shows: int = 0
    applied: dict[str, int] = field(default_factory=dict)
    hold_reads: asyncio.Event | None = None
    hold_writes: asyncio.Event | None = None
    reading: asyncio.Event = field(default_factory=asyncio.Event)
    writing: asyncio.Event = field(default_factory=asyncio.Event)
    on_write: Callable[[], None] = lambda: None
    #: Called after a read has taken what the platform shows (a buyer may act
    #: before the hub's next call).
    on_read: Callable[[], None] = lambda: None
    #: While set, the shop's API budget is spent: a call waits for it.
    budget: asyncio.Event | None = None
    waiting_for_budget: asyncio.Event = field(default_factory=asyncio.Event)

    async def budget_ready(self, shop_id: str) -> None:
        if self.budget is not None:
            self.waiting_for_budget.set()
            await self.budget.wait()

    async def fetch_stock(self, shop_id: str, sku_id: str, **_: Any) -> int:
        self.reading.set()
        if self.hold_reads is not None:
            await self.hold_reads.wait()
        shows = self.shows
        self.on_read()
        return shows

    async def push_stock(
        self, shop_id: str, sku_id: str, *, delta: int, request_id: str, **_: Any
    ) -> PushResult:
        await self.budget_ready(shop_id)  # the client takes a call of the budget
        self.writing.set()
        if self.hold_writes is not None:
            await self.hold_writes.wait()
        if request_id not in self.applied:
            if self.shows + delta < 0:
                return self._result(request_id, "rejected")
            self.shows += delta
            self.applied[request_id] = delta
            self.on_write()
        return self._result(request_id, "sent")

    def _result(self, request_id: str, outcome: str) -> PushResult:
        return PushResult(
            platform=self.name,
            shop_id=SHOPS[self.name],
            request_id=request_id,
            outcome=outcome,  # type: ignore[arg-type]
            attempts=1,
        )


class FakeConnectors:
    """The four shops, each with its fake platform as its client."""

    def __init__(self, platforms: dict[str, FakePlatform]) -> None:
        self.platforms = platforms
        self._shops = [
            ShopConfig(
                platform=platform,
                shop_id=shop_id,
                channel_account="acct-1",
                listings=(
                    Listing(
                        hub_sku=SKU,
                        platform_sku_id=f"{platform}-sku",
                        product_id=f"{platform}-product",
                        rule=RULES[platform],
                    ),
                ),
            )
            for platform, shop_id in SHOPS.items()
        ]

    def shops(self, platform: str | None = None) -> list[ShopConfig]:
        return [s for s in self._shops if platform in (None, s.platform)]

    def shop(self, platform: str, shop_id: str) -> ShopConfig:
        return next(
            s for s in self._shops if (s.platform, s.shop_id) == (platform, shop_id)
        )

    def listings_of(self, sku: str) -> list[tuple[ShopConfig, Listing]]:
        return [(s, ls) for s in self._shops for ls in s.listings if ls.hub_sku == sku]

    async def ready_client(self, shop: ShopConfig) -> FakePlatform:
        return self.platforms[shop.platform]


class YieldingLedgerStore:
    """Keeps ledgers in memory; each save yields to the loop as a database
    round trip does (``yields`` times; 0: never, so workers cannot
    interleave at a save). ``fail_next_raise``: the next save of a raise on its
    way fails (the database went away)."""

    def __init__(self) -> None:
        self.saved: dict[tuple[str, str, str], ListingLedger] = {}
        self.yields = SAVE_YIELDS
        self.fail_next_raise = False
        self.failed: list[tuple[str, str, str]] = []

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def load(self) -> dict[tuple[str, str, str], ListingLedger]:
        return dict(self.saved)

    async def save(self, key: tuple[str, str, str], ledger: ListingLedger) -> None:
        for _ in range(self.yields):
            await asyncio.sleep(0)  # a scheduling point, not a wait
        raising = ledger.in_flight is not None and ledger.in_flight.delta > 0
        if raising and self.fail_next_raise:
            self.fail_next_raise = False
            self.failed.append(key)
            raise psycopg.OperationalError("connection lost")
        self.saved[key] = ledger


@dataclass
class Pace:
    """The dispatcher's clock and sleep: a sleep moves the clock at once,
    unless ``gate`` is set, when it first waits for the test to open it."""

    now: float = 0.0
    gate: asyncio.Event | None = None
    waits: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.gate is not None:
            await self.gate.wait()
        self.now += seconds
        await asyncio.sleep(0)  # a scheduling point, not a wait


@dataclass
class Rig:
    committer: FakeCommitter
    platforms: dict[str, FakePlatform]
    store: YieldingLedgerStore
    outbound: OutboundDispatcher
    #: Every moment the platforms together showed more than was available.
    oversold: list[str]
    pace: Pace

    async def stock(self, command: Any) -> None:
        """Run a stock command and let the dispatcher follow its events."""
        outcome = self.committer.decide(STOCK_RULES, command)
        batch = list(zip(outcome.events, outcome.positions, strict=True))
        await self.outbound.apply_batch(None, batch)  # type: ignore[arg-type]

    async def sell(self, platform: str, units: int, order: str) -> None:
        """A buyer takes ``units`` on ``platform``; its order reaches the hub."""
        self.platforms[platform].shows -= units
        await self.stock(
            CommitStock(sku=SKU, order_ref=order, quantity=units, platform=platform)
        )

    def key(self, platform: str) -> tuple[str, str, str]:
        return (platform, SHOPS[platform], SKU)

    def shows(self) -> dict[str, int]:
        return {name: p.shows for name, p in self.platforms.items()}

    def check(self) -> None:
        total = sum(p.shows for p in self.platforms.values())
        available = self.committer.stock.available
        if total > available:
            self.oversold.append(f"{self.shows()} = {total} > available {available}")


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    committer = FakeCommitter()
    platforms = {name: FakePlatform(name) for name in SHOPS}
    store = YieldingLedgerStore()
    pace = Pace()
    outbound = OutboundDispatcher(
        SimpleNamespace(committer=committer, database_url="postgresql://unused"),  # type: ignore[arg-type]
        FakeConnectors(platforms),  # type: ignore[arg-type]
        policies=POLICIES,
        sleep=pace.sleep,
        jitter=lambda: 0.0,
        ledger_store=store,  # type: ignore[arg-type]
        monotonic=pace.monotonic,
    )
    running = Rig(committer, platforms, store, outbound, [], pace)
    for platform in platforms.values():
        platform.on_write = running.check
    # Given 12 units, each listing shows 3 (Kuaishou by its calibration).
    await running.stock(ReceiveStock(sku=SKU, quantity=12))
    await outbound.calibrate("kuaishou_shop")
    await outbound.drain(timeout=10)
    assert running.shows() == dict.fromkeys(SHOPS, 3)
    yield running
    await outbound.stop()


async def test_two_raises_woken_together_never_take_the_same_units(rig: Rig) -> None:
    # Given Youzan's reduction 3 → 0 is slow, and a sale on Douyin and on WeChat
    # leaves 10 units: both want 5, but only 2 are free while Youzan and
    # Kuaishou show 3 each, so both raises are held back.
    rig.platforms["youzan"].hold_writes = youzan = asyncio.Event()
    await rig.sell("douyin_shop", 1, "o-1")
    await rig.sell("wechat_shop", 1, "o-2")
    douyin, wechat = rig.key("douyin_shop"), rig.key("wechat_shop")
    await wait_until(lambda: rig.outbound.held_back() == sorted([douyin, wechat]))
    assert rig.platforms["youzan"].writing.is_set()

    # When Youzan's reduction lands, both raises are woken at once and run side
    # by side (each worker's ledger save yields to the other).
    youzan.set()
    await rig.outbound.drain(timeout=10)

    # Then they never took the same units: at no moment did the platforms show
    # more than 10 together. One raise went ahead, the other waits for Kuaishou.
    assert rig.oversold == []
    shows = rig.shows()
    assert shows["youzan"] == 0 and shows["kuaishou_shop"] == 3
    assert sorted([shows["douyin_shop"], shows["wechat_shop"]]) == [2, 5]
    assert len(rig.outbound.held_back()) == 1


async def test_a_listing_being_calibrated_counts_at_the_most_it_may_show(
    rig: Rig,
) -> None:
    # Given 10 units after a sale on Douyin and on WeChat: Youzan went to 0,
    # Douyin or WeChat rose to 5, the other waits at 2 for Kuaishou's 3 (not
    # pushed on change). (Saves do not yield yet: the raises run one by one.)
    rig.store.yields = 0
    await rig.sell("douyin_shop", 1, "o-1")
    await rig.sell("wechat_shop", 1, "o-2")
    await rig.outbound.drain(timeout=10)
    rig.store.yields = SAVE_YIELDS
    assert sorted(rig.shows().values()) == [0, 2, 3, 5]
    held = rig.outbound.held_back()
    assert len(held) == 1 and held[0][0] in ("douyin_shop", "wechat_shop")
    waiting = held[0][0]

    # When Kuaishou's calibration reads the platform (slowly), and meanwhile
    # the held raise is woken (the sync tick's safety net does this),
    kuaishou = rig.platforms["kuaishou_shop"]
    kuaishou.hold_reads = read = asyncio.Event()
    kuaishou.reading.clear()
    await rig.outbound.calibrate("kuaishou_shop")
    await wait_until(kuaishou.reading.is_set)
    writes = len(rig.platforms[waiting].applied)
    rig.outbound.wake_held()
    await wait_until(
        lambda: (
            rig.outbound.held_back() == held
            or len(rig.platforms[waiting].applied) > writes
        )
    )
    # then the raise still counts Kuaishou at 3 and waits,
    assert rig.oversold == []
    read.set()
    await rig.outbound.drain(timeout=10)
    # and takes Kuaishou's units only once Kuaishou is down to 0.
    assert rig.oversold == []
    assert rig.shows() == {
        "douyin_shop": 5,
        "wechat_shop": 5,
        "youzan": 0,
        "kuaishou_shop": 0,
    }
    assert rig.outbound.held_back() == []


async def test_a_raise_whose_ledger_cannot_be_saved_frees_its_room_at_once(
    rig: Rig,
) -> None:
    # Given Youzan went to 0 while Douyin and WeChat wait for room, and the
    # database fails the save of the first raise claimed when they are woken.
    rig.platforms["youzan"].hold_writes = youzan = asyncio.Event()
    await rig.sell("douyin_shop", 1, "o-1")
    await rig.sell("wechat_shop", 1, "o-2")
    await wait_until(lambda: len(rig.outbound.held_back()) == 2)
    rig.store.fail_next_raise = True
    youzan.set()
    await rig.outbound.drain(timeout=10)

    # Then that raise is not sent; the room it had claimed went at once to the
    # raise it held back, and the failed one waits for Kuaishou's units.
    (failed,) = rig.store.failed
    other = next(
        k for k in (rig.key("douyin_shop"), rig.key("wechat_shop")) if k != failed
    )
    assert rig.platforms[other[0]].shows == 5
    assert rig.platforms[failed[0]].shows == 2
    assert rig.outbound.held_back() == [failed]
    assert rig.oversold == []
    assert rig.store.saved[failed].in_flight is None


async def test_changes_while_the_budget_is_spent_fold_into_one_write_of_the_newest(
    rig: Rig,
) -> None:
    # Given WeChat's API budget is spent for now.
    wechat = rig.platforms["wechat_shop"]
    wechat.budget = budget = asyncio.Event()
    before = len(wechat.applied)

    # When 100 changes come one after another while the listing waits for it,
    for _ in range(100):
        await rig.stock(ReceiveStock(sku=SKU, quantity=1))
    await wait_until(wechat.waiting_for_budget.is_set)
    budget.set()
    await rig.outbound.drain(timeout=10)

    # then one write follows, planned when the budget allowed it: to the
    # newest version's target (no stale write first).
    writes = list(wechat.applied)[before:]
    version = rig.committer.stock.version
    assert len(writes) == 1, writes
    assert writes[0].endswith(f"@v{version}")
    assert rig.oversold == []
    push = rig.committer.states[stock_push.stock_push_id("wechat_shop", "w1", SKU)]
    assert wechat.shows == push.sent_quantity


async def test_a_listing_writes_at_its_share_of_the_budget_however_fast_it_changes(
    rig: Rig,
) -> None:
    # Given WeChat's budget is 4 calls a second: a listing writes at most once
    # every 1 / (4 x WRITE_SHARE) seconds.
    policy = _policy(pushed_on_change=True)
    policy.rate_limit = SimpleNamespace(rate_per_s=4.0, burst=8)
    rig.outbound.policies = {**POLICIES, "wechat_shop": policy}
    wechat = rig.platforms["wechat_shop"]
    gap = 1.0 / (4.0 * WRITE_SHARE)

    # When a change (4 more units: one more on each listing) is written, and
    # the next change comes at once,
    before = len(wechat.applied)
    await rig.stock(ReceiveStock(sku=SKU, quantity=4))
    await wait_until(lambda: len(wechat.applied) == before + 1)
    rig.pace.gate = gate = asyncio.Event()
    await rig.stock(ReceiveStock(sku=SKU, quantity=4))
    # then its write waits for the listing's turn, and 50 more changes meanwhile
    await wait_until(lambda: gap in rig.pace.waits)
    for _ in range(50):
        await rig.stock(ReceiveStock(sku=SKU, quantity=4))
    assert len(wechat.applied) == before + 1
    gate.set()
    await rig.outbound.drain(timeout=10)

    # fold into the one write that follows: to the newest version's target.
    writes = list(wechat.applied)[before:]
    assert len(writes) == 2, writes
    assert writes[-1].endswith(f"@v{rig.committer.stock.version}")
    assert rig.oversold == []


async def test_a_sale_between_the_clamps_read_and_write_reads_again_not_a_dead_letter(
    rig: Rig,
) -> None:
    # Given WeChat sold 2 of its 3 units in orders the hub has not read,
    wechat = rig.platforms["wechat_shop"]
    wechat.shows = 1
    # and a buyer takes the last one right after the hub first reads WeChat,
    sold_after_read = []

    def buyer() -> None:
        if not sold_after_read:
            sold_after_read.append(wechat.shows)
            wechat.shows -= 1

    wechat.on_read = buyer

    # when 11 units are written off, so WeChat should list 0 (3 off, refused),
    await rig.stock(AdjustStock(sku=SKU, delta=-11, reason="damaged"))
    await rig.outbound.drain(timeout=10)

    # then the hub read WeChat again after its clamp to 1 was refused, found it
    # at 0, and the push is settled, not dead-lettered.
    assert sold_after_read == [1]
    assert wechat.shows == 0
    push = rig.committer.states[stock_push.stock_push_id("wechat_shop", "w1", SKU)]
    assert push.dead_letters == 0
    # (No oversell check here: units written off are gone at once, while the
    # listings show them until their reductions land.)
