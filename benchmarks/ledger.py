"""Ledger: batched durable transfers per second beside a bare insert of the same rows, and single-call latency.

For each database (fresh SQLite file with WAL and synchronous=FULL; fresh PostgreSQL schema, dropped
afterwards): `--accounts` funded wallets, then batches of 1,000 and 8,000 transfers wallet → revenue
through `Ledger.create_transfers` (each batch one durable transaction with every check: idempotency,
account locks, overdraft flags, int64 overflow, the history rows and the balances), then `--singles`
one-transfer calls for p50/p99 latency.

The ceiling is a bare insert of the same rows (random 32-hex ids, as in shared/CEILINGS.md) into the
same `ledger_transfers` table with its primary key and history indexes, one durable transaction per
batch, measured in the same run, alternating batch by batch with the ledger so both see the same
machine: on SQLite the faster of a driver-level `executemany` of prepared tuples and multi-row
`INSERT ... VALUES` statements (metering/sqlite.py); on PostgreSQL the faster of `executemany` and binary
`COPY` (COPY, in practice), so the ratio is against the best bare insert the driver offers. Rows and
transfers are built before the clock starts. Figures are medians of
`--repeats` batches per size after one warm-up batch; `ratio_to_raw_insert_<db>_batch<size>` is ledger
rate / bare rate. `load_avg_1m` is the machine's load when the run started (other processes share it).

On PostgreSQL every batch rewrites all 1,001 touched account rows. A balance update is HOT (no index
entry written) only if the row's page has room for the new version; migration 0017 sets the table's
fillfactor to 70 for that. `pg_accounts_hot_update_fraction` is the share of all the run's updates of
`ledger_accounts` that were HOT (from pg_stat_user_tables, read after the pool's backends have exited
and flushed their counters). `--pg-accounts-fillfactor N` overrides the migration's setting in the
throwaway schema before the wallets exist. This benchmark is the worst case for free space: a batch
updates every row of every account page at once, so a page needs room for as many new versions as it
holds rows; a batch that touches a few accounts per page needs far less.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from benchmarks.harness import Figures, log, main_for, median, percentile
from benchmarks.ingest import PG_URL_ENV, fresh_database
from invoicing.ledger import Ledger, Transfer
from invoicing.ledger.transfer import _COPY_TYPES, _INSERT_COLUMNS
from metering.tenant import create_tenant
from metering.transactions import begin_write
from tally.db import make_engine, upgrade

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--postgres-url", default=os.environ.get("TALLY_TEST_POSTGRES_URL", PG_DEFAULT))
    parser.add_argument("--accounts", type=int, default=1_000, help="funded wallets [1000]")
    parser.add_argument("--repeats", "--batches", type=int, default=7, help="timed batches per size [7]")
    parser.add_argument("--singles", type=int, default=300, help="single-transfer calls [300]")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument(
        "--pg-accounts-fillfactor", type=int, default=None,
        help="what-if: ALTER TABLE ledger_accounts SET (fillfactor=N) in the throwaway schema before the"
        " wallets exist, instead of migration 0017's 70 (see the docstring)",
    )  # fmt: skip


def _bare_executemany(engine: Engine, rows: list[tuple[Any, ...]]) -> float:
    mark = "?" if engine.dialect.name == "sqlite" else "%s"
    sql = f"INSERT INTO ledger_transfers ({', '.join(_INSERT_COLUMNS)}) VALUES ({', '.join([mark] * 13)})"
    start = time.perf_counter()
    with begin_write(engine) as conn:
        conn.exec_driver_sql(sql, rows)
    return time.perf_counter() - start


def _bare_values(engine: Engine, rows: list[tuple[Any, ...]]) -> float:
    """SQLite: multi-row INSERT ... VALUES statements (metering/sqlite.py), the ledger's own way to insert."""
    from itertools import chain

    from metering.sqlite import execute_values

    flat = tuple(chain.from_iterable(rows))
    head = f"INSERT INTO ledger_transfers ({', '.join(_INSERT_COLUMNS)})"
    start = time.perf_counter()
    with begin_write(engine) as conn:
        execute_values(conn.exec_driver_sql, head, 13, "", flat)
    return time.perf_counter() - start


def _bare_copy(engine: Engine, rows: list[tuple[Any, ...]]) -> float:
    start = time.perf_counter()
    with begin_write(engine) as conn:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f"COPY ledger_transfers ({', '.join(_INSERT_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_COPY_TYPES)
            for row in rows:
                copy.write_row(row)
        cursor.close()
    return time.perf_counter() - start


def measure(prefix: str, engine: Engine, args: argparse.Namespace) -> Figures:
    if engine.dialect.name == "postgresql" and args.pg_accounts_fillfactor:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"ALTER TABLE ledger_accounts SET (fillfactor = {int(args.pg_accounts_fillfactor)})")
    tenant = create_tenant(engine, f"bench-{prefix}")
    bare_tenant = tenant.id + 10_000  # same table, rows that can never collide with the ledger's
    led = Ledger(engine, tenant.id)
    wallets = [led.wallet(f"c{i}", "USD") for i in range(args.accounts)]
    cash_in, revenue = led.system_account("cash_in", "USD"), led.system_account("revenue", "USD")
    fund = [Transfer(f"fund{i}", cash_in, w, 10**12, "fund") for i, w in enumerate(wallets)]
    assert all(r.ok for r in led.create_transfers(fund))
    pg = engine.dialect.name == "postgresql"
    figures: Figures = {}
    sizes = (200, 800) if args.quick else (1_000, 8_000)
    repeats = 3 if args.quick else args.repeats
    for size in sizes:
        rates: list[float] = []
        bare: dict[str, list[float]] = {"executemany": [], "copy": []} if pg else {"executemany": [], "values": []}
        for b in range(repeats + 1):  # batch 0 warms caches and is not counted
            batch = [
                Transfer(uuid.uuid4().hex, wallets[i % len(wallets)], revenue, 1 + i % 97, "spend") for i in range(size)
            ]
            start = time.perf_counter()
            results = led.create_transfers(batch)
            elapsed = time.perf_counter() - start
            assert len(results) == size and all(r.ok for r in results)
            if b:
                rates.append(size / elapsed)
            for method, fn in (("executemany", _bare_executemany), ("copy", _bare_copy), ("values", _bare_values)):
                if method in bare:
                    rows = [
                        (bare_tenant, uuid.uuid4().hex, i, t.debit_account_id, t.credit_account_id, t.amount, "USD",
                         t.code, "", 0, None, None, 0)
                        for i, t in enumerate(batch)
                    ]  # fmt: skip
                    seconds = fn(engine, rows)
                    if b:
                        bare[method].append(size / seconds)
        best = max(bare, key=lambda m: median(bare[m]))
        figures[f"{prefix}_batch{size}_transfers_per_s"] = median(rates)
        figures[f"{prefix}_raw_insert_batch{size}_rows_per_s"] = median(bare[best])
        for method, seen in bare.items():
            figures[f"{prefix}_raw_{method}_batch{size}_rows_per_s"] = median(seen)
        ratio = median(rates) / median(bare[best])
        figures[f"ratio_to_raw_insert_{prefix}_batch{size}"] = ratio
        rate, bare_rate = median(rates), median(bare[best])
        log(f"{prefix} batch {size}: {rate:,.0f}/s, bare {best} {bare_rate:,.0f}/s, ratio {ratio:.2f}")
    figures[f"ratio_to_raw_insert_{prefix}"] = figures[f"ratio_to_raw_insert_{prefix}_batch{sizes[-1]}"]
    latencies = []
    for i in range(args.singles if not args.quick else 50):
        start = time.perf_counter()
        led.create_transfers([Transfer(f"s{i}", wallets[i % len(wallets)], revenue, 1, "spend")])
        latencies.append((time.perf_counter() - start) * 1000)
    figures[f"{prefix}_single_p50_ms"] = percentile(latencies, 50)
    figures[f"{prefix}_single_p99_ms"] = percentile(latencies, 99)
    return figures


def _hot_fraction(engine: Engine) -> float:
    """HOT updates / all updates of ledger_accounts in this schema. A backend flushes its table counters
    when it exits, so the pool is closed first; the stats reader waits for the flush to be visible."""
    engine.dispose()
    for _ in range(20):
        with engine.connect() as conn:
            upd, hot = conn.exec_driver_sql(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
                " WHERE relname = 'ledger_accounts' AND schemaname = current_schema()"
            ).one()
        if upd:
            break
        time.sleep(0.1)
    engine.dispose()
    return float(hot) / float(upd) if upd else 0.0


def run(args: argparse.Namespace) -> Figures:
    figures: Figures = {"load_avg_1m": os.getloadavg()[0]}
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
            figures["pg_accounts_hot_update_fraction"] = _hot_fraction(engine)
        finally:
            engine.dispose()
            db.drop()
    return figures


if __name__ == "__main__":
    raise SystemExit(main_for(__name__, __doc__ or "", run, add_arguments))
