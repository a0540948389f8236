"""The order aggregate: one platform order, from placement to its end.

Lifecycle (each step an event)::

    placed → paid → shipped → completed
    placed → cancelled
    paid | shipped | completed → refunded        (a full refund)

A partial refund keeps the order where it is (it may still ship or complete)
and adds to ``refunded_fen``; the refund that brings the total refunded up to
what was paid makes the order ``refunded``. A paid order is not cancelled: the
platform returns the money, so the connector sends a full refund.

Money is integers of fen: a line's total is ``quantity * unit_price_fen -
discount_fen`` (never below zero; the per-line discount is where coupons plug
in), the order's total is the sum of its lines, and refunds never exceed what
was paid. Buyers appear only as an opaque ``buyer_ref`` and, sealed under the
key of their data subject, as a :class:`domain.personal.SealedBuyer`.

Platforms push out of order and more than once. The rules:

* a step the order has already taken is a no-op (a duplicate push), and so is
  placing an order that exists (its first placement stands);
* a payment or cancellation for an order the hub has not seen yet carries the
  order (``placement``): the order is placed from it and the step is taken in
  the same decision. Without it, :class:`UnknownOrderError`, and the connector
  retries after the placement arrives;
* any other step out of order (shipped before paid, paid after cancelled) is
  refused with :class:`IllegalOrderTransitionError` naming the current status and
  the allowed steps; the connector retries when the missing step has arrived.

What an order means for stock is :func:`stock_effects`: placed commits its
units per hub SKU, cancelled releases them, shipped consumes them, and a refund
before shipment releases the refunded units. The commands are idempotent per
order (:func:`order_ref`), so a process manager may apply them more than once.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

import msgspec

from domain.events import Context, DomainError, Event, State, derive_id, register
from domain.personal import SealedBuyer
from domain.policy import PlatformCode
from domain.stock import (
    CommitStock,
    ConsumeStock,
    Quantity,
    ReleaseStock,
    SkuCode,
    StockCommand,
)

#: An order's id on its platform.
PlatformOrderId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
#: A SKU's id on its platform.
PlatformSkuId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
#: An amount of money in fen (0.01 CNY), zero allowed.
Fen = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000_000)]
#: A positive amount of money in fen.
PositiveFen = Annotated[int, msgspec.Meta(gt=0, le=1_000_000_000_000)]
#: A short reference (a shop, a payment, a parcel, a buyer's opaque key).
Reference = Annotated[str, msgspec.Meta(max_length=128)]
#: Free text of a reason.
Reason = Annotated[str, msgspec.Meta(max_length=500)]

OrderStatus = Literal["placed", "paid", "shipped", "completed", "cancelled", "refunded"]
#: What an order asks of a stock item (see :func:`stock_effect`).
StockAction = Literal["commit", "release", "consume"]


def order_id(platform: str, platform_order_id: str) -> uuid.UUID:
    """The aggregate id of ``platform``'s order ``platform_order_id``.

    A repeated push computes the same id and so finds the same order.
    """
    return derive_id("order", platform, platform_order_id)


def order_ref(platform: str, platform_order_id: str) -> str:
    """The order's reference in stock commitments: ``platform:platform_order_id``."""
    return f"{platform}:{platform_order_id}"


# -- errors ---------------------------------------------------------------------


class UnmappedSkuError(DomainError):
    """Order lines name platform SKUs that no listing maps to a hub SKU."""

    code = "unmapped_sku"


class UnknownOrderError(DomainError):
    """A step for an order the hub has not seen, without the order to place."""

    code = "unknown_order"


class IllegalOrderTransitionError(DomainError):
    """A step that does not apply to the order's current status."""

    code = "illegal_order_transition"


class PlacementMismatchError(DomainError):
    """A step carries the placement of another order."""

    code = "placement_mismatch"


class RefundExceedsPaidError(DomainError):
    """A refund would return more money than was paid."""

    code = "refund_exceeds_paid"


class RefundQuantityError(DomainError):
    """A refund names more units of a line than are left, or no such line."""

    code = "refund_quantity"


# -- lines ----------------------------------------------------------------------


class PlatformLine(msgspec.Struct, frozen=True, kw_only=True):
    """An order line as the platform sends it, before its SKU is mapped."""

    platform_sku_id: PlatformSkuId
    quantity: Quantity
    unit_price_fen: Fen
    discount_fen: Fen = 0


class OrderLine(msgspec.Struct, frozen=True, kw_only=True):
    """An order line, its platform SKU mapped to a hub SKU.

    ``discount_fen`` is the line's whole discount; the line's total
    (:attr:`total_fen`) may not fall below zero.
    """

    platform_sku_id: PlatformSkuId
    hub_sku: SkuCode
    quantity: Quantity
    unit_price_fen: Fen
    discount_fen: Fen = 0

    def __post_init__(self) -> None:
        """Refuse a discount larger than the line's price (decoding names the line)."""
        gross = self.quantity * self.unit_price_fen
        if self.discount_fen > gross:
            raise ValueError(
                f"line {self.platform_sku_id}: {self.quantity} x "
                f"{self.unit_price_fen} fen - discount {self.discount_fen} fen "
                f"= {gross - self.discount_fen} fen < 0 (a line total is never "
                "negative)"
            )

    @property
    def total_fen(self) -> int:
        """What the line costs: quantity times unit price, less its discount."""
        return self.quantity * self.unit_price_fen - self.discount_fen


def map_lines(
    lines: Sequence[PlatformLine], listing_map: Mapping[str, str]
) -> tuple[OrderLine, ...]:
    """Map each line's platform SKU to its hub SKU through a binding's listing map.

    Raises:
        UnmappedSkuError: naming every platform SKU the map lacks.
    """
    missing = sorted({ln.platform_sku_id for ln in lines} - listing_map.keys())
    if missing:
        raise UnmappedSkuError(
            f"platform skus {', '.join(missing)} are not in the listing map "
            "(every line must map to a hub sku)"
        )
    return tuple(
        OrderLine(
            platform_sku_id=ln.platform_sku_id,
            hub_sku=listing_map[ln.platform_sku_id],
            quantity=ln.quantity,
            unit_price_fen=ln.unit_price_fen,
            discount_fen=ln.discount_fen,
        )
        for ln in lines
    )


def order_total(lines: Iterable[OrderLine]) -> int:
    """The order's total in fen: the sum of its line totals."""
    return sum(line.total_fen for line in lines)


class RefundLine(msgspec.Struct, frozen=True, kw_only=True):
    """Units of one platform SKU a refund covers."""

    platform_sku_id: PlatformSkuId
    quantity: Quantity


class StockMove(msgspec.Struct, frozen=True, kw_only=True):
    """Units of a hub SKU an order step moves out of its commitment.

    ``remaining`` units stay committed to the order after the step.
    """

    hub_sku: str
    quantity: int
    remaining: int = 0


# -- commands -------------------------------------------------------------------


class PlaceOrder(msgspec.Struct, frozen=True, kw_only=True):
    """Record an order placed on ``platform`` with its mapped lines."""

    platform: PlatformCode
    platform_order_id: PlatformOrderId
    shop_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    lines: Annotated[tuple[OrderLine, ...], msgspec.Meta(min_length=1, max_length=500)]
    channel_account: Reference = ""
    buyer_ref: Reference = ""
    placed_at: datetime | None = None
    buyer: SealedBuyer | None = None


class PayOrder(msgspec.Struct, frozen=True, kw_only=True):
    """Record the payment; ``amount_fen`` defaults to the order's total.

    ``placement`` places the order first when the payment arrives before it.
    """

    platform: PlatformCode
    platform_order_id: PlatformOrderId
    amount_fen: Fen | None = None
    payment_ref: Reference = ""
    paid_at: datetime | None = None
    placement: PlaceOrder | None = None


class ShipOrder(msgspec.Struct, frozen=True, kw_only=True):
    """Record the shipment of a paid order.

    ``notify_platform``: the shipment happened on the hub's side (a warehouse
    said so), so the platform the order came from is told (carrier and
    tracking reference); the order intake sets it false for a shipment the
    platform itself reported.
    """

    platform: PlatformCode
    platform_order_id: PlatformOrderId
    carrier: Reference = ""
    tracking_ref: Reference = ""
    shipped_at: datetime | None = None
    notify_platform: bool = True


class CompleteOrder(msgspec.Struct, frozen=True, kw_only=True):
    """Record that the buyer received a shipped order (or it was auto-confirmed)."""

    platform: PlatformCode
    platform_order_id: PlatformOrderId


class CancelOrder(msgspec.Struct, frozen=True, kw_only=True):
    """Cancel an order not yet paid.

    ``placement`` places the order first when the cancellation arrives before it.
    """

    platform: PlatformCode
    platform_order_id: PlatformOrderId
    reason: Reason = ""
    placement: PlaceOrder | None = None


class RefundOrder(msgspec.Struct, frozen=True, kw_only=True):
    """Refund ``amount_fen`` (``None``: all that is left) under ``refund_id``.

    ``lines`` name the units returned or never to be sent; a refund of money
    alone (a price adjustment) has none.
    """

    platform: PlatformCode
    platform_order_id: PlatformOrderId
    refund_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    amount_fen: PositiveFen | None = None
    lines: Annotated[tuple[RefundLine, ...], msgspec.Meta(max_length=500)] = ()
    reason: Reason = ""


class RecordShipmentNotice(msgspec.Struct, frozen=True, kw_only=True):
    """Record how the platform answered the hub's shipment notice.

    Sent by the hub's shipment notifier after calling the platform, never by
    an outside caller. A fact about the order, not a step; a notice already
    recorded as sent is not recorded again.
    """

    platform: PlatformCode
    platform_order_id: PlatformOrderId
    request_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    outcome: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    code: str = ""
    message: Reason = ""


class RecordStockRefusal(msgspec.Struct, frozen=True, kw_only=True):
    """Record that a stock item refused one of the order's stock commands.

    Sent by the order-stock process (``hub/processes.py``) when, say, committing
    the order's units was refused because more were sold than available (the
    platform oversold). It is a fact about the order, not a step: the status
    stays. It is recorded once per ``action`` and hub SKU, so a replayed
    refusal changes nothing.
    """

    platform: PlatformCode
    platform_order_id: PlatformOrderId
    hub_sku: SkuCode
    action: StockAction
    quantity: Annotated[int, msgspec.Meta(ge=0)] = 0
    code: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    reason: Reason = ""


OrderCommand = (
    PlaceOrder
    | PayOrder
    | ShipOrder
    | CompleteOrder
    | CancelOrder
    | RefundOrder
    | RecordStockRefusal
    | RecordShipmentNotice
)

#: Steps each status accepts (a step already taken is a no-op, not listed).
ALLOWED_COMMANDS: dict[str, tuple[str, ...]] = {
    "placed": ("PayOrder", "CancelOrder"),
    "paid": ("ShipOrder", "RefundOrder"),
    "shipped": ("CompleteOrder", "RefundOrder"),
    "completed": ("RefundOrder",),
    "cancelled": (),
    "refunded": (),
}

#: The status each step leads to (refunds: only the one that refunds in full).
_STEP_STATUS: dict[type[Any], OrderStatus] = {
    PayOrder: "paid",
    ShipOrder: "shipped",
    CompleteOrder: "completed",
    CancelOrder: "cancelled",
}


# -- events ---------------------------------------------------------------------


@register
class OrderPlaced(Event, frozen=True, kw_only=True):
    """An order was placed on a platform; ``total_fen`` is the sum of its lines."""

    TOPIC: ClassVar[str] = "order.OrderPlaced"
    AGGREGATE: ClassVar[str] = "order"

    platform: str
    platform_order_id: str
    shop_id: str
    channel_account: str
    lines: tuple[OrderLine, ...]
    total_fen: int
    buyer_ref: str = ""
    placed_at: datetime | None = None
    buyer: SealedBuyer | None = None


@register
class OrderPaid(Event, frozen=True, kw_only=True):
    """The buyer paid ``paid_fen``."""

    TOPIC: ClassVar[str] = "order.OrderPaid"
    AGGREGATE: ClassVar[str] = "order"

    platform: str
    platform_order_id: str
    paid_fen: int
    payment_ref: str = ""
    paid_at: datetime | None = None


@register
class OrderShipped(Event, frozen=True, kw_only=True):
    """The order left the warehouse; ``stock`` is what it consumes per hub SKU."""

    TOPIC: ClassVar[str] = "order.OrderShipped"
    AGGREGATE: ClassVar[str] = "order"

    platform: str
    platform_order_id: str
    stock: tuple[StockMove, ...]
    carrier: str = ""
    tracking_ref: str = ""
    shipped_at: datetime | None = None
    #: The platform is to be told (the shipment happened on the hub's side).
    notify_platform: bool = False


@register
class OrderCompleted(Event, frozen=True, kw_only=True):
    """The buyer received the order."""

    TOPIC: ClassVar[str] = "order.OrderCompleted"
    AGGREGATE: ClassVar[str] = "order"

    platform: str
    platform_order_id: str


@register
class OrderCancelled(Event, frozen=True, kw_only=True):
    """The unpaid order was cancelled; ``stock`` is what it releases per hub SKU."""

    TOPIC: ClassVar[str] = "order.OrderCancelled"
    AGGREGATE: ClassVar[str] = "order"

    platform: str
    platform_order_id: str
    stock: tuple[StockMove, ...]
    reason: str = ""


@register
class OrderRefunded(Event, frozen=True, kw_only=True):
    """``amount_fen`` went back to the buyer; ``refunded_fen`` in all so far.

    ``full``: everything paid is refunded (the order is now ``refunded``).
    ``stock``: units the refund releases from the order's commitment, per hub
    SKU (only before shipment; goods already shipped come back by receiving).
    """

    TOPIC: ClassVar[str] = "order.OrderRefunded"
    AGGREGATE: ClassVar[str] = "order"

    platform: str
    platform_order_id: str
    refund_id: str
    amount_fen: int
    refunded_fen: int
    full: bool
    lines: tuple[RefundLine, ...] = ()
    stock: tuple[StockMove, ...] = ()
    reason: str = ""


@register
class OrderStockRefused(Event, frozen=True, kw_only=True):
    """A stock item refused the order's ``action`` on ``hub_sku``.

    ``code`` and ``reason`` are the refusal's (``insufficient_stock``: more
    units were sold than available, the order is oversold); ``quantity`` is
    the units asked for (commits). The order's status is unchanged.
    """

    TOPIC: ClassVar[str] = "order.OrderStockRefused"
    AGGREGATE: ClassVar[str] = "order"

    platform: str
    platform_order_id: str
    hub_sku: str
    action: str
    quantity: int
    code: str
    reason: str = ""


@register
class ShipmentNoticeRecorded(Event, frozen=True, kw_only=True):
    """The platform's answer to the hub's shipment notice.

    ``outcome`` is the call's (``sent``, ``rejected``, ``rate_limited``,
    ``failed``, ...); ``code`` and ``message`` the platform's own.
    """

    TOPIC: ClassVar[str] = "order.ShipmentNoticeRecorded"
    AGGREGATE: ClassVar[str] = "order"

    platform: str
    platform_order_id: str
    request_id: str
    outcome: str
    code: str = ""
    message: str = ""


OrderEvent = (
    OrderPlaced
    | OrderPaid
    | OrderShipped
    | OrderCompleted
    | OrderCancelled
    | OrderRefunded
    | OrderStockRefused
    | ShipmentNoticeRecorded
)


# -- state ----------------------------------------------------------------------


class Order(State, frozen=True, kw_only=True):
    """Current state of one platform order.

    ``steps`` are the statuses the order has passed through, in order;
    ``refunded_units`` are the units refunded per platform SKU;
    ``stock_refusals`` the stock commands refused, as ``action:hub_sku``.
    """

    platform: str
    platform_order_id: str
    shop_id: str
    channel_account: str
    status: OrderStatus
    lines: tuple[OrderLine, ...]
    total_fen: int
    buyer_ref: str = ""
    paid_fen: int | None = None
    refunded_fen: int = 0
    refunded_units: dict[str, int] = msgspec.field(default_factory=dict)
    refund_ids: tuple[str, ...] = ()
    steps: tuple[OrderStatus, ...] = ()
    stock_refusals: tuple[str, ...] = ()
    #: The outcome of the last shipment notice the hub sent ("" if none).
    shipment_notice: str = ""

    @property
    def shipped(self) -> bool:
        """Whether the order has left the warehouse."""
        return "shipped" in self.steps

    def open_units(self) -> dict[str, int]:
        """Units per hub SKU the order keeps committed while open (none if shipped)."""
        return _open_units(self.lines, self.refunded_units, self.status)


def _open_units(
    lines: Iterable[OrderLine], refunded_units: Mapping[str, int], status: str
) -> dict[str, int]:
    if status not in ("placed", "paid"):
        return {}
    # Refunded units of a platform SKU are taken from its lines in order.
    left = dict(refunded_units)
    units: dict[str, int] = {}
    for line in lines:
        taken = min(line.quantity, left.get(line.platform_sku_id, 0))
        left[line.platform_sku_id] = left.get(line.platform_sku_id, 0) - taken
        units[line.hub_sku] = units.get(line.hub_sku, 0) + line.quantity - taken
    return units


def _moves(
    before: Mapping[str, int], after: Mapping[str, int]
) -> tuple[StockMove, ...]:
    """The units leaving each hub SKU's commitment from ``before`` to ``after``."""
    return tuple(
        StockMove(
            hub_sku=sku, quantity=units - after.get(sku, 0), remaining=after.get(sku, 0)
        )
        for sku, units in sorted(before.items())
        if units > after.get(sku, 0)
    )


# -- decide ---------------------------------------------------------------------


def _describe(platform: str, platform_order_id: str) -> str:
    return f"{platform}/{platform_order_id}"


def decide(state: Order | None, command: OrderCommand, ctx: Context) -> list[Event]:
    """Check ``command`` against ``state`` and return the new events.

    A step the order has already taken returns no events (see the module's
    notes on duplicates and out-of-order pushes).

    Raises:
        UnknownOrderError: a step for an unknown order without its placement.
        PlacementMismatchError: a placement for another order.
        IllegalOrderTransitionError: a step the current status does not allow.
        RefundExceedsPaidError: refunding more than is left of the payment.
        RefundQuantityError: refunding units the order does not have left.
    """
    oid = order_id(command.platform, command.platform_order_id)
    if isinstance(command, RecordStockRefusal):
        return _record_refusal(state, command, ctx, oid)
    if isinstance(command, RecordShipmentNotice):
        return _record_notice(state, command, ctx, oid)
    events: list[Event] = []
    if state is None:
        placement = (
            command
            if isinstance(command, PlaceOrder)
            else getattr(command, "placement", None)
        )
        if placement is None:
            raise UnknownOrderError(
                f"order {_describe(command.platform, command.platform_order_id)} is "
                f"unknown: {type(command).__name__} needs the order placed first "
                "(a payment or cancellation may carry its placement)"
            )
        placed = _place(placement, oid, ctx, command)
        events.append(placed)
        state = _existing(mutate(placed, None), placed)
    elif isinstance(command, PlaceOrder):
        return []
    if isinstance(command, PlaceOrder) or _already_taken(state, command):
        return events
    _check_transition(state, command)
    step = _STEPS[type(command)]
    events.append(step(state, command, ctx.meta(oid, state.version + 1)))
    return events


def _record_notice(
    state: Order | None, command: RecordShipmentNotice, ctx: Context, oid: uuid.UUID
) -> list[Event]:
    where = _describe(command.platform, command.platform_order_id)
    if state is None or not state.shipped:
        raise IllegalOrderTransitionError(
            f"order {where} is {state.status if state else 'unknown'}: a shipment "
            "notice is recorded on a shipped order"
        )
    if state.shipment_notice == "sent":
        return []
    return [
        ShipmentNoticeRecorded(
            **ctx.meta(oid, state.version + 1),
            platform=state.platform,
            platform_order_id=state.platform_order_id,
            request_id=command.request_id,
            outcome=command.outcome,
            code=command.code,
            message=command.message,
        )
    ]


def _record_refusal(
    state: Order | None, command: RecordStockRefusal, ctx: Context, oid: uuid.UUID
) -> list[Event]:
    where = _describe(command.platform, command.platform_order_id)
    if state is None:
        raise UnknownOrderError(
            f"order {where} is unknown: a stock refusal is recorded on a placed order"
        )
    if f"{command.action}:{command.hub_sku}" in state.stock_refusals:
        return []
    return [
        OrderStockRefused(
            **ctx.meta(oid, state.version + 1),
            platform=state.platform,
            platform_order_id=state.platform_order_id,
            hub_sku=command.hub_sku,
            action=command.action,
            quantity=command.quantity,
            code=command.code,
            reason=command.reason,
        )
    ]


def _place(
    placement: PlaceOrder, oid: uuid.UUID, ctx: Context, command: OrderCommand
) -> OrderPlaced:
    if (placement.platform, placement.platform_order_id) != (
        command.platform,
        command.platform_order_id,
    ):
        raise PlacementMismatchError(
            f"{type(command).__name__} for order "
            f"{_describe(command.platform, command.platform_order_id)} carries the "
            f"placement of {_describe(placement.platform, placement.platform_order_id)}"
        )
    return OrderPlaced(
        **ctx.meta(oid, 1),
        platform=placement.platform,
        platform_order_id=placement.platform_order_id,
        shop_id=placement.shop_id,
        channel_account=placement.channel_account,
        lines=placement.lines,
        total_fen=order_total(placement.lines),
        buyer_ref=placement.buyer_ref,
        placed_at=placement.placed_at,
        buyer=placement.buyer,
    )


def _already_taken(state: Order, command: OrderCommand) -> bool:
    if isinstance(command, RefundOrder):
        return command.refund_id in state.refund_ids
    return _STEP_STATUS[type(command)] in state.steps


def _check_transition(state: Order, command: OrderCommand) -> None:
    name = type(command).__name__
    allowed = ALLOWED_COMMANDS[state.status]
    if name not in allowed:
        raise IllegalOrderTransitionError(
            f"cannot {name} order {_describe(state.platform, state.platform_order_id)}:"
            f" it is {state.status}; allowed when {state.status}: "
            f"{', '.join(allowed) or 'nothing (the order is closed)'}"
        )


def _pay(state: Order, command: PayOrder, meta: dict[str, Any]) -> Event:
    return OrderPaid(
        **meta,
        platform=state.platform,
        platform_order_id=state.platform_order_id,
        paid_fen=state.total_fen if command.amount_fen is None else command.amount_fen,
        payment_ref=command.payment_ref,
        paid_at=command.paid_at,
    )


def _ship(state: Order, command: ShipOrder, meta: dict[str, Any]) -> Event:
    return OrderShipped(
        **meta,
        platform=state.platform,
        platform_order_id=state.platform_order_id,
        stock=_moves(state.open_units(), {}),
        carrier=command.carrier,
        tracking_ref=command.tracking_ref,
        shipped_at=command.shipped_at,
        notify_platform=command.notify_platform,
    )


def _complete(state: Order, command: CompleteOrder, meta: dict[str, Any]) -> Event:
    return OrderCompleted(
        **meta, platform=state.platform, platform_order_id=state.platform_order_id
    )


def _cancel(state: Order, command: CancelOrder, meta: dict[str, Any]) -> Event:
    return OrderCancelled(
        **meta,
        platform=state.platform,
        platform_order_id=state.platform_order_id,
        stock=_moves(state.open_units(), {}),
        reason=command.reason,
    )


def _refund(state: Order, command: RefundOrder, meta: dict[str, Any]) -> Event:
    where = _describe(state.platform, state.platform_order_id)
    paid = state.paid_fen or 0
    left = paid - state.refunded_fen
    amount = left if command.amount_fen is None else command.amount_fen
    if amount > left or amount <= 0:
        raise RefundExceedsPaidError(
            f"order {where}: refund {amount} fen + refunded {state.refunded_fen} fen "
            f"> paid {paid} fen (a refund never exceeds what was paid)"
            if amount > 0
            else f"order {where}: nothing left to refund (refunded "
            f"{state.refunded_fen} fen of paid {paid} fen)"
        )
    refunded_units = _refund_units(state, command.lines, where)
    full = state.refunded_fen + amount == paid
    stock: tuple[StockMove, ...] = ()
    if not state.shipped:
        after = {} if full else _open_units(state.lines, refunded_units, state.status)
        stock = _moves(state.open_units(), after)
    return OrderRefunded(
        **meta,
        platform=state.platform,
        platform_order_id=state.platform_order_id,
        refund_id=command.refund_id,
        amount_fen=amount,
        refunded_fen=state.refunded_fen + amount,
        full=full,
        lines=command.lines,
        stock=stock,
        reason=command.reason,
    )


def _refund_units(
    state: Order, lines: Iterable[RefundLine], where: str
) -> dict[str, int]:
    """Units refunded per platform SKU once ``lines`` are added."""
    ordered: dict[str, int] = {}
    for ordered_line in state.lines:
        sku = ordered_line.platform_sku_id
        ordered[sku] = ordered.get(sku, 0) + ordered_line.quantity
    refunded = dict(state.refunded_units)
    for line in lines:
        sku = line.platform_sku_id
        if sku not in ordered:
            raise RefundQuantityError(
                f"order {where} has no line of platform sku {sku} to refund"
            )
        refunded[sku] = refunded.get(sku, 0) + line.quantity
        if refunded[sku] > ordered[sku]:
            raise RefundQuantityError(
                f"order {where}: refunding {line.quantity} of platform sku {sku} "
                f"brings refunded units to {refunded[sku]} > {ordered[sku]} ordered"
            )
    return refunded


_STEPS: dict[type[Any], Callable[[Order, Any, dict[str, Any]], Event]] = {
    PayOrder: _pay,
    ShipOrder: _ship,
    CompleteOrder: _complete,
    CancelOrder: _cancel,
    RefundOrder: _refund,
}


# -- mutate ---------------------------------------------------------------------


def _existing(state: Order | None, event: Event) -> Order:
    assert state is not None, f"{type(event).__name__} before OrderPlaced"
    return state


def _to(
    state: Order | None, event: Event, status: OrderStatus, **changes: Any
) -> Order:
    current = _existing(state, event)
    return msgspec.structs.replace(
        current,
        version=event.originator_version,
        status=status,
        steps=(*current.steps, status),
        **changes,
    )


@functools.singledispatch
def mutate(event: Event, state: Order | None) -> Order | None:
    """Evolve ``state`` by ``event``."""
    raise TypeError(f"order cannot apply {type(event).__name__}")


@mutate.register
def _(event: OrderPlaced, state: Order | None) -> Order:
    return Order(
        id=event.originator_id,
        version=event.originator_version,
        platform=event.platform,
        platform_order_id=event.platform_order_id,
        shop_id=event.shop_id,
        channel_account=event.channel_account,
        status="placed",
        lines=event.lines,
        total_fen=event.total_fen,
        buyer_ref=event.buyer_ref,
        steps=("placed",),
    )


@mutate.register
def _(event: OrderPaid, state: Order | None) -> Order:
    return _to(state, event, "paid", paid_fen=event.paid_fen)


@mutate.register
def _(event: OrderShipped, state: Order | None) -> Order:
    return _to(state, event, "shipped")


@mutate.register
def _(event: OrderCompleted, state: Order | None) -> Order:
    return _to(state, event, "completed")


@mutate.register
def _(event: OrderCancelled, state: Order | None) -> Order:
    return _to(state, event, "cancelled")


@mutate.register
def _(event: OrderRefunded, state: Order | None) -> Order:
    current = _existing(state, event)
    units = dict(current.refunded_units)
    for line in event.lines:
        units[line.platform_sku_id] = units.get(line.platform_sku_id, 0) + line.quantity
    changes: dict[str, Any] = {
        "refunded_fen": event.refunded_fen,
        "refunded_units": units,
        "refund_ids": (*current.refund_ids, event.refund_id),
    }
    if event.full:
        return _to(current, event, "refunded", **changes)
    return msgspec.structs.replace(current, version=event.originator_version, **changes)


@mutate.register
def _(event: ShipmentNoticeRecorded, state: Order | None) -> Order:
    current = _existing(state, event)
    return msgspec.structs.replace(
        current, version=event.originator_version, shipment_notice=event.outcome
    )


@mutate.register
def _(event: OrderStockRefused, state: Order | None) -> Order:
    current = _existing(state, event)
    return msgspec.structs.replace(
        current,
        version=event.originator_version,
        stock_refusals=(*current.stock_refusals, f"{event.action}:{event.hub_sku}"),
    )


# -- stock effects --------------------------------------------------------------


def stock_effect(event: Event) -> list[StockCommand]:
    """The stock commands one order event implies (none for most).

    Placed commits each hub SKU's units to the order; cancelled releases them;
    shipped consumes them; a refund before shipment releases the refunded units
    (down to what stays committed). Every command is keyed by :func:`order_ref`
    and idempotent, so applying them again changes nothing.
    """
    if isinstance(event, OrderPlaced):
        ref = order_ref(event.platform, event.platform_order_id)
        units: dict[str, int] = {}
        for line in event.lines:
            units[line.hub_sku] = units.get(line.hub_sku, 0) + line.quantity
        return [
            CommitStock(sku=sku, order_ref=ref, quantity=qty, platform=event.platform)
            for sku, qty in sorted(units.items())
        ]
    if isinstance(event, OrderShipped):
        ref = order_ref(event.platform, event.platform_order_id)
        return [
            ConsumeStock(
                sku=move.hub_sku,
                order_ref=ref,
                keep=move.remaining,
                platform=event.platform,
            )
            for move in event.stock
        ]
    if isinstance(event, OrderCancelled | OrderRefunded):
        ref = order_ref(event.platform, event.platform_order_id)
        reason = "cancelled" if isinstance(event, OrderCancelled) else "refunded"
        return [
            ReleaseStock(
                sku=move.hub_sku,
                order_ref=ref,
                keep=move.remaining,
                reason=reason,
                platform=event.platform,
            )
            for move in event.stock
        ]
    return []


def stock_effects(events: Iterable[Event]) -> list[StockCommand]:
    """The stock commands a run of order events implies, in event order."""
    return [command for event in events for command in stock_effect(event)]
