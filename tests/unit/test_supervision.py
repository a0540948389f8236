"""Supervision: a failing task is logged, retried with backoff and reported;
a committer whose store hangs still answers and stops (no servers)."""

from __future__ import annotations

import asyncio
import gc
import logging
from datetime import UTC, datetime

import pytest

from domain.stock import ReceiveStock
from eventlog.supervision import GaveUpError, Supervisor
from hub.infra.runtime import OneLineFormatter, freeze_heap
from hub.infra.store import HubApplication
from hub.service.commands import STOCK_RULES
from hub.service.commit import GroupCommitter, StoreUnavailableError
from tests.memory_hub import held_appends

NOW = datetime(2026, 11, 30, tzinfo=UTC)


class Clock:
    """Monotonic time that moves only when the supervisor sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _supervisor(clock: Clock) -> Supervisor:
    return Supervisor(
        sleep=clock.sleep,
        jitter=lambda: 1.0,  # the full delay
        clock=lambda: NOW,
        monotonic=lambda: clock.now,
        base_delay_s=0.5,
        max_delay_s=4.0,
    )


async def test_a_failing_task_is_logged_retried_with_backoff_and_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    supervisor = _supervisor(clock)
    seen: list[list[str]] = []
    attempts = 0

    async def attempt() -> None:
        nonlocal attempts
        attempts += 1
        seen.append([f"{h.state} {h.failures}" for h in supervisor.health()])
        if attempts <= 5:
            raise ConnectionError(f"connection {attempts} dropped")

    with caplog.at_level(logging.ERROR, logger="eventlog.supervision"):
        await supervisor.run("projection p", attempt)
    assert clock.slept == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert seen[0] == ["running 0"] and seen[-1] == ["running 5"]
    failures = [r for r in caplog.records if "projection p failed" in r.getMessage()]
    assert len(failures) == 5
    assert "ConnectionError: connection 1 dropped" in failures[0].getMessage()
    assert failures[0].exc_info is not None  # the cause, with its traceback
    assert supervisor.health() == []  # a task that ended is forgotten


async def test_a_retrying_task_reports_since_when_and_why() -> None:
    release = asyncio.Event()
    retrying = asyncio.Event()

    async def sleep(seconds: float) -> None:
        retrying.set()
        await release.wait()

    supervisor = Supervisor(sleep=sleep, clock=lambda: NOW)
    calls = 0

    async def attempt() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("no route to host")
        await asyncio.Event().wait()

    task = supervisor.spawn("relay", attempt)
    await retrying.wait()
    [health] = supervisor.health()
    assert (health.state, health.since, health.failures) == ("retrying", NOW, 1)
    assert health.last_error == "OSError: no route to host"
    release.set()
    while supervisor.health()[0].state != "running":
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert supervisor.health() == []


async def test_a_task_failing_too_often_in_a_row_is_marked_failed() -> None:
    supervisor = _supervisor(Clock())

    async def attempt() -> None:
        raise RuntimeError("port taken")

    with pytest.raises(GaveUpError, match="3 times in a row"):
        await supervisor.run("embedded nats-server", attempt, give_up_after=3)
    [health] = supervisor.health()
    assert health.state == "failed" and health.failures == 3


async def test_an_attempt_that_ran_long_resets_the_backoff() -> None:
    clock = Clock()
    supervisor = _supervisor(clock)
    attempts = 0

    async def attempt() -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 3:
            clock.now += supervisor.healthy_after_s  # ran healthily a while
        if attempts <= 4:
            raise ConnectionError("dropped")

    await supervisor.run("committer", attempt)
    assert clock.slept == [0.5, 1.0, 0.5, 1.0]


def test_a_log_record_with_a_traceback_is_one_line() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError as exc:
        record = logging.LogRecord(
            "hub",
            logging.ERROR,
            __file__,
            1,
            "failed: %s",
            ("x",),
            (
                type(exc),
                exc,
                exc.__traceback__,
            ),
        )
    line = OneLineFormatter("%(levelname)s %(message)s").format(record)
    assert "\n" not in line
    assert line.startswith("ERROR failed: x | Traceback") and "ValueError: bad" in line


def test_freeze_heap_keeps_what_the_process_holds_out_of_later_collections() -> None:
    held = [object()]  # a list is tracked by the collector
    try:
        freeze_heap()
        assert gc.get_freeze_count() > 0
        assert not any(found is held for found in gc.get_objects())
        made_after: list[object] = []
        assert any(found is made_after for found in gc.get_objects())
    finally:
        gc.unfreeze()


async def test_a_committer_whose_store_hangs_answers_and_stops(
    app: HubApplication,
) -> None:
    release = held_appends(app, wait_s=30)
    committer = GroupCommitter(app, clock=lambda: NOW, supervisor=Supervisor())
    await committer.start()
    try:
        writing = committer.submit(STOCK_RULES, ReceiveStock(sku="H-1", quantity=1))
        while committer._queue.qsize():  # taken off the queue: being written
            await asyncio.sleep(0.001)
        queued = committer.submit(STOCK_RULES, ReceiveStock(sku="H-2", quantity=1))
        async with asyncio.timeout(30):
            await committer.stop(timeout_s=0.05)
        for future in (writing, queued):
            with pytest.raises(StoreUnavailableError):
                await future
    finally:
        release.set()
