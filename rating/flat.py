"""Recurring flat fees, billed in advance or in arrears, prorated on partial periods.

`quote(price, n)` charges the fee `n` times (n periods, or n seats). Proration is a separate, explicit
step because it needs the period and the active span, which rating never reads from a clock:
`prorate` takes both as arguments. By day, a span counts calendar days (start day included, end day
excluded, like a half-open interval of dates); by second, it counts seconds. The fraction
used ÷ period is not a finite decimal in general (10/31), so proration is the one place a flat fee is
rounded: once, to the currency's minor unit, with the price's named `rounding` mode.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from fractions import Fraction
from typing import Literal

from rating.base import CumulativePrice
from rating.errors import InvalidQuantityError
from rating.fields import Amount
from rating.fixedpoint import as_decimal
from rating.result import Line, Quote
from rating.rounding import EXACT, RoundingMode, round_scaled


class FlatPrice(CumulativePrice):
    model: Literal["flat"] = "flat"
    amount_per_period: Amount
    billing: Literal["in_advance", "in_arrears"] = "in_advance"
    proration: Literal["none", "day", "second"] = "day"
    rounding: RoundingMode = RoundingMode.HALF_EVEN

    def amount(self, quantity: Decimal) -> Decimal:
        return EXACT.multiply(quantity, self.amount_per_period)

    def breakdown(self, quantity: Decimal) -> tuple[Line, ...]:
        return (Line("flat fee", self.amount(quantity), quantity, self.amount_per_period),)

    def billed_on(self, period_start: dt.datetime, period_end: dt.datetime) -> dt.datetime:
        """When the fee for a period is invoiced: its start (in advance) or its end (in arrears)."""
        return period_start if self.billing == "in_advance" else period_end

    def proration_fraction(
        self,
        period_start: dt.datetime,
        period_end: dt.datetime,
        active_start: dt.datetime,
        active_end: dt.datetime,
    ) -> tuple[int, int]:
        """(used, whole) in days or seconds; both ends half-open, so consecutive spans never overlap."""
        if not period_start < period_end:
            raise InvalidQuantityError(f"period_start {period_start} must be before period_end {period_end}")
        start, end = max(period_start, active_start), min(period_end, active_end)
        if self.proration == "none":
            return (1, 1) if start < end else (0, 1)
        if self.proration == "day":
            whole = (period_end.date() - period_start.date()).days
            used = max(0, (end.date() - start.date()).days) if start < end else 0
        else:
            whole = int((period_end - period_start).total_seconds())
            used = max(0, int((end - start).total_seconds()))
        if whole <= 0:
            raise InvalidQuantityError("the period must span at least one day (or second)")
        return used, whole

    def prorate(
        self,
        period_start: dt.datetime,
        period_end: dt.datetime,
        active_start: dt.datetime,
        active_end: dt.datetime,
        quantity: object = 1,
    ) -> Quote:
        used, whole = self.proration_fraction(period_start, period_end, active_start, active_end)
        q = as_decimal(quantity, "quantity")
        full = EXACT.multiply(q, self.amount_per_period)
        scale = self.unit().scale
        share = Fraction(full) * used / whole * 10**scale  # exact rational, rounded once below
        amount = Decimal(round_scaled(share.numerator, share.denominator, self.rounding)).scaleb(-scale)
        label = f"flat fee prorated {used}/{whole} {self.proration if self.proration != 'none' else 'period'}"
        line = Line(label, amount, q, self.amount_per_period)
        return Quote(self.model, q, amount, self.unit(), (line,))


__all__ = ["FlatPrice"]
