"""Reading through the watermark: the database's running totals of pending events equal the Python fold's.

`pending_running_totals` lets the database add up the unfolded events of a count/sum/max/min meter
(entitlement reloads under ingest); `pending_partials` folds them event by event. For any events, any
part of them folded, any window (aligned to buckets or not) and any customers, both must give the same
[events, sum, max, min] per customer, and meters the database cannot add up must say so (None).
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from metering.fold import fold_once
from metering.meter import Aggregation, MeterDefinition, create_meter, list_meters
from metering.pending import pending_partials, pending_running_totals, snapshot
from metering.rollup import BUCKET_US
from metering.store import open_store
from tests.metering.test_fold import BASE, make_batch

_TENANTS = itertools.count()
_BASE_US = int(BASE.timestamp()) * 1_000_000
METERS = ("api_calls", "tokens", "peak", "low")


def _by_partials(engine: Engine, tid: int, meter: str, customers: list[str], start: int, end: int) -> dict[str, Any]:
    spec = {m.code: m.spec for m in list_meters(engine, tid)}[meter]
    out: dict[str, list[int]] = {}
    with snapshot(engine) as conn:
        for key, part in pending_partials(conn, tid, meter=meter, customers=customers, specs={meter: spec}).items():
            if start <= key[3] < end:
                acc = out.setdefault(key[1], [0, 0, part.max_units, part.min_units])
                acc[0] += part.events
                acc[1] += part.sum_units
                acc[2], acc[3] = max(acc[2], part.max_units), min(acc[3], part.min_units)
    return out


rows = st.lists(
    st.tuples(
        st.sampled_from(["c1", "c2", "c3"]),
        st.sampled_from(METERS),
        st.integers(-45, 90),  # minutes around BASE: a few buckets, many events inside the window's edge buckets
        st.integers(-(2**40), 2**40),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    commits=st.lists(rows, min_size=1, max_size=3),
    folded=st.integers(0, 3),
    window=st.tuples(st.integers(-45, 45), st.integers(0, 120)),  # start, length, in minutes
    customers=st.lists(st.sampled_from(["c1", "c2", "c3", "ghost"]), min_size=1, max_size=4, unique=True),
)
def test_database_totals_equal_the_fold(
    engine: Engine, commits: Any, folded: int, window: tuple[int, int], customers: list[str]
) -> None:
    from tests.conftest import make_tenant

    tid = make_tenant(engine, f"p{next(_TENANTS)}").tenant_id
    create_meter(engine, tid, MeterDefinition(code="peak", aggregation=Aggregation.MAX))
    create_meter(engine, tid, MeterDefinition(code="low", aggregation=Aggregation.MIN))
    store = open_store(engine)
    n = 0
    try:  # a store holds its connection until closed: an example that left it open would drain the pool
        for batch in commits:
            store.write([make_batch(engine, tid, [(f"e{(n := n + 1)}", c, m, minutes,
                                                   abs(u) if m == "api_calls" else u, None)
                                                  for c, m, minutes, u in batch])])  # fmt: skip
    finally:
        store.close()
    for _ in range(folded):
        fold_once(engine, events_max=1)
    start = _BASE_US + int(timedelta(minutes=window[0]).total_seconds()) * 1_000_000 + 7  # off the bucket edges
    end = start + int(timedelta(minutes=window[1]).total_seconds()) * 1_000_000
    specs = {m.code: m.spec for m in list_meters(engine, tid)}
    for meter in METERS:
        with snapshot(engine) as conn:
            found = pending_running_totals(
                conn, tid, meter=meter, spec=specs[meter], customers=customers, start_us=start, end_us=end
            )
        assert found == _by_partials(engine, tid, meter, customers, start, end), meter


def test_meters_that_need_their_events_are_left_to_the_fold(engine: Engine) -> None:
    from tests.conftest import make_tenant

    tid = make_tenant(engine, f"p{next(_TENANTS)}").tenant_id
    create_meter(engine, tid, MeterDefinition(code="gpu", aggregation=Aggregation.SUM, group_by=["region"]))
    create_meter(engine, tid, MeterDefinition(code="eu", aggregation=Aggregation.COUNT, filter={"region": ["eu"]}))
    create_meter(engine, tid, MeterDefinition(code="last", aggregation=Aggregation.LATEST))
    specs = {m.code: m.spec for m in list_meters(engine, tid)}
    store = open_store(engine)
    try:
        store.write([make_batch(engine, tid, [("x1", "c1", "api_calls", 0, 1, None)])])
    finally:
        store.close()
    with snapshot(engine) as conn:
        for meter in ("gpu", "eu", "last"):
            assert pending_running_totals(conn, tid, meter=meter, spec=specs[meter], customers=["c1"],
                                          start_us=_BASE_US, end_us=_BASE_US + BUCKET_US) is None  # fmt: skip
        # ... and one the database can add up answers for the events it holds.
        one = pending_running_totals(conn, tid, meter="api_calls", spec=specs["api_calls"], customers=["c1"],
                                     start_us=_BASE_US, end_us=_BASE_US + BUCKET_US)  # fmt: skip
        assert one == {"c1": [1, 1, 1, 1]}
