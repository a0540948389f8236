"""Youzan payloads ↔ platform-neutral orders and push events (pure).

Trades come from ``youzan.trades.sold.get`` and ``youzan.trade.get`` as
``full_order_info``; money is yuan text (``"12.30"``) and becomes integer fen
exactly; times are Beijing wall-clock text. Pushes carry ``type``, ``id``,
``version`` and a URL-encoded ``msg``; the push ``sign`` covers ``msg`` as
received (``protocol.verify_push_sign``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from connectors.common import (
    BuyerPersonalData,
    OrderLine,
    OrderStatus,
    PlatformOrder,
    PushEvent,
    PushEventKind,
    SettlementEntry,
)
from connectors.mapping import (
    TranslateError,
    field,
    from_beijing_text,
    from_unix_s,
    integer,
    join_address,
    optional_text,
    platform_id,
    yuan_to_fen,
)
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

#: Push ``type`` → what it announces.
EVENTS: Mapping[str, PushEventKind] = {
    "trade_TradeCreate": "order_created",
    "trade_TradePaid": "order_paid",
    "trade_TradeSellerShip": "order_shipped",
    "trade_TradeSuccess": "order_completed",
    "trade_TradeClose": "order_cancelled",
}

#: The answer a push must receive.
PUSH_ACK: Mapping[str, Any] = {"code": 0, "msg": "success"}


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


def push_body(body: bytes) -> dict[str, Any]:
    """A push request body as a dict (verify its ``sign`` before trusting it).

    Args:
        body: The raw JSON body.

    Returns:
        The push object.

    Raises:
        TranslateError: If it is not a JSON object.
    """
    try:
        push = json.loads(body)
    except ValueError:
        raise TranslateError("Youzan push body is not JSON") from None
    if not isinstance(push, dict):
        raise TranslateError("Youzan push body is not a JSON object")
    return push


def push_msg(push: Mapping[str, Any]) -> dict[str, Any]:
    """The decoded ``msg`` of a push (URL-encoded JSON).

    Args:
        push: The push object.

    Returns:
        The message object (empty when ``msg`` is absent).

    Raises:
        TranslateError: If ``msg`` is not URL-encoded JSON of an object.
    """
    raw = push.get("msg")
    if not raw:
        return {}
    try:
        decoded = json.loads(unquote(str(raw)))
    except ValueError:
        raise TranslateError("Youzan push msg is not URL-encoded JSON") from None
    if not isinstance(decoded, dict):
        raise TranslateError("Youzan push msg is not an object")
    return decoded


def push_event(push: Mapping[str, Any]) -> PushEvent:
    """What a push announces.

    The message id is ``type-id-version``: a re-sent push (``sendCount`` > 0)
    has the same one.

    Args:
        push: The push object.

    Returns:
        The event; ``heartbeat`` for ``test`` pushes, ``other`` for types this
        hub does not consume.

    Raises:
        TranslateError: If ``type`` or ``version`` is missing.
    """
    where = "Youzan push"
    if push.get("test") is True:
        return PushEvent(
            platform=PLATFORM, kind="heartbeat", msg_id="test", raw_type="test"
        )
    kind = str(field(push, "type", where))
    version = integer(field(push, "version", where), "version")
    tid = push.get("id")
    kdt = push.get("kdt_id")
    return PushEvent(
        platform=PLATFORM,
        kind=EVENTS.get(kind, "other"),
        msg_id=f"{kind}-{tid or '-'}-{version}",
        raw_type=kind,
        order_id=None if tid is None else platform_id(tid, "id"),
        shop_id=None if kdt is None else platform_id(kdt, "kdt_id"),
        occurred_at=from_unix_s(version, "version"),
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
