"""Bindings: one row per binding with its status, review deadline and failures.

Each row also holds the binding's folded state, so an event is applied with the
domain's own :func:`domain.binding.mutate` (the status rules live in one place)
and the columns are read off the new state.
"""

from __future__ import annotations

from datetime import date
from typing import ClassVar

import msgspec
import psycopg

from domain import binding
from domain.calendar import HolidayCalendar
from domain.events import Event
from projections.base import Projection

_encode = msgspec.json.Encoder().encode
_decode_state = msgspec.json.Decoder(binding.Binding).decode

#: Every binding event, by stable topic.
BINDING_TOPICS: tuple[str, ...] = tuple(
    cls.TOPIC
    for cls in (
        binding.BindingRequested,
        binding.SubjectVerified,
        binding.SubjectMismatched,
        binding.QualificationPassed,
        binding.QualificationRejected,
        binding.SpecialRequirementMet,
        binding.BindingAuthorised,
        binding.BindingActivated,
        binding.BindingSuspended,
        binding.BindingReinstated,
        binding.BindingUnbound,
    )
)


def failure_reasons(state: binding.Binding) -> list[str]:
    """Why the binding is held up now: rule failures, subject mismatches, or
    the suspension reason; empty when nothing stands in its way.
    """
    reasons = [failure.message for failure in state.failures]
    reasons += [
        f"subject {m.field} differs: account {m.account_value}, "
        f"licence {m.licence_value}"
        for m in state.mismatches
    ]
    if state.status == "suspended" and state.suspension_reason:
        reasons.append(f"suspended: {state.suspension_reason}")
    return reasons


class BindingsProjection(Projection):
    """Table ``bindings``: one row per binding, for ``hub bindings list``.

    Args:
        calendar: the holiday calendar review due dates are counted in (the
            policy book's); rebuild the projection after the calendar changes.
    """

    name: ClassVar[str] = "bindings"
    tables: ClassVar[tuple[str, ...]] = ("bindings",)
    topics: ClassVar[tuple[str, ...]] = BINDING_TOPICS

    def __init__(self, calendar: HolidayCalendar) -> None:
        self.calendar = calendar

    def review_due_on(self, state: binding.Binding) -> date | None:
        """The day the platform's review of ``state`` is due (None: unknown)."""
        return binding.review_due(state, self.calendar)

    async def apply(
        self, cur: psycopg.AsyncCursor[object], event: Event, position: int
    ) -> None:
        """Fold ``event`` into the binding's stored state and rewrite its row."""
        previous: binding.Binding | None = None
        if not isinstance(event, binding.BindingRequested):
            await cur.execute(
                "SELECT state::text FROM bindings WHERE id = %s",
                (event.originator_id,),
            )
            row = await cur.fetchone()
            if row is None:
                raise LookupError(
                    f"bindings: {type(event).__name__} at position {position} "
                    f"for unknown binding {event.originator_id}"
                )
            previous = _decode_state(str(row[0]))  # type: ignore[index]
        state = binding.mutate(event, previous)
        assert state is not None
        await cur.execute(
            "INSERT INTO bindings (id, channel_account, platform, shop_id, status, "
            "requested_on, review_days_max, review_due_on, data_scope, "
            "failure_reasons, state, version, position, updated_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET "
            "status = EXCLUDED.status, requested_on = EXCLUDED.requested_on, "
            "review_days_max = EXCLUDED.review_days_max, "
            "review_due_on = EXCLUDED.review_due_on, "
            "data_scope = EXCLUDED.data_scope, "
            "failure_reasons = EXCLUDED.failure_reasons, state = EXCLUDED.state, "
            "version = EXCLUDED.version, position = EXCLUDED.position, "
            "updated_at = EXCLUDED.updated_at",
            (
                state.id,
                state.channel_account,
                state.platform,
                state.shop_id,
                state.status,
                state.requested_on,
                state.review_days_max,
                self.review_due_on(state),
                state.data_scope,
                failure_reasons(state),
                _encode(state).decode(),
                state.version,
                position,
                event.occurred_at,
            ),
        )
