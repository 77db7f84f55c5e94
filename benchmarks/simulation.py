"""Price simulation over a quarter of stored usage: `simulate_plan` against its bare kernel ceiling.

A tenant of N customers (10,000 by default) on the invoicing benchmark's plan (a flat fee and four usage
charges: per-unit, graduated, volume, package) with events on every meter in each of three months, then
`simulate_plan` over the quarter with a candidate that changes every price. Figures:

* `seconds`, `customers_per_s`: the whole simulation (subscriptions → window items, one bulk usage extract
  per month, both plans rated by the invoice run's rater, per-customer sums, distribution);
* `kernel_only_s`: the ceiling measured in the same run — `rating.simulation.simulate` (the numba kernels,
  both plans) over the very same (customer, charge, quantity) arrays, one call per month, with the arrays
  already built; `ratio_to_kernel` is `seconds / kernel_only_s`;
* `usage_extract_s`: the three `period_columns` extracts alone, the I/O part of the work.

The run checks that both agree: the kernels' candidate total plus the candidate's flat fees equals the
simulation's simulated total, to the cent.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import Figures, log, main_for
from benchmarks.invoicing import METERS, PLAN
from benchmarks.invoicing import _setup as setup_january
from metering.event import PreparedBatch
from metering.meter import get_meter
from metering.store import open_store
from metering.usage import period_columns
from tally.db import make_engine, upgrade

MONTHS = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))
QUARTER_END = datetime(2026, 4, 1, tzinfo=UTC)
CANDIDATE_FEE = "39"
#: The invoicing plan with every price changed; the same charges in the same order (the kernels pair them).
CANDIDATE: dict[str, Any] = {
    "code": "bench", "name": "Bench v2", "currency": "USD", "interval": "monthly",
    "charges": [
        {"code": "base", "kind": "flat",
         "price": {"model": "flat", "amount_per_period": CANDIDATE_FEE, "billing": "in_arrears"}},
        {"code": "calls", "kind": "usage", "meter": "calls", "price": {"model": "per_unit", "unit_amount": "0.0025"}},
        {"code": "tokens", "kind": "usage", "meter": "tokens", "price": {"model": "graduated", "tiers": [
            {"up_to": "5000", "unit_amount": "0"}, {"up_to": "50000", "unit_amount": "0.00012"},
            {"up_to": None, "unit_amount": "0.00004"}]}},
        {"code": "gpu", "kind": "usage", "meter": "gpu", "price": {"model": "volume", "tiers": [
            {"up_to": "1000", "unit_amount": "0.45"}, {"up_to": None, "unit_amount": "0.35"}]}},
        {"code": "storage", "kind": "usage", "meter": "storage",
         "price": {"model": "package", "package_size": "50", "package_amount": "0.6"}},
    ],
}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--customers", type=int, default=10_000, help="customers, each billed monthly")


def _more_months(engine: Any, tid: int, n: int) -> None:
    """February's and March's events (January's come with the invoicing benchmark's set-up)."""
    specs = {code: get_meter(engine, tid, code).spec for code in METERS}
    store = open_store(engine)
    per = len(METERS)
    for month in MONTHS[1:]:
        rng = range(per * n)
        ids = [f"{month:%m}-{x // per}-{x % per}" for x in rng]
        custs = [f"c{x // per:07d}" for x in rng]
        meters = [METERS[x % per] for x in rng]
        ts = [int(month.timestamp()) * 1_000_000 + (1 + (x // per) % 600) * 3_600_000_000 for x in rng]
        units = [1 + ((x // per) * 6151 + (x % per) * 92821 + month.month) % 250_000 for x in rng]
        m = len(ids)
        store.write([PreparedBatch(tid, f"m{month:%m}", m, False, list(range(m)), ids, custs, meters, ts, units,
                                   [0] * m, [None] * m, specs=specs)])  # fmt: skip
    store.close()


def _arrays(engine: Any, tid: int) -> tuple[list[tuple[Any, Any, Any]], float]:
    """The (customer index, charge index, quantity) arrays of each month, and the extracts' seconds."""
    charge_of = {m: i for i, m in enumerate(METERS)}
    out = []
    elapsed = 0.0
    for month, end in zip(MONTHS, (*MONTHS[1:], QUARTER_END), strict=True):
        start = time.perf_counter()
        cols = period_columns(engine, tid, month, end)
        elapsed += time.perf_counter() - start
        index = {c: i for i, c in enumerate(sorted(set(cols.customers.tolist())))}
        customer = np.array([index[c] for c in cols.customers.tolist()], np.int64)
        charge = np.array([charge_of[m] for m in cols.meters.tolist()], np.int64)
        out.append((customer, charge, cols.units.astype(np.int64)))
    return out, elapsed


def _prices(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [{**c["price"], "currency": "USD"} for c in plan["charges"] if c["kind"] == "usage"]


def run(args: argparse.Namespace) -> Figures:
    from invoicing.insight import simulate_plan
    from rating import warm_up
    from rating.simulation import simulate

    n = 500 if args.quick else args.customers
    figures: Figures = {"customers": float(n)}
    with tempfile.TemporaryDirectory(prefix="tally-simulation-") as name:
        engine = make_engine(f"sqlite:///{Path(name) / 'sim.db'}")
        upgrade(engine)
        log(f"setting up {n} customers and {3 * len(METERS) * n} events over a quarter")
        start = time.perf_counter()
        tid = setup_january(engine, n)
        _more_months(engine, tid, n)
        figures["setup_s"] = time.perf_counter() - start
        warm_up()
        log(f"simulate_plan over {n} customers and a quarter")
        start = time.perf_counter()
        sim = simulate_plan(engine, tid, CANDIDATE, MONTHS[0], QUARTER_END, threshold_pct=Decimal(10))
        seconds = time.perf_counter() - start
        if len(sim.customers) != n:
            raise SystemExit(f"expected {n} customers, the simulation covered {len(sim.customers)}")
        arrays, extract_s = _arrays(engine, tid)
        current, candidate = _prices(PLAN), _prices(CANDIDATE)
        simulate(*arrays[0], 0, current, candidate)  # compile outside the timing
        kernel_s = 0.0
        kernel_new = Decimal(0)
        for customer, charge, quantity in arrays:
            start = time.perf_counter()
            report = simulate(customer, charge, quantity, 0, current, candidate)
            kernel_s += time.perf_counter() - start
            kernel_new += report.total_new
        fees = Decimal(CANDIDATE_FEE) * len(MONTHS) * n
        if kernel_new + fees != sim.simulated:
            raise SystemExit(f"kernels say {kernel_new} + fees {fees}, the simulation {sim.simulated}")
        engine.dispose()
    figures["seconds"] = seconds
    figures["customers_per_s"] = n / seconds
    figures["kernel_only_s"] = kernel_s
    figures["ratio_to_kernel"] = seconds / kernel_s
    figures["usage_extract_s"] = extract_s
    return figures


if __name__ == "__main__":
    raise SystemExit(main_for(__name__, __doc__ or "", run, add_arguments))
