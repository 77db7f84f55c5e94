"""`tally balance`: the balance of a ledger account or of a customer, now or as of an instant."""

from __future__ import annotations

import click

from tally.cli._common import open_ledger, optional_instant, print_table


@click.command("balance")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("target")
@click.option("--as-of", default=None, help="ISO 8601: the posted balance at that time.")
@click.pass_context
def balance(ctx: click.Context, tenant_name: str, target: str, as_of: str | None) -> None:
    """Balance of an account (TARGET = its id) or of a customer (TARGET = customer id)."""
    led = open_ledger(ctx, tenant_name)
    moment = optional_instant(as_of, "--as-of")
    if target.isdigit():
        b = led.balance(int(target), moment)
        unit = b.account.unit
        print_table(
            f"account {target} ({b.account.label})" + (f" as of {as_of}" if as_of else ""),
            ["balance", "debits posted", "credits posted", "debits pending", "credits pending"],
            [[led.format(b.balance, unit), led.format(b.debits_posted, unit), led.format(b.credits_posted, unit),
              led.format(b.debits_pending, unit), led.format(b.credits_pending, unit)]],
        )  # fmt: skip
        return
    if moment is None:
        rows = [
            [t.unit, led.format(t.balance, t.unit), led.format(t.available, t.unit)]
            for t in led.customer_totals(target)
        ]
    else:
        totals: dict[str, int] = {}
        for a in led.accounts(target):
            totals[a.unit] = totals.get(a.unit, 0) + led.balance(a.id, moment).balance
        rows = [[u, led.format(v, u), ""] for u, v in sorted(totals.items())]
    if not rows:
        raise click.ClickException(f"customer {target!r} has no accounts; top one up with `tally wallet topup`")
    print_table(f"{target}" + (f" as of {as_of}" if as_of else ""), ["unit", "balance", "available"], rows)
