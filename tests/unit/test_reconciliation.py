"""Reconciliation: statement lines against the ledger's sales, recorded once."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time

from domain.events import Context
from domain.reconciliation import (
    Difference,
    LedgerSale,
    RecordReconciliation,
    SettlementDifferenceFound,
    StatementLine,
    StatementReconciled,
    compare_line,
    decide,
    mutate,
)
from domain.settlement import PlatformSettlement, split_sale
from hub.service.reconciliation import next_run

SALE = LedgerSale(
    amount_fen=990,
    split=split_sale(
        990, streamer_rate="0.25", platform_rate="0.05", payment_rate="0.006"
    ),
)
DOUYIN = PlatformSettlement(
    payment_channel="wechat_pay", withholds=("platform",), statement_commission=True
)
WECHAT = PlatformSettlement(payment_channel="wechat_pay", withholds=("payment",))


def line(**changes: int) -> StatementLine:
    values = {"gross_fen": 990, "fee_fen": 50, "net_fen": 692, "commission_fen": 248}
    values.update(changes)
    return StatementLine(entry_id="S1", order_id="O-1", **values)


def test_a_statement_that_matches_the_ledger_has_no_difference() -> None:
    assert compare_line(line(), SALE, DOUYIN) == []
    assert compare_line(line(fee_fen=6, commission_fen=0), SALE, WECHAT) == []


def test_each_field_that_differs_is_named_with_both_values() -> None:
    assert compare_line(line(fee_fen=51, commission_fen=240), SALE, DOUYIN) == [
        Difference(order_id="O-1", field="fee_fen", statement_fen=51, ledger_fen=50),
        Difference(
            order_id="O-1", field="commission_fen", statement_fen=240, ledger_fen=248
        ),
    ]
    assert compare_line(line(), None, DOUYIN) == [
        Difference(order_id="O-1", field="order", statement_fen=990, ledger_fen=None)
    ]


def test_a_difference_is_recorded_once_and_an_unchanged_run_records_nothing() -> None:
    ctx = Context(now=datetime(2026, 11, 28, tzinfo=UTC), new_id=uuid.uuid4)
    found = Difference(order_id="O-1", field="fee_fen", statement_fen=7, ledger_fen=6)
    command = RecordReconciliation(
        platform="wechat_shop",
        shop_id="s",
        day=date(2026, 11, 27),
        lines=2,
        differences=(found,),
    )
    events = decide(None, command, ctx)
    assert [type(e) for e in events] == [SettlementDifferenceFound, StatementReconciled]
    state = None
    for event in events:
        state = mutate(event, state)
    assert decide(state, command, ctx) == []


def test_the_daily_run_is_at_ten_in_china() -> None:
    before = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)  # 09:00 in China
    assert next_run(before) == datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
    after = datetime(2026, 11, 28, 2, 1, tzinfo=UTC)
    assert next_run(after, time(10, 0)) == datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
