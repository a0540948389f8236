"""The commission ledger in PostgreSQL: a projection of the payout events.

Each payout event becomes the ledger changes :func:`domain.ledger.ledger_changes`
names (the same rules the ledger in memory folds): a pending transaction of the
split when an order is paid or refunded, posted with a settlement transaction
on its settlement date, voided when it will never settle. Tables
(``migrations/0011_ledger.sql``, ``0012_ledger_payouts.sql``, ``0013_ledger_ids.sql``):
``ledger_accounts``, ``ledger_transactions``, ``ledger_postings`` and
``ledger_payouts``. The database refuses a transaction that does not balance
and any change to a posting; the projection checks balance before it writes.

The read side (:func:`balances`, :func:`trial_balance`, :func:`statement`,
:func:`transactions`, :func:`export_rows`, :func:`due_payouts`) serves the CLI
and the finance API. Balances are taken at any instant by effective time (when
the money moved) or by recorded time (when the hub knew).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, ClassVar, TextIO, cast

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from domain.events import Event
from domain.ledger import (
    LedgerChange,
    LedgerTransaction,
    StatusChange,
    TimeBasis,
    TransactionStatus,
    account_kind,
    check_balanced,
    ledger_changes,
    payout_source,
)
from domain.payout import (
    SALE,
    PayoutReversed,
    PayoutScheduled,
    PayoutSettled,
    PayoutVoided,
    refund_payout,
)
from projections.base import BatchProjection, rows_json, select_rows

#: Payout events, by stable topic.
PAYOUT_TOPICS: tuple[str, ...] = tuple(
    cls.TOPIC for cls in (PayoutScheduled, PayoutReversed, PayoutSettled, PayoutVoided)
)

_INSERT_PAYOUTS = (
    "INSERT INTO ledger_payouts (platform, platform_order_id, payout, shop_id, "
    "channel, streamer, source, amount_fen, streamer_fen, platform_fen, "
    "payment_fen, merchant_fen, status, settles_on, effective_at, position) "
    + select_rows(
        "platform text, platform_order_id text, payout text, shop_id text, "
        "channel text, streamer text, source text, amount_fen bigint, "
        "streamer_fen bigint, platform_fen bigint, payment_fen bigint, "
        "merchant_fen bigint, status text, settles_on date, "
        "effective_at timestamptz, position bigint"
    )
    + " ON CONFLICT DO NOTHING"
)

#: Transactions, then their postings (each with its account's kind and the
#: position that names the account first): a transaction whose source is
#: already written is skipped with its postings, and the accounts its new
#: postings name are added unless known. One statement however many
#: transactions; the balance triggers still check each at commit.
_INSERT_TRANSACTIONS = (
    "WITH tx AS (INSERT INTO ledger_transactions (id, source, kind, platform, "
    "platform_order_id, status, effective_at, recorded_at, posted_effective_at, "
    "posted_recorded_at, position) "
    + select_rows(
        "id bigint, source text, kind text, platform text, platform_order_id text, "
        "status text, effective_at timestamptz, recorded_at timestamptz, "
        "posted_effective_at timestamptz, posted_recorded_at timestamptz, "
        "position bigint"
    )
    + " ON CONFLICT (source) DO NOTHING RETURNING id), "
    "lines AS ("
    + select_rows(
        "id bigint, transaction_id bigint, account text, kind text, "
        "position bigint, amount_fen bigint"
    )
    + "), new_lines AS (SELECT * FROM lines WHERE transaction_id IN "
    "(SELECT id FROM tx)), "
    "accounts AS (INSERT INTO ledger_accounts (name, kind, position) "
    "SELECT DISTINCT ON (account) account, kind, position FROM new_lines "
    "ORDER BY account, position ON CONFLICT (name) DO NOTHING) "
    "INSERT INTO ledger_postings (id, transaction_id, account, amount_fen) "
    "SELECT id, transaction_id, account, amount_fen FROM new_lines"
)


class LedgerProjection(BatchProjection):
    """Tables ``ledger_*``: the commission ledger and its payouts."""

    name: ClassVar[str] = "ledger"
    tables: ClassVar[tuple[str, ...]] = (
        "ledger_postings",
        "ledger_transactions",
        "ledger_accounts",
        "ledger_payouts",
    )
    topics: ClassVar[tuple[str, ...]] = PAYOUT_TOPICS

    async def apply_batch(
        self, cur: psycopg.AsyncCursor[object], events: list[tuple[Event, int]]
    ) -> None:
        """Write each event's ledger changes, in log order.

        A run of scheduled and reversed payouts only adds rows: it is gathered
        and written in two statements (:class:`LedgerRows`). A settlement or a
        void reads and updates what came before it, so the run is written
        first and the event after it.
        """
        rows = LedgerRows()
        for event, position in events:
            if isinstance(event, PayoutScheduled | PayoutReversed):
                rows.payout(event, position)
                for index, change in enumerate(ledger_changes(event)):
                    assert isinstance(change, LedgerTransaction)
                    rows.transaction(change, position, index)
                continue
            await rows.write(cur)
            await self._close_payouts(cur, event, position)
            pending = await self._pending(cur, event)
            for index, change in enumerate(ledger_changes(event, pending)):
                await write_change(cur, change, position, index)
        await rows.write(cur)

    @staticmethod
    async def _close_payouts(
        cur: psycopg.AsyncCursor[object], event: Event, position: int
    ) -> None:
        if isinstance(event, PayoutSettled | PayoutVoided):
            payouts = (
                [event.payout]
                if isinstance(event, PayoutSettled)
                else list(event.payouts)
            )
            status = "settled" if isinstance(event, PayoutSettled) else "voided"
            await cur.execute(
                "UPDATE ledger_payouts SET status = %s, position = %s "
                "WHERE platform = %s AND platform_order_id = %s "
                "AND payout = ANY(%s) AND status = 'pending'",
                (status, position, event.platform, event.platform_order_id, payouts),
            )

    @staticmethod
    async def _pending(
        cur: psycopg.AsyncCursor[object], event: Event
    ) -> dict[str, tuple[int, int]]:
        if not isinstance(event, PayoutSettled):
            return {}
        source = payout_source(event.platform, event.platform_order_id, event.payout)
        await cur.execute(
            "SELECT amount_fen, payment_fen FROM ledger_payouts WHERE source = %s",
            (source,),
        )
        row = await cur.fetchone()
        if row is None:
            return {}
        amount, fee = cast("tuple[int, int]", row)
        return {source: (int(amount), int(fee))}


#: Transactions one event may write (ids are ``position * 4 + index``).
TRANSACTIONS_PER_EVENT = 4
#: Postings one transaction may have (ids are ``transaction id * 16 + line``).
POSTINGS_PER_TRANSACTION = 16


async def write_change(
    cur: psycopg.AsyncCursor[Any], change: LedgerChange, position: int, index: int = 0
) -> None:
    """Write one ledger change, the ``index``-th of the event at ``position``
    (a transaction already written is skipped).

    Raises:
        domain.ledger.UnbalancedTransactionError: postings that do not balance
            (the database would refuse them at commit as well).
    """
    if isinstance(change, StatusChange):
        columns = (
            ("posted_effective_at", "posted_recorded_at")
            if change.status == "posted"
            else ("voided_effective_at", "voided_recorded_at")
        )
        await cur.execute(
            sql.SQL(
                "UPDATE ledger_transactions SET status = %s, {} = %s, {} = %s "
                "WHERE source = %s AND status = 'pending'"
            ).format(*(sql.Identifier(c) for c in columns)),
            (change.status, change.effective_at, change.recorded_at, change.source),
        )
        return
    rows = LedgerRows()
    rows.transaction(change, position, index)
    await rows.write(cur)


class LedgerRows:
    """Ledger rows gathered to be written together: payouts in one statement,
    transactions with their postings and accounts in another
    (:meth:`write`). Ids come from the log position, so a rebuild writes the
    same rows; a payout or a transaction already written is skipped."""

    def __init__(self) -> None:
        self._payouts: list[tuple[object, ...]] = []
        self._transactions: list[tuple[object, ...]] = []
        self._lines: list[tuple[object, ...]] = []

    def payout(self, event: PayoutScheduled | PayoutReversed, position: int) -> None:
        """The payout row of a scheduled or reversed payout."""
        if isinstance(event, PayoutScheduled):
            sign, payout, effective_at = 1, SALE, event.paid_at
        else:
            sign, payout = -1, refund_payout(event.refund_id)
            effective_at = event.refunded_at
        split = event.split
        self._payouts.append(
            (
                event.platform,
                event.platform_order_id,
                payout,
                event.shop_id,
                event.channel,
                event.streamer,
                payout_source(event.platform, event.platform_order_id, payout),
                sign * event.amount_fen,
                sign * split.streamer_fen,
                sign * split.platform_fen,
                sign * split.payment_fen,
                sign * split.merchant_fen,
                "pending",
                event.settles_on,
                effective_at,
                position,
            )
        )

    def transaction(self, tx: LedgerTransaction, position: int, index: int) -> None:
        """``tx``, the ``index``-th transaction of the event at ``position``.

        Raises:
            domain.ledger.UnbalancedTransactionError: postings that do not
                balance (the database would refuse them at commit as well).
            ValueError: an index or a count of postings beyond the id ranges.
        """
        check_balanced(tx.source, tx.postings)
        if not 0 <= index < TRANSACTIONS_PER_EVENT or len(tx.postings) >= (
            POSTINGS_PER_TRANSACTION
        ):
            raise ValueError(
                f"transaction {tx.source}: index {index} or {len(tx.postings)} "
                "postings beyond the ledger's id ranges"
            )
        tx_id = position * TRANSACTIONS_PER_EVENT + index
        posted = tx.status == "posted"
        self._transactions.append(
            (
                tx_id,
                tx.source,
                tx.kind,
                tx.platform,
                tx.platform_order_id,
                tx.status,
                tx.effective_at,
                tx.recorded_at,
                tx.effective_at if posted else None,
                tx.recorded_at if posted else None,
                position,
            )
        )
        self._lines += [
            (
                tx_id * POSTINGS_PER_TRANSACTION + line,
                tx_id,
                p.account,
                account_kind(p.account),
                position,
                p.amount_fen,
            )
            for line, p in enumerate(tx.postings)
        ]

    async def write(self, cur: psycopg.AsyncCursor[Any]) -> None:
        """Write what was gathered, and start again empty."""
        if self._payouts:
            await cur.execute(_INSERT_PAYOUTS, (rows_json(self._payouts),))
        if self._transactions:
            await cur.execute(
                _INSERT_TRANSACTIONS,
                (rows_json(self._transactions), rows_json(self._lines)),
            )
        self._payouts, self._transactions, self._lines = [], [], []


# -- reads ----------------------------------------------------------------------


def _status_condition(basis: TimeBasis, status: TransactionStatus) -> sql.Composable:
    """SQL true for a transaction of ``status`` at instant ``%(at)s``."""
    created = sql.Identifier("effective_at" if basis == "effective" else "recorded_at")
    posted = sql.Identifier(f"posted_{basis}_at")
    voided = sql.Identifier(f"voided_{basis}_at")
    if status == "posted":
        return sql.SQL("t.{} <= %(at)s").format(posted)
    if status == "voided":
        return sql.SQL(
            "t.{voided} <= %(at)s AND NOT coalesce(t.{posted} <= %(at)s, false)"
        ).format(voided=voided, posted=posted)
    return sql.SQL(
        "t.{created} <= %(at)s AND NOT coalesce(t.{posted} <= %(at)s, false) "
        "AND NOT coalesce(t.{voided} <= %(at)s, false)"
    ).format(created=created, posted=posted, voided=voided)


@dataclass(frozen=True)
class Balance:
    """An account's balance: debit positive, credit negative."""

    account: str
    kind: str
    balance_fen: int


async def balances(
    conn: psycopg.AsyncConnection[Any],
    at: datetime,
    basis: TimeBasis = "effective",
    status: TransactionStatus = "posted",
) -> list[Balance]:
    """Every account's balance at ``at`` over transactions of ``status`` then
    (accounts at zero are left out), by account name."""
    query = sql.SQL(
        "SELECT p.account, sum(p.amount_fen) FROM ledger_postings p "
        "JOIN ledger_transactions t ON t.id = p.transaction_id WHERE {} "
        "GROUP BY p.account HAVING sum(p.amount_fen) <> 0 ORDER BY p.account"
    ).format(_status_condition(basis, status))
    cur = await conn.execute(query, {"at": at})
    return [
        Balance(account=str(name), kind=account_kind(str(name)), balance_fen=int(total))
        for name, total in await cur.fetchall()
    ]


@dataclass(frozen=True)
class TrialBalance:
    """Sums over every posting of the transactions that count."""

    debits_fen: int
    credits_fen: int
    transactions: int
    #: Sources of the transactions whose postings do not add up to zero.
    unbalanced: list[str]


async def trial_balance(
    conn: psycopg.AsyncConnection[Any], *, include_pending: bool = True
) -> TrialBalance:
    """Debits and credits of every transaction not voided (only posted ones
    when ``include_pending`` is false), and any transaction that does not
    balance (none, unless the database's own check was bypassed)."""
    statuses = ["posted", "pending"] if include_pending else ["posted"]
    cur = await conn.execute(
        "SELECT coalesce(sum(p.amount_fen) FILTER (WHERE p.amount_fen > 0), 0), "
        "coalesce(-sum(p.amount_fen) FILTER (WHERE p.amount_fen < 0), 0), "
        "count(DISTINCT t.id) FROM ledger_transactions t "
        "JOIN ledger_postings p ON p.transaction_id = t.id WHERE t.status = ANY(%s)",
        (statuses,),
    )
    row = await cur.fetchone()
    assert row is not None
    debits, credits, count = row
    cur = await conn.execute(
        "SELECT t.source FROM ledger_transactions t LEFT JOIN ledger_postings p "
        "ON p.transaction_id = t.id GROUP BY t.id, t.source "
        "HAVING coalesce(sum(p.amount_fen), 0) <> 0 OR count(p.id) < 2 "
        "ORDER BY t.source"
    )
    unbalanced = [str(r[0]) for r in await cur.fetchall()]
    return TrialBalance(
        debits_fen=int(debits),
        credits_fen=int(credits),
        transactions=int(count),
        unbalanced=unbalanced,
    )


_TX_COLUMNS = (
    "t.id, t.source, t.kind, t.status, t.platform, t.platform_order_id, "
    "t.effective_at, t.recorded_at, t.posted_effective_at, t.voided_effective_at"
)


async def transactions(
    conn: psycopg.AsyncConnection[Any],
    start: datetime,
    end: datetime,
    *,
    account: str | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Transactions effective in ``[start, end)`` (touching ``account`` if
    given), each with its postings, oldest first."""
    where = "t.effective_at >= %(start)s AND t.effective_at < %(end)s"
    if account is not None:
        where += (
            " AND EXISTS (SELECT 1 FROM ledger_postings q "
            "WHERE q.transaction_id = t.id AND q.account = %(account)s)"
        )
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_TX_COLUMNS}, "
            "json_agg(json_build_object('account', p.account, 'amount_fen', "
            "p.amount_fen) ORDER BY p.id) AS postings "
            "FROM ledger_transactions t JOIN ledger_postings p "
            f"ON p.transaction_id = t.id WHERE {where} "
            "GROUP BY t.id ORDER BY t.effective_at, t.id LIMIT %(limit)s",
            {"start": start, "end": end, "account": account, "limit": limit},
        )
        return list(await cur.fetchall())


async def statement(
    conn: psycopg.AsyncConnection[Any],
    account: str,
    start: datetime,
    end: datetime,
    basis: TimeBasis = "effective",
) -> dict[str, Any]:
    """An account's statement for ``[start, end)``: the posted balance at the
    start, each posting posted in the period, and the balance at the end."""
    opening = await _account_balance(conn, account, start, basis)
    posted = sql.Identifier(f"posted_{basis}_at")
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            sql.SQL(
                "SELECT t.source, t.kind, t.platform, t.platform_order_id, "
                "t.{posted} AS posted_at, p.amount_fen FROM ledger_postings p "
                "JOIN ledger_transactions t ON t.id = p.transaction_id "
                "WHERE p.account = %(account)s AND t.{posted} >= %(start)s "
                "AND t.{posted} < %(end)s ORDER BY t.{posted}, p.id"
            ).format(posted=posted),
            {"account": account, "start": start, "end": end},
        )
        lines = list(await cur.fetchall())
    return {
        "account": account,
        "period_start": start,
        "period_end": end,
        "basis": basis,
        "opening_fen": opening,
        "lines": lines,
        "closing_fen": opening + sum(int(line["amount_fen"]) for line in lines),
    }


async def _account_balance(
    conn: psycopg.AsyncConnection[Any], account: str, at: datetime, basis: TimeBasis
) -> int:
    """``account``'s posted balance just before ``at``."""
    posted = sql.Identifier(f"posted_{basis}_at")
    cur = await conn.execute(
        sql.SQL(
            "SELECT coalesce(sum(p.amount_fen), 0) FROM ledger_postings p "
            "JOIN ledger_transactions t ON t.id = p.transaction_id "
            "WHERE p.account = %s AND t.{} < %s"
        ).format(posted),
        (account, at),
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


#: Columns of the CSV export, in order.
EXPORT_COLUMNS = (
    "effective_at",
    "recorded_at",
    "source",
    "kind",
    "status",
    "platform",
    "platform_order_id",
    "account",
    "debit_fen",
    "credit_fen",
)


async def export_rows(
    conn: psycopg.AsyncConnection[Any], start: datetime, end: datetime
) -> list[tuple[Any, ...]]:
    """One row per posting of the transactions effective in ``[start, end)``
    (columns :data:`EXPORT_COLUMNS`), oldest first."""
    cur = await conn.execute(
        "SELECT t.effective_at, t.recorded_at, t.source, t.kind, t.status, "
        "t.platform, t.platform_order_id, p.account, "
        "greatest(p.amount_fen, 0), greatest(-p.amount_fen, 0) "
        "FROM ledger_postings p JOIN ledger_transactions t "
        "ON t.id = p.transaction_id "
        "WHERE t.effective_at >= %s AND t.effective_at < %s "
        "ORDER BY t.effective_at, t.id, p.id",
        (start, end),
    )
    return [tuple(row) for row in await cur.fetchall()]


def write_csv(out: TextIO, rows: list[tuple[Any, ...]]) -> None:
    """Postings as CSV a spreadsheet opens: a header row of
    :data:`EXPORT_COLUMNS`, ISO times, amounts in fen."""
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    for row in rows:
        writer.writerow([v.isoformat() if isinstance(v, datetime) else v for v in row])


@dataclass(frozen=True)
class DuePayout:
    """A pending payout whose settlement date has come."""

    platform: str
    platform_order_id: str
    payout: str
    settles_on: date


async def due_payouts(
    conn: psycopg.AsyncConnection[Any], day: date, limit: int = 1000
) -> list[DuePayout]:
    """Pending payouts that settle on or before ``day``, earliest first."""
    cur = await conn.execute(
        "SELECT platform, platform_order_id, payout, settles_on FROM ledger_payouts "
        "WHERE status = 'pending' AND settles_on <= %s "
        "ORDER BY settles_on, platform, platform_order_id LIMIT %s",
        (day, limit),
    )
    return [
        DuePayout(str(p), str(o), str(ref), on)
        for p, o, ref, on in await cur.fetchall()
    ]


async def sale_payouts(
    conn: psycopg.AsyncConnection[Any], platform: str, order_ids: list[str]
) -> dict[str, dict[str, Any]]:
    """The sale payouts of ``platform``'s orders ``order_ids``, by order id."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT * FROM ledger_payouts WHERE platform = %s AND payout = %s "
            "AND platform_order_id = ANY(%s)",
            (platform, SALE, order_ids),
        )
        return {str(row["platform_order_id"]): row for row in await cur.fetchall()}
