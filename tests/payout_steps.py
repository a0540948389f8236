"""Commission terms for a binding, set through the hub, shared by the money tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain import payout
from hub.service.hub import Hub


async def agree_terms(
    hub: Hub, binding: dict[str, Any], starts_at: datetime, ends_at: datetime
) -> None:
    """Anna at 15 % under ``binding``'s agreement, and Bo at 25 % in the live
    session ``live-1`` from ``starts_at`` to ``ends_at``."""
    await hub.execute(
        "payout.agree_commission",
        payout.AgreeCommission(**binding, streamer="anna", rate="0.15"),
    )
    await hub.execute(
        "payout.schedule_live_session",
        payout.ScheduleLiveSession(
            **binding,
            session_id="live-1",
            starts_at=starts_at,
            ends_at=ends_at,
            streamer="bo",
            rate="0.25",
        ),
    )
