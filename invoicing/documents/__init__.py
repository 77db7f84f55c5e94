"""Invoices and the documents finance sends: the invoice run, rating due items into drafts, the
lifecycle (finalize, pay, void, credit notes), numbering, PDF, CSV and JSON exports.

This module is the package's API: import from here; the modules behind it are private.
"""

from invoicing.documents._assembly import Document, Hold, Source, assemble, assemble_all, group_key
from invoicing.documents._export import CSV_COLUMNS, export_invoice
from invoicing.documents._invoice import (
    OPEN,
    PAYMENT_METHODS,
    STATUSES,
    Invoice,
    Payment,
    correct_invoice,
    finalize_invoice,
    get_invoice,
    list_invoices,
    list_payments,
    mark_paid,
    mark_uncollectible,
    preview_invoice,
    record_payment,
    set_tax_rate,
    void_invoice,
)
from invoicing.documents._pdf import (
    DocumentContext,
    InvoiceDocument,
    document_context,
    format_decimal,
    format_minor,
    invoice_document,
    local_date,
    local_period,
    render_document,
    render_invoice_pdf,
    unicode_font_dir,
)
from invoicing.documents._rater import Rater
from invoicing.documents._run import AS_OF_SKEW, InjectedFailure, RunSummary, run_cycle

__all__ = [
    "AS_OF_SKEW",
    "CSV_COLUMNS",
    "OPEN",
    "PAYMENT_METHODS",
    "STATUSES",
    "Document",
    "DocumentContext",
    "Hold",
    "InjectedFailure",
    "Invoice",
    "InvoiceDocument",
    "Payment",
    "Rater",
    "RunSummary",
    "Source",
    "assemble",
    "assemble_all",
    "correct_invoice",
    "document_context",
    "export_invoice",
    "finalize_invoice",
    "format_decimal",
    "format_minor",
    "get_invoice",
    "group_key",
    "invoice_document",
    "list_invoices",
    "list_payments",
    "local_date",
    "local_period",
    "mark_paid",
    "mark_uncollectible",
    "preview_invoice",
    "record_payment",
    "render_document",
    "render_invoice_pdf",
    "run_cycle",
    "set_tax_rate",
    "unicode_font_dir",
    "void_invoice",
]
