"""Working days: review deadlines counted the way platforms count them.

Platforms promise reviews in working days (docs/domain.md §1: 1-3, 2-5,
instant). A working day is Monday to Friday, except public holidays, plus the
make-up working days (调休) that move a weekend day into the week. Both lists
are data: the State Council publishes them each year and they go into the
policy book.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import msgspec

#: China Standard Time: UTC+8 all year (no daylight saving), so a fixed offset.
CHINA_TIME = timezone(timedelta(hours=8), "CST")


class HolidayCalendar(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """Public holidays and make-up working days.

    Attributes:
        holidays: Days off that would otherwise be working days (weekend days
            in a holiday block may be listed too; they are off either way).
        makeup_workdays: Weekend days that are working days (调休).
        source: Where the dates come from (the State Council notices).
    """

    holidays: frozenset[date] = frozenset()
    makeup_workdays: frozenset[date] = frozenset()
    source: str = ""


#: No holidays: plain Monday-to-Friday weeks.
NO_HOLIDAYS = HolidayCalendar()


class CalendarError(ValueError):
    """A holiday calendar contradicts itself."""


def check_calendar(calendar: HolidayCalendar) -> None:
    """Refuse a calendar that lists a day as both a holiday and a working day.

    Raises:
        CalendarError: naming the first such day.
    """
    both = sorted(calendar.holidays & calendar.makeup_workdays)
    if both:
        raise CalendarError(
            f"{both[0].isoformat()} is both a holiday and a make-up working day"
        )


def is_working_day(day: date, calendar: HolidayCalendar) -> bool:
    """Whether ``day`` is a working day under ``calendar``."""
    if day in calendar.makeup_workdays:
        return True
    if day in calendar.holidays:
        return False
    return day.weekday() < 5


def add_working_days(start: date, n: int, calendar: HolidayCalendar) -> date:
    """The day on which the ``n``-th working day after ``start`` falls.

    ``start`` itself is not counted (a review requested on Friday with one
    working day is due the next working day); ``n == 0`` gives ``start``.

    Raises:
        ValueError: ``n`` is negative.
    """
    if n < 0:
        raise ValueError(f"working days {n} < 0")
    day = start
    remaining = n
    while remaining:
        day += timedelta(days=1)
        if is_working_day(day, calendar):
            remaining -= 1
    return day


def working_days_between(start: date, end: date, calendar: HolidayCalendar) -> int:
    """How many working days lie after ``start`` up to and including ``end``.

    Zero when ``end`` is not after ``start``.
    """
    count = 0
    day = start
    while day < end:
        day += timedelta(days=1)
        if is_working_day(day, calendar):
            count += 1
    return count


def review_due_on(
    requested_on: date, review_days_max: int, calendar: HolidayCalendar
) -> date:
    """The last day a review requested on ``requested_on`` may take."""
    return add_working_days(requested_on, review_days_max, calendar)


def is_overdue(
    requested_on: date, review_days_max: int, today: date, calendar: HolidayCalendar
) -> bool:
    """Whether a review requested on ``requested_on`` has run past its promise.

    It is overdue from the day after its due day (:func:`review_due_on`); an
    instant review (``review_days_max == 0``) is overdue from the next day.
    """
    return today > review_due_on(requested_on, review_days_max, calendar)


def china_date(moment: datetime) -> date:
    """The calendar day in China at ``moment`` (a naive ``moment`` is UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(CHINA_TIME).date()
