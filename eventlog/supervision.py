"""Supervision of the long-running tasks that follow the log and serve it.

A task that fails (a dropped connection, a server restarting) must neither die
silently nor spin: :class:`Supervisor` runs one *attempt* of a task at a time,
logs a failure at once with its cause, waits a growing, jittered delay and
runs a new attempt, and keeps each task's state (running, retrying since when
and why, failed, stopped) for ``hub status`` and ``/health``.

It lives below the hub (beside the log reader) because the projection runners
and the relay, which must not import the hub, are supervised by it too.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

log = logging.getLogger(__name__)

TaskState = Literal["running", "retrying", "failed", "stopped"]

#: First wait after a failure; doubled after each further failure.
BASE_DELAY_S = 0.5
#: Longest wait between attempts.
MAX_DELAY_S = 10.0
#: An attempt that ran this long resets the delay to :data:`BASE_DELAY_S`.
HEALTHY_AFTER_S = 30.0


async def wait_set(event: asyncio.Event, timeout: float) -> bool:
    """Wait at most ``timeout`` seconds for ``event``; whether it was set.

    Through :func:`asyncio.timeout`, not :func:`asyncio.wait_for`: on Python
    3.11 ``wait_for`` returns the result and loses a cancellation that comes in
    the same turn as the event (fixed in 3.12), and a task stopped then would
    go on.
    """
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


@dataclass
class TaskHealth:
    """The state of one supervised task.

    Attributes:
        name: what the task is (``projection inventory``, ``relay``, ...).
        state: ``running``; ``retrying`` (an attempt failed, the next one
            comes after a delay); ``failed`` (given up: the process cannot
            heal it); ``stopped``.
        since: when the task entered this state.
        last_error: the newest failure, as ``Type: message`` (kept after a
            recovery, for the record).
        failures: attempts that failed since the task started.
    """

    name: str
    state: TaskState
    since: datetime
    last_error: str | None = None
    failures: int = 0


class GaveUpError(RuntimeError):
    """A supervised task failed more often in a row than it may."""


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception, on one line."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def utc_now() -> datetime:
    """The production clock."""
    return datetime.now(UTC)


class Supervisor:
    """Runs tasks, retries their failures with backoff, and reports their state.

    Args:
        sleep: waits between attempts (injected in tests).
        jitter: numbers in [0, 1); the delay is scaled by ``0.5 + jitter / 2``
            so that many tasks failing together do not retry in step.
        clock: the wall clock of :attr:`TaskHealth.since`.
        monotonic: measures how long an attempt ran.
        base_delay_s: the first delay after a failure.
        max_delay_s: the longest delay.
        healthy_after_s: an attempt that ran this long resets the delay.
    """

    def __init__(
        self,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        base_delay_s: float = BASE_DELAY_S,
        max_delay_s: float = MAX_DELAY_S,
        healthy_after_s: float = HEALTHY_AFTER_S,
    ) -> None:
        self._sleep = sleep
        self._jitter = jitter
        self._clock = clock
        self._monotonic = monotonic
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.healthy_after_s = healthy_after_s
        self._tasks: dict[int, TaskHealth] = {}
        self._next_key = 0

    def health(self) -> list[TaskHealth]:
        """Every task supervised now (stopped ones are forgotten)."""
        return sorted(self._tasks.values(), key=lambda h: h.name)

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure in a row."""
        doubled: float = self.base_delay_s * 2.0 ** max(0, failures - 1)
        return min(self.max_delay_s, doubled) * (0.5 + self._jitter() / 2)

    def spawn(
        self,
        name: str,
        attempt: Callable[[], Awaitable[None]],
        *,
        give_up_after: int | None = None,
    ) -> asyncio.Task[None]:
        """Run :meth:`run` as a task of its own (named ``name``)."""
        return asyncio.create_task(
            self.run(name, attempt, give_up_after=give_up_after), name=name
        )

    async def run(
        self,
        name: str,
        attempt: Callable[[], Awaitable[None]],
        *,
        give_up_after: int | None = None,
    ) -> None:
        """Run ``attempt()`` until it returns or this is cancelled.

        Each failure is logged at once (with its traceback) and followed by a
        new attempt after :meth:`delay`. An attempt that returns ends the task.

        Args:
            name: the task's name in logs and health reports.
            attempt: one run of the task, from a clean start.
            give_up_after: failures in a row after which the task is marked
                ``failed`` and :class:`GaveUpError` is raised (None: never).
        """
        key = self._next_key
        self._next_key += 1
        health = TaskHealth(name=name, state="running", since=self._clock())
        self._tasks[key] = health
        in_a_row = 0
        try:
            while True:
                started = self._monotonic()
                try:
                    await attempt()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if self._monotonic() - started >= self.healthy_after_s:
                        in_a_row = 0
                    in_a_row += 1
                    health.failures += 1
                    health.last_error = describe(exc)
                    health.since = self._clock()
                    if give_up_after is not None and in_a_row >= give_up_after:
                        health.state = "failed"
                        log.error(
                            "%s failed %d times in a row; giving up: %s",
                            name,
                            in_a_row,
                            health.last_error,
                            exc_info=exc,
                        )
                        raise GaveUpError(
                            f"{name} failed {in_a_row} times in a row "
                            f"(last: {health.last_error})"
                        ) from exc
                    wait = self.delay(in_a_row)
                    health.state = "retrying"
                    # The traceback once per run of failures, not on each retry.
                    log.error(
                        "%s failed (%d in a row); retrying in %.1f s: %s",
                        name,
                        in_a_row,
                        wait,
                        health.last_error,
                        exc_info=exc if in_a_row == 1 else None,
                    )
                    await self._sleep(wait)
                    health.state = "running"
                    health.since = self._clock()
                    continue
                health.state = "stopped"
                return
        finally:
            if health.state != "failed":
                self._tasks.pop(key, None)


_DEFAULT: Supervisor | None = None


def default_supervisor() -> Supervisor:
    """The process's supervisor: the one ``/health`` and ``hub status`` read."""
    global _DEFAULT  # noqa: PLW0603
    if _DEFAULT is None:
        _DEFAULT = Supervisor()
    return _DEFAULT
