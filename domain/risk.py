"""Risk control per binding: traffic budgets and violation signals, from the book.

Two aggregates per binding, both keyed by the binding's key:

* **Traffic** counts *diversions*: one buyer sent from the channel (a live
  room's or a short video's product card) to the bound shop's product page,
  reported once with its own reference (a repeated reference counts once).
  The platform's budget (:class:`TrafficBudget`) caps them per window: WeChat
  Shop's daily diversion cap (500 a day), Douyin's tiered traffic packages (the
  daily size of the package tier bought) and Kuaishou's dynamic bandwidth (an
  hourly budget the merchant may raise or lower). Windows are calendar days or
  hours in China time (UTC+8). The diversion past the budget is refused with
  :class:`TrafficLimitExceededError`, naming the rule and the count.
* **Violations** records violation signals (automated content review results,
  manual review outcomes, user reports). Under the platform's
  :class:`ViolationRule`, a counted violation within ``window_days`` first
  warns (:class:`BindingWarned`), and the one that reaches ``suspend_at`` calls
  for the binding's suspension (:class:`BindingSuspensionDue`, with the rule
  and the evidence; the hub then suspends the binding). The way back is
  :class:`ClearViolations` (after the merchant's appeal or a fix), then
  reinstating the binding.
"""

from __future__ import annotations

import functools
import uuid
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, ClassVar, Literal

import msgspec

from domain.events import (
    Context,
    DomainError,
    Event,
    State,
    advanced,
    derive_id,
    register,
)

#: China time: the platforms' days and hours.
CHINA = timezone(timedelta(hours=8))

DAILY_DIVERSION_CAP = "daily_diversion_cap"
TIERED_TRAFFIC_PACKAGES = "tiered_traffic_packages"
DYNAMIC_BANDWIDTH = "dynamic_bandwidth"

Window = Literal["day", "hour"]
Signal = Literal["content_review", "manual_review", "user_report"]
Outcome = Literal["violation", "no_violation"]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
Key = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class RiskPolicyError(ValueError):
    """The book's risk section cannot give a budget or a rule (names the field)."""


class TrafficLimitExceededError(DomainError):
    """A diversion past the binding's traffic budget."""

    code = "traffic_limit_exceeded"


class UnknownViolationRuleError(DomainError):
    """A violation was reported for a platform whose book has no violation rule."""

    code = "no_violation_rule"


# -- policy -------------------------------------------------------------------------


class TrafficBudget(msgspec.Struct, frozen=True, kw_only=True):
    """How many diversions a binding may make per window, and under which rule."""

    rule: str
    limit: Annotated[int, msgspec.Meta(ge=0)]
    window: Window = "day"


class ViolationRule(msgspec.Struct, frozen=True, kw_only=True):
    """When violation signals warn and when they suspend a binding.

    Attributes:
        warn_at: Counted violations (within the window) from which each one warns.
        suspend_at: The counted violation that suspends the binding.
        window_days: How far back violations count.
        signals: The signals that count (others are recorded only).
    """

    warn_at: Annotated[int, msgspec.Meta(ge=1)] = 1
    suspend_at: Annotated[int, msgspec.Meta(ge=1)] = 3
    window_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = 30
    signals: tuple[Signal, ...] = ("content_review", "manual_review", "user_report")


def traffic_budget(
    platform: str,
    mode: str,
    *,
    per_day: int | None = None,
    per_hour: int | None = None,
    tiers: dict[str, int] | None = None,
    tier: str | None = None,
) -> TrafficBudget:
    """The budget a platform's ``risk.traffic_limit`` describes.

    Raises:
        RiskPolicyError: the mode is unknown or lacks the number it needs.
    """
    where = f"{platform} risk.traffic_limit"
    if mode == DAILY_DIVERSION_CAP:
        if per_day is None:
            raise RiskPolicyError(f"{where}: {mode} needs per_day")
        return TrafficBudget(rule=f"{platform} {mode} {per_day}/day", limit=per_day)
    if mode == TIERED_TRAFFIC_PACKAGES:
        if not tiers or tier not in tiers:
            raise RiskPolicyError(
                f"{where}: {mode} needs tiers and a tier among them "
                f"(tier {tier!r}, tiers {sorted(tiers or {})})"
            )
        return TrafficBudget(
            rule=f"{platform} {mode} {tier} {tiers[tier]}/day", limit=tiers[tier]
        )
    if mode == DYNAMIC_BANDWIDTH:
        if per_hour is None:
            raise RiskPolicyError(f"{where}: {mode} needs per_hour")
        return TrafficBudget(
            rule=f"{platform} {mode} {per_hour}/hour", limit=per_hour, window="hour"
        )
    raise RiskPolicyError(
        f"{where}: mode {mode!r} is not one of "
        f"{DAILY_DIVERSION_CAP}, {TIERED_TRAFFIC_PACKAGES}, {DYNAMIC_BANDWIDTH}"
    )


def window_of(at: datetime, window: Window) -> str:
    """The window ``at`` falls in, in China time: ``2026-11-30`` or ``…T14``."""
    local = at.astimezone(CHINA)
    return (
        local.strftime("%Y-%m-%d") if window == "day" else local.strftime("%Y-%m-%dT%H")
    )


# -- commands -----------------------------------------------------------------------


class BindingKey(msgspec.Struct, frozen=True, kw_only=True):
    """Names the binding a risk command is about."""

    channel_account: Key
    platform: Key
    shop_id: Key


class RecordDiversion(BindingKey, frozen=True, kw_only=True):
    """Count one diversion from the channel to the bound shop (once per reference)."""

    reference: Key


class ReportViolation(BindingKey, frozen=True, kw_only=True):
    """A violation signal about the binding's content or shop, with its evidence."""

    signal: Signal
    reference: Key
    evidence: Text
    outcome: Outcome = "violation"


class ClearViolations(BindingKey, frozen=True, kw_only=True):
    """Start counting afresh (the way back before reinstating a suspended binding)."""

    reason: Text


def risk_id(kind: str, command: BindingKey) -> uuid.UUID:
    """The id of a binding's ``traffic`` or ``violations`` aggregate."""
    return derive_id(kind, command.channel_account, command.platform, command.shop_id)


# -- events -------------------------------------------------------------------------


@register
class TrafficDiverted(Event, frozen=True, kw_only=True):
    """A diversion counted: ``count`` of ``limit`` in ``window``."""

    TOPIC: ClassVar[str] = "risk.TrafficDiverted"
    AGGREGATE: ClassVar[str] = "risk"

    platform: str
    reference: str
    window: str
    count: int
    limit: int
    rule: str


@register
class ViolationRecorded(Event, frozen=True, kw_only=True):
    """A violation signal; ``count`` violations count within the rule's window."""

    TOPIC: ClassVar[str] = "risk.ViolationRecorded"
    AGGREGATE: ClassVar[str] = "risk"

    platform: str
    signal: str
    reference: str
    evidence: str
    outcome: str
    counted: bool
    count: int
    rule: str


@register
class BindingWarned(Event, frozen=True, kw_only=True):
    """The binding is warned: ``count`` violations, suspended at ``suspend_at``."""

    TOPIC: ClassVar[str] = "risk.BindingWarned"
    AGGREGATE: ClassVar[str] = "risk"

    platform: str
    count: int
    suspend_at: int
    rule: str


@register
class BindingSuspensionDue(Event, frozen=True, kw_only=True):
    """The rule calls for suspending the binding; ``evidence`` lists the signals."""

    TOPIC: ClassVar[str] = "risk.BindingSuspensionDue"
    AGGREGATE: ClassVar[str] = "risk"

    platform: str
    channel_account: str
    shop_id: str
    count: int
    rule: str
    evidence: tuple[str, ...]


@register
class ViolationsCleared(Event, frozen=True, kw_only=True):
    """Violations counted so far no longer count (``reason`` says why)."""

    TOPIC: ClassVar[str] = "risk.ViolationsCleared"
    AGGREGATE: ClassVar[str] = "risk"

    platform: str
    reason: str
    cleared: int


# -- states -------------------------------------------------------------------------


class Traffic(State, frozen=True, kw_only=True):
    """A binding's diversions in its current window."""

    window: str = ""
    count: int = 0
    references: frozenset[str] = frozenset()


class Violations(State, frozen=True, kw_only=True):
    """A binding's counted violations: (day, reference, evidence) each."""

    counted: tuple[tuple[str, str, str], ...] = ()
    references: frozenset[str] = frozenset()


def _rule_text(platform: str, rule: ViolationRule) -> str:
    return (
        f"{platform} violations: warn from {rule.warn_at}, suspend at "
        f"{rule.suspend_at} within {rule.window_days} days"
    )


def decide_diversion(
    state: Traffic | None,
    command: RecordDiversion,
    ctx: Context,
    budget: TrafficBudget,
) -> list[Event]:
    """Count a diversion, or refuse the one past the budget.

    Raises:
        TrafficLimitExceededError: the window's budget is spent (names the
            rule and the count).
    """
    window = window_of(ctx.now, budget.window)
    current = state if state is not None and state.window == window else None
    if current is not None and command.reference in current.references:
        return []
    used = current.count if current is not None else 0
    if used >= budget.limit:
        raise TrafficLimitExceededError(
            f"{command.platform}/{command.shop_id}: diversion {used + 1} refused, "
            f"{used} of {budget.limit} used in {window} (rule: {budget.rule})"
        )
    version = (state.version if state is not None else 0) + 1
    return [
        TrafficDiverted(
            **ctx.meta(risk_id("traffic", command), version),
            platform=command.platform,
            reference=command.reference,
            window=window,
            count=used + 1,
            limit=budget.limit,
            rule=budget.rule,
        )
    ]


def decide_violation(
    state: Violations | None,
    command: ReportViolation | ClearViolations,
    ctx: Context,
    rule: ViolationRule,
) -> list[Event]:
    """Record a signal (warn or call for suspension by ``rule``), or clear."""
    oid = risk_id("violations", command)
    version = state.version if state is not None else 0
    counted = state.counted if state is not None else ()
    if isinstance(command, ClearViolations):
        return [
            ViolationsCleared(
                **ctx.meta(oid, version + 1),
                platform=command.platform,
                reason=command.reason,
                cleared=len(counted),
            )
        ]
    if state is not None and command.reference in state.references:
        return []
    since = (ctx.now.astimezone(CHINA) - timedelta(days=rule.window_days)).date()
    recent = [c for c in counted if c[0] >= since.isoformat()]
    counts = command.outcome == "violation" and command.signal in rule.signals
    count = len(recent) + (1 if counts else 0)
    text = _rule_text(command.platform, rule)
    events: list[Event] = [
        ViolationRecorded(
            **ctx.meta(oid, version + 1),
            platform=command.platform,
            signal=command.signal,
            reference=command.reference,
            evidence=command.evidence,
            outcome=command.outcome,
            counted=counts,
            count=count,
            rule=text,
        )
    ]
    if not counts:
        return events
    if count >= rule.suspend_at:
        evidence = (
            *(f"{ref}: {what}" for _, ref, what in recent),
            f"{command.reference}: {command.evidence}",
        )
        events.append(
            BindingSuspensionDue(
                **ctx.meta(oid, version + 2),
                platform=command.platform,
                channel_account=command.channel_account,
                shop_id=command.shop_id,
                count=count,
                rule=text,
                evidence=evidence,
            )
        )
    elif count >= rule.warn_at:
        events.append(
            BindingWarned(
                **ctx.meta(oid, version + 2),
                platform=command.platform,
                count=count,
                suspend_at=rule.suspend_at,
                rule=text,
            )
        )
    return events


def suspension_reason(event: BindingSuspensionDue) -> str:
    """The binding's suspension reason: the rule, the count and the evidence."""
    reason = f"{event.rule}: {event.count} violations; evidence: " + "; ".join(
        event.evidence
    )
    return reason if len(reason) <= 500 else reason[:497] + "..."


@functools.singledispatch
def mutate(event: Event, state: Any) -> Any:
    """Evolve a traffic or violations state by one event."""
    raise TypeError(f"risk cannot apply {type(event).__name__}")


@mutate.register
def _(event: TrafficDiverted, state: Traffic | None) -> Traffic:
    same = state is not None and state.window == event.window
    references = state.references if state is not None and same else frozenset()
    return Traffic(
        id=event.originator_id,
        version=event.originator_version,
        window=event.window,
        count=event.count,
        references=references | {event.reference},
    )


@mutate.register
def _(event: ViolationRecorded, state: Violations | None) -> Violations:
    current = advanced(Violations, state, event)
    counted = current.counted
    if event.counted:
        day = event.occurred_at.astimezone(CHINA).date().isoformat()
        counted = (*counted, (day, event.reference, event.evidence))
    return msgspec.structs.replace(
        current,
        counted=counted,
        references=current.references | {event.reference},
    )


@mutate.register
def _(event: BindingWarned, state: Violations | None) -> Violations:
    return advanced(Violations, state, event)


@mutate.register
def _(event: BindingSuspensionDue, state: Violations | None) -> Violations:
    return advanced(Violations, state, event)


@mutate.register
def _(event: ViolationsCleared, state: Violations | None) -> Violations:
    return msgspec.structs.replace(advanced(Violations, state, event), counted=())
