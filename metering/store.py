"""Durable, de-duplicated storage of prepared batches: one transaction per group of batches.

`write(batches)` stores a group of batches in ONE transaction (group commit: one
fsync pays for many batches) and returns one outcome per batch. An outcome is
final only once `write` returns, i.e. after COMMIT; the caller acks only then.

How each event is classified, exactly and without a time window:
1. Inside a batch, a repeated event id is a duplicate of its first occurrence
   when the payload is identical, a conflict otherwise.
2. The batch is inserted with ON CONFLICT (tenant_id, event_id) DO NOTHING. If
   every row went in, all are accepted (the fast path).
3. Otherwise the rows that did not go in are looked up: an identical stored
   payload makes a duplicate, any difference a conflict that names the field;
   the stored event is never changed.
An atomic batch runs inside a SAVEPOINT and is rolled back whole on any conflict.

`probe(batches)` does all of `write` in a transaction that is rolled back: the
outcomes `write` would give, or the exception it would raise, with nothing
stored. The committer uses it to find which events of an atomic batch the
database refuses without storing any of them; `subset` cuts a batch down to some
of its events (the committer's bisection; see metering/committer.py).

SQLite has one writer at a time (BEGIN IMMEDIATE), so "inserted by this batch"
is "rowid above the largest rowid before it". PostgreSQL may have many writers; there
rows go through COPY into a temporary staging table and INSERT … SELECT …
RETURNING tells which went in. Rows are inserted in event-id order so that
concurrent writers take index locks in the same order; a deadlock that slips
through anyway is retried by the committer.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, Protocol

from sqlalchemy import Connection, Engine

from metering.event import Code, EventError, PreparedBatch, equal_values
from metering.rollup import Key, Partial, partials, upsert, upsert_dbapi

_COLUMNS = "tenant_id, event_id, customer, meter, ts_us, value_units, value_scale, properties, ingested_at_us"
_PAYLOAD_FIELDS = ("customer", "meter", "timestamp", "value", "properties")


@dataclass(slots=True)
class BatchOutcome:
    accepted: int = 0
    duplicate: int = 0
    errors: list[EventError] = field(default_factory=list)
    refused: bool = False


class _Rollups:
    """Partials of every event a group inserted, per tenant; upserted just before COMMIT."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.by_tenant: dict[int, dict[Key, Partial]] = {}

    def add(self, batch: PreparedBatch, keep: list[int], outcome: BatchOutcome, ours: set[str] | None) -> None:
        if not self.enabled or outcome.refused or not outcome.accepted:
            return
        positions = keep if ours is None else [k for k in keep if batch.event_ids[k] in ours]
        partials(batch, positions, batch.specs, self.by_tenant.setdefault(batch.tenant_id, {}))


class EventStore(Protocol):
    """Where prepared batches go. Swappable: a log (JetStream, Kafka) could stand here."""

    def write(self, batches: Sequence[PreparedBatch]) -> list[BatchOutcome]: ...

    def probe(self, batches: Sequence[PreparedBatch]) -> list[BatchOutcome]:
        """What `write` would return (or raise) for these batches, storing nothing."""
        ...

    def close(self) -> None: ...


class NullEventStore:
    """Accepts everything and stores nothing: the benchmark ceiling for decode + validate."""

    def write(self, batches: Sequence[PreparedBatch]) -> list[BatchOutcome]:
        return [BatchOutcome(accepted=len(b)) for b in batches]

    def probe(self, batches: Sequence[PreparedBatch]) -> list[BatchOutcome]:
        return self.write(batches)

    def close(self) -> None:
        pass


def open_store(engine: Engine, rollups: bool = True) -> EventStore:
    """`rollups=False` stores raw events only: for benchmarking the cost of rollups, never in service."""
    if engine.dialect.name == "sqlite":
        return SqliteEventStore(engine, rollups)
    if engine.dialect.name == "postgresql":
        return PostgresEventStore(engine, rollups)
    raise ValueError(f"no event store for the {engine.dialect.name} dialect; use SQLite or PostgreSQL")


def now_us() -> int:
    return time.time_ns() // 1000


def subset(batch: PreparedBatch, positions: Sequence[int], atomic: bool | None = None) -> PreparedBatch:
    """The events of `batch` at `positions` (indices into its columns) as a batch of their own.

    Same tenant, batch id, meter specs and (unless `atomic` is given) atomic flag; `index` still maps
    each event to its position in the client's batch, so outcomes of the subset report the client's
    indices. Validation errors stay with the original batch: the subset carries none.
    """
    return PreparedBatch(
        tenant_id=batch.tenant_id,
        batch_id=batch.batch_id,
        size=len(positions),
        atomic=batch.atomic if atomic is None else atomic,
        index=[batch.index[k] for k in positions],
        event_ids=[batch.event_ids[k] for k in positions],
        customers=[batch.customers[k] for k in positions],
        meters=[batch.meters[k] for k in positions],
        ts_us=[batch.ts_us[k] for k in positions],
        value_units=[batch.value_units[k] for k in positions],
        value_scale=[batch.value_scale[k] for k in positions],
        properties=[batch.properties[k] for k in positions],
        specs=batch.specs,
    )


# --- classification shared by both dialects --------------------------------------------------------


def _dedup_in_batch(batch: PreparedBatch, outcome: BatchOutcome) -> list[int]:
    """Positions to insert: first occurrence of each event id. Later ones count as duplicate or conflict."""
    n = len(batch)
    if len(set(batch.event_ids)) == n:
        return list(range(n))
    first: dict[str, int] = {}
    keep: list[int] = []
    for k, event_id in enumerate(batch.event_ids):
        j = first.setdefault(event_id, k)
        if j == k:
            keep.append(k)
            continue
        diff = _payload_difference(batch.payload(j), batch.payload(k))
        if diff is None:
            outcome.duplicate += 1
        else:
            outcome.errors.append(
                _conflict(batch.index[k], diff, f"event {batch.index[j]} of this batch has the same event_id")
            )
    return keep


def _payload_difference(stored: tuple[Any, ...], sent: tuple[Any, ...]) -> str | None:
    """Name of the first field in which two payloads differ, or None when they are the same event."""
    s_customer, s_meter, s_ts, s_units, s_scale, s_props = stored
    customer, meter, ts, units, scale, props = sent
    if s_customer != customer:
        return "customer"
    if s_meter != meter:
        return "meter"
    if s_ts != ts:
        return "timestamp"
    if not equal_values(s_units, s_scale, units, scale):
        return "value"
    if s_props != props:
        return "properties"
    return None


def _conflict(index: int, field_name: str, where: str) -> EventError:
    return EventError(
        index,
        "event_id",
        Code.EVENT_ID_CONFLICT,
        f"event_id already used with a different {field_name} ({where}); the stored event is kept",
    )


def _classify_existing(
    batch: PreparedBatch,
    positions: Iterable[int],
    stored: dict[str, tuple[Any, ...]],
    outcome: BatchOutcome,
) -> None:
    """For rows that did not go in: same payload as stored → duplicate, else conflict."""
    for k in positions:
        existing = stored.get(batch.event_ids[k])
        if existing is None:
            raise RuntimeError(f"event {batch.event_ids[k]!r} was neither inserted nor found")
        diff = _payload_difference(existing, batch.payload(k))
        if diff is None:
            outcome.duplicate += 1
        else:
            outcome.errors.append(_conflict(batch.index[k], diff, "already stored"))


def _finish(outcome: BatchOutcome) -> BatchOutcome:
    outcome.errors.sort(key=lambda e: e.index)
    return outcome


# --- SQLite ----------------------------------------------------------------------------------------


class SqliteEventStore:
    """Single writer; the caller serialises calls (the committer runs one writer thread for SQLite)."""

    _INSERT = f"INSERT INTO events ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING"
    _LOOKUP_CHUNK = 500

    def __init__(self, engine: Engine, rollups: bool = True) -> None:
        self._engine = engine
        self._rollups = rollups
        self._conn: Connection | None = None

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = self._engine.connect().execution_options(sqlite_begin="IMMEDIATE")
        return self._conn

    def write(self, batches: Sequence[PreparedBatch]) -> list[BatchOutcome]:
        return self._run(batches, commit=True)

    def probe(self, batches: Sequence[PreparedBatch]) -> list[BatchOutcome]:
        return self._run(batches, commit=False)

    def _run(self, batches: Sequence[PreparedBatch], commit: bool) -> list[BatchOutcome]:
        conn = self._connection()
        try:
            with conn.begin() as tx:
                ingested = now_us()
                # One writer holds the lock, and SQLite gives each new row max(rowid) + 1, so
                # the rows a batch inserted are exactly those above the high-water mark before it.
                mark = conn.exec_driver_sql("SELECT coalesce(max(rowid), 0) FROM events").scalar_one()
                outcomes = []
                rollups = _Rollups(self._rollups)
                for batch in batches:
                    outcome = self._write_one(conn, batch, ingested, mark, rollups)
                    mark += outcome.accepted
                    outcomes.append(outcome)
                for tenant_id, into in rollups.by_tenant.items():
                    upsert(conn, tenant_id, into)
                if not commit:
                    tx.rollback()
                return outcomes
        except BaseException:
            self.close()
            raise

    def _write_one(
        self, conn: Connection, batch: PreparedBatch, ingested: int, before: int, rollups: _Rollups
    ) -> BatchOutcome:
        outcome = BatchOutcome()
        keep = _dedup_in_batch(batch, outcome)
        savepoint = conn.begin_nested() if batch.atomic else None
        rows = _rows(batch, keep, ingested)
        inserted = conn.exec_driver_sql(self._INSERT, rows).rowcount if rows else 0
        ours: set[str] | None = None
        if inserted != len(keep):
            stored, ours = self._lookup(conn, batch, keep, before)
            _classify_existing(batch, (k for k in keep if batch.event_ids[k] not in ours), stored, outcome)
        outcome.accepted = inserted
        if savepoint is not None:
            if outcome.errors:
                savepoint.rollback()
                return _refused(outcome)
            savepoint.commit()
        rollups.add(batch, keep, outcome, ours)
        return _finish(outcome)

    def _lookup(
        self, conn: Connection, batch: PreparedBatch, keep: list[int], before: int
    ) -> tuple[dict[str, tuple[Any, ...]], set[str]]:
        ids = [batch.event_ids[k] for k in keep]
        stored: dict[str, tuple[Any, ...]] = {}
        ours: set[str] = set()
        for start in range(0, len(ids), self._LOOKUP_CHUNK):
            chunk = ids[start : start + self._LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            result = conn.exec_driver_sql(
                "SELECT rowid, event_id, customer, meter, ts_us, value_units, value_scale, properties "
                f"FROM events WHERE tenant_id = ? AND event_id IN ({marks})",
                (batch.tenant_id, *chunk),
            )
            for row in result:
                if row[0] > before:
                    ours.add(row[1])
                else:
                    stored[row[1]] = tuple(row[2:])
        return stored, ours

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _rows(batch: PreparedBatch, keep: list[int], ingested: int) -> list[tuple[Any, ...]]:
    if len(keep) == len(batch):
        return list(
            zip(
                repeat(batch.tenant_id),
                batch.event_ids,
                batch.customers,
                batch.meters,
                batch.ts_us,
                batch.value_units,
                batch.value_scale,
                batch.properties,
                repeat(ingested),
                strict=False,
            )
        )
    return [
        (
            batch.tenant_id,
            batch.event_ids[k],
            batch.customers[k],
            batch.meters[k],
            batch.ts_us[k],
            batch.value_units[k],
            batch.value_scale[k],
            batch.properties[k],
            ingested,
        )
        for k in keep
    ]


def _refused(outcome: BatchOutcome) -> BatchOutcome:
    """An atomic batch that hit a conflict: nothing of it stays, and only the culprits are listed."""
    return BatchOutcome(accepted=0, duplicate=0, errors=sorted(outcome.errors, key=lambda e: e.index), refused=True)


# --- PostgreSQL ------------------------------------------------------------------------------------


class PostgresEventStore:
    """COPY into a per-connection temporary staging table, then one INSERT … SELECT per batch.

    Safe to call from several threads at once, each call on its own pooled
    connection: the unique index arbitrates between concurrent writers.
    """

    _STAGING = (
        "CREATE TEMP TABLE IF NOT EXISTS ingest_staging ("
        " b integer NOT NULL, tenant_id integer NOT NULL, event_id text NOT NULL, customer text NOT NULL,"
        " meter text NOT NULL, ts_us bigint NOT NULL, value_units bigint NOT NULL,"
        " value_scale smallint NOT NULL, properties text) ON COMMIT DELETE ROWS"
    )
    _COPY = (
        "COPY ingest_staging (b, tenant_id, event_id, customer, meter, ts_us, value_units, value_scale,"
        " properties) FROM STDIN (FORMAT BINARY)"
    )
    _COPY_TYPES = ("int4", "int4", "text", "text", "text", "int8", "int8", "int2", "text")
    _INSERT = (
        f"INSERT INTO events ({_COLUMNS})"
        " SELECT tenant_id, event_id, customer, meter, ts_us, value_units, value_scale, properties, %s"
        " FROM ingest_staging WHERE b = %s ORDER BY event_id"
        " ON CONFLICT (tenant_id, event_id) DO NOTHING RETURNING event_id"
    )
    _LOOKUP = (
        "SELECT e.event_id, e.customer, e.meter, e.ts_us, e.value_units, e.value_scale, e.properties"
        " FROM ingest_staging s JOIN events e ON e.tenant_id = s.tenant_id AND e.event_id = s.event_id"
        " WHERE s.b = %s"
    )

    def __init__(self, engine: Engine, rollups: bool = True) -> None:
        self._engine = engine
        self._rollups = rollups

    def write(self, batches: Sequence[PreparedBatch]) -> list[BatchOutcome]:
        return self._run(batches, commit=True)

    def probe(self, batches: Sequence[PreparedBatch]) -> list[BatchOutcome]:
        return self._run(batches, commit=False)

    def _run(self, batches: Sequence[PreparedBatch], commit: bool) -> list[BatchOutcome]:
        with self._engine.connect() as conn:
            if not conn.info.get("ingest_staging"):
                # In a transaction of its own: created inside the write's transaction, the table would
                # vanish with the first write that fails or is probed (rolled back) while the flag stayed
                # set, and every later write on this pooled connection would fail ("relation
                # ingest_staging does not exist") whatever its data.
                with conn.begin():
                    conn.exec_driver_sql(self._STAGING)
                conn.info["ingest_staging"] = True
            with conn.begin() as tx:
                outcomes = self._write_in(conn, batches)
                if not commit:
                    tx.rollback()
                return outcomes

    def _write_in(self, conn: Connection, batches: Sequence[PreparedBatch]) -> list[BatchOutcome]:
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            outcomes = [BatchOutcome() for _ in batches]
            keeps = [_dedup_in_batch(b, o) for b, o in zip(batches, outcomes, strict=True)]
            with cur.copy(self._COPY) as copy:
                copy.set_types(self._COPY_TYPES)
                for b_no, (batch, keep) in enumerate(zip(batches, keeps, strict=True)):
                    for row in _rows(batch, keep, 0):
                        copy.write_row((b_no, *row[:8]))
            ingested = now_us()
            results = []
            rollups = _Rollups(self._rollups)
            for b_no, (batch, keep, outcome) in enumerate(zip(batches, keeps, outcomes, strict=True)):
                results.append(self._insert_one(cur, b_no, batch, keep, outcome, ingested, rollups))
            for tenant_id, into in rollups.by_tenant.items():
                upsert_dbapi(cur, "postgresql", tenant_id, into)
            return results

    def _insert_one(
        self,
        cur: Any,
        b_no: int,
        batch: PreparedBatch,
        keep: list[int],
        outcome: BatchOutcome,
        ingested: int,
        rollups: _Rollups,
    ) -> BatchOutcome:
        if batch.atomic:
            cur.execute("SAVEPOINT ingest_atomic")
        cur.execute(self._INSERT, (ingested, b_no))
        inserted = cur.rowcount
        ours: set[str] | None = None
        if inserted != len(keep):
            ours = {r[0] for r in cur.fetchall()}
            cur.execute(self._LOOKUP, (b_no,))
            stored = {r[0]: tuple(r[1:]) for r in cur.fetchall() if r[0] not in ours}
            _classify_existing(batch, (k for k in keep if batch.event_ids[k] not in ours), stored, outcome)
        outcome.accepted = inserted
        if batch.atomic:
            if outcome.errors:
                cur.execute("ROLLBACK TO SAVEPOINT ingest_atomic")
                return _refused(outcome)
            cur.execute("RELEASE SAVEPOINT ingest_atomic")
        rollups.add(batch, keep, outcome, ours)
        return _finish(outcome)

    def close(self) -> None:
        pass
