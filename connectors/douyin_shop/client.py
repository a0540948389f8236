"""Douyin Shop client: the calls the hub makes on the open platform gateway.

Authorisation (docs/domain.md §2: a third-party tool with an API key): the app's key
and secret and ``/token/create`` (``authorization_self`` with the shop id, or
an authorisation ``code``) give a 7-day access token and a 14-day refresh
token; ``/token/refresh`` renews them before expiry and on
``isv.access-token-expired``. Every request is signed with
``protocol.sign`` over the canonical ``param_json``. Stock is always pushed
with ``incremental: true`` and ``idempotent_id`` (the request id), so a retry
is applied once and a concurrent sale is never overwritten; code 60000 backs
off.
"""

from __future__ import annotations

import uuid
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
from connectors.douyin_shop import protocol, translate
from connectors.douyin_shop.policy import PLATFORM
from connectors.http import HttpAnswer
from connectors.mapping import id_value, to_beijing_text
from connectors.products import (
    PlatformProduct,
    ProductWrite,
    read_product,
    write_fields,
)
from connectors.transport import (
    REQUEST_ID_HEADER,
    TOKEN_TIMEOUT_S,
    AppClient,
    Attempt,
    NotAuthorisedError,
    StockDelta,
    Verdict,
    decode_json,
    http_status_verdict,
)

DEFAULT_BASE_URL = "https://openapi-fxg.jinritemai.com"


class DouyinApp(msgspec.Struct, frozen=True, kw_only=True):
    """The app's key and secret (the "API key" of the binding)."""

    app_key: str
    app_secret: str


class DouyinShopClient(AppClient[DouyinApp]):
    """The :class:`connectors.common.ShopClient` of Douyin Shop."""

    platform = PLATFORM
    default_base_url = DEFAULT_BASE_URL
    refresh_margin = protocol.REFRESH_MARGIN
    #: ``/order/searchList`` returns whole orders.
    lists_whole_orders = True

    # ------------------------------------------------------------------ auth

    async def authorise(self, shop_id: str, *, code: str | None = None) -> TokenState:
        """Create the shop's first token (``/token/create``).

        Args:
            shop_id: The shop.
            code: An authorisation code; without it the self-use grant
                (``authorization_self`` with the shop id) is used.

        Returns:
            The token state, also kept in the token store.

        Raises:
            PlatformCallError: If Douyin refuses.
        """
        params: dict[str, Any] = (
            {"code": code, "grant_type": "authorization_code"}
            if code
            else {"code": "", "grant_type": "authorization_self", "shop_id": shop_id}
        )
        state = await self._token_call(shop_id, "token.create", params, None)
        self.tokens.put(self.platform, shop_id, state)
        return state

    async def _refresh_token(
        self, shop_id: str, state: TokenState | None
    ) -> TokenState:
        if state is None or protocol.needs_reauthorization(state, self.clock.now()):
            raise NotAuthorisedError(
                self.platform,
                "rejected",
                "not_authorised",
                f"shop {shop_id} must authorise again (no valid refresh token)",
            )
        params = {"grant_type": "refresh_token", "refresh_token": state.refresh_token}
        return await self._token_call(shop_id, "token.refresh", params, state)

    async def _token_call(
        self,
        shop_id: str,
        method: str,
        params: dict[str, Any],
        previous: TokenState | None,
    ) -> TokenState:
        request_id = f"token-{uuid.uuid4()}"
        report = await self._call(
            shop_id,
            request_id,
            self._request(method, params, request_id, with_token=False),
            needs_token=False,
        )
        data = self._require_ok(report)
        return token_state_from_grant(
            access_token=str(data["access_token"]),
            expires_in_s=int(data["expires_in"]),
            refresh_token=str(data["refresh_token"]),
            refresh_expires_in_s=protocol.REFRESH_TOKEN_TTL_S,
            now=self.clock.now(),
            previous=previous,
        )

    # ------------------------------------------------------------------ calls

    def _request(
        self,
        method: str,
        params: dict[str, Any],
        request_id: str,
        *,
        with_token: bool = True,
    ) -> Attempt:
        param_json = protocol.canonical_param_json(params)

        def attempt(token: str | None) -> Any:
            timestamp = to_beijing_text(self.clock.now())
            query = {
                "app_key": self.app.app_key,
                "method": method,
                "v": protocol.API_VERSION,
                "timestamp": timestamp,
                "sign_method": "hmac-sha256",
                "sign": protocol.sign(
                    self.app.app_key, self.app.app_secret, method, param_json, timestamp
                ),
            }
            if with_token:
                query["access_token"] = token or ""
            return self.http.post(
                f"{self.base_url}/{method.replace('.', '/')}",
                params=query,
                content=param_json.encode(),
                headers={
                    "Content-Type": "application/json",
                    REQUEST_ID_HEADER: request_id,
                },
                timeout=self.http.timeout if with_token else TOKEN_TIMEOUT_S,
            )

        return attempt

    def _classify(self, response: HttpAnswer) -> Verdict:
        by_status = http_status_verdict(response)
        if by_status is not None:
            return by_status
        body = decode_json(response)
        if not isinstance(body, dict) or "code" not in body:
            return Verdict(kind="retry", code="bad_body", message=response.text[:200])
        code = body["code"]
        sub_code = body.get("sub_code") or None
        message = str(body.get("sub_msg") or body.get("msg") or "")
        if code == protocol.SUCCESS_CODE:
            return Verdict(kind="ok", payload=body.get("data") or {})
        if protocol.is_rate_limited_code(code):
            return Verdict(kind="rate_limited", code=str(code), message=message)
        if protocol.is_token_expired(code, sub_code):
            return Verdict(kind="token_expired", code=sub_code, message=message)
        return Verdict(kind="rejected", code=sub_code or str(code), message=message)

    async def _read(self, shop_id: str, method: str, params: dict[str, Any]) -> Any:
        return await self._read_with(
            shop_id, lambda request_id: self._request(method, params, request_id)
        )

    async def _push_delta(self, change: StockDelta) -> PushResult:
        params = {
            "product_id": id_value(change.product_id),
            "sku_id": id_value(change.platform_sku_id),
            "stock_num": change.delta,
            "incremental": True,
            "idempotent_id": change.request_id,
        }
        return await self._send(
            change.shop_id,
            change.request_id,
            self._request("sku.syncStock", params, change.request_id),
        )

    async def fetch_stock(
        self, shop_id: str, platform_sku_id: str, *, product_id: str
    ) -> int:
        """The SKU's ``stock_num`` (``/sku/stockNum``)."""
        data = await self._read(
            shop_id, "sku.stockNum", {"sku_id": id_value(platform_sku_id)}
        )
        return int(data["stock_num"])

    async def pull_orders(
        self,
        shop_id: str,
        updated_from: datetime,
        updated_to: datetime,
        cursor: str | None = None,
        *,
        page_size: int = 50,
    ) -> OrderPage:
        """One page of ``/order/searchList`` by update time (oldest first)."""
        page = int(cursor or 0)
        size = min(page_size, 100)
        data = await self._read(
            shop_id,
            "order.searchList",
            {
                "update_time_start": int(updated_from.timestamp()),
                "update_time_end": int(updated_to.timestamp()),
                "page": page,
                "size": size,
                "order_by": "update_time",
                "order_asc": True,
            },
        )
        orders = tuple(
            translate.order_from_payload(shop_id, order)
            for order in data.get("shop_order_list") or []
        )
        more = (page + 1) * size < int(data.get("total", 0))
        return OrderPage(orders=orders, next_cursor=str(page + 1) if more else None)

    async def fetch_order(self, shop_id: str, order_id: str) -> PlatformOrder:
        """One order (``/order/orderDetail``)."""
        data = await self._read(
            shop_id, "order.orderDetail", {"shop_order_id": order_id}
        )
        return translate.order_from_payload(shop_id, data["shop_order_detail"])

    async def notify_shipment(
        self,
        shop_id: str,
        order_id: str,
        *,
        carrier_code: str,
        tracking_no: str,
        request_id: str,
    ) -> PushResult:
        """Ship the order (``/order/logisticsAdd``)."""
        params = {
            "order_id": order_id,
            "company_code": carrier_code,
            "logistics_code": tracking_no,
        }
        return await self._send(
            shop_id, request_id, self._request("order.logisticsAdd", params, request_id)
        )

    async def fetch_settlement(
        self, shop_id: str, period_start: datetime, period_end: datetime
    ) -> SettlementStatement:
        """Settled orders in the period (``/order/getSettleBillDetailV3``)."""
        entries: list[SettlementEntry] = []
        start_index = ""
        while True:
            data = await self._read(
                shop_id,
                "order.getSettleBillDetailV3",
                {
                    "start_time": to_beijing_text(period_start),
                    "end_time": to_beijing_text(period_end),
                    "size": 100,
                    "start_index": start_index,
                    "time_type": "1",
                },
            )
            entries.extend(
                translate.settlement_entry(row) for row in data.get("data") or []
            )
            start_index = str(data.get("next_start_index") or "")
            if data.get("is_end", 1) or not start_index:
                break
        return SettlementStatement(
            platform=self.platform,
            shop_id=shop_id,
            period_start=period_start,
            period_end=period_end,
            entries=tuple(entries),
        )

    async def upsert_product(self, shop_id: str, write: ProductWrite) -> str:
        """Add the product, or edit the one it has (``/product/addV2`` or
        ``/product/editV2``); the platform's product id."""
        method = "product.editV2" if write.platform_product_id else "product.addV2"
        params = write_fields(translate.PRODUCT_SHAPE, write)
        attempt = self._request(method, params, write.request_id)
        report = await self._call(shop_id, write.request_id, attempt)
        return str(self._require_ok(report)["product_id"])

    async def get_product(
        self, shop_id: str, platform_product_id: str
    ) -> PlatformProduct:
        """The product as the shop shows it (``/product/detail``)."""
        data = await self._read(
            shop_id, "product.detail", {"product_id": id_value(platform_product_id)}
        )
        return read_product(translate.PRODUCT_SHAPE, data)
