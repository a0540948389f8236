"""Payouts: what each paid order owes every party, and when it settles.

Two aggregates, in the hub's functional style.

**Commission terms** (one per binding): the streamer's agreement for the
binding's sales (:class:`AgreeCommission`) and for the orders placed during a
live session on it (:class:`ScheduleLiveSession`, a time window with its own
streamer and rate). A rate must lie within the policy book's range.
:func:`agreement_at` says which agreement an order placed at a given instant
falls under: the live session covering it, else the binding's agreement, else
none (a sale without a streamer pays no commission).

**Payout** (one per order): the payout of the sale and one per refund, each
pending until its payment channel's settlement date (T+n) and then settled:

* :class:`SchedulePayout` splits the paid amount
  (:func:`domain.settlement.split_sale`) with the streamer's rate and the book's
  platform and payment fees → :class:`PayoutScheduled`; a channel only for
  enterprises refuses another subject (:class:`ChannelNotAllowedError`);
* :class:`ReversePayout` reverses the split in proportion to a refund
  (:func:`domain.settlement.reverse_split`) → :class:`PayoutReversed`; the
  refund that returns everything while the sale's payout is still pending also
  voids every pending payout of the order (:class:`PayoutVoided`): nothing of it
  ever settles;
* :class:`SettlePayouts` settles every pending payout due by ``as_of`` →
  :class:`PayoutSettled` each.

Every command is idempotent: a payout scheduled, a refund reversed or a payout
settled already decides nothing.
"""

from __future__ import annotations

import functools
import uuid
from datetime import date, datetime
from typing import Annotated, Any, ClassVar, Literal

import msgspec

from domain.events import Context, DomainError, Event, State, derive_id, register
from domain.identity import SubjectKind
from domain.order import Fen, PlatformOrderId, PositiveFen
from domain.policy import PlatformCode
from domain.settlement import (
    NO_SPLIT,
    Rate,
    SettlementPolicy,
    Split,
    parse_rate,
    reverse_split,
    settlement_date,
    split_sale,
)

#: The payout of the sale itself (a refund's payout is ``refund:<refund_id>``).
SALE = "sale"

#: A streamer's id (their account on the platform or in the merchant's books).
StreamerId = Annotated[str, msgspec.Meta(max_length=128)]
#: A live session's id, chosen by the merchant.
SessionId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
#: Text naming a shop.
ShopId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


def terms_id(channel_account: str, platform: str, shop_id: str) -> uuid.UUID:
    """The aggregate id of a binding's commission terms."""
    return derive_id("commission_terms", channel_account, platform, shop_id)


def payout_id(platform: str, platform_order_id: str) -> uuid.UUID:
    """The aggregate id of an order's payouts."""
    return derive_id("payout", platform, platform_order_id)


def refund_payout(refund_id: str) -> str:
    """The payout reference of refund ``refund_id``."""
    return f"refund:{refund_id}"


# -- errors ---------------------------------------------------------------------


class CommissionRateError(DomainError):
    """A streamer's rate outside the policy book's range."""

    code = "commission_rate"


class LiveSessionError(DomainError):
    """A live session that ends before it starts."""

    code = "live_session"


class ChannelNotAllowedError(DomainError):
    """A payment channel that does not serve the seller's subject."""

    code = "channel_not_allowed"


class UnknownPayoutError(DomainError):
    """A refund or settlement for an order that has no payout."""

    code = "unknown_payout"


class SettlementTermsMissingError(DomainError):
    """Payouts asked of a hub whose policy book has no settlement terms."""

    code = "settlement_terms_missing"


# -- commission terms -----------------------------------------------------------


class AgreeCommission(msgspec.Struct, frozen=True, kw_only=True):
    """Set the streamer and rate of a binding's sales (outside live sessions)."""

    channel_account: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    platform: PlatformCode
    shop_id: ShopId
    streamer: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    rate: Rate


class ScheduleLiveSession(msgspec.Struct, frozen=True, kw_only=True):
    """Orders placed on the binding in ``[starts_at, ends_at)`` pay ``streamer``
    ``rate``; a session id scheduled again replaces its terms."""

    channel_account: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    platform: PlatformCode
    shop_id: ShopId
    session_id: SessionId
    starts_at: datetime
    ends_at: datetime
    streamer: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    rate: Rate


TermsCommand = AgreeCommission | ScheduleLiveSession


@register
class CommissionAgreed(Event, frozen=True, kw_only=True):
    """The binding's sales pay ``streamer`` a commission of ``rate``."""

    TOPIC: ClassVar[str] = "payout.CommissionAgreed"
    AGGREGATE: ClassVar[str] = "payout"

    channel_account: str
    platform: str
    shop_id: str
    streamer: str
    rate: str


@register
class LiveSessionScheduled(Event, frozen=True, kw_only=True):
    """Orders placed in the session's window pay its streamer ``rate``."""

    TOPIC: ClassVar[str] = "payout.LiveSessionScheduled"
    AGGREGATE: ClassVar[str] = "payout"

    channel_account: str
    platform: str
    shop_id: str
    session_id: str
    starts_at: datetime
    ends_at: datetime
    streamer: str
    rate: str


class LiveSession(msgspec.Struct, frozen=True, kw_only=True):
    """A live session's window and terms."""

    session_id: str
    starts_at: datetime
    ends_at: datetime
    streamer: str
    rate: str


class CommissionTerms(State, frozen=True, kw_only=True):
    """A binding's commission agreements."""

    channel_account: str
    platform: str
    shop_id: str
    streamer: str = ""
    rate: str = "0"
    sessions: tuple[LiveSession, ...] = ()


class Agreement(msgspec.Struct, frozen=True, kw_only=True):
    """Which streamer a sale pays, at what rate, under which agreement."""

    streamer: str = ""
    rate: str = "0"
    #: ``live_session:<id>``, ``binding`` or ``none``.
    source: str = "none"
    #: The live session's id when the agreement is a live session's, else "".
    session_id: str = ""


def agreement_at(terms: CommissionTerms | None, placed_at: datetime) -> Agreement:
    """The agreement an order placed at ``placed_at`` falls under."""
    if terms is None:
        return Agreement()
    for session in terms.sessions:
        if session.starts_at <= placed_at < session.ends_at:
            return Agreement(
                streamer=session.streamer,
                rate=session.rate,
                source=f"live_session:{session.session_id}",
                session_id=session.session_id,
            )
    if terms.streamer:
        return Agreement(streamer=terms.streamer, rate=terms.rate, source="binding")
    return Agreement()


def check_streamer_rate(rate: str, policy: SettlementPolicy) -> None:
    """Refuse a streamer's rate outside the book's range.

    Raises:
        CommissionRateError: naming the rate and the range.
    """
    value = parse_rate(rate, "rate")
    low = parse_rate(policy.streamer_rate_min, "streamer_rate_min")
    high = parse_rate(policy.streamer_rate_max, "streamer_rate_max")
    if not low <= value <= high:
        raise CommissionRateError(
            f"streamer rate {rate} is outside [{policy.streamer_rate_min}, "
            f"{policy.streamer_rate_max}] (the policy book's commission range)"
        )


def decide_terms(
    state: CommissionTerms | None,
    command: TermsCommand,
    ctx: Context,
    policy: SettlementPolicy,
) -> list[Event]:
    """Check an agreement and return its event (none when nothing changes).

    Raises:
        CommissionRateError: a rate outside the book's range.
        LiveSessionError: a session that ends before it starts.
    """
    check_streamer_rate(command.rate, policy)
    tid = terms_id(command.channel_account, command.platform, command.shop_id)
    meta = ctx.meta(tid, 1 if state is None else state.version + 1)
    keys: dict[str, Any] = {
        "channel_account": command.channel_account,
        "platform": command.platform,
        "shop_id": command.shop_id,
        "streamer": command.streamer,
        "rate": command.rate,
    }
    if isinstance(command, AgreeCommission):
        if state is not None and (state.streamer, state.rate) == (
            command.streamer,
            command.rate,
        ):
            return []
        return [CommissionAgreed(**meta, **keys)]
    if command.ends_at <= command.starts_at:
        raise LiveSessionError(
            f"live session {command.session_id}: ends_at {command.ends_at.isoformat()}"
            f" <= starts_at {command.starts_at.isoformat()} (a session ends after "
            "it starts)"
        )
    session = LiveSession(
        session_id=command.session_id,
        starts_at=command.starts_at,
        ends_at=command.ends_at,
        streamer=command.streamer,
        rate=command.rate,
    )
    if state is not None and session in state.sessions:
        return []
    return [
        LiveSessionScheduled(
            **meta,
            **keys,
            session_id=command.session_id,
            starts_at=command.starts_at,
            ends_at=command.ends_at,
        )
    ]


@functools.singledispatch
def mutate_terms(event: Event, state: CommissionTerms | None) -> CommissionTerms:
    """Evolve commission terms by ``event``."""
    raise TypeError(f"commission terms cannot apply {type(event).__name__}")


def _terms(state: CommissionTerms | None, event: Any) -> CommissionTerms:
    if state is not None:
        return msgspec.structs.replace(state, version=event.originator_version)
    return CommissionTerms(
        id=event.originator_id,
        version=event.originator_version,
        channel_account=event.channel_account,
        platform=event.platform,
        shop_id=event.shop_id,
    )


@mutate_terms.register
def _(event: CommissionAgreed, state: CommissionTerms | None) -> CommissionTerms:
    return msgspec.structs.replace(
        _terms(state, event), streamer=event.streamer, rate=event.rate
    )


@mutate_terms.register
def _(event: LiveSessionScheduled, state: CommissionTerms | None) -> CommissionTerms:
    current = _terms(state, event)
    others = tuple(s for s in current.sessions if s.session_id != event.session_id)
    session = LiveSession(
        session_id=event.session_id,
        starts_at=event.starts_at,
        ends_at=event.ends_at,
        streamer=event.streamer,
        rate=event.rate,
    )
    return msgspec.structs.replace(current, sessions=(*others, session))


# -- payout commands ------------------------------------------------------------


class SchedulePayout(msgspec.Struct, frozen=True, kw_only=True):
    """Split a paid order and schedule its payout for its channel's settlement date.

    ``subject_kind`` is the seller's certified subject (a channel only for
    enterprises refuses another or an unknown one); ``streamer``/``streamer_rate``
    the agreement the order falls under (``agreement`` names it).
    """

    platform: PlatformCode
    platform_order_id: PlatformOrderId
    shop_id: ShopId
    amount_fen: Fen
    paid_at: datetime
    subject_kind: SubjectKind | None = None
    streamer: StreamerId = ""
    streamer_rate: Rate = "0"
    agreement: Annotated[str, msgspec.Meta(max_length=200)] = "none"


class ReversePayout(msgspec.Struct, frozen=True, kw_only=True):
    """Reverse the split in proportion to refund ``refund_id`` of ``amount_fen``."""

    platform: PlatformCode
    platform_order_id: PlatformOrderId
    refund_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    amount_fen: PositiveFen
    refunded_at: datetime


class SettlePayouts(msgspec.Struct, frozen=True, kw_only=True):
    """Settle the order's pending payouts due on or before ``as_of``."""

    platform: PlatformCode
    platform_order_id: PlatformOrderId
    as_of: datetime


class RefusePayout(msgspec.Struct, frozen=True, kw_only=True):
    """Record why the order's payout could not be scheduled."""

    platform: PlatformCode
    platform_order_id: PlatformOrderId
    code: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    reason: Annotated[str, msgspec.Meta(max_length=500)] = ""


PayoutCommand = SchedulePayout | ReversePayout | SettlePayouts | RefusePayout


# -- payout events --------------------------------------------------------------


@register
class PayoutScheduled(Event, frozen=True, kw_only=True):
    """A paid order's split, pending until ``settles_on``."""

    TOPIC: ClassVar[str] = "payout.PayoutScheduled"
    AGGREGATE: ClassVar[str] = "payout"

    platform: str
    platform_order_id: str
    shop_id: str
    channel: str
    amount_fen: int
    streamer: str
    streamer_rate: str
    platform_rate: str
    payment_rate: str
    agreement: str
    split: Split
    paid_at: datetime
    settles_on: date


@register
class PayoutReversed(Event, frozen=True, kw_only=True):
    """A refund's reversal of the split (``split`` adds up to ``amount_fen``),
    pending until ``settles_on``; ``refunded_fen`` is everything refunded."""

    TOPIC: ClassVar[str] = "payout.PayoutReversed"
    AGGREGATE: ClassVar[str] = "payout"

    platform: str
    platform_order_id: str
    shop_id: str
    channel: str
    streamer: str
    refund_id: str
    amount_fen: int
    refunded_fen: int
    split: Split
    refunded_at: datetime
    settles_on: date


@register
class PayoutSettled(Event, frozen=True, kw_only=True):
    """Payout ``payout`` (``sale`` or ``refund:<id>``) settled on ``settled_on``."""

    TOPIC: ClassVar[str] = "payout.PayoutSettled"
    AGGREGATE: ClassVar[str] = "payout"

    platform: str
    platform_order_id: str
    payout: str
    channel: str
    settled_on: date


@register
class PayoutVoided(Event, frozen=True, kw_only=True):
    """Pending payouts that will never settle (refunded in full before it)."""

    TOPIC: ClassVar[str] = "payout.PayoutVoided"
    AGGREGATE: ClassVar[str] = "payout"

    platform: str
    platform_order_id: str
    payouts: tuple[str, ...]
    reason: str = ""


@register
class PayoutRefused(Event, frozen=True, kw_only=True):
    """The order's payout could not be scheduled; ``reason`` names the rule."""

    TOPIC: ClassVar[str] = "payout.PayoutRefused"
    AGGREGATE: ClassVar[str] = "payout"

    platform: str
    platform_order_id: str
    code: str
    reason: str = ""


PayoutEvent = (
    PayoutScheduled | PayoutReversed | PayoutSettled | PayoutVoided | PayoutRefused
)

PayoutStatus = Literal["pending", "settled", "voided"]


class PayoutLine(msgspec.Struct, frozen=True, kw_only=True):
    """One payout of an order: the sale's or a refund's."""

    payout: str
    amount_fen: int
    settles_on: date
    status: PayoutStatus = "pending"


class Payout(State, frozen=True, kw_only=True):
    """An order's payouts: the sale's split, the refunds, what settled."""

    platform: str
    platform_order_id: str
    shop_id: str = ""
    channel: str = ""
    streamer: str = ""
    paid_fen: int = 0
    split: Split = NO_SPLIT
    refunded_fen: int = 0
    settle_days: int = 0
    lines: tuple[PayoutLine, ...] = ()
    refused: str = ""

    def line(self, payout: str) -> PayoutLine | None:
        """The payout named ``payout``, if any."""
        for line in self.lines:
            if line.payout == payout:
                return line
        return None


# -- decide ---------------------------------------------------------------------


def _where(command: PayoutCommand) -> str:
    return f"{command.platform}/{command.platform_order_id}"


def decide(
    state: Payout | None,
    command: PayoutCommand,
    ctx: Context,
    policy: SettlementPolicy | None,
) -> list[Event]:
    """Check ``command`` against the order's payouts and return the new events.

    Raises:
        SettlementTermsMissingError: the policy book has no settlement terms.
        ChannelNotAllowedError: an enterprise-only channel for another subject.
        CommissionRateError: a streamer rate outside the book's range.
        UnknownPayoutError: a refund or settlement for an order with no payout.
    """
    pid = payout_id(command.platform, command.platform_order_id)
    version = 1 if state is None else state.version + 1
    if isinstance(command, RefusePayout):
        return _refuse(state, command, ctx.meta(pid, version))
    if policy is None:
        raise SettlementTermsMissingError(
            f"payout of {_where(command)}: the policy book has no settlement terms "
            "($.settlement)"
        )
    if isinstance(command, SchedulePayout):
        if state is not None:
            return []
        return [_schedule(command, ctx.meta(pid, version), policy)]
    if state is None:
        raise UnknownPayoutError(
            f"order {_where(command)} has no payout: {type(command).__name__} "
            "needs its payout scheduled first"
        )
    if state.refused:
        return []
    if isinstance(command, ReversePayout):
        return _reverse(state, command, ctx, policy)
    return _settle(state, command, ctx)


def _refuse(
    state: Payout | None, command: RefusePayout, meta: dict[str, Any]
) -> list[Event]:
    if state is not None:
        return []
    return [
        PayoutRefused(
            **meta,
            platform=command.platform,
            platform_order_id=command.platform_order_id,
            code=command.code,
            reason=command.reason,
        )
    ]


def _schedule(
    command: SchedulePayout, meta: dict[str, Any], policy: SettlementPolicy
) -> PayoutScheduled:
    terms = policy.platform(command.platform)
    channel = policy.channel(terms.payment_channel)
    if channel.enterprise_only and command.subject_kind != "enterprise":
        raise ChannelNotAllowedError(
            f"payout of {_where(command)}: payment channel {terms.payment_channel} "
            f"settles only for an enterprise subject, the seller's is "
            f"{command.subject_kind or 'unknown'}"
        )
    if command.streamer:
        check_streamer_rate(command.streamer_rate, policy)
    split = split_sale(
        command.amount_fen,
        streamer_rate=command.streamer_rate if command.streamer else "0",
        platform_rate=policy.platform_fee_rate,
        payment_rate=channel.fee_rate,
    )
    return PayoutScheduled(
        **meta,
        platform=command.platform,
        platform_order_id=command.platform_order_id,
        shop_id=command.shop_id,
        channel=terms.payment_channel,
        amount_fen=command.amount_fen,
        streamer=command.streamer,
        streamer_rate=command.streamer_rate if command.streamer else "0",
        platform_rate=policy.platform_fee_rate,
        payment_rate=channel.fee_rate,
        agreement=command.agreement,
        split=split,
        paid_at=command.paid_at,
        settles_on=settlement_date(command.paid_at, channel.settle_days),
    )


def _reverse(
    state: Payout, command: ReversePayout, ctx: Context, policy: SettlementPolicy
) -> list[Event]:
    ref = refund_payout(command.refund_id)
    if state.line(ref) is not None:
        return []
    left = state.paid_fen - state.refunded_fen
    if command.amount_fen > left:
        raise UnknownPayoutError(
            f"payout of {_where(command)}: refund {command.amount_fen} fen > "
            f"{left} fen left of paid {state.paid_fen} fen (a refund never "
            "exceeds what was paid)"
        )
    split = reverse_split(
        state.split, state.paid_fen, state.refunded_fen, command.amount_fen
    )
    refunded = state.refunded_fen + command.amount_fen
    events: list[Event] = [
        PayoutReversed(
            **ctx.meta(state.id, state.version + 1),
            platform=state.platform,
            platform_order_id=state.platform_order_id,
            shop_id=state.shop_id,
            channel=state.channel,
            streamer=state.streamer,
            refund_id=command.refund_id,
            amount_fen=command.amount_fen,
            refunded_fen=refunded,
            split=split,
            refunded_at=command.refunded_at,
            settles_on=settlement_date(command.refunded_at, state.settle_days),
        )
    ]
    sale = state.line(SALE)
    if refunded == state.paid_fen and sale is not None and sale.status == "pending":
        pending = tuple(line.payout for line in state.lines if line.status == "pending")
        events.append(
            PayoutVoided(
                **ctx.meta(state.id, state.version + 2),
                platform=state.platform,
                platform_order_id=state.platform_order_id,
                payouts=(*pending, ref),
                reason="refunded in full before the sale's payout settled",
            )
        )
    return events


def _settle(state: Payout, command: SettlePayouts, ctx: Context) -> list[Event]:
    today = settlement_date(command.as_of, 0)
    due = [
        line
        for line in state.lines
        if line.status == "pending" and line.settles_on <= today
    ]
    return [
        PayoutSettled(
            **ctx.meta(state.id, state.version + offset),
            platform=state.platform,
            platform_order_id=state.platform_order_id,
            payout=line.payout,
            channel=state.channel,
            settled_on=line.settles_on,
        )
        for offset, line in enumerate(due, start=1)
    ]


# -- mutate ---------------------------------------------------------------------


def _existing(state: Payout | None, event: Event) -> Payout:
    assert state is not None, f"{type(event).__name__} before PayoutScheduled"
    return state


@functools.singledispatch
def mutate(event: Event, state: Payout | None) -> Payout | None:
    """Evolve an order's payouts by ``event``."""
    raise TypeError(f"payout cannot apply {type(event).__name__}")


@mutate.register
def _(event: PayoutScheduled, state: Payout | None) -> Payout:
    return Payout(
        id=event.originator_id,
        version=event.originator_version,
        platform=event.platform,
        platform_order_id=event.platform_order_id,
        shop_id=event.shop_id,
        channel=event.channel,
        streamer=event.streamer,
        paid_fen=event.amount_fen,
        split=event.split,
        settle_days=(event.settles_on - settlement_date(event.paid_at, 0)).days,
        lines=(
            PayoutLine(
                payout=SALE, amount_fen=event.amount_fen, settles_on=event.settles_on
            ),
        ),
    )


@mutate.register
def _(event: PayoutReversed, state: Payout | None) -> Payout:
    current = _existing(state, event)
    line = PayoutLine(
        payout=refund_payout(event.refund_id),
        amount_fen=-event.amount_fen,
        settles_on=event.settles_on,
    )
    return msgspec.structs.replace(
        current,
        version=event.originator_version,
        refunded_fen=event.refunded_fen,
        lines=(*current.lines, line),
    )


def _with_status(
    state: Payout, event: Event, payouts: tuple[str, ...], status: PayoutStatus
) -> Payout:
    return msgspec.structs.replace(
        state,
        version=event.originator_version,
        lines=tuple(
            msgspec.structs.replace(line, status=status)
            if line.payout in payouts
            else line
            for line in state.lines
        ),
    )


@mutate.register
def _(event: PayoutSettled, state: Payout | None) -> Payout:
    return _with_status(_existing(state, event), event, (event.payout,), "settled")


@mutate.register
def _(event: PayoutVoided, state: Payout | None) -> Payout:
    return _with_status(_existing(state, event), event, event.payouts, "voided")


@mutate.register
def _(event: PayoutRefused, state: Payout | None) -> Payout:
    return Payout(
        id=event.originator_id,
        version=event.originator_version,
        platform=event.platform,
        platform_order_id=event.platform_order_id,
        refused=event.reason or event.code,
    )
