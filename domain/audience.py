"""Audience: how many people watched a channel's live sessions and videos.

Views are what a live session's conversion is measured against: the hub counts
the orders placed during a session, and the channel counts the people who
watched it. One aggregate per watched thing: a channel account's live session
(``source="live"``, ``source_id`` the live session's id, the one its commission
terms are scheduled under) or one of its short videos (``source="video"``,
``source_id`` the video's id).

:class:`RecordViews` adds a number of new views (a delta, at least one) seen at
``at`` → :class:`ViewsRecorded` with the running total. Views are counts the
channel reports, so the same report sent twice would count twice: a caller that
retries sends a ``request_id`` and the hub applies it once.
"""

from __future__ import annotations

import functools
import uuid
from datetime import datetime
from typing import Annotated, ClassVar, Literal

import msgspec

from domain.events import Context, Event, State, advanced, derive_id, register
from domain.stock import RequestId

#: What was watched: a live session or a short video.
Source = Literal["live", "video"]
#: The most views one report may add (a sanity bound, not a platform rule).
MAX_VIEWS_PER_REPORT = 1_000_000_000


def audience_id(channel_account: str, source: str, source_id: str) -> uuid.UUID:
    """The aggregate id of the views of one live session or video of a channel."""
    return derive_id("audience", channel_account, source, source_id)


class RecordViews(msgspec.Struct, frozen=True, kw_only=True):
    """Add ``views`` new views of a live session or video, seen at ``at``."""

    channel_account: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    source: Source
    source_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    views: Annotated[int, msgspec.Meta(ge=1, le=MAX_VIEWS_PER_REPORT)]
    at: datetime
    request_id: RequestId | None = None


@register
class ViewsRecorded(Event, frozen=True, kw_only=True):
    """``views`` more people watched (``total`` so far), counted at ``at``."""

    TOPIC: ClassVar[str] = "audience.ViewsRecorded"
    AGGREGATE: ClassVar[str] = "audience"

    channel_account: str
    source: str
    source_id: str
    views: int
    total: int
    at: datetime


AudienceEvent = ViewsRecorded


class Audience(State, frozen=True, kw_only=True):
    """The views of one live session or video so far."""

    channel_account: str = ""
    source: str = ""
    source_id: str = ""
    total: int = 0


def decide(state: Audience | None, command: RecordViews, ctx: Context) -> list[Event]:
    """Record the views the command adds (the decoder has checked the count)."""
    aid = audience_id(command.channel_account, command.source, command.source_id)
    version = 1 if state is None else state.version + 1
    total = 0 if state is None else state.total
    return [
        ViewsRecorded(
            **ctx.meta(aid, version),
            channel_account=command.channel_account,
            source=command.source,
            source_id=command.source_id,
            views=command.views,
            total=total + command.views,
            at=command.at,
        )
    ]


@functools.singledispatch
def mutate(event: Event, state: Audience | None) -> Audience | None:
    """Evolve ``state`` by ``event``."""
    raise TypeError(f"audience cannot apply {type(event).__name__}")


@mutate.register
def _(event: ViewsRecorded, state: Audience | None) -> Audience:
    current = advanced(Audience, state, event)
    return msgspec.structs.replace(
        current,
        channel_account=event.channel_account,
        source=event.source,
        source_id=event.source_id,
        total=event.total,
    )
