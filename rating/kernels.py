"""numba kernels over columnar int64 arrays: one call prices a whole billing run.

Fixed point: quantities are int64 at scale QS, prices at scale PS, and every amount is produced at
scale QS + PS (flat and package amounts are lifted by ``10**QS`` when the table is compiled), so each
product is exact and no rounding happens inside a kernel.

Kernels never see a price model. `rating.registry` lowers each model to one of two *shapes*, and a
table is one `Columns` record (named fields, not positional arrays):

* ``LINEAR`` (per_unit, graduated, volume): tiers k of a row, chosen by ``x > bound[k]`` (the previous
  tier's ``up_to``), amount(x) = base[t] + (x − lower[t]) × unit[t]. per_unit is one tier; graduated
  has lower = the previous ``up_to`` and base = the amount there plus the tier's flat fee; volume has
  lower = 0 and base = the tier's flat fee.
* ``STEP`` (package): amount(x) = ⌈(x − free) / size⌉ × amount for x > free, else 0. The division by
  the row's size is a multiply-high by a precomputed magic number (Granlund–Montgomery), exact for every
  64-bit dividend, so the loop vectorises; `magic_for` derives the constants in Python integers.

Why this is fast: `rate_pairs_kernel` walks the pairs in chunks of `CHUNK`. A chunk whose pairs all
share one charge (the usual case when pairs come grouped by charge) is rated by a loop specialised to
its row — tier bounds, bases and prices hoisted into registers as loop constants, the tier chosen by
comparisons and selects, no branches — which LLVM vectorises with AVX2/AVX-512. A mixed chunk is
grouped by charge with a counting sort inside the cache, rated slice by slice, and scattered back.
Slices are views iterated from 0, so numba's negative-index wraparound cannot turn loads into gathers.

The proof: numba integers wrap silently, so nothing is computed from a quantity before it is checked.
Each row carries ``limit``, the largest quantity whose amount *and every intermediate* fit int64,
computed exactly in Python integers by `rating.table` from the registry's bound. Each chunk is checked
(indices in range, quantities in [0, limit[row]]) before any amount of it is computed; a chunk that
fails stops the kernel, which returns its start, and the wrapper raises the exact error. So an amount
is either exact or never computed.

Compilation is lazy (first call per type signature) and cached on disk (``cache=True``). Services
call `warm_up()` at start so no request waits for it.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
import numpy.typing as npt

#: Model codes (the registry's `KernelModel.code`); kernels dispatch on shapes, not on these.
PER_UNIT = 0
PACKAGE = 1
GRADUATED = 2
VOLUME = 3

#: Kernel shapes.
LINEAR = 0
STEP = 1

ROUND_HALF_EVEN = 0
ROUND_HALF_UP = 1
ROUND_DOWN = 2
ROUND_UP = 3

#: Pairs per chunk: 2,048 × 8 bytes for each of charge, quantity and amount stays inside L1/L2.
CHUNK = 2048
#: Mixed chunks are grouped by a counting sort when the table has at most this many rows (the sort
#: clears one counter per row per chunk); above it they are rated pair by pair.
SORT_ROWS = 64
#: Tier slots of a small row: every LINEAR row with at most 4 tiers is padded to 4 (pads never match),
#: rows with 5..8 tiers to 8, so the specialised loops have a fixed trip count.
SMALL_TIERS = 4
MID_TIERS = 8

Int64Array = npt.NDArray[np.int64]
UInt64Array = npt.NDArray[np.uint64]


class Columns(NamedTuple):
    """A compiled price table as the kernels see it: per-row fields, then per-tier-slot fields."""

    shape: Int64Array  # LINEAR or STEP
    tiers: Int64Array  # LINEAR: the row's tier count; STEP: 0
    first: Int64Array  # LINEAR: index of the row's first tier slot
    limit: Int64Array  # the largest quantity the row prices within int64 (the overflow proof)
    size: Int64Array  # STEP: package size (QS)
    amount: Int64Array  # STEP: package price lifted to the amount scale (capped, see rating.registry)
    free: Int64Array  # STEP: free units (QS)
    magic: UInt64Array  # STEP: multiplier of the exact division by size
    shift1: Int64Array  # STEP: first shift of that division (0 or 1)
    shift2: Int64Array  # STEP: second shift of that division
    bound: Int64Array  # tier slot k is chosen for x > bound[k]; pads hold INT64_MAX
    lower: Int64Array  # origin of the tier's linear part
    base: Int64Array  # amount at `lower`, plus the tier's flat fee (amount scale)
    unit: Int64Array  # price per quantity step (PS)


def magic_for(divisor: int) -> tuple[int, int, int]:
    """(magic, shift1, shift2) such that ⌊n / divisor⌋ = (t + ((n − t) >> shift1)) >> shift2 with
    t = mulhi64(n, magic), for every 0 ≤ n < 2**64 (Granlund & Montgomery 1994, §4, N = 64)."""
    if divisor < 1:
        raise ValueError("divisor must be positive")
    bits = (divisor - 1).bit_length()  # ⌈log2 divisor⌉
    magic = (2**64 * (2**bits - divisor)) // divisor + 1
    return magic, min(bits, 1), max(bits - 1, 0)


@numba.njit(inline="always")
def _mulhi(a, b):  # type: ignore[no-untyped-def]
    """High 64 bits of the 128-bit product of two uint64 (from 32-bit halves, so it vectorises)."""
    m32 = np.uint64(0xFFFFFFFF)
    s32 = np.uint64(32)
    alo = a & m32
    ahi = a >> s32
    blo = b & m32
    bhi = b >> s32
    ll = alo * blo
    hl = ahi * blo
    lh = alo * bhi
    cross = (ll >> s32) + (hl & m32) + lh
    return ahi * bhi + (hl >> s32) + (cross >> s32)


@numba.njit(inline="always")
def _divide(n, magic, shift1, shift2):  # type: ignore[no-untyped-def]
    t = _mulhi(n, magic)
    return (t + ((n - t) >> shift1)) >> shift2


@numba.njit(inline="always")
def _linear1(q, out, base, lower, unit):  # type: ignore[no-untyped-def]
    for i in range(q.shape[0]):
        out[i] = base + (q[i] - lower) * unit


@numba.njit(inline="always")
def _linear4(q, out, s, bound, lower, base, unit):  # type: ignore[no-untyped-def]
    k1, k2, k3 = bound[s + 1], bound[s + 2], bound[s + 3]
    b0, b1, b2, b3 = base[s], base[s + 1], base[s + 2], base[s + 3]
    o0, o1, o2, o3 = lower[s], lower[s + 1], lower[s + 2], lower[s + 3]
    u0, u1, u2, u3 = unit[s], unit[s + 1], unit[s + 2], unit[s + 3]
    for i in range(q.shape[0]):
        x = q[i]
        b, o, u = b0, o0, u0
        if x > k1:
            b, o, u = b1, o1, u1
        if x > k2:
            b, o, u = b2, o2, u2
        if x > k3:
            b, o, u = b3, o3, u3
        out[i] = b + (x - o) * u


@numba.njit(inline="always")
def _linear8(q, out, s, bound, lower, base, unit):  # type: ignore[no-untyped-def]
    k1, k2, k3, k4 = bound[s + 1], bound[s + 2], bound[s + 3], bound[s + 4]
    k5, k6, k7 = bound[s + 5], bound[s + 6], bound[s + 7]
    b0, b1, b2, b3 = base[s], base[s + 1], base[s + 2], base[s + 3]
    b4, b5, b6, b7 = base[s + 4], base[s + 5], base[s + 6], base[s + 7]
    o0, o1, o2, o3 = lower[s], lower[s + 1], lower[s + 2], lower[s + 3]
    o4, o5, o6, o7 = lower[s + 4], lower[s + 5], lower[s + 6], lower[s + 7]
    u0, u1, u2, u3 = unit[s], unit[s + 1], unit[s + 2], unit[s + 3]
    u4, u5, u6, u7 = unit[s + 4], unit[s + 5], unit[s + 6], unit[s + 7]
    for i in range(q.shape[0]):
        x = q[i]
        b, o, u = b0, o0, u0
        if x > k1:
            b, o, u = b1, o1, u1
        if x > k2:
            b, o, u = b2, o2, u2
        if x > k3:
            b, o, u = b3, o3, u3
        if x > k4:
            b, o, u = b4, o4, u4
        if x > k5:
            b, o, u = b5, o5, u5
        if x > k6:
            b, o, u = b6, o6, u6
        if x > k7:
            b, o, u = b7, o7, u7
        out[i] = b + (x - o) * u


@numba.njit(inline="always")
def _linear_n(q, out, s, n, bound, lower, base, unit):  # type: ignore[no-untyped-def]
    for i in range(q.shape[0]):
        x = q[i]
        t = s
        for k in range(s + 1, s + n):
            t += x > bound[k]
        out[i] = base[t] + (x - lower[t]) * unit[t]


@numba.njit(inline="always")
def _step(q, out, amount, free, magic, shift1, shift2):  # type: ignore[no-untyped-def]
    m = np.uint64(magic)
    s1 = np.uint64(shift1)
    s2 = np.uint64(shift2)
    zero = np.uint64(0)
    for i in range(q.shape[0]):
        billable = q[i] - free
        n = np.uint64(billable - 1) if billable > 0 else zero
        packages = np.int64(_divide(n, m, s1, s2)) + 1  # ⌈billable / size⌉ for billable ≥ 1
        out[i] = packages * amount if billable > 0 else 0


@numba.njit(inline="always")
def _rate_slice(cols, r, q, out):  # type: ignore[no-untyped-def]
    """Amounts of the contiguous slice `q` (all priced by row r) into `out`, by the row's loop."""
    if cols.shape[r] == STEP:
        _step(q, out, cols.amount[r], cols.free[r], cols.magic[r], cols.shift1[r], cols.shift2[r])
        return
    s = cols.first[r]
    n = cols.tiers[r]
    if n == 1:
        _linear1(q, out, cols.base[s], cols.lower[s], cols.unit[s])
    elif n <= SMALL_TIERS:
        _linear4(q, out, s, cols.bound, cols.lower, cols.base, cols.unit)
    elif n <= MID_TIERS:
        _linear8(q, out, s, cols.bound, cols.lower, cols.base, cols.unit)
    else:
        _linear_n(q, out, s, n, cols.bound, cols.lower, cols.base, cols.unit)


@numba.njit(inline="always")
def _amount(cols, r, x):  # type: ignore[no-untyped-def]
    """One amount, for paths that price pair by pair (events, mixed chunks of large tables)."""
    if cols.shape[r] == STEP:
        billable = x - cols.free[r]
        if billable <= 0:
            return 0
        return ((billable - 1) // cols.size[r] + 1) * cols.amount[r]
    s = cols.first[r]
    t = s
    for k in range(s + 1, s + cols.tiers[r]):
        t += x > cols.bound[k]
    return cols.base[t] + (x - cols.lower[t]) * cols.unit[t]


@numba.njit(cache=True, nogil=True)
def rate_pairs_kernel(cols, charge, qty, out):  # type: ignore[no-untyped-def]
    """out[i] = amount of qty[i] under row charge[i]; returns −1, or the start of the first chunk that
    failed its check (a row index out of range, a negative quantity, or one above its row's limit), in
    which case nothing of that chunk or after it was computed."""
    n = charge.shape[0]
    rows = cols.shape.shape[0]
    sort = rows <= SORT_ROWS
    gq = np.empty(CHUNK, np.int64)
    go = np.empty(CHUNK, np.int64)
    starts = np.zeros(rows + 1 if sort else 1, np.int64)
    fill = np.zeros(rows if sort else 1, np.int64)
    for s0 in range(0, n, CHUNK):
        e0 = min(s0 + CHUNK, n)
        ch = charge[s0:e0]
        q = qty[s0:e0]
        o = out[s0:e0]
        m = ch.shape[0]
        c = ch[0]
        mismatch = 0
        lo = q[0]
        hi = q[0]
        for i in range(m):
            mismatch += ch[i] != c
            x = q[i]
            lo = min(lo, x)
            hi = max(hi, x)
        if mismatch == 0:
            if c < 0 or c >= rows or lo < 0 or hi > cols.limit[c]:
                return s0
            _rate_slice(cols, c, q, o)
            continue
        if sort:
            starts[:] = 0
        for i in range(m):  # check every pair, counting rows for the sort in the same pass
            ci = ch[i]
            if ci < 0 or ci >= rows:
                return s0
            x = q[i]
            if x < 0 or x > cols.limit[ci]:
                return s0
            if sort:
                starts[ci + 1] += 1
        if not sort:
            for i in range(m):
                o[i] = _amount(cols, ch[i], q[i])
            continue
        for r in range(rows):
            starts[r + 1] += starts[r]
            fill[r] = starts[r]
        for i in range(m):
            r = ch[i]
            p = fill[r]
            gq[p] = q[i]
            fill[r] = p + 1
        for r in range(rows):
            a = starts[r]
            b = starts[r + 1]
            if b > a:
                _rate_slice(cols, r, gq[a:b], go[a:b])
            fill[r] = a
        for i in range(m):
            r = ch[i]
            p = fill[r]
            o[i] = go[p]
            fill[r] = p + 1
    return -1


@numba.njit(cache=True, nogil=True)
def rate_events_kernel(cols, offsets, stream_charge, qty, out):  # type: ignore[no-untyped-def]
    """Marginal amount of each event: cumulative(after) − cumulative(before), per stream.

    Events of stream s are qty[offsets[s]:offsets[s+1]] in arrival order; the running quantity starts
    at 0 and the "before" amount of the first event is 0, so a stream's events sum to the amount of its
    total. The wrapper proves every stream's total (its largest running quantity) beforehand.
    """
    for s in range(stream_charge.shape[0]):
        r = stream_charge[s]
        running = 0
        previous = 0
        for i in range(offsets[s], offsets[s + 1]):
            running += qty[i]
            cumulative = _amount(cols, r, running)
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


def divide_floor(n: UInt64Array, divisor: int) -> UInt64Array:
    """⌊n / divisor⌋ by the kernels' magic-number division (for tests: it must equal `//`)."""
    magic, s1, s2 = magic_for(divisor)
    return _divide_array(n, np.uint64(magic), np.uint64(s1), np.uint64(s2))  # type: ignore[no-any-return]


@numba.njit(cache=True, nogil=True)
def _divide_array(n, magic, shift1, shift2):  # type: ignore[no-untyped-def]
    out = np.empty_like(n)
    for i in range(n.shape[0]):
        out[i] = _divide(n[i], magic, shift1, shift2)
    return out


def warm_up() -> None:
    """Compile or load every kernel for the int64 signatures the wrappers use."""
    from rating.table import PriceTable

    table = PriceTable.compile([{"model": "per_unit", "unit_amount": "1"}])
    one = np.zeros(1, dtype=np.int64)
    out = np.zeros(1, dtype=np.int64)
    rate_pairs_kernel(table.columns, one, one, out)
    rate_events_kernel(table.columns, np.array([0, 1], dtype=np.int64), one, one, out)
    round_kernel(one, np.int64(1), np.int64(0), out)
    scan_pairs_kernel(one, one, np.int64(1), np.zeros(1, dtype=np.int64))
    sum_by_group_kernel(one, one, out)


__all__ = [
    "CHUNK",
    "GRADUATED",
    "LINEAR",
    "PACKAGE",
    "PER_UNIT",
    "STEP",
    "VOLUME",
    "Columns",
    "divide_floor",
    "magic_for",
    "rate_events_kernel",
    "rate_pairs_kernel",
    "round_kernel",
    "scan_pairs_kernel",
    "sum_by_group_kernel",
    "warm_up",
]
