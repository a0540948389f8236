"""Append benchmark: the group committer's store calls, one statement each.

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

The committer's other store call, the load of the aggregates a batch needs
that it does not hold, is measured the same way (three aggregates a load, of
200 with short histories): :meth:`hub.service.snapshots.Snapshots.load_many_async`
(one statement from the event loop, what the committer uses) against
:meth:`~hub.service.snapshots.Snapshots.load_many` in a worker thread (a
transaction of two statements on a pooled connection, as before).

Usage: ``python bench/append.py [--appends N] [--rounds R] [--events E]``.
Servers come from ``HUB_DATABASE_URL`` when set, else an embedded PostgreSQL
is started in a temporary folder. The last line printed is one JSON object:
``writer_cpu_us_per_append``, ``library_cpu_us_per_append``,
``ratio_cpu_vs_library``, ``writer_wall_us_per_append``,
``library_wall_us_per_append`` and ``ratio_wall_vs_library``; for the loads
``load_cpu_us_per_call``, ``thread_load_cpu_us_per_call``,
``ratio_load_cpu_vs_thread``, ``load_wall_us_per_call``,
``thread_load_wall_us_per_call`` and ``ratio_load_wall_vs_thread``.
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
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.servers import bench_servers, fresh_database
from domain import stock
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


async def _per_call(
    call: Callable[[Any], Awaitable[object]], arguments: list[Any]
) -> tuple[float, float]:
    """CPU and wall µs per call of ``call`` on each of ``arguments``."""
    cpu, wall = _cpu_s(), time.perf_counter()
    for argument in arguments:
        await call(argument)
    return (
        (_cpu_s() - cpu) / len(arguments) * 1e6,
        (time.perf_counter() - wall) / len(arguments) * 1e6,
    )


#: Aggregates of the loads, and how many one load asks for.
LOAD_AGGREGATES = 200
LOAD_WANTED = 3


async def measure(
    database_url: str, appends: int, rounds: int, events: int
) -> dict[str, list[tuple[float, float]]]:
    """Alternate the two ways of each call ``rounds`` times; their (CPU, wall)
    per call, by way: ``writer``, ``library`` (appends), ``load``,
    ``thread_load`` (loads)."""
    hub = bootstrap(
        database_url=database_url, nats_url=None, projections=[], run_relay=False
    )
    await hub.start()
    try:
        items = []
        appended = max(1, events // 2)  # the appends' aggregates; the loads' after
        for i in range(appended + LOAD_AGGREGATES):
            outcome = await hub.execute(
                "stock.receive", ReceiveStock(sku=f"APPEND-{i}", quantity=1)
            )
            items.append(outcome.events[-1])
        batches = Batches(items[:appended])
        ids = [event.originator_id for event in items[appended:]]
        app: HubApplication = hub.app
        snapshots = hub.committer.snapshots
        assert snapshots is not None

        async def writer(batch: Batch) -> object:
            return await app.append_async(*batch)

        async def library(batch: Batch) -> object:
            return await asyncio.to_thread(app.append, *batch)

        async def load(wanted: dict[uuid.UUID, Any]) -> object:
            return await snapshots.load_many_async(wanted)

        async def thread_load(wanted: dict[uuid.UUID, Any]) -> object:
            return await asyncio.to_thread(snapshots.load_many, wanted)

        def appends_of(count: int) -> list[Batch]:
            return [batches.next(events) for _ in range(count)]

        def loads_of(count: int) -> list[dict[uuid.UUID, Any]]:
            return [
                {
                    ids[(n * LOAD_WANTED + k) % len(ids)]: stock.mutate
                    for k in range(LOAD_WANTED)
                }
                for n in range(count)
            ]

        ways: dict[str, tuple[Callable[[Any], Awaitable[object]], Any]] = {
            "writer": (writer, appends_of),
            "library": (library, appends_of),
            "load": (load, loads_of),
            "thread_load": (thread_load, loads_of),
        }
        for call, make in ways.values():
            await _per_call(call, make(50))  # connections, plans
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
        for _ in range(rounds):
            for name, (call, make) in ways.items():
                results[name].append(await _per_call(call, make(appends)))
        return results
    finally:
        await hub.stop()


def _pair(
    medians: dict[str, tuple[float, float]], ours: str, theirs: str
) -> tuple[float, float, float, float, float, float]:
    """Two ways' median CPU and wall µs and their ratios: (our CPU, their
    CPU, CPU ratio, our wall, their wall, wall ratio)."""
    (our_cpu, our_wall), (their_cpu, their_wall) = medians[ours], medians[theirs]
    return (
        round(our_cpu, 1),
        round(their_cpu, 1),
        round(our_cpu / their_cpu, 3),
        round(our_wall, 1),
        round(their_wall, 1),
        round(our_wall / their_wall, 3),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=400, help="calls a round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each")
    parser.add_argument("--events", type=int, default=6, help="events an append")
    args = parser.parse_args()
    with bench_servers("hub-bench-append-") as servers:
        url = fresh_database(servers.database_url, "append")
        migrate(url)
        results = run(measure(url, args.appends, args.rounds, args.events))
    for name, values in results.items():
        shown = ", ".join(f"{cpu:.0f}/{wall:.0f}" for cpu, wall in values)
        print(f"{name}: CPU/wall µs per call, each round: {shown}")
    medians = {
        name: (
            statistics.median(cpu for cpu, _ in values),
            statistics.median(wall for _, wall in values),
        )
        for name, values in results.items()
    }
    append = _pair(medians, "writer", "library")
    load = _pair(medians, "load", "thread_load")
    print(
        json.dumps(
            {
                "writer_cpu_us_per_append": append[0],
                "library_cpu_us_per_append": append[1],
                "ratio_cpu_vs_library": append[2],
                "writer_wall_us_per_append": append[3],
                "library_wall_us_per_append": append[4],
                "ratio_wall_vs_library": append[5],
                "load_cpu_us_per_call": load[0],
                "thread_load_cpu_us_per_call": load[1],
                "ratio_load_cpu_vs_thread": load[2],
                "load_wall_us_per_call": load[3],
                "thread_load_wall_us_per_call": load[4],
                "ratio_load_wall_vs_thread": load[5],
                "events_per_append": args.events,
                "aggregates_per_load": LOAD_WANTED,
                "calls_per_round": args.appends,
                "rounds": args.rounds,
            }
        )
    )


if __name__ == "__main__":
    main()
