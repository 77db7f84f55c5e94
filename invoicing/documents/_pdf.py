"""PDF rendering of one invoice, credit note or adjustment, from the stored invoice (nothing recomputed).

    doc = invoice_document(engine, tenant_id, invoice_id)          # reads the invoice and its parties
    pdf_bytes = render_invoice_pdf(doc.invoice, doc.customer, doc.profile, doc.context)

The renderer is a pure function of its arguments: the invoice, the buyer (`Customer`), the seller
(`BillingProfile`) and a `DocumentContext` (plan name, meters, the invoice a correction corrects).

What is on the page: the seller (logo, legal name, address, tax id), the buyer (name, address, tax id,
tax region, e-mail, customer id), the number (``INV-000001``, ``CN-000001``, or ``DRAFT`` before
finalization), issue date, due date and payment terms, the billing period and currency, a table of
lines (description, quantity with its unit, unit price, amount) with tier breakdowns as indented
sub-lines, then subtotal, credits applied, tax (region, rate, inclusive or exclusive), the total, the
amount paid and still due once payments were made, and the seller's payment instructions. Credit notes
and adjustments are titled as such and name the invoice they correct.

Dates are the customer's local dates (`Customer.timezone`), never UTC instants: a period is half-open
[start, end) and, when both ends are local midnights, is printed as the inclusive days it covers, so
[2026-11-01T00:00 Europe/Paris, 2026-12-01T00:00 Europe/Paris) reads "1 Nov 2026 – 30 Nov 2026". That is
how people read a billing period on paper; the exact instants stay in the JSON export and the API.

Money is formatted from the stored integers of minor units with integer arithmetic (never a float);
tier sub-lines show the exact unrounded decimals the rater recorded.

Fonts: a document whose text is all Windows-1252 (Western European letters, € and typographic
punctuation) is set in the standard PDF font (Helvetica), which needs no font file and renders in
~0.07 s. Only when some text is outside it (a Polish name, a Greek address) is it rendered again with
DejaVu Sans embedded: fpdf2 parses and subsets a TrueType font for every document (~0.8 s), which made
a few hundred invoices take minutes. Text is never folded or dropped: if a character is in no
available font (DejaVu lacks Tamil, Ethiopic and CJK, and the machine may lack DejaVu altogether), or
it needs shaping this renderer cannot do (Arabic letters join), the export fails with
`FailedPrecondition` naming the text, and nothing is written.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select

from invoicing.catalog import (
    BillingProfile,
    Customer,
    get_billing_profile,
    get_customer_by_id,
    get_plan_version_by_id,
    local_midnight,
    zone,
)
from invoicing.documents._invoice import Invoice, InvoiceLine, get_invoice
from invoicing.tables import invoices, plan_versions, plans
from metering.errors import FailedPrecondition, NotFound
from metering.tables import meters, tenants
from rating.dimensional import DimensionalPrice
from rating.package import PackagePrice

TITLES = {"invoice": "INVOICE", "adjustment": "ADJUSTMENT INVOICE", "credit_note": "CREDIT NOTE"}
LINE_TITLES = {
    "minimum_true_up": "Minimum commitment true-up",
    "cap_adjustment": "Spending cap adjustment",
    "sla_credit": "SLA credit",
    "proration_adjustment": "Proration adjustment",
    "line_credit": "Credit",
}
INTERVAL_UNITS = {"weekly": "week", "monthly": "month", "quarterly": "quarter", "yearly": "year"}
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
#: The due date of a document not issued yet: it is set from the payment terms when it is finalized.
NOT_ISSUED = "draft — not yet issued"
#: Encoding of the standard PDF fonts (WinAnsi): Latin-1 plus €, dashes, quotes and a few letters.
CORE_ENCODING = "windows-1252"


# --- exact formatting ---------------------------------------------------------------------------------------
def format_minor(minor: int, scale: int) -> str:
    """Minor units as a decimal with thousands separators, by integer arithmetic: 123456, 2 → "1,234.56"."""
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(int(minor)), 10**scale)
    return f"{sign}{whole:,}" + (f".{frac:0{scale}d}" if scale else "")


def format_decimal(value: Decimal | str, min_places: int = 0) -> str:
    """An exact decimal with thousands separators, at least `min_places` decimals (zeros added, never cut)."""
    d = Decimal(value)
    exponent = d.as_tuple().exponent
    if isinstance(exponent, int) and -exponent < min_places:
        d = d.quantize(Decimal(1).scaleb(-min_places))  # adds zeros only: exact
    return format(d, ",f")


def local_date(moment: datetime, tz: ZoneInfo) -> str:
    """The local calendar day of an instant, spelled without the locale: "1 Nov 2026"."""
    d = moment.astimezone(tz)
    return f"{d.day} {MONTHS[d.month - 1]} {d.year}"


def local_period(start: datetime, end: datetime, tz: ZoneInfo) -> str:
    """A half-open period [start, end) as the customer reads it, in local dates.

    By design the end date is inclusive: a period is printed as the days it covers, so [1 Nov 00:00,
    1 Dec 00:00) is "1 Nov 2026 – 30 Nov 2026" (the last day is 30 Nov, not the instant 1 Dec 00:00).
    An end that falls within a day (a span cut by a plan change) is shown with its local time, as the
    instant the period stops: [1 Jan 00:00, 15 Jan 12:00) is "1 Jan 2026 – 15 Jan 2026 12:00"; a start
    within a day likewise: "15 Jan 2026 12:00 – 31 Jan 2026"."""
    s, e = start.astimezone(tz), end.astimezone(tz)
    first = local_date(s, tz) if start == local_midnight(s.date(), tz) else f"{local_date(s, tz)} {s:%H:%M}"
    if end == local_midnight(e.date(), tz) and e.date() > s.date():
        last = local_date(e - timedelta(days=1), tz)
    else:
        last = f"{local_date(e, tz)} {e:%H:%M}"
    return f"{first} – {last}"


# --- gathering ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DocumentContext:
    """What a document names besides its invoice and parties (read by `document_context`)."""

    tenant_name: str = ""  # the seller's name when its billing profile has no legal name
    # The plan(s) billed: the invoice's plan version, else (a document grouping several subscriptions)
    # the distinct plans of its lines in line order, joined by ", ".
    plan_code: str = ""
    plan_name: str = ""
    interval: str = ""  # the invoice plan's billing interval (monthly, ...): the unit of a flat fee
    intervals: Mapping[int, str] = field(default_factory=dict)  # plan version id → interval, for each line
    corrects_label: str | None = None  # the label of the invoice a credit note or adjustment corrects
    meters: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # code → (name, display unit)
    package_sizes: Mapping[int, Decimal] = field(default_factory=dict)  # line position → package size
    created_at: datetime | None = None
    void_reason: str = ""


@dataclass(frozen=True, slots=True)
class InvoiceDocument:
    """Everything the PDF shows: the invoice, the buyer, the seller and the context."""

    invoice: Invoice
    customer: Customer
    profile: BillingProfile = field(default_factory=BillingProfile)
    context: DocumentContext = field(default_factory=DocumentContext)

    @property
    def seller(self) -> str:
        return self.profile.legal_name or self.context.tenant_name

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.customer.timezone)

    @property
    def issue_date(self) -> datetime:
        return self.invoice.finalized_at or self.context.created_at or self.invoice.period_start


def _stored_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _package_size_from_detail(ln: InvoiceLine) -> Decimal | None:
    """The package size the rater's breakdown names ("packages of 1000"), if it explained the line."""
    for t in ln.detail.get("lines") or []:
        label = str(t.get("label") or "") if isinstance(t, dict) else ""
        if label.startswith("packages of "):
            try:
                return Decimal(label.removeprefix("packages of "))
            except ArithmeticError:
                return None
    return None


def _package_sizes(engine: Engine, tenant_id: int, inv: Invoice) -> dict[int, Decimal]:
    """Package size of each package-priced line: from its breakdown, else from the plan version's price."""
    out: dict[int, Decimal] = {}
    versions: dict[int, Any] = {}
    for ln in inv.lines:
        if ln.detail.get("model") != "package":
            continue
        size = _package_size_from_detail(ln)
        if size is None and ln.plan_version_id is not None:
            if ln.plan_version_id not in versions:
                try:
                    versions[ln.plan_version_id] = get_plan_version_by_id(engine, tenant_id, ln.plan_version_id)
                except NotFound:
                    versions[ln.plan_version_id] = None
            version = versions[ln.plan_version_id]
            charge = next((c for c in version.charges if c.code == ln.charge_code), None) if version else None
            price = charge.price if charge is not None else None
            if isinstance(price, DimensionalPrice):
                values = json.loads(ln.group_key) if ln.group_key else {}
                value = next(iter(values.values()), None) if isinstance(values, dict) else None
                price = price.price_for(None if value is None else str(value))
            if isinstance(price, PackagePrice):
                size = price.package_size
        if size is not None:
            out[ln.position] = size
    return out


def document_context(engine: Engine, tenant_id: int, inv: Invoice) -> DocumentContext:
    corrects_label = None
    if inv.corrects_invoice_id is not None:
        corrects_label = get_invoice(engine, tenant_id, inv.corrects_invoice_id).label
    i = invoices.c
    with engine.connect() as conn:
        row = conn.execute(select(i.created_at, i.void_reason).where(i.tenant_id == tenant_id, i.id == inv.id)).first()
        tenant_name = conn.execute(select(tenants.c.name).where(tenants.c.id == tenant_id)).scalar_one()
        ids = [inv.plan_version_id] if inv.plan_version_id is not None else []
        ids += [ln.plan_version_id for ln in inv.lines if ln.plan_version_id is not None]
        versions = {
            int(r.id): (str(r.code), str(r.name), str(r.interval))
            for r in conn.execute(
                select(plan_versions.c.id, plans.c.code, plan_versions.c.name, plan_versions.c.interval)
                .join(plans, plans.c.id == plan_versions.c.plan_id)
                .where(plan_versions.c.id.in_(sorted(set(ids))), plans.c.tenant_id == tenant_id)
            )
        } if ids else {}  # fmt: skip
        shown = ids[:1] if inv.plan_version_id is not None else list(dict.fromkeys(ids))
        codes = list(dict.fromkeys(versions[v][0] for v in shown if v in versions))
        names = list(dict.fromkeys(versions[v][1] for v in shown if v in versions))
        interval = versions[inv.plan_version_id][2] if inv.plan_version_id in versions else ""
        meter_codes = sorted({ln.meter for ln in inv.lines if ln.meter})
        meter_rows = (
            conn.execute(
                select(meters.c.code, meters.c.name, meters.c.unit).where(
                    meters.c.tenant_id == tenant_id, meters.c.code.in_(meter_codes)
                )
            ).all()
            if meter_codes
            else []
        )
    return DocumentContext(
        tenant_name=str(tenant_name), plan_code=", ".join(codes), plan_name=", ".join(names), interval=interval,
        intervals={v: iv for v, (_, _, iv) in versions.items()}, corrects_label=corrects_label,
        meters={str(m.code): (str(m.name or m.code), str(m.unit or m.code)) for m in meter_rows},
        package_sizes=_package_sizes(engine, tenant_id, inv),
        created_at=None if row is None else _stored_utc(row.created_at),
        void_reason="" if row is None else (row.void_reason or ""),
    )  # fmt: skip


def invoice_document(engine: Engine, tenant_id: int, invoice_id: int) -> InvoiceDocument:
    """Read the invoice, its buyer, the tenant's billing profile and the context, for the PDF and exports."""
    inv = get_invoice(engine, tenant_id, invoice_id)
    return InvoiceDocument(
        invoice=inv,
        customer=get_customer_by_id(engine, tenant_id, inv.customer_id),
        profile=get_billing_profile(engine, tenant_id),
        context=document_context(engine, tenant_id, inv),
    )


# --- lines --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Row:
    description: str
    quantity: str
    unit_price: str
    amount: str
    sub: bool = False  # a breakdown sub-line (smaller, grey, indented)


def _group_text(group_key: str) -> str:
    if not group_key:
        return ""
    try:
        values = json.loads(group_key)
    except json.JSONDecodeError:
        return group_key
    if isinstance(values, dict):
        return ", ".join(f"{k}={v}" for k, v in values.items())
    if isinstance(values, list):
        return ", ".join(str(v) for v in values)
    return str(values)


def _tier_range(t: dict[str, Any]) -> str:
    lower = format_decimal(str(t.get("lower", "0")))
    upper = t.get("upper")
    return f"{lower} and up" if upper in (None, "") else f"{lower} to {format_decimal(str(upper))}"


def line_rows(doc: InvoiceDocument, ln: InvoiceLine) -> list[Row]:
    """The table rows of one stored line: the line, then its breakdown sub-lines."""
    inv = doc.invoice
    scale = inv.scale
    name, unit = doc.context.meters.get(ln.meter or "", (ln.meter or "", ln.meter or ""))
    title = LINE_TITLES.get(ln.kind)
    description = ln.charge_code if ln.meter is None else f"{ln.charge_code} - {name}"
    if title:
        description = f"{title}: {description}"
    group = _group_text(ln.group_key)
    if group:
        description += f" ({group})"
    if (ln.period_start, ln.period_end) != (inv.period_start, inv.period_end):
        description += f", {local_period(ln.period_start, ln.period_end, doc.tz)}"
    detail = ln.detail
    model = str(detail.get("model", ""))
    if ln.meter is None:
        interval = doc.context.intervals.get(ln.plan_version_id or 0) or doc.context.interval
        unit = INTERVAL_UNITS.get(interval, "period")
    quantity = f"{format_decimal(ln.quantity)} {unit}".strip()
    unit_price = format_decimal(ln.unit_price, scale) if ln.unit_price else ""
    package = doc.context.package_sizes.get(ln.position) if model == "package" else None
    if package is not None and unit_price:
        unit_price = f"{unit_price} per {format_decimal(package)}"
    if ln.kind == "sla_credit":  # the quantity is the measured service level; the credit is a share of a fee
        quantity, unit_price = f"measured {quantity}", ""
    elif ln.kind != "charge":  # deltas and true-ups are not quantity x price: their sub-lines explain them
        quantity = unit_price = ""
    if not unit_price and detail.get("lines") and ln.kind == "charge":
        unit_price = "tiered" if model in ("graduated", "volume") else "see below"
    rows = [Row(description, quantity, unit_price, format_minor(ln.amount, scale))]
    fraction = str(detail.get("fraction", "1"))
    if model == "flat" and fraction != "1":
        rows.append(Row(f"prorated {fraction} of the {unit} (by {detail.get('proration', 'day')})", "", "", "", True))
    if "billed" in detail and "recomputed" in detail:
        rows.append(Row(
            f"billed {format_minor(int(detail['billed']), scale)}, "
            f"now {format_minor(int(detail['recomputed']), scale)}", "", "", "", True,
        ))  # fmt: skip
    if "points_unit" in detail:  # its breakdown is in points, not money: show the points and their rate
        points = format_decimal(Decimal(int(detail["points_charged"])).scaleb(-int(detail["points_scale"])))
        rows.append(Row(
            f"{points} {detail['points_unit']} at {format_decimal(str(detail['conversion_rate']))} {inv.currency}"
            " per point", "", "", "", True,
        ))  # fmt: skip
        return rows
    for t in detail.get("lines") or []:
        if not isinstance(t, dict):
            continue
        label = str(t.get("label") or "")
        parts = [label] if label else []
        if t.get("lower") is not None:
            parts.append(_tier_range(t))
        flat_amount = str(t.get("flat_amount") or "0")
        if Decimal(flat_amount):
            parts.append(f"flat {format_decimal(flat_amount)}")
        units = t.get("units")
        unit_amount = t.get("unit_amount")
        what = "packages" if label.startswith("packages of ") else unit
        if ln.kind == "sla_credit":  # "1 x the credit": the label already says the reading and the share
            units = unit_amount = None
        rows.append(Row(
            parts[0] + (" (" + ", ".join(parts[1:]) + ")" if parts[1:] else "") if parts else "",
            f"{format_decimal(str(units))} {what}" if units not in (None, "") else "",
            format_decimal(str(unit_amount)) if unit_amount not in (None, "") else "",
            format_decimal(str(t.get("amount", "0"))), True,
        ))  # fmt: skip
    return rows


def table_rows(doc: InvoiceDocument) -> list[Row]:
    """Rows of the lines table: every line except tax and credits (shown in the totals block)."""
    out: list[Row] = []
    for ln in doc.invoice.lines:
        if ln.kind not in ("tax", "credit", "points"):
            out += line_rows(doc, ln)
    return out


def shows_payments(inv: Invoice) -> bool:
    """Amount paid and amount due are printed once money was received against the document."""
    return inv.kind != "credit_note" and (inv.status in ("paid", "partially_paid") or inv.amount_paid != 0)


def totals_rows(doc: InvoiceDocument) -> list[tuple[str, str, bool]]:
    """(label, amount, bold) rows under the table."""
    inv = doc.invoice
    scale = inv.scale
    ccy = inv.currency
    rows: list[tuple[str, str, bool]] = [("Subtotal", format_minor(inv.subtotal, scale), False)]
    if inv.tax_rate and Decimal(inv.tax_rate):
        rate = format_decimal(inv.tax_rate)
        region = f"{inv.tax_region} " if inv.tax_region else ""
        if inv.tax_inclusive:
            rows.append((f"Tax {region}{rate}% (included in the prices)", format_minor(inv.tax, scale), False))
        else:
            rows.append((f"Tax {region}{rate}% (exclusive)", format_minor(inv.tax, scale), False))
    elif any(ln.kind == "tax" for ln in inv.lines) or inv.tax:
        rows.append(("Tax", format_minor(inv.tax, scale), False))
    if inv.credits_applied:
        rows.append(("Credits applied", format_minor(-inv.credits_applied, scale), False))
    if inv.kind == "credit_note":
        rows.append((f"Total credited ({ccy})", format_minor(inv.total, scale), True))
    elif shows_payments(inv):
        rows.append((f"Total ({ccy})", format_minor(inv.total, scale), False))
        rows.append(("Amount paid", format_minor(-inv.amount_paid, scale), False))
        rows.append((f"Amount due ({ccy})", format_minor(inv.amount_due, scale), True))
    else:
        rows.append((f"Total due ({ccy})", format_minor(inv.total, scale), True))
    return rows


def credit_notes(doc: InvoiceDocument) -> list[str]:
    """One text per ledger draw that paid part of the invoice (grant or wallet)."""
    out = []
    scale = doc.invoice.scale
    for ln in doc.invoice.lines:
        if ln.kind == "points":
            unit = ln.detail.get("points_unit", "points")
            out.append(f"{ln.quantity} {unit} paid {format_minor(-ln.amount, scale)} of {ln.charge_code}")
            continue
        if ln.kind != "credit":
            continue
        for d in ln.detail.get("draws") or []:
            source = f"grant {d.get('grant')}" if d.get("grant") else "wallet"
            out.append(f"{format_minor(int(d.get('amount', 0)), scale)} from {source} for {ln.charge_code}")
    return out


def address_lines(address: Any) -> list[str]:
    """An `Address` as printed lines (street, postal code and city, region, country)."""
    if address is None:
        return []
    lines = [x for x in (address.line1, address.line2) if x]
    city = " ".join(x for x in (address.postal_code, address.city) if x)
    return lines + [x for x in (city, address.region, address.country) if x]


def due_date(doc: InvoiceDocument) -> str:
    inv = doc.invoice
    if inv.status == "draft":
        return NOT_ISSUED
    if inv.finalized_at is None:  # closed (zero total) or void before it was issued
        return "none (not issued)"
    if inv.payment_due_at is None:  # issued before due dates were kept
        return "on receipt"
    return local_date(inv.payment_due_at, doc.tz)


def status_text(doc: InvoiceDocument) -> str:
    inv = doc.invoice
    return {
        "draft": "Draft – not yet issued",
        "finalized": "Issued",
        "partially_paid": "Partially paid",
        "paid": "Paid" + (f" {local_date(inv.paid_at, doc.tz)}" if inv.paid_at else ""),
        "void": "Void" + (f" {local_date(inv.voided_at, doc.tz)}" if inv.voided_at else ""),
        "uncollectible": "Uncollectible",
        "closed": "Closed (zero total, not issued)",
    }.get(inv.status, inv.status)


def facts(doc: InvoiceDocument) -> list[tuple[str, str]]:
    """(label, value) pairs printed right of the buyer."""
    inv = doc.invoice
    number = inv.label if inv.number is not None else "DRAFT"
    out = [
        ("Credit note number" if inv.kind == "credit_note" else "Invoice number", number),
        ("Issue date", local_date(inv.finalized_at, doc.tz))
        if inv.finalized_at
        else ("Created (draft)" if inv.status == "draft" else "Created", local_date(doc.issue_date, doc.tz)),
    ]
    if inv.kind != "credit_note":
        out += [("Due date", due_date(doc)), ("Payment terms", doc.profile.terms)]
    out.append(("Billing period", local_period(inv.period_start, inv.period_end, doc.tz)))
    if (inv.span_start, inv.span_end) != (inv.period_start, inv.period_end) and inv.span_end > inv.span_start:
        out.append(("Service period", local_period(inv.span_start, inv.span_end, doc.tz)))
    out.append(("Currency", inv.currency))
    if doc.context.plan_name or doc.context.plan_code:
        out.append(("Plan", doc.context.plan_name or doc.context.plan_code))
    if doc.context.corrects_label is not None:
        out.append(("Corrects invoice", doc.context.corrects_label))
    out.append(("Status", status_text(doc)))
    return out


# --- fonts --------------------------------------------------------------------------------------------------
GREY = (110, 110, 110)
LIGHT = (235, 235, 235)

FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu", "/usr/local/share/fonts/dejavu")
FONT_FILES = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf", "I": "DejaVuSans-Oblique.ttf"}


def unicode_font_dir() -> Path | None:
    """A folder with the DejaVu Sans TrueType fonts (Debian: fonts-dejavu-core), if the machine has one."""
    for d in FONT_DIRS:
        if all((Path(d) / f).is_file() for f in FONT_FILES.values()):
            return Path(d)
    return None


class _NeedsUnicode(Exception):
    """Text the standard font cannot set: the Helvetica pass stops at once and the caller embeds DejaVu."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class _Unsettable(Exception):
    """Text with a character the current font cannot set (raised while rendering, reported by the caller)."""

    def __init__(self, text: str, char: str, why: str) -> None:
        super().__init__(text)
        self.text, self.char, self.why = text, char, why


def _needs_shaping(ch: str) -> bool:
    """Letters of scripts whose glyphs join (Arabic and its kin): set one by one they are unreadable."""
    return unicodedata.bidirectional(ch) == "AL" and unicodedata.category(ch).startswith("L")


# --- rendering ----------------------------------------------------------------------------------------------
def render_invoice_pdf(
    invoice: Invoice,
    customer: Customer,
    profile: BillingProfile,
    context: DocumentContext | None = None,
    *,
    font_dir: Path | str | None = "auto",
) -> bytes:
    """The invoice as a PDF document (A4), ready to send to the customer.

    `font_dir`: "auto" (Helvetica when the text allows, else the machine's DejaVu Sans), a folder of
    DejaVu fonts to embed, or None for Helvetica only. Raises FailedPrecondition, writing nothing, when a
    text cannot be set in any available font."""
    doc = InvoiceDocument(invoice, customer, profile, context or DocumentContext())
    return render_document(doc, font_dir)


def render_document(doc: InvoiceDocument, font_dir: Path | str | None = "auto") -> bytes:
    """Render `doc` (see `render_invoice_pdf`)."""
    if doc.invoice.customer_id != doc.customer.id and doc.customer.id:
        raise FailedPrecondition(
            f"invoice {doc.invoice.label} bills customer id {doc.invoice.customer_id}, not "
            f"{doc.customer.external_id!r}; pass the invoice's own customer"
        )
    if not (doc.customer.name or doc.customer.external_id):
        raise FailedPrecondition("the customer has no name: set one with `tally customer update` and export again")
    if font_dir == "auto":
        out, needs = _render_checked(doc, None)
        if needs is None:
            return out
        fonts = unicode_font_dir()
        if fonts is None:
            raise FailedPrecondition(
                f"cannot write the PDF: {_field_of(doc, needs)} {needs!r} needs a Unicode font and none is "
                "installed; install DejaVu Sans (Debian: apt install fonts-dejavu-core) or export JSON or CSV"
            )
        return _render_checked(doc, fonts)[0]
    out, needs = _render_checked(doc, Path(font_dir) if font_dir is not None else None)
    if needs is not None:
        raise FailedPrecondition(
            f"cannot write the PDF: {_field_of(doc, needs)} {needs!r} is not in the standard PDF font; "
            "render with a Unicode font (font_dir) or export JSON or CSV"
        )
    return out


def _field_of(doc: InvoiceDocument, text: str) -> str:
    """Which field of the document a text came from, so the message says what to change."""
    c, p = doc.customer, doc.profile
    fields = [
        ("the customer name", c.name or c.external_id), ("the customer's address", " ".join(address_lines(c.address))),
        ("the customer's tax id", c.tax_id), ("the customer's e-mail", c.email),
        ("the seller's legal name", doc.seller), ("the seller's address", " ".join(address_lines(p.address))),
        ("the seller's tax id", p.tax_id), ("the payment instructions", p.payment_instructions),
        ("the plan name", doc.context.plan_name), ("the void reason", doc.context.void_reason),
    ]  # fmt: skip
    for name, value in fields:
        if value and (value in text or text in value):
            return name
    return "the text"


def _render_checked(doc: InvoiceDocument, font_dir: Path | None) -> tuple[bytes, str | None]:
    """The PDF, or (b"", the first text Helvetica cannot set) when it needs a Unicode font."""
    from invoicing.documents._pdf_render import render  # fpdf2 loads only when a PDF is made (~0.3 s)

    try:
        return render(doc, font_dir), None
    except _NeedsUnicode as exc:
        return b"", exc.text
    except _Unsettable as exc:
        where = _field_of(doc, exc.text)
        name = unicodedata.name(exc.char, "unnamed")
        raise FailedPrecondition(
            f"cannot write the PDF: {where} {exc.text!r} has {exc.char!r} (U+{ord(exc.char):04X} {name}) and "
            f"{exc.why}; nothing was written. Change {where} to a script DejaVu Sans covers (Latin, Greek, "
            "Cyrillic, Armenian, Georgian, Hebrew), e.g. a Latin transliteration, or export JSON or CSV"
        ) from None


__all__ = [
    "DocumentContext",
    "InvoiceDocument",
    "address_lines",
    "document_context",
    "format_decimal",
    "format_minor",
    "invoice_document",
    "local_date",
    "local_period",
    "render_document",
    "render_invoice_pdf",
    "unicode_font_dir",
]
