"""Binding routes over HTTP: start a shop's route, and the OAuth callback.

``POST /bindings/{platform}/{shop_id}/connect`` (an operator's JWT with scope
``bindings:write``; optional JSON body ``{"mapped_data": [...]}``) runs the
shop's route: it answers the active binding for a platform whose grant the hub
obtains alone, or ``consent_needed`` with the platform's consent URL for an
OAuth 2.0 code flow. ``GET /oauth/{platform}/callback?code&state`` is where
the platform sends the merchant's browser back: the state must be one this hub
issued for that platform, unused and unexpired, and the code is exchanged
once. Nothing here spells a platform: :class:`hub.service.authorisation.
BindingRoutes` asks the connector registry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.common import PlatformCallError
from connectors.registry import UnknownPlatformError
from domain.binding import DataKind
from domain.events import DomainError
from hub.entry.bearer import bearer_refusal
from hub.entry.sync_api import sync_route
from hub.infra.oauth_states import OAuthStateError
from hub.infra.shops import UnknownShopError
from hub.service.authorisation import AuthorisationError, BindingRoutes
from hub.service.sync import SyncScheduler

#: The JWT scope that may start a binding route.
BINDINGS_WRITE = "bindings:write"


class ConnectRequest(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """The body of a connect request (all optional)."""

    mapped_data: tuple[DataKind, ...] = ()


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": code, "message": message}, status)


def bindings_app(
    routes: BindingRoutes,
    *,
    scheduler: SyncScheduler | None = None,
    key: bytes | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Starlette:
    """The binding-route endpoints over ``routes``.

    Args:
        routes: Runs the routes.
        scheduler: Pulls orders for ``POST /sync/orders`` (None: not served).
        key: The JWT signing key (default: ``HUB_JWT_KEY`` read per request).
        clock: Now, for token expiry.
    """

    def refused(request: Request) -> Response | None:
        return bearer_refusal(
            request.headers.get("authorization"),
            key=key,
            scope=BINDINGS_WRITE,
            now=clock(),
        )

    async def connect(request: Request) -> Response:
        denied = refused(request)
        if denied is not None:
            return denied
        body = await request.body()
        try:
            asked = (
                msgspec.json.decode(body, type=ConnectRequest)
                if body.strip()
                else ConnectRequest()
            )
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return _error(400, "invalid_request", str(exc))
        try:
            connection = await routes.connect(
                request.path_params["platform"],
                request.path_params["shop_id"],
                mapped_data=asked.mapped_data,
            )
        except (UnknownShopError, UnknownPlatformError) as exc:
            return _error(404, "unknown_shop", str(exc))
        except (AuthorisationError, DomainError) as exc:
            return _error(409, "not_ready", str(exc))
        except PlatformCallError as exc:
            return _error(502, "platform_refused", str(exc))
        return JSONResponse({"ok": True, **dataclasses.asdict(connection)})

    async def callback(request: Request) -> Response:
        platform = request.path_params["platform"]
        state = request.query_params.get("state", "")
        code = request.query_params.get("code", "")
        if not state or not code:
            return _error(400, "invalid_callback", "the callback needs state and code")
        try:
            connection = await routes.callback(platform, state, code)
        except OAuthStateError as exc:
            return _error(400, f"state_{exc.reason}", str(exc))
        except (UnknownShopError, UnknownPlatformError) as exc:
            return _error(404, "unknown_shop", str(exc))
        except PlatformCallError as exc:
            return _error(400, "code_refused", str(exc))
        except DomainError as exc:
            return _error(409, "not_ready", str(exc))
        return JSONResponse({"ok": True, **dataclasses.asdict(connection)})

    served = [
        Route("/bindings/{platform}/{shop_id}/connect", connect, methods=["POST"]),
        Route("/oauth/{platform}/callback", callback, methods=["GET"]),
    ]
    if scheduler is not None:
        served.append(sync_route(scheduler, refused))
    return Starlette(routes=served)
