"""Every money movement of an invoice in the double-entry ledger: holds, finalizing, payments, credit
notes, voids and write-offs. After every step: per unit, debits equal credits (posted and pending), and
each customer's receivable equals what their open documents still owe."""

from __future__ import annotations

import contextlib
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sqlalchemy import Engine, func, select

from invoicing.catalog import CustomerDefinition, create_customer
from invoicing.documents import (
    OPEN,
    correct_invoice,
    finalize_invoice,
    get_invoice,
    list_invoices,
    mark_uncollectible,
    record_payment,
    run_cycle,
    set_tax_rate,
    void_invoice,
)
from invoicing.ledger import Grant, Ledger
from invoicing.ledger.tables import ledger_accounts
from invoicing.subscriptions import change_plan, create_subscription
from invoicing.tables import invoices
from metering.errors import FailedPrecondition, InvalidArgument
from tally.db import make_engine, upgrade
from tests.conftest import TenantKey, make_tenant
from tests.invoicing.conftest import T0, flat, publish, write_events

FEB = datetime(2026, 2, 1, tzinfo=UTC)
MAR = datetime(2026, 3, 1, tzinfo=UTC)
PLAN = [
    {"code": "base", "kind": "flat", "price": flat("30")},
    {"code": "calls", "kind": "usage", "meter": "api_calls", "price": {"model": "per_unit", "unit_amount": "0.01"}},
]


def check_books(engine: Engine, tid: int) -> dict[str, int]:
    """The two invariants; returns each customer's receivable (minor units, USD) for further checks."""
    a = ledger_accounts.c
    with engine.connect() as conn:
        per_unit = conn.execute(
            select(a.unit, func.sum(a.debits_posted), func.sum(a.credits_posted), func.sum(a.debits_pending),
                   func.sum(a.credits_pending)).where(a.tenant_id == tid).group_by(a.unit)
        ).all()  # fmt: skip
        receivable = {
            r.customer: int(r.debits_posted) - int(r.credits_posted)
            for r in conn.execute(
                select(a.customer, a.debits_posted, a.credits_posted).where(
                    a.tenant_id == tid, a.kind == "receivable", a.unit == "USD"
                )
            )
        }
        owed: dict[str, int] = {}
        from invoicing.tables import customers

        for r in conn.execute(
            select(customers.c.external_id, invoices.c.amount_due, invoices.c.status)
            .join(customers, customers.c.id == invoices.c.customer_id)
            .where(invoices.c.tenant_id == tid, invoices.c.currency == "USD")
        ):
            if r.status in OPEN:
                owed[r.external_id] = owed.get(r.external_id, 0) + int(r.amount_due)
            else:
                assert int(r.amount_due) == 0, r
    for unit, dp, cp, dpend, cpend in per_unit:
        assert (int(dp), int(dpend)) == (int(cp), int(cpend)), f"{unit}: debits != credits"
    for name in set(receivable) | set(owed):
        assert receivable.get(name, 0) == owed.get(name, 0), f"{name}: receivable != open documents"
    return receivable


def test_a_full_cycle_books_every_movement(engine: Engine, tenant: TenantKey) -> None:
    """Top-up and grant, a month with tax, finalize (holds posted, receivable booked), partial payment,
    a mid-month downgrade's credit note paying down the invoice, an overpayment to the wallet, a void with
    re-issue, and a write-off; the books balance after every step."""
    tid = tenant.tenant_id
    create_customer(engine, tid, CustomerDefinition(external_id="ada", timezone="UTC", tax_region="FR"), T0)
    set_tax_rate(engine, tid, "FR", "20", False, T0)
    publish(engine, tid, "pro", PLAN)
    publish(engine, tid, "lite", [{"code": "base", "kind": "flat", "price": flat("10")}])
    ledger = Ledger(engine, tid)
    ledger.top_up("tu-1", "ada", 500, "USD")  # $5 cash
    ledger.grant(Grant("promo", "ada", 700, "USD", kind="promotional", effective_at_us=0))  # $7 promotional
    sub = create_subscription(engine, tid, "ada", "pro", T0)
    run_cycle(engine, tid, T0)
    (jan,) = list_invoices(engine, tid)
    # $30 + 20 % = $36, less $7 promotional and $5 cash: $24 owed. The draft only holds the credits.
    assert (jan.subtotal, jan.tax, jan.credits_applied, jan.total) == (3000, 600, 1200, 2400)
    assert check_books(engine, tid) == {"ada": 0}  # the holds are pending: nothing is owed yet
    assert ledger.balance(ledger.wallet("ada", "USD")).debits_pending == 500
    jan = finalize_invoice(engine, tid, jan.id or 0, T0)
    assert (jan.status, jan.amount_due, jan.payment_due_at) == ("finalized", 2400, T0 + timedelta(days=30))
    assert check_books(engine, tid) == {"ada": 2400}
    paid = record_payment(engine, tid, jan.id or 0, 1000, T0 + timedelta(days=3), method="card", reference="ch_1")
    assert (paid.applied, get_invoice(engine, tid, jan.id or 0).status) == (1000, "partially_paid")
    assert check_books(engine, tid) == {"ada": 1400}
    again = record_payment(engine, tid, jan.id or 0, 1000, T0 + timedelta(days=3), method="card", reference="ch_1")
    assert not again.created and check_books(engine, tid) == {"ada": 1400}  # a retry records nothing twice
    # Downgraded on Jan 16: January's fee is prorated, 15/31 of $30 credited back (14.52 + tax 2.90).
    change_plan(engine, tid, sub.id, "lite", datetime(2026, 1, 16, tzinfo=UTC))
    run_cycle(engine, tid, FEB)
    note = next(i for i in list_invoices(engine, tid) if i.kind == "credit_note")
    assert note.corrects_invoice_id == jan.id and note.total < 0
    check_books(engine, tid)
    note = finalize_invoice(engine, tid, note.id or 0, FEB)
    assert note.label.startswith("CN-") and note.amount_due == 0
    left = get_invoice(engine, tid, jan.id or 0).amount_due
    assert left == max(0, 1400 + note.total)  # the credit note paid the invoice down ...
    assert check_books(engine, tid) == {"ada": left}
    credit = ledger.balance(ledger.wallet("ada", "USD")).balance
    assert credit == max(0, -note.total - 1400)  # ... and what it did not need is the customer's cash
    # February (lite $10 for Jan 16-31 prorated, then Feb): overpaid by $50, which lands in the cash wallet.
    feb = [i for i in list_invoices(engine, tid) if i.kind == "invoice" and i.status == "draft"]
    for inv in feb:
        inv = finalize_invoice(engine, tid, inv.id or 0, FEB)
        if inv.amount_due:
            record_payment(engine, tid, inv.id or 0, inv.amount_due + 5000, FEB, reference="wire")
    cash = ledger.balance(ledger.wallet("ada", "USD"))
    assert cash.balance - credit == 5000 * sum(1 for i in feb if i.total > 0)
    check_books(engine, tid)
    # March's draft voided with re-issue: its holds are released and the next run bills it again.
    run_cycle(engine, tid, MAR)
    (mar,) = [i for i in list_invoices(engine, tid) if i.due_at == MAR]
    assert mar.credits_applied > 0  # drawn from the overpayment
    void_invoice(engine, tid, mar.id or 0, MAR, reason="wrong address", reissue=True)
    assert ledger.balance(ledger.wallet("ada", "USD")).debits_pending == 0
    check_books(engine, tid)
    run_cycle(engine, tid, MAR + timedelta(hours=1))
    (reissued,) = [i for i in list_invoices(engine, tid) if i.due_at == MAR and i.status == "draft"]
    assert reissued.key == f"{mar.key}#2" and reissued.total == mar.total
    # The January invoice is written off: what is left goes to bad debt.
    if left:
        written_off = mark_uncollectible(engine, tid, jan.id or 0, MAR, reason="customer gone")
        assert (written_off.status, written_off.amount_due) == ("uncollectible", 0)
    check_books(engine, tid)
    with pytest.raises(FailedPrecondition, match="open invoices"):
        record_payment(engine, tid, reissued.id or 0, 100, MAR)


def test_voiding_a_finalized_invoice_gives_back_what_it_drew(engine: Engine, tenant: TenantKey, customer: str) -> None:
    tid = tenant.tenant_id
    publish(engine, tid, "pro", PLAN)
    ledger = Ledger(engine, tid)
    ledger.top_up("tu", customer, 1000, "USD")
    create_subscription(engine, tid, customer, "pro", T0)
    run_cycle(engine, tid, T0)
    (inv,) = list_invoices(engine, tid)
    finalize_invoice(engine, tid, inv.id or 0, T0)
    assert ledger.balance(ledger.wallet(customer, "USD")).balance == 0
    assert check_books(engine, tid) == {customer: 2000}
    void_invoice(engine, tid, inv.id or 0, T0, reason="sent in error")
    assert ledger.balance(ledger.wallet(customer, "USD")).balance == 1000
    assert check_books(engine, tid) == {customer: 0}
    with engine.connect() as conn:
        revenue = conn.execute(
            select(ledger_accounts.c.credits_posted - ledger_accounts.c.debits_posted).where(
                ledger_accounts.c.tenant_id == tid, ledger_accounts.c.kind == "revenue"
            )
        ).scalar_one()
    assert revenue == 0  # the journal no longer shows it as revenue


def test_a_payment_is_recognised_by_its_whole_body(engine: Engine, tenant: TenantKey, customer: str) -> None:
    """Without a key, the invoice, amount, date and reference identify a payment: a retry records it once,
    the same amount on another day is a second payment, and a long reference still gets a key."""
    tid = tenant.tenant_id
    publish(engine, tid, "pro", PLAN)
    create_subscription(engine, tid, customer, "pro", T0)
    run_cycle(engine, tid, T0)
    (inv,) = list_invoices(engine, tid)
    inv = finalize_invoice(engine, tid, inv.id or 0, T0)
    ref = "SEPA " + "x" * 195  # the longest reference accepted
    first = record_payment(engine, tid, inv.id or 0, 500, T0 + timedelta(days=1), reference=ref)
    again = record_payment(engine, tid, inv.id or 0, 500, T0 + timedelta(days=1), reference=ref)
    other_day = record_payment(engine, tid, inv.id or 0, 500, T0 + timedelta(days=2), reference=ref)
    assert first.created and not again.created and again.id == first.id
    assert other_day.created and other_day.id != first.id and len(first.key) <= 100
    assert get_invoice(engine, tid, inv.id or 0).amount_due == inv.amount_due - 1000
    with pytest.raises(FailedPrecondition, match="different body"):
        record_payment(engine, tid, inv.id or 0, 500, T0 + timedelta(days=3), key=first.key)


class InvoiceLifecycle(RuleBasedStateMachine):
    """Random walks over draft → finalize → (partial) pay / credit note / void / re-issue / write-off."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.engine = make_engine(f"sqlite:///{Path(self.dir.name) / 'tally.db'}")
        upgrade(self.engine)
        self.tid = make_tenant(self.engine).tenant_id
        create_customer(self.engine, self.tid, CustomerDefinition(external_id="c", timezone="UTC", tax_region="FR"), T0)
        set_tax_rate(self.engine, self.tid, "FR", "20", False, T0)
        publish(self.engine, self.tid, "pro", PLAN)
        publish(self.engine, self.tid, "lite", [{"code": "base", "kind": "flat", "price": flat("10")}])
        self.ledger = Ledger(self.engine, self.tid)
        self.ledger.top_up("tu-0", "c", 1500, "USD")
        self.ledger.grant(Grant("g", "c", 900, "USD", kind="promotional", effective_at_us=0))
        self.sub = create_subscription(self.engine, self.tid, "c", "pro", T0).id
        self.month = 0
        self.events = 0
        self.payments = 0

    def teardown(self) -> None:
        self.engine.dispose()
        self.dir.cleanup()

    def docs(self, *statuses: str) -> list[Any]:
        return [i for i in list_invoices(self.engine, self.tid) if i.status in statuses]

    def now(self) -> datetime:
        return datetime(2026, 1 + self.month, 1, 12, tzinfo=UTC)

    @precondition(lambda self: self.month < 5)
    @rule(usage=st.integers(min_value=0, max_value=400))
    def next_month(self, usage: int) -> None:
        start = datetime(2026, 1 + self.month, 1, tzinfo=UTC)
        rows = [(f"e{self.events + k}", "c", "api_calls", start + timedelta(minutes=k), 1, None) for k in range(usage)]
        self.events += usage
        if rows:
            write_events(self.engine, self.tid, rows)
        self.month += 1
        run_cycle(self.engine, self.tid, datetime(2026, 1 + self.month, 1, tzinfo=UTC))

    @rule(k=st.integers(min_value=0, max_value=9))
    def finalize(self, k: int) -> None:
        drafts = self.docs("draft")
        if drafts:
            try:
                finalize_invoice(self.engine, self.tid, drafts[k % len(drafts)].id, self.now())
            except FailedPrecondition as exc:  # a correction whose invoice is still a draft
                assert "finalize invoice" in str(exc)

    @rule(k=st.integers(min_value=0, max_value=9), share=st.sampled_from([1, 2, 3]), over=st.integers(0, 500))
    def pay(self, k: int, share: int, over: int) -> None:
        open_ = [i for i in self.docs(*OPEN) if i.amount_due > 0]
        if open_:
            inv = open_[k % len(open_)]
            self.payments += 1
            amount = max(1, inv.amount_due // share) + (over if share == 1 else 0)
            before = inv.amount_due
            p = record_payment(self.engine, self.tid, inv.id, amount, self.now(), key=f"p{self.payments}")
            after = get_invoice(self.engine, self.tid, inv.id)
            assert p.applied == min(amount, before) and after.amount_due == before - p.applied
            assert after.status == ("paid" if after.amount_due == 0 else "partially_paid")

    @rule(k=st.integers(min_value=0, max_value=9), reissue=st.booleans())
    def void(self, k: int, reissue: bool) -> None:
        docs = self.docs("draft", "finalized")
        if docs:
            inv = docs[k % len(docs)]
            try:
                void_invoice(self.engine, self.tid, inv.id, self.now(), reissue=reissue)
            except FailedPrecondition as exc:
                assert inv.status == "finalized" and ("credit note" in str(exc) or "correct" in str(exc))

    @rule(k=st.integers(min_value=0, max_value=9))
    def write_off(self, k: int) -> None:
        open_ = self.docs(*OPEN)
        if open_:
            mark_uncollectible(self.engine, self.tid, open_[k % len(open_)].id, self.now())

    @precondition(lambda self: 0 < self.month < 5)
    @rule(day=st.integers(min_value=2, max_value=27))
    def downgrade(self, day: int) -> None:
        """A mid-period change: the fee already billed is prorated by a credit note at the next run."""
        with contextlib.suppress(FailedPrecondition, InvalidArgument):  # not before the last change
            change_plan(self.engine, self.tid, self.sub, "lite" if day % 2 else "pro",
                        datetime(2026, self.month, day, tzinfo=UTC))  # fmt: skip

    @rule(k=st.integers(min_value=0, max_value=9))
    def correct(self, k: int) -> None:
        docs = [i for i in self.docs("finalized", "partially_paid", "paid") if i.kind == "invoice"]
        if docs:
            correct_invoice(self.engine, self.tid, docs[k % len(docs)].id, self.now())

    @invariant()
    def books_balance(self) -> None:
        check_books(self.engine, self.tid)


InvoiceLifecycle.TestCase.settings = settings(
    max_examples=12, stateful_step_count=14, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_invoice_lifecycle_keeps_the_books_balanced = InvoiceLifecycle.TestCase
