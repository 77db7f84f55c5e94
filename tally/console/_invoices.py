"""Invoice cycles and invoices: the runs with their progress and totals, the list with its filters and bulk
actions, one invoice with its lines, lineage, payments and ledger movements, and its actions.

Each action calls the domain function its RPC calls (`tally/api/invoices.py`, `tally/api/payments.py`),
with the same edge checks (`invoice_filter`'s rules, `minor_units` for a payment's amount), so the console
can do nothing the API would refuse and refuses it in the same words.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from invoicing.catalog import list_plans
from invoicing.documents import (
    AS_OF_SKEW,
    DATE_FIELDS,
    PAYMENT_METHODS,
    STATUSES,
    InvoiceFilter,
    Walk,
    bulk_finalize,
    bulk_mark_paid,
    bulk_void,
    correct_invoice,
    export_filename,
    finalize_invoice,
    get_invoice,
    invoice_page,
    list_payments,
    mark_paid,
    mark_uncollectible,
    record_payment,
    render_invoice,
    resolve_invoice,
    run_cycle,
    void_invoice,
)
from invoicing.insight import invoice_movements, list_runs
from metering.errors import InvalidArgument
from tally.console._app import PAGE_SIZE, PREFIX, Console, Page, query_string
from tally.console._dates import parse_day

#: What each action needs the invoice's status to be (the domain refuses others; the page hides them).
OPEN = ("finalized", "partially_paid")
FORMATS = {"pdf": "application/pdf", "csv": "text/csv", "json": "application/json"}
REASON_MAX = 500
BULK_LIMIT = 1000
BULK_ACTIONS = {"finalize": "Finalize drafts", "mark_paid": "Mark open invoices paid", "void": "Void"}


def invoice_path(invoice_id: int | None) -> str:
    return f"{PREFIX}/invoices/{invoice_id}"


def _filter_from(params: Any) -> tuple[InvoiceFilter, dict[str, str]]:
    """The list's filter from query (or bulk form) fields, and the fields as given (to refill the form)."""

    def get(name: str) -> str:
        value = params.get(name) or ""
        value = str(value).strip()
        if len(value) > 200:
            raise InvalidArgument(f"{name}: at most 200 characters")
        return value

    given = {k: get(k) for k in ("status", "customer", "plan", "start", "end", "date")}
    if given["status"] and given["status"] not in STATUSES:
        raise InvalidArgument(f"status {given['status']!r}: one of {', '.join(STATUSES)}, or empty for all")
    if given["date"] and given["date"] not in DATE_FIELDS:
        raise InvalidArgument(f"date {given['date']!r}: due or issued")
    start = parse_day(given["start"], "from") if given["start"] else None
    end = parse_day(given["end"], "to") + timedelta(days=1) if given["end"] else None  # "to" is inclusive
    where = InvoiceFilter(
        customer=given["customer"] or None,
        status=given["status"] or None,
        plan=given["plan"] or None,
        start=start,
        end=end,
        date=given["date"] or "due",
    )
    return where, given


def _positive_int(text: str, name: str) -> int:
    if not text.isdigit() or not 0 < int(text) <= 2**31 - 1:
        raise InvalidArgument(f"{name}: an invoice id (a whole number), got {text!r}")
    return int(text)


def invoice_routes(console: Console) -> list[BaseRoute]:
    console.add_nav("Invoice cycles", f"{PREFIX}/runs")
    console.add_nav("Invoices", f"{PREFIX}/invoices")

    # --- cycles ------------------------------------------------------------------------------------------
    async def runs(ctx: Page) -> Response:
        found = await ctx.run(list_runs, ctx.engine, ctx.tenant_id, 30)
        running = any(r.status == "running" for r in found)
        return ctx.render("runs.html", runs=found, refresh=running)

    async def run_now(ctx: Page) -> Response:
        assert ctx.form is not None
        now = datetime.now(UTC)
        text = ctx.form.text("as_of", 40)
        as_of = parse_day(text, "as of") + timedelta(days=1) if text else now
        as_of = min(as_of, now)  # a day given means "up to the end of that day", never past now
        if as_of > now + AS_OF_SKEW:
            raise InvalidArgument("as of is in the future: a period is invoiced once it is due")
        started = time.perf_counter()
        summary = await ctx.run(run_cycle, ctx.engine, ctx.tenant_id, as_of)
        seconds = time.perf_counter() - started
        message = (
            f"Cycle run {summary.run_id} as of {as_of:%Y-%m-%d %H:%M} UTC: {_n(summary.due, 'item')}, "
            f"{_n(summary.created, 'invoice')} created, {summary.already_invoiced} already invoiced"
            + (f", {summary.failed} failed" if summary.failed else "")
            + f" ({seconds:.1f} s)."
        )
        return ctx.redirect(f"{PREFIX}/runs", message, "error" if summary.failed else "success")

    # --- the list ----------------------------------------------------------------------------------------
    async def invoices(ctx: Page) -> Response:
        search = ctx.query("q", max_chars=60)
        if search:
            found_id = await ctx.run(resolve_invoice, ctx.engine, ctx.tenant_id, search)
            return ctx.redirect(invoice_path(found_id))
        where, given = _filter_from(ctx.request.query_params)
        after_text = ctx.query("after", max_chars=12)
        after = _positive_int(after_text, "after") if after_text else 0
        page = await ctx.run(invoice_page, ctx.engine, ctx.tenant_id, where, after_id=after, limit=PAGE_SIZE)
        plans = await ctx.run(list_plans, ctx.engine, ctx.tenant_id)
        next_url = "" if page.next_after_id is None else query_string(ctx.request, after=page.next_after_id)
        first_url = query_string(ctx.request, after=None) or f"{PREFIX}/invoices" if after else ""
        return ctx.render(
            "invoices.html",
            page=page,
            given=given,
            where=where,
            statuses=STATUSES,
            plans=plans,
            next_url=next_url,
            first_url=first_url or (f"{PREFIX}/invoices" if after else ""),
            bulk_actions=BULK_ACTIONS,
            back=str(ctx.request.url.path) + (f"?{ctx.request.url.query}" if ctx.request.url.query else ""),
        )

    async def bulk(ctx: Page) -> Response:
        assert ctx.form is not None
        where, _ = _filter_from(ctx.form.data)
        action = ctx.form.get("action")
        dry_run = ctx.form.get("mode") != "apply"
        now = datetime.now(UTC)
        walk = Walk(limit=BULK_LIMIT, dry_run=dry_run)
        if action == "finalize":
            summary = await ctx.run(
                bulk_finalize, ctx.engine, ctx.tenant_id, where, now, walk
            )
        elif action == "mark_paid":
            summary = await ctx.run(
                bulk_mark_paid, ctx.engine, ctx.tenant_id, where, now, walk
            )
        elif action == "void":
            reason = ctx.form.text("reason", REASON_MAX, label="reason")
            summary = await ctx.run(
                bulk_void, ctx.engine, ctx.tenant_id, where, now, reason, walk
            )
        else:
            raise InvalidArgument(f"action {action!r}: one of {', '.join(BULK_ACTIONS)}")
        skipped = ", ".join(f"{n} {why}" for why, n in summary.skipped.items())
        verb = "would apply to" if dry_run else "applied to"
        message = (
            f"{BULK_ACTIONS[action]} ({where.describe()}): {verb} {summary.done} of {summary.examined} invoices"
            + (f"; skipped {skipped}" if skipped else "")
            + (f"; {summary.failed} failed: {'; '.join(summary.errors[:3])}" if summary.failed else "")
            + ("; more match: run it again to continue" if summary.next_after_id is not None else "")
            + ("." if not dry_run else ". Nothing was changed (preview).")
        )
        level = "error" if summary.failed else ("info" if dry_run else "success")
        return ctx.redirect(ctx.back(f"{PREFIX}/invoices"), message, level)

    # --- one invoice -------------------------------------------------------------------------------------
    def _id(ctx: Page) -> int:
        return _positive_int(str(ctx.request.path_params["invoice_id"]), "invoice")

    async def invoice(ctx: Page) -> Response:
        invoice_id = _id(ctx)
        inv = await ctx.run(get_invoice, ctx.engine, ctx.tenant_id, invoice_id)
        payments = await ctx.run(list_payments, ctx.engine, ctx.tenant_id, invoice_id)
        movements = await ctx.run(invoice_movements, ctx.engine, ctx.tenant_id, invoice_id)
        corrects = None
        if inv.corrects_invoice_id:
            corrects = await ctx.run(get_invoice, ctx.engine, ctx.tenant_id, inv.corrects_invoice_id)
        m = inv.money
        lines = [
            {"line": ln, "amount": m(ln.amount), "lineage": _pretty(ln.lineage), "detail": _pretty(ln.detail)}
            for ln in inv.lines
        ]
        paid = [
            {"p": p, "amount": Decimal(p.amount).scaleb(-inv.scale), "applied": Decimal(p.applied).scaleb(-inv.scale)}
            for p in payments
        ]
        return ctx.render(
            "invoice.html",
            inv=inv,
            lines=lines,
            payments=paid,
            movements=movements,
            corrects=corrects,
            money={
                k: m(getattr(inv, k))
                for k in ("subtotal", "tax", "credits_applied", "total", "amount_paid", "amount_due")
            },
            methods=PAYMENT_METHODS,
            today=datetime.now(UTC).strftime("%Y-%m-%d"),
            open_statuses=OPEN,
            here=invoice_path(invoice_id),
        )

    async def export(ctx: Page) -> Response:
        invoice_id = _id(ctx)
        fmt = str(ctx.request.path_params["fmt"])
        if fmt not in FORMATS:
            raise InvalidArgument(f"format {fmt!r}: one of {', '.join(FORMATS)}")
        inv, content = await ctx.run(render_invoice, ctx.engine, ctx.tenant_id, invoice_id, fmt)
        name = export_filename(inv, fmt)
        return Response(
            content, media_type=FORMATS[fmt], headers={"Content-Disposition": f'attachment; filename="{name}"'}
        )

    async def finalize(ctx: Page) -> Response:
        inv = await ctx.run(finalize_invoice, ctx.engine, ctx.tenant_id, _id(ctx), datetime.now(UTC))
        return ctx.redirect(invoice_path(inv.id), f"Finalized as {inv.label}.")

    async def pay(ctx: Page) -> Response:
        from tally.api.payments import DEFAULT_METHOD, REFERENCE_MAX, minor_units

        assert ctx.form is not None
        invoice_id = _id(ctx)
        inv = await ctx.run(get_invoice, ctx.engine, ctx.tenant_id, invoice_id)
        amount = minor_units(ctx.form.text("amount", 40, required=True, label="amount"), "amount", inv.currency)
        method = ctx.form.get("method") or DEFAULT_METHOD
        if method not in PAYMENT_METHODS:
            raise InvalidArgument(f"method {method!r}: one of {', '.join(PAYMENT_METHODS)}")
        reference = ctx.form.text("reference", REFERENCE_MAX, label="reference")
        day = ctx.form.text("paid_at", 20, label="date received")
        now = datetime.now(UTC)
        paid_at = now if not day or day == now.strftime("%Y-%m-%d") else parse_day(day, "date received")
        payment = await ctx.run(
            record_payment,
            ctx.engine,
            ctx.tenant_id,
            invoice_id,
            amount,
            paid_at,
            method=method,
            reference=reference,
            now=now,
        )
        if payment.amount > payment.applied:
            ctx.console.billing.changed(ctx.tenant_id, inv.customer_external_id)  # the excess went to the wallet
        after = await ctx.run(get_invoice, ctx.engine, ctx.tenant_id, invoice_id)
        got = Decimal(payment.amount).scaleb(-inv.scale)
        message = f"Recorded a payment of {got} {inv.currency}: the invoice is {after.status.replace('_', ' ')}"
        if after.amount_due:
            message += f", {after.money(after.amount_due)} {inv.currency} still due"
        return ctx.redirect(invoice_path(invoice_id), message + ".")

    async def paid_in_full(ctx: Page) -> Response:
        inv = await ctx.run(mark_paid, ctx.engine, ctx.tenant_id, _id(ctx), datetime.now(UTC))
        return ctx.redirect(invoice_path(inv.id), f"{inv.label} is paid in full.")

    async def void(ctx: Page) -> Response:
        assert ctx.form is not None
        reason = ctx.form.text("reason", REASON_MAX, label="reason")
        reissue = ctx.form.get("reissue") == "yes"
        inv = await ctx.run(
            void_invoice, ctx.engine, ctx.tenant_id, _id(ctx), datetime.now(UTC), reason, reissue=reissue
        )
        more = " Its items will be billed again by the next cycle." if reissue else ""
        return ctx.redirect(invoice_path(inv.id), f"{inv.label} is void.{more}")

    async def credit_note(ctx: Page) -> Response:
        invoice_id = _id(ctx)
        doc = await ctx.run(correct_invoice, ctx.engine, ctx.tenant_id, invoice_id, datetime.now(UTC))
        if doc is None:
            return ctx.redirect(invoice_path(invoice_id), "Re-rated: nothing changed, so no credit note.", "info")
        if doc.id == invoice_id:
            return ctx.redirect(invoice_path(invoice_id), "The draft was re-rated with current usage and history.")
        what = "credit note" if doc.kind == "credit_note" else "adjustment"
        return ctx.redirect(invoice_path(doc.id), f"Draft {what} {doc.id} created: review it, then finalize it.")

    async def uncollectible(ctx: Page) -> Response:
        assert ctx.form is not None
        reason = ctx.form.text("reason", REASON_MAX, label="reason")
        inv = await ctx.run(mark_uncollectible, ctx.engine, ctx.tenant_id, _id(ctx), datetime.now(UTC), reason)
        return ctx.redirect(invoice_path(inv.id), f"{inv.label} is written off as uncollectible.")

    one = f"{PREFIX}/invoices/{{invoice_id:int}}"
    admin = {"admin": True}
    return [
        Route(f"{PREFIX}/runs", console.page(runs), methods=["GET"]),
        Route(f"{PREFIX}/runs", console.page(run_now, **admin), methods=["POST"]),
        Route(f"{PREFIX}/invoices", console.page(invoices), methods=["GET"]),
        Route(f"{PREFIX}/invoices/bulk", console.page(bulk, **admin), methods=["POST"]),
        Route(one, console.page(invoice), methods=["GET"]),
        Route(f"{one}/export.{{fmt}}", console.page(export), methods=["GET"]),
        Route(f"{one}/finalize", console.page(finalize, **admin), methods=["POST"]),
        Route(f"{one}/pay", console.page(pay, **admin), methods=["POST"]),
        Route(f"{one}/paid-in-full", console.page(paid_in_full, **admin), methods=["POST"]),
        Route(f"{one}/void", console.page(void, **admin), methods=["POST"]),
        Route(f"{one}/credit-note", console.page(credit_note, **admin), methods=["POST"]),
        Route(f"{one}/uncollectible", console.page(uncollectible, **admin), methods=["POST"]),
    ]


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _pretty(value: Any) -> str:
    import json

    return json.dumps(value, indent=2, sort_keys=True, default=str) if value else ""


__all__ = ["invoice_path", "invoice_routes"]
