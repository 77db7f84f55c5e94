"""Pay for what you use: every unit at the same price."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from rating.base import CumulativePrice
from rating.fields import Amount
from rating.result import Line
from rating.rounding import EXACT


class PerUnitPrice(CumulativePrice):
    model: Literal["per_unit"] = "per_unit"
    unit_amount: Amount

    def amount(self, quantity: Decimal) -> Decimal:
        return EXACT.multiply(quantity, self.unit_amount)

    def breakdown(self, quantity: Decimal) -> tuple[Line, ...]:
        return (Line("per unit", self.amount(quantity), quantity, self.unit_amount),)


__all__ = ["PerUnitPrice"]
