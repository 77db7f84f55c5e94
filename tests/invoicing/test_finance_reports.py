"""Finance reports (invoicing.insight._finance): each figure agrees with the ledger or the documents it
summarises — revenue with the revenue account, the ageing with the customers' receivables, an invoice's
movements with its booking — and the runs, SLA credits and stage moves say what happened."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine, func, select

from invoicing.catalog import CustomerDefinition, create_customer
from invoicing.documents import (
    correct_invoice,
    finalize_invoice,
    get_invoice,
    list_invoices,
    record_payment,
    run_cycle,
    set_tax_rate,
    void_invoice,
)
from invoicing.insight import (
    bucket_of,
    invoice_movements,
    list_runs,
    receivables_ageing,
    revenue_report,
    sla_credits,
    stage_moves,
)
from invoicing.ledger import Grant, Ledger
from invoicing.ledger.tables import ledger_accounts
from invoicing.subscriptions import change_plan, create_subscription
from metering.errors import InvalidArgument, NotFound
from metering.meter import Aggregation, MeterDefinition, create_meter
from tests.conftest import TenantKey, make_tenant
from tests.invoicing.conftest import T0, flat, publish, write_events

FEB = datetime(2026, 2, 1, tzinfo=UTC)
MAR = datetime(2026, 3, 1, tzinfo=UTC)
TIERS = [{"threshold": "99.9", "credit_percent": "10"}, {"threshold": "99", "credit_percent": "25"}]
SLA = {"model": "sla_credit", "affected_fee": "30", "metric": "uptime_percent", "tiers": TIERS}
Y2027 = datetime(2027, 1, 1, tzinfo=UTC)


def _account_total(engine: Engine, tid: int, kind: str, credit_normal: bool) -> dict[str, int]:
    a = ledger_accounts.c
    sign = (a.credits_posted - a.debits_posted) if credit_normal else (a.debits_posted - a.credits_posted)
    with engine.connect() as conn:
        rows = conn.execute(select(a.unit, func.sum(sign)).where(a.tenant_id == tid, a.kind == kind).group_by(a.unit))
        return {str(u): int(v) for u, v in rows}


@pytest.fixture
def books(engine: Engine, tenant: TenantKey) -> int:
    """Two customers over Jan-Mar 2026: tax, credits drawn, a partial payment, a downgrade's credit note,
    an SLA breach, a voided draft; every draft up to March finalized."""
    tid = tenant.tenant_id
    create_meter(engine, tid, MeterDefinition(code="uptime", aggregation=Aggregation.MIN, value_scale=2, unit="%"))
    for name in ("ada", "bob"):
        create_customer(engine, tid, CustomerDefinition(external_id=name, timezone="UTC", tax_region="FR"), T0)
    set_tax_rate(engine, tid, "FR", "20", False, T0)
    publish(engine, tid, "pro", [
        {"code": "base", "kind": "flat", "price": flat("30")},
        {"code": "calls", "kind": "usage", "meter": "api_calls", "price": {"model": "per_unit", "unit_amount": "0.01"}},
        {"code": "sla", "kind": "usage", "meter": "uptime", "price": SLA},
    ])  # fmt: skip
    publish(engine, tid, "lite", [{"code": "base", "kind": "flat", "price": flat("10")}])
    Ledger(engine, tid).grant(Grant("promo", "ada", 700, "USD", kind="promotional", effective_at_us=0))
    sub = create_subscription(engine, tid, "ada", "pro", T0)
    create_subscription(engine, tid, "bob", "lite", T0)
    write_events(engine, tid, [
        *[(f"c{k}", "ada", "api_calls", T0 + timedelta(hours=k), 1, None) for k in range(40)],
        ("u1", "ada", "uptime", T0 + timedelta(days=3), 9950, None),  # 99.50 %: the 10 % tier is missed
    ])  # fmt: skip
    run_cycle(engine, tid, T0)
    for inv in list_invoices(engine, tid, status="draft"):
        finalize_invoice(engine, tid, inv.id or 0, T0 + timedelta(days=1))
    jan_ada = next(i for i in list_invoices(engine, tid, customer="ada"))
    record_payment(engine, tid, jan_ada.id or 0, 1000, T0 + timedelta(days=5), method="card", reference="ch_1")
    change_plan(engine, tid, sub.id, "lite", datetime(2026, 1, 16, tzinfo=UTC))
    run_cycle(engine, tid, FEB)
    for inv in list_invoices(engine, tid, status="draft"):
        finalize_invoice(engine, tid, inv.id or 0, FEB + timedelta(days=1))
    run_cycle(engine, tid, MAR)
    drafts = list_invoices(engine, tid, status="draft")
    void_invoice(engine, tid, drafts[0].id or 0, MAR, reason="test")
    for inv in drafts[1:]:
        finalize_invoice(engine, tid, inv.id or 0, MAR + timedelta(days=1))
    return tid


def test_revenue_equals_the_revenue_account(engine: Engine, books: int) -> None:
    report = revenue_report(engine, books, datetime(2025, 12, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC))
    booked = _account_total(engine, books, "revenue", credit_normal=True)
    assert report.by_currency == {"USD": Decimal(booked["USD"]).scaleb(-2)}
    assert report.months == ["2025-12", "2026-01", "2026-02", "2026-03", "2026-04", "2026-05"]
    by_month = sum(v for (m, c), v in report.by_month.items())
    by_plan = sum(report.by_plan.values())
    stacked = sum(report.by_month_plan.values())
    assert by_month == by_plan == stacked == report.by_currency["USD"]
    assert {p for p, _ in report.by_plan} <= {"pro", "lite", ""} and ("pro", "USD") in report.by_plan
    assert report.by_month[("2026-01", "USD")] > 0 and ("2025-12", "USD") not in report.by_month
    # A window that holds none of it: nothing, and a bad window is refused naming it.
    assert revenue_report(engine, books, Y2027, Y2027 + timedelta(days=31)).currencies == []
    with pytest.raises(InvalidArgument, match="not before"):
        revenue_report(engine, books, MAR, FEB)


def test_ageing_sums_to_the_receivables_and_buckets_by_days_past_due(engine: Engine, books: int) -> None:
    receivable = _account_total(engine, books, "receivable", credit_normal=False)
    at = MAR + timedelta(days=45)
    ageing = receivables_ageing(engine, books, at, limit=100)
    assert ageing.totals == {"USD": Decimal(receivable["USD"]).scaleb(-2)}
    assert sum(b.amount for b in ageing.buckets["USD"]) == ageing.totals["USD"]
    assert [b.label for b in ageing.buckets["USD"]] == ["current", "1-30", "31-60", "61-90", "90+"]
    for doc in ageing.oldest:
        inv = get_invoice(engine, books, doc.id)
        assert inv.status in ("finalized", "partially_paid") and doc.amount_due == inv.money(inv.amount_due)
        assert inv.payment_due_at is not None and doc.bucket == bucket_of(doc.days_overdue)
        assert doc.days_overdue == -((inv.payment_due_at - at) // timedelta(days=1))
    assert [d.days_overdue for d in ageing.oldest] == sorted((d.days_overdue for d in ageing.oldest), reverse=True)
    assert (bucket_of(0), bucket_of(1), bucket_of(30), bucket_of(31), bucket_of(90), bucket_of(91)) == (
        "current", "1-30", "1-30", "31-60", "61-90", "90+")  # fmt: skip
    before_due = receivables_ageing(engine, books, T0 + timedelta(days=2))
    assert [b.label for b in before_due.buckets["USD"] if b.amount] == ["current"]


def test_an_invoice_movements_are_its_booking_and_its_payments(engine: Engine, books: int) -> None:
    ada = list_invoices(engine, books, customer="ada")
    jan = ada[0]
    moves = invoice_movements(engine, books, jan.id or 0)
    codes = [m.code for m in moves]
    assert "invoice_revenue" in codes and "invoice_tax" in codes and "payment" in codes
    hold = [m for m in moves if m.code == "invoice_hold"]
    assert hold and all(m.state == "posted" for m in hold)  # the promotional credit, drawn at finalize
    assert any(m.code == "invoice_post" and m.amount == hold[0].amount for m in moves)
    (paid,) = [m for m in moves if m.code == "payment"]
    assert (paid.amount, paid.unit, paid.reference) == (Decimal("10.00"), "USD", "ch_1")
    assert paid.debit == "cash_in" and paid.credit == "receivable (ada)"
    inv = get_invoice(engine, books, jan.id or 0)
    revenue = sum(m.amount for m in moves if m.code in ("invoice_revenue", "invoice_tax"))
    assert revenue == inv.money(inv.total + inv.credits_applied)  # the gross amount booked to the receivable
    # A voided draft: its holds (none here) released, no booking. Another tenant: not found.
    other = make_tenant(engine, "other")
    with pytest.raises(NotFound):
        invoice_movements(engine, other.tenant_id, jan.id or 0)


def test_runs_count_their_items_and_documents(engine: Engine, books: int) -> None:
    runs = list_runs(engine, books)
    assert [r.as_of for r in runs] == [MAR, FEB, T0]  # newest first
    kept = [i for i in list_invoices(engine, books) if i.status != "void"]
    for r in runs:
        assert r.status == "completed" and r.items == r.done + r.failed + r.pending and r.progress_pct == 100
        assert r.invoices >= 1 and set(r.totals) == {"USD"}
    assert sum(r.invoices for r in runs) == len(kept)  # the void one is not counted
    assert sum(r.totals["USD"] for r in runs) == sum(i.money(i.total) for i in kept)
    with pytest.raises(InvalidArgument):
        list_runs(engine, books, 0)


def test_sla_credits_list_the_breaches_issued(engine: Engine, books: int) -> None:
    found = sla_credits(engine, books, T0, MAR + timedelta(days=31))
    assert found.count >= 1 and found.totals["USD"] > 0
    (first, *_) = found.credits
    assert (first.customer, first.charge, first.currency, first.measured) == ("ada", "sla", "USD", Decimal("99.50"))
    assert first.credit == Decimal("3.00")  # 10 % of the $30 fee
    assert sum(c.credit for c in found.credits) == found.totals["USD"] == sum(found.by_charge.values())
    assert sla_credits(engine, books, Y2027, Y2027 + timedelta(days=31)).count == 0


def test_stage_moves_compare_two_instants(engine: Engine, books: int) -> None:
    create_customer(engine, books, CustomerDefinition(external_id="cyd", timezone="UTC"), MAR + timedelta(days=3))
    moves = stage_moves(engine, books, MAR + timedelta(days=5), MAR - timedelta(days=20))
    assert moves.customers == 3 and sum(m.customers for m in moves.moves) == 3
    newcomer = [m for m in moves.moves if "cyd" in m.sample]
    assert [(m.before, m.after) for m in newcomer] == [("not_yet", "new")]
    assert moves.moved == sum(m.customers for m in moves.moves if m.before != m.after) >= 1
    with pytest.raises(InvalidArgument):
        stage_moves(engine, books, MAR, MAR)


def test_a_credit_note_subtracts_from_revenue(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    create_customer(engine, tid, CustomerDefinition(external_id="ada", timezone="UTC"), T0)
    publish(engine, tid, "pro", [{"code": "base", "kind": "flat", "price": flat("30")}])
    publish(engine, tid, "lite", [{"code": "base", "kind": "flat", "price": flat("10")}])
    sub = create_subscription(engine, tid, "ada", "pro", T0)
    run_cycle(engine, tid, T0)
    (jan,) = list_invoices(engine, tid)
    finalize_invoice(engine, tid, jan.id or 0, T0)
    change_plan(engine, tid, sub.id, "lite", datetime(2026, 1, 16, tzinfo=UTC))
    note = correct_invoice(engine, tid, jan.id or 0, T0 + timedelta(days=20))
    assert note is not None and note.kind == "credit_note"
    finalize_invoice(engine, tid, note.id or 0, T0 + timedelta(days=20))
    report = revenue_report(engine, tid, T0, FEB)
    assert report.by_currency["USD"] == Decimal("30.00") + note.money(note.total)
    assert report.by_currency["USD"] == Decimal(_account_total(engine, tid, "revenue", True)["USD"]).scaleb(-2)


def test_the_portfolio_with_moves_agrees_with_stage_moves(engine: Engine, books: int) -> None:
    from invoicing.insight import portfolio

    at, since = MAR + timedelta(days=5), MAR - timedelta(days=20)
    both = portfolio(engine, books, at, since)
    assert both.moves == stage_moves(engine, books, at, since)
    assert portfolio(engine, books, at).moves is None
    assert [s.customers for s in both.stages] == [s.customers for s in portfolio(engine, books, at).stages]
