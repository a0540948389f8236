"""How the hub runs its event loop.

The long-running verbs (``serve`` and the scale-out workers) run on uvloop where
it is installed (Linux and macOS): its loop schedules tasks and futures at about
half the cost of the standard one, and every command, relay publish and
projection step is a handful of those. Elsewhere the standard loop is used.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

#: The format of every log line of ``hub serve``.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class OneLineFormatter(logging.Formatter):
    """One line per record: a traceback is folded onto the record's line
    (`` | `` between its lines), so a log collector never splits a failure."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line."""
        return " | ".join(
            line for line in super().format(record).splitlines() if line.strip()
        )


def configure_logging(env: Mapping[str, str] | None = None) -> int:
    """Log to stderr, one line per record, at ``HUB_LOG_LEVEL`` (default
    ``INFO``); return the level.

    Raises:
        ValueError: ``HUB_LOG_LEVEL`` names no level.
    """
    name = (os.environ if env is None else env).get("HUB_LOG_LEVEL") or "INFO"
    level = logging.getLevelName(name.strip().upper())
    if not isinstance(level, int):
        raise ValueError(
            f"HUB_LOG_LEVEL={name!r} is not a level: use DEBUG, INFO, WARNING, "
            "ERROR or CRITICAL"
        )
    handler = logging.StreamHandler()
    handler.setFormatter(OneLineFormatter(LOG_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return level


def freeze_heap() -> None:
    """Keep what the process holds now out of every later garbage collection.

    A long-running verb holds tens of thousands of objects from its start
    (modules, classes, the hub's parts) for its whole life; a full collection
    walks them all with the event loop stopped. In a ``bench/flash_sale.py
    --quick`` sale one such collection held the hub's loop 79 ms, and every
    call and push in flight waited with it (three order reads abandoned as
    slow at once: the sale's slowest orders). Collected once, then frozen
    (:func:`gc.freeze`), they are never walked again; only what the process
    makes afterwards is. What is garbage now is freed first; a frozen object
    that becomes garbage later stays (a start-up object seldom does).
    """
    gc.collect()
    gc.freeze()


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on the fastest available event loop.

    Unlike :func:`asyncio.run` it does not wait, at the end, for calls still
    blocked in worker threads (a store call to a PostgreSQL that stopped
    answering): a stopped hub must end within seconds whatever its servers
    do. :func:`leave` then ends the process without joining them.
    """
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - platforms without uvloop
        loop = asyncio.new_event_loop()
    executor = ThreadPoolExecutor(thread_name_prefix="hub-io")
    loop.set_default_executor(executor)
    asyncio.set_event_loop(loop)
    freeze_heap()  # what the imports made; :func:`serve` again once started
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_remaining(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_remaining(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


def leave(code: int) -> int:
    """``code`` to exit with; if threads are still blocked (see :func:`run`),
    end the process with it at once instead of waiting for them."""
    blocked = [
        t
        for t in threading.enumerate()
        if t is not threading.main_thread() and not t.daemon and t.is_alive()
    ]
    if blocked:
        logging.getLogger(__name__).warning(
            "exiting with %d calls still blocked in worker threads", len(blocked)
        )
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended (nothing to do for None).

    Args:
        task: A background task the caller started, or None if none runs.
    """
    if task is None:
        return
    current = asyncio.current_task()
    # A caller already being cancelled (stopping things in its cleanup) goes on.
    before = current.cancelling() if current is not None else 0
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        # The task's own end, unless the caller was cancelled while it waited
        # (a timeout around this wait): that one is the caller's to raise.
        if current is not None and current.cancelling() > before:
            raise


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
    await cancel_and_wait(task)
    waiter.cancel()
