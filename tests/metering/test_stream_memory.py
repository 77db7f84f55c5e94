"""Memory a client can pin by never reading its acks: bounded per stream, measured as the RSS of a real
`tally serve` process.

Sixteen streams send large batches of events the server refuses (unknown meter), so each ack carries
thousands of errors and fills the HTTP/2 window the client never drains: the handler blocks on its first
ack, and only the per-stream byte budget stops the reader from taking more batches.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from metering.tenant import create_api_key, create_tenant
from tally.db import make_engine, upgrade
from tally.v1 import ingest_pb2 as pb
from tally.v1 import ingest_pb2_grpc as pb_grpc
from tests.metering.test_crash import free_port

STREAMS = 16
BATCHES = 24
EVENTS = 5_000
#: The longest the server's peak memory is sampled for, and how long both sides must have been still to stop.
WINDOW_S = 6.0
QUIET_S = 1.5


def _rss_mb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) // 1024
    raise AssertionError("no VmRSS")


def _refused_batch(now_us: int) -> pb.EventBatch:
    """~1.3 MB on the wire; every event refused, so its ack (5,000 errors) overflows an unread window."""
    return pb.EventBatch(columns=pb.EventColumns(
        event_ids=[f"e{i:0>150}" for i in range(EVENTS)], customers=["c" * 100] * EVENTS,
        meters=["no_such_meter"] * EVENTS, timestamps_unix_us=[now_us] * EVENTS, value_units=[1] * EVENTS,
    ))  # fmt: skip


def _growth(tmp_path: Path, buffered_bytes_max: int) -> int:
    url = f"sqlite:///{tmp_path / f'm{buffered_bytes_max}.db'}"
    engine = make_engine(url)
    upgrade(engine)
    tenant = create_tenant(engine, "acme")
    _, key = create_api_key(engine, tenant.id, ("ingest",))
    engine.dispose()
    port = free_port()
    env = {
        **os.environ,
        "TALLY_DATABASE_URL": url,
        "TALLY_INGEST__STREAM_BUFFERED_BYTES_MAX": str(buffered_bytes_max),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tally.cli", "serve", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    channels: list[grpc.Channel] = []
    calls: list[Any] = []
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=30)
        channels.append(channel)
        time.sleep(0.5)
        base = _rss_mb(proc.pid)
        now = time.time_ns() // 1000
        template = _refused_batch(now)
        md = (("authorization", f"Bearer {key}"),)
        taken = [0] * STREAMS  # batches each stream's sender took from its iterator (what flow control let out)

        def batches(k: int) -> Iterator[pb.EventBatch]:
            for _ in range(BATCHES):
                taken[k] += 1
                yield template

        for k in range(STREAMS):
            ch = grpc.insecure_channel(f"127.0.0.1:{port}")
            channels.append(ch)
            calls.append(pb_grpc.IngestServiceStub(ch).Ingest(batches(k), metadata=md, timeout=60))  # type: ignore[no-untyped-call]
        # The peak, sampled until the streams are stuck: no sender took a batch and the server's memory did not
        # grow for QUIET_S (the server stopped reading, its window is full), or at most WINDOW_S.
        started = quiet_since = time.monotonic()
        peak, seen = base, (base, list(taken))
        while time.monotonic() - started < WINDOW_S:
            time.sleep(0.1)
            peak = max(peak, _rss_mb(proc.pid))
            if (peak, taken) != seen:
                seen, quiet_since = (peak, list(taken)), time.monotonic()
            elif time.monotonic() - quiet_since >= QUIET_S:
                break
        return peak - base
    finally:
        for call in calls:
            call.cancel()
        for ch in channels:
            ch.close()
        proc.terminate()
        proc.wait(timeout=30)


def test_unread_streams_keep_server_memory_within_the_limits(tmp_path: Path) -> None:
    """The design bound: each stream holds at most stream_inflight_batches_max + 1 batches (fewer when
    the byte budget binds), ~4x their wire size as Python objects; 16 streams measured 220-350 MB here."""
    batch_mb = 1.3
    growth = _growth(tmp_path, 4 * 1024 * 1024)
    assert growth < STREAMS * (8 + 1) * 4 * batch_mb + 64, growth


def test_a_stream_stops_reading_at_its_byte_budget(make_server: Any, tenant: Any) -> None:
    """What the budget does, counted exactly: while its batches wait for the writer (held here), a stream
    reads up to its byte budget and then stops, whatever stream_inflight_batches_max allows."""
    counts = {}
    for budget in (1024 * 1024, 1 << 40):
        # The writer is held for seconds here: lift the queue's time bound, or a slow machine refuses the
        # stream's later batches (RESOURCE_EXHAUSTED) before the count settles.
        server = make_server(
            stream_buffered_bytes_max=budget, stream_inflight_batches_max=64, queue_delay_ms_max=60_000
        )
        committer = server.running.committer
        gate = threading.Event()
        original = committer._commit

        def held(*args: Any, gate: threading.Event = gate, original: Any = original) -> None:
            gate.wait(30)
            original(*args)

        committer._commit = held
        now = time.time_ns() // 1000
        batches = [_valid_batch(now, f"{budget}-{j}") for j in range(20)]
        try:
            with grpc.insecure_channel(server.target) as channel:
                call = pb_grpc.IngestServiceStub(channel).Ingest(  # type: ignore[no-untyped-call]
                    iter(batches), metadata=tenant.metadata, timeout=30
                )
                counts[budget] = _settled(lambda server=server: server.running.ingest.batches_read)
                gate.set()
                acks = list(call)
        finally:
            gate.set()
        assert sum(a.accepted for a in acks) == 20 * 5_000  # held back, never lost
    assert counts[1024 * 1024] <= 3, counts
    assert counts[1 << 40] >= 15, counts


def _valid_batch(now_us: int, tag: str) -> pb.EventBatch:
    """~0.6 MB: 5,000 events of the `api_calls` meter the tenant fixture creates."""
    n = 5_000
    return pb.EventBatch(columns=pb.EventColumns(
        event_ids=[f"{tag}-{i:0>100}" for i in range(n)], customers=["c1"] * n, meters=["api_calls"] * n,
        timestamps_unix_us=[now_us] * n, value_units=[1] * n,
    ))  # fmt: skip


def _settled(read: Any) -> int:
    """The counter's value once it has not moved for a second (10 s at most)."""
    deadline = time.monotonic() + 10
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        value = read()
        if value != last:
            last, since = value, time.monotonic()
        elif time.monotonic() - since > 1.0:
            break
        time.sleep(0.05)
    return int(last)
