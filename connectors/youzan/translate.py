"""Youzan payloads ↔ platform-neutral orders and settlements (pure).

Trades come from ``youzan.trades.sold.get`` and ``youzan.trade.get`` as
``full_order_info``; money is yuan text (``"12.30"``) and becomes integer fen
exactly; times are Beijing wall-clock text. Pushes are decoded by
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
    from_beijing_text,
    from_unix_ms,
    integer,
    join_address,
    optional_text,
    platform_id,
    yuan_to_fen,
)
from connectors.products import ProductShape
from connectors.youzan.policy import PLATFORM

#: Youzan trade ``status`` → neutral status.
STATUS: Mapping[str, OrderStatus] = {
    "WAIT_BUYER_PAY": "created",
    "TRADE_PAID": "paid",
    "WAIT_CONFIRM": "paid",
    "WAIT_SELLER_SEND_GOODS": "paid",
    "WAIT_BUYER_CONFIRM_GOODS": "shipped",
    "TRADE_SUCCESS": "completed",
    "TRADE_CLOSED": "cancelled",
}


def order_from_payload(shop_id: str, trade: Mapping[str, Any]) -> PlatformOrder:
    """A :class:`PlatformOrder` from a ``full_order_info`` object.

    Args:
        shop_id: The shop (``kdt_id``) the trade belongs to.
        trade: The ``full_order_info`` object.

    Returns:
        The neutral order; a line's discount is ``price * num - payment``.

    Raises:
        TranslateError: If a required field is missing, money is not yuan text
            with at most two decimals, or the status is unknown.
    """
    info = field(trade, "order_info", "Youzan full_order_info")
    where = "Youzan order_info"
    order_id = platform_id(field(info, "tid", where), "tid")
    status = str(field(info, "status", where))
    if status not in STATUS:
        raise TranslateError(f"Youzan trade {order_id} has unknown status {status!r}")
    lines = tuple(_line(item, order_id) for item in field(trade, "orders", where))
    pay_info = trade.get("pay_info") or {}
    payment = pay_info.get("payment")
    total_fen = (
        yuan_to_fen(payment, "pay_info.payment")
        if payment is not None
        else sum(line.amount_fen for line in lines)
    )
    address = trade.get("address_info") or {}
    buyer_info = trade.get("buyer_info") or {}
    buyer = BuyerPersonalData(
        name=optional_text(address.get("receiver_name")),
        phone=optional_text(
            address.get("receiver_tel") or buyer_info.get("buyer_phone")
        ),
        address=join_address(
            address.get(key)
            for key in (
                "delivery_province",
                "delivery_city",
                "delivery_district",
                "delivery_address",
            )
        ),
        buyer_ref=optional_text(buyer_info.get("yz_open_id")),
    )
    return PlatformOrder(
        platform=PLATFORM,
        shop_id=shop_id,
        order_id=order_id,
        status=STATUS[status],
        platform_status=status,
        lines=lines,
        total_fen=total_fen,
        created_at=from_beijing_text(field(info, "created", where), "created"),
        updated_at=from_beijing_text(field(info, "update_time", where), "update_time"),
        buyer=buyer,
    )


def _line(item: Mapping[str, Any], order_id: str) -> OrderLine:
    where = f"orders of Youzan trade {order_id}"
    quantity = integer(field(item, "num", where), "num")
    unit = yuan_to_fen(field(item, "price", where), "price")
    payment = item.get("payment")
    discount = (
        0 if payment is None else unit * quantity - yuan_to_fen(payment, "payment")
    )
    return OrderLine(
        platform_sku_id=platform_id(field(item, "sku_id", where), "sku_id"),
        platform_product_id=platform_id(field(item, "item_id", where), "item_id"),
        quantity=quantity,
        unit_price_fen=unit,
        discount_fen=discount,
        title=str(item.get("title") or ""),
    )


def settlement_entry(row: Mapping[str, Any]) -> SettlementEntry:
    """A settlement entry from a row of the settlement list (yuan text).

    Args:
        row: One element of its ``list``.

    Returns:
        The entry.
    """
    where = "Youzan settlement row"
    return SettlementEntry(
        entry_id=platform_id(field(row, "settle_no", where), "settle_no"),
        order_id=platform_id(field(row, "tid", where), "tid"),
        gross_fen=yuan_to_fen(field(row, "order_amount", where), "order_amount"),
        fee_fen=yuan_to_fen(field(row, "fee", where), "fee"),
        net_fen=yuan_to_fen(field(row, "settle_amount", where), "settle_amount"),
        settled_at=from_beijing_text(field(row, "settle_time", where), "settle_time"),
    )


#: Youzan's item fields (``youzan.item.create|update``,
#: ``youzan.item.detail.get``): ``price`` in fen, ``update_time`` in Unix ms.
PRODUCT_SHAPE = ProductShape(
    product_id="item_id",
    outer="item_no",
    title="title",
    images="images",
    skus="sku_list",
    sku_code="sku_no",
    sku_price="price",
    sku_props="sku_props",
    prop_key="k",
    prop_value="v",
    price="price",
    edited="update_time",
    edited_at=lambda value: from_unix_ms(value, "update_time"),
)
