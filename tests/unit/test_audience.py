"""Views of a channel's live sessions and videos: the audience aggregate."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from domain import audience
from domain.events import Context
from hub.service.commands import CommandDecodeError, decode_command

AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
CTX = Context(now=AT, new_id=lambda: uuid.UUID(int=1))


def views(n: int, source_id: str = "live-1") -> audience.RecordViews:
    return audience.RecordViews(
        channel_account="ch-1", source="live", source_id=source_id, views=n, at=AT
    )


def test_views_add_up_per_session() -> None:
    first = audience.decide(None, views(200), CTX)
    state = audience.mutate(first[0], None)
    [second] = audience.decide(state, views(300), CTX)
    assert isinstance(second, audience.ViewsRecorded)
    assert (second.views, second.total, second.originator_version) == (300, 500, 2)
    assert second.originator_id == audience.audience_id("ch-1", "live", "live-1")
    assert audience.audience_id("ch-1", "live", "live-2") != second.originator_id


@pytest.mark.parametrize(
    ("payload", "rule"),
    [
        (b'"views": 0', "Expected `int` >= 1 - at `$.views`"),
        (b'"views": 5, "source": "tv"', "Invalid enum value 'tv' - at `$.source`"),
    ],
)
def test_a_report_that_breaks_a_rule_is_refused_naming_it(
    payload: bytes, rule: str
) -> None:
    body = (
        b'{"channel_account": "ch-1", "source": "live", "source_id": "live-1", '
        b'"at": "2026-11-26T12:00:00Z", ' + payload + b"}"
    )
    with pytest.raises(CommandDecodeError) as refused:
        decode_command("audience.record_views", body)
    assert str(refused.value) == f"audience.record_views: {rule}"
