"""Process managers: follow the log and turn events into commands.

:class:`OrderStockProcess` is what makes an order move stock: for each order
event it runs the stock commands :func:`domain.order.stock_effect` names
(placed commits the order's units, cancelled and refunded-before-shipment
release them, shipped consumes them) through the hub's group committer.

It follows the log exactly as a projection does (:mod:`projections.base`): it
wakes on PostgreSQL NOTIFY, reads the events after its position in
``projection_tracking`` (row ``order_stock``) and, in the transaction that
advances that position, awaits its commands until they are durable. A crash
anywhere before that commit leaves the position where it was, so the events
are handled again: at least once. That is safe because every stock command is
idempotent per order reference (a second commit for an open or recently closed
order, or a release down to units already released, decides nothing). Together
that is exactly once in effect.

A command the stock item refuses (:class:`domain.stock.InsufficientStockError`:
the platform sold more than was available; :class:`domain.stock.UnknownSkuError`:
the SKU was never received) does not hold the process up. It is recorded as an
:class:`domain.order.OrderStockRefused` event on the order (once per action
and SKU, so a replay records nothing more), logged, counted in
:attr:`OrderStockProcess.refused`, and the process moves on. Subscribers see it
on ``hub.events.order.OrderStockRefused.<platform>``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, ClassVar

import psycopg

from domain import order, stock
from domain.events import DomainError, Event
from hub.service.commands import ORDER_RULES, STOCK_RULES
from hub.service.commit import AggregateRules, GroupCommitter, Outcome
from projections.base import BatchProjection, Projection, ProjectionRunner

log = logging.getLogger(__name__)

#: Order events that move stock (the others need nothing from the process).
STOCK_MOVING_EVENTS = (
    order.OrderPlaced,
    order.OrderShipped,
    order.OrderCancelled,
    order.OrderRefunded,
)
STOCK_MOVING_TOPICS: tuple[str, ...] = tuple(cls.TOPIC for cls in STOCK_MOVING_EVENTS)

_ACTIONS: dict[type[Any], order.StockAction] = {
    stock.CommitStock: "commit",
    stock.ReleaseStock: "release",
    stock.ConsumeStock: "consume",
}


async def execute_in_order(
    committer: GroupCommitter,
    rules: AggregateRules,
    commands: Sequence[Any],
    causes: Sequence[Event | None] = (),
) -> list[Outcome | BaseException]:
    """Run ``commands`` through the committer, queued in the order given.

    All are queued at once, so they share transactions; the committer decides
    them in queue order, each against the state the earlier ones left. Returns
    each command's outcome or exception, in order. Cancelling the caller does
    not cancel the commands: they finish (a process that was stopped handles
    them again, idempotently, on its next start). ``causes``, when given, are
    the events that call for each command (see
    :meth:`hub.service.commit.GroupCommitter.submit`).
    """
    tasks = [
        asyncio.ensure_future(committer.execute(rules, c, cause=cause))
        for c, cause in zip(commands, causes or [None] * len(commands), strict=True)
    ]
    return await asyncio.shield(asyncio.gather(*tasks, return_exceptions=True))


def _raise_failures(results: Sequence[Outcome | BaseException]) -> None:
    """Re-raise the first failure that is not a refusal (the store failed)."""
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, DomainError):
            raise result


class OrderStockProcess(BatchProjection):
    """Runs each order event's stock commands; records the refused ones.

    A :class:`projections.base.Projection` with no tables of its own: its
    ``apply_batch`` runs commands, and the runner advances its position only
    once they are durable. It is not in :func:`hub.bootstrap.default_projections`
    and cannot be rebuilt: replaying the whole log would commit stock for
    orders closed long ago.

    Args:
        committer: the hub's group committer (the commands share its
            transactions with every other command).

    Attributes:
        commands: stock commands run (including those that changed nothing).
        refused: stock commands a stock item refused (each recorded on its order).
    """

    name: ClassVar[str] = "order_stock"
    tables: ClassVar[tuple[str, ...]] = ()
    topics: ClassVar[tuple[str, ...]] = STOCK_MOVING_TOPICS

    def __init__(self, committer: GroupCommitter) -> None:
        self.committer = committer
        self.commands = 0
        self.refused = 0
        #: Stock commands planned by the shortcut (:meth:`plan`).
        self.reacted = 0

    def plan(self, events: Sequence[Event]) -> list[tuple[AggregateRules, Any]]:
        """The shortcut (a :meth:`hub.service.commit.GroupCommitter.react` reactor):
        the stock commands of the order events a command has just decided, run
        in the same transaction as the order's events, so an order's stock
        moves in the group commit that stores it rather than after a NOTIFY, a
        read of the log and a second commit.

        Nothing waits for these commands and their refusals are not recorded
        here: the log-driven path (:meth:`apply_batch`) runs the same commands
        again in log order, where they decide nothing if they took effect, and
        records any refusal. A refused shortcut command that succeeds on that
        second run (stock came free in between) leaves no trace but the commit.
        """
        planned: list[tuple[AggregateRules, Any]] = []
        for event in events:
            if isinstance(event, STOCK_MOVING_EVENTS):
                planned += [(STOCK_RULES, c) for c in order.stock_effect(event)]
        self.reacted += len(planned)
        return planned

    async def apply_batch(
        self, cur: psycopg.AsyncCursor[object], events: list[tuple[Event, int]]
    ) -> None:
        """Run the stock commands of consecutive order events, in log order.

        Returns once every command (and every refusal's record) is durable;
        raises if the store failed, so the runner's transaction rolls back and
        the position stays.
        """
        effects = [
            (event, command)
            for event, _ in events
            for command in order.stock_effect(event)
        ]
        if not effects:
            return
        results = await execute_in_order(
            self.committer,
            STOCK_RULES,
            [command for _, command in effects],
            [event for event, _ in effects],
        )
        _raise_failures(results)
        self.commands += len(effects)
        refused = [
            (event, self._refusal(event, command, result))
            for (event, command), result in zip(effects, results, strict=True)
            if isinstance(result, DomainError)
        ]
        refusals = [refusal for _, refusal in refused]
        if refusals:
            recorded = await execute_in_order(
                self.committer, ORDER_RULES, refusals, [event for event, _ in refused]
            )
            _raise_failures(recorded)
            for result in recorded:
                if isinstance(result, DomainError):
                    log.error("order stock refusal not recorded: %s", result)
            self.refused += len(refusals)

    @staticmethod
    def _refusal(
        event: Event, command: stock.StockCommand, error: DomainError
    ) -> order.RecordStockRefusal:
        assert isinstance(event, STOCK_MOVING_EVENTS)
        log.warning(
            "order %s/%s: %s refused: %s",
            event.platform,
            event.platform_order_id,
            type(command).__name__,
            error,
        )
        return order.RecordStockRefusal(
            platform=event.platform,
            platform_order_id=event.platform_order_id,
            hub_sku=command.sku,
            action=_ACTIONS[type(command)],
            quantity=getattr(command, "quantity", 0),
            code=error.code,
            reason=str(error)[:500],
        )


class ProcessRunner(ProjectionRunner):
    """A :class:`ProjectionRunner` for a process manager.

    Like every runner it outlives failures of the store (its supervisor starts
    it again from its tracked position: what it had not committed is handled
    again); it is reported as ``process <name>``.
    """

    kind: ClassVar[str] = "process"


#: Every process manager the hub runs, by name.
PROCESSES: dict[str, type[OrderStockProcess]] = {
    OrderStockProcess.name: OrderStockProcess,
}


def default_processes(committer: GroupCommitter) -> list[Projection]:
    """Every process manager the hub runs, on ``committer`` (each reacting on
    it for its shortcut)."""
    processes: list[Projection] = []
    for kind in PROCESSES.values():
        process = kind(committer)
        committer.react(process.plan)
        processes.append(process)
    return processes
