"""OpenDispute, ListDisputes, ResolveDispute, CreatePortalSession and RevokePortalLinks over a real socket (both
databases), through the SDK where it has a method; refusals name the field. Tenancy and scopes for these RPCs
are in test_access.py with every other RPC."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest

from invoicing.catalog import CustomerDefinition, create_customer, set_billing_profile
from invoicing.documents import finalize_invoice, list_invoices, run_cycle
from invoicing.subscriptions import create_subscription
from tally.console.portal._links import LinkRefused, parse, verify
from tally.sdk import BillingClient, TallyApiError
from tests.invoicing.conftest import flat, publish
from tests.tally.api.conftest import Api, pb

T0 = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)


def _issued(api: Api) -> tuple[int, int]:
    """cus_a's November document (October's usage, November's $30 fee), finalized: (invoice id, fee line)."""
    engine, tid = api.engine, api.tenant.tenant_id
    create_customer(engine, tid, CustomerDefinition(external_id="cus_a", name="Ada"), T0)
    set_billing_profile(engine, tid, {"legal_name": "Seller"}, T0)
    publish(engine, tid, "pro", [{"code": "base", "kind": "flat", "price": flat("30")}])
    create_subscription(engine, tid, "cus_a", "pro", T0)
    run_cycle(engine, tid, NOV)
    doc = next(i for i in list_invoices(engine, tid) if i.due_at == NOV)
    inv = finalize_invoice(engine, tid, doc.id or 0, NOV)
    return inv.id or 0, next(ln.position for ln in inv.lines if ln.charge_code == "base")


def test_open_list_and_resolve(api: Api) -> None:
    invoice_id, fee = _issued(api)
    with BillingClient(api.server.target, api.admin, timeout_s=20) as billing:
        d = billing.open_dispute(invoice_id, fee, "Charged twice", customer="cus_a")
        assert (d.status, d.line_amount, d.currency, d.customer, d.charge) == ("open", "30.00", "USD", "cus_a", "base")
        assert d.invoice_number.startswith("INV-") and d.opened_by.startswith("api key ")
        with pytest.raises(TallyApiError) as exc:
            billing.open_dispute(invoice_id, fee, "again")
        assert exc.value.code == grpc.StatusCode.ALREADY_EXISTS
        with pytest.raises(TallyApiError) as exc:
            billing.open_dispute(invoice_id, fee, "x", customer="someone_else")
        assert exc.value.code == grpc.StatusCode.NOT_FOUND
        page = billing.list_disputes(status="open", page_size=1)
        assert [x.id for x in page.disputes] == [d.id] and page.next_page_token == ""
        with pytest.raises(TallyApiError) as exc:
            billing.resolve_dispute(d.id, credit="1.001")
        assert exc.value.code == grpc.StatusCode.INVALID_ARGUMENT and "credit.amount" in exc.value.message
        with pytest.raises(TallyApiError) as exc:
            billing.resolve_dispute(d.id, credit="30.01")
        assert exc.value.code == grpc.StatusCode.INVALID_ARGUMENT and "more than line" in exc.value.message
        done = billing.resolve_dispute(d.id, credit="12.50", note="Sorry")
        assert done.changed and done.dispute.status == "credited" and done.dispute.credit_amount == "12.50"
        assert done.credit_note.kind == "credit_note" and done.credit_note.total == "-12.50"
        assert done.dispute.credit_note_number == done.credit_note.label == "CN-000001"
        again = billing.resolve_dispute(d.id, credit="12.50", note="Sorry")
        assert not again.changed and again.credit_note.id == done.credit_note.id
        with pytest.raises(TallyApiError) as exc:
            billing.resolve_dispute(d.id, reject="no")
        assert exc.value.code == grpc.StatusCode.FAILED_PRECONDITION
        second = billing.open_dispute(invoice_id, fee, "the rest too")
        rejected = billing.resolve_dispute(second.id, reject="The rest is right")
        assert (rejected.dispute.status, rejected.dispute.note, rejected.HasField("credit_note")) == (
            "rejected", "The rest is right", False,
        )  # fmt: skip
        assert [x.status for x in billing.iter_disputes(page_size=1)] == ["credited", "rejected"]
        assert [x.id for x in billing.iter_disputes(customer="cus_a", status="rejected")] == [second.id]


def test_a_dispute_names_the_invoice_by_its_number(api: Api) -> None:
    invoice_id, fee = _issued(api)
    number = api.call("GetInvoice", pb.GetInvoiceRequest(id=invoice_id)).label
    d = api.call("OpenDispute", pb.OpenDisputeRequest(invoice_label=number.lower(), line=fee, reason="Charged twice"))
    assert (d.invoice_id, d.invoice_number, d.status) == (invoice_id, number, "open")
    err = api.fails("OpenDispute", pb.OpenDisputeRequest(invoice_id=invoice_id, invoice_label=number, line=fee,
                                                         reason="x"))  # fmt: skip
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "not both" in (err.details() or "")


@pytest.mark.parametrize(
    ("method", "request_", "field"),
    [
        ("OpenDispute", pb.OpenDisputeRequest(invoice_id=0, line=1, reason="x"), "invoice_id"),
        ("OpenDispute", pb.OpenDisputeRequest(invoice_id=1, line=0, reason="x"), "line"),
        ("OpenDispute", pb.OpenDisputeRequest(invoice_id=1, line=1, reason=" "), "reason"),
        ("OpenDispute", pb.OpenDisputeRequest(invoice_id=1, line=1, reason="x" * 1001), "reason"),
        ("ListDisputes", pb.ListDisputesRequest(status="closed"), "status"),
        ("ListDisputes", pb.ListDisputesRequest(page_size=1001), "page_size"),
        ("ListDisputes", pb.ListDisputesRequest(page_token="!!"), "page_token"),
        ("ResolveDispute", pb.ResolveDisputeRequest(id=1), "resolution"),
        ("ResolveDispute", pb.ResolveDisputeRequest(id=1, credit=pb.DisputeCredit(amount="-1")), "credit.amount"),
        ("ResolveDispute", pb.ResolveDisputeRequest(id=0, reject=pb.DisputeRejection(note="x")), "id"),
        ("CreatePortalSession", pb.CreatePortalSessionRequest(customer=""), "customer"),
        ("CreatePortalSession", pb.CreatePortalSessionRequest(customer="c", ttl_seconds=604_801), "ttl_seconds"),
        ("CreatePortalSession", pb.CreatePortalSessionRequest(customer="c", ttl_seconds=-1), "ttl_seconds"),
        ("CreatePortalSession", pb.CreatePortalSessionRequest(customer="c", return_url="javascript:alert(1)"),
         "return_url"),
        ("CreatePortalSession", pb.CreatePortalSessionRequest(customer="c", return_url="https://x/" + "a" * 2000),
         "return_url"),
    ],
)  # fmt: skip
def test_refusals_name_the_field(api: Api, method: str, request_: object, field: str) -> None:
    err = api.fails(method, request_)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details())
    assert field in (err.details() or ""), err.details()


def test_portal_links_are_signed_expire_and_can_be_revoked(api: Api) -> None:
    engine, tid = api.engine, api.tenant.tenant_id
    create_customer(engine, tid, CustomerDefinition(external_id="cus_a", name="Ada"), T0)
    with BillingClient(api.server.target, api.admin, timeout_s=20) as billing:
        link = billing.create_portal_session("cus_a", ttl_seconds=600, return_url="https://app.example/account")
        assert link.path.startswith("/portal/") and link.customer == "cus_a"
        now = datetime.now(UTC)
        claims = verify(engine, link.path.removeprefix("/portal/"), now)
        assert (claims.tenant_id, claims.return_url, claims.key_version) == (tid, "https://app.example/account", 1)
        assert 590 <= (link.expires_at.ToDatetime(tzinfo=UTC) - now).total_seconds() <= 600
        two = billing.create_portal_session("cus_a")
        assert two.path != link.path  # each link has its own nonce
        assert parse(two.path.removeprefix("/portal/"))[0].expires_at == two.expires_at.ToDatetime(tzinfo=UTC)
        rotated = billing.revoke_portal_links()
        assert rotated.key_version == 2
        with pytest.raises(LinkRefused):
            verify(engine, link.path.removeprefix("/portal/"), now)
        with pytest.raises(TallyApiError) as exc:
            billing.create_portal_session("nobody")
        assert exc.value.code == grpc.StatusCode.NOT_FOUND
    # Another tenant's key makes links for its own customers only, and its rotation does not touch tenant A's.
    assert api.fails("CreatePortalSession", pb.CreatePortalSessionRequest(customer="cus_a"), api.other.key).code() == (
        grpc.StatusCode.NOT_FOUND
    )
    fresh = api.call("CreatePortalSession", pb.CreatePortalSessionRequest(customer="cus_a"))
    api.call("RevokePortalLinks", pb.RevokePortalLinksRequest(), api.other.key)
    assert verify(engine, fresh.path.removeprefix("/portal/"), datetime.now(UTC)).tenant_id == tid
