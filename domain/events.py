"""The one aggregate style of the hub: events, context, decide and mutate helpers.

Every aggregate in ``domain/`` follows the same functional pattern:

* events are frozen, keyword-only msgspec Structs on :class:`Event`, named in the
  past tense, each with a stable ``TOPIC`` and a ``VERSION``;
* a ``decide_*`` function checks the rules against the current state and returns
  new events (or raises a specific ``...Error`` before any event is made);
* ``mutate`` (a ``functools.singledispatch``) evolves an immutable state struct with
  ``msgspec.structs.replace``; :func:`project` folds events into state.

Time and ids are never read here: they come in through :class:`Context`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, TypeVar

import msgspec

#: Namespace of every id the hub derives from an outside key (uuid5).
HUB_NAMESPACE = uuid.UUID("6f1c1d4e-8a3b-5c2d-9e0f-4b7a6c5d3e21")


def derive_id(kind: str, *keys: str) -> uuid.UUID:
    """Derive a stable aggregate id from the outside world's key.

    A duplicated push or request computes the same id and so finds the aggregate
    that already exists.
    """
    return uuid.uuid5(HUB_NAMESPACE, "\x1f".join((kind, *keys)))


class DomainError(Exception):
    """A command broke a rule; nothing was changed."""

    #: Machine-readable code for replies (``"insufficient_stock"``, ...).
    code: ClassVar[str] = "domain_error"


V = TypeVar("V")


def lookup(
    table: Mapping[str, V], key: str, error: type[DomainError], missing: str
) -> V:
    """``table[key]``; else raise ``error``: ``missing`` and the keys there are.

    Raises:
        DomainError: ``error``, e.g. ``platform 'x' has no settlement terms
            (known: douyin_shop, wechat_shop)``.
    """
    try:
        return table[key]
    except KeyError:
        raise error(f"{missing} (known: {', '.join(sorted(table))})") from None


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every domain event: an immutable fact in an aggregate's log.

    ``TOPIC`` is the stable stored name (never derived from the Python module
    path, so classes can move); ``VERSION`` is the schema version, and an event
    stored at an older version is upcast on read by ``upcast_vN`` class methods
    that take and return the raw ``dict``.
    """

    TOPIC: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1
    #: Aggregate type, the second token of the event's NATS subject.
    AGGREGATE: ClassVar[str] = ""

    originator_id: uuid.UUID
    originator_version: int
    event_id: uuid.UUID
    occurred_at: datetime
    #: The input this event descends from: every event a command and its
    #: reactions cause carries the same one (None: stored before it was kept).
    correlation_id: str | None = None
    #: The event that called for this one (None: a command from outside).
    causation_id: uuid.UUID | None = None

    @property
    def event_platform(self) -> str | None:
        """The platform code this event concerns, if any (for subjects)."""
        return getattr(self, "platform", None)


@dataclass(frozen=True)
class Context:
    """What a decision may not invent itself: the time, fresh ids, and the
    causal ids its events carry."""

    now: datetime
    new_id: Callable[[], uuid.UUID] = uuid.uuid4
    correlation_id: str | None = None
    causation_id: uuid.UUID | None = None

    def meta(self, originator_id: uuid.UUID, version: int) -> dict[str, Any]:
        """Metadata fields for the event at ``version`` of an aggregate."""
        return {
            "originator_id": originator_id,
            "originator_version": version,
            "event_id": self.new_id(),
            "occurred_at": self.now,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
        }


class State(msgspec.Struct, frozen=True, kw_only=True):
    """Base of aggregate states: immutable, with id and version."""

    id: uuid.UUID
    version: int


S = TypeVar("S", bound=State)


def advanced(kind: type[S], state: S | None, event: Event) -> S:
    """``state`` moved to ``event``'s version, or a new ``kind`` at it if none.

    For aggregates whose first event may be any of theirs: the new state has
    only its id and version, every other field its default.
    """
    if state is None:
        return kind(id=event.originator_id, version=event.originator_version)
    return msgspec.structs.replace(state, version=event.originator_version)


def project(
    mutate: Callable[[Any, Any], Any], state: Any, events: Iterable[Event]
) -> Any:
    """Fold ``events`` into ``state`` with the aggregate's ``mutate``."""
    for event in events:
        state = mutate(event, state)
    return state


_REGISTRY: dict[str, type[Event]] = {}


def register(cls: type[Event]) -> type[Event]:
    """Class decorator: make an event class resolvable by its stable topic."""
    if not cls.TOPIC:
        raise TypeError(f"{cls.__name__} has no TOPIC")
    existing = _REGISTRY.get(cls.TOPIC)
    if existing is not None and existing is not cls:
        raise TypeError(f"topic {cls.TOPIC!r} is taken by {existing.__name__}")
    _REGISTRY[cls.TOPIC] = cls
    return cls


def event_class(topic: str) -> type[Event]:
    """The event class registered under ``topic``."""
    try:
        return _REGISTRY[topic]
    except KeyError:
        raise LookupError(f"no event class is registered for topic {topic!r}") from None


def registered_events() -> dict[str, type[Event]]:
    """A copy of the topic → class registry (for schemas and docs)."""
    return dict(_REGISTRY)
