"""Payouts from orders: the process that schedules and reverses them, and the
daily settlement of those that are due.

:class:`PayoutProcess` follows the log like :class:`hub.service.processes.
OrderStockProcess`: for each ``OrderPaid`` it gathers what the split needs
(the order's shop and channel account, the binding's certified subject, the
commission agreement the payment falls under: a live session on the binding
covering the payment's time, else the binding's agreement) and runs
:class:`domain.payout.SchedulePayout`; for each ``OrderRefunded`` it runs
:class:`domain.payout.ReversePayout`. A payout the rules refuse (an
enterprise-only channel for an individual seller) is recorded as
``PayoutRefused`` naming the rule. Every command is idempotent, so running an
event twice changes nothing.

:func:`settle_due` settles every pending payout whose settlement date has
come; :class:`PayoutRunner` runs it on a timer beside the process.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, ClassVar

import psycopg

from domain import binding, order, payout
from domain.events import DomainError, Event
from domain.policy import PolicyBook
from domain.settlement import settlement_date
from hub.infra.runtime import cancel_and_wait
from hub.service.commands import (
    BINDING_RULES,
    ORDER_RULES,
    CommissionTermsRules,
    PayoutRules,
)
from hub.service.commit import AggregateRules, GroupCommitter, Outcome
from hub.service.processes import ProcessRunner, execute_in_order
from projections.base import BatchProjection
from projections.ledger import due_payouts

log = logging.getLogger(__name__)

#: Seconds between two looks for payouts that are due.
SETTLE_EVERY_S = 60.0

PAYOUT_TOPICS: tuple[str, ...] = (order.OrderPaid.TOPIC, order.OrderRefunded.TOPIC)


class PayoutProcess(BatchProjection):
    """Runs each paid or refunded order's payout command; records refusals.

    Args:
        committer: the hub's group committer.
        book: the policy book whose settlement terms the payouts follow.

    Attributes:
        commands: payout commands run (including those that changed nothing).
        refused: payouts refused by the rules (each recorded on its payout).
    """

    name: ClassVar[str] = "payouts"
    tables: ClassVar[tuple[str, ...]] = ()
    topics: ClassVar[tuple[str, ...]] = PAYOUT_TOPICS

    def __init__(self, committer: GroupCommitter, book: PolicyBook) -> None:
        self.committer = committer
        self.rules = PayoutRules(book)
        self.terms_rules = CommissionTermsRules(book)
        self.commands = 0
        self.refused = 0

    async def apply_batch(
        self, cur: psycopg.AsyncCursor[object], events: list[tuple[Event, int]]
    ) -> None:
        """Run the payout commands of consecutive order events, in log order."""
        order_events = [event for event, _ in events]
        wanted = await self.commands_for(order_events)
        commands = list(zip(order_events, wanted, strict=True))
        planned = [c for _, c in commands if c is not None]
        causes = [event for event, c in commands if c is not None]
        if not planned:
            return
        results = await execute_in_order(self.committer, self.rules, planned, causes)
        self.commands += len(planned)
        refusals = []
        refused_by: list[Event] = []
        for command, result, cause in zip(planned, results, causes, strict=True):
            if isinstance(result, BaseException) and not isinstance(
                result, DomainError
            ):
                raise result
            if isinstance(result, DomainError):
                log.warning(
                    "payout of %s/%s refused: %s",
                    command.platform,
                    command.platform_order_id,
                    result,
                )
                if isinstance(command, payout.SchedulePayout):
                    refused_by.append(cause)
                    refusals.append(
                        payout.RefusePayout(
                            platform=command.platform,
                            platform_order_id=command.platform_order_id,
                            code=result.code,
                            reason=str(result)[:500],
                        )
                    )
        if refusals:
            recorded = await execute_in_order(
                self.committer, self.rules, refusals, refused_by
            )
            for result in recorded:
                if isinstance(result, BaseException):
                    raise result
            self.refused += len(refusals)

    async def commands_for(
        self, events: Sequence[Event]
    ) -> list[payout.PayoutCommand | None]:
        """The payout command each order event calls for (None: none).

        What they need (each paid order, its binding and its commission
        terms) is loaded for the whole batch at once: two statements, not
        three loads an order.
        """
        paid = [e.originator_id for e in events if isinstance(e, order.OrderPaid)]
        orders = await self.committer.latest_many(dict.fromkeys(paid, ORDER_RULES))
        scopes: dict[uuid.UUID, AggregateRules] = {}
        for placed in orders.values():
            if placed is not None:
                account = (placed.channel_account, placed.platform, placed.shop_id)
                scopes[binding.binding_id(*account)] = BINDING_RULES
                scopes[payout.terms_id(*account)] = self.terms_rules
        known = await self.committer.latest_many(scopes) if scopes else {}
        return [self._command(event, orders, known) for event in events]

    @staticmethod
    def _command(
        event: Event, orders: dict[uuid.UUID, Any], known: dict[uuid.UUID, Any]
    ) -> payout.PayoutCommand | None:
        if isinstance(event, order.OrderRefunded):
            return payout.ReversePayout(
                platform=event.platform,
                platform_order_id=event.platform_order_id,
                refund_id=event.refund_id,
                amount_fen=event.amount_fen,
                refunded_at=event.occurred_at,
            )
        if not isinstance(event, order.OrderPaid):
            return None
        placed = orders[event.originator_id]
        if placed is None:
            return None
        paid_at = event.paid_at or event.occurred_at
        account = (placed.channel_account, placed.platform, placed.shop_id)
        bound = known[binding.binding_id(*account)]
        agreement = payout.agreement_at(known[payout.terms_id(*account)], paid_at)
        return payout.SchedulePayout(
            platform=event.platform,
            platform_order_id=event.platform_order_id,
            shop_id=placed.shop_id,
            amount_fen=event.paid_fen,
            paid_at=paid_at,
            subject_kind=None if bound is None else bound.subject_kind,
            streamer=agreement.streamer,
            streamer_rate=agreement.rate,
            agreement=agreement.source,
        )


async def settle_due(
    committer: GroupCommitter,
    rules: AggregateRules,
    database_url: str,
    now: datetime,
) -> list[Outcome | BaseException]:
    """Settle every pending payout whose settlement date is on or before ``now``'s
    (China) date; return each order's outcome."""
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True
    ) as conn:
        due = await due_payouts(conn, settlement_date(now, 0))
    orders = sorted({(d.platform, d.platform_order_id) for d in due})
    commands: Sequence[Any] = [
        payout.SettlePayouts(platform=p, platform_order_id=o, as_of=now)
        for p, o in orders
    ]
    if not commands:
        return []
    return await execute_in_order(committer, rules, commands)


class PayoutRunner(ProcessRunner):
    """Runs the payout process and, beside it, settles due payouts every
    :data:`SETTLE_EVERY_S` seconds by ``clock``."""

    def __init__(
        self,
        process: PayoutProcess,
        database_url: str,
        *,
        clock: Callable[[], datetime],
        every_s: float = SETTLE_EVERY_S,
    ) -> None:
        super().__init__(process, database_url)
        self.clock = clock
        self.every_s = every_s
        self._ticker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start following the log and the settlement timer."""
        await super().start()
        if self._ticker is None:
            self._ticker = asyncio.create_task(self._tick(), name="payout settlement")

    async def stop(self) -> None:
        """Stop the timer, then the process."""
        await cancel_and_wait(self._ticker)
        self._ticker = None
        await super().stop()

    async def _tick(self) -> None:
        assert isinstance(self.projection, PayoutProcess)
        while True:
            try:
                await settle_due(
                    self.projection.committer,
                    self.projection.rules,
                    self.database_url,
                    self.clock(),
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("settling due payouts failed; trying again later")
            await asyncio.sleep(self.every_s)


def payout_runners(
    committer: GroupCommitter,
    book: PolicyBook,
    database_url: str,
    clock: Callable[[], datetime],
) -> list[ProcessRunner]:
    """The payout process's runner, or none when the book has no settlement terms."""
    if book.settlement is None:
        return []
    return [PayoutRunner(PayoutProcess(committer, book), database_url, clock=clock)]
