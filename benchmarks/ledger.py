"""Ledger: batched durable transfers per second, single-transfer latency, and the cost over a raw insert.

For each database (fresh SQLite file; fresh PostgreSQL schema, dropped afterwards): `--accounts`
funded wallets, then batches of 1,000 and 8,000 transfers wallet → revenue through
`create_transfers` (each batch one durable transaction: checks, account locks, executemany insert,
per-account aggregated updates), then `--singles` one-transfer calls for p50/p99 latency. The
baseline is the same transfer rows inserted raw (executemany, one transaction per batch) into the
same table in the same run: `ratio_to_raw_insert_*` = ledger rate / raw rate.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from sqlalchemy import Engine

from benchmarks.harness import Figures, log, main_for, median, percentile
from benchmarks.ingest import PG_URL_ENV, fresh_database
from invoicing.ledger import Ledger, Transfer
from invoicing.ledger.transfer import _INSERT_COLUMNS
from metering.tenant import create_tenant
from tally.db import make_engine, upgrade

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--postgres-url", default=os.environ.get("TALLY_TEST_POSTGRES_URL", PG_DEFAULT))
    parser.add_argument("--accounts", type=int, default=1_000, help="funded wallets [1000]")
    parser.add_argument("--batches", type=int, default=5, help="batches per size [5]")
    parser.add_argument("--singles", type=int, default=300, help="single-transfer calls [300]")
    parser.add_argument("--skip-postgres", action="store_true")


def measure(prefix: str, engine: Engine, args: argparse.Namespace) -> Figures:
    tenant = create_tenant(engine, f"bench-{prefix}")
    led = Ledger(engine, tenant.id)
    wallets = [led.wallet(f"c{i}", "USD") for i in range(args.accounts)]
    cash_in, revenue = led.system_account("cash_in", "USD"), led.system_account("revenue", "USD")
    fund = [Transfer(f"fund{i}", cash_in, w, 10**12, "fund") for i, w in enumerate(wallets)]
    assert all(r.ok for r in led.create_transfers(fund))
    figures: Figures = {}
    sizes = (200, 800) if args.quick else (1_000, 8_000)
    for size in sizes:
        rates, raw_rates = [], []
        for b in range(args.batches):
            batch = [
                Transfer(f"b{size}-{b}-{i}", wallets[i % len(wallets)], revenue, 1 + i % 97, "spend")
                for i in range(size)
            ]
            start = time.perf_counter()
            results = led.create_transfers(batch)
            rates.append(size / (time.perf_counter() - start))
            assert all(r.ok for r in results)
            rows = [
                (tenant.id + 10_000, t.id, i, t.debit_account_id, t.credit_account_id, t.amount, "USD", t.code, "",
                 0, None, None, 0)
                for i, t in enumerate(batch)
            ]  # fmt: skip
            # The same driver-level executemany of tuples the ledger itself uses: an honest floor.
            mark = "?" if engine.dialect.name == "sqlite" else "%s"
            sql = f"INSERT INTO ledger_transfers ({', '.join(_INSERT_COLUMNS)}) VALUES ({', '.join([mark] * 13)})"
            start = time.perf_counter()
            with engine.begin() as conn:
                conn.exec_driver_sql(sql, rows)
            raw_rates.append(size / (time.perf_counter() - start))
        figures[f"{prefix}_batch{size}_transfers_per_s"] = median(rates)
        figures[f"{prefix}_raw_insert_batch{size}_rows_per_s"] = median(raw_rates)
        log(f"{prefix} batch {size}: {median(rates):,.0f}/s (raw {median(raw_rates):,.0f}/s)")
    big = sizes[-1]
    figures[f"ratio_to_raw_insert_{prefix}"] = (
        figures[f"{prefix}_batch{big}_transfers_per_s"] / figures[f"{prefix}_raw_insert_batch{big}_rows_per_s"]
    )
    latencies = []
    for i in range(args.singles if not args.quick else 50):
        start = time.perf_counter()
        led.create_transfers([Transfer(f"s{i}", wallets[i % len(wallets)], revenue, 1, "spend")])
        latencies.append((time.perf_counter() - start) * 1000)
    figures[f"{prefix}_single_p50_ms"] = percentile(latencies, 50)
    figures[f"{prefix}_single_p99_ms"] = percentile(latencies, 99)
    return figures


def run(args: argparse.Namespace) -> Figures:
    figures: Figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        db = fresh_database("sqlite", Path(tmp))
        engine = make_engine(db.url)
        upgrade(engine)
        try:
            figures.update(measure("sqlite", engine, args))
        finally:
            engine.dispose()
            db.drop()
    if not args.skip_postgres:
        os.environ[PG_URL_ENV] = args.postgres_url  # read by fresh_database, in this process only
        db = fresh_database("postgres", Path("."))
        engine = make_engine(db.url)
        upgrade(engine)
        try:
            figures.update(measure("pg", engine, args))
        finally:
            engine.dispose()
            db.drop()
    return figures


if __name__ == "__main__":
    raise SystemExit(main_for(__name__, __doc__ or "", run, add_arguments))
