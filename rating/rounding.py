"""Named rounding, applied once where a rule says, never through the ambient decimal context.

`EXACT` traps `Inexact`: reference arithmetic that would silently round raises instead, which is how
the references prove they are exact. Rounding happens only through `round_decimal` / `round_scaled`,
each of which takes a `RoundingMode` by name.
"""

from __future__ import annotations

import decimal
from decimal import Decimal
from enum import StrEnum

from rating.errors import InvalidQuantityError

#: Enough digits for int64 × int64 products at 12+12 decimal places with room to spare.
PRECISION = 100

EXACT = decimal.Context(
    prec=PRECISION,
    rounding=decimal.ROUND_HALF_EVEN,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow, decimal.Inexact],
)


class RoundingMode(StrEnum):
    """How an amount is brought to a unit's scale; the JSON form is the lower-case name."""

    HALF_EVEN = "half_even"
    HALF_UP = "half_up"
    DOWN = "down"
    UP = "up"

    @property
    def decimal_rounding(self) -> str:
        return _DECIMAL_ROUNDING[self]

    @property
    def code(self) -> int:
        """Small integer used by the numba kernels, which cannot take enums."""
        return _CODES[self]


_DECIMAL_ROUNDING = {
    RoundingMode.HALF_EVEN: decimal.ROUND_HALF_EVEN,
    RoundingMode.HALF_UP: decimal.ROUND_HALF_UP,
    RoundingMode.DOWN: decimal.ROUND_DOWN,
    RoundingMode.UP: decimal.ROUND_UP,
}
_CODES = {RoundingMode.HALF_EVEN: 0, RoundingMode.HALF_UP: 1, RoundingMode.DOWN: 2, RoundingMode.UP: 3}


def exact(value: Decimal) -> Decimal:
    """Normalise an input through the exact context (raises if the value needed rounding)."""
    return EXACT.plus(value)


def round_decimal(value: Decimal, places: int, mode: RoundingMode) -> Decimal:
    """`value` at `places` decimal places, rounded by `mode` (DOWN/UP are toward/away from zero)."""
    if not value.is_finite():
        raise InvalidQuantityError(f"cannot round non-finite value {value}")
    ctx = decimal.Context(prec=PRECISION, rounding=mode.decimal_rounding, traps=[decimal.InvalidOperation])
    return value.quantize(Decimal(1).scaleb(-places), context=ctx)


def round_scaled(value: int, divisor: int, mode: RoundingMode) -> int:
    """Integer `value / divisor` rounded by `mode`: the Python twin of the numba rounding kernel."""
    if divisor <= 0:
        raise ValueError("divisor must be positive")
    negative = value < 0
    q, r = divmod(abs(value), divisor)
    if r:
        if mode is RoundingMode.UP:
            q += 1
        elif mode is RoundingMode.HALF_UP:
            q += 1 if 2 * r >= divisor else 0
        elif mode is RoundingMode.HALF_EVEN:
            q += 1 if (2 * r > divisor or (2 * r == divisor and q % 2 == 1)) else 0
    return -q if negative else q


__all__ = ["EXACT", "PRECISION", "RoundingMode", "exact", "round_decimal", "round_scaled"]
