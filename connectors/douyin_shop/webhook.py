"""Douyin Shop pushes: verified by ``event-sign``, decoded (pure).

A push is a JSON array of ``{tag, msg_id, data}`` where ``data`` is JSON text
naming the order (``p_id``) and the shop (``shop_id``). The ``event-sign``
header is MD5 of the app key, the raw body and the app secret
(``protocol.verify_event_sign``), so everything in the body is signed; the
``app-id`` header only narrows which app to try. The body carries no time of
sending (``create_time``/``update_time`` are the order's own, and a re-sent
push keeps them), so there is no freshness window: Douyin orders are polled,
and a replayed push is acknowledged without any read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, ClassVar

import msgspec

from connectors.common import PushEvent, PushEventKind
from connectors.douyin_shop import protocol
from connectors.douyin_shop.policy import PLATFORM
from connectors.webhooks import (
    Acknowledgement,
    MalformedPushError,
    PushRequest,
    ShopEvent,
    ShopT,
    UnixSeconds,
    VerifiedPush,
    Webhook,
    decode_json,
    event_checked,
    platform_id,
    required,
    shop_named,
    signed_by,
)

#: Push ``tag`` → what it announces.
TAGS: Mapping[int, PushEventKind] = {
    100: "order_created",
    101: "order_paid",
    102: "order_shipped",
    103: "order_completed",
    106: "order_cancelled",
}
#: The answer a push must receive.
PUSH_ACK_BODY = b'{"code":0,"msg":"success"}'

Id = int | Annotated[str, msgspec.Meta(max_length=64)]


class Data(msgspec.Struct, frozen=True):
    """The ``data`` of one pushed message."""

    p_id: Id | None = None
    shop_id: Id | None = None
    update_time: Annotated[int, UnixSeconds] | None = None
    create_time: Annotated[int, UnixSeconds] | None = None


class Item(msgspec.Struct, frozen=True):
    """One message of the pushed array."""

    tag: int
    msg_id: Id
    data: Annotated[str, msgspec.Meta(max_length=1 << 20)] | Data


def push_events(body: bytes) -> list[PushEvent]:
    """The events of a push body, in the order received.

    Verify the ``event-sign`` header over the same raw body first.

    Raises:
        MalformedPushError: not an array of ``{tag, msg_id, data}``.
    """
    items = decode_json(body, list[Item], "Douyin push body", strict=False)
    return [_event(item) for item in items]


def _event(item: Item) -> PushEvent:
    msg_id = str(item.msg_id)
    data = item.data
    if isinstance(data, str):
        data = decode_json(data, Data, f"Douyin push {msg_id} data", strict=False)
    moment = data.update_time or data.create_time
    return PushEvent(
        platform=PLATFORM,
        kind=TAGS.get(item.tag, "other"),
        msg_id=msg_id,
        raw_type=str(item.tag),
        order_id=platform_id(data.p_id, "p_id"),
        shop_id=platform_id(data.shop_id, "shop_id"),
        occurred_at=None if moment is None else datetime.fromtimestamp(moment, UTC),
    )


@dataclass(frozen=True)
class DouyinWebhook(Webhook):
    """Douyin Shop's webhook (see the module docstring)."""

    platform: ClassVar[str] = PLATFORM
    acknowledgement: ClassVar[Acknowledgement] = Acknowledgement(
        PUSH_ACK_BODY, "application/json"
    )

    def verify(
        self, shops: Sequence[ShopT], request: PushRequest
    ) -> VerifiedPush[ShopT]:
        """Authenticate (``event-sign``) and decode a push."""
        received = required(
            request.headers.get(protocol.EVENT_SIGN_HEADER), "event-sign header"
        )
        app_id = request.headers.get("app-id")
        body = request.body

        def opens(app: tuple[str, str]) -> None:
            protocol.verify_event_sign(app[0], body, app[1], received)

        signers, _ = signed_by(
            [s for s in shops if app_id in (None, s.credentials["app_key"])],
            lambda shop: (shop.credentials["app_key"], shop.credentials["app_secret"]),
            opens,
            "Douyin event-sign matches the app key and secret of no registered shop",
        )
        events = push_events(body)
        if not events:
            raise MalformedPushError("Douyin push is an empty array")
        return VerifiedPush(
            PLATFORM,
            tuple(
                ShopEvent(
                    shop_named(
                        signers, event.shop_id, f"Douyin push {event.msg_id}", "shop_id"
                    ),
                    event_checked(event, f"Douyin push {event.msg_id}"),
                )
                for event in events
            ),
        )
