"""Billing periods and proration: pure date arithmetic, no database and no clock.

Periods are laid on a grid computed on *local calendar dates* in the customer's time zone and only
then converted to UTC, so a monthly period always starts at local midnight whatever DST did in
between. Monthly, quarterly and yearly periods keep the anchor's day of month, clamped to the
month's length (anchor 31 → Jan 31, Feb 28/29, Mar 31), and are always computed from the anchor
(never from the previous period), so one short month never drifts the rest of the year.

Every boundary is also a 15-minute UTC boundary: usage rollups answer only such ranges, and every
UTC offset a time zone has used since 1980 is a multiple of 15 minutes. `check_quarter_hour` turns
the rare historical zone that breaks this into an error instead of a silently wrong usage window.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from fractions import Fraction
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from metering.errors import InvalidArgument

QUARTER_HOUR_S = 15 * 60
ProrationBasis = Literal["none", "day", "second"]


class Interval(StrEnum):
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    YEARLY = "yearly"

    @property
    def months(self) -> int:
        """Length in months (0 for weekly, which steps in days)."""
        return {"weekly": 0, "monthly": 1, "quarterly": 3, "yearly": 12}[self.value]


def zone(name: str) -> ZoneInfo:
    """A validated IANA zone; "UTC" spelled any standard way is accepted."""
    try:
        if len(name) > 64:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidArgument(f"unknown time zone {name[:64]!r}; use an IANA name such as Europe/Paris") from None


def utc(instant: datetime) -> datetime:
    """The instant in UTC; naive datetimes are refused because their meaning depends on a hidden zone."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise InvalidArgument(f"{instant.isoformat()} has no time zone; pass an aware datetime (e.g. ...Z)")
    return instant.astimezone(UTC)


def stored_utc(value: datetime) -> datetime:
    """An instant read back from the database: SQLite returns UTC as naive, PostgreSQL as aware."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def floor_quarter_hour(instant: datetime) -> datetime:
    """The quarter-hour containing `instant`: lifecycle changes take effect on the rollup grid."""
    i = utc(instant)
    seconds = (i.minute * 60 + i.second) // QUARTER_HOUR_S * QUARTER_HOUR_S
    return i.replace(minute=seconds // 60, second=0, microsecond=0)


def is_quarter_hour(instant: datetime) -> bool:
    i = utc(instant)
    return i.second == 0 and i.microsecond == 0 and i.minute % 15 == 0


def check_quarter_hour(instant: datetime, what: str) -> datetime:
    if not is_quarter_hour(instant):
        raise InvalidArgument(
            f"{what} {instant.isoformat()} is not on a 15-minute UTC boundary (the zone's offset at that date "
            "is not a multiple of 15 minutes); choose another time zone or a later date"
        )
    return utc(instant)


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of `day` in `tz`, in UTC.

    Where midnight does not exist (zones that spring forward at 00:00) `fold=0` reads it with the
    offset in force before the jump, which lands on the first real instant of the day (01:00); where
    midnight happens twice, `fold=0` is the first one. Either way the day starts exactly once.
    """
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def _add_months(anchor: date, months: int) -> date:
    """`anchor` moved by `months`, its day clamped to the target month's length."""
    total = anchor.year * 12 + (anchor.month - 1) + months
    year, month0 = divmod(total, 12)
    last = calendar.monthrange(year, month0 + 1)[1]
    return date(year, month0 + 1, min(anchor.day, last))


@dataclass(frozen=True, slots=True)
class Period:
    """Half-open [start, end) in UTC; `index` counts periods from the anchor (negative before it)."""

    start: datetime
    end: datetime
    index: int

    def contains(self, instant: datetime) -> bool:
        return self.start <= instant < self.end


@dataclass(frozen=True, slots=True)
class BillingCycle:
    """The period grid of one subscription: an anchor date, an interval and the customer's zone."""

    anchor: date
    interval: Interval
    tz: ZoneInfo

    @classmethod
    def from_instant(cls, anchor: datetime, interval: Interval | str, tz: ZoneInfo | str) -> BillingCycle:
        """The grid anchored on the local date of `anchor` (its time of day does not matter)."""
        zi = tz if isinstance(tz, ZoneInfo) else zone(tz)
        return cls(utc(anchor).astimezone(zi).date(), Interval(interval), zi)

    def start_date(self, index: int) -> date:
        if self.interval is Interval.WEEKLY:
            return self.anchor + timedelta(days=7 * index)
        return _add_months(self.anchor, index * self.interval.months)

    def boundary(self, index: int) -> datetime:
        return check_quarter_hour(local_midnight(self.start_date(index), self.tz), "period boundary")

    def period(self, index: int) -> Period:
        return Period(self.boundary(index), self.boundary(index + 1), index)

    def period_at(self, instant: datetime) -> Period:
        """The period containing `instant` (periods are half-open, so a boundary starts the next one)."""
        at = utc(instant)
        local = at.astimezone(self.tz).date()
        if self.interval is Interval.WEEKLY:
            index = (local - self.anchor).days // 7
        else:
            months = (local.year - self.anchor.year) * 12 + (local.month - self.anchor.month)
            index = months // self.interval.months
        # The estimate is off by at most one (clamped days, the hour around midnight); settle it exactly.
        while self.boundary(index) > at:
            index -= 1
        while self.boundary(index + 1) <= at:
            index += 1
        return self.period(index)

    def next(self, period: Period) -> Period:
        return self.period(period.index + 1)

    def periods(self, start: datetime, end: datetime) -> Iterator[Period]:
        """Every period that overlaps [start, end), in order."""
        s, e = utc(start), utc(end)
        if not s < e:
            return
        p = self.period_at(s)
        while p.start < e:
            yield p
            p = self.next(p)

    def fraction(self, period: Period, start: datetime, end: datetime, by: ProrationBasis) -> Fraction:
        """The share of `period` covered by [start, end) (clipped to the period); see `proration`."""
        return proration(period, start, end, by, self.tz)


def proration(period: Period, start: datetime, end: datetime, by: ProrationBasis, tz: ZoneInfo) -> Fraction:
    """Exact share of `period` used by the span [start, end), clipped to the period.

    By day, a span counts the local calendar days it touches at its start (start day included, end
    day excluded, the convention of `rating.flat`), so splitting a period at any instant gives
    shares that sum to exactly 1 and the customer never pays twice for the day of a change. By
    second, the span's seconds over the period's seconds (a DST month has 743 or 745 hours, and
    the fraction knows). `none` charges a touched period in full.
    """
    s, e = max(utc(start), period.start), min(utc(end), period.end)
    if not s < e:
        return Fraction(0)
    if by == "none":
        return Fraction(1)
    if by == "day":
        whole = (period.end.astimezone(tz).date() - period.start.astimezone(tz).date()).days
        used = (e.astimezone(tz).date() - s.astimezone(tz).date()).days
        return Fraction(used, whole)
    if by == "second":
        return Fraction(int((e - s).total_seconds()), int((period.end - period.start).total_seconds()))
    raise InvalidArgument(f"proration basis must be none, day or second, not {by!r}")


def split_fractions(
    period: Period, at: datetime, by: ProrationBasis, tz: ZoneInfo, start: datetime | None = None
) -> tuple[Fraction, Fraction]:
    """(before, after) shares of a period cut at `at`: an upgrade's old and new plan.

    With `start` (a subscription that began mid-period) the old plan's share starts there.
    """
    before = proration(period, start or period.start, at, by, tz)
    after = proration(period, at, period.end, by, tz)
    return before, after


__all__ = [
    "QUARTER_HOUR_S",
    "BillingCycle",
    "Interval",
    "Period",
    "ProrationBasis",
    "check_quarter_hour",
    "floor_quarter_hour",
    "is_quarter_hour",
    "local_midnight",
    "proration",
    "split_fractions",
    "stored_utc",
    "utc",
    "zone",
]
