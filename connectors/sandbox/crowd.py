"""A crowd of buyers inside the sandbox: paced orders placed on its own state.

A load test that places orders through the control API over HTTP spends most
of its CPU on those calls, in whatever process runs the buyers. The crowd does
the buying on the sandbox's event loop instead: each order takes the control
API's own path (:meth:`SandboxState.create_order`, the *created* push, then the
*pay* transition and its push) with no HTTP between buyer and sandbox; the
pushes to the hub are sent as always.

Per platform, ``buyers_per_platform`` buyer tasks share paced slots at
``orders_per_s * share``: slot ``n`` is ``n / rate`` seconds after the start,
and a buyer takes the next slot, waits for it, then places one order of a
quantity drawn uniformly from ``quantities``. A buyer refused because the shop
lists fewer units than asked (the refusal reads ``holds N < Q``) retries once
with the ``N`` listed, if ``N > 0``. ``placed`` counts orders placed,
``refused`` those refusals, ``errors`` any other failure (a refused payment
included). The crowd runs until stopped (``POST /_sandbox/crowd/stop``, a
reset, or the sandbox shutting down); orders in flight finish first, so the
counts a stop returns are final.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections.abc import Iterator
from typing import Annotated, Any

import msgspec

from connectors.sandbox.pushes import PushSender
from connectors.sandbox.state import SandboxError, SandboxState

#: The refusal of an order beyond the listed stock names what the SKU holds.
LISTED_UNITS = re.compile(r" holds (\d+) < ")

log = logging.getLogger(__name__)


class CrowdShop(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where one platform's share of the crowd buys: a shop's SKU."""

    platform: str
    shop_id: str
    sku_id: str
    share: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)]


class CrowdConfig(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """A crowd: where it buys, how fast, how much per order."""

    shops: list[CrowdShop]
    orders_per_s: Annotated[float, msgspec.Meta(gt=0.0, le=100_000.0)]
    quantities: list[Annotated[int, msgspec.Meta(ge=1)]] = msgspec.field(
        default_factory=lambda: [1, 2, 3]
    )
    seed: int = 0
    buyers_per_platform: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 32

    def __post_init__(self) -> None:
        """Refuse an empty crowd, no quantities, or a platform named twice."""
        if not self.shops:
            raise ValueError("a crowd needs at least one shop")
        if not self.quantities:
            raise ValueError("a crowd needs at least one quantity")
        platforms = [shop.platform for shop in self.shops]
        if len(set(platforms)) != len(platforms):
            raise ValueError(f"a platform is named twice: {platforms}")


class _Counts(msgspec.Struct, kw_only=True):
    placed: int = 0
    refused: int = 0
    errors: int = 0
    units: int = 0


class Crowd:
    """One running crowd (see the module docstring)."""

    def __init__(
        self, state: SandboxState, pushes: PushSender, config: CrowdConfig
    ) -> None:
        """Check that every shop lists its SKU; nothing runs until :meth:`start`.

        Args:
            state: The sandbox state the orders are placed on.
            pushes: The push sender (the orders' pushes go to the hub).
            config: The crowd.

        Raises:
            SandboxError: If a shop or SKU is unknown (404).
        """
        for where in config.shops:
            shop = state.shop(where.platform, where.shop_id)
            if where.sku_id not in shop.skus:
                raise SandboxError(
                    f"no SKU {where.sku_id!r} in {where.platform} shop {where.shop_id}",
                    404,
                )
        self.state = state
        self.pushes = pushes
        self.config = config
        self.counts = {where.platform: _Counts() for where in config.shops}
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self._over = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def running(self) -> bool:
        """Whether any buyer is still buying."""
        return any(not task.done() for task in self._tasks)

    def start(self) -> None:
        """Start every buyer task on the running loop."""
        started = time.monotonic()
        self.started_at = self.state.now()
        for where in self.config.shops:
            rate = self.config.orders_per_s * where.share
            slots = iter(started + n / rate for n in range(10**12))
            rng = random.Random(f"{self.config.seed}:{where.platform}")
            for number in range(self.config.buyers_per_platform):
                self._tasks.append(
                    asyncio.create_task(
                        self._buyer(where, slots, rng),
                        name=f"crowd {where.platform} {number}",
                    )
                )

    async def stop(self) -> None:
        """Stop buying; return once every order in flight is placed and paid."""
        self._over.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.stopped_at is None:
            self.stopped_at = self.state.now()

    def report(self) -> dict[str, Any]:
        """The counts, in total and per platform, with each SKU's listed stock.

        Returns:
            ``{running, started_at, stopped_at, placed, refused, errors, units,
            by_platform: {platform: {placed, refused, errors, units, listed}}}``.
        """
        by_platform: dict[str, dict[str, Any]] = {}
        for where in self.config.shops:
            entry: dict[str, Any] = msgspec.to_builtins(self.counts[where.platform])
            entry["listed"] = self._listed(where)
            by_platform[where.platform] = entry
        totals = {
            key: sum(entry[key] for entry in by_platform.values())
            for key in ("placed", "refused", "errors", "units")
        }
        return {
            "running": self.running,
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            **totals,
            "by_platform": by_platform,
        }

    def _listed(self, where: CrowdShop) -> int | None:
        shops = self.state.platforms[where.platform].shops
        shop = shops.get(where.shop_id)
        sku = shop.skus.get(where.sku_id) if shop is not None else None
        return None if sku is None else sku.stock

    async def _buyer(
        self, where: CrowdShop, slots: Iterator[float], rng: random.Random
    ) -> None:
        counts = self.counts[where.platform]
        while not self._over.is_set():
            wait = next(slots) - time.monotonic()
            if wait > 0:
                # Pacing: wait for the slot, unless the crowd is stopped first.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._over.wait()
            else:
                # Behind the pace: a refusal awaits nothing, so let the loop
                # serve the hub's calls between orders.
                await asyncio.sleep(0)
            if self._over.is_set():
                return
            try:
                await self._buy(where, rng.choice(self.config.quantities), counts)
            except Exception:
                # A buyer never dies of one order: count it, keep buying.
                log.exception("crowd buyer on %s", where.platform)
                counts.errors += 1

    async def _buy(self, where: CrowdShop, quantity: int, counts: _Counts) -> None:
        """Place one order and pay it; a buyer refused for too few units takes
        what is listed, if anything."""
        state, pushes = self.state, self.pushes
        for _ in range(2):
            shop = state.shop(where.platform, where.shop_id)
            try:
                order = state.create_order(
                    shop, [{"sku_id": where.sku_id, "quantity": quantity}], {}, None
                )
            except SandboxError as exc:
                held = LISTED_UNITS.search(str(exc))
                if held is None:
                    counts.errors += 1
                    return
                counts.refused += 1  # the platform lists fewer units
                quantity = int(held[1])
                if quantity == 0:
                    return
                continue
            counts.placed += 1
            counts.units += quantity
            await pushes.order_event(shop, order, "created")
            try:
                state.transition(shop, order, "pay")
            except SandboxError:
                counts.errors += 1
                return
            await pushes.order_event(shop, order, "paid")
            return


class Crowds:
    """The sandbox's crowd, if any: started, read and stopped by the control API."""

    def __init__(self, state: SandboxState, pushes: PushSender) -> None:
        """No crowd yet.

        Args:
            state: The sandbox state.
            pushes: The push sender.
        """
        self.state = state
        self.pushes = pushes
        self.current: Crowd | None = None

    def start(self, config: CrowdConfig) -> Crowd:
        """Start a crowd (the previous one, stopped, is forgotten).

        Raises:
            SandboxError: If a crowd is running (409) or a shop or SKU is
                unknown (404).
        """
        if self.current is not None and self.current.running:
            raise SandboxError("a crowd is running; stop it first", 409)
        crowd = Crowd(self.state, self.pushes, config)
        crowd.start()
        self.current = crowd
        return crowd

    def read(self) -> Crowd:
        """The current (or last) crowd.

        Raises:
            SandboxError: If none was started (404).
        """
        if self.current is None:
            raise SandboxError("no crowd was started", 404)
        return self.current

    async def stop(self) -> Crowd | None:
        """Stop the crowd, if any; it stays readable."""
        if self.current is not None:
            await self.current.stop()
        return self.current

    async def forget(self) -> None:
        """Stop the crowd and forget it (on reset)."""
        await self.stop()
        self.current = None
