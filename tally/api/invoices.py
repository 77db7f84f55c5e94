"""Invoices: upcoming, list, get, lifecycle, credit notes, exports, the invoice cycle."""

from __future__ import annotations

from tally.api.base import ApiBase


class InvoiceRpcs(ApiBase):
    pass
