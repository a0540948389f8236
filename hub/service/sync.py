"""When orders are pulled and stock calibrated: the sync policies, on a clock.

Each platform's :class:`domain.policy.SyncPolicy`, the ``sync`` section of its
profile in the policy book (``hub/policies.json`` or ``HUB_POLICIES_FILE``;
docs/policies.md), says it, as data, and :class:`SyncScheduler` only reads it.
With the bundled book:

* WeChat Shop: orders arrive by push; a poll every ``poll_interval_s`` (15 s)
  is the fallback for a lost push;
* Douyin Shop: orders are polled (every 5 minutes) and only those at least
  ``poll_delay_s`` (30 minutes) old are read;
* Kuaishou Shop: orders on a manual trigger only (``hub sync orders
  --binding ID``, :meth:`SyncScheduler.sync_orders`); stock calibrated at
  ``calibration_times`` (03:00 and 15:00 Beijing time);
* Youzan: pushes, with a 60 s fallback poll.

The clock is injected: tests move a fake one and call :meth:`tick`; nothing
here waits for real time except :meth:`run`'s sleep, itself injected.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from connectors.common import PlatformCallError
from domain.binding import DataScopeError
from domain.events import DomainError
from domain.policy import SyncPolicy
from hub.infra.shops import ShopConfig
from hub.service.inbound import MalformedOrderError, OrderIntake
from hub.service.outbound import OutboundDispatcher

log = logging.getLogger(__name__)

#: How far back the first poll of a shop reads (later polls start where the
#: previous one ended).
DEFAULT_LOOKBACK = timedelta(hours=1)
#: Each window starts this much before the previous one ended: an order
#: updated on the boundary second is read twice rather than never.
OVERLAP = timedelta(seconds=1)
#: Orders per page asked of the platform.
PAGE_SIZE = 50


@dataclass
class SyncReport:
    """What one order pull of one shop did.

    ``refused`` says why nothing was pulled (the binding's data scope);
    ``failed`` why the pull stopped early (the platform did not answer);
    ``errors`` the orders that could not be taken in, by platform order id.
    """

    shop: str
    since: datetime
    until: datetime
    orders: int = 0
    events: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    refused: str = ""
    failed: str = ""

    @property
    def ok(self) -> bool:
        """Whether every order in the window was taken in."""
        return not (self.refused or self.failed or self.errors)


@dataclass
class TickReport:
    """What one :meth:`SyncScheduler.tick` ran."""

    polls: list[SyncReport] = field(default_factory=list)
    calibrated: list[str] = field(default_factory=list)


class PollCursors:
    """Where each shop's order polls got to, kept in PostgreSQL
    (``poll_cursors``), so polls resume there after a restart.

    Args:
        database_url: PostgreSQL holding ``poll_cursors`` (migrated).
    """

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        """One connection, opened on first use (again after it broke)."""
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self.database_url, autocommit=True
            )
        return self._conn

    async def aclose(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def load(self) -> dict[str, datetime]:
        """Every shop's cursor (``platform/shop_id`` → end of its last pull)."""
        conn = await self._connection()
        cur = await conn.execute("SELECT shop, pulled_until FROM poll_cursors")
        return {str(shop): until for shop, until in await cur.fetchall()}

    async def save(self, shop: str, pulled_until: datetime) -> None:
        """Move a shop's cursor forward (never back)."""
        conn = await self._connection()
        await conn.execute(
            "INSERT INTO poll_cursors (shop, pulled_until) VALUES (%s, %s) "
            "ON CONFLICT (shop) DO UPDATE SET pulled_until = GREATEST("
            "poll_cursors.pulled_until, EXCLUDED.pulled_until), updated_at = now()",
            (shop, pulled_until),
        )


class SyncScheduler:
    """Runs order polls and stock calibrations when the policies say.

    Args:
        intake: Takes pulled orders in (and holds the registry).
        outbound: Calibrates stock (None: no calibration).
        clock: The current time, timezone-aware (injected).
        policies: Each platform's sync policy from the policy book (order
            modes, poll intervals and delays, calibration times).
        lookback: How far back a shop's first poll reads.
        cursors: Where polls got to, kept across restarts (None: in memory).
    """

    def __init__(
        self,
        intake: OrderIntake,
        outbound: OutboundDispatcher | None,
        *,
        clock: Callable[[], datetime],
        policies: Mapping[str, SyncPolicy],
        lookback: timedelta = DEFAULT_LOOKBACK,
        cursors: PollCursors | None = None,
    ) -> None:
        self.intake = intake
        self.cursors = cursors
        self._cursors_loaded = cursors is None
        self.outbound = outbound
        self.clock = clock
        self.policies = policies
        self.lookback = lookback
        self._pulled_until: dict[str, datetime] = {}
        self._next_poll: dict[str, datetime] = {}
        self._last_tick: datetime | None = None

    # ------------------------------------------------------------------ orders

    async def sync_orders(
        self,
        shop: ShopConfig,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> SyncReport:
        """Pull the shop's orders updated in a window and take them in.

        Without ``until`` the window ends ``poll_delay_s`` before now (Douyin's
        30 minutes); without ``since`` it starts where the previous pull of the
        shop ended (less :data:`OVERLAP`), or ``lookback`` before its end.
        """
        if not self._cursors_loaded and self.cursors is not None:
            for key, pulled in (await self.cursors.load()).items():
                self._pulled_until[key] = max(
                    pulled, self._pulled_until.get(key, pulled)
                )
            self._cursors_loaded = True
        delay = timedelta(seconds=self.policies[shop.platform].orders.poll_delay_s)
        end = until or self.clock() - delay
        start = since or self._pulled_until.get(shop.key, end - self.lookback)
        start = min(start - OVERLAP, end)
        report = SyncReport(shop=shop.key, since=start, until=end)
        try:
            await self.intake.check_scope(shop, "sales")
        except DataScopeError as exc:
            report.refused = str(exc)
            log.warning("order pull of %s refused: %s", shop.key, exc)
            return report
        try:
            client = await self.intake.connectors.ready_client(shop)
            cursor: str | None = None
            while True:
                page = await client.pull_orders(
                    shop.shop_id, start, end, cursor, page_size=PAGE_SIZE
                )
                for platform_order in page.orders:
                    report.orders += 1
                    try:
                        taken = await self.intake.apply(shop, platform_order)
                    except (DomainError, MalformedOrderError) as exc:
                        report.errors[platform_order.order_id] = str(exc)
                        continue
                    report.events += len(taken.events)
                if not page.has_more:
                    break
                cursor = page.next_cursor
        except PlatformCallError as exc:
            report.failed = str(exc)
            log.warning("order pull of %s failed: %s", shop.key, exc)
            return report
        self._pulled_until[shop.key] = max(end, self._pulled_until.get(shop.key, end))
        if self.cursors is not None:
            try:
                await self.cursors.save(shop.key, self._pulled_until[shop.key])
            except psycopg.Error as exc:  # the orders are in; the cursor lags
                log.warning("poll cursor of %s not saved: %s", shop.key, exc)
        return report

    def due_polls(self, now: datetime) -> list[ShopConfig]:
        """The shops whose policy polls orders and whose interval has passed.

        Manual-trigger platforms (Kuaishou) are never due.
        """
        due = []
        for shop in self.intake.connectors.shops():
            orders = self.policies[shop.platform].orders
            if orders.mode == "manual" or not orders.poll_interval_s:
                continue
            if now >= self._next_poll.get(shop.key, now):
                due.append(shop)
        return due

    # ------------------------------------------------------------------ stock

    def due_calibrations(self, after: datetime, now: datetime) -> list[str]:
        """Platforms with a calibration time in ``(after, now]``."""
        due = []
        for platform, policy in self.policies.items():
            stock = policy.stock
            if stock.mode != "scheduled_calibration" or not stock.calibration_times:
                continue
            zone = ZoneInfo(stock.timezone)
            first = after.astimezone(zone).date() - timedelta(days=1)
            last = now.astimezone(zone).date()
            days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
            for day in days:
                for text in stock.calibration_times:
                    hour, minute = (int(part) for part in text.split(":"))
                    moment = datetime(
                        day.year, day.month, day.day, hour, minute, tzinfo=zone
                    )
                    if after < moment <= now and platform not in due:
                        due.append(platform)
        return due

    # ------------------------------------------------------------------ schedule

    async def tick(self) -> TickReport:
        """Run every poll and calibration that is due now."""
        now = self.clock()
        report = TickReport()
        if self.outbound is not None:
            # A safety net: a raise held back by the headroom guard is woken by
            # the reduction that makes room; should that wake be missed, the
            # next tick retries it (it parks again if there is still no room).
            self.outbound.wake_held()
        for shop in self.due_polls(now):
            interval = self.policies[shop.platform].orders.poll_interval_s or 0
            self._next_poll[shop.key] = now + timedelta(seconds=interval)
            report.polls.append(await self.sync_orders(shop))
        previous, self._last_tick = self._last_tick, now
        if previous is not None and self.outbound is not None:
            for platform in self.due_calibrations(previous, now):
                await self.outbound.calibrate(platform)
                report.calibrated.append(platform)
        return report

    async def aclose(self) -> None:
        """Close what the schedule holds open (the poll cursors' connection)."""
        if self.cursors is not None:
            await self.cursors.aclose()

    async def run(
        self,
        *,
        interval_s: float = 1.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Tick forever (cancel the task to stop)."""
        while True:
            try:
                await self.tick()
            except Exception:  # the schedule must survive one bad tick
                log.exception("sync tick failed")
            await sleep(interval_s)
