"""`tally alert`: usage, spend, balance and (tenant-wide) leakage threshold alerts (create, list, delete, check).

They work on the database directly, so they need no server: `tally alert check` runs one pass of the
server's alert worker (safe beside a running server: crossings are recorded exactly once).
"""

from __future__ import annotations

from datetime import UTC, datetime

import click

from tally.cli._common import SignedArguments, instant_or_now, open_engine, open_tenant, print_grid, utc_second

#: How a tenant-wide (leakage) alert's customer is shown.
TENANT_WIDE = "(tenant)"


@click.group("alert")
def alert() -> None:
    """Usage, spend, balance and leakage threshold alerts: create, list, delete, check."""


@alert.command("create", cls=SignedArguments)
@click.argument("tenant_name", metavar="TENANT")
@click.argument("customer")
@click.argument("kind", type=click.Choice(["usage", "spend", "balance", "leakage"]))
@click.argument("threshold")
@click.option("--meter", default="", help="usage: the meter code.")
@click.option("--unit", default="", help="balance: the currency or points unit.")
@click.pass_context
def alert_create(
    ctx: click.Context, tenant_name: str, customer: str, kind: str, threshold: str, meter: str, unit: str
) -> None:
    """Alert when CUSTOMER's usage or spend this period reaches THRESHOLD, or a balance falls below it;
    a leakage alert (CUSTOMER `-`: the whole tenant) fires when the month's unbilled events reach THRESHOLD.

    \b
    Examples:
      tally alert create acme cus_42 usage 100000 --meter api_calls
      tally alert create acme cus_42 spend 500
      tally alert create acme cus_42 balance 10 --unit USD
      tally alert create acme - leakage 100
    """
    from invoicing.insight import create_alert

    engine, tenant_id = open_tenant(ctx, tenant_name)
    who = "" if customer == "-" else customer
    a = create_alert(engine, tenant_id, who, kind, threshold, datetime.now(UTC), meter=meter, unit=unit)
    what = {"usage": f"{a.meter} usage", "spend": "spend", "balance": f"{a.unit} balance",
            "leakage": "unbilled events this month"}[a.kind]  # fmt: skip
    shown = a.customer or TENANT_WIDE
    click.echo(f"created alert {a.id}: {shown} {what} {'below' if a.kind == 'balance' else 'at'} {a.threshold}")


@alert.command("list")
@click.argument("tenant_name", metavar="TENANT")
@click.option("--customer", default="", help="Only this customer's alerts.")
@click.pass_context
def alert_list(ctx: click.Context, tenant_name: str, customer: str) -> None:
    """TENANT's alerts by id."""
    from invoicing.insight import list_alerts

    engine, tenant_id = open_tenant(ctx, tenant_name)
    rows = [
        [str(a.id), a.customer or TENANT_WIDE, a.kind, a.meter or a.unit, f"{a.threshold:f}", utc_second(a.created_at)]
        for a in list_alerts(engine, tenant_id, customer)
    ]
    print_grid(f"{tenant_name} alerts", ["id", "customer", "kind", "meter/unit", "threshold", "created"], rows)


@alert.command("delete")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("alert_id", type=int)
@click.pass_context
def alert_delete(ctx: click.Context, tenant_name: str, alert_id: int) -> None:
    """Remove ALERT_ID (and its record of crossings)."""
    from invoicing.insight import delete_alert

    engine, tenant_id = open_tenant(ctx, tenant_name)
    delete_alert(engine, tenant_id, alert_id)
    click.echo(f"deleted alert {alert_id}")


@alert.command("check")
@click.argument("tenant_name", metavar="TENANT", required=False)
@click.option("--at", "at_text", default=None, help="Evaluate as of this ISO 8601 instant [default: now].")
@click.pass_context
def alert_check(ctx: click.Context, tenant_name: str | None, at_text: str | None) -> None:
    """Evaluate every alert (of TENANT, or all) once and print what fired; each fires once per crossing."""
    from invoicing.insight import evaluate_alerts

    at = instant_or_now(at_text)
    if tenant_name is None:
        engine, tenant_id = open_engine(ctx), None
    else:
        engine, tid = open_tenant(ctx, tenant_name)
        tenant_id = tid
    fired = evaluate_alerts(engine, at, tenant_id)
    for c in fired:
        a = c.alert
        who = a.customer or TENANT_WIDE
        click.echo(f"alert {a.id} fired: {who} {a.kind} {c.value} vs {a.threshold} (event {c.sequence})")
    click.echo(f"{len(fired)} alert(s) fired")
