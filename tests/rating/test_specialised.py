"""The specialised kernels: each equals its Decimal reference, the mixed dispatcher equals the old
per-pair path on random mixes and orders, and the per-row limits are the exact overflow proof."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rating import kernels, parse_price
from rating.errors import InvalidQuantityError, RatingOverflowError
from rating.fixedpoint import INT64_MAX
from rating.registry import KERNEL_MODELS, kernel_model, limit
from rating.table import PriceTable
from tests.rating.legacy import LegacyTable
from tests.rating.strategies import fixed, kernel_price

FAST = settings(max_examples=120, deadline=None)


@st.composite
def many_tiers(draw: st.DrawFn, model: str, n_tiers: int, scale: int = 4, bound: int = 10**6) -> dict[str, Any]:
    """A graduated or volume price with exactly `n_tiers` tiers (to reach every tier-count loop)."""
    bounds = sorted(draw(st.lists(st.integers(0, bound), min_size=n_tiers - 1, max_size=n_tiers - 1, unique=True)))
    tiers = [
        {
            "up_to": None if i == n_tiers - 1 else str(Decimal(bounds[i]).scaleb(-2)),
            "unit_amount": str(draw(fixed(10**7, scale))),
            "flat_amount": str(draw(fixed(10**7, scale))),
        }
        for i in range(n_tiers)
    ]
    return {"model": model, "tiers": tiers}


def any_price() -> st.SearchStrategy[dict[str, Any]]:
    """Every kernel model, tier counts across the 1 / ≤4 / ≤8 / generic loops."""
    tiered = st.tuples(st.sampled_from(["graduated", "volume"]), st.integers(1, 12)).flatmap(
        lambda mt: many_tiers(mt[0], mt[1])
    )
    return st.one_of(kernel_price(), tiered)


def decimal_of(table: PriceTable, amounts: np.ndarray) -> list[Decimal]:
    return [Decimal(int(x)).scaleb(-table.amount_scale) for x in amounts]


@FAST
@given(any_price(), st.lists(st.integers(0, 3 * 10**8), min_size=1, max_size=60), st.integers(1, 80))
def test_every_specialised_kernel_equals_its_reference(price: dict[str, Any], qs: list[int], times: int) -> None:
    """One charge over a contiguous run (the specialised loop), long enough to cross chunks."""
    table = PriceTable.compile([price], quantity_scale=2)
    qty = np.array(qs * times, np.int64)
    try:
        out = table.rate_pairs(np.zeros(qty.shape[0], np.int64), qty)
    except RatingOverflowError:
        return
    p = parse_price(price)
    model = kernel_model(p)
    assert model is not None
    refs = {q: model.reference(p, Decimal(q).scaleb(-2)) for q in qs}
    assert decimal_of(table, out) == [refs[int(q)] for q in qty]


def test_every_kernel_model_has_a_reference_and_a_shape() -> None:
    assert set(KERNEL_MODELS) == {"per_unit", "package", "graduated", "volume"}
    for m in KERNEL_MODELS.values():
        assert m.reference is not None and m.bound is not None and m.lower is not None


def _layout(rng: np.random.Generator, charge: np.ndarray, how: str) -> np.ndarray:
    if how == "grouped":
        return np.argsort(charge, kind="stable")
    if how == "random":
        return rng.permutation(charge.shape[0])
    return np.arange(charge.shape[0])  # as drawn (interleaved)


def _outcome(fn: Any) -> tuple[str, Any]:
    try:
        return "ok", fn().tolist()
    except InvalidQuantityError:
        return "invalid", None
    except RatingOverflowError:
        return "overflow", None


@FAST
@given(
    st.lists(any_price(), min_size=1, max_size=6),
    st.lists(st.tuples(st.integers(0, 5), st.integers(0, 10**9)), min_size=1, max_size=50),
    st.integers(1, 200),
    st.sampled_from(["interleaved", "grouped", "random"]),
    st.integers(0, 2**32 - 1),
)
def test_mixed_dispatcher_equals_the_old_per_pair_path(
    prices: list[dict[str, Any]], pairs: list[tuple[int, int]], times: int, how: str, seed: int
) -> None:
    table = PriceTable.compile(prices, quantity_scale=2)
    charge = np.array([c % len(prices) for c, _ in pairs] * times, np.int64)
    qty = np.array([q for _, q in pairs] * times, np.int64)
    order = _layout(np.random.default_rng(seed), charge, how)
    charge, qty = charge[order], qty[order]
    assert _outcome(lambda: table.rate_pairs(charge, qty)) == _outcome(
        lambda: LegacyTable.of(table).rate_pairs(charge, qty)
    )


@settings(max_examples=40, deadline=None)
@given(
    st.lists(kernel_price(), min_size=kernels.SORT_ROWS + 1, max_size=kernels.SORT_ROWS + 8),
    st.integers(0, 2**32 - 1),
)
def test_large_tables_take_the_per_pair_path_and_agree(prices: list[dict[str, Any]], seed: int) -> None:
    """Mixed chunks of a table with more rows than the counting sort takes are rated pair by pair."""
    table = PriceTable.compile(prices, quantity_scale=2)
    rng = np.random.default_rng(seed)
    charge = rng.integers(0, len(prices), 3 * kernels.CHUNK + 17).astype(np.int64)
    qty = rng.integers(0, 10**6, charge.shape[0]).astype(np.int64)
    assert _outcome(lambda: table.rate_pairs(charge, qty)) == _outcome(
        lambda: LegacyTable.of(table).rate_pairs(charge, qty)
    )


@FAST
@given(
    st.lists(any_price(), min_size=1, max_size=4),
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 10**9)), min_size=1, max_size=30),
    st.integers(0, 200),
    st.sampled_from([-1, "big", "bad_charge"]),
)
def test_a_refused_pair_anywhere_is_refused_like_before(
    prices: list[dict[str, Any]], pairs: list[tuple[int, int]], at: int, poison: Any
) -> None:
    """A negative, overflowing or out-of-range pair in any chunk raises the same error class as the old
    path, wherever it lies (first chunk, a later one, a homogeneous or a mixed one)."""
    table = PriceTable.compile(prices, quantity_scale=2)
    charge = np.array([c % len(prices) for c, _ in pairs] * 300, np.int64)
    qty = np.array([q for _, q in pairs] * 300, np.int64)
    i = (at * 97) % charge.shape[0]
    if poison == "bad_charge":
        charge[i] = len(prices)
    else:
        qty[i] = -1 if poison == -1 else INT64_MAX
    legacy = _outcome(lambda: LegacyTable.of(table).rate_pairs(charge, qty))
    assert _outcome(lambda: table.rate_pairs(charge, qty)) == legacy


@FAST
@given(any_price(), st.sampled_from([0, 2, 3]), st.one_of(st.integers(0, 10**6), st.integers(0, INT64_MAX)))
def test_row_limits_are_the_exact_overflow_proof(price: dict[str, Any], qs: int, q: int) -> None:
    """limit(row) is the largest quantity whose bound fits int64, and the bound equals the old one."""
    try:
        table = PriceTable.compile([price], quantity_scale=max(qs, 2))
    except RatingOverflowError:
        return
    legacy = LegacyTable.of(table)
    model, row, qpow = table.models[0], table.lowered[0], 10**table.quantity_scale
    assert model.bound(row, qpow, q) == legacy.max_amount(0, q)
    lim = limit(model, row, qpow)
    assert lim == int(table.columns.limit[0])
    assert model.bound(row, qpow, lim) <= INT64_MAX
    if lim < INT64_MAX:
        assert model.bound(row, qpow, lim + 1) > INT64_MAX
    assert (q <= lim) == (model.bound(row, qpow, q) <= INT64_MAX)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, INT64_MAX),
    st.lists(st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 10**6)), min_size=1, max_size=20),
)
def test_magic_division_is_exact(divisor: int, numerators: list[int]) -> None:
    n = np.array([*numerators, 0, 2**64 - 1, divisor, divisor - 1, 2**63 - 1], np.uint64)
    got = kernels.divide_floor(n, divisor)
    assert [int(x) for x in got] == [int(x) // divisor for x in n]


@pytest.mark.parametrize("divisor", [1, 2, 3, 7, 10, 1000, 2**32 - 1, 2**32, 2**32 + 1, 2**62, 2**63 - 1])
def test_magic_division_edges(divisor: int) -> None:
    n = np.array([0, 1, divisor - 1, divisor, divisor + 1, 2**63 - 1, 2**64 - 1, 2**64 - 2], np.uint64)
    assert [int(x) for x in kernels.divide_floor(n, divisor)] == [int(x) // divisor for x in n]


def test_a_compiled_table_pickles_for_worker_processes() -> None:
    import pickle

    table = PriceTable.compile([{"model": "per_unit", "unit_amount": "0.5"}, {"model": "package", "package_size": "10",
                                "package_amount": "3"}])  # fmt: skip
    copy = pickle.loads(pickle.dumps(table))
    charge, qty = np.array([0, 1, 1], np.int64), np.array([3, 10, 11], np.int64)
    assert copy.rate_pairs(charge, qty).tolist() == table.rate_pairs(charge, qty).tolist() == [15, 30, 60]
    assert copy.models[1] is table.models[1]
