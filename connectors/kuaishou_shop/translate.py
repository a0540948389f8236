"""Kuaishou Shop payloads ↔ platform-neutral orders and settlements (pure).

Orders come from ``open.order.cursor.list`` (``orderList``) and
``open.order.detail``; each has ``orderBaseInfo``, its item(s) and
``orderAddress``. Times are Unix milliseconds. Pushes are decoded by
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
from connectors.kuaishou_shop.policy import PLATFORM
from connectors.mapping import (
    TranslateError,
    field,
    from_unix_ms,
    integer,
    join_address,
    optional_text,
    platform_id,
)
from connectors.products import ProductShape

#: Kuaishou order ``status`` → neutral status.
STATUS: Mapping[int, OrderStatus] = {
    10: "created",  # 待付款
    30: "paid",  # 已付款
    40: "shipped",  # 已发货
    50: "shipped",  # 已签收 (still shipped: nothing in the neutral model follows)
    70: "completed",  # 订单成功
    80: "cancelled",  # 订单失败 (cancelled orders end here)
}


def order_from_payload(shop_id: str, order: Mapping[str, Any]) -> PlatformOrder:
    """A :class:`PlatformOrder` from an element of ``orderList`` or a detail.

    Args:
        shop_id: The shop the order belongs to.
        order: The order object.

    Returns:
        The neutral order.

    Raises:
        TranslateError: If a required field is missing or the status unknown.
    """
    base = field(order, "orderBaseInfo", "Kuaishou order")
    where = "Kuaishou orderBaseInfo"
    order_id = platform_id(field(base, "oid", where), "oid")
    status_code = integer(field(base, "status", where), "status")
    if status_code not in STATUS:
        raise TranslateError(
            f"Kuaishou order {order_id} has unknown status {status_code}"
        )
    items = order.get("orderItemInfoList")
    if items is None:
        items = [field(order, "orderItemInfo", "Kuaishou order")]
    lines = tuple(_line(item, order_id) for item in items)
    address = order.get("orderAddress") or {}
    buyer = BuyerPersonalData(
        name=optional_text(address.get("consignee")),
        phone=optional_text(address.get("mobile")),
        address=join_address(
            address.get(key) for key in ("province", "city", "district", "address")
        ),
        buyer_ref=optional_text(base.get("buyerOpenId")),
    )
    return PlatformOrder(
        platform=PLATFORM,
        shop_id=shop_id,
        order_id=order_id,
        status=STATUS[status_code],
        platform_status=str(status_code),
        lines=lines,
        total_fen=integer(field(base, "totalFee", where), "totalFee"),
        created_at=from_unix_ms(field(base, "createTime", where), "createTime"),
        updated_at=from_unix_ms(field(base, "updateTime", where), "updateTime"),
        buyer=buyer,
    )


def _line(item: Mapping[str, Any], order_id: str) -> OrderLine:
    where = f"item of Kuaishou order {order_id}"
    return OrderLine(
        platform_sku_id=platform_id(field(item, "skuId", where), "skuId"),
        platform_product_id=platform_id(field(item, "itemId", where), "itemId"),
        quantity=integer(field(item, "num", where), "num"),
        unit_price_fen=integer(field(item, "originalPrice", where), "originalPrice"),
        discount_fen=integer(item.get("discountFee", 0), "discountFee"),
        title=str(item.get("itemTitle") or ""),
    )


def settlement_entry(row: Mapping[str, Any]) -> SettlementEntry:
    """A settlement entry from a row of the settled-bill list.

    Args:
        row: One element of its ``settledBills`` list (amounts in fen, times
            in milliseconds).

    Returns:
        The entry.
    """
    where = "Kuaishou settled bill"
    return SettlementEntry(
        entry_id=platform_id(field(row, "billId", where), "billId"),
        order_id=platform_id(field(row, "oid", where), "oid"),
        gross_fen=integer(field(row, "orderAmount", where), "orderAmount"),
        fee_fen=integer(field(row, "platformFee", where), "platformFee"),
        net_fen=integer(field(row, "settlementAmount", where), "settlementAmount"),
        settled_at=from_unix_ms(field(row, "settlementTime", where), "settlementTime"),
    )


#: Kuaishou Shop's item fields (``open.item.new|update|detail``): no
#: item-level price, the SKUs carry it; ``updateTime`` in Unix ms.
PRODUCT_SHAPE = ProductShape(
    product_id="itemId",
    outer="relItemId",
    title="title",
    images="imageUrls",
    skus="skuList",
    sku_code="relSkuId",
    sku_price="skuSalePrice",
    sku_props="specification",
    prop_key="propName",
    prop_value="propValueName",
    edited="updateTime",
    edited_at=lambda value: from_unix_ms(value, "updateTime"),
)
