"""Blue-green projection rebuilds against real PostgreSQL: a rebuild killed with
SIGKILL halfway resumes and ends equal to a fresh one, while the serving
version answers reads throughout."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from domain import order, stock
from eventlog.log import log_head
from hub.bootstrap import bootstrap
from hub.infra.migrate import bundled_migrations, migrate
from hub.service.hub import Hub
from projections.base import rebuild
from projections.inventory import InventoryProjection
from projections.rebuild import (
    ProgressBar,
    RebuildError,
    list_versions,
    rebuild_blue_green,
    rebuild_many,
    uncopyable,
)
from projections.stock import StockOnHandProjection
from tests.conftest import wait_until

pytestmark = pytest.mark.integration

SKUS = 50
NAME = "stock_on_hand"


@pytest.fixture
async def hub(database_url: str) -> AsyncIterator[Hub]:
    running = bootstrap(
        database_url=database_url,
        nats_url=None,
        run_processes=False,
        projections=[StockOnHandProjection()],
    )
    await running.start()
    yield running
    await running.stop()


async def _load(hub: Hub, rounds: int) -> int:
    """Receive every SKU, then adjust each ``rounds`` times; the log head."""
    futures = [
        hub.submit("stock.receive", stock.ReceiveStock(sku=f"S{n}", quantity=500))
        for n in range(SKUS)
    ]
    futures += [
        hub.submit(
            "stock.adjust",
            stock.AdjustStock(sku=f"S{n}", delta=(-1) ** r, reason=f"r{r}"),
        )
        for r in range(rounds)
        for n in range(SKUS)
    ]
    await asyncio.gather(*futures)
    async with await psycopg.AsyncConnection.connect(hub.database_url) as conn:
        return await log_head(conn)


async def _rows(database_url: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute("SELECT * FROM stock_on_hand ORDER BY sku")
        return list(await cur.fetchall())


async def _building_position(database_url: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT position FROM projection_versions WHERE name = %s "
            "AND status = 'building'",
            (NAME,),
        )
        row = await cur.fetchone()
    return int(row[0]) if row else 0


def _rebuild_cli(
    database_url: str, *extra: str, name: str = NAME
) -> subprocess.Popen[str]:
    env = os.environ | {
        "HUB_DATABASE_URL": database_url,
        "HUB_NATS_URL": "nats://127.0.0.1:1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "hub.entry.cli", "projections", "rebuild", name, *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_a_rebuild_killed_halfway_resumes_and_ends_equal_to_a_fresh_one(
    hub: Hub,
) -> None:
    runner = hub.projection(NAME)
    head = await _load(hub, rounds=60)
    await runner.wait_for(head)
    before = await _rows(hub.database_url)
    assert len(before) == SKUS

    reads = 0
    done = asyncio.Event()

    async def reader() -> None:
        """Reads the serving table all along: it never lacks a row."""
        nonlocal reads
        async with await psycopg.AsyncConnection.connect(
            hub.database_url, autocommit=True
        ) as conn:
            while not done.is_set():
                cur = await conn.execute("SELECT count(*) FROM stock_on_hand")
                row = await cur.fetchone()
                assert row is not None and row[0] == SKUS
                reads += 1
                await asyncio.sleep(0)

    reading = asyncio.create_task(reader())
    child = _rebuild_cli(hub.database_url, "--batch", "50")
    await wait_until(
        lambda: _building_position(hub.database_url), timeout=60, interval=0.005
    )

    async def halfway() -> bool:
        return await _building_position(hub.database_url) >= head // 3

    await wait_until(halfway, timeout=60, interval=0.005)
    child.send_signal(signal.SIGKILL)
    child.communicate()
    killed_at = await _building_position(hub.database_url)
    assert 0 < killed_at < head, "killed halfway"
    [info] = await list_versions(hub.database_url, [StockOnHandProjection()])
    assert (info.version, info.building) == (1, 2)

    # More events while no rebuild runs: the live runner keeps serving.
    head = await _load(hub, rounds=4)
    child = _rebuild_cli(hub.database_url)
    out, err = await asyncio.to_thread(child.communicate, timeout=120)
    assert child.returncode == 0, err
    assert f"projection {NAME} version 2 serving" in out
    assert "events/s" in err and "left" in err, "a progress bar with rate and ETA"
    await runner.wait_for(head)
    done.set()
    await reading
    assert reads > 0

    resumed = await _rows(hub.database_url)
    version, _ = await rebuild_blue_green(hub.database_url, StockOnHandProjection())
    assert version == 3
    fresh = await _rows(hub.database_url)
    assert resumed == fresh, "the resumed rebuild equals a fresh one"
    assert [r[0] for r in resumed] == [r[0] for r in before]
    assert sum(r[5] for r in fresh) == head, "every stock event applied once"

    async with await psycopg.AsyncConnection.connect(hub.database_url) as conn:
        cur = await conn.execute(
            "SELECT version, status FROM projection_versions WHERE name = %s "
            "ORDER BY version",
            (NAME,),
        )
        assert await cur.fetchall() == [(1, "retired"), (2, "retired"), (3, "serving")]
        cur = await conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'proj_%%'"
        )
        assert await cur.fetchone() == (0,), "no version's schema is left behind"


def test_projections_list_shows_versions_positions_and_lag(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from hub.entry.cli import main

    async def given() -> None:
        running = bootstrap(database_url=database_url, nats_url=None, projections=[])
        await running.start()
        try:
            await _load(running, rounds=1)
        finally:
            await running.stop()
        await rebuild_blue_green(database_url, StockOnHandProjection())

    asyncio.run(given())
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    monkeypatch.setenv("HUB_NATS_URL", "nats://127.0.0.1:1")
    assert main(["projections", "list", "--json"]) == 0
    infos = {i["name"]: i for i in json.loads(capsys.readouterr().out)}
    assert infos[NAME]["version"] == 2
    assert infos[NAME]["events_behind"] == 0
    assert infos["inventory"]["version"] == 1
    assert infos["inventory"]["events_behind"] == SKUS * 2
    assert infos["inventory"]["seconds_behind"] >= 0
    assert main(["projections", "list"]) == 0
    assert "stock_on_hand" in capsys.readouterr().out


async def test_a_projection_with_triggers_is_refused_by_name(database_url: str) -> None:
    running = bootstrap(database_url=database_url, nats_url=None, projections=[])
    await running.start()
    await running.stop()

    class Guarded(StockOnHandProjection):
        name = "guarded"

    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await conn.execute(
            "CREATE FUNCTION guard() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RETURN NEW; END $$"
        )
        await conn.execute(
            "CREATE TRIGGER guarded BEFORE INSERT ON stock_on_hand "
            "FOR EACH ROW EXECUTE FUNCTION guard()"
        )
        await conn.commit()
    with pytest.raises(RebuildError, match="'stock_on_hand' of 'guarded' has triggers"):
        await rebuild_blue_green(database_url, Guarded())


def test_progress_bar_shows_rate_and_time_left() -> None:
    lines: list[str] = []
    now = [0.0]
    bar = ProgressBar("inventory", lines.append, clock=lambda: now[0], every=0)
    bar(0, 1000)
    now[0] = 2.0
    bar(400, 1000)
    assert "40%" in lines[-1] and "200 events/s" in lines[-1] and "3s left" in lines[-1]
    bar(1000, 1000)
    assert lines[-1] == "\n" and "100%" in lines[-2]


async def test_several_projections_are_rebuilt_in_one_pass_equal_to_in_place(
    database_url: str,
) -> None:
    running = bootstrap(
        database_url=database_url, nats_url=None, run_processes=False, projections=[]
    )
    await running.start()
    try:
        await _load(running, rounds=3)
    finally:
        await running.stop()
    projections = [StockOnHandProjection(), InventoryProjection()]
    assert await uncopyable(database_url, projections) == {}
    done = await rebuild_many(database_url, projections, batch=40)
    assert {name: version for name, (version, _) in done.items()} == {
        NAME: 2,
        "inventory": 2,
    }
    blue_green = {t: await _table(database_url, t) for t in (NAME, "inventory")}
    for projection in projections:
        await rebuild(database_url, projection)
    in_place = {t: await _table(database_url, t) for t in (NAME, "inventory")}
    assert blue_green == in_place
    assert len(in_place["inventory"]) == SKUS


async def _table(database_url: str, table: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(f"SELECT * FROM {table} ORDER BY 1")
        return list(await cur.fetchall())


async def test_rebuild_all_switches_every_copyable_projection_equal_to_live_ones(
    database_url: str,
) -> None:
    # The live runners fold the log a few events at a time as it grows; the
    # rebuild folds it in pages of 40: the tables must come out the same.
    running = bootstrap(database_url=database_url, nats_url=None)
    await running.start()
    try:
        await _load(running, rounds=2)
        for n in range(30):
            await running.execute(
                "order.place",
                order.PlaceOrder(
                    platform="wechat_shop",
                    platform_order_id=f"O{n}",
                    shop_id="shop-1",
                    lines=(
                        order.OrderLine(
                            platform_sku_id=f"p-S{n % 7}",
                            hub_sku=f"S{n % 7}",
                            quantity=1 + n % 3,
                            unit_price_fen=990,
                        ),
                    ),
                ),
            )
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            head = await log_head(conn)
        for name in ("orders", "inventory", NAME):
            await running.projection(name).wait_for(head)
    finally:
        await running.stop()
    tables = ("orders", "inventory", NAME)
    live = {t: await _table(database_url, t) for t in tables}
    assert len(live["orders"]) == 30

    child = _rebuild_cli(database_url, "--batch", "40", name="all")
    out, err = await asyncio.to_thread(child.communicate, timeout=120)
    assert child.returncode == 0, err
    rebuilt = {t: await _table(database_url, t) for t in tables}
    assert rebuilt == live
    for name in ("orders", "inventory", NAME, "customer_profiles"):
        assert f"projection {name} version 2 serving from log position {head}" in out
    assert "projection ledger not rebuilt" in out, "its tables cannot be copied"


class _FailingStockOnHand(StockOnHandProjection):
    """Fails on its third page."""

    def __init__(self) -> None:
        self.pages = 0

    async def apply_latest(self, cur: Any, latest: Any) -> None:
        self.pages += 1
        if self.pages == 3:
            raise RuntimeError("page 3 refused")
        await super().apply_latest(cur, latest)


async def test_a_version_that_fails_stops_the_pass_and_nothing_is_switched(
    hub: Hub,
) -> None:
    head = await _load(hub, rounds=10)
    await hub.projection(NAME).wait_for(head)
    failing = _FailingStockOnHand()
    async with asyncio.timeout(60):  # the pass ends; it does not wait forever
        with pytest.raises(RuntimeError, match="page 3 refused"):
            await rebuild_many(
                hub.database_url, [InventoryProjection(), failing], batch=20
            )
    versions = await list_versions(
        hub.database_url, [InventoryProjection(), StockOnHandProjection()]
    )
    assert [(v.version, v.building) for v in versions] == [(1, 2), (1, 2)]
    # Run again, it resumes both and switches them.
    done = await rebuild_many(
        hub.database_url, [InventoryProjection(), StockOnHandProjection()], batch=20
    )
    assert {name: version for name, (version, _) in done.items()} == {
        "inventory": 2,
        NAME: 2,
    }
    assert len(await _rows(hub.database_url)) == SKUS


async def test_a_rebuild_cancelled_while_it_reads_stops_and_resumes_equal(
    hub: Hub,
) -> None:
    # The pass fetches the next page in a thread while it decodes this one:
    # cancelled then, it waits for that fetch, lets go of the connection and
    # stops; the version stays being built and a second run finishes it.
    head = await _load(hub, rounds=10)
    await hub.projection(NAME).wait_for(head)
    served = await _rows(hub.database_url)
    paged = asyncio.Event()

    def progress(position: int, target: int) -> None:
        if position < target:
            paged.set()

    task = asyncio.create_task(
        rebuild_many(
            hub.database_url, [StockOnHandProjection()], batch=20, progress=progress
        )
    )
    async with asyncio.timeout(60):
        await paged.wait()
    task.cancel()
    async with asyncio.timeout(60):  # it stops; it does not wait forever
        with pytest.raises(asyncio.CancelledError):
            await task
    (info,) = await list_versions(hub.database_url, [StockOnHandProjection()])
    assert (info.version, info.building) == (1, 2)
    done = await rebuild_many(hub.database_url, [StockOnHandProjection()], batch=20)
    assert done[NAME] == (2, head)
    assert await _rows(hub.database_url) == served


def test_a_version_the_previous_release_left_keeps_its_position(
    database_url: str,
) -> None:
    """Migration 0026 moves a version's position from the version's own
    ``projection_tracking`` table (how the previous release kept it) into its
    row of ``projection_versions``: a resumed rebuild goes on from there, not
    from zero (which would apply the events before it twice)."""
    before = [m for m in bundled_migrations() if m.name < "0026"]
    migrate(database_url, before)
    with psycopg.connect(database_url) as conn:
        conn.execute("CREATE SCHEMA proj_inventory_v2")
        conn.execute(
            "CREATE TABLE proj_inventory_v2.projection_tracking "
            "(LIKE public.projection_tracking INCLUDING ALL)"
        )
        conn.execute(
            "INSERT INTO proj_inventory_v2.projection_tracking (name, position) "
            "VALUES ('inventory', 4321)"
        )
        conn.execute(
            "INSERT INTO projection_versions (name, version, schema_name, status) "
            "VALUES ('inventory', 2, 'proj_inventory_v2', 'building'), "
            "('orders', 2, 'proj_orders_v2', 'building')"
        )
    assert "0026_version_positions.sql" in migrate(database_url)
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT name, position FROM projection_versions ORDER BY name"
        ).fetchall()
    # A version without the table (none was made, or it was lost) starts at 0.
    assert rows == [("inventory", 4321), ("orders", 0)]
