"""Risk rules: traffic budgets per window, violations that warn then suspend."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain import risk
from domain.events import Context, project

NOW = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)  # 10:00 in China
KEY = {"channel_account": "acct-1", "platform": "wechat_shop", "shop_id": "wx-1"}
CAP = risk.traffic_budget("wechat_shop", risk.DAILY_DIVERSION_CAP, per_day=500)


def _ctx(now: datetime = NOW) -> Context:
    counter = itertools.count(1)
    return Context(now=now, new_id=lambda: uuid.UUID(int=next(counter)))


def _divert(state: Any, ref: str, budget: risk.TrafficBudget, now: datetime) -> Any:
    command = risk.RecordDiversion(**KEY, reference=ref)
    events = risk.decide_diversion(state, command, _ctx(now), budget)
    return project(risk.mutate, state, events), events


def test_the_501st_diversion_of_the_day_is_refused_naming_the_rule_and_count() -> None:
    state = None
    for number in range(500):
        state, _ = _divert(state, f"r{number}", CAP, NOW)
    assert state.count == 500
    with pytest.raises(risk.TrafficLimitExceededError) as refused:
        _divert(state, "r500", CAP, NOW)
    message = str(refused.value)
    assert "diversion 501 refused" in message
    assert "500 of 500 used in 2026-11-30" in message
    assert "daily_diversion_cap 500/day" in message


def test_a_repeated_diversion_counts_once_and_a_new_day_starts_afresh() -> None:
    small = risk.traffic_budget("wechat_shop", risk.DAILY_DIVERSION_CAP, per_day=1)
    state, _ = _divert(None, "r1", small, NOW)
    state, again = _divert(state, "r1", small, NOW)
    assert again == [] and state.count == 1
    # 16:00 UTC is midnight in China: the next day's budget.
    state, events = _divert(state, "r2", small, NOW + timedelta(hours=14))
    assert (events[0].window, events[0].count) == ("2026-12-01", 1)


def test_tiered_packages_and_dynamic_bandwidth_are_budgets_of_their_own() -> None:
    tiered = risk.traffic_budget(
        "douyin_shop",
        risk.TIERED_TRAFFIC_PACKAGES,
        tiers={"basic": 2, "plus": 5},
        tier="basic",
    )
    assert (tiered.limit, tiered.window) == (2, "day")
    hourly = risk.traffic_budget("kuaishou_shop", risk.DYNAMIC_BANDWIDTH, per_hour=1)
    state, _ = _divert(None, "a", hourly, NOW)
    with pytest.raises(risk.TrafficLimitExceededError, match="2026-11-30T10"):
        _divert(state, "b", hourly, NOW + timedelta(minutes=30))
    _, events = _divert(state, "b", hourly, NOW + timedelta(hours=1))
    assert events[0].window == "2026-11-30T11"
    with pytest.raises(risk.RiskPolicyError, match="tier 'gold'"):
        risk.traffic_budget(
            "douyin_shop", risk.TIERED_TRAFFIC_PACKAGES, tiers={"a": 1}, tier="gold"
        )
    with pytest.raises(risk.RiskPolicyError, match="needs per_hour"):
        risk.traffic_budget("kuaishou_shop", risk.DYNAMIC_BANDWIDTH)


def _report(
    state: Any,
    ref: str,
    *,
    now: datetime = NOW,
    outcome: risk.Outcome = "violation",
    rule: risk.ViolationRule | None = None,
) -> tuple[Any, list[Any]]:
    command = risk.ReportViolation(
        **KEY,
        signal="user_report",
        reference=ref,
        evidence=f"report {ref}: counterfeit goods",
        outcome=outcome,
    )
    events = risk.decide_violation(
        state, command, _ctx(now), rule or risk.ViolationRule()
    )
    return project(risk.mutate, state, events), events


def test_three_reports_warn_twice_then_call_for_suspension_with_evidence() -> None:
    state, first = _report(None, "u1")
    assert [type(e).__name__ for e in first] == ["ViolationRecorded", "BindingWarned"]
    state, _ = _report(state, "u2")
    state, third = _report(state, "u3")
    due = third[-1]
    assert isinstance(due, risk.BindingSuspensionDue)
    assert due.count == 3 and "suspend at 3 within 30 days" in due.rule
    assert [e.split(":")[0] for e in due.evidence] == ["u1", "u2", "u3"]
    reason = risk.suspension_reason(due)
    assert "3 violations" in reason and "counterfeit goods" in reason


def test_cleared_and_old_violations_and_clean_outcomes_do_not_count() -> None:
    state, _ = _report(None, "u1", now=NOW - timedelta(days=40))
    state, _ = _report(state, "u2", outcome="no_violation")
    state, again = _report(state, "u2")
    assert again == []  # the same reference is recorded once
    state, events = _report(state, "u3")
    assert events[0].count == 1
    state, _ = _report(state, "u4")
    cleared = risk.decide_violation(
        state,
        risk.ClearViolations(**KEY, reason="appeal upheld"),
        _ctx(),
        risk.ViolationRule(),
    )
    state = project(risk.mutate, state, cleared)
    _, events = _report(state, "u5")
    assert events[0].count == 1
    assert not any(isinstance(e, risk.BindingSuspensionDue) for e in events)
