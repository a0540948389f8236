"""Each platform's webhook: verify, decode, refuse hostile pushes (pure, no servers)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from connectors.common import PlatformCallError
from connectors.douyin_shop import protocol as douyin_protocol
from connectors.douyin_shop.webhook import DouyinWebhook
from connectors.kuaishou_shop import protocol as kuaishou_protocol
from connectors.kuaishou_shop.webhook import KuaishouWebhook
from connectors.registry import CONNECTORS
from connectors.webhooks import (
    MAX_BODY_BYTES,
    MAX_CONTAINERS,
    MAX_DEPTH,
    MalformedPushError,
    PushRequest,
    StalePushError,
    UnsignedPushError,
    decode_json,
    decode_xml,
)
from connectors.wechat_shop import protocol as wechat_protocol
from connectors.wechat_shop.webhook import WechatWebhook
from connectors.youzan.webhook import YouzanWebhook
from tests.webhook_pushes import (
    DOUYIN_CREDS,
    KUAISHOU_CREDS,
    WECHAT_CREDS,
    YOUZAN_CREDS,
    wechat_order_message,
    wechat_push,
    youzan_push,
)

NOW = 1_700_000_000.0
WECHAT = WECHAT_CREDS
DOUYIN = DOUYIN_CREDS
KUAISHOU = KUAISHOU_CREDS
YOUZAN = YOUZAN_CREDS


@dataclass(frozen=True)
class Shop:
    platform: str
    shop_id: str
    credentials: dict[str, str] = field(default_factory=dict)


def nested(levels: int) -> bytes:
    return b'{"a":' + b"[" * levels + b"]" * levels + b"}"


# --------------------------------------------------------------------------- decode


def test_json_as_deep_as_the_limit_decodes_and_one_level_more_is_refused() -> None:
    decode_json(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, list[object], "body")
    deeper = MAX_DEPTH + 1
    with pytest.raises(MalformedPushError, match=f"deeper than {MAX_DEPTH} levels"):
        decode_json(b"[" * deeper + b"]" * deeper, list[object], "body")


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = json.dumps(["[" * 100 + "{" * 100]).encode()
    assert decode_json(text, list[str], "body") == ["[" * 100 + "{" * 100]


def test_too_many_containers_or_bytes_are_refused_before_decoding() -> None:
    flat = b"[" + b",".join([b"[]"] * MAX_CONTAINERS) + b"]"
    with pytest.raises(MalformedPushError, match="objects and arrays"):
        decode_json(flat, list[object], "body")
    with pytest.raises(MalformedPushError, match="bytes; at most"):
        decode_json(b'"' + b"x" * MAX_BODY_BYTES + b'"', str, "body")


def test_xml_nesting_and_declarations_are_refused() -> None:
    deep = b"<xml>" + b"<a>" * 100 + b"</a>" * 100 + b"</xml>"
    with pytest.raises(MalformedPushError, match="nests deeper"):
        decode_xml(deep, dict[str, object], "body")
    bomb = b'<!DOCTYPE x [<!ENTITY a "aaaa">]><xml><a>&a;</a></xml>'
    with pytest.raises(MalformedPushError, match="declares a document type"):
        decode_xml(bomb, dict[str, object], "body")


# ------------------------------------------------------ depth, every platform


def _wechat_push(plain: bytes, timestamp: str = str(int(NOW))) -> PushRequest:
    query, body = wechat_push(WECHAT, plain, timestamp)
    return PushRequest(query=query, body=body, now=NOW)


def _wechat_order(order_id: int = 3705115058471208928) -> bytes:
    return wechat_order_message("gh_shop", order_id, int(NOW))


def _douyin_push(body: bytes) -> PushRequest:
    sign = douyin_protocol.event_sign(DOUYIN["app_key"], body, DOUYIN["app_secret"])
    return PushRequest(headers={"event-sign": sign}, body=body, now=NOW)


def _kuaishou_push(plain: bytes) -> PushRequest:
    body = kuaishou_protocol.encrypt_push(KUAISHOU["message_key"], plain)
    return PushRequest(body=body.encode(), now=NOW)


def _youzan_push(msg: dict[str, object], **outer: object) -> PushRequest:
    body = youzan_push(YOUZAN, msg, version=int(NOW), **outer)
    return PushRequest(body=body, now=NOW)


WECHAT_SHOP = Shop("wechat_shop", "wx-shop-1", WECHAT)
DOUYIN_SHOP = Shop("douyin_shop", "77001", DOUYIN)
KUAISHOU_SHOP = Shop("kuaishou_shop", "900001", KUAISHOU)
YOUZAN_SHOP = Shop("youzan", "42001", YOUZAN)


@pytest.mark.parametrize(
    ("shop", "request_of"),
    [
        (WECHAT_SHOP, lambda body: PushRequest(query={}, body=body, now=NOW)),
        (WECHAT_SHOP, _wechat_push),
        (DOUYIN_SHOP, _douyin_push),
        (
            DOUYIN_SHOP,
            lambda body: _douyin_push(
                json.dumps(
                    [{"tag": 101, "msg_id": "m", "data": body.decode()}]
                ).encode()
            ),
        ),
        (KUAISHOU_SHOP, lambda body: PushRequest(body=body, now=NOW)),
        (KUAISHOU_SHOP, _kuaishou_push),
        (YOUZAN_SHOP, lambda body: PushRequest(body=body, now=NOW)),
    ],
    ids=[
        "wechat-envelope",
        "wechat-message",
        "douyin-body",
        "douyin-data",
        "kuaishou-clear",
        "kuaishou-message",
        "youzan-body",
    ],
)
def test_json_nested_a_thousand_levels_is_malformed_on_every_platform(
    shop: Shop, request_of: object
) -> None:
    webhook = CONNECTORS[shop.platform].webhook
    request = request_of(nested(1000))  # type: ignore[operator]
    with pytest.raises((MalformedPushError, UnsignedPushError)) as refused:
        webhook.verify([shop], request)
    assert refused.value.status in (400, 401)


def test_kuaishou_clear_json_nested_a_thousand_levels_is_malformed() -> None:
    with pytest.raises(MalformedPushError, match="deeper than"):
        KuaishouWebhook().verify([KUAISHOU_SHOP], PushRequest(body=nested(1000)))


# ------------------------------------------------- youzan: signed fields only


def test_youzan_takes_order_and_shop_from_the_signed_msg() -> None:
    request = _youzan_push(
        {"tid": "E1", "status": "TRADE_PAID", "kdt_id": 42001},
        id="E1",
        kdt_id=42001,
        status="TRADE_PAID",
    )
    pushed = YouzanWebhook().verify([YOUZAN_SHOP], request)
    assert list(pushed.order_changes()) == [(YOUZAN_SHOP, "E1")]


@pytest.mark.parametrize(
    ("outer", "field_name"),
    [({"id": "E2"}, "id"), ({"kdt_id": 42002}, "kdt_id"), ({"status": "X"}, "status")],
)
def test_youzan_outer_field_that_disagrees_with_the_signed_msg_is_refused(
    outer: dict[str, object], field_name: str
) -> None:
    other = Shop("youzan", "42002", YOUZAN)
    request = _youzan_push(
        {"tid": "E1", "status": "TRADE_PAID", "kdt_id": 42001}, **outer
    )
    with pytest.raises(MalformedPushError, match=f"push {field_name} .* signed msg"):
        YouzanWebhook().verify([YOUZAN_SHOP, other], request)


def test_youzan_msg_without_kdt_id_needs_a_single_shop_behind_the_signing_app() -> None:
    request = _youzan_push({"tid": "E1", "status": "TRADE_PAID"}, kdt_id=42002)
    with pytest.raises(MalformedPushError, match="kdt_id"):
        YouzanWebhook().verify([YOUZAN_SHOP], request)
    request = _youzan_push({"tid": "E1", "status": "TRADE_PAID"})
    pushed = YouzanWebhook().verify([YOUZAN_SHOP], request)
    assert list(pushed.order_changes()) == [(YOUZAN_SHOP, "E1")]
    other = Shop("youzan", "42002", YOUZAN)
    with pytest.raises(MalformedPushError, match="serves 2 shops"):
        YouzanWebhook().verify([YOUZAN_SHOP, other], request)


def test_youzan_push_signed_by_no_registered_app_is_unsigned() -> None:
    stranger = Shop("youzan", "42001", {"client_id": "yz-client", "client_secret": "x"})
    with pytest.raises(UnsignedPushError):
        YouzanWebhook().verify([stranger], _youzan_push({"tid": "E1"}))


# --------------------------------------------------------------------------- freshness


@pytest.mark.parametrize("timestamp", ["0", "1400000000", str(int(NOW) + 3600)])
def test_wechat_push_signed_outside_the_window_is_stale(timestamp: str) -> None:
    request = _wechat_push(_wechat_order(), timestamp=timestamp)
    with pytest.raises(StalePushError, match="300 s from now are refused"):
        WechatWebhook().verify([WECHAT_SHOP], request)


def test_wechat_window_is_data() -> None:
    request = _wechat_push(_wechat_order(), timestamp=str(int(NOW) - 299))
    assert list(WechatWebhook().verify([WECHAT_SHOP], request).order_changes()) == [
        (WECHAT_SHOP, "3705115058471208928")
    ]
    with pytest.raises(StalePushError):
        WechatWebhook(freshness_s=60).verify([WECHAT_SHOP], request)
    old = _wechat_push(_wechat_order(), timestamp="0")
    assert WechatWebhook(freshness_s=None).verify([WECHAT_SHOP], old).events


def test_wechat_url_check_needs_a_fresh_signed_timestamp() -> None:
    def check(timestamp: str) -> bytes:
        query = {
            "signature": wechat_protocol.signature("push-token", timestamp, "n"),
            "timestamp": timestamp,
            "nonce": "n",
            "echostr": "echo-me",
        }
        return WechatWebhook().check_url(
            [WECHAT_SHOP], PushRequest(query=query, now=NOW)
        )

    assert check(str(int(NOW))) == b"echo-me"
    with pytest.raises(StalePushError, match="a replay"):
        check("0")


def test_kuaishou_create_time_is_checked_only_when_a_window_is_given() -> None:
    message = {
        "event": "kwaishop_order_paySuccess",
        "msgId": "M1",
        "info": json.dumps({"oid": 1, "sellerId": 900001}),
        "createTime": 0,
    }
    request = _kuaishou_push(json.dumps(message).encode())
    assert KuaishouWebhook().verify([KUAISHOU_SHOP], request).events
    with pytest.raises(StalePushError):
        KuaishouWebhook(freshness_s=300).verify([KUAISHOU_SHOP], request)


def test_douyin_and_youzan_sign_no_time_so_have_no_window() -> None:
    assert DouyinWebhook().freshness_s is None
    assert YouzanWebhook().freshness_s is None
    assert WechatWebhook().freshness_s == 300


# ------------------------------------------------------------- no such order


@pytest.mark.parametrize(
    ("platform", "code", "expected"),
    [
        ("wechat_shop", "10020701", True),
        ("youzan", "141500404", True),
        ("wechat_shop", "45009", False),
        ("youzan", None, False),
    ],
)
def test_a_rejected_read_with_the_platforms_not_found_code_means_no_such_order(
    platform: str, code: str | None, expected: bool
) -> None:
    error = PlatformCallError(platform, "rejected", code, "订单不存在")
    assert CONNECTORS[platform].webhook.says_no_such_order(error) is expected
    failed = PlatformCallError(platform, "failed", code, "timeout")
    assert not CONNECTORS[platform].webhook.says_no_such_order(failed)


# --------------------------------------------------------------------------- signers


def test_douyin_batch_events_go_to_the_shops_they_name_among_the_signing_apps() -> None:
    second = Shop("douyin_shop", "77002", DOUYIN)
    data = [
        {
            "tag": "101",
            "msg_id": "m1",
            "data": json.dumps({"p_id": 1, "shop_id": 77001}),
        },
        {
            "tag": "101",
            "msg_id": "m2",
            "data": json.dumps({"p_id": 2, "shop_id": 77002}),
        },
    ]
    pushed = DouyinWebhook().verify(
        [DOUYIN_SHOP, second], _douyin_push(json.dumps(data).encode())
    )
    assert list(pushed.order_changes()) == [(DOUYIN_SHOP, "1"), (second, "2")]
    stranger = [{"tag": 101, "msg_id": "m3", "data": {"p_id": 3, "shop_id": 5}}]
    with pytest.raises(MalformedPushError, match="no registered shop"):
        DouyinWebhook().verify(
            [DOUYIN_SHOP], _douyin_push(json.dumps(stranger).encode())
        )
