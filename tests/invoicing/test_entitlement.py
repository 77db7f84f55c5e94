"""The entitlement cache: decisions per feature kind, freshness (invalidate, ingest hook, refresher), resets."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine

from invoicing.insight._entitlement import EntitlementCache
from invoicing.ledger import Ledger
from invoicing.subscriptions import change_plan, create_subscription, pause_subscription
from metering.errors import NotFound
from metering.event import PreparedBatch
from metering.fold import catch_up
from metering.meter import Aggregation, MeterDefinition, create_meter, get_meter
from metering.store import BatchOutcome, open_store
from tests.conftest import TenantKey
from tests.invoicing.conftest import T0, publish, write_events

FEATURES = [
    {"key": "sso", "kind": "boolean"},
    {"key": "calls", "kind": "quota", "meter": "api_calls", "amount": "5"},
    {"key": "seats", "kind": "limit", "meter": "seats", "amount": "3"},
    {"key": "gpu", "kind": "balance", "unit": "USD"},
]
NOW = T0 + timedelta(days=10)  # inside the first monthly period [Jan 1, Feb 1)


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def _plan(engine: Engine, tenant_id: int, code: str, features: list[dict[str, Any]]) -> None:
    publish(engine, tenant_id, code, [], features=features)


@pytest.fixture
def setup(engine: Engine, tenant: TenantKey, customer: str) -> tuple[int, str, int]:
    create_meter(engine, tenant.tenant_id, MeterDefinition(code="seats", aggregation=Aggregation.LATEST))
    _plan(engine, tenant.tenant_id, "pro", FEATURES)
    sub = create_subscription(engine, tenant.tenant_id, customer, "pro", T0)
    return tenant.tenant_id, customer, sub.id


def calls(engine: Engine, tenant_id: int, customer: str, n: int, at: datetime, prefix: str = "e") -> None:
    write_events(engine, tenant_id, [(f"{prefix}{i}", customer, "api_calls", at, 1, None) for i in range(n)])


def test_each_kind_of_feature(engine: Engine, setup: tuple[int, str, int]) -> None:
    tenant_id, customer, _ = setup
    calls(engine, tenant_id, customer, 3, NOW)
    write_events(engine, tenant_id, [("s1", customer, "seats", NOW - timedelta(days=40), 2, None)])
    cache = EntitlementCache(engine, clock=Clock(NOW))

    sso = cache.check(tenant_id, customer, "sso")
    assert (sso.allowed, sso.kind, sso.granted, sso.remaining) == (True, "boolean", None, None)

    quota = cache.check(tenant_id, customer, "calls")
    assert (quota.allowed, quota.kind, quota.granted, quota.used, quota.remaining) == (
        True, "quota", Decimal(5), Decimal(3), Decimal(2),
    )  # fmt: skip
    assert quota.resets_at == datetime(2026, 2, 1, tzinfo=NOW.tzinfo)
    assert not cache.check(tenant_id, customer, "calls", Decimal(3)).allowed  # 3 + 3 > 5

    # A latest meter's current value is its last reading, however old (here from before the period).
    seats = cache.check(tenant_id, customer, "seats")
    assert (seats.allowed, seats.used, seats.remaining, seats.resets_at) == (True, Decimal(2), Decimal(1), None)
    over = cache.check(tenant_id, customer, "seats", Decimal(2))
    assert not over.allowed and "over the limit of 3" in over.reason

    gpu = cache.check(tenant_id, customer, "gpu")
    assert (gpu.allowed, gpu.kind, gpu.granted) == (False, "balance", Decimal(0))
    assert "top up" in gpu.reason

    missing = cache.check(tenant_id, customer, "export")
    assert (missing.allowed, missing.kind) == (False, "")
    assert "none of its live plans grants it" in missing.reason
    assert [d.feature for d in cache.entitlements(tenant_id, customer)] == ["calls", "gpu", "seats", "sso"]
    assert cache.loads == 1  # everything after the first load came from memory


def test_quota_used_up_and_period_rollover(engine: Engine, setup: tuple[int, str, int]) -> None:
    tenant_id, customer, _ = setup
    calls(engine, tenant_id, customer, 5, NOW)
    clock = Clock(NOW)
    cache = EntitlementCache(engine, clock=clock)
    spent = cache.check(tenant_id, customer, "calls")
    assert (spent.allowed, spent.remaining) == (False, Decimal(0))
    assert spent.reason == "quota of 5 api_calls used up until 2026-02-01T00:00:00Z"

    clock.at = datetime(2026, 2, 1, tzinfo=NOW.tzinfo)  # the boundary starts the next period
    fresh = cache.check(tenant_id, customer, "calls")
    assert (fresh.allowed, fresh.used, fresh.remaining) == (True, Decimal(0), Decimal(5))
    assert fresh.resets_at == datetime(2026, 3, 1, tzinfo=NOW.tzinfo)


def test_unknown_customer_is_not_found_and_other_tenant_sees_nothing(
    engine: Engine, setup: tuple[int, str, int]
) -> None:
    tenant_id, customer, _ = setup
    cache = EntitlementCache(engine, clock=Clock(NOW))
    with pytest.raises(NotFound, match="no customer 'ghost'"):
        cache.check(tenant_id, "ghost", "sso")
    with pytest.raises(NotFound):
        cache.check(tenant_id + 1, customer, "sso")


def test_paused_subscription_grants_nothing(engine: Engine, setup: tuple[int, str, int]) -> None:
    tenant_id, customer, sub_id = setup
    pause_subscription(engine, tenant_id, sub_id, NOW - timedelta(days=1))
    decision = EntitlementCache(engine, clock=Clock(NOW)).check(tenant_id, customer, "sso")
    assert (decision.allowed, decision.kind) == (False, "")
    assert "no live subscription" in decision.reason


def test_warm_loads_live_customers_up_to_the_bound_and_checks_then_come_from_memory(
    engine: Engine, setup: tuple[int, str, int]
) -> None:
    from invoicing.catalog import CustomerDefinition, create_customer

    tenant_id, customer, _ = setup
    for other in ("cus_paused", "cus_none"):
        create_customer(engine, tenant_id, CustomerDefinition(external_id=other, name=other, timezone="UTC"), T0)
    paused = create_subscription(engine, tenant_id, "cus_paused", "pro", T0)
    pause_subscription(engine, tenant_id, paused.id, NOW - timedelta(days=1))
    cache = EntitlementCache(engine, clock=Clock(NOW))
    assert cache.warm(0) == 0 and len(cache) == 0
    assert cache.warm(100_000) >= 1  # other tests' tenants may share the database: only ours is asserted
    assert (tenant_id, customer) in cache._entries
    assert (tenant_id, "cus_paused") not in cache._entries and (tenant_id, "cus_none") not in cache._entries
    loads = cache.loads
    assert cache.check(tenant_id, customer, "sso").allowed and cache.loads == loads  # no load: from memory
    assert cache.warm(100_000) == 0  # what is cached is not loaded again
    bounded = EntitlementCache(engine, clock=Clock(NOW))
    assert bounded.warm(1) == 1 and len(bounded) == 1


def test_invalidate_sees_a_plan_change_at_once(engine: Engine, setup: tuple[int, str, int]) -> None:
    tenant_id, customer, sub_id = setup
    _plan(engine, tenant_id, "max", [{"key": "calls", "kind": "quota", "meter": "api_calls", "amount": "50"}])
    cache = EntitlementCache(engine, clock=Clock(NOW))
    assert cache.check(tenant_id, customer, "calls").granted == Decimal(5)
    change_plan(engine, tenant_id, sub_id, "max", NOW - timedelta(hours=1))
    assert cache.check(tenant_id, customer, "calls").granted == Decimal(5)  # memory, until told
    cache.invalidate(tenant_id, customer)
    after = cache.check(tenant_id, customer, "calls")
    assert (after.granted, after.remaining) == (Decimal(50), Decimal(50))
    assert not cache.check(tenant_id, customer, "sso").allowed  # "max" does not grant sso


def test_two_subscriptions_larger_amount_and_unlimited_win(engine: Engine, setup: tuple[int, str, int]) -> None:
    tenant_id, customer, _ = setup
    _plan(engine, tenant_id, "addon", [
        {"key": "calls", "kind": "quota", "meter": "api_calls", "amount": "8"},
        {"key": "seats", "kind": "limit", "meter": "seats"},
    ])  # fmt: skip
    create_subscription(engine, tenant_id, customer, "addon", T0)
    cache = EntitlementCache(engine, clock=Clock(NOW))
    assert cache.check(tenant_id, customer, "calls").granted == Decimal(8)
    seats = cache.check(tenant_id, customer, "seats", Decimal(1000))
    assert (seats.allowed, seats.granted, seats.remaining) == (True, None, None)


def test_balance_opens_after_a_top_up(engine: Engine, setup: tuple[int, str, int]) -> None:
    tenant_id, customer, _ = setup
    cache = EntitlementCache(engine, clock=Clock(NOW))
    assert not cache.check(tenant_id, customer, "gpu").allowed
    led = Ledger(engine, tenant_id)
    assert led.top_up("t1", customer, led.amount("12.50", "USD"), "USD").ok
    cache.invalidate(tenant_id, customer)
    gpu = cache.check(tenant_id, customer, "gpu", Decimal("10"))
    assert (gpu.allowed, gpu.granted, gpu.remaining) == (True, Decimal("12.50"), Decimal("12.50"))
    short = cache.check(tenant_id, customer, "gpu", Decimal("20"))
    assert not short.allowed and "only 12.50 is available" in short.reason


def _batch(engine: Engine, tenant_id: int, rows: list[tuple[str, str, str, datetime, int]]) -> PreparedBatch:
    specs = {code: get_meter(engine, tenant_id, code).spec for code in {r[2] for r in rows}}
    n = len(rows)
    return PreparedBatch(
        tenant_id, "b", n, False, list(range(n)), [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
        [int(r[3].timestamp()) * 1_000_000 for r in rows], [r[4] for r in rows],
        [specs[r[2]].value_scale for r in rows], [None] * n, specs=specs,
    )  # fmt: skip


def test_commit_hook_adds_exact_batches_and_marks_unclear_ones_stale(
    engine: Engine, setup: tuple[int, str, int]
) -> None:
    tenant_id, customer, _ = setup
    cache = EntitlementCache(engine, clock=Clock(NOW))
    assert cache.check(tenant_id, customer, "calls").used == 0
    loads = cache.loads

    batch = _batch(engine, tenant_id, [("h1", customer, "api_calls", NOW, 1), ("h2", customer, "api_calls", NOW, 1),
                                       ("old", customer, "api_calls", NOW - timedelta(days=20), 1)])  # fmt: skip
    cache.submitted(batch)
    write_events(engine, tenant_id, [("h1", customer, "api_calls", NOW, 1, None),
                                     ("h2", customer, "api_calls", NOW, 1, None),
                                     ("old", customer, "api_calls", NOW - timedelta(days=20), 1, None)])  # fmt: skip
    cache.committed(batch, BatchOutcome(accepted=3))
    # Two events in the period counted from memory; the one of December is outside it.
    assert cache.check(tenant_id, customer, "calls").used == 2 and cache.loads == loads

    resent = _batch(engine, tenant_id, [("h1", customer, "api_calls", NOW, 1), ("h3", customer, "api_calls", NOW, 1)])
    cache.submitted(resent)
    write_events(engine, tenant_id, [("h3", customer, "api_calls", NOW, 1, None)])
    cache.committed(resent, BatchOutcome(accepted=1, duplicate=1))  # which one went in? reload instead
    assert cache.check(tenant_id, customer, "calls").used == 3 and cache.loads == loads + 1


def test_resent_batch_with_duplicates_stays_exact_without_a_reload(engine: Engine, setup: tuple[int, str, int]) -> None:
    """Producers resend on every doubt, so batches with duplicates are the norm under retries: the outcome
    names each duplicate and conflict by index, the cache adds exactly the rest and never reloads."""
    tenant_id, customer, _ = setup
    cache = EntitlementCache(engine, clock=Clock(NOW))
    assert cache.check(tenant_id, customer, "calls").used == 0
    loads = cache.loads
    store = open_store(engine)
    first = _batch(engine, tenant_id, [("r1", customer, "api_calls", NOW, 1), ("r2", customer, "api_calls", NOW, 1)])
    cache.submitted(first)
    [o1] = store.write([first])
    cache.committed(first, o1)
    # r1 again (stored: duplicate), r3 new, r3 again in the batch (duplicate), r2 with another value (conflict).
    resent = _batch(
        engine,
        tenant_id,
        [
            ("r1", customer, "api_calls", NOW, 1),
            ("r3", customer, "api_calls", NOW, 1),
            ("r3", customer, "api_calls", NOW, 1),
            ("r2", customer, "api_calls", NOW, 7),
        ],
    )
    cache.submitted(resent)
    [o2] = store.write([resent])
    cache.committed(resent, o2)
    assert (o2.accepted, o2.duplicate, o2.duplicates, [e.index for e in o2.errors]) == (1, 2, [0, 2], [3])
    assert cache.check(tenant_id, customer, "calls").used == 3 and cache.loads == loads
    # The database agrees, before the fold (read through the watermark) as after it.
    assert EntitlementCache(engine, clock=Clock(NOW)).check(tenant_id, customer, "calls").used == 3
    catch_up(engine)
    assert EntitlementCache(engine, clock=Clock(NOW)).check(tenant_id, customer, "calls").used == 3


def test_commit_during_a_load_never_counts_twice(engine: Engine, setup: tuple[int, str, int]) -> None:
    tenant_id, customer, _ = setup
    cache = EntitlementCache(engine, clock=Clock(NOW))
    cache.check(tenant_id, customer, "calls")
    batch = _batch(engine, tenant_id, [("x1", customer, "api_calls", NOW, 1)])
    cache.submitted(batch)
    write_events(engine, tenant_id, [("x1", customer, "api_calls", NOW, 1, None)])
    cache.invalidate(tenant_id, customer)  # reads x1 while its batch is still in flight: marked stale
    cache.committed(batch, BatchOutcome(accepted=1))
    assert cache.check(tenant_id, customer, "calls").used == 1


def test_refresher_picks_up_changes_made_elsewhere(engine: Engine, setup: tuple[int, str, int]) -> None:
    tenant_id, customer, _ = setup
    cache = EntitlementCache(engine, max_age_s=0.0, clock=Clock(NOW))
    assert cache.check(tenant_id, customer, "calls").used == 0
    calls(engine, tenant_id, customer, 4, NOW, prefix="cli")  # e.g. `tally send` from another process
    assert cache.check(tenant_id, customer, "calls").used == 0
    assert cache.refresh() == 1
    assert cache.check(tenant_id, customer, "calls").used == 4


def test_loads_under_ingest_place_each_batch_by_the_horizon_and_stay_exact(
    engine: Engine, setup: tuple[int, str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under steady ingest a customer always has a batch in flight: a reload must still give an exact,
    current snapshot (checks answered from memory), each batch counted once whether it committed before
    the load's database snapshot, during the load but after it, or after the load."""
    tenant_id, customer, _ = setup
    cache = EntitlementCache(engine, clock=Clock(NOW))
    assert cache.check(tenant_id, customer, "calls").used == 0
    store = open_store(engine)

    def one(name: str) -> PreparedBatch:
        return _batch(engine, tenant_id, [(f"{name}1", customer, "api_calls", NOW, 1),
                                          (f"{name}2", customer, "api_calls", NOW, 1)])  # fmt: skip

    before, inside, after, late = one("b"), one("i"), one("a"), one("l")
    for batch in (before, inside, after, late):
        cache.submitted(batch)
    [o_late] = store.write([late])  # committed before the load, reported only after it
    loader = cache.loader
    real_load, real_measure = loader.load, loader._measure

    def load(*args: Any) -> Any:
        [o] = store.write([before])  # committed and reported while loading, before the snapshot: counted by it
        cache.committed(before, o)
        return real_load(*args)

    def measure(*args: Any) -> None:
        [o] = store.write([inside])  # committed and reported while loading, after the snapshot began
        cache.committed(inside, o)
        real_measure(*args)

    monkeypatch.setattr(loader, "load", load)
    monkeypatch.setattr(loader, "_measure", measure)
    loads = cache.loads
    cache.invalidate(tenant_id, customer)
    monkeypatch.undo()
    assert cache.loads == loads + 1
    assert cache.check(tenant_id, customer, "calls").used == 6  # late, before, inside
    cache.committed(late, o_late)  # the snapshot held it: not added again
    [o_after] = store.write([after])
    cache.committed(after, o_after)
    assert cache.check(tenant_id, customer, "calls").used == 8 and cache.loads == loads + 1
    assert EntitlementCache(engine, clock=Clock(NOW)).check(tenant_id, customer, "calls").used == 8
