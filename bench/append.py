"""Append benchmark: the group commit's write, one statement against the library's.

Every batch the group committer decides is stored by one append: its events
and its commands' request ids, in one transaction under the log's table lock.
This bench stores the same batches both ways, alternating ``--rounds`` times
in one process on uvloop against one PostgreSQL:

* **writer**: :meth:`hub.infra.store.HubApplication.append_async`, what the
  committer uses: one call of the ``hub_append`` function, from the event
  loop, on a connection of its own (:class:`hub.infra.store.LogWriter`);
* **library**: :meth:`hub.infra.store.HubApplication.append` in a worker
  thread, as the committer stored before: the eventsourcing recorder's
  transaction on a pooled connection (a connection check, BEGIN, the lock,
  NOTIFY, the insert, COMMIT).

Each batch holds ``--events`` events of real stock aggregates (a new
aggregate version each) and one request id per aggregate, as a busy batch
does. It reports this process's CPU (user + system) and the wall time per
append, the median of the rounds, and the ratios writer / library;
PostgreSQL's CPU is not counted.

Usage: ``python bench/append.py [--appends N] [--rounds R] [--events E]``.
Servers come from ``HUB_DATABASE_URL`` when set, else an embedded PostgreSQL
is started in a temporary folder. The last line printed is one JSON object:
``writer_cpu_us_per_append``, ``library_cpu_us_per_append``,
``ratio_cpu_vs_library``, ``writer_wall_us_per_append``,
``library_wall_us_per_append`` and ``ratio_wall_vs_library``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.servers import bench_servers, fresh_database
from domain.events import Event
from domain.stock import ReceiveStock
from hub.bootstrap import bootstrap
from hub.infra.migrate import migrate
from hub.infra.runtime import run
from hub.infra.store import HubApplication, RequestKey

#: What one append stores: events and the request ids of their commands.
Batch = tuple[list[Event], list[RequestKey]]


def _cpu_s() -> float:
    times = os.times()
    return times.user + times.system


class Batches:
    """Batches of new versions of ``aggregates`` stock items, each version
    stored once (a version stored twice would fail as a lost race)."""

    def __init__(self, templates: list[Event]) -> None:
        self._templates = templates
        self._versions = [t.originator_version for t in templates]

    def next(self, events: int) -> Batch:
        """``events`` new events, one per aggregate in turn, with a request id
        for each aggregate's run of them."""
        made: list[Event] = []
        keys: dict[uuid.UUID, RequestKey] = {}
        for i in range(events):
            slot = i % len(self._templates)
            self._versions[slot] += 1
            template = self._templates[slot]
            version = self._versions[slot]
            made.append(msgspec.structs.replace(template, originator_version=version))
            first = keys.get(template.originator_id)
            keys[template.originator_id] = RequestKey(
                template.originator_id,
                first.request_id if first else uuid.uuid4().hex,
                first.first_version if first else version,
                version,
            )
        return made, list(keys.values())


async def _per_append(
    append: Callable[[Batch], Awaitable[object]],
    batches: Batches,
    appends: int,
    events: int,
) -> tuple[float, float]:
    """CPU and wall µs per append over ``appends`` appends."""
    made = [batches.next(events) for _ in range(appends)]
    cpu, wall = _cpu_s(), time.perf_counter()
    for batch in made:
        await append(batch)
    return (
        (_cpu_s() - cpu) / appends * 1e6,
        (time.perf_counter() - wall) / appends * 1e6,
    )


async def measure(
    database_url: str, appends: int, rounds: int, events: int
) -> dict[str, list[tuple[float, float]]]:
    """Alternate the two ways ``rounds`` times; their (CPU, wall) per append."""
    hub = bootstrap(
        database_url=database_url, nats_url=None, projections=[], run_relay=False
    )
    await hub.start()
    try:
        templates = []
        for i in range(max(1, events // 2)):
            outcome = await hub.execute(
                "stock.receive", ReceiveStock(sku=f"APPEND-{i}", quantity=1)
            )
            templates.append(outcome.events[-1])
        batches = Batches(templates)
        app: HubApplication = hub.app

        async def writer(batch: Batch) -> object:
            return await app.append_async(*batch)

        async def library(batch: Batch) -> object:
            return await asyncio.to_thread(app.append, *batch)

        await _per_append(writer, batches, 50, events)  # connections, plans
        await _per_append(library, batches, 50, events)
        results: dict[str, list[tuple[float, float]]] = {"writer": [], "library": []}
        for _ in range(rounds):
            results["writer"].append(
                await _per_append(writer, batches, appends, events)
            )
            results["library"].append(
                await _per_append(library, batches, appends, events)
            )
        return results
    finally:
        await hub.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=400, help="appends a round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each")
    parser.add_argument("--events", type=int, default=6, help="events an append")
    args = parser.parse_args()
    with bench_servers("hub-bench-append-") as servers:
        url = fresh_database(servers.database_url, "append")
        migrate(url)
        results = run(measure(url, args.appends, args.rounds, args.events))
    medians = {
        name: (
            statistics.median(cpu for cpu, _ in values),
            statistics.median(wall for _, wall in values),
        )
        for name, values in results.items()
    }
    for name, values in results.items():
        shown = ", ".join(f"{cpu:.0f}/{wall:.0f}" for cpu, wall in values)
        print(f"{name}: CPU/wall µs per append, each round: {shown}")
    (writer_cpu, writer_wall), (library_cpu, library_wall) = (
        medians["writer"],
        medians["library"],
    )
    print(
        json.dumps(
            {
                "writer_cpu_us_per_append": round(writer_cpu, 1),
                "library_cpu_us_per_append": round(library_cpu, 1),
                "ratio_cpu_vs_library": round(writer_cpu / library_cpu, 3),
                "writer_wall_us_per_append": round(writer_wall, 1),
                "library_wall_us_per_append": round(library_wall, 1),
                "ratio_wall_vs_library": round(writer_wall / library_wall, 3),
                "events_per_append": args.events,
                "appends_per_round": args.appends,
                "rounds": args.rounds,
            }
        )
    )


if __name__ == "__main__":
    main()
