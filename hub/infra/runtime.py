"""How the hub runs its event loop.

The long-running verbs (``serve`` and the scale-out workers) run on uvloop where
it is installed (Linux and macOS): its loop schedules tasks and futures at about
half the cost of the standard one, and every command, relay publish and
projection step is a handful of those. Elsewhere the standard loop is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on the fastest available event loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop
        return asyncio.run(main)
    return uvloop.run(main)


async def run_until_signal(
    coro_factory: Callable[[], Coroutine[Any, Any, object]],
) -> None:
    """Run ``coro_factory()`` until it ends or SIGINT/SIGTERM comes; then cancel it."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(coro_factory())
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    waiter.cancel()
