"""A clock for the platform clients that moves only when a sleep (or a test)
moves it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta


class FakeClock:
    """The clients' clock: ``now`` and ``monotonic`` from an offset in seconds."""

    def __init__(self, start: datetime | None = None) -> None:
        self.offset = 0.0
        self.start = start or datetime.now(UTC)

    def now(self) -> datetime:
        """The start plus the offset."""
        return self.start + timedelta(seconds=self.offset)

    def monotonic(self) -> float:
        """The offset."""
        return self.offset

    async def sleep(self, seconds: float) -> None:
        """Move the clock by ``seconds`` and let the loop run once."""
        self.offset += seconds
        await asyncio.sleep(0)
