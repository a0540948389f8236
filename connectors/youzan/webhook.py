"""Youzan pushes: verified by ``sign``, acted on only through the signed ``msg``.

A push is JSON with ``client_id``, ``id``, ``kdt_id``, ``type``, ``status``,
``version`` and a URL-encoded ``msg``; ``sign`` is MD5 of the client id, the
``msg`` text as received and the client secret (``protocol.verify_push_sign``).
Only ``msg`` is signed, so the hub takes the order (``tid``), the shop
(``kdt_id``) and the order's status from the decoded ``msg`` and refuses a push
whose outer ``id``, ``kdt_id`` or ``status`` says otherwise: a captured push
with its outer id changed cannot make the hub read another order. When ``msg``
names no ``kdt_id``, the shop is the one registered shop of the signing app
(several: refused, the outer ``kdt_id`` is not trusted to choose).

Nothing signed says when a push was sent (``version`` is outside the
signature, and ``msg``'s ``update_time`` is the order's, kept by re-sends), so
there is no freshness window; a replayed push re-reads the same order, which
changes nothing. ``{"test":true}`` without ``sign`` is the URL probe.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, ClassVar
from urllib.parse import unquote

import msgspec

from connectors.common import OrderStatus, PushEvent, PushEventKind
from connectors.webhooks import (
    Acknowledgement,
    MalformedPushError,
    PushRequest,
    ShopEvent,
    ShopT,
    UnixSeconds,
    UnsignedPushError,
    VerifiedPush,
    Webhook,
    decode_json,
    event_checked,
    platform_id,
    shop_named,
    signed_by,
)
from connectors.youzan import protocol
from connectors.youzan.policy import PLATFORM
from connectors.youzan.translate import STATUS

#: The order status a signed ``msg`` names → what the push announces.
KINDS: Mapping[OrderStatus, PushEventKind] = {
    "created": "order_created",
    "paid": "order_paid",
    "shipped": "order_shipped",
    "completed": "order_completed",
    "cancelled": "order_cancelled",
}
#: The answer a push must receive.
PUSH_ACK_BODY = b'{"code":0,"msg":"success"}'

Id = int | Annotated[str, msgspec.Meta(max_length=64)]
Text = Annotated[str, msgspec.Meta(max_length=128)]


class Push(msgspec.Struct, frozen=True):
    """A push body; only ``msg`` is covered by ``sign``."""

    test: bool = False
    sign: Text | None = None
    msg: Annotated[str, msgspec.Meta(max_length=1 << 20)] | None = None
    client_id: Text | None = None
    type: Text | None = None
    version: Annotated[int, UnixSeconds] | None = None
    id: Id | None = None
    kdt_id: Id | None = None
    status: Text | None = None


class Msg(msgspec.Struct, frozen=True):
    """The decoded ``msg``: the signed facts."""

    tid: Id | None = None
    kdt_id: Id | None = None
    status: Text | None = None
    update_time: Text | None = None


def push_msg(msg: str) -> Msg:
    """The signed ``msg`` (URL-encoded JSON), decoded.

    Raises:
        MalformedPushError: not URL-encoded JSON of an object of its shape.
    """
    return decode_json(unquote(msg), Msg, "Youzan push msg")


def push_event(push: Push, msg: Msg) -> PushEvent:
    """What a verified push announces, from its signed ``msg``.

    Raises:
        MalformedPushError: an outer field disagrees with ``msg``, or
            ``type``/``version`` is missing.
    """
    if push.type is None or push.version is None:
        missing = "type" if push.type is None else "version"
        raise MalformedPushError(f"Youzan push has no {missing!r}")
    tid = platform_id(msg.tid, "msg tid")
    kdt = platform_id(msg.kdt_id, "msg kdt_id")
    for what, outer, signed in (
        ("id", platform_id(push.id, "id"), tid),
        ("kdt_id", platform_id(push.kdt_id, "kdt_id"), kdt),
        ("status", push.status, msg.status),
    ):
        if outer is not None and outer != signed:
            raise MalformedPushError(
                f"Youzan push {what} {outer!r} is not the signed msg's {signed!r}: "
                "only msg is signed, so a push whose other fields disagree is "
                "refused"
            )
    status = STATUS.get(msg.status or "")
    kind: PushEventKind = "other" if status is None else KINDS[status]
    return PushEvent(
        platform=PLATFORM,
        kind=kind if tid is not None else "other",
        msg_id=f"{push.type}-{tid or '-'}-{msg.status or '-'}",
        raw_type=push.type,
        order_id=tid,
        shop_id=kdt,
    )


@dataclass(frozen=True)
class YouzanWebhook(Webhook):
    """Youzan's webhook (see the module docstring)."""

    platform: ClassVar[str] = PLATFORM
    acknowledgement: ClassVar[Acknowledgement] = Acknowledgement(
        PUSH_ACK_BODY, "application/json"
    )
    #: 141500404: the trade does not exist.
    no_such_order_codes: ClassVar[frozenset[str]] = frozenset({"141500404"})

    def verify(
        self, shops: Sequence[ShopT], request: PushRequest
    ) -> VerifiedPush[ShopT]:
        """Authenticate (``sign``) and decode a push from its signed ``msg``."""
        push = decode_json(request.body, Push, "Youzan push body")
        if push.test and push.sign is None:
            return VerifiedPush(PLATFORM, heartbeat=True)
        if not push.sign:
            raise UnsignedPushError("the push has no sign")
        if push.msg is None:
            raise MalformedPushError("Youzan push msg is missing")
        msg_text, received = push.msg, push.sign

        def opens(app: tuple[str, str]) -> None:
            protocol.verify_push_sign(app[0], msg_text, app[1], received)

        signers, _ = signed_by(
            [s for s in shops if push.client_id in (None, s.credentials["client_id"])],
            lambda s: (s.credentials["client_id"], s.credentials["client_secret"]),
            opens,
            "Youzan sign matches the client id and secret of no registered shop",
        )
        if push.test:
            return VerifiedPush(PLATFORM, heartbeat=True)
        event = push_event(push, push_msg(msg_text))
        where = f"Youzan push {event.msg_id}"
        if event.shop_id is None and len(signers) == 1:
            shop = signers[0]
        elif event.shop_id is None:
            raise MalformedPushError(
                f"{where}: its signed msg names no kdt_id and the signing app "
                f"serves {len(signers)} shops (the outer kdt_id is not signed)"
            )
        else:
            shop = shop_named(signers, event.shop_id, where, "kdt_id")
        return VerifiedPush(PLATFORM, (ShopEvent(shop, event_checked(event, where)),))
