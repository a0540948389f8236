"""The stock item aggregate: one hub SKU's stock on hand.

This is the first aggregate on the spine; the orders-and-inventory work adds
committed, reserved and safety stock on the same base.
"""

from __future__ import annotations

import functools
import uuid
from typing import Annotated, ClassVar

import msgspec

from domain.events import Context, DomainError, Event, State, derive_id, register

#: Hub SKU codes: letters, digits and ``-_.:``, 1-64 characters.
SkuCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$")]
#: Caller-chosen idempotency key of a command (a retried request is applied once).
RequestId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]

#: How many recent request ids a stock item remembers for de-duplication.
REMEMBERED_REQUESTS = 256


@functools.lru_cache(maxsize=65536)
def stock_item_id(sku: str) -> uuid.UUID:
    """The aggregate id of hub SKU ``sku``."""
    return derive_id("stock_item", sku)


# -- errors ---------------------------------------------------------------------


class InsufficientStockError(DomainError):
    """An adjustment would take stock on hand below zero."""

    code = "insufficient_stock"


class InvalidQuantityError(DomainError):
    """A quantity broke its rule (e.g. receiving zero units)."""

    code = "invalid_quantity"


class UnknownSkuError(DomainError):
    """A command named a SKU the hub has never received."""

    code = "unknown_sku"


# -- commands -------------------------------------------------------------------


class ReceiveStock(msgspec.Struct, frozen=True, kw_only=True):
    """Receive ``quantity`` units of ``sku`` into stock on hand."""

    sku: SkuCode
    quantity: Annotated[int, msgspec.Meta(gt=0, le=1_000_000_000)]
    reference: Annotated[str, msgspec.Meta(max_length=200)] = ""
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
    counted: Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]
    request_id: RequestId | None = None


StockCommand = ReceiveStock | AdjustStock | CountStock


# -- events ---------------------------------------------------------------------


@register
class StockReceived(Event, frozen=True, kw_only=True):
    """Units of a SKU arrived and are now on hand."""

    TOPIC: ClassVar[str] = "stock.StockReceived"
    AGGREGATE: ClassVar[str] = "stock"

    sku: str
    quantity: int
    on_hand: int
    reference: str = ""
    request_id: str | None = None


@register
class StockAdjusted(Event, frozen=True, kw_only=True):
    """Stock on hand of a SKU changed by ``delta`` for ``reason``."""

    TOPIC: ClassVar[str] = "stock.StockAdjusted"
    AGGREGATE: ClassVar[str] = "stock"

    sku: str
    delta: int
    reason: str
    on_hand: int
    request_id: str | None = None


@register
class StockCounted(Event, frozen=True, kw_only=True):
    """A physical count set stock on hand; ``delta`` is the difference found."""

    TOPIC: ClassVar[str] = "stock.StockCounted"
    AGGREGATE: ClassVar[str] = "stock"

    sku: str
    counted: int
    delta: int
    on_hand: int
    request_id: str | None = None


StockEvent = StockReceived | StockAdjusted | StockCounted


# -- state ----------------------------------------------------------------------


class StockItem(State, frozen=True, kw_only=True):
    """Current state of one hub SKU."""

    sku: str
    on_hand: int
    recent_requests: tuple[str, ...] = ()


# -- decide ---------------------------------------------------------------------


def decide(state: StockItem | None, command: StockCommand, ctx: Context) -> list[Event]:
    """Check ``command`` against ``state`` and return the new events.

    A command whose ``request_id`` the item has already applied returns no
    events: a retried request is applied once.

    Raises:
        UnknownSkuError: adjusting or counting a SKU never received.
        InsufficientStockError: an adjustment below zero on hand.
    """
    if (
        state is not None
        and command.request_id is not None
        and command.request_id in state.recent_requests
    ):
        return []
    item_id = stock_item_id(command.sku)
    version = 1 if state is None else state.version + 1
    on_hand = 0 if state is None else state.on_hand
    meta = ctx.meta(item_id, version)
    if isinstance(command, ReceiveStock):
        return [
            StockReceived(
                **meta,
                sku=command.sku,
                quantity=command.quantity,
                on_hand=on_hand + command.quantity,
                reference=command.reference,
                request_id=command.request_id,
            )
        ]
    if state is None:
        raise UnknownSkuError(
            f"sku {command.sku!r} has no stock item: receive stock first"
        )
    if isinstance(command, AdjustStock):
        if command.delta == 0:
            raise InvalidQuantityError("delta 0: an adjustment must change stock")
        if on_hand + command.delta < 0:
            raise InsufficientStockError(
                f"sku {command.sku!r}: on hand {on_hand} + delta {command.delta} "
                f"< 0 (stock on hand may not go negative)"
            )
        return [
            StockAdjusted(
                **meta,
                sku=command.sku,
                delta=command.delta,
                reason=command.reason,
                on_hand=on_hand + command.delta,
                request_id=command.request_id,
            )
        ]
    return [
        StockCounted(
            **meta,
            sku=command.sku,
            counted=command.counted,
            delta=command.counted - on_hand,
            on_hand=command.counted,
            request_id=command.request_id,
        )
    ]


# -- mutate ---------------------------------------------------------------------


def _remember(state: StockItem | None, request_id: str | None) -> tuple[str, ...]:
    recent = () if state is None else state.recent_requests
    if request_id is None:
        return recent
    return (*recent, request_id)[-REMEMBERED_REQUESTS:]


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
            recent_requests=_remember(None, event.request_id),
        )
    return msgspec.structs.replace(
        state,
        version=event.originator_version,
        on_hand=event.on_hand,
        recent_requests=_remember(state, event.request_id),
    )


@mutate.register(StockAdjusted)
@mutate.register(StockCounted)
def _(event: StockAdjusted | StockCounted, state: StockItem | None) -> StockItem:
    assert state is not None, "a stock item starts with StockReceived"
    return msgspec.structs.replace(
        state,
        version=event.originator_version,
        on_hand=event.on_hand,
        recent_requests=_remember(state, event.request_id),
    )
