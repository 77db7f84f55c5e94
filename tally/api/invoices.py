"""Invoices: upcoming, list, get, lifecycle, credit notes, exports, the invoice cycle.

The domain keeps money as integer minor units and an invoice knows only its customer's row id; the
wire wants decimal strings in the invoice currency and the customer's external id. `invoice_pb`
does both, with the external ids of a whole page looked up in one query (`Customers`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import Engine, select

from invoicing.documents import (
    STATUSES,
    Invoice,
    correct_invoice,
    export_invoice,
    finalize_invoice,
    get_invoice,
    invoice_document,
    list_invoices,
    mark_paid,
    preview_invoice,
    run_cycle,
    void_invoice,
)
from invoicing.tables import customers
from metering.errors import InvalidArgument
from metering.tenant import Principal
from tally.api.base import (
    ADMIN,
    READ,
    ApiBase,
    decimal_str,
    encode_token,
    instant,
    int_token,
    now,
    page_size,
    positive_id,
    required,
    rpc,
    timestamp,
)
from tally.v1 import billing_pb2 as pb

#: Export formats: MIME type and file extension.
FORMATS = {"json": ("application/json", "json"), "csv": ("text/csv", "csv"), "pdf": ("application/pdf", "pdf")}
#: A void reason is kept with the invoice and printed; keep it to a sentence or two.
REASON_MAX = 500
#: RunInvoiceCycleResponse.errors carries at most this many lines (the run records every failure).
ERRORS_MAX = 100
#: How far ahead of the server's clock `as_of` may be: client clocks drift a little, periods do not.
AS_OF_SKEW = timedelta(seconds=5)


class Customers:
    """External ids of customers by row id, fetched once per call (a page may name hundreds)."""

    def __init__(self, engine: Engine, tenant_id: int) -> None:
        self.engine = engine
        self.tenant_id = tenant_id
        self.known: dict[int, str] = {}

    def load(self, ids: Iterable[int]) -> None:
        missing = sorted({i for i in ids if i not in self.known})
        c = customers.c
        with self.engine.connect() as conn:
            for k in range(0, len(missing), 900):
                rows = conn.execute(
                    select(c.id, c.external_id).where(c.tenant_id == self.tenant_id, c.id.in_(missing[k : k + 900]))
                )
                self.known.update({int(r.id): str(r.external_id) for r in rows})

    def external_id(self, customer_id: int) -> str:
        if customer_id not in self.known:
            self.load([customer_id])
        return self.known.get(customer_id, "")


def invoice_pb(inv: Invoice, customer: str) -> pb.Invoice:
    """An invoice on the wire: money as decimal strings at the currency's scale."""
    m = inv.money
    return pb.Invoice(
        id=inv.id or 0,
        label=inv.label,
        number=inv.number or 0,
        kind=inv.kind,
        status=inv.status,
        customer=customer or inv.customer_external_id,
        subscription_id=inv.subscription_id or 0,
        corrects_invoice_id=inv.corrects_invoice_id or 0,
        currency=inv.currency,
        period_start=timestamp(inv.period_start),
        period_end=timestamp(inv.period_end),
        due_at=timestamp(inv.due_at),
        subtotal=decimal_str(m(inv.subtotal)),
        tax=decimal_str(m(inv.tax)),
        credits_applied=decimal_str(m(inv.credits_applied)),
        total=decimal_str(m(inv.total)),
        tax_region=inv.tax_region,
        tax_rate=inv.tax_rate,
        tax_inclusive=inv.tax_inclusive,
        lines=[
            pb.InvoiceLine(
                position=ln.position,
                kind=ln.kind,
                charge=ln.charge_code,
                meter=ln.meter or "",
                group=ln.group_key,
                quantity=decimal_str(ln.quantity),
                unit_price=ln.unit_price or "",
                amount=decimal_str(m(ln.amount)),
                amount_exact=ln.amount_exact,
                period_start=timestamp(ln.period_start),
                period_end=timestamp(ln.period_end),
                detail_json=_json(ln.detail),
            )
            for ln in inv.lines
        ],
        issued_at=timestamp(inv.finalized_at),
        payment_due_at=timestamp(inv.payment_due_at),
        paid_at=timestamp(inv.paid_at),
        amount_paid=decimal_str(m(inv.amount_paid)),
        amount_due=decimal_str(m(inv.amount_due)),
    )


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _invoices_pb(engine: Engine, tenant_id: int, found: list[Invoice]) -> list[pb.Invoice]:
    names = Customers(engine, tenant_id)
    names.load(i.customer_id for i in found)
    return [invoice_pb(i, names.external_id(i.customer_id)) for i in found]


class InvoiceRpcs(ApiBase):
    def _one(self, principal: Principal, inv: Invoice) -> pb.Invoice:
        return invoice_pb(inv, Customers(self.engine, principal.tenant_id).external_id(inv.customer_id))

    @rpc(READ)
    def GetUpcomingInvoice(
        self, principal: Principal, request: pb.GetUpcomingInvoiceRequest
    ) -> pb.GetUpcomingInvoiceResponse:
        customer = required(request.customer, "customer")
        at = instant(request, "at", now()) or now()
        found = preview_invoice(self.engine, principal.tenant_id, customer, at)
        return pb.GetUpcomingInvoiceResponse(invoices=[invoice_pb(i, customer) for i in found])

    @rpc(READ)
    def ListInvoices(self, principal: Principal, request: pb.ListInvoicesRequest) -> pb.ListInvoicesResponse:
        if request.status and request.status not in STATUSES:
            raise InvalidArgument(f"status {request.status!r}: one of {', '.join(STATUSES)}, or empty for all")
        size = page_size(request.page_size)
        after = int_token(request.page_token) or 0
        found = list_invoices(
            self.engine, principal.tenant_id, customer=request.customer or None, status=request.status or None,
            after_id=after, limit=size + 1,
        )  # fmt: skip
        page = found[:size]
        token = encode_token(page[-1].id) if len(found) > size else ""
        return pb.ListInvoicesResponse(
            invoices=_invoices_pb(self.engine, principal.tenant_id, page), next_page_token=token
        )

    @rpc(READ)
    def GetInvoice(self, principal: Principal, request: pb.GetInvoiceRequest) -> pb.Invoice:
        return self._one(principal, get_invoice(self.engine, principal.tenant_id, positive_id(request.id)))

    @rpc(ADMIN)
    def FinalizeInvoice(self, principal: Principal, request: pb.InvoiceActionRequest) -> pb.Invoice:
        inv = finalize_invoice(self.engine, principal.tenant_id, positive_id(request.id), now())
        return self._one(principal, inv)

    @rpc(ADMIN)
    def MarkInvoicePaid(self, principal: Principal, request: pb.InvoiceActionRequest) -> pb.Invoice:
        return self._one(principal, mark_paid(self.engine, principal.tenant_id, positive_id(request.id), now()))

    @rpc(ADMIN)
    def VoidInvoice(self, principal: Principal, request: pb.VoidInvoiceRequest) -> pb.Invoice:
        invoice_id = positive_id(request.id)
        if len(request.reason) > REASON_MAX:
            raise InvalidArgument(f"reason is {len(request.reason)} characters; at most {REASON_MAX}")
        inv = void_invoice(self.engine, principal.tenant_id, invoice_id, now(), request.reason, reissue=request.reissue)
        return self._one(principal, inv)

    @rpc(ADMIN)
    def CreateCreditNote(self, principal: Principal, request: pb.InvoiceActionRequest) -> pb.CreateCreditNoteResponse:
        doc = correct_invoice(self.engine, principal.tenant_id, positive_id(request.id), now())
        if doc is None:
            return pb.CreateCreditNoteResponse()
        return pb.CreateCreditNoteResponse(document=self._one(principal, doc))

    @rpc(READ)
    def ExportInvoice(self, principal: Principal, request: pb.ExportInvoiceRequest) -> pb.ExportInvoiceResponse:
        invoice_id = positive_id(request.id)
        fmt = request.format.lower()
        if fmt not in FORMATS:
            raise InvalidArgument(f"format {request.format!r}: one of {', '.join(FORMATS)}")
        doc = invoice_document(self.engine, principal.tenant_id, invoice_id)
        inv = doc.invoice
        if fmt == "pdf":
            from invoicing.documents import render_invoice_pdf

            content = render_invoice_pdf(inv, doc.customer, doc.profile, doc.context)
        else:
            plan = doc.context.plan_code
            content = export_invoice(inv, fmt, customer=doc.customer, profile=doc.profile, plan_code=plan).encode()
        content_type, extension = FORMATS[fmt]
        return pb.ExportInvoiceResponse(
            content_type=content_type, content=content, filename=f"{inv.label.replace(' ', '-')}.{extension}"
        )

    @rpc(ADMIN)
    def RunInvoiceCycle(self, principal: Principal, request: pb.RunInvoiceCycleRequest) -> pb.RunInvoiceCycleResponse:
        current = now()
        as_of = instant(request, "as_of", current) or current
        if as_of > current + AS_OF_SKEW:
            raise InvalidArgument(
                f"as_of {as_of.isoformat()} is in the future: a period is invoiced once it is due; leave as_of unset"
            )
        started = time.perf_counter()
        summary = run_cycle(self.engine, principal.tenant_id, as_of)
        return pb.RunInvoiceCycleResponse(
            items=summary.due,
            invoices_created=summary.created,
            already_invoiced=summary.already_invoiced,
            seconds=time.perf_counter() - started,
            failed=summary.failed,
            errors=summary.errors[:ERRORS_MAX],
        )


__all__ = ["Customers", "InvoiceRpcs", "invoice_pb"]
