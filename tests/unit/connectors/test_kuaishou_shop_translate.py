"""Kuaishou Shop payloads → neutral orders and push events (pure)."""

from __future__ import annotations

import json

import pytest

from connectors.kuaishou_shop import translate, webhook
from connectors.webhooks import MalformedPushError


def _order(status: int = 30) -> dict[str, object]:
    return {
        "orderBaseInfo": {
            "oid": 2307500074108220,
            "status": status,
            "createTime": 1_700_000_000_123,
            "updateTime": 1_700_000_100_456,
            "totalFee": 1500,
            "buyerOpenId": "f1a2",
        },
        "orderItemInfo": {
            "itemId": 20046611202546,
            "skuId": 300001,
            "num": 1,
            "originalPrice": 1990,
            "discountFee": 490,
            "itemTitle": "T恤",
        },
        "orderAddress": {
            "consignee": "王五",
            "mobile": "13700000000",
            "province": "山东省",
            "city": "济南市",
            "district": "莱芜区",
            "address": "文化北路 9 号",
        },
    }


def test_order_in_milliseconds_and_fen() -> None:
    order = translate.order_from_payload("seller-9", _order())
    assert order.order_id == "2307500074108220"
    assert order.status == "paid"
    assert order.updated_at.isoformat() == "2023-11-14T22:15:00.456000+00:00"
    (line,) = order.lines
    assert (line.platform_product_id, line.platform_sku_id) == (
        "20046611202546",
        "300001",
    )
    assert line.amount_fen == 1500 == order.total_fen
    assert order.buyer.name == "王五"


def test_item_list_form_is_read_too() -> None:
    payload = _order()
    item = payload.pop("orderItemInfo")
    payload["orderItemInfoList"] = [item, {**item, "skuId": 300002}]
    assert len(translate.order_from_payload("s", payload).lines) == 2


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (10, "created"),
        (30, "paid"),
        (40, "shipped"),
        (70, "completed"),
        (80, "cancelled"),
    ],
)
def test_status_codes(code: int, status: str) -> None:
    assert translate.order_from_payload("s", _order(code)).status == status


def test_heartbeat_is_recognised() -> None:
    event = webhook.push_event(webhook.push_message(b'{"test":true}'))
    assert event.kind == "heartbeat"


def test_pay_push() -> None:
    message = {
        "msgId": "M-1",
        "event": "kwaishop_order_paySuccess",
        "bizId": 2307500074108220,
        "info": json.dumps(
            {"oid": 2307500074108220, "sellerId": 9, "status": 30, "updateTime": 1}
        ),
        "createTime": 1_700_000_000_000,
    }
    event = webhook.push_event(webhook.push_message(json.dumps(message).encode()))
    assert (event.kind, event.order_id, event.shop_id, event.msg_id) == (
        "order_paid",
        "2307500074108220",
        "9",
        "M-1",
    )


def test_push_without_event_is_refused() -> None:
    with pytest.raises(MalformedPushError, match="no 'event'"):
        webhook.push_event(webhook.push_message(b'{"msgId": "x"}'))
