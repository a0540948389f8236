"""WeChat Shop pushes in safe mode: verified, decrypted, decoded (pure).

A push is ``POST <url>?timestamp&nonce&msg_signature&…`` with a JSON or XML
body holding ``Encrypt``. ``msg_signature`` signs the shop's push token, the
``timestamp`` and ``nonce`` parameters and the ``Encrypt`` text
(``protocol.verify_msg_signature``), so the timestamp is authenticated and a
push whose timestamp is outside the freshness window is refused as a replay.
The decrypted message names the shop it is for (``ToUserName``, the shop's
``username``) and the order (``order_info.order_id``, a JSON number above
2^53, kept as exact text).

WeChat checks the URL with ``GET <url>?signature&timestamp&nonce&echostr``:
the answer is ``echostr`` when the signature is a registered shop's and the
timestamp is fresh.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, ClassVar

import msgspec

from connectors.common import ProtocolError, PushEvent, PushEventKind
from connectors.webhooks import (
    Acknowledgement,
    MalformedPushError,
    PushRequest,
    ShopEvent,
    ShopT,
    UnixSeconds,
    VerifiedPush,
    Webhook,
    decode_document,
    event_checked,
    platform_id,
    required,
    signed_by,
    unix_seconds,
)
from connectors.wechat_shop import protocol
from connectors.wechat_shop.policy import PLATFORM

#: Push ``Event`` → what it announces.
EVENTS: Mapping[str, PushEventKind] = {
    "channels_ec_order_new": "order_created",
    "channels_ec_order_pay": "order_paid",
    "channels_ec_order_cancel": "order_cancelled",
    "channels_ec_order_deliver": "order_shipped",
    "channels_ec_order_confirm": "order_completed",
    "channels_ec_order_settle": "order_settled",
}
#: How far a push's signed ``timestamp`` may be from now, seconds.
FRESHNESS_S = 300.0

Text = Annotated[str, msgspec.Meta(max_length=256)]


class Envelope(msgspec.Struct, frozen=True):
    """The body of a safe-mode push: only ``Encrypt`` is read."""

    encrypt: Annotated[str, msgspec.Meta(max_length=1 << 20)] = msgspec.field(
        default="", name="Encrypt"
    )


class OrderInfo(msgspec.Struct, frozen=True):
    """``order_info`` of an order event."""

    order_id: int | Text | None = None


class Message(msgspec.Struct, frozen=True):
    """A decrypted push message (JSON or XML)."""

    event: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] = msgspec.field(
        name="Event"
    )
    create_time: Annotated[int, UnixSeconds] = msgspec.field(name="CreateTime")
    to_user_name: Text | None = msgspec.field(default=None, name="ToUserName")
    order_info: OrderInfo | None = None


def push_ciphertext(body: bytes) -> str:
    """The ``Encrypt`` text of a safe-mode push, from a JSON or XML body.

    Raises:
        MalformedPushError: neither form, or no ``Encrypt``.
    """
    envelope = decode_document(body, Envelope, "WeChat push body")
    if not envelope.encrypt:
        raise MalformedPushError("WeChat push has no Encrypt field")
    return envelope.encrypt


def push_event(plaintext: bytes) -> PushEvent:
    """What a decrypted push announces.

    WeChat sends no message id with these events; the id is
    ``Event-order_id-CreateTime``, the same for a re-sent push.

    Raises:
        MalformedPushError: not a message (JSON or XML), or ``Event`` or
            ``CreateTime`` missing or malformed.
    """
    message = decode_document(plaintext, Message, "WeChat message")
    info = message.order_info
    order_id = platform_id(
        None if info is None else info.order_id, "order_info.order_id"
    )
    return PushEvent(
        platform=PLATFORM,
        kind=EVENTS.get(message.event, "other"),
        msg_id=f"{message.event}-{order_id or '-'}-{message.create_time}",
        raw_type=message.event,
        order_id=order_id,
        shop_id=message.to_user_name or None,
        occurred_at=datetime.fromtimestamp(message.create_time, UTC),
    )


@dataclass(frozen=True)
class WechatWebhook(Webhook):
    """WeChat Shop's webhook (see the module docstring)."""

    platform: ClassVar[str] = PLATFORM
    acknowledgement: ClassVar[Acknowledgement] = Acknowledgement(
        b"success", "text/plain"
    )
    #: 10020701: the order does not exist.
    no_such_order_codes: ClassVar[frozenset[str]] = frozenset({"10020701"})

    freshness_s: float | None = FRESHNESS_S

    def verify(
        self, shops: Sequence[ShopT], request: PushRequest
    ) -> VerifiedPush[ShopT]:
        """Authenticate (``msg_signature``), decrypt and decode a push."""
        query = request.query
        timestamp = required(query.get("timestamp"), "timestamp parameter")
        nonce = required(query.get("nonce"), "nonce parameter")
        received = required(query.get("msg_signature"), "msg_signature parameter")
        encrypted = push_ciphertext(request.body)

        def opens(token: str) -> None:
            protocol.verify_msg_signature(token, timestamp, nonce, encrypted, received)

        signers = self._signed_and_fresh(
            shops,
            opens,
            timestamp,
            request.now,
            "WeChat msg_signature matches the push token of no registered shop",
        )
        creds = signers[0].credentials
        try:
            plain = protocol.decrypt(
                creds["encoding_aes_key"], encrypted, creds["app_id"]
            )
        except ProtocolError as exc:
            raise MalformedPushError(f"WeChat push: {exc}") from None
        event = event_checked(push_event(plain), f"WeChat push {nonce}")
        addressed = [s for s in signers if s.credentials["username"] == event.shop_id]
        if event.shop_id is not None and not addressed:
            raise MalformedPushError(
                f"WeChat push is addressed to {event.shop_id!r}, not to the shop "
                f"whose token signed it ({creds['username']!r})"
            )
        shop = (addressed or signers)[0]
        return VerifiedPush(PLATFORM, (ShopEvent(shop, event),))

    def check_url(self, shops: Sequence[ShopT], request: PushRequest) -> bytes:
        """Answer WeChat's URL check: ``echostr`` when signed and fresh.

        Raises:
            UnsignedPushError: a parameter is missing or no shop's token
                signed it (401).
            StalePushError: its timestamp is outside the window (401).
            MalformedPushError: no ``echostr`` (400).
        """
        query = request.query
        signature = required(query.get("signature"), "signature parameter")
        timestamp = required(query.get("timestamp"), "timestamp parameter")
        nonce = required(query.get("nonce"), "nonce parameter")
        echo = query.get("echostr")
        if not echo:
            raise MalformedPushError("the URL check has no echostr")

        def opens(token: str) -> None:
            protocol.verify_signature(token, timestamp, nonce, signature)

        self._signed_and_fresh(
            shops,
            opens,
            timestamp,
            request.now,
            "signature matches no registered shop's token",
        )
        return echo.encode("utf-8")

    def _signed_and_fresh(
        self,
        shops: Sequence[ShopT],
        opens: Callable[[str], None],
        timestamp: str,
        now: float,
        refusal: str,
    ) -> list[ShopT]:
        """The shops whose push token signed, once the signed time is fresh."""
        signers, _ = signed_by(
            shops, lambda shop: shop.credentials["push_token"], opens, refusal
        )
        self.check_fresh(unix_seconds(timestamp, "timestamp"), now, "WeChat timestamp")
        return signers
