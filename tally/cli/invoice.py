"""`tally invoice`: billing runs and invoices (list, show, finalize, pay, void, correct, preview, export, tax)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tally.cli._common import err_console, fail, instant_or_now, open_tenant, print_grid, utc_minute

#: invoicing.documents.STATUSES, spelled out so that `--help` does not import the billing domain (a test
#: keeps the two equal).
STATUSES = ("draft", "finalized", "partially_paid", "paid", "void", "uncollectible", "closed")

if TYPE_CHECKING:
    from sqlalchemy import Engine


def _money(minor: int, currency: str) -> str:
    from rating.unit import currency as unit

    return f"{Decimal(minor).scaleb(-unit(currency).scale)} {currency}"


def _invoice_table(inv: Any) -> None:
    print_grid(
        f"{inv.label} ({inv.kind}, {inv.status}) {utc_minute(inv.period_start)} – {utc_minute(inv.period_end)}",
        ["#", "kind", "charge", "group", "quantity", "unit price", "amount"],
        [
            [str(ln.position), ln.kind, ln.charge_code, ln.group_key, str(ln.quantity), ln.unit_price or "",
             _money(ln.amount, inv.currency)]
            for ln in inv.lines
        ],
    )  # fmt: skip
    click.echo(
        f"subtotal {_money(inv.subtotal, inv.currency)}  tax {_money(inv.tax, inv.currency)}  "
        f"credits {_money(inv.credits_applied, inv.currency)}  total {_money(inv.total, inv.currency)}"
    )


@click.group()
def invoice() -> None:
    """Run billing cycles and manage invoices: list, show, finalize, pay, void, correct, preview, export."""


@invoice.command("run")
@click.argument("tenant_name", metavar="TENANT")
@click.option("--as-of", "as_of", default=None, help="Bill everything due up to this instant [default: now].")
@click.option("--batch-size", default=200, show_default=True, help="Invoices written per transaction.")
@click.pass_context
def invoice_run(ctx: click.Context, tenant_name: str, as_of: str | None, batch_size: int) -> None:
    """Write draft invoices for everything due as of --as-of. Safe to re-run and to run in parallel.

    \b
    Example:
      tally invoice run acme --as-of 2026-02-01T00:00Z
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from invoicing.documents import run_cycle

    engine, tenant_id = open_tenant(ctx, tenant_name)
    at = instant_or_now(as_of, "--as-of")
    with Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task("invoicing", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        summary = run_cycle(engine, tenant_id, at, progress, batch_size=batch_size)
    rows = [["invoices written", str(summary.created)], ["adjustments", str(summary.adjustments)],
            ["documents due", str(summary.due)], ["errors", str(summary.failed)]]  # fmt: skip
    for ccy in sorted(summary.totals):
        rows.append([f"total {ccy}", _money(summary.totals[ccy], ccy)])
        rows.append([f"credits applied {ccy}", _money(summary.credits.get(ccy, 0), ccy)])
    print_grid(f"invoice run {summary.run_id} as of {utc_minute(summary.as_of)}", ["", "value"], rows)
    for error in summary.errors[:20]:
        click.echo(f"error: {error}", err=True)
    if summary.failed:
        raise click.ClickException(f"{summary.failed} item(s) failed; fix them and run again (done items are kept)")


def _external_ids(engine: Engine, tenant_id: int, ids: set[int]) -> dict[int, str]:
    """Customers' external ids (what users know them by) for internal ids, in one query."""
    from sqlalchemy import select

    from invoicing.tables import customers

    c = customers.c
    with engine.connect() as conn:
        rows = conn.execute(select(c.id, c.external_id).where(c.tenant_id == tenant_id, c.id.in_(ids or {0})))
        return {int(r.id): str(r.external_id) for r in rows}


@invoice.command("list")
@click.argument("tenant_name", metavar="TENANT")
@click.option("--customer", default=None, help="Only this customer's (external id).")
@click.option("--status", default=None, type=click.Choice(STATUSES), help="Only invoices in this status.")
@click.option("--after", "after_id", default=0, show_default=True, help="Start after this invoice id.")
@click.option("--limit", default=100, show_default=True)
@click.pass_context
def invoice_list(
    ctx: click.Context, tenant_name: str, customer: str | None, status: str | None, after_id: int, limit: int
) -> None:
    """List invoices by id.

    \b
    Example:
      tally invoice list acme --customer cus_42 --status draft
    """
    from invoicing.documents import list_invoices

    engine, tenant_id = open_tenant(ctx, tenant_name)
    found = list_invoices(engine, tenant_id, customer=customer, status=status, after_id=after_id, limit=limit)
    external = _external_ids(engine, tenant_id, {i.customer_id for i in found})
    print_grid(
        f"invoices of {tenant_name}",
        ["id", "number", "kind", "status", "customer", "period", "timing", "total"],
        [
            [str(i.id), str(i.number or ""), i.kind, i.status, external.get(i.customer_id, str(i.customer_id)),
             f"{utc_minute(i.period_start)} – {utc_minute(i.period_end)}", i.timing or "", _money(i.total, i.currency)]
            for i in found
        ],
    )  # fmt: skip


def _invoice_id_command(name: str, help_text: str) -> Callable[[Callable[..., None]], click.Command]:
    def decorate(fn: Callable[..., None]) -> click.Command:
        wrapped = click.argument("tenant_name", metavar="TENANT")(
            click.argument("invoice_id", type=int)(click.pass_context(fn))
        )
        return invoice.command(name, help=help_text)(wrapped)

    return decorate


@_invoice_id_command("show", "Show invoice INVOICE_ID with its lines.\n\n\b\nExample:\n  tally invoice show acme 12")
def invoice_show(ctx: click.Context, tenant_name: str, invoice_id: int) -> None:
    from invoicing.documents import get_invoice

    engine, tenant_id = open_tenant(ctx, tenant_name)
    _invoice_table(get_invoice(engine, tenant_id, invoice_id))


@_invoice_id_command("finalize", "Finalize draft INVOICE_ID: it takes the next number and never changes again.")
def invoice_finalize(ctx: click.Context, tenant_name: str, invoice_id: int) -> None:
    from invoicing.documents import finalize_invoice

    engine, tenant_id = open_tenant(ctx, tenant_name)
    inv = finalize_invoice(engine, tenant_id, invoice_id, instant_or_now(None))
    click.echo(f"invoice {inv.id} finalized as {inv.label}, total {_money(inv.total, inv.currency)}")


# --- payments ---------------------------------------------------------------------------------------------
#: Payment methods as the help lists them (invoicing.documents.PAYMENT_METHODS decides; a test keeps them equal).
PAYMENT_METHODS_HELP = "bank_transfer, card, direct_debit, check, cash or other"


def _minor(text: str, flag: str, currency: str) -> int:
    """An amount typed in `currency` as minor units: exact (rating.fixedpoint), positive, at most its places."""
    from rating.errors import RatingError
    from rating.fixedpoint import parse_decimal, parse_scaled
    from rating.unit import currency as unit

    scale = unit(currency).scale
    try:
        if parse_decimal(text, flag) <= 0:
            fail(f"{flag} {text}: a payment is a positive amount, e.g. {flag} 12.50")
        return parse_scaled(text, scale, flag)
    except RatingError:
        step = "whole numbers" if scale == 0 else f"in steps of {Decimal(1).scaleb(-scale)}"
        fail(f"{flag} {text!r} is not an amount in {currency}: write a plain decimal, {currency} amounts are {step}")


def _paid_at(text: str | None) -> datetime:
    """--date: a day (YYYY-MM-DD, midnight UTC) or an ISO 8601 instant with its offset; now when not given."""
    if text is not None and len(text) == 10:
        try:
            return datetime.fromisoformat(text).replace(tzinfo=UTC)
        except ValueError:
            fail(f"--date {text!r} is not a date; write e.g. 2026-02-03 or 2026-02-03T14:30Z")
    return instant_or_now(text, "--date")


@invoice.command("pay")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("invoice_id", metavar="INVOICE", type=int)
@click.option(
    "--amount", default=None, metavar="DECIMAL",
    help="Amount received, in the invoice's currency (e.g. 12.50 for USD; no more places than the currency "
    "has). Less than is due leaves the invoice partially paid; more pays it and puts the excess in the "
    "customer's cash wallet, which their next invoice draws. [default: everything still due]",
)  # fmt: skip
@click.option(
    "--date", "date_text", default=None, metavar="DATE",
    help="When the money was received: a day (2026-02-03, midnight UTC) or an instant (2026-02-03T14:30Z). "
    "At most a day ahead. [default: now]",
)  # fmt: skip
@click.option("--method", default="bank_transfer", show_default=True, help=f"How it was paid: {PAYMENT_METHODS_HELP}.")
@click.option(
    "--reference", default="", metavar="TEXT",
    help="The payer's reference (bank statement text, cheque number), kept on the payment; at most 200 characters.",
)  # fmt: skip
@click.option(
    "--key", default=None, metavar="TEXT",
    help="Idempotency key (at most 100 characters): paying again with the same key records nothing twice. "
    "[default: derived from invoice, amount, date and reference, so give --date or --key to make a re-run safe]",
)  # fmt: skip
@click.pass_context
def invoice_pay(
    ctx: click.Context, tenant_name: str, invoice_id: int, amount: str | None, date_text: str | None, method: str,
    reference: str, key: str | None,
) -> None:  # fmt: skip
    """Record a payment received for open invoice INVOICE (finalized or partially paid).

    The ledger books cash in against the customer's receivable for what was due, and any excess into the
    customer's cash wallet. `tally invoice payments TENANT INVOICE` lists what was recorded.

    \b
    Examples:
      tally invoice pay acme 12                                  # everything still due, today
      tally invoice pay acme 12 --amount 12.50 --date 2026-02-03 --reference "SEPA 4471"
    """
    from invoicing.documents import OPEN, get_invoice, record_payment

    engine, tenant_id = open_tenant(ctx, tenant_name)
    paid_at = _paid_at(date_text)
    inv = get_invoice(engine, tenant_id, invoice_id)
    if amount is not None:
        minor = _minor(amount, "--amount", inv.currency)
    elif inv.status in OPEN:
        minor = inv.amount_due
    else:
        fail(f"invoice {invoice_id} is {inv.status}: nothing is due; payments are recorded on open invoices")
    p = record_payment(engine, tenant_id, invoice_id, minor, paid_at, method=method, reference=reference, key=key)
    after = get_invoice(engine, tenant_id, invoice_id)
    if not p.created:
        click.echo(
            f"payment {p.id} (key {p.key!r}) was already recorded: {_money(p.amount, p.currency)}; nothing moved"
        )
        return
    state = "paid in full" if after.status == "paid" else f"{_money(after.amount_due, after.currency)} still due"
    click.echo(f"payment {p.id}: {_money(p.amount, p.currency)} to {after.label}, now {after.status} ({state})")
    if p.amount > p.applied:
        click.echo(
            f"{_money(p.amount - p.applied, p.currency)} overpaid went to {after.customer_external_id}'s cash wallet"
        )


@_invoice_id_command(
    "payments",
    "Payments recorded for INVOICE_ID, oldest first, with what each paid down and what went to the wallet."
    "\n\n\b\nExample:\n  tally invoice payments acme 12",
)
def invoice_payments(ctx: click.Context, tenant_name: str, invoice_id: int) -> None:
    from invoicing.documents import get_invoice, list_payments

    engine, tenant_id = open_tenant(ctx, tenant_name)
    inv = get_invoice(engine, tenant_id, invoice_id)
    found = list_payments(engine, tenant_id, invoice_id)
    ccy = inv.currency
    if not found:
        click.echo(
            f"no payments recorded for {inv.label} ({inv.status}, {_money(inv.amount_due, ccy)} due); "
            f"record one with `tally invoice pay {tenant_name} {invoice_id}`"
        )
        return
    print_grid(
        f"payments of {inv.label} ({inv.status}): total {_money(inv.total, ccy)}, paid {_money(inv.amount_paid, ccy)}, "
        f"due {_money(inv.amount_due, ccy)}",
        ["id", "received", "amount", "applied", "to wallet", "method", "reference"],
        [
            [str(p.id), utc_minute(p.paid_at), _money(p.amount, ccy), _money(p.applied, ccy),
             _money(p.amount - p.applied, ccy), p.method, p.reference]
            for p in found
        ],
        keep=("id", "amount", "applied", "to wallet"),
    )  # fmt: skip


@invoice.command("uncollectible")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("invoice_id", metavar="INVOICE", type=int)
@click.option("--reason", default="", help='Why it is written off (e.g. "customer insolvent"), kept on the invoice.')
@click.pass_context
def invoice_uncollectible(ctx: click.Context, tenant_name: str, invoice_id: int, reason: str) -> None:
    """Give up collecting open invoice INVOICE: what is still due is written off to bad debt.

    Payments already recorded stay; the invoice leaves the customer's receivable.

    \b
    Example:
      tally invoice uncollectible acme 12 --reason "customer insolvent"
    """
    from invoicing.documents import get_invoice, mark_uncollectible

    engine, tenant_id = open_tenant(ctx, tenant_name)
    due = get_invoice(engine, tenant_id, invoice_id).amount_due
    inv = mark_uncollectible(engine, tenant_id, invoice_id, instant_or_now(None), reason)
    click.echo(f"invoice {inv.id} ({inv.label}) is uncollectible: {_money(due, inv.currency)} written off to bad debt")


@invoice.command("void")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("invoice_id", type=int)
@click.option("--reason", default="", help="Why, kept on the invoice.")
@click.option(
    "--reissue", is_flag=True,
    help="Bill its items again: the next `tally invoice run` puts what this invoice billed on a new invoice. "
    "Without it they stay billed by the void invoice.",
)  # fmt: skip
@click.pass_context
def invoice_void(ctx: click.Context, tenant_name: str, invoice_id: int, reason: str, reissue: bool) -> None:
    """Void draft or unpaid finalized INVOICE_ID (it keeps its number; what it drew from wallets and grants is
    given back). A re-run bills its items again only with --reissue."""
    from invoicing.documents import void_invoice

    engine, tenant_id = open_tenant(ctx, tenant_name)
    inv = void_invoice(engine, tenant_id, invoice_id, instant_or_now(None), reason, reissue=reissue)
    again = "; the next invoice run bills its items again" if reissue else ""
    click.echo(f"invoice {inv.id} ({inv.label}) is void{again}")


@invoice.command("correct")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("invoice_id", type=int)
@click.option("--at", "at_text", default=None, help="History and usage as known at this instant [default: now].")
@click.pass_context
def invoice_correct(ctx: click.Context, tenant_name: str, invoice_id: int, at_text: str | None) -> None:
    """Recompute INVOICE_ID and write the difference as a linked credit note or adjustment."""
    from invoicing.documents import correct_invoice

    engine, tenant_id = open_tenant(ctx, tenant_name)
    inv = correct_invoice(engine, tenant_id, invoice_id, instant_or_now(at_text))
    if inv is None:
        click.echo(f"invoice {invoice_id} is still right; nothing written")
        return
    _invoice_table(inv)


@invoice.command("preview")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("customer")
@click.option("--at", "at_text", default=None, help="Usage up to this instant [default: now].")
@click.pass_context
def invoice_preview(ctx: click.Context, tenant_name: str, customer: str, at_text: str | None) -> None:
    """Upcoming invoices of CUSTOMER: what is due by the end of the current period, nothing written.

    \b
    Example:
      tally invoice preview acme cus_42
    """
    from invoicing.documents import preview_invoice

    engine, tenant_id = open_tenant(ctx, tenant_name)
    found = preview_invoice(engine, tenant_id, customer, instant_or_now(at_text))
    if not found:
        click.echo(f"nothing upcoming for {customer}")
    for inv in found:
        _invoice_table(inv)


@invoice.command("export")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("invoice_id", type=int)
@click.option("--format", "fmt", type=click.Choice(["json", "csv", "pdf"]), default="json", show_default=True)
@click.option(
    "--output", type=click.Path(dir_okay=False, writable=True, path_type=Path), default=None,
    help="Write to this file instead of stdout (required for pdf).",
)  # fmt: skip
@click.pass_context
def invoice_export(ctx: click.Context, tenant_name: str, invoice_id: int, fmt: str, output: Path | None) -> None:
    """Export INVOICE_ID as JSON or CSV (stdout or --output) or as a PDF document (--output).

    \b
    Example:
      tally invoice export acme 12 --format csv > inv-12.csv
      tally invoice export acme 12 --format pdf --output INV-000012.pdf
    """
    from invoicing.documents import export_invoice, invoice_document

    engine, tenant_id = open_tenant(ctx, tenant_name)
    if fmt == "pdf" and output is None:
        raise click.ClickException("--format pdf writes a file: add --output FILE, e.g. --output invoice.pdf")
    doc = invoice_document(engine, tenant_id, invoice_id)
    if fmt == "pdf":
        from invoicing.documents import render_invoice_pdf

        assert output is not None
        data = render_invoice_pdf(doc.invoice, doc.customer, doc.profile, doc.context)  # nothing written on error
        output.write_bytes(data)
        click.echo(f"wrote {output} ({len(data):,} bytes)")
        return
    text = export_invoice(doc.invoice, fmt, customer=doc.customer, profile=doc.profile, plan_code=doc.context.plan_code)
    if output is None:
        click.echo(text, nl=False)
        return
    output.write_text(text)
    click.echo(f"wrote {output}")


@invoice.command("tax")
@click.argument("tenant_name", metavar="TENANT")
@click.argument("region")
@click.argument("rate")
@click.option("--inclusive", is_flag=True, help="Prices include the tax (default: tax is added).")
@click.pass_context
def invoice_tax(ctx: click.Context, tenant_name: str, region: str, rate: str, inclusive: bool) -> None:
    """Set the tax RATE (percent) for customers whose tax region is REGION.

    \b
    Example:
      tally invoice tax acme FR 20
    """
    from invoicing.documents import set_tax_rate

    engine, tenant_id = open_tenant(ctx, tenant_name)
    t = set_tax_rate(engine, tenant_id, region, rate, inclusive, instant_or_now(None))
    click.echo(f"tax {t.region}: {t.rate}% {'inclusive' if t.inclusive else 'exclusive'}")
