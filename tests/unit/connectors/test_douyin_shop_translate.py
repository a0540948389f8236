"""Douyin Shop payloads → neutral orders and push events (pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from connectors.douyin_shop import translate, webhook
from connectors.mapping import TranslateError
from connectors.webhooks import MalformedPushError

ORDER_ID = 4781320682406083640  # int64 above 2^53


def _order(status: int = 2) -> dict[str, object]:
    return {
        "order_id": str(ORDER_ID),
        "order_status": status,
        "create_time": 1_700_000_000,
        "update_time": 1_700_000_050,
        "pay_amount": 2700,
        "post_receiver": "李四",
        "post_tel": "13900000000",
        "post_addr": {
            "province": {"name": "北京市"},
            "city": {"name": "北京市"},
            "town": {"name": "朝阳区"},
            "detail": "望京 2 号",
        },
        "sku_order_list": [
            {
                "sku_id": 1780000000000000001,
                "product_id": 3500000000000000001,
                "item_num": 3,
                "goods_price": 1000,
                "promotion_amount": 300,
                "product_name": "面霜",
            }
        ],
    }


def test_order_with_int64_ids_read_from_json_numbers() -> None:
    payload = json.loads(json.dumps(_order()))
    order = translate.order_from_payload("77", payload)
    assert order.order_id == str(ORDER_ID)
    (line,) = order.lines
    assert line.platform_sku_id == "1780000000000000001"
    assert line.platform_product_id == "3500000000000000001"
    assert line.amount_fen == 2700 == order.total_fen
    assert order.status == "paid"
    assert order.buyer.address == "北京市 北京市 朝阳区 望京 2 号"


@pytest.mark.parametrize(
    ("code", "status"),
    [(1, "created"), (2, "paid"), (3, "shipped"), (4, "cancelled"), (5, "completed")],
)
def test_status_codes(code: int, status: str) -> None:
    assert translate.order_from_payload("77", _order(code)).status == status


def test_missing_field_is_named() -> None:
    payload = _order()
    del payload["pay_amount"]
    with pytest.raises(TranslateError, match="no 'pay_amount'"):
        translate.order_from_payload("77", payload)


def test_push_array_maps_tags_and_keeps_msg_ids() -> None:
    data = json.dumps({"p_id": ORDER_ID, "shop_id": 77, "update_time": 1_700_000_000})
    body = json.dumps(
        [
            {"tag": "100", "msg_id": "m1", "data": data},
            {"tag": "101", "msg_id": "m2", "data": data},
            {"tag": "106", "msg_id": "m3", "data": data},
            {"tag": "999", "msg_id": "m4", "data": data},
        ]
    ).encode()
    events = webhook.push_events(body)
    assert [e.kind for e in events] == [
        "order_created",
        "order_paid",
        "order_cancelled",
        "other",
    ]
    assert {e.order_id for e in events} == {str(ORDER_ID)}
    assert [e.msg_id for e in events] == ["m1", "m2", "m3", "m4"]
    assert events[0].shop_id == "77"


def test_push_that_is_not_an_array_is_refused() -> None:
    with pytest.raises(MalformedPushError, match="Expected `array`"):
        webhook.push_events(b'{"tag": 100}')


def _settlement_row(
    request_no: str, total: int, fee: int, commission: int, settled: int
) -> dict[str, Any]:
    """A settlement row (amounts in fen) of the order, settled on 16 Nov 2023."""
    return {
        "request_no": request_no,
        "shop_order_id": str(ORDER_ID),
        "total_amount": total,
        "platform_service_fee": fee,
        "commission": commission,
        "settle_amount": settled,
        "settle_time": "2023-11-16 06:13:20",
    }


def test_settlement_row() -> None:
    entry = translate.settlement_entry(_settlement_row("R1", 2700, 135, 0, 2565))
    assert (entry.gross_fen, entry.fee_fen, entry.net_fen) == (2700, 135, 2565)
    assert entry.settled_at.isoformat() == "2023-11-15T22:13:20+00:00"


def test_settlement_row_keeps_the_streamers_commission_apart() -> None:
    entry = translate.settlement_entry(_settlement_row("R2", 10000, 500, 2500, 7000))
    assert (entry.fee_fen, entry.commission_fen, entry.net_fen) == (500, 2500, 7000)
