"""The finance console's routes: invoice cycles and invoices (`_invoices`), the finance views (`_reports`)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from tally.console._app import Console
from tally.console._invoices import invoice_routes
from tally.console._reports import report_routes


def finance_routes(console: Console) -> list[BaseRoute]:
    """Navigation order: overview, cycles, invoices, then the views."""
    console.add_nav("Overview", console.home)
    routes = invoice_routes(console)
    routes += report_routes(console)
    return routes


__all__ = ["finance_routes"]
