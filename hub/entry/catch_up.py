"""Bring one projection up to the log's head before a CLI verb reads it.

The read verbs (``hub bindings list``, ``hub stock show``, ``hub ledger …``,
``hub profiles …``) run without ``hub serve``, so the table they read may lag
the log; each first runs that table's projection up to the current head.
"""

from __future__ import annotations

import psycopg

from eventlog.log import log_head
from projections.base import Projection, ProjectionRunner


async def catch_up(database_url: str, projection: Projection) -> None:
    """Apply every event up to the log's current head to ``projection``.

    Args:
        database_url: The PostgreSQL database holding the log and the tables.
        projection: The projection whose tables are about to be read.
    """
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        head = await log_head(conn)
    runner = ProjectionRunner(projection, database_url)
    await runner.start()
    try:
        await runner.wait_for(head)
    finally:
        await runner.stop()
