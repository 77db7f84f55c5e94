"""Invoice run golden cases, one per plan kind, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pypdf import PdfReader
from sqlalchemy import Engine, func, select

from invoicing.catalog import CustomerDefinition, create_customer, get_customer_by_id
from invoicing.documents import (
    InjectedFailure,
    Invoice,
    finalize_invoice,
    invoice_document,
    list_invoices,
    preview_invoice,
    render_document,
    run_cycle,
    set_tax_rate,
)
from invoicing.ledger import Grant, Ledger
from invoicing.ledger.tables import ledger_transfers
from invoicing.subscriptions import change_plan, create_subscription
from invoicing.tables import invoice_lines, invoices
from metering.meter import Aggregation, MeterDefinition, create_meter
from tests.conftest import TenantKey
from tests.invoicing.conftest import T0, flat, publish, write_events

FEB = datetime(2026, 2, 1, tzinfo=UTC)
GRADUATED = {"model": "graduated", "tiers": [{"up_to": "1000", "unit_amount": "0"},
                                             {"up_to": None, "unit_amount": "0.002"}]}  # fmt: skip


def calls(n: int, customer: str = "cus_1", start: datetime = T0, prefix: str = "e") -> list[Any]:
    return [(f"{prefix}{customer}-{k}", customer, "api_calls", start + timedelta(minutes=k), 1, None) for k in range(n)]


def shape(inv: Invoice) -> list[tuple[str, str, int]]:
    return [(ln.kind, ln.charge_code, ln.amount) for ln in inv.lines]


def by_key(engine: Engine, tid: int) -> dict[str, Invoice]:
    return {i.key.split(":", 2)[2]: i for i in list_invoices(engine, tid)}


def check_totals(inv: Invoice) -> None:
    assert inv.total == sum(ln.amount for ln in inv.lines)
    assert inv.subtotal == sum(ln.amount for ln in inv.lines if ln.kind not in ("tax", "credit", "points"))
    assert inv.credits_applied == -sum(ln.amount for ln in inv.lines if ln.kind in ("credit", "points"))


def by_date(engine: Engine, tid: int) -> dict[str, Invoice]:
    """Documents by their billing date (one per customer, currency and date here)."""
    out: dict[str, Invoice] = {}
    for inv in list_invoices(engine, tid):
        assert inv.due_at.date().isoformat() not in out, "two documents for one billing date"
        out[inv.due_at.date().isoformat()] = inv
    return out


def items(inv: Invoice) -> list[str]:
    """The due items a document's rated lines bill, timing and period start (key without the ids)."""
    return [":".join(str(ln.lineage["item"]).split(":")[2:4]) for ln in inv.lines if ln.kind != "tax"]


def test_usage_graduated_and_flat_in_advance(engine: Engine, tenant: TenantKey, customer: str) -> None:
    """One document per customer and billing date: Feb 1 carries January's usage in arrears and
    February's fee in advance, each line with its own service period and lineage."""
    tid = tenant.tenant_id
    publish(engine, tid, "pro", [
        {"code": "base", "kind": "flat", "price": flat("30")},
        {"code": "calls", "kind": "usage", "meter": "api_calls", "price": GRADUATED},
    ])  # fmt: skip
    create_subscription(engine, tid, customer, "pro", T0)
    write_events(engine, tid, calls(1500))
    summary = run_cycle(engine, tid, FEB)
    assert (summary.due, summary.created, summary.failed, summary.completed) == (2, 2, 0, True)
    assert summary.totals == {"USD": 3000 + 100 + 3000}
    got = by_date(engine, tid)
    assert sorted(got) == ["2026-01-01", "2026-02-01"]
    jan, feb = got["2026-01-01"], got["2026-02-01"]
    assert shape(jan) == [("charge", "base", 3000)] and items(jan) == ["in_advance:2026-01-01T00"]
    assert shape(feb) == [("charge", "calls", 100), ("charge", "base", 3000)]
    assert items(feb) == ["in_arrears:2026-01-01T00", "in_advance:2026-02-01T00"]
    usage, fee = feb.lines
    assert (usage.period_start, usage.period_end) == (T0, FEB)  # January, billed in arrears
    assert (fee.period_start, fee.period_end) == (FEB, datetime(2026, 3, 1, tzinfo=UTC))  # February, in advance
    assert feb.timing is None and (feb.period_start, feb.period_end) == (T0, datetime(2026, 3, 1, tzinfo=UTC))
    assert usage.quantity == 1500 and usage.detail["rated_by"] == "kernel"
    assert [t["amount"] for t in usage.detail["lines"]] == ["0", "1.000"]
    assert usage.lineage["windows"] == [["2026-01-01T00:00:00+00:00", "2026-02-01T00:00:00+00:00"]]
    for inv in got.values():
        check_totals(inv)
        assert (inv.status, inv.number, inv.kind) == ("draft", None, "invoice")
    # A re-run adds nothing.
    again = run_cycle(engine, tid, FEB)
    assert (again.created, again.already_invoiced) == (0, 0)  # the run's items are all done already
    later = run_cycle(engine, tid, FEB + timedelta(hours=1))  # a new run sees the same items, already invoiced
    assert (later.created, later.already_invoiced) == (0, 3)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(invoices)).scalar_one() == 2


def test_per_subscription_grouping_splits_documents(engine: Engine, tenant: TenantKey, customer: str) -> None:
    """Two subscriptions of one customer share the customer's document; invoiced per subscription
    (a customer setting), each gets its own."""
    from invoicing.catalog import CustomerUpdate, update_customer

    tid = tenant.tenant_id
    publish(engine, tid, "pro", [{"code": "base", "kind": "flat", "price": flat("30")}])
    publish(engine, tid, "seats", [{"code": "seat", "kind": "flat", "price": flat("7")}])
    create_subscription(engine, tid, customer, "pro", T0)
    create_subscription(engine, tid, customer, "seats", T0)
    run_cycle(engine, tid, T0)
    (one,) = list_invoices(engine, tid)
    assert shape(one) == [("charge", "base", 3000), ("charge", "seat", 700)] and one.subscription_id is None
    update_customer(engine, tid, customer, CustomerUpdate(invoice_grouping="subscription"), T0)
    upcoming = preview_invoice(engine, tid, customer, T0 + timedelta(days=3))  # previewed as it will be billed
    assert sorted(shape(i)[0] for i in upcoming) == [("charge", "base", 3000), ("charge", "seat", 700)]
    run_cycle(engine, tid, FEB)
    feb = [i for i in list_invoices(engine, tid) if i.due_at == FEB]
    assert sorted(shape(i)[0] for i in feb) == [("charge", "base", 3000), ("charge", "seat", 700)]
    assert all(i.subscription_id is not None for i in feb)


def test_zero_total_documents_are_closed_unless_the_tenant_asks(
    engine: Engine, tenant: TenantKey, customer: str
) -> None:
    from invoicing.catalog import BillingProfile, set_billing_profile
    from invoicing.documents import finalize_invoice

    tid = tenant.tenant_id
    publish(engine, tid, "payg", [{"code": "calls", "kind": "usage", "meter": "api_calls", "price": GRADUATED}])
    create_subscription(engine, tid, customer, "payg", T0)
    run_cycle(engine, tid, FEB)  # no usage in January
    (quiet,) = list_invoices(engine, tid)
    assert (quiet.status, quiet.total, quiet.number) == ("closed", 0, None)
    with pytest.raises(Exception, match="only a draft can be finalized"):
        finalize_invoice(engine, tid, quiet.id or 0, FEB)
    set_billing_profile(engine, tid, BillingProfile(issue_zero_total=True), FEB)
    run_cycle(engine, tid, datetime(2026, 3, 1, tzinfo=UTC))
    march = [i for i in list_invoices(engine, tid) if i.id != quiet.id]
    assert [(i.status, i.total) for i in march] == [("draft", 0)]


def test_flat_proration_on_upgrade_and_cut_span_adjustment(engine: Engine, tenant: TenantKey, customer: str) -> None:
    """The billing.md golden case: $30 plan, upgraded Jan 15 12:00 to $62; the Jan fee already billed and
    issued is credited by a proration_adjustment for 17/31 of it, on a credit note of its own series."""
    from invoicing.documents import finalize_invoice

    tid = tenant.tenant_id
    publish(engine, tid, "pro", [{"code": "base", "kind": "flat", "price": flat("30")}])
    publish(engine, tid, "max", [{"code": "base", "kind": "flat", "price": flat("62")}])
    sub = create_subscription(engine, tid, customer, "pro", T0)
    first = run_cycle(engine, tid, T0 + timedelta(days=1))
    assert first.created == 1
    (jan,) = list_invoices(engine, tid)
    assert finalize_invoice(engine, tid, jan.id or 0, T0 + timedelta(days=1)).label == "INV-000001"
    change_plan(engine, tid, sub.id, "max", datetime(2026, 1, 15, 12, tzinfo=UTC))
    second = run_cycle(engine, tid, FEB)
    assert second.adjustments == 1
    invs = list_invoices(engine, tid)
    kinds = sorted((i.kind, i.timing, shape(i)) for i in invs)
    # Feb: 62. Jan on max: 62 x 17/31 = 34.00. Jan on pro was billed 30 but is now 14/31 x 30 = 13.55: -16.45.
    assert kinds == [
        ("credit_note", "in_advance", [("proration_adjustment", "base", -1645)]),
        ("invoice", "in_advance", [("charge", "base", 3000)]),
        ("invoice", "in_advance", [("charge", "base", 3400)]),
        ("invoice", "in_advance", [("charge", "base", 6200)]),
    ]
    note = next(i for i in invs if i.kind == "credit_note")
    assert note.corrects_invoice_id == jan.id and note.total == -1645
    assert run_cycle(engine, tid, FEB + timedelta(hours=2)).created == 0  # the adjustment is not repeated
    # Credit notes have their own gapless series: the next invoice is still INV-000002.
    assert finalize_invoice(engine, tid, note.id or 0, FEB).label == "CN-000001"
    nxt = next(i for i in list_invoices(engine, tid) if i.status == "draft" and i.kind == "invoice")
    assert finalize_invoice(engine, tid, nxt.id or 0, FEB).label == "INV-000002"


def test_a_cut_span_on_a_draft_rerates_the_draft(engine: Engine, tenant: TenantKey, customer: str) -> None:
    """The same upgrade while January's document is still a draft: it was never sent, so it is re-rated in
    place (same id and key, `invoice.updated`), its credit hold re-drawn for the new total, and no credit
    note is written; correcting a draft re-rates it the same way."""
    from invoicing.documents import correct_invoice
    from invoicing.events import read_events

    tid = tenant.tenant_id
    publish(engine, tid, "pro", [{"code": "base", "kind": "flat", "price": flat("30")}])
    publish(engine, tid, "max", [{"code": "base", "kind": "flat", "price": flat("62")}])
    ledger = Ledger(engine, tid)
    ledger.top_up("tu", customer, 2000, "USD")  # $20 of cash: the draft holds what it draws
    sub = create_subscription(engine, tid, customer, "pro", T0)
    run_cycle(engine, tid, T0 + timedelta(days=1))
    (jan,) = list_invoices(engine, tid)
    assert (jan.total, jan.credits_applied) == (1000, 2000)
    change_plan(engine, tid, sub.id, "max", datetime(2026, 1, 15, 12, tzinfo=UTC))
    assert run_cycle(engine, tid, FEB).adjustments == 1
    invs = list_invoices(engine, tid)
    assert all(i.kind == "invoice" for i in invs)  # no credit note
    rerated = next(i for i in invs if i.id == jan.id)
    assert (rerated.key, rerated.status) == (jan.key, "draft")
    assert shape(rerated)[0] == ("charge", "base", 1355)  # 14/31 of $30
    assert (rerated.credits_applied, rerated.total) == (1355, 0)  # the hold is now only what it needs
    wallet = ledger.balance(ledger.wallet(customer, "USD"))
    assert wallet.debits_pending == sum(i.credits_applied for i in invs)  # the old hold was released
    events, _ = read_events(engine, tid, 0, 100, ["invoice.updated"])
    assert [e.data["invoice_id"] for e in events] == [jan.id]
    # Correcting a draft re-rates it too (nothing changed since: same document, same figures).
    again = correct_invoice(engine, tid, jan.id or 0, FEB)
    assert again is not None and again.id == jan.id and again.total == rerated.total
    assert [i.kind for i in list_invoices(engine, tid)].count("credit_note") == 0


def test_minimum_commitment_true_up_and_tax(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    create_customer(engine, tid, CustomerDefinition(external_id="cus_fr", timezone="UTC", tax_region="FR"), T0)
    set_tax_rate(engine, tid, "FR", "20", False, T0)
    publish(engine, tid, "commit", [
        {"code": "calls", "kind": "usage", "meter": "api_calls",
         "price": {"model": "minimum_commitment", "minimum_amount": "5",
                   "price": {"model": "per_unit", "unit_amount": "0.01"}}},
        {"code": "tokens", "kind": "usage", "meter": "tokens", "price": {"model": "per_unit", "unit_amount": "0.001"}},
    ], invoice_limits={"minimum_commitment": "20"})  # fmt: skip
    create_subscription(engine, tid, "cus_fr", "commit", T0)
    write_events(engine, tid, [*calls(123, "cus_fr"), ("t1", "cus_fr", "tokens", T0, 123456, None)])  # 1234.56
    run_cycle(engine, tid, FEB)
    (inv,) = list_invoices(engine, tid)
    # calls: 1.23 + true-up 3.77 = 5; tokens: 1.23456 -> 1.23; invoice minimum 20: true-up 13.77; tax 20% = 4.00
    assert shape(inv) == [
        ("charge", "calls", 123), ("minimum_true_up", "calls", 377), ("charge", "tokens", 123),
        ("minimum_true_up", "invoice_minimum", 1377), ("tax", "tax", 400),
    ]  # fmt: skip
    assert (inv.subtotal, inv.tax, inv.total) == (2000, 400, 2400)
    tokens = inv.lines[2]
    assert tokens.amount_exact == "1.23456000" or Decimal(tokens.amount_exact) == Decimal("1.23456")
    check_totals(inv)


def test_inclusive_tax_keeps_total(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    create_customer(engine, tid, CustomerDefinition(external_id="cus_de", timezone="UTC", tax_region="DE"), T0)
    set_tax_rate(engine, tid, "DE", "19", True, T0)
    publish(engine, tid, "pro", [{"code": "base", "kind": "flat", "price": flat("119")}])
    create_subscription(engine, tid, "cus_de", "pro", T0)
    run_cycle(engine, tid, T0)
    (inv,) = list_invoices(engine, tid)
    assert (inv.subtotal, inv.tax, inv.total) == (11900, 1900, 11900)
    assert shape(inv) == [("charge", "base", 11900), ("tax", "tax", 0)]
    check_totals(inv)


def test_dimensional_usage_per_region(engine: Engine, tenant: TenantKey, customer: str) -> None:
    tid = tenant.tenant_id
    create_meter(engine, tid, MeterDefinition(code="gpu", aggregation=Aggregation.SUM, group_by=["region"]))
    publish(engine, tid, "gpu", [{"code": "gpu", "kind": "usage", "meter": "gpu", "group_by": "region", "price": {
        "model": "dimensional", "dimension": "region",
        "prices": {"eu": {"model": "per_unit", "unit_amount": "0.0004"}},
        "default": {"model": "graduated", "tiers": [{"up_to": "1000", "unit_amount": "0.001"},
                                                    {"up_to": None, "unit_amount": "0.0005"}]}}}])  # fmt: skip
    create_subscription(engine, tid, customer, "gpu", T0)
    write_events(engine, tid, [
        ("g1", customer, "gpu", T0 + timedelta(days=1), 30000, '{"region":"eu"}'),
        ("g2", customer, "gpu", T0 + timedelta(days=2), 5000, '{"region":"us"}'),
        ("g3", customer, "gpu", T0 + timedelta(days=3), 1000, '{"region":"us"}'),
    ])  # fmt: skip
    run_cycle(engine, tid, FEB)
    (inv,) = list_invoices(engine, tid)
    # eu: 30000 x 0.0004 = 12.00; us: 1000 x 0.001 + 5000 x 0.0005 = 3.50
    assert [(ln.group_key, ln.amount) for ln in inv.lines] == [('{"region":"eu"}', 1200), ('{"region":"us"}', 350)]
    assert all(ln.detail["rated_by"] == "kernel" for ln in inv.lines)
    assert inv.total == 1550


def test_outcome_and_sla_credit(engine: Engine, tenant: TenantKey, customer: str) -> None:
    tid = tenant.tenant_id
    create_meter(engine, tid, MeterDefinition(code="resolved", aggregation=Aggregation.COUNT))
    create_meter(engine, tid, MeterDefinition(code="uptime", aggregation=Aggregation.MIN, value_scale=2))
    publish(engine, tid, "ai", [
        {"code": "platform", "kind": "flat", "price": flat("100", billing="in_arrears")},
        {"code": "tickets", "kind": "usage", "meter": "resolved",
         "price": {"model": "outcome", "kind": "per_outcome", "unit_amount": "0.99"}},
        {"code": "sla", "kind": "usage", "meter": "uptime",
         "price": {"model": "sla_credit", "affected_fee": "100", "metric": "uptime_percent",
                   "tiers": [{"threshold": "99.9", "credit_percent": "10"},
                             {"threshold": "99", "credit_percent": "25"}]}},
    ])  # fmt: skip
    create_subscription(engine, tid, customer, "ai", T0)
    write_events(engine, tid, [
        *[(f"r{k}", customer, "resolved", T0 + timedelta(hours=k), 1, None) for k in range(42)],
        ("u1", customer, "uptime", T0 + timedelta(days=3), 9995, None),
        ("u2", customer, "uptime", T0 + timedelta(days=9), 9950, None),  # 99.50%: misses 99.9, meets 99
    ])  # fmt: skip
    run_cycle(engine, tid, FEB)
    (inv,) = list_invoices(engine, tid)
    assert shape(inv) == [("charge", "platform", 10000), ("charge", "tickets", 4158), ("sla_credit", "sla", -1000)]
    assert inv.lines[1].detail["rated_by"] == "reference" and inv.total == 13158


def test_credits_from_a_grant_agree_with_the_ledger(engine: Engine, tenant: TenantKey, customer: str) -> None:
    tid = tenant.tenant_id
    publish(engine, tid, "pro", [
        {"code": "base", "kind": "flat", "price": flat("30")},
        {"code": "calls", "kind": "usage", "meter": "api_calls", "price": {"model": "per_unit", "unit_amount": "0.01"}},
    ])  # fmt: skip
    create_subscription(engine, tid, customer, "pro", T0)
    ledger = Ledger(engine, tid)
    ledger.grant(Grant("welcome", customer, 4500, "USD", kind="promotional", effective_at_us=0))
    write_events(engine, tid, calls(250))
    summary = run_cycle(engine, tid, FEB)
    assert summary.credits == {"USD": 4500}
    invs = list_invoices(engine, tid)
    for inv in invs:
        check_totals(inv)
    applied = sum(i.credits_applied for i in invs)

    def moved(code: str) -> int:
        with engine.connect() as conn:
            return int(conn.execute(
                select(func.coalesce(func.sum(ledger_transfers.c.amount), 0)).where(
                    ledger_transfers.c.tenant_id == tid, ledger_transfers.c.code == code)
            ).scalar_one())  # fmt: skip

    # Drafts hold the credits (pending): the grant still holds them, but they are not available twice.
    assert applied == moved("invoice_hold") == 4500 and moved("invoice_post") == 0
    grant_account = ledger.balance(ledger.grants(customer)[0].account_id)
    assert (grant_account.balance, grant_account.debits_pending) == (4500, 4500)
    assert sum(i.total for i in invs) == 3000 + 250 + 3000 - 4500
    run_cycle(engine, tid, FEB + timedelta(hours=1))  # the re-run holds nothing more
    assert moved("invoice_hold") == 4500
    for inv in invs:
        finalize_invoice(engine, tid, inv.id or 0, FEB)
    assert moved("invoice_post") == 4500 and ledger.grants(customer)[0].remaining == 0
    assert sum(i.credits_applied for i in list_invoices(engine, tid)) == 4500


def _fingerprint(engine: Engine, tid: int) -> list[Any]:
    return sorted(
        (get_customer_by_id(engine, tid, i.customer_id).external_id, i.key.split(":", 2)[2], i.kind,
          i.subtotal, i.tax, i.credits_applied, i.total,
         tuple((ln.kind, ln.charge_code, ln.group_key, ln.quantity, ln.amount, ln.amount_exact) for ln in i.lines))
        for i in list_invoices(engine, tid)
    )  # fmt: skip


def _many(engine: Engine, tid: int, order_seed: int | None) -> None:
    publish(engine, tid, "pro", [
        {"code": "base", "kind": "flat", "price": flat("30")},
        {"code": "calls", "kind": "usage", "meter": "api_calls", "price": GRADUATED},
    ])  # fmt: skip
    rows = []
    for k in range(6):
        ext = f"c{k}"
        create_customer(engine, tid, CustomerDefinition(external_id=ext, timezone="UTC"), T0)
        create_subscription(engine, tid, ext, "pro", T0)
        rows += calls(900 + 150 * k, ext)
    if order_seed is not None:
        random.Random(order_seed).shuffle(rows)
    write_events(engine, tid, rows)


def test_event_order_does_not_change_invoices(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    _many(engine, tid, order_seed=7)
    run_cycle(engine, tid, FEB)
    shuffled = _fingerprint(engine, tid)
    other = make_other_tenant(engine)
    _many(engine, other, order_seed=None)
    run_cycle(engine, other, FEB)
    assert shuffled == _fingerprint(engine, other) and len(shuffled) == 6 * 2  # Jan 1 and Feb 1 per customer


def make_other_tenant(engine: Engine) -> int:
    from tests.conftest import make_tenant

    return make_tenant(engine, "other").tenant_id


def test_interrupted_run_then_rerun_equals_clean_run(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    _many(engine, tid, order_seed=None)
    with pytest.raises(InjectedFailure):
        run_cycle(engine, tid, FEB, batch_size=1, fail_after=5)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(invoices)).scalar_one() == 5
    resumed = run_cycle(engine, tid, FEB)
    assert resumed.created == 12 - 5 and resumed.completed
    other = make_other_tenant(engine)
    _many(engine, other, order_seed=None)
    run_cycle(engine, other, FEB)
    assert _fingerprint(engine, tid) == _fingerprint(engine, other)
    with engine.connect() as conn:
        n_lines = conn.execute(
            select(func.count()).select_from(invoice_lines.join(invoices)).where(invoices.c.tenant_id == tid)
        ).scalar_one()
    assert n_lines == 18  # every document once (2 per customer), with its 3 lines once


def test_points_priced_charge_is_paid_from_the_points_wallet(engine: Engine, tenant: TenantKey, customer: str) -> None:
    """500 points of usage, 300 in the wallet: the points pay $15 of the $25 line; the rest is owed in money."""
    tid = tenant.tenant_id
    ledger = Ledger(engine, tid)
    ledger.define_points_unit("pts", 0)
    ledger.top_up("buy-points", customer, 300, "pts")
    points_price = {"model": "points", "points_unit": "pts", "conversion_rate": "0.05", "currency": "USD",
                    "price": {"model": "per_unit", "unit_amount": "2"}}  # fmt: skip
    publish(engine, tid, "credits", [{"code": "calls", "kind": "usage", "meter": "api_calls", "price": points_price}])
    create_subscription(engine, tid, customer, "credits", T0)
    write_events(engine, tid, calls(250))
    run_cycle(engine, tid, FEB)
    (inv,) = list_invoices(engine, tid)
    assert shape(inv) == [("charge", "calls", 2500), ("points", "calls", -1500)]
    assert (inv.subtotal, inv.credits_applied, inv.total) == (2500, 1500, 1000)
    check_totals(inv)
    assert inv.lines[0].detail["points_charged"] == 500 and inv.lines[1].quantity == Decimal(300)
    held = ledger.balance(ledger.wallet(customer, "pts"))
    assert (held.balance, held.debits_pending) == (300, 300)  # held by the draft, posted when it is finalized
    finalize_invoice(engine, tid, inv.id or 0, FEB)
    assert ledger.balance(ledger.wallet(customer, "pts")).balance == 0
    pdf = PdfReader(io.BytesIO(render_document(invoice_document(engine, tid, inv.id or 0))))
    pdf_text = "".join(page.extract_text() for page in pdf.pages)
    assert "500 pts at 0.05 USD per point" in pdf_text and "300 pts paid 15.00 of calls" in pdf_text
    run_cycle(engine, tid, FEB + timedelta(hours=1))  # a re-run draws no more points
    assert ledger.balance(ledger.wallet(customer, "pts")).balance == 0
    assert [i.total for i in list_invoices(engine, tid)] == [1000]


def test_percentage_charges_rate_each_transaction(engine: Engine, tenant: TenantKey, customer: str) -> None:
    """A month of payments under a card-processing price: 2.9 % + 0.30 a transaction, at least 0.50 and
    at most 5.00 each, the first 2 free, only `card` payments counted (the meter's filter), and the
    dimensional variant per region. Rated as one transaction, the fixed fee, the bounds and the free
    allowance would each apply once; per transaction (hand-computed below) they apply to every event."""
    tid = tenant.tenant_id
    create_meter(engine, tid, MeterDefinition(code="payments", aggregation=Aggregation.SUM, value_scale=2,
                                              filter={"method": ["card"]}, group_by=["region"]))  # fmt: skip
    pct = {"model": "percentage", "rate": "2.9", "fixed_amount": "0.30", "per_transaction_min": "0.50",
           "per_transaction_max": "5.00", "free_units_per_events": 2}  # fmt: skip
    publish(engine, tid, "pay", [
        {"code": "fees", "kind": "usage", "meter": "payments", "price": pct},
        {"code": "by_region", "kind": "usage", "meter": "payments", "group_by": "region",
         "price": {"model": "dimensional", "dimension": "region", "prices": {"eu": pct},
                   "default": {**pct, "fixed_amount": "0", "free_units_per_events": 0}}},
    ])  # fmt: skip
    create_subscription(engine, tid, customer, "pay", T0)
    card_eu, card_us, cash = '{"method":"card","region":"eu"}', '{"method":"card","region":"us"}', '{"method":"cash"}'
    write_events(engine, tid, [  # (id, customer, meter, ts, cents, properties), written out of time order
        ("p3", customer, "payments", T0 + timedelta(days=3), 1000, card_eu),     # 10.00
        ("p1", customer, "payments", T0 + timedelta(days=1), 500, card_eu),      # 5.00   free (1st)
        ("p2", customer, "payments", T0 + timedelta(days=2), 20000, card_us),    # 200.00 free (2nd)
        ("p4", customer, "payments", T0 + timedelta(days=4), 50000, card_us),    # 500.00
        ("p5", customer, "payments", T0 + timedelta(days=5), 99900, cash),       # not counted
        ("p6", customer, "payments", T0 + timedelta(days=6), 300, card_eu),      # 3.00
    ])  # fmt: skip
    run_cycle(engine, tid, FEB)
    (inv,) = list_invoices(engine, tid)
    lines = {(ln.charge_code, ln.group_key): ln for ln in inv.lines}
    # fees, in time order p1 p2 p3 p4 p6: p1, p2 free; p3 0.29 + 0.30 = 0.59; p4 14.50 + 0.30 -> max 5.00;
    # p6 0.087 + 0.30 = 0.387 -> min 0.50. Total 6.09 (one transaction of 718.00 would give 5.00).
    assert lines[("fees", "")].amount == 609
    assert lines[("fees", "")].detail["transactions"] == 5
    # by region, each line its own allowance: eu p1, p3 free, p6 0.387 -> min 0.50; us (no fixed fee, none
    # free): p2 5.80 -> max 5.00, p4 14.50 -> max 5.00 = 10.00
    assert lines[("by_region", '{"region":"eu"}')].amount == 50
    assert lines[("by_region", '{"region":"us"}')].amount == 1000
    check_totals(inv)


def test_a_run_as_of_the_future_is_refused_and_writes_nothing(engine: Engine, tenant: TenantKey, customer: str) -> None:
    from invoicing.documents import AS_OF_SKEW
    from metering.errors import InvalidArgument

    tid = tenant.tenant_id
    publish(engine, tid, "pro", [{"code": "base", "kind": "flat", "price": flat("30")}])
    create_subscription(engine, tid, customer, "pro", T0)
    soon = datetime.now(UTC) + AS_OF_SKEW + timedelta(seconds=30)
    for as_of in (datetime(2030, 1, 1, tzinfo=UTC), soon):
        with pytest.raises(InvalidArgument, match="is in the future"):
            run_cycle(engine, tid, as_of)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(invoices)).scalar_one() == 0
    assert run_cycle(engine, tid, datetime.now(UTC) + AS_OF_SKEW / 2).created > 0  # within the skew: runs


def test_a_prorated_fee_line_reports_the_span_it_bills(engine: Engine, tenant: TenantKey, customer: str) -> None:
    tid = tenant.tenant_id
    publish(engine, tid, "pro", [{"code": "base", "kind": "flat", "price": flat("30")}])
    publish(engine, tid, "max", [{"code": "base", "kind": "flat", "price": flat("62")}])
    sub = create_subscription(engine, tid, customer, "pro", T0)
    upgraded = datetime(2026, 1, 15, 12, tzinfo=UTC)
    change_plan(engine, tid, sub.id, "max", upgraded)
    run_cycle(engine, tid, T0 + timedelta(days=20))
    on_max = next(ln for i in list_invoices(engine, tid) for ln in i.lines if ln.amount == 3400)  # 62 x 17/31
    assert (on_max.period_start, on_max.period_end) == (upgraded, FEB)  # what it pays for, not all January


def test_per_transaction_pricing_in_a_streamed_run(engine: Engine, tenant: TenantKey) -> None:
    """Batches of one customer over the same window: each batch loads its own customers' events."""
    tid = tenant.tenant_id
    create_meter(engine, tid, MeterDefinition(code="payments", aggregation=Aggregation.SUM, value_scale=2))
    publish(engine, tid, "pay", [{"code": "fees", "kind": "usage", "meter": "payments",
                                  "price": {"model": "percentage", "rate": "0", "fixed_amount": "0.30"}}])  # fmt: skip
    rows = []
    for k in range(3):
        ext = f"cus_s{k}"
        create_customer(engine, tid, CustomerDefinition(external_id=ext, timezone="UTC"), T0)
        create_subscription(engine, tid, ext, "pay", T0)
        rows += [(f"s{k}-{j}", ext, "payments", T0 + timedelta(days=1, hours=j), 100, None) for j in range(k + 1)]
    write_events(engine, tid, rows)
    summary = run_cycle(engine, tid, FEB, batch_size=1)
    assert (summary.failed, summary.created) == (0, 3)
    fees = sorted(ln.amount for i in list_invoices(engine, tid) for ln in i.lines)
    assert fees == [30, 60, 90]  # 0.30 per payment: 1, 2 and 3 payments


def test_coupons_are_their_own_lines_before_tax_for_their_periods(engine: Engine, tenant: TenantKey) -> None:
    """20 % off for 2 periods on the customer and $5 once on the subscription: discount lines come before
    tax (tax is on the discounted subtotal), each period counts once, a re-run discounts nothing twice."""
    from invoicing.catalog import CouponDefinition, apply_coupon, create_coupon

    tid = tenant.tenant_id
    create_customer(engine, tid, CustomerDefinition(external_id="cus_fr", timezone="UTC", tax_region="FR"), T0)
    set_tax_rate(engine, tid, "FR", "20", False, T0)
    publish(engine, tid, "pro", [{"code": "base", "kind": "flat", "price": flat("30")}])
    sub = create_subscription(engine, tid, "cus_fr", "pro", T0)
    create_coupon(engine, tid, CouponDefinition(code="spring", kind="percent", percent="20", duration="repeating",
                                                periods=2), T0)  # fmt: skip
    create_coupon(engine, tid, CouponDefinition(code="five", kind="amount", amount="5", currency="USD"), T0)
    apply_coupon(engine, tid, "spring", T0, customer="cus_fr", starts_at=T0)
    apply_coupon(engine, tid, "five", T0, subscription_id=sub.id, starts_at=T0)
    run_cycle(engine, tid, datetime(2026, 3, 1, tzinfo=UTC))
    run_cycle(engine, tid, datetime(2026, 3, 1, 1, tzinfo=UTC))  # a re-run adds nothing
    jan, feb, mar = sorted(list_invoices(engine, tid), key=lambda i: i.due_at)
    assert shape(jan) == [("charge", "base", 3000), ("discount", "spring", -600), ("discount", "five", -500),
                          ("tax", "tax", 380)]  # 20 % of (30 - 6 - 5) = 3.80  # fmt: skip
    assert (jan.subtotal, jan.tax, jan.total) == (1900, 380, 2280)
    assert shape(feb) == [("charge", "base", 3000), ("discount", "spring", -600), ("tax", "tax", 480)]
    assert shape(mar) == [("charge", "base", 3000), ("tax", "tax", 600)]  # two periods used: no more
    lineage = [ln.lineage for ln in jan.lines if ln.kind == "discount"]
    assert [x["coupon"] for x in lineage] == ["spring", "five"]
    for inv in (jan, feb, mar):
        check_totals(inv)
