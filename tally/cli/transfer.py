"""`tally transfer`: transfers between ledger accounts (create, pending, post, void, list).

Amounts are typed as a decimal and a unit (`12.50 USD`, `1000 pts`), never floats; tenants by name.
"""

from __future__ import annotations

import click

from tally.cli._common import SignedArguments, new_id, open_ledger, print_table


@click.group("transfer")
def transfer() -> None:
    """Transfers between accounts: create, pending, post, void, list."""


def _create(ctx: click.Context, tenant_name: str, tid: str | None, debit: int | None, credit: int | None,
            amount: str | None, unit: str | None, code: str, flags: int, pending_id: str | None = None,
            timeout: int = 0) -> None:  # fmt: skip
    from invoicing.ledger import Transfer, TransferFlags

    led = open_ledger(ctx, tenant_name)
    scaled = None
    if amount is not None:
        if unit is None:
            raise click.UsageError("give the amount with its unit, e.g. 12.50 USD")
        if amount.startswith("-"):
            raise click.UsageError(
                f"AMOUNT {amount}: a transfer moves a positive amount from DEBIT to CREDIT; "
                "to move money the other way, swap DEBIT and CREDIT"
            )
        scaled = led.amount(amount, unit)
    res = led.transfer(
        Transfer(new_id(tid), debit, credit, scaled, code, "", TransferFlags(flags), pending_id, timeout)
    )
    click.echo(f"{res.result.value}: {res.id}")


@transfer.command("create", cls=SignedArguments)
@click.argument("tenant_name", metavar="TENANT")
@click.argument("debit", type=int)
@click.argument("credit", type=int)
@click.argument("amount")
@click.argument("unit")
@click.option("--id", "tid", default=None, help="Idempotency id. Default: random.")
@click.option("--code", default="transfer", show_default=True, help="What the transfer is for (kept with it).")
@click.pass_context
def transfer_create(ctx: click.Context, tenant_name: str, debit: int, credit: int, amount: str, unit: str,
                    tid: str | None, code: str) -> None:  # fmt: skip
    """Move AMOUNT UNIT from account DEBIT to account CREDIT."""
    _create(ctx, tenant_name, tid, debit, credit, amount, unit, code, 0)


@transfer.command("pending", cls=SignedArguments)
@click.argument("tenant_name", metavar="TENANT")
@click.argument("debit", type=int)
@click.argument("credit", type=int)
@click.argument("amount")
@click.argument("unit")
@click.option("--id", "tid", default=None, help="Idempotency id. Default: random.")
@click.option("--code", default="hold", show_default=True, help="What the reservation is for (kept with it).")
@click.option("--timeout", type=int, default=0, help="Seconds until the reservation lapses (0 = never).")
@click.pass_context
def transfer_pending(ctx: click.Context, tenant_name: str, debit: int, credit: int, amount: str, unit: str,
                     tid: str | None, code: str, timeout: int) -> None:  # fmt: skip
    """Reserve AMOUNT UNIT (post or void it later)."""
    _create(ctx, tenant_name, tid, debit, credit, amount, unit, code, 2, timeout=timeout)


@transfer.command("post", cls=SignedArguments)
@click.argument("tenant_name", metavar="TENANT")
@click.argument("pending_id")
@click.argument("amount", required=False)
@click.argument("unit", required=False)
@click.option("--id", "tid", default=None, help="Idempotency id. Default: random.")
@click.pass_context
def transfer_post(ctx: click.Context, tenant_name: str, pending_id: str, amount: str | None, unit: str | None,
                  tid: str | None) -> None:  # fmt: skip
    """Post PENDING_ID in full, or only AMOUNT UNIT of it (the rest is released)."""
    _create(ctx, tenant_name, tid, None, None, amount, unit, "", 4, pending_id)


@transfer.command("void")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("pending_id")
@click.option("--id", "tid", default=None, help="Idempotency id. Default: random.")
@click.pass_context
def transfer_void(ctx: click.Context, tenant_name: str, pending_id: str, tid: str | None) -> None:
    """Release the reservation PENDING_ID."""
    _create(ctx, tenant_name, tid, None, None, None, None, "", 8, pending_id)


@transfer.command("list")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("account", type=int)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="Newest transfers shown.")
@click.pass_context
def transfer_list(ctx: click.Context, tenant_name: str, account: int, limit: int) -> None:
    """History of ACCOUNT with running (posted) balance."""
    from invoicing.ledger.unit import from_us

    led = open_ledger(ctx, tenant_name)
    unit = led.account(account).unit
    rows = [
        [str(h.transfer.seq), h.transfer.id, from_us(h.transfer.ts_us).isoformat(), h.transfer.code,
         h.transfer.flags.name or "", led.format(h.change, unit), led.format(h.running_balance, unit)]
        for h in led.history(account, limit)
    ]  # fmt: skip
    print_table(f"account {account}", ["seq", "id", "time", "code", "flags", "change", "balance"], rows)
