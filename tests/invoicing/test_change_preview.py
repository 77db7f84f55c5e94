"""preview_change: what a plan change or a cancellation made now would credit and bill, before it is confirmed.
The preview writes nothing, and what the invoice run then bills for the confirmed change is exactly what it said."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select

from invoicing.catalog import CustomerDefinition, create_customer
from invoicing.documents import finalize_invoice, list_invoices, preview_change, run_cycle, set_tax_rate
from invoicing.subscriptions import cancel_subscription, change_plan, create_subscription
from invoicing.tables import invoice_lines, invoices, subscription_history, subscriptions
from metering.errors import FailedPrecondition, NotFound
from tests.conftest import TenantKey
from tests.invoicing.conftest import T0, flat, publish, write_events
from tests.invoicing.test_invoice_run import calls

MID = datetime(2026, 1, 16, tzinfo=UTC)
USAGE = {"code": "calls", "kind": "usage", "meter": "api_calls", "price": {"model": "per_unit", "unit_amount": "0.01"}}


@pytest.fixture
def tid(engine: Engine, tenant: TenantKey) -> int:
    t = tenant.tenant_id
    publish(engine, t, "team", [{"code": "base", "kind": "flat", "price": flat("30")}, USAGE])
    publish(engine, t, "pro", [{"code": "base", "kind": "flat", "price": flat("100")}, USAGE])
    set_tax_rate(engine, t, "FR", "20", False, T0)
    create_customer(engine, t, CustomerDefinition(external_id="ada", timezone="UTC", tax_region="FR"), T0)
    return t


def _rows(engine: Engine) -> tuple[int, ...]:
    with engine.connect() as conn:
        return tuple(
            int(conn.execute(select(func.count()).select_from(t)).scalar_one())
            for t in (invoices, invoice_lines, subscription_history, subscriptions)
        )


def _billed_since(engine: Engine, tid: int, known: set[int]) -> list[tuple[str, int, int]]:
    """(kind, subtotal, tax) of the documents written since `known` (ids)."""
    return sorted((i.kind, i.subtotal, i.tax) for i in list_invoices(engine, tid) if i.id not in known)


def test_an_upgrade_mid_month_is_billed_as_previewed(engine: Engine, tid: int) -> None:
    sub = create_subscription(engine, tid, "ada", "team", T0)
    run_cycle(engine, tid, T0)
    (jan,) = list_invoices(engine, tid)
    finalize_invoice(engine, tid, jan.id or 0, T0)
    before = _rows(engine)
    p = preview_change(engine, tid, sub.id, MID + timedelta(minutes=7), plan="pro", customer="ada")
    assert _rows(engine) == before  # nothing written
    assert (p.effective_at, p.from_plan, p.to_plan, p.currency) == (MID, "team v1", "pro v1", "USD")
    # 16 of 31 days left: team's $30 × 16/31 = 15.48 back, pro's $100 × 16/31 = 51.61 charged.
    assert [(ln.reason, ln.plan, ln.charge, ln.amount) for ln in p.lines] == [
        ("unused", "team v1", "base", -1548), ("new", "pro v1", "base", 5161),
    ]  # fmt: skip
    assert (p.credits, p.charges, p.tax, p.total) == (-1548, 5161, -310 + 1032, -1548 + 5161 - 310 + 1032)
    known = {i.id or 0 for i in list_invoices(engine, tid)}
    change_plan(engine, tid, sub.id, "pro", MID + timedelta(minutes=7))
    run_cycle(engine, tid, MID + timedelta(minutes=7))
    assert _billed_since(engine, tid, known) == sorted([("credit_note", -1548, -310), ("invoice", 5161, 1032)])


def test_a_cancellation_bills_the_usage_so_far_as_previewed(engine: Engine, tid: int) -> None:
    sub = create_subscription(engine, tid, "ada", "team", T0)
    write_events(engine, tid, calls(700, customer="ada"))  # 700 calls in January's first hours: $7.00
    run_cycle(engine, tid, T0)
    (jan,) = list_invoices(engine, tid)
    finalize_invoice(engine, tid, jan.id or 0, T0)
    p = preview_change(engine, tid, sub.id, MID, customer="ada")
    assert p.to_plan is None
    assert [(ln.reason, ln.charge, ln.amount) for ln in p.lines] == [("unused", "base", -1548), ("usage", "calls", 700)]
    known = {i.id or 0 for i in list_invoices(engine, tid)}
    cancel_subscription(engine, tid, sub.id, MID)
    run_cycle(engine, tid, MID)
    assert _billed_since(engine, tid, known) == sorted([("credit_note", -1548, -310), ("invoice", 700, 140)])


def test_what_cannot_be_previewed(engine: Engine, tid: int) -> None:
    sub = create_subscription(engine, tid, "ada", "team", T0)
    with pytest.raises(FailedPrecondition, match="already on team v1"):
        preview_change(engine, tid, sub.id, MID, plan="team")
    with pytest.raises(NotFound, match=f"no subscription {sub.id}"):
        preview_change(engine, tid, sub.id, MID, plan="pro", customer="bob")
    with pytest.raises(NotFound):
        preview_change(engine, tid, sub.id, MID, plan="nope")
    cancel_subscription(engine, tid, sub.id, MID)
    with pytest.raises(FailedPrecondition, match="it is cancelled"):
        preview_change(engine, tid, sub.id, MID + timedelta(days=1), plan="pro")
