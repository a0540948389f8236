"""The hub's HTTP entry point: the platforms' webhooks (Starlette, uvicorn).

``POST /webhooks/{platform}`` takes one push:

1. it is authenticated with the sending shop's credentials through the
   connector's own ``protocol.py`` (WeChat ``msg_signature`` and AES, Douyin
   ``event-sign``, Kuaishou AES with the message key, Youzan ``sign``): a push
   no shop of the registry signed is answered **401**;
2. it is decoded with the connector's ``translate.py``: a body that is not what
   the platform sends is answered **400** with a message naming the problem;
3. for a platform whose policy consumes pushes (``orders.push_enabled``), each
   order it announces is read from the platform and its commands are stored
   (:class:`hub.service.inbound.OrderIntake`); only then is the platform's success body
   answered (200). A platform that is polled instead (Douyin, Kuaishou) has its
   push verified, decoded and acknowledged, and nothing stored.

Nothing is stored for a push answered 4xx. Bad input never gets a 5xx: a 5xx
means the platform's own API failed while the hub read the order (503, the
platform re-sends). ``GET /webhooks/wechat_shop`` answers WeChat's URL check.
See ``docs/connectors.md`` for every answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from connectors.common import (
    PlatformCallError,
    ProtocolError,
    PushEvent,
    SignatureError,
    SyncPolicy,
)
from connectors.douyin_shop import protocol as douyin_protocol
from connectors.douyin_shop import translate as douyin_translate
from connectors.kuaishou_shop import protocol as kuaishou_protocol
from connectors.kuaishou_shop import translate as kuaishou_translate
from connectors.mapping import TranslateError
from connectors.registry import POLICIES
from connectors.wechat_shop import protocol as wechat_protocol
from connectors.wechat_shop import translate as wechat_translate
from connectors.youzan import protocol as youzan_protocol
from connectors.youzan import translate as youzan_translate
from domain.binding import DataScopeError
from domain.events import DomainError
from domain.order import UnmappedSkuError
from hub.entry.finance_api import finance_app
from hub.infra.shops import Connectors, ShopConfig
from hub.service.inbound import Ingested, MalformedOrderError, OrderIntake

log = logging.getLogger(__name__)

#: Push kinds that announce an order change worth reading.
ORDER_KINDS = frozenset(
    {
        "order_created",
        "order_paid",
        "order_shipped",
        "order_completed",
        "order_cancelled",
    }
)
#: Pushes larger than this are refused unread (no platform sends more).
MAX_BODY_BYTES = 1 << 20
#: What decoding an authenticated but malformed body may raise. The translate
#: functions are pure and name the problem in TranslateError; the others come
#: from values of the wrong shape deeper down (a list where an object belongs,
#: a timestamp past the year 9999), and are bad input all the same: a 400.
DECODE_ERRORS: tuple[type[Exception], ...] = (
    ProtocolError,
    ValueError,
    TypeError,
    AttributeError,
    KeyError,
    OverflowError,
    OSError,
    RecursionError,
)


class PushRejectedError(Exception):
    """A push the hub answers with a 4xx; nothing was stored."""

    status = 400
    code = "malformed_push"


class PushUnauthenticatedError(PushRejectedError):
    """No shop of the registry signed the push."""

    status = 401
    code = "bad_signature"


class MalformedPushError(PushRejectedError):
    """The push is not what the platform sends; the message says what."""


@dataclass
class VerifiedPush:
    """An authenticated, decoded push: who sent it and what it announces.

    ``shops`` maps each event's ``msg_id`` to the shop it concerns.
    """

    platform: str
    events: list[PushEvent]
    shops: dict[str, ShopConfig] = field(default_factory=dict)

    @property
    def heartbeat(self) -> bool:
        """Whether the push only checks that the URL answers."""
        return all(event.kind == "heartbeat" for event in self.events)


# --------------------------------------------------------------------------- verify


def _require(value: str | None, what: str) -> str:
    if not value:
        raise PushUnauthenticatedError(f"the push has no {what}")
    return value


def _decode_text(body: bytes, what: str) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPushError(f"{what} is not UTF-8 text") from None


def verify_wechat(
    connectors: Connectors, query: Mapping[str, str], body: bytes
) -> VerifiedPush:
    """Authenticate (``msg_signature``), decrypt and decode a WeChat push."""
    timestamp = _require(query.get("timestamp"), "timestamp parameter")
    nonce = _require(query.get("nonce"), "nonce parameter")
    received = _require(query.get("msg_signature"), "msg_signature parameter")
    try:
        encrypted = wechat_translate.push_ciphertext(body)
    except DECODE_ERRORS as exc:
        raise MalformedPushError(str(exc)) from None
    shop = None
    for candidate in connectors.shops("wechat_shop"):
        token = candidate.credentials["push_token"]
        try:
            wechat_protocol.verify_msg_signature(
                token, timestamp, nonce, encrypted, received
            )
        except SignatureError:
            continue
        shop = candidate
        break
    if shop is None:
        raise PushUnauthenticatedError(
            "WeChat msg_signature matches the push token of no registered shop"
        )
    creds = shop.credentials
    try:
        plain = wechat_protocol.decrypt(
            creds["encoding_aes_key"], encrypted, creds["app_id"]
        )
        event = wechat_translate.push_event(wechat_translate.push_message(plain))
    except DECODE_ERRORS as exc:
        raise MalformedPushError(f"WeChat push: {exc}") from None
    if event.shop_id is not None and event.shop_id != creds["username"]:
        raise MalformedPushError(
            f"WeChat push is addressed to {event.shop_id!r}, not to the shop whose "
            f"token signed it ({creds['username']!r})"
        )
    return VerifiedPush("wechat_shop", [event], {event.msg_id: shop})


def verify_douyin(
    connectors: Connectors, headers: Mapping[str, str], body: bytes
) -> VerifiedPush:
    """Authenticate (``event-sign``) and decode a Douyin push."""
    received = _require(
        headers.get(douyin_protocol.EVENT_SIGN_HEADER), "event-sign header"
    )
    app_id = headers.get("app-id")
    apps = {
        (s.credentials["app_key"], s.credentials["app_secret"])
        for s in connectors.shops("douyin_shop")
        if app_id in (None, s.credentials["app_key"])
    }
    signer = None
    for app_key, app_secret in sorted(apps):
        try:
            douyin_protocol.verify_event_sign(app_key, body, app_secret, received)
        except SignatureError:
            continue
        signer = app_key
        break
    if signer is None:
        raise PushUnauthenticatedError(
            "Douyin event-sign matches the app key and secret of no registered shop"
        )
    try:
        events = douyin_translate.push_events(body)
    except DECODE_ERRORS as exc:
        raise MalformedPushError(str(exc)) from None
    if not events:
        raise MalformedPushError("Douyin push is an empty array")
    shops = {}
    for event in events:
        shop = _shop_of(connectors, "douyin_shop", event, "shop_id")
        if shop.credentials["app_key"] != signer:
            raise MalformedPushError(
                f"Douyin push {event.msg_id} names shop {shop.shop_id}, which the "
                "signing app does not serve"
            )
        shops[event.msg_id] = shop
    return VerifiedPush("douyin_shop", events, shops)


def verify_kuaishou(connectors: Connectors, body: bytes) -> VerifiedPush:
    """Decrypt (the message key authenticates) and decode a Kuaishou push."""
    stripped = body.strip()
    if stripped.startswith(b"{"):
        # The platform's URL probe may arrive in clear: nothing to trust in it.
        if _plain_json(stripped) == {"test": True}:
            return VerifiedPush("kuaishou_shop", [_heartbeat("kuaishou_shop")])
        raise MalformedPushError(
            'Kuaishou push is clear JSON: only the {"test":true} probe is sent '
            "unencrypted"
        )
    text = _decode_text(stripped, "Kuaishou push body")
    keys = sorted(
        {s.credentials["message_key"] for s in connectors.shops("kuaishou_shop")}
    )
    message = None
    for key in keys:
        try:
            plain = kuaishou_protocol.decrypt_push(key, text)
        except ProtocolError as exc:
            if "push body is not valid Base64" in str(exc):
                raise MalformedPushError(str(exc)) from None
            continue
        try:
            message = kuaishou_translate.push_message(plain)
        except DECODE_ERRORS:
            continue
        break
    if message is None:
        raise PushUnauthenticatedError(
            "Kuaishou push decrypts with the message key of no registered shop"
        )
    try:
        event = kuaishou_translate.push_event(message)
    except DECODE_ERRORS as exc:
        raise MalformedPushError(str(exc)) from None
    if event.kind == "heartbeat":
        return VerifiedPush("kuaishou_shop", [event])
    shop = _shop_of(connectors, "kuaishou_shop", event, "info.sellerId")
    return VerifiedPush("kuaishou_shop", [event], {event.msg_id: shop})


def verify_youzan(connectors: Connectors, body: bytes) -> VerifiedPush:
    """Authenticate (``sign``) and decode a Youzan push."""
    try:
        push = youzan_translate.push_body(body)
    except DECODE_ERRORS as exc:
        raise MalformedPushError(str(exc)) from None
    if push.get("test") is True and "sign" not in push:
        return VerifiedPush("youzan", [_heartbeat("youzan")])
    received = push.get("sign")
    if not isinstance(received, str) or not received:
        raise PushUnauthenticatedError("the push has no sign")
    msg = push.get("msg")
    if not isinstance(msg, str):
        raise MalformedPushError("Youzan push msg is missing or not text")
    client_id = push.get("client_id")
    apps = {
        (s.credentials["client_id"], s.credentials["client_secret"])
        for s in connectors.shops("youzan")
        if client_id in (None, s.credentials["client_id"])
    }
    signer = None
    for app_id, secret in sorted(apps):
        try:
            youzan_protocol.verify_push_sign(app_id, msg, secret, received)
        except SignatureError:
            continue
        signer = app_id
        break
    if signer is None:
        raise PushUnauthenticatedError(
            "Youzan sign matches the client id and secret of no registered shop"
        )
    try:
        youzan_translate.push_msg(push)
        event = youzan_translate.push_event(push)
    except DECODE_ERRORS as exc:
        raise MalformedPushError(f"Youzan push: {exc}") from None
    if event.kind == "heartbeat":
        return VerifiedPush("youzan", [event])
    shop = _shop_of(connectors, "youzan", event, "kdt_id")
    if shop.credentials["client_id"] != signer:
        raise MalformedPushError(
            f"Youzan push names shop {shop.shop_id}, which the signing app does "
            "not serve"
        )
    return VerifiedPush("youzan", [event], {event.msg_id: shop})


def _plain_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _heartbeat(platform: str) -> PushEvent:
    return PushEvent(
        platform=platform, kind="heartbeat", msg_id="test", raw_type="test"
    )


def _shop_of(
    connectors: Connectors, platform: str, event: PushEvent, what: str
) -> ShopConfig:
    if event.kind in ORDER_KINDS and event.order_id is None:
        raise MalformedPushError(
            f"{platform} push {event.msg_id} ({event.raw_type}) names no order"
        )
    if event.shop_id is None:
        raise MalformedPushError(f"{platform} push {event.msg_id} has no {what}")
    for shop in connectors.shops(platform):
        if shop.shop_id == event.shop_id:
            return shop
    raise MalformedPushError(
        f"{platform} push {event.msg_id} is for shop {event.shop_id!r}, which is "
        "not in the connectors registry"
    )


def verify_push(
    platform: str,
    connectors: Connectors,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
) -> VerifiedPush:
    """Authenticate and decode one push of ``platform``.

    Raises:
        PushUnauthenticatedError: no registered shop signed it (401).
        MalformedPushError: it is not what the platform sends (400).
    """
    if platform == "wechat_shop":
        pushed = verify_wechat(connectors, query, body)
    elif platform == "douyin_shop":
        pushed = verify_douyin(connectors, headers, body)
    elif platform == "kuaishou_shop":
        pushed = verify_kuaishou(connectors, body)
    else:
        pushed = verify_youzan(connectors, body)
    for event in pushed.events:
        if event.kind in ORDER_KINDS and event.order_id is None:
            raise MalformedPushError(
                f"{platform} push {event.msg_id} ({event.raw_type}) names no order"
            )
    return pushed


# --------------------------------------------------------------------------- answers


def acknowledge(platform: str) -> Response:
    """The success body each platform expects."""
    if platform == "wechat_shop":
        return PlainTextResponse("success")
    if platform == "kuaishou_shop":
        return Response(kuaishou_protocol.PUSH_ACK_BODY, media_type="application/json")
    if platform == "douyin_shop":
        return JSONResponse(dict(douyin_translate.PUSH_ACK))
    return JSONResponse(dict(youzan_translate.PUSH_ACK))


def refusal(status: int, code: str, message: str) -> JSONResponse:
    """A 4xx/5xx answer: ``{"error": {"code", "message"}}``."""
    return JSONResponse({"error": {"code": code, "message": message}}, status)


@dataclass
class WebhookStats:
    """Counts of answers by status, for tests and ``hub status``-like views."""

    answered: dict[int, int] = field(default_factory=dict)

    def count(self, status: int) -> None:
        """Count one answer."""
        self.answered[status] = self.answered.get(status, 0) + 1


def create_app(
    intake: OrderIntake,
    *,
    policies: Mapping[str, SyncPolicy] = POLICIES,
    stats: WebhookStats | None = None,
) -> Starlette:
    """The webhook app for the shops of ``intake``'s registry.

    Args:
        intake: Where verified order pushes are taken in.
        policies: Each platform's sync policy (which platforms' pushes are
            consumed).
        stats: Counts answers by status, if given.
    """
    connectors = intake.connectors
    counted = stats or WebhookStats()

    async def receive(request: Request) -> Response:
        platform = request.path_params["platform"]
        response = await _receive(request, platform)
        counted.count(response.status_code)
        return response

    async def _receive(request: Request, platform: str) -> Response:
        if platform not in policies:
            return refusal(
                404,
                "unknown_platform",
                f"no webhook for platform {platform!r}; known: {', '.join(policies)}",
            )
        length = request.headers.get("content-length", "0")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            return refusal(413, "too_large", f"push of {length} bytes refused")
        body = await request.body()
        try:
            pushed = verify_push(
                platform,
                connectors,
                dict(request.query_params),
                dict(request.headers),
                body,
            )
        except PushRejectedError as exc:
            return refusal(exc.status, exc.code, str(exc))
        if pushed.heartbeat or not policies[platform].orders.push_enabled:
            return acknowledge(platform)
        for event in pushed.events:
            if event.kind not in ORDER_KINDS or event.order_id is None:
                continue
            shop = pushed.shops[event.msg_id]
            answer = await _take_in(shop, event.order_id)
            if answer is not None:
                return answer
        return acknowledge(platform)

    async def _take_in(shop: ShopConfig, order_id: str) -> Response | None:
        try:
            ingested: Ingested = await intake.pull_order(shop, order_id)
        except UnmappedSkuError as exc:
            return refusal(400, exc.code, str(exc))
        except DataScopeError as exc:
            return refusal(403, exc.code, str(exc))
        except DomainError as exc:
            return refusal(409, exc.code, str(exc))
        except PlatformCallError as exc:
            return refusal(
                503, "platform_unavailable", f"reading the order failed: {exc}"
            )
        except (MalformedOrderError, TranslateError) as exc:
            return refusal(502, "bad_platform_order", str(exc))
        log.debug("took in %s: %s", order_id, ingested.events)
        return None

    async def verify_url(request: Request) -> Response:
        platform = request.path_params["platform"]
        if platform != "wechat_shop":
            return refusal(405, "method_not_allowed", f"{platform} pushes are POSTs")
        query = request.query_params
        try:
            signature = _require(query.get("signature"), "signature parameter")
            timestamp = _require(query.get("timestamp"), "timestamp parameter")
            nonce = _require(query.get("nonce"), "nonce parameter")
        except PushRejectedError as exc:
            return refusal(exc.status, exc.code, str(exc))
        echo = query.get("echostr")
        if not echo:
            return refusal(400, "malformed_push", "the URL check has no echostr")
        for shop in connectors.shops("wechat_shop"):
            token = shop.credentials["push_token"]
            with contextlib.suppress(SignatureError):
                wechat_protocol.verify_signature(token, timestamp, nonce, signature)
                return PlainTextResponse(echo)
        return refusal(
            401, "bad_signature", "signature matches no registered shop's token"
        )

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/webhooks/{platform}", receive, methods=["POST"]),
            Route("/webhooks/{platform}", verify_url, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Mount("/finance", app=finance_app(intake.hub.database_url)),
        ]
    )


# --------------------------------------------------------------------------- server


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the host process owns signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    """Serve an ASGI app with uvicorn on the *current* event loop.

    The webhooks run commands through the hub's committer, whose queue belongs
    to this loop, so the server cannot live in a thread of its own.

    Args:
        app: The app.
        host: Address to bind.
        port: Port (0 picks a free one; :attr:`port` tells which).
    """

    def __init__(self, app: Callable[..., Any], host: str = "127.0.0.1", port: int = 0):
        self.app = app
        self.host = host
        self.port = port
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"

    async def start(self, timeout_s: float = 10.0) -> HttpServer:
        """Bind, serve, and return once requests are accepted.

        Raises:
            OSError: the port is taken.
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        server = _Server(config)
        self._server = server
        self._task = asyncio.create_task(server.serve(sockets=[sock]), name="http")
        async with asyncio.timeout(timeout_s):
            while not server.started:
                if self._task.done():
                    await self._task
                    raise RuntimeError(f"HTTP server on {self.url} exited")
                await asyncio.sleep(0.005)
        return self

    async def stop(self) -> None:
        """Stop serving and wait for the server to finish."""
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
