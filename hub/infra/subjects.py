"""The data subjects' keys (``subject_keys``), each sealed under the master key.

A subject's key is made the first time a personal field of that subject is
sealed, and deleted by an erasure; a rotation adds a newer version (older data
keeps opening with its own). The master key can be rotated too: every row is
sealed again under the new key (:meth:`SubjectKeys.reseal`).

Each call opens its own connection (a subject's key is read once per
``cache_s``, so this is off the hot path) and nothing needs closing. Keys the
hub used are cached for ``cache_s`` seconds, so an order does not
wait on a query; an erasure done by another process is seen by this one within
that time (new data of an erased subject gets a new key after it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import psycopg

from hub.infra.keys import Sealer

_KEY_BYTES = 32


def _context(subject_id: str, version: int) -> str:
    return f"subject/{subject_id}/{version}"


class SubjectKeys:
    """Get, make, rotate and delete the keys of data subjects.

    Args:
        database_url: PostgreSQL holding ``subject_keys`` (migrated).
        master_key: The key every subject key is sealed under.
        cache_s: How long a key this process used is kept in memory.
        clock: Monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        database_url: str,
        master_key: bytes,
        *,
        cache_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.database_url = database_url
        self._sealer = Sealer(master_key)
        self._cache: dict[str, tuple[float, int, bytes]] = {}
        self._cache_s = cache_s
        self._clock = clock

    def _connect(self) -> Any:
        return psycopg.AsyncConnection.connect(self.database_url, autocommit=True)

    async def current(self, subject_id: str) -> tuple[int, bytes]:
        """The newest (version, key) of the subject, made if it has none."""
        cached = self._cache.get(subject_id)
        if cached is not None and self._clock() - cached[0] < self._cache_s:
            return cached[1], cached[2]
        versions, newest = await self._versions(subject_id)
        if versions:
            version = max(versions)
            key = versions[version]
        else:
            version, key = await self._insert(subject_id, newest + 1)
        self._cache[subject_id] = (self._clock(), version, key)
        return version, key

    async def versions(self, subject_id: str) -> dict[int, bytes]:
        """Every key version of the subject (empty: never made, or erased)."""
        return (await self._versions(subject_id))[0]

    async def _versions(self, subject_id: str) -> tuple[dict[int, bytes], int]:
        """The live keys, and the newest version ever used (erased ones too)."""
        async with await self._connect() as conn:
            cur = await conn.execute(
                "SELECT version, sealed FROM subject_keys WHERE subject_id = %s",
                (subject_id,),
            )
            rows = await cur.fetchall()
        live = {
            int(version): self._sealer.open(
                bytes(sealed), _context(subject_id, int(version))
            )
            for version, sealed in rows
            if sealed
        }
        return live, max((int(version) for version, _ in rows), default=0)

    async def rotate(self, subject_id: str) -> int:
        """Add a newer key for the subject; new data is sealed with it.

        Returns:
            The new version.
        """
        _, newest = await self._versions(subject_id)
        version, key = await self._insert(subject_id, newest + 1)
        self._cache[subject_id] = (self._clock(), version, key)
        return version

    async def erase(self, subject_id: str) -> int:
        """Delete every key of the subject (crypto-shredding).

        An empty row of the next version stays as a tombstone, so a key made
        later for the same subject never reuses an erased version number.

        Returns:
            How many key versions were deleted.
        """
        self._cache.pop(subject_id, None)
        async with await self._connect() as conn, conn.transaction():
            cur = await conn.execute(
                "DELETE FROM subject_keys WHERE subject_id = %s "
                "RETURNING version, sealed",
                (subject_id,),
            )
            rows = await cur.fetchall()
            newest = max((int(version) for version, _ in rows), default=0)
            if newest:
                await conn.execute(
                    "INSERT INTO subject_keys (subject_id, version, sealed) "
                    "VALUES (%s, %s, '')",
                    (subject_id, newest + 1),
                )
            return sum(1 for _, sealed in rows if sealed)

    async def reseal(self, new_master_key: bytes) -> int:
        """Seal every subject key again under a new master key (one transaction).

        Returns:
            How many keys were sealed again.
        """
        fresh = Sealer(new_master_key)
        async with await self._connect() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT subject_id, version, sealed FROM subject_keys "
                "WHERE sealed <> '' FOR UPDATE"
            )
            rows = await cur.fetchall()
            for subject_id, version, sealed in rows:
                context = _context(str(subject_id), int(version))
                key = self._sealer.open(bytes(sealed), context)
                await conn.execute(
                    "UPDATE subject_keys SET sealed = %s "
                    "WHERE subject_id = %s AND version = %s",
                    (fresh.seal(key, context), subject_id, version),
                )
        self._sealer = fresh
        return len(rows)

    async def _insert(self, subject_id: str, version: int) -> tuple[int, bytes]:
        key = os.urandom(_KEY_BYTES)
        sealed = self._sealer.seal(key, _context(subject_id, version))
        async with await self._connect() as conn:
            await conn.execute(
                "INSERT INTO subject_keys (subject_id, version, sealed) "
                "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                (subject_id, version, sealed),
            )
        # Another process may have made this version first: use the stored one.
        stored = await self.versions(subject_id)
        return version, stored[version]
