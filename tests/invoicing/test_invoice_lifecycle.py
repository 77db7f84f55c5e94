"""Lifecycle (gapless numbers, paid, void), corrections, previews and concurrent workers."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select

from invoicing.catalog import CustomerDefinition, create_customer
from invoicing.documents import (
    RunSummary,
    correct_invoice,
    export_invoice,
    finalize_invoice,
    get_invoice,
    list_invoices,
    mark_paid,
    preview_invoice,
    run_cycle,
    void_invoice,
)
from invoicing.subscriptions import create_subscription
from invoicing.tables import invoice_items, invoices
from metering.errors import FailedPrecondition
from tests.conftest import TenantKey
from tests.invoicing.conftest import T0, flat, publish, write_events
from tests.invoicing.test_invoice_run import FEB, GRADUATED, calls

MAR = datetime(2026, 3, 1, tzinfo=UTC)
PLAN = [
    {"code": "base", "kind": "flat", "price": flat("30")},
    {"code": "calls", "kind": "usage", "meter": "api_calls", "price": GRADUATED},
]


def test_finalize_numbers_gapless_paid_and_void(engine: Engine, tenant: TenantKey, customer: str) -> None:
    tid = tenant.tenant_id
    publish(engine, tid, "pro", PLAN)
    create_subscription(engine, tid, customer, "pro", T0)
    run_cycle(engine, tid, FEB)
    run_cycle(engine, tid, MAR)
    a, b, c = list_invoices(engine, tid)  # Jan 1, Feb 1 and Mar 1: one document per billing date
    assert finalize_invoice(engine, tid, b.id or 0, FEB).number == 1
    with pytest.raises(FailedPrecondition, match="only a draft can be finalized"):
        finalize_invoice(engine, tid, b.id or 0, FEB)  # a failed finalize takes no number
    voided = void_invoice(engine, tid, a.id or 0, FEB, reason="duplicate")
    assert (voided.status, voided.number) == ("void", None)
    with pytest.raises(FailedPrecondition, match="is void"):
        finalize_invoice(engine, tid, a.id or 0, FEB)
    assert finalize_invoice(engine, tid, c.id or 0, MAR).number == 2
    paid = mark_paid(engine, tid, b.id or 0, MAR)
    assert (paid.status, paid.number, paid.amount_paid, paid.amount_due) == ("paid", 1, b.total, 0)
    with pytest.raises(FailedPrecondition, match="only a draft or an unpaid finalized"):
        void_invoice(engine, tid, b.id or 0, MAR)
    assert [i.number for i in list_invoices(engine, tid) if i.number] == [1, 2]
    # Finalized invoices do not change on re-runs.
    run_cycle(engine, tid, MAR + timedelta(hours=1))
    assert get_invoice(engine, tid, c.id or 0).lines == c.lines


def test_correction_after_late_usage_writes_a_linked_adjustment(
    engine: Engine, tenant: TenantKey, customer: str
) -> None:
    tid = tenant.tenant_id
    publish(engine, tid, "pro", PLAN)
    create_subscription(engine, tid, customer, "pro", T0)
    write_events(engine, tid, calls(1200))
    run_cycle(engine, tid, FEB)
    arrears = next(i for i in list_invoices(engine, tid) if i.due_at == FEB)  # January's usage, February's fee
    assert arrears.total == 40 + 3000
    finalize_invoice(engine, tid, arrears.id or 0, FEB)
    assert correct_invoice(engine, tid, arrears.id or 0, FEB) is None  # nothing changed, nothing written
    write_events(engine, tid, calls(500, start=T0 + timedelta(days=20), prefix="late"))  # late events for January
    adj = correct_invoice(engine, tid, arrears.id or 0, FEB + timedelta(days=2))
    assert adj is not None and adj.kind == "adjustment" and adj.corrects_invoice_id == arrears.id
    assert [(ln.kind, ln.charge_code, ln.amount) for ln in adj.lines] == [("charge", "calls", 100)]
    assert adj.lines[0].detail["billed"] == 40 and adj.lines[0].detail["recomputed"] == 140
    assert get_invoice(engine, tid, arrears.id or 0).total == 3040  # the original never changes
    assert correct_invoice(engine, tid, arrears.id or 0, FEB + timedelta(days=2)) is None  # idempotent


def test_preview_rates_the_open_period_without_writing(engine: Engine, tenant: TenantKey, customer: str) -> None:
    tid = tenant.tenant_id
    publish(engine, tid, "pro", PLAN)
    create_subscription(engine, tid, customer, "pro", T0)
    write_events(engine, tid, calls(1800, start=T0 + timedelta(days=31)))  # February usage
    run_cycle(engine, tid, FEB)
    at = datetime(2026, 2, 20, 10, 7, tzinfo=UTC)
    (upcoming,) = preview_invoice(engine, tid, customer, at)  # one document, as the run will write it
    # February usage so far: 800 x 0.002 = 1.60; March's fee is due at the end of February, on the same date.
    got = [(ln.charge_code, ln.period_start.date().isoformat(), ln.amount) for ln in upcoming.lines]
    assert got == [("calls", "2026-02-01", 160), ("base", "2026-03-01", 3000)] and upcoming.total == 3160
    assert upcoming.lines[0].lineage["windows"] == [["2026-02-01T00:00:00+00:00", "2026-02-20T10:00:00+00:00"]]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(invoices)).scalar_one() == 2
    assert '"total": "31.60"' in export_invoice(upcoming, "json")


def test_export_csv(engine: Engine, tenant: TenantKey, customer: str) -> None:
    tid = tenant.tenant_id
    publish(engine, tid, "pro", PLAN)
    create_subscription(engine, tid, customer, "pro", T0)
    run_cycle(engine, tid, T0)
    (inv,) = list_invoices(engine, tid)
    text = export_invoice(inv, "csv").splitlines()
    # One row per line, the invoice's columns repeated (tests/invoicing/test_invoice_export.py has the rest).
    assert text[0].startswith("invoice,label,kind,status") and len(text) == 1 + len(inv.lines)
    assert any(row.endswith(",charge,base,,,2026-01-01T00:00:00+00:00,2026-02-01T00:00:00+00:00,1,30,30.00,30")
               for row in text[1:])  # fmt: skip


@pytest.mark.postgres
def test_concurrent_workers_never_double_bill(engine: Engine, tenant: TenantKey) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SKIP LOCKED sharing is a PostgreSQL feature; SQLite serialises writers")
    tid = tenant.tenant_id
    publish(engine, tid, "pro", PLAN)
    for k in range(40):
        create_customer(engine, tid, CustomerDefinition(external_id=f"w{k}", timezone="UTC"), T0)
        create_subscription(engine, tid, f"w{k}", "pro", T0)
    write_events(engine, tid, [e for k in range(40) for e in calls(10 + k, f"w{k}")])
    results: list[object] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(run_cycle(engine, tid, FEB, batch_size=5))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    created = [r.created for r in results if isinstance(r, RunSummary)]
    assert sum(created) == 80  # Jan 1 and Feb 1 per customer
    with engine.connect() as conn:
        keys = conn.execute(select(invoices.c.idempotency_key).where(invoices.c.tenant_id == tid)).scalars().all()
        items = conn.execute(select(invoice_items.c.item_key).where(invoice_items.c.tenant_id == tid)).scalars().all()
    assert len(keys) == len(set(keys)) == 80
    assert len(items) == len(set(items)) == 120  # every due item billed once
