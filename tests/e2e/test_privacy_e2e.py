"""Buyers' personal data end to end: never plain at rest, profiles per mode, erasure.

A sale with a buyer on every sandbox platform goes through the hub's real
path (push or poll → order commands → log → projections). Then no table holds
a buyer's name, phone or address in plain text, each platform's profile mode
shows, no log line carries a secret, a token or a personal value, and an
erased subject reads "erased" everywhere while the log stays as it was.
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from connectors.sandbox import SandboxControl, SandboxServer
from domain import order as order_domain
from domain.personal import (
    DE_IDENTIFIED_MERGE,
    ENCRYPTED_TRANSFER_TO_CRM,
    ERASED,
    STORED_SEPARATELY,
)
from hub.entry.profiles_cli import profile_text
from hub.infra.subjects import SubjectKeys
from hub.service.commands import ORDER_RULES
from hub.service.crm import CrmOutbox
from hub.service.personal import PersonalData, profile_policies
from projections.base import rebuild
from projections.profiles import CustomerProfilesProjection, ProfilesView
from tests.binding_payloads import book_with_douyin_orders
from tests.e2e.test_connectors_e2e import (
    LISTED,
    PLATFORMS,
    SHOPS,
    Rig,
    _rig,
)
from tests.hub_steps import settle

pytestmark = pytest.mark.e2e

#: platform → the buyers of its orders (two on Douyin: the same person in the
#: same shop twice, one profile).
BUYERS = {
    "wechat_shop": [
        {
            "name": "张三丰",
            "phone": "13912345678",
            "province": "广东省",
            "city": "广州市",
            "district": "海珠区",
            "detail": "新港中路 397 号",
        }
    ],
    "douyin_shop": [
        {
            "name": "李四光",
            "phone": "13722223333",
            "province": "北京市",
            "city": "北京市",
            "district": "朝阳区",
            "detail": "望京西路 48 号",
        }
    ]
    * 2,
    "kuaishou_shop": [
        {
            "name": "王五岳",
            "phone": "13644445555",
            "province": "浙江省",
            "city": "杭州市",
            "district": "西湖区",
            "detail": "文三路 90 号",
        }
    ],
    "youzan": [
        {
            "name": "赵六合",
            "phone": "13566667777",
            "province": "上海市",
            "city": "上海市",
            "district": "浦东新区",
            "detail": "世纪大道 100 号",
        }
    ],
}


@dataclass
class Sale:
    rig: Rig
    personal: PersonalData
    master_key: bytes
    orders: dict[str, list[str]]
    crm: CrmOutbox
    sandbox: SandboxServer


@pytest.fixture
async def sale(
    database_url: str,
    nats_url: str,
    sandbox: SandboxServer,
    sandbox_control: SandboxControl,
    caplog: pytest.LogCaptureFixture,
) -> AsyncIterator[Sale]:
    """Every platform sold once (Douyin twice) to buyers with full addresses."""
    caplog.set_level(logging.DEBUG)
    book = book_with_douyin_orders()
    async for rig in _rig(database_url, nats_url, sandbox, sandbox_control, book):
        master = os.urandom(32)
        personal = PersonalData(SubjectKeys(database_url, master), master)
        crm_key = base64.b64decode((await _crm(sandbox))["key"])
        crm = CrmOutbox(
            database_url,
            personal.keys,
            url=f"{sandbox.url}/crm",
            key=crm_key,
            background=False,
        )
        rig.platforms.intake.personal = personal
        rig.platforms.intake.profiles = profile_policies(book)
        rig.platforms.intake.crm = crm
        orders: dict[str, list[str]] = {}
        for platform in PLATFORMS:
            _, sku_id = LISTED["SKU-A"][platform]
            for buyer in BUYERS[platform]:
                placed = await rig.control.create_order(
                    platform,
                    SHOPS[platform],
                    [{"sku_id": sku_id, "quantity": 1}],
                    buyer=buyer,
                    at=int(datetime.now(UTC).timestamp()) - 3600,
                )
                orders.setdefault(platform, []).append(str(placed["order_id"]))
        await rig.control.flush_pushes()
        for platform in PLATFORMS:
            report = await rig.platforms.scheduler.sync_orders(
                rig.shop(platform),
                since=datetime.now(UTC) - timedelta(hours=3),
                until=datetime.now(UTC),
            )
            assert report.ok, (platform, report.errors, report.refused)
        for platform, ids in orders.items():
            for order_id in ids:
                state = await rig.hub.committer.load(
                    ORDER_RULES, order_domain.order_id(platform, order_id)
                )
                assert state is not None, (platform, order_id)
        await settle(rig.hub)
        yield Sale(rig, personal, master, orders, crm, sandbox)


async def _crm(sandbox: SandboxServer) -> dict[str, Any]:
    """What the sandbox's CRM holds (its key, the profiles it received)."""
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{sandbox.url}/_sandbox/crm")
        result: dict[str, Any] = answer.json()
        return result


async def _deliveries(database_url: str) -> list[tuple[str, str, int, bool]]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT crm_ref, status, attempts, payload IS NOT NULL "
            "FROM crm_deliveries ORDER BY crm_ref"
        )
        return [
            (str(r), str(s), int(a), bool(p)) for r, s, a, p in await cur.fetchall()
        ]


def _plain_values() -> dict[str, str]:
    values = {}
    for platform, buyers in BUYERS.items():
        for buyer in buyers:
            for field in ("name", "phone", "detail"):
                values[f"{platform} {field}"] = buyer[field]
    return values


async def _every_table_as_text(database_url: str) -> dict[str, str]:
    """Each table of the database, every row as text (bytea as hex)."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' "
            "AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        )
        tables = [(str(s), str(t)) for s, t in await cur.fetchall()]
        dumped = {}
        for schema, table in tables:
            rows = await conn.execute(
                psycopg.sql.SQL("SELECT t::text FROM {}.{} t").format(
                    psycopg.sql.Identifier(schema), psycopg.sql.Identifier(table)
                )
            )
            dumped[f"{schema}.{table}"] = "\n".join(
                str(r[0]) for r in await rows.fetchall()
            )
    return dumped


def _found(text: str, value: str) -> bool:
    """``value`` in ``text`` as text, as UTF-8 hex (bytea) or JSON-escaped."""
    escaped = value.encode("unicode_escape").decode().replace("\\u", "\\\\u")
    return (
        value in text
        or value.encode().hex() in text
        or value.encode("unicode_escape").decode() in text
        or escaped in text
    )


async def test_no_table_holds_a_buyers_phone_name_or_address_in_plain_text(
    sale: Sale,
) -> None:
    tables = await _every_table_as_text(sale.rig.hub.database_url)
    assert "public.customer_profiles" in tables
    assert "public.hub_events" in tables or any("hub_events" in t for t in tables)
    leaks = [
        (what, table)
        for what, value in _plain_values().items()
        for table, text in tables.items()
        if _found(text, value)
    ]
    assert leaks == []


async def test_no_log_line_carries_a_secret_a_token_or_a_personal_value(
    sale: Sale, caplog: pytest.LogCaptureFixture
) -> None:
    secrets = dict(_plain_values())
    for shop in sale.rig.config.shops:
        for name, value in shop.credentials.items():
            if name != "app_key" and any(w in name for w in ("secret", "token", "key")):
                secrets[f"{shop.key} {name}"] = value
        token = sale.rig.platforms.connectors.tokens.get(shop.platform, shop.shop_id)
        if token is not None:
            secrets[f"{shop.key} access token"] = token.access_token
            if token.refresh_token:
                secrets[f"{shop.key} refresh token"] = token.refresh_token
    records = caplog.get_records("setup") + caplog.get_records("call")
    assert len(records) > 100
    lines = "\n".join(
        f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in records
    )
    assert [what for what, value in secrets.items() if value in lines] == []


async def _subject_of(sale: Sale, platform: str, index: int = 0) -> str:
    state = await sale.rig.hub.committer.load(
        ORDER_RULES, order_domain.order_id(platform, sale.orders[platform][index])
    )
    event_buyer = await _placed_buyer(sale, platform, index)
    assert state is not None
    return event_buyer


async def _placed_buyer(sale: Sale, platform: str, index: int) -> str:
    """The subject id the order's OrderPlaced event carries."""
    app = sale.rig.hub.app
    oid = order_domain.order_id(platform, sale.orders[platform][index])
    (placed, *_) = app.repository.event_store.get(oid)
    assert isinstance(placed, order_domain.OrderPlaced)
    assert placed.buyer is not None
    return placed.buyer.subject_id


async def test_each_platform_keeps_its_buyers_as_its_profile_mode_says(
    sale: Sale,
) -> None:
    db = sale.rig.hub.database_url
    view = ProfilesView(db)

    wechat = await view.profile(await _subject_of(sale, "wechat_shop"))
    assert wechat is not None and wechat.mode == DE_IDENTIFIED_MERGE
    shown = await sale.personal.show(
        wechat.subject_id, wechat.key_version, wechat.sealed
    )
    assert shown["phone"] == "139****5678"
    assert shown["name"] == "张**"
    text = await profile_text(db, sale.master_key, wechat.subject_id)
    assert text is not None and "139****5678" in text and "13912345678" not in text
    revealed = await profile_text(db, sale.master_key, wechat.subject_id, reveal=True)
    assert revealed is not None and "13912345678" in revealed

    # Douyin: the same buyer twice in one shop is one profile of that account.
    first = await _subject_of(sale, "douyin_shop", 0)
    assert await _subject_of(sale, "douyin_shop", 1) == first
    douyin = await view.profile(first)
    assert douyin is not None and douyin.mode == STORED_SEPARATELY
    assert (douyin.orders, douyin.accounts) == (2, ["douyin_shop/77001"])
    assert douyin.subject_id != wechat.subject_id

    # Youzan's binding maps orders and stock, not users: nothing of its
    # buyers is kept.
    app = sale.rig.hub.app
    oid = order_domain.order_id("youzan", sale.orders["youzan"][0])
    (placed, *_) = app.repository.event_store.get(oid)
    assert isinstance(placed, order_domain.OrderPlaced) and placed.buyer is None


async def test_an_erased_subject_reads_erased_and_the_log_is_unchanged(
    sale: Sale,
) -> None:
    db = sale.rig.hub.database_url
    subject = await _subject_of(sale, "wechat_shop")

    async def events() -> list[str]:
        async with await psycopg.AsyncConnection.connect(db) as conn:
            cur = await conn.execute(
                "SELECT t::text FROM hub_events t ORDER BY notification_id"
            )
            return [str(r[0]) for r in await cur.fetchall()]

    before = await events()
    assert await sale.personal.keys.erase(subject) == 1

    assert await events() == before
    async with await psycopg.AsyncConnection.connect(db) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM subject_keys WHERE subject_id = %s AND sealed <> ''",
            (subject,),
        )
        assert (await cur.fetchone()) == (0,)
    text = await profile_text(db, sale.master_key, subject, reveal=True)
    assert text is not None
    assert f"phone: {ERASED}" in text and f"name: {ERASED}" in text

    # A new key for the same subject never reuses the erased version.
    version, _ = await sale.personal.keys.current(subject)
    assert version > 1
    await rebuild(db, CustomerProfilesProjection())
    row = await ProfilesView(db).profile(subject)
    assert row is not None and row.orders == 1
    shown = await sale.personal.show(row.subject_id, row.key_version, row.sealed)
    assert set(shown.values()) == {ERASED}
    # The other subjects are untouched.
    douyin = await ProfilesView(db).profile(await _subject_of(sale, "douyin_shop"))
    assert douyin is not None
    assert (await sale.personal.show(douyin.subject_id, 1, douyin.sealed))[
        "phone"
    ] == "137****3333"


async def test_kuaishou_profiles_go_to_the_crm_and_the_hub_keeps_the_reference(
    sale: Sale,
) -> None:
    db = sale.rig.hub.database_url
    subject = await _subject_of(sale, "kuaishou_shop")
    profile = await ProfilesView(db).profile(subject)
    assert profile is not None and profile.mode == ENCRYPTED_TRANSFER_TO_CRM
    assert profile.sealed == {} and profile.crm_ref.startswith("crm_")
    ((ref, status, attempts, waiting),) = await _deliveries(db)
    assert (ref, status, attempts, waiting) == (profile.crm_ref, "pending", 0, True)

    # The CRM is down twice, then takes it; the hub keeps only the record.
    async with httpx.AsyncClient() as http:
        await http.post(
            f"{sale.sandbox.url}/_sandbox/crm/faults", json={"fail_next": 2}
        )
    assert (await sale.crm.deliver_pending()).failed == 1
    assert (await sale.crm.deliver_pending()).failed == 1
    assert (await sale.crm.deliver_pending()).delivered == 1
    assert await _deliveries(db) == [(ref, "delivered", 3, False)]
    received = (await _crm(sale.sandbox))["profiles"][ref]
    buyer = BUYERS["kuaishou_shop"][0]
    assert (received["name"], received["phone"]) == (buyer["name"], buyer["phone"])
    assert received["subject_id"] == subject


async def test_a_crm_delivery_that_keeps_failing_is_dead_lettered(
    sale: Sale,
) -> None:
    async with httpx.AsyncClient() as http:
        await http.post(
            f"{sale.sandbox.url}/_sandbox/crm/faults", json={"fail_next": 100}
        )
    for _ in range(sale.crm.max_attempts - 1):
        assert (await sale.crm.deliver_pending()).failed == 1
    assert (await sale.crm.deliver_pending()).dead == 1
    ((_, status, attempts, waiting),) = await _deliveries(sale.rig.hub.database_url)
    assert (status, attempts, waiting) == ("dead", sale.crm.max_attempts, True)
    assert (await sale.crm.deliver_pending()).dead == 0  # no longer tried
