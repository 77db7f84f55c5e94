"""Durable, de-duplicated storage of prepared batches: one transaction per group of batches.

`write(batches)` stores a group of batches in ONE transaction (group commit: one
fsync pays for many batches) and returns one outcome per batch. An outcome is
final only once `write` returns, i.e. after COMMIT; the caller acks only then.
The same transaction writes one `ingest_pending` row per tenant naming where the
inserted events are (SQLite rowids, PostgreSQL heap blocks and xid): rollups are
not touched here, they are folded after the ack (metering/fold.py), and readers
add the pending events meanwhile (metering/pending.py). Each outcome names the
events that did not go in (duplicates and errors, by the client's index).

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

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Connection, Engine

from metering.event import Code, EventError, PreparedBatch, equal_values
from metering.sqlite import execute_values

if TYPE_CHECKING:
    from metering.fold import Prefold

_COLUMNS = "tenant_id, event_id, customer, meter, ts_us, value_units, value_scale, properties, ingested_at_us"
_PAYLOAD_FIELDS = ("customer", "meter", "timestamp", "value", "properties")


@dataclass(slots=True)
class BatchOutcome:
    accepted: int = 0
    duplicate: int = 0
    errors: list[EventError] = field(default_factory=list)
    refused: bool = False
    #: The client's indices of the events counted in `duplicate` (already stored, or repeated in the batch):
    #: with `errors`, what tells exactly which events of the batch went in (the entitlement cache adds those).
    duplicates: list[int] = field(default_factory=list)
    #: Where the commit that stored this batch's events stands, for a reader that knows its snapshot's
    #: horizon to tell whether the snapshot holds them (the entitlement cache): the highest rowid inserted
    #: on SQLite, the top-level transaction id (xid8) on PostgreSQL; None when unknown or nothing went in.
    commit: int | None = None


class _Journal:
    """What a write inserted, per (tenant, transaction id): the `ingest_pending` rows it commits with.

    `lo`/`hi` are SQLite rowids or PostgreSQL heap blocks (metering/tables.py); `xid` 0 on SQLite.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.rows: dict[tuple[int, int], list[int]] = {}  # (tenant, xid) -> [lo, hi, events]

    def add(self, tenant_id: int, xid: int, lo: int, hi: int, events: int) -> None:
        if not self.enabled or events <= 0:
            return
        row = self.rows.get((tenant_id, xid))
        if row is None:
            self.rows[(tenant_id, xid)] = [lo, hi, events]
        else:
            row[0], row[1], row[2] = min(row[0], lo), max(row[1], hi), row[2] + events

    def params(self, committed_at_us: int) -> list[tuple[int, int, int, int, int, int]]:
        return [(t, lo, hi, xid, n, committed_at_us) for (t, xid), (lo, hi, n) in sorted(self.rows.items())]


#: What one commit inserted, per `ingest_pending` row (tenant, xid, lo, hi): batches and their positions.
Committed = dict[tuple[int, int, int, int], list[tuple[PreparedBatch, list[int]]]]

_JOURNAL = (
    "INSERT INTO ingest_pending (tenant_id, lo, hi, xid, events, committed_at_us) VALUES ({0},{0},{0},{0},{0},{0})"
)


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
    """`rollups=False` stores raw events only, with no `ingest_pending` row, so nothing ever folds them into
    rollups: for benchmarking the cost of the journal, never in service."""
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
            outcome.duplicates.append(batch.index[k])
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
            outcome.duplicates.append(batch.index[k])
        else:
            outcome.errors.append(_conflict(batch.index[k], diff, "already stored"))


def _finish(outcome: BatchOutcome) -> BatchOutcome:
    outcome.errors.sort(key=lambda e: e.index)
    outcome.duplicates.sort()
    return outcome


# --- SQLite ----------------------------------------------------------------------------------------


class SqliteEventStore:
    """Single writer; the caller serialises calls (the committer runs one writer thread for SQLite).

    It also folds (`fold`), on the same connection, between commits: SQLite has one write lock, and a
    folder on another connection would make ingest commits wait for it in the busy handler's sleeps
    (1 to 100 ms), which is exactly the latency the fold was moved out of the ack to remove. The events
    of the commits this store wrote are kept in memory until folded, so the fold need not read them back.
    """

    #: One multi-row statement per up to 1,024 events (metering/sqlite.py says why not executemany).
    _INSERT_HEAD, _INSERT_TAIL = f"INSERT INTO events ({_COLUMNS})", " ON CONFLICT DO NOTHING"
    _LOOKUP_CHUNK = 500
    #: Events kept in memory for the fold at most; past it the fold reads them back from the table.
    _MEMORY_EVENTS_MAX = 1_000_000
    #: While ingest is busy, fold only once the oldest unfolded commit is this old (acks first, and one fold
    #: for the commits of this long; rollups stay well within the documented 1 s of freshness).
    FOLD_AFTER_S = 0.1
    #: Events folded per fold transaction while ingest is busy (each holds the write lock).
    FOLD_SLICE_EVENTS = 20_000
    #: How often to look for unfolded commits this store does not know of (a crashed predecessor's).
    _RESCAN_S = 1.0

    def __init__(self, engine: Engine, rollups: bool = True) -> None:
        self._engine = engine
        self._rollups = rollups
        self._conn: Connection | None = None
        self._sync = "FULL"
        #: (tenant, 0, lo, hi) of committed, unfolded commits -> (batch, positions inserted), oldest first.
        self._unfolded: dict[tuple[int, int, int, int], list[tuple[PreparedBatch, list[int]]]] = {}
        self._unfolded_events = 0
        self._oldest_us: int | None = None
        self._rescan_at = 0.0
        self.folded_events = 0
        self._checkpointer: _Checkpointer | None = None
        #: Partials of the oldest remembered commits, computed by a fold that then let a batch go first.
        self._prefold: Prefold | None = None

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = self._engine.connect().execution_options(sqlite_begin="IMMEDIATE")
            self._sync = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(
                int(self._conn.exec_driver_sql("PRAGMA synchronous").scalar_one()), "FULL"
            )
            self._conn.rollback()
            if self._rollups:  # in service (not the raw-insert baseline): checkpoints off the ack's path
                raw = self._conn.connection.driver_connection
                assert raw is not None
                raw.execute("PRAGMA wal_autocheckpoint=0")
                if self._checkpointer is None:
                    self._checkpointer = _Checkpointer(self._engine)
        return self._conn

    def fold(self, idle: bool, waiting: Callable[[], bool] | None = None) -> bool:
        """Fold one slice (FOLD_SLICE_EVENTS) of unfolded commits: when `idle` at once, else once the oldest
        is older than FOLD_AFTER_S. Returns whether unfolded commits may remain.

        The partials of remembered commits are computed first, outside the transaction (`prefold`); if
        `waiting()` then says a batch came meanwhile, the fold stops there and the batch is written first
        (the partials are kept for the next turn), so a batch waits behind a fold's upsert at most, not
        behind the whole fold.

        Waiting is what makes the fold cheap under load: at one event per customer and batch, a fold per
        batch upserted every bucket it touched each time (7 µs per event in the server, more than the
        insert); a fold per FOLD_AFTER_S upserts each bucket once for all the batches of that time, and
        reads stay exact meanwhile (metering/pending.py).

        The fold's commits use synchronous=NORMAL: WAL frames reach the disk in order, and every ingest
        commit syncs (FULL) the frames before its own, so power loss can only drop a suffix of fold
        commits, whose `ingest_pending` rows are then still there to be folded again: never half of one.
        """
        from metering.fold import fold_in, prefold

        now = time.monotonic()
        if now >= self._rescan_at:
            self._rescan_at = now + self._RESCAN_S
            conn = self._connection()
            found = conn.exec_driver_sql("SELECT min(committed_at_us) FROM ingest_pending").scalar()
            conn.rollback()
            self._oldest_us = None if found is None else int(found)
        if self._oldest_us is None:
            return False
        if not idle and now_us() - self._oldest_us < self.FOLD_AFTER_S * 1e6:
            return True
        pre = self._prefold
        if pre is None or not pre.events.keys() <= self._unfolded.keys():
            pre = self._prefold = prefold(self._unfolded, self.FOLD_SLICE_EVENTS)
            if pre is not None and waiting is not None and waiting():
                return True
        self._prefold = None  # its Partials are merged into by the fold: used once, whatever happens
        conn = self._connection()
        raw = conn.connection.driver_connection
        assert raw is not None
        try:
            raw.execute("PRAGMA synchronous=NORMAL")  # outside SQLAlchemy's transaction: SQLite refuses inside
            with conn.begin():
                result = fold_in(conn, None, self.FOLD_SLICE_EVENTS, memory=self._unfolded, prefolded=pre)
                left = conn.exec_driver_sql("SELECT min(committed_at_us) FROM ingest_pending").scalar()
            self._oldest_us = None if left is None else int(left)
            self.folded_events += result.events
            if left is None:
                self._unfolded.clear()  # entries another process folded
        except BaseException:
            self.close()
            raise
        finally:
            raw.execute(f"PRAGMA synchronous={self._sync}")
        self._unfolded_events = sum(len(p) for parts in self._unfolded.values() for _, p in parts)
        return self._oldest_us is not None

    def _remember(self, journal: _Journal, parts: dict[int, list[tuple[PreparedBatch, list[int]]]]) -> None:
        if self._unfolded_events > self._MEMORY_EVENTS_MAX:
            self._unfolded.clear()  # the fold is far behind: it reads events back instead
            self._unfolded_events = 0
        for (tenant_id, _), (lo, hi, n) in journal.rows.items():
            self._unfolded[(tenant_id, 0, lo, hi)] = parts[tenant_id]
            self._unfolded_events += n
        if journal.rows and self._oldest_us is None:
            self._oldest_us = now_us()

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
                journal = _Journal(self._rollups)
                parts: dict[int, list[tuple[PreparedBatch, list[int]]]] = {}
                for batch in batches:
                    outcome, positions = self._write_one(conn, batch, ingested, mark)
                    if outcome.accepted:
                        outcome.commit = mark + outcome.accepted
                        journal.add(batch.tenant_id, 0, mark + 1, mark + outcome.accepted, outcome.accepted)
                        parts.setdefault(batch.tenant_id, []).append((batch, positions))
                    mark += outcome.accepted
                    outcomes.append(outcome)
                if journal.rows:
                    conn.exec_driver_sql(_JOURNAL.format("?"), journal.params(ingested))
                if not commit:
                    tx.rollback()
            if commit:
                self._remember(journal, parts)
            return outcomes
        except BaseException:
            self.close()
            raise

    def _write_one(
        self, conn: Connection, batch: PreparedBatch, ingested: int, before: int
    ) -> tuple[BatchOutcome, list[int]]:
        """The outcome, and the positions of the events this write inserted."""
        outcome = BatchOutcome()
        keep = _dedup_in_batch(batch, outcome)
        savepoint = conn.begin_nested() if batch.atomic else None
        flat = tuple(chain.from_iterable(_rows(batch, keep, ingested)))
        inserted = execute_values(conn.exec_driver_sql, self._INSERT_HEAD, 9, self._INSERT_TAIL, flat)
        positions = keep
        if inserted != len(keep):
            stored, ours = self._lookup(conn, batch, keep, before)
            _classify_existing(batch, (k for k in keep if batch.event_ids[k] not in ours), stored, outcome)
            positions = [k for k in keep if batch.event_ids[k] in ours]
        outcome.accepted = inserted
        if savepoint is not None:
            if outcome.errors:
                savepoint.rollback()
                return _refused(outcome), []
            savepoint.commit()
        return _finish(outcome), positions

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
        self._unfolded.clear()  # what a failed write or fold left unclear: read back from the table
        self._unfolded_events = 0
        self._prefold = None
        self._rescan_at = 0.0
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None


class _Checkpointer:
    """Copies the WAL into the database file from a thread of its own, every `interval_s`.

    SQLite's automatic checkpoint runs inside the commit that crosses its threshold, on the writer's
    connection: with synchronous=FULL it copies megabytes and syncs the database file while every ack
    waits (measured: the p99 of the ack at a quarter of the maximum rate was one such checkpoint).
    A PASSIVE checkpoint on another connection never blocks the writer (nor readers), and the GIL is
    released while SQLite works.
    """

    def __init__(self, engine: Engine, interval_s: float = 0.25) -> None:
        self._engine = engine
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tally-checkpointer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        raw = self._engine.raw_connection()
        try:
            while not self._stop.wait(self._interval_s):
                try:
                    raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()  # type: ignore[union-attr]
                except Exception:  # a busy moment: the next round copies what this one did not
                    continue
        finally:
            raw.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


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
    """COPY into a temporary staging table, then one INSERT … SELECT per batch.

    Each store holds one connection for its life (a committer's writer thread owns one store), so its
    staging table is created once, not each time a pooled connection is checked out; the connection is
    replaced only when it breaks. Several stores (writers) may write at once: the unique index
    arbitrates between them. Calls on one store are serialised by a lock.
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
    # What went in, in one round trip: how many rows, the heap blocks they went to and the (sub)transaction
    # id they carry as xmin (an atomic batch's savepoint has its own): the batch's `ingest_pending` entry;
    # and the statement's command id (cmin), which tells this batch's rows from an earlier batch's of the
    # same group when the lookup below sorts rows that did not go in.
    _INSERT = (
        f"WITH ins AS (INSERT INTO events ({_COLUMNS})"
        " SELECT tenant_id, event_id, customer, meter, ts_us, value_units, value_scale, properties, %s"
        " FROM ingest_staging WHERE b = %s ORDER BY event_id"
        " ON CONFLICT (tenant_id, event_id) DO NOTHING RETURNING ctid, xmin, cmin)"
        " SELECT count(*), min((ctid::text::point)[0])::bigint, max((ctid::text::point)[0])::bigint,"
        " min(xmin::text::bigint), min(cmin::text::bigint), pg_current_xact_id()::text::bigint FROM ins"
    )
    _LOOKUP = (
        "SELECT e.event_id, e.xmin = %s::text::xid AND e.cmin = %s::text::cid, e.customer, e.meter, e.ts_us,"
        " e.value_units, e.value_scale, e.properties"
        " FROM ingest_staging s JOIN events e ON e.tenant_id = s.tenant_id AND e.event_id = s.event_id"
        " WHERE s.b = %s"
    )

    def __init__(self, engine: Engine, rollups: bool = True) -> None:
        self._engine = engine
        self._rollups = rollups
        self._conn: Connection | None = None
        self._lock = threading.RLock()  # close() runs inside a failed write too
        #: Told, after each COMMIT, what it inserted per pending row (the folder folds it from memory).
        self.on_commit: Callable[[Committed], None] | None = None

    def write(self, batches: Sequence[PreparedBatch]) -> list[BatchOutcome]:
        return self._run(batches, commit=True)

    def probe(self, batches: Sequence[PreparedBatch]) -> list[BatchOutcome]:
        return self._run(batches, commit=False)

    def _connection(self) -> Connection:
        conn = self._conn
        if conn is None or conn.closed or conn.invalidated:
            if conn is not None:
                conn.close()
            conn = self._conn = self._engine.connect()
        if not conn.info.get("ingest_staging"):
            # In a transaction of its own: created inside the write's transaction, the table would
            # vanish with the first write that fails or is probed (rolled back) while the flag stayed
            # set, and every later write on this connection would fail ("relation ingest_staging does
            # not exist") whatever its data.
            with conn.begin():
                conn.exec_driver_sql(self._STAGING)
            conn.info["ingest_staging"] = True
        return conn

    def _run(self, batches: Sequence[PreparedBatch], commit: bool) -> list[BatchOutcome]:
        with self._lock:
            conn = self._connection()
            try:
                with conn.begin() as tx:
                    outcomes, committed = self._write_in(conn, batches)
                    if not commit:
                        tx.rollback()
                if commit and committed and self.on_commit is not None:
                    self.on_commit(committed)
                return outcomes
            except BaseException:
                if conn.invalidated:  # the connection broke: the next write takes a new one
                    self.close()
                raise

    def _write_in(
        self, conn: Connection, batches: Sequence[PreparedBatch]
    ) -> tuple[list[BatchOutcome], Committed]:
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
            journal = _Journal(self._rollups)
            parts: dict[tuple[int, int], list[tuple[PreparedBatch, list[int]]]] = {}
            for b_no, (batch, keep, outcome) in enumerate(zip(batches, keeps, outcomes, strict=True)):
                results.append(self._insert_one(cur, b_no, batch, keep, outcome, ingested, journal, parts))
            if journal.rows:
                cur.executemany(_JOURNAL.format("%s"), journal.params(ingested))
            committed = {(t, xid, lo, hi): parts[(t, xid)] for (t, xid), (lo, hi, _) in journal.rows.items()}
            return results, committed

    def _insert_one(
        self,
        cur: Any,
        b_no: int,
        batch: PreparedBatch,
        keep: list[int],
        outcome: BatchOutcome,
        ingested: int,
        journal: _Journal,
        parts: dict[tuple[int, int], list[tuple[PreparedBatch, list[int]]]],
    ) -> BatchOutcome:
        if batch.atomic:
            cur.execute("SAVEPOINT ingest_atomic")
        cur.execute(self._INSERT, (ingested, b_no))
        inserted, lo, hi, xid, cid, top = cur.fetchone()
        positions = keep
        if inserted != len(keep):
            cur.execute(self._LOOKUP, (str(xid or 0), str(cid or 0), b_no))
            rows = cur.fetchall()
            ours = {r[0] for r in rows if xid is not None and r[1]}
            stored = {r[0]: tuple(r[2:]) for r in rows if r[0] not in ours}
            _classify_existing(batch, (k for k in keep if batch.event_ids[k] not in ours), stored, outcome)
            positions = [k for k in keep if batch.event_ids[k] in ours]
        outcome.accepted = inserted
        if batch.atomic:
            if outcome.errors:
                cur.execute("ROLLBACK TO SAVEPOINT ingest_atomic")
                return _refused(outcome)
            cur.execute("RELEASE SAVEPOINT ingest_atomic")
        if inserted:
            outcome.commit = int(top)
            journal.add(batch.tenant_id, int(xid), int(lo), int(hi), inserted)
            if self._rollups:
                parts.setdefault((batch.tenant_id, int(xid)), []).append((batch, positions))
        return _finish(outcome)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
