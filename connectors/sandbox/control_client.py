"""An async client of the sandbox control API, for tests and the demo."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from connectors.sandbox.config import FaultConfig, FaultKind


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
        """Forget everything."""
        await self._call("POST", "/reset")

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

    async def stock(self, platform: str, shop_id: str, sku_id: str) -> int:
        """One SKU's stock in the sandbox."""
        return int((await self.shop(platform, shop_id))["skus"][sku_id]["stock"])

    async def create_order(
        self,
        platform: str,
        shop_id: str,
        lines: list[dict[str, Any]],
        *,
        buyer: dict[str, str] | None = None,
        at: int | None = None,
    ) -> dict[str, Any]:
        """Place an order (pushes ``created``); returns it."""
        result: dict[str, Any] = await self._call(
            "POST",
            f"/{platform}/shops/{shop_id}/orders",
            {"lines": lines, "buyer": buyer or {}, "at": at},
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

    async def script_faults(self, platform: str, faults: list[FaultKind]) -> None:
        """Inject these faults into the platform's next calls, in order."""
        await self._call("POST", f"/{platform}/faults/script", {"faults": faults})

    async def advance_clock(self, seconds: float) -> float:
        """Move the sandbox clock on; returns its new time."""
        result = await self._call("POST", "/clock", {"advance_s": seconds})
        return float(result["now"])

    async def set_webhooks(self, webhooks: dict[str, str]) -> None:
        """Set where each platform's pushes go."""
        await self._call("PUT", "/webhooks", webhooks)

    async def requests(self, **filters: str) -> list[dict[str, Any]]:
        """The API call log, filtered by platform, shop_id, api or request_id."""
        result: list[dict[str, Any]] = await self._call("GET", "/requests", **filters)
        return result

    async def pushes(self, **filters: str) -> list[dict[str, Any]]:
        """The push delivery log, filtered by platform, shop_id or order_id."""
        result: list[dict[str, Any]] = await self._call("GET", "/pushes", **filters)
        return result

    async def flush_pushes(self) -> int:
        """Send the pushes held back for reordering; returns how many."""
        return int((await self._call("POST", "/pushes/flush"))["sent"])
