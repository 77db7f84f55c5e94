"""Group commit between the gRPC servicer and the event store.

Validated batches from every stream wait in one queue; each writer thread takes
whatever is waiting (up to commit_events_max events) and stores it in a single
transaction. Under light load a group is one batch and latency is one commit;
under heavy load one fsync pays for many batches, so throughput rises with load
instead of collapsing. Each submitted batch gets a future that resolves only
after COMMIT, and the servicer acks on that.

SQLite runs one writer thread (it has one writer lock anyway); PostgreSQL may run
several, each on its own connection.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

from sqlalchemy.exc import DBAPIError

from metering.errors import Unavailable
from metering.event import PreparedBatch
from metering.store import BatchOutcome, EventStore

log = logging.getLogger(__name__)

_STOP = object()
# SQLSTATEs worth retrying: serialization failure, deadlock, and SQLite's "locked/busy".
_RETRYABLE_SQLSTATES = {"40001", "40P01"}


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError):
        orig = exc.orig
        sqlstate = getattr(orig, "sqlstate", None)
        if sqlstate in _RETRYABLE_SQLSTATES:
            return True
        text = str(orig).lower()
        return "database is locked" in text or "database is busy" in text or exc.connection_invalidated
    return False


class Committer:
    def __init__(
        self,
        store_factory: Callable[[], EventStore],
        writers: int = 1,
        commit_events_max: int = 50_000,
        attempts_max: int = 5,
    ) -> None:
        self._store_factory = store_factory
        self._writers = writers
        self._commit_events_max = commit_events_max
        self._attempts_max = attempts_max
        self._queue: queue.SimpleQueue[tuple[PreparedBatch, Future[BatchOutcome]] | object] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self.commits = 0
        self.batches_committed = 0

    def start(self) -> None:
        for i in range(self._writers):
            t = threading.Thread(target=self._run, name=f"tally-writer-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def submit(self, batch: PreparedBatch) -> Future[BatchOutcome]:
        fut: Future[BatchOutcome] = Future()
        self._queue.put((batch, fut))
        return fut

    def stop(self) -> None:
        """Commit everything already submitted, then end the writer threads."""
        for _ in self._threads:
            self._queue.put(_STOP)
        for t in self._threads:
            t.join()
        self._threads.clear()

    def _run(self) -> None:
        store = self._store_factory()
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    return
                group = [item]
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
                    events += len(nxt[0])  # type: ignore[index]
                self._commit(store, group)  # type: ignore[arg-type]
                if stop_after:
                    return
        finally:
            store.close()

    def _commit(self, store: EventStore, group: list[tuple[PreparedBatch, Future[BatchOutcome]]]) -> None:
        batches = [b for b, _ in group]
        for attempt in range(1, self._attempts_max + 1):
            try:
                outcomes = store.write(batches)
            except Exception as exc:
                if _retryable(exc) and attempt < self._attempts_max:
                    log.warning("retrying commit of %d batches after %s", len(batches), exc)
                    time.sleep(0.01 * 2**attempt)
                    continue
                log.exception("commit of %d batches failed", len(batches))
                error = Unavailable(f"storage failed ({type(exc).__name__}); nothing was acked: resend the batch")
                for _, fut in group:
                    fut.set_exception(error)
                return
            self.commits += 1
            self.batches_committed += len(batches)
            for (_, fut), outcome in zip(group, outcomes, strict=True):
                fut.set_result(outcome)
            return
