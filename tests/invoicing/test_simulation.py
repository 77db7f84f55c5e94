"""Price simulation over real history (`invoicing.insight.simulate_plan`).

The simulated amounts are checked against the invoice run itself: the same customers, subscriptions and
events in a second tenant whose plan IS the candidate, billed by `run_cycle`. A property test shows that
simulating the current plan (given as an unsaved plan file) changes nobody's amount.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from invoicing.catalog import CustomerDefinition, create_customer, create_plan, edit_plan, publish_plan
from invoicing.documents import list_invoices, run_cycle
from invoicing.insight import bucket_labels, simulate_plan
from invoicing.subscriptions import create_subscription
from metering.errors import InvalidArgument, NotFound
from tests.conftest import TenantKey, make_tenant
from tests.invoicing.conftest import NOT_RATED, T0, flat, write_events

FEB = datetime(2026, 2, 1, tzinfo=UTC)
MAR = datetime(2026, 3, 1, tzinfo=UTC)
APR = datetime(2026, 4, 1, tzinfo=UTC)

CURRENT: dict[str, Any] = {
    "code": "pro", "currency": "USD",
    "charges": [
        {"code": "base", "kind": "flat", "price": flat("30")},
        {"code": "calls", "kind": "usage", "meter": "api_calls",
         "price": {"model": "per_unit", "unit_amount": "0.01", "currency": "USD"}},
    ],
}  # fmt: skip
CANDIDATE: dict[str, Any] = {
    "code": "pro", "currency": "USD",
    "charges": [
        {"code": "base", "kind": "flat", "price": flat("20")},
        {"code": "calls", "kind": "usage", "meter": "api_calls", "price": {"model": "graduated", "currency": "USD",
         "tiers": [{"up_to": "10", "unit_amount": "0"}, {"up_to": None, "unit_amount": "0.2"}]}},
        {"code": "tokens", "kind": "usage", "meter": "tokens",
         "price": {"model": "per_unit", "unit_amount": "0.5", "currency": "USD"}},
    ],
}  # fmt: skip


def _world(engine: Engine, t: TenantKey, plan: dict[str, Any]) -> None:
    """Three customers on `plan`, billed by calendar month (cus_1 from January 11th), each with its own usage."""
    tid = t.tenant_id
    create_plan(engine, tid, plan, T0)
    publish_plan(engine, tid, plan["code"], T0)
    for i, start in enumerate((T0, T0 + timedelta(days=10), T0)):
        cus = f"cus_{i}"
        create_customer(engine, tid, CustomerDefinition(external_id=cus, name=cus, timezone="UTC"), T0)
        create_subscription(engine, tid, cus, plan["code"], start, anchor=T0)
    rows = []
    for i, n in enumerate((3, 100, 0)):
        for k in range(n):
            rows.append((f"c{i}-{k}", f"cus_{i}", "api_calls", T0 + timedelta(days=11, hours=k), 1, None))
    rows += [("t0", "cus_0", "tokens", T0 + timedelta(days=12), 450, None)]  # 4.50 tokens
    rows += [("stray", "cus_1", "api_calls", T0 + timedelta(days=2), 1, None)]  # before cus_1's subscription
    write_events(engine, tid, rows)


def _billed(engine: Engine, tenant_id: int, end: datetime) -> dict[str, int]:
    """What the invoice run billed per customer for service before `end` (rated lines only)."""
    out: dict[str, int] = {}
    for inv in list_invoices(engine, tenant_id, limit=1000):
        for line in inv.lines:
            if line.kind not in NOT_RATED and line.period_start < end:
                out[inv.customer_external_id] = out.get(inv.customer_external_id, 0) + line.amount
    return out


def test_simulated_is_what_the_invoice_run_bills_under_the_candidate(engine: Engine) -> None:
    acme, shadow = make_tenant(engine, "acme"), make_tenant(engine, "shadow")
    _world(engine, acme, CURRENT)
    _world(engine, shadow, CANDIDATE)
    sim = simulate_plan(engine, acme.tenant_id, CANDIDATE, T0, FEB)
    run_cycle(engine, acme.tenant_id, FEB)
    run_cycle(engine, shadow.tenant_id, FEB)
    current, simulated = _billed(engine, acme.tenant_id, FEB), _billed(engine, shadow.tenant_id, FEB)
    assert {c.customer: c.current_minor for c in sim.customers} == current
    assert {c.customer: c.simulated_minor for c in sim.customers} == simulated
    # and by hand: cus_1 started on the 11th (21/31 of the fees); its stray event before that is not billed
    by = {c.customer: c for c in sim.customers}
    assert by["cus_1"].current == Decimal("20.32") + Decimal("1.00")  # 30 × 21/31 = 20.32, 100 calls × 0.01
    assert by["cus_1"].simulated == Decimal("13.55") + Decimal("18.00")  # 20 × 21/31, 90 calls over 10 × 0.2
    assert by["cus_0"].simulated == Decimal("20") + Decimal("2.25")  # 3 free calls, 4.50 tokens × 0.5
    assert sim.candidate == "pro (unsaved)" and sim.currency == "USD"
    (total,) = sim.plans
    assert (total.plan, total.customers) == ("pro v1", 3)
    assert total.current == sum(c.current for c in sim.customers)
    assert sim.difference == sum(c.difference for c in sim.customers)


def test_a_stored_version_is_a_candidate_and_the_window_is_cut_at_its_edges(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    _world(engine, tenant, CURRENT)
    edit_plan(engine, tid, CANDIDATE, T0)  # draft v2 of "pro": a draft is a fine candidate
    tail = simulate_plan(engine, tid, "pro@2", T0 + timedelta(days=20), FEB, threshold_pct=Decimal(0))
    assert tail.candidate == "pro v2"
    # January 21st to February 1st: 11/31 of each fee, and every event fell before it
    assert {(c.customer, c.current, c.simulated) for c in tail.customers} == {
        (f"cus_{i}", Decimal("10.65"), Decimal("7.10")) for i in range(3)
    }
    assert tail.more_than == ()


def test_distribution_and_more_than(engine: Engine, tenant: TenantKey) -> None:
    _world(engine, tenant, CURRENT)
    sim = simulate_plan(engine, tenant.tenant_id, CANDIDATE, T0, FEB, threshold_pct=Decimal(0))
    counts = {b.label: b.customers for b in sim.distribution}
    assert [b.label for b in sim.distribution] == bucket_labels()
    assert sum(counts.values()) == len(sim.customers) == 3
    for c in sim.customers:
        pct = c.pct
        assert pct is not None
        assert pct == (c.difference * 100 / c.current).quantize(Decimal("0.01"))
    assert counts["-50% to -20%"] == 2  # cus_0: 22.25 vs 30.03 (-25.91 %), cus_2: 20 vs 30 (-33.33 %)
    assert counts["20% to 50%"] == 1  # cus_1: 31.55 vs 21.32 (+47.98 %)
    assert {c.customer: c.pct for c in sim.customers} == {
        "cus_0": Decimal("-25.91"),
        "cus_1": Decimal("47.98"),
        "cus_2": Decimal("-33.33"),
    }
    assert [c.customer for c in sim.more_than] == ["cus_1"]
    none = simulate_plan(engine, tenant.tenant_id, CANDIDATE, T0, FEB, threshold_pct=Decimal(48))
    assert none.more_than == ()


def test_plan_code_limits_the_customers(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    _world(engine, tenant, CURRENT)
    create_plan(engine, tid, {**CURRENT, "code": "basic"}, T0)
    publish_plan(engine, tid, "basic", T0)
    create_customer(engine, tid, CustomerDefinition(external_id="cus_b", name="B", timezone="UTC"), T0)
    create_subscription(engine, tid, "cus_b", "basic", T0)
    every = simulate_plan(engine, tid, CANDIDATE, T0, FEB)
    assert sorted(p.plan for p in every.plans) == ["basic v1", "pro v1"]
    only = simulate_plan(engine, tid, CANDIDATE, T0, FEB, plan_code="basic")
    assert [c.customer for c in only.customers] == ["cus_b"]
    with pytest.raises(NotFound, match="no plan 'nope'"):
        simulate_plan(engine, tid, CANDIDATE, T0, FEB, plan_code="nope")


@pytest.mark.parametrize(
    ("candidate", "start", "end", "message"),
    [
        (CANDIDATE, T0, T0 + timedelta(days=400), "at most 366 days"),
        (CANDIDATE, FEB, T0, "must be after"),
        (CANDIDATE, T0 + timedelta(minutes=7), FEB, "15-minute boundary"),
        ({**CANDIDATE, "currency": "EUR", "charges": []}, T0, FEB, "prices in EUR"),
        ({**CANDIDATE, "charges": [{"code": "x", "kind": "usage", "meter": "gpu",
          "price": {"model": "per_unit", "unit_amount": "1", "currency": "USD"}}]}, T0, FEB, "no meter 'gpu'"),
        ("pro", T0, FEB, "neither CODE@VERSION"),
        ('{"code": "pro", "charges": "x"}', T0, FEB, "invalid plan"),
    ],
)  # fmt: skip
def test_bad_requests_name_the_problem(
    engine: Engine, tenant: TenantKey, candidate: Any, start: datetime, end: datetime, message: str
) -> None:
    _world(engine, tenant, CURRENT)
    with pytest.raises(InvalidArgument, match=message):
        simulate_plan(engine, tenant.tenant_id, candidate, start, end)


def test_unknown_version_is_not_found(engine: Engine, tenant: TenantKey) -> None:
    _world(engine, tenant, CURRENT)
    with pytest.raises(NotFound):
        simulate_plan(engine, tenant.tenant_id, "pro@9", T0, FEB)


PRICES = st.sampled_from(
    [
        {"model": "per_unit", "unit_amount": "0.013", "currency": "USD"},
        {"model": "package", "package_size": "4", "package_amount": "1.5", "currency": "USD"},
        {"model": "graduated", "currency": "USD",
         "tiers": [{"up_to": "3", "unit_amount": "0.5"}, {"up_to": None, "unit_amount": "0.125"}]},
        {"model": "volume", "currency": "USD",
         "tiers": [{"up_to": "5", "unit_amount": "0.7"}, {"up_to": None, "unit_amount": "0.3"}]},
        {"model": "percentage", "rate": "2.5", "fixed_amount": "0.1", "currency": "USD"},
    ]
)  # fmt: skip


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    price=PRICES,
    fee=st.sampled_from(["in_advance", "in_arrears"]),
    starts=st.lists(st.integers(0, 80 * 24 * 4), min_size=1, max_size=3),
    events=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 90 * 24 - 1), st.integers(1, 500)), max_size=20),
    window=st.tuples(st.integers(0, 60), st.integers(1, 90)),
)
def test_simulating_the_current_plan_changes_nothing(
    engine: Engine,
    price: dict[str, Any],
    fee: str,
    starts: list[int],
    events: list[tuple[int, int, int]],
    window: tuple[int, int],
) -> None:
    t = make_tenant(engine, f"t{uuid.uuid4().hex[:10]}")
    tid = t.tenant_id
    plan = {
        "code": "p", "currency": "USD",
        "charges": [
            {"code": "fee", "kind": "flat", "price": flat("9.99", billing=fee)},
            {"code": "use", "kind": "usage", "meter": "tokens", "price": price},
        ],
    }  # fmt: skip
    create_plan(engine, tid, plan, T0)
    publish_plan(engine, tid, "p", T0)
    for i, q in enumerate(starts):
        create_customer(engine, tid, CustomerDefinition(external_id=f"c{i}", name="c", timezone="UTC"), T0)
        create_subscription(engine, tid, f"c{i}", "p", T0 + timedelta(minutes=15 * q))
    rows = [(f"e{k}", f"c{c % len(starts)}", "tokens", T0 + timedelta(hours=h), v, None) for k, (c, h, v) in
            enumerate(events)]  # fmt: skip
    if rows:
        write_events(engine, tid, rows)
    start = T0 + timedelta(days=window[0])
    sim = simulate_plan(engine, tid, plan, start, start + timedelta(days=window[1]), threshold_pct=Decimal(0))
    assert all(c.difference_minor == 0 for c in sim.customers)
    assert sim.more_than == ()
    assert all(b.customers == 0 for b in sim.distribution if b.label != "unchanged" and b.label != "no current amount")
    assert sim.current == sim.simulated


def test_no_customers_is_an_empty_simulation(engine: Engine, tenant: TenantKey) -> None:
    create_plan(engine, tenant.tenant_id, CURRENT, T0)
    sim = simulate_plan(engine, tenant.tenant_id, CANDIDATE, MAR, APR)
    assert sim.customers == () and sim.plans == () and sim.current == 0
