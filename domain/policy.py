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
from domain.settlement import SettlementPolicy, check_settlement

#: Policy book schema versions this code reads.
SUPPORTED_SCHEMA_VERSIONS = frozenset({1})

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


class SyncRule(PolicyData, frozen=True, kw_only=True):
    """How one kind of data is synchronised; the parameters its ``mode`` needs."""

    mode: Code
    every_seconds: PositiveInt | None = None
    delay_minutes: PositiveInt | None = None
    times_per_day: PositiveInt | None = None


class SyncPolicy(PolicyData, frozen=True, kw_only=True):
    """The platform's data synchronisation modes (docs/domain.md §4)."""

    orders: SyncRule | None = None
    stock: SyncRule | None = None
    user_profile: SyncRule | None = None


class TrafficLimit(PolicyData, frozen=True, kw_only=True):
    """How the platform limits traffic diverted from the channel."""

    mode: Code
    per_day: PositiveInt | None = None


class RiskControls(PolicyData, frozen=True, kw_only=True):
    """The platform's risk controls (docs/domain.md §7)."""

    data_protection: Code | None = None
    violation_monitoring: Code | None = None
    traffic_limit: TrafficLimit | None = None


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
