"""Platform policy profiles: every per-platform rule of the hub, held as data.

A profile says what a platform asks for before it binds a shop to a channel
account: the materials, how long its review takes, its special requirements,
the binding route and the data permission it grants, its qualification rules,
its sync modes and its risk controls (docs/domain.md §1-4, §7). The profiles live in a
versioned policy book (``hub/policies.json``) that is decoded and checked once,
at start. A changed threshold or a new platform is a change of that data only;
the code reads rules by their ``kind`` and never by platform.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from domain.calendar import CalendarError, HolidayCalendar, check_calendar
from domain.events import DomainError
from domain.personal import PersonalField
from domain.risk import ViolationRule
from domain.settlement import SettlementPolicy, check_settlement

#: Policy book schema versions this code reads.
SUPPORTED_SCHEMA_VERSIONS = frozenset({2})

#: Platform codes: ``wechat_shop``, ``douyin_shop``, ... (lower snake case).
PlatformCode = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{1,31}$")]
#: Codes of materials, requirements, licences, modes, ... (lower snake case).
Code = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
#: Human-readable text in the book.
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
#: A count of days in a rule.
RuleDays = Annotated[int, msgspec.Meta(ge=1, le=3650)]
#: Review time in working days (0 = instant).
WorkingDays = Annotated[int, msgspec.Meta(ge=0, le=60)]
#: A positive parameter of a sync or risk setting.
PositiveInt = Annotated[int, msgspec.Meta(gt=0, le=1_000_000_000)]

#: What a binding lets the hub pull from the shop (docs/domain.md §2 数据权限).
DataScope = Literal[
    "orders_and_users_full", "product_information_only", "custom_mapping"
]
#: Numeric facts a rule can demand a minimum of (fields of ``QualificationFacts``).
NumericMetric = Literal["compliance_score", "followers"]
#: Dated facts a rule can look back at (fields of ``QualificationFacts``).
DateMetric = Literal["last_violation_on", "last_completed_sale_on"]


class PolicyBookError(ValueError):
    """The policy book data broke a rule; the message names the field and the rule."""


class UnknownPlatformError(DomainError):
    """A command named a platform that has no profile in the policy book."""

    code = "unknown_platform"


class PolicyData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of the book's structs: a misspelt field is an error, not ignored."""


# -- qualification rules ----------------------------------------------------------


class AtLeastRule(
    PolicyData, frozen=True, kw_only=True, tag_field="kind", tag="at_least"
):
    """``metric`` must be at least ``threshold`` (a compliance score, followers)."""

    metric: NumericMetric
    threshold: Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]
    note: str = ""


class NoneWithinDaysRule(
    PolicyData, frozen=True, kw_only=True, tag_field="kind", tag="none_within_days"
):
    """No ``metric`` event (e.g. a violation) in the last ``days`` days.

    The window is the ``days`` days before the as-of date and the as-of date
    itself: an event exactly ``days`` days ago still counts.
    """

    metric: DateMetric
    days: RuleDays
    note: str = ""


class WithinDaysRule(
    PolicyData, frozen=True, kw_only=True, tag_field="kind", tag="within_days"
):
    """A ``metric`` event (e.g. a completed sale) in the last ``days`` days.

    Same window as :class:`NoneWithinDaysRule`; no event on record fails.
    """

    metric: DateMetric
    days: RuleDays
    note: str = ""


class CategoryRule(
    PolicyData, frozen=True, kw_only=True, tag_field="kind", tag="category_requires"
):
    """Selling in ``category`` needs one of ``any_of`` (a licence or a connection).

    Only applies when the shop sells in ``category``.
    """

    category: Code
    any_of: Annotated[tuple[Code, ...], msgspec.Meta(min_length=1)]
    note: str = ""


QualificationRule = AtLeastRule | NoneWithinDaysRule | WithinDaysRule | CategoryRule


# -- profile parts ------------------------------------------------------------------


class ReviewTime(PolicyData, frozen=True, kw_only=True):
    """How long the platform's review takes, in working days (0 and 0: instant)."""

    min_working_days: WorkingDays
    max_working_days: WorkingDays

    @property
    def is_instant(self) -> bool:
        """Whether the platform decides at once (e.g. after face recognition)."""
        return self.max_working_days == 0


class BindingRoute(PolicyData, frozen=True, kw_only=True):
    """How the binding is made: ``kind`` names the route the connector drives."""

    kind: Code
    path: str = ""
    interface: str = ""


#: A time of day, ``HH:MM`` on a 24-hour clock.
ClockTime = Annotated[str, msgspec.Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
#: A whole number of seconds in a schedule (0 allowed where it means "none").
ScheduleSeconds = Annotated[int, msgspec.Meta(ge=0, le=7 * 24 * 3600)]
#: A wait in seconds (may be fractional).
DelaySeconds = Annotated[float, msgspec.Meta(ge=0, le=24 * 3600)]

#: How orders reach the hub: pushed by the platform (with an optional fallback
#: poll), polled, or pulled only when an operator asks.
OrderMode = Literal["push", "poll", "manual"]
#: How stock reaches the platform: pushed on every change (two-way or one-way
#: push) or calibrated at set times of day.
StockMode = Literal["two_way", "one_way_push", "scheduled_calibration"]


class OrderSync(PolicyData, frozen=True, kw_only=True):
    """How orders reach the hub from the platform.

    Attributes:
        mode: ``push`` (the webhooks take the platform's pushes), ``poll`` (the
            sync schedule pulls) or ``manual`` (only ``hub sync orders``).
        poll_interval_s: Seconds between scheduled polls: the schedule under
            ``poll``, the fallback for lost pushes under ``push`` (None: no
            fallback). Never given for ``manual``.
        poll_delay_s: A poll reads only orders at least this many seconds old.
    """

    mode: OrderMode
    poll_interval_s: Annotated[int, msgspec.Meta(ge=1, le=7 * 24 * 3600)] | None = None
    poll_delay_s: ScheduleSeconds = 0

    @property
    def push_enabled(self) -> bool:
        """Whether the platform's order pushes are taken in."""
        return self.mode == "push"


class StockSync(PolicyData, frozen=True, kw_only=True):
    """How stock moves between the hub and the platform.

    Attributes:
        mode: ``two_way`` and ``one_way_push``: the outbound dispatcher pushes
            every change; ``scheduled_calibration``: the sync schedule
            calibrates at ``calibration_times`` and nothing is pushed between.
        calibration_times: Local ``HH:MM`` times (in ``timezone``) of the
            calibrations; given exactly when the mode is scheduled.
        timezone: The IANA zone the calibration times are in.
    """

    mode: StockMode
    calibration_times: tuple[ClockTime, ...] = ()
    timezone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = (
        "Asia/Shanghai"
    )

    @property
    def pushed_on_change(self) -> bool:
        """Whether every stock change is pushed (not only calibrations)."""
        return self.mode != "scheduled_calibration"


class UserProfileSync(PolicyData, frozen=True, kw_only=True):
    """How the platform's buyers become profiles (``docs/privacy.md``).

    Attributes:
        mode: One of :data:`domain.personal.PROFILE_MODES`.
        fields: The personal fields kept (empty: the mode's default).
        merge: A custom mapping's profiles merge across platforms.
    """

    mode: Code
    fields: tuple[PersonalField, ...] = ()
    merge: bool = False


#: Which way product information (titles, prices, SKUs, images) flows between
#: the hub's product library and a platform's shops: ``hub_to_platform`` (the
#: hub's library is the truth; a platform's edit is refused and overwritten),
#: ``two_way`` (either side's later edit wins), ``platform_to_hub`` (the
#: platform's edits are taken in; nothing is pushed) or ``off``.
ProductDirection = Literal["hub_to_platform", "two_way", "platform_to_hub", "off"]


class ProductSync(PolicyData, frozen=True, kw_only=True):
    """How the product library is synchronised with the platform's shops.

    Attributes:
        direction: One of :data:`ProductDirection`.
    """

    direction: ProductDirection

    @property
    def pushes(self) -> bool:
        """Whether the hub's product changes are written to the platform."""
        return self.direction in {"hub_to_platform", "two_way"}

    @property
    def takes_in(self) -> bool:
        """Whether the platform's product edits may change the hub's library."""
        return self.direction in {"two_way", "platform_to_hub"}


class RateLimitPolicy(PolicyData, frozen=True, kw_only=True):
    """The hub's own token bucket per shop, set below the platform's caps.

    Attributes:
        rate_per_s: Calls a second each shop's client makes at most.
        burst: Calls a shop's client may make at once after a quiet spell.
    """

    rate_per_s: Annotated[float, msgspec.Meta(gt=0, le=100_000)]
    burst: Annotated[int, msgspec.Meta(ge=1, le=100_000)]


class RetryPolicy(PolicyData, frozen=True, kw_only=True):
    """Exponential backoff with full jitter for retryable failures.

    Attributes:
        max_attempts: HTTP attempts of one call (and rounds of a stock push
            between backoffs use the same delays).
        base_delay_s: The ceiling of the first backoff.
        max_delay_s: The largest backoff ceiling.
        multiplier: How the ceiling grows from one retry to the next.
        rate_limited_min_delay_s: The shortest wait after a rate-limit answer.
        resend_slow_after_s: A first attempt not answered after this long is
            abandoned and sent again at once (None: never); each attempt sent
            so is abandoned in turn after twice the wait of the one before
            (up to ``max_attempts`` in all). The client waits at least
            four times its recent median answer too
            (``connectors.transport.RESEND_OVER_MEDIAN``). Applies to reads; to writes
            only with ``resend_slow_writes``.
        resend_slow_writes: Resend slow writes too: only where the platform
            applies a request id once; elsewhere an abandoned write may have
            been applied.
    """

    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=100)]
    base_delay_s: DelaySeconds
    max_delay_s: DelaySeconds
    multiplier: Annotated[float, msgspec.Meta(ge=1, le=10)] = 2.0
    rate_limited_min_delay_s: DelaySeconds = 1.0
    resend_slow_after_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] | None = None
    resend_slow_writes: bool = False


class SyncPolicy(PolicyData, frozen=True, kw_only=True):
    """One platform's synchronisation policy: what the runtime obeys.

    The composition root hands it to the sync schedule (orders, stock
    calibrations), the webhooks (whether pushes are taken), the outbound
    dispatcher (stock mode, retry rounds) and each shop's client (rate limit,
    retries).
    """

    orders: OrderSync
    stock: StockSync
    rate_limit: RateLimitPolicy
    retry: RetryPolicy
    user_profile: UserProfileSync | None = None
    products: ProductSync | None = None


class TrafficLimit(PolicyData, frozen=True, kw_only=True):
    """How the platform limits traffic diverted from the channel."""

    mode: Code
    per_day: PositiveInt | None = None
    per_hour: PositiveInt | None = None
    tiers: dict[Code, PositiveInt] = {}
    tier: Code | None = None


class RiskControls(PolicyData, frozen=True, kw_only=True):
    """The platform's risk controls (docs/domain.md §7)."""

    data_protection: Code | None = None
    violation_monitoring: Code | None = None
    traffic_limit: TrafficLimit | None = None
    violations: ViolationRule | None = None


class PlatformProfile(PolicyData, frozen=True, kw_only=True):
    """Everything the hub knows about one platform's binding policy.

    A field left ``None`` (or empty) is a fact the source does not give; the
    hub refuses what it would need it for rather than guessing.

    Attributes:
        platform: The platform code; equal to the profile's key in the book.
        display_name: Name shown to people.
        materials: Materials the merchant submits with the request.
        review: Review time in working days.
        special_requirements: Steps to complete before authorisation.
        binding_route: How the binding is made.
        data_scope: What a binding lets the hub pull.
        rules: Qualification rules, all evaluated; after decoding, the book's
            common rules come first.
        sync: Data synchronisation modes.
        risk: Risk controls.
        notes: Where facts come from, and what is inferred.
    """

    platform: PlatformCode
    display_name: Text
    materials: tuple[Code, ...] = ()
    review: ReviewTime | None = None
    special_requirements: tuple[Code, ...] = ()
    binding_route: BindingRoute | None = None
    data_scope: DataScope | None = None
    rules: tuple[QualificationRule, ...] = ()
    sync: SyncPolicy | None = None
    risk: RiskControls | None = None
    notes: tuple[Text, ...] = ()


class PolicyBook(PolicyData, frozen=True, kw_only=True):
    """The versioned book of platform profiles, with the working-day calendar.

    Attributes:
        schema_version: Shape of this data (see ``SUPPORTED_SCHEMA_VERSIONS``).
        revision: Revision of the content; raised on every data change.
        common_rules: Rules every platform applies (category licences).
        profiles: Profiles by platform code.
        holiday_calendar: Holidays and make-up working days for review deadlines.
        settlement: Rates and payment channels of payouts (none: no payouts).
    """

    schema_version: Annotated[int, msgspec.Meta(ge=1)]
    revision: Annotated[int, msgspec.Meta(ge=1)]
    profiles: Annotated[dict[PlatformCode, PlatformProfile], msgspec.Meta(min_length=1)]
    common_rules: tuple[QualificationRule, ...] = ()
    holiday_calendar: HolidayCalendar = HolidayCalendar()
    settlement: SettlementPolicy | None = None

    def profile(self, platform: str) -> PlatformProfile:
        """The profile of ``platform``.

        Raises:
            UnknownPlatformError: the book has no such profile.
        """
        try:
            return self.profiles[platform]
        except KeyError:
            known = ", ".join(sorted(self.profiles))
            raise UnknownPlatformError(
                f"platform {platform!r} has no policy profile (known: {known})"
            ) from None


# -- decoding ---------------------------------------------------------------------


def _duplicates(values: tuple[str, ...]) -> list[str]:
    return sorted({value for value in values if values.count(value) > 1})


def _check_profile(key: str, profile: PlatformProfile) -> None:
    where = f"$.profiles.{key}"
    if profile.platform != key:
        raise PolicyBookError(
            f"{where}.platform {profile.platform!r} != its key {key!r} "
            "(a profile is filed under its own platform code)"
        )
    review = profile.review
    if review is not None and review.min_working_days > review.max_working_days:
        raise PolicyBookError(
            f"{where}.review: min_working_days {review.min_working_days} > "
            f"max_working_days {review.max_working_days} (min may not exceed max)"
        )
    for field in ("materials", "special_requirements"):
        repeated = _duplicates(getattr(profile, field))
        if repeated:
            raise PolicyBookError(
                f"{where}.{field} lists {', '.join(repeated)} more than once"
            )
    if profile.sync is not None:
        _check_sync(f"{where}.sync", profile.sync)


def _check_sync(where: str, sync: SyncPolicy) -> None:
    orders = sync.orders
    if orders.mode == "poll" and orders.poll_interval_s is None:
        raise PolicyBookError(
            f"{where}.orders.poll_interval_s is missing (mode 'poll' polls on it)"
        )
    if orders.mode == "manual" and orders.poll_interval_s is not None:
        raise PolicyBookError(
            f"{where}.orders.poll_interval_s {orders.poll_interval_s} is given for "
            "mode 'manual' (a manual platform is never polled on a schedule)"
        )
    stock = sync.stock
    if stock.mode == "scheduled_calibration" and not stock.calibration_times:
        raise PolicyBookError(
            f"{where}.stock.calibration_times is empty (mode "
            "'scheduled_calibration' calibrates at those times)"
        )
    if stock.mode != "scheduled_calibration" and stock.calibration_times:
        raise PolicyBookError(
            f"{where}.stock.calibration_times is given for mode {stock.mode!r} "
            "(only 'scheduled_calibration' calibrates on a schedule)"
        )
    repeated = _duplicates(stock.calibration_times)
    if repeated:
        raise PolicyBookError(
            f"{where}.stock.calibration_times lists {', '.join(repeated)} "
            "more than once"
        )
    retry = sync.retry
    if retry.base_delay_s > retry.max_delay_s:
        raise PolicyBookError(
            f"{where}.retry: base_delay_s {retry.base_delay_s} > max_delay_s "
            f"{retry.max_delay_s} (the first backoff may not exceed the largest)"
        )


class _ProfilesOnly(msgspec.Struct):
    profiles: dict[str, msgspec.Raw] = {}


def _profile_error(data: bytes) -> str | None:
    """The first profile's error with its full path.

    msgspec reports a path through a dict value as ``$.profiles[...]``; decoding
    each profile on its own recovers the key, so the message names the field.
    """
    try:
        raw = msgspec.json.decode(data, type=_ProfilesOnly)
    except msgspec.ValidationError:
        return None
    for key, profile in raw.profiles.items():
        try:
            msgspec.json.decode(profile, type=PlatformProfile)
        except msgspec.ValidationError as exc:
            where = f"$.profiles.{key}"
            text = str(exc)
            if "- at `$" in text:
                return text.replace("- at `$", f"- at `{where}", 1)
            return f"{text} - at `{where}`"
    return None


def decode_policy_book(data: bytes) -> PolicyBook:
    """Decode and check a policy book (JSON).

    The book's common rules are put in front of each profile's own rules, so
    ``book.profiles[p].rules`` is the full list a platform applies.

    Raises:
        PolicyBookError: the data is not JSON, a field breaks its type or
            constraint, or the parts contradict each other; the message names
            the field (as a ``$.`` path) and the rule.
    """
    try:
        book = msgspec.json.decode(data, type=PolicyBook)
    except msgspec.ValidationError as exc:
        detail = _profile_error(data) or str(exc)
        raise PolicyBookError(f"policy book is invalid: {detail}") from None
    except msgspec.DecodeError as exc:
        raise PolicyBookError(f"policy book is not valid JSON: {exc}") from None
    if book.schema_version not in SUPPORTED_SCHEMA_VERSIONS:
        supported = ", ".join(str(v) for v in sorted(SUPPORTED_SCHEMA_VERSIONS))
        raise PolicyBookError(
            f"$.schema_version {book.schema_version} is not supported "
            f"(supported: {supported})"
        )
    try:
        check_calendar(book.holiday_calendar)
    except CalendarError as exc:
        raise PolicyBookError(f"$.holiday_calendar: {exc}") from None
    for key, profile in book.profiles.items():
        _check_profile(key, profile)
    if book.settlement is not None:
        try:
            check_settlement(book.settlement)
        except ValueError as exc:
            raise PolicyBookError(f"$.settlement: {exc}") from None
    profiles = {
        key: msgspec.structs.replace(
            profile, rules=(*book.common_rules, *profile.rules)
        )
        for key, profile in book.profiles.items()
    }
    return msgspec.structs.replace(book, profiles=profiles)
