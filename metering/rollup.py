"""Rollups: usage pre-aggregated per (tenant, meter, customer, dimension values, 15-minute bucket).

The fold (metering/fold.py) calls `partials` on the events a commit really inserted (never on
duplicates) and `upsert`s them in a transaction after the ack's; readers add what is not folded yet
(metering/pending.py), so a committed event is in every usage query at once. A late event simply lands
in its own (older) bucket.

Each bucket keeps what lets buckets combine exactly: count, sum, min, max and the latest event by
(timestamp, event_id). unique_count meters also keep each distinct property value per bucket
(`rollup_values`), so a distinct count over any range is exact. gauge meters keep every reading
(`gauge_points`) and, per bucket, the first reading's time and the integral from it to the bucket's
end; a bucket touched by a batch (late readings included) is recomputed from its points in the same
transaction, and a query chains buckets, carrying each bucket's latest value across the gaps.

Sums are Python integers until they reach the database; there, PostgreSQL's bigint raises on
overflow, and SQLite (which would silently turn an overflowing integer into a float) adds through
`checked_sum_sql`, which makes such a sum NULL and so fails the column's NOT NULL. Overflow never
corrupts a total: the fold records the bucket in `rollup_overflows` and queries reading it refuse (metering/fold.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, delete, func, select

from metering.event import PreparedBatch
from metering.meter import Aggregation, MeterSpec, group_key
from metering.sqlite import checked_sum_sql, execute_values
from metering.tables import events, gauge_points, rollup_values, rollups, rollups_day
from metering.transactions import begin_write

BUCKET_US = 15 * 60 * 1_000_000
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

Key = tuple[str, str, str, int]  # meter, customer, group_key, bucket_us


Point = tuple[int, str, int]  # ts_us, event_id, units: one gauge reading


@dataclass(slots=True)
class Partial:
    value_scale: int
    events: int
    sum_units: int
    min_units: int
    max_units: int
    latest_ts_us: int
    latest_event_id: str
    latest_units: int
    # unique_count meters: the distinct values seen in this bucket (None for other aggregations).
    distinct: set[str] | None = None
    # gauge meters: readings in this bucket, and what they integrate to once the bucket is complete.
    points: set[Point] | None = None
    gauge_first_ts_us: int | None = None
    gauge_integral: int | None = None

    def add(self, units: int, ts_us: int, event_id: str) -> None:
        self.events += 1
        self.sum_units += units
        if units < self.min_units:
            self.min_units = units
        if units > self.max_units:
            self.max_units = units
        if (ts_us, event_id) > (self.latest_ts_us, self.latest_event_id):
            self.latest_ts_us, self.latest_event_id, self.latest_units = ts_us, event_id, units

    def totals(self) -> Partial:
        """A copy of the count, sum, min, max and latest only (what the day tier keeps)."""
        return Partial(self.value_scale, self.events, self.sum_units, self.min_units, self.max_units,
                       self.latest_ts_us, self.latest_event_id, self.latest_units)  # fmt: skip

    def merge_totals(self, other: Partial) -> None:
        self.events += other.events
        self.sum_units += other.sum_units
        self.min_units = min(self.min_units, other.min_units)
        self.max_units = max(self.max_units, other.max_units)
        if (other.latest_ts_us, other.latest_event_id) > (self.latest_ts_us, self.latest_event_id):
            self.latest_ts_us, self.latest_event_id = other.latest_ts_us, other.latest_event_id
            self.latest_units = other.latest_units

    def merge(self, other: Partial) -> None:
        self.merge_totals(other)
        if other.distinct is not None:
            self.distinct = (self.distinct or set()) | other.distinct
        if other.points is not None:
            self.points = (self.points or set()) | other.points


def gauge_bucket(bucket_us: int, points: Iterable[Point]) -> tuple[int, int]:
    """(first reading's time, integral from it to the bucket's end in units x us) of one complete bucket.

    Readings apply from their timestamp on; at equal timestamps the larger event id is the later one,
    so the earlier reading holds for zero time. Raises OverflowError rather than store a wrapped value.
    """
    ordered = sorted(points)
    end = bucket_us + BUCKET_US
    integral = 0
    for (t, _, units), nxt in zip(ordered, [*ordered[1:], (end, "", 0)], strict=True):
        integral += units * (nxt[0] - t)
    if not INT64_MIN <= integral <= INT64_MAX:
        raise OverflowError(f"gauge integral {integral} of one bucket leaves 64 bits")
    return ordered[0][0], integral


def counted(spec: MeterSpec, properties: str | None) -> tuple[bool, str]:
    """(whether the meter counts this event, its group key), from the event's canonical properties."""
    if not spec.filter and not spec.group_by:
        return True, ""
    key = group_key(spec, json.loads(properties) if properties else {})
    return (False, "") if key is None else (True, key)


def unique_value(spec: MeterSpec, properties: str | None) -> str | None:
    """The value a unique_count meter counts, or None when the event does not carry the property."""
    if not properties or spec.unique_property is None:
        return None
    value = json.loads(properties).get(spec.unique_property)
    return value if isinstance(value, str) else None


def partials(
    batch: PreparedBatch, positions: Iterable[int], specs: Mapping[str, MeterSpec], into: dict[Key, Partial]
) -> None:
    """Fold the events at `positions` of a batch into per-bucket partials (pure; no I/O)."""
    if (
        isinstance(positions, range | list)
        and len(positions) >= _VECTOR_MIN
        and _vectorised(batch, positions, specs, into)
    ):
        return
    customers, meters, ts, units, ids, props = (
        batch.customers,
        batch.meters,
        batch.ts_us,
        batch.value_units,
        batch.event_ids,
        batch.properties,
    )
    for k in positions:
        meter = meters[k]
        spec = specs[meter]
        ok, group_key = counted(spec, props[k])
        if not ok:
            continue
        t = ts[k]
        key = (meter, customers[k], group_key, t - t % BUCKET_US)
        p = into.get(key)
        u = units[k]
        if p is None:
            p = into[key] = Partial(batch.value_scale[k], 1, u, u, u, t, ids[k], u)
        else:
            p.add(u, t, ids[k])
        if spec.aggregation is Aggregation.UNIQUE_COUNT:
            if p.distinct is None:
                p.distinct = set()
            value = unique_value(spec, props[k])
            if value is not None:
                p.distinct.add(value)
        elif spec.aggregation is Aggregation.GAUGE:
            if p.points is None:
                p.points = set()
            p.points.add((t, ids[k], u))


_VECTOR_MIN = 64  # below this the numpy set-up costs more than the plain loop
_KEEPS_DETAIL = (Aggregation.UNIQUE_COUNT, Aggregation.GAUGE)  # need per-event detail: the plain loop


def _columns(batch: PreparedBatch, positions: Sequence[int]) -> tuple[list[Any], ...]:
    """(meters, customers, ts_us, value_units, event_ids) of the events at `positions`."""
    cols = (batch.meters, batch.customers, batch.ts_us, batch.value_units, batch.event_ids)
    if isinstance(positions, range) and len(positions) == len(batch):
        return cols
    return tuple([col[k] for k in positions] for col in cols)


def _one_plain_meter(meters: list[str], specs: Mapping[str, MeterSpec]) -> MeterSpec | None:
    """The meter's spec when every event is of one meter with no filter, group_by or per-event detail:
    the case `_reduce` handles."""
    spec = specs[meters[0]]
    if spec.filter or spec.group_by or spec.aggregation in _KEEPS_DETAIL or meters.count(meters[0]) != len(meters):
        return None
    return spec


def _vectorised(
    batch: PreparedBatch, positions: range | list[int], specs: Mapping[str, MeterSpec], into: dict[Key, Partial]
) -> bool:
    """The common case in C loops: one meter, no filter, no group_by. Returns False when it does not apply."""
    meters, customers, ts, units, ids = _columns(batch, positions)
    if _one_plain_meter(meters, specs) is None:
        return False
    return _reduce(meters[0], batch.value_scale[positions[0]], customers, ts, units, ids, into)


def partials_many(parts: Sequence[tuple[PreparedBatch, Sequence[int]]], into: dict[Key, Partial]) -> None:
    """`partials` over several batches (each with its own `specs`), as one vectorised pass where it applies.

    The fold takes every batch committed since the last one: per batch, each customer's bucket became a
    Partial that was then merged in Python (1.3 ms per 1,000 events at one event per customer and
    batch); concatenated, the batches sharing a meter reduce in one pass and merge once per bucket.
    """
    runs: dict[tuple[str, MeterSpec, int], list[tuple[PreparedBatch, Sequence[int], tuple[list[Any], ...]]]] = {}
    for batch, positions in parts:
        if not len(positions):
            continue
        cols = _columns(batch, positions)
        spec = _one_plain_meter(cols[0], batch.specs)
        if spec is None:
            partials(batch, positions, batch.specs, into)
            continue
        runs.setdefault((cols[0][0], spec, batch.value_scale[positions[0]]), []).append((batch, positions, cols))
    for (meter, _, scale), run in runs.items():
        customers, ts, units, ids = (list(chain.from_iterable(cols[c] for *_, cols in run)) for c in range(1, 5))
        if not _reduce(meter, scale, customers, ts, units, ids, into):
            for batch, positions, _cols in run:
                partials(batch, positions, batch.specs, into)


def _reduce(
    meter: str,
    scale: int,
    customers: Sequence[str],
    ts: Sequence[int],
    units: Sequence[int],
    ids: Sequence[str],
    into: dict[Key, Partial],
) -> bool:
    """Count, sum, min, max and latest per (customer, bucket) of one meter's events, merged into `into`.
    False (nothing done) when n * max|units| could leave int64, so that sums stay exact.

    Customers are numbered through a dict (no string sort); sorting by (group, timestamp) puts each
    bucket's latest event last, and only buckets whose last two events share a timestamp look at event
    ids (the tie-break of `Partial.add`).
    """
    n = len(units)
    u = np.array(units, dtype=np.int64)
    if max(-int(u.min()), int(u.max())) * n > INT64_MAX:
        return False
    t = np.array(ts, dtype=np.int64)
    names = list(dict.fromkeys(customers))
    number = dict(zip(names, range(len(names)), strict=True))
    cust_idx = np.fromiter(map(number.__getitem__, customers), dtype=np.int64, count=n)
    buckets, bucket_idx = np.unique(t - t % BUCKET_US, return_inverse=True)
    group = cust_idx * len(buckets) + bucket_idx
    order = np.lexsort((t, group))
    g = group[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    lasts = np.r_[starts[1:], n] - 1
    us = u[order]
    counts = np.diff(np.r_[starts, n])
    sums = np.add.reduceat(us, starts)
    mins = np.minimum.reduceat(us, starts)
    maxs = np.maximum.reduceat(us, starts)
    latest = order[lasts].tolist()
    t_sorted = t[order]
    tied = np.flatnonzero((lasts > starts) & (t_sorted[lasts] == t_sorted[np.maximum(lasts - 1, 0)]))
    for j in tied.tolist():  # rare: equal timestamps at a bucket's end; the larger event id is the latest
        top = t_sorted[lasts[j]]
        candidates = [int(k) for k in order[starts[j] : lasts[j] + 1] if ts[k] == top]
        latest[j] = max(candidates, key=ids.__getitem__)
    # Plain lists once: indexing numpy scalars one at a time costs more than the whole fold.
    n_buckets = len(buckets)
    bucket_list = buckets.tolist()
    for gid, c, s_, lo, hi, k in zip(
        g[starts].tolist(), counts.tolist(), sums.tolist(), mins.tolist(), maxs.tolist(), latest, strict=True
    ):
        part = Partial(scale, c, s_, lo, hi, ts[k], ids[k], units[k])
        key = (meter, names[gid // n_buckets], "", bucket_list[gid % n_buckets])
        existing = into.get(key)
        if existing is None:
            into[key] = part
        else:
            existing.merge(part)
    return True


_COLUMNS = (
    "(tenant_id, meter, customer, group_key, {}, value_scale, events, sum_units, min_units, max_units,"
    " latest_ts_us, latest_event_id, latest_units)"
)
_UPSERT_HEAD = "INSERT INTO rollups " + _COLUMNS.format("bucket_us")
_DAY_HEAD = "INSERT INTO rollups_day " + _COLUMNS.format("day_us")
_UPSERT_COLUMNS = 13
DAY_US = 86_400 * 1_000_000
_SORT_ROWS_MIN = 4_096


def _upsert_sql(dialect: str, values: bool = True, day: bool = False) -> str:
    """The upsert (of the day tier with `day`); without `values`, only what follows the VALUES (SQLite's
    multi-row statements)."""
    t, head, when = ("rollups_day", _DAY_HEAD, "day_us") if day else ("rollups", _UPSERT_HEAD, "bucket_us")
    add = (
        checked_sum_sql(f"{t}.sum_units", "excluded.sum_units")
        if dialect == "sqlite"
        else f"{t}.sum_units + excluded.sum_units"
    )
    least, greatest = ("min", "max") if dialect == "sqlite" else ("LEAST", "GREATEST")
    ph = "?" if dialect == "sqlite" else "%s"
    later = f"(excluded.latest_ts_us, excluded.latest_event_id) > ({t}.latest_ts_us, {t}.latest_event_id)"
    return (
        (f"{head} VALUES ({', '.join([ph] * _UPSERT_COLUMNS)})" if values else "")
        + f" ON CONFLICT (tenant_id, meter, customer, group_key, {when}) DO UPDATE SET"
        f" events = {t}.events + excluded.events,"
        f" sum_units = {add},"
        f" min_units = {least}({t}.min_units, excluded.min_units),"
        f" max_units = {greatest}({t}.max_units, excluded.max_units),"
        f" latest_units = CASE WHEN {later} THEN excluded.latest_units ELSE {t}.latest_units END,"
        f" latest_event_id = CASE WHEN {later} THEN excluded.latest_event_id ELSE {t}.latest_event_id END,"
        f" latest_ts_us = CASE WHEN {later} THEN excluded.latest_ts_us ELSE {t}.latest_ts_us END"
    )


#: PostgreSQL's upserts: one statement over the rows as one JSON document (json.dumps is C; psycopg dumps a
#: Python list for an array parameter element by element in Python).
_PG_ROWS = (
    " SELECT %s::integer, v->>0, v->>1, v->>2, (v->>3)::bigint, (v->>4)::smallint, (v->>5)::bigint,"
    " (v->>6)::bigint, (v->>7)::bigint, (v->>8)::bigint, (v->>9)::bigint, v->>10, (v->>11)::bigint"
    " FROM json_array_elements(%s::json) AS r(v)"
)
_PG_JSON = _UPSERT_HEAD + _PG_ROWS + _upsert_sql("postgresql", values=False)
_PG_JSON_DAY = _DAY_HEAD + _PG_ROWS + _upsert_sql("postgresql", values=False, day=True)


def upsert_rows(tenant_id: int, into: Mapping[Key, Partial], ordered: bool = True) -> list[tuple[Any, ...]]:
    """Rows, in key order when `ordered`, so concurrent PostgreSQL writers lock rollup rows in one order.

    SQLite has a single writer and no row locks: it sorts only large upserts, for locality (see `_write`).
    """
    items = sorted(into.items()) if ordered else into.items()
    return [
        (tenant_id, *key, p.value_scale, p.events, p.sum_units, p.min_units, p.max_units, p.latest_ts_us,
         p.latest_event_id, p.latest_units)
        for key, p in items
    ]  # fmt: skip


def _values_sql(dialect: str) -> str:
    ph = ", ".join(["?" if dialect == "sqlite" else "%s"] * 6)
    return (
        f"INSERT INTO rollup_values (tenant_id, meter, customer, group_key, bucket_us, value) VALUES ({ph})"
        " ON CONFLICT DO NOTHING"
    )


def _points_sql(dialect: str) -> str:
    ph = ", ".join(["?" if dialect == "sqlite" else "%s"] * 7)
    return (
        "INSERT INTO gauge_points (tenant_id, meter, customer, group_key, ts_us, event_id, units)"
        f" VALUES ({ph}) ON CONFLICT DO NOTHING"
    )


def _bucket_points_sql(dialect: str) -> str:
    ph = "?" if dialect == "sqlite" else "%s"
    return (
        f"SELECT ts_us, event_id, units FROM gauge_points WHERE tenant_id = {ph} AND meter = {ph} AND customer = {ph}"
        f" AND group_key = {ph} AND ts_us >= {ph} AND ts_us < {ph}"
    )


def _gauge_update_sql(dialect: str) -> str:
    ph = "?" if dialect == "sqlite" else "%s"
    return (
        f"UPDATE rollups SET gauge_first_ts_us = {ph}, gauge_integral = {ph} WHERE tenant_id = {ph} AND meter = {ph}"
        f" AND customer = {ph} AND group_key = {ph} AND bucket_us = {ph}"
    )


class _Exec:
    """The few statements an upsert needs, over a SQLAlchemy connection or a raw DB-API cursor."""

    def __init__(self, dialect: str, many: Any, query: Any, execute: Any) -> None:
        self.dialect, self.many, self.query, self.execute = dialect, many, query, execute


def by_day(into: Mapping[Key, Partial]) -> dict[Key, Partial]:
    """The partials of the day tier: each bucket's count, sum, min, max and latest, merged per UTC day
    (keys keep their shape, with the day's start in place of the bucket's). `into` is not changed: a day
    with one plain bucket (the usual case in a fold) shares that bucket's Partial, and any other gets a
    copy of the totals before the first merge."""
    days: dict[Key, Partial] = {}
    shared: set[Key] = set()
    for (meter, customer, group, bucket), part in into.items():
        key = (meter, customer, group, bucket - bucket % DAY_US)
        held = days.get(key)
        if held is None:
            if part.distinct is None and part.points is None and part.gauge_integral is None:
                days[key] = part
                shared.add(key)
            else:  # the day tier keeps no distinct values or gauge detail
                days[key] = part.totals()
            continue
        if key in shared:
            shared.discard(key)
            held = days[key] = held.totals()
        held.merge_totals(part)
    return days


def _write(ex: _Exec, tenant_id: int, into: Mapping[Key, Partial]) -> None:
    """Upsert the partials into both tiers, then the distinct values and gauge points some of them carry."""
    days = by_day(into)
    if ex.dialect == "sqlite":  # multi-row statements: metering/sqlite.py says why not executemany
        # Key order only for large upserts: into a large table, rows in key order visit each page once
        # (a backfill's fold: +15-35 %); a live fold's few thousand rows are cheaper unsorted.
        ordered = len(into) > _SORT_ROWS_MIN
        flat = tuple(chain.from_iterable(upsert_rows(tenant_id, into, ordered=ordered)))
        execute_values(ex.execute, _UPSERT_HEAD, _UPSERT_COLUMNS, _upsert_sql("sqlite", values=False), flat)
        flat = tuple(chain.from_iterable(upsert_rows(tenant_id, days, ordered=ordered)))
        execute_values(ex.execute, _DAY_HEAD, _UPSERT_COLUMNS, _upsert_sql("sqlite", False, day=True), flat)
    else:
        # One statement: executemany sent a statement per bucket, and its per-row Python (pipeline, dump)
        # made the PostgreSQL folder the busiest thread of the server under ingest.
        ex.execute(_PG_JSON, (tenant_id, json.dumps([row[1:] for row in upsert_rows(tenant_id, into)])))
        ex.execute(_PG_JSON_DAY, (tenant_id, json.dumps([row[1:] for row in upsert_rows(tenant_id, days)])))
    detailed = sorted((k, p) for k, p in into.items() if p.distinct is not None or p.points is not None)
    values = [(tenant_id, *key, v) for key, p in detailed if p.distinct for v in sorted(p.distinct)]
    if values:
        ex.many(_values_sql(ex.dialect), values)
    gauges = [(key, p.points) for key, p in detailed if p.points is not None]
    if not gauges:
        return
    ex.many(_points_sql(ex.dialect), [(tenant_id, *key[:3], *pt) for key, points in gauges for pt in sorted(points)])
    updates = []
    for key, _ in gauges:
        bucket = key[3]
        rows = ex.query(_bucket_points_sql(ex.dialect), (tenant_id, *key[:3], bucket, bucket + BUCKET_US))
        first, integral = gauge_bucket(bucket, [(int(t), str(e), int(u)) for t, e, u in rows])
        updates.append((first, integral, tenant_id, *key))
    ex.many(_gauge_update_sql(ex.dialect), updates)


def upsert(conn: Connection, tenant_id: int, into: Mapping[Key, Partial]) -> None:
    if not into:
        return
    _write(
        _Exec(
            conn.dialect.name,
            lambda sql, rows: conn.exec_driver_sql(sql, rows),
            lambda sql, params: conn.exec_driver_sql(sql, params).all(),
            conn.exec_driver_sql,
        ),
        tenant_id,
        into,
    )


def upsert_dbapi(cursor: Any, dialect: str, tenant_id: int, into: Mapping[Key, Partial]) -> None:
    if not into:
        return

    def query(sql: str, params: tuple[Any, ...]) -> list[Any]:
        cursor.execute(sql, params)
        return list(cursor.fetchall())

    def execute(sql: str, params: tuple[Any, ...]) -> Any:
        cursor.execute(sql, params)
        return cursor

    _write(_Exec(dialect, cursor.executemany, query, execute), tenant_id, into)


# --- rebuild and verification ----------------------------------------------------------------------


def compute_from_events(
    conn: Connection, tenant_id: int, meter: str, spec: MeterSpec, chunk_rows: int = 50_000
) -> dict[Key, Partial]:
    """Recompute a meter's rollups from raw events (streamed in chunks: memory stays bounded by buckets)."""
    query = (
        select(
            events.c.event_id,
            events.c.customer,
            events.c.meter,
            events.c.ts_us,
            events.c.value_units,
            events.c.value_scale,
            events.c.properties,
        )
        .where(events.c.tenant_id == tenant_id, events.c.meter == meter)
        .execution_options(yield_per=chunk_rows)
    )
    out: dict[Key, Partial] = {}
    for chunk in conn.execute(query).partitions():
        batch = _as_batch(tenant_id, chunk)
        partials(batch, range(len(batch)), {meter: spec}, out)
    for key, part in out.items():
        if part.points:
            part.gauge_first_ts_us, part.gauge_integral = gauge_bucket(key[3], part.points)
    return out


def _as_batch(tenant_id: int, rows: Sequence[Any]) -> PreparedBatch:
    n = len(rows)
    return PreparedBatch(
        tenant_id, "", n, False, range(n), [r.event_id for r in rows], [r.customer for r in rows],
        [r.meter for r in rows], [r.ts_us for r in rows], [r.value_units for r in rows],
        [r.value_scale for r in rows], [r.properties for r in rows],
    )  # fmt: skip


def stored(conn: Connection, tenant_id: int, meter: str, spec: MeterSpec) -> dict[Key, Partial]:
    """A meter's rollups as stored, with their distinct values and gauge points, for comparison."""
    rows = conn.execute(select(rollups).where(rollups.c.tenant_id == tenant_id, rollups.c.meter == meter)).all()
    out = {
        (r.meter, r.customer, r.group_key, r.bucket_us): Partial(
            r.value_scale, r.events, r.sum_units, r.min_units, r.max_units, r.latest_ts_us, r.latest_event_id,
            r.latest_units, gauge_first_ts_us=r.gauge_first_ts_us, gauge_integral=r.gauge_integral,
        )
        for r in rows
    }  # fmt: skip
    if spec.aggregation is Aggregation.UNIQUE_COUNT:
        for part in out.values():
            part.distinct = set()
        v = rollup_values.c
        for r in conn.execute(select(rollup_values).where(v.tenant_id == tenant_id, v.meter == meter)):
            out[(r.meter, r.customer, r.group_key, r.bucket_us)].distinct.add(r.value)  # type: ignore[union-attr]
    if spec.aggregation is Aggregation.GAUGE:
        for part in out.values():
            part.points = set()
        g = gauge_points.c
        for r in conn.execute(select(gauge_points).where(g.tenant_id == tenant_id, g.meter == meter)):
            key = (r.meter, r.customer, r.group_key, r.ts_us - r.ts_us % BUCKET_US)
            out[key].points.add((r.ts_us, r.event_id, r.units))  # type: ignore[union-attr]
    return out


def stored_days(conn: Connection, tenant_id: int, meter: str) -> dict[Key, Partial]:
    """A meter's day tier as stored (keys as `by_day` gives them), for comparison."""
    d = rollups_day.c
    return {
        (r.meter, r.customer, r.group_key, r.day_us): Partial(
            r.value_scale, r.events, r.sum_units, r.min_units, r.max_units, r.latest_ts_us, r.latest_event_id,
            r.latest_units,
        )
        for r in conn.execute(select(rollups_day).where(d.tenant_id == tenant_id, d.meter == meter))
    }  # fmt: skip


@dataclass(frozen=True, slots=True)
class RebuildReport:
    meter: str
    buckets: int
    events: int
    mismatched_before: int  # buckets whose stored rollup differed from the raw events (0 = they agreed)


def rebuild(engine: Engine, tenant_id: int, meter: str, spec: MeterSpec) -> RebuildReport:
    """Recompute a meter's rollups from raw events, compare, and replace them, in one transaction.

    The transaction holds the write lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: events locked in SHARE
    mode), so no event can commit between the recompute and the replacement: ingest waits for the
    rebuild (its queue applies back-pressure) and queries see the old rollups or the new, never a mix.
    """
    from metering.fold import fold_in

    with begin_write(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("LOCK TABLE events IN SHARE MODE")
        # Pending commits first: once the rollups are recomputed from every event, a later fold of those
        # commits would count them twice.
        fold_in(conn, tenant_id)
        fresh = compute_from_events(conn, tenant_id, meter, spec)
        before = stored(conn, tenant_id, meter, spec)
        mismatched = sum(1 for k in fresh.keys() | before.keys() if fresh.get(k) != before.get(k))
        for table in (rollups, rollups_day, rollup_values, gauge_points):
            conn.execute(delete(table).where(table.c.tenant_id == tenant_id, table.c.meter == meter))
        upsert(conn, tenant_id, fresh)
    return RebuildReport(meter, len(fresh), sum(p.events for p in fresh.values()), mismatched)


def count_buckets(engine: Engine, tenant_id: int) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(rollups).where(rollups.c.tenant_id == tenant_id)
        ).scalar_one()
