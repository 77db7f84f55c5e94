"""Invoices and the documents finance sends: the invoice run, rating due items into drafts, the
lifecycle (finalize, pay, void, credit notes), numbering, PDF, CSV and JSON exports.

This module is the package's API: import from here; the modules behind it are private.
"""

from invoicing.documents._export import export_invoice
from invoicing.documents._invoice import (
    STATUSES,
    Invoice,
    correct_invoice,
    finalize_invoice,
    get_invoice,
    list_invoices,
    mark_paid,
    preview_invoice,
    set_tax_rate,
    void_invoice,
)
from invoicing.documents._pdf import (
    format_decimal,
    format_minor,
    invoice_document,
    latin1,
    render_document,
    render_invoice_pdf,
    unicode_font_dir,
)
from invoicing.documents._rater import Rater
from invoicing.documents._run import AS_OF_SKEW, InjectedFailure, RunSummary, run_cycle

__all__ = [
    "AS_OF_SKEW",
    "STATUSES",
    "InjectedFailure",
    "Invoice",
    "Rater",
    "RunSummary",
    "correct_invoice",
    "export_invoice",
    "finalize_invoice",
    "format_decimal",
    "format_minor",
    "get_invoice",
    "invoice_document",
    "latin1",
    "list_invoices",
    "mark_paid",
    "preview_invoice",
    "render_document",
    "render_invoice_pdf",
    "run_cycle",
    "set_tax_rate",
    "unicode_font_dir",
    "void_invoice",
]
