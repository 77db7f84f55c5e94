"""Exact, immutable money (and points) that refuses to be mixed up.

`Money` is a `Decimal` amount tagged with its `Unit`. It never comes from a float, never adds across
units, never multiplies by another `Money`, and never compares with a bare number: each of these is a
billing bug waiting to happen, so each raises. Rounding is explicit and named (`round`), and
`allocate` splits an amount over lines by largest remainder so the parts always sum to the whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from rating.errors import InvalidQuantityError, UnitMismatchError
from rating.fixedpoint import as_decimal, check_int64, decimal_places, to_scaled
from rating.rounding import EXACT, RoundingMode, round_decimal
from rating.unit import Unit, currency


@dataclass(frozen=True, slots=True)
class Money:
    amount: Decimal
    unit: Unit

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal):
            raise InvalidQuantityError(
                f"Money amount must be a Decimal (use Money.of for str/int), got {type(self.amount).__name__}"
            )
        if not self.amount.is_finite():
            raise InvalidQuantityError(f"Money amount must be finite, got {self.amount}")

    @classmethod
    def of(cls, amount: object, unit: Unit | str) -> Money:
        """Build from a Decimal, int or decimal string; floats raise."""
        return cls(as_decimal(amount, "amount"), currency(unit) if isinstance(unit, str) else unit)

    @classmethod
    def zero(cls, unit: Unit | str) -> Money:
        return cls.of(0, unit)

    @classmethod
    def from_minor(cls, minor: int, unit: Unit | str) -> Money:
        """From an integer count of minor units (cents for USD, yen for JPY, fils for BHD)."""
        u = currency(unit) if isinstance(unit, str) else unit
        if isinstance(minor, bool) or not isinstance(minor, int):
            raise InvalidQuantityError("minor units must be an int")
        return cls(Decimal(minor).scaleb(-u.scale), u)

    # -- arithmetic -------------------------------------------------------------------------------
    def _same_unit(self, other: object, op: str) -> Money:
        if not isinstance(other, Money):
            raise UnitMismatchError(f"cannot {op} Money and {type(other).__name__}; wrap it in Money first")
        if other.unit != self.unit:
            raise UnitMismatchError(f"cannot {op} {self.unit} and {other.unit}")
        return other

    def __add__(self, other: object) -> Money:
        o = self._same_unit(other, "add")
        return Money(EXACT.add(self.amount, o.amount), self.unit)

    def __radd__(self, other: object) -> Money:
        # sum() starts from the int 0; accept exactly that and nothing else.
        if isinstance(other, int) and not isinstance(other, bool) and other == 0:
            return self
        return self.__add__(other)

    def __sub__(self, other: object) -> Money:
        o = self._same_unit(other, "subtract")
        return Money(EXACT.subtract(self.amount, o.amount), self.unit)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.unit)

    def __abs__(self) -> Money:
        return Money(abs(self.amount), self.unit)

    def __mul__(self, factor: object) -> Money:
        if isinstance(factor, Money):
            raise UnitMismatchError("cannot multiply Money by Money; multiply by a quantity instead")
        return Money(EXACT.multiply(self.amount, as_decimal(factor, "factor")), self.unit)

    __rmul__ = __mul__

    # -- comparison -------------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if isinstance(other, Money):
            return self.unit == other.unit and self.amount == other.amount
        if isinstance(other, int | float | Decimal):
            raise UnitMismatchError(f"cannot compare Money with a bare {type(other).__name__}")
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.unit, self.amount))

    def __lt__(self, other: object) -> bool:
        return self.amount < self._same_unit(other, "compare").amount

    def __le__(self, other: object) -> bool:
        return self.amount <= self._same_unit(other, "compare").amount

    def __gt__(self, other: object) -> bool:
        return self.amount > self._same_unit(other, "compare").amount

    def __ge__(self, other: object) -> bool:
        return self.amount >= self._same_unit(other, "compare").amount

    def __bool__(self) -> bool:
        return bool(self.amount)

    # -- rounding and minor units -----------------------------------------------------------------
    def round(self, mode: RoundingMode = RoundingMode.HALF_EVEN) -> Money:
        """This amount at its unit's scale; the one place a rating result loses digits."""
        return Money(round_decimal(self.amount, self.unit.scale, mode), self.unit)

    @property
    def is_settled(self) -> bool:
        return decimal_places(self.amount) <= self.unit.scale

    def minor_units(self) -> int:
        """Integer minor units; refuses an unrounded amount rather than rounding behind your back."""
        if not self.is_settled:
            raise InvalidQuantityError(f"{self} has more places than {self.unit}; call .round(mode) first")
        return check_int64(to_scaled(self.amount, self.unit.scale, "amount"), "minor units")

    def __str__(self) -> str:
        return f"{self.amount} {self.unit.code}"

    def __repr__(self) -> str:
        return f"Money('{self.amount}', {self.unit.code!r})"

    def to_json(self) -> dict[str, Any]:
        return {"amount": str(self.amount), "unit": self.unit.code}


def allocate(total: Money, weights: Sequence[object]) -> list[Money]:
    """Split a settled `total` over lines in proportion to `weights` without losing a minor unit.

    Each line first gets the floor of its exact share in minor units; the minor units left over go
    one each to the lines with the largest fractional remainders (ties: the earlier line). Negative
    totals are split as the negation of splitting their absolute value.
    """
    if not weights:
        raise InvalidQuantityError("allocate needs at least one weight")
    ws = [Fraction(as_decimal(w, f"weights[{i}]")) for i, w in enumerate(weights)]
    if any(w < 0 for w in ws):
        raise InvalidQuantityError("allocation weights must be zero or more")
    weight_sum = sum(ws, Fraction(0))
    if weight_sum == 0:
        raise InvalidQuantityError("allocation weights must not all be zero")
    minor = total.minor_units()
    sign = -1 if minor < 0 else 1
    minor = abs(minor)
    exact_shares = [minor * w / weight_sum for w in ws]
    floors = [int(s) for s in exact_shares]  # shares are non-negative, so int() is floor
    left = minor - sum(floors)
    order = sorted(range(len(ws)), key=lambda i: (-(exact_shares[i] - floors[i]), i))
    for i in order[:left]:
        floors[i] += 1
    return [Money.from_minor(sign * f, total.unit) for f in floors]


__all__ = ["Money", "allocate"]
