"""`tally portfolio`: a tenant's customers per lifecycle stage, with recent revenue."""

from __future__ import annotations

import click

from tally.cli._common import count, instant_or_now, money, open_tenant, print_table


@click.command("portfolio")
@click.argument("tenant_name", metavar="TENANT")
@click.option("--at", "at_text", default=None, help="As of this ISO 8601 instant [default: now].")
@click.pass_context
def portfolio_command(ctx: click.Context, tenant_name: str, at_text: str | None) -> None:
    """Show TENANT's customers per lifecycle stage, with the revenue of the last 30 days at each
    (finalized or paid invoices) and a few customers of each stage.

    \b
    Example:
      tally portfolio acme
    """
    from invoicing.insight import portfolio

    engine, tenant_id = open_tenant(ctx, tenant_name)
    p = portfolio(engine, tenant_id, instant_or_now(at_text))
    rows = [
        [s.stage, count(s.customers), ", ".join(money(a.amount, a.unit) for a in s.revenue), ", ".join(s.sample)]
        for s in p.stages
    ]
    columns = ["stage", "customers", "revenue (30 days)", "for example"]
    print_table(f"portfolio: {count(p.customers)} customers", columns, rows)
