"""Loading the platform policy book and showing a profile to people.

The book is data (``hub/policies.json`` by default): it is read and checked
once, at start, and a bad book stops the hub with an error naming the field.
Its ``sync`` sections are the runtime's only sync policies
(:func:`sync_policies`): the composition root hands them to the sync
schedule, the webhooks, the outbound dispatcher and every shop's client.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from domain.policy import (
    AtLeastRule,
    CategoryRule,
    NoneWithinDaysRule,
    PlatformProfile,
    PolicyBook,
    PolicyBookError,
    QualificationRule,
    SyncPolicy,
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
        book = decode_policy_book(data)
        _check_timezones(book)
    except PolicyBookError as exc:
        raise PolicyBookError(f"{source}: {exc}") from None
    return book


def _check_timezones(book: PolicyBook) -> None:
    """Refuse a calibration time zone this machine does not know."""
    for key, sync in sync_policies(book).items():
        try:
            ZoneInfo(sync.stock.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise PolicyBookError(
                f"$.profiles.{key}.sync.stock.timezone {sync.stock.timezone!r} is "
                "not a known IANA time zone"
            ) from None


def sync_policies(book: PolicyBook) -> Mapping[str, SyncPolicy]:
    """The sync policy of every platform whose profile gives one, by code."""
    return {
        code: profile.sync
        for code, profile in book.profiles.items()
        if profile.sync is not None
    }


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


def _orders(sync: SyncPolicy | None) -> str:
    if sync is None:
        return "(not given)"
    orders = sync.orders
    parts = [_words(orders.mode)]
    if orders.poll_interval_s is not None:
        every = "fallback poll" if orders.mode == "push" else "poll"
        parts.append(f"{every} every {orders.poll_interval_s} s")
    if orders.poll_delay_s:
        parts.append(f"orders at least {orders.poll_delay_s} s old")
    return ", ".join(parts)


def _stock(sync: SyncPolicy | None) -> str:
    if sync is None:
        return "(not given)"
    stock = sync.stock
    if not stock.calibration_times:
        return _words(stock.mode)
    times = ", ".join(stock.calibration_times)
    return f"{_words(stock.mode)} at {times} ({stock.timezone})"


def _limits(sync: SyncPolicy | None) -> list[str]:
    if sync is None:
        return []
    limit = sync.rate_limit
    retry = sync.retry
    resend = (
        ""
        if retry.resend_slow_after_s is None
        else f", resend after {retry.resend_slow_after_s:g} s"
        + (" (writes too)" if retry.resend_slow_writes else "")
    )
    return [
        f"    rate limit:         {limit.rate_per_s:g}/s per shop, burst {limit.burst}",
        f"    retry:              {retry.max_attempts} attempts, backoff "
        f"{retry.base_delay_s:g}-{retry.max_delay_s:g} s (x{retry.multiplier:g}), "
        f"at least {retry.rate_limited_min_delay_s:g} s after a rate limit{resend}",
    ]


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
    lines.append(f"    orders:             {_orders(sync)}")
    lines.append(f"    stock:              {_stock(sync)}")
    lines.extend(_limits(sync))
    user_profile = None if sync is None else sync.user_profile
    shown = "(not given)" if user_profile is None else _words(user_profile.mode)
    lines.append(f"    user profile:       {shown}")
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
