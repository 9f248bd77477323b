"""The day every daily figure is counted in: the UTC calendar day. The panel sync dates traffic (usage_daily, the
source of "used the VPN that day") in UTC, so every other daily figure uses the same boundaries, or DAU by app
and DAU by VPN would count different days."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from app.kit.clock import ensure_utc

# MAU: distinct customers over the 30 days ending with the day (that day and the 29 before it).
MAU_DAYS = 30


def day_of(moment: datetime) -> date:
    return ensure_utc(moment).date()


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Span:
    """A half-open interval [start, end) of instants."""

    start: datetime
    end: datetime

    @classmethod
    def of_day(cls, day: date) -> Span:
        return cls(day_start(day), day_start(day + timedelta(days=1)))

    @classmethod
    def of_days(cls, first: date, last: date) -> Span:
        """From the start of `first` to the end of `last`."""
        return cls(day_start(first), day_start(last + timedelta(days=1)))


def mau_window(day: date) -> tuple[date, date]:
    """The first and last day of the MAU window ending with `day`."""
    return day - timedelta(days=MAU_DAYS - 1), day


def month_start(day: date) -> date:
    return day.replace(day=1)


def add_months(day: date, months: int) -> date:
    """The first day of the month `months` after (or before) `day`'s."""
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)
