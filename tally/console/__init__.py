"""The web console: finance pages under /console and the customer portal under /portal, served by the
HTTP server beside the JSON API (`tally serve --http-port`), in the same process and on the same domain
functions as the gRPC API.

    routes = console_routes(billing)         # tally.server passes them to HttpApi.app(routes)

Starlette with Jinja2 templates, rendered on the server: pages are plain HTML and CSS shipped inside the
package (tally/console/templates, tally/console/static), charts are inline SVG drawn from the exact
Decimal figures (`_charts`), and nothing is fetched from elsewhere. Why: docs/console.md.

The portal plugs in here: `tally.console.portal.portal_routes(console)` returns its routes (and may add
finance-side pages and links with `console.add_nav`). It shares `Console` (sessions, signing, templates,
rendering, formatting) from `tally.console._app`.
"""

from __future__ import annotations

import importlib
from typing import Any

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from tally.console._app import PREFIX, Console


def console_routes(billing: Any, console: Console | None = None) -> list[BaseRoute]:
    """Every page of the console and the portal, and their static files, for `HttpApi.app(pages)`."""
    from tally.console._finance import finance_routes
    from tally.console._signin import signin_routes

    console = console or Console(billing)
    routes: list[BaseRoute] = [
        Mount(f"{PREFIX}/static", StaticFiles(packages=[("tally.console", "static")]), name="console-static"),
        *signin_routes(console),
        *finance_routes(console),
    ]
    portal = _portal()
    if portal is not None:
        routes += portal.portal_routes(console)
    routes.append(Route("/", _home, methods=["GET"]))
    return routes


def _portal() -> Any:
    try:
        return importlib.import_module("tally.console.portal")
    except ModuleNotFoundError as exc:
        if exc.name != "tally.console.portal":
            raise  # the portal exists but something it imports does not: a real error
        return None


async def _home(request: Any) -> Any:
    from starlette.responses import RedirectResponse

    return RedirectResponse(f"{PREFIX}/", status_code=307)


__all__ = ["Console", "console_routes"]
