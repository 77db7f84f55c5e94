"""Billing periods and proration, property-tested: tiling, the 15-minute grid, month ends, DST, exact fractions."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invoicing.catalog import (
    BillingCycle,
    Interval,
    floor_quarter_hour,
    is_quarter_hour,
    local_midnight,
    proration,
    split_fractions,
)
from metering.errors import InvalidArgument

ZONES = sorted(available_timezones() - {"Factory", "localtime"})
DST_ZONES = ["Europe/Paris", "America/New_York", "Australia/Lord_Howe", "America/Santiago", "Asia/Tehran",
             "Pacific/Chatham", "America/Havana", "Asia/Kathmandu", "America/St_Johns"]  # fmt: skip

zones = st.sampled_from(ZONES)
intervals = st.sampled_from(list(Interval))
anchors = st.dates(date(1990, 1, 1), date(2090, 12, 31))
instants = st.datetimes(datetime(1990, 1, 1), datetime(2095, 1, 1), timezones=st.just(UTC))


def cycle(anchor: date, interval: Interval, tz: str) -> BillingCycle:
    return BillingCycle(anchor, interval, ZoneInfo(tz))


@settings(max_examples=300, deadline=None)
@given(anchors, intervals, zones, st.integers(-30, 60))
def test_consecutive_periods_tile_on_the_quarter_hour_grid(anchor: date, interval: Interval, tz: str, k: int) -> None:
    c = cycle(anchor, interval, tz)
    p, q = c.period(k), c.period(k + 1)
    assert p.end == q.start  # no gap, no overlap
    assert p.start < p.end
    assert is_quarter_hour(p.start) and is_quarter_hour(p.end)
    assert c.next(p) == q


@settings(max_examples=300, deadline=None)
@given(anchors, intervals, zones, instants)
def test_period_at_contains_the_instant(anchor: date, interval: Interval, tz: str, at: datetime) -> None:
    c = cycle(anchor, interval, tz)
    p = c.period_at(at)
    assert p.start <= at < p.end
    assert c.period(p.index) == p


@settings(max_examples=200, deadline=None)
@given(anchors, st.sampled_from(DST_ZONES), st.integers(0, 40), intervals)
def test_boundaries_are_local_midnight_across_dst(anchor: date, tz: str, k: int, interval: Interval) -> None:
    zi = ZoneInfo(tz)
    p = cycle(anchor, interval, tz).period(k)
    local = p.start.astimezone(zi)
    # Midnight, or the first instant of the day where that zone skips midnight.
    assert local.time().minute == 0 and local.hour in (0, 1)
    # It is the start of that local day: one minute earlier is the day before.
    assert (p.start - timedelta(minutes=1)).astimezone(zi).date() == local.date() - timedelta(days=1)


def test_dst_month_lengths_in_paris() -> None:
    c = cycle(date(2026, 1, 1), Interval.MONTHLY, "Europe/Paris")
    march = c.period(2)
    assert march.start == datetime(2026, 2, 28, 23, tzinfo=UTC)
    assert march.end == datetime(2026, 3, 31, 22, tzinfo=UTC)  # CEST from Mar 29
    assert march.end - march.start == timedelta(days=31) - timedelta(hours=1)
    october = c.period(9)
    assert october.end - october.start == timedelta(days=31) + timedelta(hours=1)


def test_midnight_skipped_by_dst_starts_the_day_at_one() -> None:
    # Chile springs forward at 00:00 on 2026-09-06: the day starts at 01:00 local.
    zi = ZoneInfo("America/Santiago")
    start = local_midnight(date(2026, 9, 6), zi)
    assert start.astimezone(zi).hour == 1
    assert (start - timedelta(seconds=1)).astimezone(zi).date() == date(2026, 9, 5)


@pytest.mark.parametrize(
    ("anchor", "expected"),
    [
        (date(2026, 1, 31), [date(2026, 1, 31), date(2026, 2, 28), date(2026, 3, 31), date(2026, 4, 30)]),
        (date(2024, 1, 31), [date(2024, 1, 31), date(2024, 2, 29), date(2024, 3, 31), date(2024, 4, 30)]),
        (date(2026, 1, 30), [date(2026, 1, 30), date(2026, 2, 28), date(2026, 3, 30), date(2026, 4, 30)]),
    ],
)
def test_month_end_anchor_clamps_without_drifting(anchor: date, expected: list[date]) -> None:
    c = cycle(anchor, Interval.MONTHLY, "UTC")
    assert [c.start_date(k) for k in range(4)] == expected


def test_yearly_leap_day_anchor() -> None:
    c = cycle(date(2024, 2, 29), Interval.YEARLY, "UTC")
    assert [c.start_date(k) for k in range(5)] == [
        date(2024, 2, 29), date(2025, 2, 28), date(2026, 2, 28), date(2027, 2, 28), date(2028, 2, 29)
    ]  # fmt: skip
    assert cycle(date(2026, 1, 1), Interval.MONTHLY, "UTC").period(1).end - datetime(
        2026, 2, 1, tzinfo=UTC
    ) == timedelta(days=28)
    assert cycle(date(2024, 1, 1), Interval.MONTHLY, "UTC").period(1).end - datetime(
        2024, 2, 1, tzinfo=UTC
    ) == timedelta(days=29)


@settings(max_examples=200, deadline=None)
@given(anchors, st.sampled_from(list(Interval)), st.integers(0, 60))
def test_month_based_periods_keep_the_anchor_day(anchor: date, interval: Interval, k: int) -> None:
    c = cycle(anchor, interval, "UTC")
    d = c.start_date(k)
    if interval is Interval.WEEKLY:
        assert d.weekday() == anchor.weekday()
    else:
        assert d.day == anchor.day or (d.day < anchor.day and (d + timedelta(days=1)).day == 1)


@settings(max_examples=300, deadline=None)
@given(anchors, intervals, st.sampled_from([*DST_ZONES, "UTC"]), st.integers(0, 30), st.data())
def test_split_fractions_sum_to_exactly_one(
    anchor: date, interval: Interval, tz: str, k: int, data: st.DataObject
) -> None:
    c = cycle(anchor, interval, tz)
    p = c.period(k)
    seconds = int((p.end - p.start).total_seconds()) // 900
    cut = p.start + timedelta(seconds=900 * data.draw(st.integers(0, seconds)))
    for by in ("day", "second"):
        before, after = split_fractions(p, cut, by, c.tz)  # type: ignore[arg-type]
        assert isinstance(before, Fraction)
        assert before + after == 1
        assert 0 <= before <= 1


@settings(max_examples=200, deadline=None)
@given(anchors, intervals, st.integers(0, 30), st.lists(st.integers(0, 10**6), max_size=6))
def test_many_cuts_sum_to_one(anchor: date, interval: Interval, k: int, raw: list[int]) -> None:
    c = cycle(anchor, interval, "Europe/Paris")
    p = c.period(k)
    n = int((p.end - p.start).total_seconds()) // 900
    cuts = sorted({p.start, p.end, *(p.start + timedelta(seconds=900 * (r % (n + 1))) for r in raw)})
    for by in ("day", "second"):
        total = sum(proration(p, a, b, by, c.tz) for a, b in itertools.pairwise(cuts))  # type: ignore[arg-type]
        assert total == 1


def test_proration_examples() -> None:
    c = cycle(date(2026, 1, 1), Interval.MONTHLY, "UTC")
    feb = c.period(1)  # 28 days
    mid = datetime(2026, 2, 15, 12, tzinfo=UTC)
    assert split_fractions(feb, mid, "day", c.tz) == (Fraction(14, 28), Fraction(14, 28))
    assert split_fractions(feb, mid, "second", c.tz) == (
        Fraction(14 * 24 + 12, 28 * 24),
        Fraction(13 * 24 + 12, 28 * 24),
    )
    assert proration(feb, mid, mid, "day", c.tz) == 0
    assert proration(feb, feb.start - timedelta(days=5), feb.end + timedelta(days=5), "second", c.tz) == 1
    assert proration(feb, mid, feb.end, "none", c.tz) == 1
    # Leap February: 29 days.
    c24 = cycle(date(2024, 1, 1), Interval.MONTHLY, "UTC")
    assert proration(c24.period(1), datetime(2024, 2, 15, tzinfo=UTC), c24.period(1).end, "day", c24.tz) == Fraction(
        15, 29
    )


def test_floor_and_naive_instants() -> None:
    assert floor_quarter_hour(datetime(2026, 1, 1, 10, 44, 59, 999, tzinfo=UTC)) == datetime(
        2026, 1, 1, 10, 30, tzinfo=UTC
    )
    with pytest.raises(InvalidArgument, match="no time zone"):
        floor_quarter_hour(datetime(2026, 1, 1))
    with pytest.raises(InvalidArgument, match="unknown time zone"):
        BillingCycle.from_instant(datetime(2026, 1, 1, tzinfo=UTC), "monthly", "Mars/Olympus")


def test_periods_between_lists_every_overlapping_period() -> None:
    c = cycle(date(2026, 1, 15), Interval.MONTHLY, "UTC")
    ps = list(c.periods(datetime(2026, 1, 20, tzinfo=UTC), datetime(2026, 4, 15, tzinfo=UTC)))
    assert [p.start.date() for p in ps] == [date(2026, 1, 15), date(2026, 2, 15), date(2026, 3, 15)]
    assert list(c.periods(datetime(2026, 4, 15, tzinfo=UTC), datetime(2026, 4, 15, tzinfo=UTC))) == []
