"""Prices in a tenant's points unit, paid from a points wallet, convertible to money.

The nested ``price`` is read in points: its amounts (unit_amount, flat_amount ...) are points, and its
``currency`` field is ignored. ``conversion_rate`` is the money value of one point in ``currency``.
A quote is exact in points; spending from a wallet rounds the cost once to ``points_scale`` with the
named ``rounding`` mode, draws what the balance covers, and converts any shortfall to money.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field

from rating.base import CurrencyCode, PriceModel
from rating.errors import InvalidQuantityError, Problem
from rating.fields import Positive
from rating.fixedpoint import as_decimal
from rating.leaf import LeafPrice
from rating.money import Money
from rating.result import Quote
from rating.rounding import EXACT, RoundingMode, round_decimal
from rating.unit import MAX_UNIT_SCALE, Unit, currency, points


class PointsPrice(PriceModel):
    model: Literal["points"] = "points"
    points_unit: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    points_scale: Annotated[int, Field(strict=True, ge=0, le=MAX_UNIT_SCALE)] = 0
    currency: CurrencyCode = "USD"
    conversion_rate: Positive
    rounding: RoundingMode = RoundingMode.UP
    price: LeafPrice

    def problems(self) -> list[Problem]:
        return []

    def unit(self) -> Unit:
        return points(self.points_unit, self.points_scale)

    def to_money(self, amount_points: Decimal) -> Money:
        return Money(EXACT.multiply(amount_points, self.conversion_rate), currency(self.currency))

    def quote(self, quantity: Decimal, events: Sequence[Decimal] | None = None, dimension: str | None = None) -> Quote:
        inner = self.price.quote(quantity, events)
        return Quote(
            self.model,
            inner.quantity,
            inner.amount,
            self.unit(),
            inner.lines,
            inner.event_amounts,
            money_equivalent=self.to_money(inner.amount),
        )

    def spend(self, balance: object, cost: object) -> WalletDraw:
        """Pay `cost` points from a wallet holding `balance` points."""
        bal = as_decimal(balance, "balance")
        if bal < 0:
            raise InvalidQuantityError("a points balance cannot be negative")
        charged = round_decimal(as_decimal(cost, "cost"), self.points_scale, self.rounding)
        paid = min(bal, charged)
        shortfall = EXACT.subtract(charged, paid)
        unit = self.unit()
        return WalletDraw(
            charged=Money(charged, unit),
            paid=Money(paid, unit),
            remaining=Money(EXACT.subtract(bal, paid), unit),
            shortfall=Money(shortfall, unit),
            shortfall_money=self.to_money(shortfall),
        )


@dataclass(frozen=True, slots=True)
class WalletDraw:
    """The result of spending points: what was charged, paid, left, and owed in money."""

    charged: Money
    paid: Money
    remaining: Money
    shortfall: Money
    shortfall_money: Money


__all__ = ["PointsPrice", "WalletDraw"]
