"""The operator's bearer token at the HTTP doors: one check for every API.

A request must carry ``Authorization: Bearer <JWT>`` signed with
``HUB_JWT_KEY`` (:mod:`hub.infra.access_tokens`) holding the endpoint's
scope. The refusal is JSON ``{"error": {"code", "reason"}}``: 503
``not_configured`` without a key, 401 ``unauthorized`` (with
``WWW-Authenticate``) for a missing, malformed, expired or mis-signed token,
403 ``forbidden`` for a token without the scope.
"""

from __future__ import annotations

from datetime import datetime

from starlette.responses import JSONResponse, Response

from hub.infra.access_tokens import (
    AccessKeyError,
    TokenRejectedError,
    signing_key,
    verify,
)


def error(status: int, code: str, reason: str) -> JSONResponse:
    """A JSON refusal ``{"error": {"code", "reason"}}``."""
    return JSONResponse({"error": {"code": code, "reason": reason}}, status_code=status)


def bearer_refusal(
    authorization: str | None, *, key: bytes | None, scope: str, now: datetime
) -> Response | None:
    """The refusal of a request with this ``Authorization``, or None to serve it.

    Args:
        authorization: The request's ``Authorization`` header.
        key: The JWT signing key (None: ``HUB_JWT_KEY``, read now).
        scope: The scope the endpoint needs.
        now: For the token's expiry.
    """
    try:
        secret = key if key is not None else signing_key()
    except AccessKeyError as exc:
        return error(503, "not_configured", str(exc))
    try:
        verify(authorization, secret, scope=scope, now=now)
    except TokenRejectedError as exc:
        code = "forbidden" if exc.status == 403 else "unauthorized"
        response = error(exc.status, code, exc.reason)
        if exc.status == 401:
            reason = exc.reason.replace('"', "'")
            response.headers["WWW-Authenticate"] = (
                f'Bearer error="invalid_token", error_description="{reason}"'
            )
        return response
    return None
