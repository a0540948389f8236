"""What each channel lists of a SKU, and how far a platform's report drifts.

The hub holds one pool of stock per hub SKU (``available`` of
:class:`domain.stock.StockItem`). Each binding carries an :class:`AllocationRule`
saying how much of that pool its platform shows; :func:`allocate` computes the
listed quantities of every channel at once. Listing never oversells: the sum of
what is listed is at most what is available, and a sale still has to commit its
units against the stock item (which refuses more than available).

Platform → hub: a platform reports what it shows; :func:`drift` is reported
minus expected, and :func:`drift_exceeds` says when that calls for a calibration.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import msgspec

#: A count of units in a rule.
Units = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]
#: A share of the available stock, in whole percent.
Percent = Annotated[int, msgspec.Meta(ge=0, le=100)]


class AllocationRule(msgspec.Struct, frozen=True, kw_only=True):
    """How much of a SKU's available stock one channel lists.

    Applied in this order:

    1. ``zero_out_at_or_below``: when the SKU's available stock is at or below
       this, the channel lists 0 (slow-syncing platforms stop selling the last
       units before they oversell);
    2. the base: ``fixed_quantity`` units (at most what is available), or
       ``share_percent`` of available rounded down, or, with neither, all of it;
    3. ``buffer`` units are kept back from the base (never below 0);
    4. ``max_listed`` caps the result.

    ``share_percent`` and ``fixed_quantity`` exclude each other.
    """

    share_percent: Percent | None = None
    fixed_quantity: Units | None = None
    buffer: Units = 0
    max_listed: Units | None = None
    zero_out_at_or_below: Units | None = None

    def __post_init__(self) -> None:
        """Refuse a rule that names both a share and a fixed quantity."""
        if self.share_percent is not None and self.fixed_quantity is not None:
            raise ValueError(
                f"share_percent {self.share_percent} and fixed_quantity "
                f"{self.fixed_quantity}: a rule lists a share or a fixed "
                "quantity, not both"
            )


#: The rule of a channel that has none: list everything available.
LIST_ALL = AllocationRule()


def wanted(available: int, rule: AllocationRule) -> int:
    """What ``rule`` alone would list of ``available`` units (see the rule's steps).

    A negative ``available`` (stock short of what it owes) counts as zero.
    """
    pool = max(available, 0)
    if rule.zero_out_at_or_below is not None and pool <= rule.zero_out_at_or_below:
        return 0
    if rule.fixed_quantity is not None:
        base = min(rule.fixed_quantity, pool)
    elif rule.share_percent is not None:
        base = pool * rule.share_percent // 100
    else:
        base = pool
    base = max(base - rule.buffer, 0)
    if rule.max_listed is not None:
        base = min(base, rule.max_listed)
    return base


def allocate(available: int, rules: Mapping[str, AllocationRule]) -> dict[str, int]:
    """The quantity each channel lists, by channel, in channel order.

    Every channel first gets what its rule alone wants (:func:`wanted`). When
    those add up to more than ``available``, the pool is shared in proportion
    to what each wanted, by the largest-remainder method: each channel gets
    ``wanted * available // total_wanted``, and the units left over go one each
    to the channels with the largest remainders, ties broken by channel name.
    The result is deterministic, never exceeds what a channel wanted (so every
    rule's cap, buffer and rounding still hold), and adds up to exactly
    ``available`` when it had to scale.
    """
    pool = max(available, 0)
    channels = sorted(rules)
    want = {channel: wanted(pool, rules[channel]) for channel in channels}
    total = sum(want.values())
    if total <= pool:
        return want
    listed = {channel: want[channel] * pool // total for channel in channels}
    left_over = pool - sum(listed.values())
    by_remainder = sorted(channels, key=lambda c: (-(want[c] * pool % total), c))
    for channel in by_remainder[:left_over]:
        listed[channel] += 1
    return listed


def drift(reported: int, expected: int) -> int:
    """How far a platform's reported stock is from what the hub expects it to show.

    Positive: the platform shows more than it should (a risk of overselling);
    negative: it shows less (sales lost).
    """
    return reported - expected


def drift_exceeds(reported: int, expected: int, tolerance: int) -> bool:
    """Whether the drift is beyond ``tolerance`` units either way.

    Raises:
        ValueError: a negative tolerance.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance {tolerance} < 0: a tolerance is a count of units")
    return abs(drift(reported, expected)) > tolerance
