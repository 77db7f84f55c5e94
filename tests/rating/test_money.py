"""Money and units: exactness, refusal of unit mix-ups, named rounding, allocation without loss."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rating import Money, RoundingMode, allocate, currency, points
from rating.errors import InvalidPriceError, InvalidQuantityError, RatingOverflowError, UnitMismatchError
from rating.fixedpoint import to_scaled
from rating.rounding import round_decimal, round_scaled

USD = currency("USD")


def test_minor_units_per_currency() -> None:
    assert (currency("USD").scale, currency("JPY").scale, currency("BHD").scale) == (2, 0, 3)
    assert Money.from_minor(1234, "BHD").amount == Decimal("1.234")
    assert Money.from_minor(1234, "JPY").amount == Decimal("1234")
    assert Money.of("12.34", "USD").minor_units() == 1234


def test_unknown_currency_is_refused() -> None:
    with pytest.raises(InvalidPriceError, match="unknown currency"):
        currency("XXX")


def test_points_have_their_own_scale_and_never_mix_with_money() -> None:
    credits = points("credits", 3)
    assert Money.of("1.5", credits).round().amount == Decimal("1.500")
    with pytest.raises(UnitMismatchError):
        Money.of("1", credits) + Money.of("1", USD)
    with pytest.raises(InvalidPriceError):
        points("Credits!", 2)


def test_floats_never_become_money() -> None:
    with pytest.raises(InvalidQuantityError, match="float"):
        Money.of(0.1, USD)
    with pytest.raises(InvalidQuantityError):
        Money(0.1, USD)  # type: ignore[arg-type]
    with pytest.raises(InvalidQuantityError):
        Money.of("1", USD) * 1.5


def test_mixed_currencies_money_times_money_and_bare_numbers_raise() -> None:
    usd, eur = Money.of("1", "USD"), Money.of("1", "EUR")
    with pytest.raises(UnitMismatchError):
        usd + eur
    with pytest.raises(UnitMismatchError):
        usd * usd
    with pytest.raises(UnitMismatchError):
        usd < 2  # noqa: B015
    with pytest.raises(UnitMismatchError):
        usd == Decimal(1)  # noqa: B015
    with pytest.raises(UnitMismatchError):
        usd + 1


def test_sum_and_arithmetic_stay_exact() -> None:
    parts = [Money.of("0.1", USD)] * 10
    assert sum(parts) == Money.of("1.0", USD)
    assert Money.of("3", USD) * Decimal("0.3333") == Money.of("0.9999", USD)
    assert 2 * Money.of("1.25", USD) == Money.of("2.50", USD)
    assert -Money.of("1", USD) < Money.zero(USD)


@pytest.mark.parametrize(
    ("mode", "values"),
    [
        (RoundingMode.HALF_EVEN, {"0.125": "0.12", "0.135": "0.14", "-0.125": "-0.12", "0.1251": "0.13"}),
        (RoundingMode.HALF_UP, {"0.125": "0.13", "-0.125": "-0.13", "0.1249": "0.12"}),
        (RoundingMode.DOWN, {"0.129": "0.12", "-0.129": "-0.12"}),
        (RoundingMode.UP, {"0.121": "0.13", "-0.121": "-0.13", "0.12": "0.12"}),
    ],
)
def test_named_rounding_modes(mode: RoundingMode, values: dict[str, str]) -> None:
    for raw, expected in values.items():
        assert Money.of(raw, USD).round(mode).amount == Decimal(expected), (mode, raw)


@settings(max_examples=300, deadline=None)
@given(st.integers(-(10**15), 10**15), st.integers(0, 6), st.sampled_from(list(RoundingMode)))
def test_integer_rounding_matches_decimal_rounding(value: int, shift: int, mode: RoundingMode) -> None:
    expected = round_decimal(Decimal(value).scaleb(-shift), 0, mode)
    assert round_scaled(value, 10**shift, mode) == int(expected)


def test_minor_units_refuse_unrounded_amounts() -> None:
    with pytest.raises(InvalidQuantityError, match="round"):
        Money.of("1.005", USD).minor_units()


def test_overflow_raises_never_wraps() -> None:
    with pytest.raises(RatingOverflowError):
        Money.of(str(2**63), "JPY").minor_units()
    with pytest.raises(RatingOverflowError):
        to_scaled(Decimal("92233720368547758.08"), 2)


def test_allocate_worked_example() -> None:
    # 100.00 over three equal lines: 33.34 + 33.33 + 33.33 (the first line takes the spare cent).
    parts = allocate(Money.of("100.00", USD), [1, 1, 1])
    assert [p.amount for p in parts] == [Decimal("33.34"), Decimal("33.33"), Decimal("33.33")]
    assert [p.amount for p in allocate(Money.of("-0.05", USD), [1, 1])] == [Decimal("-0.03"), Decimal("-0.02")]


@settings(max_examples=200, deadline=None)
@given(
    st.integers(-(10**12), 10**12),
    st.lists(st.integers(0, 10**6), min_size=1, max_size=20).filter(lambda ws: sum(ws) > 0),
    st.sampled_from(["USD", "JPY", "BHD"]),
)
def test_allocate_never_loses_a_minor_unit(minor: int, weights: list[int], code: str) -> None:
    total = Money.from_minor(minor, code)
    parts = allocate(total, weights)
    assert sum(parts) == total
    for part, w in zip(parts, weights, strict=True):
        exact = abs(minor) * w / sum(weights)
        assert abs(abs(part.minor_units()) - exact) < 1
