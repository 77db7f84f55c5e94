"""Reads while ingest runs: CheckEntitlement, GetCustomer, QueryUsage and GetUpcomingInvoice over real gRPC
sockets, first with no ingest, then while producers ingest at 50 % of the maximum rate measured in the
same run.

Per database (`--databases`): a fresh database with `--customers` customers on one plan (a quota feature on
the `api_calls` meter, a boolean and a balance, and a per-unit usage charge); a `tally serve` process of its
own (the client's threads never share the server's interpreter). First an unpaced ingest of
`--calibrate-events` gives the maximum acked rate; then each read RPC is timed `--reads` times, one call
at a time on one channel, with no ingest (`*_idle_*`); then producers stream batches of `--batch` events
for the same customers at `--load` (0.5) of that maximum for as long as the reads take (at least
`--soak-s`, default a few seconds; pass minutes for a soak), and the reads are timed again (`*_ingest_*`).

Figures per database and read: p50 and p99 in ms idle and under ingest, `ratio_p99_ingest_to_idle`; the
ingest rate reached and its ack p50/p99; the largest lag of rollups behind acks seen while it ran
(`fold_lag_max_s`). Floors of issue 17: CheckEntitlement p99 <= 5 ms under ingest; the other reads' p99
<= 2 x idle.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc

from benchmarks.entitlements import provision as provision_customers
from benchmarks.harness import Figures, log, main_for, percentile
from benchmarks.ingest import METHOD, LagSampler, ServerProcess, fresh_database, paced
from tally.db import make_engine, upgrade
from tally.v1 import billing_pb2, billing_pb2_grpc
from tally.v1 import ingest_pb2 as pb

READS = ("check_entitlement", "get_customer", "query_usage", "get_upcoming_invoice")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--databases", default="sqlite,postgres", help="comma list of sqlite,postgres [both]")
    parser.add_argument("--customers", type=int, default=1_000, help="customers on the plan [1000]")
    parser.add_argument("--reads", type=int, default=400, help="calls of each read RPC per phase [400]")
    parser.add_argument("--load", type=float, default=0.5, help="ingest rate, as a share of the maximum [0.5]")
    parser.add_argument("--batch", type=int, default=1_000, help="events per ingest batch [1000]")
    parser.add_argument("--streams", type=int, default=4, help="ingest streams [4]")
    parser.add_argument("--calibrate-events", type=int, default=200_000, help="events of the max-rate run")
    parser.add_argument("--soak-s", type=float, default=5.0, help="ingest at least this long under the reads [5]")


def batches_for(ids: list[str], events: int, size: int, tag: str) -> list[bytes]:
    """Pre-serialised columnar batches of api_calls events of the plan's customers (unique ids)."""
    now_us = time.time_ns() // 1000
    out = []
    for b in range(max(1, events // size)):
        cols = pb.EventColumns(
            event_ids=[f"{tag}-{b}-{i}" for i in range(size)],
            customers=[ids[(b * 7 + i) % len(ids)] for i in range(size)],
            meters=["api_calls"] * size,
            timestamps_unix_us=[now_us - i for i in range(size)],
        )
        out.append(pb.EventBatch(batch_id=f"{tag}{b}", columns=cols).SerializeToString())
    return out


class Producers:
    """`streams` ingest streams sending pre-built batches, paced at `interval_s` per batch per stream
    (0: as fast as acks allow), until stopped or out of batches; ack latencies and acked events kept."""

    def __init__(self, target: str, key: str, batches: list[bytes], streams: int, interval_s: float) -> None:
        self.latencies: list[float] = []
        self.acked = 0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        metadata = (("authorization", f"Bearer {key}"),)
        shares = [batches[i::streams] for i in range(streams)]

        def one(k: int) -> None:
            try:
                with grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 8 << 20)]) as ch:
                    call = ch.stream_stream(
                        METHOD, request_serializer=lambda b: b, response_deserializer=pb.IngestAck.FromString
                    )
                    sent: list[float] = []
                    batches_k = paced(shares[k], k, streams, interval_s, sent, self._stop)
                    for ack in call(batches_k, metadata=metadata):
                        with self._lock:
                            self.latencies.append(time.perf_counter() - sent[ack.sequence - 1])
                            self.acked += ack.accepted + ack.duplicate
            except BaseException as exc:
                self.errors.append(exc)

        self.started = time.perf_counter()
        self._threads = [threading.Thread(target=one, args=(k,), daemon=True) for k in range(streams)]
        for t in self._threads:
            t.start()

    def join(self) -> float:
        for t in self._threads:
            t.join()
        if self.errors:
            raise RuntimeError(f"an ingest stream failed: {self.errors[0]}")
        return time.perf_counter() - self.started

    def stop(self) -> float:
        self._stop.set()
        return self.join()


def _produce(
    target: str, key: str, ids: list[str], events: int, size: int, tag: str, streams: int, interval_s: float,
    ready: Any, stop: Any, out: Any,
) -> None:
    """The paced producers of `RemoteProducers`, in a process of their own (see there)."""
    producers = Producers(target, key, batches_for(ids, events, size, tag), streams, interval_s)
    ready.set()

    def stop_when_told() -> None:
        # Polled, not `stop.wait()`: a process that exits while waiting on a multiprocessing Event leaves
        # the parent's `set()` blocked for ever (its wake-up is never acknowledged).
        while not stop.is_set():
            time.sleep(0.05)
        producers._stop.set()

    threading.Thread(target=stop_when_told, daemon=True).start()
    try:
        elapsed = producers.join()
        out.put((producers.acked, elapsed, producers.latencies, ""))
    except BaseException as exc:
        out.put((0, 0.0, [], str(exc)))


class RemoteProducers:
    """`Producers` in a child process, so the timed reads' client never waits for the producers' threads
    in its own interpreter (the server has its own process too): what is measured is the server's answer."""

    def __init__(
        self, target: str, key: str, ids: list[str], events: int, size: int, tag: str, streams: int,
        interval_s: float,
    ) -> None:  # fmt: skip
        ctx = multiprocessing.get_context("spawn")  # a forked gRPC client would share the parent's C core
        self._ready, self._stop, self._out = ctx.Event(), ctx.Event(), ctx.Queue()
        args = (target, key, ids, events, size, tag, streams, interval_s, self._ready, self._stop, self._out)
        self._proc = ctx.Process(target=_produce, args=args, daemon=True)
        self._proc.start()
        if not self._ready.wait(120):
            self._proc.kill()
            raise RuntimeError("the producer process did not start")
        self.started = time.perf_counter()
        self.acked = 0
        self.latencies: list[float] = []

    def stop(self) -> float:
        self._stop.set()
        acked, elapsed, latencies, error = self._out.get(timeout=120)
        self._proc.join(timeout=30)
        if error:
            raise RuntimeError(f"an ingest stream failed: {error}")
        self.acked, self.latencies = acked, latencies
        return float(elapsed)


def read_calls(target: str, key: str, ids: list[str]) -> tuple[grpc.Channel, dict[str, Callable[[], Any]]]:
    """One channel, and per read RPC a function making one call for a random customer."""
    channel = grpc.insecure_channel(target)
    stub = billing_pb2_grpc.BillingServiceStub(channel)  # type: ignore[no-untyped-call]
    metadata = (("authorization", f"Bearer {key}"),)
    rng = random.Random(5)
    now = datetime.now(UTC)
    start = (now - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    end = (now + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)

    def usage_request() -> billing_pb2.QueryUsageRequest:
        request = billing_pb2.QueryUsageRequest(customer=rng.choice(ids), meter="api_calls", window="day")
        request.start.FromDatetime(start)
        request.end.FromDatetime(end)
        return request

    calls: dict[str, Callable[[], Any]] = {
        "check_entitlement": lambda: stub.CheckEntitlement(
            billing_pb2.CheckEntitlementRequest(customer=rng.choice(ids), feature="calls"), metadata=metadata
        ),
        "get_customer": lambda: stub.GetCustomer(
            billing_pb2.GetCustomerRequest(external_id=rng.choice(ids)), metadata=metadata
        ),
        "query_usage": lambda: stub.QueryUsage(usage_request(), metadata=metadata),
        "get_upcoming_invoice": lambda: stub.GetUpcomingInvoice(
            billing_pb2.GetUpcomingInvoiceRequest(customer=rng.choice(ids)), metadata=metadata
        ),
    }
    return channel, calls


def time_reads(calls: dict[str, Callable[[], Any]], n: int) -> dict[str, list[float]]:
    """Each read `n` times, interleaved (so each sees the same moments of the ingest), one call at a time."""
    out: dict[str, list[float]] = {name: [] for name in READS}
    for _ in range(n):
        for name in READS:
            t0 = time.perf_counter()
            calls[name]()
            out[name].append(time.perf_counter() - t0)
    return out


def measure(kind: str, args: argparse.Namespace, workdir: Path) -> Figures:
    figures: Figures = {}
    db = fresh_database(kind, workdir)
    try:
        engine = make_engine(db.url)
        upgrade(engine)
        log(f"{kind}: provisioning {args.customers:,} customers")
        _, key, ids = provision_customers(engine, args.customers)
        engine.dispose()
        server = ServerProcess(db.url)
        try:
            # The maximum acked rate, unpaced, on this server and database.
            batches = batches_for(ids, args.calibrate_events, args.batch, f"max-{uuid.uuid4().hex[:6]}")
            calibration = Producers(server.target, key, batches, args.streams, 0.0)
            elapsed = calibration.join()
            best = calibration.acked / elapsed
            log(f"{kind}: maximum ingest {best:,.0f} events/s")
            channel, calls = read_calls(server.target, key, ids)
            with channel:
                time_reads(calls, 20)  # warm: caches loaded, connections open
                idle = time_reads(calls, args.reads)
                rate = best * args.load
                interval = args.streams * args.batch / rate
                # Enough batches for the reads (measured idle, with slack) or the soak, whichever is longer.
                idle_s = sum(sum(v) for v in idle.values())
                seconds = max(args.soak_s, 3 * idle_s + 2)
                events = int(rate * seconds) + args.batch
                lag = LagSampler(db.url)
                producers = RemoteProducers(
                    server.target, key, ids, events, args.batch, f"mix-{uuid.uuid4().hex[:6]}", args.streams, interval
                )  # fmt: skip
                time.sleep(min(1.0, seconds / 4))  # ingest under way before the first read
                busy = time_reads(calls, args.reads)
                while time.perf_counter() - producers.started < args.soak_s:
                    busy_more = time_reads(calls, 10)
                    for name in READS:
                        busy[name].extend(busy_more[name])
                elapsed = producers.stop()
                lag.stop()
        finally:
            server.stop()
    finally:
        db.drop()
    reached = producers.acked / elapsed
    figures[f"{kind}_ingest_max_events_per_s"] = round(best)
    figures[f"{kind}_ingest_events_per_s_under_reads"] = round(reached)
    figures[f"{kind}_ingest_ratio_to_max"] = round(reached / best, 3)
    figures[f"{kind}_ack_p50_ms"] = round(percentile(producers.latencies, 50) * 1e3, 2)
    figures[f"{kind}_ack_p99_ms"] = round(percentile(producers.latencies, 99) * 1e3, 2)
    figures[f"{kind}_fold_lag_max_s"] = round(lag.max_s, 3)
    for name in READS:
        i50, i99 = percentile(idle[name], 50) * 1e3, percentile(idle[name], 99) * 1e3
        b50, b99 = percentile(busy[name], 50) * 1e3, percentile(busy[name], 99) * 1e3
        figures[f"{kind}_{name}_p50_ms_idle"] = round(i50, 2)
        figures[f"{kind}_{name}_p99_ms_idle"] = round(i99, 2)
        figures[f"{kind}_{name}_p50_ms_ingest"] = round(b50, 2)
        figures[f"{kind}_{name}_p99_ms_ingest"] = round(b99, 2)
        figures[f"{kind}_{name}_ratio_p99_ingest_to_idle"] = round(b99 / i99, 2)
        log(f"{kind} {name}: idle p50 {i50:.2f} / p99 {i99:.2f} ms; under ingest p50 {b50:.2f} / p99 {b99:.2f} ms")
    log(
        f"{kind}: ingest {reached:,.0f} events/s ({reached / best:.0%} of max) under the reads, ack p50 "
        f"{figures[f'{kind}_ack_p50_ms']} ms, p99 {figures[f'{kind}_ack_p99_ms']} ms; fold lag max {lag.max_s:.3f} s"
    )
    return figures


def run(args: argparse.Namespace) -> Figures:
    if args.quick:
        args.customers, args.reads, args.calibrate_events, args.soak_s = 200, 50, 40_000, 2.0
    figures: Figures = {}
    with tempfile.TemporaryDirectory(prefix="tally-mixed-") as tmp:
        for kind in args.databases.split(","):
            figures.update(measure(kind.strip(), args, Path(tmp)))
    return figures


if __name__ == "__main__":
    sys.exit(main_for("benchmarks.mixed", __doc__ or "", run, add_arguments))
