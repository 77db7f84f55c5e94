"""Three workers on one PostgreSQL run really share it: each invoice is written exactly once, and the
work is spread over more than one worker (SKIP LOCKED hands them disjoint batches)."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select

from invoicing.catalog import CustomerDefinition, create_customer
from invoicing.documents import RunSummary, run_cycle
from invoicing.ledger import Grant, Ledger
from invoicing.ledger.tables import ledger_transfers
from invoicing.subscriptions import create_subscription
from invoicing.tables import invoice_lines, invoice_run_items, invoice_runs, invoices
from tests.conftest import TenantKey
from tests.invoicing.conftest import T0, flat, publish, write_events

FEB = datetime(2026, 2, 1, tzinfo=UTC)
WORKERS = 3
CUSTOMERS = 60


@pytest.mark.postgres
def test_three_workers_share_one_run(engine: Engine, tenant: TenantKey) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("workers share a run through SELECT ... FOR UPDATE SKIP LOCKED on PostgreSQL")
    tid = tenant.tenant_id
    publish(engine, tid, "pro", [
        {"code": "base", "kind": "flat", "price": flat("30")},
        {"code": "calls", "kind": "usage", "meter": "api_calls", "price": {"model": "per_unit", "unit_amount": "0.01"}},
    ])  # fmt: skip
    ledger = Ledger(engine, tid)
    events: list[tuple[str, str, str, datetime, int, str | None]] = []
    for k in range(CUSTOMERS):
        ext = f"w{k:03d}"
        create_customer(engine, tid, CustomerDefinition(external_id=ext, timezone="UTC"), T0)
        create_subscription(engine, tid, ext, "pro", T0)
        events += [(f"{ext}-{n}", ext, "api_calls", T0 + timedelta(minutes=n), 1, None) for n in range(k % 7 + 1)]
        if k % 4 == 0:  # some customers hold credit, so the workers also write ledger spends
            ledger.grant(Grant(f"g-{ext}", ext, 4000, "USD", kind="promotional", effective_at_us=0))
    write_events(engine, tid, events)
    # One document per customer and billing date: Jan 1 (January's fee in advance) and Feb 1 (January's
    # usage in arrears with February's fee in advance): three due items on two documents.
    expected = CUSTOMERS * 2

    # All workers reach the claim loop together: run_cycle reports progress (0, due) just before its
    # first claim, so a barrier there keeps one fast worker from taking everything before the others start.
    barrier = threading.Barrier(WORKERS, timeout=120)
    handled: list[int] = [0] * WORKERS
    summaries: list[RunSummary | None] = [None] * WORKERS
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        def progress(done: int, total: int) -> None:
            if done == 0:
                barrier.wait()
            handled[n] = done

        try:
            summaries[n] = run_cycle(engine, tid, FEB, progress, batch_size=2)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    done = [s for s in summaries if s is not None]
    assert len(done) == WORKERS
    created = [s.created for s in done]

    with engine.connect() as conn:
        rows = conn.execute(
            select(invoices.c.id, invoices.c.idempotency_key, invoices.c.run_id, invoices.c.total,
                   invoices.c.credits_applied).where(invoices.c.tenant_id == tid)
        ).all()  # fmt: skip
        (run_id,) = conn.execute(select(invoice_runs.c.id).where(invoice_runs.c.tenant_id == tid)).scalars().all()
        items = conn.execute(
            select(invoice_run_items.c.status, invoice_run_items.c.invoice_id).where(
                invoice_run_items.c.run_id == run_id
            )
        ).all()
        lines_per_invoice: dict[int, list[tuple[str, str]]] = {}
        for line in conn.execute(
            select(invoice_lines.c.invoice_id, invoice_lines.c.kind, invoice_lines.c.charge_code).where(
                invoice_lines.c.invoice_id.in_([r.id for r in rows])
            )
        ):
            lines_per_invoice.setdefault(line.invoice_id, []).append((line.kind, line.charge_code))
        spent = conn.execute(
            select(func.coalesce(func.sum(ledger_transfers.c.amount), 0)).where(
                ledger_transfers.c.tenant_id == tid,
                ledger_transfers.c.code == "invoice_hold",  # drafts hold
            )
        ).scalar_one()

    # Every invoice exactly once.
    keys = [r.idempotency_key for r in rows]
    assert len(keys) == len(set(keys)) == expected
    assert {r.run_id for r in rows} == {run_id}  # one shared run row
    assert len(items) == expected and all(i.status == "done" for i in items)
    item_invoices = Counter(i.invoice_id for i in items)
    assert set(item_invoices) == {r.id for r in rows} and set(item_invoices.values()) == {1}
    # January's document has the fee; February's the usage and the fee; a credit line per charge that a
    # grant paid: never a line twice.
    jan = {r.id for r in rows if "2026-01-01" in r.idempotency_key}
    assert len(jan) == CUSTOMERS and set(lines_per_invoice) == {r.id for r in rows}
    for invoice_id, kinds in lines_per_invoice.items():
        assert len(kinds) == len(set(kinds)), kinds
        assert {c for k, c in kinds if k == "charge"} == ({"base"} if invoice_id in jan else {"base", "calls"})
    # The workers' own accounts of what they wrote add up to the tables.
    assert sum(created) == expected
    assert sum(s.totals.get("USD", 0) for s in done) == sum(int(r.total) for r in rows)
    assert sum(s.credits.get("USD", 0) for s in done) == sum(int(r.credits_applied) for r in rows) == int(spent) > 0
    assert any(s.completed for s in done)  # the last one out marks the run completed
    # And the run really was shared: more than one worker wrote invoices.
    assert sum(1 for c in created if c > 0) >= 2, created
    assert sum(1 for h in handled if h > 0) >= 2, handled
