"""CLI commands for events out (registered by tally.cli): events, webhook, alert.

They work on the database directly, like the other tenant commands, so they need no server:
`tally webhook deliver` and `tally alert check` run one pass of the server's background workers
(safe beside a running server: attempts are claimed and crossings recorded exactly once).
`tally.cli` is imported inside the commands (it imports this module).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from invoicing.events import DomainEvent


def _tenant(ctx: click.Context, name: str) -> tuple[Engine, int]:
    from metering.tenant import get_tenant
    from tally.cli import _engine

    engine = _engine(ctx)
    return engine, get_tenant(engine, name).id


def _when(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _grid(title: str, columns: list[str], rows: list[list[str]], keep: tuple[str, ...] = ()) -> None:
    """A table whose long values fold onto more lines; columns in `keep` never wrap (short words)."""
    from rich.table import Table

    from tally.cli import console

    table = Table(title=title)
    for col in columns:
        table.add_column(col, overflow="fold", no_wrap=col in keep)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _line(e: DomainEvent) -> str:
    data = json.dumps(e.data, sort_keys=True, separators=(",", ":"))
    return f"{e.sequence} {_when(e.occurred_at)} {e.type} {e.customer or '-'} {data}"


def _types(values: tuple[str, ...]) -> list[str]:
    from invoicing.events import check_patterns
    from metering.errors import InvalidArgument

    try:
        return check_patterns(values, "--type")
    except InvalidArgument as exc:
        raise click.UsageError(str(exc)) from None


# --- events ----------------------------------------------------------------------------------------------------
@click.group("events")
def events() -> None:
    """The tenant's domain events (the outbox): list past ones, watch new ones."""


@events.command("list")
@click.argument("tenant_name", metavar="TENANT")
@click.option("--after", type=click.IntRange(min=0), default=0, show_default=True, help="Events after this sequence.")
@click.option("--type", "types", multiple=True, help="Only this type or prefix, e.g. invoice. (repeat).")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.pass_context
def events_list(ctx: click.Context, tenant_name: str, after: int, types: tuple[str, ...], limit: int) -> None:
    """Events of TENANT in order, from a cursor.

    \b
    Example:
      tally events list acme --after 120 --type invoice.
    """
    from invoicing.events import read_events

    patterns = _types(types)
    engine, tenant_id = _tenant(ctx, tenant_name)
    found, last = read_events(engine, tenant_id, after, limit, patterns)
    rows = [
        [str(e.sequence), _when(e.occurred_at), e.type, e.customer, json.dumps(e.data, sort_keys=True)] for e in found
    ]
    columns = ["sequence", "occurred", "type", "customer", "data"]
    _grid(f"{tenant_name} events after {after}", columns, rows, keep=("type",))
    click.echo(f"last sequence read: {last} (continue with --after {last})")


@events.command("watch")
@click.argument("tenant_name", metavar="TENANT")
@click.option("--after", type=click.IntRange(min=0), default=None, help="Start after this sequence [default: now].")
@click.option("--type", "types", multiple=True, help="Only this type or prefix, e.g. invoice. (repeat).")
@click.option("--poll", type=click.FloatRange(min=0.01), default=0.5, show_default=True, help="Seconds between reads.")
@click.option("--count", type=click.IntRange(min=1), default=None, help="Exit after this many events.")
@click.pass_context
def events_watch(
    ctx: click.Context, tenant_name: str, after: int | None, types: tuple[str, ...], poll: float, count: int | None
) -> None:
    """Print TENANT's events as they are committed, one line each, until Ctrl-C.

    Each line is `SEQUENCE OCCURRED TYPE CUSTOMER DATA`. Resume after an interruption with
    `--after` and the last sequence printed: nothing is skipped or repeated.

    \b
    Example:
      tally events watch acme --after 0 --type usage. --type wallet.
    """
    from invoicing.events import head, read_events

    patterns = _types(types)
    engine, tenant_id = _tenant(ctx, tenant_name)
    cursor = head(engine, tenant_id) if after is None else after
    seen = 0
    try:
        while True:
            found, last = read_events(engine, tenant_id, cursor, 500, patterns)
            for e in found:
                click.echo(_line(e))
                seen += 1
                if count is not None and seen >= count:
                    return
            if last == cursor:
                time.sleep(poll)
            cursor = last
    except KeyboardInterrupt:
        click.echo(f"stopped after sequence {cursor}; resume with --after {cursor}", err=True)


# --- webhooks --------------------------------------------------------------------------------------------------
@click.group("webhook")
def webhook() -> None:
    """Webhook endpoints: create, list, disable, deliveries, replay, deliver."""


@webhook.command("create")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("url")
@click.option("--type", "types", multiple=True, help="Only this type or prefix (repeat); default all.")
@click.option("--after", type=click.IntRange(min=0), default=0, help="Start after this sequence; 0 = new events only.")
@click.pass_context
def webhook_create(ctx: click.Context, tenant_name: str, url: str, types: tuple[str, ...], after: int) -> None:
    """POST TENANT's events to URL, signed with a new secret (printed once: keep it).

    \b
    Example:
      tally webhook create acme https://example.com/tally --type invoice.
    """
    from invoicing.events import create_endpoint

    patterns = _types(types)
    engine, tenant_id = _tenant(ctx, tenant_name)
    block = ctx.obj.platform.webhook_block_private
    ep = create_endpoint(engine, tenant_id, url, patterns, after, datetime.now(UTC), block_private=block)
    click.echo(f"created webhook endpoint {ep.id} -> {ep.url} (events after {ep.delivered_sequence})")
    click.echo(f"signing secret (shown once): {ep.secret}")


@webhook.command("list")
@click.argument("tenant_name", metavar="TENANT")
@click.pass_context
def webhook_list(ctx: click.Context, tenant_name: str) -> None:
    """TENANT's endpoints (secrets are never shown again)."""
    from invoicing.events import list_endpoints

    engine, tenant_id = _tenant(ctx, tenant_name)
    rows = [
        [str(e.id), e.url, ", ".join(e.types) or "all", "yes" if e.enabled else "no", str(e.delivered_sequence),
         _when(e.created_at)]
        for e in list_endpoints(engine, tenant_id)
    ]  # fmt: skip
    _grid(f"{tenant_name} webhook endpoints", ["id", "url", "types", "enabled", "delivered", "created"], rows)


@webhook.command("disable")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("endpoint_id", type=int)
@click.pass_context
def webhook_disable(ctx: click.Context, tenant_name: str, endpoint_id: int) -> None:
    """Send nothing more to ENDPOINT_ID."""
    from invoicing.events import disable_endpoint

    engine, tenant_id = _tenant(ctx, tenant_name)
    ep = disable_endpoint(engine, tenant_id, endpoint_id)
    click.echo(f"disabled webhook endpoint {ep.id} ({ep.url}); delivered up to {ep.delivered_sequence}")


@webhook.command("deliveries")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("endpoint_id", type=int)
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.pass_context
def webhook_deliveries(ctx: click.Context, tenant_name: str, endpoint_id: int, limit: int) -> None:
    """ENDPOINT_ID's delivery attempts, newest first (pending = queued or in flight)."""
    from invoicing.events import list_deliveries

    engine, tenant_id = _tenant(ctx, tenant_name)
    page, _ = list_deliveries(engine, tenant_id, endpoint_id, limit=limit)
    rows = [
        [str(d.id), str(d.sequence), d.type, str(d.attempt), d.status + (" (replay)" if d.replay else ""),
         str(d.http_status or ""), d.error, _when(d.attempted_at), _when(d.next_attempt_at)]
        for d in page
    ]  # fmt: skip
    columns = ["id", "sequence", "type", "attempt", "status", "http", "error", "attempted", "next attempt"]
    _grid(f"webhook endpoint {endpoint_id} deliveries", columns, rows, keep=("status",))


@webhook.command("replay")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("endpoint_id", type=int)
@click.option("--after", type=click.IntRange(min=0), default=0, show_default=True, help="Events after this sequence")
@click.option("--to", "to", type=click.IntRange(min=0), default=0, help="... up to this one [default: the latest].")
@click.pass_context
def webhook_replay(ctx: click.Context, tenant_name: str, endpoint_id: int, after: int, to: int) -> None:
    """Send ENDPOINT_ID's events (after, to] again; its cursor does not move back.

    \b
    Example (event 42 only):
      tally webhook replay acme 1 --after 41 --to 42
    """
    from invoicing.events import replay

    engine, tenant_id = _tenant(ctx, tenant_name)
    n = replay(engine, tenant_id, endpoint_id, after, to, datetime.now(UTC))
    click.echo(f"queued {n} event(s) for endpoint {endpoint_id}; the server sends them (or: tally webhook deliver)")


@webhook.command("deliver")
@click.argument("tenant_name", metavar="TENANT", required=False)
@click.pass_context
def webhook_deliver(ctx: click.Context, tenant_name: str | None) -> None:
    """Run one dispatcher pass now: every due attempt (of TENANT, or of all tenants).

    Retry settings come from TALLY_PLATFORM__WEBHOOK_* like the server's.
    """
    from invoicing.events import deliver_once
    from tally.api.events import retry_policy
    from tally.cli import _engine
    from tally.settings import Settings

    if tenant_name is None:
        engine, tenant_id = _engine(ctx), None
    else:
        engine, tid = _tenant(ctx, tenant_name)
        tenant_id = tid
    settings: Settings = ctx.obj
    s = deliver_once(engine, policy=retry_policy(settings.platform), tenant_id=tenant_id)
    click.echo(f"{s.attempts} attempt(s): {s.succeeded} succeeded, {s.failed} failed (will retry), {s.dead} dead")


# --- alerts ----------------------------------------------------------------------------------------------------
@click.group("alert")
def alert() -> None:
    """Usage, spend and balance threshold alerts: create, list, delete, check."""


@alert.command("create")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("customer")
@click.argument("kind", type=click.Choice(["usage", "spend", "balance"]))
@click.argument("threshold")
@click.option("--meter", default="", help="usage: the meter code.")
@click.option("--unit", default="", help="balance: the currency or points unit.")
@click.pass_context
def alert_create(
    ctx: click.Context, tenant_name: str, customer: str, kind: str, threshold: str, meter: str, unit: str
) -> None:
    """Alert when CUSTOMER's usage or spend this period reaches THRESHOLD, or a balance falls below it.

    \b
    Examples:
      tally alert create acme cus_42 usage 100000 --meter api_calls
      tally alert create acme cus_42 spend 500
      tally alert create acme cus_42 balance 10 --unit USD
    """
    from invoicing.insight import create_alert

    engine, tenant_id = _tenant(ctx, tenant_name)
    a = create_alert(engine, tenant_id, customer, kind, threshold, datetime.now(UTC), meter=meter, unit=unit)
    what = {"usage": f"{a.meter} usage", "spend": "spend", "balance": f"{a.unit} balance"}[a.kind]
    click.echo(f"created alert {a.id}: {customer} {what} {'below' if a.kind == 'balance' else 'at'} {a.threshold}")


@alert.command("list")
@click.argument("tenant_name", metavar="TENANT")
@click.option("--customer", default="", help="Only this customer's alerts.")
@click.pass_context
def alert_list(ctx: click.Context, tenant_name: str, customer: str) -> None:
    """TENANT's alerts by id."""
    from invoicing.insight import list_alerts

    engine, tenant_id = _tenant(ctx, tenant_name)
    rows = [
        [str(a.id), a.customer, a.kind, a.meter or a.unit, format(a.threshold, "f"), _when(a.created_at)]
        for a in list_alerts(engine, tenant_id, customer)
    ]
    _grid(f"{tenant_name} alerts", ["id", "customer", "kind", "meter/unit", "threshold", "created"], rows)


@alert.command("delete")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("alert_id", type=int)
@click.pass_context
def alert_delete(ctx: click.Context, tenant_name: str, alert_id: int) -> None:
    """Remove ALERT_ID (and its record of crossings)."""
    from invoicing.insight import delete_alert

    engine, tenant_id = _tenant(ctx, tenant_name)
    delete_alert(engine, tenant_id, alert_id)
    click.echo(f"deleted alert {alert_id}")


@alert.command("check")
@click.argument("tenant_name", metavar="TENANT", required=False)
@click.option("--at", "at_text", default=None, help="Evaluate as of this ISO 8601 instant [default: now].")
@click.pass_context
def alert_check(ctx: click.Context, tenant_name: str | None, at_text: str | None) -> None:
    """Evaluate every alert (of TENANT, or all) once and print what fired; each fires once per crossing."""
    from invoicing.insight import evaluate_alerts
    from tally.billing_command import _at
    from tally.cli import _engine

    at = _at(at_text)
    if tenant_name is None:
        engine, tenant_id = _engine(ctx), None
    else:
        engine, tid = _tenant(ctx, tenant_name)
        tenant_id = tid
    fired = evaluate_alerts(engine, at, tenant_id)
    for c in fired:
        a = c.alert
        click.echo(f"alert {a.id} fired: {a.customer} {a.kind} {c.value} vs {a.threshold} (event {c.sequence})")
    click.echo(f"{len(fired)} alert(s) fired")


COMMANDS = (events, webhook, alert)

__all__ = ["COMMANDS"]
