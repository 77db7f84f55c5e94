"""Alerts: usage and spend fire once per billing period, balance fires once per fall and re-arms."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine, select

from invoicing.catalog import CustomerDefinition, create_customer, get_customer
from invoicing.documents import preview_invoice
from invoicing.events import head, read_events
from invoicing.insight import create_alert, current_period, delete_alert, evaluate_alerts, list_alerts
from invoicing.ledger import Ledger
from invoicing.platform_tables import alert_crossings, alerts
from invoicing.subscriptions import create_subscription
from metering.errors import InvalidArgument, NotFound
from tests.conftest import TenantKey, make_tenant
from tests.invoicing.conftest import T0, published, write_events
from tests.invoicing.test_invoice_run import FEB, calls


def events(engine: Engine, tenant_id: int) -> list[tuple[str, dict[str, object]]]:
    """The alert events in the outbox (other code emits subscription events there too)."""
    found, _ = read_events(engine, tenant_id, 0, 1000, ALERT_TYPES)
    return [(e.type, e.data) for e in found]


ALERT_TYPES = ["usage.threshold_crossed", "spend.threshold_crossed", "wallet.balance_low"]


@pytest.fixture
def subscribed(engine: Engine, tenant: TenantKey, customer: str) -> str:
    """cus_1 on "pro" (monthly, $30 in advance + $0.01 per call), anchored on 2026-01-01."""
    published(engine, tenant.tenant_id, "pro")
    create_subscription(engine, tenant.tenant_id, customer, "pro", T0)
    return customer


def test_usage_crossing_fires_once_per_period(engine: Engine, tenant: TenantKey, subscribed: str) -> None:
    tid = tenant.tenant_id
    alert = create_alert(engine, tid, subscribed, "usage", "100", T0, meter="api_calls")
    write_events(engine, tid, calls(99))
    assert evaluate_alerts(engine, T0 + timedelta(days=3)) == []
    write_events(engine, tid, calls(2, start=T0 + timedelta(days=1), prefix="more"))
    (fired,) = evaluate_alerts(engine, T0 + timedelta(days=3))
    assert (fired.alert.id, fired.value, fired.sequence) == (alert.id, Decimal(101), head(engine, tid))
    assert events(engine, tid) == [
        ("usage.threshold_crossed", {
            "alert_id": alert.id, "meter": "api_calls", "threshold": "100", "value": "101",
            "period_start": "2026-01-01T00:00:00+00:00", "period_end": "2026-02-01T00:00:00+00:00",
        }),
    ]  # fmt: skip
    # Not again in the same period, however much more is used.
    write_events(engine, tid, calls(50, start=T0 + timedelta(days=2), prefix="x"))
    assert evaluate_alerts(engine, T0 + timedelta(days=20)) == []
    # The next period starts from zero: nothing until it crosses again.
    assert evaluate_alerts(engine, FEB + timedelta(days=1)) == []
    write_events(engine, tid, calls(100, start=FEB + timedelta(hours=1), prefix="feb"))
    (again,) = evaluate_alerts(engine, FEB + timedelta(days=2))
    assert (again.value, again.period.start if again.period else None) == (Decimal(100), FEB)
    with engine.connect() as conn:
        rows = conn.execute(select(alert_crossings.c.sequence, alert_crossings.c.value)).all()
    assert sorted((r.sequence, r.value) for r in rows) == [(fired.sequence, "101"), (again.sequence, "100")]


def test_without_a_subscription_the_period_is_the_calendar_month_in_the_customers_zone(
    engine: Engine, tenant: TenantKey
) -> None:
    create_customer(engine, tenant.tenant_id, CustomerDefinition(external_id="c_tokyo", timezone="Asia/Tokyo"), T0)
    cust = get_customer(engine, tenant.tenant_id, "c_tokyo")
    # 2026-01-31T16:00Z is already February 1st in Tokyo (UTC+9).
    period = current_period(engine, tenant.tenant_id, cust, datetime(2026, 1, 31, 16, tzinfo=UTC))
    assert (period.start, period.end) == (datetime(2026, 1, 31, 15, tzinfo=UTC), datetime(2026, 2, 28, 15, tzinfo=UTC))


def test_spend_crossing_uses_the_upcoming_invoices_total(engine: Engine, tenant: TenantKey, subscribed: str) -> None:
    tid = tenant.tenant_id
    alert = create_alert(engine, tid, subscribed, "spend", "65", T0)
    at = T0 + timedelta(days=14)
    write_events(engine, tid, calls(250))
    upcoming = sum(inv.money(inv.total) for inv in preview_invoice(engine, tid, subscribed, at))
    assert upcoming == Decimal("62.50")  # $30 this period + $30 next period in advance + 250 × $0.01
    assert evaluate_alerts(engine, at) == []
    write_events(engine, tid, calls(300, start=T0 + timedelta(days=2), prefix="more"))
    (fired,) = evaluate_alerts(engine, at)
    assert fired.value == Decimal("65.50")
    ((kind, data),) = events(engine, tid)
    assert kind == "spend.threshold_crossed"
    assert (data["alert_id"], data["value"], data["threshold"], data["currency"]) == (alert.id, "65.50", "65", "USD")
    assert evaluate_alerts(engine, at + timedelta(days=1)) == []


def test_balance_alert_fires_rearms_and_fires_again(engine: Engine, tenant: TenantKey, customer: str) -> None:
    tid = tenant.tenant_id
    led = Ledger(engine, tid)
    led.top_up("t1", customer, led.amount("100", "USD"), "USD")
    alert = create_alert(engine, tid, customer, "balance", "50", T0, unit="USD")
    assert evaluate_alerts(engine, T0) == []
    led.spend("s1", customer, led.amount("60", "USD"), "USD", "calls")
    (low,) = evaluate_alerts(engine, T0)
    assert (low.value, low.period) == (Decimal("40.00"), None)
    assert evaluate_alerts(engine, T0 + timedelta(hours=1)) == []  # still low: once per fall
    led.top_up("t2", customer, led.amount("10", "USD"), "USD")  # 50.00: back at the threshold re-arms
    assert evaluate_alerts(engine, T0 + timedelta(hours=2)) == []
    led.spend("s2", customer, led.amount("20", "USD"), "USD", "calls")
    (again,) = evaluate_alerts(engine, T0 + timedelta(hours=3))
    assert again.value == Decimal("30.00")
    assert [(t, d["value"], d["unit"], d["alert_id"]) for t, d in events(engine, tid)] == [
        ("wallet.balance_low", "40.00", "USD", alert.id),
        ("wallet.balance_low", "30.00", "USD", alert.id),
    ]


def test_two_evaluators_at_once_fire_one_event(engine: Engine, tenant: TenantKey, subscribed: str) -> None:
    tid = tenant.tenant_id
    for k in range(3):
        create_alert(engine, tid, subscribed, "usage", str(10 + k), T0, meter="api_calls")
    write_events(engine, tid, calls(20))
    errors: list[BaseException] = []

    def evaluate() -> None:
        try:
            evaluate_alerts(engine, T0 + timedelta(days=1))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=evaluate) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(d["threshold"] for _, d in events(engine, tid)) == ["10", "11", "12"]  # type: ignore[type-var]


INVALID: list[tuple[str, str, dict[str, str], type[Exception], str]] = [
    ("usage", "100", {"meter": "nope"}, NotFound, "alert.meter: no meter 'nope'"),
    ("usage", "100", {}, InvalidArgument, "alert.meter is required"),
    ("usage", "lots", {"meter": "api_calls"}, InvalidArgument, "alert.threshold: 'lots' is not a decimal"),
    ("usage", "1e3", {"meter": "api_calls"}, InvalidArgument, "alert.threshold: '1e3' is not a decimal"),
    ("usage", "-5", {"meter": "api_calls"}, InvalidArgument, "alert.threshold must be positive"),
    ("usage", "", {"meter": "api_calls"}, InvalidArgument, "alert.threshold is required"),
    ("weather", "1", {}, InvalidArgument, "alert.kind: 'weather' is not one of usage, spend, balance"),
    ("spend", "1", {"unit": "USD"}, InvalidArgument, "alert.unit is only for balance alerts"),
    ("balance", "1", {}, InvalidArgument, "alert.unit is required"),
    ("balance", "1", {"unit": "gems"}, InvalidArgument, "alert.unit: unknown unit 'gems'"),
    ("balance", "1", {"unit": "USD", "meter": "api_calls"}, InvalidArgument, "alert.meter is only for usage"),
]  # fmt: skip


def test_invalid_alerts_are_refused_and_write_nothing(engine: Engine, tenant: TenantKey, customer: str) -> None:
    for kind, threshold, extra, error, fragment in INVALID:
        with pytest.raises(error, match=re.escape(fragment)):
            create_alert(engine, tenant.tenant_id, customer, kind, threshold, T0, **extra)
    with engine.connect() as conn:
        assert conn.execute(select(alerts)).all() == []


def test_list_and_delete_are_tenant_scoped(engine: Engine, tenant: TenantKey, subscribed: str) -> None:
    tid = tenant.tenant_id
    other = make_tenant(engine, "globex")
    a = create_alert(engine, tid, subscribed, "usage", "1", T0, meter="api_calls")
    b = create_alert(engine, tid, subscribed, "spend", "12.5", T0)
    assert [(x.id, x.kind, x.threshold) for x in list_alerts(engine, tid)] == [
        (a.id, "usage", Decimal(1)), (b.id, "spend", Decimal("12.5")),
    ]  # fmt: skip
    assert list_alerts(engine, other.tenant_id) == []
    with pytest.raises(NotFound, match=f"no alert {a.id}"):
        delete_alert(engine, other.tenant_id, a.id)
    write_events(engine, tid, calls(1))
    assert len(evaluate_alerts(engine, T0 + timedelta(days=1))) == 2
    delete_alert(engine, tid, a.id)  # its crossing goes with it
    assert [x.id for x in list_alerts(engine, tid, subscribed)] == [b.id]
    with engine.connect() as conn:
        assert [r.alert_id for r in conn.execute(select(alert_crossings.c.alert_id))] == [b.id]
    with pytest.raises(NotFound, match="no customer 'ghost'"):
        list_alerts(engine, tid, "ghost")
    with pytest.raises(NotFound, match="no customer 'ghost'"):
        create_alert(engine, tid, "ghost", "spend", "1", T0)
