"""WeChat Shop (微信小店) routes, on the real paths of api.weixin.qq.com.

* ``GET /cgi-bin/token?grant_type=client_credential&appid&secret``: an
  access_token of 7,200 s; a new one leaves the previous one 5 more minutes.
* ``POST /channels/ec/product/stock/update``: ``diff_type`` 1 add, 2 reduce,
  3 set; 10020112 when rate-limited (too frequent for the SKU).
* ``POST /channels/ec/product/stock/get``, ``/channels/ec/order/list/get``
  (``update_time_range``, ``page_size``, ``next_key``), ``/channels/ec/order/get``,
  ``/channels/ec/order/delivery/send``, ``/channels/ec/funds/getfundsflowlist``
  and ``/channels/ec/funds/getfundsflowdetail``.

Every API answers HTTP 200 with ``errcode``/``errmsg``: 40001 for an unknown
token, 42001 for an expired one, 45011 when rate-limited.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.sandbox import products
from connectors.sandbox.calls import (
    REQUEST_ID_HEADER,
    Answer,
    Dialect,
    handle_call,
    window,
)
from connectors.sandbox.pushes import PushSender
from connectors.sandbox.state import Order, SandboxState, Shop, Token
from connectors.wechat_shop.protocol import ACCESS_TOKEN_TTL_S

PLATFORM = "wechat_shop"
STATUS_CODES = {
    "created": 10,
    "paid": 20,
    "shipped": 30,
    "completed": 100,
    "cancelled": 250,
}
OVERLAP_S = 300


def _error(code: int, message: str) -> Answer:
    return Answer({"errcode": code, "errmsg": message}, ok=False)


def _rate_limited(api: str) -> Answer:
    if api.endswith("/stock/update"):
        return _error(10020112, "更新该sku库存频率超限")
    return _error(45011, "api minute-quota reach limit mustslower retry next minute")


DIALECT = Dialect(
    rate_limited=_rate_limited,
    token_expired=lambda: _error(42001, "access_token expired"),
)


def render_order(order: Order) -> dict[str, Any]:
    """An order as ``/channels/ec/order/get`` returns it."""
    buyer = order.buyer
    return {
        "order_id": order.order_id,
        "openid": order.buyer_ref,
        "create_time": order.created_at,
        "update_time": order.updated_at,
        "status": STATUS_CODES[order.status],
        "order_detail": {
            "product_infos": [
                {
                    "product_id": line.product_id,
                    "sku_id": line.sku_id,
                    "sku_cnt": line.quantity,
                    "sale_price": line.unit_price_fen,
                    "real_price": line.amount_fen,
                    "title": line.title,
                }
                for line in order.lines
            ],
            "price_info": {
                "product_price": sum(
                    line.unit_price_fen * line.quantity for line in order.lines
                ),
                "order_price": order.total_fen,
                "freight": 0,
                "discounted_price": sum(line.discount_fen for line in order.lines),
            },
            "delivery_info": {
                "address_info": {
                    "user_name": buyer.get("name", ""),
                    "tel_number": buyer.get("phone", ""),
                    "province_name": buyer.get("province", ""),
                    "city_name": buyer.get("city", ""),
                    "county_name": buyer.get("district", ""),
                    "detail_info": buyer.get("detail", ""),
                },
                "delivery_product_info": (
                    [
                        {
                            "waybill_id": order.tracking_no,
                            "delivery_id": order.carrier_code,
                        }
                    ]
                    if order.tracking_no
                    else []
                ),
            },
        },
    }


def routes(state: SandboxState, pushes: PushSender) -> list[Route]:  # noqa: PLR0915
    """The WeChat Shop routes.

    Args:
        state: The sandbox state.
        pushes: The push sender (shipments push a deliver event).

    Returns:
        The routes.
    """

    async def token(request: Request) -> Response:
        params = request.query_params
        if params.get("grant_type") != "client_credential":
            return JSONResponse({"errcode": 40002, "errmsg": "invalid grant_type"})
        shop = state.find_shop(PLATFORM, "app_id", params.get("appid", ""))
        if shop is None:
            return JSONResponse({"errcode": 40013, "errmsg": "invalid appid"})
        if shop.credentials["app_secret"] != params.get("secret"):
            return JSONResponse({"errcode": 40125, "errmsg": "invalid appsecret"})
        soon = state.now() + OVERLAP_S
        for old in state.platform(PLATFORM).access_tokens.values():
            if old.shop_id == shop.shop_id:
                old.expires_at = min(old.expires_at, soon)
        issued = state.issue_access(PLATFORM, shop.shop_id, ACCESS_TOKEN_TTL_S)
        return JSONResponse(
            {"access_token": issued.value, "expires_in": ACCESS_TOKEN_TTL_S}
        )

    def api(
        path: str,
        work: Callable[[Shop, dict[str, Any]], Awaitable[Answer]],
        *,
        write: bool = False,
    ) -> Route:
        async def endpoint(request: Request) -> Response:
            raw = await request.body()
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = None

            def authenticate() -> tuple[Shop, Token] | Answer:
                verdict, found = state.check_access(
                    PLATFORM, request.query_params.get("access_token")
                )
                if verdict == "invalid" or found is None:
                    return _error(
                        40001,
                        "invalid credential, access_token is invalid or not latest",
                    )
                if verdict == "expired":
                    return _error(42001, "access_token expired")
                return state.shop(PLATFORM, found.shop_id), found

            async def apply(shop: Shop) -> Answer:
                if not isinstance(body, dict):
                    return _error(47001, "data format error")
                return await work(shop, body)

            return await handle_call(
                state,
                PLATFORM,
                path,
                dialect=DIALECT,
                authenticate=authenticate,
                apply=apply,
                request_id=request.headers.get(REQUEST_ID_HEADER),
                idempotent_write=write,
            )

        return Route(path, endpoint, methods=["POST"])

    async def stock_update(shop: Shop, body: dict[str, Any]) -> Answer:
        sku = shop.skus.get(str(body.get("sku_id")))
        if sku is None or sku.product_id != str(body.get("product_id")):
            return _error(10020052, "商品不存在,或该商品未曾经上架成功过")
        diff_type, num = body.get("diff_type"), body.get("num")
        if diff_type not in (1, 2, 3) or not isinstance(num, int) or num < 0:
            return _error(10020051, "参数错误,请开发者按照文档传参")
        if diff_type in (1, 2) and num == 0:
            return _error(10020218, "增加减少数量为0")
        if diff_type == 2 and sku.stock < num:
            return _error(10020219, "库存不足以减扣")
        if diff_type == 3:
            state.change_stock(shop, sku.sku_id, delta=None, absolute=num)
        else:
            delta = num if diff_type == 1 else -num
            state.change_stock(shop, sku.sku_id, delta=delta, absolute=None)
        return Answer({"errcode": 0, "errmsg": "ok"})

    async def stock_get(shop: Shop, body: dict[str, Any]) -> Answer:
        sku = shop.skus.get(str(body.get("sku_id")))
        if sku is None or sku.product_id != str(body.get("product_id")):
            return _error(10020052, "商品不存在")
        return Answer(
            {
                "errcode": 0,
                "errmsg": "ok",
                "data": {"normal_stock_num": sku.stock, "total_stock_num": sku.stock},
            }
        )

    async def order_list(shop: Shop, body: dict[str, Any]) -> Answer:
        span = body.get("update_time_range")
        if not isinstance(span, dict):
            return _error(47001, "update_time_range is required")
        start, end = int(span.get("start_time", 0)), int(span.get("end_time", 0))
        if end < start or end - start > 7 * 24 * 3600:
            return _error(47001, "time range must be at most 7 days")
        orders = state.orders_updated_between(shop, start, end)
        offset = int(body.get("next_key") or 0)
        page, following = window(
            orders, offset, min(int(body.get("page_size", 10)), 100)
        )
        return Answer(
            {
                "errcode": 0,
                "errmsg": "ok",
                "order_id_list": [order.order_id for order in page],
                "next_key": str(
                    following if following is not None else offset + len(page)
                ),
                "has_more": following is not None,
            }
        )

    async def order_get(shop: Shop, body: dict[str, Any]) -> Answer:
        order = shop.orders.get(str(body.get("order_id")))
        if order is None:
            return _error(10020701, "订单不存在")
        return Answer({"errcode": 0, "errmsg": "ok", "order": render_order(order)})

    async def delivery_send(shop: Shop, body: dict[str, Any]) -> Answer:
        order = shop.orders.get(str(body.get("order_id")))
        if order is None:
            return _error(10020701, "订单不存在")
        deliveries = body.get("delivery_list") or []
        if not deliveries or not isinstance(deliveries[0], dict):
            return _error(47001, "delivery_list is required")
        if order.status != "paid":
            return _error(10020710, f"订单状态不允许发货 (status {order.status})")
        first = deliveries[0]
        state.transition(
            shop,
            order,
            "ship",
            carrier_code=str(first.get("delivery_id", "")),
            tracking_no=str(first.get("waybill_id", "")),
        )
        await pushes.order_event(shop, order, "shipped")
        return Answer({"errcode": 0, "errmsg": "ok"})

    async def funds_list(shop: Shop, body: dict[str, Any]) -> Answer:
        start, end = int(body.get("start_time", 0)), int(body.get("end_time", 0))
        entries = state.settlements_between(shop, start, end)
        offset = int(body.get("next_key") or 0)
        page, following = window(entries, offset, int(body.get("page_size", 100)))
        flow_ids = [f"{entry.entry_id}" for entry in page]
        return Answer(
            {
                "errcode": 0,
                "errmsg": "ok",
                "flow_ids": flow_ids,
                "has_more": following is not None,
                "next_key": str(following or ""),
            }
        )

    async def funds_detail(shop: Shop, body: dict[str, Any]) -> Answer:
        wanted = str(body.get("flow_id"))
        for entry in shop.settlements:
            if entry.entry_id == wanted:
                return Answer(
                    {
                        "errcode": 0,
                        "errmsg": "ok",
                        "funds_flow": {
                            "flow_id": entry.entry_id,
                            "funds_type": 1,
                            "flow_type": 1,
                            "amount": entry.net_fen,
                            "service_fee": entry.fee_fen,
                            "related_info_list": [
                                {"related_type": 1, "order_id": entry.order_id}
                            ],
                            "bookkeeping_time": entry.settled_at,
                        },
                    }
                )
        return _error(47001, f"no flow {wanted}")

    return [
        Route("/cgi-bin/token", token, methods=["GET"]),
        api("/channels/ec/product/stock/update", stock_update, write=True),
        api("/channels/ec/product/stock/get", stock_get),
        api("/channels/ec/order/list/get", order_list),
        *products.wechat_routes(state, api, lambda m: _error(10020053, m)),
        api("/channels/ec/order/get", order_get),
        api("/channels/ec/order/delivery/send", delivery_send, write=True),
        api("/channels/ec/funds/getfundsflowlist", funds_list),
        api("/channels/ec/funds/getfundsflowdetail", funds_detail),
    ]
