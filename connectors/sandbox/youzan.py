"""Youzan cloud (有赞云) routes, as open.youzanyun.com.

* OAuth 2.0: ``GET /open/oauth/authorize`` redirects with a ``code`` (for the
  shop in the sandbox-only ``kdt_id`` parameter); ``POST /auth/token`` with
  ``authorize_type`` ``authorization_code`` (``code``, ``redirect_uri``) or
  ``refresh_token`` answers ``{"success", "code": 200, "data": {"access_token",
  "expires" (epoch ms), "refresh_token", "scope", "authority_id"}}``.
* API calls: ``POST /api/<name>/<version>?access_token=...`` with a JSON body.
  ``youzan.item.quantity.update/3.0.0`` (``type`` 0 overwrite, 1 add),
  ``youzan.item.get/3.0.0``, ``youzan.trades.sold.get/4.0.4`` (by
  ``start_update``/``end_update``, ``page_no`` from 1), ``youzan.trade.get/4.0.2``,
  ``youzan.logistics.online.confirm/3.0.0`` and
  ``youzan.trade.settlement.list/1.0.0`` (a sandbox name: the real settlement
  API was not found).

Gateway errors (token, signature) come back as HTTP 200 with ``gw_err_resp``;
a rate limit is HTTP 429; business errors are ``{"success": false, "code",
"message"}``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.mapping import fen_to_yuan, from_beijing_text, id_value, to_beijing_text
from connectors.sandbox import products
from connectors.sandbox.calls import (
    REQUEST_ID_HEADER,
    Answer,
    Dialect,
    handle_call,
    redirect_with_code,
    window,
)
from connectors.sandbox.pushes import YOUZAN_STATUS, PushSender
from connectors.sandbox.state import Order, SandboxState, Shop, Token
from connectors.youzan import protocol as youzan
from connectors.youzan.protocol import ACCESS_TOKEN_TTL_S

PLATFORM = "youzan"
REFRESH_TTL_S = 28 * 24 * 3600


def _gateway(code: int, message: str) -> Answer:
    return Answer(
        {youzan.GATEWAY_ERROR_KEY: {"err_code": code, "err_msg": message}}, ok=False
    )


def _fail(code: int, message: str) -> Answer:
    return Answer({"success": False, "code": code, "message": message}, ok=False)


def _ok(data: Any) -> Answer:
    return Answer({"success": True, "code": 200, "message": "successful", "data": data})


DIALECT = Dialect(
    rate_limited=lambda api: Answer(
        {youzan.GATEWAY_ERROR_KEY: {"err_code": 4003, "err_msg": "调用频次超限"}},
        status=429,
        ok=False,
    ),
    token_expired=lambda: _gateway(youzan.GATEWAY_TOKEN_EXPIRED, "token 已过期"),
)


def _text(seconds: int) -> str:
    return to_beijing_text(datetime.fromtimestamp(seconds, UTC))


def render_trade(order: Order) -> dict[str, Any]:
    """A trade as trades.sold.get and trade.get return ``full_order_info``."""
    buyer = order.buyer
    return {
        "order_info": {
            "tid": order.order_id,
            "status": YOUZAN_STATUS[order.status],
            "created": _text(order.created_at),
            "update_time": _text(order.updated_at),
        },
        "orders": [
            {
                "oid": f"{order.order_id}-{index}",
                "item_id": id_value(line.product_id),
                "sku_id": id_value(line.sku_id),
                "num": line.quantity,
                "price": fen_to_yuan(line.unit_price_fen),
                "total_fee": fen_to_yuan(line.unit_price_fen * line.quantity),
                "payment": fen_to_yuan(line.amount_fen),
                "title": line.title,
            }
            for index, line in enumerate(order.lines)
        ],
        "pay_info": {
            "payment": fen_to_yuan(order.total_fen),
            "total_fee": fen_to_yuan(
                sum(line.unit_price_fen * line.quantity for line in order.lines)
            ),
            "post_fee": "0.00",
        },
        "buyer_info": {"yz_open_id": order.buyer_ref},
        "address_info": {
            "receiver_name": buyer.get("name", ""),
            "receiver_tel": buyer.get("phone", ""),
            "delivery_province": buyer.get("province", ""),
            "delivery_city": buyer.get("city", ""),
            "delivery_district": buyer.get("district", ""),
            "delivery_address": buyer.get("detail", ""),
        },
    }


def routes(state: SandboxState, pushes: PushSender) -> list[Route]:  # noqa: PLR0915
    """The Youzan routes.

    Args:
        state: The sandbox state.
        pushes: The push sender.

    Returns:
        The routes.
    """

    async def authorize(request: Request) -> Response:
        query = request.query_params
        if state.find_shop(PLATFORM, "client_id", query.get("client_id", "")) is None:
            return JSONResponse({"success": False, "message": "client_id 无效"}, 400)
        shop_id = query.get("kdt_id", "")
        if shop_id not in state.platform(PLATFORM).shops:
            return JSONResponse(
                {"success": False, "message": "no such sandbox shop"}, 400
            )
        code = state.new_secret("code-")
        state.platform(PLATFORM).codes[code] = shop_id
        return redirect_with_code(
            query.get("redirect_uri", ""), code, query.get("state", "")
        )

    async def token(request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            body = {}
        client = state.find_shop(PLATFORM, "client_id", str(body.get("client_id", "")))
        if client is None or client.credentials["client_secret"] != body.get(
            "client_secret"
        ):
            return JSONResponse(
                {"success": False, "code": 40001, "message": "client 认证失败"}
            )
        kind = body.get("authorize_type")
        platform = state.platform(PLATFORM)
        if kind == "authorization_code":
            shop_id = platform.codes.pop(str(body.get("code")), None)
        elif kind == "refresh_token":
            old = platform.refresh_tokens.pop(str(body.get("refresh_token")), None)
            valid = old is not None and state.now() < old.expires_at
            shop_id = old.shop_id if old is not None and valid else None
        else:
            return JSONResponse(
                {"success": False, "code": 40002, "message": "authorize_type 不支持"}
            )
        if shop_id is None:
            return JSONResponse(
                {
                    "success": False,
                    "code": 40003,
                    "message": "code 或 refresh_token 无效",
                }
            )
        access = state.issue_access(PLATFORM, shop_id, ACCESS_TOKEN_TTL_S)
        refresh = state.issue_refresh(PLATFORM, shop_id, state.now() + REFRESH_TTL_S)
        return JSONResponse(
            {
                "success": True,
                "code": 200,
                "message": None,
                "data": {
                    "access_token": access.value,
                    "expires": int(access.expires_at * 1000),
                    "refresh_token": refresh.value,
                    "scope": "trade item logistics",
                    "authority_id": shop_id,
                },
            }
        )

    def api(
        name: str,
        version: str,
        work: Callable[[Shop, dict[str, Any]], Awaitable[Answer]],
        *,
        write: bool = False,
    ) -> Route:
        async def endpoint(request: Request) -> Response:
            raw = await request.body()
            business: dict[str, Any] = {}

            def authenticate() -> tuple[Shop, Token] | Answer:
                verdict, found = state.check_access(
                    PLATFORM, request.query_params.get("access_token")
                )
                if verdict == "invalid" or found is None:
                    return _gateway(youzan.GATEWAY_TOKEN_INVALID, "token 不合法")
                if verdict == "expired":
                    return DIALECT.token_expired()
                try:
                    business.update(json.loads(raw or b"{}"))
                except (ValueError, TypeError):
                    return _fail(141500101, "参数不是 JSON 对象")
                return state.shop(PLATFORM, found.shop_id), found

            async def apply(shop: Shop) -> Answer:
                return await work(shop, business)

            return await handle_call(
                state,
                PLATFORM,
                name,
                dialect=DIALECT,
                authenticate=authenticate,
                apply=apply,
                request_id=request.headers.get(REQUEST_ID_HEADER),
                idempotent_write=write,
            )

        return Route(f"/api/{name}/{version}", endpoint, methods=["POST"])

    async def quantity_update(shop: Shop, body: dict[str, Any]) -> Answer:
        sku = shop.skus.get(str(body.get("sku_id")))
        if sku is None or sku.product_id != str(body.get("item_id")):
            return _fail(141500404, "商品或规格不存在")
        quantity, kind = body.get("quantity"), body.get("type")
        if not isinstance(quantity, int) or kind not in (0, 1):
            return _fail(141500101, "quantity 须为整数, type 须为 0 或 1")
        if kind == 1:
            if sku.stock + quantity < 0:
                return _fail(141500102, "库存不足")
            state.change_stock(shop, sku.sku_id, delta=quantity, absolute=None)
        else:
            if quantity < 0:
                return _fail(141500101, "库存不能为负")
            state.change_stock(shop, sku.sku_id, delta=None, absolute=quantity)
        return _ok(True)

    async def item_get(shop: Shop, body: dict[str, Any]) -> Answer:
        item_id = str(body.get("item_id"))
        skus = [sku for sku in shop.skus.values() if sku.product_id == item_id]
        if not skus:
            return _fail(141500404, "商品不存在")
        return _ok(
            {
                "item_id": id_value(item_id),
                "skus": [
                    {
                        "sku_id": id_value(sku.sku_id),
                        "quantity": sku.stock,
                        "price": sku.price_fen,
                    }
                    for sku in skus
                ],
            }
        )

    async def sold_get(shop: Shop, body: dict[str, Any]) -> Answer:
        start = from_beijing_text(body.get("start_update"), "start_update").timestamp()
        end = from_beijing_text(body.get("end_update"), "end_update").timestamp()
        trades = state.orders_updated_between(shop, start, end)
        page_no = max(1, int(body.get("page_no", 1)))
        size = min(int(body.get("page_size", 20)), 100)
        chunk, _ = window(trades, (page_no - 1) * size, size)
        return _ok(
            {
                "total_results": len(trades),
                "full_order_info_list": [
                    {"full_order_info": render_trade(order)} for order in chunk
                ],
            }
        )

    async def trade_get(shop: Shop, body: dict[str, Any]) -> Answer:
        order = shop.orders.get(str(body.get("tid")))
        if order is None:
            return _fail(141500404, "订单不存在")
        return _ok({"full_order_info": render_trade(order)})

    async def confirm(shop: Shop, body: dict[str, Any]) -> Answer:
        order = shop.orders.get(str(body.get("tid")))
        if order is None:
            return _fail(141500404, "订单不存在")
        if order.status != "paid":
            return _fail(141500301, f"订单状态不允许发货 ({order.status})")
        state.transition(
            shop,
            order,
            "ship",
            carrier_code=str(body.get("out_stype", "")),
            tracking_no=str(body.get("out_sid", "")),
        )
        await pushes.order_event(shop, order, "shipped")
        return _ok({"is_success": True})

    async def settlement_list(shop: Shop, body: dict[str, Any]) -> Answer:
        start = from_beijing_text(body.get("start_time"), "start_time").timestamp()
        end = from_beijing_text(body.get("end_time"), "end_time").timestamp()
        entries = state.settlements_between(shop, start, end)
        page_no = max(1, int(body.get("page_no", 1)))
        size = int(body.get("page_size", 100))
        chunk, _ = window(entries, (page_no - 1) * size, size)
        return _ok(
            {
                "total": len(entries),
                "list": [
                    {
                        "settle_no": entry.entry_id,
                        "tid": entry.order_id,
                        "order_amount": fen_to_yuan(entry.gross_fen),
                        "fee": fen_to_yuan(entry.fee_fen),
                        "settle_amount": fen_to_yuan(entry.net_fen),
                        "settle_time": _text(entry.settled_at),
                    }
                    for entry in chunk
                ],
            }
        )

    return [
        Route("/open/oauth/authorize", authorize, methods=["GET"]),
        Route("/auth/token", token, methods=["POST"]),
        api("youzan.item.quantity.update", "3.0.0", quantity_update, write=True),
        api("youzan.item.get", "3.0.0", item_get),
        api("youzan.trades.sold.get", "4.0.4", sold_get),
        *products.youzan_routes(state, api, _ok, lambda m: _fail(141500404, m)),
        api("youzan.trade.get", "4.0.2", trade_get),
        api("youzan.logistics.online.confirm", "3.0.0", confirm, write=True),
        api("youzan.trade.settlement.list", "1.0.0", settlement_list),
    ]
