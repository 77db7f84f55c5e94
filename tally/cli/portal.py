"""`tally portal`: signed links to the customer self-service portal, and revoking them (docs/portal.md)."""

from __future__ import annotations

import click

from tally.cli._common import open_tenant, utc_second


@click.group("portal")
def portal() -> None:
    """Customer portal links: make one for a customer, revoke them all."""


@portal.command("link")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("customer")
@click.option("--ttl", "ttl_s", type=click.IntRange(1, 7 * 24 * 3600), default=3600, show_default=True,
              help="Seconds the link stays valid (at most 604800, 7 days).")  # fmt: skip
@click.option("--return-url", default="", help="Where the portal's back link leads (an absolute http(s) URL).")
@click.option("--base-url", default="", help="The server's HTTP address as customers reach it, e.g. "
              "https://billing.example.com; prints a full URL instead of the path.")  # fmt: skip
@click.pass_context
def portal_link(
    ctx: click.Context, tenant_name: str, customer: str, ttl_s: int, return_url: str, base_url: str
) -> None:
    """A link opening CUSTOMER's portal (external id) until it expires. Send it to that customer only: whoever
    holds it sees their portal.

    \b
    Example:
      tally portal link acme cus_42 --ttl 86400 --base-url https://billing.example.com
    """
    from datetime import UTC, datetime

    from tally.console.portal._links import create_link

    engine, tenant_id = open_tenant(ctx, tenant_name)
    link = create_link(engine, tenant_id, customer, datetime.now(UTC), ttl_s=ttl_s, return_url=return_url)
    click.echo(base_url.rstrip("/") + link.path)
    click.echo(f"valid until {utc_second(link.expires_at)} for {link.customer}", err=True)


@portal.command("revoke")
@click.argument("tenant_name", metavar="TENANT")
@click.pass_context
def portal_revoke(ctx: click.Context, tenant_name: str) -> None:
    """Rotate TENANT's link signing key: every portal link and portal session made before stops working."""
    from datetime import UTC, datetime

    from invoicing.catalog import rotate_portal_secret

    engine, tenant_id = open_tenant(ctx, tenant_name)
    key = rotate_portal_secret(engine, tenant_id, datetime.now(UTC))
    click.echo(f"portal links of {tenant_name} revoked (signing key version {key.version})")
