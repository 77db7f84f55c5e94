"""`tally webhook`: webhook endpoints (create, list, disable, deliveries, replay, deliver).

They work on the database directly, so they need no server: `tally webhook deliver` runs one pass of
the server's dispatcher (safe beside a running server: attempts are claimed exactly once).
"""

from __future__ import annotations

from datetime import UTC, datetime

import click

from tally.cli._common import event_types, open_engine, open_tenant, print_grid, settings_of, utc_second


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

    patterns = event_types(types)
    engine, tenant_id = open_tenant(ctx, tenant_name)
    block = settings_of(ctx).platform.webhook_block_private
    ep = create_endpoint(engine, tenant_id, url, patterns, after, datetime.now(UTC), block_private=block)
    click.echo(f"created webhook endpoint {ep.id} -> {ep.url} (events after {ep.delivered_sequence})")
    click.echo(f"signing secret (shown once): {ep.secret}")


@webhook.command("list")
@click.argument("tenant_name", metavar="TENANT")
@click.pass_context
def webhook_list(ctx: click.Context, tenant_name: str) -> None:
    """TENANT's endpoints (secrets are never shown again)."""
    from invoicing.events import list_endpoints

    engine, tenant_id = open_tenant(ctx, tenant_name)
    rows = [
        [str(e.id), e.url, ", ".join(e.types) or "all", "yes" if e.enabled else "no", str(e.delivered_sequence),
         utc_second(e.created_at)]
        for e in list_endpoints(engine, tenant_id)
    ]  # fmt: skip
    print_grid(f"{tenant_name} webhook endpoints", ["id", "url", "types", "enabled", "delivered", "created"], rows)


@webhook.command("disable")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("endpoint_id", type=int)
@click.pass_context
def webhook_disable(ctx: click.Context, tenant_name: str, endpoint_id: int) -> None:
    """Send nothing more to ENDPOINT_ID."""
    from invoicing.events import disable_endpoint

    engine, tenant_id = open_tenant(ctx, tenant_name)
    ep = disable_endpoint(engine, tenant_id, endpoint_id)
    click.echo(f"disabled webhook endpoint {ep.id} ({ep.url}); delivered up to {ep.delivered_sequence}")


@webhook.command("deliveries")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("endpoint_id", type=int)
@click.option(
    "--limit", type=click.IntRange(1, 1000), default=50, show_default=True, help="Deliveries shown at most."
)
@click.pass_context
def webhook_deliveries(ctx: click.Context, tenant_name: str, endpoint_id: int, limit: int) -> None:
    """ENDPOINT_ID's delivery attempts, newest first (pending = queued or in flight)."""
    from invoicing.events import list_deliveries

    engine, tenant_id = open_tenant(ctx, tenant_name)
    page, _ = list_deliveries(engine, tenant_id, endpoint_id, limit=limit)
    rows = [
        [str(d.id), str(d.sequence), d.type, str(d.attempt), d.status + (" (replay)" if d.replay else ""),
         str(d.http_status or ""), d.error, utc_second(d.attempted_at), utc_second(d.next_attempt_at)]
        for d in page
    ]  # fmt: skip
    columns = ["id", "sequence", "type", "attempt", "status", "http", "error", "attempted", "next attempt"]
    print_grid(f"webhook endpoint {endpoint_id} deliveries", columns, rows, keep=("status",))


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

    engine, tenant_id = open_tenant(ctx, tenant_name)
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

    if tenant_name is None:
        engine, tenant_id = open_engine(ctx), None
    else:
        engine, tid = open_tenant(ctx, tenant_name)
        tenant_id = tid
    s = deliver_once(engine, policy=retry_policy(settings_of(ctx).platform), tenant_id=tenant_id)
    click.echo(f"{s.attempts} attempt(s): {s.succeeded} succeeded, {s.failed} failed (will retry), {s.dead} dead")
