"""Marketing: stacking order and caps, fen-exact allocation, coupons, fission,
membership by profile mode."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import marketing as mk
from domain import order
from domain.events import Context, Event, project
from domain.personal import SealedBuyer, profile_policy

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)  # 20:00 in China
KEY = {
    "channel_account": "acct-1",
    "platform": "youzan",
    "shop_id": "yz-1",
    "campaign": "live-1130",
}
ALICE = "sub_" + "a" * 32
BOB = "sub_" + "b" * 32
CAROL = "sub_" + "c" * 32
DAN = "sub_" + "d" * 32
EVE = "sub_" + "e" * 32


def _ctx(now: datetime = NOW) -> Context:
    counter = itertools.count(1)
    return Context(now=now, new_id=lambda: uuid.UUID(int=next(counter)))


def _tiers(*pairs: tuple[int, int]) -> mk.ThresholdReduction:
    return mk.ThresholdReduction(
        tiers=tuple(
            mk.ReductionTier(threshold_fen=t, reduction_fen=r) for t, r in pairs
        )
    )


def _line(price: int, quantity: int = 1, sku: str = "A") -> mk.CartLine:
    return mk.CartLine(sku=sku, quantity=quantity, unit_price_fen=price)


# -- pricing: the order of application and the caps -----------------------------


def test_the_reduction_applies_first_and_the_coupon_to_what_is_left() -> None:
    # 满200减30, then a 10% coupon (min spend 150): 10% of 220, not of 250.
    offers = mk.Offers(
        reduction=_tiers((20000, 3000)),
        coupon=mk.CouponTerms(kind="percent", percent_off=10, min_spend_fen=15000),
    )
    priced = mk.price_order([_line(15000), _line(10000, sku="B")], offers)
    assert (priced.subtotal_fen, priced.reduction_fen) == (25000, 3000)
    assert priced.coupon_fen == 2200
    assert priced.payable_fen == 25000 - 3000 - 2200
    assert [ln.reduction_fen for ln in priced.lines] == [1800, 1200]
    assert [ln.coupon_fen for ln in priced.lines] == [1320, 880]


def test_the_coupon_minimum_is_checked_after_the_reduction() -> None:
    # 210 reaches the coupon's 200 minimum, but 210 - 30 = 180 does not.
    offers = mk.Offers(
        reduction=_tiers((20000, 3000)),
        coupon=mk.CouponTerms(kind="amount", amount_fen=2000, min_spend_fen=20000),
    )
    priced = mk.price_order([_line(21000)], offers)
    assert (priced.reduction_fen, priced.coupon_fen) == (3000, 0)
    assert not priced.coupon_applied


def test_the_highest_tier_reached_applies_and_a_repeating_reduction_is_capped() -> None:
    tiered = _tiers((10000, 1000), (20000, 3000), (50000, 10000))
    assert tiered.reduction_for(9999) == 0
    assert tiered.reduction_for(25000) == 3000
    assert tiered.reduction_for(80000) == 10000
    repeating = mk.ThresholdReduction(
        tiers=(mk.ReductionTier(threshold_fen=10000, reduction_fen=1500),),
        repeating=True,
        cap_fen=4000,
    )
    assert repeating.reduction_for(29999) == 3000  # twice 100 → twice 15
    assert repeating.reduction_for(90000) == 4000  # 9 x 15 = 135, capped at 40


def test_a_percent_coupon_stops_at_its_cap_and_an_order_pays_at_least_a_fen() -> None:
    capped = mk.CouponTerms(kind="percent", percent_off=50, max_discount_fen=5000)
    assert mk.price_order([_line(100000)], mk.Offers(coupon=capped)).coupon_fen == 5000
    big = mk.CouponTerms(kind="amount", amount_fen=10000)
    priced = mk.price_order([_line(3000, quantity=2)], mk.Offers(coupon=big))
    assert (priced.coupon_fen, priced.payable_fen) == (5999, 1)


def test_order_lines_carry_their_share_on_top_of_their_own_discount() -> None:
    lines = (
        order.OrderLine(
            platform_sku_id="p-1",
            hub_sku="A1",
            quantity=2,
            unit_price_fen=10000,
            discount_fen=1000,
        ),
        order.OrderLine(
            platform_sku_id="p-2", hub_sku="B1", quantity=1, unit_price_fen=11000
        ),
    )
    priced = mk.price_order(lines, mk.Offers(reduction=_tiers((30000, 3000))))
    discounted = mk.with_discounts(lines, priced)
    assert [ln.discount_fen for ln in discounted] == [1000 + 1900, 1100]
    assert sum(ln.total_fen for ln in discounted) == priced.payable_fen


def test_allocation_is_proportional_by_largest_remainder() -> None:
    assert mk.allocate(100, [1, 1, 1]) == [34, 33, 33]
    assert mk.allocate(10, [0, 5, 5]) == [0, 5, 5]
    assert mk.allocate(0, [3, 4]) == [0, 0]


_prices = st.integers(min_value=0, max_value=2_000_000)
_lines = st.lists(
    st.builds(
        lambda price, quantity, cut: mk.CartLine(
            sku="S",
            quantity=quantity,
            unit_price_fen=price,
            discount_fen=min(cut, price * quantity),
        ),
        _prices,
        st.integers(min_value=1, max_value=20),
        st.integers(min_value=0, max_value=50_000),
    ),
    min_size=1,
    max_size=8,
)


@st.composite
def _reductions(draw: st.DrawFn) -> mk.ThresholdReduction | None:
    kind = draw(st.sampled_from(["none", "tiers", "repeating"]))
    if kind == "none":
        return None
    if kind == "repeating":
        threshold = draw(st.integers(min_value=2, max_value=500_000))
        return mk.ThresholdReduction(
            tiers=(
                mk.ReductionTier(
                    threshold_fen=threshold,
                    reduction_fen=draw(st.integers(1, threshold - 1)),
                ),
            ),
            repeating=True,
            cap_fen=draw(st.none() | st.integers(min_value=1, max_value=1_000_000)),
        )
    thresholds = sorted(
        draw(st.sets(st.integers(2, 1_000_000), min_size=1, max_size=4))
    )
    reductions: list[int] = []
    for threshold in thresholds:
        low = reductions[-1] + 1 if reductions else 1
        if low >= threshold:
            break
        reductions.append(draw(st.integers(low, threshold - 1)))
    return mk.ThresholdReduction(
        tiers=tuple(
            mk.ReductionTier(threshold_fen=t, reduction_fen=r)
            for t, r in zip(thresholds, reductions, strict=False)
        )
    )


_coupons = st.none() | st.one_of(
    st.builds(
        mk.CouponTerms,
        kind=st.just("amount"),
        amount_fen=st.integers(1, 1_000_000),
        min_spend_fen=st.integers(0, 1_000_000),
    ),
    st.builds(
        mk.CouponTerms,
        kind=st.just("percent"),
        percent_off=st.integers(1, 99),
        max_discount_fen=st.none() | st.integers(1, 1_000_000),
        min_spend_fen=st.integers(0, 1_000_000),
    ),
)


@settings(max_examples=300, deadline=None)
@given(lines=_lines, reduction=_reductions(), coupon=_coupons)
def test_pricing_properties(
    lines: list[mk.CartLine],
    reduction: mk.ThresholdReduction | None,
    coupon: mk.CouponTerms | None,
) -> None:
    priced = mk.price_order(lines, mk.Offers(reduction=reduction, coupon=coupon))
    # The lines' shares add up to each discount, to the fen.
    assert sum(ln.reduction_fen for ln in priced.lines) == priced.reduction_fen
    assert sum(ln.coupon_fen for ln in priced.lines) == priced.coupon_fen
    # No line goes below zero.
    for line, given_line in zip(priced.lines, lines, strict=True):
        assert line.reduction_fen >= 0 and line.coupon_fen >= 0
        value = given_line.quantity * given_line.unit_price_fen
        assert line.value_fen - line.discount_fen >= 0
        assert line.value_fen == value - given_line.discount_fen
    subtotal = priced.subtotal_fen
    # Order of application: the reduction reads the subtotal, the coupon what
    # the reduction left (its minimum spend too).
    expected_reduction = reduction.reduction_for(subtotal) if reduction else 0
    assert priced.reduction_fen == expected_reduction
    after = subtotal - priced.reduction_fen
    if coupon is None or after < max(coupon.min_spend_fen, 1):
        assert priced.coupon_fen == 0
    else:
        assert priced.coupon_fen == min(coupon.discount_for(after), after - 1)
    # Caps.
    if reduction is not None and reduction.cap_fen is not None:
        assert priced.reduction_fen <= reduction.cap_fen
    if coupon is not None and coupon.max_discount_fen is not None:
        assert priced.coupon_fen <= coupon.max_discount_fen
    if coupon is not None and coupon.kind == "amount":
        assert priced.coupon_fen <= coupon.amount_fen
    if subtotal > 0:
        assert priced.payable_fen >= mk.MIN_PAYABLE_FEN
    else:
        assert priced.discount_fen == 0


# -- campaign ------------------------------------------------------------------


COUPON = mk.CouponTerms(kind="amount", amount_fen=2000, min_spend_fen=10000)
FISSION = mk.FissionTerms(
    friends_needed=2,
    reward=mk.CouponTerms(kind="amount", amount_fen=500),
    rewards_per_buyer_per_day=1,
    max_rewards=10,
)


def _publish(**overrides: Any) -> mk.PublishCampaign:
    fields: dict[str, Any] = {
        **KEY,
        "title": "Double 12 warm-up",
        "starts_at": NOW - timedelta(hours=1),
        "ends_at": NOW + timedelta(hours=3),
        "reduction": _tiers((20000, 3000)),
        "coupon": COUPON,
        "per_buyer_limit": 1,
        "total_quantity": 2,
        "fission": FISSION,
    }
    fields.update(overrides)
    return mk.PublishCampaign(**fields)


def _run(
    state: mk.Campaign | None, command: Any, now: datetime = NOW
) -> tuple[mk.Campaign | None, list[Event]]:
    events = mk.decide(state, command, _ctx(now))
    return project(mk.mutate, state, events), events


def _given(*commands: Any) -> mk.Campaign:
    state: mk.Campaign | None = None
    for command in commands:
        state, _ = _run(state, command)
    assert state is not None
    return state


def _claim(buyer: str) -> mk.ClaimCoupon:
    return mk.ClaimCoupon(**KEY, buyer=buyer)


def _share(sharer: str, friend: str, device: str = "") -> mk.RecordShare:
    return mk.RecordShare(**KEY, sharer=sharer, friend=friend, device=device)


def _redeem(buyer: str, order: str, *lines: mk.CartLine, **kw: Any) -> Any:
    return mk.RedeemCoupon(
        **KEY,
        buyer=buyer,
        order_platform="youzan",
        platform_order_id=order,
        lines=lines,
        **kw,
    )


def test_publishing_again_changes_nothing_and_other_terms_are_refused() -> None:
    state = _given(_publish())
    assert _run(state, _publish())[1] == []
    with pytest.raises(mk.CampaignError, match="published already"):
        _run(state, _publish(total_quantity=5))
    with pytest.raises(mk.CampaignError, match="a campaign ends after it starts"):
        _run(None, _publish(ends_at=NOW - timedelta(hours=2)))
    with pytest.raises(mk.CampaignError, match="neither reduction nor coupon"):
        _run(None, _publish(reduction=None, coupon=None))


def test_offers_that_break_their_rules_are_refused_naming_each_field() -> None:
    flat = mk.ThresholdReduction(
        tiers=(
            mk.ReductionTier(threshold_fen=500, reduction_fen=500),
            mk.ReductionTier(threshold_fen=900, reduction_fen=50),
        )
    )
    with pytest.raises(mk.CampaignError) as refused:
        _run(
            None,
            _publish(
                reduction=flat,
                fission=msgspec.structs.replace(
                    FISSION, reward=mk.CouponTerms(kind="percent")
                ),
            ),
        )
    message = str(refused.value)
    assert "reduction.tiers[0]: reduction_fen 500 >= threshold_fen 500" in message
    assert "reduction.tiers[1]: 900/50 does not rise" in message
    assert "fission.reward.percent_off: a percent coupon takes off 1 to 99 %" in (
        message
    )


def test_claims_stop_at_the_buyer_limit_and_the_quantity() -> None:
    state = _given(_publish(), _claim(ALICE))
    with pytest.raises(mk.CouponLimitError, match=r"claimed 1 of per_buyer_limit 1"):
        _run(state, _claim(ALICE))
    state, _ = _run(state, _claim(BOB))
    with pytest.raises(mk.CouponLimitError, match=r"2 of total_quantity 2 .*sold out"):
        _run(state, _claim(CAROL))
    assert (state.claimed, state.holding(BOB).claimed) == (2, 1)


def test_nothing_is_claimed_outside_the_window_or_after_closing() -> None:
    state = _given(_publish())
    with pytest.raises(mk.CampaignNotActiveError, match="outside"):
        _run(state, _claim(ALICE), NOW + timedelta(hours=4))
    closed, events = _run(state, mk.CloseCampaign(**KEY, reason="done"))
    assert [type(e) for e in events] == [mk.CampaignClosed]
    with pytest.raises(mk.CampaignNotActiveError, match="is closed"):
        _run(closed, _claim(ALICE))
    with pytest.raises(mk.CampaignNotActiveError, match="is not published"):
        _run(None, _claim(ALICE))


def test_a_redemption_prices_the_order_and_records_every_line_discount() -> None:
    state = _given(_publish(), _claim(ALICE))
    lines = (_line(15000), _line(10000, sku="B"))
    state2, events = _run(state, _redeem(ALICE, "o-1", *lines))
    (redeemed,) = events
    assert isinstance(redeemed, mk.CouponRedeemed)
    priced = mk.price_order(lines, state.offers())
    assert redeemed.line_discounts_fen == tuple(ln.discount_fen for ln in priced.lines)
    assert (redeemed.reduction_fen, redeemed.coupon_fen) == (3000, 2000)
    assert sum(redeemed.line_discounts_fen) == 5000 == redeemed.discount_total_fen
    assert state2 is not None and state2.holding(ALICE).unused("live_room") == 0
    # The same order again changes nothing; another order needs another coupon.
    assert _run(state2, _redeem(ALICE, "o-1", *lines))[1] == []
    with pytest.raises(mk.CouponNotHeldError, match="holds no unused live_room"):
        _run(state2, _redeem(ALICE, "o-2", *lines))


def test_a_redemption_below_the_minimum_after_the_reduction_is_refused() -> None:
    state = _given(_publish(coupon=COUPON), _claim(ALICE))
    # 90 is below the coupon's 100 minimum (no tier reached either).
    with pytest.raises(mk.MinimumSpendError, match="min_spend_fen 10000"):
        _run(state, _redeem(ALICE, "o-1", _line(9000)))


def test_fission_rewards_a_sharer_when_enough_distinct_friends_open() -> None:
    state = _given(_publish(), _share(ALICE, BOB, "dev-b"))
    state, events = _run(state, _share(ALICE, CAROL, "dev-c"))
    assert [type(e) for e in events] == [mk.ShareRecorded, mk.FissionRewardGranted]
    assert state is not None and state.holding(ALICE).unused("fission") == 1
    # The fission coupon is redeemed like a live-room one.
    _, redeemed = _run(state, _redeem(ALICE, "o-9", _line(5000), coupon="fission"))
    assert redeemed[0].coupon_fen == 500  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("shares", "refused", "reason"),
    [
        ((), _share(ALICE, ALICE), "self_invite"),
        ((_share(ALICE, BOB),), _share(CAROL, BOB), "friend_already_credited"),
        ((_share(ALICE, BOB, "dev-1"),), _share(ALICE, CAROL, "dev-1"), "device"),
        (
            (_share(ALICE, BOB), _share(ALICE, CAROL)),
            _share(ALICE, DAN),
            "daily_cap_reached",
        ),
    ],
)
def test_abusive_shares_are_recorded_as_refused_with_the_rule(
    shares: tuple[mk.RecordShare, ...], refused: mk.RecordShare, reason: str
) -> None:
    state = _given(_publish(), *shares)
    after, events = _run(state, refused)
    (event,) = events
    assert isinstance(event, mk.ShareRefused)
    assert event.reason.startswith(reason)
    assert after is not None and after.rewarded == state.rewarded
    assert after.credited_to(refused.friend) == state.credited_to(refused.friend)


def test_the_same_refused_open_is_recorded_once() -> None:
    state, events = _run(_given(_publish()), _share(ALICE, ALICE))
    assert [e.reason for e in events] == ["self_invite"]  # type: ignore[attr-defined]
    assert _run(state, _share(ALICE, ALICE))[1] == []
    # So is the open refused by the daily cap.
    state = _given(_publish(), _share(ALICE, BOB), _share(ALICE, CAROL))
    state, first = _run(state, _share(ALICE, DAN))
    assert first[0].reason == "daily_cap_reached"  # type: ignore[attr-defined]
    assert _run(state, _share(ALICE, DAN))[1] == []


def test_a_repeated_open_is_credited_once_and_rewards_stop_at_the_campaign_limit() -> (
    None
):
    state = _given(_publish(), _share(ALICE, BOB))
    assert _run(state, _share(ALICE, BOB))[1] == []
    few = msgspec.structs.replace(FISSION, friends_needed=1, max_rewards=1)
    state = _given(_publish(fission=few), _share(ALICE, BOB))
    _, events = _run(state, _share(CAROL, EVE))
    assert events[0].reason == "rewards_exhausted"  # type: ignore[attr-defined]


def test_the_daily_cap_starts_afresh_the_next_china_day() -> None:
    state = _given(
        _publish(ends_at=NOW + timedelta(days=2)),
        _share(ALICE, BOB),
        _share(ALICE, CAROL),
    )
    # 16:00 UTC is midnight in China.
    tomorrow = NOW + timedelta(hours=5)
    state, _ = _run(state, _share(ALICE, DAN), tomorrow)
    _, events = _run(state, _share(ALICE, EVE), tomorrow)
    assert [type(e) for e in events] == [mk.ShareRecorded, mk.FissionRewardGranted]


# -- membership -----------------------------------------------------------------


def _enroll(profile: SealedBuyer | None) -> mk.EnrollMember:
    return mk.EnrollMember(
        channel_account="acct-1",
        platform="youzan",
        shop_id="yz-1",
        subject_id=ALICE,
        followed_at=NOW,
        profile=profile,
    )


SEALED = SealedBuyer(
    subject_id=ALICE,
    fields={"name": "c2VhbGVk", "phone": "c2VhbGVk", "address": "c2VhbGVk"},
)


@pytest.mark.parametrize(
    ("mode", "fields"),
    [
        ("de_identified_merge", ("address", "name", "phone")),
        ("stored_separately", ("address", "name", "phone")),
        ("custom_mapping", ("name", "phone")),
        ("encrypted_transfer_to_crm", ()),
        (None, ()),
    ],
)
def test_a_follower_becomes_a_member_keeping_what_the_profile_mode_keeps(
    mode: str | None, fields: tuple[str, ...]
) -> None:
    policy = profile_policy(mode) if mode is not None else None
    events = mk.decide_membership(None, _enroll(SEALED), _ctx(), policy)
    joined, enrolled = events
    assert isinstance(joined, mk.FollowerJoined)
    assert isinstance(enrolled, mk.MemberEnrolled)
    assert enrolled.fields == fields
    assert enrolled.mode == (mode or "")
    if mode is None:
        assert enrolled.profile is None
    else:
        assert enrolled.profile is not None
        assert tuple(sorted(enrolled.profile.fields)) == fields
    state = project(mk.mutate_member, None, events)
    assert state.enrolled
    assert mk.decide_membership(state, _enroll(SEALED), _ctx(), policy) == []


def test_a_profile_sealed_for_another_subject_is_refused() -> None:
    other = msgspec.structs.replace(SEALED, subject_id=BOB)
    with pytest.raises(mk.MemberProfileError, match=r"profile\.subject_id"):
        mk.decide_membership(None, _enroll(other), _ctx(), None)


def test_subject_ids_are_required_for_buyers() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"\$.buyer"):
        msgspec.convert({**KEY, "buyer": "13812341234"}, mk.ClaimCoupon)


def test_a_campaign_update_shares_all_but_one_bucket_and_survives_a_snapshot() -> None:
    buyers = [f"sub_{n:032x}" for n in range(300)]
    state = _given(_publish(total_quantity=1000), *(_claim(b) for b in buyers))
    after, _ = _run(state, _claim(ALICE))
    assert after is not None
    pairs = zip(state.holders, after.holders, strict=True)
    changed = [i for i, (a, b) in enumerate(pairs) if a is not b]
    assert len(changed) == 1
    assert mk.shard_len(after.holders) == 301
    # A snapshot is the state as JSON, decoded by its type in another process.
    again = msgspec.json.decode(msgspec.json.encode(after), type=mk.Campaign)
    assert again == after
    assert again.holding(buyers[7]).claimed == 1
