"""Rollups folded after the ack: the ack's commit stores events and `ingest_pending` rows; the fold moves
them into rollups in a transaction of its own. What must hold, on SQLite and PostgreSQL:

- reads are exact whatever has been folded: every query answers the same with nothing folded, part of it
  folded, or all of it (read through the watermark);
- folding is idempotent and complete: after catching up nothing is pending and the rollups equal a
  recomputation from raw events; folding again changes nothing;
- a total that leaves 64 bits never fails the fold: the bucket is recorded and queries reading it refuse;
- concurrent PostgreSQL writers (commits finishing out of order) are folded exactly once each.
"""

from __future__ import annotations

import itertools
import json
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from metering.errors import FailedPrecondition
from metering.event import PreparedBatch
from metering.fold import catch_up, fold_once
from metering.meter import Aggregation, MeterDefinition, TimeUnit, create_meter, list_meters
from metering.rollup import by_day, compute_from_events, stored, stored_days
from metering.store import open_store
from metering.tables import ingest_pending, rollup_overflows
from metering.usage import Window, event_totals, meter_summary, period_columns, range_totals, usage
from tests.conftest import TenantKey

BASE = datetime(2026, 3, 1, tzinfo=UTC)
START, END = BASE - timedelta(days=2), BASE + timedelta(days=3)
INT64_MAX = 2**63 - 1
_TENANTS = itertools.count()


def meters(engine: Engine, tid: int) -> None:
    create_meter(engine, tid, MeterDefinition(code="gpu", aggregation=Aggregation.SUM, group_by=["region"]))
    create_meter(engine, tid, MeterDefinition(code="peak", aggregation=Aggregation.MAX))
    create_meter(engine, tid, MeterDefinition(code="last", aggregation=Aggregation.LATEST))
    create_meter(
        engine, tid, MeterDefinition(code="users", aggregation=Aggregation.UNIQUE_COUNT, unique_property="user")
    )
    create_meter(engine, tid, MeterDefinition(code="seats", aggregation=Aggregation.GAUGE, time_unit=TimeUnit.DAY))


def make_batch(
    engine: Engine, tid: int, rows: list[tuple[str, str, str, int, int, dict[str, str] | None]]
) -> PreparedBatch:
    """rows: (event_id, customer, meter, minutes after BASE, units, properties)."""
    specs = {m.code: m.spec for m in list_meters(engine, tid)}
    n = len(rows)
    return PreparedBatch(
        tenant_id=tid, batch_id="b", size=n, atomic=False, index=list(range(n)), event_ids=[r[0] for r in rows],
        customers=[r[1] for r in rows], meters=[r[2] for r in rows],
        ts_us=[int((BASE + timedelta(minutes=r[3])).timestamp()) * 1_000_000 for r in rows],
        value_units=[r[4] for r in rows], value_scale=[specs[r[2]].value_scale for r in rows],
        properties=[json.dumps(r[5], sort_keys=True, separators=(",", ":")) if r[5] else None for r in rows],
        specs=specs,
    )  # fmt: skip


def answers(engine: Engine, tid: int) -> dict[str, Any]:
    """Every read of the usage API over the test's events."""
    out: dict[str, Any] = {}
    for customer in ("c1", "c2"):
        for meter in ("gpu", "peak", "last", "users", "seats", "tokens", "api_calls"):
            out[f"{customer}/{meter}"] = usage(engine, tid, customer, meter, START, END, window=Window.DAY)
            out[f"{customer}/{meter}/grouped"] = usage(engine, tid, customer, meter, START, END, group_by=True)
    cols = period_columns(engine, tid, START, END)
    out["period"] = [tuple(map(str, row)) for row in zip(cols.customers, cols.meters, cols.group_keys, cols.units,
                                                          cols.events, strict=True)]  # fmt: skip
    sub = period_columns(engine, tid, START, END, customers=["c2"])
    out["period_c2"] = [tuple(map(str, row)) for row in zip(sub.customers, sub.meters, sub.units, strict=True)]
    out["totals"] = event_totals(engine, tid, START, END)
    out["ranges"] = range_totals(engine, tid, [("c1", "gpu", START, BASE), ("c1", "gpu", BASE, END),
                                               ("c2", "tokens", START, END)])  # fmt: skip
    out["summary"] = [meter_summary(engine, tid, m) for m in ("gpu", "seats", "users")]
    return out


def pending(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(ingest_pending)).scalar_one())


def rollups_match_events(engine: Engine, tid: int) -> None:
    """Both tiers: every bucket recomputed from the raw events, and every day row the merge of its day's
    buckets (count, sum, min, max, latest)."""
    with engine.connect() as conn:
        for m in list_meters(engine, tid):
            buckets = stored(conn, tid, m.code, m.spec)
            assert buckets == compute_from_events(conn, tid, m.code, m.spec), m.code
            assert stored_days(conn, tid, m.code) == by_day(buckets), m.code


event_rows = st.lists(
    st.tuples(
        st.sampled_from(["c1", "c2"]),
        st.sampled_from(["gpu", "peak", "last", "users", "seats", "tokens", "api_calls"]),
        st.integers(-1500, 3000),  # minutes around BASE: several buckets, days, before and inside the range
        st.integers(-50, 10_000),
        st.sampled_from(["eu", "us"]),
        st.sampled_from(["u1", "u2", "u3"]),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(commits=st.lists(event_rows, min_size=1, max_size=4), folded=st.integers(0, 4))
def test_reads_are_the_same_folded_or_not(engine: Engine, tenant: TenantKey, commits: Any, folded: int) -> None:
    """Each example: a fresh tenant, a few commits, some folded; every answer equals the fully folded one."""
    from tests.conftest import make_tenant

    tid = make_tenant(engine, f"t{next(_TENANTS)}").tenant_id
    meters(engine, tid)
    store = open_store(engine)
    n = 0
    for rows in commits:
        batch_rows = []
        for customer, meter, minutes, units, region, user in rows:
            props = {"region": region} if meter == "gpu" else {"user": user} if meter == "users" else None
            value = abs(units) if meter in ("seats", "api_calls") else units
            batch_rows.append((f"e{n}", customer, meter, minutes, value, props))
            n += 1
        store.write([make_batch(engine, tid, batch_rows)])
    for _ in range(folded):  # one commit per fold: part of it folded, the rest pending
        fold_once(engine, events_max=1)
    partly = answers(engine, tid)
    catch_up(engine)
    assert pending(engine) == 0
    assert answers(engine, tid) == partly
    rollups_match_events(engine, tid)


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(commits=st.lists(event_rows, min_size=2, max_size=4), stale=st.booleans())
def test_a_fold_that_gives_way_to_a_batch_folds_each_commit_once(
    engine: Engine, tenant: TenantKey, commits: Any, stale: bool
) -> None:
    """SQLite's writer computes a fold's partials before its transaction and, if a batch came meanwhile,
    writes the batch first (metering/store.py `fold`). The partials kept for the next turn cover only the
    commits they were computed from: later commits wait for the fold after, and if another folder folded
    those commits meanwhile (`stale`), the kept partials are dropped, never added twice."""
    from tests.conftest import make_tenant

    if engine.dialect.name != "sqlite":
        pytest.skip("the writer folds between its commits on SQLite only")
    tid = make_tenant(engine, f"t{next(_TENANTS)}").tenant_id
    meters(engine, tid)
    store = open_store(engine)
    n = 0

    def write(rows: Any) -> None:
        nonlocal n
        batch_rows = []
        for customer, meter, minutes, units, region, user in rows:
            props = {"region": region} if meter == "gpu" else {"user": user} if meter == "users" else None
            batch_rows.append((f"e{n}", customer, meter, minutes, abs(units) if meter == "seats" else units, props))
            n += 1
        store.write([make_batch(engine, tid, batch_rows)])

    for rows in commits[:-1]:
        write(rows)
    before = pending(engine)
    assert store.fold(True, lambda: True)  # a batch is waiting: partials computed, nothing written
    assert pending(engine) == before
    write(commits[-1])  # the batch that came meanwhile
    if stale:
        fold_once(engine, events_max=1)  # another folder takes the oldest commit from the table
    expected_left = 0 if stale else 1  # stale: the kept partials are dropped and the fold takes all that is left
    store.fold(True, lambda: False)
    assert pending(engine) == expected_left  # the later commit waits for the next fold
    partly = answers(engine, tid)
    while store.fold(True, lambda: False):
        pass
    store.close()
    assert pending(engine) == 0
    assert answers(engine, tid) == partly
    rollups_match_events(engine, tid)


def test_fold_is_idempotent_and_the_ack_does_not_wait_for_it(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    store = open_store(engine)
    [out] = store.write([make_batch(engine, tid, [(f"t{i}", "c1", "tokens", i, 100, None) for i in range(50)])])
    assert out.accepted == 50 and pending(engine) == 1
    with engine.connect() as conn:
        assert stored(conn, tid, "tokens", list_meters(engine, tid)[1].spec) == {}  # nothing folded yet
    assert usage(engine, tid, "c1", "tokens", START, END)[0].quantity == Decimal("50.00")  # read through
    # A resend (duplicates) adds no pending row; a fold folds each commit once.
    [again] = store.write([make_batch(engine, tid, [(f"t{i}", "c1", "tokens", i, 100, None) for i in range(50)])])
    assert (again.accepted, again.duplicate, again.duplicates) == (0, 50, list(range(50))) and pending(engine) == 1
    assert catch_up(engine) == 50 and catch_up(engine) == 0
    assert usage(engine, tid, "c1", "tokens", START, END)[0].quantity == Decimal("50.00")
    rollups_match_events(engine, tid)


def test_a_read_through_the_watermark_reads_only_the_pending_commits_rows(engine: Engine, tenant: TenantKey) -> None:
    """Reads add pending commits by their position in the table, never by walking the tenant's events:
    SQLite's planner, given `tenant_id = ?`, preferred the primary key's index, so every read under ingest
    walked all of the tenant's events (a 1 s p99 in benchmarks.mixed). The plan must seek the rowid range."""
    from sqlalchemy import event

    from metering.fold import pending_events, pending_rows

    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL reads a commit by a TID range scan; its planner needs no hint")
    tid = tenant.tenant_id
    store = open_store(engine)
    store.write([make_batch(engine, tid, [(f"p{i}", f"c{i % 3}", "tokens", i, 100, None) for i in range(30)])])
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if "FROM events" in statement:
            seen.append((statement, parameters))

    with engine.connect() as conn:
        [row] = pending_rows(conn, tid)
        event.listen(conn, "before_cursor_execute", capture)
        found = pending_events(conn, row, meter="tokens", customers=["c1"])
        event.remove(conn, "before_cursor_execute", capture)
        assert sorted(r[0] for r in found) == sorted(f"p{i}" for i in range(30) if i % 3 == 1)
        [(statement, parameters)] = seen
        plan = " ".join(str(r[3]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters))
    assert "INTEGER PRIMARY KEY" in plan and "INDEX" not in plan.replace("INTEGER PRIMARY KEY", ""), plan


def test_a_total_past_64_bits_is_recorded_not_failed(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    store = open_store(engine)
    store.write([make_batch(engine, tid, [("big-1", "big", "tokens", 0, INT64_MAX, None)])])
    assert fold_once(engine).events == 1  # the bucket holds INT64_MAX units
    [out] = store.write(
        [make_batch(engine, tid, [("big-2", "big", "tokens", 1, 1, None), ("ok", "c1", "tokens", 1, 7, None)])]
    )
    assert (out.accepted, out.errors) == (2, [])  # acked: both stored
    # Read through the watermark the total is added in Python integers: exact, as a sum over buckets is.
    assert usage(engine, tid, "big", "tokens", START, END)[0].quantity == Decimal(INT64_MAX + 1).scaleb(-2)
    catch_up(engine)  # never fails: the bucket is recorded, its row left at INT64_MAX
    assert pending(engine) == 0
    with engine.connect() as conn:
        rows = conn.execute(select(rollup_overflows.c.customer, rollup_overflows.c.events)).all()
    assert [tuple(r) for r in rows] == [("big", 1)]
    with pytest.raises(FailedPrecondition, match="does not fit 64-bit units"):
        usage(engine, tid, "big", "tokens", START, END)
    with pytest.raises(FailedPrecondition, match="does not fit 64-bit units"):
        period_columns(engine, tid, START, END)
    assert usage(engine, tid, "c1", "tokens", START, END)[0].quantity == Decimal("0.07")
    assert usage(engine, tid, "big", "tokens", BASE + timedelta(days=1), END) == []  # other buckets answer


@pytest.mark.postgres
def test_concurrent_writers_commit_out_of_order_and_fold_once(engine: Engine, tenant: TenantKey) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("one writer on SQLite")
    tid = tenant.tenant_id
    stores = [open_store(engine) for _ in range(4)]
    errors: list[BaseException] = []

    def write(k: int) -> None:
        try:
            for n in range(20):
                rows = [(f"w{k}-{n}-{i}", f"c{i % 3}", "tokens", i, 1 + k, None) for i in range(200)]
                stores[k].write([make_batch(engine, tid, rows)])
                if n % 5 == k:
                    fold_once(engine, events_max=500)  # folds race with commits in flight
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    expected = sum(20 * 200 * (1 + k) for k in range(4))
    total = sum(r.quantity for c in ("c0", "c1", "c2") for r in usage(engine, tid, c, "tokens", START, END))
    assert total == Decimal(expected).scaleb(-2)
    catch_up(engine)
    assert pending(engine) == 0
    rollups_match_events(engine, tid)
    for s in stores:
        s.close()
