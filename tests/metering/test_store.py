"""The event store on SQLite and PostgreSQL: exactly-once storage, conflicts, atomic batches."""

from __future__ import annotations

import threading

from sqlalchemy import Engine, func, select

from metering.event import PreparedBatch
from metering.meter import Aggregation, MeterSpec
from metering.store import PostgresEventStore, open_store
from metering.tables import events
from tally.v1 import ingest_pb2 as pb
from tests.conftest import TenantKey

NOW_US = 1_800_000_000_000_000


def batch(
    tenant_id: int, ids: list[str], value: int = 100, atomic: bool = False, customer: str = "c1"
) -> PreparedBatch:
    n = len(ids)
    return PreparedBatch(
        tenant_id=tenant_id, batch_id="b", size=n, atomic=atomic, index=list(range(n)), event_ids=ids,
        customers=[customer] * n, meters=["tokens"] * n, ts_us=[NOW_US] * n, value_units=[value] * n,
        value_scale=[2] * n, properties=[None] * n, specs={"tokens": MeterSpec(Aggregation.SUM, 2)},
    )  # fmt: skip


def stored(engine: Engine) -> dict[str, tuple[str, int]]:
    with engine.connect() as conn:
        rows = conn.execute(select(events.c.event_id, events.c.customer, events.c.value_units)).all()
    return {r.event_id: (r.customer, r.value_units) for r in rows}


def test_new_duplicate_and_conflict(engine: Engine, tenant: TenantKey) -> None:
    store = open_store(engine)
    [first] = store.write([batch(tenant.tenant_id, ["a", "b"])])
    assert (first.accepted, first.duplicate, first.errors) == (2, 0, [])
    [again] = store.write([batch(tenant.tenant_id, ["a", "c"])])
    assert (again.accepted, again.duplicate, again.errors) == (1, 1, [])
    [clash] = store.write([batch(tenant.tenant_id, ["b", "d"], value=999)])
    assert (clash.accepted, clash.duplicate) == (1, 0)
    assert [(e.index, e.code) for e in clash.errors] == [(0, pb.EVENT_ID_CONFLICT)]
    assert "value" in clash.errors[0].reason
    assert stored(engine) == {"a": ("c1", 100), "b": ("c1", 100), "c": ("c1", 100), "d": ("c1", 999)}
    store.close()


def test_same_payload_at_another_scale_is_a_duplicate(engine: Engine, tenant: TenantKey) -> None:
    store = open_store(engine)
    store.write([batch(tenant.tenant_id, ["a"], value=100)])
    b = batch(tenant.tenant_id, ["a"], value=1000)
    b.value_scale = [3]
    [out] = store.write([b])
    assert (out.accepted, out.duplicate, out.errors) == (0, 1, [])
    store.close()


def test_repeats_inside_a_batch_and_a_group(engine: Engine, tenant: TenantKey) -> None:
    store = open_store(engine)
    b1 = batch(tenant.tenant_id, ["a", "a", "b"])
    b1.value_units = [100, 100, 100]
    b2 = batch(tenant.tenant_id, ["a", "b", "z"], customer="other")
    o1, o2 = store.write([b1, b2])
    assert (o1.accepted, o1.duplicate, o1.errors) == (2, 1, [])
    assert (o2.accepted, o2.duplicate) == (1, 0)
    assert [(e.index, e.code) for e in o2.errors] == [(0, pb.EVENT_ID_CONFLICT), (1, pb.EVENT_ID_CONFLICT)]
    assert "customer" in o2.errors[0].reason
    assert len(stored(engine)) == 3
    store.close()


def test_atomic_batch_with_conflict_stores_nothing(engine: Engine, tenant: TenantKey) -> None:
    store = open_store(engine)
    store.write([batch(tenant.tenant_id, ["a"])])
    plain = batch(tenant.tenant_id, ["p1"])
    atomic = batch(tenant.tenant_id, ["n1", "n2", "a"], value=5, atomic=True)
    o_plain, o_atomic = store.write([plain, atomic])
    assert o_plain.accepted == 1
    assert o_atomic.refused and o_atomic.accepted == 0
    assert [(e.index, e.code) for e in o_atomic.errors] == [(2, pb.EVENT_ID_CONFLICT)]
    assert set(stored(engine)) == {"a", "p1"}
    # An atomic batch that only repeats stored events is a clean retry.
    [retry] = store.write([batch(tenant.tenant_id, ["a", "p1"], atomic=True)])
    assert (retry.refused, retry.duplicate) == (False, 2)
    store.close()


def test_tenants_are_separate(engine: Engine, tenant: TenantKey) -> None:
    from tests.conftest import make_tenant

    other = make_tenant(engine, "globex")
    store = open_store(engine)
    [a] = store.write([batch(tenant.tenant_id, ["same"])])
    [b] = store.write([batch(other.tenant_id, ["same"], value=7)])
    assert (a.accepted, b.accepted, b.errors) == (1, 1, [])
    store.close()


def test_concurrent_writers_store_each_id_once(engine: Engine, tenant: TenantKey) -> None:
    """Eight writers race on overlapping ids; on PostgreSQL they really run in parallel."""
    ids = [f"e{i}" for i in range(400)]
    results: list[tuple[int, int]] = []
    lock = threading.Lock()

    def writer(k: int) -> None:
        store = PostgresEventStore(engine) if engine.dialect.name == "postgresql" else None
        if store is None:
            return
        mine = ids[k * 25 :] + ids[: k * 25]
        [out] = store.write([batch(tenant.tenant_id, mine)])
        with lock:
            results.append((out.accepted, out.duplicate))

    if engine.dialect.name == "sqlite":
        # SQLite has one writer by design; serial writes through the same store must agree.
        store = open_store(engine)
        for k in range(8):
            [out] = store.write([batch(tenant.tenant_id, ids[k * 25 :] + ids[: k * 25])])
            results.append((out.accepted, out.duplicate))
        store.close()
    else:
        threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sum(a for a, _ in results) == len(ids)
    assert sum(a + d for a, d in results) == 8 * len(ids)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(events)).scalar_one() == len(ids)
