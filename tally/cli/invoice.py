"""`tally invoice`: billing runs and invoices (list, show, finalize, pay, void, correct, preview, export, tax),
and the bulk actions over the invoices a filter matches (finalize-all, void-all, pay-all, export-all).

Every command that takes an INVOICE accepts its id (12) or its number as printed on it (INV-000012,
CN-000003): `invoicing.documents.resolve_invoice` reads both, for the API too.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tally.cli._common import (
    BILLING_WORDING,
    count,
    fail,
    instant_or_now,
    money_minor,
    open_tenant,
    parse_instant,
    print_grid,
    utc_minute,
)

#: invoicing.documents.STATUSES, spelled out so that `--help` does not import the billing domain (a test
#: keeps the two equal).
STATUSES = ("draft", "finalized", "partially_paid", "paid", "void", "uncollectible", "closed")
#: invoicing.documents.EXPORT_FORMATS, likewise.
EXPORT_FORMATS = ("pdf", "csv", "json")
INVOICE_HELP = "the invoice's id (12) or its number (INV-000012, CN-000003)"

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from invoicing.documents import BulkSummary, InvoiceFilter, Walk


def _check_reference(text: str) -> None:
    """A malformed INVOICE is refused before the database is opened (nothing is read or written)."""
    from invoicing.documents import parse_invoice_reference

    parse_invoice_reference(text)


def _open_invoice(ctx: click.Context, tenant_name: str, reference: str) -> tuple[Engine, int, int]:
    """The engine, the tenant's id and the id of the invoice REFERENCE names (an id or a number)."""
    from invoicing.documents import resolve_invoice

    _check_reference(reference)
    engine, tenant_id = open_tenant(ctx, tenant_name)
    return engine, tenant_id, resolve_invoice(engine, tenant_id, reference)


def _invoice_table(inv: Any) -> None:
    print_grid(
        f"{inv.label} ({inv.kind}, {inv.status}) {utc_minute(inv.period_start)} – {utc_minute(inv.period_end)}",
        ["#", "kind", "charge", "group", "quantity", "unit price", "amount"],
        [
            [str(ln.position), ln.kind, ln.charge_code, ln.group_key, str(ln.quantity), ln.unit_price or "",
             money_minor(ln.amount, inv.currency)]
            for ln in inv.lines
        ],
    )  # fmt: skip
    click.echo(
        f"subtotal {money_minor(inv.subtotal, inv.currency)}  tax {money_minor(inv.tax, inv.currency)}  "
        f"credits {money_minor(inv.credits_applied, inv.currency)}  total {money_minor(inv.total, inv.currency)}"
    )


@click.group()
def invoice() -> None:
    """Run billing cycles and manage invoices: list, show, finalize, pay, void, correct, preview, export.

    INVOICE is an invoice's id (12) or its number (INV-000012, CN-000003).

    \b
    Bulk actions over every invoice the filters of `list` match:
      tally invoice finalize-all acme --to 2026-02-01 --dry-run
      tally invoice void-all acme --customer cus_42 --status draft --reason dup
      tally invoice pay-all acme --plan pro --from 2026-01-01 --to 2026-02-01
      tally invoice export-all acme --from 2026-01-01 --output jan/

    Each acts only on invoices in a status it applies to and counts the others as skipped, so running it
    again is safe; --dry-run shows what it would do.
    """


# --- filters ------------------------------------------------------------------------------------------------
def _day_or_instant(text: str, flag: str) -> datetime:
    """A day (YYYY-MM-DD, midnight UTC) or an ISO 8601 instant with its offset."""
    if len(text) == 10:
        try:
            return datetime.fromisoformat(text).replace(tzinfo=UTC)
        except ValueError:
            fail(f"{flag} {text!r} is not a date; write e.g. 2026-02-03 or 2026-02-03T14:30Z")
    return parse_instant(text, flag, wording=BILLING_WORDING)


def filter_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The options that pick invoices, shared by `list` and the bulk actions (all must hold)."""
    options = [
        click.option("--customer", default=None, metavar="EXTERNAL_ID", help="Only this customer's invoices."),
        click.option("--status", default=None, type=click.Choice(STATUSES), help="Only invoices in this status."),
        click.option(
            "--plan",
            default=None,
            metavar="CODE",
            help="Only documents billing this plan (any of its versions; a grouped document may bill several).",
        ),
        click.option(
            "--from",
            "start",
            default=None,
            metavar="DATE",
            help="Only invoices whose billing date (or issue date, with --issued) is on or after this day "
            "(2026-01-01, midnight UTC) or instant (2026-01-01T00:00+01:00).",
        ),
        click.option(
            "--to",
            "end",
            default=None,
            metavar="DATE",
            help="Only invoices whose billing date (or issue date, with --issued) is before this day or instant "
            "(the end is excluded: --from 2026-01-01 --to 2026-02-01 is January).",
        ),
        click.option(
            "--issued",
            is_flag=True,
            help="Apply --from/--to to the day an invoice was issued (finalized) instead of its billing date; "
            "drafts have no issue date, so they never match.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _filter(
    customer: str | None, status: str | None, plan: str | None, start: str | None, end: str | None, issued: bool
) -> InvoiceFilter:
    from invoicing.documents import InvoiceFilter

    return InvoiceFilter(
        customer=customer, status=status, plan=plan,
        start=None if start is None else _day_or_instant(start, "--from"),
        end=None if end is None else _day_or_instant(end, "--to"),
        date="issued" if issued else "due",
    )  # fmt: skip


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
    from tally.cli._common import err_console

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
        rows.append([f"total {ccy}", money_minor(summary.totals[ccy], ccy)])
        rows.append([f"credits applied {ccy}", money_minor(summary.credits.get(ccy, 0), ccy)])
    print_grid(f"invoice run {summary.run_id} as of {utc_minute(summary.as_of)}", ["", "value"], rows)
    for error in summary.errors[:20]:
        click.echo(f"error: {error}", err=True)
    if summary.failed:
        raise click.ClickException(f"{summary.failed} item(s) failed; fix them and run again (done items are kept)")


def _billed(moment: datetime) -> str:
    """The billing date as --from/--to take it: the day, and the time only when it is not midnight UTC."""
    at = moment.astimezone(UTC)
    return at.strftime("%Y-%m-%d") if at.time() == datetime.min.time() else utc_minute(at)


@invoice.command("list")
@click.argument("tenant_name", metavar="TENANT")
@filter_options
@click.option(
    "--after", "after_id", default=0, show_default=True, type=click.IntRange(min=0), metavar="ID",
    help="Start after this invoice id (the `more: --after N` printed under a full page).",
)  # fmt: skip
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000), help="Invoices a page.")
@click.pass_context
def invoice_list(
    ctx: click.Context, tenant_name: str, customer: str | None, status: str | None, plan: str | None,
    start: str | None, end: str | None, issued: bool, after_id: int, limit: int,
) -> None:  # fmt: skip
    """List TENANT's invoices by id, a page at a time; `more: --after N` under the table means more match.

    `billed` is the billing date --from/--to filter on; `tally invoice show` has the periods and lines.

    \b
    Examples:
      tally invoice list acme --customer cus_42 --status draft
      tally invoice list acme --plan pro --from 2026-01-01 --to 2026-02-01
      tally invoice list acme --issued --from 2026-02-01 --limit 50 --after 120
    """
    from invoicing.documents import invoice_page

    where = _filter(customer, status, plan, start, end, issued)
    engine, tenant_id = open_tenant(ctx, tenant_name)
    page = invoice_page(engine, tenant_id, where, after_id=after_id, limit=limit)
    print_grid(
        f"invoices of {tenant_name}" + ("" if where.is_empty else f": {where.describe()}"),
        ["id", "number", "kind", "status", "customer", "billed", "total"],
        [
            [str(i.id), i.label if i.number is not None else "", i.kind, i.status, i.customer_external_id,
             _billed(i.due_at), money_minor(i.total, i.currency)]
            for i in page.invoices
        ],
        keep=("id", "number", "kind", "status", "billed"),
    )  # fmt: skip
    if page.next_after_id is not None:
        click.echo(f"more: --after {page.next_after_id}")
    elif not page.invoices:
        click.echo("no invoices match" + ("" if where.is_empty else f" ({where.describe()})"))


def invoice_argument(fn: Callable[..., Any]) -> Callable[..., Any]:
    """TENANT INVOICE: the two arguments of every command about one invoice (its id or its number)."""
    return click.argument("tenant_name", metavar="TENANT")(click.argument("reference", metavar="INVOICE")(fn))


def _invoice_command(name: str, help_text: str) -> Callable[[Callable[..., None]], click.Command]:
    def decorate(fn: Callable[..., None]) -> click.Command:
        return invoice.command(name, help=help_text)(invoice_argument(click.pass_context(fn)))

    return decorate


@_invoice_command(
    "show",
    f"Show INVOICE ({INVOICE_HELP}) with its lines.\n\n\b\nExamples:\n  tally invoice show acme 12\n"
    "  tally invoice show acme INV-000012",
)
def invoice_show(ctx: click.Context, tenant_name: str, reference: str) -> None:
    from invoicing.documents import get_invoice

    engine, tenant_id, invoice_id = _open_invoice(ctx, tenant_name, reference)
    _invoice_table(get_invoice(engine, tenant_id, invoice_id))


@_invoice_command(
    "finalize",
    "Finalize draft INVOICE (its id or number): it takes the next number and never changes again. Many at once: "
    "`tally invoice finalize-all`.",
)
def invoice_finalize(ctx: click.Context, tenant_name: str, reference: str) -> None:
    from invoicing.documents import finalize_invoice

    engine, tenant_id, invoice_id = _open_invoice(ctx, tenant_name, reference)
    inv = finalize_invoice(engine, tenant_id, invoice_id, instant_or_now(None))
    click.echo(f"invoice {inv.id} finalized as {inv.label}, total {money_minor(inv.total, inv.currency)}")


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
    return datetime.now(UTC) if text is None else _day_or_instant(text, "--date")


@invoice.command("pay")
@invoice_argument
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
    "--reference", "payer_reference", default="", metavar="TEXT",
    help="The payer's reference (bank statement text, cheque number), kept on the payment; at most 200 characters.",
)  # fmt: skip
@click.option(
    "--key", default=None, metavar="TEXT",
    help="Idempotency key (at most 100 characters): paying again with the same key records nothing twice. "
    "[default: derived from invoice, amount, date and reference, so give --date or --key to make a re-run safe]",
)  # fmt: skip
@click.pass_context
def invoice_pay(
    ctx: click.Context, tenant_name: str, reference: str, amount: str | None, date_text: str | None, method: str,
    payer_reference: str, key: str | None,
) -> None:  # fmt: skip
    """Record a payment received for open invoice INVOICE (finalized or partially paid; its id or number).

    The ledger books cash in against the customer's receivable for what was due, and any excess into the
    customer's cash wallet. `tally invoice payments TENANT INVOICE` lists what was recorded.

    \b
    Examples:
      tally invoice pay acme 12             # everything still due, today
      tally invoice pay acme INV-000012 --amount 12.50 --date 2026-02-03 \\
          --reference "SEPA 4471"
      tally invoice pay-all acme --customer cus_42   # every open invoice
    """
    from invoicing.documents import OPEN, get_invoice, record_payment

    paid_at = _paid_at(date_text)
    engine, tenant_id, invoice_id = _open_invoice(ctx, tenant_name, reference)
    inv = get_invoice(engine, tenant_id, invoice_id)
    if amount is not None:
        minor = _minor(amount, "--amount", inv.currency)
    elif inv.status in OPEN:
        minor = inv.amount_due
    else:
        fail(f"invoice {invoice_id} is {inv.status}: nothing is due; payments are recorded on open invoices")
    p = record_payment(engine, tenant_id, invoice_id, minor, paid_at, method=method, reference=payer_reference, key=key)
    after = get_invoice(engine, tenant_id, invoice_id)
    if not p.created:
        click.echo(
            f"payment {p.id} (key {p.key!r}) was already recorded: {money_minor(p.amount, p.currency)}; nothing moved"
        )
        return
    state = "paid in full" if after.status == "paid" else f"{money_minor(after.amount_due, after.currency)} still due"
    click.echo(f"payment {p.id}: {money_minor(p.amount, p.currency)} to {after.label}, now {after.status} ({state})")
    if p.amount > p.applied:
        click.echo(
            f"{money_minor(p.amount - p.applied, p.currency)} overpaid went to "
            f"{after.customer_external_id}'s cash wallet"
        )


@_invoice_command(
    "payments",
    "Payments recorded for INVOICE (its id or number), oldest first, with what each paid down and what went "
    "to the wallet.\n\n\b\nExample:\n  tally invoice payments acme 12",
)
def invoice_payments(ctx: click.Context, tenant_name: str, reference: str) -> None:
    from invoicing.documents import get_invoice, list_payments

    engine, tenant_id, invoice_id = _open_invoice(ctx, tenant_name, reference)
    inv = get_invoice(engine, tenant_id, invoice_id)
    found = list_payments(engine, tenant_id, invoice_id)
    ccy = inv.currency
    if not found:
        click.echo(
            f"no payments recorded for {inv.label} ({inv.status}, {money_minor(inv.amount_due, ccy)} due); "
            f"record one with `tally invoice pay {tenant_name} {invoice_id}`"
        )
        return
    print_grid(
        f"payments of {inv.label} ({inv.status}): total {money_minor(inv.total, ccy)}, "
        f"paid {money_minor(inv.amount_paid, ccy)}, "
        f"due {money_minor(inv.amount_due, ccy)}",
        ["id", "received", "amount", "applied", "to wallet", "method", "reference"],
        [
            [str(p.id), utc_minute(p.paid_at), money_minor(p.amount, ccy), money_minor(p.applied, ccy),
             money_minor(p.amount - p.applied, ccy), p.method, p.reference]
            for p in found
        ],
        keep=("id", "amount", "applied", "to wallet"),
    )  # fmt: skip


@invoice.command("uncollectible")
@invoice_argument
@click.option("--reason", default="", help='Why it is written off (e.g. "customer insolvent"), kept on the invoice.')
@click.pass_context
def invoice_uncollectible(ctx: click.Context, tenant_name: str, reference: str, reason: str) -> None:
    """Give up collecting open invoice INVOICE (its id or number): what is still due is written off to bad debt.

    Payments already recorded stay; the invoice leaves the customer's receivable.

    \b
    Example:
      tally invoice uncollectible acme 12 --reason "customer insolvent"
    """
    from invoicing.documents import get_invoice, mark_uncollectible

    engine, tenant_id, invoice_id = _open_invoice(ctx, tenant_name, reference)
    due = get_invoice(engine, tenant_id, invoice_id).amount_due
    inv = mark_uncollectible(engine, tenant_id, invoice_id, instant_or_now(None), reason)
    written_off = money_minor(due, inv.currency)
    click.echo(f"invoice {inv.id} ({inv.label}) is uncollectible: {written_off} written off to bad debt")


@invoice.command("void")
@invoice_argument
@click.option("--reason", default="", help="Why, kept on the invoice.")
@click.option(
    "--reissue", is_flag=True,
    help="Bill its items again: the next `tally invoice run` puts what this invoice billed on a new invoice. "
    "Without it they stay billed by the void invoice.",
)  # fmt: skip
@click.pass_context
def invoice_void(ctx: click.Context, tenant_name: str, reference: str, reason: str, reissue: bool) -> None:
    """Void draft or unpaid finalized INVOICE, its id or number (it keeps its number; what it drew from wallets
    and grants is given back). A re-run bills its items again only with --reissue. Many at once:
    `tally invoice void-all`."""
    from invoicing.documents import void_invoice

    engine, tenant_id, invoice_id = _open_invoice(ctx, tenant_name, reference)
    inv = void_invoice(engine, tenant_id, invoice_id, instant_or_now(None), reason, reissue=reissue)
    again = "; the next invoice run bills its items again" if reissue else ""
    click.echo(f"invoice {inv.id} ({inv.label}) is void{again}")


@invoice.command("correct")
@invoice_argument
@click.option("--at", "at_text", default=None, help="History and usage as known at this instant [default: now].")
@click.pass_context
def invoice_correct(ctx: click.Context, tenant_name: str, reference: str, at_text: str | None) -> None:
    """Recompute INVOICE (its id or number) and write the difference as a linked credit note or adjustment."""
    from invoicing.documents import correct_invoice

    at = instant_or_now(at_text)
    engine, tenant_id, invoice_id = _open_invoice(ctx, tenant_name, reference)
    inv = correct_invoice(engine, tenant_id, invoice_id, at)
    if inv is None:
        click.echo(f"invoice {reference} is still right; nothing written")
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
@invoice_argument
@click.option(
    "--format", "fmt", type=click.Choice(["json", "csv", "pdf"]), default="json", show_default=True,
    help="JSON and CSV carry what the API carries plus the parties; PDF is the document sent to the customer.",
)  # fmt: skip
@click.option(
    "--output", type=click.Path(dir_okay=False, writable=True, path_type=Path), default=None,
    help="Write to this file instead of stdout (required for pdf).",
)  # fmt: skip
@click.pass_context
def invoice_export(ctx: click.Context, tenant_name: str, reference: str, fmt: str, output: Path | None) -> None:
    """Export INVOICE (its id or number) as JSON or CSV (stdout or --output) or as a PDF document (--output).

    \b
    Examples:
      tally invoice export acme 12 --format csv > inv-12.csv
      tally invoice export acme INV-000012 --format pdf --output INV-000012.pdf
      tally invoice export-all acme --from 2026-01-01 --output jan/  # many
    """
    from invoicing.documents import export_invoice, invoice_document

    if fmt == "pdf" and output is None:
        raise click.ClickException("--format pdf writes a file: add --output FILE, e.g. --output invoice.pdf")
    engine, tenant_id, invoice_id = _open_invoice(ctx, tenant_name, reference)
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


# --- bulk actions -------------------------------------------------------------------------------------------
#: Each bulk action: (verb for the prompt, past tense for the summary).
_VERBS = {"finalize": ("finalize", "finalized"), "void": ("void", "voided"), "mark_paid": ("mark paid", "paid"),
          "export": ("export", "exported")}  # fmt: skip


def bulk_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """What every bulk action takes besides the filters: how far to go and whether to ask."""
    options = [
        click.option(
            "--limit",
            default=None,
            type=click.IntRange(1, 100_000),
            metavar="N",
            help="Look at no more than N matching invoices (then `more: --after ID` says where to go on) "
            "[default: all].",
        ),
        click.option(
            "--after",
            "after_id",
            default=0,
            type=click.IntRange(min=0),
            metavar="ID",
            help="Start after this invoice id.",
        ),
        click.option("--dry-run", is_flag=True, help="Count what would be done; change nothing."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _yes_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (scripts).")(fn)


def _summary(tenant_name: str, command: str, s: BulkSummary) -> None:
    """The summary table (stdout), then where to go on and the first failures (stderr)."""
    verb, past = _VERBS[s.action]
    rows = [[f"would {verb}" if s.dry_run else past, count(s.done)]]
    rows += [[f"skipped: {reason}", count(n)] for reason, n in sorted(s.skipped.items())]
    rows += [["failed", count(s.failed)], ["invoices examined", count(s.examined)]]
    title = f"{command} {tenant_name}: {s.filter.describe()} (applies to {', '.join(s.applies_to)})"
    print_grid(title, ["", "invoices"], rows)
    if s.next_after_id is not None:
        why = "the time budget" if s.stopped_by == "time" else "--limit"
        click.echo(f"more: --after {s.next_after_id} (stopped by {why}; the same command with it goes on)")
    for error in s.errors:
        click.echo(f"error: {error}", err=True)
    if s.failed:
        more = f" (the first {len(s.errors)} above)" if s.failed > len(s.errors) else ""
        fail(f"{s.failed} invoice(s) failed{more}; fix them and run the command again (what was done is kept)")


#: What each command runs: (engine, tenant id, walk) -> summary, with the filter and the instant bound.
BulkRun = Callable[["Engine", int, "Walk"], "BulkSummary"]


def _run_bulk(
    ctx: click.Context, tenant_name: str, command: str, action: str, where: InvoiceFilter, *, after_id: int,
    limit: int | None, dry_run: bool, yes: bool, run: BulkRun,
) -> BulkSummary:  # fmt: skip
    """Open the tenant, ask first (unless --yes or --dry-run: a preview counts what would change), then run
    with a progress bar on stderr and print the summary."""
    from dataclasses import replace

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from invoicing.documents import Walk
    from tally.cli._common import err_console

    walk = Walk(after_id=after_id, limit=limit, dry_run=dry_run)
    engine, tenant_id = open_tenant(ctx, tenant_name)
    if not dry_run and not yes:
        preview = run(engine, tenant_id, replace(walk, dry_run=True))
        if preview.done == 0:
            _summary(tenant_name, command, preview)
            click.echo(f"nothing to {_VERBS[action][0]}; nothing changed")
            return preview
        verb = _VERBS[action][0]
        click.confirm(
            f"{verb} {count(preview.done)} invoice(s) of {tenant_name} ({where.describe()})?", abort=True, err=True
        )
    with Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task(command, total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        summary = run(engine, tenant_id, replace(walk, progress=progress))
    _summary(tenant_name, command, summary)
    return summary


def _open_invoice_action(name: str, action: str, help_text: str) -> click.Command:
    """finalize-all and pay-all: the filters, the walk and --yes, nothing else."""

    @invoice.command(name, help=help_text)
    @click.argument("tenant_name", metavar="TENANT")
    @filter_options
    @bulk_options
    @_yes_option
    @click.pass_context
    def command(
        ctx: click.Context, tenant_name: str, customer: str | None, status: str | None, plan: str | None,
        start: str | None, end: str | None, issued: bool, limit: int | None, after_id: int, dry_run: bool,
        yes: bool,
    ) -> None:  # fmt: skip
        from invoicing.documents import bulk_finalize, bulk_mark_paid

        act = {"finalize": bulk_finalize, "mark_paid": bulk_mark_paid}[action]
        where = _filter(customer, status, plan, start, end, issued)
        at = instant_or_now(None)

        def run(engine: Engine, tenant_id: int, walk: Walk) -> BulkSummary:
            return act(engine, tenant_id, where, at, walk)

        _run_bulk(ctx, tenant_name, name, action, where, after_id=after_id, limit=limit, dry_run=dry_run, yes=yes,
                  run=run)  # fmt: skip

    return command


invoice_finalize_all = _open_invoice_action(
    "finalize-all",
    "finalize",
    """Finalize every draft the filters match, in id order: each takes the next number of its series.

    Invoices that are not drafts are skipped and counted (already finalized, void, closed), so running it
    again is safe. Asks before it changes anything unless --yes.

    \b
    Examples:
      tally invoice finalize-all acme --to 2026-02-01 --dry-run
      tally invoice finalize-all acme --customer cus_42 --yes
    """,
)

invoice_pay_all = _open_invoice_action(
    "pay-all",
    "mark_paid",
    """Mark every open invoice the filters match as paid: a payment of everything still due, dated now
    (method `other`), as `tally invoice pay TENANT INVOICE` without --amount records one.

    Drafts, paid, void and uncollectible invoices and credit notes are skipped and counted; an invoice is never
    paid twice, so running it again is safe. Asks before recording anything unless --yes.

    \b
    Example:
      tally invoice pay-all acme --customer cus_42 --to 2026-03-01
    """,
)


@invoice.command("void-all")
@click.argument("tenant_name", metavar="TENANT")
@filter_options
@click.option("--reason", required=True, help="Why they are voided, kept on every invoice voided (required).")
@click.option("--reissue", is_flag=True, help="Bill their items again: the next `tally invoice run` re-invoices them.")
@bulk_options
@_yes_option
@click.pass_context
def invoice_void_all(
    ctx: click.Context, tenant_name: str, customer: str | None, status: str | None, plan: str | None,
    start: str | None, end: str | None, issued: bool, reason: str, reissue: bool, limit: int | None, after_id: int,
    dry_run: bool, yes: bool,
) -> None:  # fmt: skip
    """Void every draft and unpaid finalized invoice the filters match (each keeps its number).

    At least one filter is required (--status draft voids every draft). Invoices with payments, finalized
    credit notes and void ones are skipped and counted. Asks before voiding anything unless --yes.

    \b
    Examples:
      tally invoice void-all acme --customer cus_42 --status draft \\
          --reason "duplicate run" --dry-run
      tally invoice void-all acme --plan legacy --from 2026-03-01 \\
          --reason "plan withdrawn" --reissue --yes
    """
    from invoicing.documents import bulk_void

    where = _filter(customer, status, plan, start, end, issued)
    if where.is_empty:
        fail("give at least one filter (--customer, --status, --plan, --from, --to): void-all never voids a "
             "whole tenant by default; --status draft voids every draft")  # fmt: skip
    if not reason.strip():
        fail('--reason is empty: say why these invoices are voided, e.g. --reason "duplicate run"')
    at = instant_or_now(None)

    def run(engine: Engine, tenant_id: int, walk: Walk) -> BulkSummary:
        return bulk_void(engine, tenant_id, where, at, reason, walk, reissue=reissue)

    _run_bulk(ctx, tenant_name, "void-all", "void", where, after_id=after_id, limit=limit, dry_run=dry_run, yes=yes,
              run=run)  # fmt: skip


@invoice.command("export-all")
@click.argument("tenant_name", metavar="TENANT")
@filter_options
@click.option(
    "--output", "folder", required=True, metavar="FOLDER",
    type=click.Path(file_okay=False, writable=True, path_type=Path),
    help="Folder to write into (created if missing); files are named INV-000012.pdf, CN-000003.csv, draft-7.json.",
)  # fmt: skip
@click.option(
    "--format", "formats", multiple=True, type=click.Choice(EXPORT_FORMATS), default=("pdf",), show_default=True,
    help="Document format; repeat for several (--format pdf --format csv).",
)  # fmt: skip
@bulk_options
@click.pass_context
def invoice_export_all(
    ctx: click.Context, tenant_name: str, customer: str | None, status: str | None, plan: str | None,
    start: str | None, end: str | None, issued: bool, folder: Path, formats: tuple[str, ...], limit: int | None,
    after_id: int, dry_run: bool,
) -> None:  # fmt: skip
    """Export every invoice the filters match into a folder, one file per invoice and format.

    Closed (zero-total, never issued) documents are skipped. A file that already holds the same document is
    left alone, so running it again writes only what changed.

    \b
    Examples:
      tally invoice export-all acme --from 2026-01-01 --to 2026-02-01 \\
          --output exports/2026-01
      tally invoice export-all acme --status paid --output paid \\
          --format csv --format json
    """
    from invoicing.documents import bulk_export

    where = _filter(customer, status, plan, start, end, issued)

    def run(engine: Engine, tenant_id: int, walk: Walk) -> BulkSummary:
        return bulk_export(engine, tenant_id, where, folder, formats, walk)

    summary = _run_bulk(ctx, tenant_name, "export-all", "export", where, after_id=after_id, limit=limit,
                        dry_run=dry_run, yes=True, run=run)  # fmt: skip
    if not dry_run:
        click.echo(f"wrote {count(len(summary.files))} file(s) to {folder}")
