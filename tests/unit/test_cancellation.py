"""A task waiting with a deadline stops when it is cancelled, even when what it
waited for comes in the same turn of the event loop.

Python 3.11's ``asyncio.wait_for`` returns the result then and loses the
cancellation (fixed in 3.12): a relay stopped while JetStream's acks were
arriving went on publishing, and ``Hub.stop`` waited for it forever.
"""

from __future__ import annotations

import asyncio

import pytest

from hub.infra.relay import _Acks
from hub.infra.runtime import cancel_and_wait


async def test_a_relay_waiting_for_an_ack_stops_when_cancelled_as_the_ack_comes() -> (
    None
):
    acks = _Acks()
    waiting = asyncio.create_task(acks.wait_beyond(0, timeout=30))
    await asyncio.sleep(0)  # it waits for an ack past sequence 0
    acks.acked = 1
    acks._changed.set()  # the ack comes (as on_ack records it) ...
    waiting.cancel()  # ... in the same turn as the relay is stopped
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_a_wait_for_an_ack_still_times_out() -> None:
    acks = _Acks()
    assert not await acks.wait_beyond(0, timeout=0.01)
    assert acks.failure == "no ack within 0 s"


async def test_a_caller_cancelled_while_it_waits_for_a_task_is_cancelled() -> None:
    # A task that takes its time to end once cancelled.
    release = asyncio.Event()

    async def slow_to_end() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await release.wait()
            raise

    task = asyncio.create_task(slow_to_end())
    await asyncio.sleep(0)  # the task waits
    # The caller's own deadline passes while it waits: that is not swallowed.
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await cancel_and_wait(task)
    release.set()
    await cancel_and_wait(task)  # the task's own end is
    assert task.cancelled()


async def test_a_caller_stopping_things_while_it_is_cancelled_goes_on() -> None:
    async def quick_to_end() -> None:
        await asyncio.Event().wait()

    stopped: list[str] = []

    async def caller() -> None:
        try:
            await asyncio.Event().wait()
        finally:  # cleanup while cancelled: each stop returns
            for name in ("first", "second"):
                await cancel_and_wait(asyncio.create_task(quick_to_end()))
                stopped.append(name)

    task = asyncio.create_task(caller())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.cancelled()
    assert stopped == ["first", "second"]
