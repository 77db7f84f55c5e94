"""The Python client against a real server on loopback sockets, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent import futures
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import grpc
import pytest
from sqlalchemy import Engine, func, select

from metering.tables import events
from tally.sdk import (
    AsyncIngestClient,
    BatchResult,
    IngestClient,
    IngestError,
    IngestSummary,
    RejectedEvent,
    UsageEvent,
    encode_batch,
    ingest_batch,
)
from tally.settings import Settings
from tally.v1 import ingest_pb2 as pb
from tally.v1 import ingest_pb2_grpc as pb_grpc
from tests.conftest import ServerThread, TenantKey

NOW_US = time.time_ns() // 1000


def tokens(n: int, prefix: str = "t", start: int = 0) -> list[UsageEvent]:
    """n events on the scale-2 `tokens` meter; event i carries value i/100 (mixed scales on the wire)."""
    return [
        UsageEvent(f"{prefix}{i}", f"cus-{i % 7}", "tokens", NOW_US, Decimal(i).scaleb(-2))
        for i in range(start, start + n)
    ]


def stored(engine: Engine, tenant: TenantKey) -> tuple[int, int]:
    with engine.connect() as conn:
        count, total = conn.execute(
            select(func.count(), func.coalesce(func.sum(events.c.value_units), 0)).where(
                events.c.tenant_id == tenant.tenant_id
            )
        ).one()
    return int(count), int(total)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- events and encoding (no server) ---------------------------------------------------------------


@pytest.mark.parametrize("bad", [1.5, float("nan"), 0.1])
def test_float_value_is_refused_naming_the_field(bad: float) -> None:
    with pytest.raises(TypeError, match=r"UsageEvent\.value must not be a float"):
        UsageEvent("e", "c", "tokens", NOW_US, bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"timestamp": datetime(2025, 1, 1)}, ValueError, "naive"),
        ({"timestamp": 1.0}, TypeError, "timestamp"),
        ({"timestamp": True}, TypeError, "timestamp"),
        ({"value": True}, TypeError, "bool"),
        ({"event_id": 7}, TypeError, "event_id"),
        ({"properties": {"k": 1}}, TypeError, "properties"),
    ],
)
def test_event_types_are_checked_on_construction(
    kwargs: dict[str, object], error: type, fragment: str
) -> None:
    base: dict[str, object] = {"event_id": "e", "customer": "c", "meter": "m", "timestamp": NOW_US}
    with pytest.raises(error, match=fragment):
        UsageEvent(**{**base, **kwargs})  # type: ignore[arg-type]


def test_columnar_encoding_uses_the_largest_scale() -> None:
    ts = datetime(2025, 1, 31, 12, 0, 0, 250, tzinfo=UTC)
    batch = encode_batch(
        [
            UsageEvent("a", "c", "tokens", ts, "12.5", {"region": "eu"}),
            UsageEvent("b", "c", "tokens", ts + timedelta(microseconds=1), 3),
            UsageEvent("c", "c", "tokens", NOW_US, Decimal("-0.125"), {"model": "x"}),
            UsageEvent("d", "c", "tokens", NOW_US, "7.000"),
        ]
    )
    assert batch.HasField("columns") and not batch.events
    cols = batch.columns
    assert list(cols.value_units) == [12500, 3000, -125, 7000] and cols.value_scale == 3
    ts_us = (ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert list(cols.timestamps_unix_us) == [ts_us, ts_us + 1, NOW_US, NOW_US]
    assert [(p.key, list(p.values)) for p in cols.properties] == [
        ("model", ["", "", "x", ""]),
        ("region", ["eu", "", "", ""]),
    ]


def test_all_absent_values_encode_as_empty_value_units() -> None:
    batch = encode_batch([UsageEvent(f"e{i}", "c", "api_calls", NOW_US) for i in range(3)])
    assert batch.HasField("columns") and not batch.columns.value_units and batch.columns.value_scale == 0


@pytest.mark.parametrize(
    "odd",
    [
        UsageEvent("x", "c", "tokens", NOW_US, None),  # absent among present values
        UsageEvent("x", "c", "tokens", NOW_US, "1e3"),  # not plain notation
        UsageEvent("x", "c", "tokens", NOW_US, Decimal("NaN")),
        UsageEvent("x", "c", "tokens", NOW_US, "1", {"k": ""}),  # empty property value
        UsageEvent("x", "c", "tokens", NOW_US, "0." + "0" * 19 + "1"),  # scale beyond 18
        UsageEvent("x", "c", "tokens", NOW_US, 2**63),  # beyond 64 bits
    ],
)
def test_batches_the_columnar_form_cannot_say_go_as_rows(odd: UsageEvent) -> None:
    batch = encode_batch([UsageEvent("ok", "c", "tokens", NOW_US, "1.5"), odd])
    assert not batch.HasField("columns") and len(batch.events) == 2
    assert batch.events[0].value == "1.5" and batch.events[0].timestamp.ToMicroseconds() == NOW_US


# --- streaming against a server --------------------------------------------------------------------


def test_send_summary_is_exact_and_a_resend_is_all_duplicates(
    server: ServerThread, tenant: TenantKey, engine: Engine
) -> None:
    evs = tokens(2_500)
    with IngestClient(server.target, tenant.key, batch_events_max=1000) as client:
        first = client.send(evs)
        again = client.send(evs)
    assert (first.accepted, first.duplicate, first.rejected, first.batches, first.retries) == (
        2500,
        0,
        0,
        3,
        0,
    )
    assert (again.accepted, again.duplicate, again.rejected, again.batches) == (0, 2500, 0, 3)
    assert stored(engine, tenant) == (2500, sum(range(2500)))


@pytest.mark.parametrize(("batch_size", "batches"), [(1, 37), (10, 4), (37, 1), (1000, 1)])
def test_batches_by_size(server: ServerThread, tenant: TenantKey, batch_size: int, batches: int) -> None:
    seen: list[int] = []
    with IngestClient(server.target, tenant.key, batch_events_max=batch_size) as client:
        summary = client.send(tokens(37), on_ack=lambda r: seen.append(r.size))
        assert client.send([]).events == 0
    assert (summary.batches, summary.accepted) == (batches, 37)
    assert sum(seen) == 37 and max(seen) == min(batch_size, 37)


def test_rejections_map_to_the_callers_indices(
    server: ServerThread, tenant: TenantKey, engine: Engine
) -> None:
    evs = tokens(1_200)
    evs[3] = UsageEvent("bad-meter", "c", "nope", NOW_US, 1)
    evs[777] = UsageEvent("bad-scale", "c", "tokens", NOW_US, "1.234")
    evs[1199] = UsageEvent("bad-customer", "", "tokens", NOW_US, 1)
    with IngestClient(server.target, tenant.key, batch_events_max=250) as client:
        summary = client.send(evs)
    assert (summary.accepted, summary.rejected, summary.batches) == (1197, 3, 5)
    assert [(e.index, e.event_id, e.field, e.code) for e in summary.errors] == [
        (3, "bad-meter", "meter", "UNKNOWN_METER"),
        (777, "bad-scale", "value", "VALUE_SCALE_EXCEEDED"),
        (1199, "bad-customer", "customer", "INVALID_CUSTOMER"),
    ]
    assert all(isinstance(e, RejectedEvent) and e.reason for e in summary.errors)
    assert stored(engine, tenant)[0] == 1197


def test_row_fallback_gets_the_same_verdicts(server: ServerThread, tenant: TenantKey) -> None:
    evs = [
        UsageEvent("r0", "c", "api_calls", NOW_US),  # absent value on a count meter: counts 1
        UsageEvent("r1", "c", "tokens", NOW_US),  # absent value on a sum meter: rejected
        UsageEvent("r2", "c", "tokens", NOW_US, "1e3"),
        UsageEvent("r3", "c", "tokens", NOW_US, "2.50", {"k": ""}),
        UsageEvent("r4", "c", "tokens", NOW_US, "2.50", {"k": "v"}),
    ]
    with IngestClient(server.target, tenant.key) as client:
        summary = client.send(evs)
    assert (summary.accepted, summary.rejected) == (2, 3)
    assert [(e.index, e.field, e.code) for e in summary.errors] == [
        (1, "value", "INVALID_VALUE"),
        (2, "value", "INVALID_VALUE"),
        (3, "properties.k", "INVALID_PROPERTIES"),
    ]


def test_oversized_batches_are_split_to_fit_a_message(server: ServerThread, tenant: TenantKey) -> None:
    evs = [UsageEvent(f"p{i}", "c", "api_calls", NOW_US, None, {"blob": "x" * 200}) for i in range(400)]
    with IngestClient(server.target, tenant.key, batch_events_max=400, message_bytes_max=20_000) as client:
        summary = client.send(evs)
    assert summary.accepted == 400 and summary.batches >= 8


def test_an_iterable_that_fails_still_delivers_what_came_before(
    server: ServerThread, tenant: TenantKey, engine: Engine
) -> None:
    def broken() -> Iterator[UsageEvent]:
        yield from tokens(1_500)
        raise RuntimeError("producer broke")

    with (
        IngestClient(server.target, tenant.key) as client,
        pytest.raises(RuntimeError, match="producer broke"),
    ):
        client.send(broken())
    assert stored(engine, tenant)[0] == 1_500


def test_add_batches_by_time_and_flush_waits_for_acks(
    server: ServerThread, tenant: TenantKey, engine: Engine
) -> None:
    with IngestClient(server.target, tenant.key, batch_events_max=1000, linger_ms=250) as client:
        assert [client.add(e) for e in tokens(3)] == [0, 1, 2]
        deadline = time.monotonic() + 10
        while stored(engine, tenant)[0] < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert stored(engine, tenant)[0] == 3  # sent by linger, without a flush
        for e in tokens(2_000, start=3):
            client.add(e)
        client.add(UsageEvent("bad", "c", "nope", NOW_US, 1))
        summary = client.flush()
        assert (summary.accepted, summary.rejected, summary.batches) == (
            2003,
            1,
            4,
        )  # 3 by time, 1000, 1000, 1
        assert [e.index for e in summary.errors] == [2003]
        assert client.flush().events == 0
        client.add(UsageEvent("last", "c", "api_calls", NOW_US))
    assert stored(engine, tenant)[0] == 2004  # close() delivered the last one


def test_bad_key_raises_with_code_and_message(server: ServerThread, tenant: TenantKey) -> None:
    with IngestClient(server.target, "tly_wrong") as client, pytest.raises(IngestError) as info:
        client.send(tokens(10))
    assert info.value.code is grpc.StatusCode.UNAUTHENTICATED and "unknown or revoked" in info.value.details
    assert info.value.summary.retries == 0


def test_invalid_batch_is_not_retried(make_server: Callable[..., ServerThread], tenant: TenantKey) -> None:
    server = make_server(batch_events_max=100)
    with (
        IngestClient(server.target, tenant.key, batch_events_max=150) as client,
        pytest.raises(IngestError) as info,
    ):
        client.send(tokens(300))
    assert (
        info.value.code is grpc.StatusCode.INVALID_ARGUMENT and "batch_events_max=100" in info.value.details
    )


def test_full_queue_is_retried_after_the_hint(
    make_server: Callable[..., ServerThread], tenant: TenantKey, engine: Engine
) -> None:
    server = make_server(queue_events_max=100, queue_wait_ms_max=0, retry_after_ms=5)
    with IngestClient(server.target, tenant.key, batch_events_max=100, retries_max=50) as client:
        summary = client.send(tokens(4_000))
    assert (summary.accepted, summary.duplicate, summary.rejected, summary.batches) == (4000, 0, 0, 40)
    assert summary.retries >= 1 and any(r.startswith("RESOURCE_EXHAUSTED") for r in summary.retry_log)
    assert stored(engine, tenant) == (4000, sum(range(4000)))


def test_unreachable_server_fails_fast() -> None:
    started = time.monotonic()
    with IngestClient(f"127.0.0.1:{free_port()}", "k") as client, pytest.raises(IngestError) as info:
        client.wait_ready(timeout_s=5)
    assert info.value.code is grpc.StatusCode.UNAVAILABLE and time.monotonic() - started < 4.5


def test_gives_up_after_retries_max(tenant: TenantKey) -> None:
    with (
        IngestClient(f"127.0.0.1:{free_port()}", tenant.key, retries_max=2, backoff_initial_ms=10) as client,
        pytest.raises(IngestError) as info,
    ):
        client.send(tokens(5))
    assert info.value.code is grpc.StatusCode.UNAVAILABLE and "gave up after 2 retries" in info.value.details


def test_unary_ingest_batch(server: ServerThread, tenant: TenantKey) -> None:
    evs = tokens(5)
    summary = ingest_batch(server.target, tenant.key, evs)
    assert (summary.accepted, summary.batches) == (5, 1)
    with IngestClient(server.target, tenant.key) as client:
        refused = client.ingest_batch(
            [*tokens(2, prefix="n"), UsageEvent("x", "c", "nope", NOW_US, 1)], atomic=True
        )
        assert client.ingest_batch(evs).duplicate == 5
    assert (refused.accepted, refused.rejected, refused.refused_batches) == (0, 3, 1)
    assert [(e.index, e.code) for e in refused.errors] == [(2, "UNKNOWN_METER")]


# --- restarts: unacked batches are resent ----------------------------------------------------------


def paced(evs: list[UsageEvent], every: int = 20) -> Iterator[UsageEvent]:
    for i, e in enumerate(evs):
        if i % every == 0:
            time.sleep(0.001)
        yield e


def test_server_restart_mid_stream_resends_unacked(db_url: str, tenant: TenantKey, engine: Engine) -> None:
    port = free_port()
    settings = Settings(database_url=db_url, port=port)
    first = ServerThread(settings)
    evs = tokens(6_000)
    acked: list[int] = []
    result: list[IngestSummary] = []

    def run() -> None:
        with IngestClient(
            first.target, tenant.key, batch_events_max=200, backoff_max_ms=200, retries_max=40
        ) as c:
            result.append(c.send(paced(evs), on_ack=lambda r: acked.append(r.size)))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while sum(acked) < 1_500 and time.monotonic() < deadline:
        time.sleep(0.005)
    first.stop(grace_s=1)  # drain: the stream ends with UNAVAILABLE
    time.sleep(0.3)  # the client retries into a closed port
    second = ServerThread(settings)
    try:
        thread.join(timeout=60)
    finally:
        second.stop()
    assert not thread.is_alive() and result
    summary = result[0]
    assert summary.accepted + summary.duplicate == 6_000 and summary.rejected == 0
    assert summary.retries >= 1 and summary.retry_log[0].startswith("UNAVAILABLE")
    assert stored(engine, tenant) == (6_000, sum(range(6_000)))


def test_async_client_sends_resends_and_reports(
    server: ServerThread, tenant: TenantKey, engine: Engine
) -> None:
    async def produce() -> AsyncIterator[UsageEvent]:
        for e in tokens(1_000, start=2_000):
            yield e

    async def main() -> None:
        evs = tokens(2_000)
        evs[5] = UsageEvent("bad", "c", "tokens", NOW_US, "0.001")
        async with AsyncIngestClient(server.target, tenant.key, batch_events_max=300) as client:
            await client.wait_ready()
            first = await client.send(evs)
            assert (first.accepted, first.rejected, first.batches) == (1999, 1, 7)
            assert [(e.index, e.code) for e in first.errors] == [(5, "VALUE_SCALE_EXCEEDED")]
            again = await client.send(evs)
            assert (again.accepted, again.duplicate, again.rejected) == (0, 1999, 1)
            more = await client.send(produce())
            assert more.accepted == 1_000
            for e in tokens(10, prefix="a"):
                await client.add(e)
            assert (await client.flush()).accepted == 10
            unary = await client.ingest_batch(tokens(3, prefix="u"))
            assert unary.accepted == 3
        async with AsyncIngestClient(server.target, "tly_wrong") as bad:
            try:
                await bad.send(tokens(3))
            except IngestError as exc:
                assert exc.code is grpc.StatusCode.UNAUTHENTICATED
            else:
                raise AssertionError("a wrong key must raise")

    asyncio.run(main())
    assert stored(engine, tenant)[0] == 1999 + 1_000 + 10 + 3


def test_async_client_resends_after_a_restart(db_url: str, tenant: TenantKey, engine: Engine) -> None:
    port = free_port()
    settings = Settings(database_url=db_url, port=port)
    first = ServerThread(settings)
    evs = tokens(4_000)
    servers = [first]

    async def main() -> None:
        acked = 0

        def on_ack(r: BatchResult) -> None:
            nonlocal acked
            acked += r.size

        async def produce() -> AsyncIterator[UsageEvent]:
            for i, e in enumerate(evs):
                if i % 20 == 0:
                    await asyncio.sleep(0.001)
                yield e

        async def restart() -> None:
            while acked < 1_000:
                await asyncio.sleep(0.005)
            await asyncio.to_thread(first.stop, 1.0)
            await asyncio.sleep(0.2)
            servers.append(await asyncio.to_thread(ServerThread, settings))

        async with AsyncIngestClient(
            first.target, tenant.key, batch_events_max=200, backoff_max_ms=200, retries_max=40
        ) as client:
            restarting = asyncio.create_task(restart())
            summary = await client.send(produce(), on_ack=on_ack)
            await restarting
        assert summary.accepted + summary.duplicate == 4_000 and summary.retries >= 1

    try:
        asyncio.run(main())
    finally:
        for s in servers:
            s.stop()
    assert stored(engine, tenant) == (4_000, sum(range(4_000)))


# --- servers that read but never ack: the client must not wait forever ------------------------------


class SilentIngest(pb_grpc.IngestServiceServicer):
    """Reads every batch, acks none; then hangs (`hang`) or ends the stream cleanly."""

    def __init__(self, hang: bool) -> None:
        self.hang = hang

    def Ingest(
        self, request_iterator: Iterator[pb.EventBatch], context: grpc.ServicerContext
    ) -> Iterator[pb.IngestAck]:
        for _ in request_iterator:
            pass
        while self.hang and context.is_active():
            time.sleep(0.02)
        yield from ()


def silent_server(hang: bool) -> tuple[grpc.Server, str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb_grpc.add_IngestServiceServicer_to_server(SilentIngest(hang), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("hang", "code", "fragment"),
    [
        (True, grpc.StatusCode.DEADLINE_EXCEEDED, "no ack within 0.4 s"),
        (False, grpc.StatusCode.UNAVAILABLE, "stream ended with batches unacked"),
    ],
)
@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_missing_acks_are_retried_then_given_up(
    hang: bool, code: grpc.StatusCode, fragment: str, flavour: str
) -> None:
    server, target = silent_server(hang)
    options = {"retries_max": 1, "backoff_initial_ms": 10, "ack_timeout_s": 0.4}

    async def send_async() -> None:
        async with AsyncIngestClient(target, "k", **options) as client:  # type: ignore[arg-type]
            await client.send(tokens(10))

    started = time.monotonic()
    try:
        with pytest.raises(IngestError) as info:
            if flavour == "sync":
                with IngestClient(target, "k", **options) as client:  # type: ignore[arg-type]
                    client.send(tokens(10))
            else:
                asyncio.run(send_async())
    finally:
        server.stop(0)
    assert info.value.code is code and fragment in info.value.details
    assert info.value.summary.retries == 1 and time.monotonic() - started < 5
