"""Bindings: one row per binding with its status, review deadline and failures.

Each row also holds the binding's folded state, so an event is applied with the
domain's own :func:`domain.binding.mutate` (the status rules live in one place)
and the columns are read off the new state.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import ClassVar

import msgspec
import psycopg

from domain import binding
from domain.calendar import HolidayCalendar
from domain.events import Event
from projections.base import Projection, state_json, topics_of

_decode_state = msgspec.json.Decoder(binding.Binding).decode

#: Every binding event, by stable topic.
BINDING_TOPICS: tuple[str, ...] = topics_of(binding.BindingEvent)


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
                state_json(state),
                state.version,
                position,
                event.occurred_at,
            ),
        )


class BindingRow(msgspec.Struct, frozen=True, kw_only=True):
    """One row of the ``bindings`` table.

    Attributes:
        id: the binding's aggregate id.
        channel_account: the channel (视频号) account.
        platform: the platform code.
        shop_id: the shop's id on the platform.
        status: the binding's status.
        requested_on: the day (China time) it was last requested.
        review_due_on: the last day of the platform's review (None: unknown).
        data_scope: what the binding lets the hub pull.
        failure_reasons: why it is held up now (failed rules, mismatches,
            suspension).
        position: log position of the last event applied.
        state: the binding's whole folded state.
    """

    id: uuid.UUID
    channel_account: str
    platform: str
    shop_id: str
    status: str
    requested_on: date
    review_due_on: date | None
    data_scope: str | None
    failure_reasons: tuple[str, ...]
    position: int
    state: binding.Binding

    def is_overdue(self, today: date, calendar: HolidayCalendar) -> bool:
        """Whether the platform's review is still running past its promise."""
        return binding.review_overdue(self.state, today, calendar)


class BindingsView:
    """Reads of the ``bindings`` table.

    Args:
        database_url: PostgreSQL holding the table.
    """

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    async def all(self, *, platform: str | None = None) -> list[BindingRow]:
        """Every binding (of ``platform`` only, if given), by platform and keys."""
        query = (
            "SELECT id, channel_account, platform, shop_id, status, requested_on, "
            "review_due_on, data_scope, failure_reasons, position, state::text "
            "FROM bindings"
        )
        params: tuple[str, ...] = ()
        if platform is not None:
            query += " WHERE platform = %s"
            params = (platform,)
        query += " ORDER BY platform, channel_account, shop_id"
        async with await psycopg.AsyncConnection.connect(self.database_url) as conn:
            cur = await conn.execute(query, params)
            rows = await cur.fetchall()
        return [
            BindingRow(
                id=r[0],
                channel_account=r[1],
                platform=r[2],
                shop_id=r[3],
                status=r[4],
                requested_on=r[5],
                review_due_on=r[6],
                data_scope=r[7],
                failure_reasons=tuple(r[8]),
                position=int(r[9]),
                state=_decode_state(r[10]),
            )
            for r in rows
        ]
