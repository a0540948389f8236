"""Snapshots: an aggregate with a long history loads from its latest snapshot
plus the events after it.

A snapshot is derived data, never the truth: the folded state of an aggregate
at one version, in ``aggregate_snapshots`` (migration 0015), written after
the events it folds are durable. One that cannot be used (its state type has
changed shape since, or it cannot be decoded) is ignored and the aggregate is
folded from its first event, as without snapshots; deleting them all changes
nothing but load times.

:class:`Snapshots` is told every durable batch (a
:meth:`hub.service.commit.GroupCommitter.listen` listener); each time an
aggregate reaches a multiple of :data:`EVERY` versions it takes a snapshot in
a worker thread, off the committer's path.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from domain.aggregates import KINDS, kind_of
from domain.events import Event, State, project
from eventlog.codec import EVENTS_TABLE, decode_event
from hub.infra.store import HubApplication, OwnConnection

log = logging.getLogger(__name__)

#: A snapshot is taken each time an aggregate's version reaches a multiple of
#: this. A load then folds at most this many events after its snapshot (half
#: of it on average): at 500 a long-lived SKU loaded in 2-3 times a new one's
#: time, at 200 in 1.6-1.8 times, for one snapshot row written every 200
#: versions of the busiest aggregates.
EVERY = 200
#: Most events read and folded at once when an aggregate is loaded.
LOAD_CHUNK = 2000

_STATES: dict[str, type[State]] = {kind.state.__name__: kind.state for kind in KINDS}

#: Aggregates whose load filled a chunk (more events may follow), each with
#: its fold, the version reached and its state so far.
Unfinished = dict[uuid.UUID, tuple[Callable[[Any, Any], Any] | None, int, Any]]

#: :meth:`Snapshots.load_many_async`'s one statement: the usable snapshots of
#: the wanted aggregates (their kind is a current shape), then at most a chunk
#: of each one's events after its snapshot, ordered so that each aggregate's
#: events come in version order.
LOAD_STATEMENT = (
    "SELECT 0, s.aggregate_id, s.version, s.kind, s.state"
    " FROM aggregate_snapshots s"
    " WHERE s.aggregate_id = ANY(%b::uuid[]) AND s.kind = ANY(%b::text[])"
    " UNION ALL"
    " SELECT 1, w.id, e.originator_version, e.topic, e.state"
    " FROM unnest(%b::uuid[]) AS w (id)"
    " LEFT JOIN aggregate_snapshots s"
    " ON s.aggregate_id = w.id AND s.kind = ANY(%b::text[])"
    " CROSS JOIN LATERAL (SELECT originator_version, topic, state"
    f" FROM {EVENTS_TABLE} WHERE originator_id = w.id"
    " AND originator_version > coalesce(s.version, 0)"
    " ORDER BY originator_version LIMIT %b::int8) AS e"
    " ORDER BY 1, 2, 3"
)


@functools.cache
def shape(state_type: type[State]) -> str:
    """A fingerprint of ``state_type``'s fields: a snapshot taken under another
    shape is not used."""
    schema = msgspec.json.encode(msgspec.json.schema(state_type))
    return f"{state_type.__name__}:{hashlib.sha256(schema).hexdigest()[:16]}"


@functools.cache
def _current_shapes() -> list[str]:
    """Every state type's :func:`shape` today: the kinds of usable snapshots
    (worked out at the first load, not at import)."""
    return [shape(state_type) for state_type in _STATES.values()]


def _usable(aggregate_id: uuid.UUID, row: Mapping[str, Any]) -> tuple[int, Any] | None:
    """A snapshot row's version and state, None if it cannot be used."""
    kind = str(row["kind"])
    state_type = _STATES.get(kind.partition(":")[0])
    if state_type is None or shape(state_type) != kind:
        return None  # taken under another shape of the state: folded anew
    try:
        return int(row["version"]), msgspec.json.decode(
            bytes(row["state"]), type=state_type
        )
    except msgspec.DecodeError:
        log.warning("snapshot of %s cannot be decoded; ignored", aggregate_id)
        return None


class Snapshots:
    """Loads aggregates from snapshots and takes them as versions go by.

    Args:
        app: the event store on PostgreSQL (its events after a snapshot, its
            connection pool for ``aggregate_snapshots``).
        every: versions between two snapshots of an aggregate.
        chunk: most events read and folded at once by :meth:`load`.

    Attributes:
        events_loaded: events read by :meth:`load` (for tests and benchmarks).
        taken: snapshots written.
    """

    def __init__(
        self, app: HubApplication, *, every: int = EVERY, chunk: int = LOAD_CHUNK
    ) -> None:
        self.app = app
        self.every = every
        self.chunk = chunk
        self.events_loaded = 0
        self.taken = 0
        self._tasks: set[asyncio.Future[None]] = set()
        self._reads: OwnConnection | None = None

    def _execute(self, query: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        recorder: Any = self.app.recorder  # PostgreSQL's: it has a datastore
        with recorder.datastore.transaction(commit=True) as cur:
            cur.execute(query, params, binary=True)
            rows: list[dict[str, Any]] = cur.fetchall() if cur.description else []
            return rows

    def load(
        self, mutate: Callable[[Any, Any], Any] | None, aggregate_id: uuid.UUID
    ) -> Any:
        """The current state of one aggregate (``None`` if it has no events):
        its snapshot, if any, evolved by the events after it.

        ``mutate`` is the aggregate's (``None``: found from its events).
        """
        return self.load_many({aggregate_id: mutate})[aggregate_id]

    def _fold_on(
        self,
        mutate: Callable[[Any, Any], Any] | None,
        aggregate_id: uuid.UUID,
        version: int,
        state: Any,
    ) -> Any:
        """``state`` at ``version`` evolved by every event after it."""
        # In chunks: the first snapshot of a long history (a SKU sold a
        # million times) folds it without holding it all in memory.
        while True:
            stored = self.app.recorder.select_events(
                aggregate_id, gt=version or None, limit=self.chunk
            )
            if not stored:
                return state
            events = [decode_event(s.topic, s.state) for s in stored]
            self.events_loaded += len(events)
            if mutate is None:
                mutate = kind_of(type(events[0])).mutate
            state = project(mutate, state, events)
            if len(stored) < self.chunk:
                return state
            version = stored[-1].originator_version

    def load_many(
        self, wanted: Mapping[uuid.UUID, Callable[[Any, Any], Any] | None]
    ) -> dict[uuid.UUID, Any]:
        """Like :meth:`load` for several aggregates (``mutate`` by id), in one
        transaction of two statements however many they are: their snapshots,
        then at most :attr:`chunk` events after each. An aggregate with more is
        folded on in further chunks.
        """
        ids = list(wanted)
        recorder: Any = self.app.recorder
        with recorder.datastore.transaction(commit=True) as cur:
            cur.execute(
                "SELECT aggregate_id, version, kind, state FROM aggregate_snapshots "
                "WHERE aggregate_id = ANY(%s)",
                (ids,),
                binary=True,
            )
            snapshots = {
                row["aggregate_id"]: found
                for row in cur.fetchall()
                if (found := _usable(row["aggregate_id"], row)) is not None
            }
            versions = [snapshots.get(aid, (0, None))[0] for aid in ids]
            cur.execute(
                "SELECT w.id, e.originator_version, e.topic, e.state "
                "FROM unnest(%s::uuid[], %s::int8[]) AS w (id, version) "
                "CROSS JOIN LATERAL (SELECT originator_version, topic, state "
                f"FROM {EVENTS_TABLE} WHERE originator_id = w.id "
                "AND originator_version > w.version "
                "ORDER BY originator_version LIMIT %s) AS e",
                (ids, versions, self.chunk),
                binary=True,
            )
            rows = cur.fetchall()
        events: dict[uuid.UUID, list[Event]] = {}
        for row in rows:
            events.setdefault(row["id"], []).append(
                decode_event(row["topic"], bytes(row["state"]))
            )
        states, unfinished = self._fold_loaded(wanted, snapshots, events)
        for aid, (fold, version, state) in unfinished.items():
            states[aid] = self._fold_on(fold, aid, version, state)
        return states

    async def load_many_async(
        self, wanted: Mapping[uuid.UUID, Callable[[Any, Any], Any] | None]
    ) -> dict[uuid.UUID, Any]:
        """:meth:`load_many` from the event loop: one statement
        (:data:`LOAD_STATEMENT`) on a connection of this object's own, instead
        of a transaction of two from a worker thread. What is rare goes to a
        thread as before: an aggregate with more than a chunk of events after
        its snapshot, and one whose snapshot has a current shape but cannot be
        decoded (folded from its first event)."""
        if self._reads is None:
            self._reads = OwnConnection(self.app.connect_async)
        ids = list(wanted)
        kinds = _current_shapes()
        rows = await self._reads.fetch(
            LOAD_STATEMENT, (ids, kinds, ids, kinds, self.chunk)
        )
        snapshots: dict[uuid.UUID, tuple[int, Any]] = {}
        broken: set[uuid.UUID] = set()
        events: dict[uuid.UUID, list[Event]] = {}
        for part, aid, version, kind, state in rows:
            if part == 1:
                events.setdefault(aid, []).append(decode_event(kind, bytes(state)))
                continue
            found = _usable(aid, {"kind": kind, "version": version, "state": state})
            if found is None:
                broken.add(aid)  # its events were read after it: read them all
            else:
                snapshots[aid] = found
        for aid in broken:
            events.pop(aid, None)
        states, unfinished = self._fold_loaded(wanted, snapshots, events)
        for aid in broken:
            unfinished[aid] = (wanted[aid], 0, None)
        for aid, (fold, version, state) in unfinished.items():
            states[aid] = await asyncio.to_thread(
                self._fold_on, fold, aid, version, state
            )
        return states

    def _fold_loaded(
        self,
        wanted: Mapping[uuid.UUID, Callable[[Any, Any], Any] | None],
        snapshots: Mapping[uuid.UUID, tuple[int, Any]],
        events: Mapping[uuid.UUID, list[Event]],
    ) -> tuple[dict[uuid.UUID, Any], Unfinished]:
        """Each wanted aggregate's snapshot (if any) evolved by its events
        read; and those whose read filled a chunk (more may follow), with their
        fold, version and state so far."""
        states: dict[uuid.UUID, Any] = {}
        unfinished: Unfinished = {}
        for aid, mutate in wanted.items():
            state = snapshots.get(aid, (0, None))[1]
            mine = events.get(aid, [])
            self.events_loaded += len(mine)
            if mine:
                fold = mutate or kind_of(type(mine[0])).mutate
                state = project(fold, state, mine)
                if len(mine) == self.chunk:
                    unfinished[aid] = (fold, mine[-1].originator_version, state)
            states[aid] = state
        return states, unfinished

    async def aclose(self) -> None:
        """Close :meth:`load_many_async`'s connection, if it opened one."""
        if self._reads is not None:
            await self._reads.aclose()

    def take(self, aggregate_id: uuid.UUID) -> None:
        """Write the snapshot of one aggregate's current state."""
        state: State | None = self.load(None, aggregate_id)
        if state is None:
            return
        self._execute(
            "INSERT INTO aggregate_snapshots (aggregate_id, version, kind, state) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (aggregate_id) DO UPDATE SET "
            "version = EXCLUDED.version, kind = EXCLUDED.kind, "
            "state = EXCLUDED.state, taken_at = now() "
            "WHERE aggregate_snapshots.version < EXCLUDED.version",
            (
                aggregate_id,
                state.version,
                shape(type(state)),
                msgspec.json.encode(state),
            ),
        )
        self.taken += 1

    def on_durable(self, events: Sequence[Event]) -> None:
        """Take a snapshot of each aggregate of a durable batch that reached a
        multiple of :attr:`every` versions, in a worker thread."""
        due = {
            e.originator_id for e in events if e.originator_version % self.every == 0
        }
        for aggregate_id in due:
            task = asyncio.ensure_future(asyncio.to_thread(self.take, aggregate_id))
            self._tasks.add(task)
            task.add_done_callback(self._taken)

    def _taken(self, task: asyncio.Future[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("a snapshot was not taken: %s", task.exception())

    async def drain(self) -> None:
        """Wait for the snapshots being taken (for tests and a clean stop)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
