"""The product library out to every bound shop, and the shops' edits back in.

:class:`CatalogSync` follows the log like a projection (same runner and
tracking table, name ``outbound_products``). For every product event, and for
every binding that becomes active, it writes each product's current revision
to each shop of the connectors registry whose binding is active and whose
platform's product direction pushes (``hub_to_platform``, ``two_way``), when
the shop does not hold that revision yet; each write is recorded as
``ProductSynced`` (with the platform's product id). The position is written
after the writes and their records, so a crash between the two repeats the
write on the next start: at least once, and idempotent, because a write carries
a request id made of the product, its revision and the shop (the platforms
apply a request id once), and a shop holding the revision is not written again.
A write that fails is retried by the runner's supervision from the same
position.

:meth:`CatalogSync.poll` reads back each product from each shop that holds its
current revision and reports what the shop shows as a
``ReceiveProductChange``; the product decides (``domain.catalog``): an edit
where the platform's direction takes edits in is a new revision (written to the
other shops by the path above), any other edit is refused with the reason, and
the shop, no longer holding a revision of the hub's, is written back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import psycopg

from connectors.common import PlatformCallError
from connectors.products import PlatformProduct, ProductWrite, hub_change
from domain import catalog
from domain.binding import (
    Binding,
    BindingActivated,
    DataScopeError,
    binding_id,
    check_data_scope,
)
from domain.events import Event
from domain.policy import SyncPolicy
from eventlog.codec import decode_event
from eventlog.log import read_log, stored_topics
from hub.infra.runtime import cancel_and_wait
from hub.infra.shops import Connectors, ShopConfig
from hub.service.commands import BINDING_RULES
from projections.base import Projection, ProjectionRunner

if TYPE_CHECKING:
    from hub.service.hub import Hub

log = logging.getLogger(__name__)

#: The product events that may leave a shop behind the library.
_CONTENT = (
    catalog.ProductDefined,
    catalog.ProductChanged,
    catalog.ProductChangeReceived,
    catalog.ProductChangeRefused,
)


def product_request_id(state: catalog.Product, platform: str, shop_id: str) -> str:
    """The request id of the next write of ``state`` to a shop: the same for a
    retried write, another for a newer revision or a write-back."""
    key = state.write_key(platform, shop_id)
    return f"product:{state.product}:{key}:{platform}:{shop_id}"


class CatalogSync(Projection):
    """Writes the product library to the bound shops; reads their edits back.

    Args:
        hub: The running hub (committer, rules, bindings).
        connectors: The shops and their clients.
        policies: Each platform's sync policy (``products.direction``).
        poll_interval_s: Seconds between reads of the shops' products (None:
            only when :meth:`poll` is called).
    """

    name: ClassVar[str] = "outbound_products"
    tables: ClassVar[tuple[str, ...]] = ()
    topics: ClassVar[tuple[str, ...]] = (
        *(cls.TOPIC for cls in _CONTENT),
        BindingActivated.TOPIC,
    )

    def __init__(
        self,
        hub: Hub,
        connectors: Connectors,
        *,
        policies: Mapping[str, SyncPolicy],
        poll_interval_s: float | None = 60.0,
    ) -> None:
        self.hub = hub
        self.connectors = connectors
        self.policies = policies
        self.poll_interval_s = poll_interval_s
        self.runner = ProjectionRunner(self, hub.database_url)
        self._poller: asyncio.Task[None] | None = None

    @property
    def rules(self) -> Any:
        """The product rules the hub runs (reading its policy book)."""
        return self.hub.rules["product.define"]

    async def start(self) -> None:
        """Follow the log (and poll the shops every ``poll_interval_s``)."""
        await self.runner.start()
        if self.poll_interval_s is not None:
            self._poller = asyncio.create_task(self._poll_forever())

    async def stop(self) -> None:
        """Stop following and polling (what is left resumes next start)."""
        if self._poller is not None:
            await cancel_and_wait(self._poller)
            self._poller = None
        await self.runner.stop()

    # ---------------------------------------------------------------- out

    async def apply(
        self, cur: psycopg.AsyncCursor[object], event: Event, position: int
    ) -> None:
        """Write what one event leaves behind."""
        await self.apply_batch(cur, [(event, position)])

    async def apply_batch(
        self, cur: psycopg.AsyncCursor[object], events: list[tuple[Event, int]]
    ) -> None:
        """Bring every shop up to the newest revision of each product touched
        by the batch (every product, for a binding that became active)."""
        products: dict[str, None] = {}
        for event, _ in events:
            if isinstance(event, BindingActivated):
                for code in await self._product_codes():
                    products[code] = None
            elif isinstance(event, _CONTENT):
                products[event.product] = None
        for code in products:
            await self.sync_product(code)

    async def sync_product(self, product: str) -> int:
        """Write ``product``'s revision to every shop behind it; how many.

        Raises:
            connectors.common.PlatformCallError: a write failed (the runner
                tries the batch again).
        """
        state: catalog.Product | None = await self.hub.committer.latest(
            self.rules, catalog.product_id(product)
        )
        if state is None or state.retired:
            return 0
        written = 0
        for shop in await self._bound_shops():
            policy = self.policies[shop.platform].products
            if policy is None or not policy.pushes:
                continue
            if state.synced_revision(shop.platform, shop.shop_id) >= state.revision:
                continue
            await self._write(shop, state)
            written += 1
        return written

    async def _write(self, shop: ShopConfig, state: catalog.Product) -> None:
        write = ProductWrite(
            product=state.product,
            content=state.content(),
            platform_product_id=state.platform_product_id(shop.platform, shop.shop_id),
            request_id=product_request_id(state, shop.platform, shop.shop_id),
        )
        client: Any = self.connectors.client(shop)
        platform_product_id = await client.upsert_product(shop.shop_id, write)
        await self.hub.committer.execute(
            self.rules,
            catalog.RecordProductSynced(
                product=state.product,
                platform=shop.platform,
                shop_id=shop.shop_id,
                revision=state.revision,
                platform_product_id=platform_product_id,
            ),
        )

    # ----------------------------------------------------------------- in

    async def poll(self) -> int:
        """Read every synchronised product back from its shops; report what
        differs. How many reports the products recorded an event for."""
        recorded = 0
        shops = await self._bound_shops()
        for product in await self._product_codes():
            state: catalog.Product | None = await self.hub.committer.latest(
                self.rules, catalog.product_id(product)
            )
            if state is None or state.retired:
                continue
            for shop in shops:
                recorded += await self._read_back(shop, state)
        return recorded

    async def _read_back(self, shop: ShopConfig, state: catalog.Product) -> int:
        policy = self.policies[shop.platform].products
        held_id = state.platform_product_id(shop.platform, shop.shop_id)
        if (
            policy is None
            or policy.direction == "off"
            or held_id is None
            or state.synced_revision(shop.platform, shop.shop_id) < state.revision
        ):
            return 0
        client: Any = self.connectors.client(shop)
        try:
            held: PlatformProduct = await client.get_product(shop.shop_id, held_id)
        except PlatformCallError as exc:
            log.warning(
                "reading %s from %s/%s: %s",
                state.product,
                shop.platform,
                shop.shop_id,
                exc,
            )
            return 0
        if held.edited_at is None:
            return 0
        change = hub_change(state.product, held)
        outcome = await self.hub.committer.execute(
            self.rules,
            catalog.ReceiveProductChange(
                product=state.product,
                platform=shop.platform,
                shop_id=shop.shop_id,
                edited_at=held.edited_at,
                title=change.title,
                price_fen=change.price_fen,
                skus=change.skus,
                images=change.images,
            ),
        )
        return 1 if outcome.events else 0

    async def _poll_forever(self) -> None:
        assert self.poll_interval_s is not None
        while True:
            await asyncio.sleep(self.poll_interval_s)
            try:
                await self.poll()
            except Exception:
                log.exception("polling the shops' products failed; next round")

    # ------------------------------------------------------------- helpers

    async def _bound_shops(self) -> list[ShopConfig]:
        """The registry's shops whose binding is active and may carry products."""
        bound = []
        for shop in self.connectors.config.shops:
            state: Binding | None = await self.hub.committer.latest(
                BINDING_RULES,
                binding_id(shop.channel_account, shop.platform, shop.shop_id),
            )
            if state is None:
                continue
            try:
                check_data_scope(state, "products")
            except DataScopeError:
                continue
            bound.append(shop)
        return bound

    async def _product_codes(self) -> Sequence[str]:
        """Every product code the log has defined, oldest first."""
        topics = stored_topics([catalog.ProductDefined.TOPIC])
        codes: list[str] = []
        async with await psycopg.AsyncConnection.connect(self.hub.database_url) as conn:
            after = 0
            while True:
                rows = await read_log(conn, after, 1000, topics=topics)
                if not rows:
                    return codes
                for position, topic, state in rows:
                    event = decode_event(topic, state)
                    assert isinstance(event, catalog.ProductDefined)
                    codes.append(event.product)
                    after = position
