"""Bindings in the hub: the rules adapter, replies, messages and read-side text.

The hub runs on eventsourcing's in-memory store here (no servers).
"""

from __future__ import annotations

import typing
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import msgspec
import pytest

from domain import binding
from domain.calendar import NO_HOLIDAYS
from domain.events import Context, Event
from domain.policy import AtLeastRule, PolicyBook
from hub.entry.cli import main
from hub.infra.settings import Settings
from hub.messages import PAYLOADS, CommandReply, payload_of, subject_for, to_message
from hub.service.bindings import explain, format_binding, parse_binding_id
from hub.service.commands import (
    COMMANDS,
    STOCK_RULES,
    BindingRules,
    PolicyBookMissingError,
    command_rules,
)
from hub.service.hub import Hub
from hub.service.policies import BUNDLED_POLICIES, load_policy_book
from projections.bindings import failure_reasons
from tests.binding_payloads import (
    ACCOUNT,
    ACTIVE_EVENTS,
    NOW,
    SHOP,
    USCC,
    activate,
    encode,
    keys,
    qualify,
    request,
    to_requirements_met,
    verify,
)
from tests.memory_hub import committing, in_memory_hub

BOOK = load_policy_book()
BINDING_COMMANDS = [name for name in COMMANDS if name.startswith("binding.")]


def _with_threshold(book: PolicyBook, platform: str, threshold: int) -> PolicyBook:
    """``book`` with the first at-least rule of ``platform`` at ``threshold``."""
    profile = book.profiles[platform]
    rules = tuple(
        msgspec.structs.replace(rule, threshold=threshold)
        if isinstance(rule, AtLeastRule)
        else rule
        for rule in profile.rules
    )
    profiles = book.profiles | {platform: msgspec.structs.replace(profile, rules=rules)}
    return msgspec.structs.replace(book, profiles=profiles)


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    async with committing(in_memory_hub(NOW, BOOK)) as running:
        yield running


async def _send(hub: Hub, name: str, payload: dict[str, Any]) -> CommandReply:
    return await hub.handle(name, encode(payload))


# -- the rules adapter ------------------------------------------------------------


def test_binding_commands_are_in_the_command_table() -> None:
    assert BINDING_COMMANDS == [
        "binding.request",
        "binding.verify_subject",
        "binding.record_qualification",
        "binding.meet_requirement",
        "binding.authorise",
        "binding.activate",
        "binding.suspend",
        "binding.reinstate",
        "binding.unbind",
    ]
    assert COMMANDS["binding.suspend"].subject == "hub.cmd.binding.suspend"


def test_rules_key_a_binding_by_account_platform_and_shop() -> None:
    command = binding.RequestBinding(
        channel_account=ACCOUNT, platform="wechat_shop", shop_id=SHOP
    )
    assert BindingRules(BOOK).aggregate_id(command) == binding.binding_id(
        ACCOUNT, "wechat_shop", SHOP
    )


def test_rules_without_a_book_refuse_to_decide() -> None:
    command = binding.RequestBinding(
        channel_account=ACCOUNT, platform="youzan", shop_id=SHOP
    )
    with pytest.raises(PolicyBookMissingError, match="no policy book"):
        BindingRules().decide(None, command, Context(now=NOW))


def test_command_rules_give_every_binding_command_one_rules_reading_the_book() -> None:
    rules = command_rules(BOOK)
    bound = {id(rules[name]) for name in BINDING_COMMANDS}
    assert len(bound) == 1
    assert rules["binding.request"].book is BOOK
    assert rules["stock.receive"] is STOCK_RULES


def test_rules_pass_the_commands_platform_profile_to_decide() -> None:
    command = binding.RequestBinding(
        channel_account=ACCOUNT, platform="kuaishou_shop", shop_id=SHOP
    )
    with pytest.raises(binding.MissingMaterialsError, match="handheld_id_photo"):
        BindingRules(BOOK).decide(None, command, Context(now=NOW))


def test_changed_threshold_in_the_book_changes_the_decision() -> None:
    state = None
    rules = BindingRules(BOOK)
    for name, payload in to_requirements_met("kuaishou_shop")[:2]:
        command = msgspec.convert(payload, COMMANDS[name].type)
        for event in rules.decide(state, command, Context(now=NOW)):
            state = rules.mutate(event, state)
    facts = msgspec.convert(
        qualify("kuaishou_shop", followers=8_120), binding.RecordQualification
    )
    strict = BindingRules(BOOK).decide(state, facts, Context(now=NOW))
    lenient = BindingRules(_with_threshold(BOOK, "kuaishou_shop", 5_000)).decide(
        state, facts, Context(now=NOW)
    )
    assert isinstance(strict[0], binding.QualificationRejected)
    assert isinstance(lenient[0], binding.QualificationPassed)


# -- commands through the hub on the in-memory store ------------------------------


async def test_binding_walks_to_active_and_back_through_the_hub(hub: Hub) -> None:
    platform = "wechat_shop"
    connection = await activate(hub, platform)
    assert connection.status == "active"
    aggregate_id = binding.binding_id(ACCOUNT, platform, SHOP)
    walked = [type(e).__name__ for e in hub.app.load_events(aggregate_id)]
    assert walked == ACTIVE_EVENTS
    suspended = await _send(
        hub, "binding.suspend", keys(platform) | {"reason": "credit fell"}
    )
    reinstated = await _send(hub, "binding.reinstate", keys(platform))
    unbound = await _send(hub, "binding.unbind", keys(platform))
    assert [suspended.events, reinstated.events, unbound.events] == [
        ["BindingSuspended"],
        ["BindingReinstated"],
        ["BindingUnbound"],
    ]
    assert unbound.version == 10
    assert unbound.aggregate_id == binding.binding_id(ACCOUNT, platform, SHOP)


async def test_repeated_request_finds_the_same_binding_and_changes_nothing(
    hub: Hub,
) -> None:
    first = await _send(hub, "binding.request", request("douyin_shop"))
    again = await _send(hub, "binding.request", request("douyin_shop"))
    assert again.ok
    assert again.aggregate_id == first.aggregate_id
    assert again.version == first.version == 1
    assert again.events == []
    assert again.positions == []


async def test_illegal_transition_names_status_and_allowed_and_changes_nothing(
    hub: Hub,
) -> None:
    await _send(hub, "binding.request", request("wechat_shop"))
    reply = await _send(hub, "binding.activate", keys("wechat_shop"))
    assert not reply.ok
    assert reply.error is not None
    assert reply.error.code == "illegal_transition"
    assert "it is requested" in reply.error.message
    assert "allowed when requested: VerifySubject, Unbind" in reply.error.message
    aggregate_id = binding.binding_id(ACCOUNT, "wechat_shop", SHOP)
    assert len(hub.app.load_events(aggregate_id)) == 1


async def test_rejection_is_recorded_and_the_reply_lists_every_failure(
    hub: Hub,
) -> None:
    platform = "kuaishou_shop"
    for name, data in to_requirements_met(platform)[:2]:
        assert (await _send(hub, name, data)).ok
    reply = await _send(
        hub,
        "binding.record_qualification",
        qualify(platform, followers=8_120, categories=["food", "digital"]),
    )
    assert reply.ok
    assert reply.events == ["QualificationRejected"]
    assert reply.state is not None
    assert reply.state["status"] == "qualification_rejected"
    assert [f["message"] for f in reply.state["failures"]] == [
        "category food needs sc_food_production_licence or "
        "qs_food_production_licence, none held (kuaishou_shop)",
        "category digital needs ccc_certification, none held (kuaishou_shop)",
        "followers 8,120 < 10,000 (kuaishou_shop)",
    ]


async def test_a_forged_grant_is_refused_and_no_command_records_one(
    hub: Hub,
) -> None:
    platform = "youzan"
    for name, data in to_requirements_met(platform):
        assert (await _send(hub, name, data)).ok
    forged = keys(platform) | {"grant_ref": "sha256:0123456789abcdef until 2099"}
    reply = await _send(hub, "binding.authorise", forged)
    assert not reply.ok
    assert reply.error is not None
    assert reply.error.code == "unknown_grant"
    assert "not a grant the hub obtained" in reply.error.message
    # Only the hub's own route records a grant: no door takes one from outside.
    recorded = await _send(hub, "binding.record_grant", forged)
    assert recorded.error is not None
    assert recorded.error.code == "invalid_command"
    assert all("grant" not in name for name in COMMANDS if name != "binding.authorise")


async def test_an_authorisation_without_a_grant_is_refused_naming_field_and_rule(
    hub: Hub,
) -> None:
    platform = "wechat_shop"
    for name, data in to_requirements_met(platform):
        assert (await _send(hub, name, data)).ok
    reply = await _send(hub, "binding.authorise", keys(platform))
    assert reply.error is not None
    assert reply.error.code == "grant_required"
    assert "grant_ref missing" in reply.error.message
    assert "only on a grant the hub obtained" in reply.error.message
    events = hub.app.load_events(binding.binding_id(ACCOUNT, platform, SHOP))
    assert type(events[-1]).__name__ == "SpecialRequirementMet"


async def test_unknown_platform_is_refused_naming_the_known_ones(hub: Hub) -> None:
    reply = await _send(hub, "binding.request", keys("taobao") | {"materials": []})
    assert not reply.ok
    assert reply.error is not None
    assert reply.error.code == "unknown_platform"
    assert "kuaishou_shop" in reply.error.message


async def test_malformed_binding_command_names_the_field(hub: Hub) -> None:
    reply = await _send(hub, "binding.request", {"platform": "wechat_shop"})
    assert not reply.ok
    assert reply.error is not None
    assert reply.error.code == "invalid_command"
    assert "channel_account" in reply.error.message


# -- public messages --------------------------------------------------------------


def _lifecycle_events() -> list[Event]:
    """One of every binding event (mismatch and rejection included)."""
    rules = BindingRules(BOOK)
    state = None
    events: list[Event] = []
    steps = [
        ("binding.request", request("wechat_shop")),
        ("binding.verify_subject", verify("wechat_shop", name="别的公司")),
        *to_requirements_met("wechat_shop")[1:2],
        (
            "binding.record_qualification",
            qualify("wechat_shop", compliance_score=50),
        ),
        *to_requirements_met("wechat_shop")[2:],
        ("binding.authorise", keys("wechat_shop")),
        ("binding.activate", keys("wechat_shop")),
        ("binding.suspend", keys("wechat_shop") | {"reason": "token revoked"}),
        ("binding.reinstate", keys("wechat_shop")),
        ("binding.unbind", keys("wechat_shop")),
    ]
    grant = binding.RecordGrant(**keys("wechat_shop"), grant_ref="sha256:0")
    commands: list[Any] = []
    for name, data in steps:
        if name == "binding.authorise":
            commands.append(grant)
        given = (
            data | {"grant_ref": grant.grant_ref}
            if name == "binding.authorise"
            else data
        )
        commands.append(msgspec.convert(given, COMMANDS[name].type))
    for command in commands:
        for event in rules.decide(state, command, Context(now=NOW)):
            state = rules.mutate(event, state)
            events.append(event)
    return events


def test_every_binding_event_has_a_public_payload() -> None:
    events = typing.get_args(binding.BindingEvent)
    assert [cls for cls in events if cls not in PAYLOADS] == []
    assert {type(e) for e in _lifecycle_events()} == set(events)


def test_binding_messages_carry_the_platform_in_the_subject() -> None:
    for position, event in enumerate(_lifecycle_events(), start=1):
        name = type(event).__name__
        assert subject_for(event) == f"hub.events.binding.{name}.wechat_shop"
        message = msgspec.json.decode(msgspec.json.encode(to_message(event, position)))
        assert message["aggregate_type"] == "binding"
        assert message["platform"] == "wechat_shop"


def test_binding_messages_carry_no_unmasked_subject_code() -> None:
    for event in _lifecycle_events():
        text = msgspec.json.encode(payload_of(event)).decode()
        assert USCC not in text


def test_rejection_payload_lists_failures_as_public_structs() -> None:
    rejected = next(
        e for e in _lifecycle_events() if isinstance(e, binding.QualificationRejected)
    )
    payload = payload_of(rejected)
    failures = msgspec.to_builtins(payload)["failures"]
    assert [f["message"] for f in failures] == [
        "compliance score 50 < 80 (wechat_shop)"
    ]
    assert type(payload.failures[0]).__name__ == "RuleFailureV1"  # type: ignore[attr-defined]


# -- read side ----------------------------------------------------------------------


def test_show_explains_the_binding_from_its_history() -> None:
    history = list(enumerate(_lifecycle_events()[:4], start=1))
    text = format_binding(history, date(2025, 10, 20), NO_HOLIDAYS)
    assert "status:           qualification_rejected (version 4)" in text
    assert "review due on:    2025-10-01\n" in text  # rejected: review is over
    assert "- compliance score 50 < 80 (wechat_shop)" in text
    assert "next commands:    RecordQualification, Unbind" in text
    assert "SubjectMismatched: subject mismatch, binding waits: name:" in text
    assert text.count("\n  #") == 4


def test_show_marks_a_review_past_its_working_days_overdue() -> None:
    history = list(enumerate(_lifecycle_events()[:2], start=1))
    # Requested Friday 26 Sep with 1-3 working days: due Wednesday 1 Oct.
    assert "2025-10-01\n" in format_binding(history, date(2025, 10, 1), NO_HOLIDAYS)
    late = format_binding(history, date(2025, 10, 2), NO_HOLIDAYS)
    assert "review due on:    2025-10-01 OVERDUE" in late
    # The book's calendar makes Sunday 28 Sep a working day (调休): due Tuesday.
    with_holidays = format_binding(history, date(2025, 9, 30), BOOK.holiday_calendar)
    assert "review due on:    2025-09-30\n" in with_holidays


def test_explain_says_what_each_event_recorded() -> None:
    lines = [explain(event) for event in _lifecycle_events()]
    assert lines[0].startswith("requested on 2025-09-26 by sph_beauty_001")
    assert "review 1-3 working days" in lines[0]
    assert lines[-1] == "unbound (was active)"


def test_failure_reasons_follow_the_state() -> None:
    state = None
    reasons = []
    for event in _lifecycle_events():
        state = binding.mutate(event, state)
        assert state is not None
        reasons.append(failure_reasons(state))
    assert reasons[1][0].startswith("subject name differs")
    assert reasons[2] == []
    assert reasons[3] == ["compliance score 50 < 80 (wechat_shop)"]
    assert reasons[4] == []
    assert reasons[-3] == ["suspended: token revoked"]


def test_binding_id_from_keys_or_uuid() -> None:
    expected = binding.binding_id(ACCOUNT, "youzan", SHOP)
    assert parse_binding_id([ACCOUNT, "youzan", SHOP]) == expected
    assert parse_binding_id([str(expected)]) == expected
    with pytest.raises(ValueError, match="not a binding id"):
        parse_binding_id(["nope"])


# -- settings and the CLI's policy verb ---------------------------------------------


def test_policies_file_setting_is_read_from_the_environment() -> None:
    settings = Settings.from_env({"HUB_POLICIES_FILE": "/etc/hub/policies.json"})
    assert settings.policies_file == Path("/etc/hub/policies.json")
    assert Settings.from_env({}).policies_file is None


def test_policies_show_prints_the_profile(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policies", "show", "kuaishou_shop"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("kuaishou_shop: Kuaishou Shop")
    assert "followers >= 10,000" in out


def test_policies_show_refuses_an_unknown_platform(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["policies", "show", "taobao"]) == 1
    assert "'taobao' has no policy profile" in capsys.readouterr().err


def test_policies_show_reads_the_policies_file(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    raw = msgspec.json.decode(BUNDLED_POLICIES.read_bytes())
    raw["profiles"]["kuaishou_shop"]["rules"][0]["threshold"] = 5000
    book = tmp_path / "policies.json"
    book.write_bytes(msgspec.json.encode(raw))
    monkeypatch.setenv("HUB_POLICIES_FILE", str(book))
    assert main(["policies", "show", "kuaishou_shop"]) == 0
    assert "followers >= 5,000" in capsys.readouterr().out
    monkeypatch.setenv("HUB_POLICIES_FILE", str(tmp_path / "missing.json"))
    assert main(["policies", "show", "kuaishou_shop"]) == 2
    assert "HUB_POLICIES_FILE=" in capsys.readouterr().err
