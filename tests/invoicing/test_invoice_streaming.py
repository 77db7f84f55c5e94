"""The streamed invoice run (usage extracted per batch of customers, per-item caches dropped between
batches) writes exactly what rating against one whole-tenant extract writes (every due item on the
document of its customer and billing date, with the lines the whole-tenant rating gives it); and the
customer-filtered usage extract is exactly the whole extract's rows of those customers, for every
aggregation."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

import invoicing.documents._rater as rater_module
from invoicing.documents import Rater, run_cycle
from invoicing.subscriptions import due_periods
from invoicing.tables import invoice_lines, invoices
from metering.meter import Aggregation, MeterDefinition, create_meter
from metering.usage import period_columns
from tests.conftest import TenantKey
from tests.invoicing.conftest import NOT_RATED, bound_items, check_documents, group_of, write_events
from tests.invoicing.test_invoice_perf_equivalence import AS_OF, _scenario


def _line(ln: Any) -> tuple[Any, ...]:
    return (ln.kind, ln.charge_code, ln.meter, ln.group_key, ln.quantity_units, ln.quantity_scale, ln.unit_price,
            ln.amount, ln.amount_exact)  # fmt: skip


def _json(value: Any) -> str:
    """Canonical JSON of a dict, or of stored JSON text (SQLite) / a decoded value (PostgreSQL)."""
    return json.dumps(json.loads(value) if isinstance(value, str) else value, sort_keys=True, separators=(",", ":"))


@pytest.mark.parametrize(("seed", "batch_size", "chunk"), [(1, 1, 900), (2, 4, 2), (3, 10_000, 1)])
def test_streamed_run_equals_whole_tenant_rating(
    engine: Engine, tenant: TenantKey, monkeypatch: Any, seed: int, batch_size: int, chunk: int
) -> None:
    tid = tenant.tenant_id
    _scenario(engine, tid, seed)
    due = due_periods(engine, tid, AS_OF)
    # The reference: one rater, the whole tenant's usage prefetched at once, every item in one call.
    whole = Rater(engine, tid)
    whole.prefetch(due)
    want = {d.key: d for d in whole.draft(due)}
    monkeypatch.setattr(rater_module, "USAGE_CHUNK", chunk)  # several filtered extracts per window
    summary = run_cycle(engine, tid, AS_OF, batch_size=batch_size)
    # One document per customer and billing date (one currency here), each written once.
    groups = {group_of(i.customer_id, "USD", i.due_at): [] for i in due}
    for i in due:
        groups[group_of(i.customer_id, "USD", i.due_at)].append(i.key)
    assert summary.failed == 0 and summary.completed and summary.created == summary.due == len(groups) < len(due)
    with engine.connect() as conn:
        stored = {r.idempotency_key: r for r in conn.execute(select(invoices).where(invoices.c.tenant_id == tid))}
        lines: dict[int, list[Any]] = {}
        for r in conn.execute(select(invoice_lines).order_by(invoice_lines.c.invoice_id, invoice_lines.c.position)):
            lines.setdefault(int(r.invoice_id), []).append(r)
    assert set(stored) == set(groups)
    bound = bound_items(engine, tid)
    assert set(bound) == set(want)  # every item billed once
    per_doc = check_documents(engine, tid)
    for group, keys in groups.items():
        doc = int(stored[group].id)
        assert sorted(per_doc[doc]) == sorted(keys) and {bound[k] for k in keys} == {doc}, group
        # The document's rated lines are its items' lines, item after item, as the whole-tenant rating gives them.
        got = [ln for ln in lines[doc] if ln.kind not in NOT_RATED]
        assert [(*_line(r), _json(r.detail), _json(r.lineage)) for r in got] == [
            (*_line(ln), _json(ln.detail), _json(ln.lineage)) for k in per_doc[doc] for ln in want[k].lines
        ], group


def test_customer_filtered_extract_equals_filtered_whole_extract(engine: Engine, tenant: TenantKey) -> None:
    tid = tenant.tenant_id
    for code, agg, extra in (
        ("calls", Aggregation.SUM, {}),
        ("hits", Aggregation.COUNT, {}),
        ("peak", Aggregation.MAX, {}),
        ("low", Aggregation.MIN, {}),
        ("last", Aggregation.LATEST, {}),
        ("users", Aggregation.UNIQUE_COUNT, {"unique_property": "user"}),
        ("seats", Aggregation.GAUGE, {}),
        ("gpu", Aggregation.SUM, {"group_by": ["region"]}),
    ):
        create_meter(engine, tid, MeterDefinition(code=code, aggregation=agg, **extra))
    rng = random.Random(7)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows: list[tuple[str, str, str, datetime, int, str | None]] = []
    for k in range(300):
        meter = rng.choice(["calls", "hits", "peak", "low", "last", "users", "seats", "gpu"])
        props = None
        if meter == "users":
            props = json.dumps({"user": rng.choice(["ann", "bob", "cy"])})
        elif meter == "gpu":
            props = json.dumps({"region": rng.choice(["eu", "us"])})
        at = t0 + timedelta(days=rng.randrange(0, 60), minutes=rng.randrange(1440))
        rows.append((f"e{k}", f"c{rng.randrange(12)}", meter, at, rng.randrange(1, 1000), props))
    write_events(engine, tid, rows)
    start, end = datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 2, 20, tzinfo=UTC)  # gauges carry in

    def table(cols: Any) -> list[tuple[Any, ...]]:
        return list(zip(cols.customers.tolist(), cols.meters.tolist(), cols.group_keys.tolist(),
                        cols.units.tolist(), cols.scales.tolist(), cols.events.tolist(), strict=True))  # fmt: skip

    everything = table(period_columns(engine, tid, start, end))
    assert {r[1] for r in everything} >= {"calls", "users", "seats", "last"}
    for chosen in (["c1"], ["c0", "c3", "c7", "nobody"], [f"c{k}" for k in range(12)], []):
        got = table(period_columns(engine, tid, start, end, customers=chosen))
        assert got == [r for r in everything if r[0] in chosen], chosen


@pytest.mark.parametrize(("page", "in_list_max"), [(1, 900), (3, 0), (5, 2)])
def test_paged_due_periods_equal_one_page(
    engine: Engine, tenant: TenantKey, monkeypatch: Any, page: int, in_list_max: int
) -> None:
    """`due_periods` reads subscriptions and histories page by page (keyset by id): same items, same order."""
    import invoicing.subscriptions._due as billing

    tid = tenant.tenant_id
    _scenario(engine, tid, 5)
    whole = due_periods(engine, tid, AS_OF)
    assert whole
    monkeypatch.setattr(billing, "PAGE", page)
    monkeypatch.setattr(billing, "IN_LIST_MAX", in_list_max)
    assert due_periods(engine, tid, AS_OF) == whole
    since = datetime(2026, 2, 1, tzinfo=UTC)
    monkeypatch.setattr(billing, "PAGE", 10_000)
    want = due_periods(engine, tid, AS_OF, since=since)
    monkeypatch.setattr(billing, "PAGE", page)
    assert due_periods(engine, tid, AS_OF, since=since) == want
