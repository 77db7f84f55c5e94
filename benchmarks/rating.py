"""Rating throughput: one million customers × five charges, numba kernels vs numpy vs Decimal.

Figures (all single-threaded, medians of several repeats, setup outside the timed region):

* ``<model>_pairs_per_s`` — (customer, charge) pairs priced per second through the checked
  `PriceTable.rate_pairs` wrapper (input scan + int64 bound proof + kernel), one model per run;
  ``<model>_kernel_only_pairs_per_s`` is the bare kernel.
* ``mixed_pairs_per_s`` — the five mixed charges in one call, as a billing run would price them.
* ``ratio_to_numpy`` — the same mixed run written as vectorised numpy, time ÷ kernel time.
* ``ratio_to_decimal_reference`` — kernel pairs/s ÷ Decimal reference pairs/s, where the reference
  rate (``decimal_reference_pairs_per_s_sampled``) is timed on a sample (20k pairs, 2k with --quick)
  and scaled per pair, because running it on millions of pairs would take minutes.
* ``event_rating_events_per_s`` — marginal event rating (10 events per customer-charge stream);
  every stream's events are checked to sum exactly to rating its total.
* ``working_memory_ratio_to_input`` — peak bytes allocated during a mixed run (tracemalloc, including
  the output column) ÷ bytes of the input columns.
* ``first_call_warm_cache_s`` — in a fresh interpreter with the numba cache warm: time from a
  finished ``import rating`` to the first priced batch (``import_rating_s`` is the import itself,
  mostly numba and pydantic); ``cold_cache_first_call_s`` the same with an empty cache, i.e. compiling
  the two kernels that call needs, and ``cold_cache_warm_up_remaining_kernels_s`` compiling the rest
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

import numpy as np
import numpy.typing as npt

from benchmarks.harness import Figures, log, main_for, median, timed
from rating import PriceTable, parse_price, simulate
from rating import kernels as k
from rating.table import KernelPrice

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
    qpow = np.int64(10**table.quantity_scale)
    for c in range(table.n_charges):
        mask = charge == c
        q = qty[mask]
        code = int(table.model[c])
        if code == k.PER_UNIT:
            out[mask] = q * table.a[c]
        elif code == k.PACKAGE:
            billable = np.maximum(q - table.f[c], 0)
            out[mask] = (billable + table.a[c] - 1) // table.a[c] * table.b[c] * qpow
        else:
            lo, hi = int(table.t0[c]), int(table.t1[c])
            upto, unit, flat = table.upto[lo:hi], table.unit[lo:hi], table.flat[lo:hi]
            if code == k.VOLUME:
                idx = np.minimum(np.searchsorted(upto, q, side="left"), hi - lo - 1)
                out[mask] = q * unit[idx] + flat[idx] * qpow
            else:
                total = np.zeros(q.shape[0], np.int64)
                lower = np.int64(0)
                for t in range(hi - lo):
                    entered = (q > lower) | (t == 0)
                    units = np.clip(q, lower, upto[t]) - lower
                    total += units * unit[t] + np.where(entered, flat[t] * qpow, 0)
                    lower = upto[t]
                out[mask] = total
    return out


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

    # -- one model per run --------------------------------------------------------------------------
    for name in ("per_unit", "package", "graduated", "volume"):
        table = PriceTable.compile([PRICES[name]], quantity_scale=QS)
        zeros = np.zeros(n, np.int64)
        out = np.empty(n, np.int64)
        table.rate_pairs(zeros, qty, out)
        seconds = time_median(repeats, lambda t=table, z=zeros, o=out: t.rate_pairs(z, qty, o))
        kernel_s = time_median(
            repeats,
            lambda t=table, z=zeros, o=out: k.rate_pairs_kernel(
                z, qty, t.model, t.a, t.b, t.f, t.t0, t.t1, t.lower, t.upto, t.unit, t.flat, t.base, t.qpow, o
            ),
        )
        figures[f"{name}_pairs_per_s"] = n / seconds
        figures[f"{name}_kernel_only_pairs_per_s"] = n / kernel_s
        log(f"{name}: {n / seconds:,.0f} pairs/s ({n / kernel_s:,.0f} kernel only)")

    # -- mixed billing run, numpy and Decimal comparisons --------------------------------------------
    table = PriceTable.compile(MIXED, quantity_scale=QS)
    out = table.rate_pairs(charge, qty)
    mixed_s = time_median(repeats, lambda: table.rate_pairs(charge, qty, out))
    figures["mixed_pairs_per_s"] = n / mixed_s
    mixed_kernel_s = time_median(
        repeats,
        lambda: k.rate_pairs_kernel(
            charge, qty, table.model, table.a, table.b, table.f, table.t0, table.t1, table.lower,
            table.upto, table.unit, table.flat, table.base, table.qpow, out,
        ),
    )  # fmt: skip
    figures["mixed_kernel_only_pairs_per_s"] = n / mixed_kernel_s
    expected = numpy_rate_pairs(table, charge, qty)
    if not np.array_equal(expected, out):
        raise AssertionError("numpy version disagrees with the kernel")
    numpy_s = time_median(repeats, lambda: numpy_rate_pairs(table, charge, qty))
    figures["numpy_pairs_per_s"] = n / numpy_s
    figures["ratio_to_numpy"] = numpy_s / mixed_s
    log(f"mixed: {n / mixed_s:,.0f} pairs/s; numpy {n / numpy_s:,.0f} pairs/s")

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
