"""Orders in from the platforms: a platform's order → the hub's order commands.

Pushes (``hub/entry/http.py``) and polls (``hub/service/sync.py``) end
here. A push says only that an order changed; the order itself is read from
the platform (``fetch_order``, or in a batch through the list API when pushes
outrun the shop's API budget: :class:`ShopOrderReads`), so a push that
arrives late, twice or out of order still brings the hub's order to the
platform's *current* status. The commands are idempotent (the order's id is
derived from platform and platform order id, and
a step already taken decides nothing), so a replay changes nothing.

Every pull first checks the shop's binding: it must be active and its data
scope must allow its sales (orders, products or stock:
:func:`domain.binding.check_data_scope` with ``sales``); the buyer is kept
only where the scope allows users.

The buyer's personal data is sealed under the key of its data subject before
any command is made (:class:`hub.service.personal.PersonalData`, under the
profile policy of the platform): the placement carries only ciphertext and the
subject's id.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from connectors.common import PlatformOrder
from domain import order
from domain.binding import (
    Binding,
    DataScopeError,
    PullKind,
    binding_id,
    can_pull,
    check_data_scope,
)
from domain.personal import ENCRYPTED_TRANSFER_TO_CRM, ProfilePolicy, SealedBuyer
from hub.infra.shops import Connectors, ShopConfig
from hub.service.commands import BINDING_RULES, COMMANDS, ORDER_RULES
from hub.service.crm import crm_ref_of
from hub.service.personal import plain_fields

if TYPE_CHECKING:
    from hub.service.crm import CrmOutbox
    from hub.service.hub import Hub
    from hub.service.personal import PersonalData


#: For each push kind, the order statuses that already show its news: a push
#: of that kind for an order the hub holds in one of them is acknowledged
#: without reading the order (a duplicate, a late push, a platform's re-send,
#: or the *paid* push of an order whose *created* push found it paid). Kinds
#: not listed (shipped, completed) are always read.
HELD_AFTER: dict[str, frozenset[str]] = {
    "order_created": frozenset(
        {"placed", "paid", "shipped", "completed", "cancelled", "refunded"}
    ),
    "order_paid": frozenset({"paid", "shipped", "completed", "refunded"}),
    "order_cancelled": frozenset({"cancelled"}),
}


def order_rules(hub: Hub) -> Any:
    """The rules the hub runs order commands with (shared with ``order.*``)."""
    for name in ("order.place", "order.pay"):
        if name in COMMANDS and name in hub.rules:
            return hub.rules[name]
    return ORDER_RULES


class MalformedOrderError(ValueError):
    """A platform's order breaks a rule of the hub's commands (names the field)."""

    code = "malformed_order"


def order_commands(
    platform_order: PlatformOrder,
    listing_map: dict[str, str],
    channel_account: str,
    buyer: SealedBuyer | None = None,
) -> list[order.OrderCommand]:
    """The commands that bring the hub's order to the platform's status.

    ``created`` places it; ``paid`` pays it (placing it first if needed);
    ``shipped`` and ``completed`` add the later steps; ``cancelled`` cancels
    it (an order the hub already has as paid is refunded instead, see
    :meth:`OrderIntake.apply`). Every line must map to a hub SKU. ``buyer`` is
    the sealed buyer the placement carries (the platform's plain buyer never
    enters a command).

    Raises:
        domain.order.UnmappedSkuError: lines name SKUs the listing map lacks
            (the message names every one).
        MalformedOrderError: the order breaks a command rule (decoded with the
            commands' constraints, so the message names the field).
    """
    where = f"{platform_order.platform} order {platform_order.order_id}"
    lines = order.map_lines(
        [
            _convert(
                {
                    "platform_sku_id": line.platform_sku_id,
                    "quantity": line.quantity,
                    "unit_price_fen": line.unit_price_fen,
                    "discount_fen": line.discount_fen,
                },
                order.PlatformLine,
                where,
            )
            for line in platform_order.lines
        ],
        listing_map,
    )
    keys = {
        "platform": platform_order.platform,
        "platform_order_id": platform_order.order_id,
    }
    placement = _convert(
        {
            **keys,
            "shop_id": platform_order.shop_id,
            "lines": [msgspec.to_builtins(line) for line in lines],
            "channel_account": channel_account,
            "placed_at": platform_order.created_at,
        },
        order.PlaceOrder,
        where,
    )
    if buyer is not None:
        placement = msgspec.structs.replace(placement, buyer=buyer)
    status = platform_order.status
    if status == "created":
        return [placement]
    if status == "cancelled":
        return [
            order.CancelOrder(
                platform=platform_order.platform,
                platform_order_id=platform_order.order_id,
                placement=placement,
                reason="cancelled on the platform",
            )
        ]
    pay = _convert(
        {**keys, "amount_fen": platform_order.total_fen}, order.PayOrder, where
    )
    steps: list[order.OrderCommand] = [
        msgspec.structs.replace(pay, placement=placement)
    ]
    if status in ("shipped", "completed"):
        steps.append(
            order.ShipOrder(
                platform=platform_order.platform,
                platform_order_id=platform_order.order_id,
                # The platform reported it: nothing to tell it back.
                notify_platform=False,
            )
        )
    if status == "completed":
        steps.append(
            order.CompleteOrder(
                platform=platform_order.platform,
                platform_order_id=platform_order.order_id,
            )
        )
    return steps


def _convert(data: dict[str, Any], kind: type[Any], where: str) -> Any:
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        raise MalformedOrderError(f"{where}: {exc}") from None


#: How far before the earliest waiting push (and after now) a batched read's
#: update-time window reaches: the platform stamps an order's update before it
#: pushes it, and its clock may differ a little from the hub's.
WINDOW_MARGIN = timedelta(seconds=2)
#: Orders per page of a batched read (the smallest of the platforms' limits).
BATCH_PAGE_SIZE = 50
#: The share of a shop's API budget (its policy's rate limit) the batched
#: order reads may take: a batch starts at most every
#: ``1 / (rate_per_s * READ_SHARE)`` seconds, so when pushes come faster
#: than that they share list calls even while the budget would allow a read
#: each; the rest is left for the stock writes.
READ_SHARE = 0.5
#: Calls of a shop's budget the order reads leave to the stock writes: a read
#: waits until this many more are there besides its own, so a write waiting
#: for the budget goes first (a raise held back behind a listing's reduction
#: would otherwise wait for a queue of reads).
READ_RESERVE = 1
#: Reads of single orders of one shop in flight at once (where the list gives
#: ids only, and batches of one order where it gives whole orders); more wait
#: their turn, and pushes of an order waiting share it.
ALONE_IN_FLIGHT = 8
#: The longest update-time window of one batched read: after a quiet spell
#: longer than this the windows start again from the batch's earliest push.
MAX_WINDOW = timedelta(seconds=60)


class ShopOrderReads:
    """The order reads of one shop, within its API budget.

    A push asks for its order (:meth:`read`). Where the platform's list API
    gets whole orders (:attr:`connectors.transport.ClientBase.lists_whole_orders`)
    the reads go in batches: a batch waits for its share of the shop's budget
    (:data:`READ_SHARE`) and for the budget itself, then takes every order
    asked for meanwhile. Its orders are read each on its own, beside the next
    batches (up to :data:`ALONE_IN_FLIGHT` at once, so a slow read holds up no
    other push), when there is one, or while the budget has a call for each
    and stays at least half full; else through the list API by update time
    (one call a page), one list batch at a time. Where the list gives ids
    only, each push reads its order at once, as many side by side as come.
    So while pushes come slower than the budget allows, every push is one
    read, and when they outrun it they share reads; two pushes of one order
    (created, then paid) waiting together cost one. A push waits for its
    own order, so its answer still comes after the order is stored.

    The list windows follow each other: each starts where the previous one
    ended (less :data:`WINDOW_MARGIN`) and ends just after now, and every order
    they returned is kept (its newest update). An order pushed is updated
    before its push is sent, so before its read is asked for; if that update
    came after the previous list was answered, the new window holds it, and if
    before, a list already returned it as it is now: either way the batch
    answers the order's current state, however long its push waited in the
    hub's queues. An order found in neither (a platform clock off by more than
    the margin) is read on its own.

    Args:
        shop: The shop.
        client: Its platform client.
        clock: Unix seconds now.
        sleep: Waits between batches (:data:`READ_SHARE`).
    """

    def __init__(
        self,
        shop: ShopConfig,
        client: Any,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.shop = shop
        self.client = client
        self._clock = clock
        self._sleep = sleep
        self._wanted: dict[str, list[asyncio.Future[PlatformOrder]]] = {}
        #: Reads of one order each, waiting for the budget (list ids only).
        self._waiting: dict[str, asyncio.Future[PlatformOrder]] = {}
        self._alone_turns = asyncio.Semaphore(ALONE_IN_FLIGHT)
        #: Reads of one order each, running beside the batches.
        self._beside: set[asyncio.Task[None]] = set()
        self._earliest: float | None = None
        self._task: asyncio.Task[None] | None = None
        #: Where the last list window ended (Unix seconds), and every order the
        #: windows since the first returned, as last seen.
        self._listed_until: float | None = None
        self._listed: dict[str, PlatformOrder] = {}
        #: When the last batch started (``clock``).
        self._last_batch: float | None = None
        #: Platform calls the batches made (list pages and single reads).
        self.calls = 0

    async def read(self, platform_order_id: str) -> PlatformOrder:
        """The order as the platform holds it now (read after this call).

        Raises:
            connectors.common.PlatformCallError: the platform did not answer
                (or says there is no such order).
        """
        if not self.client.lists_whole_orders:
            return await self._alone(platform_order_id)
        future: asyncio.Future[PlatformOrder] = (
            asyncio.get_running_loop().create_future()
        )
        self._wanted.setdefault(platform_order_id, []).append(future)
        now = self._clock()
        self._earliest = now if self._earliest is None else min(self._earliest, now)
        if self._task is None:
            self._task = asyncio.create_task(
                self._run(), name=f"order reads {self.shop.key}"
            )
        return await future

    async def _run(self) -> None:
        try:
            while self._wanted:
                await self._turn()
                self._last_batch = self._clock()
                batch, self._wanted = self._wanted, {}
                since, self._earliest = self._earliest, None
                if len(batch) == 1 or self._calls_spare(len(batch)):
                    # Each order read on its own, beside the next batches: a
                    # slow read holds up no other push; and while the budget
                    # has a call for each, a list (whose window holds every
                    # order of the last seconds) costs more to read than the
                    # calls it saves.
                    for order_id, futures in batch.items():
                        self._read_beside({order_id: futures})
                    continue
                await self._answer_settled(batch, since)
        finally:
            self._task = None

    def _rate_limit(self) -> Any:
        """The shop's budget (its policy's rate limit), None when the client
        has no policy."""
        return getattr(getattr(self.client, "policy", None), "rate_limit", None)

    def _calls_spare(self, orders: int) -> bool:
        """Whether the shop's budget has a call for each of ``orders`` orders
        now and stays at least half full after them (and the
        :data:`READ_RESERVE`): the stock writes' share is never what the reads
        spend to save a list."""
        spare = getattr(self.client, "budget_spare", None)
        limits = self._rate_limit()
        if spare is None or limits is None:
            return False
        return bool(spare(self.shop.shop_id, orders + READ_RESERVE + limits.burst // 2))

    def _read_beside(
        self, batch: dict[str, list[asyncio.Future[PlatformOrder]]]
    ) -> None:
        """Read the batch's one order in a task of its own (at most
        :data:`ALONE_IN_FLIGHT` of them at once)."""

        async def read() -> None:
            async with self._alone_turns:
                await self._answer_settled(batch, None)

        task = asyncio.create_task(read())
        self._beside.add(task)
        task.add_done_callback(self._beside.discard)

    async def _answer_settled(
        self,
        batch: dict[str, list[asyncio.Future[PlatformOrder]]],
        since: float | None,
    ) -> None:
        try:
            await self._answer(batch, since)
        except Exception as exc:  # no push may wait for ever
            for futures in batch.values():
                _settle(futures, error=exc)

    async def _turn(self) -> None:
        """Wait for the batches' share of the shop's budget (one batch every
        ``1 / (rate_per_s * READ_SHARE)`` seconds at most), then for the
        budget itself: the pushes that come meanwhile join the batch."""
        limits = self._rate_limit()
        if limits is not None and self._last_batch is not None:
            wait = self._last_batch + 1.0 / (limits.rate_per_s * READ_SHARE)
            wait -= self._clock()
            if wait > 0:
                await self._sleep(wait)
        ready = getattr(self.client, "budget_ready", None)
        if ready is not None:
            await ready(self.shop.shop_id, reserve=READ_RESERVE)

    async def _answer(
        self,
        batch: dict[str, list[asyncio.Future[PlatformOrder]]],
        since: float | None,
    ) -> None:
        found: dict[str, PlatformOrder] = {}
        if len(batch) > 1 and self.client.lists_whole_orders and since is not None:
            try:
                found = await self._list(set(batch), since)
            except Exception:  # any failure: each is read on its own below
                found = {}
        missing = [order_id for order_id in batch if order_id not in found]
        singles = await asyncio.gather(
            *(self._single(order_id) for order_id in missing), return_exceptions=True
        )
        for order_id, single in zip(missing, singles, strict=True):
            if isinstance(single, BaseException):
                _settle(batch[order_id], error=single)
            else:
                found[order_id] = single
        for order_id, futures in batch.items():
            if order_id in found:
                _settle(futures, order=found[order_id])

    async def _alone(self, order_id: str) -> PlatformOrder:
        """A read of the order on its own, shared by every push of it that
        comes while the read waits for the budget (it starts after them all,
        so it answers each one's state or newer); reads of different orders
        run side by side, so a slow one holds up no other."""
        shared = self._waiting.get(order_id)
        if shared is None:
            shared = asyncio.ensure_future(self._alone_when_ready(order_id))
            self._waiting[order_id] = shared
        return await asyncio.shield(shared)

    async def _alone_when_ready(self, order_id: str) -> PlatformOrder:
        async with self._alone_turns:
            try:
                ready = getattr(self.client, "budget_ready", None)
                if ready is not None:
                    await ready(self.shop.shop_id, reserve=READ_RESERVE)
            finally:
                # From here on, a push of the order needs a read that starts
                # later.
                del self._waiting[order_id]
            return await self._single(order_id)

    async def _single(self, order_id: str) -> PlatformOrder:
        self.calls += 1
        platform_order: PlatformOrder = await self.client.fetch_order(
            self.shop.shop_id, order_id
        )
        return platform_order

    async def _list(self, wanted: set[str], since: float) -> dict[str, PlatformOrder]:
        """The wanted orders as they are now: one list window, from where the
        previous one ended (or just before ``since``, the batch's earliest
        push) to just after now, merged into the orders listed before."""
        now = self._clock()
        margin = WINDOW_MARGIN.total_seconds()
        previous = self._listed_until
        if previous is None or now - previous > MAX_WINDOW.total_seconds():
            self._listed.clear()  # the windows no longer follow each other
            previous = since
        start = datetime.fromtimestamp(previous - margin, UTC)
        end = datetime.fromtimestamp(now + margin, UTC)
        cursor: str | None = None
        while True:
            self.calls += 1
            page = await self.client.pull_orders(
                self.shop.shop_id, start, end, cursor, page_size=BATCH_PAGE_SIZE
            )
            for listed in page.orders:
                kept = self._listed.get(listed.order_id)
                if kept is None or kept.updated_at <= listed.updated_at:
                    self._listed[listed.order_id] = listed
            if not page.has_more:
                break
            cursor = page.next_cursor
        self._listed_until = now + margin
        self._forget_before(now - MAX_WINDOW.total_seconds())
        return {i: self._listed[i] for i in wanted if i in self._listed}

    def _forget_before(self, moment: float) -> None:
        """Drop orders last updated before ``moment`` (a push for one of them
        now is read on its own)."""
        cutoff = datetime.fromtimestamp(moment, UTC)
        for order_id in [i for i, o in self._listed.items() if o.updated_at < cutoff]:
            del self._listed[order_id]


def _settle(
    futures: list[asyncio.Future[PlatformOrder]],
    *,
    order: PlatformOrder | None = None,
    error: BaseException | None = None,
) -> None:
    for future in futures:
        if future.done():
            continue  # its push gave up waiting
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(order)  # type: ignore[arg-type]


@dataclass
class Ingested:
    """What taking one platform order in stored."""

    platform: str
    platform_order_id: str
    status: str
    events: list[str] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)


class OrderIntake:
    """Takes platform orders into the hub, through the group committer.

    Args:
        hub: The running hub (its committer stores the commands).
        connectors: The registry (clients, listing maps, channel accounts).
        personal: Seals the buyers (None: buyers are dropped, nothing of them
            is stored).
        profiles: Each platform's profile policy (a platform without one
            keeps no personal data).
        crm: Where profiles of the CRM transfer mode go (None: such profiles
            are dropped, the hub keeps only the subject).
    """

    def __init__(
        self,
        hub: Hub,
        connectors: Connectors,
        *,
        personal: PersonalData | None = None,
        profiles: Mapping[str, ProfilePolicy] | None = None,
        crm: CrmOutbox | None = None,
    ) -> None:
        self.hub = hub
        self.connectors = connectors
        self.rules = order_rules(hub)
        self.personal = personal
        self.profiles = dict(profiles or {})
        self.crm = crm
        self._reads: dict[str, ShopOrderReads] = {}

    async def sealed_buyer(
        self, shop: ShopConfig, platform_order: PlatformOrder
    ) -> SealedBuyer | None:
        """The order's buyer sealed under the platform's profile policy.

        Nothing of the buyer is kept unless the shop's binding lets the hub
        have users (full scope, or a custom mapping that maps users).
        """
        policy = self.profiles.get(platform_order.platform)
        buyer = platform_order.buyer
        if self.personal is None or policy is None or buyer is None:
            return None
        binding = await self.binding_of(shop)
        if binding is None or not can_pull(
            binding.data_scope, "users", binding.mapped_data
        ):
            return None
        to_crm = self.crm is not None and policy.mode == ENCRYPTED_TRANSFER_TO_CRM
        sealed = await self.personal.seal(
            policy,
            platform=platform_order.platform,
            shop_id=platform_order.shop_id,
            order_id=platform_order.order_id,
            buyer=buyer,
            crm_ref=(
                crm_ref_of(platform_order.platform, platform_order.order_id)
                if to_crm
                else ""
            ),
        )
        if sealed is not None and self.crm is not None and sealed.crm_ref:
            await self.crm.enqueue(
                crm_ref=sealed.crm_ref,
                subject_id=sealed.subject_id,
                platform=platform_order.platform,
                shop_id=platform_order.shop_id,
                order_id=platform_order.order_id,
                fields={
                    str(k): v for k, v in plain_fields(buyer, policy.fields).items()
                },
            )
        return sealed

    async def binding_of(self, shop: ShopConfig) -> Binding | None:
        """The shop's binding as the log has it (None if never requested).

        The committer's newest state: every binding command of this hub goes
        through it, so its cache is current without a read per order.
        """
        state: Binding | None = await self.hub.committer.latest(
            BINDING_RULES,
            binding_id(shop.channel_account, shop.platform, shop.shop_id),
        )
        return state

    async def check_scope(self, shop: ShopConfig, data_kind: PullKind) -> None:
        """Refuse a pull the shop's binding does not allow.

        Raises:
            domain.binding.DataScopeError: no binding, not active, or its data
                scope excludes ``data_kind``.
        """
        binding = await self.binding_of(shop)
        if binding is None:
            raise DataScopeError(
                f"cannot pull {data_kind} for {shop.key} of {shop.channel_account}: "
                "no binding was ever requested"
            )
        check_data_scope(binding, data_kind)

    def holds(self, shop: ShopConfig, platform_order_id: str, kind: str) -> bool:
        """Whether the hub already holds what a push of ``kind`` announces for
        the order (:data:`HELD_AFTER`), so reading the order would tell it
        nothing new.

        Only the committer's own states count (no load): an order it does not
        hold is read, as is every push of a kind not listed. Statuses only move
        forward, so a state that shows the news, however old, is right to.
        """
        statuses = HELD_AFTER.get(kind)
        if statuses is None:
            return False
        state: order.Order | None = self.hub.committer.cached(
            order.order_id(shop.platform, platform_order_id)
        )
        return state is not None and state.status in statuses

    def news(
        self, changes: Iterable[tuple[ShopConfig, str, str]]
    ) -> Iterator[tuple[ShopConfig, str]]:
        """(shop, order id) of each (shop, order id, push kind) in ``changes``
        whose news the hub does not hold yet (:meth:`holds`)."""
        for shop, platform_order_id, kind in changes:
            if not self.holds(shop, platform_order_id, kind):
                yield shop, platform_order_id

    async def pull_order(self, shop: ShopConfig, platform_order_id: str) -> Ingested:
        """Read one order from the platform and take it in.

        Raises:
            domain.binding.DataScopeError: the binding does not allow orders.
            connectors.common.PlatformCallError: the platform did not answer.
            domain.order.UnmappedSkuError, MalformedOrderError,
            domain.events.DomainError: see :meth:`apply`.
        """
        await self.check_scope(shop, "sales")
        client = await self.connectors.ready_client(shop)
        platform_order = await self.reads_of(shop, client).read(platform_order_id)
        return await self.apply(shop, platform_order)

    def reads_of(self, shop: ShopConfig, client: Any) -> ShopOrderReads:
        """The shop's order reads (batched when pushes outrun its budget)."""
        reads = self._reads.get(shop.key)
        if reads is None or reads.client is not client:
            reads = self._reads[shop.key] = ShopOrderReads(shop, client)
        return reads

    async def apply(self, shop: ShopConfig, platform_order: PlatformOrder) -> Ingested:
        """Run the order's commands; return once their events are durable.

        Raises:
            domain.order.UnmappedSkuError: lines the listing map lacks.
            MalformedOrderError: the order breaks a command rule.
            domain.events.DomainError: a step the hub's order cannot take.
        """
        commands = order_commands(
            platform_order,
            shop.listing_map(),
            shop.channel_account,
            await self.sealed_buyer(shop, platform_order),
        )
        result = Ingested(
            platform=platform_order.platform,
            platform_order_id=platform_order.order_id,
            status=platform_order.status,
        )
        for command in commands:
            try:
                outcome = await self.hub.committer.execute(self.rules, command)
            except order.IllegalOrderTransitionError:
                if not isinstance(command, order.CancelOrder):
                    raise
                # Cancelled on the platform after the hub saw it paid: the
                # platform returned the money, so the hub records a refund.
                outcome = await self.hub.committer.execute(
                    self.rules,
                    order.RefundOrder(
                        platform=command.platform,
                        platform_order_id=command.platform_order_id,
                        refund_id=f"cancelled:{command.platform_order_id}",
                        reason="cancelled on the platform after payment",
                    ),
                )
            result.events += [type(e).__name__ for e in outcome.events]
            result.positions += list(outcome.positions)
        return result
