"""The hub heals or answers: dropped connections, a database that refuses
connections, a write whose answer was lost, retries long after the first try.

Each test names the fault it survives; all run against the session's real
PostgreSQL (and nats-server where the relay is part of it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, OperationalError

from domain.order import OrderLine, PlaceOrder
from domain.stock import ReceiveStock
from eventlog.supervision import Supervisor
from hub.bootstrap import bootstrap, connect_platforms
from hub.infra.shops import ConnectorsConfig
from hub.messages import event_type
from hub.service.commit import REQUEST_WINDOW_DAYS, StoreUnavailableError
from hub.service.hub import Hub
from tests.conftest import wait_until

pytestmark = pytest.mark.integration


def _admin_url(database_url: str) -> str:
    return urlunsplit(urlsplit(database_url)._replace(path="/postgres"))


def _database_name(database_url: str) -> str:
    return urlsplit(database_url).path.lstrip("/")


async def terminate_backends(database_url: str) -> int:
    """``pg_terminate_backend`` on every connection to the test database."""
    async with await psycopg.AsyncConnection.connect(
        _admin_url(database_url), autocommit=True
    ) as conn:
        cur = await conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (_database_name(database_url),),
        )
        row = await cur.fetchone()
        return int(row[0]) if row else 0


@contextlib.asynccontextmanager
async def database_down(database_url: str) -> AsyncIterator[None]:
    """The test database refuses every connection (and has none) meanwhile."""
    name = _database_name(database_url)
    async with await psycopg.AsyncConnection.connect(
        _admin_url(database_url), autocommit=True
    ) as conn:
        await conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await terminate_backends(database_url)
        try:
            yield
        finally:
            await conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def _small_hub(database_url: str, **kwargs: Any) -> Hub:
    return bootstrap(
        database_url=database_url,
        nats_url=None,
        run_relay=False,
        run_processes=False,
        projections=[],
        **kwargs,
    )


@contextlib.asynccontextmanager
async def running(hub: Hub) -> AsyncIterator[Hub]:
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


async def _execute_until_stored(hub: Hub, name: str, command: Any) -> Any:
    """Send a command as a client would: again while the store is unavailable."""
    outcome: Any = None

    async def attempt() -> bool:
        nonlocal outcome
        try:
            outcome = await hub.execute(name, command)
        except StoreUnavailableError:
            return False
        return True

    await wait_until(attempt, timeout=60, interval=0.05)
    return outcome


# -- finding 1: dropped connections stop no runner for good ----------------------


async def test_every_runner_resumes_after_its_connections_are_terminated(
    database_url: str, nats_url: str
) -> None:
    supervisor = Supervisor(base_delay_s=0.05, max_delay_s=0.5)
    hub = bootstrap(database_url=database_url, nats_url=nats_url, supervisor=supervisor)
    platforms = connect_platforms(hub, ConnectorsConfig())
    outbound = platforms.outbound.runner
    runners = [*hub.projections, *hub.processes, outbound]

    async def caught_up(head: int) -> None:
        assert hub.relay is not None
        await wait_until(
            lambda: (
                all(r.position >= head for r in runners)
                and hub.relay is not None
                and hub.relay.position >= head
            ),
            timeout=60,
        )

    async with running(hub):
        await platforms.outbound.start()
        try:
            first = await hub.execute(
                "stock.receive", ReceiveStock(sku="T-1", quantity=5)
            )
            await caught_up(first.positions[-1])
            assert await terminate_backends(database_url) >= len(runners)
            last = first
            for n in range(5):
                last = await _execute_until_stored(
                    hub,
                    "stock.receive",
                    ReceiveStock(sku=f"T-{n}", quantity=1, request_id=f"after-{n}"),
                )
            await caught_up(last.positions[-1])
            failed = {t.name for t in supervisor.health() if t.failures}
            # Each runner failed at least once, was retried, and runs again.
            assert {f"projection {p.projection.name}" for p in hub.projections} <= (
                failed
            )
            await wait_until(
                lambda: all(t.state == "running" for t in supervisor.health())
            )
        finally:
            await platforms.outbound.stop()


# -- finding 3: while the database is down, commands are answered ----------------


async def test_commands_are_answered_store_unavailable_while_the_database_is_down(
    database_url: str,
) -> None:
    async with running(_small_hub(database_url)) as hub:
        hub.command_deadline_s = 3.0
        before = await hub.handle("stock.receive", b'{"sku": "D-1", "quantity": 1}')
        assert before.ok
        payload = b'{"sku": "D-1", "quantity": 2, "request_id": "d-2"}'
        async with database_down(database_url), asyncio.timeout(60):
            refused = await hub.handle("stock.receive", payload)
        assert not refused.ok and refused.error is not None
        assert refused.error.code == "store_unavailable"
        # Once the database is back, the same command is stored once.
        await wait_until(lambda: _ok(hub.handle("stock.receive", payload)), 60, 0.05)
        again = await hub.handle("stock.receive", payload)
        assert again.ok and again.state is not None
        assert again.state["on_hand"] == 3


async def _ok(reply: Any) -> bool:
    return bool((await reply).ok)


# -- finding 5: a write that landed is never answered as a repeat ------------------


def _losing_the_answer(
    hub: Hub, lost: type[Exception]
) -> Callable[..., Awaitable[list[int]]]:
    """``hub.app.append_async`` that stores the first batch, then fails as if
    the connection dropped before PostgreSQL's answer came back."""
    real = hub.app.append_async
    calls = 0

    async def append(events: Any, *args: Any) -> list[int]:
        nonlocal calls
        positions = await real(events, *args)
        calls += 1
        if calls == 1:
            raise lost("server closed the connection unexpectedly")
        return positions

    return append


@pytest.mark.parametrize("lost", [IntegrityError, OperationalError])
async def test_a_batch_stored_before_its_connection_dropped_is_answered_as_stored(
    database_url: str, lost: type[Exception]
) -> None:
    hub = _small_hub(database_url)
    hub.app.append_async = _losing_the_answer(hub, lost)  # type: ignore[method-assign]
    async with running(hub):
        receipt = hub.submit(
            "stock.receive", ReceiveStock(sku="L-1", quantity=3, request_id="l-1")
        )
        order = hub.submit(
            "order.place",
            PlaceOrder(
                platform="douyin_shop",
                platform_order_id="L-order-1",
                shop_id="s1",
                lines=(
                    OrderLine(
                        platform_sku_id="p1",
                        hub_sku="L-1",
                        quantity=1,
                        unit_price_fen=100,
                    ),
                ),
            ),
        )
        stored, placed = await receipt, await order
        assert [event_type(e) for e in stored.events] == ["StockReceived"]
        assert stored.positions == (1,)
        assert [event_type(e) for e in placed.events] == ["OrderPlaced"]
        assert placed.positions == (2,)
        assert len(hub.app.load_events(stored.aggregate_id)) == 1


async def test_a_write_that_failed_is_answered_store_unavailable_and_stores_nothing(
    database_url: str,
) -> None:
    hub = _small_hub(database_url)
    real = hub.app.append_async
    calls = 0

    async def append(events: Any, *args: Any) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OperationalError("connection refused")
        return await real(events, *args)

    hub.app.append_async = append  # type: ignore[method-assign]
    command = ReceiveStock(sku="F-1", quantity=3, request_id="f-1")
    async with running(hub):
        with pytest.raises(StoreUnavailableError):
            await hub.execute("stock.receive", command)
        again = await hub.execute("stock.receive", command)
    assert again.positions == (1,) and again.state.on_hand == 3


# -- finding 6: a request id is remembered for days, not for 256 commands -------------


async def test_a_request_id_is_recognised_after_hundreds_of_later_commands(
    database_url: str,
) -> None:
    first_try = ReceiveStock(sku="W-1", quantity=10, request_id="w-0")
    async with running(_small_hub(database_url)) as hub:
        first = await hub.execute("stock.receive", first_try)
        later = [
            hub.submit(
                "stock.receive",
                ReceiveStock(sku="W-1", quantity=1, request_id=f"w-{n}"),
            )
            for n in range(1, 301)
        ]
        await _gather(later)
        # The retry arrives in a batch with new commands; it alone is a repeat.
        mixed = [
            hub.submit(
                "stock.receive", ReceiveStock(sku="W-1", quantity=1, request_id="w-301")
            ),
            hub.submit("stock.receive", first_try),
            hub.submit(
                "stock.receive", ReceiveStock(sku="W-1", quantity=1, request_id="w-302")
            ),
        ]
        new_one, again, other_new = await _gather(mixed)
    assert again.positions == first.positions
    assert [event_type(e) for e in again.events] == ["StockReceived"]
    assert new_one.positions and other_new.positions
    assert other_new.state.on_hand == 10 + 300 + 2
    # And after a restart, with nothing cached:
    async with running(_small_hub(database_url)) as fresh:
        retried = await fresh.execute("stock.receive", first_try)
    assert retried.positions == first.positions
    assert retried.state.on_hand == 312


async def _gather(futures: list[Any]) -> list[Any]:
    return [await f for f in futures]


async def test_request_ids_older_than_the_window_are_forgotten(
    database_url: str,
) -> None:
    async with running(_small_hub(database_url)) as hub:
        for n in range(3):
            await hub.execute(
                "stock.receive",
                ReceiveStock(sku="O-1", quantity=1, request_id=f"o-{n}"),
            )
        async with await psycopg.AsyncConnection.connect(
            database_url, autocommit=True
        ) as conn:
            await conn.execute(
                "UPDATE command_requests SET recorded_at = now() - "
                "make_interval(days => %s, mins => 1) WHERE request_id = 'o-0'",
                (REQUEST_WINDOW_DAYS,),
            )
            assert await hub.committer.forget_requests() == 1
            cur = await conn.execute(
                "SELECT request_id FROM command_requests ORDER BY request_id"
            )
            assert [r[0] for r in await cur.fetchall()] == ["o-1", "o-2"]


def test_the_request_id_window_is_stated_in_the_readme() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert f"{REQUEST_WINDOW_DAYS} days" in readme


async def test_a_request_id_that_names_a_push_is_not_an_idempotency_key(
    database_url: str,
) -> None:
    from domain import push
    from hub.service.outbound import STOCK_PUSH_RULES

    async with running(_small_hub(database_url)) as hub:
        requested = await hub.committer.execute(
            STOCK_PUSH_RULES,
            push.RequestStockPush(
                platform="youzan",
                shop_id="s1",
                sku="P-1",
                platform_sku_id="p1",
                quantity=3,
                target_version=1,
            ),
        )
        [event] = requested.events
        request_id = event.request_id  # type: ignore[attr-defined]
        rounds = [
            await hub.committer.execute(
                STOCK_PUSH_RULES,
                push.RecordStockPushFailed(
                    platform="youzan",
                    shop_id="s1",
                    sku="P-1",
                    request_id=request_id,
                    outcome="failed",
                    round=n,
                ),
            )
            for n in (1, 2)
        ]
    # Each round of the same push is stored: its request id names the push.
    assert [len(r.positions) for r in rounds] == [1, 1]
    assert rounds[0].positions != rounds[1].positions
