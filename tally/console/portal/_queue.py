"""The finance side of disputes: the queue of flagged invoice lines in the console (/console/disputes), each
answered with a credit note for an amount of the line or a rejection with a note. A read key sees the queue
and no action; answers go through the same domain function as the ResolveDispute RPC and the CLI."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from invoicing.documents import DISPUTE_STATUSES, dispute_page, get_dispute, resolve_dispute
from metering.errors import InvalidArgument
from tally.api.payments import minor_units
from tally.console._app import PAGE_SIZE, PREFIX, Console, Page, money

QUEUE = f"{PREFIX}/disputes"
NOTE_MAX = 1000


def queue_routes(console: Console) -> list[BaseRoute]:
    console.add_nav("Disputes", QUEUE)

    async def queue(ctx: Page) -> Response:
        status = ctx.query("status", "open", 20)
        if status not in (*DISPUTE_STATUSES, "all"):
            raise InvalidArgument(f"status: one of {', '.join(DISPUTE_STATUSES)} or all")
        after_text = ctx.query("after", "0", 12)
        after = int(after_text) if after_text.isdigit() else 0
        page = await ctx.run(dispute_page, ctx.engine, ctx.tenant_id, status=None if status == "all" else status,
                             after_id=after, limit=PAGE_SIZE)  # fmt: skip
        return ctx.render("portal/queue.html", page=page, shown=status, statuses=(*DISPUTE_STATUSES, "all"),
                          here=QUEUE + (f"?status={status}" if status != "open" else ""))  # fmt: skip

    def _id(ctx: Page) -> int:
        text = str(ctx.request.path_params["id"])
        if not text.isdigit() or len(text) > 10:
            raise InvalidArgument(f"dispute {text[:20]!r}: an id")
        return int(text)

    def _actor(ctx: Page) -> str:
        key = ctx.principal.key_id if ctx.principal is not None else "?"
        return f"console key {key}"

    async def credit(ctx: Page) -> Response:
        assert ctx.form is not None
        dispute_id = _id(ctx)
        text = ctx.form.text("amount", 40, required=True, label="Credit amount")
        note = ctx.form.text("note", NOTE_MAX, label="Note to the customer")
        found = await ctx.run(get_dispute, ctx.engine, ctx.tenant_id, dispute_id)
        amount = minor_units(text, "Credit amount", found.currency)
        d = await ctx.run(resolve_dispute, ctx.engine, ctx.tenant_id, dispute_id, "credit", datetime.now(UTC),
                          amount=amount, note=note, actor=_actor(ctx))  # fmt: skip
        if d.changed:
            console.billing.changed(ctx.tenant_id, d.customer)
        done = (
            f"Dispute {d.id} credited: {d.credit_note_label} issued for "
            f"{money(d.money(d.credit_amount), d.currency)} before tax."
        )
        return ctx.redirect(ctx.back(QUEUE), done if d.changed else f"Dispute {d.id} was already resolved so.")

    async def reject(ctx: Page) -> Response:
        assert ctx.form is not None
        dispute_id = _id(ctx)
        note = ctx.form.text("note", NOTE_MAX, required=True, label="Reason for the customer")
        d = await ctx.run(resolve_dispute, ctx.engine, ctx.tenant_id, dispute_id, "reject", datetime.now(UTC),
                          note=note, actor=_actor(ctx))  # fmt: skip
        return ctx.redirect(ctx.back(QUEUE), f"Dispute {d.id} rejected." if d.changed else "Already rejected so.")

    return [
        Route(QUEUE, console.page(queue), methods=["GET"]),
        Route(f"{QUEUE}/{{id}}/credit", console.page(credit, admin=True), methods=["POST"]),
        Route(f"{QUEUE}/{{id}}/reject", console.page(reject, admin=True), methods=["POST"]),
    ]


__all__ = ["QUEUE", "queue_routes"]
