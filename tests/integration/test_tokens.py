"""The platforms' tokens survive a restart (``hub.infra.tokens.PostgresTokenStore``)."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import psycopg
import pytest

from connectors.common import TokenState
from connectors.sandbox import SandboxControl, SandboxServer
from hub.infra.migrate import migrate
from hub.infra.shops import (
    Connectors,
    ConnectorsConfig,
    Listing,
    ShopConfig,
    load_connectors_config,
)
from hub.infra.tokens import PostgresTokenStore, TokenStoreError, token_key
from hub.service.policies import load_policy_book, sync_policies

POLICIES = sync_policies(load_policy_book())

STATE = TokenState(
    access_token="at-secret-1",
    access_expires_at=datetime(2030, 1, 1, tzinfo=UTC),
    refresh_token="rt-secret-1",
    refresh_expires_at=datetime(2030, 2, 1, tzinfo=UTC),
)


@pytest.fixture
def db(database_url: str) -> str:
    migrate(database_url)
    return database_url


def _key() -> bytes:
    return os.urandom(32)


def _rows(db: str) -> list[tuple[bool, bytes]]:
    with psycopg.connect(db) as conn:
        rows = conn.execute("SELECT sealed, state FROM connector_tokens").fetchall()
    return [(bool(s), bytes(b)) for s, b in rows]


def test_a_token_put_before_a_restart_is_there_after_it(db: str) -> None:
    store = PostgresTokenStore(db)
    store.put("youzan", "42001", STATE)
    store.close()

    again = PostgresTokenStore(db)
    assert again.get("youzan", "42001") == STATE
    assert again.get("youzan", "other") is None
    again.close()


def test_sealed_tokens_open_only_with_their_key(db: str) -> None:
    key = _key()
    store = PostgresTokenStore(db, key=key)
    store.put("kuaishou_shop", "900001", STATE)
    store.close()
    ((sealed, blob),) = _rows(db)
    assert sealed and b"at-secret-1" not in blob and b"rt-secret-1" not in blob

    with PostgresTokenStore(db, key=key) as reopened:
        assert reopened.get("kuaishou_shop", "900001") == STATE
    with pytest.raises(TokenStoreError, match="HUB_MASTER_KEY") as unkeyed:
        PostgresTokenStore(db)
    assert "kuaishou_shop/900001" in str(unkeyed.value)
    with pytest.raises(TokenStoreError, match="another key"):
        PostgresTokenStore(db, key=_key())


def test_only_the_configured_shops_rows_are_opened(db: str) -> None:
    with PostgresTokenStore(db, key=_key()) as store:
        store.put("kuaishou_shop", "gone", STATE)
    with PostgresTokenStore(db, shops={("youzan", "42001")}) as store:
        assert store.get("kuaishou_shop", "gone") is None
    with pytest.raises(TokenStoreError, match="kuaishou_shop/gone"):
        PostgresTokenStore(db, shops={("kuaishou_shop", "gone")})


def test_a_sealed_row_moved_to_another_shop_does_not_open(db: str) -> None:
    key = _key()
    store = PostgresTokenStore(db, key=key)
    store.put("youzan", "a", STATE)
    store.close()
    with psycopg.connect(db) as conn:
        conn.execute("UPDATE connector_tokens SET shop_id = 'b'")
    with pytest.raises(TokenStoreError, match="youzan/b"):
        PostgresTokenStore(db, key=key)


@pytest.mark.parametrize("raw", ["not base64!", base64.b64encode(b"short").decode()])
def test_a_bad_key_setting_is_refused_by_name(raw: str) -> None:
    with pytest.raises(TokenStoreError, match="HUB_TOKEN_KEY: must be 32 bytes"):
        token_key({"HUB_TOKEN_KEY": raw})
    assert token_key({}) is None


async def test_an_oauth_shop_needs_no_new_consent_after_a_restart(
    db: str, sandbox: SandboxServer, sandbox_control: SandboxControl
) -> None:
    creds = await sandbox_control.create_shop("youzan", "42001")
    await sandbox_control.set_sku(
        "youzan", "42001", "456", product_id="123", stock=7, price_fen=990
    )
    shop = ShopConfig(
        platform="youzan",
        shop_id="42001",
        channel_account="acct-1",
        credentials=creds,
        listings=(Listing(hub_sku="A", platform_sku_id="456", product_id="123"),),
    )
    config = ConnectorsConfig(base_urls={"youzan": sandbox.url}, shops=(shop,))
    key = _key()
    first = PostgresTokenStore(db, key=key)
    connectors = Connectors(config, policies=POLICIES, token_store=first)
    code = await sandbox_control.authorization_code("youzan", "42001")
    granted = await connectors.exchange_code(shop, code, "http://127.0.0.1:9/cb")
    await connectors.aclose()
    first.close()

    # A new process: the token comes from the database, not from the merchant.
    second = PostgresTokenStore(db, key=key)
    assert second.get("youzan", "42001") == granted
    restarted = Connectors(config, policies=POLICIES, token_store=second)
    client = await restarted.ready_client(shop)
    assert await client.fetch_stock("42001", "456", product_id="123") == 7
    # A refresh (its old refresh token now spent) is stored before it is used.
    await sandbox_control.expire_tokens("youzan", "42001")
    assert await client.fetch_stock("42001", "456", product_id="123") == 7
    await restarted.aclose()
    renewed = second.get("youzan", "42001")
    assert renewed is not None and renewed != granted
    second.close()
    with PostgresTokenStore(db, key=key) as third:
        assert third.get("youzan", "42001") == renewed
    assert granted.access_expires_at > datetime.now(UTC) - timedelta(days=1)


def test_a_files_token_only_seeds_a_shop_the_store_does_not_hold(
    db: str, tmp_path: Path
) -> None:
    newer = TokenState(
        access_token="at-2", access_expires_at=datetime(2031, 1, 1, tzinfo=UTC)
    )
    shops = [
        {
            "platform": "youzan",
            "shop_id": shop_id,
            "channel_account": "acct-1",
            "credentials": {"client_id": "c", "client_secret": "s"},
            "token": msgspec.to_builtins(STATE),
            "listings": [],
        }
        for shop_id in ("held", "new")
    ]
    path = tmp_path / "connectors.json"
    path.write_bytes(msgspec.json.encode({"shops": shops}))
    config = load_connectors_config(path)  # as `hub serve` reads it
    with PostgresTokenStore(db) as store:
        store.put("youzan", "held", newer)
        Connectors(config, policies=POLICIES, token_store=store)
        assert store.get("youzan", "held") == newer
        assert store.get("youzan", "new") == STATE
