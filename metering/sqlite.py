"""The SQL functions every SQLite connection carries (`tally.db` registers them when a connection opens).

A module of its own, free of the rollup machinery, so that opening a database (every CLI command) does
not load numpy and the event pipeline.
"""

from __future__ import annotations

from typing import Any

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


def _checked_add(a: int, b: int) -> int:
    """`tally_add(a, b)`: the rollup upsert's sum, refused when it leaves 64 bits (SQLite would turn it into
    a float)."""
    total = a + b
    if not INT64_MIN <= total <= INT64_MAX:
        raise OverflowError(f"rollup sum {a} + {b} leaves 64 bits")
    return total


def register_sqlite_functions(dbapi_conn: Any) -> None:
    dbapi_conn.create_function("tally_add", 2, _checked_add, deterministic=True)


__all__ = ["register_sqlite_functions"]
