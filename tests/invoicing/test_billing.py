"""due_periods golden cases on both databases: in advance vs in arrears, trial, pause, cancel and change mid-period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

from sqlalchemy import Engine

from invoicing.catalog import CustomerDefinition, create_customer, get_plan_version, is_quarter_hour
from invoicing.subscriptions import (
    DueItem,
    cancel_subscription,
    change_plan,
    create_subscription,
    due_periods,
    get_history,
    pause_subscription,
    resume_subscription,
)
from tests.conftest import TenantKey
from tests.invoicing.conftest import plan_json, published


def d(month: int, day: int, hour: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def rows(items: list[DueItem]) -> list[tuple[str, datetime, datetime, list[tuple[datetime, datetime]]]]:
    return [(i.timing, i.due_at, i.period.start, [(s.start, s.end) for s in i.spans]) for i in items]


def test_in_advance_and_in_arrears(engine: Engine, tenant: TenantKey, customer: str) -> None:
    t = tenant.tenant_id
    pro = published(engine, t, "pro")
    sub = create_subscription(engine, t, customer, "pro", d(1, 1))
    items = due_periods(engine, t, d(3, 1))
    assert rows(items) == [
        ("in_advance", d(1, 1), d(1, 1), [(d(1, 1), d(2, 1))]),
        ("in_advance", d(2, 1), d(2, 1), [(d(2, 1), d(3, 1))]),
        ("in_arrears", d(2, 1), d(1, 1), [(d(1, 1), d(2, 1))]),
        ("in_advance", d(3, 1), d(3, 1), [(d(3, 1), d(4, 1))]),
        ("in_arrears", d(3, 1), d(2, 1), [(d(2, 1), d(3, 1))]),
    ]
    assert {(i.subscription_id, i.plan_version_id, i.customer_external_id) for i in items} == {(sub.id, pro, customer)}
    assert all(i.fraction("day") == 1 and i.fraction("second") == 1 for i in items)
    assert len({i.key for i in items}) == len(items)
    # One instant earlier, the March fee and the February usage are not due yet.
    assert len(due_periods(engine, t, d(3, 1) - timedelta(microseconds=1))) == 3
    # `since` keeps only items of periods ending after it.
    assert rows(due_periods(engine, t, d(3, 1), since=d(2, 15))) == [rows(items)[i] for i in (1, 3, 4)]


def test_trial_bills_nothing_and_anchors_at_trial_end(engine: Engine, tenant: TenantKey, customer: str) -> None:
    t = tenant.tenant_id
    published(engine, t, "trial", trial_days=14)
    create_subscription(engine, t, customer, "trial", d(1, 1))
    assert due_periods(engine, t, d(1, 14)) == []
    assert rows(due_periods(engine, t, d(2, 15))) == [
        ("in_advance", d(1, 15), d(1, 15), [(d(1, 15), d(2, 15))]),
        ("in_advance", d(2, 15), d(2, 15), [(d(2, 15), d(3, 15))]),
        ("in_arrears", d(2, 15), d(1, 15), [(d(1, 15), d(2, 15))]),
    ]


def test_cancel_mid_period_cuts_the_fee_and_bills_usage_at_once(
    engine: Engine, tenant: TenantKey, customer: str
) -> None:
    t = tenant.tenant_id
    published(engine, t, "pro")
    sub = create_subscription(engine, t, customer, "pro", d(1, 1))
    before = due_periods(engine, t, d(1, 10))
    cancel_subscription(engine, t, sub.id, d(1, 20))
    # As of a moment before the cancellation was effective, nothing changed.
    assert due_periods(engine, t, d(1, 10)) == before
    after = due_periods(engine, t, d(2, 10))
    assert rows(after) == [
        ("in_advance", d(1, 1), d(1, 1), [(d(1, 1), d(1, 20))]),
        ("in_arrears", d(1, 20), d(1, 1), [(d(1, 1), d(1, 20))]),
    ]
    # Same key as the fee billed before: the invoice run credits 1 - 19/31.
    assert after[0].key == before[0].key
    assert after[0].fraction("day") == Fraction(19, 31)


def test_change_mid_period_splits_the_period_between_versions(engine: Engine, tenant: TenantKey, customer: str) -> None:
    t = tenant.tenant_id
    pro = published(engine, t, "pro")
    other = published(engine, t, "other")
    sub = create_subscription(engine, t, customer, "pro", d(1, 1))
    cut = d(1, 15, 12)
    change_plan(engine, t, sub.id, "other", cut)
    items = due_periods(engine, t, d(2, 1))
    assert [(i.plan_version_id, *r) for i, r in zip(items, rows(items), strict=True)] == [
        (pro, "in_advance", d(1, 1), d(1, 1), [(d(1, 1), cut)]),
        (other, "in_advance", cut, d(1, 1), [(cut, d(2, 1))]),
        (other, "in_advance", d(2, 1), d(2, 1), [(d(2, 1), d(3, 1))]),
        (pro, "in_arrears", d(2, 1), d(1, 1), [(d(1, 1), cut)]),
        (other, "in_arrears", d(2, 1), d(1, 1), [(cut, d(2, 1))]),
    ]
    for by in ("day", "second"):
        assert items[0].fraction(by) + items[1].fraction(by) == 1  # type: ignore[arg-type]


def test_pause_and_resume_bill_only_active_time(engine: Engine, tenant: TenantKey, customer: str) -> None:
    t = tenant.tenant_id
    published(engine, t, "pro")
    sub = create_subscription(engine, t, customer, "pro", d(1, 1))
    pause_subscription(engine, t, sub.id, d(1, 10))
    resume_subscription(engine, t, sub.id, d(2, 20))
    assert rows(due_periods(engine, t, d(3, 1))) == [
        ("in_advance", d(1, 1), d(1, 1), [(d(1, 1), d(1, 10))]),
        ("in_arrears", d(2, 1), d(1, 1), [(d(1, 1), d(1, 10))]),
        ("in_advance", d(2, 20), d(2, 1), [(d(2, 20), d(3, 1))]),
        ("in_advance", d(3, 1), d(3, 1), [(d(3, 1), d(4, 1))]),
        ("in_arrears", d(3, 1), d(2, 1), [(d(2, 20), d(3, 1))]),
    ]


def test_scheduled_change_and_end_apply_virtually(engine: Engine, tenant: TenantKey, customer: str) -> None:
    t = tenant.tenant_id
    pro = published(engine, t, "pro")
    usage_only = published(engine, t, "usage", charges=[
        {"code": "calls", "kind": "usage", "meter": "api_calls", "price": {"model": "per_unit", "unit_amount": "1"}},
    ])  # fmt: skip
    sub = create_subscription(engine, t, customer, "pro", d(1, 1))
    change_plan(engine, t, sub.id, "usage", d(1, 10), timing="period_end")
    cancel_subscription(engine, t, sub.id, d(1, 11), timing="period_end")  # ends Feb 1 too
    history = get_history(engine, t, sub.id)
    items = due_periods(engine, t, d(4, 1))
    assert [(i.plan_version_id, *r) for i, r in zip(items, rows(items), strict=True)] == [
        (pro, "in_advance", d(1, 1), d(1, 1), [(d(1, 1), d(2, 1))]),
        (pro, "in_arrears", d(2, 1), d(1, 1), [(d(1, 1), d(2, 1))]),
    ]
    assert get_history(engine, t, sub.id) == history  # reading wrote nothing
    # Without the cancellation, February is billed on the usage-only plan: arrears only.
    sub2 = create_subscription(engine, t, customer, "pro", d(1, 1))
    change_plan(engine, t, sub2.id, "usage", d(1, 10), timing="period_end")
    items2 = due_periods(engine, t, d(3, 1), subscription_id=sub2.id)
    assert [(i.plan_version_id, i.timing, i.period.start) for i in items2] == [
        (pro, "in_advance", d(1, 1)),
        (pro, "in_arrears", d(1, 1)),
        (usage_only, "in_arrears", d(2, 1)),
    ]


def test_customer_time_zone_and_quarter_hour_spans(engine: Engine, tenant: TenantKey) -> None:
    t = tenant.tenant_id
    create_customer(engine, t, CustomerDefinition(external_id="paris", timezone="Europe/Paris"), d(1, 1))
    published(engine, t, "pro")
    start = datetime(2026, 3, 1, 0, 0, tzinfo=UTC) - timedelta(hours=1)  # local midnight, CET
    create_subscription(engine, t, "paris", "pro", start + timedelta(minutes=7))
    items = due_periods(engine, t, d(4, 1))
    march = [i for i in items if i.timing == "in_arrears"]
    assert [(i.period.start, i.period.end) for i in march] == [(start, datetime(2026, 3, 31, 22, tzinfo=UTC))]
    assert all(is_quarter_hour(s.start) and is_quarter_hour(s.end) for i in items for s in i.spans)


def test_plan_version_lookup_for_the_invoice_run(engine: Engine, tenant: TenantKey, customer: str) -> None:
    t = tenant.tenant_id
    published(engine, t, "pro", charges=plan_json("x")["charges"])
    create_subscription(engine, t, customer, "pro", d(1, 1))
    [item] = due_periods(engine, t, d(1, 1))
    assert get_plan_version(engine, t, "pro").id == item.plan_version_id
