"""Signed pushes from the sandbox to the hub, built as each platform sends them.

* WeChat Shop: safe mode. The event (JSON, ``order_id`` a bare number above
  2^53) is encrypted with ``wechat_shop.protocol.encrypt``; the URL carries
  ``signature``, ``timestamp``, ``nonce``, ``encrypt_type=aes`` and
  ``msg_signature``; the body is ``{"ToUserName", "Encrypt"}`` JSON or the XML
  form, as the shop's ``push_format`` says.
* Douyin Shop: a JSON array of ``{tag, msg_id, data}`` with ``data`` as JSON
  text, the ``event-sign`` header over the raw body and ``app-id``.
* Kuaishou Shop: the event JSON encrypted with the message key, Base64 text.
* Youzan: JSON with URL-encoded ``msg`` and ``sign`` = MD5(client_id + msg +
  client_secret).

Faults: a push may be sent twice (same message id) or held back until after
the next push of the same platform (out of order).
"""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import quote

from connectors.douyin_shop import protocol as douyin
from connectors.http import HttpClient, HttpError
from connectors.kuaishou_shop import protocol as kuaishou
from connectors.sandbox.state import Order, SandboxState, Shop
from connectors.wechat_shop import protocol as wechat
from connectors.youzan import protocol as youzan

WECHAT_EVENTS = {
    "created": "channels_ec_order_new",
    "paid": "channels_ec_order_pay",
    "cancelled": "channels_ec_order_cancel",
    "shipped": "channels_ec_order_deliver",
    "completed": "channels_ec_order_confirm",
    "settled": "channels_ec_order_settle",
}
DOUYIN_TAGS = {
    "created": 100,
    "paid": 101,
    "shipped": 102,
    "completed": 103,
    "cancelled": 106,
}
DOUYIN_STATUS = {"created": 1, "paid": 2, "shipped": 3, "completed": 5, "cancelled": 4}
KUAISHOU_EVENTS = {
    "created": "kwaishop_order_addOrder",
    "paid": "kwaishop_order_paySuccess",
    "shipped": "kwaishop_order_delivering",
    "completed": "kwaishop_order_orderSuccess",
    "cancelled": "kwaishop_order_orderFail",
}
KUAISHOU_STATUS = {
    "created": 10,
    "paid": 30,
    "shipped": 40,
    "completed": 70,
    "cancelled": 80,
}
YOUZAN_TYPES = {
    "created": "trade_TradeCreate",
    "paid": "trade_TradePaid",
    "shipped": "trade_TradeSellerShip",
    "completed": "trade_TradeSuccess",
    "cancelled": "trade_TradeClose",
}
YOUZAN_STATUS = {
    "created": "WAIT_BUYER_PAY",
    "paid": "WAIT_SELLER_SEND_GOODS",
    "shipped": "WAIT_BUYER_CONFIRM_GOODS",
    "completed": "TRADE_SUCCESS",
    "cancelled": "TRADE_CLOSED",
}


class PreparedPush:
    """One push ready to send: URL, headers, body, and what it is about."""

    def __init__(
        self,
        *,
        platform: str,
        shop_id: str,
        order_id: str,
        event: str,
        url: str,
        params: dict[str, str],
        headers: dict[str, str],
        body: bytes,
    ) -> None:
        self.platform = platform
        self.shop_id = shop_id
        self.order_id = order_id
        self.event = event
        self.url = url
        self.params = params
        self.headers = headers
        self.body = body


class PushSender:
    """Builds, signs and delivers pushes, with duplicate and reorder faults."""

    def __init__(self, state: SandboxState, http: HttpClient) -> None:
        """Deliver with ``http``.

        Args:
            state: The sandbox state (webhooks, faults, logs).
            http: The client to post with.
        """
        self.state = state
        self.http = http
        self.held: dict[str, list[PreparedPush]] = {}

    def webhook(self, shop: Shop) -> str | None:
        """Where a shop's pushes go, if anywhere."""
        return shop.webhook_url or self.state.webhooks.get(shop.platform)

    async def order_event(self, shop: Shop, order: Order, event: str) -> None:
        """Push that ``order`` reached ``event`` (a status or ``settled``).

        Args:
            shop: The shop.
            order: The order.
            event: ``created``, ``paid``, ``shipped``, ``completed``,
                ``cancelled`` or ``settled``.
        """
        url = self.webhook(shop)
        if url is None:
            self._log_unsent(shop, order.order_id, event, "no webhook configured")
            return
        prepared = self.prepare(shop, order, event, url)
        if prepared is None:
            self._log_unsent(
                shop, order.order_id, event, "platform pushes no such event"
            )
            return
        faults = self.state.faults[shop.platform]
        held = self.held.setdefault(shop.platform, [])
        if faults.out_of_order_push_rate and self.state.rng.random() < (
            faults.out_of_order_push_rate
        ):
            held.append(prepared)
            return
        await self._send(prepared, duplicate=False)
        if faults.duplicate_push_rate and self.state.rng.random() < (
            faults.duplicate_push_rate
        ):
            await self._send(prepared, duplicate=True)
        while held:
            await self._send(held.pop(0), duplicate=False, late=True)

    async def flush(self) -> int:
        """Send every push held back for reordering.

        Returns:
            How many were sent.
        """
        sent = 0
        for pushes in self.held.values():
            while pushes:
                await self._send(pushes.pop(0), duplicate=False, late=True)
                sent += 1
        return sent

    def prepare(
        self, shop: Shop, order: Order, event: str, url: str
    ) -> PreparedPush | None:
        """Build the signed request of a push.

        Args:
            shop: The shop.
            order: The order.
            event: What happened.
            url: The hub's webhook URL.

        Returns:
            The push, or None when the platform has no push for ``event``.
        """
        builder = {
            "wechat_shop": self._wechat,
            "douyin_shop": self._douyin,
            "kuaishou_shop": self._kuaishou,
            "youzan": self._youzan,
        }[shop.platform]
        return builder(shop, order, event, url)

    # ------------------------------------------------------------------ builders

    def _wechat(
        self, shop: Shop, order: Order, event: str, url: str
    ) -> PreparedPush | None:
        name = WECHAT_EVENTS.get(event)
        if name is None:
            return None
        creds = shop.credentials
        moment = int(self.state.now())
        info: dict[str, Any] = {"order_id": int(order.order_id)}
        if event == "paid":
            info["pay_time"] = order.updated_at
        if event == "settled":
            info["settle_time"] = order.updated_at
        message = {
            "ToUserName": creds["username"],
            "FromUserName": "o-wechat-team",
            "CreateTime": moment,
            "MsgType": "event",
            "Event": name,
            "order_info": info,
        }
        # A bare JSON number, as WeChat sends it: readers must not use floats.
        plaintext = json.dumps(message, ensure_ascii=False).encode()
        encrypted = wechat.encrypt(
            creds["encoding_aes_key"], plaintext, creds["app_id"]
        )
        timestamp = str(moment)
        nonce = secrets.token_hex(5)
        token = creds["push_token"]
        params = {
            "signature": wechat.signature(token, timestamp, nonce),
            "timestamp": timestamp,
            "nonce": nonce,
            "encrypt_type": "aes",
            "msg_signature": wechat.msg_signature(token, timestamp, nonce, encrypted),
        }
        if creds.get("push_format", "json") == "xml":
            body = (
                f"<xml><ToUserName><![CDATA[{creds['username']}]]></ToUserName>"
                f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
            ).encode()
            headers = {"Content-Type": "text/xml"}
        else:
            body = json.dumps(
                {"ToUserName": creds["username"], "Encrypt": encrypted}
            ).encode()
            headers = {"Content-Type": "application/json"}
        return PreparedPush(
            platform=shop.platform,
            shop_id=shop.shop_id,
            order_id=order.order_id,
            event=name,
            url=url,
            params=params,
            headers=headers,
            body=body,
        )

    def _douyin(
        self, shop: Shop, order: Order, event: str, url: str
    ) -> PreparedPush | None:
        tag = DOUYIN_TAGS.get(event)
        if tag is None:
            return None
        creds = shop.credentials
        data = {
            "p_id": int(order.order_id),
            "s_ids": [int(order.order_id) + 1 + i for i in range(len(order.lines))],
            "shop_id": int(shop.shop_id) if shop.shop_id.isdigit() else shop.shop_id,
            "order_status": DOUYIN_STATUS[order.status],
            "create_time": order.created_at,
            "update_time": order.updated_at,
        }
        items = [
            {
                "tag": str(tag),
                "msg_id": f"{self.state.next_number():019d}",
                "data": json.dumps(data, ensure_ascii=False),
            }
        ]
        body = json.dumps(items, ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json",
            douyin.EVENT_SIGN_HEADER: douyin.event_sign(
                creds["app_key"], body, creds["app_secret"]
            ),
            "app-id": creds["app_key"],
        }
        return PreparedPush(
            platform=shop.platform,
            shop_id=shop.shop_id,
            order_id=order.order_id,
            event=str(tag),
            url=url,
            params={},
            headers=headers,
            body=body,
        )

    def _kuaishou(
        self, shop: Shop, order: Order, event: str, url: str
    ) -> PreparedPush | None:
        name = KUAISHOU_EVENTS.get(event)
        if name is None:
            return None
        creds = shop.credentials
        now_ms = int(self.state.now() * 1000)
        info = {
            "oid": int(order.order_id),
            "sellerId": int(shop.shop_id) if shop.shop_id.isdigit() else shop.shop_id,
            "status": KUAISHOU_STATUS[order.status],
            "updateTime": order.updated_at * 1000,
        }
        message = {
            "eventId": f"E{self.state.next_number()}",
            "bizId": int(order.order_id),
            "msgId": f"M{self.state.next_number()}",
            "openId": order.buyer_ref,
            "event": name,
            "info": json.dumps(info),
            "createTime": now_ms,
            "updateTime": now_ms,
            "test": False,
            "appKey": creds["app_id"],
        }
        body = kuaishou.encrypt_push(
            creds["message_key"], json.dumps(message).encode()
        ).encode("ascii")
        return PreparedPush(
            platform=shop.platform,
            shop_id=shop.shop_id,
            order_id=order.order_id,
            event=name,
            url=url,
            params={},
            headers={"Content-Type": "text/plain"},
            body=body,
        )

    def _youzan(
        self, shop: Shop, order: Order, event: str, url: str
    ) -> PreparedPush | None:
        kind = YOUZAN_TYPES.get(event)
        if kind is None:
            return None
        creds = shop.credentials
        status = YOUZAN_STATUS[order.status]
        msg = quote(
            json.dumps(
                {"tid": order.order_id, "status": status, "kdt_id": shop.shop_id}
            ),
            safe="",
        )
        push = {
            "client_id": creds["client_id"],
            "id": order.order_id,
            "kdt_id": int(shop.shop_id) if shop.shop_id.isdigit() else shop.shop_id,
            "kdt_name": creds.get("shop_name", shop.shop_id),
            "mode": 1,
            "msg": msg,
            "sendCount": 0,
            "sign": youzan.push_sign(creds["client_id"], msg, creds["client_secret"]),
            "status": status,
            "type": kind,
            "version": order.updated_at,
            "test": False,
        }
        return PreparedPush(
            platform=shop.platform,
            shop_id=shop.shop_id,
            order_id=order.order_id,
            event=kind,
            url=url,
            params={},
            headers={"Content-Type": "application/json"},
            body=json.dumps(push, ensure_ascii=False).encode(),
        )

    # ------------------------------------------------------------------ sending

    async def _send(
        self, push: PreparedPush, *, duplicate: bool, late: bool = False
    ) -> None:
        record: dict[str, Any] = {
            "platform": push.platform,
            "shop_id": push.shop_id,
            "order_id": push.order_id,
            "event": push.event,
            "url": push.url,
            "duplicate": duplicate,
            "late": late,
            "at": self.state.now(),
        }
        try:
            response = await self.http.post(
                push.url,
                params=push.params,
                headers=push.headers,
                content=push.body,
                timeout=self.state.config.push_timeout_s,
            )
        except HttpError as exc:
            record.update(status=None, error=f"{type(exc).__name__}: {exc}")
        else:
            record.update(status=response.status_code, answer=response.text[:500])
        self.state.pushes.append(record)

    def _log_unsent(self, shop: Shop, order_id: str, event: str, why: str) -> None:
        self.state.pushes.append(
            {
                "platform": shop.platform,
                "shop_id": shop.shop_id,
                "order_id": order_id,
                "event": event,
                "status": None,
                "error": why,
                "at": self.state.now(),
            }
        )
