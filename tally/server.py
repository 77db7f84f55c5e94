"""The gRPC server: mounts every servicer, standard health checking and reflection.

Shutdown (SIGTERM or SIGINT): health turns NOT_SERVING, streams stop reading new
batches and end with UNAVAILABLE after acking every batch they had read, the
committer stores everything already queued, then the process exits. Nothing
acked is ever lost, and nothing unacked was promised.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from sqlalchemy import Engine

from metering.committer import Committer
from metering.meter import MeterCatalog
from metering.store import EventStore, NullEventStore, open_store
from metering.tenant import KeyStore
from tally import redact
from tally.api.guard import Guard
from tally.api.ingest import IngestServicer
from tally.api.service import BillingServicer
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

    async def stop(self, grace_s: float) -> None:
        await self.health.enter_graceful_shutdown()
        self.ingest.drain()
        self.billing.drain()
        await self.server.stop(grace_s)
        await asyncio.get_running_loop().run_in_executor(None, self.billing.stop)
        # Batches that were submitted are committed before the writers exit.
        await asyncio.get_running_loop().run_in_executor(None, self.committer.stop)
        self.engine.dispose()


async def start(settings: Settings, migrate: bool = True) -> RunningServer:
    redact.install()
    engine = make_engine(settings.database_url, settings.sqlite_synchronous, pool_size=settings.postgres_writers + 4)
    if migrate:
        await asyncio.get_running_loop().run_in_executor(None, upgrade, engine)
    writers = 1 if engine.dialect.name == "sqlite" else settings.postgres_writers

    def store_factory() -> EventStore:
        return open_store(engine) if settings.store_events else NullEventStore()

    committer = Committer(store_factory, writers=writers, commit_events_max=settings.ingest.commit_events_max)
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
    billing = BillingServicer(engine, keys, ingest, settings=settings)
    billing_pb2_grpc.add_BillingServiceServicer_to_server(billing, server)  # type: ignore[no-untyped-call]
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(SERVICE_NAMES, server)
    port = server.add_insecure_port(f"{settings.host}:{settings.port}")
    if port == 0:
        committer.stop()
        billing.stop()
        raise OSError(f"cannot listen on {settings.host}:{settings.port} (address in use?)")
    await server.start()
    billing.start()
    for name in ("", *SERVICE_NAMES[:2]):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, port, ingest, committer, health_servicer, engine, billing)


async def serve(
    settings: Settings, on_ready: Callable[[RunningServer], None] | None = None, migrate: bool = True
) -> None:
    """Run until SIGTERM or SIGINT, then drain and stop."""
    running = await start(settings, migrate=migrate)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if on_ready is not None:
        on_ready(running)
    await stop.wait()
    log.info("draining: no new batches are read; in-flight batches are committed and acked")
    await running.stop(settings.shutdown_grace_s)
