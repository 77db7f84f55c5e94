"""Fees as a percentage of transaction amounts (payments, transfers, marketplace take rates).

`percentage` rates each transaction on its own, in order:

1. Free allowance. The first ``free_units_per_events`` transactions and the first
   ``free_units_per_total_aggregation`` of amount are free; when both are set the allowance ends at
   whichever limit is reached first. A transaction straddling the amount limit is free only for the
   part inside it.
2. Fee = ``rate``% × (amount − free part) + ``fixed_amount``. A transaction lying wholly inside the
   allowance is a *free transaction*: no fixed fee, and the per-transaction minimum does not apply.
3. The fee of a non-free transaction is clamped to [``per_transaction_min``, ``per_transaction_max``].

With no event list, the quantity is rated as one transaction. `graduated_percentage` instead applies
graduated tiers of rates to the running total of amounts (tier semantics as in `rating.tiers`).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from rating.base import CumulativePrice, CurrencyCode, PriceModel, check_events_sum, check_quantity
from rating.errors import Problem
from rating.fields import Amount, Percent
from rating.result import Line, Quote
from rating.rounding import EXACT
from rating.tiers import TierSpec, graduated_amount, graduated_lines, tier_problems
from rating.unit import Unit, currency

HUNDRED = Decimal(100)


class PercentagePrice(PriceModel):
    model: Literal["percentage"] = "percentage"
    currency: CurrencyCode = "USD"
    rate: Percent
    fixed_amount: Amount = Decimal(0)
    free_units_per_events: Annotated[int, Field(strict=True)] | None = None
    free_units_per_total_aggregation: Amount | None = None
    per_transaction_min: Amount | None = None
    per_transaction_max: Amount | None = None

    def problems(self) -> list[Problem]:
        problems = []
        if self.free_units_per_events is not None and self.free_units_per_events < 0:
            problems.append(Problem("free_units_per_events", "negative_amount", "must be zero or more"))
        lo, hi = self.per_transaction_min, self.per_transaction_max
        if lo is not None and hi is not None and lo > hi:
            problems.append(Problem("per_transaction_min", "invalid_min_max", f"minimum {lo} is above maximum {hi}"))
        return problems

    def unit(self) -> Unit:
        return currency(self.currency)

    def transaction_fees(self, amounts: Sequence[Decimal]) -> tuple[tuple[Decimal, ...], dict[str, Decimal]]:
        """Per-transaction fees and the totals that explain them."""
        events_left = self.free_units_per_events
        amount_left = self.free_units_per_total_aggregation
        has_allowance = events_left is not None or amount_left is not None
        fees: list[Decimal] = []
        totals = {k: Decimal(0) for k in ("free", "rated", "fixed_count", "min_adj", "max_adj")}
        for a in amounts:
            exhausted = not has_allowance or events_left == 0 or amount_left == 0
            free = Decimal(0)
            if not exhausted:
                free = a if amount_left is None else min(a, amount_left)
                if events_left is not None:
                    events_left -= 1
                if amount_left is not None:
                    amount_left = EXACT.subtract(amount_left, free)
            free_transaction = not exhausted and free == a
            rated = EXACT.subtract(a, free)
            fee = EXACT.divide(EXACT.multiply(rated, self.rate), HUNDRED)
            if not free_transaction:
                fee = EXACT.add(fee, self.fixed_amount)
                totals["fixed_count"] += 1
                if self.per_transaction_min is not None and fee < self.per_transaction_min:
                    totals["min_adj"] = EXACT.add(totals["min_adj"], self.per_transaction_min - fee)
                    fee = self.per_transaction_min
                if self.per_transaction_max is not None and fee > self.per_transaction_max:
                    totals["max_adj"] = EXACT.add(totals["max_adj"], self.per_transaction_max - fee)
                    fee = self.per_transaction_max
            totals["free"] = EXACT.add(totals["free"], free)
            totals["rated"] = EXACT.add(totals["rated"], rated)
            fees.append(fee)
        return tuple(fees), totals

    def quote(self, quantity: Decimal, events: Sequence[Decimal] | None = None, dimension: str | None = None) -> Quote:
        q = check_quantity(quantity)
        if events is None:
            amounts = [q] if q > 0 else []
        else:
            amounts = [check_quantity(e, f"events[{i}]") for i, e in enumerate(events)]
            check_events_sum(q, amounts)
        fees, t = self.transaction_fees(amounts)
        rate = EXACT.divide(self.rate, HUNDRED)
        lines = [
            Line("free allowance", Decimal(0), t["free"]),
            Line(f"{self.rate}% of transactions", EXACT.multiply(t["rated"], rate), t["rated"], rate),
            Line(
                "fixed fee per transaction",
                EXACT.multiply(t["fixed_count"], self.fixed_amount),
                t["fixed_count"],
                self.fixed_amount,
            ),
        ]
        if t["min_adj"]:
            lines.append(Line("per-transaction minimum", t["min_adj"]))
        if t["max_adj"]:
            lines.append(Line("per-transaction maximum", t["max_adj"]))
        return Quote(
            self.model, q, sum(fees, Decimal(0)), self.unit(), tuple(lines),
            event_amounts=fees if events is not None else None,
        )  # fmt: skip


class PercentageTier(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    up_to: Amount | None
    rate: Percent = Decimal(0)
    flat_amount: Amount = Decimal(0)


class GraduatedPercentagePrice(CumulativePrice):
    """Graduated tiers of rates over the period's total transaction amount."""

    model: Literal["graduated_percentage"] = "graduated_percentage"
    tiers: tuple[PercentageTier, ...]

    def problems(self) -> list[Problem]:
        return tier_problems([t.up_to for t in self.tiers], "graduated_percentage")

    def specs(self) -> tuple[TierSpec, ...]:
        return tuple((t.up_to, EXACT.divide(t.rate, HUNDRED), t.flat_amount) for t in self.tiers)

    def amount(self, quantity: Decimal) -> Decimal:
        return graduated_amount(self.specs(), quantity)

    def breakdown(self, quantity: Decimal) -> tuple[Line, ...]:
        return graduated_lines(self.specs(), quantity)


__all__ = ["GraduatedPercentagePrice", "PercentagePrice", "PercentageTier"]
