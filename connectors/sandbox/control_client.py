"""An async client of the sandbox control API, for tests and the demo."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import msgspec

from connectors.sandbox.config import ApiBudget, FaultConfig, FaultKind
from connectors.sandbox.crowd import CrowdShop


class SandboxControlError(Exception):
    """The sandbox refused a control request."""


class SandboxControl:
    """Calls ``/_sandbox/...`` on a running sandbox."""

    def __init__(self, base_url: str, http: httpx.AsyncClient | None = None) -> None:
        """Talk to the sandbox at ``base_url``.

        Args:
            base_url: ``http://127.0.0.1:PORT``.
            http: A client to use; one is created when None.
        """
        self.base_url = base_url.rstrip("/")
        self._own = http is None
        self.http = http or httpx.AsyncClient(timeout=10.0)

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._own:
            await self.http.aclose()

    async def _call(
        self, method: str, path: str, body: Any = None, **params: str
    ) -> Any:
        response = await self.http.request(
            method, f"{self.base_url}/_sandbox{path}", json=body, params=params or None
        )
        if response.status_code >= 400:
            raise SandboxControlError(f"{method} {path}: {response.text}")
        return response.json()

    async def reset(self) -> None:
        """Forget everything (a running crowd is stopped first)."""
        await self._call("POST", "/reset")

    async def health(self) -> dict[str, Any]:
        """``{ok, now, requests, pushes}``: the sandbox's time and the lengths
        of its call and push logs (positions for ``since``)."""
        result: dict[str, Any] = await self._call("GET", "/health")
        return result

    async def create_shop(
        self,
        platform: str,
        shop_id: str,
        *,
        credentials: dict[str, str] | None = None,
        webhook_url: str | None = None,
    ) -> dict[str, str]:
        """Create a shop; returns its credentials (generated where not given)."""
        result = await self._call(
            "POST",
            f"/{platform}/shops",
            {
                "shop_id": shop_id,
                "credentials": credentials or {},
                "webhook_url": webhook_url,
            },
        )
        credentials_out: dict[str, str] = result["credentials"]
        return credentials_out

    async def set_sku(
        self,
        platform: str,
        shop_id: str,
        sku_id: str,
        *,
        product_id: str,
        stock: int,
        price_fen: int = 100,
        title: str = "",
    ) -> None:
        """Create or replace a SKU with its stock."""
        await self._call(
            "PUT",
            f"/{platform}/shops/{shop_id}/skus/{sku_id}",
            {
                "product_id": product_id,
                "stock": stock,
                "price_fen": price_fen,
                "title": title,
            },
        )

    async def shop(self, platform: str, shop_id: str) -> dict[str, Any]:
        """The shop's state: SKUs, orders, settlements, applied request ids."""
        result: dict[str, Any] = await self._call("GET", f"/{platform}/shops/{shop_id}")
        return result

    async def sku(self, platform: str, shop_id: str, sku_id: str) -> dict[str, Any]:
        """One SKU: ``{sku_id, product_id, stock, price_fen, title}``."""
        result: dict[str, Any] = await self._call(
            "GET", f"/{platform}/shops/{shop_id}/skus/{sku_id}"
        )
        return result

    async def stock(self, platform: str, shop_id: str, sku_id: str) -> int:
        """One SKU's stock in the sandbox."""
        return int((await self.sku(platform, shop_id, sku_id))["stock"])

    async def create_order(
        self,
        platform: str,
        shop_id: str,
        lines: list[dict[str, Any]],
        *,
        buyer: dict[str, str] | None = None,
        at: int | None = None,
        commission_bp: int = 0,
    ) -> dict[str, Any]:
        """Place an order (pushes ``created``); returns it. ``commission_bp``:
        the streamer's commission in basis points, on the settlement."""
        result: dict[str, Any] = await self._call(
            "POST",
            f"/{platform}/shops/{shop_id}/orders",
            {
                "lines": lines,
                "buyer": buyer or {},
                "at": at,
                "commission_bp": commission_bp,
            },
        )
        return result

    async def amend_settlement(
        self, platform: str, shop_id: str, order_id: str, **fields: int
    ) -> dict[str, Any]:
        """Make an order's settlement entry wrong (``fee_fen=…``, ...)."""
        result: dict[str, Any] = await self._call(
            "PATCH", f"/{platform}/shops/{shop_id}/settlements/{order_id}", fields
        )
        return result

    async def order_action(
        self,
        platform: str,
        shop_id: str,
        order_id: str,
        action: str,
        *,
        at: int | None = None,
        **details: str,
    ) -> dict[str, Any]:
        """pay / cancel / ship / complete / settle an order (each pushes)."""
        result: dict[str, Any] = await self._call(
            "POST",
            f"/{platform}/shops/{shop_id}/orders/{order_id}/{action}",
            {"at": at, **details},
        )
        return result

    async def expire_tokens(self, platform: str, shop_id: str) -> int:
        """Expire the shop's access tokens now."""
        result = await self._call("POST", f"/{platform}/shops/{shop_id}/expire_tokens")
        return int(result["expired"])

    async def authorization_code(self, platform: str, shop_id: str) -> str:
        """A one-time OAuth code for the shop, as if its merchant had consented."""
        result = await self._call(
            "POST", f"/{platform}/shops/{shop_id}/authorization_code"
        )
        return str(result["code"])

    async def set_faults(self, platform: str, faults: FaultConfig) -> None:
        """Set a platform's fault rates."""
        await self._call("PUT", f"/{platform}/faults", msgspec.to_builtins(faults))

    async def set_budget(self, platform: str, budget: ApiBudget | None) -> None:
        """Limit each shop of the platform to ``budget`` (None: no limit)."""
        body = msgspec.to_builtins(budget) if budget is not None else {}
        await self._call("PUT", f"/{platform}/budget", body)

    async def script_faults(self, platform: str, faults: list[FaultKind]) -> None:
        """Inject these faults into the platform's next calls, in order."""
        await self._call("POST", f"/{platform}/faults/script", {"faults": faults})

    async def products(self, platform: str, shop_id: str) -> list[dict[str, Any]]:
        """The shop's products as the platform holds them
        (:class:`connectors.products.PlatformProduct` as JSON)."""
        result: list[dict[str, Any]] = await self._call(
            "GET", f"/{platform}/shops/{shop_id}/products"
        )
        return result

    async def edit_product(
        self, platform: str, shop_id: str, product_id: str, **changes: Any
    ) -> dict[str, Any]:
        """Edit a product on the platform, as its merchant would (``title``,
        ``price_fen``, ``images``, ``skus``); the product after the edit."""
        result: dict[str, Any] = await self._call(
            "POST", f"/{platform}/shops/{shop_id}/products/{product_id}/edit", changes
        )
        return result

    async def advance_clock(self, seconds: float) -> float:
        """Move the sandbox clock on; returns its new time."""
        result = await self._call("POST", "/clock", {"advance_s": seconds})
        return float(result["now"])

    async def set_webhooks(self, webhooks: dict[str, str]) -> None:
        """Set where each platform's pushes go."""
        await self._call("PUT", "/webhooks", webhooks)

    async def requests(
        self, *, since: int = 0, limit: int | None = None, **filters: str
    ) -> list[dict[str, Any]]:
        """The API call log, filtered by platform, shop_id, api or request_id.

        Records from log position ``since`` on, at most ``limit`` (all when
        None); each carries its position as ``seq``, so the next page starts
        at the last ``seq`` + 1.
        """
        result: list[dict[str, Any]] = await self._call(
            "GET", "/requests", **_paging(since, limit), **filters
        )
        return result

    async def pushes(
        self, *, since: int = 0, limit: int | None = None, **filters: str
    ) -> list[dict[str, Any]]:
        """The push delivery log, filtered by platform, shop_id or order_id
        (``since``, ``limit`` and ``seq`` as in :meth:`requests`)."""
        result: list[dict[str, Any]] = await self._call(
            "GET", "/pushes", **_paging(since, limit), **filters
        )
        return result

    async def log(
        self, kind: str, *, since: int = 0, page: int = 2000, **filters: str
    ) -> list[dict[str, Any]]:
        """Every record of the ``requests`` or ``pushes`` log from ``since``
        on, read ``page`` records at a time."""
        read = {"requests": self.requests, "pushes": self.pushes}[kind]
        records: list[dict[str, Any]] = []
        while True:
            batch = await read(since=since, limit=page, **filters)
            records += batch
            if len(batch) < page:
                return records
            since = int(batch[-1]["seq"]) + 1

    async def flush_pushes(self) -> int:
        """Send the pushes held back for reordering; returns how many."""
        return int((await self._call("POST", "/pushes/flush"))["sent"])

    async def start_crowd(
        self,
        shops: Sequence[CrowdShop],
        orders_per_s: float,
        *,
        quantities: Sequence[int] = (1, 2, 3),
        seed: int = 0,
        buyers_per_platform: int = 32,
    ) -> dict[str, Any]:
        """Start a crowd of buyers inside the sandbox (``connectors.sandbox.crowd``).

        Args:
            shops: Per platform: the shop, the SKU bought and its share of the
                orders.
            orders_per_s: The aggregate pace of orders.
            quantities: Units per order, drawn uniformly.
            seed: Seeds each platform's draws.
            buyers_per_platform: Concurrent buyers on each platform.

        Returns:
            The crowd's counts (see :meth:`crowd`).

        Raises:
            SandboxControlError: If a crowd is running, a shop or SKU is
                unknown, or the crowd is not valid (``CrowdConfig``).
        """
        body = {
            "shops": msgspec.to_builtins(list(shops)),
            "orders_per_s": orders_per_s,
            "quantities": list(quantities),
            "seed": seed,
            "buyers_per_platform": buyers_per_platform,
        }
        result: dict[str, Any] = await self._call("POST", "/crowd", body)
        return result

    async def crowd(self) -> dict[str, Any]:
        """The crowd's counts: ``{running, started_at, stopped_at, placed,
        refused, errors, units, by_platform: {platform: {placed, refused,
        errors, units, listed}}}`` (``listed``: the SKU's stock now)."""
        result: dict[str, Any] = await self._call("GET", "/crowd")
        return result

    async def stop_crowd(self) -> dict[str, Any]:
        """Stop the crowd; answers once orders in flight are done, with the
        final counts."""
        result: dict[str, Any] = await self._call("POST", "/crowd/stop")
        return result


def _paging(since: int, limit: int | None) -> dict[str, str]:
    params = {"since": str(since)} if since else {}
    if limit is not None:
        params["limit"] = str(limit)
    return params
