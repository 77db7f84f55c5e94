"""Drawing an invoice document with fpdf2, kept apart from `_pdf` so that fpdf2 (about 0.3 s to import)
loads only when a PDF is actually made, not with every server and CLI start that imports the documents."""

from __future__ import annotations

import io
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from fpdf.errors import FPDFUnicodeEncodingException
from fpdf.fonts import FontFace

from invoicing.documents._pdf import (
    CORE_ENCODING,
    FONT_FILES,
    GREY,
    LIGHT,
    NOT_ISSUED,
    TITLES,
    InvoiceDocument,
    _needs_shaping,
    _NeedsUnicode,
    _Unsettable,
    address_lines,
    credit_notes,
    due_date,
    facts,
    local_period,
    table_rows,
    totals_rows,
)
from metering.errors import FailedPrecondition


class _Pdf(FPDF):
    def __init__(self, font_dir: Path | None) -> None:
        super().__init__(format="A4", unit="mm")
        self.footer_text = ""
        self.face = "Helvetica"
        self.core_fonts_encoding = CORE_ENCODING
        if font_dir is not None:
            for style, name in FONT_FILES.items():
                self.add_font("DejaVu", style, str(font_dir / name))
            self.face = "DejaVu"

    def normalize_text(self, text: str) -> str:
        """Every text fpdf2 sets passes here: check it can be set as it is, never fold or drop it."""
        if self.is_ttf_font:
            cmap = self.current_font.cmap  # type: ignore[union-attr]
            for ch in text:
                if ch in "\r\n\t":
                    continue
                if ord(ch) not in cmap:
                    raise _Unsettable(text, ch, "no available font has a glyph for it")
                if _needs_shaping(ch):
                    raise _Unsettable(text, ch, "its script joins letters, which this renderer cannot shape")
            return text
        try:
            return super().normalize_text(text)
        except FPDFUnicodeEncodingException:
            raise _NeedsUnicode(text) from None

    def footer(self) -> None:
        self.set_y(-14)
        self.set_font(self.face, size=7)
        self.set_text_color(*GREY)
        top = self.get_y()
        self.multi_cell(self.epw - 26, 3.5, self.footer_text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_xy(self.l_margin + self.epw - 24, top)
        self.cell(24, 3.5, f"Page {self.page_no()} of {{nb}}", align="R")
        self.set_text_color(0, 0, 0)




def _logo(pdf: _Pdf, logo: bytes, x: float, y: float, box_w: float, box_h: float) -> float:
    """Draw the logo fitted in the box, left-aligned; returns its height."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(logo)) as image:
            width_px, height_px = image.size
        scale = min(box_w / width_px, box_h / height_px)
        w, h = width_px * scale, height_px * scale
        pdf.image(io.BytesIO(logo), x=x, y=y, w=w, h=h)
    except Exception as exc:  # validated on upload; a damaged row is still reported, not skipped
        raise FailedPrecondition(
            f"the billing profile's logo cannot be drawn ({exc}); upload it again with `tally profile set --logo`"
        ) from None
    return h


def _pairs(
    pdf: _Pdf, rows: list[tuple[str, str, bool]], x: float, label_w: float, value_w: float, size: float, h: float
) -> None:
    """Label/value rows: the label wraps in its column, the value right-aligned in its own, never overlapping."""
    for label, value, bold in rows:
        top = pdf.get_y()
        if top + 2 * h > pdf.h - pdf.b_margin:
            pdf.add_page()
            top = pdf.get_y()
        pdf.set_xy(x, top)
        pdf.set_font(pdf.face, "B" if bold else "", size + (2 if bold else 0))
        pdf.set_text_color(*((0, 0, 0) if bold else GREY))
        pdf.multi_cell(label_w, h, label, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        label_bottom = pdf.get_y()
        pdf.set_xy(x + label_w, top)
        pdf.set_text_color(0, 0, 0)
        pdf.multi_cell(value_w, h, value, align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_y(max(label_bottom, pdf.get_y()))


def render(doc: InvoiceDocument, font_dir: Path | None) -> bytes:
    inv = doc.invoice
    title = TITLES.get(inv.kind, inv.kind.upper())
    number = inv.label if inv.number is not None else "DRAFT"
    seller = doc.seller
    zone_note = "" if doc.customer.timezone in ("UTC", "Etc/UTC") else f"; dates in {doc.customer.timezone} time"

    pdf = _Pdf(font_dir)
    pdf.set_creation_date(doc.issue_date)  # the same invoice renders to the same bytes
    pdf.set_title(f"{title} {number} - {seller}")
    pdf.set_author(seller)
    pdf.set_margins(18, 18, 18)
    pdf.set_auto_page_break(True, margin=20)
    pdf.footer_text = (
        f"{seller} - {title.lower()} {number} - amounts in {inv.currency}; each line is rounded once to "
        f"{inv.scale} decimals (half even){zone_note}"
    )
    pdf.alias_nb_pages()
    pdf.add_page()
    width = pdf.epw
    left = pdf.l_margin

    # Header: the seller on the left (logo, legal name, address, tax id), title and number on the right.
    top = pdf.get_y()
    if doc.profile.logo:
        pdf.set_y(top + _logo(pdf, doc.profile.logo, left, top, width * 0.3, 18) + 3)
    pdf.set_font(pdf.face, "B", 14)
    pdf.multi_cell(width * 0.55, 7, seller, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(pdf.face, size=8.5)
    for text in address_lines(doc.profile.address):
        pdf.multi_cell(width * 0.55, 4.2, text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if doc.profile.tax_id:
        pdf.multi_cell(
            width * 0.55, 4.2, f"Tax ID: {doc.profile.tax_id}", align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT
        )
    seller_bottom = pdf.get_y()
    pdf.set_xy(left + width * 0.57, top)
    pdf.set_font(pdf.face, "B", 18)
    pdf.multi_cell(width * 0.43, 8, title, align="R", new_x=XPos.LEFT, new_y=YPos.NEXT)
    pdf.set_font(pdf.face, "B", 12)
    pdf.multi_cell(width * 0.43, 7, number, align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_y(max(pdf.get_y(), seller_bottom, top + 16) + 3)
    pdf.set_draw_color(180, 180, 180)
    pdf.line(left, pdf.get_y(), left + width, pdf.get_y())
    pdf.ln(5)

    # Bill to (left) and the document facts (right).
    block_top = pdf.get_y()
    c = doc.customer
    pdf.set_font(pdf.face, "B", 8)
    pdf.set_text_color(*GREY)
    pdf.cell(width * 0.48, 5, "BILL TO", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(0, 0, 0)
    pdf.set_font(pdf.face, "B", 10)
    pdf.multi_cell(width * 0.48, 5, c.name or c.external_id, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(pdf.face, size=9)
    extra = address_lines(c.address)
    if c.tax_id:
        extra.append(f"Tax ID: {c.tax_id}")
    if c.tax_region:
        extra.append(f"Tax region: {c.tax_region}")
    if c.email:
        extra.append(c.email)
    extra.append(f"Customer ID: {c.external_id}")
    for text in extra:
        pdf.multi_cell(width * 0.48, 4.6, text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    left_bottom = pdf.get_y()

    pdf.set_y(block_top)
    _pairs(pdf, [(label, value, False) for label, value in facts(doc)], left + width * 0.52, 31, width * 0.48 - 31,
           9, 5)  # fmt: skip
    pdf.set_y(max(left_bottom, pdf.get_y()) + 4)

    if doc.context.corrects_label is not None:
        pdf.set_font(pdf.face, "I", 9)
        what = "credits" if inv.kind == "credit_note" else "adds to"
        corrected = f"{doc.context.corrects_label} (id {inv.corrects_invoice_id})"
        period = local_period(inv.period_start, inv.period_end, doc.tz)
        pdf.multi_cell(
            width, 5, f"This {title.lower()} {what} invoice {corrected} for the period {period}.", align="L",
            new_x=XPos.LMARGIN, new_y=YPos.NEXT,
        )  # fmt: skip
        pdf.ln(2)
    if inv.status == "void":
        pdf.set_font(pdf.face, "B", 10)
        pdf.set_text_color(170, 0, 0)
        reason = f": {doc.context.void_reason}" if doc.context.void_reason else ""
        pdf.multi_cell(
            width, 6, f"VOID - this document is cancelled{reason}", align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT
        )
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
                row.cell("      " + r.description, style=sub_style)
                for text in (r.quantity, r.unit_price, r.amount):
                    row.cell(text, style=sub_style)
            else:
                for text in (r.description, r.quantity, r.unit_price, r.amount):
                    row.cell(text)
    pdf.ln(4)

    # Totals.
    totals = totals_rows(doc)
    if pdf.get_y() + 7 * len(totals) + 10 > pdf.h - pdf.b_margin:
        pdf.add_page()
    for i, (label, value, bold) in enumerate(totals):
        if bold:
            pdf.set_draw_color(0, 0, 0)
            pdf.line(left + width * 0.45, pdf.get_y(), left + width, pdf.get_y())
            pdf.ln(1)
        _pairs(pdf, [(label, value, bold)], left + width * 0.45, width * 0.33, width * 0.22, 9, 7 if bold else 5.5)
        if bold and i + 1 < len(totals):
            pdf.ln(1)
    notes = credit_notes(doc)
    if notes:
        pdf.ln(2)
        pdf.set_font(pdf.face, size=7.5)
        pdf.set_text_color(*GREY)
        pdf.set_x(left + width * 0.45)
        pdf.multi_cell(width * 0.55, 4, "Credits: " + "; ".join(notes), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_text_color(0, 0, 0)

    # Payment: terms and due date, and how to pay (not on credit notes or cancelled documents).
    if inv.kind != "credit_note" and inv.status not in ("void", "closed"):
        pdf.ln(6)
        if pdf.get_y() + 20 > pdf.h - pdf.b_margin:
            pdf.add_page()
        pdf.set_font(pdf.face, "B", 8)
        pdf.set_text_color(*GREY)
        pdf.cell(width, 5, "PAYMENT", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_text_color(0, 0, 0)
        pdf.set_font(pdf.face, size=9)
        terms = doc.profile.terms
        due = due_date(doc)
        when = f"due {due}" if due not in (NOT_ISSUED, "on receipt") else "the due date is set when it is issued"
        if inv.status == "uncollectible":
            when = f"was due {due}; written off as uncollectible"
        elif inv.status == "paid":
            when = "paid in full, nothing is due"
        elif due == "on receipt":
            when = "due on receipt"
        pdf.multi_cell(width, 4.8, f"Terms: {terms} - {when}.", align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        if doc.profile.payment_instructions and inv.status != "paid":
            pdf.multi_cell(width, 4.8, doc.profile.payment_instructions, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            if inv.number is not None:
                pdf.multi_cell(width, 4.8, f"Please quote {number} with your payment.",
                               align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)  # fmt: skip
    if inv.status == "draft":
        pdf.ln(6)
        pdf.set_font(pdf.face, "I", 8)
        pdf.set_text_color(*GREY)
        note = f"DRAFT: amounts may still change until this {title.lower()} is finalized and numbered."
        pdf.multi_cell(width, 4, note, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_text_color(0, 0, 0)
    return bytes(pdf.output())
