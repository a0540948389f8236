"""What the hub has written to each listing, and what its next write may do.

A listing is one hub SKU in one shop. The outbound worker keeps a
:class:`ListingLedger` per listing: what the platform showed when the hub took
the listing over, what the hub has written there since, the write on its way
and a write whose outcome is unknown. From the ledgers of a SKU's listings and
the SKU's stock state, :func:`plan_write` says what one listing's next write
should do, and :func:`claim` records it as on its way.

**The invariant.** For every SKU, the sum over its listings of the most each
may show (:meth:`Listed.at_most`, counting every write already decided) is at
most ``available``. A sale on a platform keeps it (that platform's number and
``available`` both fall by the units sold); stock taken away elsewhere (an
adjustment, a reservation) can break it for a while, until the reductions it
calls for land. A write never breaks it: a reduction only lowers what a listing
may show, and the headroom guard caps every raise at what the other listings
leave free (:func:`plan_write`); :func:`claim` checks the invariant again
whenever it records a raise and refuses one that would break it.

A decision and its claim are one step: the worker plans and claims with no
pause between them, so another listing's plan always sees every raise already
decided. Everything here is pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import msgspec

from domain.events import DomainError


class WriteInFlightError(DomainError):
    """A listing was claimed for a write while another was still unsettled."""

    code: ClassVar[str] = "write_in_flight"


class HeadroomExceededError(DomainError):
    """A raise would let a SKU's listings show more than is available."""

    code: ClassVar[str] = "headroom_exceeded"


class PendingWrite(msgspec.Struct, frozen=True, kw_only=True):
    """One write to a listing: its request id and the change it makes."""

    #: The platform applies a request id once: a retry is never applied twice.
    request_id: str
    #: Units added (positive) or taken off (negative).
    delta: int


class ListingLedger(msgspec.Struct, frozen=True, kw_only=True):
    """What the hub has written to one listing since it took the listing over.

    The platform shows ``baseline + written - (sold - sold_at_baseline) -
    unseen``, where ``sold`` is what the hub knows that platform has sold and
    ``unseen`` the sales it has not heard of yet. A write therefore sends
    ``target - showing(sold)``: the unseen sales stay subtracted, so a write
    never puts sold units back on sale (reading the platform's number and
    sending ``target - number`` would).

    ``in_flight`` is the write on its way now; ``uncertain`` a write whose
    outcome is unknown (its call failed after retries: it may have been
    applied). The next write of the listing sends that one again under its own
    request id first (the platform applies a request id once), so it is
    applied once or not at all, never twice. At most one of them is set.
    """

    #: What the platform showed when the hub read it.
    baseline: int
    #: The platform's sales known to the hub at that read.
    sold_at_baseline: int
    #: The sum of the writes acknowledged since.
    written: int = 0
    in_flight: PendingWrite | None = None
    uncertain: PendingWrite | None = None

    def showing(self, sold: int) -> int:
        """What the platform shows but for the sales the hub has not seen.

        Args:
            sold: Units the hub knows the platform has sold, ever.
        """
        return self.baseline + self.written - (sold - self.sold_at_baseline)

    def at_most(self, sold: int) -> int:
        """The most the platform may show now: the write in flight and an
        uncertain one count as applied when they raise it; a reduction counts
        only once acknowledged."""
        most = self.showing(sold)
        for write in (self.in_flight, self.uncertain):
            if write is not None:
                most += max(write.delta, 0)
        return most

    @property
    def pending(self) -> PendingWrite | None:
        """The write that may have landed but is not in ``written`` (what a
        restarted hub must send again first)."""
        return self.in_flight or self.uncertain

    def claimed(self, write: PendingWrite) -> ListingLedger:
        """The ledger with ``write`` on its way.

        Raises:
            WriteInFlightError: another write is on its way or unsettled.
        """
        if self.pending is not None:
            raise WriteInFlightError(
                f"write {write.request_id} ({write.delta:+d}) while "
                f"{self.pending.request_id} ({self.pending.delta:+d}) is unsettled: "
                "a listing has one write on its way at a time"
            )
        return msgspec.structs.replace(self, in_flight=write)

    def applied(self) -> ListingLedger:
        """The write on its way was acknowledged."""
        write = self.in_flight
        if write is None:
            return self
        return msgspec.structs.replace(
            self, written=self.written + write.delta, in_flight=None
        )

    def released(self) -> ListingLedger:
        """The write on its way is known not to have been applied."""
        return msgspec.structs.replace(self, in_flight=None)

    def unsettled(self) -> ListingLedger:
        """The write on its way may or may not have been applied."""
        if self.in_flight is None:
            return self
        return msgspec.structs.replace(self, uncertain=self.in_flight, in_flight=None)

    def settled(self, *, applied: bool) -> ListingLedger:
        """The uncertain write's outcome became known."""
        write = self.uncertain
        if write is None:
            return self
        written = self.written + (write.delta if applied else 0)
        return msgspec.structs.replace(self, written=written, uncertain=None)


class Listed(msgspec.Struct, frozen=True, kw_only=True):
    """One listing of a SKU as the headroom guard sees it."""

    #: What the allocation wants it to show.
    target: int
    #: Units its platform has sold, as far as the hub knows.
    sold: int = 0
    #: None: the hub has not read or written it yet.
    ledger: ListingLedger | None = None

    def at_most(self) -> int:
        """The most it may show: its ledger's bound, or (never read or written
        yet) its target."""
        if self.ledger is None:
            return self.target
        return self.ledger.at_most(self.sold)


class WritePlan(msgspec.Struct, frozen=True, kw_only=True):
    """What one listing's next write does."""

    #: What the allocation wants the listing to show.
    target: int
    #: What this write takes it to (below ``target`` while the headroom guard
    #: holds back part of a raise).
    send: int
    #: What the ledger says it shows now (but for unseen sales).
    showing: int
    #: The stock item version it was computed from (None: no state yet).
    version: int | None = None

    @property
    def delta(self) -> int:
        """The change to send (0: nothing to write)."""
        return self.send - self.showing

    @property
    def held_back(self) -> bool:
        """Whether part of a raise waits for other listings to come down."""
        return self.send < self.target


def most_shown(listings: Mapping[str, Listed]) -> int:
    """The most a SKU's listings may show together (:meth:`Listed.at_most`)."""
    return sum(listed.at_most() for listed in listings.values())


def plan_write(
    listing: str,
    listings: Mapping[str, Listed],
    available: int,
    version: int | None = None,
) -> WritePlan:
    """What ``listing`` should show now, and what it may show.

    The headroom guard: each target assumes every other listing already shows
    its own, which is not so while their reductions are on their way. When a
    sale on one platform shifts units from the others to it, raising it first
    would let two platforms sell the same units. So a raise is capped at
    ``available`` less the most every other listing may show; the rest waits
    until their reductions land. Reductions are never held back, and a listing
    already above what is free is not raised at all.

    Args:
        listing: The key of the listing to plan, in ``listings``.
        listings: Every listing of the SKU (targets, known sales, ledgers);
            ``listing``'s own must have a ledger.
        available: The SKU's available stock, from the same state as the
            targets and the sales.
        version: That state's version, carried into the plan.

    Raises:
        ValueError: ``listing`` is not among ``listings`` or has no ledger.
    """
    own = listings.get(listing)
    if own is None or own.ledger is None:
        raise ValueError(
            f"listing {listing!r} has no ledger among {sorted(listings)}: a write is "
            "planned only for a listing the hub has read"
        )
    showing = own.ledger.showing(own.sold)
    target = own.target
    if target <= showing:
        return WritePlan(target=target, send=target, showing=showing, version=version)
    others = sum(listed.at_most() for key, listed in listings.items() if key != listing)
    room = available - others
    send = max(showing, min(target, room))
    return WritePlan(target=target, send=send, showing=showing, version=version)


def claim(
    listing: str,
    listings: Mapping[str, Listed],
    write: PendingWrite,
    available: int,
) -> ListingLedger:
    """``listing``'s ledger with ``write`` on its way, checked against the
    invariant (see the module).

    Args:
        listing: The key of the listing written, in ``listings``.
        listings: Every listing of the SKU as they stand now.
        write: The write just planned for it.
        available: The SKU's available stock the plan used.

    Raises:
        ValueError: ``listing`` is not among ``listings`` or has no ledger.
        WriteInFlightError: the listing has a write unsettled.
        HeadroomExceededError: the write is a raise, and with it the listings
            could show more than ``available``.
    """
    own = listings.get(listing)
    if own is None or own.ledger is None:
        raise ValueError(
            f"listing {listing!r} has no ledger among {sorted(listings)}: only a "
            "listing the hub has read is written"
        )
    ledger = own.ledger.claimed(write)
    if write.delta > 0:
        after = {**listings, listing: msgspec.structs.replace(own, ledger=ledger)}
        total = most_shown(after)
        if total > available:
            raise HeadroomExceededError(
                f"{listing}: raise {write.request_id} ({write.delta:+d}) would let "
                f"the listings show up to {total} > available {available}: together "
                "they never show more than is available"
            )
    return ledger
