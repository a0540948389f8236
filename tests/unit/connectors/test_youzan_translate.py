"""Youzan payloads → neutral orders and push events (pure)."""

from __future__ import annotations

import json
from urllib.parse import quote

import msgspec
import pytest

from connectors.mapping import TranslateError, fen_to_yuan, yuan_to_fen
from connectors.webhooks import PushRequest
from connectors.youzan import translate, webhook


def _trade(status: str = "WAIT_SELLER_SEND_GOODS") -> dict[str, object]:
    return {
        "order_info": {
            "tid": "E20231115123456012345678",
            "status": status,
            "created": "2023-11-15 08:00:00",
            "update_time": "2023-11-15 08:05:00",
        },
        "orders": [
            {
                "oid": "1",
                "item_id": 123,
                "sku_id": 456,
                "num": 3,
                "price": "0.10",
                "payment": "0.20",
                "title": "眼霜",
            }
        ],
        "pay_info": {"payment": "0.20"},
        "address_info": {
            "receiver_name": "赵六",
            "receiver_tel": "13600000000",
            "delivery_province": "浙江省",
            "delivery_city": "杭州市",
            "delivery_district": "西湖区",
            "delivery_address": "文三路 1 号",
        },
        "buyer_info": {"yz_open_id": "yz-1"},
    }


def test_yuan_text_becomes_exact_fen() -> None:
    order = translate.order_from_payload("kdt-1", _trade())
    (line,) = order.lines
    # 0.10 * 3 in floats is 0.30000000000000004; here it is 30 fen exactly.
    assert (line.unit_price_fen, line.quantity, line.discount_fen) == (10, 3, 10)
    assert order.total_fen == 20
    assert order.status == "paid"
    assert order.created_at.isoformat() == "2023-11-15T00:00:00+00:00"


def test_money_helpers_round_trip_and_refuse_fractions_of_fen() -> None:
    for fen in (0, 1, 99, 100, 123456, -250):
        assert yuan_to_fen(fen_to_yuan(fen), "x") == fen
    with pytest.raises(TranslateError, match="more than two decimals"):
        yuan_to_fen("1.005", "price")


@pytest.mark.parametrize(
    ("status", "neutral"),
    [
        ("WAIT_BUYER_PAY", "created"),
        ("WAIT_BUYER_CONFIRM_GOODS", "shipped"),
        ("TRADE_SUCCESS", "completed"),
        ("TRADE_CLOSED", "cancelled"),
    ],
)
def test_status_names(status: str, neutral: str) -> None:
    assert translate.order_from_payload("k", _trade(status)).status == neutral


def test_push_event_and_msg() -> None:
    msg = quote(
        json.dumps({"tid": "E1", "status": "TRADE_PAID", "kdt_id": 42}), safe=""
    )
    body = json.dumps(
        {
            "client_id": "c",
            "id": "E1",
            "kdt_id": 42,
            "type": "trade_TradePaid",
            "version": 1_700_000_000,
            "msg": msg,
            "sign": "s",
        }
    ).encode()
    push = msgspec.json.decode(body, type=webhook.Push)
    assert push.msg is not None
    event = webhook.push_event(push, webhook.push_msg(push.msg))
    assert (event.kind, event.order_id, event.shop_id) == ("order_paid", "E1", "42")
    assert event.msg_id == "trade_TradePaid-E1-TRADE_PAID"
    assert webhook.push_msg(push.msg).status == "TRADE_PAID"


def test_test_push_is_a_heartbeat() -> None:
    request = PushRequest(body=b'{"test": true}')
    assert webhook.YouzanWebhook().verify([], request).heartbeat
