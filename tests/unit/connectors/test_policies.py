"""The four connectors' sync policies: docs/domain.md §4 facts held as data."""

from __future__ import annotations

import re
from types import ModuleType

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors import common
from connectors.common import RetryPolicy, SyncPolicy, backoff_delay_s, is_rate_limited
from connectors.douyin_shop import policy as douyin
from connectors.kuaishou_shop import policy as kuaishou
from connectors.wechat_shop import policy as wechat
from connectors.youzan import policy as youzan

ALL = [wechat.POLICY, douyin.POLICY, kuaishou.POLICY, youzan.POLICY]
IDS = [policy.platform for policy in ALL]


@pytest.mark.parametrize(
    ("module", "code"),
    [
        (wechat, "wechat_shop"),
        (douyin, "douyin_shop"),
        (kuaishou, "kuaishou_shop"),
        (youzan, "youzan"),
    ],
)
def test_each_policy_names_its_platform_code(module: ModuleType, code: str) -> None:
    declared = module.PLATFORM
    assert declared == code
    assert module.POLICY.platform == code


@pytest.mark.parametrize("policy", ALL, ids=IDS)
def test_policy_round_trips_through_json(policy: SyncPolicy) -> None:
    encoded = msgspec.json.encode(policy)
    assert msgspec.json.decode(encoded, type=SyncPolicy) == policy


@pytest.mark.parametrize("policy", ALL, ids=IDS)
def test_policy_is_immutable(policy: SyncPolicy) -> None:
    with pytest.raises(AttributeError):
        policy.platform = "changed"  # type: ignore[misc]


@pytest.mark.parametrize("policy", ALL, ids=IDS)
def test_policy_numbers_are_sane(policy: SyncPolicy) -> None:
    assert policy.rate_limit.rate_per_s > 0
    assert policy.rate_limit.burst >= policy.rate_limit.rate_per_s
    assert 429 in policy.rate_limit.http_statuses
    assert policy.retry.max_attempts >= 1
    assert 0 < policy.retry.base_delay_s <= policy.retry.max_delay_s
    assert 0 < policy.token.refresh_margin_s < policy.token.access_ttl_s
    for time_of_day in policy.stock.calibration_times:
        assert re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", time_of_day)


# ---------------------------------------------------------- docs/domain.md §4 facts


def test_wechat_orders_are_pushed_with_a_15_second_poll_fallback() -> None:
    orders = wechat.POLICY.orders
    assert (orders.mode, orders.push_enabled, orders.poll_interval_s) == (
        "push",
        True,
        15,
    )


def test_wechat_stock_is_two_way_and_profiles_are_deidentified_and_merged() -> None:
    assert wechat.POLICY.stock.direction == "two_way"
    assert wechat.POLICY.profiles.mode == "deidentified_merge"
    assert wechat.POLICY.profiles.deidentify


def test_douyin_orders_are_polled_30_minutes_late() -> None:
    orders = douyin.POLICY.orders
    assert orders.mode == "poll"
    assert not orders.push_enabled
    assert orders.poll_delay_s == 30 * 60


def test_douyin_stock_goes_shop_to_channel_and_never_trusts_the_platform() -> None:
    stock = douyin.POLICY.stock
    assert stock.direction == "shop_to_channel"
    assert not stock.platform_is_source_of_truth
    assert douyin.POLICY.profiles.mode == "stored_separately"


def test_kuaishou_orders_are_manual_and_stock_is_calibrated_twice_a_day() -> None:
    assert kuaishou.POLICY.orders.mode == "manual"
    assert kuaishou.POLICY.orders.poll_interval_s is None
    assert kuaishou.POLICY.stock.mode == "scheduled_calibration"
    assert len(kuaishou.POLICY.stock.calibration_times) == 2


def test_kuaishou_profiles_go_encrypted_to_the_crm() -> None:
    profiles = kuaishou.POLICY.profiles
    assert (profiles.mode, profiles.destination, profiles.encrypt_in_transit) == (
        "encrypted_transfer",
        "crm",
        True,
    )


def test_youzan_uses_oauth2_and_syncs_products_in_real_time() -> None:
    assert youzan.POLICY.auth == "oauth2"
    assert youzan.POLICY.products.mode == "realtime"
    assert youzan.POLICY.stock.alert_within_s is not None
    assert youzan.POLICY.stock.alert_within_s <= 10


def test_token_lifetimes_follow_the_platforms() -> None:
    assert wechat.POLICY.token.access_ttl_s == 7200
    assert set(wechat.POLICY.token.expired_codes) == {"40001", "40014", "42001"}
    assert douyin.POLICY.token.access_ttl_s == 7 * 86400
    assert douyin.POLICY.token.refresh_ttl_s == 14 * 86400
    assert kuaishou.POLICY.token.access_ttl_s == 48 * 3600
    assert kuaishou.POLICY.token.rotates_refresh_token


# ----------------------------------------------------------------- rate limits


@pytest.mark.parametrize(
    ("policy", "signal"),
    [
        (wechat.POLICY, {"code": 45009}),
        (wechat.POLICY, {"code": 10020112}),
        (douyin.POLICY, {"code": 60000}),
        (douyin.POLICY, {"code": "60000"}),
        (
            kuaishou.POLICY,
            {"message": "Exceed qps limit, KEY [apiId:open.item.get], MAX_QPS [50.0]"},
        ),
        (youzan.POLICY, {"http_status": 429}),
        (kuaishou.POLICY, {"http_status": 429}),
    ],
)
def test_rate_limit_signals_are_recognised(
    policy: SyncPolicy, signal: dict[str, int | str]
) -> None:
    assert is_rate_limited(policy.rate_limit, **signal)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("policy", "signal"),
    [
        (wechat.POLICY, {"code": 40001}),
        (douyin.POLICY, {"code": 10000, "http_status": 200}),
        (kuaishou.POLICY, {"message": "Exceed quota limit, KEY [appkey:ks1]"}),
        (youzan.POLICY, {"http_status": 200, "message": "ok"}),
    ],
)
def test_other_failures_are_not_rate_limits(
    policy: SyncPolicy, signal: dict[str, int | str]
) -> None:
    assert not is_rate_limited(policy.rate_limit, **signal)  # type: ignore[arg-type]


# ----------------------------------------------------------------- backoff

RETRY = RetryPolicy(
    max_attempts=5, base_delay_s=1.0, max_delay_s=60.0, rate_limited_min_delay_s=30.0
)


def test_backoff_ceiling_doubles_and_is_capped() -> None:
    almost_one = 0.999999
    ceilings = [
        round(backoff_delay_s(RETRY, attempt, almost_one)) for attempt in range(1, 9)
    ]
    assert ceilings == [1, 2, 4, 8, 16, 32, 60, 60]


def test_rate_limited_retry_waits_at_least_the_floor() -> None:
    assert backoff_delay_s(RETRY, 1, 0.0, rate_limited=True) == 30.0
    assert backoff_delay_s(RETRY, 1, 0.0) == 0.0


@pytest.mark.parametrize(("attempt", "fraction"), [(0, 0.5), (1, 1.0), (1, -0.1)])
def test_backoff_rejects_bad_arguments(attempt: int, fraction: float) -> None:
    with pytest.raises(ValueError, match=r"attempt|random_fraction"):
        backoff_delay_s(RETRY, attempt, fraction)


@settings(max_examples=100)
@given(
    attempt=st.integers(min_value=1, max_value=50),
    fraction=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_backoff_stays_within_bounds(attempt: int, fraction: float) -> None:
    for policy in ALL:
        delay = backoff_delay_s(policy.retry, attempt, fraction)
        assert 0.0 <= delay <= policy.retry.max_delay_s


def test_shared_struct_lives_in_connectors_common() -> None:
    # One SyncPolicy type for all four connectors (no copy-and-adapt).
    assert all(type(policy) is common.SyncPolicy for policy in ALL)
