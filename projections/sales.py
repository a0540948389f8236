"""Sales: the live-session dashboard's figures, folded from orders and views.

Every order counts once, in the row of the live session, platform, streamer and
minute it was *placed* in: which session and streamer is decided as the ledger
decides a sale's commission, with the domain's :func:`domain.payout.agreement_at`
on the binding's commission terms (the session whose window covers the time,
else the binding's standing agreement, else no streamer), the terms as the log
stood when the order was placed. Its payment adds the amount paid (``paid_fen``,
the amount the ledger books as the sale), a cancellation and each refund add to
the same row, whenever they come; so any hour's or session's figures are those
of the orders placed in it.

Views (``audience.ViewsRecorded``) count per channel account, source (``live``
or ``video``), source id and minute.

The read side (:func:`sessions`, :func:`summary`, :func:`series`,
:func:`breakdown`) serves the dashboard; ``docs/dashboard.md`` defines each
figure.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal, NamedTuple

import msgspec
import psycopg
from psycopg import sql

from domain import order, payout
from domain.audience import ViewsRecorded
from domain.events import Event
from projections.base import (
    BatchProjection,
    rows_json,
    select_rows,
    state_json,
    stored_before,
)

#: The session id of orders placed outside every live session.
NO_SESSION = ""

_decode_terms = msgspec.json.Decoder(payout.CommissionTerms).decode
#: A binding's terms id, asked of every order: a uuid5 is worth remembering.
_terms_id = functools.lru_cache(maxsize=4096)(payout.terms_id)

SALES_TOPICS: tuple[str, ...] = (
    order.OrderPlaced.TOPIC,
    order.OrderPaid.TOPIC,
    order.OrderCancelled.TOPIC,
    order.OrderRefunded.TOPIC,
    payout.CommissionAgreed.TOPIC,
    payout.LiveSessionScheduled.TOPIC,
    ViewsRecorded.TOPIC,
)

_ORDER_EVENTS = (
    order.OrderPlaced,
    order.OrderPaid,
    order.OrderCancelled,
    order.OrderRefunded,
)

_COUNTERS = (
    "orders",
    "paid_orders",
    "cancelled_orders",
    "refunds",
    "gmv_fen",
    "refunded_fen",
)

_UPSERT_SALES = (
    "INSERT INTO sales (channel_account, session_id, platform, streamer, minute, "
    f"{', '.join(_COUNTERS)}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (channel_account, session_id, platform, streamer, minute) "
    "DO UPDATE SET " + ", ".join(f"{c} = sales.{c} + EXCLUDED.{c}" for c in _COUNTERS)
)

_UPSERT_VIEWS = (
    "INSERT INTO sales_views (channel_account, source, source_id, minute, views) "
    "VALUES (%s, %s, %s, %s, %s) "
    "ON CONFLICT (channel_account, source, source_id, minute) "
    "DO UPDATE SET views = sales_views.views + EXCLUDED.views"
)


class _Bucket(NamedTuple):
    """The row of ``sales`` an order's figures count in (a tuple: hashed and
    compared in C, as a dict key once per event)."""

    channel_account: str
    session_id: str
    platform: str
    streamer: str
    minute: datetime


_MINUTE = timedelta(minutes=1)
#: Indexes of the counters in a row of :attr:`_Fold.counts` (as :data:`_COUNTERS`).
_ORDERS, _PAID, _CANCELLED, _REFUNDS, _GMV, _REFUNDED = range(len(_COUNTERS))
_NO_AGREEMENT = payout.Agreement()
#: An empty minute, before any asked for.
_NEVER = (datetime.max.replace(tzinfo=UTC), datetime.min.replace(tzinfo=UTC))
_TERMS_EVENTS = (payout.CommissionAgreed, payout.LiveSessionScheduled)


@dataclass
class _Fold:
    """One batch's changes, folded in memory before they are written once."""

    terms: dict[uuid.UUID, payout.CommissionTerms]
    buckets: dict[uuid.UUID, _Bucket]
    #: Per row, its counters in the order of :data:`_COUNTERS`.
    counts: dict[_Bucket, list[int]] = field(default_factory=dict)
    views: dict[tuple[str, str, str, datetime], int] = field(default_factory=dict)
    placed: dict[uuid.UUID, _Bucket] = field(default_factory=dict)
    touched_terms: set[uuid.UUID] = field(default_factory=set)
    #: The last minute asked for, [start, end): a batch's events come in time
    #: order, so most fall in the minute before them.
    _from: datetime = _NEVER[0]
    _to: datetime = _NEVER[1]

    def minute(self, at: datetime) -> datetime:
        """The minute ``at`` falls in (its start)."""
        if not self._from <= at < self._to:
            self._from = at.replace(second=0, microsecond=0)
            self._to = self._from + _MINUTE
        return self._from

    def row(self, bucket: _Bucket) -> list[int]:
        """The counters the batch adds to ``bucket``'s row."""
        row = self.counts.get(bucket)
        if row is None:
            row = self.counts[bucket] = [0] * len(_COUNTERS)
        return row

    def apply(self, event: Event, position: int) -> None:
        if type(event) is order.OrderPlaced:
            self._placed(event)
        elif isinstance(event, _TERMS_EVENTS):
            self.terms[event.originator_id] = payout.mutate_terms(
                event, self.terms.get(event.originator_id)
            )
            self.touched_terms.add(event.originator_id)
        elif isinstance(event, ViewsRecorded):
            at = (event.channel_account, event.source, event.source_id)
            key = (*at, self.minute(event.at))
            self.views[key] = self.views.get(key, 0) + event.views
        else:
            self._order_step(event, position)

    def _placed(self, event: order.OrderPlaced) -> None:
        """Count an order in the row of its placement's minute and agreement."""
        at = event.placed_at or event.occurred_at
        terms = self.terms.get(
            _terms_id(event.channel_account, event.platform, event.shop_id)
        )
        agreement = _NO_AGREEMENT if terms is None else payout.agreement_at(terms, at)
        bucket = _Bucket(
            event.channel_account,
            agreement.session_id,
            event.platform,
            agreement.streamer,
            self.minute(at),
        )
        self.buckets[event.originator_id] = self.placed[event.originator_id] = bucket
        self.row(bucket)[_ORDERS] += 1

    def _order_step(self, event: Event, position: int) -> None:
        bucket = self.buckets.get(event.originator_id)
        if bucket is None:
            raise LookupError(
                f"sales: {type(event).__name__} at position {position} for order "
                f"{event.originator_id} never placed"
            )
        row = self.row(bucket)
        if isinstance(event, order.OrderPaid):
            row[_PAID] += 1
            row[_GMV] += event.paid_fen
        elif isinstance(event, order.OrderCancelled):
            row[_CANCELLED] += 1
        elif isinstance(event, order.OrderRefunded):
            row[_REFUNDS] += 1
            row[_REFUNDED] += event.amount_fen

    async def write(self, cur: psycopg.AsyncCursor[object]) -> None:
        if self.touched_terms:
            await cur.executemany(
                "INSERT INTO sales_terms (id, state) VALUES (%s, %s::jsonb) "
                "ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state",
                [
                    (tid, state_json(self.terms[tid]))
                    for tid in sorted(self.touched_terms)
                ],
            )
        if self.placed:
            # One statement for the batch's orders (a batch of a rebuild holds
            # thousands).
            await cur.execute(
                "INSERT INTO sales_orders (id, channel_account, session_id, platform, "
                "streamer, minute) "
                + select_rows(
                    "id uuid, channel_account text, session_id text, platform text, "
                    "streamer text, minute timestamptz"
                ),
                (rows_json([(oid, *b) for oid, b in self.placed.items()]),),
            )
        if self.counts:
            await cur.executemany(
                _UPSERT_SALES,
                [(*b, *row) for b, row in self.counts.items()],
            )
        if self.views:
            await cur.executemany(
                _UPSERT_VIEWS, [(*key, n) for key, n in self.views.items()]
            )


class SalesProjection(BatchProjection):
    """Tables ``sales``, ``sales_views``, ``sales_terms`` and ``sales_orders``.

    ``sales`` holds the dashboard's counters per channel account, live session
    (:data:`NO_SESSION` for none), platform, streamer and minute of placement;
    ``sales_views`` the views per source and minute; ``sales_terms`` each
    binding's commission terms and ``sales_orders`` the row each order counts
    in (both only for the projection itself).
    """

    name: ClassVar[str] = "sales"
    tables: ClassVar[tuple[str, ...]] = (
        "sales",
        "sales_views",
        "sales_terms",
        "sales_orders",
    )
    topics: ClassVar[tuple[str, ...]] = SALES_TOPICS

    async def apply_batch(
        self, cur: psycopg.AsyncCursor[object], events: list[tuple[Event, int]]
    ) -> None:
        """Fold the batch in memory, then add each touched row's counts once."""
        fold = _Fold(
            terms=await self._terms(cur, events),
            buckets=await self._buckets(cur, events),
        )
        for event, position in events:
            fold.apply(event, position)
        await fold.write(cur)

    async def _terms(
        self, cur: psycopg.AsyncCursor[object], events: list[tuple[Event, int]]
    ) -> dict[uuid.UUID, payout.CommissionTerms]:
        """The commission terms of every binding the batch's events concern."""
        ids: set[uuid.UUID] = set()
        bindings: set[tuple[str, str, str]] = set()
        for event, _ in events:
            if type(event) is order.OrderPlaced:
                bindings.add((event.channel_account, event.platform, event.shop_id))
            elif isinstance(event, _TERMS_EVENTS):
                ids.add(event.originator_id)
        ids.update(_terms_id(*binding) for binding in bindings)
        if not ids:
            return {}
        await cur.execute(
            "SELECT id, state::text FROM sales_terms WHERE id = ANY(%b::uuid[])",
            (list(ids),),
        )
        return {
            row[0]: _decode_terms(str(row[1]))  # type: ignore[index]
            for row in await cur.fetchall()
        }

    async def _buckets(
        self, cur: psycopg.AsyncCursor[object], events: list[tuple[Event, int]]
    ) -> dict[uuid.UUID, _Bucket]:
        """The rows the batch's orders placed before it already count in."""
        ids = stored_before([e for e in events if isinstance(e[0], _ORDER_EVENTS)])
        if not ids:
            return {}
        await cur.execute(
            "SELECT id, channel_account, session_id, platform, streamer, minute "
            "FROM sales_orders WHERE id = ANY(%b::uuid[])",
            (list(ids),),
        )
        return {
            row[0]: _Bucket(*row[1:])  # type: ignore[index]
            for row in await cur.fetchall()
        }


# -- the read side ----------------------------------------------------------------


@dataclass(frozen=True)
class LiveSessionInfo:
    """One live session of a channel account, over every binding it runs on."""

    channel_account: str
    session_id: str
    starts_at: datetime
    ends_at: datetime
    streamers: tuple[str, ...]
    platforms: tuple[str, ...]


@dataclass(frozen=True)
class Selection:
    """Which rows a figure counts: one channel account's session, or more.

    ``session_id`` None: every session and the orders outside them;
    :data:`NO_SESSION`: only those outside every session. ``channel_account``
    None: every channel account.
    """

    channel_account: str | None = None
    session_id: str | None = None

    def where(self) -> sql.Composable:
        """The SQL condition on a ``sales`` row."""
        parts: list[sql.Composable] = [sql.SQL("TRUE")]
        if self.channel_account is not None:
            parts.append(
                sql.SQL("channel_account = {}").format(
                    sql.Literal(self.channel_account)
                )
            )
        if self.session_id is not None:
            parts.append(
                sql.SQL("session_id = {}").format(sql.Literal(self.session_id))
            )
        return sql.SQL(" AND ").join(parts)

    def views_where(self) -> sql.Composable:
        """The SQL condition on a ``sales_views`` row: the selected sessions' views."""
        parts: list[sql.Composable] = [sql.SQL("source = 'live'")]
        if self.channel_account is not None:
            parts.append(
                sql.SQL("channel_account = {}").format(
                    sql.Literal(self.channel_account)
                )
            )
        if self.session_id is not None:
            parts.append(sql.SQL("source_id = {}").format(sql.Literal(self.session_id)))
        return sql.SQL(" AND ").join(parts)


@dataclass(frozen=True)
class Figures:
    """The dashboard's figures of a selection (``docs/dashboard.md``)."""

    orders: int = 0
    session_orders: int = 0
    paid_orders: int = 0
    cancelled_orders: int = 0
    refunds: int = 0
    gmv_fen: int = 0
    refunded_fen: int = 0
    views: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def net_gmv_fen(self) -> int:
        """GMV less every refund of those orders."""
        return self.gmv_fen - self.refunded_fen

    @property
    def conversion_rate(self) -> float | None:
        """Orders placed in the selected live sessions per view of them."""
        if self.views <= 0:
            return None
        return round(self.session_orders / self.views, 6)

    @property
    def average_order_value_fen(self) -> int | None:
        """GMV per paid order, rounded half up to the fen."""
        if self.paid_orders <= 0:
            return None
        return (2 * self.gmv_fen + self.paid_orders) // (2 * self.paid_orders)

    def to_json(self) -> dict[str, Any]:
        """The figures as the dashboard's JSON shows them."""
        return {
            "orders": self.orders,
            "paid_orders": self.paid_orders,
            "cancelled_orders": self.cancelled_orders,
            "refunds": self.refunds,
            "gmv_fen": self.gmv_fen,
            "refunded_fen": self.refunded_fen,
            "net_gmv_fen": self.net_gmv_fen,
            "views": self.views,
            "conversion_rate": self.conversion_rate,
            "average_order_value_fen": self.average_order_value_fen,
            **self.extra,
        }


_SUMS = sql.SQL(
    "coalesce(sum(orders), 0), "
    "coalesce(sum(orders) FILTER (WHERE session_id <> ''), 0), "
    "coalesce(sum(paid_orders), 0), coalesce(sum(cancelled_orders), 0), "
    "coalesce(sum(refunds), 0), coalesce(sum(gmv_fen), 0), "
    "coalesce(sum(refunded_fen), 0)"
)


def _figures(row: Any, views: int, **extra: Any) -> Figures:
    orders, session_orders, paid, cancelled, refunds, gmv, refunded = (
        int(v) for v in row
    )
    return Figures(
        orders=orders,
        session_orders=session_orders,
        paid_orders=paid,
        cancelled_orders=cancelled,
        refunds=refunds,
        gmv_fen=gmv,
        refunded_fen=refunded,
        views=views,
        extra=extra,
    )


async def sessions(conn: psycopg.AsyncConnection[Any]) -> list[LiveSessionInfo]:
    """Every live session scheduled, newest start first."""
    cur = await conn.execute("SELECT state::text FROM sales_terms")
    found: dict[
        tuple[str, str], list[tuple[payout.CommissionTerms, payout.LiveSession]]
    ] = {}
    for (text,) in await cur.fetchall():
        terms = _decode_terms(str(text))
        for live in terms.sessions:
            found.setdefault((terms.channel_account, live.session_id), []).append(
                (terms, live)
            )
    out = [
        LiveSessionInfo(
            channel_account=account,
            session_id=sid,
            starts_at=min(live.starts_at for _, live in runs),
            ends_at=max(live.ends_at for _, live in runs),
            streamers=tuple(sorted({live.streamer for _, live in runs})),
            platforms=tuple(sorted({terms.platform for terms, _ in runs})),
        )
        for (account, sid), runs in found.items()
    ]
    return sorted(out, key=lambda s: (s.starts_at, s.session_id), reverse=True)


async def _views(conn: psycopg.AsyncConnection[Any], selection: Selection) -> int:
    if selection.session_id == NO_SESSION:
        return 0
    cur = await conn.execute(
        sql.SQL("SELECT coalesce(sum(views), 0) FROM sales_views WHERE {}").format(
            selection.views_where()
        )
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def summary(
    conn: psycopg.AsyncConnection[Any], selection: Selection = Selection()
) -> Figures:
    """The headline figures of the selected rows."""
    cur = await conn.execute(
        sql.SQL("SELECT {} FROM sales WHERE {}").format(_SUMS, selection.where())
    )
    row = await cur.fetchone()
    return _figures(row, await _views(conn, selection))


Grain = Literal["minute", "hour"]


async def series(
    conn: psycopg.AsyncConnection[Any],
    selection: Selection = Selection(),
    grain: Grain = "hour",
) -> list[Figures]:
    """The figures per minute or hour of placement, oldest first (``at`` in each)."""
    unit = sql.Literal(grain)
    cur = await conn.execute(
        sql.SQL(
            "SELECT date_trunc({unit}, minute) AS at, {sums} FROM sales WHERE {where} "
            "GROUP BY 1 ORDER BY 1"
        ).format(unit=unit, sums=_SUMS, where=selection.where())
    )
    rows = await cur.fetchall()
    views: dict[datetime, int] = {}
    if selection.session_id != NO_SESSION:
        vcur = await conn.execute(
            sql.SQL(
                "SELECT date_trunc({unit}, minute), sum(views) FROM sales_views "
                "WHERE {where} GROUP BY 1"
            ).format(unit=unit, where=selection.views_where())
        )
        views = {at: int(n) for at, n in await vcur.fetchall()}
    at_rows = {row[0]: row[1:] for row in rows}
    return [
        _figures(at_rows.get(at, (0,) * 7), views.get(at, 0), at=at.isoformat())
        for at in sorted(at_rows.keys() | views.keys())
    ]


Dimension = Literal["platform", "streamer", "session_id"]


async def breakdown(
    conn: psycopg.AsyncConnection[Any],
    selection: Selection = Selection(),
    by: Dimension = "platform",
) -> list[Figures]:
    """The figures per platform, streamer or session (the key in ``key``).

    Views belong to a live room, not to a platform or a streamer: only a
    breakdown by session carries them.
    """
    column = sql.Identifier(by)
    cur = await conn.execute(
        sql.SQL(
            "SELECT {col}, {sums} FROM sales WHERE {where} GROUP BY 1 ORDER BY 1"
        ).format(col=column, sums=_SUMS, where=selection.where())
    )
    out = []
    for row in await cur.fetchall():
        key = str(row[0])
        views = 0
        if by == "session_id" and key != NO_SESSION:
            views = await _views(
                conn,
                Selection(channel_account=selection.channel_account, session_id=key),
            )
        out.append(_figures(row[1:], views, key=key))
    return out
