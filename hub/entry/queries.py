"""Replay reads over NATS request/reply, for tools: ``hub.query.<name>``.

``hub.query.history`` and ``hub.query.trace`` take ``{"ref": REF}`` and
``hub.query.state`` ``{"ref": REF, "at": POSITION|TIME}``; REF is an
aggregate id or an outside key (:func:`hub.service.replay.resolve`). Each
replies a :class:`QueryReply`: ``{"ok": true, "result": ...}`` with the
same JSON as the CLI's ``--json``, or ``{"ok": false, "error": {"code",
"message"}}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from faststream.nats import NatsBroker, NatsMessage

from hub.messages import ErrorInfo
from hub.service import replay
from hub.service.hub import Hub

QUEUE_GROUP = "hub"
SUBJECT_PREFIX = "hub.query"


class QueryRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A replay read: the aggregate (id or outside key) and, for ``state``, when."""

    ref: str
    at: str | None = None


class QueryReply(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Reply to every ``hub.query.*`` request."""

    ok: bool
    result: Any = None
    error: ErrorInfo | None = None


_decode_request = msgspec.json.Decoder(QueryRequest).decode
_encode = msgspec.json.Encoder().encode

Read = Callable[[str, QueryRequest], Awaitable[Any]]


async def _history(database_url: str, request: QueryRequest) -> Any:
    return await replay.history(database_url, request.ref)


async def _state(database_url: str, request: QueryRequest) -> Any:
    if request.at is None:
        raise replay.ReplayError("state: 'at' (a log position or a time) is required")
    return await replay.state_at(database_url, request.ref, request.at)


async def _trace(database_url: str, request: QueryRequest) -> Any:
    return await replay.trace(database_url, request.ref)


#: Each query: its name and what it reads.
QUERIES: dict[str, tuple[Read, str]] = {
    "history": (_history, "Every event of one aggregate, oldest first."),
    "state": (_state, "One aggregate as it was at a log position or a time."),
    "trace": (_trace, "Every event caused by the inputs behind one aggregate."),
}


async def answer(database_url: str, name: str, payload: bytes) -> QueryReply:
    """Decode and run query ``name``; never raises for bad input."""
    read, _ = QUERIES[name]
    try:
        request = _decode_request(payload)
        result = await read(database_url, request)
    except msgspec.DecodeError as exc:
        return QueryReply(ok=False, error=ErrorInfo(code="invalid", message=str(exc)))
    except replay.ReplayError as exc:
        return QueryReply(ok=False, error=ErrorInfo(code="not_found", message=str(exc)))
    return QueryReply(ok=True, result=result)


def add_queries(broker: NatsBroker, hub: Hub | None) -> None:
    """Serve every query of :data:`QUERIES` on ``hub.query.<name>``."""
    for name, (_, summary) in QUERIES.items():
        _subscribe(broker, name, summary, hub)


def _subscribe(broker: NatsBroker, name: str, summary: str, hub: Hub | None) -> None:
    async def handler(msg: NatsMessage) -> bytes:
        assert hub is not None, "a documentation-only broker serves nothing"
        return _encode(await answer(hub.database_url, name, msg.body))

    handler.__name__ = "query_" + name
    subject = f"{SUBJECT_PREFIX}.{name}"
    broker.subscriber(
        subject,
        queue=QUEUE_GROUP,
        title=subject,
        description=summary + " Request: QueryRequest; reply: QueryReply (JSON).",
    )(handler)
