"""The hub on eventsourcing's in-memory store, for tests without servers."""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import datetime

from domain.policy import PolicyBook
from hub.infra.store import HubApplication
from hub.service.commit import GroupCommitter
from hub.service.hub import Hub


def in_memory_app() -> HubApplication:
    """An empty hub store held in memory."""
    return HubApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})


def in_memory_hub(now: datetime, policy_book: PolicyBook | None = None) -> Hub:
    """A hub on an empty in-memory store, its clock at ``now``, ids 1, 2, 3, ..."""
    app = in_memory_app()
    counter = itertools.count(1)
    committer = GroupCommitter(
        app, clock=lambda: now, new_id=lambda: uuid.UUID(int=next(counter))
    )
    return Hub(
        database_url="",
        nats_url=None,
        app=app,
        committer=committer,
        relay=None,
        policy_book=policy_book,
    )


@contextlib.asynccontextmanager
async def committing(hub: Hub) -> AsyncIterator[Hub]:
    """``hub`` with its committer running."""
    await hub.committer.start()
    try:
        yield hub
    finally:
        await hub.committer.stop()
