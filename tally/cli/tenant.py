"""`tally tenant`: create and list tenants."""

from __future__ import annotations

import click

from tally.cli._common import open_engine, print_table


@click.group("tenant")
def tenant() -> None:
    """Create and list tenants."""


@tenant.command("create")
@click.argument("name")
@click.pass_context
def tenant_create(ctx: click.Context, name: str) -> None:
    """Create tenant NAME (and the database, when it does not exist yet)."""
    from metering.tenant import create_tenant

    t = create_tenant(open_engine(ctx, create=True), name)
    click.echo(f"created tenant {t.name} (id {t.id}); next: tally apikey create {t.name}")


@tenant.command("list")
@click.pass_context
def tenant_list(ctx: click.Context) -> None:
    """List tenants."""
    from metering.tenant import list_tenants

    rows = [[str(t.id), t.name, t.created_at.isoformat(timespec="seconds")] for t in list_tenants(open_engine(ctx))]
    print_table("tenants", ["id", "name", "created"], rows)
