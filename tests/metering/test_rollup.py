"""Rollups equal raw events, to the last digit, on SQLite and PostgreSQL (hypothesis)."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, select

from metering.errors import FailedPrecondition, InvalidArgument
from metering.event import PreparedBatch
from metering.meter import Aggregation, MeterDefinition, MeterUpdate, create_meter, get_meter, update_meter
from metering.rollup import BUCKET_US, rebuild
from metering.store import open_store
from metering.tables import events, rollups
from metering.usage import Window, period_columns, usage
from tests.conftest import TenantKey

T0 = datetime(2026, 3, 28, tzinfo=UTC)  # the weekend Europe switches to summer time
T0_US = int(T0.timestamp()) * 1_000_000
SPAN_US = 3 * 86_400_000_000
METERS = {
    "calls": MeterDefinition(code="calls", aggregation=Aggregation.COUNT),
    "spend": MeterDefinition(code="spend", aggregation=Aggregation.SUM, value_scale=3),
    "peak": MeterDefinition(code="peak", aggregation=Aggregation.MAX, value_scale=1),
    "floor": MeterDefinition(code="floor", aggregation=Aggregation.MIN),
    "seats": MeterDefinition(code="seats", aggregation=Aggregation.LATEST),
    "gpu": MeterDefinition(
        code="gpu", aggregation=Aggregation.SUM, group_by=["region"], filter={"tier": ["paid", "trial"]}
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
            draw(st.one_of(st.integers(-(10**6), 10**6), st.integers(-(2**50), 2**50))),
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
        rows = conn.execute(
            select(events).where(events.c.tenant_id == tenant_id, events.c.meter == meter,
                                 events.c.customer == customer, events.c.ts_us >= start_us, events.c.ts_us < end_us)
        ).all()  # fmt: skip
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
    last = max(chosen, key=lambda r: (r.ts_us, r.event_id))
    return Decimal(last.value_units).scaleb(-last.value_scale)


def at(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(evs=event_sets(), cuts=st.lists(st.integers(0, 200), max_size=4),
       window=st.tuples(st.integers(0, 287), st.integers(1, 288)))  # fmt: skip
def test_rollups_equal_raw_events(engine: Engine, metered: TenantKey, evs: list, cuts: list[int],
                                  window: tuple[int, int]) -> None:  # fmt: skip
    tid = metered.tenant_id
    with engine.begin() as conn:  # hypothesis reuses the database between examples
        conn.execute(delete(events))
        conn.execute(delete(rollups))
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
            if meter == "gpu":
                for row in usage(engine, tid, customer, meter, at(start_us), at(end_us), group_by=True):
                    assert row.quantity == raw_quantity(engine, tid, meter, customer, start_us, end_us, row.group)
    cols = period_columns(engine, tid, at(T0_US), at(T0_US + SPAN_US))
    for i in range(len(cols)):
        group = json.loads(cols.group_keys[i]) if cols.group_keys[i] else None
        expected = raw_quantity(engine, tid, cols.meters[i], cols.customers[i], T0_US, T0_US + SPAN_US, group)
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
