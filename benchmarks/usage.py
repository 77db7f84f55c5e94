"""Usage: the cost of rollups on ingest, one customer's month from rollups, and the bulk period extract.

1. Ingest with rollups on vs off: the same prepared batches written through the event store (no gRPC,
   so the ratio isolates the rollup work) into two fresh databases; `ratio_rollups_on_to_off` for
   events spread at random over the month (a backfill: about one rollup row per event at 10,000
   customers), and `ratio_rollups_on_to_off_live` for the same number of events arriving in time order
   within one hour (live traffic: many events share a customer's 15-minute bucket).
2. A month of usage: `--events` events over `--customers` customers spread across 30 days are loaded
   (with rollups), then `usage()` for random customers' whole month: p50/p99 latency.
3. `period_columns()` for the whole tenant and month: 15-minute rollup rows answered per second into
   numpy (`bulk_extract_rollup_rows_per_s`; the month is whole days, so it reads the day tier, and
   `bulk_extract_rows_read_per_s` counts the day rows it read), beside the same extract read from the
   15-minute buckets only (`bulk_extract_buckets_only_*`, the extract before the day tier), same run.

Events are stored through the event store and then folded (`catch_up`), as the server's fold does after
the ack: `fold_events_per_s` is the fold of the loaded month.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

import metering.usage as usage_module
from benchmarks.harness import Figures, log, main_for, median, percentile
from benchmarks.ingest import Database, fresh_database
from metering.event import PreparedBatch
from metering.fold import catch_up
from metering.meter import Aggregation, MeterDefinition, MeterSpec, create_meter
from metering.rollup import count_buckets
from metering.store import open_store
from metering.tables import rollups, rollups_day
from metering.tenant import create_tenant
from metering.usage import period_columns, usage
from tally.db import make_engine, upgrade

MONTH_START = datetime(2026, 10, 1, tzinfo=UTC)
MONTH_US = 30 * 86_400_000_000
HOUR_US = 3_600_000_000
BATCH = 5_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=10_000_000, help="events loaded for the queries [10M]")
    parser.add_argument("--customers", type=int, default=10_000, help="customers [10000]")
    parser.add_argument("--ratio-events", type=int, default=500_000, help="events per on/off ingest run [500k]")
    parser.add_argument("--queries", type=int, default=200, help="single-customer month queries [200]")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")


def batches(
    events: int, customers: int, seed: int, specs: dict[str, MeterSpec], span_us: int = MONTH_US, live: bool = False
) -> list[PreparedBatch]:
    """Random customers; timestamps at random over `span_us`, or in time order when `live`."""
    rng = random.Random(seed)
    start_us = int(MONTH_START.timestamp()) * 1_000_000
    n_batches = events // BATCH
    stamps = sorted(start_us + rng.randrange(span_us) for _ in range(n_batches * BATCH)) if live else None
    out = []
    for b in range(n_batches):
        cust = [f"cust-{rng.randrange(customers)}" for _ in range(BATCH)]
        if stamps is not None:
            ts = stamps[b * BATCH : (b + 1) * BATCH]
        else:
            ts = [start_us + rng.randrange(span_us) for _ in range(BATCH)]
        out.append(
            PreparedBatch(
                1, "b", BATCH, False, range(BATCH), [f"s{seed}-{b}-{i}" for i in range(BATCH)], cust,
                ["tokens"] * BATCH, ts, [rng.randrange(1, 10_000) for _ in range(BATCH)], [2] * BATCH,
                [None] * BATCH, specs=specs,
            )
        )  # fmt: skip
    return out


def prepare_db(kind: str, workdir: Path) -> tuple[Database, Engine, dict[str, MeterSpec]]:
    db = fresh_database(kind, workdir)
    engine = make_engine(db.url)
    upgrade(engine)
    tenant = create_tenant(engine, "bench")
    meter = create_meter(engine, tenant.id, MeterDefinition(code="tokens", aggregation=Aggregation.SUM, value_scale=2))
    return db, engine, {"tokens": meter.spec}


def write_all(engine: Engine, data: list[PreparedBatch], rollups: bool) -> float:
    """Events/s stored, and with `rollups` folded too (the fold runs after the ack in service, so the ratio
    is what keeping rollups costs in all, not what an ack waits for)."""
    store = open_store(engine, rollups=rollups)
    start = time.perf_counter()
    for i in range(0, len(data), 4):  # groups of four batches, as group commit does under load
        store.write(data[i : i + 4])
    store.close()
    if rollups:
        catch_up(engine)
    elapsed = time.perf_counter() - start
    return sum(len(b) for b in data) / elapsed


def _buckets_only(start_us: int, end_us: int) -> list[tuple[Any, Any, int, int]]:
    """`period_columns` as it read before the day tier: every 15-minute bucket of the period."""
    return [(rollups, rollups.c.bucket_us, start_us, end_us)]


def run(args: argparse.Namespace) -> Figures:
    figures: Figures = {}
    events = 200_000 if args.quick else args.events
    ratio_events = 100_000 if args.quick else args.ratio_events
    queries = 20 if args.quick else args.queries
    kind = args.database
    with tempfile.TemporaryDirectory(prefix="tally-usage-") as tmp:
        workdir = Path(tmp)
        for scenario, suffix in (("backfill", ""), ("live", "_live")):
            on: list[float] = []
            off: list[float] = []
            for rep in range(1 if args.quick else 3):
                for enabled, sink in ((True, on), (False, off)):
                    db, engine, specs = prepare_db(kind, workdir)
                    live = scenario == "live"
                    data = batches(ratio_events, args.customers, rep, specs, HOUR_US if live else MONTH_US, live)
                    sink.append(write_all(engine, data, enabled))
                    engine.dispose()
                    db.drop()
                log(f"{scenario} run {rep + 1}: rollups on {on[-1]:,.0f} events/s, off {off[-1]:,.0f} events/s")
            figures[f"{kind}_store_events_per_s_rollups_on{suffix}"] = round(median(on))
            figures[f"{kind}_store_events_per_s_rollups_off{suffix}"] = round(median(off))
            figures[f"ratio_rollups_on_to_off{suffix}"] = round(median(on) / median(off), 3)

        db, engine, specs = prepare_db(kind, workdir)
        log(f"loading {events:,} events over {args.customers:,} customers and 30 days ...")
        store = open_store(engine)
        loaded = 0
        for seed in range(max(1, events // 500_000)):
            chunk = batches(min(500_000, events - loaded), args.customers, 100 + seed, specs)
            for i in range(0, len(chunk), 4):
                store.write(chunk[i : i + 4])
            loaded += sum(len(b) for b in chunk)
            log(f"  {loaded:,} events loaded")
        store.close()
        t0 = time.perf_counter()
        catch_up(engine)
        figures["fold_events_per_s"] = round(loaded / (time.perf_counter() - t0))
        rollup_rows = count_buckets(engine, 1)
        with engine.connect() as conn:
            day_rows = conn.execute(select(func.count()).select_from(rollups_day)).scalar_one()
        figures["events_loaded"] = loaded
        figures["rollup_rows"] = rollup_rows
        figures["rollup_day_rows"] = day_rows
        end = MONTH_START + timedelta(days=30)
        rng = random.Random(7)
        lat = []
        for _ in range(queries):
            customer = f"cust-{rng.randrange(args.customers)}"
            t0 = time.perf_counter()
            usage(engine, 1, customer, "tokens", MONTH_START, end)
            lat.append((time.perf_counter() - t0) * 1000)
        figures["month_query_p50_ms"] = round(percentile(lat, 50), 2)
        figures["month_query_p99_ms"] = round(percentile(lat, 99), 2)
        # The month is whole UTC days: the extract reads the day tier; the ceiling-side figure reads the same
        # period from the 15-minute buckets only (the extract before the day tier), in the same run.
        extract, buckets_only = [], []
        for _ in range(1 if args.quick else 3):
            t0 = time.perf_counter()
            cols = period_columns(engine, 1, MONTH_START, end)
            extract.append(time.perf_counter() - t0)
            tiers, usage_module._tiers = usage_module._tiers, _buckets_only
            try:
                t0 = time.perf_counter()
                same = period_columns(engine, 1, MONTH_START, end)
                buckets_only.append(time.perf_counter() - t0)
            finally:
                usage_module._tiers = tiers
            assert same.units.tolist() == cols.units.tolist() and same.customers.tolist() == cols.customers.tolist()
        figures["bulk_extract_s"] = round(median(extract), 3)
        figures["bulk_extract_rollup_rows_per_s"] = round(rollup_rows / median(extract))
        figures["bulk_extract_rows_read_per_s"] = round(day_rows / median(extract))
        figures["bulk_extract_buckets_only_s"] = round(median(buckets_only), 3)
        figures["bulk_extract_buckets_only_rows_per_s"] = round(rollup_rows / median(buckets_only))
        figures["bulk_extract_output_rows"] = len(cols)
        engine.dispose()
        db.drop()
    return figures


if __name__ == "__main__":
    sys.exit(main_for("benchmarks.usage", __doc__ or "", run, add_arguments))
