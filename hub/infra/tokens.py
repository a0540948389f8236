"""The platforms' tokens, kept in PostgreSQL (``connector_tokens``).

A :class:`connectors.transport.TokenStore` whose ``put`` writes through to the
database before it returns, so a token the hub obtained (an OAuth code
exchanged, a token refreshed: for Douyin and Youzan the old refresh token is
spent by then) survives a restart. ``get`` answers from memory: every token is
loaded when the store is opened, and this process's own ``put`` keeps it
current. (Two hub processes refreshing the same shop's token would each keep
their own; run one per shop.)

Given the master key (``hub.infra.keys``: ``hub serve`` always has one), each
row is sealed with AES-256-GCM (the platform and shop are the associated data,
so a row copied to another shop does not open); without one (tests) rows are
stored in the clear and a warning is logged once. A sealed row with a missing
or wrong key is refused by name.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import Any

import msgspec
import psycopg

from connectors.common import TokenState
from hub.infra.keys import (
    MASTER_KEY_SETTING,
    MasterKeyError,
    Sealer,
    SealError,
    configured_key,
)

log = logging.getLogger(__name__)

#: The setting holding the key that seals tokens at rest.
KEY_SETTING = MASTER_KEY_SETTING

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(TokenState).decode


class TokenStoreError(RuntimeError):
    """The stored tokens cannot be read; the message names the setting."""


def token_key(env: Mapping[str, str] | None = None) -> bytes | None:
    """The master key a setting gives (None when unset).

    Raises:
        TokenStoreError: it is not 32 bytes in base64.
    """
    try:
        return configured_key(env)
    except MasterKeyError as exc:
        raise TokenStoreError(str(exc)) from None


class PostgresTokenStore:
    """Tokens in ``connector_tokens``, written through, read from memory.

    Args:
        database_url: PostgreSQL holding ``connector_tokens`` (migrated).
        key: The AES-256 key sealing rows (None: stored in the clear).
        shops: The (platform, shop id) pairs to load (None: every row); rows of
            other shops are left alone, so a shop no longer configured cannot
            stop the hub from starting.
    """

    def __init__(
        self,
        database_url: str,
        *,
        key: bytes | None = None,
        shops: Collection[tuple[str, str]] | None = None,
    ) -> None:
        self._conn = psycopg.connect(database_url, autocommit=True)
        self._sealer = Sealer(key) if key is not None else None
        if key is None and (shops is None or shops):
            log.warning(
                "%s is not set: platform tokens are stored unsealed", KEY_SETTING
            )
        self._states: dict[tuple[str, str], TokenState] = {}
        try:
            rows = self._conn.execute(
                "SELECT platform, shop_id, sealed, state FROM connector_tokens"
            ).fetchall()
            for platform, shop_id, sealed, state in rows:
                if shops is not None and (platform, shop_id) not in shops:
                    continue
                self._states[(platform, shop_id)] = self._open(
                    platform, shop_id, bool(sealed), bytes(state)
                )
        except BaseException:
            self._conn.close()
            raise

    def __enter__(self) -> PostgresTokenStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the store's connection."""
        self._conn.close()

    def get(self, platform: str, shop_id: str) -> TokenState | None:
        """The token held for the shop, if any."""
        return self._states.get((platform, shop_id))

    def put(self, platform: str, shop_id: str, state: TokenState) -> None:
        """Keep a new token for the shop: stored before this returns."""
        sealed, blob = self._seal(platform, shop_id, state)
        self._conn.execute(
            "INSERT INTO connector_tokens (platform, shop_id, sealed, state) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (platform, shop_id) DO UPDATE "
            "SET sealed = EXCLUDED.sealed, state = EXCLUDED.state, "
            "updated_at = now()",
            (platform, shop_id, sealed, blob),
        )
        self._states[(platform, shop_id)] = state

    def _seal(self, platform: str, shop_id: str, state: TokenState) -> Any:
        plain = _encode(state)
        if self._sealer is None:
            return False, plain
        return True, self._sealer.seal(plain, _aad(platform, shop_id))

    def _open(
        self, platform: str, shop_id: str, sealed: bool, blob: bytes
    ) -> TokenState:
        if not sealed:
            return _decode(blob)
        if self._sealer is None:
            raise TokenStoreError(
                f"the token of {platform}/{shop_id} is sealed: set {KEY_SETTING} "
                "to the key it was sealed with"
            )
        try:
            plain = self._sealer.open(blob, _aad(platform, shop_id))
        except SealError:
            raise TokenStoreError(
                f"the token of {platform}/{shop_id} does not open with "
                f"{KEY_SETTING}: it was sealed with another key"
            ) from None
        return _decode(plain)


def _aad(platform: str, shop_id: str) -> str:
    return f"{platform}/{shop_id}"
