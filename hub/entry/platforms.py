"""The hub's side of the shop platforms, running: webhooks, sync, outbound.

:func:`hub.bootstrap.connect_platforms` builds it from the connectors registry
(``HUB_CONNECTORS_FILE``); ``hub serve`` starts it beside the committer, relay
and projections. Tests build it with fake time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from nats.aio.client import Client as NatsClient
from starlette.applications import Starlette
from starlette.routing import Mount

from domain.policy import SyncPolicy
from hub.entry.bindings_api import bindings_app
from hub.entry.http import HttpServer, WebhookStats, create_app
from hub.entry.sync_api import answer_on_nats
from hub.infra.runtime import cancel_and_wait
from hub.infra.shops import Connectors
from hub.service.authorisation import BindingRoutes
from hub.service.catalog_sync import CatalogSync
from hub.service.inbound import OrderIntake
from hub.service.outbound import OutboundDispatcher
from hub.service.shipments import ShipmentNotifier
from hub.service.sync import SyncScheduler


@dataclass
class Platforms:
    """Everything that talks to the platforms, for one running hub.

    ``policies`` are the policy book's sync policies, by platform: the
    webhooks read whether a platform's order pushes are taken in.
    """

    connectors: Connectors
    intake: OrderIntake
    outbound: OutboundDispatcher
    scheduler: SyncScheduler
    policies: Mapping[str, SyncPolicy]
    stats: WebhookStats = field(default_factory=WebhookStats)
    #: The shops' binding routes (``/bindings/...``, ``/oauth/...``).
    routes: BindingRoutes | None = None
    #: Tells the platforms about the hub's shipments.
    shipments: ShipmentNotifier | None = None
    #: Writes the product library to the bound shops, reads their edits back.
    catalog: CatalogSync | None = None
    http: HttpServer | None = None
    _schedule: asyncio.Task[None] | None = None
    _nats: NatsClient | None = None

    def app(self) -> Starlette:
        """The webhook ASGI app, with the binding routes when there are any."""
        webhooks = create_app(self.intake, policies=self.policies, stats=self.stats)
        if self.routes is None:
            return webhooks
        return Starlette(
            routes=[
                *bindings_app(self.routes, scheduler=self.scheduler).routes,
                Mount("/", app=webhooks),
            ]
        )

    async def start(
        self,
        *,
        http_host: str = "127.0.0.1",
        http_port: int | None = None,
        schedule: bool = True,
        nats_url: str | None = None,
    ) -> None:
        """Start the outbound dispatcher, the webhooks and the schedule.

        Args:
            http_host: Address the webhooks listen on.
            http_port: Their port (0: a free one); None serves no HTTP.
            schedule: Whether to tick the sync schedule every second.
            nats_url: Answer the manual order sync (``hub.cmd.sync.orders``)
                on this NATS (None: not over NATS).
        """
        await self.outbound.start()
        if self.shipments is not None:
            self.shipments.start()
        if self.catalog is not None:
            await self.catalog.start()
        if nats_url is not None:
            self._nats = await answer_on_nats(nats_url, self.scheduler)
        if http_port is not None:
            self.http = await HttpServer(self.app(), http_host, http_port).start()
        if schedule:
            self._schedule = asyncio.create_task(self.scheduler.run(), name="sync")

    async def stop(self) -> None:
        """Stop everything started here and close the clients."""
        await cancel_and_wait(self._schedule)
        self._schedule = None
        if self.http is not None:
            await self.http.stop()
            self.http = None
        await self.outbound.stop()
        if self.shipments is not None:
            await self.shipments.stop()
        if self.catalog is not None:
            await self.catalog.stop()
        if self._nats is not None:
            await self._nats.close()
            self._nats = None
        await self.scheduler.aclose()
        await self.connectors.aclose()
