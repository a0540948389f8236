"""The binding aggregate: given events, when a command, then events or an error."""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any

import msgspec
import pytest

from domain.binding import (
    ALLOWED_COMMANDS,
    Activate,
    Authorise,
    Binding,
    BindingActivated,
    BindingAuthorised,
    BindingCommand,
    BindingReinstated,
    BindingRequested,
    BindingSuspended,
    BindingUnbound,
    DataScopeError,
    GrantObtained,
    GrantRequiredError,
    IllegalTransitionError,
    InvalidMappingError,
    InvalidSubjectCodeError,
    MeetSpecialRequirement,
    MissingMaterialsError,
    QualificationPassed,
    QualificationRejected,
    RecordGrant,
    RecordQualification,
    Reinstate,
    RequestBinding,
    SpecialRequirementMet,
    SubjectMismatched,
    SubjectVerified,
    Suspend,
    Unbind,
    UnknownGrantError,
    UnknownRequirementError,
    UnsupportedBindingError,
    VerifySubject,
    binding_id,
    can_pull,
    check_data_scope,
    decide,
    mutate,
    review_due,
    review_overdue,
)
from domain.calendar import NO_HOLIDAYS
from domain.events import Context, Event, event_class, project
from domain.identity import Subject
from domain.qualification import InvalidFactsError, QualificationFacts
from hub.service.policies import load_policy_book
from tests.binding_payloads import ACCOUNT, NAME, NOW, SHOP, USCC

BOOK = load_policy_book()

MATERIALS = {
    "wechat_shop": ("business_licence", "legal_person_id"),
    "douyin_shop": ("business_licence", "shop_logo"),
    "kuaishou_shop": ("id_card_front", "id_card_back", "handheld_id_photo"),
    "youzan": (),
    "pinduoduo": (),
}
REQUIREMENT = {
    "wechat_shop": "corporate_bank_account_verification",
    "douyin_shop": "security_deposit",
    "kuaishou_shop": "face_recognition",
}


def context(now: datetime = NOW) -> Context:
    counter = itertools.count(1)
    return Context(now=now, new_id=lambda: uuid.UUID(int=next(counter)))


def keys(platform: str) -> dict[str, str]:
    return {"channel_account": ACCOUNT, "platform": platform, "shop_id": SHOP}


def good_facts(**changes: Any) -> QualificationFacts:
    base: dict[str, Any] = {
        "as_of": date(2025, 9, 26),
        "compliance_score": 92,
        "followers": 25_000,
        "last_completed_sale_on": date(2025, 9, 25),
    }
    return QualificationFacts(**(base | changes))


def subject(name: str = NAME, code: str = USCC) -> Subject:
    return Subject(kind="enterprise", name=name, code=code)


def request(platform: str) -> RequestBinding:
    return RequestBinding(**keys(platform), materials=MATERIALS[platform])


def verify(platform: str) -> VerifySubject:
    return VerifySubject(
        **keys(platform), account_subject=subject(), licence_subject=subject()
    )


def qualify(platform: str, **changes: Any) -> RecordQualification:
    return RecordQualification(**keys(platform), facts=good_facts(**changes))


GRANT = "sha256:1a2b3c4d5e6f7081 until 2025-09-26T04:00:00+00:00"


def authorise(platform: str, **changes: Any) -> list[BindingCommand]:
    """The hub's route: the grant it obtained, then the authorisation naming it."""
    return [
        RecordGrant(**keys(platform), grant_ref=GRANT),
        Authorise(**keys(platform), grant_ref=GRANT, **changes),
    ]


def run(
    platform: str, commands: Sequence[BindingCommand], now: datetime = NOW
) -> tuple[Binding | None, list[Event]]:
    """Decide and apply ``commands`` in turn; the state and every event."""
    profile = BOOK.profile(platform)
    state: Binding | None = None
    events: list[Event] = []
    for command in commands:
        new = decide(state, command, context(now), profile)
        state = project(mutate, state, new)
        events.extend(new)
    return state, events


def when(
    platform: str, given: Sequence[BindingCommand], command: BindingCommand
) -> list[Event]:
    state, _ = run(platform, given)
    return decide(state, command, context(), BOOK.profile(platform))


def path_to(platform: str, status: str) -> list[BindingCommand]:
    """Commands that take a fresh binding on ``platform`` to ``status``."""
    steps: list[tuple[str, Callable[[], list[BindingCommand]]]] = [
        ("requested", lambda: [request(platform)]),
        ("subject_verified", lambda: [verify(platform)]),
        ("qualified", lambda: [qualify(platform)]),
        (
            "requirements_met",
            lambda: (
                [
                    MeetSpecialRequirement(
                        **keys(platform), requirement=REQUIREMENT[platform]
                    )
                ]
                if platform in REQUIREMENT
                else []
            ),
        ),
        ("authorised", lambda: authorise(platform)),
        ("active", lambda: [Activate(**keys(platform))]),
        ("suspended", lambda: [Suspend(**keys(platform), reason="token revoked")]),
    ]
    if status == "qualification_rejected":
        return [
            *path_to(platform, "subject_verified"),
            qualify(platform, categories=frozenset({"digital"})),
        ]
    if status == "unbound":
        return [request(platform), Unbind(**keys(platform))]
    commands: list[BindingCommand] = []
    for name, make in steps:
        commands.extend(make())
        if name == status:
            return commands
    raise AssertionError(status)


# -- ids ------------------------------------------------------------------------


def test_binding_id_is_derived_from_account_platform_and_shop() -> None:
    assert binding_id(ACCOUNT, "wechat_shop", SHOP) == binding_id(
        ACCOUNT, "wechat_shop", SHOP
    )
    assert binding_id(ACCOUNT, "wechat_shop", SHOP) != binding_id(
        ACCOUNT, "douyin_shop", SHOP
    )
    assert binding_id(ACCOUNT, "wechat_shop", SHOP) != binding_id(
        ACCOUNT, "wechat_shop", "shop-43"
    )


# -- the whole lifecycle ----------------------------------------------------------


def test_wechat_binding_walks_the_whole_lifecycle() -> None:
    platform = "wechat_shop"
    state, events = run(
        platform,
        [
            request(platform),
            verify(platform),
            qualify(platform),
            MeetSpecialRequirement(
                **keys(platform),
                requirement="corporate_bank_account_verification",
                evidence="transfer 0.37 CNY confirmed",
            ),
            *authorise(platform),
            Activate(**keys(platform)),
            Suspend(
                **keys(platform),
                reason="compliance score fell to 72",
                cause="credit_below_threshold",
            ),
            Reinstate(**keys(platform), reason="score back to 85"),
            Unbind(**keys(platform), reason="merchant left"),
        ],
    )
    assert [type(e) for e in events] == [
        BindingRequested,
        SubjectVerified,
        QualificationPassed,
        SpecialRequirementMet,
        GrantObtained,
        BindingAuthorised,
        BindingActivated,
        BindingSuspended,
        BindingReinstated,
        BindingUnbound,
    ]
    assert [e.originator_version for e in events] == list(range(1, 11))
    expected_id = binding_id(ACCOUNT, platform, SHOP)
    assert all(e.originator_id == expected_id for e in events)
    assert all(e.event_platform == platform for e in events)
    requested = events[0]
    assert isinstance(requested, BindingRequested)
    assert requested.requested_on == date(2025, 9, 26)
    assert (requested.review_days_min, requested.review_days_max) == (1, 3)
    assert requested.binding_route == "wechat_internal_authorisation"
    assert requested.data_scope == "orders_and_users_full"
    passed = events[2]
    assert isinstance(passed, QualificationPassed)
    assert passed.pending_requirements == ("corporate_bank_account_verification",)
    unbound = events[-1]
    assert isinstance(unbound, BindingUnbound)
    assert unbound.previous_status == "active"
    assert state is not None
    assert state.status == "unbound"
    assert state.version == 10


@pytest.mark.parametrize(
    ("platform", "status_after_qualifying"),
    [
        ("wechat_shop", "qualified"),
        ("douyin_shop", "qualified"),
        ("kuaishou_shop", "qualified"),
        ("youzan", "requirements_met"),  # no special requirements in its profile
    ],
)
def test_every_bindable_platform_reaches_active(
    platform: str, status_after_qualifying: str
) -> None:
    state, _ = run(platform, path_to(platform, "qualified"))
    assert state is not None
    assert state.status == status_after_qualifying
    state, _ = run(platform, path_to(platform, "active"))
    assert state is not None
    assert state.status == "active"
    assert state.data_scope == BOOK.profile(platform).data_scope


def test_subject_verified_records_the_normalised_name_and_a_masked_code() -> None:
    events = when(
        "wechat_shop",
        [request("wechat_shop")],
        VerifySubject(
            **keys("wechat_shop"),
            account_subject=subject(name="华为技术　有限公司"),
            licence_subject=subject(code="９１４４０３００１９２２０３８２１６"),
        ),
    )
    assert len(events) == 1
    verified = events[0]
    assert isinstance(verified, SubjectVerified)
    assert verified.subject_name == NAME
    assert verified.subject_code == "9144**********8216"


# -- requests -------------------------------------------------------------------


def test_a_repeated_request_finds_the_same_binding_and_adds_nothing() -> None:
    assert when("wechat_shop", [request("wechat_shop")], request("wechat_shop")) == []
    active = path_to("douyin_shop", "active")
    assert when("douyin_shop", active, request("douyin_shop")) == []


def test_a_request_after_unbinding_starts_afresh() -> None:
    platform = "douyin_shop"
    state, events = run(
        platform, [*path_to(platform, "active"), Unbind(**keys(platform))]
    )
    again = decide(state, request(platform), context(), BOOK.profile(platform))
    assert [type(e) for e in again] == [BindingRequested]
    assert again[0].originator_version == len(events) + 1
    fresh = project(mutate, state, again)
    assert fresh.status == "requested"
    assert fresh.pending_requirements == ()
    assert fresh.met_requirements == ()


def test_a_request_lacking_materials_names_all_of_them() -> None:
    with pytest.raises(MissingMaterialsError) as caught:
        when(
            "kuaishou_shop",
            [],
            RequestBinding(**keys("kuaishou_shop"), materials=("id_card_front",)),
        )
    assert "lacks id_card_back, handheld_id_photo" in str(caught.value)


def test_a_platform_without_a_binding_route_cannot_be_requested() -> None:
    with pytest.raises(UnsupportedBindingError, match="pinduoduo has no binding route"):
        when("pinduoduo", [], request("pinduoduo"))


def test_a_profile_of_another_platform_is_a_wiring_error() -> None:
    with pytest.raises(ValueError, match="profile of douyin_shop given for a wechat"):
        decide(None, request("wechat_shop"), context(), BOOK.profile("douyin_shop"))


# -- subject verification -------------------------------------------------------


def test_a_mismatched_subject_is_recorded_and_the_binding_waits() -> None:
    platform = "wechat_shop"
    mismatched = VerifySubject(
        **keys(platform),
        account_subject=subject(name="华为终端有限公司"),
        licence_subject=subject(),
    )
    state, events = run(platform, [request(platform), mismatched])
    assert isinstance(events[-1], SubjectMismatched)
    assert [m.field for m in events[-1].mismatches] == ["name"]
    assert state is not None
    assert state.status == "requested"
    state, _ = run(platform, [request(platform), mismatched, verify(platform)])
    assert state is not None
    assert state.status == "subject_verified"
    assert state.mismatches == ()


@pytest.mark.parametrize(
    ("account", "licence", "message"),
    [
        (
            subject(code="914403001922038217"),
            subject(),
            "account code 9144**********8217 of a enterprise subject is not a valid "
            "GB 32100-2015",
        ),
        (
            subject(),
            Subject(kind="individual", name="张三", code="110105194912310021"),
            "licence code 1101**********0021 of a individual subject",
        ),
        (
            subject(),
            # A resident id born after today (2025-09-26) is not real.
            Subject(kind="individual", name="张三", code="110105203001010019"),
            "licence code 1101**********0019",
        ),
    ],
)
def test_an_invalid_subject_code_is_refused(
    account: Subject, licence: Subject, message: str
) -> None:
    command = VerifySubject(
        **keys("wechat_shop"), account_subject=account, licence_subject=licence
    )
    with pytest.raises(InvalidSubjectCodeError, match=re.escape(message)):
        when("wechat_shop", [request("wechat_shop")], command)


# -- qualification --------------------------------------------------------------


def test_a_rejection_records_every_failure_and_may_be_retried() -> None:
    platform = "kuaishou_shop"
    given = path_to(platform, "subject_verified")
    failing = qualify(platform, followers=8_120, categories=frozenset({"food"}))
    state, events = run(platform, [*given, failing])
    rejected = events[-1]
    assert isinstance(rejected, QualificationRejected)
    assert [f.message for f in rejected.failures] == [
        "category food needs sc_food_production_licence or "
        "qs_food_production_licence, none held (kuaishou_shop)",
        "followers 8,120 < 10,000 (kuaishou_shop)",
    ]
    assert state is not None
    assert state.status == "qualification_rejected"
    state, _ = run(platform, [*given, failing, qualify(platform)])
    assert state is not None
    assert state.status == "qualified"
    assert state.failures == ()


def test_qualification_uses_the_profile_passed_in() -> None:
    platform = "kuaishou_shop"
    state, _ = run(platform, path_to(platform, "subject_verified"))
    facts_command = qualify(platform, followers=8_120)
    bundled = decide(state, facts_command, context(), BOOK.profile(platform))
    assert isinstance(bundled[0], QualificationRejected)
    profile = BOOK.profile(platform)
    lowered = msgspec.structs.replace(
        profile,
        rules=tuple(
            msgspec.structs.replace(rule, threshold=8_000)
            if getattr(rule, "metric", None) == "followers"
            else rule
            for rule in profile.rules
        ),
    )
    assert isinstance(
        decide(state, facts_command, context(), lowered)[0], QualificationPassed
    )


def test_facts_from_the_future_are_refused() -> None:
    platform = "douyin_shop"
    with pytest.raises(InvalidFactsError):
        when(
            platform,
            path_to(platform, "subject_verified"),
            qualify(platform, last_violation_on=date(2025, 10, 1)),
        )


# -- special requirements -------------------------------------------------------


def test_an_unknown_requirement_is_refused_naming_the_pending_ones() -> None:
    platform = "douyin_shop"
    with pytest.raises(
        UnknownRequirementError,
        match=r"'face_recognition' is not pending .* \(pending: security_deposit\)",
    ):
        when(
            platform,
            path_to(platform, "qualified"),
            MeetSpecialRequirement(**keys(platform), requirement="face_recognition"),
        )


def test_meeting_a_requirement_again_adds_nothing() -> None:
    platform = "douyin_shop"
    meet = MeetSpecialRequirement(**keys(platform), requirement="security_deposit")
    assert when(platform, [*path_to(platform, "qualified"), meet], meet) == []


# -- authorisation and data scope -----------------------------------------------


@pytest.mark.parametrize("platform", ["wechat_shop", "kuaishou_shop", "youzan"])
def test_an_authorisation_on_a_grant_the_hub_obtained_uses_it_up(
    platform: str,
) -> None:
    state, events = run(
        platform,
        [
            *path_to(platform, "requirements_met"),
            RecordGrant(**keys(platform), grant_ref=GRANT),
            Authorise(**keys(platform), grant_ref=GRANT),
        ],
    )
    obtained, authorised = events[-2:]
    assert isinstance(obtained, GrantObtained)
    assert obtained.grant_ref == GRANT
    route = BOOK.profile(platform).binding_route
    assert route is not None and obtained.binding_route == route.kind
    assert isinstance(authorised, BindingAuthorised)
    assert authorised.grant_ref == GRANT
    assert state is not None and state.status == "authorised" and state.grants == ()


@pytest.mark.parametrize(
    "recorded", [[], [RecordGrant(**keys("youzan"), grant_ref="sha256:other")]]
)
def test_an_authorisation_naming_a_grant_the_hub_did_not_obtain_is_refused(
    recorded: list[BindingCommand],
) -> None:
    platform = "youzan"
    state, _ = run(platform, [*path_to(platform, "requirements_met"), *recorded])
    with pytest.raises(UnknownGrantError, match="not a grant the hub obtained"):
        decide(
            state,
            Authorise(**keys(platform), grant_ref=GRANT),
            context(NOW),
            BOOK.profile(platform),
        )


@pytest.mark.parametrize("platform", ["wechat_shop", "douyin_shop", "youzan"])
def test_an_authorisation_without_a_grant_is_refused_naming_the_field(
    platform: str,
) -> None:
    with pytest.raises(GrantRequiredError) as refused:
        when(
            platform,
            path_to(platform, "requirements_met"),
            Authorise(**keys(platform)),
        )
    assert refused.value.code == "grant_required"
    assert "grant_ref missing" in str(refused.value)
    assert "only on a grant the hub obtained" in str(refused.value)


def test_custom_mapping_records_the_mapped_data() -> None:
    platform = "youzan"
    state, events = run(
        platform,
        [
            *path_to(platform, "requirements_met"),
            *authorise(platform, mapped_data=("products", "orders", "products")),
            Activate(**keys(platform)),
        ],
    )
    authorised = events[-2]
    assert isinstance(authorised, BindingAuthorised)
    assert authorised.mapped_data == ("products", "orders")
    assert state is not None
    check_data_scope(state, "orders")
    with pytest.raises(DataScopeError, match="custom_mapping mapping products, orders"):
        check_data_scope(state, "users")


def test_mapped_data_for_a_fixed_scope_is_refused() -> None:
    platform = "douyin_shop"
    with pytest.raises(InvalidMappingError, match="scope product_information_only"):
        when(
            platform,
            path_to(platform, "requirements_met"),
            Authorise(**keys(platform), mapped_data=("orders",)),
        )


@pytest.mark.parametrize(
    ("scope", "kind", "mapped", "allowed"),
    [
        ("orders_and_users_full", "orders", (), True),
        ("orders_and_users_full", "users", (), True),
        ("orders_and_users_full", "products", (), True),
        ("product_information_only", "products", (), True),
        ("product_information_only", "stock", (), True),
        ("product_information_only", "orders", ("orders",), False),
        ("product_information_only", "users", (), False),
        ("custom_mapping", "orders", ("orders",), True),
        ("custom_mapping", "users", ("orders",), False),
        (None, "products", (), False),
        ("orders_and_users_full", "sales", (), True),
        ("product_information_only", "sales", (), True),
        ("custom_mapping", "sales", ("products",), True),
        ("custom_mapping", "sales", ("users",), False),
        (None, "sales", (), False),
    ],
)
def test_can_pull_follows_the_data_scope(
    scope: Any, kind: Any, mapped: tuple[str, ...], allowed: bool
) -> None:
    assert can_pull(scope, kind, mapped) is allowed


@pytest.mark.parametrize("kind", ["orders", "users"])
def test_a_product_information_binding_never_pulls_orders_or_users(kind: Any) -> None:
    state, _ = run("douyin_shop", path_to("douyin_shop", "active"))
    assert state is not None
    check_data_scope(state, "products")
    check_data_scope(state, "stock")
    with pytest.raises(
        DataScopeError,
        match=f"cannot pull {kind} .*: its data scope is product_information_only",
    ):
        check_data_scope(state, kind)


def test_a_binding_that_is_not_active_pulls_nothing() -> None:
    state, _ = run("wechat_shop", path_to("wechat_shop", "suspended"))
    assert state is not None
    with pytest.raises(DataScopeError, match="it is suspended"):
        check_data_scope(state, "products")


# -- illegal transitions ----------------------------------------------------------

ALL_COMMANDS: dict[str, Callable[[str], BindingCommand]] = {
    "RequestBinding": request,
    "VerifySubject": verify,
    "RecordQualification": qualify,
    # Not douyin_shop's own requirement: meeting that one again is a no-op.
    "MeetSpecialRequirement": lambda p: MeetSpecialRequirement(
        **keys(p), requirement="face_recognition"
    ),
    "RecordGrant": lambda p: RecordGrant(**keys(p), grant_ref="sha256:0"),
    "Authorise": lambda p: Authorise(**keys(p)),
    "Activate": lambda p: Activate(**keys(p)),
    "Suspend": lambda p: Suspend(**keys(p), reason="token revoked"),
    "Reinstate": lambda p: Reinstate(**keys(p)),
    "Unbind": lambda p: Unbind(**keys(p)),
}
ILLEGAL = [
    (status, name)
    for status, allowed in ALLOWED_COMMANDS.items()
    for name in ALL_COMMANDS
    if name not in allowed
    and not (name == "RequestBinding" and status != "none")  # a no-op, see above
]


@pytest.mark.parametrize(("status", "command_name"), ILLEGAL)
def test_an_illegal_transition_names_the_status_and_the_allowed_commands(
    status: str, command_name: str
) -> None:
    platform = "douyin_shop"
    given = [] if status == "none" else path_to(platform, status)
    state, _ = run(platform, given)
    assert (state.status if state else "none") == status
    allowed = ", ".join(ALLOWED_COMMANDS[status])
    with pytest.raises(IllegalTransitionError) as caught:
        decide(
            state,
            ALL_COMMANDS[command_name](platform),
            context(),
            BOOK.profile(platform),
        )
    assert str(caught.value).endswith(
        f"it is {status}; allowed when {status}: {allowed}"
    )
    assert str(caught.value).startswith(f"cannot {command_name} binding douyin_shop/")


@pytest.mark.parametrize(
    "status",
    [s for s in ALLOWED_COMMANDS if s not in ("none", "unbound")],
)
def test_any_live_binding_can_be_unbound(status: str) -> None:
    platform = "douyin_shop"
    events = when(platform, path_to(platform, status), Unbind(**keys(platform)))
    assert len(events) == 1
    unbound = events[0]
    assert isinstance(unbound, BindingUnbound)
    assert unbound.previous_status == status


# -- review deadline ------------------------------------------------------------


def test_a_review_past_its_working_days_is_overdue() -> None:
    calendar = BOOK.holiday_calendar
    state, _ = run("wechat_shop", path_to("wechat_shop", "subject_verified"))
    assert state is not None
    # Requested Friday 26 Sep 2025; Sunday 28 Sep is worked; 1-8 Oct are off.
    assert review_due(state, calendar) == date(2025, 9, 30)
    assert not review_overdue(state, date(2025, 9, 30), calendar)
    assert review_overdue(state, date(2025, 10, 1), calendar)
    assert not review_overdue(state, date(2025, 10, 1), NO_HOLIDAYS)


def test_a_concluded_review_is_never_overdue() -> None:
    late = date(2026, 1, 1)
    for status in ("authorised", "active", "qualification_rejected", "unbound"):
        state, _ = run("douyin_shop", path_to("douyin_shop", status))
        assert state is not None
        assert not review_overdue(state, late, NO_HOLIDAYS), status


def test_a_review_of_unknown_length_is_never_overdue() -> None:
    state, _ = run("youzan", [request("youzan")])
    assert state is not None
    assert review_due(state, NO_HOLIDAYS) is None
    assert not review_overdue(state, date(2030, 1, 1), NO_HOLIDAYS)


def test_requested_on_is_the_china_date() -> None:
    late_evening_utc = datetime(2025, 9, 26, 17, 0, tzinfo=UTC)  # 01:00 on the 27th
    state, _ = run("wechat_shop", [request("wechat_shop")], now=late_evening_utc)
    assert state is not None
    assert state.requested_on == date(2025, 9, 27)


# -- stored events ----------------------------------------------------------------


def test_events_have_stable_topics_and_round_trip_through_json() -> None:
    _, events = run(
        "kuaishou_shop",
        [
            *path_to("kuaishou_shop", "subject_verified"),
            qualify("kuaishou_shop", followers=1),
            qualify("kuaishou_shop"),
        ],
    )
    for event in events:
        cls = type(event)
        assert f"binding.{cls.__name__}" == cls.TOPIC
        assert cls.AGGREGATE == "binding"
        assert event_class(cls.TOPIC) is cls
        assert msgspec.json.decode(msgspec.json.encode(event), type=cls) == event


def test_mutate_refuses_foreign_events() -> None:
    with pytest.raises(TypeError, match="binding cannot apply Event"):
        mutate(
            Event(
                originator_id=uuid.uuid4(),
                originator_version=1,
                event_id=uuid.uuid4(),
                occurred_at=NOW,
            ),
            None,
        )
