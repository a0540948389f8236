"""The connector registry: what the hub needs to know of each platform, by code.

The hub never spells a platform's name. It asks this registry for a
platform's :class:`PlatformConnector`: the credential fields a shop of it
needs, where its API lives, how to build a client for a shop, whether that
client fetches its first token by itself, and how it turns an OAuth consent
code into tokens. Adding a platform is adding an entry here (and its package
beside this file) and its profile in the policy book; nothing in ``hub/``
changes.

The registry holds no sync policy: a platform's policy (order and stock
modes, rate limit, retries) is data in the hub's policy book, and the hub
passes it to :attr:`PlatformConnector.build_client` with the other options.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from connectors.common import ShopClient, TokenState
from connectors.douyin_shop import client as douyin_client
from connectors.douyin_shop import policy as douyin_policy
from connectors.douyin_shop.webhook import DouyinWebhook
from connectors.kuaishou_shop import client as kuaishou_client
from connectors.kuaishou_shop import policy as kuaishou_policy
from connectors.kuaishou_shop.webhook import KuaishouWebhook
from connectors.webhooks import Webhook
from connectors.wechat_shop import client as wechat_client
from connectors.wechat_shop import policy as wechat_policy
from connectors.wechat_shop.webhook import WechatWebhook
from connectors.youzan import client as youzan_client
from connectors.youzan import policy as youzan_policy
from connectors.youzan.webhook import YouzanWebhook

#: Builds a shop's client from its credentials, its shop id and the options
#: every client takes (``policy``, ``base_url``, ``token_store``, ``clock``,
#: ``sleep``, ...).
ClientBuilder = Callable[[Mapping[str, str], str, dict[str, Any]], ShopClient]
#: Exchanges an OAuth consent code: (client, shop id, code, redirect URI).
CodeExchange = Callable[[Any, str, str, str], Awaitable[TokenState]]
#: Where the merchant consents: (client, the hub's callback URI, state) → URL.
ConsentUrl = Callable[[Any, str, str], str]
#: Obtains a shop's first grant with no merchant in the loop:
#: (client, the shop's credentials, shop id) → tokens.
FirstGrant = Callable[[Any, Mapping[str, str], str], Awaitable[TokenState]]


class UnknownPlatformError(LookupError):
    """No connector has this platform code; the message lists the known ones."""


@dataclass(frozen=True)
class PlatformConnector:
    """One platform as the hub sees it.

    Attributes:
        code: The platform code used in subjects, URLs and tables.
        credentials: The credential fields every shop of it must give.
        default_base_url: Where its API lives unless configured otherwise.
        build_client: Makes a shop's client.
        webhook: Verifies, decodes and acknowledges its pushes.
        self_authorised: The client fetches its first token itself, without
            a merchant's consent (an app-secret or self-use grant).
        exchange_code: Turns an OAuth consent code into tokens, for the
            platforms that authorise by a code flow; None for the others.
        consent_url: Where the merchant consents, for the code-flow platforms.
        first_grant: Obtains the first grant without a consent (the shop's
            own app secret, a self-use grant), for the other platforms.
    """

    code: str
    credentials: tuple[str, ...]
    default_base_url: str
    build_client: ClientBuilder
    webhook: Webhook
    self_authorised: bool = False
    exchange_code: CodeExchange | None = None
    consent_url: ConsentUrl | None = None
    first_grant: FirstGrant | None = None


def _wechat(creds: Mapping[str, str], shop_id: str, options: dict[str, Any]) -> Any:
    credentials = wechat_client.WechatCredentials(
        app_id=creds["app_id"], app_secret=creds["app_secret"]
    )
    return wechat_client.WechatShopClient(credentials={shop_id: credentials}, **options)


def _douyin(creds: Mapping[str, str], shop_id: str, options: dict[str, Any]) -> Any:
    app = douyin_client.DouyinApp(
        app_key=creds["app_key"], app_secret=creds["app_secret"]
    )
    return douyin_client.DouyinShopClient(app=app, **options)


def _kuaishou(creds: Mapping[str, str], shop_id: str, options: dict[str, Any]) -> Any:
    app = kuaishou_client.KuaishouApp(
        app_id=creds["app_id"],
        app_secret=creds["app_secret"],
        sign_secret=creds["sign_secret"],
    )
    return kuaishou_client.KuaishouShopClient(app=app, **options)


def _youzan(creds: Mapping[str, str], shop_id: str, options: dict[str, Any]) -> Any:
    app = youzan_client.YouzanApp(
        client_id=creds["client_id"], client_secret=creds["client_secret"]
    )
    return youzan_client.YouzanClient(app=app, **options)


async def _wechat_grant(
    client: Any, creds: Mapping[str, str], shop_id: str
) -> TokenState:
    credentials = wechat_client.WechatCredentials(
        app_id=creds["app_id"], app_secret=creds["app_secret"]
    )
    result: TokenState = await client.authorise(shop_id, credentials)
    return result


async def _self_use_grant(
    client: Any, creds: Mapping[str, str], shop_id: str
) -> TokenState:
    result: TokenState = await client.authorise(shop_id)
    return result


def _consent_url(client: Any, redirect_uri: str, state: str) -> str:
    url: str = client.authorize_url(redirect_uri, state)
    return url


async def _kuaishou_code(
    client: Any, shop_id: str, code: str, redirect_uri: str
) -> TokenState:
    result: TokenState = await client.exchange_code(shop_id, code)
    return result


async def _youzan_code(
    client: Any, shop_id: str, code: str, redirect_uri: str
) -> TokenState:
    result: TokenState = await client.exchange_code(shop_id, code, redirect_uri)
    return result


CONNECTORS: Mapping[str, PlatformConnector] = {
    c.code: c
    for c in (
        PlatformConnector(
            code=wechat_policy.PLATFORM,
            # app_id/app_secret: API token; push_token, encoding_aes_key: push
            # signature and decryption; username: the ToUserName pushes are sent to.
            credentials=(
                "app_id",
                "app_secret",
                "push_token",
                "encoding_aes_key",
                "username",
            ),
            default_base_url=wechat_client.DEFAULT_BASE_URL,
            build_client=_wechat,
            webhook=WechatWebhook(),
            first_grant=_wechat_grant,
        ),
        PlatformConnector(
            code=douyin_policy.PLATFORM,
            # app_key/app_secret: request signing and the push event-sign.
            credentials=("app_key", "app_secret"),
            default_base_url=douyin_client.DEFAULT_BASE_URL,
            build_client=_douyin,
            webhook=DouyinWebhook(),
            self_authorised=True,
            first_grant=_self_use_grant,
        ),
        PlatformConnector(
            code=kuaishou_policy.PLATFORM,
            # sign_secret: request signing; message_key: push decryption.
            credentials=("app_id", "app_secret", "sign_secret", "message_key"),
            default_base_url=kuaishou_client.DEFAULT_BASE_URL,
            build_client=_kuaishou,
            webhook=KuaishouWebhook(),
            exchange_code=_kuaishou_code,
            consent_url=_consent_url,
        ),
        PlatformConnector(
            code=youzan_policy.PLATFORM,
            # client_secret: the push sign and the token calls.
            credentials=("client_id", "client_secret"),
            default_base_url=youzan_client.DEFAULT_BASE_URL,
            build_client=_youzan,
            webhook=YouzanWebhook(),
            exchange_code=_youzan_code,
            consent_url=_consent_url,
        ),
    )
}


def connector(code: str) -> PlatformConnector:
    """The connector of platform ``code``.

    Raises:
        UnknownPlatformError: no connector has that code.
    """
    try:
        return CONNECTORS[code]
    except KeyError:
        raise UnknownPlatformError(
            f"platform {code!r} has no connector; known: {', '.join(CONNECTORS)}"
        ) from None


def platforms() -> Iterator[str]:
    """Every platform code with a connector, in registry order."""
    return iter(CONNECTORS)
