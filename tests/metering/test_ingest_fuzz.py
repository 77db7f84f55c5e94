"""Hypothesis fuzzes every event field over a real socket: never INTERNAL, never a bad row stored."""

from __future__ import annotations

import time
from decimal import Decimal

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from metering.tables import events
from tally.v1 import ingest_pb2 as pb
from tally.v1 import ingest_pb2_grpc as pb_grpc
from tests.conftest import ServerThread, TenantKey

NOW_US = time.time_ns() // 1000

texts = st.one_of(
    st.text(max_size=20),
    st.text(min_size=100, max_size=300),
    st.sampled_from(["", "\x00", "🙂" * 40, "a" * 128, "a" * 129, "é" * 64]),
)
values = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["NaN", "-Infinity", "1e9", "0x10", "9" * 40, "-" + "9" * 19, "1.005", "1.00", "", "+.5", "-0"]),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(lambda d: f"{d:f}"),
    st.integers(-(2**70), 2**70).map(str),
)
timestamps = st.one_of(
    st.none(),
    st.integers(-(2**62), 2**62),
    st.integers(NOW_US - 40 * 86_400_000_000, NOW_US + 600_000_000),
)
properties = st.dictionaries(texts, texts, max_size=4)


@st.composite
def fuzz_events(draw: st.DrawFn) -> pb.Event:
    ev = pb.Event(
        event_id=draw(texts),
        customer=draw(texts),
        meter=draw(st.sampled_from(["tokens", "api_calls", "", "nope", "t" * 100])),
        value=draw(values),
        properties=draw(properties),
    )
    ts = draw(timestamps)
    if ts is not None:
        ev.timestamp.seconds = max(-62135596800, min(253402300799, ts // 1_000_000))
        ev.timestamp.nanos = (ts % 1_000_000) * 1000
    return ev


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(fuzz_events(), min_size=1, max_size=8), st.booleans())
def test_fuzzed_batches(server: ServerThread, tenant: TenantKey, engine: Engine, batch: list[pb.Event],
                        atomic: bool) -> None:  # fmt: skip
    with grpc.insecure_channel(server.target) as ch:
        try:
            ack = pb_grpc.IngestServiceStub(ch).IngestBatch(
                pb.EventBatch(events=batch, atomic=atomic), metadata=tenant.metadata
            )
        except grpc.RpcError as exc:
            assert exc.code() != grpc.StatusCode.INTERNAL, exc.details()
            return
    assert ack.accepted + ack.duplicate + ack.rejected == len(batch)
    rejected = {e.index for e in ack.errors}
    assert all(e.code != pb.EVENT_ERROR_CODE_UNSPECIFIED and e.reason for e in ack.errors)
    with engine.connect() as conn:
        rows = {r.event_id: r for r in conn.execute(select(events))}
    for i, ev in enumerate(batch):
        if i in rejected or ack.refused:
            continue
        row = rows[ev.event_id]  # accepted or duplicate: it is stored
        assert 0 < len(row.event_id.encode()) <= 128 and 0 < len(row.customer.encode()) <= 256
        assert row.meter in {"tokens", "api_calls"}
        assert -(2**63) <= row.value_units < 2**63
        if ev.value and row.event_id == ev.event_id and ack.duplicate == 0:
            assert Decimal(row.value_units).scaleb(-row.value_scale) == Decimal(ev.value)
