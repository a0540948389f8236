"""Replay for engineers: any aggregate's history, its state at any point, and
the causal trace of one input across aggregates.

Everything here reads the log itself (never a view that may lag):

* :func:`history`: every event of one aggregate, oldest first, with its log
  position, version, time, type, payload and causal ids;
* :func:`state_at`: the aggregate folded from its events up to a log position
  or a time;
* :func:`trace`: every event that shares a correlation id with the aggregate's
  events (one input and everything it caused), in log order.

An aggregate is named by its id or by the outside world's key it is derived
from (:func:`resolve`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import psycopg
from psycopg import sql

from domain import binding, catalog, marketing, order, payout, push, stock
from domain.aggregates import kind_of
from domain.events import Event, project
from eventlog.codec import EVENTS_TABLE, decode_event
from hub.messages import event_type
from hub.service.inventory import aggregate_history

#: The event fields every history entry shows beside the payload.
META_FIELDS = (
    "originator_id",
    "originator_version",
    "event_id",
    "occurred_at",
    "correlation_id",
    "causation_id",
)

#: The outside keys :func:`resolve` understands.
REF_FORMS = (
    "an aggregate id (UUID)",
    "sku:SKU",
    "PLATFORM:order:ORDER_ID",
    "binding:CHANNEL_ACCOUNT:PLATFORM:SHOP_ID",
    "stock_push:PLATFORM:SHOP_ID:SKU",
    "PLATFORM:payout:ORDER_ID",
    "commission_terms:CHANNEL_ACCOUNT:PLATFORM:SHOP_ID",
    "campaign:CHANNEL_ACCOUNT:PLATFORM:SHOP_ID:CAMPAIGN",
    "member:CHANNEL_ACCOUNT:PLATFORM:SHOP_ID:SUBJECT_ID",
    "product:PRODUCT",
)


class ReplayError(LookupError):
    """A reference names nothing in the log, or a point is not understood."""


class LedgerPosting(msgspec.Struct, frozen=True, kw_only=True):
    """One posting of a ledger transaction an event made.

    Attributes:
        transaction: the transaction's source (what made it, stable across
            rebuilds).
        kind: the transaction's kind (``sale``, ``refund``, ``settlement``...).
        status: ``pending``, ``posted`` or ``voided``.
        account: the account posted to.
        amount_fen: the amount, debit positive, credit negative.
    """

    transaction: str
    kind: str
    status: str
    account: str
    amount_fen: int


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One event of an aggregate's history (or of a trace).

    Attributes:
        position: the event's log position.
        aggregate_type: the aggregate's type (``stock``, ``order``, ...).
        aggregate_id: the aggregate's id.
        version: the aggregate's version after the event.
        recorded_at: when the hub decided the event.
        type: the event's type name.
        event_id: the event's id.
        correlation_id: the input the event descends from (None: stored
            before the hub recorded it).
        causation_id: the event that called for it (None: a command's own).
        payload: the event's fields other than the ones above.
        postings: in a trace, the ledger postings made of the event.
    """

    position: int
    aggregate_type: str
    aggregate_id: uuid.UUID
    version: int
    recorded_at: datetime
    type: str
    event_id: uuid.UUID
    correlation_id: str | None
    causation_id: uuid.UUID | None
    payload: dict[str, Any]
    #: In a trace, the ledger postings the commission ledger made of this
    #: event (a payout's), read from the ledger's tables.
    postings: tuple[LedgerPosting, ...] = ()


class StateAt(msgspec.Struct, frozen=True, kw_only=True):
    """An aggregate as it was at one point of the log.

    Attributes:
        aggregate_type: the aggregate's type.
        aggregate_id: its id.
        at: the point asked for (a log position or a time, as given).
        position: log position of the last event folded (0: none yet).
        version: the aggregate's version then (0: it did not exist yet).
        state: the folded state (None: it did not exist yet).
    """

    aggregate_type: str
    aggregate_id: uuid.UUID
    at: str
    position: int
    version: int
    state: dict[str, Any] | None


#: Keyed by three outside keys: ``KIND:K1:K2:K3``.
_THREE_KEYS: dict[str, Callable[[str, str, str], uuid.UUID]] = {
    "binding": binding.binding_id,
    "stock_push": push.stock_push_id,
    "commission_terms": payout.terms_id,
}
#: Keyed by a binding's three keys and a fourth: ``KIND:K1:K2:K3:K4``.
_FOUR_KEYS: dict[str, Callable[[str, str, str, str], uuid.UUID]] = {
    "campaign": marketing.campaign_id,
    "member": marketing.member_id,
}
#: Keyed by one code that may itself hold ``:``: ``KIND:CODE``.
_ONE_CODE: dict[str, Callable[[str], uuid.UUID]] = {
    "sku": stock.stock_item_id,
    "product": catalog.product_id,
}
#: Keyed by a platform order: ``PLATFORM:KIND:ORDER_ID`` (or ``KIND:PLATFORM:ID``).
_PER_ORDER: dict[str, Callable[[str, str], uuid.UUID]] = {
    "order": order.order_id,
    "payout": payout.payout_id,
}


def resolve(ref: str) -> uuid.UUID:
    """The aggregate id ``ref`` names: an id or an outside key (:data:`REF_FORMS`).

    Raises:
        ReplayError: ``ref`` has none of the forms.
    """
    try:
        return uuid.UUID(ref)
    except ValueError:
        pass
    kind, _, rest = ref.partition(":")
    parts = rest.split(":")
    if kind in _ONE_CODE and rest:
        return _ONE_CODE[kind](rest)
    if kind in _THREE_KEYS and len(parts) == 3 and all(parts):
        return _THREE_KEYS[kind](*parts)
    if kind in _FOUR_KEYS and len(parts) == 4 and all(parts):
        return _FOUR_KEYS[kind](*parts)
    if kind in _PER_ORDER and len(parts) >= 2 and parts[0]:
        return _PER_ORDER[kind](parts[0], ":".join(parts[1:]))
    if parts[0] in _PER_ORDER and kind and len(parts) >= 2:
        return _PER_ORDER[parts[0]](kind, ":".join(parts[1:]))
    raise ReplayError(f"reference {ref!r} is none of: {', '.join(REF_FORMS)}")


def entry(position: int, event: Event) -> HistoryEntry:
    """The history entry of ``event`` stored at ``position``."""
    data: dict[str, Any] = msgspec.to_builtins(event)
    for name in META_FIELDS:
        data.pop(name, None)
    return HistoryEntry(
        position=position,
        aggregate_type=type(event).AGGREGATE,
        aggregate_id=event.originator_id,
        version=event.originator_version,
        recorded_at=event.occurred_at,
        type=event_type(event),
        event_id=event.event_id,
        correlation_id=event.correlation_id,
        causation_id=event.causation_id,
        payload=data,
    )


async def _events_of(database_url: str, ref: str) -> list[tuple[int, Event]]:
    aggregate_id = resolve(ref)
    events = await aggregate_history(database_url, aggregate_id)
    if not events:
        raise ReplayError(f"the log has no event of {ref!r} (aggregate {aggregate_id})")
    return events


async def history(database_url: str, ref: str) -> list[HistoryEntry]:
    """Every event of the aggregate ``ref`` names, oldest first.

    Raises:
        ReplayError: ``ref`` names no aggregate in the log.
    """
    return [entry(p, e) for p, e in await _events_of(database_url, ref)]


def parse_point(at: str) -> int | datetime:
    """A log position (an integer) or a time (ISO 8601; UTC when no zone).

    Raises:
        ReplayError: ``at`` is neither.
    """
    if at.isdigit():
        return int(at)
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        raise ReplayError(
            f"--at {at!r} is neither a log position (an integer) nor an ISO 8601 "
            "time such as 2026-11-30T08:00:00+00:00"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def fold_until(
    events: list[tuple[int, Event]], point: int | datetime
) -> tuple[Any, int, int]:
    """The state folded from ``events`` up to ``point`` (inclusive): the state,
    the last position folded and the version (0, 0 before the first event)."""
    kept = [
        (p, e)
        for p, e in events
        if (p <= point if isinstance(point, int) else e.occurred_at <= point)
    ]
    if not kept:
        return None, 0, 0
    mutate = kind_of(type(kept[0][1])).mutate
    state = project(mutate, None, (e for _, e in kept))
    return state, kept[-1][0], kept[-1][1].originator_version


async def state_at(database_url: str, ref: str, at: str) -> StateAt:
    """The aggregate ``ref`` names as it was at ``at`` (a position or a time).

    Raises:
        ReplayError: ``ref`` names no aggregate, or ``at`` is not a point.
    """
    point = parse_point(at)
    events = await _events_of(database_url, ref)
    state, position, version = fold_until(events, point)
    first = events[0][1]
    return StateAt(
        aggregate_type=type(first).AGGREGATE,
        aggregate_id=first.originator_id,
        at=at,
        position=position,
        version=version,
        state=None if state is None else msgspec.to_builtins(state),
    )


def _correlation_needle(correlation_id: str) -> bytes:
    """The bytes an event stored with ``correlation_id`` contains (msgspec's
    compact JSON of the field)."""
    return b'"correlation_id":' + msgspec.json.encode(correlation_id)


async def correlated(
    database_url: str, correlation_ids: set[str], after: int = 0
) -> list[HistoryEntry]:
    """Every event after log position ``after`` carrying one of
    ``correlation_ids``, in log order."""
    if not correlation_ids:
        return []
    needles = [_correlation_needle(c) for c in sorted(correlation_ids)]
    match = sql.SQL(" OR ").join(
        sql.SQL("position(%s::bytea in state) > 0") for _ in needles
    )
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            sql.SQL(
                "SELECT notification_id, topic, state FROM {} "
                "WHERE notification_id > %s AND ({}) ORDER BY notification_id"
            ).format(sql.Identifier(EVENTS_TABLE), match),
            [after, *needles],
            binary=True,
        )
        rows = await cur.fetchall()
    entries = [entry(int(r[0]), decode_event(str(r[1]), bytes(r[2]))) for r in rows]
    return [e for e in entries if e.correlation_id in correlation_ids]


async def with_postings(
    database_url: str, entries: list[HistoryEntry]
) -> list[HistoryEntry]:
    """``entries`` with the ledger postings each payout event made.

    The commission ledger is a projection of the payout events: each of its
    transactions records the log position of the event that made it, so the
    postings join the trace by position. A ledger that has not caught up yet
    shows fewer.
    """
    positions = [e.position for e in entries if e.aggregate_type == "payout"]
    if not positions:
        return entries
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT t.position, t.source, t.kind, t.status, p.account, p.amount_fen "
            "FROM ledger_transactions t JOIN ledger_postings p "
            "ON p.transaction_id = t.id WHERE t.position = ANY(%s) "
            "ORDER BY t.position, t.id, p.id",
            (positions,),
        )
        rows = await cur.fetchall()
    made: dict[int, list[LedgerPosting]] = {}
    for position, source, kind, status, account, amount in rows:
        made.setdefault(int(position), []).append(
            LedgerPosting(
                transaction=str(source),
                kind=str(kind),
                status=str(status),
                account=str(account),
                amount_fen=int(amount),
            )
        )
    return [
        msgspec.structs.replace(e, postings=tuple(made[e.position]))
        if e.position in made
        else e
        for e in entries
    ]


async def trace(database_url: str, ref: str) -> list[HistoryEntry]:
    """Every event caused by the inputs behind aggregate ``ref``, in log order.

    ``ref`` is an aggregate (:func:`resolve`): the trace follows each
    correlation id its events carry, across every aggregate. A ``ref`` that
    names no aggregate is taken as a correlation id itself.

    Each payout event shows the ledger postings it made (:func:`with_postings`).

    Raises:
        ReplayError: nothing in the log carries or names ``ref``.
    """
    return await with_postings(database_url, await _traced(database_url, ref))


async def _traced(database_url: str, ref: str) -> list[HistoryEntry]:
    try:
        events = await _events_of(database_url, ref)
    except ReplayError:
        found = await correlated(database_url, {ref})
        if not found:
            raise ReplayError(
                f"{ref!r} names no aggregate and no event carries it as a "
                "correlation id"
            ) from None
        return found
    ids = {e.correlation_id for _, e in events if e.correlation_id is not None}
    if not ids:
        return [entry(p, e) for p, e in events]
    return await correlated(database_url, ids, after=events[0][0] - 1)


def format_history(entries: list[HistoryEntry]) -> str:
    """One line per event: position, aggregate, version, time, type, payload."""
    lines = []
    for e in entries:
        payload = ", ".join(
            f"{k}={v}" for k, v in e.payload.items() if v not in ("", None, [], {})
        )
        lines.append(
            f"#{e.position}  {e.aggregate_type} {e.aggregate_id} v{e.version}  "
            f"{e.recorded_at.isoformat()}  {e.type}  {payload}"
        )
        lines.extend(
            f"    ledger {p.transaction} ({p.kind}, {p.status}): "
            f"{p.account} {p.amount_fen:+d}"
            for p in e.postings
        )
    return "\n".join(lines)


def format_state(at: StateAt) -> str:
    """The state as ``field: value`` lines under a header."""
    head = (
        f"{at.aggregate_type} {at.aggregate_id} at {at.at}: version {at.version}, "
        f"log position {at.position}"
    )
    if at.state is None:
        return head + "\n  (did not exist yet)"
    return "\n".join([head, *(f"  {k}: {_short(v)}" for k, v in at.state.items())])


def _short(value: Any, limit: int = 200) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
