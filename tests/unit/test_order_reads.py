"""Batched order reads follow each other by update time (hub/service/inbound.py).

No servers: a fake platform keeps orders with their update times and answers
list windows and single reads; the test's clock says when each push asks for
its order.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from connectors.common import OrderPage, PlatformOrder
from hub.infra.shops import ShopConfig
from hub.service.inbound import READ_SHARE, ShopOrderReads
from tests.conftest import wait_until

SHOP = ShopConfig(platform="douyin_shop", shop_id="77001", channel_account="acct-1")


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class FakePlatform:
    """Orders by id with their update times; counts lists and single reads.

    ``budget``: while not set, a read waits for the shop's budget."""

    lists_whole_orders = True

    def __init__(self) -> None:
        self.orders: dict[str, PlatformOrder] = {}
        self.lists = 0
        self.singles: list[str] = []
        self.budget = asyncio.Event()
        self.waiting = asyncio.Event()

    def update(self, order_id: str, at: float, status: Any = "created") -> None:
        self.orders[order_id] = PlatformOrder(
            platform=SHOP.platform,
            shop_id=SHOP.shop_id,
            order_id=order_id,
            status=status,
            platform_status=status,
            lines=(),
            total_fen=990,
            created_at=_at(at),
            updated_at=_at(at),
        )

    async def budget_ready(self, shop_id: str, *, reserve: int = 0) -> None:
        self.waiting.set()
        await self.budget.wait()

    async def pull_orders(
        self,
        shop_id: str,
        start: datetime,
        end: datetime,
        cursor: str | None = None,
        *,
        page_size: int = 50,
    ) -> OrderPage:
        self.lists += 1
        window = [o for o in self.orders.values() if start <= o.updated_at <= end]
        return OrderPage(orders=tuple(window))

    async def fetch_order(self, shop_id: str, order_id: str) -> PlatformOrder:
        self.singles.append(order_id)
        return self.orders[order_id]


async def _batch(
    reads: ShopOrderReads, platform: FakePlatform, order_ids: list[str]
) -> list[PlatformOrder]:
    """Ask for ``order_ids`` while the budget is spent, then let them go."""
    platform.budget.clear()
    platform.waiting.clear()
    asked = [asyncio.ensure_future(reads.read(order_id)) for order_id in order_ids]
    await wait_until(platform.waiting.is_set)
    platform.budget.set()
    return list(await asyncio.gather(*asked))


async def test_a_push_that_waited_in_the_queues_is_answered_by_the_list_windows() -> (
    None
):
    now = [100.0]
    platform = FakePlatform()
    reads = ShopOrderReads(SHOP, platform, clock=lambda: now[0])

    # Given two orders pushed at once are read in one list window,
    platform.update("A", 99.0)
    platform.update("B", 99.5)
    first = await _batch(reads, platform, ["A", "B"])
    assert [o.order_id for o in first] == ["A", "B"]

    # when C, paid at 102, is asked for only at 150 (its push waited in the
    # hub's queues), with D, updated just before,
    platform.update("C", 102.0, "paid")
    platform.update("D", 149.0)
    now[0] = 150.0
    second = await _batch(reads, platform, ["C", "D"])

    # then the windows, following each other, hold C as it is now: no order
    # was read on its own.
    assert [(o.order_id, o.status) for o in second] == [("C", "paid"), ("D", "created")]
    assert platform.singles == []
    assert platform.lists == 2


async def test_one_order_is_read_on_its_own_and_a_failed_read_reaches_its_push() -> (
    None
):
    platform = FakePlatform()
    platform.budget.set()
    reads = ShopOrderReads(SHOP, platform, clock=lambda: 100.0)
    platform.update("A", 99.0)

    assert (await reads.read("A")).order_id == "A"
    assert (platform.singles, platform.lists) == (["A"], 0)
    with pytest.raises(KeyError):
        await reads.read("missing")


async def test_pushes_of_one_order_waiting_for_the_budget_share_its_read() -> None:
    # Given a platform whose list gives ids only, its budget spent for now.
    platform = FakePlatform()
    platform.lists_whole_orders = False  # type: ignore[misc]
    reads = ShopOrderReads(SHOP, platform, clock=lambda: 100.0)
    platform.update("A", 99.0)
    platform.update("B", 99.0)

    # When A's created and paid pushes and B's push wait for the budget,
    created = asyncio.ensure_future(reads.read("A"))
    await wait_until(platform.waiting.is_set)
    platform.update("A", 99.5, "paid")
    paid = asyncio.ensure_future(reads.read("A"))
    other = asyncio.ensure_future(reads.read("B"))
    await asyncio.sleep(0)  # a scheduling point, not a wait
    platform.budget.set()

    # then A is read once, after both of its pushes, and B on its own.
    assert (await created).status == (await paid).status == "paid"
    assert (await other).order_id == "B"
    assert sorted(platform.singles) == ["A", "B"]

    # A push that comes after A's read started gets a read of its own.
    assert (await reads.read("A")).order_id == "A"
    assert sorted(platform.singles) == ["A", "A", "B"]


async def test_pushes_faster_than_the_batches_share_join_the_next_batch() -> None:
    # Given a shop whose budget is 4 calls a second: a batch every
    # 1 / (4 x READ_SHARE) seconds at most.
    now = [100.0]
    gate = asyncio.Event()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await gate.wait()
        now[0] += seconds

    platform = FakePlatform()
    platform.policy = SimpleNamespace(rate_limit=SimpleNamespace(rate_per_s=4.0))  # type: ignore[attr-defined]
    platform.budget.set()
    reads = ShopOrderReads(SHOP, platform, clock=lambda: now[0], sleep=sleep)
    for order_id in "ABCD":
        platform.update(order_id, 99.0)

    # When A is read, and B, C and D come right after,
    assert (await reads.read("A")).order_id == "A"
    later = [asyncio.ensure_future(reads.read(o)) for o in "BCD"]
    await wait_until(lambda: waits == [1.0 / (4.0 * READ_SHARE)])
    gate.set()

    # then they wait for the next batch's turn and share one list call.
    assert [o.order_id for o in await asyncio.gather(*later)] == ["B", "C", "D"]
    assert (platform.singles, platform.lists) == (["A"], 1)


async def test_a_slow_read_of_one_order_holds_up_no_other_push() -> None:
    # Given A's read hangs on the platform,
    platform = FakePlatform()
    platform.budget.set()
    reads = ShopOrderReads(SHOP, platform, clock=lambda: 100.0)
    platform.update("A", 99.0)
    platform.update("B", 99.5)
    answer_a = asyncio.Event()
    fetch = platform.fetch_order

    async def slow_for_a(shop_id: str, order_id: str) -> PlatformOrder:
        if order_id == "A":
            await answer_a.wait()
        return await fetch(shop_id, order_id)

    platform.fetch_order = slow_for_a  # type: ignore[method-assign]
    a = asyncio.ensure_future(reads.read("A"))
    await wait_until(lambda: reads.calls == 1)

    # when B is pushed meanwhile, then it is read and answered while A's read
    # still hangs (it does not wait for A's batch to end);
    async with asyncio.timeout(10):
        assert (await reads.read("B")).order_id == "B"
    assert not a.done()

    # and A is answered once the platform answers.
    answer_a.set()
    assert (await a).order_id == "A"
    assert platform.singles == ["B", "A"]


async def test_orders_waiting_together_are_read_alone_while_budget_is_spare() -> None:
    # Given a shop whose bucket (burst 10) has 8 calls now: room for two reads
    # and the stock writes' reserve with half the bucket left (2 + 1 + 5), not
    # for three.
    class Budgeted(FakePlatform):
        policy = SimpleNamespace(rate_limit=SimpleNamespace(rate_per_s=5.0, burst=10))
        calls_left = 8

        def budget_spare(self, shop_id: str, calls: int) -> bool:
            return calls <= self.calls_left

    platform = Budgeted()
    reads = ShopOrderReads(SHOP, platform, clock=lambda: 100.0)
    for order_id in "ABCDE":
        platform.update(order_id, 99.0)

    # When A and B wait for the budget together, they are read one by one,
    first = await _batch(reads, platform, ["A", "B"])
    assert [o.order_id for o in first] == ["A", "B"]
    assert (sorted(platform.singles), platform.lists) == (["A", "B"], 0)

    # and C, D and E, too many for the spare calls, share one list call.
    second = await _batch(reads, platform, ["C", "D", "E"])
    assert [o.order_id for o in second] == ["C", "D", "E"]
    assert (sorted(platform.singles), platform.lists) == (["A", "B"], 1)
