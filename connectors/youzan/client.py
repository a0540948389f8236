"""Youzan client: the calls the hub makes on open.youzanyun.com.

Authorisation is OAuth 2.0 (docs/domain.md §2): :meth:`YouzanClient.authorize_url`,
then :meth:`YouzanClient.exchange_code` at ``/auth/token``; the token is
refreshed with ``authorize_type: refresh_token`` before expiry and when the
gateway answers a token error. The gateway reports its own errors with HTTP
200 inside ``gw_err_resp`` (``protocol.gateway_error``), so a 200 is not
success until that is checked. Stock is changed with
``youzan.item.quantity.update`` ``type`` 1 (add), never 0 (overwrite).
"""

from __future__ import annotations

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
from connectors.youzan import protocol, translate
from connectors.youzan.policy import PLATFORM

DEFAULT_BASE_URL = "https://open.youzanyun.com"


class YouzanApp(msgspec.Struct, frozen=True, kw_only=True):
    """The app's client id and secret."""

    client_id: str
    client_secret: str


class YouzanClient(AppClient[YouzanApp]):
    """The :class:`connectors.common.ShopClient` of Youzan."""

    platform = PLATFORM
    default_base_url = DEFAULT_BASE_URL
    refresh_margin = protocol.REFRESH_MARGIN
    #: ``youzan.trades.sold.get`` returns whole orders.
    lists_whole_orders = True

    # ------------------------------------------------------------------ auth

    def authorize_url(self, redirect_uri: str, state: str) -> str:
        """Where to send the merchant to consent (OAuth 2.0 code flow).

        Args:
            redirect_uri: The hub's callback.
            state: An anti-forgery value the callback must see again.

        Returns:
            The URL.
        """
        query = urlencode(
            {
                "client_id": self.app.client_id,
                "response_type": "code",
                "state": state,
                "redirect_uri": redirect_uri,
            }
        )
        return f"{self.base_url}/open/oauth/authorize?{query}"

    async def exchange_code(
        self, shop_id: str, code: str, redirect_uri: str
    ) -> TokenState:
        """Turn the callback's code into the shop's tokens.

        Args:
            shop_id: The shop (``kdt_id``) that consented.
            code: The callback's ``code``.
            redirect_uri: The callback URL used to ask for it.

        Returns:
            The token state, also kept in the token store.
        """
        state = await self._token_call(
            shop_id,
            {
                "authorize_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
            },
            None,
        )
        self.tokens.put(self.platform, shop_id, state)
        return state

    async def _refresh_token(
        self, shop_id: str, state: TokenState | None
    ) -> TokenState:
        if state is None or state.refresh_token is None:
            raise NotAuthorisedError(
                self.platform,
                "rejected",
                "not_authorised",
                f"shop {shop_id} must authorise again (no refresh token)",
            )
        return await self._token_call(
            shop_id,
            {"authorize_type": "refresh_token", "refresh_token": state.refresh_token},
            state,
        )

    async def _token_call(
        self, shop_id: str, params: dict[str, str], previous: TokenState | None
    ) -> TokenState:
        body = {
            "client_id": self.app.client_id,
            "client_secret": self.app.client_secret,
            **params,
        }

        def attempt(_: str | None) -> Any:
            return self.http.post(
                f"{self.base_url}/auth/token", json=body, timeout=TOKEN_TIMEOUT_S
            )

        report = await self._call(
            shop_id, f"token-{uuid.uuid4()}", attempt, needs_token=False
        )
        data = self._require_ok(report)
        now = self.clock.now()
        expires_in = int(int(data["expires"]) / 1000 - now.timestamp())
        return token_state_from_grant(
            access_token=str(data["access_token"]),
            expires_in_s=max(expires_in, 0),
            refresh_token=str(data["refresh_token"]),
            now=now,
            previous=previous,
        )

    # ------------------------------------------------------------------ calls

    def _classify(self, response: HttpAnswer) -> Verdict:
        by_status = http_status_verdict(response)
        if by_status is not None:
            return by_status
        body = decode_json(response)
        if not isinstance(body, dict):
            return Verdict(kind="retry", code="bad_body", message=response.text[:200])
        gateway = protocol.gateway_error(body)
        if gateway is not None:
            code, message = gateway
            if code in protocol.GATEWAY_TOKEN_CODES:
                return Verdict(kind="token_expired", code=str(code), message=message)
            return Verdict(kind="rejected", code=str(code), message=message)
        if body.get("success") is True:
            return Verdict(kind="ok", payload=body.get("data"))
        return Verdict(
            kind="rejected",
            code=str(body.get("code")),
            message=str(body.get("message") or ""),
        )

    def _request(
        self, api: str, version: str, body: dict[str, Any], request_id: str
    ) -> Attempt:
        def attempt(token: str | None) -> Any:
            return self.http.post(
                f"{self.base_url}/api/{api}/{version}",
                params={"access_token": token or ""},
                json=body,
                headers={REQUEST_ID_HEADER: request_id},
            )

        return attempt

    async def _read(
        self, shop_id: str, api: str, version: str, body: dict[str, Any]
    ) -> Any:
        return await self._read_with(
            shop_id, lambda request_id: self._request(api, version, body, request_id)
        )

    async def _push_delta(self, change: StockDelta) -> PushResult:
        body = {
            "item_id": id_value(change.product_id),
            "sku_id": id_value(change.platform_sku_id),
            "quantity": change.delta,
            "type": 1,
        }
        return await self._send(
            change.shop_id,
            change.request_id,
            self._request(
                "youzan.item.quantity.update", "3.0.0", body, change.request_id
            ),
        )

    async def fetch_stock(
        self, shop_id: str, platform_sku_id: str, *, product_id: str
    ) -> int:
        """The SKU's ``quantity`` (``youzan.item.get``)."""
        data = await self._read(
            shop_id, "youzan.item.get", "3.0.0", {"item_id": id_value(product_id)}
        )
        for sku in data.get("skus") or []:
            if str(sku.get("sku_id")) == platform_sku_id:
                return int(sku["quantity"])
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
        """One page of ``youzan.trades.sold.get`` by update time."""
        page_no = int(cursor or 1)
        size = min(page_size, 100)
        data = await self._read(
            shop_id,
            "youzan.trades.sold.get",
            "4.0.4",
            {
                "start_update": to_beijing_text(updated_from),
                "end_update": to_beijing_text(updated_to),
                "page_no": page_no,
                "page_size": size,
            },
        )
        orders = tuple(
            translate.order_from_payload(shop_id, item["full_order_info"])
            for item in data.get("full_order_info_list") or []
        )
        more = page_no * size < int(data.get("total_results", 0))
        return OrderPage(orders=orders, next_cursor=str(page_no + 1) if more else None)

    async def fetch_order(self, shop_id: str, order_id: str) -> PlatformOrder:
        """One trade (``youzan.trade.get``)."""
        data = await self._read(shop_id, "youzan.trade.get", "4.0.2", {"tid": order_id})
        return translate.order_from_payload(shop_id, data["full_order_info"])

    async def notify_shipment(
        self,
        shop_id: str,
        order_id: str,
        *,
        carrier_code: str,
        tracking_no: str,
        request_id: str,
    ) -> PushResult:
        """Ship the trade (``youzan.logistics.online.confirm``)."""
        body = {"tid": order_id, "out_stype": carrier_code, "out_sid": tracking_no}
        return await self._send(
            shop_id,
            request_id,
            self._request("youzan.logistics.online.confirm", "3.0.0", body, request_id),
        )

    async def fetch_settlement(
        self, shop_id: str, period_start: datetime, period_end: datetime
    ) -> SettlementStatement:
        """Settled trades in the period (``youzan.trade.settlement.list``)."""
        entries: list[SettlementEntry] = []
        page_no = 1
        while True:
            data = await self._read(
                shop_id,
                "youzan.trade.settlement.list",
                "1.0.0",
                {
                    "start_time": to_beijing_text(period_start),
                    "end_time": to_beijing_text(period_end),
                    "page_no": page_no,
                    "page_size": 100,
                },
            )
            rows = data.get("list") or []
            entries.extend(translate.settlement_entry(row) for row in rows)
            if page_no * 100 >= int(data.get("total", 0)):
                break
            page_no += 1
        return SettlementStatement(
            platform=self.platform,
            shop_id=shop_id,
            period_start=period_start,
            period_end=period_end,
            entries=tuple(entries),
        )

    async def upsert_product(self, shop_id: str, write: ProductWrite) -> str:
        """Add the item, or update the one it has (``youzan.item.create`` or
        ``youzan.item.update``, 3.0.0); the platform's item id."""
        api = "update" if write.platform_product_id else "create"
        body = write_fields(translate.PRODUCT_SHAPE, write)
        attempt = self._request(f"youzan.item.{api}", "3.0.0", body, write.request_id)
        report = await self._call(shop_id, write.request_id, attempt)
        return str(self._require_ok(report)["item_id"])

    async def get_product(
        self, shop_id: str, platform_product_id: str
    ) -> PlatformProduct:
        """The item as the shop shows it (``youzan.item.detail.get``, 1.0.0)."""
        data = await self._read(
            shop_id,
            "youzan.item.detail.get",
            "1.0.0",
            {"item_id": id_value(platform_product_id)},
        )
        return read_product(translate.PRODUCT_SHAPE, data)
