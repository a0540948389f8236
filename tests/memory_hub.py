"""The hub on eventsourcing's in-memory store, for tests without servers."""

from __future__ import annotations

import contextlib
import itertools
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from domain.policy import PolicyBook
from hub.infra.store import HubApplication
from hub.service.commit import GroupCommitter
from hub.service.hub import Hub


def in_memory_app() -> HubApplication:
    """An empty hub store held in memory."""
    return HubApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})


def held_appends(app: HubApplication, wait_s: float = 10.0) -> threading.Event:
    """Hold each of ``app``'s appends (in the committer's thread) until the
    returned event is set, at most ``wait_s``: a batch stays being written."""
    release = threading.Event()
    append = app.append

    def held_append(events: Any, *args: Any) -> list[int]:
        release.wait(wait_s)
        return append(events, *args)

    app.append = held_append  # type: ignore[method-assign]
    return release


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
