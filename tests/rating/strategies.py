"""Hypothesis strategies for price definitions and quantities, shared by the rating tests."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import strategies as st


def fixed(max_int: int, scale: int) -> st.SearchStrategy[Decimal]:
    """Non-negative decimals with at most `scale` places, as exact Decimals."""
    return st.integers(0, max_int).map(lambda n: Decimal(n).scaleb(-scale))


@st.composite
def tiers(
    draw: st.DrawFn, price_scale: int, quantity_scale: int, max_price: int, max_bound: int
) -> list[dict[str, Any]]:
    n = draw(st.integers(1, 6))
    bounds = sorted(draw(st.lists(st.integers(0, max_bound), min_size=n - 1, max_size=n - 1, unique=True)))
    out = []
    for i in range(n):
        up = None if i == n - 1 else str(Decimal(bounds[i]).scaleb(-quantity_scale))
        out.append(
            {
                "up_to": up,
                "unit_amount": str(draw(fixed(max_price, price_scale))),
                "flat_amount": str(draw(fixed(max_price, price_scale))),
            }
        )
    return out


@st.composite
def kernel_price(
    draw: st.DrawFn, price_scale: int = 4, quantity_scale: int = 2, max_price: int = 10**7, max_bound: int = 10**6
) -> dict[str, Any]:
    """Any of per_unit / package / graduated / volume with random amounts at the given scales."""
    model = draw(st.sampled_from(["per_unit", "package", "graduated", "volume"]))
    if model == "per_unit":
        return {"model": model, "unit_amount": str(draw(fixed(max_price, price_scale)))}
    if model == "package":
        return {
            "model": model,
            "package_size": str(Decimal(draw(st.integers(1, max_bound))).scaleb(-quantity_scale)),
            "package_amount": str(draw(fixed(max_price, price_scale))),
            "free_units": str(draw(fixed(max_bound, quantity_scale))),
        }
    return {"model": model, "tiers": draw(tiers(price_scale, quantity_scale, max_price, max_bound))}
