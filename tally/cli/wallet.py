"""CLI commands for the ledger (registered by tally.cli): wallet, grant, transfer, convert, balance.

Amounts are typed as a decimal and a unit (`12.50 USD`, `1000 pts`), never floats; tenants by name.
`tally.cli` is imported inside each command (it imports this module).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from invoicing.ledger import Ledger


def _ledger(ctx: click.Context, tenant_name: str) -> Ledger:
    from invoicing.ledger import Ledger
    from metering.tenant import get_tenant
    from tally.cli import _engine

    engine = _engine(ctx)
    return Ledger(engine, get_tenant(engine, tenant_name).id)


def _when(text: str | None, flag: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.UsageError(f"{flag} {text!r} is not ISO 8601; write e.g. 2026-11-01T00:00:00Z") from None
    if moment.tzinfo is None:
        raise click.UsageError(f"{flag} {text!r} has no offset; add Z or +01:00")
    return moment


def _id(given: str | None) -> str:
    return given or uuid.uuid4().hex


@click.group("wallet")
def wallet() -> None:
    """A customer's wallets: list, show, top up."""


@wallet.command("list")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("customer")
@click.pass_context
def wallet_list(ctx: click.Context, tenant_name: str, customer: str) -> None:
    """Every account of CUSTOMER (wallets and grants) with balances."""
    from tally.cli import _table

    led = _ledger(ctx, tenant_name)
    rows = [
        [str(a.id), a.kind, a.peer, led.format(a.balance, a.unit), led.format(a.available, a.unit)]
        for a in led.accounts(customer)
    ]
    _table(f"{customer} wallets", ["account", "kind", "grant", "balance", "available"], rows)


@wallet.command("show")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("customer")
@click.pass_context
def wallet_show(ctx: click.Context, tenant_name: str, customer: str) -> None:
    """Totals per unit over all of CUSTOMER's accounts."""
    from tally.cli import _table

    led = _ledger(ctx, tenant_name)
    rows = [
        [t.unit, led.format(t.balance, t.unit), led.format(t.available, t.unit), str(t.accounts)]
        for t in led.customer_totals(customer)
    ]
    _table(f"{customer} totals", ["unit", "balance", "available", "accounts"], rows)


@wallet.command("topup")
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
    led = _ledger(ctx, tenant_name)
    res = led.top_up(_id(top_up_id), customer, led.amount(amount, unit), unit)
    click.echo(f"{res.result.value}: {res.id}")


@click.group("grant")
def grant() -> None:
    """Credit grants: create, list, expire."""


@grant.command("create")
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

    led = _ledger(ctx, tenant_name)
    eff, exp = _when(effective, "--effective"), _when(expires, "--expires")
    info = led.grant(
        Grant(
            _id(grant_id), customer, led.amount(amount, unit), unit, "promotional" if promotional else "paid",
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
    from tally.cli import _table

    led = _ledger(ctx, tenant_name)
    rows = [
        [
            g.grant.id, g.grant.customer, g.grant.kind, str(g.grant.priority),
            led.format(g.grant.amount, g.grant.unit), led.format(g.remaining, g.grant.unit),
            "never" if g.grant.expires_at_us is None else from_us(g.grant.expires_at_us).isoformat(),
            ", ".join(g.grant.applies_to or ("any",)),
        ]
        for g in led.grants(customer)
    ]  # fmt: skip
    _table("grants", ["grant", "customer", "kind", "priority", "amount", "remaining", "expires", "applies to"], rows)


@grant.command("expire")
@click.argument("tenant_name", metavar="TENANT")
@click.option("--now", default=None, help="ISO 8601; default now.")
@click.pass_context
def grant_expire(ctx: click.Context, tenant_name: str, now: str | None) -> None:
    """Move the remainder of every expired grant to the expiry account (safe to repeat)."""
    led = _ledger(ctx, tenant_name)
    moved = led.expire_grants(_when(now, "--now"))
    click.echo(f"expired {len(moved)} grant(s)")


@click.group("transfer")
def transfer() -> None:
    """Transfers between accounts: create, pending, post, void, list."""


def _create(ctx: click.Context, tenant_name: str, tid: str | None, debit: int | None, credit: int | None,
            amount: str | None, unit: str | None, code: str, flags: int, pending_id: str | None = None,
            timeout: int = 0) -> None:  # fmt: skip
    from invoicing.ledger import Transfer, TransferFlags

    led = _ledger(ctx, tenant_name)
    scaled = None
    if amount is not None:
        if unit is None:
            raise click.UsageError("give the amount with its unit, e.g. 12.50 USD")
        scaled = led.amount(amount, unit)
    res = led.transfer(Transfer(_id(tid), debit, credit, scaled, code, "", TransferFlags(flags), pending_id, timeout))
    click.echo(f"{res.result.value}: {res.id}")


@transfer.command("create")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("debit", type=int)
@click.argument("credit", type=int)
@click.argument("amount")
@click.argument("unit")
@click.option("--id", "tid", default=None, help="Idempotency id. Default: random.")
@click.option("--code", default="transfer", show_default=True)
@click.pass_context
def transfer_create(ctx: click.Context, tenant_name: str, debit: int, credit: int, amount: str, unit: str,
                    tid: str | None, code: str) -> None:  # fmt: skip
    """Move AMOUNT UNIT from account DEBIT to account CREDIT."""
    _create(ctx, tenant_name, tid, debit, credit, amount, unit, code, 0)


@transfer.command("pending")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("debit", type=int)
@click.argument("credit", type=int)
@click.argument("amount")
@click.argument("unit")
@click.option("--id", "tid", default=None)
@click.option("--code", default="hold", show_default=True)
@click.option("--timeout", type=int, default=0, help="Seconds until the reservation lapses (0 = never).")
@click.pass_context
def transfer_pending(ctx: click.Context, tenant_name: str, debit: int, credit: int, amount: str, unit: str,
                     tid: str | None, code: str, timeout: int) -> None:  # fmt: skip
    """Reserve AMOUNT UNIT (post or void it later)."""
    _create(ctx, tenant_name, tid, debit, credit, amount, unit, code, 2, timeout=timeout)


@transfer.command("post")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("pending_id")
@click.argument("amount", required=False)
@click.argument("unit", required=False)
@click.option("--id", "tid", default=None)
@click.pass_context
def transfer_post(ctx: click.Context, tenant_name: str, pending_id: str, amount: str | None, unit: str | None,
                  tid: str | None) -> None:  # fmt: skip
    """Post PENDING_ID in full, or only AMOUNT UNIT of it (the rest is released)."""
    _create(ctx, tenant_name, tid, None, None, amount, unit, "", 4, pending_id)


@transfer.command("void")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("pending_id")
@click.option("--id", "tid", default=None)
@click.pass_context
def transfer_void(ctx: click.Context, tenant_name: str, pending_id: str, tid: str | None) -> None:
    """Release the reservation PENDING_ID."""
    _create(ctx, tenant_name, tid, None, None, None, None, "", 8, pending_id)


@transfer.command("list")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("account", type=int)
@click.option("--limit", type=int, default=50, show_default=True)
@click.pass_context
def transfer_list(ctx: click.Context, tenant_name: str, account: int, limit: int) -> None:
    """History of ACCOUNT with running (posted) balance."""
    from invoicing.ledger.unit import from_us
    from tally.cli import _table

    led = _ledger(ctx, tenant_name)
    unit = led.account(account).unit
    rows = [
        [str(h.transfer.seq), h.transfer.id, from_us(h.transfer.ts_us).isoformat(), h.transfer.code,
         h.transfer.flags.name or "", led.format(h.change, unit), led.format(h.running_balance, unit)]
        for h in led.history(account, limit)
    ]  # fmt: skip
    _table(f"account {account}", ["seq", "id", "time", "code", "flags", "change", "balance"], rows)


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
    led = _ledger(ctx, tenant_name)
    conv = led.convert(_id(conv_id), customer, led.amount(amount, from_unit), from_unit, to_unit)
    click.echo(
        f"{'converted' if conv.created else 'exists'}: {led.format(conv.debited, from_unit)} -> "
        f"{led.format(conv.credited, to_unit)} at {conv.rate.rate}"
    )


@click.command("balance")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("target")
@click.option("--as-of", default=None, help="ISO 8601: the posted balance at that time.")
@click.pass_context
def balance(ctx: click.Context, tenant_name: str, target: str, as_of: str | None) -> None:
    """Balance of an account (TARGET = its id) or of a customer (TARGET = customer id)."""
    from tally.cli import _table

    led = _ledger(ctx, tenant_name)
    moment = _when(as_of, "--as-of")
    if target.isdigit():
        b = led.balance(int(target), moment)
        unit = b.account.unit
        _table(
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
    _table(f"{target}" + (f" as of {as_of}" if as_of else ""), ["unit", "balance", "available"], rows)


COMMANDS: list[click.Command] = [wallet, grant, transfer, convert, balance]
