"""Payment RPCs over a real server: RecordPayment (partial, full, overpaid, idempotent), ListPayments,
MarkInvoiceUncollectible, and VoidInvoice with `reissue`; every bad input names its field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from invoicing.catalog import CustomerDefinition, create_customer
from invoicing.subscriptions import create_subscription
from tests.invoicing.conftest import T0, flat, publish
from tests.tally.api.conftest import Api, pb

FEB = datetime(2026, 2, 1, tzinfo=UTC)
PAID = datetime(2026, 2, 3, tzinfo=UTC)


def ts(moment: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(moment)
    return out


def setup_billing(api: Api, currency: str = "USD", fee: str = "30") -> list[pb.Invoice]:
    """cus_1 on a flat fee billed in advance from January 1st; the February run writes January's and
    February's documents (drafts, by id)."""
    tid = api.tenant.tenant_id
    create_customer(api.engine, tid, CustomerDefinition(external_id="cus_1", currency=currency, timezone="UTC"), T0)
    publish(api.engine, tid, "pro", [{"code": "base", "kind": "flat", "price": flat(fee, currency=currency)}],
            currency=currency)  # fmt: skip
    create_subscription(api.engine, tid, "cus_1", "pro", T0)
    api.call("RunInvoiceCycle", pb.RunInvoiceCycleRequest(as_of=ts(FEB)))
    return list(api.call("ListInvoices", pb.ListInvoicesRequest()).invoices)


@pytest.fixture
def invoice(api: Api) -> pb.Invoice:
    """January's fee, finalized: 30.00 USD due."""
    first = setup_billing(api)[0]
    done: pb.Invoice = api.call("FinalizeInvoice", pb.InvoiceActionRequest(id=first.id))
    assert (done.status, done.total, done.amount_due, done.amount_paid) == ("finalized", "30.00", "30.00", "0.00")
    return done


def pay(api: Api, invoice_id: int, amount: str, **fields: Any) -> pb.RecordPaymentResponse:
    fields.setdefault("paid_at", ts(PAID))
    response: pb.RecordPaymentResponse = api.call(
        "RecordPayment", pb.RecordPaymentRequest(invoice_id=invoice_id, amount=amount, **fields)
    )
    return response


def fails(api: Api, method: str, request: object, status: grpc.StatusCode, *fragments: str) -> str:
    err = api.fails(method, request)
    details = err.details() or ""
    assert err.code() == status, (err.code(), details)
    for fragment in fragments:
        assert fragment in details, (fragment, details)
    return details


def cash(api: Api, customer: str = "cus_1") -> str:
    """The customer's cash wallet balance ("" when there is none)."""
    got = api.call("GetBalances", pb.GetBalancesRequest(customer=customer)).accounts
    return next((a.balance for a in got if a.kind in ("cash", "wallet") and a.unit == "USD"), "")


def receivable(api: Api, customer: str = "cus_1") -> str:
    """The customer's receivable as GetBalances shows it (credits minus debits: what they owe is negative)."""
    got = api.call("GetBalances", pb.GetBalancesRequest(customer=customer)).accounts
    return next((a.balance for a in got if a.kind == "receivable" and a.unit == "USD"), "")


def test_partial_then_full_payment(api: Api, invoice: pb.Invoice) -> None:
    first = pay(api, invoice.id, "10.00", method="card", reference="VISA 4242", key="p-1")
    p = first.payment
    assert (p.invoice_id, p.key, p.amount, p.applied, p.to_wallet, p.currency) == (
        invoice.id, "p-1", "10.00", "10.00", "0.00", "USD",
    )  # fmt: skip
    assert (p.method, p.reference, p.created, p.id > 0) == ("card", "VISA 4242", True, True)
    assert p.paid_at.ToDatetime(tzinfo=UTC) == PAID
    inv = first.invoice
    assert (inv.id, inv.status, inv.amount_paid, inv.amount_due) == (invoice.id, "partially_paid", "10.00", "20.00")
    assert not inv.HasField("paid_at")
    second = pay(api, invoice.id, "20", key="p-2")  # "20" is exact at any scale: 20.00
    assert (second.payment.amount, second.payment.applied, second.payment.method) == ("20.00", "20.00", "bank_transfer")
    inv = second.invoice
    assert (inv.status, inv.amount_paid, inv.amount_due) == ("paid", "30.00", "0.00")
    assert inv.paid_at.ToDatetime(tzinfo=UTC) == PAID
    assert api.call("GetInvoice", pb.GetInvoiceRequest(id=invoice.id)) == inv
    listed = api.call("ListPayments", pb.ListPaymentsRequest(invoice_id=invoice.id), key=api.read).payments
    assert [(x.id, x.key, x.amount) for x in listed] == [(p.id, "p-1", "10.00"), (second.payment.id, "p-2", "20.00")]
    assert all(x.created for x in listed)
    assert cash(api) in ("", "0.00")  # nothing overpaid
    # A paid invoice takes no more money.
    fails(api, "RecordPayment", pb.RecordPaymentRequest(invoice_id=invoice.id, amount="1", paid_at=ts(PAID)),
          grpc.StatusCode.FAILED_PRECONDITION, f"invoice {invoice.id} is paid")  # fmt: skip


def test_overpayment_goes_to_the_cash_wallet(api: Api, invoice: pb.Invoice) -> None:
    pay(api, invoice.id, "12.50", key="p-1")
    over = pay(api, invoice.id, "25.00", key="p-2")
    assert (over.payment.amount, over.payment.applied, over.payment.to_wallet) == ("25.00", "17.50", "7.50")
    assert (over.invoice.status, over.invoice.amount_paid, over.invoice.amount_due) == ("paid", "30.00", "0.00")
    assert cash(api) == "7.50"
    # The receivable holds what open invoices still owe: nothing now.
    assert receivable(api) in ("", "0.00")


def test_a_retry_with_the_same_key_moves_nothing_twice(api: Api, invoice: pb.Invoice) -> None:
    first = pay(api, invoice.id, "40.00", key="bank-991", reference="r")
    assert (first.payment.created, first.payment.to_wallet) == (True, "10.00")
    again = pay(api, invoice.id, "40.00", key="bank-991", reference="r")
    assert again.payment.created is False
    assert (again.payment.id, again.payment.amount, again.payment.applied) == (first.payment.id, "40.00", "30.00")
    assert again.invoice == first.invoice
    assert cash(api) == "10.00"  # not 20.00
    assert len(api.call("ListPayments", pb.ListPaymentsRequest(invoice_id=invoice.id)).payments) == 1
    # The same key with another body is refused, and still moves nothing.
    fails(api, "RecordPayment",
          pb.RecordPaymentRequest(invoice_id=invoice.id, amount="41.00", key="bank-991", paid_at=ts(PAID)),
          grpc.StatusCode.FAILED_PRECONDITION, "bank-991", "different body")  # fmt: skip
    assert cash(api) == "10.00"


def test_without_a_key_a_retry_of_the_same_payment_is_recognised(api: Api, invoice: pb.Invoice) -> None:
    first = pay(api, invoice.id, "5.00", reference="SEPA 1")
    assert first.payment.key and first.payment.created
    again = pay(api, invoice.id, "5.00", reference="SEPA 1")
    assert (again.payment.created, again.payment.id, again.invoice.amount_due) == (False, first.payment.id, "25.00")


@pytest.mark.parametrize(
    ("fields", "fragments"),
    [
        ({"amount": "-1"}, ("amount must be positive", "-1")),
        ({"amount": "0"}, ("amount must be positive",)),
        ({"amount": "0.00"}, ("amount must be positive",)),
        ({"amount": "1.001"}, ("amount: 1.001 has more than 2 decimal places", "USD")),
        ({"amount": "abc"}, ("amount: 'abc' is not a decimal",)),
        ({"amount": "1e3"}, ("amount: '1e3' is not a decimal",)),
        ({"amount": ""}, ("amount is required",)),
        ({"amount": "99999999999999999999999"}, ("amount",)),
        ({"method": "paypal"}, ("method 'paypal'", "bank_transfer")),
        ({"reference": "x" * 201}, ("reference is 201 characters; at most 200",)),
        ({"key": "k" * 101}, ("key is 101 characters; at most 100",)),
        ({"paid_at": ts(datetime.now(UTC) + timedelta(days=3))}, ("paid_at", "future")),
        ({"invoice_id": 0}, ("invoice_id must be an id",)),
    ],
)
def test_bad_inputs_name_their_field(
    api: Api, invoice: pb.Invoice, fields: dict[str, object], fragments: tuple[str, ...]
) -> None:
    values: dict[str, Any] = {"invoice_id": invoice.id, "amount": "10.00", "paid_at": ts(PAID), **fields}
    fails(api, "RecordPayment", pb.RecordPaymentRequest(**values), grpc.StatusCode.INVALID_ARGUMENT, *fragments)
    after = api.call("GetInvoice", pb.GetInvoiceRequest(id=invoice.id))
    assert (after.status, after.amount_due) == ("finalized", "30.00")  # nothing was recorded
    assert not api.call("ListPayments", pb.ListPaymentsRequest(invoice_id=invoice.id)).payments


def test_unknown_invoice_and_draft_invoice(api: Api) -> None:
    drafts = setup_billing(api)
    fails(api, "RecordPayment", pb.RecordPaymentRequest(invoice_id=99_999, amount="1.00"),
          grpc.StatusCode.NOT_FOUND, "no invoice 99999")  # fmt: skip
    fails(api, "ListPayments", pb.ListPaymentsRequest(invoice_id=99_999), grpc.StatusCode.NOT_FOUND, "no invoice 99999")
    fails(api, "RecordPayment", pb.RecordPaymentRequest(invoice_id=drafts[0].id, amount="1.00"),
          grpc.StatusCode.FAILED_PRECONDITION, f"invoice {drafts[0].id} is draft", "finalize it first")  # fmt: skip
    assert api.call("ListPayments", pb.ListPaymentsRequest(invoice_id=drafts[0].id)).payments == []
    fails(api, "MarkInvoiceUncollectible", pb.MarkInvoiceUncollectibleRequest(id=drafts[0].id),
          grpc.StatusCode.FAILED_PRECONDITION, "is draft", "only an open")  # fmt: skip
    fails(api, "MarkInvoiceUncollectible", pb.MarkInvoiceUncollectibleRequest(id=99_999), grpc.StatusCode.NOT_FOUND)
    fails(api, "MarkInvoiceUncollectible", pb.MarkInvoiceUncollectibleRequest(id=drafts[0].id, reason="x" * 501),
          grpc.StatusCode.INVALID_ARGUMENT, "reason is 501 characters")  # fmt: skip


def test_a_currency_without_minor_units(api: Api) -> None:
    first = setup_billing(api, currency="JPY", fee="3000")[0]
    api.call("FinalizeInvoice", pb.InvoiceActionRequest(id=first.id))
    fails(api, "RecordPayment", pb.RecordPaymentRequest(invoice_id=first.id, amount="1000.5", paid_at=ts(PAID)),
          grpc.StatusCode.INVALID_ARGUMENT, "amount: 1000.5 has more than 0 decimal places", "JPY")  # fmt: skip
    done = pay(api, first.id, "1000.00", key="jpy")  # trailing zeros are not places
    assert (done.payment.amount, done.invoice.amount_due, done.invoice.status) == ("1000", "2000", "partially_paid")


def test_mark_uncollectible_writes_off_what_is_due(api: Api, invoice: pb.Invoice) -> None:
    pay(api, invoice.id, "12.00", key="p-1")
    assert receivable(api) == "-18.00"  # credits minus debits: the customer owes 18.00
    done = api.call("MarkInvoiceUncollectible", pb.MarkInvoiceUncollectibleRequest(id=invoice.id, reason="insolvent"))
    assert (done.id, done.status, done.amount_paid, done.amount_due) == (invoice.id, "uncollectible", "12.00", "0.00")
    assert receivable(api) in ("", "0.00")
    fails(api, "MarkInvoiceUncollectible", pb.MarkInvoiceUncollectibleRequest(id=invoice.id),
          grpc.StatusCode.FAILED_PRECONDITION, "is uncollectible")  # fmt: skip
    fails(api, "RecordPayment", pb.RecordPaymentRequest(invoice_id=invoice.id, amount="1.00", paid_at=ts(PAID)),
          grpc.StatusCode.FAILED_PRECONDITION, "is uncollectible")  # fmt: skip
    listed = api.call("ListPayments", pb.ListPaymentsRequest(invoice_id=invoice.id)).payments
    assert [x.amount for x in listed] == ["12.00"]  # the payment stays


def test_void_with_reissue_bills_the_items_again(api: Api) -> None:
    drafts = setup_billing(api)
    jan, feb = drafts[0], drafts[1]
    api.call("FinalizeInvoice", pb.InvoiceActionRequest(id=jan.id))
    void = api.call("VoidInvoice", pb.VoidInvoiceRequest(id=jan.id, reason="wrong address", reissue=True))
    assert void.status == "void"
    plain = api.call("VoidInvoice", pb.VoidInvoiceRequest(id=feb.id, reason="duplicate"))
    assert plain.status == "void"
    run = api.call("RunInvoiceCycle", pb.RunInvoiceCycleRequest(as_of=ts(FEB + timedelta(hours=1))))
    assert run.invoices_created == 1  # January's items again; February's stay billed by the void invoice
    new = [i for i in api.call("ListInvoices", pb.ListInvoicesRequest()).invoices if i.id not in (jan.id, feb.id)]
    assert [(i.status, i.total, i.period_start, i.period_end) for i in new] == [
        ("draft", jan.total, jan.period_start, jan.period_end)
    ]
    again = api.call("RunInvoiceCycle", pb.RunInvoiceCycleRequest(as_of=ts(FEB + timedelta(hours=2))))
    assert again.invoices_created == 0


def test_void_refuses_an_invoice_with_payments(api: Api, invoice: pb.Invoice) -> None:
    pay(api, invoice.id, "1.00", key="p-1")
    fails(api, "VoidInvoice", pb.VoidInvoiceRequest(id=invoice.id, reissue=True),
          grpc.StatusCode.FAILED_PRECONDITION, "credit note")  # fmt: skip


def test_mark_paid_is_a_payment_of_everything_due(api: Api, invoice: pb.Invoice) -> None:
    pay(api, invoice.id, "10.00", key="p-1")
    done = api.call("MarkInvoicePaid", pb.InvoiceActionRequest(id=invoice.id))
    assert (done.status, done.amount_paid, done.amount_due) == ("paid", "30.00", "0.00")
    listed = api.call("ListPayments", pb.ListPaymentsRequest(invoice_id=invoice.id)).payments
    assert [(x.amount, x.method) for x in listed] == [("10.00", "bank_transfer"), ("20.00", "other")]


def test_the_sdk_methods(api: Api, invoice: pb.Invoice) -> None:
    from decimal import Decimal

    from tally.sdk import BillingClient, TallyApiError

    with BillingClient(api.server.target, api.admin) as client:
        done = client.record_payment(invoice.id, Decimal("10.00"), paid_at=PAID, method="check", reference="chq 7",
                                     key="sdk-1")  # fmt: skip
        assert (done.payment.amount, done.payment.method, done.invoice.amount_due) == ("10.00", "check", "20.00")
        assert client.record_payment(invoice.id, "10.00", paid_at=PAID, method="check", reference="chq 7",
                                     key="sdk-1").payment.created is False  # fmt: skip
        with pytest.raises(TypeError, match="amount must be a Decimal"):
            client.record_payment(invoice.id, 10.0)  # type: ignore[arg-type]
        with pytest.raises(TallyApiError) as caught:
            client.record_payment(invoice.id, "1.005")
        assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT and "amount" in caught.value.message
        assert [p.key for p in client.list_payments(invoice.id)] == ["sdk-1"]
        written_off = client.mark_uncollectible(invoice.id, reason="gone")
        assert (written_off.status, written_off.amount_due) == ("uncollectible", "0.00")
        assert client.mark_invoice_uncollectible == client.mark_uncollectible
        drafts = [i for i in client.iter_invoices(status="draft")]
        assert client.void_invoice(drafts[0].id, reason="r", reissue=True).status == "void"


def test_payment_rpcs_name_the_invoice_by_its_number(api: Api, invoice: pb.Invoice) -> None:
    """Finance reads numbers off documents and bank statements: RecordPayment, ListPayments and
    MarkInvoiceUncollectible take `INV-000001` (any case, zeros optional) wherever they take an id."""
    number = invoice.label
    assert number.startswith("INV-")
    short = "inv-" + number.removeprefix("INV-").lstrip("0")
    by_label = api.call(
        "RecordPayment", pb.RecordPaymentRequest(invoice_label=short, amount="10.00", paid_at=ts(PAID), key="n-1")
    )
    assert (by_label.payment.invoice_id, by_label.invoice.amount_due) == (invoice.id, "20.00")
    listed = api.call("ListPayments", pb.ListPaymentsRequest(invoice_label=number)).payments
    assert [(p.invoice_id, p.amount) for p in listed] == [(invoice.id, "10.00")]
    fails(api, "RecordPayment", pb.RecordPaymentRequest(invoice_id=invoice.id, invoice_label=number, amount="1.00"),
          grpc.StatusCode.INVALID_ARGUMENT, "give invoice_id or invoice_label, not both")  # fmt: skip
    fails(api, "ListPayments", pb.ListPaymentsRequest(invoice_label="INV-999999"), grpc.StatusCode.NOT_FOUND)
    fails(api, "RecordPayment", pb.RecordPaymentRequest(invoice_label="nonsense", amount="1.00"),
          grpc.StatusCode.INVALID_ARGUMENT, "invoice_label:")  # fmt: skip
    done = api.call("MarkInvoiceUncollectible", pb.MarkInvoiceUncollectibleRequest(label=number, reason="gone"))
    assert (done.id, done.status, done.amount_due) == (invoice.id, "uncollectible", "0.00")
    assert [p.amount for p in api.call("ListPayments", pb.ListPaymentsRequest(invoice_id=invoice.id)).payments] == [
        "10.00"
    ]  # the refused calls recorded nothing
