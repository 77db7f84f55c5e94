"""`event_totals` and `range_totals`: counted events per (customer, meter) from the rollups, exactly."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine

from metering.errors import InvalidArgument
from metering.meter import MeterDefinition, create_meter
from metering.usage import EventTotal, event_totals, range_totals
from tests.conftest import TenantKey
from tests.metering.test_usage_bounds import utc, write

JAN, FEB = utc(2026, 1, 1), utc(2026, 2, 1)


def test_totals_per_customer_and_meter_and_per_range(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    create_meter(engine, tid, MeterDefinition(code="paid", value_scale=1, filter={"tier": ["paid"]}))
    rows = [
        ("a1", "a", "tokens", JAN + timedelta(days=1), 150, None),  # 1.50
        ("a2", "a", "tokens", JAN + timedelta(days=20), 275, None),  # 2.75
        ("a3", "a", "api_calls", JAN + timedelta(days=3), 1, None),
        ("b1", "b", "tokens", JAN + timedelta(days=2), 5, None),
        ("b2", "b", "paid", JAN + timedelta(days=2), 7, {"tier": "free"}),  # outside the filter: not counted
        ("b3", "b", "paid", JAN + timedelta(days=2), 9, {"tier": "paid"}),
        ("late", "a", "tokens", FEB + timedelta(hours=1), 100, None),  # after the window
    ]
    write(engine, tid, rows)
    assert event_totals(engine, tid, JAN, FEB) == [
        EventTotal("a", "api_calls", 1, Decimal(1)),
        EventTotal("a", "tokens", 2, Decimal("4.25")),
        EventTotal("b", "paid", 1, Decimal("0.9")),
        EventTotal("b", "tokens", 1, Decimal("0.05")),
    ]
    mid = JAN + timedelta(days=10)
    got = range_totals(engine, tid, [("a", "tokens", JAN, mid), ("a", "tokens", mid, FEB), ("z", "tokens", JAN, FEB)])
    assert [(t.customer, t.meter, t.events, t.value_sum) for t in got] == [
        ("a", "tokens", 1, Decimal("1.50")),
        ("a", "tokens", 1, Decimal("2.75")),
        ("z", "tokens", 0, Decimal(0)),  # nothing there: a zero row, in its place
    ]
    many = [("a", "tokens", JAN + timedelta(hours=h), JAN + timedelta(hours=h + 1)) for h in range(400)]
    assert sum(t.events for t in range_totals(engine, tid, many)) == 1  # several statements, nothing lost


def test_ranges_off_the_grid_are_refused(engine: Engine, tenant: TenantKey) -> None:
    with pytest.raises(InvalidArgument):
        event_totals(engine, tenant.tenant_id, JAN + timedelta(minutes=5), FEB)
    with pytest.raises(InvalidArgument):
        range_totals(engine, tenant.tenant_id, [("a", "tokens", FEB, JAN)])
