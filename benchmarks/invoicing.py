"""End-to-end invoice run on SQLite: rollups → rated, persisted draft invoices of five lines each.

Figures: `invoices_per_s` (the whole `run_cycle`: due items, bulk usage extract, columnar rating,
invoice + line inserts, run bookkeeping), the same with tier breakdowns off (`explain=False`),
`peak_rss_mb`, and `ratio_to_raw_insert`: the run's time over a plain executemany of the very same
invoice and line rows into a fresh database in the same process (1.0 would mean the run costs no more
than writing its output).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, create_engine, insert, select

from benchmarks.harness import Figures, log, main_for
from invoicing.customer import CustomerDefinition, create_customer
from invoicing.plan import create_plan, publish_plan
from invoicing.run import run_cycle
from invoicing.subscription import create_subscription
from invoicing.tables import invoice_lines, invoices
from metering.event import PreparedBatch
from metering.meter import Aggregation, MeterDefinition, create_meter, get_meter
from metering.store import open_store
from metering.tenant import create_tenant
from tally.db import make_engine, upgrade

T0 = datetime(2026, 1, 1, tzinfo=UTC)
FEB = datetime(2026, 2, 1, tzinfo=UTC)
METERS = ("calls", "tokens", "gpu", "storage")
PLAN = {
    "code": "bench", "name": "Bench", "currency": "USD", "interval": "monthly",
    "charges": [
        {"code": "base", "kind": "flat",
         "price": {"model": "flat", "amount_per_period": "49", "billing": "in_arrears"}},
        {"code": "calls", "kind": "usage", "meter": "calls", "price": {"model": "per_unit", "unit_amount": "0.002"}},
        {"code": "tokens", "kind": "usage", "meter": "tokens", "price": {"model": "graduated", "tiers": [
            {"up_to": "1000", "unit_amount": "0"}, {"up_to": "100000", "unit_amount": "0.0001"},
            {"up_to": None, "unit_amount": "0.00005"}]}},
        {"code": "gpu", "kind": "usage", "meter": "gpu", "price": {"model": "volume", "tiers": [
            {"up_to": "100", "unit_amount": "0.5"}, {"up_to": None, "unit_amount": "0.4"}]}},
        {"code": "storage", "kind": "usage", "meter": "storage",
         "price": {"model": "package", "package_size": "100", "package_amount": "1"}},
    ],
}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--customers", type=int, default=5_000, help="customers (one invoice each)")


def _setup(engine: Engine, n: int) -> int:
    tid = create_tenant(engine, "bench").id
    for code in METERS:
        create_meter(engine, tid, MeterDefinition(code=code, aggregation=Aggregation.SUM))
    create_plan(engine, tid, PLAN, T0)
    publish_plan(engine, tid, "bench", T0)
    for k in range(n):
        create_customer(engine, tid, CustomerDefinition(external_id=f"c{k:07d}", timezone="UTC"), T0)
        create_subscription(engine, tid, f"c{k:07d}", "bench", T0)
    specs = {code: get_meter(engine, tid, code).spec for code in METERS}
    ids, custs, meters, ts, units = [], [], [], [], []
    for k in range(n):
        for j, code in enumerate(METERS):
            ids.append(f"e{k}-{j}")
            custs.append(f"c{k:07d}")
            meters.append(code)
            ts.append(int((T0 + timedelta(hours=1 + k % 500)).timestamp()) * 1_000_000)
            units.append(1 + (k * 7919 + j * 104729) % 200_000)
    store = open_store(engine)
    step = 20_000
    for s in range(0, len(ids), step):
        e = slice(s, s + step)
        m = len(ids[e])
        store.write([PreparedBatch(tid, f"b{s}", m, False, list(range(m)), ids[e], custs[e], meters[e], ts[e],
                                   units[e], [0] * m, [None] * m, specs=specs)])  # fmt: skip
    store.close()
    return tid


def _raw_insert(tmp: Path, engine: Engine, tid: int) -> float:
    """The same invoice and line rows, written by one executemany each into a fresh database."""
    with engine.connect() as conn:
        inv_rows = [dict(r._mapping) for r in conn.execute(select(invoices).where(invoices.c.tenant_id == tid))]
        line_rows = [dict(r._mapping) for r in conn.execute(select(invoice_lines))]
    upgrade(make_engine(f"sqlite:///{tmp / 'raw.db'}"))
    # A plain engine: foreign keys off, since the parent rows (customers, plans) are not copied.
    target = create_engine(f"sqlite:///{tmp / 'raw.db'}")
    with target.connect() as conn:
        start = time.perf_counter()
        conn.execute(insert(invoices), inv_rows)
        conn.execute(insert(invoice_lines), line_rows)
        conn.commit()
        elapsed = time.perf_counter() - start
    target.dispose()
    return elapsed


def run(args: argparse.Namespace) -> Figures:
    n = 500 if args.quick else args.customers
    figures: Figures = {"customers": float(n)}
    with tempfile.TemporaryDirectory(prefix="tally-invoicing-") as name:
        tmp = Path(name)
        for explain in (True, False):
            engine = make_engine(f"sqlite:///{tmp / f'bench-{explain}.db'}")
            upgrade(engine)
            log(f"setting up {n} customers, subscriptions and {4 * n} events (explain={explain})")
            tid = _setup(engine, n)
            from rating import warm_up

            warm_up()
            start = time.perf_counter()
            summary = run_cycle(engine, tid, FEB, explain=explain, batch_size=500)
            elapsed = time.perf_counter() - start
            if summary.created != n:
                raise SystemExit(f"expected {n} invoices, the run wrote {summary.created}")
            with engine.connect() as conn:
                lines = conn.execute(select(invoice_lines.c.id)).all()
            if len(lines) != 5 * n:
                raise SystemExit(f"expected {5 * n} lines, found {len(lines)}")
            suffix = "" if explain else "_no_breakdown"
            figures[f"invoices_per_s{suffix}"] = n / elapsed
            figures[f"run_s{suffix}"] = elapsed
            if explain:
                raw = _raw_insert(tmp, engine, tid)
                figures["raw_insert_s"] = raw
                figures["ratio_to_raw_insert"] = elapsed / raw
            engine.dispose()
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


if __name__ == "__main__":
    raise SystemExit(main_for(__name__, __doc__ or "", run, add_arguments))
