"""Kuaishou Shop client: the calls the hub makes on openapi.kwaixiaodian.com.

Authorisation is OAuth 2.0: :meth:`KuaishouShopClient.authorize_url` sends the
merchant to consent, :meth:`KuaishouShopClient.exchange_code` turns the code
into a 48 h access token and a refresh token, and every refresh rotates the
refresh token (kept with its original expiry). Calls are signed with
``protocol.sign`` (HMAC_SHA256); ``"Exceed qps limit"`` backs off. Stock is
changed with ``changeType`` 1/2 (add/reduce); Kuaishou has no overwrite.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import msgspec

from connectors.common import (
    OrderPage,
    PlatformCallError,
    PlatformOrder,
    PushResult,
    SettlementEntry,
    SettlementStatement,
    TokenState,
    token_state_from_grant,
)
from connectors.http import HttpAnswer
from connectors.kuaishou_shop import protocol, translate
from connectors.kuaishou_shop.policy import PLATFORM
from connectors.mapping import id_value
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

DEFAULT_BASE_URL = "https://openapi.kwaixiaodian.com"
DEFAULT_SCOPES = ("merchant_item", "merchant_order", "merchant_funds")


class KuaishouApp(msgspec.Struct, frozen=True, kw_only=True):
    """The app's id (``appkey``), secret and sign secret."""

    app_id: str
    app_secret: str
    sign_secret: str


class KuaishouShopClient(AppClient[KuaishouApp]):
    """The :class:`connectors.common.ShopClient` of Kuaishou Shop."""

    platform = PLATFORM
    default_base_url = DEFAULT_BASE_URL
    refresh_margin = protocol.REFRESH_MARGIN
    #: ``open.order.cursor.list`` returns whole orders.
    lists_whole_orders = True

    # ------------------------------------------------------------------ auth

    def authorize_url(
        self, redirect_uri: str, state: str, scopes: tuple[str, ...] = DEFAULT_SCOPES
    ) -> str:
        """Where to send the merchant to consent (OAuth 2.0 code flow).

        Args:
            redirect_uri: The hub's callback.
            state: An anti-forgery value the callback must see again.
            scopes: The permissions asked for.

        Returns:
            The URL.
        """
        query = urlencode(
            {
                "app_id": self.app.app_id,
                "redirect_uri": redirect_uri,
                "scope": ",".join(scopes),
                "response_type": "code",
                "state": state,
            }
        )
        return f"{self.base_url}/oauth/authorize?{query}"

    async def exchange_code(self, shop_id: str, code: str) -> TokenState:
        """Turn the callback's code into the shop's tokens.

        Args:
            shop_id: The shop that consented.
            code: The ``code`` of the callback.

        Returns:
            The token state, also kept in the token store.
        """
        state = await self._token_call(
            shop_id,
            "/oauth2/access_token",
            {"grant_type": "code", "code": code},
            None,
        )
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
        return await self._token_call(
            shop_id,
            "/oauth2/refresh_token",
            {"grant_type": "refresh_token", "refresh_token": state.refresh_token or ""},
            state,
        )

    async def _token_call(
        self,
        shop_id: str,
        path: str,
        params: dict[str, str],
        previous: TokenState | None,
    ) -> TokenState:
        query = {"app_id": self.app.app_id, "app_secret": self.app.app_secret, **params}

        def attempt(_: str | None) -> Any:
            return self.http.get(
                f"{self.base_url}{path}", params=query, timeout=TOKEN_TIMEOUT_S
            )

        report = await self._call(
            shop_id,
            f"token-{uuid.uuid4()}",
            attempt,
            classify=self._classify_token,
            needs_token=False,
        )
        body = self._require_ok(report)
        # A rotated refresh token keeps its predecessor's expiry, which the
        # previous state already holds.
        lifetime = (
            None if previous is not None else body.get("refresh_token_expires_in")
        )
        return token_state_from_grant(
            access_token=str(body["access_token"]),
            expires_in_s=int(body["expires_in"]),
            refresh_token=str(body["refresh_token"]),
            refresh_expires_in_s=None if lifetime is None else int(lifetime),
            now=self.clock.now(),
            previous=previous,
        )

    def _classify_token(self, response: HttpAnswer) -> Verdict:
        by_status = http_status_verdict(response)
        if by_status is not None:
            return by_status
        body = decode_json(response)
        if (
            isinstance(body, dict)
            and body.get("result") == 1
            and body.get("access_token")
        ):
            return Verdict(kind="ok", payload=body)
        message = str((body or {}).get("error") or (body or {}).get("error_msg") or "")
        return Verdict(
            kind="rejected", code=str((body or {}).get("result")), message=message
        )

    # ------------------------------------------------------------------ calls

    def _request(self, method: str, param: dict[str, Any], request_id: str) -> Attempt:
        param_text = json.dumps(param, separators=(",", ":"), ensure_ascii=False)

        def attempt(token: str | None) -> Any:
            form = {
                "appkey": self.app.app_id,
                "method": method,
                "version": "1",
                "access_token": token or "",
                "timestamp": str(int(self.clock.now().timestamp() * 1000)),
                "signMethod": "HMAC_SHA256",
                "param": param_text,
            }
            form["sign"] = protocol.sign(form, self.app.sign_secret)
            return self.http.post(
                f"{self.base_url}/{method.replace('.', '/')}",
                data=form,
                headers={REQUEST_ID_HEADER: request_id},
            )

        return attempt

    def _classify(self, response: HttpAnswer) -> Verdict:
        by_status = http_status_verdict(response)
        if by_status is not None:
            return by_status
        body = decode_json(response)
        if not isinstance(body, dict) or "result" not in body:
            return Verdict(kind="retry", code="bad_body", message=response.text[:200])
        result = body["result"]
        message = str(body.get("error_msg") or body.get("msg") or "")
        if result == protocol.RESULT_OK:
            return Verdict(kind="ok", payload=body.get("data"))
        if protocol.is_rate_limited_message(message):
            return Verdict(kind="rate_limited", code=str(result), message=message)
        if result in protocol.TOKEN_EXPIRED_RESULTS:
            return Verdict(kind="token_expired", code=str(result), message=message)
        return Verdict(kind="rejected", code=str(result), message=message)

    async def _read(self, shop_id: str, method: str, param: dict[str, Any]) -> Any:
        return await self._read_with(
            shop_id, lambda request_id: self._request(method, param, request_id)
        )

    async def _push_delta(self, change: StockDelta) -> PushResult:
        param = {
            "kwaiItemId": id_value(change.product_id),
            "skuId": id_value(change.platform_sku_id),
            "skuChangeStock": abs(change.delta),
            "changeType": 1 if change.delta > 0 else 2,
        }
        return await self._send(
            change.shop_id,
            change.request_id,
            self._request("open.item.sku.stock.update", param, change.request_id),
        )

    async def fetch_stock(
        self, shop_id: str, platform_sku_id: str, *, product_id: str
    ) -> int:
        """The SKU's ``skuStock`` (``open.item.get``)."""
        data = await self._read(
            shop_id, "open.item.get", {"kwaiItemId": id_value(product_id)}
        )
        for sku in data.get("skuInfos") or []:
            if str(sku.get("kwaiSkuId")) == platform_sku_id:
                return int(sku["skuStock"])
        raise PlatformCallError(
            self.platform,
            "rejected",
            "no_sku",
            f"item {product_id} has no SKU {platform_sku_id}",
        )

    async def pull_orders(
        self,
        shop_id: str,
        updated_from: datetime,
        updated_to: datetime,
        cursor: str | None = None,
        *,
        page_size: int = 50,
    ) -> OrderPage:
        """One page of ``open.order.cursor.list`` by update time."""
        data = await self._read(
            shop_id,
            "open.order.cursor.list",
            {
                "orderViewStatus": 1,
                "pageSize": min(page_size, 100),
                "sort": 1,
                "queryType": 2,
                "beginTime": int(updated_from.timestamp() * 1000),
                "endTime": int(updated_to.timestamp() * 1000),
                "cursor": cursor or "",
            },
        )
        orders = tuple(
            translate.order_from_payload(shop_id, order)
            for order in data.get("orderList") or []
        )
        following = str(data.get("cursor") or "nomore")
        return OrderPage(
            orders=orders, next_cursor=None if following == "nomore" else following
        )

    async def fetch_order(self, shop_id: str, order_id: str) -> PlatformOrder:
        """One order (``open.order.detail``)."""
        data = await self._read(
            shop_id, "open.order.detail", {"oid": id_value(order_id)}
        )
        return translate.order_from_payload(shop_id, data)

    async def notify_shipment(
        self,
        shop_id: str,
        order_id: str,
        *,
        carrier_code: str,
        tracking_no: str,
        request_id: str,
    ) -> PushResult:
        """Ship the order (``open.seller.order.goods.deliver``)."""
        param = {
            "orderId": id_value(order_id),
            "expressNo": tracking_no,
            "expressCode": carrier_code,
        }
        return await self._send(
            shop_id,
            request_id,
            self._request("open.seller.order.goods.deliver", param, request_id),
        )

    async def fetch_settlement(
        self, shop_id: str, period_start: datetime, period_end: datetime
    ) -> SettlementStatement:
        """Settled bills in the period (``open.funds.settled.bill.list``)."""
        entries: list[SettlementEntry] = []
        cursor = ""
        while cursor != "nomore":
            data = await self._read(
                shop_id,
                "open.funds.settled.bill.list",
                {
                    "beginTime": int(period_start.timestamp() * 1000),
                    "endTime": int(period_end.timestamp() * 1000),
                    "cursor": cursor,
                    "pageSize": 100,
                },
            )
            entries.extend(
                translate.settlement_entry(row)
                for row in data.get("settledBills") or []
            )
            cursor = str(data.get("cursor") or "nomore")
        return SettlementStatement(
            platform=self.platform,
            shop_id=shop_id,
            period_start=period_start,
            period_end=period_end,
            entries=tuple(entries),
        )

    async def upsert_product(self, shop_id: str, write: ProductWrite) -> str:
        """Add the item, or update the one it has (``open.item.new`` or
        ``open.item.update``); the platform's item id."""
        method = "open.item.update" if write.platform_product_id else "open.item.new"
        param = write_fields(translate.PRODUCT_SHAPE, write)
        attempt = self._request(method, param, write.request_id)
        report = await self._call(shop_id, write.request_id, attempt)
        return str(self._require_ok(report)["itemId"])

    async def get_product(
        self, shop_id: str, platform_product_id: str
    ) -> PlatformProduct:
        """The item as the shop shows it (``open.item.detail``)."""
        data = await self._read(
            shop_id, "open.item.detail", {"itemId": id_value(platform_product_id)}
        )
        return read_product(translate.PRODUCT_SHAPE, data)
