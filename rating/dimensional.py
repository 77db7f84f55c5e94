"""One charge priced differently per dimension value (per region, per model, per instance type)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Literal

from pydantic import Field

from rating.base import PriceModel
from rating.errors import Problem, UnknownDimensionError
from rating.leaf import LeafPrice
from rating.result import Line, Quote
from rating.rounding import EXACT
from rating.unit import Unit


class DimensionalPrice(PriceModel):
    model: Literal["dimensional"] = "dimensional"
    dimension: str = Field(min_length=1)
    prices: dict[str, LeafPrice]
    default: LeafPrice | None = None

    def problems(self) -> list[Problem]:
        if not self.prices:
            return [Problem("prices", "empty_prices", "needs at least one dimension value")]
        units = {p.unit() for p in self._all()}
        if len(units) > 1:
            names = ", ".join(sorted(u.code for u in units))
            return [Problem("prices", "mixed_currencies", f"all values must price in one unit, got {names}")]
        return []

    def _all(self) -> list[LeafPrice]:
        return [*self.prices.values(), *([self.default] if self.default is not None else [])]

    def unit(self) -> Unit:
        return self._all()[0].unit()

    def price_for(self, value: str | None) -> LeafPrice:
        if value is not None and value in self.prices:
            return self.prices[value]
        if self.default is not None:
            return self.default
        known = ", ".join(sorted(self.prices))
        raise UnknownDimensionError(
            f"{self.dimension}={value!r} has no price and there is no default; known values: {known}"
        )

    def quote(self, quantity: Decimal, events: Sequence[Decimal] | None = None, dimension: str | None = None) -> Quote:
        inner = self.price_for(dimension).quote(quantity, events)
        prefix = f"{self.dimension}={dimension}: "
        lines = tuple(_relabel(line, prefix) for line in inner.lines)
        return Quote(self.model, inner.quantity, inner.amount, inner.unit, lines, inner.event_amounts)

    def quote_by_dimension(self, quantities: Mapping[str, Decimal]) -> Quote:
        """One charge, several dimension values: the amounts add, the lines say which value is which."""
        total = Decimal(0)
        quantity = Decimal(0)
        lines: list[Line] = []
        for value, q in quantities.items():
            part = self.quote(q, dimension=value)
            total = EXACT.add(total, part.amount)
            quantity = EXACT.add(quantity, part.quantity)
            lines.extend(part.lines)
        return Quote(self.model, quantity, total, self.unit(), tuple(lines))


def _relabel(line: Line, prefix: str) -> Line:
    return Line(
        prefix + line.label, line.amount, line.units, line.unit_amount, line.flat_amount,
        line.lower, line.upper, line.tier,
    )  # fmt: skip


__all__ = ["DimensionalPrice"]
