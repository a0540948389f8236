"""Money end to end: a live session's orders through the sandbox platforms
become payouts that settle on their channel's date, the platforms' statements
are reconciled with the ledger, and finance reads it over HTTP behind JWT."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import msgspec
import nats
import psycopg
import pytest

from domain.calendar import CHINA_TIME
from domain.settlement import settlement_date, start_of_day
from eventlog.log import log_head
from hub.infra.access_tokens import AUDIENCE, ISSUER, LEDGER_READ, issue
from hub.messages import EventMessage
from hub.service.payouts import settle_due
from hub.service.reconciliation import reconcile_day
from projections import ledger as views
from tests.binding_payloads import ACCOUNT
from tests.conftest import wait_until
from tests.e2e.test_connectors_e2e import LISTED, SHOPS, Rig, rig  # noqa: F401
from tests.payout_steps import agree_terms

pytestmark = pytest.mark.e2e

KEY = b"finance-e2e-key-0123456789abcdef"
PRICE = 990


async def _sale(running: Rig, platform: str, commission_bp: int = 0) -> str:
    product_id, sku_id = LISTED["SKU-A"][platform]
    await running.control.set_sku(
        platform,
        SHOPS[platform],
        sku_id,
        product_id=product_id,
        stock=50,
        price_fen=PRICE,
    )
    placed = await running.control.create_order(
        platform,
        SHOPS[platform],
        [{"sku_id": sku_id, "quantity": 1}],
        commission_bp=commission_bp,
    )
    order_id = str(placed["order_id"])
    await running.control.order_action(platform, SHOPS[platform], order_id, "pay")
    return order_id


async def _payouts(database_url: str) -> dict[str, dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT platform_order_id, streamer, streamer_fen, platform_fen, "
            "payment_fen, status, settles_on, effective_at FROM ledger_payouts "
            "WHERE payout = 'sale'"
        )
        names = [c.name for c in cur.description or []]
        return {
            str(r[0]): dict(zip(names, r, strict=True)) for r in await cur.fetchall()
        }


async def _caught_up(running: Rig) -> None:
    async with await psycopg.AsyncConnection.connect(running.hub.database_url) as c:
        head = await log_head(c)
    await running.hub.projection("ledger").wait_for(head)


async def test_a_live_sessions_orders_settle_reconcile_and_reach_finance(
    rig: Rig,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub = rig.hub
    now = datetime.now(UTC)
    assert hub.nats_url is not None
    nc = await nats.connect(hub.nats_url)
    published = await nc.subscribe("hub.events.*.*.*")
    for platform in ("wechat_shop", "douyin_shop"):
        binding = {
            "channel_account": ACCOUNT,
            "platform": platform,
            "shop_id": SHOPS[platform],
        }
        await agree_terms(
            hub, binding, now - timedelta(hours=1), now + timedelta(hours=1)
        )
    # Two WeChat orders pushed to the hub; a Douyin one, with the streamer's
    # commission on its statement, pulled (Douyin orders are polled).
    wechat = [await _sale(rig, "wechat_shop") for _ in range(2)]
    douyin = await _sale(rig, "douyin_shop", commission_bp=2500)
    await rig.control.flush_pushes()
    report = await rig.platforms.scheduler.sync_orders(
        rig.shop("douyin_shop"),
        since=now - timedelta(hours=1),
        until=datetime.now(UTC) + timedelta(minutes=1),
    )
    assert report.ok

    async def scheduled() -> bool:
        return len(await _payouts(hub.database_url)) == 3

    await wait_until(scheduled)
    payouts = await _payouts(hub.database_url)
    assert set(payouts) == {*wechat, douyin}
    for row in payouts.values():
        # In the session: its streamer's 25 %; the platform's 5 %; WeChat Pay's
        # 0.6 %, settling the next China day (T+1).
        assert (row["streamer"], row["streamer_fen"]) == ("bo", 248)
        assert (row["platform_fen"], row["payment_fen"]) == (50, 6)
        assert row["settles_on"] == settlement_date(row["effective_at"], 1)
        assert row["status"] == "pending"

    first = min(row["settles_on"] for row in payouts.values())
    settles_on = max(row["settles_on"] for row in payouts.values())
    day_before = start_of_day(first) - timedelta(seconds=1)
    settle = hub.rules["payout.settle"]
    early = await settle_due(hub.committer, settle, hub.database_url, day_before)
    assert early == []  # nothing settles before its date
    await settle_due(hub.committer, settle, hub.database_url, start_of_day(settles_on))
    await _caught_up(rig)
    assert {r["status"] for r in (await _payouts(hub.database_url)).values()} == {
        "settled"
    }
    async with await psycopg.AsyncConnection.connect(hub.database_url) as conn:
        balances = {
            b.account: b.balance_fen
            for b in await views.balances(conn, start_of_day(settles_on))
        }
    assert balances["streamer:bo"] == -3 * 248
    assert balances["clearing"] == 3 * (PRICE - 6)

    # The platforms settle; one statement line is made wrong.
    for platform, order_id in [("wechat_shop", o) for o in wechat] + [
        ("douyin_shop", douyin)
    ]:
        await rig.control.order_action(
            platform,
            SHOPS[platform],
            order_id,
            "ship",
            carrier_code="SF",
            tracking_no="SF1",
        )
        await rig.control.order_action(platform, SHOPS[platform], order_id, "settle")
    wrong = await rig.control.amend_settlement(
        "wechat_shop", SHOPS["wechat_shop"], wechat[0], fee_fen=7
    )
    assert wrong["fee_fen"] == 7
    today = datetime.fromtimestamp(time.time(), CHINA_TIME).date()
    book = hub.policy_book
    assert book is not None
    reports = await reconcile_day(
        hub.committer, hub.database_url, book, rig.platforms.connectors, today
    )
    by_shop = {r.platform: r for r in reports}
    assert (by_shop["wechat_shop"].lines, by_shop["douyin_shop"].lines) == (2, 1)
    assert [r.error for r in reports] == [""] * len(reports)
    found = [d for r in reports for d in r.differences]
    assert [(d.order_id, d.field, d.statement_fen, d.ledger_fen) for d in found] == [
        (wechat[0], "fee_fen", 7, 6)
    ]
    again = await reconcile_day(
        hub.committer, hub.database_url, book, rig.platforms.connectors, today
    )
    assert [d for r in again for d in r.differences] == found
    async with await psycopg.AsyncConnection.connect(hub.database_url) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM hub_events WHERE topic LIKE "
            "'ledger.SettlementDifferenceFound%'"
        )
        assert await cur.fetchone() == (1,)  # recorded once

    # Downstream: payout and ledger events reach HUB_EVENTS through the relay.
    subjects: dict[str, int] = {}

    async def relayed() -> bool:
        while published.pending_msgs:
            msg = await published.next_msg(timeout=1)
            message = msgspec.json.decode(msg.data, type=EventMessage)
            if message.aggregate_type in ("payout", "ledger"):
                subjects[msg.subject] = subjects.get(msg.subject, 0) + 1
        return (
            subjects.get("hub.events.payout.PayoutSettled.wechat_shop") == 2
            and subjects.get("hub.events.ledger.SettlementDifferenceFound.wechat_shop")
            == 1
        )

    await wait_until(relayed)
    assert subjects["hub.events.payout.PayoutScheduled.douyin_shop"] == 1
    assert subjects["hub.events.payout.LiveSessionScheduled.wechat_shop"] == 1
    await nc.close()

    # Finance reads the ledger over HTTP, only with a good token.
    monkeypatch.setenv("HUB_JWT_KEY", KEY.decode())
    http = rig.platforms.http
    assert http is not None
    url = f"{http.url}/finance/balances"
    at = {"at": start_of_day(settles_on).isoformat()}
    claims = {"iss": ISSUER, "aud": AUDIENCE, "scope": LEDGER_READ}
    later = int(time.time()) + 600
    bad = {
        "none": None,
        "alg none": jwt.encode({**claims, "exp": later}, None, algorithm="none"),
        "expired": jwt.encode({**claims, "exp": int(time.time()) - 1}, KEY),
        "wrong audience": jwt.encode({**claims, "aud": "x", "exp": later}, KEY),
        "missing scope": jwt.encode(
            {**claims, "scope": "stock:read", "exp": later}, KEY
        ),
    }
    async with httpx.AsyncClient() as client:
        for name, token in bad.items():
            headers = {} if token is None else {"Authorization": f"Bearer {token}"}
            response = await client.get(url, params=at, headers=headers)
            assert response.status_code == (403 if name == "missing scope" else 401)
            assert response.json()["error"]["reason"], name
        token = issue(
            KEY, scopes=[LEDGER_READ], ttl=timedelta(minutes=5), now=datetime.now(UTC)
        )
        good = {"Authorization": f"Bearer {token}"}
        response = await client.get(url, params=at, headers=good)
        assert response.status_code == 200
        served = {b["account"]: b["balance_fen"] for b in response.json()["balances"]}
        assert served == balances
        csv = await client.get(
            f"{http.url}/finance/export.csv?from={today - timedelta(days=2)}"
            f"&to={today + timedelta(days=2)}",
            headers=good,
        )
        assert csv.status_code == 200
        assert csv.text.splitlines()[0].startswith("effective_at,recorded_at,source")
        spec = await client.get(f"{http.url}/finance/openapi.json")
        assert "/balances" in spec.json()["paths"]
