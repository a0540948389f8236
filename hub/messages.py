"""What the hub publishes on NATS: a contract, not the internal events.

Subscribers depend on these structs, never on ``domain`` classes. Each event
type has a public message struct here; :func:`to_message` translates, purely,
by copying the fields that the public struct declares. Internal refactors
therefore never break subscribers, and ``hub docs`` writes their JSON Schema.

Subjects of ``HUB_EVENTS``::

    hub.events.<aggregate>.<EventType>.<platform>

``<platform>`` is a platform code (``wechat_shop``, ``douyin_shop``, ...) or ``_``
when the event concerns no platform. Filter with wildcards, e.g.
``hub.events.stock.>`` (all stock events), ``hub.events.*.*.douyin_shop``
(everything about Douyin), ``hub.events.binding.BindingSuspended.*``.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

import msgspec

from domain.audience import ViewsRecorded
from domain.binding import (
    BindingActivated,
    BindingAuthorised,
    BindingReinstated,
    BindingRequested,
    BindingSuspended,
    BindingUnbound,
    GrantObtained,
    QualificationPassed,
    QualificationRejected,
    SpecialRequirementMet,
    SubjectMismatched,
    SubjectVerified,
)
from domain.catalog import (
    ProductChanged,
    ProductChangeReceived,
    ProductChangeRefused,
    ProductDefined,
    ProductRetired,
    ProductSynced,
)
from domain.events import Event
from domain.marketing import (
    CampaignClosed,
    CampaignPublished,
    CouponClaimed,
    CouponRedeemed,
    FissionRewardGranted,
    FollowerJoined,
    MemberEnrolled,
    ShareRecorded,
    ShareRefused,
)
from domain.order import (
    OrderCancelled,
    OrderCompleted,
    OrderPaid,
    OrderPlaced,
    OrderRefunded,
    OrderShipped,
    OrderStockRefused,
    ShipmentNoticeRecorded,
)
from domain.payout import (
    CommissionAgreed,
    LiveSessionScheduled,
    PayoutRefused,
    PayoutReversed,
    PayoutScheduled,
    PayoutSettled,
    PayoutVoided,
)
from domain.push import (
    StockPushDeadLettered,
    StockPushFailed,
    StockPushRequested,
    StockPushSent,
    StockPushSuperseded,
)
from domain.reconciliation import SettlementDifferenceFound, StatementReconciled
from domain.risk import (
    BindingSuspensionDue,
    BindingWarned,
    TrafficDiverted,
    ViolationRecorded,
    ViolationsCleared,
)
from domain.stock import (
    LowStockThresholdSet,
    SafetyStockSet,
    StockAdjusted,
    StockCommitted,
    StockConsumed,
    StockCounted,
    StockDriftDetected,
    StockLowAlertCleared,
    StockLowAlertRaised,
    StockOnHandSet,
    StockReceived,
    StockReleased,
    StockReserved,
    StockUnreserved,
)

#: Version of the envelope and message layout below.
SCHEMA_VERSION = 1
STREAM = "HUB_EVENTS"
SUBJECT_PREFIX = "hub.events"
NO_PLATFORM = "_"

# Headers of every message on HUB_EVENTS.
H_MSG_ID = "Nats-Msg-Id"
H_AGGREGATE_ID = "Hub-Aggregate-Id"
H_AGGREGATE_TYPE = "Hub-Aggregate-Type"
H_VERSION = "Hub-Aggregate-Version"
H_POSITION = "Hub-Position"
H_EVENT_TYPE = "Hub-Event-Type"
H_SCHEMA_VERSION = "Hub-Schema-Version"
#: The input the event descends from, and the event that called for it
#: (absent on events stored before the hub kept them).
H_CORRELATION_ID = "Hub-Correlation-Id"
H_CAUSATION_ID = "Hub-Causation-Id"


# -- event payloads (the ``data`` of an envelope) ------------------------------


# Stock payloads. Every stock message ends with the SKU's levels after the
# event: ``on_hand``, ``committed`` (promised to open orders), ``reserved``
# (held back by name), ``safety`` (safety stock filled) and ``available`` =
# on_hand - committed - reserved - safety, what may still be sold. The first
# three messages predate the other levels and carry them as fields added at the
# end, with defaults.


class StockReceivedV1(msgspec.Struct, frozen=True, kw_only=True):
    """Units of a SKU arrived; ``on_hand`` is the quantity after."""

    sku: str
    quantity: int
    on_hand: int
    reference: str = ""
    committed: int = 0
    reserved: int = 0
    safety: int = 0
    available: int = 0


class StockAdjustedV1(msgspec.Struct, frozen=True, kw_only=True):
    """Stock on hand of a SKU changed by ``delta``; ``on_hand`` is after."""

    sku: str
    delta: int
    reason: str
    on_hand: int
    committed: int = 0
    reserved: int = 0
    safety: int = 0
    available: int = 0


class StockCountedV1(msgspec.Struct, frozen=True, kw_only=True):
    """A physical count set stock on hand; ``delta`` is the difference found."""

    sku: str
    counted: int
    delta: int
    on_hand: int
    committed: int = 0
    reserved: int = 0
    safety: int = 0
    available: int = 0


class StockOnHandSetV1(msgspec.Struct, frozen=True, kw_only=True):
    """A compare-and-set moved on hand from ``expected_on_hand`` by ``delta``."""

    sku: str
    expected_on_hand: int
    delta: int
    source: str
    on_hand: int
    committed: int
    reserved: int
    safety: int
    available: int


class StockCommittedV1(msgspec.Struct, frozen=True, kw_only=True):
    """``quantity`` units were promised to order ``order_ref``.

    ``order_ref`` is ``platform:platform_order_id``; ``platform`` is also the
    subject's last token.
    """

    sku: str
    order_ref: str
    quantity: int
    platform: str | None
    on_hand: int
    committed: int
    reserved: int
    safety: int
    available: int


class StockReleasedV1(msgspec.Struct, frozen=True, kw_only=True):
    """``quantity`` of an order's units went back to available.

    ``remaining`` stay committed to the order; ``reason`` is ``cancelled``,
    ``refunded`` or the caller's.
    """

    sku: str
    order_ref: str
    quantity: int
    remaining: int
    reason: str
    platform: str | None
    on_hand: int
    committed: int
    reserved: int
    safety: int
    available: int


class StockConsumedV1(msgspec.Struct, frozen=True, kw_only=True):
    """``quantity`` of an order's units shipped: they left committed and on hand.

    ``shortfall`` of them were no longer on hand (on hand stops at zero).
    """

    sku: str
    order_ref: str
    quantity: int
    remaining: int
    shortfall: int
    platform: str | None
    on_hand: int
    committed: int
    reserved: int
    safety: int
    available: int


class StockReservedV1(msgspec.Struct, frozen=True, kw_only=True):
    """``quantity`` available units were held back under ``reference``."""

    sku: str
    reference: str
    quantity: int
    reason: str
    on_hand: int
    committed: int
    reserved: int
    safety: int
    available: int


class StockUnreservedV1(msgspec.Struct, frozen=True, kw_only=True):
    """``quantity`` units of reservation ``reference`` went back to available."""

    sku: str
    reference: str
    quantity: int
    remaining: int
    on_hand: int
    committed: int
    reserved: int
    safety: int
    available: int


class SafetyStockSetV1(msgspec.Struct, frozen=True, kw_only=True):
    """The SKU keeps ``safety_stock`` units back; ``safety`` of them are filled."""

    sku: str
    safety_stock: int
    on_hand: int
    committed: int
    reserved: int
    safety: int
    available: int


class LowStockThresholdSetV1(msgspec.Struct, frozen=True, kw_only=True):
    """Low-stock alerts fire at or below ``threshold`` (``null``: never)."""

    sku: str
    threshold: int | None
    on_hand: int
    committed: int
    reserved: int
    safety: int
    available: int


class StockDriftDetectedV1(msgspec.Struct, frozen=True, kw_only=True):
    """A platform shows ``reported`` where the hub expected ``expected``.

    ``drift = reported - expected`` is beyond ``tolerance``: positive, the
    platform shows too much (oversell risk); negative, too little.
    """

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
    available: int


class StockLowAlertRaisedV1(msgspec.Struct, frozen=True, kw_only=True):
    """Available stock of a SKU fell to or below its low-stock ``threshold``."""

    sku: str
    threshold: int
    on_hand: int
    committed: int
    reserved: int
    safety: int
    available: int


class StockLowAlertClearedV1(msgspec.Struct, frozen=True, kw_only=True):
    """Available rose above the threshold, or the threshold was removed."""

    sku: str
    threshold: int | None
    on_hand: int
    committed: int
    reserved: int
    safety: int
    available: int


# Order payloads. The envelope's aggregate id is the order's id (uuid5 of
# platform and platform order id). No buyer data is published: not even the
# opaque buyer reference, nor the parcel's tracking number.


class OrderLineV1(msgspec.Struct, frozen=True, kw_only=True):
    """One order line; ``total_fen = quantity * unit_price_fen - discount_fen``."""

    platform_sku_id: str
    hub_sku: str
    quantity: int
    unit_price_fen: int
    discount_fen: int
    total_fen: int


class StockMoveV1(msgspec.Struct, frozen=True, kw_only=True):
    """Units of a hub SKU an order step moves; ``remaining`` stay committed."""

    hub_sku: str
    quantity: int
    remaining: int


class RefundLineV1(msgspec.Struct, frozen=True, kw_only=True):
    """Units of one platform SKU a refund covers."""

    platform_sku_id: str
    quantity: int


class OrderPlacedV1(msgspec.Struct, frozen=True, kw_only=True):
    """An order was placed; ``total_fen`` is the sum of its line totals."""

    platform: str
    platform_order_id: str
    shop_id: str
    channel_account: str
    lines: tuple[OrderLineV1, ...]
    total_fen: int
    placed_at: datetime | None = None


class OrderPaidV1(msgspec.Struct, frozen=True, kw_only=True):
    """The buyer paid ``paid_fen``."""

    platform: str
    platform_order_id: str
    paid_fen: int
    payment_ref: str = ""
    paid_at: datetime | None = None


class OrderShippedV1(msgspec.Struct, frozen=True, kw_only=True):
    """The order left the warehouse; ``stock`` is what it consumes per hub SKU."""

    platform: str
    platform_order_id: str
    stock: tuple[StockMoveV1, ...]
    carrier: str = ""
    shipped_at: datetime | None = None
    notify_platform: bool = False


class ShipmentNoticeRecordedV1(msgspec.Struct, frozen=True, kw_only=True):
    """How the platform answered the hub's shipment notice (``outcome``)."""

    platform: str
    platform_order_id: str
    request_id: str
    outcome: str
    code: str = ""
    message: str = ""


class OrderCompletedV1(msgspec.Struct, frozen=True, kw_only=True):
    """The buyer received the order."""

    platform: str
    platform_order_id: str


class OrderCancelledV1(msgspec.Struct, frozen=True, kw_only=True):
    """The unpaid order was cancelled; ``stock`` is what it releases per hub SKU."""

    platform: str
    platform_order_id: str
    stock: tuple[StockMoveV1, ...]
    reason: str = ""


class OrderRefundedV1(msgspec.Struct, frozen=True, kw_only=True):
    """``amount_fen`` went back; ``refunded_fen`` in all; ``full``: all of it.

    ``stock``: units the refund releases from the commitment (before shipment).
    """

    platform: str
    platform_order_id: str
    refund_id: str
    amount_fen: int
    refunded_fen: int
    full: bool
    lines: tuple[RefundLineV1, ...] = ()
    stock: tuple[StockMoveV1, ...] = ()
    reason: str = ""


class OrderStockRefusedV1(msgspec.Struct, frozen=True, kw_only=True):
    """The stock item refused the order's ``action`` (``commit``, ...) on a SKU.

    ``code`` ``insufficient_stock`` on ``commit``: the order is oversold.
    """

    platform: str
    platform_order_id: str
    hub_sku: str
    action: str
    quantity: int
    code: str
    reason: str = ""


# Stock push payloads: one listing (platform, shop, hub SKU) and what the hub
# asked it to show. ``request_id`` is the stable id every retry of the call
# carries; the envelope's aggregate id is the listing's (uuid5 of platform,
# shop and SKU). See docs/connectors.md.


class StockPushRequestedV1(msgspec.Struct, frozen=True, kw_only=True):
    """The hub asked the platform to list ``quantity`` units of ``sku``.

    ``target_version`` is the stock item version the quantity was computed
    from; ``reason`` is ``stock_changed`` or ``calibration``.
    """

    platform: str
    shop_id: str
    sku: str
    platform_sku_id: str
    quantity: int
    target_version: int
    request_id: str
    reason: str = "stock_changed"


class StockPushSupersededV1(msgspec.Struct, frozen=True, kw_only=True):
    """A pending push was replaced by ``superseded_by`` before it was sent."""

    platform: str
    shop_id: str
    sku: str
    request_id: str
    quantity: int
    superseded_by: str


class StockPushSentV1(msgspec.Struct, frozen=True, kw_only=True):
    """The platform accepted the push and lists ``quantity`` units.

    ``previous`` is what it listed before, when read; ``attempts`` counts the
    HTTP calls of the last round.
    """

    platform: str
    shop_id: str
    sku: str
    request_id: str
    quantity: int
    attempts: int
    previous: int | None = None
    message: str = ""


class StockPushFailedV1(msgspec.Struct, frozen=True, kw_only=True):
    """Round ``round`` of the push failed (``rejected``, ``rate_limited`` or
    ``failed``); another round follows."""

    platform: str
    shop_id: str
    sku: str
    request_id: str
    outcome: str
    attempts: int
    round: int
    code: str | None = None
    message: str = ""


class StockPushDeadLetteredV1(msgspec.Struct, frozen=True, kw_only=True):
    """The push was given up after its last round: the listing may be wrong."""

    platform: str
    shop_id: str
    sku: str
    request_id: str
    quantity: int
    outcome: str
    rounds: int
    code: str | None = None
    message: str = ""


# Binding payloads. The aggregate id of the envelope identifies the binding
# (uuid5 of channel account, platform and shop id); BindingRequestedV1 carries
# those keys. Personal data stays masked as the domain records it: subject codes
# always, an individual's name beyond its first character.


class RuleFailureV1(msgspec.Struct, frozen=True, kw_only=True):
    """One qualification rule the merchant failed.

    ``message`` is the whole failure in one line, e.g.
    ``followers 8,120 < 10,000 (kuaishou_shop)``.
    """

    platform: str
    rule: str
    subject: str
    measured: str
    threshold: str
    message: str


class SubjectMismatchV1(msgspec.Struct, frozen=True, kw_only=True):
    """One field (``kind``, ``name`` or ``code``) where account and licence differ.

    Codes are masked, and so are individuals' names.
    """

    field: str
    account_value: str
    licence_value: str


class BindingRequestedV1(msgspec.Struct, frozen=True, kw_only=True):
    """A binding was requested; review time, route and scope from the profile."""

    channel_account: str
    platform: str
    shop_id: str
    requested_on: date
    materials: tuple[str, ...] = ()
    review_days_min: int | None = None
    review_days_max: int | None = None
    binding_route: str = ""
    data_scope: str | None = None


class SubjectVerifiedV1(msgspec.Struct, frozen=True, kw_only=True):
    """The account's certified subject matches the licence (code masked)."""

    platform: str
    subject_kind: str
    subject_name: str
    subject_code: str


class SubjectMismatchedV1(msgspec.Struct, frozen=True, kw_only=True):
    """Account and licence subjects differ; every differing field is listed."""

    platform: str
    mismatches: tuple[SubjectMismatchV1, ...]


class QualificationPassedV1(msgspec.Struct, frozen=True, kw_only=True):
    """Every qualification rule passed as of ``as_of``."""

    platform: str
    as_of: date
    pending_requirements: tuple[str, ...] = ()


class QualificationRejectedV1(msgspec.Struct, frozen=True, kw_only=True):
    """Qualification failed; ``failures`` lists every failed rule, in rule order."""

    platform: str
    as_of: date
    failures: tuple[RuleFailureV1, ...]


class SpecialRequirementMetV1(msgspec.Struct, frozen=True, kw_only=True):
    """One special requirement was met; ``remaining`` are still pending."""

    platform: str
    requirement: str
    evidence: str = ""
    remaining: tuple[str, ...] = ()


class GrantObtainedV1(msgspec.Struct, frozen=True, kw_only=True):
    """The hub ran the binding's route and obtained this grant (non-secret ref)."""

    platform: str
    binding_route: str
    grant_ref: str


class BindingAuthorisedV1(msgspec.Struct, frozen=True, kw_only=True):
    """The platform authorised the binding with this route and data scope."""

    platform: str
    binding_route: str
    data_scope: str | None = None
    mapped_data: tuple[str, ...] = ()
    grant_ref: str = ""


class BindingActivatedV1(msgspec.Struct, frozen=True, kw_only=True):
    """The binding is working: data flows within its scope."""

    platform: str


class BindingSuspendedV1(msgspec.Struct, frozen=True, kw_only=True):
    """The binding stopped for ``reason``; ``cause`` is a code for machines."""

    platform: str
    reason: str
    cause: str = "other"


class BindingReinstatedV1(msgspec.Struct, frozen=True, kw_only=True):
    """A suspended binding is active again."""

    platform: str
    reason: str = ""


class BindingUnboundV1(msgspec.Struct, frozen=True, kw_only=True):
    """The binding ended; it was ``previous_status``."""

    platform: str
    previous_status: str
    reason: str = ""


# -- payouts (docs/ledger.md) ---------------------------------------------------


class SplitV1(msgspec.Struct, frozen=True, kw_only=True):
    """A sale's (or a refund's) parts in fen; they add up to its amount."""

    streamer_fen: int
    platform_fen: int
    payment_fen: int
    merchant_fen: int


class CommissionAgreedV1(msgspec.Struct, frozen=True, kw_only=True):
    """A binding's sales pay ``streamer`` a commission of ``rate`` (decimal text)."""

    channel_account: str
    platform: str
    shop_id: str
    streamer: str
    rate: str


class LiveSessionScheduledV1(msgspec.Struct, frozen=True, kw_only=True):
    """Orders placed on the binding in ``[starts_at, ends_at)`` pay ``streamer``
    a commission of ``rate``."""

    channel_account: str
    platform: str
    shop_id: str
    session_id: str
    starts_at: datetime
    ends_at: datetime
    streamer: str
    rate: str


class ViewsRecordedV1(msgspec.Struct, frozen=True, kw_only=True):
    """``views`` more people watched a channel's live session (``source`` live,
    ``source_id`` the session id) or video (``video``); ``total`` so far."""

    channel_account: str
    source: str
    source_id: str
    views: int
    total: int
    at: datetime


class CatalogSkuV1(msgspec.Struct, frozen=True, kw_only=True):
    """One SKU of a product: hub SKU code, spec attributes, price in fen."""

    sku: str
    attributes: dict[str, str] = {}
    price_fen: int


class ProductDefinedV1(msgspec.Struct, frozen=True, kw_only=True):
    """A product entered the hub's library at revision 1 (images are URLs)."""

    product: str
    title: str
    price_fen: int
    skus: tuple[CatalogSkuV1, ...] = ()
    images: tuple[str, ...] = ()
    revision: int = 1


class ProductContentChangedV1(msgspec.Struct, frozen=True, kw_only=True):
    """A new revision of a product: ``fields`` names the changed ones, given here."""

    product: str
    revision: int
    fields: tuple[str, ...]
    title: str | None = None
    price_fen: int | None = None
    skus: tuple[CatalogSkuV1, ...] | None = None
    images: tuple[str, ...] | None = None


class ProductChangedV1(ProductContentChangedV1, frozen=True, kw_only=True):
    """The hub changed a product."""


class ProductChangeReceivedV1(ProductContentChangedV1, frozen=True, kw_only=True):
    """A platform's edit of a product was taken in as a new revision."""

    shop_id: str
    edited_at: datetime


class ProductChangeRefusedV1(msgspec.Struct, frozen=True, kw_only=True):
    """A platform's edit of a product was refused; ``reason`` names the rule."""

    product: str
    shop_id: str
    edited_at: datetime
    fields: tuple[str, ...]
    direction: str
    reason: str


class ProductRetiredV1(msgspec.Struct, frozen=True, kw_only=True):
    """A product left the library."""

    product: str
    revision: int
    reason: str = ""


class ProductSyncedV1(msgspec.Struct, frozen=True, kw_only=True):
    """A shop's platform holds ``revision`` of the product."""

    product: str
    shop_id: str
    revision: int
    platform_product_id: str


class PayoutScheduledV1(msgspec.Struct, frozen=True, kw_only=True):
    """A paid order's split, pending until ``settles_on`` (its channel's T+n)."""

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
    split: SplitV1
    paid_at: datetime
    settles_on: date


class PayoutReversedV1(msgspec.Struct, frozen=True, kw_only=True):
    """A refund's reversal of the split, in proportion, pending until ``settles_on``."""

    platform: str
    platform_order_id: str
    shop_id: str
    channel: str
    streamer: str
    refund_id: str
    amount_fen: int
    refunded_fen: int
    split: SplitV1
    refunded_at: datetime
    settles_on: date


class PayoutSettledV1(msgspec.Struct, frozen=True, kw_only=True):
    """Payout ``payout`` (``sale`` or ``refund:<id>``) settled on ``settled_on``."""

    platform: str
    platform_order_id: str
    payout: str
    channel: str
    settled_on: date


class PayoutVoidedV1(msgspec.Struct, frozen=True, kw_only=True):
    """Pending payouts that will never settle (refunded in full before)."""

    platform: str
    platform_order_id: str
    payouts: list[str]
    reason: str = ""


class PayoutRefusedV1(msgspec.Struct, frozen=True, kw_only=True):
    """The order's payout could not be scheduled; ``reason`` names the rule."""

    platform: str
    platform_order_id: str
    code: str
    reason: str = ""


class SettlementDifferenceFoundV1(msgspec.Struct, frozen=True, kw_only=True):
    """A platform's settlement statement and the ledger disagree about an order's
    ``field`` (``order``: the ledger has no sale of it, ``ledger_fen`` null)."""

    platform: str
    shop_id: str
    day: date
    order_id: str
    field: str
    statement_fen: int
    ledger_fen: int | None


class StatementReconciledV1(msgspec.Struct, frozen=True, kw_only=True):
    """A shop's statement of ``day`` was compared with the ledger."""

    platform: str
    shop_id: str
    day: date
    lines: int
    differences: int


#: Internal event class → public payload struct.
class TrafficDivertedV1(msgspec.Struct, frozen=True, kw_only=True):
    """A diversion counted against the binding's budget: ``count`` of ``limit``."""

    platform: str
    reference: str
    window: str
    count: int
    limit: int
    rule: str


class ViolationRecordedV1(msgspec.Struct, frozen=True, kw_only=True):
    """A violation signal about a binding; ``count`` counted in the rule's window."""

    platform: str
    signal: str
    reference: str
    evidence: str
    outcome: str
    counted: bool
    count: int
    rule: str


class BindingWarnedV1(msgspec.Struct, frozen=True, kw_only=True):
    """The binding is warned: suspended when ``count`` reaches ``suspend_at``."""

    platform: str
    count: int
    suspend_at: int
    rule: str


class BindingSuspensionDueV1(msgspec.Struct, frozen=True, kw_only=True):
    """The violation rule suspends the binding, with the evidence."""

    platform: str
    channel_account: str
    shop_id: str
    count: int
    rule: str
    evidence: tuple[str, ...]


class ViolationsClearedV1(msgspec.Struct, frozen=True, kw_only=True):
    """The binding's counted violations no longer count."""

    platform: str
    reason: str
    cleared: int


class ReductionTierV1(msgspec.Struct, frozen=True, kw_only=True):
    """Spend ``threshold_fen`` or more, get ``reduction_fen`` off."""

    threshold_fen: int
    reduction_fen: int


class ThresholdReductionV1(msgspec.Struct, frozen=True, kw_only=True):
    """The shop's spend-threshold reduction: tiers, or one repeating up to a cap."""

    tiers: tuple[ReductionTierV1, ...]
    repeating: bool = False
    cap_fen: int | None = None


class CouponTermsV1(msgspec.Struct, frozen=True, kw_only=True):
    """A coupon: ``amount_fen`` off, or ``percent_off`` up to ``max_discount_fen``."""

    kind: str
    amount_fen: int = 0
    percent_off: int = 0
    max_discount_fen: int | None = None
    min_spend_fen: int = 0


class FissionTermsV1(msgspec.Struct, frozen=True, kw_only=True):
    """``friends_needed`` distinct friends' opens earn the ``reward`` coupon."""

    friends_needed: int
    reward: CouponTermsV1
    rewards_per_buyer_per_day: int
    max_rewards: int


class CampaignPublishedV1(msgspec.Struct, frozen=True, kw_only=True):
    """A campaign's offers and limits, valid in ``[starts_at, ends_at)``."""

    channel_account: str
    platform: str
    shop_id: str
    campaign: str
    title: str
    starts_at: datetime
    ends_at: datetime
    reduction: ThresholdReductionV1 | None = None
    coupon: CouponTermsV1 | None = None
    per_buyer_limit: int
    total_quantity: int
    fission: FissionTermsV1 | None = None


class CouponClaimedV1(msgspec.Struct, frozen=True, kw_only=True):
    """A buyer (subject id) claimed a live-room coupon; ``claimed`` in all."""

    campaign: str
    buyer: str
    claimed: int


class ShareRecordedV1(msgspec.Struct, frozen=True, kw_only=True):
    """A friend's open credited to the sharer: ``progress`` of ``needed``."""

    campaign: str
    sharer: str
    friend: str
    progress: int
    needed: int


class ShareRefusedV1(msgspec.Struct, frozen=True, kw_only=True):
    """A share not credited: ``reason`` names the abuse rule it broke."""

    campaign: str
    sharer: str
    friend: str
    reason: str
    detail: str


class FissionRewardGrantedV1(msgspec.Struct, frozen=True, kw_only=True):
    """The sharer earned a fission coupon; ``rewarded`` in all."""

    campaign: str
    sharer: str
    day: str
    rewarded: int


class CouponRedeemedV1(msgspec.Struct, frozen=True, kw_only=True):
    """An order used a coupon: its discounts and each line's share, in fen."""

    campaign: str
    buyer: str
    coupon: str
    order_platform: str
    platform_order_id: str
    subtotal_fen: int
    reduction_fen: int
    coupon_fen: int
    line_discounts_fen: tuple[int, ...]
    redeemed: int
    discount_total_fen: int


class CampaignClosedV1(msgspec.Struct, frozen=True, kw_only=True):
    """The campaign ended."""

    campaign: str
    reason: str


class FollowerJoinedV1(msgspec.Struct, frozen=True, kw_only=True):
    """A subject follows the binding's channel account."""

    channel_account: str
    shop_id: str
    subject_id: str
    followed_at: datetime


class MemberEnrolledV1(msgspec.Struct, frozen=True, kw_only=True):
    """The follower is a shop member; ``fields`` names the personal fields kept
    (sealed, never published), ``mode`` the platform's profile mode."""

    shop_id: str
    subject_id: str
    mode: str
    merged: bool
    fields: tuple[str, ...]


PAYLOADS: dict[type[Event], type[msgspec.Struct]] = {
    StockReceived: StockReceivedV1,
    StockAdjusted: StockAdjustedV1,
    StockCounted: StockCountedV1,
    StockOnHandSet: StockOnHandSetV1,
    StockCommitted: StockCommittedV1,
    StockReleased: StockReleasedV1,
    StockConsumed: StockConsumedV1,
    StockReserved: StockReservedV1,
    StockUnreserved: StockUnreservedV1,
    SafetyStockSet: SafetyStockSetV1,
    LowStockThresholdSet: LowStockThresholdSetV1,
    StockDriftDetected: StockDriftDetectedV1,
    StockLowAlertRaised: StockLowAlertRaisedV1,
    StockLowAlertCleared: StockLowAlertClearedV1,
    OrderPlaced: OrderPlacedV1,
    OrderPaid: OrderPaidV1,
    OrderShipped: OrderShippedV1,
    OrderCompleted: OrderCompletedV1,
    OrderCancelled: OrderCancelledV1,
    OrderRefunded: OrderRefundedV1,
    OrderStockRefused: OrderStockRefusedV1,
    ShipmentNoticeRecorded: ShipmentNoticeRecordedV1,
    BindingRequested: BindingRequestedV1,
    SubjectVerified: SubjectVerifiedV1,
    SubjectMismatched: SubjectMismatchedV1,
    QualificationPassed: QualificationPassedV1,
    QualificationRejected: QualificationRejectedV1,
    SpecialRequirementMet: SpecialRequirementMetV1,
    GrantObtained: GrantObtainedV1,
    BindingAuthorised: BindingAuthorisedV1,
    BindingActivated: BindingActivatedV1,
    BindingSuspended: BindingSuspendedV1,
    BindingReinstated: BindingReinstatedV1,
    BindingUnbound: BindingUnboundV1,
    TrafficDiverted: TrafficDivertedV1,
    ViolationRecorded: ViolationRecordedV1,
    BindingWarned: BindingWarnedV1,
    BindingSuspensionDue: BindingSuspensionDueV1,
    ViolationsCleared: ViolationsClearedV1,
    StockPushRequested: StockPushRequestedV1,
    StockPushSuperseded: StockPushSupersededV1,
    StockPushSent: StockPushSentV1,
    StockPushFailed: StockPushFailedV1,
    StockPushDeadLettered: StockPushDeadLetteredV1,
    CommissionAgreed: CommissionAgreedV1,
    LiveSessionScheduled: LiveSessionScheduledV1,
    PayoutScheduled: PayoutScheduledV1,
    PayoutReversed: PayoutReversedV1,
    PayoutSettled: PayoutSettledV1,
    PayoutVoided: PayoutVoidedV1,
    PayoutRefused: PayoutRefusedV1,
    SettlementDifferenceFound: SettlementDifferenceFoundV1,
    StatementReconciled: StatementReconciledV1,
    CampaignPublished: CampaignPublishedV1,
    CouponClaimed: CouponClaimedV1,
    ShareRecorded: ShareRecordedV1,
    ShareRefused: ShareRefusedV1,
    FissionRewardGranted: FissionRewardGrantedV1,
    CouponRedeemed: CouponRedeemedV1,
    CampaignClosed: CampaignClosedV1,
    FollowerJoined: FollowerJoinedV1,
    MemberEnrolled: MemberEnrolledV1,
    ViewsRecorded: ViewsRecordedV1,
    ProductDefined: ProductDefinedV1,
    ProductChanged: ProductChangedV1,
    ProductChangeReceived: ProductChangeReceivedV1,
    ProductChangeRefused: ProductChangeRefusedV1,
    ProductRetired: ProductRetiredV1,
    ProductSynced: ProductSyncedV1,
}


class EventMessage(msgspec.Struct, frozen=True, kw_only=True):
    """Envelope of every message on ``HUB_EVENTS``.

    Attributes:
        schema_version: version of this envelope layout.
        event_id: unique id of the event (also the ``Nats-Msg-Id``).
        event_type: e.g. ``StockReceived`` (also the subject's fourth token).
        aggregate_type: e.g. ``stock`` (the subject's third token).
        aggregate_id: the aggregate's id.
        aggregate_version: the event's version within its aggregate.
        position: the event's position in the hub's global log.
        occurred_at: when the hub recorded the fact (UTC).
        platform: the platform code it concerns, if any.
        data: the event's public payload.
    """

    schema_version: Literal[1] = 1
    event_id: uuid.UUID
    event_type: str
    aggregate_type: str
    aggregate_id: uuid.UUID
    aggregate_version: int
    position: Annotated[int, msgspec.Meta(ge=1)]
    occurred_at: datetime
    platform: str | None = None
    data: dict[str, Any]


def event_type(event: Event) -> str:
    """The public type name of an event (its topic's last part)."""
    return type(event).TOPIC.rpartition(".")[2]


def subject_for(event: Event) -> str:
    """The ``HUB_EVENTS`` subject of an event."""
    platform = event.event_platform or NO_PLATFORM
    return f"{SUBJECT_PREFIX}.{type(event).AGGREGATE}.{event_type(event)}.{platform}"


def payload_of(event: Event) -> msgspec.Struct:
    """The public payload of ``event``: the fields its public struct declares.

    Nested internal structs (a binding's rule failures, an order's lines) become
    their public counterparts, field by field.
    """
    try:
        public = PAYLOADS[type(event)]
    except KeyError:
        raise LookupError(
            f"{type(event).__name__} has no public message in hub/messages.py"
        ) from None
    return msgspec.convert(event, public, from_attributes=True)


def to_message(event: Event, position: int) -> EventMessage:
    """Translate a stored event into its published envelope."""
    return EventMessage(
        event_id=event.event_id,
        event_type=event_type(event),
        aggregate_type=type(event).AGGREGATE,
        aggregate_id=event.originator_id,
        aggregate_version=event.originator_version,
        position=position,
        occurred_at=event.occurred_at,
        platform=event.event_platform,
        data=msgspec.to_builtins(payload_of(event)),
    )


def headers_for(event: Event, position: int) -> dict[str, str]:
    """The NATS headers of an event's message."""
    headers = {
        H_MSG_ID: str(event.event_id),
        H_AGGREGATE_ID: str(event.originator_id),
        H_AGGREGATE_TYPE: type(event).AGGREGATE,
        H_VERSION: str(event.originator_version),
        H_POSITION: str(position),
        H_EVENT_TYPE: event_type(event),
        H_SCHEMA_VERSION: str(SCHEMA_VERSION),
    }
    if event.correlation_id is not None:
        headers[H_CORRELATION_ID] = event.correlation_id
    if event.causation_id is not None:
        headers[H_CAUSATION_ID] = str(event.causation_id)
    return headers


# -- commands and replies on hub.cmd.* -----------------------------------------


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Why a command was refused: a machine code and a sentence naming the rule."""

    code: str
    message: str


class CommandReply(msgspec.Struct, frozen=True, kw_only=True):
    """Reply to every ``hub.cmd.*`` request.

    ``ok`` with the aggregate's new ``version`` and the log ``positions`` of the
    events stored (empty when a repeated ``request_id`` changed nothing), or not
    ``ok`` with an ``error``; a refused command changed nothing.
    """

    schema_version: Literal[1] = 1
    ok: bool
    aggregate_id: uuid.UUID | None = None
    version: int | None = None
    positions: list[int] = msgspec.field(default_factory=list)
    events: list[str] = msgspec.field(default_factory=list)
    state: dict[str, Any] | None = None
    error: ErrorInfo | None = None
