"""The portal's pages: entering through a link, the overview, balances and conversion, plan changes, invoices,
disputes, signing out. Every handler reads the session's tenant and customer (`_who`) and nothing else names
whose data is shown (tally/console/portal/_views.py)."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from invoicing.catalog import find_portal_secret, get_customer_by_id
from invoicing.documents import export_filename as _filename
from invoicing.documents import open_dispute, preview_change, render_invoice
from invoicing.ledger import Ledger
from invoicing.subscriptions import cancel_subscription, change_plan
from metering.errors import InvalidArgument, NotFound, TallyError
from tally.console._app import PORTAL, PORTAL_COOKIE, Console, Page, money, number
from tally.console._charts import Series, bar_chart
from tally.console.portal import _views as views
from tally.console.portal._links import LinkRefused, verify
from tally.errors import STATUS, outcome

#: A portal session ends when its link does, and in any case this long after it was opened.
SESSION_MAX_S = 2 * 3600
#: Refusals an action's form can act on: shown on the page it came from (as the finance console does).
SHOWN_ON_PAGE = ("invalid_argument", "failed_precondition", "already_exists")
DOWNLOADS = {"pdf": "application/pdf", "csv": "text/csv"}
REASON_MAX = 1000
ACTOR = "portal"

Handler = Callable[[Page], Awaitable[Response]]


def _who(ctx: Page) -> tuple[int, str]:
    """(customer row id, external id) of the session: the only customer a portal page may show."""
    return int(ctx.session.data["customer_id"]), str(ctx.session.data["customer"])


def _now() -> datetime:
    return datetime.now(UTC)


def _error(console: Console, request: Request, exc: BaseException, session: Any) -> Response:
    code, message = outcome(exc)
    status = STATUS[code].http
    titles = {404: "Not found", 403: "Not allowed", 409: "Not possible now", 400: "Check the request"}
    return console.render(request, "portal/error.html", session=session, status=status,
                          title=titles.get(status, "Something went wrong"), message=message)  # fmt: skip


def _refused(console: Console, request: Request, why: str, message: str) -> Response:
    response = console.render(request, "portal/refused.html", status=403, why=why, message=message)
    console.clear_cookie(response, PORTAL_COOKIE, PORTAL)
    return response


def guarded(console: Console, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """`Console.portal_page` (session, CSRF) plus: the tenant's link key is still the one that opened the session
    (a rotation ends every session at once), and a refusal is shown as a portal page, never the console's."""

    async def checked(ctx: Page) -> Response:
        key = await ctx.run(find_portal_secret, ctx.engine, ctx.tenant_id)
        if key is None or key.version != ctx.session.data.get("key_version"):
            console.sessions.drop(ctx.session.sid)
            revoked = "Your portal links were revoked, which ended this session."
            return _refused(console, ctx.request, "revoked", revoked)
        try:
            return await handler(ctx)
        except TallyError as exc:
            if ctx.request.method == "POST" and exc.code in SHOWN_ON_PAGE:
                raise  # the framework sends the form back to its page with the reason on top
            return _error(console, ctx.request, exc, ctx.session)

    checked.__name__ = getattr(handler, "__name__", "page")
    return console.portal_page(checked)


def _int(text: str, name: str) -> int:
    if not text.isdigit() or len(text) > 10:
        raise NotFound(f"no {name} {text[:20]!r} in your account")
    return int(text)


def portal_pages(console: Console) -> list[BaseRoute]:
    engine = console.billing.engine

    # --- entering ----------------------------------------------------------------------------------------------
    async def enter(request: Request) -> Response:
        token = str(request.path_params["token"])
        now = _now()
        try:
            claims = await console.billing.run(verify, engine, token, now)
            customer = await console.billing.run(get_customer_by_id, engine, claims.tenant_id, claims.customer_id)
        except LinkRefused as exc:
            return _refused(console, request, exc.why, str(exc))
        except NotFound:
            return _refused(console, request, "altered", "This portal link names no account.")
        old = console.session_of(request, PORTAL_COOKIE, "portal")
        if old is not None:
            console.sessions.drop(old.sid)
        left = (claims.expires_at - now).total_seconds()
        session = console.sessions.create(
            "portal", claims.tenant_id, (), customer.name or customer.external_id, None,
            absolute_s=min(left, SESSION_MAX_S),
            data={"customer_id": customer.id, "customer": customer.external_id, "key_version": claims.key_version,
                  "return_url": claims.return_url, "link_expires": claims.expires_at.isoformat()},
        )  # fmt: skip
        # A page that moves on by itself rather than a redirect: a link clicked in an email is a cross-site
        # navigation, and a SameSite=Strict cookie set on it is only sent from the next same-site navigation.
        response = console.render(request, "portal/enter.html", session=session)
        console.set_cookie(response, PORTAL_COOKIE, session, PORTAL)
        return response

    async def sign_out(ctx: Page) -> Response:
        back = str(ctx.session.data.get("return_url") or "")
        console.sessions.drop(ctx.session.sid)
        response = console.render(ctx.request, "portal/signed_out.html", return_url=back)
        console.clear_cookie(response, PORTAL_COOKIE, PORTAL)
        return response

    # --- overview ------------------------------------------------------------------------------------------------
    async def home(ctx: Page) -> Response:
        _, customer = _who(ctx)
        o = await ctx.run(views.overview, ctx.engine, ctx.tenant_id, customer, _now())
        charts = [
            bar_chart(
                f"{u.name} per day this period" + (f" ({u.unit})" if u.unit else ""),
                [d[5:] for d, _ in u.days],
                [Series(u.unit or u.name, [q for _, q in u.days])],
                number,
                head="Day",
                desc=f"{u.name}: {number(u.total)} {u.unit} so far this period, per day.",
            )
            for u in o.usage
        ]
        return ctx.render("portal/overview.html", o=o, charts=charts)

    # --- balances and conversion -----------------------------------------------------------------------------------
    async def balances(ctx: Page) -> Response:
        _, customer = _who(ctx)
        b = await ctx.run(views.balances, ctx.engine, ctx.tenant_id, customer, _now())
        return ctx.render("portal/balances.html", b=b)

    def _conversion_id(ctx: Page) -> str:
        return f"portal-{_who(ctx)[0]}-{secrets.token_urlsafe(12)}"

    async def convert_quote(ctx: Page) -> Response:
        assert ctx.form is not None
        _, customer = _who(ctx)
        amount = ctx.form.text("amount", 40, required=True, label="Amount")
        target = ctx.form.text("target", 40, required=True, label="Points unit")
        q = await ctx.run(views.quote, ctx.engine, ctx.tenant_id, customer, amount, target, _now())
        return ctx.render("portal/convert.html", q=q, conversion_id=_conversion_id(ctx), notice="")

    async def convert(ctx: Page) -> Response:
        assert ctx.form is not None
        customer_id, customer = _who(ctx)
        conversion_id = ctx.form.text("conversion_id", 80, required=True, label="Conversion")
        prefix = f"portal-{customer_id}-"
        nonce = conversion_id.removeprefix(prefix)
        if not conversion_id.startswith(prefix) or not nonce.replace("-", "").replace("_", "").isalnum():
            raise InvalidArgument("the conversion form is not valid; start the conversion again")
        amount, target = ctx.form.text("amount", 40, required=True), ctx.form.text("target", 40, required=True)
        shown = ctx.form.text("rate", 60, required=True)
        q = await ctx.run(views.quote, ctx.engine, ctx.tenant_id, customer, amount, target, _now())
        if str(q.rate) != shown:  # the rate changed since the quote: show the new one before converting
            notice = f"The rate changed to {q.rate} {q.target} per {q.source} since your quote; check the new result."
            return ctx.render("portal/convert.html", q=q, conversion_id=_conversion_id(ctx), notice=notice)
        ledger = Ledger(ctx.engine, ctx.tenant_id)
        conv = await ctx.run(ledger.convert, conversion_id, customer, q.amount, q.source, q.target)
        console.billing.changed(ctx.tenant_id, customer)
        message = (f"Converted {money(q.source_money(conv.debited), q.source)} into "
                   f"{number(q.target_money(conv.credited))} {q.target}.")  # fmt: skip
        return ctx.redirect(f"{PORTAL}/balances", message if conv.created else "That conversion was already done.")

    # --- plan changes and cancellation ------------------------------------------------------------------------------
    async def plan(ctx: Page) -> Response:
        _, customer = _who(ctx)
        found = await ctx.run(views.plans, ctx.engine, ctx.tenant_id, customer, _now())
        return ctx.render("portal/plan.html", o=found, choices=found.choices)

    def _plan_form(ctx: Page) -> tuple[int, str, str | None, str]:
        assert ctx.form is not None
        sub_id = _int(ctx.form.get("subscription"), "subscription")
        action = ctx.form.get("action")
        if action not in ("change", "cancel"):
            raise InvalidArgument("choose a new plan or cancel")
        code = ctx.form.text("plan", 64, required=action == "change", label="New plan") if action == "change" else None
        timing = ctx.form.get("timing") or "now"
        if timing not in ("now", "period_end"):
            raise InvalidArgument("when: now or at the end of the period")
        return sub_id, action, code, timing

    async def _confirm_page(ctx: Page, notice: str = "") -> Response:
        _, customer = _who(ctx)
        sub_id, action, code, timing = _plan_form(ctx)
        now = _now()

        def load() -> tuple[Any, Any, Any]:
            sub = views.own_subscription(ctx.engine, ctx.tenant_id, customer, sub_id)
            preview = None
            if timing == "now":
                preview = preview_change(ctx.engine, ctx.tenant_id, sub_id, now, plan=code, customer=customer)
            from invoicing.catalog import get_plan_version, get_plan_version_by_id

            new = None if code is None else get_plan_version(ctx.engine, ctx.tenant_id, code, published=True)
            current = get_plan_version_by_id(ctx.engine, ctx.tenant_id, sub.plan_version_id)
            return sub, preview, (current, new)

        sub, preview, (current, new) = await ctx.run(load)
        return ctx.render("portal/plan_confirm.html", sub=sub, preview=preview, current=current, new=new,
                          action=action, timing=timing, notice=notice)  # fmt: skip

    async def plan_preview(ctx: Page) -> Response:
        return await _confirm_page(ctx)

    async def plan_confirm(ctx: Page) -> Response:
        assert ctx.form is not None
        _, customer = _who(ctx)
        sub_id, action, code, timing = _plan_form(ctx)
        now = _now()
        if timing == "now":
            shown = ctx.form.get("effective_at")
            preview = await ctx.run(
                preview_change, ctx.engine, ctx.tenant_id, sub_id, now, plan=code, customer=customer
            )
            if preview.effective_at.isoformat() != shown:
                return await _confirm_page(ctx, "Time moved on since the preview: here is the proration as of now.")
        await ctx.run(views.own_subscription, ctx.engine, ctx.tenant_id, customer, sub_id)
        reason = "customer portal"
        if action == "change":
            assert code is not None
            await ctx.run(change_plan, ctx.engine, ctx.tenant_id, sub_id, code, now, timing=timing, actor=ACTOR,
                          reason=reason)  # fmt: skip
            message = "Your plan was changed." if timing == "now" else "Your plan will change at the end of the period."
        else:
            await ctx.run(cancel_subscription, ctx.engine, ctx.tenant_id, sub_id, now, timing=timing, actor=ACTOR,
                          reason=reason)  # fmt: skip
            message = "Your subscription was cancelled." if timing == "now" else (
                "Your subscription will end at the end of the period.")  # fmt: skip
        console.billing.changed(ctx.tenant_id, customer)
        return ctx.redirect(f"{PORTAL}/plan", message)

    # --- invoices, downloads and disputes -----------------------------------------------------------------------------
    async def invoice_list(ctx: Page) -> Response:
        _, customer = _who(ctx)
        after = ctx.query("after", "0", 12)
        page = await ctx.run(views.invoices, ctx.engine, ctx.tenant_id, customer, _int(after, "page"))
        return ctx.render("portal/invoices.html", page=page, after=after)

    async def invoice(ctx: Page) -> Response:
        _, customer = _who(ctx)
        invoice_id = _int(str(ctx.request.path_params["id"]), "invoice")

        def load() -> views.InvoiceView:
            c = views.customer_of(ctx.engine, ctx.tenant_id, customer)
            return views.invoice_view(ctx.engine, ctx.tenant_id, c, invoice_id)

        v = await ctx.run(load)
        return ctx.render("portal/invoice.html", v=v, inv=v.invoice)

    async def download(ctx: Page) -> Response:
        customer_id, _ = _who(ctx)
        invoice_id = _int(str(ctx.request.path_params["id"]), "invoice")
        fmt = str(ctx.request.path_params["fmt"])
        if fmt not in DOWNLOADS:
            raise NotFound(f"no {fmt!r} download; PDF or CSV")

        def load() -> tuple[Any, bytes]:
            views.own_invoice(ctx.engine, ctx.tenant_id, customer_id, invoice_id)
            return render_invoice(ctx.engine, ctx.tenant_id, invoice_id, fmt)

        inv, content = await ctx.run(load)
        name = _filename(inv, fmt)
        disposition = f'attachment; filename="{name}"'
        return Response(content, media_type=DOWNLOADS[fmt], headers={"Content-Disposition": disposition})

    async def _line_of(ctx: Page) -> tuple[Any, Any]:
        customer_id, _ = _who(ctx)
        invoice_id = _int(str(ctx.request.path_params["id"]), "invoice")
        position = _int(str(ctx.request.path_params["line"]), "line")
        inv = await ctx.run(views.own_invoice, ctx.engine, ctx.tenant_id, customer_id, invoice_id)
        line = next((ln for ln in inv.lines if ln.position == position), None)
        if line is None:
            raise NotFound(f"invoice {inv.label} has no line {position}")
        return inv, line

    async def dispute_form(ctx: Page) -> Response:
        inv, line = await _line_of(ctx)
        return ctx.render("portal/dispute_form.html", inv=inv, line=line, reason_max=REASON_MAX)

    async def dispute_submit(ctx: Page) -> Response:
        assert ctx.form is not None
        _, customer = _who(ctx)
        inv, line = await _line_of(ctx)
        reason = ctx.form.text("reason", REASON_MAX, required=True, label="What is wrong")
        d = await ctx.run(open_dispute, ctx.engine, ctx.tenant_id, inv.id, line.position, reason, _now(),
                          customer=customer, actor=ACTOR)  # fmt: skip
        return ctx.redirect(
            f"{PORTAL}/disputes",
            f"Thank you: line {d.line_position} of {d.invoice_label} is flagged (case {d.id}). We will answer here.",
        )

    async def dispute_list(ctx: Page) -> Response:
        _, customer = _who(ctx)
        found = await ctx.run(views.disputes, ctx.engine, ctx.tenant_id, customer)
        return ctx.render("portal/disputes.html", disputes=found)

    def page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        return guarded(console, handler)

    return [
        Route(f"{PORTAL}/", page(home), methods=["GET"]),
        Route(f"{PORTAL}/balances", page(balances), methods=["GET"]),
        Route(f"{PORTAL}/balances/quote", page(convert_quote), methods=["POST"]),
        Route(f"{PORTAL}/balances/convert", page(convert), methods=["POST"]),
        Route(f"{PORTAL}/plan", page(plan), methods=["GET"]),
        Route(f"{PORTAL}/plan/preview", page(plan_preview), methods=["POST"]),
        Route(f"{PORTAL}/plan/confirm", page(plan_confirm), methods=["POST"]),
        Route(f"{PORTAL}/invoices", page(invoice_list), methods=["GET"]),
        Route(f"{PORTAL}/invoices/{{id}}", page(invoice), methods=["GET"]),
        Route(f"{PORTAL}/invoices/{{id}}/download.{{fmt}}", page(download), methods=["GET"]),
        Route(f"{PORTAL}/invoices/{{id}}/lines/{{line}}/dispute", page(dispute_form), methods=["GET"]),
        Route(f"{PORTAL}/invoices/{{id}}/lines/{{line}}/dispute", page(dispute_submit), methods=["POST"]),
        Route(f"{PORTAL}/disputes", page(dispute_list), methods=["GET"]),
        Route(f"{PORTAL}/sign-out", page(sign_out), methods=["POST"]),
        # Last: any other /portal/<one segment> is a link token (a token has a dot; no page path does).
        Route(f"{PORTAL}/{{token}}", enter, methods=["GET"]),
    ]


__all__ = ["SESSION_MAX_S", "guarded", "portal_pages"]
