"""Invalid definitions are refused with every problem listed, each naming its field and a stable code."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rating import InvalidPriceError, UnknownModelError, parse_price
from rating.price import MODELS
from rating.registry import model_classes


def problems(definition: Any) -> list[tuple[str, str]]:
    with pytest.raises(InvalidPriceError) as info:
        parse_price(definition)
    return [(p.field, p.code) for p in info.value.problems]


def test_unsorted_and_overlapping_tiers_name_each_field() -> None:
    tiers = [{"up_to": "10"}, {"up_to": "10"}, {"up_to": "5"}, {"up_to": None}]
    assert problems({"model": "graduated", "tiers": tiers}) == [
        ("tiers[1].up_to", "invalid_graduated_ranges"),
        ("tiers[2].up_to", "invalid_graduated_ranges"),
    ]
    assert problems({"model": "volume", "tiers": tiers})[0] == ("tiers[1].up_to", "invalid_volume_ranges")


def test_tier_tables_must_end_unbounded_and_not_be_empty() -> None:
    assert problems({"model": "graduated", "tiers": [{"up_to": "1"}]}) == [("tiers[0].up_to", "missing_unbounded_tier")]
    assert problems({"model": "graduated", "tiers": [{"up_to": None}, {"up_to": None}]}) == [
        ("tiers[0].up_to", "invalid_graduated_ranges")
    ]
    assert problems({"model": "graduated", "tiers": []}) == [("tiers", "empty_tiers")]


def test_all_field_problems_are_collected_at_once() -> None:
    found = problems(
        {"model": "package", "package_size": "0", "package_amount": "-1", "free_units": 0.5, "colour": "red"}
    )
    assert set(found) == {
        ("package_size", "not_positive"),
        ("package_amount", "negative_amount"),
        ("free_units", "float_not_allowed"),
        ("colour", "unknown_field"),
    }


def test_scale_beyond_64_bits_is_refused() -> None:
    assert problems({"model": "per_unit", "unit_amount": "0.0000000000001"}) == [("unit_amount", "scale_too_large")]
    assert problems({"model": "per_unit", "unit_amount": "9223372036854775808"}) == [("unit_amount", "scale_too_large")]
    assert problems({"model": "per_unit", "unit_amount": "NaN"})[0][0] == "unit_amount"


def test_floats_refused_strings_and_ints_accepted() -> None:
    assert problems({"model": "per_unit", "unit_amount": 0.1}) == [("unit_amount", "float_not_allowed")]
    assert problems(json.dumps({"model": "per_unit", "unit_amount": 0.1})) == [("unit_amount", "float_not_allowed")]
    assert parse_price({"model": "per_unit", "unit_amount": 3}).unit_amount == Decimal(3)  # type: ignore[union-attr]
    assert parse_price('{"model": "per_unit", "unit_amount": "0.1"}').unit_amount == Decimal("0.1")  # type: ignore[union-attr]


def test_unknown_model_fails_loudly() -> None:
    with pytest.raises(UnknownModelError, match="choose one of"):
        parse_price({"model": "tiered_magic"})
    with pytest.raises(UnknownModelError):
        model_classes("tiered_magic")
    assert problems({"unit_amount": "1"}) == [("", "missing_model")]


def test_nested_prices_report_full_paths() -> None:
    definition = {
        "model": "dimensional",
        "dimension": "region",
        "prices": {
            "eu": {"model": "graduated", "tiers": [{"up_to": "3"}, {"up_to": "2"}, {"up_to": None}]},
            "us": {"model": "per_unit", "unit_amount": "-1"},
        },
    }
    assert set(problems(definition)) == {
        ("prices.eu.tiers[1].up_to", "invalid_graduated_ranges"),
        ("prices.us.unit_amount", "negative_amount"),
    }
    wrapped = {
        "model": "minimum_commitment",
        "minimum_amount": "10",
        "cap_amount": "5",
        "price": {"model": "per_unit", "unit_amount": "1"},
    }
    assert problems(wrapped) == [("cap_amount", "invalid_min_max")]
    inner_bad = {
        "model": "points",
        "points_unit": "credits",
        "conversion_rate": "0.01",
        "price": {"model": "volume", "tiers": [{"up_to": "1"}]},
    }
    assert problems(inner_bad) == [("price.tiers[0].up_to", "missing_unbounded_tier")]


def test_model_specific_rules() -> None:
    assert problems({"model": "percentage", "rate": "101"}) == [("rate", "percent_out_of_range")]
    assert problems({"model": "percentage", "rate": "1", "per_transaction_min": "5", "per_transaction_max": "1"}) == [
        ("per_transaction_min", "invalid_min_max")
    ]
    assert problems({"model": "per_unit", "unit_amount": "1", "currency": "XXX"}) == [("currency", "unknown_currency")]
    sla = {
        "model": "sla_credit",
        "affected_fee": "100",
        "tiers": [{"threshold": "99", "credit_percent": "10"}, {"threshold": "99.9", "credit_percent": "5"}],
    }
    assert problems(sla) == [
        ("tiers[1].threshold", "invalid_sla_tiers"),
        ("tiers[1].credit_percent", "invalid_sla_tiers"),
    ]
    kpi = {
        "model": "outcome",
        "kind": "kpi_contingent",
        "kpi_tiers": [{"threshold": "5", "fee": "1"}, {"threshold": "4", "fee": "2"}],
    }
    assert problems(kpi) == [("kpi_tiers[1].threshold", "invalid_kpi_thresholds")]
    assert problems({"model": "outcome", "kind": "guesswork"})[0][1] == "unknown_model"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=2, max_size=7))
def test_any_non_increasing_bounds_are_refused_naming_the_tier(bounds: list[int]) -> None:
    tiers: list[dict[str, Any]] = [{"up_to": str(b), "unit_amount": "1"} for b in bounds] + [{"up_to": None}]
    increasing = all(b < c for b, c in itertools.pairwise(bounds))
    if increasing:
        parse_price({"model": "graduated", "tiers": tiers})
        return
    found = problems({"model": "graduated", "tiers": tiers})
    first_bad = next(i for i in range(1, len(bounds)) if bounds[i] <= max(bounds[:i]))
    assert (f"tiers[{first_bad}].up_to", "invalid_graduated_ranges") in found


@settings(max_examples=100, deadline=None)
@given(st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**9), max_value=-1, places=4))
def test_any_negative_amount_is_refused(value: Decimal) -> None:
    assert problems({"model": "volume", "tiers": [{"up_to": None, "flat_amount": str(value)}]}) == [
        ("tiers[0].flat_amount", "negative_amount")
    ]


def test_json_form_is_stable_and_round_trips() -> None:
    for definition in [
        {
            "model": "graduated",
            "tiers": [{"up_to": "10", "unit_amount": "0.50"}, {"up_to": None, "unit_amount": "0.25"}],
        },
        {"model": "percentage", "rate": "2.9", "fixed_amount": "0.30", "free_units_per_events": 3},
    ]:
        price = parse_price(definition)
        dumped = price.to_json()
        assert parse_price(dumped) == price
        assert dumped["model"] == definition["model"]  # type: ignore[index]
    assert set(MODELS) >= {
        "per_unit",
        "package",
        "graduated",
        "volume",
        "percentage",
        "graduated_percentage",
        "flat",
        "minimum_commitment",
        "points",
        "outcome",
        "sla_credit",
        "dimensional",
    }
