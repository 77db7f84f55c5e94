"""Folding committed events into rollups, after the ack.

An ingest commit stores its events and, in the same transaction, one `ingest_pending` row per tenant
naming where those events are (metering/tables.py). The ack goes out after that COMMIT: it means the
events are durable. Folding them into `rollups` is this module's follow-on step, in a transaction of its
own that upserts the rollups and deletes the `ingest_pending` rows it folded, so the two change together:

* durable and idempotent: a kill -9 after the ack and before the fold leaves the rows, and the next fold
  (after restart, by any process) folds those events once; a kill -9 inside the fold rolls it back whole.
* exact under concurrency: PostgreSQL's writers commit in any order, so a single "highest sequence
  folded" would skip a commit that finishes late; the rows are the watermark instead: each tenant's
  rollups hold exactly its events not named by a visible `ingest_pending` row. Two folders never fold the
  same row: PostgreSQL locks the rows it takes (`FOR UPDATE SKIP LOCKED`), SQLite has one writer.
* reads stay exact meanwhile: metering/pending.py adds the events of the visible rows to the rollups,
  in the reader's snapshot.

A fold never fails on data: a bucket whose total would leave 64 bits is recorded in `rollup_overflows`
(its stored row is left as it was) and queries that read it refuse with FAILED_PRECONDITION; the events
are stored and acked, and nothing is silently dropped. Before this module, such an event was refused at
commit time (STORAGE_REFUSED); it cannot be now, since the ack no longer waits for the total.

Freshness: the `Folder` thread folds as soon as a commit of this process tells it to, and every
`interval_s` for rows written by other processes or left by a crash; at the benchmark's rates rollups
trail the ack by well under the documented second. Each fold transaction takes at most `events_max`
events, so it holds SQLite's write lock briefly and ingest commits interleave with it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, delete, select

from metering.event import PreparedBatch
from metering.meter import MeterSpec
from metering.rollup import Key, Partial, partials, partials_many, upsert
from metering.tables import ingest_pending, meters, rollup_overflows
from metering.transactions import begin_write

log = logging.getLogger(__name__)

#: Events folded in one transaction at most (one pending row is always taken whole).
FOLD_EVENTS_MAX = 50_000
_ROWS_MAX = 2_000
_EVENT_COLUMNS = "event_id, customer, meter, ts_us, value_units, value_scale, properties"


@dataclass(frozen=True, slots=True)
class Pending:
    """One `ingest_pending` row: where one commit put one tenant's events."""

    id: int
    tenant_id: int
    lo: int
    hi: int
    xid: int
    events: int
    committed_at_us: int


class FoldError(RuntimeError):
    """A pending row's events were not all found where it says they are: nothing is folded."""


def pending_rows(conn: Connection, tenant_id: int | None = None, *, lock: bool = False) -> list[Pending]:
    p = ingest_pending.c
    query = select(p.id, p.tenant_id, p.lo, p.hi, p.xid, p.events, p.committed_at_us).order_by(p.id)
    if tenant_id is not None:
        query = query.where(p.tenant_id == tenant_id)
    if lock:
        query = query.limit(_ROWS_MAX)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
    return [Pending(*row) for row in conn.execute(query)]


def pending_events(
    conn: Connection,
    row: Pending,
    *,
    meter: str | None = None,
    customers: Sequence[str] | None = None,
    before_us: int | None = None,
) -> list[Any]:
    """The events of one pending row (event_id, customer, meter, ts_us, value_units, value_scale,
    properties), optionally only those of `meter`, of `customers`, stamped before `before_us`."""
    extra, params = _filters(conn.dialect.name, meter, customers, before_us)
    if conn.dialect.name == "sqlite":
        # NOT INDEXED: given `tenant_id = ?`, SQLite's planner prefers the primary key's index and then walks
        # every event of the tenant to find the commit's rowids (measured: 1 s per read under ingest).
        sql = f"SELECT {_EVENT_COLUMNS} FROM events NOT INDEXED WHERE rowid BETWEEN ? AND ? AND tenant_id = ?{extra}"
        return list(conn.exec_driver_sql(sql, (row.lo, row.hi, row.tenant_id, *params)).all())
    # A TID range scan over the commit's heap blocks; xmin tells its rows from a concurrent writer's.
    sql = (
        f"SELECT {_EVENT_COLUMNS} FROM events WHERE ctid >= %s::tid AND ctid < %s::tid"
        f" AND xmin = %s::text::xid AND tenant_id = %s{extra}"
    )
    found = conn.exec_driver_sql(
        sql, (f"({row.lo},0)", f"({row.hi + 1},0)", str(row.xid), row.tenant_id, *params)
    ).all()
    if meter is None and customers is None and before_us is None and len(found) != row.events:
        # The table was rewritten since (VACUUM FULL, CLUSTER): the rows moved but kept their xmin.
        log.warning("pending commit %d: %d of %d events at their blocks; scanning by xid", row.id, len(found),
                    row.events)  # fmt: skip
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE xmin = %s::text::xid AND tenant_id = %s"
        found = conn.exec_driver_sql(sql, (str(row.xid), row.tenant_id)).all()
    return list(found)


def pending_sums(
    conn: Connection, row: Pending, *, meter: str, customers: Sequence[str], from_us: int, to_us: int
) -> list[Any]:
    """Per customer and value scale, (customer, value_scale, events, sum, max, min) of one pending row's
    events of `meter` stamped in [from_us, to_us): what a count/sum/max/min meter without filter or
    group_by needs, added up by the database instead of fetched and folded event by event in Python."""
    extra, params = _filters(conn.dialect.name, meter, customers, to_us)
    ph = "?" if conn.dialect.name == "sqlite" else "%s"
    extra, params = f"{extra} AND ts_us >= {ph}", (*params, from_us)
    agg = "customer, value_scale, count(*), sum(value_units), max(value_units), min(value_units)"
    if conn.dialect.name == "sqlite":  # NOT INDEXED: see pending_events
        sql = f"SELECT {agg} FROM events NOT INDEXED WHERE rowid BETWEEN ? AND ? AND tenant_id = ?{extra}"
        return list(conn.exec_driver_sql(f"{sql} GROUP BY customer, value_scale", (row.lo, row.hi, row.tenant_id,
                                                                                    *params)).all())  # fmt: skip
    sql = (
        f"SELECT {agg} FROM events WHERE ctid >= %s::tid AND ctid < %s::tid"
        f" AND xmin = %s::text::xid AND tenant_id = %s{extra} GROUP BY customer, value_scale"
    )
    return list(conn.exec_driver_sql(sql, (f"({row.lo},0)", f"({row.hi + 1},0)", str(row.xid), row.tenant_id,
                                           *params)).all())  # fmt: skip


def _filters(
    dialect: str, meter: str | None, customers: Sequence[str] | None, before_us: int | None
) -> tuple[str, tuple[Any, ...]]:
    ph = "?" if dialect == "sqlite" else "%s"
    sql, params = "", list[Any]()
    if meter is not None:
        sql += f" AND meter = {ph}"
        params.append(meter)
    if customers is not None:
        sql += f" AND customer IN ({', '.join([ph] * len(customers))})" if customers else " AND 1 = 0"
        params.extend(customers)
    if before_us is not None:
        sql += f" AND ts_us < {ph}"
        params.append(before_us)
    return sql, tuple(params)


def as_batch(tenant_id: int, rows: Sequence[Any]) -> PreparedBatch:
    """Stored event rows as a batch, so `partials` folds them as the writer would have."""
    n = len(rows)
    return PreparedBatch(
        tenant_id, "", n, False, range(n), [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
        [r[3] for r in rows], [r[4] for r in rows], [r[5] for r in rows], [r[6] for r in rows],
    )  # fmt: skip


def tenant_specs(conn: Connection, tenant_id: int) -> dict[str, MeterSpec]:
    from metering.meter import _meter  # one row → Meter, shared with the catalog

    rows = conn.execute(select(meters).where(meters.c.tenant_id == tenant_id)).all()
    return {r.code: _meter(r).spec for r in rows}


def fold_partials(
    conn: Connection, tenant_id: int, rows: Sequence[Any], specs: Mapping[str, MeterSpec], into: dict[Key, Partial]
) -> None:
    """Add event rows (as `pending_events` returns them) to `into`; events of unknown meters count nowhere."""
    if any(r[2] not in specs for r in rows):
        rows = [r for r in rows if r[2] in specs]
    if rows:
        partials(as_batch(tenant_id, rows), range(len(rows)), specs, into)


@dataclass(frozen=True, slots=True)
class FoldResult:
    commits: int
    events: int
    overflows: int
    oldest_us: int | None  # when the oldest folded commit was committed (its rollups' lag)


#: (tenant, xid, lo, hi) of a pending row -> the batches and positions its commit inserted.
Memory = dict[tuple[int, int, int, int], list[tuple[PreparedBatch, list[int]]]]


@dataclass(frozen=True, slots=True)
class Prefold:
    """Partials of remembered commits, computed before the fold's transaction (`prefold`), so that the
    writer holds SQLite's lock only to upsert them and can let a batch that came meanwhile go first."""

    events: dict[tuple[int, int, int, int], int]  # memory key -> events it holds
    by_tenant: dict[int, dict[Key, Partial]]


def prefold(memory: Memory, events_max: int) -> Prefold | None:
    """Partials of the oldest remembered commits, up to `events_max` events (one commit at least); pure:
    `memory` is not changed. None when nothing is remembered."""
    events: dict[tuple[int, int, int, int], int] = {}
    parts: dict[int, list[tuple[PreparedBatch, list[int]]]] = {}
    n = 0
    for key, mem in memory.items():
        size = sum(len(p) for _, p in mem)
        if events and n + size > events_max:
            break
        events[key] = size
        parts.setdefault(key[0], []).extend(mem)
        n += size
    if not events:
        return None
    by_tenant: dict[int, dict[Key, Partial]] = {}
    for t, tenant_parts in parts.items():
        partials_many(tenant_parts, by_tenant.setdefault(t, {}))
    return Prefold(events, by_tenant)


def _take(rows: Sequence[Pending], events_max: int | None, pre: Prefold | None, memory: Memory | None) -> list[Pending]:
    """The pending rows one fold takes: every row `pre` holds, then the oldest others within the budget,
    except (with `pre`) those remembered since: their partials would be computed inside the transaction,
    which `pre` is there to keep short; the next fold takes them. Empty when a row `pre` holds is missing
    or differs (folded elsewhere meanwhile): the caller folds without it."""
    taken: list[Pending] = []
    n = 0
    held = 0
    for row in rows:
        key = (row.tenant_id, row.xid, row.lo, row.hi)
        if pre is not None and key in pre.events:
            if pre.events[key] != row.events:
                return []
            taken.append(row)
            held += 1
            n += row.events
        elif pre is not None and memory is not None and key in memory:
            continue
        elif not taken or events_max is None or n + row.events <= events_max:
            taken.append(row)
            n += row.events
        elif pre is None:
            break
    if pre is not None and held != len(pre.events):
        return []
    return taken


def fold_in(
    conn: Connection,
    tenant_id: int | None = None,
    events_max: int | None = None,
    memory: Memory | None = None,
    prefolded: Prefold | None = None,
) -> FoldResult:
    """Fold pending commits (of one tenant, or all) inside the caller's write transaction.

    `memory` holds the events of commits this process wrote, keyed as `Memory` says: those are folded
    from memory, the others (another process's, a crashed one's) read back from the table. Entries folded
    are removed from it. `prefolded` (from `prefold` over the same memory) brings the partials of some of
    them already computed; its Partials are merged into, so it is used once. If the pending rows no longer
    match it, it is ignored and those commits are folded as if it had not been given.
    """
    rows = pending_rows(conn, tenant_id, lock=True)
    pre = prefolded if prefolded is not None and memory is not None else None
    taken = _take(rows, events_max, pre, memory)
    if pre is not None and not taken:
        pre = None
        taken = _take(rows, events_max, None, memory)
    if not taken:
        return FoldResult(0, 0, 0, None)
    by_tenant: dict[int, dict[Key, Partial]] = {} if pre is None else pre.by_tenant
    specs: dict[int, dict[str, MeterSpec]] = {}
    remembered: dict[int, list[tuple[PreparedBatch, list[int]]]] = {}
    for row in taken:
        key = (row.tenant_id, row.xid, row.lo, row.hi)
        if pre is not None and key in pre.events:
            assert memory is not None
            memory.pop(key, None)
            continue
        mem = None if memory is None else memory.pop(key, None)
        if mem is not None and sum(len(p) for _, p in mem) == row.events:
            remembered.setdefault(row.tenant_id, []).extend(mem)
            continue
        found = pending_events(conn, row)
        if len(found) != row.events:
            raise FoldError(f"pending commit {row.id} of tenant {row.tenant_id}: {row.events} events committed, "
                            f"{len(found)} found; not folded")  # fmt: skip
        if row.tenant_id not in specs:
            specs[row.tenant_id] = tenant_specs(conn, row.tenant_id)
        fold_partials(conn, row.tenant_id, found, specs[row.tenant_id], by_tenant.setdefault(row.tenant_id, {}))
    for t, parts in remembered.items():
        partials_many(parts, by_tenant.setdefault(t, {}))
    overflows = 0
    for t, into in by_tenant.items():
        overflows += _upsert_checked(conn, t, into)
    ids = [row.id for row in taken]
    for k in range(0, len(ids), 500):
        conn.execute(delete(ingest_pending).where(ingest_pending.c.id.in_(ids[k : k + 500])))
    n = sum(row.events for row in taken)
    return FoldResult(len(taken), n, overflows, min(row.committed_at_us for row in taken))


def _upsert_checked(conn: Connection, tenant_id: int, into: dict[Key, Partial]) -> int:
    """Upsert; a bucket whose total would leave 64 bits goes to `rollup_overflows` instead. Returns those."""
    from metering.committer import Failure, classify, database_message

    try:
        with conn.begin_nested():
            upsert(conn, tenant_id, into)
        return 0
    except Exception as exc:
        if classify(exc) is not Failure.DATA:
            raise
    overflows = 0
    for key, part in sorted(into.items()):
        try:
            with conn.begin_nested():
                upsert(conn, tenant_id, {key: part})
        except Exception as exc:
            if classify(exc) is not Failure.DATA:
                raise
            overflows += 1
            _, message = database_message(exc)
            log.error("tenant %d: rollup %r left 64 bits (%s); recorded in rollup_overflows", tenant_id, key, message)
            _record_overflow(conn, tenant_id, key, part.events, message)
    return overflows


def _record_overflow(conn: Connection, tenant_id: int, key: Key, events: int, detail: str) -> None:
    o = rollup_overflows.c
    where = (o.tenant_id == tenant_id, o.meter == key[0], o.customer == key[1], o.group_key == key[2],
             o.bucket_us == key[3])  # fmt: skip
    held = conn.execute(select(o.events).where(*where)).scalar_one_or_none()
    if held is None:
        conn.execute(
            rollup_overflows.insert().values(
                tenant_id=tenant_id, meter=key[0], customer=key[1], group_key=key[2], bucket_us=key[3],
                events=events, detail=detail, recorded_at_us=time.time_ns() // 1000,
            )
        )  # fmt: skip
    else:
        conn.execute(rollup_overflows.update().where(*where).values(events=held + events))


def fold_once(engine: Engine, events_max: int = FOLD_EVENTS_MAX) -> FoldResult:
    """One fold transaction over the oldest pending commits (at most `events_max` events, one commit at least)."""
    with begin_write(engine) as conn:
        return fold_in(conn, None, events_max)


def catch_up(engine: Engine, events_max: int = FOLD_EVENTS_MAX) -> int:
    """Fold until nothing is pending; returns the events folded."""
    total = 0
    while True:
        result = fold_once(engine, events_max)
        if not result.commits:
            return total
        total += result.events


class Folder:
    """The thread that folds: woken by `notify` (the committer calls it after each commit) and every
    `interval_s`. A failed fold (lock contention, a lost connection) is logged and tried again."""

    def __init__(
        self, engine: Engine, interval_s: float = 0.2, events_max: int = FOLD_EVENTS_MAX, gap_s: float = 0.1
    ) -> None:
        self._engine = engine
        self._interval_s = interval_s
        #: After a fold, the least time before the next: under steady ingest one fold then takes the commits
        #: of `gap_s` together and upserts each bucket once for all of them (as SQLite's FOLD_AFTER_S).
        self._gap_s = gap_s
        self._events_max = events_max
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.folds = 0
        self.events = 0
        #: What the writers committed, for the fold to take from memory (`remember`; see `fold_in`).
        self.memory: Memory = {}
        self.memory_events = 0
        self.memory_events_max = 1_000_000
        self.overflows = 0
        self.failures = 0
        #: The largest lag seen: from a commit to the fold that folded it, in seconds.
        self.lag_max_s = 0.0

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="tally-folder", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        self._wake.set()

    def remember(self, committed: Memory) -> None:
        """A writer committed these (called from its thread after COMMIT, before `notify`)."""
        if self.memory_events > self.memory_events_max:  # far behind: read back from the table instead
            self.memory.clear()
            self.memory_events = 0
        for key, parts in committed.items():
            self.memory[key] = parts
            self.memory_events += sum(len(p) for _, p in parts)

    def stop(self, drain: bool = False) -> None:
        """Stop after the fold under way; with `drain`, fold what is pending first (best effort: what is
        left is folded by the next folder to run)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if drain:
            try:
                self.events += catch_up(self._engine, self._events_max)
            except Exception:
                log.exception("final fold failed; the next server folds what is pending")

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval_s)
            self._wake.clear()
            folds = self.folds
            while not self._stop.is_set():
                try:
                    with begin_write(self._engine) as conn:
                        result = fold_in(conn, None, self._events_max, memory=self.memory)
                        if not result.commits or conn.execute(select(ingest_pending.c.id).limit(1)).first() is None:
                            self.memory.clear()  # nothing pending: entries left were folded from the table
                            self.memory_events = 0
                except Exception:
                    self.failures += 1
                    log.exception("fold failed; retrying in %.2f s", self._interval_s)
                    self._stop.wait(self._interval_s)
                    break
                if not result.commits:
                    break
                self.folds += 1
                self.events += result.events
                self.overflows += result.overflows
                if result.oldest_us is not None:
                    self.lag_max_s = max(self.lag_max_s, (time.time_ns() // 1000 - result.oldest_us) / 1e6)
            if self.folds != folds:
                self._stop.wait(self._gap_s)


__all__ = [
    "FOLD_EVENTS_MAX", "FoldError", "FoldResult", "Folder", "Pending", "Prefold", "catch_up", "fold_in", "fold_once",
    "prefold",
]  # fmt: skip
