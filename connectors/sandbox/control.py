"""The sandbox's test-control API under ``/_sandbox`` (see docs/sandbox.md).

Tests and the demo use it to create shops and credentials, set stock, move
orders (each move pushes a signed event to the hub), read state, set faults,
move the sandbox clock, and run a crowd of buyers (``connectors.sandbox.crowd``).
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.sandbox.config import ApiBudget, FaultConfig, FaultKind
from connectors.sandbox.crowd import CrowdConfig, Crowds
from connectors.sandbox.pushes import PushSender
from connectors.sandbox.state import SandboxError, SandboxState, Shop, Sku

#: Control action → the event it pushes.
ACTION_EVENTS = {
    "pay": "paid",
    "cancel": "cancelled",
    "ship": "shipped",
    "complete": "completed",
    "settle": "settled",
}
FAULT_KINDS: tuple[FaultKind, ...] = ("5xx", "rate_limit", "timeout", "token_expired")


def default_credentials(platform: str, shop_id: str) -> dict[str, str]:
    """Fresh credentials of the platform's kind for a new shop.

    Args:
        platform: The platform.
        shop_id: The shop.

    Returns:
        Credentials; tests may override any of them.
    """
    if platform == "wechat_shop":
        key = base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        return {
            "app_id": f"wx{secrets.token_hex(8)}",
            "app_secret": secrets.token_hex(16),
            "username": f"gh_{secrets.token_hex(6)}",
            "push_token": secrets.token_hex(8),
            "encoding_aes_key": key,
            "push_format": "json",
        }
    if platform == "douyin_shop":
        return {
            "app_key": str(7_000_000_000_000_000_000 + secrets.randbelow(10**18)),
            "app_secret": secrets.token_hex(16),
            "shop_name": f"sandbox {shop_id}",
        }
    if platform == "kuaishou_shop":
        return {
            "app_id": f"ks{secrets.randbelow(10**12):012d}",
            "app_secret": secrets.token_hex(12),
            "sign_secret": secrets.token_hex(16),
            "message_key": base64.b64encode(secrets.token_bytes(16)).decode(),
        }
    return {
        "client_id": secrets.token_hex(8),
        "client_secret": secrets.token_hex(16),
        "shop_name": f"sandbox {shop_id}",
    }


def _dump_shop(state: SandboxState, shop: Shop) -> dict[str, Any]:
    return {
        "platform": shop.platform,
        "shop_id": shop.shop_id,
        "credentials": shop.credentials,
        "webhook_url": shop.webhook_url,
        "skus": {key: asdict(sku) for key, sku in shop.skus.items()},
        "orders": {key: _dump_order(order) for key, order in shop.orders.items()},
        "settlements": [asdict(entry) for entry in shop.settlements],
        "applied_request_ids": sorted(shop.applied),
        "stock_changes": shop.stock_changes,
        "now": state.now(),
    }


def _dump_order(order: Any) -> dict[str, Any]:
    dumped = asdict(order)
    dumped["total_fen"] = order.total_fen
    return dumped


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise SandboxError("body is not JSON") from None
    if not isinstance(body, dict):
        raise SandboxError("body must be a JSON object")
    return body


Handler = Callable[[Request], Awaitable[Any]]


def _log_page(
    log: list[dict[str, Any]], query: Any, keys: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Records of ``log`` from position ``since`` on, matching the filters in
    ``keys``, at most ``limit``; each with its position ``seq``."""
    since = int(query.get("since", 0))
    limit = int(query["limit"]) if "limit" in query else None
    if since < 0 or (limit is not None and limit < 1):
        raise SandboxError("since must be >= 0 and limit >= 1")
    filters = [(key, value) for key, value in query.items() if key in keys]
    page: list[dict[str, Any]] = []
    for seq in range(since, len(log)):
        record = log[seq]
        if all(str(record.get(key)) == value for key, value in filters):
            page.append({**record, "seq": seq})
            if limit is not None and len(page) >= limit:
                break
    return page


def routes(  # noqa: PLR0915
    state: SandboxState, pushes: PushSender, crowds: Crowds | None = None
) -> list[Route]:
    """The control routes.

    Args:
        state: The sandbox state.
        pushes: The push sender.
        crowds: The sandbox's crowd of buyers (a new holder when None).

    Returns:
        The routes, all under ``/_sandbox``.
    """
    crowds = crowds or Crowds(state, pushes)

    def route(path: str, handler: Handler, method: str) -> Route:
        async def endpoint(request: Request) -> Response:
            try:
                result = await handler(request)
            except SandboxError as exc:
                return JSONResponse({"error": str(exc)}, exc.status)
            except (msgspec.ValidationError, ValueError, KeyError, TypeError) as exc:
                return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, 400)
            return JSONResponse(result)

        return Route(f"/_sandbox{path}", endpoint, methods=[method])

    def shop_of(request: Request) -> Shop:
        params = request.path_params
        return state.shop(params["platform"], params["shop_id"])

    async def health(request: Request) -> Any:
        return {
            "ok": True,
            "now": state.now(),
            "requests": len(state.requests),
            "pushes": len(state.pushes),
        }

    async def reset(request: Request) -> Any:
        await crowds.forget()
        state.reset()
        pushes.held.clear()
        return {"ok": True}

    async def create_shop(request: Request) -> Any:
        platform = request.path_params["platform"]
        state.platform(platform)
        body = await _json(request)
        shop_id = str(body.get("shop_id") or f"shop{state.next_number()}")
        credentials = default_credentials(platform, shop_id)
        credentials.update(
            {k: str(v) for k, v in (body.get("credentials") or {}).items()}
        )
        shop = state.add_shop(platform, shop_id, credentials, body.get("webhook_url"))
        return {"shop_id": shop.shop_id, "credentials": shop.credentials}

    async def read_shop(request: Request) -> Any:
        return _dump_shop(state, shop_of(request))

    async def set_sku(request: Request) -> Any:
        shop = shop_of(request)
        body = await _json(request)
        sku = Sku(
            sku_id=request.path_params["sku_id"],
            product_id=str(body["product_id"]),
            stock=int(body.get("stock", 0)),
            price_fen=int(body.get("price_fen", 100)),
            title=str(body.get("title", "")),
        )
        if sku.stock < 0:
            raise SandboxError(f"stock {sku.stock} < 0")
        state.set_sku(shop, sku)
        return asdict(sku)

    async def read_sku(request: Request) -> Any:
        shop = shop_of(request)
        sku = shop.skus.get(request.path_params["sku_id"])
        if sku is None:
            raise SandboxError(
                f"no SKU {request.path_params['sku_id']!r} in {shop.shop_id}", 404
            )
        return asdict(sku)

    async def create_order(request: Request) -> Any:
        shop = shop_of(request)
        body = await _json(request)
        order = state.create_order(
            shop,
            list(body.get("lines") or []),
            dict(body.get("buyer") or {}),
            body.get("at"),
            commission_bp=int(body.get("commission_bp") or 0),
        )
        await pushes.order_event(shop, order, "created")
        return _dump_order(order)

    async def move_order(request: Request) -> Any:
        shop = shop_of(request)
        order = state.order(shop, request.path_params["order_id"])
        action = request.path_params["action"]
        body = await _json(request)
        state.transition(
            shop,
            order,
            action,
            at=body.get("at"),
            carrier_code=body.get("carrier_code"),
            tracking_no=body.get("tracking_no"),
        )
        await pushes.order_event(shop, order, ACTION_EVENTS[action])
        return _dump_order(order)

    async def amend_settlement(request: Request) -> Any:
        entry = state.amend_settlement(
            shop_of(request), request.path_params["order_id"], await _json(request)
        )
        return {**asdict(entry), "net_fen": entry.net_fen}

    async def expire_tokens(request: Request) -> Any:
        params = request.path_params
        return {"expired": state.expire_tokens(params["platform"], params["shop_id"])}

    async def authorization_code(request: Request) -> Any:
        shop = shop_of(request)
        code = state.new_secret("code-")
        state.platform(shop.platform).codes[code] = shop.shop_id
        return {"code": code}

    async def set_faults(request: Request) -> Any:
        platform = request.path_params["platform"]
        state.platform(platform)
        faults = msgspec.convert(await _json(request), FaultConfig)
        state.faults[platform] = faults
        return msgspec.to_builtins(faults)

    async def set_budget(request: Request) -> Any:
        platform = request.path_params["platform"]
        state.platform(platform)
        body = await _json(request)
        for key in [k for k in state.budget_buckets if k[0] == platform]:
            del state.budget_buckets[key]
        if not body:
            state.budgets.pop(platform, None)
            return {}
        budget = msgspec.convert(body, ApiBudget)
        state.budgets[platform] = budget
        return msgspec.to_builtins(budget)

    async def script_faults(request: Request) -> Any:
        platform = request.path_params["platform"]
        state.platform(platform)
        kinds = (await _json(request)).get("faults") or []
        for kind in kinds:
            if kind not in FAULT_KINDS:
                raise SandboxError(f"unknown fault {kind!r}; one of {FAULT_KINDS}")
        state.scripted[platform].extend(kinds)
        return {"scripted": state.scripted[platform]}

    async def clock(request: Request) -> Any:
        body = await _json(request)
        state.clock_offset_s += float(body.get("advance_s", 0))
        return {"now": state.now(), "offset_s": state.clock_offset_s}

    async def webhooks(request: Request) -> Any:
        body = await _json(request)
        for platform, url in body.items():
            state.platform(platform)
            state.webhooks[platform] = str(url)
        return state.webhooks

    async def requests_log(request: Request) -> Any:
        return _log_page(
            state.requests,
            request.query_params,
            ("platform", "shop_id", "api", "request_id"),
        )

    async def pushes_log(request: Request) -> Any:
        return _log_page(
            state.pushes, request.query_params, ("platform", "shop_id", "order_id")
        )

    async def flush(request: Request) -> Any:
        return {"sent": await pushes.flush()}

    async def start_crowd(request: Request) -> Any:
        config = msgspec.convert(await _json(request), CrowdConfig)
        return crowds.start(config).report()

    async def read_crowd(request: Request) -> Any:
        return crowds.read().report()

    async def stop_crowd(request: Request) -> Any:
        await crowds.stop()
        return crowds.read().report()

    shop = "/{platform}/shops/{shop_id}"
    return [
        route("/health", health, "GET"),
        route("/reset", reset, "POST"),
        route("/clock", clock, "POST"),
        route("/webhooks", webhooks, "PUT"),
        route("/requests", requests_log, "GET"),
        route("/pushes", pushes_log, "GET"),
        route("/pushes/flush", flush, "POST"),
        route("/crowd", start_crowd, "POST"),
        route("/crowd", read_crowd, "GET"),
        route("/crowd/stop", stop_crowd, "POST"),
        route("/{platform}/faults", set_faults, "PUT"),
        route("/{platform}/faults/script", script_faults, "POST"),
        route("/{platform}/budget", set_budget, "PUT"),
        route("/{platform}/shops", create_shop, "POST"),
        route(shop, read_shop, "GET"),
        route(shop + "/skus/{sku_id}", set_sku, "PUT"),
        route(shop + "/skus/{sku_id}", read_sku, "GET"),
        route(shop + "/orders", create_order, "POST"),
        route(shop + "/orders/{order_id}/{action}", move_order, "POST"),
        route(shop + "/settlements/{order_id}", amend_settlement, "PATCH"),
        route(shop + "/expire_tokens", expire_tokens, "POST"),
        route(shop + "/authorization_code", authorization_code, "POST"),
    ]
