"""Risk rules from the policy book: traffic budgets and violation signals.

``risk.divert`` counts a diversion against the binding's traffic budget (the
book's ``risk.traffic_limit`` of its platform); ``risk.report_violation``
records a violation signal under the book's ``risk.violations`` rule, and
``risk.clear_violations`` starts the count afresh. When a report reaches the
rule's suspension count, the same transaction suspends the binding
(:func:`suspension_reactor`), with the rule and the evidence as its reason;
the way back is ``risk.clear_violations`` and then ``binding.reinstate``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from domain import binding, risk
from domain.events import Context, Event
from domain.policy import PlatformProfile, PolicyBook


class RiskBookMissingError(RuntimeError):
    """Risk rules ran without a policy book (a wiring bug)."""


def traffic_budget_of(profile: PlatformProfile) -> risk.TrafficBudget:
    """The binding's traffic budget from its platform's ``risk.traffic_limit``.

    Raises:
        domain.risk.RiskPolicyError: no limit in the book, or one lacking the
            number its mode needs.
    """
    limit = profile.risk.traffic_limit if profile.risk is not None else None
    if limit is None:
        raise risk.RiskPolicyError(
            f"{profile.platform} risk.traffic_limit: the book gives none"
        )
    return risk.traffic_budget(
        profile.platform,
        limit.mode,
        per_day=limit.per_day,
        per_hour=limit.per_hour,
        tiers=dict(limit.tiers),
        tier=limit.tier,
    )


def violation_rule_of(profile: PlatformProfile) -> risk.ViolationRule:
    """The book's ``risk.violations`` of the platform (else the default rule)."""
    rule = profile.risk.violations if profile.risk is not None else None
    return rule if rule is not None else risk.ViolationRule()


class _BookRules:
    def __init__(self, book: PolicyBook | None = None) -> None:
        self.book = book

    def with_book(self, book: PolicyBook) -> Any:
        """The same rules, reading ``book``."""
        return type(self)(book)

    def _profile(self, platform: str) -> PlatformProfile:
        if self.book is None:
            raise RiskBookMissingError(
                "risk rules have no policy book: run commands through a hub built "
                "by hub.bootstrap.bootstrap"
            )
        return self.book.profile(platform)


class TrafficRules(_BookRules):
    """How the committer runs ``risk.divert``: against the platform's budget."""

    def aggregate_id(self, command: risk.RecordDiversion) -> uuid.UUID:
        """One traffic aggregate per binding."""
        return risk.risk_id("traffic", command)

    def decide(
        self, state: risk.Traffic | None, command: risk.RecordDiversion, ctx: Context
    ) -> list[Event]:
        """Delegate to :func:`domain.risk.decide_diversion` with the budget."""
        budget = traffic_budget_of(self._profile(command.platform))
        return risk.decide_diversion(state, command, ctx, budget)

    def mutate(self, event: Event, state: Any) -> Any:
        """Delegate to :func:`domain.risk.mutate`."""
        return risk.mutate(event, state)


class ViolationRules(_BookRules):
    """How the committer runs violation reports: under the platform's rule."""

    def aggregate_id(
        self, command: risk.ReportViolation | risk.ClearViolations
    ) -> uuid.UUID:
        """One violations aggregate per binding."""
        return risk.risk_id("violations", command)

    def decide(
        self,
        state: risk.Violations | None,
        command: risk.ReportViolation | risk.ClearViolations,
        ctx: Context,
    ) -> list[Event]:
        """Delegate to :func:`domain.risk.decide_violation` with the rule."""
        rule = violation_rule_of(self._profile(command.platform))
        return risk.decide_violation(state, command, ctx, rule)

    def mutate(self, event: Event, state: Any) -> Any:
        """Delegate to :func:`domain.risk.mutate`."""
        return risk.mutate(event, state)


TRAFFIC_RULES = TrafficRules()
VIOLATION_RULES = ViolationRules()


def suspension_reactor(binding_rules: Any) -> Any:
    """A committer reactor: a due suspension suspends the binding at once.

    Args:
        binding_rules: The hub's binding rules (reading its policy book).
    """

    def react(events: Sequence[Event]) -> list[tuple[Any, Any]]:
        return [
            (
                binding_rules,
                binding.Suspend(
                    channel_account=event.channel_account,
                    platform=event.platform,
                    shop_id=event.shop_id,
                    reason=risk.suspension_reason(event),
                    cause="violations",
                ),
            )
            for event in events
            if isinstance(event, risk.BindingSuspensionDue)
        ]

    return react
