"""The dashboard's figures and which session it shows, without servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from starlette.requests import Request

from hub.entry.dashboard import BadQueryError, _chosen, _safe_next
from projections.sales import NO_SESSION, Figures, LiveSessionInfo, Selection

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def session(sid: str, starts: timedelta, account: str = "ch-1") -> LiveSessionInfo:
    return LiveSessionInfo(
        channel_account=account,
        session_id=sid,
        starts_at=T0 + starts,
        ends_at=T0 + starts + timedelta(hours=2),
        streamers=("bo",),
        platforms=("youzan",),
    )


#: Newest start first, as projections.sales.sessions gives them.
FOUND = [
    session("next", timedelta(days=1)),
    session("tonight", timedelta(0)),
    session("last-week", timedelta(days=-7)),
]


def request(query: str = "") -> Request:
    return Request({"type": "http", "query_string": query.encode(), "headers": []})


def test_average_order_value_rounds_half_up_and_conversion_needs_views() -> None:
    figures = Figures(orders=3, session_orders=3, paid_orders=2, gmv_fen=10_001)
    assert figures.average_order_value_fen == 5_001  # 5,000.5 rounds up
    assert figures.conversion_rate is None  # no views
    watched = Figures(orders=3, session_orders=2, paid_orders=0, views=300)
    assert watched.conversion_rate == round(2 / 300, 6)  # orders in sessions only
    assert watched.average_order_value_fen is None  # no paid order


@pytest.mark.parametrize(
    ("now", "query", "shown"),
    [
        (T0 + timedelta(hours=1), "", "tonight"),  # on now
        (T0 + timedelta(hours=5), "", "tonight"),  # the latest that started
        (T0 - timedelta(days=30), "", "last-week"),  # none started: the next one
        (T0, "session=last-week", "last-week"),
    ],
)
def test_the_page_shows_the_session_on_now_else_the_latest(
    now: datetime, query: str, shown: str
) -> None:
    selection, found = _chosen(request(query), FOUND, now)
    assert found is not None and found.session_id == shown
    assert selection == Selection("ch-1", shown)


def test_all_none_and_an_unknown_session() -> None:
    assert _chosen(request("session=all"), FOUND, T0) == (Selection(), None)
    assert _chosen(request("session=none&account=ch-2"), FOUND, T0) == (
        Selection("ch-2", NO_SESSION),
        None,
    )
    with pytest.raises(BadQueryError, match="session='x': no such live session"):
        _chosen(request("session=x"), FOUND, T0)


def test_a_login_only_sends_back_into_the_dashboard() -> None:
    assert _safe_next("/dashboard/stock") == "/dashboard/stock"
    assert _safe_next("https://evil.example/") == "/dashboard"
    assert _safe_next("//evil.example/dashboard") == "/dashboard"
