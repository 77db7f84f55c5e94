"""Group commit between the gRPC servicer and the event store.

Validated batches from every stream wait in one queue; each writer thread takes
whatever is waiting (up to commit_events_max events) and stores it in a single
transaction. Under light load a group is one batch and latency is one commit;
under heavy load one fsync pays for many batches, so throughput rises with load
instead of collapsing. Each submitted batch gets a future that resolves only
after COMMIT, and the servicer acks on that.

SQLite runs one writer thread (it has one writer lock anyway); PostgreSQL may run
several, each on its own connection.

The ack means durable, not folded: a commit stores events and their `ingest_pending` rows; rollups
are folded after it (metering/fold.py), and `listeners` (the folder's `notify`) are told after
each commit. The queue is bounded by time as well as by events: `queue_delay_s` is the least time
a batch waited in the queue before a writer took it, over the last `delay_window_s` (as CoDel
measures a standing queue: a burst that drains within the window does not count), and the
servicer refuses new batches with RESOURCE_EXHAUSTED while it exceeds queue_delay_ms_max, so
latency stays flat under overload instead of growing with the queue.

A failed group never fails a batch for another batch's sake. Serialization
failures, deadlocks, SQLite's "locked/busy" and dropped connections are retried
(`attempts_max` transactions in all). When the group still fails:

* An *infrastructure* failure (connection lost or refused, disk full, server
  shutting down or out of resources: SQLSTATE classes 08, 53, 58 and 57P01-03,
  SQLite I/O, full, locked or read-only) is an outage, not a verdict on any
  data: every batch of the group gets UNAVAILABLE and is resent by its client.
* Any other failure, when the group holds more than one batch, splits it: each
  half is written in a transaction of its own, halves that fail are split
  again, so every good batch commits (in at most about 2 log2(batches) extra
  transactions per failing batch) and is acked normally.
* A batch that fails on its own with a *data* error (the database refused the
  data itself: SQLSTATE class 22 or 23, SQLAlchemy/sqlite3/psycopg DataError or
  IntegrityError, a value the driver cannot encode in 64 bits) is bisected over its events to
  find the events the database refuses (`_Search`). Each is reported in the ack
  by the client's index with code STORAGE_REFUSED, the field when the database
  names the column, and the database's message (never SQL or parameters). The
  rest of a plain batch is committed (the ack's counts are the sums over the
  sub-writes that committed); an `atomic` batch is searched with probes (a write
  that is rolled back) and refused whole with the culprits listed, nothing of it
  stored.
* A batch that fails on its own with any other error, or whose search meets a
  non-data error, gets UNAVAILABLE (its committed part, if any, comes back as
  duplicates on the resend). After an infrastructure failure the batches of the
  group not yet written get UNAVAILABLE without being tried.

Bounds of the search, per batch of n events (D = ceil(log2 n)): each refused
event costs at most 2 * D writes (two per halving). Splitting stops after
`culprits_max` refused events (default 8) or 2 * culprits_max * D writes,
whichever comes first; each set not settled by then is written whole once more
(a plain batch: it commits if the database now takes it) and otherwise refused
as a whole: each of its events is reported STORAGE_REFUSED with a reason saying
it was not tried on its own, so that resending those events in another batch
searches them again. An atomic batch is refused with the culprits found so far.
A refused answer is final, so a client never loops resending a poison batch. In
all at most (2 * culprits_max + 1) * D + 2 transactions per batch, its first
write included: 240 for a batch of 10,000 events.
Every write is a new transaction over the same event ids, so the store's
ON CONFLICT de-duplication keeps a re-written event from being stored twice.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from enum import Enum

import psycopg
from sqlalchemy.exc import DataError as SADataError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from metering.errors import Unavailable, contended
from metering.event import Code, EventError, PreparedBatch
from metering.store import BatchOutcome, EventStore, subset

log = logging.getLogger(__name__)

_STOP = object()
# PostgreSQL's own verdicts on data: data exception (22...) and integrity constraint violation (23...).
_DATA_SQLSTATE_CLASSES = ("22", "23")
# Connection exception, insufficient resources (disk full, out of memory), system error (I/O), and
# admin shutdown / crash shutdown / cannot connect now.
_INFRA_SQLSTATE_CLASSES = ("08", "53", "58")
_INFRA_SQLSTATES = {"57P01", "57P02", "57P03"}
_SQLITE_INFRA_TEXT = (
    "database is locked",
    "database is busy",
    "disk i/o error",
    "database or disk is full",
    "unable to open database",
    "readonly database",
)
_STAGED_COLUMN = re.compile(r"\bcolumn (event_id|customer|meter|properties)\b")
_REASON_CHARS_MAX = 200

Item = tuple[PreparedBatch, Future[BatchOutcome]]


class Failure(Enum):
    """What a failed write says about the data it carried."""

    DATA = "data"  # the database refused the data itself: the same data fails again
    INFRA = "infrastructure"  # the database is unreachable, full or going down: says nothing about data
    OTHER = "other"  # anything else (a bug, a cancelled statement, retries exhausted on deadlocks)


def _unwrap(exc: BaseException) -> BaseException:
    """The driver's exception under SQLAlchemy's wrapper (the PostgreSQL store raises psycopg's directly)."""
    if isinstance(exc, DBAPIError) and isinstance(exc.orig, BaseException):
        return exc.orig
    return exc


def _sqlstate(exc: BaseException) -> str:
    return getattr(exc, "sqlstate", None) or ""


def _retryable(exc: BaseException) -> bool:
    if contended(exc):  # lost to a concurrent transaction: serialization failure, deadlock, SQLite busy
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    orig = _unwrap(exc)
    # the connection broke: a new attempt takes another one from the pool (pre-ping)
    return isinstance(orig, psycopg.OperationalError) and _infra_sqlstate(_sqlstate(orig) or "08000")


def _infra_sqlstate(sqlstate: str) -> bool:
    return sqlstate[:2] in _INFRA_SQLSTATE_CLASSES or sqlstate in _INFRA_SQLSTATES


def classify(exc: BaseException) -> Failure:
    """Whether a write that raised `exc` (after its retries) failed because of its data."""
    orig = _unwrap(exc)
    sqlstate = _sqlstate(orig)
    if sqlstate[:2] in _DATA_SQLSTATE_CLASSES:
        return Failure.DATA
    if sqlstate and _infra_sqlstate(sqlstate):
        return Failure.INFRA
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return Failure.INFRA
    if isinstance(exc, SADataError | SAIntegrityError):
        return Failure.DATA
    if isinstance(orig, sqlite3.DataError | sqlite3.IntegrityError | psycopg.DataError | psycopg.IntegrityError):
        # psycopg raises DataError itself (no SQLSTATE) for a NUL in a text parameter.
        return Failure.DATA
    if isinstance(orig, OverflowError | UnicodeError):
        # A value the driver cannot encode, or (in the fold, metering/fold.py) a rollup total past 64 bits.
        return Failure.DATA
    if isinstance(orig, sqlite3.OperationalError) and any(t in str(orig).lower() for t in _SQLITE_INFRA_TEXT):
        return Failure.INFRA
    if isinstance(orig, psycopg.OperationalError) and not sqlstate:
        return Failure.INFRA  # client-side connection failure
    return Failure.OTHER


def database_message(exc: BaseException) -> tuple[str, str]:
    """(field, message) of a data error: the field when the database named the column, and the
    database's own message, first line only (no SQL, parameters or context)."""
    orig = _unwrap(exc)
    field = ""
    message = ""
    diag = getattr(orig, "diag", None)
    if diag is not None:  # psycopg
        message = diag.message_primary or ""
        column = _STAGED_COLUMN.search(diag.context or "")
        if column is not None:
            field = column.group(1)
        if _sqlstate(orig) == "22003":
            field = "value"
    if isinstance(orig, OverflowError):
        # The driver cannot encode a value past 64 bits, or (the fold) a rollup total leaves 64 bits.
        field, message = "value", f"leaves 64 bits: {orig}"
    elif isinstance(orig, sqlite3.IntegrityError) and "rollups.sum_units" in str(orig):
        # SQLite's rollup upsert makes a sum past 64 bits NULL (metering/sqlite.py checked_sum_sql).
        field, message = "value", "a total of its meter leaves 64 bits"
    if not message:
        lines = str(orig).strip().splitlines()
        message = lines[0] if lines else type(orig).__name__
    if len(message) > _REASON_CHARS_MAX:
        message = message[: _REASON_CHARS_MAX - 1] + "…"
    return field, message


def refusal(index: int, exc: BaseException) -> EventError:
    """The ack's error for an event the database refused on its own with `exc`."""
    field, message = database_message(exc)
    return EventError(index, field, Code.STORAGE_REFUSED, f"the database refused this event ({message}); not stored")


class _Stopped(Exception):
    """A write in a batch's search failed for a reason other than its data: the search stops."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class Committer:
    def __init__(
        self,
        store_factory: Callable[[], EventStore],
        writers: int = 1,
        commit_events_max: int = 50_000,
        attempts_max: int = 5,
        culprits_max: int = 8,
        delay_window_s: float = 0.1,
    ) -> None:
        self._store_factory = store_factory
        self._writers = writers
        self._commit_events_max = commit_events_max
        self._attempts_max = attempts_max
        self.culprits_max = culprits_max
        self._queue: queue.SimpleQueue[Item | object] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self.commits = 0
        self.batches_committed = 0
        #: Groups that failed and were settled batch by batch, and events refused by the database.
        self.groups_split = 0
        self.events_refused = 0
        #: Called after every commit (from the writer thread): must be quick and must not raise.
        self.listeners: list[Callable[[], None]] = []
        #: Whether a store that can fold (SQLite's) folds in the writer thread; and how long the writer
        #: waits for a batch before it folds at once while commits are left unfolded (a quiet moment; under
        #: steady ingest the store's age rule decides instead).
        self.fold_in_writer = False
        self.fold_idle_s = 0.05
        self.queue_delay_s = 0.0
        self._delay_window_s = delay_window_s
        self._window_start = time.monotonic()
        self._window_min = 0.0
        #: When each batch still in the queue was submitted, oldest first (deque ends are thread-safe).
        self._waiting: collections.deque[float] = collections.deque()

    def start(self) -> None:
        for i in range(self._writers):
            t = threading.Thread(target=self._run, name=f"tally-writer-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def submit(self, batch: PreparedBatch) -> Future[BatchOutcome]:
        fut: Future[BatchOutcome] = Future()
        fut.queued_at = now = time.monotonic()  # type: ignore[attr-defined]
        self._waiting.append(now)
        self._queue.put((batch, fut))
        return fut

    def queue_delay(self) -> float:
        """Seconds batches stand in the queue: the least wait of the last window (a queue that does not
        drain), or the wait of the oldest batch not yet taken (a writer stuck on a commit), the larger."""
        waiting = self._waiting
        head = time.monotonic() - waiting[0] if waiting else 0.0
        return max(self.queue_delay_s, head)

    def _observe(self, item: Item) -> None:
        """A writer took `item`, the oldest of its group: how long it waited in the queue."""
        now = time.monotonic()
        with contextlib.suppress(IndexError):
            self._waiting.popleft()
        waited = now - getattr(item[1], "queued_at", now)
        if now - self._window_start >= self._delay_window_s:
            self.queue_delay_s = min(self._window_min, waited)
            self._window_start, self._window_min = now, waited
        else:
            self._window_min = min(self._window_min, waited)

    def stop(self) -> None:
        """Commit everything already submitted, then end the writer threads."""
        for _ in self._threads:
            self._queue.put(_STOP)
        for t in self._threads:
            t.join()
        self._threads.clear()

    def _run(self) -> None:
        store = self._store_factory()
        # A store that folds on its own connection (SQLite: one write lock) folds here, between commits:
        # while busy, after a group is acked once the oldest unfolded commit has waited its turn (the store's
        # FOLD_AFTER_S: one fold then takes many commits, so each bucket is upserted once for all of them);
        # when no batch has come for `fold_idle_s`, at once.
        fold: Callable[[bool, Callable[[], bool]], bool] | None = (
            getattr(store, "fold", None) if self.fold_in_writer else None
        )
        unfolded = fold is not None
        try:
            while True:
                if unfolded:
                    try:
                        item = self._queue.get(timeout=self.fold_idle_s)
                    except queue.Empty:
                        unfolded = self._fold(fold, True)
                        continue
                else:
                    item = self._queue.get()
                if item is _STOP:
                    return
                group = [item]
                self._observe(item)  # type: ignore[arg-type]
                events = len(item[0])  # type: ignore[index]
                stop_after = False
                while events < self._commit_events_max:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is _STOP:
                        stop_after = True
                        break
                    group.append(nxt)
                    with contextlib.suppress(IndexError):
                        self._waiting.popleft()
                    events += len(nxt[0])  # type: ignore[index]
                self._commit(store, group)  # type: ignore[arg-type]
                if stop_after:
                    return
                if fold is not None:
                    unfolded = self._fold(fold, False)
        finally:
            if fold is not None:
                self._fold(fold, True)  # best effort: what is left is folded by the next server
            store.close()

    def _fold(self, fold: Callable[[bool, Callable[[], bool]], bool] | None, idle: bool) -> bool:
        """One fold step in the writer thread; a failure is logged and retried later, never fatal."""
        assert fold is not None
        try:
            return fold(idle, self._batch_waiting)
        except Exception:
            log.exception("fold failed; retrying later")
            return True

    def _batch_waiting(self) -> bool:
        return not self._queue.empty()

    def _commit(self, store: EventStore, group: list[Item]) -> None:
        try:
            outcomes = self.write(store, [b for b, _ in group])
        except Exception as exc:
            kind = classify(exc)
            if kind is Failure.INFRA or (len(group) == 1 and kind is Failure.OTHER):
                log.error("commit of %d batches failed (%s)", len(group), kind.value, exc_info=exc)
                _fail(group, exc)
                return
            log.warning(
                "commit of %d batches failed (%s: %s); settling them apart",
                len(group),
                type(_unwrap(exc)).__name__,
                kind.value,
            )
            self.groups_split += len(group) > 1
            try:
                _Isolation(self, store).settle(group, exc)
            except Exception as bug:  # never leave a batch unanswered, nor end the writer thread
                log.exception("settling a failed group went wrong")
                _fail(group, bug)
            return
        self._resolve(group, outcomes)

    def write(self, store: EventStore, batches: Sequence[PreparedBatch], probe: bool = False) -> list[BatchOutcome]:
        """One store write (or probe), retried on serialization failures, deadlocks and lost connections."""
        for attempt in range(1, self._attempts_max + 1):
            try:
                return store.probe(batches) if probe else store.write(batches)
            except Exception as exc:
                if _retryable(exc) and attempt < self._attempts_max:
                    log.warning("retrying commit of %d batches after %s", len(batches), exc)
                    time.sleep(0.01 * 2**attempt)
                    continue
                raise
        raise AssertionError("unreachable")

    def _resolve(self, group: Sequence[Item], outcomes: Sequence[BatchOutcome]) -> None:
        self.commits += 1
        self.batches_committed += len(group)
        for (_, fut), outcome in zip(group, outcomes, strict=True):
            fut.set_result(outcome)
        self._committed()

    def _committed(self) -> None:
        for listener in self.listeners:
            try:
                listener()
            except Exception:  # a listener's bug must not end the writer thread
                log.exception("commit listener failed")


def _fail(group: Sequence[Item], exc: BaseException) -> None:
    error = Unavailable(f"storage failed ({type(_unwrap(exc)).__name__}); nothing was acked: resend the batch")
    for _, fut in group:
        if not fut.done():
            fut.set_exception(error)


class _Isolation:
    """Settles the batches of a group whose one-transaction write failed, each on its own merits."""

    def __init__(self, committer: Committer, store: EventStore) -> None:
        self._committer = committer
        self._store = store
        self._outage: BaseException | None = None

    def settle(self, group: list[Item], exc: BaseException) -> None:
        """`group` was written together (one transaction) and failed with `exc`."""
        if len(group) == 1:
            self._settle_batch(group[0], exc)
            return
        mid = len(group) // 2
        for half in (group[:mid], group[mid:]):
            if self._outage is not None:
                _fail(half, self._outage)
                continue
            try:
                outcomes = self._committer.write(self._store, [b for b, _ in half])
            except Exception as err:
                if classify(err) is Failure.INFRA:
                    log.error("commit of %d batches failed (infrastructure)", len(half), exc_info=err)
                    self._outage = err
                    _fail(half, err)
                else:
                    self.settle(half, err)
            else:
                self._committer._resolve(half, outcomes)

    def _settle_batch(self, item: Item, exc: BaseException) -> None:
        """The batch was written alone and failed with `exc`."""
        batch, fut = item
        kind = classify(exc)
        if kind is not Failure.DATA:
            log.error("commit of batch %r of tenant %d failed (%s)", batch.batch_id, batch.tenant_id,
                      kind.value, exc_info=exc)  # fmt: skip
            if kind is Failure.INFRA:
                self._outage = exc
            _fail([item], exc)
            return
        search = _Search(self._committer, self._store, batch)
        try:
            outcome = search.run(exc)
        except _Stopped as stop:
            log.error("search of batch %r of tenant %d stopped", batch.batch_id, batch.tenant_id,
                      exc_info=stop.cause)  # fmt: skip
            if classify(stop.cause) is Failure.INFRA:
                self._outage = stop.cause
            _fail([item], stop.cause)
            return
        refused = sum(e.code == Code.STORAGE_REFUSED for e in outcome.errors)
        self._committer.events_refused += refused
        log.warning(
            "batch %r of tenant %d: the database refused %d of %d events (%d writes); %s",
            batch.batch_id,
            batch.tenant_id,
            refused,
            len(batch),
            search.writes,
            "refused whole (atomic)" if outcome.refused else "the rest is committed",
        )
        self._committer.batches_committed += 1
        fut.set_result(outcome)
        self._committer._committed()


class _Search:
    """Bisects one batch that the database refused to find the events it refuses.

    Plain batch: every sub-write commits, so the state the next sub-write meets
    is the one a single transaction would have built (a total that overflows
    only once earlier events are in is pinned on the event that tips it over);
    the outcome is the sum of the committed sub-writes plus the refused events.
    Atomic batch: nothing may be stored, so each step probes (rolled back) the
    events already known good (`ctx`) together with the set under test.
    """

    def __init__(self, committer: Committer, store: EventStore, batch: PreparedBatch) -> None:
        self._committer = committer
        self._store = store
        self._batch = batch
        self._atomic = batch.atomic
        self._outcome = BatchOutcome()
        self._culprits: list[EventError] = []
        self._unresolved: list[tuple[list[int], BaseException]] = []
        self._conflicts: dict[int, EventError] = {}  # atomic: conflicts the probes met
        self.writes = 0
        # 2 writes per halving per refused event; also a hard stop should refusals not be deterministic.
        self._writes_max = 2 * committer.culprits_max * max(1, (len(batch) - 1).bit_length())

    def run(self, exc: BaseException) -> BatchOutcome:
        if not len(self._batch):
            raise _Stopped(exc)  # no event to blame
        self._search(list(range(len(self._batch))), [], exc)
        if self._atomic:
            return self._atomic_verdict()
        outcome = self._outcome
        outcome.errors.extend(self._culprits)
        for positions, err in self._unresolved:
            outcome.errors.extend(self._untried(positions, err))
        outcome.errors.sort(key=lambda e: e.index)
        outcome.duplicates.sort()
        return outcome

    def _atomic_verdict(self) -> BatchOutcome:
        if not self._culprits:
            # The probes could not reproduce the failure: write the batch once more, for real.
            self.writes += 1
            try:
                [outcome] = self._committer.write(self._store, [self._batch])
            except Exception as err:
                raise _Stopped(err) from err
            return outcome
        errors = {e.index: e for e in self._culprits}
        for index, conflict in self._conflicts.items():
            errors.setdefault(index, conflict)
        return BatchOutcome(errors=sorted(errors.values(), key=lambda e: e.index), refused=True)

    def _untried(self, positions: list[int], exc: BaseException) -> list[EventError]:
        _, message = database_message(exc)
        reason = (
            f"not stored: the database refused a set of {len(positions)} events of this batch holding this one "
            f"({message}) and the search for the events it refuses stopped (culprits_max="
            f"{self._committer.culprits_max}); this event was not tried on its own: resend it in another batch"
        )
        return [EventError(self._batch.index[k], "", Code.STORAGE_REFUSED, reason) for k in positions]

    def _try(self, positions: list[int], ctx: list[int]) -> BaseException | None:
        """Write `positions` (atomic: probe ctx + positions); the data error, or None when it went in."""
        self.writes += 1
        try:
            if self._atomic:
                [out] = self._committer.write(self._store, [subset(self._batch, ctx + positions, atomic=False)], True)
                for err in out.errors:
                    self._conflicts.setdefault(err.index, err)
                return None
            [out] = self._committer.write(self._store, [subset(self._batch, positions)])
        except Exception as err:
            if classify(err) is not Failure.DATA:
                raise _Stopped(err) from err
            return err
        self._outcome.accepted += out.accepted
        self._outcome.duplicate += out.duplicate
        self._outcome.errors.extend(out.errors)
        self._outcome.duplicates.extend(out.duplicates)
        return None

    def _search(self, positions: list[int], ctx: list[int], exc: BaseException | None) -> None:
        """`positions` (with `ctx`) failed with the data error `exc`; None: not written yet but bound to
        fail, since the set it was split from failed and its other half went in."""
        if len(positions) == 1:
            if exc is None and (exc := self._try(positions, ctx)) is None:
                return
            self._culprits.append(refusal(self._batch.index[positions[0]], exc))
            return
        if len(self._culprits) >= self._committer.culprits_max or self.writes >= self._writes_max:
            if self._atomic:
                return  # refused anyway; enough culprits to say why
            if exc is None and (exc := self._try(positions, ctx)) is None:
                return
            self._unresolved.append((positions, exc))
            return
        mid = len(positions) // 2
        left, right = positions[:mid], positions[mid:]
        err = self._try(left, ctx)
        if err is None:
            self._search(right, ctx + left if self._atomic else ctx, None)
            return
        self._search(left, ctx, err)
        err = self._try(right, ctx)
        if err is not None:
            self._search(right, ctx, err)
