"""One way to open a write transaction, for every package.

On SQLite a deferred transaction that reads first and writes later must upgrade its read lock to the
write lock; if another writer (the ingest committer, say) holds it meanwhile, SQLite answers "database is
locked" at once instead of waiting, to avoid a deadlock: under ingest, such a transaction fails at
random. Taking the write lock up front (`BEGIN IMMEDIATE`, which `tally.db` issues for the
`sqlite_begin` option) makes it wait its turn within the busy timeout instead. PostgreSQL is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine


@contextmanager
def begin_write(engine: Engine) -> Iterator[Connection]:
    """`engine.begin()` for a transaction that writes: committed on success, rolled back on error."""
    # Only SQLite's begin listener (tally.db) reads the option; on PostgreSQL it is inert.
    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
        yield conn


__all__ = ["begin_write"]
