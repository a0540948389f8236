"""Reconciliation: a platform's settlement statement against the ledger.

Each statement line (one settled order) is compared with the order's sale in
the ledger (docs/ledger.md): the gross amount with what was paid, the fee the
platform kept with the sum of the split's parts it withholds (its settlement
terms in the policy book), and, where the statement lists the streamer's
commission on its own, that commission with the streamer's part. A line for an
order the ledger has no sale of is a difference too.

The comparison of one day's statement of one shop is recorded on its own
aggregate: each difference not recorded before becomes a
:class:`SettlementDifferenceFound` event, and the run a
:class:`StatementReconciled` event; running the same day again with the same
result records nothing.
"""

from __future__ import annotations

import functools
import uuid
from datetime import date
from typing import Annotated, Any, ClassVar

import msgspec

from domain.events import Context, Event, State, advanced, derive_id, register
from domain.settlement import PlatformSettlement, Split

#: Fields a difference can name.
FIELDS = ("order", "gross_fen", "fee_fen", "commission_fen")


class StatementLine(msgspec.Struct, frozen=True, kw_only=True):
    """One settled order as the platform's statement gives it."""

    entry_id: str
    order_id: str
    gross_fen: int
    fee_fen: int
    net_fen: int
    commission_fen: int | None = None


class LedgerSale(msgspec.Struct, frozen=True, kw_only=True):
    """An order's sale as the ledger holds it."""

    amount_fen: int
    split: Split


class Difference(msgspec.Struct, frozen=True, kw_only=True):
    """A field where the statement and the ledger disagree about an order.

    ``ledger_fen`` is None when the ledger has no sale of the order.
    """

    order_id: str
    field: str
    statement_fen: int
    ledger_fen: int | None

    @property
    def key(self) -> str:
        """What identifies the difference within its statement."""
        return f"{self.order_id}:{self.field}:{self.statement_fen}:{self.ledger_fen}"


def withheld_fen(split: Split, terms: PlatformSettlement) -> int:
    """What the platform keeps back of a sale under ``terms``."""
    parts = {
        "streamer": split.streamer_fen,
        "platform": split.platform_fen,
        "payment": split.payment_fen,
    }
    return sum(parts[name] for name in terms.withholds)


def compare_line(
    line: StatementLine, sale: LedgerSale | None, terms: PlatformSettlement
) -> list[Difference]:
    """Every field where ``line`` and the ledger's ``sale`` disagree."""
    if sale is None:
        return [
            Difference(
                order_id=line.order_id,
                field="order",
                statement_fen=line.gross_fen,
                ledger_fen=None,
            )
        ]
    pairs = [
        ("gross_fen", line.gross_fen, sale.amount_fen),
        ("fee_fen", line.fee_fen, withheld_fen(sale.split, terms)),
    ]
    if terms.statement_commission and line.commission_fen is not None:
        pairs.append(("commission_fen", line.commission_fen, sale.split.streamer_fen))
    return [
        Difference(
            order_id=line.order_id, field=name, statement_fen=ours, ledger_fen=theirs
        )
        for name, ours, theirs in pairs
        if ours != theirs
    ]


def statement_id(platform: str, shop_id: str, day: date) -> uuid.UUID:
    """The aggregate id of a shop's statement of ``day``."""
    return derive_id("statement", platform, shop_id, day.isoformat())


class RecordReconciliation(msgspec.Struct, frozen=True, kw_only=True):
    """Record the comparison of a shop's statement of ``day`` with the ledger."""

    platform: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    shop_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    day: date
    lines: Annotated[int, msgspec.Meta(ge=0)]
    differences: tuple[Difference, ...] = ()


@register
class SettlementDifferenceFound(Event, frozen=True, kw_only=True):
    """A platform's statement and the ledger disagree about an order's field."""

    TOPIC: ClassVar[str] = "ledger.SettlementDifferenceFound"
    AGGREGATE: ClassVar[str] = "ledger"

    platform: str
    shop_id: str
    day: date
    order_id: str
    field: str
    statement_fen: int
    ledger_fen: int | None


@register
class StatementReconciled(Event, frozen=True, kw_only=True):
    """A shop's statement of ``day`` was compared with the ledger."""

    TOPIC: ClassVar[str] = "ledger.StatementReconciled"
    AGGREGATE: ClassVar[str] = "ledger"

    platform: str
    shop_id: str
    day: date
    lines: int
    differences: int


class Statement(State, frozen=True, kw_only=True):
    """A shop's statement of a day: what the last run found."""

    lines: int = 0
    differences: tuple[str, ...] = ()
    runs: int = 0


def decide(
    state: Statement | None, command: RecordReconciliation, ctx: Context
) -> list[Event]:
    """The events of a reconciliation run (none when nothing changed)."""
    sid = statement_id(command.platform, command.shop_id, command.day)
    version = 0 if state is None else state.version
    known = set() if state is None else set(state.differences)
    new = [d for d in command.differences if d.key not in known]
    unchanged = state is not None and state.lines == command.lines
    if unchanged and not new and len(command.differences) == len(known):
        return []
    events: list[Event] = []
    where: dict[str, Any] = {"platform": command.platform, "shop_id": command.shop_id}
    for difference in new:
        version += 1
        events.append(
            SettlementDifferenceFound(
                **ctx.meta(sid, version),
                **where,
                day=command.day,
                order_id=difference.order_id,
                field=difference.field,
                statement_fen=difference.statement_fen,
                ledger_fen=difference.ledger_fen,
            )
        )
    events.append(
        StatementReconciled(
            **ctx.meta(sid, version + 1),
            **where,
            day=command.day,
            lines=command.lines,
            differences=len(command.differences),
        )
    )
    return events


@functools.singledispatch
def mutate(event: Event, state: Statement | None) -> Statement:
    """Evolve a statement's reconciliation by ``event``."""
    raise TypeError(f"statement cannot apply {type(event).__name__}")


@mutate.register
def _(event: SettlementDifferenceFound, state: Statement | None) -> Statement:
    current = advanced(Statement, state, event)
    key = Difference(
        order_id=event.order_id,
        field=event.field,
        statement_fen=event.statement_fen,
        ledger_fen=event.ledger_fen,
    ).key
    return msgspec.structs.replace(current, differences=(*current.differences, key))


@mutate.register
def _(event: StatementReconciled, state: Statement | None) -> Statement:
    current = advanced(Statement, state, event)
    return msgspec.structs.replace(current, lines=event.lines, runs=current.runs + 1)
