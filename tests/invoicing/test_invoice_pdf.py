"""PDF invoices: the document parses, shows what a customer needs (seller, buyer, due date, terms, local
dates), with money exact from the stored integers, no text overlapping another, and no text dropped."""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fpdf import FPDF
from PIL import Image
from pypdf import PdfReader
from sqlalchemy import Engine

from invoicing.catalog import (
    Address,
    BillingProfile,
    CustomerDefinition,
    create_customer,
    set_billing_profile,
)
from invoicing.documents import (
    Invoice,
    InvoiceDocument,
    finalize_invoice,
    format_decimal,
    format_minor,
    get_invoice,
    invoice_document,
    list_invoices,
    local_period,
    render_document,
    render_invoice_pdf,
    run_cycle,
    set_tax_rate,
    unicode_font_dir,
)
from invoicing.ledger import Grant, Ledger
from invoicing.subscriptions import change_plan, create_subscription
from metering.errors import FailedPrecondition
from metering.meter import Aggregation, MeterDefinition, create_meter
from tests.conftest import TenantKey
from tests.invoicing.conftest import T0, flat, publish, write_events
from tests.invoicing.test_billing_cli import Run, acme

__all__ = ["acme"]  # fixtures (run comes from tests/conftest.py)

FEB = datetime(2026, 2, 1, tzinfo=UTC)
GRADUATED = {"model": "graduated", "tiers": [{"up_to": "1000", "unit_amount": "0"},
                                             {"up_to": None, "unit_amount": "0.002"}]}  # fmt: skip
SELLER = BillingProfile(
    legal_name="Acme Metering SAS",
    address=Address(line1="3 avenue de l'Opéra", city="Paris", postal_code="75001", country="FR"),
    tax_id="FR40123456789",
    payment_instructions="IBAN FR76 3000 6000 0112 3456 7890 189, BIC AGRIFRPP",
    payment_terms_days=30,
)
needs_dejavu = pytest.mark.skipif(unicode_font_dir() is None, reason="needs DejaVu Sans (fonts-dejavu-core)")


def text_of(pdf: bytes) -> str:
    assert pdf.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(pdf))
    return "\n".join(page.extract_text() for page in reader.pages)


def flat_text(pdf: bytes) -> str:
    return " ".join(text_of(pdf).split())


def usage_invoice(engine: Engine, tenant_id: int) -> Invoice:
    """The document billing January's calls (in arrears)."""
    return next(i for i in list_invoices(engine, tenant_id) if any(ln.charge_code == "calls" for ln in i.lines))


def render(engine: Engine, tenant_id: int, invoice_id: int) -> bytes:
    doc = invoice_document(engine, tenant_id, invoice_id)
    return render_invoice_pdf(doc.invoice, doc.customer, doc.profile, doc.context)


# --- text with positions ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Box:
    """One text run as drawn: its text and its box in points (origin bottom left)."""

    page: int
    text: str
    x0: float
    x1: float
    y0: float
    y1: float

    def overlaps(self, other: Box, slack: float = 0.3) -> bool:
        return (
            self.page == other.page
            and min(self.x1, other.x1) - max(self.x0, other.x0) > slack
            and min(self.y1, other.y1) - max(self.y0, other.y0) > slack
        )


_MEASURE: dict[str, FPDF] = {}


def _width(text: str, base_font: str, size: float) -> float:
    """Width in points of `text` in the PDF's font, measured with fpdf2's own metrics."""
    name = base_font.split("+")[-1].lstrip("/")
    style = "B" if "Bold" in name else "I" if ("Oblique" in name or "Italic" in name) else ""
    if "DejaVu" in name:
        key = "dejavu"
        if key not in _MEASURE:
            font_dir = unicode_font_dir()
            assert font_dir is not None
            pdf = FPDF(unit="pt")
            for s, f in {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf", "I": "DejaVuSans-Oblique.ttf"}.items():
                pdf.add_font("DejaVu", s, str(font_dir / f))
            _MEASURE[key] = pdf
        family = "DejaVu"
    else:
        key = "core"
        if key not in _MEASURE:
            _MEASURE[key] = FPDF(unit="pt")
            _MEASURE[key].core_fonts_encoding = "windows-1252"
        family = "Helvetica"
    pdf = _MEASURE[key]
    pdf.set_font(family, style, size)
    return float(pdf.get_string_width(text))


def boxes(pdf: bytes) -> list[Box]:
    out: list[Box] = []
    for number, page in enumerate(PdfReader(io.BytesIO(pdf)).pages):

        def visit(text: str, cm: Any, tm: Any, font: Any, size: float, number: int = number) -> None:
            shown = text.strip()
            if not shown or font is None:
                return
            x, y = tm[4] * cm[0] + cm[4], tm[5] * cm[3] + cm[5]
            w = _width(shown, str(font.get("/BaseFont", "")), size)
            out.append(Box(number, shown, x, x + w, y - 0.22 * size, y + 0.72 * size))

        page.extract_text(visitor_text=visit)
    return out


def box(found: list[Box], text: str) -> Box:
    matches = [b for b in found if b.text == text]
    assert matches, (text, [b.text for b in found])
    return matches[0]


def assert_nothing_overlaps(pdf: bytes) -> None:
    found = boxes(pdf)
    clashes = [(a.text, b.text) for i, a in enumerate(found) for b in found[i + 1 :] if a.overlaps(b)]
    assert not clashes, clashes


def same_row_right_of(found: list[Box], label: str, value: str) -> None:
    """The value sits on the label's row, to its right, with no overlap."""
    lab = box(found, label)
    values = [b for b in found if b.text == value and b.page == lab.page]
    assert values, (value, [b.text for b in found])
    val = min(values, key=lambda b: abs(b.y0 - lab.y0))  # the same text may also be elsewhere (the header)
    assert abs(lab.y0 - val.y0) < 1, (lab, val)
    assert val.x0 >= lab.x1, (lab, val)
    assert not lab.overlaps(val)


# --- formatting -----------------------------------------------------------------------------------------------
def test_exact_money_formatting() -> None:
    assert format_minor(123456, 2) == "1,234.56"
    assert format_minor(-1645, 2) == "-16.45"
    assert format_minor(5, 2) == "0.05"
    assert format_minor(1500, 0) == "1,500"  # JPY
    assert format_minor(1234567, 3) == "1,234.567"  # BHD
    assert format_minor(2**63 - 1, 2) == "92,233,720,368,547,758.07"  # beyond float precision, still exact
    assert format_decimal("30", 2) == "30.00" and format_decimal("0.0015", 2) == "0.0015"


def test_periods_are_local_dates_with_an_inclusive_end() -> None:
    paris = ZoneInfo("Europe/Paris")
    start = datetime(2026, 11, 1, tzinfo=paris).astimezone(UTC)  # 2026-10-31T23:00Z
    end = datetime(2026, 12, 1, tzinfo=paris).astimezone(UTC)
    assert local_period(start, end, paris) == "1 Nov 2026 – 30 Nov 2026"
    # The same instants read in UTC are not whole days: times are shown, never silently other dates.
    assert local_period(start, end, ZoneInfo("UTC")) == "31 Oct 2026 23:00 – 30 Nov 2026 23:00"
    # A DST change inside the period does not matter (March in Paris has a 23-hour day).
    march = datetime(2026, 3, 1, tzinfo=paris), datetime(2026, 4, 1, tzinfo=paris)
    assert local_period(march[0], march[1], paris) == "1 Mar 2026 – 31 Mar 2026"
    # A span cut within a day shows the local time where it starts or stops.
    utc = ZoneInfo("UTC")
    assert local_period(FEB + timedelta(hours=12), FEB + timedelta(days=3), utc) == "1 Feb 2026 12:00 – 3 Feb 2026"
    assert local_period(FEB, FEB + timedelta(days=14, hours=12), utc) == "1 Feb 2026 – 15 Feb 2026 12:00"
    assert (
        local_period(FEB + timedelta(hours=1), FEB + timedelta(hours=2), utc) == "1 Feb 2026 01:00 – 1 Feb 2026 02:00"
    )


# --- documents from real invoice runs ----------------------------------------------------------------------
@pytest.fixture
def billed(engine: Engine, tenant: TenantKey) -> int:
    """cus_42 in FR (20% exclusive) on a $30 + graduated plan, with a $10 grant, upgraded mid-January;
    the tenant's billing profile names the seller."""
    tid = tenant.tenant_id
    address = Address(line1="12 rue de la Paix", city="Paris", postal_code="75002", country="FR")
    create_customer(engine, tid, CustomerDefinition(
        external_id="cus_42", name="Ada Analytics SARL", timezone="UTC", tax_region="FR", address=address,
        email="billing@ada.example", tax_id="FR98765432101"), T0)  # fmt: skip
    set_billing_profile(engine, tid, SELLER, T0)
    set_tax_rate(engine, tid, "FR", "20", False, T0)
    publish(engine, tid, "pro", [
        {"code": "base", "kind": "flat", "price": flat("30")},
        {"code": "calls", "kind": "usage", "meter": "api_calls", "price": GRADUATED},
    ])  # fmt: skip
    publish(engine, tid, "max", [{"code": "base", "kind": "flat", "price": flat("62")}])
    sub = create_subscription(engine, tid, "cus_42", "pro", T0)
    Ledger(engine, tid).grant(Grant("welcome", "cus_42", 1000, "USD", kind="promotional", effective_at_us=0))
    write_events(engine, tid, [(f"e{k}", "cus_42", "api_calls", T0 + timedelta(minutes=k), 1, None)
                               for k in range(1500)])  # fmt: skip
    run_cycle(engine, tid, T0 + timedelta(days=1))
    # January's invoice is issued before the upgrade, so the upgrade corrects it with a credit note (a
    # draft would be re-rated in place instead).
    finalize_invoice(engine, tid, list_invoices(engine, tid)[0].id or 0, datetime(2026, 1, 2, 9, tzinfo=UTC))
    change_plan(engine, tid, sub.id, "max", datetime(2026, 1, 15, 12, tzinfo=UTC))
    run_cycle(engine, tid, FEB)
    return tid


def test_finalized_invoice_shows_seller_buyer_due_date_and_terms(engine: Engine, billed: int) -> None:
    first = list_invoices(engine, billed)[0]
    assert (first.subtotal, first.tax, first.credits_applied, first.total) == (3000, 600, 1000, 2600)
    a_draft = next(i for i in list_invoices(engine, billed) if i.status == "draft")
    draft = flat_text(render(engine, billed, a_draft.id or 0))
    assert "INVOICE" in draft and "DRAFT" in draft and "Due date draft — not yet issued" in draft, draft
    inv = get_invoice(engine, billed, first.id or 0)
    pdf = render(engine, billed, inv.id or 0)
    text = flat_text(pdf)
    for needle in (
        # seller
        "Acme Metering SAS", "3 avenue de l'Opéra", "75001 Paris", "Tax ID: FR40123456789",
        # buyer
        "BILL TO", "Ada Analytics SARL", "12 rue de la Paix", "75002 Paris", "Tax ID: FR98765432101",
        "Tax region: FR", "Customer ID: cus_42",
        # the facts, with the issue and due dates as local dates and the period's end inclusive
        "INV-000001", "Issue date 2 Jan 2026", "Due date 1 Feb 2026", "Payment terms Net 30",
        "Billing period 1 Jan 2026 – 31 Jan 2026", "Currency USD", "Plan Pro", "Status Issued",
        # money
        "base", "1 month", "30.00", "Subtotal 30.00", "Tax FR 20% (exclusive) 6.00", "Credits applied -10.00",
        "Total due (USD) 26.00", "grant welcome",
        # how to pay
        "Terms: Net 30 - due 1 Feb 2026.", "IBAN FR76 3000 6000 0112 3456 7890 189", "Please quote INV-000001",
    ):  # fmt: skip
        assert needle in text, (needle, text)
    assert "DRAFT" not in text and "acme -" not in text  # the legal name replaces the tenant's name
    # The same stored invoice renders to the same bytes (creation date = issue date).
    assert render(engine, billed, inv.id or 0) == pdf


def test_no_label_overlaps_its_value(engine: Engine, billed: int) -> None:
    inv = get_invoice(engine, billed, list_invoices(engine, billed)[0].id or 0)
    pdf = render(engine, billed, inv.id or 0)
    found = boxes(pdf)
    for label, value in (
        ("Invoice number", "INV-000001"), ("Issue date", "2 Jan 2026"), ("Due date", "1 Feb 2026"),
        ("Payment terms", "Net 30"), ("Billing period", "1 Jan 2026 – 31 Jan 2026"), ("Currency", "USD"),
        ("Status", "Issued"), ("Subtotal", "30.00"), ("Tax FR 20% (exclusive)", "6.00"),
        ("Credits applied", "-10.00"), ("Total due (USD)", "26.00"),
    ):  # fmt: skip
        same_row_right_of(found, label, value)
    assert_nothing_overlaps(pdf)


def test_long_values_wrap_instead_of_overlapping(engine: Engine, billed: int) -> None:
    """A plan name, seller name and void reason far wider than their columns still never overlap."""
    inv = list_invoices(engine, billed)[0]
    doc = invoice_document(engine, billed, inv.id or 0)
    long = "Enterprise platform with premium support and a very long descriptive name"
    doc = dataclasses.replace(
        doc,
        invoice=dataclasses.replace(doc.invoice, status="void", voided_at=FEB),
        profile=dataclasses.replace(doc.profile, legal_name="Acme Metering Société par actions simplifiée " * 3),
        context=dataclasses.replace(doc.context, plan_name=long, void_reason="duplicate " * 20),
    )
    pdf = render_document(doc)
    text = flat_text(pdf)
    assert "Enterprise platform with premium support" in text and "very long descriptive name" in text
    assert_nothing_overlaps(pdf)


def test_tier_breakdown_as_sub_lines(engine: Engine, billed: int) -> None:
    arrears = usage_invoice(engine, billed)
    text = flat_text(render(engine, billed, arrears.id or 0))
    # 1,500 calls: 1,000 free, 500 x 0.002 = 1.000 -> 1.00, on its own service period (January).
    assert "calls - api_calls, 1 Jan 2026 – 31 Jan 2026 1,500 api_calls tiered 1.00" in text, text
    assert "tier 1 (0 to 1,000) 1,000 api_calls 0 0" in text
    assert "tier 2 (1,000 and up) 500 api_calls 0.002 1.000" in text
    assert f"Total due (USD) {format_minor(arrears.total, 2)}" in text


def test_credit_note_is_titled_and_references_the_original(engine: Engine, billed: int) -> None:
    invs = list_invoices(engine, billed)
    (note,) = [i for i in invs if i.kind == "credit_note"]
    pdf = render(engine, billed, note.id or 0)
    text = flat_text(pdf)
    assert "CREDIT NOTE" in text and "Corrects invoice INV-000001" in text
    assert "Proration adjustment: base" in text and "-16.45" in text and "billed 30.00, now 13.55" in text
    assert "Total credited (USD) -19.74" in text  # -16.45 - 3.29 tax
    assert "Payment terms" not in text and "PAYMENT" not in text  # nothing to pay on a credit note
    assert_nothing_overlaps(pdf)


def test_paid_and_partially_paid_show_amount_paid_and_due(engine: Engine, billed: int) -> None:
    inv = get_invoice(engine, billed, list_invoices(engine, billed)[0].id or 0)
    doc = invoice_document(engine, billed, inv.id or 0)
    partial = dataclasses.replace(doc.invoice, status="partially_paid", amount_paid=1000, amount_due=1600)
    pdf = render_document(dataclasses.replace(doc, invoice=partial))
    text = flat_text(pdf)
    assert "Total (USD) 26.00" in text and "Amount paid -10.00" in text and "Amount due (USD) 16.00" in text, text
    assert "Status Partially paid" in text and "due 1 Feb 2026" in text
    found = boxes(pdf)
    same_row_right_of(found, "Amount paid", "-10.00")
    same_row_right_of(found, "Amount due (USD)", "16.00")
    assert_nothing_overlaps(pdf)
    paid = dataclasses.replace(
        doc.invoice, status="paid", amount_paid=2600, amount_due=0, paid_at=datetime(2026, 1, 20, 23, tzinfo=UTC)
    )
    text = flat_text(render_document(dataclasses.replace(doc, invoice=paid)))
    assert "Amount paid -26.00" in text and "Amount due (USD) 0.00" in text and "Status Paid 20 Jan 2026" in text
    assert "paid in full" in text and "IBAN" not in text  # no payment instructions on a paid invoice


def test_due_on_receipt_and_dates_in_the_customer_zone(engine: Engine, billed: int) -> None:
    """Issued at 23:30 UTC on 31 Oct: that is already 1 Nov in Paris, and the Paris month is 1-30 Nov."""
    inv = list_invoices(engine, billed)[0]
    doc = invoice_document(engine, billed, inv.id or 0)
    paris = ZoneInfo("Europe/Paris")
    start = datetime(2026, 11, 1, tzinfo=paris).astimezone(UTC)
    end = datetime(2026, 12, 1, tzinfo=paris).astimezone(UTC)
    issued = datetime(2026, 10, 31, 23, 30, tzinfo=UTC)
    invoice = dataclasses.replace(
        doc.invoice, status="finalized", number=7, number_series="invoice", period_start=start, period_end=end,
        span_start=start, span_end=end, finalized_at=issued, payment_due_at=issued,
        lines=tuple(dataclasses.replace(ln, period_start=start, period_end=end) for ln in doc.invoice.lines),
    )  # fmt: skip
    doc = dataclasses.replace(
        doc,
        invoice=invoice,
        customer=dataclasses.replace(doc.customer, timezone="Europe/Paris"),
        profile=dataclasses.replace(doc.profile, payment_terms_days=0),
    )
    text = flat_text(render_document(doc))
    assert "Billing period 1 Nov 2026 – 30 Nov 2026" in text, text
    assert "Issue date 1 Nov 2026" in text and "Due date 1 Nov 2026" in text
    assert "Payment terms Due on receipt" in text and "dates in Europe/Paris time" in text
    assert "2026-10-31" not in text and "31 Oct" not in text


def test_sla_credit_shows_the_reading_and_packages_their_size(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    create_customer(engine, tid, CustomerDefinition(external_id="cus_1", name="Ada", timezone="UTC"), T0)
    create_meter(engine, tid, MeterDefinition(code="uptime", aggregation=Aggregation.MIN, value_scale=2, unit="%"))
    publish(engine, tid, "ops", [
        {"code": "calls", "kind": "usage", "meter": "api_calls",
         "price": {"model": "package", "package_size": "1000", "package_amount": "5"}},
        {"code": "sla", "kind": "usage", "meter": "uptime",
         "price": {"model": "sla_credit", "affected_fee": "100", "metric": "uptime_percent",
                   "tiers": [{"threshold": "99.9", "credit_percent": "10"},
                             {"threshold": "99", "credit_percent": "25"}]}},
    ])  # fmt: skip
    create_subscription(engine, tid, "cus_1", "ops", T0)
    write_events(engine, tid, [
        *[(f"c{k}", "cus_1", "api_calls", T0 + timedelta(minutes=k), 1, None) for k in range(2500)],
        ("u1", "cus_1", "uptime", T0 + timedelta(days=3), 9995, None),
        ("u2", "cus_1", "uptime", T0 + timedelta(days=9), 9950, None),  # 99.50 %: misses 99.9
    ])  # fmt: skip
    run_cycle(engine, tid, FEB)
    (inv,) = list_invoices(engine, tid)
    pdf = render(engine, tid, inv.id or 0)
    text = flat_text(pdf)
    # 2,500 calls = 3 started packages of 1,000 at 5.00 each.
    assert "2,500 api_calls 5.00 per 1,000 15.00" in text, text
    assert "packages of 1000 (0 and up) 3 packages 5 15" in text
    # The SLA line shows the measured reading, and the tier it missed.
    assert "SLA credit: sla - uptime measured 99.50 % -10.00" in text
    assert "uptime_percent 99.50 missed 99.9: credit 10% of fee -10" in text
    assert_nothing_overlaps(pdf)
    # Without the rater's breakdown the package size comes from the plan's price.
    doc = invoice_document(engine, tid, inv.id or 0)
    bare = tuple(dataclasses.replace(ln, detail={"model": ln.detail["model"]}) for ln in doc.invoice.lines)
    doc = invoice_document(engine, tid, inv.id or 0)
    from invoicing.documents import document_context

    plain = dataclasses.replace(doc.invoice, lines=bare)
    context = document_context(engine, tid, plain)
    assert context.package_sizes == {1: Decimal(1000)}
    assert "5.00 per 1,000" in flat_text(render_invoice_pdf(plain, doc.customer, doc.profile, context))


def test_inclusive_tax_and_zero_decimal_currency(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    create_customer(engine, tid, CustomerDefinition(external_id="jp", currency="JPY", timezone="UTC",
                                                    tax_region="JP"), T0)  # fmt: skip
    set_tax_rate(engine, tid, "JP", "10", True, T0)
    publish(engine, tid, "jp", [{"code": "base", "kind": "flat", "price": flat("11000", currency="JPY")}],
            currency="JPY")  # fmt: skip
    create_subscription(engine, tid, "jp", "jp", T0)
    run_cycle(engine, tid, T0)
    (inv,) = list_invoices(engine, tid)
    pdf = render(engine, tid, inv.id or 0)
    text = flat_text(pdf)
    assert "Tax JP 10% (included in the prices) 1,000" in text, text
    assert "Total due (JPY) 11,000" in text and "11,000.00" not in text
    assert "acme" in text  # no billing profile: the tenant's name is the seller, terms are the default
    assert "Payment terms Net 30" in text
    assert_nothing_overlaps(pdf)


def png(width: int = 240, height: int = 80) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (20, 90, 160)).save(buf, format="PNG")
    return buf.getvalue()


def test_logo_is_drawn_in_the_header(engine: Engine, billed: int) -> None:
    set_billing_profile(engine, billed, {"logo": png()}, T0)
    inv = list_invoices(engine, billed)[0]
    pdf = render(engine, billed, inv.id or 0)
    page = PdfReader(io.BytesIO(pdf)).pages[0]
    assert len(page.images) == 1
    assert "Acme Metering SAS" in flat_text(pdf)
    assert_nothing_overlaps(pdf)


# --- fonts: never fold, never drop ----------------------------------------------------------------------------
def test_many_lines_span_pages(engine: Engine, billed: int) -> None:
    doc = invoice_document(engine, billed, usage_invoice(engine, billed).id or 0)
    lines = tuple(dataclasses.replace(doc.invoice.lines[0], group_key=f'{{"region":"r{k}"}}') for k in range(60))
    doc = dataclasses.replace(doc, invoice=dataclasses.replace(doc.invoice, lines=lines))
    pdf = render_document(doc)
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) > 1
    text = text_of(pdf)
    assert text.count("Description") == len(reader.pages)  # headings repeat on every page
    assert "region=r59" in text and "Total due" in text and f"Page {len(reader.pages)} of {len(reader.pages)}" in text
    assert_nothing_overlaps(pdf)


def test_default_font_is_helvetica_unless_the_text_needs_more(engine: Engine, billed: int) -> None:
    """Windows-1252 documents (€, dashes, French accents) skip embedding a TrueType font (the slow part)."""
    inv = list_invoices(engine, billed)[0]
    doc = invoice_document(engine, billed, inv.id or 0)
    plain = render_document(dataclasses.replace(doc, customer=dataclasses.replace(doc.customer, name="Café – €")))
    assert b"DejaVu" not in plain and b"Helvetica" in plain and "Café – €" in text_of(plain)
    polish = dataclasses.replace(doc, customer=dataclasses.replace(doc.customer, name="Łukasz Żółć"))
    if unicode_font_dir() is None:
        with pytest.raises(FailedPrecondition, match="fonts-dejavu-core"):
            render_document(polish)
    else:
        rendered = render_document(polish)
        assert b"DejaVu" in rendered and "Łukasz Żółć" in text_of(rendered)
    # Helvetica only, asked explicitly: refused rather than folded to "Lukasz Zolc".
    with pytest.raises(FailedPrecondition, match="the customer name 'Łukasz Żółć'"):
        render_document(polish, None)


@needs_dejavu
@pytest.mark.parametrize("name", ["Αθηναϊκή Ανάλυση Α.Ε.", "ООО «Аналитика Москва»", "Երևան Analytics"])
def test_names_dejavu_covers_render_as_they_are(engine: Engine, billed: int, name: str) -> None:
    inv = list_invoices(engine, billed)[0]
    doc = invoice_document(engine, billed, inv.id or 0)
    doc = dataclasses.replace(doc, customer=dataclasses.replace(doc.customer, name=name))
    pdf = render_document(doc)
    assert name in text_of(pdf)
    assert_nothing_overlaps(pdf)


@pytest.mark.parametrize(
    ("name", "char"),
    [("தமிழ் Analytics", "த"), ("አበበ Trading PLC", "አ"), ("株式会社アナリティクス", "株"), ("شركة التحليلات", "ش")],
)
def test_a_name_no_font_can_set_fails_and_writes_nothing(engine: Engine, billed: int, name: str, char: str) -> None:
    """Tamil, Ethiopic and CJK are not in DejaVu Sans; Arabic is, but its letters must join (shaping)."""
    inv = list_invoices(engine, billed)[0]
    doc = invoice_document(engine, billed, inv.id or 0)
    doc = dataclasses.replace(doc, customer=dataclasses.replace(doc.customer, name=name))
    with pytest.raises(FailedPrecondition) as err:
        render_document(doc)
    message = str(err.value)
    assert "the customer name" in message and name in message, message
    if unicode_font_dir() is not None:
        assert f"U+{ord(char):04X}" in message and "nothing was written" in message


def test_a_seller_field_no_font_can_set_is_named(engine: Engine, billed: int) -> None:
    inv = list_invoices(engine, billed)[0]
    doc: InvoiceDocument = invoice_document(engine, billed, inv.id or 0)
    doc = dataclasses.replace(doc, profile=dataclasses.replace(doc.profile, payment_instructions="付款 to IBAN"))
    with pytest.raises(FailedPrecondition, match="the payment instructions"):
        render_document(doc)


# --- CLI -------------------------------------------------------------------------------------------------------
def test_cli_export_pdf(run: Run, acme: Path, tmp_path: Path) -> None:
    assert run("customer", "create", "acme", "cus_42", "--name", "Ada", "--tax-id", "GB123456789")[0] == 0
    assert run("profile", "set", "acme", "--legal-name", "Acme Ltd", "--terms-days", "14")[0] == 0
    assert run("plan", "create", "acme", str(acme))[0] == 0
    assert run("plan", "publish", "acme", "pro")[0] == 0
    assert run("subscription", "create", "acme", "cus_42", "pro", "--at", "2026-01-01T00:00Z")[0] == 0
    assert run("invoice", "run", "acme", "--as-of", "2026-01-01T00:00Z")[0] == 0
    assert run("invoice", "finalize", "acme", "1")[0] == 0
    out_file = tmp_path / "inv.pdf"
    code, out, err = run("invoice", "export", "acme", "1", "--format", "pdf", "--output", str(out_file))
    assert code == 0, (out, err)
    assert "wrote" in out
    text = flat_text(out_file.read_bytes())
    assert "INV-000001" in text and "Total due (USD) 30.00" in text
    assert "Acme Ltd" in text and "Tax ID: GB123456789" in text and "Payment terms Net 14" in text
    code, _, err = run("invoice", "export", "acme", "1", "--format", "pdf")
    assert code == 1 and "--output" in err
    json_file = tmp_path / "inv.json"
    assert run("invoice", "export", "acme", "1", "--output", str(json_file))[0] == 0
    assert '"total": "30.00"' in json_file.read_text() and '"seller_name": "Acme Ltd"' in json_file.read_text()


def test_cli_export_of_a_name_no_font_covers_writes_no_file(run: Run, acme: Path, tmp_path: Path) -> None:
    assert run("customer", "create", "acme", "cus_ta", "--name", "தமிழ் Analytics")[0] == 0
    assert run("plan", "create", "acme", str(acme))[0] == 0
    assert run("plan", "publish", "acme", "pro")[0] == 0
    assert run("subscription", "create", "acme", "cus_ta", "pro", "--at", "2026-01-01T00:00Z")[0] == 0
    assert run("invoice", "run", "acme", "--as-of", "2026-01-01T00:00Z")[0] == 0
    out_file = tmp_path / "inv.pdf"
    code, _, err = run("invoice", "export", "acme", "1", "--format", "pdf", "--output", str(out_file))
    assert code == 1 and "the customer name" in err and len(err.strip().splitlines()) == 1, err
    assert not out_file.exists()
