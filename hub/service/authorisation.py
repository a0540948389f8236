"""Binding authorisation: run the platform's route, then record the grant.

Each platform authorises a binding its own way (docs/domain.md §2): WeChat Shop by the
shop's own appid and secret (WeChat internal authorisation), Douyin Shop by the
app's API key (self-use grant), Kuaishou Shop and Youzan by the OAuth 2.0
authorisation-code flow. The route is chosen by the profile's
``binding_route.kind`` (data in the policy book), run through the platform's
connector client, and its outcome is recorded as ``binding.authorise`` with a
non-secret ``grant_ref`` (token fingerprint and expiry), so history shows what
authorised the binding while the token itself stays in the token store.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from connectors.common import TokenState

#: Given the consent URL, return the ``code`` of the callback (the merchant's
#: browser in production; the sandbox's redirect in tests).
Consent = Callable[[str], Awaitable[str]]


class AuthorisationError(RuntimeError):
    """The route did not produce a grant; the message says which step failed."""


def grant_ref(state: TokenState) -> str:
    """A non-secret reference to a grant: token fingerprint and expiry."""
    digest = hashlib.sha256(state.access_token.encode()).hexdigest()[:16]
    return f"sha256:{digest} until {state.access_expires_at.isoformat()}"


async def follow_redirect(url: str, *, http: httpx.AsyncClient | None = None) -> str:
    """Consent by following ``url`` once and reading ``code`` from the redirect.

    Raises:
        AuthorisationError: no redirect, or a redirect without ``code``.
    """
    owned = http is None
    client = http or httpx.AsyncClient(timeout=10)
    try:
        answer = await client.get(url, follow_redirects=False)
    finally:
        if owned:
            await client.aclose()
    location = answer.headers.get("location")
    if answer.status_code not in {301, 302, 303, 307} or not location:
        raise AuthorisationError(
            f"consent at {urlsplit(url).path} answered {answer.status_code}, "
            "not a redirect with a code"
        )
    codes = parse_qs(urlsplit(location).query).get("code")
    if not codes:
        raise AuthorisationError(f"the consent redirect carries no code: {location}")
    return str(codes[0])


async def run_route(
    route_kind: str,
    client: Any,
    shop_id: str,
    *,
    credentials: Any = None,
    consent: Consent | None = None,
    redirect_uri: str = "https://hub.invalid/oauth/callback",
) -> TokenState:
    """Run one binding route against the platform; return the grant.

    Args:
        route_kind: ``binding_route.kind`` of the platform's profile.
        client: the platform's connector client.
        shop_id: the shop being bound.
        credentials: the shop's own app credentials (WeChat internal route).
        consent: how the merchant consents (OAuth 2.0 routes).
        redirect_uri: the hub's OAuth callback.

    Raises:
        AuthorisationError: an unknown route, or a missing input of the route.
    """
    if route_kind == "wechat_internal_authorisation":
        if credentials is None:
            raise AuthorisationError("wechat_shop: the shop's appid/secret are needed")
        state: TokenState = await client.authorise(shop_id, credentials)
        return state
    if route_kind == "douyin_api_key":
        state = await client.authorise(shop_id)
        assert isinstance(state, TokenState)
        return state
    if route_kind in {"kuaishou_oauth2", "youzan_oauth2"}:
        if consent is None:
            raise AuthorisationError(f"{route_kind}: a consent step is needed")
        anti_forgery = secrets.token_urlsafe(12)
        code = await consent(client.authorize_url(redirect_uri, anti_forgery))
        if route_kind == "youzan_oauth2":
            state = await client.exchange_code(shop_id, code, redirect_uri)
        else:
            state = await client.exchange_code(shop_id, code)
        return state
    raise AuthorisationError(f"no authorisation route {route_kind!r} is known")
