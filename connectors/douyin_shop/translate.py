"""Douyin Shop payloads ↔ platform-neutral orders and settlements (pure).

Orders come from ``/order/searchList`` (``shop_order_list``) and
``/order/orderDetail`` (``shop_order_detail``); ids are int64 and may exceed
2^53, so they are kept as text. Pushes are decoded by ``webhook.py``.
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
from connectors.douyin_shop.policy import PLATFORM
from connectors.mapping import (
    TranslateError,
    field,
    from_beijing_text,
    from_unix_s,
    integer,
    join_address,
    optional_text,
    platform_id,
)
from connectors.products import ProductShape

#: Douyin ``order_status`` → neutral status.
STATUS: Mapping[int, OrderStatus] = {
    1: "created",  # 待确认/待支付
    105: "paid",  # 已支付
    2: "paid",  # 备货中
    101: "shipped",  # 部分发货
    3: "shipped",  # 已发货
    4: "cancelled",  # 已取消
    5: "completed",  # 已完成
}


def order_from_payload(shop_id: str, order: Mapping[str, Any]) -> PlatformOrder:
    """A :class:`PlatformOrder` from a shop order of searchList or orderDetail.

    Args:
        shop_id: The shop the order belongs to.
        order: One element of ``shop_order_list`` or the ``shop_order_detail``.

    Returns:
        The neutral order; each SKU sub-order becomes a line.

    Raises:
        TranslateError: If a required field is missing or the status unknown.
    """
    where = "Douyin shop order"
    order_id = platform_id(field(order, "order_id", where), "Douyin order_id")
    status_code = integer(field(order, "order_status", where), "order_status")
    if status_code not in STATUS:
        raise TranslateError(
            f"Douyin order {order_id} has unknown order_status {status_code}"
        )
    lines = tuple(_line(sku, order_id) for sku in field(order, "sku_order_list", where))
    address = order.get("post_addr") or {}
    parts = [
        (address.get(key) or {}).get("name")
        for key in ("province", "city", "town", "street")
    ]
    buyer = BuyerPersonalData(
        name=optional_text(order.get("post_receiver")),
        phone=optional_text(order.get("post_tel")),
        address=join_address([*parts, address.get("detail")]),
        buyer_ref=optional_text(order.get("doudian_open_id")),
    )
    return PlatformOrder(
        platform=PLATFORM,
        shop_id=shop_id,
        order_id=order_id,
        status=STATUS[status_code],
        platform_status=str(status_code),
        lines=lines,
        total_fen=integer(field(order, "pay_amount", where), "pay_amount"),
        created_at=from_unix_s(field(order, "create_time", where), "create_time"),
        updated_at=from_unix_s(field(order, "update_time", where), "update_time"),
        buyer=buyer,
    )


def _line(sku: Mapping[str, Any], order_id: str) -> OrderLine:
    where = f"sku_order_list of Douyin order {order_id}"
    return OrderLine(
        platform_sku_id=platform_id(field(sku, "sku_id", where), "sku_id"),
        platform_product_id=platform_id(field(sku, "product_id", where), "product_id"),
        quantity=integer(field(sku, "item_num", where), "item_num"),
        unit_price_fen=integer(field(sku, "goods_price", where), "goods_price"),
        discount_fen=integer(sku.get("promotion_amount", 0), "promotion_amount"),
        title=str(sku.get("product_name") or ""),
    )


def settlement_entry(row: Mapping[str, Any]) -> SettlementEntry:
    """A settlement entry from a row of ``/order/getSettleBillDetailV3``.

    Args:
        row: One element of its ``data`` list.

    Returns:
        The entry: gross ``total_amount``, fee ``platform_service_fee``, the
        streamer's ``commission``, net ``settle_amount``.
    """
    where = "Douyin settle bill row"
    fee = integer(row.get("platform_service_fee", 0), "platform_service_fee")
    return SettlementEntry(
        entry_id=platform_id(field(row, "request_no", where), "request_no"),
        order_id=platform_id(field(row, "shop_order_id", where), "shop_order_id"),
        gross_fen=integer(field(row, "total_amount", where), "total_amount"),
        fee_fen=fee,
        net_fen=integer(field(row, "settle_amount", where), "settle_amount"),
        settled_at=from_beijing_text(field(row, "settle_time", where), "settle_time"),
        commission_fen=integer(row.get("commission", 0), "commission"),
    )


#: Douyin Shop's product fields (``/product/addV2|editV2|detail``): images
#: joined by ``|`` and SKU prices as JSON text when written, ``discount_price``
#: in fen, ``update_time`` in Beijing time.
PRODUCT_SHAPE = ProductShape(
    product_id="product_id",
    outer="outer_product_id",
    title="name",
    images="pic",
    skus="spec_prices",
    sku_code="code",
    sku_price="price",
    sku_props="sell_properties",
    prop_key="property_name",
    prop_value="value_name",
    price="discount_price",
    edited="update_time",
    edited_at=lambda value: from_beijing_text(value, "update_time"),
    images_joined=True,
    skus_as_text=True,
)
