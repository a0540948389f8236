"""The binding aggregate: one channel account bound to one shop on one platform.

Lifecycle (each step an event)::

    requested → subject verified → qualified (or qualification rejected)
      → special requirements met → authorised → active ⇄ suspended
    any → unbound (and an unbound binding may be requested again)

The platform's rules come from its policy profile, passed into :func:`decide`;
what a later step needs from the profile (review time, route, data scope,
pending requirements) is recorded in the events, so replaying a binding never
depends on today's policy book.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Collection
from datetime import date
from typing import Annotated, Any, ClassVar, Literal

import msgspec

from domain.calendar import HolidayCalendar, china_date, is_overdue, review_due_on
from domain.events import Context, DomainError, Event, State, derive_id, register
from domain.identity import (
    Subject,
    SubjectKind,
    SubjectMismatch,
    displayed_name,
    is_valid_subject_code,
    mask_identifier,
    normalise_code,
    subject_mismatches,
)
from domain.policy import Code, DataScope, PlatformCode, PlatformProfile
from domain.qualification import QualificationFacts, RuleFailure, evaluate

#: A channel (视频号) account id.
ChannelAccount = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
#: A shop's id on its platform.
ShopId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
#: Free text of a reason.
Reason = Annotated[str, msgspec.Meta(max_length=500)]

BindingStatus = Literal[
    "requested",
    "subject_verified",
    "qualification_rejected",
    "qualified",
    "requirements_met",
    "authorised",
    "active",
    "suspended",
    "unbound",
]
#: Kinds of data a connector pulls from a shop.
DataKind = Literal["orders", "users", "products", "stock"]
#: What a pull asks for: a kind of data, or ``sales``: the orders a shop sold,
#: taken in for what they take from stock (lines, quantities, amounts), their
#: buyers kept only where ``users`` may be pulled.
PullKind = Literal["orders", "users", "products", "stock", "sales"]

#: What "product information only" lets through: products and their stock.
PRODUCT_INFORMATION: frozenset[str] = frozenset({"products", "stock"})

#: Statuses in which the platform's review is still running.
UNDER_REVIEW: frozenset[str] = frozenset(
    {"requested", "subject_verified", "qualified", "requirements_met"}
)


def binding_id(channel_account: str, platform: str, shop_id: str) -> uuid.UUID:
    """The aggregate id of the binding of ``channel_account`` to a platform's shop.

    A repeated request computes the same id and so finds the same binding.
    """
    return derive_id("binding", channel_account, platform, shop_id)


# -- errors ---------------------------------------------------------------------


class IllegalTransitionError(DomainError):
    """A command does not apply to the binding's current status."""

    code = "illegal_transition"


class MissingMaterialsError(DomainError):
    """A binding request lacks materials the platform asks for."""

    code = "missing_materials"


class UnsupportedBindingError(DomainError):
    """The platform's profile lacks what a binding needs (e.g. a route)."""

    code = "unsupported_binding"


class InvalidSubjectCodeError(DomainError):
    """A subject's credit code or identity number fails its check."""

    code = "invalid_subject_code"


class UnknownRequirementError(DomainError):
    """A special requirement the binding does not have pending."""

    code = "unknown_requirement"


class InvalidMappingError(DomainError):
    """Mapped data given for a data scope that has no mapping."""

    code = "invalid_mapping"


class DataScopeError(DomainError):
    """A pull of data the binding's scope does not allow."""

    code = "data_scope"


class UnknownGrantError(DomainError):
    """An authorisation names a grant the hub did not obtain for the binding."""

    code = "unknown_grant"


class GrantRequiredError(DomainError):
    """An authorisation names no grant: only the hub's own route authorises."""

    code = "grant_required"


# -- commands -------------------------------------------------------------------


class RequestBinding(msgspec.Struct, frozen=True, kw_only=True):
    """Ask to bind ``channel_account`` to ``shop_id`` on ``platform``."""

    channel_account: ChannelAccount
    platform: PlatformCode
    shop_id: ShopId
    materials: tuple[Code, ...] = ()


class VerifySubject(msgspec.Struct, frozen=True, kw_only=True):
    """Compare the account's certified subject with the shop's licence."""

    channel_account: ChannelAccount
    platform: PlatformCode
    shop_id: ShopId
    account_subject: Subject
    licence_subject: Subject


class RecordQualification(msgspec.Struct, frozen=True, kw_only=True):
    """Record the measured facts; the platform's rules decide pass or reject."""

    channel_account: ChannelAccount
    platform: PlatformCode
    shop_id: ShopId
    facts: QualificationFacts


class MeetSpecialRequirement(msgspec.Struct, frozen=True, kw_only=True):
    """Record one special requirement as met (a deposit paid, a face verified)."""

    channel_account: ChannelAccount
    platform: PlatformCode
    shop_id: ShopId
    requirement: Code
    evidence: Reason = ""


class Authorise(msgspec.Struct, frozen=True, kw_only=True):
    """Record the platform's authorisation; ``mapped_data`` for custom mapping."""

    channel_account: ChannelAccount
    platform: PlatformCode
    shop_id: ShopId
    mapped_data: tuple[DataKind, ...] = ()
    #: Non-secret reference to the grant the route produced (e.g. a token
    #: fingerprint and expiry), so history shows what authorised the binding.
    #: Required (refused when empty): a binding is authorised only on a grant
    #: the hub itself obtained; the default lets the refusal name the rule.
    grant_ref: Annotated[str, msgspec.Meta(max_length=200)] = ""


class RecordGrant(msgspec.Struct, frozen=True, kw_only=True):
    """Record a grant the hub itself obtained by running the binding's route.

    Only the hub's own binding route sends this (it is not a public command):
    an :class:`Authorise` that names a grant must name one recorded here.
    """

    channel_account: ChannelAccount
    platform: PlatformCode
    shop_id: ShopId
    grant_ref: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class Activate(msgspec.Struct, frozen=True, kw_only=True):
    """Start working for an authorised binding."""

    channel_account: ChannelAccount
    platform: PlatformCode
    shop_id: ShopId


class Suspend(msgspec.Struct, frozen=True, kw_only=True):
    """Stop an active binding for ``reason`` (``cause`` for machines)."""

    channel_account: ChannelAccount
    platform: PlatformCode
    shop_id: ShopId
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    cause: Code = "other"


class Reinstate(msgspec.Struct, frozen=True, kw_only=True):
    """Make a suspended binding active again."""

    channel_account: ChannelAccount
    platform: PlatformCode
    shop_id: ShopId
    reason: Reason = ""


class Unbind(msgspec.Struct, frozen=True, kw_only=True):
    """End the binding, from any status."""

    channel_account: ChannelAccount
    platform: PlatformCode
    shop_id: ShopId
    reason: Reason = ""


BindingCommand = (
    RequestBinding
    | VerifySubject
    | RecordQualification
    | MeetSpecialRequirement
    | RecordGrant
    | Authorise
    | Activate
    | Suspend
    | Reinstate
    | Unbind
)

#: Commands each status accepts (RequestBinding on a live binding is a no-op).
ALLOWED_COMMANDS: dict[str, tuple[str, ...]] = {
    "none": ("RequestBinding",),
    "requested": ("VerifySubject", "Unbind"),
    "subject_verified": ("RecordQualification", "Unbind"),
    "qualification_rejected": ("RecordQualification", "Unbind"),
    "qualified": ("MeetSpecialRequirement", "Unbind"),
    "requirements_met": ("RecordGrant", "Authorise", "Unbind"),
    "authorised": ("Activate", "Unbind"),
    "active": ("Suspend", "Unbind"),
    "suspended": ("Reinstate", "Unbind"),
    "unbound": ("RequestBinding",),
}


# -- events ---------------------------------------------------------------------


@register
class BindingRequested(Event, frozen=True, kw_only=True):
    """A binding was asked for; what its later steps need is recorded here."""

    TOPIC: ClassVar[str] = "binding.BindingRequested"
    AGGREGATE: ClassVar[str] = "binding"

    channel_account: str
    platform: str
    shop_id: str
    requested_on: date
    materials: tuple[str, ...] = ()
    review_days_min: int | None = None
    review_days_max: int | None = None
    binding_route: str = ""
    data_scope: DataScope | None = None


@register
class SubjectVerified(Event, frozen=True, kw_only=True):
    """The account's certified subject matches the shop's licence."""

    TOPIC: ClassVar[str] = "binding.SubjectVerified"
    AGGREGATE: ClassVar[str] = "binding"

    platform: str
    subject_kind: SubjectKind
    #: Normalised; an individual's masked (:func:`domain.identity.displayed_name`).
    subject_name: str
    #: Masked: identity numbers are personal data.
    subject_code: str


@register
class SubjectMismatched(Event, frozen=True, kw_only=True):
    """The account's subject and the licence's differ; the binding waits."""

    TOPIC: ClassVar[str] = "binding.SubjectMismatched"
    AGGREGATE: ClassVar[str] = "binding"

    platform: str
    mismatches: tuple[SubjectMismatch, ...]


@register
class QualificationPassed(Event, frozen=True, kw_only=True):
    """Every qualification rule passed; ``pending_requirements`` remain."""

    TOPIC: ClassVar[str] = "binding.QualificationPassed"
    AGGREGATE: ClassVar[str] = "binding"

    platform: str
    as_of: date
    pending_requirements: tuple[str, ...] = ()


@register
class QualificationRejected(Event, frozen=True, kw_only=True):
    """One or more qualification rules failed; all of them are listed."""

    TOPIC: ClassVar[str] = "binding.QualificationRejected"
    AGGREGATE: ClassVar[str] = "binding"

    platform: str
    as_of: date
    failures: tuple[RuleFailure, ...]


@register
class SpecialRequirementMet(Event, frozen=True, kw_only=True):
    """One special requirement was met; ``remaining`` are still pending."""

    TOPIC: ClassVar[str] = "binding.SpecialRequirementMet"
    AGGREGATE: ClassVar[str] = "binding"

    platform: str
    requirement: str
    evidence: str = ""
    remaining: tuple[str, ...] = ()


@register
class GrantObtained(Event, frozen=True, kw_only=True):
    """The hub ran the binding's route and obtained this grant from the platform.

    ``grant_ref`` is non-secret (a token fingerprint and expiry); the token
    itself is in the hub's token store.
    """

    TOPIC: ClassVar[str] = "binding.GrantObtained"
    AGGREGATE: ClassVar[str] = "binding"

    platform: str
    binding_route: str
    grant_ref: str


@register
class BindingAuthorised(Event, frozen=True, kw_only=True):
    """The platform authorised the binding with this route and data scope."""

    TOPIC: ClassVar[str] = "binding.BindingAuthorised"
    AGGREGATE: ClassVar[str] = "binding"

    platform: str
    binding_route: str
    data_scope: DataScope | None = None
    mapped_data: tuple[DataKind, ...] = ()
    grant_ref: str = ""


@register
class BindingActivated(Event, frozen=True, kw_only=True):
    """The binding is working: data flows within its scope."""

    TOPIC: ClassVar[str] = "binding.BindingActivated"
    AGGREGATE: ClassVar[str] = "binding"

    platform: str


@register
class BindingSuspended(Event, frozen=True, kw_only=True):
    """The binding stopped for ``reason`` (credit fell, token revoked, ...)."""

    TOPIC: ClassVar[str] = "binding.BindingSuspended"
    AGGREGATE: ClassVar[str] = "binding"

    platform: str
    reason: str
    cause: str = "other"


@register
class BindingReinstated(Event, frozen=True, kw_only=True):
    """A suspended binding is active again."""

    TOPIC: ClassVar[str] = "binding.BindingReinstated"
    AGGREGATE: ClassVar[str] = "binding"

    platform: str
    reason: str = ""


@register
class BindingUnbound(Event, frozen=True, kw_only=True):
    """The binding ended; it was ``previous_status``."""

    TOPIC: ClassVar[str] = "binding.BindingUnbound"
    AGGREGATE: ClassVar[str] = "binding"

    platform: str
    previous_status: str
    reason: str = ""


BindingEvent = (
    BindingRequested
    | SubjectVerified
    | SubjectMismatched
    | QualificationPassed
    | QualificationRejected
    | SpecialRequirementMet
    | GrantObtained
    | BindingAuthorised
    | BindingActivated
    | BindingSuspended
    | BindingReinstated
    | BindingUnbound
)


# -- state ----------------------------------------------------------------------


class Binding(State, frozen=True, kw_only=True):
    """Current state of one binding."""

    channel_account: str
    platform: str
    shop_id: str
    status: BindingStatus
    requested_on: date
    review_days_max: int | None = None
    binding_route: str = ""
    data_scope: DataScope | None = None
    mapped_data: tuple[DataKind, ...] = ()
    pending_requirements: tuple[str, ...] = ()
    met_requirements: tuple[str, ...] = ()
    failures: tuple[RuleFailure, ...] = ()
    mismatches: tuple[SubjectMismatch, ...] = ()
    suspension_reason: str = ""
    #: The certified subject's kind, once verified (payout channels ask for it).
    subject_kind: SubjectKind | None = None
    #: Grants the hub obtained and no authorisation has used yet.
    grants: tuple[str, ...] = ()


# -- decide ---------------------------------------------------------------------


def _describe(command: BindingCommand) -> str:
    return f"{command.platform}/{command.shop_id} of {command.channel_account}"


def _check_transition(state: Binding | None, command: BindingCommand) -> None:
    status = "none" if state is None else state.status
    name = type(command).__name__
    allowed = ALLOWED_COMMANDS[status]
    if name not in allowed:
        raise IllegalTransitionError(
            f"cannot {name} binding {_describe(command)}: it is {status}; "
            f"allowed when {status}: {', '.join(allowed)}"
        )


def _id(command: BindingCommand) -> uuid.UUID:
    return binding_id(command.channel_account, command.platform, command.shop_id)


def _request(
    command: RequestBinding, profile: PlatformProfile, ctx: Context, version: int
) -> BindingRequested:
    if profile.binding_route is None:
        raise UnsupportedBindingError(
            f"platform {profile.platform} has no binding route in the policy book: "
            "it cannot be bound yet"
        )
    missing = [m for m in profile.materials if m not in command.materials]
    if missing:
        raise MissingMaterialsError(
            f"binding {_describe(command)} lacks {', '.join(missing)} "
            f"({profile.platform} needs {', '.join(profile.materials)})"
        )
    review = profile.review
    return BindingRequested(
        **ctx.meta(_id(command), version),
        channel_account=command.channel_account,
        platform=command.platform,
        shop_id=command.shop_id,
        requested_on=china_date(ctx.now),
        materials=command.materials,
        review_days_min=None if review is None else review.min_working_days,
        review_days_max=None if review is None else review.max_working_days,
        binding_route=profile.binding_route.kind,
        data_scope=profile.data_scope,
    )


def _verify_subject(
    command: VerifySubject, today: date, meta: dict[str, Any]
) -> SubjectVerified | SubjectMismatched:
    for role, subject in (
        ("account", command.account_subject),
        ("licence", command.licence_subject),
    ):
        code = normalise_code(subject.code)
        if not is_valid_subject_code(subject.kind, code, today):
            rule = (
                "GB 32100-2015 unified social credit code"
                if subject.kind == "enterprise"
                else "GB 11643-1999 resident id or GB 32100-2015 credit code"
            )
            raise InvalidSubjectCodeError(
                f"{role} code {mask_identifier(code)} of a {subject.kind} subject "
                f"is not a valid {rule}"
            )
    mismatches = subject_mismatches(command.account_subject, command.licence_subject)
    if mismatches:
        return SubjectMismatched(
            **meta, platform=command.platform, mismatches=tuple(mismatches)
        )
    licence = command.licence_subject
    return SubjectVerified(
        **meta,
        platform=command.platform,
        subject_kind=licence.kind,
        subject_name=displayed_name(licence),
        subject_code=mask_identifier(normalise_code(licence.code)),
    )


def _record_qualification(
    command: RecordQualification, profile: PlatformProfile, meta: dict[str, Any]
) -> QualificationPassed | QualificationRejected:
    failures = evaluate(profile, command.facts)
    if failures:
        return QualificationRejected(
            **meta,
            platform=command.platform,
            as_of=command.facts.as_of,
            failures=tuple(failures),
        )
    return QualificationPassed(
        **meta,
        platform=command.platform,
        as_of=command.facts.as_of,
        pending_requirements=profile.special_requirements,
    )


def _meet_requirement(
    state: Binding, command: MeetSpecialRequirement, meta: dict[str, Any]
) -> SpecialRequirementMet:
    if command.requirement not in state.pending_requirements:
        pending = ", ".join(state.pending_requirements) or "none"
        raise UnknownRequirementError(
            f"requirement {command.requirement!r} is not pending for binding "
            f"{_describe(command)} (pending: {pending})"
        )
    remaining = tuple(r for r in state.pending_requirements if r != command.requirement)
    return SpecialRequirementMet(
        **meta,
        platform=command.platform,
        requirement=command.requirement,
        evidence=command.evidence,
        remaining=remaining,
    )


def _authorise(
    state: Binding, command: Authorise, meta: dict[str, Any]
) -> BindingAuthorised:
    if command.mapped_data and state.data_scope != "custom_mapping":
        raise InvalidMappingError(
            f"mapped_data {', '.join(command.mapped_data)} given, but binding "
            f"{_describe(command)} has scope {state.data_scope} "
            "(only custom_mapping takes mapped data)"
        )
    if not command.grant_ref:
        raise GrantRequiredError(
            f"grant_ref missing for binding {_describe(command)}: a binding is "
            "authorised only on a grant the hub obtained by running the "
            "binding's route (hub bindings connect)"
        )
    if command.grant_ref not in state.grants:
        raise UnknownGrantError(
            f"grant_ref {command.grant_ref!r} is not a grant the hub obtained for "
            f"binding {_describe(command)} (unused grants: "
            f"{', '.join(state.grants) or 'none'}); run the binding's route "
            "(hub bindings connect) to obtain one"
        )
    return BindingAuthorised(
        **meta,
        platform=command.platform,
        binding_route=state.binding_route,
        data_scope=state.data_scope,
        mapped_data=tuple(dict.fromkeys(command.mapped_data)),
        grant_ref=command.grant_ref,
    )


def _lifecycle(
    state: Binding,
    command: Activate | Suspend | Reinstate | Unbind,
    meta: dict[str, Any],
) -> Event:
    if isinstance(command, Activate):
        return BindingActivated(**meta, platform=command.platform)
    if isinstance(command, Suspend):
        return BindingSuspended(
            **meta,
            platform=command.platform,
            reason=command.reason,
            cause=command.cause,
        )
    if isinstance(command, Reinstate):
        return BindingReinstated(
            **meta, platform=command.platform, reason=command.reason
        )
    return BindingUnbound(
        **meta,
        platform=command.platform,
        previous_status=state.status,
        reason=command.reason,
    )


def _step(
    state: Binding,
    command: BindingCommand,
    profile: PlatformProfile,
    ctx: Context,
    version: int,
) -> Event:
    meta = ctx.meta(_id(command), version)
    if isinstance(command, VerifySubject):
        return _verify_subject(command, china_date(ctx.now), meta)
    if isinstance(command, RecordQualification):
        return _record_qualification(command, profile, meta)
    if isinstance(command, MeetSpecialRequirement):
        return _meet_requirement(state, command, meta)
    if isinstance(command, RecordGrant):
        return GrantObtained(
            **meta,
            platform=command.platform,
            binding_route=state.binding_route,
            grant_ref=command.grant_ref,
        )
    if isinstance(command, Authorise):
        return _authorise(state, command, meta)
    assert not isinstance(command, RequestBinding), "requests are decided apart"
    return _lifecycle(state, command, meta)


def decide(
    state: Binding | None,
    command: BindingCommand,
    ctx: Context,
    profile: PlatformProfile,
) -> list[Event]:
    """Check ``command`` against ``state`` and ``profile``; return the new events.

    ``profile`` is the policy profile of the command's platform. A repeated
    :class:`RequestBinding` of a live binding returns no events, and so does
    meeting a requirement already met.

    Raises:
        ValueError: ``profile`` is not the command's platform's (a wiring bug).
        IllegalTransitionError: the command does not apply to the status.
        UnsupportedBindingError: the profile has no binding route.
        MissingMaterialsError: the request lacks required materials.
        InvalidSubjectCodeError: a subject's code fails its check.
        UnknownRequirementError: a requirement that is not pending.
        InvalidMappingError: mapped data for a scope without mapping.
        InvalidFactsError: qualification facts dated after their as-of day.
        GrantRequiredError: an authorisation names no grant.
        UnknownGrantError: an authorisation names a grant the hub did not
            obtain for the binding, or one already used.
    """
    if command.platform != profile.platform:
        raise ValueError(
            f"profile of {profile.platform} given for a {command.platform} command"
        )
    version = 1 if state is None else state.version + 1
    if isinstance(command, RequestBinding):
        if state is not None and state.status != "unbound":
            return []
        return [_request(command, profile, ctx, version)]
    if (
        isinstance(command, MeetSpecialRequirement)
        and state is not None
        and state.status in ("qualified", "requirements_met")
        and command.requirement in state.met_requirements
    ):
        return []
    _check_transition(state, command)
    assert state is not None, "only RequestBinding applies to no binding"
    return [_step(state, command, profile, ctx, version)]


# -- mutate ---------------------------------------------------------------------


@functools.singledispatch
def mutate(event: Event, state: Binding | None) -> Binding | None:
    """Evolve ``state`` by ``event``."""
    raise TypeError(f"binding cannot apply {type(event).__name__}")


def _existing(state: Binding | None, event: Event) -> Binding:
    assert state is not None, f"{type(event).__name__} before BindingRequested"
    return state


@mutate.register
def _(event: BindingRequested, state: Binding | None) -> Binding:
    # A request after an unbind starts afresh; only the version carries on.
    return Binding(
        id=event.originator_id,
        version=event.originator_version,
        channel_account=event.channel_account,
        platform=event.platform,
        shop_id=event.shop_id,
        status="requested",
        requested_on=event.requested_on,
        review_days_max=event.review_days_max,
        binding_route=event.binding_route,
        data_scope=event.data_scope,
    )


@mutate.register
def _(event: SubjectVerified, state: Binding | None) -> Binding:
    return msgspec.structs.replace(
        _existing(state, event),
        version=event.originator_version,
        status="subject_verified",
        mismatches=(),
        subject_kind=event.subject_kind,
    )


@mutate.register
def _(event: SubjectMismatched, state: Binding | None) -> Binding:
    return msgspec.structs.replace(
        _existing(state, event),
        version=event.originator_version,
        mismatches=event.mismatches,
    )


@mutate.register
def _(event: QualificationPassed, state: Binding | None) -> Binding:
    pending = event.pending_requirements
    return msgspec.structs.replace(
        _existing(state, event),
        version=event.originator_version,
        status="qualified" if pending else "requirements_met",
        pending_requirements=pending,
        met_requirements=(),
        failures=(),
    )


@mutate.register
def _(event: QualificationRejected, state: Binding | None) -> Binding:
    return msgspec.structs.replace(
        _existing(state, event),
        version=event.originator_version,
        status="qualification_rejected",
        failures=event.failures,
    )


@mutate.register
def _(event: SpecialRequirementMet, state: Binding | None) -> Binding:
    current = _existing(state, event)
    return msgspec.structs.replace(
        current,
        version=event.originator_version,
        status="qualified" if event.remaining else "requirements_met",
        pending_requirements=event.remaining,
        met_requirements=(*current.met_requirements, event.requirement),
    )


@mutate.register
def _(event: GrantObtained, state: Binding | None) -> Binding:
    current = _existing(state, event)
    return msgspec.structs.replace(
        current,
        version=event.originator_version,
        grants=(*current.grants, event.grant_ref),
    )


@mutate.register
def _(event: BindingAuthorised, state: Binding | None) -> Binding:
    current = _existing(state, event)
    return msgspec.structs.replace(
        current,
        version=event.originator_version,
        status="authorised",
        binding_route=event.binding_route,
        data_scope=event.data_scope,
        mapped_data=event.mapped_data,
        # A grant authorises once; the others it leaves are no longer needed.
        grants=(),
    )


@mutate.register
def _(event: BindingActivated, state: Binding | None) -> Binding:
    return msgspec.structs.replace(
        _existing(state, event), version=event.originator_version, status="active"
    )


@mutate.register
def _(event: BindingSuspended, state: Binding | None) -> Binding:
    return msgspec.structs.replace(
        _existing(state, event),
        version=event.originator_version,
        status="suspended",
        suspension_reason=event.reason,
    )


@mutate.register
def _(event: BindingReinstated, state: Binding | None) -> Binding:
    return msgspec.structs.replace(
        _existing(state, event),
        version=event.originator_version,
        status="active",
        suspension_reason="",
    )


@mutate.register
def _(event: BindingUnbound, state: Binding | None) -> Binding:
    return msgspec.structs.replace(
        _existing(state, event), version=event.originator_version, status="unbound"
    )


# -- data scope -----------------------------------------------------------------


def can_pull(
    scope: DataScope | None, data_kind: PullKind, mapped_data: Collection[str] = ()
) -> bool:
    """Whether a binding of ``scope`` lets the hub pull ``data_kind``.

    Full scope allows everything; "product information only" allows products
    and their stock, never orders or users; custom mapping allows the kinds its
    mapping rules cover (``mapped_data``); an unknown scope allows nothing.
    Sales are allowed wherever orders, products or stock are: every sale on a
    bound shop must reach the hub's stock, whatever else its scope withholds.
    """
    if data_kind == "sales":
        return any(
            can_pull(scope, kind, mapped_data)
            for kind in ("orders", "products", "stock")
        )
    if scope == "orders_and_users_full":
        return True
    if scope == "product_information_only":
        return data_kind in PRODUCT_INFORMATION
    if scope == "custom_mapping":
        return data_kind in mapped_data
    return False


def check_data_scope(binding: Binding, data_kind: PullKind) -> None:
    """Guard for connectors: refuse a pull the binding does not allow.

    Raises:
        DataScopeError: the binding is not active, or its scope excludes
            ``data_kind``.
    """
    where = f"{binding.platform}/{binding.shop_id} of {binding.channel_account}"
    if binding.status != "active":
        raise DataScopeError(
            f"cannot pull {data_kind} for binding {where}: it is {binding.status} "
            "(data flows only while active)"
        )
    if not can_pull(binding.data_scope, data_kind, binding.mapped_data):
        mapped = (
            f" mapping {', '.join(binding.mapped_data) or 'nothing'}"
            if binding.data_scope == "custom_mapping"
            else ""
        )
        raise DataScopeError(
            f"cannot pull {data_kind} for binding {where}: its data scope is "
            f"{binding.data_scope}{mapped}"
        )


# -- review deadline ------------------------------------------------------------


def review_due(binding: Binding, calendar: HolidayCalendar) -> date | None:
    """The day the platform's review is due, or None if its time is unknown."""
    if binding.review_days_max is None:
        return None
    return review_due_on(binding.requested_on, binding.review_days_max, calendar)


def review_overdue(binding: Binding, today: date, calendar: HolidayCalendar) -> bool:
    """Whether the binding is still under review after its review time ran out."""
    if binding.status not in UNDER_REVIEW or binding.review_days_max is None:
        return False
    return is_overdue(binding.requested_on, binding.review_days_max, today, calendar)
