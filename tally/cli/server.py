"""`tally serve` (the gRPC server) and `tally migrate` (the schema)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from tally.cli._common import fail, open_engine, settings_of

if TYPE_CHECKING:
    from tally.server import DrainReport


@click.command("migrate")
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Create the database, or upgrade its schema to the newest revision (safe to repeat).

    Commands that only read never create or upgrade a database: after installing a newer Tally, run this
    once (or start `tally serve`, which upgrades on start unless --no-migrate).
    """
    from tally.db import current_revision

    engine = open_engine(ctx, create=True)
    click.echo(f"schema at revision {current_revision(engine)}")


@click.command("serve")
@click.option("--host", default=None, help="Interface to listen on [default: 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [default: 50051; 0 picks a free one].")
@click.option(
    "--http-port", type=int, default=None,
    help="Also serve the HTTP JSON API and the console on this port (off by default; TALLY_HTTP_PORT).",
)  # fmt: skip
@click.option(
    "--database-url", "serve_database_url", default=None, help="Same as the global --database-url, for convenience."
)
@click.option("--no-store", is_flag=True, help="Validate but store nothing (benchmark ceiling only).")
@click.option(
    "--no-migrate",
    is_flag=True,
    help="Do not upgrade the schema on start (many servers on one PostgreSQL: run `tally migrate` once).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log at INFO level.")
@click.pass_context
def serve(
    ctx: click.Context,
    host: str | None,
    port: int | None,
    http_port: int | None,
    serve_database_url: str | None,
    no_store: bool,
    no_migrate: bool,
    verbose: bool,
) -> None:
    """Run the gRPC server (IngestService, BillingService, health, reflection) until SIGTERM.

    \b
    An ack means committed: with SQLite the default synchronous=FULL makes it
    survive power loss. SIGTERM drains: in-flight batches are committed and
    acked, unread ones are refused with UNAVAILABLE so clients resend them.
    Limits: TALLY_INGEST__BATCH_EVENTS_MAX, TALLY_INGEST__MESSAGE_BYTES_MAX,
    TALLY_INGEST__QUEUE_EVENTS_MAX, TALLY_INGEST__EVENT_AGE_MAX_DAYS, ...
    """
    import asyncio  # here, not at the top: `tally migrate` and `tally serve --help` do not need the event loop
    import logging

    from tally.server import RunningServer
    from tally.server import serve as run_server

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    from tally.db import sqlite_file
    from tally.server import PortInUse

    settings = settings_of(ctx)
    updates: dict[str, Any] = {}
    if host is not None:
        updates["host"] = host
    if port is not None:
        updates["port"] = port
    if http_port is not None:
        updates["http_port"] = http_port
    if serve_database_url is not None:
        updates["database_url"] = serve_database_url
    if no_store:
        updates["store_events"] = False
    settings = settings.model_copy(update=updates)
    path = sqlite_file(settings.database_url)
    if no_migrate and path is not None and not path.exists():
        fail(f"no database at {path}: --no-migrate serves an existing database; create it with `tally migrate`")

    def ready(running: RunningServer) -> None:
        db = running.engine.url.render_as_string(hide_password=True)
        click.echo(f"tally listening on {settings.host}:{running.port} (database {db})", err=False)
        if running.http_port is not None:
            click.echo(f"HTTP JSON API on http://{settings.host}:{running.http_port}/v1/ (OpenAPI: /v1/openapi.json); "
                       f"console on http://{settings.host}:{running.http_port}/console/")  # fmt: skip
        sys.stdout.flush()

    try:
        report: DrainReport = asyncio.run(run_server(settings, on_ready=ready, migrate=not no_migrate))
    except PortInUse as exc:
        fail(exc.strerror or str(exc))
    click.echo(f"tally stopped; {report}")
