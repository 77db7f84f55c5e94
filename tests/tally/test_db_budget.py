"""A single long SQL statement stops at the request's budget on both databases: `checkpoint()` cannot
reach inside a statement, so SQLite's progress handler and PostgreSQL's statement_timeout do it."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine, text

from metering.deadline import Budget, bounded
from tally.errors import outcome

#: A statement that runs for minutes: count a recursive series to a billion.
LONG = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) "
    "SELECT count(*) FROM c"
)


def test_a_long_statement_stops_at_the_budget(engine: Engine) -> None:
    started = time.monotonic()
    with bounded(Budget(0.3)), pytest.raises(Exception) as caught, engine.connect() as conn:
        conn.execute(text(LONG)).scalar_one()
    elapsed = time.monotonic() - started
    assert outcome(caught.value)[0] == "deadline_exceeded", caught.value
    assert elapsed < 3.0, elapsed
    with engine.connect() as conn:  # the connection goes back to the pool usable, and no budget: no limit
        assert conn.execute(text("SELECT 1")).scalar_one() == 1


def test_without_a_budget_nothing_is_interrupted(engine: Engine) -> None:
    short = LONG.replace("1000000000", "200000")
    with engine.connect() as conn:
        assert conn.execute(text(short)).scalar_one() == 200000
    with bounded(Budget(30)), engine.connect() as conn:
        assert conn.execute(text(short)).scalar_one() == 200000
