"""Entitlements: CheckEntitlement latency from memory, in process and over gRPC.

A fresh SQLite database holds `--customers` customers on one plan granting a boolean, a quota (with
usage) and a balance feature. The cache is warmed in bulk (`preload`; `load_customers_per_s` is that
rate), then `--checks` checks of random (customer, feature) pairs are timed one by one:
`check_p50_us`/`check_p99_us` (target: p99 under 1 ms). Baseline in the same run: the same loop doing
a plain dict lookup, `ratio_check_to_dict_p50`.

Over gRPC: a real server (`tally.server.start`) on a loopback port, a client on one channel calling
CheckEntitlement `--grpc-calls` times on `--grpc-customers` warmed customers with an ingest key:
`grpc_check_p50_ms`/`grpc_check_p99_ms`; baseline: the standard health Check on the same channel,
`ratio_grpc_check_to_health_p50` (what the entitlement adds over the bare RPC round trip).

Also, on the same database: `portfolio_s`, one `portfolio()` over every customer (batched queries),
and `customer_360_ms`, the median of a few single-customer 360s (it prices the upcoming invoice); so
`ratio_portfolio_to_360_per_customer` says how much cheaper the batched portfolio is per customer
than calling the 360 for each.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import Engine, insert, select

from benchmarks.harness import Figures, log, main_for, median, percentile, timed
from invoicing.catalog import CustomerDefinition, create_customer, create_plan, publish_plan
from invoicing.insight import EntitlementCache, customer_360, portfolio
from invoicing.subscriptions import create_subscription
from invoicing.tables import customers, subscriptions
from metering.event import PreparedBatch
from metering.meter import Aggregation, MeterDefinition, create_meter, get_meter
from metering.store import open_store
from metering.tenant import create_api_key, create_tenant
from tally.db import make_engine, upgrade
from tally.server import RunningServer, start
from tally.settings import Settings
from tally.v1 import billing_pb2, billing_pb2_grpc

FEATURES = ("sso", "calls", "gpu", "missing")
START = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--customers", type=int, default=10_000, help="customers [10000]")
    parser.add_argument("--checks", type=int, default=200_000, help="in-process checks timed [200000]")
    parser.add_argument("--grpc-customers", type=int, default=1_000, help="customers checked over gRPC [1000]")
    parser.add_argument("--grpc-calls", type=int, default=3_000, help="gRPC calls timed [3000]")


def _copy_rows(engine: Engine, table: Any, template: Any, rows: list[dict[str, Any]]) -> None:
    values = {k: v for k, v in template._mapping.items() if k != "id"}
    with engine.begin() as conn:
        for k in range(0, len(rows), 5_000):
            conn.execute(insert(table), [{**values, **r} for r in rows[k : k + 5_000]])


def provision(engine: Engine, n: int) -> tuple[int, str, list[str]]:
    """Tenant, plan, n customers each subscribed (template rows copied in bulk), usage; (tenant, key, ids)."""
    tenant = create_tenant(engine, "bench")
    _, key = create_api_key(engine, tenant.id)
    create_meter(engine, tenant.id, MeterDefinition(code="api_calls", aggregation=Aggregation.COUNT))
    features = [
        {"key": "sso", "kind": "boolean"},
        {"key": "calls", "kind": "quota", "meter": "api_calls", "amount": "1000"},
        {"key": "gpu", "kind": "balance", "unit": "USD"},
    ]
    price = {"model": "per_unit", "unit_amount": "0.01", "currency": "USD"}
    charges = [{"code": "calls", "kind": "usage", "meter": "api_calls", "price": price}]
    create_plan(engine, tenant.id, {"code": "pro", "currency": "USD", "charges": charges, "features": features}, START)
    publish_plan(engine, tenant.id, "pro", START)
    create_customer(engine, tenant.id, CustomerDefinition(external_id="c0", timezone="UTC"), START)
    create_subscription(engine, tenant.id, "c0", "pro", START)
    ids = [f"c{i}" for i in range(n)]
    with engine.connect() as conn:
        cust = conn.execute(select(customers).where(customers.c.external_id == "c0")).one()
        sub = conn.execute(select(subscriptions)).one()
    _copy_rows(engine, customers, cust, [{"external_id": c} for c in ids[1:]])
    with engine.connect() as conn:
        by_id = {r.external_id: r.id for r in conn.execute(select(customers.c.external_id, customers.c.id))}
    _copy_rows(engine, subscriptions, sub, [{"customer_id": by_id[c]} for c in ids[1:]])
    spec = get_meter(engine, tenant.id, "api_calls").spec
    now_us = int(time.time()) * 1_000_000 - 60_000_000
    store = open_store(engine)
    m = len(ids)
    store.write([PreparedBatch(
        tenant.id, "u", m, False, list(range(m)), [f"e{i}" for i in range(m)], ids, ["api_calls"] * m,
        [now_us] * m, [1] * m, [0] * m, [None] * m, specs={"api_calls": spec},
    )])  # fmt: skip
    store.close()
    return tenant.id, key, ids


def in_process(engine: Engine, tenant_id: int, ids: list[str], args: argparse.Namespace) -> Figures:
    cache = EntitlementCache(engine)
    start = time.perf_counter()
    assert cache.preload(tenant_id, ids) == len(ids)
    loaded = len(ids) / (time.perf_counter() - start)
    rng = random.Random(7)
    pairs = [(rng.choice(ids), rng.choice(FEATURES)) for _ in range(args.checks)]
    one = Decimal(1)
    times: list[int] = []
    clock = time.perf_counter_ns
    for customer, feature in pairs:
        t0 = clock()
        cache.check(tenant_id, customer, feature, one)
        times.append(clock() - t0)
    assert cache.check(tenant_id, ids[0], "calls").used == 1
    table = {(tenant_id, c): c for c in ids}
    base: list[int] = []
    for customer, _ in pairs:
        t0 = clock()
        table.get((tenant_id, customer))
        base.append(clock() - t0)
    p50, p99, b50 = percentile(times, 50) / 1e3, percentile(times, 99) / 1e3, percentile(base, 50) / 1e3
    log(f"in process: check p50 {p50:.1f} us, p99 {p99:.1f} us (dict lookup p50 {b50:.2f} us); "
        f"bulk load {loaded:,.0f} customers/s")  # fmt: skip
    return {
        "load_customers_per_s": loaded,
        "check_p50_us": p50,
        "check_p99_us": p99,
        "dict_lookup_p50_us": b50,
        "ratio_check_to_dict_p50": p50 / b50 if b50 else 0.0,
        **under_load(cache, tenant_id, pairs),
    }


def under_load(cache: EntitlementCache, tenant_id: int, pairs: list[tuple[str, str]], threads: int = 4) -> Figures:
    """The same checks from `threads` threads at once, as a server's handler threads would call it: the
    latency of each call includes waiting for the GIL, which is what a caller under load sees."""
    one = Decimal(1)
    clock = time.perf_counter_ns
    per_thread: list[list[int]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads)

    def worker(k: int) -> None:
        mine, times = pairs[k::threads], per_thread[k]
        barrier.wait()
        for customer, feature in mine:
            t0 = clock()
            cache.check(tenant_id, customer, feature, one)
            times.append(clock() - t0)

    start = time.perf_counter()
    workers = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    times = [t for ts in per_thread for t in ts]
    p50, p99 = percentile(times, 50) / 1e3, percentile(times, 99) / 1e3
    log(f"in process, {threads} threads at once: check p50 {p50:.1f} us, p99 {p99:.1f} us, "
        f"{len(times) / elapsed:,.0f} checks/s in all")
    return {"loaded_check_p50_us": p50, "loaded_check_p99_us": p99, "loaded_checks_per_s": len(times) / elapsed}


def insight(engine: Engine, tenant_id: int, ids: list[str]) -> Figures:
    at = datetime.now(UTC)
    t0 = time.perf_counter()
    p = portfolio(engine, tenant_id, at)
    whole = time.perf_counter() - t0
    assert p.customers == len(ids)
    one = median(timed(lambda c=c: customer_360(engine, tenant_id, c, at)) for c in ids[:20])  # type: ignore[misc]
    log(f"portfolio of {len(ids):,} customers: {whole:.2f} s; one customer 360: {one * 1e3:.1f} ms")
    return {
        "portfolio_s": whole,
        "customer_360_ms": one * 1e3,
        "ratio_portfolio_to_360_per_customer": whole / len(ids) / one,
    }


class _Server:
    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        settings = Settings(database_url=url, port=0)
        self.running: RunningServer = asyncio.run_coroutine_threadsafe(start(settings), self.loop).result(60)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.running.stop(1.0), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)


def over_grpc(url: str, key: str, ids: list[str], args: argparse.Namespace) -> Figures:
    server = _Server(url)
    try:
        metadata = (("authorization", f"Bearer {key}"),)
        with grpc.insecure_channel(f"127.0.0.1:{server.running.port}") as channel:
            stub = billing_pb2_grpc.BillingServiceStub(channel)  # type: ignore[no-untyped-call]
            health = health_pb2_grpc.HealthStub(channel)
            sample = ids[: args.grpc_customers]
            for c in sample:  # warm: the first check of a customer loads it
                stub.CheckEntitlement(billing_pb2.CheckEntitlementRequest(customer=c, feature="sso"), metadata=metadata)
            rng = random.Random(11)
            checks: list[float] = []
            pings: list[float] = []
            for _ in range(args.grpc_calls):
                request = billing_pb2.CheckEntitlementRequest(customer=rng.choice(sample), feature=rng.choice(FEATURES))
                t0 = time.perf_counter()
                stub.CheckEntitlement(request, metadata=metadata)
                checks.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                health.Check(health_pb2.HealthCheckRequest())
                pings.append(time.perf_counter() - t0)
    finally:
        server.stop()
    c50, c99 = percentile(checks, 50) * 1e3, percentile(checks, 99) * 1e3
    h50, h99 = percentile(pings, 50) * 1e3, percentile(pings, 99) * 1e3
    log(f"over gRPC: check p50 {c50:.2f} ms, p99 {c99:.2f} ms (health check p50 {h50:.2f} ms, p99 {h99:.2f} ms)")
    return {
        "grpc_check_p50_ms": c50,
        "grpc_check_p99_ms": c99,
        "grpc_health_p50_ms": h50,
        "grpc_health_p99_ms": h99,
        "ratio_grpc_check_to_health_p50": c50 / h50,
    }


def run(args: argparse.Namespace) -> Figures:
    if args.quick:
        args.customers, args.checks, args.grpc_customers, args.grpc_calls = 1_000, 20_000, 200, 300
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'entitlements.db'}"
        engine = make_engine(url)
        upgrade(engine)
        log(f"provisioning {args.customers:,} customers")
        tenant_id, key, ids = provision(engine, args.customers)
        figures = in_process(engine, tenant_id, ids, args)
        figures.update(insight(engine, tenant_id, ids))
        engine.dispose()
        figures.update(over_grpc(url, key, ids, args))
    return figures


if __name__ == "__main__":
    main_for(__name__, __doc__ or "", run, add_arguments)
