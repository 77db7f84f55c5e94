"""Customer 360 and the portfolio: real figures on a busy customer, stages on crafted ones, counts adding up."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine

from invoicing.catalog import CustomerDefinition, create_customer
from invoicing.documents import finalize_invoice, list_invoices, mark_paid, preview_invoice, run_cycle
from invoicing.insight import STAGES, customer_360, portfolio
from invoicing.ledger import Ledger
from invoicing.subscriptions import cancel_subscription, create_subscription
from metering.errors import NotFound
from metering.meter import Aggregation, MeterDefinition, create_meter
from tests.conftest import CliRun, TenantKey
from tests.invoicing.conftest import T0, flat, plan_json, publish, write_events

AT = T0 + timedelta(days=40, hours=12)  # 2026-02-10 12:00 UTC: ten and a half days into February
TIERS = [{"threshold": "99.9", "credit_percent": "10"}, {"threshold": "99", "credit_percent": "25"}]
SLA = {"model": "sla_credit", "affected_fee": "30", "metric": "uptime_percent", "tiers": TIERS}


@pytest.fixture
def tid(engine: Engine, tenant: TenantKey) -> int:
    t = tenant.tenant_id
    create_meter(engine, t, MeterDefinition(code="uptime", aggregation=Aggregation.MIN, value_scale=2, unit="%"))
    publish(engine, t, "pro", [
        {"code": "base", "kind": "flat", "price": flat("30")},
        {"code": "calls", "kind": "usage", "meter": "api_calls",
         "price": {"model": "per_unit", "unit_amount": "0.01", "currency": "USD"}},
        {"code": "sla", "kind": "usage", "meter": "uptime", "price": SLA},
    ])  # fmt: skip
    publish(engine, t, "annual", [{"code": "base", "kind": "flat", "price": flat("300")}], interval="yearly")
    return t


def person(engine: Engine, tid: int, external_id: str, created: datetime, plan: str | None = "pro") -> int | None:
    create_customer(engine, tid, CustomerDefinition(external_id=external_id, timezone="UTC"), created)
    return create_subscription(engine, tid, external_id, plan, created).id if plan else None


def calls(engine: Engine, tid: int, customer: str, jan: int, feb: int) -> None:
    """`jan` calls in Jan 1-10 (the previous stretch) and `feb` in Feb 1-10 (this period so far)."""
    write_events(engine, tid, [
        *[(f"{customer}-j{k}", customer, "api_calls", T0 + timedelta(hours=k), 1, None) for k in range(jan)],
        *[(f"{customer}-f{k}", customer, "api_calls", T0 + timedelta(days=31, hours=k), 1, None) for k in range(feb)],
    ])  # fmt: skip


def test_360_of_a_customer_with_usage_invoices_balances_and_sla(engine: Engine, tid: int) -> None:
    person(engine, tid, "ada", T0)
    calls(engine, tid, "ada", jan=10, feb=20)
    write_events(engine, tid, [("up1", "ada", "uptime", T0 + timedelta(days=33), 9950, None)])  # 99.50 %
    run_cycle(engine, tid, T0 + timedelta(days=31))  # January in advance and in arrears, February in advance
    first, *rest = list_invoices(engine, tid, customer="ada")
    assert rest
    finalize_invoice(engine, tid, first.id or 0, AT)
    mark_paid(engine, tid, first.id or 0, AT)
    led = Ledger(engine, tid)
    assert led.top_up("t1", "ada", led.amount("15", "USD"), "USD").ok

    c = customer_360(engine, tid, "ada", AT)
    assert c.customer.external_id == "ada" and [s.id for s in c.subscriptions] == [1]
    assert c.period is not None and (c.period.start, c.period.end) == (T0 + timedelta(days=31), T0 + timedelta(days=59))
    by_meter = {u.meter: u for u in c.usage}
    assert (by_meter["api_calls"].quantity, by_meter["api_calls"].previous) == (Decimal(20), Decimal(10))
    assert by_meter["uptime"].quantity == Decimal("99.50") and by_meter["uptime"].unit == "%"
    (stage, reason) = (c.stage.name, c.stage.reason)
    assert stage == "growing" and "api_calls +100 %" in reason
    previews = preview_invoice(engine, tid, "ada", AT)
    assert c.spend.unit == "USD" and c.spend.amount == sum(p.money(p.total) for p in previews) and c.spend.amount
    assert [(b.unit, b.balance, b.available) for b in c.balances] == [("USD", Decimal("15.00"), Decimal("15.00"))]
    assert [(i.id, i.status) for i in c.open_invoices] == [(i.id, "draft") for i in rest]
    assert [(i.id, i.status, i.label) for i in c.past_invoices] == [(first.id, "paid", "INV-000001")]
    assert c.past_invoices[0].total == first.money(first.total)
    (sla,) = c.sla
    # 99.50 % misses 99.9 (10 %) but meets 99: a credit of 10 % of the 30.00 fee.
    assert (sla.charge, sla.meter, sla.measured, sla.credit, sla.status) == (
        "sla", "uptime", Decimal("99.50"), Decimal("-3.00"), "breached",
    )  # fmt: skip


def test_360_without_measurement_and_unknown_customer(engine: Engine, tid: int) -> None:
    person(engine, tid, "quiet", T0)
    c = customer_360(engine, tid, "quiet", AT)
    assert [(s.status, s.measured) for s in c.sla] == [("no_data", None)]
    assert c.stage.name == "steady" and c.open_invoices == [] and c.balances == []
    with pytest.raises(NotFound):
        customer_360(engine, tid, "ghost", AT)


def crafted(engine: Engine, tid: int) -> dict[str, str]:
    """One customer per rule; returns external id → the stage it must get."""
    person(engine, tid, "grower", T0)
    calls(engine, tid, "grower", jan=10, feb=12)  # +20 %
    person(engine, tid, "decliner", T0)
    calls(engine, tid, "decliner", jan=10, feb=8)  # -20 %
    person(engine, tid, "flat", T0)
    calls(engine, tid, "flat", jan=10, feb=10)
    gone = person(engine, tid, "gone", T0)
    cancel_subscription(engine, tid, gone or 0, T0 + timedelta(days=20))
    leaving = person(engine, tid, "leaving", T0)
    cancel_subscription(engine, tid, leaving or 0, T0 + timedelta(days=35), timing="period_end")
    person(engine, tid, "yearly", AT - timedelta(days=340), plan="annual")
    person(engine, tid, "newbie", AT - timedelta(days=5))
    person(engine, tid, "prospect", AT - timedelta(days=3), plan=None)
    person(engine, tid, "never", T0, plan=None)
    return {
        "grower": "growing", "decliner": "declining", "flat": "steady", "gone": "cancelled",
        "leaving": "renewal_due", "yearly": "renewal_due", "newbie": "new", "prospect": "new", "never": "cancelled",
    }  # fmt: skip


def test_stages_of_crafted_customers(engine: Engine, tid: int) -> None:
    expected = crafted(engine, tid)
    got = {c: customer_360(engine, tid, c, AT).stage for c in expected}
    assert {c: s.name for c, s in got.items()} == expected
    assert "ends on 2026-03-01" in got["leaving"].reason
    assert "renews on" in got["yearly"].reason
    assert "started 5 days ago" in got["newbie"].reason
    assert "cancelled" in got["gone"].reason


def test_portfolio_counts_add_up_and_agree_with_the_360(engine: Engine, tid: int) -> None:
    expected = crafted(engine, tid)
    run_cycle(engine, tid, T0 + timedelta(days=31))
    grower_invoices = list_invoices(engine, tid, customer="grower")
    for inv in grower_invoices:
        finalize_invoice(engine, tid, inv.id or 0, AT - timedelta(days=1))
    p = portfolio(engine, tid, AT)
    assert [s.stage for s in p.stages] == list(STAGES)
    assert p.customers == len(expected) == sum(s.customers for s in p.stages)
    for s in p.stages:
        assert sorted(s.sample) == sorted(c for c, stage in expected.items() if stage == s.stage)
    growing = next(s for s in p.stages if s.stage == "growing")
    assert [(a.unit, a.amount) for a in growing.revenue] == [
        ("USD", sum((i.money(i.total) for i in grower_invoices), Decimal(0)))
    ]
    assert all(not s.revenue for s in p.stages if s.stage not in ("growing",))


def test_cli_customer_show_and_portfolio(run: CliRun, tmp_path: Path) -> None:
    assert run("tenant", "create", "acme")[0] == 0
    assert run("meter", "create", "acme", "api_calls", "--aggregation", "count")[0] == 0
    file = tmp_path / "pro.json"
    file.write_text(json.dumps(plan_json("pro")))
    for args in (("plan", "create", "acme", str(file)), ("plan", "publish", "acme", "pro"),
                 ("customer", "create", "acme", "ada"), ("customer", "create", "acme", "bob"),
                 ("subscription", "create", "acme", "ada", "pro", "--at", "2026-01-01T00:00Z")):  # fmt: skip
        assert run(*args)[0] == 0, args
    code, out, _ = run("customer", "show", "acme", "ada", "--at", "2026-02-10T12:00Z")
    assert code == 0 and "steady: usage within" in out and "2026-02-01 00:00Z → 2026-03-01 00:00Z" in out
    assert "api_calls" in out and "spend so far" in out
    code, out, _ = run("portfolio", "acme", "--at", "2026-02-10T12:00Z")
    assert code == 0 and "portfolio: 2 customers" in out and "steady" in out and "ada" in out
    code, _, err = run("customer", "show", "acme", "ghost")
    assert code == 1 and "no customer 'ghost'" in err


def test_360_lists_partly_paid_documents_as_open_and_names_credit_notes_as_such(engine: Engine, tid: int) -> None:
    """What a customer still owes includes a partly paid invoice; a credit note is CN-…, never INV-…."""
    from invoicing.documents import get_invoice, open_dispute, record_payment, resolve_dispute

    person(engine, tid, "ada", T0)
    calls(engine, tid, "ada", jan=10, feb=20)
    run_cycle(engine, tid, T0 + timedelta(days=31))
    first, second, *_ = list_invoices(engine, tid, customer="ada")
    for doc in (first, second):
        finalize_invoice(engine, tid, doc.id or 0, AT)
    record_payment(engine, tid, second.id or 0, 1, AT, key="part")  # one minor unit: partly paid
    fee = next(ln.position for ln in get_invoice(engine, tid, first.id or 0).lines if ln.amount > 0)
    dispute = open_dispute(engine, tid, first.id or 0, fee, "charged twice", AT)
    credited = resolve_dispute(engine, tid, dispute.id, "credit", AT, amount=100)
    assert credited.credit_note_id is not None

    c = customer_360(engine, tid, "ada", AT)
    by_id = {i.id: i for i in [*c.open_invoices, *c.past_invoices]}
    assert by_id[second.id or 0].status == "partially_paid" and by_id[second.id or 0] in c.open_invoices
    note = by_id[credited.credit_note_id]
    assert note.label.startswith("CN-") and note.label == credited.credit_note_label, note
