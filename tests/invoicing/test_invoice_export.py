"""JSON and CSV exports carry what the API carries: the parties, the plan, the dates and every amount."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from invoicing.catalog import Address, BillingProfile, CustomerDefinition, create_customer, set_billing_profile
from invoicing.documents import (
    CSV_COLUMNS,
    export_invoice,
    finalize_invoice,
    invoice_document,
    list_invoices,
    run_cycle,
)
from invoicing.subscriptions import create_subscription
from metering.errors import InvalidArgument
from tests.conftest import TenantKey
from tests.invoicing.conftest import T0, flat, publish, write_events

ISSUED = datetime(2026, 2, 1, 9, tzinfo=UTC)


@pytest.fixture
def issued(engine: Engine, tenant: TenantKey) -> int:
    """cus_42 on plan pro ($30 a month in advance + calls in arrears), January's invoice finalized."""
    tid = tenant.tenant_id
    create_customer(engine, tid, CustomerDefinition(
        external_id="cus_42", name="Ada Analytics SARL", tax_id="FR98765432101",
        address=Address(line1="12 rue de la Paix", city="Paris", postal_code="75002", country="FR"),
    ), T0)  # fmt: skip
    set_billing_profile(engine, tid, BillingProfile(legal_name="Acme Metering SAS", tax_id="FR40123456789",
                                                    payment_terms_days=14), T0)  # fmt: skip
    publish(engine, tid, "pro", [
        {"code": "base", "kind": "flat", "price": flat("30")},
        {"code": "calls", "kind": "usage", "meter": "api_calls", "price": {"model": "per_unit", "unit_amount": "0.01"}},
    ])  # fmt: skip
    create_subscription(engine, tid, "cus_42", "pro", T0)
    write_events(engine, tid, [(f"e{k}", "cus_42", "api_calls", T0 + timedelta(hours=k), 1, None) for k in range(250)])
    run_cycle(engine, tid, T0)
    (first,) = list_invoices(engine, tid)
    finalize_invoice(engine, tid, first.id or 0, ISSUED)
    return first.id or 0


def test_json_carries_the_parties_plan_dates_and_amounts(engine: Engine, tenant: TenantKey, issued: int) -> None:
    doc = invoice_document(engine, tenant.tenant_id, issued)
    data = json.loads(export_invoice(doc.invoice, "json", customer=doc.customer, profile=doc.profile,
                                     plan_code=doc.context.plan_code))  # fmt: skip
    assert data["customer"] == "cus_42" and data["customer_name"] == "Ada Analytics SARL"
    assert data["customer_tax_id"] == "FR98765432101"
    assert data["customer_address"] == {"line1": "12 rue de la Paix", "line2": "", "city": "Paris", "region": "",
                                        "postal_code": "75002", "country": "FR"}  # fmt: skip
    assert (data["seller_name"], data["seller_tax_id"], data["plan"]) == ("Acme Metering SAS", "FR40123456789", "pro")
    assert data["issued_at"] == ISSUED.isoformat() and data["paid_at"] is None
    assert data["payment_due_at"] == (ISSUED + timedelta(days=14)).isoformat()  # issue date + the seller's terms
    assert data["status"] == "finalized" and data["label"] == "INV-000001"
    for key in ("subtotal", "tax", "credits_applied", "total", "amount_paid", "amount_due"):
        assert isinstance(data[key], str), key  # exact decimals, never floats
    assert data["total"] == "30.00" and data["amount_paid"] == "0.00"
    assert [ln["charge"] for ln in data["lines"]] == ["base"]


def test_csv_repeats_the_invoice_columns_on_every_line(engine: Engine, tenant: TenantKey, issued: int) -> None:
    tid = tenant.tenant_id
    run_cycle(engine, tid, datetime(2026, 2, 1, tzinfo=UTC))  # January's calls and February's fee
    docs = [invoice_document(engine, tid, i.id or 0) for i in list_invoices(engine, tid)]
    doc = next(d for d in docs if any(ln.charge_code == "calls" for ln in d.invoice.lines))
    text = export_invoice(doc.invoice, "csv", customer=doc.customer, profile=doc.profile,
                          plan_code=doc.context.plan_code)  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == len(doc.invoice.lines) >= 2
    for row in rows:
        assert (row["customer"], row["customer_name"], row["customer_tax_id"]) == (
            "cus_42", "Ada Analytics SARL", "FR98765432101"
        )  # fmt: skip
        assert row["customer_address"] == "12 rue de la Paix, 75002 Paris, FR"
        assert (row["seller_name"], row["seller_tax_id"], row["plan"]) == ("Acme Metering SAS", "FR40123456789", "pro")
        assert row["total"] == str(doc.invoice.money(doc.invoice.total)) and row["status"] == "draft"
        assert row["issued_at"] == "" and row["amount_due"] == "0.00"
    calls = next(r for r in rows if r["charge"] == "calls")
    assert (calls["quantity"], calls["unit_price"], calls["amount"]) == ("250", "0.01", "2.50")
    assert calls["period_start"] == "2026-01-01T00:00:00+00:00" and calls["period_end"] == "2026-02-01T00:00:00+00:00"
    # The issued January invoice has its dates on every row.
    first = invoice_document(engine, tid, issued)
    (row,) = csv.DictReader(io.StringIO(export_invoice(first.invoice, "csv", customer=first.customer)))
    assert row["issued_at"] == ISSUED.isoformat() and row["label"] == "INV-000001"
    assert row["seller_name"] == "" and row["plan"] == ""  # not given: empty, never guessed


def test_an_invoice_without_lines_still_has_a_row(engine: Engine, tenant: TenantKey, issued: int) -> None:
    doc = invoice_document(engine, tenant.tenant_id, issued)
    empty = dataclasses.replace(doc.invoice, lines=())
    (row,) = csv.DictReader(io.StringIO(export_invoice(empty, "csv", customer=doc.customer)))
    assert row["position"] == "" and row["total"] == "30.00"


def test_the_wrong_customer_or_format_is_refused(engine: Engine, tenant: TenantKey, issued: int) -> None:
    doc = invoice_document(engine, tenant.tenant_id, issued)
    other = dataclasses.replace(doc.customer, id=doc.customer.id + 1, external_id="cus_other")
    with pytest.raises(InvalidArgument, match="cus_other"):
        export_invoice(doc.invoice, "json", customer=other)
    with pytest.raises(InvalidArgument, match="json or csv"):
        export_invoice(doc.invoice, "xml")
