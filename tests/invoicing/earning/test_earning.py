"""Points earned from usage: earning rules on plans, credited by `accrue_points` exactly once, on both databases.

The property test is the heart: whatever order events arrive in, however often they are resent and however
often (and when) the accrual runs in between, each customer's points wallet ends up holding exactly what the
rule gives for the events: per billing period min(cap, floor(Σ values × points_per_unit)) in the unit's steps.
"""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from invoicing.catalog import (
    CustomerDefinition,
    EarningRule,
    InvalidPlan,
    create_customer,
    create_plan,
    get_plan_version,
    new_draft,
    parse_plan,
    publish_plan,
)
from invoicing.earning import accrue_all, accrue_points, points_owed, transfer_id
from invoicing.events import read_events
from invoicing.ledger import InsufficientFunds, Ledger
from invoicing.ledger.account import find_account
from invoicing.ledger.journal import journal_legs, unit_totals
from invoicing.subscriptions import create_subscription, pause_subscription, resume_subscription
from invoicing.tables import points_accruals
from tests.conftest import TenantKey, make_tenant
from tests.invoicing.conftest import write_events

T0 = datetime(2026, 1, 1, tzinfo=UTC)
FEB = datetime(2026, 2, 1, tzinfo=UTC)
MAR = datetime(2026, 3, 1, tzinfo=UTC)
_names = itertools.count()


def rule(**kw: Any) -> dict[str, Any]:
    return {"code": "watch", "meter": "tokens", "unit": "pts", "points_per_unit": "0.5", **kw}


def viewer(engine: Engine, tenant_id: int, earning: list[dict[str, Any]], *, scale: int = 0, customer: str = "v1",
           trial_days: int = 0, define_unit: bool = True) -> int:  # fmt: skip
    """A customer on a published plan `viewer` with these earning rules (and no charges); the subscription id."""
    create_customer(engine, tenant_id, CustomerDefinition(external_id=customer, name=customer), T0)
    plan = {"code": "viewer", "currency": "USD", "trial_days": trial_days, "charges": [], "earning": earning}
    create_plan(engine, tenant_id, plan, T0)
    publish_plan(engine, tenant_id, "viewer", T0)
    if define_unit:
        Ledger(engine, tenant_id).define_points_unit("pts", scale)
    return create_subscription(engine, tenant_id, customer, "viewer", T0).id


def tokens(n: int, at: datetime, units: int, prefix: str = "e", customer: str = "v1") -> list[Any]:
    """`n` tokens events of `units` hundredths each (the meter's scale is 2), an hour apart from `at`."""
    return [(f"{prefix}{k}", customer, "tokens", at + timedelta(hours=k), units, None) for k in range(n)]


def points(engine: Engine, tenant_id: int, customer: str = "v1", unit: str = "pts") -> int:
    with engine.connect() as conn:
        wallet = find_account(conn, tenant_id, "points", unit, customer)
    return 0 if wallet is None else wallet.balance


# --- the pure rule ----------------------------------------------------------------------------------------------


def test_points_owed_rounds_down_to_the_units_step_and_caps() -> None:
    r = EarningRule.model_validate(rule(points_per_unit="0.3", cap_per_period="10.55"))
    assert points_owed(Decimal("7"), r, 0) == (2, False)  # 2.1 pts: the .1 waits for more usage
    assert points_owed(Decimal("7"), r, 1) == (21, False)
    assert points_owed(Decimal("100"), r, 1) == (105, True)  # cap 10.55 at scale 1 is 10.5
    assert points_owed(Decimal("100"), r, 2) == (1055, True)
    assert points_owed(Decimal("0"), r, 2) == (0, False)
    assert points_owed(Decimal("-5"), r, 2) == (0, False)
    huge = EarningRule.model_validate(rule(points_per_unit="9000000000000000000"))
    assert points_owed(Decimal("9000000000000000000"), huge, 12) == (2**63 - 1, True)  # never past int64


def test_transfer_ids_fit_the_ledger_for_the_longest_rule_code() -> None:
    tid = transfer_id(2**31 - 1, 2**31 - 1, "r" * 64, T0, 999_999)
    assert tid.startswith("~earn:") and len(tid.encode()) <= 128


# --- plans ------------------------------------------------------------------------------------------------------


def _problems(raw: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidPlan) as info:
        parse_plan(raw)
    return {p.field: p.message for p in info.value.problems}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"points_per_unit": "1e-3"}, "earning[0].points_per_unit"),  # plain notation only, as at ingest
        ({"points_per_unit": 0.5}, "earning[0].points_per_unit"),  # a float is not exact
        ({"points_per_unit": "0"}, "earning[0].points_per_unit"),
        ({"points_per_unit": "-1"}, "earning[0].points_per_unit"),
        ({"cap_per_period": "0"}, "earning[0].cap_per_period"),
        ({"cap_per_period": "2E+3"}, "earning[0].cap_per_period"),
        ({"unit": "USD"}, "earning[0].unit"),  # a currency is not a points unit
        ({"code": "Watch Ads"}, "earning[0].code"),
        ({"meter": ""}, "earning[0].meter"),
        ({"bonus": "1"}, "earning[0].bonus"),
    ],
)
def test_a_plan_file_refuses_bad_earning_rules_by_path(change: dict[str, Any], field: str) -> None:
    problems = _problems({"code": "viewer", "earning": [rule(**change)]})
    assert field in problems, problems


def test_rule_codes_are_unique_and_meters_must_exist_at_publish(engine: Engine, tenant: TenantKey) -> None:
    assert "earning[1].code" in _problems({"code": "viewer", "earning": [rule(), rule(meter="api_calls")]})
    create_plan(engine, tenant.tenant_id, {"code": "viewer", "earning": [rule(meter="impressions")]}, T0)
    with pytest.raises(InvalidPlan) as info:
        publish_plan(engine, tenant.tenant_id, "viewer", T0)
    assert info.value.fields == ["earning[0].meter"]


def test_rules_are_stored_exactly_and_carried_to_the_next_draft(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    create_plan(engine, tid, {"code": "viewer", "earning": [rule(points_per_unit="0.125", cap_per_period="1000")]}, T0)
    v1 = publish_plan(engine, tid, "viewer", T0)
    assert v1.earning[0].points_per_unit == Decimal("0.125") and v1.earning[0].cap_per_period == Decimal(1000)
    assert v1.definition().model_dump(mode="json")["earning"][0]["points_per_unit"] == "0.125"
    v2 = new_draft(engine, tid, "viewer", T0)
    assert v2.earning == v1.earning
    assert get_plan_version(engine, tid, "viewer", 1).earning == v1.earning


# --- accrual ----------------------------------------------------------------------------------------------------


def test_usage_earns_points_once_with_lineage(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    sub = viewer(engine, tid, [rule()], scale=1)
    write_events(engine, tid, tokens(3, T0, 150))  # 4.50 tokens x 0.5 = 2.25 pts -> 2.2 at scale 1
    run = accrue_points(engine, tid, T0 + timedelta(days=2))
    assert points(engine, tid) == 22
    (c,) = run.credits
    assert (c.customer, c.rule, c.quantity, c.points, c.earned) == ("v1", "watch", Decimal("4.50"), 22, 22)
    assert not c.capped
    assert c.transfer_id == f"~earn:s{sub}:v{c.plan_version_id}:watch:20260101T0000Z#1"
    again = accrue_points(engine, tid, T0 + timedelta(days=2))
    assert again.credits == () and again.checked == 1 and points(engine, tid) == 22

    ledger = Ledger(engine, tid)
    (line,) = ledger.history(ledger.wallet("v1", "pts"))
    assert (line.transfer.id, line.transfer.code, line.change) == (c.transfer_id, "earn", 22)
    assert "4.50 tokens x 0.5" in line.transfer.reference and "viewer v1" in line.transfer.reference
    legs = journal_legs(engine, tid, T0, datetime.now(UTC) + timedelta(days=1))
    assert {(g.account_kind, g.debit, g.credit) for g in legs} == {("points_issuance", 22, 0), ("points", 0, 22)}
    assert unit_totals(legs) == {"pts": (22, 22)}
    events, _ = read_events(engine, tid, 0, 100, ("points.earned",))
    (event,) = events
    assert event.customer == "v1" and event.data["points"] == "2.2" and event.data["transfer_id"] == c.transfer_id


def test_more_usage_and_late_events_credit_only_the_difference(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    sub = viewer(engine, tid, [rule()])
    write_events(engine, tid, tokens(2, T0 + timedelta(days=5), 300))  # 6 tokens -> 3 pts
    accrue_points(engine, tid, T0 + timedelta(days=10))
    write_events(engine, tid, tokens(2, T0 + timedelta(days=1), 300, prefix="late"))  # before the last run's as_of
    write_events(engine, tid, tokens(2, T0 + timedelta(days=5), 300))  # the same events again: duplicates
    run = accrue_points(engine, tid, T0 + timedelta(days=10))
    assert [(c.points, c.earned) for c in run.credits] == [(3, 6)] and points(engine, tid) == 6
    assert run.credits[0].transfer_id.endswith("#2") and f":s{sub}:" in run.credits[0].transfer_id
    with engine.connect() as conn:
        row = conn.execute(select(points_accruals)).one()
    assert (row.earned, row.transfers, row.quantity) == (6, 2, "12.00")


def test_usage_after_as_of_waits_for_a_later_run(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    viewer(engine, tid, [rule()])
    write_events(engine, tid, tokens(1, T0 + timedelta(days=3), 1000))
    assert accrue_points(engine, tid, T0 + timedelta(days=3)).credits == ()  # the quarter hour is not over
    assert [c.points for c in accrue_points(engine, tid, T0 + timedelta(days=3, minutes=15)).credits] == [5]


def test_the_cap_holds_per_billing_period(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    viewer(engine, tid, [rule(cap_per_period="10")])
    write_events(engine, tid, tokens(5, T0, 1000) + tokens(1, FEB, 600, prefix="feb"))  # Jan 25 pts, Feb 3 pts
    run = accrue_points(engine, tid, MAR)
    assert sorted((c.period_start, c.points, c.capped) for c in run.credits) == [(T0, 10, True), (FEB, 3, False)]
    write_events(engine, tid, tokens(5, T0 + timedelta(days=9), 1000, prefix="more"))
    assert accrue_points(engine, tid, MAR).credits == ()  # January is capped already
    assert points(engine, tid) == 13


def test_only_active_time_earns(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    sub = viewer(engine, tid, [rule()], trial_days=3)  # trial until Jan 4
    write_events(engine, tid, tokens(1, T0 + timedelta(days=1), 200, prefix="trial"))
    write_events(engine, tid, tokens(1, T0 + timedelta(days=5), 400, prefix="active"))
    pause_subscription(engine, tid, sub, T0 + timedelta(days=10))
    write_events(engine, tid, tokens(1, T0 + timedelta(days=12), 800, prefix="paused"))
    resume_subscription(engine, tid, sub, T0 + timedelta(days=20))
    write_events(engine, tid, tokens(1, T0 + timedelta(days=25), 1600, prefix="back"))
    run = accrue_points(engine, tid, FEB)
    assert [(c.quantity, c.points) for c in run.credits] == [(Decimal("20.00"), 10)]  # (4 + 16) x 0.5


def test_since_looks_only_at_periods_that_end_after_it(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    viewer(engine, tid, [rule()])
    write_events(engine, tid, tokens(1, T0, 200) + tokens(1, FEB, 400, prefix="feb"))
    run = accrue_points(engine, tid, MAR, since=FEB)
    assert [(c.period_start, c.points) for c in run.credits] == [(FEB, 2)] and run.checked == 1
    assert [(c.period_start, c.points) for c in accrue_points(engine, tid, MAR).credits] == [(T0, 1)]


def test_a_rule_whose_unit_is_not_defined_is_reported_and_credits_nothing(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    viewer(engine, tid, [rule(unit="gems"), rule(code="other", meter="api_calls")], define_unit=False)
    Ledger(engine, tid).define_points_unit("pts", 0)
    write_events(engine, tid, [*tokens(1, T0, 400), ("c1", "v1", "api_calls", T0, 1, None)])
    run = accrue_points(engine, tid, FEB)
    assert [c.rule for c in run.credits] == []  # 1 call x 0.5 = 0 whole points
    assert len(run.problems) == 1 and "'gems' is not defined" in run.problems[0] and "watch" in run.problems[0]
    assert points(engine, tid, unit="pts") == 0


def test_earned_points_are_spent_like_bought_ones(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    viewer(engine, tid, [rule()])
    write_events(engine, tid, tokens(1, T0, 2000))
    accrue_points(engine, tid, FEB)
    ledger = Ledger(engine, tid)
    ledger.top_up("bought", "v1", 5, "pts")
    spend = ledger.spend("s1", "v1", 12, "pts", "reward")
    assert sum(d.amount for d in spend.draws) == 12 and points(engine, tid) == 3
    with pytest.raises(InsufficientFunds):
        ledger.spend("s2", "v1", 4, "pts", "reward")


def test_accrue_all_covers_every_tenant_with_earning_rules(engine: Engine, tenant: TenantKey) -> None:
    other = make_tenant(engine, "globex")
    viewer(engine, tenant.tenant_id, [rule()])
    viewer(engine, other.tenant_id, [rule(points_per_unit="2")])
    write_events(engine, tenant.tenant_id, tokens(1, T0, 400))
    write_events(engine, other.tenant_id, tokens(1, T0, 400))
    runs = accrue_all(engine, FEB)
    assert sorted((r.tenant_id, [c.points for c in r.credits]) for r in runs) == [
        (tenant.tenant_id, [2]), (other.tenant_id, [8])
    ]  # fmt: skip
    assert points(engine, tenant.tenant_id) == 2 and points(engine, other.tenant_id) == 8


def test_concurrent_runs_credit_once(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    viewer(engine, tid, [rule()])
    write_events(engine, tid, tokens(4, T0, 1000))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            accrue_points(engine, tid, FEB)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and points(engine, tid) == 20


# --- the property -----------------------------------------------------------------------------------------------

EVENT = st.tuples(st.integers(0, 58 * 24 - 1), st.integers(0, 5000))  # (hour since Jan 1, hundredths of a token)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.lists(EVENT, min_size=1, max_size=25),
    rate=st.sampled_from(["0.5", "1", "0.125", "3", "0.0007"]),
    scale=st.integers(0, 2),
    cap=st.sampled_from([None, "5", "100.5", "1000"]),
    order=st.randoms(use_true_random=False),
    runs=st.lists(st.integers(0, 58 * 24), max_size=4),
    chunks=st.integers(1, 4),
)
def test_points_earned_equal_the_rule_applied_to_the_events(
    engine: Engine, values: list[tuple[int, int]], rate: str, scale: int, cap: str | None, order: Any,
    runs: list[int], chunks: int,
) -> None:  # fmt: skip
    tid = make_tenant(engine, f"p{next(_names)}").tenant_id  # hypothesis reuses the database between examples
    viewer(engine, tid, [rule(points_per_unit=rate, cap_per_period=cap)], scale=scale)
    rows = [(f"e{i}", "v1", "tokens", T0 + timedelta(hours=h), units, None) for i, (h, units) in enumerate(values)]
    sent = rows + order.sample(rows, k=len(rows) // 2)  # half of them resent
    order.shuffle(sent)
    size = -(-len(sent) // chunks)
    schedule = sorted(runs)
    for k in range(0, len(sent), size):  # send a chunk, then maybe run the accrual at some instant
        write_events(engine, tid, sent[k : k + size])
        if schedule:
            accrue_points(engine, tid, T0 + timedelta(hours=schedule.pop(0)))
    accrue_points(engine, tid, MAR)
    accrue_points(engine, tid, MAR)  # and once more: nothing new

    r = EarningRule.model_validate(rule(points_per_unit=rate, cap_per_period=cap))
    expected = 0
    for start, end in ((T0, FEB), (FEB, MAR)):
        quantity = sum((Decimal(u).scaleb(-2) for h, u in values if start <= T0 + timedelta(hours=h) < end), Decimal(0))
        expected += points_owed(quantity, r, scale)[0]
    assert points(engine, tid) == expected
    with engine.connect() as conn:
        rows_ = conn.execute(select(points_accruals.c.earned).where(points_accruals.c.tenant_id == tid)).scalars()
        assert sum(rows_) == expected  # the accrual rows agree with the ledger
