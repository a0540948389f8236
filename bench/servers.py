"""The servers a bench runs on, and a fresh database on them for each run."""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from hub.infra.embedded import Servers, running_servers


@contextlib.contextmanager
def bench_servers(prefix: str = "hub-bench-") -> Iterator[Servers]:
    """The servers ``HUB_DATABASE_URL`` / ``HUB_NATS_URL`` name, else embedded ones.

    Embedded servers run on free ports in a new temporary folder named with
    ``prefix``; they are stopped when the ``with`` block ends, and the folder
    (their data: a 1,000,000-event replay leaves 1.8 GB) is removed.
    """
    with (
        tempfile.TemporaryDirectory(prefix=prefix, ignore_cleanup_errors=True) as top,
        running_servers(
            Path(top) / "home",
            database_url=os.environ.get("HUB_DATABASE_URL") or None,
            nats_url=os.environ.get("HUB_NATS_URL") or None,
            pg_port=0,
            nats_port=0,
        ) as servers,
    ):
        yield servers


def fresh_database(server_url: str, prefix: str = "bench") -> str:
    """Create an empty database on the server; return its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    parts = urlsplit(server_url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path="/" + name))
