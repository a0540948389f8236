"""WeChat Shop payloads ↔ platform-neutral orders and settlements (pure).

Orders come from ``/channels/ec/order/get`` (``order``). Pushes are decoded by
``webhook.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.common import (
    BuyerPersonalData,
    OrderLine,
    OrderStatus,
    PlatformOrder,
    SettlementEntry,
)
from connectors.mapping import (
    TranslateError,
    field,
    from_unix_s,
    integer,
    join_address,
    optional_text,
    platform_id,
)
from connectors.products import ProductShape
from connectors.wechat_shop.policy import PLATFORM

#: WeChat order status codes → neutral status (订单状态 of order/get).
STATUS: Mapping[int, OrderStatus] = {
    10: "created",  # 待付款
    12: "created",  # 礼物待收下
    13: "created",  # 凑单买凑团中
    20: "paid",  # 待发货
    21: "paid",  # 部分发货
    30: "shipped",  # 待收货
    100: "completed",  # 完成
    200: "cancelled",  # 全部商品售后之后，订单取消
    250: "cancelled",  # 未付款用户主动取消或超时未付款订单自动取消
}


def order_from_payload(shop_id: str, order: Mapping[str, Any]) -> PlatformOrder:
    """A :class:`PlatformOrder` from the ``order`` object of order/get.

    Args:
        shop_id: The shop the order belongs to.
        order: The ``order`` object.

    Returns:
        The neutral order; line discount = ``sale_price * sku_cnt - real_price``.

    Raises:
        TranslateError: If a required field is missing or malformed, or the
            status code is unknown.
    """
    where = "WeChat order"
    order_id = platform_id(field(order, "order_id", where), "WeChat order_id")
    status_code = integer(field(order, "status", where), "WeChat order status")
    if status_code not in STATUS:
        raise TranslateError(
            f"WeChat order {order_id} has unknown status {status_code}"
        )
    detail = field(order, "order_detail", where)
    lines = tuple(
        _line(info, order_id) for info in field(detail, "product_infos", "order_detail")
    )
    price_info = detail.get("price_info") or {}
    total = price_info.get("order_price")
    total_fen = (
        integer(total, "order_price")
        if total is not None
        else sum(line.amount_fen for line in lines)
    )
    address = (detail.get("delivery_info") or {}).get("address_info") or {}
    buyer = BuyerPersonalData(
        name=optional_text(address.get("user_name")),
        phone=optional_text(address.get("tel_number")),
        address=join_address(
            address.get(key)
            for key in ("province_name", "city_name", "county_name", "detail_info")
        ),
        buyer_ref=optional_text(order.get("openid")),
    )
    return PlatformOrder(
        platform=PLATFORM,
        shop_id=shop_id,
        order_id=order_id,
        status=STATUS[status_code],
        platform_status=str(status_code),
        lines=lines,
        total_fen=total_fen,
        created_at=from_unix_s(field(order, "create_time", where), "create_time"),
        updated_at=from_unix_s(field(order, "update_time", where), "update_time"),
        buyer=buyer,
    )


def _line(info: Mapping[str, Any], order_id: str) -> OrderLine:
    where = f"product_infos of WeChat order {order_id}"
    quantity = integer(field(info, "sku_cnt", where), "sku_cnt")
    unit = integer(field(info, "sale_price", where), "sale_price")
    paid = info.get("real_price")
    discount = 0 if paid is None else unit * quantity - integer(paid, "real_price")
    return OrderLine(
        platform_sku_id=platform_id(field(info, "sku_id", where), "sku_id"),
        platform_product_id=platform_id(field(info, "product_id", where), "product_id"),
        quantity=quantity,
        unit_price_fen=unit,
        discount_fen=discount,
        title=str(info.get("title") or ""),
    )


def settlement_entry(flow: Mapping[str, Any]) -> SettlementEntry | None:
    """A settlement entry from a ``funds_flow`` of getfundsflowdetail.

    Income flows (``flow_type`` 1) of an order give an entry; the fee of the
    order is its ``service_fee`` (WeChat Pay's 0.6 %, deducted before income).

    Args:
        flow: The ``funds_flow`` object.

    Returns:
        The entry, or None for flows that are not order income.
    """
    where = "WeChat funds_flow"
    if integer(field(flow, "flow_type", where), "flow_type") != 1:
        return None
    related = flow.get("related_info_list") or []
    order_ids = [
        platform_id(item["order_id"], "related_info.order_id")
        for item in related
        if isinstance(item, Mapping) and item.get("order_id") is not None
    ]
    if not order_ids:
        return None
    net = integer(field(flow, "amount", where), "amount")
    fee = integer(flow.get("service_fee", 0), "service_fee")
    return SettlementEntry(
        entry_id=platform_id(field(flow, "flow_id", where), "flow_id"),
        order_id=order_ids[0],
        gross_fen=net + fee,
        fee_fen=fee,
        net_fen=net,
        settled_at=from_unix_s(
            field(flow, "bookkeeping_time", where), "bookkeeping_time"
        ),
    )


#: WeChat Shop's product fields (``/channels/ec/product/add|update|get``):
#: no product-level price, the SKUs carry it; ``edit_time`` in Unix seconds.
PRODUCT_SHAPE = ProductShape(
    product_id="product_id",
    outer="out_product_id",
    title="title",
    images="head_imgs",
    skus="skus",
    sku_code="out_sku_id",
    sku_price="sale_price",
    sku_props="sku_attrs",
    prop_key="attr_key",
    prop_value="attr_value",
    edited="edit_time",
    edited_at=lambda value: from_unix_s(value, "edit_time"),
)
