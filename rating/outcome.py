"""Fees tied to the outcome a customer gets.

Three kinds, all with ``"model": "outcome"`` and told apart by ``kind``:

* ``per_outcome`` — quantity is the count of successful outcomes (e.g. resolved tickets);
  amount = quantity × ``unit_amount``.
* ``value_share`` — quantity is the measured value (savings, revenue produced);
  value = max(measured − ``baseline``, 0); fee = ``rate``% × value, then raised to ``floor_amount``
  and lowered to ``cap_amount`` when those are set. The floor applies even when no value was produced:
  it is the minimum the customer agreed to pay for the service.
* ``kpi_contingent`` — quantity is the KPI reading; the fee is that of the highest threshold the KPI
  reached (``kpi ≥ threshold`` when ``direction`` is ``higher_is_better``, ``kpi ≤ threshold`` when
  ``lower_is_better``); no threshold reached, no fee. Thresholds must be listed from easiest to hardest.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict

from rating.base import CumulativePrice, CurrencyCode, PriceModel
from rating.errors import Problem
from rating.fields import Amount, Dec, Percent
from rating.fixedpoint import as_decimal
from rating.result import Line, Quote
from rating.rounding import EXACT
from rating.unit import Unit, currency

HUNDRED = Decimal(100)
Direction = Literal["higher_is_better", "lower_is_better"]


class PerOutcomePrice(CumulativePrice):
    model: Literal["outcome"] = "outcome"
    kind: Literal["per_outcome"] = "per_outcome"
    unit_amount: Amount

    def amount(self, quantity: Decimal) -> Decimal:
        return EXACT.multiply(quantity, self.unit_amount)

    def breakdown(self, quantity: Decimal) -> tuple[Line, ...]:
        return (Line("per successful outcome", self.amount(quantity), quantity, self.unit_amount),)


class ValueSharePrice(CumulativePrice):
    model: Literal["outcome"] = "outcome"
    kind: Literal["value_share"] = "value_share"
    rate: Percent
    baseline: Dec = Decimal(0)
    floor_amount: Amount | None = None
    cap_amount: Amount | None = None

    def problems(self) -> list[Problem]:
        if self.floor_amount is not None and self.cap_amount is not None and self.floor_amount > self.cap_amount:
            return [
                Problem(
                    "floor_amount",
                    "invalid_min_max",
                    f"floor {self.floor_amount} is above cap {self.cap_amount}",
                )
            ]
        return []

    def value(self, measured: Decimal) -> Decimal:
        return max(EXACT.subtract(measured, self.baseline), Decimal(0))

    def amount(self, quantity: Decimal) -> Decimal:
        fee = EXACT.divide(EXACT.multiply(self.value(quantity), self.rate), HUNDRED)
        if self.floor_amount is not None:
            fee = max(fee, self.floor_amount)
        if self.cap_amount is not None:
            fee = min(fee, self.cap_amount)
        return fee

    def breakdown(self, quantity: Decimal) -> tuple[Line, ...]:
        value = self.value(quantity)
        rate = EXACT.divide(self.rate, HUNDRED)
        share = EXACT.multiply(value, rate)
        lines = [Line(f"{self.rate}% of value above baseline {self.baseline}", share, value, rate)]
        final = self.amount(quantity)
        if final != share:
            lines.append(Line("floor" if final > share else "cap", EXACT.subtract(final, share)))
        return tuple(lines)


class KpiTier(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: Dec
    fee: Amount


class KpiContingentPrice(PriceModel):
    model: Literal["outcome"] = "outcome"
    kind: Literal["kpi_contingent"] = "kpi_contingent"
    currency: CurrencyCode = "USD"
    direction: Direction = "higher_is_better"
    kpi_tiers: tuple[KpiTier, ...]

    def problems(self) -> list[Problem]:
        if not self.kpi_tiers:
            return [Problem("kpi_tiers", "empty_tiers", "needs at least one KPI threshold")]
        problems = []
        for i in range(1, len(self.kpi_tiers)):
            a, b = self.kpi_tiers[i - 1].threshold, self.kpi_tiers[i].threshold
            harder = b > a if self.direction == "higher_is_better" else b < a
            if not harder:
                problems.append(
                    Problem(
                        f"kpi_tiers[{i}].threshold",
                        "invalid_kpi_thresholds",
                        f"{b} must be strictly {'above' if self.direction == 'higher_is_better' else 'below'}"
                        " "
                        f"the previous threshold {a}; list thresholds from easiest to hardest",
                    )
                )
        return problems

    def reached(self, kpi: Decimal) -> int | None:
        best = None
        for i, tier in enumerate(self.kpi_tiers):
            ok = kpi >= tier.threshold if self.direction == "higher_is_better" else kpi <= tier.threshold
            if ok:
                best = i
        return best

    def unit(self) -> Unit:
        return currency(self.currency)

    def quote(self, quantity: Decimal, events: Sequence[Decimal] | None = None, dimension: str | None = None) -> Quote:
        kpi = as_decimal(quantity, "quantity")  # a KPI may be negative (e.g. a change in churn)
        i = self.reached(kpi)
        if i is None:
            lines = (Line("no KPI threshold reached", Decimal(0), kpi),)
            return Quote(self.model, kpi, Decimal(0), self.unit(), lines)
        tier = self.kpi_tiers[i]
        line = Line(f"KPI reached threshold {tier.threshold}", tier.fee, kpi, flat_amount=tier.fee, tier=i)
        return Quote(self.model, kpi, tier.fee, self.unit(), (line,))


__all__ = ["KpiContingentPrice", "KpiTier", "PerOutcomePrice", "ValueSharePrice"]
