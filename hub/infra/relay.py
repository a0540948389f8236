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

One relay publishes at a time: each holds a PostgreSQL advisory lock of the
log's database while it publishes, and another (a second ``hub serve``, a
``hub relay`` worker) waits for that lock as a standby, taking over the moment
the holder's connection ends. Without it two relays would race for every
message and each lost race would cost a resync.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec
import nats
import psycopg
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError

from eventlog.codec import decode_event
from eventlog.listen import listener_for, wait_listening
from eventlog.log import NOTIFY_SAFETY_S, read_log
from eventlog.supervision import Supervisor, default_supervisor, wait_set
from hub.infra.runtime import cancel_and_wait
from hub.infra.settings import nats_servers
from hub.messages import H_POSITION, STREAM, SUBJECT_PREFIX, headers_for, subject_for
from hub.messages import to_message as _to_message

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 500
DUPLICATE_WINDOW_S = 120.0
EXPECTED_LAST_SEQUENCE = "Nats-Expected-Last-Sequence"
#: An in-flight publish not acknowledged within this ends the attempt.
ACK_TIMEOUT_S = 10.0

_encode = msgspec.json.Encoder().encode


async def ensure_stream(
    js: JetStreamContext, stream: str = STREAM, replicas: int = 1
) -> None:
    """Create the events stream if it does not exist yet, with ``replicas``
    copies (on as many nodes of a NATS cluster)."""
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
                num_replicas=replicas,
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


def relay_lock_key(stream: str = STREAM) -> int:
    """The advisory lock the relay of ``stream`` holds while it publishes (a
    signed 64-bit key; PostgreSQL's ``pg_locks`` shows it as ``classid``, its
    high 32 bits, and ``objid``, its low ones)."""
    digest = hashlib.blake2b(f"hub relay {stream}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


class _Acks:
    """Tracks JetStream's acks of one relay attempt (all on one reply subject)."""

    def __init__(self) -> None:
        self.epoch = 0
        self.acked = 0
        self.failure: str | None = None
        self._changed = asyncio.Event()

    def restart(self, sequence: int) -> None:
        """Start a new attempt whose first publish follows ``sequence``."""
        self.epoch += 1
        self.acked = sequence
        self.failure = None

    async def on_ack(self, msg: Msg) -> None:
        """Record one ack (or error) from JetStream."""
        if msg.subject.rpartition(".")[2] != str(self.epoch):
            return  # an ack of an abandoned attempt
        if not msg.data:
            # A status instead of an ack: the stream has no leader just now
            # (a node of the cluster went away), so nothing was stored.
            status = (msg.headers or {}).get("Status", "?")
            self.failure = f"JetStream answered a publish with status {status}"
            self._changed.set()
            return
        ack = _decode_ack(msg.data)
        if ack.error is not None:
            self.failure = f"JetStream refused a publish: {ack.error}"
        elif ack.duplicate:
            self.failure = f"stream sequence {ack.seq} was a duplicate"
        elif ack.seq is not None and ack.seq > self.acked:
            self.acked = ack.seq
        self._changed.set()

    async def wait_beyond(self, acked: int, timeout: float) -> bool:
        """Wait until acks pass ``acked``; False (and a failure) on timeout."""
        while self.acked <= acked and self.failure is None:
            self._changed.clear()
            if not await wait_set(self._changed, timeout):
                self.failure = f"no ack within {timeout:.0f} s"
        return self.failure is None


#: One message to publish: subject, payload, reply subject, headers.
Message = tuple[str, bytes, str, dict[str, str]]
#: Publishes messages in the order given.
Publish = Callable[[list[Message]], Awaitable[None]]


def _stop_if_cancelled() -> None:
    """Raise the cancellation of the running task if something swallowed it.

    nats-py's ``Client._flush_pending`` ends in ``except CancelledError:
    pass``: a relay stopped while a publish flushed went on publishing, and
    its stop waited forever (seen once in a CI run, in a test's teardown).
    Nothing in the relay takes a cancellation back, so a request still
    counted (:meth:`asyncio.Task.cancelling`) is one that was lost; the
    relay looks after each publish, the only call into nats-py in its loop.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _publisher(nc: NatsClient) -> Publish:
    """A publish function for the relay's hot path: a batch at a time.

    nats-py validates every header key with a regular expression and rebuilds
    the header block on each publish, which costs more than everything else the
    relay does per event. The relay's headers are its own constants and
    numbers, so it frames ``HPUB`` itself and hands a whole batch's bytes to the
    client's send path in one call. Falls back to ``nc.publish`` where the
    client has no such path.
    """
    send = getattr(nc, "_send_command", None)
    flush = getattr(nc, "_flush_pending", None)
    if send is None or flush is None or not hasattr(nc, "_flush_queue"):

        async def plain(messages: list[Message]) -> None:
            for subject, payload, reply, headers in messages:
                await nc.publish(subject, payload, reply=reply, headers=headers)

        return plain

    def frame(
        subject: str, payload: bytes, reply: str, headers: dict[str, str]
    ) -> bytes:
        block = "NATS/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        header = (block + "\r\n").encode()
        size = len(header)
        return b"HPUB %s %s %d %d\r\n%s%s\r\n" % (
            subject.encode(),
            reply.encode(),
            size,
            size + len(payload),
            header,
            payload,
        )

    async def framed(messages: list[Message]) -> None:
        if nc.is_closed:
            raise nats.errors.ConnectionClosedError
        await send(b"".join([frame(*message) for message in messages]))
        queue = nc._flush_queue
        if queue is not None and queue.empty():
            await flush()

    return framed


class _PubAck(msgspec.Struct):
    seq: int | None = None
    duplicate: bool = False
    error: dict[str, object] | None = None


_decode_ack = msgspec.json.Decoder(_PubAck).decode


class Relay:
    """Publishes the log to ``HUB_EVENTS``.

    Args:
        database_url: PostgreSQL with the log.
        nats_url: NATS server or cluster.
        max_in_flight: JetStream publishes awaiting their ack at once.
        replicas: copies of the stream when the relay creates it.
        supervisor: runs the relay, retrying each failed attempt with backoff
            and reporting its state (default: the process's).
    """

    def __init__(
        self,
        database_url: str,
        nats_url: str,
        *,
        stream: str = STREAM,
        max_in_flight: int = MAX_IN_FLIGHT,
        replicas: int = 1,
        supervisor: Supervisor | None = None,
    ) -> None:
        self.supervisor = supervisor or default_supervisor()
        self.database_url = database_url
        self.nats_url = nats_url
        self.stream = stream
        self.max_in_flight = max_in_flight
        self.replicas = replicas
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
        await cancel_and_wait(self._task)
        self._task = None

    async def wait_for(self, position: int, timeout: float = 30.0) -> None:
        """Return once the log up to ``position`` is in the stream."""
        async with asyncio.timeout(timeout), self._progress:
            await self._progress.wait_for(lambda: self.position >= position)

    async def run(self) -> None:
        """Publish until cancelled; after a failure (a lost connection to
        PostgreSQL or NATS, a refused publish) start again from the stream's
        end, supervised: logged at once, retried with backoff, reported."""
        await self.supervisor.run("relay", self._run_once)

    async def _run_once(self) -> None:
        nc: NatsClient = await nats.connect(
            nats_servers(self.nats_url), max_reconnect_attempts=-1
        )
        # Woken through the process's one LISTEN on the log, as the runners
        # are (an asyncio event: a stop cancels its wait at once; a wait in
        # psycopg's own notifies() could hang on cancellation).
        listener = listener_for(self.database_url)
        wake = listener.subscribe()
        try:
            js = nc.jetstream()
            await ensure_stream(js, self.stream, self.replicas)
            async with await psycopg.AsyncConnection.connect(
                self.database_url, autocommit=True
            ) as conn:
                # Standby until no other relay of this log publishes.
                await conn.execute(
                    "SELECT pg_advisory_lock(%s)", (relay_lock_key(self.stream),)
                )
                await wait_listening(listener)
                acks = _Acks()
                inbox = nc.new_inbox()
                sub = await nc.subscribe(f"{inbox}.*", cb=acks.on_ack)
                try:
                    while True:
                        await self._follow(nc, js, conn, wake, acks, inbox)
                finally:
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()
        finally:
            listener.unsubscribe(wake)
            with contextlib.suppress(Exception):
                await nc.close()

    async def _follow(  # noqa: PLR0917
        self,
        nc: NatsClient,
        js: JetStreamContext,
        conn: psycopg.AsyncConnection[object],
        wake: asyncio.Event,
        acks: _Acks,
        inbox: str,
    ) -> None:
        """Publish from the stream's end until a publish fails, then return.

        Publishes go out back to back, each with the same reply subject of this
        attempt (``epoch``); JetStream acknowledges them in order with their
        stream sequence, so one subscription tracks every ack and at most
        ``max_in_flight`` await theirs. Reading the next rows overlaps with the
        acks of the previous ones. Any error ack, duplicate, or an ack that does
        not come within :data:`ACK_TIMEOUT_S` ends the attempt: the caller
        starts again from what the stream holds.
        """
        publish = _publisher(nc)
        end = await stream_position(js, self.stream)
        await self._advance(end.position, force=True)
        acks.restart(end.sequence)
        reply = f"{inbox}.{acks.epoch}"
        sequence = end.sequence  # stream sequence of the last message sent
        sent = end.position  # log position of the last message sent
        window: deque[tuple[int, int]] = deque()  # (stream sequence, log position)
        # Whether the last read reached the head: nothing was committed since
        # unless ``wake`` is set, so the log is not read again until then.
        at_head = False
        while acks.failure is None:
            rows: list[tuple[int, str, bytes]] = []
            if not at_head or wake.is_set():
                # Cleared before the read: what is committed after it sets it.
                wake.clear()
                rows = await read_log(conn, sent, self.max_in_flight)
                at_head = len(rows) < self.max_in_flight
            if not rows:
                if window:
                    await acks.wait_beyond(window[0][0] - 1, ACK_TIMEOUT_S)
                else:
                    await wait_set(wake, NOTIFY_SAFETY_S)
                    at_head = False  # woken, or the safety look: read
            while rows and acks.failure is None:
                room = self.max_in_flight - (sequence - acks.acked)
                if room <= 0:
                    await acks.wait_beyond(acks.acked, ACK_TIMEOUT_S)
                    continue
                chunk, rows = rows[:room], rows[room:]
                batch: list[Message] = []
                for position, topic, state in chunk:
                    event = decode_event(topic, state)
                    headers = headers_for(event, position)
                    # JetStream refuses the publish unless the stream's last
                    # sequence is this one: a publish sent after a failure (or
                    # by a second relay) cannot land out of order or twice.
                    headers[EXPECTED_LAST_SEQUENCE] = str(sequence)
                    batch.append(
                        (
                            subject_for(event),
                            _encode(_to_message(event, position)),
                            reply,
                            headers,
                        )
                    )
                    sequence += 1
                    sent = position
                    window.append((sequence, position))
                await publish(batch)
                _stop_if_cancelled()  # a flush may have swallowed it
            acknowledged = 0
            while window and window[0][0] <= acks.acked:
                acknowledged = window.popleft()[1]
                self.published += 1
            if acknowledged:
                await self._advance(acknowledged)
        log.warning("relay resyncs from the stream's end: %s", acks.failure)

    async def _advance(self, position: int, *, force: bool = False) -> None:
        async with self._progress:
            if force or position > self.position:
                self.position = position
            self._progress.notify_all()
