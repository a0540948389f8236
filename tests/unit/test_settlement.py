"""Settlement: the split to the fen, payouts and their ledger postings, properties."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import payout
from domain.events import Context, Event
from domain.ledger import (
    CLEARING,
    MERCHANT,
    Ledger,
    LedgerTransaction,
    Posting,
    UnbalancedTransactionError,
    check_balanced,
)
from domain.payout import (
    AgreeCommission,
    ChannelNotAllowedError,
    CommissionRateError,
    LiveSessionError,
    PayoutReversed,
    PayoutScheduled,
    PayoutSettled,
    PayoutVoided,
    ReversePayout,
    ScheduleLiveSession,
    SchedulePayout,
    SettlePayouts,
    agreement_at,
    decide_terms,
    mutate_terms,
)
from domain.settlement import reverse_split, settlement_date, split_sale
from hub.service.policies import load_policy_book

POLICY = load_policy_book().settlement
assert POLICY is not None
PAID_AT = datetime(2026, 11, 26, 20, 30, tzinfo=UTC)  # 27 Nov 04:30 in China


def ctx(now: datetime = PAID_AT) -> Context:
    return Context(now=now, new_id=uuid.uuid4)


# -- split ----------------------------------------------------------------------


def test_split_rounds_each_fee_half_up_and_gives_the_merchant_the_rest() -> None:
    parts = split_sale(
        1_001, streamer_rate="0.15", platform_rate="0.05", payment_rate="0.006"
    )
    # 150.15 → 150, 50.05 → 50, 6.006 → 6; merchant 1001 - 206.
    assert (parts.streamer_fen, parts.platform_fen, parts.payment_fen) == (150, 50, 6)
    assert parts.merchant_fen == 795
    half = split_sale(10, streamer_rate="0.15", platform_rate="0.05", payment_rate="0")
    assert (half.streamer_fen, half.platform_fen) == (2, 1)  # 1.5 → 2, 0.5 → 1


@pytest.mark.parametrize(
    ("amount", "rates", "named"),
    [
        (-1, ("0.15", "0.05", "0.006"), "amount_fen -1"),
        (100, ("1.5", "0.05", "0.006"), "streamer_rate '1.5'"),
        (100, ("0.15", "-0.05", "0.006"), "platform_rate '-0.05'"),
        (100, ("0.15", "0.05", "abc"), "payment_rate 'abc'"),
        (100, ("0.6", "0.3", "0.2"), "rates add up to 1.1"),
    ],
)
def test_split_refuses_bad_input_naming_the_value(
    amount: int, rates: tuple[str, str, str], named: str
) -> None:
    streamer, platform, payment = rates
    with pytest.raises(ValueError, match=named.replace("(", r"\(")):
        split_sale(
            amount, streamer_rate=streamer, platform_rate=platform, payment_rate=payment
        )


rates = st.decimals(min_value=0, max_value=1, places=4).map(str)


@given(
    amount=st.integers(min_value=0, max_value=10**12),
    streamer=rates,
    platform=rates,
    payment=rates,
)
def test_a_split_adds_up_for_any_amount_and_rates(
    amount: int, streamer: str, platform: str, payment: str
) -> None:
    if Decimal(streamer) + Decimal(platform) + Decimal(payment) > 1:
        with pytest.raises(ValueError, match="rates add up"):
            split_sale(
                amount,
                streamer_rate=streamer,
                platform_rate=platform,
                payment_rate=payment,
            )
        return
    parts = split_sale(
        amount, streamer_rate=streamer, platform_rate=platform, payment_rate=payment
    )
    assert parts.total_fen == amount
    for fen, rate in (
        (parts.streamer_fen, streamer),
        (parts.platform_fen, platform),
        (parts.payment_fen, payment),
    ):
        assert abs(fen - Decimal(amount) * Decimal(rate)) <= Decimal("0.5")
    assert parts.merchant_fen >= -2  # at most the three fees' rounding


@st.composite
def refunds_of(draw: st.DrawFn, paid: int) -> list[int]:
    """Positive refunds adding up to ``paid``."""
    cuts = draw(st.lists(st.integers(1, max(1, paid - 1)), max_size=8, unique=True))
    points = sorted({c for c in cuts if 0 < c < paid})
    bounds = [0, *points, paid]
    return [b - a for a, b in itertools.pairwise(bounds)]


@given(data=st.data(), paid=st.integers(min_value=1, max_value=10**9))
def test_refunds_in_any_number_of_parts_net_every_party_to_zero(
    data: st.DataObject, paid: int
) -> None:
    sale = split_sale(
        paid, streamer_rate="0.3", platform_rate="0.05", payment_rate="0.006"
    )
    refunded = 0
    reversed_total = [0, 0, 0, 0]
    for amount in data.draw(refunds_of(paid)):
        part = reverse_split(sale, paid, refunded, amount)
        assert part.total_fen == amount
        refunded += amount
        for i, fen in enumerate(
            (part.streamer_fen, part.platform_fen, part.payment_fen, part.merchant_fen)
        ):
            reversed_total[i] += fen
    assert reversed_total == [
        sale.streamer_fen,
        sale.platform_fen,
        sale.payment_fen,
        sale.merchant_fen,
    ]


# -- commission terms -----------------------------------------------------------


#: The binding whose commission terms these tests set.
KEYS: dict[str, Any] = {
    "channel_account": "ch-1",
    "platform": "douyin_shop",
    "shop_id": "d-1",
}


def test_a_live_session_takes_precedence_over_the_binding_agreement() -> None:
    state = None
    for command in (
        AgreeCommission(**KEYS, streamer="anna", rate="0.15"),
        ScheduleLiveSession(
            **KEYS,
            session_id="live-1",
            starts_at=PAID_AT,
            ends_at=PAID_AT + timedelta(hours=2),
            streamer="bo",
            rate="0.25",
        ),
    ):
        for event in decide_terms(state, command, ctx(), POLICY):
            state = mutate_terms(event, state)
    inside = agreement_at(state, PAID_AT + timedelta(minutes=5))
    assert (inside.streamer, inside.rate, inside.source) == (
        "bo",
        "0.25",
        "live_session:live-1",
    )
    after = agreement_at(state, PAID_AT + timedelta(hours=2))
    assert (after.streamer, after.rate, after.source) == ("anna", "0.15", "binding")


def test_commission_outside_the_books_range_is_refused() -> None:
    command = AgreeCommission(**KEYS, streamer="anna", rate="0.31")
    with pytest.raises(CommissionRateError, match=r"0.31 is outside \[0.15, 0.30\]"):
        decide_terms(None, command, ctx(), POLICY)


def test_a_session_that_ends_before_it_starts_is_refused() -> None:
    command = ScheduleLiveSession(
        **KEYS,
        session_id="s",
        starts_at=PAID_AT,
        ends_at=PAID_AT,
        streamer="bo",
        rate="0.2",
    )
    with pytest.raises(LiveSessionError, match="ends_at"):
        decide_terms(None, command, ctx(), POLICY)


# -- payouts --------------------------------------------------------------------


def schedule(
    platform: str = "wechat_shop",
    amount: int = 10_000,
    subject: Any = "enterprise",
    order: str = "O-1",
) -> SchedulePayout:
    return SchedulePayout(
        platform=platform,
        platform_order_id=order,
        shop_id="s-1",
        amount_fen=amount,
        paid_at=PAID_AT,
        subject_kind=subject,
        streamer="anna",
        streamer_rate="0.2",
        agreement="binding",
    )


def run(commands: list[Any], now: datetime = PAID_AT) -> tuple[Any, list[Event]]:
    state = None
    events: list[Event] = []
    for command in commands:
        new = payout.decide(state, command, ctx(now), POLICY)
        for event in new:
            state = payout.mutate(event, state)
        events += new
    return state, events


def test_wechat_pay_settles_the_next_china_day_with_its_fee() -> None:
    _, (event,) = run([schedule()])
    assert isinstance(event, PayoutScheduled)
    assert event.channel == "wechat_pay"
    assert event.settles_on == date(2026, 11, 28)  # paid 27 Nov in China, T+1
    assert (event.split.streamer_fen, event.split.platform_fen) == (2_000, 500)
    assert (event.split.payment_fen, event.split.merchant_fen) == (60, 7_440)


def test_alipay_settles_after_seven_days_and_only_for_an_enterprise() -> None:
    _, (event,) = run([schedule(platform="kuaishou_shop")])
    assert isinstance(event, PayoutScheduled)
    assert (event.channel, event.settles_on) == ("alipay", date(2026, 12, 4))
    with pytest.raises(
        ChannelNotAllowedError,
        match=r"alipay settles only for an enterprise.*individual",
    ):
        run([schedule(platform="kuaishou_shop", subject="individual")])


def test_payouts_settle_on_their_date_and_once() -> None:
    state, _ = run([schedule()])
    early = SettlePayouts(
        platform="wechat_shop",
        platform_order_id="O-1",
        as_of=datetime(2026, 11, 27, 15, 59, tzinfo=UTC),  # 27 Nov 23:59 China
    )
    assert payout.decide(state, early, ctx(), POLICY) == []
    due = SettlePayouts(
        platform="wechat_shop",
        platform_order_id="O-1",
        as_of=datetime(2026, 11, 27, 16, 0, tzinfo=UTC),
    )
    (settled,) = payout.decide(state, due, ctx(), POLICY)
    assert isinstance(settled, PayoutSettled)
    assert (settled.payout, settled.settled_on) == ("sale", date(2026, 11, 28))
    state = payout.mutate(settled, state)
    assert payout.decide(state, due, ctx(), POLICY) == []


def test_a_full_refund_before_settlement_voids_the_pending_payouts() -> None:
    refund = ReversePayout(
        platform="wechat_shop",
        platform_order_id="O-1",
        refund_id="R-1",
        amount_fen=10_000,
        refunded_at=PAID_AT,
    )
    state, events = run([schedule(), refund])
    assert [type(e) for e in events] == [PayoutScheduled, PayoutReversed, PayoutVoided]
    assert events[-1].payouts == ("sale", "refund:R-1")  # type: ignore[attr-defined]
    assert [line.status for line in state.lines] == ["voided", "voided"]
    assert payout.decide(state, refund, ctx(), POLICY) == []  # once


# -- ledger ---------------------------------------------------------------------


def test_an_unbalanced_transaction_is_refused() -> None:
    with pytest.raises(UnbalancedTransactionError, match="add up to 1 fen"):
        check_balanced("t", [Posting(account="a", amount_fen=1)] * 1)
    with pytest.raises(UnbalancedTransactionError, match="add up to 1 fen"):
        Ledger().apply(
            LedgerTransaction(
                source="t",
                kind="sale",
                status="pending",
                platform="p",
                platform_order_id="o",
                effective_at=PAID_AT,
                recorded_at=PAID_AT,
                postings=(
                    Posting(account="a", amount_fen=2),
                    Posting(account="b", amount_fen=-1),
                ),
            )
        )


@st.composite
def payout_histories(draw: st.DrawFn) -> list[Event]:
    """Events of a few orders: paid, refunded in parts, settled now and then,
    each command at a later instant."""
    events: list[Event] = []
    now = PAID_AT
    for n in range(draw(st.integers(1, 4))):
        paid = draw(st.integers(1, 10**7))
        platform = draw(
            st.sampled_from(["wechat_shop", "douyin_shop", "kuaishou_shop"])
        )
        commands: list[Any] = [
            SchedulePayout(
                platform=platform,
                platform_order_id=f"O-{n}",
                shop_id="s",
                amount_fen=paid,
                paid_at=now,
                subject_kind="enterprise",
                streamer=draw(st.sampled_from(["", "anna", "bo"])),
                streamer_rate=draw(st.sampled_from(["0.15", "0.2", "0.3"])),
            )
        ]
        refunds = draw(refunds_of(paid)) if draw(st.booleans()) else []
        for i, amount in enumerate(refunds):
            commands.append(
                ReversePayout(
                    platform=platform,
                    platform_order_id=f"O-{n}",
                    refund_id=f"R-{i}",
                    amount_fen=amount,
                    refunded_at=now,
                )
            )
            if draw(st.booleans()):
                commands.append(
                    SettlePayouts(
                        platform=platform,
                        platform_order_id=f"O-{n}",
                        as_of=now + timedelta(days=draw(st.integers(0, 9))),
                    )
                )
        commands.append(
            SettlePayouts(
                platform=platform,
                platform_order_id=f"O-{n}",
                as_of=now + timedelta(days=10),
            )
        )
        state = None
        for command in commands:
            now += timedelta(hours=draw(st.integers(1, 30)))
            new = payout.decide(state, command, ctx(now), POLICY)
            for event in new:
                state = payout.mutate(event, state)
            events += new
    return events


def ledger_of(events: list[Event]) -> Ledger:
    ledger = Ledger()
    for event in events:
        ledger.apply_event(event)
    return ledger


@settings(max_examples=150)
@given(events=payout_histories())
def test_every_ledger_transaction_balances(events: list[Event]) -> None:
    ledger = ledger_of(events)
    transactions = list(ledger.transactions())
    assert transactions
    for tx in transactions:
        assert sum(p.amount_fen for p in tx.postings) == 0
    assert sum(ledger.balances().values()) == 0


@settings(max_examples=150)
@given(events=payout_histories())
def test_fully_refunded_orders_net_every_party_to_zero(events: list[Event]) -> None:
    balances = ledger_of(events).balances()
    refunded = {
        e.platform_order_id: e.refunded_fen
        for e in events
        if isinstance(e, PayoutReversed)
    }
    paid = {
        e.platform_order_id: e.amount_fen
        for e in events
        if isinstance(e, PayoutScheduled)
    }
    if all(refunded.get(order) == amount for order, amount in paid.items()):
        # Everything paid went back: no party is owed anything, nothing is held.
        assert balances == {}


@settings(max_examples=150)
@given(events=payout_histories(), cut=st.integers(0, 400))
def test_a_balance_at_a_time_equals_the_ledger_rebuilt_up_to_then(
    events: list[Event], cut: int
) -> None:
    at = PAID_AT + timedelta(hours=cut)
    ledger = ledger_of(events)
    rebuilt = ledger_of([e for e in events if e.occurred_at <= at])
    for status in ("posted", "pending", "voided"):
        assert ledger.balances(at, "recorded", status) == rebuilt.balances(
            None, "recorded", status
        )


def test_a_settled_sale_owes_each_party_its_split() -> None:
    _, events = run(
        [
            schedule(),
            SettlePayouts(
                platform="wechat_shop",
                platform_order_id="O-1",
                as_of=PAID_AT + timedelta(days=2),
            ),
        ]
    )
    ledger = ledger_of(events)
    assert ledger.balances() == {
        MERCHANT: -7_440,
        "streamer:anna": -2_000,
        "platform_fee:wechat_shop": -500,
        CLEARING: 9_940,
    }
    # Before its settlement date the sale is pending, by effective time.
    assert ledger.balances(PAID_AT + timedelta(hours=1), "effective") == {}
    assert ledger.balances(PAID_AT, "effective", "pending")[MERCHANT] == -7_440
    assert settlement_date(PAID_AT, 1) == date(2026, 11, 28)


def test_a_sale_of_nothing_moves_no_money() -> None:
    _, events = run(
        [
            schedule(amount=0),
            SettlePayouts(
                platform="wechat_shop",
                platform_order_id="O-1",
                as_of=PAID_AT + timedelta(days=2),
            ),
        ]
    )
    assert [type(e) for e in events] == [PayoutScheduled, PayoutSettled]
    ledger = ledger_of(events)
    assert list(ledger.transactions()) == []
    assert ledger.balances() == {}
