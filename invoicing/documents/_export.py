"""Invoice exports for finance systems: JSON (what the API carries) and CSV (one row per line).

Pure functions of an `Invoice` (and, where given, the parties): no database access here.
"""

from __future__ import annotations

import csv
import io
import json

from invoicing.documents._invoice import Invoice
from metering.errors import InvalidArgument

CSV_COLUMNS = ("invoice", "number", "status", "currency", "position", "kind", "charge", "meter", "group",
               "quantity", "unit_price", "amount", "amount_exact")  # fmt: skip


def export_invoice(invoice: Invoice, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(invoice.to_json(), indent=2, sort_keys=True) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        for ln in invoice.lines:
            w.writerow([invoice.id, invoice.number or "", invoice.status, invoice.currency, ln.position, ln.kind,
                        ln.charge_code, ln.meter or "", ln.group_key, ln.quantity, ln.unit_price or "",
                        invoice.money(ln.amount), ln.amount_exact])  # fmt: skip
        w.writerow([invoice.id, invoice.number or "", invoice.status, invoice.currency, "", "total", "", "", "", "",
                    "", invoice.money(invoice.total), ""])  # fmt: skip
        return buf.getvalue()
    raise InvalidArgument(f"format {fmt!r}: json or csv")


__all__ = ["CSV_COLUMNS", "export_invoice"]
