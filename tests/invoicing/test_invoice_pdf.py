"""PDF invoices: the document parses, shows what a customer needs, with money exact from the stored integers."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pypdf import PdfReader
from sqlalchemy import Engine

from invoicing.catalog import Address, CustomerDefinition, create_customer
from invoicing.documents import (
    finalize_invoice,
    format_decimal,
    format_minor,
    invoice_document,
    latin1,
    list_invoices,
    render_document,
    render_invoice_pdf,
    run_cycle,
    set_tax_rate,
)
from invoicing.ledger import Grant, Ledger
from invoicing.subscriptions import change_plan, create_subscription
from tests.conftest import TenantKey
from tests.invoicing.conftest import T0, flat, publish, write_events
from tests.invoicing.test_billing_cli import Run, acme

__all__ = ["acme"]  # fixtures (run comes from tests/conftest.py)

FEB = datetime(2026, 2, 1, tzinfo=UTC)
GRADUATED = {"model": "graduated", "tiers": [{"up_to": "1000", "unit_amount": "0"},
                                             {"up_to": None, "unit_amount": "0.002"}]}  # fmt: skip


def text_of(pdf: bytes) -> str:
    assert pdf.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(pdf))
    return "\n".join(page.extract_text() for page in reader.pages)


def flat_text(pdf: bytes) -> str:
    return " ".join(text_of(pdf).split())


def test_exact_money_formatting() -> None:
    assert format_minor(123456, 2) == "1,234.56"
    assert format_minor(-1645, 2) == "-16.45"
    assert format_minor(5, 2) == "0.05"
    assert format_minor(1500, 0) == "1,500"  # JPY
    assert format_minor(1234567, 3) == "1,234.567"  # BHD
    assert format_minor(2**63 - 1, 2) == "92,233,720,368,547,758.07"  # beyond float precision, still exact
    assert format_decimal("30", 2) == "30.00" and format_decimal("0.0015", 2) == "0.0015"
    assert latin1("Łódź – café, 株") == "Lódz - café, ?"


@pytest.fixture
def billed(engine: Engine, tenant: TenantKey) -> int:
    """cus_42 in FR (20% exclusive) on a $30 + graduated plan, with a $10 grant, upgraded mid-January."""
    tid = tenant.tenant_id
    address = Address(line1="12 rue de la Paix", city="Paris", postal_code="75002", country="FR")
    create_customer(engine, tid, CustomerDefinition(
        external_id="cus_42", name="Ada Analytics SARL", timezone="UTC", tax_region="FR", address=address,
        email="billing@ada.example"), T0)  # fmt: skip
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
    change_plan(engine, tid, sub.id, "max", datetime(2026, 1, 15, 12, tzinfo=UTC))
    run_cycle(engine, tid, FEB)
    return tid


def test_finalized_invoice_with_credits_and_tax(engine: Engine, billed: int) -> None:
    first = list_invoices(engine, billed)[0]
    assert (first.subtotal, first.tax, first.credits_applied, first.total) == (3000, 600, 1000, 2600)
    draft = flat_text(render_invoice_pdf(engine, billed, first.id or 0))
    assert "INVOICE" in draft and "DRAFT" in draft
    inv = finalize_invoice(engine, billed, first.id or 0, datetime(2026, 1, 2, 9, tzinfo=UTC))
    pdf = render_invoice_pdf(engine, billed, inv.id or 0)
    text = flat_text(pdf)
    for needle in ("acme", "Ada Analytics SARL", "12 rue de la Paix", "75002 Paris", "Tax region: FR",
                   "INV-000001", "Issue date 2026-01-02", "2026-01-01 to 2026-01-31", "Currency USD",
                   "base", "1 month", "30.00", "Subtotal 30.00", "Tax FR 20% (exclusive) 6.00",
                   "Credits applied -10.00", "Total due (USD) 26.00", "grant welcome"):  # fmt: skip
        assert needle in text, (needle, text)
    assert "DRAFT" not in text
    # The same stored invoice renders to the same bytes (creation date = issue date).
    assert render_invoice_pdf(engine, billed, inv.id or 0) == pdf


def test_tier_breakdown_as_sub_lines(engine: Engine, billed: int) -> None:
    (arrears,) = [i for i in list_invoices(engine, billed) if i.timing == "in_arrears"]
    text = flat_text(render_invoice_pdf(engine, billed, arrears.id or 0))
    # 1,500 calls: 1,000 free, 500 x 0.002 = 1.000 -> 1.00; tax 0.20.
    assert "1,500 api_calls tiered 1.00" in text, text
    assert "tier 1 (0 to 1,000) 1,000 api_calls 0 0" in text
    assert "tier 2 (1,000 and up) 500 api_calls 0.002 1.000" in text
    assert "Total due (USD) 1.20" in text


def test_credit_note_is_titled_and_references_the_original(engine: Engine, billed: int) -> None:
    invs = list_invoices(engine, billed)
    finalize_invoice(engine, billed, invs[0].id or 0, T0)
    (note,) = [i for i in invs if i.kind == "credit_note"]
    text = flat_text(render_invoice_pdf(engine, billed, note.id or 0))
    assert "CREDIT NOTE" in text and "Corrects invoice INV-000001" in text
    assert "Proration adjustment: base" in text and "-16.45" in text and "billed 30.00, now 13.55" in text
    assert "Total credited (USD) -19.74" in text  # -16.45 - 3.29 tax


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
    text = flat_text(render_invoice_pdf(engine, tid, inv.id or 0))
    assert "Tax JP 10% (included in the prices) 1,000" in text, text
    assert "Total due (JPY) 11,000" in text and "11,000.00" not in text


def test_many_lines_span_pages_and_core_font_fallback(engine: Engine, billed: int) -> None:
    import dataclasses

    (arrears,) = [i for i in list_invoices(engine, billed) if i.timing == "in_arrears"]
    doc = invoice_document(engine, billed, arrears.id or 0)
    lines = tuple(dataclasses.replace(doc.invoice.lines[0], group_key=f'{{"region":"r{k}"}}') for k in range(60))
    doc = dataclasses.replace(doc, invoice=dataclasses.replace(doc.invoice, lines=lines))
    doc = dataclasses.replace(doc, customer=dataclasses.replace(doc.customer, name="Łukasz Żółć"))
    for font_dir in (None, doc_font_dir()):
        pdf = render_document(doc, font_dir)
        reader = PdfReader(io.BytesIO(pdf))
        assert len(reader.pages) > 1
        text = text_of(pdf)
        assert text.count("Description") == len(reader.pages)  # headings repeat on every page
        assert "region=r59" in text and "Total due" in text
        assert ("Lukasz Zólc" if font_dir is None else "Łukasz Żółć") in text


def doc_font_dir() -> Path | None:
    from invoicing.documents import unicode_font_dir

    return unicode_font_dir()


def test_cli_export_pdf(run: Run, acme: Path, tmp_path: Path) -> None:
    assert run("customer", "create", "acme", "cus_42", "--name", "Ada")[0] == 0
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
    code, _, err = run("invoice", "export", "acme", "1", "--format", "pdf")
    assert code == 1 and "--output" in err
    json_file = tmp_path / "inv.json"
    assert run("invoice", "export", "acme", "1", "--output", str(json_file))[0] == 0
    assert '"total": "30.00"' in json_file.read_text()


def test_default_font_is_helvetica_unless_the_text_needs_more(engine: Engine, billed: int) -> None:
    """Latin-1 documents skip embedding a TrueType font (the slow part); others embed DejaVu if present."""
    import dataclasses

    inv = list_invoices(engine, billed)[0]
    doc = invoice_document(engine, billed, inv.id or 0)
    plain = render_document(doc)
    assert b"DejaVu" not in plain and b"Helvetica" in plain
    polish = dataclasses.replace(doc, customer=dataclasses.replace(doc.customer, name="Łukasz Żółć"))
    rendered = render_document(polish)
    if doc_font_dir() is None:
        assert "Lukasz Zólc" in text_of(rendered)
    else:
        assert b"DejaVu" in rendered and "Łukasz Żółć" in text_of(rendered)
