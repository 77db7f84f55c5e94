"""numba kernels over columnar int64 arrays: one call prices a whole billing run.

Fixed point: quantities are int64 at scale QS, prices at scale PS, and every amount is produced at
scale QS + PS (flat and package amounts are lifted by ``qpow = 10**QS``), so each product is exact and
no rounding happens inside a kernel. Kernels write into preallocated ``out`` arrays and check
nothing: numba integers wrap silently, so `rating.table` proves beforehand, in Python integers, that
no intermediate can exceed int64, and refuses the run otherwise.

Model codes and table layout (one row per charge ``c``):

* PER_UNIT:  a[c] = unit price
* PACKAGE:   a[c] = package size (QS), b[c] = package price (PS), f[c] = free units (QS)
* GRADUATED / VOLUME: tiers t in [t0[c], t1[c]) with upto[t] (QS, INT64_MAX for the open tier),
  unit[t] (PS) and flat[t] (PS)

Compilation is lazy (first call per type signature) and cached on disk (``cache=True``); a cold
compile of all kernels takes a few seconds, a warm cache load well under a second. Services call
`warm_up()` at start so no request ever waits for either.
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
def amount_at(code, a, b, f, t0, t1, upto, unit, flat, qpow, q):  # type: ignore[no-untyped-def]
    """Cumulative amount of quantity q for one charge: the kernel twin of `price.amount(q)`."""
    if code == PER_UNIT:
        return q * a
    if code == PACKAGE:
        billable = q - f
        if billable <= 0:
            return 0 * q
        return ((billable + a - 1) // a) * b * qpow
    if code == GRADUATED:
        total = 0 * q
        lower = 0 * q
        for t in range(t0, t1):
            if t > t0 and q <= lower:
                break
            up = upto[t]
            top = q if q < up else up
            total += (top - lower) * unit[t] + flat[t] * qpow
            lower = up
        return total
    t = t0
    while t < t1 - 1 and q > upto[t]:
        t += 1
    return q * unit[t] + flat[t] * qpow


@numba.njit(cache=True, nogil=True)
def rate_pairs_kernel(charge, qty, model, a, b, f, t0, t1, upto, unit, flat, qpow, out):  # type: ignore[no-untyped-def]
    """out[i] = amount of qty[i] under charge[i]'s price."""
    for i in range(charge.shape[0]):
        c = charge[i]
        out[i] = amount_at(model[c], a[c], b[c], f[c], t0[c], t1[c], upto, unit, flat, qpow, qty[i])


@numba.njit(cache=True, nogil=True)
def rate_events_kernel(offsets, stream_charge, qty, model, a, b, f, t0, t1, upto, unit, flat, qpow, out):  # type: ignore[no-untyped-def]
    """Marginal amount of each event: cumulative(after) − cumulative(before), per stream.

    Events of stream s are qty[offsets[s]:offsets[s+1]] in arrival order; the running quantity starts
    at 0 and the "before" amount of the first event is 0, so a stream's events sum to the amount of
    its total. Graduated streams walk the tiers incrementally (the running quantity only grows), so
    each event costs O(1) amortised instead of O(tiers).
    """
    for s in range(stream_charge.shape[0]):
        c = stream_charge[s]
        code = model[c]
        if code == GRADUATED:
            _graduated_stream(offsets[s], offsets[s + 1], t0[c], t1[c], upto, unit, flat, qpow, qty, out)
            continue
        running = 0 * qpow
        previous = 0 * qpow
        for i in range(offsets[s], offsets[s + 1]):
            running += qty[i]
            cumulative = amount_at(code, a[c], b[c], f[c], t0[c], t1[c], upto, unit, flat, qpow, running)
            out[i] = cumulative - previous
            previous = cumulative


@numba.njit(cache=True, nogil=True, inline="always")
def _graduated_stream(start, stop, t0, t1, upto, unit, flat, qpow, qty, out):  # type: ignore[no-untyped-def]
    t = t0
    lower = 0 * qpow
    running = 0 * qpow
    first = True
    for i in range(start, stop):
        q = qty[i]
        amount = 0 * qpow
        if first:
            amount += flat[t] * qpow  # quantity 0 already lies in the first tier
            first = False
        running_after = running + q
        # units of this event in the current tier and any tiers it crosses into
        while True:
            up = upto[t]
            if running_after <= up or t == t1 - 1:
                amount += (running_after - running) * unit[t]
                break
            amount += (up - running) * unit[t]
            running = up
            lower = up
            t += 1
            if running_after > lower:
                amount += flat[t] * qpow  # entering tier t
        running = running_after
        out[i] = amount


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
        if r != 0:
            if mode == ROUND_UP:
                q += 1
            elif mode == ROUND_HALF_UP:
                if 2 * r >= divisor:
                    q += 1
            elif mode == ROUND_HALF_EVEN:
                if 2 * r > divisor or (2 * r == divisor and q % 2 == 1):
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
    rate_pairs_kernel(i64, i64, model, i64, i64, i64, i64, one, big, i64, i64, np.int64(1), out)
    rate_events_kernel(np.array([0, 1], dtype=np.int64), i64, i64, model, i64, i64, i64, i64, one, big, i64, i64,
                       np.int64(1), out)  # fmt: skip
    round_kernel(i64, np.int64(1), np.int64(0), out)
    scan_pairs_kernel(i64, i64, np.int64(1), np.zeros(1, dtype=np.int64))
    sum_by_group_kernel(i64, i64, out)


__all__ = [
    "GRADUATED",
    "PACKAGE",
    "PER_UNIT",
    "VOLUME",
    "amount_at",
    "rate_events_kernel",
    "rate_pairs_kernel",
    "round_kernel",
    "scan_pairs_kernel",
    "sum_by_group_kernel",
    "warm_up",
]
