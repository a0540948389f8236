"""Qualification rules of every bundled profile, each rule at and around its edge."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any, get_args

import pytest

from domain.policy import (
    CategoryRule,
    DateMetric,
    NumericMetric,
    PlatformProfile,
    PolicyBook,
)
from domain.qualification import (
    InvalidFactsError,
    QualificationFacts,
    QualificationRejectedError,
    RuleFailure,
    check_qualification,
    evaluate,
)
from hub.service.policies import load_policy_book

AS_OF = date(2025, 6, 30)
BOOK: PolicyBook = load_policy_book()


def days_ago(n: int) -> date:
    return AS_OF - timedelta(days=n)


def passing_facts(**changes: Any) -> QualificationFacts:
    """Facts that pass every bundled rule; ``changes`` break one on purpose."""
    base: dict[str, Any] = {
        "as_of": AS_OF,
        "compliance_score": 95,
        "followers": 50_000,
        "last_violation_on": None,
        "last_completed_sale_on": days_ago(1),
    }
    return QualificationFacts(**(base | changes))


def messages(profile: PlatformProfile, facts: QualificationFacts) -> list[str]:
    return [failure.message for failure in evaluate(profile, facts)]


@pytest.mark.parametrize("platform", sorted(BOOK.profiles))
def test_passing_facts_pass_every_profile(platform: str) -> None:
    assert evaluate(BOOK.profile(platform), passing_facts()) == []


# One row per rule and edge: (platform, facts, expected failure messages).
RULE_CASES: list[tuple[str, QualificationFacts, list[str]]] = [
    # wechat_shop: compliance score >= 80
    ("wechat_shop", passing_facts(compliance_score=80), []),
    (
        "wechat_shop",
        passing_facts(compliance_score=79),
        ["compliance score 79 < 80 (wechat_shop)"],
    ),
    (
        "wechat_shop",
        passing_facts(compliance_score=None),
        ["compliance score not provided, needs >= 80 (wechat_shop)"],
    ),
    # douyin_shop: no violation in the last 30 days (30 days ago still counts)
    ("douyin_shop", passing_facts(last_violation_on=days_ago(31)), []),
    (
        "douyin_shop",
        passing_facts(last_violation_on=days_ago(30)),
        ["days since last violation 30 <= 30 (douyin_shop)"],
    ),
    (
        "douyin_shop",
        passing_facts(last_violation_on=AS_OF),
        ["days since last violation 0 <= 30 (douyin_shop)"],
    ),
    # kuaishou_shop: followers >= 10,000
    ("kuaishou_shop", passing_facts(followers=10_000), []),
    (
        "kuaishou_shop",
        passing_facts(followers=8_120),
        ["followers 8,120 < 10,000 (kuaishou_shop)"],
    ),
    (
        "kuaishou_shop",
        passing_facts(followers=None),
        ["followers not provided, needs >= 10,000 (kuaishou_shop)"],
    ),
    # pinduoduo: a completed sale in the last 7 days
    ("pinduoduo", passing_facts(last_completed_sale_on=days_ago(7)), []),
    (
        "pinduoduo",
        passing_facts(last_completed_sale_on=days_ago(8)),
        ["days since last completed sale 8 > 7 (pinduoduo)"],
    ),
    (
        "pinduoduo",
        passing_facts(last_completed_sale_on=None),
        ["last completed sale none on record, needs one within 7 days (pinduoduo)"],
    ),
]

# Category rules apply to every platform (they are the book's common rules).
CATEGORY_CASES: list[tuple[str, dict[str, Any], str | None]] = [
    ("food", {"licences": frozenset({"sc_food_production_licence"})}, None),
    ("food", {"licences": frozenset({"qs_food_production_licence"})}, None),
    (
        "food",
        {"licences": frozenset({"ccc_certification"})},
        "category food needs sc_food_production_licence or "
        "qs_food_production_licence, none held",
    ),
    ("digital", {"licences": frozenset({"ccc_certification"})}, None),
    ("digital", {}, "category digital needs ccc_certification, none held"),
    (
        "virtual_goods",
        {"licences": frozenset({"network_culture_business_licence"})},
        None,
    ),
    (
        "virtual_goods",
        {},
        "category virtual_goods needs network_culture_business_licence, none held",
    ),
    ("cross_border", {"connections": frozenset({"bonded_warehouse"})}, None),
    (
        "cross_border",
        {"licences": frozenset({"sc_food_production_licence"})},
        "category cross_border needs bonded_warehouse, none held",
    ),
]
for _platform in sorted(BOOK.profiles):
    for _category, _held, _message in CATEGORY_CASES:
        RULE_CASES.append(
            (
                _platform,
                passing_facts(categories=frozenset({_category}), **_held),
                [] if _message is None else [f"{_message} ({_platform})"],
            )
        )


@pytest.mark.parametrize(("platform", "facts", "expected"), RULE_CASES)
def test_every_rule_of_every_profile(
    platform: str, facts: QualificationFacts, expected: list[str]
) -> None:
    assert messages(BOOK.profile(platform), facts) == expected


def test_the_table_covers_every_rule_of_every_bundled_profile() -> None:
    failed = {
        (failure.platform, failure.subject)
        for platform, facts, _ in RULE_CASES
        for failure in evaluate(BOOK.profile(platform), facts)
    }
    for platform, profile in BOOK.profiles.items():
        for rule in profile.rules:
            subject = (
                f"category:{rule.category}"
                if isinstance(rule, CategoryRule)
                else rule.metric
            )
            assert (platform, subject) in failed, f"{platform} {rule} is untested"


def test_categories_not_sold_need_no_licence() -> None:
    facts = passing_facts(categories=frozenset({"apparel"}))
    assert evaluate(BOOK.profile("wechat_shop"), facts) == []


def test_a_rejection_lists_every_failed_rule_not_just_the_first() -> None:
    facts = passing_facts(
        compliance_score=61,
        categories=frozenset({"food", "digital", "virtual_goods", "cross_border"}),
    )
    failures = evaluate(BOOK.profile("wechat_shop"), facts)
    assert [f.subject for f in failures] == [
        "category:food",
        "category:digital",
        "category:virtual_goods",
        "category:cross_border",
        "compliance_score",
    ]
    assert failures[-1] == RuleFailure(
        platform="wechat_shop",
        rule="at_least",
        subject="compliance_score",
        measured="61",
        threshold=">= 80",
        message="compliance score 61 < 80 (wechat_shop)",
    )


def test_rejected_error_message_names_each_value_and_threshold() -> None:
    facts = passing_facts(followers=8_120, categories=frozenset({"digital"}))
    with pytest.raises(QualificationRejectedError) as caught:
        check_qualification(BOOK.profile("kuaishou_shop"), facts)
    assert str(caught.value) == (
        "category digital needs ccc_certification, none held (kuaishou_shop); "
        "followers 8,120 < 10,000 (kuaishou_shop)"
    )
    assert len(caught.value.failures) == 2
    assert caught.value.code == "qualification_rejected"


def test_check_qualification_passes_silently() -> None:
    check_qualification(BOOK.profile("kuaishou_shop"), passing_facts())


@pytest.mark.parametrize("field", ["last_violation_on", "last_completed_sale_on"])
def test_facts_dated_after_as_of_are_refused(field: str) -> None:
    facts = passing_facts(**{field: AS_OF + timedelta(days=1)})
    with pytest.raises(InvalidFactsError, match=f"{field} 2025-07-01 is after as_of"):
        evaluate(BOOK.profile("douyin_shop"), facts)


def test_every_metric_a_rule_can_name_is_a_fact() -> None:
    fields = set(QualificationFacts.__struct_fields__)
    assert set(get_args(NumericMetric)) | set(get_args(DateMetric)) <= fields
