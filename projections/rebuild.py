"""Blue-green rebuilds: a new version of a projection's tables is built from the
log beside the serving one, then switched in atomically.

The serving version's tables are the ones readers use, in schema ``public``.
A rebuild creates schema ``proj_<name>_v<N>`` holding an empty copy of each
table (``LIKE ... INCLUDING ALL``) and feeds it the log on a connection whose
``search_path`` puts that schema first: the projection's own SQL, which names
its tables unqualified, writes the new version while the old one keeps
serving. Each page and the version's position (its row in
``projection_versions``) commit together, so a rebuild killed at any point
resumes where it stopped (that row also says which schema to go on with).

The switch is one transaction: it locks the serving version's tracking row
(so the live runner, if any, is between batches), moves the old tables out
and the new ones into ``public``, sets the serving position to the new
version's, records the switch in ``projection_versions`` and drops the old
version. A reader sees the old tables or the new ones, never neither; the
live runner goes on from the new position into the new tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import re
import time
import typing
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
import psycopg
from psycopg import sql

from domain.events import Event
from eventlog.codec import (
    EVENTS_TABLE,
    decode_event,
    key_decoder,
    parse_topic,
    topic_decoder,
)
from eventlog.log import HEAD_QUERY, log_head, stored_topics
from projections.base import Latest, LatestProjection, Projection, apply_events

#: Called with (position reached, position to reach) as a rebuild goes on.
Progress = Callable[[int, int], None]

#: Events a rebuild reads and applies in one transaction.
REBUILD_BATCH = 50_000
#: Pages that may wait for a version's writer while the pass reads on.
FEED_PAGES = 2

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


class RebuildError(Exception):
    """A projection cannot be rebuilt blue-green (the message says why)."""


@dataclass(frozen=True)
class VersionInfo:
    """One projection's serving version and any version being built."""

    name: str
    version: int
    position: int
    events_behind: int
    seconds_behind: float
    building: int | None = None
    building_position: int | None = None


def version_schema(name: str, version: int) -> str:
    """The schema holding version ``version`` of projection ``name`` while it
    is built."""
    return f"proj_{name}_v{version}"


def _check_name(projection: Projection) -> None:
    if not _NAME.match(projection.name):
        raise RebuildError(
            f"projection name {projection.name!r} must match {_NAME.pattern} "
            "to name a schema"
        )
    if not projection.tables:
        raise RebuildError(
            f"projection {projection.name!r} owns no tables: nothing to rebuild"
        )


async def _refusals(
    conn: psycopg.AsyncConnection[object], projections: Sequence[Projection]
) -> dict[str, str]:
    """Why each projection whose tables ``LIKE ... INCLUDING ALL`` would not
    copy faithfully cannot be rebuilt blue-green, by name (one catalog query for
    all): with triggers, foreign keys or sequences, a copy would lose rules or
    share counters with the old version."""
    tables = sorted({table for p in projections for table in p.tables})
    cur = await conn.execute(
        "SELECT c.relname, "
        "  EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid "
        "          AND NOT t.tgisinternal), "
        "  EXISTS (SELECT 1 FROM pg_constraint k WHERE k.contype = 'f' "
        "          AND (k.conrelid = c.oid OR k.confrelid = c.oid)), "
        "  EXISTS (SELECT 1 FROM pg_depend d WHERE d.refobjid = c.oid "
        "          AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') "
        "          AND d.objid IN (SELECT oid FROM pg_class WHERE relkind = 'S')) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relname = ANY(%s)",
        (tables,),
    )
    found: dict[str, tuple[bool, bool, bool]] = {
        str(r[0]): (bool(r[1]), bool(r[2]), bool(r[3]))  # type: ignore[index]
        for r in await cur.fetchall()
    }
    refused: dict[str, str] = {}
    for projection in projections:
        for table in projection.tables:
            if table not in found:
                refused[projection.name] = (
                    f"table {table!r} of {projection.name!r} does not exist"
                )
                break
            why = [
                w
                for w, has in zip(
                    ("triggers", "foreign keys", "sequences"), found[table], strict=True
                )
                if has
            ]
            if why:
                refused[projection.name] = (
                    f"table {table!r} of {projection.name!r} has "
                    f"{' and '.join(why)}: a blue-green copy would not keep them; "
                    "rebuild it in place"
                )
                break
    return refused


async def uncopyable(
    database_url: str, projections: Sequence[Projection]
) -> dict[str, str]:
    """Why each projection that cannot be rebuilt blue-green cannot, by name."""
    refused: dict[str, str] = {}
    named = []
    for projection in projections:
        try:
            _check_name(projection)
            named.append(projection)
        except RebuildError as exc:
            refused[projection.name] = str(exc)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        refused.update(await _refusals(conn, named))
    return refused


async def _serving_version(conn: psycopg.AsyncConnection[object], name: str) -> int:
    cur = await conn.execute(
        "SELECT version FROM projection_versions WHERE name = %s "
        "AND status = 'serving'",
        (name,),
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 1  # type: ignore[index]


async def _building(
    conn: psycopg.AsyncConnection[object], names: Sequence[str]
) -> dict[str, tuple[int, str, int]]:
    """The versions of the projections ``names`` being built, by name: each
    one's number, schema and position."""
    cur = await conn.execute(
        "SELECT name, version, schema_name, position FROM projection_versions "
        "WHERE name = ANY(%s) AND status = 'building'",
        (list(names),),
    )
    return {
        str(r[0]): (int(r[1]), str(r[2]), int(r[3]))  # type: ignore[index]
        for r in await cur.fetchall()
    }


async def _start_all(
    conn: psycopg.AsyncConnection[object], builds: list[_Build]
) -> None:
    """Start every version not resumed (its schema, empty tables and row in
    ``projection_versions``), in one transaction.

    The tables of all versions are made by one script in one round trip: the
    pass decodes its first page meanwhile, and a statement at a time would
    wait for the event loop between each.
    """
    names = [build.projection.name for build in builds]
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO projection_tracking (name) SELECT unnest(%s::text[]) "
            "ON CONFLICT (name) DO NOTHING",
            (names,),
        )
        new = [build for build in builds if not build.resumed]
        if not new:
            return
        if refused := await _refusals(conn, [build.projection for build in new]):
            raise RebuildError(next(iter(refused.values())))
        cur = await conn.execute(
            "SELECT name, max(version) FROM projection_versions "
            "WHERE name = ANY(%s) GROUP BY name",
            (names,),
        )
        latest = {str(r[0]): int(r[1]) for r in await cur.fetchall()}  # type: ignore[index]
        for build in new:
            name = build.projection.name
            build.version = latest.get(name, 1) + 1
            build.schema = version_schema(name, build.version)
        await conn.execute(sql.SQL("; ").join(_version_ddl(build) for build in new))


def _version_ddl(build: _Build) -> sql.Composed:
    """The statements that make a new version of the build's projection: its
    schema and empty tables, and its row in ``projection_versions`` (which
    keeps its position)."""
    name, schema = sql.Literal(build.projection.name), sql.Identifier(build.schema)
    statements = [
        sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema),
        sql.SQL("CREATE SCHEMA {}").format(schema),
        *(
            sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(
                sql.Identifier(build.schema, table), sql.Identifier("public", table)
            )
            for table in build.projection.tables
        ),
        sql.SQL(
            "INSERT INTO projection_versions (name, version, schema_name, status) "
            "VALUES ({}, {}, {}, 'building')"
        ).format(name, sql.Literal(build.version), sql.Literal(build.schema)),
    ]
    return sql.SQL("; ").join(statements)


@dataclass
class _Build:
    """One version being built: its projection, schema, connection, position."""

    projection: Projection
    version: int = 0
    schema: str = ""
    #: Whether a killed rebuild left this version (it goes on from its position).
    resumed: bool = False
    conn: psycopg.AsyncConnection[object] | None = None
    position: int = 0
    topics: frozenset[str] | None = field(init=False)

    def __post_init__(self) -> None:
        topics = self.projection.topics
        self.topics = frozenset(stored_topics(topics)) if topics else None

    def reads(self, topic: str) -> bool:
        """Whether the version reads events stored under ``topic``."""
        return self.topics is None or topic in self.topics


async def _connect(database_url: str) -> psycopg.AsyncConnection[Any]:
    """A writer's connection (its search path is set once its version exists)."""
    return await psycopg.AsyncConnection.connect(
        database_url, options="-c synchronous_commit=off"
    )


async def _prepare(build: _Build, conn: psycopg.AsyncConnection[Any]) -> None:
    """Give the build its connection, pointed at its version's tables
    (unqualified table names are the version's)."""
    build.conn = conn
    await conn.execute(
        "SELECT set_config('search_path', %s, false)", (f"{build.schema},public",)
    )
    await conn.commit()


async def _write(build: _Build, events: _Page, last: int) -> None:
    """Apply ``events`` to the version and move its position to ``last``, in one
    transaction."""
    conn = build.conn
    if conn is None or last <= build.position:
        return
    async with conn.transaction(), conn.pipeline(), conn.cursor() as cur:
        await apply_events(cur, build.projection, events)
        await cur.execute(
            "UPDATE public.projection_versions SET position = %s "
            "WHERE name = %s AND version = %s",
            (last, build.projection.name, build.version),
        )
    build.position = last


#: How the rows of one stored topic are read: its decoder (none when no
#: version reads it), the versions that take its events, and the groups of
#: latest-state versions that read it, each with the decoder of its key alone
#: (none: decode the event) and whether it needs every event of the topic.
_Route = tuple[
    "Callable[[bytes], Event] | None",
    list[_Build],
    list[tuple["_Keyed", "Callable[[bytes], str] | None", bool]],
]


class _Keyed:
    """The versions of latest-state projections (:class:`LatestProjection`)
    that read the same topics by the same key from the same position: the pass
    folds each page into one :class:`Latest` for all of them.

    Of a row, it reads only the key (``eventlog.codec.key_decoder``); it
    decodes each key's last event when the page ends, and at once the events
    of the projections' ``every_topics`` (and of a topic's older versions,
    which an upcaster may change).
    """

    def __init__(self, builds: list[_Build]) -> None:
        projections = [typing.cast("LatestProjection", b.projection) for b in builds]
        self.builds = builds
        self.key = projections[0].key
        self.every: frozenset[str] = frozenset().union(
            *(projection.every_topics for projection in projections)
        )
        self.position = builds[0].position
        self.keys: list[str] = []
        self.rows: list[tuple[int, str, bytes]] = []
        #: The events of the page decoded whole, by position.
        self.decoded: dict[int, Event] = {}
        #: The positions of the page's events of ``every``.
        self.kept: list[int] = []

    def sink(self, topic: str) -> tuple[_Keyed, Callable[[bytes], str] | None, bool]:
        """How the group takes a row stored under ``topic``."""
        every = parse_topic(topic)[0] in self.every
        return self, None if every else key_decoder(topic, self.key), every

    def take(self) -> Latest:
        """The page's rows folded, from the group's position on; the group is
        then empty for the next page."""
        keys, rows, decoded = self.keys, self.rows, self.decoded
        if rows and rows[0][0] <= self.position:
            # A resumed version skips what it had committed before it stopped.
            kept = [
                pair
                for pair in zip(keys, rows, strict=True)
                if pair[1][0] > self.position
            ]
            keys = [key for key, _ in kept]
            rows = [row for _, row in kept]
        last: dict[str, tuple[Event, int]] = {}
        for key, (position, topic, state) in dict(zip(keys, rows, strict=True)).items():
            event = decoded.get(position)
            last[key] = (_decode(topic, state) if event is None else event, position)
        every = [(decoded[p], p) for p in self.kept if p > self.position]
        self.keys, self.rows, self.decoded, self.kept = [], [], {}, []
        return Latest(last, Counter(keys), every)


def _keyed_groups(builds: list[_Build]) -> list[_Keyed]:
    """The builds of latest-state projections, grouped (:class:`_Keyed`)."""
    groups: dict[tuple[str, frozenset[str] | None, int], list[_Build]] = {}
    for build in builds:
        if isinstance(build.projection, LatestProjection):
            kind = (build.projection.key, build.topics, build.position)
            groups.setdefault(kind, []).append(build)
    return [_Keyed(members) for members in groups.values()]


def _route(topic: str, plain: list[_Build], groups: list[_Keyed]) -> _Route:
    readers = [build for build in plain if build.reads(topic)]
    keyed = [group.sink(topic) for group in groups if group.builds[0].reads(topic)]
    decode = topic_decoder(topic) if readers or keyed else None
    return decode, readers, keyed


def _decode(topic: str, state: bytes) -> Event:
    """The event of one row (an undecodable one raises, naming the topic)."""
    try:
        return topic_decoder(topic)(state)
    except (msgspec.DecodeError, msgspec.ValidationError):
        decode_event(topic, state)  # raises, naming the topic
        raise


def _page(
    rows: list[tuple[int, str, bytes]],
    builds: list[_Build],
    groups: list[_Keyed],
    routes: dict[str, _Route],
) -> list[_Page]:
    """Each version's events of ``rows`` (those it reads), each row decoded
    once: a list of events, or for a version in one of ``groups`` its group's
    :class:`Latest`."""
    grouped = {id(build) for group in groups for build in group.builds}
    plain = [build for build in builds if id(build) not in grouped]
    pages: dict[int, list[tuple[Event, int]]] = {id(build): [] for build in plain}
    # Per topic of this page: its decoder, where its events go, which groups
    # take its rows.
    sinks: dict[str, tuple[Callable[[bytes], Event] | None, list[Any], list[Any]]] = {}
    for row in rows:
        position, topic, state = row
        sink = sinks.get(topic)
        if sink is None:
            route = routes.get(topic)
            if route is None:
                route = routes[topic] = _route(topic, plain, groups)
            decode, readers, keyed = route
            appends = [pages[id(build)].append for build in readers]
            sink = sinks[topic] = (decode, appends, keyed)
        decode, appends, keyed = sink
        if decode is None:
            continue
        try:
            event = None
            if appends:
                event = decode(state)
                item = (event, position)
                for append in appends:
                    append(item)
            for group, key_of, every in keyed:
                if key_of is not None:
                    group.keys.append(key_of(state))
                else:
                    if event is None:
                        event = decode(state)
                    group.keys.append(getattr(event, group.key))
                    group.decoded[position] = event
                    if every:
                        group.kept.append(position)
                group.rows.append(row)
        except (msgspec.DecodeError, msgspec.ValidationError):
            decode_event(topic, state)  # raises, naming the topic
            raise
    return _assemble(builds, pages, groups)


#: What a version gets of a page: its events, or its group's fold of them.
_Page = list[tuple[Event, int]] | Latest


def _assemble(
    builds: list[_Build],
    pages: dict[int, list[tuple[Event, int]]],
    groups: list[_Keyed],
) -> list[_Page]:
    """Each version's page: its own events (by ``id`` of the build, in
    ``pages``) or its group's :class:`Latest`."""
    of_group: dict[int, Latest] = {}
    for group in groups:
        latest = group.take()
        for build in group.builds:
            of_group[id(build)] = latest
    out: list[_Page] = []
    for build in builds:
        if id(build) in of_group:
            out.append(of_group[id(build)])
            continue
        page = pages[id(build)]
        # A resumed version skips what it had committed before it was stopped.
        if page and page[0][1] <= build.position:
            page = [e for e in page if e[1] > build.position]
        out.append(page)
    return out


class _Feed:
    """One version's writer: it writes the pages put to it, in order, on the
    version's connection, while the pass goes on reading (at most
    :data:`FEED_PAGES` pages wait for it)."""

    def __init__(self, build: _Build) -> None:
        self.build = build
        self.queue: asyncio.Queue[tuple[_Page, int] | None] = asyncio.Queue(
            maxsize=FEED_PAGES
        )
        self.error: BaseException | None = None
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while (item := await self.queue.get()) is not None:
            if self.error is None:
                try:
                    await _write(self.build, *item)
                except Exception as exc:  # raised by the pass, see check()
                    self.error = exc

    async def put(self, item: tuple[_Page, int] | None) -> None:
        """Hand the writer a page and its last position (None: the end)."""
        self.check()
        await self.queue.put(item)

    def check(self) -> None:
        """Raise what made the writer fail, if anything did."""
        if self.error is not None:
            raise self.error


async def _stop(feeds: list[_Feed]) -> None:
    for feed in feeds:
        feed.task.cancel()
    await asyncio.gather(*(feed.task for feed in feeds), return_exceptions=True)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a pass over the log.

    A page's events are freed by reference counting as soon as every version
    has written them; the collector would only walk the live pages over and
    over (about a third of a rebuild's time). It runs again, as it was, when
    the pass ends.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


async def _open_all(
    stack: contextlib.AsyncExitStack, database_url: str, count: int
) -> list[psycopg.AsyncConnection[Any]]:
    """``count`` connections (:func:`_connect`), opened side by side; all are
    closed when ``stack`` closes, whichever failed to open."""
    opened = await asyncio.gather(
        *(_connect(database_url) for _ in range(count)), return_exceptions=True
    )
    for conn in opened:
        if not isinstance(conn, BaseException):
            await stack.enter_async_context(conn)
    for failure in opened:
        if isinstance(failure, BaseException):
            raise failure
    return typing.cast("list[psycopg.AsyncConnection[Any]]", opened)


async def _open_reader(
    stack: contextlib.AsyncExitStack, database_url: str
) -> psycopg.Connection[Any]:
    """The pass's reading connection, closed when ``stack`` closes.

    It is a blocking connection: each page is fetched in a thread (the
    connection waits for the server without the interpreter's lock) while the
    event loop decodes and writes the previous one.
    """
    conn: psycopg.Connection[Any] = await asyncio.to_thread(
        psycopg.connect, database_url
    )
    stack.callback(conn.close)
    return conn


def _head(conn: psycopg.Connection[Any]) -> int:
    """Position of the newest event in the log (0 if empty)."""
    row = conn.execute(HEAD_QUERY).fetchone()
    return int(row[0]) if row else 0


def _fetch(
    cur: psycopg.ServerCursor[Any], batch: int
) -> asyncio.Future[list[tuple[int, str, bytes]]]:
    """The next page of ``cur``, read in a thread."""
    return asyncio.ensure_future(asyncio.to_thread(cur.fetchmany, batch))


async def _catch_up(
    database_url: str,
    builds: list[_Build],
    started: asyncio.Task[None],
    batch: int,
    progress: Progress | None,
) -> None:
    """Feed every version being built the log up to the head seen now, in one
    pass.

    Only the topics some version reads leave the database; each row is decoded
    once, whatever number of versions read it, and each version gets the page's
    events it reads in one transaction. The next page is fetched (in a
    thread, :func:`_open_reader`) while the event loop decodes this one. Each
    version writes its pages on a connection of its own, in order, while the
    pass reads and decodes on: a slow version holds the others back only when
    its queue is full. The versions' tables may still be being made
    (``started``) while the pass reads and decodes its first page: the writers
    begin once they exist.
    """
    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(_collector_paused())
        writers, reader = await asyncio.gather(
            _open_all(stack, database_url, len(builds)),
            _open_reader(stack, database_url),
        )

        async def writing() -> list[_Feed]:
            """Each version's writer, once its tables exist."""
            await started
            await asyncio.gather(
                *(_prepare(b, c) for b, c in zip(builds, writers, strict=True))
            )
            feeds = [_Feed(build) for build in builds]
            stack.push_async_callback(_stop, feeds)
            return feeds

        feeds = await writing() if started.done() else None
        target = await asyncio.to_thread(_head, reader)
        where: sql.Composable = sql.SQL(
            "notification_id > %s AND notification_id <= %s"
        )
        params: list[object] = [min(build.position for build in builds), target]
        if all(build.topics is not None for build in builds):
            where += sql.SQL(" AND topic = ANY(%s)")
            params.append(sorted(set().union(*(b.topics or () for b in builds))))
        groups = _keyed_groups(builds)
        routes: dict[str, _Route] = {}
        with (
            reader.transaction(),
            reader.cursor(name="rebuild", binary=True) as cur,
        ):
            await asyncio.to_thread(
                cur.execute,
                sql.SQL(
                    "SELECT notification_id, topic, state FROM {} WHERE {} "
                    "ORDER BY notification_id"
                ).format(sql.Identifier(EVENTS_TABLE), where),
                params,
            )
            ahead = _fetch(cur, batch)
            try:
                while fetched := await ahead:
                    # The next page is read while this one is decoded and written.
                    ahead = _fetch(cur, batch)
                    pages = _page(fetched, builds, groups, routes)
                    last = int(fetched[-1][0])
                    if feeds is None:
                        feeds = await writing()
                    for feed, page in zip(feeds, pages, strict=True):
                        if page:
                            await feed.put((page, last))
                    if progress is not None:
                        progress(last, target)
                    # Free the page before waiting for the next: the last one
                    # would still be alive when the collector resumes, and it
                    # would walk all of its objects once (a tenth of a second
                    # per page).
                    del pages
            finally:
                # The connection is the thread's until its fetch ends.
                await asyncio.gather(ahead, return_exceptions=True)
        if feeds is None:
            feeds = await writing()
        for feed in feeds:
            await feed.put(None)
        await asyncio.gather(*(feed.task for feed in feeds))
        for feed in feeds:
            feed.check()
        # Every version reaches the head seen, over the rows none of it reads.
        await asyncio.gather(*(_write(build, [], target) for build in builds))
        if progress is not None:
            progress(target, target)


async def _switch_all(
    conn: psycopg.AsyncConnection[object], builds: list[_Build]
) -> dict[str, int]:
    """Put each built version in place of the serving one, all in one
    transaction (atomically); by name, the position each was switched in at.

    The positions and serving versions are read in one query each and the
    switch is one script: a round trip for each statement of each projection
    was most of the switch's time.
    """
    names = [build.projection.name for build in builds]
    async with conn.transaction():
        # A live runner holds its row while it applies a batch: wait for it.
        await conn.execute(
            "SELECT name FROM public.projection_tracking WHERE name = ANY(%s) "
            "ORDER BY name FOR UPDATE",
            (names,),
        )
        cur = await conn.execute(
            "SELECT name, position FROM projection_versions WHERE name = ANY(%s) "
            "AND status = 'building'",
            (names,),
        )
        positions = {str(r[0]): int(r[1]) for r in await cur.fetchall()}  # type: ignore[index]
        cur = await conn.execute(
            "SELECT name, version FROM projection_versions WHERE name = ANY(%s) "
            "AND status = 'serving'",
            (names,),
        )
        serving = {str(r[0]): int(r[1]) for r in await cur.fetchall()}  # type: ignore[index]
        await conn.execute(
            sql.SQL("; ").join(
                _switch_ddl(
                    build,
                    positions.get(build.projection.name, 0),
                    serving.get(build.projection.name, 1),
                )
                for build in builds
            )
        )
    return {name: positions.get(name, 0) for name in names}


def _switch_ddl(build: _Build, position: int, old: int) -> sql.Composed:
    """The statements that put the build's version in place of version
    ``old`` at ``position``, then drop the old version's tables."""
    name = sql.Literal(build.projection.name)
    retired = version_schema(build.projection.name, old)
    statements: list[sql.Composable] = [
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(retired))
    ]
    for table in build.projection.tables:
        statements += [
            sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                sql.Identifier("public", table), sql.Identifier(retired)
            ),
            sql.SQL("ALTER TABLE {} SET SCHEMA public").format(
                sql.Identifier(build.schema, table)
            ),
        ]
    statements += [
        sql.SQL(
            "UPDATE public.projection_tracking SET position = {}, "
            "updated_at = now() WHERE name = {}"
        ).format(sql.Literal(position), name),
        sql.SQL(
            "INSERT INTO projection_versions (name, version, schema_name, status, "
            "switched_at) VALUES ({}, {}, 'public', 'retired', now()) "
            "ON CONFLICT (name, version) DO UPDATE SET status = 'retired', "
            "switched_at = now()"
        ).format(name, sql.Literal(old)),
        sql.SQL(
            "UPDATE projection_versions SET status = 'serving', schema_name = "
            "'public', switched_at = now() WHERE name = {} AND version = {}"
        ).format(name, sql.Literal(build.version)),
        *(
            sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(gone))
            for gone in (retired, build.schema)
        ),
    ]
    return sql.SQL("; ").join(statements)


async def rebuild_blue_green(
    database_url: str,
    projection: Projection,
    *,
    batch: int = REBUILD_BATCH,
    progress: Progress | None = None,
) -> tuple[int, int]:
    """Build a new version of ``projection`` from the log and switch it in.

    Resumes the version a killed rebuild left. Returns the version now serving
    and the log position it was switched in at.

    Raises:
        RebuildError: the projection's tables cannot be copied (see the message),
            or another rebuild of it is running.
    """
    done = await rebuild_many(
        database_url, [projection], batch=batch, progress=progress
    )
    return done[projection.name]


async def rebuild_many(
    database_url: str,
    projections: Sequence[Projection],
    *,
    batch: int = REBUILD_BATCH,
    progress: Progress | None = None,
) -> dict[str, tuple[int, int]]:
    """Build a new version of each projection in one pass over the log, then
    switch each in; by name, the version now serving and its position.

    Raises:
        RebuildError: a projection's tables cannot be copied, or another
            rebuild of one of them is running (nothing was switched).
    """
    for projection in projections:
        _check_name(projection)
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True
    ) as conn:
        names = [projection.name for projection in projections]
        cur = await conn.execute(
            "SELECT name, "
            "pg_try_advisory_lock(hashtext('projection_rebuild:' || name)) "
            "FROM unnest(%s::text[]) WITH ORDINALITY AS n(name, i) ORDER BY i",
            (names,),
        )
        for name, locked in await cur.fetchall():
            if not locked:
                raise RebuildError(
                    f"another rebuild of {name!r} is running; wait for it"
                )
        # The versions killed rebuilds left (the locks keep them as they are).
        building = await _building(conn, names)
        builds = [_Build(projection) for projection in projections]
        for build in builds:
            if build.projection.name in building:
                build.version, build.schema, build.position = building[
                    build.projection.name
                ]
                build.resumed = True
        await conn.set_autocommit(False)
        # Every version is started in one transaction and switched in in
        # another: all are switched or none, and a rebuild of many waits for
        # one commit twice.
        # New versions are started while the pass reads its first page (it
        # starts from the positions the resumed ones reached, read above).
        started = asyncio.create_task(_start_all(conn, builds))
        try:
            await _catch_up(database_url, builds, started, batch, progress)
        finally:
            if not started.done():
                started.cancel()
            await asyncio.gather(started, return_exceptions=True)
        positions = await _switch_all(conn, builds)
        return {
            b.projection.name: (b.version, positions[b.projection.name]) for b in builds
        }


async def _event_time(
    conn: psycopg.AsyncConnection[object], position: int
) -> datetime | None:
    cur = await conn.execute(
        sql.SQL("SELECT topic, state FROM {} WHERE notification_id = %s").format(
            sql.Identifier(EVENTS_TABLE)
        ),
        (position,),
        binary=True,
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return decode_event(str(row[0]), bytes(row[1])).occurred_at  # type: ignore[index]


async def list_versions(
    database_url: str, projections: Sequence[Projection]
) -> list[VersionInfo]:
    """Each projection's serving version, position and lag, and the version
    being built, if any, with its position."""
    infos = []
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        head = await log_head(conn)
        head_time = await _event_time(conn, head)
        versions = await _building(conn, [p.name for p in projections])
        for projection in projections:
            cur = await conn.execute(
                "SELECT position FROM projection_tracking WHERE name = %s",
                (projection.name,),
            )
            row = await cur.fetchone()
            position = int(row[0]) if row else 0
            seconds = 0.0
            if position < head and head_time is not None:
                then = await _event_time(conn, position + 1)
                if then is not None:
                    seconds = max((head_time - then).total_seconds(), 0.0)
            building = versions.get(projection.name)
            infos.append(
                VersionInfo(
                    name=projection.name,
                    version=await _serving_version(conn, projection.name),
                    position=position,
                    events_behind=head - position,
                    seconds_behind=seconds,
                    building=None if building is None else building[0],
                    building_position=None if building is None else building[2],
                )
            )
    return infos


class ProgressBar:
    """A one-line progress bar on a text stream: done, rate and time left.

    Args:
        label: what is being done (shown first).
        write: where the line goes (e.g. ``sys.stderr.write``).
        clock: monotonic seconds (injected for tests).
        every: least seconds between two redraws.
    """

    WIDTH = 30

    def __init__(
        self,
        label: str,
        write: Callable[[str], object],
        *,
        clock: Callable[[], float] = time.monotonic,
        every: float = 0.2,
    ) -> None:
        self.label = label
        self._write = write
        self._clock = clock
        self._every = every
        self._start = clock()
        self._first: int | None = None
        self._drawn = float("-inf")

    def __call__(self, position: int, target: int) -> None:
        """Redraw for ``position`` of ``target`` (at most every ``every`` s)."""
        now = self._clock()
        if self._first is None:
            self._first = position
        if position < target and now - self._drawn < self._every:
            return
        self._drawn = now
        self._write("\r" + self.line(position, target, now))
        if position >= target:
            self._write("\n")

    def line(self, position: int, target: int, now: float) -> str:
        """The bar's text at ``now``."""
        done = 1.0 if target <= 0 else min(position / target, 1.0)
        filled = int(done * self.WIDTH)
        elapsed = max(now - self._start, 1e-9)
        rate = (position - (self._first or 0)) / elapsed
        left = (target - position) / rate if rate > 0 else float("inf")
        eta = "--" if left == float("inf") else f"{left:.0f}s"
        return (
            f"{self.label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] "
            f"{done:4.0%} {position:,}/{target:,}  {rate:,.0f} events/s  "
            f"{eta} left"
        )
