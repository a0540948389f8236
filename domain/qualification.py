"""Qualification review: a platform profile's rules applied to a merchant's facts.

Every rule is evaluated, never stopping at the first failure, so a rejection
tells the merchant everything to fix at once, each failure with the measured
value and the threshold (docs/domain.md §3).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Annotated, NamedTuple

import msgspec

from domain.events import DomainError
from domain.policy import (
    AtLeastRule,
    CategoryRule,
    NoneWithinDaysRule,
    PlatformProfile,
    QualificationRule,
    WithinDaysRule,
)

Count = Annotated[int, msgspec.Meta(ge=0, le=10_000_000_000)]
Label = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class QualificationFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What was measured about the merchant, as of one day.

    Attributes:
        as_of: The day the facts describe (the domain has no clock).
        compliance_score: The channel account's compliance score, if known.
        followers: Followers of the bound account, if known.
        last_violation_on: Day of the latest violation; None if there was none.
        last_completed_sale_on: Day of the latest completed sale; None if none.
        categories: Categories the shop sells in (``food``, ``digital``, ...).
        licences: Licences and certificates held (``sc_food_production``, ...).
        connections: Systems the shop is connected to (``bonded_warehouse``).
    """

    as_of: date
    compliance_score: Count | None = None
    followers: Count | None = None
    last_violation_on: date | None = None
    last_completed_sale_on: date | None = None
    categories: frozenset[Label] = frozenset()
    licences: frozenset[Label] = frozenset()
    connections: frozenset[Label] = frozenset()


class RuleFailure(msgspec.Struct, frozen=True, kw_only=True):
    """One rule a merchant failed, with what was measured and what was needed.

    Attributes:
        platform: The platform whose rule failed.
        rule: The rule's kind (``at_least``, ``category_requires``, ...).
        subject: What was measured: a metric, or ``category:<name>``.
        measured: The measured value, as shown to people.
        threshold: The value the rule needs, as shown to people.
        message: The whole failure in one line, e.g.
            ``followers 8,120 < 10,000 (kuaishou_shop)``.
    """

    platform: str
    rule: str
    subject: str
    measured: str
    threshold: str
    message: str


class InvalidFactsError(DomainError):
    """Qualification facts contradict themselves (e.g. a sale after ``as_of``)."""

    code = "invalid_facts"


class QualificationRejectedError(DomainError):
    """The merchant failed one or more qualification rules; all are listed."""

    code = "qualification_rejected"

    def __init__(self, failures: Sequence[RuleFailure]) -> None:
        """Build the message from every failure, in rule order."""
        self.failures = tuple(failures)
        super().__init__(rejection_message(self.failures))


def rejection_message(failures: Sequence[RuleFailure]) -> str:
    """Every failure's message, joined with ``"; "``."""
    return "; ".join(failure.message for failure in failures)


def _label(metric: str) -> str:
    return metric.removesuffix("_on").replace("_", " ")


def _check_facts(facts: QualificationFacts) -> None:
    for field in ("last_violation_on", "last_completed_sale_on"):
        day = getattr(facts, field)
        if day is not None and day > facts.as_of:
            raise InvalidFactsError(
                f"{field} {day.isoformat()} is after as_of {facts.as_of.isoformat()} "
                "(facts cannot describe the future)"
            )


class _Shortfall(NamedTuple):
    """How ``facts`` fall short of one rule, before the platform is named."""

    subject: str
    measured: str
    threshold: str
    message: str


def _at_least(rule: AtLeastRule, facts: QualificationFacts) -> _Shortfall | None:
    value: int | None = getattr(facts, rule.metric)
    label = _label(rule.metric)
    if value is not None and value >= rule.threshold:
        return None
    threshold = f">= {rule.threshold:,}"
    if value is None:
        return _Shortfall(
            rule.metric,
            "not provided",
            threshold,
            f"{label} not provided, needs {threshold}",
        )
    return _Shortfall(
        rule.metric, f"{value:,}", threshold, f"{label} {value:,} < {rule.threshold:,}"
    )


def _none_within(
    rule: NoneWithinDaysRule, facts: QualificationFacts
) -> _Shortfall | None:
    day: date | None = getattr(facts, rule.metric)
    if day is None:
        return None
    days_since = (facts.as_of - day).days
    if days_since > rule.days:
        return None
    return _Shortfall(
        rule.metric,
        f"{days_since} days ago ({day.isoformat()})",
        f"none in the last {rule.days} days",
        f"days since {_label(rule.metric)} {days_since} <= {rule.days}",
    )


def _within(rule: WithinDaysRule, facts: QualificationFacts) -> _Shortfall | None:
    day: date | None = getattr(facts, rule.metric)
    threshold = f"one in the last {rule.days} days"
    label = _label(rule.metric)
    if day is None:
        return _Shortfall(
            rule.metric,
            "none on record",
            threshold,
            f"{label} none on record, needs one within {rule.days} days",
        )
    days_since = (facts.as_of - day).days
    if days_since <= rule.days:
        return None
    return _Shortfall(
        rule.metric,
        f"{days_since} days ago ({day.isoformat()})",
        threshold,
        f"days since {label} {days_since} > {rule.days}",
    )


def _category(rule: CategoryRule, facts: QualificationFacts) -> _Shortfall | None:
    if rule.category not in facts.categories:
        return None
    held = facts.licences | facts.connections
    if held.intersection(rule.any_of):
        return None
    needed = " or ".join(rule.any_of)
    return _Shortfall(
        f"category:{rule.category}",
        "none held",
        needed,
        f"category {rule.category} needs {needed}, none held",
    )


def evaluate_rule(
    rule: QualificationRule, facts: QualificationFacts, platform: str
) -> RuleFailure | None:
    """The failure of one ``rule`` on ``facts``, or None when it passes."""
    if isinstance(rule, AtLeastRule):
        shortfall = _at_least(rule, facts)
    elif isinstance(rule, NoneWithinDaysRule):
        shortfall = _none_within(rule, facts)
    elif isinstance(rule, WithinDaysRule):
        shortfall = _within(rule, facts)
    else:
        shortfall = _category(rule, facts)
    if shortfall is None:
        return None
    return RuleFailure(
        platform=platform,
        rule=str(type(rule).__struct_config__.tag),
        subject=shortfall.subject,
        measured=shortfall.measured,
        threshold=shortfall.threshold,
        message=f"{shortfall.message} ({platform})",
    )


def evaluate(profile: PlatformProfile, facts: QualificationFacts) -> list[RuleFailure]:
    """Every rule of ``profile`` that ``facts`` fail, in the profile's order.

    An empty list means the merchant qualifies.

    Raises:
        InvalidFactsError: a dated fact lies after ``facts.as_of``.
    """
    _check_facts(facts)
    failures = (evaluate_rule(rule, facts, profile.platform) for rule in profile.rules)
    return [failure for failure in failures if failure is not None]


def check_qualification(profile: PlatformProfile, facts: QualificationFacts) -> None:
    """Guard: refuse unless ``facts`` pass every rule of ``profile``.

    Raises:
        QualificationRejectedError: listing every failed rule.
        InvalidFactsError: a dated fact lies after ``facts.as_of``.
    """
    failures = evaluate(profile, facts)
    if failures:
        raise QualificationRejectedError(failures)
