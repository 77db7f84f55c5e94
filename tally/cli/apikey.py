"""`tally apikey`: a tenant's API keys (create, list, revoke)."""

from __future__ import annotations

import click

from tally.cli._common import open_engine, print_table


@click.group("apikey")
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
    from tally.cli._common import err_console

    engine = open_engine(ctx)
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

    engine = open_engine(ctx)
    t = get_tenant(engine, tenant_name)
    rows = [
        [str(k.id), k.prefix + "…", k.scopes, k.created_at.isoformat(timespec="seconds"),
         k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else "active"]
        for k in list_api_keys(engine, t.id)
    ]  # fmt: skip
    print_table(f"API keys of {t.name}", ["id", "prefix", "scopes", "created", "status"], rows)


@apikey.command("revoke")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("key_id", type=int)
@click.pass_context
def apikey_revoke(ctx: click.Context, tenant_name: str, key_id: int) -> None:
    """Revoke key KEY_ID of TENANT; running servers refuse it within 5 seconds."""
    from metering.tenant import get_tenant, revoke_api_key

    engine = open_engine(ctx)
    t = get_tenant(engine, tenant_name)
    revoke_api_key(engine, t.id, key_id)
    click.echo(f"revoked key {key_id} of tenant {t.name}")
