"""The NATS entry point: request/reply commands on ``hub.cmd.<name>`` (FastStream).

Each command subject is served by a queue group (``hub``), so several hub
processes share the requests. A handler is thin: hand the raw payload to
:meth:`hub.bootstrap.Hub.handle` and reply with its :class:`CommandReply`.
The same broker object describes the events stream for the AsyncAPI document.
"""

from __future__ import annotations

from typing import Any

import msgspec
from faststream import FastStream
from faststream.nats import NatsBroker, NatsMessage
from faststream.specification import AsyncAPI

from hub.entry.queries import QueryReply, QueryRequest, add_queries
from hub.infra.settings import nats_servers
from hub.messages import STREAM, EventMessage
from hub.service.commands import COMMANDS
from hub.service.hub import Hub

QUEUE_GROUP = "hub"
HANDLER_CONCURRENCY = 512
EVENTS_SUBJECT = "hub.events.{aggregate}.{event_type}.{platform}"

_encode = msgspec.json.Encoder().encode


def build_broker(nats_url: str, hub: Hub | None) -> NatsBroker:
    """A FastStream broker serving every command of :data:`COMMANDS`.

    With ``hub=None`` the broker only describes the API (for ``hub docs``).
    """
    # Reconnect for ever (the default gives up after two minutes, leaving a
    # hub that answers nothing until restarted by hand).
    broker = NatsBroker(
        nats_servers(nats_url),
        logger=None,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
    )
    for spec in COMMANDS.values():
        _subscribe(broker, spec.name, spec.subject, spec.summary, hub)
    add_queries(broker, hub)
    broker.publisher(
        EVENTS_SUBJECT,
        title=STREAM,
        description=(
            "Every event of the hub's log, in log order, exactly once, on JetStream "
            f"stream {STREAM}. Headers: Nats-Msg-Id (event id), Hub-Aggregate-Id, "
            "Hub-Aggregate-Type, Hub-Aggregate-Version, Hub-Position, "
            "Hub-Event-Type, Hub-Schema-Version, Hub-Correlation-Id (the input the "
            "event descends from), Hub-Causation-Id (the event that called for "
            "it). Platform is '_' when none."
        ),
        schema=dict[str, Any],
    )
    return broker


def _subscribe(
    broker: NatsBroker, name: str, subject: str, summary: str, hub: Hub | None
) -> None:
    async def handler(msg: NatsMessage) -> bytes:
        assert hub is not None, "a documentation-only broker serves nothing"
        reply = await hub.handle(name, msg.body)
        return _encode(reply)

    handler.__name__ = "cmd_" + name.replace(".", "_")
    broker.subscriber(
        subject,
        queue=QUEUE_GROUP,
        title=subject,
        description=summary + " Reply: CommandReply (JSON).",
        max_workers=HANDLER_CONCURRENCY,
    )(handler)


def asyncapi_document(nats_url: str = "nats://127.0.0.1:4222") -> dict[str, Any]:
    """The AsyncAPI 3.0 document of everything the hub answers and publishes.

    FastStream generates channels and operations; the message payloads are
    replaced by the JSON Schemas of the msgspec structs actually on the wire.
    """
    broker = build_broker(nats_url, hub=None)
    app = FastStream(
        broker,
        specification=AsyncAPI(
            title="hub",
            version="1",
            description=(
                "Event-sourced integration hub: commands over NATS request/reply "
                "and the HUB_EVENTS JetStream stream."
            ),
        ),
    )
    assert app.schema is not None
    document: dict[str, Any] = msgspec.json.decode(
        app.schema.to_specification().to_json()
    )
    structs: list[Any] = [spec.type for spec in COMMANDS.values()]
    from hub.messages import PAYLOADS, CommandReply

    structs += [CommandReply, EventMessage, QueryRequest, QueryReply]
    structs += PAYLOADS.values()
    _, components = msgspec.json.schema_components(
        structs, ref_template="#/components/schemas/{name}"
    )
    document.setdefault("components", {}).setdefault("schemas", {}).update(components)
    messages = document["components"].setdefault("messages", {})
    for key, message in messages.items():
        for spec in COMMANDS.values():
            if key.startswith(spec.subject.replace(".", ":")) or spec.subject in key:
                message["payload"] = {
                    "$ref": f"#/components/schemas/{spec.type.__name__}"
                }
        if "hub.query" in key or "hub:query" in key:
            message["payload"] = {"$ref": "#/components/schemas/QueryRequest"}
        if "hub.events" in key or STREAM in key:
            message["payload"] = {"$ref": "#/components/schemas/EventMessage"}
    document["components"]["schemas"]["CommandReply"] = components["CommandReply"]
    return document
