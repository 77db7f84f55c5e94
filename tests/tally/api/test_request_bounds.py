"""Over the wire: a request costs at most its documented bound, is refused naming the limit when it would
not fit, and stops working when its deadline passes (the client's, or the server's request_seconds_max).

The servers run in a thread of this process, so `time.process_time()` measures their work too: after a
deadline the CPU the process burns must drop to idle at once, not when the abandoned query would finish.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import grpc
import pytest
from sqlalchemy import Engine

from metering.meter import Aggregation, MeterDefinition, TimeUnit, create_meter
from tally.sdk import BillingClient, TallyApiError
from tests.conftest import ServerThread, TenantKey
from tests.metering.test_usage_bounds import utc, write

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
END = datetime(2199, 1, 1, tzinfo=UTC)  # the API takes instants from 1900 to 2200
Serve = Callable[..., ServerThread]


@pytest.fixture
def connect(tenant: TenantKey) -> Iterator[Callable[..., BillingClient]]:
    clients: list[BillingClient] = []

    def _connect(server: ServerThread, timeout_s: float = 30) -> BillingClient:
        client = BillingClient(server.target, tenant.key, timeout_s=timeout_s)
        clients.append(client)
        return client

    yield _connect
    for client in clients:
        client.close()


def refused(call: Callable[[], Any], code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT) -> str:
    with pytest.raises(TallyApiError) as caught:
        call()
    assert caught.value.code == code, caught.value
    return caught.value.message


def idle_cpu(seconds: float, windows: int = 3) -> float:
    """The share of one core the whole process (servers included) burns in the quietest of `windows`
    windows of `seconds` while this thread sleeps. A worker that kept going would burn about a whole core
    in every window; the background workers (the rollup fold, webhooks, alerts) only in bursts, so the
    quietest window tells the two apart on a busy machine."""
    shares = []
    for _ in range(windows):
        before = time.process_time()
        time.sleep(seconds)
        shares.append((time.process_time() - before) / seconds)
    return min(shares)


def seats(engine: Engine, tid: int, series: int = 1) -> None:
    """A gauge (seat-days) with `series` dimension values, each holding i + 1 seats since 2025."""
    create_meter(engine, tid, MeterDefinition(
        code="seats", aggregation=Aggregation.GAUGE, time_unit=TimeUnit.DAY, group_by=["region"],
    ))  # fmt: skip
    write(engine, tid, [(f"s{i}", "c1", "seats", utc(2025, 1, 1), i + 1, {"region": f"r{i}"}) for i in range(series)])


# --- QueryUsage ------------------------------------------------------------------------------------------------


def test_a_gauge_over_centuries_answers_at_once(
    server: ServerThread, connect: Callable[..., BillingClient], engine: Engine, tenant: TenantKey
) -> None:
    client = connect(server)
    client.create_customer("c1")
    create_meter(engine, tenant.tenant_id, MeterDefinition(code="seats", aggregation=Aggregation.GAUGE))
    y2000 = utc(2000, 1, 1)
    write(engine, tenant.tenant_id, [("s1", "c1", "seats", EPOCH, 3, None), ("s2", "c1", "seats", y2000, 5, None)])
    began = time.perf_counter()
    (row,) = client.query_usage("c1", "seats", EPOCH, END)  # 8 million buckets, one window
    assert time.perf_counter() - began < 0.5
    assert (Decimal(row.quantity), row.events) == (Decimal(3 * (y2000 - EPOCH).days + 5 * (END - y2000).days), 2)
    (held,) = client.query_usage("c1", "seats", utc(2100, 1, 1), END)  # carried in, no reading
    assert (Decimal(held.quantity), held.events) == (Decimal(5 * (END - utc(2100, 1, 1)).days), 0)


def test_hourly_windows_over_centuries_are_refused_naming_the_limit(
    server: ServerThread, connect: Callable[..., BillingClient], engine: Engine, tenant: TenantKey
) -> None:
    client = connect(server)
    client.create_customer("c1")
    seats(engine, tenant.tenant_id)
    began = time.perf_counter()
    message = refused(lambda: client.query_usage("c1", "seats", EPOCH, END, window="hour"))
    assert time.perf_counter() - began < 0.5
    assert "hourly windows; the limit is usage_windows_max=10000: narrow the range or use a longer window" in message
    # Days over the same range are 83,641 windows: refused too; months are answered.
    assert "usage_windows_max=10000" in refused(lambda: client.query_usage("c1", "seats", EPOCH, END, window="day"))
    months = client.query_usage("c1", "seats", utc(2025, 1, 1), END, window="month")
    assert len(months) == 174 * 12 and Decimal(months[-1].quantity) == 31


def test_the_client_deadline_stops_the_query_on_the_server(
    make_server: Serve, connect: Callable[..., BillingClient], engine: Engine, tenant: TenantKey
) -> None:
    """800 series over 10,000 hours: 8 million gauge integrals, seconds of work. An operator who raised
    usage_buckets_max still has it stopped when the caller's deadline passes."""
    server = make_server(api_limits={"usage_buckets_max": 10**9})
    connect(server).create_customer("c1")
    seats(engine, tenant.tenant_id, series=800)
    client = connect(server, timeout_s=0.5)
    start = utc(2026, 1, 1)
    began = time.perf_counter()
    message = refused(
        lambda: client.query_usage("c1", "seats", start, start + timedelta(hours=10_000), window="hour"),
        grpc.StatusCode.DEADLINE_EXCEEDED,
    )
    assert time.perf_counter() - began < 1.5, message
    assert idle_cpu(0.5) < 0.3  # the worker stopped: it would otherwise burn a core for seconds


def test_the_server_budget_stops_a_query_without_a_deadline(
    make_server: Serve, connect: Callable[..., BillingClient], engine: Engine, tenant: TenantKey
) -> None:
    server = make_server(api_limits={"usage_buckets_max": 10**9, "request_seconds_max": 0.3})
    client = connect(server, timeout_s=30)
    client.create_customer("c1")
    seats(engine, tenant.tenant_id, series=800)
    start = utc(2026, 1, 1)
    began = time.perf_counter()
    message = refused(
        lambda: client.query_usage("c1", "seats", start, start + timedelta(hours=10_000), window="hour"),
        grpc.StatusCode.DEADLINE_EXCEEDED,
    )
    assert time.perf_counter() - began < 1.5
    assert "ran out of its 0.3 s budget and was stopped" in message
    assert idle_cpu(0.5) < 0.3
    # Unwindowed, the same series cost 800 integrals: answered at once.
    (row,) = client.query_usage("c1", "seats", start, start + timedelta(hours=80))
    assert Decimal(row.quantity) == Decimal(800 * 801 // 2) * 80 / 24


# --- SimulatePrice ---------------------------------------------------------------------------------------------

TIERS = [{"up_to": str(i + 1), "unit_amount": "0.001"} for i in range(9_999)] + [{"up_to": None, "unit_amount": "0"}]


def test_ten_thousand_tiers_times_ten_thousand_quantities_are_refused_at_once(
    server: ServerThread, connect: Callable[..., BillingClient]
) -> None:
    client = connect(server)
    price = {"model": "graduated", "currency": "USD", "tiers": TIERS}
    began = time.perf_counter()
    message = refused(lambda: client.simulate_price(price, range(10_000)))
    assert time.perf_counter() - began < 2
    assert message == (
        "SimulatePrice would price 10,000 quantities × (10,000 tiers + 1) = 100,010,000 points; "
        "the limit is simulate_points_max=1000000: send fewer quantities per call"
    )
    # Tiers of nested prices count: a dimensional price's values and a commitment's inner price.
    nested = {"model": "dimensional", "dimension": "region", "prices": {
        "eu": {"model": "volume", "tiers": TIERS[:5_000] + TIERS[-1:]},
        "us": {"model": "graduated", "tiers": TIERS[:4_000] + TIERS[-1:]},
    }}  # fmt: skip
    assert "× (9,002 tiers + 1) = 1,800,600 points" in refused(lambda: client.simulate_price(nested, range(200)))
    one = client.simulate_price(price, [20_000])  # 10,001 points: priced
    assert Decimal(one.results[0].amount_exact) == Decimal("9.999")


def test_points_and_quantity_lengths_are_bounded(make_server: Serve, connect: Callable[..., BillingClient]) -> None:
    client = connect(make_server(api_limits={"simulate_points_max": 30}))
    price = {"model": "graduated", "currency": "USD", "tiers": [TIERS[0], TIERS[-1]]}
    assert len(client.simulate_price(price, range(10)).results) == 10  # 10 x (2 + 1) = 30 points
    message = refused(lambda: client.simulate_price(price, range(11)))
    assert message.endswith("= 33 points; the limit is simulate_points_max=30: send fewer quantities per call")
    long = "1" * 35 + ".0001"  # 40 characters: fine; 41 are refused, naming the quantity
    assert client.simulate_price(price, [long]).results[0].quantity == long
    message = refused(lambda: client.simulate_price(price, ["1", long + "0"]))
    assert message == "quantities[1]: at most 40 characters, got 41"
