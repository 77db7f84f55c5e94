"""How a document's number is printed, in one place for every reader of stored rows (the customer 360, the
dispute queue, bulk-action summaries), so a credit note is never shown as an invoice."""

from __future__ import annotations

from invoicing.documents._invoice import SERIES_PREFIX


def number_label(number: int, series: str | None, default_series: str = "invoice") -> str:
    """The series' prefix and the number in six digits: "INV-000042", "CN-000003"."""
    return f"{SERIES_PREFIX[series or default_series]}-{number:06d}"


__all__ = ["number_label"]
