"""Replay benchmark: rebuilding every read model from a large log, against
reading the same rows raw, and loading a long-lived aggregate.

One run:

1. stores N events (1,000,000; ``--quick``: 100,000): stock receipts,
   adjustments and commitments of many SKUs and their orders, one SKU with a
   long history (a fifth of the stock events) and one with ten events;
2. reads the same rows raw with a server-side cursor (the floor: what any
   replay must at least read), then rebuilds every projection from the log,
   blue-green in one pass over the log (``projections.rebuild.rebuild_many``;
   a projection whose tables cannot be copied is rebuilt in place at the same
   time); three times each, alternately, and takes the median of each (one
   run swings by a third from run to run on a shared machine);
3. loads the long-lived SKU and the ten-event one from the store, through
   the snapshots (one taken as the hub takes them, then half an interval of
   events more), a few times each.

It prints events/s of the rebuild, its ratio to the raw read, the peak
memory of the process, and the load times; the last line is one JSON object
with ``events_per_s``, ``ratio_vs_cursor_read``, ``peak_rss_mb`` and
``load_ratio_long_vs_short``.

Usage: ``python bench/replay.py [--quick] [--events N]``. PostgreSQL comes from
``HUB_DATABASE_URL`` when set, else an embedded one is started in a temporary
folder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.servers import bench_servers, fresh_database
from domain import order, stock
from domain.events import Context, Event, project
from hub.bootstrap import default_projections
from hub.infra.migrate import migrate
from hub.infra.runtime import run
from hub.infra.settings import eventsourcing_env
from hub.infra.store import HubApplication
from hub.service.snapshots import EVERY, Snapshots
from projections.base import rebuild
from projections.rebuild import rebuild_many, uncopyable

#: Raw reads of the whole log, and rebuilds of every projection from it:
#: the median of each is compared (one run swings by a third from run to run
#: on a shared machine).
RUNS = 3
#: Events stored per transaction while the log is filled.
CHUNK = 10_000
#: SKUs sharing the ordinary traffic.
SKUS = 1_000
START = datetime(2026, 11, 1, tzinfo=UTC)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Traffic:
    """Decides a stream of realistic events, keeping only current states."""

    def __init__(self) -> None:
        self.items: dict[str, stock.StockItem | None] = {}
        self.orders = 0
        self.moment = START

    def _ctx(self) -> Context:
        self.moment += timedelta(milliseconds=5)
        return Context(now=self.moment)

    def stock(self, command: stock.StockCommand) -> list[Event]:
        """Decide ``command`` on its SKU's state and keep the new state."""
        state = self.items.get(command.sku)
        events = stock.decide(state, command, self._ctx())
        self.items[command.sku] = project(stock.mutate, state, events)
        return events

    def sale(self, sku: str) -> list[Event]:
        """An order of one unit of ``sku``, and its stock commitment."""
        self.orders += 1
        number = str(self.orders)
        placed = order.decide(
            None,
            order.PlaceOrder(
                platform="wechat_shop",
                platform_order_id=number,
                shop_id="bench",
                lines=(
                    order.OrderLine(
                        platform_sku_id=f"p-{sku}",
                        hub_sku=sku,
                        quantity=1,
                        unit_price_fen=990,
                    ),
                ),
            ),
            self._ctx(),
        )
        ref = order.order_ref("wechat_shop", number)
        return placed + self.stock(
            stock.CommitStock(sku=sku, order_ref=ref, quantity=1)
        )

    def events(self, total: int, long_sku: str, short_sku: str) -> Iterator[Event]:
        """``total`` events, about a fifth of them on ``long_sku``."""
        made = 0
        for n in range(SKUS):
            yield from self.stock(stock.ReceiveStock(sku=f"S{n}", quantity=10**6))
        yield from self.stock(stock.ReceiveStock(sku=long_sku, quantity=10**6))
        yield from self.stock(stock.ReceiveStock(sku=short_sku, quantity=10))
        made += SKUS + 2
        for n in range(9):
            yield from self.stock(
                stock.AdjustStock(sku=short_sku, delta=1 + n % 2, reason="count")
            )
        made += 9
        step = 0
        while made < total:
            step += 1
            if step % 5 == 0:
                batch = self.stock(
                    stock.AdjustStock(sku=long_sku, delta=(-1) ** step, reason="tick")
                )
            elif step % 3 == 0:
                batch = self.sale(f"S{step % SKUS}")
            else:
                batch = self.stock(
                    stock.AdjustStock(sku=f"S{step % SKUS}", delta=1, reason="count")
                )
            made += len(batch)
            yield from batch


def fill(app: HubApplication, total: int, long_sku: str, short_sku: str) -> int:
    """Store ``total`` events in chunks; return how many were stored."""
    stored = 0
    chunk: list[Event] = []
    for event in Traffic().events(total, long_sku, short_sku):
        chunk.append(event)
        if len(chunk) == CHUNK:
            stored += len(app.append(chunk))
            chunk = []
    if chunk:
        stored += len(app.append(chunk))
    return stored


def cursor_read(database_url: str) -> tuple[int, float]:
    """Rows and seconds to read the whole log with a server-side cursor."""
    rows = 0
    started = time.perf_counter()
    with psycopg.connect(database_url) as conn, conn.cursor(name="replay") as cur:
        cur.itersize = CHUNK
        cur.execute(
            "SELECT notification_id, topic, state FROM hub_events "
            "ORDER BY notification_id",
            binary=True,
        )
        for _ in cur:
            rows += 1
    return rows, time.perf_counter() - started


async def rebuild_all(database_url: str) -> tuple[float, list[str]]:
    """Seconds to rebuild every projection: those whose tables can be copied
    blue-green in one pass over the log, the others in place, at the same
    time; and the names of those rebuilt in place."""
    projections = default_projections()
    in_place = await uncopyable(database_url, projections)
    started = time.perf_counter()
    await asyncio.gather(
        rebuild_many(database_url, [p for p in projections if p.name not in in_place]),
        *(rebuild(database_url, p) for p in projections if p.name in in_place),
    )
    return time.perf_counter() - started, sorted(in_place)


def load_times(
    app: HubApplication, long_sku: str, short_sku: str, rounds: int = 7
) -> tuple[float, float, int]:
    """Median seconds to load each SKU (no cache), and the long SKU's version."""
    snapshots = Snapshots(app)
    long_id, short_id = stock.stock_item_id(long_sku), stock.stock_item_id(short_sku)
    timings: dict[uuid.UUID, list[float]] = {long_id: [], short_id: []}
    version = 0
    for _ in range(rounds):
        for aggregate_id in (long_id, short_id):
            started = time.perf_counter()
            state = snapshots.load(stock.mutate, aggregate_id)
            timings[aggregate_id].append(time.perf_counter() - started)
            if aggregate_id == long_id:
                version = state.version
    return (
        statistics.median(timings[long_id]),
        statistics.median(timings[short_id]),
        version,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 events, < 3 min")
    parser.add_argument("--events", type=int, default=None, help="events to store")
    args = parser.parse_args()
    total = args.events or (100_000 if args.quick else 1_000_000)

    with bench_servers() as servers:
        database_url = fresh_database(servers.database_url)
        migrate(database_url)
        app = HubApplication(env=eventsourcing_env(database_url))
        long_sku, short_sku = "LONG-1", "SHORT-1"
        started = time.perf_counter()
        stored = fill(app, total, long_sku, short_sku)
        print(f"stored {stored:,} events in {time.perf_counter() - started:.1f} s")
        # A log at rest, as a replay meets it: vacuumed and analysed (else the
        # first reader sets every row's hint bits, and autovacuum may start in
        # the middle of a measurement).
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("VACUUM (ANALYZE) hub_events")

        # Each read is followed by a rebuild, so that both meet the machine
        # alike; the median of each is taken.
        reads: list[float] = []
        rebuilds: list[float] = []
        for _ in range(RUNS):
            rows, read_s = cursor_read(database_url)
            reads.append(read_s)
            # As hub projections rebuild runs it: on the hub's event loop.
            rebuild_s, in_place = run(rebuild_all(database_url))
            rebuilds.append(rebuild_s)
        read_s, rebuild_s = statistics.median(reads), statistics.median(rebuilds)
        raw_per_s = rows / read_s
        print(
            f"raw read, server-side cursor: {rows:,} rows in {read_s:.2f} s "
            f"({raw_per_s:,.0f} rows/s; median of {RUNS}: "
            f"{', '.join(f'{s:.2f}' for s in reads)} s)"
        )
        per_s = stored / rebuild_s
        print(
            f"rebuilt {len(default_projections())} projections from {stored:,} "
            f"events in {rebuild_s:.2f} s: {per_s:,.0f} events/s, "
            f"{per_s / raw_per_s:.3f} x the raw read (median of {RUNS}: "
            f"{', '.join(f'{s:.2f}' for s in rebuilds)} s)"
            + (f"; in place: {', '.join(in_place)}" if in_place else "")
        )

        # The hub snapshots every EVERY versions; then half an interval more.
        item = stock.stock_item_id(long_sku)
        Snapshots(app).take(item)
        traffic = Traffic()
        traffic.items[long_sku] = Snapshots(app).load(stock.mutate, item)
        more = [
            e
            for n in range(EVERY // 2)
            for e in traffic.stock(
                stock.AdjustStock(sku=long_sku, delta=(-1) ** n, reason="after")
            )
        ]
        app.append(more)
        long_s, short_s, version = load_times(app, long_sku, short_sku)
        print(
            f"load {long_sku} ({version:,} events, snapshot + {len(more)} after): "
            f"{long_s * 1000:.2f} ms; {short_sku} (10 events): "
            f"{short_s * 1000:.2f} ms; ratio {long_s / short_s:.2f}"
        )
        app.close()
        result = {
            "events_per_s": round(per_s, 1),
            "ratio_vs_cursor_read": round(per_s / raw_per_s, 3),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "load_ratio_long_vs_short": round(long_s / short_s, 2),
            "cursor_read_rows_per_s": round(raw_per_s, 1),
            "events": stored,
            "projections": len(default_projections()),
            "rebuilt_in_place": in_place,
            "long_aggregate_events": version,
            "long_load_ms": round(long_s * 1000, 3),
            "short_load_ms": round(short_s * 1000, 3),
            "quick": args.quick,
        }
        print(json.dumps(result))


if __name__ == "__main__":
    main()
