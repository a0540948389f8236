"""Money rules of a sale: the split to the fen, refunds in proportion, settlement dates.

Money is an integer number of fen. A sale of ``amount_fen`` splits into four
parts (docs/ledger.md):

* the streamer's commission, ``amount × streamer_rate``;
* the platform's service fee, ``amount × platform_rate``;
* the payment channel's fee, ``amount × payment_rate``;
* the merchant's share: what is left.

Each of the first three is rounded half up to the fen on its own; the merchant
receives the remainder, so the parts always add up to the amount exactly.

A refund reverses the split in proportion to the money returned. The reversal
is computed on the *cumulative* refund (each part's share of everything
refunded so far, less what earlier refunds already reversed), so however many
partial refunds add up to the whole, every party's total comes back to exactly
zero.

Rates are decimal strings (``"0.15"``) so they are exact; they come from data
(the streamer's agreement, the policy book), never from code.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Annotated, Literal

import msgspec

from domain.calendar import CHINA_TIME
from domain.events import DomainError, lookup

#: A rate as a decimal string between 0 and 1 (``"0.006"``, ``"0.15"``).
Rate = Annotated[str, msgspec.Meta(pattern=r"^(0(\.[0-9]{1,6})?|1(\.0{1,6})?)$")]

_ONE = Decimal(1)


def parse_rate(value: str, name: str) -> Decimal:
    """``value`` as an exact decimal in [0, 1].

    Raises:
        ValueError: naming ``name`` and the value when it is not a decimal
            number or lies outside [0, 1].
    """
    try:
        rate = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{name} {value!r} is not a decimal number") from None
    if not rate.is_finite() or rate < 0 or rate > 1:
        raise ValueError(f"{name} {value!r} is outside [0, 1]")
    return rate


def fen_of(amount_fen: int, rate: Decimal) -> int:
    """``amount_fen × rate`` rounded half up to the fen."""
    return int((Decimal(amount_fen) * rate).quantize(_ONE, rounding=ROUND_HALF_UP))


class Split(msgspec.Struct, frozen=True, kw_only=True):
    """A sale's (or a reversal's) parts in fen; they add up to :attr:`total_fen`."""

    streamer_fen: int
    platform_fen: int
    payment_fen: int
    merchant_fen: int

    @property
    def total_fen(self) -> int:
        """The sum of the four parts."""
        fees = self.streamer_fen + self.platform_fen + self.payment_fen
        return fees + self.merchant_fen

    def minus(self, other: Split) -> Split:
        """Part by part, this split less ``other``."""
        return Split(
            streamer_fen=self.streamer_fen - other.streamer_fen,
            platform_fen=self.platform_fen - other.platform_fen,
            payment_fen=self.payment_fen - other.payment_fen,
            merchant_fen=self.merchant_fen - other.merchant_fen,
        )


#: A split of nothing.
NO_SPLIT = Split(streamer_fen=0, platform_fen=0, payment_fen=0, merchant_fen=0)


def split_sale(
    amount_fen: int, *, streamer_rate: str, platform_rate: str, payment_rate: str
) -> Split:
    """Split a sale of ``amount_fen`` into the streamer's commission, the
    platform's fee, the payment fee and the merchant's remainder.

    Raises:
        ValueError: a negative amount, a rate outside [0, 1] or not a number, or
            rates adding up to more than 1; the message names the value.
    """
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int):
        raise ValueError(f"amount_fen {amount_fen!r} is not an integer number of fen")
    if amount_fen < 0:
        raise ValueError(f"amount_fen {amount_fen} is negative (a sale is >= 0 fen)")
    streamer = parse_rate(streamer_rate, "streamer_rate")
    platform = parse_rate(platform_rate, "platform_rate")
    payment = parse_rate(payment_rate, "payment_rate")
    if streamer + platform + payment > 1:
        raise ValueError(
            f"rates add up to {streamer + platform + payment} > 1 (streamer_rate "
            f"{streamer_rate} + platform_rate {platform_rate} + payment_rate "
            f"{payment_rate}; the merchant's share may not be negative)"
        )
    streamer_fen = fen_of(amount_fen, streamer)
    platform_fen = fen_of(amount_fen, platform)
    payment_fen = fen_of(amount_fen, payment)
    return Split(
        streamer_fen=streamer_fen,
        platform_fen=platform_fen,
        payment_fen=payment_fen,
        merchant_fen=amount_fen - streamer_fen - platform_fen - payment_fen,
    )


def _share(part_fen: int, refunded_fen: int, paid_fen: int) -> int:
    """``part × refunded / paid`` rounded half up (exact, in integers)."""
    return (2 * part_fen * refunded_fen + paid_fen) // (2 * paid_fen)


def reversed_share(sale: Split, paid_fen: int, refunded_fen: int) -> Split:
    """What of ``sale`` is reversed once ``refunded_fen`` of ``paid_fen`` is back.

    Each fee part is its share rounded half up; the merchant's is the rest of
    ``refunded_fen``, so the parts add up to it; at ``refunded_fen ==
    paid_fen`` it is ``sale`` itself.

    Raises:
        ValueError: ``refunded_fen`` outside [0, ``paid_fen``].
    """
    if not 0 <= refunded_fen <= paid_fen:
        raise ValueError(
            f"refunded_fen {refunded_fen} is outside [0, paid {paid_fen}] "
            "(a refund never exceeds what was paid)"
        )
    if refunded_fen == paid_fen:
        return sale
    streamer = _share(sale.streamer_fen, refunded_fen, paid_fen)
    platform = _share(sale.platform_fen, refunded_fen, paid_fen)
    payment = _share(sale.payment_fen, refunded_fen, paid_fen)
    return Split(
        streamer_fen=streamer,
        platform_fen=platform,
        payment_fen=payment,
        merchant_fen=refunded_fen - streamer - platform - payment,
    )


def reverse_split(
    sale: Split, paid_fen: int, refunded_before_fen: int, refund_fen: int
) -> Split:
    """The parts one refund of ``refund_fen`` reverses, after
    ``refunded_before_fen`` was refunded already; they add up to ``refund_fen``.

    Raises:
        ValueError: the refunds would exceed ``paid_fen``.
    """
    before = reversed_share(sale, paid_fen, refunded_before_fen)
    after = reversed_share(sale, paid_fen, refunded_before_fen + refund_fen)
    return after.minus(before)


def settlement_date(at: datetime, days: int) -> date:
    """The day a payment made ``at`` settles: ``days`` after its China date (T+n)."""
    return at.astimezone(CHINA_TIME).date() + timedelta(days=days)


def start_of_day(day: date) -> datetime:
    """The instant ``day`` begins in China time (when a payout of that day is due)."""
    return datetime.combine(day, time(0), CHINA_TIME)


# -- terms in the policy book ---------------------------------------------------


class _Terms(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of the book's settlement structs: a misspelt field is an error."""


#: A code in the book (a payment channel, a platform).
_Code = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
#: A part of a sale's split that a platform may keep back.
SplitPart = Literal["streamer", "platform", "payment"]


class UnknownSettlementTermsError(DomainError):
    """A payment channel or platform the book has no settlement terms for."""

    code = "unknown_settlement_terms"


class PaymentChannel(_Terms, frozen=True, kw_only=True):
    """A payment channel's terms: its fee, when it settles, whom it serves.

    Attributes:
        fee_rate: The channel's fee on each payment (``"0.006"``).
        settle_days: A payment settles this many days after its (China) date.
        enterprise_only: Only an enterprise subject may settle through it.
        note: Where the facts come from.
    """

    fee_rate: Rate
    settle_days: Annotated[int, msgspec.Meta(ge=0, le=60)]
    enterprise_only: bool = False
    note: str = ""


class PlatformSettlement(_Terms, frozen=True, kw_only=True):
    """How one platform's sales are paid and settled.

    Attributes:
        payment_channel: The channel its buyers pay through (a key of
            :attr:`SettlementPolicy.channels`).
        withholds: The split's parts the platform keeps back on its settlement
            statement (its statement's fee is their sum).
        statement_commission: Whether its statement lists the streamer's
            commission on its own (then compared with the streamer's part).
    """

    payment_channel: _Code
    withholds: tuple[SplitPart, ...] = ()
    statement_commission: bool = False


class SettlementPolicy(_Terms, frozen=True, kw_only=True):
    """The rates and channels payouts follow (``$.settlement`` of the policy book).

    Attributes:
        platform_fee_rate: The platform's service fee on each sale.
        streamer_rate_min: The lowest commission a streamer may agree to.
        streamer_rate_max: The highest commission a streamer may agree to.
        channels: Payment channels by code (``wechat_pay``, ``alipay``).
        platforms: Each platform's channel and statement shape.
    """

    platform_fee_rate: Rate
    streamer_rate_min: Rate
    streamer_rate_max: Rate
    channels: dict[_Code, PaymentChannel]
    platforms: dict[_Code, PlatformSettlement] = {}

    def channel(self, code: str) -> PaymentChannel:
        """The channel ``code``.

        Raises:
            UnknownSettlementTermsError: the book has no such channel.
        """
        return lookup(
            self.channels,
            code,
            UnknownSettlementTermsError,
            f"payment channel {code!r} is not in the policy book",
        )

    def platform(self, platform: str) -> PlatformSettlement:
        """How ``platform`` settles.

        Raises:
            UnknownSettlementTermsError: the book has no settlement terms for it.
        """
        return lookup(
            self.platforms,
            platform,
            UnknownSettlementTermsError,
            f"platform {platform!r} has no settlement terms",
        )


def check_settlement(policy: SettlementPolicy) -> None:
    """Refuse terms that contradict each other.

    Raises:
        ValueError: naming the field and the rule.
    """
    low = parse_rate(policy.streamer_rate_min, "streamer_rate_min")
    high = parse_rate(policy.streamer_rate_max, "streamer_rate_max")
    if low > high:
        raise ValueError(
            f"streamer_rate_min {policy.streamer_rate_min} > streamer_rate_max "
            f"{policy.streamer_rate_max} (min may not exceed max)"
        )
    for platform, terms in policy.platforms.items():
        if terms.payment_channel not in policy.channels:
            raise ValueError(
                f"platforms.{platform}.payment_channel {terms.payment_channel!r} "
                "is not one of the channels"
            )
