"""The hub's HTTP entry point: the platforms' webhooks (Starlette, uvicorn).

``POST /webhooks/{platform}`` takes one push and only moves bytes; what a push
means is the platform's own ``connectors/<platform>/webhook.py``, found
through the connector registry:

1. the body is read up to 1 MiB, whatever the transfer encoding; a longer one
   is answered **413** without reading the rest;
2. the platform's webhook verifies it with the registered shops' credentials
   and decodes it (:class:`connectors.webhooks.VerifiedPush`): no shop signed
   it → **401**; signed at a time outside the platform's freshness window →
   **401** ``stale_push``; not what the platform sends → **400**;
3. for a platform whose policy takes order pushes in (``orders.push_enabled``),
   each order it announces is read from the platform and its commands are
   stored (:class:`hub.service.inbound.OrderIntake`), at most a few reads per
   shop at a time (the excess of one shop is answered **429** with
   ``Retry-After``, other shops are served); only then is the platform's
   acknowledgement answered (200). An order the platform says does not exist
   is acknowledged and recorded as a webhook dead letter, not re-sent forever.

Nothing is stored for a push answered 4xx. Bad input never gets a 5xx: a 5xx
means the platform's own API failed while the hub read the order (503, the
platform re-sends). ``GET /webhooks/{platform}`` answers the platform's URL
check where it has one. See ``docs/connectors.md`` for every answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from connectors.common import PlatformCallError
from connectors.mapping import TranslateError
from connectors.registry import connector
from connectors.webhooks import (
    MAX_BODY_BYTES,
    PushRejectedError,
    PushRequest,
    Webhook,
)
from domain.binding import DataScopeError
from domain.events import DomainError
from domain.order import UnmappedSkuError
from domain.policy import SyncPolicy
from hub.entry.finance_api import finance_app
from hub.entry.metrics import CountWebhooks, metrics_endpoint
from hub.infra.shops import ShopConfig
from hub.infra.webhook_letters import WebhookDeadLetters
from hub.service.inbound import Ingested, MalformedOrderError, OrderIntake

log = logging.getLogger(__name__)

#: Order reads one shop's pushes may run at once, and wait for, by default.
READS_PER_SHOP = 32
WAITING_PER_SHOP = 128
#: Seconds a push refused for its shop's backlog is told to wait.
RETRY_AFTER_S = 1


class BodyTooLargeError(Exception):
    """The body is longer than the limit; the rest was not read."""


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, read chunk by chunk and never past ``limit`` bytes.

    ``Content-Length`` is only a hint: a chunked body has none, and a body is
    counted as it arrives.

    Raises:
        BodyTooLargeError: it holds more than ``limit`` bytes.
    """
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise BodyTooLargeError(f"push of {length} bytes refused (at most {limit:,})")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(
                f"push of more than {limit:,} bytes refused (stopped reading at "
                f"{size:,})"
            )
        chunks.append(chunk)
    return b"".join(chunks)


class ShopQueue:
    """A fair queue per shop for the order reads that pushes trigger.

    At most ``in_flight`` reads of one shop run at once and ``waiting`` more
    wait their turn in arrival order; a push beyond that is refused at once,
    so a flood for one shop cannot hold the hub (or spend the shop's API
    budget) while pushes of other shops are served.

    Args:
        in_flight: Reads of one shop that run at once.
        waiting: Reads of one shop that may wait for a turn.
    """

    def __init__(
        self, in_flight: int = READS_PER_SHOP, waiting: int = WAITING_PER_SHOP
    ) -> None:
        self.in_flight = in_flight
        self.waiting = waiting
        self._turns: dict[str, asyncio.Semaphore] = {}
        self._held: dict[str, int] = {}

    def held(self, key: str) -> int:
        """Reads of shop ``key`` running or waiting now."""
        return self._held.get(key, 0)

    def admits(self, key: str) -> bool:
        """Whether a read of shop ``key`` may run or wait now."""
        return self.held(key) < self.in_flight + self.waiting

    @contextlib.asynccontextmanager
    async def turn(self, key: str) -> AsyncIterator[None]:
        """Hold one of the shop's read turns (check :meth:`admits` first)."""
        self._held[key] = self._held.get(key, 0) + 1
        turns = self._turns.setdefault(key, asyncio.Semaphore(self.in_flight))
        try:
            async with turns:
                yield
        finally:
            self._held[key] -= 1
            if not self._held[key]:
                del self._held[key]


def refusal(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """A 4xx/5xx answer: ``{"error": {"code", "message"}}``."""
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status, headers=headers
    )


def acknowledge(webhook: Webhook) -> Response:
    """The acknowledgement the platform expects."""
    ack = webhook.acknowledgement
    return Response(ack.body, ack.status, media_type=ack.media_type)


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
    policies: Mapping[str, SyncPolicy],
    stats: WebhookStats | None = None,
    clock: Callable[[], float] = time.time,
    queue: ShopQueue | None = None,
    dead_letters: WebhookDeadLetters | None = None,
) -> Starlette:
    """The webhook app for the shops of ``intake``'s registry.

    Args:
        intake: Where verified order pushes are taken in.
        policies: Each platform's sync policy from the policy book (which
            platforms' order pushes are taken in).
        stats: Counts answers by status, if given.
        clock: Unix seconds now, for the platforms' freshness windows.
        queue: The per-shop limit on order reads (default
            :data:`READS_PER_SHOP` at once, :data:`WAITING_PER_SHOP` waiting).
        dead_letters: Where an order the platform says does not exist is
            recorded (default: ``webhook_dead_letters`` in the hub's database).
    """
    connectors = intake.connectors
    counted = stats or WebhookStats()
    reads = queue or ShopQueue()
    letters = dead_letters or WebhookDeadLetters(intake.hub.database_url)

    async def receive(request: Request) -> Response:
        platform = request.path_params["platform"]
        response = await _receive(request, platform)
        counted.count(response.status_code)
        return response

    def _webhook(platform: str) -> Webhook | None:
        return connector(platform).webhook if platform in policies else None

    def _unknown(platform: str) -> Response:
        return refusal(
            404,
            "unknown_platform",
            f"no webhook for platform {platform!r}; known: {', '.join(policies)}",
        )

    async def _receive(request: Request, platform: str) -> Response:
        webhook = _webhook(platform)
        if webhook is None:
            return _unknown(platform)
        try:
            body = await read_body(request)
        except BodyTooLargeError as exc:
            return refusal(413, "too_large", str(exc))
        try:
            pushed = webhook.verify(
                connectors.shops(platform), _push_request(request, body)
            )
        except PushRejectedError as exc:
            return refusal(exc.status, exc.code, str(exc))
        if pushed.heartbeat or not policies[platform].orders.push_enabled:
            return acknowledge(webhook)
        # An event whose news the hub holds is acknowledged without a read.
        for shop, order_id in intake.news(pushed.order_events()):
            answer = await _take_in(webhook, shop, order_id)
            if answer is not None:
                return answer
        return acknowledge(webhook)

    def _push_request(request: Request, body: bytes) -> PushRequest:
        return PushRequest(
            query=dict(request.query_params),
            headers=dict(request.headers),
            body=body,
            now=clock(),
        )

    async def _take_in(  # noqa: PLR0911 (one answer per outcome)
        webhook: Webhook, shop: ShopConfig, order_id: str
    ) -> Response | None:
        if not reads.admits(shop.key):
            return refusal(
                429,
                "too_many_pushes",
                f"{shop.key} already has {reads.in_flight} order reads running "
                f"and {reads.waiting} waiting; send again later",
                {"Retry-After": str(RETRY_AFTER_S)},
            )
        try:
            async with reads.turn(shop.key):
                ingested: Ingested = await intake.pull_order(shop, order_id)
        except UnmappedSkuError as exc:
            return refusal(400, exc.code, str(exc))
        except DataScopeError as exc:
            return refusal(403, exc.code, str(exc))
        except DomainError as exc:
            return refusal(409, exc.code, str(exc))
        except PlatformCallError as exc:
            if webhook.says_no_such_order(exc):
                await _dead_letter(shop, order_id, exc)
                return None
            return refusal(
                503, "platform_unavailable", f"reading the order failed: {exc}"
            )
        except (MalformedOrderError, TranslateError) as exc:
            return refusal(502, "bad_platform_order", str(exc))
        log.debug("took in %s: %s", order_id, ingested.events)
        return None

    async def _dead_letter(
        shop: ShopConfig, order_id: str, error: PlatformCallError
    ) -> None:
        log.warning(
            "webhook dead letter: %s shop %s pushed order %s, which the platform "
            "says does not exist (code %s: %s); acknowledged, not read again",
            shop.platform,
            shop.shop_id,
            order_id,
            error.code,
            error.message,
        )
        await letters.record(
            shop.platform, shop.shop_id, order_id, error.code or "", error.message
        )

    async def verify_url(request: Request) -> Response:
        platform = request.path_params["platform"]
        webhook = _webhook(platform)
        if webhook is None:
            return _unknown(platform)
        try:
            echo = webhook.check_url(
                connectors.shops(platform), _push_request(request, b"")
            )
        except PushRejectedError as exc:
            return refusal(exc.status, exc.code, str(exc))
        return Response(echo, media_type="text/plain")

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    return Starlette(
        middleware=[Middleware(CountWebhooks)],
        routes=[
            Route("/webhooks/{platform}", receive, methods=["POST"]),
            Route("/webhooks/{platform}", verify_url, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/metrics", metrics_endpoint(intake.hub), methods=["GET"]),
            Mount("/finance", app=finance_app(intake.hub.database_url)),
        ],
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
