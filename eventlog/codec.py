"""The log's codec: how an event is stored in ``hub_events`` and read back.

The event store (``hub.infra.store``), the projections and the relay all read
the same log; they decode it here, below all three. Events are msgspec JSON
under a stable topic ``TOPIC:vN``; an event stored at an older version is
upcast when read, never rewritten.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import msgspec
from eventsourcing.persistence import MapperDeserialisationError

from domain.events import Event, event_class

#: Name of the application: its events table is ``hub_events``.
APPLICATION_NAME = "Hub"
EVENTS_TABLE = "hub_events"

_encoder = msgspec.json.Encoder()
_by_topic: dict[str, Callable[[bytes], Event]] = {}
_keys: dict[tuple[str, str], Callable[[bytes], str] | None] = {}


def stored_topic(cls: type[Event]) -> str:
    """The topic an event class is stored under: ``TOPIC:vVERSION``."""
    return f"{cls.TOPIC}:v{cls.VERSION}"


def parse_topic(topic: str) -> tuple[str, int]:
    """Split a stored topic into its stable name and schema version."""
    name, _, version = topic.rpartition(":v")
    if not name or not version.isdigit():
        raise MapperDeserialisationError(f"stored topic {topic!r} is not NAME:vN")
    return name, int(version)


def encode_event(event: Event) -> bytes:
    """The stored state of ``event`` (msgspec JSON)."""
    return _encoder.encode(event)


def topic_decoder(topic: str) -> Callable[[bytes], Event]:
    """The decoder of events stored under ``topic`` (made once per topic).

    A topic at the class's version decodes straight into the struct; an older
    one decodes to a mapping, goes through the upcaster chain and is converted.
    A reader of many events looks the decoder up once per row instead of
    parsing the topic each time.

    Raises:
        MapperDeserialisationError: the topic is not ``NAME:vN`` or names no
            known event class.
    """
    found = _by_topic.get(topic)
    if found is None:
        found = _by_topic[topic] = _make_decoder(topic)
    return found


def _make_decoder(topic: str) -> Callable[[bytes], Event]:
    name, stored_version = parse_topic(topic)
    try:
        cls = event_class(name)
    except LookupError as exc:
        raise MapperDeserialisationError(str(exc)) from None
    if stored_version == cls.VERSION:
        return msgspec.json.Decoder(cls).decode
    try:
        upcasters = [
            getattr(cls, f"upcast_v{version}")
            for version in range(stored_version, cls.VERSION)
        ]
    except AttributeError as exc:
        raise MapperDeserialisationError(
            f"cannot decode stored event {topic!r}: {exc}"
        ) from exc

    def upcast(state: bytes) -> Event:
        raw: dict[str, Any] = msgspec.json.decode(state)
        for upcaster in upcasters:
            raw = upcaster(raw)
        return msgspec.convert(raw, cls)

    return upcast


def key_decoder(topic: str, field: str) -> Callable[[bytes], str] | None:
    """A decoder of only the text field ``field`` of events stored under
    ``topic`` (made once per topic and field); None when the topic is older
    than its class (an upcaster may change fields: decode the whole event).

    It parses the document but builds none of its other values: about a third
    of the cost of decoding the event (its times, ids and numbers).

    Raises:
        MapperDeserialisationError: the topic is not ``NAME:vN`` or names no
            known event class.
        ValueError: the class has no field ``field``.
    """
    if (topic, field) in _keys:
        return _keys[topic, field]
    name, stored_version = parse_topic(topic)
    try:
        cls = event_class(name)
    except LookupError as exc:
        raise MapperDeserialisationError(str(exc)) from None
    if field not in cls.__struct_fields__:
        raise ValueError(f"{cls.__name__} has no field {field!r}")
    found: Callable[[bytes], str] | None = None
    if stored_version == cls.VERSION:
        decode = msgspec.json.Decoder(msgspec.defstruct("Key", [(field, str)])).decode
        take = operator.attrgetter(field)

        def found(state: bytes) -> str:
            return take(decode(state))  # type: ignore[no-any-return]

    _keys[topic, field] = found
    return found


def decode_event(topic: str, state: bytes) -> Event:
    """Decode a stored event into its typed struct, upcasting old versions.

    Raises:
        MapperDeserialisationError: unknown topic or undecodable state.
    """
    try:
        return topic_decoder(topic)(state)
    except (msgspec.DecodeError, msgspec.ValidationError, AttributeError) as exc:
        raise MapperDeserialisationError(
            f"cannot decode stored event {topic!r}: {exc}"
        ) from exc
