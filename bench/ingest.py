"""Ingest benchmark: the hub's whole path against its two baselines, one run.

(a) eventsourcing saving one event per transaction (the naive event store),
(b) raw JetStream publishing with 500 publishes in flight (the relay's ceiling),
(c) the hub: N concurrent stock commands → stored (group commit) → published on
    ``HUB_EVENTS`` by the relay → projection ``stock_on_hand`` current. All N
    are in flight at once and each is answered only once durable; the caller
    holds them as futures (``Hub.submit``), as (b) holds its publishes as
    ``publish_async`` futures. ``--tasks`` makes each its own ``hub.execute``
    task instead (a task per command costs the writer ~10 µs more).

All three run in the same process on the same PostgreSQL and nats-server, so the
ratios c/a and c/b are comparable across machines even when absolute times
drift. The last line printed is one JSON object.

Usage: ``python bench/ingest.py [--quick] [--events N] [--tasks]``. Servers come from
``HUB_DATABASE_URL`` / ``HUB_NATS_URL`` when set, else embedded ones are started
in a temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import nats
import psycopg
from nats.js import api as js_api

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

from bench.servers import bench_servers, fresh_database
from domain.events import Context
from domain.stock import ReceiveStock, StockReceived, decide
from hub.bootstrap import bootstrap
from hub.infra.relay import stream_position
from hub.infra.runtime import run as run_loop
from hub.infra.settings import eventsourcing_env
from hub.infra.store import HubApplication, encode_event
from hub.messages import STREAM, to_message

BENCH_STREAM = "BENCH_BASELINE"


def sample_events(count: int) -> list[StockReceived]:
    ctx = Context(now=datetime.now(UTC))
    out = []
    for i in range(count):
        (event,) = decide(None, ReceiveStock(sku=f"B-{i}", quantity=1), ctx)
        assert isinstance(event, StockReceived)
        out.append(event)
    return out


def bench_one_save_per_event(database_url: str, count: int) -> float:
    """(a) events/s saving each event in its own transaction."""
    app = HubApplication(env=eventsourcing_env(database_url))
    events = sample_events(count)
    app.save(events[0])  # warm up the pool and prepared statements
    started = time.perf_counter()
    for event in events[1:]:
        app.save(event)
    elapsed = time.perf_counter() - started
    app.close()
    return (count - 1) / elapsed


async def bench_jetstream(nats_url: str, count: int, in_flight: int = 500) -> float:
    """(b) events/s publishing event-sized messages with ``in_flight`` pending."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream(publish_async_max_pending=in_flight)
    try:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(BENCH_STREAM)
        await js.add_stream(
            js_api.StreamConfig(
                name=BENCH_STREAM,
                subjects=["bench.baseline.>"],
                storage=js_api.StorageType.FILE,
            )
        )
        events = sample_events(count)
        payloads = [
            (encode_event(e), str(e.event_id), to_message(e, i + 1))
            for i, e in enumerate(events)
        ]
        started = time.perf_counter()
        futures = []
        for data, msg_id, _ in payloads:
            futures.append(
                await js.publish_async(
                    "bench.baseline.stock", data, headers={"Nats-Msg-Id": msg_id}
                )
            )
        await asyncio.gather(*futures)
        elapsed = time.perf_counter() - started
        await js.delete_stream(BENCH_STREAM)
        return count / elapsed
    finally:
        await nc.close()


async def _delete_events_stream(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().delete_stream(STREAM)
    except nats.js.errors.NotFoundError:
        pass
    finally:
        await nc.close()


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 600) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.002)


async def bench_hub(
    database_url: str, nats_url: str, count: int, *, workers: bool, tasks: bool = False
) -> dict[str, float]:
    """(c) events/s through the hub: command → stored → HUB_EVENTS → projected.

    With ``workers`` the relay and the projection run as their own processes
    (``hub relay``, ``hub project stock_on_hand``), as a scaled-out hub does;
    without, everything runs in this one process, as plain ``hub serve`` does.
    """
    await _delete_events_stream(nats_url)
    hub = bootstrap(
        database_url=database_url,
        nats_url=nats_url,
        run_relay=not workers,
        projections=None if not workers else [],
    )
    await hub.start()
    procs: list[subprocess.Popen[bytes]] = []
    if workers:
        env = dict(os.environ, HUB_DATABASE_URL=database_url, HUB_NATS_URL=nats_url)
        procs = [
            subprocess.Popen([sys.executable, "-m", "hub", *args], env=env)
            for args in (["relay"], ["project", "stock_on_hand"])
        ]
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    db = await psycopg.AsyncConnection.connect(database_url, autocommit=True)

    async def published(position: int) -> bool:
        try:
            return (await stream_position(js)).position >= position
        except nats.js.errors.NotFoundError:
            return False

    async def projected(position: int) -> bool:
        cur = await db.execute(
            "SELECT position FROM projection_tracking WHERE name = 'stock_on_hand'"
        )
        row = await cur.fetchone()
        return row is not None and row[0] >= position

    try:
        # Warm-up: create the SKUs so the run measures steady-state commands.
        skus = [f"S-{i}" for i in range(200)]
        await asyncio.gather(
            *(
                hub.execute("stock.receive", ReceiveStock(sku=s, quantity=1))
                for s in skus
            )
        )
        await _until(lambda: published(len(skus)), 120)
        await _until(lambda: projected(len(skus)), 120)
        transactions_before = hub.committer.transactions
        started = time.perf_counter()
        # All N in flight at once, each answered after it is durable: submitted
        # as futures (Hub.submit), as (b) publishes with publish_async futures;
        # ``tasks`` runs each as its own hub.execute task instead.
        if tasks:
            outcomes = await asyncio.gather(
                *(
                    hub.execute(
                        "stock.receive",
                        ReceiveStock(sku=skus[i % len(skus)], quantity=1),
                    )
                    for i in range(count)
                )
            )
        else:
            outcomes = await asyncio.gather(
                *[
                    hub.submit(
                        "stock.receive",
                        ReceiveStock(sku=skus[i % len(skus)], quantity=1),
                    )
                    for i in range(count)
                ]
            )
        stored = time.perf_counter() - started
        head = max(p for o in outcomes for p in o.positions)
        await _until(lambda: published(head))
        publish_done = time.perf_counter() - started
        await _until(lambda: projected(head))
        elapsed = time.perf_counter() - started
        return {
            "events_per_s": count / elapsed,
            "stored_per_s": count / stored,
            "published_per_s": count / publish_done,
            "transactions": hub.committer.transactions - transactions_before,
        }
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        await db.close()
        await nc.close()
        await hub.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small run, < 2 min")
    parser.add_argument("--events", type=int, default=None, help="hub events (c)")
    parser.add_argument(
        "--tasks",
        action="store_true",
        help="(c) callers as one hub.execute task per command, not Hub.submit futures",
    )
    args = parser.parse_args()
    hub_events = args.events or (20_000 if args.quick else 100_000)
    save_events = 2_000 if args.quick else 10_000
    js_events = 20_000 if args.quick else 100_000

    with bench_servers() as servers:
        a = bench_one_save_per_event(fresh_database(servers.database_url), save_events)
        print(f"(a) eventsourcing, one event per transaction: {a:,.0f} events/s")
        b = run_loop(bench_jetstream(servers.nats_url, js_events))
        print(f"(b) JetStream publish, 500 in flight:         {b:,.0f} events/s")
        runs = {}
        for workers in (False, True):
            c = run_loop(
                bench_hub(
                    fresh_database(servers.database_url),
                    servers.nats_url,
                    hub_events,
                    workers=workers,
                    tasks=args.tasks,
                )
            )
            runs[workers] = c
            label = (
                "relay + projection as worker processes" if workers else ("one process")
            )
            print(
                f"(c) hub, {label}: command → stored → HUB_EVENTS → projected: "
                f"{c['events_per_s']:,.0f} events/s (stored {c['stored_per_s']:,.0f}/s,"
                f" published {c['published_per_s']:,.0f}/s, "
                f"{c['transactions']:.0f} transactions for {hub_events} commands)"
            )
        best = runs[True]
        result = {
            "hub_events_per_s": round(best["events_per_s"], 1),
            "ratio_vs_one_save_per_event": round(best["events_per_s"] / a, 2),
            "ratio_vs_jetstream": round(best["events_per_s"] / b, 3),
            "one_save_per_event_per_s": round(a, 1),
            "jetstream_per_s": round(b, 1),
            "hub_stored_per_s": round(best["stored_per_s"], 1),
            "hub_published_per_s": round(best["published_per_s"], 1),
            "hub_transactions": int(best["transactions"]),
            "hub_single_process_events_per_s": round(runs[False]["events_per_s"], 1),
            "single_process_ratio_vs_one_save_per_event": round(
                runs[False]["events_per_s"] / a, 2
            ),
            "single_process_ratio_vs_jetstream": round(
                runs[False]["events_per_s"] / b, 3
            ),
            "events": hub_events,
            "callers": "tasks" if args.tasks else "submit",
            "quick": args.quick,
        }
        print(json.dumps(result))


if __name__ == "__main__":
    main()
