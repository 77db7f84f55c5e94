"""Rating throughput: one million customers × five charges, specialised numba kernels vs their ceilings.

Figures (all single-threaded, medians of several repeats, setup outside the timed region):

* ``<model>_pairs_per_s`` — (customer, charge) pairs priced per second through the checked
  `PriceTable.rate_pairs` (chunk checks against the exact per-row limits + the specialised loop), one
  model over one contiguous column.
* ``mixed_pairs_per_s`` — the five charges in one call, pairs grouped by charge (each charge's
  customers contiguous), as the columnar path lays them out; ``mixed_interleaved_pairs_per_s`` — the
  same pairs customer by customer (charge 0..4, 0..4, …), which the kernel groups chunk by chunk.
* Ceilings measured in the same run, over the same arrays, each timed alternately with the figure it
  bounds so load hits both alike (ratios are medians of per-repeat ratios):
  ``ceiling_probe_graduated_pairs_per_s`` — a plain numba loop of the CEILINGS.md probe's shape (one
  charge's tier bounds, bases and prices as literal loop constants, no checks) over the graduated
  column, with ``graduated_ratio_to_probe``; ``ceiling_memory_pairs_per_s`` — a loop that only reads the
  mixed run's charge and quantity columns and writes its output column, with
  ``mixed_ratio_to_memory`` (and ``mixed_interleaved_ratio_to_memory``).
* ``ratio_to_numpy`` — the mixed run written as vectorised numpy, time ÷ kernel time.
* ``ratio_to_decimal_reference`` — mixed pairs/s ÷ Decimal reference pairs/s, where the reference
  rate (``decimal_reference_pairs_per_s_sampled``) is timed on a sample (20k pairs, 2k with --quick)
  and scaled per pair, because running it on millions of pairs would take minutes.
* ``event_rating_events_per_s`` — marginal event rating (10 events per customer-charge stream);
  every stream's events are checked to sum exactly to rating its total.
* ``working_memory_ratio_to_input`` — peak bytes allocated during a mixed run (tracemalloc, including
  the output column) ÷ bytes of the input columns.
* ``first_call_warm_cache_s`` — in a fresh interpreter with the numba cache warm: time from a
  finished ``import rating`` to the first priced batch (``import_rating_s`` is the import itself,
  mostly numba and pydantic); ``cold_cache_first_call_s`` the same with an empty cache, i.e. compiling
  the kernels that call needs, and ``cold_cache_warm_up_remaining_kernels_s`` compiling the rest
  (both skipped with --quick).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from decimal import Decimal
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from benchmarks.harness import Figures, log, main_for, median, timed
from rating import PriceTable, parse_price, simulate
from rating import kernels as k
from rating.registry import KernelPrice

I64 = npt.NDArray[np.int64]
QS = 3  # quantities with three decimals (e.g. GB-hours)

PRICES: dict[str, dict[str, Any]] = {
    "per_unit": {"model": "per_unit", "unit_amount": "0.000125"},
    "package": {"model": "package", "package_size": "1000", "package_amount": "2.50", "free_units": "500"},
    "graduated": {
        "model": "graduated",
        "tiers": [
            {"up_to": "1000", "unit_amount": "0", "flat_amount": "10"},
            {"up_to": "10000", "unit_amount": "0.002"},
            {"up_to": "100000", "unit_amount": "0.0015", "flat_amount": "5"},
            {"up_to": None, "unit_amount": "0.001"},
        ],
    },
    "volume": {
        "model": "volume",
        "tiers": [
            {"up_to": "1000", "unit_amount": "0.01"},
            {"up_to": "10000", "unit_amount": "0.008"},
            {"up_to": "100000", "unit_amount": "0.005", "flat_amount": "20"},
            {"up_to": None, "unit_amount": "0.004"},
        ],
    },
    "graduated_seats": {
        "model": "graduated",
        "tiers": [
            {"up_to": "5", "unit_amount": "7"},
            {"up_to": "10", "unit_amount": "6.5"},
            {"up_to": None, "unit_amount": "6"},
        ],
    },
}
MIXED = list(PRICES.values())
CANDIDATE = [
    {"model": "per_unit", "unit_amount": "0.00011"},
    PRICES["package"],
    {**PRICES["volume"]},
    PRICES["graduated"],
    PRICES["graduated_seats"],
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--customers", type=int, default=1_000_000, help="customers (× 5 charges)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is reported")
    parser.add_argument("--decimal-sample", type=int, default=20_000, help="pairs timed on the Decimal reference")


def make_usage(n_customers: int, seed: int = 7) -> tuple[I64, I64, I64]:
    """customer, charge, quantity (scale QS) columns: every customer uses all five charges."""
    rng = np.random.default_rng(seed)
    n = n_customers * len(MIXED)
    customer = np.repeat(np.arange(n_customers, dtype=np.int64), len(MIXED))
    charge = np.tile(np.arange(len(MIXED), dtype=np.int64), n_customers)
    # log-uniform usage from 0 to ~10^6 units, with three decimals
    qty = (10 ** rng.uniform(0, 9, n)).astype(np.int64)
    qty[rng.random(n) < 0.05] = 0
    return customer, charge, qty


def numpy_rate_pairs(table: PriceTable, charge: I64, qty: I64) -> I64:
    """The plain vectorised-numpy version of the kernel, for the ratio figure."""
    out = np.zeros(qty.shape[0], np.int64)
    qpow = 10**table.quantity_scale
    for c, row in enumerate(table.lowered):
        mask = charge == c
        q = qty[mask]
        if row.shape == k.STEP:
            billable = np.maximum(q - row.free, 0)
            out[mask] = (billable + row.size - 1) // row.size * np.int64(row.amount * qpow)
            continue
        bounds = np.array([t.bound for t in row.tiers[1:]], np.int64)
        t = np.searchsorted(bounds, q, side="left")  # tiers whose bound q exceeds
        base, lower, unit = (np.array([getattr(x, f) for x in row.tiers], np.int64) for f in ("base", "lower", "unit"))
        out[mask] = base[t] + (q - lower[t]) * unit[t]
    return out


@numba.njit(cache=True, nogil=True)
def probe_graduated4(q, out, k1, k2, k3, b0, b1, b2, b3, o0, o1, o2, o3, u0, u1, u2, u3):  # type: ignore[no-untyped-def]
    """The CEILINGS.md probe's shape: one charge, tiers as loop constants, chosen by comparisons, no checks."""
    for i in range(q.shape[0]):
        x = q[i]
        if x > k3:
            out[i] = b3 + (x - o3) * u3
        elif x > k2:
            out[i] = b2 + (x - o2) * u2
        elif x > k1:
            out[i] = b1 + (x - o1) * u1
        else:
            out[i] = b0 + (x - o0) * u0


@numba.njit(cache=True, nogil=True)
def touch(charge, qty, out):  # type: ignore[no-untyped-def]
    """Memory ceiling: read the charge and quantity columns, write the output column, nothing else."""
    for i in range(qty.shape[0]):
        out[i] = qty[i] + charge[i]


def paired(repeats: int, fn: Any, ceiling: Any) -> tuple[float, float, float]:
    """(median seconds of fn, of ceiling, median per-repeat ratio fn/ceiling speed), timed alternately."""
    a, b = [], []
    for _ in range(repeats):
        a.append(timed(fn))
        b.append(timed(ceiling))
    return median(a), median(b), median(y / x for x, y in zip(a, b, strict=True))


def time_median(repeats: int, fn: Any) -> float:
    return median(timed(fn) for _ in range(repeats))


def fresh_interpreter(cache_dir: str | None) -> dict[str, float]:
    """Seconds, in a new interpreter: `import rating`, then compile a table and price a first batch,
    then `warm_up()` of every remaining kernel."""
    code = (
        "import time\n"
        "t0 = time.perf_counter()\n"
        "import numpy as np, rating\n"
        "t1 = time.perf_counter()\n"
        f"table = rating.PriceTable.compile({MIXED!r})\n"
        "table.rate_pairs(np.arange(5, dtype=np.int64), np.arange(5, dtype=np.int64))\n"
        "t2 = time.perf_counter()\n"
        "rating.warm_up()\n"
        "t3 = time.perf_counter()\n"
        "print(t1 - t0, t2 - t1, t3 - t2)\n"
    )
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    imp, first, rest = (float(x) for x in proc.stdout.split())
    return {"import": imp, "first": first, "warm_up": rest}


def run(args: argparse.Namespace) -> Figures:
    n_customers = 20_000 if args.quick else args.customers
    repeats = 3 if args.quick else args.repeats
    sample = min(2_000 if args.quick else args.decimal_sample, n_customers * len(MIXED))
    figures: Figures = {}

    log("warming kernels (numba cache)")
    k.warm_up()
    customer, charge, qty = make_usage(n_customers)
    n = qty.shape[0]
    log(f"{n_customers:,} customers × {len(MIXED)} charges = {n:,} pairs")

    # -- one model per run, over one contiguous column ------------------------------------------------
    for name in ("per_unit", "package", "graduated", "volume"):
        table = PriceTable.compile([PRICES[name]], quantity_scale=QS)
        zeros = np.zeros(n, np.int64)
        out = np.empty(n, np.int64)
        table.rate_pairs(zeros, qty, out)
        seconds = time_median(repeats, lambda t=table, z=zeros, o=out: t.rate_pairs(z, qty, o))
        figures[f"{name}_pairs_per_s"] = n / seconds
        log(f"{name}: {n / seconds:,.0f} pairs/s")
        if name == "graduated":
            tiers = table.lowered[0].tiers
            consts = [t.bound for t in tiers[1:]] + [t.base for t in tiers] + [t.lower for t in tiers]
            consts += [t.unit for t in tiers]
            probe_out = np.empty(n, np.int64)
            probe_graduated4(qty, probe_out, *consts)
            if not np.array_equal(probe_out, out):
                raise AssertionError("the probe loop disagrees with the kernel")
            _, probe_s, ratio = paired(
                repeats, lambda t=table, z=zeros, o=out: t.rate_pairs(z, qty, o),
                lambda p=probe_out, c=consts: probe_graduated4(qty, p, *c),
            )  # fmt: skip
            figures["ceiling_probe_graduated_pairs_per_s"] = n / probe_s
            figures["graduated_ratio_to_probe"] = ratio
            log(f"probe-shaped graduated loop: {n / probe_s:,.0f} pairs/s; kernel at {ratio:.2f} of it")

    # -- mixed billing run: grouped by charge, and customer by customer -------------------------------
    table = PriceTable.compile(MIXED, quantity_scale=QS)
    grouped = np.argsort(charge, kind="stable")
    g_charge, g_qty = charge[grouped], qty[grouped]
    out = table.rate_pairs(g_charge, g_qty)
    touch_out = np.empty(n, np.int64)
    touch(g_charge, g_qty, touch_out)
    mixed_s, memory_s, ratio = paired(
        repeats, lambda: table.rate_pairs(g_charge, g_qty, out), lambda: touch(g_charge, g_qty, touch_out)
    )
    figures["mixed_pairs_per_s"] = n / mixed_s
    figures["ceiling_memory_pairs_per_s"] = n / memory_s
    figures["mixed_ratio_to_memory"] = ratio
    log(f"mixed, grouped by charge: {n / mixed_s:,.0f} pairs/s; memory ceiling {n / memory_s:,.0f} ({ratio:.2f})")
    inter_out = table.rate_pairs(charge, qty)
    if not np.array_equal(inter_out[grouped], out):
        raise AssertionError("interleaved and grouped layouts disagree")
    inter_s, _, inter_ratio = paired(
        repeats, lambda: table.rate_pairs(charge, qty, inter_out), lambda: touch(charge, qty, touch_out)
    )
    figures["mixed_interleaved_pairs_per_s"] = n / inter_s
    figures["mixed_interleaved_ratio_to_memory"] = inter_ratio
    log(f"mixed, customer by customer: {n / inter_s:,.0f} pairs/s ({inter_ratio:.2f} of memory)")
    expected = numpy_rate_pairs(table, charge, qty)
    if not np.array_equal(expected, inter_out):
        raise AssertionError("numpy version disagrees with the kernel")
    numpy_s = time_median(repeats, lambda: numpy_rate_pairs(table, charge, qty))
    figures["numpy_pairs_per_s"] = n / numpy_s
    figures["ratio_to_numpy"] = numpy_s / mixed_s
    log(f"numpy {n / numpy_s:,.0f} pairs/s")
    out = inter_out

    prices: list[KernelPrice] = [parse_price(p) for p in MIXED]  # type: ignore[misc]
    idx = np.random.default_rng(1).choice(n, size=sample, replace=False)
    pairs = [(prices[int(charge[i])], Decimal(int(qty[i])).scaleb(-QS), int(out[i])) for i in idx]
    start = time.perf_counter()
    refs = [p.amount(q) for p, q, _ in pairs]
    decimal_s = time.perf_counter() - start
    for (_, _, kernel_amount), ref in zip(pairs, refs, strict=True):
        if Decimal(kernel_amount).scaleb(-table.amount_scale) != ref:
            raise AssertionError("Decimal reference disagrees with the kernel")
    figures["decimal_reference_pairs_per_s_sampled"] = sample / decimal_s
    figures["ratio_to_decimal_reference"] = (
        figures["mixed_pairs_per_s"] / figures["decimal_reference_pairs_per_s_sampled"]
    )
    log(f"Decimal reference: {sample / decimal_s:,.0f} pairs/s on a {sample:,}-pair sample")

    # -- working memory -------------------------------------------------------------------------------
    tracemalloc.start()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    table.rate_pairs(charge, qty)
    peak = tracemalloc.get_traced_memory()[1] - before
    tracemalloc.stop()
    figures["working_memory_ratio_to_input"] = peak / (charge.nbytes + qty.nbytes)

    # -- event-level marginal rating ------------------------------------------------------------------
    per_stream = 10
    ev_qty = np.maximum(qty // per_stream, 0).repeat(per_stream)
    offsets = np.arange(0, ev_qty.shape[0] + 1, per_stream, dtype=np.int64)
    ev_out = table.rate_events(charge, offsets, ev_qty)
    events_s = time_median(repeats, lambda: table.rate_events(charge, offsets, ev_qty, ev_out))
    totals = table.rate_pairs(charge, np.add.reduceat(ev_qty, offsets[:-1]))
    if not np.array_equal(np.add.reduceat(ev_out, offsets[:-1]), totals):
        raise AssertionError("event amounts do not sum to the rated totals")
    figures["event_rating_events_per_s"] = ev_qty.shape[0] / events_s
    log(f"events: {ev_qty.shape[0] / events_s:,.0f} events/s")

    # -- simulation -----------------------------------------------------------------------------------
    sim_s = time_median(
        max(1, repeats // 2), lambda: simulate(customer, charge, qty, QS, MIXED, CANDIDATE, n_customers)
    )
    figures["simulate_customers_per_s"] = n_customers / sim_s

    # -- compile / cache --------------------------------------------------------------------------------
    fresh_interpreter(None)  # make sure the default cache is populated
    runs = [fresh_interpreter(None) for _ in range(3)]
    figures["first_call_warm_cache_s"] = median(r["first"] for r in runs)
    figures["import_rating_s"] = median(r["import"] for r in runs)
    if not args.quick:
        with tempfile.TemporaryDirectory(prefix="tally-numba-") as cache:
            cold = fresh_interpreter(cache)
            figures["cold_cache_first_call_s"] = cold["first"]
            figures["cold_cache_warm_up_remaining_kernels_s"] = cold["warm_up"]
    figures["pairs"] = float(n)
    return figures


if __name__ == "__main__":
    sys.exit(main_for("benchmarks.rating", __doc__ or "", run, add_arguments))
