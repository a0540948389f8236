"""Group commit: many concurrent commands, one transaction.

Every insert into the log takes an EXCLUSIVE table lock (so commit order equals
log order), which serialises writers. Throughput therefore comes from putting
the commands that arrive together into one transaction: the committer drains
whatever is queued, decides each command against the latest state (including
earlier commands of the same batch), stores all their events at once, and only
then answers each caller. Each caller still hears back only after its events
are durable.

A batch that loses an optimistic-concurrency race (another hub process wrote to
one of its aggregates) is decided again from freshly loaded state.

A write whose connection failed may still have been stored (the commit reached
PostgreSQL, its answer did not): the committer then looks for its own events,
by their ids, and answers as stored if they are there, so a command stored on
its first attempt is never answered as if it were a repeat. A store that stays
unreachable answers :class:`StoreUnavailableError` (``store_unavailable``).

Idempotency: a command's ``request_id`` is recorded in ``command_requests``
with the versions it stored, in the same transaction as its events (one
statement for the batch). A retry is recognised there for
:data:`REQUEST_WINDOW_DAYS` days, however many commands came between, and is
answered with the positions and events its first attempt stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from domain.events import Context, DomainError, Event, project
from eventlog.supervision import Supervisor, default_supervisor, describe
from hub.infra.runtime import cancel_and_wait
from hub.infra.store import HubApplication, RequestKey
from hub.service.snapshots import Snapshots

log = logging.getLogger(__name__)

MAX_BATCH = 2000
MAX_CONFLICT_RETRIES = 8
CACHE_SIZE = 100_000
#: How long :meth:`GroupCommitter.stop` lets queued commands finish.
STOP_TIMEOUT_S = 10.0
#: Days a command's ``request_id`` is remembered in ``command_requests``.
REQUEST_WINDOW_DAYS = 7


class StoreUnavailableError(RuntimeError):
    """The store failed under a command (PostgreSQL down or unreachable).

    Whether the command is stored is then unknown to the caller: sending it
    again with the same ``request_id`` applies it once either way.
    """

    code = "store_unavailable"


class AggregateRules(Protocol):
    """What the committer needs to know about one kind of aggregate."""

    def aggregate_id(self, command: Any) -> uuid.UUID:
        """The id of the aggregate the command addresses."""
        ...

    def decide(self, state: Any, command: Any, ctx: Context) -> list[Event]:
        """New events for ``command`` given ``state`` (or a ``DomainError``)."""
        ...

    def mutate(self, event: Any, state: Any) -> Any:
        """``state`` evolved by ``event``."""
        ...

    # Optionally, ``request_key(command) -> str | None``: the command's
    # idempotency key, recorded in ``command_requests`` with its events.


@dataclass(slots=True)
class Outcome:
    """What a command did: its events and their log positions (empty if a retry)."""

    aggregate_id: uuid.UUID
    version: int
    events: tuple[Event, ...]
    positions: tuple[int, ...]
    state: Any = None


@dataclass(slots=True)
class _Pending:
    command: Any
    rules: AggregateRules
    future: asyncio.Future[Outcome]
    #: Asked for by a reactor (:meth:`GroupCommitter.react`); its own events
    #: call for no further reactions.
    reaction: bool = False
    #: The causal ids its events carry (None: a command from outside, whose
    #: events start a correlation of their own).
    correlation_id: str | None = None
    causation_id: uuid.UUID | None = None
    aggregate_id: uuid.UUID = field(init=False)
    #: The command's idempotency key, if it has one.
    request_id: str | None = field(init=False)
    #: What an earlier attempt of the same ``request_id`` stored: positions
    #: and events (a repeat is answered with them, not with "nothing").
    repeat: tuple[list[int], list[Event]] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.aggregate_id = self.rules.aggregate_id(self.command)
        # Only rules that say so have an idempotency key (a stock push's
        # request id names the push, and its rounds share it).
        key = getattr(self.rules, "request_key", None)
        self.request_id = None if key is None else key(self.command)


_Decision = tuple[
    dict[uuid.UUID, Any],
    list[tuple["_Pending", list[Event], Any]],
    list[tuple["_Pending", DomainError]],
    list["_Pending"],
]


@dataclass(slots=True)
class _Flight:
    """A decided batch whose events are being written."""

    batch: list[_Pending]
    states: dict[uuid.UUID, Any]
    decided: list[tuple[_Pending, list[Event], Any]]
    refused: list[tuple[_Pending, DomainError]]
    write: asyncio.Future[list[int]]
    #: The batch's events, in log order.
    events: list[Event] = field(default_factory=list)
    #: Reactions that could not be decided in the batch: queued once it lands.
    deferred: list[_Pending] = field(default_factory=list)


def utc_now() -> datetime:
    """The production clock."""
    return datetime.now(UTC)


def _held(
    batch: list[_Pending],
    flight: _Flight | None,
    getter: asyncio.Future[_Pending] | None,
) -> list[_Pending]:
    """Every command a committing task holds: the batch being decided, the
    one being written, and one taken off the queue."""
    held = batch + (flight.batch if flight is not None else [])
    if getter is not None and getter.done() and not getter.cancelled():
        held.append(getter.result())
    return held


def _request_keys(
    decided: list[tuple[_Pending, list[Event], Any]],
) -> list[RequestKey]:
    """The idempotency keys of the decided commands that stored events."""
    return [
        RequestKey(
            pending.aggregate_id,
            pending.request_id,
            events[0].originator_version,
            events[-1].originator_version,
        )
        for pending, events, _ in decided
        if events and pending.request_id is not None
    ]


#: Told the events of every batch once they are durable, in log order.
DurableListener = Callable[[Sequence[Event]], None]
#: Given one command's new events, the commands they call for (rules, command).
Reactor = Callable[[Sequence[Event]], list[tuple["AggregateRules", Any]]]


def log_unawaited(future: asyncio.Future[Any]) -> None:
    """Done callback of a command nobody awaits (a reaction, a report): takes
    its outcome so none goes unretrieved; a refusal is logged at debug level,
    any other failure as a warning."""
    if future.cancelled():
        return
    exc = future.exception()
    if isinstance(exc, DomainError):
        log.debug("an unawaited command was refused: %s", exc)
    elif exc is not None:
        log.warning("an unawaited command failed: %s", exc)


class GroupCommitter:
    """Runs commands against aggregates, committing them in groups.

    In-process followers that must react fast (the order-stock process, the
    outbound dispatcher) can :meth:`listen`: each batch's events are handed to
    them the moment the batch is durable, in log order, before its callers are
    answered, with no NOTIFY and no read of the log in between. Such a
    reaction is a shortcut only: the follower's log-driven path still handles
    every event (idempotently), so nothing depends on a listener having run.

    Args:
        app: the event store application.
        clock: returns the current time (injected for deterministic tests).
        new_id: returns fresh event ids.
        max_batch: upper bound of commands in one transaction.
        supervisor: runs the committing task, starting it again after a
            failure (default: the process's).
    """

    def __init__(
        self,
        app: HubApplication,
        *,
        clock: Callable[[], datetime] = utc_now,
        new_id: Callable[[], uuid.UUID] = uuid.uuid4,
        max_batch: int = MAX_BATCH,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._app = app
        self._supervisor = supervisor or default_supervisor()
        self._clock = clock
        self._new_id = new_id
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._cache: OrderedDict[uuid.UUID, Any] = OrderedDict()
        #: Aggregates whose cached state a batch being written left (not yet
        #: durable), with how many such batches.
        self._unlanded: Counter[uuid.UUID] = Counter()
        self._worker: asyncio.Task[None] | None = None
        self._listeners: list[DurableListener] = []
        self._reactors: list[Reactor] = []
        #: Number of transactions committed and commands carried (for tests, bench).
        self.transactions = 0
        self.commands = 0
        #: Where long histories load from (None: every load folds from the
        #: first event); set by the composition root.
        self.snapshots: Snapshots | None = None

    def listen(self, listener: DurableListener) -> None:
        """Hand ``listener`` every batch's events once durable (see the class).

        A listener runs on the committer's task: it must be quick and must not
        raise (an exception is logged and ignored).
        """
        self._listeners.append(listener)

    def react(self, reactor: Reactor) -> None:
        """Run the commands ``reactor`` asks for in the same transaction as
        the events that called for them.

        After each command is decided, its events are handed to every reactor;
        each command a reactor returns is decided right after it, on the state
        the batch has left, and stored with it: atomically, one group commit
        instead of two. A command whose aggregate this committer has not
        loaded is queued instead once the batch is durable. Nothing waits for
        reaction commands and their refusals are only logged at debug level:
        a reactor is a shortcut for a follower whose log-driven path runs the
        same commands again, idempotently (see
        :class:`hub.service.processes.OrderStockProcess`). Reactions of reactions are
        not run. A reactor must be quick and must not raise.
        """
        self._reactors.append(reactor)

    def unlisten(self, listener: DurableListener) -> None:
        """Stop handing batches to ``listener``."""
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def submit(
        self, rules: AggregateRules, command: Any, *, cause: Event | None = None
    ) -> asyncio.Future[Outcome]:
        """Queue ``command`` now and return its future (what :meth:`execute`
        awaits). Commands submitted one after another are decided in that
        order. A listener uses this to react without awaiting.

        ``cause`` is the event that calls for the command: its events then
        carry the cause's correlation id, and its id as their causation id.
        Without one, the command's request id (or a fresh id) correlates them.
        """
        if self._worker is None:
            raise RuntimeError("GroupCommitter.start() was not called")
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        pending = _Pending(command, rules, future)
        if cause is not None:
            pending.correlation_id = cause.correlation_id
            pending.causation_id = cause.event_id
        self._queue.put_nowait(pending)
        return future

    def _tell(self, events: list[Event]) -> None:
        if not events:
            return
        for listener in self._listeners:
            try:
                listener(events)
            except Exception:
                log.exception("durable listener %r failed", listener)

    async def start(self) -> None:
        """Start the committing task (supervised: a failure fails the commands
        it held, is logged, and the task starts again)."""
        if self._worker is None:
            self._worker = self._supervisor.spawn("committer", self._run)

    async def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Finish what is queued (for at most ``timeout_s``), then stop.

        Commands still unanswered then fail with :class:`StoreUnavailableError`.
        """
        if self._worker is None:
            return
        try:
            async with asyncio.timeout(timeout_s):
                await self._queue.join()
        except TimeoutError:
            log.error(
                "committer: commands still unfinished after %.0f s; stopping anyway",
                timeout_s,
            )
        await cancel_and_wait(self._worker)
        self._worker = None
        await self._app.close_writer()
        if self.snapshots is not None:
            await self.snapshots.aclose()
        stranded: list[_Pending] = []
        while not self._queue.empty():
            stranded.append(self._queue.get_nowait())
        if stranded:
            self._fail(
                stranded,
                StoreUnavailableError(
                    "the hub stopped before the command was decided; nothing of "
                    "it is stored"
                ),
            )

    async def forget_requests(self) -> int:
        """Delete the request ids older than :data:`REQUEST_WINDOW_DAYS`."""
        return await asyncio.to_thread(self._app.forget_requests, REQUEST_WINDOW_DAYS)

    async def execute(
        self, rules: AggregateRules, command: Any, *, cause: Event | None = None
    ) -> Outcome:
        """Run ``command``; return once its events are durable (``cause``: see
        :meth:`submit`).

        Raises:
            DomainError: the command broke a rule; nothing was stored.
        """
        return await self.submit(rules, command, cause=cause)

    async def latest(self, rules: AggregateRules, aggregate_id: uuid.UUID) -> Any:
        """The newest state this committer knows of one aggregate.

        From the cache when it holds the aggregate (which may include a batch
        being written right now), else loaded from the store.
        """
        cached = self._cache.get(aggregate_id)
        if cached is not None:
            return cached
        return await self.load(rules, aggregate_id)

    def cached(self, aggregate_id: uuid.UUID) -> Any:
        """The durable state of one aggregate if this committer holds it
        (``None`` if not, or while a batch that changes it is being
        written): no load."""
        if self._unlanded[aggregate_id] > 0:
            return None
        return self._cache.get(aggregate_id)

    async def latest_many(
        self, wanted: Mapping[uuid.UUID, AggregateRules]
    ) -> dict[uuid.UUID, Any]:
        """:meth:`latest` of several aggregates: those the cache lacks are
        loaded together (one statement with snapshots), not one by one."""
        found = {aid: self._cache.get(aid) for aid in wanted}
        missing = {aid: wanted[aid] for aid, state in found.items() if state is None}
        if missing:
            found.update(await self._load_many(missing))
        return found

    async def load(self, rules: AggregateRules, aggregate_id: uuid.UUID) -> Any:
        """The current state of one aggregate (``None`` if it has no events)."""
        return (await self._load_many({aggregate_id: rules}))[aggregate_id]

    def _load(self, rules: AggregateRules, aggregate_id: uuid.UUID) -> Any:
        try:
            events = self._app.load_events(aggregate_id)
        except AggregateNotFoundError:
            return None
        return project(rules.mutate, None, events)

    async def _run(self) -> None:
        """Commit batches back to back, deciding the next while one is written.

        While batch N is being written (in a thread), batch N+1 is decided on
        the states N leaves (kept speculatively in the cache). N+1 is written
        only once N is durable; if N lost a race or failed, its speculative
        states are dropped, N is committed again from fresh state, and N+1 is
        decided again.

        If this task fails or is cancelled, every command it held is answered
        with :class:`StoreUnavailableError` before the failure propagates (to
        the supervisor, which starts the task again).
        """
        flight: _Flight | None = None
        getter: asyncio.Future[_Pending] | None = None
        batch: list[_Pending] = []
        try:
            while True:
                if getter is None:
                    getter = asyncio.ensure_future(self._queue.get())
                if flight is not None and not getter.done():
                    either: set[asyncio.Future[Any]] = {getter, flight.write}
                    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                    if not getter.done():
                        await self._land(flight)
                        flight = None
                        continue
                batch = [await getter]
                getter = None
                while len(batch) < self._max_batch and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                try:
                    decision = await self._prepare_beside(batch, flight)
                except Exception as exc:  # the store failed: every caller hears it
                    flight = None  # landed or settled: never landed twice
                    held, batch = batch, []
                    self._fail(held, exc)
                    continue
                flight = self._launch(batch, decision)
                batch = []
        except BaseException as exc:
            if flight is not None:
                flight.write.cancel()  # its callers hear "may or may not"
            self._fail(_held(batch, flight, getter), exc)
            raise
        finally:
            if getter is not None:
                getter.cancel()

    async def _prepare_beside(
        self, batch: list[_Pending], landing: _Flight | None
    ) -> _Decision:
        """Decide ``batch`` (loading what it needs) while ``landing`` is
        written, and land that one the moment it is durable, not after the
        loads; decide again if it failed."""
        if landing is None:
            return await self._prepare(batch)
        preparing = asyncio.ensure_future(self._prepare(batch))
        try:
            landed = await self._land(landing)
        except BaseException:
            preparing.cancel()
            raise
        decision = await preparing
        return decision if landed else await self._prepare(batch)

    async def _prepare(self, batch: list[_Pending]) -> _Decision:
        missing = {
            p.aggregate_id: p.rules
            for p in batch
            if p.aggregate_id not in self._cache and not p.future.done()
        }
        if missing:
            loaded = await self._load_many(missing)
            for aggregate_id, state in loaded.items():
                self._remember(aggregate_id, state)
        return self._decide(batch)

    def _launch(self, batch: list[_Pending], decision: _Decision) -> _Flight:
        """Start writing a decided batch; keep its states speculatively."""
        states, decided, refused, deferred = decision
        events = [e for _, evs, _ in decided for e in evs]
        write: asyncio.Future[list[int]]
        if events:
            write = asyncio.ensure_future(self._append(events, decided))
        else:
            write = asyncio.get_running_loop().create_future()
            write.set_result([])
        for aid, state in states.items():
            self._remember(aid, state)
        self._unlanded.update(states.keys())
        return _Flight(batch, states, decided, refused, write, events, deferred)

    async def _land(self, flight: _Flight) -> bool:
        """Wait for a written batch and answer its callers.

        Returns False when the write failed, after dropping the batch's
        speculative states and settling the batch by the one-at-a-time path.
        """
        try:
            return await self._land_written(flight)
        finally:  # durable now, or dropped (counts at zero go)
            self._unlanded -= Counter(flight.states.keys())

    async def _land_written(self, flight: _Flight) -> bool:
        """:meth:`_land`, but for the states the batch left in the cache."""
        try:
            positions = await flight.write
        except Exception as exc:
            for aid in flight.states:
                self._cache.pop(aid, None)
            try:
                stored = await self._stored(flight.events)
            except Exception as unknown:
                self._fail(flight.batch, unknown)
                return False
            if stored is None and isinstance(exc, IntegrityError):
                log.info("a batch lost a concurrency race; committing it again")
                try:
                    await self._commit(flight.batch)
                except Exception as again:
                    self._fail(flight.batch, again)
                else:
                    self._done(flight.batch)
                return False
            if stored is None:
                self._fail(flight.batch, exc)
                return False
            log.warning(
                "a batch's write failed (%s) but its %d events are stored; "
                "answering it as stored",
                describe(exc),
                len(stored),
            )
            positions = stored
            for aid, state in flight.states.items():
                self._remember(aid, state)
        self.transactions += 1
        self.commands += len(flight.decided)
        self._tell(flight.events)
        await self._find_repeats([p for p, evs, _ in flight.decided if not evs])
        self._answer(flight.decided, flight.refused, positions)
        self._queue_deferred(flight.deferred)
        self._done(flight.batch)
        return True

    async def _append(
        self, events: list[Event], decided: list[tuple[_Pending, list[Event], Any]]
    ) -> list[int]:
        """Store a batch's events and its commands' request ids, in one
        transaction."""
        return await self._app.append_async(events, _request_keys(decided))

    async def _stored(self, events: list[Event]) -> list[int] | None:
        """The positions of ``events`` if a write that failed stored them
        after all (these very events, by id), else None."""
        if not events:
            return None
        return await asyncio.to_thread(self._app.stored_positions, events)

    async def _find_repeats(self, pendings: Sequence[_Pending]) -> None:
        """Mark those of ``pendings`` whose ``request_id`` an earlier command
        stored (``command_requests``) with what it stored."""
        keys = {
            (p.aggregate_id, p.request_id): p
            for p in pendings
            if p.request_id is not None and p.repeat is None
        }
        if not keys:
            return
        found = await asyncio.to_thread(self._app.recorded_requests, list(keys))
        for key, stored in found.items():
            keys[key].repeat = stored

    def _fail(self, batch: list[_Pending], exc: BaseException) -> None:
        if not batch:
            return
        if isinstance(exc, StoreUnavailableError):
            error = exc
        elif isinstance(exc, asyncio.CancelledError):
            error = StoreUnavailableError(
                "the hub stopped while the command was being stored; it may or "
                "may not be: send it again with the same request_id"
            )
        else:
            error = StoreUnavailableError(
                f"the store failed ({describe(exc)}); the command may or may not "
                "be stored: send it again with the same request_id"
            )
            error.__cause__ = exc
        log.error("group commit of %d commands failed: %s", len(batch), error)
        for pending in batch:
            self._cache.pop(pending.aggregate_id, None)
            if not pending.future.done():
                pending.future.set_exception(error)
        self._done(batch)

    def _done(self, batch: list[_Pending]) -> None:
        for _ in batch:
            with contextlib.suppress(ValueError):  # a stranded batch counted
                self._queue.task_done()

    async def _commit(self, batch: list[_Pending]) -> None:
        for attempt in range(MAX_CONFLICT_RETRIES):
            # A request id recorded long ago conflicts too: find it first.
            await self._find_repeats([p for p in batch if not p.future.done()])
            states, decided, refused, deferred = await self._prepare(batch)
            all_events = [e for _, events, _ in decided for e in events]
            try:
                positions = (
                    await self._append(all_events, decided) if all_events else []
                )
            except IntegrityError:
                for aid in states:
                    self._cache.pop(aid, None)
                stored = await self._stored(all_events)
                if stored is None:
                    log.info("batch lost a concurrency race (attempt %d)", attempt + 1)
                    continue
                positions = stored
            self.transactions += 1
            self.commands += len(decided)
            for aid, state in states.items():
                self._remember(aid, state)
            self._tell(all_events)
            await self._find_repeats([p for p, evs, _ in decided if not evs])
            self._answer(decided, refused, positions)
            self._queue_deferred(deferred)
            return
        raise IntegrityError(
            f"batch still conflicted after {MAX_CONFLICT_RETRIES} attempts"
        )

    def _decide(self, batch: list[_Pending]) -> _Decision:
        """Decide every live command in order, each on the state left by the last,
        with the reactions each one calls for right after it (:meth:`react`).

        Refusals are returned, not told: if the batch then loses a race, they
        are decided again on fresh state.
        """
        states: dict[uuid.UUID, Any] = {}
        decided: list[tuple[_Pending, list[Event], Any]] = []
        refused: list[tuple[_Pending, DomainError]] = []
        deferred: list[_Pending] = []
        moment = self._clock()
        work = list(batch)
        index = 0
        while index < len(work):
            pending = work[index]
            index += 1
            if pending.future.done():
                continue
            aid = pending.aggregate_id
            state = states[aid] if aid in states else self._cache.get(aid)
            if pending.repeat is not None:  # stored before: decided nothing now
                decided.append((pending, [], state))
                continue
            ctx = Context(
                now=moment,
                new_id=self._new_id,
                correlation_id=pending.correlation_id
                or getattr(pending.command, "request_id", None)
                or str(self._new_id()),
                causation_id=pending.causation_id,
            )
            try:
                events = pending.rules.decide(state, pending.command, ctx)
            except DomainError as exc:
                refused.append((pending, exc))
                continue
            for event in events:
                state = pending.rules.mutate(event, state)
            states[aid] = state
            decided.append((pending, events, state))
            if events and self._reactors and not pending.reaction:
                now, later = self._reactions(events, states)
                work[index:index] = now  # decided next
                deferred += later
        return states, decided, refused, deferred

    def _reactions(
        self, events: list[Event], states: dict[uuid.UUID, Any]
    ) -> tuple[list[_Pending], list[_Pending]]:
        """The reactors' commands for ``events``: those whose aggregate is
        known here (decided in this batch) and those to queue after it."""
        now: list[_Pending] = []
        later: list[_Pending] = []
        loop = asyncio.get_running_loop()
        for reactor in self._reactors:
            # One event at a time, so each command knows the event it answers.
            for event in events:
                try:
                    asked = reactor([event])
                except Exception:
                    log.exception("reactor %r failed", reactor)
                    continue
                for rules, command in asked:
                    future: asyncio.Future[Outcome] = loop.create_future()
                    future.add_done_callback(log_unawaited)
                    pending = _Pending(
                        command,
                        rules,
                        future,
                        reaction=True,
                        correlation_id=event.correlation_id,
                        causation_id=event.event_id,
                    )
                    known = pending.aggregate_id in states or (
                        pending.aggregate_id in self._cache
                    )
                    (now if known else later).append(pending)
        return now, later

    def _queue_deferred(self, deferred: list[_Pending]) -> None:
        for pending in deferred:
            self._queue.put_nowait(pending)

    @staticmethod
    def _answer(
        decided: list[tuple[_Pending, list[Event], Any]],
        refused: list[tuple[_Pending, DomainError]],
        positions: list[int],
    ) -> None:
        """Tell each caller of a stored batch its outcome (a repeat: what its
        first attempt stored)."""
        for pending, exc in refused:
            if not pending.future.done():
                pending.future.set_exception(exc)
        cursor = 0
        for pending, events, state in decided:
            mine = tuple(positions[cursor : cursor + len(events)])
            cursor += len(events)
            if pending.future.done():  # the caller gave up; its events are stored
                continue
            told: tuple[Event, ...] = tuple(events)
            if not events and pending.repeat is not None:
                mine = tuple(pending.repeat[0])
                told = tuple(pending.repeat[1])
            pending.future.set_result(
                Outcome(
                    aggregate_id=pending.aggregate_id,
                    version=getattr(state, "version", 0),
                    events=told,
                    positions=mine,
                    state=state,
                )
            )

    async def _load_many(
        self, wanted: dict[uuid.UUID, AggregateRules]
    ) -> dict[uuid.UUID, Any]:
        if self.snapshots is not None:
            # One statement for the batch's aggregates, from the event loop.
            return await self.snapshots.load_many_async(
                {aid: rules.mutate for aid, rules in wanted.items()}
            )
        return await asyncio.to_thread(
            lambda: {aid: self._load(rules, aid) for aid, rules in wanted.items()}
        )

    def _remember(self, aggregate_id: uuid.UUID, state: Any) -> None:
        if state is None:
            return
        self._cache[aggregate_id] = state
        self._cache.move_to_end(aggregate_id)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
