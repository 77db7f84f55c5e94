"""IngestService over real loopback sockets, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from sqlalchemy import Engine, func, select

from metering.tables import events
from metering.tenant import create_api_key
from tally.v1 import ingest_pb2 as pb
from tally.v1 import ingest_pb2_grpc as pb_grpc
from tests.conftest import ServerThread, TenantKey, make_tenant


def now_us() -> int:
    return time.time_ns() // 1000


TS_US = now_us()  # one timestamp, so that the same event built twice is the same payload


def ev(event_id: str, value: str = "1.00", meter: str = "tokens", customer: str = "c1") -> pb.Event:
    e = pb.Event(event_id=event_id, customer=customer, meter=meter, value=value)
    e.timestamp.FromMicroseconds(TS_US)
    return e


def columns(ids: list[str], units: int = 1, meter: str = "api_calls") -> pb.EventColumns:
    n = len(ids)
    return pb.EventColumns(
        event_ids=ids, customers=["c1"] * n, meters=[meter] * n, timestamps_unix_us=[TS_US] * n,
        value_units=[units] * n,
    )  # fmt: skip


def count_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(events)).scalar_one()


@pytest.fixture
def stub(server: ServerThread) -> Iterator[pb_grpc.IngestServiceStub]:
    with grpc.insecure_channel(server.target) as channel:
        yield pb_grpc.IngestServiceStub(channel)


def test_mixed_batch_reports_exact_indices(stub: pb_grpc.IngestServiceStub, tenant: TenantKey, engine: Engine) -> None:
    batch = pb.EventBatch(
        batch_id="mixed",
        events=[ev("ok1"), ev("", value="1"), ev("ok2"), ev("bad-meter", meter="nope"), ev("bad-val", value="abc"),
                ev("ok1"), ev("ok3", value="2.5")],
    )  # fmt: skip
    ack = stub.IngestBatch(batch, metadata=tenant.metadata)
    assert (ack.batch_id, ack.accepted, ack.duplicate, ack.rejected, ack.refused) == ("mixed", 3, 1, 3, False)
    assert [(e.index, e.field, pb.EventErrorCode.Name(e.code)) for e in ack.errors] == [
        (1, "event_id", "INVALID_EVENT_ID"),
        (3, "meter", "UNKNOWN_METER"),
        (4, "value", "INVALID_VALUE"),
    ]
    assert count_rows(engine) == 3


def test_atomic_batch_is_refused_whole(stub: pb_grpc.IngestServiceStub, tenant: TenantKey, engine: Engine) -> None:
    ack = stub.IngestBatch(pb.EventBatch(events=[ev("a1"), ev("a2", value="x")], atomic=True), metadata=tenant.metadata)
    assert (ack.refused, ack.accepted, ack.rejected) == (True, 0, 2)
    assert [(e.index, e.code) for e in ack.errors] == [(1, pb.INVALID_VALUE)]
    stub.IngestBatch(pb.EventBatch(events=[ev("stored", value="1")]), metadata=tenant.metadata)
    ack = stub.IngestBatch(
        pb.EventBatch(events=[ev("a3"), ev("stored", value="2")], atomic=True), metadata=tenant.metadata
    )
    assert ack.refused and [(e.index, e.code) for e in ack.errors] == [(1, pb.EVENT_ID_CONFLICT)]
    assert count_rows(engine) == 1


def test_conflict_never_overwrites(stub: pb_grpc.IngestServiceStub, tenant: TenantKey, engine: Engine) -> None:
    stub.IngestBatch(pb.EventBatch(events=[ev("x", value="1.00")]), metadata=tenant.metadata)
    ack = stub.IngestBatch(pb.EventBatch(events=[ev("x", value="9.00")]), metadata=tenant.metadata)
    assert [pb.EventErrorCode.Name(e.code) for e in ack.errors] == ["EVENT_ID_CONFLICT"]
    with engine.connect() as conn:
        assert conn.execute(select(events.c.value_units)).scalar_one() == 100


def test_stream_acks_in_order_and_dedups(stub: pb_grpc.IngestServiceStub, tenant: TenantKey, engine: Engine) -> None:
    def batches() -> Iterator[pb.EventBatch]:
        for b in range(20):
            yield pb.EventBatch(batch_id=f"b{b}", columns=columns([f"s{b % 10}-{i}" for i in range(100)]))

    acks = list(stub.Ingest(batches(), metadata=tenant.metadata))
    assert [a.sequence for a in acks] == list(range(1, 21))
    assert [a.batch_id for a in acks] == [f"b{b}" for b in range(20)]
    assert sum(a.accepted for a in acks) == 1000 and sum(a.duplicate for a in acks) == 1000
    assert count_rows(engine) == 1000


def test_32_concurrent_streams_same_event_store_one_row(
    server: ServerThread, tenant: TenantKey, engine: Engine
) -> None:
    barrier = threading.Barrier(32)
    results: list[pb.IngestAck] = []
    lock = threading.Lock()

    def one(k: int) -> None:
        with grpc.insecure_channel(server.target) as ch:
            s = pb_grpc.IngestServiceStub(ch)
            barrier.wait()
            acks = list(s.Ingest(iter([pb.EventBatch(events=[ev("the-one"), ev(f"own-{k}")])]),
                                 metadata=tenant.metadata))  # fmt: skip
            with lock:
                results.extend(acks)

    threads = [threading.Thread(target=one, args=(k,)) for k in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 32
    assert sum(a.accepted for a in results) == 33 and sum(a.duplicate for a in results) == 31
    assert count_rows(engine) == 33


def test_duplicates_across_restart(make_server: Callable[..., ServerThread], tenant: TenantKey, engine: Engine) -> None:
    first = make_server()
    batch = pb.EventBatch(columns=columns([f"r{i}" for i in range(50)]))
    with grpc.insecure_channel(first.target) as ch:
        assert pb_grpc.IngestServiceStub(ch).IngestBatch(batch, metadata=tenant.metadata).accepted == 50
    first.stop()
    second = make_server()
    with grpc.insecure_channel(second.target) as ch:
        ack = pb_grpc.IngestServiceStub(ch).IngestBatch(batch, metadata=tenant.metadata)
    assert (ack.accepted, ack.duplicate) == (0, 50)
    assert count_rows(engine) == 50


def test_same_event_id_in_two_tenants(stub: pb_grpc.IngestServiceStub, tenant: TenantKey, engine: Engine) -> None:
    other = make_tenant(engine, "globex")
    a = stub.IngestBatch(pb.EventBatch(events=[ev("shared")]), metadata=tenant.metadata)
    b = stub.IngestBatch(pb.EventBatch(events=[ev("shared", value="5")]), metadata=other.metadata)
    assert (a.accepted, b.accepted, b.rejected) == (1, 1, 0)


@pytest.mark.parametrize(
    ("metadata", "fragment"),
    [
        ((), "missing API key"),
        ((("authorization", "Bearer tly_wrong"),), "unknown or revoked"),
        ((("authorization", "Basic abc"),), "malformed"),
    ],
)
def test_bad_keys_are_unauthenticated(
    server: ServerThread, tenant: TenantKey, metadata: tuple[tuple[str, str], ...], fragment: str
) -> None:
    with grpc.insecure_channel(server.target) as ch:
        s = pb_grpc.IngestServiceStub(ch)
        for call in (lambda: s.IngestBatch(pb.EventBatch(events=[ev("k")]), metadata=metadata),
                     lambda: list(s.Ingest(iter([pb.EventBatch(events=[ev("k")])]), metadata=metadata))):  # fmt: skip
            with pytest.raises(grpc.RpcError) as info:
                call()
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert fragment in (info.value.details() or "")


def test_read_only_key_cannot_ingest(stub: pb_grpc.IngestServiceStub, tenant: TenantKey, engine: Engine) -> None:
    _, key = create_api_key(engine, tenant.tenant_id, ("read",))
    with pytest.raises(grpc.RpcError) as info:
        stub.IngestBatch(pb.EventBatch(events=[ev("k")]), metadata=(("authorization", f"Bearer {key}"),))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_batch_and_message_limits(make_server: Callable[..., ServerThread], tenant: TenantKey) -> None:
    server = make_server(batch_events_max=100, message_bytes_max=64 * 1024)
    with grpc.insecure_channel(server.target) as ch:
        s = pb_grpc.IngestServiceStub(ch)
        with pytest.raises(grpc.RpcError) as info:
            s.IngestBatch(pb.EventBatch(columns=columns([f"l{i}" for i in range(101)])), metadata=tenant.metadata)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "batch_events_max=100" in (info.value.details() or "")
        big = pb.EventBatch(events=[ev("big", customer="c" * 200) for _ in range(100)] * 4)
        with pytest.raises(grpc.RpcError) as info:
            s.IngestBatch(big, metadata=tenant.metadata)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "larger than max" in (info.value.details() or "")


def test_stream_ends_with_status_after_acking_good_batches(
    make_server: Callable[..., ServerThread], tenant: TenantKey, engine: Engine
) -> None:
    server = make_server(batch_events_max=10)
    good = pb.EventBatch(batch_id="good", columns=columns([f"g{i}" for i in range(10)]))
    bad = pb.EventBatch(batch_id="bad", columns=columns([f"b{i}" for i in range(11)]))
    acks: list[pb.IngestAck] = []
    with grpc.insecure_channel(server.target) as ch, pytest.raises(grpc.RpcError) as info:
        for ack in pb_grpc.IngestServiceStub(ch).Ingest(iter([good, bad]), metadata=tenant.metadata):
            acks.append(ack)
    assert [a.batch_id for a in acks] == ["good"]
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert count_rows(engine) == 10


def test_a_queue_standing_past_its_time_bound_answers_resource_exhausted(
    make_server: Callable[..., ServerThread], tenant: TenantKey, engine: Engine
) -> None:
    """Bounded by time, not only by events: while batches have stood in the queue longer than
    queue_delay_ms_max, a new batch is refused at once (not queued behind them) with the retry hint."""
    server = make_server(queue_delay_ms_max=100, queue_wait_ms_max=5_000)
    committer = server.running.committer
    gate = threading.Event()
    original = committer._commit  # hold the writer: what is queued behind it stands

    def slow_commit(*args: object) -> None:
        gate.wait(10)
        original(*args)  # type: ignore[arg-type]

    committer._commit = slow_commit  # type: ignore[method-assign]
    try:
        with grpc.insecure_channel(server.target) as ch:
            s = pb_grpc.IngestServiceStub(ch)
            writers = server.settings.postgres_writers if engine.dialect.name == "postgresql" else 1
            held = []
            for k in range(writers + 1):  # one per writer (each takes one and waits), and one that stands
                held.append(s.IngestBatch.future(pb.EventBatch(columns=columns([f"h{k}"])), metadata=tenant.metadata))
                time.sleep(0.1)  # one at a time, so that each writer takes one alone
            # Poll, not sleep: on a loaded machine the batches reach the server late. Wait until every
            # writer holds one and the last has stood 150 ms > 100 ms.
            deadline = time.monotonic() + 10
            while not (len(committer._waiting) == 1 and committer.queue_delay() > 0.15):
                assert time.monotonic() < deadline, "the held batches never reached the writers"
                time.sleep(0.01)
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as info:
                s.IngestBatch(pb.EventBatch(columns=columns(["late"])), metadata=tenant.metadata)
            refused_in = time.monotonic() - started
            gate.set()
            assert [f.result(timeout=10).accepted for f in held] == [1] * (writers + 1)
    finally:
        gate.set()
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "queue_delay_ms_max=100" in (info.value.details() or "")
    assert ("retry-after-ms", "200") in (info.value.trailing_metadata() or ())
    assert refused_in < 2  # at once, not after queue_wait_ms_max
    assert count_rows(engine) == writers + 1


def test_full_queue_answers_resource_exhausted_with_retry_hint(
    make_server: Callable[..., ServerThread], tenant: TenantKey, engine: Engine
) -> None:
    server = make_server(queue_events_max=10, queue_wait_ms_max=0)
    committer = server.running.committer
    gate = threading.Event()
    original = committer._commit  # hold the writer so the queue fills

    def slow_commit(*args: object) -> None:
        gate.wait(10)
        original(*args)  # type: ignore[arg-type]

    committer._commit = slow_commit  # type: ignore[method-assign]
    try:
        with grpc.insecure_channel(server.target) as ch:
            s = pb_grpc.IngestServiceStub(ch)
            first = s.IngestBatch.future(pb.EventBatch(columns=columns([f"q{i}" for i in range(10)])),
                                         metadata=tenant.metadata)  # fmt: skip
            time.sleep(0.3)
            with pytest.raises(grpc.RpcError) as info:
                s.IngestBatch(pb.EventBatch(columns=columns(["late"])), metadata=tenant.metadata)
            gate.set()
            assert first.result(timeout=10).accepted == 10
    finally:
        gate.set()
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "queue_events_max=10" in (info.value.details() or "")
    assert ("retry-after-ms", "200") in (info.value.trailing_metadata() or ())
    assert count_rows(engine) == 10


def test_health_and_reflection(server: ServerThread) -> None:
    with grpc.insecure_channel(server.target) as ch:
        status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="tally.v1.IngestService"))
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(ch)
        [resp] = list(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
        names = {s.name for s in resp.list_services_response.service}
        assert {"tally.v1.IngestService", "grpc.health.v1.Health"} <= names


def test_drain_acks_what_was_read_then_unavailable(server: ServerThread, tenant: TenantKey, engine: Engine) -> None:
    """SIGTERM's path: streams stop reading, acked batches are stored, the rest is refused UNAVAILABLE."""
    sent = threading.Event()
    release = threading.Event()

    def batches() -> Iterator[pb.EventBatch]:
        yield pb.EventBatch(batch_id="before", columns=columns([f"d{i}" for i in range(10)]))
        sent.set()
        release.wait(10)
        yield pb.EventBatch(batch_id="after", columns=columns([f"d{i}" for i in range(10, 20)]))

    acks: list[pb.IngestAck] = []
    errors: list[grpc.RpcError] = []

    def consume() -> None:
        with grpc.insecure_channel(server.target) as ch:
            try:
                for ack in pb_grpc.IngestServiceStub(ch).Ingest(batches(), metadata=tenant.metadata):
                    acks.append(ack)
            except grpc.RpcError as exc:
                errors.append(exc)

    t = threading.Thread(target=consume)
    t.start()
    assert sent.wait(10)
    deadline = time.time() + 10
    while not acks and time.time() < deadline:
        time.sleep(0.01)
    server.call(_drain(server))
    release.set()
    t.join(10)
    assert [a.batch_id for a in acks] == ["before"]
    assert errors and errors[0].code() == grpc.StatusCode.UNAVAILABLE
    assert "resend" in (errors[0].details() or "")
    server.stop()
    assert count_rows(engine) == 10


async def _drain(server: ServerThread) -> None:
    server.running.ingest.drain()
