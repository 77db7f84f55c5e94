"""`tally wallet`: a customer's wallets (list, show, top up).

Amounts are typed as a decimal and a unit (`12.50 USD`, `1000 pts`), never floats; tenants by name.
"""

from __future__ import annotations

import click

from tally.cli._common import SignedArguments, new_id, open_ledger, print_table


@click.group("wallet")
def wallet() -> None:
    """A customer's wallets: list, show, top up."""


@wallet.command("list")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("customer")
@click.pass_context
def wallet_list(ctx: click.Context, tenant_name: str, customer: str) -> None:
    """Every account of CUSTOMER (wallets and grants) with balances."""
    led = open_ledger(ctx, tenant_name)
    rows = [
        [str(a.id), a.kind, a.peer, led.format(a.balance, a.unit), led.format(a.available, a.unit)]
        for a in led.accounts(customer)
    ]
    print_table(f"{customer} wallets", ["account", "kind", "grant", "balance", "available"], rows)


@wallet.command("show")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("customer")
@click.pass_context
def wallet_show(ctx: click.Context, tenant_name: str, customer: str) -> None:
    """Totals per unit over all of CUSTOMER's accounts."""
    led = open_ledger(ctx, tenant_name)
    rows = [
        [t.unit, led.format(t.balance, t.unit), led.format(t.available, t.unit), str(t.accounts)]
        for t in led.customer_totals(customer)
    ]
    print_table(f"{customer} totals", ["unit", "balance", "available", "accounts"], rows)


@wallet.command("topup", cls=SignedArguments)
@click.argument("tenant_name", metavar="TENANT")
@click.argument("customer")
@click.argument("amount")
@click.argument("unit")
@click.option("--id", "top_up_id", default=None, help="Idempotency id (resending it is safe). Default: random.")
@click.pass_context
def wallet_topup(
    ctx: click.Context, tenant_name: str, customer: str, amount: str, unit: str, top_up_id: str | None
) -> None:
    """Cash AMOUNT UNIT into CUSTOMER's wallet, e.g. `tally wallet topup acme cus_1 12.50 USD`."""
    led = open_ledger(ctx, tenant_name)
    res = led.top_up(new_id(top_up_id), customer, led.amount(amount, unit), unit)
    click.echo(f"{res.result.value}: {res.id}")
