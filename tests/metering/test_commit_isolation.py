"""One batch's storage failure never fails another batch of its group commit.

A group whose one-transaction write fails is settled batch by batch; a batch the database refuses is
bisected over its events, each refused event reported by index (STORAGE_REFUSED), the rest committed
(or, atomic, refused whole). Real refusals: on PostgreSQL a NUL in text, on both databases a value past
64 bits (each built straight into a PreparedBatch, past the edge validation that refuses it). A store
wrapper proves the bounds and the failure classes.

A rollup total that leaves 64 bits used to be the refusal no validation could see (it depends on what is
stored), reported STORAGE_REFUSED at the ack. Rollups are folded after the ack now (metering/fold.py): the
event is stored and acked, the fold records the bucket in `rollup_overflows`, and every query reading it
refuses with FAILED_PRECONDITION: still never a wrapped or silently short total, and still never another
tenant's failure (the end-to-end test below).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import grpc
import psycopg
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import DataError, OperationalError

from metering.committer import Committer
from metering.errors import FailedPrecondition, Unavailable
from metering.event import PreparedBatch
from metering.fold import catch_up
from metering.meter import Aggregation, MeterSpec
from metering.rollup import rebuild
from metering.store import BatchOutcome, EventStore, open_store, subset
from metering.tables import events, ingest_pending
from metering.usage import usage
from tally.v1 import ingest_pb2 as pb
from tally.v1 import ingest_pb2_grpc as pb_grpc
from tests.conftest import ServerThread, TenantKey, make_tenant

NOW_US = 1_800_000_000_000_000
INT64_MAX = 2**63 - 1
SPEC = MeterSpec(Aggregation.SUM, 2)


def batch(
    tenant_id: int,
    ids: list[str],
    *,
    values: list[int] | None = None,
    customers: list[str] | None = None,
    atomic: bool = False,
    batch_id: str = "b",
) -> PreparedBatch:
    n = len(ids)
    return PreparedBatch(
        tenant_id=tenant_id, batch_id=batch_id, size=n, atomic=atomic, index=list(range(n)), event_ids=ids,
        customers=customers or ["c1"] * n, meters=["tokens"] * n, ts_us=[NOW_US] * n,
        value_units=values or [100] * n, value_scale=[2] * n, properties=[None] * n, specs={"tokens": SPEC},
    )  # fmt: skip


def stored(engine: Engine, tenant_id: int) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(events.c.event_id, events.c.value_units).where(events.c.tenant_id == tenant_id)
        ).all()
    return {r.event_id: r.value_units for r in rows}


def commit_group(committer: Committer, batches: Sequence[PreparedBatch]) -> list[Future[BatchOutcome]]:
    """Queue every batch before the writer starts, so that they form one group; wait until settled."""
    futures = [committer.submit(b) for b in batches]
    committer.start()
    committer.stop()
    return futures


def codes(outcome: BatchOutcome) -> list[tuple[int, str, str]]:
    return [(e.index, e.field, pb.EventErrorCode.Name(e.code)) for e in outcome.errors]


class WrappedStore:
    """A real store that raises `error(batch)` for any write holding a batch it returns an error for."""

    def __init__(self, inner: EventStore, error: Callable[[PreparedBatch], BaseException | None]) -> None:
        self.inner = inner
        self.error = error
        self.writes = 0
        self.probes = 0

    def _check(self, batches: Sequence[PreparedBatch]) -> None:
        for b in batches:
            exc = self.error(b)
            if exc is not None:
                raise exc

    def write(self, batches: Sequence[PreparedBatch]) -> list[BatchOutcome]:
        self.writes += 1
        self._check(batches)
        return self.inner.write(batches)

    def probe(self, batches: Sequence[PreparedBatch]) -> list[BatchOutcome]:
        self.probes += 1
        self._check(batches)
        return self.inner.probe(batches)

    def close(self) -> None:
        self.inner.close()


def marked(bad: set[str]) -> Callable[[PreparedBatch], BaseException | None]:
    """What a driver's DataError looks like once SQLAlchemy wraps it."""

    def error(b: PreparedBatch) -> BaseException | None:
        if bad.isdisjoint(b.event_ids):
            return None
        return DataError("INSERT INTO events ...", {"secret": "params"}, Exception("value marked bad\nDETAIL: x"))

    return error


# --- real refusals by the database -----------------------------------------------------------------


def poison(engine: Engine, a: TenantKey, kind: str) -> tuple[str, int, str, str]:
    """(customer, value_units, field, message fragment) of an event the database refuses."""
    if kind == "nul":
        if engine.dialect.name != "postgresql":
            pytest.skip("SQLite stores NUL in text")
        return "c\x00x", 100, "customer", "invalid byte sequence"
    # A value no bigint holds: the driver refuses to encode it.
    return "big", 2**63, "value", "64 bits"


@pytest.mark.parametrize("atomic", [False, True], ids=["plain", "atomic"])
@pytest.mark.parametrize("kind", ["nul", "wide"])
def test_refused_event_is_reported_and_the_group_commits(
    engine: Engine, tenant: TenantKey, kind: str, atomic: bool
) -> None:
    a, b = tenant, make_tenant(engine, "globex")
    customer, value, field, fragment = poison(engine, a, kind)
    store = open_store(engine)
    store.write([batch(a.tenant_id, ["a-dup", "a-conf"]), batch(b.tenant_id, ["b-dup", "b-conf"])])
    before_a = stored(engine, a.tenant_id)

    # Tenant A's batch: p0, p1, p6 new; p2 stored already; p3 refused by the database; p4 conflicts
    # with a stored event (atomic: p4 is a duplicate, as a conflict would refuse the batch before its
    # totals are added); p5 repeats p0.
    ids = ["p0", "p1", "a-dup", "p3", "a-conf", "p0", "p6"]
    values = [100, 100, 100, value, 100 if atomic else 999, 100, 100]
    customers = ["c1", "c1", "c1", customer, "c1", "c1", "c1"]
    bad = batch(a.tenant_id, ids, values=values, customers=customers, atomic=atomic, batch_id="poison")
    b1 = batch(b.tenant_id, [f"b1-{i}" for i in range(5)], batch_id="b1")
    b2 = batch(b.tenant_id, ["b-dup", "b2-1", "b-conf"], values=[100, 100, 999], batch_id="b2")
    a2 = batch(a.tenant_id, ["ag-0", "ag-1"], batch_id="a2")

    committer = Committer(lambda: open_store(engine))
    f_b1, f_bad, f_b2, f_a2 = commit_group(committer, [b1, bad, b2, a2])

    o_b1, o_b2, o_a2 = f_b1.result(), f_b2.result(), f_a2.result()
    assert (o_b1.accepted, o_b1.duplicate, o_b1.errors) == (5, 0, [])
    assert (o_b2.accepted, o_b2.duplicate, codes(o_b2)) == (1, 1, [(2, "event_id", "EVENT_ID_CONFLICT")])
    assert (o_a2.accepted, o_a2.duplicate, o_a2.errors) == (2, 0, [])
    out = f_bad.result()
    refused = out.errors[0]
    conflict = [] if atomic else [(4, "event_id", "EVENT_ID_CONFLICT")]
    assert codes(out) == [(3, field, "STORAGE_REFUSED"), *conflict]
    assert refused.reason.startswith("the database refused this event (") and fragment in refused.reason
    assert "INSERT" not in refused.reason and "ingest_staging" not in refused.reason
    if atomic:
        assert out.refused and (out.accepted, out.duplicate) == (0, 0)
        assert stored(engine, a.tenant_id) == {**before_a, "ag-0": 100, "ag-1": 100}
    else:
        # The sum of its parts: what one clean transaction would have said, less the refused event.
        assert not out.refused and (out.accepted, out.duplicate) == (3, 2)
        assert out.accepted + out.duplicate + len(out.errors) == len(bad)
        assert stored(engine, a.tenant_id) == {**before_a, "p0": 100, "p1": 100, "p6": 100, "ag-0": 100, "ag-1": 100}
    assert set(stored(engine, b.tenant_id)) == {"b-dup", "b-conf", "b1-0", "b1-1", "b1-2", "b1-3", "b1-4", "b2-1"}
    assert committer.groups_split == 1 and committer.events_refused == 1
    for t in (a, b):  # the rollups written piecewise agree with the raw events
        assert rebuild(engine, t.tenant_id, "tokens", SPEC).mismatched_before == 0

    # Resent (as a client would): the same verdict, and what was stored comes back as duplicates.
    again = Committer(lambda: open_store(engine))
    [f_again] = commit_group(again, [bad])
    out2 = f_again.result()
    assert codes(out2) == codes(out)
    if not atomic:
        assert (out2.accepted, out2.duplicate) == (0, 5)


def test_a_refused_write_leaves_the_connection_usable(engine: Engine, tenant: TenantKey) -> None:
    """PostgreSQL: the staging table once vanished with the failed transaction that created it, and
    every later write on that pooled connection failed, whatever its data."""
    store = open_store(engine)
    store.write([batch(tenant.tenant_id, ["big"], values=[INT64_MAX])])
    for i in range(12):  # more than the pool holds connections
        with pytest.raises((DataError, psycopg.DataError, OverflowError)):
            store.write([batch(tenant.tenant_id, [f"over-{i}"], values=[2**63])])
        [probe] = store.probe([batch(tenant.tenant_id, [f"probe-{i}"], customers=["c2"])])
        assert probe.accepted == 1
        [out] = store.write([batch(tenant.tenant_id, [f"ok-{i}"], customers=["c2"])])
        assert out.accepted == 1
    assert set(stored(engine, tenant.tenant_id)) == {"big", *(f"ok-{i}" for i in range(12))}


def test_subset_keeps_the_clients_indices(tenant: TenantKey) -> None:
    b = batch(tenant.tenant_id, ["x", "y", "z"], atomic=True)
    b.index = [2, 5, 9]
    s = subset(b, [0, 2], atomic=False)
    assert (s.index, s.event_ids, s.size, s.atomic, s.batch_id, s.specs) == ([2, 9], ["x", "z"], 2, False, "b", b.specs)


# --- the committer's logic and bounds, with a store that refuses marked events ------------------------


def test_many_refused_events_are_bounded_and_never_resent_forever(engine: Engine, tenant: TenantKey) -> None:
    ids = [f"e{i:02d}" for i in range(64)]
    bad = {ids[i] for i in (1, 5, 9, 17, 22, 30, 31, 40, 41, 50, 57, 63)}  # 12 > culprits_max
    wrapped: list[WrappedStore] = []

    def factory() -> EventStore:
        wrapped.append(WrappedStore(open_store(engine), marked(bad)))
        return wrapped[-1]

    committer = Committer(factory, culprits_max=8)
    good = batch(tenant.tenant_id, ["g0", "g1"], batch_id="good")
    f_good, f_bad = commit_group(committer, [good, batch(tenant.tenant_id, ids, batch_id="many")])
    assert f_good.result().accepted == 2
    out = f_bad.result()
    writes = wrapped[0].writes - 2  # less the group's write and its good half's
    assert writes <= (2 * 8 + 1) * 6 + 2  # (2 * culprits_max + 1) * ceil(log2 64) + 2, its first write included
    by_index = {e.index: e for e in out.errors}
    assert out.accepted + len(out.errors) == 64 and out.duplicate == 0
    assert {ids[i] for i in by_index} >= bad  # every marked event is refused
    assert all(e.code == pb.STORAGE_REFUSED for e in out.errors)
    singled = [e for e in out.errors if e.reason.startswith("the database refused this event")]
    untried = [e for e in out.errors if "not tried on its own" in e.reason]
    assert len(singled) >= 8 and len(singled) + len(untried) == len(out.errors)
    assert all(ids[e.index] in bad for e in singled)
    assert all("value marked bad" in e.reason and "secret" not in e.reason for e in out.errors)
    assert set(stored(engine, tenant.tenant_id)) == {"g0", "g1"} | {ids[i] for i in range(64) if i not in by_index}


def test_one_refused_event_costs_two_writes_per_halving(engine: Engine, tenant: TenantKey) -> None:
    ids = [f"e{i:04d}" for i in range(1024)]
    wrapped: list[WrappedStore] = []

    def factory() -> EventStore:
        wrapped.append(WrappedStore(open_store(engine, rollups=False), marked({ids[700]})))
        return wrapped[-1]

    [fut] = commit_group(Committer(factory), [batch(tenant.tenant_id, ids)])
    out = fut.result()
    assert (out.accepted, [e.index for e in out.errors]) == (1023, [700])
    assert wrapped[0].writes <= 1 + 2 * 10


def test_atomic_search_stores_nothing_and_lists_every_culprit(engine: Engine, tenant: TenantKey) -> None:
    open_store(engine).write([batch(tenant.tenant_id, ["e15"])])
    ids = [f"e{i:02d}" for i in range(20)]
    values = [999 if i == 15 else 100 for i in range(20)]  # e15 conflicts with the stored e15
    wrapped: list[WrappedStore] = []

    def factory() -> EventStore:
        wrapped.append(WrappedStore(open_store(engine), marked({"e03", "e11"})))
        return wrapped[-1]

    [fut] = commit_group(Committer(factory), [batch(tenant.tenant_id, ids, values=values, atomic=True)])
    out = fut.result()
    assert out.refused and (out.accepted, out.duplicate) == (0, 0)
    assert codes(out) == [
        (3, "", "STORAGE_REFUSED"),
        (11, "", "STORAGE_REFUSED"),
        (15, "event_id", "EVENT_ID_CONFLICT"),
    ]
    assert wrapped[0].probes > 0 and stored(engine, tenant.tenant_id) == {"e15": 100}


def test_other_failure_of_one_batch_fails_only_that_batch(engine: Engine, tenant: TenantKey) -> None:
    def error(b: PreparedBatch) -> BaseException | None:
        return RuntimeError("a bug") if b.batch_id == "boom" else None

    batches = [batch(tenant.tenant_id, [f"{n}-{i}" for i in range(3)], batch_id=n) for n in ("x", "boom", "y", "z")]
    futures = commit_group(Committer(lambda: WrappedStore(open_store(engine), error)), batches)
    with pytest.raises(Unavailable, match="RuntimeError"):
        futures[1].result()
    assert [futures[i].result().accepted for i in (0, 2, 3)] == [3, 3, 3]
    assert len(stored(engine, tenant.tenant_id)) == 9


def test_infrastructure_failure_is_unavailable_without_splitting(engine: Engine, tenant: TenantKey) -> None:
    def error(b: PreparedBatch) -> BaseException | None:
        return OperationalError("COMMIT", {}, sqlite3.OperationalError("disk I/O error"))

    wrapped: list[WrappedStore] = []

    def factory() -> EventStore:
        wrapped.append(WrappedStore(open_store(engine), error))
        return wrapped[-1]

    futures = commit_group(Committer(factory), [batch(tenant.tenant_id, [f"e{i}"]) for i in range(4)])
    for fut in futures:
        with pytest.raises(Unavailable):
            fut.result()
    assert wrapped[0].writes == 1


def test_a_deadlock_from_the_raw_driver_is_retried(engine: Engine, tenant: TenantKey) -> None:
    left = [1]

    def error(b: PreparedBatch) -> BaseException | None:
        if left[0]:
            left[0] -= 1
            return psycopg.errors.DeadlockDetected("deadlock detected")
        return None

    [fut] = commit_group(Committer(lambda: WrappedStore(open_store(engine), error)), [batch(tenant.tenant_id, ["d"])])
    assert fut.result().accepted == 1


# --- end to end: one tenant's poison never fails another tenant's batches --------------------------------


@pytest.mark.postgres
def test_poison_resent_by_one_tenant_never_fails_another(
    make_server: Callable[..., ServerThread], db_url: str, engine: Engine, tenant: TenantKey
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("the scenario of the review: group commit with several PostgreSQL writers")
    server = make_server()
    a, b = tenant, make_tenant(engine, "globex")
    committer = server.running.committer
    original = committer._commit
    mixed = [0]

    def grouping_commit(store: Any, group: Any) -> None:
        time.sleep(0.01)  # let the queue fill, so that groups mix the tenants' batches
        if len({batch.tenant_id for batch, _ in group}) > 1:
            mixed[0] += 1
        original(store, group)

    committer._commit = grouping_commit  # type: ignore[method-assign]

    ts_us = time.time_ns() // 1000

    def event(event_id: str, customer: str, value: str) -> pb.Event:
        e = pb.Event(event_id=event_id, customer=customer, meter="tokens", value=value)
        e.timestamp.FromMicroseconds(ts_us)
        return e

    # Passes every validation (each value fits 64 bits), but the two together leave 64 bits in their
    # rollup bucket: both are stored and acked (resends are duplicates), and the fold records the bucket
    # as overflowed instead of failing, so tenant B's rollups keep folding.
    limit = "92233720368547758.07"  # INT64_MAX units at the meter's scale 2
    poison_batch = pb.EventBatch(
        batch_id="poison",
        events=[*(event(f"ok-{i}", "c1", "1.00") for i in range(5)), event("big-1", "big", limit),
                event("big-2", "big", limit)],
    )  # fmt: skip
    stop, a_started = threading.Event(), threading.Event()
    a_acks: list[pb.IngestAck] = []
    b_acks: list[pb.IngestAck] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def tenant_a() -> None:
        with grpc.insecure_channel(server.target) as ch:
            stub = pb_grpc.IngestServiceStub(ch)
            while not stop.is_set():
                try:
                    ack = stub.IngestBatch(poison_batch, metadata=a.metadata)
                except grpc.RpcError as exc:
                    with lock:
                        failures.append(exc)
                    continue
                with lock:
                    a_acks.append(ack)
                a_started.set()

    def tenant_b(k: int) -> None:
        def batches() -> Any:
            for n in range(30):
                ids = [f"b{k}-{n}-{i}" for i in range(30)]
                yield pb.EventBatch(
                    batch_id=f"b{k}-{n}",
                    columns=pb.EventColumns(event_ids=ids, customers=["c1"] * 30, meters=["api_calls"] * 30,
                                            timestamps_unix_us=[ts_us] * 30),
                )  # fmt: skip
                time.sleep(0.01)  # spread over a while, so that A's resends meet them in the queue

        try:
            with grpc.insecure_channel(server.target) as ch:
                acks = list(pb_grpc.IngestServiceStub(ch).Ingest(batches(), metadata=b.metadata))
        except grpc.RpcError as exc:
            with lock:
                failures.append(exc)
            return
        with lock:
            b_acks.extend(acks)

    threads_a = [threading.Thread(target=tenant_a) for _ in range(2)]
    threads_b = [threading.Thread(target=tenant_b, args=(k,)) for k in range(4)]
    for t in threads_a:
        t.start()
    assert a_started.wait(30)
    for t in threads_b:
        t.start()
    for t in threads_b:
        t.join(60)
    stop.set()
    for t in threads_a:
        t.join(60)

    assert failures == []  # nobody got UNAVAILABLE (or anything else)
    assert len(b_acks) == 120 and all(ack.rejected == 0 for ack in b_acks)
    assert sum(ack.accepted for ack in b_acks) == 3600
    with engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(events).where(events.c.tenant_id == b.tenant_id))
        assert rows.scalar_one() == 3600  # stored exactly once
    assert a_acks
    assert all((ack.rejected, ack.accepted + ack.duplicate, list(ack.errors)) == (0, 7, []) for ack in a_acks)
    assert sum(ack.accepted for ack in a_acks) == 7
    assert set(stored(engine, a.tenant_id)) == {*(f"ok-{i}" for i in range(5)), "big-1", "big-2"}
    assert mixed[0] > 0
    catch_up(engine)
    start, end = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
    with pytest.raises(FailedPrecondition, match="does not fit 64-bit units"):
        usage(engine, a.tenant_id, "big", "tokens", start, end)
    assert usage(engine, a.tenant_id, "c1", "tokens", start, end)[0].quantity == Decimal("5.00")
    assert sum(r.events for r in usage(engine, b.tenant_id, "c1", "api_calls", start, end)) == 3600
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ingest_pending)).scalar_one() == 0
