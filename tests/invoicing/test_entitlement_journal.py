"""The entitlement cache's ingest journal: the commit hook only appends, snapshots catch up when read.

The property: whatever the order of batches (with resends, in-batch duplicates and conflicting
payloads), loads racing their commits, reports arriving after a reload and journal trims, a check made
when every committed batch has been reported equals what a freshly loaded cache reads from the
database, and a snapshot that can stay exact is not reloaded for it.
"""

from __future__ import annotations

import dataclasses
import itertools
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

import invoicing.insight._entitlement as entitlement
from invoicing.catalog import CustomerDefinition, create_customer
from invoicing.insight._entitlement import EntitlementCache
from invoicing.subscriptions import create_subscription
from metering.event import PreparedBatch
from metering.store import BatchOutcome, open_store
from tests.conftest import make_tenant
from tests.invoicing.conftest import T0, publish
from tests.invoicing.test_entitlement import NOW, Clock, _batch

_TENANTS = itertools.count()
CUSTOMERS = ("c1", "c2")
FEATURES = [
    {"key": "calls", "kind": "quota", "meter": "api_calls", "amount": "1000"},
    {"key": "tok", "kind": "quota", "meter": "tokens", "amount": "1000000"},
]

event = st.tuples(
    st.integers(0, 11),  # event id from a small pool: resends and conflicts happen often
    st.sampled_from(CUSTOMERS),
    st.sampled_from(["api_calls", "tokens"]),
    st.sampled_from([0, 0, 0, -20]),  # days from NOW: -20 is before the period, stored but not counted
    st.integers(1, 3),
)
step = st.one_of(
    # when the batch is written and reported: at once; written now and reported after the next step;
    # or queued now, written and reported after the next step (during a load, if that step is one)
    st.tuples(st.just("batch"), st.lists(event, min_size=1, max_size=6), st.sampled_from(["now", "report", "write"])),
    # where the batches not yet reported are reported: after the load, or during it before or after the
    # database snapshot it reads
    st.tuples(st.just("reload"), st.sampled_from(CUSTOMERS), st.sampled_from(["after", "before", "inside"])),
    st.tuples(st.just("check"), st.sampled_from(CUSTOMERS), st.booleans()),
    st.tuples(st.just("check"), st.sampled_from(CUSTOMERS), st.booleans()),
    st.tuples(st.just("refresh"), st.just(""), st.booleans()),
)


def _tenant(engine: Engine) -> int:
    tid = make_tenant(engine, f"j{next(_TENANTS)}").tenant_id
    publish(engine, tid, "pro", [], features=FEATURES)
    for c in CUSTOMERS:
        create_customer(engine, tid, CustomerDefinition(external_id=c, timezone="UTC"), T0)
        create_subscription(engine, tid, c, "pro", T0)
    return tid


def _truth(engine: Engine, tid: int) -> dict[tuple[str, str], Decimal | None]:
    fresh = EntitlementCache(engine, clock=Clock(NOW))
    return {(c, f): fresh.check(tid, c, f).used for c in CUSTOMERS for f in ("calls", "tok")}


#: The races that matter, always tried (mode of the batch, when its report comes, commit ids): a batch the
#: load counted, reported after it; one reported during the load before its database snapshot; one written
#: during the load, before and after its snapshot; without commit ids, one written during the load, and one
#: the load counted (queued before it ended: the snapshot must reload, not add it).
RACES = [
    ("report", "after", True),
    ("report", "before", True),
    ("write", "inside", True),
    ("write", "before", True),
    ("write", "inside", False),
    ("report", "after", False),
]


def _races(test: Any) -> Any:
    for mode, when, ids in RACES:
        steps = [("batch", [(0, "c1", "api_calls", 0, 1)], mode), ("reload", "c1", when), ("check", "c1", True)]
        test = example(steps=steps, journal_max=10_000, commit_ids=ids)(test)
    return test


@_races
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    steps=st.lists(step, min_size=1, max_size=12),
    journal_max=st.sampled_from([3, 8, 10_000]),
    commit_ids=st.sampled_from([True, True, False]),
)
def test_checks_equal_the_database_whatever_the_interleaving(
    engine: Engine, steps: list[Any], journal_max: int, commit_ids: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(entitlement, "JOURNAL_EVENTS_MAX", journal_max)
    tid = _tenant(engine)
    cache = EntitlementCache(engine, clock=Clock(NOW))
    cache.check(tid, "c1", "calls")  # the tenant is tracked from its first load on
    store = open_store(engine)
    # batches queued and not yet reported, with their outcome once written (None: not written yet)
    unreported: list[tuple[PreparedBatch, BatchOutcome | None]] = []
    during: dict[str, list[tuple[PreparedBatch, BatchOutcome | None]]] = {"before": [], "inside": []}
    loader = cache.loader
    real_load, real_measure = loader.load, loader._measure

    def settle(batches: list[tuple[PreparedBatch, BatchOutcome | None]]) -> None:
        for batch, outcome in batches:
            if outcome is None:
                [outcome] = store.write([batch])
            if not commit_ids:  # a store that cannot say where its commit stands
                outcome = dataclasses.replace(outcome, commit=None)
            cache.committed(batch, outcome)

    def report(when: str) -> None:
        settle(during[when])
        during[when] = []

    def load(*args: Any) -> Any:
        report("before")
        return real_load(*args)

    def measure(*args: Any) -> None:
        report("inside")  # after the load's horizon was read: what is written now is not in its snapshot
        real_measure(*args)

    monkeypatch.setattr(loader, "load", load)
    monkeypatch.setattr(loader, "_measure", measure)
    try:
        for kind, arg, flag in steps:
            if kind == "batch":  # a batch left unreported waited one step: settle it first
                settle(unreported)
                unreported = []
                rows = [(f"e{i}", c, m, NOW + timedelta(days=d), v) for i, c, m, d, v in arg]
                batch = _batch(engine, tid, rows)
                cache.submitted(batch)
                if flag == "write":
                    unreported.append((batch, None))
                    continue
                [outcome] = store.write([batch])
                if flag == "report":
                    unreported.append((batch, outcome))
                    continue
                cache.committed(batch, outcome)
                continue
            if kind == "reload":
                if flag != "after":
                    during[flag], unreported = unreported, []
                cache.invalidate(tid, arg)
                for when in during:  # a customer without a snapshot is not reloaded: report anyway
                    report(when)
            elif kind == "refresh":
                cache.refresh()
            settle(unreported)
            unreported = []
            if kind == "check":
                truth = _truth(engine, tid)
                loads = cache.loads
                assert cache.check(tid, arg, "calls").used == truth[(arg, "calls")]
                assert cache.check(tid, arg, "tok").used == truth[(arg, "tok")]
                if flag and commit_ids:  # asked again at once: answered from memory
                    assert cache.check(tid, arg, "calls").used == truth[(arg, "calls")]
                    assert cache.loads <= loads + 1
        settle(unreported)
    finally:
        store.close()
        monkeypatch.undo()
    truth = _truth(engine, tid)
    assert {(c, f): cache.check(tid, c, f).used for c in CUSTOMERS for f in ("calls", "tok")} == truth


def _ingest(engine: Engine, tid: int, cache: EntitlementCache, batches: list[list[tuple[str, str]]]) -> None:
    """Each batch of (event id, customer) api_calls events queued, written and reported, as the server does."""
    store = open_store(engine)
    try:
        for rows in batches:
            batch = _batch(engine, tid, [(e, c, "api_calls", NOW, 1) for e, c in rows])
            cache.submitted(batch)
            [outcome] = store.write([batch])
            cache.committed(batch, outcome)
    finally:
        store.close()


def test_the_hook_appends_and_a_check_adds_only_its_customers_batches(engine: Engine) -> None:
    """The hook runs on the ingest event loop: it must not touch snapshots, whatever their number."""
    tid = _tenant(engine)
    cache = EntitlementCache(engine, clock=Clock(NOW))
    for c in CUSTOMERS:
        cache.check(tid, c, "calls")
    loads = cache.loads
    _ingest(engine, tid, cache, [[(f"h{k}a", "c1"), (f"h{k}b", "c2"), (f"h{k}c", "c1")] for k in range(4)])
    journal = cache._journals[tid]
    assert len(journal.entries) == 4 and all(e.first is None for e in journal.entries)  # nothing indexed yet
    snap = cache._entries[(tid, "c2")]
    assert snap.features["calls"].used == 0  # not added by the hook ...
    assert cache.check(tid, "c2", "calls").used == 4 and cache.check(tid, "c1", "calls").used == 8  # ... but read
    assert cache.loads == loads
    cache.refresh()  # every snapshot has read the journal: trimmed
    assert not journal.entries and journal.events == 0


def test_a_snapshot_behind_a_trimmed_journal_reloads_and_stays_exact(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(entitlement, "JOURNAL_EVENTS_MAX", 4)
    tid = _tenant(engine)
    cache = EntitlementCache(engine, clock=Clock(NOW))
    assert cache.check(tid, "c1", "calls").used == 0
    # 10 events: past the bound, the oldest entries are dropped unread
    _ingest(engine, tid, cache, [[(f"t{k}a", "c1"), (f"t{k}b", "c1")] for k in range(5)])
    journal = cache._journals[tid]
    assert journal.base > 0 and journal.events <= 4
    loads = cache.loads
    assert cache.check(tid, "c1", "calls").used == 10 and cache.loads == loads + 1
