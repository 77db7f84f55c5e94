"""numba kernels over columnar int64 arrays: one call prices a whole billing run.

Fixed point: quantities are int64 at scale QS, prices at scale PS, and every amount is produced at
scale QS + PS (flat and package amounts are lifted by ``qpow = 10**QS``), so each product is exact and
no rounding happens inside a kernel. Kernels write into preallocated ``out`` arrays and check
nothing: numba integers wrap silently, so `rating.table` proves beforehand, in Python integers, that
no intermediate can exceed int64, and refuses the run otherwise.

Model codes and table layout (one row per charge ``c``):

* PER_UNIT:  a[c] = unit price
* PACKAGE:   a[c] = package size (QS), b[c] = package price (PS), f[c] = free units (QS)
* GRADUATED / VOLUME: tiers t in [t0[c], t1[c]) with lower[t] (exclusive, QS), upto[t] (QS,
  INT64_MAX for the open tier), unit[t] (PS), flat[t] (PS) and, for graduated, base[t] (QS+PS): the
  amount at lower[t] plus tier t's flat fee, so amount(x) = base[t] + (x − lower[t]) × unit[t] for x in
  tier t. base[t] is capped at INT64_MAX when it would not fit; no quantity reaching such a tier can
  pass the wrapper's bound check, since its true amount is at least base[t].

Compilation is lazy (first call per type signature) and cached on disk (``cache=True``). Measured on
the 2-core dev box: with an empty cache the first priced batch takes ~0.7 s (compiling the scan and
pairs kernels) and the remaining kernels ~0.7 s more; with the cache warm the first batch returns in
~0.2 s after ``import rating``. Services call `warm_up()` at start so no request waits for either.
"""

from __future__ import annotations

import numba
import numpy as np

PER_UNIT = 0
PACKAGE = 1
GRADUATED = 2
VOLUME = 3

ROUND_HALF_EVEN = 0
ROUND_HALF_UP = 1
ROUND_DOWN = 2
ROUND_UP = 3


@numba.njit(cache=True, nogil=True)
def rate_pairs_kernel(charge, qty, model, a, b, f, t0, t1, lower, upto, unit, flat, base, qpow, out):  # type: ignore[no-untyped-def]
    """out[i] = amount of qty[i] under charge[i]'s price (cumulative amount of the quantity).

    The per-model code is written out inside the loop rather than called: passing the tier arrays to
    a helper on every pair cost a factor of ten. The tier of a quantity is found without branches
    (counting the bounds it exceeds), which keeps random quantities from defeating branch prediction.
    """
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


@numba.njit(cache=True, nogil=True)
def rate_events_kernel(offsets, stream_charge, qty, model, a, b, f, t0, t1, lower, upto, unit, flat, base, qpow, out):  # type: ignore[no-untyped-def]
    """Marginal amount of each event: cumulative(after) − cumulative(before), per stream.

    Events of stream s are qty[offsets[s]:offsets[s+1]] in arrival order; the running quantity starts
    at 0 and the "before" amount of the first event is 0, so a stream's events sum to the amount of its
    total. The cumulative amount is the same closed form as `rate_pairs_kernel`.
    """
    for s in range(stream_charge.shape[0]):
        c = stream_charge[s]
        code = model[c]
        running = 0
        previous = 0
        for i in range(offsets[s], offsets[s + 1]):
            running += qty[i]
            x = running
            if code == PER_UNIT:
                cumulative = x * a[c]
            elif code == PACKAGE:
                billable = x - f[c]
                cumulative = 0 if billable <= 0 else ((billable + a[c] - 1) // a[c]) * b[c] * qpow
            else:
                t = t0[c]
                for u in range(t0[c], t1[c] - 1):
                    t += x > upto[u]
                cumulative = base[t] + (x - lower[t]) * unit[t] if code == GRADUATED else x * unit[t] + flat[t] * qpow
            out[i] = cumulative - previous
            previous = cumulative


@numba.njit(cache=True, nogil=True)
def round_kernel(values, divisor, mode, out):  # type: ignore[no-untyped-def]
    """out[i] = values[i] / divisor rounded by mode (see `rating.rounding.round_scaled`)."""
    for i in range(values.shape[0]):
        v = values[i]
        neg = v < 0
        if neg:
            v = -v
        q = v // divisor
        r = v - q * divisor
        if r != 0 and (
            mode == ROUND_UP
            or (mode == ROUND_HALF_UP and 2 * r >= divisor)
            or (mode == ROUND_HALF_EVEN and (2 * r > divisor or (2 * r == divisor and q % 2 == 1)))
        ):
            q += 1
        out[i] = -q if neg else q


@numba.njit(cache=True, nogil=True)
def scan_pairs_kernel(charge, qty, n_charges, max_qty):  # type: ignore[no-untyped-def]
    """One pass of input checks: bad charge indices, negative quantities, per-charge max quantity."""
    bad_charge = 0
    negative = 0
    for i in range(charge.shape[0]):
        c = charge[i]
        q = qty[i]
        if c < 0 or c >= n_charges:
            bad_charge += 1
            continue
        if q < 0:
            negative += 1
        elif q > max_qty[c]:
            max_qty[c] = q
    return bad_charge, negative


@numba.njit(cache=True, nogil=True)
def sum_by_group_kernel(group, values, out):  # type: ignore[no-untyped-def]
    for i in range(group.shape[0]):
        out[group[i]] += values[i]


def warm_up() -> None:
    """Compile or load every kernel for the int64 signatures the wrappers use."""
    i64 = np.zeros(1, dtype=np.int64)
    big = np.full(1, np.iinfo(np.int64).max, dtype=np.int64)
    model = np.array([GRADUATED], dtype=np.int64)
    one = np.ones(1, dtype=np.int64)
    out = np.zeros(1, dtype=np.int64)
    rate_pairs_kernel(i64, i64, model, i64, i64, i64, i64, one, i64, big, i64, i64, i64, np.int64(1), out)
    offsets = np.array([0, 1], dtype=np.int64)
    rate_events_kernel(offsets, i64, i64, model, i64, i64, i64, i64, one, i64, big, i64, i64, i64, np.int64(1), out)
    round_kernel(i64, np.int64(1), np.int64(0), out)
    scan_pairs_kernel(i64, i64, np.int64(1), np.zeros(1, dtype=np.int64))
    sum_by_group_kernel(i64, i64, out)


__all__ = [
    "GRADUATED",
    "PACKAGE",
    "PER_UNIT",
    "VOLUME",
    "rate_events_kernel",
    "rate_pairs_kernel",
    "round_kernel",
    "scan_pairs_kernel",
    "sum_by_group_kernel",
    "warm_up",
]
