"""Working-day arithmetic with holidays and make-up working days (调休)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.calendar import (
    NO_HOLIDAYS,
    CalendarError,
    HolidayCalendar,
    add_working_days,
    check_calendar,
    china_date,
    is_overdue,
    is_working_day,
    review_due_on,
    working_days_between,
)
from hub.service.policies import load_policy_book

# Spring Festival 2025: 28 Jan - 4 Feb off, Sunday 26 Jan and Saturday 8 Feb worked.
SPRING_2025 = HolidayCalendar(
    holidays=frozenset(date(2025, 1, 28 + d) for d in range(4))
    | frozenset(date(2025, 2, d) for d in range(1, 5)),
    makeup_workdays=frozenset({date(2025, 1, 26), date(2025, 2, 8)}),
)


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2025, 1, 24), True),  # Friday
        (date(2025, 1, 25), False),  # Saturday
        (date(2025, 1, 26), True),  # Sunday, make-up working day
        (date(2025, 1, 27), True),  # Monday
        (date(2025, 1, 28), False),  # Tuesday, holiday
        (date(2025, 2, 8), True),  # Saturday, make-up working day
        (date(2025, 2, 9), False),  # Sunday
    ],
)
def test_working_days_follow_holidays_and_makeup_days(day: date, working: bool) -> None:
    assert is_working_day(day, SPRING_2025) is working


@pytest.mark.parametrize(
    ("start", "n", "due"),
    [
        (date(2025, 1, 24), 0, date(2025, 1, 24)),
        (date(2025, 1, 24), 1, date(2025, 1, 26)),  # the make-up Sunday counts
        (date(2025, 1, 24), 2, date(2025, 1, 27)),
        (date(2025, 1, 24), 3, date(2025, 2, 5)),  # the holiday block is skipped
        (date(2025, 2, 5), 3, date(2025, 2, 8)),  # Wed + 3 = make-up Saturday
        (date(2025, 2, 25), 5, date(2025, 3, 4)),  # an ordinary week
    ],
)
def test_add_working_days_skips_holidays_and_counts_makeup_days(
    start: date, n: int, due: date
) -> None:
    assert add_working_days(start, n, SPRING_2025) == due


def test_friday_plus_one_working_day_is_monday_without_holidays() -> None:
    assert add_working_days(date(2025, 3, 7), 1, NO_HOLIDAYS) == date(2025, 3, 10)


def test_negative_working_days_are_refused() -> None:
    with pytest.raises(ValueError, match="-1 < 0"):
        add_working_days(date(2025, 3, 7), -1, NO_HOLIDAYS)


def test_review_is_overdue_only_after_its_due_day() -> None:
    calendar = load_policy_book().holiday_calendar
    # Friday 26 Sep 2025, 3 working days: Sunday 28 Sep is worked (调休), then
    # Mon 29 and Tue 30; the National Day holiday starts on 1 Oct.
    requested = date(2025, 9, 26)
    assert review_due_on(requested, 3, calendar) == date(2025, 9, 30)
    assert not is_overdue(requested, 3, date(2025, 9, 30), calendar)
    assert is_overdue(requested, 3, date(2025, 10, 1), calendar)
    # The same request without the calendar would be due Wednesday 1 Oct.
    assert not is_overdue(requested, 3, date(2025, 10, 1), NO_HOLIDAYS)


def test_instant_review_is_overdue_from_the_next_day() -> None:
    requested = date(2025, 3, 7)
    assert not is_overdue(requested, 0, requested, NO_HOLIDAYS)
    assert is_overdue(requested, 0, date(2025, 3, 8), NO_HOLIDAYS)


def test_working_days_between_counts_after_start_up_to_end() -> None:
    assert working_days_between(date(2025, 1, 24), date(2025, 2, 5), SPRING_2025) == 3
    assert working_days_between(date(2025, 2, 5), date(2025, 2, 5), SPRING_2025) == 0
    assert working_days_between(date(2025, 2, 5), date(2025, 2, 1), SPRING_2025) == 0


@given(
    st.dates(min_value=date(2024, 1, 1), max_value=date(2027, 12, 31)),
    st.integers(min_value=0, max_value=40),
)
def test_adding_n_working_days_spans_exactly_n_working_days(
    start: date, n: int
) -> None:
    calendar = SPRING_2025
    due = add_working_days(start, n, calendar)
    assert working_days_between(start, due, calendar) == n
    assert n == 0 or is_working_day(due, calendar)


def test_a_day_both_off_and_worked_is_refused() -> None:
    with pytest.raises(CalendarError, match="2025-01-26 is both"):
        check_calendar(
            HolidayCalendar(
                holidays=frozenset({date(2025, 1, 26)}),
                makeup_workdays=frozenset({date(2025, 1, 26)}),
            )
        )


def test_china_date_is_utc_plus_eight() -> None:
    assert china_date(datetime(2025, 1, 1, 16, 30, tzinfo=UTC)) == date(2025, 1, 2)
    assert china_date(datetime(2025, 1, 1, 15, 59, tzinfo=UTC)) == date(2025, 1, 1)
    assert china_date(datetime(2025, 1, 1, 16, 30)) == date(2025, 1, 2)


def test_bundled_calendar_lists_the_2025_and_2026_notices() -> None:
    calendar = load_policy_book().holiday_calendar
    assert date(2025, 1, 29) in calendar.holidays  # Spring Festival 2025
    assert date(2026, 2, 17) in calendar.holidays  # Spring Festival 2026
    assert date(2026, 2, 14) in calendar.makeup_workdays
    assert all(day.weekday() >= 5 for day in calendar.makeup_workdays)
