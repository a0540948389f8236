"""The state parameters of the OAuth consents the hub started (``oauth_states``).

An OAuth 2.0 code flow sends the merchant's browser to the platform with a
``state`` the callback must bring back. The hub makes it random (24 bytes),
keeps only its SHA-256 with what the consent is for (platform, shop, channel
account, callback URI, the data mapping asked for) and an expiry, and lets a
callback take it once: a forged state finds no row, a replayed one finds it
used, a late one finds it expired, and in none of these cases is the code
exchanged.

Each call opens its own connection: consents are rare and off every hot path.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from psycopg.rows import class_row

#: How long a consent may take, from the hub's redirect to the callback.
STATE_TTL = timedelta(minutes=10)


class OAuthStateError(LookupError):
    """A callback's state is unknown, used, expired or of another platform.

    ``reason`` is one of ``unknown``, ``used``, ``expired``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class PendingConsent:
    """What a state was issued for."""

    platform: str
    shop_id: str
    channel_account: str
    redirect_uri: str
    mapped_data: list[str]


@dataclass(frozen=True)
class _Row:
    platform: str
    shop_id: str
    channel_account: str
    redirect_uri: str
    mapped_data: list[str]
    expires_at: datetime
    used_at: datetime | None


def _hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


class OAuthStates:
    """Issue a consent's state, and take it back once at the callback.

    Args:
        database_url: PostgreSQL holding ``oauth_states`` (migrated).
        clock: Now (aware), for expiry.
        ttl: How long a state stays good.
    """

    def __init__(
        self,
        database_url: str,
        *,
        clock: Callable[[], datetime],
        ttl: timedelta = STATE_TTL,
    ) -> None:
        self.database_url = database_url
        self.clock = clock
        self.ttl = ttl

    async def issue(self, consent: PendingConsent) -> str:
        """A new random state for ``consent``; only its hash is stored."""
        state = secrets.token_urlsafe(24)
        now = self.clock()
        async with await psycopg.AsyncConnection.connect(self.database_url) as conn:
            await conn.execute(
                "INSERT INTO oauth_states (state_hash, platform, shop_id, "
                "channel_account, redirect_uri, mapped_data, created_at, expires_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    _hash(state),
                    consent.platform,
                    consent.shop_id,
                    consent.channel_account,
                    consent.redirect_uri,
                    list(consent.mapped_data),
                    now,
                    now + self.ttl,
                ),
            )
        return state

    async def take(self, platform: str, state: str) -> PendingConsent:
        """Use ``state`` up and answer what it was issued for.

        Raises:
            OAuthStateError: no state of ``platform`` has this value, or it was
                used already, or it expired.
        """
        now = self.clock()
        async with await psycopg.AsyncConnection.connect(self.database_url) as conn:
            cur = conn.cursor(row_factory=class_row(_Row))
            await cur.execute(
                "UPDATE oauth_states SET used_at = %s WHERE state_hash = %s "
                "AND platform = %s AND used_at IS NULL AND expires_at > %s "
                "RETURNING platform, shop_id, channel_account, redirect_uri, "
                "mapped_data, expires_at, used_at",
                (now, _hash(state), platform, now),
            )
            taken = await cur.fetchone()
            if taken is not None:
                return PendingConsent(
                    platform=taken.platform,
                    shop_id=taken.shop_id,
                    channel_account=taken.channel_account,
                    redirect_uri=taken.redirect_uri,
                    mapped_data=list(taken.mapped_data),
                )
            await cur.execute(
                "SELECT platform, shop_id, channel_account, redirect_uri, "
                "mapped_data, expires_at, used_at FROM oauth_states "
                "WHERE state_hash = %s AND platform = %s",
                (_hash(state), platform),
            )
            found = await cur.fetchone()
        if found is None:
            raise OAuthStateError(
                "unknown",
                f"state {state[:6]}… was not issued by this hub for {platform}",
            )
        if found.used_at is not None:
            raise OAuthStateError(
                "used",
                f"state {state[:6]}… of {platform}/{found.shop_id} was used at "
                f"{found.used_at.isoformat()}: a consent is taken once",
            )
        raise OAuthStateError(
            "expired",
            f"state {state[:6]}… of {platform}/{found.shop_id} expired at "
            f"{found.expires_at.isoformat()}",
        )
