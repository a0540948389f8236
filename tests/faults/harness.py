"""The fault suite's tools: hubs as supervised children, a load, faults, checks.

* :class:`HubServe` runs ``python -m hub serve`` as a supervisor (systemd,
  Kubernetes) would: started again whenever it exits, so a hub that chooses to
  exit on a fault it cannot heal is as good as one that heals in place, and a
  half-alive hub that neither answers nor exits fails the case.
* :class:`Load` sends commands over NATS request/reply, each with its own
  ``request_id`` (stock receipts) or order id (order placements), and records
  every reply; what was not answered ``ok`` is sent again, with the same key,
  by :meth:`Load.settle`.
* The checks read the log and compare it with what the load was told, with
  the ``HUB_EVENTS`` stream, and every projection with a fresh rebuild.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import nats
import nats.errors
import nats.js.errors
import psycopg
from nats.aio.client import Client as NatsClient
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from psycopg import sql

from domain.events import Event
from domain.order import OrderPlaced, OrderStockRefused, order_ref
from domain.stock import StockCommitted, StockReceived
from eventlog.codec import decode_event
from eventlog.log import log_head, read_log
from hub.bootstrap import default_projections
from hub.infra.relay import stream_position
from hub.messages import H_MSG_ID, H_POSITION, STREAM, SUBJECT_PREFIX
from hub.service.processes import PROCESSES
from projections.base import rebuild
from tests.conftest import wait_until

#: How long one request waits for its reply before the load moves on.
REQUEST_TIMEOUT_S = 2.0
#: Deadline of a hub's orderly stop (SIGTERM) before it is killed.
STOP_DEADLINE_S = 30.0
#: Deadline of a hub's recovery: commands acknowledged again after a fault, or
#: every unanswered command answered once sent again.
RECOVERY_S = 60.0
#: Commands acknowledged before a fault, and again after it, per case.
ACKS_AROUND_FAULT = 300
#: Distinct SKUs of the load: each SKU gets few enough commands that a retried
#: request id is still among those its stock item remembers.
SKUS = 211
#: Every tenth command places an order (its stock is committed by the
#: ``order_stock`` process) on one of a few SKUs stocked before the load; the
#: others receive stock.
ORDER_EVERY = 10
ORDER_SKUS = 7
ORDER_SKU_STOCK = 100_000
PLATFORM = "douyin_shop"

_decode_reply = msgspec.json.Decoder(dict[str, Any]).decode


# -- processes ----------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children first), read from ``/proc``."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces; the parent pid follows its ')'.
        ppid = int(stat.rpartition(")")[2].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        children = parents.get(todo.pop(0), [])
        found += children
        todo += children
    return found


def command_name(pid: int) -> str:
    """The process's command name ('' once it is gone)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


class HubServe:
    """``python -m hub serve`` under a supervisor that restarts it on exit.

    Args:
        env: its whole environment (``HUB_*`` settings included).
        log_path: where its output goes (appended across restarts).
    """

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        #: Exit codes of the runs that ended on their own or by a fault.
        self.exits: list[int] = []
        self._supervise = False
        self._watcher: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        """The running hub's process id."""
        assert self.proc is not None, "hub not started"
        return self.proc.pid

    async def start(self) -> None:
        """Start the hub and keep it running until :meth:`stop`."""
        self._supervise = True
        await self._spawn()
        self._watcher = asyncio.create_task(self._watch(), name="supervisor")

    async def _spawn(self) -> None:
        with open(self.log_path, "ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "hub",
                "serve",
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )

    async def _watch(self) -> None:
        while self._supervise:
            assert self.proc is not None
            code = await self.proc.wait()
            if not self._supervise:
                return
            self.exits.append(code)
            await self._spawn()

    def kill(self, *, restart: bool = True) -> None:
        """SIGKILL the hub; the supervisor starts it again if ``restart``."""
        assert self.proc is not None
        self._supervise = restart
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)

    async def stop(self) -> int | None:
        """Stop supervising and SIGTERM the hub: its exit code, or ``None``
        when it did not stop within :data:`STOP_DEADLINE_S` (then it is killed).
        """
        self._supervise = False
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return None if proc is None else proc.returncode
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_DEADLINE_S):
                return await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)
            await proc.wait()
            return None

    def server_pids(self, name: str) -> list[int]:
        """The hub's child processes named ``name`` (``nats-server``, ``postgres``)."""
        return [pid for pid in descendants(self.pid) if command_name(pid) == name]

    def output_tail(self, chars: int = 4000) -> str:
        """The end of the hub's output (for a failing case's report)."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def postmaster_pid(home: Path) -> int:
    """The embedded PostgreSQL's postmaster under ``HUB_HOME`` ``home``."""
    return int((home / "pg" / "postmaster.pid").read_text().split()[0])


def signal_all(pids: Iterable[int], sig: int) -> None:
    """Send ``sig`` to each process that still exists."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


async def paused(pids: Sequence[int], seconds: float) -> None:
    """Freeze the processes (SIGSTOP) for ``seconds``, then let them go on.

    The pause is the fault itself, not a wait for something to happen.
    """
    signal_all(pids, signal.SIGSTOP)
    try:
        await asyncio.sleep(seconds)
    finally:
        signal_all(reversed(pids), signal.SIGCONT)


def terminate_backends(database_url: str) -> int:
    """``pg_terminate_backend`` every other connection to the database."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


# -- the load -----------------------------------------------------------------


@dataclass
class Command:
    """One command of the load and what the hub answered to it."""

    subject: str
    payload: bytes
    #: ``request_id`` of a receipt, order id of a placement.
    key: str
    attempts: int = 0
    #: The ``ok`` reply, once one came.
    reply: dict[str, Any] | None = None
    #: Error codes of ``ok: false`` replies (each attempt's).
    refusals: list[str] = field(default_factory=list)
    #: An ``ok`` reply with no events on the first attempt: it claims
    #: "already stored" for a command sent once.
    empty_first_reply: bool = False


def receipt(sku: str, quantity: int, key: str) -> Command:
    """A ``stock.receive`` command with request id ``key``."""
    body = {"sku": sku, "quantity": quantity, "request_id": key}
    return Command("hub.cmd.stock.receive", msgspec.json.encode(body), key)


def make_command(case: str, index: int) -> Command:
    """Command ``index`` of the load of ``case``: mostly receipts, some orders."""
    key = f"{case}-{index}"
    if index % ORDER_EVERY == ORDER_EVERY - 1:
        sku = f"{case}-o{index % ORDER_SKUS}"
        body: dict[str, Any] = {
            "platform": PLATFORM,
            "platform_order_id": key,
            "shop_id": "fault-shop",
            "lines": [
                {
                    "platform_sku_id": f"p-{sku}",
                    "hub_sku": sku,
                    "quantity": 1,
                    "unit_price_fen": 100,
                }
            ],
        }
        return Command("hub.cmd.order.place", msgspec.json.encode(body), key)
    return receipt(f"{case}-{index % SKUS}", 1 + index % 3, key)


class Load:
    """Commands sent over NATS while faults happen; every reply recorded.

    Args:
        nc: a NATS connection that reconnects for ever.
        case: prefix of the SKUs, request ids and order ids.
    """

    def __init__(self, nc: NatsClient, case: str) -> None:
        self.nc = nc
        self.case = case
        self.commands: list[Command] = []
        self.acked = 0

    async def seed(self, timeout: float = 60.0) -> None:
        """Stock the SKUs the orders are placed on (before any fault)."""
        self.commands += [
            receipt(f"{self.case}-o{n}", ORDER_SKU_STOCK, f"{self.case}-seed-{n}")
            for n in range(ORDER_SKUS)
        ]
        await self.settle(timeout)

    async def send(self, command: Command) -> bool:
        """Send one attempt; True once the command has an ``ok`` reply."""
        command.attempts += 1
        try:
            msg = await self.nc.request(
                command.subject, command.payload, timeout=REQUEST_TIMEOUT_S
            )
        except (TimeoutError, nats.errors.Error):
            return False
        reply = _decode_reply(msg.data)
        if not reply.get("ok"):
            command.refusals.append(str((reply.get("error") or {}).get("code")))
            return False
        if command.reply is None:
            self.acked += 1
            if command.attempts == 1 and not reply.get("events"):
                command.empty_first_reply = True
        command.reply = reply
        return True

    async def run(
        self, stop: asyncio.Event, *, concurrency: int = 16, limit: int = 20_000
    ) -> None:
        """Send new commands from ``concurrency`` senders until ``stop`` is set.

        A sender whose attempt failed moves on to a new command after a short
        back-off (as a client would); :meth:`settle` sends the failed ones again.
        """

        async def sender() -> None:
            backoff = 0.0
            while not stop.is_set() and len(self.commands) < limit:
                command = make_command(self.case, len(self.commands))
                self.commands.append(command)
                if await self.send(command):
                    backoff = 0.0
                else:
                    backoff = min(1.0, backoff * 2 or 0.05)
                    await asyncio.sleep(backoff)  # client retry pacing

        await asyncio.gather(*(sender() for _ in range(concurrency)))

    async def settle(self, timeout: float = RECOVERY_S, concurrency: int = 16) -> None:
        """Send every command not yet answered ``ok`` again, with its own key,
        until each is (or the deadline passes)."""
        queue = [c for c in self.commands if c.reply is None]

        async def sender() -> None:
            while queue:
                command = queue.pop()
                while not await self.send(command):
                    pass

        async with asyncio.timeout(timeout):
            await asyncio.gather(*(sender() for _ in range(concurrency)))

    def unanswered(self) -> list[Command]:
        """Commands without an ``ok`` reply."""
        return [c for c in self.commands if c.reply is None]

    def summary(self) -> str:
        """How many commands, attempts and refusals (for a case's report)."""
        attempts = sum(c.attempts for c in self.commands)
        refusals = Counter(code for c in self.commands for code in c.refusals)
        return (
            f"{self.case}: {len(self.commands)} commands, {self.acked} ok, "
            f"{attempts} attempts, refusals {dict(refusals)}"
        )


async def connect_client(servers: str | list[str], wait: float = 60.0) -> NatsClient:
    """A NATS client that reconnects for as long as a case lasts; waits up to
    ``wait`` seconds for a server to accept the first connection (nats-py keeps
    trying when reconnects are unlimited)."""

    async def quiet(_: Exception) -> None:
        return None

    async with asyncio.timeout(wait):
        return await nats.connect(
            servers,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.1,
            connect_timeout=2,
            error_cb=quiet,
        )


async def hub_answers(nc: NatsClient) -> bool:
    """Whether some hub answers a command (an invalid one: it changes nothing)."""
    try:
        await nc.request("hub.cmd.stock.receive", b"{}", timeout=1)
    except (TimeoutError, nats.errors.Error):
        return False
    return True


async def run_fault(
    load: Load, fault: Callable[[], Awaitable[None]], *, before: int = ACKS_AROUND_FAULT
) -> None:
    """Run the load; inject ``fault`` once ``before`` commands were acknowledged;
    stop once as many more were acknowledged after it; then settle every
    command. Fails, naming the step, when the hub does not recover in time."""
    stop = asyncio.Event()
    running = asyncio.create_task(load.run(stop))
    try:
        await wait_until(lambda: load.acked >= before or running.done(), 120)
        assert not running.done(), "the load ended before the fault"
        await fault()
        after = load.acked
        try:
            await wait_until(
                lambda: load.acked >= after + before or running.done(),
                RECOVERY_S,
                0.05,
            )
        except TimeoutError:
            raise AssertionError(
                f"{load.acked - after} commands acknowledged within "
                f"{RECOVERY_S:.0f} s of the fault: {load.summary()}"
            ) from None
        assert not running.done(), "the load ended before recovering"
    finally:
        stop.set()
        await running
    try:
        await load.settle()
    except TimeoutError:
        raise AssertionError(
            f"{len(load.unanswered())} commands still unanswered after "
            f"{RECOVERY_S:.0f} s of sending them again: {load.summary()}"
        ) from None


# -- the checks ---------------------------------------------------------------


async def whole_log(database_url: str) -> list[tuple[int, Event]]:
    """Every stored event with its log position, in log order."""
    events: list[tuple[int, Event]] = []
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        after = 0
        while rows := await read_log(conn, after, 5000):
            events += [(p, decode_event(topic, state)) for p, topic, state in rows]
            after = rows[-1][0]
    return events


def check_each_command_once(
    log: Sequence[tuple[int, Event]], commands: Sequence[Command]
) -> None:
    """Every command took effect exactly once, as its ``ok`` reply said.

    A receipt's ``request_id`` is on exactly one ``StockReceived``; an order is
    placed once and its stock committed (or the commit refused) once; nothing
    else of the case is in the log; each reply's positions hold its event; no
    first attempt was answered as if it were a repeat.
    """
    assert all(c.reply is not None for c in commands), "every command answered ok"
    position_of: dict[str, list[int]] = {}
    commits: Counter[str] = Counter()
    for position, event in log:
        if isinstance(event, StockReceived) and event.request_id:
            position_of.setdefault(event.request_id, []).append(position)
        elif isinstance(event, OrderPlaced):
            position_of.setdefault(event.platform_order_id, []).append(position)
        elif isinstance(event, StockCommitted):
            commits[event.order_ref] += 1
        elif isinstance(event, OrderStockRefused) and event.action == "commit":
            commits[order_ref(event.platform, event.platform_order_id)] += 1
    doubled = {k: p for k, p in position_of.items() if len(p) > 1}
    assert not doubled, f"commands applied more than once: {sorted(doubled)[:10]}"
    keys = {c.key for c in commands}
    assert set(position_of) == keys, (
        f"lost: {sorted(keys - set(position_of))[:10]}, "
        f"unknown: {sorted(set(position_of) - keys)[:10]}"
    )
    orders = [c.key for c in commands if c.subject == "hub.cmd.order.place"]
    wrong = {k: commits[order_ref(PLATFORM, k)] for k in orders}
    wrong = {k: n for k, n in wrong.items() if n != 1}
    assert not wrong, f"orders whose stock commit is not exactly once: {wrong}"
    empty = [c.key for c in commands if c.empty_first_reply]
    assert not empty, f"first attempts answered as repeats: {empty[:10]}"
    misplaced = [
        c.key
        for c in commands
        if c.reply is not None
        and c.reply.get("positions")
        and position_of[c.key][0] not in c.reply["positions"]
    ]
    assert not misplaced, f"replies naming other positions: {misplaced[:10]}"


async def stream_entries(servers: str | list[str]) -> list[tuple[int, str]]:
    """``(Hub-Position, Nats-Msg-Id)`` of every message of ``HUB_EVENTS``.

    Just after a node died the stream or its new consumer may have no leader
    yet (JetStream answers 503): the read starts over until it gets through,
    within a deadline.
    """
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        try:
            return await _read_stream(servers)
        except (nats.js.errors.ServiceUnavailableError, nats.errors.TimeoutError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)


async def _read_stream(servers: str | list[str]) -> list[tuple[int, str]]:
    nc = await nats.connect(servers)
    try:
        js = nc.jetstream()
        total = (await js.stream_info(STREAM)).state.messages
        sub = await js.pull_subscribe(
            f"{SUBJECT_PREFIX}.>",
            stream=STREAM,
            config=ConsumerConfig(
                ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL
            ),
        )
        entries: list[tuple[int, str]] = []
        while len(entries) < total:
            for msg in await sub.fetch(1000, timeout=10):
                headers = msg.headers or {}
                entries.append((int(headers[H_POSITION]), headers[H_MSG_ID]))
        return entries
    finally:
        await nc.close()


async def check_stream_equals_log(
    servers: str | list[str], log: Sequence[tuple[int, Event]]
) -> None:
    """``HUB_EVENTS`` holds each event of the log once, in log order."""
    expected = [(position, str(event.event_id)) for position, event in log]
    entries = await stream_entries(servers)
    assert len(entries) == len(expected), (
        f"stream holds {len(entries)} messages, the log {len(expected)} events"
    )
    assert entries == expected, "the stream is the log, in order, each event once"


def tracked_names() -> list[str]:
    """Every projection and process the hub keeps a position for."""
    return [p.name for p in default_projections()] + list(PROCESSES)


async def caught_up(database_url: str, servers: str | list[str]) -> bool:
    """Whether the stream and every projection and process reached the log head."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        head = await log_head(conn)
        cur = await conn.execute(
            "SELECT name, position FROM projection_tracking WHERE name = ANY(%s)",
            (tracked_names(),),
        )
        positions = {str(r[0]): int(r[1]) for r in await cur.fetchall()}  # type: ignore[index]
    if any(positions.get(name, -1) < head for name in tracked_names()):
        return False
    nc = await nats.connect(servers, connect_timeout=2, max_reconnect_attempts=1)
    try:
        return (await stream_position(nc.jetstream())).position >= head
    except NotFoundError:
        return head == 0
    finally:
        await nc.close()


async def lagging(database_url: str) -> str:
    """The log head and every tracked position (for a failure message)."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        head = await log_head(conn)
        cur = await conn.execute("SELECT name, position FROM projection_tracking")
        rows = await cur.fetchall()
    return f"head {head}, tracked {sorted(rows)}"  # type: ignore[type-var]


async def wait_caught_up(
    database_url: str, servers: str | list[str], timeout: float = 60.0
) -> None:
    """Wait until everything reached the log head; fail naming what lags."""

    async def check() -> bool:
        try:
            return await caught_up(database_url, servers)
        except (psycopg.OperationalError, TimeoutError, nats.errors.Error):
            return False

    try:
        await wait_until(check, timeout, 0.2)
    except TimeoutError:
        raise AssertionError(
            f"not caught up within {timeout:.0f} s: {await lagging(database_url)}"
        ) from None


async def table_rows(database_url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every projection table, sorted."""
    tables = [t for p in default_projections() for t in p.tables]
    rows: dict[str, list[tuple[Any, ...]]] = {}
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        for table in tables:
            cur = await conn.execute(
                sql.SQL("SELECT * FROM {}").format(sql.Identifier(table))
            )
            rows[table] = sorted(await cur.fetchall(), key=repr)
    return rows


async def check_projections_equal_rebuild(database_url: str) -> None:
    """Every projection's tables equal a rebuild from the log (no hub running)."""
    live = await table_rows(database_url)
    for projection in default_projections():
        await rebuild(database_url, projection)
    rebuilt = await table_rows(database_url)
    for table, rows in live.items():
        assert rows == rebuilt[table], (
            f"projection table {table} differs from a rebuild"
        )


async def check_nothing_lost_or_doubled(
    database_url: str, servers: str | list[str], commands: Sequence[Command]
) -> None:
    """After a fault: each command is in the log once, as its reply said;
    ``HUB_EVENTS`` on ``servers`` equals the log; every projection equals a
    rebuild."""
    log = await whole_log(database_url)
    check_each_command_once(log, commands)
    await check_stream_equals_log(servers, log)
    await check_projections_equal_rebuild(database_url)
