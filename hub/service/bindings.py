"""Reading bindings: the ``bindings`` table, and one binding explained from its log.

``hub bindings list`` reads the table kept by
:class:`projections.bindings.BindingsProjection`; ``hub bindings show`` reads
the binding's events from the log itself, so every status it prints comes with
the facts that made it.
"""

from __future__ import annotations

import functools
import uuid
from datetime import date, datetime

from domain import binding
from domain.calendar import HolidayCalendar, china_date
from domain.events import Event, project
from hub.messages import event_type
from hub.service.inventory import aggregate_history
from projections.bindings import BindingRow, BindingsView, failure_reasons


class BindingNotFoundError(LookupError):
    """No binding has the id asked for."""


def today_in_china(now: datetime) -> date:
    """The calendar day in China at ``now`` (overdue is counted in China time)."""
    return china_date(now)


def parse_binding_id(keys: list[str]) -> uuid.UUID:
    """A binding id from ``[ID]`` or ``[CHANNEL_ACCOUNT, PLATFORM, SHOP_ID]``.

    Raises:
        ValueError: neither form, or not a UUID.
    """
    if len(keys) == 3:
        return binding.binding_id(*keys)
    if len(keys) == 1:
        try:
            return uuid.UUID(keys[0])
        except ValueError:
            raise ValueError(f"{keys[0]!r} is not a binding id (a UUID)") from None
    raise ValueError("give a binding id, or CHANNEL_ACCOUNT PLATFORM SHOP_ID")


async def read_bindings(
    database_url: str, *, platform: str | None = None
) -> list[BindingRow]:
    """Every binding in the ``bindings`` table (of ``platform`` only, if given)."""
    return await BindingsView(database_url).all(platform=platform)


def overdue_only(
    rows: list[BindingRow], today: date, calendar: HolidayCalendar
) -> list[BindingRow]:
    """The bindings whose platform review has run past its promised time."""
    return [row for row in rows if row.is_overdue(today, calendar)]


async def binding_history(
    database_url: str, binding_id: uuid.UUID
) -> list[tuple[int, Event]]:
    """Every event of one binding from the log, with its log position.

    Raises:
        BindingNotFoundError: the log has no event of ``binding_id``.
    """
    events = await aggregate_history(database_url, binding_id)
    if not events or not isinstance(events[0][1], binding.BindingRequested):
        raise BindingNotFoundError(f"no binding has id {binding_id}")
    return events


# -- explaining ----------------------------------------------------------------


def _codes(codes: tuple[str, ...]) -> str:
    return ", ".join(codes) if codes else "none"


@functools.singledispatch
def explain(event: Event) -> str:
    """One line saying what ``event`` recorded about its binding."""
    return event_type(event)


@explain.register
def _(event: binding.BindingRequested) -> str:
    if event.review_days_max is None:
        review = "review time not given"
    elif event.review_days_max == 0:
        review = "instant review"
    else:
        review = f"review {event.review_days_min}-{event.review_days_max} working days"
    return (
        f"requested on {event.requested_on.isoformat()} by "
        f"{event.channel_account} for {event.platform}/{event.shop_id}; "
        f"materials: {_codes(event.materials)}; {review}; "
        f"route {event.binding_route or 'none'}; "
        f"data scope {event.data_scope or 'not given'}"
    )


@explain.register
def _(event: binding.SubjectVerified) -> str:
    return (
        f"subject verified: {event.subject_kind} {event.subject_name} "
        f"({event.subject_code})"
    )


@explain.register
def _(event: binding.SubjectMismatched) -> str:
    fields = "; ".join(
        f"{m.field}: account {m.account_value}, licence {m.licence_value}"
        for m in event.mismatches
    )
    return f"subject mismatch, binding waits: {fields}"


@explain.register
def _(event: binding.QualificationPassed) -> str:
    return (
        f"qualification passed as of {event.as_of.isoformat()}; "
        f"pending requirements: {_codes(event.pending_requirements)}"
    )


@explain.register
def _(event: binding.QualificationRejected) -> str:
    failures = "; ".join(failure.message for failure in event.failures)
    return (
        f"qualification rejected as of {event.as_of.isoformat()} "
        f"({len(event.failures)} failed): {failures}"
    )


@explain.register
def _(event: binding.SpecialRequirementMet) -> str:
    evidence = f" ({event.evidence})" if event.evidence else ""
    return (
        f"requirement {event.requirement} met{evidence}; "
        f"remaining: {_codes(event.remaining)}"
    )


@explain.register
def _(event: binding.GrantObtained) -> str:
    return f"the hub ran route {event.binding_route} and obtained {event.grant_ref}"


@explain.register
def _(event: binding.BindingAuthorised) -> str:
    mapped = f", mapping {_codes(event.mapped_data)}" if event.mapped_data else ""
    grant = (
        f", on grant {event.grant_ref}"
        if event.grant_ref
        else ", on no grant the hub obtained"
    )
    return (
        f"authorised via {event.binding_route or 'no route'}, "
        f"data scope {event.data_scope or 'not given'}{mapped}{grant}"
    )


@explain.register
def _(event: binding.BindingActivated) -> str:
    return "activated: data flows within its scope"


@explain.register
def _(event: binding.BindingSuspended) -> str:
    return f"suspended ({event.cause}): {event.reason}"


@explain.register
def _(event: binding.BindingReinstated) -> str:
    return f"reinstated{': ' + event.reason if event.reason else ''}"


@explain.register
def _(event: binding.BindingUnbound) -> str:
    reason = f": {event.reason}" if event.reason else ""
    return f"unbound (was {event.previous_status}){reason}"


def format_binding(
    history: list[tuple[int, Event]], today: date, calendar: HolidayCalendar
) -> str:
    """A binding's current state and its whole history, for ``hub bindings show``.

    The state is folded from ``history`` here, not read from the table, so
    what is shown is exactly what the log says.
    """
    state: binding.Binding = project(
        binding.mutate, None, (event for _, event in history)
    )
    due = binding.review_due(state, calendar)
    overdue = binding.review_overdue(state, today, calendar)
    lines = [
        f"binding {state.id}",
        f"  channel account:  {state.channel_account}",
        f"  platform / shop:  {state.platform} / {state.shop_id}",
        f"  status:           {state.status} (version {state.version})",
        f"  requested on:     {state.requested_on.isoformat()}",
        "  review due on:    "
        + (due.isoformat() if due else "(unknown)")
        + (" OVERDUE" if overdue else ""),
        f"  binding route:    {state.binding_route or '(none)'}",
        f"  data scope:       {state.data_scope or '(not given)'}",
    ]
    if state.mapped_data:
        lines.append(f"  mapped data:      {_codes(state.mapped_data)}")
    if state.pending_requirements:
        lines.append(f"  pending:          {_codes(state.pending_requirements)}")
    if state.met_requirements:
        lines.append(f"  met:              {_codes(state.met_requirements)}")
    reasons = failure_reasons(state)
    if reasons:
        lines.append("  held up by:")
        lines.extend(f"    - {reason}" for reason in reasons)
    allowed = binding.ALLOWED_COMMANDS[state.status]
    lines.append(f"  next commands:    {', '.join(allowed)}")
    lines.append("history:")
    for position, event in history:
        lines.append(
            f"  #{position:<6} v{event.originator_version:<3} "
            f"{event.occurred_at.isoformat(timespec='seconds')}  "
            f"{event_type(event)}: {explain(event)}"
        )
    return "\n".join(lines)


def format_bindings(
    rows: list[BindingRow], today: date, calendar: HolidayCalendar
) -> str:
    """The table of ``hub bindings list``: one line per binding."""
    if not rows:
        return "no bindings"
    header = (
        f"{'id':36}  {'platform':13}  {'channel account':20}  {'shop':16}  "
        f"{'status':22}  {'requested':10}  {'review due':10}  reasons"
    )
    lines = [header]
    for row in rows:
        due = row.review_due_on.isoformat() if row.review_due_on else "-"
        if row.is_overdue(today, calendar):
            due += " OVERDUE"
        lines.append(
            f"{row.id!s:36}  {row.platform:13}  {row.channel_account:20}  "
            f"{row.shop_id:16}  {row.status:22}  {row.requested_on.isoformat():10}  "
            f"{due:10}  {'; '.join(row.failure_reasons)}"
        )
    return "\n".join(lines)
