"""The event store: one eventsourcing Application on PostgreSQL, msgspec-encoded.

All aggregates share one application (``Hub``) and so one global log, the
``hub_events`` table, whose ``notification_id`` is the log position that the
relay, the projections and ``hub status`` speak of.

Events are stored as msgspec JSON under a stable topic ``TOPIC:vN``; an event
stored at an older version is upcast when read, never rewritten.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import psycopg
from eventsourcing.application import Application
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    Mapper,
    OperationalError,
    StoredEvent,
    Transcoder,
)
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry
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


@dataclass(frozen=True, slots=True)
class RequestKey:
    """A command's idempotency key and the versions of its aggregate it stored
    (a row of ``command_requests``)."""

    aggregate_id: uuid.UUID
    request_id: str
    first_version: int
    last_version: int


#: Seconds a new connection to PostgreSQL may take.
CONNECT_TIMEOUT_S = 3
#: Attempts of one store call when the connection fails (the library makes
#: ten, which keeps a caller waiting for a minute while PostgreSQL is down).
STORE_ATTEMPTS = 3
#: Pause before a store call tries again on a new connection.
STORE_RETRY_WAIT_S = 0.2
_store_retry = retry(
    (InterfaceError, OperationalError),
    max_attempts=STORE_ATTEMPTS,
    wait=STORE_RETRY_WAIT_S,
)


def append_columns(
    stored: Sequence[StoredEvent], requests: Sequence[RequestKey]
) -> list[list[Any]]:
    """A batch as the eight arrays both inserts take: the events' ids,
    versions, topics and states, then the request keys' aggregate ids,
    request ids, first and last versions."""
    return [
        [e.originator_id for e in stored],
        [e.originator_version for e in stored],
        [e.topic for e in stored],
        [e.state for e in stored],
        [r.aggregate_id for r in requests],
        [r.request_id for r in requests],
        [r.first_version for r in requests],
        [r.last_version for r in requests],
    ]


class HubRecorder(PostgresApplicationRecorder):
    """The library's recorder, inserting a batch as four plain arrays.

    The library adapts every event to a PostgreSQL composite value in Python,
    which dominates the cost of a large group commit; ``unnest`` over one array
    per column stores the same rows, in the same order, under the same table
    lock and NOTIFY, for a fraction of the work.

    Given ``requests`` (:class:`RequestKey`), the same statement also records
    the commands' idempotency keys in ``command_requests``: one statement, one
    transaction with the events. A key recorded before makes the insert fail
    with an ``IntegrityError``, as a lost concurrency race does.
    """

    def __init__(self, datastore: Any, *, events_table_name: str = EVENTS_TABLE):
        super().__init__(datastore, events_table_name=events_table_name)
        names = {
            "schema": sql.Identifier(self.datastore.schema),
            "table": sql.Identifier(self.events_table_name),
        }
        self._insert_columns = sql.SQL(
            "INSERT INTO {schema}.{table} "
            "(originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[]) "
            "RETURNING notification_id"
        ).format(**names)
        self._insert_with_requests = sql.SQL(
            "WITH stored AS ("
            "INSERT INTO {schema}.{table} "
            "(originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[]) "
            "RETURNING notification_id), "
            "keys AS (INSERT INTO {schema}.command_requests "
            "(aggregate_id, request_id, first_version, last_version) "
            "SELECT * FROM unnest(%b::uuid[], %b::text[], %b::bigint[], %b::bigint[])) "
            "SELECT notification_id FROM stored ORDER BY notification_id"
        ).format(**names)

    # The library retries a failed connection ten times; the hub's callers are
    # answered ``store_unavailable`` sooner and retry themselves.
    insert_events = _store_retry(
        inspect.unwrap(PostgresApplicationRecorder.insert_events)
    )
    select_events = _store_retry(
        inspect.unwrap(PostgresApplicationRecorder.select_events)
    )

    def _insert_stored_events(
        self,
        curs: Any,
        stored_events: Any,
        *,
        requests: Sequence[RequestKey] = (),
        **kwargs: Any,
    ) -> None:
        self._lock_table(curs)
        self._notify_channel(curs)
        columns = append_columns(stored_events, requests)
        if not requests:
            curs.execute(self._insert_columns, columns[:4], prepare=True)
            return
        curs.execute(self._insert_with_requests, columns, prepare=True)

    def _fetch_ids_after_insert_events(
        self, curs: Any, stored_events: Any, **kwargs: Any
    ) -> Sequence[int] | None:
        return [row["notification_id"] for row in curs.fetchall()]


#: The one statement of :class:`LogWriter` (the function of migration 0027).
APPEND_STATEMENT = (
    "SELECT * FROM hub_append(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[],"
    " %b::uuid[], %b::text[], %b::bigint[], %b::bigint[])"
)


class OwnConnection:
    """A connection to the store's database kept by one user, opened at its
    first statement, each statement prepared once.

    A statement whose connection fails is sent again on a new one (up to
    :data:`STORE_ATTEMPTS` in all, :data:`STORE_RETRY_WAIT_S` apart); one
    cancelled (or failing otherwise) mid-statement drops the connection, whose
    state is then unknown.

    Args:
        connect: Opens a new autocommit connection
            (:meth:`HubApplication.connect_async`).
    """

    def __init__(
        self, connect: Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]
    ) -> None:
        self._connect = connect
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def fetch(self, query: str, params: Sequence[Any]) -> list[Any]:
        """The rows of one statement (its own transaction).

        Raises:
            eventsourcing.persistence.IntegrityError: it broke a unique key
                (nothing of it is stored).
            eventsourcing.persistence.OperationalError: PostgreSQL could not be
                reached, :data:`STORE_ATTEMPTS` times.
        """
        attempt = 1
        while True:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = await self._connect()
                cur = await self._conn.execute(query, params, prepare=True)
                return await cur.fetchall()
            except psycopg.errors.UniqueViolation as exc:
                raise IntegrityError(str(exc)) from exc
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                await self.aclose()
                if attempt >= STORE_ATTEMPTS:
                    raise OperationalError(str(exc)) from exc
            except BaseException:
                # Cancelled mid-statement (or failed otherwise): what the
                # connection is in the middle of is unknown; it is not used
                # again.
                await self.aclose()
                raise
            attempt += 1
            await asyncio.sleep(STORE_RETRY_WAIT_S)

    async def aclose(self) -> None:
        """Close the connection (the next statement opens one again)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()


class LogWriter:
    """Stores batches of events in one statement each, on a connection of its own.

    The library's recorder stores a batch in six round trips from a worker
    thread (a pooled connection's check, BEGIN, the table lock, NOTIFY, the
    insert, COMMIT): in a flash sale that was the largest part of the hub
    process's CPU after HTTP. ``hub_append`` (a database function) does the
    same work under the same rules in one statement, sent from the event loop
    on an :class:`OwnConnection`.

    A call that had been stored before its connection failed and its answer
    was lost fails, when sent again, as a repeated version, which the group
    committer tells from a lost race by reading the events back.
    """

    def __init__(
        self, connect: Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]
    ) -> None:
        self._connection = OwnConnection(connect)

    async def append(
        self, stored: Sequence[StoredEvent], requests: Sequence[RequestKey] = ()
    ) -> list[int]:
        """Store ``stored`` and record ``requests`` in one transaction; return
        the events' log positions.

        Raises:
            eventsourcing.persistence.IntegrityError: a version or a request id
                was stored before (nothing of the batch is stored).
            eventsourcing.persistence.OperationalError: see
                :meth:`OwnConnection.fetch`.
        """
        rows = await self._connection.fetch(
            APPEND_STATEMENT, append_columns(stored, requests)
        )
        return [int(row[0]) for row in rows]

    async def aclose(self) -> None:
        """Close its connection."""
        await self._connection.aclose()


class HubApplication(Application[uuid.UUID]):
    """The hub's event-sourced application: every aggregate, one log."""

    name = APPLICATION_NAME
    #: Defaults under the settings given: a pooled connection waits at most
    #: this long for PostgreSQL, so a store that is down fails a call in
    #: seconds; a connection is checked before use, so one that PostgreSQL
    #: dropped is replaced rather than failing a command.
    env: ClassVar[dict[str, str]] = {
        "POSTGRES_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT_S),
        "POSTGRES_PRE_PING": "y",
    }
    #: :meth:`append_async`'s writer, made at its first call.
    _writer: LogWriter | None = None

    def construct_mapper(self) -> Mapper[uuid.UUID]:
        """Use the msgspec mapper instead of the library's JSON transcoder."""
        return MsgspecMapper()

    def append(
        self, events: Iterable[Event], requests: Sequence[RequestKey] = ()
    ) -> list[int]:
        """Store ``events`` in one transaction; return their log positions.

        ``requests`` are recorded in the same transaction (see
        :class:`HubRecorder`).

        Raises:
            eventsourcing.persistence.IntegrityError: another writer stored a
                conflicting version of one of the aggregates first, or one of
                ``requests`` was recorded before.
        """
        stored = [self.mapper.to_stored_event(e) for e in events]
        if not stored:
            return []
        # The recorder directly: Application.save adds per-event bookkeeping
        # (protocol checks, recordings, snapshots, callbacks) that the hub does
        # not use and that costs more than the insert itself.
        if requests:
            positions = self.recorder.insert_events(stored, requests=requests)
        else:
            positions = self.recorder.insert_events(stored)
        assert positions is not None and len(positions) == len(stored)
        return list(positions)

    async def append_async(
        self, events: Sequence[Event], requests: Sequence[RequestKey] = ()
    ) -> list[int]:
        """:meth:`append` from the event loop: on PostgreSQL in one statement
        (:class:`LogWriter`), on the in-memory store in a thread.

        Raises:
            eventsourcing.persistence.IntegrityError: see :meth:`append`.
        """
        if not isinstance(self.recorder, HubRecorder):
            return await asyncio.to_thread(self.append, events, requests)
        stored = [self.mapper.to_stored_event(e) for e in events]
        if not stored:
            return []
        if self._writer is None:
            self._writer = LogWriter(self.connect_async)
        return await self._writer.append(stored, requests)

    async def connect_async(self) -> psycopg.AsyncConnection[Any]:
        """A new autocommit connection to the store's database (PostgreSQL)."""
        recorder = cast("HubRecorder", self.recorder)
        kwargs = dict(cast("dict[str, Any]", recorder.datastore.pool.kwargs))
        kwargs.pop("row_factory", None)
        return await psycopg.AsyncConnection.connect(
            **kwargs, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
        )

    async def close_writer(self) -> None:
        """Close :meth:`append_async`'s connection, if it opened one."""
        if self._writer is not None:
            await self._writer.aclose()

    def stored_positions(self, events: Sequence[Event]) -> list[int] | None:
        """The log positions of ``events`` if these very events are stored
        (same ids), else None: tells a write that landed before its
        connection dropped from one that did not, or lost a race."""
        if not events:
            return []
        with self._connection() as conn:
            if conn is None:
                return None
            rows = conn.execute(
                sql.SQL(
                    "SELECT e.notification_id, e.state FROM unnest("
                    "%s::uuid[], %s::bigint[]) WITH ORDINALITY AS k(id, v, n) "
                    "JOIN {} e ON e.originator_id = k.id "
                    "AND e.originator_version = k.v ORDER BY k.n"
                ).format(sql.Identifier(EVENTS_TABLE)),
                (
                    [e.originator_id for e in events],
                    [e.originator_version for e in events],
                ),
                binary=True,
            ).fetchall()
        if len(rows) != len(events):
            return None
        ours = self.mapper.to_stored_event(events[0]).state
        if bytes(rows[0]["state"]) != ours:
            return None
        return [int(r["notification_id"]) for r in rows]

    def recorded_requests(
        self, keys: Sequence[tuple[uuid.UUID, str]]
    ) -> dict[tuple[uuid.UUID, str], tuple[list[int], list[Event]]]:
        """Of ``keys`` (aggregate id, request id), those recorded in
        ``command_requests``, with the positions and events they stored."""
        if not keys:
            return {}
        with self._connection() as conn:
            if conn is None:
                return {}
            rows = conn.execute(
                sql.SQL(
                    "SELECT r.aggregate_id, r.request_id, e.notification_id, "
                    "e.topic, e.state FROM unnest(%s::uuid[], %s::text[]) "
                    "AS k(aggregate_id, request_id) "
                    "JOIN command_requests r USING (aggregate_id, request_id) "
                    "JOIN {} e ON e.originator_id = r.aggregate_id "
                    "AND e.originator_version BETWEEN r.first_version "
                    "AND r.last_version ORDER BY e.notification_id"
                ).format(sql.Identifier(EVENTS_TABLE)),
                ([k[0] for k in keys], [k[1] for k in keys]),
                binary=True,
            ).fetchall()
        found: dict[tuple[uuid.UUID, str], tuple[list[int], list[Event]]] = {}
        for row in rows:
            positions, events = found.setdefault(
                (row["aggregate_id"], row["request_id"]), ([], [])
            )
            positions.append(int(row["notification_id"]))
            events.append(decode_event(row["topic"], bytes(row["state"])))
        return found

    def forget_requests(self, days: int) -> int:
        """Delete idempotency keys recorded more than ``days`` days ago;
        return how many."""
        with self._connection() as conn:
            if conn is None:
                return 0
            cur = conn.execute(
                "DELETE FROM command_requests "
                "WHERE recorded_at < now() - make_interval(days => %s)",
                (days,),
            )
            return int(cur.rowcount)

    def _connection(self) -> Any:
        """A pooled connection (PostgreSQL), or None for the in-memory store,
        which keeps no request ids and never fails a write."""
        if not isinstance(self.recorder, PostgresApplicationRecorder):
            return contextlib.nullcontext(None)
        return self.recorder.datastore.get_connection()

    def load_events(self, aggregate_id: uuid.UUID) -> list[Event]:
        """Every stored event of one aggregate, in version order."""
        return [cast("Event", e) for e in self.events.get(aggregate_id)]
