"""The path every sandbox API call takes: fault, auth, idempotency, answer.

Each platform module says how it authenticates a request and how it words
its errors; :func:`handle_call` runs them in the same order for all four, so a
fault behaves the same way everywhere:

1. draw a fault; ``5xx`` answers 503 and ``rate_limit`` the platform's own
   rate-limit answer, before anything is checked or applied;
2. authenticate (signature, token) and answer the platform's error on failure;
   then take one call from the shop's API budget, if its platform has one
   (:class:`connectors.sandbox.config.ApiBudget`): beyond it the platform's
   rate-limit answer, logged with result ``over_budget``, nothing applied;
3. ``token_expired`` expires the caller's token and answers the expiry code;
4. a write whose request id was already applied answers what it answered
   then, without applying again; otherwise apply it;
5. ``timeout`` holds the (already applied) answer for ``timeout_delay_s``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)

from connectors.sandbox.state import SandboxError, SandboxState, Shop, Token
from connectors.transport import SystemClock, TokenBucket

#: The header carrying the caller's stable request id.
REQUEST_ID_HEADER = "x-request-id"

#: The request log's result of a call refused for the shop's API budget.
OVER_BUDGET = "over_budget"


def within_budget(state: SandboxState, platform: str, shop_id: str) -> bool:
    """Take one call from the shop's API budget; False when none is left.

    A platform without a budget allows every call. Each shop has its own
    bucket, full at first, on the real monotonic clock (the sandbox's clock
    offset moves token expiry, not the budget).

    Args:
        state: The sandbox state.
        platform: The platform called.
        shop_id: The shop the call is for.

    Returns:
        Whether the call is within the budget.
    """
    budget = state.budgets.get(platform)
    if budget is None:
        return True
    bucket: TokenBucket | None = state.budget_buckets.get((platform, shop_id))
    if bucket is None:
        bucket = TokenBucket(budget.rate_per_s, budget.burst, SystemClock())
        state.budget_buckets[(platform, shop_id)] = bucket
    return bucket.reserve() == 0.0


@dataclass
class Answer:
    """A platform answer: JSON body and HTTP status; ``ok`` if it succeeded."""

    body: Any
    status: int = 200
    ok: bool = True

    def response(self) -> Response:
        """As a Starlette response."""
        return JSONResponse(self.body, status_code=self.status)


@dataclass
class Dialect:
    """How one platform words rate limits and token expiry."""

    rate_limited: Callable[[str], Answer]
    token_expired: Callable[[], Answer]


#: Authentication: the shop and token, or the platform's refusal.
Authenticate = Callable[[], "tuple[Shop, Token] | Answer"]
#: The business part of a call.
Apply = Callable[[Shop], Awaitable[Answer]]


async def handle_call(
    state: SandboxState,
    platform: str,
    api: str,
    *,
    dialect: Dialect,
    authenticate: Authenticate,
    apply: Apply,
    request_id: str | None = None,
    idempotent_write: bool = False,
) -> Response:
    """Run one API call through faults, auth, idempotency and the business.

    Args:
        state: The sandbox state.
        platform: The platform called.
        api: The API's path or method name (for the log).
        dialect: The platform's ways of saying "slow down" and "expired".
        authenticate: Checks the request.
        apply: Does the work once authenticated.
        request_id: The caller's stable id (deduplicates writes).
        idempotent_write: Whether a repeated ``request_id`` must not apply twice.

    Returns:
        The HTTP response.
    """
    fault = state.draw_fault(platform)
    record = state.log_request(platform, api, request_id=request_id, fault=fault)
    if fault == "5xx":
        record["result"] = "503"
        return PlainTextResponse("sandbox: injected upstream failure", 503)
    if fault == "rate_limit":
        record["result"] = "rate_limited"
        return dialect.rate_limited(api).response()
    auth = authenticate()
    if isinstance(auth, Answer):
        record["result"] = "refused"
        return auth.response()
    shop, token = auth
    record["shop_id"] = shop.shop_id
    if not within_budget(state, platform, shop.shop_id):
        record["result"] = OVER_BUDGET
        return dialect.rate_limited(api).response()
    if fault == "token_expired":
        token.expires_at = state.now() - 1
        record["result"] = "token_expired"
        return dialect.token_expired().response()
    if idempotent_write and request_id and request_id in shop.applied:
        answer: Answer = shop.applied[request_id]
        record["result"] = "replayed"
    else:
        try:
            answer = await apply(shop)
        except SandboxError as exc:
            answer = Answer({"sandbox_error": str(exc)}, exc.status, ok=False)
        record["result"] = "ok" if answer.ok else "rejected"
        if idempotent_write and request_id and answer.ok:
            shop.applied[request_id] = answer
    if fault == "timeout":
        await asyncio.sleep(state.faults[platform].timeout_delay_s)
    return answer.response()


def redirect_with_code(target: str, code: str, state: str) -> RedirectResponse:
    """The OAuth 2.0 redirect back to the app's callback with ``code``/``state``.

    Args:
        target: The ``redirect_uri`` the app sent.
        code: The one-time authorisation code.
        state: The app's ``state``, echoed.

    Returns:
        A 302 response.
    """
    joiner = "&" if "?" in target else "?"
    return RedirectResponse(
        f"{target}{joiner}{urlencode({'code': code, 'state': state})}", 302
    )


def window(items: list[Any], offset: int, size: int) -> tuple[list[Any], int | None]:
    """One page of ``items`` and the offset of the next, if any.

    Args:
        items: Everything, in order.
        offset: Where the page starts.
        size: The page size (at least 1).

    Returns:
        The page and the next offset (None at the end).
    """
    size = max(1, size)
    page = items[offset : offset + size]
    following = offset + size
    return page, (following if following < len(items) else None)
