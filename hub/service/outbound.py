"""Stock out to the platforms: the outbound dispatcher.

It follows the log like a projection (same runner, same tracking table, name
``outbound_stock``). For every stock event it takes the SKU's levels after the
event, shares ``available`` among the shops listing the SKU with
:func:`domain.allocation.allocate` over each listing's rule, and asks each
shop's listing for its quantity (``RequestStockPush`` on the listing's
:mod:`domain.push` aggregate). The request is keyed by the stock item version
it was computed from, so replaying the log after a crash requests nothing
twice: the position is written after the requests are durable, and the effect
is idempotent.

Each requested push is then sent by a worker per listing: the platform's
number is read and the difference sent as a delta (the connector clients never
overwrite blindly), with the request id ``<request_id>:<delta>`` on every HTTP
attempt, so a retried write is applied once and a write recomputed after the
platform moved is a new one. A client retries with exponential backoff and
jitter within its token bucket; when a whole round fails, ``StockPushFailed``
is recorded and another round follows after a backoff; after the last round,
``StockPushDeadLettered``. A newer target supersedes a pending older one (the
aggregate records it), so a listing never works through stale numbers.

Only listings of active bindings are pushed, and only on platforms whose
stock policy is real time; platforms calibrated on a schedule (Kuaishou,
twice a day) are pushed by :meth:`OutboundDispatcher.calibrate`.

The arithmetic (each listing's ledger, the plan of a write, the headroom guard
and the invariant it keeps: a SKU's listings together never may show more than
is available) is :mod:`domain.listing_ledger`; this module does the I/O around
it: queues and workers, platform calls, the ledger store, retry rounds and the
events recorded.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import psycopg

from connectors.common import PlatformCallError, PushResult, backoff_delay_s
from domain import listing_ledger
from domain import push as stock_push
from domain.allocation import allocate
from domain.binding import Binding, binding_id
from domain.events import Context, DomainError, Event, registered_events
from domain.listing_ledger import Listed, ListingLedger, PendingWrite, WritePlan
from domain.policy import SyncPolicy
from domain.stock import (
    ReportPlatformStock,
    StockCommitted,
    StockDriftDetected,
    StockItem,
    StockLevels,
    StockReleased,
    stock_item_id,
)
from hub.infra.ledgers import LedgerStore
from hub.infra.runtime import cancel_and_wait
from hub.infra.shops import Connectors, Listing, ShopConfig
from hub.service.commands import BINDING_RULES, STOCK_RULES
from hub.service.commit import log_unawaited
from projections.base import Projection, ProjectionRunner

if TYPE_CHECKING:
    from hub.service.hub import Hub

log = logging.getLogger(__name__)

#: Rounds of calls (each with the client's own retries) before a dead letter.
DEFAULT_MAX_ROUNDS = 3
#: The share of its shop's API budget (the policy's rate limit) one listing's
#: stock writes may take: a listing writes at most every
#: ``1 / (rate_per_s * WRITE_SHARE)`` seconds, and what changed meanwhile
#: goes in its next write. The rest is left for order reads and other listings.
WRITE_SHARE = 0.25
#: Reads and writes a refused reduction's clamp to zero tries (see
#: :meth:`OutboundDispatcher._clamp_to_zero`): a sale between its read and its
#: write makes the write too big again, and the platform refuses it as well.
CLAMP_ATTEMPTS = 3

Sleep = Callable[[float], Awaitable[None]]


class StockPushRules:
    """How the committer runs stock push commands."""

    def aggregate_id(self, command: stock_push.StockPushCommand) -> uuid.UUID:
        """Listings are keyed by platform, shop and hub SKU."""
        return stock_push.stock_push_id(command.platform, command.shop_id, command.sku)

    def decide(
        self,
        state: stock_push.StockPush | None,
        command: stock_push.StockPushCommand,
        ctx: Context,
    ) -> list[Event]:
        """Delegate to :func:`domain.push.decide`."""
        return stock_push.decide(state, command, ctx)

    def mutate(self, event: Event, state: stock_push.StockPush | None) -> Any:
        """Delegate to :func:`domain.push.mutate`."""
        return stock_push.mutate(event, state)


STOCK_PUSH_RULES = StockPushRules()

#: Stock events of an order that the order's platform applied to its own
#: number first (a sale takes units there, a cancellation returns them).
ORDER_MOVES = (StockCommitted, StockReleased)


def _shares(
    available: int, listed: Sequence[tuple[ShopConfig, Listing]]
) -> dict[str, int]:
    """What :func:`domain.allocation.allocate` gives each of ``listed``, by
    shop key: the one allocation both the requests and the plans use."""
    return allocate(available, {shop.key: listing.rule for shop, listing in listed})


def _newest_levels(events: Sequence[Event]) -> dict[str, Any]:
    """The last stock-levels event of each SKU among ``events``."""
    newest: dict[str, Any] = {}
    for event in events:
        sku = getattr(event, "sku", None)
        if isinstance(event, StockLevels) and isinstance(sku, str):
            newest[sku] = event
    return newest


@dataclass(frozen=True, slots=True)
class ListingSync:
    """A moment a listing showed the allocation of a stock version.

    Either a write computed from that version was acknowledged, or the
    dispatcher found the listing already showing it (nothing to write, nothing
    on its way). Kept in memory (:attr:`OutboundDispatcher.syncs`) for
    propagation measurements; the durable record is the push history.
    """

    platform: str
    shop_id: str
    sku: str
    #: The stock item version the listed quantity was computed from.
    version: int
    #: ``time.time()`` of the moment.
    at: float


#: How many :class:`ListingSync` records the dispatcher keeps.
SYNCS_KEPT = 200_000


@dataclass(frozen=True)
class _Round:
    """How one round of a push ended."""

    result: PushResult
    #: What the listing showed before (the ledger's number), if known.
    previous: int | None = None
    held_back: bool = False
    #: The SKU's wake count when the round was planned.
    wakes: int = 0
    #: The stock item version the round's quantity was computed from.
    version: int | None = None


@dataclass(frozen=True)
class PushJob:
    """One requested push a worker sends."""

    shop: ShopConfig
    listing: Listing
    request_id: str
    quantity: int
    target_version: int
    #: A calibration reads the platform's number again (it is what it is for).
    calibration: bool = False
    #: False for the shortcut's jobs (:meth:`OutboundDispatcher._react`):
    #: their rounds record nothing; the log-driven request for the same stock
    #: version follows and records the outcome (usually "no change").
    record: bool = True
    #: The push's request event: its outcome records carry its causal ids.
    cause: Event | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        """The listing: platform, shop, hub SKU."""
        return (self.shop.platform, self.shop.shop_id, self.listing.hub_sku)


class OutboundDispatcher(Projection):
    """Follows stock events and pushes each listing's quantity to its platform.

    Args:
        hub: The running hub (committer for the push records and bindings).
        connectors: Shops, listings and clients.
        policies: Each platform's sync policy from the policy book (stock
            mode: pushed on change or calibrated; retry backoff between rounds).
        max_rounds: Rounds of calls before a push is dead-lettered.
        sleep: Waits between rounds (injected; tests pass a fake).
        jitter: Numbers in [0, 1) for the backoff between rounds.
        ledger_store: Where the ledgers are kept across restarts (None: in
            memory, read again from each platform after a restart).
        monotonic: The clock that paces each listing's writes
            (:data:`WRITE_SHARE`).
    """

    name: ClassVar[str] = "outbound_stock"
    tables: ClassVar[tuple[str, ...]] = ()
    topics: ClassVar[tuple[str, ...]] = tuple(
        topic for topic, cls in registered_events().items() if cls.AGGREGATE == "stock"
    )

    def __init__(
        self,
        hub: Hub,
        connectors: Connectors,
        *,
        policies: Mapping[str, SyncPolicy],
        max_rounds: int = DEFAULT_MAX_ROUNDS,
        sleep: Sleep = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        ledger_store: LedgerStore | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hub = hub
        self.ledger_store = ledger_store
        self.connectors = connectors
        self.policies = policies
        self.max_rounds = max_rounds
        self._sleep = sleep
        self._jitter = jitter
        self._monotonic = monotonic
        #: When each listing's last write was sent (``monotonic``).
        self._last_write: dict[tuple[str, str, str], float] = {}
        self._wanted: dict[tuple[str, str, str], PushJob] = {}
        #: Each listing's ledger. Replaced, never changed in place; a plan and
        #: its claim replace it with no await between them (see :meth:`_send`).
        self._ledgers: dict[tuple[str, str, str], ListingLedger] = {}
        self._known_active: dict[tuple[str, str], bool] = {}
        self._workers: dict[tuple[str, str, str], asyncio.Task[None]] = {}
        #: Pushes the headroom guard holds back, by SKU (see :meth:`_plan`).
        self._held: dict[str, dict[tuple[str, str, str], PushJob]] = {}
        self._wakes: dict[str, int] = {}
        #: Moments listings were brought up to a stock version (newest last).
        self.syncs: deque[ListingSync] = deque(maxlen=SYNCS_KEPT)
        self.runner = ProjectionRunner(self, hub.database_url)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Resume pending pushes, then follow the log (and take the
        committer's shortcut, :meth:`_react`)."""
        if self.ledger_store is not None:
            await self.ledger_store.open()
            self._ledgers.update(await self.ledger_store.load())
        await self._resume_pending()
        self.hub.committer.listen(self._react)
        await self.runner.start()

    async def stop(self) -> None:
        """Stop following and cancel workers (their pushes resume next start)."""
        self.hub.committer.unlisten(self._react)
        await self.runner.stop()
        for task in list(self._workers.values()):
            await cancel_and_wait(task)
        self._workers.clear()
        self._held.clear()
        if self.ledger_store is not None:
            await self.ledger_store.close()

    async def drain(self, timeout: float = 60.0) -> None:
        """Wait until every requested push has an outcome (for tests)."""
        async with asyncio.timeout(timeout):
            while self._workers:
                await asyncio.gather(
                    *list(self._workers.values()), return_exceptions=True
                )

    # ------------------------------------------------------------------ following

    def _react(self, events: Sequence[Event]) -> None:
        """The shortcut: the moment a stock change is durable (a
        :meth:`hub.service.commit.GroupCommitter.listen` listener), make sure each of
        the SKU's real-time listings has a worker coming, so the platforms hear
        of it one HTTP call after the commit rather than after a NOTIFY, a read
        of the log and the push request's own commit.

        A listing with a job queued or held back is left alone (a queued job
        computes from the newest state when it runs). The log-driven path
        (:meth:`apply_batch`) still requests and records every push.
        """
        for sku, levels in _newest_levels(events).items():
            version = levels.originator_version
            held = self._held.get(sku, {})
            for shop, listing in self.connectors.listings_of(sku):
                key = (shop.platform, shop.shop_id, sku)
                if (
                    key in self._wanted
                    or key in held
                    or not self._known_active.get((shop.platform, shop.shop_id))
                    or not self.policies[shop.platform].stock.pushed_on_change
                ):
                    continue
                self._enqueue(
                    PushJob(
                        shop=shop,
                        listing=listing,
                        request_id=stock_push.push_request_id(
                            shop.platform, shop.shop_id, sku, version
                        ),
                        quantity=0,
                        target_version=version,
                        record=False,
                    )
                )

    async def apply(
        self, cur: psycopg.AsyncCursor[object], event: Event, position: int
    ) -> None:
        """Request the pushes one stock event implies."""
        await self.apply_batch(cur, [(event, position)])

    async def apply_batch(
        self, cur: psycopg.AsyncCursor[object], events: list[tuple[Event, int]]
    ) -> None:
        """Request pushes for the newest levels of each SKU in the batch.

        An order placed or cancelled on a platform has already moved that
        platform's own number (it took or returned the units itself), so its
        listings are requested even when their quantity equals the one last
        sent: the worker reads the platform and sends the difference.
        """
        newest = _newest_levels([event for event, _ in events])
        moved: dict[str, set[str]] = {}
        drifted: dict[str, set[tuple[str, str]]] = {}
        for event, _ in events:
            sku = getattr(event, "sku", None)
            if isinstance(event, StockLevels) and isinstance(sku, str):
                platform = getattr(event, "platform", None)
                if isinstance(event, ORDER_MOVES) and platform:
                    moved.setdefault(sku, set()).add(platform)
                if isinstance(
                    event, StockDriftDetected
                ) and not stock_push.is_calibration_report(event.request_id):
                    # Reported from outside (not by a calibration of this
                    # dispatcher): calibrate that listing.
                    drifted.setdefault(sku, set()).add((event.platform, event.shop_id))
        bindings: dict[tuple[str, str], bool] = {}
        wanted: list[tuple[ShopConfig, Listing, stock_push.RequestStockPush]] = []
        for sku, event in newest.items():
            wanted += await self._requests(
                sku,
                event.available,
                event.originator_version,
                bindings,
                moved=moved.get(sku, set()),
            )
            for platform, shop_id in sorted(drifted.get(sku, set())):
                for shop in self.connectors.shops(platform):
                    if shop_id in ("", shop.shop_id):
                        wanted += await self._requests(
                            sku,
                            event.available,
                            event.originator_version,
                            bindings,
                            calibrate=shop,
                        )
        await self._issue(wanted, newest)
        for sku in newest:
            self._wake(sku)  # more stock, or a sale elsewhere, may make room

    async def _requests(
        self,
        sku: str,
        available: int,
        version: int,
        bindings: dict[tuple[str, str], bool],
        *,
        calibrate: ShopConfig | None = None,
        moved: set[str] | frozenset[str] = frozenset(),
    ) -> list[tuple[ShopConfig, Listing, stock_push.RequestStockPush]]:
        """The push requests of one SKU's level: all real-time listings, or
        (``calibrate``) that shop's listing whatever its mode. Listings on the
        ``moved`` platforms are requested even with an unchanged quantity."""
        listed = [
            (shop, listing)
            for shop, listing in self.connectors.listings_of(sku)
            if await self._active(shop, bindings)
        ]
        if not listed:
            return []
        quantities = _shares(available, listed)
        wanted = []
        for shop, listing in listed:
            if calibrate is not None:
                if shop.key != calibrate.key:
                    continue
            elif not self.policies[shop.platform].stock.pushed_on_change:
                continue
            command = stock_push.RequestStockPush(
                platform=shop.platform,
                shop_id=shop.shop_id,
                sku=sku,
                platform_sku_id=listing.platform_sku_id,
                quantity=quantities[shop.key],
                target_version=version,
                reason="stock_changed" if calibrate is None else "calibration",
                force=calibrate is not None or shop.platform in moved,
            )
            wanted.append((shop, listing, command))
        return wanted

    async def _issue(
        self,
        wanted: list[tuple[ShopConfig, Listing, stock_push.RequestStockPush]],
        causes: Mapping[str, Event] | None = None,
    ) -> int:
        """Store the requests together (one group commit) and queue their
        pushes; ``causes`` are the stock events they answer, by SKU."""
        outcomes = await asyncio.gather(
            *(
                self.hub.committer.execute(
                    STOCK_PUSH_RULES, command, cause=(causes or {}).get(command.sku)
                )
                for _, _, command in wanted
            )
        )
        queued = 0
        for (shop, listing, command), outcome in zip(wanted, outcomes, strict=True):
            if not outcome.events:
                # Its quantity is what was last sent: up to date unless a push
                # is still on its way.
                key = (shop.platform, shop.shop_id, listing.hub_sku)
                if self._idle(key):
                    self._synced(key, command.target_version)
            for pushed in outcome.events:
                if isinstance(pushed, stock_push.StockPushRequested):
                    queued += 1
                    self._enqueue(
                        PushJob(
                            shop=shop,
                            listing=listing,
                            request_id=pushed.request_id,
                            quantity=pushed.quantity,
                            target_version=pushed.target_version,
                            calibration=pushed.reason == "calibration",
                            cause=pushed,
                        )
                    )
        return queued

    async def _active(
        self, shop: ShopConfig, cache: dict[tuple[str, str], bool]
    ) -> bool:
        key = (shop.platform, shop.shop_id)
        if key not in cache:
            state: Binding | None = await self.hub.committer.latest(
                BINDING_RULES,
                binding_id(shop.channel_account, shop.platform, shop.shop_id),
            )
            cache[key] = state is not None and state.status == "active"
            self._known_active[key] = cache[key]
        return cache[key]

    async def _state(self, sku: str) -> StockItem | None:
        """The SKU's newest stock state (from the committer's cache)."""
        item: StockItem | None = await self.hub.committer.latest(
            STOCK_RULES, stock_item_id(sku)
        )
        return item

    def _listed(self, job: PushJob, item: StockItem) -> dict[str, Listed]:
        """Every listing of ``job``'s SKU as the headroom guard sees it now:
        its target, its platform's known sales and its ledger, by shop key.

        The targets and every listing's sales come from one state, so a target
        never counts units of a platform's sales that the ledger's subtraction
        would add back. Listings of bindings not known to be active get no share
        (the job's own always does); a listing the hub has not read yet counts
        at its target (see :func:`domain.listing_ledger.plan_write`).
        """
        sku = job.listing.hub_sku
        listings = self.connectors.listings_of(sku)
        targets = _shares(
            item.available,
            [
                (shop, listing)
                for shop, listing in listings
                if self._known_active.get((shop.platform, shop.shop_id), False)
                or shop.key == job.shop.key
            ],
        )
        return {
            shop.key: Listed(
                target=targets.get(shop.key, 0),
                sold=item.platform_sold.get(shop.platform, 0),
                ledger=self._ledgers.get((shop.platform, shop.shop_id, sku)),
            )
            for shop, _ in listings
        }

    # ------------------------------------------------------------------ calibration

    async def calibrate(self, platform: str | None = None) -> int:
        """Re-send every listing's quantity (of one platform, or all).

        The number the platform shows is read first and kept in the event
        (``previous``), so drift is visible in the history.

        Returns:
            How many pushes were requested.
        """
        bindings: dict[tuple[str, str], bool] = {}
        wanted: list[tuple[ShopConfig, Listing, stock_push.RequestStockPush]] = []
        for shop in self.connectors.shops(platform):
            for listing in shop.listings:
                item: StockItem | None = await self.hub.committer.load(
                    STOCK_RULES, stock_item_id(listing.hub_sku)
                )
                if item is not None:
                    wanted += await self._requests(
                        listing.hub_sku,
                        item.available,
                        item.version,
                        bindings,
                        calibrate=shop,
                    )
        return await self._issue(wanted)

    # ------------------------------------------------------------------ workers

    def _enqueue(self, job: PushJob) -> None:
        # A newer job replaces one held back by the headroom guard.
        self._held.get(job.listing.hub_sku, {}).pop(job.key, None)
        self._wanted[job.key] = job
        if job.key not in self._workers:
            task = asyncio.create_task(self._work(job.key), name=f"push {job.key}")
            self._workers[job.key] = task

    def _wake(self, sku: str) -> None:
        """Room may have come free on ``sku``: queue its held-back pushes again."""
        self._wakes[sku] = self._wakes.get(sku, 0) + 1
        for key, job in self._held.pop(sku, {}).items():
            if key not in self._wanted:
                self._enqueue(job)

    def _park(self, job: PushJob, wakes: int) -> None:
        """Hold back ``job`` until another listing of its SKU comes down."""
        sku = job.listing.hub_sku
        if job.key in self._wanted:
            return  # a newer job runs next anyway
        if self._wakes.get(sku, 0) != wakes:
            self._enqueue(job)  # room came free while this round was out
            return
        self._held.setdefault(sku, {})[job.key] = job

    def _synced(self, key: tuple[str, str, str], version: int) -> None:
        self.syncs.append(ListingSync(*key, version=version, at=time.time()))

    def _idle(self, key: tuple[str, str, str]) -> bool:
        """Nothing queued, on its way or held back for the listing."""
        return (
            key not in self._wanted
            and key not in self._workers
            and key not in self._held.get(key[2], {})
        )

    def wake_held(self) -> None:
        """Queue again every push the headroom guard holds back (each parks
        again if there is still no room)."""
        for sku in list(self._held):
            self._wake(sku)

    def held_back(self) -> list[tuple[str, str, str]]:
        """The listings whose raise waits for others to come down (for status
        and tests)."""
        return sorted(key for held in self._held.values() for key in held)

    async def _work(self, key: tuple[str, str, str]) -> None:
        try:
            while key in self._wanted:
                job = self._wanted.pop(key)
                try:
                    await self._deliver(job)
                except Exception:  # a worker must not die silently
                    log.exception("stock push %s failed unexpectedly", job.request_id)
        finally:
            self._workers.pop(key, None)

    def _superseded(self, job: PushJob) -> bool:
        newer = self._wanted.get(job.key)
        return newer is not None and newer.target_version > job.target_version

    async def _deliver(self, job: PushJob) -> None:
        """Rounds of :meth:`_send` until the listing shows its target, with a
        backoff between failed rounds; the outcome is recorded on the
        listing's aggregate (except for the shortcut's jobs, whose rounds
        record nothing: the log-driven request records)."""
        policy = self.policies[job.shop.platform]
        keys = {
            "platform": job.shop.platform,
            "shop_id": job.shop.shop_id,
            "sku": job.listing.hub_sku,
            "request_id": job.request_id,
        }
        last: PushResult | None = None
        for round_no in range(1, self.max_rounds + 1):
            if round_no > 1 and self._superseded(job):
                return
            done = await self._send(job)
            result = done.result
            if result.ok:
                if done.version is not None and not done.held_back:
                    self._synced(job.key, done.version)
                if done.held_back:
                    # Recorded as sent once the whole target is shown.
                    self._park(job, done.wakes)
                    return
                if job.record:
                    await self._record(
                        job,
                        stock_push.RecordStockPushSent(
                            **keys,
                            attempts=result.attempts,
                            previous=done.previous,
                            message=result.message[:500],
                        ),
                    )
                return
            last = result
            if result.outcome == "rejected" or round_no == self.max_rounds:
                break
            if job.record:
                await self._record(
                    job,
                    stock_push.RecordStockPushFailed(
                        **keys,
                        outcome=result.outcome,  # type: ignore[arg-type]
                        attempts=result.attempts,
                        round=round_no,
                        code=result.code,
                        message=result.message[:500],
                    ),
                )
            await self._sleep(
                backoff_delay_s(
                    policy.retry,
                    round_no,
                    self._jitter(),
                    rate_limited=result.outcome == "rate_limited",
                )
            )
        assert last is not None
        if job.record:
            await self._record(
                job,
                stock_push.DeadLetterStockPush(
                    **keys,
                    outcome=last.outcome,  # type: ignore[arg-type]
                    rounds=round_no,
                    code=last.code,
                    message=last.message[:500],
                ),
            )

    def _result(
        self, job: PushJob, outcome: str, message: str, **extra: Any
    ) -> PushResult:
        return PushResult(
            platform=job.shop.platform,
            shop_id=job.shop.shop_id,
            request_id=job.request_id,
            outcome=outcome,  # type: ignore[arg-type]
            message=message,
            attempts=extra.pop("attempts", 0),
            **extra,
        )

    def _failure(self, job: PushJob, exc: PlatformCallError, doing: str) -> PushResult:
        """A call that could not be made, as a failed result of ``job``."""
        return self._result(
            job,
            exc.outcome,
            f"{doing}: {exc.message}",
            attempts=exc.attempts,
            code=exc.code,
        )

    async def _send(self, job: PushJob) -> _Round:
        """One round: send the difference between what the listing may show
        now and what its ledger says it shows.

        The first push of a listing (and a calibration) reads the platform's
        number as the ledger's baseline; later pushes do not read (see
        :class:`domain.listing_ledger.ListingLedger`). A write of unknown
        outcome is sent again first. The plan and its claim are one step with
        no await between them, so no other listing plans against ledgers that
        miss this write (:func:`domain.listing_ledger.claim` checks it).
        """
        shop, listing = job.shop, job.listing
        sku = listing.hub_sku
        try:
            client = await self.connectors.ready_client(shop)
            if job.calibration or job.key not in self._ledgers:
                await self._read_baseline(job, client)
        except PlatformCallError as exc:
            return _Round(self._failure(job, exc, "reading stock before the push"))
        if self._ledgers[job.key].uncertain is not None:
            result = await self._settle_uncertain(job, client)
            if result is not None:
                return _Round(result)
        await self._budget_turn(job, client)
        item = await self._state(sku)
        wakes = self._wakes.get(sku, 0)
        if item is None and not job.record:
            return _Round(self._result(job, "sent", "no stock state yet"))
        # From here to the claim: no await.
        ledger = self._ledgers[job.key]
        if item is None:
            shown = ledger.showing(0)
            plan = WritePlan(target=job.quantity, send=job.quantity, showing=shown)
        else:
            plan = listing_ledger.plan_write(
                shop.key, self._listed(job, item), item.available, item.version
            )
        if plan.delta == 0:
            message = (
                f"no change yet: shows {plan.showing} of {plan.target} until "
                "other listings come down"
                if plan.held_back
                else "no change"
            )
            return _Round(
                self._result(job, "sent", message),
                plan.showing,
                plan.held_back,
                wakes,
                plan.version,
            )
        # The state version the quantity came from: ``@v`` when the write
        # brings the listing to its target, ``@h`` when part is held back.
        mark = "h" if plan.held_back else "v"
        write = PendingWrite(
            request_id=(
                f"{job.request_id}:{ledger.written}:{plan.delta:+d}"
                f"@{mark}{plan.version}"
            ),
            delta=plan.delta,
        )
        self._claim(job, item, write)
        result = await self._write(job, client, write)
        if result.outcome == "rejected" and write.delta < 0:
            # The platform has sold more than the hub has heard of: it cannot
            # take the whole reduction. Take it to zero instead (the sales the
            # hub has not seen yet account for the rest). Had an earlier attempt
            # landed, the ledger now overstates the listing: never an oversell.
            result = await self._clamp_to_zero(job, client, plan.showing)
        return _Round(result, plan.showing, plan.held_back, wakes, plan.version)

    async def _budget_turn(self, job: PushJob, client: Any) -> None:
        """Wait until the listing's share of its shop's API budget
        (:data:`WRITE_SHARE`) and the shop's budget itself have a call for
        the write.

        The write is planned only then, from the newest state: changes that
        come meanwhile fold into the one write that follows (coalescing),
        instead of a write planned earlier waiting in the client's bucket with
        a stale target and another write after it. A listing's writes thus
        never take more than its share of the budget, however fast its SKU
        changes.
        """
        limits = getattr(self.policies[job.shop.platform], "rate_limit", None)
        last = self._last_write.get(job.key)
        if limits is not None and last is not None:
            gap = 1.0 / (limits.rate_per_s * WRITE_SHARE)
            wait = last + gap - self._monotonic()
            if wait > 0:
                await self._sleep(wait)
        ready = getattr(client, "budget_ready", None)
        if ready is not None:
            await ready(job.shop.shop_id)

    def _claim(self, job: PushJob, item: StockItem | None, write: PendingWrite) -> None:
        """Record ``write`` as on its way in the listing's ledger, checked
        against the SKU's other listings as they stand now.

        Raises:
            HeadroomExceededError: a raise the invariant does not allow (a
                plan made against stale ledgers: a bug, never sent).
        """
        if item is None:
            self._ledgers[job.key] = self._ledgers[job.key].claimed(write)
            return
        self._ledgers[job.key] = listing_ledger.claim(
            job.shop.key, self._listed(job, item), write, item.available
        )

    def _release(self, job: PushJob) -> None:
        """The write claimed is known not to have been applied: take it off the
        ledger, and wake the raises held back for room it was holding."""
        ledger = self._ledgers[job.key]
        self._ledgers[job.key] = ledger.released()
        if ledger.in_flight is not None and ledger.in_flight.delta > 0:
            self._wake(job.listing.hub_sku)

    async def _write(
        self, job: PushJob, client: Any, write: PendingWrite
    ) -> PushResult:
        """Save the claimed write's intent, send it, and settle the ledger by
        the answer: applied, not applied (a refused reduction), or unknown."""
        try:
            saved = await self._save(job)
        except BaseException:
            self._release(job)  # not sent
            raise
        if not saved:
            # Never a write whose intent is not saved: a crash after it would
            # leave the restarted hub counting it out.
            self._release(job)
            return self._result(job, "failed", "ledger not saved; write not sent")
        listing = job.listing
        try:
            result = await self._push(
                job,
                client,
                job.shop.shop_id,
                listing.platform_sku_id,
                product_id=listing.product_id,
                delta=write.delta,
                request_id=write.request_id,
            )
        except BaseException:
            # Cut off mid-call: it may have landed.
            self._ledgers[job.key] = self._ledgers[job.key].unsettled()
            raise
        if result.ok:
            self._ledgers[job.key] = self._ledgers[job.key].applied()
            if write.delta < 0:
                self._wake(listing.hub_sku)
        elif result.outcome == "rejected" and write.delta < 0:
            self._release(job)
        else:
            # Not known to be unapplied: an attempt may have landed before the
            # call failed (a timeout, an answer abandoned as slow, then a
            # refusal or a token the platform would not renew). The next push
            # sends it again under its own request id first: applied once.
            self._ledgers[job.key] = self._ledgers[job.key].unsettled()
        await self._save(job)
        return result

    def _report_drift(self, job: PushJob, reported: int, expected: int) -> None:
        """Record what a calibration found the platform showing against what
        the hub expected it to (``ReportPlatformStock``: beyond tolerance 0 it
        is ``StockDriftDetected``, in the ``stock_drift`` view). Not awaited."""
        command = ReportPlatformStock(
            sku=job.listing.hub_sku,
            platform=job.shop.platform,
            shop_id=job.shop.shop_id,
            reported=max(reported, 0),
            expected=max(expected, 0),
            request_id=stock_push.calibration_report_id(job.request_id),
        )
        future = self.hub.committer.submit(STOCK_RULES, command, cause=job.cause)
        future.add_done_callback(log_unawaited)

    async def _save(self, job: PushJob) -> bool:
        """Save the listing's ledger as it is now; False (logged) when the
        database failed."""
        if self.ledger_store is None:
            return True
        try:
            await self.ledger_store.save(job.key, self._ledgers[job.key])
        except (psycopg.Error, OSError) as exc:
            log.warning("ledger of %s not saved: %s", job.key, exc)
            return False
        return True

    async def _read_baseline(self, job: PushJob, client: Any) -> None:
        """Read the platform's number into a new ledger for the listing (its
        first push, or a calibration, which records the drift it finds).

        While the read is out, the listing keeps counting at its old ledger's
        bound (a calibrated listing) or at its target (a listing never read).

        Raises:
            PlatformCallError: The read failed (the old ledger stays).
        """
        listing = job.listing
        item = await self._state(listing.hub_sku)
        sold = item.platform_sold.get(job.shop.platform, 0) if item else 0
        current = await client.fetch_stock(
            job.shop.shop_id, listing.platform_sku_id, product_id=listing.product_id
        )
        before = self._ledgers.get(job.key)
        if before is not None:
            self._report_drift(job, current, before.showing(sold))
        self._ledgers[job.key] = ListingLedger(baseline=current, sold_at_baseline=sold)
        await self._save(job)
        self._wake(listing.hub_sku)

    async def _push(
        self, job: PushJob, client: Any, shop_id: str, sku_id: str, **kw: Any
    ) -> PushResult:
        """``client.push_stock``, with a call that could not even be made (a
        token the platform refused to renew) answered as a failed result, so
        the push goes through its rounds and a dead letter instead of vanishing.
        """
        self._last_write[job.key] = self._monotonic()
        try:
            result: PushResult = await client.push_stock(shop_id, sku_id, **kw)
        except PlatformCallError as exc:
            return self._failure(job, exc, "before the write")
        return result

    async def _settle_uncertain(self, job: PushJob, client: Any) -> PushResult | None:
        """Send a write of unknown outcome again under its own request id: the
        platform applies it now or answers that it already has. Returns the
        failure when its outcome is still unknown, else None."""
        ledger = self._ledgers[job.key]
        assert ledger.uncertain is not None
        listing = job.listing
        result: PushResult = await self._push(
            job,
            client,
            job.shop.shop_id,
            listing.platform_sku_id,
            product_id=listing.product_id,
            delta=ledger.uncertain.delta,
            request_id=ledger.uncertain.request_id,
        )
        if not result.ok and result.outcome != "rejected":
            return result  # failed or rate limited: still unknown
        # Applied now (or before), or refused: settled either way.
        self._ledgers[job.key] = self._ledgers[job.key].settled(applied=result.ok)
        await self._save(job)
        self._wake(listing.hub_sku)
        return None

    async def _clamp_to_zero(
        self, job: PushJob, client: Any, showing: int
    ) -> PushResult:
        """Take the listing to zero after the platform refused a reduction
        (it has sold more than the hub has heard of): read what it shows and
        take that off, again while buyers keep the write too big
        (:data:`CLAMP_ATTEMPTS`)."""
        shop, listing = job.shop, job.listing
        for attempt in range(CLAMP_ATTEMPTS):
            try:
                current = await client.fetch_stock(
                    shop.shop_id, listing.platform_sku_id, product_id=listing.product_id
                )
            except PlatformCallError as exc:
                return self._failure(
                    job, exc, "reading stock after a refused reduction"
                )
            if current <= 0:
                return self._result(
                    job, "sent", f"no change: at zero (hub's ledger {showing})"
                )
            ledger = self._ledgers[job.key]
            again = f":{attempt}" if attempt else ""
            write = PendingWrite(
                request_id=f"{job.request_id}:{ledger.written}:to-zero:{current}{again}",
                delta=-current,
            )
            self._ledgers[job.key] = ledger.claimed(write)  # a reduction: no guard
            result = await self._write(job, client, write)
            if result.outcome != "rejected":
                break
        return result

    async def _record(self, job: PushJob, command: stock_push.StockPushCommand) -> None:
        try:
            await self.hub.committer.execute(STOCK_PUSH_RULES, command, cause=job.cause)
        except DomainError:
            log.exception("recording %s failed", type(command).__name__)

    async def _resume_pending(self) -> None:
        """Queue again the pushes requested but not settled before a restart."""
        async with await psycopg.AsyncConnection.connect(self.hub.database_url) as conn:
            cur = await conn.execute(
                "SELECT platform, shop_id, sku FROM stock_pushes "
                "WHERE status IN ('requested', 'failed') "
                "GROUP BY platform, shop_id, sku"
            )
            rows = await cur.fetchall()
        for platform, shop_id, sku in rows:
            state: stock_push.StockPush | None = await self.hub.committer.load(
                STOCK_PUSH_RULES,
                stock_push.stock_push_id(str(platform), str(shop_id), str(sku)),
            )
            if state is None or state.pending is None:
                continue
            for shop, listing in self.connectors.listings_of(str(sku)):
                if (shop.platform, shop.shop_id) == (platform, shop_id):
                    self._enqueue(
                        PushJob(
                            shop=shop,
                            listing=listing,
                            request_id=state.pending.request_id,
                            quantity=state.pending.quantity,
                            target_version=state.pending.target_version,
                        )
                    )
