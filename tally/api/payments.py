"""Payments and write-offs: record money received for an invoice, list an invoice's payments, mark an
invoice uncollectible.

The domain (`invoicing.documents.record_payment`) counts integer minor units; the wire carries an exact
decimal string in the invoice's currency. So the amount is checked in two steps at the edge: its notation
and sign first (so "abc" or "-1" is refused naming the field before anything is read), then, once the
invoice is found, its places against the invoice currency ("1.001" for USD is refused, never rounded).
What each call books in the ledger is described in `invoicing/documents/_booking.py` and docs/api.md.
"""

from __future__ import annotations

from decimal import Decimal

from invoicing.documents import (
    PAYMENT_METHODS,
    Payment,
    get_invoice,
    list_payments,
    mark_uncollectible,
    record_payment,
)
from metering.errors import InvalidArgument
from metering.tenant import Principal
from rating.errors import InvalidQuantityError, RatingOverflowError
from rating.fixedpoint import parse_scaled
from rating.unit import currency as currency_unit
from tally.api.base import ADMIN, READ, ApiBase, decimal_arg, decimal_str, instant, now, rpc, timestamp
from tally.api.invoices import REASON_MAX, Customers, invoice_pb, invoice_ref
from tally.v1 import billing_pb2 as pb

#: The method recorded when a request leaves it empty.
DEFAULT_METHOD = "bank_transfer"
#: Longest payer's reference and idempotency key (the columns' sizes).
REFERENCE_MAX = 200
KEY_MAX = 100


def minor_units(text: str, field: str, currency: str) -> int:
    """A positive amount in `currency` as integer minor units: exact, never rounded."""
    decimal_arg(text, field, positive=True)  # notation and sign (rating.fixedpoint.parse_decimal)
    scale = currency_unit(currency).scale
    try:
        return parse_scaled(text, scale, field)
    except InvalidQuantityError:
        step = "whole numbers" if scale == 0 else f"in steps of {Decimal(1).scaleb(-scale)}"
        raise InvalidArgument(
            f"{field}: {text} has more than {scale} decimal places; {currency} amounts are {step}"
        ) from None
    except RatingOverflowError:
        raise InvalidArgument(f"{field}: {text} {currency} is more than an invoice can hold") from None


def payment_pb(p: Payment) -> pb.Payment:
    """A payment on the wire: amounts as decimal strings at the currency's scale."""
    scale = currency_unit(p.currency).scale

    def money(minor: int) -> str:
        return decimal_str(Decimal(minor).scaleb(-scale))

    return pb.Payment(
        id=p.id,
        invoice_id=p.invoice_id,
        key=p.key,
        amount=money(p.amount),
        applied=money(p.applied),
        to_wallet=money(p.amount - p.applied),
        currency=p.currency,
        paid_at=timestamp(p.paid_at),
        method=p.method,
        reference=p.reference,
        created=p.created,
    )


#: The field names of a request that names its invoice as `invoice_id` or `invoice_label`.
_BY_INVOICE = ("invoice_id", "invoice_label")


class PaymentRpcs(ApiBase):
    @rpc(ADMIN)
    def RecordPayment(self, principal: Principal, request: pb.RecordPaymentRequest) -> pb.RecordPaymentResponse:
        tenant_id = principal.tenant_id
        invoice_id = invoice_ref(self.engine, tenant_id, request.invoice_id, request.invoice_label, *_BY_INVOICE)
        decimal_arg(request.amount, "amount", positive=True)
        method = request.method or DEFAULT_METHOD
        if method not in PAYMENT_METHODS:
            raise InvalidArgument(f"method {request.method!r}: one of {', '.join(PAYMENT_METHODS)}")
        if len(request.reference) > REFERENCE_MAX:
            raise InvalidArgument(f"reference is {len(request.reference)} characters; at most {REFERENCE_MAX}")
        if len(request.key) > KEY_MAX:
            raise InvalidArgument(f"key is {len(request.key)} characters; at most {KEY_MAX}")
        paid_at = instant(request, "paid_at", now()) or now()
        inv = get_invoice(self.engine, tenant_id, invoice_id)  # NOT_FOUND names it; its currency sets the scale
        amount = minor_units(request.amount, "amount", inv.currency)
        payment = record_payment(
            self.engine, tenant_id, invoice_id, amount, paid_at, method=method, reference=request.reference,
            key=request.key or None, now=now(),
        )  # fmt: skip
        after = get_invoice(self.engine, tenant_id, invoice_id)
        customer = Customers(self.engine, tenant_id).external_id(after.customer_id)
        if payment.amount > payment.applied:
            self.changed(tenant_id, customer)  # the excess is in the customer's cash wallet
        return pb.RecordPaymentResponse(payment=payment_pb(payment), invoice=invoice_pb(after, customer))

    @rpc(READ)
    def ListPayments(self, principal: Principal, request: pb.ListPaymentsRequest) -> pb.ListPaymentsResponse:
        tenant_id = principal.tenant_id
        invoice_id = invoice_ref(self.engine, tenant_id, request.invoice_id, request.invoice_label, *_BY_INVOICE)
        found = list_payments(self.engine, principal.tenant_id, invoice_id)
        return pb.ListPaymentsResponse(payments=[payment_pb(p) for p in found])

    @rpc(ADMIN)
    def MarkInvoiceUncollectible(self, principal: Principal, request: pb.MarkInvoiceUncollectibleRequest) -> pb.Invoice:
        invoice_id = invoice_ref(self.engine, principal.tenant_id, request.id, request.label)
        if len(request.reason) > REASON_MAX:
            raise InvalidArgument(f"reason is {len(request.reason)} characters; at most {REASON_MAX}")
        inv = mark_uncollectible(self.engine, principal.tenant_id, invoice_id, now(), request.reason)
        return invoice_pb(inv, Customers(self.engine, principal.tenant_id).external_id(inv.customer_id))


__all__ = ["DEFAULT_METHOD", "PaymentRpcs", "minor_units", "payment_pb"]
