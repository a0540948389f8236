"""The connectors registry: every shop the hub talks to, and its clients.

The registry is data, read once at start from ``HUB_CONNECTORS_FILE`` (JSON,
:class:`ConnectorsConfig`; see ``docs/connectors.md``): for each shop its
platform, the channel account whose binding it belongs to, the credentials its
pushes are verified with and its API calls signed with, and its listings (which
platform SKU shows which hub SKU, with the allocation rule of that channel).

From it the registry builds one connector client per shop, lazily, with the
platform's sync policy from the policy book and the options the composition
root passes (clock, sleep, jitter, HTTP client, token store), and answers
the questions the webhooks, the order sync and the outbound dispatcher ask:
which shop sent this push, which hub SKU is this platform SKU, where is this
hub SKU listed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import msgspec

from connectors.common import ShopClient, TokenState
from connectors.registry import CONNECTORS, connector
from connectors.transport import MemoryTokenStore, TokenStore
from domain.allocation import LIST_ALL, AllocationRule
from domain.policy import SyncPolicy

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class ConnectorsConfigError(ValueError):
    """The connectors file is unusable; the message names the file and field."""


class UnknownShopError(LookupError):
    """No shop of the registry matches (platform, shop id)."""


class Listing(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One hub SKU listed in one shop: its platform ids and allocation rule."""

    hub_sku: Text
    platform_sku_id: Text
    product_id: Text
    rule: AllocationRule = LIST_ALL


class SeededToken(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """A token obtained outside the hub (an OAuth consent done by hand)."""

    access_token: Text
    access_expires_at: datetime
    refresh_token: str | None = None
    refresh_expires_at: datetime | None = None


class ShopConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One shop: its keys, credentials and listings.

    ``channel_account`` names the binding (with platform and shop id) whose
    status and data scope gate every pull and push.
    """

    platform: Text
    shop_id: Text
    channel_account: Text
    credentials: dict[str, str] = {}
    listings: tuple[Listing, ...] = ()
    token: SeededToken | None = None
    base_url: str | None = None

    @property
    def key(self) -> str:
        """``platform/shop_id``: the channel key allocation rules are keyed by."""
        return f"{self.platform}/{self.shop_id}"

    def listing_map(self) -> dict[str, str]:
        """Platform SKU id → hub SKU, for mapping order lines."""
        return {ls.platform_sku_id: ls.hub_sku for ls in self.listings}


class ConnectorsConfig(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """The whole registry file: API roots by platform, and the shops."""

    base_urls: dict[str, str] = {}
    shops: tuple[ShopConfig, ...] = ()

    def __post_init__(self) -> None:
        """Refuse unknown platforms, missing credentials and duplicate shops."""
        seen: set[tuple[str, str]] = set()
        for index, shop in enumerate(self.shops):
            where = f"shops[{index}] ({shop.platform}/{shop.shop_id})"
            platform = CONNECTORS.get(shop.platform)
            if platform is None:
                raise ValueError(
                    f"{where}: platform {shop.platform!r} has no connector; known: "
                    f"{', '.join(CONNECTORS)}"
                )
            required = platform.credentials
            missing = [name for name in required if not shop.credentials.get(name)]
            if missing:
                raise ValueError(
                    f"{where}: credentials lack {', '.join(missing)} "
                    f"({shop.platform} needs {', '.join(required)})"
                )
            if (shop.platform, shop.shop_id) in seen:
                raise ValueError(f"{where}: the shop is listed twice")
            seen.add((shop.platform, shop.shop_id))
            skus = [ls.platform_sku_id for ls in shop.listings]
            if len(set(skus)) != len(skus):
                raise ValueError(f"{where}: a platform_sku_id is listed twice")


def load_connectors_config(path: Path | None) -> ConnectorsConfig:
    """Read and check the connectors file (no file: an empty registry).

    Raises:
        ConnectorsConfigError: unreadable, not JSON, or a field breaks a rule;
            the message names the file and the field.
    """
    if path is None:
        return ConnectorsConfig()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConnectorsConfigError(
            f"HUB_CONNECTORS_FILE={path}: cannot read it ({exc.strerror or exc})"
        ) from None
    try:
        return msgspec.json.decode(raw, type=ConnectorsConfig)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ConnectorsConfigError(f"HUB_CONNECTORS_FILE={path}: {exc}") from None


class Connectors:
    """The shops of a :class:`ConnectorsConfig` and one client per shop.

    Args:
        config: The registry data.
        policies: Each platform's sync policy from the policy book; every
            shop's client obeys its platform's (rate limit, retries).
        token_store: Where every client keeps tokens (in memory by default;
            the hub may pass a persistent one).
        client_options: Passed to every client (``clock``, ``sleep``,
            ``jitter``, ``http``, ``timeout_s``); tests make time fake here.

    Raises:
        ConnectorsConfigError: a shop's platform has no sync policy in the book.
    """

    def __init__(
        self,
        config: ConnectorsConfig,
        *,
        policies: Mapping[str, SyncPolicy],
        token_store: TokenStore | None = None,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        for index, shop in enumerate(config.shops):
            if shop.platform not in policies:
                raise ConnectorsConfigError(
                    f"shops[{index}] ({shop.key}): the policy book has no sync "
                    f"policy for {shop.platform} ($.profiles.{shop.platform}.sync "
                    "is needed to talk to its shops)"
                )
        self.config = config
        self.policies = policies
        self.tokens: TokenStore = token_store or MemoryTokenStore()
        self._options = dict(client_options or {})
        self._shops = {(s.platform, s.shop_id): s for s in config.shops}
        self._clients: dict[tuple[str, str], ShopClient] = {}
        self._authorised: set[tuple[str, str]] = set()
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        for shop in config.shops:
            # The file's token seeds the store; one the hub already holds
            # (refreshed since, its predecessor maybe spent) is newer.
            held = self.tokens.get(shop.platform, shop.shop_id)
            if shop.token is not None and held is None:
                self.tokens.put(
                    shop.platform,
                    shop.shop_id,
                    msgspec.convert(shop.token, TokenState, from_attributes=True),
                )

    # ------------------------------------------------------------------ shops

    def shops(self, platform: str | None = None) -> list[ShopConfig]:
        """Every shop, or those of one platform, in file order."""
        return [s for s in self.config.shops if platform in (None, s.platform)]

    def shop(self, platform: str, shop_id: str) -> ShopConfig:
        """The shop of ``platform`` with ``shop_id``.

        Raises:
            UnknownShopError: no such shop in the registry.
        """
        try:
            return self._shops[(platform, shop_id)]
        except KeyError:
            raise UnknownShopError(
                f"no {platform} shop {shop_id!r} in the connectors registry"
            ) from None

    def listings_of(self, sku: str) -> list[tuple[ShopConfig, Listing]]:
        """Every shop listing hub SKU ``sku``, with its listing."""
        return [
            (shop, listing)
            for shop in self.config.shops
            for listing in shop.listings
            if listing.hub_sku == sku
        ]

    # ------------------------------------------------------------------ clients

    def client(self, shop: ShopConfig) -> ShopClient:
        """The shop's client (created on first use)."""
        key = (shop.platform, shop.shop_id)
        client = self._clients.get(key)
        if client is None:
            client = self._build(shop)
            self._clients[key] = client
        return client

    def _build(self, shop: ShopConfig) -> ShopClient:
        platform = connector(shop.platform)
        base_url = (
            shop.base_url
            or self.config.base_urls.get(shop.platform)
            or platform.default_base_url
        )
        options: dict[str, Any] = {
            "base_url": base_url,
            "policy": self.policies[shop.platform],
            "token_store": self.tokens,
            **self._options,
        }
        return platform.build_client(shop.credentials, shop.shop_id, options)

    async def ready_client(self, shop: ShopConfig) -> ShopClient:
        """The shop's client, with a first token fetched when the platform can.

        WeChat fetches tokens from the app secret and Douyin by its self-use
        grant, so neither needs the merchant; Kuaishou and Youzan need an OAuth
        consent first (:meth:`exchange_code`, or a ``token`` in the file).
        """
        key = (shop.platform, shop.shop_id)
        client = self.client(shop)
        if key in self._authorised:
            return client
        async with self._locks.setdefault(key, asyncio.Lock()):
            if key not in self._authorised:
                has_token = self.tokens.get(shop.platform, shop.shop_id) is not None
                if connector(shop.platform).self_authorised and not has_token:
                    await client.authorise(shop.shop_id)  # type: ignore[attr-defined]
                self._authorised.add(key)
        return client

    async def exchange_code(
        self, shop: ShopConfig, code: str, redirect_uri: str = ""
    ) -> TokenState:
        """Turn an OAuth consent code into the shop's tokens (Kuaishou, Youzan).

        Raises:
            ValueError: the platform has no code flow.
        """
        exchange = connector(shop.platform).exchange_code
        if exchange is None:
            raise ValueError(f"{shop.platform} authorises without a consent code")
        return await exchange(self.client(shop), shop.shop_id, code, redirect_uri)

    async def aclose(self) -> None:
        """Close every client's HTTP connections."""
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
