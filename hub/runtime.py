"""How the hub runs its event loop.

The long-running verbs (``serve`` and the scale-out workers) run on uvloop where
it is installed (Linux and macOS): its loop schedules tasks and futures at about
half the cost of the standard one, and every command, relay publish and
projection step is a handful of those. Elsewhere the standard loop is used.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on the fastest available event loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop
        return asyncio.run(main)
    return uvloop.run(main)
