"""Ingest throughput: client streams over loopback into a real `tally serve`, on SQLite and PostgreSQL.

For each database and batch size the server runs as its own process on a fresh
database; client streams (threads of this process, with pre-serialised
columnar batches so the client costs little CPU) push a fixed number of events,
and we count events acked (= committed) per second and the latency from
handing a batch to gRPC to receiving its ack.

Ceilings measured in the same run, on the same rows:
- `nostore`: the same server with storage switched off (decode + validate only);
- `raw_insert`: the plainest bulk insert of the same rows into a fresh copy of
  the same table with no gRPC (SQLite: executemany in transactions of one batch;
  PostgreSQL: COPY straight into `events`).
Then paced runs at 25 %, 50 % and 90 % of the measured rate (streams out of phase,
like independent producers) give the ack latency a producer sees below saturation,
and, sampled from the database while they run, how far the rollups trail the acks
(the oldest unfolded commit's age: the freshness the fold keeps, documented as under
1 s); unary single-event calls give the calls/s of the simplest possible producer.
The client runs on the same two cores as the server (and, for PostgreSQL, the
database), so every figure includes that contention.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2
from sqlalchemy import create_engine, text

from benchmarks.harness import Figures, log, main_for, median, percentile
from tally.db import make_engine, upgrade
from tally.v1 import ingest_pb2 as pb

#: The maximum-rate runs are closed loops (each stream holds at most 8 batches unacked), so their queue is
#: bounded by the client; at batch 5,000 it stands longer than queue_delay_ms_max, and the time bound (for
#: open-loop overload) would turn the measurement into a retry loop. It is lifted there only.
UNBOUNDED_DELAY = {"TALLY_INGEST__QUEUE_DELAY_MS_MAX": "60000"}
PG_URL_ENV = "TALLY_BENCH_POSTGRES_URL"
#: Seconds of paced traffic behind each latency figure (after a second of warm-up).
PACED_S = 6.0
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
METHOD = "/tally.v1.IngestService/Ingest"
UNARY = "/tally.v1.IngestService/IngestBatch"
HEALTH = "/grpc.health.v1.Health/Check"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--streams", type=int, default=4, help="concurrent client streams [4]")
    parser.add_argument("--events", type=int, default=300_000, help="events per measured run [300000]")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure; the median is reported [3]")
    parser.add_argument("--databases", default="sqlite,postgres", help="comma list of sqlite,postgres [both]")
    parser.add_argument("--batch-sizes", default="1000,5000", help="comma list [1000,5000]")


# --- databases -------------------------------------------------------------------------------------


@dataclass
class Database:
    kind: str
    url: str
    cleanup: Any

    def drop(self) -> None:
        self.cleanup()


def fresh_database(kind: str, workdir: Path) -> Database:
    if kind == "sqlite":
        path = workdir / f"bench-{uuid.uuid4().hex[:8]}.db"

        def rm() -> None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)

        return Database(kind, f"sqlite:///{path}", rm)
    base = os.environ.get(PG_URL_ENV, os.environ.get("TALLY_TEST_POSTGRES_URL", PG_DEFAULT))
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    sep = "&" if "?" in base else "?"
    return Database(kind, f"{base}{sep}options=-csearch_path%3D{schema}", drop)


def provision(url: str) -> str:
    """Schema, tenant, key and meter; returns the API key."""
    from metering.meter import Aggregation, MeterDefinition, create_meter
    from metering.tenant import create_api_key, create_tenant

    engine = make_engine(url)
    upgrade(engine)
    tenant = create_tenant(engine, "bench")
    _, key = create_api_key(engine, tenant.id, ("ingest",))
    create_meter(engine, tenant.id, MeterDefinition(code="tokens", aggregation=Aggregation.SUM, value_scale=2))
    engine.dispose()
    return key


# --- server process --------------------------------------------------------------------------------


class ServerProcess:
    def __init__(self, url: str, store: bool = True, env: dict[str, str] | None = None) -> None:
        cmd = [sys.executable, "-m", "tally.cli", "--database-url", url, "serve", "--port", "0"]
        if not store:
            cmd.append("--no-store")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(r"listening on ([\d.]+):(\d+)", line)
        if match is None:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line!r}")
        self.target = f"{match.group(1)}:{match.group(2)}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


# --- load ------------------------------------------------------------------------------------------


def make_batches(events: int, batch_size: int, run_tag: str) -> list[bytes]:
    """Pre-serialised columnar batches with unique ids: the client's per-event cost stays out of the timing."""
    now_us = time.time_ns() // 1000
    batches = []
    for b in range(events // batch_size):
        ids = [f"{run_tag}-{b}-{i}" for i in range(batch_size)]
        cols = pb.EventColumns(
            event_ids=ids,
            customers=[f"cust-{(b * 7 + i) % 1000}" for i in range(batch_size)],
            meters=["tokens"] * batch_size,
            timestamps_unix_us=[now_us - i for i in range(batch_size)],
            value_units=[(i % 997) + 1 for i in range(batch_size)],
            value_scale=2,
        )
        batches.append(pb.EventBatch(batch_id=f"b{b}", columns=cols).SerializeToString())
    return batches


def paced(
    payloads: list[bytes],
    k: int,
    streams: int,
    interval_s: float,
    sent: list[float],
    stop: threading.Event | None = None,
) -> Iterator[bytes]:
    """Stream k's batches, one every `interval_s` (0: as fast as the stream takes them), noting when each was
    sent in `sent`; paced streams start out of phase, as independent producers would. Ends early on `stop`."""
    t0 = time.perf_counter() + interval_s * k / streams
    for n, payload in enumerate(payloads):
        if stop is not None and stop.is_set():
            return
        if interval_s:
            delay = t0 + n * interval_s - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        sent.append(time.perf_counter())
        yield payload


def run_streams(
    target: str, key: str, batches: list[bytes], streams: int, interval_s: float = 0.0
) -> tuple[float, list[float], int]:
    """Send batches over `streams` streams; returns (elapsed s, ack latencies s, events acked)."""
    metadata = (("authorization", f"Bearer {key}"),)
    shares = [batches[i::streams] for i in range(streams)]
    latencies: list[list[float]] = [[] for _ in range(streams)]
    acked = [0] * streams
    errors: list[BaseException] = []
    start_gate = threading.Barrier(streams + 1)

    def one(k: int) -> None:
        try:
            with grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 8 << 20)]) as ch:
                call = ch.stream_stream(
                    METHOD, request_serializer=lambda b: b, response_deserializer=pb.IngestAck.FromString
                )
                sent: list[float] = []

                start_gate.wait()
                for ack in call(paced(shares[k], k, streams, interval_s, sent), metadata=metadata):
                    latencies[k].append(time.perf_counter() - sent[ack.sequence - 1])
                    acked[k] += ack.accepted + ack.duplicate
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(k,)) for k in range(streams)]
    for t in threads:
        t.start()
    start_gate.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"a stream failed: {errors[0]}")
    return elapsed, [x for lat in latencies for x in lat], sum(acked)


def unary_calls(target: str, key: str, seconds: float, window: int = 16) -> float:
    """Single-event IngestBatch calls/s, `window` calls outstanding from one client thread.

    Pipelined futures rather than many blocking threads: the client process shares
    the two cores with the server, and a cheaper client leaves more to the server.
    """
    now = time.time_ns() // 1000
    requests = []
    for n in range(int(seconds * 10_000)):
        ev = pb.Event(event_id=f"u-{n}-{uuid.uuid4().hex[:8]}", customer="c", meter="tokens", value="1")
        ev.timestamp.FromMicroseconds(now)
        requests.append(pb.EventBatch(events=[ev]).SerializeToString())
    return _pipelined(target, UNARY, requests, pb.IngestAck.FromString, key, seconds, window, lambda a: a.accepted == 1)


def health_calls(target: str, seconds: float, window: int = 16) -> float:
    """The unary ceiling: grpc.health.v1 Check calls/s over the same kind of channel and window (the least
    a unary call costs this server and client: no authentication, no work)."""
    request = health_pb2.HealthCheckRequest().SerializeToString()
    requests = [request] * int(seconds * 20_000)
    serving = health_pb2.HealthCheckResponse.SERVING
    decode = health_pb2.HealthCheckResponse.FromString
    return _pipelined(target, HEALTH, requests, decode, None, seconds, window, lambda r: r.status == serving)


def _pipelined(
    target: str,
    method: str,
    requests: list[bytes],
    decode: Any,
    key: str | None,
    seconds: float,
    window: int,
    ok: Any,
) -> float:
    """Calls/s that answered `ok`, with `window` calls outstanding; a call that does not is an error."""
    metadata = (("authorization", f"Bearer {key}"),) if key else None
    with grpc.insecure_channel(target) as ch:
        call = ch.unary_unary(method, request_serializer=lambda b: b, response_deserializer=decode)
        pending: deque[Any] = deque()
        done = sent = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds and sent < len(requests):
            while len(pending) < window and sent < len(requests):
                pending.append(call.future(requests[sent], metadata=metadata))
                sent += 1
            done += _answered(pending.popleft().result(), ok)
        while pending:
            done += _answered(pending.popleft().result(), ok)
        return done / (time.perf_counter() - start)


def _answered(response: Any, ok: Any) -> int:
    if not ok(response):
        raise RuntimeError(f"unexpected answer: {response}")
    return 1


# --- raw-insert ceiling ----------------------------------------------------------------------------


def raw_insert(url: str, batches: list[bytes]) -> float:
    """The same rows, inserted the plainest fast way with no gRPC; returns events/s."""
    engine = make_engine(url)
    upgrade(engine)
    decoded = [pb.EventBatch.FromString(b).columns for b in batches]
    rows = [
        list(
            zip(
                repeat(1), c.event_ids, c.customers, c.meters, c.timestamps_unix_us, c.value_units,
                repeat(2), repeat(None), repeat(0), strict=False,
            )
        )
        for c in decoded
    ]  # fmt: skip
    cols = "tenant_id, event_id, customer, meter, ts_us, value_units, value_scale, properties, ingested_at_us"
    events = sum(len(r) for r in rows)
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        start = time.perf_counter()
        if engine.dialect.name == "sqlite":
            sql = f"INSERT INTO events ({cols}) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING"
            for batch in rows:
                raw.execute("BEGIN")
                raw.executemany(sql, batch)
                raw.execute("COMMIT")
        else:
            for batch in rows:
                with raw.cursor() as cur, cur.copy(f"COPY events ({cols}) FROM STDIN") as copy:
                    for row in batch:
                        copy.write_row(row)
                raw.commit()
        elapsed = time.perf_counter() - start
    engine.dispose()
    return events / elapsed


# --- orchestration ---------------------------------------------------------------------------------


def measure(kind: str, args: argparse.Namespace, workdir: Path) -> Figures:
    figures: Figures = {}
    events = 20_000 if args.quick else args.events
    repeats = 1 if args.quick else args.repeats
    batch_sizes = [int(x) for x in args.batch_sizes.split(",")]
    for size in batch_sizes:
        rates, p50s, p99s, nostore, raws = [], [], [], [], []
        for rep in range(repeats):
            batches = make_batches(events, size, f"r{rep}-{uuid.uuid4().hex[:6]}")
            db = fresh_database(kind, workdir)
            try:
                key = provision(db.url)
                server = ServerProcess(db.url, env=UNBOUNDED_DELAY)
                try:
                    elapsed, lat, acked = run_streams(server.target, key, batches, args.streams)
                finally:
                    server.stop()
                if acked != len(batches) * size:
                    raise RuntimeError(f"acked {acked} of {len(batches) * size} events")
                rates.append(acked / elapsed)
                p50s.append(percentile(lat, 50) * 1000)
                p99s.append(percentile(lat, 99) * 1000)
                log(f"{kind} batch={size} run {rep + 1}: {acked / elapsed:,.0f} events/s, p99 {p99s[-1]:.1f} ms")
            finally:
                db.drop()
            db = fresh_database(kind, workdir)
            try:
                key = provision(db.url)
                server = ServerProcess(db.url, store=False, env=UNBOUNDED_DELAY)
                try:
                    elapsed, _, acked = run_streams(server.target, key, batches, args.streams)
                finally:
                    server.stop()
                nostore.append(acked / elapsed)
            finally:
                db.drop()
            db = fresh_database(kind, workdir)
            try:
                raws.append(raw_insert(db.url, batches))
            finally:
                db.drop()
            log(f"{kind} batch={size} run {rep + 1}: nostore {nostore[-1]:,.0f}/s, raw insert {raws[-1]:,.0f}/s")
        rate = median(rates)
        figures[f"{kind}_events_per_s_batch{size}"] = round(rate)
        figures[f"{kind}_ack_p50_ms_batch{size}"] = round(median(p50s), 2)
        figures[f"{kind}_ack_p99_ms_batch{size}"] = round(median(p99s), 2)
        figures[f"{kind}_nostore_events_per_s_batch{size}"] = round(median(nostore))
        figures[f"{kind}_raw_insert_events_per_s_batch{size}"] = round(median(raws))
        figures[f"{kind}_ratio_to_raw_insert_batch{size}"] = round(rate / median(raws), 3)
        figures[f"{kind}_ratio_to_nostore_batch{size}"] = round(rate / median(nostore), 3)

    # Latency at 25 %, 50 % and 90 % of the best measured rate, with the smaller batch size: a warm-up second
    # first (not timed: connections, statement caches, the first fold), then PACED_S seconds, so that a
    # p99 is a percentile of a few hundred acks and not the first batch's cold start.
    size = batch_sizes[0]
    best = figures[f"{kind}_events_per_s_batch{size}"]
    for pct in (25, 50, 90):
        rate = best * pct / 100
        paced_s = 1.0 if args.quick else PACED_S
        paced_events = max(size * args.streams * 4, int(rate * paced_s) // size * size)
        warm_events = max(size * args.streams, int(rate) // size * size)
        batches = make_batches(paced_events, size, f"p{pct}-{uuid.uuid4().hex[:6]}")
        warm = make_batches(warm_events, size, f"w{pct}-{uuid.uuid4().hex[:6]}")
        interval = args.streams * size / rate
        db = fresh_database(kind, workdir)
        try:
            key = provision(db.url)
            server = ServerProcess(db.url)
            lag = LagSampler(db.url)
            try:
                run_streams(server.target, key, warm, args.streams, interval_s=interval)
                _, lat, _ = run_streams(server.target, key, batches, args.streams, interval_s=interval)
                lag.stop()
                figures[f"{kind}_acks_timed_at{pct}pct"] = len(lat)
                figures[f"{kind}_ack_p50_ms_at{pct}pct"] = round(percentile(lat, 50) * 1000, 2)
                figures[f"{kind}_ack_p99_ms_at{pct}pct"] = round(percentile(lat, 99) * 1000, 2)
                figures[f"{kind}_fold_lag_max_s_at{pct}pct"] = round(lag.max_s, 3)
                if pct == 50:
                    figures[f"{kind}_ack_p50_ms_half_rate"] = figures[f"{kind}_ack_p50_ms_at50pct"]
                    figures[f"{kind}_ack_p99_ms_half_rate"] = figures[f"{kind}_ack_p99_ms_at50pct"]
                    unary_s = 1.0 if args.quick else 4.0
                    figures[f"{kind}_unary_calls_per_s"] = round(unary_calls(server.target, key, unary_s))
                    figures[f"{kind}_health_calls_per_s"] = round(health_calls(server.target, unary_s))
                    figures[f"{kind}_unary_ratio_to_health"] = round(
                        figures[f"{kind}_unary_calls_per_s"] / figures[f"{kind}_health_calls_per_s"], 3
                    )
            finally:
                lag.stop()
                server.stop()
        finally:
            db.drop()
        log(
            f"{kind}: at {pct}% of max: ack p50 {figures[f'{kind}_ack_p50_ms_at{pct}pct']} ms, "
            f"p99 {figures[f'{kind}_ack_p99_ms_at{pct}pct']} ms, fold lag max {lag.max_s:.3f} s"
        )
    log(
        f"{kind}: unary {figures[f'{kind}_unary_calls_per_s']:,.0f} calls/s, health check "
        f"{figures[f'{kind}_health_calls_per_s']:,.0f} calls/s on the same kind of channel"
    )
    return figures


class LagSampler:
    """Every `every_s`, the age of the oldest commit not yet folded into rollups (0 when none): how far
    usage rollups trail the acks while the load runs. Reads only; its own connection."""

    def __init__(self, url: str, every_s: float = 0.05) -> None:
        self.max_s = 0.0
        self._engine = make_engine(url)
        self._every_s = every_s
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with self._engine.connect() as conn:
            while not self._done.wait(self._every_s):
                oldest = conn.execute(text("SELECT min(committed_at_us) FROM ingest_pending")).scalar()
                conn.rollback()
                if oldest is not None:
                    self.max_s = max(self.max_s, (time.time_ns() // 1000 - int(oldest)) / 1e6)

    def stop(self) -> None:
        if not self._done.is_set():
            self._done.set()
            self._thread.join()
            self._engine.dispose()


def run(args: argparse.Namespace) -> Figures:
    figures: Figures = {}
    with tempfile.TemporaryDirectory(prefix="tally-bench-") as tmp:
        for kind in args.databases.split(","):
            figures.update(measure(kind.strip(), args, Path(tmp)))
    return figures


if __name__ == "__main__":
    sys.exit(main_for("benchmarks.ingest", __doc__ or "", run, add_arguments))
