"""Douyin Shop (抖店) routes, as the openapi-fxg.jinritemai.com gateway.

Every call is ``POST /<method with "/">`` with ``app_key``, ``method``, ``v``,
``timestamp``, ``sign_method``, ``sign`` (and ``access_token``) in the query
and ``param_json`` as the body. The sign is recomputed over the canonical
(sorted) ``param_json``, as the platform does. Answers are HTTP 200 with
``code`` (10000 success), ``msg``, ``sub_code``, ``sub_msg``, ``data``.

* ``/token/create`` (``grant_type`` ``authorization_self`` with ``shop_id``,
  or ``authorization_code`` with ``code``) and ``/token/refresh`` (the refresh
  token rotates: the old one stops working);
* ``/sku/syncStock``: overwrites unless ``incremental`` is true; a repeated
  ``idempotent_id`` is not applied twice; ``/sku/stockNum``;
* ``/order/searchList`` (by ``update_time_start``/``update_time_end``, ``page``
  from 0, ``size``), ``/order/orderDetail``, ``/order/logisticsAdd``,
  ``/order/getSettleBillDetailV3``.

Rate limiting answers code 60000.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors.common import digests_match
from connectors.douyin_shop import protocol as douyin
from connectors.mapping import from_beijing_text, id_value, to_beijing_text
from connectors.sandbox import products
from connectors.sandbox.calls import (
    REQUEST_ID_HEADER,
    Answer,
    Dialect,
    handle_call,
    window,
)
from connectors.sandbox.pushes import DOUYIN_STATUS, PushSender
from connectors.sandbox.state import Order, SandboxState, Shop, Token

PLATFORM = "douyin_shop"


def _answer(code: int, msg: str, sub_code: str = "", sub_msg: str = "") -> Answer:
    return Answer(
        {
            "code": code,
            "msg": msg,
            "sub_code": sub_code,
            "sub_msg": sub_msg,
            "data": {},
        },
        ok=False,
    )


def _ok(data: Any) -> Answer:
    return Answer({"code": douyin.SUCCESS_CODE, "msg": "success", "data": data})


def _business(message: str) -> Answer:
    return _answer(
        douyin.BUSINESS_FAILED_CODE, "业务处理失败", "isv.business-failed", message
    )


DIALECT = Dialect(
    rate_limited=lambda api: _answer(
        douyin.RATE_LIMIT_CODE, "请求频率过快", "isv.app-call-limited", "请稍后再试"
    ),
    token_expired=lambda: _answer(
        douyin.INVALID_PARAMETER_CODE,
        "非法的参数",
        "isv.access-token-expired",
        "access_token已过期",
    ),
)


def render_order(order: Order) -> dict[str, Any]:
    """An order as searchList and orderDetail return it (ids as int64)."""
    buyer = order.buyer
    return {
        "order_id": order.order_id,
        "order_status": DOUYIN_STATUS[order.status],
        "create_time": order.created_at,
        "update_time": order.updated_at,
        "order_amount": order.total_fen,
        "pay_amount": order.total_fen,
        "post_receiver": buyer.get("name", ""),
        "post_tel": buyer.get("phone", ""),
        "post_addr": {
            "province": {"name": buyer.get("province", "")},
            "city": {"name": buyer.get("city", "")},
            "town": {"name": buyer.get("district", "")},
            "detail": buyer.get("detail", ""),
        },
        "doudian_open_id": order.buyer_ref,
        "logistics_code": order.tracking_no or "",
        "sku_order_list": [
            {
                "order_id": str(int(order.order_id) + 1 + index),
                "parent_order_id": order.order_id,
                "sku_id": id_value(line.sku_id),
                "product_id": id_value(line.product_id),
                "item_num": line.quantity,
                "goods_price": line.unit_price_fen,
                "origin_amount": line.unit_price_fen * line.quantity,
                "promotion_amount": line.discount_fen,
                "pay_amount": line.amount_fen,
                "product_name": line.title,
            }
            for index, line in enumerate(order.lines)
        ],
    }


def routes(state: SandboxState, pushes: PushSender) -> list[Route]:  # noqa: PLR0915
    """The Douyin Shop routes.

    Args:
        state: The sandbox state.
        pushes: The push sender.

    Returns:
        The routes.
    """

    # One return per distinct platform error, as the gateway words them.
    def signed(  # noqa: PLR0911
        request: Request, raw: bytes
    ) -> tuple[dict[str, Any], Shop] | Answer:
        """Check the sign; the params and the app's shop (any shop of the app)."""
        query = request.query_params
        app_key = query.get("app_key", "")
        app_shop = state.find_shop(PLATFORM, "app_key", app_key)
        if app_shop is None:
            return _answer(40003, "非法的参数", "isv.app-id-invalid", "app_key不存在")
        method = query.get("method", "")
        if method.replace(".", "/") != request.url.path.strip("/"):
            return _answer(
                40003, "非法的参数", "isv.invalid-method", "method与路径不符"
            )
        try:
            params = json.loads(raw or b"{}")
        except ValueError:
            return _answer(
                40003,
                "非法的参数",
                "isv.parameter-format-invalid",
                "param_json解析失败",
            )
        if not isinstance(params, dict):
            return _answer(
                40003,
                "非法的参数",
                "isv.parameter-format-invalid",
                "param_json解析失败",
            )
        try:
            expected = douyin.sign(
                app_key,
                app_shop.credentials["app_secret"],
                method,
                douyin.canonical_param_json(params),
                query.get("timestamp", ""),
                query.get("v", ""),
                query.get("sign_method", "md5"),
            )
        except douyin.UnsupportedSignMethodError:
            return _answer(
                40003, "非法的参数", "isv.signature-invalid", "sign_method不支持"
            )
        if query.get("v") != douyin.API_VERSION or not digests_match(
            expected, query.get("sign", ""), ignore_case=True
        ):
            return _answer(40003, "非法的参数", "isv.signature-invalid", "签名校验失败")
        return params, app_shop

    async def token_create(request: Request) -> Response:
        raw = await request.body()
        checked = signed(request, raw)
        if isinstance(checked, Answer):
            return checked.response()
        params, app_shop = checked
        grant = params.get("grant_type")
        if grant == "authorization_self":
            shop_id = str(params.get("shop_id", ""))
        elif grant == "authorization_code":
            shop_id = state.platform(PLATFORM).codes.pop(str(params.get("code")), "")
        else:
            return _answer(
                40003, "非法的参数", "isv.parameter-invalid", "grant_type错误"
            ).response()
        shop = state.platform(PLATFORM).shops.get(shop_id)
        if (
            shop is None
            or shop.credentials["app_key"] != app_shop.credentials["app_key"]
        ):
            return _answer(
                50001, "生成token失败", "dop.authorization-no-existed", "店铺未授权"
            ).response()
        return _grant(shop).response()

    def _grant(shop: Shop) -> Answer:
        access = state.issue_access(PLATFORM, shop.shop_id, douyin.ACCESS_TOKEN_TTL_S)
        refresh = state.issue_refresh(
            PLATFORM, shop.shop_id, state.now() + douyin.REFRESH_TOKEN_TTL_S
        )
        return _ok(
            {
                "access_token": access.value,
                "expires_in": douyin.ACCESS_TOKEN_TTL_S,
                "refresh_token": refresh.value,
                "scope": "SCOPE",
                "shop_id": id_value(shop.shop_id),
                "shop_name": shop.credentials.get("shop_name", shop.shop_id),
            }
        )

    async def token_refresh(request: Request) -> Response:
        raw = await request.body()
        checked = signed(request, raw)
        if isinstance(checked, Answer):
            return checked.response()
        params, _ = checked
        tokens = state.platform(PLATFORM).refresh_tokens
        old = tokens.pop(str(params.get("refresh_token")), None)
        if old is None or state.now() >= old.expires_at:
            return _answer(
                50001,
                "生成token失败",
                "dop.token-generate-failed:token-expired",
                "refresh_token无效或已过期",
            ).response()
        return _grant(state.shop(PLATFORM, old.shop_id)).response()

    def api(
        path: str,
        work: Callable[[Shop, dict[str, Any]], Awaitable[Answer]],
        *,
        write: bool = False,
    ) -> Route:
        async def endpoint(request: Request) -> Response:
            raw = await request.body()
            params: dict[str, Any] = {}

            def authenticate() -> tuple[Shop, Token] | Answer:
                checked = signed(request, raw)
                if isinstance(checked, Answer):
                    return checked
                params.update(checked[0])
                verdict, found = state.check_access(
                    PLATFORM, request.query_params.get("access_token")
                )
                if verdict == "invalid" or found is None:
                    return _answer(
                        40003,
                        "非法的参数",
                        "isv.access-token-no-existed",
                        "access_token不存在，请使用最新的access_token访问",
                    )
                if verdict == "expired":
                    return DIALECT.token_expired()
                return state.shop(PLATFORM, found.shop_id), found

            async def apply(shop: Shop) -> Answer:
                return await work(shop, params)

            request_id = request.headers.get(REQUEST_ID_HEADER)
            if path == "/sku/syncStock" and not request_id:
                try:
                    request_id = str(json.loads(raw).get("idempotent_id") or "") or None
                except (ValueError, AttributeError):
                    request_id = None
            return await handle_call(
                state,
                PLATFORM,
                path,
                dialect=DIALECT,
                authenticate=authenticate,
                apply=apply,
                request_id=request_id,
                idempotent_write=write,
            )

        return Route(path, endpoint, methods=["POST"])

    async def sync_stock(shop: Shop, params: dict[str, Any]) -> Answer:
        sku = shop.skus.get(str(params.get("sku_id")))
        if sku is None:
            return _business("sku不存在")
        stock_num = params.get("stock_num")
        if not isinstance(stock_num, int):
            return _answer(
                40003, "非法的参数", "isv.parameter-invalid", "stock_num错误"
            )
        if params.get("incremental") is True:
            if sku.stock + stock_num < 0:
                return _business("库存不足")
            state.change_stock(shop, sku.sku_id, delta=stock_num, absolute=None)
        else:
            if stock_num < 0:
                return _business("库存不能为负")
            state.change_stock(shop, sku.sku_id, delta=None, absolute=stock_num)
        return _ok({})

    async def stock_num(shop: Shop, params: dict[str, Any]) -> Answer:
        sku = shop.skus.get(str(params.get("sku_id")))
        if sku is None:
            return _business("sku不存在")
        return _ok(
            {"sku_id": id_value(sku.sku_id), "stock_num": sku.stock, "sku_type": 0}
        )

    async def search_list(shop: Shop, params: dict[str, Any]) -> Answer:
        start = int(params.get("update_time_start", 0))
        end = int(params.get("update_time_end", 0))
        orders = state.orders_updated_between(shop, start, end)
        page, size = int(params.get("page", 0)), min(int(params.get("size", 10)), 100)
        chunk, _ = window(orders, page * size, size)
        return _ok(
            {
                "shop_order_list": [render_order(order) for order in chunk],
                "total": len(orders),
                "page": page,
                "size": size,
            }
        )

    async def order_detail(shop: Shop, params: dict[str, Any]) -> Answer:
        order = shop.orders.get(str(params.get("shop_order_id")))
        if order is None:
            return _business("订单不存在")
        return _ok({"shop_order_detail": render_order(order)})

    async def logistics_add(shop: Shop, params: dict[str, Any]) -> Answer:
        order = shop.orders.get(str(params.get("order_id")))
        if order is None:
            return _business("订单不存在")
        if order.status != "paid":
            return _business(f"订单状态不允许发货 ({order.status})")
        state.transition(
            shop,
            order,
            "ship",
            carrier_code=str(params.get("company_code", "")),
            tracking_no=str(params.get("logistics_code", "")),
        )
        await pushes.order_event(shop, order, "shipped")
        return _ok({})

    async def settle_bills(shop: Shop, params: dict[str, Any]) -> Answer:
        start = from_beijing_text(params.get("start_time"), "start_time").timestamp()
        end = from_beijing_text(params.get("end_time"), "end_time").timestamp()
        entries = state.settlements_between(shop, start, end)
        offset = int(params.get("start_index") or 0)
        chunk, following = window(entries, offset, int(params.get("size", 100)))
        return _ok(
            {
                "data": [
                    {
                        "request_no": entry.entry_id,
                        "shop_order_id": entry.order_id,
                        "total_amount": entry.gross_fen,
                        "platform_service_fee": entry.fee_fen,
                        "commission": entry.commission_fen,
                        "settle_amount": entry.net_fen,
                        "settle_time": to_beijing_text(_utc(entry.settled_at)),
                    }
                    for entry in chunk
                ],
                "next_start_index": str(following or ""),
                "is_end": 0 if following is not None else 1,
            }
        )

    return [
        Route("/token/create", token_create, methods=["POST"]),
        Route("/token/refresh", token_refresh, methods=["POST"]),
        api("/sku/syncStock", sync_stock, write=True),
        api("/sku/stockNum", stock_num),
        api("/order/searchList", search_list),
        *products.douyin_routes(state, api, _ok, _business),
        api("/order/orderDetail", order_detail),
        api("/order/logisticsAdd", logistics_add, write=True),
        api("/order/getSettleBillDetailV3", settle_bills),
    ]


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
