"""The per-pair kernel and flat column layout that `rating.kernels` replaced, kept as a test oracle.

This is the code as it was before the specialised kernels (model code switched per pair, fifteen
positional columns, the whole-run bound scan before the kernel). The property tests require the new
dispatcher to give the very same amounts, and to refuse exactly the same runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from rating.errors import InvalidQuantityError, RatingOverflowError
from rating.fixedpoint import INT64_MAX, Int64Array, to_scaled
from rating.package import PackagePrice
from rating.per_unit import PerUnitPrice
from rating.table import PriceTable

PER_UNIT, PACKAGE, GRADUATED, VOLUME = 0, 1, 2, 3
CODES = {"per_unit": PER_UNIT, "package": PACKAGE, "graduated": GRADUATED, "volume": VOLUME}


@numba.njit(cache=True, nogil=True)
def rate_pairs_kernel(charge, qty, model, a, b, f, t0, t1, lower, upto, unit, flat, base, qpow, out):  # type: ignore[no-untyped-def]
    for i in range(charge.shape[0]):
        c = charge[i]
        code = model[c]
        x = qty[i]
        if code == PER_UNIT:
            out[i] = x * a[c]
        elif code == PACKAGE:
            billable = x - f[c]
            if billable <= 0:
                out[i] = 0
            else:
                out[i] = ((billable + a[c] - 1) // a[c]) * b[c] * qpow
        else:
            t = t0[c]
            for u in range(t0[c], t1[c] - 1):
                t += x > upto[u]
            if code == GRADUATED:
                out[i] = base[t] + (x - lower[t]) * unit[t]
            else:
                out[i] = x * unit[t] + flat[t] * qpow


@dataclass
class LegacyTable:
    """The old columns of a compiled table (same rows, same scales)."""

    table: PriceTable
    model: Int64Array
    a: Int64Array
    b: Int64Array
    f: Int64Array
    t0: Int64Array
    t1: Int64Array
    lower: Int64Array
    upto: Int64Array
    unit: Int64Array
    flat: Int64Array
    base: Int64Array

    @classmethod
    def of(cls, table: PriceTable) -> LegacyTable:
        qs, ps = table.quantity_scale, table.price_scale
        n = table.n_charges
        model = np.zeros(n, np.int64)
        a, b, f, t0, t1 = (np.zeros(n, np.int64) for _ in range(5))
        lower: list[int] = []
        upto: list[int] = []
        unit: list[int] = []
        flat: list[int] = []
        base: list[int] = []
        for c, p in enumerate(table.prices):
            model[c] = CODES[p.model]
            t0[c] = len(upto)
            if isinstance(p, PerUnitPrice):
                a[c] = to_scaled(p.unit_amount, ps)
            elif isinstance(p, PackagePrice):
                a[c] = to_scaled(p.package_size, qs)
                b[c] = to_scaled(p.package_amount, ps)
                f[c] = to_scaled(p.free_units, qs)
            else:
                qpow = 10**qs
                below, running = 0, 0
                for t in p.tiers:
                    up = INT64_MAX if t.up_to is None else to_scaled(t.up_to, qs)
                    u = to_scaled(t.unit_amount, ps)
                    fl = to_scaled(t.flat_amount, ps)
                    lower.append(below)
                    upto.append(up)
                    unit.append(u)
                    flat.append(fl)
                    base.append(min(running + fl * qpow, INT64_MAX))
                    running += fl * qpow + (up - below) * u
                    below = up
            t1[c] = len(upto)
        return cls(
            table, model, a, b, f, t0, t1,
            np.array(lower or [0], np.int64), np.array(upto or [INT64_MAX], np.int64),
            np.array(unit or [0], np.int64), np.array(flat or [0], np.int64), np.array(base or [0], np.int64),
        )  # fmt: skip

    def max_amount(self, c: int, max_quantity: int) -> int:
        """The old bound, written per model code (what the registry's bounds must equal)."""
        qpow = 10**self.table.quantity_scale
        code = int(self.model[c])
        q = int(max_quantity)
        if code == PER_UNIT:
            return q * int(self.a[c])
        if code == PACKAGE:
            size, amount, free = int(self.a[c]), int(self.b[c]), int(self.f[c])
            packages = -(-max(q - free, 0) // size)
            return max(packages * amount * qpow, q + size)
        lo, hi = int(self.t0[c]), int(self.t1[c])
        bound = total = lower = 0
        for t in range(lo, hi):
            up = int(self.upto[t])
            u, fl = int(self.unit[t]), int(self.flat[t])
            if code == GRADUATED:
                if t > lo and q <= lower:
                    break
                total += (min(q, up) - lower) * u + fl * qpow
                bound = max(bound, total, q * u)
            else:
                top = min(q, up)
                bound = max(bound, top * u + fl * qpow, q * u if t == hi - 1 else 0)
                if q <= up:
                    break
            lower = up
        return bound

    def rate_pairs(self, charge: Int64Array, qty: Int64Array) -> Int64Array:
        """The old checked path: scan, bound every charge, then the per-pair kernel."""
        n = self.table.n_charges
        if charge.size and (int(charge.min()) < 0 or int(charge.max()) >= n):
            raise InvalidQuantityError("charge indices are outside the table")
        if qty.size and int(qty.min()) < 0:
            raise InvalidQuantityError("quantities are negative")
        for c in range(n):
            picked = qty[charge == c]
            if self.max_amount(c, int(picked.max()) if picked.size else 0) > INT64_MAX:
                raise RatingOverflowError(f"charge {c}")
        out = np.empty(charge.shape[0], np.int64)
        rate_pairs_kernel(
            charge, qty, self.model, self.a, self.b, self.f, self.t0, self.t1, self.lower, self.upto,
            self.unit, self.flat, self.base, np.int64(10**self.table.quantity_scale), out,
        )  # fmt: skip
        return out


__all__ = ["LegacyTable", "rate_pairs_kernel"]
