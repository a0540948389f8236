"""History and state at a point for every aggregate type the hub records,
against real PostgreSQL: a few commands each, the history lists their events
oldest first, the state at the first event's position is the state after it,
the state now the state after all of them.

The stock item, order, binding and stock push are covered beside the trace in
``test_replay.py``; this file covers commission terms, payouts, a binding's
traffic and violations, an audience, a reconciled statement, a campaign, a
shop membership and a product of the library, each named the way a user types
it where the kind has an outside key. :data:`COVERED` names the test of every
kind, and a test checks it against :data:`domain.aggregates.KINDS`, so a new
aggregate kind without a history and state test fails the suite.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from domain import (
    audience,
    binding,
    catalog,
    marketing,
    order,
    payout,
    push,
    reconciliation,
    risk,
    stock,
)
from domain.aggregates import KINDS
from domain.events import State
from hub.service.hub import Hub
from hub.service.reconciliation import STATEMENT_RULES
from hub.service.replay import history, resolve, state_at
from tests.hub_steps import started_hub

pytestmark = pytest.mark.integration

AT = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
KEYS = {"channel_account": "ch-1", "platform": "wechat_shop", "shop_id": "s-1"}
BUYER = "sub_" + "a" * 32

#: Every aggregate kind's state type → the test (``module.function`` in
#: ``tests/integration``) of its history and its state at a point.
COVERED: dict[type[State], str] = {
    stock.StockItem: "test_replay.test_history_and_state_at_of_a_stock_item",
    order.Order: "test_replay.test_history_and_state_at_of_an_order",
    binding.Binding: "test_replay.test_history_and_state_at_of_a_binding",
    push.StockPush: "test_replay.test_history_and_state_at_of_a_stock_push",
    payout.Payout: "test_replay_kinds.test_payout",
    payout.CommissionTerms: "test_replay_kinds.test_commission_terms",
    marketing.Campaign: "test_replay_kinds.test_campaign",
    marketing.Member: "test_replay_kinds.test_member",
    catalog.Product: "test_replay_kinds.test_product",
    risk.Traffic: "test_replay_kinds.test_risk_traffic_and_violations",
    risk.Violations: "test_replay_kinds.test_risk_traffic_and_violations",
    audience.Audience: "test_replay_kinds.test_audience",
    reconciliation.Statement: "test_replay_kinds.test_reconciled_statement",
}


@pytest.fixture
async def hub(database_url: str) -> AsyncIterator[Hub]:
    async with started_hub(database_url, None, projections=[]) as running:
        yield running


async def _two_steps(
    hub: Hub, ref: str, types: list[str], field: str
) -> tuple[Any, Any]:
    """Check the history of ``ref`` and the state at its first event and now;
    return ``field`` of the state then and now."""
    events = await history(hub.database_url, ref)
    assert [(e.type, e.version) for e in events] == [
        (t, n) for n, t in enumerate(types, start=1)
    ]
    assert [e.position for e in events] == sorted(e.position for e in events)
    then = await state_at(hub.database_url, ref, str(events[0].position))
    now = await state_at(hub.database_url, ref, str(events[-1].position))
    before = await state_at(hub.database_url, ref, str(events[0].position - 1))
    assert (before.version, before.state) == (0, None)
    assert (then.version, now.version) == (1, len(types))
    assert then.aggregate_type == events[0].aggregate_type
    by_time = await state_at(hub.database_url, ref, events[0].recorded_at.isoformat())
    assert by_time.version >= 1
    assert then.state is not None and now.state is not None
    return then.state[field], now.state[field]


async def test_commission_terms(hub: Hub) -> None:
    for rate in ("0.15", "0.2"):
        await hub.execute(
            "payout.agree_commission",
            payout.AgreeCommission(**KEYS, streamer="anna", rate=rate),
        )
    ref = "commission_terms:ch-1:wechat_shop:s-1"
    then, now = await _two_steps(
        hub, ref, ["CommissionAgreed", "CommissionAgreed"], "rate"
    )
    assert (then, now) == ("0.15", "0.2")


async def test_payout(hub: Hub) -> None:
    await hub.execute(
        "payout.schedule",
        payout.SchedulePayout(
            platform="wechat_shop",
            platform_order_id="O-1",
            shop_id="s-1",
            amount_fen=10_000,
            paid_at=AT,
            subject_kind="enterprise",
            streamer="anna",
            streamer_rate="0.2",
            agreement="binding",
        ),
    )
    await hub.execute(
        "payout.reverse",
        payout.ReversePayout(
            platform="wechat_shop",
            platform_order_id="O-1",
            refund_id="R-1",
            amount_fen=5_000,
            refunded_at=AT,
        ),
    )
    then, now = await _two_steps(
        hub,
        "wechat_shop:payout:O-1",
        ["PayoutScheduled", "PayoutReversed"],
        "lines",
    )
    assert (len(then), len(now)) == (1, 2)


async def test_risk_traffic_and_violations(hub: Hub) -> None:
    for reference in ("v1", "v2"):
        await hub.execute(
            "risk.divert", risk.RecordDiversion(**KEYS, reference=reference)
        )
    traffic = risk.risk_id("traffic", risk.BindingKey(**KEYS))
    then, now = await _two_steps(
        hub, str(traffic), ["TrafficDiverted", "TrafficDiverted"], "count"
    )
    assert (then, now) == (1, 2)
    await hub.execute(
        "risk.report_violation",
        risk.ReportViolation(
            **KEYS, signal="user_report", reference="r1", evidence="counterfeit"
        ),
    )
    await hub.execute(
        "risk.clear_violations", risk.ClearViolations(**KEYS, reason="appeal won")
    )
    violations = risk.risk_id("violations", risk.BindingKey(**KEYS))
    events = await history(hub.database_url, str(violations))
    assert events[0].type == "ViolationRecorded"
    assert events[-1].type == "ViolationsCleared"
    first = await state_at(hub.database_url, str(violations), str(events[0].position))
    last = await state_at(hub.database_url, str(violations), str(events[-1].position))
    assert first.state is not None and last.state is not None
    assert (len(first.state["counted"]), len(last.state["counted"])) == (1, 0)


async def test_audience(hub: Hub) -> None:
    for views in (200, 300):
        await hub.execute(
            "audience.record_views",
            audience.RecordViews(
                channel_account="ch-1",
                source="live",
                source_id="live-1",
                views=views,
                at=AT,
            ),
        )
    ref = str(audience.audience_id("ch-1", "live", "live-1"))
    then, now = await _two_steps(hub, ref, ["ViewsRecorded", "ViewsRecorded"], "total")
    assert (then, now) == (200, 500)


async def test_reconciled_statement(hub: Hub) -> None:
    day = date(2026, 11, 27)
    command = reconciliation.RecordReconciliation(
        platform="wechat_shop", shop_id="s-1", day=day, lines=2
    )
    await hub.committer.execute(STATEMENT_RULES, command)
    ref = str(reconciliation.statement_id("wechat_shop", "s-1", day))
    found = reconciliation.Difference(
        order_id="O-1", field="fee_fen", statement_fen=7, ledger_fen=6
    )
    await hub.committer.execute(
        STATEMENT_RULES,
        reconciliation.RecordReconciliation(
            platform="wechat_shop",
            shop_id="s-1",
            day=day,
            lines=2,
            differences=(found,),
        ),
    )
    then, now = await _two_steps(
        hub,
        ref,
        ["StatementReconciled", "SettlementDifferenceFound", "StatementReconciled"],
        "differences",
    )
    assert (list(then), list(now)) == ([], [found.key])


async def test_campaign(hub: Hub) -> None:
    now = datetime.now(UTC)
    key = KEYS | {"campaign": "live-1"}
    await hub.execute(
        "marketing.publish",
        marketing.PublishCampaign(
            **key,
            title="warm-up",
            starts_at=now - timedelta(hours=1),
            ends_at=now + timedelta(days=1),
            coupon=marketing.CouponTerms(kind="amount", amount_fen=500),
            total_quantity=10,
        ),
    )
    await hub.execute("marketing.claim", marketing.ClaimCoupon(**key, buyer=BUYER))
    await hub.execute("marketing.close", marketing.CloseCampaign(**key, reason="over"))
    ref = "campaign:ch-1:wechat_shop:s-1:live-1"
    assert resolve(ref) == marketing.campaign_id("ch-1", "wechat_shop", "s-1", "live-1")
    then, now_claimed = await _two_steps(
        hub, ref, ["CampaignPublished", "CouponClaimed", "CampaignClosed"], "claimed"
    )
    assert (then, now_claimed) == (0, 1)
    events = await history(hub.database_url, ref)
    closed = await state_at(hub.database_url, ref, str(events[-1].position))
    assert closed.state is not None and closed.state["closed"] is True


async def test_member(hub: Hub) -> None:
    enroll = marketing.EnrollMember(**KEYS, subject_id=BUYER, followed_at=AT)
    await hub.execute("marketing.enroll_member", enroll)
    # Enrolling the follower again changes nothing: the history keeps two events.
    await hub.execute("marketing.enroll_member", enroll)
    ref = f"member:ch-1:wechat_shop:s-1:{BUYER}"
    assert resolve(ref) == marketing.member_id("ch-1", "wechat_shop", "s-1", BUYER)
    then, now = await _two_steps(
        hub, ref, ["FollowerJoined", "MemberEnrolled"], "enrolled"
    )
    assert (then, now) == (False, True)


async def test_product(hub: Hub) -> None:
    await hub.execute(
        "product.define",
        catalog.DefineProduct(
            product="SERUM-1",
            title="精华液 30ml",
            price_fen=29_900,
            skus=(catalog.CatalogSku(sku="SERUM-1-30", price_fen=29_900),),
        ),
    )
    await hub.execute(
        "product.change",
        catalog.ChangeProduct(product="SERUM-1", title="精华液 50ml", price_fen=39_900),
    )
    await hub.execute(
        "product.retire", catalog.RetireProduct(product="SERUM-1", reason="old")
    )
    ref = "product:SERUM-1"
    assert resolve(ref) == catalog.product_id("SERUM-1")
    types = ["ProductDefined", "ProductChanged", "ProductRetired"]
    then, now = await _two_steps(hub, ref, types, "title")
    assert (then, now) == ("精华液 30ml", "精华液 50ml")
    events = await history(hub.database_url, ref)
    changed = await state_at(hub.database_url, ref, str(events[1].position))
    assert changed.state is not None
    assert (changed.state["revision"], changed.state["retired"]) == (2, False)
    retired = await state_at(hub.database_url, ref, str(events[2].position))
    assert retired.state is not None and retired.state["retired"] is True


def test_every_aggregate_kind_has_a_history_and_state_test() -> None:
    kinds = {kind.state for kind in KINDS}
    untested = sorted(state.__name__ for state in kinds - set(COVERED))
    assert untested == [], "aggregate kinds with no history and state test in COVERED"
    unknown = sorted(state.__name__ for state in set(COVERED) - kinds)
    assert unknown == [], "COVERED names states that are no aggregate kind"
    for state, name in COVERED.items():
        module, _, function = name.partition(".")
        found = importlib.import_module(f"tests.integration.{module}")
        assert callable(getattr(found, function, None)), (
            f"{state.__name__}: no test {name}"
        )
