"""Reconciliation runs: fetch each shop's settlement statement of a day, compare
it with the ledger, record every difference as an event.

:func:`reconcile_day` does one day for every configured shop whose platform
has settlement terms; the ``hub ledger reconcile`` verb and the daily schedule
call it. The comparison itself is :mod:`domain.reconciliation`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import psycopg

from connectors.common import PlatformCallError, SettlementStatement
from domain import reconciliation
from domain.calendar import CHINA_TIME
from domain.events import Context, Event
from domain.policy import PolicyBook
from domain.reconciliation import Difference, LedgerSale, StatementLine
from domain.settlement import Split
from projections.ledger import sale_payouts

if TYPE_CHECKING:
    from hub.service.hub import Hub

log = logging.getLogger(__name__)

#: When, each day (China time), the day before is reconciled: the platforms'
#: statements of a day are out by then.
RECONCILE_AT = time(10, 0)


class StatementRules:
    """How the committer runs a reconciliation record."""

    def aggregate_id(self, command: reconciliation.RecordReconciliation) -> Any:
        """A statement is keyed by platform, shop and day."""
        return reconciliation.statement_id(
            command.platform, command.shop_id, command.day
        )

    def decide(
        self,
        state: reconciliation.Statement | None,
        command: reconciliation.RecordReconciliation,
        ctx: Context,
    ) -> list[Event]:
        """Delegate to :func:`domain.reconciliation.decide`."""
        return reconciliation.decide(state, command, ctx)

    def mutate(self, event: Event, state: reconciliation.Statement | None) -> Any:
        """Delegate to :func:`domain.reconciliation.mutate`."""
        return reconciliation.mutate(event, state)


STATEMENT_RULES = StatementRules()


class Shop(Protocol):
    """A configured shop (:class:`hub.infra.shops.ShopConfig`)."""

    platform: str
    shop_id: str


class StatementSource(Protocol):
    """Where statements come from (:class:`hub.infra.shops.Connectors`)."""

    def shops(self, platform: str | None = None) -> list[Any]:
        """The configured shops."""
        ...

    async def ready_client(self, shop: Any) -> Any:
        """A client of ``shop``'s platform with a usable token."""
        ...


class Committer(Protocol):
    """What runs the record (:class:`hub.service.commit.GroupCommitter`)."""

    async def execute(self, rules: Any, command: Any) -> Any:
        """Run ``command`` under ``rules``."""
        ...


@dataclass
class ShopReport:
    """One shop's statement of a day against the ledger."""

    platform: str
    shop_id: str
    day: date
    lines: int = 0
    differences: list[Difference] = field(default_factory=list)
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "platform": self.platform,
            "shop_id": self.shop_id,
            "date": self.day.isoformat(),
            "lines": self.lines,
            "differences": [
                {
                    "order_id": d.order_id,
                    "field": d.field,
                    "statement_fen": d.statement_fen,
                    "ledger_fen": d.ledger_fen,
                }
                for d in self.differences
            ],
            "error": self.error,
        }


def statement_lines(statement: SettlementStatement) -> list[StatementLine]:
    """A connector's statement as lines to compare."""
    return [
        StatementLine(
            entry_id=entry.entry_id,
            order_id=entry.order_id,
            gross_fen=entry.gross_fen,
            fee_fen=entry.fee_fen,
            net_fen=entry.net_fen,
            commission_fen=entry.commission_fen,
        )
        for entry in statement.entries
    ]


async def compare(
    database_url: str,
    book: PolicyBook,
    platform: str,
    lines: Iterable[StatementLine],
) -> list[Difference]:
    """Every difference between ``lines`` and the ledger's sales."""
    if book.settlement is None:
        return []
    terms = book.settlement.platform(platform)
    lines = list(lines)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        sales = await sale_payouts(conn, platform, [line.order_id for line in lines])
    differences: list[Difference] = []
    for line in lines:
        row = sales.get(line.order_id)
        sale = (
            None
            if row is None
            else LedgerSale(
                amount_fen=int(row["amount_fen"]),
                split=Split(
                    streamer_fen=int(row["streamer_fen"]),
                    platform_fen=int(row["platform_fen"]),
                    payment_fen=int(row["payment_fen"]),
                    merchant_fen=int(row["merchant_fen"]),
                ),
            )
        )
        differences += reconciliation.compare_line(line, sale, terms)
    return differences


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """``day`` in China time, as ``[start, end)``."""
    start = datetime.combine(day, time(0), CHINA_TIME)
    return start, start + timedelta(days=1)


async def reconcile_day(
    committer: Committer,
    database_url: str,
    book: PolicyBook,
    source: StatementSource,
    day: date,
) -> list[ShopReport]:
    """Reconcile every configured shop's statement of ``day``; record the
    differences; return a report per shop (a shop whose statement could not
    be fetched reports the error)."""
    if book.settlement is None:
        return []
    start, end = day_bounds(day)
    reports: list[ShopReport] = []
    for shop in source.shops():
        if shop.platform not in book.settlement.platforms:
            continue
        report = ShopReport(platform=shop.platform, shop_id=shop.shop_id, day=day)
        reports.append(report)
        try:
            client = await source.ready_client(shop)
            statement = await client.fetch_settlement(shop.shop_id, start, end)
        except PlatformCallError as exc:  # reported, and the other shops go on
            log.warning("statement of %s/%s: %s", shop.platform, shop.shop_id, exc)
            report.error = f"{type(exc).__name__}: {exc}"
            continue
        lines = statement_lines(statement)
        report.lines = len(lines)
        report.differences = await compare(database_url, book, shop.platform, lines)
        await committer.execute(
            STATEMENT_RULES,
            reconciliation.RecordReconciliation(
                platform=shop.platform,
                shop_id=shop.shop_id,
                day=day,
                lines=len(lines),
                differences=tuple(report.differences),
            ),
        )
    return reports


def next_run(now: datetime, at: time = RECONCILE_AT) -> datetime:
    """The first instant at or after ``now`` that is ``at`` o'clock China time."""
    local = now.astimezone(CHINA_TIME)
    run = datetime.combine(local.date(), at, CHINA_TIME)
    return run if run >= local else run + timedelta(days=1)


async def reconcile_every_day(
    hub: Hub,
    source: StatementSource,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    at: time = RECONCILE_AT,
) -> None:
    """Each day at ``at`` (China time), reconcile the day before; until cancelled.

    A failed run is logged and the next day's goes ahead.
    """
    while True:
        now = clock()
        run = next_run(now, at)
        await sleep((run - now).total_seconds())
        day = run.astimezone(CHINA_TIME).date() - timedelta(days=1)
        book = hub.policy_book
        if book is None:
            continue
        try:
            reports = await reconcile_day(
                hub.committer, hub.database_url, book, source, day
            )
        except Exception:
            log.exception("reconciliation of %s failed", day)
            continue
        found = sum(len(r.differences) for r in reports)
        log.info("reconciled %s: %d shops, %d differences", day, len(reports), found)


#: Daily runs started and not yet done (the loop keeps only weak references).
_DAILY: set[asyncio.Task[None]] = set()


def daily_reconciliation(hub: Hub, source: StatementSource) -> asyncio.Task[None]:
    """Start :func:`reconcile_every_day` as a task; it ends when cancelled (or
    with its event loop)."""
    task = asyncio.create_task(
        reconcile_every_day(hub, source), name="daily reconciliation"
    )
    _DAILY.add(task)
    task.add_done_callback(_DAILY.discard)
    return task
