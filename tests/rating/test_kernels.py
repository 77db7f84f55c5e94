"""The numba kernels equal the Decimal references to the last digit, or refuse; they never wrap."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rating import RoundingMode, parse_price
from rating.errors import InvalidPriceError, InvalidQuantityError, RatingOverflowError, UnknownDimensionError
from rating.fixedpoint import INT64_MAX, to_scaled
from rating.registry import KERNEL_REFERENCES
from rating.rounding import round_decimal
from rating.table import PriceTable
from tests.rating.strategies import kernel_price

FAST = settings(max_examples=150, deadline=None)


def reference(price: dict[str, Any], q: int, qs: int) -> Decimal:
    p = parse_price(price)
    _code, ref = KERNEL_REFERENCES[p.model]
    return ref(p, Decimal(q).scaleb(-qs))  # type: ignore[arg-type]


@FAST
@given(
    st.lists(kernel_price(), min_size=1, max_size=5),
    st.lists(st.tuples(st.integers(0, 4), st.integers(0, 3 * 10**6)), min_size=1, max_size=40),
)
def test_pairs_kernel_equals_reference(prices: list[dict[str, Any]], pairs: list[tuple[int, int]]) -> None:
    table = PriceTable.compile(prices, quantity_scale=2)
    charge = np.array([c % len(prices) for c, _ in pairs], np.int64)
    qty = np.array([q for _, q in pairs], np.int64)
    out = table.rate_pairs(charge, qty)
    for c, q, amount in zip(charge, qty, out, strict=True):
        assert Decimal(int(amount)).scaleb(-table.amount_scale) == reference(prices[c], int(q), 2)


@FAST
@given(kernel_price(), st.lists(st.integers(0, 10**6), min_size=1, max_size=30))
def test_event_amounts_sum_to_rating_the_total(price: dict[str, Any], events: list[int]) -> None:
    """Marginal event rating in the kernel equals the reference's marginals, and sums to the total."""
    table = PriceTable.compile([price], quantity_scale=2)
    qty = np.array(events, np.int64)
    out = table.rate_events(np.zeros(1, np.int64), np.array([0, len(events)], np.int64), qty)
    total = table.rate_pairs(np.zeros(1, np.int64), np.array([sum(events)], np.int64))
    assert int(out.sum()) == int(total[0])
    p = parse_price(price)
    ref = p.event_amounts([Decimal(e).scaleb(-2) for e in events])  # type: ignore[union-attr]
    assert [Decimal(int(x)).scaleb(-table.amount_scale) for x in out] == list(ref)


def test_event_streams_are_independent() -> None:
    grad = {
        "model": "graduated",
        "tiers": [
            {"up_to": "2", "unit_amount": "1", "flat_amount": "5"},
            {"up_to": None, "unit_amount": "3", "flat_amount": "7"},
        ],
    }
    table = PriceTable.compile([grad, {"model": "per_unit", "unit_amount": "2"}])
    out = table.rate_events(
        np.array([0, 1, 0], np.int64), np.array([0, 2, 3, 5], np.int64), np.array([1, 2, 4, 0, 3], np.int64)
    )
    # stream 0: C(1)=6, C(3)=5+2+7+3=17 → 6, 11; stream 1: 8; stream 2: C(0)=5, C(3)=17 → 5, 12
    assert out.tolist() == [6, 11, 8, 5, 12]


def test_volume_marginal_can_be_negative() -> None:
    """Crossing into a cheaper volume tier re-prices earlier units, so that event's marginal is negative."""
    vol = {"model": "volume", "tiers": [{"up_to": "5", "unit_amount": "7"}, {"up_to": None, "unit_amount": "1"}]}
    table = PriceTable.compile([vol])
    out = table.rate_events(np.zeros(1, np.int64), np.array([0, 2], np.int64), np.array([5, 1], np.int64))
    assert out.tolist() == [35, -29]


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10**12), st.integers(0, 18), st.integers(0, 6))
def test_extreme_per_unit_overflows_exactly_when_it_would_wrap(price_units: int, q_exp: int, ps: int) -> None:
    price = {"model": "per_unit", "unit_amount": str(Decimal(price_units).scaleb(-ps))}
    table = PriceTable.compile([price])
    q = min(10**q_exp + 12345, INT64_MAX)
    true_amount = q * to_scaled(Decimal(price["unit_amount"]), table.price_scale)
    if true_amount > INT64_MAX:
        with pytest.raises(RatingOverflowError, match="int64"):
            table.rate_pairs(np.zeros(1, np.int64), np.array([q], np.int64))
    else:
        out = table.rate_pairs(np.zeros(1, np.int64), np.array([q], np.int64))
        assert int(out[0]) == true_amount


@settings(max_examples=100, deadline=None)
@given(
    kernel_price(price_scale=6, quantity_scale=0, max_price=10**12, max_bound=10**9),
    st.one_of(st.integers(0, 10**6), st.integers(0, 2**62)),
)
def test_extreme_values_are_exact_or_refused(price: dict[str, Any], q: int) -> None:
    table = PriceTable.compile([price], quantity_scale=0)
    try:
        out = table.rate_pairs(np.zeros(1, np.int64), np.array([q], np.int64))
    except RatingOverflowError:
        return
    assert Decimal(int(out[0])).scaleb(-table.amount_scale) == reference(price, q, 0)


def test_scales_beyond_int64_are_refused_when_compiling() -> None:
    with pytest.raises(RatingOverflowError, match="exceeds 18"):
        PriceTable.compile([{"model": "per_unit", "unit_amount": "0.000000000001"}], quantity_scale=9)
    flat = {"model": "graduated", "tiers": [{"up_to": None, "flat_amount": "9000000000"}]}
    with pytest.raises(RatingOverflowError):
        PriceTable.compile([flat], quantity_scale=10)


def test_wrappers_check_shapes_dtypes_and_ranges() -> None:
    table = PriceTable.compile([{"model": "per_unit", "unit_amount": "1"}])
    with pytest.raises(InvalidQuantityError, match=r"shape \(3,\).*\(2,\)"):
        table.rate_pairs(np.zeros(2, np.int64), np.zeros(3, np.int64))
    with pytest.raises(InvalidQuantityError, match="float64"):
        table.rate_pairs(np.zeros(2, np.int64), np.zeros(2))  # type: ignore[arg-type]
    with pytest.raises(InvalidQuantityError, match="outside"):
        table.rate_pairs(np.array([1], np.int64), np.zeros(1, np.int64))
    with pytest.raises(InvalidQuantityError, match="negative"):
        table.rate_pairs(np.zeros(1, np.int64), np.array([-1], np.int64))
    with pytest.raises(InvalidQuantityError, match="too small"):
        PriceTable.compile([{"model": "package", "package_size": "0.5", "package_amount": "1"}], quantity_scale=0)
    with pytest.raises(InvalidPriceError, match="not_columnar"):
        PriceTable.compile([{"model": "percentage", "rate": "1"}])


@FAST
@given(st.lists(st.integers(-(10**15), 10**15), min_size=1, max_size=20), st.sampled_from(list(RoundingMode)))
def test_rounding_once_to_minor_units_matches_decimal(values: list[int], mode: RoundingMode) -> None:
    table = PriceTable.compile([{"model": "per_unit", "unit_amount": "0.0001"}], quantity_scale=1)  # scale 5
    out = table.to_minor(np.array(values, np.int64), mode)
    expected = [int(round_decimal(Decimal(v).scaleb(-5), 2, mode).scaleb(2)) for v in values]
    assert out.tolist() == expected


def test_unreachable_overflowing_tier_does_not_block_small_quantities() -> None:
    """A far tier whose cumulative amount exceeds int64 is fine until a quantity actually reaches it."""
    huge = {
        "model": "graduated",
        "tiers": [
            {"up_to": "100", "unit_amount": "1"},
            {"up_to": "9000000000000000000", "unit_amount": "1000"},
            {"up_to": None, "unit_amount": "1"},
        ],
    }
    table = PriceTable.compile([huge])
    out = table.rate_pairs(np.zeros(2, np.int64), np.array([50, 1000], np.int64))
    assert out.tolist() == [50, 100 + 900 * 1000]
    with pytest.raises(RatingOverflowError, match="charge 0"):
        table.rate_pairs(np.zeros(1, np.int64), np.array([9_000_000_000_000_000_001], np.int64))


@pytest.mark.slow
@settings(max_examples=1500, deadline=None)
@given(
    st.lists(kernel_price(price_scale=6, quantity_scale=3), min_size=1, max_size=5),
    st.lists(st.tuples(st.integers(0, 4), st.integers(0, 10**10)), min_size=1, max_size=60),
)
def test_pairs_kernel_equals_reference_big_run(prices: list[dict[str, Any]], pairs: list[tuple[int, int]]) -> None:
    """The same property as above over more examples and wider scales (marked slow; still run in CI)."""
    table = PriceTable.compile(prices, quantity_scale=3)
    charge = np.array([c % len(prices) for c, _ in pairs], np.int64)
    qty = np.array([q for _, q in pairs], np.int64)
    try:
        out = table.rate_pairs(charge, qty)
    except RatingOverflowError:
        return
    for c, q, amount in zip(charge, qty, out, strict=True):
        assert Decimal(int(amount)).scaleb(-table.amount_scale) == reference(prices[c], int(q), 3)


def test_dimensional_prices_expand_into_rows() -> None:
    dim = {
        "model": "dimensional",
        "dimension": "region",
        "prices": {
            "us": {"model": "per_unit", "unit_amount": "0.10"},
            "eu": {
                "model": "volume",
                "tiers": [{"up_to": "10", "unit_amount": "0.2"}, {"up_to": None, "unit_amount": "0.1"}],
            },
        },
        "default": {"model": "per_unit", "unit_amount": "1"},
    }
    table = PriceTable.compile([{"model": "per_unit", "unit_amount": "5"}, dim])
    rows = np.array([table.row(0), table.row(1, "eu"), table.row(1, "us"), table.row(1, "apac")], np.int64)
    out = table.rate_pairs(rows, np.array([2, 20, 20, 20], np.int64))
    assert [Decimal(int(x)).scaleb(-table.amount_scale) for x in out] == [
        Decimal(10),
        Decimal(2),
        Decimal(2),
        Decimal(20),
    ]
    no_default = PriceTable.compile([{**dim, "default": None}])
    with pytest.raises(UnknownDimensionError, match="known values: eu, us"):
        no_default.row(0, "apac")
    with pytest.raises(InvalidPriceError, match=r"\[0\]\.prices\.eu\.model"):
        PriceTable.compile([{**dim, "prices": {"eu": {"model": "percentage", "rate": "1"}}}])
