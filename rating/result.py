"""What a quote returns: the exact amount and the lines that explain it on an invoice."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from rating.money import Money
from rating.rounding import RoundingMode
from rating.unit import Unit


@dataclass(frozen=True, slots=True)
class Line:
    """One explainable piece of an amount: for a tier, its bounds, units, unit price and flat fee.

    `lower` is exclusive and `upper` inclusive (None = unbounded), matching the `up_to` semantics.
    `amount = units × unit_amount + flat_amount` for tier lines; adjustment lines (minimum, cap,
    true-up, credit) carry only `amount`.
    """

    label: str
    amount: Decimal
    units: Decimal = Decimal(0)
    unit_amount: Decimal = Decimal(0)
    flat_amount: Decimal = Decimal(0)
    lower: Decimal | None = None
    upper: Decimal | None = None
    tier: int | None = None

    @property
    def units_amount(self) -> Decimal:
        return self.units * self.unit_amount

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "tier": self.tier,
            "lower": None if self.lower is None else str(self.lower),
            "upper": None if self.upper is None else str(self.upper),
            "units": str(self.units),
            "unit_amount": str(self.unit_amount),
            "flat_amount": str(self.flat_amount),
            "amount": str(self.amount),
        }


@dataclass(frozen=True, slots=True)
class Quote:
    """An exact, unrounded rating result.

    `amount` keeps every digit the price implies; call `rounded()` exactly once, when the amount
    becomes an invoice line. `event_amounts` (when events were given) sum exactly to `amount`.
    For points prices `money_equivalent` is the points amount converted at the tenant's rate.
    """

    model: str
    quantity: Decimal
    amount: Decimal
    unit: Unit
    lines: tuple[Line, ...]
    event_amounts: tuple[Decimal, ...] | None = None
    money_equivalent: Money | None = None

    @property
    def money(self) -> Money:
        return Money(self.amount, self.unit)

    def rounded(self, mode: RoundingMode = RoundingMode.HALF_EVEN) -> Money:
        return self.money.round(mode)

    def to_json(self, mode: RoundingMode = RoundingMode.HALF_EVEN) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model,
            "quantity": str(self.quantity),
            "unit": self.unit.code,
            "amount": str(self.amount),
            "rounded_amount": str(self.rounded(mode).amount),
            "rounding": mode.value,
            "lines": [line.to_json() for line in self.lines],
        }
        if self.event_amounts is not None:
            out["event_amounts"] = [str(a) for a in self.event_amounts]
        if self.money_equivalent is not None:
            out["money_equivalent"] = self.money_equivalent.to_json()
        return out


__all__ = ["Line", "Quote"]
