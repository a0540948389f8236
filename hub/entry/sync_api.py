"""The manual order sync over NATS and HTTP (``hub sync orders`` is the CLI's).

``hub.cmd.sync.orders`` (NATS request/reply, queue group ``hub``) and
``POST /sync/orders`` (an operator's JWT with scope ``bindings:write``) take
``{"platform", "shop_id", "hours"?}`` and pull that shop's orders updated in
the last ``hours`` (default 24) now, as Kuaishou's manual trigger asks, and
answer the pull's report: ``{ok, shop, since, until, orders, events, refused,
failed, errors}`` (``ok`` false with ``error`` for a bad request or a shop not
in the registry). The binding's status and data scope gate the pull as they
gate the schedule's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.infra.shops import UnknownShopError
from hub.service.sync import SyncScheduler

#: The NATS subject of the manual order sync.
SUBJECT = "hub.cmd.sync.orders"
QUEUE_GROUP = "hub"


class SyncOrdersRequest(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """Pull one shop's orders now."""

    platform: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    shop_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    #: The window: orders updated in the last ``hours``.
    hours: Annotated[float, msgspec.Meta(gt=0, le=24 * 31)] = 24.0


async def sync_orders(scheduler: SyncScheduler, body: bytes) -> dict[str, Any]:
    """Decode a request, run the pull, and answer its report (never raises).

    The window ends where the schedule's would (the platform's delay before
    the scheduler's now) and starts ``hours`` before that now.
    """
    try:
        request = msgspec.json.decode(body, type=SyncOrdersRequest)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return {"ok": False, "error": {"code": "invalid_command", "message": str(exc)}}
    try:
        shop = scheduler.intake.connectors.shop(request.platform, request.shop_id)
    except UnknownShopError as exc:
        return {"ok": False, "error": {"code": "unknown_shop", "message": str(exc)}}
    report = await scheduler.sync_orders(
        shop, since=scheduler.clock() - timedelta(hours=request.hours)
    )
    answer: dict[str, Any] = msgspec.to_builtins(dataclasses.asdict(report))
    return {"ok": report.ok, **answer}


async def answer_on_nats(nats_url: str, scheduler: SyncScheduler) -> NatsClient:
    """Answer :data:`SUBJECT` until the returned connection is closed."""
    import nats

    from hub.infra.settings import nats_servers

    nc = await nats.connect(servers=nats_servers(nats_url))

    async def handle(msg: Msg) -> None:
        await msg.respond(msgspec.json.encode(await sync_orders(scheduler, msg.data)))

    await nc.subscribe(SUBJECT, queue=QUEUE_GROUP, cb=handle)
    return nc


def sync_route(
    scheduler: SyncScheduler, refused: Callable[[Request], Response | None]
) -> Route:
    """``POST /sync/orders``, behind ``refused`` (the operator's token check)."""

    async def endpoint(request: Request) -> Response:
        denied = refused(request)
        if denied is not None:
            return denied
        answer = await sync_orders(scheduler, await request.body())
        error = answer.get("error")
        status = 200
        if error is not None:
            status = 404 if error["code"] == "unknown_shop" else 400
        return JSONResponse(answer, status)

    return Route("/sync/orders", endpoint, methods=["POST"])
