"""Disputes: a customer flags an invoice line, finance lists the queue and answers with a credit note or a
rejection (`invoicing.documents._dispute` has the rules; docs/portal.md the flow).

OpenDispute is what the customer does in the portal, offered to integrators too (a product's own "report a
problem" button); it needs an admin key like every change. The credit amount is checked at the edge in two
steps, as RecordPayment's: its notation and sign first, then, once the dispute's invoice currency is known, its
places ("1.001" USD is refused, never rounded).
"""

from __future__ import annotations

from invoicing.documents import DISPUTE_STATUSES, Dispute, dispute_page, get_dispute, get_invoice, open_dispute
from invoicing.documents import resolve_dispute as resolve
from metering.errors import InvalidArgument
from metering.tenant import Principal
from tally.api.base import (
    ADMIN,
    READ,
    ApiBase,
    decimal_arg,
    encode_token,
    int_token,
    now,
    page_size,
    positive_id,
    required,
    rpc,
    timestamp,
)
from tally.api.invoices import invoice_pb, invoice_ref
from tally.api.payments import minor_units
from tally.v1 import billing_pb2 as pb

#: Longest line position accepted (a document has far fewer lines; positions are 32-bit on every database).
LINE_MAX = 2**31 - 1


def dispute_pb(d: Dispute) -> pb.Dispute:
    """A dispute on the wire: amounts as decimal strings in the invoice currency, unset values empty."""
    return pb.Dispute(
        id=d.id,
        invoice_id=d.invoice_id,
        invoice_number=d.invoice_label,
        line=d.line_position,
        charge=d.charge,
        customer=d.customer,
        currency=d.currency,
        line_amount=d.money(d.line_amount) or "",
        reason=d.reason,
        status=d.status,
        opened_by=d.opened_by,
        opened_at=timestamp(d.opened_at),
        resolved_by=d.resolved_by or "",
        resolved_at=timestamp(d.resolved_at),
        note=d.note or "",
        credit_amount=d.money(d.credit_amount) or "",
        credit_note_id=d.credit_note_id or 0,
        credit_note_number=d.credit_note_label or "",
    )


class DisputeRpcs(ApiBase):
    @rpc(ADMIN)
    def OpenDispute(self, principal: Principal, request: pb.OpenDisputeRequest) -> pb.Dispute:
        invoice_id = invoice_ref(
            self.engine, principal.tenant_id, request.invoice_id, request.invoice_label, "invoice_id", "invoice_label"
        )
        if not 0 < request.line <= LINE_MAX:
            raise InvalidArgument(f"line must be the line's position on the invoice, 1 or more; got {request.line}")
        required(request.reason.strip(), "reason")
        d = open_dispute(
            self.engine, principal.tenant_id, invoice_id, request.line, request.reason, now(),
            customer=request.customer or None, actor=f"api key {principal.key_id}",
        )  # fmt: skip
        return dispute_pb(d)

    @rpc(READ)
    def ListDisputes(self, principal: Principal, request: pb.ListDisputesRequest) -> pb.ListDisputesResponse:
        if request.status and request.status not in DISPUTE_STATUSES:
            raise InvalidArgument(f"status {request.status!r}: one of {', '.join(DISPUTE_STATUSES)}, or empty for all")
        invoice_id = positive_id(request.invoice_id, "invoice_id") if request.invoice_id else None
        size = page_size(request.page_size)
        after = int_token(request.page_token) or 0
        if after > LINE_MAX:
            raise InvalidArgument("page_token: not a token this API issued; pass next_page_token unchanged")
        page = dispute_page(
            self.engine, principal.tenant_id, status=request.status or None, customer=request.customer or None,
            invoice_id=invoice_id, after_id=after, limit=size,
        )  # fmt: skip
        token = encode_token(page.next_after_id) if page.next_after_id is not None else ""
        return pb.ListDisputesResponse(disputes=[dispute_pb(d) for d in page.disputes], next_page_token=token)

    @rpc(ADMIN)
    def ResolveDispute(self, principal: Principal, request: pb.ResolveDisputeRequest) -> pb.ResolveDisputeResponse:
        t = principal.tenant_id
        dispute_id = positive_id(request.id)
        which = request.WhichOneof("resolution")
        actor = f"api key {principal.key_id}"
        if which == "credit":
            decimal_arg(request.credit.amount, "credit.amount", positive=True)
            found = get_dispute(self.engine, t, dispute_id)  # NOT_FOUND first; its currency sets the scale
            amount = minor_units(request.credit.amount, "credit.amount", found.currency)
            d = resolve(self.engine, t, dispute_id, "credit", now(), amount=amount, note=request.credit.note,
                        actor=actor)  # fmt: skip
        elif which == "reject":
            d = resolve(self.engine, t, dispute_id, "reject", now(), note=request.reject.note, actor=actor)
        else:
            raise InvalidArgument("resolution: give credit (with an amount) or reject (with a note)")
        if d.changed and d.credit_note_id is not None:
            self.changed(t, d.customer)  # a credit beyond what was owed lands in the customer's cash wallet
        note = None
        if d.credit_note_id is not None:
            note = invoice_pb(get_invoice(self.engine, t, d.credit_note_id), d.customer)
        return pb.ResolveDisputeResponse(dispute=dispute_pb(d), credit_note=note, changed=d.changed)


__all__ = ["DisputeRpcs", "dispute_pb"]
