"""The four connectors' sync policies, as the bundled policy book holds them
(docs/domain.md §4 facts as data), the protocol facts kept in each connector,
and the backoff arithmetic every client and the outbound dispatcher share."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.common import backoff_delay_s
from connectors.douyin_shop import protocol as douyin
from connectors.kuaishou_shop import protocol as kuaishou
from connectors.registry import CONNECTORS
from connectors.wechat_shop import protocol as wechat
from connectors.youzan import protocol as youzan
from domain.policy import RetryPolicy, SyncPolicy
from hub.service.policies import load_policy_book, sync_policies

POLICIES = sync_policies(load_policy_book())


def test_every_connector_has_a_sync_policy_in_the_bundled_book() -> None:
    assert set(CONNECTORS) <= set(POLICIES)


@pytest.mark.parametrize("platform", sorted(CONNECTORS))
def test_policy_numbers_are_sane(platform: str) -> None:
    policy = POLICIES[platform]
    assert policy.rate_limit.rate_per_s > 0
    assert policy.rate_limit.burst >= policy.rate_limit.rate_per_s
    assert policy.retry.max_attempts >= 1
    assert 0 < policy.retry.base_delay_s <= policy.retry.max_delay_s


@pytest.mark.parametrize("platform", sorted(CONNECTORS))
def test_policy_is_immutable(platform: str) -> None:
    with pytest.raises(AttributeError):
        POLICIES[platform].orders = POLICIES["youzan"].orders  # type: ignore[misc]


# ---------------------------------------------------------- docs/domain.md §4 facts


def _orders(policy: SyncPolicy) -> tuple[object, ...]:
    orders = policy.orders
    return (
        orders.mode,
        orders.push_enabled,
        orders.poll_interval_s,
        orders.poll_delay_s,
    )


def test_wechat_orders_are_pushed_with_a_15_second_poll_fallback() -> None:
    assert _orders(POLICIES["wechat_shop"]) == ("push", True, 15, 0)


def test_wechat_stock_is_two_way() -> None:
    assert POLICIES["wechat_shop"].stock.mode == "two_way"
    assert POLICIES["wechat_shop"].stock.pushed_on_change


def test_douyin_orders_are_polled_30_minutes_late() -> None:
    assert _orders(POLICIES["douyin_shop"]) == ("poll", False, 300, 30 * 60)


def test_douyin_stock_is_pushed_one_way() -> None:
    assert POLICIES["douyin_shop"].stock.mode == "one_way_push"
    assert POLICIES["douyin_shop"].stock.pushed_on_change


def test_kuaishou_orders_are_manual_and_stock_is_calibrated_twice_a_day() -> None:
    policy = POLICIES["kuaishou_shop"]
    assert _orders(policy) == ("manual", False, None, 0)
    assert policy.stock.mode == "scheduled_calibration"
    assert not policy.stock.pushed_on_change
    assert policy.stock.calibration_times == ("03:00", "15:00")
    assert policy.stock.timezone == "Asia/Shanghai"


def test_youzan_orders_are_pushed_and_stock_follows_every_change() -> None:
    assert _orders(POLICIES["youzan"]) == ("push", True, 60, 0)
    assert POLICIES["youzan"].stock.pushed_on_change


def test_wechat_waits_a_minute_after_a_rate_limit() -> None:
    # 45011 asks to retry the next minute.
    assert POLICIES["wechat_shop"].retry.rate_limited_min_delay_s == 60.0


# ------------------------------------------------- protocol facts, not policy


def test_token_lifetimes_are_protocol_constants() -> None:
    assert wechat.ACCESS_TOKEN_TTL_S == 7200
    assert {40001, 40014, 42001} <= set(wechat.TOKEN_EXPIRED_CODES)
    assert douyin.ACCESS_TOKEN_TTL_S == 7 * 86400
    assert douyin.REFRESH_TOKEN_TTL_S == 14 * 86400
    assert kuaishou.ACCESS_TOKEN_TTL_S == 48 * 3600
    assert youzan.ACCESS_TOKEN_TTL_S == 7 * 86400


@pytest.mark.parametrize(
    ("recognised", "expected"),
    [
        (lambda: wechat.is_rate_limited_code(45009), True),
        (lambda: wechat.is_rate_limited_code(10020112), True),
        (lambda: wechat.is_rate_limited_code(40001), False),
        (lambda: douyin.is_rate_limited_code(60000), True),
        (lambda: douyin.is_rate_limited_code("60000"), True),
        (lambda: douyin.is_rate_limited_code(10000), False),
        (
            lambda: kuaishou.is_rate_limited_message(
                "Exceed qps limit, KEY [apiId:open.item.get], MAX_QPS [50.0]"
            ),
            True,
        ),
        (
            lambda: kuaishou.is_rate_limited_message(
                "Exceed quota limit, KEY [appkey:ks1]"
            ),
            False,
        ),
    ],
)
def test_rate_limit_signals_are_recognised(recognised: object, expected: bool) -> None:
    assert callable(recognised)
    assert recognised() is expected


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
    for policy in POLICIES.values():
        delay = backoff_delay_s(policy.retry, attempt, fraction)
        assert 0.0 <= delay <= policy.retry.max_delay_s
