"""Kuaishou Shop (快手小店) routes, as openapi.kwaixiaodian.com.

* OAuth 2.0: ``GET /oauth/authorize`` redirects to ``redirect_uri`` with a
  ``code`` (the sandbox authorises at once, for the shop named by its
  ``shop_id`` query parameter, a sandbox extension); ``GET
  /oauth2/access_token?app_id&grant_type=code&code&app_secret`` gives a 48 h
  access token and a refresh token; ``GET /oauth2/refresh_token`` rotates the
  refresh token (the old one keeps working 5 minutes) and keeps its expiry.
* API calls: ``POST /<method with "/">`` with the form ``appkey``, ``method``,
  ``version``, ``access_token``, ``timestamp``, ``signMethod``, ``param``
  (JSON text) and ``sign``, checked with ``kuaishou_shop.protocol.verify_sign``.
  ``open.item.sku.stock.update`` (``changeType`` 1 add, 2 reduce),
  ``open.item.get``, ``open.order.cursor.list`` (``queryType`` 2: by update
  time, ``cursor`` until ``"nomore"``), ``open.order.detail``,
  ``open.seller.order.goods.deliver`` and ``open.funds.settled.bill.list``
  (a sandbox name: the settlement API's real name was not found).

Answers: ``{"result": 1, "data": ...}``; failures carry another ``result``
and ``error_msg``; a QPS limit says ``"Exceed qps limit"``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.kuaishou_shop import protocol as kuaishou
from connectors.mapping import id_value
from connectors.sandbox import products
from connectors.sandbox.calls import (
    REQUEST_ID_HEADER,
    Answer,
    Dialect,
    handle_call,
    redirect_with_code,
    window,
)
from connectors.sandbox.pushes import KUAISHOU_STATUS, PushSender
from connectors.sandbox.state import Order, SandboxState, Shop, Token

PLATFORM = "kuaishou_shop"
OLD_REFRESH_GRACE_S = 300


def _fail(result: int, message: str) -> Answer:
    return Answer({"result": result, "error_msg": message, "msg": message}, ok=False)


def _ok(data: Any) -> Answer:
    return Answer({"result": kuaishou.RESULT_OK, "msg": "success", "data": data})


DIALECT = Dialect(
    rate_limited=lambda api: _fail(
        kuaishou.RESULT_RATE_LIMITED, f"{kuaishou.RATE_LIMIT_MESSAGE} ({api})"
    ),
    token_expired=lambda: _fail(kuaishou.RESULT_TOKEN_EXPIRED, "access_token过期"),
)


def render_order(order: Order) -> dict[str, Any]:
    """An order as cursor.list and detail return it (times in ms)."""
    buyer = order.buyer
    items = [
        {
            "itemId": id_value(line.product_id),
            "skuId": id_value(line.sku_id),
            "num": line.quantity,
            "originalPrice": line.unit_price_fen,
            "price": line.unit_price_fen,
            "discountFee": line.discount_fen,
            "itemTitle": line.title,
        }
        for line in order.lines
    ]
    rendered: dict[str, Any] = {
        "orderBaseInfo": {
            "oid": int(order.order_id),
            "status": KUAISHOU_STATUS[order.status],
            "createTime": order.created_at * 1000,
            "updateTime": order.updated_at * 1000,
            "totalFee": order.total_fen,
            "discountFee": sum(line.discount_fen for line in order.lines),
            "expressFee": 0,
            "buyerOpenId": order.buyer_ref,
        },
        "orderAddress": {
            "consignee": buyer.get("name", ""),
            "mobile": buyer.get("phone", ""),
            "province": buyer.get("province", ""),
            "city": buyer.get("city", ""),
            "district": buyer.get("district", ""),
            "address": buyer.get("detail", ""),
        },
    }
    if len(items) == 1:
        rendered["orderItemInfo"] = items[0]
    else:
        rendered["orderItemInfoList"] = items
    return rendered


def routes(state: SandboxState, pushes: PushSender) -> list[Route]:  # noqa: PLR0915
    """The Kuaishou Shop routes.

    Args:
        state: The sandbox state.
        pushes: The push sender.

    Returns:
        The routes.
    """

    def app_shop(app_id: str, app_secret: str | None = None) -> Shop | None:
        shop = state.find_shop(PLATFORM, "app_id", app_id)
        if shop is None:
            return None
        if app_secret is not None and shop.credentials["app_secret"] != app_secret:
            return None
        return shop

    async def authorize(request: Request) -> Response:
        query = request.query_params
        if app_shop(query.get("app_id", "")) is None:
            return JSONResponse({"result": 100, "error_msg": "app_id无效"}, 400)
        shop_id = query.get("shop_id", "")
        shop = state.platform(PLATFORM).shops.get(shop_id)
        if shop is None:
            return JSONResponse(
                {"result": 100, "error_msg": "no such sandbox shop"}, 400
            )
        code = state.new_secret("code-")
        state.platform(PLATFORM).codes[code] = shop_id
        return redirect_with_code(
            query.get("redirect_uri", ""), code, query.get("state", "")
        )

    def grant(shop: Shop, refresh_expires_at: float) -> JSONResponse:
        access = state.issue_access(PLATFORM, shop.shop_id, kuaishou.ACCESS_TOKEN_TTL_S)
        refresh = state.issue_refresh(PLATFORM, shop.shop_id, refresh_expires_at)
        return JSONResponse(
            {
                "result": 1,
                "access_token": access.value,
                "expires_in": kuaishou.ACCESS_TOKEN_TTL_S,
                "refresh_token": refresh.value,
                "refresh_token_expires_in": max(
                    0, int(refresh_expires_at - state.now())
                ),
                "open_id": f"open-{shop.shop_id}",
                "scopes": ["merchant_item", "merchant_order", "merchant_funds"],
            }
        )

    async def access_token(request: Request) -> Response:
        query = request.query_params
        if app_shop(query.get("app_id", ""), query.get("app_secret")) is None:
            return JSONResponse({"result": 100, "error": "invalid_client"})
        if query.get("grant_type") != "code":
            return JSONResponse({"result": 100, "error": "unsupported_grant_type"})
        shop_id = state.platform(PLATFORM).codes.pop(query.get("code", ""), None)
        if shop_id is None:
            return JSONResponse({"result": 100, "error": "invalid_grant"})
        shop = state.shop(PLATFORM, shop_id)
        return grant(shop, state.now() + kuaishou.REFRESH_TOKEN_TTL_S)

    async def refresh_token(request: Request) -> Response:
        query = request.query_params
        if app_shop(query.get("app_id", ""), query.get("app_secret")) is None:
            return JSONResponse({"result": 100, "error": "invalid_client"})
        tokens = state.platform(PLATFORM).refresh_tokens
        old = tokens.get(query.get("refresh_token", ""))
        if old is None or state.now() >= old.expires_at:
            return JSONResponse({"result": 100, "error": "invalid_grant"})
        inherited = old.expires_at
        # The predecessor dies within five minutes; the successor keeps the
        # original expiry (180 days from authorisation).
        old.expires_at = min(old.expires_at, state.now() + OLD_REFRESH_GRACE_S)
        return grant(state.shop(PLATFORM, old.shop_id), inherited)

    def api(
        method: str,
        work: Callable[[Shop, dict[str, Any]], Awaitable[Answer]],
        *,
        write: bool = False,
    ) -> Route:
        path = "/" + method.replace(".", "/")

        async def endpoint(request: Request) -> Response:
            # Parsed by hand: Starlette's form parser needs python-multipart.
            raw = (await request.body()).decode("utf-8", "replace")
            params = dict(parse_qsl(raw, keep_blank_values=True))
            params.update(request.query_params)
            business: dict[str, Any] = {}

            def authenticate() -> tuple[Shop, Token] | Answer:  # noqa: PLR0911
                shop = app_shop(params.get("appkey", ""))
                if shop is None:
                    return _fail(100, "appkey无效")
                try:
                    kuaishou.verify_sign(params, shop.credentials["sign_secret"])
                except (kuaishou.SignatureError, kuaishou.UnsupportedSignMethodError):
                    return _fail(
                        kuaishou.RESULT_SIGN_INVALID, "签名校验失败 (sign invalid)"
                    )
                if params.get("method") != method:
                    return _fail(100, f"method {params.get('method')} 与路径不符")
                try:
                    business.update(json.loads(params.get("param") or "{}"))
                except (ValueError, TypeError):
                    return _fail(100, "param 不是 JSON")
                verdict, found = state.check_access(
                    PLATFORM, params.get("access_token")
                )
                if verdict == "invalid" or found is None:
                    return _fail(kuaishou.RESULT_TOKEN_INVALID, "access_token无效")
                if verdict == "expired":
                    return DIALECT.token_expired()
                return state.shop(PLATFORM, found.shop_id), found

            async def apply(shop: Shop) -> Answer:
                return await work(shop, business)

            return await handle_call(
                state,
                PLATFORM,
                method,
                dialect=DIALECT,
                authenticate=authenticate,
                apply=apply,
                request_id=request.headers.get(REQUEST_ID_HEADER),
                idempotent_write=write,
            )

        return Route(path, endpoint, methods=["POST", "GET"])

    async def stock_update(shop: Shop, param: dict[str, Any]) -> Answer:
        sku = shop.skus.get(str(param.get("skuId")))
        if sku is None or sku.product_id != str(param.get("kwaiItemId")):
            return _fail(100, "商品或SKU不存在")
        change, kind = param.get("skuChangeStock"), param.get("changeType")
        if not isinstance(change, int) or change <= 0 or kind not in (1, 2):
            return _fail(100, "skuChangeStock 须为正整数, changeType 须为 1 或 2")
        if kind == 2 and sku.stock < change:
            return _fail(100, "库存不足")
        state.change_stock(
            shop, sku.sku_id, delta=change if kind == 1 else -change, absolute=None
        )
        return _ok({})

    async def item_get(shop: Shop, param: dict[str, Any]) -> Answer:
        item_id = str(param.get("kwaiItemId"))
        skus = [sku for sku in shop.skus.values() if sku.product_id == item_id]
        if not skus:
            return _fail(100, "商品不存在")
        return _ok(
            {
                "kwaiItemId": id_value(item_id),
                "skuInfos": [
                    {
                        "kwaiSkuId": id_value(sku.sku_id),
                        "skuStock": sku.stock,
                        "skuSalePrice": sku.price_fen,
                    }
                    for sku in skus
                ],
            }
        )

    async def cursor_list(shop: Shop, param: dict[str, Any]) -> Answer:
        if param.get("queryType", 1) != 2:
            return _fail(100, "sandbox lists by update time only (queryType 2)")
        start = int(param.get("beginTime", 0)) / 1000
        end = int(param.get("endTime", 0)) / 1000
        orders = state.orders_updated_between(shop, start, end)
        cursor = param.get("cursor") or "0"
        if cursor == "nomore":
            return _ok({"cursor": "nomore", "orderList": []})
        chunk, following = window(
            orders, int(cursor), min(int(param.get("pageSize", 20)), 100)
        )
        return _ok(
            {
                "cursor": str(following) if following is not None else "nomore",
                "orderList": [render_order(order) for order in chunk],
            }
        )

    async def detail(shop: Shop, param: dict[str, Any]) -> Answer:
        order = shop.orders.get(str(param.get("oid")))
        if order is None:
            return _fail(100, "订单不存在")
        return _ok(render_order(order))

    async def deliver(shop: Shop, param: dict[str, Any]) -> Answer:
        order = shop.orders.get(str(param.get("orderId")))
        if order is None:
            return _fail(100, "订单不存在")
        if order.status != "paid":
            return _fail(100, f"订单状态不允许发货 ({order.status})")
        state.transition(
            shop,
            order,
            "ship",
            carrier_code=str(param.get("expressCode", "")),
            tracking_no=str(param.get("expressNo", "")),
        )
        await pushes.order_event(shop, order, "shipped")
        return _ok({})

    async def settled_bills(shop: Shop, param: dict[str, Any]) -> Answer:
        start = int(param.get("beginTime", 0)) / 1000
        end = int(param.get("endTime", 0)) / 1000
        entries = state.settlements_between(shop, start, end)
        cursor = param.get("cursor") or "0"
        if cursor == "nomore":
            return _ok({"cursor": "nomore", "settledBills": []})
        chunk, following = window(entries, int(cursor), int(param.get("pageSize", 100)))
        return _ok(
            {
                "cursor": str(following) if following is not None else "nomore",
                "settledBills": [
                    {
                        "billId": entry.entry_id,
                        "oid": int(entry.order_id),
                        "orderAmount": entry.gross_fen,
                        "platformFee": entry.fee_fen,
                        "settlementAmount": entry.net_fen,
                        "settlementTime": entry.settled_at * 1000,
                    }
                    for entry in chunk
                ],
            }
        )

    return [
        Route("/oauth/authorize", authorize, methods=["GET"]),
        Route("/oauth2/access_token", access_token, methods=["GET", "POST"]),
        Route("/oauth2/refresh_token", refresh_token, methods=["GET", "POST"]),
        api("open.item.sku.stock.update", stock_update, write=True),
        api("open.item.get", item_get),
        api("open.order.cursor.list", cursor_list),
        *products.kuaishou_routes(state, api, _ok, lambda m: _fail(100, m)),
        api("open.order.detail", detail),
        api("open.seller.order.goods.deliver", deliver, write=True),
        api("open.funds.settled.bill.list", settled_bills),
    ]
