"""The policy book: the bundled data says what docs/domain.md says, bad data is
named, and a changed threshold changes outcomes without a code change."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import msgspec
import pytest

from domain.policy import (
    AtLeastRule,
    CategoryRule,
    NoneWithinDaysRule,
    PlatformProfile,
    PolicyBookError,
    UnknownPlatformError,
    WithinDaysRule,
    decode_policy_book,
)
from domain.qualification import QualificationFacts, evaluate
from hub.service.policies import (
    BUNDLED_POLICIES,
    format_profile,
    load_policy_book,
    sync_policies,
)


def bundled_data() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(BUNDLED_POLICIES.read_text(encoding="utf-8"))
    return data


def decode(data: dict[str, Any]) -> Any:
    return decode_policy_book(json.dumps(data).encode())


def test_bundled_book_decodes_with_every_platform() -> None:
    book = load_policy_book()
    assert book.schema_version == 2
    assert set(book.profiles) == {
        "wechat_shop",
        "douyin_shop",
        "kuaishou_shop",
        "youzan",
        "pinduoduo",
    }


def test_a_book_can_be_loaded_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "policies.json"
    path.write_bytes(BUNDLED_POLICIES.read_bytes())
    assert load_policy_book(path) == load_policy_book()


# -- docs/domain.md §1, §2: one row per platform ---------------------------

PROFILE_FACTS = [
    # platform, materials, review (min, max), special requirements, route, scope
    (
        "wechat_shop",
        ("business_licence", "legal_person_id"),
        (1, 3),
        ("corporate_bank_account_verification",),
        "wechat_internal_authorisation",
        "orders_and_users_full",
    ),
    (
        "douyin_shop",
        ("business_licence", "shop_logo"),
        (2, 5),
        ("security_deposit",),
        "douyin_api_key",
        "product_information_only",
    ),
    (
        "kuaishou_shop",
        ("id_card_front", "id_card_back", "handheld_id_photo"),
        (0, 0),
        ("face_recognition",),
        "kuaishou_oauth2",
        "orders_and_users_full",
    ),
    ("youzan", (), None, (), "youzan_oauth2", "custom_mapping"),
    ("pinduoduo", (), None, (), None, None),
]


def _spec_row(profile: PlatformProfile) -> tuple[Any, ...]:
    review = profile.review
    route = profile.binding_route
    return (
        profile.platform,
        profile.materials,
        None if review is None else (review.min_working_days, review.max_working_days),
        profile.special_requirements,
        None if route is None else route.kind,
        profile.data_scope,
    )


@pytest.mark.parametrize("row", PROFILE_FACTS, ids=lambda row: str(row[0]))
def test_profiles_hold_the_spec_facts(row: tuple[Any, ...]) -> None:
    assert _spec_row(load_policy_book().profile(row[0])) == row


# -- docs/domain.md §3: every rule of every profile ------------------------

CATEGORY_RULES = [
    CategoryRule(
        category="food",
        any_of=("sc_food_production_licence", "qs_food_production_licence"),
    ),
    CategoryRule(category="digital", any_of=("ccc_certification",)),
    CategoryRule(
        category="virtual_goods", any_of=("network_culture_business_licence",)
    ),
    CategoryRule(category="cross_border", any_of=("bonded_warehouse",)),
]
OWN_RULES = {
    "wechat_shop": [AtLeastRule(metric="compliance_score", threshold=80)],
    "douyin_shop": [NoneWithinDaysRule(metric="last_violation_on", days=30)],
    "kuaishou_shop": [AtLeastRule(metric="followers", threshold=10_000)],
    "youzan": [],
    "pinduoduo": [WithinDaysRule(metric="last_completed_sale_on", days=7)],
}


@pytest.mark.parametrize(("platform", "own_rules"), sorted(OWN_RULES.items()))
def test_profile_rules_are_the_common_rules_then_its_own(
    platform: str, own_rules: list[Any]
) -> None:
    profile = load_policy_book().profile(platform)
    without_notes = [msgspec.structs.replace(rule, note="") for rule in profile.rules]
    assert without_notes == [*CATEGORY_RULES, *own_rules]


# -- docs/domain.md §4, §7 -------------------------------------------------

SYNC_AND_RISK = [
    # platform, orders, stock, user profile, protection, monitoring, traffic
    (
        "wechat_shop",
        ("push", 15, 0),
        ("two_way", ()),
        "de_identified_merge",
        "aes_256",
        "automated_content_review",
        ("daily_diversion_cap", 500),
    ),
    (
        "douyin_shop",
        ("poll", 300, 1800),
        ("one_way_push", ()),
        "stored_separately",
        "dynamic_token_verification",
        "manual_review",
        ("tiered_traffic_packages", None),
    ),
    (
        "kuaishou_shop",
        ("manual", None, 0),
        ("scheduled_calibration", ("03:00", "15:00")),
        "encrypted_transfer_to_crm",
        "local_storage",
        "user_reports",
        ("dynamic_bandwidth", None),
    ),
]


def _sync_and_risk_row(profile: PlatformProfile) -> tuple[Any, ...]:
    sync = profile.sync
    risk = profile.risk
    assert sync is not None
    assert risk is not None
    assert sync.user_profile is not None
    assert risk.traffic_limit is not None
    orders, stock = sync.orders, sync.stock
    return (
        profile.platform,
        (orders.mode, orders.poll_interval_s, orders.poll_delay_s),
        (stock.mode, stock.calibration_times),
        sync.user_profile.mode,
        risk.data_protection,
        risk.violation_monitoring,
        (risk.traffic_limit.mode, risk.traffic_limit.per_day),
    )


@pytest.mark.parametrize("row", SYNC_AND_RISK, ids=lambda row: str(row[0]))
def test_profiles_hold_sync_modes_and_risk_controls(row: tuple[Any, ...]) -> None:
    assert _sync_and_risk_row(load_policy_book().profile(row[0])) == row


def test_every_bound_platform_has_a_full_sync_policy() -> None:
    policies = sync_policies(load_policy_book())
    assert set(policies) == {"wechat_shop", "douyin_shop", "kuaishou_shop", "youzan"}
    youzan = policies["youzan"]
    assert (youzan.orders.mode, youzan.orders.poll_interval_s) == ("push", 60)
    assert youzan.stock.mode == "two_way"
    assert youzan.user_profile is not None
    assert youzan.user_profile.mode == "custom_mapping"


# -- data changes, not code changes ----------------------------------------------


def test_a_changed_threshold_in_the_data_changes_the_outcome(tmp_path: Path) -> None:
    facts = QualificationFacts(as_of=date(2025, 6, 30), followers=8_120)
    bundled = load_policy_book()
    assert [f.message for f in evaluate(bundled.profile("kuaishou_shop"), facts)] == [
        "followers 8,120 < 10,000 (kuaishou_shop)"
    ]

    data = bundled_data()
    for rule in data["profiles"]["kuaishou_shop"]["rules"]:
        if rule.get("metric") == "followers":
            rule["threshold"] = 8_000
    path = tmp_path / "policies.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert evaluate(load_policy_book(path).profile("kuaishou_shop"), facts) == []

    for rule in data["profiles"]["kuaishou_shop"]["rules"]:
        if rule.get("metric") == "followers":
            rule["threshold"] = 20_000
    stricter = decode(data)
    assert [f.message for f in evaluate(stricter.profile("kuaishou_shop"), facts)] == [
        "followers 8,120 < 20,000 (kuaishou_shop)"
    ]


def test_a_changed_common_rule_applies_to_every_platform() -> None:
    data = bundled_data()
    data["common_rules"].append(
        {
            "kind": "category_requires",
            "category": "alcohol",
            "any_of": ["liquor_permit"],
        }
    )
    book = decode(data)
    facts = QualificationFacts(
        as_of=date(2025, 6, 30),
        compliance_score=90,
        followers=20_000,
        last_completed_sale_on=date(2025, 6, 29),
        categories=frozenset({"alcohol"}),
    )
    for platform in book.profiles:
        assert [f.subject for f in evaluate(book.profile(platform), facts)] == [
            "category:alcohol"
        ]


def test_a_new_platform_is_a_data_change() -> None:
    data = bundled_data()
    data["profiles"]["xiaohongshu"] = {
        "platform": "xiaohongshu",
        "display_name": "Xiaohongshu",
        "review": {"min_working_days": 1, "max_working_days": 2},
        "rules": [{"kind": "at_least", "metric": "followers", "threshold": 1_000}],
    }
    profile = decode(data).profile("xiaohongshu")
    facts = QualificationFacts(as_of=date(2025, 6, 30), followers=999)
    assert [f.message for f in evaluate(profile, facts)] == [
        "followers 999 < 1,000 (xiaohongshu)"
    ]


# -- bad data is named ------------------------------------------------------------


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node: Any = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            "profiles.kuaishou_shop.rules.0.threshold",
            -1,
            "Expected `int` >= 0 - at `$.profiles.kuaishou_shop.rules[0].threshold`",
        ),
        (
            "profiles.kuaishou_shop.rules.0.metric",
            "likes",
            "Invalid enum value 'likes' - at "
            "`$.profiles.kuaishou_shop.rules[0].metric`",
        ),
        (
            "profiles.kuaishou_shop.rules.0.kind",
            "at_most",
            "Invalid value 'at_most' - at `$.profiles.kuaishou_shop.rules[0].kind`",
        ),
        (
            "profiles.douyin_shop.rules.0.days",
            0,
            "Expected `int` >= 1 - at `$.profiles.douyin_shop.rules[0].days`",
        ),
        (
            "profiles.wechat_shop.review.max_working_days",
            "3",
            "Expected `int`, got `str` - at "
            "`$.profiles.wechat_shop.review.max_working_days`",
        ),
        (
            "profiles.wechat_shop.data_scope",
            "everything",
            "Invalid enum value 'everything' - at `$.profiles.wechat_shop.data_scope`",
        ),
        (
            "profiles.wechat_shop.special_requirement",
            ["face_recognition"],
            "Object contains unknown field `special_requirement` - at "
            "`$.profiles.wechat_shop`",
        ),
        (
            "profiles.wechat_shop.review.min_working_days",
            4,
            "$.profiles.wechat_shop.review: min_working_days 4 > max_working_days 3 "
            "(min may not exceed max)",
        ),
        (
            "profiles.wechat_shop.platform",
            "douyin_shop",
            "$.profiles.wechat_shop.platform 'douyin_shop' != its key 'wechat_shop'",
        ),
        (
            "profiles.douyin_shop.materials",
            ["shop_logo", "shop_logo"],
            "$.profiles.douyin_shop.materials lists shop_logo more than once",
        ),
        (
            "schema_version",
            1,
            "$.schema_version 1 is not supported (supported: 2)",
        ),
        (
            "profiles.douyin_shop.sync.orders.poll_interval_s",
            None,
            "$.profiles.douyin_shop.sync.orders.poll_interval_s is missing (mode "
            "'poll' polls on it)",
        ),
        (
            "profiles.kuaishou_shop.sync.orders.poll_interval_s",
            60,
            "$.profiles.kuaishou_shop.sync.orders.poll_interval_s 60 is given for "
            "mode 'manual'",
        ),
        (
            "profiles.kuaishou_shop.sync.stock.calibration_times",
            [],
            "$.profiles.kuaishou_shop.sync.stock.calibration_times is empty",
        ),
        (
            "profiles.wechat_shop.sync.stock.calibration_times",
            ["03:00"],
            "$.profiles.wechat_shop.sync.stock.calibration_times is given for mode "
            "'two_way'",
        ),
        (
            "profiles.kuaishou_shop.sync.stock.calibration_times",
            ["03:00", "03:00"],
            "calibration_times lists 03:00 more than once",
        ),
        (
            "profiles.kuaishou_shop.sync.stock.calibration_times",
            ["3pm"],
            "- at `$.profiles.kuaishou_shop.sync.stock.calibration_times[0]`",
        ),
        (
            "profiles.wechat_shop.sync.stock.mode",
            "realtime",
            "Invalid enum value 'realtime' - at "
            "`$.profiles.wechat_shop.sync.stock.mode`",
        ),
        (
            "profiles.wechat_shop.sync.rate_limit.rate_per_s",
            0,
            "Expected `float` > 0.0 - at "
            "`$.profiles.wechat_shop.sync.rate_limit.rate_per_s`",
        ),
        (
            "profiles.wechat_shop.sync.retry.base_delay_s",
            90.0,
            "$.profiles.wechat_shop.sync.retry: base_delay_s 90.0 > max_delay_s 60.0",
        ),
        (
            "holiday_calendar.makeup_workdays",
            ["2025-01-01"],
            "$.holiday_calendar: 2025-01-01 is both a holiday and a make-up "
            "working day",
        ),
        (
            "holiday_calendar.holidays",
            ["2025-02-30"],
            "at `$.holiday_calendar.holidays[0]`",
        ),
    ],
)
def test_bad_data_is_refused_naming_the_field_and_rule(
    path: str, value: Any, message: str
) -> None:
    data = bundled_data()
    _set(data, path, value)
    with pytest.raises(PolicyBookError) as caught:
        decode(data)
    assert message in str(caught.value)


def test_a_missing_required_field_is_named() -> None:
    data = bundled_data()
    del data["profiles"]["wechat_shop"]["display_name"]
    with pytest.raises(PolicyBookError, match="missing required field `display_name`"):
        decode(data)


def test_not_json_is_refused() -> None:
    with pytest.raises(PolicyBookError, match="not valid JSON"):
        decode_policy_book(b"{schema_version: 1")


def test_a_bad_file_is_named_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"schema_version": 1, "revision": 1, "profiles": {}}')
    with pytest.raises(PolicyBookError, match=r"broken\.json: .*\$\.profiles"):
        load_policy_book(path)


def test_an_unknown_platform_names_the_known_ones() -> None:
    with pytest.raises(UnknownPlatformError, match="'taobao' has no policy profile"):
        load_policy_book().profile("taobao")


# -- hub policies show PLATFORM ---------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "expected"),
    [
        (
            "wechat_shop",
            [
                "wechat_shop: WeChat Shop (微信小店)",
                "materials:            business licence, legal person id",
                "review time:          1-3 working days",
                "special requirements: corporate bank account verification",
                "binding route:        wechat internal authorisation",
                "interface:          WeChat open platform API",
                "data scope:           orders and users full",
                "- compliance score >= 80",
                "- category food needs sc food production licence or qs food",
                "orders:             push, fallback poll every 15 s",
                "stock:              two way",
                "rate limit:         5/s per shop, burst 10",
                "retry:              5 attempts, backoff 1-60 s (x2), at least 60 s "
                "after a rate limit",
                "user profile:       de identified merge",
                "data protection:    aes 256",
                "violation review:   automated content review",
                "traffic limit:      daily diversion cap, 500 a day",
            ],
        ),
        (
            "douyin_shop",
            [
                "review time:          2-5 working days",
                "data scope:           product information only",
                "- no violation in the last 30 days",
                "orders:             poll, poll every 300 s, orders at least 1800 s "
                "old",
                "stock:              one way push",
            ],
        ),
        (
            "kuaishou_shop",
            [
                "review time:          instant",
                "- followers >= 10,000",
                "orders:             manual",
                "stock:              scheduled calibration at 03:00, 15:00 "
                "(Asia/Shanghai)",
            ],
        ),
        (
            "youzan",
            [
                "data scope:           custom mapping",
                "review time:          (not given)",
                "orders:             push, fallback poll every 60 s",
                "user profile:       custom mapping",
            ],
        ),
        (
            "pinduoduo",
            [
                "binding route:        (not given: cannot be bound)",
                "- a completed sale in the last 7 days",
                "orders:             (not given)",
            ],
        ),
    ],
)
def test_format_profile_shows_every_field(platform: str, expected: list[str]) -> None:
    text = format_profile(load_policy_book().profile(platform))
    for line in expected:
        assert line in text
