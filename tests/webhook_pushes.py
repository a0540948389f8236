"""Signed pushes as the platforms send them, for the webhook tests.

Credentials of made-up shops, and the signing each platform does, so a test
can send a genuine push, a replayed one, or one with an unsigned field changed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any
from urllib.parse import quote

from connectors.wechat_shop import protocol as wechat_protocol

WECHAT_CREDS = {
    "app_id": "wx0123456789abcdef",
    "app_secret": "s" * 32,
    "push_token": "push-token",
    "encoding_aes_key": base64.b64encode(bytes(range(32))).decode()[:43],
    "username": "gh_shop",
}
DOUYIN_CREDS = {"app_key": "dy-app", "app_secret": "dy-secret"}
KUAISHOU_CREDS = {
    "app_id": "ks-app",
    "app_secret": "ks-secret",
    "sign_secret": "ks-sign",
    "message_key": base64.b64encode(bytes(range(16))).decode(),
}
YOUZAN_CREDS = {"client_id": "yz-client", "client_secret": "yz-secret-0123456789"}


def wechat_order_message(
    username: str, order_id: int, created: int | None = None
) -> bytes:
    """A decrypted WeChat "order paid" message (order id a bare JSON number)."""
    return json.dumps(
        {
            "ToUserName": username,
            "CreateTime": int(time.time()) if created is None else created,
            "MsgType": "event",
            "Event": "channels_ec_order_pay",
            "order_info": {"order_id": order_id},
        }
    ).encode()


def wechat_push(
    creds: dict[str, str], plain: bytes, timestamp: str, nonce: str = "n0nce"
) -> tuple[dict[str, str], bytes]:
    """A WeChat safe-mode push of ``plain`` signed with ``timestamp``: (query, body)."""
    encrypted = wechat_protocol.encrypt(
        creds["encoding_aes_key"], plain, creds["app_id"]
    )
    query = {
        "timestamp": timestamp,
        "nonce": nonce,
        "msg_signature": wechat_protocol.msg_signature(
            creds["push_token"], timestamp, nonce, encrypted
        ),
    }
    body = json.dumps({"ToUserName": creds["username"], "Encrypt": encrypted})
    return query, body.encode()


def youzan_push(creds: dict[str, str], msg: dict[str, Any], **outer: Any) -> bytes:
    """A Youzan push as the platform signs it (only ``msg`` is signed)."""
    text = quote(json.dumps(msg), safe="")
    sign = hashlib.md5(
        f"{creds['client_id']}{text}{creds['client_secret']}".encode()
    ).hexdigest()
    push = {
        "client_id": creds["client_id"],
        "type": "trade_TradePaid",
        "version": int(time.time()),
        "msg": text,
        "sign": sign,
        "test": False,
        **outer,
    }
    return json.dumps(push).encode()
