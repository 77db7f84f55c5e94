"""Disputes (invoicing.documents._dispute): a customer flags a line, finance credits or rejects it; the credit
note is booked like any credit note (the books stay balanced), the rules hold, and resolving is idempotent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from invoicing.catalog import CustomerDefinition, create_customer
from invoicing.documents import (
    correct_invoice,
    creditable,
    dispute_page,
    finalize_invoice,
    get_dispute,
    get_invoice,
    latest_disputes,
    list_invoices,
    mark_paid,
    open_dispute,
    resolve_dispute,
    run_cycle,
    set_tax_rate,
    void_invoice,
)
from invoicing.events import read_events
from invoicing.ledger.ledger import Ledger
from invoicing.subscriptions import create_subscription
from metering.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from tests.conftest import TenantKey
from tests.invoicing.conftest import T0, flat, publish, write_events
from tests.invoicing.test_invoice_money import check_books
from tests.invoicing.test_invoice_run import calls

FEB = datetime(2026, 2, 1, tzinfo=UTC)
PLAN = [
    {"code": "base", "kind": "flat", "price": flat("30")},
    {"code": "calls", "kind": "usage", "meter": "api_calls", "price": {"model": "per_unit", "unit_amount": "0.01"}},
]


def issued(engine: Engine, tid: int, customer: str = "ada", usage: int = 1200, tax: bool = True) -> int:
    """`customer`'s February document (January's usage, February's fee), finalized; its id."""
    if not tax:
        create_customer(engine, tid, CustomerDefinition(external_id=customer, timezone="UTC"), T0)
    else:
        create_customer(engine, tid, CustomerDefinition(external_id=customer, timezone="UTC", tax_region="FR"), T0)
    create_subscription(engine, tid, customer, "pro", T0)
    write_events(engine, tid, calls(usage, customer=customer))
    run_cycle(engine, tid, FEB)
    doc = next(i for i in list_invoices(engine, tid, customer=customer) if i.due_at == FEB)
    return finalize_invoice(engine, tid, doc.id or 0, FEB).id or 0


@pytest.fixture
def tid(engine: Engine, tenant: TenantKey) -> int:
    publish(engine, tenant.tenant_id, "pro", PLAN)
    set_tax_rate(engine, tenant.tenant_id, "FR", "20", False, T0)
    return tenant.tenant_id


def _events(engine: Engine, tid: int, prefix: str) -> list[dict[str, object]]:
    found, _ = read_events(engine, tid, 0, 1000, types=[prefix])
    return [e.data for e in found]


def test_flag_then_credit_issues_a_credit_note_that_pays_the_invoice_down(engine: Engine, tid: int) -> None:
    inv_id = issued(engine, tid)
    inv = get_invoice(engine, tid, inv_id)
    # Lines: January's calls (1,200 × $0.01 = $12.00), February's fee ($30.00), tax 20 %.
    calls_line = next(ln for ln in inv.lines if ln.charge_code == "calls")
    assert (calls_line.amount, inv.total) == (1200, 5040)
    d = open_dispute(engine, tid, inv_id, calls_line.position, "  We never made these calls  ", FEB, actor="portal")
    assert (d.status, d.reason, d.line_amount, d.charge, d.customer) == (
        "open", "We never made these calls", 1200, "calls", "ada",
    )  # fmt: skip
    assert d.invoice_label == inv.label and d.opened_by == "portal"
    assert _events(engine, tid, "dispute.")[-1] | {} == {
        "dispute_id": d.id, "invoice_id": inv_id, "invoice": inv.label, "line": calls_line.position,
        "charge": "calls", "currency": "USD", "line_amount": "12.00", "status": "open",
        "reason": "We never made these calls",
    }  # fmt: skip
    with pytest.raises(AlreadyExists, match="already has an open dispute"):
        open_dispute(engine, tid, inv_id, calls_line.position, "again", FEB)
    with pytest.raises(InvalidArgument, match="more than line"):
        resolve_dispute(engine, tid, d.id, "credit", FEB, amount=1201)

    done = resolve_dispute(engine, tid, d.id, "credit", FEB + timedelta(days=1), amount=500, note="goodwill",
                           actor="api key 1")  # fmt: skip
    assert (done.status, done.credit_amount, done.note, done.resolved_by, done.changed) == (
        "credited", 500, "goodwill", "api key 1", True,
    )  # fmt: skip
    note = get_invoice(engine, tid, done.credit_note_id or 0)
    # $5.00 credited plus its 20 % tax: the credit note is numbered in its own series and issued at once.
    assert (note.kind, note.status, note.label, note.total, note.tax) == ("credit_note", "finalized", "CN-000001",
                                                                          -600, -100)  # fmt: skip
    assert [(ln.kind, ln.charge_code, ln.amount) for ln in note.lines] == [("line_credit", "calls", -500),
                                                                          ("tax", "tax", -100)]  # fmt: skip
    assert note.corrects_invoice_id == inv_id and done.credit_note_label == "CN-000001"
    assert get_invoice(engine, tid, inv_id).amount_due == 5040 - 600
    assert check_books(engine, tid) == {"ada": 4440}
    assert creditable(engine, tid, inv_id, calls_line.position) == 700
    resolved = _events(engine, tid, "dispute.resolved")
    assert resolved == [{**resolved[0], "status": "credited", "credit_amount": "5.00", "credit_note_id": note.id}]
    names = [e.type for e in read_events(engine, tid, 0, 1000)[0]]
    assert names[-3:] == ["credit_note.created", "invoice.finalized", "dispute.resolved"]

    # The same answer again changes nothing; another answer to a resolved dispute is refused.
    again = resolve_dispute(engine, tid, d.id, "credit", FEB, amount=500, note="goodwill")
    assert (again.changed, again.credit_note_id) == (False, note.id)
    assert len([i for i in list_invoices(engine, tid) if i.kind == "credit_note"]) == 1
    with pytest.raises(FailedPrecondition, match=r"already credited 5\.00 USD"):
        resolve_dispute(engine, tid, d.id, "reject", FEB, note="no")
    with pytest.raises(FailedPrecondition, match="already credited"):
        resolve_dispute(engine, tid, d.id, "credit", FEB, amount=400, note="goodwill")

    # The line may be flagged again once the first dispute is resolved; a rejection needs a note.
    second = open_dispute(engine, tid, inv_id, calls_line.position, "still too much", FEB)
    with pytest.raises(InvalidArgument, match="note is required"):
        resolve_dispute(engine, tid, second.id, "reject", FEB, note="  ")
    rejected = resolve_dispute(engine, tid, second.id, "reject", FEB, note="The calls are in your logs.")
    assert (rejected.status, rejected.note, rejected.credit_note_id) == ("rejected", "The calls are in your logs.",
                                                                         None)  # fmt: skip
    assert latest_disputes(engine, tid, [inv_id])[(inv_id, calls_line.position)].id == second.id
    # A later correction of the invoice does not bill the credited amount again.
    assert correct_invoice(engine, tid, inv_id, FEB + timedelta(days=2)) is None


def test_a_credit_beyond_what_is_owed_goes_to_the_cash_wallet(engine: Engine, tid: int) -> None:
    inv_id = issued(engine, tid)
    mark_paid(engine, tid, inv_id, FEB)
    line = next(ln for ln in get_invoice(engine, tid, inv_id).lines if ln.charge_code == "base")
    d = open_dispute(engine, tid, inv_id, line.position, "Cancelled on the 1st", FEB)
    resolve_dispute(engine, tid, d.id, "credit", FEB, amount=3000)
    ledger = Ledger(engine, tid)
    assert ledger.balance(ledger.wallet("ada", "USD")).balance == 3600  # $30 and its tax: the invoice was paid
    assert check_books(engine, tid) == {"ada": 0}
    assert creditable(engine, tid, inv_id, line.position) == 0
    with pytest.raises(FailedPrecondition, match="credited in full"):
        open_dispute(engine, tid, inv_id, line.position, "more", FEB)


def test_what_cannot_be_flagged(engine: Engine, tid: int) -> None:
    inv_id = issued(engine, tid)
    inv = get_invoice(engine, tid, inv_id)
    tax = next(ln for ln in inv.lines if ln.kind == "tax")
    with pytest.raises(FailedPrecondition, match="only a line that charges something"):
        open_dispute(engine, tid, inv_id, tax.position, "tax is wrong", FEB)
    with pytest.raises(NotFound, match=f"has no line 9; its lines are 1 to {len(inv.lines)}"):
        open_dispute(engine, tid, inv_id, 9, "x", FEB)
    with pytest.raises(InvalidArgument, match="reason is required"):
        open_dispute(engine, tid, inv_id, 1, "   ", FEB)
    with pytest.raises(InvalidArgument, match="at most 1000"):
        open_dispute(engine, tid, inv_id, 1, "x" * 1001, FEB)
    with pytest.raises(InvalidArgument, match="control character"):
        open_dispute(engine, tid, inv_id, 1, "bad\x00", FEB)
    # Another customer's invoice is not found for a customer-scoped call (the portal's), as if it did not exist.
    other = issued(engine, tid, "bob", tax=False)
    with pytest.raises(NotFound, match=f"no invoice {other}"):
        open_dispute(engine, tid, other, 1, "not mine", FEB, customer="ada")
    with pytest.raises(NotFound, match="no invoice 999999"):
        open_dispute(engine, tid, 999_999, 1, "x", FEB)
    # A draft (never issued) and a void invoice cannot be disputed.
    run_cycle(engine, tid, datetime(2026, 3, 1, tzinfo=UTC))
    draft = next(i for i in list_invoices(engine, tid, customer="ada", status="draft"))
    with pytest.raises(FailedPrecondition, match="is draft; only a line of an issued invoice"):
        open_dispute(engine, tid, draft.id or 0, 1, "x", FEB)
    d = open_dispute(engine, tid, other, 1, "wrong", FEB)
    void_invoice(engine, tid, other, FEB)
    with pytest.raises(FailedPrecondition, match="is void"):
        resolve_dispute(engine, tid, d.id, "credit", FEB, amount=1)
    assert resolve_dispute(engine, tid, d.id, "reject", FEB, note="the invoice was voided").status == "rejected"
    # A dispute of another tenant or customer is not found.
    with pytest.raises(NotFound):
        get_dispute(engine, tid, d.id, customer="ada")
    with pytest.raises(NotFound):
        get_dispute(engine, tid + 1000, d.id)
    with pytest.raises(InvalidArgument, match="decision"):
        resolve_dispute(engine, tid, d.id, "refund", FEB)
    with pytest.raises(InvalidArgument, match="positive amount"):
        resolve_dispute(engine, tid, d.id, "credit", FEB, amount=0)


def test_pages_and_filters(engine: Engine, tid: int) -> None:
    a = issued(engine, tid)
    b = issued(engine, tid, "bob", tax=False)
    made = [open_dispute(engine, tid, inv, pos, f"r{inv}-{pos}", FEB) for inv in (a, b) for pos in (1, 2)]
    resolve_dispute(engine, tid, made[0].id, "reject", FEB, note="no")
    page = dispute_page(engine, tid, limit=3)
    assert [d.id for d in page.disputes] == [d.id for d in made[:3]] and page.next_after_id == made[2].id
    rest = dispute_page(engine, tid, after_id=page.next_after_id or 0, limit=3)
    assert [d.id for d in rest.disputes] == [made[3].id] and rest.next_after_id is None
    assert [d.id for d in dispute_page(engine, tid, status="open").disputes] == [d.id for d in made[1:]]
    assert {d.customer for d in dispute_page(engine, tid, customer="bob").disputes} == {"bob"}
    assert dispute_page(engine, tid + 1000).disputes == []
    with pytest.raises(NotFound):
        dispute_page(engine, tid, customer="nobody")
    with pytest.raises(InvalidArgument, match="status"):
        dispute_page(engine, tid, status="closed")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(credits=st.lists(st.integers(min_value=1, max_value=1500), min_size=1, max_size=4))
def test_credits_never_exceed_the_line_and_the_books_balance(
    engine: Engine, tenant: TenantKey, credits: list[int]
) -> None:
    """Whatever amounts finance tries in turn, the line is never credited past its amount, each credit that is
    accepted is exactly what the credit notes carry, and the books balance after each."""
    tid = tenant.tenant_id
    name = f"c{len(list_invoices(engine, tid, limit=10_000))}"
    if not list_invoices(engine, tid, limit=1):
        publish(engine, tid, "pro", PLAN)
        set_tax_rate(engine, tid, "FR", "20", False, T0)
    inv_id = issued(engine, tid, name)
    line = next(ln for ln in get_invoice(engine, tid, inv_id).lines if ln.charge_code == "calls")
    accepted = 0
    for amount in credits:
        d = open_dispute(engine, tid, inv_id, line.position, "too much", FEB) if accepted < line.amount else None
        if d is None:
            break
        if accepted + amount > line.amount:
            with pytest.raises(InvalidArgument):
                resolve_dispute(engine, tid, d.id, "credit", FEB, amount=amount)
            resolve_dispute(engine, tid, d.id, "reject", FEB, note="too much")
            continue
        resolve_dispute(engine, tid, d.id, "credit", FEB, amount=amount)
        accepted += amount
        assert creditable(engine, tid, inv_id, line.position) == line.amount - accepted
        check_books(engine, tid)
    notes = [i for i in list_invoices(engine, tid, customer=name) if i.kind == "credit_note"]
    assert -sum(ln.amount for n in notes for ln in n.lines if ln.kind == "line_credit") == accepted


def test_a_discounted_line_credits_only_what_was_charged_for_it(engine: Engine, tid: int) -> None:
    """A 10 % coupon took $3 off the $30 fee: the customer paid $27 for it, so $27 (and its tax) is all a
    credit can give back; the discount line's allocation says which line it took from."""
    from invoicing.catalog import CouponDefinition, apply_coupon, create_coupon

    ten = CouponDefinition(code="TEN", kind="percent", percent="10", applies_to=["base"], duration="forever")
    create_coupon(engine, tid, ten, T0)
    create_customer(engine, tid, CustomerDefinition(external_id="ada", timezone="UTC", tax_region="FR"), T0)
    apply_coupon(engine, tid, "TEN", T0, customer="ada")
    create_subscription(engine, tid, "ada", "pro", T0)
    write_events(engine, tid, calls(1200, customer="ada"))
    run_cycle(engine, tid, FEB)
    doc = next(i for i in list_invoices(engine, tid, customer="ada") if i.due_at == FEB)
    inv_id = finalize_invoice(engine, tid, doc.id or 0, FEB).id or 0
    lines = get_invoice(engine, tid, inv_id).lines
    base = next(ln for ln in lines if ln.charge_code == "base" and ln.kind == "charge")
    usage = next(ln for ln in lines if ln.charge_code == "calls")
    assert [ln.amount for ln in lines if ln.kind == "discount"] == [-300]
    assert creditable(engine, tid, inv_id, base.position) == 2700
    assert creditable(engine, tid, inv_id, usage.position) == usage.amount  # the coupon applies to base only
    d = open_dispute(engine, tid, inv_id, base.position, "Cancelled on the 1st", FEB)
    with pytest.raises(InvalidArgument, match=r"can still be credited: 27\.00 USD .*its discounts took 3\.00 USD"):
        resolve_dispute(engine, tid, d.id, "credit", FEB, amount=3000)
    resolve_dispute(engine, tid, d.id, "credit", FEB, amount=2700)
    assert creditable(engine, tid, inv_id, base.position) == 0
    # Owed now: the $12 of calls and their 20 % tax; the fee was credited to the cent it was charged.
    assert check_books(engine, tid) == {"ada": 1440}
