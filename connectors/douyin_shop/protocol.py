"""Douyin Shop (抖店) open platform: request signing, push verification, tokens.

Pure functions only: no I/O, no clock.

* Requests carry ``sign`` over ``app_secret + "app_key" + app_key + "method" +
  method + "param_json" + param_json + "timestamp" + timestamp + "v" + v +
  app_secret``: HMAC-SHA256 keyed with the app secret (``sign_method=
  "hmac-sha256"``) or plain MD5 (``"md5"``), lower-case hex (:func:`sign`).
  ``param_json`` must be the canonical form (:func:`canonical_param_json`): the
  platform recomputes the signature over its own sorted serialisation.
* Pushes carry an ``event-sign`` header: MD5 hex of ``app_key + raw body +
  app_secret`` (:func:`event_sign`, :func:`verify_event_sign`).
* Access tokens live 7 days and refresh tokens 14 days; an expired refresh token
  means the shop must authorise again.
* A rate-limited call answers with code :data:`RATE_LIMIT_CODE`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import timedelta
from functools import partial
from typing import Any

from connectors.common import (
    ProtocolError,
    SignatureError,
    TokenState,
    UnsupportedSignMethodError,
    access_token_due,
    refresh_token_expired,
    require_signature,
)

__all__ = [
    "ACCESS_TOKEN_TTL_S",
    "API_VERSION",
    "EVENT_SIGN_HEADER",
    "RATE_LIMIT_CODE",
    "REFRESH_MARGIN",
    "REFRESH_TOKEN_TTL_S",
    "SIGN_METHODS",
    "ProtocolError",
    "SignatureError",
    "TokenState",
    "UnsupportedSignMethodError",
    "canonical_param_json",
    "event_sign",
    "is_rate_limited_code",
    "needs_reauthorization",
    "needs_refresh",
    "sign",
    "verify_event_sign",
]

#: The API version every signed request names (``v``).
API_VERSION = "2"
#: Signing methods the platform accepts (``sign_method``).
SIGN_METHODS: tuple[str, ...] = ("hmac-sha256", "md5")
#: The push header that carries the event signature.
EVENT_SIGN_HEADER = "event-sign"
#: Access token lifetime: 7 days.
ACCESS_TOKEN_TTL_S = 7 * 24 * 3600
#: Refresh token lifetime: 14 days.
REFRESH_TOKEN_TTL_S = 14 * 24 * 3600
#: Refresh a day early: a week-long token leaves plenty of room, and a failed
#: refresh can then be retried for hours before calls start failing.
REFRESH_MARGIN = timedelta(days=1)
#: The code of a response refused by the rate limiter.
RATE_LIMIT_CODE = 60000


def canonical_param_json(params: Mapping[str, Any]) -> str:
    """The canonical ``param_json``: keys sorted at every level, compact.

    Non-ASCII text is kept as is (not ``\\u`` escaped), as the platform
    serialises it; the result is what both :func:`sign` and the request body use.

    Args:
        params: The business parameters of the call.

    Returns:
        The JSON text.
    """
    return json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# The positional signature is fixed: operators' tooling calls it this way.
def sign(  # noqa: PLR0917
    app_key: str,
    app_secret: str,
    method: str,
    param_json: str,
    timestamp: str,
    v: str = API_VERSION,
    sign_method: str = "hmac-sha256",
) -> str:
    """The ``sign`` of an API request.

    Args:
        app_key: The app's key.
        app_secret: The app's secret.
        method: The API method, e.g. ``"order.searchList"``.
        param_json: The canonical parameter JSON (:func:`canonical_param_json`).
        timestamp: The ``timestamp`` parameter exactly as sent.
        v: The API version (``"2"``).
        sign_method: ``"hmac-sha256"`` (default) or ``"md5"``.

    Returns:
        The lower-case hex signature.

    Raises:
        UnsupportedSignMethodError: If ``sign_method`` is neither.
    """
    pattern = (
        f"{app_secret}app_key{app_key}method{method}param_json{param_json}"
        f"timestamp{timestamp}v{v}{app_secret}"
    ).encode()
    if sign_method == "hmac-sha256":
        return hmac.new(app_secret.encode(), pattern, hashlib.sha256).hexdigest()
    if sign_method == "md5":
        return hashlib.md5(pattern).hexdigest()
    raise UnsupportedSignMethodError(
        f"sign_method {sign_method!r} is not one of {', '.join(SIGN_METHODS)}"
    )


def event_sign(app_key: str, body: bytes, app_secret: str) -> str:
    """The ``event-sign`` of a push: MD5 hex of app_key + raw body + app_secret.

    Args:
        app_key: The app's key.
        body: The request body exactly as received (do not re-serialise).
        app_secret: The app's secret.

    Returns:
        The lower-case hex MD5.
    """
    return hashlib.md5(app_key.encode() + body + app_secret.encode()).hexdigest()


def verify_event_sign(
    app_key: str, body: bytes, app_secret: str, received: str
) -> None:
    """Check a push's ``event-sign`` header in constant time.

    Args:
        app_key: The app's key.
        body: The request body exactly as received.
        app_secret: The app's secret.
        received: The ``event-sign`` header value.

    Raises:
        SignatureError: If it does not match.
    """
    require_signature(
        event_sign(app_key, body, app_secret),
        received,
        what="Douyin event-sign header",
        ignore_case=True,
    )


#: Whether to refresh the access token now: ``needs_refresh(token_state, now)``
#: is True when it expires within :data:`REFRESH_MARGIN` or already has.
needs_refresh = partial(access_token_due, margin=REFRESH_MARGIN)
#: Whether the refresh token is gone, so the merchant must authorise again:
#: ``needs_reauthorization(token_state, now)`` is True when there is none or
#: its 14 days are over.
needs_reauthorization = refresh_token_expired


def is_rate_limited_code(code: int | str) -> bool:
    """Whether a response ``code`` says the rate limit was hit.

    Args:
        code: The ``code`` (or ``err_no``) of a response.

    Returns:
        True for :data:`RATE_LIMIT_CODE`.
    """
    return str(code) == str(RATE_LIMIT_CODE)


# --------------------------------------------------------------------------- codes
# Answer codes of the open platform gateway (op.jinritemai.com "平台基础错误码"):
# success is 10000; 40003 with a sub_code covers signature and token problems.

#: ``code`` of a successful call.
SUCCESS_CODE = 10000
#: ``code`` of a refused parameter, signature or token.
INVALID_PARAMETER_CODE = 40003
#: ``sub_code`` of a bad signature.
SIGNATURE_INVALID_SUB_CODE = "isv.signature-invalid"
#: ``sub_code`` values meaning "refresh the access token and retry".
TOKEN_EXPIRED_SUB_CODES: frozenset[str] = frozenset(
    {"isv.access-token-expired", "isv.access-token-no-existed"}
)
#: ``code`` of a business failure (stock short, order not found ...).
BUSINESS_FAILED_CODE = 50002


def is_token_expired(code: int | str, sub_code: str | None) -> bool:
    """Whether an answer means the access token must be refreshed.

    Args:
        code: The answer's ``code``.
        sub_code: The answer's ``sub_code``.

    Returns:
        True for 40003 with an expired or unknown token.
    """
    return str(code) == str(INVALID_PARAMETER_CODE) and sub_code in (
        TOKEN_EXPIRED_SUB_CODES
    )
