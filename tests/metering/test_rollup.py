"""Rollups equal raw events, to the last digit, on SQLite and PostgreSQL (hypothesis)."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, select

from metering.errors import FailedPrecondition, InvalidArgument
from metering.event import PreparedBatch
from metering.fold import catch_up
from metering.meter import (
    GAUGE_EXTRA_SCALE,
    Aggregation,
    MeterDefinition,
    MeterUpdate,
    TimeUnit,
    create_meter,
    get_meter,
    update_meter,
)
from metering.rollup import BUCKET_US, rebuild
from metering.store import open_store
from metering.tables import events, gauge_points, rollup_values, rollups, rollups_day
from metering.usage import Window, period_columns, usage
from tests.conftest import TenantKey

T0 = datetime(2026, 3, 28, tzinfo=UTC)  # the weekend Europe switches to summer time
T0_US = int(T0.timestamp()) * 1_000_000
SPAN_US = 3 * 86_400_000_000
DAY = 86_400_000_000
METERS = {
    "calls": MeterDefinition(code="calls", aggregation=Aggregation.COUNT),
    "spend": MeterDefinition(code="spend", aggregation=Aggregation.SUM, value_scale=3),
    "peak": MeterDefinition(code="peak", aggregation=Aggregation.MAX, value_scale=1),
    "floor": MeterDefinition(code="floor", aggregation=Aggregation.MIN),
    "seats": MeterDefinition(code="seats", aggregation=Aggregation.LATEST),
    "gpu": MeterDefinition(
        code="gpu", aggregation=Aggregation.SUM, group_by=["region"], filter={"tier": ["paid", "trial"]}
    ),
    "users": MeterDefinition(code="users", aggregation=Aggregation.UNIQUE_COUNT, unique_property="user"),
    "storage": MeterDefinition(
        code="storage", aggregation=Aggregation.GAUGE, value_scale=2, time_unit=TimeUnit.HOUR, group_by=["region"]
    ),
}


@pytest.fixture
def metered(engine: Engine, tenant: TenantKey) -> TenantKey:
    for definition in METERS.values():
        create_meter(engine, tenant.tenant_id, definition)
    return tenant


@st.composite
def event_sets(draw: st.DrawFn) -> list[tuple[str, str, str, int, int, str | None]]:
    """(event_id, customer, meter, ts_us, units, properties) with repeats and any order."""
    n = draw(st.integers(1, 60))
    out = []
    for i in range(n):
        meter = draw(st.sampled_from(sorted(METERS)))
        props = None
        units = draw(st.one_of(st.integers(-(10**6), 10**6), st.integers(-(2**50), 2**50)))
        if meter == "users" and draw(st.booleans()):
            props = json.dumps({"user": draw(st.sampled_from(["u1", "u2", "u3", "ü"]))})
        if meter == "storage":
            units = draw(st.integers(-(10**6), 10**6))  # a reading times 15 minutes of us must fit 64 bits
            props = json.dumps({"region": draw(st.sampled_from(["eu", "us"]))})
        if meter == "gpu":
            p = {
                "region": draw(st.sampled_from(["eu", "us"])),
                "tier": draw(st.sampled_from(["paid", "trial", "free"])),
            }
            props = json.dumps(p, sort_keys=True, separators=(",", ":"))
        ev = (
            f"e{i}",
            draw(st.sampled_from(["c1", "c2"])),
            meter,
            T0_US + draw(st.integers(0, SPAN_US - 1)),
            units,
            props,
        )
        out.append(ev)
        if draw(st.integers(0, 4)) == 0:
            out.append(ev)  # a retry of the same event
    return out


def as_batches(tenant_id: int, evs: list[tuple[str, str, str, int, int, str | None]], cuts: list[int],
               specs: dict) -> list[PreparedBatch]:  # fmt: skip
    bounds = sorted({0, len(evs), *[c % (len(evs) + 1) for c in cuts]})
    batches = []
    for a, b in itertools.pairwise(bounds):
        part = evs[a:b]
        n = len(part)
        batches.append(PreparedBatch(
            tenant_id, "b", n, False, list(range(n)), [e[0] for e in part], [e[1] for e in part],
            [e[2] for e in part], [e[3] for e in part], [e[4] for e in part],
            [METERS[e[2]].value_scale for e in part], [e[5] for e in part], specs=specs,
        ))  # fmt: skip
    return batches


def raw_quantity(engine: Engine, tenant_id: int, meter: str, customer: str, start_us: int, end_us: int,
                 group: dict[str, str] | None = None) -> Decimal | None:  # fmt: skip
    """The specification: the meter's aggregation computed straight from stored raw events."""
    d = METERS[meter]
    with engine.connect() as conn:
        every = conn.execute(
            select(events).where(events.c.tenant_id == tenant_id, events.c.meter == meter,
                                 events.c.customer == customer)
        ).all()  # fmt: skip
    if d.aggregation is Aggregation.GAUGE:
        return raw_gauge(d, every, start_us, end_us, group)
    rows = [r for r in every if start_us <= r.ts_us < end_us]
    chosen = []
    for r in rows:
        props = json.loads(r.properties) if r.properties else {}
        if any(props.get(k) not in v for k, v in d.filter.items()):
            continue
        if group is not None and any(props.get(k, "") != v for k, v in group.items()):
            continue
        chosen.append(r)
    if not chosen:
        return None
    values = [Decimal(r.value_units).scaleb(-r.value_scale) for r in chosen]
    if d.aggregation is Aggregation.COUNT:
        return Decimal(len(chosen))
    if d.aggregation is Aggregation.SUM:
        return sum(values, Decimal(0))
    if d.aggregation is Aggregation.MAX:
        return max(values)
    if d.aggregation is Aggregation.MIN:
        return min(values)
    if d.aggregation is Aggregation.UNIQUE_COUNT:
        return Decimal(len({json.loads(r.properties)["user"] for r in chosen if r.properties}))
    last = max(chosen, key=lambda r: (r.ts_us, r.event_id))
    return Decimal(last.value_units).scaleb(-last.value_scale)


def raw_gauge(d: MeterDefinition, every: list, start_us: int, end_us: int,
              group: dict[str, str] | None) -> Decimal | None:  # fmt: skip
    """Each group's readings as a step function, integrated straight over [start, end), then summed."""
    series: dict[str, list[tuple[int, str, int]]] = {}
    for r in every:
        region = json.loads(r.properties)["region"]
        if group is None or group == {"region": region}:
            series.setdefault(region, []).append((r.ts_us, r.event_id, r.value_units))
    total, seen = 0, False
    for points in series.values():
        value, cursor, part = 0, start_us, 0
        for t, _, units in sorted(points):
            if t >= end_us:
                break
            if t >= start_us:
                part += value * (t - cursor)
                cursor, seen = t, True
            value = units
        part += value * (end_us - cursor)
        seen = seen or part != 0  # a series held at a non-zero value is usage even if others cancel it out
        total += part
    if not seen:
        return None
    assert d.time_unit is not None
    units = round(Fraction(total * 10**GAUGE_EXTRA_SCALE, d.time_unit.microseconds))  # Fraction rounds half-even
    return Decimal(units).scaleb(-(d.value_scale + GAUGE_EXTRA_SCALE))


def at(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(evs=event_sets(), cuts=st.lists(st.integers(0, 200), max_size=4),
       window=st.tuples(st.integers(0, 287), st.integers(1, 288)))  # fmt: skip
@example(
    evs=[("e0", "c1", "spend", T0_US + DAY - 1, 5, None), ("e1", "c1", "spend", T0_US + DAY, 7, None)],
    cuts=[],
    window=(95, 2),
)  # both edges of a midnight, no whole day
@example(
    evs=[
        ("e0", "c1", "calls", T0_US + 90 * BUCKET_US, 1, None),
        ("e1", "c1", "calls", T0_US + DAY, 1, None),
        ("e2", "c1", "calls", T0_US + 2 * DAY + BUCKET_US, 1, None),
        ("e3", "c1", "calls", T0_US + 2 * DAY + 40 * BUCKET_US, 1, None),
    ],
    cuts=[1],
    window=(90, 120),
)  # a whole day between two partial ones; e3 is after the end
def test_rollups_equal_raw_events(engine: Engine, metered: TenantKey, evs: list, cuts: list[int],
                                  window: tuple[int, int]) -> None:  # fmt: skip
    tid = metered.tenant_id
    with engine.begin() as conn:  # hypothesis reuses the database between examples
        for table in (events, rollups, rollups_day, rollup_values, gauge_points):
            conn.execute(delete(table))
    specs = {code: get_meter(engine, tid, code).spec for code in METERS}
    store = open_store(engine)
    for batch in as_batches(tid, evs, cuts, specs):
        store.write([batch])
    store.write(as_batches(tid, list(reversed(evs)), [], specs))  # everything again: all duplicates
    store.close()
    start_us = T0_US + window[0] * BUCKET_US
    end_us = min(T0_US + SPAN_US, start_us + window[1] * BUCKET_US)
    for meter in METERS:
        for customer in ("c1", "c2"):
            got = usage(engine, tid, customer, meter, at(start_us), at(end_us))
            expected = raw_quantity(engine, tid, meter, customer, start_us, end_us)
            assert (got[0].quantity if got else None) == expected, (meter, customer)
            if meter in ("gpu", "storage"):
                for row in usage(engine, tid, customer, meter, at(start_us), at(end_us), group_by=True):
                    assert row.quantity == raw_quantity(engine, tid, meter, customer, start_us, end_us, row.group)
    # Whole days (read from the day tier once folded), and the drawn window: partial days at its edges from
    # the buckets; before the fold (read through the watermark) and after.
    for lo, hi, fold in ((T0_US, T0_US + SPAN_US, False), (start_us, end_us, False), (T0_US, T0_US + SPAN_US, True),
                         (start_us, end_us, False)):  # fmt: skip
        if fold:
            catch_up(engine)
        cols = period_columns(engine, tid, at(lo), at(hi))
        for i in range(len(cols)):
            group = json.loads(cols.group_keys[i]) if cols.group_keys[i] else None
            expected = raw_quantity(engine, tid, cols.meters[i], cols.customers[i], lo, hi, group)
            assert Decimal(int(cols.units[i])).scaleb(-int(cols.scales[i])) == expected
    for meter in METERS:
        assert rebuild(engine, tid, meter, specs[meter]).mismatched_before == 0


def test_daily_windows_in_a_time_zone_across_dst(engine: Engine, metered: TenantKey) -> None:
    """Paris days around the spring-forward night: 23-hour day counted on local midnights."""
    tid = metered.tenant_id
    specs = {"calls": get_meter(engine, tid, "calls").spec}
    # One event every 15 minutes from 2026-03-28 00:00 to 2026-03-31 00:00 UTC.
    stamps = list(range(T0_US, T0_US + SPAN_US, BUCKET_US))
    n = len(stamps)
    store = open_store(engine)
    store.write([PreparedBatch(tid, "b", n, False, list(range(n)), [f"d{i}" for i in range(n)], ["c1"] * n,
                               ["calls"] * n, stamps, [1] * n, [0] * n, [None] * n, specs=specs)])  # fmt: skip
    store.close()
    rows = usage(engine, tid, "c1", "calls", T0, T0 + timedelta(days=3), window=Window.DAY, tz="Europe/Paris")
    by_day = {r.window_start.date().isoformat(): r.quantity for r in rows if r.window_start}
    # 28th from 01:00 local (00:00 UTC) = 23 h; 29th is the 23-hour DST day; 30th is 24 h; 31st 01:00 local.
    assert by_day == {"2026-03-28": 92, "2026-03-29": 92, "2026-03-30": 96, "2026-03-31": 8}


def test_ranges_must_fall_on_buckets_and_meters_keep_their_meaning(engine: Engine, metered: TenantKey) -> None:
    tid = metered.tenant_id
    with pytest.raises(InvalidArgument, match="15-minute"):
        usage(engine, tid, "c1", "calls", T0 + timedelta(minutes=5), T0 + timedelta(hours=1))
    with pytest.raises(InvalidArgument, match="time zone"):
        usage(engine, tid, "c1", "calls", T0, T0 + timedelta(hours=1), window=Window.DAY, tz="Mars/Olympus")
    # No events yet: the meaning may still change.
    assert update_meter(engine, tid, "peak", MeterUpdate(value_scale=2)).value_scale == 2
    specs = {"peak": get_meter(engine, tid, "peak").spec}
    store = open_store(engine)
    store.write([PreparedBatch(tid, "b", 1, False, [0], ["p1"], ["c1"], ["peak"], [T0_US], [5], [2], [None],
                               specs=specs)])  # fmt: skip
    store.close()
    with pytest.raises(FailedPrecondition, match="peak_v2"):
        update_meter(engine, tid, "peak", MeterUpdate(aggregation=Aggregation.SUM))
    assert update_meter(engine, tid, "peak", MeterUpdate(name="Peak usage", unit="GB")).unit == "GB"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "ü", "c" * 40]),
            st.integers(0, SPAN_US),
            st.integers(-(2**40), 2**40),
            st.sampled_from(["x", "y", "z", "é"]),
        ),
        min_size=64,
        max_size=300,
    ),
    st.booleans(),
)
def test_vectorised_partials_equal_the_plain_loop(rows: list[tuple[str, int, int, str]], subset: bool) -> None:
    """The numpy path (one plain meter, 64+ events) and the per-event loop fold identically."""
    from metering.meter import MeterSpec
    from metering.rollup import partials

    n = len(rows)
    ids = [f"{suffix}{i}" for i, (_, _, _, suffix) in enumerate(rows)]
    batch = PreparedBatch(
        1, "b", n, False, range(n), ids, [r[0] for r in rows], ["m"] * n, [T0_US + r[1] for r in rows],
        [r[2] for r in rows], [3] * n, [None] * n,
    )  # fmt: skip
    specs = {"m": MeterSpec(Aggregation.SUM, 3)}
    positions = [*list(range(0, n, 2)), 1] if subset else range(n)
    fast: dict = {}
    partials(batch, positions, specs, fast)
    slow: dict = {}
    partials(batch, iter(list(positions)), specs, slow)  # an iterator never takes the numpy path
    assert fast == slow


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "ü"]),
            st.sampled_from([0, 1, BUCKET_US - 1, BUCKET_US]),  # few timestamps: ties at a bucket's end
            st.integers(-(2**40), 2**40),
            st.sampled_from(["m", "n"]),
        ),
        max_size=200,
    ),
    st.lists(st.integers(1, 120), min_size=1, max_size=6),
    st.booleans(),
)
def test_partials_over_many_batches_equal_one_batch_at_a_time(
    rows: list[tuple[str, int, int, str]], cuts: list[int], subset: bool
) -> None:
    """The fold's concatenated pass (`partials_many`) and batch-by-batch `partials` give the same buckets,
    whatever the batch sizes (above and below the vectorised path's minimum), meters and timestamp ties."""
    from metering.meter import MeterSpec
    from metering.rollup import partials, partials_many

    specs = {"m": MeterSpec(Aggregation.SUM, 3), "n": MeterSpec(Aggregation.MAX, 3)}
    parts: list[tuple[PreparedBatch, Any]] = []
    at = 0
    for b, size in enumerate(cuts * 3):
        chunk = rows[at : at + size]
        at += size
        if not chunk:
            break
        n = len(chunk)
        single = chunk[0][3] if b % 2 else None  # odd batches carry one meter: the vectorised path
        batch = PreparedBatch(
            1, f"b{b}", n, False, range(n), [f"e{b}-{i}" for i in range(n)], [r[0] for r in chunk],
            [single or r[3] for r in chunk], [T0_US + r[1] for r in chunk], [r[2] for r in chunk], [3] * n,
            [None] * n, specs=specs,
        )  # fmt: skip
        parts.append((batch, [*range(0, n, 2)] if subset and n > 1 else range(n)))
    many: dict = {}
    partials_many(parts, many)
    one_by_one: dict = {}
    for batch, positions in parts:
        partials(batch, iter(list(positions)), specs, one_by_one)
    assert many == one_by_one


def _write(engine: Engine, tid: int, rows: list[tuple[str, str, str, int, int, str | None]]) -> None:
    """Write (event_id, customer, meter, ts_us, units, properties) rows, one batch per row (arrival order)."""
    codes = {r[2] for r in rows}
    specs = {code: get_meter(engine, tid, code).spec for code in codes}
    store = open_store(engine)
    for e in rows:
        store.write([PreparedBatch(tid, "b", 1, False, [0], [e[0]], [e[1]], [e[2]], [e[3]], [e[4]],
                                   [specs[e[2]].value_scale], [e[5]], specs=specs)])  # fmt: skip
    store.close()


def _us(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp()) * 1_000_000


def test_gauge_carries_over_and_integrates_local_days_across_dst(engine: Engine, tenant: TenantKey) -> None:
    """Seat-hours per Paris day around spring-forward, with the value carried in from before the range."""
    tid = tenant.tenant_id
    create_meter(engine, tid, MeterDefinition(code="seats", aggregation=Aggregation.GAUGE, time_unit=TimeUnit.HOUR))
    _write(engine, tid, [
        ("s2", "c1", "seats", _us("2026-03-29T12:00:00+00:00"), 5, None),  # 14:00 local, summer time
        ("s1", "c1", "seats", _us("2026-03-27T00:00:00+00:00"), 3, None),  # before the range: carried in
    ])  # fmt: skip
    start = datetime.fromisoformat("2026-03-28T00:00:00+01:00")
    end = datetime.fromisoformat("2026-03-31T00:00:00+02:00")
    rows = usage(engine, tid, "c1", "seats", start, end, window=Window.DAY, tz="Europe/Paris")
    by_day = {r.window_start.date().isoformat(): (r.quantity, r.events) for r in rows if r.window_start}
    # 28th: 24 h x 3. 29th has 23 hours: 13 h x 3 until 14:00 local, then 10 h x 5. 30th: 24 h x 5.
    assert by_day == {"2026-03-28": (72, 0), "2026-03-29": (89, 1), "2026-03-30": (120, 0)}
    (whole,) = usage(engine, tid, "c1", "seats", start, end)
    assert whole.quantity == 281
    # A later reading in the same bucket as s2 but earlier in time (late, out of order) re-integrates it.
    _write(engine, tid, [("s3", "c1", "seats", _us("2026-03-29T12:00:00+00:00") - 600_000_000, 7, None)])
    (whole,) = usage(engine, tid, "c1", "seats", start, end)
    assert whole.quantity == Decimal("281.666667")  # + 10 min x (7 - 3) seats = 0.6666666.. seat-hours
    assert rebuild(engine, tid, "seats", get_meter(engine, tid, "seats").spec).mismatched_before == 0


def test_gauge_held_all_period_without_readings_is_billed(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    create_meter(engine, tid, MeterDefinition(code="seats", aggregation=Aggregation.GAUGE, value_scale=1))
    _write(engine, tid, [("s1", "c1", "seats", _us("2026-10-15T00:00:00+00:00"), 25, None)])  # 2.5 seats
    nov, dec = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    (row,) = usage(engine, tid, "c1", "seats", nov, dec)
    assert (row.quantity, row.events) == (Decimal("75.0000000"), 0)  # 2.5 seats x 30 days, scale 1 + 6
    cols = period_columns(engine, tid, nov, dec)
    assert list(cols.customers) == ["c1"] and list(cols.meters) == ["seats"]
    assert (int(cols.units[0]), int(cols.scales[0]), int(cols.events[0])) == (75 * 10**7, 7, 0)
    # Half an hour in a day unit: 1/48 day x 2.5 seats = 0.0520833.. seat-days, rounded half-even once.
    (part,) = usage(engine, tid, "c1", "seats", nov, nov + timedelta(minutes=30))
    assert part.quantity == Decimal("0.0520833")


def test_unique_count_is_exact_across_buckets_and_windows(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    create_meter(engine, tid, MeterDefinition(code="mau", aggregation=Aggregation.UNIQUE_COUNT,
                                              unique_property="user"))  # fmt: skip
    day = _us("2026-11-02T00:00:00+00:00")
    _write(engine, tid, [
        ("a", "c1", "mau", day, 1, '{"user":"ann"}'),
        ("b", "c1", "mau", day + 3 * 3_600_000_000, 1, '{"user":"ann"}'),  # same user, another bucket
        ("c", "c1", "mau", day + 86_400_000_000, 1, '{"user":"bob"}'),  # next day
        ("d", "c1", "mau", day + 86_400_000_000, 1, None),  # no user: an event, not a user
    ])  # fmt: skip
    nov, dec = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    (month,) = usage(engine, tid, "c1", "mau", nov, dec)
    assert (month.quantity, month.events) == (2, 4)
    daily = usage(engine, tid, "c1", "mau", nov, dec, window=Window.DAY)
    assert [(r.window_start.day if r.window_start else 0, r.quantity) for r in daily] == [(2, 1), (3, 1)]
    cols = period_columns(engine, tid, nov, dec)
    assert (int(cols.units[0]), int(cols.scales[0]), int(cols.events[0])) == (2, 0, 4)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"aggregation": "unique_count"}, "needs unique_property"),
        ({"aggregation": "sum", "unique_property": "user"}, "only applies to unique_count"),
        ({"aggregation": "count", "time_unit": "day"}, "only applies to gauge"),
        ({"aggregation": "unique_count", "unique_property": "bad name"}, "unique_property property"),
    ],
)
def test_aggregation_options_are_checked(fields: dict, message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        MeterDefinition(code="m", **fields)
    assert MeterDefinition(code="g", aggregation=Aggregation.GAUGE).time_unit is TimeUnit.DAY
