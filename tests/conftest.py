"""Shared fixtures: one real PostgreSQL and one real nats-server per session.

They are started from the same wheels the hub uses (``hub.infra.embedded``), or taken
from ``HUB_TEST_DATABASE_URL`` / ``HUB_TEST_NATS_URL`` when set. Each test that
asks for ``database_url`` gets a database of its own, so log positions start
at 1; ``nats_url`` starts with no ``HUB_EVENTS`` stream.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import nats
import psycopg
import pytest
from nats.js.errors import NotFoundError

from hub.infra.embedded import Servers, start_servers
from hub.messages import STREAM
from tests.sandbox_fixtures import sandbox, sandbox_control  # noqa: F401


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """The session's PostgreSQL and nats-server."""
    db = os.environ.get("HUB_TEST_DATABASE_URL") or None
    nats_url = os.environ.get("HUB_TEST_NATS_URL") or None
    started = start_servers(
        tmp_path_factory.mktemp("hub-home") / "home",
        database_url=db,
        nats_url=nats_url,
        pg_port=0,
        nats_port=0,
    )
    yield started
    started.stop()


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture
def database_url(servers: Servers) -> Iterator[str]:
    """A new, empty database on the session's PostgreSQL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = _with_database(servers.database_url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield _with_database(servers.database_url, name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _delete_stream(url: str) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().delete_stream(STREAM)
    except NotFoundError:
        pass
    finally:
        await nc.close()


@pytest.fixture
async def nats_url(servers: Servers) -> AsyncIterator[str]:
    """The session's nats-server, with no ``HUB_EVENTS`` stream yet."""
    await _delete_stream(servers.nats_url)
    yield servers.nats_url
    await _delete_stream(servers.nats_url)


async def wait_until(
    check: Callable[[], object], timeout: float = 30.0, interval: float = 0.01
) -> None:
    """Wait for a condition with a deadline (never a bare sleep)."""
    async with asyncio.timeout(timeout):
        while True:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(interval)
