"""What the hub publishes on NATS: a contract, not the internal events.

Subscribers depend on these structs, never on ``domain`` classes. Each event
type has a public message struct here; :func:`to_message` translates, purely,
by copying the fields that the public struct declares. Internal refactors
therefore never break subscribers, and ``hub docs`` writes their JSON Schema.

Subjects of ``HUB_EVENTS``::

    hub.events.<aggregate>.<EventType>.<platform>

``<platform>`` is a platform code (``wechat_shop``, ``douyin_shop``, ...) or ``_``
when the event concerns no platform. Filter with wildcards, e.g.
``hub.events.stock.>`` (all stock events), ``hub.events.*.*.douyin_shop``
(everything about Douyin), ``hub.events.binding.BindingSuspended.*``.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

import msgspec

from domain.binding import (
    BindingActivated,
    BindingAuthorised,
    BindingReinstated,
    BindingRequested,
    BindingSuspended,
    BindingUnbound,
    QualificationPassed,
    QualificationRejected,
    SpecialRequirementMet,
    SubjectMismatched,
    SubjectVerified,
)
from domain.events import Event
from domain.stock import StockAdjusted, StockCounted, StockReceived

#: Version of the envelope and message layout below.
SCHEMA_VERSION = 1
STREAM = "HUB_EVENTS"
SUBJECT_PREFIX = "hub.events"
NO_PLATFORM = "_"

# Headers of every message on HUB_EVENTS.
H_MSG_ID = "Nats-Msg-Id"
H_AGGREGATE_ID = "Hub-Aggregate-Id"
H_AGGREGATE_TYPE = "Hub-Aggregate-Type"
H_VERSION = "Hub-Aggregate-Version"
H_POSITION = "Hub-Position"
H_EVENT_TYPE = "Hub-Event-Type"
H_SCHEMA_VERSION = "Hub-Schema-Version"


# -- event payloads (the ``data`` of an envelope) ------------------------------


class StockReceivedV1(msgspec.Struct, frozen=True, kw_only=True):
    """Units of a SKU arrived; ``on_hand`` is the quantity after."""

    sku: str
    quantity: int
    on_hand: int
    reference: str = ""


class StockAdjustedV1(msgspec.Struct, frozen=True, kw_only=True):
    """Stock on hand of a SKU changed by ``delta``; ``on_hand`` is after."""

    sku: str
    delta: int
    reason: str
    on_hand: int


class StockCountedV1(msgspec.Struct, frozen=True, kw_only=True):
    """A physical count set stock on hand; ``delta`` is the difference found."""

    sku: str
    counted: int
    delta: int
    on_hand: int


# Binding payloads. The aggregate id of the envelope identifies the binding
# (uuid5 of channel account, platform and shop id); BindingRequestedV1 carries
# those keys. Personal data stays masked as the domain records it: subject codes
# always, an individual's name beyond its first character.


class RuleFailureV1(msgspec.Struct, frozen=True, kw_only=True):
    """One qualification rule the merchant failed.

    ``message`` is the whole failure in one line, e.g.
    ``followers 8,120 < 10,000 (kuaishou_shop)``.
    """

    platform: str
    rule: str
    subject: str
    measured: str
    threshold: str
    message: str


class SubjectMismatchV1(msgspec.Struct, frozen=True, kw_only=True):
    """One field (``kind``, ``name`` or ``code``) where account and licence differ.

    Codes are masked, and so are individuals' names.
    """

    field: str
    account_value: str
    licence_value: str


class BindingRequestedV1(msgspec.Struct, frozen=True, kw_only=True):
    """A binding was requested; review time, route and scope from the profile."""

    channel_account: str
    platform: str
    shop_id: str
    requested_on: date
    materials: tuple[str, ...] = ()
    review_days_min: int | None = None
    review_days_max: int | None = None
    binding_route: str = ""
    data_scope: str | None = None


class SubjectVerifiedV1(msgspec.Struct, frozen=True, kw_only=True):
    """The account's certified subject matches the licence (code masked)."""

    platform: str
    subject_kind: str
    subject_name: str
    subject_code: str


class SubjectMismatchedV1(msgspec.Struct, frozen=True, kw_only=True):
    """Account and licence subjects differ; every differing field is listed."""

    platform: str
    mismatches: tuple[SubjectMismatchV1, ...]


class QualificationPassedV1(msgspec.Struct, frozen=True, kw_only=True):
    """Every qualification rule passed as of ``as_of``."""

    platform: str
    as_of: date
    pending_requirements: tuple[str, ...] = ()


class QualificationRejectedV1(msgspec.Struct, frozen=True, kw_only=True):
    """Qualification failed; ``failures`` lists every failed rule, in rule order."""

    platform: str
    as_of: date
    failures: tuple[RuleFailureV1, ...]


class SpecialRequirementMetV1(msgspec.Struct, frozen=True, kw_only=True):
    """One special requirement was met; ``remaining`` are still pending."""

    platform: str
    requirement: str
    evidence: str = ""
    remaining: tuple[str, ...] = ()


class BindingAuthorisedV1(msgspec.Struct, frozen=True, kw_only=True):
    """The platform authorised the binding with this route and data scope."""

    platform: str
    binding_route: str
    data_scope: str | None = None
    mapped_data: tuple[str, ...] = ()


class BindingActivatedV1(msgspec.Struct, frozen=True, kw_only=True):
    """The binding is working: data flows within its scope."""

    platform: str


class BindingSuspendedV1(msgspec.Struct, frozen=True, kw_only=True):
    """The binding stopped for ``reason``; ``cause`` is a code for machines."""

    platform: str
    reason: str
    cause: str = "other"


class BindingReinstatedV1(msgspec.Struct, frozen=True, kw_only=True):
    """A suspended binding is active again."""

    platform: str
    reason: str = ""


class BindingUnboundV1(msgspec.Struct, frozen=True, kw_only=True):
    """The binding ended; it was ``previous_status``."""

    platform: str
    previous_status: str
    reason: str = ""


#: Internal event class → public payload struct.
PAYLOADS: dict[type[Event], type[msgspec.Struct]] = {
    StockReceived: StockReceivedV1,
    StockAdjusted: StockAdjustedV1,
    StockCounted: StockCountedV1,
    BindingRequested: BindingRequestedV1,
    SubjectVerified: SubjectVerifiedV1,
    SubjectMismatched: SubjectMismatchedV1,
    QualificationPassed: QualificationPassedV1,
    QualificationRejected: QualificationRejectedV1,
    SpecialRequirementMet: SpecialRequirementMetV1,
    BindingAuthorised: BindingAuthorisedV1,
    BindingActivated: BindingActivatedV1,
    BindingSuspended: BindingSuspendedV1,
    BindingReinstated: BindingReinstatedV1,
    BindingUnbound: BindingUnboundV1,
}


class EventMessage(msgspec.Struct, frozen=True, kw_only=True):
    """Envelope of every message on ``HUB_EVENTS``.

    Attributes:
        schema_version: version of this envelope layout.
        event_id: unique id of the event (also the ``Nats-Msg-Id``).
        event_type: e.g. ``StockReceived`` (also the subject's fourth token).
        aggregate_type: e.g. ``stock`` (the subject's third token).
        aggregate_id: the aggregate's id.
        aggregate_version: the event's version within its aggregate.
        position: the event's position in the hub's global log.
        occurred_at: when the hub recorded the fact (UTC).
        platform: the platform code it concerns, if any.
        data: the event's public payload.
    """

    schema_version: Literal[1] = 1
    event_id: uuid.UUID
    event_type: str
    aggregate_type: str
    aggregate_id: uuid.UUID
    aggregate_version: int
    position: Annotated[int, msgspec.Meta(ge=1)]
    occurred_at: datetime
    platform: str | None = None
    data: dict[str, Any]


def event_type(event: Event) -> str:
    """The public type name of an event (its topic's last part)."""
    return type(event).TOPIC.rpartition(".")[2]


def subject_for(event: Event) -> str:
    """The ``HUB_EVENTS`` subject of an event."""
    platform = event.event_platform or NO_PLATFORM
    return f"{SUBJECT_PREFIX}.{type(event).AGGREGATE}.{event_type(event)}.{platform}"


def payload_of(event: Event) -> msgspec.Struct:
    """The public payload of ``event``: the fields its public struct declares.

    Nested internal structs (a binding's rule failures) become their public
    counterparts, field by field.
    """
    try:
        public = PAYLOADS[type(event)]
    except KeyError:
        raise LookupError(
            f"{type(event).__name__} has no public message in hub/messages.py"
        ) from None
    return msgspec.convert(event, public, from_attributes=True)


def to_message(event: Event, position: int) -> EventMessage:
    """Translate a stored event into its published envelope."""
    return EventMessage(
        event_id=event.event_id,
        event_type=event_type(event),
        aggregate_type=type(event).AGGREGATE,
        aggregate_id=event.originator_id,
        aggregate_version=event.originator_version,
        position=position,
        occurred_at=event.occurred_at,
        platform=event.event_platform,
        data=msgspec.to_builtins(payload_of(event)),
    )


def headers_for(event: Event, position: int) -> dict[str, str]:
    """The NATS headers of an event's message."""
    return {
        H_MSG_ID: str(event.event_id),
        H_AGGREGATE_ID: str(event.originator_id),
        H_AGGREGATE_TYPE: type(event).AGGREGATE,
        H_VERSION: str(event.originator_version),
        H_POSITION: str(position),
        H_EVENT_TYPE: event_type(event),
        H_SCHEMA_VERSION: str(SCHEMA_VERSION),
    }


# -- commands and replies on hub.cmd.* -----------------------------------------


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Why a command was refused: a machine code and a sentence naming the rule."""

    code: str
    message: str


class CommandReply(msgspec.Struct, frozen=True, kw_only=True):
    """Reply to every ``hub.cmd.*`` request.

    ``ok`` with the aggregate's new ``version`` and the log ``positions`` of the
    events stored (empty when a repeated ``request_id`` changed nothing), or not
    ``ok`` with an ``error``; a refused command changed nothing.
    """

    schema_version: Literal[1] = 1
    ok: bool
    aggregate_id: uuid.UUID | None = None
    version: int | None = None
    positions: list[int] = msgspec.field(default_factory=list)
    events: list[str] = msgspec.field(default_factory=list)
    state: dict[str, Any] | None = None
    error: ErrorInfo | None = None
