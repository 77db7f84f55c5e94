"""Price tables compiled to flat int64 arrays, and the checked wrappers around the kernels.

The wrappers are where every check lives: dtypes, shapes (messages print both), index ranges,
non-negative quantities, and — because numba integers wrap — an exact Python-integer proof that no
amount or intermediate of the run can leave int64. A run that could overflow raises
`RatingOverflowError` naming the charge; it is never silently wrapped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from rating import kernels
from rating.dimensional import DimensionalPrice
from rating.errors import (
    InvalidPriceError,
    InvalidQuantityError,
    Problem,
    RatingOverflowError,
    UnknownDimensionError,
)
from rating.fixedpoint import INT64_MAX, MAX_SCALE, Int64Array, decimal_places, to_scaled
from rating.package import PackagePrice
from rating.per_unit import PerUnitPrice
from rating.rounding import RoundingMode
from rating.tiers import GraduatedPrice, VolumePrice

KernelPrice = PerUnitPrice | PackagePrice | GraduatedPrice | VolumePrice

#: Model name → (kernel code, class): the models the columnar path can price.
KERNEL_MODELS: dict[str, tuple[int, type]] = {
    "per_unit": (kernels.PER_UNIT, PerUnitPrice),
    "package": (kernels.PACKAGE, PackagePrice),
    "graduated": (kernels.GRADUATED, GraduatedPrice),
    "volume": (kernels.VOLUME, VolumePrice),
}


def _price_decimals(p: KernelPrice) -> list[Decimal]:
    if isinstance(p, PerUnitPrice):
        return [p.unit_amount]
    if isinstance(p, PackagePrice):
        return [p.package_amount]
    return [x for t in p.tiers for x in (t.unit_amount, t.flat_amount)]


def _quantity_decimals(p: KernelPrice) -> list[Decimal]:
    if isinstance(p, PackagePrice):
        return [p.package_size, p.free_units]
    if isinstance(p, GraduatedPrice | VolumePrice):
        return [t.up_to for t in p.tiers if t.up_to is not None]
    return []


def _check_array(name: str, arr: object, length: int | None = None) -> Int64Array:
    if not isinstance(arr, np.ndarray) or arr.dtype != np.int64 or arr.ndim != 1:
        shape = getattr(arr, "shape", None)
        dtype = getattr(arr, "dtype", type(arr).__name__)
        raise InvalidQuantityError(f"{name} must be a 1-D int64 array, got dtype {dtype} shape {shape}")
    if length is not None and arr.shape[0] != length:
        raise InvalidQuantityError(f"{name} has shape {arr.shape} but the other column has shape ({length},)")
    return np.ascontiguousarray(arr)


@dataclass(frozen=True, eq=False)
class PriceTable:
    """Charges as rows of columns; quantities at `quantity_scale`, amounts at `amount_scale`.

    Row i prices input charge i when no price is dimensional; a dimensional price expands into one
    row per dimension value (sorted) plus its default, so use `row(charge, value)` to build the
    charge column of a run that mixes them.
    """

    prices: tuple[KernelPrice, ...]
    quantity_scale: int
    price_scale: int
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
    #: (input charge index, dimension value or None) → row of the columns; pass rows as `charge`.
    rows: dict[tuple[int, str | None], int]

    def row(self, charge: int, value: str | None = None) -> int:
        """The kernel row pricing `charge` (and, for a dimensional price, dimension `value`)."""
        found = self.rows.get((charge, value))
        if found is None and value is not None:
            found = self.rows.get((charge, None))  # the dimensional price's default
        if found is None:
            known = sorted(str(v) for c, v in self.rows if c == charge)
            raise UnknownDimensionError(
                f"charge {charge} has no price for dimension value {value!r}; known values: {', '.join(known)}"
            )
        return found

    @property
    def amount_scale(self) -> int:
        return self.quantity_scale + self.price_scale

    @property
    def qpow(self) -> np.int64:
        return np.int64(10**self.quantity_scale)

    @property
    def n_charges(self) -> int:
        return len(self.prices)

    @classmethod
    def compile(cls, prices: Sequence[object], quantity_scale: int | None = None) -> PriceTable:
        """Lay out `prices` (per_unit, package, graduated, volume) as kernel columns.

        `quantity_scale` defaults to the places the table's bounds need; quantities handed to the
        kernels must be at that scale. The price scale is the most places any amount uses.
        """
        from rating.price import parse_price

        parsed: list[KernelPrice] = []
        problems: list[Problem] = []
        rows: dict[tuple[int, str | None], int] = {}

        def add(i: int, value: str | None, p: object, field: str) -> None:
            if not isinstance(p, PerUnitPrice | PackagePrice | GraduatedPrice | VolumePrice):
                model = getattr(p, "model", type(p).__name__)
                problems.append(
                    Problem(
                        field,
                        "not_columnar",
                        f"{model!r} is rated by the reference path; kernels take {', '.join(KERNEL_MODELS)}"
                        " (or a dimensional price of those)",
                    )
                )
                return
            rows[(i, value)] = len(parsed)
            parsed.append(p)

        for i, raw in enumerate(prices):
            p = parse_price(raw)
            if isinstance(p, DimensionalPrice):
                for value, inner in sorted(p.prices.items()):
                    add(i, value, inner, f"[{i}].prices.{value}.model")
                if p.default is not None:
                    add(i, None, p.default, f"[{i}].default.model")
            else:
                add(i, None, p, f"[{i}].model")
        if problems:
            raise InvalidPriceError(problems)
        units = {p.unit() for p in parsed}
        if len(units) > 1:
            raise InvalidPriceError([Problem("currency", "mixed_currencies", "one table prices in one currency")])
        ps = max((decimal_places(d) for p in parsed for d in _price_decimals(p)), default=0)
        need_qs = max((decimal_places(d) for p in parsed for d in _quantity_decimals(p)), default=0)
        qs = need_qs if quantity_scale is None else quantity_scale
        if qs < need_qs:
            raise InvalidQuantityError(f"quantity_scale {qs} is too small: the table's bounds need {need_qs}")
        if qs + ps > MAX_SCALE:
            raise RatingOverflowError(
                f"quantity scale {qs} + price scale {ps} exceeds {MAX_SCALE} digits; amounts would not fit int64"
            )
        n = len(parsed)
        model = np.zeros(n, np.int64)
        a, b, f, t0, t1 = (np.zeros(n, np.int64) for _ in range(5))
        lower: list[int] = []
        upto: list[int] = []
        unit: list[int] = []
        flat: list[int] = []
        base: list[int] = []
        for c, p in enumerate(parsed):
            model[c] = KERNEL_MODELS[p.model][0]
            t0[c] = len(upto)
            if isinstance(p, PerUnitPrice):
                a[c] = to_scaled(p.unit_amount, ps, f"[{c}].unit_amount")
            elif isinstance(p, PackagePrice):
                a[c] = to_scaled(p.package_size, qs, f"[{c}].package_size")
                b[c] = to_scaled(p.package_amount, ps, f"[{c}].package_amount")
                f[c] = to_scaled(p.free_units, qs, f"[{c}].free_units")
            else:
                qpow = 10**qs
                below, running = 0, 0  # running: the exact amount at `below`, in Python ints
                for k, t in enumerate(p.tiers):
                    up = INT64_MAX if t.up_to is None else to_scaled(t.up_to, qs, f"[{c}].tiers[{k}].up_to")
                    u = to_scaled(t.unit_amount, ps, f"[{c}].tiers[{k}].unit_amount")
                    fl = to_scaled(t.flat_amount, ps, f"[{c}].tiers[{k}].flat_amount")
                    lower.append(below)
                    upto.append(up)
                    unit.append(u)
                    flat.append(fl)
                    base.append(min(running + fl * qpow, INT64_MAX))
                    running += fl * qpow + (up - below) * u
                    below = up
            t1[c] = len(upto)
        table = cls(
            tuple(parsed), qs, ps, model, a, b, f, t0, t1,
            np.array(lower or [0], np.int64),
            np.array(upto or [INT64_MAX], np.int64),
            np.array(unit or [0], np.int64),
            np.array(flat or [0], np.int64),
            np.array(base or [0], np.int64),
            rows=rows,
        )  # fmt: skip
        for c in range(n):  # flat fees alone must fit once lifted to the amount scale
            table.max_amount(c, 0)
        return table

    # -- exact bounds in Python integers ----------------------------------------------------------
    def max_amount(self, c: int, max_quantity: int) -> int:
        """The largest |amount| or intermediate any quantity in [0, max_quantity] can produce for charge c.

        Amounts are never negative, graduated totals grow with quantity, and a volume price peaks at
        some tier's top; so this bound is exact, not merely safe. Raises if it exceeds int64.
        """
        qpow = 10**self.quantity_scale
        code = int(self.model[c])
        q = int(max_quantity)
        if code == kernels.PER_UNIT:
            bound = q * int(self.a[c])
        elif code == kernels.PACKAGE:
            size, amount, free = int(self.a[c]), int(self.b[c]), int(self.f[c])
            packages = -(-max(q - free, 0) // size)
            bound = max(packages * amount * qpow, q + size)
        else:
            lo, hi = int(self.t0[c]), int(self.t1[c])
            bound = 0
            total = 0
            lower = 0
            for t in range(lo, hi):
                up = int(self.upto[t])
                unit, flat = int(self.unit[t]), int(self.flat[t])
                if code == kernels.GRADUATED:
                    if t > lo and q <= lower:
                        break
                    total += (min(q, up) - lower) * unit + flat * qpow
                    bound = max(bound, total, q * unit)
                else:
                    top = min(q, up)
                    bound = max(bound, top * unit + flat * qpow, q * unit if t == hi - 1 else 0)
                    if q <= up:
                        break
                lower = up
        if bound > INT64_MAX:
            raise RatingOverflowError(
                f"charge {c} ({self.prices[c].model}) at quantity {q} (scale {self.quantity_scale}) reaches "
                f"{bound} at scale {self.amount_scale}, beyond int64; lower the quantity or price scale "
                "or split the run"
            )
        return bound

    # -- checked entry points ---------------------------------------------------------------------
    def rate_pairs(self, charge: Int64Array, quantity: Int64Array, out: Int64Array | None = None) -> Int64Array:
        """Amount of each (charge, quantity) pair at `amount_scale`, exact."""
        charge = _check_array("charge", charge)
        quantity = _check_array("quantity", quantity, charge.shape[0])
        self._check_pairs(charge, quantity)
        out = np.empty(charge.shape[0], np.int64) if out is None else _check_array("out", out, charge.shape[0])
        kernels.rate_pairs_kernel(
            charge, quantity, self.model, self.a, self.b, self.f, self.t0, self.t1,
            self.lower, self.upto, self.unit, self.flat, self.base, self.qpow, out,
        )  # fmt: skip
        return out

    def _check_pairs(self, charge: Int64Array, quantity: Int64Array) -> None:
        max_qty = np.zeros(self.n_charges, np.int64)
        bad, negative = kernels.scan_pairs_kernel(charge, quantity, np.int64(self.n_charges), max_qty)
        if bad:
            raise InvalidQuantityError(f"{bad} charge indices are outside 0..{self.n_charges - 1}")
        if negative:
            raise InvalidQuantityError(f"{negative} quantities are negative; quantities must be zero or more")
        for c in range(self.n_charges):
            self.max_amount(c, int(max_qty[c]))

    def rate_events(
        self,
        stream_charge: Int64Array,
        offsets: Int64Array,
        quantity: Int64Array,
        out: Int64Array | None = None,
    ) -> Int64Array:
        """Marginal amount of each event; events of stream s are quantity[offsets[s]:offsets[s+1]].

        Each stream's event amounts sum exactly to `rate_pairs` of its total quantity.
        """
        stream_charge = _check_array("stream_charge", stream_charge)
        offsets = _check_array("offsets", offsets, stream_charge.shape[0] + 1)
        quantity = _check_array("quantity", quantity)
        if offsets[0] != 0 or offsets[-1] != quantity.shape[0] or np.any(np.diff(offsets) < 0):
            raise InvalidQuantityError(
                f"offsets must rise from 0 to len(quantity)={quantity.shape[0]}; got {offsets[0]}..{offsets[-1]}"
            )
        if quantity.shape[0] and int(quantity.min()) < 0:
            raise InvalidQuantityError("event quantities must be zero or more")
        lengths = np.diff(offsets)
        max_q = int(quantity.max()) if quantity.shape[0] else 0
        if max_q * int(lengths.max(initial=0)) > INT64_MAX:
            raise RatingOverflowError("a stream's running quantity could exceed int64; split the stream")
        totals = np.add.reduceat(quantity, offsets[:-1]) if quantity.shape[0] else np.zeros(0, np.int64)
        totals = np.where(lengths > 0, totals, 0)
        self._check_pairs(stream_charge, totals.astype(np.int64))
        out = np.empty(quantity.shape[0], np.int64) if out is None else _check_array("out", out, quantity.shape[0])
        kernels.rate_events_kernel(
            offsets, stream_charge, quantity, self.model, self.a, self.b, self.f, self.t0, self.t1,
            self.lower, self.upto, self.unit, self.flat, self.base, self.qpow, out,
        )  # fmt: skip
        return out

    def to_minor(self, amounts: Int64Array, mode: RoundingMode = RoundingMode.HALF_EVEN) -> Int64Array:
        """Amounts rounded once, each line to the currency's minor unit."""
        amounts = _check_array("amounts", amounts)
        minor = self.prices[0].unit().scale if self.prices else 2
        shift = self.amount_scale - minor
        out = np.empty_like(amounts)
        if shift >= 0:
            kernels.round_kernel(amounts, np.int64(10**shift), np.int64(mode.code), out)
        else:
            peak = int(np.abs(amounts).max(initial=0))
            if peak * 10**-shift > INT64_MAX:
                raise RatingOverflowError(f"amount {peak} does not fit int64 in minor units")
            np.multiply(amounts, np.int64(10**-shift), out=out)
        return out


def amount_decimal(value: int, scale: int) -> Decimal:
    return Decimal(int(value)).scaleb(-scale)


__all__ = ["KERNEL_MODELS", "KernelPrice", "PriceTable", "amount_decimal"]
