"""Signing in to the finance console with a tenant's API key (admin, or read for a look-only session).

The key is posted once, checked by the same `KeyStore` every API call uses, and kept only in the server's
session (the browser holds a signed random session id). The sign-in form carries a signed token of its
own, so a form posted from another site is refused even before there is a session.
"""

from __future__ import annotations

from itsdangerous import BadSignature
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from metering.errors import InvalidArgument, TallyError
from metering.tenant import list_tenants
from tally.console._app import FINANCE_COOKIE, PREFIX, Console, Page, read_form, safe_path

#: How long a sign-in form stays valid.
FORM_MAX_AGE_S = 3600
KEY_CHARS_MAX = 200


def signin_routes(console: Console) -> list[BaseRoute]:
    signer = console.serializer("sign-in-form")

    def form_page(request: Request, error: str = "", status: int = 200) -> Response:
        notice = "Your session ended; sign in again." if request.query_params.get("ended") else ""
        return console.render(
            request,
            "signin.html",
            status=status,
            token=signer.dumps("sign-in"),
            error=error,
            notice=notice,
            next=safe_path(request.query_params.get("next", ""), console.home),
        )

    async def show(request: Request) -> Response:
        if console.session_of(request, FINANCE_COOKIE, "finance") is not None:
            return RedirectResponse(console.home, status_code=303)
        return form_page(request)

    async def sign_in(request: Request) -> Response:
        try:
            form = await read_form(request)
            try:
                signer.loads(form.get("form_token"), max_age=FORM_MAX_AGE_S)
            except BadSignature:
                return form_page(request, "The sign-in form expired; enter the key again.", 403)
            key = form.get("api_key").strip()
            if not key:
                raise InvalidArgument("API key is required")
            if len(key) > KEY_CHARS_MAX:
                raise InvalidArgument("API key: that is not a Tally key")
            authorization = f"Bearer {key}"
            principal = console.billing.keys.authenticate(authorization)
            if not principal.scopes & {"admin", "read"}:
                return form_page(request, "This key may only send usage; sign in with an admin or a read key.", 403)
            tenants = await console.billing.run(list_tenants, console.billing.engine)
        except TallyError as exc:
            status = 401 if exc.code == "unauthenticated" else 400
            message = str(exc) if exc.code != "unauthenticated" else "That key is unknown or revoked."
            return form_page(request, message, status)
        name = next((t.name for t in tenants if t.id == principal.tenant_id), str(principal.tenant_id))
        session = console.sessions.create("finance", principal.tenant_id, principal.scopes, name, authorization)
        response = RedirectResponse(safe_path(form.get("next"), console.home), status_code=303)
        console.set_cookie(response, FINANCE_COOKIE, session, PREFIX)
        return response

    async def sign_out(ctx: Page) -> Response:
        console.sessions.drop(ctx.session.sid)
        response = RedirectResponse(f"{PREFIX}/sign-in", status_code=303)
        console.clear_cookie(response, FINANCE_COOKIE, PREFIX)
        return response

    return [
        Route(f"{PREFIX}/sign-in", show, methods=["GET"]),
        Route(f"{PREFIX}/sign-in", sign_in, methods=["POST"]),
        Route(f"{PREFIX}/sign-out", console.page(sign_out), methods=["POST"]),
    ]


__all__ = ["signin_routes"]
