"""The log's codec: how an event is stored in ``hub_events`` and read back.

The event store (``hub.infra.store``), the projections and the relay all read
the same log; they decode it here, below all three. Events are msgspec JSON
under a stable topic ``TOPIC:vN``; an event stored at an older version is
upcast when read, never rewritten.
"""

from __future__ import annotations

from typing import Any

import msgspec
from eventsourcing.persistence import MapperDeserialisationError

from domain.events import Event, event_class

#: Name of the application: its events table is ``hub_events``.
APPLICATION_NAME = "Hub"
EVENTS_TABLE = "hub_events"

_encoder = msgspec.json.Encoder()
_decoders: dict[type[Event], msgspec.json.Decoder[Any]] = {}


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


def decode_event(topic: str, state: bytes) -> Event:
    """Decode a stored event into its typed struct, upcasting old versions.

    Raises:
        MapperDeserialisationError: unknown topic or undecodable state.
    """
    name, version = parse_topic(topic)
    try:
        cls = event_class(name)
    except LookupError as exc:
        raise MapperDeserialisationError(str(exc)) from None
    try:
        if version == cls.VERSION:
            decoder = _decoders.get(cls)
            if decoder is None:
                decoder = _decoders[cls] = msgspec.json.Decoder(cls)
            return decoder.decode(state)  # type: ignore[no-any-return]
        raw: dict[str, Any] = msgspec.json.decode(state)
        while version < cls.VERSION:
            raw = getattr(cls, f"upcast_v{version}")(raw)
            version += 1
        return msgspec.convert(raw, cls)
    except (msgspec.DecodeError, msgspec.ValidationError, AttributeError) as exc:
        raise MapperDeserialisationError(
            f"cannot decode stored event {topic!r}: {exc}"
        ) from exc
