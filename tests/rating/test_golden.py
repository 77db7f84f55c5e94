"""Golden tests: worked examples from public pricing documentation, and the kernels agree with them.

Each test names its source. Where a page only describes the rule, the expected figure is derived in
the docstring from the tiers as the page states them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pytest

import rating
from rating.table import PriceTable

STRIPE_TIERS = [
    {"up_to": "5", "unit_amount": "7"},
    {"up_to": "10", "unit_amount": "6.5"},
    {"up_to": None, "unit_amount": "6"},
]


def kernel_amount(price: dict[str, Any], quantity: str) -> Decimal:
    table = PriceTable.compile([price])
    q = int(Decimal(quantity).scaleb(table.quantity_scale))
    out = table.rate_pairs(np.zeros(1, np.int64), np.array([q], np.int64))
    return Decimal(int(out[0])).scaleb(-table.amount_scale)


def both(price: dict[str, Any], quantity: str) -> Decimal:
    """The reference amount, after checking the kernel gives the very same number."""
    ref = rating.quote(price, quantity).amount
    assert kernel_amount(price, quantity) == ref
    return ref


@pytest.mark.parametrize(("quantity", "expected"), [("1", "7"), ("5", "35"), ("6", "39"), ("20", "120"), ("25", "150")])
def test_stripe_volume_fonts(quantity: str, expected: str) -> None:
    """Stripe, "Set up tiered pricing", volume-based pricing table (Typographic fonts).

    https://docs.stripe.com/subscriptions/pricing-models/tiered-pricing — tiers 1-5 at 7 USD,
    6-10 at 6.5 USD, 11+ at 6 USD; the page lists totals 1→7, 5→35, 6→39, 20→120, 25→150.
    """
    assert both({"model": "volume", "tiers": STRIPE_TIERS}, quantity) == Decimal(expected)


@pytest.mark.parametrize(
    ("quantity", "expected"), [("1", "7"), ("5", "35"), ("6", "41.5"), ("20", "127.5"), ("25", "157.5")]
)
def test_stripe_graduated_fonts(quantity: str, expected: str) -> None:
    """Stripe, same page, graduated pricing with the same tiers: each tier prices its own units.

    6 fonts = 5 × 7 + 1 × 6.5 = 41.50; 20 = 35 + 5 × 6.5 + 10 × 6 = 127.50; 25 = 35 + 32.5 + 90 = 157.50.
    """
    assert both({"model": "graduated", "tiers": STRIPE_TIERS}, quantity) == Decimal(expected)


def test_zuplo_graduated_and_volume_15000_units() -> None:
    """Zuplo, "Pricing models": tiers 0-1,000 at $0.10, 1,001-10,000 at $0.05, 10,001+ at $0.01.

    https://zuplo.com/docs/articles/monetization/pricing-models — 15,000 units cost
    1,000 × 0.10 + 9,000 × 0.05 + 5,000 × 0.01 = $600 graduated, and 15,000 × 0.01 = $150 by volume.
    """
    tiers = [
        {"up_to": "1000", "unit_amount": "0.10"},
        {"up_to": "10000", "unit_amount": "0.05"},
        {"up_to": None, "unit_amount": "0.01"},
    ]
    assert both({"model": "graduated", "tiers": tiers}, "15000") == Decimal("600")
    assert both({"model": "volume", "tiers": tiers}, "15000") == Decimal("150")


def test_autumn_graduated_15000_requests() -> None:
    """Autumn, "Graduated pricing": first 1,000 at $0.01, next 9,000 at $0.008, above 10,000 at $0.005.

    https://docs.useautumn.com/documentation/modelling-pricing/graduated-pricing — 15,000 requests
    = 10 + 72 + 25 = $107.
    """
    tiers = [
        {"up_to": "1000", "unit_amount": "0.01"},
        {"up_to": "10000", "unit_amount": "0.008"},
        {"up_to": None, "unit_amount": "0.005"},
    ]
    assert both({"model": "graduated", "tiers": tiers}, "15000") == Decimal("107")


def test_lago_package_201_units() -> None:
    """Lago, charge models → Package: $5 per 100 units, first 100 units free.

    https://getlago.com/docs/guide/plans/charges/charge-models/package — 201 units cost
    $0 (first 100) + $5 (next 100) + $5 (the last, started package) = $10.
    """
    price = {"model": "package", "package_size": "100", "package_amount": "5", "free_units": "100"}
    assert both(price, "201") == Decimal("10")
    assert both(price, "100") == Decimal("0")
    assert both(price, "200") == Decimal("5")


def test_lago_standard_1000_calls() -> None:
    """Lago, charge models → Standard: $0.05 per API call, 1,000 calls = $50.

    https://getlago.com/docs/guide/plans/charges/charge-models/standard
    """
    assert both({"model": "per_unit", "unit_amount": "0.05"}, "1000") == Decimal("50")


def test_lago_graduated_percentage_three_transactions() -> None:
    """Lago, charge models → Graduated percentage: tiers 0-1,000 at 1% + $200 flat, 1,001-10,000 at 2%
    + $300 flat, 10,001+ at 3% + $400 flat.

    https://getlago.com/docs/guide/plans/charges/charge-models/graduated-percentage — transactions of
    $500, $550, $4,000 cost $205.00, $306.00 and $80.00: exactly our event-level marginal amounts.
    """
    price = {
        "model": "graduated_percentage",
        "tiers": [
            {"up_to": "1000", "rate": "1", "flat_amount": "200"},
            {"up_to": "10000", "rate": "2", "flat_amount": "300"},
            {"up_to": None, "rate": "3", "flat_amount": "400"},
        ],
    }
    q = rating.quote(price, "5050", events=["500", "550", "4000"])
    assert q.event_amounts == (Decimal("205"), Decimal("306"), Decimal("80"))
    assert q.amount == Decimal("591")


def test_lago_percentage_free_units() -> None:
    """Lago, charge models → Percentage: a rate on the amount, a fixed fee per event, free units.

    https://getlago.com/docs/guide/plans/charges/charge-models/percentage — "the first 3 events or $500
    are free". With 1% + $0.10 and transactions $200, $200, $200, $1,000: the allowance ends inside the
    third ($100 of it is free) so fees are 0, 0, 1% × 100 + 0.10 = 1.10, 1% × 1000 + 0.10 = 10.10.
    """
    price = {
        "model": "percentage",
        "rate": "1",
        "fixed_amount": "0.10",
        "free_units_per_events": 3,
        "free_units_per_total_aggregation": "500",
    }
    q = rating.quote(price, "1600", events=["200", "200", "200", "1000"])
    assert q.event_amounts == (Decimal(0), Decimal(0), Decimal("1.10"), Decimal("10.10"))
    assert q.amount == Decimal("11.20")
