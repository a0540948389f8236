"""Run one command from a CLI verb: on a running hub over NATS, else here.

The write verbs (``hub bindings request/suspend/unbind``, ``hub marketing
publish``) send ``hub.cmd.<name>`` to a running ``hub serve``; when none
answers, they run the command in this process against the database (the
events reach ``HUB_EVENTS`` when a hub's relay next runs).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from hub.infra.settings import nats_servers

if TYPE_CHECKING:
    from domain.policy import PolicyBook
    from hub.infra.settings import Settings


async def _run_here(
    database_url: str,
    name: str,
    payload: bytes,
    book: PolicyBook,
    projection: str | None,
) -> bytes:
    """Run one command in this process, and bring ``projection`` up to it."""
    from hub.bootstrap import bootstrap

    hub = bootstrap(
        database_url=database_url, nats_url=None, run_relay=False, policy_book=book
    )
    await hub.start()
    try:
        reply = await hub.handle(name, payload)
        if reply.positions and projection is not None:
            await hub.projection(projection).wait_for(max(reply.positions))
    finally:
        await hub.stop()
    return msgspec.json.encode(reply)


async def run_command(
    database_url: str,
    nats_url: str,
    name: str,
    payload: bytes,
    *,
    book: PolicyBook,
    timeout: float,
    projection: str | None = None,
) -> tuple[bytes, str]:
    """Send ``name`` to a running hub, or run it here when none answers.

    Args:
        projection: A read model to bring up to the command's events when it
            runs here (a running hub keeps its own current).

    Returns:
        The reply (``CommandReply`` JSON) and how it ran: ``over NATS`` or
        ``in this process``.
    """
    import nats
    from nats.errors import NoRespondersError

    nc = await nats.connect(nats_servers(nats_url))
    try:
        msg = await nc.request(f"hub.cmd.{name}", payload, timeout=timeout)
        return bytes(msg.data), "over NATS"
    except NoRespondersError:
        pass
    finally:
        await nc.close()
    return await _run_here(database_url, name, payload, book, projection), (
        "in this process"
    )


def file_command(
    settings: Settings,
    name: str,
    file: Path,
    *,
    timeout: float,
    projection: str | None = None,
) -> tuple[dict[str, Any] | None, str]:
    """Run ``name`` with the JSON of ``file`` (``-``: stdin), from a CLI verb.

    A refusal is printed on stderr (``hub: error: NAME refused …``, with the
    code and message).

    Returns:
        The reply as JSON (None when refused) and how the command ran.
    """
    import asyncio
    import json
    import sys

    from hub.bootstrap import policy_book_of, servers

    raw = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
    book = policy_book_of(settings)
    with servers(settings, start_embedded=False) as (db, nats_url):
        answer, via = asyncio.run(
            run_command(
                db,
                nats_url,
                name,
                raw,
                book=book,
                timeout=timeout,
                projection=projection,
            )
        )
    reply: dict[str, Any] = json.loads(answer)
    if not reply.get("ok"):
        error = reply.get("error") or {}
        print(
            f"hub: error: {name} refused {via}: [{error.get('code')}] "
            f"{error.get('message')}",
            file=sys.stderr,
        )
        return None, via
    return reply, via


def fail(message: str) -> int:
    """Print ``hub: error: message`` on stderr; the verb's exit code (1)."""
    print(f"hub: error: {message}", file=sys.stderr)
    return 1
