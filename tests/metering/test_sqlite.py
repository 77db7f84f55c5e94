"""metering/sqlite.py: multi-row statements keep every row, in order, once; the checked sum is exact or NULL."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from metering.sqlite import CHUNK_ROWS, INT64_MAX, INT64_MIN, checked_sum_sql, execute_values, values_statements

int64 = st.integers(INT64_MIN, INT64_MAX)


@given(a=int64, b=int64)
@example(a=INT64_MAX, b=1)
@example(a=INT64_MIN, b=-1)
@example(a=INT64_MAX, b=0)
@example(a=INT64_MIN, b=INT64_MAX)
@example(a=-1, b=INT64_MIN)
def test_checked_sum_is_the_sum_or_null(a: int, b: int) -> None:
    db = sqlite3.connect(":memory:")
    [(got, kind)] = db.execute(f"SELECT {checked_sum_sql('?1', '?2')}, typeof({checked_sum_sql('?1', '?2')})", (a, b))
    expected = a + b if INT64_MIN <= a + b <= INT64_MAX else None
    assert (got, kind) == (expected, "null" if expected is None else "integer")


def test_an_overflowing_sum_fails_a_not_null_column() -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, s INTEGER NOT NULL)")
    db.execute("INSERT INTO t VALUES (1, ?)", (INT64_MAX,))
    sql = f"INSERT INTO t VALUES (1, 1) ON CONFLICT (k) DO UPDATE SET s = {checked_sum_sql('t.s', 'excluded.s')}"
    with pytest.raises(sqlite3.IntegrityError, match=r"t\.s"):
        db.execute(sql)
    assert db.execute("SELECT s FROM t").fetchall() == [(INT64_MAX,)]


@given(rows=st.integers(0, 3000), columns=st.integers(1, 31))
@example(rows=1023, columns=13)
@example(rows=1024, columns=31)
@example(rows=1000, columns=9)
def test_statements_cover_every_row_in_order_with_few_shapes(rows: int, columns: int) -> None:
    flat = tuple(range(rows * columns))
    parts = list(values_statements("INSERT INTO t (x)", columns, " ON CONFLICT DO NOTHING", flat))
    assert tuple(v for _, params in parts for v in params) == flat
    for sql, params in parts:
        assert sql.count("?") == len(params) <= 32_766
        assert sql.startswith("INSERT INTO t (x) VALUES (") and sql.endswith(") ON CONFLICT DO NOTHING")
    sizes = [len(p) // columns for _, p in parts]
    full = [s for s in sizes if s == CHUNK_ROWS]
    rest = sizes[len(full) :]
    assert sizes[: len(full)] == full and len(rest) <= 3 and sum(rest) < CHUNK_ROWS  # few statements
    assert all(s % 64 == 0 or (s < 64 and s % 4 == 0) or s < 4 for s in rest)  # few shapes


def test_rows_keep_their_order_as_rowids_and_the_count_is_the_rows_inserted() -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (id TEXT UNIQUE, n INTEGER)")
    db.execute("INSERT INTO t VALUES ('dup', -1)")
    ids = [f"e{i}" for i in range(1500)]
    ids[700] = "dup"
    flat = tuple(x for i, e in enumerate(ids) for x in (e, i))
    inserted = execute_values(db.execute, "INSERT INTO t (id, n)", 2, " ON CONFLICT DO NOTHING", flat)
    assert inserted == 1499
    got = db.execute("SELECT n FROM t WHERE n >= 0 ORDER BY rowid").fetchall()
    assert [n for (n,) in got] == [i for i in range(1500) if i != 700]


def test_values_that_do_not_make_rows_are_refused() -> None:
    with pytest.raises(ValueError, match="rows of 2"):
        list(values_statements("INSERT INTO t (a, b)", 2, "", (1, 2, 3)))
