"""Usage queries cost what they return, not what their range spans; too much is refused, naming the limit.

Windows are found by stepping from one boundary to the next (never bucket by bucket), so a gauge held
since 1970 answers for two centuries at once; a query over more windows, rows or rollup rows than its
limits is refused before it reads; and the work stops at the request's deadline or cancellation.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine

from metering.deadline import Budget, bounded
from metering.errors import Cancelled, DeadlineExceeded, InvalidArgument
from metering.event import PreparedBatch
from metering.meter import Aggregation, MeterDefinition, TimeUnit, create_meter, get_meter
from metering.rollup import BUCKET_US
from metering.store import open_store
from metering.usage import EPOCH, Window, period_columns, to_us, usage, windows_of
from tests.conftest import TenantKey

Event = tuple[str, str, str, datetime, int, dict[str, str] | None]  # id, customer, meter, time, units, properties


def write(engine: Engine, tid: int, rows: list[Event]) -> None:
    specs = {code: get_meter(engine, tid, code).spec for code in {r[2] for r in rows}}
    n = len(rows)
    store = open_store(engine)
    store.write([PreparedBatch(
        tid, "b", n, False, list(range(n)), [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
        [to_us(r[3]) for r in rows], [r[4] for r in rows], [specs[r[2]].value_scale for r in rows],
        [None if r[5] is None else json.dumps(r[5]) for r in rows], specs=specs,
    )])  # fmt: skip
    store.close()


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def days(a: datetime, b: datetime) -> int:
    return (b - a).days


def seats(engine: Engine, tid: int, code: str = "seats", group_by: tuple[str, ...] = ()) -> None:
    create_meter(engine, tid, MeterDefinition(
        code=code, aggregation=Aggregation.GAUGE, time_unit=TimeUnit.DAY, group_by=list(group_by),
    ))  # fmt: skip


# --- (a) centuries: the cost follows the windows, not the range ------------------------------------------------


def test_gauge_over_centuries_answers_at_once_and_exactly(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    seats(engine, tid)
    write(engine, tid, [("s1", "c1", "seats", EPOCH, 3, None), ("s2", "c1", "seats", utc(2000, 1, 1), 5, None)])
    start, y2000, end = EPOCH, utc(2000, 1, 1), utc(2200, 1, 1)  # 8.06 million buckets
    began = time.perf_counter()
    (whole,) = usage(engine, tid, "c1", "seats", start, end)
    assert time.perf_counter() - began < 0.5
    assert (whole.quantity, whole.events) == (Decimal(3 * days(start, y2000) + 5 * days(y2000, end)), 2)
    (carried,) = usage(engine, tid, "c1", "seats", utc(1971, 1, 1), end)  # 3 seats carried in from 1970
    assert (carried.quantity, carried.events) == (Decimal(3 * days(utc(1971, 1, 1), y2000) + 5 * days(y2000, end)), 1)
    (held,) = usage(engine, tid, "c1", "seats", utc(2001, 1, 1), end)  # no reading at all in the range
    assert (held.quantity, held.events) == (Decimal(5 * days(utc(2001, 1, 1), end)), 0)

    began = time.perf_counter()
    months = usage(engine, tid, "c1", "seats", start, end, window=Window.MONTH, tz="Europe/Paris")
    assert time.perf_counter() - began < 2
    assert len(months) == 230 * 12 + 1  # local months: the range ends at 01:00 on January 1 2200
    by_month = {(r.window_start.year, r.window_start.month): r for r in months if r.window_start}
    assert by_month[(1970, 2)].quantity == 3 * 28
    # Local January 2000 starts at 23:00 UTC: 3 seats for an hour, then 5 (rounded once to 6 digits).
    assert (by_month[(2000, 1)].quantity, by_month[(2000, 1)].events) == (Decimal("154.916667"), 1)
    assert by_month[(2100, 2)].quantity == 5 * 28  # 2100 is not a leap year
    assert by_month[(2199, 12)].window_start == datetime(2199, 12, 1, tzinfo=ZoneInfo("Europe/Paris"))
    # The first local month starts with the range (01:00 local), the last is the range's final hour.
    assert months[0].quantity == Decimal(3 * 31) - Decimal("0.125")
    assert (months[-2].quantity, months[-1].quantity) == (Decimal(5 * 31), Decimal("0.208333"))
    assert sum(r.quantity for r in months) == whole.quantity


# --- (b) windows: refused up front, naming the limit -----------------------------------------------------------


def test_hourly_windows_over_centuries_are_refused_at_once(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    seats(engine, tid)
    began = time.perf_counter()
    with pytest.raises(InvalidArgument) as caught:
        usage(engine, tid, "c1", "seats", EPOCH, utc(2200, 1, 1), window=Window.HOUR)
    assert time.perf_counter() - began < 0.1
    message = str(caught.value)
    assert "about 2,016," in message and "hourly windows" in message  # 230 years of hours
    assert "the limit is usage_windows_max=10000: narrow the range or use a longer window" in message


def test_the_window_limit_is_exact(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    create_meter(engine, tid, MeterDefinition(code="calls", aggregation=Aggregation.COUNT))
    write(engine, tid, [("e1", "c1", "calls", utc(2026, 1, 1, 5), 1, None)])
    start = utc(2026, 1, 1)
    rows = usage(engine, tid, "c1", "calls", start, start + timedelta(hours=100), window=Window.HOUR, windows_max=100)
    assert [(r.window_start, r.events) for r in rows] == [(utc(2026, 1, 1, 5), 1)]
    with pytest.raises(InvalidArgument, match=r"would return 101 hourly windows; the limit is usage_windows_max=100"):
        usage(engine, tid, "c1", "calls", start, start + timedelta(hours=101), window=Window.HOUR, windows_max=100)
    days_ = usage(engine, tid, "c1", "calls", start, start + timedelta(days=3), window=Window.DAY, windows_max=3)
    assert len(days_) == 1
    with pytest.raises(InvalidArgument, match=r"4 daily windows; the limit is usage_windows_max=3"):  # Paris: 4 days
        usage(engine, tid, "c1", "calls", start, start + timedelta(days=3), window=Window.DAY, tz="Europe/Paris",
              windows_max=3)  # fmt: skip
    with pytest.raises(InvalidArgument, match=r"monthly windows; the limit is usage_windows_max=2: narrow the range$"):
        usage(engine, tid, "c1", "calls", start, utc(2026, 6, 1), window=Window.MONTH, windows_max=2)


# Zones with a DST fall back inside an hour label, a 30-minute shift, 45-minute offsets, a fall back at
# midnight and a skipped calendar day: windows found by stepping equal labelling every bucket.
ZONES = [
    ("Europe/Paris", utc(2026, 10, 20)),
    ("Europe/Paris", utc(2026, 3, 25)),
    ("Australia/Lord_Howe", utc(2026, 4, 1)),
    ("Australia/Lord_Howe", utc(2026, 10, 1)),
    ("Asia/Kathmandu", utc(2026, 1, 1)),
    ("Pacific/Chatham", utc(2026, 4, 1)),
    ("America/Sao_Paulo", utc(2016, 2, 15)),
    ("America/Sao_Paulo", utc(2016, 10, 12)),
    ("Pacific/Apia", utc(2011, 12, 25)),
    ("America/St_Johns", utc(2026, 10, 28)),
    ("Africa/Casablanca", utc(2026, 2, 10)),
]


@pytest.mark.parametrize(("tz", "around"), ZONES)
@pytest.mark.parametrize("window", list(Window))
def test_windows_equal_labelling_every_bucket(tz: str, around: datetime, window: Window) -> None:
    zone = ZoneInfo(tz)
    length = timedelta(days=70 if window is Window.MONTH else 12)
    for offset in (timedelta(0), timedelta(hours=13, minutes=15), timedelta(minutes=45)):
        start_us, end_us = to_us(around + offset), to_us(around + offset + length)
        expected: list[tuple[datetime, int, int]] = []
        for b in range(start_us, end_us, BUCKET_US):
            label = window.truncate((EPOCH + timedelta(microseconds=b)).astimezone(zone))
            if expected and expected[-1][0] == label:
                expected[-1] = (expected[-1][0], expected[-1][1], b + BUCKET_US)
            else:
                expected.append((label, b, b + BUCKET_US))
        got = windows_of(window, zone, start_us, end_us)
        assert [(w[0], w[0].utcoffset(), w[1], w[2]) for w in got] == [  # type: ignore[union-attr]
            (w[0], w[0].utcoffset(), w[1], w[2]) for w in expected
        ]


# --- rows read and rows returned -------------------------------------------------------------------------------


def test_rollup_rows_beyond_the_limit_are_refused_before_reading(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    create_meter(engine, tid, MeterDefinition(code="gpu", aggregation=Aggregation.SUM, group_by=["region"]))
    create_meter(engine, tid, MeterDefinition(code="calls", aggregation=Aggregation.COUNT))
    start, end = utc(2026, 1, 1), utc(2027, 1, 1)
    write(engine, tid, [
        *[(f"g{i}{r}", "c1", "gpu", start + timedelta(hours=i), 1, {"region": r}) for i in range(3) for r in "ab"],
        *[(f"c{i}", "c1", "calls", start + timedelta(hours=i), 1, None) for i in range(5)],
    ])  # fmt: skip
    (row,) = usage(engine, tid, "c1", "gpu", start, end, buckets_max=6)
    assert (row.quantity, row.events) == (Decimal(6), 6)
    with pytest.raises(InvalidArgument) as caught:
        usage(engine, tid, "c1", "gpu", start, end, buckets_max=5)
    assert "would read more than 5 rollup rows" in str(caught.value)
    assert "the limit is usage_buckets_max=5: narrow the range" in str(caught.value)
    # One series: the range's buckets bound its rows, beyond the limit they are counted too.
    assert usage(engine, tid, "c1", "calls", start, end, buckets_max=5)[0].events == 5
    with pytest.raises(InvalidArgument, match="usage_buckets_max=4"):
        usage(engine, tid, "c1", "calls", start, end, buckets_max=4)


def test_gauge_integrals_count_windows_times_series(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    seats(engine, tid, group_by=("region",))
    write(engine, tid, [(f"s{r}", "c1", "seats", utc(2025, 1, 1), 2, {"region": r}) for r in ("eu", "us", "ap")])
    start = utc(2026, 1, 1)
    rows = usage(engine, tid, "c1", "seats", start, start + timedelta(days=10), window=Window.DAY, buckets_max=30)
    assert [(r.quantity, r.events) for r in rows] == [(Decimal(6), 0)] * 10  # three series of 2 seats, every day
    with pytest.raises(InvalidArgument) as caught:
        usage(engine, tid, "c1", "seats", start, start + timedelta(days=10), window=Window.DAY, buckets_max=29)
    assert "30 gauge window integrals (windows × dimension values)" in str(caught.value)
    assert "usage_buckets_max=29: narrow the range or use a longer window" in str(caught.value)


def test_rows_returned_are_bounded_by_the_window_limit(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    seats(engine, tid, group_by=("region",))
    create_meter(engine, tid, MeterDefinition(code="gpu", aggregation=Aggregation.SUM, group_by=["region"]))
    start = utc(2026, 1, 1)
    regions = ("eu", "us", "ap")
    write(engine, tid, [
        *[(f"s{r}", "c1", "seats", utc(2025, 1, 1), 2, {"region": r}) for r in regions],
        *[(f"g{d}{r}", "c1", "gpu", start + timedelta(days=d), 1, {"region": r}) for d in range(4) for r in regions],
    ])  # fmt: skip
    for code in ("seats", "gpu"):
        rows = usage(engine, tid, "c1", code, start, start + timedelta(days=4), window=Window.DAY, group_by=True,
                     windows_max=12)  # fmt: skip
        assert len(rows) == 12 and {r.group["region"] for r in rows} == set(regions)
        with pytest.raises(InvalidArgument) as caught:
            usage(engine, tid, "c1", code, start, start + timedelta(days=4), window=Window.DAY, group_by=True,
                  windows_max=11)  # fmt: skip
        assert "would return more than 11 rows (windows × dimension values); the limit is usage_windows_max=11" in str(
            caught.value
        )
        assert str(caught.value).endswith("narrow the range or use a longer window, or leave out group_by")
        assert len(usage(engine, tid, "c1", code, start, start + timedelta(days=4), window=Window.DAY,
                         windows_max=11)) == 4  # fmt: skip


# --- deadlines and cancellation --------------------------------------------------------------------------------


def many_series(engine: Engine, tid: int, n: int) -> tuple[datetime, datetime]:
    """A gauge with `n` series carried into 10,000 hours: 10,000 x n window integrals to compute."""
    seats(engine, tid, group_by=("region",))
    write(engine, tid, [(f"s{i}", "c1", "seats", utc(2025, 1, 1), i + 1, {"region": f"r{i}"}) for i in range(n)])
    start = utc(2026, 1, 1)
    return start, start + timedelta(hours=10_000)


def test_a_deadline_stops_the_work(engine: Engine, tenant: TenantKey) -> None:
    start, end = many_series(engine, tenant.tenant_id, 200)  # about a second of work unbounded
    began = time.perf_counter()
    with bounded(Budget(0.15)), pytest.raises(DeadlineExceeded, match="s budget and was stopped"):
        usage(engine, tenant.tenant_id, "c1", "seats", start, end, window=Window.HOUR, buckets_max=10**9)
    assert time.perf_counter() - began < 0.5


def test_cancellation_stops_the_work(engine: Engine, tenant: TenantKey) -> None:
    start, end = many_series(engine, tenant.tenant_id, 200)
    budget = Budget(None)
    threading.Timer(0.15, budget.cancel).start()
    began = time.perf_counter()
    with bounded(budget), pytest.raises(Cancelled):
        usage(engine, tenant.tenant_id, "c1", "seats", start, end, window=Window.HOUR, buckets_max=10**9)
    assert time.perf_counter() - began < 0.5


def test_the_period_extract_checks_the_budget(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    seats(engine, tid)
    write(engine, tid, [("s1", "c1", "seats", utc(2025, 1, 1), 2, None)])
    start, end = utc(2026, 1, 1), utc(2026, 2, 1)
    assert len(period_columns(engine, tid, start, end)) == 1
    spent = Budget(0.0)
    time.sleep(0.001)
    with bounded(spent), pytest.raises(DeadlineExceeded):
        period_columns(engine, tid, start, end)
    with bounded(spent), pytest.raises(DeadlineExceeded):
        usage(engine, tid, "c1", "seats", start, end)
