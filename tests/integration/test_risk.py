"""Risk rules from the policy book, through ``hub.cmd.risk.*`` on a real hub.

The 501st diversion of a day is refused naming the rule and the count; three
violation reports suspend the binding under the bundled rule, with the rule
and the evidence in its reason; clearing and reinstating brings it back. Both
numbers come from the book, so a book file changes them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from domain.binding import binding_id
from domain.policy import PolicyBook
from domain.risk import RecordDiversion
from hub.bootstrap import bootstrap
from hub.service.commands import BINDING_RULES
from hub.service.hub import Hub
from hub.service.policies import load_policy_book
from hub.service.risk import traffic_budget_of, violation_rule_of
from tests.binding_payloads import ACCOUNT, SHOP, activate, encode, keys

WECHAT = "wechat_shop"


async def _active_hub(database_url: str, book: PolicyBook) -> Hub:
    hub = bootstrap(
        database_url=database_url, nats_url=None, projections=[], policy_book=book
    )
    await hub.start()
    await activate(hub, WECHAT)
    return hub


@pytest.fixture
async def hub(database_url: str) -> AsyncIterator[Hub]:
    running = await _active_hub(database_url, load_policy_book())
    yield running
    await running.stop()


def _book_file(tmp_path: Path, edit: Any) -> PolicyBook:
    """The bundled book written to a file with ``edit`` applied, read back."""
    data = json.loads(Path("hub/policies.json").read_text())
    edit(data["profiles"][WECHAT]["risk"])
    path = tmp_path / "policies.json"
    path.write_text(json.dumps(data, ensure_ascii=False))
    return load_policy_book(path)


async def test_the_501st_diversion_of_the_day_is_refused_with_rule_and_count(
    hub: Hub,
) -> None:
    outcomes = await asyncio.gather(
        *(
            hub.submit(
                "risk.divert", RecordDiversion(**keys(WECHAT), reference=f"v{n}")
            )
            for n in range(500)
        )
    )
    assert outcomes[-1].state.count == 500
    reply = await hub.handle(
        "risk.divert", encode(keys(WECHAT) | {"reference": "v500"})
    )
    assert not reply.ok and reply.error is not None
    assert reply.error.code == "traffic_limit_exceeded"
    assert "diversion 501 refused, 500 of 500 used" in reply.error.message
    assert "wechat_shop daily_diversion_cap 500/day" in reply.error.message
    # A diversion already counted is not counted again, nor refused.
    again = await hub.handle("risk.divert", encode(keys(WECHAT) | {"reference": "v7"}))
    assert again.ok and again.events == []


async def test_a_book_file_sets_the_daily_cap(
    database_url: str, tmp_path: Path
) -> None:
    book = _book_file(tmp_path, lambda risk: risk["traffic_limit"].update(per_day=2))
    hub = await _active_hub(database_url, book)
    try:
        for ref in ("a", "b"):
            reply = await hub.handle(
                "risk.divert", encode(keys(WECHAT) | {"reference": ref})
            )
            assert reply.ok
        refused = await hub.handle(
            "risk.divert", encode(keys(WECHAT) | {"reference": "c"})
        )
        assert refused.error is not None
        assert "diversion 3 refused, 2 of 2 used" in refused.error.message
    finally:
        await hub.stop()


async def _report(hub: Hub, ref: str) -> list[str]:
    reply = await hub.handle(
        "risk.report_violation",
        encode(
            keys(WECHAT)
            | {
                "signal": "user_report",
                "reference": ref,
                "evidence": f"buyer report {ref}: counterfeit lipstick",
            }
        ),
    )
    assert reply.ok, reply.error
    return [str(e) for e in reply.events]


async def _suspended(hub: Hub) -> Any:
    """The binding once suspended (the reaction lands with or right after)."""
    async with asyncio.timeout(60):
        while True:
            state = await hub.committer.latest(
                BINDING_RULES, binding_id(ACCOUNT, WECHAT, SHOP)
            )
            if state.status == "suspended":
                return state
            await asyncio.sleep(0.01)


async def test_three_reports_warn_then_suspend_the_binding_with_rule_and_evidence(
    hub: Hub,
) -> None:
    assert await _report(hub, "r1") == ["ViolationRecorded", "BindingWarned"]
    assert await _report(hub, "r2") == ["ViolationRecorded", "BindingWarned"]
    assert await _report(hub, "r3") == ["ViolationRecorded", "BindingSuspensionDue"]
    state = await _suspended(hub)
    reason = state.suspension_reason
    assert "wechat_shop violations: warn from 1, suspend at 3 within 30 days" in reason
    assert "r1: buyer report r1: counterfeit lipstick" in reason
    assert "r3: buyer report r3" in reason
    reply = await hub.handle("binding.reinstate", encode(keys(WECHAT)))
    assert reply.ok  # the reinstatement path: clear, then reinstate
    cleared = await hub.handle(
        "risk.clear_violations", encode(keys(WECHAT) | {"reason": "appeal upheld"})
    )
    assert cleared.ok
    assert await _report(hub, "r4") == ["ViolationRecorded", "BindingWarned"]


async def test_a_book_file_sets_the_violation_rule(
    database_url: str, tmp_path: Path
) -> None:
    book = _book_file(
        tmp_path, lambda risk: risk["violations"].update(warn_at=2, suspend_at=2)
    )
    hub = await _active_hub(database_url, book)
    try:
        assert await _report(hub, "r1") == ["ViolationRecorded"]
        assert await _report(hub, "r2") == [
            "ViolationRecorded",
            "BindingSuspensionDue",
        ]
        state = await _suspended(hub)
        assert "suspend at 2 within 30 days" in state.suspension_reason
    finally:
        await hub.stop()


def test_the_bundled_book_gives_every_platform_its_budget_and_rule() -> None:
    book = load_policy_book()
    budgets = {
        code: traffic_budget_of(book.profile(code))
        for code in ("wechat_shop", "douyin_shop", "kuaishou_shop")
    }
    assert (budgets["wechat_shop"].limit, budgets["wechat_shop"].window) == (
        500,
        "day",
    )
    assert budgets["douyin_shop"].rule == (
        "douyin_shop tiered_traffic_packages basic 1000/day"
    )
    assert budgets["kuaishou_shop"].window == "hour"
    assert violation_rule_of(book.profile("kuaishou_shop")).suspend_at == 3
