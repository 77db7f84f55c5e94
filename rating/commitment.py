"""Minimum commitments with true-up, and caps, per charge and per invoice.

Per charge, ``minimum_commitment`` wraps another price: if the period's amount is below
``minimum_amount`` a *true-up* line brings it up to the minimum; if ``cap_amount`` is set the amount
(after any true-up) never exceeds it. Per invoice, `apply_invoice_limits` does the same over the sum of
an invoice's lines. Event-level amounts of a capped charge follow the capped running total, so spend
stops growing at the cap; the true-up is a period-end line that no event carries, so the event amounts
sum to ``amount − true_up``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict

from rating.base import PriceModel, check_quantity
from rating.errors import Problem
from rating.fields import Amount
from rating.fixedpoint import as_decimal
from rating.leaf import LeafPrice
from rating.result import Line, Quote
from rating.rounding import EXACT
from rating.unit import Unit


def _limit_problems(minimum: Decimal | None, cap: Decimal | None) -> list[Problem]:
    if minimum is not None and cap is not None and cap < minimum:
        return [Problem("cap_amount", "invalid_min_max", f"cap {cap} is below the minimum {minimum}")]
    return []


class MinimumCommitmentPrice(PriceModel):
    model: Literal["minimum_commitment"] = "minimum_commitment"
    price: LeafPrice
    minimum_amount: Amount = Decimal(0)
    cap_amount: Amount | None = None

    def problems(self) -> list[Problem]:
        return _limit_problems(self.minimum_amount, self.cap_amount)

    def unit(self) -> Unit:
        return self.price.unit()

    def quote(self, quantity: Decimal, events: Sequence[Decimal] | None = None, dimension: str | None = None) -> Quote:
        inner = self.price.quote(check_quantity(quantity), events)
        base = inner.amount
        true_up = max(EXACT.subtract(self.minimum_amount, base), Decimal(0))
        total = EXACT.add(base, true_up)
        lines = list(inner.lines)
        if true_up:
            lines.append(Line(f"true-up to minimum commitment {self.minimum_amount}", true_up))
        if self.cap_amount is not None and total > self.cap_amount:
            lines.append(Line(f"cap at {self.cap_amount}", EXACT.subtract(self.cap_amount, total)))
            total = self.cap_amount
        event_amounts = None
        if inner.event_amounts is not None:
            event_amounts = _capped_increments(inner.event_amounts, self.cap_amount)
        return Quote(self.model, inner.quantity, total, inner.unit, tuple(lines), event_amounts)


def _capped_increments(amounts: Sequence[Decimal], cap: Decimal | None) -> tuple[Decimal, ...]:
    out: list[Decimal] = []
    running = Decimal(0)
    previous = Decimal(0)
    for a in amounts:
        running = EXACT.add(running, a)
        capped = running if cap is None else min(running, cap)
        out.append(EXACT.subtract(capped, previous))
        previous = capped
    return tuple(out)


class InvoiceLimits(BaseModel):
    """Invoice-wide commitment: a minimum the customer pays and a cap they never exceed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    minimum_commitment: Amount | None = None
    cap_amount: Amount | None = None


@dataclass(frozen=True, slots=True)
class InvoiceTotals:
    subtotal: Decimal
    true_up: Decimal
    cap_adjustment: Decimal
    total: Decimal


def apply_invoice_limits(line_amounts: Sequence[object], limits: InvoiceLimits) -> InvoiceTotals:
    problems = _limit_problems(limits.minimum_commitment, limits.cap_amount)
    if problems:
        from rating.errors import InvalidPriceError

        raise InvalidPriceError(problems)
    subtotal = Decimal(0)
    for i, a in enumerate(line_amounts):
        subtotal = EXACT.add(subtotal, as_decimal(a, f"line_amounts[{i}]"))
    true_up = Decimal(0)
    if limits.minimum_commitment is not None and subtotal < limits.minimum_commitment:
        true_up = EXACT.subtract(limits.minimum_commitment, subtotal)
    total = EXACT.add(subtotal, true_up)
    cap_adjustment = Decimal(0)
    if limits.cap_amount is not None and total > limits.cap_amount:
        cap_adjustment = EXACT.subtract(limits.cap_amount, total)
        total = limits.cap_amount
    return InvoiceTotals(subtotal, true_up, cap_adjustment, total)


__all__ = ["InvoiceLimits", "InvoiceTotals", "MinimumCommitmentPrice", "apply_invoice_limits"]
