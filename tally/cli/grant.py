"""`tally grant`: credit grants (create, list, expire).

Amounts are typed as a decimal and a unit (`12.50 USD`, `1000 pts`), never floats; tenants by name.
"""

from __future__ import annotations

import click

from tally.cli._common import SignedArguments, new_id, open_ledger, optional_instant, print_table


@click.group("grant")
def grant() -> None:
    """Credit grants: create, list, expire."""


@grant.command("create", cls=SignedArguments)
@click.argument("tenant_name", metavar="TENANT")
@click.argument("customer")
@click.argument("amount")
@click.argument("unit")
@click.option("--id", "grant_id", default=None, help="Grant id (idempotency). Default: random.")
@click.option("--promotional", is_flag=True, help="Promotional instead of paid.")
@click.option("--priority", type=int, default=100, show_default=True, help="Lower is drawn first.")
@click.option("--effective", default=None, help="ISO 8601; default now.")
@click.option("--expires", default=None, help="ISO 8601; default never.")
@click.option("--applies-to", multiple=True, help="Charge/meter code it may pay for (repeat); default any.")
@click.pass_context
def grant_create(
    ctx: click.Context, tenant_name: str, customer: str, amount: str, unit: str, grant_id: str | None,
    promotional: bool, priority: int, effective: str | None, expires: str | None, applies_to: tuple[str, ...],
) -> None:  # fmt: skip
    """Grant AMOUNT UNIT of credit to CUSTOMER."""
    from invoicing.ledger import Grant
    from invoicing.ledger.unit import to_us

    led = open_ledger(ctx, tenant_name)
    eff, exp = optional_instant(effective, "--effective"), optional_instant(expires, "--expires")
    info = led.grant(
        Grant(
            new_id(grant_id), customer, led.amount(amount, unit), unit, "promotional" if promotional else "paid",
            priority, None if eff is None else to_us(eff), None if exp is None else to_us(exp),
            applies_to or None,
        )
    )  # fmt: skip
    click.echo(f"{'created' if info.created else 'exists'}: grant {info.grant.id} (account {info.account_id})")


@grant.command("list")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("customer", required=False)
@click.pass_context
def grant_list(ctx: click.Context, tenant_name: str, customer: str | None) -> None:
    """Grants with what remains of them, in draw order per customer."""
    from invoicing.ledger.unit import from_us

    led = open_ledger(ctx, tenant_name)
    rows = [
        [
            g.grant.id, g.grant.customer, g.grant.kind, str(g.grant.priority),
            led.format(g.grant.amount, g.grant.unit), led.format(g.remaining, g.grant.unit),
            "never" if g.grant.expires_at_us is None else from_us(g.grant.expires_at_us).isoformat(),
            ", ".join(g.grant.applies_to or ("any",)),
        ]
        for g in led.grants(customer)
    ]  # fmt: skip
    print_table(
        "grants", ["grant", "customer", "kind", "priority", "amount", "remaining", "expires", "applies to"], rows
    )


@grant.command("expire")
@click.argument("tenant_name", metavar="TENANT")
@click.option("--now", default=None, help="ISO 8601; default now.")
@click.pass_context
def grant_expire(ctx: click.Context, tenant_name: str, now: str | None) -> None:
    """Move the remainder of every expired grant to the expiry account (safe to repeat)."""
    led = open_ledger(ctx, tenant_name)
    moved = led.expire_grants(optional_instant(now, "--now"))
    click.echo(f"expired {len(moved)} grant(s)")
