"""`tally convert`: convert a customer's credit from one unit to another at the rate in force.

Amounts are typed as a decimal and a unit (`12.50 USD`, `1000 pts`), never floats; tenants by name. Only an
amount that converts exactly moves (docs/ledger.md, "the remainder rule"), so the command always says what
stayed in the source wallet: nothing, or the remainder and why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from tally.cli._common import SignedArguments, new_id, open_ledger

if TYPE_CHECKING:
    from invoicing.ledger import Conversion, Ledger


@click.command("convert", cls=SignedArguments)
@click.argument("tenant_name", metavar="TENANT")
@click.argument("customer")
@click.argument("amount")
@click.argument("from_unit")
@click.argument("to_unit")
@click.option("--id", "conv_id", default=None, help="Idempotency id (resending it is safe). Default: random.")
@click.pass_context
def convert(ctx: click.Context, tenant_name: str, customer: str, amount: str, from_unit: str, to_unit: str,
            conv_id: str | None) -> None:  # fmt: skip
    """Convert AMOUNT FROM_UNIT of CUSTOMER's credit to TO_UNIT at the rate in force (exact; see docs/ledger.md).

    \b
    Before the first conversion, define the points unit and its rate:
      tally points unit define acme pts --scale 0
      tally points rate set acme USD pts 100 --from 2026-11-01T00:00Z
      tally convert acme cus_42 2.50 USD pts
    """
    led = open_ledger(ctx, tenant_name)
    conv = led.convert(new_id(conv_id), customer, led.amount(amount, from_unit), from_unit, to_unit)
    click.echo(conversion_text(led, conv))


def conversion_text(led: Ledger, conv: Conversion) -> str:
    """`converted 2.50 USD -> 250 pts at 100 pts per 1 USD; 0.00 USD stayed in the wallet`, and when only part
    of the amount converts exactly, how much stayed (or was taken beyond it, under an `up` rounding) and why."""
    from invoicing.ledger.conversion import factor

    source, target = led.unit(conv.from_unit), led.unit(conv.to_unit)
    currency, pts = (conv.from_unit, conv.to_unit) if source.kind == "currency" else (conv.to_unit, conv.from_unit)
    verb = "converted" if conv.created else "exists (already converted)"
    text = (
        f"{verb} {led.format(conv.debited, conv.from_unit)} -> {led.format(conv.credited, conv.to_unit)} "
        f"at {conv.rate.rate:f} {pts} per 1 {currency}"
    )
    left = conv.left_in_source
    if left == 0:
        return f"{text}; {led.format(0, conv.from_unit)} stayed in the wallet"
    step = led.format(factor(conv.rate, source, target).denominator, conv.from_unit)
    if left > 0:
        return (
            f"{text}; {led.format(left, conv.from_unit)} of the {led.format(conv.requested, conv.from_unit)} asked "
            f"stayed in the wallet: only multiples of {step} convert exactly at this rate"
        )
    return (
        f"{text}; {led.format(-left, conv.from_unit)} more than the {led.format(conv.requested, conv.from_unit)} "
        f"asked was taken: the rate rounds {conv.rate.rounding.value} to a multiple of {step}"
    )


__all__ = ["conversion_text", "convert"]
