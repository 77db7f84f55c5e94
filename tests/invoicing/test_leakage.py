"""Revenue leakage (`invoicing.insight.leakage_report`) and the tenant-wide `leakage` alert."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine

from invoicing.catalog import CustomerDefinition, create_customer, create_plan, publish_plan
from invoicing.documents import list_invoices, run_cycle
from invoicing.events import read_events
from invoicing.insight import CATEGORIES, create_alert, evaluate_alerts, leakage_report, list_alerts
from invoicing.subscriptions import cancel_subscription, create_subscription
from metering.errors import InvalidArgument
from metering.meter import Aggregation, MeterDefinition, create_meter
from tests.conftest import TenantKey
from tests.invoicing.conftest import T0, plan_json, write_events

FEB = datetime(2026, 2, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def _plan(engine: Engine, tid: int, code: str, meter: str, **kwargs: object) -> None:
    charge = {"code": meter, "kind": "usage", "meter": meter,
              "price": {"model": "per_unit", "unit_amount": "0.01", "currency": "USD"}}  # fmt: skip
    create_plan(engine, tid, plan_json(code, charges=[charge], **kwargs), T0)  # type: ignore[arg-type]
    publish_plan(engine, tid, code, T0)


def _world(engine: Engine, tenant: TenantKey) -> None:
    """One event source per category, plus billed usage and usage in a trial (neither is leakage)."""
    tid = tenant.tenant_id
    create_meter(engine, tid, MeterDefinition(code="gpu", aggregation=Aggregation.MAX))  # no plan prices it
    _plan(engine, tid, "pro", "api_calls")
    _plan(engine, tid, "tok", "tokens")  # prices tokens, but nobody is on it
    _plan(engine, tid, "trial", "api_calls", trial_days=60)
    for cus in ("cus_sub", "cus_none", "cus_trial"):
        create_customer(engine, tid, CustomerDefinition(external_id=cus, name=cus, timezone="UTC"), T0)
    sub = create_subscription(engine, tid, "cus_sub", "pro", T0 + 10 * DAY, anchor=T0)
    cancel_subscription(engine, tid, sub.id, T0 + 20 * DAY)
    create_subscription(engine, tid, "cus_trial", "trial", T0)
    rows = [
        *[(f"g{k}", "ghost", "api_calls", T0 + DAY + k * timedelta(hours=1), 1, None) for k in range(3)],
        *[(f"early{k}", "cus_sub", "api_calls", T0 + 5 * DAY, 1, None) for k in range(2)],
        *[(f"billed{k}", "cus_sub", "api_calls", T0 + 15 * DAY, 1, None) for k in range(4)],
        *[(f"late{k}", "cus_sub", "api_calls", T0 + 25 * DAY, 1, None) for k in range(6)],
        ("tok1", "cus_sub", "tokens", T0 + 15 * DAY, 150, None),
        ("tok2", "cus_sub", "tokens", T0 + 16 * DAY, 225, None),
        *[(f"none{k}", "cus_none", "api_calls", T0 + 3 * DAY, 1, None) for k in range(5)],
        ("gpu1", "cus_sub", "gpu", T0 + 15 * DAY, 7, None),
        *[(f"trial{k}", "cus_trial", "api_calls", T0 + 2 * DAY, 1, None) for k in range(8)],
    ]
    write_events(engine, tid, rows)


def test_each_category_is_found_and_billed_usage_is_not(engine: Engine, tenant: TenantKey) -> None:
    _world(engine, tenant)
    report = leakage_report(engine, tenant.tenant_id, T0, FEB)
    got = [(r.category, r.customer, r.meter, r.events, r.quantity) for r in report.rows]
    assert got == [
        ("unknown_customer", "ghost", "api_calls", 3, Decimal(3)),
        ("unpriced_meter", "cus_sub", "gpu", 1, None),  # a max meter: no summed quantity
        ("no_subscription", "cus_sub", "api_calls", 8, Decimal(8)),  # 2 before it started, 6 after it ended
        ("no_subscription", "cus_none", "api_calls", 5, Decimal(5)),
        ("not_in_plan", "cus_sub", "tokens", 2, Decimal("3.75")),
    ]
    assert [c.category for c in report.categories] == list(CATEGORIES)
    assert {c.category: (c.events, c.customers, c.meters) for c in report.categories} == {
        "unknown_customer": (3, 1, ("api_calls",)),
        "unpriced_meter": (1, 1, ("gpu",)),
        "no_subscription": (13, 2, ("api_calls",)),
        "not_in_plan": (2, 1, ("tokens",)),
    }
    assert report.events == 19
    assert report.counted_events == 19 + 4 + 8  # the billed calls and the trial's calls are counted, not leaked
    # The 4 calls not reported are exactly what the invoice run bills.
    run_cycle(engine, tenant.tenant_id, FEB)
    calls = [
        line.quantity
        for inv in list_invoices(engine, tenant.tenant_id, customer="cus_sub")
        for line in inv.lines
        if line.meter == "api_calls"
    ]
    assert calls == [Decimal(4)]


def test_a_narrower_window_sees_only_its_events(engine: Engine, tenant: TenantKey) -> None:
    _world(engine, tenant)
    report = leakage_report(engine, tenant.tenant_id, T0 + 10 * DAY, T0 + 20 * DAY)
    assert [(r.category, r.customer, r.meter, r.events) for r in report.rows] == [
        ("unpriced_meter", "cus_sub", "gpu", 1),
        ("not_in_plan", "cus_sub", "tokens", 2),
    ]


def test_nothing_leaks_in_a_tidy_tenant(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    _plan(engine, tid, "pro", "api_calls")
    create_customer(engine, tid, CustomerDefinition(external_id="c", name="c", timezone="UTC"), T0)
    create_subscription(engine, tid, "c", "pro", T0)
    write_events(engine, tid, [(f"e{k}", "c", "api_calls", T0 + k * DAY, 1, None) for k in range(5)])
    report = leakage_report(engine, tid, T0, FEB)
    assert report.rows == () and report.events == 0 and report.counted_events == 5


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (T0, T0 + 400 * DAY, "at most 366 days"),
        (FEB, T0, "must be after"),
        (T0 + timedelta(seconds=1), FEB, "15-minute"),
    ],
)
def test_bad_windows_are_refused(
    engine: Engine, tenant: TenantKey, start: datetime, end: datetime, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        leakage_report(engine, tenant.tenant_id, start, end)


# --- the alert -------------------------------------------------------------------------------------------------
def test_a_leakage_alert_fires_once_a_month_when_unbilled_events_reach_it(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    _world(engine, tenant)
    low = create_alert(engine, tid, "", "leakage", "19", T0)
    high = create_alert(engine, tid, "", "leakage", "20", T0)
    assert (low.customer, low.kind) == ("", "leakage")
    assert {a.id for a in list_alerts(engine, tid)} >= {low.id, high.id}
    fired = evaluate_alerts(engine, FEB - timedelta(minutes=1), tid)
    assert [(c.alert.id, c.value) for c in fired] == [(low.id, Decimal(19))]
    assert evaluate_alerts(engine, FEB - timedelta(seconds=1), tid) == []  # once per month
    events, _ = read_events(engine, tid, 0, 100, ["usage.unbilled"])
    (event,) = events
    assert event.customer == ""
    assert event.data["categories"] == {"unknown_customer": 3, "unpriced_meter": 1, "no_subscription": 13,
                                        "not_in_plan": 2}  # fmt: skip
    assert (event.data["threshold"], event.data["value"]) == ("19", "19")
    assert event.data["period_start"] == T0.isoformat() and event.data["period_end"] == FEB.isoformat()
    assert json.dumps(event.data)  # plain JSON for webhooks


def test_a_leakage_alert_is_tenant_wide(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    create_customer(engine, tid, CustomerDefinition(external_id="c", name="c", timezone="UTC"), T0)
    with pytest.raises(InvalidArgument, match="leave customer empty"):
        create_alert(engine, tid, "c", "leakage", "5", T0)
    with pytest.raises(InvalidArgument, match="customer is required"):
        create_alert(engine, tid, "", "usage", "5", T0, meter="api_calls")
    with pytest.raises(InvalidArgument, match="meter is only for usage"):
        create_alert(engine, tid, "", "leakage", "5", T0, meter="api_calls")
    quiet = create_alert(engine, tid, "", "leakage", "1", T0)
    assert evaluate_alerts(engine, FEB - timedelta(minutes=1), tid) == []  # nothing unbilled in January
    assert quiet.id in {a.id for a in list_alerts(engine, tid)}
