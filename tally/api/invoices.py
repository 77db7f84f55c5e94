"""Invoices: upcoming, list, get, lifecycle, credit notes, exports, the invoice cycle, bulk actions.

The domain keeps money as integer minor units and an invoice knows only its customer's row id; the
wire wants decimal strings in the invoice currency and the customer's external id. `invoice_pb`
does both, with the external ids of a whole page looked up in one query (`Customers`).

An invoice is named by `id` or by `label` (its number as printed, "INV-000042"): `invoice_ref` reads
either through the domain's one resolver (`resolve_invoice`), which the CLI uses too. `InvoiceFilter`
messages become the domain's `InvoiceFilter` in `invoice_filter`; ListInvoices and the bulk RPCs share it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import replace
from datetime import timedelta

from sqlalchemy import Engine, select

from invoicing.documents import (
    DATE_FIELDS,
    STATUSES,
    BulkSummary,
    Invoice,
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
    mark_paid,
    preview_invoice,
    render_invoice,
    resolve_invoice,
    run_cycle,
    void_invoice,
)
from invoicing.tables import customers
from metering.errors import InvalidArgument
from metering.tenant import Principal
from tally.api.base import (
    ADMIN,
    ID_MAX,
    READ,
    ApiBase,
    decimal_str,
    encode_token,
    instant,
    int_token,
    now,
    page_size,
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
#: Invoices one bulk call examines at most (each is its own transaction; 0 asks for the default).
BULK_LIMIT_MAX = 1000
BULK_LIMIT_DEFAULT = 100


def invoice_ref(
    engine: Engine, tenant_id: int, invoice_id: int, label: str, id_field: str = "id", label_field: str = "label"
) -> int:
    """The invoice a request names by `id` or by `label` (its number, "INV-000042"), never both; the field
    names are the request's (`invoice_id`/`invoice_label` where the message is about something else)."""
    if invoice_id and label:
        raise InvalidArgument(f"give {id_field} or {label_field}, not both")
    if label:
        try:
            return resolve_invoice(engine, tenant_id, label)
        except InvalidArgument as exc:
            raise InvalidArgument(f"{label_field}: {exc}") from None
    if not 0 < invoice_id <= ID_MAX:
        raise InvalidArgument(
            f"{id_field} must be an id from 1 to {ID_MAX}, got {invoice_id} (or give {label_field}, the invoice's "
            "number)"
        )
    return invoice_id


def invoice_filter(message: pb.InvoiceFilter, field: str = "filter") -> InvoiceFilter:
    """An InvoiceFilter message as the domain's filter; a bad criterion names its path (filter.status ...)."""
    if message.status and message.status not in STATUSES:
        raise InvalidArgument(f"{field}.status {message.status!r}: one of {', '.join(STATUSES)}, or empty for all")
    if message.date and message.date not in DATE_FIELDS:
        raise InvalidArgument(f"{field}.date {message.date!r}: due (the billing date, the default) or issued")
    try:
        start = instant(message, "start")
        end = instant(message, "end")
        return InvoiceFilter(
            customer=message.customer or None, status=message.status or None, plan=message.plan or None,
            start=start, end=end, date=message.date or "due",
        )  # fmt: skip
    except InvalidArgument as exc:
        raise InvalidArgument(f"{field}.{exc}") from None


def bulk_request(request: pb.BulkInvoicesRequest | pb.BulkVoidInvoicesRequest) -> tuple[InvoiceFilter, Walk]:
    """The filter and the walk of a bulk request: at most `limit` invoices, after the page token's id."""
    if not 0 <= request.limit <= BULK_LIMIT_MAX:
        raise InvalidArgument(f"limit must be 0..{BULK_LIMIT_MAX} (0 = {BULK_LIMIT_DEFAULT}), got {request.limit}")
    where = invoice_filter(request.filter)
    after = int_token(request.page_token) or 0
    return where, Walk(after_id=after, limit=request.limit or BULK_LIMIT_DEFAULT, dry_run=request.dry_run)


def bulk_pb(summary: BulkSummary) -> pb.BulkInvoicesResponse:
    token = "" if summary.next_after_id is None else encode_token(summary.next_after_id)
    return pb.BulkInvoicesResponse(
        action=summary.action, dry_run=summary.dry_run, applies_to=list(summary.applies_to),
        examined=summary.examined, done=summary.done, skipped=summary.skipped, failed=summary.failed,
        errors=summary.errors, done_ids=summary.done_ids, next_page_token=token,
    )  # fmt: skip


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

    def _ref(self, principal: Principal, request: pb.InvoiceActionRequest | pb.GetInvoiceRequest) -> int:
        return invoice_ref(self.engine, principal.tenant_id, request.id, request.label)

    @rpc(READ)
    def ListInvoices(self, principal: Principal, request: pb.ListInvoicesRequest) -> pb.ListInvoicesResponse:
        if request.status and request.status not in STATUSES:
            raise InvalidArgument(f"status {request.status!r}: one of {', '.join(STATUSES)}, or empty for all")
        where = invoice_filter(request.filter)
        for name in ("customer", "status"):
            top, inner = getattr(request, name), getattr(where, name)
            if top and inner is not None and top != inner:
                raise InvalidArgument(f"{name} {top!r} and filter.{name} {inner!r} differ; give it once")
        if request.customer or request.status:
            where = replace(where, customer=request.customer or where.customer, status=request.status or where.status)
        size = page_size(request.page_size)
        after = int_token(request.page_token) or 0
        page = invoice_page(self.engine, principal.tenant_id, where, after_id=after, limit=size)
        token = "" if page.next_after_id is None else encode_token(page.next_after_id)
        return pb.ListInvoicesResponse(
            invoices=_invoices_pb(self.engine, principal.tenant_id, page.invoices), next_page_token=token
        )

    @rpc(READ)
    def GetInvoice(self, principal: Principal, request: pb.GetInvoiceRequest) -> pb.Invoice:
        return self._one(principal, get_invoice(self.engine, principal.tenant_id, self._ref(principal, request)))

    @rpc(ADMIN)
    def FinalizeInvoice(self, principal: Principal, request: pb.InvoiceActionRequest) -> pb.Invoice:
        inv = finalize_invoice(self.engine, principal.tenant_id, self._ref(principal, request), now())
        return self._one(principal, inv)

    @rpc(ADMIN)
    def MarkInvoicePaid(self, principal: Principal, request: pb.InvoiceActionRequest) -> pb.Invoice:
        return self._one(principal, mark_paid(self.engine, principal.tenant_id, self._ref(principal, request), now()))

    @rpc(ADMIN)
    def VoidInvoice(self, principal: Principal, request: pb.VoidInvoiceRequest) -> pb.Invoice:
        invoice_id = invoice_ref(self.engine, principal.tenant_id, request.id, request.label)
        if len(request.reason) > REASON_MAX:
            raise InvalidArgument(f"reason is {len(request.reason)} characters; at most {REASON_MAX}")
        inv = void_invoice(self.engine, principal.tenant_id, invoice_id, now(), request.reason, reissue=request.reissue)
        return self._one(principal, inv)

    @rpc(ADMIN)
    def CreateCreditNote(self, principal: Principal, request: pb.InvoiceActionRequest) -> pb.CreateCreditNoteResponse:
        doc = correct_invoice(self.engine, principal.tenant_id, self._ref(principal, request), now())
        if doc is None:
            return pb.CreateCreditNoteResponse()
        return pb.CreateCreditNoteResponse(document=self._one(principal, doc))

    @rpc(READ)
    def ExportInvoice(self, principal: Principal, request: pb.ExportInvoiceRequest) -> pb.ExportInvoiceResponse:
        fmt = request.format.lower()
        if fmt not in FORMATS:
            raise InvalidArgument(f"format {request.format!r}: one of {', '.join(FORMATS)}")
        invoice_id = invoice_ref(self.engine, principal.tenant_id, request.id, request.label)
        inv, content = render_invoice(self.engine, principal.tenant_id, invoice_id, fmt)
        content_type, extension = FORMATS[fmt]
        return pb.ExportInvoiceResponse(
            content_type=content_type, content=content, filename=export_filename(inv, extension)
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

    # --- bulk actions ------------------------------------------------------------------------------------
    @rpc(ADMIN)
    def BulkFinalizeInvoices(self, principal: Principal, request: pb.BulkInvoicesRequest) -> pb.BulkInvoicesResponse:
        where, walk = bulk_request(request)
        return bulk_pb(bulk_finalize(self.engine, principal.tenant_id, where, now(), walk))

    @rpc(ADMIN)
    def BulkVoidInvoices(self, principal: Principal, request: pb.BulkVoidInvoicesRequest) -> pb.BulkInvoicesResponse:
        where, walk = bulk_request(request)
        summary = bulk_void(
            self.engine, principal.tenant_id, where, now(), request.reason, walk, reissue=request.reissue
        )
        return bulk_pb(summary)

    @rpc(ADMIN)
    def BulkMarkInvoicesPaid(self, principal: Principal, request: pb.BulkInvoicesRequest) -> pb.BulkInvoicesResponse:
        where, walk = bulk_request(request)
        return bulk_pb(bulk_mark_paid(self.engine, principal.tenant_id, where, now(), walk))


__all__ = ["Customers", "InvoiceRpcs", "bulk_pb", "bulk_request", "invoice_filter", "invoice_pb", "invoice_ref"]
