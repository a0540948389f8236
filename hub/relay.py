"""The relay: every stored event onto JetStream stream ``HUB_EVENTS``, exactly once.

Reads the log in order and publishes each event with ``Nats-Msg-Id`` = its event
id, many publishes in flight. Exactly once and in order, across crashes:

* the stream itself is the relay's position: on start (and after any failed
  publish) it reads the stream's last message and resumes after the log
  position in its ``Hub-Position`` header, so a restart after hours resends
  nothing, not just nothing within the duplicate window;
* every publish carries ``Nats-Expected-Last-Sequence``, so JetStream stores a
  message only directly after its predecessor: a lost publish can never be
  overtaken by a later one, and two relays racing cannot interleave;
* ``Nats-Msg-Id`` de-duplicates any resend inside the duplicate window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass

import msgspec
import nats
import psycopg
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError
from psycopg import sql

from hub.messages import H_POSITION, STREAM, SUBJECT_PREFIX, headers_for, subject_for
from hub.messages import to_message as _to_message
from hub.store import EVENTS_TABLE, decode_event
from projections.base import NOTIFY_SAFETY_S, read_log

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 500
DUPLICATE_WINDOW_S = 120.0
EXPECTED_LAST_SEQUENCE = "Nats-Expected-Last-Sequence"

_encode = msgspec.json.Encoder().encode


async def ensure_stream(js: JetStreamContext, stream: str = STREAM) -> None:
    """Create the events stream if it does not exist yet."""
    try:
        await js.stream_info(stream)
    except NotFoundError:
        await js.add_stream(
            js_api.StreamConfig(
                name=stream,
                subjects=[f"{SUBJECT_PREFIX}.>"],
                storage=js_api.StorageType.FILE,
                retention=js_api.RetentionPolicy.LIMITS,
                duplicate_window=DUPLICATE_WINDOW_S,
                discard=js_api.DiscardPolicy.OLD,
            )
        )


@dataclass(frozen=True)
class StreamPosition:
    """Where the stream ends: its last sequence and the log position it holds."""

    sequence: int
    position: int


async def stream_position(js: JetStreamContext, stream: str = STREAM) -> StreamPosition:
    """The stream's last sequence and the last log position published to it."""
    info = await js.stream_info(stream)
    last_seq = info.state.last_seq
    seq = last_seq
    while seq >= max(1, info.state.first_seq):
        try:
            msg = await js.get_msg(stream, seq)
        except NotFoundError:
            seq -= 1
            continue
        header = (msg.headers or {}).get(H_POSITION)
        if header is not None:
            return StreamPosition(last_seq, int(header))
        seq -= 1
    return StreamPosition(last_seq, 0)


class Relay:
    """Publishes the log to ``HUB_EVENTS``.

    Args:
        database_url: PostgreSQL with the log.
        nats_url: NATS server or cluster.
        max_in_flight: JetStream publishes awaiting their ack at once.
    """

    def __init__(
        self,
        database_url: str,
        nats_url: str,
        *,
        stream: str = STREAM,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.database_url = database_url
        self.nats_url = nats_url
        self.stream = stream
        self.max_in_flight = max_in_flight
        self.position = 0
        self.published = 0
        self._task: asyncio.Task[None] | None = None
        self._progress = asyncio.Condition()

    async def start(self) -> None:
        """Run in the background until :meth:`stop`."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="relay")

    async def stop(self) -> None:
        """Stop publishing (what was acknowledged stays published)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def wait_for(self, position: int, timeout: float = 30.0) -> None:
        """Return once the log up to ``position`` is in the stream."""
        async with asyncio.timeout(timeout), self._progress:
            await self._progress.wait_for(lambda: self.position >= position)

    async def run(self) -> None:
        """Publish until cancelled; restart the cycle after connection errors."""
        while True:
            try:
                await self._run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("relay failed; resuming from the stream's end")
                await asyncio.sleep(0.5)

    async def _run_once(self) -> None:
        nc: NatsClient = await nats.connect(self.nats_url, max_reconnect_attempts=-1)
        try:
            js = nc.jetstream(publish_async_max_pending=self.max_in_flight)
            await ensure_stream(js, self.stream)
            async with (
                await psycopg.AsyncConnection.connect(
                    self.database_url, autocommit=True
                ) as listener,
                await psycopg.AsyncConnection.connect(
                    self.database_url, autocommit=True
                ) as conn,
            ):
                await listener.execute(
                    sql.SQL("LISTEN {}").format(sql.Identifier(EVENTS_TABLE))
                )
                await self._follow(js, conn, listener)
        finally:
            with contextlib.suppress(Exception):
                await nc.close()

    async def _follow(
        self,
        js: JetStreamContext,
        conn: psycopg.AsyncConnection[object],
        listener: psycopg.AsyncConnection[object],
    ) -> None:
        """Publish with a sliding window of acks; resync on any failed publish.

        Reading the next rows and encoding them overlaps with the acks of the
        previous ones: ``publish_async`` blocks only while ``max_in_flight``
        publishes await their ack.
        """
        end = await stream_position(js, self.stream)
        await self._advance(end.position, force=True)
        sequence = end.sequence  # stream sequence of the last message sent
        sent = end.position  # log position of the last message sent
        window: deque[tuple[int, asyncio.Future[js_api.PubAck]]] = deque()
        while True:
            rows = await read_log(conn, sent, self.max_in_flight)
            if not rows:
                if window:
                    ok = await self._harvest(window, wait_all=True)
                else:
                    async for _ in listener.notifies(
                        timeout=NOTIFY_SAFETY_S, stop_after=1
                    ):
                        pass
                    continue
            else:
                for position, topic, state in rows:
                    event = decode_event(topic, state)
                    headers = headers_for(event, position)
                    headers[EXPECTED_LAST_SEQUENCE] = str(sequence)
                    future = await js.publish_async(
                        subject_for(event),
                        _encode(_to_message(event, position)),
                        headers=headers,
                    )
                    window.append((position, future))
                    sequence += 1
                sent = rows[-1][0]
                ok = await self._harvest(window, wait_all=False)
            if not ok:
                for _, future in window:
                    future.cancel()
                window.clear()
                end = await stream_position(js, self.stream)
                await self._advance(end.position, force=True)
                sequence, sent = end.sequence, end.position

    async def _harvest(
        self,
        window: deque[tuple[int, asyncio.Future[js_api.PubAck]]],
        *,
        wait_all: bool,
    ) -> bool:
        """Advance over acknowledged publishes at the window's front.

        Returns False when a publish failed: everything after it is suspect.
        """
        acknowledged = 0
        while window and (wait_all or window[0][1].done()):
            position, future = window[0]
            try:
                await future
            except Exception as exc:
                log.warning("publish of log position %d failed: %s", position, exc)
                return False
            window.popleft()
            acknowledged = position
            self.published += 1
        if acknowledged:
            await self._advance(acknowledged)
        return True

    async def _advance(self, position: int, *, force: bool = False) -> None:
        async with self._progress:
            if force or position > self.position:
                self.position = position
            self._progress.notify_all()
