"""The gRPC server: mounts every servicer, standard health checking and reflection.

Shutdown (SIGTERM or SIGINT): health turns NOT_SERVING, streams stop reading new
batches and end with UNAVAILABLE after acking every batch they had read, the
committer stores everything already queued, the folder folds what is pending into
rollups, then the process exits. Nothing acked is ever lost, and nothing unacked was
promised; what is left unfolded (a kill -9) is folded by the next server to start.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from sqlalchemy import Engine

from metering.committer import Committer
from metering.fold import Folder
from metering.meter import MeterCatalog
from metering.store import EventStore, NullEventStore, PostgresEventStore, SqliteEventStore, open_store
from metering.tenant import KeyStore
from tally import redact
from tally.api.guard import Guard
from tally.api.http import HttpApi, HttpServer
from tally.api.ingest import IngestServicer
from tally.api.service import BillingServicer
from tally.console import console_routes
from tally.db import make_engine, upgrade
from tally.settings import Settings
from tally.v1 import billing_pb2, billing_pb2_grpc, ingest_pb2, ingest_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name,
    billing_pb2.DESCRIPTOR.services_by_name["BillingService"].full_name,
    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
    reflection.SERVICE_NAME,
)


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    ingest: IngestServicer
    committer: Committer
    health: Any  # grpc_health.v1.health.aio.HealthServicer (untyped)
    engine: Engine
    billing: BillingServicer
    http: HttpServer | None = None
    folder: Folder | None = None

    @property
    def http_port(self) -> int | None:
        return None if self.http is None else self.http.port

    async def stop(self, grace_s: float) -> DrainReport:
        """Drain and stop; returns what was still in flight when the stop began and how it ended."""
        started = time.monotonic()
        batches, events = self.committer.batches_committed, self.ingest.events_acked
        await self.health.enter_graceful_shutdown()
        self.ingest.drain()
        self.billing.drain()
        if self.http is not None:
            await self.http.stop()
        await self.server.stop(grace_s)
        await asyncio.get_running_loop().run_in_executor(None, self.billing.stop)
        # Batches that were submitted are committed before the writers exit.
        await asyncio.get_running_loop().run_in_executor(None, self.committer.stop)
        if self.folder is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.folder.stop, True)
        self.engine.dispose()
        return DrainReport(
            batches_committed=self.committer.batches_committed - batches,
            events_acked=self.ingest.events_acked - events,
            streams_cut=self.ingest.streams_cut,
            seconds=time.monotonic() - started,
        )


@dataclass(frozen=True)
class DrainReport:
    """What a graceful stop drained: batches in flight when it began, committed and acked before exit;
    streams told to resend the batches they had not had read."""

    batches_committed: int
    events_acked: int
    streams_cut: int
    seconds: float

    def __str__(self) -> str:
        return (
            f"drained in {self.seconds:.2f} s: {self.batches_committed:,} in-flight batches committed and acked "
            f"({self.events_acked:,} events), {self.streams_cut:,} open streams told to resend unread batches"
        )


class PortInUse(OSError):
    """Another process listens on the port (gRPC itself only logs this and raises a bare RuntimeError)."""


def check_port(host: str, port: int, option: str = "--port") -> None:
    """Refuse, before anything is opened or written, a port another process already listens on."""
    if port == 0:
        return
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds: TIME_WAIT is no conflict
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(errno.EADDRINUSE, in_use_message(host, port, option)) from None
            raise


def in_use_message(host: str, port: int, option: str = "--port") -> str:
    return f"port {port} is in use on {host}; stop what listens there or pass {option} N ({option} 0 picks a free one)"


#: Threads answering BillingService (and HTTP) calls, each holding a pooled connection while it works.
API_THREADS = 8
#: Background workers that hold a connection while they run: webhook dispatcher, alert evaluator,
#: scheduler, points accrual, entitlement refresher.
BACKGROUND_WORKERS = 5


def pool_size(writers: int, api_threads: int = API_THREADS, workers: int = BACKGROUND_WORKERS) -> int:
    """Connections the server's users hold at once, so none waits for or churns through the pool: each
    writer one for its life, the folder one, each API thread and background worker one, and two for the
    event loop's key and meter lookups. (It was writers + 4: under load connections were opened and
    closed several times a minute, each time re-creating a writer's staging table.)"""
    return writers + 1 + api_threads + workers + 2


def _quiet_gc() -> None:
    """Keep the cyclic garbage collector off the ack's path. Ingest allocates millions of short-lived
    objects (columns of strings, rows), so with the default thresholds the collector runs constantly, and
    each full pass walks every object the process holds (the modules, descriptors and caches of a few
    hundred MB): measured as ack latency spikes of 100 ms and more at any rate. What start-up built is
    moved out of the collector's view (`gc.freeze`), and young collections run less often; reference
    counting frees the batches themselves, which hold no cycles."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


async def start(settings: Settings, migrate: bool = True) -> RunningServer:
    check_port(settings.host, settings.port)
    if settings.http_port is not None:
        check_port(settings.host, settings.http_port, "--http-port")
    redact.install()
    engine = make_engine(
        settings.database_url, settings.sqlite_synchronous, pool_size=pool_size(settings.postgres_writers)
    )
    if migrate:
        await asyncio.get_running_loop().run_in_executor(None, upgrade, engine)
    writers = 1 if engine.dialect.name == "sqlite" else settings.postgres_writers

    def store_factory() -> EventStore:
        if not settings.store_events:
            return NullEventStore()
        store = open_store(engine)
        if isinstance(store, SqliteEventStore):
            store.FOLD_SLICE_EVENTS = settings.fold_events_max
        elif isinstance(store, PostgresEventStore) and folder is not None:
            store.on_commit = folder.remember  # the folder folds what the writers committed from memory
        return store

    committer = Committer(store_factory, writers=writers, commit_events_max=settings.ingest.commit_events_max)
    folder = None
    if settings.store_events and settings.fold_enabled:
        if engine.dialect.name == "sqlite":
            committer.fold_in_writer = True  # one write lock: the writer folds between its commits
        else:
            folder = Folder(engine, settings.fold_interval_s, settings.fold_events_max)
    if folder is not None:
        committer.listeners.append(folder.notify)
        folder.start()  # also folds what a crashed predecessor left pending
    committer.start()
    limits = settings.ingest
    keys = KeyStore(engine)
    guard = Guard(keys, settings.api)
    server = grpc.aio.server(
        interceptors=[guard],
        options=[
            ("grpc.max_receive_message_length", limits.message_bytes_max),
            ("grpc.max_send_message_length", limits.message_bytes_max),
            ("grpc.so_reuseport", 0),
        ]
    )
    ingest = IngestServicer(keys, MeterCatalog(engine), committer, limits)
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(ingest, server)  # type: ignore[no-untyped-call]
    billing = BillingServicer(engine, keys, ingest, threads=API_THREADS, settings=settings)
    billing_pb2_grpc.add_BillingServiceServicer_to_server(billing, server)  # type: ignore[no-untyped-call]
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(SERVICE_NAMES, server)
    try:
        port = server.add_insecure_port(f"{settings.host}:{settings.port}")
    except RuntimeError:  # taken between check_port and here
        port = 0
    if port == 0:
        committer.stop()
        if folder is not None:
            folder.stop()
        billing.stop()
        engine.dispose()
        raise PortInUse(errno.EADDRINUSE, in_use_message(settings.host, settings.port))
    http = None
    if settings.http_port is not None:
        try:
            app = HttpApi(billing, ingest, guard, limits.message_bytes_max).app(console_routes(billing))
            http = await HttpServer.start(app, settings.host, settings.http_port)
        except OSError:
            committer.stop()
            if folder is not None:
                folder.stop()
            billing.stop()
            raise
    await server.start()
    billing.start()
    _quiet_gc()
    for name in ("", *SERVICE_NAMES[:2]):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, port, ingest, committer, health_servicer, engine, billing, http, folder)


async def serve(
    settings: Settings, on_ready: Callable[[RunningServer], None] | None = None, migrate: bool = True
) -> DrainReport:
    """Run until SIGTERM or SIGINT, then drain and stop; returns what was drained."""
    running = await start(settings, migrate=migrate)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if on_ready is not None:
        on_ready(running)
    await stop.wait()
    log.info("draining: no new batches are read; in-flight batches are committed and acked")
    return await running.stop(settings.shutdown_grace_s)
