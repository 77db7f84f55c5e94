"""The public surface: `__all__` resolves, quotes agree with breakdowns, the schema is committed."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import rating
from rating.price import price_json_schema_text
from tests.rating.strategies import kernel_price

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "price.schema.json"


def test_all_names_resolve() -> None:
    for name in rating.__all__:
        assert getattr(rating, name) is not None, name


def test_committed_schema_equals_generated() -> None:
    """Regenerate with:

    python -c 'from rating.price import price_json_schema_text as s; print(s(), end="")' \
        > docs/price.schema.json
    """
    assert SCHEMA.read_text() == price_json_schema_text()
    schema = json.loads(SCHEMA.read_text())
    assert "graduated" in json.dumps(schema)


@settings(max_examples=150, deadline=None)
@given(kernel_price(), st.integers(0, 5 * 10**6))
def test_breakdown_lines_sum_to_amount(price: dict[str, Any], q: int) -> None:
    quote = rating.quote(price, Decimal(q).scaleb(-2))
    assert sum((ln.amount for ln in quote.lines), Decimal(0)) == quote.amount
    for ln in quote.lines:
        assert ln.amount == ln.units * ln.unit_amount + ln.flat_amount


def test_simulation_reports_old_new_difference() -> None:
    current = [{"model": "per_unit", "unit_amount": "0.10"}, {"model": "per_unit", "unit_amount": "1"}]
    candidate = [
        {
            "model": "graduated",
            "tiers": [{"up_to": "100", "unit_amount": "0.12"}, {"up_to": None, "unit_amount": "0.05"}],
        },
        {"model": "package", "package_size": "10", "package_amount": "8"},
    ]
    customer = np.array([0, 0, 1, 2], np.int64)
    charge = np.array([0, 1, 0, 1], np.int64)
    qty = np.array([50, 15, 1000, 0], np.int64)
    report = rating.simulate(customer, charge, qty, 0, current, candidate)
    # customer 0: old 5 + 15 = 20, new 6 + 16 = 22; customer 1: old 100, new 12 + 45 = 57; customer 2: 0, 0
    assert report.customer(0) == (Decimal(20), Decimal(22), Decimal(2))
    assert report.customer(1) == (Decimal(100), Decimal(57), Decimal(-43))
    assert (report.total_old, report.total_new, report.total_difference) == (Decimal(120), Decimal(79), Decimal(-41))
    assert report.biggest_changes(1) == [(1, Decimal(-43))]


def test_public_names_never_shadowed_by_submodules() -> None:
    """A submodule named like a public function would replace it on the package once imported."""
    import importlib
    import pkgutil

    import rating

    submodules = {m.name for m in pkgutil.iter_modules(rating.__path__)}
    assert not submodules & set(rating.__all__)
    for name in submodules:
        importlib.import_module(f"rating.{name}")
    assert all(not isinstance(getattr(rating, n), type(rating)) for n in rating.__all__)
