"""WeChat Shop payloads → neutral orders and push events (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from connectors.mapping import TranslateError
from connectors.webhooks import MalformedPushError
from connectors.wechat_shop import translate, webhook

BIG_ORDER_ID = 3705115058471208928  # above 2^53: a float would change it


def _order(status: int = 20) -> dict[str, object]:
    return {
        "order_id": str(BIG_ORDER_ID),
        "openid": "oBUYER",
        "create_time": 1_700_000_000,
        "update_time": 1_700_000_100,
        "status": status,
        "order_detail": {
            "product_infos": [
                {
                    "product_id": "10000000000001",
                    "sku_id": "9007199254740993",
                    "sku_cnt": 2,
                    "sale_price": 1000,
                    "real_price": 1800,
                    "title": "口红",
                }
            ],
            "price_info": {"order_price": 1800},
            "delivery_info": {
                "address_info": {
                    "user_name": "张三",
                    "tel_number": "13800000000",
                    "province_name": "广东省",
                    "city_name": "广州市",
                    "county_name": "海珠区",
                    "detail_info": "新港中路 1 号",
                }
            },
        },
    }


def test_order_keeps_ids_exact_and_money_in_fen() -> None:
    order = translate.order_from_payload("shop-1", _order())
    assert order.order_id == str(BIG_ORDER_ID)
    assert order.status == "paid"
    assert order.total_fen == 1800
    (line,) = order.lines
    assert line.platform_sku_id == "9007199254740993"
    assert (line.quantity, line.unit_price_fen, line.discount_fen) == (2, 1000, 200)
    assert line.amount_fen == 1800
    assert order.updated_at == datetime.fromtimestamp(1_700_000_100, UTC)


def test_buyer_data_is_kept_apart_from_the_order() -> None:
    order = translate.order_from_payload("shop-1", _order())
    assert order.buyer.name == "张三"
    assert order.buyer.phone == "13800000000"
    assert order.buyer.address == "广东省 广州市 海珠区 新港中路 1 号"
    assert order.buyer.buyer_ref == "oBUYER"


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (10, "created"),
        (20, "paid"),
        (30, "shipped"),
        (100, "completed"),
        (250, "cancelled"),
    ],
)
def test_status_codes_map_to_neutral_statuses(code: int, status: str) -> None:
    assert translate.order_from_payload("s", _order(code)).status == status


def test_unknown_status_names_the_order_and_code() -> None:
    with pytest.raises(TranslateError, match=f"{BIG_ORDER_ID} has unknown status 77"):
        translate.order_from_payload("s", _order(77))


def test_json_push_with_numeric_order_id_above_2_53_stays_exact() -> None:
    plaintext = (
        b'{"ToUserName":"gh_shop","CreateTime":1700000000,"MsgType":"event",'
        b'"Event":"channels_ec_order_pay","order_info":{"order_id":'
        + str(BIG_ORDER_ID).encode()
        + b"}}"
    )
    event = webhook.push_event(plaintext)
    assert event.kind == "order_paid"
    assert event.order_id == str(BIG_ORDER_ID)
    assert event.msg_id == f"channels_ec_order_pay-{BIG_ORDER_ID}-1700000000"


def test_xml_push_reads_like_json_push() -> None:
    plaintext = (
        "<xml><ToUserName>gh_shop</ToUserName><CreateTime>1700000000</CreateTime>"
        "<MsgType>event</MsgType><Event>channels_ec_order_cancel</Event>"
        f"<order_info><order_id>{BIG_ORDER_ID}</order_id></order_info></xml>"
    ).encode()
    event = webhook.push_event(plaintext)
    assert (event.kind, event.order_id) == ("order_cancelled", str(BIG_ORDER_ID))


def test_push_ciphertext_from_xml_and_json_envelopes() -> None:
    assert webhook.push_ciphertext(b"<xml><Encrypt>abc=</Encrypt></xml>") == "abc="
    body = json.dumps({"ToUserName": "gh", "Encrypt": "xyz="}).encode()
    assert webhook.push_ciphertext(body) == "xyz="
    with pytest.raises(MalformedPushError, match="no Encrypt"):
        webhook.push_ciphertext(b"{}")


def test_settlement_income_flow_becomes_an_entry() -> None:
    flow = {
        "flow_id": "F1",
        "flow_type": 1,
        "amount": 1789,
        "service_fee": 11,
        "bookkeeping_time": 1_700_086_400,
        "related_info_list": [{"related_type": 1, "order_id": str(BIG_ORDER_ID)}],
    }
    entry = translate.settlement_entry(flow)
    assert entry is not None
    assert (entry.gross_fen, entry.fee_fen, entry.net_fen) == (1800, 11, 1789)
    assert translate.settlement_entry({**flow, "flow_type": 2}) is None
