"""``hub serve`` on its embedded servers heals or answers, and stops on SIGTERM.

Each test runs ``python -m hub serve`` under a fresh ``HUB_HOME`` on free
ports, kills one of the servers it started with SIGKILL, and checks that the
server is started again, that every command meanwhile gets an answer (``ok``,
or ``store_unavailable`` while PostgreSQL is down: never a client timeout),
that ``/health`` reports the failure, and that SIGTERM then ends the hub with
exit code 0 after stopping its parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats
import pytest
from nats.aio.client import Client as NatsClient

from hub.infra.embedded import free_port
from tests.conftest import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.faults]

#: A client waits this long for a reply; the hub answers within its own
#: command deadline (5 s), so a timeout here is a command left hanging.
REPLY_TIMEOUT_S = 15.0


@dataclass
class Serve:
    """One ``hub serve`` child and where it listens."""

    proc: asyncio.subprocess.Process
    home: Path
    log: Path
    nats_port: int
    http_port: int

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/health"

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def children(self, name: str) -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if (
                comm == name
                and int(stat.rpartition(")")[2].split()[1]) == self.proc.pid
            ):
                found.append(int(entry.name))
        return found


@contextlib.asynccontextmanager
async def serving(tmp_path: Path) -> AsyncIterator[Serve]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"HUB_DATABASE_URL", "HUB_NATS_URL", "HUB_CONNECTORS_FILE"}
    }
    serve = None
    home = tmp_path / "home"
    log = tmp_path / "serve.log"
    ports = {name: free_port() for name in ("pg", "nats", "http")}
    env |= {
        "HUB_HOME": str(home),
        "HUB_PG_PORT": str(ports["pg"]),
        "HUB_NATS_PORT": str(ports["nats"]),
        "HUB_HTTP_PORT": str(ports["http"]),
        "HUB_LOG_LEVEL": "INFO",
    }
    with open(log, "ab") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hub",
            "serve",
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    serve = Serve(proc, home, log, ports["nats"], ports["http"])
    try:
        await wait_until(lambda: _healthy(serve), timeout=180, interval=0.2)
        yield serve
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _health(serve: Serve) -> dict[str, Any] | None:
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            response = await client.get(serve.health_url)
    except httpx.HTTPError:
        return None
    report: dict[str, Any] = response.json()
    return report


async def _healthy(serve: Serve) -> bool:
    if serve.proc.returncode is not None:
        raise AssertionError(f"hub serve exited early:\n{serve.output()}")
    report = await _health(serve)
    return report is not None and bool(report["ok"])


async def _client(serve: Serve) -> NatsClient:
    async def quiet(_: Exception) -> None:
        return None

    return await nats.connect(
        f"nats://127.0.0.1:{serve.nats_port}",
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.1,
        error_cb=quiet,
    )


async def _receive(
    nc: NatsClient, key: str, *, lost_is_none: bool = False
) -> dict[str, Any] | None:
    """Send a receipt; its reply, or None when no hub could be reached (or,
    ``lost_is_none``, when NATS lost the request or its reply)."""
    body = msgspec.json.encode({"sku": "S-1", "quantity": 1, "request_id": key})
    timeout = 2.0 if lost_is_none else REPLY_TIMEOUT_S
    try:
        msg = await nc.request("hub.cmd.stock.receive", body, timeout=timeout)
    except nats.errors.NoRespondersError:
        return None
    except nats.errors.TimeoutError as exc:
        if lost_is_none:
            return None
        raise AssertionError(f"command {key} left hanging") from exc
    reply: dict[str, Any] = msgspec.json.decode(msg.data)
    return reply


async def _stop(serve: Serve) -> int:
    serve.proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(60):
        return await serve.proc.wait()


async def _kill_postgres_after_a_command(
    serve: Serve, nc: NatsClient, key: str
) -> None:
    first = await _receive(nc, key)
    assert first is not None and first["ok"]
    postmaster = int((serve.home / "pg" / "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGKILL)


def _task(report: dict[str, Any] | None, name: str) -> dict[str, Any]:
    assert report is not None
    [task] = [t for t in report["tasks"] if t["name"] == name]
    return task


async def test_a_killed_nats_server_is_started_again(tmp_path: Path) -> None:
    async with serving(tmp_path) as serve:
        nc = await _client(serve)
        try:
            first = await _receive(nc, "n-0")
            assert first is not None and first["ok"]
            [old] = serve.children("nats-server")
            os.kill(old, signal.SIGKILL)
            answered: list[dict[str, Any]] = []

            async def answered_again() -> bool:
                # While nats-server is down, a request (or its reply) is lost.
                reply = await _receive(nc, f"n-{len(answered) + 1}", lost_is_none=True)
                if reply is not None:
                    answered.append(reply)
                return reply is not None and bool(reply["ok"])

            await wait_until(answered_again, timeout=60, interval=0.1)
            assert serve.children("nats-server") not in ([], [old])
            task = _task(await _health(serve), "embedded nats-server")
            assert task["failures"] >= 1 and "exited" in task["last_error"]
        finally:
            await nc.close()
        assert await _stop(serve) == 0, serve.output()
    assert "stopped" in serve.output()


async def test_a_killed_postgres_is_started_again_and_commands_are_answered(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path) as serve:
        nc = await _client(serve)
        try:
            await _kill_postgres_after_a_command(serve, nc, "p-0")
            replies: list[dict[str, Any]] = []

            async def stored_again() -> bool:
                reply = await _receive(nc, f"p-{len(replies) + 1}")
                assert reply is not None, "the hub stopped answering on NATS"
                replies.append(reply)
                return bool(reply["ok"])

            await wait_until(stored_again, timeout=120, interval=0.05)
            codes = {r["error"]["code"] for r in replies if not r["ok"]}
            assert codes <= {"store_unavailable"}, replies
            await wait_until(lambda: _healthy(serve), timeout=60, interval=0.2)
            task = _task(await _health(serve), "embedded PostgreSQL")
            assert task["failures"] >= 1
        finally:
            await nc.close()
        assert await _stop(serve) == 0, serve.output()
    output = serve.output()
    assert "stopped" in output and "Traceback" not in output.split("stopping")[-1]


async def test_sigterm_while_postgres_is_down_stops_with_exit_0(tmp_path: Path) -> None:
    async with serving(tmp_path) as serve:
        nc = await _client(serve)
        try:
            await _kill_postgres_after_a_command(serve, nc, "t-0")
            body = msgspec.json.encode({"sku": "S-1", "quantity": 1})
            in_flight = [
                asyncio.ensure_future(
                    nc.request("hub.cmd.stock.receive", body, timeout=REPLY_TIMEOUT_S)
                )
                for _ in range(20)
            ]
            code = await _stop(serve)
            await asyncio.gather(*in_flight, return_exceptions=True)
        finally:
            await nc.close()
        assert code == 0, serve.output()
    assert "stopped" in serve.output()
