"""Pure pricing: exact money, price models, numba kernels and their Decimal references.

The public surface is small on purpose::

    rating.quote(price, quantity, events=None)   exact Decimal quote with a tier breakdown
    rating.parse_price(definition)               validated model, or InvalidPriceError
    rating.PriceTable.compile(prices)            columnar tables for the int64 kernels
    rating.simulate(...)                         revenue impact of a candidate plan

Nothing here touches a database, a clock, the network or files.

Submodules load on first use (PEP 562), so `import rating.errors` from the
ingest path does not pay for numba and the kernels.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rating.commitment import InvoiceLimits, InvoiceTotals, apply_invoice_limits
    from rating.errors import (
        InvalidPriceError,
        InvalidQuantityError,
        Problem,
        RatingError,
        RatingOverflowError,
        UnitMismatchError,
        UnknownDimensionError,
        UnknownModelError,
    )
    from rating.kernels import warm_up
    from rating.money import Money, allocate
    from rating.price import Price, parse_price, price_json_schema
    from rating.quoting import quote
    from rating.result import Line, Quote
    from rating.rounding import RoundingMode
    from rating.simulation import SimulationReport, simulate
    from rating.table import PriceTable
    from rating.unit import Unit, currency, points

_HOME: dict[str, str] = {
    "InvalidPriceError": "rating.errors",
    "InvalidQuantityError": "rating.errors",
    "InvoiceLimits": "rating.commitment",
    "InvoiceTotals": "rating.commitment",
    "Line": "rating.result",
    "Money": "rating.money",
    "Price": "rating.price",
    "PriceTable": "rating.table",
    "Problem": "rating.errors",
    "Quote": "rating.result",
    "RatingError": "rating.errors",
    "RatingOverflowError": "rating.errors",
    "RoundingMode": "rating.rounding",
    "SimulationReport": "rating.simulation",
    "Unit": "rating.unit",
    "UnitMismatchError": "rating.errors",
    "UnknownDimensionError": "rating.errors",
    "UnknownModelError": "rating.errors",
    "allocate": "rating.money",
    "apply_invoice_limits": "rating.commitment",
    "currency": "rating.unit",
    "parse_price": "rating.price",
    "points": "rating.unit",
    "price_json_schema": "rating.price",
    "quote": "rating.quoting",
    "simulate": "rating.simulation",
    "warm_up": "rating.kernels",
}

__all__ = [
    "InvalidPriceError",
    "InvalidQuantityError",
    "InvoiceLimits",
    "InvoiceTotals",
    "Line",
    "Money",
    "Price",
    "PriceTable",
    "Problem",
    "Quote",
    "RatingError",
    "RatingOverflowError",
    "RoundingMode",
    "SimulationReport",
    "Unit",
    "UnitMismatchError",
    "UnknownDimensionError",
    "UnknownModelError",
    "allocate",
    "apply_invoice_limits",
    "currency",
    "parse_price",
    "points",
    "price_json_schema",
    "quote",
    "simulate",
    "warm_up",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'rating' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
