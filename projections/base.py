"""Projections: read models folded from the log, exactly once, rebuildable.

A :class:`Projection` says which tables it owns and how one event changes them.
The :class:`ProjectionRunner` feeds it the log in order: each batch of events
and the projection's position in ``projection_tracking`` are written in one
transaction, so a crash (even SIGKILL) never applies an event twice or skips
one. It catches up from its position on start, then follows new events as
PostgreSQL notifies them (no polling loop), and can rebuild from zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
import typing
import uuid
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from typing import ClassVar

import msgspec
import psycopg
from psycopg import sql

from domain.events import Event
from eventlog.codec import EVENTS_TABLE, decode_event
from eventlog.listen import LogListener, listener_for, wait_listening
from eventlog.log import HEAD_QUERY, NOTIFY_SAFETY_S, log_head, stored_topics
from eventlog.supervision import Supervisor, default_supervisor, wait_set

log = logging.getLogger(__name__)

BATCH_SIZE = 1000
#: Seconds a runner waits after it is notified of new events before it reads
#: them, so that the commits close behind the first go into the same batch: a
#: read model then trails the log by up to this much more, and costs one
#: transaction per such window instead of one per commit (each has its
#: statements and round trips, on both sides, times every runner).
LINGER_S = 0.05
#: The linger of read models in a process of their own (``hub project``, the
#: scaled-out worker): in a rush they batch five times as many commits a step
#: (``bench/flash_sale.py --quick``, three alternating pairs: the workers' CPU
#: per order 10.0 / 10.2 / 9.6 -> 7.0 / 7.2 / 6.8 ms, PostgreSQL's about a
#: sixth less). Their tables then trail the log by up to a quarter second more;
#: the hub's decisions read none of them, and the runners of ``hub serve``
#: (the processes, the outbound dispatcher, in-process read models) keep
#: :data:`LINGER_S`.
READ_MODEL_LINGER_S = 0.25

_encode = msgspec.json.Encoder().encode


def topics_of(events: object) -> tuple[str, ...]:
    """The stable topics of the event classes of the union ``events``."""
    return tuple(cls.TOPIC for cls in typing.get_args(events))


def state_json(state: msgspec.Struct) -> str:
    """An aggregate's folded state as JSON text, for a ``jsonb`` column."""
    return _encode(state).decode()


def stored_before(events: Sequence[tuple[Event, int]]) -> dict[uuid.UUID, int]:
    """The aggregates of ``events`` that had events before these, each with its
    first version here: those whose first event here is not their version 1.
    A projection has no row yet for the others, so it need not read one (in a
    rebuild, most of them)."""
    first: dict[uuid.UUID, int] = {}
    for event, _ in events:
        # One hash of the id per event (a UUID hashes in Python, not in C).
        first.setdefault(event.originator_id, event.originator_version)
    return {key: version for key, version in first.items() if version > 1}


def rows_json(rows: Sequence[Sequence[object]]) -> str:
    """Rows as one JSON array of arrays, the parameter of :func:`select_rows`.

    msgspec encodes a page of rows in one call (UUIDs, times, nested states
    and all), where adapting each value as a query parameter costs a Python
    call per value.
    """
    return _encode(rows).decode()


def select_rows(columns: str) -> str:
    """A ``SELECT`` of rows sent as one JSON document (:func:`rows_json`).

    Args:
        columns: ``"name type, ..."`` in the order of each row's values; a
            ``jsonb`` value is taken as it is, the others from its text.

    The statement has one parameter, the document: one statement writes a
    whole page of rows. The document is parsed once, as ``jsonb``: with
    ``json`` every ``->>`` would parse its row's text again (a row's nested
    state once per column), which made the orders page about twice as dear.
    """
    fields = []
    for index, column in enumerate(columns.split(",")):
        name, kind = column.split()
        value = f"r->{index}" if kind == "jsonb" else f"r->>{index}"
        fields.append(f"({value})::{kind} AS {name}")
    return f"SELECT {', '.join(fields)} FROM jsonb_array_elements(%s::jsonb) AS r"


class Projection(ABC):
    """A read model: the tables it owns and how each event changes them."""

    #: Unique name; its row in ``projection_tracking``.
    name: ClassVar[str]
    #: Tables this projection writes (and empties on rebuild); when neither a
    #: class nor its bases name any, the one table named like the projection.
    tables: ClassVar[tuple[str, ...]]
    #: Stable event topics it reads (without ``:vN``); empty means all.
    topics: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: object) -> None:
        """Give a named projection that inherits no tables its own one table."""
        super().__init_subclass__(**kwargs)
        if "name" in vars(cls) and not hasattr(cls, "tables"):
            cls.tables = (cls.name,)

    @abstractmethod
    async def apply(
        self, cur: psycopg.AsyncCursor[object], event: Event, position: int
    ) -> None:
        """Write the effect of ``event`` (at log ``position``) to the tables."""

    async def apply_batch(
        self, cur: psycopg.AsyncCursor[object], events: list[tuple[Event, int]]
    ) -> None:
        """Write the effect of consecutive events; override to fold a batch.

        The default applies each event in turn; a projection whose rows can be
        folded in memory first writes far fewer statements.
        """
        for event, position in events:
            await self.apply(cur, event, position)


async def apply_events(
    cur: psycopg.AsyncCursor[object],
    projection: Projection,
    events: list[tuple[Event, int]] | Latest,
) -> None:
    """Apply ``events`` (or a batch already folded for a
    :class:`LatestProjection`) to the projection's tables."""
    if isinstance(events, Latest):
        if events:
            await typing.cast("LatestProjection", projection).apply_latest(cur, events)
    elif events:
        await projection.apply_batch(cur, events)


async def apply_tracked(
    cur: psycopg.AsyncCursor[object],
    projection: Projection,
    events: list[tuple[Event, int]],
    last: int,
) -> None:
    """Apply ``events`` and move the projection's tracked position to ``last``.

    Both go through ``cur``, so they commit (or roll back) in the caller's one
    transaction: the position never moves without the rows, nor the rows
    without the position.
    """
    await apply_events(cur, projection, events)
    await cur.execute(
        "UPDATE projection_tracking SET position = %s, updated_at = now() "
        "WHERE name = %s",
        (last, projection.name),
    )


class BatchProjection(Projection):
    """A projection that folds a whole batch at once: one event is a batch of one.

    Subclasses implement only :meth:`apply_batch` (read the batch's rows, fold
    the events in memory, write each row once).
    """

    async def apply(
        self, cur: psycopg.AsyncCursor[object], event: Event, position: int
    ) -> None:
        """Fold one event as a batch of one."""
        await self.apply_batch(cur, [(event, position)])

    @abstractmethod
    async def apply_batch(
        self, cur: psycopg.AsyncCursor[object], events: list[tuple[Event, int]]
    ) -> None:
        """Write the effect of consecutive events."""


class Latest:
    """A batch as a :class:`LatestProjection` folds it: each key's last event,
    the number of events per key, and the events it needs every one of."""

    __slots__ = ("counts", "every", "last")

    def __init__(
        self,
        last: dict[str, tuple[Event, int]],
        counts: Counter[str],
        every: list[tuple[Event, int]],
    ) -> None:
        #: Each key's last event of the batch and its log position (keys in
        #: the order they first appear).
        self.last = last
        #: How many events of the batch each key has.
        self.counts = counts
        #: The batch's events of the projection's ``every_topics`` (at least
        #: those), in log order.
        self.every = every

    def __bool__(self) -> bool:
        return bool(self.counts)

    @classmethod
    def of(
        cls, projection: LatestProjection, events: list[tuple[Event, int]]
    ) -> Latest:
        """``events`` folded for ``projection``.

        Raises:
            TypeError: an event is not of the projection's topics (it was
                subscribed wrongly).
        """
        # Builtins over the list (each loop runs in C): a batch of a rebuild
        # can hold tens of thousands of events.
        found: list[Event] = list(map(_first, events))
        kinds: set[type[Event]] = set(map(type, found))
        strangers = {kind for kind in kinds if kind.TOPIC not in projection.topics}
        if strangers:
            names = ", ".join(sorted(kind.__name__ for kind in strangers))
            raise TypeError(f"{names} is not an event {projection.name!r} reads")
        keys = list(map(operator.attrgetter(projection.key), found))
        every = projection.every_topics
        return cls(
            dict(zip(keys, events, strict=True)),
            Counter(keys),
            [item for item in events if item[0].TOPIC in every] if every else [],
        )


_first = operator.itemgetter(0)


class LatestProjection(BatchProjection):
    """A projection whose rows each hold one key's latest state: every event of
    its topics records its aggregate's whole state after it, so of a batch
    only each key's last event changes a row (with the number of events per
    key, and the events of :attr:`every_topics`, which it needs in full).

    A rebuild hands it a :class:`Latest` made from the stored rows: it reads
    the key alone of each row (``eventlog.codec.key_decoder``) and decodes only
    each key's last event and the events of ``every_topics``.
    """

    #: The text field of its events that names the row an event changes.
    key: ClassVar[str]
    #: Stable topics of which it needs every event, in order, not only the last.
    every_topics: ClassVar[frozenset[str]] = frozenset()

    async def apply_batch(
        self, cur: psycopg.AsyncCursor[object], events: list[tuple[Event, int]]
    ) -> None:
        """Fold the batch (:meth:`Latest.of`) and write it."""
        await self.apply_latest(cur, Latest.of(self, events))

    @abstractmethod
    async def apply_latest(
        self, cur: psycopg.AsyncCursor[object], latest: Latest
    ) -> None:
        """Write each key's row after the batch folded in ``latest``."""


async def _head(conn: psycopg.AsyncConnection[object]) -> int:
    """The log head, read in a transaction of its own (``conn`` is not in
    autocommit: a read outside one would leave a transaction open)."""
    async with conn.transaction():
        return await log_head(conn)


class ProjectionRunner:
    """Keeps one projection current with the log.

    Started, it runs under a :class:`eventlog.supervision.Supervisor`: a
    failure (a dropped connection, the database restarting) is logged and the
    runner starts again from its tracked position after a backoff, so what it
    had not committed is applied then, exactly once.

    Args:
        projection: the read model to feed.
        database_url: PostgreSQL holding both the log and the projection tables.
        supervisor: runs and reports the runner's task (default: the
            process's, which ``/health`` reads).
        linger: seconds to wait after a notification before reading
            (:data:`LINGER_S`; 0 reads at once).
    """

    #: What the runner's task is called in health reports, before the name.
    kind: ClassVar[str] = "projection"

    def __init__(
        self,
        projection: Projection,
        database_url: str,
        *,
        supervisor: Supervisor | None = None,
        linger: float = LINGER_S,
    ) -> None:
        if linger < 0:
            raise ValueError(f"linger must be 0 or more seconds, got {linger}")
        self.projection = projection
        self.linger = linger
        # Whether the last step read a full batch (more may be waiting).
        self._more = False
        self.database_url = database_url
        self.supervisor = supervisor or default_supervisor()
        self._stored_topics = stored_topics(projection.topics)
        self.position = 0
        #: Most events read and applied in one transaction.
        self.batch_size = BATCH_SIZE
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._caught_up = asyncio.Condition()
        #: Set by the log's listener for commits of the projection's topics
        #: (None while not running).
        self._wake: asyncio.Event | None = None
        self._listener: LogListener | None = None
        #: Callers in :meth:`wait_for`.
        self._waiters = 0

    async def start(self) -> None:
        """Catch up in the background and keep following."""
        if self._task is None:
            self._stop.clear()
            self._task = self.supervisor.spawn(
                f"{self.kind} {self.projection.name}", self.run
            )

    async def stop(self) -> None:
        """Stop following (the position stays where the last commit left it)."""
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        """Follow the log until stopped (one attempt: a failure is raised).

        Woken through the process's one LISTEN on the log
        (:func:`eventlog.listen.listener_for`), shared by its runners.
        """
        listener = self._listener = listener_for(self.database_url)
        wake = self._wake = listener.subscribe(
            () if self._waiters else self._stored_topics
        )
        try:
            async with await psycopg.AsyncConnection.connect(self.database_url) as conn:
                await wait_listening(listener)
                await self._ensure_tracking(conn)
                notified = True
                while not self._stop.is_set():
                    # Woken by the safety timeout alone, a runner at the head
                    # has nothing to do: one query says so, not a step's
                    # transaction.
                    if notified or await _head(conn) > self.position:
                        wake.clear()
                        # A step that read less than a full batch reached the
                        # head it saw; what was committed since has set wake.
                        while await self.step(conn) and self._more:
                            pass
                    notified = await wait_set(wake, NOTIFY_SAFETY_S)
                    if notified and self.linger:
                        await asyncio.sleep(self.linger)
        finally:
            listener.unsubscribe(wake)
            self._wake = self._listener = None

    async def _ensure_tracking(self, conn: psycopg.AsyncConnection[object]) -> None:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO projection_tracking (name) VALUES (%s) "
                "ON CONFLICT (name) DO NOTHING",
                (self.projection.name,),
            )

    async def step(self, conn: psycopg.AsyncConnection[object]) -> int:
        """Apply the next batch in one transaction; return how many events."""
        async with conn.transaction():
            position, head, rows = await claim_and_read(
                conn, self.projection.name, self.batch_size, self._stored_topics
            )
            # Only the events this projection reads leave the database; the
            # position still moves over the others, up to the head seen.
            last = rows[-1][0] if len(rows) == self.batch_size else head
            self._more = len(rows) == self.batch_size
            if last <= position:
                self.position = position
                await self._notify_waiters()
                return 0
            events = [
                (decode_event(topic, state), notification_id)
                for notification_id, topic, state in rows
            ]
            async with conn.pipeline(), conn.cursor() as wcur:
                await apply_tracked(wcur, self.projection, events, last)
        self.position = last
        await self._notify_waiters()
        return last - position

    async def _notify_waiters(self) -> None:
        async with self._caught_up:
            self._caught_up.notify_all()

    async def wait_for(self, position: int, timeout: float = 30.0) -> None:
        """Return once the projection has applied the log up to ``position``.

        A runner is woken only by commits of the topics it reads, so its
        position stays behind commits of others until its next step: while a
        caller waits, the runner is woken by every commit, and at once.
        """
        if self.position >= position:
            return
        self._waiters += 1
        self._listen(every_commit=True)
        try:
            async with asyncio.timeout(timeout), self._caught_up:
                await self._caught_up.wait_for(lambda: self.position >= position)
        finally:
            self._waiters -= 1
            if not self._waiters:
                self._listen(every_commit=False)

    def _listen(self, *, every_commit: bool) -> None:
        """Have the running runner woken by every commit, or by those of its
        topics; woken at once for the former."""
        if self._listener is None or self._wake is None:
            return
        self._listener.retopic(self._wake, () if every_commit else self._stored_topics)
        if every_commit:
            self._wake.set()


def _claim_query(*, topics: bool) -> sql.Composed:
    """See :func:`claim_and_read` (with or without a filter on topics)."""
    only = sql.SQL(" AND topic = ANY(%s)") if topics else sql.SQL("")
    return sql.SQL(
        "SELECT t.position, h.head, e.notification_id, e.topic, e.state "
        "FROM (SELECT position FROM projection_tracking WHERE name = %s"
        " FOR UPDATE) AS t "
        "CROSS JOIN ({head}) AS h(head) "
        "LEFT JOIN LATERAL (SELECT notification_id, topic, state FROM {events}"
        " WHERE notification_id > t.position AND notification_id <= h.head{only}"
        " ORDER BY notification_id LIMIT %s) AS e ON true "
        "ORDER BY e.notification_id"
    ).format(events=sql.Identifier(EVENTS_TABLE), head=HEAD_QUERY, only=only)


_CLAIM_ALL = _claim_query(topics=False)
_CLAIM_TOPICS = _claim_query(topics=True)


async def claim_and_read(
    conn: psycopg.AsyncConnection[object],
    name: str,
    limit: int,
    topics: Sequence[str] = (),
) -> tuple[int, int, list[tuple[int, str, bytes]]]:
    """Lock projection ``name``'s position and read what follows it, in one
    statement (one round trip instead of three, each step of every runner).

    Runs inside the caller's transaction, which holds the lock until it
    commits. The head and the events come from the statement's snapshot: an
    event's position is taken under the log's table lock and kept until its
    transaction commits, so every position up to the head seen is visible.
    When another runner of the projection moved the position while this one
    waited for the lock, the new position is returned (PostgreSQL reads a
    locked row again once it is free) and the head may lie behind it: the
    caller then has nothing to apply.

    Args:
        conn: A connection in a transaction.
        name: The projection (its ``projection_tracking`` row must exist).
        limit: Most events returned.
        topics: Stored topics to return; empty returns every event.

    Returns:
        The tracked position, the log's head, and up to ``limit`` events
        after the position and up to the head, as (position, topic, state).
    """
    if topics:
        params: tuple[object, ...] = (name, list(topics), limit)
        query = _CLAIM_TOPICS
    else:
        params = (name, limit)
        query = _CLAIM_ALL
    cur = await conn.execute(query, params, binary=True)
    found = await cur.fetchall()
    if not found:
        raise LookupError(f"projection {name!r} has no tracking row")
    position, head = int(found[0][0]), int(found[0][1])  # type: ignore[index]
    rows = [
        (int(r[2]), str(r[3]), bytes(r[4]))  # type: ignore[index]
        for r in found
        if r[2] is not None  # type: ignore[index]
    ]
    return position, head, rows


async def rebuild(database_url: str, projection: Projection) -> int:
    """Empty the projection's tables and replay the whole log into them.

    Runs in transactions of :data:`BATCH_SIZE` events; returns the final position.
    """
    runner = ProjectionRunner(projection, database_url)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await runner._ensure_tracking(conn)
        async with conn.transaction():
            await conn.execute(
                "SELECT position FROM projection_tracking WHERE name = %s FOR UPDATE",
                (projection.name,),
            )
            for table in projection.tables:
                await conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(table)))
            await conn.execute(
                "UPDATE projection_tracking SET position = 0, updated_at = now() "
                "WHERE name = %s",
                (projection.name,),
            )
        while await runner.step(conn):
            pass
    return runner.position
