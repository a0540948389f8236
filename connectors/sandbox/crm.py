"""The sandbox's CRM: receives the profiles the hub transfers (Kuaishou's mode).

``POST /crm/profiles`` checks the signature, opens the profile with the CRM
key and keeps it by reference (the same reference twice is kept once). The
control API reads the key (``GET /_sandbox/crm``, with what was received) and
makes the next calls fail (``POST /_sandbox/crm/faults {"fail_next": n}``:
answered 503).
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.crm import SIGNATURE_HEADER, CrmProtocolError, open_profile


@dataclass
class CrmState:
    """What the sandbox's CRM holds."""

    key: bytes = field(default_factory=lambda: os.urandom(32))
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    fail_next: int = 0
    calls: int = 0


def routes(crm: CrmState) -> list[Route]:
    """The CRM's route and its control routes."""

    async def receive(request: Request) -> Response:
        crm.calls += 1
        if crm.fail_next > 0:
            crm.fail_next -= 1
            return JSONResponse({"error": "crm unavailable (injected)"}, 503)
        body = await request.body()
        try:
            ref, profile = open_profile(
                crm.key, body, request.headers.get(SIGNATURE_HEADER, "")
            )
        except CrmProtocolError as exc:
            return JSONResponse({"error": str(exc)}, 401)
        crm.profiles.setdefault(ref, profile)
        return JSONResponse({"ref": ref})

    async def show(request: Request) -> Response:
        return JSONResponse(
            {
                "key": base64.b64encode(crm.key).decode(),
                "profiles": crm.profiles,
                "calls": crm.calls,
            }
        )

    async def faults(request: Request) -> Response:
        body = await request.json()
        crm.fail_next = int(body.get("fail_next", 0))
        return JSONResponse({"fail_next": crm.fail_next})

    return [
        Route("/crm/profiles", receive, methods=["POST"]),
        Route("/_sandbox/crm", show, methods=["GET"]),
        Route("/_sandbox/crm/faults", faults, methods=["POST"]),
    ]
