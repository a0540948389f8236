"""Binding authorisation: run the platform's route, record the grant, activate.

Each platform authorises a binding its own way (docs/domain.md §2): WeChat Shop
by the shop's own appid and secret, Douyin Shop by the app's self-use grant,
Kuaishou Shop and Youzan by the OAuth 2.0 authorisation-code flow. The hub does
not branch on the platform: it asks the connector registry whether the platform
has a code flow (``exchange_code`` and ``consent_url``) or a grant it can
obtain alone (``first_grant``).

:class:`BindingRoutes` runs the route for a shop of the connectors registry
whose binding has met its requirements. A grant obtained alone is recorded at
once; a code flow answers the consent URL, with a state the hub issued
(:mod:`hub.infra.oauth_states`), and the platform sends the merchant's browser
back to ``GET /oauth/{platform}/callback``, where :meth:`BindingRoutes.callback`
takes the state once and exchanges the code once. Either way the tokens go to
the connectors' token store (sealed under the master key in ``hub serve``), the
binding gets ``GrantObtained`` (a non-secret ``grant_ref``: token fingerprint
and expiry), then ``binding.authorise`` naming that grant, then
``binding.activate``. An authorisation naming any other grant is refused by
the binding itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from connectors.common import TokenState
from connectors.registry import connector
from domain import binding
from hub.infra.oauth_states import OAuthStates, PendingConsent
from hub.infra.shops import Connectors, ShopConfig
from hub.service.hub import Hub


class AuthorisationError(RuntimeError):
    """The route cannot run or did not produce a grant; says which step."""


def grant_ref(state: TokenState) -> str:
    """A non-secret reference to a grant: token fingerprint and expiry."""
    digest = hashlib.sha256(state.access_token.encode()).hexdigest()[:16]
    return f"sha256:{digest} until {state.access_expires_at.isoformat()}"


@dataclass(frozen=True)
class Connection:
    """Where a binding route stands.

    Attributes:
        platform: The shop's platform.
        shop_id: The shop.
        channel_account: The binding's channel account.
        status: ``active`` (the grant is recorded and the binding works) or
            ``consent_needed`` (send the merchant to ``consent_url``).
        consent_url: The platform's consent page, for a code flow.
        grant_ref: The grant's non-secret reference, once obtained.
        binding: The binding's public state, once active.
    """

    platform: str
    shop_id: str
    channel_account: str
    status: str
    consent_url: str | None = None
    grant_ref: str | None = None
    binding: dict[str, Any] | None = None


class BindingRoutes:
    """Run binding routes for the shops of a connectors registry.

    Args:
        hub: Records the grant, the authorisation and the activation.
        connectors: The shops, their clients and the token store.
        states: Issues and takes the OAuth state parameters.
        callback_url: The hub's OAuth callback URL of a platform (what the
            platform redirects the merchant's browser to).
    """

    def __init__(
        self,
        hub: Hub,
        connectors: Connectors,
        states: OAuthStates,
        *,
        callback_url: Callable[[str], str],
    ) -> None:
        self.hub = hub
        self.connectors = connectors
        self.states = states
        self.callback_url = callback_url

    async def connect(
        self, platform: str, shop_id: str, *, mapped_data: Sequence[str] = ()
    ) -> Connection:
        """Start (or, without a consent step, run) the route of one shop.

        Raises:
            hub.infra.shops.UnknownShopError: the shop is not in the registry.
            AuthorisationError: the binding is not ready to be authorised.
            connectors.common.PlatformCallError: the platform refused the grant.
        """
        shop = self.connectors.shop(platform, shop_id)
        await self._check_ready(shop)
        entry = connector(platform)
        client = self.connectors.client(shop)
        if entry.exchange_code is not None and entry.consent_url is not None:
            redirect_uri = self.callback_url(platform)
            state = await self.states.issue(
                PendingConsent(
                    platform=platform,
                    shop_id=shop_id,
                    channel_account=shop.channel_account,
                    redirect_uri=redirect_uri,
                    mapped_data=list(mapped_data),
                )
            )
            return Connection(
                platform=platform,
                shop_id=shop_id,
                channel_account=shop.channel_account,
                status="consent_needed",
                consent_url=entry.consent_url(client, redirect_uri, state),
            )
        if entry.first_grant is None:
            raise AuthorisationError(
                f"{platform} has neither a code flow nor a grant the hub can obtain"
            )
        grant = await entry.first_grant(client, shop.credentials, shop_id)
        return await self._authorise(shop, grant, mapped_data)

    async def callback(self, platform: str, state: str, code: str) -> Connection:
        """Finish a code flow: take ``state`` once, exchange ``code`` once.

        Raises:
            hub.infra.oauth_states.OAuthStateError: a state this hub did not
                issue for ``platform``, used already, or expired (the code is
                not exchanged).
            connectors.common.PlatformCallError: the platform refused the code
                (used already, or not its own).
        """
        consent = await self.states.take(platform, state)
        shop = self.connectors.shop(platform, consent.shop_id)
        grant = await self.connectors.exchange_code(shop, code, consent.redirect_uri)
        return await self._authorise(shop, grant, consent.mapped_data)

    async def _check_ready(self, shop: ShopConfig) -> None:
        rules = self.hub.rules["binding.authorise"]
        binding_id = binding.binding_id(
            shop.channel_account, shop.platform, shop.shop_id
        )
        state = await self.hub.committer.latest(rules, binding_id)
        status = "not requested" if state is None else state.status
        if status != "requirements_met":
            raise AuthorisationError(
                f"binding {shop.platform}/{shop.shop_id} of {shop.channel_account} "
                f"is {status}: only a binding whose requirements are met runs its "
                "route"
            )

    async def _authorise(
        self, shop: ShopConfig, grant: TokenState, mapped_data: Sequence[str]
    ) -> Connection:
        return await authorise_on_grant(
            self.hub,
            channel_account=shop.channel_account,
            platform=shop.platform,
            shop_id=shop.shop_id,
            grant=grant,
            mapped_data=mapped_data,
        )


async def authorise_on_grant(
    hub: Hub,
    *,
    channel_account: str,
    platform: str,
    shop_id: str,
    grant: TokenState,
    mapped_data: Sequence[str] = (),
) -> Connection:
    """The route's last step, once the platform gave the hub ``grant``.

    Records ``GrantObtained`` for the binding, authorises it naming that
    grant, and activates it. Only the hub's own route (:class:`BindingRoutes`)
    calls this in production; a test without a platform calls it with the
    grant a platform would have answered.

    Raises:
        domain.events.DomainError: the binding refused a step (not ready, or
            mapped data its scope does not take).
    """
    keys = {
        "channel_account": channel_account,
        "platform": platform,
        "shop_id": shop_id,
    }
    ref = grant_ref(grant)
    rules = hub.rules["binding.authorise"]
    await hub.committer.execute(rules, binding.RecordGrant(**keys, grant_ref=ref))
    await hub.execute(
        "binding.authorise",
        binding.Authorise(
            **keys,
            grant_ref=ref,
            mapped_data=tuple(mapped_data),  # type: ignore[arg-type]
        ),
    )
    outcome = await hub.execute("binding.activate", binding.Activate(**keys))
    state = outcome.state
    return Connection(
        platform=platform,
        shop_id=shop_id,
        channel_account=channel_account,
        status=state.status if state is not None else "unknown",
        grant_ref=ref,
        binding={"status": state.status, "version": state.version}
        if state is not None
        else None,
    )


async def follow_redirect(url: str, *, http: httpx.AsyncClient | None = None) -> str:
    """Consent by following ``url`` once; the redirect's location.

    Stands in for the merchant's browser on a consent page that approves at
    once (the sandbox's).

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
    if not parse_qs(urlsplit(location).query).get("code"):
        raise AuthorisationError(f"the consent redirect carries no code: {location}")
    return str(location)
