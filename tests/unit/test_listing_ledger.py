"""The outbound's pure rules: a listing's ledger, the plan of a write, the
headroom guard and the invariant a claim checks (domain/listing_ledger.py).

Each test reads: given these ledgers and stock, when this is planned or
claimed, then this write, or this error.
"""

from __future__ import annotations

import pytest

from domain.listing_ledger import (
    HeadroomExceededError,
    Listed,
    ListingLedger,
    PendingWrite,
    WriteInFlightError,
    claim,
    most_shown,
    plan_write,
)


def _ledger(shows: int, **kw: object) -> ListingLedger:
    return ListingLedger(baseline=shows, sold_at_baseline=0, **kw)  # type: ignore[arg-type]


def _raise(delta: int, name: str = "w") -> PendingWrite:
    return PendingWrite(request_id=name, delta=delta)


# --------------------------------------------------------------------------- ledger


def test_a_ledger_shows_what_was_written_less_the_sales_since_its_baseline() -> None:
    ledger = ListingLedger(baseline=10, sold_at_baseline=3, written=4)
    # 10 read when 3 were sold; 4 written since; 5 sold now (2 since the read).
    assert ledger.showing(sold=5) == 12


def test_at_most_counts_a_raise_on_its_way_but_not_a_reduction() -> None:
    given = _ledger(5)
    assert given.claimed(_raise(+3)).at_most(0) == 8
    assert given.claimed(_raise(-3)).at_most(0) == 5
    assert given.claimed(_raise(-3)).showing(0) == 5


def test_at_most_counts_a_raise_of_unknown_outcome_but_not_a_reduction() -> None:
    assert _ledger(5, uncertain=_raise(+2)).at_most(0) == 7
    assert _ledger(5, uncertain=_raise(-2)).at_most(0) == 5


def test_an_acknowledged_write_moves_into_written() -> None:
    ledger = _ledger(5).claimed(_raise(+3)).applied()
    assert (ledger.written, ledger.in_flight, ledger.showing(0)) == (3, None, 8)


def test_a_released_write_leaves_the_ledger_as_before_it() -> None:
    given = _ledger(5)
    assert given.claimed(_raise(+3)).released() == given


def test_a_write_cut_off_becomes_uncertain_and_is_pending_until_settled() -> None:
    write = _raise(+3, "sp-x:0:+3@v7")
    ledger = _ledger(5).claimed(write).unsettled()
    assert (ledger.in_flight, ledger.uncertain, ledger.pending) == (None, write, write)
    assert ledger.settled(applied=True).showing(0) == 8
    assert ledger.settled(applied=False).showing(0) == 5
    assert ledger.settled(applied=False).pending is None


@pytest.mark.parametrize(
    "given",
    [
        _ledger(5).claimed(_raise(+1, "first")),
        _ledger(5, uncertain=_raise(+1, "first")),
    ],
    ids=["in flight", "uncertain"],
)
def test_a_listing_takes_one_write_at_a_time(given: ListingLedger) -> None:
    with pytest.raises(WriteInFlightError, match=r"second .* while first"):
        given.claimed(_raise(+2, "second"))


# ------------------------------------------------------------- the headroom guard


def test_a_reduction_is_never_held_back() -> None:
    # Given A shows 8 of a target 3, and the others already fill what is left.
    listings = {
        "a": Listed(target=3, ledger=_ledger(8)),
        "b": Listed(target=7, ledger=_ledger(9)),
    }
    # When A is planned, then it goes straight to its target.
    plan = plan_write("a", listings, available=10, version=4)
    assert (plan.send, plan.delta, plan.held_back, plan.version) == (3, -5, False, 4)


def test_a_listing_at_its_target_writes_nothing() -> None:
    listings = {"a": Listed(target=3, ledger=_ledger(3))}
    plan = plan_write("a", listings, available=3)
    assert (plan.delta, plan.held_back) == (0, False)


def test_a_raise_with_room_goes_to_its_target() -> None:
    listings = {
        "a": Listed(target=6, ledger=_ledger(2)),
        "b": Listed(target=4, ledger=_ledger(4)),
    }
    plan = plan_write("a", listings, available=10)
    assert (plan.send, plan.delta, plan.held_back) == (6, 4, False)


def test_a_raise_is_capped_while_another_listing_still_shows_more() -> None:
    # Given B's reduction 6 → 4 is on its way (it counts at 6 until acknowledged).
    listings = {
        "a": Listed(target=6, ledger=_ledger(2)),
        "b": Listed(target=4, ledger=_ledger(6).claimed(_raise(-2))),
    }
    # When A is planned, then it takes only what B leaves: 10 - 6.
    plan = plan_write("a", listings, available=10)
    assert (plan.target, plan.send, plan.delta, plan.held_back) == (6, 4, 2, True)


def test_a_raise_with_no_room_at_all_writes_nothing_and_is_held_back() -> None:
    listings = {
        "a": Listed(target=6, ledger=_ledger(2)),
        "b": Listed(target=4, ledger=_ledger(8)),
    }
    plan = plan_write("a", listings, available=10)
    assert (plan.send, plan.delta, plan.held_back) == (2, 0, True)


def test_a_listing_above_what_is_free_is_not_lowered_by_the_guard() -> None:
    # Given stock was taken away: B still shows 9 of available 10, A shows 3.
    listings = {
        "a": Listed(target=5, ledger=_ledger(3)),
        "b": Listed(target=5, ledger=_ledger(9)),
    }
    # Then A's raise waits; the guard never sends A down (B's reduction will).
    plan = plan_write("a", listings, available=10)
    assert (plan.send, plan.delta, plan.held_back) == (3, 0, True)


def test_another_listings_raise_on_its_way_counts_as_applied() -> None:
    listings = {
        "a": Listed(target=5, ledger=_ledger(0)),
        "b": Listed(target=5, ledger=_ledger(2).claimed(_raise(+5))),
    }
    plan = plan_write("a", listings, available=10)
    assert (plan.send, plan.held_back) == (3, True)


def test_another_listings_raise_of_unknown_outcome_counts_as_applied() -> None:
    listings = {
        "a": Listed(target=5, ledger=_ledger(0)),
        "b": Listed(target=5, ledger=_ledger(2, uncertain=_raise(+5))),
    }
    assert plan_write("a", listings, available=10).send == 3


def test_another_listings_reduction_of_unknown_outcome_counts_as_not_applied() -> None:
    listings = {
        "a": Listed(target=5, ledger=_ledger(0)),
        "b": Listed(target=5, ledger=_ledger(8, uncertain=_raise(-3))),
    }
    assert plan_write("a", listings, available=10).send == 2


def test_a_listing_never_read_counts_at_its_target() -> None:
    listings = {
        "a": Listed(target=6, ledger=_ledger(0)),
        "b": Listed(target=4),
    }
    plan = plan_write("a", listings, available=10)
    assert (plan.send, plan.held_back) == (6, False)
    assert most_shown(listings) == 4


def test_sales_the_hub_knows_of_lower_what_a_listing_may_show() -> None:
    # Given B was written 6 and its platform has since sold 2 (available fell too).
    listings = {
        "a": Listed(target=4, ledger=_ledger(0)),
        "b": Listed(target=4, sold=2, ledger=_ledger(6)),
    }
    plan = plan_write("a", listings, available=8)
    assert (plan.send, plan.held_back) == (4, False)


def test_a_listing_without_a_ledger_is_not_planned() -> None:
    with pytest.raises(ValueError, match="'a' has no ledger"):
        plan_write("a", {"a": Listed(target=3)}, available=3)


# ------------------------------------------------------- claims and the invariant


def test_a_claim_records_the_write_on_the_listings_ledger() -> None:
    listings = {
        "a": Listed(target=6, ledger=_ledger(2)),
        "b": Listed(target=4, ledger=_ledger(4)),
    }
    plan = plan_write("a", listings, available=10)
    ledger = claim("a", listings, _raise(plan.delta), available=10)
    assert ledger.in_flight == _raise(4)


def test_two_raises_planned_from_the_same_ledgers_cannot_both_be_claimed() -> None:
    # Given A's reduction 8 → 2 is on its way; B and C wait to rise to 4 each
    # and available is 10, so 2 units are free for now.
    listings = {
        "a": Listed(target=2, ledger=_ledger(8).claimed(_raise(-6))),
        "b": Listed(target=4, ledger=_ledger(0)),
        "c": Listed(target=4, ledger=_ledger(0)),
    }
    # When both are planned before either is claimed, each sees the 2 free.
    plan_b = plan_write("b", listings, available=10)
    plan_c = plan_write("c", listings, available=10)
    assert plan_b.delta == plan_c.delta == 2
    # Then the first claim holds, and the second breaks the invariant.
    listings["b"] = Listed(
        target=4, ledger=claim("b", listings, _raise(plan_b.delta), available=10)
    )
    assert most_shown(listings) == 10
    with pytest.raises(HeadroomExceededError, match=r"up to 12 > available 10"):
        claim("c", listings, _raise(plan_c.delta), available=10)
    # C planned after B's claim is held back instead.
    assert plan_write("c", listings, available=10).delta == 0


def test_a_reduction_is_claimed_even_when_the_listings_show_too_much() -> None:
    listings = {
        "a": Listed(target=2, ledger=_ledger(8)),
        "b": Listed(target=8, ledger=_ledger(8)),
    }
    assert most_shown(listings) == 16
    ledger = claim("a", listings, _raise(-6), available=10)
    assert ledger.in_flight == _raise(-6)


def test_a_listing_without_a_ledger_is_not_claimed() -> None:
    with pytest.raises(ValueError, match="'a' has no ledger"):
        claim("a", {"a": Listed(target=3)}, _raise(+3), available=3)
