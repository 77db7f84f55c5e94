"""Invoice RPCs over a real server: the cycle, listing, lifecycle, credit notes, exports, previews."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from pypdf import PdfReader

from invoicing.catalog import CustomerDefinition, create_customer
from invoicing.documents import set_tax_rate
from invoicing.ledger import Grant, Ledger
from invoicing.subscriptions import create_subscription
from tests.invoicing.conftest import T0, flat, publish, write_events
from tests.invoicing.test_invoice_run import FEB, GRADUATED, calls
from tests.tally.api.conftest import Api, pb

PLAN = [
    {"code": "base", "kind": "flat", "price": flat("30")},
    {"code": "calls", "kind": "usage", "meter": "api_calls", "price": GRADUATED},
]


def ts(moment: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(moment)
    return out


def setup_billing(api: Api) -> None:
    """cus_1 on a $30 + graduated plan with 1,500 January calls (500 billable at $0.002)."""
    tid = api.tenant.tenant_id
    create_customer(api.engine, tid, CustomerDefinition(external_id="cus_1", timezone="UTC"), T0)
    publish(api.engine, tid, "pro", PLAN)
    create_subscription(api.engine, tid, "cus_1", "pro", T0)
    write_events(api.engine, tid, calls(1500))


MAR = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def billed(api: Api) -> list[pb.Invoice]:
    """The two drafts of the February run, one per billing date (by id): Jan 1 (January's fee) and
    Feb 1 (January's usage and February's fee)."""
    setup_billing(api)
    api.call("RunInvoiceCycle", pb.RunInvoiceCycleRequest(as_of=ts(FEB)))
    return list(api.call("ListInvoices", pb.ListInvoicesRequest()).invoices)


def by_role(billed: list[pb.Invoice]) -> tuple[pb.Invoice, pb.Invoice]:
    """(Jan 1: January's fee, Feb 1: January's usage and February's fee), checking what each holds."""
    docs = {i.due_at.ToDatetime(tzinfo=UTC): i for i in billed}
    assert sorted(docs) == [T0, FEB]
    jan, feb = docs[T0], docs[FEB]
    assert [(ln.charge, ln.amount) for ln in jan.lines] == [("base", "30.00")] and jan.total == "30.00"
    assert [(ln.charge, ln.amount) for ln in feb.lines] == [("calls", "1.00"), ("base", "30.00")]
    assert feb.total == "31.00"
    return jan, feb


def periods(inv: pb.Invoice) -> list[tuple[datetime, datetime]]:
    """Each line's service period."""
    return [(ln.period_start.ToDatetime(tzinfo=UTC), ln.period_end.ToDatetime(tzinfo=UTC)) for ln in inv.lines]


def code(err: grpc.RpcError) -> grpc.StatusCode:
    return err.code()


def test_run_invoice_cycle_invoices_once(api: Api) -> None:
    setup_billing(api)
    first = api.call("RunInvoiceCycle", pb.RunInvoiceCycleRequest(as_of=ts(FEB)))
    # `items`: the documents due (one per billing date); `already_invoiced`: due items billed before.
    assert (first.items, first.invoices_created, first.already_invoiced, first.failed) == (2, 2, 0, 0)
    assert first.seconds > 0
    again = api.call("RunInvoiceCycle", pb.RunInvoiceCycleRequest(as_of=ts(FEB + timedelta(hours=1))))
    assert (again.items, again.invoices_created, again.already_invoiced) == (2, 0, 3)
    jan, feb = by_role(list(api.call("ListInvoices", pb.ListInvoicesRequest()).invoices))
    assert periods(jan) == [(T0, FEB)]
    assert periods(feb) == [(T0, FEB), (FEB, MAR)]  # January's usage in arrears, February's fee in advance


def test_run_invoice_cycle_refuses_a_future_as_of_and_a_read_key(api: Api) -> None:
    setup_billing(api)
    future = datetime.now(UTC) + timedelta(days=3)
    err = api.fails("RunInvoiceCycle", pb.RunInvoiceCycleRequest(as_of=ts(future)))
    assert code(err) == grpc.StatusCode.INVALID_ARGUMENT and "as_of" in (err.details() or "")
    err = api.fails("RunInvoiceCycle", pb.RunInvoiceCycleRequest(as_of=ts(FEB)), key=api.read)
    assert code(err) == grpc.StatusCode.PERMISSION_DENIED and "admin" in (err.details() or "")
    assert not api.call("ListInvoices", pb.ListInvoicesRequest()).invoices  # nothing was invoiced


def test_get_invoice_has_money_as_decimal_strings_and_the_external_customer(api: Api, billed: list[pb.Invoice]) -> None:
    fee, usage = by_role(billed)
    got = api.call("GetInvoice", pb.GetInvoiceRequest(id=fee.id), key=api.read)
    assert got == fee
    assert (got.label, got.number, got.kind, got.status) == (f"draft {fee.id}", 0, "invoice", "draft")
    assert (got.customer, got.currency, got.subscription_id > 0) == ("cus_1", "USD", True)
    assert (got.subtotal, got.tax, got.credits_applied, got.total) == ("30.00", "0.00", "0.00", "30.00")
    assert got.period_start.ToDatetime(tzinfo=UTC) == T0
    assert got.period_end.ToDatetime(tzinfo=UTC) == FEB
    (line,) = got.lines
    assert (line.position, line.kind, line.charge, line.quantity, line.amount) == (1, "charge", "base", "1", "30.00")
    assert [(ln.charge, ln.meter, ln.quantity, ln.amount) for ln in usage.lines] == [
        ("calls", "api_calls", "1500", "1.00"), ("base", "", "1", "30.00")
    ]  # fmt: skip
    assert json.loads(usage.lines[0].detail_json)["model"] == "graduated"
    # One subscription on the document: it is named; the period spans its lines'.
    assert (usage.subscription_id, usage.subtotal, usage.total) == (got.subscription_id, "31.00", "31.00")
    assert (usage.period_start.ToDatetime(tzinfo=UTC), usage.period_end.ToDatetime(tzinfo=UTC)) == (T0, MAR)


def test_get_invoice_not_found_bad_id_and_other_tenant(api: Api, billed: list[pb.Invoice]) -> None:
    err = api.fails("GetInvoice", pb.GetInvoiceRequest(id=99_999))
    assert code(err) == grpc.StatusCode.NOT_FOUND and "99999" in (err.details() or "")
    err = api.fails("GetInvoice", pb.GetInvoiceRequest(id=0))
    assert code(err) == grpc.StatusCode.INVALID_ARGUMENT and "id must be an id from 1 to" in (err.details() or "")
    err = api.fails("GetInvoice", pb.GetInvoiceRequest(id=billed[0].id), key=api.other.key)
    assert code(err) == grpc.StatusCode.NOT_FOUND


def test_list_invoices_pages_by_two_and_filters(api: Api, billed: list[pb.Invoice]) -> None:
    api.call("RunInvoiceCycle", pb.RunInvoiceCycleRequest(as_of=ts(MAR)))  # a third document: Mar 1
    ids = [i.id for i in api.call("ListInvoices", pb.ListInvoicesRequest()).invoices]
    assert ids[:2] == [i.id for i in billed] and ids == sorted(ids) and len(ids) == 3
    first = api.call("ListInvoices", pb.ListInvoicesRequest(page_size=2), key=api.read)
    assert [i.id for i in first.invoices] == ids[:2] and first.next_page_token
    second = api.call("ListInvoices", pb.ListInvoicesRequest(page_size=2, page_token=first.next_page_token))
    assert [i.id for i in second.invoices] == ids[2:] and second.next_page_token == ""
    assert all(i.customer == "cus_1" for i in [*first.invoices, *second.invoices])
    api.call("FinalizeInvoice", pb.InvoiceActionRequest(id=ids[1]))
    finalized = api.call("ListInvoices", pb.ListInvoicesRequest(status="finalized", customer="cus_1"))
    assert [(i.id, i.label) for i in finalized.invoices] == [(ids[1], "INV-000001")]
    drafts = api.call("ListInvoices", pb.ListInvoicesRequest(status="draft", page_size=1))
    assert [i.id for i in drafts.invoices] == [ids[0]] and drafts.next_page_token
    rest = api.call(
        "ListInvoices", pb.ListInvoicesRequest(status="draft", page_size=1, page_token=drafts.next_page_token)
    )
    assert [i.id for i in rest.invoices] == [ids[2]] and rest.next_page_token == ""
    assert not api.call("ListInvoices", pb.ListInvoicesRequest(), key=api.other.key).invoices  # tenant B has none


def test_list_invoices_bad_input(api: Api, billed: list[pb.Invoice]) -> None:
    for request, fragment, status in (
        (pb.ListInvoicesRequest(status="open"), "status 'open'", grpc.StatusCode.INVALID_ARGUMENT),
        (pb.ListInvoicesRequest(page_size=1001), "page_size must be 0..1000", grpc.StatusCode.INVALID_ARGUMENT),
        (pb.ListInvoicesRequest(page_token="garbage!"), "page_token", grpc.StatusCode.INVALID_ARGUMENT),
        (pb.ListInvoicesRequest(customer="nobody"), "no customer 'nobody'", grpc.StatusCode.NOT_FOUND),
    ):
        err = api.fails("ListInvoices", request)
        assert code(err) == status and fragment in (err.details() or ""), err.details()


def test_finalize_pay_and_void(api: Api, billed: list[pb.Invoice]) -> None:
    jan, feb = by_role(billed)
    done = api.call("FinalizeInvoice", pb.InvoiceActionRequest(id=feb.id))
    assert (done.status, done.number, done.label, done.total) == ("finalized", 1, "INV-000001", "31.00")
    assert (done.amount_paid, done.amount_due) == ("0.00", "31.00")
    err = api.fails("FinalizeInvoice", pb.InvoiceActionRequest(id=feb.id))
    assert code(err) == grpc.StatusCode.FAILED_PRECONDITION and "only a draft can be finalized" in (err.details() or "")
    err = api.fails("MarkInvoicePaid", pb.InvoiceActionRequest(id=jan.id))
    assert code(err) == grpc.StatusCode.FAILED_PRECONDITION and "only an open (finalized)" in (err.details() or "")
    assert api.call("GetInvoice", pb.GetInvoiceRequest(id=jan.id)).status == "draft"  # the refusal changed nothing
    paid = api.call("MarkInvoicePaid", pb.InvoiceActionRequest(id=feb.id))  # a payment of everything still due
    assert (paid.status, paid.number, paid.amount_paid, paid.amount_due) == ("paid", 1, "31.00", "0.00")
    err = api.fails("VoidInvoice", pb.VoidInvoiceRequest(id=feb.id))
    assert code(err) == grpc.StatusCode.FAILED_PRECONDITION and "only a draft or an unpaid finalized" in (
        err.details() or ""
    )
    err = api.fails("VoidInvoice", pb.VoidInvoiceRequest(id=jan.id, reason="x" * 501))
    assert code(err) == grpc.StatusCode.INVALID_ARGUMENT and "reason" in (err.details() or "")
    assert api.call("GetInvoice", pb.GetInvoiceRequest(id=jan.id)).status == "draft"
    voided = api.call("VoidInvoice", pb.VoidInvoiceRequest(id=jan.id, reason="duplicate"))
    assert (voided.status, voided.number) == ("void", 0)
    # The failed finalize took no number: the next document (Mar 1) gets 2.
    api.call("RunInvoiceCycle", pb.RunInvoiceCycleRequest(as_of=ts(MAR)))
    (mar,) = api.call("ListInvoices", pb.ListInvoicesRequest(status="draft")).invoices
    assert mar.due_at.ToDatetime(tzinfo=UTC) == MAR
    assert api.call("FinalizeInvoice", pb.InvoiceActionRequest(id=mar.id)).number == 2


def test_lifecycle_needs_admin_and_the_tenant(api: Api, billed: list[pb.Invoice]) -> None:
    for method, request in (
        ("FinalizeInvoice", pb.InvoiceActionRequest(id=billed[0].id)),
        ("MarkInvoicePaid", pb.InvoiceActionRequest(id=billed[0].id)),
        ("VoidInvoice", pb.VoidInvoiceRequest(id=billed[0].id)),
        ("CreateCreditNote", pb.InvoiceActionRequest(id=billed[0].id)),
    ):
        assert code(api.fails(method, request, key=api.read)) == grpc.StatusCode.PERMISSION_DENIED
        assert code(api.fails(method, request, key=api.other.key)) == grpc.StatusCode.NOT_FOUND
        assert code(api.fails(method, pb.InvoiceActionRequest(id=-3) if "Void" not in method
                              else pb.VoidInvoiceRequest(id=-3))) == grpc.StatusCode.INVALID_ARGUMENT  # fmt: skip
    assert api.call("GetInvoice", pb.GetInvoiceRequest(id=billed[0].id)).status == "draft"


def test_create_credit_note_none_then_an_adjustment(api: Api, billed: list[pb.Invoice]) -> None:
    _, usage = by_role(billed)  # Feb 1: January's usage and February's fee
    api.call("FinalizeInvoice", pb.InvoiceActionRequest(id=usage.id))
    nothing = api.call("CreateCreditNote", pb.InvoiceActionRequest(id=usage.id))
    assert not nothing.HasField("document")
    write_events(api.engine, api.tenant.tenant_id, calls(500, start=T0 + timedelta(days=3), prefix="late"))
    doc = api.call("CreateCreditNote", pb.InvoiceActionRequest(id=usage.id)).document
    assert (doc.kind, doc.status, doc.corrects_invoice_id, doc.customer) == ("adjustment", "draft", usage.id, "cus_1")
    assert (doc.subtotal, doc.total) == ("1.00", "1.00")  # 500 more calls at $0.002; the fee is unchanged
    assert [(ln.kind, ln.charge, ln.amount, ln.amount_exact) for ln in doc.lines] == [
        ("charge", "calls", "1.00", "1.00")
    ]
    assert periods(doc) == [(T0, FEB)]  # January's usage, the item it corrects
    assert api.call("GetInvoice", pb.GetInvoiceRequest(id=usage.id)).total == "31.00"  # the original stays
    assert not api.call("CreateCreditNote", pb.InvoiceActionRequest(id=usage.id)).HasField("document")
    err = api.fails("CreateCreditNote", pb.InvoiceActionRequest(id=doc.id))
    assert code(err) == grpc.StatusCode.FAILED_PRECONDITION and "correct the invoice it corrects" in (
        err.details() or ""
    )
    err = api.fails("CreateCreditNote", pb.InvoiceActionRequest(id=99_999))
    assert code(err) == grpc.StatusCode.NOT_FOUND


def test_export_json_csv_and_pdf(api: Api, billed: list[pb.Invoice]) -> None:
    fee, _ = by_role(billed)
    out = api.call("ExportInvoice", pb.ExportInvoiceRequest(id=fee.id, format="json"), key=api.read)
    assert (out.content_type, out.filename) == ("application/json", f"draft-{fee.id}.json")
    doc = json.loads(out.content)
    assert (doc["id"], doc["total"], doc["lines"][0]["amount"]) == (fee.id, "30.00", "30.00")
    api.call("FinalizeInvoice", pb.InvoiceActionRequest(id=fee.id))
    out = api.call("ExportInvoice", pb.ExportInvoiceRequest(id=fee.id, format="csv"))
    assert (out.content_type, out.filename) == ("text/csv", "INV-000001.csv")
    rows = list(csv.DictReader(io.StringIO(out.content.decode())))  # one row per line, the invoice's columns on each
    assert [(r["label"], r["status"], r["line_kind"], r["amount"], r["total"]) for r in rows] == [
        ("INV-000001", "finalized", "charge", "30.00", "30.00")
    ]
    out = api.call("ExportInvoice", pb.ExportInvoiceRequest(id=fee.id, format="pdf"))
    assert (out.content_type, out.filename) == ("application/pdf", "INV-000001.pdf")
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(out.content)).pages)
    assert "INV-000001" in text and "30.00" in text


def test_export_bad_format_and_not_found(api: Api, billed: list[pb.Invoice]) -> None:
    err = api.fails("ExportInvoice", pb.ExportInvoiceRequest(id=billed[0].id, format="xlsx"))
    assert code(err) == grpc.StatusCode.INVALID_ARGUMENT and "format 'xlsx'" in (err.details() or "")
    err = api.fails("ExportInvoice", pb.ExportInvoiceRequest(id=99_999, format="pdf"))
    assert code(err) == grpc.StatusCode.NOT_FOUND
    err = api.fails("ExportInvoice", pb.ExportInvoiceRequest(id=billed[0].id, format="json"), key=api.other.key)
    assert code(err) == grpc.StatusCode.NOT_FOUND


def test_upcoming_invoice_rates_the_open_period_and_writes_nothing(api: Api, billed: list[pb.Invoice]) -> None:
    write_events(api.engine, api.tenant.tenant_id, calls(1800, start=FEB, prefix="feb"))
    at = datetime(2026, 2, 20, 10, 7, tzinfo=UTC)
    got = api.call("GetUpcomingInvoice", pb.GetUpcomingInvoiceRequest(customer="cus_1", at=ts(at)), key=api.read)
    # February's usage so far: 800 billable calls x $0.002 = $1.60; March's fee is due at February's end:
    # both are due on Mar 1, so they are on one document.
    (upcoming,) = got.invoices
    assert (upcoming.due_at.ToDatetime(tzinfo=UTC), upcoming.subtotal, upcoming.total) == (MAR, "31.60", "31.60")
    assert [(ln.charge, ln.amount) for ln in upcoming.lines] == [("calls", "1.60"), ("base", "30.00")]
    assert periods(upcoming) == [(FEB, MAR), (MAR, datetime(2026, 4, 1, tzinfo=UTC))]  # each line's own period
    assert all((i.id, i.label, i.kind, i.status, i.customer) == (0, "preview", "preview", "preview", "cus_1")
               for i in got.invoices)  # fmt: skip
    assert len(api.call("ListInvoices", pb.ListInvoicesRequest()).invoices) == len(billed)


def test_upcoming_invoice_bad_input(api: Api, billed: list[pb.Invoice]) -> None:
    err = api.fails("GetUpcomingInvoice", pb.GetUpcomingInvoiceRequest())
    assert code(err) == grpc.StatusCode.INVALID_ARGUMENT and "customer is required" in (err.details() or "")
    err = api.fails("GetUpcomingInvoice", pb.GetUpcomingInvoiceRequest(customer="nobody"))
    assert code(err) == grpc.StatusCode.NOT_FOUND and "nobody" in (err.details() or "")
    err = api.fails("GetUpcomingInvoice", pb.GetUpcomingInvoiceRequest(customer="cus_1"), key=api.other.key)
    assert code(err) == grpc.StatusCode.NOT_FOUND


def test_tax_and_credits_to_the_cent(api: Api) -> None:
    """A FR customer (20% exclusive) with a $10.00 grant: $30.00 + $6.00 tax - $10.00 = $26.00."""
    tid = api.tenant.tenant_id
    create_customer(api.engine, tid, CustomerDefinition(external_id="cus_fr", timezone="UTC", tax_region="FR"), T0)
    set_tax_rate(api.engine, tid, "FR", "20", False, T0)
    publish(api.engine, tid, "basic", [{"code": "base", "kind": "flat", "price": flat("30")}])
    create_subscription(api.engine, tid, "cus_fr", "basic", T0)
    Ledger(api.engine, tid, clock=lambda: T0).grant(Grant("welcome", "cus_fr", 1000, "USD"))
    api.call("RunInvoiceCycle", pb.RunInvoiceCycleRequest(as_of=ts(T0 + timedelta(hours=1))))
    (inv,) = api.call("ListInvoices", pb.ListInvoicesRequest(customer="cus_fr")).invoices
    assert (inv.subtotal, inv.tax, inv.credits_applied, inv.total) == ("30.00", "6.00", "10.00", "26.00")
    assert (inv.tax_region, inv.tax_rate, inv.tax_inclusive) == ("FR", "20", False)
    assert [(ln.kind, ln.amount, ln.amount_exact) for ln in inv.lines] == [
        ("charge", "30.00", "30"), ("tax", "6.00", "6.00"), ("credit", "-10.00", "-10.00")
    ]  # fmt: skip
