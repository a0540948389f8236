"""Marketing: coupons stacking with the shop's reduction, fission, membership.

Three parts, in the hub's functional style (``docs/marketing.md``).

**Pricing** (:func:`price_order`, pure): the shop's spend-threshold reduction
(满减: tiers, or "every X off Y" repeating up to a cap) applies first, to the
value of the lines; the live-room coupon (an amount off, or a percentage off
up to a cap, each with a minimum spend) applies second, to what is left after
the reduction, and its minimum spend is checked against that amount; an order
always pays at least :data:`MIN_PAYABLE_FEN`. Each discount is spread over the
lines in proportion to their value, by largest remainder, so the lines' fen
add up to the discount exactly and no line goes below zero.

**Campaign** (one per channel account, shop and campaign code): published
with its offers, window, per-buyer limit and quantity; buyers claim live-room
coupons (:class:`ClaimCoupon`), a buyer who shares the live room earns the
campaign's fission coupon once enough distinct friends opened the share
(:class:`RecordShare`; abuse is recorded as :class:`ShareRefused` with its
reason), and an order redeems a coupon (:class:`RedeemCoupon`), which prices
the order and records every line's discount. :class:`CloseCampaign` ends it.

**Membership** (one per follower of a binding's channel account): a follower
(:class:`EnrollMember`, a pseudonymous subject id and, optionally, the
follower's sealed profile) becomes a shop member under the profile policy of
the binding's platform: the fields the mode keeps, none for a CRM transfer or
a platform without a mode.

Buyers, sharers, friends and followers are named by subject ids (``sub_`` and
a keyed hash, ``domain/personal.py``), never by a phone or an open id.
"""

from __future__ import annotations

import functools
import uuid
import zlib
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, ClassVar, Final, Literal, Protocol, TypeVar

import msgspec

from domain.calendar import CHINA_TIME
from domain.events import Context, DomainError, Event, State, derive_id, register
from domain.personal import (
    ENCRYPTED_TRANSFER_TO_CRM,
    ProfilePolicy,
    SealedBuyer,
    SubjectId,
)

#: What an order pays at least, whatever stacks on it.
MIN_PAYABLE_FEN: Final = 1

Key = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
#: A campaign's code, chosen by the merchant (no ``:``: it ends a reference).
CampaignCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]
Text = Annotated[str, msgspec.Meta(max_length=200)]
PositiveFen = Annotated[int, msgspec.Meta(gt=0, le=1_000_000_000_000)]
Fen = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000_000)]
Count = Annotated[int, msgspec.Meta(ge=1, le=1_000_000_000)]
#: A device fingerprint's hash (never the raw identifier).
DeviceHash = Annotated[str, msgspec.Meta(max_length=128)]
CouponKind = Literal["live_room", "fission"]
ShareRefusal = Literal[
    "self_invite",
    "friend_already_credited",
    "device_already_credited",
    "daily_cap_reached",
    "rewards_exhausted",
]


# -- errors ---------------------------------------------------------------------


class CampaignError(DomainError):
    """A campaign's terms break a rule (names the field and the rule)."""

    code = "campaign_invalid"


class CampaignNotActiveError(DomainError):
    """A claim, share or redemption outside the campaign's life or window."""

    code = "campaign_not_active"


class CouponLimitError(DomainError):
    """A claim past the buyer's limit or the campaign's quantity."""

    code = "coupon_limit"


class CouponNotHeldError(DomainError):
    """A redemption by a buyer who holds no unused coupon of that kind."""

    code = "coupon_not_held"


class MinimumSpendError(DomainError):
    """A coupon redeemed on an order below its minimum spend."""

    code = "minimum_spend"


class MemberProfileError(DomainError):
    """A follower's profile that belongs to another subject."""

    code = "member_profile"


# -- offers ---------------------------------------------------------------------


class ReductionTier(msgspec.Struct, frozen=True, kw_only=True):
    """Spend ``threshold_fen`` (or more), get ``reduction_fen`` off."""

    threshold_fen: PositiveFen
    reduction_fen: PositiveFen


class ThresholdReduction(msgspec.Struct, frozen=True, kw_only=True):
    """The shop's spend-threshold reduction (满减).

    Attributes:
        tiers: Thresholds and reductions, both rising; the highest tier reached
            applies.
        repeating: "Every ``threshold`` off ``reduction``" (每满减): one tier,
            applied as many times as the amount holds the threshold.
        cap_fen: The most a repeating reduction takes off (None: no cap).
    """

    tiers: Annotated[tuple[ReductionTier, ...], msgspec.Meta(min_length=1)]
    repeating: bool = False
    cap_fen: PositiveFen | None = None

    def reduction_for(self, amount_fen: int) -> int:
        """What this reduction takes off ``amount_fen`` (always less than it)."""
        if self.repeating:
            tier = self.tiers[0]
            times = amount_fen // tier.threshold_fen
            off = times * tier.reduction_fen
            return off if self.cap_fen is None else min(off, self.cap_fen)
        reached = [t for t in self.tiers if t.threshold_fen <= amount_fen]
        return reached[-1].reduction_fen if reached else 0


class CouponTerms(msgspec.Struct, frozen=True, kw_only=True):
    """A coupon: an amount off, or a percentage off up to a cap.

    Attributes:
        kind: ``amount`` (``amount_fen`` off) or ``percent``
            (``percent_off`` % off, at most ``max_discount_fen``).
        min_spend_fen: The least the order must come to, after the shop's
            reduction, for the coupon to apply (0: no minimum).
    """

    kind: Literal["amount", "percent"]
    amount_fen: Fen = 0
    percent_off: Annotated[int, msgspec.Meta(ge=0, le=99)] = 0
    max_discount_fen: PositiveFen | None = None
    min_spend_fen: Fen = 0

    def applies_to(self, amount_fen: int) -> bool:
        """Whether ``amount_fen`` reaches the minimum spend."""
        return amount_fen > 0 and amount_fen >= self.min_spend_fen

    def discount_for(self, amount_fen: int) -> int:
        """What the coupon takes off ``amount_fen`` (0 below its minimum)."""
        if not self.applies_to(amount_fen):
            return 0
        if self.kind == "amount":
            return min(self.amount_fen, amount_fen)
        off = amount_fen * self.percent_off // 100
        return off if self.max_discount_fen is None else min(off, self.max_discount_fen)


class Offers(msgspec.Struct, frozen=True, kw_only=True):
    """What stacks on one order: the shop's reduction and one coupon."""

    reduction: ThresholdReduction | None = None
    coupon: CouponTerms | None = None


def reduction_problems(reduction: ThresholdReduction, field: str) -> list[str]:
    """What breaks the rules of a reduction, each naming its field."""
    problems: list[str] = []
    if reduction.repeating and len(reduction.tiers) != 1:
        problems.append(
            f"{field}.tiers: {len(reduction.tiers)} tiers (a repeating reduction "
            "has exactly one)"
        )
    for index, tier in enumerate(reduction.tiers):
        if tier.reduction_fen >= tier.threshold_fen:
            problems.append(
                f"{field}.tiers[{index}]: reduction_fen {tier.reduction_fen} >= "
                f"threshold_fen {tier.threshold_fen} (a reduction is less than its "
                "threshold)"
            )
        if index and not (
            reduction.tiers[index - 1].threshold_fen < tier.threshold_fen
            and reduction.tiers[index - 1].reduction_fen < tier.reduction_fen
        ):
            problems.append(
                f"{field}.tiers[{index}]: {tier.threshold_fen}/{tier.reduction_fen} "
                "does not rise above the tier before (tiers rise in both threshold "
                "and reduction)"
            )
    return problems


def coupon_problems(coupon: CouponTerms, field: str) -> list[str]:
    """What breaks the rules of a coupon, each naming its field."""
    if coupon.kind == "amount" and coupon.amount_fen <= 0:
        return [f"{field}.amount_fen: an amount coupon takes off more than 0 fen"]
    if coupon.kind == "percent" and coupon.percent_off <= 0:
        return [f"{field}.percent_off: a percent coupon takes off 1 to 99 %"]
    return []


# -- pricing --------------------------------------------------------------------


class PricedLineLike(Protocol):
    """What pricing reads of an order line (``domain.order.OrderLine`` has it)."""

    @property
    def quantity(self) -> int:
        """Units bought."""
        ...

    @property
    def unit_price_fen(self) -> int:
        """Price of one unit."""
        ...

    @property
    def discount_fen(self) -> int:
        """Discount already on the line (a single-item price cut)."""
        ...


class CartLine(msgspec.Struct, frozen=True, kw_only=True):
    """A line to price: ``quantity`` × ``unit_price_fen``, less ``discount_fen``."""

    sku: Key
    quantity: Count
    unit_price_fen: Fen
    discount_fen: Fen = 0

    def __post_init__(self) -> None:
        """Refuse a line whose own discount exceeds its price."""
        if self.discount_fen > self.quantity * self.unit_price_fen:
            raise ValueError(
                f"line {self.sku}: discount_fen {self.discount_fen} > "
                f"{self.quantity} x {self.unit_price_fen} fen (a line total is "
                "never negative)"
            )


class PricedLine(msgspec.Struct, frozen=True, kw_only=True):
    """One line's share of each discount; ``value_fen`` is what it cost before."""

    value_fen: int
    reduction_fen: int
    coupon_fen: int

    @property
    def discount_fen(self) -> int:
        """The line's share of the order's discount."""
        return self.reduction_fen + self.coupon_fen


class PricedOrder(msgspec.Struct, frozen=True, kw_only=True):
    """An order priced under its offers; ``lines`` in the order given."""

    subtotal_fen: int
    reduction_fen: int
    coupon_fen: int
    coupon_applied: bool
    lines: tuple[PricedLine, ...]

    @property
    def discount_fen(self) -> int:
        """The whole discount: reduction plus coupon."""
        return self.reduction_fen + self.coupon_fen

    @property
    def payable_fen(self) -> int:
        """What the order pays."""
        return self.subtotal_fen - self.discount_fen


def allocate(total_fen: int, weights: Sequence[int]) -> list[int]:
    """Split ``total_fen`` over ``weights`` in proportion, by largest remainder.

    The parts add up to ``total_fen`` exactly; ties go to the earlier weight.
    With ``total_fen`` at most the weights' sum, no part exceeds its weight.

    Raises:
        ValueError: a negative total, or a total with nothing to spread over.
    """
    whole = sum(weights)
    if total_fen < 0 or (total_fen and whole <= 0):
        raise ValueError(f"cannot spread {total_fen} fen over weights {list(weights)}")
    if total_fen == 0:
        return [0] * len(weights)
    parts = [total_fen * w // whole for w in weights]
    remainders = [total_fen * w % whole for w in weights]
    left = total_fen - sum(parts)
    for index in sorted(range(len(weights)), key=lambda i: (-remainders[i], i))[:left]:
        parts[index] += 1
    return parts


def price_order(lines: Sequence[PricedLineLike], offers: Offers) -> PricedOrder:
    """Price an order: the shop's reduction first, then the coupon.

    Each line's value is its quantity times its unit price less the discount
    already on it. The reduction is computed on the sum of the values and
    spread over them; the coupon's minimum spend is checked against what is
    left after the reduction, its discount computed on that amount and spread
    over what is left of each line. The discounts are cut short so that the
    order pays at least :data:`MIN_PAYABLE_FEN` (a published reduction never
    needs it: each is less than its threshold).
    """
    values = [ln.quantity * ln.unit_price_fen - ln.discount_fen for ln in lines]
    subtotal = sum(values)
    most = max(subtotal - MIN_PAYABLE_FEN, 0)
    reduction = (
        min(offers.reduction.reduction_for(subtotal), most)
        if offers.reduction is not None
        else 0
    )
    after = subtotal - reduction
    applied = offers.coupon is not None and offers.coupon.applies_to(after)
    coupon = 0
    if offers.coupon is not None and applied:
        coupon = min(offers.coupon.discount_for(after), most - reduction)
    by_reduction = allocate(reduction, values)
    left = [v - r for v, r in zip(values, by_reduction, strict=True)]
    by_coupon = allocate(coupon, left)
    return PricedOrder(
        subtotal_fen=subtotal,
        reduction_fen=reduction,
        coupon_fen=coupon,
        coupon_applied=applied,
        lines=tuple(
            PricedLine(value_fen=v, reduction_fen=r, coupon_fen=c)
            for v, r, c in zip(values, by_reduction, by_coupon, strict=True)
        ),
    )


L = TypeVar("L", bound=msgspec.Struct)


def with_discounts(lines: Sequence[L], priced: PricedOrder) -> tuple[L, ...]:
    """``lines`` (order or cart lines) with their shares of ``priced`` added to
    their ``discount_fen``: what an order placed under the offers carries."""
    return tuple(
        msgspec.structs.replace(
            line,
            discount_fen=getattr(line, "discount_fen", 0) + share.discount_fen,
        )
        for line, share in zip(lines, priced.lines, strict=True)
    )


# -- campaign: commands -----------------------------------------------------------


class CampaignKey(msgspec.Struct, frozen=True, kw_only=True):
    """Names a campaign: the binding's channel account and shop, and its code."""

    channel_account: Key
    platform: Key
    shop_id: Key
    campaign: CampaignCode


class FissionTerms(msgspec.Struct, frozen=True, kw_only=True):
    """Sharing the live room earns a shop coupon, within abuse limits.

    Attributes:
        friends_needed: Distinct friends who must open a buyer's share for
            one reward.
        reward: The shop coupon a reward issues.
        rewards_per_buyer_per_day: Rewards one buyer may earn a China day.
        max_rewards: Rewards the campaign issues in all.
    """

    friends_needed: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 3
    reward: CouponTerms
    rewards_per_buyer_per_day: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    max_rewards: Count = 1000


class PublishCampaign(CampaignKey, frozen=True, kw_only=True):
    """Publish a campaign's offers for ``[starts_at, ends_at)``."""

    title: Text = ""
    starts_at: datetime
    ends_at: datetime
    reduction: ThresholdReduction | None = None
    coupon: CouponTerms | None = None
    per_buyer_limit: Count = 1
    total_quantity: Count
    fission: FissionTerms | None = None


class ClaimCoupon(CampaignKey, frozen=True, kw_only=True):
    """A buyer claims the campaign's live-room coupon.

    A buyer may hold several (``per_buyer_limit``), so a retried claim is told
    apart by ``request_id``: the hub applies a claim with the same one once.
    """

    buyer: SubjectId
    request_id: Key | None = None


class RecordShare(CampaignKey, frozen=True, kw_only=True):
    """A friend opened the live room from a buyer's share."""

    sharer: SubjectId
    friend: SubjectId
    device: DeviceHash = ""


class RedeemCoupon(CampaignKey, frozen=True, kw_only=True):
    """An order uses one of the buyer's coupons; the lines are priced here."""

    buyer: SubjectId
    coupon: CouponKind = "live_room"
    order_platform: Key
    platform_order_id: Key
    lines: Annotated[tuple[CartLine, ...], msgspec.Meta(min_length=1, max_length=500)]


class CloseCampaign(CampaignKey, frozen=True, kw_only=True):
    """End a campaign: nothing more is claimed, shared or redeemed."""

    reason: Text = ""


CampaignCommand = (
    PublishCampaign | ClaimCoupon | RecordShare | RedeemCoupon | CloseCampaign
)


def campaign_id(
    channel_account: str, platform: str, shop_id: str, campaign: str
) -> uuid.UUID:
    """The aggregate id of a campaign."""
    return derive_id("campaign", channel_account, platform, shop_id, campaign)


# -- campaign: events -----------------------------------------------------------


@register
class CampaignPublished(Event, frozen=True, kw_only=True):
    """A campaign's offers and limits, valid in ``[starts_at, ends_at)``."""

    TOPIC: ClassVar[str] = "marketing.CampaignPublished"
    AGGREGATE: ClassVar[str] = "marketing"

    channel_account: str
    platform: str
    shop_id: str
    campaign: str
    title: str
    starts_at: datetime
    ends_at: datetime
    reduction: ThresholdReduction | None
    coupon: CouponTerms | None
    per_buyer_limit: int
    total_quantity: int
    fission: FissionTerms | None


@register
class CouponClaimed(Event, frozen=True, kw_only=True):
    """A buyer holds one more live-room coupon; ``claimed`` in all so far."""

    TOPIC: ClassVar[str] = "marketing.CouponClaimed"
    AGGREGATE: ClassVar[str] = "marketing"

    platform: str
    campaign: str
    buyer: str
    claimed: int


@register
class ShareRecorded(Event, frozen=True, kw_only=True):
    """A friend's open credited to the sharer: ``progress`` of ``needed``."""

    TOPIC: ClassVar[str] = "marketing.ShareRecorded"
    AGGREGATE: ClassVar[str] = "marketing"

    platform: str
    campaign: str
    sharer: str
    friend: str
    device: str
    progress: int
    needed: int


@register
class ShareRefused(Event, frozen=True, kw_only=True):
    """A share not credited, and why (``reason``: the rule it broke)."""

    TOPIC: ClassVar[str] = "marketing.ShareRefused"
    AGGREGATE: ClassVar[str] = "marketing"

    platform: str
    campaign: str
    sharer: str
    friend: str
    device: str
    reason: str
    detail: str


@register
class FissionRewardGranted(Event, frozen=True, kw_only=True):
    """The sharer earned a fission coupon; ``rewarded`` in all so far."""

    TOPIC: ClassVar[str] = "marketing.FissionRewardGranted"
    AGGREGATE: ClassVar[str] = "marketing"

    platform: str
    campaign: str
    sharer: str
    day: str
    rewarded: int


@register
class CouponRedeemed(Event, frozen=True, kw_only=True):
    """An order used a coupon: its discounts, each line's share, totals after."""

    TOPIC: ClassVar[str] = "marketing.CouponRedeemed"
    AGGREGATE: ClassVar[str] = "marketing"

    platform: str
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


@register
class CampaignClosed(Event, frozen=True, kw_only=True):
    """The campaign ended before (or at) its window's end."""

    TOPIC: ClassVar[str] = "marketing.CampaignClosed"
    AGGREGATE: ClassVar[str] = "marketing"

    platform: str
    campaign: str
    reason: str


CampaignEvent = (
    CampaignPublished
    | CouponClaimed
    | ShareRecorded
    | ShareRefused
    | FissionRewardGranted
    | CouponRedeemed
    | CampaignClosed
)


# -- campaign: state -------------------------------------------------------------


#: Buckets of a campaign's per-person maps. A live session has tens of
#: thousands of buyers: an event copies the tuple of buckets and one bucket,
#: not the whole map, so a campaign's state grows by a constant per event.
SHARDS: Final = 256

V = TypeVar("V")
#: A map split into :data:`SHARDS` buckets by a stable hash of the key
#: (``()`` when empty); read with :func:`shard_get`, written by :func:`shard_put`.
Sharded = tuple[dict[str, V], ...]


def _shard(key: str) -> int:
    return zlib.crc32(key.encode()) % SHARDS


def shard_get(shards: Sharded[V], key: str) -> V | None:
    """The value of ``key``, if any."""
    return shards[_shard(key)].get(key) if shards else None


def shard_put(shards: Sharded[V], key: str, value: V) -> Sharded[V]:
    """A copy of ``shards`` with ``key`` at ``value`` (sharing the other buckets)."""
    buckets = shards or tuple({} for _ in range(SHARDS))
    index = _shard(key)
    bucket = dict(buckets[index])
    bucket[key] = value
    return (*buckets[:index], bucket, *buckets[index + 1 :])


def shard_len(shards: Sharded[V]) -> int:
    """How many keys the map holds."""
    return sum(len(bucket) for bucket in shards)


class Holding(msgspec.Struct, frozen=True, kw_only=True):
    """One buyer's coupons in a campaign: claimed, earned, used."""

    claimed: int = 0
    rewarded: int = 0
    used_live_room: int = 0
    used_fission: int = 0

    def unused(self, kind: str) -> int:
        """Coupons of ``kind`` held and not yet used."""
        if kind == "fission":
            return self.rewarded - self.used_fission
        return self.claimed - self.used_live_room


class Campaign(State, frozen=True, kw_only=True):
    """A campaign: its terms, its counters and who holds what."""

    channel_account: str = ""
    platform: str = ""
    shop_id: str = ""
    campaign: str = ""
    title: str = ""
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    reduction: ThresholdReduction | None = None
    coupon: CouponTerms | None = None
    per_buyer_limit: int = 1
    total_quantity: int = 0
    fission: FissionTerms | None = None
    closed: bool = False
    claimed: int = 0
    rewarded: int = 0
    redeemed: int = 0
    discount_fen: int = 0
    #: Buyer → their coupons.
    holders: Sharded[Holding] = ()
    #: ``platform/order id`` of every order that redeemed a coupon.
    redeemed_orders: Sharded[bool] = ()
    #: Friend → the sharer their open was credited to.
    credited: Sharded[str] = ()
    #: Device hashes credited.
    devices: Sharded[bool] = ()
    #: Sharer → friends credited towards the next reward.
    progress: Sharded[int] = ()
    #: ``sharer/day`` → rewards earned that China day.
    rewards_by_day: Sharded[int] = ()
    #: ``sharer/friend/device`` → why that open was last refused.
    refused_shares: Sharded[str] = ()

    def holding(self, buyer: str) -> Holding:
        """The buyer's coupons in this campaign."""
        return shard_get(self.holders, buyer) or Holding()

    def credited_to(self, friend: str) -> str | None:
        """The sharer a friend's open was credited to, if any."""
        return shard_get(self.credited, friend)

    def device_credited(self, device: str) -> bool:
        """Whether an open from ``device`` was credited already."""
        return shard_get(self.devices, device) is not None

    def offers(self, coupon: CouponKind | None = "live_room") -> Offers:
        """The offers an order stacks: the reduction and the coupon named."""
        terms = None
        if coupon == "live_room":
            terms = self.coupon
        elif coupon == "fission" and self.fission is not None:
            terms = self.fission.reward
        return Offers(reduction=self.reduction, coupon=terms)


# -- campaign: decide ------------------------------------------------------------


def _where(command: CampaignKey) -> str:
    return (
        f"campaign {command.campaign} of {command.channel_account}/"
        f"{command.platform}/{command.shop_id}"
    )


def _terms_of(command: PublishCampaign) -> dict[str, Any]:
    return {
        "title": command.title,
        "starts_at": command.starts_at,
        "ends_at": command.ends_at,
        "reduction": command.reduction,
        "coupon": command.coupon,
        "per_buyer_limit": command.per_buyer_limit,
        "total_quantity": command.total_quantity,
        "fission": command.fission,
    }


def _publish(
    state: Campaign | None, command: PublishCampaign, meta: dict[str, Any]
) -> list[Event]:
    where = _where(command)
    if command.ends_at <= command.starts_at:
        raise CampaignError(
            f"{where}: ends_at {command.ends_at.isoformat()} <= starts_at "
            f"{command.starts_at.isoformat()} (a campaign ends after it starts)"
        )
    if command.reduction is None and command.coupon is None:
        raise CampaignError(
            f"{where}: neither reduction nor coupon (a campaign offers at least one)"
        )
    problems = (
        reduction_problems(command.reduction, "reduction")
        if (command.reduction is not None)
        else []
    )
    if command.coupon is not None:
        problems += coupon_problems(command.coupon, "coupon")
    if command.fission is not None:
        problems += coupon_problems(command.fission.reward, "fission.reward")
    if problems:
        raise CampaignError(f"{where}: " + "; ".join(problems))
    terms = _terms_of(command)
    if state is not None:
        if {name: getattr(state, name) for name in terms} == terms:
            return []
        raise CampaignError(
            f"{where} is published already with other terms (publish a new "
            "campaign code instead)"
        )
    return [
        CampaignPublished(
            **meta,
            channel_account=command.channel_account,
            platform=command.platform,
            shop_id=command.shop_id,
            campaign=command.campaign,
            **terms,
        )
    ]


def _active(state: Campaign | None, command: CampaignKey, now: datetime) -> Campaign:
    where = _where(command)
    if state is None:
        raise CampaignNotActiveError(f"{where} is not published")
    if state.closed:
        raise CampaignNotActiveError(f"{where} is closed")
    assert state.starts_at is not None and state.ends_at is not None
    if not state.starts_at <= now < state.ends_at:
        raise CampaignNotActiveError(
            f"{where}: {now.isoformat()} is outside [{state.starts_at.isoformat()}, "
            f"{state.ends_at.isoformat()}) (the campaign's window)"
        )
    return state


def _claim(state: Campaign, command: ClaimCoupon, meta: dict[str, Any]) -> list[Event]:
    where = _where(command)
    if state.coupon is None:
        raise CouponLimitError(f"{where} offers no live-room coupon")
    held = state.holding(command.buyer).claimed
    if held >= state.per_buyer_limit:
        raise CouponLimitError(
            f"{where}: buyer {command.buyer} claimed {held} of "
            f"per_buyer_limit {state.per_buyer_limit}"
        )
    if state.claimed >= state.total_quantity:
        raise CouponLimitError(
            f"{where}: {state.claimed} of total_quantity {state.total_quantity} "
            "claimed (sold out)"
        )
    return [
        CouponClaimed(
            **meta,
            platform=command.platform,
            campaign=command.campaign,
            buyer=command.buyer,
            claimed=state.claimed + 1,
        )
    ]


def _share_refusal(
    state: Campaign, fission: FissionTerms, command: RecordShare, day: str
) -> tuple[ShareRefusal, str] | None:
    if command.friend == command.sharer:
        return "self_invite", "a buyer cannot invite themselves"
    credited_to = state.credited_to(command.friend)
    if credited_to is not None:
        return (
            "friend_already_credited",
            f"friend {command.friend} was credited to {credited_to} already "
            "(a friend counts once per campaign)",
        )
    if command.device and state.device_credited(command.device):
        return (
            "device_already_credited",
            f"device {command.device} was credited already (once per device)",
        )
    earned = shard_get(state.rewards_by_day, f"{command.sharer}/{day}") or 0
    if earned >= fission.rewards_per_buyer_per_day:
        return (
            "daily_cap_reached",
            f"sharer {command.sharer} earned {earned} of "
            f"rewards_per_buyer_per_day {fission.rewards_per_buyer_per_day} on {day}",
        )
    if state.rewarded >= fission.max_rewards:
        return (
            "rewards_exhausted",
            f"{state.rewarded} of max_rewards {fission.max_rewards} granted",
        )
    return None


def _attempt(share: RecordShare | ShareRefused) -> str:
    return f"{share.sharer}/{share.friend}/{share.device}"


def _share(
    state: Campaign, command: RecordShare, ctx: Context, version: int
) -> list[Event]:
    fission = state.fission
    if fission is None:
        raise CampaignNotActiveError(f"{_where(command)} has no fission terms")
    if state.credited_to(command.friend) == command.sharer:
        return []  # the same open again: credited once
    day = ctx.now.astimezone(CHINA_TIME).date().isoformat()
    keys: dict[str, Any] = {
        "platform": command.platform,
        "campaign": command.campaign,
        "sharer": command.sharer,
        "friend": command.friend,
        "device": command.device,
    }
    refusal = _share_refusal(state, fission, command, day)
    if refusal is not None:
        reason, detail = refusal
        if shard_get(state.refused_shares, _attempt(command)) == reason:
            return []  # the same refused open again: recorded once
        return [
            ShareRefused(
                **ctx.meta(state.id, version), **keys, reason=reason, detail=detail
            )
        ]
    progress = (shard_get(state.progress, command.sharer) or 0) + 1
    events: list[Event] = [
        ShareRecorded(
            **ctx.meta(state.id, version),
            **keys,
            progress=progress,
            needed=fission.friends_needed,
        )
    ]
    if progress >= fission.friends_needed:
        events.append(
            FissionRewardGranted(
                **ctx.meta(state.id, version + 1),
                platform=command.platform,
                campaign=command.campaign,
                sharer=command.sharer,
                day=day,
                rewarded=state.rewarded + 1,
            )
        )
    return events


def _redeem(
    state: Campaign, command: RedeemCoupon, meta: dict[str, Any]
) -> list[Event]:
    where = _where(command)
    order_ref = f"{command.order_platform}/{command.platform_order_id}"
    if shard_get(state.redeemed_orders, order_ref):
        return []
    held = state.holding(command.buyer).unused(command.coupon)
    if held <= 0:
        raise CouponNotHeldError(
            f"{where}: buyer {command.buyer} holds no unused {command.coupon} "
            "coupon (claim or earn one first)"
        )
    offers = state.offers(command.coupon)
    assert offers.coupon is not None  # a held coupon's terms exist
    priced = price_order(command.lines, offers)
    if not priced.coupon_applied:
        raise MinimumSpendError(
            f"{where}: order {order_ref} comes to {priced.payable_fen} fen after "
            f"the reduction, below the {command.coupon} coupon's min_spend_fen "
            f"{offers.coupon.min_spend_fen}"
        )
    return [
        CouponRedeemed(
            **meta,
            platform=command.platform,
            campaign=command.campaign,
            buyer=command.buyer,
            coupon=command.coupon,
            order_platform=command.order_platform,
            platform_order_id=command.platform_order_id,
            subtotal_fen=priced.subtotal_fen,
            reduction_fen=priced.reduction_fen,
            coupon_fen=priced.coupon_fen,
            line_discounts_fen=tuple(line.discount_fen for line in priced.lines),
            redeemed=state.redeemed + 1,
            discount_total_fen=state.discount_fen + priced.discount_fen,
        )
    ]


def decide(
    state: Campaign | None, command: CampaignCommand, ctx: Context
) -> list[Event]:
    """Check ``command`` against the campaign and return the new events.

    Raises:
        CampaignError: terms that break a rule, or republished with others.
        CampaignNotActiveError: not published, closed, or outside its window.
        CouponLimitError: past the buyer's limit or the campaign's quantity.
        CouponNotHeldError: a redemption without an unused coupon.
        MinimumSpendError: a redemption below the coupon's minimum spend.
    """
    cid = campaign_id(
        command.channel_account, command.platform, command.shop_id, command.campaign
    )
    version = 1 if state is None else state.version + 1
    meta = ctx.meta(cid, version)
    if isinstance(command, PublishCampaign):
        return _publish(state, command, meta)
    if isinstance(command, CloseCampaign):
        if state is None:
            raise CampaignNotActiveError(f"{_where(command)} is not published")
        if state.closed:
            return []
        return [
            CampaignClosed(
                **meta,
                platform=command.platform,
                campaign=command.campaign,
                reason=command.reason,
            )
        ]
    active = _active(state, command, ctx.now)
    if isinstance(command, ClaimCoupon):
        return _claim(active, command, meta)
    if isinstance(command, RecordShare):
        return _share(active, command, ctx, version)
    return _redeem(active, command, meta)


# -- campaign: mutate ------------------------------------------------------------


@functools.singledispatch
def mutate(event: Event, state: Campaign | None) -> Campaign | None:
    """Evolve a campaign by ``event``."""
    raise TypeError(f"campaign cannot apply {type(event).__name__}")


def _next(state: Campaign | None, event: Event, **changes: Any) -> Campaign:
    assert state is not None, f"{type(event).__name__} before CampaignPublished"
    return msgspec.structs.replace(state, version=event.originator_version, **changes)


def _holding(state: Campaign | None, buyer: str, **changes: int) -> Sharded[Holding]:
    assert state is not None
    current = state.holding(buyer)
    counts = {name: getattr(current, name) + n for name, n in changes.items()}
    return shard_put(state.holders, buyer, msgspec.structs.replace(current, **counts))


@mutate.register
def _(event: CampaignPublished, state: Campaign | None) -> Campaign:
    return Campaign(
        id=event.originator_id,
        version=event.originator_version,
        channel_account=event.channel_account,
        platform=event.platform,
        shop_id=event.shop_id,
        campaign=event.campaign,
        title=event.title,
        starts_at=event.starts_at,
        ends_at=event.ends_at,
        reduction=event.reduction,
        coupon=event.coupon,
        per_buyer_limit=event.per_buyer_limit,
        total_quantity=event.total_quantity,
        fission=event.fission,
    )


@mutate.register
def _(event: CouponClaimed, state: Campaign | None) -> Campaign:
    return _next(
        state,
        event,
        claimed=event.claimed,
        holders=_holding(state, event.buyer, claimed=1),
    )


@mutate.register
def _(event: ShareRecorded, state: Campaign | None) -> Campaign:
    assert state is not None
    devices = state.devices
    if event.device:
        devices = shard_put(devices, event.device, True)
    return _next(
        state,
        event,
        credited=shard_put(state.credited, event.friend, event.sharer),
        devices=devices,
        progress=shard_put(state.progress, event.sharer, event.progress),
    )


@mutate.register
def _(event: ShareRefused, state: Campaign | None) -> Campaign:
    assert state is not None
    return _next(
        state,
        event,
        refused_shares=shard_put(state.refused_shares, _attempt(event), event.reason),
    )


@mutate.register
def _(event: FissionRewardGranted, state: Campaign | None) -> Campaign:
    assert state is not None
    key = f"{event.sharer}/{event.day}"
    return _next(
        state,
        event,
        rewarded=event.rewarded,
        holders=_holding(state, event.sharer, rewarded=1),
        progress=shard_put(state.progress, event.sharer, 0),
        rewards_by_day=shard_put(
            state.rewards_by_day, key, (shard_get(state.rewards_by_day, key) or 0) + 1
        ),
    )


@mutate.register
def _(event: CouponRedeemed, state: Campaign | None) -> Campaign:
    assert state is not None
    used = "used_fission" if event.coupon == "fission" else "used_live_room"
    return _next(
        state,
        event,
        redeemed=event.redeemed,
        discount_fen=event.discount_total_fen,
        holders=_holding(state, event.buyer, **{used: 1}),
        redeemed_orders=shard_put(
            state.redeemed_orders,
            f"{event.order_platform}/{event.platform_order_id}",
            True,
        ),
    )


@mutate.register
def _(event: CampaignClosed, state: Campaign | None) -> Campaign:
    return _next(state, event, closed=True)


# -- membership ------------------------------------------------------------------


class EnrollMember(msgspec.Struct, frozen=True, kw_only=True):
    """A follower of the binding's channel account joins the shop's members.

    ``profile`` is the follower's profile sealed under their subject key
    (``hub/service/marketing.py`` seals it); the platform's profile policy
    decides what of it the member record keeps.
    """

    channel_account: Key
    platform: Key
    shop_id: Key
    subject_id: SubjectId
    followed_at: datetime
    profile: SealedBuyer | None = None


def member_id(
    channel_account: str, platform: str, shop_id: str, subject_id: str
) -> uuid.UUID:
    """The aggregate id of a follower's membership of a binding's shop."""
    return derive_id("member", channel_account, platform, shop_id, subject_id)


@register
class FollowerJoined(Event, frozen=True, kw_only=True):
    """A subject follows the binding's channel account."""

    TOPIC: ClassVar[str] = "marketing.FollowerJoined"
    AGGREGATE: ClassVar[str] = "marketing"

    channel_account: str
    platform: str
    shop_id: str
    subject_id: str
    followed_at: datetime


@register
class MemberEnrolled(Event, frozen=True, kw_only=True):
    """The follower is a shop member; ``profile`` holds what the mode keeps.

    ``mode`` is the platform's profile mode (empty: the platform keeps no
    profiles, so the member record has no personal data).
    """

    TOPIC: ClassVar[str] = "marketing.MemberEnrolled"
    AGGREGATE: ClassVar[str] = "marketing"

    platform: str
    shop_id: str
    subject_id: str
    mode: str
    merged: bool
    fields: tuple[str, ...]
    profile: SealedBuyer | None = None


MembershipEvent = FollowerJoined | MemberEnrolled


class Member(State, frozen=True, kw_only=True):
    """A follower's shop membership."""

    platform: str = ""
    shop_id: str = ""
    subject_id: str = ""
    followed_at: datetime | None = None
    enrolled: bool = False
    mode: str = ""
    fields: tuple[str, ...] = ()


def member_profile(
    profile: SealedBuyer | None, policy: ProfilePolicy | None
) -> SealedBuyer | None:
    """What of a follower's sealed profile the platform's policy keeps.

    No policy (the platform keeps no profiles): nothing. A CRM transfer: the
    subject and the delivery reference only. Otherwise the policy's fields.
    """
    if profile is None or policy is None:
        return None
    kept = (
        {}
        if policy.mode == ENCRYPTED_TRANSFER_TO_CRM
        else {k: v for k, v in profile.fields.items() if k in policy.fields}
    )
    return msgspec.structs.replace(profile, mode=policy.mode, fields=kept)


def decide_membership(
    state: Member | None,
    command: EnrollMember,
    ctx: Context,
    policy: ProfilePolicy | None,
) -> list[Event]:
    """Enroll a follower as a member under ``policy`` (once).

    Raises:
        MemberProfileError: the profile is sealed for another subject.
    """
    if state is not None and state.enrolled:
        return []
    if command.profile is not None and command.profile.subject_id != command.subject_id:
        raise MemberProfileError(
            f"member {command.subject_id}: profile.subject_id "
            f"{command.profile.subject_id} differs (a profile is the follower's own)"
        )
    mid = member_id(
        command.channel_account, command.platform, command.shop_id, command.subject_id
    )
    version = 0 if state is None else state.version
    kept = member_profile(command.profile, policy)
    return [
        FollowerJoined(
            **ctx.meta(mid, version + 1),
            channel_account=command.channel_account,
            platform=command.platform,
            shop_id=command.shop_id,
            subject_id=command.subject_id,
            followed_at=command.followed_at,
        ),
        MemberEnrolled(
            **ctx.meta(mid, version + 2),
            platform=command.platform,
            shop_id=command.shop_id,
            subject_id=command.subject_id,
            mode=policy.mode if policy is not None else "",
            merged=policy.merge if policy is not None else False,
            fields=tuple(sorted(kept.fields)) if kept is not None else (),
            profile=kept,
        ),
    ]


@functools.singledispatch
def mutate_member(event: Event, state: Member | None) -> Member | None:
    """Evolve a membership by ``event``."""
    raise TypeError(f"membership cannot apply {type(event).__name__}")


@mutate_member.register
def _(event: FollowerJoined, state: Member | None) -> Member:
    return Member(
        id=event.originator_id,
        version=event.originator_version,
        platform=event.platform,
        shop_id=event.shop_id,
        subject_id=event.subject_id,
        followed_at=event.followed_at,
    )


@mutate_member.register
def _(event: MemberEnrolled, state: Member | None) -> Member:
    assert state is not None, "MemberEnrolled before FollowerJoined"
    return msgspec.structs.replace(
        state,
        version=event.originator_version,
        enrolled=True,
        mode=event.mode,
        fields=event.fields,
    )
