"""Versioned SQL migrations: applied in order, once each, under a lock.

Each file of ``migrations/*.sql`` is applied in its own transaction and recorded
in ``hub_schema_migrations`` with its SHA-256. A PostgreSQL advisory lock makes
two hubs starting together apply nothing twice. A file that was edited after it
was applied is refused, naming the file: history is not rewritten.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psycopg

#: Advisory lock key of the migration runner ("hub.infra.migrate").
LOCK_KEY = 0x6875625F6D6967
TABLE = "hub_schema_migrations"


class MigrationError(RuntimeError):
    """A migration cannot be applied; the message names the file."""


@dataclass(frozen=True)
class Migration:
    """One SQL file: name (``0001_x.sql``), text and checksum."""

    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file's text."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def bundled_migrations(folder: Path | None = None) -> list[Migration]:
    """The migrations shipped with the hub (or those in ``folder``), in order."""
    if folder is None:
        files = [
            (entry.name, entry.read_text(encoding="utf-8"))
            for entry in resources.files("migrations").iterdir()
            if entry.name.endswith(".sql")
        ]
    else:
        files = [(p.name, p.read_text(encoding="utf-8")) for p in folder.glob("*.sql")]
    return [Migration(name, sql) for name, sql in sorted(files)]


def migrate(database_url: str, migrations: list[Migration] | None = None) -> list[str]:
    """Apply every migration not yet applied; return the names applied now.

    Raises:
        MigrationError: an applied migration's file has changed since.
    """
    migrations = bundled_migrations() if migrations is None else migrations
    applied_now: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} ("
                " name text PRIMARY KEY, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            applied: dict[str, str] = dict(
                conn.execute(f"SELECT name, checksum FROM {TABLE}").fetchall()
            )
            for migration in migrations:
                recorded = applied.get(migration.name)
                if recorded is not None:
                    if recorded != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.name} was edited after it was "
                            f"applied (checksum {recorded[:12]}… in the database, "
                            f"{migration.checksum[:12]}… on disk): add a new "
                            f"migration instead of changing an applied one"
                        )
                    continue
                with conn.transaction():
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        f"INSERT INTO {TABLE} (name, checksum) VALUES (%s, %s)",
                        (migration.name, migration.checksum),
                    )
                applied_now.append(migration.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    return applied_now
