"""Invoice exports for finance systems: JSON (what the API carries) and CSV (one row per line).

Pure functions of an `Invoice` and, where given, its parties (the buyer's `Customer`, the seller's
`BillingProfile`) and its plan code: no database access here (`invoice_document` reads them all).

Both carry what the API's Invoice carries plus the parties: the customer's external id, name, address
and tax id, the seller's name and tax id, the plan code, the issue, payment-due and paid dates, the
status, subtotal, tax, credits, total, amount paid and amount due. The CSV repeats those invoice
columns on every line row, so each row stands alone in a spreadsheet or an accounting import; an
invoice without lines still gets one row. Instants are ISO 8601 with their UTC offset: exports are
read by programs, which want instants, not the local dates the PDF prints.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import Any

from invoicing.catalog import BillingProfile, Customer
from invoicing.documents._invoice import Invoice
from metering.errors import InvalidArgument

INVOICE_COLUMNS = (
    "invoice", "label", "kind", "status", "customer", "customer_name", "customer_tax_id", "customer_address",
    "seller_name", "seller_tax_id", "plan", "currency", "issued_at", "payment_due_at", "paid_at", "subtotal",
    "tax", "credits_applied", "total", "amount_paid", "amount_due",
)  # fmt: skip
LINE_COLUMNS = ("position", "line_kind", "charge", "meter", "group", "period_start", "period_end", "quantity",
                "unit_price", "amount", "amount_exact")  # fmt: skip
CSV_COLUMNS = INVOICE_COLUMNS + LINE_COLUMNS


def _iso(moment: datetime | None) -> str:
    return "" if moment is None else moment.isoformat()


def _one_line(customer: Customer | None) -> str:
    a = customer.address if customer is not None else None
    if a is None:
        return ""
    city = " ".join(x for x in (a.postal_code, a.city) if x)
    return ", ".join(x for x in (a.line1, a.line2, city, a.region, a.country) if x)


def export_fields(
    invoice: Invoice, customer: Customer | None = None, profile: BillingProfile | None = None, plan_code: str = ""
) -> dict[str, Any]:
    """The invoice-level fields of both exports; the parties' fields are empty when they are not given."""
    if customer is not None and invoice.customer_id != customer.id and customer.id:
        raise InvalidArgument(
            f"invoice {invoice.label} bills customer id {invoice.customer_id}, not {customer.external_id!r}"
        )
    profile = profile or BillingProfile()
    return {
        "customer": invoice.customer_external_id or (customer.external_id if customer is not None else ""),
        "customer_name": customer.name if customer is not None else "",
        "customer_tax_id": customer.tax_id if customer is not None else "",
        "seller_name": profile.legal_name,
        "seller_tax_id": profile.tax_id,
        "plan": plan_code,
    }


def export_invoice(
    invoice: Invoice,
    fmt: str,
    *,
    customer: Customer | None = None,
    profile: BillingProfile | None = None,
    plan_code: str = "",
) -> str:
    """The invoice as JSON or CSV text. Pass the parties and plan code (as `invoice_document` reads
    them) so the export names who bills whom; without them those fields are empty."""
    parties = export_fields(invoice, customer, profile, plan_code)
    if fmt == "json":
        address = customer.address.model_dump() if customer is not None and customer.address is not None else None
        data = {**invoice.to_json(), **parties, "customer_address": address}
        return json.dumps(data, indent=2, sort_keys=True) + "\n"
    if fmt == "csv":
        m = invoice.money
        head = [
            invoice.id or "", invoice.label, invoice.kind, invoice.status, parties["customer"],
            parties["customer_name"], parties["customer_tax_id"], _one_line(customer), parties["seller_name"],
            parties["seller_tax_id"], parties["plan"], invoice.currency, _iso(invoice.finalized_at),
            _iso(invoice.payment_due_at), _iso(invoice.paid_at), m(invoice.subtotal), m(invoice.tax),
            m(invoice.credits_applied), m(invoice.total), m(invoice.amount_paid), m(invoice.amount_due),
        ]  # fmt: skip
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        for ln in invoice.lines:
            w.writerow([*head, ln.position, ln.kind, ln.charge_code, ln.meter or "", ln.group_key,
                        _iso(ln.period_start), _iso(ln.period_end), ln.quantity, ln.unit_price or "",
                        m(ln.amount), ln.amount_exact])  # fmt: skip
        if not invoice.lines:
            w.writerow([*head, *[""] * len(LINE_COLUMNS)])
        return buf.getvalue()
    raise InvalidArgument(f"format {fmt!r}: json or csv")


__all__ = ["CSV_COLUMNS", "export_fields", "export_invoice"]
