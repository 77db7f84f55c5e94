"""Properties of the reference-only models: exact sums, clamps, and simulation against the references."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import rating
from rating import RoundingMode, parse_price
from tests.rating.strategies import fixed, kernel_price

FAST = settings(max_examples=100, deadline=None)


@st.composite
def percentage_price(draw: st.DrawFn) -> dict[str, Any]:
    price: dict[str, Any] = {"model": "percentage", "rate": str(draw(fixed(10000, 2)))}
    if draw(st.booleans()):
        price["fixed_amount"] = str(draw(fixed(1000, 2)))
    if draw(st.booleans()):
        price["free_units_per_events"] = draw(st.integers(0, 5))
    if draw(st.booleans()):
        price["free_units_per_total_aggregation"] = str(draw(fixed(100000, 2)))
    lo = draw(st.none() | fixed(500, 2))
    hi = draw(st.none() | fixed(5000, 2))
    if lo is not None:
        price["per_transaction_min"] = str(lo)
    if hi is not None and (lo is None or hi >= lo):
        price["per_transaction_max"] = str(hi)
    return price


@FAST
@given(percentage_price(), st.lists(fixed(10**7, 2), max_size=15))
def test_percentage_fees_sum_and_respect_clamps(price: dict[str, Any], events: list[Decimal]) -> None:
    total = sum(events, Decimal(0))
    q = rating.quote(price, total, events=events)
    assert q.event_amounts is not None
    assert sum(q.event_amounts, Decimal(0)) == q.amount
    assert sum((ln.amount for ln in q.lines), Decimal(0)) == q.amount
    hi = price.get("per_transaction_max")
    for fee in q.event_amounts:
        assert fee >= 0
        if hi is not None:
            assert fee <= Decimal(hi)


@st.composite
def graduated_percentage_price(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 5))
    bounds = sorted(draw(st.lists(st.integers(0, 10**6), min_size=n - 1, max_size=n - 1, unique=True)))
    tiers = [
        {
            "up_to": None if i == n - 1 else str(bounds[i]),
            "rate": str(draw(fixed(10000, 2))),
            "flat_amount": str(draw(fixed(10000, 2))),
        }
        for i in range(n)
    ]
    return {"model": "graduated_percentage", "tiers": tiers}


@FAST
@given(graduated_percentage_price(), st.lists(fixed(10**6, 2), min_size=1, max_size=15))
def test_graduated_percentage_marginals_sum_to_total(price: dict[str, Any], events: list[Decimal]) -> None:
    total = sum(events, Decimal(0))
    q = rating.quote(price, total, events=events)
    assert q.event_amounts is not None
    assert sum(q.event_amounts, Decimal(0)) == q.amount
    assert q.amount == sum((ln.amount for ln in q.lines), Decimal(0))


@FAST
@given(kernel_price(), st.lists(fixed(10**6, 2), min_size=1, max_size=15))
def test_reference_marginals_sum_to_total(price: dict[str, Any], events: list[Decimal]) -> None:
    total = sum(events, Decimal(0))
    q = rating.quote(price, total, events=events)
    assert q.event_amounts is not None
    assert sum(q.event_amounts, Decimal(0)) == q.amount


@FAST
@given(
    st.lists(kernel_price(), min_size=2, max_size=2),
    st.lists(kernel_price(), min_size=2, max_size=2),
    st.lists(st.tuples(st.integers(0, 5), st.integers(0, 1), st.integers(0, 2 * 10**6)), min_size=1, max_size=30),
)
def test_simulation_equals_reference_rounded_per_line(
    current: list[dict[str, Any]], candidate: list[dict[str, Any]], rows: list[tuple[int, int, int]]
) -> None:
    customer = np.array([r[0] for r in rows], np.int64)
    charge = np.array([r[1] for r in rows], np.int64)
    qty = np.array([r[2] for r in rows], np.int64)
    report = rating.simulate(customer, charge, qty, 2, current, candidate, n_customers=6)
    for plan, minor in ((current, report.old_minor), (candidate, report.new_minor)):
        prices = [parse_price(p) for p in plan]
        expected = [Decimal(0)] * 6
        for cust, ch, q in rows:
            amount = prices[ch].quote(Decimal(q).scaleb(-2)).rounded(RoundingMode.HALF_EVEN).amount
            expected[cust] += amount
        assert [Decimal(int(m)).scaleb(-2) for m in minor] == expected
    assert report.total_difference == report.total_new - report.total_old
