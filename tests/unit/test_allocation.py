"""Per-channel allocation of available stock, and drift of platform reports."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.allocation import (
    LIST_ALL,
    AllocationRule,
    allocate,
    drift,
    drift_exceeds,
    wanted,
)


@pytest.mark.parametrize(
    ("available", "rule", "listed"),
    [
        (10, LIST_ALL, 10),
        (9, AllocationRule(share_percent=50), 4),  # rounded down
        (1, AllocationRule(share_percent=99), 0),
        (3, AllocationRule(fixed_quantity=5), 3),  # never more than available
        (30, AllocationRule(fixed_quantity=5), 5),
        (10, AllocationRule(buffer=3), 7),
        (2, AllocationRule(buffer=3), 0),
        (100, AllocationRule(share_percent=50, buffer=5, max_listed=20), 20),
        (30, AllocationRule(share_percent=50, buffer=5, max_listed=20), 10),
        (5, AllocationRule(zero_out_at_or_below=5), 0),
        (6, AllocationRule(zero_out_at_or_below=5), 6),
        (-4, LIST_ALL, 0),  # stock short of what it owes lists nothing
    ],
)
def test_a_rule_alone(available: int, rule: AllocationRule, listed: int) -> None:
    assert wanted(available, rule) == listed
    assert allocate(available, {"youzan": rule}) == {"youzan": listed}


def test_channels_that_fit_get_what_their_rules_want() -> None:
    rules = {
        "wechat_shop": AllocationRule(share_percent=60),
        "douyin_shop": AllocationRule(fixed_quantity=2),
        "kuaishou_shop": AllocationRule(share_percent=10, zero_out_at_or_below=20),
    }
    assert allocate(10, rules) == {
        "douyin_shop": 2,
        "kuaishou_shop": 0,
        "wechat_shop": 6,
    }


def test_channels_that_would_oversell_are_scaled_by_largest_remainder() -> None:
    # Both want all 7: 3.5 each -> 3 and 3, the unit left over to "a" by name.
    assert allocate(7, {"a": LIST_ALL, "b": LIST_ALL}) == {"a": 4, "b": 3}
    assert allocate(7, {"b": LIST_ALL, "a": LIST_ALL}) == {"a": 4, "b": 3}
    three = {
        "x": AllocationRule(fixed_quantity=10),
        "y": AllocationRule(fixed_quantity=10),
        "z": AllocationRule(fixed_quantity=5),
    }
    assert allocate(25, three) == {"x": 10, "y": 10, "z": 5}
    # Of 7, they want 7, 7 and 5 (fixed never exceeds available): 49/19, 49/19,
    # 35/19 -> 2, 2, 1 with remainders 11, 11, 16: the 2 left over go to z, then x.
    assert allocate(7, three) == {"x": 3, "y": 2, "z": 2}


def test_a_rule_lists_a_share_or_a_fixed_quantity_not_both() -> None:
    with pytest.raises(msgspec.ValidationError, match="not both"):
        msgspec.json.decode(
            b'{"share_percent":50,"fixed_quantity":3}', type=AllocationRule
        )


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b'{"share_percent":101}', "share_percent"),
        (b'{"buffer":-1}', "buffer"),
        (b'{"max_listed":-1}', "max_listed"),
        (b'{"zero_out_at_or_below":-2}', "zero_out_at_or_below"),
    ],
)
def test_bad_rules_name_the_field(payload: bytes, field: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=rf"\$\.{field}"):
        msgspec.json.decode(payload, type=AllocationRule)


def test_drift_is_reported_minus_expected() -> None:
    assert drift(7, 10) == -3
    assert drift(12, 10) == 2
    assert not drift_exceeds(12, 10, 2)
    assert drift_exceeds(13, 10, 2)
    assert drift_exceeds(7, 10, 2)
    with pytest.raises(ValueError, match="tolerance -1 < 0"):
        drift_exceeds(1, 1, -1)


units = st.integers(min_value=0, max_value=500)
rules_strategy = st.builds(
    AllocationRule,
    share_percent=st.none() | st.integers(0, 100),
    buffer=units,
    max_listed=st.none() | units,
    zero_out_at_or_below=st.none() | units,
) | st.builds(
    AllocationRule,
    fixed_quantity=units,
    buffer=units,
    max_listed=st.none() | units,
    zero_out_at_or_below=st.none() | units,
)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=-100, max_value=5_000),
    st.dictionaries(st.sampled_from("abcdefg"), rules_strategy, max_size=7),
)
def test_allocation_never_lists_more_than_available(
    available: int, rules: dict[str, AllocationRule]
) -> None:
    listed = allocate(available, rules)
    pool = max(available, 0)
    assert list(listed) == sorted(rules)
    assert sum(listed.values()) <= pool
    want = {channel: wanted(available, rule) for channel, rule in rules.items()}
    for channel, rule in rules.items():
        quantity = listed[channel]
        assert 0 <= quantity <= want[channel]
        if rule.max_listed is not None:
            assert quantity <= rule.max_listed
        if rule.zero_out_at_or_below is not None and pool <= rule.zero_out_at_or_below:
            assert quantity == 0
        if rule.share_percent is not None:
            assert quantity <= pool * rule.share_percent // 100
        assert quantity <= max(pool - rule.buffer, 0)
    if sum(want.values()) <= pool:
        assert listed == want
    else:
        assert sum(listed.values()) == pool
    # Deterministic, whatever the order the rules come in.
    assert allocate(available, dict(reversed(list(rules.items())))) == listed
