"""The stock item aggregate: one hub SKU's stock, kept in states.

The states (after Shopify's inventory model) are counts of units, never negative:

* ``on_hand``: units in the warehouse;
* ``committed``: units promised to open orders, exact per order reference;
* ``reserved``: units held back for a named purpose (a live session, a deal),
  exact per reservation reference;
* ``safety``: units held as safety stock. ``safety_stock`` is the setting;
  ``safety`` is what of it is filled from units neither committed nor reserved,
  ``min(safety_stock, max(0, on_hand - committed - reserved))``, so the setting
  never makes available negative by itself.

``available = on_hand - committed - reserved - safety`` is what may still be sold.
Commands under the hub's control (commit, reserve) never take it below zero:
committing more than available is refused, which is how oversell is prevented.
Only a loss reported from outside (a downward adjustment, a count, an absolute
set) can leave it negative: then the hub owes more units than it holds, and the
negative number says how many.

Every stock event records the resulting ``on_hand``, ``committed``, ``reserved``
and ``safety`` (and so ``available``, a property), so views never recompute.

Changes from several platforms arrive as deltas (receive, adjust, commit,
release, consume); an absolute set is a compare-and-set (:class:`SetOnHand`).

Idempotency: a command whose ``request_id`` the item recently applied decides
nothing. Beyond that, orders are idempotent by their reference: committing for
an order that is open (or recently closed) decides nothing, and releasing or
consuming brings the order's commitment *down to* ``keep`` units, which is a
no-op when it is there already. Reservations work the same way by reference.

Low stock: when ``available`` falls to or below ``low_stock_threshold``, the
decision that made it so also raises :class:`StockLowAlertRaised`; when it rises
above again (or the threshold is removed), :class:`StockLowAlertCleared`.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, TypedDict

import msgspec

from domain.allocation import drift, drift_exceeds
from domain.events import Context, DomainError, Event, State, derive_id, register
from domain.policy import PlatformCode

#: Hub SKU codes: letters, digits and ``-_.:``, 1-64 characters.
SkuCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$")]
#: Caller-chosen idempotency key of a command (a retried request is applied once).
RequestId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
#: The order a commitment is for (see :func:`domain.order.order_ref`).
OrderRef = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
#: The name of a reservation (``live:2026-11-26``, ``deal:4711``, ...).
ReservationRef = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
#: A positive count of units in a command.
Quantity = Annotated[int, msgspec.Meta(gt=0, le=1_000_000_000)]
#: A count of units in a command, zero allowed.
Units = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]
#: Free text of a reason or source.
Note = Annotated[str, msgspec.Meta(max_length=200)]

#: How many recent request ids a stock item remembers for de-duplication.
REMEMBERED_REQUESTS = 256
#: How many closed order references a stock item remembers, so that a replayed
#: commit for an order already released or consumed decides nothing.
REMEMBERED_CLOSED_ORDERS = 1024


@functools.lru_cache(maxsize=65536)
def stock_item_id(sku: str) -> uuid.UUID:
    """The aggregate id of hub SKU ``sku``."""
    return derive_id("stock_item", sku)


# -- errors ---------------------------------------------------------------------


class InsufficientStockError(DomainError):
    """Too few units for the command: on hand below zero, or beyond available."""

    code = "insufficient_stock"


class InvalidQuantityError(DomainError):
    """A quantity broke its rule (e.g. receiving zero units)."""

    code = "invalid_quantity"


class UnknownSkuError(DomainError):
    """A command named a SKU the hub has never received."""

    code = "unknown_sku"


class StockConflictError(DomainError):
    """A compare-and-set found stock on hand other than the caller expected."""

    code = "stock_conflict"


# -- levels ---------------------------------------------------------------------


class StockLevels:
    """Mixin of the state and the events: ``available`` from the four states."""

    __slots__ = ()

    on_hand: int
    committed: int
    reserved: int
    safety: int

    @property
    def available(self) -> int:
        """Units that may still be sold: on hand less committed, reserved, safety."""
        return self.on_hand - self.committed - self.reserved - self.safety

    def describe_levels(self) -> str:
        """The levels in words, for error messages."""
        return (
            f"available {self.available} = on hand {self.on_hand} - committed "
            f"{self.committed} - reserved {self.reserved} - safety {self.safety}"
        )


class LevelFields(TypedDict):
    """The four states as the keyword arguments of a stock event."""

    on_hand: int
    committed: int
    reserved: int
    safety: int


def levels(
    *, on_hand: int, committed: int, reserved: int, safety_stock: int
) -> LevelFields:
    """The four states as event fields, with safety filled up to ``safety_stock``."""
    safety = min(safety_stock, max(0, on_hand - committed - reserved))
    return LevelFields(
        on_hand=on_hand, committed=committed, reserved=reserved, safety=safety
    )


# -- commands -------------------------------------------------------------------


class ReceiveStock(msgspec.Struct, frozen=True, kw_only=True):
    """Receive ``quantity`` units of ``sku`` into stock on hand."""

    sku: SkuCode
    quantity: Quantity
    reference: Note = ""
    request_id: RequestId | None = None


class AdjustStock(msgspec.Struct, frozen=True, kw_only=True):
    """Change stock on hand of ``sku`` by ``delta`` (positive or negative)."""

    sku: SkuCode
    delta: Annotated[int, msgspec.Meta(ge=-1_000_000_000, le=1_000_000_000)]
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    request_id: RequestId | None = None


class CountStock(msgspec.Struct, frozen=True, kw_only=True):
    """Record a physical count: stock on hand of ``sku`` is ``counted``."""

    sku: SkuCode
    counted: Units
    request_id: RequestId | None = None


class SetOnHand(msgspec.Struct, frozen=True, kw_only=True):
    """Compare-and-set: stock on hand becomes ``on_hand`` if it is ``expected_on_hand``.

    For sources that only offer an absolute quantity; a concurrent change in
    between makes it fail instead of being overwritten.
    """

    sku: SkuCode
    expected_on_hand: Units
    on_hand: Units
    source: Note = ""
    request_id: RequestId | None = None


class CommitStock(msgspec.Struct, frozen=True, kw_only=True):
    """Commit ``quantity`` units to open order ``order_ref`` (the order was placed)."""

    sku: SkuCode
    order_ref: OrderRef
    quantity: Quantity
    platform: PlatformCode | None = None
    request_id: RequestId | None = None


class ReleaseStock(msgspec.Struct, frozen=True, kw_only=True):
    """Release an order's commitment down to ``keep`` units (cancelled, refunded)."""

    sku: SkuCode
    order_ref: OrderRef
    keep: Units = 0
    reason: Note = ""
    platform: PlatformCode | None = None
    request_id: RequestId | None = None


class ConsumeStock(msgspec.Struct, frozen=True, kw_only=True):
    """Ship an order: its commitment down to ``keep`` units leaves stock on hand."""

    sku: SkuCode
    order_ref: OrderRef
    keep: Units = 0
    platform: PlatformCode | None = None
    request_id: RequestId | None = None


class ReserveStock(msgspec.Struct, frozen=True, kw_only=True):
    """Hold ``quantity`` available units back under ``reference``."""

    sku: SkuCode
    reference: ReservationRef
    quantity: Quantity
    reason: Note = ""
    request_id: RequestId | None = None


class UnreserveStock(msgspec.Struct, frozen=True, kw_only=True):
    """Bring reservation ``reference`` down to ``keep`` units."""

    sku: SkuCode
    reference: ReservationRef
    keep: Units = 0
    request_id: RequestId | None = None


class SetSafetyStock(msgspec.Struct, frozen=True, kw_only=True):
    """Keep ``quantity`` units of ``sku`` back as safety stock."""

    sku: SkuCode
    quantity: Units
    request_id: RequestId | None = None


class SetLowStockThreshold(msgspec.Struct, frozen=True, kw_only=True):
    """Alert when available is at or below ``threshold`` (``None``: never)."""

    sku: SkuCode
    threshold: Units | None
    request_id: RequestId | None = None


class ReportPlatformStock(msgspec.Struct, frozen=True, kw_only=True):
    """A platform reports the stock it shows; the hub expected ``expected``.

    Records :class:`StockDriftDetected` when the drift is beyond ``tolerance``
    (the hub then calibrates); within tolerance it decides nothing.
    """

    sku: SkuCode
    platform: PlatformCode
    shop_id: Annotated[str, msgspec.Meta(max_length=128)] = ""
    reported: Units
    expected: Units
    tolerance: Units = 0
    request_id: RequestId | None = None


StockCommand = (
    ReceiveStock
    | AdjustStock
    | CountStock
    | SetOnHand
    | CommitStock
    | ReleaseStock
    | ConsumeStock
    | ReserveStock
    | UnreserveStock
    | SetSafetyStock
    | SetLowStockThreshold
    | ReportPlatformStock
)


# -- events ---------------------------------------------------------------------
# Every event ends with the resulting levels; the first three events predate them
# and so default them to 0 (which is what they were before they existed).


@register
class StockReceived(StockLevels, Event, frozen=True, kw_only=True):
    """Units of a SKU arrived and are now on hand.

    Version 2 records ``previous_on_hand``, the units on hand before the
    receipt; a version 1 event is upcast on read (:meth:`upcast_v1`), the
    stored row is never rewritten.
    """

    TOPIC: ClassVar[str] = "stock.StockReceived"
    VERSION: ClassVar[int] = 2
    AGGREGATE: ClassVar[str] = "stock"

    sku: str
    quantity: int
    on_hand: int
    reference: str = ""
    request_id: str | None = None
    committed: int = 0
    reserved: int = 0
    safety: int = 0
    previous_on_hand: int = 0

    @classmethod
    def upcast_v1(cls, raw: dict[str, Any]) -> dict[str, Any]:
        """Version 1 had no ``previous_on_hand``: a receipt adds ``quantity``
        to what was on hand, so it was ``on_hand - quantity``."""
        raw["previous_on_hand"] = raw["on_hand"] - raw["quantity"]
        return raw


@register
class StockAdjusted(StockLevels, Event, frozen=True, kw_only=True):
    """Stock on hand of a SKU changed by ``delta`` for ``reason``."""

    TOPIC: ClassVar[str] = "stock.StockAdjusted"
    AGGREGATE: ClassVar[str] = "stock"

    sku: str
    delta: int
    reason: str
    on_hand: int
    request_id: str | None = None
    committed: int = 0
    reserved: int = 0
    safety: int = 0


@register
class StockCounted(StockLevels, Event, frozen=True, kw_only=True):
    """A physical count set stock on hand; ``delta`` is the difference found."""

    TOPIC: ClassVar[str] = "stock.StockCounted"
    AGGREGATE: ClassVar[str] = "stock"

    sku: str
    counted: int
    delta: int
    on_hand: int
    request_id: str | None = None
    committed: int = 0
    reserved: int = 0
    safety: int = 0


@register
class StockOnHandSet(StockLevels, Event, frozen=True, kw_only=True):
    """A compare-and-set changed stock on hand from the expected quantity."""

    TOPIC: ClassVar[str] = "stock.StockOnHandSet"
    AGGREGATE: ClassVar[str] = "stock"

    sku: str
    expected_on_hand: int
    delta: int
    source: str
    on_hand: int
    committed: int
    reserved: int
    safety: int
    request_id: str | None = None


@register
class StockCommitted(StockLevels, Event, frozen=True, kw_only=True):
    """``quantity`` units were committed to open order ``order_ref``."""

    TOPIC: ClassVar[str] = "stock.StockCommitted"
    AGGREGATE: ClassVar[str] = "stock"

    sku: str
    order_ref: str
    quantity: int
    on_hand: int
    committed: int
    reserved: int
    safety: int
    platform: str | None = None
    request_id: str | None = None


@register
class StockReleased(StockLevels, Event, frozen=True, kw_only=True):
    """``quantity`` units of an order's commitment went back to available.

    ``remaining`` units stay committed to the order (0: the order is closed here).
    """

    TOPIC: ClassVar[str] = "stock.StockReleased"
    AGGREGATE: ClassVar[str] = "stock"

    sku: str
    order_ref: str
    quantity: int
    remaining: int
    reason: str
    on_hand: int
    committed: int
    reserved: int
    safety: int
    platform: str | None = None
    request_id: str | None = None


@register
class StockConsumed(StockLevels, Event, frozen=True, kw_only=True):
    """``quantity`` committed units were shipped: they left committed and on hand.

    ``shortfall`` units of them were not on hand any more (a loss found earlier
    left on hand below committed); on hand stops at zero.
    """

    TOPIC: ClassVar[str] = "stock.StockConsumed"
    AGGREGATE: ClassVar[str] = "stock"

    sku: str
    order_ref: str
    quantity: int
    remaining: int
    shortfall: int
    on_hand: int
    committed: int
    reserved: int
    safety: int
    platform: str | None = None
    request_id: str | None = None


@register
class StockReserved(StockLevels, Event, frozen=True, kw_only=True):
    """``quantity`` available units were held back under ``reference``."""

    TOPIC: ClassVar[str] = "stock.StockReserved"
    AGGREGATE: ClassVar[str] = "stock"

    sku: str
    reference: str
    quantity: int
    reason: str
    on_hand: int
    committed: int
    reserved: int
    safety: int
    request_id: str | None = None


@register
class StockUnreserved(StockLevels, Event, frozen=True, kw_only=True):
    """``quantity`` units of reservation ``reference`` went back to available."""

    TOPIC: ClassVar[str] = "stock.StockUnreserved"
    AGGREGATE: ClassVar[str] = "stock"

    sku: str
    reference: str
    quantity: int
    remaining: int
    on_hand: int
    committed: int
    reserved: int
    safety: int
    request_id: str | None = None


@register
class SafetyStockSet(StockLevels, Event, frozen=True, kw_only=True):
    """The SKU keeps ``safety_stock`` units back; ``safety`` of them are filled."""

    TOPIC: ClassVar[str] = "stock.SafetyStockSet"
    AGGREGATE: ClassVar[str] = "stock"

    sku: str
    safety_stock: int
    on_hand: int
    committed: int
    reserved: int
    safety: int
    request_id: str | None = None


@register
class LowStockThresholdSet(StockLevels, Event, frozen=True, kw_only=True):
    """Low-stock alerts now fire at or below ``threshold`` (``None``: never)."""

    TOPIC: ClassVar[str] = "stock.LowStockThresholdSet"
    AGGREGATE: ClassVar[str] = "stock"

    sku: str
    threshold: int | None
    on_hand: int
    committed: int
    reserved: int
    safety: int
    request_id: str | None = None


@register
class StockDriftDetected(StockLevels, Event, frozen=True, kw_only=True):
    """A platform shows ``reported`` where the hub expected ``expected``.

    ``drift = reported - expected`` is beyond ``tolerance``: the platform's
    listing needs calibrating.
    """

    TOPIC: ClassVar[str] = "stock.StockDriftDetected"
    AGGREGATE: ClassVar[str] = "stock"

    sku: str
    platform: str
    shop_id: str
    reported: int
    expected: int
    drift: int
    tolerance: int
    on_hand: int
    committed: int
    reserved: int
    safety: int
    request_id: str | None = None


@register
class StockLowAlertRaised(StockLevels, Event, frozen=True, kw_only=True):
    """Available stock of a SKU fell to or below its low-stock threshold."""

    TOPIC: ClassVar[str] = "stock.StockLowAlertRaised"
    AGGREGATE: ClassVar[str] = "stock"

    sku: str
    threshold: int
    on_hand: int
    committed: int
    reserved: int
    safety: int


@register
class StockLowAlertCleared(StockLevels, Event, frozen=True, kw_only=True):
    """Available stock rose above the threshold, or the threshold was removed."""

    TOPIC: ClassVar[str] = "stock.StockLowAlertCleared"
    AGGREGATE: ClassVar[str] = "stock"

    sku: str
    threshold: int | None
    on_hand: int
    committed: int
    reserved: int
    safety: int


StockEvent = (
    StockReceived
    | StockAdjusted
    | StockCounted
    | StockOnHandSet
    | StockCommitted
    | StockReleased
    | StockConsumed
    | StockReserved
    | StockUnreserved
    | SafetyStockSet
    | LowStockThresholdSet
    | StockDriftDetected
    | StockLowAlertRaised
    | StockLowAlertCleared
)


# -- state ----------------------------------------------------------------------


class StockItem(StockLevels, State, frozen=True, kw_only=True):
    """Current state of one hub SKU.

    ``commitments`` and ``reservations`` map each open reference to its units
    (they add up to ``committed`` and ``reserved``). Like the whole state they
    are never changed in place: each event makes new ones.
    """

    sku: str
    on_hand: int
    recent_requests: tuple[str, ...] = ()
    committed: int = 0
    reserved: int = 0
    safety: int = 0
    safety_stock: int = 0
    low_stock_threshold: int | None = None
    low_stock_alert: bool = False
    commitments: dict[str, int] = msgspec.field(default_factory=dict)
    reservations: dict[str, int] = msgspec.field(default_factory=dict)
    closed_orders: tuple[str, ...] = ()
    #: Units of each platform's orders the hub has committed, net of releases,
    #: ever (a shipment does not lower it): what each platform has sold as far
    #: as the hub knows. Stock pushes subtract it from what they have written.
    platform_sold: dict[str, int] = msgspec.field(default_factory=dict)

    @property
    def is_low(self) -> bool:
        """Whether available is at or below the low-stock threshold."""
        threshold = self.low_stock_threshold
        return threshold is not None and self.available <= threshold


# -- decide ---------------------------------------------------------------------


def decide(state: StockItem | None, command: StockCommand, ctx: Context) -> list[Event]:
    """Check ``command`` against ``state`` and return the new events.

    A command whose ``request_id`` the item has already applied returns no
    events: a retried request is applied once. So does a command that would
    change nothing (see the module's notes on idempotency). A change that takes
    available across the low-stock threshold is followed, in the same decision,
    by :class:`StockLowAlertRaised` or :class:`StockLowAlertCleared`.

    Raises:
        UnknownSkuError: any command but receiving, for a SKU never received.
        InsufficientStockError: on hand below zero, or committing or reserving
            more than available.
        InvalidQuantityError: an adjustment by zero.
        StockConflictError: a compare-and-set expecting other stock on hand.
    """
    if (
        state is not None
        and command.request_id is not None
        and command.request_id in state.recent_requests
    ):
        return []
    if isinstance(command, ReceiveStock):
        first: Event | None = _receive(state, command, ctx)
    elif state is None:
        raise UnknownSkuError(
            f"sku {command.sku!r} has no stock item: receive stock first"
        )
    else:
        decider = _DECIDERS[type(command)]
        first = decider(state, command, ctx.meta(state.id, state.version + 1))
    if first is None:
        return []
    if not _may_alert(state, first):
        return [first]
    return [first, *_alerts(_existing(mutate(first, state), first), ctx)]


def _may_alert(state: StockItem | None, first: Event) -> bool:
    """Whether ``first`` can cross a threshold (skips the fold for most SKUs)."""
    if isinstance(first, LowStockThresholdSet):
        return True
    return state is not None and (
        state.low_stock_threshold is not None or state.low_stock_alert
    )


def _alerts(after: StockItem, ctx: Context) -> list[Event]:
    if after.is_low == after.low_stock_alert:
        return []
    meta = ctx.meta(after.id, after.version + 1)
    now = LevelFields(
        on_hand=after.on_hand,
        committed=after.committed,
        reserved=after.reserved,
        safety=after.safety,
    )
    if after.is_low:
        assert after.low_stock_threshold is not None
        return [
            StockLowAlertRaised(
                **meta, sku=after.sku, threshold=after.low_stock_threshold, **now
            )
        ]
    return [
        StockLowAlertCleared(
            **meta, sku=after.sku, threshold=after.low_stock_threshold, **now
        )
    ]


def _with(
    state: StockItem,
    *,
    on_hand: int | None = None,
    committed: int | None = None,
    reserved: int | None = None,
    safety_stock: int | None = None,
) -> LevelFields:
    """Event level fields: the state's levels with some changed, safety refilled."""
    return levels(
        on_hand=state.on_hand if on_hand is None else on_hand,
        committed=state.committed if committed is None else committed,
        reserved=state.reserved if reserved is None else reserved,
        safety_stock=state.safety_stock if safety_stock is None else safety_stock,
    )


def _receive(
    state: StockItem | None, command: ReceiveStock, ctx: Context
) -> StockReceived:
    if state is None:
        meta = ctx.meta(stock_item_id(command.sku), 1)
        now = levels(on_hand=command.quantity, committed=0, reserved=0, safety_stock=0)
    else:
        meta = ctx.meta(state.id, state.version + 1)
        now = _with(state, on_hand=state.on_hand + command.quantity)
    return StockReceived(
        **meta,
        sku=command.sku,
        quantity=command.quantity,
        reference=command.reference,
        request_id=command.request_id,
        previous_on_hand=0 if state is None else state.on_hand,
        **now,
    )


def _adjust(state: StockItem, command: AdjustStock, meta: dict[str, Any]) -> Event:
    if command.delta == 0:
        raise InvalidQuantityError("delta 0: an adjustment must change stock")
    if state.on_hand + command.delta < 0:
        raise InsufficientStockError(
            f"sku {command.sku!r}: on hand {state.on_hand} + delta {command.delta} "
            f"< 0 (stock on hand may not go negative)"
        )
    return StockAdjusted(
        **meta,
        sku=command.sku,
        delta=command.delta,
        reason=command.reason,
        request_id=command.request_id,
        **_with(state, on_hand=state.on_hand + command.delta),
    )


def _count(state: StockItem, command: CountStock, meta: dict[str, Any]) -> Event:
    return StockCounted(
        **meta,
        sku=command.sku,
        counted=command.counted,
        delta=command.counted - state.on_hand,
        request_id=command.request_id,
        **_with(state, on_hand=command.counted),
    )


def _set_on_hand(
    state: StockItem, command: SetOnHand, meta: dict[str, Any]
) -> Event | None:
    if command.on_hand == state.on_hand:
        # Already so: a retried set that succeeded, or nothing to change.
        return None
    if command.expected_on_hand != state.on_hand:
        raise StockConflictError(
            f"sku {command.sku!r}: expected on hand {command.expected_on_hand} but "
            f"it is {state.on_hand} (compare-and-set refused: re-read and retry)"
        )
    return StockOnHandSet(
        **meta,
        sku=command.sku,
        expected_on_hand=command.expected_on_hand,
        delta=command.on_hand - state.on_hand,
        source=command.source,
        request_id=command.request_id,
        **_with(state, on_hand=command.on_hand),
    )


def _check_available(state: StockItem, what: str, quantity: int) -> None:
    if quantity > state.available:
        raise InsufficientStockError(
            f"sku {state.sku!r}: cannot {what}: {quantity} > "
            f"{state.describe_levels()} (no more than available may be promised)"
        )


def _commit(
    state: StockItem, command: CommitStock, meta: dict[str, Any]
) -> Event | None:
    ref = command.order_ref
    if ref in state.commitments or ref in state.closed_orders:
        return None
    _check_available(
        state, f"commit {command.quantity} to order {ref}", command.quantity
    )
    return StockCommitted(
        **meta,
        sku=command.sku,
        order_ref=ref,
        quantity=command.quantity,
        platform=command.platform,
        request_id=command.request_id,
        **_with(state, committed=state.committed + command.quantity),
    )


def _release(
    state: StockItem, command: ReleaseStock, meta: dict[str, Any]
) -> Event | None:
    open_units = state.commitments.get(command.order_ref, 0)
    if open_units <= command.keep:
        return None
    quantity = open_units - command.keep
    return StockReleased(
        **meta,
        sku=command.sku,
        order_ref=command.order_ref,
        quantity=quantity,
        remaining=command.keep,
        reason=command.reason,
        platform=command.platform,
        request_id=command.request_id,
        **_with(state, committed=state.committed - quantity),
    )


def _consume(
    state: StockItem, command: ConsumeStock, meta: dict[str, Any]
) -> Event | None:
    open_units = state.commitments.get(command.order_ref, 0)
    if open_units <= command.keep:
        return None
    quantity = open_units - command.keep
    taken = min(quantity, state.on_hand)
    return StockConsumed(
        **meta,
        sku=command.sku,
        order_ref=command.order_ref,
        quantity=quantity,
        remaining=command.keep,
        shortfall=quantity - taken,
        platform=command.platform,
        request_id=command.request_id,
        **_with(
            state, on_hand=state.on_hand - taken, committed=state.committed - quantity
        ),
    )


def _reserve(
    state: StockItem, command: ReserveStock, meta: dict[str, Any]
) -> Event | None:
    if command.reference in state.reservations:
        return None
    _check_available(
        state, f"reserve {command.quantity} for {command.reference}", command.quantity
    )
    return StockReserved(
        **meta,
        sku=command.sku,
        reference=command.reference,
        quantity=command.quantity,
        reason=command.reason,
        request_id=command.request_id,
        **_with(state, reserved=state.reserved + command.quantity),
    )


def _unreserve(
    state: StockItem, command: UnreserveStock, meta: dict[str, Any]
) -> Event | None:
    held = state.reservations.get(command.reference, 0)
    if held <= command.keep:
        return None
    quantity = held - command.keep
    return StockUnreserved(
        **meta,
        sku=command.sku,
        reference=command.reference,
        quantity=quantity,
        remaining=command.keep,
        request_id=command.request_id,
        **_with(state, reserved=state.reserved - quantity),
    )


def _set_safety(
    state: StockItem, command: SetSafetyStock, meta: dict[str, Any]
) -> Event | None:
    if command.quantity == state.safety_stock:
        return None
    return SafetyStockSet(
        **meta,
        sku=command.sku,
        safety_stock=command.quantity,
        request_id=command.request_id,
        **_with(state, safety_stock=command.quantity),
    )


def _set_threshold(
    state: StockItem, command: SetLowStockThreshold, meta: dict[str, Any]
) -> Event | None:
    if command.threshold == state.low_stock_threshold:
        return None
    return LowStockThresholdSet(
        **meta,
        sku=command.sku,
        threshold=command.threshold,
        request_id=command.request_id,
        **_with(state),
    )


def _report(
    state: StockItem, command: ReportPlatformStock, meta: dict[str, Any]
) -> Event | None:
    if not drift_exceeds(command.reported, command.expected, command.tolerance):
        return None
    return StockDriftDetected(
        **meta,
        sku=command.sku,
        platform=command.platform,
        shop_id=command.shop_id,
        reported=command.reported,
        expected=command.expected,
        drift=drift(command.reported, command.expected),
        tolerance=command.tolerance,
        request_id=command.request_id,
        **_with(state),
    )


_DECIDERS: dict[type[Any], Callable[[StockItem, Any, dict[str, Any]], Event | None]] = {
    AdjustStock: _adjust,
    CountStock: _count,
    SetOnHand: _set_on_hand,
    CommitStock: _commit,
    ReleaseStock: _release,
    ConsumeStock: _consume,
    ReserveStock: _reserve,
    UnreserveStock: _unreserve,
    SetSafetyStock: _set_safety,
    SetLowStockThreshold: _set_threshold,
    ReportPlatformStock: _report,
}


# -- mutate ---------------------------------------------------------------------


def _remember(state: StockItem | None, request_id: str | None) -> tuple[str, ...]:
    recent = () if state is None else state.recent_requests
    if request_id is None:
        return recent
    return (*recent, request_id)[-REMEMBERED_REQUESTS:]


def _existing(state: StockItem | None, event: Event) -> StockItem:
    assert state is not None, f"{type(event).__name__} before StockReceived"
    return state


def _levelled(state: StockItem, event: Any, **changes: Any) -> StockItem:
    """``state`` at the event's version and levels, with ``changes``."""
    return msgspec.structs.replace(
        state,
        version=event.originator_version,
        on_hand=event.on_hand,
        committed=event.committed,
        reserved=event.reserved,
        safety=event.safety,
        recent_requests=_remember(state, getattr(event, "request_id", None)),
        **changes,
    )


def _settle(open_refs: dict[str, int], ref: str, remaining: int) -> dict[str, int]:
    """A copy of ``open_refs`` with ``ref`` at ``remaining`` units (0: removed)."""
    settled = dict(open_refs)
    if remaining:
        settled[ref] = remaining
    else:
        settled.pop(ref, None)
    return settled


def _close(state: StockItem, ref: str, remaining: int) -> dict[str, Any]:
    if remaining:
        return {"commitments": _settle(state.commitments, ref, remaining)}
    return {
        "commitments": _settle(state.commitments, ref, 0),
        "closed_orders": (*state.closed_orders, ref)[-REMEMBERED_CLOSED_ORDERS:],
    }


@functools.singledispatch
def mutate(event: Event, state: StockItem | None) -> StockItem | None:
    """Evolve ``state`` by ``event``."""
    raise TypeError(f"stock item cannot apply {type(event).__name__}")


@mutate.register
def _(event: StockReceived, state: StockItem | None) -> StockItem:
    if state is None:
        return StockItem(
            id=event.originator_id,
            version=event.originator_version,
            sku=event.sku,
            on_hand=event.on_hand,
            committed=event.committed,
            reserved=event.reserved,
            safety=event.safety,
            recent_requests=_remember(None, event.request_id),
        )
    return _levelled(state, event)


@mutate.register(StockAdjusted)
@mutate.register(StockCounted)
@mutate.register(StockOnHandSet)
@mutate.register(StockDriftDetected)
def _(event: StockAdjusted, state: StockItem | None) -> StockItem:
    return _levelled(_existing(state, event), event)


@mutate.register
def _(event: StockCommitted, state: StockItem | None) -> StockItem:
    current = _existing(state, event)
    return _levelled(
        current,
        event,
        commitments=_settle(current.commitments, event.order_ref, event.quantity),
        platform_sold=_sold(current, event, event.quantity),
    )


@mutate.register
def _(event: StockReleased, state: StockItem | None) -> StockItem:
    current = _existing(state, event)
    return _levelled(
        current,
        event,
        **_close(current, event.order_ref, event.remaining),
        platform_sold=_sold(current, event, -event.quantity),
    )


@mutate.register
def _(event: StockConsumed, state: StockItem | None) -> StockItem:
    current = _existing(state, event)
    return _levelled(
        current, event, **_close(current, event.order_ref, event.remaining)
    )


def _sold(
    state: StockItem, event: StockCommitted | StockReleased, units: int
) -> dict[str, int]:
    platform = event.platform or event.order_ref.partition(":")[0]
    sold = dict(state.platform_sold)
    sold[platform] = sold.get(platform, 0) + units
    return sold


@mutate.register
def _(event: StockReserved, state: StockItem | None) -> StockItem:
    current = _existing(state, event)
    return _levelled(
        current,
        event,
        reservations=_settle(current.reservations, event.reference, event.quantity),
    )


@mutate.register
def _(event: StockUnreserved, state: StockItem | None) -> StockItem:
    current = _existing(state, event)
    return _levelled(
        current,
        event,
        reservations=_settle(current.reservations, event.reference, event.remaining),
    )


@mutate.register
def _(event: SafetyStockSet, state: StockItem | None) -> StockItem:
    return _levelled(_existing(state, event), event, safety_stock=event.safety_stock)


@mutate.register
def _(event: LowStockThresholdSet, state: StockItem | None) -> StockItem:
    return _levelled(
        _existing(state, event), event, low_stock_threshold=event.threshold
    )


@mutate.register
def _(event: StockLowAlertRaised, state: StockItem | None) -> StockItem:
    return _levelled(_existing(state, event), event, low_stock_alert=True)


@mutate.register
def _(event: StockLowAlertCleared, state: StockItem | None) -> StockItem:
    return _levelled(_existing(state, event), event, low_stock_alert=False)
