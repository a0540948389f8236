"""The commission ledger's rules: accounts, the postings of each payout event,
and a ledger in memory that folds them (the PostgreSQL projection writes the
same changes; tests compare the two).

Double entry with signed amounts: a posting's ``amount_fen`` is a debit when
positive and a credit when negative, and a transaction's postings add up to
zero. Accounts (docs/ledger.md):

* ``receivable:<channel>``: what a payment channel holds for the hub's sales;
* ``clearing``: money the channels have paid out, not yet passed on;
* ``merchant``, ``streamer:<id>``, ``platform_fee:<platform>``: what each
  party is owed (credits);
* ``payment_fee:<channel>``: the channel's fees.

Transactions are two-phase: a payout's split is recorded ``pending`` when the
order is paid (or refunded) and becomes ``posted`` on its settlement date, when
a second, posted transaction moves the money from the channel's receivable to
clearing less the channel's fee; a payout that will never settle is
``voided``. Each transaction is keyed by its ``source`` (``sale:…``,
``refund:…``, ``settle:…``), so applying an event twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import msgspec

from domain.events import Event
from domain.payout import (
    SALE,
    PayoutReversed,
    PayoutScheduled,
    PayoutSettled,
    PayoutVoided,
    refund_payout,
)
from domain.settlement import NO_SPLIT, Split, start_of_day

CLEARING = "clearing"
MERCHANT = "merchant"

TransactionStatus = Literal["pending", "posted", "voided"]
#: Which time a balance is taken at: when it happened, or when the hub knew.
TimeBasis = Literal["effective", "recorded"]


def streamer_account(streamer: str) -> str:
    """The account of what streamer ``streamer`` is owed."""
    return f"streamer:{streamer}"


def platform_fee_account(platform: str) -> str:
    """The account of ``platform``'s service fees."""
    return f"platform_fee:{platform}"


def payment_fee_account(channel: str) -> str:
    """The account of payment channel ``channel``'s fees."""
    return f"payment_fee:{channel}"


def receivable_account(channel: str) -> str:
    """The account of what payment channel ``channel`` holds for the hub."""
    return f"receivable:{channel}"


def account_kind(account: str) -> str:
    """The kind of an account: its name before the first ``:``."""
    return account.partition(":")[0]


class UnbalancedTransactionError(ValueError):
    """A transaction's postings do not add up to zero."""


class Posting(msgspec.Struct, frozen=True, kw_only=True):
    """One line of a transaction: a debit (> 0) or credit (< 0) of an account."""

    account: str
    amount_fen: int


class LedgerTransaction(msgspec.Struct, frozen=True, kw_only=True):
    """A balanced set of postings, keyed by its source."""

    source: str
    kind: str
    status: TransactionStatus
    platform: str
    platform_order_id: str
    effective_at: datetime
    recorded_at: datetime
    postings: tuple[Posting, ...]


class StatusChange(msgspec.Struct, frozen=True, kw_only=True):
    """A pending transaction posted or voided."""

    source: str
    status: Literal["posted", "voided"]
    effective_at: datetime
    recorded_at: datetime


LedgerChange = LedgerTransaction | StatusChange


def check_balanced(source: str, postings: Iterable[Posting]) -> None:
    """Refuse postings that do not add up to zero, or a zero posting.

    Raises:
        UnbalancedTransactionError: naming the source and the sum.
    """
    lines = list(postings)
    total = sum(p.amount_fen for p in lines)
    if total != 0 or len(lines) < 2 or any(p.amount_fen == 0 for p in lines):
        raise UnbalancedTransactionError(
            f"transaction {source}: postings add up to {total} fen over "
            f"{len(lines)} lines (a transaction has two or more non-zero postings "
            "adding up to zero)"
        )


def _postings(pairs: Iterable[tuple[str, int]]) -> tuple[Posting, ...]:
    """Postings of the non-zero amounts, one per account."""
    merged: dict[str, int] = {}
    for account, amount in pairs:
        merged[account] = merged.get(account, 0) + amount
    return tuple(
        Posting(account=account, amount_fen=amount)
        for account, amount in merged.items()
        if amount != 0
    )


def split_postings(
    split: Split, *, channel: str, platform: str, streamer: str
) -> tuple[Posting, ...]:
    """A sale's split: the channel's receivable against what each party is owed.

    A negative split (a refund's reversal) gives the mirror postings.
    """
    return _postings(
        [
            (receivable_account(channel), split.total_fen),
            (MERCHANT, -split.merchant_fen),
            (streamer_account(streamer or "none"), -split.streamer_fen),
            (platform_fee_account(platform), -split.platform_fen),
            (payment_fee_account(channel), -split.payment_fen),
        ]
    )


def settlement_postings(
    amount_fen: int, payment_fen: int, *, channel: str
) -> tuple[Posting, ...]:
    """The channel pays ``amount - fee`` into clearing and keeps its fee."""
    return _postings(
        [
            (CLEARING, amount_fen - payment_fen),
            (payment_fee_account(channel), payment_fen),
            (receivable_account(channel), -amount_fen),
        ]
    )


def sale_source(platform: str, platform_order_id: str) -> str:
    """The source of a sale's transaction."""
    return f"sale:{platform}:{platform_order_id}"


def payout_source(platform: str, platform_order_id: str, payout: str) -> str:
    """The source of a payout's transaction (``sale`` or ``refund:<id>``)."""
    if payout == SALE:
        return sale_source(platform, platform_order_id)
    return f"{payout}:{platform}:{platform_order_id}"


def _transaction(
    event: PayoutScheduled | PayoutReversed | PayoutSettled,
    source: str,
    effective_at: datetime,
    postings: tuple[Posting, ...],
    *,
    kind: str,
    status: TransactionStatus,
) -> LedgerTransaction:
    """A transaction of ``event``'s order, recorded when the event occurred."""
    return LedgerTransaction(
        source=source,
        kind=kind,
        status=status,
        platform=event.platform,
        platform_order_id=event.platform_order_id,
        effective_at=effective_at,
        recorded_at=event.occurred_at,
        postings=postings,
    )


def ledger_changes(
    event: Event, pending: dict[str, tuple[int, int]] | None = None
) -> list[LedgerChange]:
    """What a payout event changes in the ledger.

    ``pending`` maps a payout transaction's source to its ``(amount, payment
    fee)``; a settlement needs them for its second transaction. Callers keep it
    (the projection reads it from its tables).
    """
    if isinstance(event, PayoutScheduled | PayoutReversed):
        if isinstance(event, PayoutScheduled):
            sign, split, payout, at = 1, event.split, SALE, event.paid_at
        else:
            sign, split = -1, NO_SPLIT.minus(event.split)
            payout, at = refund_payout(event.refund_id), event.refunded_at
        source = payout_source(event.platform, event.platform_order_id, payout)
        postings = split_postings(
            split,
            channel=event.channel,
            platform=event.platform,
            streamer=event.streamer,
        )
        if not postings:  # a sale of nothing moves no money
            return []
        if pending is not None:
            pending[source] = (split.total_fen, split.payment_fen)
        kind = "sale" if sign > 0 else "refund"
        return [_transaction(event, source, at, postings, kind=kind, status="pending")]
    if isinstance(event, PayoutSettled):
        source = payout_source(event.platform, event.platform_order_id, event.payout)
        due = start_of_day(event.settled_on)
        changes: list[LedgerChange] = [
            StatusChange(
                source=source,
                status="posted",
                effective_at=due,
                recorded_at=event.occurred_at,
            )
        ]
        amount, fee = (pending or {}).get(source, (0, 0))
        postings = settlement_postings(amount, fee, channel=event.channel)
        if postings:
            settle = f"settle:{source}"
            changes.append(
                _transaction(
                    event, settle, due, postings, kind="settlement", status="posted"
                )
            )
        return changes
    if isinstance(event, PayoutVoided):
        return [
            StatusChange(
                source=payout_source(event.platform, event.platform_order_id, payout),
                status="voided",
                effective_at=event.occurred_at,
                recorded_at=event.occurred_at,
            )
            for payout in event.payouts
        ]
    return []


@dataclass
class _Entry:
    transaction: LedgerTransaction
    posted: dict[TimeBasis, datetime] = field(default_factory=dict)
    voided: dict[TimeBasis, datetime] = field(default_factory=dict)

    def created(self, basis: TimeBasis) -> datetime:
        tx = self.transaction
        return tx.effective_at if basis == "effective" else tx.recorded_at


@dataclass
class Ledger:
    """The ledger in memory: transactions by source, folded from changes."""

    entries: dict[str, _Entry] = field(default_factory=dict)
    #: Amount and payment fee of each payout transaction (for its settlement).
    pending: dict[str, tuple[int, int]] = field(default_factory=dict)

    def apply_event(self, event: Event) -> None:
        """Fold one event's changes in."""
        for change in ledger_changes(event, self.pending):
            self.apply(change)

    def apply(self, change: LedgerChange) -> None:
        """Fold one change in (a transaction already known is skipped)."""
        if isinstance(change, LedgerTransaction):
            if change.source in self.entries:
                return
            check_balanced(change.source, change.postings)
            entry = _Entry(change)
            if change.status == "posted":
                entry.posted = {
                    "effective": change.effective_at,
                    "recorded": change.recorded_at,
                }
            self.entries[change.source] = entry
            return
        found = self.entries.get(change.source)
        if found is None or found.posted or found.voided:
            return
        times: dict[TimeBasis, datetime] = {
            "effective": change.effective_at,
            "recorded": change.recorded_at,
        }
        if change.status == "posted":
            found.posted = times
        else:
            found.voided = times

    def transactions(self) -> Iterator[LedgerTransaction]:
        """Every transaction, in the order recorded."""
        return (entry.transaction for entry in self.entries.values())

    def status_at(
        self, source: str, at: datetime | None, basis: TimeBasis = "recorded"
    ) -> TransactionStatus | None:
        """The status of transaction ``source`` at ``at`` (None: not yet)."""
        entry = self.entries[source]
        return _status(entry, at, basis)

    def balances(
        self,
        at: datetime | None = None,
        basis: TimeBasis = "recorded",
        status: TransactionStatus = "posted",
    ) -> dict[str, int]:
        """Each account's balance at ``at`` (None: now) over transactions of
        ``status`` then; accounts at zero are left out."""
        totals: dict[str, int] = {}
        for entry in self.entries.values():
            if _status(entry, at, basis) != status:
                continue
            for posting in entry.transaction.postings:
                totals[posting.account] = (
                    totals.get(posting.account, 0) + posting.amount_fen
                )
        return {account: total for account, total in totals.items() if total}


def _status(
    entry: _Entry, at: datetime | None, basis: TimeBasis
) -> TransactionStatus | None:
    if at is not None and entry.created(basis) > at:
        return None
    posted = entry.posted.get(basis)
    if posted is not None and (at is None or posted <= at):
        return "posted"
    voided = entry.voided.get(basis)
    if voided is not None and (at is None or voided <= at):
        return "voided"
    return "pending"
