"""`tally convert`: convert a customer's credit from one unit to another at the rate in force.

Amounts are typed as a decimal and a unit (`12.50 USD`, `1000 pts`), never floats; tenants by name.
"""

from __future__ import annotations

import click

from tally.cli._common import new_id, open_ledger


@click.command("convert")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("customer")
@click.argument("amount")
@click.argument("from_unit")
@click.argument("to_unit")
@click.option("--id", "conv_id", default=None)
@click.pass_context
def convert(ctx: click.Context, tenant_name: str, customer: str, amount: str, from_unit: str, to_unit: str,
            conv_id: str | None) -> None:  # fmt: skip
    """Convert AMOUNT FROM_UNIT of CUSTOMER's credit to TO_UNIT at the rate in force (exact; see docs/ledger.md)."""
    led = open_ledger(ctx, tenant_name)
    conv = led.convert(new_id(conv_id), customer, led.amount(amount, from_unit), from_unit, to_unit)
    click.echo(
        f"{'converted' if conv.created else 'exists'}: {led.format(conv.debited, from_unit)} -> "
        f"{led.format(conv.credited, to_unit)} at {conv.rate.rate}"
    )
