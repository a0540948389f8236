"""The hub's settings, read once from the environment at the composition root.

Every setting has a production default; tests pass their own values to
:func:`hub.bootstrap.bootstrap` instead of touching the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

#: Most copies JetStream keeps of a stream.
MAX_STREAM_REPLICAS = 5


class SettingsError(ValueError):
    """A setting has a value the hub cannot use; the message names it."""


def _port(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: a port must be a whole number") from None
    if not 0 <= value <= 65535:
        raise SettingsError(f"{name}={value}: a port must be between 0 and 65535")
    return value


@dataclass(frozen=True)
class Settings:
    """Where the hub keeps its data and which servers it talks to.

    Attributes:
        home: data folder of the embedded servers (``HUB_HOME``, default ``./.hub``).
        database_url: PostgreSQL URL (``HUB_DATABASE_URL``); ``None`` starts the
            embedded PostgreSQL.
        nats_url: NATS URL (``HUB_NATS_URL``); ``None`` starts the embedded
            nats-server.
        pg_port: port of the embedded PostgreSQL (``HUB_PG_PORT``).
        nats_port: port of the embedded nats-server (``HUB_NATS_PORT``).
        http_port: port of the HTTP entry point (``HUB_HTTP_PORT``).
        policies_file: platform policy book (``HUB_POLICIES_FILE``); ``None``
            uses the book shipped with the hub (``hub/policies.json``).
        connectors_file: the connectors registry (``HUB_CONNECTORS_FILE``):
            shops, credentials and listings; ``None`` talks to no platform.
        stream_replicas: copies of the ``HUB_EVENTS`` stream the relay
            creates in a NATS cluster (``HUB_STREAM_REPLICAS``, 1 to 5).
        public_url: where the platforms reach the hub's HTTP port, for the
            OAuth callback (``HUB_PUBLIC_URL``; default
            ``http://127.0.0.1:<http_port>``).
    """

    home: Path = field(default_factory=lambda: Path(".hub"))
    database_url: str | None = None
    nats_url: str | None = None
    pg_port: int = 15432
    nats_port: int = 14222
    http_port: int = 8780
    policies_file: Path | None = None
    connectors_file: Path | None = None
    stream_replicas: int = 1
    public_url: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Read the ``HUB_*`` variables (from ``os.environ`` by default)."""
        env = dict(os.environ if env is None else env)
        return cls(
            home=Path(env.get("HUB_HOME") or ".hub"),
            database_url=env.get("HUB_DATABASE_URL") or None,
            nats_url=env.get("HUB_NATS_URL") or None,
            pg_port=_port(env, "HUB_PG_PORT", 15432),
            nats_port=_port(env, "HUB_NATS_PORT", 14222),
            http_port=_port(env, "HUB_HTTP_PORT", 8780),
            policies_file=Path(env["HUB_POLICIES_FILE"])
            if env.get("HUB_POLICIES_FILE")
            else None,
            connectors_file=Path(env["HUB_CONNECTORS_FILE"])
            if env.get("HUB_CONNECTORS_FILE")
            else None,
            stream_replicas=_replicas(env),
            public_url=(env.get("HUB_PUBLIC_URL") or "").rstrip("/") or None,
        )

    @property
    def callback_base(self) -> str:
        """Where the platforms send the merchant back: ``public_url``, else
        the HTTP port on this machine."""
        return self.public_url or f"http://127.0.0.1:{self.http_port}"


def _replicas(env: dict[str, str]) -> int:
    raw = env.get("HUB_STREAM_REPLICAS") or "1"
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_STREAM_REPLICAS:
        raise SettingsError(
            f"HUB_STREAM_REPLICAS={raw!r}: JetStream keeps 1 to "
            f"{MAX_STREAM_REPLICAS} copies of a stream"
        )
    return int(raw)


def nats_servers(nats_url: str) -> list[str]:
    """The servers of ``HUB_NATS_URL``: one URL, or several separated by commas
    (the nodes of a NATS cluster; the client fails over between them)."""
    return [url.strip() for url in nats_url.split(",") if url.strip()]


def eventsourcing_env(database_url: str) -> dict[str, str]:
    """Translate a PostgreSQL URL into the eventsourcing library's settings."""
    parts = urlsplit(database_url)
    if parts.scheme not in {"postgresql", "postgres"}:
        raise SettingsError(
            f"HUB_DATABASE_URL={database_url!r}: the scheme must be postgresql://"
        )
    dbname = parts.path.lstrip("/")
    if not dbname or not parts.hostname:
        raise SettingsError(
            f"HUB_DATABASE_URL={database_url!r}: needs a host and a database name"
        )
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": unquote(dbname),
        "POSTGRES_HOST": parts.hostname,
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_POOL_SIZE": "4",
        "POSTGRES_MAX_OVERFLOW": "8",
        "POSTGRES_LOCK_TIMEOUT": "30",
        "APPLICATION_RECORDER_TOPIC": "hub.infra.store:HubRecorder",
    }
