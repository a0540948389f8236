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
                end = await stream_position(js, self.stream)
                await self._advance(end.position)
                sequence = end.sequence
                while True:
                    rows = await read_log(conn, self.position, self.max_in_flight)
                    if not rows:
                        async for _ in listener.notifies(
                            timeout=NOTIFY_SAFETY_S, stop_after=1
                        ):
                            pass
                        continue
                    if await self._publish(js, rows, sequence):
                        sequence += len(rows)
                        self.published += len(rows)
                        await self._advance(rows[-1][0])
                    else:
                        end = await stream_position(js, self.stream)
                        sequence = end.sequence
                        await self._advance(end.position, force=True)
        finally:
            with contextlib.suppress(Exception):
                await nc.close()

    async def _publish(
        self, js: JetStreamContext, rows: list[tuple[int, str, bytes]], sequence: int
    ) -> bool:
        futures = []
        for offset, (position, topic, state) in enumerate(rows):
            event = decode_event(topic, state)
            headers = headers_for(event, position)
            headers[EXPECTED_LAST_SEQUENCE] = str(sequence + offset)
            futures.append(
                await js.publish_async(
                    subject_for(event),
                    _encode(_to_message(event, position)),
                    headers=headers,
                )
            )
        results = await asyncio.gather(*futures, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            log.warning(
                "%d of %d publishes failed (first: %s); re-reading the stream's end",
                len(failures),
                len(rows),
                failures[0],
            )
            return False
        return True

    async def _advance(self, position: int, *, force: bool = False) -> None:
        async with self._progress:
            if force or position > self.position:
                self.position = position
            self._progress.notify_all()
