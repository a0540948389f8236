"""One LISTEN on the log per process, shared by every runner that follows it.

PostgreSQL notifies the log's channel when events are committed. A runner
that held a LISTEN connection of its own cost a connection, a delivery of
every notification, and the driver's timed wait (it wakes ten times a second
to look at its socket) per runner: eleven read models in one worker process
meant eleven of each. :class:`LogListener` holds one connection for all the
runners of a process (of an event loop, on one database) and wakes each
through an :class:`asyncio.Event` of its own.

A notification from the hub's group commit (``hub_append``) names the
topics it stored; a subscriber that reads only some topics is woken only by
a notification naming one of them (or by one that names none: another
writer's). It is not the way events are found, only a hint that there are
new ones: a runner still looks every :data:`eventlog.log.NOTIFY_SAFETY_S`
seconds. When the connection fails (the database restarted, the connection
was terminated), the listener connects again with a growing pause and then
wakes every runner, since what was committed meanwhile notified nobody.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import psycopg
from psycopg import sql

from eventlog.codec import EVENTS_TABLE
from eventlog.log import NOTIFY_SAFETY_S
from eventlog.supervision import wait_set

log = logging.getLogger(__name__)

#: First pause before connecting again after a failure; it doubles up to
#: :data:`eventlog.log.NOTIFY_SAFETY_S`.
RECONNECT_S = 0.1

_LISTENERS: dict[tuple[asyncio.AbstractEventLoop, str], LogListener] = {}


class LogListener:
    """The LISTEN connection of one event loop on one database.

    Get it with :func:`listener_for`; a runner :meth:`subscribe` s for an
    event that is set on each notification, and :meth:`unsubscribe` s when it
    stops. The connection is open while anyone is subscribed.
    """

    def __init__(self, database_url: str, loop: asyncio.AbstractEventLoop) -> None:
        self.database_url = database_url
        self._loop = loop
        #: Each subscriber's event, and the stored topics it reads (None: all).
        self._wakes: dict[asyncio.Event, frozenset[str] | None] = {}
        self._task: asyncio.Task[None] | None = None
        #: Set while the LISTEN is in force.
        self.listening = asyncio.Event()

    def subscribe(self, topics: Iterable[str] = ()) -> asyncio.Event:
        """A new event, set from now on at every notification that names one
        of the stored ``topics`` (none given: at every notification), and at
        every notification that names no topics."""
        wake = asyncio.Event()
        self._wakes[wake] = frozenset(topics) or None
        if self._task is None or self._task.done():
            self._task = self._loop.create_task(self._run())
        return wake

    def retopic(self, wake: asyncio.Event, topics: Iterable[str] = ()) -> None:
        """Wake ``wake`` from now on for the stored ``topics`` (none: for
        every notification), as :meth:`subscribe` does."""
        if wake in self._wakes:
            self._wakes[wake] = frozenset(topics) or None

    def unsubscribe(self, wake: asyncio.Event) -> None:
        """Stop waking ``wake``; the last to go closes the connection."""
        self._wakes.pop(wake, None)
        if not self._wakes:
            if self._task is not None:
                self._task.cancel()
                self._task = None
            self.listening.clear()
            _LISTENERS.pop((self._loop, self.database_url), None)

    def _wake_all(self) -> None:
        for wake in self._wakes:
            wake.set()

    def _wake_for(self, payload: str) -> None:
        """Wake the subscribers a notification concerns (see the module)."""
        if not payload:
            self._wake_all()
            return
        stored = frozenset(payload.split(","))
        for wake, topics in self._wakes.items():
            if topics is None or not topics.isdisjoint(stored):
                wake.set()

    async def _run(self) -> None:
        pause = RECONNECT_S
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.database_url, autocommit=True
                ) as conn:
                    await conn.execute(
                        sql.SQL("LISTEN {}").format(sql.Identifier(EVENTS_TABLE))
                    )
                    self.listening.set()
                    pause = RECONNECT_S
                    self._wake_all()  # what came while nobody listened
                    async for notify in conn.notifies():
                        self._wake_for(notify.payload)
            except (psycopg.Error, OSError) as exc:
                log.warning(
                    "listening to the log failed (%s); again in %.1fs", exc, pause
                )
            self.listening.clear()
            self._wake_all()
            await asyncio.sleep(pause)
            pause = min(pause * 2, NOTIFY_SAFETY_S)


def listener_for(database_url: str) -> LogListener:
    """The running event loop's listener on ``database_url``."""
    loop = asyncio.get_running_loop()
    key = (loop, database_url)
    found = _LISTENERS.get(key)
    if found is None:
        found = _LISTENERS[key] = LogListener(database_url, loop)
    return found


async def wait_listening(listener: LogListener) -> None:
    """Wait (at most :data:`NOTIFY_SAFETY_S`) until ``listener`` listens, so a
    commit right after a runner's first read is not missed until its next
    safety look."""
    await wait_set(listener.listening, NOTIFY_SAFETY_S)
