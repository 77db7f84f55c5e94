"""Which class implements a model name, and — for the models the int64 kernels price — everything the
columnar path needs about each, in one place.

A `KernelModel` pairs a price model with:

* its **Decimal reference** (`reference`): the readable spec a kernel must equal to the last digit;
* its **scales** (`price_decimals`, `quantity_decimals`): which of its decimals set the table's
  price and quantity scales;
* its **columns** (`lower`): the price in exact Python integers as one kernel `Row` — a shape the
  kernels know (`LINEAR` tiers or a `STEP` of packages) and that shape's fields;
* its **bound** (`bound`): the largest |amount| or intermediate any quantity in [0, q] can produce,
  in Python integers, non-decreasing in q. `rating.table` turns it into each row's exact quantity
  limit, the overflow proof every kernel call is checked against.

Tests and benchmarks iterate `KERNEL_MODELS` so a model cannot gain a kernel without being held to its
Decimal reference. Adding a kernel model means adding one entry here (and, if no existing shape fits,
a shape in `rating.kernels`); no other file switches on model names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from rating import kernels
from rating.errors import Problem, UnknownModelError
from rating.fixedpoint import INT64_MAX, to_scaled
from rating.package import PackagePrice
from rating.per_unit import PerUnitPrice
from rating.price import MODELS
from rating.tiers import GraduatedPrice, VolumePrice

KernelPrice = PerUnitPrice | PackagePrice | GraduatedPrice | VolumePrice


def model_classes(name: str) -> tuple[type, ...]:
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownModelError(
            [
                Problem(
                    "model",
                    "unknown_model",
                    f"unknown price model {name!r}; choose one of: {', '.join(MODELS)}",
                )
            ]
        ) from None


@dataclass(frozen=True, slots=True)
class TierRow:
    """One LINEAR tier in exact integers: chosen for x > `bound`, amount = base + (x − lower) × unit.

    `up_to` (INT64_MAX when open) and `flat` (price scale) are kept for the bound."""

    bound: int
    lower: int
    base: int  # amount scale, capped at INT64_MAX (see `_graduated`)
    unit: int
    up_to: int
    flat: int


@dataclass(frozen=True, slots=True)
class Row:
    """A price lowered to one kernel row, in exact Python integers (quantities at QS, prices at PS)."""

    shape: int  # kernels.LINEAR or kernels.STEP
    tiers: tuple[TierRow, ...] = ()
    size: int = 0  # STEP: package size (QS)
    amount: int = 0  # STEP: package price (PS), not lifted
    free: int = 0  # STEP: free units (QS)


@dataclass(frozen=True, slots=True)
class KernelModel:
    name: str
    code: int
    price_class: type
    reference: Callable[[Any, Decimal], Decimal]
    price_decimals: Callable[[Any], list[Decimal]]
    quantity_decimals: Callable[[Any], list[Decimal]]
    lower: Callable[[Any, int, int, str], Row]  # (price, quantity scale, price scale, field) → row
    bound: Callable[[Row, int, int], int]  # (row, 10**QS, max quantity) → exact bound

    def __reduce__(self) -> tuple[Callable[[str], KernelModel], tuple[str]]:
        """Pickled by name, so a compiled table can be sent to a worker process."""
        return _by_name, (self.name,)


def reference_amount(price: KernelPrice, quantity: Decimal) -> Decimal:
    """The Decimal reference a kernel must equal to the last digit."""
    return price.amount(quantity)


# -- per_unit ---------------------------------------------------------------------------------------------
def _per_unit_row(p: PerUnitPrice, qs: int, ps: int, where: str) -> Row:
    unit = to_scaled(p.unit_amount, ps, f"{where}.unit_amount")
    return Row(kernels.LINEAR, (TierRow(-1, 0, 0, unit, INT64_MAX, 0),))


def _per_unit_bound(row: Row, qpow: int, q: int) -> int:
    return q * row.tiers[0].unit


# -- package ----------------------------------------------------------------------------------------------
def _package_row(p: PackagePrice, qs: int, ps: int, where: str) -> Row:
    return Row(
        kernels.STEP,
        size=to_scaled(p.package_size, qs, f"{where}.package_size"),
        amount=to_scaled(p.package_amount, ps, f"{where}.package_amount"),
        free=to_scaled(p.free_units, qs, f"{where}.free_units"),
    )


def _package_bound(row: Row, qpow: int, q: int) -> int:
    packages = -(-max(q - row.free, 0) // row.size)
    # q + size: the dividend of the classic ⌈(billable + size − 1) / size⌉; kept so that the refusals
    # are exactly those of every earlier kernel.
    return max(packages * row.amount * qpow, q + row.size)


# -- graduated / volume -----------------------------------------------------------------------------------
def _tier_ints(p: GraduatedPrice | VolumePrice, qs: int, ps: int, where: str) -> list[tuple[int, int, int]]:
    out = []
    for k, t in enumerate(p.tiers):
        up = INT64_MAX if t.up_to is None else to_scaled(t.up_to, qs, f"{where}.tiers[{k}].up_to")
        unit = to_scaled(t.unit_amount, ps, f"{where}.tiers[{k}].unit_amount")
        flat = to_scaled(t.flat_amount, ps, f"{where}.tiers[{k}].flat_amount")
        out.append((up, unit, flat))
    return out


def _graduated_row(p: GraduatedPrice, qs: int, ps: int, where: str) -> Row:
    qpow = 10**qs
    below, running = 0, 0  # running: the exact amount at `below`
    tiers = []
    for k, (up, unit, flat) in enumerate(_tier_ints(p, qs, ps, where)):
        # base may not fit when the tier lies beyond int64 amounts; capping is safe because no quantity
        # reaching that tier passes its row's limit (its true amount is at least base).
        base = min(running + flat * qpow, INT64_MAX)
        tiers.append(TierRow(below if k else -1, below, base, unit, up, flat))
        running += flat * qpow + (up - below) * unit
        below = up
    return Row(kernels.LINEAR, tuple(tiers))


def _graduated_bound(row: Row, qpow: int, q: int) -> int:
    bound = total = lower = 0
    for k, t in enumerate(row.tiers):
        if k > 0 and q <= lower:
            break
        total += (min(q, t.up_to) - lower) * t.unit + t.flat * qpow
        bound = max(bound, total, q * t.unit)
        lower = t.up_to
    return bound


def _volume_row(p: VolumePrice, qs: int, ps: int, where: str) -> Row:
    qpow = 10**qs
    tiers = []
    below = -1
    for up, unit, flat in _tier_ints(p, qs, ps, where):
        tiers.append(TierRow(below, 0, min(flat * qpow, INT64_MAX), unit, up, flat))
        below = up
    return Row(kernels.LINEAR, tuple(tiers))


def _volume_bound(row: Row, qpow: int, q: int) -> int:
    bound = 0
    last = len(row.tiers) - 1
    for k, t in enumerate(row.tiers):
        top = min(q, t.up_to)
        bound = max(bound, top * t.unit + t.flat * qpow, q * t.unit if k == last else 0)
        if q <= t.up_to:
            break
    return bound


def _tier_prices(p: GraduatedPrice | VolumePrice) -> list[Decimal]:
    return [x for t in p.tiers for x in (t.unit_amount, t.flat_amount)]


def _tier_bounds(p: GraduatedPrice | VolumePrice) -> list[Decimal]:
    return [t.up_to for t in p.tiers if t.up_to is not None]


#: Model name → everything the columnar path knows about it.
KERNEL_MODELS: dict[str, KernelModel] = {
    m.name: m
    for m in (
        KernelModel(
            "per_unit", kernels.PER_UNIT, PerUnitPrice, reference_amount,
            lambda p: [p.unit_amount], lambda p: [], _per_unit_row, _per_unit_bound,
        ),
        KernelModel(
            "package", kernels.PACKAGE, PackagePrice, reference_amount,
            lambda p: [p.package_amount], lambda p: [p.package_size, p.free_units], _package_row, _package_bound,
        ),
        KernelModel(
            "graduated", kernels.GRADUATED, GraduatedPrice, reference_amount,
            _tier_prices, _tier_bounds, _graduated_row, _graduated_bound,
        ),
        KernelModel(
            "volume", kernels.VOLUME, VolumePrice, reference_amount,
            _tier_prices, _tier_bounds, _volume_row, _volume_bound,
        ),
    )
}  # fmt: skip

#: The price classes the kernels take, spelled out so that isinstance narrows to `KernelPrice`.
KERNEL_CLASSES = (PerUnitPrice, PackagePrice, GraduatedPrice, VolumePrice)
assert set(KERNEL_CLASSES) == {m.price_class for m in KERNEL_MODELS.values()}, "KERNEL_CLASSES lags the registry"

#: Model name → (kernel model code, reference function).
KERNEL_REFERENCES: dict[str, tuple[int, Callable[[KernelPrice, Decimal], Decimal]]] = {
    name: (m.code, m.reference) for name, m in KERNEL_MODELS.items()
}


def _by_name(name: str) -> KernelModel:
    return KERNEL_MODELS[name]


def kernel_model(price: object) -> KernelModel | None:
    """The registry entry of a kernel-priced model instance, or None (rated by the reference path)."""
    found = KERNEL_MODELS.get(getattr(price, "model", ""))
    return found if found is not None and isinstance(price, found.price_class) else None


def limit(model: KernelModel, row: Row, qpow: int) -> int:
    """The largest quantity q in [0, INT64_MAX] with bound(q) ≤ INT64_MAX, or −1 if not even 0 fits.

    Exact because the bound is non-decreasing in q: a quantity is safe exactly when it is ≤ the limit.
    """
    if model.bound(row, qpow, 0) > INT64_MAX:
        return -1
    lo, hi = 0, INT64_MAX
    if model.bound(row, qpow, hi) <= INT64_MAX:
        return hi
    while hi - lo > 1:  # invariant: bound(lo) fits, bound(hi) does not
        mid = (lo + hi) // 2
        if model.bound(row, qpow, mid) <= INT64_MAX:
            lo = mid
        else:
            hi = mid
    return lo


__all__ = [
    "KERNEL_CLASSES",
    "KERNEL_MODELS",
    "KERNEL_REFERENCES",
    "KernelModel",
    "KernelPrice",
    "Row",
    "TierRow",
    "kernel_model",
    "limit",
    "model_classes",
    "reference_amount",
]
