"""The event store: one eventsourcing Application on PostgreSQL, msgspec-encoded.

All aggregates share one application (``Hub``) and so one global log, the
``hub_events`` table, whose ``notification_id`` is the log position that the
relay, the projections and ``hub status`` speak of.

Events are stored as msgspec JSON under a stable topic ``TOPIC:vN``; an event
stored at an older version is upcast when read, never rewritten.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, cast

from eventsourcing.application import Application
from eventsourcing.persistence import (
    Mapper,
    StoredEvent,
    Transcoder,
)
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg import sql

from domain.events import Event
from eventlog.codec import (
    APPLICATION_NAME,
    EVENTS_TABLE,
    decode_event,
    encode_event,
    stored_topic,
)


class _UnusedTranscoder(Transcoder):
    """The msgspec mapper encodes whole structs; no dict transcoding is used."""

    def encode(self, obj: Any) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes) -> Any:
        raise NotImplementedError


class MsgspecMapper(Mapper[uuid.UUID]):
    """Maps msgspec event structs to stored events and back (no pickle, no dicts)."""

    def __init__(self) -> None:
        super().__init__(transcoder=_UnusedTranscoder())

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        """Encode a domain event for the ``hub_events`` table."""
        event: Event = domain_event
        return StoredEvent(
            originator_id=event.originator_id,
            originator_version=event.originator_version,
            topic=stored_topic(type(event)),
            state=encode_event(event),
        )

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        """Decode a stored event into its typed, current-version struct."""
        return decode_event(stored_event.topic, stored_event.state)


class HubRecorder(PostgresApplicationRecorder):
    """The library's recorder, inserting a batch as four plain arrays.

    The library adapts every event to a PostgreSQL composite value in Python,
    which dominates the cost of a large group commit; ``unnest`` over one array
    per column stores the same rows, in the same order, under the same table
    lock and NOTIFY, for a fraction of the work.
    """

    def __init__(self, datastore: Any, *, events_table_name: str = EVENTS_TABLE):
        super().__init__(datastore, events_table_name=events_table_name)
        self._insert_columns = sql.SQL(
            "INSERT INTO {schema}.{table} "
            "(originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[]) "
            "RETURNING notification_id"
        ).format(
            schema=sql.Identifier(self.datastore.schema),
            table=sql.Identifier(self.events_table_name),
        )

    def _insert_stored_events(
        self, curs: Any, stored_events: Any, **kwargs: Any
    ) -> None:
        self._lock_table(curs)
        self._notify_channel(curs)
        curs.execute(
            self._insert_columns,
            (
                [e.originator_id for e in stored_events],
                [e.originator_version for e in stored_events],
                [e.topic for e in stored_events],
                [e.state for e in stored_events],
            ),
            prepare=True,
        )


class HubApplication(Application[uuid.UUID]):
    """The hub's event-sourced application: every aggregate, one log."""

    name = APPLICATION_NAME

    def construct_mapper(self) -> Mapper[uuid.UUID]:
        """Use the msgspec mapper instead of the library's JSON transcoder."""
        return MsgspecMapper()

    def append(self, events: Iterable[Event]) -> list[int]:
        """Store ``events`` in one transaction; return their log positions.

        Raises:
            eventsourcing.persistence.IntegrityError: another writer stored a
                conflicting version of one of the aggregates first.
        """
        stored = [self.mapper.to_stored_event(e) for e in events]
        if not stored:
            return []
        # The recorder directly: Application.save adds per-event bookkeeping
        # (protocol checks, recordings, snapshots, callbacks) that the hub does
        # not use and that costs more than the insert itself.
        positions = self.recorder.insert_events(stored)
        assert positions is not None and len(positions) == len(stored)
        return list(positions)

    def load_events(self, aggregate_id: uuid.UUID) -> list[Event]:
        """Every stored event of one aggregate, in version order."""
        return [cast("Event", e) for e in self.events.get(aggregate_id)]
