"""Shipments out: tell the platform an order came from that the hub shipped it.

An order shipped on the hub's side (``hub.cmd.order.ship``: a warehouse says
the parcel left) is ``OrderShipped`` with ``notify_platform``; the platform
does not know yet, and its buyer sees nothing until it does. The
:class:`ShipmentNotifier` listens to the committer: for each such event it
calls the platform's ``notify_shipment`` through the shop's client (carrier
and tracking reference, a stable request id so a retry is applied at most
once) and records the answer on the order as ``ShipmentNoticeRecorded``, so
history says whether the platform was told. A shipment the platform itself
reported (the order intake) is never sent back.

Notices follow the commits of this process: a notice that was not sent
because the hub stopped between the shipment and the call is not resent at
the next start (``hub orders show`` shows a shipped order with no notice).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from connectors.common import PlatformCallError
from domain.events import DomainError, Event
from domain.order import OrderShipped, RecordShipmentNotice, order_id
from hub.infra.shops import Connectors, UnknownShopError
from hub.service.commands import ORDER_RULES
from hub.service.hub import Hub

log = logging.getLogger(__name__)


def shipment_request_id(platform: str, platform_order_id: str) -> str:
    """The stable request id of an order's shipment notice."""
    return f"ship-{platform}-{platform_order_id}"


class ShipmentNotifier:
    """Send the hub's shipments to the platforms the orders came from.

    Args:
        hub: Whose committer says what shipped, and records the answers.
        connectors: The shops and their clients.
    """

    def __init__(self, hub: Hub, connectors: Connectors) -> None:
        self.hub = hub
        self.connectors = connectors
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Follow the committer's durable batches."""
        self.hub.committer.listen(self._on_durable)

    async def stop(self) -> None:
        """Stop following; wait for the notices being sent."""
        self.hub.committer.unlisten(self._on_durable)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def drain(self) -> None:
        """Wait until every notice started so far is recorded (for tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _on_durable(self, events: Sequence[Event]) -> None:
        for event in events:
            if isinstance(event, OrderShipped) and event.notify_platform:
                task = asyncio.get_running_loop().create_task(self.notify(event))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def notify(self, shipped: OrderShipped) -> None:
        """Tell the order's platform about ``shipped``; record its answer."""
        platform, platform_order_id = shipped.platform, shipped.platform_order_id
        request_id = shipment_request_id(platform, platform_order_id)
        outcome: str
        try:
            state = await self.hub.committer.load(
                ORDER_RULES, order_id(platform, platform_order_id)
            )
            shop = self.connectors.shop(platform, state.shop_id)
            client = await self.connectors.ready_client(shop)
            result = await client.notify_shipment(
                shop.shop_id,
                platform_order_id,
                carrier_code=shipped.carrier,
                tracking_no=shipped.tracking_ref,
                request_id=request_id,
            )
            outcome, code, message = result.outcome, result.code or "", result.message
        except UnknownShopError as exc:
            outcome, code, message = "no_shop", "", str(exc)
        except PlatformCallError as exc:
            outcome, code, message = "failed", "", str(exc)
        try:
            await self.hub.committer.execute(
                ORDER_RULES,
                RecordShipmentNotice(
                    platform=platform,
                    platform_order_id=platform_order_id,
                    request_id=request_id,
                    outcome=outcome,
                    code=code,
                    message=message[:500],
                ),
            )
        except DomainError:
            log.exception("shipment notice of %s/%s", platform, platform_order_id)
