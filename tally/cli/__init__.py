"""The `tally` command line.

Every failure prints one line, `error: <what went wrong and what to do>`, and
exits with status 1 (2 for a usage mistake); a traceback is only shown with
TALLY_DEBUG=1.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any, NoReturn

import click
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from metering.errors import TallyError
from tally.db import make_engine, upgrade
from tally.settings import Settings

console = Console()
err_console = Console(stderr=True)


def fail(message: str) -> NoReturn:
    raise click.ClickException(message)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        parts = [f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in exc.errors()]
        return "invalid input: " + "; ".join(parts)
    if isinstance(exc, OperationalError):
        first = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        return f"database unavailable ({first}); check --database-url / TALLY_DATABASE_URL"
    if isinstance(exc, SQLAlchemyError):
        return f"database error: {str(exc).splitlines()[0]}; run `tally migrate` if the schema is missing"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class TallyGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except (TallyError, ValidationError, SQLAlchemyError, OSError, ValueError) as exc:
            if os.environ.get("TALLY_DEBUG"):
                raise
            raise click.ClickException(_one_line(exc)) from exc


@click.group(cls=TallyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--database-url",
    envvar="TALLY_DATABASE_URL",
    default=None,
    help="SQLite file (default sqlite:///tally.db) or postgresql+psycopg://USER@HOST:PORT/DB.",
)
@click.pass_context
def main(ctx: click.Context, database_url: str | None) -> None:
    """Tally: usage metering and billing with exact money.

    \b
    See it all work (30-40 s, writes ./tally-demo):
      tally demo

    \b
    Start here (embedded SQLite, no server needed):
      tally tenant create acme          # a tenant
      tally apikey create acme          # prints a key, shown once
      tally meter create acme api_calls --aggregation count
      tally serve                       # gRPC ingest + billing API on 127.0.0.1:50051
      tally send events.jsonl --api-key KEY
      tally usage acme cus_42 api_calls --from 2026-11-01T00:00Z --to 2026-12-01T00:00Z --window day

    Settings come from TALLY_* environment variables; see `tally serve --help`.
    """
    settings = Settings() if database_url is None else Settings(database_url=database_url)
    ctx.obj = settings


def _engine(ctx: click.Context, migrate: bool = True) -> Engine:
    settings: Settings = ctx.obj
    engine = make_engine(settings.database_url, settings.sqlite_synchronous)
    if migrate:
        upgrade(engine)
    return engine


def _table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title, show_lines=False)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    console.print(table)


@main.command()
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Upgrade the database schema to the newest revision (safe to repeat)."""
    from tally.db import current_revision

    engine = _engine(ctx)
    click.echo(f"schema at revision {current_revision(engine)}")


@main.command()
@click.option("--host", default=None, help="Interface to listen on [default: 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [default: 50051; 0 picks a free one].")
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
    from tally.server import RunningServer
    from tally.server import serve as run_server

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    settings: Settings = ctx.obj
    updates: dict[str, Any] = {}
    if host is not None:
        updates["host"] = host
    if port is not None:
        updates["port"] = port
    if serve_database_url is not None:
        updates["database_url"] = serve_database_url
    if no_store:
        updates["store_events"] = False
    settings = settings.model_copy(update=updates)

    def ready(running: RunningServer) -> None:
        db = running.engine.url.render_as_string(hide_password=True)
        click.echo(f"tally listening on {settings.host}:{running.port} (database {db})", err=False)
        sys.stdout.flush()

    asyncio.run(run_server(settings, on_ready=ready, migrate=not no_migrate))


@main.group()
def tenant() -> None:
    """Create and list tenants."""


@tenant.command("create")
@click.argument("name")
@click.pass_context
def tenant_create(ctx: click.Context, name: str) -> None:
    """Create tenant NAME."""
    from metering.tenant import create_tenant

    t = create_tenant(_engine(ctx), name)
    click.echo(f"created tenant {t.name} (id {t.id}); next: tally apikey create {t.name}")


@tenant.command("list")
@click.pass_context
def tenant_list(ctx: click.Context) -> None:
    """List tenants."""
    from metering.tenant import list_tenants

    rows = [[str(t.id), t.name, t.created_at.isoformat(timespec="seconds")] for t in list_tenants(_engine(ctx))]
    _table("tenants", ["id", "name", "created"], rows)


@main.group()
def apikey() -> None:
    """Create, list and revoke a tenant's API keys."""


@apikey.command("create")
@click.argument("tenant_name", metavar="TENANT")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(["ingest", "read", "admin"]),
    help="Repeatable. Default: all three. Give a product service only `--scope ingest`.",
)
@click.pass_context
def apikey_create(ctx: click.Context, tenant_name: str, scopes: tuple[str, ...]) -> None:
    """Create an API key for TENANT and print it (it is shown only once)."""
    from metering.tenant import SCOPES, create_api_key, get_tenant

    engine = _engine(ctx)
    t = get_tenant(engine, tenant_name)
    key_id, key = create_api_key(engine, t.id, scopes or SCOPES)
    click.echo(key)
    err_console.print(
        f"[dim]key {key_id} for tenant {t.name}, scopes {','.join(scopes or SCOPES)}; "
        "store it now: only its hash is kept[/dim]"
    )


@apikey.command("list")
@click.argument("tenant_name", metavar="TENANT")
@click.pass_context
def apikey_list(ctx: click.Context, tenant_name: str) -> None:
    """List TENANT's API keys (prefix only: keys themselves are never stored)."""
    from metering.tenant import get_tenant, list_api_keys

    engine = _engine(ctx)
    t = get_tenant(engine, tenant_name)
    rows = [
        [str(k.id), k.prefix + "…", k.scopes, k.created_at.isoformat(timespec="seconds"),
         k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else "active"]
        for k in list_api_keys(engine, t.id)
    ]  # fmt: skip
    _table(f"API keys of {t.name}", ["id", "prefix", "scopes", "created", "status"], rows)


@apikey.command("revoke")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("key_id", type=int)
@click.pass_context
def apikey_revoke(ctx: click.Context, tenant_name: str, key_id: int) -> None:
    """Revoke key KEY_ID of TENANT; running servers refuse it within 5 seconds."""
    from metering.tenant import get_tenant, revoke_api_key

    engine = _engine(ctx)
    t = get_tenant(engine, tenant_name)
    revoke_api_key(engine, t.id, key_id)
    click.echo(f"revoked key {key_id} of tenant {t.name}")


@main.group()
def meter() -> None:
    """Create, list and rebuild meters (what events a tenant accepts and how they count)."""


@meter.command("create")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("code")
@click.option("--name", default="", help="Display name [default: the code].")
@click.option(
    "--aggregation",
    type=click.Choice(["count", "sum", "max", "min", "latest", "unique_count", "gauge"]),
    default="sum",
    show_default=True,
)
@click.option("--scale", "value_scale", type=int, default=0, show_default=True, help="Fractional digits of values.")
@click.option("--unit", default="", help="Display unit, e.g. tokens, GB, seats.")
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="KEY=V1,V2",
    help="Repeatable. Count only events whose property KEY is one of the values.",
)
@click.option("--group-by", "group_by", multiple=True, metavar="KEY", help="Repeatable. A dimension property.")
@click.option(
    "--unique-property", default=None, metavar="KEY", help="unique_count: the property whose distinct values count."
)
@click.option(
    "--time-unit",
    type=click.Choice(["second", "minute", "hour", "day"]),
    default=None,
    help="gauge: the unit of its time integral [default: day, so seats held a day = 1 seat-day].",
)
@click.pass_context
def meter_create(
    ctx: click.Context,
    tenant_name: str,
    code: str,
    name: str,
    aggregation: str,
    value_scale: int,
    unit: str,
    filters: tuple[str, ...],
    group_by: tuple[str, ...],
    unique_property: str | None,
    time_unit: str | None,
) -> None:
    """Create meter CODE for TENANT.

    \b
    Examples:
      tokens by model, paid tiers only, 2 decimals:
        tally meter create acme tokens --scale 2 --group-by model --filter tier=paid,trial
      monthly active users (distinct values of the `user` property):
        tally meter create acme mau --aggregation unique_count --unique-property user
      seats held over time, billed in seat-days (each event sets the seat count):
        tally meter create acme seats --aggregation gauge --time-unit day
    """
    from metering.meter import MeterDefinition, create_meter
    from metering.tenant import get_tenant

    parsed: dict[str, list[str]] = {}
    for item in filters:
        key, sep, values = item.partition("=")
        if not sep or not values:
            fail(f"--filter {item!r}: write KEY=VALUE[,VALUE...]")
        parsed[key] = values.split(",")
    engine = _engine(ctx)
    t = get_tenant(engine, tenant_name)
    m = create_meter(
        engine,
        t.id,
        MeterDefinition(
            code=code,
            name=name,
            aggregation=aggregation,
            value_scale=value_scale,
            unit=unit,
            filter=parsed,
            group_by=list(group_by),
            unique_property=unique_property,
            time_unit=time_unit,
        ),
    )
    click.echo(f"created meter {m.code} ({m.aggregation.value}, scale {m.value_scale}) for tenant {t.name}")


@meter.command("list")
@click.argument("tenant_name", metavar="TENANT")
@click.pass_context
def meter_list(ctx: click.Context, tenant_name: str) -> None:
    """List TENANT's meters."""
    from metering.meter import list_meters
    from metering.tenant import get_tenant

    engine = _engine(ctx)
    t = get_tenant(engine, tenant_name)
    rows = [
        [m.code, m.name, m.aggregation.value, str(m.value_scale), m.unit, ",".join(m.group_by), _filter_text(m.filter)]
        for m in list_meters(engine, t.id)
    ]
    _table(f"meters of {t.name}", ["code", "name", "aggregation", "scale", "unit", "group by", "filter"], rows)


def _filter_text(f: dict[str, list[str]] | None) -> str:
    return " ".join(f"{k}={','.join(v)}" for k, v in (f or {}).items())


@meter.command("show")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("code")
@click.pass_context
def meter_show(ctx: click.Context, tenant_name: str, code: str) -> None:
    """Show meter CODE of TENANT: its definition and what its rollups hold."""
    from metering.meter import get_meter
    from metering.tenant import get_tenant
    from metering.usage import meter_summary

    engine = _engine(ctx)
    t = get_tenant(engine, tenant_name)
    m = get_meter(engine, t.id, code)
    summary = meter_summary(engine, t.id, code)
    how = m.aggregation.value
    if m.unique_property:
        how += f" of property {m.unique_property!r}"
    if m.time_unit:
        how += f", integrated per {m.time_unit.value}"

    def when(moment: object) -> str:
        return moment.isoformat(timespec="seconds") if hasattr(moment, "isoformat") else "-"

    rows = [
        ["code", m.code],
        ["name", m.name],
        ["aggregation", how],
        ["value scale", str(m.value_scale)],
        ["quantity scale", str(m.quantity_scale)],
        ["unit", m.unit or "-"],
        ["group by", ", ".join(m.group_by) or "-"],
        ["filter", _filter_text(m.filter) or "-"],
        ["created", when(m.created_at)],
        ["counted events", f"{summary.events:,}"],
        ["customers", f"{summary.customers:,}"],
        ["rollup buckets", f"{summary.buckets:,}"],
        ["first event", when(summary.first)],
        ["last event", when(summary.last)],
        ["meaning", "frozen (has events): create a new code to change it" if summary.events else "editable"],
    ]
    _table(f"meter {m.code} of {t.name}", ["field", "value"], rows)


@meter.command("rebuild")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("codes", nargs=-1, metavar="[CODE]...")
@click.pass_context
def meter_rebuild(ctx: click.Context, tenant_name: str, codes: tuple[str, ...]) -> None:
    """Recompute rollups from raw events and report whether they matched (all meters by default).

    Exit status 0 when every stored rollup already matched the raw events, 1 when some bucket had to
    be corrected (it is corrected either way). Ingest waits while a meter is rebuilt.
    """
    from metering.meter import get_meter, list_meters
    from metering.rollup import rebuild
    from metering.tenant import get_tenant

    engine = _engine(ctx)
    t = get_tenant(engine, tenant_name)
    chosen = [get_meter(engine, t.id, c) for c in codes] if codes else list_meters(engine, t.id)
    rows, corrected = [], 0
    for m in chosen:
        report = rebuild(engine, t.id, m.code, m.spec)
        corrected += report.mismatched_before
        verdict = "matched" if report.mismatched_before == 0 else f"{report.mismatched_before} buckets corrected"
        rows.append([m.code, f"{report.events:,}", f"{report.buckets:,}", verdict])
    _table(f"rollup rebuild for {t.name}", ["meter", "counted events", "buckets", "result"], rows)
    if corrected:
        ctx.exit(1)


@main.command("usage")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("customer")
@click.argument("meter_code", metavar="METER")
@click.option("--from", "start", required=True, help="Start, ISO 8601 (inclusive), e.g. 2026-11-01T00:00:00+01:00.")
@click.option("--to", "end", required=True, help="End, ISO 8601 (exclusive). Both on 15-minute boundaries.")
@click.option("--window", type=click.Choice(["hour", "day", "month"]), default=None, help="Split by calendar window.")
@click.option("--tz", default="UTC", show_default=True, help="IANA time zone for windows, e.g. Europe/Paris.")
@click.option("--group-by", "group_by", is_flag=True, help="Split by the meter's dimensions.")
@click.pass_context
def usage_command(
    ctx: click.Context,
    tenant_name: str,
    customer: str,
    meter_code: str,
    start: str,
    end: str,
    window: str | None,
    tz: str,
    group_by: bool,
) -> None:
    """Exact usage of METER by CUSTOMER over [--from, --to), from rollups."""
    from datetime import datetime

    from metering.tenant import get_tenant
    from metering.usage import Window, usage

    def when(text: str, flag: str) -> datetime:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            fail(f"{flag} {text!r} is not ISO 8601; write e.g. 2026-11-01T00:00:00Z")
        if moment.tzinfo is None:
            fail(f"{flag} {text!r} has no offset; add Z or +01:00")
        return moment

    engine = _engine(ctx)
    t = get_tenant(engine, tenant_name)
    rows = usage(
        engine,
        t.id,
        customer,
        meter_code,
        when(start, "--from"),
        when(end, "--to"),
        group_by=group_by,
        window=Window(window) if window else None,
        tz=tz,
    )
    table_rows = [
        [
            r.window_start.isoformat() if r.window_start else "",
            _filter_text({k: [v] for k, v in r.group.items()}),
            str(r.quantity),
            f"{r.events:,}",
        ]
        for r in rows
    ]
    _table(f"{meter_code} used by {customer}", ["window", "dimensions", "quantity", "events"], table_rows)


def _register_commands() -> None:
    from tally import billing_command, events_command, ledger_command
    from tally.demo import demo
    from tally.rate_command import rate
    from tally.send_command import send

    main.add_command(rate)
    main.add_command(send)
    main.add_command(demo)
    for command in (*ledger_command.COMMANDS, *billing_command.COMMANDS, *events_command.COMMANDS):
        main.add_command(command)


_register_commands()


def run() -> None:
    main(prog_name="tally")


if __name__ == "__main__":
    run()
