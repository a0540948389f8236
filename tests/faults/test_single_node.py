"""Faults under load on one ``hub serve`` with its embedded servers.

Each case starts ``python -m hub serve`` under a fresh ``HUB_HOME`` on free
ports, sends commands over NATS request/reply while one fault happens, sends
every unanswered command again with the same key, waits until the relay and
every projection reached the log head, and stops the hub with SIGTERM (exit 0
expected). Then, on the same data: each command is in the log exactly once as
its reply said, ``HUB_EVENTS`` equals the log, and every projection equals a
fresh rebuild.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from hub.infra.embedded import free_port, running_servers
from tests.conftest import wait_until
from tests.faults.harness import (
    HubServe,
    Load,
    check_nothing_lost_or_doubled,
    connect_client,
    descendants,
    hub_answers,
    paused,
    postmaster_pid,
    run_fault,
    signal_all,
    terminate_backends,
    wait_caught_up,
)

pytestmark = [pytest.mark.faults, pytest.mark.integration]

#: How long a paused server stays frozen.
PAUSE_S = 10.0


@dataclass
class Node:
    """One ``hub serve`` and where its embedded servers listen."""

    hub: HubServe
    home: Path
    pg_port: int
    nats_port: int

    @property
    def database_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/hub"

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.nats_port}"

    def nats_server(self) -> list[int]:
        pids = self.hub.server_pids("nats-server")
        assert pids, "the hub runs an embedded nats-server"
        return pids

    def postgres(self) -> list[int]:
        """The postmaster and every process below it."""
        postmaster = postmaster_pid(self.home)
        return [postmaster, *descendants(postmaster)]


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    home = tmp_path / "home"
    pg_port, nats_port, http_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env |= {
        "HUB_HOME": str(home),
        "HUB_PG_PORT": str(pg_port),
        "HUB_NATS_PORT": str(nats_port),
        "HUB_HTTP_PORT": str(http_port),
    }
    hub = HubServe(env, tmp_path / "hub.log")
    await hub.start()
    try:
        yield Node(hub, home, pg_port, nats_port)
    finally:
        await hub.stop()
        print(f"hub exits {hub.exits}; output:\n{hub.output_tail()}")


async def kill_hub(node: Node) -> None:
    node.hub.kill()


async def kill_nats(node: Node) -> None:
    signal_all(node.nats_server(), signal.SIGKILL)


async def kill_postgres(node: Node) -> None:
    signal_all(node.postgres()[:1], signal.SIGKILL)


async def drop_connections(node: Node) -> None:
    assert await asyncio.to_thread(terminate_backends, node.database_url) > 0


async def pause_nats(node: Node) -> None:
    await paused(node.nats_server(), PAUSE_S)


async def pause_postgres(node: Node) -> None:
    await paused(node.postgres(), PAUSE_S)


FAULTS: dict[str, Callable[[Node], Awaitable[None]]] = {
    "kill_hub": kill_hub,
    "kill_nats": kill_nats,
    "kill_postgres": kill_postgres,
    "drop_connections": drop_connections,
    "pause_nats": pause_nats,
    "pause_postgres": pause_postgres,
}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_fault_under_load_loses_and_doubles_nothing(
    node: Node, fault: str
) -> None:
    nc = await connect_client(node.nats_url, wait=120)
    try:
        await wait_until(lambda: hub_answers(nc), 120, 0.1)
        load = Load(nc, fault.replace("_", "-"))
        await load.seed()
        await run_fault(load, lambda: FAULTS[fault](node))
        print(load.summary())
        await wait_caught_up(node.database_url, node.nats_url)
    finally:
        await nc.close()
    assert await node.hub.stop() == 0, "SIGTERM stops the hub, exit code 0"
    with running_servers(
        node.home, pg_port=node.pg_port, nats_port=node.nats_port
    ) as servers:
        await check_nothing_lost_or_doubled(
            servers.database_url, servers.nats_url, load.commands
        )
