"""SQLite specifics the write paths share: multi-row statements and a sum that cannot silently overflow.

A module of its own, free of the rollup machinery, so that the ledger and the document writers use it
without loading numpy and the event pipeline.

Why multi-row statements: Python's sqlite3 `executemany` releases the GIL around every row it steps, and
takes it back before the next. Alone that costs little, but in a server whose event loop is busy
decoding the next batch, each take-back can wait for the loop's switch interval (5 ms): measured here,
1,000 rows took 2.1 ms alone and 2.9 s beside a busy thread. One `INSERT … VALUES (…), (…), …` per up to
`CHUNK_ROWS` rows binds every value in C and steps once, so the GIL changes hands once per statement:
1.5 ms alone, ~13 ms beside the same busy thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from typing import Any

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

#: Rows per statement: as many statements of CHUNK_ROWS as fit, then what is left in at most three (a multiple of
#: 64, a multiple of 4, and up to 3 rows): a batch of 1,000 is two statements, and 34 shapes per kind of row
#: cover every size, so a connection's statement cache (sqlite3 keeps 128) holds them all.
#: 1,024 rows of up to 31 columns stay under SQLite's 32,766 bound parameters (its default since 3.32).
CHUNK_ROWS = 1024
_REMAINDER_UNITS = (64, 4, 1)
_PARAMS_MAX = 32_766


def checked_sum_sql(a: str, b: str) -> str:
    """`a + b` in SQL, NULL where the sum would leave 64 bits: into a NOT NULL column that is a constraint
    failure (a data error), where SQLite's own `+` would silently store a float. Plain SQL, unlike a
    Python function registered on the connection, which would take the GIL once per row. Neither bound can
    overflow: `MAX - b` is evaluated only for b > 0, `MIN - b` only for b < 0."""
    return (
        f"CASE WHEN ({b} > 0 AND {a} > {INT64_MAX} - {b}) OR ({b} < 0 AND {a} < {INT64_MIN} - {b})"
        f" THEN NULL ELSE {a} + {b} END"
    )


@lru_cache(maxsize=256)
def _statement(head: str, columns: int, tail: str, rows: int) -> str:
    row = "(" + ",".join("?" * columns) + ")"
    return f"{head} VALUES {','.join([row] * rows)}{tail}"


def values_statements(head: str, columns: int, tail: str, flat: Sequence[Any]) -> Iterator[tuple[str, Sequence[Any]]]:
    """(sql, parameters) for inserting rows given flattened (`columns` values per row, row after row):
    `head` is `INSERT INTO t (a, b)`, `tail` what follows the VALUES (`ON CONFLICT …`, or '').
    Rows keep their order, so rowids follow it as with one row per statement."""
    if columns <= 0 or len(flat) % columns:
        raise ValueError(f"{len(flat)} values do not make rows of {columns}")
    left, at = len(flat) // columns, 0
    chunk = min(CHUNK_ROWS, 1 << (_PARAMS_MAX // columns).bit_length() - 1)
    while left >= chunk:
        yield _statement(head, columns, tail, chunk), flat[at : at + chunk * columns]
        at += chunk * columns
        left -= chunk
    for unit in _REMAINDER_UNITS:
        rows = left // unit * unit
        if rows:
            yield _statement(head, columns, tail, rows), flat[at : at + rows * columns]
            at += rows * columns
            left -= rows


def execute_values(
    execute: Callable[[str, Sequence[Any]], Any], head: str, columns: int, tail: str, flat: Sequence[Any]
) -> int:
    """Run `values_statements` through `execute` (a DB-API cursor's, or a SQLAlchemy connection's
    `exec_driver_sql`); returns the rows changed (rowcount summed: inserted, or inserted and updated)."""
    changed = 0
    for sql, params in values_statements(head, columns, tail, flat):
        changed += execute(sql, tuple(params)).rowcount
    return changed


__all__ = [
    "CHUNK_ROWS",
    "INT64_MAX",
    "INT64_MIN",
    "checked_sum_sql",
    "execute_values",
    "values_statements",
]
