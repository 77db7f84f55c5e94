"""The customer self-service portal, under /portal, and the finance side of its disputes, under /console/disputes.

A customer enters through a signed, expiring link (`_links`: CreatePortalSession, `tally portal link`); the
portal then keeps its own short session, scoped to that one customer (`_pages`). What a customer can do there:
see this period's usage per meter with the spend so far and the upcoming invoice; see cash, credits and points
with their history and convert credits to points (the exact result shown before confirming); change plan or
cancel (the proration shown before confirming); download invoices (PDF, CSV); flag an invoice line with a reason
and read the outcome. Finance answers the flags in the console's dispute queue (`_queue`). docs/portal.md has
the security model.

    routes = portal_routes(console)   # tally.console.console_routes adds them
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from tally.console._app import Console


def portal_routes(console: Console) -> list[BaseRoute]:
    """The portal's pages and the console's dispute queue."""
    from tally.console.portal._pages import portal_pages
    from tally.console.portal._queue import queue_routes

    return [*queue_routes(console), *portal_pages(console)]


__all__ = ["portal_routes"]
