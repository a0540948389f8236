"""Kuaishou Shop pushes: decrypted with a shop's message key, decoded (pure).

A push body is Base64 of the AES-encrypted message; the key that decrypts it
to a message names the app that sent it (there is no separate signature). The
message carries ``event``, ``msgId``, ``createTime`` and an ``info`` JSON text
naming the order (``oid``) and the seller (``sellerId``). The platform probes
the URL with ``{"test":true}``, sometimes in clear; nothing else arrives in
clear.

Freshness: ``createTime`` is inside the encrypted message, but Kuaishou orders
are polled and a push stores nothing and calls nothing, so by default no
window applies (``freshness_s`` None); give one to refuse older messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, ClassVar

import msgspec

from connectors.common import ProtocolError, PushEvent, PushEventKind
from connectors.kuaishou_shop import protocol
from connectors.kuaishou_shop.policy import PLATFORM
from connectors.webhooks import (
    Acknowledgement,
    MalformedPushError,
    PushRequest,
    ShopEvent,
    ShopT,
    UnixMillis,
    VerifiedPush,
    Webhook,
    decode_json,
    event_checked,
    platform_id,
    shop_named,
    signed_by,
)

#: Push ``event`` → what it announces.
EVENTS: Mapping[str, PushEventKind] = {
    "kwaishop_order_addOrder": "order_created",
    "kwaishop_order_paySuccess": "order_paid",
    "kwaishop_order_delivering": "order_shipped",
    "kwaishop_order_orderSuccess": "order_completed",
    "kwaishop_order_orderFail": "order_cancelled",
}

Id = int | Annotated[str, msgspec.Meta(max_length=64)]
Millis = Annotated[int, UnixMillis]


class Probe(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The clear ``{"test":true}`` probe (nothing else is sent in clear)."""

    test: bool = False


class Info(msgspec.Struct, frozen=True, rename="camel"):
    """The ``info`` of a pushed message."""

    oid: Id | None = None
    seller_id: Id | None = None
    update_time: Millis | None = None


class Message(msgspec.Struct, frozen=True, rename="camel"):
    """A decrypted push message."""

    test: bool = False
    event: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    msg_id: Id | None = None
    biz_id: Id | None = None
    info: Annotated[str, msgspec.Meta(max_length=1 << 20)] | Info | None = None
    create_time: Millis | None = None


def push_message(plaintext: bytes) -> Message:
    """A decrypted push, typed.

    Raises:
        MalformedPushError: not a JSON object of the message's shape.
    """
    return decode_json(plaintext, Message, "Kuaishou push", strict=False)


def push_event(message: Message) -> PushEvent:
    """What a decrypted push announces (the heartbeat included).

    Raises:
        MalformedPushError: ``msgId`` or ``event`` missing, or ``info`` not
            JSON of its shape.
    """
    if message.test:
        return PushEvent(
            platform=PLATFORM,
            kind="heartbeat",
            msg_id=str(message.msg_id or "heartbeat"),
            raw_type="test",
        )
    if message.event is None:
        raise MalformedPushError("Kuaishou push has no 'event'")
    if message.msg_id is None:
        raise MalformedPushError("Kuaishou push has no 'msgId'")
    msg_id = str(message.msg_id)
    info = message.info or Info()
    if isinstance(info, str):
        info = decode_json(info, Info, f"Kuaishou push {msg_id} info", strict=False)
    order_id = info.oid if info.oid is not None else message.biz_id
    moment = info.update_time or message.create_time
    return PushEvent(
        platform=PLATFORM,
        kind=EVENTS.get(message.event, "other"),
        msg_id=msg_id,
        raw_type=message.event,
        order_id=platform_id(order_id, "oid"),
        shop_id=platform_id(info.seller_id, "sellerId"),
        occurred_at=None if moment is None else _from_millis(moment),
    )


def _from_millis(millis: int) -> datetime:
    return datetime.fromtimestamp(millis // 1000, UTC) + timedelta(
        milliseconds=millis % 1000
    )


@dataclass(frozen=True)
class KuaishouWebhook(Webhook):
    """Kuaishou Shop's webhook (see the module docstring)."""

    platform: ClassVar[str] = PLATFORM
    acknowledgement: ClassVar[Acknowledgement] = Acknowledgement(
        protocol.PUSH_ACK_BODY, "application/json"
    )

    def verify(
        self, shops: Sequence[ShopT], request: PushRequest
    ) -> VerifiedPush[ShopT]:
        """Decrypt (the message key authenticates) and decode a push."""
        body = request.body.strip()
        if body.startswith(b"{"):
            probe = decode_json(body, Probe, "Kuaishou clear push", strict=False)
            if probe.test:
                return VerifiedPush(PLATFORM, heartbeat=True)
            raise MalformedPushError(
                'Kuaishou push is clear JSON: only the {"test":true} probe is sent '
                "unencrypted"
            )
        try:
            ciphertext = protocol.push_ciphertext(body)
        except ProtocolError as exc:
            raise MalformedPushError(str(exc)) from None

        def opens(key: str) -> Message:
            return push_message(protocol.decrypt_ciphertext(key, ciphertext))

        signers, message = signed_by(
            shops,
            lambda shop: shop.credentials["message_key"],
            opens,
            "Kuaishou push decrypts with the message key of no registered shop",
        )
        event = push_event(message)
        if event.kind == "heartbeat":
            return VerifiedPush(PLATFORM, heartbeat=True)
        if message.create_time is not None:
            self.check_fresh(
                message.create_time / 1000, request.now, "Kuaishou createTime"
            )
        where = f"Kuaishou push {event.msg_id}"
        shop = shop_named(signers, event.shop_id, where, "info.sellerId")
        return VerifiedPush(PLATFORM, (ShopEvent(shop, event_checked(event, where)),))
