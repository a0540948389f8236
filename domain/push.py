"""The stock push aggregate: what the hub asked one platform listing to show.

One aggregate per listing, keyed by platform, shop and hub SKU
(:func:`stock_push_id`). The outbound dispatcher asks for a quantity each time
the SKU's levels change; every outcome of the call is recorded here, so the
history of a listing explains every number the platform ever showed::

    requested → sent
    requested → failed → ... → sent | dead-lettered
    requested → superseded (a newer target replaced it while it waited; a
                 superseded push already in flight still records its outcome)

Rules:

* a request is keyed by the stock item version it was computed from
  (``target_version``); a request at or below the newest version seen decides
  nothing, so replaying the log after a crash requests nothing twice;
* a request for the quantity already pending, or already sent with nothing
  pending, decides nothing; ``force`` (a calibration) re-sends it, at the
  newest version too, under a request id of its own;
* a newer request replaces the pending one, which is recorded as superseded;
  the listing then waits on the newer one only;
* an outcome is recorded once per request id (a repeated record is a no-op);
  an outcome for a request id the listing never issued is refused.
"""

from __future__ import annotations

import functools
import uuid
from typing import Annotated, Any, ClassVar, Literal

import msgspec

from domain.events import Context, DomainError, Event, State, derive_id, register
from domain.policy import PlatformCode

#: A shop's id on its platform.
ShopId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
#: A platform's SKU id.
PlatformSkuId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
#: The stable id of one requested change.
PushRequestId = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
#: A listed quantity.
Listed = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]
#: Free text from the platform (error messages), kept short.
Detail = Annotated[str, msgspec.Meta(max_length=500)]

#: How a failed call ended (``connectors.common.CallOutcome`` less ``sent``).
FailureOutcome = Literal["rejected", "rate_limited", "failed"]
#: Why a push was requested.
PushReason = Literal["stock_changed", "calibration"]

#: How many settled request ids a listing remembers (repeated records no-op).
REMEMBERED_SETTLED = 64


def stock_push_id(platform: str, shop_id: str, sku: str) -> uuid.UUID:
    """The aggregate id of hub SKU ``sku`` listed in ``platform``'s shop."""
    return derive_id("stock_push", platform, shop_id, sku)


def push_request_id(platform: str, shop_id: str, sku: str, target_version: int) -> str:
    """The stable request id of the push of ``sku``'s level at ``target_version``.

    Every retry of the push carries it, so the platform applies it once.
    """
    return f"sp-{stock_push_id(platform, shop_id, sku).hex[:16]}-v{target_version}"


#: Ends the request id of a drift report a calibration push files.
_CALIBRATED = ":calibrated"


def calibration_report_id(request_id: str) -> str:
    """The request id of the drift report filed by the push ``request_id`` when
    its calibration read the platform (one report per push)."""
    return request_id + _CALIBRATED


def is_calibration_report(request_id: str | None) -> bool:
    """Whether ``request_id`` names a report a calibration push filed
    (:func:`calibration_report_id`), not one reported from outside the hub."""
    return (
        request_id is not None
        and request_id.startswith("sp-")
        and request_id.endswith(_CALIBRATED)
    )


class UnknownPushRequestError(DomainError):
    """An outcome names a request id the listing never issued."""

    code = "unknown_push_request"


# -- commands -------------------------------------------------------------------


class RequestStockPush(msgspec.Struct, frozen=True, kw_only=True):
    """Ask the platform to list ``quantity`` units (computed at ``target_version``)."""

    platform: PlatformCode
    shop_id: ShopId
    sku: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    platform_sku_id: PlatformSkuId
    quantity: Listed
    target_version: Annotated[int, msgspec.Meta(ge=1)]
    reason: PushReason = "stock_changed"
    force: bool = False


class RecordStockPushSent(msgspec.Struct, frozen=True, kw_only=True):
    """The platform accepted the push ``request_id``."""

    platform: PlatformCode
    shop_id: ShopId
    sku: str
    request_id: PushRequestId
    attempts: Annotated[int, msgspec.Meta(ge=0)] = 1
    previous: int | None = None
    message: Detail = ""


class RecordStockPushFailed(msgspec.Struct, frozen=True, kw_only=True):
    """A round of calls for ``request_id`` ended without success; it will retry."""

    platform: PlatformCode
    shop_id: ShopId
    sku: str
    request_id: PushRequestId
    outcome: FailureOutcome
    attempts: Annotated[int, msgspec.Meta(ge=0)] = 0
    round: Annotated[int, msgspec.Meta(ge=1)] = 1
    code: str | None = None
    message: Detail = ""


class DeadLetterStockPush(msgspec.Struct, frozen=True, kw_only=True):
    """Give up on ``request_id`` after its last retry; an operator must look."""

    platform: PlatformCode
    shop_id: ShopId
    sku: str
    request_id: PushRequestId
    outcome: FailureOutcome
    rounds: Annotated[int, msgspec.Meta(ge=1)] = 1
    code: str | None = None
    message: Detail = ""


StockPushCommand = (
    RequestStockPush | RecordStockPushSent | RecordStockPushFailed | DeadLetterStockPush
)


# -- events ---------------------------------------------------------------------


@register
class StockPushRequested(Event, frozen=True, kw_only=True):
    """The hub asked ``platform`` to list ``quantity`` units of ``sku``."""

    TOPIC: ClassVar[str] = "stock_push.StockPushRequested"
    AGGREGATE: ClassVar[str] = "stock_push"

    platform: str
    shop_id: str
    sku: str
    platform_sku_id: str
    quantity: int
    target_version: int
    request_id: str
    reason: str = "stock_changed"


@register
class StockPushSuperseded(Event, frozen=True, kw_only=True):
    """A pending push was replaced by a newer target before it was sent."""

    TOPIC: ClassVar[str] = "stock_push.StockPushSuperseded"
    AGGREGATE: ClassVar[str] = "stock_push"

    platform: str
    shop_id: str
    sku: str
    request_id: str
    quantity: int
    superseded_by: str


@register
class StockPushSent(Event, frozen=True, kw_only=True):
    """The platform accepted the push: it lists ``quantity`` units.

    ``previous`` is what it listed before, when the hub read it.
    """

    TOPIC: ClassVar[str] = "stock_push.StockPushSent"
    AGGREGATE: ClassVar[str] = "stock_push"

    platform: str
    shop_id: str
    sku: str
    request_id: str
    quantity: int
    attempts: int
    previous: int | None = None
    message: str = ""


@register
class StockPushFailed(Event, frozen=True, kw_only=True):
    """A round of calls (with its own retries) failed; another round follows."""

    TOPIC: ClassVar[str] = "stock_push.StockPushFailed"
    AGGREGATE: ClassVar[str] = "stock_push"

    platform: str
    shop_id: str
    sku: str
    request_id: str
    outcome: str
    attempts: int
    round: int
    code: str | None = None
    message: str = ""


@register
class StockPushDeadLettered(Event, frozen=True, kw_only=True):
    """The push was given up after its last retry; the listing may be wrong."""

    TOPIC: ClassVar[str] = "stock_push.StockPushDeadLettered"
    AGGREGATE: ClassVar[str] = "stock_push"

    platform: str
    shop_id: str
    sku: str
    request_id: str
    quantity: int
    outcome: str
    rounds: int
    code: str | None = None
    message: str = ""


StockPushEvent = (
    StockPushRequested
    | StockPushSuperseded
    | StockPushSent
    | StockPushFailed
    | StockPushDeadLettered
)


# -- state ----------------------------------------------------------------------


class PendingPush(msgspec.Struct, frozen=True, kw_only=True):
    """The push the listing waits on: the newest request not yet settled."""

    request_id: str
    quantity: int
    target_version: int
    failures: int = 0


class StockPush(State, frozen=True, kw_only=True):
    """One listing's push history, folded.

    ``requested`` maps every request id still remembered to its quantity.
    """

    platform: str
    shop_id: str
    sku: str
    platform_sku_id: str
    last_version: int = 0
    pending: PendingPush | None = None
    sent_quantity: int | None = None
    dead_letters: int = 0
    requested: dict[str, int] = msgspec.field(default_factory=dict)
    settled: tuple[str, ...] = ()


# -- decide ---------------------------------------------------------------------


def decide(
    state: StockPush | None, command: StockPushCommand, ctx: Context
) -> list[Event]:
    """Check ``command`` against ``state`` and return the new events.

    Raises:
        UnknownPushRequestError: an outcome for a request the listing never made.
    """
    if isinstance(command, RequestStockPush):
        return _request(state, command, ctx)
    where = f"{command.platform}/{command.shop_id} sku {command.sku}"
    if state is None or command.request_id not in state.requested:
        raise UnknownPushRequestError(
            f"stock push {command.request_id!r} of {where} was never requested "
            "(an outcome is recorded only for a requested push)"
        )
    if command.request_id in state.settled:
        return []
    meta: dict[str, Any] = {
        **ctx.meta(state.id, state.version + 1),
        "platform": state.platform,
        "shop_id": state.shop_id,
        "sku": state.sku,
    }
    quantity = state.requested[command.request_id]
    if isinstance(command, RecordStockPushSent):
        return [
            StockPushSent(
                **meta,
                request_id=command.request_id,
                quantity=quantity,
                attempts=command.attempts,
                previous=command.previous,
                message=command.message,
            )
        ]
    if isinstance(command, RecordStockPushFailed):
        return [
            StockPushFailed(
                **meta,
                request_id=command.request_id,
                outcome=command.outcome,
                attempts=command.attempts,
                round=command.round,
                code=command.code,
                message=command.message,
            )
        ]
    return [
        StockPushDeadLettered(
            **meta,
            request_id=command.request_id,
            quantity=quantity,
            outcome=command.outcome,
            rounds=command.rounds,
            code=command.code,
            message=command.message,
        )
    ]


def _request(
    state: StockPush | None, command: RequestStockPush, ctx: Context
) -> list[Event]:
    if state is not None:
        if command.target_version < state.last_version:
            return []
        if not command.force and (
            command.target_version == state.last_version
            or _unchanged(state, command.quantity)
        ):
            return []
    aggregate_id = stock_push_id(command.platform, command.shop_id, command.sku)
    version = 0 if state is None else state.version
    request_id = push_request_id(
        command.platform, command.shop_id, command.sku, command.target_version
    )
    if command.force:
        # A forced re-send of the same target is a new write: its own id.
        request_id = f"{request_id}-f{version + 1}"
    events: list[Event] = []
    if state is not None and state.pending is not None:
        version += 1
        events.append(
            StockPushSuperseded(
                **ctx.meta(aggregate_id, version),
                platform=command.platform,
                shop_id=command.shop_id,
                sku=command.sku,
                request_id=state.pending.request_id,
                quantity=state.pending.quantity,
                superseded_by=request_id,
            )
        )
    events.append(
        StockPushRequested(
            **ctx.meta(aggregate_id, version + 1),
            platform=command.platform,
            shop_id=command.shop_id,
            sku=command.sku,
            platform_sku_id=command.platform_sku_id,
            quantity=command.quantity,
            target_version=command.target_version,
            request_id=request_id,
            reason=command.reason,
        )
    )
    return events


def _unchanged(state: StockPush, quantity: int) -> bool:
    """Whether ``quantity`` is already pending, or sent with nothing pending."""
    if state.pending is not None:
        return state.pending.quantity == quantity
    return state.sent_quantity == quantity


# -- mutate ---------------------------------------------------------------------


def _existing(state: StockPush | None, event: Event) -> StockPush:
    assert state is not None, f"{type(event).__name__} before StockPushRequested"
    return state


def _settle(state: StockPush, request_id: str, **changes: Any) -> StockPush:
    pending = state.pending
    if pending is not None and pending.request_id == request_id:
        pending = None
    return msgspec.structs.replace(
        state,
        pending=pending,
        settled=(*state.settled, request_id)[-REMEMBERED_SETTLED:],
        **changes,
    )


def _remembered(
    requested: dict[str, int], request_id: str, quantity: int
) -> dict[str, int]:
    kept = dict(list(requested.items())[-(REMEMBERED_SETTLED - 1) :])
    kept[request_id] = quantity
    return kept


@functools.singledispatch
def mutate(event: Event, state: StockPush | None) -> StockPush | None:
    """Evolve ``state`` by ``event``."""
    raise TypeError(f"stock push cannot apply {type(event).__name__}")


@mutate.register
def _(event: StockPushRequested, state: StockPush | None) -> StockPush:
    pending = PendingPush(
        request_id=event.request_id,
        quantity=event.quantity,
        target_version=event.target_version,
    )
    if state is None:
        return StockPush(
            id=event.originator_id,
            version=event.originator_version,
            platform=event.platform,
            shop_id=event.shop_id,
            sku=event.sku,
            platform_sku_id=event.platform_sku_id,
            last_version=event.target_version,
            pending=pending,
            requested={event.request_id: event.quantity},
        )
    return msgspec.structs.replace(
        state,
        version=event.originator_version,
        platform_sku_id=event.platform_sku_id,
        last_version=event.target_version,
        pending=pending,
        requested=_remembered(state.requested, event.request_id, event.quantity),
    )


@mutate.register
def _(event: StockPushSuperseded, state: StockPush | None) -> StockPush:
    # Not settled: a superseded push already in flight still records its outcome.
    current = _existing(state, event)
    return msgspec.structs.replace(
        current, version=event.originator_version, pending=None
    )


@mutate.register
def _(event: StockPushSent, state: StockPush | None) -> StockPush:
    return _settle(
        _existing(state, event),
        event.request_id,
        version=event.originator_version,
        sent_quantity=event.quantity,
    )


@mutate.register
def _(event: StockPushFailed, state: StockPush | None) -> StockPush:
    current = _existing(state, event)
    pending = current.pending
    if pending is not None and pending.request_id == event.request_id:
        pending = msgspec.structs.replace(pending, failures=pending.failures + 1)
    return msgspec.structs.replace(
        current, version=event.originator_version, pending=pending
    )


@mutate.register
def _(event: StockPushDeadLettered, state: StockPush | None) -> StockPush:
    current = _existing(state, event)
    return _settle(
        current,
        event.request_id,
        version=event.originator_version,
        dead_letters=current.dead_letters + 1,
    )
