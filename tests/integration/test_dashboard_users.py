"""``hub users add``: a dashboard user whose password is kept only as its scrypt
hash; a session signed in, refused when forged, ended by signing out."""

from __future__ import annotations

import asyncio
import io
import sys
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from hub.entry.cli import main
from hub.entry.dashboard import SESSION_TTL, Sessions
from hub.infra.migrate import migrate

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


async def users_add(name: str, stdin: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """Run the verb (its own event loop, in a thread) with ``stdin``."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return await asyncio.to_thread(main, ["users", "add", name])


async def test_a_user_added_signs_in_and_out(
    database_url: str, nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    monkeypatch.setenv("HUB_NATS_URL", nats_url)
    assert (
        await users_add("merchant", "short\n", monkeypatch) == 2
    )  # under 8 characters
    assert await users_add("merchant", "correct horse battery\n", monkeypatch) == 0
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute("SELECT password_hash FROM dashboard_users")
        [(stored,)] = await cur.fetchall()
    assert "correct horse" not in stored and stored.startswith("scrypt$")

    clock = [NOW]
    sessions = Sessions(database_url, lambda: clock[0])
    assert await sessions.sign_in("merchant", "wrong password") is None
    assert await sessions.sign_in("nobody", "correct horse battery") is None
    cookie = await sessions.sign_in("merchant", "correct horse battery")
    assert cookie is not None
    assert await sessions.user_of(cookie) == "merchant"
    token, _, signature = cookie.rpartition(".")
    assert await sessions.user_of(f"{token}.{signature[::-1]}") is None  # forged
    assert await sessions.user_of(token) is None  # unsigned

    clock[0] = NOW + SESSION_TTL + timedelta(seconds=1)
    assert await sessions.user_of(cookie) is None  # expired
    clock[0] = NOW
    await sessions.sign_out(cookie)
    assert await sessions.user_of(cookie) is None

    # A new password ends every session of the user.
    again = await sessions.sign_in("merchant", "correct horse battery")
    assert await users_add("merchant", "another good one\n", monkeypatch) == 0
    assert await sessions.user_of(again) is None
    migrate(database_url)  # already applied: nothing to do
