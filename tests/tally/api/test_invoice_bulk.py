"""ListInvoices filters and pages, invoices named by label, and the bulk RPCs (BulkFinalizeInvoices,
BulkVoidInvoices, BulkMarkInvoicesPaid) over a real server on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from tests.invoicing.conftest import T0
from tests.invoicing.test_invoice_bulk import FEB, world
from tests.tally.api.conftest import Api, pb


def ts(moment: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(moment)
    return out


@pytest.fixture
def ids(api: Api) -> list[int]:
    """Tenant A's six drafts (cus_a and cus_b on pro, cus_c on lite; billed Jan 1 and Feb 1), by id."""
    return world(api.engine, api.tenant.tenant_id)


def listed(api: Api, **kw: object) -> list[pb.Invoice]:
    return list(api.call("ListInvoices", pb.ListInvoicesRequest(**kw)).invoices)  # type: ignore[arg-type]


def refused(api: Api, method: str, request: object, status: grpc.StatusCode, fragment: str) -> None:
    err = api.fails(method, request)
    assert (err.code(), fragment in (err.details() or "")) == (status, True), (err.code(), err.details())


# --- ListInvoices ------------------------------------------------------------------------------------------------
def test_list_invoices_filters_and_pages(api: Api, ids: list[int]) -> None:
    got = listed(api, filter=pb.InvoiceFilter(plan="lite"))
    assert {i.customer for i in got} == {"cus_c"} and len(got) == 2
    got = listed(api, filter=pb.InvoiceFilter(plan="pro", start=ts(FEB)))
    assert sorted(i.customer for i in got) == ["cus_a", "cus_b"]
    assert all(i.due_at.ToDatetime(tzinfo=UTC) == FEB for i in got)
    got = listed(api, filter=pb.InvoiceFilter(end=ts(FEB)))
    assert len(got) == 3 and all(i.due_at.ToDatetime(tzinfo=UTC) == T0 for i in got)
    assert listed(api, filter=pb.InvoiceFilter(date="issued", start=ts(T0))) == []
    # The top-level customer and status still work, alone or with the filter when they agree.
    assert len(listed(api, customer="cus_a")) == 2
    assert len(listed(api, customer="cus_a", filter=pb.InvoiceFilter(customer="cus_a", start=ts(FEB)))) == 1
    # Pages: a token while more match, none on the last page.
    first = api.call("ListInvoices", pb.ListInvoicesRequest(page_size=4))
    assert [i.id for i in first.invoices] == ids[:4] and first.next_page_token
    rest = api.call("ListInvoices", pb.ListInvoicesRequest(page_size=4, page_token=first.next_page_token))
    assert [i.id for i in rest.invoices] == ids[4:] and rest.next_page_token == ""
    exact = api.call("ListInvoices", pb.ListInvoicesRequest(page_size=6))
    assert len(exact.invoices) == 6 and exact.next_page_token == ""


@pytest.mark.parametrize(
    ("request_kw", "status", "fragment"),
    [
        ({"filter": pb.InvoiceFilter(status="owed")}, grpc.StatusCode.INVALID_ARGUMENT, "filter.status 'owed'"),
        ({"filter": pb.InvoiceFilter(date="paid")}, grpc.StatusCode.INVALID_ARGUMENT, "filter.date 'paid'"),
        ({"filter": pb.InvoiceFilter(start=ts(FEB), end=ts(T0))}, grpc.StatusCode.INVALID_ARGUMENT,
         "filter.start"),
        ({"customer": "cus_a", "filter": pb.InvoiceFilter(customer="cus_b")}, grpc.StatusCode.INVALID_ARGUMENT,
         "customer 'cus_a' and filter.customer 'cus_b' differ"),
        ({"filter": pb.InvoiceFilter(plan="gold")}, grpc.StatusCode.NOT_FOUND, "no plan 'gold'"),
        ({"filter": pb.InvoiceFilter(customer="cus_x")}, grpc.StatusCode.NOT_FOUND, "no customer 'cus_x'"),
    ],
)  # fmt: skip
def test_list_invoices_refuses_a_bad_filter(
    api: Api, ids: list[int], request_kw: dict[str, object], status: grpc.StatusCode, fragment: str
) -> None:
    refused(api, "ListInvoices", pb.ListInvoicesRequest(**request_kw), status, fragment)  # type: ignore[arg-type]


# --- an invoice by its label -----------------------------------------------------------------------------------
def test_invoices_are_named_by_id_or_label(api: Api, ids: list[int]) -> None:
    done = api.call("FinalizeInvoice", pb.InvoiceActionRequest(label=f"draft {ids[2]}"))
    assert (done.id, done.label) == (ids[2], "INV-000001")
    assert api.call("GetInvoice", pb.GetInvoiceRequest(label="INV-000001")).id == ids[2]
    assert api.call("GetInvoice", pb.GetInvoiceRequest(label="inv-1")).id == ids[2]
    export = api.call("ExportInvoice", pb.ExportInvoiceRequest(label="INV-000001", format="json"))
    assert export.filename == "INV-000001.json" and b'"INV-000001"' in export.content
    paid = api.call("MarkInvoicePaid", pb.InvoiceActionRequest(label="INV-000001"))
    assert paid.status == "paid"
    void = api.call("VoidInvoice", pb.VoidInvoiceRequest(label=f"draft-{ids[3]}", reason="test"))
    assert void.status == "void"
    refused(api, "GetInvoice", pb.GetInvoiceRequest(id=ids[2], label="INV-000001"), grpc.StatusCode.INVALID_ARGUMENT,
            "give id or label, not both")  # fmt: skip
    refused(api, "GetInvoice", pb.GetInvoiceRequest(label="ABC-1"), grpc.StatusCode.INVALID_ARGUMENT,
            "label: invoice 'ABC-1' is neither an id")  # fmt: skip
    refused(api, "GetInvoice", pb.GetInvoiceRequest(label="CN-000001"), grpc.StatusCode.NOT_FOUND,
            "no invoice numbered CN-000001")  # fmt: skip
    refused(api, "GetInvoice", pb.GetInvoiceRequest(), grpc.StatusCode.INVALID_ARGUMENT, "or give label")
    err = api.fails("GetInvoice", pb.GetInvoiceRequest(label="INV-000001"), key=api.other.key)
    assert err.code() == grpc.StatusCode.NOT_FOUND  # another tenant's number names nothing


# --- bulk actions ----------------------------------------------------------------------------------------------
def test_bulk_finalize_in_pieces_and_again(api: Api, ids: list[int]) -> None:
    dry = api.call("BulkFinalizeInvoices", pb.BulkInvoicesRequest(dry_run=True))
    assert (dry.action, dry.dry_run, dry.done, list(dry.done_ids)) == ("finalize", True, 6, ids)
    assert all(i.status == "draft" for i in listed(api))
    first = api.call("BulkFinalizeInvoices", pb.BulkInvoicesRequest(limit=4))
    assert (first.examined, first.done, list(first.applies_to)) == (4, 4, ["draft"]) and first.next_page_token
    rest = api.call("BulkFinalizeInvoices", pb.BulkInvoicesRequest(limit=4, page_token=first.next_page_token))
    assert (rest.examined, rest.done, rest.next_page_token) == (2, 2, "")
    assert [i.label for i in listed(api)] == [f"INV-{n:06d}" for n in range(1, 7)]  # numbers follow ids
    again = api.call("BulkFinalizeInvoices", pb.BulkInvoicesRequest())
    assert (again.done, dict(again.skipped), again.failed) == (0, {"already finalized": 6}, 0)


def test_bulk_pay_and_void_follow_the_status_rules(api: Api, ids: list[int]) -> None:
    api.call("BulkFinalizeInvoices", pb.BulkInvoicesRequest(filter=pb.InvoiceFilter(end=ts(FEB))))  # Jan 1 ones
    paid = api.call("BulkMarkInvoicesPaid", pb.BulkInvoicesRequest(filter=pb.InvoiceFilter(plan="pro")))
    assert (paid.done, dict(paid.skipped)) == (2, {"a draft (finalize it first)": 2})
    assert list(paid.applies_to) == ["finalized", "partially_paid"]
    void = api.call("BulkVoidInvoices", pb.BulkVoidInvoicesRequest(filter=pb.InvoiceFilter(plan="pro"), reason="x"))
    assert (void.done, dict(void.skipped)) == (2, {"has payments (issue a credit note instead)": 2})
    statuses = sorted(i.status for i in listed(api))
    assert statuses == ["draft", "finalized", "paid", "paid", "void", "void"]


@pytest.mark.parametrize(
    ("method", "request_", "fragment"),
    [
        ("BulkVoidInvoices", pb.BulkVoidInvoicesRequest(reason="x"), "the filter is empty"),
        ("BulkVoidInvoices", pb.BulkVoidInvoicesRequest(filter=pb.InvoiceFilter(status="draft")), "reason is required"),
        ("BulkVoidInvoices", pb.BulkVoidInvoicesRequest(filter=pb.InvoiceFilter(status="draft"), reason="x" * 501),
         "at most 500"),
        ("BulkFinalizeInvoices", pb.BulkInvoicesRequest(limit=1001), "limit must be 0..1000"),
        ("BulkFinalizeInvoices", pb.BulkInvoicesRequest(limit=-1), "limit must be 0..1000"),
        ("BulkFinalizeInvoices", pb.BulkInvoicesRequest(page_token="forged"), "page_token"),
        ("BulkMarkInvoicesPaid", pb.BulkInvoicesRequest(filter=pb.InvoiceFilter(status="owed")), "filter.status"),
        ("BulkMarkInvoicesPaid", pb.BulkInvoicesRequest(filter=pb.InvoiceFilter(start=ts(FEB), end=ts(FEB))),
         "is not before end"),
    ],
)  # fmt: skip
def test_bulk_refuses_bad_requests_and_changes_nothing(
    api: Api, ids: list[int], method: str, request_: object, fragment: str
) -> None:
    before = [(i.id, i.status) for i in listed(api)]
    refused(api, method, request_, grpc.StatusCode.INVALID_ARGUMENT, fragment)
    assert [(i.id, i.status) for i in listed(api)] == before


def test_bulk_is_admin_only_and_stays_in_its_tenant(api: Api, ids: list[int]) -> None:
    err = api.fails("BulkFinalizeInvoices", pb.BulkInvoicesRequest(), key=api.read)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "'admin'" in (err.details() or "")
    other = api.call("BulkFinalizeInvoices", pb.BulkInvoicesRequest(), key=api.other.key)
    assert (other.examined, other.done) == (0, 0)  # tenant B has no invoices; A's are untouched
    assert all(i.status == "draft" for i in listed(api))


def test_the_sdk_filters_names_by_number_and_bulk_acts(api: Api, ids: list[int]) -> None:
    from tally.sdk import BillingClient, TallyApiError, invoice_filter

    with BillingClient(api.server.target, api.admin, timeout_s=20) as client:
        lite = list(client.iter_invoices(plan="lite", page_size=1))
        assert [i.customer for i in lite] == ["cus_c", "cus_c"]
        february = list(client.iter_invoices(start=FEB, page_size=2))
        assert len(february) == 3 and all(i.due_at.ToDatetime(tzinfo=UTC) == FEB for i in february)
        done = client.bulk_finalize_invoices(invoice_filter(customer="cus_a"))
        assert done.done == 2 and client.get_invoice("INV-000002").customer == "cus_a"
        paid = client.bulk_mark_invoices_paid(invoice_filter(customer="cus_a"), dry_run=True)
        assert (paid.dry_run, paid.done) == (True, 2)
        void = client.bulk_void_invoices(invoice_filter(status="draft"), "cleanup", limit=2)
        assert (void.examined, void.done) == (2, 2) and void.next_page_token
        rest = client.bulk_void_invoices(invoice_filter(status="draft"), "cleanup", page_token=void.next_page_token)
        assert (rest.done, rest.next_page_token) == (2, "")
        with pytest.raises(TallyApiError) as err:
            client.bulk_void_invoices(invoice_filter(), "cleanup")
        assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT
