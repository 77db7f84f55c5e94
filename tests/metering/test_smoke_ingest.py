from __future__ import annotations

import time

import grpc

from tally.v1 import ingest_pb2 as pb
from tally.v1 import ingest_pb2_grpc as pb_grpc
from tests.conftest import ServerThread, TenantKey


def test_unary_batch_round_trip(server: ServerThread, tenant: TenantKey) -> None:
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.IngestServiceStub(channel)
        ev = pb.Event(event_id="e1", customer="c1", meter="tokens", value="1.50")
        ev.timestamp.FromMicroseconds(time.time_ns() // 1000)
        ack = stub.IngestBatch(pb.EventBatch(batch_id="b", events=[ev, ev]), metadata=tenant.metadata)
    assert (ack.accepted, ack.duplicate, ack.rejected) == (1, 1, 0)
