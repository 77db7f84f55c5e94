"""Units sold in packages: each started package is charged in full, after the free units."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from rating.base import CumulativePrice
from rating.fields import Amount, Positive
from rating.result import Line
from rating.rounding import EXACT


class PackagePrice(CumulativePrice):
    model: Literal["package"] = "package"
    package_size: Positive
    package_amount: Amount
    free_units: Amount = Decimal(0)

    def packages(self, quantity: Decimal) -> int:
        """Started packages: ceil(max(quantity − free_units, 0) / package_size), computed exactly."""
        billable = max(EXACT.subtract(quantity, self.free_units), Decimal(0))
        whole, rest = EXACT.divmod(billable, self.package_size)
        return int(whole) + (1 if rest else 0)

    def amount(self, quantity: Decimal) -> Decimal:
        return EXACT.multiply(Decimal(self.packages(quantity)), self.package_amount)

    def breakdown(self, quantity: Decimal) -> tuple[Line, ...]:
        free = min(quantity, self.free_units)
        lines = []
        if self.free_units:
            lines.append(Line("free units", Decimal(0), free, Decimal(0), upper=self.free_units))
        n = Decimal(self.packages(quantity))
        lines.append(
            Line(
                f"packages of {self.package_size}",
                EXACT.multiply(n, self.package_amount),
                n,
                self.package_amount,
                lower=self.free_units,
            )
        )
        return tuple(lines)


__all__ = ["PackagePrice"]
