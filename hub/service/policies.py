"""Loading the platform policy book and showing a profile to people.

The book is data (``hub/policies.json`` by default): it is read and checked
once, at start, and a bad book stops the hub with an error naming the field.
"""

from __future__ import annotations

from pathlib import Path

from domain.policy import (
    AtLeastRule,
    CategoryRule,
    NoneWithinDaysRule,
    PlatformProfile,
    PolicyBook,
    PolicyBookError,
    QualificationRule,
    SyncRule,
    WithinDaysRule,
    decode_policy_book,
)

#: The policy book shipped with the hub.
BUNDLED_POLICIES = Path(__file__).parent.parent / "policies.json"


def load_policy_book(path: Path | None = None) -> PolicyBook:
    """Read and check the policy book at ``path`` (the bundled one by default).

    Raises:
        OSError: the file cannot be read.
        domain.policy.PolicyBookError: the data breaks a rule; the message
            names the file, the field and the rule.
    """
    source = BUNDLED_POLICIES if path is None else path
    data = source.read_bytes()
    try:
        return decode_policy_book(data)
    except PolicyBookError as exc:
        raise PolicyBookError(f"{source}: {exc}") from None


def _words(code: str) -> str:
    return code.replace("_", " ")


def _list(codes: tuple[str, ...]) -> str:
    return ", ".join(_words(code) for code in codes) if codes else "(none)"


def _event(metric: str) -> str:
    # ``last_violation_on`` → "violation"
    return _words(metric.removeprefix("last_").removesuffix("_on"))


def describe_rule(rule: QualificationRule) -> str:
    """One line saying what ``rule`` demands."""
    if isinstance(rule, AtLeastRule):
        text = f"{_words(rule.metric)} >= {rule.threshold:,}"
    elif isinstance(rule, NoneWithinDaysRule):
        text = f"no {_event(rule.metric)} in the last {rule.days} days"
    elif isinstance(rule, WithinDaysRule):
        text = f"a {_event(rule.metric)} in the last {rule.days} days"
    else:
        assert isinstance(rule, CategoryRule)
        needed = " or ".join(_words(code) for code in rule.any_of)
        text = f"category {_words(rule.category)} needs {needed}"
    return f"{text}  [{rule.note}]" if rule.note else text


def _sync(rule: SyncRule | None) -> str:
    if rule is None:
        return "(not given)"
    parts = [_words(rule.mode)]
    if rule.every_seconds is not None:
        parts.append(f"every {rule.every_seconds} s")
    if rule.delay_minutes is not None:
        parts.append(f"by {rule.delay_minutes} min")
    if rule.times_per_day is not None:
        parts.append(f"{rule.times_per_day} times a day")
    return ", ".join(parts)


def _review(profile: PlatformProfile) -> str:
    review = profile.review
    if review is None:
        return "(not given)"
    if review.is_instant:
        return "instant"
    return f"{review.min_working_days}-{review.max_working_days} working days"


def format_profile(profile: PlatformProfile) -> str:
    """``profile`` as text for ``hub policies show PLATFORM``: every field."""
    route = profile.binding_route
    sync = profile.sync
    risk = profile.risk
    traffic = None if risk is None else risk.traffic_limit
    lines = [
        f"{profile.platform}: {profile.display_name}",
        f"  materials:            {_list(profile.materials)}",
        f"  review time:          {_review(profile)}",
        f"  special requirements: {_list(profile.special_requirements)}",
    ]
    if route is None:
        lines.append("  binding route:        (not given: cannot be bound)")
    else:
        lines.append(f"  binding route:        {_words(route.kind)}")
        if route.path:
            lines.append(f"    path:               {route.path}")
        if route.interface:
            lines.append(f"    interface:          {route.interface}")
    scope = profile.data_scope
    lines.append(f"  data scope:           {_words(scope) if scope else '(not given)'}")
    lines.append("  qualification rules:")
    lines.extend(f"    - {describe_rule(rule)}" for rule in profile.rules)
    if not profile.rules:
        lines.append("    (none)")
    lines.append("  sync:")
    lines.append(
        f"    orders:             {_sync(None if sync is None else sync.orders)}"
    )
    lines.append(
        f"    stock:              {_sync(None if sync is None else sync.stock)}"
    )
    user_profile = None if sync is None else sync.user_profile
    lines.append(f"    user profile:       {_sync(user_profile)}")
    protection = None if risk is None else risk.data_protection
    monitoring = None if risk is None else risk.violation_monitoring
    lines.append("  risk controls:")
    lines.append(
        f"    data protection:    {_words(protection) if protection else '(not given)'}"
    )
    lines.append(
        f"    violation review:   {_words(monitoring) if monitoring else '(not given)'}"
    )
    if traffic is None:
        lines.append("    traffic limit:      (not given)")
    else:
        per_day = f", {traffic.per_day} a day" if traffic.per_day is not None else ""
        lines.append(f"    traffic limit:      {_words(traffic.mode)}{per_day}")
    if profile.notes:
        lines.append("  notes:")
        lines.extend(f"    - {note}" for note in profile.notes)
    return "\n".join(lines)
