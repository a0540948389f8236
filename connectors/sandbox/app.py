"""The sandbox ASGI application: four platforms, a CRM and the control API."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from connectors.http import HttpClient
from connectors.sandbox import (
    control,
    crm,
    douyin,
    kuaishou,
    products,
    wechat,
    youzan,
)
from connectors.sandbox.config import SandboxConfig
from connectors.sandbox.crowd import Crowds
from connectors.sandbox.pushes import PushSender
from connectors.sandbox.state import SandboxState


async def _gone(request: Request, exc: Exception) -> Response:
    """The answer to a client that is no longer there (never delivered)."""
    return Response(status_code=499)


def create_app(config: SandboxConfig | None = None) -> Starlette:
    """Build the sandbox application.

    The platforms' paths do not collide, so one server answers all four (point
    each client's ``base_url`` at it). ``app.state.sandbox`` is the
    :class:`SandboxState`; pushes are sent with an HTTP client opened by the
    app's lifespan. ``app.state.crowds`` holds the crowd of buyers, stopped
    when the app shuts down.

    Args:
        config: The configuration; defaults when None.

    Returns:
        The Starlette app.
    """
    config = config or SandboxConfig()
    state = SandboxState(config)
    http = HttpClient(timeout=config.push_timeout_s)
    pushes = PushSender(state, http)
    crowds = Crowds(state, pushes)
    crm_state = crm.CrmState()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            try:
                await crowds.forget()
            finally:
                await http.aclose()

    app = Starlette(
        routes=[
            *products.control_routes(state),
            *control.routes(state, pushes, crowds),
            *wechat.routes(state, pushes),
            *douyin.routes(state, pushes),
            *kuaishou.routes(state, pushes),
            *youzan.routes(state, pushes),
            *crm.routes(crm_state),
        ],
        lifespan=lifespan,
        # A client that gives up on a call mid-request (a timeout, or a slow
        # answer abandoned and sent again) is no error of the platform's.
        exception_handlers={ClientDisconnect: _gone},
    )
    app.state.sandbox = state
    app.state.pushes = pushes
    app.state.crowds = crowds
    app.state.crm = crm_state
    return app
