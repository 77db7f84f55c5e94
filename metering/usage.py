"""Usage queries, answered from rollups (never by scanning raw events) read through the watermark.

Rollups are folded after the ack (metering/fold.py); every query here adds the events acked but not yet
folded (metering/pending.py) in the same snapshot, so an acked event is in every answer at once.

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

import itertools
import json
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt
from sqlalchemy import ColumnElement, Connection, Engine, Table, func, literal, select

from metering.deadline import checkpoint
from metering.errors import FailedPrecondition, InvalidArgument
from metering.limits import ApiLimits
from metering.meter import GAUGE_EXTRA_SCALE, Aggregation, Meter, get_meter, group_key, list_meters
from metering.pending import pending_partials, refuse_overflows, snapshot
from metering.rollup import BUCKET_US, DAY_US, INT64_MAX, INT64_MIN, Key, Partial, gauge_bucket
from metering.tables import events, gauge_points, rollup_values, rollups, rollups_day
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

    def following(self, label: datetime) -> datetime:
        """The label of the next window, in wall time (that local time may not exist: a DST gap)."""
        if self is Window.HOUR:
            return label + timedelta(hours=1)
        if self is Window.DAY:
            return label + timedelta(days=1)
        return label.replace(year=label.year + label.month // 12, month=label.month % 12 + 1)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: `usage`'s bounds default to the API's (settings TALLY_API__USAGE_WINDOWS_MAX and _BUCKETS_MAX).
_LIMITS = ApiLimits()
#: Rows fetched per round trip by the streaming reads; the request's budget is checked once per chunk.
_CHUNK = 4096
#: Window steps and gauge window integrals between two budget checks (a mask: 4096 per check).
_CHECK_EVERY = 4095
#: Average lengths, for the up-front estimate of a range's windows (a Gregorian month for months).
_NOMINAL_US = {Window.HOUR: 3_600_000_000, Window.DAY: 86_400_000_000, Window.MONTH: 2_629_746_000_000}
_ADJECTIVE = {Window.HOUR: "hourly", Window.DAY: "daily", Window.MONTH: "monthly"}
#: The window builder steps at most this far before looking at the UTC offset again, so that one step
#: holds at most one change of offset: the closest two changes of any tz database zone are 3.99 days
#: apart (Africa/Freetown, 1939); most zones change twice a year.
_STEP_US = 3 * 86_400_000_000


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


# --- windows ---------------------------------------------------------------------------------------------------
WindowSpan = tuple[datetime | None, int, int]  # (label, start_us, end_us); the label is None when not windowed


def windows_of(
    window: Window | None, zone: ZoneInfo, start_us: int, end_us: int, windows_max: int | None = None
) -> list[WindowSpan]:
    """The windows of [start, end): each maximal run of buckets whose local time truncates to one label.

    Exactly the windows that labelling every 15-minute bucket would give (a label repeated by a DST fall
    back is one window, as are two runs whose labels compare equal), but found by stepping from one
    window boundary to the next: a few steps per window, never one per bucket, so the cost follows the
    windows returned, not the range. More than `windows_max` windows is refused (`InvalidArgument`
    naming usage_windows_max), before any step when the range is plainly too long.
    """
    if window is None:
        return [(None, start_us, end_us)]
    if windows_max is not None:
        approx = (end_us - start_us) // _NOMINAL_US[window]
        if approx > 2 * windows_max + 2:  # no window is twice its nominal length: surely too many
            raise _too_many_windows(window, approx, windows_max, about=True)
    out: list[WindowSpan] = []
    b, steps = start_us, 0
    while b < end_us:
        steps += 1
        if not steps & _CHECK_EVERY:
            checkpoint()
        local = _local(b, zone)
        label = window.truncate(local)
        offset = _offset_us(local)
        # Under a constant offset the label changes where wall time reaches the next label.
        stop = min(end_us, b + _STEP_US)
        with suppress(OverflowError, ValueError):  # past year 9999 there is no next label: the range ends first
            stop = min(stop, _ceil_bucket(_wall_us(window.following(label)) - offset))
        last = stop - BUCKET_US
        if last > b and _offset_us(_local(last, zone)) != offset:
            # The offset changes (once) inside the step: end the run at the first bucket with the new one.
            lo, hi = b, last
            while hi - lo > BUCKET_US:
                mid = lo + (hi - lo) // BUCKET_US // 2 * BUCKET_US
                if _offset_us(_local(mid, zone)) == offset:
                    lo = mid
                else:
                    hi = mid
            stop = hi
        if out and out[-1][0] == label:  # equal labels (a repeated hour, a capped step) make one window
            out[-1] = (out[-1][0], out[-1][1], stop)
        else:
            out.append((label, b, stop))
        b = stop
    if windows_max is not None and len(out) > windows_max:
        raise _too_many_windows(window, len(out), windows_max, about=False)
    return out


def _too_many_windows(window: Window, n: int, limit: int, *, about: bool) -> InvalidArgument:
    longer = "" if window is Window.MONTH else " or use a longer window"
    return InvalidArgument(
        f"the usage query would return {'about ' if about else ''}{n:,} {_ADJECTIVE[window]} windows; the limit "
        f"is usage_windows_max={limit}: narrow the range{longer}"
    )


def _local(us: int, zone: ZoneInfo) -> datetime:
    moment = EPOCH + timedelta(microseconds=us)
    try:
        return moment.astimezone(zone)
    except OverflowError:
        raise InvalidArgument(f"{moment.isoformat()} is outside the years 1-9999 in time zone {zone.key}") from None


def _offset_us(local: datetime) -> int:
    offset = local.utcoffset()
    assert offset is not None
    return (offset.days * 86_400 + offset.seconds) * 1_000_000 + offset.microseconds


def _wall_us(local: datetime) -> int:
    """A local time's wall clock as microseconds since 1970-01-01T00:00 (as if it were UTC)."""
    return to_us(local.replace(tzinfo=UTC))


def _ceil_bucket(us: int) -> int:
    return -(-us // BUCKET_US) * BUCKET_US


# --- bounds ----------------------------------------------------------------------------------------------------
class _Work:
    """What one usage query reads and integrates, held to `limit` (usage_buckets_max): rollup rows (a
    bounded count up front, then as they stream), plus for a gauge one per window of every series; and
    the rows it returns (windows × dimension values), held to `rows_max` (usage_windows_max)."""

    __slots__ = ("cells", "counted", "grouped", "limit", "longer", "read", "rows_max", "what")

    def __init__(self, limit: int, rows_max: int, what: str, windowed: bool, grouped: bool) -> None:
        self.limit, self.rows_max, self.what, self.grouped = limit, rows_max, what, grouped
        self.longer = " or use a longer window" if windowed else ""
        self.counted = self.read = self.cells = 0

    def too_many_rows(self) -> InvalidArgument:
        ungroup = ", or leave out group_by" if self.grouped else ""
        return InvalidArgument(
            f"{self.what} would return more than {self.rows_max:,} rows (windows × dimension values); the limit "
            f"is usage_windows_max={self.rows_max}: narrow the range{self.longer}{ungroup}"
        )

    def count(self, n: int) -> None:
        self.counted += n
        self._check()

    def rows(self, n: int) -> None:
        self.read += n
        if self.read > self.counted:  # rows arrived since the count
            self._check()

    def integrals(self, n: int) -> None:
        self.cells += n
        self._check()

    def _check(self) -> None:
        rows = max(self.counted, self.read)
        if rows + self.cells <= self.limit:
            return
        if self.cells:
            detail = f"{rows:,} rollup rows and {self.cells:,} gauge window integrals (windows × dimension values)"
        else:
            detail = f"more than {self.limit:,} rollup rows (one per 15-minute bucket and dimension value)"
        raise InvalidArgument(
            f"{self.what} would read {detail}; the limit is usage_buckets_max={self.limit}: "
            f"narrow the range{self.longer}"
        )


def _count(conn: Connection, table: Table, where: Sequence[ColumnElement[bool]], limit: int) -> int:
    """How many rows match, counting no further than `limit + 1`: enough to refuse before reading them."""
    some = select(literal(1)).select_from(table).where(*where).limit(limit + 1).subquery()
    return int(conn.execute(select(func.count()).select_from(some)).scalar_one())


def _stream(conn: Connection, query: Any, work: _Work, expected: int) -> Iterator[Any]:
    """The query's rows, `_CHUNK` per fetch (a server-side cursor on PostgreSQL) when more than one chunk
    is `expected`: memory stays flat, the rows read are counted against the bound (which stops a read
    that outgrows it), and the request's budget is checked between chunks. A small result comes in one
    fetch, without the cursor's round trips."""
    if expected > _CHUNK:
        query = query.execution_options(yield_per=_CHUNK)
    for part in conn.execute(query).partitions(_CHUNK):
        checkpoint()
        work.rows(len(part))
        yield from part


# --- usage -----------------------------------------------------------------------------------------------------
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
    windows_max: int = _LIMITS.usage_windows_max,
    buckets_max: int = _LIMITS.usage_buckets_max,
) -> list[UsageRow]:
    """A customer's usage of one meter over [start, end), optionally per dimension and per window.

    Windows and groups with no events are left out; an empty list means no usage.

    Bounded, each refusal an `InvalidArgument` naming the limit: a range of more than `windows_max`
    windows is refused before any read, as is a query that would read more than `buckets_max` rollup
    rows (a bounded count first), counting for a gauge one more per window of each series it
    integrates; more than `windows_max` rows to return (windows × dimension values) stops the query
    as it finds them. Rows stream in chunks, so memory follows the rows returned, and the work checks
    the request's budget as it goes (`metering.deadline.checkpoint`).
    """
    meter = get_meter(engine, tenant_id, meter_code)
    start_us, end_us = to_us(start), to_us(end)
    _check_range(start_us, end_us)
    zone = _zone(tz)
    windows = windows_of(window, zone, start_us, end_us, windows_max)
    what = f"usage of {meter_code!r} by {customer!r} from {start.isoformat()} to {end.isoformat()}"
    work = _Work(buckets_max, windows_max, what, window is not None, group_by)
    r, v = rollups.c, rollup_values.c
    mine = (r.tenant_id == tenant_id, r.meter == meter_code, r.customer == customer)
    in_range = (*mine, r.bucket_us >= start_us, r.bucket_us < end_us)
    agg = meter.aggregation
    span = (end_us - start_us) // BUCKET_US
    with snapshot(engine) as conn:
        refuse_overflows(conn, tenant_id, start_us, end_us, meter=meter_code, customers=[customer])
        pend = pending_partials(conn, tenant_id, meter=meter_code, customers=[customer], specs={meter_code: meter.spec})
        # One series (no group_by) has at most a row per bucket of the range: no need to count those.
        expected = span
        if meter.group_by or span > buckets_max:
            # Pending partials count as the rows they will be once folded (at most: some fold into stored rows).
            n_pending = sum(1 for key in pend if start_us <= key[3] < end_us)
            work.count(expected := _count(conn, rollups, in_range, buckets_max) + n_pending)
        if agg is Aggregation.GAUGE:
            carried = _carry_pending(_carried(conn, mine, start_us), pend, start_us)
            carry = {key[2]: reading[2] for key, reading in carried.items()}
            work.integrals(len(windows) * len(carry))
            query = select(r.group_key, r.bucket_us, r.gauge_first_ts_us, r.gauge_integral, r.latest_units, r.events)
            ordered = query.where(*in_range).order_by(r.group_key, r.bucket_us)
            rows: Iterable[Any] = _stream(conn, ordered, work, expected)
            overlay = _gauge_overlay(conn, tenant_id, pend, start_us, end_us)
            if overlay:
                rows = _with_gauge_overlay(
                    ((row[0], row[1], row) for row in rows), {(k[2], k[3]): v for k, v in overlay.items()}
                )
            return _gauge_usage(meter, rows, carry, windows, group_by, work)
        values_in_range = (
            v.tenant_id == tenant_id,
            v.meter == meter_code,
            v.customer == customer,
            v.bucket_us >= start_us,
            v.bucket_us < end_us,
        )
        distinct = 0
        if agg is Aggregation.UNIQUE_COUNT:  # any number of values per bucket: always counted
            work.count(distinct := _count(conn, rollup_values, values_in_range, buckets_max))
        label_of = _labeller(windows)
        groups: dict[tuple[datetime | None, str], list[Any]] = {}  # -> [events, aggregate state...]
        combine = _COMBINE[agg]
        query = select(r.bucket_us, r.group_key, r.events, *_COLUMNS[agg]).where(*in_range)
        extra = [_pending_row(agg, pk, part) for pk, part in sorted(pend.items()) if start_us <= pk[3] < end_us]
        for row in itertools.chain(_stream(conn, query, work, expected), extra):
            k = (label_of(row[0]), row[1] if group_by else "")
            acc = groups.get(k)
            if acc is None:
                if len(groups) >= windows_max:
                    raise work.too_many_rows()
                groups[k] = list(row[2:])
            else:
                combine(acc, row)
        values: dict[tuple[datetime | None, str], set[str]] = {}
        if agg is Aggregation.UNIQUE_COUNT:
            query = select(v.bucket_us, v.group_key, v.value).where(*values_in_range)
            for row in _stream(conn, query, work, distinct):
                values.setdefault((label_of(row[0]), row[1] if group_by else ""), set()).add(row[2])
            for pkey, part in pend.items():
                if part.distinct and start_us <= pkey[3] < end_us:
                    values.setdefault((label_of(pkey[3]), pkey[2] if group_by else ""), set()).update(part.distinct)
    out = []
    for i, ((w, key), acc) in enumerate(
        sorted(groups.items(), key=lambda kv: (kv[0][0] or datetime.min.replace(tzinfo=UTC), kv[0][1]))
    ):
        if not i & _CHECK_EVERY:
            checkpoint()
        n_events = int(acc[0])
        if agg is Aggregation.COUNT:
            quantity = Decimal(n_events)
        elif agg is Aggregation.UNIQUE_COUNT:
            quantity = Decimal(len(values.get((w, key), ())))
        else:  # sum, max, min: the units; latest: (timestamp, event id, units)
            quantity = Decimal(int(acc[-1])).scaleb(-meter.value_scale)
        out.append(UsageRow(w, _group(key), quantity, n_events))
    return out


def _labeller(windows: list[WindowSpan]) -> Callable[[int], datetime | None]:
    """bucket_us → the label of its window."""
    if len(windows) == 1:
        only = windows[0][0]
        return lambda _bucket_us: only
    starts = [w[1] for w in windows]
    labels = [w[0] for w in windows]
    return lambda bucket_us: labels[bisect_right(starts, bucket_us) - 1]


def _add_sum(acc: list[Any], row: Any) -> None:
    acc[0] += row[2]
    acc[1] += row[3]


def _add_max(acc: list[Any], row: Any) -> None:
    acc[0] += row[2]
    if row[3] > acc[1]:
        acc[1] = row[3]


def _add_min(acc: list[Any], row: Any) -> None:
    acc[0] += row[2]
    if row[3] < acc[1]:
        acc[1] = row[3]


def _add_latest(acc: list[Any], row: Any) -> None:
    """The latest event by (timestamp, event id); on a tie the first row read keeps it, as `max` would."""
    acc[0] += row[2]
    if (row[3], row[4]) > (acc[1], acc[2]):
        acc[1:] = row[3:]


def _add_events(acc: list[Any], row: Any) -> None:
    acc[0] += row[2]


#: Per aggregation: the columns read after (bucket_us, group_key, events), and how a row joins its window.
_COLUMNS: dict[Aggregation, tuple[Any, ...]] = {
    Aggregation.SUM: (rollups.c.sum_units,),
    Aggregation.MAX: (rollups.c.max_units,),
    Aggregation.MIN: (rollups.c.min_units,),
    Aggregation.LATEST: (rollups.c.latest_ts_us, rollups.c.latest_event_id, rollups.c.latest_units),
    Aggregation.COUNT: (),
    Aggregation.UNIQUE_COUNT: (),
}
_COMBINE: dict[Aggregation, Callable[[list[Any], Any], None]] = {
    Aggregation.SUM: _add_sum,
    Aggregation.MAX: _add_max,
    Aggregation.MIN: _add_min,
    Aggregation.LATEST: _add_latest,
    Aggregation.COUNT: _add_events,
    Aggregation.UNIQUE_COUNT: _add_events,
}


Reading = tuple[int, str, int]  # ts_us, event_id, units


def _carried(conn: Connection, where: tuple[Any, ...], before_us: int) -> dict[tuple[str, str, str], Reading]:
    """The latest gauge reading before `before_us` per (meter, customer, group key): what a range starts with."""
    # A window function, one pass over the earlier buckets: joining each series to its max(bucket_us)
    # lets PostgreSQL pick a nested loop on fresh statistics, re-aggregating the history once per row.
    r = rollups.c
    series = (r.meter, r.customer, r.group_key)
    ranked = (
        select(
            *series,
            r.latest_ts_us,
            r.latest_event_id,
            r.latest_units,
            func.row_number().over(partition_by=series, order_by=r.bucket_us.desc()).label("rank"),
        )
        .where(*where, r.bucket_us < before_us)
        .subquery()
    )
    rows = conn.execute(select(ranked).where(ranked.c.rank == 1))
    return {
        (row.meter, row.customer, row.group_key): (int(row.latest_ts_us), row.latest_event_id, int(row.latest_units))
        for row in rows
    }


def _carry_pending(
    carried: dict[tuple[str, str, str], Reading], pend: dict[Key, Partial], before_us: int
) -> dict[tuple[str, str, str], Reading]:
    """`carried` with the pending gauge readings before `before_us` that are later than the stored ones."""
    for key, part in pend.items():
        if part.points is None or key[3] >= before_us:
            continue
        series = (key[0], key[1], key[2])
        reading = (part.latest_ts_us, part.latest_event_id, part.latest_units)
        held = carried.get(series)
        if held is None or reading[:2] > held[:2]:
            carried[series] = reading
    return carried


def _gauge_overlay(
    conn: Connection, tenant_id: int, pend: dict[Key, Partial], start_us: int, end_us: int
) -> dict[Key, tuple[int, int, int, int]]:
    """Gauge buckets in [start, end) that pending readings touch: (first_ts, integral, latest units, pending
    events), recomputed from the bucket's stored readings and the pending ones, as the fold will store it."""
    out: dict[Key, tuple[int, int, int, int]] = {}
    g = gauge_points.c
    for key, part in pend.items():
        if part.points is None or not start_us <= key[3] < end_us:
            continue
        stored = conn.execute(
            select(g.ts_us, g.event_id, g.units).where(
                g.tenant_id == tenant_id, g.meter == key[0], g.customer == key[1], g.group_key == key[2],
                g.ts_us >= key[3], g.ts_us < key[3] + BUCKET_US,
            )
        ).all()  # fmt: skip
        points = {(int(t), str(e), int(u)) for t, e, u in stored} | part.points
        first, integral = gauge_bucket(key[3], points)
        out[key] = (first, integral, max(points)[2], part.events)
    return out


def _with_gauge_overlay(rows: Iterable[Any], overlay: dict[Any, tuple[int, int, int, int]]) -> list[tuple[Any, ...]]:
    """Gauge bucket rows (*key, bucket_us, first_ts, integral, latest, events), given as (key, bucket_us, row),
    sorted by (key, bucket), with each overlaid bucket (keyed by (key, bucket_us)) replaced, its events
    added, or inserted."""
    out: dict[Any, tuple[Any, ...]] = {}
    for key, bucket, row in rows:
        out[(key, bucket)] = tuple(row)
    for (key, bucket), (first, integral, latest, n) in overlay.items():
        held = out.get((key, bucket))
        events_before = 0 if held is None else int(held[-1])
        base = _series_fields(key)
        out[(key, bucket)] = (*base, bucket, first, integral, latest, events_before + n)
    return [out[k] for k in sorted(out)]


def _series_fields(key: Any) -> tuple[Any, ...]:
    return key if isinstance(key, tuple) else (key,)


def _pending_row(agg: Aggregation, key: Key, part: Partial) -> tuple[Any, ...]:
    """A pending partial as a row of `usage`'s rollup query: (bucket_us, group_key, events, *_COLUMNS[agg])."""
    cols: tuple[Any, ...] = ()
    if agg is Aggregation.SUM:
        cols = (part.sum_units,)
    elif agg is Aggregation.MAX:
        cols = (part.max_units,)
    elif agg is Aggregation.MIN:
        cols = (part.min_units,)
    elif agg is Aggregation.LATEST:
        cols = (part.latest_ts_us, part.latest_event_id, part.latest_units)
    return (key[3], key[2], part.events, *cols)


def gauge_integral(buckets: Sequence[tuple[int, int, int, int]], carry: int, start_us: int, end_us: int) -> int:
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
    rows: Iterable[Any],
    carry: dict[str, int],
    windows: list[WindowSpan],
    group_by: bool,
    work: _Work,
) -> list[UsageRow]:
    """Per series (group key), chain its buckets across the windows; ungrouped, the series' integrals add up.

    `rows` are (group_key, bucket_us, first_ts, integral, latest, events), sorted by group key then bucket,
    and are consumed as they stream. Carried series were counted up front (every window); a series that
    starts inside the range is counted as it is integrated.
    """
    totals: dict[tuple[datetime | None, str], list[int]] = {}  # -> [integral, events]
    starts = [w[1] for w in windows]
    seen: set[str] = set()
    for key, members in itertools.groupby(rows, key=lambda row: str(row[0])):
        seen.add(key)
        carried = key in carry
        _integrate(windows, starts, carry.get(key, 0), members, totals, key if group_by else "", work, carried)
    for key in sorted(carry.keys() - seen):
        _integrate(windows, starts, carry[key], (), totals, key if group_by else "", work, True)
    out = []
    for i, ((w, key), acc) in enumerate(sorted(totals.items(), key=lambda kv: (kv[0][0] or EPOCH, kv[0][1]))):
        if not i & _CHECK_EVERY:
            checkpoint()
        out.append(UsageRow(w, _group(key), gauge_quantity(meter, acc[0]), acc[1]))
    return out


def _integrate(
    windows: list[WindowSpan],
    starts: list[int],
    value: int,
    members: Iterable[Any],
    totals: dict[tuple[datetime | None, str], list[int]],
    out_key: str,
    work: _Work,
    counted: bool,
) -> None:
    """One series over every window, as `gauge_integral` per window: `value` is in force at the range's
    start; each window's integral (and events) is added to totals[(label, out_key)] when it is not zero
    or the window has buckets. While the value is zero the windows without buckets are skipped."""
    checkpoint()
    label, cursor, w_end = windows[0]
    wi, acc, events, inside, walked = 0, 0, 0, False, 0
    for _key, bucket_us, first_ts, integral, latest, n_events in members:
        while bucket_us >= w_end:  # close the windows before this bucket's
            acc += value * (w_end - cursor)
            if acc or inside:
                _add_total(totals, (label, out_key), acc, events, work)
            walked += 1
            if not walked & _CHECK_EVERY:
                checkpoint()
                work.integrals(0 if counted else _CHECK_EVERY + 1)
            wi = bisect_right(starts, bucket_us) - 1 if value == 0 else wi + 1
            label, cursor, w_end = windows[wi]
            acc, events, inside = 0, 0, False
        acc += value * (first_ts - cursor) + integral
        value, cursor = latest, bucket_us + BUCKET_US
        events += n_events
        inside = True
    while True:  # the bucket-less rest: the last value holds to the range's end
        acc += value * (w_end - cursor)
        if acc or inside:
            _add_total(totals, (label, out_key), acc, events, work)
        wi += 1
        if wi == len(windows) or value == 0:  # a zero value adds nothing to the windows left
            break
        walked += 1
        if not walked & _CHECK_EVERY:
            checkpoint()
            work.integrals(0 if counted else _CHECK_EVERY + 1)
        label, cursor, w_end = windows[wi]
        acc, events, inside = 0, 0, False
    if not counted:
        work.integrals(walked & _CHECK_EVERY)


def _add_total(
    totals: dict[tuple[datetime | None, str], list[int]],
    key: tuple[datetime | None, str],
    integral: int,
    events: int,
    work: _Work,
) -> None:
    total = totals.get(key)
    if total is None:
        if len(totals) >= work.rows_max:
            raise work.too_many_rows()
        totals[key] = [integral, events]
    else:
        total[0] += integral
        total[1] += events


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
    wanted = None if customers is None else sorted(set(customers))
    with snapshot(engine) as conn:
        refuse_overflows(conn, tenant_id, start_us, end_us, customers=wanted)
        specs = {code: m.spec for code, m in by_code.items()}
        pend = {
            key: part
            for key, part in pending_partials(conn, tenant_id, customers=wanted, specs=specs).items()
            if start_us <= key[3] < end_us or (part.points is not None and key[3] < start_us)
        }
        meters_in = None if wanted is None else [c for c in _rollup_meters(conn, tenant_id) if c not in gauges]
        totals: dict[tuple[str, str, str], list[Any]] = {}
        lasts = [code for code, m in by_code.items() if m.aggregation is Aggregation.LATEST]
        latest: dict[tuple[str, str, str], Reading] = {}
        for table, when, lo, hi in _tiers(start_us, end_us):
            c = table.c
            in_period: tuple[Any, ...] = (c.tenant_id == tenant_id, when >= lo, when < hi)
            keys = (c.meter, c.customer, c.group_key)
            if meters_in is None or wanted is None:
                not_gauge = c.meter.not_in(gauges)
            else:
                in_period += (c.customer.in_(wanted),)
                # The same rows as `not_in(gauges)`, as an IN list (every meter code the tenant's rollups
                # hold, found by index probes) so the query seeks by (meter, customer) instead of scanning.
                not_gauge = c.meter.in_(meters_in)
            grouped = conn.execute(
                select(
                    *keys,
                    func.sum(c.events).label("events"),
                    func.sum(c.sum_units).label("sum_units"),
                    func.min(c.min_units).label("min_units"),
                    func.max(c.max_units).label("max_units"),
                )
                .where(*in_period, not_gauge)
                .group_by(*keys)
            )
            for row in grouped:
                _accumulate(totals, (row.meter, row.customer, row.group_key), int(row.events), int(row.sum_units),
                            int(row.min_units), int(row.max_units))  # fmt: skip
            if lasts:
                # A window function over every row is the extract's costliest step: only for latest meters.
                ranked = (
                    select(
                        *keys,
                        c.latest_ts_us,
                        c.latest_event_id,
                        c.latest_units,
                        func.row_number()
                        .over(partition_by=keys, order_by=(c.latest_ts_us.desc(), c.latest_event_id.desc()))
                        .label("rank"),
                    )
                    .where(*in_period, c.meter.in_(lasts))
                    .subquery()
                )
                for row in conn.execute(select(ranked).where(ranked.c.rank == 1)):
                    reading = (int(row.latest_ts_us), row.latest_event_id, int(row.latest_units))
                    held = latest.get((row.meter, row.customer, row.group_key))
                    if held is None or reading[:2] > held[:2]:
                        latest[(row.meter, row.customer, row.group_key)] = reading
        for pkey, part in pend.items():
            if part.points is not None or pkey[3] < start_us:
                continue
            _accumulate(totals, pkey[:3], part.events, part.sum_units, part.min_units, part.max_units)
        if lasts:
            for pkey, part in pend.items():
                if pkey[0] in lasts and pkey[3] >= start_us:
                    reading = (part.latest_ts_us, part.latest_event_id, part.latest_units)
                    held = latest.get(pkey[:3])
                    if held is None or reading[:2] > held[:2]:
                        latest[pkey[:3]] = reading
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
            seen: dict[tuple[str, str, str], set[str]] = {}
            for pkey, part in pend.items():
                if part.distinct and pkey[3] >= start_us:
                    seen.setdefault(pkey[:3], set()).update(part.distinct)
            for series, new in seen.items():  # the union with the stored values: pending series are few
                stored_values = conn.execute(
                    select(v.value).distinct().where(
                        v.tenant_id == tenant_id, v.meter == series[0], v.customer == series[1],
                        v.group_key == series[2], v.bucket_us >= start_us, v.bucket_us < end_us,
                    )
                ).scalars()  # fmt: skip
                distinct[series] = len(new.union(stored_values))
        gauge_rows = _gauge_period(conn, tenant_id, gauges, start_us, end_us, wanted, pend) if gauges else {}
    out: list[tuple[str, str, str, int, int, int]] = []  # meter, customer, group, units, scale, events
    for i, (key, (n_events, sum_units, min_units, max_units)) in enumerate(totals.items()):
        if not i & _CHECK_EVERY:
            checkpoint()
        meter = by_code.get(key[0])
        agg = meter.aggregation if meter else None
        if agg is Aggregation.COUNT:
            value = int(n_events)
        elif agg is Aggregation.SUM:
            value = int(sum_units)
        elif agg is Aggregation.MAX:
            value = int(max_units)
        elif agg is Aggregation.MIN:
            value = int(min_units)
        elif agg is Aggregation.LATEST:
            value = int(latest[key][2])
        elif agg is Aggregation.UNIQUE_COUNT:
            value = distinct.get(key, 0)
        else:
            raise FailedPrecondition(f"rollups hold usage of {key[0]!r}, which is no longer a meter")
        assert meter is not None
        out.append((*key, _fits(value, key), meter.quantity_scale, int(n_events)))
    for i, (key, (integral, n_events)) in enumerate(gauge_rows.items()):
        if not i & _CHECK_EVERY:
            checkpoint()
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


def _tiers(start_us: int, end_us: int) -> list[tuple[Table, Any, int, int]]:
    """Where [start_us, end_us) is read from: whole UTC days from the day tier, the partial days at either
    edge from the 15-minute buckets (table, its time column, from, to)."""
    first_day = -(-start_us // DAY_US) * DAY_US
    last_day = end_us // DAY_US * DAY_US
    if first_day >= last_day:
        return [(rollups, rollups.c.bucket_us, start_us, end_us)]
    out = [(rollups_day, rollups_day.c.day_us, first_day, last_day)]
    out += [(rollups, rollups.c.bucket_us, lo, hi) for lo, hi in ((start_us, first_day), (last_day, end_us)) if lo < hi]
    return out


def _accumulate(
    totals: dict[tuple[str, str, str], list[Any]], key: tuple[str, str, str], events: int, sum_units: int,
    min_units: int, max_units: int,
) -> None:  # fmt: skip
    acc = totals.get(key)
    if acc is None:
        totals[key] = [events, sum_units, min_units, max_units]
    else:
        acc[0] += events
        acc[1] += sum_units
        acc[2] = min(acc[2], min_units)
        acc[3] = max(acc[3], max_units)


def _fits(value: int, key: tuple[str, str, str]) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise FailedPrecondition(f"usage of {key[0]!r} by {key[1]!r} does not fit 64-bit units")
    return value


def _rollup_meters(conn: Connection, tenant_id: int) -> list[str]:
    """Every meter code in the tenant's rollups, one primary-key probe per code (a loose index scan)."""
    r = rollups.c
    out: list[str] = []
    while True:
        checkpoint()
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
    pend: dict[Key, Partial] | None = None,
) -> dict[tuple[str, str, str], tuple[int, int]]:
    """(integral in units x us, events) per gauge series with a reading in, or carried into, the period."""
    r = rollups.c
    series = (r.meter, r.customer, r.group_key)
    only = () if customers is None else (r.customer.in_(customers),)
    pend = {k: p for k, p in (pend or {}).items() if k[0] in gauges}
    readings = _carry_pending(_carried(conn, (r.tenant_id == tenant_id, r.meter.in_(gauges), *only), start_us),
                              pend, start_us)  # fmt: skip
    carry = {key: reading[2] for key, reading in readings.items()}
    buckets: dict[tuple[str, str, str], list[tuple[int, int, int, int]]] = {}
    events: dict[tuple[str, str, str], int] = {}
    rows: Iterable[Any] = conn.execute(
        select(*series, r.bucket_us, r.gauge_first_ts_us, r.gauge_integral, r.latest_units, r.events)
        .where(r.tenant_id == tenant_id, r.meter.in_(gauges), r.bucket_us >= start_us, r.bucket_us < end_us, *only)
        .order_by(*series, r.bucket_us)
    )
    overlay = _gauge_overlay(conn, tenant_id, pend, start_us, end_us)
    if overlay:
        rows = [
            _GaugeRow(*row)
            for row in _with_gauge_overlay(((tuple(row[:3]), row[3], row) for row in rows),
                                           {(k[:3], k[3]): v for k, v in overlay.items()})
        ]  # fmt: skip
    for i, row in enumerate(rows):
        if not i & _CHECK_EVERY:
            checkpoint()
        key = (row.meter, row.customer, row.group_key)
        buckets.setdefault(key, []).append((row.bucket_us, row.gauge_first_ts_us, row.gauge_integral, row.latest_units))
        events[key] = events.get(key, 0) + int(row.events)
    out = {}
    for i, key in enumerate(buckets.keys() | carry.keys()):
        if not i & _CHECK_EVERY:
            checkpoint()
        integral = gauge_integral(buckets.get(key, []), carry.get(key, 0), start_us, end_us)
        if integral or key in buckets:
            out[key] = (integral, events.get(key, 0))
    return out


@dataclass(frozen=True, slots=True)
class _GaugeRow:
    meter: str
    customer: str
    group_key: str
    bucket_us: int
    gauge_first_ts_us: int
    gauge_integral: int
    latest_units: int
    events: int


@dataclass(frozen=True, slots=True)
class MeterSummary:
    events: int  # events the meter counted (its filter passed)
    customers: int
    buckets: int
    first: datetime | None  # start of the earliest bucket with events
    last: datetime | None  # the latest counted event's timestamp


def meter_summary(engine: Engine, tenant_id: int, meter_code: str) -> MeterSummary:
    """What a meter's rollups hold, in one aggregate query (cheap: rollups, not events), plus its events
    not yet folded."""
    r = rollups.c
    with snapshot(engine) as conn:
        row = conn.execute(
            select(
                func.coalesce(func.sum(r.events), 0),
                func.count(r.customer.distinct()),
                func.count(),
                func.min(r.bucket_us),
                func.max(r.latest_ts_us),
            ).where(r.tenant_id == tenant_id, r.meter == meter_code)
        ).one()
        n_events, n_customers, n_buckets, first_us, last_us = (int(row[0]), int(row[1]), int(row[2]), row[3],
                                                               row[4])  # fmt: skip
        pend = pending_partials(conn, tenant_id, meter=meter_code)
        new_customers: set[str] = set()
        for key, part in pend.items():
            n_events += part.events
            mine = (r.tenant_id == tenant_id, r.meter == meter_code, r.customer == key[1])
            if key[1] not in new_customers and conn.execute(select(literal(1)).where(*mine).limit(1)).first() is None:
                new_customers.add(key[1])
            stored = conn.execute(
                select(literal(1)).where(*mine, r.group_key == key[2], r.bucket_us == key[3]).limit(1)
            ).first()
            n_buckets += stored is None
            first_us = key[3] if first_us is None else min(first_us, key[3])
            last_us = part.latest_ts_us if last_us is None else max(last_us, part.latest_ts_us)
        n_customers += len(new_customers)
    first = EPOCH + timedelta(microseconds=first_us) if first_us is not None else None
    last = EPOCH + timedelta(microseconds=last_us) if last_us is not None else None
    return MeterSummary(n_events, n_customers, n_buckets, first, last)


@dataclass(frozen=True, slots=True)
class EventTotal:
    """Counted events of one customer on one meter in a range, and their values summed (an exact decimal at
    the meter's value scale: a quantity for sum meters, a plain total of readings for the others)."""

    customer: str
    meter: str
    events: int
    value_sum: Decimal


#: (customer, meter, start, end) ranges per statement of `range_totals`: 5 bound parameters each.
_RANGES_PER_QUERY = 150


def event_totals(engine: Engine, tenant_id: int, start: datetime, end: datetime) -> list[EventTotal]:
    """Every (customer, meter) with counted events in [start, end), from the rollups in one grouped query,
    sorted by (customer, meter). Events outside a meter's filter are stored but never counted: not here."""
    start_us, end_us = to_us(start), to_us(end)
    _check_range(start_us, end_us)
    r = rollups.c
    query = (
        select(r.customer, r.meter, r.value_scale, func.sum(r.events).label("events"), func.sum(r.sum_units).label("s"))
        .where(r.tenant_id == tenant_id, r.bucket_us >= start_us, r.bucket_us < end_us)
        .group_by(r.customer, r.meter, r.value_scale)
    )
    totals: dict[tuple[str, str], EventTotal] = {}

    def add(customer: str, meter: str, events: int, value: Decimal) -> None:
        prev = totals.get((customer, meter))
        if prev is not None:  # one meter's scale is frozen once it has events; added exactly all the same
            value, events = prev.value_sum + value, prev.events + events
        totals[(customer, meter)] = EventTotal(customer, meter, events, value)

    with snapshot(engine) as conn:
        refuse_overflows(conn, tenant_id, start_us, end_us)
        for i, row in enumerate(conn.execute(query)):
            if not i & _CHECK_EVERY:
                checkpoint()
            add(row.customer, row.meter, int(row.events), Decimal(int(row.s)).scaleb(-int(row.value_scale)))
        for key, part in pending_partials(conn, tenant_id).items():
            if start_us <= key[3] < end_us:
                add(key[1], key[0], part.events, Decimal(part.sum_units).scaleb(-part.value_scale))
    return [totals[k] for k in sorted(totals)]


def range_totals(
    engine: Engine, tenant_id: int, ranges: Sequence[tuple[str, str, datetime, datetime]]
) -> list[EventTotal]:
    """The counted events of each (customer, meter, start, end) range, in the order given: a few statements
    of `_RANGES_PER_QUERY` primary-key range reads each, so the cost follows the ranges, not the tenant."""
    bounds = []
    for _, _, a, b in ranges:
        a_us, b_us = to_us(a), to_us(b)
        _check_range(a_us, b_us)
        bounds.append((a_us, b_us))
    r = rollups.c
    out: list[EventTotal] = []
    with snapshot(engine) as conn:
        wanted = sorted({customer for customer, _, _, _ in ranges})
        for k in range(0, len(wanted), 500):
            refuse_overflows(conn, tenant_id, None, None, customers=wanted[k : k + 500])
        pend: dict[tuple[str, str], list[tuple[int, Partial]]] = {}
        if wanted:
            for key, part in pending_partials(conn, tenant_id, customers=wanted).items():
                pend.setdefault((key[1], key[0]), []).append((key[3], part))
        for k in range(0, len(ranges), _RANGES_PER_QUERY):
            checkpoint()
            parts = []
            for i, (customer, meter, _, _) in enumerate(ranges[k : k + _RANGES_PER_QUERY], start=k):
                a_us, b_us = bounds[i]
                where = (r.tenant_id == tenant_id, r.meter == meter, r.customer == customer)
                parts.append(
                    select(
                        literal(i).label("i"),
                        func.coalesce(func.sum(r.events), 0).label("events"),
                        func.coalesce(func.sum(r.sum_units), 0).label("s"),
                        func.max(r.value_scale).label("scale"),
                    ).where(*where, r.bucket_us >= a_us, r.bucket_us < b_us)
                )
            query = parts[0].union_all(*parts[1:]) if len(parts) > 1 else parts[0]
            rows = {int(row.i): row for row in conn.execute(query)}
            for i in range(k, min(k + _RANGES_PER_QUERY, len(ranges))):
                row = rows[i]
                scale = 0 if row.scale is None else int(row.scale)
                customer, meter = ranges[i][0], ranges[i][1]
                n_events, value = int(row.events), Decimal(int(row.s)).scaleb(-scale)
                for bucket_us, part in pend.get((customer, meter), ()):
                    if bounds[i][0] <= bucket_us < bounds[i][1]:
                        n_events += part.events
                        value += Decimal(part.sum_units).scaleb(-part.value_scale)
                out.append(EventTotal(customer, meter, n_events, value))
    return out


@dataclass(frozen=True, slots=True)
class Transaction:
    """One counted event, for prices that rate each transaction on its own (fixed fee, minimum and
    maximum per transaction, the first N free): rollups keep sums, which cannot say any of that."""

    ts_us: int
    event_id: str
    group_key: str
    value: Decimal


def transactions(
    engine: Engine,
    tenant_id: int,
    meter: Meter,
    start: datetime,
    end: datetime,
    customers: Sequence[str] | None = None,
) -> dict[str, list[Transaction]]:
    """Every event `meter` counts in [start, end), per customer in time order (ties by event id).

    The same events the rollups count: the meter's filter applies and the group key is the rollups'
    (so per-dimension sums equal the rollup quantities exactly); a `count` meter's events weigh 1.
    Only `sum` and `count` meters have per-event amounts to rate.
    """
    if meter.aggregation not in (Aggregation.SUM, Aggregation.COUNT):
        raise FailedPrecondition(f"meter {meter.code!r} is a {meter.aggregation.value} meter: no per-event amounts")
    spec = meter.spec
    e = events.c
    query = (
        select(e.customer, e.ts_us, e.event_id, e.value_units, e.value_scale, e.properties)
        .where(e.tenant_id == tenant_id, e.meter == meter.code, e.ts_us >= to_us(start), e.ts_us < to_us(end))
        .order_by(e.customer, e.ts_us, e.event_id)
    )
    if customers is not None:
        query = query.where(e.customer.in_(list(customers)))
    count = meter.aggregation is Aggregation.COUNT
    out: dict[str, list[Transaction]] = {}
    with engine.connect() as conn:
        for n, row in enumerate(conn.execute(query)):
            if not n & 4095:
                checkpoint()
            props = json.loads(row.properties) if row.properties else {}
            key = group_key(spec, props)
            if key is None:  # outside the meter's filter: stored, never counted
                continue
            value = Decimal(1) if count else Decimal(int(row.value_units)).scaleb(-int(row.value_scale))
            out.setdefault(row.customer, []).append(Transaction(int(row.ts_us), row.event_id, key, value))
    return out
