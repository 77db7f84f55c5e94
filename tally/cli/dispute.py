"""`tally dispute`: the queue of invoice lines customers flagged, and finance's answers.

A dispute is opened by the customer in the portal (or `tally dispute open`), on one line of an issued invoice;
`resolve` answers it with a credit note for an amount of that line (`--credit 12.50`, before tax, issued at
once) or a rejection (`--reject "why"`). Both answers are final and shown to the customer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from tally.cli._common import fail, money_minor, open_tenant, print_grid, utc_minute

if TYPE_CHECKING:
    from invoicing.documents import Dispute

STATUSES = ("open", "credited", "rejected")


@click.group("dispute")
def dispute() -> None:
    """Disputed invoice lines: list the queue, open one, resolve with a credit note or a rejection."""


def _outcome(d: Dispute) -> str:
    if d.status == "credited" and d.credit_amount is not None:
        return f"credited {money_minor(d.credit_amount, d.currency)} ({d.credit_note_label})"
    if d.status == "rejected":
        return f"rejected: {d.note}"
    return "open"


@dispute.command("list")
@click.argument("tenant_name", metavar="TENANT")
@click.option("--status", type=click.Choice(STATUSES), default=None, help="Only disputes in this status.")
@click.option("--customer", default=None, help="Only this customer's (external id).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of a table.")
@click.pass_context
def dispute_list(ctx: click.Context, tenant_name: str, status: str | None, customer: str | None, as_json: bool) -> None:
    """TENANT's disputes, oldest first (the order to work the queue in).

    \b
    Examples:
      tally dispute list acme --status open
      tally dispute list acme --customer cus_42 --json
    """
    import json

    from invoicing.documents import dispute_page

    engine, tenant_id = open_tenant(ctx, tenant_name)
    found: list[Dispute] = []
    after = 0
    while True:
        page = dispute_page(engine, tenant_id, status=status, customer=customer, after_id=after, limit=500)
        found += page.disputes
        if page.next_after_id is None:
            break
        after = page.next_after_id
    if as_json:
        for d in found:
            click.echo(json.dumps(d.to_json(), sort_keys=True))
        return
    if not found:
        click.echo(f"no {status + ' ' if status else ''}disputes for {tenant_name}")
        return
    rows = [
        [str(d.id), d.customer, d.invoice_label, str(d.line_position), d.charge, money_minor(d.line_amount, d.currency),
         utc_minute(d.opened_at), d.reason, _outcome(d)]
        for d in found
    ]  # fmt: skip
    print_grid(
        f"{tenant_name} disputes", ["id", "customer", "invoice", "line", "charge", "amount", "opened", "reason",
                                     "outcome"], rows, keep=("id", "invoice"),
    )  # fmt: skip


@dispute.command("open")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("invoice")
@click.argument("line", type=click.IntRange(min=1))
@click.option("--reason", required=True, help="What is wrong with the line, in the customer's words (1-1000 chars).")
@click.pass_context
def dispute_open(ctx: click.Context, tenant_name: str, invoice: str, line: int, reason: str) -> None:
    """Flag LINE (its position, 1 = first) of INVOICE (an id or a number such as INV-000042).

    \b
    Example:
      tally dispute open acme INV-000042 2 --reason "We cancelled on the 3rd"
    """
    from datetime import UTC, datetime

    from invoicing.documents import open_dispute, resolve_invoice

    engine, tenant_id = open_tenant(ctx, tenant_name)
    d = open_dispute(engine, tenant_id, resolve_invoice(engine, tenant_id, invoice), line, reason, datetime.now(UTC),
                     actor="cli")  # fmt: skip
    click.echo(f"dispute {d.id} opened on line {d.line_position} of {d.invoice_label} "
               f"({d.charge}, {money_minor(d.line_amount, d.currency)})")  # fmt: skip


def _credit(text: str, currency: str) -> int:
    """--credit in `currency` as minor units: exact, positive, at most the currency's places (never rounded)."""
    from decimal import Decimal

    from rating.errors import RatingError
    from rating.fixedpoint import parse_decimal, parse_scaled
    from rating.unit import currency as unit

    scale = unit(currency).scale
    try:
        if parse_decimal(text, "--credit") <= 0:
            fail(f"--credit {text}: credit a positive amount, e.g. --credit 12.50")
        return parse_scaled(text, scale, "--credit")
    except RatingError:
        step = "whole numbers" if scale == 0 else f"in steps of {Decimal(1).scaleb(-scale)}"
        fail(f"--credit {text!r} is not an amount in {currency}: write a plain decimal, {currency} amounts are {step}")


@dispute.command("resolve")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("dispute_id", metavar="ID", type=click.IntRange(min=1))
@click.option(
    "--credit",
    default=None,
    metavar="AMOUNT",
    help="Credit this amount of the line (before tax, in the invoice's currency): a credit note is issued.",
)
@click.option("--reject", default=None, metavar="NOTE", help="Reject the dispute, telling the customer why.")
@click.option("--note", default="", help="With --credit: a word to the customer (optional).")
@click.pass_context
def dispute_resolve(
    ctx: click.Context, tenant_name: str, dispute_id: int, credit: str | None, reject: str | None, note: str
) -> None:  # fmt: skip
    """Answer dispute ID with a credit note (--credit AMOUNT) or a rejection (--reject NOTE).

    Repeating the same answer changes nothing; a resolved dispute cannot be answered otherwise.

    \b
    Examples:
      tally dispute resolve acme 7 --credit 12.50 --note "Sorry for the double charge"
      tally dispute resolve acme 8 --reject "The calls are in your request log"
    """
    from datetime import UTC, datetime

    from invoicing.documents import get_dispute, resolve_dispute

    if (credit is None) == (reject is None):
        raise click.UsageError("give --credit AMOUNT or --reject NOTE, exactly one of them")
    if reject is not None and note:
        raise click.UsageError("--note goes with --credit; a rejection's note is --reject's value")
    engine, tenant_id = open_tenant(ctx, tenant_name)
    at = datetime.now(UTC)
    if credit is not None:
        found = get_dispute(engine, tenant_id, dispute_id)
        d = resolve_dispute(engine, tenant_id, dispute_id, "credit", at, amount=_credit(credit, found.currency),
                            note=note, actor="cli")  # fmt: skip
    else:
        d = resolve_dispute(engine, tenant_id, dispute_id, "reject", at, note=reject or "", actor="cli")
    if not d.changed:
        click.echo(f"dispute {d.id} was already {_outcome(d)}; nothing changed")
    elif d.status == "credited":
        click.echo(f"dispute {d.id} credited: {d.credit_note_label} issued for "
                   f"{money_minor(d.credit_amount or 0, d.currency)} before tax on line {d.line_position} of "
                   f"{d.invoice_label}")  # fmt: skip
    else:
        click.echo(f"dispute {d.id} rejected")
