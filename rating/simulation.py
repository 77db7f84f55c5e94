"""Re-price a usage history under a candidate plan before launching it.

A history is three columns — customer index, charge index, quantity (int64 at a stated scale) — and a
plan is one price per charge index. Both plans are compiled to kernel tables at the same quantity
scale, every (customer, charge) line is rated and rounded once to the currency's minor unit, as an
invoice would, and lines are summed per customer in exact integers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from rating import kernels
from rating.errors import InvalidPriceError, InvalidQuantityError, Problem, RatingOverflowError
from rating.fixedpoint import INT64_MAX, Int64Array
from rating.rounding import RoundingMode
from rating.table import PriceTable, _check_array
from rating.unit import Unit


@dataclass(frozen=True, eq=False)
class SimulationReport:
    """Revenue per customer under the current and candidate plans, in integer minor units."""

    unit: Unit
    old_minor: Int64Array
    new_minor: Int64Array

    @property
    def difference_minor(self) -> Int64Array:
        return self.new_minor - self.old_minor

    def _dec(self, minor: int) -> Decimal:
        return Decimal(int(minor)).scaleb(-self.unit.scale)

    @property
    def total_old(self) -> Decimal:
        return self._dec(_exact_sum(self.old_minor))

    @property
    def total_new(self) -> Decimal:
        return self._dec(_exact_sum(self.new_minor))

    @property
    def total_difference(self) -> Decimal:
        return self.total_new - self.total_old

    def customer(self, i: int) -> tuple[Decimal, Decimal, Decimal]:
        old, new = self._dec(self.old_minor[i]), self._dec(self.new_minor[i])
        return old, new, new - old

    def biggest_changes(self, k: int = 10) -> list[tuple[int, Decimal]]:
        diff = self.difference_minor
        order = np.argsort(-np.abs(diff), kind="stable")[:k]
        return [(int(i), self._dec(diff[i])) for i in order]


def _exact_sum(arr: Int64Array) -> int:
    """Sum in int64 when that provably cannot wrap, else in Python integers."""
    if int(np.abs(arr).max(initial=0)) * max(arr.size, 1) <= INT64_MAX:
        return int(arr.sum(dtype=np.int64))
    return sum(int(x) for x in arr)


def simulate(
    customer: Int64Array,
    charge: Int64Array,
    quantity: Int64Array,
    quantity_scale: int,
    current: Sequence[object],
    candidate: Sequence[object],
    n_customers: int | None = None,
    mode: RoundingMode = RoundingMode.HALF_EVEN,
) -> SimulationReport:
    customer = _check_array("customer", customer)
    charge = _check_array("charge", charge, customer.shape[0])
    quantity = _check_array("quantity", quantity, customer.shape[0])
    if len(current) != len(candidate):
        raise InvalidPriceError(
            [
                Problem(
                    "candidate",
                    "charge_count_mismatch",
                    f"current plan has {len(current)} charges, candidate has {len(candidate)}; pair them by index",
                )
            ]
        )
    old_table = PriceTable.compile(current, quantity_scale)
    new_table = PriceTable.compile(candidate, quantity_scale)
    if old_table.rows != new_table.rows:
        raise InvalidPriceError(
            [
                Problem(
                    "candidate",
                    "row_layout_mismatch",
                    "dimensional charges must have the same dimension values in both plans",
                )
            ]
        )
    units = {p.unit() for p in (*old_table.prices, *new_table.prices)}
    if len(units) != 1:
        raise InvalidPriceError([Problem("candidate", "mixed_currencies", "both plans must price in one currency")])
    n = int(customer.max(initial=-1)) + 1 if n_customers is None else n_customers
    if customer.size and (int(customer.min()) < 0 or int(customer.max()) >= n):
        raise InvalidQuantityError(f"customer indices must lie in 0..{n - 1}")
    per_customer_lines = int(np.bincount(customer, minlength=n).max(initial=0)) if customer.size else 0
    totals = []
    for table in (old_table, new_table):
        minor = table.to_minor(table.rate_pairs(charge, quantity), mode)
        peak = int(np.abs(minor).max(initial=0))
        if peak * per_customer_lines > INT64_MAX:
            raise RatingOverflowError("a customer's total could exceed int64 minor units; split the run")
        out = np.zeros(n, np.int64)
        kernels.sum_by_group_kernel(customer, minor, out)
        totals.append(out)
    return SimulationReport(units.pop(), totals[0], totals[1])


__all__ = ["SimulationReport", "simulate"]
