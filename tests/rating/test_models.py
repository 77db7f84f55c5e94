"""Behaviour of each price model family through `rating.quote`, with hand-worked figures."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

import rating
from rating import InvoiceLimits, RoundingMode, apply_invoice_limits, parse_price
from rating.errors import InvalidQuantityError, UnknownDimensionError
from rating.flat import FlatPrice
from rating.points_price import PointsPrice

D = Decimal
TIERS = [
    {"up_to": "10", "unit_amount": "1", "flat_amount": "5"},
    {"up_to": "20", "unit_amount": "0.5", "flat_amount": "3"},
    {"up_to": None, "unit_amount": "0.1"},
]


def test_graduated_flat_fee_at_zero_and_fractional_boundaries() -> None:
    """0 lies in tier 1, so its flat fee is charged; 10.5 lies in tier 2, entering it charges its flat fee."""
    g = {"model": "graduated", "tiers": TIERS}
    assert rating.quote(g, "0").amount == D(5)
    assert rating.quote(g, "10").amount == D(15)
    assert rating.quote(g, "10.5").amount == D("18.25")  # 10 + 5 + 0.5×0.5 + 3
    v = {"model": "volume", "tiers": TIERS}
    assert rating.quote(v, "0").amount == D(5)
    assert rating.quote(v, "10").amount == D(15)
    assert rating.quote(v, "10.5").amount == D("8.25")  # 10.5 × 0.5 + 3


def test_breakdown_explains_the_amount() -> None:
    q = rating.quote({"model": "graduated", "tiers": TIERS}, "25")
    assert [(ln.lower, ln.upper, ln.units, ln.unit_amount, ln.flat_amount) for ln in q.lines] == [
        (D(0), D(10), D(10), D(1), D(5)),
        (D(10), D(20), D(10), D("0.5"), D(3)),
        (D(20), None, D(5), D("0.1"), D(0)),
    ]
    assert sum(ln.amount for ln in q.lines) == q.amount == D("23.5")


def test_package_each_started_package_in_full() -> None:
    p = {"model": "package", "package_size": "2.5", "package_amount": "1.10"}
    assert [rating.quote(p, x).amount for x in ("0", "0.01", "2.5", "2.51")] == [D(0), D("1.10"), D("1.10"), D("2.20")]


def test_percentage_min_max_and_fixed_fee() -> None:
    p = {
        "model": "percentage",
        "rate": "2.9",
        "fixed_amount": "0.30",
        "per_transaction_min": "0.50",
        "per_transaction_max": "10",
    }
    q = rating.quote(p, "1005", events=["5", "1000"])
    # 5 × 2.9% + 0.30 = 0.445 → raised to 0.50; 1000 × 2.9% + 0.30 = 29.30 → capped at 10
    assert q.event_amounts == (D("0.50"), D("10"))
    assert q.amount == D("10.50")
    assert sum(ln.amount for ln in q.lines) == q.amount
    assert rating.quote({"model": "percentage", "rate": "1.5"}, "200").amount == D(3)


def test_percentage_free_events_only() -> None:
    p = {"model": "percentage", "rate": "10", "fixed_amount": "1", "free_units_per_events": 1}
    assert rating.quote(p, "300", events=["100", "200"]).event_amounts == (D(0), D(21))


def test_events_must_agree_with_quantity() -> None:
    with pytest.raises(InvalidQuantityError, match="sum to"):
        rating.quote({"model": "per_unit", "unit_amount": "1"}, "3", events=["1", "1"])
    with pytest.raises(InvalidQuantityError, match="zero or more"):
        rating.quote({"model": "per_unit", "unit_amount": "1"}, "-1")
    with pytest.raises(InvalidQuantityError, match="float"):
        rating.quote({"model": "per_unit", "unit_amount": "1"}, 1.5)


def test_flat_fee_prorated_by_day_and_second() -> None:
    price = parse_price({"model": "flat", "amount_per_period": "31.00", "proration": "day"})
    assert isinstance(price, FlatPrice)
    start, end = dt.datetime(2026, 1, 1), dt.datetime(2026, 2, 1)
    q = price.prorate(start, end, dt.datetime(2026, 1, 22), dt.datetime(2026, 3, 1))
    assert q.amount == D("10.00")  # 10 of 31 days
    third = parse_price({"model": "flat", "amount_per_period": "100", "proration": "second", "rounding": "down"})
    assert isinstance(third, FlatPrice)
    q = third.prorate(start, start + dt.timedelta(seconds=3), start + dt.timedelta(seconds=2), end)
    assert q.amount == D("33.33")  # 1/3 of 100, rounded down once
    assert third.billed_on(start, end) == start
    assert rating.quote({"model": "flat", "amount_per_period": "49", "billing": "in_arrears"}, "3").amount == D(147)


def test_minimum_commitment_true_up_and_charge_cap() -> None:
    inner = {"model": "per_unit", "unit_amount": "2"}
    mc = {"model": "minimum_commitment", "price": inner, "minimum_amount": "100", "cap_amount": "150"}
    low = rating.quote(mc, "10")
    assert low.amount == D(100)
    assert low.lines[-1].label.startswith("true-up") and low.lines[-1].amount == D(80)
    assert rating.quote(mc, "60").amount == D(120)
    high = rating.quote(mc, "100", events=["50", "30", "20"])
    assert high.amount == D(150)
    assert high.event_amounts == (D(100), D(50), D(0))  # spend stops at the cap
    assert sum(ln.amount for ln in high.lines) == D(150)


def test_invoice_minimum_and_cap() -> None:
    totals = apply_invoice_limits(["10.00", "5.50"], InvoiceLimits(minimum_commitment=D(50)))
    assert (totals.subtotal, totals.true_up, totals.total) == (D("15.50"), D("34.50"), D(50))
    capped = apply_invoice_limits(["70", "50"], InvoiceLimits(cap_amount=D(100)))
    assert (capped.cap_adjustment, capped.total) == (D(-20), D(100))


def test_points_price_wallet_and_conversion() -> None:
    pp = parse_price(
        {
            "model": "points",
            "points_unit": "credits",
            "points_scale": 0,
            "conversion_rate": "0.01",
            "price": {"model": "per_unit", "unit_amount": "2.5"},
        }
    )
    assert isinstance(pp, PointsPrice)
    q = rating.quote(pp, "3")
    assert (q.amount, q.unit.code) == (D("7.5"), "credits")
    assert q.money_equivalent == rating.Money.of("0.075", "USD")
    draw = pp.spend(balance="5", cost=q.amount)
    assert draw.charged.amount == D(8)  # rounded up to whole credits, once
    assert (draw.paid.amount, draw.remaining.amount, draw.shortfall.amount) == (D(5), D(0), D(3))
    assert draw.shortfall_money == rating.Money.of("0.03", "USD")


def test_outcome_per_resolved_ticket() -> None:
    assert rating.quote({"model": "outcome", "kind": "per_outcome", "unit_amount": "0.99"}, "120").amount == D("118.80")


@pytest.mark.parametrize(("measured", "expected"), [("900", "50"), ("1000", "50"), ("2000", "100"), ("100000", "1000")])
def test_outcome_value_share_with_floor_and_cap(measured: str, expected: str) -> None:
    price = {
        "model": "outcome",
        "kind": "value_share",
        "rate": "10",
        "baseline": "1000",
        "floor_amount": "50",
        "cap_amount": "1000",
    }
    assert rating.quote(price, measured).amount == D(expected)


def test_outcome_kpi_contingent() -> None:
    up: dict[str, Any] = {
        "model": "outcome",
        "kind": "kpi_contingent",
        "kpi_tiers": [{"threshold": "80", "fee": "1000"}, {"threshold": "90", "fee": "2500"}],
    }
    assert [rating.quote(up, k).amount for k in ("79.9", "80", "95")] == [D(0), D(1000), D(2500)]
    down = {
        **up,
        "direction": "lower_is_better",
        "kpi_tiers": [{"threshold": "500", "fee": "10"}, {"threshold": "200", "fee": "20"}],
    }
    assert [rating.quote(down, k).amount for k in ("600", "300", "150")] == [D(0), D(10), D(20)]


def test_sla_credit_uptime_and_latency() -> None:
    uptime = {
        "model": "sla_credit",
        "affected_fee": "1000",
        "cap_percent": "30",
        "tiers": [
            {"threshold": "99.9", "credit_percent": "10"},
            {"threshold": "99.0", "credit_percent": "25"},
            {"threshold": "95", "credit_percent": "50"},
        ],
    }
    assert [rating.quote(uptime, m).amount for m in ("99.95", "99.5", "98", "90")] == [D(0), D(-100), D(-250), D(-300)]
    latency = {
        "model": "sla_credit",
        "metric": "p99_latency_ms",
        "direction": "lower_is_better",
        "affected_fee": "200",
        "tiers": [{"threshold": "300", "credit_percent": "5"}, {"threshold": "1000", "credit_percent": "20"}],
    }
    assert [rating.quote(latency, m).amount for m in ("300", "301", "1001")] == [D(0), D(-10), D(-40)]


def test_dimensional_prices() -> None:
    price = {
        "model": "dimensional",
        "dimension": "model",
        "prices": {
            "small": {"model": "per_unit", "unit_amount": "0.0001"},
            "large": {
                "model": "graduated",
                "tiers": [{"up_to": "1000", "unit_amount": "0.01"}, {"up_to": None, "unit_amount": "0.005"}],
            },
        },
    }
    assert rating.quote(price, "5000", dimension="small").amount == D("0.5")
    assert rating.quote(price, "5000", dimension="large").amount == D(30)
    with pytest.raises(UnknownDimensionError, match="known values: large, small"):
        rating.quote(price, "1", dimension="medium")
    both = parse_price(price).quote_by_dimension({"small": D(5000), "large": D(5000)})  # type: ignore[union-attr]
    assert both.amount == D("30.5")
    fallback = {**price, "default": {"model": "per_unit", "unit_amount": "1"}}
    assert rating.quote(fallback, "2", dimension="medium").amount == D(2)


def test_quote_rounds_once_on_request() -> None:
    q = rating.quote({"model": "per_unit", "unit_amount": "0.0125"}, "10")
    assert q.amount == D("0.1250")
    assert q.rounded().amount == D("0.12")
    assert q.rounded(RoundingMode.HALF_UP).amount == D("0.13")
    assert q.to_json()["amount"] == "0.1250"
