"""WeChat Shop client: the calls the hub makes on api.weixin.qq.com.

Authorisation: the shop's appid and secret give an access_token
(``/cgi-bin/token``, 7,200 s), fetched again before expiry and on 40001,
40014 or 42001. Stock changes use ``diff_type`` 1/2 only (never 3, which
misbehaves under concurrency); 10020112 (SKU updated too often), 45009 and
45011 back off. WeChat has no idempotency field: the request id travels in
the ``X-Request-Id`` header, which the sandbox honours.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec

from connectors.common import (
    OrderPage,
    PlatformOrder,
    PushResult,
    SettlementEntry,
    SettlementStatement,
    TokenState,
    token_state_from_grant,
)
from connectors.http import HttpAnswer
from connectors.products import (
    PlatformProduct,
    ProductWrite,
    read_product,
    write_fields,
)
from connectors.transport import (
    REQUEST_ID_HEADER,
    TOKEN_TIMEOUT_S,
    Attempt,
    ClientBase,
    NotAuthorisedError,
    StockDelta,
    Verdict,
    decode_json,
    http_status_verdict,
)
from connectors.wechat_shop import protocol, translate
from connectors.wechat_shop.policy import PLATFORM
from domain.policy import SyncPolicy

DEFAULT_BASE_URL = "https://api.weixin.qq.com"
#: errcode of "system busy, retry later".
SYSTEM_BUSY = -1


class WechatCredentials(msgspec.Struct, frozen=True, kw_only=True):
    """A WeChat Shop's appid and secret (the shop's own app)."""

    app_id: str
    app_secret: str


class WechatShopClient(ClientBase):
    """The :class:`connectors.common.ShopClient` of WeChat Shop."""

    platform = PLATFORM
    refresh_margin = protocol.REFRESH_MARGIN

    def __init__(
        self,
        *,
        policy: SyncPolicy,
        base_url: str = DEFAULT_BASE_URL,
        credentials: Mapping[str, WechatCredentials] | None = None,
        **options: Any,
    ) -> None:
        """Create the client.

        Args:
            policy: WeChat Shop's sync policy from the policy book.
            base_url: The API root (the sandbox in tests).
            credentials: Each shop's appid and secret, by shop id.
            **options: Passed to :class:`connectors.transport.ClientBase`
                (``token_store``, ``http``, ``clock``, ``jitter``, ``sleep``).
        """
        super().__init__(base_url=base_url, policy=policy, **options)
        self._credentials = dict(credentials or {})

    # ------------------------------------------------------------------ auth

    async def authorise(
        self, shop_id: str, credentials: WechatCredentials
    ) -> TokenState:
        """Bind a shop: keep its appid/secret and fetch its first token.

        Args:
            shop_id: The shop.
            credentials: Its appid and secret.

        Returns:
            The token state, also kept in the token store.

        Raises:
            PlatformCallError: If WeChat refuses the appid or secret.
        """
        self._credentials[shop_id] = credentials
        stale = self.tokens.get(self.platform, shop_id)
        return await self._renew(shop_id, stale=stale)

    async def _refresh_token(
        self, shop_id: str, state: TokenState | None
    ) -> TokenState:
        creds = self._credentials.get(shop_id)
        if creds is None:
            raise NotAuthorisedError(
                self.platform, "rejected", "not_authorised", f"no appid for {shop_id}"
            )

        def attempt(_: str | None) -> Any:
            return self.http.get(
                f"{self.base_url}/cgi-bin/token",
                timeout=TOKEN_TIMEOUT_S,
                params={
                    "grant_type": "client_credential",
                    "appid": creds.app_id,
                    "secret": creds.app_secret,
                },
            )

        report = await self._call(
            shop_id, f"token-{uuid.uuid4()}", attempt, needs_token=False
        )
        payload = self._require_ok(report)
        return token_state_from_grant(
            access_token=str(payload["access_token"]),
            expires_in_s=int(payload["expires_in"]),
            now=self.clock.now(),
        )

    # ------------------------------------------------------------------ calls

    def _classify(self, response: HttpAnswer) -> Verdict:  # noqa: PLR0911
        by_status = http_status_verdict(response)
        if by_status is not None:
            return by_status
        body = decode_json(response)
        if not isinstance(body, dict):
            return Verdict(kind="retry", code="bad_body", message=response.text[:200])
        errcode = body.get("errcode", 0)
        message = str(body.get("errmsg", ""))
        if errcode == 0:
            return Verdict(kind="ok", payload=body)
        code = str(errcode)
        if isinstance(errcode, int) and protocol.is_token_expired_code(errcode):
            return Verdict(kind="token_expired", code=code, message=message)
        if isinstance(errcode, int) and protocol.is_rate_limited_code(errcode):
            return Verdict(kind="rate_limited", code=code, message=message)
        if errcode == SYSTEM_BUSY:
            return Verdict(kind="retry", code=code, message=message)
        return Verdict(kind="rejected", code=code, message=message)

    def _post(self, path: str, body: dict[str, Any], request_id: str) -> Attempt:
        def attempt(token: str | None) -> Any:
            return self.http.post(
                f"{self.base_url}{path}",
                params={"access_token": token or ""},
                json=body,
                headers={REQUEST_ID_HEADER: request_id},
            )

        return attempt

    async def _read(self, shop_id: str, path: str, body: dict[str, Any]) -> Any:
        return await self._read_with(
            shop_id, lambda request_id: self._post(path, body, request_id)
        )

    async def _push_delta(self, change: StockDelta) -> PushResult:
        body = {
            "product_id": change.product_id,
            "sku_id": change.platform_sku_id,
            "diff_type": 1 if change.delta > 0 else 2,
            "num": abs(change.delta),
        }
        path = "/channels/ec/product/stock/update"
        return await self._send(
            change.shop_id, change.request_id, self._post(path, body, change.request_id)
        )

    async def fetch_stock(
        self, shop_id: str, platform_sku_id: str, *, product_id: str
    ) -> int:
        """The SKU's ``normal_stock_num`` (``/channels/ec/product/stock/get``)."""
        payload = await self._read(
            shop_id,
            "/channels/ec/product/stock/get",
            {"product_id": product_id, "sku_id": platform_sku_id},
        )
        return int(payload["data"]["normal_stock_num"])

    async def pull_orders(
        self,
        shop_id: str,
        updated_from: datetime,
        updated_to: datetime,
        cursor: str | None = None,
        *,
        page_size: int = 50,
    ) -> OrderPage:
        """One page of ``/channels/ec/order/list/get`` by update time, with details.

        The list gives ids only; each order is read with ``order/get``.
        """
        payload = await self._read(
            shop_id,
            "/channels/ec/order/list/get",
            {
                "update_time_range": {
                    "start_time": int(updated_from.timestamp()),
                    "end_time": int(updated_to.timestamp()),
                },
                "page_size": min(page_size, 100),
                "next_key": cursor or "",
            },
        )
        orders = [
            await self.fetch_order(shop_id, str(order_id))
            for order_id in payload.get("order_id_list") or []
        ]
        following = (
            str(payload.get("next_key") or "") if payload.get("has_more") else None
        )
        return OrderPage(orders=tuple(orders), next_cursor=following or None)

    async def fetch_order(self, shop_id: str, order_id: str) -> PlatformOrder:
        """One order (``/channels/ec/order/get``)."""
        payload = await self._read(
            shop_id, "/channels/ec/order/get", {"order_id": order_id}
        )
        return translate.order_from_payload(shop_id, payload["order"])

    async def notify_shipment(
        self,
        shop_id: str,
        order_id: str,
        *,
        carrier_code: str,
        tracking_no: str,
        request_id: str,
    ) -> PushResult:
        """Ship the whole order (``/channels/ec/order/delivery/send``)."""
        body = {
            "order_id": order_id,
            "delivery_list": [
                {
                    "delivery_id": carrier_code,
                    "waybill_id": tracking_no,
                    "deliver_type": 1,
                }
            ],
        }
        path = "/channels/ec/order/delivery/send"
        return await self._send(shop_id, request_id, self._post(path, body, request_id))

    async def fetch_settlement(
        self, shop_id: str, period_start: datetime, period_end: datetime
    ) -> SettlementStatement:
        """Income flows booked in the period (getfundsflowlist + detail)."""
        entries: list[SettlementEntry] = []
        next_key = ""
        while True:
            listing = await self._read(
                shop_id,
                "/channels/ec/funds/getfundsflowlist",
                {
                    "start_time": int(period_start.timestamp()),
                    "end_time": int(period_end.timestamp()),
                    "page_size": 100,
                    "next_key": next_key,
                },
            )
            for flow_id in listing.get("flow_ids") or []:
                detail = await self._read(
                    shop_id,
                    "/channels/ec/funds/getfundsflowdetail",
                    {"flow_id": flow_id},
                )
                entry = translate.settlement_entry(detail["funds_flow"])
                if entry is not None:
                    entries.append(entry)
            next_key = str(listing.get("next_key") or "")
            if not listing.get("has_more") or not next_key:
                break
        return SettlementStatement(
            platform=self.platform,
            shop_id=shop_id,
            period_start=period_start,
            period_end=period_end,
            entries=tuple(entries),
        )

    async def upsert_product(self, shop_id: str, write: ProductWrite) -> str:
        """Add the product, or update the one it has (``/channels/ec/product/add``
        or ``/update``); the platform's product id."""
        path = "update" if write.platform_product_id else "add"
        body = write_fields(translate.PRODUCT_SHAPE, write)
        attempt = self._post(f"/channels/ec/product/{path}", body, write.request_id)
        report = await self._call(shop_id, write.request_id, attempt)
        return str(self._require_ok(report)["data"]["product_id"])

    async def get_product(
        self, shop_id: str, platform_product_id: str
    ) -> PlatformProduct:
        """The product as the shop shows it (``/channels/ec/product/get``)."""
        payload = await self._read(
            shop_id, "/channels/ec/product/get", {"product_id": platform_product_id}
        )
        return read_product(translate.PRODUCT_SHAPE, payload["product"])
