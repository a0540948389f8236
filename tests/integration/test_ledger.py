"""The commission ledger in PostgreSQL: payouts from orders, postings the
database guards, balances at any time equal to the ledger rebuilt from the log."""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from domain import order
from domain.events import Event
from domain.ledger import Ledger
from eventlog.codec import decode_event
from eventlog.log import log_head, read_log, stored_topics
from hub.bootstrap import bootstrap
from hub.service.hub import Hub
from hub.service.payouts import settle_due
from projections import ledger as views
from projections.base import rebuild
from projections.ledger import PAYOUT_TOPICS, LedgerProjection
from tests.conftest import wait_until
from tests.hub_steps import started_hub
from tests.payout_steps import agree_terms

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)  # 10:00 in China
BINDING = {"channel_account": "ch-1", "platform": "wechat_shop", "shop_id": "shop-1"}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def hub(database_url: str, clock: Clock) -> AsyncIterator[Hub]:
    async with started_hub(database_url, None, clock=clock) as running:
        yield running


async def sell(
    hub: Hub, number: str, fen: int, paid_at: datetime, platform: str = "wechat_shop"
) -> None:
    keys = {"platform": platform, "platform_order_id": number}
    await hub.execute(
        "order.place",
        order.PlaceOrder(
            **keys,
            shop_id="shop-1",
            channel_account="ch-1",
            lines=(
                order.OrderLine(
                    platform_sku_id="p-1", hub_sku="A1", quantity=1, unit_price_fen=fen
                ),
            ),
        ),
    )
    await hub.execute("order.pay", order.PayOrder(**keys, paid_at=paid_at))


async def query(hub: Hub, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(hub.database_url) as conn:
        cur = await conn.execute(sql, args)  # type: ignore[arg-type]
        return [tuple(row) for row in await cur.fetchall()]


async def payout_events(database_url: str) -> list[Event]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        rows = await read_log(conn, 0, 100_000, topics=stored_topics(PAYOUT_TOPICS))
    return [decode_event(topic, state) for _, topic, state in rows]


async def caught_up(hub: Hub) -> None:
    async with await psycopg.AsyncConnection.connect(hub.database_url) as conn:
        head = await log_head(conn)
    await hub.projection("ledger").wait_for(head)


def as_dict(rows: list[views.Balance]) -> dict[str, int]:
    return {row.account: row.balance_fen for row in rows}


async def test_orders_become_payouts_that_settle_and_balance(
    hub: Hub, clock: Clock
) -> None:
    await agree_terms(hub, BINDING, T0, T0 + timedelta(hours=2))
    await sell(hub, "O-1", 10_000, T0 + timedelta(minutes=30))  # in the session
    await sell(hub, "O-2", 3_333, T0 + timedelta(hours=3))  # the binding's terms
    await sell(hub, "K-1", 5_000, T0, platform="kuaishou_shop")  # alipay, no subject
    clock.now = T0 + timedelta(hours=4)
    for refund_id, amount in (("R-1", 1_000), ("R-2", 2_333)):
        await hub.execute(
            "order.refund",
            order.RefundOrder(
                platform="wechat_shop",
                platform_order_id="O-2",
                refund_id=refund_id,
                amount_fen=amount,
            ),
        )

    async def scheduled() -> bool:
        rows = await query(
            hub,
            "SELECT count(*), count(*) FILTER (WHERE status = 'voided') "
            "FROM ledger_payouts",
        )
        refused = await query(
            hub,
            "SELECT count(*) FROM hub_events WHERE topic LIKE %s",
            "payout.PayoutRefused%",
        )
        return rows[0] == (4, 3) and refused[0][0] == 1

    await wait_until(scheduled)
    rows = await query(
        hub,
        "SELECT platform_order_id, payout, streamer, streamer_fen, settles_on "
        "FROM ledger_payouts ORDER BY 1, 2",
    )
    assert [r[:4] for r in rows] == [
        ("O-1", "sale", "bo", 2_500),
        ("O-2", "refund:R-1", "anna", -150),
        ("O-2", "refund:R-2", "anna", -350),
        ("O-2", "sale", "anna", 500),
    ]
    assert {r[4].isoformat() for r in rows} == {"2026-11-27"}  # WeChat Pay T+1
    # Refunded in full before settling: every payout of O-2 is voided.
    voided = await query(
        hub, "SELECT payout FROM ledger_payouts WHERE status = 'voided' ORDER BY 1"
    )
    assert voided == [("refund:R-1",), ("refund:R-2",), ("sale",)]

    # Nothing is due on the payment's own day; everything the next day.
    assert (
        await settle_due(
            hub.committer, hub.rules["payout.settle"], hub.database_url, T0
        )
        == []
    )
    clock.now = datetime(2026, 11, 26, 16, 0, tzinfo=UTC)  # 27 Nov 00:00 China
    # (The payout process's own timer may settle it first: either way, once.)
    await settle_due(
        hub.committer, hub.rules["payout.settle"], hub.database_url, clock.now
    )
    await caught_up(hub)
    settled = await query(
        hub, "SELECT platform_order_id FROM ledger_payouts WHERE status = 'settled'"
    )
    assert settled == [("O-1",)]

    events = await payout_events(hub.database_url)
    memory = Ledger()
    for event in events:
        memory.apply_event(event)
    later = clock.now + timedelta(days=1)
    async with await psycopg.AsyncConnection.connect(hub.database_url) as conn:
        posted = as_dict(await views.balances(conn, later))
        assert posted == memory.balances()
        assert posted == {
            "merchant": -6_940,
            "streamer:bo": -2_500,
            "platform_fee:wechat_shop": -500,
            "clearing": 10_000 - 60,  # WeChat Pay keeps its 0.6 %
        }
        # Any instant, either time basis, every status: the view equals the
        # ledger rebuilt from the events recorded up to then.
        for hours in range(0, 30, 3):
            at = T0 + timedelta(hours=hours)
            rebuilt = Ledger()
            for event in events:
                if event.occurred_at <= at:
                    rebuilt.apply_event(event)
            for status in ("posted", "pending", "voided"):
                recorded = as_dict(await views.balances(conn, at, "recorded", status))
                assert recorded == rebuilt.balances(None, "recorded", status)
                effective = as_dict(await views.balances(conn, at, "effective", status))
                assert effective == memory.balances(at, "effective", status)
        trial = await views.trial_balance(conn)
        assert trial.debits_fen == trial.credits_fen
        assert trial.unbalanced == []

    tables = LedgerProjection.tables
    live = {t: await query(hub, f"SELECT * FROM {t} ORDER BY 1, 2") for t in tables}
    await hub.projection("ledger").stop()
    await rebuild(hub.database_url, LedgerProjection())
    for table in tables:  # the same rows, ids included
        assert await query(hub, f"SELECT * FROM {table} ORDER BY 1, 2") == live[table]


async def _write_transaction(
    conn: psycopg.AsyncConnection[Any],
    *,
    ids: tuple[int, int, int],
    source: str,
    position: int,
    merchant_fen: int,
) -> None:
    """A pending transaction written by hand (``ids``: its own, then its two
    postings'): 100 fen to clearing and ``merchant_fen`` to the merchant."""
    transaction_id, clearing_id, merchant_id = ids
    cur = await conn.execute(
        "INSERT INTO ledger_transactions (id, source, kind, platform, "
        "platform_order_id, status, effective_at, recorded_at, position) VALUES "
        "(%s, %s, 'test', 'p', 'o', 'pending', now(), now(), %s) RETURNING id",
        (transaction_id, source, position),
    )
    row = await cur.fetchone()
    assert row is not None
    await conn.execute(
        "INSERT INTO ledger_postings (id, transaction_id, account, amount_fen) "
        "VALUES (%s, %s, 'clearing', 100), (%s, %s, 'merchant', %s)",
        (clearing_id, row[0], merchant_id, row[0], merchant_fen),
    )


async def test_the_database_refuses_an_unbalanced_transaction(
    database_url: str,
) -> None:
    from hub.infra.migrate import migrate

    migrate(database_url)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        with pytest.raises(psycopg.errors.CheckViolation, match="does not balance"):
            async with conn.transaction():
                await _write_transaction(
                    conn, ids=(4, 1, 2), source="test:1", position=1, merchant_fen=-99
                )
        cur = await conn.execute("SELECT count(*) FROM ledger_postings")
        assert await cur.fetchone() == (0,)


async def test_the_database_refuses_any_change_to_a_posting(
    database_url: str,
) -> None:
    from hub.infra.migrate import migrate

    migrate(database_url)
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True
    ) as conn:
        async with conn.transaction():
            await _write_transaction(
                conn, ids=(8, 3, 4), source="test:2", position=2, merchant_fen=-100
            )
        for statement in (
            "UPDATE ledger_postings SET amount_fen = 101 WHERE account = 'clearing'",
            "DELETE FROM ledger_postings WHERE account = 'merchant'",
            "DELETE FROM ledger_transactions WHERE source = 'test:2'",
            "UPDATE ledger_transactions SET platform = 'x' WHERE source = 'test:2'",
        ):
            with pytest.raises(
                psycopg.errors.IntegrityConstraintViolation, match="ledger"
            ):
                await conn.execute(statement)  # type: ignore[arg-type]
        await conn.execute(
            "UPDATE ledger_transactions SET status = 'posted', "
            "posted_effective_at = now(), posted_recorded_at = now() "
            "WHERE source = 'test:2'"
        )
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation):
            await conn.execute(
                "UPDATE ledger_transactions SET status = 'voided' "
                "WHERE source = 'test:2'"
            )
        cur = await conn.execute("SELECT sum(amount_fen) FROM ledger_postings")
        assert await cur.fetchone() == (0,)


async def _a_settled_sale(database_url: str) -> None:
    clock = Clock()
    running = bootstrap(database_url=database_url, nats_url=None, clock=clock)
    await running.start()
    try:
        await sell(running, "C-1", 10_000, T0)

        async def scheduled() -> bool:
            return bool(await query(running, "SELECT 1 FROM ledger_payouts"))

        await wait_until(scheduled)
        clock.now = T0 + timedelta(days=1)
        await settle_due(
            running.committer,
            running.rules["payout.settle"],
            database_url,
            clock.now,
        )
        await caught_up(running)
    finally:
        await running.stop()


def test_finance_verbs_read_rebuild_and_export_the_ledger(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    from hub.entry.cli import main

    asyncio.run(_a_settled_sale(database_url))
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    monkeypatch.setenv("HUB_NATS_URL", "nats://127.0.0.1:1")
    assert main(["ledger", "trial-balance", "--json"]) == 0
    trial = json.loads(capsys.readouterr().out)
    assert trial["debits_fen"] == trial["credits_fen"] == 10_000 + 9_940 + 60
    assert (trial["transactions"], trial["unbalanced"]) == (2, [])
    assert main(["ledger", "balances", "--json", "--at", "2026-11-28T00:00"]) == 0
    balances = {
        b["account"]: b["balance_fen"]
        for b in json.loads(capsys.readouterr().out)["balances"]
    }
    # No agreement on the binding: no streamer, no commission.
    assert balances == {
        "clearing": 9_940,
        "merchant": -9_440,
        "platform_fee:wechat_shop": -500,
    }
    out = tmp_path / "ledger.csv"
    assert (
        main(
            [
                "ledger",
                "export",
                "--from",
                "2026-11-26",
                "--to",
                "2026-11-27",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    with out.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:3] == ["effective_at", "recorded_at", "source"]
    assert {row[2] for row in rows[1:]} == {
        "sale:wechat_shop:C-1",
        "settle:sale:wechat_shop:C-1",
    }
    assert sum(int(r[8]) - int(r[9]) for r in rows[1:]) == 0
    assert main(["ledger", "rebuild"]) == 0
    capsys.readouterr()
    assert main(["ledger", "trial-balance", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == trial
