"""Beyond one machine: two hubs on a 3-node NATS JetStream cluster.

Two ``hub serve`` processes share the command queue group and one PostgreSQL
(a database of the session's server), with ``HUB_NATS_URL`` listing all three
NATS nodes and ``HUB_STREAM_REPLICAS=3``. Mid-load the node leading the
``HUB_EVENTS`` stream and one hub are killed with SIGKILL (neither comes
back): the other hub and the two remaining nodes carry on. Afterwards nothing
acknowledged is lost or doubled, the stream (still R3) equals the log, and every
projection equals a fresh rebuild.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest

from hub.infra.embedded import free_port
from hub.messages import STREAM
from tests.conftest import wait_until
from tests.faults.cluster import NatsCluster
from tests.faults.harness import (
    HubServe,
    Load,
    check_nothing_lost_or_doubled,
    connect_client,
    hub_answers,
    run_fault,
    wait_caught_up,
)

pytestmark = [pytest.mark.faults, pytest.mark.integration]

HUBS = 2
REPLICAS = 3


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    started = NatsCluster(tmp_path / "nats")
    started.start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
async def hubs(
    tmp_path: Path, cluster: NatsCluster, database_url: str
) -> AsyncIterator[list[HubServe]]:
    await cluster.wait_ready()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env |= {
        "HUB_DATABASE_URL": database_url,
        "HUB_NATS_URL": ",".join(cluster.urls),
        "HUB_STREAM_REPLICAS": str(REPLICAS),
    }
    started = [
        HubServe(
            env
            | {
                "HUB_HOME": str(tmp_path / f"home{i}"),
                "HUB_HTTP_PORT": str(free_port()),
            },
            tmp_path / f"hub{i}.log",
        )
        for i in range(HUBS)
    ]
    for hub in started:
        await hub.start()
    try:
        yield started
    finally:
        for i, hub in enumerate(started):
            await hub.stop()
            print(f"hub {i} exits {hub.exits}; output:\n{hub.output_tail()}")


async def stream_leader(nc: nats.NATS) -> str | None:
    """The node leading ``HUB_EVENTS`` (None until the relay created it, and
    while the cluster's JetStream API does not answer yet: a just-started
    cluster may still be choosing its meta leader)."""
    try:
        info = await nc.jetstream().stream_info(STREAM)
    except (
        nats.js.errors.NotFoundError,
        nats.js.errors.ServiceUnavailableError,
        nats.errors.TimeoutError,
    ):
        return None
    return info.cluster.leader if info.cluster else None


async def test_nats_node_and_hub_killed_mid_load_lose_nothing(
    cluster: NatsCluster, hubs: list[HubServe], database_url: str
) -> None:
    nc = await connect_client(cluster.urls)
    try:
        await wait_until(lambda: hub_answers(nc), 120, 0.1)
        await wait_until(lambda: stream_leader(nc), 60, 0.1)
        config = (await nc.jetstream().stream_info(STREAM)).config
        assert config.num_replicas == REPLICAS, "HUB_STREAM_REPLICAS sets the replicas"
        load = Load(nc, "cluster")
        await load.seed()
        victim: list[str] = []

        async def fault() -> None:
            leader = await stream_leader(nc)
            assert leader is not None
            victim.append(leader)
            cluster.node(leader).kill()
            hubs[0].kill(restart=False)

        await run_fault(load, fault)
        print(load.summary(), "killed node", victim)
        survivors = [node.url for node in cluster.nodes if node.alive()]
        await wait_caught_up(database_url, survivors)
    finally:
        await nc.close()
    assert await hubs[1].stop() == 0, "SIGTERM stops the hub, exit code 0"
    await check_nothing_lost_or_doubled(database_url, survivors, load.commands)
