"""``GET /health``: the state of every supervised task of the running hub.

Served by ``hub serve`` on ``HUB_HTTP_PORT`` (beside the webhooks when shops
are configured). The answer is 200 when every task is running and 503 when
one is retrying or has failed, with each task's state, since when, its last
error and how often it failed, so a load balancer, a supervisor or
``hub status`` can tell a hub that heals from one that does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from eventlog.supervision import Supervisor, TaskHealth

HEALTH_PATH = "/health"


class TaskReport(msgspec.Struct, frozen=True, kw_only=True):
    """One task in ``/health`` and ``hub status --json``."""

    name: str
    state: str
    since: str
    last_error: str | None = None
    failures: int = 0


class HealthReport(msgspec.Struct, frozen=True, kw_only=True):
    """The body of ``/health``: ``ok`` when every task is running."""

    ok: bool
    tasks: list[TaskReport]


def health_report(tasks: Sequence[TaskHealth]) -> HealthReport:
    """The report of ``tasks``."""
    reports = [
        TaskReport(
            name=t.name,
            state=t.state,
            since=t.since.isoformat(),
            last_error=t.last_error,
            failures=t.failures,
        )
        for t in tasks
    ]
    return HealthReport(ok=all(t.state == "running" for t in tasks), tasks=reports)


_encode = msgspec.json.Encoder().encode
decode_health = msgspec.json.Decoder(HealthReport).decode


def health_app(supervisor: Supervisor, webhooks: Any = None) -> Starlette:
    """An app answering ``/health`` from ``supervisor``, and everything else
    from ``webhooks`` (an ASGI app) when given."""

    async def health(request: Request) -> Response:
        report = health_report(supervisor.health())
        return Response(
            _encode(report),
            status_code=200 if report.ok else 503,
            media_type="application/json",
        )

    routes: list[BaseRoute] = [Route(HEALTH_PATH, health, methods=["GET"])]
    if webhooks is not None:
        routes.append(Mount("/", app=webhooks))
    return Starlette(routes=routes)
