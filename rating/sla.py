"""Service credits when a service level is missed.

The quantity is the service-level indicator measured over the period (uptime %, p99 latency ms).
Each tier names a threshold and the percentage of the affected fee credited when the measurement is
worse than it (below it for ``higher_is_better`` such as uptime, above it for ``lower_is_better``
such as latency). The worst tier missed applies — credits do not stack — and the credit is capped at
``cap_percent`` of the fee. The amount is negative: a credit reduces the invoice.
Tiers are listed from the mildest miss to the worst, with credits that never decrease.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict

from rating.base import CurrencyCode, PriceModel
from rating.errors import Problem
from rating.fields import Amount, Dec, Percent
from rating.fixedpoint import as_decimal
from rating.result import Line, Quote
from rating.rounding import EXACT
from rating.unit import Unit, currency

HUNDRED = Decimal(100)


class SlaTier(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: Dec
    credit_percent: Percent


class SlaCreditPrice(PriceModel):
    model: Literal["sla_credit"] = "sla_credit"
    currency: CurrencyCode = "USD"
    metric: str = "uptime_percent"
    direction: Literal["higher_is_better", "lower_is_better"] = "higher_is_better"
    affected_fee: Amount
    tiers: tuple[SlaTier, ...]
    cap_percent: Percent = HUNDRED

    def problems(self) -> list[Problem]:
        if not self.tiers:
            return [Problem("tiers", "empty_tiers", "needs at least one service-level tier")]
        problems = []
        for i in range(1, len(self.tiers)):
            prev, cur = self.tiers[i - 1], self.tiers[i]
            worse = (
                cur.threshold < prev.threshold
                if self.direction == "higher_is_better"
                else cur.threshold > prev.threshold
            )
            if not worse:
                problems.append(
                    Problem(
                        f"tiers[{i}].threshold",
                        "invalid_sla_tiers",
                        f"{cur.threshold} must be a worse service level than the previous threshold "
                        f"{prev.threshold}; list tiers from the mildest miss to the worst",
                    )
                )
            if cur.credit_percent < prev.credit_percent:
                problems.append(
                    Problem(
                        f"tiers[{i}].credit_percent",
                        "invalid_sla_tiers",
                        "a worse miss must not credit less than a milder one",
                    )
                )
        return problems

    def unit(self) -> Unit:
        return currency(self.currency)

    def missed_tier(self, measured: Decimal) -> int | None:
        worst = None
        for i, tier in enumerate(self.tiers):
            missed = measured < tier.threshold if self.direction == "higher_is_better" else measured > tier.threshold
            if missed:
                worst = i
        return worst

    def quote(self, quantity: Decimal, events: Sequence[Decimal] | None = None, dimension: str | None = None) -> Quote:
        measured = as_decimal(quantity, "quantity")
        i = self.missed_tier(measured)
        if i is None:
            line = Line(f"{self.metric} {measured}: objective met", Decimal(0), measured)
            return Quote(self.model, measured, Decimal(0), self.unit(), (line,))
        pct = min(self.tiers[i].credit_percent, self.cap_percent)
        credit = -EXACT.divide(EXACT.multiply(self.affected_fee, pct), HUNDRED)
        line = Line(
            f"{self.metric} {measured} missed {self.tiers[i].threshold}: credit {pct}% of fee",
            credit,
            Decimal(1),
            credit,
            tier=i,
        )
        return Quote(self.model, measured, credit, self.unit(), (line,))


__all__ = ["SlaCreditPrice", "SlaTier"]
