"""End-to-end invoice run on SQLite: rollups → rated, persisted draft invoices of five lines each.

Figures (medians of `--repeats` runs, each in a fresh process on a fresh copy of the data):
`invoices_per_s` (the whole `run_cycle`: due items, bulk usage extract, columnar rating, invoice + line
inserts, run bookkeeping; rating and assembly in `workers` worker processes when the run is large enough,
see `invoicing.documents._run.worker_count`), the same with tier breakdowns off (`explain=False`),
`invoices_per_s_in_process` (the same run with `workers=0`), `peak_rss_mb`, and the ceiling:
`raw_insert_invoices_per_s`, a plain executemany of the very same invoice and line rows into a fresh
database in the same process, with `invoices_per_s_over_raw_insert` (1.0: the run costs no more than
writing its output) and `ratio_to_raw_insert`, the run's time over the raw insert's.
`invoices_per_s_percentage` runs the same month with the `calls` charge priced
as a percentage per transaction (fixed fee and minimum per transaction), which reads the stored events
of that meter instead of only its rollups; `percentage_cost_ratio` is its time over the plain run's.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, create_engine, func, insert, select

from benchmarks.harness import Figures, log, main_for, median
from invoicing.catalog import CustomerDefinition, create_plan, customer_row, publish_plan
from invoicing.documents import run_cycle
from invoicing.tables import customers, invoice_lines, invoices, subscription_history, subscriptions
from metering.event import PreparedBatch
from metering.meter import Aggregation, MeterDefinition, create_meter, get_meter
from metering.store import open_store
from metering.tenant import create_tenant
from tally.db import make_engine, upgrade

T0 = datetime(2026, 1, 1, tzinfo=UTC)
FEB = datetime(2026, 2, 1, tzinfo=UTC)
METERS = ("calls", "tokens", "gpu", "storage")
RAW_CHUNK = 50_000  # rows per executemany in `_raw_insert`
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


#: The `calls` charge as a card-style fee: rated per event, so the run reads that meter's raw events.
PERCENTAGE = {"model": "percentage", "rate": "2.9", "fixed_amount": "0.30", "per_transaction_min": "0.50"}


def _price_calls_per_transaction(path: Path) -> None:
    """Reprice the published plan's `calls` charge in a copy of the set-up database (benchmark only: a
    published version never changes in service)."""
    import json

    from invoicing.tables import plan_versions

    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        row = conn.execute(select(plan_versions.c.id, plan_versions.c.charges)).one()
        charges = json.loads(row.charges)
        for charge in charges:
            if charge["code"] == "calls":
                charge["price"] = {**PERCENTAGE, "currency": "USD"}
        conn.execute(
            plan_versions.update().where(plan_versions.c.id == row.id)
            .values(charges=json.dumps(charges, sort_keys=True, separators=(",", ":")))
        )  # fmt: skip
    engine.dispose()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--customers", type=int, default=20_000, help="customers (one invoice each)")
    parser.add_argument("--batch-size", type=int, default=2_000, help="run_cycle batch size")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (medians)")
    parser.add_argument("--workers", type=int, default=None, help="rating processes (default: the run chooses)")


def _setup(engine: Engine, n: int) -> int:
    """Tenant, meters and plan through the API; customers, subscriptions (with their `created` history
    row) and events in bulk: executemany straight into the tables with exactly the values
    `create_customer` / `create_subscription` would write, events through the store in large batches."""
    tid = create_tenant(engine, "bench").id
    for code in METERS:
        create_meter(engine, tid, MeterDefinition(code=code, aggregation=Aggregation.SUM))
    create_plan(engine, tid, PLAN, T0)
    plan = publish_plan(engine, tid, "bench", T0)
    values = customer_row(CustomerDefinition(external_id="c0000000", timezone="UTC"))
    step = 50_000
    for s in range(0, n, step):
        with engine.begin() as conn:
            first_cust = conn.execute(select(func.coalesce(func.max(customers.c.id), 0))).scalar_one() + 1
            first_sub = conn.execute(select(func.coalesce(func.max(subscriptions.c.id), 0))).scalar_one() + 1
            ks = range(s, min(n, s + step))
            conn.execute(
                insert(customers),
                [{**values, "id": first_cust + j, "tenant_id": tid, "external_id": f"c{k:07d}", "name": f"c{k:07d}",
                  "created_at": T0, "updated_at": T0} for j, k in enumerate(ks)],
            )  # fmt: skip
            conn.execute(
                insert(subscriptions),
                [{"id": first_sub + j, "tenant_id": tid, "customer_id": first_cust + j, "plan_version_id": plan.id,
                  "state": "active", "billing_anchor": T0, "started_at": T0, "trial_ends_at": None,
                  "ends_at": None, "pending_plan_version_id": None, "pending_change_at": None, "created_at": T0}
                 for j in range(len(ks))],
            )  # fmt: skip
            conn.execute(
                insert(subscription_history),
                [{"subscription_id": first_sub + j, "kind": "created", "effective_at": T0, "requested_at": T0,
                  "state": "active", "plan_version_id": plan.id, "previous_state": None,
                  "previous_plan_version_id": None, "scheduled_for": None, "actor": "api", "reason": ""}
                 for j in range(len(ks))],
            )  # fmt: skip
    specs = {code: get_meter(engine, tid, code).spec for code in METERS}
    store = open_store(engine)
    step = 200_000
    per = len(METERS)
    for s in range(0, per * n, step):
        rng = range(s, min(per * n, s + step))
        ids = [f"e{x // per}-{x % per}" for x in rng]
        custs = [f"c{x // per:07d}" for x in rng]
        meters = [METERS[x % per] for x in rng]
        ts = [int((T0 + timedelta(hours=1 + (x // per) % 500)).timestamp()) * 1_000_000 for x in rng]
        units = [1 + ((x // per) * 7919 + (x % per) * 104729) % 200_000 for x in rng]
        m = len(ids)
        store.write([PreparedBatch(tid, f"b{s}", m, False, list(range(m)), ids, custs, meters, ts, units,
                                   [0] * m, [None] * m, specs=specs)])  # fmt: skip
    store.close()
    return tid


def _raw_insert(tmp: Path, engine: Engine, tid: int) -> float:
    """The same invoice and line rows, written by executemany into a fresh database: streamed in chunks of
    `RAW_CHUNK` rows (reading every row into memory at once would dominate the process's peak), only the
    inserts and the commit timed."""
    upgrade(make_engine(f"sqlite:///{tmp / 'raw.db'}"))
    # A plain engine: foreign keys off, since the parent rows (customers, plans) are not copied.
    target = create_engine(f"sqlite:///{tmp / 'raw.db'}")
    elapsed = 0.0
    with engine.connect() as source, target.connect() as conn:
        for table, query in (
            (invoices, select(invoices).where(invoices.c.tenant_id == tid)),
            (invoice_lines, select(invoice_lines)),
        ):
            for part in source.execution_options(yield_per=RAW_CHUNK).execute(query).partitions():
                rows = [dict(r._mapping) for r in part]
                start = time.perf_counter()
                conn.execute(insert(table), rows)
                elapsed += time.perf_counter() - start
        start = time.perf_counter()
        conn.commit()
        elapsed += time.perf_counter() - start
    target.dispose()
    return elapsed


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: reset by exec, unlike ru_maxrss, which a spawned child
    inherits from the parent's high-water mark at fork)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed_run(
    path: str, tid: int, explain: bool, batch_size: int, workers: int | None
) -> tuple[float, float, int, int]:
    """One `run_cycle` in a fresh process (so its peak RSS is the run's own; the workers' are not counted):
    seconds, peak RSS MB, invoices written, lines found."""
    from rating import warm_up

    engine = make_engine(f"sqlite:///{path}")
    warm_up()
    start = time.perf_counter()
    summary = run_cycle(engine, tid, FEB, explain=explain, batch_size=batch_size, workers=workers)
    elapsed = time.perf_counter() - start
    rss = _peak_rss_mb()
    with engine.connect() as conn:
        lines = conn.execute(select(func.count()).select_from(invoice_lines)).scalar_one()
    engine.dispose()
    return elapsed, rss, summary.created, int(lines)


def _run_once(tmp: Path, base: Path, tid: int, n: int, explain: bool, args: argparse.Namespace,
              workers: int | None) -> tuple[float, float]:  # fmt: skip
    """One timed run on a fresh copy of the set-up data, in a fresh (non-daemonic: it may start the run's
    workers) process: seconds and peak RSS."""
    path = tmp / "bench.db"
    shutil.copy(base, path)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        elapsed, rss, created, lines = pool.submit(
            _timed_run, str(path), tid, explain, args.batch_size, workers
        ).result()
    if created != n:
        raise SystemExit(f"expected {n} invoices, the run wrote {created}")
    if lines != 5 * n:
        raise SystemExit(f"expected {5 * n} lines, found {lines}")
    return elapsed, rss


def _fold(engine: Engine) -> None:
    """Fold the set-up events into rollups, as the server's folder does within a second of the ack: the
    run reads rollups, not pending events (metering/fold.py; absent before the ingest watermark)."""
    try:
        from metering.fold import catch_up
    except ImportError:
        return
    catch_up(engine)


def run(args: argparse.Namespace) -> Figures:
    from invoicing.documents._run import worker_count

    n = 500 if args.quick else args.customers
    repeats = max(1, args.repeats)
    workers = worker_count(args.workers, n)  # what the run chooses: one document (work item) per customer
    figures: Figures = {"customers": float(n), "workers": float(workers), "repeats": float(repeats)}
    with tempfile.TemporaryDirectory(prefix="tally-invoicing-") as name:
        tmp = Path(name)
        base = tmp / "setup.db"
        engine = make_engine(f"sqlite:///{base}")
        upgrade(engine)
        log(f"setting up {n} customers, subscriptions and {4 * n} events")
        start = time.perf_counter()
        tid = _setup(engine, n)
        _fold(engine)
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        engine.dispose()
        figures["setup_s"] = time.perf_counter() - start
        runs: dict[str, list[float]] = {}
        for r in range(repeats):
            for label, explain, w in (("", True, args.workers), ("_no_breakdown", False, args.workers),
                                      ("_in_process", True, 0)):  # fmt: skip
                log(f"[{r + 1}/{repeats}] run_cycle over {n} customers (explain={explain}, workers={w})")
                elapsed, rss = _run_once(tmp, base, tid, n, explain, args, w)
                runs.setdefault(f"run_s{label}", []).append(elapsed)
                runs.setdefault(f"peak_rss_mb{label}", []).append(rss)
                if label == "":
                    engine = make_engine(f"sqlite:///{tmp / 'bench.db'}")
                    runs.setdefault("raw_insert_s", []).append(_raw_insert(tmp, engine, tid))
                    engine.dispose()
                    (tmp / "raw.db").unlink()
                (tmp / "bench.db").unlink()
        for key, values in runs.items():
            figures[key] = median(values)
        for label in ("", "_no_breakdown", "_in_process"):
            figures[f"invoices_per_s{label}"] = n / figures[f"run_s{label}"]
        figures["raw_insert_invoices_per_s"] = n / figures["raw_insert_s"]
        figures["invoices_per_s_over_raw_insert"] = figures["invoices_per_s"] / figures["raw_insert_invoices_per_s"]
        figures["ratio_to_raw_insert"] = figures["run_s"] / figures["raw_insert_s"]
        figures["parallel_speedup"] = figures["invoices_per_s"] / figures["invoices_per_s_in_process"]
        path = tmp / "bench-percentage.db"
        shutil.copy(base, path)
        _price_calls_per_transaction(path)
        log(f"run_cycle over {n} customers with calls priced per transaction")
        shutil.move(path, tmp / "percentage-setup.db")
        elapsed, _ = _run_once(tmp, tmp / "percentage-setup.db", tid, n, True, args, args.workers)
        figures["invoices_per_s_percentage"] = n / elapsed
        figures["percentage_cost_ratio"] = elapsed / figures["run_s"]
    return figures


if __name__ == "__main__":
    raise SystemExit(main_for(__name__, __doc__ or "", run, add_arguments))
