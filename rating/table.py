"""Price tables compiled to int64 kernel columns, and the checked wrappers around the kernels.

The wrappers are where every check lives: dtypes, shapes (messages print both), index ranges,
non-negative quantities, and — because numba integers wrap — the exact overflow proof. Compiling a
table gives each row its *limit*, the largest quantity whose amount and every intermediate fit int64,
found in Python integers from the registry's bound (`rating.registry.limit`); the kernels check each
chunk of pairs against it before computing any amount of the chunk. A run that could overflow raises
`RatingOverflowError` naming the charge and the amount it would reach; it is never silently wrapped.
Every model-specific fact (columns, scales, bound, reference) comes from `rating.registry`.
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
from rating.fixedpoint import INT64_MAX, MAX_SCALE, Int64Array, decimal_places
from rating.registry import KERNEL_MODELS, KernelModel, KernelPrice, Row, kernel_model, limit
from rating.rounding import RoundingMode


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
    #: The registry entry and the exact integer row of each kernel row.
    models: tuple[KernelModel, ...]
    lowered: tuple[Row, ...]
    #: What the kernels read.
    columns: kernels.Columns
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
            if kernel_model(p) is None:
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
            parsed.append(p)  # type: ignore[arg-type]

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
        ps = max((decimal_places(d) for p in parsed for d in _model(p).price_decimals(p)), default=0)
        need_qs = max((decimal_places(d) for p in parsed for d in _model(p).quantity_decimals(p)), default=0)
        qs = need_qs if quantity_scale is None else quantity_scale
        if qs < need_qs:
            raise InvalidQuantityError(f"quantity_scale {qs} is too small: the table's bounds need {need_qs}")
        if qs + ps > MAX_SCALE:
            raise RatingOverflowError(
                f"quantity scale {qs} + price scale {ps} exceeds {MAX_SCALE} digits; amounts would not fit int64"
            )
        models = tuple(_model(p) for p in parsed)
        lowered = tuple(m.lower(p, qs, ps, f"[{c}]") for c, (m, p) in enumerate(zip(models, parsed, strict=True)))
        table = cls(tuple(parsed), qs, ps, models, lowered, _columns(models, lowered, 10**qs), rows=rows)
        for c in range(len(parsed)):  # flat fees alone must fit once lifted to the amount scale
            table.max_amount(c, 0)
        return table

    # -- exact bounds in Python integers ----------------------------------------------------------
    def max_amount(self, c: int, max_quantity: int) -> int:
        """The largest |amount| or intermediate any quantity in [0, max_quantity] can produce for charge c.

        The bound is the registry's, in Python integers; raises `RatingOverflowError` if it exceeds int64.
        """
        q = int(max_quantity)
        bound = self.models[c].bound(self.lowered[c], 10**self.quantity_scale, q)
        if bound > INT64_MAX:
            raise RatingOverflowError(
                f"charge {c} ({self.prices[c].model}) at quantity {q} (scale {self.quantity_scale}) reaches "
                f"{bound} at scale {self.amount_scale}, beyond int64; lower the quantity or price scale "
                "or split the run"
            )
        return bound

    # -- checked entry points ---------------------------------------------------------------------
    def rate_pairs(self, charge: Int64Array, quantity: Int64Array, out: Int64Array | None = None) -> Int64Array:
        """Amount of each (charge, quantity) pair at `amount_scale`, exact.

        Any order is accepted; pairs grouped by charge (contiguous runs) are the fast case, rated by
        loops specialised to each row. If a pair is refused (its index, sign or overflow), the error is
        raised and `out` holds exact amounts of some earlier pairs and nothing else meaningful.
        """
        charge = _check_array("charge", charge)
        quantity = _check_array("quantity", quantity, charge.shape[0])
        out = np.empty(charge.shape[0], np.int64) if out is None else _check_array("out", out, charge.shape[0])
        if kernels.rate_pairs_kernel(self.columns, charge, quantity, out) >= 0:
            self._check_pairs(charge, quantity)  # raises the exact error: bad index, negative, overflow
            raise AssertionError("the kernel refused a chunk the exact proof accepts")  # pragma: no cover
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
        kernels.rate_events_kernel(self.columns, offsets, stream_charge, quantity, out)
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


def _model(p: object) -> KernelModel:
    found = kernel_model(p)
    assert found is not None
    return found


def _columns(models: Sequence[KernelModel], rows: Sequence[Row], qpow: int) -> kernels.Columns:
    """Lay rows out as kernel columns: per-row fields, then tier slots (small rows padded, see kernels)."""
    n = len(rows)
    per_row = {name: np.zeros(n, np.int64) for name in ("shape", "tiers", "first", "limit", "size", "amount",
                                                         "free", "shift1", "shift2")}  # fmt: skip
    magic = np.zeros(n, np.uint64)
    bound: list[int] = []
    lower: list[int] = []
    base: list[int] = []
    unit: list[int] = []
    for r, (model, row) in enumerate(zip(models, rows, strict=True)):
        per_row["shape"][r] = row.shape
        per_row["limit"][r] = limit(model, row, qpow)
        if row.shape == kernels.STEP:
            m, s1, s2 = kernels.magic_for(row.size)
            per_row["size"][r] = row.size
            per_row["amount"][r] = min(row.amount * qpow, INT64_MAX)  # capped: a package past it fails the limit
            per_row["free"][r] = row.free
            magic[r], per_row["shift1"][r], per_row["shift2"][r] = m, s1, s2
            continue
        k = len(row.tiers)
        slots = kernels.SMALL_TIERS if k <= kernels.SMALL_TIERS else kernels.MID_TIERS if k <= kernels.MID_TIERS else k
        per_row["tiers"][r] = k
        per_row["first"][r] = len(bound)
        for t in row.tiers:
            bound.append(t.bound)
            lower.append(t.lower)
            base.append(t.base)
            unit.append(t.unit)
        for _ in range(slots - k):  # pads: never chosen
            bound.append(INT64_MAX)
            lower.append(0)
            base.append(0)
            unit.append(0)
    return kernels.Columns(
        magic=magic,
        bound=np.array(bound or [INT64_MAX], np.int64),
        lower=np.array(lower or [0], np.int64),
        base=np.array(base or [0], np.int64),
        unit=np.array(unit or [0], np.int64),
        **per_row,
    )


def amount_decimal(value: int, scale: int) -> Decimal:
    return Decimal(int(value)).scaleb(-scale)


__all__ = ["KERNEL_MODELS", "KernelPrice", "PriceTable", "amount_decimal"]
