"""The log's codec: how an event is stored in ``hub_events`` and read back.

The event store (``hub.infra.store``), the projections and the relay all read
the same log; they decode it here, below all three. Events are msgspec JSON
under a stable topic ``TOPIC:vN``; an event stored at an older version is
upcast when read, never rewritten.
"""

from __future__ import annotations

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
