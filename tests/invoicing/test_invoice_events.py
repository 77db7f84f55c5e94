"""Invoice and grant events: written in the transaction of the change, so they exist exactly when it does."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine

import invoicing.documents._run
from invoicing.documents import (
    correct_invoice,
    finalize_invoice,
    list_invoices,
    mark_paid,
    record_payment,
    run_cycle,
    void_invoice,
)
from invoicing.events import DomainEvent, NewEvent, emit, head, read_events
from invoicing.ledger import Grant, Ledger
from invoicing.ledger.unit import to_us
from invoicing.subscriptions import change_plan, create_subscription
from metering.errors import FailedPrecondition
from tests.conftest import TenantKey
from tests.invoicing.conftest import T0, check_documents, flat, item_key, line_items, publish, write_events
from tests.invoicing.test_invoice_run import FEB, GRADUATED, calls

PLAN = [
    {"code": "base", "kind": "flat", "price": flat("30")},
    {"code": "calls", "kind": "usage", "meter": "api_calls", "price": GRADUATED},
]
INVOICE_TYPES = ("invoice.", "credit_note.")


def events(engine: Engine, tid: int, types: Sequence[str] = INVOICE_TYPES) -> list[DomainEvent]:
    found, _ = read_events(engine, tid, 0, 10_000, types)
    return found


def test_run_emits_one_invoice_created_per_invoice_and_a_rerun_none(
    engine: Engine, tenant: TenantKey, customer: str
) -> None:
    """One document per customer and billing date: January's fee (Jan 1), then January's usage with
    February's fee (Feb 1); one `invoice.created` per document, none for the items inside it."""
    tid = tenant.tenant_id
    version = publish(engine, tid, "pro", PLAN)
    sub = create_subscription(engine, tid, customer, "pro", T0)
    write_events(engine, tid, calls(1500))
    summary = run_cycle(engine, tid, FEB, batch_size=2)  # both documents in one batch: one insert of events
    written = list_invoices(engine, tid)
    assert summary.due == summary.created == len(written) == 2
    assert [i.due_at for i in written] == [T0, FEB]
    assert list(check_documents(engine, tid).values()) == [
        [item_key(sub.id, version, "in_advance", T0)],
        [item_key(sub.id, version, "in_arrears", T0), item_key(sub.id, version, "in_advance", FEB)],
    ]
    got = events(engine, tid)
    assert [e.type for e in got] == ["invoice.created"] * 2
    assert sorted(e.data["invoice_id"] for e in got) == sorted(i.id or 0 for i in written)
    by_id = {e.data["invoice_id"]: e for e in got}
    for inv in written:
        e = by_id[inv.id]
        assert e.customer == customer
        assert e.data == {
            "invoice_id": inv.id, "number": None, "kind": "invoice", "status": "draft", "subscription_id": sub.id,
            "currency": "USD", "total": f"{inv.money(inv.total):f}",
            "period_start": inv.period_start.isoformat(), "period_end": inv.period_end.isoformat(),
        }  # fmt: skip
    # January's fee; then January's usage (500 calls over the free 1,000 at $0.002 = $1.00) + February's fee.
    assert [e.data["total"] for e in got] == ["30.00", "31.00"]
    assert [(e.data["period_start"], e.data["period_end"]) for e in got] == [
        (T0.isoformat(), FEB.isoformat()), (T0.isoformat(), datetime(2026, 3, 1, tzinfo=UTC).isoformat())
    ]  # fmt: skip
    before = head(engine, tid)
    again = run_cycle(engine, tid, FEB + timedelta(hours=1))
    assert (again.created, again.already_invoiced) == (0, 3)  # the three items, billed already
    assert head(engine, tid) == before  # nothing written, nothing announced


def test_a_rolled_back_batch_emits_nothing_and_the_rerun_fills_in_gaplessly(
    engine: Engine, tenant: TenantKey, customer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second batch (the Feb 1 document) fails after its document and event were written, before
    commit: both roll back."""
    tid = tenant.tenant_id
    publish(engine, tid, "pro", PLAN)
    create_subscription(engine, tid, customer, "pro", T0)
    write_events(engine, tid, calls(1500))
    calls_made: list[int] = []

    def failing_emit(conn: Connection, tenant_id: int, new: Sequence[NewEvent], at: Any = None) -> list[int]:
        sequences = emit(conn, tenant_id, new, at)
        calls_made.append(len(new))
        if len(calls_made) == 2:
            raise RuntimeError("crash after the batch's last statement")
        return sequences

    monkeypatch.setattr(invoicing.documents._run, "emit", failing_emit)
    with pytest.raises(RuntimeError, match="crash after"):
        run_cycle(engine, tid, FEB, batch_size=1)
    assert calls_made == [1, 1]
    (kept,) = list_invoices(engine, tid)
    assert kept.due_at == T0  # January's fee: the first batch's document
    (announced,) = events(engine, tid)
    assert announced.data["invoice_id"] == kept.id
    monkeypatch.undo()
    resumed = run_cycle(engine, tid, FEB, batch_size=1)
    assert resumed.created == 1 and resumed.completed
    assert [len(items) for items in check_documents(engine, tid).values()] == [1, 2]  # nothing lost, nothing twice
    got = events(engine, tid)
    assert len(got) == 2
    assert sorted(e.data["invoice_id"] for e in got) == sorted(i.id or 0 for i in list_invoices(engine, tid))
    everything = events(engine, tid, ())
    assert [e.sequence for e in everything] == list(range(1, len(everything) + 1))  # no gap left by the rollback


def test_finalize_pay_void_emit_one_event_each_and_refusals_none(
    engine: Engine, tenant: TenantKey, customer: str
) -> None:
    tid = tenant.tenant_id
    publish(engine, tid, "pro", PLAN)
    create_subscription(engine, tid, customer, "pro", T0)
    run_cycle(engine, tid, FEB)
    # Jan 1: January's fee; Feb 1: January's usage (none) and February's fee.
    a, b = list_invoices(engine, tid)
    assert (a.due_at, a.timing, b.due_at, b.timing) == (T0, "in_advance", FEB, None)
    assert [(ln.charge_code, ln.amount) for ln in b.lines] == [("calls", 0), ("base", 3000)]
    start = head(engine, tid)
    finalized = finalize_invoice(engine, tid, b.id or 0, FEB)
    record_payment(engine, tid, b.id or 0, 1000, FEB, reference="part")  # a partial payment: not paid yet
    mark_paid(engine, tid, b.id or 0, FEB)  # a payment of the rest
    void_invoice(engine, tid, a.id or 0, FEB, reason="duplicate")
    got, _ = read_events(engine, tid, start, 100)
    assert [(e.type, e.data["invoice_id"], e.data["status"], e.data["number"]) for e in got] == [
        ("invoice.finalized", b.id, "finalized", finalized.number),
        ("invoice.payment_recorded", b.id, "partially_paid", finalized.number),
        ("invoice.payment_recorded", b.id, "paid", finalized.number),
        ("invoice.paid", b.id, "paid", finalized.number),
        ("invoice.voided", a.id, "void", None),
    ]
    assert all(e.customer == customer and e.data["total"] == "30.00" for e in got)
    end = head(engine, tid)
    refusals: list[Callable[[], object]] = [
        lambda: finalize_invoice(engine, tid, b.id or 0, FEB),  # paid
        lambda: mark_paid(engine, tid, a.id or 0, FEB),  # void
        lambda: void_invoice(engine, tid, b.id or 0, FEB),  # paid
    ]
    for refused in refusals:
        with pytest.raises(FailedPrecondition):
            refused()
    assert head(engine, tid) == end


def test_corrections_announce_an_adjustment_as_invoice_created_and_a_credit_note_as_such(
    engine: Engine, tenant: TenantKey, customer: str
) -> None:
    tid = tenant.tenant_id
    publish(engine, tid, "pro", PLAN)
    publish(engine, tid, "max", [{"code": "base", "kind": "flat", "price": flat("62")}])
    sub = create_subscription(engine, tid, customer, "pro", T0)
    write_events(engine, tid, calls(1200))
    run_cycle(engine, tid, T0 + timedelta(days=1))  # January's fee, in advance
    (fee,) = list_invoices(engine, tid)
    finalize_invoice(engine, tid, fee.id or 0, T0 + timedelta(days=1))  # issued: corrected by a credit note
    change_plan(engine, tid, sub.id, "max", datetime(2026, 1, 15, 12, tzinfo=UTC))
    start = head(engine, tid)
    run_cycle(engine, tid, FEB)  # the cut January fee is credited back by the run
    note = next(i for i in list_invoices(engine, tid) if i.kind == "credit_note")
    (announced,) = [e for e in events(engine, tid) if e.sequence > start and e.type == "credit_note.created"]
    assert announced.data["invoice_id"] == note.id and announced.data["kind"] == "credit_note"
    assert announced.data["total"] == "-16.45" and note.corrects_invoice_id == fee.id
    # Feb 1: January's usage on "pro" (in arrears) and February's "max" fee (in advance) on one document.
    (arrears,) = [i for i in list_invoices(engine, tid) if i.kind == "invoice" and i.due_at == FEB]
    usage = item_key(sub.id, sub.plan_version_id, "in_arrears", T0)
    assert line_items(arrears)[0] == usage and arrears.timing is None
    write_events(engine, tid, calls(500, start=T0 + timedelta(days=5), prefix="late"))  # still on "pro"
    finalize_invoice(engine, tid, arrears.id or 0, FEB)  # issued: a correction is a new document
    start = head(engine, tid)
    adj = correct_invoice(engine, tid, arrears.id or 0, FEB + timedelta(days=2))
    assert adj is not None and adj.kind == "adjustment"
    got, _ = read_events(engine, tid, start, 100)
    assert [(e.type, e.data["invoice_id"], e.data["kind"], e.data["total"]) for e in got] == [
        ("invoice.created", adj.id, "adjustment", "1.00")
    ]
    # Only the usage item changed: the adjustment corrects it alone, the fee on the same document stays.
    assert [(ln.charge_code, ln.amount, ln.lineage["item"]) for ln in adj.lines] == [("calls", 100, usage)]
    assert correct_invoice(engine, tid, arrears.id or 0, FEB + timedelta(days=2)) is None
    assert head(engine, tid) == got[-1].sequence  # nothing written, nothing announced


def test_grant_expired_once_per_grant_that_lapsed_with_a_remainder(
    engine: Engine, tenant: TenantKey, customer: str
) -> None:
    tid = tenant.tenant_id
    ledger = Ledger(engine, tid, clock=lambda: T0)
    ledger.define_points_unit("pts", 1)
    end = T0 + timedelta(days=10)
    ledger.grant(Grant("promo", customer, 1000, "USD", "promotional", expires_at_us=to_us(end)))
    ledger.grant(Grant("spent", customer, 500, "USD", priority=1, expires_at_us=to_us(end)))
    ledger.grant(Grant("bonus", customer, 125, "pts", expires_at_us=to_us(end)))
    ledger.grant(Grant("later", customer, 700, "USD", expires_at_us=to_us(end + timedelta(days=30))))
    ledger.spend("s1", customer, 750, "USD", "base")  # all of "spent" (priority 1), then 250 of "promo"
    start = head(engine, tid)
    moved = ledger.expire_grants(end)
    assert sorted(moved) == [("bonus", 125), ("promo", 750)]
    got, _ = read_events(engine, tid, start, 100, ("grant.expired",))
    assert sorted((e.customer, e.data["grant_id"], e.data["unit"], e.data["expired"]) for e in got) == [
        (customer, "bonus", "pts", "12.5"),
        (customer, "promo", "USD", "7.50"),
    ]
    assert ledger.expire_grants(end + timedelta(days=1)) == []
    assert head(engine, tid) == got[-1].sequence  # the rerun moved nothing and announced nothing
