"""Reading through the watermark: rollups plus the events committed but not yet folded into them.

The fold (metering/fold.py) trails the ack, so a query that read rollups alone would miss the newest
acked events. Every usage read therefore adds, to the rollups it reads, the partials of the events named
by the tenant's `ingest_pending` rows, all in one snapshot: a fold that commits meanwhile moves events
from "pending" to "rollups" atomically, and the reader sees either side, never both or neither.

SQLite gives a connection one snapshot per transaction (tally.db begins one on first use); PostgreSQL
needs REPEATABLE READ for that (READ COMMITTED takes a new snapshot per statement), which `snapshot`
asks for. Read-only REPEATABLE READ transactions never fail with serialization errors.

Pending events are few (the fold keeps up within a fold cycle), and they are read by rowid range
(SQLite) or heap block range (PostgreSQL) with the query's meter and customers as filters.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import DBAPIError

from metering.errors import FailedPrecondition
from metering.fold import fold_partials, pending_events, pending_rows, pending_sums, tenant_specs
from metering.meter import Aggregation, MeterSpec
from metering.rollup import BUCKET_US, Key, Partial
from metering.tables import rollup_overflows

_CUSTOMERS_PER_QUERY = 500


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A connection whose reads all see one snapshot (see the module's docstring)."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        yield conn


def pending_partials(
    conn: Connection,
    tenant_id: int,
    *,
    meter: str | None = None,
    customers: Sequence[str] | None = None,
    specs: dict[str, MeterSpec] | None = None,
    before_us: int | None = None,
) -> dict[Key, Partial]:
    """Partials of the tenant's events not yet folded (optionally of one meter, some customers, stamped
    before `before_us`), keyed as rollups are. Gauge partials carry their points; call `gauge_bucket` on
    them together with the bucket's stored points."""
    rows = pending_rows(conn, tenant_id)
    into: dict[Key, Partial] = {}
    if not rows:
        return into
    if specs is None:
        specs = tenant_specs(conn, tenant_id)
    chunks: list[Sequence[str] | None] = [None]
    if customers is not None:
        chunks = [customers[k : k + _CUSTOMERS_PER_QUERY] for k in range(0, len(customers), _CUSTOMERS_PER_QUERY)]
    for row in rows:
        for chunk in chunks:
            found = pending_events(conn, row, meter=meter, customers=chunk, before_us=before_us)
            fold_partials(conn, tenant_id, found, specs, into)
    return into


_RUNNING = (Aggregation.COUNT, Aggregation.SUM, Aggregation.MAX, Aggregation.MIN)


def pending_running_totals(
    conn: Connection,
    tenant_id: int,
    *,
    meter: str,
    spec: MeterSpec,
    customers: Sequence[str],
    start_us: int,
    end_us: int,
) -> dict[str, list[int]] | None:
    """Per customer [events, sum, max, min] of the unfolded events of `meter` in the rollup buckets that
    start in [start_us, end_us), as `pending_partials` would add them up, but summed by the database: a
    reload of many customers under ingest then costs a scan in C, not a Python fold of every pending event.

    None when the meter needs the events themselves (a filter, group_by, unique_count, gauge, latest), when
    a stored value has another scale than the meter's, or when SQLite's integer sum overflows: the caller
    then folds `pending_partials`, which is exact in every case.
    """
    if spec.filter or spec.group_by or spec.aggregation not in _RUNNING:
        return None
    out: dict[str, list[int]] = {}
    rows = pending_rows(conn, tenant_id)
    if not rows or not customers:
        return out
    # An event is in the bucket starting floor(ts); that bucket is in [start, end) iff ts is in
    # [ceil(start), ceil(end)) with both rounded up to bucket boundaries.
    from_us, to_us = -(-start_us // BUCKET_US) * BUCKET_US, -(-end_us // BUCKET_US) * BUCKET_US
    chunks = [customers[k : k + _CUSTOMERS_PER_QUERY] for k in range(0, len(customers), _CUSTOMERS_PER_QUERY)]
    try:
        for row in rows:
            for chunk in chunks:
                for customer, scale, events, total, high, low in pending_sums(
                    conn, row, meter=meter, customers=chunk, from_us=from_us, to_us=to_us
                ):
                    if scale != spec.value_scale:
                        return None
                    acc = out.get(customer)
                    if acc is None:
                        out[customer] = [int(events), int(total), int(high), int(low)]
                    else:
                        acc[0] += int(events)
                        acc[1] += int(total)
                        acc[2] = max(acc[2], int(high))
                        acc[3] = min(acc[3], int(low))
    except DBAPIError:
        if conn.dialect.name != "sqlite":  # PostgreSQL sums bigints as numeric: no overflow to fall back from
            raise
        return None  # SQLite's sum() refuses to leave 64 bits; the Python fold's integers do not
    return out


def refuse_overflows(
    conn: Connection,
    tenant_id: int,
    start_us: int | None,
    end_us: int | None,
    *,
    meter: str | None = None,
    customers: Sequence[str] | None = None,
) -> None:
    """FAILED_PRECONDITION when a bucket the read covers holds a total the fold could not store in 64 bits."""
    o = rollup_overflows.c
    query = select(o.meter, o.customer, o.bucket_us, o.events).where(o.tenant_id == tenant_id).limit(1)
    if meter is not None:
        query = query.where(o.meter == meter)
    if customers is not None:
        query = query.where(o.customer.in_(list(customers)))
    if start_us is not None:
        query = query.where(o.bucket_us >= start_us)
    if end_us is not None:
        query = query.where(o.bucket_us < end_us)
    found = conn.execute(query).first()
    if found is not None:
        raise FailedPrecondition(
            f"usage of {found.meter!r} by {found.customer!r} does not fit 64-bit units: a 15-minute total left "
            f"64 bits when {found.events} events were added to it (they are stored; see rollup_overflows)"
        )


__all__ = ["pending_partials", "pending_running_totals", "refuse_overflows", "snapshot"]
