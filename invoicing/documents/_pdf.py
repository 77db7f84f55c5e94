"""PDF rendering of one invoice, credit note or adjustment, from the stored invoice (nothing recomputed).

    pdf_bytes = render_invoice_pdf(engine, tenant_id, invoice_id)

What is on the page: the seller (the tenant), the customer (name, address, tax region, e-mail, id),
the number (``INV-000001``, or ``DRAFT`` before finalization), the issue date, billing period and
currency, a table of lines (description, quantity with its unit, unit price, amount) with the tier
breakdown of tiered charges as indented sub-lines, then subtotal, credits applied, tax (region, rate,
inclusive or exclusive) and the total due. Credit notes and adjustments are titled as such and name
the invoice they correct.

Money is formatted from the stored integers of minor units with integer arithmetic (never a float);
tier sub-lines show the exact unrounded decimals the rater recorded.

Fonts: a document whose text is all Latin-1 is set in the standard PDF font (Helvetica), which needs
no font file and renders in ~0.07 s. Only when some text is outside Latin-1 (a Polish name, a Greek
address) is it rendered again with DejaVu Sans embedded, if the machine has it: fpdf2 parses and
subsets a TrueType font for every document (~0.8 s), which made a few hundred invoices take minutes.
Without DejaVu, other characters are folded to their closest Latin-1 form or shown as "?".
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from fpdf.fonts import FontFace
from sqlalchemy import Engine, select

from invoicing.catalog import Customer, get_customer_by_id
from invoicing.documents._invoice import Invoice, InvoiceLine, get_invoice
from invoicing.tables import invoices, plan_versions
from metering.tables import meters, tenants
from rating.unit import currency as currency_unit

TITLES = {"invoice": "INVOICE", "adjustment": "ADJUSTMENT INVOICE", "credit_note": "CREDIT NOTE"}
LINE_TITLES = {
    "minimum_true_up": "Minimum commitment true-up",
    "cap_adjustment": "Spending cap adjustment",
    "sla_credit": "SLA credit",
    "proration_adjustment": "Proration adjustment",
}
INTERVAL_UNITS = {"weekly": "week", "monthly": "month", "quarterly": "quarter", "yearly": "year"}


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


FOLD = {
    "Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "Ħ": "H", "ħ": "h", "Ŧ": "T", "ŧ": "t", "Œ": "OE", "œ": "oe", "ı": "i",
    "–": "-", "—": "-", "‘": "'", "’": "'", "“": '"', "”": '"', "…": "...", "€": "EUR", "•": "-",
}  # fmt: skip


def latin1(text: str) -> str:
    """Text the standard PDF fonts can show: Latin-1 as is, other letters without accents, else '?'."""
    out = []
    for ch in text:
        if ord(ch) < 256:
            out.append(ch)
            continue
        if ch in FOLD:
            out.append(FOLD[ch])
            continue
        folded = "".join(c for c in unicodedata.normalize("NFKD", ch) if ord(c) < 256 and not unicodedata.combining(c))
        out.append(folded or "?")
    return "".join(out)


def _date(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d")


def _period(start: datetime, end: datetime) -> str:
    """Half-open [start, end) shown as the inclusive days it covers when it is whole days."""
    s, e = start.astimezone(UTC), end.astimezone(UTC)
    if s.time() == e.time() == datetime.min.time() and e > s:
        last = datetime.fromordinal(e.toordinal() - 1)
        return f"{s:%Y-%m-%d} to {last:%Y-%m-%d}"
    return f"{s:%Y-%m-%d %H:%M} to {e:%Y-%m-%d %H:%M} UTC"


# --- gathering ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class InvoiceDocument:
    """Everything the PDF shows, read once from the database."""

    invoice: Invoice
    seller: str
    customer: Customer
    created_at: datetime
    finalized_at: datetime | None
    paid_at: datetime | None
    voided_at: datetime | None
    void_reason: str
    plan_name: str
    interval: str
    corrects_label: str | None
    meters: dict[str, tuple[str, str]]  # code → (name, display unit)

    @property
    def issue_date(self) -> datetime:
        return self.finalized_at or self.created_at


def _stored_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def invoice_document(engine: Engine, tenant_id: int, invoice_id: int) -> InvoiceDocument:
    inv = get_invoice(engine, tenant_id, invoice_id)
    customer = get_customer_by_id(engine, tenant_id, inv.customer_id)
    corrects_label = None
    if inv.corrects_invoice_id is not None:
        corrects_label = get_invoice(engine, tenant_id, inv.corrects_invoice_id).label
    i = invoices.c
    with engine.connect() as conn:
        row = conn.execute(
            select(i.created_at, i.finalized_at, i.paid_at, i.voided_at, i.void_reason).where(
                i.tenant_id == tenant_id, i.id == invoice_id
            )
        ).one()
        seller = conn.execute(select(tenants.c.name).where(tenants.c.id == tenant_id)).scalar_one()
        plan_name, interval = "", ""
        if inv.plan_version_id is not None:
            pv = conn.execute(
                select(plan_versions.c.name, plan_versions.c.interval).where(plan_versions.c.id == inv.plan_version_id)
            ).first()
            if pv is not None:
                plan_name, interval = str(pv.name), str(pv.interval)
        codes = sorted({ln.meter for ln in inv.lines if ln.meter})
        meter_rows = (
            conn.execute(
                select(meters.c.code, meters.c.name, meters.c.unit).where(
                    meters.c.tenant_id == tenant_id, meters.c.code.in_(codes)
                )
            ).all()
            if codes
            else []
        )
    created = _stored_utc(row.created_at)
    assert created is not None
    return InvoiceDocument(
        invoice=inv, seller=str(seller), customer=customer, created_at=created,
        finalized_at=_stored_utc(row.finalized_at), paid_at=_stored_utc(row.paid_at),
        voided_at=_stored_utc(row.voided_at), void_reason=row.void_reason or "", plan_name=plan_name,
        interval=interval, corrects_label=corrects_label,
        meters={str(m.code): (str(m.name or m.code), str(m.unit or m.code)) for m in meter_rows},
    )  # fmt: skip


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
    name, unit = doc.meters.get(ln.meter or "", (ln.meter or "", ln.meter or ""))
    title = LINE_TITLES.get(ln.kind)
    description = ln.charge_code if ln.meter is None else f"{ln.charge_code} - {name}"
    if title:
        description = f"{title}: {description}"
    group = _group_text(ln.group_key)
    if group:
        description += f" ({group})"
    if (ln.period_start, ln.period_end) != (inv.period_start, inv.period_end):
        description += f", {_period(ln.period_start, ln.period_end)}"
    detail = ln.detail
    model = str(detail.get("model", ""))
    if ln.meter is None:
        unit = INTERVAL_UNITS.get(doc.interval, "period")
    quantity = f"{format_decimal(ln.quantity)} {unit}".strip()
    unit_price = format_decimal(ln.unit_price, scale) if ln.unit_price else ""
    if ln.kind != "charge":  # deltas and true-ups are not quantity x price: their sub-lines explain them
        quantity = unit_price = ""
    if not unit_price and detail.get("lines"):
        unit_price = "tiered" if model in ("graduated", "volume", "package") else "see below"
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
        rows.append(Row(
            parts[0] + (" (" + ", ".join(parts[1:]) + ")" if parts[1:] else "") if parts else "",
            f"{format_decimal(str(units))} {unit}" if units not in (None, "") else "",
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
    label = "Total credited" if inv.kind == "credit_note" else "Total due"
    rows.append((f"{label} ({ccy})", format_minor(inv.total, scale), True))
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


# --- rendering ----------------------------------------------------------------------------------------------
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


class _Pdf(FPDF):
    def __init__(self, font_dir: Path | None) -> None:
        super().__init__(format="A4", unit="mm")
        self.footer_text = ""
        self.face = "Helvetica"
        self.unicode = font_dir is not None
        self.folded = False  # some text had to be folded to Latin-1
        if font_dir is not None:
            for style, name in FONT_FILES.items():
                self.add_font("DejaVu", style, str(font_dir / name))
            self.face = "DejaVu"

    def txt(self, text: str) -> str:
        """Text the current font can show: as is with a Unicode font, else folded to Latin-1."""
        if self.unicode:
            return text
        shown = latin1(text)
        if shown != text:
            self.folded = True
        return shown

    def footer(self) -> None:
        self.set_y(-14)
        self.set_font(self.face, size=7)
        self.set_text_color(*GREY)
        self.cell(0, 4, self.footer_text, align="L")
        self.cell(0, 4, f"Page {self.page_no()} of {{nb}}", align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(0, 0, 0)


def render_invoice_pdf(engine: Engine, tenant_id: int, invoice_id: int) -> bytes:
    """The invoice as a PDF document (A4), ready to send to the customer."""
    return render_document(invoice_document(engine, tenant_id, invoice_id))


_AUTO = Path("auto")


def render_document(doc: InvoiceDocument, font_dir: Path | None = _AUTO) -> bytes:
    """Render `doc`; `font_dir`: DejaVu fonts to embed, None for Helvetica, default: Helvetica when the
    text is all Latin-1, else the system's DejaVu if it has one."""
    if font_dir != _AUTO:
        return _render(doc, font_dir)[0]
    out, folded = _render(doc, None)
    fonts = unicode_font_dir()
    return _render(doc, fonts)[0] if folded and fonts is not None else out


def _render(doc: InvoiceDocument, font_dir: Path | None) -> tuple[bytes, bool]:
    inv = doc.invoice
    scale = currency_unit(inv.currency).scale
    number = f"INV-{inv.number:06d}" if inv.number is not None else "DRAFT"
    title = TITLES.get(inv.kind, inv.kind.upper())

    pdf = _Pdf(font_dir)
    pdf.set_creation_date(doc.issue_date)  # the same invoice renders to the same bytes
    pdf.set_title(pdf.txt(f"{title} {number} - {doc.seller}"))
    pdf.set_author(pdf.txt(doc.seller))
    pdf.set_margins(18, 18, 18)
    pdf.set_auto_page_break(True, margin=20)
    pdf.footer_text = pdf.txt(
        f"{doc.seller} - {title.lower()} {number} - amounts in {inv.currency}; each line is rounded once to "
        f"{scale} decimals (half even)"
    )
    pdf.alias_nb_pages()
    pdf.add_page()
    width = pdf.epw
    left = pdf.l_margin

    # Header: seller on the left, document title and number on the right.
    top = pdf.get_y()
    pdf.set_font(pdf.face, "B", 16)
    pdf.multi_cell(width * 0.55, 8, pdf.txt(doc.seller), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_xy(left + width * 0.55, top)
    pdf.set_font(pdf.face, "B", 18)
    pdf.cell(width * 0.45, 8, title, align="R", new_x=XPos.LEFT, new_y=YPos.NEXT)
    pdf.set_font(pdf.face, "B", 12)
    pdf.cell(width * 0.45, 7, number, align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_y(max(pdf.get_y(), top + 16) + 4)
    pdf.set_draw_color(180, 180, 180)
    pdf.line(left, pdf.get_y(), left + width, pdf.get_y())
    pdf.ln(5)

    # Bill to (left) and the invoice facts (right).
    block_top = pdf.get_y()
    c = doc.customer
    pdf.set_font(pdf.face, "B", 8)
    pdf.set_text_color(*GREY)
    pdf.cell(width * 0.5, 5, "BILL TO", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(0, 0, 0)
    pdf.set_font(pdf.face, "B", 10)
    pdf.multi_cell(width * 0.5, 5, pdf.txt(c.name or c.external_id), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(pdf.face, size=9)
    address: list[str] = []
    if c.address is not None:
        a = c.address
        address += [x for x in (a.line1, a.line2) if x]
        city = " ".join(x for x in (a.postal_code, a.city) if x)
        address += [x for x in (city, a.region, a.country) if x]
    extra = [*address]
    if c.tax_region:
        extra.append(f"Tax region: {c.tax_region}")
    if c.email:
        extra.append(c.email)
    extra.append(f"Customer ID: {c.external_id}")
    for text in extra:
        pdf.multi_cell(width * 0.5, 4.6, pdf.txt(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    left_bottom = pdf.get_y()

    facts = [
        ("Invoice number" if inv.kind != "credit_note" else "Credit note number", number),
        ("Issue date" if doc.finalized_at else "Created (draft)", _date(doc.issue_date)),
        ("Billing period", _period(inv.period_start, inv.period_end)),
        *(
            [("Service period", _period(inv.span_start, inv.span_end))]
            if (inv.span_start, inv.span_end) != (inv.period_start, inv.period_end) and inv.span_end > inv.span_start
            else []
        ),
        ("Currency", inv.currency),
    ]
    if doc.plan_name:
        facts.append(("Plan", pdf.txt(doc.plan_name)))
    if doc.corrects_label is not None:
        facts.append(("Corrects invoice", doc.corrects_label))
    status = {"draft": "Draft - not yet issued", "finalized": "Issued", "paid": f"Paid {_date(doc.paid_at)}",
              "void": f"Void {_date(doc.voided_at)}"}.get(inv.status, inv.status)  # fmt: skip
    facts.append(("Status", status))
    pdf.set_y(block_top)
    for label, value in facts:
        pdf.set_x(left + width * 0.52)
        pdf.set_font(pdf.face, size=9)
        pdf.set_text_color(*GREY)
        pdf.cell(width * 0.2, 5, label)
        pdf.set_text_color(0, 0, 0)
        pdf.set_font(pdf.face, "B" if label.endswith("number") else "", 9)
        pdf.cell(width * 0.28, 5, value, align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_y(max(left_bottom, pdf.get_y()) + 4)

    if doc.corrects_label is not None:
        pdf.set_font(pdf.face, "I", 9)
        what = "credits" if inv.kind == "credit_note" else "adds to"
        pdf.multi_cell(
            width, 5, f"This {title.lower()} {what} invoice {doc.corrects_label} (id {inv.corrects_invoice_id}) "
            f"for the period {_period(inv.period_start, inv.period_end)}.", new_x=XPos.LMARGIN, new_y=YPos.NEXT,
        )  # fmt: skip
        pdf.ln(2)
    if inv.status == "void":
        pdf.set_font(pdf.face, "B", 10)
        pdf.set_text_color(170, 0, 0)
        reason = f": {doc.void_reason}" if doc.void_reason else ""
        pdf.multi_cell(width, 6, pdf.txt(f"VOID - this document is cancelled{reason}"),
                       new_x=XPos.LMARGIN, new_y=YPos.NEXT)  # fmt: skip
        pdf.set_text_color(0, 0, 0)
        pdf.ln(1)

    # Lines.
    pdf.set_font(pdf.face, size=9)
    sub_style = FontFace(size_pt=7.5, color=GREY)
    with pdf.table(
        col_widths=(49, 19, 14, 18), text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT"),
        borders_layout="HORIZONTAL_LINES", line_height=5, padding=(1.2, 1.5),
        headings_style=FontFace(emphasis="BOLD", size_pt=9, fill_color=LIGHT), repeat_headings=1,
    ) as table:  # fmt: skip
        table.row(["Description", "Quantity", "Unit price", f"Amount ({inv.currency})"])
        rows = table_rows(doc)
        if not rows:
            table.row(["(no lines)", "", "", ""])
        for r in rows:
            row = table.row()
            if r.sub:
                row.cell("      " + pdf.txt(r.description), style=sub_style)
                for text in (r.quantity, r.unit_price, r.amount):
                    row.cell(pdf.txt(text), style=sub_style)
            else:
                for text in (r.description, r.quantity, r.unit_price, r.amount):
                    row.cell(pdf.txt(text))
    pdf.ln(4)

    # Totals.
    totals = totals_rows(doc)
    if pdf.get_y() + 7 * len(totals) + 10 > pdf.h - pdf.b_margin:
        pdf.add_page()
    for label, value, bold in totals:
        pdf.set_x(left + width * 0.45)
        if bold:
            pdf.set_draw_color(0, 0, 0)
            pdf.line(left + width * 0.45, pdf.get_y(), left + width, pdf.get_y())
            pdf.ln(1)
            pdf.set_x(left + width * 0.45)
        pdf.set_font(pdf.face, "B" if bold else "", 11 if bold else 9)
        pdf.cell(width * 0.35, 7 if bold else 5.5, label)
        pdf.cell(width * 0.20, 7 if bold else 5.5, value, align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    notes = credit_notes(doc)
    if notes:
        pdf.ln(2)
        pdf.set_font(pdf.face, size=7.5)
        pdf.set_text_color(*GREY)
        pdf.set_x(left + width * 0.45)
        pdf.multi_cell(width * 0.55, 4, pdf.txt("Credits: " + "; ".join(notes)), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_text_color(0, 0, 0)
    if inv.status == "draft":
        pdf.ln(6)
        pdf.set_font(pdf.face, "I", 8)
        pdf.set_text_color(*GREY)
        note = f"DRAFT: amounts may still change until this {title.lower()} is finalized and numbered."
        pdf.multi_cell(width, 4, note, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_text_color(0, 0, 0)
    return bytes(pdf.output()), pdf.folded


__all__ = [
    "InvoiceDocument",
    "format_decimal",
    "format_minor",
    "invoice_document",
    "latin1",
    "render_document",
    "render_invoice_pdf",
]
