"""Bindings against real PostgreSQL and nats-server: commands over NATS
request/reply, events on HUB_EVENTS, the ``bindings`` table, the policy file
and the ``hub bindings`` verbs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import msgspec
import nats
import psycopg
import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from domain.binding import binding_id
from hub.bootstrap import bootstrap
from hub.entry.cli import main
from hub.infra.settings import Settings
from hub.messages import STREAM, EventMessage
from hub.service.authorisation import Connection, authorise_on_grant
from hub.service.hub import Hub
from hub.service.policies import BUNDLED_POLICIES, load_policy_book
from tests.binding_payloads import (
    ACCOUNT,
    ACTIVE_EVENTS,
    NOW,
    SHOP,
    encode,
    keys,
    platform_grant,
    qualify,
    request,
    to_requirements_met,
)
from tests.conftest import wait_until
from tests.hub_steps import serving_hub

pytestmark = pytest.mark.integration


@pytest.fixture
async def hub(database_url: str, nats_url: str) -> AsyncIterator[Hub]:
    async with serving_hub(database_url, nats_url, lambda: NOW) as running:
        yield running


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[nats.NATS]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


async def send(nc: nats.NATS, name: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Request ``hub.cmd.<name>`` and decode the reply."""
    msg = await nc.request(f"hub.cmd.{name}", encode(payload), timeout=10)
    reply: dict[str, Any] = msgspec.json.decode(msg.data)
    return reply


async def binding_messages(nc: nats.NATS, count: int) -> list[tuple[str, EventMessage]]:
    """The first ``count`` binding messages of HUB_EVENTS: subject and envelope."""
    js = nc.jetstream()
    sub = await js.pull_subscribe(
        "hub.events.binding.>",
        stream=STREAM,
        config=ConsumerConfig(ack_policy=AckPolicy.NONE),
    )
    out: list[tuple[str, EventMessage]] = []
    while len(out) < count:
        for msg in await sub.fetch(count - len(out), timeout=10):
            out.append((msg.subject, msgspec.json.decode(msg.data, type=EventMessage)))
    await sub.unsubscribe()
    return out


async def _route_step(hub: Hub, platform: str) -> Connection:
    return await authorise_on_grant(
        hub,
        channel_account=ACCOUNT,
        platform=platform,
        shop_id=SHOP,
        grant=platform_grant(platform),
    )


def log_count(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM hub_events").fetchone()
    assert row is not None
    return int(row[0])


def binding_row(
    database_url: str, platform: str, shop_id: str = SHOP
) -> dict[str, Any]:
    with psycopg.connect(database_url) as conn:
        cur = conn.execute(
            "SELECT id, channel_account, platform, shop_id, status, requested_on, "
            "review_due_on, data_scope, failure_reasons, version, position "
            "FROM bindings WHERE id = %s",
            (binding_id(ACCOUNT, platform, shop_id),),
        )
        row = cur.fetchone()
        assert row is not None, f"no bindings row for {platform}/{shop_id}"
        names = [column.name for column in cur.description or ()]
    return dict(zip(names, row, strict=True))


async def test_binding_goes_active_over_nats_with_events_and_row(
    hub: Hub, nc: nats.NATS, database_url: str
) -> None:
    walk = to_requirements_met("douyin_shop")
    replies = [await send(nc, name, data) for name, data in walk]
    assert [r["ok"] for r in replies] == [True] * 4, replies
    # The route's last step: the hub records the grant it obtained, then
    # authorises and activates the binding on it.
    connection = await _route_step(hub, "douyin_shop")
    assert connection.status == "active"
    head = 7
    assert log_count(database_url) == head
    assert hub.relay is not None
    await hub.relay.wait_for(head)
    messages = await binding_messages(nc, head)
    assert [subject for subject, _ in messages] == [
        f"hub.events.binding.{name}.douyin_shop" for name in ACTIVE_EVENTS
    ]
    requested = messages[0][1]
    assert requested.aggregate_id == binding_id(ACCOUNT, "douyin_shop", SHOP)
    assert requested.data["materials"] == ["business_licence", "shop_logo"]
    assert requested.data["data_scope"] == "product_information_only"
    verified = messages[1][1].data
    assert verified["subject_code"] == "9144**********8216"
    await hub.projection("bindings").wait_for(head)
    row = binding_row(database_url, "douyin_shop")
    assert row["status"] == "active"
    assert row["data_scope"] == "product_information_only"
    assert row["requested_on"] == date(2025, 9, 26)
    # 2-5 working days from Friday 26 Sep: Sun 28 (make-up day), 29, 30, then
    # the National Day holiday to 8 Oct, then 9 and 10 Oct.
    assert row["review_due_on"] == date(2025, 10, 10)
    assert row["failure_reasons"] == []
    assert (row["version"], row["position"]) == (7, 7)


async def test_repeated_request_finds_the_same_binding(
    hub: Hub, nc: nats.NATS, database_url: str
) -> None:
    first = await send(nc, "binding.request", request("wechat_shop"))
    again = await send(nc, "binding.request", request("wechat_shop"))
    assert first["ok"] and again["ok"]
    assert again["aggregate_id"] == first["aggregate_id"]
    assert (again["version"], again["events"], again["positions"]) == (1, [], [])
    assert log_count(database_url) == 1
    await hub.projection("bindings").wait_for(1)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM bindings").fetchone() == (1,)


async def test_illegal_transition_names_status_and_allowed_and_changes_nothing(
    hub: Hub, nc: nats.NATS, database_url: str
) -> None:
    await send(nc, "binding.request", request("wechat_shop"))
    reply = await send(nc, "binding.suspend", keys("wechat_shop") | {"reason": "x"})
    assert reply["ok"] is False
    assert reply["error"]["code"] == "illegal_transition"
    assert "it is requested" in reply["error"]["message"]
    assert "allowed when requested: VerifySubject, Unbind" in reply["error"]["message"]
    assert log_count(database_url) == 1
    await hub.projection("bindings").wait_for(1)
    row = binding_row(database_url, "wechat_shop")
    assert (row["status"], row["version"]) == ("requested", 1)


async def test_rejection_is_an_event_and_lists_every_failure(
    hub: Hub, nc: nats.NATS, database_url: str
) -> None:
    for name, data in to_requirements_met("kuaishou_shop")[:2]:
        assert (await send(nc, name, data))["ok"]
    reply = await send(
        nc,
        "binding.record_qualification",
        qualify("kuaishou_shop", followers=8_120, categories=["food"]),
    )
    expected = [
        "category food needs sc_food_production_licence or "
        "qs_food_production_licence, none held (kuaishou_shop)",
        "followers 8,120 < 10,000 (kuaishou_shop)",
    ]
    assert reply["ok"] is True
    assert reply["events"] == ["QualificationRejected"]
    assert reply["state"]["status"] == "qualification_rejected"
    assert [f["message"] for f in reply["state"]["failures"]] == expected
    assert hub.relay is not None
    await hub.relay.wait_for(3)
    subject, message = (await binding_messages(nc, 3))[2]
    assert subject == "hub.events.binding.QualificationRejected.kuaishou_shop"
    assert [f["message"] for f in message.data["failures"]] == expected
    await hub.projection("bindings").wait_for(3)
    row = binding_row(database_url, "kuaishou_shop")
    assert row["status"] == "qualification_rejected"
    assert row["failure_reasons"] == expected
    # Better facts later pass, and the reasons are cleared.
    passed = await send(nc, "binding.record_qualification", qualify("kuaishou_shop"))
    assert passed["events"] == ["QualificationPassed"]
    await hub.projection("bindings").wait_for(4)
    assert binding_row(database_url, "kuaishou_shop")["failure_reasons"] == []


async def test_changed_threshold_in_policy_file_changes_the_outcome(
    hub: Hub, nc: nats.NATS, database_url: str, tmp_path: Path
) -> None:
    raw = msgspec.json.decode(BUNDLED_POLICIES.read_bytes())
    rule = raw["profiles"]["kuaishou_shop"]["rules"][0]
    assert (rule["metric"], rule["threshold"]) == ("followers", 10_000)
    rule["threshold"] = 5_000
    policies = tmp_path / "policies.json"
    policies.write_bytes(msgspec.json.encode(raw))
    settings = Settings.from_env({"HUB_POLICIES_FILE": str(policies)})
    lenient = bootstrap(
        database_url=database_url,
        nats_url=None,
        clock=lambda: NOW,
        projections=[],
        policy_book=load_policy_book(settings.policies_file),
    )
    await lenient.start()
    try:
        outcomes = {}
        for shop, via in (("shop-bundled", "nats"), ("shop-file", "lenient")):
            for name, data in to_requirements_met("kuaishou_shop")[:2]:
                mine = data | {"shop_id": shop}
                if via == "nats":
                    assert (await send(nc, name, mine))["ok"]
                else:
                    assert (await lenient.handle(name, encode(mine))).ok
            facts = qualify("kuaishou_shop", shop, followers=8_120)
            if via == "nats":
                outcomes[shop] = (
                    await send(nc, "binding.record_qualification", facts)
                )["events"]
            else:
                reply = await lenient.handle(
                    "binding.record_qualification", encode(facts)
                )
                outcomes[shop] = reply.events
    finally:
        await lenient.stop()
    assert outcomes == {
        "shop-bundled": ["QualificationRejected"],
        "shop-file": ["QualificationPassed"],
    }


async def test_binding_rows_are_rebuilt_from_the_log(
    hub: Hub, nc: nats.NATS, database_url: str
) -> None:
    from projections.base import rebuild
    from projections.bindings import BindingsProjection

    for name, data in to_requirements_met("youzan"):
        assert (await send(nc, name, data))["ok"]
    await _route_step(hub, "youzan")
    await send(nc, "binding.unbind", keys("youzan") | {"reason": "closing"})
    await hub.projection("bindings").wait_for(7)
    before = binding_row(database_url, "youzan")
    assert before["status"] == "unbound"
    await hub.projection("bindings").stop()
    book = load_policy_book()
    assert await rebuild(database_url, BindingsProjection(book.holiday_calendar)) == 7
    assert binding_row(database_url, "youzan") == before


# -- the CLI ------------------------------------------------------------------------


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture
def cli_env(database_url: str, nats_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``hub`` commands run by the test use the test's PostgreSQL and NATS."""
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    monkeypatch.setenv("HUB_NATS_URL", nats_url)


@pytest.mark.usefixtures("cli_env")
def test_bindings_cli_request_list_show_suspend_unbind(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("HUB_POLICIES_FILE", raising=False)

    # A binding requested long ago (the hub's clock injected) is overdue now.
    async def old_request() -> None:
        old = bootstrap(
            database_url=database_url,
            nats_url=None,
            clock=lambda: NOW,
            run_relay=False,
            projections=[],
        )
        await old.start()
        try:
            reply = await old.handle(
                "binding.request", encode(request("douyin_shop", shop_id="old"))
            )
            assert reply.ok
        finally:
            await old.stop()

    asyncio.run(old_request())

    # No hub serves NATS here: the command runs in this process.
    code, out = _cli(
        [
            "bindings",
            "request",
            ACCOUNT,
            "wechat_shop",
            SHOP,
            "--material",
            "business_licence",
            "--material",
            "legal_person_id",
        ],
        capsys,
    )
    wechat = binding_id(ACCOUNT, "wechat_shop", SHOP)
    assert code == 0, out
    assert "binding.request: ok in this process" in out
    assert f"binding {wechat} is requested (version 1)" in out

    code, out = _cli(["bindings", "list"], capsys)
    assert code == 0
    assert str(wechat) in out
    assert "douyin_shop" in out
    assert "2025-10-10 OVERDUE" in out

    code, out = _cli(["bindings", "list", "--overdue"], capsys)
    assert "douyin_shop" in out
    assert str(wechat) not in out
    code, out = _cli(
        ["bindings", "list", "--platform", "wechat_shop", "--json"], capsys
    )
    rows = msgspec.json.decode(out)
    assert [(r["id"], r["status"], r["overdue"]) for r in rows] == [
        (str(wechat), "requested", False)
    ]

    code, out = _cli(
        ["bindings", "suspend", ACCOUNT, "wechat_shop", SHOP, "--reason", "fraud"],
        capsys,
    )
    assert code == 1
    assert "refused in this process: [illegal_transition]" in out
    assert "it is requested" in out

    code, out = _cli(
        ["bindings", "unbind", ACCOUNT, "wechat_shop", SHOP, "--reason", "closing"],
        capsys,
    )
    assert code == 0, out
    assert "is unbound (version 2)" in out

    code, out = _cli(["bindings", "show", ACCOUNT, "wechat_shop", SHOP], capsys)
    assert code == 0
    assert "status:           unbound (version 2)" in out
    assert "BindingRequested: requested on" in out
    assert "materials: business_licence, legal_person_id" in out
    assert "BindingUnbound: unbound (was requested): closing" in out
    assert "next commands:    RequestBinding" in out

    code, out = _cli(["bindings", "show", str(binding_id("x", "youzan", "y"))], capsys)
    assert code == 1
    assert "no binding has id" in out


@pytest.mark.usefixtures("cli_env")
async def test_bindings_cli_sends_over_nats_when_a_hub_serves(
    hub: Hub, capsys: pytest.CaptureFixture[str]
) -> None:
    before = hub.committer.commands
    # main() runs its own event loop: give it a thread of its own.
    code = await asyncio.to_thread(
        main, ["bindings", "request", ACCOUNT, "youzan", SHOP, "--json"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    reply = msgspec.json.decode(out)
    assert reply["events"] == ["BindingRequested"]
    assert hub.committer.commands == before + 1, "the serving hub ran it"
    await wait_until(lambda: hub.relay is not None and hub.relay.position >= 1)
