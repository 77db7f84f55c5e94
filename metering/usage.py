"""Usage queries, answered from rollups only (never by scanning raw events).

Ranges are half-open, `[start, end)`, and must fall on 15-minute boundaries (the rollup bucket):
any local hour, day or month boundary in any real time zone is one, so billing periods are always
answerable exactly; a range that would split a bucket is refused rather than estimated.

Quantities are exact `Decimal`s (fixed-point units scaled by the meter's scale), or, for the bulk
period extract that feeds the rating kernels, int64 units with their scale.

unique_count counts distinct values over the whole window (not a sum of per-bucket counts). gauge
integrates the value over time: a reading holds from its timestamp until the next one, the value at
the start of a range is the latest reading before it (carried over, however old), and the integral is
expressed in the meter's time unit, rounded once, half-even, to `Meter.quantity_scale` digits.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, Engine, func, select

from metering.errors import FailedPrecondition, InvalidArgument
from metering.meter import GAUGE_EXTRA_SCALE, Aggregation, Meter, get_meter, list_meters
from metering.rollup import BUCKET_US, INT64_MAX, INT64_MIN
from metering.tables import rollup_values, rollups
from rating.rounding import RoundingMode, round_scaled


class Window(StrEnum):
    """Calendar windows in the customer's time zone; each knows how to truncate a local time."""

    HOUR = "hour"
    DAY = "day"
    MONTH = "month"

    def truncate(self, local: datetime) -> datetime:
        if self is Window.HOUR:
            return local.replace(minute=0, second=0, microsecond=0)
        if self is Window.DAY:
            return local.replace(hour=0, minute=0, second=0, microsecond=0)
        return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)




@dataclass(frozen=True, slots=True)
class UsageRow:
    window_start: datetime | None  # local time in the requested zone; None when not windowed
    group: dict[str, str]  # group_by property values; empty when not grouped
    quantity: Decimal
    events: int


def to_us(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise InvalidArgument(f"{moment.isoformat()} has no time zone; pass an aware datetime")
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidArgument(f"unknown time zone {tz!r}; use an IANA name such as Europe/Paris") from exc


def _check_range(start_us: int, end_us: int) -> None:
    if end_us <= start_us:
        raise InvalidArgument("end must be after start")
    if start_us % BUCKET_US or end_us % BUCKET_US:
        raise InvalidArgument("start and end must fall on 15-minute boundaries (the rollup bucket)")


def _quantity(meter: Meter, rows: Sequence[Any]) -> tuple[Decimal, int]:
    """Combine bucket rows exactly into the meter's quantity."""
    n_events = sum(r.events for r in rows)
    agg = meter.aggregation
    if agg is Aggregation.COUNT:
        return Decimal(n_events), n_events
    if agg is Aggregation.SUM:
        units = sum(r.sum_units for r in rows)
    elif agg is Aggregation.MAX:
        units = max(r.max_units for r in rows)
    elif agg is Aggregation.MIN:
        units = min(r.min_units for r in rows)
    else:
        units = max(rows, key=lambda r: (r.latest_ts_us, r.latest_event_id)).latest_units
    return Decimal(units).scaleb(-meter.value_scale), n_events


def usage(
    engine: Engine,
    tenant_id: int,
    customer: str,
    meter_code: str,
    start: datetime,
    end: datetime,
    *,
    group_by: bool = False,
    window: Window | None = None,
    tz: str = "UTC",
) -> list[UsageRow]:
    """A customer's usage of one meter over [start, end), optionally per dimension and per window.

    Windows and groups with no events are left out; an empty list means no usage.
    """
    meter = get_meter(engine, tenant_id, meter_code)
    start_us, end_us = to_us(start), to_us(end)
    _check_range(start_us, end_us)
    zone = _zone(tz)
    r = rollups.c
    mine = (r.tenant_id == tenant_id, r.meter == meter_code, r.customer == customer)
    with engine.connect() as conn:
        rows = conn.execute(select(rollups).where(*mine, r.bucket_us >= start_us, r.bucket_us < end_us)).all()
        distinct: Sequence[Any] = []
        carry: dict[str, int] = {}
        if meter.aggregation is Aggregation.UNIQUE_COUNT:
            v = rollup_values.c
            distinct = conn.execute(
                select(v.bucket_us, v.group_key, v.value).where(
                    v.tenant_id == tenant_id,
                    v.meter == meter_code,
                    v.customer == customer,
                    v.bucket_us >= start_us,
                    v.bucket_us < end_us,
                )
            ).all()
        elif meter.aggregation is Aggregation.GAUGE:
            carry = {key[2]: units for key, units in _carried(conn, mine, start_us).items()}

    def window_of(bucket_us: int) -> datetime | None:
        if window is None:
            return None
        return window.truncate((EPOCH + timedelta(microseconds=bucket_us)).astimezone(zone))

    if meter.aggregation is Aggregation.GAUGE:
        return _gauge_usage(meter, rows, carry, start_us, end_us, window_of, group_by)
    groups: dict[tuple[datetime | None, str], list[Any]] = {}
    for row in rows:
        groups.setdefault((window_of(row.bucket_us), row.group_key if group_by else ""), []).append(row)
    values: dict[tuple[datetime | None, str], set[str]] = {}
    for row in distinct:
        values.setdefault((window_of(row.bucket_us), row.group_key if group_by else ""), set()).add(row.value)
    out = []
    for (w, key), members in sorted(
        groups.items(), key=lambda kv: (kv[0][0] or datetime.min.replace(tzinfo=UTC), kv[0][1])
    ):
        if meter.aggregation is Aggregation.UNIQUE_COUNT:
            quantity, n = Decimal(len(values.get((w, key), ()))), sum(m.events for m in members)
        else:
            quantity, n = _quantity(meter, members)
        out.append(UsageRow(w, _group(key), quantity, n))
    return out


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _carried(conn: Connection, where: tuple[Any, ...], before_us: int) -> dict[tuple[str, str, str], int]:
    """The latest gauge reading before `before_us` per (meter, customer, group key): what a range starts with."""
    r = rollups.c
    series = (r.meter, r.customer, r.group_key)
    last = (
        select(*series, func.max(r.bucket_us).label("bucket_us"))
        .where(*where, r.bucket_us < before_us)
        .group_by(*series)
        .subquery()
    )
    rows = conn.execute(
        select(*series, r.latest_units).where(
            *where,
            r.meter == last.c.meter,
            r.customer == last.c.customer,
            r.group_key == last.c.group_key,
            r.bucket_us == last.c.bucket_us,
        )
    )
    return {(row.meter, row.customer, row.group_key): int(row.latest_units) for row in rows}


def gauge_integral(
    buckets: Sequence[tuple[int, int, int, int]], carry: int, start_us: int, end_us: int
) -> int:
    """Integral over [start, end) in units x us from bucket summaries (bucket_us, first_ts, integral, latest).

    Buckets must be sorted and inside the range. Before each bucket's first reading the value is the
    previous bucket's latest (or `carry`, the reading in force at `start`); Python integers, so exact.
    """
    total, value, cursor = 0, carry, start_us
    for bucket_us, first_ts, integral, latest in buckets:
        total += value * (first_ts - cursor) + integral
        value, cursor = latest, bucket_us + BUCKET_US
    return total + value * (end_us - cursor)


def gauge_quantity(meter: Meter, integral: int) -> Decimal:
    """units x us → the meter's time unit, rounded once (half-even) to its quantity scale."""
    assert meter.time_unit is not None
    scaled = round_scaled(integral * 10**GAUGE_EXTRA_SCALE, meter.time_unit.microseconds, RoundingMode.HALF_EVEN)
    return Decimal(scaled).scaleb(-meter.quantity_scale)


def _gauge_usage(
    meter: Meter,
    rows: Sequence[Any],
    carry: dict[str, int],
    start_us: int,
    end_us: int,
    window_of: Callable[[int], datetime | None],
    group_by: bool,
) -> list[UsageRow]:
    """Per group key, chain buckets across windows; ungrouped, the groups' integrals add up."""
    by_group: dict[str, list[Any]] = {}
    for row in sorted(rows, key=lambda x: x.bucket_us):
        by_group.setdefault(row.group_key, []).append(row)
    windows: list[tuple[datetime | None, int, int]] = []  # (window, start_us, end_us)
    for b in range(start_us, end_us, BUCKET_US):
        w = window_of(b)
        if windows and windows[-1][0] == w:
            windows[-1] = (w, windows[-1][1], b + BUCKET_US)
        else:
            windows.append((w, b, b + BUCKET_US))
    totals: dict[tuple[datetime | None, str], list[int]] = {}  # -> [integral, events]
    for key in sorted(by_group.keys() | carry.keys()):
        members, value, i = by_group.get(key, []), carry.get(key, 0), 0
        for w, w_start, w_end in windows:
            inside = []
            while i < len(members) and members[i].bucket_us < w_end:
                inside.append(members[i])
                i += 1
            summary = [(m.bucket_us, m.gauge_first_ts_us, m.gauge_integral, m.latest_units) for m in inside]
            integral = gauge_integral(summary, value, w_start, w_end)
            if inside:
                value = inside[-1].latest_units
            if integral or inside:
                acc = totals.setdefault((w, key if group_by else ""), [0, 0])
                acc[0] += integral
                acc[1] += sum(m.events for m in inside)
    return [
        UsageRow(w, _group(key), gauge_quantity(meter, acc[0]), acc[1])
        for (w, key), acc in sorted(totals.items(), key=lambda kv: (kv[0][0] or EPOCH, kv[0][1]))
    ]


def _group(key: str) -> dict[str, str]:
    return dict(json.loads(key)) if key else {}


@dataclass(frozen=True)
class PeriodColumns:
    """One billing period's usage for a whole tenant, as columns for the rating kernels.

    Row i: `customers[i]` used `units[i] * 10^-scales[i]` of `meters[i]` in dimension `group_keys[i]`.
    """

    customers: npt.NDArray[np.object_]
    meters: npt.NDArray[np.object_]
    group_keys: npt.NDArray[np.object_]
    units: npt.NDArray[np.int64]
    scales: npt.NDArray[np.int64]
    events: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.units)


def period_columns(
    engine: Engine, tenant_id: int, start: datetime, end: datetime, customers: Sequence[str] | None = None
) -> PeriodColumns:
    """Every (customer, meter, dimension) quantity of [start, end) in a few grouped queries.

    Sums are exact or fail: SQLite's sum() raises on integer overflow, PostgreSQL widens to numeric;
    a quantity that does not fit int64 units is refused rather than wrapped. Rows come sorted by
    (meter, customer, group key); a gauge held all period without a new reading still has its row.

    With `customers`, only those customers' rows: exactly the rows of the whole extract whose customer is
    listed (an invoice run streams its usage batch by batch). Each query then looks rows up by
    (meter, customer) in the primary key, so the cost follows the customers asked for, not the tenant.
    """
    start_us, end_us = to_us(start), to_us(end)
    _check_range(start_us, end_us)
    by_code = {m.code: m for m in list_meters(engine, tenant_id)}
    gauges = [code for code, m in by_code.items() if m.aggregation is Aggregation.GAUGE]
    r = rollups.c
    in_period: tuple[Any, ...] = (r.tenant_id == tenant_id, r.bucket_us >= start_us, r.bucket_us < end_us)
    keys = (r.meter, r.customer, r.group_key)
    wanted = None if customers is None else sorted(set(customers))
    with engine.connect() as conn:
        if wanted is None:
            not_gauge = r.meter.not_in(gauges)
        else:
            in_period += (r.customer.in_(wanted),)
            # The same rows as `not_in(gauges)`, as an IN list (every meter code the tenant's rollups
            # hold, found by index probes) so the query seeks by (meter, customer) instead of scanning.
            not_gauge = r.meter.in_([code for code in _rollup_meters(conn, tenant_id) if code not in gauges])
        grouped = conn.execute(
            select(
                *keys,
                func.sum(r.events).label("events"),
                func.sum(r.sum_units).label("sum_units"),
                func.min(r.min_units).label("min_units"),
                func.max(r.max_units).label("max_units"),
            )
            .where(*in_period, not_gauge)
            .group_by(*keys)
        ).all()
        latest: dict[tuple[str, str, str], int] = {}
        if lasts := [code for code, m in by_code.items() if m.aggregation is Aggregation.LATEST]:
            # A window function over every bucket is the extract's costliest step: only for latest meters.
            ranked = (
                select(
                    *keys,
                    r.latest_units,
                    func.row_number()
                    .over(partition_by=keys, order_by=(r.latest_ts_us.desc(), r.latest_event_id.desc()))
                    .label("rank"),
                )
                .where(*in_period, r.meter.in_(lasts))
                .subquery()
            )
            latest = {
                (row.meter, row.customer, row.group_key): row.latest_units
                for row in conn.execute(select(ranked).where(ranked.c.rank == 1))
            }
        distinct: dict[tuple[str, str, str], int] = {}
        if any(m.aggregation is Aggregation.UNIQUE_COUNT for m in by_code.values()):
            v = rollup_values.c
            only: tuple[Any, ...] = ()
            if wanted is not None:  # only unique_count meters' counts are read below
                uniques = [code for code, m in by_code.items() if m.aggregation is Aggregation.UNIQUE_COUNT]
                only = (v.meter.in_(uniques), v.customer.in_(wanted))
            distinct = {
                (row.meter, row.customer, row.group_key): int(row.n)
                for row in conn.execute(
                    select(v.meter, v.customer, v.group_key, func.count(v.value.distinct()).label("n"))
                    .where(v.tenant_id == tenant_id, v.bucket_us >= start_us, v.bucket_us < end_us, *only)
                    .group_by(v.meter, v.customer, v.group_key)
                )
            }
        gauge_rows = _gauge_period(conn, tenant_id, gauges, start_us, end_us, wanted) if gauges else {}
    out: list[tuple[str, str, str, int, int, int]] = []  # meter, customer, group, units, scale, events
    for row in grouped:
        key = (row.meter, row.customer, row.group_key)
        meter = by_code.get(row.meter)
        agg = meter.aggregation if meter else None
        if agg is Aggregation.COUNT:
            value = int(row.events)
        elif agg is Aggregation.SUM:
            value = int(row.sum_units)
        elif agg is Aggregation.MAX:
            value = int(row.max_units)
        elif agg is Aggregation.MIN:
            value = int(row.min_units)
        elif agg is Aggregation.LATEST:
            value = int(latest[key])
        elif agg is Aggregation.UNIQUE_COUNT:
            value = distinct.get(key, 0)
        else:
            raise FailedPrecondition(f"rollups hold usage of {row.meter!r}, which is no longer a meter")
        assert meter is not None
        out.append((*key, _fits(value, key), meter.quantity_scale, int(row.events)))
    for key, (integral, n_events) in gauge_rows.items():
        meter = by_code[key[0]]
        units = int(gauge_quantity(meter, integral).scaleb(meter.quantity_scale))
        out.append((*key, _fits(units, key), meter.quantity_scale, n_events))
    out.sort()
    n = len(out)
    return PeriodColumns(
        customers=np.array([o[1] for o in out], dtype=object),
        meters=np.array([o[0] for o in out], dtype=object),
        group_keys=np.array([o[2] for o in out], dtype=object),
        units=np.array([o[3] for o in out], dtype=np.int64).reshape(n),
        scales=np.array([o[4] for o in out], dtype=np.int64).reshape(n),
        events=np.array([o[5] for o in out], dtype=np.int64).reshape(n),
    )


def _fits(value: int, key: tuple[str, str, str]) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise FailedPrecondition(f"usage of {key[0]!r} by {key[1]!r} does not fit 64-bit units")
    return value


def _rollup_meters(conn: Connection, tenant_id: int) -> list[str]:
    """Every meter code in the tenant's rollups, one primary-key probe per code (a loose index scan)."""
    r = rollups.c
    out: list[str] = []
    while True:
        query = select(func.min(r.meter)).where(r.tenant_id == tenant_id)
        if out:
            query = query.where(r.meter > out[-1])
        code = conn.execute(query).scalar_one_or_none()
        if code is None:
            return out
        out.append(code)


def _gauge_period(
    conn: Connection,
    tenant_id: int,
    gauges: list[str],
    start_us: int,
    end_us: int,
    customers: list[str] | None = None,
) -> dict[tuple[str, str, str], tuple[int, int]]:
    """(integral in units x us, events) per gauge series with a reading in, or carried into, the period."""
    r = rollups.c
    series = (r.meter, r.customer, r.group_key)
    only = () if customers is None else (r.customer.in_(customers),)
    carry = _carried(conn, (r.tenant_id == tenant_id, r.meter.in_(gauges), *only), start_us)
    buckets: dict[tuple[str, str, str], list[tuple[int, int, int, int]]] = {}
    events: dict[tuple[str, str, str], int] = {}
    for row in conn.execute(
        select(*series, r.bucket_us, r.gauge_first_ts_us, r.gauge_integral, r.latest_units, r.events)
        .where(r.tenant_id == tenant_id, r.meter.in_(gauges), r.bucket_us >= start_us, r.bucket_us < end_us, *only)
        .order_by(*series, r.bucket_us)
    ):
        key = (row.meter, row.customer, row.group_key)
        buckets.setdefault(key, []).append((row.bucket_us, row.gauge_first_ts_us, row.gauge_integral, row.latest_units))
        events[key] = events.get(key, 0) + int(row.events)
    out = {}
    for key in buckets.keys() | carry.keys():
        integral = gauge_integral(buckets.get(key, []), carry.get(key, 0), start_us, end_us)
        if integral or key in buckets:
            out[key] = (integral, events.get(key, 0))
    return out


@dataclass(frozen=True, slots=True)
class MeterSummary:
    events: int  # events the meter counted (its filter passed)
    customers: int
    buckets: int
    first: datetime | None  # start of the earliest bucket with events
    last: datetime | None  # the latest counted event's timestamp


def meter_summary(engine: Engine, tenant_id: int, meter_code: str) -> MeterSummary:
    """What a meter's rollups hold, in one aggregate query (cheap: rollups, not events)."""
    r = rollups.c
    with engine.connect() as conn:
        row = conn.execute(
            select(
                func.coalesce(func.sum(r.events), 0),
                func.count(r.customer.distinct()),
                func.count(),
                func.min(r.bucket_us),
                func.max(r.latest_ts_us),
            ).where(r.tenant_id == tenant_id, r.meter == meter_code)
        ).one()
    first = EPOCH + timedelta(microseconds=row[3]) if row[3] is not None else None
    last = EPOCH + timedelta(microseconds=row[4]) if row[4] is not None else None
    return MeterSummary(int(row[0]), int(row[1]), int(row[2]), first, last)
